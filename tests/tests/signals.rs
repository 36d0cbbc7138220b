//! Clean detach on signals: Ctrl-C or SIGTERM during a snapshot window must end the run at once,
//! print the view taken so far, and exit 130; the eBPF links go with our process.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use parkscope_tests::{Blocker, parkscope_bin};
use serde_json::Value;

fn interrupted_snapshot_prints_the_view(signal: &str) {
    let blocker = Blocker::start(&[]);
    let started = Instant::now();
    let mut child = Command::new(parkscope_bin())
        .args(["snapshot", "-p", &blocker.pid.to_string(), "--window", "30s", "--json", "--no-stacks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn parkscope");
    // Long enough for the probes to be attached and the seed view taken.
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let exit = child.wait().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(exit.code(), Some(130), "SIG{signal} should exit 130; stdout:\n{stdout}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}: the 30 s window was not cut short");
    let view: Value = serde_json::from_str(&stdout).expect("a JSON view is still printed");
    let window_ns = view["summary"]["window_ns"].as_u64().unwrap();
    assert!((1_000_000_000..10_000_000_000).contains(&window_ns), "window_ns {window_ns}");
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
