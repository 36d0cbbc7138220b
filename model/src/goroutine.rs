//! Go goroutines as the runtime's own structures describe them, joined with the thread view.

use serde::{Deserialize, Serialize};

use crate::stack::StackId;
use crate::thread::SyscallView;

/// A goroutine's status, the scan bit stripped (the runtime's `_G*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoStatus {
    Idle,
    Runnable,
    Running,
    Syscall,
    Waiting,
    Dead,
    Copystack,
    Preempted,
}

impl GoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GoStatus::Idle => "idle",
            GoStatus::Runnable => "runnable",
            GoStatus::Running => "running",
            GoStatus::Syscall => "syscall",
            GoStatus::Waiting => "waiting",
            GoStatus::Dead => "dead",
            GoStatus::Copystack => "copystack",
            GoStatus::Preempted => "preempted",
        }
    }
}

/// Which readiness a goroutine parked on the netpoller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetpollMode {
    Read,
    Write,
}

impl NetpollMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetpollMode::Read => "read",
            NetpollMode::Write => "write",
        }
    }
}

/// The fd a goroutine parked in "IO wait" waits on (from the runtime's pollDesc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetpollView {
    pub fd: i32,
    pub mode: NetpollMode,
    pub fd_desc: Option<String>,
}

/// One goroutine of a Go target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoroutineView {
    pub goid: u64,
    pub status: GoStatus,
    /// The runtime's own string ("IO wait", "chan receive", ...) while waiting.
    pub wait_reason: Option<String>,
    /// How long it has waited at least, when the runtime recorded it (g.waitsince is set by the
    /// GC the first time it finds the goroutine waiting, so this is a lower bound); exact when
    /// the Go uprobes saw it park (`status_ns_exact`).
    pub waiting_ns: Option<u64>,
    /// With `--go-uprobes`: how long it has been in its status: exact (`status_ns_exact`) when
    /// the uprobes saw the change, else a lower bound (the window: it has not changed since
    /// the probes attached). Null without uprobes, or when it cannot be known.
    pub status_ns: Option<u64>,
    pub status_ns_exact: bool,
    /// With `--go-uprobes`: status changes of this goroutine during the window.
    pub transitions: Option<u32>,
    /// In a cgo call (the runtime's own dump only says "syscall").
    pub cgo: bool,
    /// The C function of a cgo call, from the `_Cfunc_` frame of its stack.
    pub c_function: Option<String>,
    /// Id of the M it runs on (running, or in a syscall/cgo call).
    pub m: Option<i64>,
    /// That M's OS thread id.
    pub tid: Option<u32>,
    /// For goroutines in a syscall: the syscall its thread is blocked in (from the thread view).
    pub syscall: Option<SyscallView>,
    pub netpoll: Option<NetpollView>,
    /// The goroutine's function (g.startpc).
    pub start: String,
    /// The function whose `go` statement created it (g.gopc); null for runtime-created ones.
    pub created_by: Option<String>,
    pub parent_goid: Option<u64>,
    /// Its stack in the snapshot's table, innermost first: unwound from the saved registers
    /// of a parked goroutine, or its thread's stack when it is on a CPU or blocked in the kernel.
    pub stack_id: StackId,
}
