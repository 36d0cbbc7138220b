//! The snapshot as an aligned table for a person: blocked threads first, longest first, then
//! the stacks of the blocked threads.

use std::fmt::Write as _;

use super::duration::human;
use crate::model::{ProcessView, SyscallView};

/// User frames shown per thread in the table view (JSON has them all).
const USER_FRAMES_SHOWN: usize = 12;
/// Kernel frames shown per thread in the table view.
const KERNEL_FRAMES_SHOWN: usize = 6;

fn time_cell(c: &SyscallView) -> String {
    match (c.blocked_ns, c.blocked_at_least_ns) {
        (Some(ns), _) => human(ns),
        (None, Some(ns)) => format!(">={}", human(ns)),
        _ => "?".to_owned(),
    }
}

/// Renders the whole snapshot.
pub fn render(view: &ProcessView) -> String {
    let s = &view.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {} ({}): {} threads, {} blocked, {} running, {} runnable{}",
        view.pid,
        view.comm,
        s.threads,
        s.blocked,
        s.running,
        s.runnable,
        if s.window_ns > 0 { format!("; watched for {}", human(s.window_ns)) } else { String::new() }
    );
    let _ = writeln!(
        out,
        "blocked by class: read={} write={} poll={} futex={} sleep={} other={}{}",
        s.read,
        s.write,
        s.poll,
        s.futex,
        s.sleep,
        s.other,
        if s.dropped_events > 0 {
            format!("  (WARNING: {} kernel events dropped; times may be incomplete)", s.dropped_events)
        } else {
            String::new()
        }
    );
    if view.target_exited {
        let _ = writeln!(out, "NOTE: the target exited during the run; this is the last view taken");
    }
    out.push('\n');

    let header = ["TID", "NAME", "STATE", "SYSCALL", "FD", "ON", "BLOCKED", "WAKER"];
    let rows: Vec<[String; 8]> = view
        .threads
        .iter()
        .map(|t| {
            let c = t.syscall.as_ref();
            [
                t.tid.to_string(),
                t.name.clone(),
                t.state.as_str().to_owned(),
                c.map_or_else(|| "-".to_owned(), |c| c.name.clone()),
                c.and_then(|c| c.fd).map_or_else(|| "-".to_owned(), |fd| fd.to_string()),
                c.and_then(|c| {
                    c.fd_desc.clone().or_else(|| c.futex_addr.clone().map(|a| format!("futex {a}")))
                })
                .unwrap_or_else(|| "-".to_owned()),
                c.map_or_else(|| "-".to_owned(), time_cell),
                c.and_then(|c| c.waker_tid).map_or_else(|| "-".to_owned(), |w| w.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut push_row = |cells: &[String]| {
        let line: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    push_row(&header.map(str::to_owned));
    for r in &rows {
        push_row(r);
    }

    for t in view.threads.iter().filter(|t| !t.user_stack.is_empty() || !t.kernel_stack.is_empty()) {
        let what = t
            .syscall
            .as_ref()
            .map_or_else(|| t.state.as_str().to_owned(), |c| format!("{} for {}", c.name, time_cell(c)));
        let _ = writeln!(out, "\ntid {} ({}) in {}", t.tid, t.name, what);
        for (label, frames, max) in
            [("user", &t.user_stack, USER_FRAMES_SHOWN), ("kernel", &t.kernel_stack, KERNEL_FRAMES_SHOWN)]
        {
            for (i, f) in frames.iter().take(max).enumerate() {
                let tag = if i == 0 { label } else { "" };
                let _ = writeln!(out, "  {tag:<7} {f}");
            }
            if frames.len() > max {
                let _ = writeln!(out, "          ... {} more (see --json)", frames.len() - max);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Summary, ThreadState, ThreadView};

    fn thread(tid: u32, name: &str, state: ThreadState, syscall: Option<SyscallView>) -> ThreadView {
        ThreadView {
            tid,
            name: name.into(),
            state,
            syscall,
            wchan: None,
            user_stack: vec![],
            kernel_stack: vec![],
            completed: vec![],
            long_calls: vec![],
        }
    }

    #[test]
    fn aligned_and_marks_lower_bounds() {
        let call = SyscallView {
            nr: 0,
            name: "read".into(),
            class: "read",
            fd: Some(3),
            fd_desc: Some("pipe:[42]".into()),
            blocked_ns: None,
            blocked_at_least_ns: Some(3_000_000_000),
            waker_tid: None,
            futex_addr: None,
            args: Default::default(),
        };
        let mut threads = vec![
            thread(10, "main", ThreadState::Running, None),
            thread(11, "pipe_read", ThreadState::Sleeping, Some(call)),
        ];
        crate::model::sort_for_display(&mut threads);
        let view = ProcessView {
            pid: 10,
            comm: "demo".into(),
            summary: Summary::count(&threads),
            threads,
            goroutines: vec![],
            target_exited: false,
        };
        let text = render(&view);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("TID")).unwrap();
        // Blocked thread first, and columns line up under the header.
        assert!(lines[header + 1].starts_with("11 "));
        assert!(lines[header + 2].starts_with("10 "));
        let col = lines[header].find("BLOCKED").unwrap();
        assert_eq!(&lines[header + 1][col..col + 6], ">=3.0s");
        assert!(text.contains("pipe:[42]"));
    }
}
