//! Work done inside a target's network namespace: a socket answers for the namespace it was made
//! in, so a connection to a target's console or a socket-table dump must be made from there.
//! `setns` into a network namespace changes only the calling thread; the work runs on a
//! short-lived thread of its own that enters the namespace and ends, so no thread of the agent
//! (nor a pool thread reused later) is ever left in another namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// Whether `pid` lives in the calling thread's network namespace.
pub fn shares_network_namespace(pid: u32) -> io::Result<bool> {
    let target = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    let own = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((target.dev(), target.ino()) == (own.dev(), own.ino()))
}

/// Runs `work` in the network namespace of `pid`: here when that is the calling thread's own,
/// else on a new thread that enters it first. Err: the namespace could not be entered (the
/// process is gone, or setns was refused), or the thread could not start or panicked.
pub fn in_network_namespace_of<T, W>(pid: u32, work: W) -> io::Result<T>
where
    T: Send + 'static,
    W: FnOnce() -> T + Send + 'static,
{
    // Opened before comparing, so the comparison is about the namespace that would be entered.
    let target_ns = File::open(format!("/proc/{pid}/ns/net"))?;
    let target = target_ns.metadata()?;
    let own = std::fs::metadata("/proc/thread-self/ns/net")?;
    if (target.dev(), target.ino()) == (own.dev(), own.ino()) {
        return Ok(work());
    }
    std::thread::Builder::new()
        .name("parkscope-netns".into())
        .spawn(move || {
            // SAFETY: `target_ns` is an open nsfs file of a network namespace; setns changes only
            // this thread's namespace, and this thread ends with `work`.
            if unsafe { libc::setns(target_ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(work())
        })?
        .join()
        .map_err(|_| io::Error::other("the thread in the target's network namespace panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ground truth: the namespace inode each thread's /proc entry names. Work for a process in
    /// our namespace runs on this thread; for a thread in a namespace of its own (made with
    /// unshare), it runs in that namespace, and this thread stays in ours.
    #[test]
    fn work_runs_in_the_targets_namespace() {
        let ns_of = |path: &str| std::fs::metadata(path).map(|m| m.ino()).unwrap();
        let ours = ns_of("/proc/thread-self/ns/net");
        let here = std::thread::current().id();
        let ran_on =
            in_network_namespace_of(std::process::id(), move || std::thread::current().id()).unwrap();
        assert_eq!(ran_on, here);
        assert!(shares_network_namespace(std::process::id()).unwrap());

        let (to_test, from_thread) = std::sync::mpsc::channel();
        let (to_thread, until_done) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            // SAFETY: unshare has no memory preconditions; it changes only this thread's
            // network namespace (the thread ends with the test).
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "{}", io::Error::last_os_error());
            // SAFETY: gettid has no preconditions.
            to_test.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = until_done.recv();
        });
        let tid = from_thread.recv().unwrap();
        let theirs = ns_of(&format!("/proc/{tid}/ns/net"));
        assert_ne!(theirs, ours);
        assert!(!shares_network_namespace(tid).unwrap());
        let seen = in_network_namespace_of(tid, move || ns_of("/proc/thread-self/ns/net")).unwrap();
        assert_eq!(seen, theirs);
        assert_eq!(ns_of("/proc/thread-self/ns/net"), ours, "the caller never moved");
        to_thread.send(()).unwrap();
        other.join().unwrap();
        assert!(in_network_namespace_of(u32::MAX, || ()).is_err(), "no such process");
    }
}
