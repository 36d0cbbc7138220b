//! Target validation: turns a pid from the command line into a `TargetProcess` (a live user-space
//! process, identified by pid *and* start time so that a recycled pid is not mistaken for it).

use std::path::{Path, PathBuf};

use ::procfs::process::{Process, Stat};

use super::{ProcError, procfs_error};

/// `PF_KTHREAD` from include/linux/sched.h: the task is a kernel thread. It is exported in the
/// `flags` field of /proc/PID/stat; kernel threads have no mm, no exe and nothing to unwind.
const PF_KTHREAD: u32 = 0x0020_0000;

/// A process we are allowed to trace, as it was when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProcess {
    pub pid: u32,
    /// The kernel's short name for the process (`/proc/PID/comm`, at most 15 bytes).
    pub comm: String,
    /// The executable, when the link is readable (it is not once the process is a zombie).
    pub exe: Option<PathBuf>,
    /// Start time in clock ticks since boot (stat field 22). Together with `pid` it names one
    /// process for the lifetime of the system: pids are recycled, start times are not repeated
    /// for the same pid.
    pub start_time_ticks: u64,
}

impl TargetProcess {
    /// Validates `pid` as a traceable user process.
    pub fn open(pid: u32) -> Result<TargetProcess, ProcError> {
        let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
        let (process, stat) = open_stat(pid, &stat_path)?;
        if stat.flags & PF_KTHREAD != 0 {
            return Err(ProcError::KernelThread(pid));
        }
        // The exe link is unreadable for zombies and for some processes in other user namespaces;
        // neither prevents tracing the threads, so its absence is not an error.
        let exe = process.exe().ok();
        Ok(TargetProcess { pid, comm: stat.comm, exe, start_time_ticks: stat.starttime })
    }

    /// Whether this same process still exists: the pid is present, has the start time recorded
    /// at `open`, and has not exited.
    ///
    /// A zombie whose only thread is the exited leader has exited; a leader that called
    /// `pthread_exit` also shows `Z` while its other threads keep running, so the thread count
    /// decides.
    pub fn is_alive(&self) -> bool {
        let stat_path = PathBuf::from(format!("/proc/{}/stat", self.pid));
        match open_stat(self.pid, &stat_path) {
            Ok((_, stat)) => {
                stat.starttime == self.start_time_ticks
                    && !(matches!(stat.state, 'Z' | 'X') && stat.num_threads <= 1)
            }
            Err(_) => false,
        }
    }
}

/// A pidfd for `pid` (pidfd_open(2)): readable once the process exits, so a waiter needs no
/// polling. Err on kernels without pidfd_open (< 5.3) or if the process is gone.
pub fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let raw_pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens /proc/PID and reads its stat, mapping "not there" to `NoSuchProcess`.
fn open_stat(pid: u32, stat_path: &Path) -> Result<(Process, Stat), ProcError> {
    // Pids above i32::MAX cannot exist (PID_MAX_LIMIT is 2^22).
    let Ok(raw_pid) = i32::try_from(pid) else {
        return Err(ProcError::NoSuchProcess(pid));
    };
    let not_found = |e| match procfs_error(pid, stat_path, e) {
        ProcError::Exited(_) => ProcError::NoSuchProcess(pid),
        other => other,
    };
    let process = Process::new(raw_pid).map_err(not_found)?;
    let stat = process.stat().map_err(not_found)?;
    Ok((process, stat))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn opens_itself() {
        let pid = std::process::id();
        let me = TargetProcess::open(pid).expect("open self");
        assert_eq!(me.pid, pid);
        // Ground truth from outside procfs parsing: the comm file and the exe link.
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(me.comm, comm.trim_end());
        assert_eq!(me.exe, Some(std::env::current_exe().unwrap()));
        assert!(me.start_time_ticks > 0);
        assert!(me.is_alive());
    }

    #[test]
    fn missing_pid_is_no_such_process() {
        // Pids are always below pid_max, so pid_max itself never exists.
        let pid_max: u32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        assert!(matches!(
            TargetProcess::open(pid_max),
            Err(ProcError::NoSuchProcess(p)) if p == pid_max
        ));
        assert!(matches!(TargetProcess::open(u32::MAX), Err(ProcError::NoSuchProcess(_))));
    }

    #[test]
    fn kernel_thread_is_refused() {
        // kthreadd is the parent of all kernel threads; find it by name rather than trusting
        // that it is pid 2 in this pid namespace.
        let kthreadd = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "kthreadd")
            })
            .expect("no kthreadd visible: this test needs the host pid namespace");
        assert!(matches!(
            TargetProcess::open(kthreadd),
            Err(ProcError::KernelThread(p)) if p == kthreadd
        ));
    }

    #[test]
    fn exited_child_is_not_alive() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().expect("spawn sleep");
        let target = TargetProcess::open(child.id()).expect("open child");
        assert!(target.is_alive());
        assert_eq!(target.comm, "sleep");

        // Unreaped, the child is a zombie: it still has a pid but has exited.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "child never became a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!target.is_alive());

        child.wait().unwrap();
        assert!(!target.is_alive());
    }

    #[test]
    fn reused_pid_is_not_alive() {
        let mut me = TargetProcess::open(std::process::id()).unwrap();
        me.start_time_ticks += 1;
        assert!(!me.is_alive());
    }
}
