//! Why collection could not start or go on, as typed causes: the consumer (the agent) turns
//! each into its message, hint and exit code.

/// The layers' own causes, re-exported so that consumers can tell them apart (exit codes)
/// without importing the probes.
pub use parkscope_probes::{go::GoError, kernel::KernelError, procfs::ProcError};

use crate::runtime::go::uprobes::GoUprobeError;

/// A failure of the collector, by the layer it came from.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// /proc: the target is gone, not a user process, or not ours to read.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// Loading or attaching the eBPF probes.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The Go runtime: found but unreadable, or gone while read.
    #[error(transparent)]
    Go(#[from] GoError),
    #[error(transparent)]
    GoUprobes(#[from] GoUprobeError),
    /// A runtime was required (`RuntimeMode::Require`) and the target has none.
    #[error("process {pid} ({comm}) is not a Go program")]
    NotGo { pid: u32, comm: String },
    /// Asked of a runtime that does not have it (tokio's uprobes, its own schedtrace).
    #[error("{0}")]
    Unsupported(String),
    /// The collector's thread could not be started, or ended without saying why.
    #[error("{0}")]
    Internal(String),
}

impl CollectError {
    /// The target went away (not a fallback case: there is nothing left to show).
    pub fn target_gone(&self) -> bool {
        match self {
            CollectError::Proc(e) => matches!(e, ProcError::NoSuchProcess(_) | ProcError::Exited(_)),
            CollectError::Go(e) => matches!(e, GoError::NoSuchProcess(_) | GoError::Exited(_)),
            _ => false,
        }
    }

    /// A hint for the person at the terminal, where the cause has a known remedy that does
    /// not depend on the command (the agent adds the others).
    pub fn hint(&self) -> Option<String> {
        match self {
            CollectError::Go(e) | CollectError::GoUprobes(GoUprobeError::Go(e)) => go_hint(e),
            _ => None,
        }
    }
}

/// The remedy for a Go runtime that cannot be read, as the person at the terminal can apply it.
pub fn go_hint(e: &GoError) -> Option<String> {
    Some(match e {
        GoError::Stripped { .. } => "this Go runtime's code is not laid out as parkscope expects; rebuild without -s (-ldflags=-w keeps the symbol table), or pass --no-go for the thread view only".to_owned(),
        GoError::UnknownLayout { .. } => {
            "build the target with DWARF (no -ldflags=-w), or pass --no-go for the thread view only".to_owned()
        }
        GoError::NotGo { .. } => "drop --goroutines to see the threads of a non-Go process".to_owned(),
        GoError::NoSuchProcess(pid) | GoError::Exited(pid) => {
            format!("check the pid (`ps -p {pid}`); the process may have exited")
        }
        GoError::NotPermitted { .. } => {
            "run as root, or with CAP_SYS_PTRACE to read another process's memory".to_owned()
        }
        _ => return None,
    })
}
