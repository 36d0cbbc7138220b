//! Small facts about tasks asked for by tid (profile's thread names, states and wakers, which
//! may be any process's threads): what their names are, whether one is running, which process
//! one belongs to and whether it has a user address space. Read with the `procfs` crate;
//! a task that is gone yields nothing rather than an error.

use std::io::Read as _;

use ::procfs::process::Process;

use super::threads::ProcState;

/// The names (`comm`) of process `pid`'s threads now; threads that exit meanwhile are left out.
pub fn thread_names(pid: u32) -> Vec<(u32, String)> {
    let Ok(process) = i32::try_from(pid).map_err(drop).and_then(|p| Process::new(p).map_err(drop)) else {
        return Vec::new();
    };
    let Ok(tasks) = process.tasks() else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = u32::try_from(task.tid).ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// The state of thread `tid` of process `pid` (/proc/PID/task/TID/stat), None if it is gone.
pub fn task_state(pid: u32, tid: u32) -> Option<ProcState> {
    let process = Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = process.task_from_tid(i32::try_from(tid).ok()?).ok()?.stat().ok()?;
    Some(ProcState::from_char(stat.state))
}

/// Which process a task belongs to, as far as /proc/TID still says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOwner {
    /// The thread group (process) id, from /proc/TID/status.
    pub tgid: Option<u32>,
    /// The task's own name (status `Name:`).
    pub name: Option<String>,
    /// It has a user address space (non-empty maps): false for kernel threads (kworker,
    /// ksoftirqd) and for tasks gone meanwhile.
    pub user_space: bool,
}

/// What /proc says about task `tid` of any process (/proc/TID works for any thread id).
pub fn task_owner(tid: u32) -> TaskOwner {
    let status = i32::try_from(tid).ok().and_then(|t| Process::new(t).ok()).and_then(|p| p.status().ok());
    TaskOwner {
        tgid: status.as_ref().and_then(|s| u32::try_from(s.tgid).ok()),
        name: status.map(|s| s.name),
        user_space: has_user_space(tid),
    }
}

/// Whether `pid` (a process or thread id) has a user address space now: its maps are not
/// empty. False once it has exited (a zombie's maps are empty), and for kernel threads.
pub fn has_user_space(pid: u32) -> bool {
    let mut first = [0u8; 1];
    std::fs::File::open(format!("/proc/{pid}/maps"))
        .and_then(|mut f| f.read(&mut first))
        .is_ok_and(|n| n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_tasks() {
        let pid = std::process::id();
        let names = thread_names(pid);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("own comm");
        assert!(names.iter().any(|(tid, name)| *tid == pid && name == comm.trim_end()), "{names:?}");
        // This test's thread is running as it reads its own state.
        let tid = u32::try_from(unsafe { libc::gettid() }).expect("tid");
        assert_eq!(task_state(pid, tid), Some(ProcState::Running));
        let owner = task_owner(tid);
        assert_eq!(owner.tgid, Some(pid));
        assert!(owner.user_space);
        assert!(has_user_space(pid));
        // kthreadd (pid 2) is a kernel thread in the initial pid namespace.
        if task_owner(2).name.as_deref() == Some("kthreadd") {
            assert!(!has_user_space(2));
        }
        assert_eq!(task_state(pid, u32::MAX), None);
        assert_eq!(task_owner(u32::MAX), TaskOwner::default());
    }
}
