//! `--go-uprobes` against real Go processes (Go 1.19 and Go 1.27 builds of examples/go/parked):
//! the exact time-in-state of a goroutine that parks during the window, checked against the
//! CLOCK_MONOTONIC time the target itself read just before parking; lower bounds for the
//! goroutines parked throughout; and the bad inputs. Profiles with --go-uprobes are checked in
//! profile.rs, beside the sampled goroutine profile.

use parkscope_tests::{Blocker, GoTarget, go_checks::check_go_uprobes_time_a_park, run_parkscope};

const GO_VERSIONS: [&str; 2] = ["go1.19", "go1.27"];

#[test]
fn snapshot_times_a_park_during_the_window_exactly_go119() {
    check_go_uprobes_time_a_park("parked-go1.19");
}

#[test]
fn snapshot_times_a_park_during_the_window_exactly_go127() {
    check_go_uprobes_time_a_park("parked-go1.27");
}

/// A `-s -w` build: casgstatus and gopark are placed from the pclntab, not the symbol table.
#[test]
fn snapshot_times_a_park_during_the_window_exactly_go127_stripped() {
    check_go_uprobes_time_a_park("parked-go1.27-sw");
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
