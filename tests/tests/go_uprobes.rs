//! `--go-uprobes` against real Go processes (Go 1.19 and Go 1.27 builds of examples/go/parked):
//! the exact time-in-state of a goroutine that parks during the window, checked against the
//! CLOCK_MONOTONIC time the target itself read just before parking; lower bounds for the
//! goroutines parked throughout; and the bad inputs. Profiles with --go-uprobes are checked in
//! profile.rs, beside the sampled goroutine profile.

use parkscope_tests::{Blocker, GoTarget, LiveParkscope, monotonic_ns, run_parkscope};
use serde_json::Value;

const GO_VERSIONS: [&str; 2] = ["go1.19", "go1.27"];
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

fn snapshot_times_a_park_during_the_window_exactly(bin: &str) {
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
    // The goroutine in a raw read(2) since before attach: its thread's syscall time.
    let reader = view["goroutines"].as_array().unwrap().iter().find(|g| {
        g["stack"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("main.parkedPipeRead"))
    });
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

#[test]
fn snapshot_times_a_park_during_the_window_exactly_go119() {
    snapshot_times_a_park_during_the_window_exactly("parked-go1.19");
}

#[test]
fn snapshot_times_a_park_during_the_window_exactly_go127() {
    snapshot_times_a_park_during_the_window_exactly("parked-go1.27");
}

/// A `-s -w` build: casgstatus and gopark are placed from the pclntab, not the symbol table.
#[test]
fn snapshot_times_a_park_during_the_window_exactly_go127_stripped() {
    snapshot_times_a_park_during_the_window_exactly("parked-go1.27-sw");
}

#[test]
fn go_uprobes_bad_inputs_get_specific_errors() {
    // A zero window has nothing to watch.
    let t = GoTarget::start(&format!("parked-{}", GO_VERSIONS[1]), &["-n", "1"], &[], false);
    let out = run_parkscope(&["snapshot", "-p", &t.pid.to_string(), "--go-uprobes", "--window", "0"]);
    out.assert_code(2);
    assert!(out.stderr.contains("hint:"), "{out}");
    // Not a Go program.
    let blocker = Blocker::start(&[]);
    let out = run_parkscope(&["snapshot", "-p", &blocker.pid.to_string(), "--go-uprobes", "--window", "1s"]);
    out.assert_code(8);
    assert!(out.stderr.contains("not a Go program") && out.stderr.contains("hint:"), "{out}");
    let out = run_parkscope(&[
        "profile",
        "-p",
        &blocker.pid.to_string(),
        "--go-uprobes",
        "-d",
        "1s",
        "-o",
        "/dev/null",
    ]);
    out.assert_code(8);
    // Uprobes are for goroutines' waits: not with CPU profiles.
    let out = run_parkscope(&[
        "profile",
        "-p",
        &t.pid.to_string(),
        "--kind",
        "cpu",
        "--go-uprobes",
        "-d",
        "1s",
        "-o",
        "/dev/null",
    ]);
    out.assert_code(2);
}
