//! A runtime's part of a profile: what a [`super::RuntimeReader`] follows over an off-CPU
//! profile's window ([`RuntimeProfile`]: reads during the window, exact sums from its uprobes at
//! the end) and how it labels the profile ([`ProfileLabels`]: the thread samples' roles and the
//! task each ran, and samples of its own tasks' waits under their own stacks and sample type).
//! The profile builder (crate::profile::offcpu) knows no runtime; it asks these traits.

use std::time::Duration;

use parkscope_model::{
    RuntimeKind,
    profile::{LabelValue, ValueType},
};
use parkscope_probes::kernel::KernelProbes;

/// A runtime followed over one profile window, on the collector's thread.
pub trait RuntimeProfile {
    /// Reads the runtime once (blocking: target memory). Returns how long after this read
    /// began the next one is due. `last`: the window has ended; this read observes its end.
    fn read(&mut self, last: bool) -> Duration;

    /// The window is over: credit what the reads saw up to `window_end_ns`, and, when the
    /// runtime's uprobes ran, replace the estimates by what they summed in `probes`.
    fn finish(&mut self, probes: Option<&KernelProbes>, window_start_ns: u64, window_end_ns: u64);

    /// Found at the start but never read since: why (for the profile's comments and the
    /// consumer's warning).
    fn unreadable(&self) -> Option<RuntimeUnreadable>;

    /// How the profile is labelled from what was followed.
    fn labels(&self) -> &dyn ProfileLabels;
}

/// A runtime that cannot be read over a profile's window: the cause, and a remedy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeUnreadable {
    pub runtime: RuntimeKind,
    pub cause: String,
    pub hint: Option<String>,
}

/// What is known of one thread sample when the runtime labels it.
#[derive(Debug, Clone, Copy)]
pub struct ThreadSampleFacts<'a> {
    pub tid: u32,
    /// The syscall it was blocked in, if known.
    pub syscall: Option<&'a str>,
    /// The fd of that call, -1 if none.
    pub fd: i32,
    /// Function names of its user stack, innermost first.
    pub user_functions: &'a [&'a str],
}

/// One sample of a runtime's own tasks: a user stack of the target, labels, and nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSample<'a> {
    /// Innermost first: the saved pc, then return addresses.
    pub pcs: &'a [u64],
    pub labels: Vec<(String, LabelValue)>,
    pub ns: u64,
}

/// How a runtime labels an off-CPU profile.
pub trait ProfileLabels {
    /// The sample type its tasks' samples are valued in (Go: `goroutine_wait/nanoseconds`);
    /// None for a runtime whose tasks have no samples of their own (tokio labels threads only).
    fn sample_type(&self) -> Option<ValueType>;

    /// User stacks of the target to symbolise: its tasks' stacks, and every single address
    /// [`Self::thread_labels`] asks `function_at` about (as one-address stacks).
    fn user_stacks(&self) -> Vec<&[u64]>;

    /// Labels of a thread's sample (its role, the task it ran). `function_at` names an address
    /// of the target listed by [`Self::user_stacks`].
    fn thread_labels(
        &self,
        thread: &ThreadSampleFacts<'_>,
        function_at: &dyn Fn(u64) -> Option<String>,
    ) -> Vec<(String, LabelValue)>;

    /// Its tasks' samples; `fd_text` describes an fd of the target.
    fn task_samples(&self, fd_text: &dyn Fn(i32) -> String) -> Vec<TaskSample<'_>>;

    /// What the task samples rest on, for the profile's comments.
    fn comment(&self) -> String;
}
