//! Clean detach on signals: Ctrl-C or SIGTERM during a snapshot window must end the run at once,
//! print the view taken so far, and exit 130; the eBPF links go with our process.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use parkscope_tests::{Blocker, LiveParkscope};
use serde_json::Value;

fn interrupted_snapshot_prints_the_view(signal: &str) {
    let blocker = Blocker::start(&[]);
    let started = Instant::now();
    // Signal only once the probes are attached (the agent logs it at -v), plus a little for the
    // seed view: a fixed sleep is not enough on a loaded 2-core machine.
    let pid = blocker.pid.to_string();
    let run = LiveParkscope::start_until(
        &["snapshot", "-p", &pid, "--window", "30s", "--json", "--no-stacks"],
        "probes attached",
    );
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-s", signal, &run.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let (code, stdout, _) = run.finish();
    let elapsed = signalled.elapsed();
    assert!(started.elapsed() < Duration::from_secs(30), "the 30 s window ran to its end");
    assert_eq!(code, 130, "SIG{signal} should exit 130; stdout:\n{stdout}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?} after the signal to finish");
    let view: Value = serde_json::from_str(&stdout).expect("a JSON view is still printed");
    let window_ns = view["summary"]["window_ns"].as_u64().unwrap();
    assert!((400_000_000..30_000_000_000).contains(&window_ns), "window_ns {window_ns}");
    let tids: Vec<u64> =
        view["threads"].as_array().unwrap().iter().map(|t| t["tid"].as_u64().unwrap()).collect();
    assert!(tids.contains(&u64::from(blocker.role("pipe_read").tid)));
}

#[test]
fn sigint_mid_window_prints_and_exits_130() {
    interrupted_snapshot_prints_the_view("INT");
}

#[test]
fn sigterm_mid_window_prints_and_exits_130() {
    interrupted_snapshot_prints_the_view("TERM");
}
