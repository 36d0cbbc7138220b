//! `parkscope snapshot` against a live `blocker`, checked against blocker's manifest and against
//! /proc/PID/task/TID/{syscall,stat,comm} read by the test itself.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use parkscope_tests::{
    Blocker, LiveParkscope, Role, TaskSyscall, parse_hex, read_task_comm, read_task_state, read_task_syscall,
    read_tids, run_parkscope,
};
use serde_json::Value;

const WINDOW: Duration = Duration::from_secs(2);
/// late_read's nanosleep before its read, unless the test starts the read first (SIGUSR1).
const LATE_MS: u64 = 60_000;

/// The roles that sit in a syscall, with the class the issue puts that syscall in.
const BLOCKED_ROLES: [(&str, &str); 8] = [
    ("pipe_read", "read"),
    ("pipe_write", "write"),
    ("mutex_wait", "futex"),
    ("cond_wait", "futex"),
    ("epoll_wait", "poll"),
    ("tcp_recv", "read"),
    ("sleeper", "sleep"),
    ("late_read", "read"),
];

fn thread(view: &Value, tid: u32) -> &Value {
    view["threads"]
        .as_array()
        .expect("threads is an array")
        .iter()
        .find(|t| t["tid"].as_u64() == Some(u64::from(tid)))
        .unwrap_or_else(|| panic!("tid {tid} missing from the view:\n{view:#}"))
}

fn opt_u64(v: &Value) -> Option<u64> {
    if v.is_null() { None } else { Some(v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))) }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_owned()).collect()
}

/// The syscall numbers /proc shows for every thread right now.
fn proc_syscalls(pid: u32) -> Vec<(u32, TaskSyscall)> {
    read_tids(pid).into_iter().map(|tid| (tid, read_task_syscall(pid, tid))).collect()
}

/// Summary counts recomputed from the threads array.
fn check_summary(view: &Value) {
    let threads = view["threads"].as_array().expect("threads");
    let s = &view["summary"];
    let count = |f: &dyn Fn(&Value) -> bool| threads.iter().filter(|t| f(t)).count() as u64;
    let state = |t: &Value| t["state"].as_str().expect("state").to_owned();
    let blocked = |t: &Value| matches!(state(t).as_str(), "sleeping" | "disk_sleep");
    assert_eq!(s["threads"].as_u64(), Some(threads.len() as u64), "summary.threads:\n{view:#}");
    assert_eq!(s["running"].as_u64(), Some(count(&|t| state(t) == "running")), "summary.running");
    assert_eq!(s["runnable"].as_u64(), Some(count(&|t| state(t) == "runnable")), "summary.runnable");
    assert_eq!(s["blocked"].as_u64(), Some(count(&blocked)), "summary.blocked");
    let mut class_sum = 0;
    for class in ["read", "write", "poll", "futex", "sleep", "other"] {
        let n = count(&|t| {
            blocked(t) && {
                let c = t["syscall"]["class"].as_str().unwrap_or("other");
                c == class || (class == "other" && !["read", "write", "poll", "futex", "sleep"].contains(&c))
            }
        });
        assert_eq!(s[class].as_u64(), Some(n), "summary.{class} disagrees with the threads:\n{view:#}");
        class_sum += n;
    }
    assert_eq!(s["blocked"].as_u64(), Some(class_sum), "blocked != sum of classes");
    let max = threads
        .iter()
        .filter(|t| blocked(t))
        .filter_map(|t| {
            opt_u64(&t["syscall"]["blocked_ns"]).or(opt_u64(&t["syscall"]["blocked_at_least_ns"]))
        })
        .max();
    assert_eq!(opt_u64(&s["max_blocked_ns"]), max, "summary.max_blocked_ns");
}

fn check_role(view: &Value, b: &Blocker, role: &Role, class: &str, after: &[(u32, TaskSyscall)]) {
    let t = thread(view, role.tid);
    let who = format!("{} (tid {})", role.role, role.tid);
    assert_eq!(t["name"].as_str(), Some(role.role.as_str()), "{who}: name");
    assert_eq!(read_task_comm(b.pid, role.tid), role.role, "{who}: /proc comm is the role (ground truth)");
    assert_eq!(t["state"].as_str(), Some("sleeping"), "{who}: state:\n{t:#}");
    assert_eq!(read_task_state(b.pid, role.tid), 'S', "{who}: /proc says it is not sleeping");

    let c = &t["syscall"];
    assert!(c.is_object(), "{who}: no syscall:\n{t:#}");
    assert_eq!(c["name"].as_str(), role.syscall.as_deref(), "{who}: syscall name");
    assert_eq!(c["class"].as_str(), Some(class), "{who}: class");
    let nr = c["nr"].as_u64().map(|n| n as u32);
    assert_eq!(nr, role.syscall_nr, "{who}: syscall nr vs the manifest");
    let proc_now = &after.iter().find(|(tid, _)| *tid == role.tid).expect("thread still there").1;
    let TaskSyscall::In { nr: proc_nr, args } = proc_now else {
        panic!("{who}: /proc says {proc_now:?} after the snapshot")
    };
    assert_eq!(nr, Some(*proc_nr), "{who}: syscall nr vs /proc/PID/task/TID/syscall");

    let fd = c["fd"].as_i64().map(|f| f as i32);
    assert_eq!(fd, role.fd, "{who}: fd vs the manifest");
    if let Some(fd) = role.fd {
        assert_eq!(args[0], fd as u64, "{who}: /proc arg0 is the manifest fd");
    }
    let fd_desc = c["fd_desc"].as_str();
    match role.role.as_str() {
        "pipe_read" | "pipe_write" | "late_read" => {
            let want = format!("pipe:[{}]", role.inode.expect("pipe roles have an inode"));
            assert_eq!(role.fd_desc.as_deref(), Some(want.as_str()), "{who}: manifest fd_desc");
            assert!(fd_desc.is_some_and(|d| d.contains(&want)), "{who}: fd_desc {fd_desc:?} lacks {want}");
        }
        "tcp_recv" => {
            let want = format!("tcp {} -> {}", role.str_field("local"), role.str_field("remote"));
            assert_eq!(fd_desc, Some(want.as_str()), "{who}: fd_desc");
        }
        "epoll_wait" => assert!(
            fd_desc.is_some_and(|d| d.starts_with("anon_inode:[eventpoll]")),
            "{who}: fd_desc {fd_desc:?}"
        ),
        "mutex_wait" => {
            // The futex word is the mutex itself (its first field).
            let want = parse_hex(role.str_field("futex_uaddr")).expect("futex_uaddr is hex");
            let got = c["futex_addr"].as_str().and_then(parse_hex);
            assert_eq!(got, Some(want), "{who}: futex_addr");
            assert_eq!(args[0], want, "{who}: /proc arg0 is the futex word");
        }
        "cond_wait" => {
            // glibc waits on a word inside the condvar.
            let base = parse_hex(role.str_field("cond_addr")).expect("cond_addr is hex");
            let size = role.raw["cond_size"].as_u64().expect("cond_size");
            let got = c["futex_addr"].as_str().and_then(parse_hex).expect("futex_addr");
            assert!((base..base + size).contains(&got), "{who}: futex_addr {got:#x} outside the condvar");
            assert_eq!(args[0], got, "{who}: /proc arg0 is the futex word");
        }
        _ => assert!(fd_desc.is_none(), "{who}: unexpected fd_desc {fd_desc:?}"),
    }

    let user = strings(&t["user_stack"]);
    assert!(user.iter().any(|f| f.contains(&role.func)), "{who}: user_stack lacks {}: {user:#?}", role.func);
    assert!(!strings(&t["kernel_stack"]).is_empty(), "{who}: empty kernel_stack");
}

#[test]
fn json_snapshot_matches_the_manifest_and_proc() {
    // late_read's exact time can only be known if its read begins after the probes are
    // attached: a call that began before attach had no switch-out for the kernel to see and
    // rightly gets a lower bound. Loading the probes takes a debug build on a busy machine
    // longer than any fixed nanosleep short enough for the window, so the read is started
    // (SIGUSR1 ends late_read's nanosleep) once parkscope says the probes are attached.
    let b = Blocker::start(&["--late-ms", &LATE_MS.to_string()]);
    let late = b.role("late_read");
    let started = Instant::now();
    let run = LiveParkscope::start_until(
        &["snapshot", "-p", &b.pid.to_string(), "--window", "2s", "--json"],
        "probes attached",
    );
    let at_attach = read_task_syscall(b.pid, late.tid);
    assert!(
        matches!(at_attach, TaskSyscall::In { nr: 35, .. }),
        "late_read should still be in nanosleep once attached, /proc says {at_attach:?}"
    );
    let signalled = Instant::now();
    // SAFETY: tgkill with the blocker's pid and its late_read thread; blocker handles SIGUSR1.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, b.pid as i32, late.tid as i32, libc::SIGUSR1) };
    assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
    let (code, stdout, log) = run.finish();
    let elapsed = started.elapsed();
    let after = proc_syscalls(b.pid);
    let age = b.started.elapsed();
    let since_signal = signalled.elapsed();
    assert_eq!(code, 0, "parkscope failed:\n{log}");
    let view: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"));

    assert_eq!(view["pid"].as_u64(), Some(u64::from(b.pid)));
    assert_eq!(view["target_exited"].as_bool(), Some(false));
    let window_ns = view["summary"]["window_ns"].as_u64().expect("window_ns");
    assert!(window_ns >= WINDOW.as_nanos() as u64, "window_ns {window_ns} shorter than --window 2s");
    assert!(window_ns < elapsed.as_nanos() as u64, "window_ns {window_ns} longer than the whole run");

    // Same threads as /proc, and every thread in a syscall is in the one /proc names.
    let tids: BTreeSet<u32> = view["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["tid"].as_u64().expect("tid") as u32)
        .collect();
    assert_eq!(tids, after.iter().map(|(t, _)| *t).collect(), "threads vs /proc/PID/task");
    for (tid, proc_now) in &after {
        let c = &thread(&view, *tid)["syscall"];
        if let TaskSyscall::In { nr, .. } = proc_now {
            assert_eq!(c["nr"].as_u64(), Some(u64::from(*nr)), "tid {tid}: nr vs /proc:\n{c:#}");
        }
    }

    for (name, class) in BLOCKED_ROLES {
        let role = b.role(name);
        check_role(&view, &b, role, class, &after);
        let c = &thread(&view, role.tid)["syscall"];
        let (exact, at_least) = (opt_u64(&c["blocked_ns"]), opt_u64(&c["blocked_at_least_ns"]));
        if name == "late_read" {
            // Entered read() during the window: exact time, shorter than the window and than
            // the time since its nanosleep ended.
            let ns = exact
                .unwrap_or_else(|| panic!("late_read entered read in the window: no blocked_ns:\n{c:#}"));
            assert_eq!(at_least, None, "late_read: blocked_at_least_ns with an exact time");
            assert!(ns >= 500_000_000, "late_read blocked_ns {ns} < 0.5 s");
            assert!(ns <= window_ns, "late_read blocked_ns {ns} > window {window_ns}");
            let bound = since_signal.as_nanos() as u64;
            assert!(
                ns <= bound,
                "late_read blocked_ns {ns} > the {since_signal:?} since its read was started"
            );
        } else {
            assert_eq!(exact, None, "{name}: blocked since before attach, yet an exact blocked_ns");
            let ns = at_least.unwrap_or_else(|| panic!("{name}: no blocked_at_least_ns:\n{c:#}"));
            assert!(ns >= WINDOW.as_nanos() as u64, "{name}: blocked_at_least_ns {ns} < the 2 s window");
            assert!(ns >= window_ns, "{name}: blocked_at_least_ns {ns} < window_ns {window_ns}");
            // A lower bound may not exceed the truth, which is below the process's age.
            assert!(ns <= age.as_nanos() as u64, "{name}: blocked_at_least_ns {ns} > process age {age:?}");
        }
    }

    let spinner = b.role("spinner");
    let t = thread(&view, spinner.tid);
    assert!(matches!(t["state"].as_str(), Some("running" | "runnable")), "spinner state {}", t["state"]);
    assert!(t["syscall"].is_null(), "spinner has a syscall: {t:#}");
    let proc_spinner = &after.iter().find(|(tid, _)| *tid == spinner.tid).expect("spinner").1;
    assert!(!matches!(proc_spinner, TaskSyscall::In { .. }), "/proc: spinner in a syscall {proc_spinner:?}");

    check_summary(&view);
}

#[test]
fn table_lists_blocked_threads_before_the_spinner() {
    let b = Blocker::start(&[]);
    let out = run_parkscope(&["snapshot", "-p", &b.pid.to_string(), "--window", "500ms"]);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header =
        lines.iter().position(|l| l.starts_with("TID")).unwrap_or_else(|| panic!("no header: {out}"));
    let rows: Vec<(u32, Vec<&str>)> = lines[header + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].parse().unwrap_or_else(|_| panic!("row without a tid: {l:?}")), cells)
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<BTreeSet<_>>(),
        read_tids(b.pid),
        "table rows vs /proc/PID/task: {out}"
    );
    let pos = |tid: u32| rows.iter().position(|r| r.0 == tid).expect("row");
    let spinner = pos(b.role("spinner").tid);
    for (name, _) in BLOCKED_ROLES {
        let role = b.role(name);
        let i = pos(role.tid);
        assert!(i < spinner, "{name} row comes after the spinner row: {out}");
        let cells = &rows[i].1;
        assert_eq!(cells[1], name, "NAME column: {out}");
        assert_eq!(cells[2], "sleeping", "STATE column: {out}");
    }
    // late_read is still in its 3 s nanosleep; everyone else in the manifest syscall.
    for name in ["pipe_read", "pipe_write", "mutex_wait", "cond_wait", "epoll_wait", "tcp_recv", "sleeper"] {
        let role = b.role(name);
        assert_eq!(Some(rows[pos(role.tid)].1[3]), role.syscall.as_deref(), "SYSCALL column: {out}");
    }
}

#[test]
fn window_zero_reads_proc_only() {
    let b = Blocker::start(&[]);
    let out = run_parkscope(&["snapshot", "-p", &b.pid.to_string(), "--window", "0", "--json"]);
    let after = proc_syscalls(b.pid);
    let age = b.started.elapsed();
    out.assert_code(0);
    let view = out.json();
    assert_eq!(view["summary"]["window_ns"].as_u64(), Some(0));
    let mut blocked = 0;
    for t in view["threads"].as_array().expect("threads") {
        if t["state"] != "sleeping" {
            continue;
        }
        blocked += 1;
        let tid = t["tid"].as_u64().expect("tid") as u32;
        let c = &t["syscall"];
        assert!(c.is_object(), "blocked thread {tid} without a syscall: {t:#}");
        assert_eq!(opt_u64(&c["blocked_ns"]), None, "tid {tid}: exact time without eBPF");
        let ns = opt_u64(&c["blocked_at_least_ns"]).unwrap_or_else(|| {
            panic!("tid {tid}: no blocked_at_least_ns though /proc/PID/task/TID/sched exists")
        });
        assert!(ns <= age.as_nanos() as u64, "tid {tid}: blocked_at_least_ns {ns} > process age {age:?}");
        let proc_now = &after.iter().find(|(t, _)| *t == tid).expect("thread").1;
        let TaskSyscall::In { nr, .. } = proc_now else { panic!("tid {tid}: /proc says {proc_now:?}") };
        assert_eq!(c["nr"].as_u64(), Some(u64::from(*nr)), "tid {tid}: nr vs /proc");
    }
    // Eight roles (late_read in its nanosleep) and main in pause(2).
    assert_eq!(blocked, 9, "blocked threads:\n{view:#}");
    let late = thread(&view, b.role("late_read").tid);
    assert_eq!(late["syscall"]["name"].as_str(), Some("nanosleep"));
    assert_eq!(late["syscall"]["class"].as_str(), Some("sleep"));
    check_summary(&view);
}

fn assert_cause_and_hint(out: &parkscope_tests::Output) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("parkscope:")), "no `parkscope:` line: {out}");
    assert!(lines.iter().any(|l| l.starts_with("hint:")), "no `hint:` line: {out}");
}

#[test]
fn missing_pid_exits_3() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("reading /proc/sys/kernel/pid_max")
        .trim()
        .parse()
        .expect("pid_max is a number");
    let pid = pid_max - 1;
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} exists; pick another");
    let out = run_parkscope(&["snapshot", "-p", &pid.to_string(), "--window", "0"]);
    out.assert_code(3);
    assert_cause_and_hint(&out);
    assert!(out.stdout.is_empty(), "stdout on failure: {out}");
}

#[test]
fn kernel_thread_exits_6() {
    let comm = std::fs::read_to_string("/proc/2/comm").expect("reading /proc/2/comm");
    assert_eq!(comm.trim(), "kthreadd", "pid 2 is not kthreadd here");
    let out = run_parkscope(&["snapshot", "-p", "2", "--window", "1s"]);
    out.assert_code(6);
    assert_cause_and_hint(&out);
}

#[test]
fn target_exiting_mid_window_exits_5_with_the_attach_view() {
    let b = Blocker::start(&["--exit-after-ms", "1000"]);
    let out = run_parkscope(&["snapshot", "-p", &b.pid.to_string(), "--window", "3s", "--json"]);
    out.assert_code(5);
    let view = out.json();
    assert_eq!(view["target_exited"].as_bool(), Some(true), "{out}");
    for role in &b.roles {
        let t = thread(&view, role.tid);
        assert_eq!(t["name"].as_str(), Some(role.role.as_str()));
    }
    thread(&view, b.pid);
    assert!(out.stderr.lines().any(|l| l.starts_with("parkscope:")), "no `parkscope:` line: {out}");
    // The exit (1 s in) ends the run; it does not wait out the 3 s window.
    assert!(
        out.elapsed < Duration::from_millis(2900),
        "took {:?} for a target that exited at 1 s",
        out.elapsed
    );
}

#[test]
fn bad_arguments_exit_2() {
    let out = run_parkscope(&["snapshot"]);
    out.assert_code(2);
    assert!(out.stderr.contains("--pid"), "{out}");
    let me = std::process::id().to_string();
    let out = run_parkscope(&["snapshot", "-p", &me, "--window", "5parsecs"]);
    out.assert_code(2);
    assert!(out.stderr.contains("5parsecs"), "{out}");
}
