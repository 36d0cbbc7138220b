//! `cargo xtask bench-go`: how long a whole goroutine snapshot of a Go process with 100,000
//! parked goroutines takes (examples/go/parked -many), for each supported Go release, with and
//! without stacks. Wall time of the real release binary, process start to JSON written.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{examples, util};

#[derive(Debug, Args)]
pub struct BenchGoArgs {
    /// Parked goroutines in the target (besides its fixed population).
    #[arg(long, default_value_t = 100_000)]
    pub goroutines: u32,
    /// Snapshots per configuration (the minimum and median are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

pub fn run(args: BenchGoArgs) -> Result<()> {
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let bin = util::root().join("target/release/parkscope");
    println!("| Go | goroutines | mode | min | median |");
    println!("|---|---|---|---|---|");
    for release in ["go1.27", "go1.19"] {
        let exe = examples::bin_dir().join(format!("parked-{release}"));
        let many = args.goroutines.to_string();
        let mut child = Command::new(&exe)
            .args(["-n", "3", "-many", &many])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let pid = loop {
            let Some(line) = lines.next() else { bail!("{} exited before it was ready", exe.display()) };
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            if v["ready"] == true {
                break v["pid"].as_u64().context("pid")?.to_string();
            }
        };
        for (mode, extra) in [("with stacks", None), ("--no-stacks", Some("--no-stacks"))] {
            let mut times = Vec::new();
            let mut listed = 0;
            for _ in 0..args.runs {
                let mut cmd = Command::new(&bin);
                cmd.args(["snapshot", "-p", &pid, "--window", "0", "--json"]);
                cmd.args(extra);
                let started = Instant::now();
                let out = cmd.output().context("running parkscope")?;
                times.push(started.elapsed());
                if !out.status.success() {
                    bail!("parkscope failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                listed = v["goroutines"].as_array().map_or(0, Vec::len);
            }
            if listed < args.goroutines as usize {
                bail!("{release}: only {listed} goroutines listed, expected at least {}", args.goroutines);
            }
            times.sort();
            let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
            println!("| {release} | {listed} | {mode} | {} | {} |", ms(times[0]), ms(times[times.len() / 2]));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}
