//! One reading of an OS error for everything that reads another process (/proc files, its
//! memory, per-process perf events): the process is gone, we may not look, or something else.
//! Each layer maps the class to its own error type; this is the one place that decides which
//! errno means what.

use std::io;

/// What an OS error says about the process being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrnoClass {
    /// ENOENT (its /proc directory is unhashed) or ESRCH (it exited between open and read, or
    /// process_vm_readv found no such process): the process or thread no longer exists.
    Gone,
    /// EPERM (a ptrace-access check, e.g. /proc/PID/mem of another user's process, or a perf
    /// event refused) or EACCES (plain mode bits, perf_event_paranoid).
    Permission,
    Other,
}

/// Classifies `err`. Not for bpf(): there EACCES is the verifier rejecting a program, and only
/// EPERM means a missing privilege (see kernel/).
pub fn classify(err: &io::Error) -> ErrnoClass {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => ErrnoClass::Gone,
        Some(libc::EPERM | libc::EACCES) => ErrnoClass::Permission,
        Some(_) => ErrnoClass::Other,
        // Errors made in userspace (no errno) by kind, as std maps errnos to kinds.
        None => match err.kind() {
            io::ErrorKind::NotFound => ErrnoClass::Gone,
            io::ErrorKind::PermissionDenied => ErrnoClass::Permission,
            _ => ErrnoClass::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_read_the_same_everywhere() {
        let of = |errno| classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(libc::ENOENT), ErrnoClass::Gone);
        assert_eq!(of(libc::ESRCH), ErrnoClass::Gone);
        assert_eq!(of(libc::EPERM), ErrnoClass::Permission);
        assert_eq!(of(libc::EACCES), ErrnoClass::Permission);
        assert_eq!(of(libc::EIO), ErrnoClass::Other);
        assert_eq!(of(libc::EFAULT), ErrnoClass::Other);
        assert_eq!(classify(&io::Error::from(io::ErrorKind::NotFound)), ErrnoClass::Gone);
        assert_eq!(classify(&io::Error::from(io::ErrorKind::PermissionDenied)), ErrnoClass::Permission);
        assert_eq!(classify(&io::Error::other("x")), ErrnoClass::Other);
    }
}
