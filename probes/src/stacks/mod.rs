//! User and kernel stacks of a live process: unwinding a blocked thread's user stack from the
//! registers the kernel reports (no ptrace stop), and naming addresses as functions, modules and
//! source lines.

pub(crate) mod maps;
mod memory;
pub mod modules;
mod objects;
mod symbolize;
mod unwind;

#[cfg(test)]
mod live_tests;

use std::io;

pub use modules::{ModuleMapping, executable_mappings, kernel_build_id};
pub use symbolize::{Frame, Symbolizer};
pub use unwind::UserUnwinder;

/// Why stacks of a process cannot be read. Each message is one line with the cause and a hint.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("process {pid} does not exist (it may have exited); check the pid")]
    NoSuchProcess { pid: u32 },
    #[error("not permitted to read {path}; run as root or with CAP_SYS_PTRACE")]
    NotPermitted { path: String },
    #[error("cannot read {path}: {error}")]
    ProcRead { path: String, error: io::Error },
    #[error("unexpected line in /proc/{pid}/maps: {line:?}; is this a Linux procfs?")]
    MapsFormat { pid: u32, line: String },
    #[error("cannot open mapped object {path}: {error}; was it deleted or is it in another mount namespace?")]
    ObjectOpen { path: String, error: io::Error },
    #[error("cannot parse mapped object {path}: {reason}; is it a valid ELF file?")]
    ObjectParse { path: String, reason: String },
}

impl StackError {
    /// Maps an I/O error on a /proc/PID file to the cause a user can act on.
    fn from_proc_io(pid: u32, path: &str, error: io::Error) -> Self {
        match error.kind() {
            // ESRCH shows up when the process dies between open and read.
            io::ErrorKind::NotFound => Self::NoSuchProcess { pid },
            _ if error.raw_os_error() == Some(libc::ESRCH) => Self::NoSuchProcess { pid },
            io::ErrorKind::PermissionDenied => Self::NotPermitted { path: path.to_owned() },
            _ => Self::ProcRead { path: path.to_owned(), error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_process_is_reported_as_such() {
        // PIDs above pid_max never exist.
        let err = UserUnwinder::new(u32::MAX - 1).err().unwrap();
        assert!(matches!(err, StackError::NoSuchProcess { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}
