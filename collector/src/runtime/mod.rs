//! Language runtimes read from outside the target, behind one trait: the observer asks a
//! [`RuntimeReader`] for its tasks and for what each thread is for, and never looks at a
//! runtime's own types. Go (memory reads of allgs/allm/allp/sched, optional uprobes) is the
//! first reader; another runtime (tokio) is a sibling implementation, detected by [`detect`].

pub mod go;
pub mod profile;
pub mod tokio;

use std::time::Duration;

use parkscope_model::{GoroutineView, IoWaits, RuntimeView, StackTable, StallView, ThreadView};
use parkscope_probes::{
    kernel::{KernelCounters, KernelProbes},
    procfs::{fds::FdTable, threads::ThreadSample},
};

use crate::error::CollectError;

/// What a reader is given for one read, beside the target's memory.
pub struct ReadContext<'a> {
    /// The view's threads: the reader fills in each one's role and the task it runs.
    pub threads: &'a mut [ThreadView],
    /// The target's fd table, when the view describes fds.
    pub fds: Option<&'a FdTable>,
    /// Read and symbolise each task's stack into `stack_table`.
    pub stacks: bool,
    pub stack_table: &'a mut StackTable,
    /// The kernel probes, when loaded (a reader's own uprobes keep their state there).
    pub probes: Option<&'a KernelProbes>,
    /// The /proc samples the threads were made from (thread ids, switch counts).
    pub samples: &'a [ThreadSample],
    /// The view's instant, CLOCK_MONOTONIC ns.
    pub now_ns: u64,
    /// A runtime worker held inside one task's poll at least this long is a stall.
    pub stall_ns: u64,
}

/// One read of a runtime.
pub struct RuntimeRead {
    /// The runtime's tasks (goroutines), in the model's form.
    pub goroutines: Vec<GoroutineView>,
    /// The runtime part of the view.
    pub view: RuntimeView,
    /// The kernel's counters when the reader read them after its own probe state (its
    /// uprobes keep counting meanwhile), else None and the view's own read stands.
    pub counters: Option<KernelCounters>,
    /// The reader's uprobes count the runtime's transitions (`summary.go_transitions`).
    pub transitions_counted: bool,
    /// Workers held inside one task's poll for at least the stall threshold.
    pub stalls: Vec<StallView>,
    /// How long at least no worker can have polled the I/O driver (all inside polls), when
    /// that is at least the stall threshold and a stall lasts.
    pub io_driver_starved_ns: Option<u64>,
    /// Tasks parked on sockets and pipes, when the runtime tells (tokio, with the fd table).
    pub io_waits: Option<IoWaits>,
}

/// One interval of a runtime's own scheduler trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedTrace {
    /// The runtime's name (`go`).
    pub runtime: &'static str,
    /// Since the trace began, as the text's `SCHED <ms>ms` says.
    pub elapsed_ms: u64,
    /// The runtime's own text (Go: the lines GODEBUG=schedtrace prints), newline-terminated.
    pub text: String,
    /// The numbers of its SCHED line, named as the text names them, in the text's order.
    pub counts: Vec<(&'static str, SchedValue)>,
}

/// A number of a SCHED line: one count, or one per scheduler queue (Go: per P).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedValue {
    Count(i64),
    PerQueue(Vec<u64>),
}

/// A runtime found in a target. Only what a runtime implements is here: a reader for a runtime
/// without uprobes or a schedtrace of its own says so with an error, not a stub.
pub trait RuntimeReader: Send {
    /// What the binary says of the runtime, before any read (kind, version, module, layout).
    fn identity(&self) -> RuntimeView;

    /// The runtime part of a view whose read failed with `err`: the identity plus the cause
    /// and a hint. The thread view stays whole.
    fn unreadable(&self, err: &CollectError) -> RuntimeView;

    /// Reads the runtime's tasks and joins them with the threads (roles, the task each runs,
    /// syscalls, fds). Blocking: target memory and symbolisation.
    fn read(&mut self, cx: ReadContext<'_>) -> Result<RuntimeRead, CollectError>;

    /// Attaches the runtime's opt-in uprobes (exact time in state) to loaded probes.
    fn attach_uprobes(&mut self, probes: &mut KernelProbes) -> Result<(), CollectError>;

    /// The runtime's own scheduler trace for this instant, in its own text format (Go: the
    /// lines GODEBUG=schedtrace prints, `detail` adding scheddetail's).
    fn schedtrace(&self, elapsed_ms: u64, detail: bool) -> Result<SchedTrace, CollectError>;

    /// Starts following the runtime over an off-CPU profile's window that began at
    /// `window_start_ns` (see [`profile::RuntimeProfile`]); with `exact`, attaches its uprobes
    /// to `probes` summing in kernel from the window start. None: the runtime adds nothing to
    /// profiles (its threads are profiled like any others).
    fn profile<'a>(
        &'a mut self,
        _probes: Option<&mut KernelProbes>,
        _window_start_ns: u64,
        _exact: bool,
    ) -> Result<Option<Box<dyn profile::RuntimeProfile + 'a>>, CollectError> {
        Ok(None)
    }
    /// Whether the runtime has a scheduler trace of its own ([`RuntimeReader::schedtrace`]).
    fn has_schedtrace(&self) -> bool;

    /// Whether its join learns from the threads' user stacks, so views must unwind them.
    fn needs_thread_stacks(&self) -> bool;

    /// How often to [`RuntimeReader::sample`] between views; None: its reads need none.
    fn sample_every(&self) -> Option<Duration>;

    /// A cheap read between views (tokio: which task each worker polls now), so that the
    /// next view can tell how long a poll has lasted.
    fn sample(&mut self, now_ns: u64);
}

/// What looking for a runtime in the target found.
pub enum Detected {
    /// No runtime parkscope reads (a C program, say).
    None,
    Found(Box<dyn RuntimeReader>),
    /// A runtime that cannot be read: every view carries `view` (why, with a hint) next to
    /// the threads.
    Unreadable {
        view: Box<RuntimeView>,
        error: CollectError,
    },
}

/// Looks for each runtime parkscope reads in process `pid`. Blocking file work.
pub fn detect(pid: u32) -> Detected {
    match go::GoReader::detect(pid) {
        Detected::None => tokio::TokioReader::detect(pid),
        found => found,
    }
}
