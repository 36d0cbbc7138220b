//! Clean detach on signals: Ctrl-C or SIGTERM during a snapshot window must end the run at once,
//! print the view taken so far, and exit 130; the eBPF links go with our process.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use parkscope_tests::{Blocker, parkscope_bin};
use serde_json::Value;

fn interrupted_snapshot_prints_the_view(signal: &str) {
    let blocker = Blocker::start(&[]);
    let started = Instant::now();
    let mut child = Command::new(parkscope_bin())
        .args(["-v", "snapshot", "-p", &blocker.pid.to_string(), "--window", "30s", "--json", "--no-stacks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn parkscope");
    // Signal only once the probes are attached (the agent logs it at -v), plus a little for the
    // seed view: a fixed sleep is not enough on a loaded 2-core machine.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("probes attached") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "parkscope ended before attaching:\n{log}");
        log.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let exit = child.wait().unwrap();
    let elapsed = signalled.elapsed();
    assert!(started.elapsed() < Duration::from_secs(30), "the 30 s window ran to its end");
    assert_eq!(exit.code(), Some(130), "SIG{signal} should exit 130; stdout:\n{stdout}");
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
