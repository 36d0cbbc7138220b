//! `parkscope profile`: a blocked-time (off-CPU) or CPU profile of a live process over a window,
//! written as gzipped pprof, and optionally as folded stacks and an SVG flame graph.
//!
//! The reactor only waits (window, signals, target exit, a one-second progress tick). Attaching
//! (including the per-CPU sampling events of CPU profiles), reading /proc and the maps,
//! unwinding, symbolising and encoding run on tokio's blocking pool; CPU samples are counted in
//! kernel and read once at the end, and a Go target's runtime is read by a sampler on the
//! blocking pool (profile::goroutines). Ctrl-C or the target's exit ends the window early: what
//! was collected is still written, and the exit code says so.

use std::{
    collections::HashMap,
    io::IsTerminal,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use parkscope_common::{NO_STACK, OffCpuStart, PRE_ATTACH_STACK};
use parkscope_probes::{
    go::{GoError, GoProcess},
    kernel::{CpuSamples, KernelProbes, ProbeSelection, monotonic_now_ns, sample_period_ns},
    procfs::{
        fds::FdTable,
        tasks,
        threads::{ProcState, SyscallSite, ThreadSample, read_kernel_stack, read_thread, read_threads},
    },
    stacks::{ModuleMapping, UserUnwinder, executable_mappings, kernel_build_id},
};
use tokio::io::AsyncWriteExt;

use super::{attach, blocking, open_target};
use crate::{
    cli::{ProfileArgs, ProfileKindArg},
    error::{Failure, code},
    profile::{
        self, Profile,
        goroutines::{ExactGoWaits, GoSampler, GoroutineTimes},
        offcpu::{KernelTotals, OffCpuInput, Seed},
    },
    session::{Session, Wake},
};

/// Deepest user stack unwound for threads already blocked at attach.
const MAX_USER_FRAMES: usize = 64;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Waits in progress at the end get stacks from /proc only when at least this old (see
/// seed_still_blocked).
const END_SEED_MIN_NS: u64 = 10_000_000;
/// Above this a sampled wait would stand for more time than most windows last.
const MAX_STACK_SAMPLE_PERIOD: Duration = Duration::from_secs(10);

/// The off-CPU side while the window runs.
struct OffCpuRun {
    probes: KernelProbes,
    seeds: HashMap<u32, Seed>,
    window_start_ns: u64,
    waker_stacks: bool,
    fd_labels: bool,
    /// The Go uprobes are attached: goroutine waits are summed in kernel, exactly.
    go_uprobes: bool,
}

enum Collector {
    OffCpu(Box<OffCpuRun>),
    /// The per-CPU sampling events; the samples stay in the kernel's maps until the end.
    Cpu(KernelProbes),
}

/// What the window saw of the target besides the probes: names and mappings are refreshed
/// every tick so that a target that exits early can still be labelled and symbolised.
#[derive(Default)]
struct TargetInfo {
    names: HashMap<u32, String>,
    mappings: Vec<ModuleMapping>,
}

pub async fn run(args: ProfileArgs) -> Result<i32, Failure> {
    if args.duration.is_zero() {
        return Err(Failure::new(code::USAGE, "--duration must be positive", "e.g. --duration 10s"));
    }
    if !(1..=10_000).contains(&args.frequency) {
        return Err(Failure::new(
            code::USAGE,
            "--frequency must be 1..=10000 Hz",
            "the default, 99, suits most uses",
        ));
    }
    if args.stack_sample_period > MAX_STACK_SAMPLE_PERIOD {
        return Err(Failure::new(
            code::USAGE,
            "--stack-sample-period must be at most 10s",
            "the default, 10ms, keeps the cost low; 0 captures every wait",
        ));
    }
    if args.kind == ProfileKindArg::Cpu && (args.waker_stacks || args.fd_labels || args.go_uprobes) {
        return Err(Failure::new(
            code::USAGE,
            "--waker-stacks, --fd-labels and --go-uprobes apply to off-CPU profiles",
            "drop them, or use --kind offcpu",
        ));
    }
    let pid = args.pid;
    let target = open_target(pid).await?;
    let comm = target.comm.clone();
    let target_comm = comm.clone();
    let mut session = Session::new(pid).map_err(|e| Failure::internal(&e.into()))?;
    let mut info = blocking(move || refresh(pid, TargetInfo::default())).await?;

    // The Go runtime is looked for before the window starts: its DWARF takes a while to read.
    // A Go program whose runtime cannot be read is still profiled, by its threads (the profile
    // and the warning say why, and the exit code is GO_UNREADABLE).
    let mut go_unreadable: Option<Failure> = None;
    let mut go = if args.go_uprobes {
        // Asked for by name: a target whose runtime cannot be read is an error, not a fallback.
        Some(blocking(move || GoProcess::attach(pid)).await?.map_err(|e| match e {
            GoError::NotGo { .. } => Failure::new(
                code::NOT_GO,
                format!("--go-uprobes: process {pid} ({target_comm}) is not a Go program"),
                "drop --go-uprobes; threads are profiled without it",
            ),
            other => other.into(),
        })?)
    } else if args.kind == ProfileKindArg::Offcpu && !args.no_go {
        match blocking(move || find_go(pid)).await? {
            Ok(go) => go,
            Err(f) => {
                go_unreadable = Some(f);
                None
            }
        }
    } else {
        None
    };

    let time_nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let mut go_sampler = None;
    let collector = match args.kind {
        ProfileKindArg::Offcpu => {
            let selection = ProbeSelection {
                // No syscall probes: sched_switch reads the call and its fd from the thread's
                // saved registers as it goes off CPU, so fd labels cost nothing per syscall.
                switches: true,
                wakeups: true,
                offcpu_profile: true,
                offcpu_sample_ns: args.stack_sample_period.as_nanos() as u64,
                stacks_at_switch_out: args.stacks_at_switch_out,
                waker_stacks: args.waker_stacks,
                ..Default::default()
            };
            let mut run = start_offcpu(pid, selection).await?;
            run.fd_labels = args.fd_labels;
            if args.go_uprobes
                && let Some(g) = go
            {
                let window_start = run.window_start_ns;
                let (attached, r, g) = blocking(move || {
                    let attached = parkscope_collector::runtime::go::uprobes::attach(
                        &mut run.probes,
                        &g,
                        true,
                        Some(window_start),
                    );
                    (attached, run, g)
                })
                .await?;
                attached?;
                run = r;
                run.go_uprobes = true;
                go = Some(g);
            }
            go_sampler = go.map(|g| GoSampler::start(g, run.window_start_ns, run.go_uprobes));
            Collector::OffCpu(Box::new(run))
        }
        ProfileKindArg::Cpu => {
            let selection =
                ProbeSelection { cpu_profile: true, cpu_frequency_hz: args.frequency, ..Default::default() };
            Collector::Cpu(attach(pid, selection, None).await?)
        }
    };

    // The window, with a progress line every second. It starts once collection has started
    // (attaching takes a while), so the profile covers the whole --duration.
    let started = Instant::now();
    let progress = Progress::new(pid, args.kind, args.duration);
    let deadline = started + args.duration;
    let wake = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match session.wait(Some(remaining.min(PROGRESS_EVERY))).await {
            Wake::Deadline if remaining <= PROGRESS_EVERY => break Wake::Deadline,
            Wake::Deadline => {
                progress.tick(started.elapsed(), collected_so_far(&collector)).await;
                info = blocking(move || refresh(pid, info)).await?;
            }
            other => break other,
        }
    };
    let elapsed = started.elapsed();
    progress.done().await;
    let cut_short = match wake {
        Wake::Deadline => None,
        Wake::Interrupted => Some(format!("interrupted after {:.1} s", elapsed.as_secs_f64())),
        Wake::TargetExited => Some(format!("the target exited after {:.1} s", elapsed.as_secs_f64())),
    };

    let go_times = match go_sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    // Found at attach but never read since: as unreadable as a runtime not found.
    if let Some((times, _)) = &go_times
        && times.reads == 0
        && times.failed_reads > 0
    {
        go_unreadable = Some(Failure::new(
            code::GO_UNREADABLE,
            format!("all {} reads of the Go runtime during the window failed", times.failed_reads),
            "run with -vv to see why each read failed, or pass --no-go for the threads only",
        ));
    }
    let kind = args.kind;
    let freq = args.frequency;
    let why = cut_short.clone();
    let profile = blocking(move || match collector {
        Collector::OffCpu(run) => finish_offcpu(pid, comm, *run, go_times, info, time_nanos, why),
        Collector::Cpu(probes) => {
            let samples = probes.cpu_samples().unwrap_or_else(|e| {
                tracing::warn!("reading the CPU samples: {e}");
                CpuSamples { period_ns: sample_period_ns(freq), ..CpuSamples::default() }
            });
            // Everything is read: detach now, before the slow part.
            drop(probes);
            let info = refresh(pid, info);
            profile::cpu::build(profile::cpu::CpuInput {
                pid,
                comm,
                samples,
                frequency_hz: freq,
                duration_ns: elapsed.as_nanos() as u64,
                time_nanos,
                names: info.names,
                mappings: info.mappings,
                kernel_build_id: kernel_build_id(),
                cut_short: why,
            })
        }
    })
    .await?;
    let mut profile = profile;
    if let Some(f) = &go_unreadable {
        profile
            .comments
            .push(format!("threads only, no goroutines: the Go runtime cannot be read: {}", f.cause));
    }

    write_outputs(&args, &profile).await?;
    let samples: usize = profile.samples.len();
    eprintln!(
        "parkscope: wrote {} ({} kind, {:.1} s, {samples} distinct stacks){}",
        args.output.display(),
        kind.as_str(),
        elapsed.as_secs_f64(),
        cut_short.as_ref().map_or(String::new(), |w| format!("; window cut short: {w}, partial profile"))
    );
    if let Some(f) = &go_unreadable {
        super::warn_go_unreadable(&f.cause, f.hint.as_deref(), "profiled its threads only");
    }
    Ok(match wake {
        Wake::Deadline if go_unreadable.is_some() => code::GO_UNREADABLE,
        Wake::Deadline => code::SUCCESS,
        Wake::Interrupted => code::INTERRUPTED,
        Wake::TargetExited => code::TARGET_EXITED,
    })
}

/// The Go runtime of the target: None for a non-Go program, `Err` (cause and hint) for a Go
/// program whose runtime cannot be read (stripped, unknown release, ...), which is then
/// profiled by its threads.
fn find_go(pid: u32) -> Result<Option<GoProcess>, Failure> {
    match GoProcess::attach(pid) {
        Ok(go) => {
            tracing::info!(version = go.version(), "Go runtime found: sampling goroutines");
            Ok(Some(go))
        }
        Err(GoError::NotGo { .. }) => Ok(None),
        Err(e) => Err(Failure::from(e)),
    }
}

/// Attaches the off-CPU probes, then marks every thread that /proc shows blocked as off CPU
/// since the window start (the kernel never saw it leave), keeping its stacks from /proc.
async fn start_offcpu(pid: u32, selection: ProbeSelection) -> Result<OffCpuRun, Failure> {
    let probes = attach(pid, selection, None).await?;
    blocking(move || seed_blocked_threads(pid, probes, selection)).await?
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

fn seed_blocked_threads(
    pid: u32,
    mut probes: KernelProbes,
    selection: ProbeSelection,
) -> Result<OffCpuRun, Failure> {
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
    Ok(OffCpuRun {
        probes,
        seeds,
        window_start_ns,
        waker_stacks: selection.waker_stacks,
        fd_labels: false,
        go_uprobes: false,
    })
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

fn finish_offcpu(
    pid: u32,
    comm: String,
    run: OffCpuRun,
    go: Option<(GoroutineTimes, GoProcess)>,
    info: TargetInfo,
    time_nanos: i64,
    cut_short: Option<String>,
) -> Profile {
    let window_end_ns = monotonic_now_ns();
    let probes = &run.probes;
    let go = go.map(|(mut times, process)| {
        times.finish(window_end_ns);
        if run.go_uprobes {
            let exact = exact_go_waits(probes);
            times.use_exact(&process, &exact, run.window_start_ns, window_end_ns);
        }
        times
    });
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
    profile::offcpu::build(OffCpuInput {
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
        mappings: info.mappings,
        kernel_build_id: kernel_build_id(),
        cut_short,
        waker_stacks: run.waker_stacks,
        fd_labels: run.fd_labels,
        go,
    })
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

fn collected_so_far(c: &Collector) -> String {
    match c {
        // One bpf() lookup of a small per-CPU array: does not sleep, fine on the reactor.
        Collector::OffCpu(run) => {
            let n = run.probes.counters().map(|c| c.switches_out).unwrap_or(0);
            format!("{n} context switches")
        }
        // The same kind of lookup.
        Collector::Cpu(probes) => format!("{} samples", probes.cpu_samples_so_far()),
    }
}

/// The progress line on stderr: redrawn in place on a terminal, one line per tick otherwise.
struct Progress {
    pid: u32,
    kind: ProfileKindArg,
    duration: Duration,
    tty: bool,
}

impl Progress {
    fn new(pid: u32, kind: ProfileKindArg, duration: Duration) -> Self {
        Self { pid, kind, duration, tty: std::io::stderr().is_terminal() }
    }

    async fn tick(&self, elapsed: Duration, collected: String) {
        let line = format!(
            "parkscope: profiling pid {} ({}): {:.0}s/{:.0}s, {collected}",
            self.pid,
            self.kind.as_str(),
            elapsed.as_secs_f64(),
            self.duration.as_secs_f64()
        );
        let text = if self.tty { format!("\r\x1b[2K{line}") } else { format!("{line}\n") };
        let mut err = tokio::io::stderr();
        let _ = err.write_all(text.as_bytes()).await;
        let _ = err.flush().await;
    }

    async fn done(&self) {
        if self.tty {
            let mut err = tokio::io::stderr();
            let _ = err.write_all(b"\r\x1b[2K").await;
            let _ = err.flush().await;
        }
    }
}

async fn write_outputs(args: &ProfileArgs, profile: &Profile) -> Result<(), Failure> {
    let p = profile.clone();
    let pprof =
        blocking(move || profile::pprof::encode(&p)).await?.map_err(|e| write_failure(&args.output, e))?;
    write_file(&args.output, &pprof).await?;
    if let Some(path) = &args.folded {
        write_file(path, profile::folded::encode(profile).as_bytes()).await?;
    }
    if let Some(path) = &args.flamegraph {
        let p = profile.clone();
        let svg =
            blocking(move || profile::flamegraph::encode(&p)).await?.map_err(|e| write_failure(path, e))?;
        write_file(path, &svg).await?;
    }
    Ok(())
}

async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let (owned, data) = (path.to_owned(), bytes.to_vec());
    blocking(move || std::fs::write(owned, data)).await?.map_err(|e| write_failure(path, e))
}

fn write_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        code::INTERNAL,
        format!("cannot write {}: {e}", path.display()),
        "check that the directory exists and is writable",
    )
}
