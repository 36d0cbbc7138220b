//! Tokio tasks in a snapshot: reads the target's console-subscriber endpoint (parkscope-console)
//! while the window runs, and joins its task list with the thread view. A console that cannot
//! be read costs the task list only (`task_source.error`), never the threads.
//!
//! Which worker polls which task: the console protocol carries no thread ids, so a task's
//! `worker_tid` comes only from the thread view, from threads whose `task` (the task id a
//! worker is polling, read from tokio's thread-local context by the tokio reader) is set;
//! `join_workers` is that join point. Where the console gives no `task.id` field (tokio
//! builds without task ids) no task can be joined.
//!
//! Task names in an off-CPU profile: the same read beside `profile`'s window
//! ([`ProfileConsole`]), whose task list names the `task` labels the collector put on the
//! samples (`label_task_names`), after the collector is done and before the profile is
//! encoded. A console that cannot be read costs those names only.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use parkscope_console::{ConsoleError, ConsoleTasks, Options};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    model::{Snapshot, TaskSource, TaskView},
    profile::{LabelValue, Profile},
};

/// A console read running beside the window.
pub struct ConsoleRead(JoinHandle<Result<ConsoleTasks, ConsoleError>>);

/// `--console-addr`: HOST:PORT, resolved once.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e} (expected HOST:PORT, e.g. 127.0.0.1:6669)"))?
        .next()
        .ok_or_else(|| format!("{s}: resolves to no address"))
}

/// Starts reading the console of `pid` when it is asked for (`addr`) or when the target runs
/// console-subscriber (its aggregator thread is there); None otherwise, and then the snapshot
/// says nothing about tasks. Updates are merged for `window`, so the stats are the latest the
/// target published before the view is printed.
pub fn start(pid: u32, addr: Option<SocketAddr>, window: Duration) -> Option<ConsoleRead> {
    if !console_wanted(pid, addr) {
        return None;
    }
    let opts = Options { collect_for: window, ..Options::default() };
    Some(ConsoleRead(tokio::spawn(parkscope_console::collect(pid, addr, opts))))
}

/// Whether to read a console: one is asked for (`addr`), or the target runs
/// console-subscriber (its aggregator thread is there).
fn console_wanted(pid: u32, addr: Option<SocketAddr>) -> bool {
    addr.is_some() || parkscope_console::console_thread_present(pid) != parkscope_console::ConsoleHint::Absent
}

/// Waits for the read and puts its tasks (or why there are none) into `view`.
pub async fn finish(read: Option<ConsoleRead>, view: &mut Snapshot) {
    let Some(ConsoleRead(handle)) = read else { return };
    let result = match handle.await {
        Ok(r) => r,
        Err(e) => {
            view.task_source = Some(TaskSource {
                error: Some(format!("console reader failed: {e}")),
                ..TaskSource::default()
            });
            return;
        }
    };
    match result {
        Ok(read) => {
            view.tasks = read.tasks;
            view.task_source = Some(TaskSource {
                addr: Some(read.addr.to_string()),
                updates: read.updates,
                at_unix_ns: read.at_unix_ns,
                dropped_events: read.dropped_events,
                tasks_capped: read.tasks_capped,
                error: None,
                hint: None,
            });
            join_workers(view);
        }
        Err(e) => {
            tracing::warn!("tasks not read: {e}");
            view.task_source = Some(TaskSource {
                error: Some(e.to_string()),
                hint: Some(e.hint()),
                ..TaskSource::default()
            });
        }
    }
    view.summary.tasks = view.tasks.len();
}

/// Longest `task_name` label kept, in bytes (the target chooses its names).
pub const MAX_TASK_NAME: usize = 256;
/// After the window, how long the console read may still take to end (it is still looking for
/// the endpoint, or waiting for its first update) before the profile is written without names.
const PROFILE_CONSOLE_GRACE: Duration = Duration::from_secs(5);

/// A console read beside a profile's window, for the names of the tasks it labels.
pub struct ProfileConsole {
    read: JoinHandle<Result<ConsoleTasks, ConsoleError>>,
    /// Ends the merging of updates early (the window was cut short).
    stop: watch::Sender<bool>,
}

/// [`start`] for `profile`: the read merges updates for as long as the window lasts, so a
/// task spawned during it is named too, and stops when the window ends ([`label_profile`]).
pub fn start_for_profile(pid: u32, addr: Option<SocketAddr>, window: Duration) -> Option<ProfileConsole> {
    if !console_wanted(pid, addr) {
        return None;
    }
    // console-subscriber publishes once a second by default; a target publishing faster has
    // its later updates merged up to this bound (each is bounded by the caps).
    let per_second = 20;
    let max_updates =
        u32::try_from(window.as_secs().saturating_add(2).saturating_mul(per_second)).unwrap_or(u32::MAX);
    let opts = Options { collect_for: window, max_updates, ..Options::default() };
    let (stop, stop_rx) = watch::channel(false);
    let read = tokio::spawn(parkscope_console::collect_until(pid, addr, opts, stop_rx));
    Some(ProfileConsole { read, stop })
}

/// Ends the read and labels `profile`'s task samples with the names it gave. Returns the
/// one-line notice to print when the console could not be read (the profile then has no
/// `task_name` labels and its comments say why).
pub async fn label_profile(console: Option<ProfileConsole>, profile: &mut Profile) -> Option<String> {
    let ProfileConsole { mut read, stop } = console?;
    let _ = stop.send(true);
    let result = match tokio::time::timeout(PROFILE_CONSOLE_GRACE, &mut read).await {
        Ok(Ok(r)) => r.map_err(|e| (e.to_string(), e.hint())),
        Ok(Err(e)) => Err((format!("console reader failed: {e}"), "report this".to_owned())),
        Err(_) => {
            read.abort();
            Err((
                format!(
                    "the tokio console gave no task list within {PROFILE_CONSOLE_GRACE:?} of the window's end"
                ),
                "pass --console-addr HOST:PORT (the target's TOKIO_CONSOLE_BIND)".to_owned(),
            ))
        }
    };
    match result {
        Ok(read) => {
            let (named, samples) = label_task_names(profile, &read.tasks);
            profile.comments.push(format!(
                "task_name: the name console-subscriber at {} gives the task of a sample's task label \
                 (tokio::task::Builder::name; unnamed tasks get none): {named} tasks named on {samples} samples, \
                 from {} console updates",
                read.addr, read.updates
            ));
            None
        }
        Err((cause, hint)) => {
            tracing::debug!("task names not read: {cause}");
            profile.comments.push(format!("no task_name labels: {cause}"));
            Some(format!("task names not read ({cause}); the profile has no task_name labels. hint: {hint}"))
        }
    }
}

/// Adds a `task_name` label to every sample whose `task` label is a task the console names
/// (its `task.id` field), cut to [`MAX_TASK_NAME`] bytes with control characters replaced.
/// An id the console gives two different names is left unnamed. Returns how many distinct
/// tasks, and how many samples, got a name.
pub fn label_task_names(profile: &mut Profile, tasks: &[TaskView]) -> (usize, usize) {
    // Only the ids the profile labels are looked up, so the map is no larger than the profile.
    let mut names: HashMap<u64, Option<String>> = HashMap::new();
    for s in &profile.samples {
        if let Some(id) = task_label(&s.labels) {
            names.entry(id).or_insert(None);
        }
    }
    let mut ambiguous = Vec::new();
    for t in tasks {
        let (Some(id), Some(name)) = (t.task_id, t.name.as_deref()) else { continue };
        let Some(slot) = names.get_mut(&id) else { continue };
        if name.is_empty() {
            continue;
        }
        let name = label_text(name);
        match slot {
            Some(known) if *known != name => ambiguous.push(id),
            _ => *slot = Some(name),
        }
    }
    for id in ambiguous {
        names.insert(id, None);
    }
    let mut samples = 0;
    let mut named = std::collections::HashSet::new();
    for s in &mut profile.samples {
        let Some(id) = task_label(&s.labels) else { continue };
        let Some(Some(name)) = names.get(&id) else { continue };
        s.labels.retain(|(k, _)| k != "task_name");
        s.labels.push(("task_name".to_owned(), LabelValue::Str(name.clone())));
        samples += 1;
        named.insert(id);
    }
    (named.len(), samples)
}

/// The sample's `task` label (a tokio task id).
fn task_label(labels: &[(String, LabelValue)]) -> Option<u64> {
    labels.iter().find_map(|(k, v)| match v {
        LabelValue::Num(n) if k == "task" => u64::try_from(*n).ok(),
        _ => None,
    })
}

/// A name from the target as a label: at most [`MAX_TASK_NAME`] bytes (cut at a character
/// boundary), control characters (which would reach a terminal through `pprof -tags`) as U+FFFD.
fn label_text(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_TASK_NAME));
    for c in name.chars() {
        let c = if c.is_control() { char::REPLACEMENT_CHARACTER } else { c };
        if out.len() + c.len_utf8() > MAX_TASK_NAME {
            break;
        }
        out.push(c);
    }
    out
}

/// Sets each task's `worker_tid` from the threads that say which task they poll now.
pub fn join_workers(view: &mut Snapshot) {
    let polling: Vec<(u64, u32)> =
        view.threads.iter().filter_map(|t| t.task.as_ref().map(|task| (task.task_id, t.tid))).collect();
    let waits = view.io_waits.as_ref().map_or(&[][..], |w| &w.waits[..]);
    for task in &mut view.tasks {
        task.worker_tid =
            task.task_id.and_then(|id| polling.iter().find(|(polled, _)| *polled == id).map(|&(_, tid)| tid));
        // The fd a task is parked on, when it waits on exactly one (snapshot.io_waits lists
        // every wait of a task that waits on several).
        let mut on = waits.iter().filter(|w| w.task_id.is_some() && w.task_id == task.task_id);
        if let (Some(w), None) = (on.next(), on.next()) {
            task.io_fd = Some(w.fd);
            task.io_fd_desc = w.fd_desc.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StackId, TaskOnThread, TaskState, TaskView, ThreadState, ThreadView, Timestamp};

    fn task(task_id: Option<u64>) -> TaskView {
        TaskView {
            task_id,
            console_id: Some(1),
            name: None,
            kind: Some("task".into()),
            spawn_location: None,
            state: TaskState::Running,
            polls: 1,
            busy_ns: 0,
            scheduled_ns: 0,
            idle_ns: 0,
            wakes: 0,
            waker_clones: 0,
            waker_drops: 0,
            self_wakes: 0,
            warnings: vec![],
            worker_tid: None,
            io_fd: None,
            io_fd_desc: None,
        }
    }

    #[test]
    fn a_task_gets_the_worker_that_says_it_polls_it() {
        let mut view = Snapshot::new(1, "app".into(), Timestamp::default());
        for (tid, polling) in [(10, Some(7)), (11, None), (12, Some(8))] {
            view.threads.push(ThreadView {
                tid,
                name: "tokio-rt-worker".into(),
                state: ThreadState::Running,
                syscall: None,
                wchan: None,
                user_stack_id: StackId::EMPTY,
                kernel_stack_id: StackId::EMPTY,
                completed: vec![],
                long_calls: vec![],
                role: None,
                goroutine: None,
                task: polling.map(|task_id| TaskOnThread { task_id, poll_ns: None, poll_ns_exact: false }),
            });
        }
        view.tasks = vec![task(Some(8)), task(Some(9)), task(None)];
        join_workers(&mut view);
        let tids: Vec<Option<u32>> = view.tasks.iter().map(|t| t.worker_tid).collect();
        assert_eq!(tids, [Some(12), None, None]);
    }

    fn named(task_id: u64, name: &str) -> TaskView {
        TaskView { name: Some(name.to_owned()), ..task(Some(task_id)) }
    }

    fn profile_with_tasks(tasks: &[Option<i64>]) -> Profile {
        use crate::profile::{FoldedValue, ProfileKind, Sample, ValueType};
        Profile {
            kind: ProfileKind::OffCpu,
            pid: 1,
            comm: "app".into(),
            sample_types: vec![ValueType::new("offcpu", "nanoseconds")],
            default_sample_type: None,
            folded_value: FoldedValue { index: 0, also: None, divisor: 1, unit: "ns".into() },
            period_type: ValueType::new("offcpu", "nanoseconds"),
            period: 1,
            time_nanos: 0,
            duration_nanos: 1,
            frames: vec![],
            samples: tasks
                .iter()
                .map(|t| Sample {
                    frames: vec![],
                    labels: std::iter::once(("tid".to_owned(), LabelValue::Num(3)))
                        .chain(t.map(|id| ("task".to_owned(), LabelValue::Num(id))))
                        .collect(),
                    values: vec![1],
                })
                .collect(),
            mappings: vec![],
            kernel_build_id: None,
            comments: vec![],
        }
    }

    fn task_names(p: &Profile) -> Vec<Option<&str>> {
        p.samples.iter().map(|s| s.label_str("task_name")).collect()
    }

    #[test]
    fn samples_get_the_name_of_their_task_only() {
        let mut p = profile_with_tasks(&[Some(5), Some(6), None, Some(7), Some(5), Some(8)]);
        // 6 is unnamed, 7 has two names (not trusted), 8 is unknown to the console; a task
        // the profile does not label (9) names nothing.
        let tasks =
            [named(5, "burn"), named(6, ""), named(7, "a"), named(7, "b"), named(9, "other"), task(None)];
        assert_eq!(label_task_names(&mut p, &tasks), (1, 2));
        assert_eq!(task_names(&p), [Some("burn"), None, None, None, Some("burn"), None]);
        // Labelled again (a second read), still one task_name per sample.
        label_task_names(&mut p, &tasks);
        assert_eq!(p.samples[0].labels.iter().filter(|(k, _)| k == "task_name").count(), 1);
    }

    #[test]
    fn names_from_the_target_are_bounded_and_printable() {
        let mut p = profile_with_tasks(&[Some(1), Some(2)]);
        let long = "é".repeat(MAX_TASK_NAME);
        label_task_names(&mut p, &[named(1, &long), named(2, "a\x1b[2Jb\n")]);
        let cut = p.samples[0].label_str("task_name").expect("named");
        assert!(cut.len() <= MAX_TASK_NAME && cut.len() > MAX_TASK_NAME - 2, "{}", cut.len());
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(p.samples[1].label_str("task_name"), Some("a\u{fffd}[2Jb\u{fffd}"));
    }

    #[test]
    fn console_addr_takes_host_and_port() {
        assert_eq!(parse_addr("127.0.0.1:6669"), Ok(parkscope_console::DEFAULT_ADDR));
        assert!(parse_addr("127.0.0.1").is_err());
    }
}
