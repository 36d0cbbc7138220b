//! Delta encoding of snapshots: a keyframe holds every thread and goroutine; a delta only those
//! added, changed or removed since the previous snapshot, so an unchanged one costs nothing.
//!
//! Two things would make every blocked thread look changed at every interval, and are encoded
//! away here, exactly (the decoder reproduces every value bit for bit):
//! - Durations that grow with time (`blocked_ns`, `blocked_at_least_ns`, `ended_ns_ago`,
//!   `waiting_ns`, `status_ns`) are stored as instants: `reference - duration` (wrapping, so
//!   any u64 round-trips). Each family has its own reference clock, stored per snapshot: the
//!   collector measures goroutine times against the runtime read's clock, not the snapshot's,
//!   so the encoder infers each reference as the value that keeps most unchanged entries'
//!   instants equal to the previous snapshot's (any choice decodes exactly; a good one makes
//!   the delta small).
//! - Stack ids are per snapshot; entries store recording-wide ids (stacks since the last
//!   keyframe, each stored once, in the chunk that first needs it), and each snapshot lists its
//!   own table as recording-wide ids, so the decoder rebuilds the table with its original ids.

use std::collections::{HashMap, HashSet};

use parkscope_model::{
    Frame, GoroutineView, IoWaits, RuntimeView, Snapshot, StackId, StackTable, StallView, Summary,
    SyscallView, TaskSource, TaskView, ThreadView, Timestamp,
};
use serde::{Deserialize, Serialize};

/// A keyframe at least this often, so a reader seeking far into a long recording, and a
/// recording whose early chunks are damaged, recover.
pub const KEYFRAME_EVERY: u64 = 300;

/// The reference instants of the time-derived fields (see the module comment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    /// Threads' `blocked_ns`, `blocked_at_least_ns`, long calls' `ended_ns_ago`, and the
    /// syscall of goroutines (copied from their thread).
    pub threads: u64,
    /// Goroutines' `waiting_ns`.
    pub waits: u64,
    /// Goroutines' `status_ns`.
    pub status: u64,
}

/// Entries of one kind (threads or goroutines) in a snapshot chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Entries<T> {
    /// Keyframe: every entry, in order. Delta: those added or changed.
    pub upsert: Vec<T>,
    /// Delta: keys (tid, goid) of entries gone since the previous snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<u64>,
    /// Delta: the order of keys, when it is not the previous order (removed ones dropped)
    /// followed by the added ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<u64>>,
}

impl<T> Entries<T> {
    fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.removed.is_empty() && self.order.is_none()
    }
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries { upsert: Vec::new(), removed: Vec::new(), order: None }
    }
}

/// The payload of a snapshot chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncodedSnapshot {
    pub keyframe: bool,
    pub schema_version: u32,
    pub pid: u32,
    pub comm: String,
    pub taken_at: Timestamp,
    pub target_exited: bool,
    pub summary: Summary,
    pub runtime: Option<RuntimeView>,
    pub clocks: Clocks,
    /// Stacks first needed by this snapshot, appended to the recording-wide list (which a
    /// keyframe resets; id 0 is the empty stack).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_stacks: Vec<Vec<Frame>>,
    /// The snapshot's own stack table (its ids 1..), as recording-wide ids; absent when the same
    /// as the previous snapshot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_table: Option<Vec<u32>>,
    pub threads: Entries<ThreadView>,
    pub goroutines: Entries<GoroutineView>,
    /// tokio tasks (keyed by the console's id), delta-encoded like threads.
    #[serde(default, skip_serializing_if = "Entries::is_empty")]
    pub tasks: Entries<TaskView>,
    /// Worker stalls, verbatim in every snapshot (few, and their durations change each time);
    /// their stacks as recording-wide ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stalls: Vec<StallView>,
    /// Where the tasks came from (the console's address, or why it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_source: Option<TaskSource>,
    /// Tasks parked on I/O, whole when they changed since the previous snapshot (or in a
    /// keyframe); absent with `io_waits_unchanged` when they did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_waits: Option<IoWaits>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub io_waits_unchanged: bool,
}

trait Keyed: Clone + PartialEq {
    fn key(&self) -> u64;
}

impl Keyed for ThreadView {
    fn key(&self) -> u64 {
        u64::from(self.tid)
    }
}

impl Keyed for TaskView {
    /// The console's span id, else the runtime's task id; a task with neither shares a key
    /// with any other such task, which makes its snapshot a keyframe (never a wrong delta).
    fn key(&self) -> u64 {
        self.console_id.or(self.task_id).unwrap_or(u64::MAX)
    }
}

impl Keyed for GoroutineView {
    fn key(&self) -> u64 {
        self.goid
    }
}

/// `reference - value`, wrapping: applied twice with the same reference it gives `value` back.
fn flip(reference: u64, value: &mut Option<u64>) {
    if let Some(v) = value.as_mut() {
        *v = reference.wrapping_sub(*v);
    }
}

fn flip_syscall(reference: u64, s: &mut Option<SyscallView>) {
    if let Some(s) = s.as_mut() {
        flip(reference, &mut s.blocked_ns);
        flip(reference, &mut s.blocked_at_least_ns);
    }
}

/// Durations <-> instants of a thread (the same operation both ways).
fn flip_thread(clocks: &Clocks, t: &mut ThreadView) {
    flip_syscall(clocks.threads, &mut t.syscall);
    for c in &mut t.long_calls {
        c.ended_ns_ago = clocks.threads.wrapping_sub(c.ended_ns_ago);
    }
}

fn flip_goroutine(clocks: &Clocks, g: &mut GoroutineView) {
    flip(clocks.waits, &mut g.waiting_ns);
    flip(clocks.status, &mut g.status_ns);
    flip_syscall(clocks.threads, &mut g.syscall);
}

/// The recording-wide stacks since the last keyframe.
#[derive(Default)]
struct GlobalStacks {
    index: HashMap<Vec<Frame>, u32>,
    /// The last id given (ids start at 1; 0 is the empty stack).
    len: u32,
}

/// Encodes a sequence of snapshots into snapshot-chunk payloads.
#[derive(Default)]
pub struct Encoder {
    /// The previous snapshot as encoded, when the next may be a delta against it.
    base: Option<Base>,
    stacks: GlobalStacks,
    since_keyframe: u64,
}

struct Base {
    stack_table: Vec<u32>,
    io_waits: Option<IoWaits>,
    threads: KeyedBase<ThreadView>,
    goroutines: KeyedBase<GoroutineView>,
    tasks: KeyedBase<TaskView>,
}

struct KeyedBase<T> {
    order: Vec<u64>,
    by_key: HashMap<u64, T>,
}

impl<T: Keyed> KeyedBase<T> {
    /// None when keys repeat (a list read while it changed): such a base cannot be diffed.
    fn of(entries: &[T]) -> Option<KeyedBase<T>> {
        let order: Vec<u64> = entries.iter().map(Keyed::key).collect();
        let by_key: HashMap<u64, T> = entries.iter().map(|e| (e.key(), e.clone())).collect();
        (by_key.len() == order.len()).then_some(KeyedBase { order, by_key })
    }

    /// The delta from this base to `entries` (already encoded), and how many entries it carries.
    fn diff(&self, entries: &[T]) -> (Entries<T>, usize) {
        let mut upsert = Vec::new();
        let mut added = Vec::new();
        let mut seen = HashSet::with_capacity(entries.len());
        for e in entries {
            let k = e.key();
            seen.insert(k);
            match self.by_key.get(&k) {
                Some(old) if old == e => {}
                Some(_) => upsert.push(e.clone()),
                None => {
                    added.push(k);
                    upsert.push(e.clone());
                }
            }
        }
        let removed: Vec<u64> = self.order.iter().copied().filter(|k| !seen.contains(k)).collect();
        let actual: Vec<u64> = entries.iter().map(Keyed::key).collect();
        let default_order = self.order.iter().copied().filter(|k| seen.contains(k)).chain(added);
        let order = (!actual.iter().copied().eq(default_order)).then_some(actual);
        let cost = upsert.len() + removed.len() + order.as_ref().map_or(0, |o| o.len() / 16);
        (Entries { upsert, removed, order }, cost)
    }
}

/// The reference that keeps the most matched entries' instants unchanged: for each entry also
/// in the base, `old_instant + new_duration` is the reference under which it is unchanged.
fn infer_reference(pairs: impl Iterator<Item = (u64, u64)>, fallback: u64) -> u64 {
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for (old_instant, new_duration) in pairs.take(4096) {
        *votes.entry(old_instant.wrapping_add(new_duration)).or_default() += 1;
    }
    votes.into_iter().max_by_key(|&(r, n)| (n, std::cmp::Reverse(r))).map_or(fallback, |(r, _)| r)
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Encodes `s`, as a keyframe or as a delta against the previous snapshot.
    pub fn encode(&mut self, s: &Snapshot) -> EncodedSnapshot {
        let now = s.taken_at.monotonic_ns;
        let keyframe_due = self.base.is_none() || self.since_keyframe + 1 >= KEYFRAME_EVERY;
        let clocks = match (&self.base, keyframe_due) {
            (Some(base), false) => self.infer_clocks(base, s, now),
            _ => Clocks { threads: now, waits: now, status: now },
        };
        if keyframe_due {
            self.stacks = GlobalStacks::default();
        }
        let mut new_stacks = Vec::new();
        let local_to_global: Vec<u32> = s
            .stacks
            .iter()
            .map(|(id, frames)| {
                if id.is_empty() {
                    return 0;
                }
                if let Some(&g) = self.stacks.index.get(frames) {
                    return g;
                }
                self.stacks.len += 1;
                let g = self.stacks.len;
                self.stacks.index.insert(frames.to_vec(), g);
                new_stacks.push(frames.to_vec());
                g
            })
            .collect();
        let global = |id: StackId| local_to_global.get(id.0 as usize).copied().unwrap_or(0);
        let threads: Vec<ThreadView> = s
            .threads
            .iter()
            .map(|t| {
                let mut t = t.clone();
                flip_thread(&clocks, &mut t);
                t.user_stack_id = StackId(global(t.user_stack_id));
                t.kernel_stack_id = StackId(global(t.kernel_stack_id));
                t
            })
            .collect();
        let goroutines: Vec<GoroutineView> = s
            .goroutines
            .iter()
            .map(|g| {
                let mut g = g.clone();
                flip_goroutine(&clocks, &mut g);
                g.stack_id = StackId(global(g.stack_id));
                g
            })
            .collect();
        let stack_table: Vec<u32> = local_to_global.iter().skip(1).copied().collect();

        let mut out = EncodedSnapshot {
            keyframe: true,
            schema_version: s.schema_version,
            pid: s.pid,
            comm: s.comm.clone(),
            taken_at: s.taken_at,
            target_exited: s.target_exited,
            summary: s.summary.clone(),
            runtime: s.runtime.clone(),
            clocks,
            new_stacks: Vec::new(),
            stack_table: None,
            threads: Entries::default(),
            goroutines: Entries::default(),
            tasks: Entries::default(),
            task_source: s.task_source.clone(),
            io_waits: s.io_waits.clone(),
            io_waits_unchanged: false,
            stalls: s
                .stalls
                .iter()
                .map(|st| {
                    let mut st = st.clone();
                    st.user_stack_id = StackId(global(st.user_stack_id));
                    st
                })
                .collect(),
        };
        // Repeated keys (a list read while it changed): a delta could not say which entry a key
        // means, so this snapshot is a keyframe (entries verbatim), and so is the next.
        let new_base = match (KeyedBase::of(&threads), KeyedBase::of(&goroutines), KeyedBase::of(&s.tasks)) {
            (Some(t), Some(g), Some(k)) => Some((t, g, k)),
            _ => None,
        };
        let delta = match (&self.base, keyframe_due) {
            (Some(base), false) if new_base.is_some() => {
                let (t, tc) = base.threads.diff(&threads);
                let (g, gc) = base.goroutines.diff(&goroutines);
                let (k, kc) = base.tasks.diff(&s.tasks);
                // A delta that carries most entries anyway is no smaller than a keyframe.
                let total = threads.len() + goroutines.len() + s.tasks.len();
                (tc + gc + kc <= total / 2).then_some((t, g, k))
            }
            _ => None,
        };
        match delta {
            Some((t, g, k)) => {
                out.tasks = k;
                out.keyframe = false;
                if self.base.as_ref().is_some_and(|b| b.io_waits == s.io_waits) {
                    out.io_waits = None;
                    out.io_waits_unchanged = true;
                }
                out.new_stacks = new_stacks;
                let same_table = self.base.as_ref().is_some_and(|b| b.stack_table == stack_table);
                out.stack_table = (!same_table).then(|| stack_table.clone());
                out.threads = t;
                out.goroutines = g;
                self.since_keyframe += 1;
            }
            None if !keyframe_due => {
                // A keyframe after all: its stacks start a new recording-wide list.
                self.stacks = GlobalStacks::default();
                self.since_keyframe = 0;
                return self.encode_keyframe_now(s);
            }
            None => {
                out.new_stacks = new_stacks;
                out.stack_table = Some(stack_table.clone());
                out.threads.upsert = threads.clone();
                out.goroutines.upsert = goroutines.clone();
                out.tasks.upsert = s.tasks.clone();
                self.since_keyframe = 0;
            }
        }
        self.base = new_base.map(|(t, g, k)| Base {
            stack_table,
            io_waits: s.io_waits.clone(),
            threads: t,
            goroutines: g,
            tasks: k,
        });
        out
    }

    fn encode_keyframe_now(&mut self, s: &Snapshot) -> EncodedSnapshot {
        self.base = None;
        self.encode(s)
    }

    fn infer_clocks(&self, base: &Base, s: &Snapshot, now: u64) -> Clocks {
        let threads = infer_reference(
            s.threads.iter().filter_map(|t| {
                let old = base.threads.by_key.get(&u64::from(t.tid))?;
                let (o, n) = (old.syscall.as_ref()?, t.syscall.as_ref()?);
                Some((o.blocked_ns.or(o.blocked_at_least_ns)?, n.blocked_ns.or(n.blocked_at_least_ns)?))
            }),
            now,
        );
        let waits = infer_reference(
            s.goroutines
                .iter()
                .filter_map(|g| Some((base.goroutines.by_key.get(&g.goid)?.waiting_ns?, g.waiting_ns?))),
            now,
        );
        let status = infer_reference(
            s.goroutines
                .iter()
                .filter_map(|g| Some((base.goroutines.by_key.get(&g.goid)?.status_ns?, g.status_ns?))),
            now,
        );
        Clocks { threads, waits, status }
    }
}

/// Decodes snapshot-chunk payloads back into the snapshots they were made from.
pub struct Decoder {
    max_entries: usize,
    stacks: Vec<Vec<Frame>>,
    state: Option<DecodedBase>,
}

struct DecodedBase {
    stack_table: Vec<u32>,
    io_waits: Option<IoWaits>,
    threads: KeyedBase<ThreadView>,
    goroutines: KeyedBase<GoroutineView>,
    tasks: KeyedBase<TaskView>,
}

impl<T: Keyed> KeyedBase<T> {
    fn from_keyframe(entries: &[T]) -> KeyedBase<T> {
        KeyedBase {
            order: entries.iter().map(Keyed::key).collect(),
            by_key: entries.iter().map(|e| (e.key(), e.clone())).collect(),
        }
    }

    /// Applies a delta; returns the entries in order.
    fn apply(&mut self, d: Entries<T>, max: usize, what: &str) -> Result<Vec<T>, String> {
        self.update(d, max, what)?;
        Ok(self.order.iter().filter_map(|k| self.by_key.get(k).cloned()).collect())
    }

    /// Applies a delta to the state only (checked as [`KeyedBase::apply`] checks it).
    fn update(&mut self, d: Entries<T>, max: usize, what: &str) -> Result<(), String> {
        let removed: HashSet<u64> = d.removed.iter().copied().collect();
        for k in &removed {
            self.by_key.remove(k);
        }
        let mut added = Vec::new();
        for e in d.upsert {
            let k = e.key();
            if self.by_key.insert(k, e).is_none() {
                added.push(k);
            }
        }
        if self.by_key.len() > max {
            return Err(format!("expected at most {max} {what}, found {}", self.by_key.len()));
        }
        self.order = match d.order {
            Some(order) => order,
            None => self.order.iter().copied().filter(|k| !removed.contains(k)).chain(added).collect(),
        };
        if self.order.len() > max {
            return Err(format!("expected at most {max} {what} in order, found {}", self.order.len()));
        }
        match self.order.iter().find(|k| !self.by_key.contains_key(k)) {
            Some(k) => Err(format!("expected {what} {k} in the previous snapshot")),
            None => Ok(()),
        }
    }
}

impl Decoder {
    pub fn new(max_entries: usize) -> Decoder {
        Decoder { max_entries, stacks: vec![Vec::new()], state: None }
    }

    /// The snapshot `e` encodes, or why it cannot be decoded (the caller adds the offset).
    pub fn decode(&mut self, e: EncodedSnapshot) -> Result<Snapshot, String> {
        self.step(e, true)?.ok_or_else(|| "expected a decoded snapshot".to_owned())
    }

    /// Takes `e` into the decoder's state without building its snapshot: how a seek passes the
    /// snapshots between a keyframe and the one it wants, at the cost of the deltas alone.
    /// What only the built snapshot would reveal (an entry naming a stack the table lacks) is
    /// found when a snapshot is decoded.
    pub fn skip(&mut self, e: EncodedSnapshot) -> Result<(), String> {
        self.step(e, false).map(drop)
    }

    fn step(&mut self, e: EncodedSnapshot, build: bool) -> Result<Option<Snapshot>, String> {
        let max = self.max_entries;
        if e.keyframe {
            self.stacks = vec![Vec::new()];
            self.state = None;
        } else if self.state.is_none() {
            return Err(
                "expected a keyframe before this delta (the snapshots it builds on are missing)".into()
            );
        }
        if self.stacks.len() + e.new_stacks.len() > max {
            return Err(format!(
                "expected at most {max} stacks, found {}",
                self.stacks.len() + e.new_stacks.len()
            ));
        }
        self.stacks.extend(e.new_stacks);
        let (threads, goroutines, tasks, stack_table) = match self.state.take() {
            Some(mut base) if !e.keyframe && !build => {
                base.threads.update(e.threads, max, "threads")?;
                base.goroutines.update(e.goroutines, max, "goroutines")?;
                base.tasks.update(e.tasks, max, "tasks")?;
                if let Some(table) = e.stack_table {
                    base.stack_table = table;
                }
                let table = base.stack_table.clone();
                self.state = Some(base);
                (Vec::new(), Vec::new(), Vec::new(), table)
            }
            Some(mut base) if !e.keyframe => {
                let t = base.threads.apply(e.threads, max, "threads")?;
                let g = base.goroutines.apply(e.goroutines, max, "goroutines")?;
                let k = base.tasks.apply(e.tasks, max, "tasks")?;
                if let Some(table) = e.stack_table {
                    base.stack_table = table;
                }
                let table = base.stack_table.clone();
                self.state = Some(base);
                (t, g, k, table)
            }
            _ => {
                let (t, g, k) = (e.threads.upsert, e.goroutines.upsert, e.tasks.upsert);
                if t.len() > max || g.len() > max || k.len() > max {
                    return Err(format!(
                        "expected at most {max} threads, goroutines and tasks, found {}, {} and {}",
                        t.len(),
                        g.len(),
                        k.len()
                    ));
                }
                let table = e.stack_table.ok_or("expected a stack table in a keyframe, found none")?;
                self.state = Some(DecodedBase {
                    stack_table: table.clone(),
                    io_waits: None,
                    threads: KeyedBase::from_keyframe(&t),
                    goroutines: KeyedBase::from_keyframe(&g),
                    tasks: KeyedBase::from_keyframe(&k),
                });
                (t, g, k, table)
            }
        };
        if stack_table.len() >= max {
            return Err(format!("expected at most {max} stacks in a snapshot, found {}", stack_table.len()));
        }
        let io_waits = match (e.io_waits_unchanged, e.keyframe) {
            (true, true) => return Err("expected a keyframe's I/O waits whole, found \"unchanged\"".into()),
            (true, false) => self.state.as_ref().and_then(|b| b.io_waits.clone()),
            (false, _) => e.io_waits,
        };
        if let Some(io) = &io_waits
            && io.waits.len() > max
        {
            return Err(format!("expected at most {max} I/O waits, found {}", io.waits.len()));
        }
        if let Some(base) = &mut self.state {
            base.io_waits = io_waits.clone();
        }
        if !build {
            return Ok(None);
        }
        // The snapshot's table, in its original order: recording-wide id -> its id here.
        let mut table = StackTable::new();
        let mut global_to_local: HashMap<u32, StackId> = HashMap::with_capacity(stack_table.len() + 1);
        global_to_local.insert(0, StackId::EMPTY);
        for g in &stack_table {
            let frames = self
                .stacks
                .get(*g as usize)
                .ok_or_else(|| format!("expected stack {g}, found no such stack"))?;
            let local = table.intern(frames.clone());
            global_to_local.entry(*g).or_insert(local);
        }
        let local = |id: StackId| {
            global_to_local
                .get(&id.0)
                .copied()
                .ok_or_else(|| format!("expected stack {} in the snapshot's table", id.0))
        };
        let mut snapshot = Snapshot::new(e.pid, e.comm, e.taken_at);
        snapshot.schema_version = e.schema_version;
        snapshot.target_exited = e.target_exited;
        snapshot.summary = e.summary;
        snapshot.runtime = e.runtime;
        snapshot.threads = threads
            .into_iter()
            .map(|mut t| {
                flip_thread(&e.clocks, &mut t);
                t.user_stack_id = local(t.user_stack_id)?;
                t.kernel_stack_id = local(t.kernel_stack_id)?;
                Ok(t)
            })
            .collect::<Result<_, String>>()?;
        snapshot.goroutines = goroutines
            .into_iter()
            .map(|mut g| {
                flip_goroutine(&e.clocks, &mut g);
                g.stack_id = local(g.stack_id)?;
                Ok(g)
            })
            .collect::<Result<_, String>>()?;
        if e.stalls.len() > max {
            return Err(format!("expected at most {max} stalls, found {}", e.stalls.len()));
        }
        snapshot.tasks = tasks;
        snapshot.task_source = e.task_source;
        snapshot.io_waits = io_waits;
        snapshot.stalls = e
            .stalls
            .into_iter()
            .map(|mut st| {
                st.user_stack_id = local(st.user_stack_id)?;
                Ok(st)
            })
            .collect::<Result<_, String>>()?;
        snapshot.stacks = table;
        Ok(Some(snapshot))
    }
}
