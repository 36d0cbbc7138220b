//! A tokio thread's role from its stack, and the task id each thread polls now, read from its
//! thread-local storage.
//!
//! The thread pointer (fs_base) of a thread is not in /proc. With glibc it is the address of
//! the thread's `struct pthread`, which for every thread glibc creates lies at the top of the
//! mapping that holds the thread's stack, and whose header points at itself twice (`tcb` and
//! `self`, words 0 and 2 of `tcbhead_t`) and holds the thread's kernel tid (`tid`, at 0x2d0 on
//! x86-64, as glibc's own `%fs:0x2d0` reads show). A candidate is accepted only when all three
//! agree with the thread, so a wrong pointer gives no task id, never a wrong one. The main
//! thread's control block is allocated by the dynamic loader; it is found when that lies in
//! the top of an anonymous mapping too (as here with glibc 2.36), else the main thread (a
//! current_thread runtime's worker) gets no task id. musl is not handled.

use std::collections::HashMap;

use crate::procfs::maps::AddressSpace;
use crate::procfs::threads::{parse_status_switches, read_all};

/// `offsetof(struct pthread, tid)` in glibc on x86-64.
const PTHREAD_TID_OFFSET: u64 = 0x2d0;
/// How much of the top of each candidate mapping is searched for a control block (the block
/// itself is ~2.3 KiB; between it and the top, only alignment: the static TLS lies below it).
const TCB_SEARCH_BYTES: u64 = 16 << 10;
/// `struct pthread` is aligned to 64 bytes.
const TCB_ALIGN: u64 = 64;
/// Most mappings searched in one locate (a process with more thread stacks than this is read
/// in part; the rest stay unknown).
const MAX_SEARCHED_MAPPINGS: usize = 16_384;

/// What a tokio thread is for, from its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokioRole {
    /// Runs a scheduler's loop: a multi-thread worker, or the thread driving a current_thread
    /// runtime.
    Worker,
    /// A blocking-pool thread (spawn_blocking, block_in_place's hand-off, file I/O).
    Blocking,
}

/// The role told by a symbolised stack (function names, innermost first), and whether the
/// thread is inside a task's poll (`task::raw::poll` / `Harness::poll` frames). Workers are
/// started on the blocking pool, so a worker's stack has both; the worker loop wins.
pub fn role_from_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> (Option<TokioRole>, bool) {
    let (mut worker, mut blocking, mut polling) = (false, false, false);
    for f in functions {
        if !f.contains("tokio::runtime::") {
            continue;
        }
        if f.contains("scheduler::multi_thread::worker::")
            || f.contains("scheduler::multi_thread_alt::worker::")
            || f.contains("scheduler::current_thread::CoreGuard")
            || f.contains("scheduler::current_thread::Context")
        {
            worker = true;
        }
        if f.contains("blocking::pool::Inner") {
            blocking = true;
        }
        if f.contains("task::raw::poll") || f.contains("task::harness::Harness") {
            polling = true;
        }
    }
    let role = if worker {
        Some(TokioRole::Worker)
    } else if blocking {
        Some(TokioRole::Blocking)
    } else {
        None
    };
    (role, polling)
}

/// The thread pointers (glibc control blocks) of a process's threads, found once per thread.
#[derive(Debug, Default)]
pub struct ThreadPointers {
    /// host tid -> (namespace tid, control block address).
    known: HashMap<u32, (u32, u64)>,
    /// Threads searched for and not found: not searched again (a search reads the top of every
    /// candidate mapping).
    not_found: std::collections::HashSet<(u32, u32)>,
}

impl ThreadPointers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Finds the control blocks of the threads not known yet (`(host tid, tid in the process's
    /// own pid namespace)`), searching the top of every private writable mapping. Threads that
    /// exited are forgotten.
    pub fn locate(&mut self, pid: u32, threads: &[(u32, u32)], space: &AddressSpace) {
        self.known.retain(|host, (ns, _)| threads.iter().any(|(h, n)| h == host && n == ns));
        self.not_found.retain(|t| threads.contains(t));
        let wanted: HashMap<u32, u32> = threads
            .iter()
            .filter(|t| !self.known.contains_key(&t.0) && !self.not_found.contains(t))
            .map(|(h, n)| (*n, *h))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        for m in space.mappings().iter().take(MAX_SEARCHED_MAPPINGS) {
            if !(m.readable && m.writable) || m.is_file() || m.path == "[vvar]" {
                continue;
            }
            let len = (m.range.end - m.range.start).min(TCB_SEARCH_BYTES);
            let start = m.range.end - len;
            buf.resize(len as usize, 0);
            if !read_at(pid, start, &mut buf) {
                continue;
            }
            let mut at = start.next_multiple_of(TCB_ALIGN);
            while at + PTHREAD_TID_OFFSET + 4 <= m.range.end {
                let off = (at - start) as usize;
                let word = |o: usize| u64::from_le_bytes(buf[off + o..off + o + 8].try_into().unwrap());
                if word(0) == at && word(16) == at {
                    let o = off + PTHREAD_TID_OFFSET as usize;
                    let tid = u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
                    if let Some(host) = wanted.get(&tid) {
                        self.known.insert(*host, (tid, at));
                    }
                }
                at += TCB_ALIGN;
            }
        }
        for (ns, host) in wanted {
            if !self.known.contains_key(&host) {
                self.not_found.insert((host, ns));
            }
        }
    }

    /// The thread pointer of `host_tid`, when found.
    pub fn thread_pointer(&self, host_tid: u32) -> Option<u64> {
        self.known.get(&host_tid).map(|(_, tp)| *tp)
    }

    /// Reads the 8-byte word at `tp + offset` of each known thread, with the control block's
    /// tid again in the same read, so a thread that exited and whose tid and memory were
    /// reused reads as unknown. None for a thread not found or not readable.
    pub fn read_word(&self, pid: u32, host_tid: u32, offset: i64) -> Option<u64> {
        let (ns_tid, tp) = *self.known.get(&host_tid)?;
        let slot = tp.checked_add_signed(offset)?;
        let mut word = [0u8; 8];
        let mut tid = [0u8; 4];
        let ok = read_two(pid, (slot, &mut word), (tp + PTHREAD_TID_OFFSET, &mut tid));
        (ok && u32::from_le_bytes(tid) == ns_tid).then(|| u64::from_le_bytes(word))
    }
}

fn read_at(pid: u32, addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one local iovec over `buf`, which outlives the call; the remote side is only read.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

fn read_two(pid: u32, a: (u64, &mut [u8]), b: (u64, &mut [u8])) -> bool {
    let want = a.1.len() + b.1.len();
    let local = [
        libc::iovec { iov_base: a.1.as_mut_ptr().cast(), iov_len: a.1.len() },
        libc::iovec { iov_base: b.1.as_mut_ptr().cast(), iov_len: b.1.len() },
    ];
    let remote = [
        libc::iovec { iov_base: a.0 as *mut libc::c_void, iov_len: a.1.len() },
        libc::iovec { iov_base: b.0 as *mut libc::c_void, iov_len: b.1.len() },
    ];
    // SAFETY: the local iovecs cover `a.1` and `b.1`, which outlive the call.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, local.as_ptr(), 2, remote.as_ptr(), 2, 0) };
    n == want as isize
}

/// `voluntary_ctxt_switches` of the threads of one process (/proc/PID/task/TID/status): a worker
/// that slept between two reads has left whatever poll it was in. Read every 10 ms per busy
/// worker, so a worker's file is opened once and read again in place (a fresh open costs half as
/// much again as the read); other threads' are read once and closed, so a target with thousands
/// of threads never has the agent holding a file per thread.
#[derive(Debug)]
pub struct VoluntarySwitches {
    pid: u32,
    files: HashMap<u32, std::fs::File>,
    buf: Vec<u8>,
}

/// A status file is ~1.5 kB; anything past this is not one.
const MAX_STATUS_BYTES: usize = 64 << 10;

impl VoluntarySwitches {
    pub fn new(pid: u32) -> Self {
        Self { pid, files: HashMap::new(), buf: Vec::with_capacity(4096) }
    }

    /// The count of thread `tid` now, its file kept open for the next read; None when the
    /// thread is gone or its status unreadable.
    pub fn read(&mut self, tid: u32) -> Option<u64> {
        if !self.files.contains_key(&tid) {
            let file = std::fs::File::open(self.path(tid)).ok()?;
            self.files.insert(tid, file);
        }
        let count = self.files.get(&tid).and_then(|file| count_in(file, &mut self.buf));
        if count.is_none() {
            // Gone (ESRCH): forget it, so a later thread with this id opens its own file.
            self.files.remove(&tid);
        }
        count
    }

    /// Like [`VoluntarySwitches::read`], keeping no file open for a thread that has none yet.
    pub fn read_once(&mut self, tid: u32) -> Option<u64> {
        if self.files.contains_key(&tid) {
            return self.read(tid);
        }
        let file = std::fs::File::open(self.path(tid)).ok()?;
        count_in(&file, &mut self.buf)
    }

    /// Forgets the threads `live` rejects.
    pub fn retain(&mut self, mut live: impl FnMut(u32) -> bool) {
        self.files.retain(|tid, _| live(*tid));
    }

    fn path(&self, tid: u32) -> String {
        format!("/proc/{}/task/{tid}/status", self.pid)
    }
}

/// The voluntary count in the status file open as `file`, read whole into `buf`.
fn count_in(file: &std::fs::File, buf: &mut Vec<u8>) -> Option<u64> {
    read_all(file, buf, MAX_STATUS_BYTES).ok()?;
    let text = std::str::from_utf8(buf).ok()?;
    parse_status_switches(text).ok().map(|(voluntary, _)| voluntary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count read in place follows the thread's own sleeps and agrees with a fresh read of
    /// its status file; a thread that ended reads as gone.
    #[test]
    fn voluntary_switches_follow_a_sleeping_thread() {
        let pid = std::process::id();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            while go_rx.recv().is_ok() {
                for _ in 0..5 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        });
        let tid = tid_rx.recv().unwrap();
        let fresh = || {
            let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
            parse_status_switches(&text).unwrap().0
        };
        let mut counts = VoluntarySwitches::new(pid);
        let before = counts.read(tid).expect("a live thread's count");
        go_tx.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = counts.read(tid).unwrap();
        assert!(after >= before + 5, "{before} -> {after}");
        assert_eq!(after, fresh());
        assert_eq!(counts.read_once(tid), Some(fresh()), "through the kept file");
        let mut once = VoluntarySwitches::new(pid);
        assert_eq!(once.read_once(tid), Some(fresh()));
        assert!(once.files.is_empty(), "read_once keeps no file of its own");
        drop(go_tx);
        sleeper.join().unwrap();
        assert_eq!(counts.read(tid), None, "the thread ended");
        counts.retain(|_| false);
        assert!(counts.files.is_empty());
    }
}
