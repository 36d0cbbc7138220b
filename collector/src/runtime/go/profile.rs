//! The Go runtime's part of an off-CPU profile (crate::runtime::profile): per-goroutine blocked
//! time, "why is this goroutine not running", and the thread samples' roles and goids. The
//! kernel sees threads, not goroutines (a parked goroutine leaves its thread free to run
//! others), so the goroutines are read from the Go runtime's own structures during the window,
//! on the collector's thread, without stopping the target (process_vm_readv of allgs, as
//! snapshot does).
//!
//! Accounting is by sampling: the runtime is read every [`SAMPLE_PERIOD`] (stretched to
//! `READ_SHARE` times the read's own duration for targets with very many goroutines), and
//! each read stands for the time from the midpoint with the previous read to the midpoint with
//! the next, the first read reaching back to the window start and the last forward to the
//! window end. A goroutine seen not running (waiting, runnable, in a syscall, preempted) is
//! credited that span under its stack, status, wait reason and netpoll fd. So a goroutine
//! parked the whole window is credited exactly the window, and a shorter wait is estimated with
//! a resolution of one period (waits shorter than the period may be missed or over-counted;
//! on average they balance). The runtime's own g.waitsince cannot replace this: it is set by
//! the GC, not at park time, so it is only a lower bound.
//!
//! The reader also reports which thread is which M and which goroutine each ran, for the
//! thread samples' roles (super::roles) and `goid` labels.
//!
//! With `--go-uprobes` the sampled waits are replaced by exact ones from the kernel (the
//! casgstatus and gopark uprobes, ebpf/src/probes/go.rs): every completed interval, summed in
//! kernel under its goroutine, status, wait reason and parking stack; the intervals still open
//! at the end; and the goroutines that did not change at all, credited the whole window. The
//! reads still run, for the Ms, for the stacks of goroutines parked since before attach (the
//! first read) and for netpoll fds. Running and syscall are one state to the uprobes, so time
//! in syscalls is in the threads' samples then, not in goroutine_wait.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use parkscope_common::{GoGState, GoWaitKey, GoWaitTotal, NO_WAIT_REASON, PRE_ATTACH_STACK};
use parkscope_model::{
    RuntimeKind, ThreadRole,
    profile::{LabelValue, ValueType},
};
use parkscope_probes::{
    go::{GStatus, GoProcess, RuntimeState},
    kernel::KernelProbes,
};

use super::roles::{BlockedCall, MEvidence, RoleEvidence, go_thread_role};
use crate::runtime::profile::{
    ProfileLabels, RuntimeProfile, RuntimeUnreadable, TaskSample, ThreadSampleFacts,
};

/// Time between reads of the runtime.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(100);
/// The period is at least this many times the last read's duration, so that on a target with
/// hundreds of thousands of goroutines the reader takes at most ~1/READ_SHARE of a CPU.
const READ_SHARE: u32 = 5;

/// What one goroutine was doing at a read: the key its time is credited under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GoroutineWait {
    pub goid: u64,
    pub status: GStatus,
    /// The runtime's own string ("chan receive", "IO wait", ...) for a waiting goroutine.
    pub wait_reason: Option<String>,
    /// The fd and direction of a goroutine parked on the netpoller ("read" | "write").
    pub netpoll: Option<(i32, &'static str)>,
    /// Its stack, innermost first: the saved pc, then return addresses.
    pub pcs: Vec<u64>,
}

/// What the reads saw of one M (OS thread) of the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MSeen {
    /// Entry pc of the function it was started with (runtime.sysmon, ...), 0 if none.
    pub mstartfn_pc: u64,
    /// Goroutines it was running (m.curg) at the reads that saw it.
    pub goroutines: BTreeSet<u64>,
    /// Reads that saw it with no goroutine.
    pub idle_reads: usize,
}

/// Goroutine wait times over one window, and the Ms seen.
#[derive(Debug, Clone, Default)]
pub struct GoroutineTimes {
    /// Nanoseconds credited per (goroutine, what it was doing).
    pub waits: HashMap<GoroutineWait, u64>,
    /// By OS thread id.
    pub ms: HashMap<u32, MSeen>,
    /// The Go release, e.g. "go1.27.3".
    pub version: String,
    /// The runtime's epoll fd (the netpoller's), -1 if not seen.
    pub epfd: i32,
    pub reads: usize,
    pub failed_reads: usize,
    /// The longest time between two reads (the resolution actually achieved), ns.
    pub max_gap_ns: u64,
    /// The read whose span is not credited yet: its time and what it saw.
    pending: Option<(u64, Vec<GoroutineWait>)>,
    /// Everything before this instant is credited.
    credited_until: u64,
    /// Kept for the exact accounting (`--go-uprobes`) only: the first read's goroutines by
    /// goid, the last read's by g address, and the netpoll fds each goroutine was seen on.
    keep_reads: bool,
    first_read: Option<HashMap<u64, GoroutineWait>>,
    last_read: HashMap<u64, GoroutineWait>,
    netpoll_seen: HashMap<u64, BTreeSet<(i32, &'static str)>>,
    /// Set when `waits` are the uprobes' exact ones.
    pub exact: Option<ExactSummary>,
}

/// What the uprobes' accounting rested on, for the profile's comments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactSummary {
    pub transitions: u64,
    pub intervals: u64,
    /// Changes or intervals the kernel had no room for (then the sums are lower bounds).
    pub dropped: u64,
}

/// The Go uprobes' view of one window, read from the kernel at its end.
#[derive(Debug, Default)]
pub struct ExactGoWaits {
    pub totals: HashMap<GoWaitKey, GoWaitTotal>,
    /// The slots at the end, by g address: intervals still open.
    pub open: HashMap<u64, GoGState>,
    /// The parking stacks by id (instruction pointers, innermost first).
    pub stacks: HashMap<i32, Vec<u64>>,
    pub transitions: u64,
    pub dropped: u64,
}

impl GoroutineTimes {
    pub fn new(version: String, window_start_ns: u64) -> GoroutineTimes {
        GoroutineTimes { version, epfd: -1, credited_until: window_start_ns, ..GoroutineTimes::default() }
    }

    /// Keeps what the exact accounting needs from the reads (see [`Self::use_exact`]).
    pub fn keeping_reads(mut self) -> GoroutineTimes {
        self.keep_reads = true;
        self
    }

    /// Adds one read of the runtime.
    pub fn add_read(&mut self, rt: &RuntimeState) {
        let waits: Vec<GoroutineWait> = rt
            .goroutines
            .iter()
            .filter(|g| {
                matches!(
                    g.status,
                    GStatus::Waiting | GStatus::Runnable | GStatus::Syscall | GStatus::Preempted
                )
            })
            .map(|g| GoroutineWait {
                goid: g.goid,
                status: g.status,
                wait_reason: g.wait_reason.clone(),
                netpoll: g.netpoll.map(|(fd, mode)| (fd, mode.as_str())),
                pcs: g.pcs.clone(),
            })
            .collect();
        for m in rt.ms.iter().filter(|m| m.tid != 0) {
            let seen = self.ms.entry(m.tid).or_default();
            seen.mstartfn_pc = m.mstartfn_pc;
            match m.curg_goid {
                Some(goid) => {
                    seen.goroutines.insert(goid);
                }
                None => seen.idle_reads += 1,
            }
        }
        if rt.epfd >= 0 {
            self.epfd = rt.epfd;
        }
        if self.keep_reads {
            self.keep(rt, &waits);
        }
        self.add(rt.nanotime, waits);
    }

    fn keep(&mut self, rt: &RuntimeState, waits: &[GoroutineWait]) {
        if self.first_read.is_none() {
            self.first_read = Some(waits.iter().map(|w| (w.goid, w.clone())).collect());
        }
        let by_goid: HashMap<u64, &GoroutineWait> = waits.iter().map(|w| (w.goid, w)).collect();
        self.last_read = rt
            .goroutines
            .iter()
            .filter_map(|g| by_goid.get(&g.goid).map(|w| (g.addr, (*w).clone())))
            .collect();
        for w in waits {
            if let Some(fd) = w.netpoll {
                self.netpoll_seen.entry(w.goid).or_default().insert(fd);
            }
        }
    }

    /// Replaces the sampled waits with the uprobes' exact ones over [window_start, window_end].
    /// Needs the reads kept ([`Self::keeping_reads`]); `go` translates the runtime's values.
    pub fn use_exact(
        &mut self,
        go: &dyn RuntimeValues,
        exact: &ExactGoWaits,
        window_start_ns: u64,
        window_end_ns: u64,
    ) {
        let first = self.first_read.take().unwrap_or_default();
        let mut waits: HashMap<GoroutineWait, u64> = HashMap::new();
        let mut intervals = 0;
        // A goroutine parked on one fd the whole time it was seen is labelled with it.
        let netpoll_of = |goid: u64, reason: Option<&str>| {
            let fds = self.netpoll_seen.get(&goid)?;
            (reason == Some("IO wait") && fds.len() == 1).then(|| *fds.iter().next().unwrap())
        };
        let stack = |id: i32, caller: u64, goid: u64, fallback: Option<&GoroutineWait>| -> Vec<u64> {
            if id == PRE_ATTACH_STACK {
                return first.get(&goid).map(|w| w.pcs.clone()).unwrap_or_default();
            }
            match exact.stacks.get(&id) {
                Some(ips) => with_caller(ips, caller),
                None => fallback.map(|w| w.pcs.clone()).unwrap_or_default(),
            }
        };
        let mut credit = |goid: u64, status: u32, reason: u32, pcs: Vec<u64>, ns: u64| {
            let Some(status) = go.status(status) else { return };
            if matches!(status, GStatus::Running | GStatus::Syscall | GStatus::Dead) || ns == 0 {
                return;
            }
            let wait_reason = (status == GStatus::Waiting && reason != NO_WAIT_REASON)
                .then(|| go.wait_reason(reason as u8))
                .filter(|r| !r.is_empty());
            let netpoll = netpoll_of(goid, wait_reason.as_deref());
            *waits.entry(GoroutineWait { goid, status, wait_reason, netpoll, pcs }).or_default() += ns;
        };
        for (k, t) in &exact.totals {
            intervals += t.count;
            credit(
                k.goid,
                k.status,
                k.wait_reason,
                stack(k.user_stack_id, k.park_caller, k.goid, None),
                t.total_ns,
            );
        }
        for (addr, st) in &exact.open {
            let seen = self.last_read.get(addr);
            // Go 1.19 assigns a new goroutine's id after its first change.
            let goid = if st.goid != 0 { st.goid } else { seen.map_or(0, |w| w.goid) };
            let since = st.since_ns.max(window_start_ns);
            let fallback = seen.filter(|w| w.goid == goid);
            let pcs = stack(st.user_stack_id, st.park_caller, goid, fallback);
            credit(goid, st.status, st.wait_reason, pcs, window_end_ns.saturating_sub(since));
        }
        // No slot at the end and in the same state at the first read: unchanged all window.
        // Only claimed when the kernel lost nothing (a lost change would look like this).
        if exact.dropped == 0 {
            for (addr, w) in &self.last_read {
                let unchanged = first.get(&w.goid).is_some_and(|f| f.status == w.status);
                if exact.open.contains_key(addr) || !unchanged || w.status == GStatus::Syscall {
                    continue;
                }
                let pcs = first.get(&w.goid).map(|f| f.pcs.clone()).unwrap_or_default();
                let key = GoroutineWait { pcs, ..w.clone() };
                *waits.entry(key).or_default() += window_end_ns.saturating_sub(window_start_ns);
            }
        }
        self.waits = waits;
        self.exact = Some(ExactSummary { transitions: exact.transitions, intervals, dropped: exact.dropped });
    }

    /// Adds what a read at `at_ns` saw: the previous read is credited up to the midpoint.
    fn add(&mut self, at_ns: u64, waits: Vec<GoroutineWait>) {
        self.reads += 1;
        if let Some((prev, _)) = &self.pending {
            self.max_gap_ns = self.max_gap_ns.max(at_ns.saturating_sub(*prev));
            let mid = prev + at_ns.saturating_sub(*prev) / 2;
            self.credit_pending(mid);
        }
        self.pending = Some((at_ns, waits));
    }

    /// Credits the last read up to the window's end.
    pub fn finish(&mut self, window_end_ns: u64) {
        self.credit_pending(window_end_ns);
    }

    fn credit_pending(&mut self, until: u64) {
        let span = until.saturating_sub(self.credited_until);
        self.credited_until = self.credited_until.max(until);
        let Some((_, waits)) = self.pending.take() else { return };
        if span > 0 {
            for w in waits {
                *self.waits.entry(w).or_default() += span;
            }
        }
    }
}

/// How a runtime's raw values read: status numbers and wait reasons differ between releases.
pub trait RuntimeValues {
    fn status(&self, value: u32) -> Option<GStatus>;
    fn wait_reason(&self, value: u8) -> String;
}

impl RuntimeValues for GoProcess {
    fn status(&self, value: u32) -> Option<GStatus> {
        self.status_of_value(value)
    }

    fn wait_reason(&self, value: u8) -> String {
        self.wait_reason_text(value).to_owned()
    }
}

/// A stack captured at gopark's frame setup, with gopark's caller (read from the top of the
/// stack there) put back in after gopark's own frame if the kernel's walk skipped it.
fn with_caller(ips: &[u64], caller: u64) -> Vec<u64> {
    let mut pcs = ips.to_vec();
    if caller != 0 && !pcs.is_empty() && pcs.get(1) != Some(&caller) {
        pcs.insert(1, caller);
    }
    pcs
}

/// The Go runtime followed over one profile window: read every [`SAMPLE_PERIOD`] (or
/// `READ_SHARE` times a read's duration) by the collector's thread.
pub struct GoProfile<'a> {
    process: &'a GoProcess,
    times: GoroutineTimes,
    /// The uprobes sum goroutine waits in kernel (`--go-uprobes`).
    exact: bool,
}

impl<'a> GoProfile<'a> {
    /// Follows `process` from `window_start_ns`; the first read stands for the time since.
    pub fn new(process: &'a GoProcess, window_start_ns: u64, exact: bool) -> GoProfile<'a> {
        let mut times = GoroutineTimes::new(process.version().to_owned(), window_start_ns);
        if exact {
            times = times.keeping_reads();
        }
        GoProfile { process, times, exact }
    }
}

impl RuntimeProfile for GoProfile<'_> {
    fn read(&mut self, last: bool) -> Duration {
        let began = Instant::now();
        match self.process.read(true) {
            Ok(rt) => self.times.add_read(&rt),
            // The read that observes the window's end is a bonus: its failure is no failed read.
            Err(_) if last => {}
            Err(e) => {
                self.times.failed_reads += 1;
                tracing::debug!("reading the Go runtime: {e}");
            }
        }
        SAMPLE_PERIOD.max(began.elapsed() * READ_SHARE)
    }

    fn finish(&mut self, probes: Option<&KernelProbes>, window_start_ns: u64, window_end_ns: u64) {
        self.times.finish(window_end_ns);
        if self.exact
            && let Some(probes) = probes
        {
            let exact = exact_go_waits(probes);
            self.times.use_exact(self.process, &exact, window_start_ns, window_end_ns);
        }
    }

    fn unreadable(&self) -> Option<RuntimeUnreadable> {
        (self.times.reads == 0 && self.times.failed_reads > 0).then(|| RuntimeUnreadable {
            runtime: RuntimeKind::Go,
            cause: format!(
                "all {} reads of the Go runtime during the window failed",
                self.times.failed_reads
            ),
            hint: Some(
                "run with -vv to see why each read failed, or pass --no-go for the threads only".to_owned(),
            ),
        })
    }

    fn labels(&self) -> &dyn ProfileLabels {
        &self.times
    }
}

/// What the Go uprobes summed in kernel over the window (profiles with `--go-uprobes`).
fn exact_go_waits(probes: &KernelProbes) -> ExactGoWaits {
    let warn = |what: &str, e: &dyn std::fmt::Display| tracing::warn!("reading {what}: {e}");
    let totals = probes.go_wait_totals().unwrap_or_else(|e| {
        warn("goroutine wait totals", &e);
        HashMap::new()
    });
    let open = probes.go_states().unwrap_or_else(|e| {
        warn("goroutine states", &e);
        HashMap::new()
    });
    let ids: std::collections::HashSet<i32> = totals
        .keys()
        .map(|k| k.user_stack_id)
        .chain(open.values().map(|s| s.user_stack_id))
        .filter(|&id| id >= 0)
        .collect();
    let stacks = ids.into_iter().filter_map(|id| Some((id, probes.stack(id).ok()?))).collect();
    let counters = probes.counters().unwrap_or_default();
    ExactGoWaits {
        totals,
        open,
        stacks,
        transitions: counters.go_transitions,
        dropped: counters.go_states_full + counters.go_wait_totals_full,
    }
}

const GOROUTINE_WAIT: (&str, &str) = ("goroutine_wait", "nanoseconds");

impl ProfileLabels for GoroutineTimes {
    fn sample_type(&self) -> Option<ValueType> {
        Some(ValueType::new(GOROUTINE_WAIT.0, GOROUTINE_WAIT.1))
    }

    fn user_stacks(&self) -> Vec<&[u64]> {
        let waits = self.waits.keys().map(|w| &w.pcs[..]);
        let starts =
            self.ms.values().filter(|m| m.mstartfn_pc != 0).map(|m| std::slice::from_ref(&m.mstartfn_pc));
        waits.chain(starts).collect()
    }

    fn thread_labels(
        &self,
        thread: &ThreadSampleFacts<'_>,
        function_at: &dyn Fn(u64) -> Option<String>,
    ) -> Vec<(String, LabelValue)> {
        let m = self.ms.get(&thread.tid).map(|m| {
            let sysmon = function_at(m.mstartfn_pc).as_deref() == Some("runtime.sysmon");
            let runs = !m.goroutines.is_empty();
            // The one goroutine it ran at every read, if so (a goroutine holding its M in a syscall).
            let only = (m.goroutines.len() == 1 && m.idle_reads == 0)
                .then(|| m.goroutines.first().copied())
                .flatten();
            (MEvidence { sysmon, runs_goroutine: Some(runs) }, only)
        });
        let runtime_epoll = |fd: i32| self.epfd >= 0 && fd == self.epfd;
        let role = go_thread_role(&RoleEvidence {
            m: m.map(|(m, _)| m),
            call: blocked_call(thread, &runtime_epoll),
            stack: thread.user_functions,
        });
        let goid = m.and_then(|(_, goid)| goid).filter(|_| role == Some(ThreadRole::Goroutine));
        role_labels(role, goid)
    }

    fn task_samples(&self, fd_text: &dyn Fn(i32) -> String) -> Vec<TaskSample<'_>> {
        self.waits
            .iter()
            .map(|(w, &ns)| {
                let mut labels = vec![
                    ("kind".to_owned(), LabelValue::Str("goroutine".to_owned())),
                    ("goid".to_owned(), LabelValue::Num(w.goid as i64)),
                    ("status".to_owned(), LabelValue::Str(w.status.as_str().to_owned())),
                ];
                if let Some(reason) = &w.wait_reason {
                    labels.push(("wait_reason".to_owned(), LabelValue::Str(reason.clone())));
                }
                if let Some((fd, mode)) = w.netpoll {
                    labels.push(("fd".to_owned(), LabelValue::Str(fd_text(fd))));
                    labels.push(("netpoll".to_owned(), LabelValue::Str(mode.to_owned())));
                }
                TaskSample { pcs: &w.pcs, labels, ns }
            })
            .collect()
    }

    fn comment(&self) -> String {
        match self.exact {
            Some(exact) => format!(
                "goroutine_wait: goroutines of the {} runtime not running (kind=goroutine), exact from the Go \
                 uprobes: {} status changes, {} completed intervals{}; time in syscalls is in the threads' samples",
                self.version,
                exact.transitions,
                exact.intervals,
                if exact.dropped > 0 {
                    format!("; {} changes lost for lack of room (totals are lower bounds)", exact.dropped)
                } else {
                    String::new()
                }
            ),
            None => format!(
                "goroutine_wait: goroutines of the {} runtime not running (kind=goroutine), estimated from {} \
                 reads of the runtime (longest gap {:.0} ms, the resolution){}",
                self.version,
                self.reads,
                self.max_gap_ns as f64 / 1e6,
                if self.failed_reads > 0 {
                    format!("; {} reads failed", self.failed_reads)
                } else {
                    String::new()
                }
            ),
        }
    }
}

/// The call a blocked thread is in, as far as roles care.
fn blocked_call(thread: &ThreadSampleFacts<'_>, runtime_epoll: &dyn Fn(i32) -> bool) -> Option<BlockedCall> {
    thread.syscall.map(|name| match name {
        "futex" => BlockedCall::Futex,
        n if n.starts_with("epoll_") && runtime_epoll(thread.fd) => BlockedCall::RuntimeEpoll,
        _ => BlockedCall::Other,
    })
}

fn role_labels(role: Option<ThreadRole>, goid: Option<u64>) -> Vec<(String, LabelValue)> {
    let mut labels = Vec::new();
    if let Some(role) = role {
        labels.push(("role".to_owned(), LabelValue::Str(role.as_str().to_owned())));
    }
    if let Some(goid) = goid {
        labels.push(("goid".to_owned(), LabelValue::Num(goid as i64)));
    }
    labels
}

/// The role of a thread sample of a target without a runtime reader (not Go, `--no-go`, or
/// unreadable): Go's scheduler threads are still told by their stacks alone.
pub fn labels_from_stack(thread: &ThreadSampleFacts<'_>) -> Vec<(String, LabelValue)> {
    let role = go_thread_role(&RoleEvidence {
        m: None,
        call: blocked_call(thread, &|_| false),
        stack: thread.user_functions,
    });
    role_labels(role, None)
}

#[cfg(test)]
mod tests {
    use parkscope_probes::go::GoroutineState;

    use super::*;

    fn wait(goid: u64, reason: &str) -> GoroutineWait {
        GoroutineWait {
            goid,
            status: GStatus::Waiting,
            wait_reason: Some(reason.to_owned()),
            netpoll: None,
            pcs: vec![0x1000, 0x2000],
        }
    }

    #[test]
    fn a_goroutine_parked_throughout_is_credited_the_whole_window() {
        let mut t = GoroutineTimes::new("go1.27.3".into(), 1_000);
        // Reads at uneven times; goroutine 7 parked in all of them.
        for at in [1_010, 1_100, 1_250, 1_400, 1_990] {
            t.add(at, vec![wait(7, "chan receive")]);
        }
        t.finish(2_000);
        assert_eq!(t.waits[&wait(7, "chan receive")], 1_000);
        assert_eq!(t.reads, 5);
        assert_eq!(t.max_gap_ns, 590);
    }

    /// Go 1.27's numbering: idle 0, runnable 1, running 2, syscall 3, waiting 4, dead 6.
    struct Go127;
    impl RuntimeValues for Go127 {
        fn status(&self, value: u32) -> Option<GStatus> {
            Some(match value {
                0 => GStatus::Idle,
                1 => GStatus::Runnable,
                2 => GStatus::Running,
                3 => GStatus::Syscall,
                4 => GStatus::Waiting,
                6 => GStatus::Dead,
                _ => return None,
            })
        }
        fn wait_reason(&self, value: u8) -> String {
            ["", "chan receive", "sleep"][usize::from(value)].to_owned()
        }
    }

    fn g(addr: u64, goid: u64, status: GStatus, wait_reason: Option<&str>, pcs: &[u64]) -> GoroutineState {
        GoroutineState {
            addr,
            goid,
            status,
            raw_status: 0,
            waitreason: 0,
            wait_reason: wait_reason.map(str::to_owned),
            waitsince: 0,
            m: 0,
            m_id: None,
            tid: None,
            cgo: false,
            startpc: 0,
            gopc: 0,
            parent_goid: None,
            pcs: pcs.to_vec(),
            netpoll: None,
            lockedm_id: None,
        }
    }

    fn read(at: u64, goroutines: Vec<GoroutineState>) -> RuntimeState {
        RuntimeState {
            nanotime: at,
            sched: parkscope_probes::go::SchedState {
                gomaxprocs: 2,
                npidle: 0,
                mcount: 0,
                nmspinning: 0,
                needspinning: None,
                nmidle: 0,
                runqsize: 0,
                gcwaiting: 0,
                nmidlelocked: 0,
                stopwait: 0,
                sysmonwait: 0,
            },
            ps: vec![],
            ms: vec![],
            goroutines,
            dead: 0,
            inconsistent: 0,
            epfd: -1,
        }
    }

    #[test]
    fn exact_waits_credit_completed_open_and_unchanged_goroutines() {
        let (start, end) = (1_000, 11_000);
        let mut t = GoroutineTimes::new("go1.27.3".into(), start).keeping_reads();
        // Goroutine 5 sleeps throughout; 7 is parked on a channel at the first read and woken
        // (its pre-attach wait is closed by the kernel); 9 parks mid-window, still parked.
        t.add_read(&read(
            1_010,
            vec![
                g(0x50, 5, GStatus::Waiting, Some("sleep"), &[0x5000, 0x5001]),
                g(0x70, 7, GStatus::Waiting, Some("chan receive"), &[0x7000]),
                g(0x90, 9, GStatus::Running, None, &[]),
            ],
        ));
        t.add_read(&read(
            10_990,
            vec![
                g(0x50, 5, GStatus::Waiting, Some("sleep"), &[0x5000, 0x5001]),
                g(0x70, 7, GStatus::Running, None, &[]),
                g(0x90, 9, GStatus::Waiting, Some("chan receive"), &[0x9000]),
            ],
        ));
        t.finish(end);
        let pre = GoWaitKey {
            goid: 7,
            status: 4,
            wait_reason: 1,
            user_stack_id: PRE_ATTACH_STACK,
            _pad: 0,
            park_caller: 0,
        };
        let open = GoGState {
            since_ns: 4_000,
            goid: 9,
            status: 4,
            wait_reason: 1,
            user_stack_id: 3,
            transitions: 2,
            park_caller: 0x9100,
        };
        let exact = ExactGoWaits {
            totals: HashMap::from([(pre, GoWaitTotal { total_ns: 2_500, count: 1 })]),
            open: HashMap::from([(0x90, open), (0x70, GoGState { status: 2, ..open })]),
            stacks: HashMap::from([(3, vec![0x9000, 0x9200])]),
            transitions: 5,
            dropped: 0,
        };
        t.use_exact(&Go127, &exact, start, end);
        let by_goid = |goid: u64| -> Vec<(&GoroutineWait, u64)> {
            t.waits.iter().filter(|(w, _)| w.goid == goid).map(|(w, &ns)| (w, ns)).collect()
        };
        // Unchanged all window: the whole window, with the first read's stack.
        let five = by_goid(5);
        assert_eq!(five.len(), 1);
        assert_eq!(five[0].1, 10_000);
        assert_eq!(five[0].0.pcs, vec![0x5000, 0x5001]);
        // The interval from before attach: the kernel's total, the first read's stack.
        let seven = by_goid(7);
        assert_eq!(seven.len(), 1, "{seven:?}");
        assert_eq!((seven[0].1, &seven[0].0.pcs), (2_500, &vec![0x7000]));
        assert_eq!(seven[0].0.wait_reason.as_deref(), Some("chan receive"));
        // Still parked: since its park, under gopark's stack with gopark's caller put back.
        let nine = by_goid(9);
        assert_eq!(nine.len(), 1);
        assert_eq!(nine[0].1, 7_000);
        assert_eq!(nine[0].0.pcs, vec![0x9000, 0x9100, 0x9200]);
        assert_eq!(t.exact, Some(ExactSummary { transitions: 5, intervals: 1, dropped: 0 }));
    }

    #[test]
    fn lost_changes_claim_no_unchanged_goroutines() {
        let mut t = GoroutineTimes::new(String::new(), 0).keeping_reads();
        t.add_read(&read(10, vec![g(0x50, 5, GStatus::Waiting, Some("sleep"), &[1])]));
        t.add_read(&read(90, vec![g(0x50, 5, GStatus::Waiting, Some("sleep"), &[1])]));
        let exact = ExactGoWaits { dropped: 1, ..ExactGoWaits::default() };
        t.use_exact(&Go127, &exact, 0, 100);
        assert!(t.waits.is_empty(), "{:?}", t.waits);
    }

    #[test]
    fn thread_labels_come_from_the_ms_the_reads_saw() {
        let mut t = GoroutineTimes::new("go1.27.3".into(), 0);
        t.epfd = 4;
        // tid 10 ran goroutine 7 at every read; tid 11 was started with sysmon; tid 12 ran two.
        t.ms.insert(10, MSeen { mstartfn_pc: 0, goroutines: BTreeSet::from([7]), idle_reads: 0 });
        t.ms.insert(11, MSeen { mstartfn_pc: 0x100, goroutines: BTreeSet::new(), idle_reads: 3 });
        t.ms.insert(12, MSeen { mstartfn_pc: 0, goroutines: BTreeSet::from([7, 8]), idle_reads: 0 });
        let function_at = |addr: u64| (addr == 0x100).then(|| "runtime.sysmon".to_owned());
        let facts = |tid, syscall, fd| ThreadSampleFacts { tid, syscall, fd, user_functions: &[] };
        let labels = |f: ThreadSampleFacts<'_>| t.thread_labels(&f, &function_at);
        let role = |s: &str| ("role".to_owned(), LabelValue::Str(s.to_owned()));
        assert_eq!(
            labels(facts(10, Some("read"), 3)),
            vec![role("goroutine"), ("goid".to_owned(), LabelValue::Num(7))]
        );
        assert_eq!(labels(facts(11, Some("nanosleep"), -1)), vec![role("sysmon")]);
        assert_eq!(labels(facts(12, Some("read"), 3)), vec![role("goroutine")], "no goid: it ran two");
        // Not an M the reads saw: the runtime's own epoll fd still makes it the netpoller.
        assert_eq!(labels(facts(13, Some("epoll_pwait"), 4)), vec![role("netpoller")]);
        assert_eq!(labels(facts(13, Some("epoll_pwait"), 5)), vec![]);
        // Without a reader, only the stack speaks.
        let parked = ["runtime.futex", "runtime.mPark", "runtime.stopm"];
        let f = ThreadSampleFacts { tid: 13, syscall: Some("futex"), fd: -1, user_functions: &parked };
        assert_eq!(labels_from_stack(&f), vec![role("idle_m")]);
        assert_eq!(labels_from_stack(&facts(13, Some("epoll_pwait"), 4)), vec![]);
    }

    #[test]
    fn the_callers_frame_goes_back_only_when_missing() {
        assert_eq!(with_caller(&[1, 3], 2), vec![1, 2, 3]);
        assert_eq!(with_caller(&[1, 2, 3], 2), vec![1, 2, 3]);
        assert_eq!(with_caller(&[1, 3], 0), vec![1, 3]);
    }

    #[test]
    fn each_read_stands_for_the_span_between_midpoints() {
        let mut t = GoroutineTimes::new(String::new(), 0);
        t.add(0, vec![wait(1, "select")]);
        t.add(100, vec![wait(1, "select"), wait(2, "sleep")]);
        t.add(200, vec![wait(2, "sleep")]);
        t.add(300, vec![]);
        t.finish(300);
        // Goroutine 1 seen at 0 and 100: [0, 150). Goroutine 2 at 100 and 200: [50, 250).
        assert_eq!(t.waits[&wait(1, "select")], 150);
        assert_eq!(t.waits[&wait(2, "sleep")], 200);
        // A changed wait reason is a different key.
        assert!(!t.waits.contains_key(&wait(2, "select")));
    }
}
