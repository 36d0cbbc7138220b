//! The one reader of a target's memory: process_vm_readv, one range or up to 1024 in a call.
//! The Go runtime reader (go::memory, batches of goroutine reads checked against the readable
//! mappings) and the stack unwinder (stacks::memory, page reads through its cache) both read
//! through it. Nothing is stopped (no ptrace): every read may race with the target, and a
//! range that cannot be read is "unknown", never data.

use std::io;

use crate::errno::{ErrnoClass, classify};

/// The kernel's limit on ranges per process_vm_readv call (UIO_MAXIOV).
pub const MAX_IOV: usize = 1024;

/// Why a read of the target failed as a whole (an unreadable range is not an error: see
/// [`TargetMemory::read_ranges`]). The errno is read by [`crate::errno::classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The process is gone (process_vm_readv: ESRCH).
    Exited,
    /// We may not read it (EPERM: ptrace access mode check).
    NotPermitted,
}

/// A target's address space, read by pid.
#[derive(Debug, Clone, Copy)]
pub struct TargetMemory {
    pid: u32,
}

impl TargetMemory {
    pub fn new(pid: u32) -> TargetMemory {
        TargetMemory { pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads exactly `buf.len()` bytes at `addr`; EFAULT if any of it is unmapped or
    /// unreadable right now (a partial read counts as a failure).
    pub fn read_exact(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let n = self.readv(&mut [(addr, buf)])?;
        if n == buf.len() { Ok(()) } else { Err(io::Error::from_raw_os_error(libc::EFAULT)) }
    }

    /// Reads the ranges `reqs[i]` for every `i` in `which`, as few calls as possible, and sets
    /// `ok[i]` for each one read in full. A range that faults is skipped (left false) and the
    /// rest still read. `Err` only when the whole process is refused.
    pub fn read_ranges(
        &self,
        reqs: &mut [(u64, &mut [u8])],
        which: &[usize],
        ok: &mut [bool],
    ) -> Result<(), Refused> {
        let mut start = 0;
        while start < which.len() {
            let batch = &which[start..(start + MAX_IOV).min(which.len())];
            let local: Vec<libc::iovec> = batch
                .iter()
                .map(|&i| libc::iovec { iov_base: reqs[i].1.as_mut_ptr().cast(), iov_len: reqs[i].1.len() })
                .collect();
            let remote: Vec<libc::iovec> = batch
                .iter()
                .map(|&i| libc::iovec {
                    iov_base: reqs[i].0 as usize as *mut libc::c_void,
                    iov_len: reqs[i].1.len(),
                })
                .collect();
            let n = match self.call(&local, &remote) {
                Ok(n) => n,
                Err(e) => match classify(&e) {
                    ErrnoClass::Gone => return Err(Refused::Exited),
                    ErrnoClass::Permission => return Err(Refused::NotPermitted),
                    // EFAULT on the first range: unmapped since the caller checked. Skip it.
                    ErrnoClass::Other => {
                        start += 1;
                        continue;
                    }
                },
            };
            // Transfers stop at the first range that faults, and complete whole ranges before
            // it (a partial range counts as failed).
            let mut left = n;
            let mut done = 0;
            for &i in batch {
                let len = reqs[i].1.len();
                if left < len {
                    break;
                }
                left -= len;
                ok[i] = true;
                done += 1;
            }
            // Skip the range that stopped the transfer, if any, and carry on after it.
            start += if done < batch.len() { done + 1 } else { done };
        }
        Ok(())
    }

    fn readv(&self, reqs: &mut [(u64, &mut [u8])]) -> io::Result<usize> {
        let local: Vec<libc::iovec> = reqs
            .iter_mut()
            .map(|(_, b)| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
            .collect();
        let remote: Vec<libc::iovec> = reqs
            .iter()
            .map(|(a, b)| libc::iovec { iov_base: *a as usize as *mut libc::c_void, iov_len: b.len() })
            .collect();
        self.call(&local, &remote)
    }

    fn call(&self, local: &[libc::iovec], remote: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: every local iovec points into a live, exclusively borrowed buffer of the
        // stated length; the remote ones are only addresses in the other process.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_refuses_unmapped_ranges() {
        let data: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
        let mem = TargetMemory::new(std::process::id());
        let mut buf = [0u8; 32];
        mem.read_exact(data.as_ptr() as u64 + 4090, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[4090..4122]);
        // Page 0 is never mapped.
        assert_eq!(mem.read_exact(16, &mut buf).unwrap_err().raw_os_error(), Some(libc::EFAULT));

        let (mut a, mut b, mut c) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let base = data.as_ptr() as u64;
        let mut reqs = [(base, &mut a[..]), (8, &mut b[..]), (base + 100, &mut c[..])];
        let mut ok = [false; 3];
        mem.read_ranges(&mut reqs, &[0, 1, 2], &mut ok).unwrap();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(a, data[..8]);
        assert_eq!(c, data[100..108]);
    }

    #[test]
    fn a_missing_process_is_refused() {
        // PIDs above pid_max never exist.
        let mem = TargetMemory::new(u32::MAX >> 1);
        let mut buf = [0u8; 8];
        let mut reqs = [(0x1000, &mut buf[..])];
        assert_eq!(mem.read_ranges(&mut reqs, &[0], &mut [false]), Err(Refused::Exited));
    }
}
