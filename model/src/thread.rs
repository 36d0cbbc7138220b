//! OS threads: their scheduler state, the syscall a blocked one is in (with its fd, how long,
//! who woke it), what completed during the window, and what a runtime uses the thread for.

use serde::{Deserialize, Serialize};

use crate::stack::StackId;

/// What a thread is doing, as scripts and people see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    Running,
    Runnable,
    Sleeping,
    DiskSleep,
    Stopped,
    Zombie,
}

impl ThreadState {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Runnable => "runnable",
            ThreadState::Sleeping => "sleeping",
            ThreadState::DiskSleep => "disk_sleep",
            ThreadState::Stopped => "stopped",
            ThreadState::Zombie => "zombie",
        }
    }

    /// Off CPU and not waiting for one.
    pub fn is_blocked(self) -> bool {
        matches!(self, ThreadState::Sleeping | ThreadState::DiskSleep)
    }
}

/// What kind of waiting a syscall stands for (`parkscope_common::syscalls::class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallClass {
    Read,
    Write,
    Poll,
    Futex,
    Sleep,
    Other,
}

impl SyscallClass {
    /// All classes, in display order.
    pub const ALL: [SyscallClass; 6] = [
        SyscallClass::Read,
        SyscallClass::Write,
        SyscallClass::Poll,
        SyscallClass::Futex,
        SyscallClass::Sleep,
        SyscallClass::Other,
    ];

    /// The class of syscall number `nr` (x86_64).
    pub fn of(nr: u32) -> SyscallClass {
        parkscope_common::syscalls::class(nr).into()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SyscallClass::Read => "read",
            SyscallClass::Write => "write",
            SyscallClass::Poll => "poll",
            SyscallClass::Futex => "futex",
            SyscallClass::Sleep => "sleep",
            SyscallClass::Other => "other",
        }
    }
}

impl From<parkscope_common::syscalls::SyscallClass> for SyscallClass {
    fn from(c: parkscope_common::syscalls::SyscallClass) -> Self {
        use parkscope_common::syscalls::SyscallClass as C;
        match c {
            C::Read => SyscallClass::Read,
            C::Write => SyscallClass::Write,
            C::Poll => SyscallClass::Poll,
            C::Futex => SyscallClass::Futex,
            C::Sleep => SyscallClass::Sleep,
            C::Other => SyscallClass::Other,
        }
    }
}

/// The syscall a blocked thread is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallView {
    pub nr: u32,
    pub name: String,
    pub class: SyscallClass,
    pub fd: Option<i32>,
    pub fd_desc: Option<String>,
    /// Exact time in this call, known when the call was entered while we were attached.
    pub blocked_ns: Option<u64>,
    /// For calls entered before attach: a lower bound on the time in this call.
    pub blocked_at_least_ns: Option<u64>,
    /// The task that last woke this thread while we were attached (from sched_waking).
    pub waker_tid: Option<u32>,
    /// The futex word's address, for futex-class calls.
    pub futex_addr: Option<String>,
    /// The raw first six arguments, as /proc/PID/task/TID/syscall shows them.
    pub args: [String; 6],
}

impl SyscallView {
    /// The best known time in the call: exact, else the lower bound.
    pub fn time_ns(&self) -> Option<u64> {
        self.blocked_ns.or(self.blocked_at_least_ns)
    }
}

/// Completed calls of one kind on one thread during the window (from the in-kernel histograms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedCalls {
    pub name: String,
    pub class: SyscallClass,
    pub fd: Option<i32>,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// One call that blocked for at least the long-call threshold and returned during the window
/// (streamed from the kernel's ring buffer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongCall {
    pub name: String,
    pub class: SyscallClass,
    pub fd: Option<i32>,
    pub duration_ns: u64,
    /// How long before the view was taken the call returned.
    pub ended_ns_ago: u64,
    /// The syscall's return value (negative: -errno).
    pub ret: i64,
}

/// What a runtime thread is for. Threads that wait by design (idle Ms, the netpoller, sysmon)
/// are counted apart from the blocked threads (`summary.runtime_idle`), not as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadRole {
    /// Go: running a goroutine (or blocked in a syscall or C call on its behalf).
    Goroutine,
    /// Go: an M with no goroutine parked on its futex, waiting for work.
    IdleM,
    /// Go: an M with no goroutine in epoll_pwait on the runtime's epoll fd: the netpoller.
    Netpoller,
    /// Go: the runtime's sysmon thread (no P, wakes up periodically).
    Sysmon,
    /// Go: an M with no goroutine doing something else (spinning, starting, GC work).
    Runtime,
    /// tokio: a worker thread of a runtime (polls tasks, drives the I/O driver when parked).
    TokioWorker,
    /// tokio: a thread of the blocking pool (`spawn_blocking`, file I/O).
    TokioBlocking,
}

impl ThreadRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadRole::Goroutine => "goroutine",
            ThreadRole::IdleM => "idle_m",
            ThreadRole::Netpoller => "netpoller",
            ThreadRole::Sysmon => "sysmon",
            ThreadRole::Runtime => "runtime",
            ThreadRole::TokioWorker => "tokio_worker",
            ThreadRole::TokioBlocking => "tokio_blocking",
        }
    }

    /// Waiting is this thread's job: not a stuck thread.
    pub fn is_idle_by_design(self) -> bool {
        matches!(self, ThreadRole::IdleM | ThreadRole::Netpoller | ThreadRole::Sysmon)
    }
}

/// One OS thread of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadView {
    pub tid: u32,
    pub name: String,
    pub state: ThreadState,
    pub syscall: Option<SyscallView>,
    pub wchan: Option<String>,
    /// The user stack (in the snapshot's stack table), innermost first; empty unless blocked
    /// and stacks were asked for.
    pub user_stack_id: StackId,
    pub kernel_stack_id: StackId,
    /// Calls completed during the window, most total time first.
    pub completed: Vec<CompletedCalls>,
    /// The latest calls that blocked >= `summary.long_call_threshold_ns` and returned during the
    /// window, newest first.
    pub long_calls: Vec<LongCall>,
    /// What the runtime uses this thread for (see [`ThreadRole`]); null for other programs.
    pub role: Option<ThreadRole>,
    /// For Go targets, the goroutine this thread (its M) is running (m.curg).
    pub goroutine: Option<u64>,
    /// For async runtimes (tokio), the task this worker is polling now.
    #[serde(default)]
    pub task: Option<crate::task::TaskOnThread>,
}

/// Orders threads for display: blocked first, longest blocked first, then by tid. Runtime
/// threads idle by design come after the stuck ones.
pub fn sort_for_display(threads: &mut [ThreadView]) {
    threads.sort_by_key(|t| {
        let blocked = t.state.is_blocked() && !t.role.is_some_and(ThreadRole::is_idle_by_design);
        let time = t.syscall.as_ref().and_then(SyscallView::time_ns).unwrap_or(0);
        (!blocked, std::cmp::Reverse(time), t.tid)
    });
}
