//! The Perfetto export: turns a time-ordered sequence of snapshots and events into a Perfetto
//! protobuf trace (a stream of `TracePacket`s on one packet sequence) that ui.perfetto.dev and
//! trace_processor open.
//!
//! What the trace holds:
//! - a process track (pid, comm) and one thread track per tid (ThreadDescriptor with the target's
//!   pid and the tid);
//! - on a thread's track, one slice per blocked syscall, named by the syscall, with the fd, its
//!   description and the stacks as args. Its begin is `taken_at - blocked_ns` of the first
//!   snapshot that shows the call (or the `BlockEnded` event's exact begin); when only a lower
//!   bound of the time in the call is known the begin is the latest possible one and the arg
//!   `begin` says so. Its end is the streamed return (`BlockEnded`) when one matches, else the
//!   last snapshot that still showed the thread in the call (`end` says which);
//! - calls that blocked past the long-call threshold and returned between snapshots
//!   (`BlockEnded` events never seen in a snapshot) as slices of their own, exact both ends;
//! - goroutine tracks (children of a "goroutines" track) with one slice per wait (named by the
//!   wait reason) or syscall. At most [`GOROUTINE_TRACK_LIMIT`] goroutines get a track of their
//!   own (the longest waiting first); all goroutines, tracked or not, are counted per wait reason
//!   on the `goroutines: <reason>` counter tracks, which are the grouped view of a big target;
//! - a flow from the waker to the woken thread where `waker_tid` is known (an instant on each
//!   side, "woke a thread" and "woken", at the snapshot that reported it, since the wakeup's own
//!   time is not recorded);
//! - counter tracks: blocked threads per syscall class, runnable and running threads, runtime
//!   threads idle by design, goroutines per status and wait reason, async tasks (tokio) per
//!   state and workers stalled in a poll.
//!
//! A slice is written when it closes (its begin can still be refined until then), so packets are
//! not in timestamp order; Perfetto sorts them. Every track is declared (a TrackDescriptor packet)
//! before a packet that uses it; names are interned (the first packet sets
//! SEQ_INCREMENTAL_STATE_CLEARED, the others that use interned data SEQ_NEEDS_INCREMENTAL_STATE).
//! Timestamps are CLOCK_MONOTONIC (`timestamp_clock_id` 3); each snapshot adds a ClockSnapshot
//! pairing it with the wall clock, so the UI can show real times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};

use parkscope_model::{
    Event, EventKind, GoStatus, GoroutineView, Snapshot, StackId, StackTable, SyscallClass, TaskState,
    ThreadView,
};
use prost::Message;

use crate::Entry;
use crate::proto::{
    ClockSnapshot, CounterDescriptor, DebugAnnotation, DebugAnnotationName, EventCategory, EventName,
    InternedData, ProcessDescriptor, ThreadDescriptor, TracePacket, TrackDescriptor, TrackEvent,
    clock_snapshot, counter_descriptor, debug_annotation, trace_packet, track_descriptor, track_event,
};

/// The one packet sequence parkscope writes.
const SEQUENCE_ID: u32 = 1;
/// `BuiltinClock` ids (protos/perfetto/common/builtin_clock.proto).
const CLOCK_REALTIME: u32 = 1;
const CLOCK_MONOTONIC: u32 = 3;
/// Goroutines that get a track of their own; the rest are only counted (per wait reason).
pub const GOROUTINE_TRACK_LIMIT: usize = 1000;
/// Distinct wait-reason counter tracks; further reasons (the runtime has ~40) count as "other".
const WAIT_REASON_TRACK_LIMIT: usize = 64;
/// Distinct interned event names; past it names are written inline (the set stays bounded
/// whatever strings a target's runtime holds).
const NAME_INTERN_LIMIT: usize = 4096;
/// Events held until the first snapshot names the process.
const PENDING_EVENT_LIMIT: usize = 100_000;

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    Io(io::Error),
    /// The sequence mixes processes (a recording holds one).
    OtherProcess {
        expected: u32,
        found: u32,
    },
    /// No snapshot at all: nothing names the process.
    NoSnapshot,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Io(e) => write!(f, "writing the trace: {e}"),
            ExportError::OtherProcess { expected, found } => {
                write!(f, "a snapshot of pid {found} in a recording of pid {expected}")
            }
            ExportError::NoSnapshot => f.write_str("the recording holds no snapshot"),
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// What an export wrote, and what it had to leave out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportStats {
    pub snapshots: u64,
    pub events: u64,
    pub packets: u64,
    pub thread_slices: u64,
    pub goroutine_slices: u64,
    pub flows: u64,
    /// The most goroutines of one snapshot that were waiting or in a syscall but had no track of
    /// their own (past [`GOROUTINE_TRACK_LIMIT`]); they are in the counters only.
    pub goroutines_without_track_max: u64,
    /// `BlockEnded` events that contradict what a snapshot showed of the same thread (another
    /// call in progress during that call): not drawn.
    pub events_conflicting: u64,
    /// Events before the first snapshot beyond `PENDING_EVENT_LIMIT`: not drawn.
    pub events_dropped: u64,
}

/// Exports `entries` (in time order, as a recording holds them) to `out` as a Perfetto trace.
pub fn perfetto<W: Write>(
    entries: impl IntoIterator<Item = Entry>,
    out: W,
) -> Result<ExportStats, ExportError> {
    let mut writer = PerfettoWriter::new(out);
    for entry in entries {
        match entry {
            Entry::Snapshot(s) => writer.push_snapshot(&s)?,
            Entry::Event(e) => writer.push_event(&e)?,
        }
    }
    writer.finish()
}

/// A debug annotation's value.
#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    Int(i64),
}

/// A slice that is still open: written when it closes.
#[derive(Debug)]
struct OpenSlice {
    /// What identifies the call or wait across snapshots (syscall nr and fd; wait reason).
    key: String,
    name: String,
    begin_ns: u64,
    begin_exact: bool,
    last_seen_ns: u64,
    args: Vec<(&'static str, Arg)>,
    /// Wakers already drawn for this slice.
    wakers: Vec<u32>,
    /// A later sighting without an exact time allowed a new call after the previous sighting
    /// (same syscall and fd): taken as the same call, and the slice says so.
    continuity_assumed: bool,
}

/// One observation of a call or wait in a snapshot.
struct Observation {
    key: String,
    name: String,
    /// `taken_at - time in the call`; None when the time is unknown.
    since_ns: Option<u64>,
    exact: bool,
    args: Vec<(&'static str, Arg)>,
}

#[derive(Debug)]
struct ThreadTrack {
    uuid: u64,
    name: String,
    open: Option<OpenSlice>,
    /// End of the latest slice written on the track (slices of a thread never overlap).
    last_end_ns: u64,
}

#[derive(Debug)]
struct GoroutineTrack {
    uuid: u64,
    open: Option<OpenSlice>,
    last_end_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Process {
    pid: u32,
    uuid: u64,
}

/// Writes a Perfetto trace packet by packet: push snapshots and events in time order, then
/// [`finish`](PerfettoWriter::finish).
#[derive(Debug)]
pub struct PerfettoWriter<W: Write> {
    out: W,
    stats: ExportStats,
    first_packet: bool,
    process: Option<Process>,
    next_uuid: u64,
    next_flow: u64,
    threads: HashMap<u32, ThreadTrack>,
    /// Wakers that are not threads of the target: a plain track each.
    outside_wakers: HashMap<u32, u64>,
    goroutine_group: Option<u64>,
    goroutines: HashMap<u64, GoroutineTrack>,
    goroutine_tracks_made: usize,
    counters: BTreeMap<String, u64>,
    wait_reason_counters: BTreeMap<String, u64>,
    names: HashMap<String, u64>,
    annotation_names: HashMap<&'static str, u64>,
    categories: HashMap<&'static str, u64>,
    /// The latest description seen for each fd of the process (for streamed calls).
    fd_desc: HashMap<i32, String>,
    last_snapshot_ns: u64,
    pending: Vec<Event>,
}

impl<W: Write> PerfettoWriter<W> {
    pub fn new(out: W) -> PerfettoWriter<W> {
        PerfettoWriter {
            out,
            stats: ExportStats::default(),
            first_packet: true,
            process: None,
            next_uuid: 1,
            next_flow: 1,
            threads: HashMap::new(),
            outside_wakers: HashMap::new(),
            goroutine_group: None,
            goroutines: HashMap::new(),
            goroutine_tracks_made: 0,
            counters: BTreeMap::new(),
            wait_reason_counters: BTreeMap::new(),
            names: HashMap::new(),
            annotation_names: HashMap::new(),
            categories: HashMap::new(),
            fd_desc: HashMap::new(),
            last_snapshot_ns: 0,
            pending: Vec::new(),
        }
    }

    /// Adds one snapshot (after every entry older than it).
    pub fn push_snapshot(&mut self, snap: &Snapshot) -> Result<(), ExportError> {
        let now = snap.taken_at.monotonic_ns;
        let process = match self.process {
            Some(p) if p.pid != snap.pid => {
                return Err(ExportError::OtherProcess { expected: p.pid, found: snap.pid });
            }
            Some(p) => p,
            None => self.declare_process(snap)?,
        };
        self.stats.snapshots += 1;
        self.clock_snapshot(snap)?;
        for t in &snap.threads {
            if let Some(desc) = t.syscall.as_ref().and_then(|c| Some((c.fd?, c.fd_desc.clone()?))) {
                self.fd_desc.insert(desc.0, desc.1);
            }
            self.declare_thread(process.pid, t.tid, &t.name)?;
        }
        // Threads that left (exited): their open call ended after they were last seen.
        let present: HashSet<u32> = snap.threads.iter().map(|t| t.tid).collect();
        let gone: Vec<u32> = self.threads.keys().copied().filter(|tid| !present.contains(tid)).collect();
        for tid in gone {
            self.close_thread_slice(
                tid,
                None,
                "last seen in the call; the thread was gone by the next snapshot",
            )?;
        }
        for t in &snap.threads {
            self.observe_thread(snap, t)?;
        }
        self.counters_of(snap, process)?;
        if !snap.goroutines.is_empty() || !self.goroutines.is_empty() {
            self.observe_goroutines(snap, process)?;
        }
        self.last_snapshot_ns = self.last_snapshot_ns.max(now);
        for event in std::mem::take(&mut self.pending) {
            self.push_event(&event)?;
        }
        Ok(())
    }

    /// Adds one event (after every entry older than it).
    pub fn push_event(&mut self, event: &Event) -> Result<(), ExportError> {
        let Some(process) = self.process else {
            if self.pending.len() < PENDING_EVENT_LIMIT {
                self.pending.push(event.clone());
            } else {
                self.stats.events_dropped += 1;
            }
            return Ok(());
        };
        self.stats.events += 1;
        match &event.kind {
            EventKind::BlockEnded { tid, nr, name, fd, duration_ns, ret, class: _ } => {
                let (tid, end) = (*tid, event.at_ns);
                let begin = end.saturating_sub(*duration_ns);
                if !self.threads.contains_key(&tid) {
                    self.declare_thread(process.pid, tid, "")?;
                }
                let key = thread_key(*nr, *fd);
                let track = &self.threads[&tid];
                let mut args = Vec::new();
                if let Some(fd) = fd {
                    args.push(("fd", Arg::Int(i64::from(*fd))));
                    if let Some(desc) = self.fd_desc.get(fd) {
                        args.push((
                            "fd_desc",
                            Arg::Str(format!("{desc} (as the latest snapshot described the fd)")),
                        ));
                    }
                }
                args.push(("ret", Arg::Int(*ret)));
                match &track.open {
                    Some(open) if open.key == key && begin <= open.last_seen_ns => {
                        // The streamed return of the call the snapshots showed: exact both ends.
                        let mut open = self.threads.get_mut(&tid).and_then(|t| t.open.take()).expect("open");
                        open.begin_ns = begin;
                        open.begin_exact = true;
                        // The snapshots gave fd and fd_desc already; one key once.
                        open.args.push(("ret", Arg::Int(*ret)));
                        open.args.push(("end", Arg::Str("exact: its return was streamed".into())));
                        self.write_thread_slice(tid, open, end)?;
                    }
                    Some(open) if begin > open.last_seen_ns => {
                        // A later call returned: the open one had ended before it began.
                        self.close_thread_slice(
                            tid,
                            None,
                            "last seen in the call; the thread made another call later",
                        )?;
                        self.write_streamed_call(tid, name, begin, end, args)?;
                    }
                    Some(_) => self.stats.events_conflicting += 1,
                    None if begin >= track.last_end_ns => {
                        self.write_streamed_call(tid, name, begin, end, args)?
                    }
                    None => self.stats.events_conflicting += 1,
                }
            }
        }
        Ok(())
    }

    /// Closes what is still open (at the last snapshot that showed it) and flushes the output.
    pub fn finish(mut self) -> Result<ExportStats, ExportError> {
        if self.process.is_none() {
            return Err(ExportError::NoSnapshot);
        }
        let mut tids: Vec<u32> = self.threads.keys().copied().collect();
        tids.sort_unstable();
        for tid in tids {
            self.close_thread_slice(tid, None, "the recording ended with the thread still in the call")?;
        }
        let mut goids: Vec<u64> = self.goroutines.keys().copied().collect();
        goids.sort_unstable();
        for goid in goids {
            self.close_goroutine_slice(goid, "the recording ended with the goroutine still waiting")?;
        }
        self.out.flush()?;
        Ok(self.stats)
    }

    // --- tracks ---------------------------------------------------------------------------

    fn uuid(&mut self) -> u64 {
        // Distinct per process, so traces of several processes can be opened together.
        let pid = self.process.map_or(0, |p| u64::from(p.pid));
        let uuid = (pid << 32) | self.next_uuid;
        self.next_uuid += 1;
        uuid
    }

    fn declare_process(&mut self, snap: &Snapshot) -> Result<Process, ExportError> {
        self.process = Some(Process { pid: snap.pid, uuid: 0 });
        let uuid = self.uuid();
        let process = Process { pid: snap.pid, uuid };
        self.process = Some(process);
        self.track(TrackDescriptor {
            uuid: Some(uuid),
            process: Some(ProcessDescriptor {
                pid: Some(to_i32(snap.pid)),
                process_name: Some(snap.comm.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })?;
        Ok(process)
    }

    /// Declares the track of `tid`, or re-declares it when its name changed.
    fn declare_thread(&mut self, pid: u32, tid: u32, name: &str) -> Result<u64, ExportError> {
        if let Some(t) = self.threads.get(&tid)
            && (t.name == name || name.is_empty())
        {
            return Ok(t.uuid);
        }
        let uuid = match self.threads.get_mut(&tid) {
            Some(t) => {
                t.name = name.to_owned();
                t.uuid
            }
            None => {
                let uuid = self.uuid();
                let track = ThreadTrack { uuid, name: name.to_owned(), open: None, last_end_ns: 0 };
                self.threads.insert(tid, track);
                uuid
            }
        };
        self.track(TrackDescriptor {
            uuid: Some(uuid),
            thread: Some(ThreadDescriptor {
                pid: Some(to_i32(pid)),
                tid: Some(to_i32(tid)),
                thread_name: (!name.is_empty()).then(|| name.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })?;
        Ok(uuid)
    }

    /// A named track under `parent` (None: at the top level).
    fn named_track(&mut self, parent: Option<u64>, name: String, counter: bool) -> Result<u64, ExportError> {
        let uuid = self.uuid();
        self.track(TrackDescriptor {
            uuid: Some(uuid),
            parent_uuid: parent,
            static_or_dynamic_name: Some(track_descriptor::StaticOrDynamicName::Name(name)),
            counter: counter.then(|| CounterDescriptor {
                unit: Some(counter_descriptor::Unit::Count as i32),
                ..Default::default()
            }),
            ..Default::default()
        })?;
        Ok(uuid)
    }

    fn track(&mut self, desc: TrackDescriptor) -> Result<(), ExportError> {
        self.packet(None, trace_packet::Data::TrackDescriptor(desc), None)
    }

    // --- threads --------------------------------------------------------------------------

    fn observe_thread(&mut self, snap: &Snapshot, t: &ThreadView) -> Result<(), ExportError> {
        let now = snap.taken_at.monotonic_ns;
        let seen = t.syscall.as_ref().filter(|_| t.state.is_blocked()).map(|c| {
            let (since_ns, exact) = match (c.blocked_ns, c.blocked_at_least_ns) {
                (Some(ns), _) => (Some(now.saturating_sub(ns)), true),
                (None, Some(ns)) => (Some(now.saturating_sub(ns)), false),
                (None, None) => (None, false),
            };
            let mut args =
                vec![("syscall", Arg::Str(c.name.clone())), ("class", Arg::Str(c.class.as_str().into()))];
            if let Some(fd) = c.fd {
                args.push(("fd", Arg::Int(i64::from(fd))));
            }
            if let Some(desc) = &c.fd_desc {
                args.push(("fd_desc", Arg::Str(desc.clone())));
            }
            if let Some(addr) = &c.futex_addr {
                args.push(("futex_addr", Arg::Str(addr.clone())));
            }
            args.push(("state", Arg::Str(t.state.as_str().into())));
            if let Some(role) = t.role {
                args.push(("role", Arg::Str(role.as_str().into())));
            }
            if let Some(goid) = t.goroutine {
                args.push(("goroutine", Arg::Int(i64::try_from(goid).unwrap_or(i64::MAX))));
            }
            push_stack(&mut args, "user_stack", &snap.stacks, t.user_stack_id);
            push_stack(&mut args, "kernel_stack", &snap.stacks, t.kernel_stack_id);
            Observation { key: thread_key(c.nr, c.fd), name: c.name.clone(), since_ns, exact, args }
        });
        let continues = match (&self.threads[&t.tid].open, &seen) {
            (Some(open), Some(obs)) => continues(open, obs),
            _ => false,
        };
        if !continues {
            self.close_thread_slice(
                t.tid,
                None,
                "last seen in the call; it had returned by the next snapshot",
            )?;
        }
        let Some(obs) = seen else { return Ok(()) };
        let track = self.threads.get_mut(&t.tid).expect("declared");
        match &mut track.open {
            Some(open) => refine(open, &obs, now),
            None => track.open = Some(open_slice(obs, now)),
        }
        if let Some(waker) = t.syscall.as_ref().and_then(|c| c.waker_tid) {
            self.flow_from_waker(snap, t.tid, waker)?;
        }
        Ok(())
    }

    /// Draws "`waker` woke `tid`" once per slice, at the snapshot that reported it.
    fn flow_from_waker(&mut self, snap: &Snapshot, tid: u32, waker: u32) -> Result<(), ExportError> {
        let open = self.threads.get_mut(&tid).and_then(|t| t.open.as_mut()).expect("open");
        if open.wakers.contains(&waker) {
            return Ok(());
        }
        open.wakers.push(waker);
        let now = snap.taken_at.monotonic_ns;
        let waker_track = match (self.threads.get(&waker), self.outside_wakers.get(&waker)) {
            (Some(t), _) => t.uuid,
            (None, Some(&uuid)) => uuid,
            (None, None) => {
                let uuid =
                    self.named_track(None, format!("waker tid {waker} (not a thread of the target)"), false)?;
                self.outside_wakers.insert(waker, uuid);
                uuid
            }
        };
        let woken_track = self.threads[&tid].uuid;
        let flow = self.next_flow;
        self.next_flow += 1;
        let when = "the wakeup's own time is not recorded: it happened during the call, before this snapshot";
        let args = vec![("woken_tid", Arg::Int(i64::from(tid))), ("when", Arg::Str(when.into()))];
        self.instant(now, waker_track, "woke a thread", args, vec![flow], vec![])?;
        let args = vec![("waker_tid", Arg::Int(i64::from(waker))), ("when", Arg::Str(when.into()))];
        self.instant(now, woken_track, "woken", args, vec![], vec![flow])?;
        self.stats.flows += 1;
        Ok(())
    }

    /// Writes the open slice of `tid`, if any, ending at `end_ns` (None: when last seen).
    fn close_thread_slice(&mut self, tid: u32, end_ns: Option<u64>, why: &str) -> Result<(), ExportError> {
        let Some(mut open) = self.threads.get_mut(&tid).and_then(|t| t.open.take()) else { return Ok(()) };
        open.args.push(("end", Arg::Str(why.to_owned())));
        let end = end_ns.unwrap_or(open.last_seen_ns);
        self.write_thread_slice(tid, open, end)
    }

    fn write_thread_slice(&mut self, tid: u32, mut open: OpenSlice, end_ns: u64) -> Result<(), ExportError> {
        let track = self.threads.get_mut(&tid).expect("declared");
        not_before(&mut open, track.last_end_ns);
        track.last_end_ns = track.last_end_ns.max(end_ns);
        let uuid = track.uuid;
        self.stats.thread_slices += 1;
        self.slice(uuid, "syscall", open, end_ns)
    }

    /// A call that blocked past the threshold and returned between snapshots.
    fn write_streamed_call(
        &mut self,
        tid: u32,
        name: &str,
        begin: u64,
        end: u64,
        mut args: Vec<(&'static str, Arg)>,
    ) -> Result<(), ExportError> {
        args.insert(0, ("syscall", Arg::Str(name.to_owned())));
        args.push(("begin", Arg::Str("exact: streamed at its return".into())));
        args.push(("end", Arg::Str("exact: streamed at its return".into())));
        let open = OpenSlice {
            key: String::new(),
            name: name.to_owned(),
            begin_ns: begin,
            begin_exact: true,
            last_seen_ns: end,
            args,
            wakers: Vec::new(),
            continuity_assumed: false,
        };
        self.write_thread_slice(tid, open, end)
    }

    // --- goroutines -----------------------------------------------------------------------

    fn observe_goroutines(&mut self, snap: &Snapshot, process: Process) -> Result<(), ExportError> {
        let now = snap.taken_at.monotonic_ns;
        // Tracked goroutines the snapshot no longer lists have exited.
        let present: HashSet<u64> = if self.goroutines.is_empty() {
            HashSet::new()
        } else {
            snap.goroutines.iter().map(|g| g.goid).filter(|g| self.goroutines.contains_key(g)).collect()
        };
        let gone: Vec<u64> = self.goroutines.keys().copied().filter(|g| !present.contains(g)).collect();
        for goid in gone {
            self.close_goroutine_slice(
                goid,
                "last seen waiting; the goroutine had exited by the next snapshot",
            )?;
            self.goroutines.remove(&goid);
        }
        // Goroutines that wait and have no track yet get one while the budget lasts, longest
        // waiting first (once it is spent, they are only counted: no sort of 100k goroutines).
        let budget = GOROUTINE_TRACK_LIMIT.saturating_sub(self.goroutine_tracks_made);
        let untracked = snap.goroutines.iter().filter(|g| waits(g) && !self.goroutines.contains_key(&g.goid));
        let mut candidates: Vec<&GoroutineView> = Vec::new();
        let mut without_track = 0u64;
        for g in untracked {
            if budget == 0 {
                without_track += 1;
            } else {
                candidates.push(g);
            }
        }
        candidates.sort_by_key(|g| (std::cmp::Reverse(g.waiting_ns.or(g.status_ns).unwrap_or(0)), g.goid));
        without_track += candidates.len().saturating_sub(budget) as u64;
        self.stats.goroutines_without_track_max = self.stats.goroutines_without_track_max.max(without_track);
        for g in candidates.into_iter().take(budget) {
            let group = match self.goroutine_group {
                Some(uuid) => uuid,
                None => {
                    let uuid = self.named_track(Some(process.uuid), "goroutines".into(), false)?;
                    self.goroutine_group = Some(uuid);
                    uuid
                }
            };
            let uuid = self.named_track(Some(group), format!("goroutine {} {}", g.goid, g.start), false)?;
            self.goroutine_tracks_made += 1;
            self.goroutines.insert(g.goid, GoroutineTrack { uuid, open: None, last_end_ns: 0 });
        }
        for g in &snap.goroutines {
            let Some(track) = self.goroutines.get(&g.goid) else { continue };
            let seen = goroutine_label(g).map(|(key, name)| {
                let (since_ns, exact) = match (g.status_ns, g.status_ns_exact, g.waiting_ns) {
                    (Some(ns), true, _) => (Some(now.saturating_sub(ns)), true),
                    (status, false, waiting) => (waiting.or(status).map(|ns| now.saturating_sub(ns)), false),
                    (None, true, waiting) => (waiting.map(|ns| now.saturating_sub(ns)), false),
                };
                Observation { key, name, since_ns, exact, args: goroutine_args(snap, g) }
            });
            let continues = match (&track.open, &seen) {
                (Some(open), Some(obs)) => continues(open, obs),
                _ => false,
            };
            if !continues {
                self.close_goroutine_slice(
                    g.goid,
                    "last seen waiting; it had moved on by the next snapshot",
                )?;
            }
            let Some(obs) = seen else { continue };
            let track = self.goroutines.get_mut(&g.goid).expect("tracked");
            match &mut track.open {
                Some(open) => refine(open, &obs, now),
                None => track.open = Some(open_slice(obs, now)),
            }
        }
        Ok(())
    }

    fn close_goroutine_slice(&mut self, goid: u64, why: &str) -> Result<(), ExportError> {
        let Some(track) = self.goroutines.get_mut(&goid) else { return Ok(()) };
        let Some(mut open) = track.open.take() else { return Ok(()) };
        let uuid = track.uuid;
        open.args.push(("end", Arg::Str(why.to_owned())));
        let end = open.last_seen_ns;
        not_before(&mut open, track.last_end_ns);
        track.last_end_ns = track.last_end_ns.max(end);
        self.stats.goroutine_slices += 1;
        self.slice(uuid, "goroutine", open, end)
    }

    // --- counters -------------------------------------------------------------------------

    fn counters_of(&mut self, snap: &Snapshot, process: Process) -> Result<(), ExportError> {
        let now = snap.taken_at.monotonic_ns;
        let s = &snap.summary;
        let mut values: Vec<(String, usize)> = SyscallClass::ALL
            .iter()
            .map(|&c| (format!("threads blocked: {}", c.as_str()), s.blocked_in(c)))
            .collect();
        values.push(("threads runnable".into(), s.runnable));
        values.push(("threads running".into(), s.running));
        if snap.runtime.is_some() {
            values.push(("runtime threads idle by design".into(), s.runtime_idle));
        }
        // Once a runtime's counters exist they go on (at 0 when a snapshot could not list any).
        if !snap.goroutines.is_empty() || self.counters.contains_key("goroutines waiting") {
            for status in [GoStatus::Runnable, GoStatus::Running, GoStatus::Syscall, GoStatus::Waiting] {
                let n = snap.goroutines.iter().filter(|g| g.status == status).count();
                values.push((format!("goroutines {}", status.as_str()), n));
            }
        }
        if !snap.tasks.is_empty() || self.counters.contains_key("tasks idle") {
            for state in [TaskState::Running, TaskState::Scheduled, TaskState::Idle] {
                let n = snap.tasks.iter().filter(|t| t.state == state).count();
                values.push((format!("tasks {}", state.as_str()), n));
            }
            values.push(("workers stalled in a poll".into(), snap.stalls.len()));
        }
        for (name, value) in values {
            let uuid = match self.counters.get(&name) {
                Some(&uuid) => uuid,
                None => {
                    let uuid = self.named_track(Some(process.uuid), name.clone(), true)?;
                    self.counters.insert(name, uuid);
                    uuid
                }
            };
            self.counter(now, uuid, value)?;
        }
        // Waiting goroutines per wait reason: the grouped view of every goroutine.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for g in snap.goroutines.iter().filter(|g| g.status == GoStatus::Waiting) {
            *counts.entry(g.wait_reason.as_deref().unwrap_or("unknown")).or_default() += 1;
        }
        let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
        counts.sort_unstable();
        let mut by_reason: HashMap<String, usize> = HashMap::new();
        for (reason, n) in counts {
            let room = self.wait_reason_counters.len() < WAIT_REASON_TRACK_LIMIT;
            let reason = if room || self.wait_reason_counters.contains_key(reason) {
                reason
            } else {
                "other wait reasons"
            };
            if !self.wait_reason_counters.contains_key(reason) {
                let uuid =
                    self.named_track(Some(process.uuid), format!("goroutines waiting: {reason}"), true)?;
                self.wait_reason_counters.insert(reason.to_owned(), uuid);
            }
            *by_reason.entry(reason.to_owned()).or_default() += n;
        }
        let tracks: Vec<(String, u64)> =
            self.wait_reason_counters.iter().map(|(r, &u)| (r.clone(), u)).collect();
        for (reason, uuid) in tracks {
            self.counter(now, uuid, by_reason.get(&reason).copied().unwrap_or(0))?;
        }
        Ok(())
    }

    // --- packets --------------------------------------------------------------------------

    fn clock_snapshot(&mut self, snap: &Snapshot) -> Result<(), ExportError> {
        let clock =
            |id, ns| clock_snapshot::Clock { clock_id: Some(id), timestamp: Some(ns), ..Default::default() };
        let data = ClockSnapshot {
            clocks: vec![
                clock(CLOCK_MONOTONIC, snap.taken_at.monotonic_ns),
                clock(CLOCK_REALTIME, snap.taken_at.wall_unix_ns),
            ],
            // Said once: trace_processor refuses to change the trace clock after using it.
            primary_trace_clock: (self.stats.snapshots == 1).then_some(CLOCK_MONOTONIC as i32),
        };
        self.packet(Some(snap.taken_at.monotonic_ns), trace_packet::Data::ClockSnapshot(data), None)
    }

    /// Writes `open` as a begin and an end event on `track`.
    fn slice(
        &mut self,
        track: u64,
        category: &'static str,
        open: OpenSlice,
        end_ns: u64,
    ) -> Result<(), ExportError> {
        let mut interned = InternedData::default();
        let mut args = open.args;
        let begin = if open.begin_exact {
            "exact: its start was seen while attached".to_owned()
        } else {
            "lower bound: the thread or goroutine was in it at least since here (it may have begun earlier)"
                .to_owned()
        };
        if !args.iter().any(|(k, _)| *k == "begin") {
            args.push(("begin", Arg::Str(begin)));
        }
        if open.continuity_assumed {
            let why = "assumed: a later snapshot showed the same call without an exact time, which \
                       cannot rule out a return and a new identical call in between";
            args.push(("one_call", Arg::Str(why.into())));
        }
        let begin_ns = open.begin_ns.min(end_ns);
        let mut event = TrackEvent {
            r#type: Some(track_event::Type::SliceBegin as i32),
            track_uuid: Some(track),
            ..Default::default()
        };
        event.category_iids.push(self.intern_category(category, &mut interned));
        event.name_field = Some(self.intern_name(&open.name, &mut interned));
        event.debug_annotations =
            args.into_iter().map(|(k, v)| self.annotation(k, v, &mut interned)).collect();
        self.packet(Some(begin_ns), trace_packet::Data::TrackEvent(event), Some(interned))?;
        let end = TrackEvent {
            r#type: Some(track_event::Type::SliceEnd as i32),
            track_uuid: Some(track),
            ..Default::default()
        };
        self.packet(Some(end_ns), trace_packet::Data::TrackEvent(end), None)
    }

    fn instant(
        &mut self,
        at_ns: u64,
        track: u64,
        name: &str,
        args: Vec<(&'static str, Arg)>,
        flow_ids: Vec<u64>,
        terminating_flow_ids: Vec<u64>,
    ) -> Result<(), ExportError> {
        let mut interned = InternedData::default();
        let mut event = TrackEvent {
            r#type: Some(track_event::Type::Instant as i32),
            track_uuid: Some(track),
            flow_ids,
            terminating_flow_ids,
            ..Default::default()
        };
        event.category_iids.push(self.intern_category("wakeup", &mut interned));
        event.name_field = Some(self.intern_name(name, &mut interned));
        event.debug_annotations =
            args.into_iter().map(|(k, v)| self.annotation(k, v, &mut interned)).collect();
        self.packet(Some(at_ns), trace_packet::Data::TrackEvent(event), Some(interned))
    }

    fn counter(&mut self, at_ns: u64, track: u64, value: usize) -> Result<(), ExportError> {
        let event = TrackEvent {
            r#type: Some(track_event::Type::Counter as i32),
            track_uuid: Some(track),
            counter_value_field: Some(track_event::CounterValueField::CounterValue(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
            ..Default::default()
        };
        self.packet(Some(at_ns), trace_packet::Data::TrackEvent(event), None)
    }

    fn intern_name(&mut self, name: &str, interned: &mut InternedData) -> track_event::NameField {
        if let Some(&iid) = self.names.get(name) {
            return track_event::NameField::NameIid(iid);
        }
        if self.names.len() >= NAME_INTERN_LIMIT {
            return track_event::NameField::Name(name.to_owned());
        }
        let iid = self.names.len() as u64 + 1;
        self.names.insert(name.to_owned(), iid);
        interned.event_names.push(EventName { iid: Some(iid), name: Some(name.to_owned()) });
        track_event::NameField::NameIid(iid)
    }

    fn intern_category(&mut self, name: &'static str, interned: &mut InternedData) -> u64 {
        if let Some(&iid) = self.categories.get(name) {
            return iid;
        }
        let iid = self.categories.len() as u64 + 1;
        self.categories.insert(name, iid);
        interned.event_categories.push(EventCategory { iid: Some(iid), name: Some(name.to_owned()) });
        iid
    }

    fn annotation(&mut self, key: &'static str, value: Arg, interned: &mut InternedData) -> DebugAnnotation {
        let iid = match self.annotation_names.get(key) {
            Some(&iid) => iid,
            None => {
                let iid = self.annotation_names.len() as u64 + 1;
                self.annotation_names.insert(key, iid);
                interned
                    .debug_annotation_names
                    .push(DebugAnnotationName { iid: Some(iid), name: Some(key.to_owned()) });
                iid
            }
        };
        DebugAnnotation {
            name_field: Some(debug_annotation::NameField::NameIid(iid)),
            value: Some(match value {
                Arg::Str(s) => debug_annotation::Value::StringValue(s),
                Arg::Int(i) => debug_annotation::Value::IntValue(i),
            }),
            ..Default::default()
        }
    }

    /// Writes one packet as a `Trace.packet` field (tag 1, length-delimited), so the output is
    /// a valid `Trace` message at every packet boundary.
    fn packet(
        &mut self,
        timestamp: Option<u64>,
        data: trace_packet::Data,
        interned: Option<InternedData>,
    ) -> Result<(), ExportError> {
        let uses_interning = matches!(data, trace_packet::Data::TrackEvent(_));
        let mut flags = 0;
        if self.first_packet {
            flags |= trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32;
        }
        if uses_interning {
            flags |= trace_packet::SequenceFlags::SeqNeedsIncrementalState as u32;
        }
        let interned = interned.filter(|i| *i != InternedData::default());
        let packet = TracePacket {
            timestamp,
            timestamp_clock_id: timestamp.map(|_| CLOCK_MONOTONIC),
            data: Some(data),
            optional_trusted_packet_sequence_id: Some(
                trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(SEQUENCE_ID),
            ),
            interned_data: interned,
            sequence_flags: (flags != 0).then_some(flags),
            first_packet_on_sequence: self.first_packet.then_some(true),
        };
        self.first_packet = false;
        let mut buf = Vec::with_capacity(packet.encoded_len() + 8);
        buf.push(0x0a); // field 1 (Trace.packet), wire type 2
        packet.encode_length_delimited(&mut buf).expect("a Vec grows");
        self.out.write_all(&buf)?;
        self.stats.packets += 1;
        Ok(())
    }
}

/// The identity of a thread's call across snapshots.
fn thread_key(nr: u32, fd: Option<i32>) -> String {
    match fd {
        Some(fd) => format!("{nr}/{fd}"),
        None => nr.to_string(),
    }
}

/// Whether `obs` is the call or wait `open` already holds. With an exact begin, a begin after
/// the last snapshot that showed the open one is a new call; without one, the same call (a new
/// identical call between two snapshots cannot be told apart then).
fn continues(open: &OpenSlice, obs: &Observation) -> bool {
    open.key == obs.key
        && match (obs.exact, obs.since_ns) {
            (true, Some(since)) => since <= open.last_seen_ns,
            _ => true,
        }
}

fn open_slice(obs: Observation, now: u64) -> OpenSlice {
    OpenSlice {
        key: obs.key,
        name: obs.name,
        begin_ns: obs.since_ns.unwrap_or(now),
        begin_exact: obs.exact,
        last_seen_ns: now,
        args: obs.args,
        wakers: Vec::new(),
        continuity_assumed: false,
    }
}

/// Keeps a slice from beginning before the previous one on its track ended, so the track's
/// slices never overlap (the bounds of two sightings can disagree: a snapshot is not atomic).
fn not_before(open: &mut OpenSlice, previous_end_ns: u64) {
    if open.begin_ns < previous_end_ns {
        open.begin_ns = previous_end_ns;
        open.begin_exact = false;
        let why = "moved to the end of the previous slice on this track, which the data overlapped";
        open.args.push(("begin_moved", Arg::Str(why.into())));
    }
}

/// A later sighting: an exact begin replaces a bound, an earlier bound replaces a later one.
fn refine(open: &mut OpenSlice, obs: &Observation, now: u64) {
    if !obs.exact && obs.since_ns.is_none_or(|since| since > open.last_seen_ns) {
        open.continuity_assumed = true;
    }
    open.last_seen_ns = now;
    match (obs.exact, obs.since_ns) {
        (true, Some(since)) if !open.begin_exact => {
            open.begin_ns = since;
            open.begin_exact = true;
        }
        (false, Some(since)) if !open.begin_exact => open.begin_ns = open.begin_ns.min(since),
        _ => {}
    }
}

/// Whether a goroutine waits (parked, or in a syscall or C call): what gets a slice.
fn waits(g: &GoroutineView) -> bool {
    matches!(g.status, GoStatus::Waiting | GoStatus::Syscall)
}

/// The slice key and name of what a goroutine waits in, if it waits.
fn goroutine_label(g: &GoroutineView) -> Option<(String, String)> {
    if !waits(g) {
        return None;
    }
    match g.status {
        GoStatus::Waiting => {
            let reason = g.wait_reason.clone().unwrap_or_else(|| "waiting".into());
            Some((format!("wait:{reason}"), reason))
        }
        GoStatus::Syscall => {
            let name = match (&g.syscall, &g.c_function) {
                (Some(c), _) => format!("syscall {}", c.name),
                (None, Some(f)) => format!("cgo {f}"),
                (None, None) if g.cgo => "cgo call".to_owned(),
                (None, None) => "syscall".to_owned(),
            };
            Some((format!("syscall:{name}"), name))
        }
        _ => None,
    }
}

fn goroutine_args(snap: &Snapshot, g: &GoroutineView) -> Vec<(&'static str, Arg)> {
    let mut args = vec![
        ("goid", Arg::Int(i64::try_from(g.goid).unwrap_or(i64::MAX))),
        ("status", Arg::Str(g.status.as_str().into())),
    ];
    if let Some(reason) = &g.wait_reason {
        args.push(("wait_reason", Arg::Str(reason.clone())));
    }
    if let Some(np) = &g.netpoll {
        args.push(("fd", Arg::Int(i64::from(np.fd))));
        args.push(("netpoll_mode", Arg::Str(np.mode.as_str().into())));
        if let Some(desc) = &np.fd_desc {
            args.push(("fd_desc", Arg::Str(desc.clone())));
        }
    }
    if let Some(c) = &g.syscall {
        args.push(("syscall", Arg::Str(c.name.clone())));
        if let Some(fd) = c.fd {
            args.push(("fd", Arg::Int(i64::from(fd))));
        }
        if let Some(desc) = &c.fd_desc {
            args.push(("fd_desc", Arg::Str(desc.clone())));
        }
    }
    if let Some(tid) = g.tid {
        args.push(("tid", Arg::Int(i64::from(tid))));
    }
    args.push(("start", Arg::Str(g.start.clone())));
    if let Some(by) = &g.created_by {
        args.push(("created_by", Arg::Str(by.clone())));
    }
    push_stack(&mut args, "stack", &snap.stacks, g.stack_id);
    args
}

fn push_stack(args: &mut Vec<(&'static str, Arg)>, key: &'static str, stacks: &StackTable, id: StackId) {
    if !id.is_empty() && stacks.contains(id) {
        args.push((key, Arg::Str(stacks.render(id).join("\n"))));
    }
}

fn to_i32(id: u32) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
