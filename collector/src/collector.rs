//! The [`Collector`]: one target's probes, observer and runtime reader on a thread of their own,
//! yielding model snapshots and events to one consumer over a channel. The thread does every
//! blocking read (/proc, bpf(), target memory, symbolisation) itself and waits (window,
//! interval, the long-call ring buffer, the target's exit through a pidfd, the consumer's
//! requests) on a private current-thread runtime, so a consumer's reactor never runs either.
//! When the thread ends the probes are detached (dropped) before its channel closes.

use std::{os::fd::OwnedFd, time::Duration};

use parkscope_model::{Event, RuntimeKind, Snapshot};
use parkscope_probes::{
    kernel::{BlockEventStream, KernelProbes, ProbeConfig, ProbeSelection},
    procfs::process::{TargetProcess, pidfd_open},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    error::CollectError,
    observe::{ObserveOptions, Observer},
};

/// The kernel batches ring-buffer wakeups; drain at least this often so it never fills.
const DRAIN_EVERY: Duration = Duration::from_millis(200);
/// Updates queued for a slow consumer before the collector waits for it.
const UPDATE_QUEUE: usize = 1024;

/// Which probes to load, and the long-call stream's threshold.
#[derive(Debug, Clone, Copy)]
pub struct ProbePlan {
    pub selection: ProbeSelection,
    /// Stream calls that block at least this long (`Update::Event`); None: no stream.
    pub long_call_min_ns: Option<u64>,
}

/// Whether to look for a language runtime in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    /// Do not look (threads only).
    Off,
    /// Look; a runtime that cannot be read is reported in [`Started`] and every view says why
    /// next to its threads.
    Detect,
    /// A readable runtime is required: none ([`CollectError::NotGo`]), or one that cannot be
    /// read, fails the start.
    Require,
}

/// When views are taken.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// A seed view at once, then one when the window ends (or at [`Collector::finish`]); a
    /// zero window: the seed only. If the target exits during the window, the seed stands and
    /// [`Update::TargetExited`] follows it.
    Window(Duration),
    /// A view at each multiple of `every` from the start (no drift), `count` of them (None:
    /// until stopped); with `at_start`, one more at once, before the first interval (what a
    /// recording wants: a view right after attach; a schedtrace line waits one interval, as
    /// GODEBUG's does).
    Interval { every: Duration, count: Option<u64>, at_start: bool },
}

/// What to collect from which target.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub pid: u32,
    /// The BPF ELF object (embedded in the binary that links the collector).
    pub ebpf_object: &'static [u8],
    /// The probes to load; None: none (a zero window).
    pub probes: Option<ProbePlan>,
    pub runtime: RuntimeMode,
    /// Attach the runtime's uprobes (needs `RuntimeMode::Require` and probes).
    pub runtime_uprobes: bool,
    /// What each view includes. `goroutines` is honoured only when a readable runtime is found.
    pub view: ObserveOptions,
    /// Interval schedules: while a readable runtime is found, yield its own schedtrace text
    /// (`Some(detail)`) instead of snapshots, with no probes loaded; if it stops being readable,
    /// [`Update::RuntimeUnreadable`] says so and snapshots (with `probes`) follow.
    pub runtime_schedtrace: Option<bool>,
    /// Interval schedules with snapshots: read the runtime's own schedtrace (no detail) right
    /// after each view and yield it with it (a live viewer's header line). A failed read is
    /// logged and the view goes out without it.
    pub runtime_schedtrace_with_views: bool,
    /// A runtime worker inside one task's poll at least this long is a stall (tokio).
    pub stall: Duration,
    pub schedule: Schedule,
}

/// What the collector found once it was set up.
#[derive(Debug)]
pub struct Started {
    /// The target's short name (/proc/PID/comm).
    pub comm: String,
    /// A runtime was found and can be read.
    pub runtime_readable: bool,
    /// A runtime was found that cannot be read (`RuntimeMode::Detect`): why.
    pub runtime_unreadable: Option<CollectError>,
    /// The target's executable (/proc/PID/exe), when it can be read.
    pub exe: Option<std::path::PathBuf>,
    /// The build id of that executable (GNU hex, or Go's), read through /proc/PID/exe: the
    /// file the target runs, even if its path was replaced.
    pub build_id: Option<String>,
    /// The runtime found (kind, version; readable or not), None when there is none or none
    /// was looked for.
    pub runtime: Option<parkscope_model::RuntimeView>,
}

/// What the collector yields. The channel closes after the last view of the schedule,
/// [`Update::TargetExited`] or [`Update::Failed`], or a stop.
#[derive(Debug)]
pub enum Update {
    /// A view of the target. `seed`: the one taken at once (window schedules); `elapsed`:
    /// since the schedule started.
    Snapshot {
        snapshot: Box<Snapshot>,
        seed: bool,
        elapsed: Duration,
        /// The runtime's own schedtrace of the same instant, read right after the view (with
        /// `Config::runtime_schedtrace_with_views`, while the runtime is readable).
        runtime_schedtrace: Option<crate::runtime::SchedTrace>,
    },
    /// The runtime's own schedtrace for one interval (see `Config::runtime_schedtrace`).
    RuntimeSchedtrace(crate::runtime::SchedTrace),
    /// The runtime stopped being readable: thread snapshots follow, and say why.
    RuntimeUnreadable(CollectError),
    /// An event between views (a long call that ended).
    Event(Event),
    /// The target exited; nothing follows.
    TargetExited,
    /// Collection failed; nothing follows.
    Failed(CollectError),
}

/// What the consumer asks of the collector's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Take the window's last view now (Ctrl-C during a snapshot's window).
    Finish,
    /// End now, with no further view.
    Stop,
}

/// The consumer's handle on a collector thread.
pub struct Collector {
    updates: mpsc::Receiver<Update>,
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    /// Starts collecting on a new thread and waits until it is set up: the target validated,
    /// the probes loaded and the runtime looked for. Errors are those of the setup.
    pub async fn start(config: Config) -> Result<(Collector, Started), CollectError> {
        let (updates_tx, updates) = mpsc::channel(UPDATE_QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("parkscope-collector".to_owned())
            .spawn(move || run(config, control_rx, updates_tx, started_tx))
            .map_err(|e| CollectError::Internal(format!("starting the collector thread: {e}")))?;
        let mut collector = Collector { updates, control, thread: Some(thread) };
        match started_rx.await {
            Ok(Ok(started)) => Ok((collector, started)),
            Ok(Err(e)) => {
                collector.join().await;
                Err(e)
            }
            Err(_) => {
                collector.join().await;
                Err(CollectError::Internal("the collector thread ended during setup".to_owned()))
            }
        }
    }

    /// The next update; None once the collector has ended (its probes are detached by then).
    pub async fn next(&mut self) -> Option<Update> {
        self.updates.recv().await
    }

    /// Asks for the window's last view now.
    pub fn finish(&self) {
        let _ = self.control.send(Control::Finish);
    }

    /// Stops the collector and waits until its thread has ended (probes detached).
    pub async fn stop(mut self) {
        let _ = self.control.send(Control::Stop);
        self.updates.close();
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Collector {
    /// A collector dropped without [`Collector::stop`] is stopped here, and its thread joined
    /// so that the probes are detached before the process exits.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.control.send(Control::Stop);
            self.updates.close();
            let _ = thread.join();
        }
    }
}

/// The collector thread's body.
fn run(
    config: Config,
    control: mpsc::UnboundedReceiver<Control>,
    updates: mpsc::Sender<Update>,
    started: oneshot::Sender<Result<Started, CollectError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ =
                started.send(Err(CollectError::Internal(format!("starting the collector's runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let mut run = match Run::set_up(config, control, &updates).await {
            Ok((run, s)) => {
                if started.send(Ok(s)).is_err() {
                    return;
                }
                run
            }
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        match config.schedule {
            Schedule::Window(window) => run.window(window).await,
            Schedule::Interval { every, count, at_start } => run.intervals(every, count, at_start).await,
        }
        // The probes are detached here, before `updates` closes the channel.
        drop(run);
    });
}

/// What woke a wait's select: its end, events to forward, or the runtime's sampling beat.
enum Woke {
    Done(Woken),
    Events(Vec<parkscope_common::BlockEvent>),
    Sample,
}

/// Why a wait ended.
enum Woken {
    Deadline,
    Finish,
    Stop,
    TargetExited,
}

/// One collection run, on the collector's thread.
struct Run<'a> {
    config: Config,
    observer: Observer,
    opts: ObserveOptions,
    control: mpsc::UnboundedReceiver<Control>,
    updates: &'a mpsc::Sender<Update>,
    /// Readable once the target exits; None on kernels without pidfd_open (the next /proc
    /// read notices instead).
    exit: Option<AsyncFd<OwnedFd>>,
    long_calls: Option<BlockEventStream>,
    /// Yielding the runtime's own schedtrace text rather than snapshots.
    runtime_lines: bool,
    /// When the runtime is next sampled between views (see `RuntimeReader::sample`).
    next_sample: Option<Instant>,
    /// When the probes were attached: a window counts from here, so that reading the
    /// runtime and taking the seed view (a second or so for 10,000 threads with stacks)
    /// happen inside it, not before it.
    attached: Option<Instant>,
}

impl<'a> Run<'a> {
    async fn set_up(
        config: Config,
        control: mpsc::UnboundedReceiver<Control>,
        updates: &'a mpsc::Sender<Update>,
    ) -> Result<(Run<'a>, Started), CollectError> {
        let pid = config.pid;
        let target = TargetProcess::open(pid)?;
        let comm = target.comm.clone();
        let exit = pidfd_open(pid).ok().and_then(|fd| {
            // SAFETY: the OwnedFd keeps the fd open for the AsyncFd's whole life.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
        });
        let mut run = Run {
            config,
            observer: Observer::new(target, None),
            opts: ObserveOptions { goroutines: false, ..config.view },
            control,
            updates,
            exit,
            long_calls: None,
            runtime_lines: false,
            next_sample: None,
            attached: None,
        };
        // Probes first, so that calls begun while the runtime is looked for (its DWARF takes
        // a while) are seen; but not for the runtime's own schedtrace, which needs none.
        let lazy_probes = config.runtime_schedtrace.is_some() && config.runtime != RuntimeMode::Off;
        if !lazy_probes {
            run.load_probes()?;
        }
        run.observer.stall_ns = u64::try_from(config.stall.as_nanos()).unwrap_or(u64::MAX);
        let mut runtime_unreadable = None;
        if config.runtime != RuntimeMode::Off {
            match run.observer.detect_runtime() {
                // Go detail asked for by name (goroutines, Go uprobes) of another runtime.
                Ok(true)
                    if config.runtime == RuntimeMode::Require
                        && run.observer.runtime_identity().is_none_or(|r| r.kind != RuntimeKind::Go) =>
                {
                    return Err(CollectError::NotGo { pid, comm });
                }
                Ok(true) => {
                    run.opts.goroutines = config.view.goroutines;
                    // tokio learns roles from parked workers' stacks.
                    run.opts.stacks |= run.observer.runtime_needs_thread_stacks();
                }
                Ok(false) if config.runtime == RuntimeMode::Require => {
                    return Err(CollectError::NotGo { pid, comm });
                }
                Ok(false) => {}
                Err(e) if e.target_gone() || config.runtime == RuntimeMode::Require => return Err(e),
                Err(e) => runtime_unreadable = Some(e),
            }
        }
        if config.runtime_uprobes {
            run.observer.attach_runtime_uprobes()?;
            // The window also counts from the uprobes' attach: a goroutine parked before it
            // gets the window as its lower bound, as the window's length promises.
            run.attached = Some(Instant::now());
        }
        if lazy_probes {
            if run.observer.runtime_has_schedtrace() {
                run.runtime_lines = true;
            } else {
                run.load_probes()?;
            }
        }
        let started = Started {
            comm,
            runtime_readable: run.observer.has_runtime(),
            runtime_unreadable,
            exe: run.observer.target.exe.clone(),
            build_id: parkscope_probes::stacks::modules::elf_build_id(std::path::Path::new(&format!(
                "/proc/{pid}/exe"
            ))),
            runtime: run.observer.runtime_identity(),
        };
        Ok((run, started))
    }

    /// Loads the configured probes (bpf() calls: blocking, on this thread) and takes their
    /// long-call stream.
    fn load_probes(&mut self) -> Result<(), CollectError> {
        let Some(plan) = self.config.probes else { return Ok(()) };
        // The Go uprobes' maps are sized at load, so whether they may come is said now.
        let selection = ProbeSelection { go_uprobes: self.config.runtime_uprobes, ..plan.selection };
        let config =
            ProbeConfig { tgid: self.config.pid, selection, block_event_min_ns: plan.long_call_min_ns };
        let probes = KernelProbes::load(self.config.ebpf_object, config)?;
        tracing::info!(pid = self.config.pid, ?selection, "probes attached");
        self.observer.set_probes(probes);
        self.attached = Some(Instant::now());
        self.long_calls = self.observer.take_block_events();
        Ok(())
    }

    /// Sends an update; false when the consumer is gone.
    async fn send(&self, update: Update) -> bool {
        self.updates.send(update).await.is_ok()
    }

    /// Waits until `deadline`, a request, or the target's exit, draining the long-call stream
    /// into the observer (and the consumer) meanwhile.
    async fn wait(&mut self, deadline: Instant) -> Woken {
        loop {
            let exited = async {
                match &self.exit {
                    Some(fd) => match fd.readable().await {
                        Ok(_guard) => {}
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let batch = async {
                match self.long_calls.as_mut() {
                    Some(stream) => Some(stream.next_batch(DRAIN_EVERY).await),
                    None => std::future::pending().await,
                }
            };
            // A runtime that wants sampling between views (tokio) gets it on a fixed beat.
            let sample_every = self.observer.runtime_sample_every();
            let sample_at =
                sample_every.map(|every| *self.next_sample.get_or_insert_with(|| Instant::now() + every));
            let sample = async {
                match sample_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let control = &mut self.control;
            let got = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => Woke::Done(Woken::Deadline),
                c = control.recv() => Woke::Done(match c {
                    Some(Control::Finish) => Woken::Finish,
                    Some(Control::Stop) | None => Woken::Stop,
                }),
                _ = exited => Woke::Done(Woken::TargetExited),
                Some(batch) = batch => Woke::Events(batch),
                _ = sample => Woke::Sample,
            };
            let woken = match got {
                Woke::Done(woken) => woken,
                Woke::Events(batch) => {
                    if !self.forward_events(batch).await {
                        return Woken::Stop;
                    }
                    continue;
                }
                Woke::Sample => {
                    self.observer.sample_runtime();
                    // The next beat from now: a slow sample never makes the beats pile up.
                    self.next_sample = sample_every.map(|every| Instant::now() + every);
                    continue;
                }
            };
            if let Some(stream) = self.long_calls.as_mut() {
                let rest = stream.drain();
                if !self.forward_events(rest).await {
                    return Woken::Stop;
                }
            }
            return woken;
        }
    }

    async fn forward_events(&mut self, batch: Vec<parkscope_common::BlockEvent>) -> bool {
        for event in self.observer.add_block_events(batch) {
            if !self.send(Update::Event(event)).await {
                return false;
            }
        }
        true
    }

    /// A seed view, then one after the window.
    async fn window(&mut self, window: Duration) {
        let started = Instant::now();
        let seed = match self.observer.observe(self.opts) {
            Ok(s) => s,
            Err(e) => {
                self.send(Update::Failed(e.into())).await;
                return;
            }
        };
        if !self
            .send(Update::Snapshot {
                snapshot: Box::new(seed),
                seed: true,
                elapsed: started.elapsed(),
                runtime_schedtrace: None,
            })
            .await
            || window.is_zero()
        {
            return;
        }
        // The window counts from attach, so the runtime read and the seed view (a second or so
        // for 10,000 threads) happen inside it; but a runtime that samples between views
        // (tokio: an on-CPU poll counts from the first view that saw it) gets the whole window
        // after the seed to sample in, or a stall in progress would be under-measured by the
        // set-up time.
        let from = match self.observer.runtime_sample_every() {
            Some(_) => Instant::now(),
            None => self.attached.unwrap_or(started),
        };
        match self.wait(from + window).await {
            Woken::Stop => return,
            // The target's exit is confirmed by the view failing (an exited thread group).
            Woken::Deadline | Woken::Finish | Woken::TargetExited => {}
        }
        let view = self.observer.observe(self.opts);
        self.observer.detach();
        let update = match view {
            Ok(s) => Update::Snapshot {
                snapshot: Box::new(s),
                seed: false,
                elapsed: started.elapsed(),
                runtime_schedtrace: None,
            },
            Err(e) => {
                tracing::warn!("target gone before the final view ({e})");
                Update::TargetExited
            }
        };
        self.send(update).await;
    }

    /// A view (or the runtime's schedtrace text) at each multiple of `every`.
    async fn intervals(&mut self, every: Duration, count: Option<u64>, at_start: bool) {
        let started = Instant::now();
        let mut taken = 0u64;
        // With `at_start`, view k (from 0) is due at k intervals, else at k + 1.
        let offset = u64::from(!at_start);
        loop {
            let due = u32::try_from(taken + offset).unwrap_or(u32::MAX);
            let next = started + every.saturating_mul(due);
            match self.wait(next).await {
                Woken::Deadline | Woken::Finish => {}
                Woken::Stop => return,
                Woken::TargetExited => {
                    self.send(Update::TargetExited).await;
                    return;
                }
            }
            if self.runtime_lines {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                let detail = self.config.runtime_schedtrace == Some(true);
                let read = self.observer.runtime_schedtrace(elapsed_ms, detail);
                if !self.observer.target.is_alive() {
                    self.send(Update::TargetExited).await;
                    return;
                }
                match read {
                    Some(Ok(trace)) => {
                        if !self.send(Update::RuntimeSchedtrace(trace)).await {
                            return;
                        }
                    }
                    // The runtime stopped making sense (or was never readable past attach):
                    // the threads are still there to trace, from the next tick on (at once).
                    Some(Err(e)) => {
                        self.observer.give_up_runtime(&e);
                        self.runtime_lines = false;
                        if !self.send(Update::RuntimeUnreadable(e)).await {
                            return;
                        }
                        if let Err(e) = self.load_probes() {
                            self.send(Update::Failed(e)).await;
                            return;
                        }
                        continue;
                    }
                    None => {
                        self.send(Update::Failed(CollectError::Internal("the runtime vanished".to_owned())))
                            .await;
                        return;
                    }
                }
            } else {
                let view = match self.observer.observe(self.opts) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("view failed: {e}");
                        self.send(Update::TargetExited).await;
                        return;
                    }
                };
                let elapsed = started.elapsed();
                let runtime_schedtrace = if self.config.runtime_schedtrace_with_views {
                    match self.observer.runtime_schedtrace(elapsed.as_millis() as u64, false) {
                        Some(Ok(trace)) => Some(trace),
                        Some(Err(e)) => {
                            tracing::warn!("schedtrace: {e}");
                            None
                        }
                        None => None,
                    }
                } else {
                    None
                };
                let update =
                    Update::Snapshot { snapshot: Box::new(view), seed: false, elapsed, runtime_schedtrace };
                if !self.send(update).await {
                    return;
                }
            }
            taken += 1;
            if count.is_some_and(|c| taken >= c) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The collector's thread, schedules and channel against real processes, /proc only (no
    //! probes are loaded without a plan, so these need no privileges beyond reading /proc).
    use super::*;

    fn config(pid: u32, schedule: Schedule) -> Config {
        Config {
            pid,
            ebpf_object: &[],
            probes: None,
            runtime: RuntimeMode::Off,
            runtime_uprobes: false,
            view: ObserveOptions {
                stacks: false,
                goroutines: false,
                completed_calls: false,
                fd_descriptions: false,
            },
            runtime_schedtrace: None,
            runtime_schedtrace_with_views: false,
            stall: Duration::from_millis(100),
            schedule,
        }
    }

    fn tids(pid: u32) -> std::collections::BTreeSet<u32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("task dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// A child that sleeps `secs` (reaped by the returned handle's `wait`), once it is asleep in
    /// clock_nanosleep (x86_64 number 230) as `sleep`, not still the forked test.
    fn sleeper(secs: &str) -> std::process::Child {
        let child = std::process::Command::new("sleep").arg(secs).spawn().expect("spawning sleep");
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while secs != "0" && std::time::Instant::now() < deadline {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let call = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            if comm.trim_end() == "sleep" && call.starts_with("230 ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_zero_window_yields_the_seed_and_ends() {
        let mut child = sleeper("5");
        let pid = child.id();
        let (mut c, started) =
            Collector::start(config(pid, Schedule::Window(Duration::ZERO))).await.expect("start");
        assert_eq!(started.comm, "sleep");
        assert!(!started.runtime_readable && started.runtime_unreadable.is_none());
        let Some(Update::Snapshot { snapshot, seed: true, .. }) = c.next().await else { panic!("no seed") };
        let seen: std::collections::BTreeSet<u32> = snapshot.threads.iter().map(|t| t.tid).collect();
        assert_eq!(seen, tids(pid), "the seed's threads are /proc's");
        assert_eq!(snapshot.threads[0].syscall.as_ref().map(|s| s.name.as_str()), Some("clock_nanosleep"));
        assert!(c.next().await.is_none(), "the channel closes after the seed");
        child.kill().ok();
        child.wait().ok();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn intervals_count_stop_and_the_target_exit() {
        let mut child = sleeper("5");
        let pid = child.id();
        let every = Duration::from_millis(100);
        let begun = std::time::Instant::now();
        let (mut c, _) =
            Collector::start(config(pid, Schedule::Interval { every, count: Some(3), at_start: false }))
                .await
                .expect("start");
        let mut elapsed = Vec::new();
        while let Some(u) = c.next().await {
            match u {
                Update::Snapshot { snapshot, seed: false, elapsed: e, .. } => {
                    assert_eq!(snapshot.pid, pid);
                    elapsed.push(e);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(elapsed.len(), 3, "count 3");
        for (i, e) in elapsed.iter().enumerate() {
            assert!(*e >= every * (i as u32 + 1), "view {i} at {e:?}, before its tick");
        }
        // Until stopped: stop returns once the thread has ended.
        let (c, _) =
            Collector::start(config(pid, Schedule::Interval { every, count: None, at_start: false }))
                .await
                .expect("start");
        c.stop().await;
        // The target's exit ends the stream with TargetExited, promptly (the pidfd, not a tick).
        let (mut c, _) = Collector::start(config(
            pid,
            Schedule::Interval { every: Duration::from_secs(60), count: None, at_start: false },
        ))
        .await
        .expect("start");
        let killed = std::time::Instant::now();
        child.kill().expect("kill");
        child.wait().expect("reap");
        let mut last = None;
        while let Some(u) = c.next().await {
            last = Some(u);
        }
        assert!(matches!(last, Some(Update::TargetExited)), "ended with {last:?}");
        assert!(killed.elapsed() < Duration::from_secs(5), "noticed after {:?}", killed.elapsed());
        assert!(begun.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_target_fails_the_start() {
        let mut child = sleeper("0");
        let pid = child.id();
        child.wait().expect("reap");
        match Collector::start(config(pid, Schedule::Window(Duration::ZERO))).await {
            Err(CollectError::Proc(e)) => assert!(CollectError::Proc(e).target_gone()),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("started on a reaped pid"),
        }
    }
}
