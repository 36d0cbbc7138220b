//! One instant of a process: its threads, its runtime and the runtime's goroutines, the counts,
//! and the stacks they reference.

use serde::{Deserialize, Serialize};

use crate::goroutine::GoroutineView;
use crate::runtime::RuntimeView;
use crate::stack::StackTable;
use crate::summary::Summary;
use crate::thread::ThreadView;

/// Version of the model's serialised form (recordings carry it). Raised when a field changes
/// meaning or is removed; adding an optional field does not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// When a snapshot was taken, on both clocks: CLOCK_MONOTONIC (what every `*_ns` instant of
/// the model is on) and the wall clock (for people and for matching other tools' logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub monotonic_ns: u64,
    /// Nanoseconds since the Unix epoch.
    pub wall_unix_ns: u64,
}

/// The whole view of a process at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    pub pid: u32,
    pub comm: String,
    pub taken_at: Timestamp,
    pub threads: Vec<ThreadView>,
    /// The target's language runtime, when one was found (null otherwise).
    pub runtime: Option<RuntimeView>,
    /// Filled for Go targets from the runtime's own structures; empty otherwise.
    pub goroutines: Vec<GoroutineView>,
    /// Filled for async runtimes (tokio) whose tasks can be read; empty otherwise.
    #[serde(default)]
    pub tasks: Vec<crate::task::TaskView>,
    /// Runtime workers held inside one poll for at least the stall threshold (tokio).
    #[serde(default)]
    pub stalls: Vec<crate::task::StallView>,
    /// Where `tasks` came from, or why it is empty (null when no task source was tried).
    #[serde(default)]
    pub task_source: Option<crate::task::TaskSource>,
    /// Tasks parked on sockets and pipes (tokio: their wakers in the reactor's registrations);
    /// null when the runtime has none parkscope reads, or the view described no fds.
    #[serde(default)]
    pub io_waits: Option<crate::task::IoWaits>,
    pub summary: Summary,
    /// Set when the target exited before the snapshot was complete.
    pub target_exited: bool,
    /// Every stack the threads and goroutines reference.
    pub stacks: StackTable,
}

impl Snapshot {
    /// An empty snapshot of `pid` taken at `taken_at`.
    pub fn new(pid: u32, comm: String, taken_at: Timestamp) -> Snapshot {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            pid,
            comm,
            taken_at,
            threads: Vec::new(),
            runtime: None,
            goroutines: Vec::new(),
            tasks: Vec::new(),
            stalls: Vec::new(),
            task_source: None,
            io_waits: None,
            summary: Summary::default(),
            target_exited: false,
            stacks: StackTable::new(),
        }
    }

    /// The thread `tid`, if the snapshot has it.
    pub fn thread(&self, tid: u32) -> Option<&ThreadView> {
        self.threads.iter().find(|t| t.tid == tid)
    }
}
