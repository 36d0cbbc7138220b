//! Profiles of one window, collected by the collector and handed to the consumer as model data
//! (`parkscope_model::profile::Profile`): off-CPU (blocked time, from what the kernel summed per
//! thread, the threads /proc showed blocked at attach and at the end, and the runtime's tasks
//! through [`RuntimeProfile`]) or CPU (the per-CPU cpu-clock samples the kernel counted).
//!
//! A [`ProfileCollector`] runs on a thread of its own: it loads the probes, seeds the threads
//! already blocked, reads the runtime and refreshes thread names and mappings during the window,
//! and, when the consumer ends the window, reads the kernel's maps, detaches, symbolises and
//! builds the profile. The consumer only waits (its window, its signals) and encodes.

pub mod build;
pub mod cpu;
pub mod ksyscall;
pub mod offcpu;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use parkscope_common::{NO_STACK, OffCpuStart, PRE_ATTACH_STACK};
use parkscope_model::{
    RuntimeKind,
    profile::{Mapping, Profile},
};
use parkscope_probes::{
    kernel::{CpuSamples, KernelProbes, ProbeConfig, ProbeSelection, monotonic_now_ns, sample_period_ns},
    procfs::{
        fds::FdTable,
        process::TargetProcess,
        tasks,
        threads::{ProcState, SyscallSite, ThreadSample, read_kernel_stack, read_thread, read_threads},
    },
    stacks::{ModuleMapping, UserUnwinder, executable_mappings, kernel_build_id},
};
use tokio::sync::oneshot;

pub use crate::runtime::profile::RuntimeUnreadable;
use crate::{
    collector::RuntimeMode,
    error::CollectError,
    runtime::{self, Detected, RuntimeReader, profile::RuntimeProfile},
};
use offcpu::{KernelTotals, OffCpuInput, Seed};

/// Deepest user stack unwound for threads already blocked at attach.
const MAX_USER_FRAMES: usize = 64;
/// Waits in progress at the end get stacks from /proc only when at least this old (see
/// seed_still_blocked).
const END_SEED_MIN_NS: u64 = 10_000_000;
/// Thread names and mappings are refreshed this often, so that a target that exits early can
/// still be labelled and symbolised.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The progress count is brought up to date at least this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Which profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileMode {
    /// Blocked time: `stack_sample_period` 0 captures every wait's stacks.
    OffCpu {
        stack_sample_period: Duration,
        stacks_at_switch_out: bool,
        waker_stacks: bool,
        /// Label thread samples with the fd of their call (described from /proc at the end).
        fd_labels: bool,
    },
    /// CPU time, sampled at `frequency_hz` on each CPU.
    Cpu { frequency_hz: u64 },
}

/// What to profile.
#[derive(Debug, Clone, Copy)]
pub struct ProfileConfig {
    pub pid: u32,
    /// The BPF ELF object (embedded in the binary that links the collector).
    pub ebpf_object: &'static [u8],
    pub mode: ProfileMode,
    /// Whether to follow the target's runtime (off-CPU profiles only).
    pub runtime: RuntimeMode,
    /// Attach the runtime's uprobes, summing its tasks' waits exactly (needs `Require`).
    pub runtime_uprobes: bool,
}

/// What the collector found once the window began.
#[derive(Debug)]
pub struct ProfileStarted {
    /// The target's short name (/proc/PID/comm).
    pub comm: String,
    /// A runtime was found that cannot be read (`RuntimeMode::Detect`): its threads are
    /// profiled, and the profile's comments say why there are no tasks.
    pub runtime_unreadable: Option<CollectError>,
}

/// How the consumer's window ended.
#[derive(Debug, Clone)]
pub struct WindowEnd {
    /// How long the window lasted, as the consumer measured it (the CPU profile's duration).
    pub elapsed: Duration,
    /// Why it ended early, if it did (goes into the profile's comments).
    pub cut_short: Option<String>,
}

/// The profile, and whether the runtime could be read.
#[derive(Debug)]
pub struct ProfileOutcome {
    pub profile: Profile,
    /// The runtime was found but could not be read (at the start, or at every read of the
    /// window): the profile has its threads only, and its comments say why.
    pub runtime_unreadable: Option<RuntimeUnreadable>,
}

/// What the window has collected so far, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileProgress {
    ContextSwitches(u64),
    CpuSamples(u64),
}

/// The consumer's handle on a profile being collected.
pub struct ProfileCollector {
    end: Option<mpsc::Sender<WindowEnd>>,
    outcome: Option<oneshot::Receiver<ProfileOutcome>>,
    progress: Arc<AtomicU64>,
    off_cpu: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProfileCollector {
    /// Starts collecting on a new thread and waits until the window has begun: the target
    /// validated, the runtime looked for, the probes loaded and the blocked threads seeded.
    pub async fn start(config: ProfileConfig) -> Result<(ProfileCollector, ProfileStarted), CollectError> {
        let (end, end_rx) = mpsc::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let (outcome_tx, outcome) = oneshot::channel();
        let progress = Arc::new(AtomicU64::new(0));
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("parkscope-profile".to_owned())
            .spawn(move || run(config, started_tx, end_rx, outcome_tx, &shared))
            .map_err(|e| CollectError::Internal(format!("starting the profile thread: {e}")))?;
        let mut collector = ProfileCollector {
            end: Some(end),
            outcome: Some(outcome),
            progress,
            off_cpu: matches!(config.mode, ProfileMode::OffCpu { .. }),
            thread: Some(thread),
        };
        let started = started_rx.await;
        match started {
            Ok(Ok(started)) => Ok((collector, started)),
            Ok(Err(e)) => {
                collector.join().await;
                Err(e)
            }
            Err(_) => {
                collector.join().await;
                Err(CollectError::Internal("the profile thread ended during setup".to_owned()))
            }
        }
    }

    /// What has been collected so far (refreshed a few times a second).
    pub fn progress(&self) -> ProfileProgress {
        let n = self.progress.load(Ordering::Relaxed);
        if self.off_cpu { ProfileProgress::ContextSwitches(n) } else { ProfileProgress::CpuSamples(n) }
    }

    /// Ends the window and returns the profile, once the probes are read and detached and the
    /// stacks symbolised.
    pub async fn finish(mut self, end: WindowEnd) -> Result<ProfileOutcome, CollectError> {
        if let Some(tx) = self.end.take() {
            let _ = tx.send(end);
        }
        let outcome = match self.outcome.take() {
            Some(rx) => rx.await.ok(),
            None => None,
        };
        self.join().await;
        outcome.ok_or_else(|| CollectError::Internal("the profile thread ended without a profile".to_owned()))
    }

    async fn join(&mut self) {
        self.end.take();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ProfileCollector {
    /// Dropped without [`ProfileCollector::finish`]: the thread ends without a profile, and is
    /// joined so that the probes are detached before the process exits.
    fn drop(&mut self) {
        self.end.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the window saw of the target besides the probes: names and mappings are refreshed
/// every [`REFRESH_EVERY`] so that a target that exits early can still be labelled and
/// symbolised.
#[derive(Default)]
struct TargetInfo {
    names: HashMap<u32, String>,
    mappings: Vec<ModuleMapping>,
}

/// Re-reads thread names and mappings, keeping what we had for whatever is gone.
fn refresh(pid: u32, mut info: TargetInfo) -> TargetInfo {
    info.names.extend(tasks::thread_names(pid));
    if let Ok(m) = executable_mappings(pid)
        && !m.is_empty()
    {
        info.mappings = m;
    }
    info
}

fn model_mappings(mappings: &[ModuleMapping]) -> Vec<Mapping> {
    mappings
        .iter()
        .map(|m| Mapping {
            start: m.start,
            limit: m.limit,
            file_offset: m.file_offset,
            path: m.path.clone(),
            build_id: m.build_id.clone(),
        })
        .collect()
}

/// The off-CPU side while the window runs.
struct OffCpuRun {
    probes: KernelProbes,
    seeds: HashMap<u32, Seed>,
    window_start_ns: u64,
    waker_stacks: bool,
    fd_labels: bool,
}

/// The profile thread's body.
fn run(
    config: ProfileConfig,
    started: oneshot::Sender<Result<ProfileStarted, CollectError>>,
    end: mpsc::Receiver<WindowEnd>,
    outcome: oneshot::Sender<ProfileOutcome>,
    progress: &AtomicU64,
) {
    let pid = config.pid;
    let set_up = || -> Result<_, CollectError> {
        let target = TargetProcess::open(pid)?;
        let info = refresh(pid, TargetInfo::default());
        // The runtime is looked for before the window starts: its DWARF takes a while to read.
        let (reader, unreadable) = find_runtime(pid, &target.comm, config.runtime)?;
        Ok((target.comm, info, reader, unreadable))
    };
    let (comm, mut info, mut reader, runtime_unreadable) = match set_up() {
        Ok(s) => s,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let unreadable_at_start = runtime_unreadable.as_ref().map(|(kind, e)| RuntimeUnreadable {
        runtime: *kind,
        cause: e.to_string(),
        hint: e.hint(),
    });
    let runtime_unreadable = runtime_unreadable.map(|(_, e)| e);
    let time_nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);

    match config.mode {
        ProfileMode::OffCpu { stack_sample_period, stacks_at_switch_out, waker_stacks, fd_labels } => {
            let selection = ProbeSelection {
                // No syscall probes: sched_switch reads the call and its fd from the thread's
                // saved registers as it goes off CPU, so fd labels cost nothing per syscall.
                switches: true,
                wakeups: true,
                offcpu_profile: true,
                offcpu_sample_ns: stack_sample_period.as_nanos() as u64,
                stacks_at_switch_out,
                waker_stacks,
                go_uprobes: config.runtime_uprobes,
                ..Default::default()
            };
            let set_up = || -> Result<_, CollectError> {
                let probes = load(&config, selection)?;
                let mut run = seed_blocked_threads(pid, probes, selection)?;
                run.fd_labels = fd_labels;
                Ok(run)
            };
            let mut run = match set_up() {
                Ok(run) => run,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let followed = match reader.as_mut() {
                Some(r) => r.profile(Some(&mut run.probes), run.window_start_ns, config.runtime_uprobes),
                None => Ok(None),
            };
            let mut followed = match followed {
                // The uprobes were asked for and the runtime found has none for profiles (only
                // Go's exist): as for no runtime at all.
                Ok(None) if config.runtime_uprobes => {
                    let _ = started.send(Err(CollectError::NotGo { pid, comm }));
                    return;
                }
                Ok(f) => f,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            if started.send(Ok(ProfileStarted { comm: comm.clone(), runtime_unreadable })).is_err() {
                return;
            }
            let count = |run: &OffCpuRun| run.probes.counters().map(|c| c.switches_out).unwrap_or(0);
            let Some(window) =
                wait_window(pid, &end, &mut info, followed.as_deref_mut(), || count(&run), progress)
            else {
                return;
            };
            let profile =
                finish_offcpu(pid, comm, run, followed.as_deref_mut(), info, time_nanos, window.cut_short);
            let unreadable = followed.as_ref().and_then(|f| f.unreadable()).or(unreadable_at_start);
            let _ = outcome.send(with_unreadable(profile, unreadable));
        }
        ProfileMode::Cpu { frequency_hz } => {
            let selection = ProbeSelection {
                cpu_profile: true,
                cpu_frequency_hz: frequency_hz,
                go_uprobes: config.runtime_uprobes,
                ..Default::default()
            };
            let probes = match load(&config, selection) {
                Ok(p) => p,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            if started.send(Ok(ProfileStarted { comm: comm.clone(), runtime_unreadable })).is_err() {
                return;
            }
            let Some(window) =
                wait_window(pid, &end, &mut info, None, || probes.cpu_samples_so_far(), progress)
            else {
                return;
            };
            let samples = probes.cpu_samples().unwrap_or_else(|e| {
                tracing::warn!("reading the CPU samples: {e}");
                CpuSamples { period_ns: sample_period_ns(frequency_hz), ..CpuSamples::default() }
            });
            // Everything is read: detach now, before the slow part.
            drop(probes);
            let info = refresh(pid, info);
            let profile = cpu::build(cpu::CpuInput {
                pid,
                comm,
                samples,
                frequency_hz,
                duration_ns: window.elapsed.as_nanos() as u64,
                time_nanos,
                names: info.names,
                mappings: model_mappings(&info.mappings),
                kernel_build_id: kernel_build_id(),
                cut_short: window.cut_short,
            });
            let unreadable = unreadable_at_start;
            let _ = outcome.send(with_unreadable(profile, unreadable));
        }
    }
}

/// The outcome, with the comment saying why a runtime's tasks are missing.
fn with_unreadable(mut profile: Profile, unreadable: Option<RuntimeUnreadable>) -> ProfileOutcome {
    if let Some(u) = &unreadable {
        let (tasks, runtime) = match u.runtime {
            RuntimeKind::Go => ("goroutines", "Go"),
            RuntimeKind::Tokio => ("tasks", "tokio"),
        };
        profile
            .comments
            .push(format!("threads only, no {tasks}: the {runtime} runtime cannot be read: {}", u.cause));
    }
    ProfileOutcome { profile, runtime_unreadable: unreadable }
}

/// A runtime found (or not), and, beside None, which one was found that cannot be read and why.
type FoundRuntime = (Option<Box<dyn RuntimeReader>>, Option<(RuntimeKind, CollectError)>);

/// The target's runtime, per `mode`: None for none (or `Off`); with `Detect`, one that cannot
/// be read is returned as the error beside None (its threads are still profiled).
fn find_runtime(pid: u32, comm: &str, mode: RuntimeMode) -> Result<FoundRuntime, CollectError> {
    if mode == RuntimeMode::Off {
        return Ok((None, None));
    }
    match runtime::detect(pid) {
        Detected::Found(reader) => Ok((Some(reader), None)),
        Detected::None if mode == RuntimeMode::Require => {
            Err(CollectError::NotGo { pid, comm: comm.to_owned() })
        }
        Detected::None => Ok((None, None)),
        Detected::Unreadable { error, .. } if mode == RuntimeMode::Require => Err(error),
        Detected::Unreadable { view, error } => Ok((None, Some((view.kind, error)))),
    }
}

/// Loads and attaches the selected probes (bpf() calls: blocking, on this thread).
fn load(config: &ProfileConfig, selection: ProbeSelection) -> Result<KernelProbes, CollectError> {
    let probes = KernelProbes::load(
        config.ebpf_object,
        ProbeConfig { tgid: config.pid, selection, block_event_min_ns: None },
    )?;
    tracing::info!(pid = config.pid, ?selection, "probes attached");
    Ok(probes)
}

/// Runs the window until the consumer ends it: reads the runtime when due, refreshes names and
/// mappings, and keeps the progress count current. None: the consumer went away.
fn wait_window(
    pid: u32,
    end: &mpsc::Receiver<WindowEnd>,
    info: &mut TargetInfo,
    mut runtime: Option<&mut (dyn RuntimeProfile + '_)>,
    count: impl Fn() -> u64,
    progress: &AtomicU64,
) -> Option<WindowEnd> {
    let now = Instant::now();
    let (mut next_read, mut next_refresh) = (now, now + REFRESH_EVERY);
    loop {
        let now = Instant::now();
        if let Some(rt) = runtime.as_deref_mut()
            && now >= next_read
        {
            next_read = now + rt.read(false);
        }
        if now >= next_refresh {
            *info = refresh(pid, std::mem::take(info));
            next_refresh = now + REFRESH_EVERY;
        }
        // One bpf() lookup of a small map.
        progress.store(count(), Ordering::Relaxed);
        let mut wake = next_refresh.min(Instant::now() + PROGRESS_EVERY);
        if runtime.is_some() {
            wake = wake.min(next_read);
        }
        match end.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(window) => {
                // One last read, so the window's end is observed, not extrapolated.
                if let Some(rt) = runtime {
                    rt.read(true);
                }
                return Some(window);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The stacks of a thread that is blocked now, from /proc: where it sits in the kernel, and its
/// user stack unwound from the pc and sp the kernel saved.
fn proc_seed(pid: u32, thread: &ThreadSample, unwinder: Option<&mut UserUnwinder>) -> Option<Seed> {
    let (pc, sp) = match thread.syscall {
        SyscallSite::In { sp, pc, .. } | SyscallSite::NotInSyscall { sp, pc } => (pc, sp),
        // Woke up while we read it.
        SyscallSite::Running => return None,
    };
    let user = unwinder.map(|u| u.unwind(pc, sp, None, MAX_USER_FRAMES)).unwrap_or_default();
    Some(Seed { user, kernel_text: read_kernel_stack(pid, thread.tid) })
}

/// Marks every thread that /proc shows blocked as off CPU since the window start (the kernel
/// never saw it leave), keeping its stacks from /proc.
fn seed_blocked_threads(
    pid: u32,
    mut probes: KernelProbes,
    selection: ProbeSelection,
) -> Result<OffCpuRun, CollectError> {
    let window_start_ns = monotonic_now_ns();
    let threads = read_threads(pid)?;
    let mut unwinder = UserUnwinder::new(pid).ok();
    let mut seeds = HashMap::new();
    let mut seeded: Vec<(u32, OffCpuStart)> = Vec::new();
    for t in threads.iter().filter(|t| t.state.is_blocked()) {
        let (nr, arg0) = match t.syscall {
            SyscallSite::In { nr, args, .. } => (nr as i32, args[0]),
            SyscallSite::NotInSyscall { .. } => (-1, 0),
            SyscallSite::Running => continue,
        };
        let start = OffCpuStart {
            start_ns: window_start_ns,
            prev_state: if t.state == ProcState::DiskSleep { 2 } else { 1 },
            arg0,
            user_stack_id: PRE_ATTACH_STACK,
            kernel_stack_id: PRE_ATTACH_STACK,
            nr,
            ..OffCpuStart::default()
        };
        match probes.seed_off_cpu(t.tid, &start) {
            Ok(true) => {}
            // It switched out after attach: the kernel's record is exact.
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(tid = t.tid, "cannot record a thread blocked before attach: {e}");
                continue;
            }
        }
        if let Some(seed) = proc_seed(pid, t, unwinder.as_mut()) {
            seeds.insert(t.tid, seed);
        }
        seeded.push((t.tid, start));
    }
    // A thread that ran between our /proc read and the seed would be credited a wait it is not
    // in: check again and take those seeds back.
    for (tid, start) in seeded {
        if tasks::task_state(pid, tid) == Some(ProcState::Running) {
            let _ = probes.unseed_off_cpu(tid, &start);
            seeds.remove(&tid);
        }
    }
    tracing::info!(pid, blocked_at_attach = seeds.len(), "off-CPU profiling started");
    Ok(OffCpuRun { probes, seeds, window_start_ns, waker_stacks: selection.waker_stacks, fd_labels: false })
}

/// Threads still blocked at the window's end whose stacks the kernel has not taken (it takes
/// them when a thread is switched back in): read them from /proc, as for the threads blocked
/// at attach, and mark their intervals to use them. A thread that ran meanwhile (its slot's
/// start changed) keeps its interval, without a stack.
///
/// Only waits older than [`END_SEED_MIN_NS`] are read. /proc/TID/syscall makes the kernel wait
/// until the thread is off CPU in the same state (wait_task_inactive), which for a thread
/// switching hundreds of thousands of times a second can spin for as long as it keeps doing so;
/// a thread that has waited that long is truly blocked and answers at once, and a younger wait
/// is too short to matter (it keeps its time, without a stack).
fn seed_still_blocked(
    pid: u32,
    probes: &KernelProbes,
    in_progress: &mut HashMap<u32, OffCpuStart>,
    seeds: &mut HashMap<u32, Seed>,
    window_end_ns: u64,
) {
    let pending: Vec<u32> = in_progress
        .iter()
        .filter(|(_, s)| s.user_stack_id == NO_STACK && s.kernel_stack_id == NO_STACK)
        .filter(|(_, s)| window_end_ns.saturating_sub(s.start_ns) >= END_SEED_MIN_NS)
        .map(|(&tid, _)| tid)
        .collect();
    if pending.is_empty() {
        return;
    }
    let mut unwinder = UserUnwinder::new(pid).ok();
    let mut read: HashMap<u32, Seed> = HashMap::new();
    for t in pending.iter().filter_map(|&tid| read_thread(pid, tid).ok()) {
        if let Some(seed) = proc_seed(pid, &t, unwinder.as_mut()) {
            read.insert(t.tid, seed);
        }
    }
    let now = probes.off_cpu().unwrap_or_default();
    for (tid, seed) in read {
        let (Some(then), Some(again)) = (in_progress.get_mut(&tid), now.get(&tid)) else { continue };
        if again.start_ns == then.start_ns {
            (then.user_stack_id, then.kernel_stack_id) = (PRE_ATTACH_STACK, PRE_ATTACH_STACK);
            seeds.insert(tid, seed);
        }
    }
}

/// Reads what the kernel summed, detaches, and builds the off-CPU profile.
fn finish_offcpu(
    pid: u32,
    comm: String,
    run: OffCpuRun,
    mut runtime: Option<&mut (dyn RuntimeProfile + '_)>,
    info: TargetInfo,
    time_nanos: i64,
    cut_short: Option<String>,
) -> Profile {
    let window_end_ns = monotonic_now_ns();
    let probes = &run.probes;
    if let Some(rt) = runtime.as_deref_mut() {
        rt.finish(Some(probes), run.window_start_ns, window_end_ns);
    }
    let blocked_at_attach = run.seeds.len();
    let mut seeds = run.seeds;
    let warn = |what: &str, e: &dyn std::fmt::Display| tracing::warn!("reading {what}: {e}");
    let totals = probes.off_cpu_totals().unwrap_or_else(|e| {
        warn("off-CPU totals", &e);
        HashMap::new()
    });
    // Per-thread slots: exact totals of completed intervals, and the intervals still open.
    let slots = probes.off_cpu().unwrap_or_default();
    let thread_totals: HashMap<u32, (u64, u64)> =
        slots.iter().map(|(&tid, s)| (tid, (s.total_ns, s.count))).collect();
    tracing::debug!(
        ?thread_totals,
        window_ns = window_end_ns - run.window_start_ns,
        "exact off-CPU totals per thread"
    );
    let mut in_progress: HashMap<u32, OffCpuStart> =
        slots.into_iter().filter(|(_, s)| s.start_ns != 0).collect();
    seed_still_blocked(pid, probes, &mut in_progress, &mut seeds, window_end_ns);
    let mut kernel = KernelTotals {
        totals,
        thread_totals,
        stack_sample_ns: probes.offcpu_stack_sample_ns(),
        in_progress,
        wakes: probes.last_wakes().unwrap_or_default(),
        stacks: HashMap::new(),
        counters: probes.counters().unwrap_or_default(),
    };
    let ids = kernel
        .totals
        .keys()
        .flat_map(|k| [k.user_stack_id, k.kernel_stack_id, k.waker_user_stack_id, k.waker_kernel_stack_id])
        .chain(kernel.in_progress.values().flat_map(|s| [s.user_stack_id, s.kernel_stack_id]))
        .chain(kernel.wakes.values().flat_map(|w| [w.waker_user_stack_id, w.waker_kernel_stack_id]))
        .filter(|&id| id >= 0)
        .collect::<std::collections::HashSet<i32>>();
    for id in ids {
        if let Ok(stack) = probes.stack(id) {
            kernel.stacks.insert(id, stack);
        }
    }
    // Everything is read: detach now, before the slow part.
    drop(run.probes);

    let alive_view = read_threads(pid).ok();
    let info = refresh(pid, info);
    let alive = alive_view.map(|ts| ts.iter().map(|t| t.tid).collect()).unwrap_or_default();
    offcpu::build(OffCpuInput {
        pid,
        comm,
        kernel,
        seeds,
        blocked_at_attach,
        window_start_ns: run.window_start_ns,
        window_end_ns,
        time_nanos,
        names: info.names,
        alive,
        fds: FdTable::read(pid).ok(),
        mappings: model_mappings(&info.mappings),
        kernel_build_id: kernel_build_id(),
        cut_short,
        waker_stacks: run.waker_stacks,
        fd_labels: run.fd_labels,
        runtime: runtime.map(|rt| rt.labels()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{go::profile::GoroutineTimes, profile::ProfileLabels};

    /// A runtime that only counts its reads (`true`: the read at the window's end).
    struct CountingReads {
        reads: Vec<bool>,
        labels: GoroutineTimes,
    }

    impl RuntimeProfile for CountingReads {
        fn read(&mut self, last: bool) -> Duration {
            self.reads.push(last);
            Duration::from_millis(100)
        }
        fn finish(&mut self, _: Option<&KernelProbes>, _: u64, _: u64) {}
        fn unreadable(&self) -> Option<RuntimeUnreadable> {
            None
        }
        fn labels(&self) -> &dyn ProfileLabels {
            &self.labels
        }
    }

    #[test]
    fn the_window_reads_the_runtime_each_period_and_once_more_at_its_end() {
        let pid = std::process::id();
        let (end, end_rx) = mpsc::channel();
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(350));
            end.send(WindowEnd { elapsed: Duration::from_millis(350), cut_short: Some("why".into()) })
        });
        let mut runtime = CountingReads { reads: Vec::new(), labels: GoroutineTimes::default() };
        let progress = AtomicU64::new(0);
        let mut info = TargetInfo::default();
        let began = Instant::now();
        let window = wait_window(pid, &end_rx, &mut info, Some(&mut runtime), || 42, &progress)
            .expect("the consumer ended the window");
        ender.join().expect("ender").expect("sent");
        assert!(began.elapsed() >= Duration::from_millis(350));
        assert_eq!(window.cut_short.as_deref(), Some("why"));
        // Reads at 0, 100, 200 and 300 ms (one may slip on a busy machine), then the last.
        let during = runtime.reads.iter().filter(|&&last| !last).count();
        assert!((2..=4).contains(&during), "{:?}", runtime.reads);
        assert_eq!(runtime.reads.last(), Some(&true), "{:?}", runtime.reads);
        assert_eq!(runtime.reads.iter().filter(|&&last| last).count(), 1);
        assert_eq!(progress.load(Ordering::Relaxed), 42);

        // A consumer gone without ending the window: no profile, no last read.
        let (end, end_rx) = mpsc::channel::<WindowEnd>();
        drop(end);
        let mut runtime = CountingReads { reads: Vec::new(), labels: GoroutineTimes::default() };
        assert!(wait_window(pid, &end_rx, &mut info, Some(&mut runtime), || 0, &progress).is_none());
        assert_eq!(runtime.reads, vec![false]);
    }
}
