//! Go runtime hooks against real Go processes (Go 1.19 and Go 1.27 builds of examples/go/parked
//! and parkedcgo). Ground truth is the target's own runtime: its goroutine dump
//! (net/http/pprof `goroutine?debug=2`) and its GODEBUG=schedtrace lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    thread,
    time::Duration,
};

use parkscope_tests::{
    GoTarget,
    go_checks::{check_goroutines_match_dump, check_schedtrace_matches_godebug, snapshot},
    run_parkscope,
};
use serde_json::Value;

const GO_VERSIONS: [&str; 2] = ["go1.19", "go1.27"];

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

/// `-ldflags="-s -w"` builds (no symbol table, no DWARF): the runtime's globals are located in
/// its code (probes/src/go/locate.rs), the layout comes from the release's table, and the
/// goroutines must still match the runtime's own dump.
#[test]
fn stripped_builds_are_read_and_non_go_targets_get_specific_errors() {
    for v in GO_VERSIONS {
        let bin = format!("parked-{v}-sw");
        check_goroutines_match_dump(&bin);
        let t = GoTarget::start(&bin, &["-n", "1"], &[], false);
        let snap = snapshot(t.pid, &["--window", "0", "--no-stacks"]);
        assert_eq!(snap["runtime"]["layout"], format!("table:{v}"));
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

/// Without DWARF there is no CFI for Go code: thread stacks come from the pclntab's SP-delta
/// tables and still reach the scheduler (idle Ms) and the program's own function (the thread
/// blocked in a raw read(2)), as the plain builds' do.
#[test]
fn dwarf_less_builds_get_whole_thread_stacks() {
    for v in GO_VERSIONS {
        for bin in [format!("parked-{v}-w"), format!("parked-{v}-sw")] {
            let t = GoTarget::start(&bin, &["-n", "1"], &[], false);
            let snap = snapshot(t.pid, &["--window", "0"]);
            let threads = snap["threads"].as_array().expect("threads");
            let user = |t: &Value| -> Vec<String> {
                t["user_stack"].as_array().map_or_else(Vec::new, |s| {
                    s.iter().filter_map(|f| Some(f.as_str()?.split('+').next()?.to_owned())).collect()
                })
            };
            let mut idle = 0;
            for t in threads.iter().filter(|t| t["role"] == "idle_m" && t["syscall"]["name"] == "futex") {
                let stack = user(t);
                assert!(
                    stack.iter().any(|f| f == "runtime.stopm" || f == "runtime.notesleep"),
                    "{bin}: idle M {} stack: {stack:#?}",
                    t["tid"]
                );
                idle += 1;
            }
            assert!(idle > 0, "{bin}: no idle M in {threads:#?}");
            let read = threads
                .iter()
                .find(|t| t["syscall"]["name"] == "read")
                .unwrap_or_else(|| panic!("{bin}: no thread in read(2): {threads:#?}"));
            let stack = user(read);
            assert!(stack.iter().any(|f| f == "main.parkedPipeRead"), "{bin}: read thread stack: {stack:#?}");
        }
    }
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

/// Plain builds and `-s -w` ones (globals located in the code) alike.
#[test]
fn schedtrace_prints_the_runtimes_own_format() {
    for v in GO_VERSIONS.iter().flat_map(|v| [v.to_string(), format!("{v}-sw")]) {
        check_schedtrace_matches_godebug(&format!("parked-{v}"));
    }
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

/// One goroutine group of the snapshot table: its header count, the goids it lists, the stack
/// printed for it.
#[derive(Debug)]
struct TableGroup {
    count: usize,
    goids: Vec<u64>,
    stack: Vec<String>,
}

fn table_groups(table: &str) -> Vec<TableGroup> {
    let mut groups: Vec<TableGroup> = Vec::new();
    let goroutines = table.find("\ngoroutines: ").expect("a goroutine section");
    for line in table[goroutines..].lines() {
        let trimmed = line.trim_start();
        if let Some((count, rest)) = trimmed.split_once(" x [")
            && let Ok(count) = count.parse::<usize>()
        {
            let ids = rest.rsplit_once("  goroutines ").expect("goroutine ids in the header").1;
            let goids = ids.split(' ').filter(|w| !w.starts_with('+')).map(|w| w.parse().unwrap()).collect();
            groups.push(TableGroup { count, goids, stack: Vec::new() });
        } else if line.starts_with("         ")
            && !trimmed.starts_with("goroutine ")
            && !trimmed.starts_with("started at ")
            && !trimmed.starts_with("... ")
            && let Some(g) = groups.last_mut()
        {
            g.stack.push(trimmed.to_owned());
        } else if line.starts_with("tid ") {
            break;
        }
    }
    groups
}

/// The function names of a stack printed by parkscope ("name+0x1c (module) at file:line").
fn functions(stack: &[String]) -> Vec<String> {
    stack.iter().map(|f| f.split('+').next().unwrap().to_owned()).collect()
}

/// The runtime's `goroutine?debug=1` dump: (count, function names of its `#` lines) per stack.
fn debug1_groups(addr: &str) -> Vec<(usize, Vec<String>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /debug/pprof/goroutine?debug=1 HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().skip_while(|l| !l.contains(" @ 0x"));
            let count = lines.next()?.split(' ').next()?.parse().ok()?;
            let funcs = lines.filter_map(|l| {
                l.strip_prefix("#\t")?.split('\t').nth(1)?.split('+').next().map(str::to_owned)
            });
            Some((count, funcs.collect()))
        })
        .collect()
}

#[test]
fn table_groups_goroutines_by_identical_stack() {
    const MANY: usize = 500;
    let t = GoTarget::start("parked-go1.27", &["-n", "2", "-many", &MANY.to_string()], &[], false);
    let pid = t.pid.to_string();
    let json = snapshot(t.pid, &["--window", "0"]);
    let out = run_parkscope(&["snapshot", "-p", &pid, "--window", "0"]);
    out.assert_code(0);
    let groups = table_groups(&out.stdout);
    let by_goid: BTreeMap<u64, &Value> =
        json["goroutines"].as_array().unwrap().iter().map(|g| (g["goid"].as_u64().unwrap(), g)).collect();

    // Every goroutine listed under a group has the stack printed for it (first frames), and
    // the header counts exactly the goroutines with that stack (the same target, read twice:
    // the parked ones do not move).
    for g in &groups {
        for goid in &g.goids {
            let Some(ours) = by_goid.get(goid) else { continue };
            let stack: Vec<String> =
                ours["stack"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect();
            assert_eq!(stack[..g.stack.len().min(stack.len())], g.stack[..], "goroutine {goid} in {g:#?}");
        }
    }
    let many = groups
        .iter()
        .find(|g| g.stack.iter().any(|f| f.starts_with("main.parkedMany+")))
        .unwrap_or_else(|| panic!("no parkedMany group:\n{out}"));
    assert_eq!(many.count, MANY, "{many:#?}");
    assert!(!many.stack.iter().any(|f| f.starts_with("main.main+")), "{many:#?}");
    let main = groups.iter().find(|g| g.goids.contains(&1)).expect("main's group");
    assert!(main.stack.iter().any(|f| f.starts_with("main.main+")), "{main:#?}");
    assert!(!main.stack.iter().any(|f| f.starts_with("main.parkedMany+")), "{main:#?}");

    // The runtime's own grouping agrees: each of its stacks through our example's functions is
    // one group of ours with the same count and the same functions. The dump hides runtime.*
    // frames and lists inlined calls as frames of their own, which our stacks fold into their
    // caller, and hides the wrappers of `go` statements (main.main.gowrap2); for a goroutine
    // in a syscall it starts where the goroutine entered it, while ours is its thread's stack,
    // from the kernel entry: ours without those must be the dump's in order from the first
    // frame the dump has, ending in the same function.
    let is_subsequence = |ours: &[String], theirs: &[String]| {
        let mut rest = theirs.iter();
        ours.iter().all(|f| rest.any(|t| t == f))
    };
    for (count, funcs) in debug1_groups(t.info["pprof"].as_str().unwrap()) {
        // It shows runtime.main under main.main: runtime frames are compared on neither side.
        let funcs: Vec<String> = funcs.into_iter().filter(|f| !f.starts_with("runtime.")).collect();
        if !funcs.iter().any(|f| f.starts_with("main.")) || funcs.iter().any(|f| f.starts_with("net/http.")) {
            continue;
        }
        let matching = groups.iter().find(|g| {
            let ours: Vec<String> = functions(&g.stack)
                .into_iter()
                .filter(|f| !f.starts_with("runtime.") && !f.contains(".gowrap"))
                .skip_while(|f| !funcs.contains(f))
                .collect();
            ours.last() == funcs.last() && is_subsequence(&ours, &funcs)
        });
        let g = matching.unwrap_or_else(|| panic!("no group with {funcs:?}:\n{out}"));
        assert_eq!(g.count, count, "{funcs:?}: {g:#?}");
    }
}

/// `schedtrace --json` on a Go target: one object per line with the runtime's own SCHED numbers,
/// named as the text names them, agreeing with the text form on the same target.
#[test]
fn go_schedtrace_json_has_the_text_lines_numbers() {
    let t = GoTarget::start("parked-go1.27", &["-n", "1"], &[], false);
    let pid = t.pid.to_string();
    let text = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "1"]);
    text.assert_code(0);
    let line = text.stdout.lines().next().expect("a text line");
    // `SCHED <ms>ms: k=v ... [q0 q1 ..] schedticks=[ .. ]`: the named numbers before the lists.
    let (_, fields) = line.split_once("ms: ").expect("SCHED <ms>ms: ");
    let named: BTreeMap<&str, i64> = fields
        .split(' ')
        .map_while(|f| f.split_once('=').and_then(|(k, v)| Some((k, v.parse().ok()?))))
        .collect();
    assert!(named.contains_key("gomaxprocs") && named.contains_key("runqueue"), "{line}");
    let queues = line.split_once('[').expect("the per-P list").1.split(']').next().unwrap_or_default();
    let queues: Vec<u64> = queues.split_whitespace().map(|q| q.parse().expect("a queue length")).collect();

    let out = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "3", "--json"]);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"));
        assert_eq!(v["runtime"], "go", "{l}");
        assert_eq!(v["pid"].as_u64(), Some(u64::from(t.pid)), "{l}");
        assert!(v["elapsed_ms"].as_u64().is_some(), "{l}");
        let keys: BTreeSet<&str> = v.as_object().expect("an object").keys().map(String::as_str).collect();
        for name in named.keys() {
            assert!(keys.contains(name), "{name} of the text line missing: {l}");
        }
        // A parked target: its Ps and Ms do not change between the two runs.
        for name in ["gomaxprocs", "threads"] {
            assert_eq!(v[name].as_i64(), named.get(name).copied(), "{name} vs the text line {line:?}: {l}");
        }
        let sizes = v["runqsizes"].as_array().expect("runqsizes");
        assert_eq!(sizes.len(), queues.len(), "one run queue per P, as the text lists: {l}");
        assert_eq!(sizes.len() as i64, named["gomaxprocs"], "{l}");
        assert_eq!(v.get("schedticks").is_some(), line.contains("schedticks="), "{l}");
    }
}
