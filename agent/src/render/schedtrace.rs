//! schedtrace lines for any process, shaped like Go's GODEBUG=schedtrace output:
//! `SCHED 2001ms: threads=10 running=1 runnable=0 blocked=9 read=2 ... maxblocked=2.0s`.

use std::fmt::Write as _;

use parkscope_collector::runtime::{SchedTrace, SchedValue};
use parkscope_model::duration::human;

use crate::model::{RuntimeKind, Snapshot, Summary, ThreadRole};

/// The one-line summary at `elapsed_ms` since the trace began.
pub fn line(elapsed_ms: u64, s: &Summary) -> String {
    let max = s.max_blocked_ns.map_or_else(|| "0s".to_owned(), human);
    format!(
        "SCHED {elapsed_ms}ms: threads={} running={} runnable={} blocked={} read={} write={} poll={} futex={} sleep={} other={} maxblocked={max}",
        s.threads, s.running, s.runnable, s.blocked, s.read, s.write, s.poll, s.futex, s.sleep, s.other
    )
}

/// The `--json` line at `elapsed_ms`: the SCHED line's numbers and the rest of the summary, as
/// one JSON object (`max_blocked_ns` in ns where the text has `maxblocked`), newline-terminated.
pub fn json_line(elapsed_ms: u64, pid: u32, s: &Summary) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        elapsed_ms: u64,
        pid: u32,
        #[serde(flatten)]
        summary: &'a Summary,
    }
    let mut line = serde_json::to_string(&Line { elapsed_ms, pid, summary: s })?;
    line.push('\n');
    Ok(line)
}

/// The `--json` line of a runtime's own schedtrace (Go's numbers, named as its text names them),
/// newline-terminated.
pub fn runtime_json_line(pid: u32, trace: &SchedTrace) -> serde_json::Result<String> {
    struct Line<'a>(u32, &'a SchedTrace);
    impl serde::Serialize for Line<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap as _;
            let Line(pid, trace) = self;
            let mut m = s.serialize_map(Some(3 + trace.counts.len()))?;
            m.serialize_entry("elapsed_ms", &trace.elapsed_ms)?;
            m.serialize_entry("pid", pid)?;
            m.serialize_entry("runtime", trace.runtime)?;
            for (name, value) in &trace.counts {
                match value {
                    SchedValue::Count(n) => m.serialize_entry(name, n)?,
                    SchedValue::PerQueue(list) => m.serialize_entry(name, list)?,
                }
            }
            m.end()
        }
    }
    let mut line = serde_json::to_string(&Line(pid, trace))?;
    line.push('\n');
    Ok(line)
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
        let json = json_line(2001, 42, &s).expect("encodes");
        assert!(json.ends_with('\n') && !json.trim_end().contains('\n'), "one line: {json:?}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("parses");
        assert_eq!(v["elapsed_ms"], 2001);
        assert_eq!(v["pid"], 42);
        for (key, want) in [("threads", 10), ("blocked", 9), ("read", 2), ("futex", 3), ("other", 1)] {
            assert_eq!(v[key], want, "{key} in {json}");
        }
        assert_eq!(v["max_blocked_ns"], 2_000_000_000u64);

        let trace = SchedTrace {
            runtime: "go",
            elapsed_ms: 1003,
            text: String::new(),
            counts: vec![
                ("gomaxprocs", SchedValue::Count(4)),
                ("runqsizes", SchedValue::PerQueue(vec![0, 2])),
            ],
        };
        let json = runtime_json_line(7, &trace).expect("encodes");
        assert_eq!(
            json,
            "{\"elapsed_ms\":1003,\"pid\":7,\"runtime\":\"go\",\"gomaxprocs\":4,\"runqsizes\":[0,2]}\n"
        );
    }
}
