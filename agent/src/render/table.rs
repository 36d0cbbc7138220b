//! The snapshot as an aligned table for a person: blocked threads first, longest first, then
//! the stacks of the blocked threads.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use super::duration::human;
use crate::model::{GoroutineView, ProcessView, RuntimeView, SyscallView};

/// Goroutine ids listed per group in the table view (JSON has them all).
const GOIDS_SHOWN: usize = 8;

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

    // Go targets get the runtime's role of each thread and the goroutine it runs.
    let go = view.runtime.is_some();
    let header = ["TID", "NAME", "STATE", "SYSCALL", "FD", "ON", "BLOCKED", "WAKER", "ROLE", "G"];
    let columns = if go { header.len() } else { header.len() - 2 };
    let rows: Vec<[String; 10]> = view
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
                t.role.map_or_else(|| "-".to_owned(), |r| r.as_str().to_owned()),
                t.goroutine.map_or_else(|| "-".to_owned(), |g| g.to_string()),
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
        let line: Vec<String> =
            cells.iter().zip(widths).take(columns).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    push_row(&header.map(str::to_owned));
    for r in &rows {
        push_row(r);
    }

    if let Some(rt) = &view.runtime {
        render_goroutines(&mut out, view, rt);
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

/// Goroutines grouped like a goroutine dump: by state and wait reason (and, for IO wait, the
/// direction; for cgo calls, the C function), largest group first, with a sample stack each.
fn render_goroutines(out: &mut String, view: &ProcessView, rt: &RuntimeView) {
    let s = &view.summary;
    let _ = writeln!(
        out,
        "\ngoroutines: {} ({} waiting) of {} {} (layout from {}), GOMAXPROCS={}; {} runtime threads idle by design",
        s.goroutines,
        s.goroutines_waiting,
        rt.version,
        rt.module.as_deref().unwrap_or("?"),
        rt.layout,
        rt.gomaxprocs,
        s.runtime_idle
    );
    if rt.goroutines_inconsistent > 0 {
        let _ = writeln!(
            out,
            "  ({} goroutines changed while read and were left out)",
            rt.goroutines_inconsistent
        );
    }
    if let Some(n) = s.go_transitions {
        let window = human(s.window_ns);
        let _ = writeln!(out, "  (Go uprobes: {n} status changes in {window}; times without >= are exact)");
    }
    let mut groups: BTreeMap<(String, String), Vec<&GoroutineView>> = BTreeMap::new();
    for g in &view.goroutines {
        let what = match (&g.wait_reason, &g.netpoll, &g.c_function, &g.syscall) {
            (Some(r), Some(np), _, _) => format!("{r} ({})", np.mode),
            (Some(r), None, _, _) => r.clone(),
            (None, _, Some(c), _) => format!("cgo call {c}"),
            (None, _, None, Some(sc)) => format!("in {}", sc.name),
            _ => String::new(),
        };
        groups.entry((g.status.to_owned(), what)).or_default().push(g);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|(k, gs)| (std::cmp::Reverse(gs.len()), k.clone()));
    for ((status, what), gs) in groups {
        // The longest time in this state: waits from the runtime's waitsince or the uprobes,
        // other states only from the uprobes; ">=" unless the uprobes saw it begin.
        let longest = gs
            .iter()
            .filter_map(|g| {
                g.waiting_ns.or(g.status_ns).map(|ns| (ns, g.status_ns_exact && g.status_ns == Some(ns)))
            })
            .max();
        let ids: Vec<String> = gs.iter().take(GOIDS_SHOWN).map(|g| g.goid.to_string()).collect();
        let more =
            if gs.len() > GOIDS_SHOWN { format!(" +{}", gs.len() - GOIDS_SHOWN) } else { String::new() };
        let _ = writeln!(
            out,
            "\n{:>6} x [{status}{}{}]{}  goroutines {}{more}",
            gs.len(),
            if what.is_empty() { "" } else { ", " },
            what,
            longest.map_or_else(String::new, |(ns, exact)| format!(
                " {} {}{}",
                if status == "waiting" { "waiting" } else { "for" },
                if exact { "" } else { ">=" },
                human(ns)
            )),
            ids.join(" ")
        );
        let first = gs[0];
        for g in gs.iter().filter(|g| g.netpoll.is_some()).take(GOIDS_SHOWN) {
            if let Some(np) = &g.netpoll {
                let _ = writeln!(
                    out,
                    "         goroutine {} fd {} {}",
                    g.goid,
                    np.fd,
                    np.fd_desc.as_deref().unwrap_or("?")
                );
            }
        }
        for g in gs.iter().filter(|g| g.tid.is_some()).take(GOIDS_SHOWN) {
            let _ = writeln!(
                out,
                "         goroutine {} on M{} tid {}",
                g.goid,
                g.m.unwrap_or(-1),
                g.tid.unwrap_or_default()
            );
        }
        for f in first.stack.iter().take(USER_FRAMES_SHOWN) {
            let _ = writeln!(out, "         {f}");
        }
        let _ = writeln!(
            out,
            "         started at {}{}",
            first.start,
            first.created_by.as_ref().map_or_else(String::new, |c| format!(", created by {c}"))
        );
    }
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
            role: None,
            goroutine: None,
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
            runtime: None,
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
