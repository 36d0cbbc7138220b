//! `cargo xtask bench-threads`: how `parkscope snapshot --json` (with stacks) scales with the
//! number of threads. examples/c/manythreads parks N threads in read(2); for each N the real
//! release binary is timed, process start to JSON written, with the default window (1 s, two
//! views) and with `--window 0` (one view), and each output is checked: every thread of the
//! target is listed in read on the target's pipe, with a user stack naming its blocking
//! function. Figures are medians over rounds, wall time and parkscope's CPU time (user+sys, from
//! getrusage of reaped children: on a shared machine the wall time mostly measures the load);
//! docs/performance.md has those of a real run.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench_common::{Proc, median},
    examples, util,
};

#[derive(Debug, Args)]
pub struct BenchThreadsArgs {
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u32, 2000, 5000, 10000])]
    pub threads: Vec<u32>,
    /// Snapshots per thread count and mode (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Time this parkscope binary instead of building target/release/parkscope (e.g. an older
    /// build, for before/after figures).
    #[arg(long)]
    pub parkscope: Option<std::path::PathBuf>,
}

/// What examples/c/manythreads says on its ready line.
struct Target {
    proc: Proc,
    pid: u32,
    tids: Vec<u32>,
    func: String,
    fd: i64,
}

pub fn run(args: BenchThreadsArgs) -> Result<()> {
    let bin = match args.parkscope {
        Some(bin) => bin,
        None => {
            util::step("building parkscope (release)");
            util::cargo(&["build", "--release", "-p", "parkscope"])?;
            util::root().join("target/release/parkscope")
        }
    };
    println!("load average before: {}", loadavg());
    println!("| threads | mode | median s | min s | s per 1k threads | CPU s (user+sys) |");
    println!("|---|---|---|---|---|---|");
    for &n in &args.threads {
        let target = start(n)?;
        for (mode, extra) in [("window 1s (default)", None), ("--window 0", Some("--window=0"))] {
            let mut times = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..args.rounds.max(1) {
                let cpu_before = children_cpu_s();
                let started = Instant::now();
                let mut cmd = Command::new(&bin);
                cmd.args(["snapshot", "--json", "-p", &target.pid.to_string()]).args(extra);
                let out = cmd.stderr(Stdio::inherit()).output().context("running parkscope snapshot")?;
                let secs = started.elapsed().as_secs_f64();
                cpu.push(children_cpu_s() - cpu_before);
                if !out.status.success() {
                    bail!("parkscope snapshot of {n} threads failed with {}", out.status);
                }
                check(&target, &out.stdout).with_context(|| format!("{n} threads, {mode}"))?;
                times.push(secs);
            }
            let min = times.iter().copied().fold(f64::INFINITY, f64::min);
            let med = median(&times);
            let per_1k = med / (f64::from(n) / 1000.0);
            println!("| {n} | {mode} | {med:.2} | {min:.2} | {per_1k:.3} | {:.2} |", median(&cpu));
        }
        drop(target.proc);
    }
    println!("load average after: {}", loadavg());
    Ok(())
}

fn start(n: u32) -> Result<Target> {
    let exe = examples::bin_dir().join("manythreads");
    let mut proc = Proc::spawn(
        Command::new(&exe).args(["--threads", &n.to_string()]).stdout(Stdio::piped()),
        "manythreads",
    )?;
    let stdout = proc.child.stdout.take().context("stdout")?;
    let line = BufReader::new(stdout).lines().next().context("manythreads exited before it was ready")??;
    let v: serde_json::Value = serde_json::from_str(&line).context("manythreads ready line")?;
    let tids: Vec<u32> = v["tids"]
        .as_array()
        .context("ready line without tids")?
        .iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()).context("tid"))
        .collect::<Result<_>>()?;
    if tids.len() != n as usize {
        bail!("manythreads started {} threads, asked for {n}", tids.len());
    }
    Ok(Target {
        pid: v["pid"].as_u64().context("pid")? as u32,
        func: v["func"].as_str().context("func")?.to_owned(),
        fd: v["fd"].as_i64().context("fd")?,
        tids,
        proc,
    })
}

/// Every thread of the target is in the snapshot, in read on the target's pipe, with a user
/// stack that names the function it blocks in.
fn check(target: &Target, json: &[u8]) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(json).context("snapshot JSON")?;
    let threads: HashMap<u64, &serde_json::Value> = v["threads"]
        .as_array()
        .context("no threads")?
        .iter()
        .filter_map(|t| Some((t["tid"].as_u64()?, t)))
        .collect();
    for &tid in &target.tids {
        let t = threads.get(&u64::from(tid)).with_context(|| format!("thread {tid} missing"))?;
        if t["syscall"]["name"] != "read" || t["syscall"]["fd"].as_i64() != Some(target.fd) {
            bail!("thread {tid}: expected read on fd {}, got {}", target.fd, t["syscall"]);
        }
        let stack = t["user_stack"].as_array().context("user_stack")?;
        if !stack.iter().any(|f| f.as_str().is_some_and(|f| f.starts_with(&format!("{}+", target.func)))) {
            bail!("thread {tid}: user stack does not name {}: {stack:?}", target.func);
        }
    }
    Ok(())
}

/// User plus system CPU seconds of this process's reaped children so far: the difference
/// around one run is that run's CPU, which a loaded machine inflates far less than wall time.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_owned()).unwrap_or_default()
}
