//! The task list as the console protocol builds it: the first `Update` of `WatchUpdates` is
//! the whole state, each later one adds new tasks and replaces the stats of tasks that changed
//! (the same merge tokio-console does). Everything here comes from the target and is bounded.

use std::collections::{BTreeMap, HashMap};

use console_api::{self as common, field, tasks};
use parkscope_model::TaskView;

use crate::warnings::{self, LintInput, TaskStats};

/// Caps on what one target can make us hold.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_tasks: usize,
    pub max_metadata: usize,
    /// Fields read per task and field names per metadata record.
    pub max_fields: usize,
    /// Longest string kept (names, kinds, locations); longer ones are cut.
    pub max_string: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { max_tasks: 100_000, max_metadata: 100_000, max_fields: 64, max_string: 512 }
    }
}

/// Longest field name kept (the ones read are short: `task.name`, `original_size.bytes`).
const MAX_FIELD_NAME: usize = 64;

/// One task as merged so far.
#[derive(Debug, Clone)]
struct Task {
    task_id: Option<u64>,
    name: Option<String>,
    kind: String,
    location: Option<String>,
    size_bytes: Option<u64>,
    original_size_bytes: Option<u64>,
    stats: TaskStats,
}

/// The merged state of one `WatchUpdates` stream.
#[derive(Debug, Default)]
pub struct TaskState {
    caps: Caps,
    /// metadata id -> its field names (fields may name themselves by index into these).
    field_names: HashMap<u64, Vec<String>>,
    /// console span id -> task.
    tasks: BTreeMap<u64, Task>,
    /// The `now` of the last update, ns since the Unix epoch.
    pub now: Option<u64>,
    pub updates: u32,
    pub dropped_events: u64,
    pub tasks_capped: u64,
}

impl TaskState {
    pub fn new(caps: Caps) -> TaskState {
        TaskState { caps, ..TaskState::default() }
    }

    /// Merges one update.
    pub fn merge(&mut self, update: console_api::instrument::Update) {
        self.updates = self.updates.saturating_add(1);
        if let Some(now) = update.now.as_ref().and_then(timestamp_ns) {
            self.now = Some(now);
        }
        for new in update.new_metadata.map(|m| m.metadata).unwrap_or_default() {
            let (Some(id), Some(meta)) = (new.id, new.metadata) else { continue };
            if self.field_names.len() >= self.caps.max_metadata && !self.field_names.contains_key(&id.id) {
                continue;
            }
            // Names are matched, not shown: one too long to be any we look for is kept empty
            // (cutting it could make it match), so the indices of the others stay right.
            let names = meta
                .field_names
                .into_iter()
                .take(self.caps.max_fields)
                .map(|n| if n.len() > MAX_FIELD_NAME { String::new() } else { n })
                .collect();
            self.field_names.insert(id.id, names);
        }
        let Some(task_update) = update.task_update else { return };
        self.dropped_events = self.dropped_events.saturating_add(task_update.dropped_events);
        let mut stats_update = task_update.stats_update;
        for task in task_update.new_tasks {
            let Some(span_id) = task.id.as_ref().map(|id| id.id) else { continue };
            // As in tokio-console: a new task comes with its stats in the same update.
            let Some(stats) = stats_update.remove(&span_id).and_then(|s| stats_of(&s)) else { continue };
            if self.tasks.len() >= self.caps.max_tasks && !self.tasks.contains_key(&span_id) {
                self.tasks_capped = self.tasks_capped.saturating_add(1);
                continue;
            }
            let parsed = self.parse_task(task, stats);
            self.tasks.insert(span_id, parsed);
        }
        for (span_id, stats) in stats_update {
            if let (Some(task), Some(stats)) = (self.tasks.get_mut(&span_id), stats_of(&stats)) {
                task.stats = stats;
            }
        }
    }

    fn cut(&self, mut s: String) -> String {
        if s.len() > self.caps.max_string {
            let mut end = self.caps.max_string;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    }

    fn parse_task(&self, task: tasks::Task, stats: TaskStats) -> Task {
        let meta_id = task.metadata.as_ref().map(|m| m.id);
        let mut parsed = Task {
            task_id: None,
            name: None,
            kind: match tasks::task::Kind::try_from(task.kind) {
                Ok(tasks::task::Kind::Blocking) => "blocking".to_owned(),
                _ => "task".to_owned(),
            },
            location: task.location.as_ref().and_then(location),
            size_bytes: None,
            original_size_bytes: None,
            stats,
        };
        for f in task.fields.into_iter().take(self.caps.max_fields) {
            let name = match &f.name {
                Some(field::Name::StrName(n)) => n.as_str(),
                Some(field::Name::NameIdx(idx)) => {
                    // An index names a field of the task's own metadata only.
                    let field_meta = f.metadata_id.as_ref().map(|m| m.id);
                    if field_meta.is_none() || field_meta != meta_id {
                        continue;
                    }
                    let names = field_meta.and_then(|m| self.field_names.get(&m));
                    match names.and_then(|n| usize::try_from(*idx).ok().and_then(|i| n.get(i))) {
                        Some(n) => n.as_str(),
                        None => continue,
                    }
                }
                None => continue,
            };
            match (name, &f.value) {
                ("task.id", Some(field::Value::U64Val(v))) => parsed.task_id = Some(*v),
                ("task.name", Some(v)) => parsed.name = Some(self.cut(value_text(v))),
                ("kind", Some(v)) => parsed.kind = self.cut(value_text(v)),
                ("spawn.location", Some(v)) if parsed.location.is_none() => {
                    parsed.location = Some(self.cut(value_text(v)));
                }
                ("size.bytes", Some(field::Value::U64Val(v))) => parsed.size_bytes = Some(*v),
                ("original_size.bytes", Some(field::Value::U64Val(v))) => {
                    parsed.original_size_bytes = Some(*v);
                }
                _ => {}
            }
        }
        if let Some(loc) = parsed.location.take() {
            parsed.location = Some(self.cut(loc));
        }
        parsed
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks at the last update's `now`, with tokio-console's warnings; no worker, no fd
    /// (the console protocol carries neither).
    pub fn views(&self) -> Vec<TaskView> {
        let now = self.now.unwrap_or(0);
        self.tasks
            .iter()
            .map(|(&span_id, t)| {
                let s = &t.stats;
                TaskView {
                    task_id: t.task_id,
                    console_id: Some(span_id),
                    name: t.name.clone(),
                    kind: Some(t.kind.clone()),
                    spawn_location: t.location.clone(),
                    state: s.state(),
                    polls: s.polls,
                    busy_ns: s.busy_at(now),
                    scheduled_ns: s.scheduled_at(now),
                    idle_ns: s.idle_at(now),
                    wakes: s.wakes,
                    waker_clones: s.waker_clones,
                    waker_drops: s.waker_drops,
                    self_wakes: s.self_wakes,
                    warnings: warnings::warnings(
                        LintInput {
                            stats: s,
                            kind: &t.kind,
                            size_bytes: t.size_bytes,
                            original_size_bytes: t.original_size_bytes,
                        },
                        now,
                    ),
                    worker_tid: None,
                    io_fd: None,
                    io_fd_desc: None,
                }
            })
            .collect()
    }
}

fn value_text(v: &field::Value) -> String {
    match v {
        field::Value::DebugVal(s) | field::Value::StrVal(s) => s.clone(),
        field::Value::U64Val(n) => n.to_string(),
        field::Value::I64Val(n) => n.to_string(),
        field::Value::BoolVal(b) => b.to_string(),
    }
}

/// `file:line:col`, as the console shows a spawn location.
fn location(l: &common::Location) -> Option<String> {
    let mut out = l.file.clone().or_else(|| l.module_path.clone())?;
    if let Some(line) = l.line {
        out.push_str(&format!(":{line}"));
        if let Some(col) = l.column {
            out.push_str(&format!(":{col}"));
        }
    }
    Some(out)
}

/// A protobuf timestamp as ns since the Unix epoch; None for one before it or out of range.
pub fn timestamp_ns(t: &prost_types::Timestamp) -> Option<u64> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u64::try_from(t.nanos).ok().filter(|&n| n < 1_000_000_000)?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn duration_ns(d: &prost_types::Duration) -> u64 {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u64::try_from(d.nanos).unwrap_or(0).min(999_999_999);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The stats the warnings and times need; None without `created_at` (tokio-console refuses
/// such a task too).
fn stats_of(s: &tasks::Stats) -> Option<TaskStats> {
    let poll = s.poll_stats.as_ref();
    Some(TaskStats {
        created_at: timestamp_ns(s.created_at.as_ref()?)?,
        dropped_at: s.dropped_at.as_ref().and_then(timestamp_ns),
        last_wake: s.last_wake.as_ref().and_then(timestamp_ns),
        last_poll_started: poll.and_then(|p| p.last_poll_started.as_ref()).and_then(timestamp_ns),
        last_poll_ended: poll.and_then(|p| p.last_poll_ended.as_ref()).and_then(timestamp_ns),
        polls: poll.map_or(0, |p| p.polls),
        busy_ns: poll.and_then(|p| p.busy_time.as_ref()).map_or(0, duration_ns),
        scheduled_ns: s.scheduled_time.as_ref().map_or(0, duration_ns),
        wakes: s.wakes,
        waker_clones: s.waker_clones,
        waker_drops: s.waker_drops,
        self_wakes: s.self_wakes,
    })
}

#[cfg(test)]
mod tests {
    use console_api::instrument::Update;
    use console_api::register_metadata::NewMetadata;
    use console_api::{Field, Id, MetaId, Metadata, PollStats, RegisterMetadata};
    use parkscope_model::TaskState as State;
    use prost_types::Timestamp;

    use super::*;

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds: secs, nanos: 0 })
    }

    fn stats(polls: u64, started: i64, ended: Option<i64>) -> tasks::Stats {
        tasks::Stats {
            created_at: at(100),
            waker_clones: 1,
            poll_stats: Some(PollStats {
                polls,
                last_poll_started: at(started),
                last_poll_ended: ended.and_then(at),
                busy_time: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
                ..PollStats::default()
            }),
            ..tasks::Stats::default()
        }
    }

    fn field(name: field::Name, value: field::Value, meta: u64) -> Field {
        Field { name: Some(name), value: Some(value), metadata_id: Some(MetaId { id: meta }) }
    }

    fn update(now: i64, new: Vec<tasks::Task>, stats: Vec<(u64, tasks::Stats)>) -> Update {
        Update {
            now: at(now),
            task_update: Some(tasks::TaskUpdate {
                new_tasks: new,
                stats_update: stats.into_iter().collect(),
                dropped_events: 1,
            }),
            new_metadata: Some(RegisterMetadata {
                metadata: vec![NewMetadata {
                    id: Some(MetaId { id: 7 }),
                    metadata: Some(Metadata {
                        field_names: vec!["kind".into(), "task.name".into()],
                        ..Metadata::default()
                    }),
                }],
            }),
            ..Update::default()
        }
    }

    fn task(id: u64) -> tasks::Task {
        tasks::Task {
            id: Some(Id { id }),
            metadata: Some(MetaId { id: 7 }),
            fields: vec![
                field(field::Name::StrName("task.id".into()), field::Value::U64Val(id + 100), 7),
                // A name given by index into the task's metadata's field names.
                field(field::Name::NameIdx(1), field::Value::StrVal(format!("t{id}")), 7),
                // An index into another metadata record is refused, not guessed.
                field(field::Name::NameIdx(0), field::Value::StrVal("bogus".into()), 8),
                field(field::Name::StrName("kind".into()), field::Value::StrVal("task".into()), 7),
            ],
            location: Some(common::Location {
                file: Some("src/main.rs".into()),
                line: Some(3),
                column: Some(9),
                ..common::Location::default()
            }),
            ..tasks::Task::default()
        }
    }

    #[test]
    fn merges_the_full_state_then_changed_stats() {
        let mut st = TaskState::new(Caps::default());
        // Task 2 comes without stats: dropped, as tokio-console drops it.
        st.merge(update(110, vec![task(1), task(2)], vec![(1, stats(1, 105, None))]));
        assert_eq!(st.len(), 1);
        let v = &st.views()[0];
        assert_eq!((v.task_id, v.console_id, v.name.as_deref()), (Some(101), Some(1), Some("t1")));
        assert_eq!(v.kind.as_deref(), Some("task"));
        assert_eq!(v.spawn_location.as_deref(), Some("src/main.rs:3:9"));
        assert_eq!(v.state, State::Running);
        // 2 s of finished polls plus the 5 s of the one running at `now`.
        assert_eq!(v.busy_ns, 7_000_000_000);
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].starts_with("never-yielded"));
        // A later update: stats of a known task replaced, of an unknown one ignored.
        st.merge(update(111, vec![], vec![(1, stats(2, 105, Some(106))), (9, stats(1, 1, None))]));
        let v = &st.views()[0];
        assert_eq!((v.polls, v.state, v.busy_ns), (2, State::Idle, 2_000_000_000));
        assert_eq!((st.updates, st.dropped_events, st.now), (2, 2, Some(111_000_000_000)));
    }

    #[test]
    fn hostile_input_is_capped_and_refused() {
        let caps = Caps { max_tasks: 2, max_string: 4, ..Caps::default() };
        let mut st = TaskState::new(caps);
        let mut bad_time = stats(1, 105, None);
        bad_time.created_at = Some(Timestamp { seconds: -5, nanos: 0 });
        let mut huge = stats(1, 105, Some(106));
        huge.wakes = u64::MAX;
        huge.self_wakes = u64::MAX;
        let tasks = vec![task(1), task(2), task(3), task(4)];
        st.merge(update(
            110,
            tasks,
            vec![(1, stats(1, 105, None)), (2, huge), (3, stats(1, 105, None)), (4, bad_time)],
        ));
        // Task 4's created_at is before the epoch: refused. Task 3 is over the cap.
        assert_eq!(st.len(), 2);
        assert_eq!(st.tasks_capped, 1);
        let views = st.views();
        assert!(views.iter().all(|v| v.name.as_ref().is_some_and(|n| n.len() <= 4)));
        assert!(views[1].warnings.iter().any(|w| w.starts_with("self-wakes: 100%")));
    }
}
