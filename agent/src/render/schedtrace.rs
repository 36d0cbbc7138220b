//! schedtrace lines for any process, shaped like Go's GODEBUG=schedtrace output:
//! `SCHED 2001ms: threads=10 running=1 runnable=0 blocked=9 read=2 ... maxblocked=2.0s`.

use std::fmt::Write as _;

use super::duration::human;
use crate::model::{RuntimeKind, Snapshot, Summary, ThreadRole};

/// The one-line summary at `elapsed_ms` since the trace began.
pub fn line(elapsed_ms: u64, s: &Summary) -> String {
    let max = s.max_blocked_ns.map_or_else(|| "0s".to_owned(), human);
    format!(
        "SCHED {elapsed_ms}ms: threads={} running={} runnable={} blocked={} read={} write={} poll={} futex={} sleep={} other={} maxblocked={max}",
        s.threads, s.running, s.runnable, s.blocked, s.read, s.write, s.poll, s.futex, s.sleep, s.other
    )
}

/// For a tokio target, what follows the line: ` workers=N blocking=M stalled=K` (threads by
/// role, and workers inside one poll for at least `--stall`); empty for other targets.
pub fn tokio_counts(view: &Snapshot) -> String {
    if !view.runtime.as_ref().is_some_and(|rt| rt.kind == RuntimeKind::Tokio) {
        return String::new();
    }
    let count = |role| view.threads.iter().filter(|t| t.role == Some(role)).count();
    format!(
        " workers={} blocking={} stalled={}",
        count(ThreadRole::TokioWorker),
        count(ThreadRole::TokioBlocking),
        view.stalls.len()
    )
}

/// The `--detail` block: one indented line per thread, in display order.
pub fn detail(view: &Snapshot) -> String {
    let mut out = String::new();
    for t in &view.threads {
        let _ = write!(out, "  tid={} name={} state={}", t.tid, t.name, t.state.as_str());
        if let Some(role) = t.role {
            let _ = write!(out, " role={}", role.as_str());
        }
        if let Some(task) = &t.task {
            let _ = write!(out, " task={}", task.task_id);
        }
        if let Some(c) = &t.syscall {
            let _ = write!(out, " syscall={}", c.name);
            if let Some(fd) = c.fd {
                let _ = write!(out, " fd={fd}");
                if let Some(d) = &c.fd_desc {
                    let _ = write!(out, " ({d})");
                }
            }
            match (c.blocked_ns, c.blocked_at_least_ns) {
                (Some(ns), _) => {
                    let _ = write!(out, " time={}", human(ns));
                }
                (None, Some(ns)) => {
                    let _ = write!(out, " time>={}", human(ns));
                }
                _ => {}
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_shape() {
        let s = Summary {
            threads: 10,
            running: 1,
            runnable: 0,
            blocked: 9,
            read: 2,
            write: 1,
            poll: 1,
            futex: 3,
            sleep: 1,
            other: 1,
            max_blocked_ns: Some(2_000_000_000),
            ..Summary::default()
        };
        assert_eq!(
            line(2001, &s),
            "SCHED 2001ms: threads=10 running=1 runnable=0 blocked=9 read=2 write=1 poll=1 futex=3 sleep=1 other=1 maxblocked=2.0s"
        );
        assert!(line(0, &Summary::default()).ends_with("maxblocked=0s"));
    }
}
