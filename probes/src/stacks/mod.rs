//! User and kernel stacks of a live process: unwinding a blocked thread's user stack from the
//! registers the kernel reports (no ptrace stop), and naming addresses as functions, modules and
//! source lines.

mod memory;
pub mod modules;
mod objects;
mod symbolize;
mod unwind;

#[cfg(test)]
mod live_tests;

use std::io;
use std::sync::Arc;

/// The target's map is parsed in procfs/ with the rest of /proc; stacks and the Go reader use it
/// under this name.
pub(crate) use crate::procfs::maps;

pub use maps::AddressSpace;
pub use modules::{ModuleMapping, executable_mappings, kernel_build_id};
pub use symbolize::{Frame, Symbolizer};
pub use unwind::UserUnwinder;

/// User stacks of one process's threads, view after view. Each view reads the process's map
/// once ([`ThreadStacks::begin_view`]) and every thread's unwind and symbolisation use that
/// reading; the unwinder's parsed objects (CFI) and the symbolizer's caches live as long as
/// this does. `Send`, so an observer moving between threads can keep it.
pub struct ThreadStacks {
    pid: u32,
    /// `None` until a view began, and when the last view could not read the process.
    unwinder: Option<UserUnwinder>,
    symbolizer: Symbolizer,
}

impl ThreadStacks {
    pub fn new(pid: u32) -> Self {
        Self { pid, unwinder: None, symbolizer: Symbolizer::new() }
    }

    /// Starts a view: reads /proc/PID/maps once. Call it after reading the view's thread list,
    /// so every listed thread's stack is in the map. A process that cannot be read yields
    /// empty user stacks for this view.
    pub fn begin_view(&mut self) {
        let space = match AddressSpace::read(self.pid) {
            Ok(space) => Arc::new(space),
            Err(e) => {
                tracing::debug!(pid = self.pid, error = %e, "no user stacks in this view");
                self.unwinder = None;
                return;
            }
        };
        match &mut self.unwinder {
            Some(u) => u.use_space(space),
            None => {
                self.unwinder = UserUnwinder::with_space(space)
                    .map_err(|e| tracing::debug!(pid = self.pid, error = %e, "no user stacks in this view"))
                    .ok();
            }
        }
    }

    /// The named user stack of a thread stopped at `pc` with stack pointer `sp` (and frame
    /// pointer `bp` when known), innermost first, at most `max_frames`; empty when no view
    /// began or the process could not be read.
    pub fn user_stack(&mut self, pc: u64, sp: u64, bp: Option<u64>, max_frames: usize) -> Vec<Frame> {
        let Some(u) = self.unwinder.as_mut() else { return Vec::new() };
        let addrs = u.unwind(pc, sp, bp, max_frames);
        self.symbolizer.user_in(u.space(), &addrs)
    }
}

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
    pub(crate) fn from_proc_io(pid: u32, path: &str, error: io::Error) -> Self {
        match crate::errno::classify(&error) {
            crate::errno::ErrnoClass::Gone => Self::NoSuchProcess { pid },
            crate::errno::ErrnoClass::Permission => Self::NotPermitted { path: path.to_owned() },
            crate::errno::ErrnoClass::Other => Self::ProcRead { path: path.to_owned(), error },
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
