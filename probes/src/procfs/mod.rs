//! What /proc says about a target process: whether it is a traceable user process (`process`),
//! what each of its threads is doing right now (`threads`), what its file descriptors are
//! (`fds`, with TCP/UDP peers dumped through NETLINK_SOCK_DIAG by `sock_diag`), and which /proc
//! thread ids its own pid namespace's ids stand for (`pidns`), and its address space (`maps`,
//! read once per view for stacks), and small facts about any task by tid (`tasks`: names,
//! state, owner); `netns` runs work inside a target's network namespace.
//! Everything here is a synchronous read of /proc; callers on an async reactor should run it on
//! a blocking thread.

pub mod fds;
pub mod maps;
pub mod netns;
pub mod pidns;
pub mod process;
mod rq_clock;
mod sock_diag;
pub mod tasks;
pub mod threads;

use std::io;

use crate::errno::{ErrnoClass, classify};
use std::path::Path;

pub use fds::{FdTable, FdTarget};
pub use pidns::TidMap;
pub use process::TargetProcess;
pub use threads::{ProcState, SyscallSite, ThreadSample, read_kernel_stack, read_thread, read_threads};

/// Why a /proc read about a target failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    #[error("pid {0} is a kernel thread: it has no user space to trace")]
    KernelThread(u32),
    #[error("permission denied reading {path}")]
    PermissionDenied { path: String },
    /// The process (or the thread being read) vanished while it was being read.
    #[error("process {0} exited")]
    Exited(u32),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {path}: {what}")]
    Parse { path: String, what: String },
}

/// Maps an I/O error on a file of process `pid` to a `ProcError`.
///
/// ENOENT and ESRCH both mean the process (or thread) is gone: /proc returns ESRCH when the task
/// exits between `open` and `read`, and ENOENT once its directory has been unhashed (see
/// [`crate::errno`]).
pub(crate) fn io_error(pid: u32, path: &Path, err: io::Error) -> ProcError {
    match classify(&err) {
        ErrnoClass::Gone => ProcError::Exited(pid),
        ErrnoClass::Permission => ProcError::PermissionDenied { path: path.display().to_string() },
        ErrnoClass::Other => ProcError::Io { path: path.display().to_string(), source: err },
    }
}

/// Maps an error of the `procfs` crate, raised while reading `what` of process `pid`.
pub(crate) fn procfs_error(pid: u32, what: &Path, err: ::procfs::ProcError) -> ProcError {
    use ::procfs::ProcError as Upstream;
    let path_of = |p: Option<std::path::PathBuf>| p.as_deref().unwrap_or(what).display().to_string();
    match err {
        Upstream::NotFound(_) => ProcError::Exited(pid),
        Upstream::PermissionDenied(p) => ProcError::PermissionDenied { path: path_of(p) },
        Upstream::Io(source, p) => match classify(&source) {
            ErrnoClass::Gone => ProcError::Exited(pid),
            ErrnoClass::Permission => ProcError::PermissionDenied { path: path_of(p) },
            ErrnoClass::Other => ProcError::Io { path: path_of(p), source },
        },
        Upstream::Incomplete(p) => {
            ProcError::Parse { path: path_of(p), what: "incomplete contents".to_owned() }
        }
        Upstream::Other(what_failed) => {
            ProcError::Parse { path: what.display().to_string(), what: what_failed }
        }
        Upstream::InternalError(e) => {
            ProcError::Parse { path: what.display().to_string(), what: e.to_string() }
        }
    }
}

/// Reads a whole /proc file of process `pid` as text.
pub(crate) fn read_text(pid: u32, path: &Path) -> Result<String, ProcError> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| io_error(pid, path, e))
}

/// Whether `/proc/<pid>` exists right now.
pub(crate) fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_causes() {
        let p = Path::new("/proc/7/syscall");
        assert!(matches!(io_error(7, p, io::Error::from_raw_os_error(libc::ENOENT)), ProcError::Exited(7)));
        assert!(matches!(io_error(7, p, io::Error::from_raw_os_error(libc::ESRCH)), ProcError::Exited(7)));
        for errno in [libc::EACCES, libc::EPERM] {
            match io_error(7, p, io::Error::from_raw_os_error(errno)) {
                ProcError::PermissionDenied { path } => assert_eq!(path, "/proc/7/syscall"),
                other => panic!("errno {errno} mapped to {other:?}"),
            }
        }
        assert!(matches!(io_error(7, p, io::Error::from_raw_os_error(libc::EIO)), ProcError::Io { .. }));
    }

    #[test]
    fn procfs_errors_map_to_causes() {
        use ::procfs::ProcError as Upstream;
        let p = Path::new("/proc/7/stat");
        assert!(matches!(procfs_error(7, p, Upstream::NotFound(None)), ProcError::Exited(7)));
        match procfs_error(7, p, Upstream::PermissionDenied(Some("/proc/7/exe".into()))) {
            ProcError::PermissionDenied { path } => assert_eq!(path, "/proc/7/exe"),
            other => panic!("mapped to {other:?}"),
        }
        assert!(matches!(procfs_error(7, p, Upstream::Other("bad".into())), ProcError::Parse { .. }));
    }
}
