//! Builds a [`Snapshot`] from the three sources of truth: /proc (what each thread is in right
//! now, as the kernel reports it), the eBPF maps (since when, who woke it, what completed), and the
//! target's memory (user stacks), and a runtime's tasks through its [`RuntimeReader`]. This is
//! synchronous, file-bound work: it runs on the collector's own thread, never on a reactor.

use std::collections::{HashMap, HashSet};

use parkscope_common::{
    ArgKind, BLOCK_CALL_BEFORE_ATTACH, BlockEvent, InFlightSyscall, LastWake, SyscallStats, SyscallStatsKey,
    ThreadBlock, syscalls,
};
use parkscope_probes::{
    kernel::{BlockEventStream, KernelCounters, KernelProbes, monotonic_now_ns},
    procfs::{
        ProcError,
        fds::FdTable,
        process::TargetProcess,
        threads::{ProcState, SyscallSite, ThreadSample, read_kernel_stack, read_threads},
    },
    stacks::ThreadStacks,
};

use parkscope_model::{
    CompletedCalls, Event, EventKind, Frame, GoStatus, LongCall, RuntimeView, Snapshot, StackId, StackTable,
    Summary, SyscallClass, SyscallView, ThreadState, ThreadView, Timestamp, sort_for_display,
};

use crate::{
    error::CollectError,
    runtime::{self, Detected, ReadContext, RuntimeReader},
};

/// Deepest user stack we unwind; deeper stacks are cut (the innermost frames matter most).
const MAX_USER_FRAMES: usize = 64;
/// Completed-call kinds listed per thread.
const MAX_COMPLETED_PER_THREAD: usize = 8;
/// Long calls kept per thread (the newest).
const MAX_LONG_CALLS_PER_THREAD: usize = 5;

/// What to include in a view.
#[derive(Debug, Clone, Copy)]
pub struct ObserveOptions {
    /// Unwind and symbolise user stacks, and read kernel stacks, of blocked threads.
    pub stacks: bool,
    /// For a target with a runtime (see [`Observer::detect_runtime`]): read its tasks too.
    pub goroutines: bool,
    /// Each thread's completed calls from the in-kernel histograms. Reading that map costs
    /// two bpf() calls per key (up to 16k keys), so only outputs that show it ask for it.
    pub completed_calls: bool,
    /// Describe the fds threads wait on (`fd_desc`): reads every fd link and the target's
    /// socket tables, so only outputs that show descriptions ask for it.
    pub fd_descriptions: bool,
}

/// The target's runtime, once looked for.
enum RuntimeTarget {
    NotLooked,
    None,
    Found(Box<dyn RuntimeReader>),
    /// A runtime that cannot be read: every view carries this, with the threads.
    Unreadable(Box<RuntimeView>),
}

/// A target plus, optionally, the probes attached to it.
pub struct Observer {
    pub target: TargetProcess,
    probes: Option<KernelProbes>,
    /// CLOCK_MONOTONIC when the probes began recording.
    attached_at_ns: u64,
    /// Long calls streamed from the kernel so far, per thread, oldest first.
    long_calls: HashMap<u32, Vec<BlockEvent>>,
    long_call_threshold_ns: Option<u64>,
    runtime: RuntimeTarget,
    /// User stacks: the unwinder's parsed objects and the symbolizer's caches, kept across
    /// views (the map itself is read once per view).
    stacks: ThreadStacks,
    /// The calls /proc showed threads asleep in at the first view after attach (tid -> nr,
    /// args): what a block the kernel saw no switch of, or one that began before attach,
    /// is checked against before it is given the window as a lower bound.
    asleep_at_attach: Option<HashMap<u32, (u32, [u64; 6])>>,
    /// A runtime worker inside one poll this long is a stall (`--stall`).
    pub stall_ns: u64,
}

/// Everything the eBPF maps say at one instant.
#[derive(Default)]
struct KernelFacts {
    in_flight: HashMap<u32, InFlightSyscall>,
    /// Each thread's blocking call as seen at its context switches (empty without `blocks`).
    blocks: HashMap<u32, ThreadBlock>,
    /// Target threads on a CPU as of each CPU's last switch (empty without `switches`).
    on_cpu: HashSet<u32>,
    wakes: HashMap<u32, LastWake>,
    stats: HashMap<SyscallStatsKey, SyscallStats>,
    counters: KernelCounters,
    syscalls_attached: bool,
    blocks_attached: bool,
    switches_attached: bool,
    wakeups_attached: bool,
}

impl Observer {
    pub fn new(target: TargetProcess, probes: Option<KernelProbes>) -> Self {
        let long_call_threshold_ns = probes.as_ref().and_then(|p| p.config().block_event_min_ns);
        let attached_at_ns = probes.as_ref().map_or_else(monotonic_now_ns, KernelProbes::attached_at_ns);
        Self {
            stacks: ThreadStacks::new(target.pid),
            target,
            probes,
            attached_at_ns,
            long_calls: HashMap::new(),
            long_call_threshold_ns,
            runtime: RuntimeTarget::NotLooked,
            asleep_at_attach: None,
            stall_ns: crate::runtime::tokio::DEFAULT_STALL_NS,
        }
    }

    /// How often the runtime found wants sampling between views (tokio: the task each worker
    /// polls); None for none.
    pub fn runtime_sample_every(&self) -> Option<std::time::Duration> {
        match &self.runtime {
            RuntimeTarget::Found(reader) => reader.sample_every(),
            _ => None,
        }
    }

    /// Between views: the runtime's cheap sample (see [`RuntimeReader::sample`]).
    pub fn sample_runtime(&mut self) {
        if let RuntimeTarget::Found(reader) = &mut self.runtime {
            reader.sample(monotonic_now_ns());
        }
    }

    /// The runtime found has a scheduler trace of its own.
    pub fn runtime_has_schedtrace(&self) -> bool {
        matches!(&self.runtime, RuntimeTarget::Found(r) if r.has_schedtrace())
    }

    /// The runtime found learns from the threads' user stacks.
    pub fn runtime_needs_thread_stacks(&self) -> bool {
        matches!(&self.runtime, RuntimeTarget::Found(r) if r.needs_thread_stacks())
    }

    /// Attaches probes loaded after the observer was made; times count from now.
    pub fn set_probes(&mut self, probes: KernelProbes) {
        self.long_call_threshold_ns = probes.config().block_event_min_ns;
        self.attached_at_ns = probes.attached_at_ns();
        self.probes = Some(probes);
        self.asleep_at_attach = None;
    }

    /// Looks for a runtime in the target: `Ok(true)` when found and readable, `Ok(false)` when
    /// there is none, `Err` for a runtime that cannot be read (a stripped Go binary, an unknown
    /// layout, ...): the views then carry the threads and a runtime part saying why. Blocking
    /// file work.
    pub fn detect_runtime(&mut self) -> Result<bool, CollectError> {
        match runtime::detect(self.target.pid) {
            Detected::Found(reader) => {
                self.runtime = RuntimeTarget::Found(reader);
                Ok(true)
            }
            Detected::None => {
                self.runtime = RuntimeTarget::None;
                Ok(false)
            }
            Detected::Unreadable { view, error } => {
                self.runtime = RuntimeTarget::Unreadable(view);
                Err(error)
            }
        }
    }

    /// The runtime found by [`Observer::detect_runtime`] (kind and version; for one that
    /// cannot be read, why), None when there is none or none was looked for.
    pub fn runtime_identity(&self) -> Option<RuntimeView> {
        match &self.runtime {
            RuntimeTarget::Found(reader) => Some(reader.identity()),
            RuntimeTarget::Unreadable(view) => Some((**view).clone()),
            RuntimeTarget::NotLooked | RuntimeTarget::None => None,
        }
    }

    /// Whether a readable runtime was found by [`Observer::detect_runtime`].
    pub fn has_runtime(&self) -> bool {
        matches!(self.runtime, RuntimeTarget::Found(_))
    }

    /// Attaches the runtime's uprobes (`--go-uprobes`) to the probes already loaded: the
    /// runtime must have been found by [`Observer::detect_runtime`]. Blocking: bpf() calls.
    pub fn attach_runtime_uprobes(&mut self) -> Result<(), CollectError> {
        let RuntimeTarget::Found(reader) = &mut self.runtime else {
            return Err(CollectError::NotGo { pid: self.target.pid, comm: self.target.comm.clone() });
        };
        let probes = self.probes.as_mut().ok_or(runtime::go::uprobes::GoUprobeError::NoProbes)?;
        reader.attach_uprobes(probes)
    }

    /// Gives up on a runtime that was found but failed to read (schedtrace: the next views are
    /// thread views saying why).
    pub fn give_up_runtime(&mut self, err: &CollectError) {
        let view = match &self.runtime {
            RuntimeTarget::Found(reader) => reader.unreadable(err),
            _ => runtime::go::join::unreadable(self.target.pid, &err.to_string(), err.hint(), None),
        };
        self.runtime = RuntimeTarget::Unreadable(Box::new(view));
    }

    /// The runtime's own schedtrace text for now (no stacks), when a readable runtime was found.
    pub fn runtime_schedtrace(
        &self,
        elapsed_ms: u64,
        detail: bool,
    ) -> Option<Result<runtime::SchedTrace, CollectError>> {
        match &self.runtime {
            RuntimeTarget::Found(reader) => Some(reader.schedtrace(elapsed_ms, detail)),
            _ => None,
        }
    }

    /// Whether probes are loaded.
    pub fn has_probes(&self) -> bool {
        self.probes.is_some()
    }

    /// Takes the kernel's long-call stream, if the probes were loaded with a threshold.
    pub fn take_block_events(&mut self) -> Option<BlockEventStream> {
        let stream = self.probes.as_mut()?.take_block_events()?;
        stream.map_err(|e| tracing::warn!("long-call stream unavailable: {e}")).ok()
    }

    /// Records long calls read from the stream, keeping only the newest per thread, and
    /// returns them as the model's events.
    pub fn add_block_events(&mut self, events: Vec<BlockEvent>) -> Vec<Event> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            out.push(Event {
                at_ns: e.enter_ns.saturating_add(e.duration_ns),
                kind: EventKind::BlockEnded {
                    tid: e.tid,
                    nr: e.nr,
                    name: syscalls::display_name(e.nr).to_string(),
                    class: SyscallClass::of(e.nr),
                    fd: (syscalls::arg0_kind(e.nr) == ArgKind::Fd).then_some(e.arg0 as i32),
                    duration_ns: e.duration_ns,
                    ret: e.ret,
                },
            });
            let calls = self.long_calls.entry(e.tid).or_default();
            calls.push(e);
            if calls.len() > MAX_LONG_CALLS_PER_THREAD {
                calls.remove(0);
            }
        }
        out
    }

    /// Detaches the probes now (dropping them closes every link).
    pub fn detach(&mut self) {
        self.probes = None;
    }

    fn kernel_facts(&self, opts: ObserveOptions) -> KernelFacts {
        let Some(p) = &self.probes else { return KernelFacts::default() };
        let sel = p.config().selection;
        // A map that cannot be read degrades the view (no exact times) rather than failing it.
        let warn = |what: &str, e: &dyn std::fmt::Display| tracing::warn!("reading {what}: {e}");
        KernelFacts {
            in_flight: p.in_flight().unwrap_or_else(|e| {
                warn("in-flight syscalls", &e);
                HashMap::new()
            }),
            blocks: if sel.blocks {
                p.thread_blocks().unwrap_or_else(|e| {
                    warn("blocks", &e);
                    HashMap::new()
                })
            } else {
                HashMap::new()
            },
            on_cpu: p.on_cpu().unwrap_or_default(),
            wakes: p.last_wakes().unwrap_or_default(),
            stats: if opts.completed_calls { p.syscall_stats().unwrap_or_default() } else { HashMap::new() },
            counters: p.counters().unwrap_or_default(),
            syscalls_attached: sel.syscalls,
            blocks_attached: sel.blocks,
            switches_attached: sel.switches,
            wakeups_attached: sel.wakeups,
        }
    }

    /// Takes one view of the process. Fails only if the process is gone.
    pub fn observe(&mut self, opts: ObserveOptions) -> Result<Snapshot, ProcError> {
        let pid = self.target.pid;
        let samples = read_threads(pid)?;
        // An exited but unreaped target still has /proc/PID (one zombie thread), and a recycled
        // pid is another process: neither is the target any more.
        if !self.target.is_alive() {
            return Err(ProcError::Exited(pid));
        }
        if let Some(p) = self.probes.as_mut() {
            let live: HashSet<u32> = samples.iter().map(|s| s.tid).collect();
            if let Err(e) = p.prune_exited_threads(&live) {
                tracing::warn!("freeing in-flight slots of exited threads: {e}");
            }
        }
        // Read the maps after /proc: a thread /proc shows asleep in a call has then either
        // been seen going to sleep by the kernel, or has not been switched since attach (or
        // was dropped, which the counters tell).
        let facts = self.kernel_facts(opts);
        if self.probes.is_some() && self.asleep_at_attach.is_none() {
            self.asleep_at_attach = Some(asleep_in_calls(&samples));
        }
        // Both clocks at the same instant: `--at` a wall-clock time finds the snapshot by
        // `wall_unix_ns`, which must say when the view was taken as `monotonic_ns` does.
        let now = monotonic_now_ns();
        let wall_ns = wall_clock_ns();
        let fds = if opts.fd_descriptions { FdTable::read(pid).ok() } else { None };
        let window_ns = if self.probes.is_some() { now.saturating_sub(self.attached_at_ns) } else { 0 };

        // The map is read once for the whole view, after the thread list: every thread's unwind
        // and symbolisation share it (per thread it cost threads x mappings).
        if opts.stacks {
            self.stacks.begin_view();
        }
        let mut stack_table = StackTable::new();
        let mut threads = Vec::with_capacity(samples.len());
        for s in &samples {
            let mut view = self.thread_view(s, &facts, fds.as_ref(), now, window_ns);
            view.long_calls = self.long_calls_of(s.tid, now);
            if opts.stacks && view.state.is_blocked() {
                let kernel = read_kernel_stack(pid, s.tid);
                view.kernel_stack_id =
                    stack_table.intern(kernel.iter().map(|f| Frame::parse_kernel(f)).collect());
                if let SyscallSite::In { sp, pc, nr, .. } = &s.syscall {
                    let bp = match facts.blocks.get(&s.tid) {
                        Some(b) if b.since_ns != 0 && b.nr == *nr as i32 && b.user_sp == *sp => {
                            Some(b.user_bp)
                        }
                        _ => facts.in_flight.get(&s.tid).filter(|f| f.nr == *nr).map(|f| f.user_bp),
                    };
                    let frames = self.stacks.user_stack(*pc, *sp, bp, MAX_USER_FRAMES);
                    view.user_stack_id =
                        stack_table.intern(frames.iter().map(crate::frame::model_frame).collect());
                }
            }
            threads.push(view);
        }
        let mut goroutines = Vec::new();
        let mut stalls = Vec::new();
        let mut io_driver_starved_ns = None;
        let mut io_waits = None;
        let mut runtime = None;
        let mut transitions_counted = false;
        // The kernel's counters: as read with the other maps, or, with a runtime's uprobes, as
        // read with their state after the runtime (the uprobes keep counting meanwhile).
        let mut counters = facts.counters;
        if let RuntimeTarget::Unreadable(view) = &self.runtime {
            runtime = Some((**view).clone());
        }
        if opts.goroutines
            && let RuntimeTarget::Found(reader) = &mut self.runtime
        {
            let cx = ReadContext {
                threads: &mut threads,
                fds: fds.as_ref(),
                stacks: opts.stacks,
                stack_table: &mut stack_table,
                probes: self.probes.as_ref(),
                samples: &samples,
                now_ns: now,
                stall_ns: self.stall_ns,
            };
            match reader.read(cx) {
                Ok(read) => {
                    if let Some(c) = read.counters {
                        counters = c;
                    }
                    transitions_counted = read.transitions_counted;
                    goroutines = read.goroutines;
                    stalls = read.stalls;
                    io_driver_starved_ns = read.io_driver_starved_ns;
                    io_waits = read.io_waits;
                    runtime = Some(read.view);
                }
                // The threads are still a true view, and the runtime part says why it has no
                // more; a process gone mid-read is noticed below.
                Err(e) => {
                    tracing::debug!("reading the runtime: {e}");
                    runtime = Some(reader.unreadable(&e));
                }
            }
            if !self.target.is_alive() {
                return Err(ProcError::Exited(pid));
            }
        }
        sort_for_display(&mut threads);
        let mut summary = Summary::count(&threads);
        summary.stalls = stalls.len();
        summary.io_driver_starved_ns = io_driver_starved_ns;
        summary.goroutines = goroutines.len();
        summary.goroutines_waiting = goroutines.iter().filter(|g| g.status == GoStatus::Waiting).count();
        summary.go_transitions = transitions_counted.then_some(counters.go_transitions);
        summary.window_ns = window_ns;
        summary.dropped_events = counters.dropped();
        summary.syscalls_traced = counters.syscalls_entered;
        summary.long_call_threshold_ns = self.long_call_threshold_ns;
        let taken_at = Timestamp { monotonic_ns: now, wall_unix_ns: wall_ns };
        let mut snapshot = Snapshot::new(pid, self.target.comm.clone(), taken_at);
        snapshot.threads = threads;
        snapshot.runtime = runtime;
        snapshot.goroutines = goroutines;
        snapshot.stalls = stalls;
        snapshot.io_waits = io_waits;
        snapshot.summary = summary;
        snapshot.stacks = stack_table;
        Ok(snapshot)
    }

    fn long_calls_of(&self, tid: u32, now: u64) -> Vec<LongCall> {
        let Some(events) = self.long_calls.get(&tid) else { return Vec::new() };
        events
            .iter()
            .rev()
            .map(|e| LongCall {
                name: syscalls::display_name(e.nr).to_string(),
                class: SyscallClass::of(e.nr),
                fd: (syscalls::arg0_kind(e.nr) == ArgKind::Fd).then_some(e.arg0 as i32),
                duration_ns: e.duration_ns,
                ended_ns_ago: now.saturating_sub(e.enter_ns + e.duration_ns),
                ret: e.ret,
            })
            .collect()
    }

    fn thread_view(
        &self,
        s: &ThreadSample,
        facts: &KernelFacts,
        fds: Option<&FdTable>,
        now: u64,
        window_ns: u64,
    ) -> ThreadView {
        let state = match s.state {
            // /proc says R for both on-CPU and waiting-for-CPU; sched_switch tells them apart:
            // a target thread that left the CPU and has not been switched back in is runnable.
            ProcState::Running if facts.switches_attached && !facts.on_cpu.contains(&s.tid) => {
                ThreadState::Runnable
            }
            ProcState::Running => ThreadState::Running,
            ProcState::DiskSleep => ThreadState::DiskSleep,
            ProcState::Stopped | ProcState::TracingStop => ThreadState::Stopped,
            ProcState::Zombie | ProcState::Dead => ThreadState::Zombie,
            ProcState::Sleeping | ProcState::Idle | ProcState::Other(_) => ThreadState::Sleeping,
        };
        let syscall = match (&s.syscall, state.is_blocked()) {
            (SyscallSite::In { nr, args, .. }, true) => {
                Some(self.syscall_view(s, *nr, args, facts, fds, now, window_ns))
            }
            _ => None,
        };
        ThreadView {
            tid: s.tid,
            name: s.name.clone(),
            state,
            syscall,
            wchan: s.wchan.clone(),
            user_stack_id: StackId::EMPTY,
            kernel_stack_id: StackId::EMPTY,
            completed: completed_calls(s.tid, &facts.stats),
            long_calls: Vec::new(),
            role: None,
            goroutine: None,
            task: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn syscall_view(
        &self,
        s: &ThreadSample,
        nr: u32,
        args: &[u64; 6],
        facts: &KernelFacts,
        fds: Option<&FdTable>,
        now: u64,
        window_ns: u64,
    ) -> SyscallView {
        let kind = syscalls::arg0_kind(nr);
        let fd = (kind == ArgKind::Fd).then_some(args[0] as i32);
        let fd_desc = fd.and_then(|fd| fds.and_then(|t| t.describe(fd)));
        let futex_addr = (kind == ArgKind::FutexAddr).then(|| format!("{:#x}", args[0]));

        let (blocked_ns, blocked_at_least_ns) = if facts.blocks_attached {
            self.block_time(s, nr, args, facts, now, window_ns)
        } else {
            let entered = facts.in_flight.get(&s.tid).filter(|f| f.nr == nr);
            match entered {
                Some(f) => (Some(now.saturating_sub(f.enter_ns)), None),
                None => {
                    // Not entered while we watched. If no entry was dropped, the call began
                    // before attach, so it has lasted at least the whole window; the
                    // scheduler's record of when the thread last ran is a second lower bound
                    // (see procfs::threads).
                    let window_bound =
                        (facts.syscalls_attached && facts.counters.in_flight_full == 0).then_some(window_ns);
                    let bound = window_bound.into_iter().chain(s.off_cpu_ns).max();
                    (None, bound)
                }
            }
        };
        let waker_tid = match (facts.wakeups_attached, facts.blocks_attached) {
            (true, true) => facts.blocks.get(&s.tid).filter(|b| b.wake_ns != 0).map(|b| b.waker_tid),
            (true, false) => facts.wakes.get(&s.tid).map(|w| w.waker_tid),
            _ => None,
        };
        SyscallView {
            nr,
            name: syscalls::display_name(nr).to_string(),
            class: SyscallClass::of(nr),
            fd,
            fd_desc,
            blocked_ns,
            blocked_at_least_ns,
            waker_tid,
            futex_addr,
            args: args.map(|a| format!("{a:#x}")),
        }
    }
}

impl Observer {
    /// (exact, lower bound) of how long a thread /proc shows asleep in call `nr` has been
    /// blocked in it, from the blocks the kernel attributed at the context switch.
    ///
    /// Exact when the kernel saw the thread go to sleep in this very call (same number,
    /// arguments, user ip and sp as /proc shows) and it is off CPU still: the time since its
    /// first sleep in the call. A thread the kernel has no slot for has not been switched since
    /// attach; if /proc showed it asleep in the same call then, it has been for the whole
    /// window. Otherwise only the scheduler's own lower bound from /proc is claimed.
    fn block_time(
        &self,
        s: &ThreadSample,
        nr: u32,
        args: &[u64; 6],
        facts: &KernelFacts,
        now: u64,
        window_ns: u64,
    ) -> (Option<u64>, Option<u64>) {
        let (sp, pc) = match &s.syscall {
            SyscallSite::In { sp, pc, .. } => (*sp, *pc),
            _ => (0, 0),
        };
        let asleep_at_attach = self
            .asleep_at_attach
            .as_ref()
            .and_then(|m| m.get(&s.tid))
            .is_some_and(|(n, a)| *n == nr && a == args);
        let proc_bound = s.off_cpu_ns;
        let window_bound = |ok: bool| {
            let w = (ok && facts.counters.thread_blocks_full == 0).then_some(window_ns);
            (None, w.into_iter().chain(proc_bound).max())
        };
        match facts.blocks.get(&s.tid) {
            None => window_bound(asleep_at_attach),
            Some(b)
                if b.since_ns != 0
                    && b.nr == nr as i32
                    && &b.args == args
                    && b.user_sp == sp
                    && b.user_ip == pc
                    && b.off_ns > b.on_ns =>
            {
                if b.flags & BLOCK_CALL_BEFORE_ATTACH != 0 && asleep_at_attach {
                    // Asleep in this call at attach, woke inside it and slept again.
                    window_bound(true)
                } else {
                    (Some(now.saturating_sub(b.since_ns)), None)
                }
            }
            Some(_) => (None, proc_bound),
        }
    }
}

/// The calls /proc shows threads asleep in.
fn asleep_in_calls(samples: &[ThreadSample]) -> HashMap<u32, (u32, [u64; 6])> {
    samples
        .iter()
        .filter(|s| matches!(s.state, ProcState::Sleeping | ProcState::DiskSleep | ProcState::Idle))
        .filter_map(|s| match &s.syscall {
            SyscallSite::In { nr, args, .. } => Some((s.tid, (*nr, *args))),
            _ => None,
        })
        .collect()
}

/// The thread's completed calls from the in-kernel histograms, most total time first.
fn completed_calls(tid: u32, stats: &HashMap<SyscallStatsKey, SyscallStats>) -> Vec<CompletedCalls> {
    let mut calls: Vec<CompletedCalls> = stats
        .iter()
        .filter(|(k, _)| k.tid == tid)
        .map(|(k, v)| CompletedCalls {
            name: syscalls::display_name(k.nr).to_string(),
            class: SyscallClass::of(k.nr),
            fd: (k.fd >= 0).then_some(k.fd),
            count: v.count,
            total_ns: v.total_ns,
            max_ns: v.max_ns,
        })
        .collect();
    calls.sort_by_key(|c| (std::cmp::Reverse(c.total_ns), c.name.clone()));
    calls.truncate(MAX_COMPLETED_PER_THREAD);
    calls
}

/// Nanoseconds since the Unix epoch, now.
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
