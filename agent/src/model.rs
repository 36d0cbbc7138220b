//! The model every output renders: a process, its threads, what each is blocked in. Field names
//! are the JSON contract (README.md "JSON output"); add fields, never rename them.

use serde::Serialize;

/// What a thread is doing, as scripts and people see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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

/// The syscall a blocked thread is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyscallView {
    pub nr: u32,
    pub name: String,
    pub class: &'static str,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompletedCalls {
    pub name: String,
    pub class: &'static str,
    pub fd: Option<i32>,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// One call that blocked for at least the long-call threshold and returned during the window
/// (streamed from the kernel's ring buffer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LongCall {
    pub name: String,
    pub class: &'static str,
    pub fd: Option<i32>,
    pub duration_ns: u64,
    /// How long before the view was taken the call returned.
    pub ended_ns_ago: u64,
    /// The syscall's return value (negative: -errno).
    pub ret: i64,
}

/// One OS thread of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadView {
    pub tid: u32,
    pub name: String,
    pub state: ThreadState,
    pub syscall: Option<SyscallView>,
    pub wchan: Option<String>,
    pub user_stack: Vec<String>,
    pub kernel_stack: Vec<String>,
    /// Calls completed during the window, most total time first.
    pub completed: Vec<CompletedCalls>,
    /// The latest calls that blocked >= `summary.long_call_threshold_ns` and returned during the
    /// window, newest first.
    pub long_calls: Vec<LongCall>,
}

/// Counts for the whole process at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub threads: usize,
    pub running: usize,
    pub runnable: usize,
    pub blocked: usize,
    pub read: usize,
    pub write: usize,
    pub poll: usize,
    pub futex: usize,
    pub sleep: usize,
    pub other: usize,
    /// Longest time any thread has been in its current call (exact or lower bound).
    pub max_blocked_ns: Option<u64>,
    /// How long probes were attached before this view was taken (0: /proc only).
    pub window_ns: u64,
    /// Events the kernel side had to drop for lack of room (0 means nothing was lost).
    pub dropped_events: u64,
    /// Syscall entries seen for the target during the window.
    pub syscalls_traced: u64,
    /// Threshold for `long_calls` (null when they were not collected).
    pub long_call_threshold_ns: Option<u64>,
}

/// The whole view of a process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub comm: String,
    pub threads: Vec<ThreadView>,
    /// Filled for Go targets by the Go runtime hooks; empty otherwise.
    pub goroutines: Vec<serde_json::Value>,
    pub summary: Summary,
    /// Set when the target exited before the view was complete.
    pub target_exited: bool,
}

impl Summary {
    /// Counts threads by state and blocked threads by syscall class.
    pub fn count(threads: &[ThreadView]) -> Summary {
        let mut s = Summary { threads: threads.len(), ..Summary::default() };
        for t in threads {
            match t.state {
                ThreadState::Running => s.running += 1,
                ThreadState::Runnable => s.runnable += 1,
                st if st.is_blocked() => {
                    s.blocked += 1;
                    let class = t.syscall.as_ref().map_or("other", |c| c.class);
                    match class {
                        "read" => s.read += 1,
                        "write" => s.write += 1,
                        "poll" => s.poll += 1,
                        "futex" => s.futex += 1,
                        "sleep" => s.sleep += 1,
                        _ => s.other += 1,
                    }
                    if let Some(ns) = t.syscall.as_ref().and_then(SyscallView::time_ns) {
                        s.max_blocked_ns = Some(s.max_blocked_ns.map_or(ns, |m| m.max(ns)));
                    }
                }
                _ => {}
            }
        }
        s
    }
}

/// Orders threads for display: blocked first, longest blocked first, then by tid.
pub fn sort_for_display(threads: &mut [ThreadView]) {
    threads.sort_by_key(|t| {
        let blocked = t.state.is_blocked();
        let time = t.syscall.as_ref().and_then(SyscallView::time_ns).unwrap_or(0);
        (!blocked, std::cmp::Reverse(time), t.tid)
    });
}
