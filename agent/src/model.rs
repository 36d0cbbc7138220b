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
    /// For Go targets, what the runtime uses this thread for (see [`ThreadRole`]); null otherwise.
    pub role: Option<ThreadRole>,
    /// For Go targets, the goroutine this thread (its M) is running (m.curg).
    pub goroutine: Option<u64>,
}

/// What a Go runtime thread (an M) is for. Idle Ms and the netpoller wait by design: they are
/// counted apart from the blocked threads (`summary.runtime_idle`), not as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadRole {
    /// Running a goroutine (or blocked in a syscall or C call on its behalf).
    Goroutine,
    /// An M with no goroutine parked on its futex, waiting for work.
    IdleM,
    /// An M with no goroutine in epoll_pwait on the runtime's epoll fd: the netpoller.
    Netpoller,
    /// The runtime's sysmon thread (no P, wakes up periodically).
    Sysmon,
    /// An M with no goroutine doing something else (spinning, starting, GC work).
    Runtime,
}

impl ThreadRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadRole::Goroutine => "goroutine",
            ThreadRole::IdleM => "idle_m",
            ThreadRole::Netpoller => "netpoller",
            ThreadRole::Sysmon => "sysmon",
            ThreadRole::Runtime => "runtime",
        }
    }

    /// Waiting is this thread's job: not a stuck thread.
    pub fn is_idle_by_design(self) -> bool {
        matches!(self, ThreadRole::IdleM | ThreadRole::Netpoller | ThreadRole::Sysmon)
    }
}

/// The fd a goroutine parked in "IO wait" waits on (from the runtime's pollDesc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetpollView {
    pub fd: i32,
    pub mode: &'static str,
    pub fd_desc: Option<String>,
}

/// One goroutine of a Go target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoroutineView {
    pub goid: u64,
    /// idle|runnable|running|syscall|waiting|dead|copystack|preempted (the scan bit stripped).
    pub status: &'static str,
    /// The runtime's own string ("IO wait", "chan receive", ...) while waiting.
    pub wait_reason: Option<String>,
    /// How long it has waited at least, when the runtime recorded it (g.waitsince is set by the
    /// GC the first time it finds the goroutine waiting, so this is a lower bound); exact when
    /// the Go uprobes saw it park (`status_ns_exact`).
    pub waiting_ns: Option<u64>,
    /// With `--go-uprobes`: how long it has been in its status: exact (`status_ns_exact`) when
    /// the uprobes saw the change, else a lower bound (the window: it has not changed since
    /// the probes attached). Null without uprobes, or when it cannot be known (a status the
    /// runtime entered without casgstatus, such as a syscall in newer runtimes, unless its
    /// thread's syscall time is known).
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
    /// Symbolised frames, innermost first: unwound from the saved registers of a parked
    /// goroutine, or its thread's stack when it is on a CPU or blocked in the kernel.
    pub stack: Vec<String>,
}

/// The language runtime of the target, when parkscope finds one. When it cannot be read
/// (`error` set), only what the binary itself says (kind, version, module) is filled, and the
/// rest of the view is the thread view alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeView {
    /// "go".
    pub kind: &'static str,
    /// e.g. "go1.27.3" (from the binary's build information; "unknown" if even that is unreadable).
    pub version: String,
    pub module: Option<String>,
    /// Where the struct layouts came from: "dwarf" or "table:go1.27"; null when none was found.
    pub layout: Option<String>,
    /// Null when the runtime could not be read.
    pub gomaxprocs: Option<i64>,
    /// Free (dead) goroutine structs, not listed; null when the runtime could not be read.
    pub goroutines_dead: Option<usize>,
    /// Entries dropped because they changed while being read; null when not read.
    pub goroutines_inconsistent: Option<usize>,
    /// Why the runtime could not be read (one line); null when it was read. Goroutines are then
    /// not listed and thread roles are unknown.
    pub error: Option<String>,
    /// What to do about `error` (printed on stderr, not part of the JSON).
    #[serde(skip)]
    pub hint: Option<String>,
}

impl RuntimeView {
    /// Whether the goroutines and thread roles of this view come from a read of the runtime.
    pub fn is_read(&self) -> bool {
        self.error.is_none()
    }
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
    /// Go runtime threads waiting by design (idle Ms, the netpoller, sysmon): not in `blocked`.
    pub runtime_idle: usize,
    /// Goroutines listed, and how many of them are parked (status waiting).
    pub goroutines: usize,
    pub goroutines_waiting: usize,
    /// With `--go-uprobes`: goroutine status changes seen during the window (null without).
    pub go_transitions: Option<u64>,
}

/// The whole view of a process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub comm: String,
    pub threads: Vec<ThreadView>,
    /// For Go targets: the runtime read (null otherwise).
    pub runtime: Option<RuntimeView>,
    /// Filled for Go targets from the runtime's own structures; empty otherwise.
    pub goroutines: Vec<GoroutineView>,
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
                st if st.is_blocked() && t.role.is_some_and(ThreadRole::is_idle_by_design) => {
                    s.runtime_idle += 1;
                }
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

/// Orders threads for display: blocked first, longest blocked first, then by tid. Go runtime
/// threads idle by design come after the stuck ones.
pub fn sort_for_display(threads: &mut [ThreadView]) {
    threads.sort_by_key(|t| {
        let blocked = t.state.is_blocked() && !t.role.is_some_and(ThreadRole::is_idle_by_design);
        let time = t.syscall.as_ref().and_then(SyscallView::time_ns).unwrap_or(0);
        (!blocked, std::cmp::Reverse(time), t.tid)
    });
}
