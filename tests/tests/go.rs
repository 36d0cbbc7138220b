//! Go runtime hooks against real Go processes (Go 1.19 and Go 1.27 builds of examples/go/parked
//! and parkedcgo). Ground truth is the target's own runtime: its goroutine dump
//! (net/http/pprof `goroutine?debug=2`) and its GODEBUG=schedtrace lines.

use std::{collections::BTreeSet, process::Command, thread, time::Duration};

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
/// not make its syscalls pay for probes it does not use; `--threads` asks for them.
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
            assert!(held >= 2, "--threads should attach the syscall probes; holds {held}");
            assert!(first.contains(" blocked="), "thread-level line expected: {first}");
        } else {
            assert_eq!(held, 0, "Go-style schedtrace holds {held} eBPF programs");
            assert!(first.contains("gomaxprocs="), "GODEBUG-style line expected: {first}");
        }
    }
}
