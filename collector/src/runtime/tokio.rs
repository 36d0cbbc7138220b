//! The tokio runtime as a [`RuntimeReader`] ([`TokioReader`]): joins the tokio runtime's facts
//! (probes/src/tokio/) with the thread view: each tokio thread's
//! role, the task a worker polls now (read from its thread-local storage), how long that poll
//! has lasted as far as the thread view can tell, and the stalls (a worker held inside one poll
//! for at least `--stall`). Blocking-pool threads are never stalls. No probe runs per poll: a
//! blocked worker's time comes from its syscall's block time, an on-CPU worker's from the reads
//! that saw it in the same task without sleeping in between (a lower bound).

use std::{collections::HashMap, time::Duration};

use parkscope_probes::{
    procfs::fds::FdTable,
    procfs::{maps::AddressSpace, pidns::TidMap, threads::ThreadSample},
    tokio::{
        IoInterest, IoWaitReader, IoWaiter, ThreadPointers, TokioBinary, TokioError, TokioRole,
        VoluntarySwitches, role_from_stack,
    },
};

use parkscope_model::{
    IoWaitView, IoWaiterKind, IoWaits, RuntimeKind, RuntimeView, StackTable, StallActivity, StallView,
    TaskOnThread, ThreadRole, ThreadState, ThreadView,
    profile::{LabelValue, ValueType},
};
use parkscope_probes::kernel::KernelProbes;

use super::{
    Detected, ReadContext, RuntimeRead, RuntimeReader, SchedTrace,
    profile::{ProfileLabels, RuntimeProfile, RuntimeUnreadable, TaskSample, ThreadSampleFacts},
};
use crate::error::CollectError;

/// How often a tokio target's workers are read between views (a few microseconds each): an
/// on-CPU poll is measured from the first read that saw it.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// `--stall`'s default: a worker inside one poll this long is a stall.
pub const DEFAULT_STALL_NS: u64 = 100_000_000;

/// A worker polling the same task, seen at several reads without a voluntary switch between.
#[derive(Debug, Clone, Copy)]
struct OnCpuPoll {
    task_id: u64,
    first_seen_ns: u64,
    voluntary_switches: u64,
}

/// A tokio target, once found.
struct TokioTarget {
    pid: u32,
    binary: TokioBinary,
    pointers: ThreadPointers,
    /// Roles learnt from stacks, kept: a running thread has no stack in /proc, and a thread's
    /// role does not change while it lives (workers stay workers until the runtime stops).
    roles: HashMap<u32, TokioRole>,
    on_cpu: HashMap<u32, OnCpuPoll>,
    /// The task id each worker shows while it polls nothing: a multi-thread worker's loop runs
    /// inside the poll of the blocking-pool task that launched it, so its thread-local id is
    /// that task's between polls. Learnt when the worker's stack shows it parked.
    base_task: HashMap<u32, u64>,
    /// Each worker's voluntary switch count, read in place.
    switches: VoluntarySwitches,
    /// The reader of tasks parked on I/O (the executable's mapping and tokio's waker
    /// addresses in it), kept from the first view that could make one.
    io_reader: Option<IoWaitReader>,
}

impl TokioTarget {
    /// Looks at the target's executable; None for a program without tokio. Blocking file work.
    fn detect(pid: u32) -> Option<TokioTarget> {
        match TokioBinary::of_process(pid) {
            Ok(binary) => {
                tracing::info!(version = ?binary.version, slot = ?binary.task_id_slot, "tokio runtime found");
                Some(TokioTarget {
                    pid,
                    binary,
                    pointers: ThreadPointers::new(),
                    roles: HashMap::new(),
                    on_cpu: HashMap::new(),
                    base_task: HashMap::new(),
                    switches: VoluntarySwitches::new(pid),
                    io_reader: None,
                })
            }
            Err(TokioError::NotTokio(_)) => None,
            Err(e) => {
                tracing::debug!("looking for tokio: {e}");
                None
            }
        }
    }

    /// `tokio 1.47.1`, or `unknown` when the binary does not say.
    fn version(&self) -> String {
        self.binary.version.as_ref().map_or_else(|| "unknown".to_owned(), |v| format!("tokio {v}"))
    }

    /// Reads the task id of each known worker now and updates the on-CPU polls seen: a cheap
    /// read between views (one memory read and one status file per worker). The switch count
    /// is read after the task id, so a sleep between two reads always restarts the poll.
    fn sample(&mut self, now: u64) {
        let Ok(slot) = &self.binary.task_id_slot else { return };
        let offset = slot.offset;
        let workers: Vec<u32> =
            self.roles.iter().filter(|(_, r)| **r == TokioRole::Worker).map(|(t, _)| *t).collect();
        for tid in workers {
            let base = self.base_task.get(&tid).copied().unwrap_or(0);
            let task = self.pointers.read_word(self.pid, tid, offset).filter(|t| *t != 0 && *t != base);
            // Only a worker inside a poll needs its count (an idle one has no poll to measure).
            let switches = task.and_then(|_| self.switches.read(tid));
            match (task, switches) {
                (Some(task_id), Some(switches)) => {
                    let keep = self
                        .on_cpu
                        .get(&tid)
                        .is_some_and(|p| p.task_id == task_id && p.voluntary_switches == switches);
                    if !keep {
                        self.on_cpu.insert(
                            tid,
                            OnCpuPoll { task_id, first_seen_ns: now, voluntary_switches: switches },
                        );
                    }
                }
                _ => {
                    self.on_cpu.remove(&tid);
                }
            }
        }
    }

    /// Fills each tokio thread's role and task, and returns the runtime part and the stalls.
    fn join(
        &mut self,
        samples: &[ThreadSample],
        threads: &mut [ThreadView],
        stacks: &StackTable,
        now: u64,
        stall_ns: u64,
    ) -> Joined {
        let mut parked: Vec<u32> = Vec::new();
        for t in threads.iter() {
            let frames = stacks.get(t.user_stack_id);
            if frames.is_empty() {
                continue;
            }
            let functions = || frames.iter().filter_map(|f| f.function.as_deref());
            let (role, _polling) = role_from_stack(functions());
            if let Some(role) = role {
                self.roles.insert(t.tid, role);
            }
            match is_parked(functions()) {
                Some(true) if stack_has_tokio(functions()) => parked.push(t.tid),
                // Cut short: taken as parked only while this worker's idle id is unknown.
                Some(true) if !self.base_task.contains_key(&t.tid) => parked.push(t.tid),
                _ => {}
            }
        }
        self.base_task.retain(|tid, _| samples.iter().any(|s| s.tid == *tid));
        self.roles.retain(|tid, _| samples.iter().any(|s| s.tid == *tid));
        self.on_cpu.retain(|tid, _| samples.iter().any(|s| s.tid == *tid));
        self.switches.retain(|tid| samples.iter().any(|s| s.tid == tid));

        let mut error = self.binary.task_id_slot.as_ref().err().cloned();
        if let (None, Err(e)) = (&error, &self.binary.scheduler_slot) {
            tracing::info!("tokio worker roles from stacks only: {e}");
        }
        if error.is_none() {
            match thread_ids(self.pid, samples) {
                Ok(ids) => match AddressSpace::read(self.pid) {
                    Ok(space) => self.pointers.locate(self.pid, &ids, &space),
                    Err(e) => error = Some(format!("reading the target's maps: {e}")),
                },
                Err(e) => error = Some(format!("reading the target's thread ids: {e}")),
            }
        }
        self.sample(now);
        let offset = self.binary.task_id_slot.as_ref().ok().map(|s| s.offset);
        let scheduler = self.binary.scheduler_slot.as_ref().ok().map(|s| s.offset);
        let switches: HashMap<u32, u64> =
            samples.iter().filter_map(|s| Some((s.tid, s.voluntary_switches?))).collect();

        let mut stalls = Vec::new();
        for t in threads.iter_mut() {
            let mut task_id = offset.and_then(|o| self.pointers.read_word(self.pid, t.tid, o));
            // The worker loop keeps CONTEXT.scheduler set for as long as it runs; a thread
            // polling a task outside any scheduler is on the blocking pool (spawn_blocking).
            match (scheduler.and_then(|o| self.pointers.read_word(self.pid, t.tid, o)), task_id) {
                (Some(s), _) if s != 0 => {
                    self.roles.insert(t.tid, TokioRole::Worker);
                }
                (Some(0), Some(id)) if id != 0 => {
                    self.roles.insert(t.tid, TokioRole::Blocking);
                }
                _ => {}
            }
            let role = self.roles.get(&t.tid).copied();
            if role == Some(TokioRole::Worker) {
                if parked.contains(&t.tid)
                    && let Some(id) = task_id
                {
                    self.base_task.insert(t.tid, id);
                }
                if task_id.is_some() && task_id == self.base_task.get(&t.tid).copied() {
                    task_id = None;
                }
            }
            t.role = role.map(|r| match r {
                TokioRole::Worker => ThreadRole::TokioWorker,
                TokioRole::Blocking => ThreadRole::TokioBlocking,
            });
            let Some(task_id) = task_id.filter(|id| *id != 0) else { continue };
            // A blocked thread that switched since /proc was read may have left that call (and
            // the poll the id belongs to): its call's time is then not the poll's.
            let moved = t.state.is_blocked()
                && self.switches.read_once(t.tid).is_none_or(|n| Some(&n) != switches.get(&t.tid));
            // How long the poll has lasted, as far as the thread view can tell: a thread blocked
            // inside it has been in the poll at least as long as in its call; one on a CPU at
            // least since the first read that saw it in this task without having slept since.
            let blocked = t.syscall.as_ref().and_then(|c| c.time_ns());
            let on_cpu = self
                .on_cpu
                .get(&t.tid)
                .filter(|p| p.task_id == task_id && !t.state.is_blocked())
                .map(|p| now.saturating_sub(p.first_seen_ns));
            let poll_ns = if moved {
                None
            } else if t.state.is_blocked() {
                blocked
            } else {
                on_cpu
            };
            t.task = Some(TaskOnThread { task_id, poll_ns, poll_ns_exact: false });
            if role != Some(TokioRole::Worker) {
                continue;
            }
            let Some(duration_ns) = poll_ns.filter(|d| *d >= stall_ns) else { continue };
            let activity = match (&t.syscall, t.state) {
                (Some(c), s) if s.is_blocked() => {
                    StallActivity::Syscall { name: c.name.clone(), fd: c.fd, fd_desc: c.fd_desc.clone() }
                }
                (_, ThreadState::Running | ThreadState::Runnable) => StallActivity::OnCpu,
                _ => continue,
            };
            stalls.push(StallView {
                tid: t.tid,
                task_id: Some(task_id),
                duration_ns,
                exact: false,
                activity,
                user_stack_id: t.user_stack_id,
            });
        }
        let view = RuntimeView {
            kind: RuntimeKind::Tokio,
            version: self.version(),
            module: None,
            layout: None,
            gomaxprocs: None,
            goroutines_dead: None,
            goroutines_inconsistent: None,
            hint: error.as_ref().map(|_| {
                "the threads above are complete; build with symbols (cargo's release default) for task ids and stalls"
                    .to_owned()
            }),
            error,
        };
        let io_driver_starved_ns = driver_starved(threads, &stalls, stall_ns);
        Joined { view, stalls, io_driver_starved_ns }
    }
}

/// What one join found.
struct Joined {
    view: RuntimeView,
    stalls: Vec<StallView>,
    io_driver_starved_ns: Option<u64>,
}

/// How long at least the I/O driver has gone unpolled, while a stall lasts: a multi-thread
/// runtime's driver is polled only by a worker outside any task's poll (parked on it, or
/// between tasks), so while every worker is inside a poll none can have polled it; all have
/// been for at least the shortest of their polls. None when a worker is free, a poll's
/// length is unknown, no stall lasts, or it is shorter than `stall_ns`.
fn driver_starved(threads: &[ThreadView], stalls: &[StallView], stall_ns: u64) -> Option<u64> {
    if stalls.is_empty() {
        return None;
    }
    let mut shortest: Option<u64> = None;
    for t in threads.iter().filter(|t| t.role == Some(ThreadRole::TokioWorker)) {
        let poll = t.task.as_ref()?.poll_ns?;
        shortest = Some(shortest.map_or(poll, |s| s.min(poll)));
    }
    shortest.filter(|s| *s >= stall_ns)
}

/// The tasks parked on the target's sockets and pipes, from its reactor registrations (see
/// parkscope_probes::tokio::IoWaitReader), each fd described from `fds`. A registration
/// whose fd number no longer names the registered file is left out.
fn io_waits(target: &mut TokioTarget, fds: &FdTable) -> IoWaits {
    let reader = match &mut target.io_reader {
        Some(reader) => &*reader,
        slot @ None => match IoWaitReader::new(target.pid, &target.binary) {
            Ok(reader) => &*slot.insert(reader),
            Err(e) => return IoWaits { error: Some(e), ..IoWaits::default() },
        },
    };
    let registrations: Vec<_> =
        fds.epoll_registrations().into_iter().filter(|r| fds.is_registered_file(r)).collect();
    let started = std::time::Instant::now();
    let read = reader.read(&registrations);
    tracing::debug!(
        registrations = registrations.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "tokio I/O waits read"
    );
    match read {
        Ok(read) => IoWaits {
            waits: read
                .waits
                .iter()
                .map(|w| IoWaitView {
                    fd: w.fd,
                    fd_desc: fds.describe(w.fd),
                    interest: w.interest.map(|i| match i {
                        IoInterest::Read => parkscope_model::IoInterest::Read,
                        IoInterest::Write => parkscope_model::IoInterest::Write,
                        IoInterest::ReadWrite => parkscope_model::IoInterest::ReadWrite,
                    }),
                    waiter: match w.waiter {
                        IoWaiter::Task(_) => IoWaiterKind::Task,
                        IoWaiter::BlockOn => IoWaiterKind::BlockOn,
                        IoWaiter::Other => IoWaiterKind::Other,
                    },
                    task_id: match w.waiter {
                        IoWaiter::Task(id) => Some(id),
                        _ => None,
                    },
                })
                .collect(),
            registrations: read.registrations as u64,
            unrecognized: read.unrecognized as u64,
            capped: read.capped as u64,
            error: None,
        },
        Err(e) => IoWaits { error: Some(e), ..IoWaits::default() },
    }
}

/// Whether a stack shows the scheduler parking (a condvar or the I/O driver): the worker polls
/// no task there. `Some(true)` when its innermost tokio frame says so, `Some(false)` when it
/// names other tokio code; for a stack cut short before any tokio frame (unwinding without the
/// frame pointer of a thread blocked since before attach), `None` unless it ends in a std
/// condvar wait or mio's poll, which is how a parked worker's stack begins (`Some(true)`).
fn is_parked<'a>(functions: impl Iterator<Item = &'a str>) -> Option<bool> {
    let mut waiting = false;
    for f in functions {
        if f.contains("tokio::") {
            return Some(
                f.contains("scheduler::multi_thread::park::")
                    || f.contains("runtime::park::")
                    || f.contains("runtime::io::driver::")
                    || f.contains("runtime::time::Driver"),
            );
        }
        waiting |= f.contains("std::sys::sync::condvar") || f.contains("mio::poll::Poll");
    }
    waiting.then_some(true)
}

fn stack_has_tokio<'a>(mut functions: impl Iterator<Item = &'a str>) -> bool {
    functions.any(|f| f.contains("tokio::"))
}

/// Each thread's (host tid, tid in the process's own pid namespace).
fn thread_ids(pid: u32, samples: &[ThreadSample]) -> Result<Vec<(u32, u32)>, String> {
    thread_ids_of(pid, &samples.iter().map(|s| s.tid).collect::<Vec<_>>())
}

/// [`thread_ids`] of host tids.
fn thread_ids_of(pid: u32, tids: &[u32]) -> Result<Vec<(u32, u32)>, String> {
    let map = TidMap::read(pid).map_err(|e| e.to_string())?;
    let host_to_ns: HashMap<u32, u32> = match &map {
        TidMap::Same => tids.iter().map(|t| (*t, *t)).collect(),
        TidMap::Nested(m) => m.iter().map(|(ns, host)| (*host, *ns)).collect(),
    };
    Ok(tids.iter().filter_map(|t| host_to_ns.get(t).map(|ns| (*t, *ns))).collect())
}

/// A tokio target behind the [`RuntimeReader`] trait. It has no goroutine-like task list of
/// its own (tasks come from console-subscriber, when the target serves it), no uprobes and no
/// scheduler trace: what it reads is the role and current task of each thread, and stalls.
pub struct TokioReader {
    target: TokioTarget,
}

impl TokioReader {
    /// Looks for tokio in process `pid` (blocking: reads its binary's symbols).
    pub fn detect(pid: u32) -> Detected {
        match TokioTarget::detect(pid) {
            Some(target) => Detected::Found(Box::new(TokioReader { target })),
            None => Detected::None,
        }
    }
}

impl RuntimeReader for TokioReader {
    fn identity(&self) -> RuntimeView {
        RuntimeView {
            kind: RuntimeKind::Tokio,
            version: self.target.version(),
            module: None,
            layout: None,
            gomaxprocs: None,
            goroutines_dead: None,
            goroutines_inconsistent: None,
            error: None,
            hint: None,
        }
    }

    fn unreadable(&self, err: &CollectError) -> RuntimeView {
        RuntimeView { error: Some(err.to_string()), hint: err.hint(), ..self.identity() }
    }

    fn read(&mut self, cx: ReadContext<'_>) -> Result<RuntimeRead, CollectError> {
        let joined = self.target.join(cx.samples, cx.threads, cx.stack_table, cx.now_ns, cx.stall_ns);
        Ok(RuntimeRead {
            goroutines: Vec::new(),
            view: joined.view,
            counters: None,
            transitions_counted: false,
            stalls: joined.stalls,
            io_driver_starved_ns: joined.io_driver_starved_ns,
            io_waits: cx.fds.map(|fds| io_waits(&mut self.target, fds)),
        })
    }

    fn attach_uprobes(&mut self, _probes: &mut KernelProbes) -> Result<(), CollectError> {
        Err(CollectError::Unsupported(
            "tokio targets have no uprobes in parkscope: their stalls need none".to_owned(),
        ))
    }

    fn schedtrace(&self, _elapsed_ms: u64, _detail: bool) -> Result<SchedTrace, CollectError> {
        Err(CollectError::Unsupported(
            "tokio has no scheduler trace of its own; parkscope prints thread-level lines".to_owned(),
        ))
    }

    fn has_schedtrace(&self) -> bool {
        false
    }

    /// Roles and a worker's idle task id are learnt from stacks showing it parked.
    fn needs_thread_stacks(&self) -> bool {
        true
    }

    fn sample_every(&self) -> Option<Duration> {
        Some(SAMPLE_EVERY)
    }

    fn sample(&mut self, now_ns: u64) {
        self.target.sample(now_ns);
    }

    /// Labels each thread sample with the task it was polling (see `TokioProfile`); no
    /// uprobes (`exact`) exist for tokio.
    fn profile<'a>(
        &'a mut self,
        _probes: Option<&mut KernelProbes>,
        _window_start_ns: u64,
        exact: bool,
    ) -> Result<Option<Box<dyn RuntimeProfile + 'a>>, CollectError> {
        if exact {
            return Err(CollectError::Unsupported(
                "tokio targets have no uprobes in parkscope: drop --go-uprobes".to_owned(),
            ));
        }
        Ok(Some(Box::new(TokioProfile::new(&mut self.target))))
    }
}

/// Reads of a tokio target over an off-CPU profile's window: which task each thread polls,
/// and in which syscall it is blocked meanwhile, every [`PROFILE_READ_EVERY`] (stretched to
/// [`PROFILE_READ_SHARE`] times a read's duration). A thread sample (one tid, one syscall,
/// one stack, summed over the window) is labelled `task` only when every read that saw that
/// thread blocked in that syscall inside a poll saw the same task, and its stack is not the
/// scheduler parking: a worker runs many tasks, and a label must not claim one for time
/// that others (or none) spent.
struct TokioProfile<'a> {
    target: &'a mut TokioTarget,
    labels: TokioLabels,
    /// The tids whose thread pointers were looked for (re-looked for when threads change).
    located: Vec<u32>,
    unreadable: Option<RuntimeUnreadable>,
}

/// What the reads saw, for the labels.
#[derive(Debug, Default)]
struct TokioLabels {
    version: String,
    /// (tid, syscall) -> the tasks seen polled while the thread was blocked in it (with how
    /// many reads saw each).
    seen: HashMap<(u32, String), HashMap<u64, u32>>,
    /// Threads seen with the scheduler set (workers) or polling a task without it (blocking).
    roles: HashMap<u32, TokioRole>,
    reads: u64,
}

/// x86-64 syscall numbers the scheduler parks in.
const FUTEX: u32 = 202;
const EPOLL_WAIT: u32 = 232;
const EPOLL_PWAIT: u32 = 281;
const EPOLL_PWAIT2: u32 = 441;

/// Time between reads of a tokio target during a profile.
const PROFILE_READ_EVERY: Duration = Duration::from_millis(10);
/// A read's period is at least this many times its duration (a target with a large blocking
/// pool costs the reader at most ~1/PROFILE_READ_SHARE of a CPU).
const PROFILE_READ_SHARE: u32 = 5;

impl<'a> TokioProfile<'a> {
    fn new(target: &'a mut TokioTarget) -> TokioProfile<'a> {
        let labels = TokioLabels { version: target.version(), ..TokioLabels::default() };
        TokioProfile { target, labels, located: Vec::new(), unreadable: None }
    }

    /// One read; Err: why tokio's thread-locals cannot be read at all.
    fn read_once(&mut self) -> Result<(), String> {
        let pid = self.target.pid;
        let offset = self.target.binary.task_id_slot.as_ref().map_err(Clone::clone)?.offset;
        let scheduler = self.target.binary.scheduler_slot.as_ref().ok().map(|s| s.offset);
        let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| format!("listing the target's threads: {e}"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        if tids != self.located {
            let ids = thread_ids_of(pid, &tids)?;
            let space = AddressSpace::read(pid).map_err(|e| format!("reading the target's maps: {e}"))?;
            self.target.pointers.locate(pid, &ids, &space);
            self.located = tids.clone();
        }
        self.labels.reads += 1;
        for tid in tids {
            let Some(task) = self.target.pointers.read_word(pid, tid, offset) else { continue };
            let worker =
                scheduler.and_then(|o| self.target.pointers.read_word(pid, tid, o)).is_some_and(|s| s != 0);
            // The call after the task id: a thread that moved between the two is seen in the
            // call it is in now, which the next read corrects if it was a passing one.
            let Some(nr) = blocked_syscall(pid, tid) else { continue };
            if worker {
                self.labels.roles.insert(tid, TokioRole::Worker);
                // Between tasks a worker's thread-local shows the task that launched it, not a
                // poll. A worker blocked in epoll_wait is the one polling the I/O driver: that
                // id is its launch task's.
                if matches!(nr, EPOLL_WAIT | EPOLL_PWAIT | EPOLL_PWAIT2) {
                    self.target.base_task.insert(tid, task);
                    continue;
                }
                // The scheduler parks in a futex (a condvar) too: there the id is a poll's only
                // when the launch task's is known and differs. In any other call the worker is
                // inside a poll (the scheduler itself makes no other blocking call).
                let base = self.target.base_task.get(&tid);
                if base == Some(&task) || (nr == FUTEX && base.is_none()) {
                    continue;
                }
            } else if task != 0 {
                self.labels.roles.insert(tid, TokioRole::Blocking);
            }
            if task == 0 {
                continue;
            }
            let name = parkscope_common::syscalls::display_name(nr).to_string();
            *self.labels.seen.entry((tid, name)).or_default().entry(task).or_default() += 1;
        }
        Ok(())
    }
}

/// The syscall number thread `tid` is blocked in now (None: running, or gone).
fn blocked_syscall(pid: u32, tid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

impl RuntimeProfile for TokioProfile<'_> {
    fn read(&mut self, _last: bool) -> Duration {
        if self.unreadable.is_some() {
            return Duration::from_secs(3600);
        }
        let began = std::time::Instant::now();
        if let Err(cause) = self.read_once() {
            tracing::info!("tokio tasks not read for the profile: {cause}");
            self.unreadable = Some(RuntimeUnreadable {
                runtime: RuntimeKind::Tokio,
                cause,
                hint: Some(
                    "build with symbols (cargo's release default) for task labels; the threads are profiled as always"
                        .to_owned(),
                ),
            });
            return Duration::from_secs(3600);
        }
        PROFILE_READ_EVERY.max(began.elapsed() * PROFILE_READ_SHARE)
    }

    fn finish(&mut self, _probes: Option<&KernelProbes>, _window_start_ns: u64, _window_end_ns: u64) {}

    fn unreadable(&self) -> Option<RuntimeUnreadable> {
        self.unreadable.clone()
    }

    fn labels(&self) -> &dyn ProfileLabels {
        &self.labels
    }
}

impl ProfileLabels for TokioLabels {
    fn sample_type(&self) -> Option<ValueType> {
        None
    }

    fn user_stacks(&self) -> Vec<&[u64]> {
        Vec::new()
    }

    fn thread_labels(
        &self,
        thread: &ThreadSampleFacts<'_>,
        _function_at: &dyn Fn(u64) -> Option<String>,
    ) -> Vec<(String, LabelValue)> {
        let mut labels = Vec::new();
        if let Some(role) = self.roles.get(&thread.tid) {
            let role = match role {
                TokioRole::Worker => ThreadRole::TokioWorker,
                TokioRole::Blocking => ThreadRole::TokioBlocking,
            };
            labels.push(("role".to_owned(), LabelValue::Str(role.as_str().to_owned())));
        }
        if is_parked(thread.user_functions.iter().copied()) == Some(true) {
            return labels;
        }
        let Some(syscall) = thread.syscall else { return labels };
        if let Some(tasks) = self.seen.get(&(thread.tid, syscall.to_owned()))
            && tasks.len() == 1
            && let Some(task) = tasks.keys().next()
        {
            labels.push(("task".to_owned(), LabelValue::Num(*task as i64)));
        }
        labels
    }

    fn task_samples(&self, _fd_text: &dyn Fn(i32) -> String) -> Vec<TaskSample<'_>> {
        Vec::new()
    }

    fn comment(&self) -> String {
        format!(
            "task: the {} task a thread was polling while blocked in that syscall, from {} reads of the workers' \
             thread-locals (only where every read agreed; task_name, where present, is that task's console-subscriber name)",
            self.version, self.reads
        )
    }
}
