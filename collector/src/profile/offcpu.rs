//! The off-CPU (blocked-time) profile of one window, from what the kernel summed (completed
//! intervals per thread, stacks, waker and syscall), what it still holds open (intervals in
//! progress at the window's end), and what /proc said at attach about threads that were already
//! blocked then (their stacks, since the kernel never saw them leave the CPU).
//!
//! Accounting: a completed interval counts whole (it began after attach, or, for a thread seeded
//! at attach, at the window start); an interval in progress counts from max(its start, window
//! start) to the window end. So a thread blocked for the whole window is exactly 100% of it.
//! The kernel takes stacks for a time-weighted sample of the completed intervals (every one of
//! at least the sampling period, see ebpf/src/probes/sched.rs) and sums each thread's intervals
//! exactly; `ThreadScale` makes every thread's samples add up to its exact total. Intervals in
//! progress at the end have their stacks read from /proc by the caller, like the seeds.
//!
//! Sample types: `offcpu/nanoseconds` (default) and `intervals/count` on samples whose stack is
//! the blocked thread's own (leaf = where it blocked). When the waker's stacks were captured
//! (`--waker-stacks`), `offwake/nanoseconds` on samples whose stack continues, above a
//! `--- woken by <comm> (tid N) ---` frame, with the waker's stack root-most last (offwaketime's
//! layout). Every nanosecond is in `offwake` exactly once too: an interval with a known waker
//! stack has a chain sample, one without has its plain sample counted in both. So
//! `-sample_index=offwake` shows who woke whom without changing totals, and the default view
//! stays clean for `-top`. For a target whose runtime is read (Go), the runtime's tasks have a
//! type of their own (Go: `goroutine_wait/nanoseconds`, the goroutines' time not running, from
//! crate::runtime::go::profile), under their own stacks; it is a separate type because it
//! overlaps the threads' time (a parked goroutine's M is idle or runs another goroutine).
//! Every sample carries `kind=thread` or the runtime's kind (`kind=goroutine`) for pprof's tag
//! filters.
//!
//! Labels: `syscall` (and, with `--fd-labels`, `fd`) from the saved user registers sched_switch
//! reads as the thread goes off CPU, else (not in a syscall then, or blocked since before
//! attach without a /proc entry) from the kernel stack (super::ksyscall); `role` (and `goid`)
//! from the runtime's [`ProfileLabels`] when one was followed, else from the stack alone
//! (crate::runtime::go::profile::labels_from_stack).

use std::collections::{HashMap, HashSet};

use parkscope_common::{
    COUNT_ONE, LastWake, NO_STACK, OffCpuKey, OffCpuStart, OffCpuTotal, PRE_ATTACH_STACK, syscalls,
};
use parkscope_model::profile::{
    FoldedValue, FrameKind, LabelValue, Mapping, Profile, ProfileKind, ValueType,
};
use parkscope_probes::{
    kernel::KernelCounters,
    procfs::{fds::FdTable, tasks},
};

use super::{
    build::{AddrSet, ProfileBuilder, Symbols},
    ksyscall,
};
use crate::runtime::{
    go::profile::labels_from_stack,
    profile::{ProfileLabels, ThreadSampleFacts},
};

/// What /proc said at attach about a thread that was already blocked.
#[derive(Debug, Clone)]
pub struct Seed {
    /// User stack unwound from /proc's pc/sp (innermost first), possibly empty.
    pub user: Vec<u64>,
    /// /proc/PID/task/TID/stack lines, innermost first.
    pub kernel_text: Vec<String>,
}

/// Everything read from the kernel at the window's end.
#[derive(Debug, Default)]
pub struct KernelTotals {
    /// Captured intervals per key, weighted by 1/p (estimates unless `stack_sample_ns` is 0).
    pub totals: HashMap<OffCpuKey, OffCpuTotal>,
    /// Each thread's completed intervals, exactly: (ns, count).
    pub thread_totals: HashMap<u32, (u64, u64)>,
    /// The stack sampling period in effect; 0 = every interval has its stacks.
    pub stack_sample_ns: u64,
    /// Threads off CPU at the window's end (slots of threads on CPU are not in here).
    pub in_progress: HashMap<u32, OffCpuStart>,
    pub wakes: HashMap<u32, LastWake>,
    /// Resolved stack ids (ids that failed to resolve are absent).
    pub stacks: HashMap<i32, Vec<u64>>,
    pub counters: KernelCounters,
}

/// The inputs of one off-CPU profile.
pub struct OffCpuInput<'a> {
    pub pid: u32,
    pub comm: String,
    pub kernel: KernelTotals,
    /// Stacks from /proc: of the threads blocked at attach, and of those still blocked at the
    /// end whose stacks the kernel had not taken.
    pub seeds: HashMap<u32, Seed>,
    /// How many threads were blocked at attach.
    pub blocked_at_attach: usize,
    /// CLOCK_MONOTONIC bounds of the window.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Wall clock at the window start, ns since the epoch.
    pub time_nanos: i64,
    /// Thread names seen during the window (the end's /proc read wins).
    pub names: HashMap<u32, String>,
    /// Threads alive at the window end; in-progress entries of others are deaths, not waits.
    pub alive: HashSet<u32>,
    pub fds: Option<FdTable>,
    pub mappings: Vec<Mapping>,
    pub kernel_build_id: Option<String>,
    /// Why the window ended early, if it did (goes into the comments).
    pub cut_short: Option<String>,
    /// The waker's stacks were captured: add the `offwake` view.
    pub waker_stacks: bool,
    /// The syscall probes ran: syscall numbers and fds are known per interval.
    pub fd_labels: bool,
    /// The runtime followed over the window (Go: the goroutines' wait times and the Ms seen).
    pub runtime: Option<&'a dyn ProfileLabels>,
}

/// Where a stack comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StackRef {
    Id(i32),
    Seed(u32),
    Missing,
}

impl StackRef {
    fn of(id: i32, tid: u32) -> StackRef {
        match id {
            PRE_ATTACH_STACK => StackRef::Seed(tid),
            NO_STACK => StackRef::Missing,
            id if id >= 0 => StackRef::Id(id),
            _ => StackRef::Missing,
        }
    }
}

/// One interval (or a sum of them) to turn into samples.
#[derive(Debug, Clone)]
struct Interval {
    tid: u32,
    user: StackRef,
    kernel: StackRef,
    waker: Option<(u32, StackRef, StackRef)>,
    nr: i32,
    fd: i32,
    ns: u64,
    count: u64,
}

/// A process that woke target threads (possibly the target itself).
#[derive(Debug, Clone)]
struct Waker {
    comm: String,
    tgid: Option<u32>,
}

const OFFCPU: (&str, &str) = ("offcpu", "nanoseconds");
const INTERVALS: (&str, &str) = ("intervals", "count");
const OFFWAKE: (&str, &str) = ("offwake", "nanoseconds");

/// Which sample types this profile has, and where each value goes.
struct Columns {
    types: Vec<ValueType>,
    offwake: Option<usize>,
    /// The runtime's tasks' time.
    tasks: Option<usize>,
}

impl Columns {
    fn new(waker_stacks: bool, tasks: Option<ValueType>) -> Columns {
        let mut types = vec![ValueType::new(OFFCPU.0, OFFCPU.1), ValueType::new(INTERVALS.0, INTERVALS.1)];
        let mut push = |t: Option<ValueType>| {
            t.map(|t| {
                types.push(t);
                types.len() - 1
            })
        };
        let offwake = push(waker_stacks.then(|| ValueType::new(OFFWAKE.0, OFFWAKE.1)));
        let tasks = push(tasks);
        Columns { types, offwake, tasks }
    }

    /// A thread sample's values: its own time and count, and its time again in `offwake`.
    fn thread(&self, ns: i64, count: i64, offwake_ns: i64) -> Vec<i64> {
        let mut v = vec![0; self.types.len()];
        v[0] = ns;
        v[1] = count;
        if let Some(i) = self.offwake {
            v[i] = offwake_ns;
        }
        v
    }

    fn task(&self, ns: i64) -> Vec<i64> {
        let mut v = vec![0; self.types.len()];
        if let Some(i) = self.tasks {
            v[i] = ns;
        }
        v
    }
}

/// Builds the profile (symbolises every stack; file-bound, run it off the reactor).
pub fn build(input: OffCpuInput<'_>) -> Profile {
    let intervals = intervals(&input);
    let wakers = wakers(&input, &intervals);

    // Name every address once.
    let mut set = AddrSet::default();
    let stack = |r: StackRef| match r {
        StackRef::Id(id) => input.kernel.stacks.get(&id).map(Vec::as_slice),
        _ => None,
    };
    for iv in &intervals {
        if let Some(s) = stack(iv.user) {
            set.add_user(input.pid, s);
        }
        if let StackRef::Seed(tid) = iv.user
            && let Some(seed) = input.seeds.get(&tid)
        {
            set.add_user(input.pid, &seed.user);
        }
        if let Some(s) = stack(iv.kernel) {
            set.add_kernel(s);
        }
        if let Some((wtid, wu, wk)) = iv.waker {
            if let (Some(s), Some(tgid)) = (stack(wu), wakers.get(&wtid).and_then(|w| w.tgid)) {
                set.add_user(tgid, s);
            }
            if let Some(s) = stack(wk) {
                set.add_kernel(s);
            }
        }
    }
    if let Some(runtime) = input.runtime {
        for pcs in runtime.user_stacks() {
            set.add_user(input.pid, pcs);
        }
    }
    let symbols = Symbols::resolve(&set, input.pid, &input.mappings);
    let columns = Columns::new(input.waker_stacks, input.runtime.and_then(|r| r.sample_type()));
    let function_at = |addr: u64| symbols.user_function(input.pid, addr).map(str::to_owned);

    let mut b = ProfileBuilder::default();
    for iv in &intervals {
        let mut frames = match iv.kernel {
            StackRef::Seed(tid) => {
                b.kernel_text_frames(input.seeds.get(&tid).map_or(&[][..], |s| &s.kernel_text))
            }
            r => stack(r).map_or_else(Vec::new, |s| b.kernel_frames(&symbols, s)),
        };
        let user = match iv.user {
            StackRef::Seed(tid) => input.seeds.get(&tid).map_or(&[][..], |s| &s.user[..]),
            r => stack(r).unwrap_or(&[]),
        };
        let user_frames = b.user_frames(&symbols, input.pid, user);
        frames.extend(user_frames);
        let functions = |kind: FrameKind| -> Vec<&str> {
            frames
                .iter()
                .map(|&i| b.frame_info(i))
                .filter(|f| f.kind == kind)
                .filter_map(|f| f.function.as_deref())
                .collect()
        };
        let syscall = if iv.nr >= 0 {
            let nr = iv.nr as u32;
            Some(syscalls::display_name(nr).to_string())
        } else {
            ksyscall::syscall_from_kernel_stack(functions(FrameKind::Kernel)).map(str::to_owned)
        };
        let user_functions = functions(FrameKind::User);
        let facts = ThreadSampleFacts {
            tid: iv.tid,
            syscall: syscall.as_deref(),
            fd: iv.fd,
            user_functions: &user_functions,
        };
        let runtime_labels = match input.runtime {
            Some(runtime) => runtime.thread_labels(&facts, &function_at),
            None => labels_from_stack(&facts),
        };

        let mut labels = labels(&input, iv, &wakers, syscall);
        labels.extend(runtime_labels);
        let ns = iv.ns as i64;
        // The waker's stack, if any part of it was captured.
        let chain = iv.waker.and_then(|(wtid, wu, wk)| {
            let tgid = wakers.get(&wtid).and_then(|w| w.tgid);
            let mut w = stack(wk).map_or_else(Vec::new, |s| b.kernel_frames(&symbols, s));
            if let (Some(s), Some(tgid)) = (stack(wu), tgid) {
                w.extend(b.user_frames(&symbols, tgid, s));
            }
            (!w.is_empty()).then_some((wtid, w))
        });
        match chain {
            Some((wtid, waker_frames)) => {
                let comm = wakers.get(&wtid).map_or("?", |w| w.comm.as_str());
                let sep = b.marker(&format!("--- woken by {comm} (tid {wtid}) ---"));
                let mut chained: Vec<usize> = waker_frames.into_iter().rev().collect();
                chained.push(sep);
                chained.extend(&frames);
                b.add(frames, labels.clone(), columns.thread(ns, iv.count as i64, 0));
                b.add(chained, labels, columns.thread(0, 0, ns));
            }
            None => b.add(frames, labels, columns.thread(ns, iv.count as i64, ns)),
        }
    }
    if let Some(runtime) = input.runtime {
        for task in runtime.task_samples(&|fd| fd_text(&input, fd)) {
            let frames = b.user_frames(&symbols, input.pid, task.pcs);
            b.add(frames, task.labels, columns.task(task.ns as i64));
        }
    }

    let (frames, samples) = b.finish();
    let duration = input.window_end_ns.saturating_sub(input.window_start_ns);
    Profile {
        kind: ProfileKind::OffCpu,
        pid: input.pid,
        comm: input.comm.clone(),
        sample_types: columns.types.clone(),
        default_sample_type: Some(OFFCPU.0.to_owned()),
        // Flame graphs show the chained view where there is one, and the goroutines beside
        // the threads, in microseconds (offcputime's unit).
        folded_value: FoldedValue {
            index: columns.offwake.unwrap_or(0),
            also: columns.tasks,
            divisor: 1000,
            unit: "us".to_owned(),
        },
        period_type: ValueType::new(OFFCPU.0, OFFCPU.1),
        period: 1,
        time_nanos: input.time_nanos,
        duration_nanos: duration as i64,
        frames,
        samples,
        mappings: input.mappings.clone(),
        kernel_build_id: input.kernel_build_id.clone(),
        comments: comments(&input, duration),
    }
}

/// Completed intervals (whole) plus the ones in progress at the end (clipped to the window).
fn intervals(input: &OffCpuInput<'_>) -> Vec<Interval> {
    let scale = ThreadScale::new(&input.kernel);
    let mut out: Vec<Interval> = input
        .kernel
        .totals
        .iter()
        .map(|(k, t)| Interval {
            tid: k.tid,
            user: StackRef::of(k.user_stack_id, k.tid),
            kernel: StackRef::of(k.kernel_stack_id, k.tid),
            waker: (k.waker_tid != 0 || k.waker_kernel_stack_id >= 0).then(|| {
                (
                    k.waker_tid,
                    StackRef::of(k.waker_user_stack_id, k.waker_tid),
                    StackRef::of(k.waker_kernel_stack_id, k.waker_tid),
                )
            }),
            nr: k.nr,
            fd: k.fd,
            ns: scale.ns(k.tid, t.total_ns),
            count: scale.count(k.tid, t.count_fp),
        })
        .collect();
    out.extend(scale.unsampled());
    for (&tid, start) in &input.kernel.in_progress {
        if !input.alive.contains(&tid) || start.start_ns >= input.window_end_ns {
            continue;
        }
        let from = start.start_ns.max(input.window_start_ns);
        // Woken but not yet switched in: the waker is known already.
        let waker = input.kernel.wakes.get(&tid).filter(|w| w.wake_ns >= start.start_ns).map(|w| {
            (
                w.waker_tid,
                StackRef::of(w.waker_user_stack_id, w.waker_tid),
                StackRef::of(w.waker_kernel_stack_id, w.waker_tid),
            )
        });
        let fd = if start.nr >= 0 && syscalls::arg0_kind(start.nr as u32) == parkscope_common::ArgKind::Fd {
            start.arg0 as i32
        } else {
            -1
        };
        out.push(Interval {
            tid,
            user: StackRef::of(start.user_stack_id, tid),
            kernel: StackRef::of(start.kernel_stack_id, tid),
            waker,
            nr: start.nr,
            fd,
            ns: input.window_end_ns - from,
            count: 0,
        });
    }
    out
}

/// Makes each thread's samples add up to its exact total. The kernel sums every interval of a
/// thread exactly but takes stacks for a time-weighted sample of them (weighted 1/p, unbiased);
/// scaling a thread's weighted sums to its exact total (a ratio estimator) keeps per-thread
/// totals right, so only the split of a thread's time between its stacks is an estimate.
struct ThreadScale {
    /// tid -> (time factor, count factor).
    threads: HashMap<u32, (f64, f64)>,
    /// Threads with off-CPU time but no captured interval: (tid, ns, count).
    unsampled: Vec<(u32, u64, u64)>,
}

impl ThreadScale {
    fn new(kernel: &KernelTotals) -> ThreadScale {
        let mut sums: HashMap<u32, (u64, u64)> = HashMap::new();
        for (k, t) in &kernel.totals {
            let e = sums.entry(k.tid).or_default();
            e.0 += t.total_ns;
            e.1 += t.count_fp;
        }
        let mut threads = HashMap::new();
        let mut unsampled = Vec::new();
        // With records dropped (a full map) the captured sums are incomplete: scaling them up
        // would hide the loss, which comments() reports instead.
        let complete = kernel.counters.off_cpu_totals_full == 0;
        for (&tid, &(exact_ns, exact_count)) in kernel.thread_totals.iter().filter(|_| complete) {
            match sums.get(&tid) {
                Some(&(ns, count_fp)) if ns > 0 => {
                    let count = count_fp as f64 / COUNT_ONE as f64;
                    let count_factor = if count > 0.0 { exact_count as f64 / count } else { 1.0 };
                    threads.insert(tid, (exact_ns as f64 / ns as f64, count_factor));
                }
                _ if exact_ns > 0 => unsampled.push((tid, exact_ns, exact_count)),
                _ => {}
            }
        }
        ThreadScale { threads, unsampled }
    }

    fn ns(&self, tid: u32, weighted_ns: u64) -> u64 {
        let factor = self.threads.get(&tid).map_or(1.0, |f| f.0);
        (weighted_ns as f64 * factor).round() as u64
    }

    fn count(&self, tid: u32, count_fp: u64) -> u64 {
        let factor = self.threads.get(&tid).map_or(1.0, |f| f.1);
        (count_fp as f64 / COUNT_ONE as f64 * factor).round() as u64
    }

    /// The time of threads none of whose intervals were sampled, without a stack.
    fn unsampled(&self) -> impl Iterator<Item = Interval> + '_ {
        self.unsampled.iter().map(|&(tid, ns, count)| Interval {
            tid,
            user: StackRef::Missing,
            kernel: StackRef::Missing,
            waker: None,
            nr: -1,
            fd: -1,
            ns,
            count,
        })
    }
}

/// Names and processes of the wakers, from /proc (a waker may belong to another process).
fn wakers(input: &OffCpuInput<'_>, intervals: &[Interval]) -> HashMap<u32, Waker> {
    let mut out = HashMap::new();
    for tid in intervals.iter().filter_map(|iv| iv.waker.map(|w| w.0)) {
        out.entry(tid).or_insert_with(|| {
            if tid == 0 {
                // sched_waking from interrupt context on an idle CPU.
                return Waker { comm: "swapper".to_owned(), tgid: None };
            }
            let owner = tasks::task_owner(tid);
            let comm = input.names.get(&tid).cloned().or(owner.name).unwrap_or_else(|| "?".into());
            // A kernel thread (kworker, ksoftirqd) has no user stack to name.
            let tgid = if tid_in_target(input, tid) {
                Some(input.pid)
            } else {
                owner.tgid.filter(|_| owner.user_space)
            };
            Waker { comm, tgid }
        });
    }
    out
}

fn tid_in_target(input: &OffCpuInput<'_>, tid: u32) -> bool {
    input.names.contains_key(&tid)
}

/// A thread sample's own labels (the runtime adds its own after them).
fn labels(
    input: &OffCpuInput<'_>,
    iv: &Interval,
    wakers: &HashMap<u32, Waker>,
    syscall: Option<String>,
) -> Vec<(String, LabelValue)> {
    let name = input.names.get(&iv.tid).cloned().unwrap_or_else(|| format!("tid {}", iv.tid));
    let mut labels = vec![
        ("kind".to_owned(), LabelValue::Str("thread".to_owned())),
        ("thread".to_owned(), LabelValue::Str(name)),
        ("tid".to_owned(), LabelValue::Num(i64::from(iv.tid))),
    ];
    if let Some(name) = syscall {
        labels.push(("syscall".to_owned(), LabelValue::Str(name)));
    }
    if input.fd_labels && iv.fd >= 0 {
        labels.push(("fd".to_owned(), LabelValue::Str(fd_text(input, iv.fd))));
    }
    if let Some((wtid, _, _)) = iv.waker {
        labels.push(("waker_tid".to_owned(), LabelValue::Num(i64::from(wtid))));
        if let Some(w) = wakers.get(&wtid) {
            labels.push(("waker".to_owned(), LabelValue::Str(w.comm.clone())));
        }
    }
    labels
}

/// `15: tcp 127.0.0.1:41234 -> 127.0.0.1:5000`, or the bare number if the fd is gone.
fn fd_text(input: &OffCpuInput<'_>, fd: i32) -> String {
    match input.fds.as_ref().and_then(|t| t.describe(fd)) {
        Some(d) => format!("{fd}: {d}"),
        None => fd.to_string(),
    }
}

fn comments(input: &OffCpuInput<'_>, duration: u64) -> Vec<String> {
    let c = &input.kernel.counters;
    let mut out = vec![
        format!(
            "parkscope off-CPU profile of pid {} ({}), window {:.3} s",
            input.pid,
            input.comm,
            duration as f64 / 1e9
        ),
        format!(
            "{} threads were blocked at attach: their time counts from the window start",
            input.blocked_at_attach
        ),
    ];
    if input.waker_stacks {
        out.push(
            "sample types: offcpu = blocked stack; offwake = the same time with the waker's stack above \
             a '--- woken by' frame where known"
                .to_owned(),
        );
    }
    if !input.fd_labels {
        out.push("no fd labels (use --fd-labels)".to_owned());
    }
    if let Some(runtime) = input.runtime {
        out.push(runtime.comment());
    }
    if let Some(why) = &input.cut_short {
        out.push(format!("window cut short: {why}"));
    }
    if c.dropped() > 0 {
        out.push(format!(
            "warning: the kernel side dropped {} records (maps full); totals are low",
            c.dropped()
        ));
    }
    if input.kernel.stack_sample_ns > 0 {
        out.push(format!(
            "stacks sampled by off-CPU time: every wait of {} or more, shorter ones in proportion to \
             their length ({} of {} waits captured); each thread's total is exact, its split between \
             stacks an estimate",
            parkscope_model::duration::human(input.kernel.stack_sample_ns),
            c.offcpu_captured,
            c.offcpu_intervals
        ));
    } else {
        out.push("stacks captured for every wait: exact".to_owned());
    }
    if c.stack_capture_failed > 0 {
        out.push(format!(
            "{} stack captures failed (stack map full, or no user stack to walk); those intervals have no stack",
            c.stack_capture_failed
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>() -> OffCpuInput<'a> {
        OffCpuInput {
            pid: 1,
            comm: "t".into(),
            kernel: KernelTotals::default(),
            seeds: HashMap::new(),
            blocked_at_attach: 0,
            window_start_ns: 1_000,
            window_end_ns: 11_000,
            time_nanos: 0,
            names: HashMap::from([(10, "sleeper".to_owned()), (11, "worker".to_owned())]),
            alive: HashSet::from([10, 11]),
            fds: None,
            mappings: vec![],
            kernel_build_id: None,
            cut_short: None,
            waker_stacks: true,
            fd_labels: true,
            runtime: None,
        }
    }

    fn start(start_ns: u64, stack: i32) -> OffCpuStart {
        OffCpuStart {
            start_ns,
            prev_state: 1,
            arg0: 0,
            user_stack_id: stack,
            kernel_stack_id: stack,
            nr: 230,
            _pad: 0,
            total_ns: 0,
            count: 0,
        }
    }

    #[test]
    fn thread_blocked_all_window_is_the_whole_window() {
        let mut i = input();
        i.kernel.in_progress.insert(10, start(1_000, PRE_ATTACH_STACK));
        i.seeds.insert(10, Seed { user: vec![], kernel_text: vec!["hrtimer_nanosleep+0x1/0x2".into()] });
        let p = build(i);
        let total: i64 =
            p.samples.iter().filter(|s| s.label_str("thread") == Some("sleeper")).map(|s| s.values[0]).sum();
        assert_eq!(total, 10_000);
        assert_eq!(p.samples[0].label_str("syscall"), Some("clock_nanosleep"));
        assert_eq!(p.frames[p.samples[0].frames[0]].function.as_deref(), Some("hrtimer_nanosleep"));
    }

    #[test]
    fn go_targets_get_goroutine_samples_of_their_own_type() {
        use crate::runtime::go::profile::{GoroutineTimes, GoroutineWait};
        use parkscope_probes::go::GStatus;

        let mut i = input();
        (i.waker_stacks, i.fd_labels) = (false, false);
        // Blocked at attach, syscall unknown to the kernel side: named from the kernel stack.
        let mut seeded = start(1_000, PRE_ATTACH_STACK);
        seeded.nr = -1;
        i.kernel.in_progress.insert(10, seeded);
        let kernel_text = vec!["hrtimer_nanosleep+0xb5/0x130".into(), "__x64_sys_nanosleep+0xae/0xf0".into()];
        i.seeds.insert(10, Seed { user: vec![], kernel_text });
        let mut go = GoroutineTimes::new("go1.27.3".into(), 1_000);
        let wait = GoroutineWait {
            goid: 7,
            status: GStatus::Waiting,
            wait_reason: Some("IO wait".into()),
            netpoll: Some((5, "read")),
            pcs: vec![],
        };
        go.waits.insert(wait, 9_500);
        i.runtime = Some(&go);
        let p = build(i);

        let kinds: Vec<&str> = p.sample_types.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, ["offcpu", "intervals", "goroutine_wait"], "no offwake without waker stacks");
        assert_eq!(p.folded_value.index, 0);
        assert_eq!(p.folded_value.also, Some(2));
        let thread = p.samples.iter().find(|s| s.label_str("kind") == Some("thread")).expect("thread sample");
        assert_eq!(thread.values, vec![10_000, 0, 0]);
        assert_eq!(thread.label_str("syscall"), Some("nanosleep"));
        assert_eq!(thread.label_str("fd"), None);
        let g =
            p.samples.iter().find(|s| s.label_str("kind") == Some("goroutine")).expect("goroutine sample");
        assert_eq!(g.values, vec![0, 0, 9_500]);
        assert_eq!(g.label_str("wait_reason"), Some("IO wait"));
        assert_eq!(g.label_str("fd"), Some("5"), "the netpoll fd is labelled even without --fd-labels");
        assert_eq!(g.label_str("netpoll"), Some("read"));
        assert!(g.labels.contains(&("goid".to_owned(), LabelValue::Num(7))));
    }

    fn key(tid: u32, stack: i32) -> OffCpuKey {
        OffCpuKey {
            tid,
            waker_tid: 0,
            user_stack_id: stack,
            kernel_stack_id: stack,
            waker_user_stack_id: NO_STACK,
            waker_kernel_stack_id: NO_STACK,
            nr: -1,
            fd: -1,
        }
    }

    #[test]
    fn sampled_stacks_are_scaled_to_each_threads_exact_total() {
        let mut i = input();
        i.waker_stacks = false;
        i.kernel.stack_sample_ns = 100;
        // Thread 10: weighted 300 + 100 ns from 3 + 1 captures, exactly 800 ns in 10 waits.
        i.kernel
            .totals
            .insert(key(10, 1), OffCpuTotal { total_ns: 300, count_fp: 6 * COUNT_ONE, captured: 3 });
        i.kernel
            .totals
            .insert(key(10, 2), OffCpuTotal { total_ns: 100, count_fp: 2 * COUNT_ONE, captured: 1 });
        i.kernel.thread_totals.insert(10, (800, 10));
        // Thread 11: 50 ns in 2 short waits, neither sampled.
        i.kernel.thread_totals.insert(11, (50, 2));
        i.kernel.stacks.insert(1, vec![0xffff_ffff_8100_0000]);
        i.kernel.stacks.insert(2, vec![0xffff_ffff_8200_0000]);
        let p = build(i);
        let of = |name: &str| -> Vec<(i64, i64)> {
            let mut v: Vec<(i64, i64)> = p
                .samples
                .iter()
                .filter(|s| s.label_str("thread") == Some(name))
                .map(|s| (s.values[0], s.values[1]))
                .collect();
            v.sort();
            v
        };
        assert_eq!(of("sleeper"), vec![(200, 3), (600, 8)]);
        assert_eq!(of("worker"), vec![(50, 2)], "unsampled time is kept, without a stack");
        assert!(p.comments.iter().any(|c| c.contains("stacks sampled by off-CPU time: every wait of 100ns")));
    }

    #[test]
    fn in_progress_time_is_clipped_and_dead_threads_dropped() {
        let mut i = input();
        i.kernel.in_progress.insert(11, start(6_000, NO_STACK));
        i.kernel.in_progress.insert(12, start(2_000, NO_STACK)); // not alive: exited
        let key = OffCpuKey {
            tid: 11,
            waker_tid: 10,
            user_stack_id: NO_STACK,
            kernel_stack_id: NO_STACK,
            waker_user_stack_id: NO_STACK,
            waker_kernel_stack_id: NO_STACK,
            nr: -1,
            fd: -1,
        };
        i.kernel.totals.insert(key, OffCpuTotal { total_ns: 3_000, count_fp: 4 * COUNT_ONE, captured: 4 });
        let p = build(i);
        let sum = |idx: usize| p.samples.iter().map(|s| s.values[idx]).sum::<i64>();
        assert_eq!(sum(0), 3_000 + 5_000);
        assert_eq!(sum(1), 4);
        assert_eq!(sum(2), sum(0), "offwake covers the same time");
        assert!(p.samples.iter().all(|s| s.label_str("thread") == Some("worker")));
    }
}
