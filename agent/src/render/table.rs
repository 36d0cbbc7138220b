//! The snapshot as an aligned table for a person: blocked threads first, longest first, then
//! the stacks of the blocked threads.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use crate::model::{
    GoroutineView, RuntimeKind, RuntimeView, Snapshot, StackId, StackTable, StallActivity, SyscallView,
    ThreadRole,
};
use parkscope_model::duration::human;

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
pub fn render(view: &Snapshot) -> String {
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

    // Go targets get the runtime's role of each thread and the goroutine it runs; tokio targets
    // the role and the task a worker polls (with how long the poll has lasted).
    let tokio = view.runtime.as_ref().is_some_and(|rt| rt.kind == RuntimeKind::Tokio);
    let go = !tokio && view.runtime.as_ref().is_some_and(RuntimeView::is_read);
    let mut header = ["TID", "NAME", "STATE", "SYSCALL", "FD", "ON", "BLOCKED", "WAKER", "ROLE", "G"];
    if tokio {
        header[9] = "TASK";
    }
    let columns = if go || tokio { header.len() } else { header.len() - 2 };
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
                match (&t.task, t.goroutine) {
                    (Some(task), _) => match task.poll_ns {
                        Some(ns) => format!("{} (poll >={})", task.task_id, human(ns)),
                        None => task.task_id.to_string(),
                    },
                    (None, Some(g)) => g.to_string(),
                    (None, None) => "-".to_owned(),
                },
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

    match &view.runtime {
        Some(rt) if rt.kind == RuntimeKind::Tokio => render_tokio(&mut out, view, rt),
        Some(rt) => render_goroutines(&mut out, view, rt),
        None => {}
    }
    render_tasks(&mut out, view);

    for t in view.threads.iter().filter(|t| !t.user_stack_id.is_empty() || !t.kernel_stack_id.is_empty()) {
        let what = t
            .syscall
            .as_ref()
            .map_or_else(|| t.state.as_str().to_owned(), |c| format!("{} for {}", c.name, time_cell(c)));
        let _ = writeln!(out, "\ntid {} ({}) in {}", t.tid, t.name, what);
        for (label, frames, max) in
            [("user", t.user_stack_id, USER_FRAMES_SHOWN), ("kernel", t.kernel_stack_id, KERNEL_FRAMES_SHOWN)]
        {
            let frames = view.stacks.get(frames);
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

/// tokio: the runtime's threads by role, and each stall (a worker held inside one poll).
fn render_tokio(out: &mut String, view: &Snapshot, rt: &RuntimeView) {
    let count = |role| view.threads.iter().filter(|t| t.role == Some(role)).count();
    let _ = writeln!(
        out,
        "\n{}: {} workers, {} blocking-pool threads; {} stalled",
        rt.version,
        count(ThreadRole::TokioWorker),
        count(ThreadRole::TokioBlocking),
        view.stalls.len()
    );
    if let Some(err) = &rt.error {
        let _ = writeln!(out, "  tasks not read: {err}; the threads above are complete");
    }
    if let Some(ns) = view.summary.io_driver_starved_ns {
        let _ = writeln!(
            out,
            "  I/O DRIVER STARVED for >={}: every worker is inside a task's poll, none polls the driver",
            human(ns)
        );
    }
    for st in &view.stalls {
        let what = match &st.activity {
            StallActivity::Syscall { name, fd: Some(fd), fd_desc } => {
                format!(
                    "in {name} fd {fd}{}",
                    fd_desc.as_ref().map_or_else(String::new, |d| format!(" ({d})"))
                )
            }
            StallActivity::Syscall { name, .. } => format!("in {name}"),
            StallActivity::OnCpu => "on CPU".to_owned(),
        };
        let task = st.task_id.map_or_else(|| "?".to_owned(), |t| t.to_string());
        let mark = if st.exact { "" } else { ">=" };
        let _ =
            writeln!(out, "  STALL tid {} task {task} for {mark}{} {what}", st.tid, human(st.duration_ns));
    }
    render_io_waits(out, view);
}

/// fd lines listed under "parked on I/O" (JSON has every wait).
const IO_FDS_SHOWN: usize = 40;
/// Task ids listed on one fd line.
const IO_TASKS_SHOWN: usize = 8;

/// tokio: the tasks parked on sockets and pipes, one line per fd and interest with the
/// waiters on it (they wait on the same thing), or why they could not be read.
fn render_io_waits(out: &mut String, view: &Snapshot) {
    use crate::model::IoWaiterKind;
    let Some(io) = &view.io_waits else { return };
    if let Some(err) = &io.error {
        let _ = writeln!(out, "  parked on I/O: not read: {err}");
        return;
    }
    let tasks = io.waits.iter().filter(|w| w.waiter == IoWaiterKind::Task).count();
    let mut groups: Vec<(i32, Option<crate::model::IoInterest>, Vec<&crate::model::IoWaitView>)> = Vec::new();
    for w in &io.waits {
        match groups.iter_mut().find(|(fd, i, _)| *fd == w.fd && *i == w.interest) {
            Some((_, _, members)) => members.push(w),
            None => groups.push((w.fd, w.interest, vec![w])),
        }
    }
    let mut notes = Vec::new();
    if io.unrecognized > 0 {
        notes.push(format!("{} unrecognized", io.unrecognized));
    }
    if io.capped > 0 {
        notes.push(format!("{} left out by the cap", io.capped));
    }
    let _ = writeln!(
        out,
        "  parked on I/O: {tasks} tasks, {} waiters on {} fds ({} registrations read{}{})",
        io.waits.len(),
        {
            let mut fds: Vec<i32> = io.waits.iter().map(|w| w.fd).collect();
            fds.dedup();
            fds.len()
        },
        io.registrations,
        if notes.is_empty() { "" } else { "; " },
        notes.join(", ")
    );
    for (fd, interest, members) in groups.iter().take(IO_FDS_SHOWN) {
        let mut who: Vec<String> = Vec::new();
        let ids: Vec<String> = members.iter().filter_map(|w| w.task_id).map(|id| id.to_string()).collect();
        if !ids.is_empty() {
            let shown = ids.len().min(IO_TASKS_SHOWN);
            let more =
                if ids.len() > shown { format!(" +{} more", ids.len() - shown) } else { String::new() };
            who.push(format!(
                "{} {}{more}",
                if ids.len() == 1 { "task" } else { "tasks" },
                ids[..shown].join(",")
            ));
        }
        for kind in [IoWaiterKind::BlockOn, IoWaiterKind::Other] {
            let n = members.iter().filter(|w| w.waiter == kind).count();
            if n > 0 {
                who.push(if n == 1 { kind.as_str().to_owned() } else { format!("{n} {}", kind.as_str()) });
            }
        }
        let _ = writeln!(
            out,
            "    fd {fd} {}: {} ({})",
            interest.map_or("ready", |i| i.as_str()),
            who.join(", "),
            members[0].fd_desc.as_deref().unwrap_or("?")
        );
    }
    if groups.len() > IO_FDS_SHOWN {
        let _ = writeln!(out, "    ... {} more fds (see --json)", groups.len() - IO_FDS_SHOWN);
    }
}

/// Tasks listed in the table view (JSON has them all): those with warnings first, then running,
/// scheduled, idle and completed ones.
const TASKS_SHOWN: usize = 40;

/// tokio tasks from the target's console, one line each, or why there are none.
fn render_tasks(out: &mut String, view: &Snapshot) {
    let Some(src) = &view.task_source else { return };
    if let Some(err) = &src.error {
        let _ = writeln!(out, "\ntasks: not read: {err}; the threads above are complete");
        if let Some(hint) = &src.hint {
            let _ = writeln!(out, "  hint: {hint}");
        }
        return;
    }
    let warned = view.tasks.iter().filter(|t| !t.warnings.is_empty()).count();
    let _ = writeln!(
        out,
        "\ntasks: {} from tokio console {} ({} updates; {warned} with warnings){}",
        view.tasks.len(),
        src.addr.as_deref().unwrap_or("?"),
        src.updates,
        if src.tasks_capped > 0 {
            format!(" ({} more left out by the cap)", src.tasks_capped)
        } else {
            String::new()
        }
    );
    let mut order: Vec<&crate::model::TaskView> = view.tasks.iter().collect();
    order.sort_by_key(|t| (t.warnings.is_empty(), t.state as u8, std::cmp::Reverse(t.busy_ns)));
    let header =
        ["ID", "TASK", "NAME", "KIND", "STATE", "POLLS", "BUSY", "SCHED", "IDLE", "WORKER", "LOCATION"];
    let rows: Vec<[String; 11]> = order
        .iter()
        .take(TASKS_SHOWN)
        .map(|t| {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            [
                opt(t.console_id.map(|i| i.to_string())),
                opt(t.task_id.map(|i| i.to_string())),
                opt(t.name.clone()),
                opt(t.kind.clone()),
                t.state.as_str().to_owned(),
                t.polls.to_string(),
                human(t.busy_ns),
                human(t.scheduled_ns),
                human(t.idle_ns),
                opt(t.worker_tid.map(|i| i.to_string())),
                opt(t.spawn_location.clone()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let cols: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}", cols.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    for (t, r) in order.iter().zip(&rows) {
        let _ = writeln!(out, "{}", line(r));
        for w in &t.warnings {
            let _ = writeln!(out, "      warning {w}");
        }
    }
    if view.tasks.len() > TASKS_SHOWN {
        let _ = writeln!(out, "  ... {} more (see --json)", view.tasks.len() - TASKS_SHOWN);
    }
}

/// Goroutines grouped like the runtime's own `goroutine?debug=1` dump: by identical stack, so
/// the stack printed for a group is the stack of every goroutine in it. The header says which
/// states and wait reasons the group holds (and how many of each) and its longest wait.
/// Without stacks (`--no-stacks`) the groups are by state and wait reason.
fn render_goroutines(out: &mut String, view: &Snapshot, rt: &RuntimeView) {
    let s = &view.summary;
    if let Some(err) = &rt.error {
        let _ = writeln!(
            out,
            "\ngoroutines: not read ({} {}): {err}; the threads above are complete",
            rt.version,
            rt.module.as_deref().unwrap_or("?"),
        );
        return;
    }
    let _ = writeln!(
        out,
        "\ngoroutines: {} ({} waiting) of {} {} (layout from {}), GOMAXPROCS={}; {} runtime threads idle by design",
        s.goroutines,
        s.goroutines_waiting,
        rt.version,
        rt.module.as_deref().unwrap_or("?"),
        rt.layout.as_deref().unwrap_or("?"),
        rt.gomaxprocs.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        s.runtime_idle
    );
    if let Some(n) = rt.goroutines_inconsistent.filter(|&n| n > 0) {
        let _ = writeln!(out, "  ({n} goroutines changed while read and were left out)");
    }
    if let Some(n) = s.go_transitions {
        let window = human(s.window_ns);
        let _ = writeln!(out, "  (Go uprobes: {n} status changes in {window}; times without >= are exact)");
    }
    for group in group_goroutines(&view.goroutines) {
        render_group(out, &group, &view.stacks);
    }
}

/// Goroutines with the same stack (or, without stacks, the same state and wait reason).
#[derive(Debug)]
struct GoroutineGroup<'a> {
    members: Vec<&'a GoroutineView>,
    /// (state, wait reason or what it is in) -> goroutines, most first.
    states: Vec<((&'static str, String), usize)>,
}

/// What a goroutine waits on or is in, as the header shows it next to its state.
fn what_of(g: &GoroutineView) -> String {
    match (&g.wait_reason, &g.netpoll, &g.c_function, &g.syscall) {
        (Some(r), Some(np), _, _) => format!("{r} ({})", np.mode.as_str()),
        (Some(r), None, _, _) => r.clone(),
        (None, _, Some(c), _) => format!("cgo call {c}"),
        (None, _, None, Some(sc)) => format!("in {}", sc.name),
        _ => String::new(),
    }
}

/// Groups goroutines by identical stack, largest group first (ties: by state, then lowest
/// goid), members in the order given (allgs order).
fn group_goroutines(goroutines: &[GoroutineView]) -> Vec<GoroutineGroup<'_>> {
    // An empty stack (not unwound) says nothing about where a goroutine is: those are kept
    // apart by state and wait reason instead.
    // Stacks are interned per snapshot: one id is one stack.
    type Key = (StackId, Option<(&'static str, String)>);
    let mut by_key: BTreeMap<Key, Vec<&GoroutineView>> = BTreeMap::new();
    for g in goroutines {
        let state = g.stack_id.is_empty().then(|| (g.status.as_str(), what_of(g)));
        by_key.entry((g.stack_id, state)).or_default().push(g);
    }
    let mut groups: Vec<GoroutineGroup<'_>> = by_key
        .into_values()
        .map(|members| {
            let mut counts: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
            for g in &members {
                *counts.entry((g.status.as_str(), what_of(g))).or_default() += 1;
            }
            let mut states: Vec<_> = counts.into_iter().collect();
            states.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            GoroutineGroup { members, states }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| a.states[0].0.cmp(&b.states[0].0))
            .then_with(|| a.members[0].goid.cmp(&b.members[0].goid))
    });
    groups
}

fn render_group(out: &mut String, group: &GoroutineGroup<'_>, stacks: &StackTable) {
    let gs = &group.members;
    // The longest time in its state of any member: waits from the runtime's waitsince or the
    // uprobes, other states only from the uprobes; ">=" unless the uprobes saw it begin.
    let longest = gs
        .iter()
        .filter_map(|g| {
            g.waiting_ns.or(g.status_ns).map(|ns| (ns, g.status_ns_exact && g.status_ns == Some(ns)))
        })
        .max();
    let all_waiting = group.states.iter().all(|((status, _), _)| *status == "waiting");
    let label = |(status, what): &(&str, String)| {
        if what.is_empty() { (*status).to_owned() } else { format!("{status}, {what}") }
    };
    let states = match group.states.as_slice() {
        [(one, _)] => label(one),
        many => many.iter().map(|(st, n)| format!("{} x{n}", label(st))).collect::<Vec<_>>().join("; "),
    };
    let ids: Vec<String> = gs.iter().take(GOIDS_SHOWN).map(|g| g.goid.to_string()).collect();
    let more = if gs.len() > GOIDS_SHOWN { format!(" +{}", gs.len() - GOIDS_SHOWN) } else { String::new() };
    let _ = writeln!(
        out,
        "\n{:>6} x [{states}]{}  goroutines {}{more}",
        gs.len(),
        longest.map_or_else(String::new, |(ns, exact)| format!(
            " {} {}{}",
            if all_waiting { "waiting" } else { "longest" },
            if exact { "" } else { ">=" },
            human(ns)
        )),
        ids.join(" ")
    );
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
    let stack = stacks.get(gs[0].stack_id);
    for f in stack.iter().take(USER_FRAMES_SHOWN) {
        let _ = writeln!(out, "         {f}");
    }
    if stack.len() > USER_FRAMES_SHOWN {
        let _ = writeln!(out, "         ... {} more (see --json)", stack.len() - USER_FRAMES_SHOWN);
    }
    // One stack can be reached from several go statements: each origin once.
    let mut origins: Vec<(&str, Option<&str>)> = Vec::new();
    for g in gs {
        let o = (g.start.as_str(), g.created_by.as_deref());
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    for (start, created_by) in origins.iter().take(GOIDS_SHOWN) {
        let _ = writeln!(
            out,
            "         started at {start}{}",
            created_by.map_or_else(String::new, |c| format!(", created by {c}"))
        );
    }
    if origins.len() > GOIDS_SHOWN {
        let _ = writeln!(out, "         ... {} more origins (see --json)", origins.len() - GOIDS_SHOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Frame, GoStatus, Summary, SyscallClass, ThreadState, ThreadView, Timestamp};

    fn thread(tid: u32, name: &str, state: ThreadState, syscall: Option<SyscallView>) -> ThreadView {
        ThreadView {
            tid,
            name: name.into(),
            state,
            syscall,
            wchan: None,
            user_stack_id: StackId::EMPTY,
            kernel_stack_id: StackId::EMPTY,
            completed: vec![],
            long_calls: vec![],
            role: None,
            goroutine: None,
            task: None,
        }
    }

    #[test]
    fn tasks_with_warnings_first_and_a_failed_console_says_why() {
        use crate::model::{TaskSource, TaskState, TaskView};
        let mut view = Snapshot::new(1, "app".into(), Timestamp::default());
        let task = |id: u64, name: &str, warnings: Vec<String>| TaskView {
            task_id: Some(id),
            console_id: Some(id + 100),
            name: Some(name.into()),
            kind: Some("task".into()),
            spawn_location: Some("src/main.rs:3:9".into()),
            state: TaskState::Idle,
            polls: 4,
            busy_ns: 1_500_000,
            scheduled_ns: 0,
            idle_ns: 2_000_000_000,
            wakes: 3,
            waker_clones: 1,
            waker_drops: 1,
            self_wakes: 0,
            warnings,
            worker_tid: None,
            io_fd: None,
            io_fd_desc: None,
        };
        view.tasks = vec![task(1, "fine", vec![]), task(2, "coma", vec!["lost-waker: no waker left".into()])];
        view.task_source =
            Some(TaskSource { addr: Some("127.0.0.1:6669".into()), updates: 2, ..TaskSource::default() });
        let text = render(&view);
        let section = text.split("tasks: ").nth(1).expect("a tasks section");
        assert!(
            section.starts_with("2 from tokio console 127.0.0.1:6669 (2 updates; 1 with warnings)"),
            "{text}"
        );
        let coma = section.find("coma").expect("coma listed");
        assert!(coma < section.find("fine").expect("fine listed"), "{text}");
        assert!(section.contains("      warning lost-waker: no waker left"), "{text}");
        view.task_source = Some(TaskSource {
            error: Some("cannot connect".into()),
            hint: Some("check it".into()),
            ..TaskSource::default()
        });
        view.tasks.clear();
        let text = render(&view);
        assert!(
            text.contains(
                "tasks: not read: cannot connect; the threads above are complete\n  hint: check it"
            ),
            "{text}"
        );
    }

    #[test]
    fn aligned_and_marks_lower_bounds() {
        let call = SyscallView {
            nr: 0,
            name: "read".into(),
            class: SyscallClass::Read,
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
        let mut view = Snapshot::new(10, "demo".into(), Timestamp::default());
        view.summary = Summary::count(&threads);
        view.threads = threads;
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

    /// A user frame from `function+0xoff`.
    fn frame(text: &str) -> Frame {
        let (name, off) = text.split_once("+0x").unwrap();
        Frame {
            function: Some(name.to_owned()),
            offset: Some(u64::from_str_radix(off, 16).unwrap()),
            ..Frame::unnamed(0x1000)
        }
    }

    fn goroutine(
        stacks: &mut StackTable,
        goid: u64,
        reason: &str,
        stack: &[&str],
        waiting_ns: Option<u64>,
    ) -> GoroutineView {
        GoroutineView {
            goid,
            status: GoStatus::Waiting,
            wait_reason: Some(reason.into()),
            waiting_ns,
            status_ns: None,
            status_ns_exact: false,
            transitions: None,
            cgo: false,
            c_function: None,
            m: None,
            tid: None,
            syscall: None,
            netpoll: None,
            start: stack.last().map_or("main.main", |f| f).to_owned(),
            created_by: Some("main.main".into()),
            parent_goid: Some(1),
            stack_id: stacks.intern(stack.iter().map(|f| frame(f)).collect()),
        }
    }

    const MANY: &[&str] = &["runtime.gopark+0x1", "main.parkedMany+0x2", "runtime.goexit+0x3"];
    const MAIN: &[&str] = &["runtime.gopark+0x1", "main.main+0x9", "runtime.main+0x4"];

    #[test]
    fn same_reason_different_stacks_are_different_groups() {
        let mut st = StackTable::new();
        let mut gs: Vec<GoroutineView> =
            (10..110).map(|id| goroutine(&mut st, id, "chan receive", MANY, None)).collect();
        gs.insert(0, goroutine(&mut st, 1, "chan receive", MAIN, Some(5_000_000_000)));
        let groups = group_goroutines(&gs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members.len(), 100);
        assert!(groups[0].members.iter().all(|g| g.stack_id == groups[0].members[0].stack_id));
        assert_eq!(st.render(groups[0].members[0].stack_id)[1], "main.parkedMany+0x2");
        assert_eq!(groups[1].members.iter().map(|g| g.goid).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn one_stack_several_reasons_is_one_group_with_each_reason_counted() {
        let mut st = StackTable::new();
        let gs = vec![
            goroutine(&mut st, 3, "chan receive", MANY, Some(1_000_000_000)),
            goroutine(&mut st, 4, "select", MANY, Some(7_000_000_000)),
            goroutine(&mut st, 5, "chan receive", MANY, None),
        ];
        let groups = group_goroutines(&gs);
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].states,
            vec![(("waiting", "chan receive".to_owned()), 2), (("waiting", "select".to_owned()), 1)]
        );
        let mut out = String::new();
        render_group(&mut out, &groups[0], &st);
        let header = out.trim_start().lines().next().unwrap();
        assert_eq!(
            header,
            "3 x [waiting, chan receive x2; waiting, select x1] waiting >=7.0s  goroutines 3 4 5"
        );
        assert!(out.contains("main.parkedMany+0x2"), "{out}");
    }

    #[test]
    fn without_stacks_groups_are_by_state_and_reason() {
        let mut st = StackTable::new();
        let gs = vec![
            goroutine(&mut st, 3, "chan receive", &[], None),
            goroutine(&mut st, 4, "select", &[], None),
            goroutine(&mut st, 5, "select", &[], None),
        ];
        let groups = group_goroutines(&gs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members.iter().map(|g| g.goid).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(groups[0].states.len(), 1);
    }
}
