//! Reads of a live Go process's memory in batches, through the crate's one target-memory reader
//! (`crate::memory`: process_vm_readv, up to 1024 ranges a call; reading 100,000 goroutines one
//! pread at a time would cost a syscall each). Nothing is stopped, so every read may race with
//! the runtime; addresses are checked against the readable mappings first, and a failed range
//! is "unknown", never data.
//!
//! The mappings can be kept from one read to the next ([`Memory::reuse`]): /proc/PID/maps was
//! the largest single cost of a profile's periodic goroutine reads (38% of the agent's CPU on
//! a loaded server, and it takes the target's mmap lock). A stale list is safe both ways: a
//! range unmapped since fails in process_vm_readv like any racing unmap (unknown, never data),
//! and an address outside the list re-reads the maps once before it is refused. Addresses
//! refused after a re-read are remembered until the next re-read, so that a pointer that is
//! never valid (the netpoller's epoll set holds one that is not a pollDesc) does not cost a
//! re-read every time.

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    ops::Range,
};

use crate::memory::{Refused, TargetMemory};
use crate::stacks::maps;

use super::GoError;

/// Reads of a target's address space. [`Memory`] reads a live process; the fuzz harness
/// (`super::fuzz`) reads a hostile in-memory image through the same walks.
pub trait ReadMemory {
    /// Reads many ranges; `ok[i]` says whether range `i` was read in full (an unreadable
    /// range is "unknown", never data). `Err` only when the target is gone.
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, GoError>;

    /// Reads one range; `Err` if it is unreadable or the target is gone.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GoError> {
        let mut reqs = [(addr, &mut buf[..])];
        match self.read_many(&mut reqs)?[0] {
            true => Ok(()),
            false => Err(GoError::Unreadable { addr }),
        }
    }

    fn read_u64(&self, addr: u64) -> Result<u64, GoError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl ReadMemory for Memory {
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, GoError> {
        Memory::read_many(self, reqs)
    }
}

/// A target's address space: its pid and the readable ranges at the time of opening (or of
/// the last re-read, see [`Memory::reuse`]).
pub struct Memory {
    pid: u32,
    known: RefCell<Mappings>,
    /// The maps were read during this Memory's life: a miss is then final.
    fresh: Cell<bool>,
}

/// What one [`Memory`] learnt of the address space, for the next one ([`Memory::reuse`]).
#[derive(Debug, Default, Clone)]
pub struct Mappings {
    /// Readable ranges, sorted, as of the last read of /proc/PID/maps.
    readable: Vec<Range<u64>>,
    /// Start addresses refused since that read, even though it was read after them.
    misses: HashSet<u64>,
}

impl Memory {
    pub fn open(pid: u32) -> Result<Memory, GoError> {
        let readable = readable_ranges(pid)?;
        Ok(Memory { pid, known: Mappings { readable, misses: HashSet::new() }.into(), fresh: true.into() })
    }

    /// A Memory over what an earlier one learnt (from [`Memory::into_mappings`]), without
    /// reading /proc/PID/maps; they are re-read the first time an address falls outside the
    /// known ranges and is not a known miss. Nothing known: read at once.
    pub fn reuse(pid: u32, known: Mappings) -> Result<Memory, GoError> {
        if known.readable.is_empty() {
            return Memory::open(pid);
        }
        Ok(Memory { pid, known: known.into(), fresh: false.into() })
    }

    /// What this Memory knows of the address space, for [`Memory::reuse`].
    pub fn into_mappings(self) -> Mappings {
        self.known.into_inner()
    }

    /// Whether `[addr, addr+len)` lies inside one readable mapping. With reused mappings, a
    /// new miss re-reads the maps once (the target may have mapped more since).
    pub fn is_readable(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        let inside = |ranges: &[Range<u64>]| {
            let idx = ranges.partition_point(|r| r.start <= addr);
            idx > 0 && ranges[idx - 1].end >= end
        };
        let mut known = self.known.borrow_mut();
        if inside(&known.readable) {
            return true;
        }
        if known.misses.contains(&addr) {
            return false;
        }
        if !self.fresh.replace(true) {
            match readable_ranges(self.pid) {
                Ok(ranges) => *known = Mappings { readable: ranges, misses: HashSet::new() },
                // The process is gone: the reads will say so.
                Err(_) => return false,
            }
            if inside(&known.readable) {
                return true;
            }
        }
        known.misses.insert(addr);
        false
    }

    /// Reads many ranges with as few syscalls as possible; `ok[i]` says whether range `i` was
    /// read in full. Ranges outside the readable mappings are not attempted. `Err` only when
    /// the process is gone.
    pub fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, GoError> {
        let mut ok = vec![false; reqs.len()];
        let mut pending: Vec<usize> =
            (0..reqs.len()).filter(|&i| self.is_readable(reqs[i].0, reqs[i].1.len() as u64)).collect();
        pending.retain(|&i| {
            !reqs[i].1.is_empty() || {
                ok[i] = true;
                false
            }
        });
        match TargetMemory::new(self.pid).read_ranges(reqs, &pending, &mut ok) {
            Ok(()) => {}
            Err(Refused::Exited) => return Err(GoError::Exited(self.pid)),
            Err(Refused::NotPermitted) => return Err(GoError::NotPermitted { pid: self.pid }),
        }
        Ok(ok)
    }
}

/// The readable ranges of `pid`'s address space, sorted.
fn readable_ranges(pid: u32) -> Result<Vec<Range<u64>>, GoError> {
    let maps = maps::read_maps(pid).map_err(|e| GoError::from_stack(pid, e))?;
    let mut readable: Vec<Range<u64>> = maps.iter().filter(|m| m.readable).map(|m| m.range.clone()).collect();
    readable.sort_by_key(|r| r.start);
    Ok(readable)
}

/// Little-endian integer of `size` bytes (1, 2, 4 or 8) at `off` in `buf`; 0 when out of range.
pub fn uint_at(buf: &[u8], off: u64, size: u64) -> u64 {
    let (Ok(off), Ok(size)) = (usize::try_from(off), usize::try_from(size)) else { return 0 };
    let Some(bytes) = off.checked_add(size).and_then(|end| buf.get(off..end)) else { return 0 };
    let mut raw = [0u8; 8];
    let n = size.min(8);
    raw[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(raw)
}

/// Sign-extends the low `size` bytes of `v`.
pub fn sign_extend(v: u64, size: u64) -> i64 {
    let bits = (size.min(8) * 8) as u32;
    if bits == 0 || bits == 64 {
        return v as i64;
    }
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_in_batches() {
        let a: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let b = [7u8; 16];
        let mem = Memory::open(std::process::id()).unwrap();
        let mut ba = vec![0u8; a.len()];
        let mut bb = [0u8; 16];
        let mut bad = [0u8; 8];
        let mut reqs: Vec<(u64, &mut [u8])> =
            vec![(a.as_ptr() as u64, &mut ba[..]), (8, &mut bad[..]), (b.as_ptr() as u64, &mut bb[..])];
        let ok = mem.read_many(&mut reqs).unwrap();
        assert_eq!(ok, vec![true, false, true]);
        assert_eq!(ba, a);
        assert_eq!(bb, b);
        assert!(mem.read_u64(0).is_err());
    }

    /// Reused ranges that miss a mapping made since re-read the maps, once.
    #[test]
    fn reused_ranges_find_a_new_mapping() {
        let mut known = Memory::open(std::process::id()).unwrap().into_mappings();
        let fresh = vec![0x5au8; 1 << 20];
        let at = fresh.as_ptr() as u64;
        // A list that lacks the new buffer's mapping (as if read before it existed).
        known.readable.retain(|r| !r.contains(&at));
        let mem = Memory::reuse(std::process::id(), known).unwrap();
        let mut buf = [0u8; 16];
        mem.read(at, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 16]);
        // Refused after the one re-read, as before, and remembered as a miss.
        assert!(mem.read_u64(8).is_err());
        let known = mem.into_mappings();
        assert!(known.misses.contains(&8));
        assert!(known.readable.iter().any(|r| r.contains(&at)));
    }

    #[test]
    fn integers() {
        let buf = [0xff, 0xff, 0, 0, 1, 0, 0, 0];
        assert_eq!(uint_at(&buf, 0, 2), 0xffff);
        assert_eq!(uint_at(&buf, 4, 4), 1);
        assert_eq!(uint_at(&buf, 6, 4), 0);
        assert_eq!(sign_extend(0xffff, 2), -1);
        assert_eq!(sign_extend(5, 4), 5);
    }
}
