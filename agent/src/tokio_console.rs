//! Tokio tasks in a snapshot: reads the target's console-subscriber endpoint (parkscope-console)
//! while the window runs, and joins its task list with the thread view. A console that cannot
//! be read costs the task list only (`task_source.error`), never the threads.
//!
//! Which worker polls which task: the console protocol carries no thread ids, so a task's
//! `worker_tid` comes only from the thread view, from threads whose `task` (the task id a
//! worker is polling, read from tokio's thread-local context by the tokio reader) is set;
//! `join_workers` is that join point. Where the console gives no `task.id` field (tokio
//! builds without task ids) no task can be joined.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use parkscope_console::{ConsoleError, ConsoleTasks, Options};
use tokio::task::JoinHandle;

use crate::model::{Snapshot, TaskSource};

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
    if addr.is_none()
        && parkscope_console::console_thread_present(pid) == parkscope_console::ConsoleHint::Absent
    {
        return None;
    }
    let opts = Options { collect_for: window, ..Options::default() };
    Some(ConsoleRead(tokio::spawn(parkscope_console::collect(pid, addr, opts))))
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

/// Sets each task's `worker_tid` from the threads that say which task they poll now.
pub fn join_workers(view: &mut Snapshot) {
    let polling: Vec<(u64, u32)> =
        view.threads.iter().filter_map(|t| t.task.as_ref().map(|task| (task.task_id, t.tid))).collect();
    for task in &mut view.tasks {
        task.worker_tid =
            task.task_id.and_then(|id| polling.iter().find(|(polled, _)| *polled == id).map(|&(_, tid)| tid));
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

    #[test]
    fn console_addr_takes_host_and_port() {
        assert_eq!(parse_addr("127.0.0.1:6669"), Ok(parkscope_console::DEFAULT_ADDR));
        assert!(parse_addr("127.0.0.1").is_err());
    }
}
