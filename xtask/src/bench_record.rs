//! `cargo xtask bench-record`: (1) how big a recording grows per minute at 1 s intervals, for
//! the C blocker and for a Go process with 100,000 parked goroutines (its first snapshot, a
//! keyframe of every goroutine, reported apart); (2) what a netpoll-heavy Go server keeps of its
//! throughput while `parkscope record` runs on it, bare and recorded runs alternating.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use clap::Args;
use parkscope_recording::{Item, Reader};

use crate::{
    bench_common::{Proc, load_result, start_go_server, start_loadgen},
    examples, util,
};

#[derive(Debug, Args)]
pub struct BenchRecordArgs {
    /// Seconds each size measurement records (the rate is scaled to a minute).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Parked goroutines of the large Go target.
    #[arg(long, default_value_t = 100_000)]
    pub goroutines: u32,
    /// Rounds of the throughput part (each: one bare and one recorded server run).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of load per server run.
    #[arg(long, default_value_t = 10)]
    pub load_seconds: u64,
}

pub fn run(args: BenchRecordArgs) -> Result<()> {
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let bin = util::root().join("target/release/parkscope");
    let dir = std::env::temp_dir().join(format!("parkscope-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    println!("| target | snapshots | first snapshot | after it, per minute | keyframes | total |");
    println!("|---|---|---|---|---|---|");
    {
        let blocker = examples::Blocker::start(&[])?;
        size_row(&bin, &dir, blocker.pid, "C blocker (10 threads)", args.seconds)?;
    }
    {
        let many = args.goroutines.to_string();
        let go = examples::GoExample::start("parked-go1.27", &["-n", "3", "-many", &many])?;
        size_row(&bin, &dir, go.pid, &format!("parked-go1.27, {many} goroutines"), args.seconds)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    server_throughput(&bin, &args)
}

/// Records `pid` for `seconds` at 1 s and prints the sizes of what was written.
fn size_row(bin: &Path, dir: &Path, pid: u32, what: &str, seconds: u64) -> Result<()> {
    let file = dir.join("size.psrec");
    let out = Command::new(bin)
        .args(["record", "-p", &pid.to_string(), "-o"])
        .arg(&file)
        .args(["--interval", "1s", "--duration", &format!("{seconds}s")])
        .output()?;
    if !out.status.success() {
        bail!("record failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let total = std::fs::metadata(&file)?.len();
    let mut reader = Reader::new(std::io::BufReader::new(std::fs::File::open(&file)?))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("reading the recording back")?;
    // Each snapshot chunk's size is the distance to the next chunk.
    let mut starts = Vec::new();
    let mut snapshot_at = Vec::new();
    let mut keyframes = 0;
    while let Some(item) = reader.next_item().map_err(|e| anyhow::anyhow!("{e}"))? {
        match item {
            Item::Snapshot(s, off) => {
                snapshot_at.push((off, s.taken_at.monotonic_ns));
                starts.push(off);
            }
            Item::Events(_, off) | Item::End(_, off) => starts.push(off),
        }
    }
    let chunk_len = |off: u64| starts.iter().find(|&&s| s > off).copied().unwrap_or(total) - off;
    let Some(&(first_off, first_ns)) = snapshot_at.first() else { bail!("no snapshot recorded") };
    let &(_, last_ns) = snapshot_at.last().context("no snapshot")?;
    let first = chunk_len(first_off);
    let rest: u64 = snapshot_at.iter().skip(1).map(|&(o, _)| chunk_len(o)).sum();
    // Keyframes after the first: a delta is never more than half the entries, so a chunk at
    // least half the first one's size is one.
    keyframes += snapshot_at.iter().skip(1).filter(|&&(o, _)| chunk_len(o) * 2 >= first).count();
    let span_min = (last_ns - first_ns) as f64 / 60e9;
    let per_min = if span_min > 0.0 { rest as f64 / span_min } else { 0.0 };
    println!(
        "| {what} | {} | {} | {} | {keyframes} | {} |",
        snapshot_at.len(),
        kb(first as f64),
        kb(per_min),
        kb(total as f64)
    );
    Ok(())
}

fn kb(b: f64) -> String {
    if b >= 1024.0 * 1024.0 { format!("{:.2} MB", b / 1048576.0) } else { format!("{:.1} KB", b / 1024.0) }
}

/// httpserver-go1.27 under loadgen-go1.27, bare or while `parkscope record` (1 s, stacks) runs.
fn server_run(bin: &Path, seconds: u64, recorded: bool) -> Result<(f64, u64)> {
    let dir = examples::bin_dir();
    let (server, addr) = start_go_server(&dir)?;
    let pid = server.pid().to_string();
    let file = std::env::temp_dir().join(format!("parkscope-bench-server-{}.psrec", std::process::id()));
    let recorder = if recorded {
        let mut cmd = Command::new(bin);
        cmd.args([
            "record",
            "-p",
            &pid,
            "--interval",
            "1s",
            "--duration",
            &format!("{}s", seconds + 30),
            "-o",
        ])
        .arg(&file);
        let mut p = Proc::spawn(&mut cmd, "parkscope record")?;
        // Attached (the header is written after attach) before the load starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::metadata(&file).map_or(0, |m| m.len()) == 0 {
            if std::time::Instant::now() > deadline {
                let _ = p.interrupt(std::time::Duration::from_secs(5));
                bail!("parkscope record did not start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(p)
    } else {
        None
    };
    let load = start_loadgen(&dir, &addr, seconds)?;
    let (rps, errors) = load_result(&load.finish()?)?;
    let mut size = 0;
    if let Some(mut p) = recorder {
        p.interrupt(std::time::Duration::from_secs(10))?;
        size = std::fs::metadata(&file).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&file);
    }
    if errors > 0 {
        bail!("loadgen reported {errors} errors");
    }
    drop(server);
    Ok((rps, size))
}

fn server_throughput(bin: &Path, args: &BenchRecordArgs) -> Result<()> {
    util::step(&format!(
        "netpoll-heavy server: {} rounds x {} s, bare vs recorded (1 s interval, stacks)",
        args.rounds, args.load_seconds
    ));
    let mut ratios = Vec::new();
    println!("\n| round | bare req/s | recorded req/s | recording | ratio |");
    println!("|---|---|---|---|---|");
    for round in 0..args.rounds {
        // Alternate which goes first so drift does not favour one side.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let (mut bare, mut recorded, mut size) = (0.0, 0.0, 0);
        for rec in order {
            let (rps, s) = server_run(bin, args.load_seconds, rec)?;
            if rec {
                (recorded, size) = (rps, s);
            } else {
                bare = rps;
            }
        }
        let ratio = recorded / bare;
        ratios.push(ratio);
        println!("| {} | {bare:.0} | {recorded:.0} | {} | {ratio:.3} |", round + 1, kb(size as f64));
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("\nmedian ratio {median:.3} (goal >= 0.98: {})", if median >= 0.98 { "MET" } else { "NOT MET" });
    Ok(())
}
