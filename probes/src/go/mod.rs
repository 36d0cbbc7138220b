//! The Go runtime seen from outside: detects a Go target (buildinfo), finds the runtime's
//! struct layouts (the binary's DWARF, else the repo's per-release table), and reads every
//! goroutine, M, P and the scheduler from the live process's memory without stopping it.

mod binary;
pub mod buildinfo;
mod dwarf;
#[doc(hidden)]
pub mod fuzz;
pub mod layout;
pub mod locate;
mod memory;
mod netpoll;
pub mod pclntab;
mod runtime;
pub mod uprobes;

use std::io;

pub use binary::{FunctionCode, GLOBALS, GoBinary, UPROBE_FUNCTIONS};
pub use buildinfo::BuildInfo;
pub use layout::{Layout, LayoutSource, LayoutTable, SchedtraceStyle, schedtrace_style};
pub use pclntab::{GoExecutable, GoLocation, Pclntab, PclntabError, PclntabVersion};
pub use runtime::{GStatus, GoProcess, GoroutineState, MState, PState, PollMode, RuntimeState, SchedState};
pub use uprobes::{FrameSetup, GoUprobePlan, UprobePoint, frame_setup};

use crate::errno::{self, ErrnoClass};
use crate::stacks::StackError;

/// Why the Go runtime of a process cannot be read. Messages are one line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("process {pid} is not a Go program ({path} has no Go build information)")]
    NotGo { pid: u32, path: String },
    /// No symbol table (`-ldflags="-s -w"`), and the runtime's variables could not be located
    /// in its code either (see [`locate`]).
    #[error(
        "{path} ({version}) has no symbol table, and locating the runtime's variables in its code failed: {missing}"
    )]
    Stripped { path: String, version: String, missing: String },
    #[error("the runtime layout of {version} is unknown: no {missing}")]
    UnknownLayout { version: String, missing: String },
    #[error("process {0} exited while its Go runtime was being read")]
    Exited(u32),
    #[error("process {0} does not exist")]
    NoSuchProcess(u32),
    #[error("not permitted to read the memory of process {pid}")]
    NotPermitted { pid: u32 },
    #[error("cannot read the target's memory at {addr:#x}")]
    Unreadable { addr: u64 },
    #[error("cannot read {path}: {reason}")]
    Binary { path: String, reason: String },
    #[error("the runtime's {what} looks inconsistent after several reads ({detail})")]
    Inconsistent { what: &'static str, detail: String },
}

impl GoError {
    fn from_stack(pid: u32, e: StackError) -> GoError {
        match e {
            StackError::NoSuchProcess { .. } => GoError::NoSuchProcess(pid),
            StackError::NotPermitted { .. } => GoError::NotPermitted { pid },
            other => GoError::Binary { path: format!("/proc/{pid}"), reason: other.to_string() },
        }
    }

    fn from_io(pid: u32, path: &str, e: &io::Error) -> GoError {
        match errno::classify(e) {
            ErrnoClass::Gone => GoError::NoSuchProcess(pid),
            ErrnoClass::Permission => GoError::NotPermitted { pid },
            ErrnoClass::Other => GoError::Binary { path: path.to_owned(), reason: e.to_string() },
        }
    }
}
