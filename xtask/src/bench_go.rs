//! `cargo xtask bench-go`: (1) how long a whole goroutine snapshot of a Go process with 100,000
//! parked goroutines takes (examples/go/parked -many), for Go 1.27 and 1.19, plain (DWARF) and
//! stripped (`-s -w`) builds alternating, with and without stacks: wall time of the real
//! release binary, process start to JSON written; and
//! (2) what a netpoll-heavy Go server keeps of its throughput while a full goroutine snapshot
//! (with stacks) is taken every second, alternating bare and snapshotted runs.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench_common::{load_result, start_go_server, start_loadgen},
    examples, util,
};

#[derive(Debug, Args)]
pub struct BenchGoArgs {
    /// Parked goroutines in the target (besides its fixed population).
    #[arg(long, default_value_t = 100_000)]
    pub goroutines: u32,
    /// Snapshots per configuration (the minimum and median are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Rounds of the throughput part (each: one bare and one snapshotted server run).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of load per server run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

pub fn run(args: BenchGoArgs) -> Result<()> {
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let bin = util::root().join("target/release/parkscope");
    println!("| Go | build | goroutines | mode | min | median |");
    println!("|---|---|---|---|---|---|");
    // The plain build (DWARF: layout and globals from the binary) and the `-s -w` one (no
    // symbols: globals located in its code, layout from the release's table) of each release
    // run side by side, their snapshots alternating, so both see the same machine.
    for release in ["go1.27", "go1.19"] {
        let builds = [("DWARF", format!("parked-{release}")), ("-s -w", format!("parked-{release}-sw"))];
        let many = args.goroutines.to_string();
        // Each target is killed when dropped, also on an early error below.
        let targets: Vec<(&str, examples::GoExample, String)> = builds
            .iter()
            .map(|(build, name)| {
                let target = examples::GoExample::start(name, &["-n", "3", "-many", &many])?;
                let pid = target.pid.to_string();
                Ok((*build, target, pid))
            })
            .collect::<Result<_>>()?;
        for (mode, extra) in [("with stacks", None), ("--no-stacks", Some("--no-stacks"))] {
            let mut times = vec![Vec::new(); targets.len()];
            let mut listed = vec![0; targets.len()];
            for _ in 0..args.runs {
                for (i, (_, _, pid)) in targets.iter().enumerate() {
                    let mut cmd = Command::new(&bin);
                    cmd.args(["snapshot", "-p", pid, "--window", "0", "--json"]);
                    cmd.args(extra);
                    let started = Instant::now();
                    let out = cmd.output().context("running parkscope")?;
                    times[i].push(started.elapsed());
                    if !out.status.success() {
                        bail!("parkscope failed: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                    listed[i] = v["goroutines"].as_array().map_or(0, Vec::len);
                }
            }
            for (i, (build, _, _)) in targets.iter().enumerate() {
                if listed[i] < args.goroutines as usize {
                    bail!(
                        "{release} {build}: only {} goroutines listed, expected at least {}",
                        listed[i],
                        args.goroutines
                    );
                }
                let t = &mut times[i];
                t.sort();
                let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
                println!(
                    "| {release} | {build} | {} | {mode} | {} | {} |",
                    listed[i],
                    ms(t[0]),
                    ms(t[t.len() / 2])
                );
            }
        }
    }
    server_throughput(&bin, &args)
}

/// httpserver-go1.27 driven by loadgen-go1.27 (16 keep-alive connections: every request is a
/// netpoller park and ready on each side), bare vs with `parkscope snapshot --window 0` of the
/// server every second. Returns requests/s.
fn server_run(bin: &std::path::Path, seconds: u64, snapshots: bool) -> Result<(f64, usize)> {
    let dir = examples::bin_dir();
    let (server, addr) = start_go_server(&dir)?;
    let pid = server.pid().to_string();
    let load = start_loadgen(&dir, &addr, seconds)?;
    let mut taken = 0;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    if snapshots {
        // First snapshot after one second, then every second, while the load runs.
        while Instant::now() + Duration::from_secs(1) < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let out = Command::new(bin).args(["snapshot", "-p", &pid, "--window", "0", "--json"]).output()?;
            if !out.status.success() {
                bail!("snapshot failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            taken += 1;
        }
    }
    let (rps, errors) = load_result(&load.finish()?)?;
    if errors > 0 {
        bail!("loadgen reported {errors} errors");
    }
    drop(server);
    Ok((rps, taken))
}

fn server_throughput(bin: &std::path::Path, args: &BenchGoArgs) -> Result<()> {
    util::step(&format!(
        "netpoll-heavy server: {} rounds x {} s, bare vs a goroutine snapshot every second",
        args.rounds, args.seconds
    ));
    let mut ratios = Vec::new();
    println!("\n| round | bare req/s | snapshotted req/s | snapshots | ratio |");
    println!("|---|---|---|---|---|");
    for round in 0..args.rounds {
        // Alternate which goes first so drift does not favour one side.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut bare = 0.0;
        let mut traced = (0.0, 0);
        for snapshots in order {
            let r = server_run(bin, args.seconds, snapshots)?;
            if snapshots { traced = r } else { bare = r.0 }
        }
        let ratio = traced.0 / bare;
        ratios.push(ratio);
        println!("| {} | {bare:.0} | {:.0} | {} | {ratio:.3} |", round + 1, traced.0, traced.1);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("\nmedian ratio {median:.3} (goal >= 0.99: {})", if median >= 0.99 { "MET" } else { "NOT MET" });
    Ok(())
}
