//! Checks of parkscope's Go view against the target's own runtime, shared by tests/tests/go.rs
//! (Go 1.19 and 1.27) and tests/tests/go_matrix.rs (every release x build variant): goroutines
//! one for one against `goroutine?debug=2`, netpoll fds against the target's sockets, cgo calls
//! against the target's pipes, schedtrace against GODEBUG=schedtrace of the same process, and
//! `--go-uprobes` park times against the target's own clock (also for tests/tests/go_uprobes.rs).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde_json::Value;

use crate::{
    GoTarget, LiveParkscope, assert_goroutines_match_dump, dump_label as label, monotonic_ns, run_parkscope,
};

/// `parkscope snapshot -p PID --json EXTRA...`, which must succeed.
pub fn snapshot(pid: u32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["snapshot", "-p", &pid, "--json"];
    args.extend_from_slice(extra);
    let out = run_parkscope(&args);
    out.assert_code(0);
    out.json()
}

/// Snapshots `t` and checks its goroutines against the runtime's own dump taken just before:
/// every goroutine of the dump, one for one, with the same wait reason, and nothing else but
/// the runtime's system goroutines (which the dump leaves out). Returns the snapshot and our
/// goroutines by goid (the transient HTTP ones left out).
pub fn check_against_dump(bin: &str, t: &GoTarget) -> (Value, BTreeMap<u64, Value>) {
    let dump = t.pprof_dump();
    let snap = snapshot(t.pid, &["--window", "0"]);
    assert_eq!(snap["runtime"]["kind"], "go");
    let version = t.info["go"].as_str().unwrap();
    assert_eq!(snap["runtime"]["version"], version);
    let ours: BTreeMap<u64, Value> = assert_goroutines_match_dump(bin, &dump, &snap)
        .into_iter()
        .map(|(goid, g)| (goid, g.clone()))
        .collect();
    (snap, ours)
}

/// Every goroutine in IO wait is parked on one of the target's own TCP sockets (the kernel's
/// /proc/PID/fd says socket), for reading; returns those fds.
pub fn check_netpoll_fds_are_sockets(bin: &str, pid: u32, ours: &BTreeMap<u64, Value>) -> BTreeSet<i64> {
    let mut fds = BTreeSet::new();
    for g in ours.values().filter(|g| g["wait_reason"] == "IO wait") {
        let fd = g["netpoll"]["fd"].as_i64().unwrap_or_else(|| panic!("{bin}: IO wait without fd: {g:#}"));
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert!(link.to_string_lossy().starts_with("socket:["), "{bin}: fd {fd} is {}", link.display());
        assert_eq!(g["netpoll"]["mode"], "read", "{bin}: {g:#}");
        assert!(g["netpoll"]["fd_desc"].as_str().unwrap().starts_with("tcp 127.0.0.1:"), "{bin}: {g:#}");
        fds.insert(fd);
    }
    fds
}

/// The whole check of examples/go/parked (`bin` in examples/bin): the dump one for one, the
/// known population by wait reason, netpoll fds equal to the target's reading sockets, the raw
/// read(2) goroutine on its thread, idle Ms not counted as blocked.
pub fn check_goroutines_match_dump(bin: &str) {
    let t = GoTarget::start(bin, &["-n", "3"], &[], false);
    let (snap, ours) = check_against_dump(bin, &t);
    // The known population, by wait reason (Go 1.19 calls a contended sync.Mutex "semacquire").
    let count = |r: &str| {
        ours.values().filter(|g| label(g) == r && g["start"].as_str().unwrap().starts_with("main.")).count()
    };
    for r in ["chan receive", "chan send", "select", "sleep"] {
        assert_eq!(count(r), 3, "{bin}: {r}");
    }
    assert_eq!(count("sync.Mutex.Lock") + count("semacquire"), 3, "{bin}: mutex waiters");
    // A parked goroutine's stack reaches its own function.
    let sleeper = ours.values().find(|g| g["start"] == "main.parkedSleep").unwrap();
    assert!(
        sleeper["stack"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("main.parkedSleep")),
        "{sleeper:#}"
    );
    assert_eq!(sleeper["created_by"], "main.main");

    // Netpoll: the IO-wait goroutines wait on exactly the target's own reading sockets (plus the
    // pprof listener), for reading.
    let read_fds: BTreeSet<i64> =
        t.info["tcp_read_fds"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    check_netpoll_fds_are_sockets(bin, t.pid, &ours);
    let polled: BTreeSet<i64> = ours
        .values()
        .filter(|g| {
            g["wait_reason"] == "IO wait"
                && g["stack"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f.as_str().unwrap().starts_with("main.parkedTCPRead"))
        })
        .filter_map(|g| g["netpoll"]["fd"].as_i64())
        .collect();
    assert_eq!(polled, read_fds, "{bin}");
    // The raw read(2) goroutine holds its thread in the syscall; the thread shows the goroutine.
    let pipe_fd = t.info["pipe_fd"].as_i64().unwrap();
    let reader = ours
        .values()
        .find(|g| g["status"] == "syscall" && g["syscall"]["fd"].as_i64() == Some(pipe_fd))
        .unwrap_or_else(|| panic!("{bin}: no goroutine in read on the pipe"));
    assert_eq!(reader["syscall"]["name"], "read");
    assert_eq!(reader["cgo"], false);
    let tid = reader["tid"].as_u64().unwrap();
    let thread =
        snap["threads"].as_array().unwrap().iter().find(|th| th["tid"].as_u64() == Some(tid)).unwrap();
    assert_eq!(thread["goroutine"], reader["goid"]);
    assert_eq!(thread["role"], "goroutine");
    // Idle Ms and the netpoller are not counted as blocked threads.
    let roles: Vec<&str> =
        snap["threads"].as_array().unwrap().iter().filter_map(|t| t["role"].as_str()).collect();
    assert!(roles.contains(&"idle_m"), "{bin}: {roles:?}");
    let blocked = snap["summary"]["blocked"].as_u64().unwrap();
    let idle = snap["summary"]["runtime_idle"].as_u64().unwrap();
    assert!(
        idle >= 1 && blocked + idle <= snap["summary"]["threads"].as_u64().unwrap(),
        "{:#}",
        snap["summary"]
    );
}

/// examples/go/parkedcgo with `n` goroutines blocked in C: the dump one for one, netpoll fds on
/// the target's sockets, and exactly `n` goroutines marked cgo, each in read(2) on one of the
/// target's pipes. With `c_symbols` (the binary has a symbol table) each names its C function.
pub fn check_cgo_calls(bin: &str, n: usize, c_symbols: bool) {
    let t = GoTarget::start(bin, &["-n", &n.to_string()], &[], false);
    let (snap, ours) = check_against_dump(bin, &t);
    check_netpoll_fds_are_sockets(bin, t.pid, &ours);
    let cgo: Vec<&Value> =
        snap["goroutines"].as_array().unwrap().iter().filter(|g| g["cgo"] == true).collect();
    assert_eq!(cgo.len(), n, "{bin}: {:#}", snap["goroutines"]);
    let fds: BTreeSet<i64> =
        t.info["pipe_fds"].as_array().unwrap().iter().map(|f| f.as_i64().unwrap()).collect();
    for g in cgo {
        assert_eq!(g["status"], "syscall", "{bin}: {g:#}");
        if c_symbols {
            assert_eq!(g["c_function"], "parkscope_c_block", "{bin}: {g:#}");
        }
        assert_eq!(g["syscall"]["name"], "read", "{bin}: {g:#}");
        assert!(fds.contains(&g["syscall"]["fd"].as_i64().unwrap()), "{bin}: {g:#}");
    }
}

const WINDOW_NS: u64 = 2_000_000_000;
/// Between the target's clock read and its park: a buffered channel send, then gopark. Allow
/// for the target being descheduled in between on a loaded 2-core machine.
const PARK_SLACK_NS: u64 = 50_000_000;

fn goroutine(view: &Value, goid: u64) -> &Value {
    view["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goid"] == goid)
        .unwrap_or_else(|| panic!("goroutine {goid} missing: {view:#}"))
}

/// `snapshot --go-uprobes` of examples/go/parked `bin`: the exact time-in-state of a goroutine
/// that parks during the window, checked against the CLOCK_MONOTONIC time the target itself read
/// just before parking; lower bounds for the goroutines parked throughout; the pipe reader's
/// time is its thread's syscall time.
pub fn check_go_uprobes_time_a_park(bin: &str) {
    let t = GoTarget::start(bin, &["-n", "2"], &[], false);
    let pid = t.pid.to_string();
    let started_ns = monotonic_ns();
    let run = LiveParkscope::start_until(
        &["snapshot", "-p", &pid, "--go-uprobes", "--window", "2s", "--json"],
        "Go uprobes attached",
    );
    let (goid, parked_ns) = t.park_late_goroutine();
    let (code, stdout, log) = run.finish();
    let ended_ns = monotonic_ns();
    assert_eq!(code, 0, "{bin}: {log}");
    let view: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(view["summary"]["dropped_events"], 0, "{bin}");
    assert!(view["summary"]["go_transitions"].as_u64().unwrap() >= 3, "{bin}: {:#}", view["summary"]);

    // The goroutine parked during the window: exact, and within what the clocks allow. The
    // view is read after the 2 s window, which began after `started_ns`, and before we saw
    // parkscope exit.
    let g = goroutine(&view, goid);
    assert_eq!(g["status"], "waiting", "{bin}: {g:#}");
    assert_eq!(g["wait_reason"], "chan receive", "{bin}: {g:#}");
    assert_eq!(g["status_ns_exact"], true, "{bin}: {g:#}");
    let ns = g["status_ns"].as_u64().unwrap();
    assert_eq!(g["waiting_ns"].as_u64(), Some(ns), "{bin}: {g:#}");
    let upper = ended_ns - parked_ns;
    let lower = (started_ns + WINDOW_NS).saturating_sub(parked_ns + PARK_SLACK_NS);
    assert!((lower..=upper).contains(&ns), "{bin}: waited {ns} ns, the clocks allow {lower}..={upper}");
    // Created, run, parked: at least three changes, all seen.
    assert!(g["transitions"].as_u64().unwrap() >= 3, "{bin}: {g:#}");
    assert!(
        g["stack"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("main.parkedLate")),
        "{bin}: {g:#}"
    );

    // Parked since before attach: a lower bound of the window, never called exact.
    let sleepers: Vec<&Value> =
        view["goroutines"].as_array().unwrap().iter().filter(|g| g["start"] == "main.parkedSleep").collect();
    assert_eq!(sleepers.len(), 2, "{bin}");
    for g in sleepers {
        assert_eq!(g["status_ns_exact"], false, "{bin}: {g:#}");
        assert_eq!(g["transitions"], 0, "{bin}: {g:#}");
        let ns = g["status_ns"].as_u64().unwrap();
        assert!(ns >= WINDOW_NS && ns <= ended_ns - started_ns, "{bin}: parked-throughout {ns} ns: {g:#}");
        assert!(g["waiting_ns"].as_u64().unwrap() >= ns, "{bin}: {g:#}");
    }
    // The goroutine in a raw read(2) on the target's pipe since before attach: its thread's
    // syscall time. Found by its fd, not its stack: a syscall goroutine's stack, walked from
    // g.sched, sometimes stops at its first frame (seen with Go 1.19 and 1.22 builds).
    let pipe_fd = t.info["pipe_fd"].as_i64().unwrap();
    let reader = view["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["status"] == "syscall" && g["syscall"]["fd"].as_i64() == Some(pipe_fd));
    let reader = reader.unwrap_or_else(|| panic!("{bin}: no pipe reader: {view:#}"));
    assert_eq!(reader["status"], "syscall", "{bin}: {reader:#}");
    assert_eq!(reader["syscall"]["name"], "read", "{bin}: {reader:#}");
    // Exact if its read(2) was entered during the window (a signal to the process may land on
    // that thread and restart the call), else the thread's lower bound.
    let call = &reader["syscall"];
    let exact = !call["blocked_ns"].is_null();
    let thread_ns = if exact { &call["blocked_ns"] } else { &call["blocked_at_least_ns"] };
    assert_eq!(&reader["status_ns"], thread_ns, "{bin}: {reader:#}");
    assert_eq!(reader["status_ns_exact"], exact, "{bin}: {reader:#}");
}

fn field_of(text: &str, k: &str) -> i64 {
    let at = text.find(&format!(" {k}=")).unwrap_or_else(|| panic!("{k} in {text}")) + k.len() + 2;
    text[at..].split(' ').next().unwrap().parse().unwrap()
}

/// Same fields in the same order with the same punctuation and spacing; each number (of any
/// width) becomes `9`, since the values move between the two reads.
fn shape(line: &str) -> String {
    let after_time = line.split_once(": ").map_or(line, |(_, rest)| rest);
    let mut out = String::with_capacity(after_time.len());
    let mut in_number = false;
    for c in after_time.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !in_number {
            out.push('9');
        }
        in_number = c.is_ascii_digit();
    }
    out
}

/// `parkscope schedtrace` of `bin` (started with GODEBUG=schedtrace) prints the lines the
/// target's runtime prints: the same shape, the same gomaxprocs, threads within 2 (Ms come and
/// go between the two reads); `--detail` has one line per P and the Ms and Gs.
pub fn check_schedtrace_matches_godebug(bin: &str) {
    let t = GoTarget::start(bin, &["-n", "2"], &[("GODEBUG", "schedtrace=200")], true);
    let pid = t.pid.to_string();
    let out = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "2"]);
    out.assert_code(0);
    // The runtime's line printed right after our last read (every 200 ms): the lines queued
    // before it are older (threads still being made early in a cgo target's life).
    let rx = t.stderr.as_ref().unwrap();
    while rx.try_recv().is_ok() {}
    let theirs = loop {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(l) if l.starts_with("SCHED ") => break l,
            Ok(_) => {}
            Err(e) => panic!("{bin}: no GODEBUG output ({e})"),
        }
    };
    let theirs = theirs.as_str();
    let ours_lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(ours_lines.len(), 2, "{bin}: {out}");
    for ours in &ours_lines {
        assert_eq!(shape(ours), shape(theirs), "{bin}:\nours:   {ours}\ntheirs: {theirs}");
        assert_eq!(field_of(ours, "gomaxprocs"), field_of(theirs, "gomaxprocs"), "{bin}");
    }
    let last = ours_lines[1];
    assert!((field_of(last, "threads") - field_of(theirs, "threads")).abs() <= 2, "{bin}:\n{last}\n{theirs}");
    let detail =
        run_parkscope(&["schedtrace", "-p", &pid, "--interval", "200ms", "--count", "1", "--detail"]);
    detail.assert_code(0);
    let gmp = |p: &str| detail.stdout.lines().filter(|l| l.trim_start().starts_with(p)).count();
    assert_eq!(gmp("P"), field_of(&detail.stdout, "gomaxprocs") as usize, "{bin}: {detail}");
    assert!(gmp("M") >= 2 && gmp("G") >= 10, "{bin}: {detail}");
    assert!(detail.stdout.contains("(chan receive) m="), "{bin}: {detail}");
    check_scheddetail_matches_godebug(bin, &detail.stdout);
}

/// The `key=` names of a line, in order (`SCHED 9ms: gomaxprocs=2 ...` -> `gomaxprocs= ...`).
fn keys(line: &str) -> Vec<&str> {
    line.split_whitespace().filter_map(|w| w.find('=').map(|i| &w[..=i])).collect()
}

/// How a detail block writes its values: booleans, and an absent M, P or G id as `nil` or
/// a negative number.
fn value_kinds(block: &str) -> BTreeSet<&'static str> {
    const IDS: [&str; 5] = ["m", "p", "curg", "lockedg", "lockedm"];
    block
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| match v {
            "true" | "false" => Some("bool"),
            "nil" if IDS.contains(&k) => Some("nil id"),
            v if v.starts_with('-') && IDS.contains(&k) => Some("negative id"),
            _ => None,
        })
        .collect()
}

/// `--detail` against GODEBUG=schedtrace,scheddetail=1 of another process of the same build:
/// the same keys on the SCHED line and the first P, M and G lines, flags written as booleans
/// (or numbers) alike, and an absent id written as `nil` (or `-1`) alike.
fn check_scheddetail_matches_godebug(bin: &str, ours: &str) {
    let t = GoTarget::start(bin, &["-n", "2"], &[("GODEBUG", "schedtrace=200,scheddetail=1")], true);
    let rx = t.stderr.as_ref().unwrap();
    // Past the blocks printed while the target started up; then one whole block, from a SCHED
    // line up to the next one.
    while rx.try_recv().is_ok() {}
    let mut theirs = String::new();
    let mut started = false;
    loop {
        let l =
            rx.recv_timeout(Duration::from_secs(2)).unwrap_or_else(|e| panic!("{bin}: scheddetail ({e})"));
        if l.starts_with("SCHED ") {
            if started {
                break;
            }
            started = true;
        }
        if started {
            theirs.push_str(&l);
            theirs.push('\n');
        }
    }
    let first = |text: &str, prefix: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("{bin}: no {prefix} line in\n{text}"))
            .to_owned()
    };
    for prefix in ["SCHED", "P", "M", "G"] {
        let (o, t) = (first(ours, prefix), first(&theirs, prefix));
        assert_eq!(keys(&o), keys(&t), "{bin} {prefix}:\nours:   {o}\ntheirs: {t}");
    }
    let (o, t) = (first(ours, "SCHED"), first(&theirs, "SCHED"));
    assert_eq!(
        value_kinds(&o).contains("bool"),
        value_kinds(&t).contains("bool"),
        "{bin}:\nours:   {o}\ntheirs: {t}"
    );
    // Absent ids: Ms without a P exist in both (the idle ones), so both write one.
    let (o, t) = (value_kinds(ours), value_kinds(&theirs));
    for kind in ["nil id", "negative id"] {
        assert_eq!(
            o.contains(kind),
            t.contains(kind),
            "{bin}: {kind} ids:\nours:\n{ours}\ntheirs:\n{theirs}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::shape;

    #[test]
    fn shape_keeps_names_punctuation_and_spacing_only() {
        let go127 = "SCHED 1004ms: gomaxprocs=2 idleprocs=2 threads=10 spinningthreads=0 needspinning=0 \
                     idlethreads=3 runqueue=0 [ 0 0 ] schedticks=[ 9 19 ]";
        let go119 = "SCHED 1004ms: gomaxprocs=2 idleprocs=2 threads=9 spinningthreads=0 idlethreads=3 \
                     runqueue=0 [0 0]";
        assert_eq!(
            shape(go127),
            "gomaxprocs=9 idleprocs=9 threads=9 spinningthreads=9 needspinning=9 idlethreads=9 runqueue=9 \
             [ 9 9 ] schedticks=[ 9 9 ]"
        );
        assert_eq!(
            shape(go119),
            "gomaxprocs=9 idleprocs=9 threads=9 spinningthreads=9 idlethreads=9 runqueue=9 [9 9]"
        );
        assert_ne!(shape(go119), shape(&go119.replace("[0 0]", "[ 0 0 ]")));
    }
}
