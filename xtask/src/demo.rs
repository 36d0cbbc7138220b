//! `cargo xtask demo`: what parkscope is for, in one minute. Starts the bundled C blocker (one
//! thread per kind of blocking) and a stripped Go program (goroutines parked on the netpoller,
//! channels, a mutex, a thread held by a raw read), and runs the commands a person would run on
//! a stalled service: a snapshot of each, then live schedtrace lines.

use anyhow::Result;

use crate::{examples, util};

/// The Go target of the demo: built with `-ldflags="-s -w"`, as distro packages and container
/// images ship Go servers (no symbol table, no DWARF; parkscope reads it from its pclntab).
const GO_DEMO_BINARY: &str = "parked-go1.27-sw";

pub fn run() -> Result<()> {
    crate::setup::run()?;
    examples::build()?;
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let bin = util::root().join("target/release/parkscope");

    util::step("starting examples/bin/blocker: one thread per kind of blocking");
    let blocker = examples::Blocker::start(&[])?;
    println!("blocker pid {} started; its threads:", blocker.pid);
    for role in &blocker.roles {
        let name = role["role"].as_str().unwrap_or("?");
        let what = match role["syscall"].as_str() {
            Some(call) => format!("blocks in {call}"),
            None => "spins on CPU (no syscall)".to_owned(),
        };
        println!("  tid {:<7} {name:<11} {what}", role["tid"]);
    }
    let pid = blocker.pid.to_string();
    util::step(&format!("parkscope snapshot -p {pid} --window 2s"));
    util::run_visible(&bin, &["snapshot", "-p", &pid, "--window", "2s"])?;
    util::step(&format!("parkscope schedtrace -p {pid} --interval 1000ms --count 3"));
    util::run_visible(&bin, &["schedtrace", "-p", &pid, "--interval", "1000ms", "--count", "3"])?;
    drop(blocker);

    util::step(&format!(
        "starting examples/bin/{GO_DEMO_BINARY}: a Go program stripped with -ldflags=\"-s -w\""
    ));
    let go = examples::GoExample::start(GO_DEMO_BINARY, &["-n", "2"])?;
    println!(
        "pid {} ({}): goroutines parked for good on TCP reads whose peer never writes (fds {}), \
         on channels, a select, a mutex and a sleep; one goroutine holds its OS thread in a raw \
         read(2) on a pipe (fd {}). No symbols, no DWARF: the runtime is found from its pclntab.",
        go.pid,
        go.info["go"].as_str().unwrap_or("?"),
        go.info["tcp_read_fds"],
        go.info["pipe_fd"],
    );
    let pid = go.pid.to_string();
    util::step(&format!(
        "parkscope snapshot -p {pid} --window 1s   (threads, then goroutines grouped by stack)"
    ));
    util::run_visible(&bin, &["snapshot", "-p", &pid, "--window", "1s"])?;
    util::step(&format!(
        "parkscope schedtrace -p {pid} --interval 1000ms --count 3   (the runtime's own GODEBUG=schedtrace lines, live)"
    ));
    util::run_visible(&bin, &["schedtrace", "-p", &pid, "--interval", "1000ms", "--count", "3"])?;
    drop(go);

    util::step("demo done: try `parkscope snapshot -p PID` (or `--json`) on any process");
    Ok(())
}
