//! Async-runtime tasks (tokio): what the console protocol reports of each task, which worker
//! thread polls it now, and the stalls (a worker held inside one poll) seen without it.

use serde::{Deserialize, Serialize};

use crate::stack::StackId;

/// The task a runtime worker thread is polling at the snapshot, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOnThread {
    /// The runtime's own task id (`tokio::task::id()`).
    pub task_id: u64,
    /// How long the current poll has lasted; `poll_ns_exact` false makes it a lower bound.
    pub poll_ns: Option<u64>,
    pub poll_ns_exact: bool,
}

/// What a task is doing as its runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Being polled now.
    Running,
    /// Woken, waiting for a worker.
    Scheduled,
    /// Waiting to be woken.
    Idle,
    /// Finished (still listed by the console until it is dropped).
    Completed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Scheduled => "scheduled",
            TaskState::Idle => "idle",
            TaskState::Completed => "completed",
        }
    }
}

/// One task of an async runtime (from console-subscriber's gRPC protocol when the target
/// serves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The runtime's task id (`tokio::task::id()`, the console's `task.id` field) when known.
    pub task_id: Option<u64>,
    /// The console's own id of the task's span.
    pub console_id: Option<u64>,
    pub name: Option<String>,
    /// e.g. "task", "blocking", "local".
    pub kind: Option<String>,
    /// `file:line:col` of the spawn.
    pub spawn_location: Option<String>,
    pub state: TaskState,
    pub polls: u64,
    pub busy_ns: u64,
    pub scheduled_ns: u64,
    pub idle_ns: u64,
    pub wakes: u64,
    pub waker_clones: u64,
    pub waker_drops: u64,
    pub self_wakes: u64,
    /// The warnings tokio-console gives this task ("lost waker", "never yielded", ...).
    pub warnings: Vec<String>,
    /// The worker thread polling it now, when it is running.
    pub worker_tid: Option<u32>,
    /// For a task waiting on a socket or pipe, the fd and its description, when known.
    pub io_fd: Option<i32>,
    pub io_fd_desc: Option<String>,
}

/// What a stalled worker is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StallActivity {
    /// Blocked in a syscall (its name, and the fd with its description when it has one).
    Syscall { name: String, fd: Option<i32>, fd_desc: Option<String> },
    /// On a CPU (or runnable): busy inside the poll.
    OnCpu,
}

/// A runtime worker held inside one task's poll for at least the stall threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallView {
    pub tid: u32,
    pub task_id: Option<u64>,
    /// How long the poll has lasted so far; a lower bound unless `exact`.
    pub duration_ns: u64,
    pub exact: bool,
    pub activity: StallActivity,
    pub user_stack_id: StackId,
}

/// Where a snapshot's tasks come from (console-subscriber's gRPC endpoint in the target), or
/// why there are none. Absent when no task source was tried (not a console-subscriber program
/// and no `--console-addr`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSource {
    /// The endpoint read (`127.0.0.1:6669`), when one was found.
    pub addr: Option<String>,
    /// Updates merged into the task list (the first is the full state, then one per publish
    /// interval of the target's console-subscriber).
    pub updates: u32,
    /// Wall-clock instant (ns since the Unix epoch) the task stats describe: the `now` of the
    /// last update merged. Busy, scheduled and idle times run up to it.
    pub at_unix_ns: Option<u64>,
    /// Events the target's console-subscriber dropped for lack of room (its own counter).
    pub dropped_events: u64,
    /// Tasks left out by our cap on the list.
    pub tasks_capped: u64,
    /// Why the task list is missing or incomplete; the thread view is unaffected.
    pub error: Option<String>,
    pub hint: Option<String>,
}

/// Which readiness a waiter on an fd wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoInterest {
    Read,
    Write,
    ReadWrite,
}

impl IoInterest {
    pub fn as_str(self) -> &'static str {
        match self {
            IoInterest::Read => "read",
            IoInterest::Write => "write",
            IoInterest::ReadWrite => "read_write",
        }
    }
}

/// Whose waker waits on an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoWaiterKind {
    /// A runtime task (`task_id` set), idle when read: parked until the fd is ready.
    Task,
    /// The future the runtime's `block_on` runs (`#[tokio::main]`'s body), which is no task.
    BlockOn,
    /// A waker of another kind (a combinator's such as FuturesUnordered, another executor's):
    /// its task is not known.
    Other,
}

impl IoWaiterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IoWaiterKind::Task => "task",
            IoWaiterKind::BlockOn => "block_on",
            IoWaiterKind::Other => "other",
        }
    }
}

/// One waiter on a socket or pipe registered with the runtime's I/O driver (tokio's reactor):
/// its waker is stored for the fd, so the fd's readiness wakes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoWaitView {
    pub fd: i32,
    /// What the fd is (`tcp 127.0.0.1:40784 -> 127.0.0.1:41905`), when the fd table was read.
    pub fd_desc: Option<String>,
    /// The readiness waited for, when the registration says.
    pub interest: Option<IoInterest>,
    pub waiter: IoWaiterKind,
    /// The runtime's task id (`tokio::task::id()`) of a `task` waiter.
    pub task_id: Option<u64>,
}

/// The tasks parked on I/O (tokio), read from the target's memory, or why they could not be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoWaits {
    /// Every waiter found, by fd.
    pub waits: Vec<IoWaitView>,
    /// The runtime's fd registrations read.
    pub registrations: u64,
    /// Registrations or waiters left out because their memory did not have the shape
    /// parkscope knows, or changed while being read.
    pub unrecognized: u64,
    /// Registrations left out by parkscope's cap on one read.
    pub capped: u64,
    /// Why nothing could be read (the rest of the view is unaffected).
    pub error: Option<String>,
}
