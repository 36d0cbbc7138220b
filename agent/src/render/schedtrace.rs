//! schedtrace lines for any process, shaped like Go's GODEBUG=schedtrace output:
//! `SCHED 2001ms: threads=10 running=1 runnable=0 blocked=9 read=2 ... maxblocked=2.0s`.

use std::fmt::Write as _;

use super::duration::human;
use crate::model::{Snapshot, Summary};

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

/// The `--detail` block: one indented line per thread, in display order.
pub fn detail(view: &Snapshot) -> String {
    let mut out = String::new();
    for t in &view.threads {
        let _ = write!(out, "  tid={} name={} state={}", t.tid, t.name, t.state.as_str());
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
    }
}
