//! Go runtime hooks against real Go processes (Go 1.19 and Go 1.27 builds of examples/go/parked
//! and parkedcgo). Ground truth is the target's own runtime: its goroutine dump
//! (net/http/pprof `goroutine?debug=2`) and its GODEBUG=schedtrace lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    thread,
    time::Duration,
};

use parkscope_tests::{GoTarget, run_parkscope};
use serde_json::Value;

const GO_VERSIONS: [&str; 2] = ["go1.19", "go1.27"];

fn snapshot(pid: u32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["snapshot", "-p", &pid, "--json"];
    args.extend_from_slice(extra);
    let out = run_parkscope(&args);
    out.assert_code(0);
    out.json()
}

/// The HTTP connection that fetched the dump has goroutines of its own that come and go, and
/// the server's accept loop is woken by that very fetch (the dump may catch it runnable while
/// the snapshot, a moment later, finds it back in IO wait): the measurement disturbs them.
fn transient_in_dump(reason: &str, block: &str) -> bool {
    reason == "running"
        || block.contains("net/http.(*conn")
        || block.contains("net/http.(*connReader")
        || block.contains("net/http.(*Server).Serve")
}

fn transient_ours(g: &Value) -> bool {
    let s = |k: &str| g[k].as_str().unwrap_or_default().to_owned();
    let in_stack = |p: &str| {
        g["stack"].as_array().is_some_and(|st| st.iter().any(|f| f.as_str().unwrap_or("").contains(p)))
    };
    ["net/http.(*conn", "net/http.(*connReader", "net/http.(*Server).Serve"]
        .iter()
        .any(|p| s("start").contains(p) || s("created_by").contains(p) || in_stack(p))
}

/// How the runtime's dump labels a goroutine: its wait reason while waiting, else its status.
fn label(g: &Value) -> String {
    g["wait_reason"].as_str().unwrap_or_else(|| g["status"].as_str().unwrap()).to_owned()
}

fn check_goroutines_match_dump(bin: &str) {
    let t = GoTarget::start(bin, &["-n", "3"], &[], false);
    let dump = t.pprof_dump();
    let snap = snapshot(t.pid, &["--window", "0"]);
    assert_eq!(snap["runtime"]["kind"], "go");
    let version = t.info["go"].as_str().unwrap();
    assert_eq!(snap["runtime"]["version"], version);
    let ours: BTreeMap<u64, &Value> = snap["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| !transient_ours(g))
        .map(|g| (g["goid"].as_u64().unwrap(), g))
        .collect();
    // Every goroutine of the runtime's dump, one for one, with the same wait reason.
    for (goid, (reason, block)) in &dump {
        if transient_in_dump(reason, block) {
            continue;
        }
        let g = ours
            .get(goid)
            .unwrap_or_else(|| panic!("{bin}: goroutine {goid} [{reason}] missing; ours: {ours:#?}"));
        assert_eq!(&label(g), reason, "{bin}: goroutine {goid}: {g:#}\ndump:\n{block}");
    }
    // Ours has nothing else but the runtime's system goroutines, which the dump leaves out.
    for (goid, g) in &ours {
        if !dump.contains_key(goid) {
            let start = g["start"].as_str().unwrap();
            assert!(start.starts_with("runtime.") && start != "runtime.main", "{bin}: extra goroutine {g:#}");
        }
    }
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
    for g in ours.values().filter(|g| g["wait_reason"] == "IO wait") {
        assert_eq!(g["netpoll"]["mode"], "read", "{g:#}");
        assert!(g["netpoll"]["fd_desc"].as_str().unwrap().starts_with("tcp 127.0.0.1:"), "{g:#}");
    }
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

#[test]
fn goroutines_match_the_runtimes_own_dump() {
    for v in GO_VERSIONS {
        check_goroutines_match_dump(&format!("parked-{v}"));
    }
}

#[test]
fn dwarf_less_builds_are_read_through_the_layout_table() {
    for v in GO_VERSIONS {
        let bin = format!("parked-{v}-w");
        check_goroutines_match_dump(&bin);
        let t = GoTarget::start(&bin, &["-n", "1"], &[], false);
        let snap = snapshot(t.pid, &["--window", "0", "--no-stacks"]);
        assert_eq!(snap["runtime"]["layout"], format!("table:{v}"));
    }
}

#[test]
fn stripped_builds_and_non_go_targets_get_specific_errors() {
    for v in GO_VERSIONS {
        let t = GoTarget::start(&format!("parked-{v}-sw"), &["-n", "1"], &[], false);
        let pid = t.pid.to_string();
        let out = run_parkscope(&["snapshot", "-p", &pid, "--window", "0"]);
        out.assert_code(7);
        assert!(out.stderr.contains("-s -w") && out.stderr.contains("hint:"), "{out}");
        // --no-go still gives the thread view.
        run_parkscope(&["snapshot", "-p", &pid, "--window", "0", "--no-go"]).assert_code(0);
    }
    let blocker = parkscope_tests::Blocker::start(&[]);
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&["snapshot", "-p", &pid, "--window", "0", "--goroutines"]);
    out.assert_code(8);
    assert!(out.stderr.contains("not a Go program"), "{out}");
    let plain = run_parkscope(&["snapshot", "-p", &pid, "--window", "0", "--json"]);
    plain.assert_code(0);
    assert_eq!(plain.json()["runtime"], Value::Null);
}

#[test]
fn cgo_calls_are_marked_with_their_c_function() {
    for v in GO_VERSIONS {
        let t = GoTarget::start(&format!("parkedcgo-{v}"), &["-n", "2"], &[], false);
        let snap = snapshot(t.pid, &["--window", "0"]);
        let cgo: Vec<&Value> =
            snap["goroutines"].as_array().unwrap().iter().filter(|g| g["cgo"] == true).collect();
        assert_eq!(cgo.len(), 2, "{v}: {:#}", snap["goroutines"]);
        let fds: BTreeSet<i64> =
            t.info["pipe_fds"].as_array().unwrap().iter().map(|f| f.as_i64().unwrap()).collect();
        for g in cgo {
            assert_eq!(g["status"], "syscall");
            assert_eq!(g["c_function"], "parkscope_c_block", "{g:#}");
            assert_eq!(g["syscall"]["name"], "read", "{g:#}");
            assert!(fds.contains(&g["syscall"]["fd"].as_i64().unwrap()), "{g:#}");
        }
    }
}

#[test]
fn schedtrace_prints_the_runtimes_own_format() {
    for v in GO_VERSIONS {
        let t = GoTarget::start(&format!("parked-{v}"), &["-n", "2"], &[("GODEBUG", "schedtrace=200")], true);
        let pid = t.pid.to_string();
        let out = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "2"]);
        out.assert_code(0);
        let theirs: Vec<String> = {
            let rx = t.stderr.as_ref().unwrap();
            let mut v = Vec::new();
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
                if l.starts_with("SCHED ") {
                    v.push(l);
                }
                if v.len() >= 3 {
                    break;
                }
            }
            v
        };
        let theirs = theirs.last().unwrap_or_else(|| panic!("{v}: no GODEBUG output"));
        for ours in out.stdout.lines() {
            // Same fields in the same order with the same punctuation; numbers may differ.
            let shape = |l: &str| -> String {
                l.split_once(": ")
                    .unwrap()
                    .1
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '9' } else { c })
                    .collect::<String>()
                    .split(' ')
                    .map(|w| w.trim_start_matches('9').to_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let squash = |s: String| {
                s.split_whitespace().filter(|w| *w != "9" && !w.is_empty()).collect::<Vec<_>>().join(" ")
            };
            assert_eq!(squash(shape(ours)), squash(shape(theirs)), "{v}:\nours:   {ours}\ntheirs: {theirs}");
            let field = |l: &str, k: &str| -> i64 {
                let at = l.find(&format!(" {k}=")).unwrap_or_else(|| panic!("{k} in {l}")) + k.len() + 2;
                l[at..].split(' ').next().unwrap().parse().unwrap()
            };
            assert_eq!(field(ours, "gomaxprocs"), field(theirs, "gomaxprocs"), "{v}");
            assert!((field(ours, "threads") - field(theirs, "threads")).abs() <= 2, "{v}:\n{ours}\n{theirs}");
        }
        let detail =
            run_parkscope(&["schedtrace", "-p", &pid, "--interval", "200ms", "--count", "1", "--detail"]);
        detail.assert_code(0);
        let gmp = |p: &str| detail.stdout.lines().filter(|l| l.trim_start().starts_with(p)).count();
        assert_eq!(gmp("P"), field_of(&detail.stdout, "gomaxprocs") as usize, "{detail}");
        assert!(gmp("M") >= 2 && gmp("G") >= 10, "{detail}");
        assert!(detail.stdout.contains("(chan receive) m="), "{detail}");
    }
}

fn field_of(text: &str, k: &str) -> i64 {
    let at = text.find(&format!(" {k}=")).unwrap() + k.len() + 2;
    text[at..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn target_exiting_mid_run_keeps_the_first_view() {
    let t = GoTarget::start("parked-go1.27", &["-n", "2"], &[], false);
    let pid = t.pid.to_string();
    let killer = {
        let pid = t.pid as i32;
        thread::spawn(move || {
            // Past the first view (taken at attach), inside the 3 s window.
            thread::sleep(Duration::from_millis(1500));
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        })
    };
    let out = run_parkscope(&["snapshot", "-p", &pid, "--window", "3s", "--json"]);
    killer.join().unwrap();
    out.assert_code(5);
    let v = out.json();
    assert_eq!(v["target_exited"], true);
    assert!(!v["goroutines"].as_array().unwrap().is_empty(), "the seed view has the goroutines");
}

/// The eBPF programs a running parkscope holds, by its own fds (ground truth: the kernel's
/// anon-inode names).
fn bpf_programs_held(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str() == Some("anon_inode:bpf-prog"))
        .count()
}

/// GODEBUG-style lines come from the runtime's memory alone: schedtrace on a Go target must
/// not make its syscalls pay for probes it does not use; `--threads` asks for the switch probe.
#[test]
fn go_schedtrace_attaches_no_probes_unless_threads() {
    let t = GoTarget::start("parked-go1.27", &["-n", "1"], &[], false);
    for (extra, want_probes) in [(None, false), (Some("--threads"), true)] {
        let mut child = std::process::Command::new(parkscope_tests::parkscope_bin())
            .args(["schedtrace", "-p", &t.pid.to_string(), "--interval", "400ms", "--count", "3"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut first)
            .unwrap();
        assert!(first.starts_with("SCHED "), "{first}");
        let held = bpf_programs_held(child.id());
        let status = child.wait().unwrap();
        assert!(status.success());
        if want_probes {
            // Exactly the sched_switch program: blocks are attributed at the context switch,
            // and the per-syscall probes (sys_enter/sys_exit) stay off (issue 13).
            assert_eq!(held, 1, "--threads should attach the sched_switch probe only; holds {held}");
            assert!(first.contains(" blocked="), "thread-level line expected: {first}");
        } else {
            assert_eq!(held, 0, "Go-style schedtrace holds {held} eBPF programs");
            assert!(first.contains("gomaxprocs="), "GODEBUG-style line expected: {first}");
        }
    }
}
