//! `cargo xtask bench-top`: what `parkscope top` costs. (1) The viewer's frame time at 1k, 10k
//! and 100k rows (viewer/examples/frame_time.rs); (2) the netpoll-heavy Go server's throughput
//! under load, bare and while `top -p PID` runs in a real terminal (tmux, 160x45), in paired
//! rounds alternating which goes first; (3) with `--minutes M`, one long run of top on the
//! loaded server, its CPU time (utime+stime) and RSS (VmRSS, peak VmHWM) sampled from /proc.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench_common::{
        TopInTmux, Usage, load_result, machine_facts, median, spread, start_go_server, start_loadgen,
        switches, thousands, top_dropped, usage,
    },
    examples, util,
};

#[derive(Debug, Args)]
pub struct BenchTopArgs {
    /// Rounds of the throughput part (each: one bare and one run with top).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds of load per server run.
    #[arg(long, default_value_t = 10)]
    pub load_seconds: u64,
    /// Also run top this many minutes on the loaded server, reporting its CPU and RSS.
    #[arg(long, default_value_t = 0)]
    pub minutes: u64,
    /// Seconds between CPU/RSS samples of the long run.
    #[arg(long, default_value_t = 5)]
    pub sample_seconds: u64,
    /// Skip the frame-time part.
    #[arg(long)]
    pub no_frame_time: bool,
    /// Skip the throughput rounds (e.g. for the long run alone).
    #[arg(long)]
    pub no_rounds: bool,
}

/// What top's header must show for the Go server: its runtime was read.
const GO_HEADER: &str = " go go1.27";

pub fn run(args: BenchTopArgs) -> Result<()> {
    if (!args.no_rounds && (args.rounds == 0 || args.load_seconds == 0)) || args.minutes > 60 {
        bail!("--rounds and --load-seconds must be at least 1, --minutes at most 60 (loadgen's limit)");
    }
    if !args.no_frame_time {
        util::step("viewer frame time (release): viewer/examples/frame_time.rs");
        util::cargo(&["run", "--release", "-p", "parkscope-viewer", "--example", "frame_time"])?;
    }
    if args.no_rounds && args.minutes == 0 {
        return Ok(());
    }
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let bin = util::root().join("target/release/parkscope");
    println!("\nmachine: {}", machine_facts());
    if !args.no_rounds {
        throughput(&bin, &args)?;
    }
    if args.minutes > 0 {
        long_run(&bin, &args)?;
    }
    println!("machine at the end: {}", machine_facts());
    Ok(())
}

/// One server run under load.
struct RunResult {
    rps: f64,
    /// The server's context switches per second (all its threads).
    switches_per_s: f64,
    /// With top: its CPU seconds during the load, its peak RSS (KiB), and the events its
    /// header says were dropped.
    top: Option<(f64, u64, u64)>,
}

fn server_run(bin: &Path, seconds: u64, with_top: bool) -> Result<RunResult> {
    let dir = examples::bin_dir();
    let (server, addr) = start_go_server(&dir)?;
    let top = if with_top { Some(TopInTmux::start(bin, server.pid(), GO_HEADER)?) } else { None };
    let before = top.as_ref().map(|t| usage(t.pid)).transpose()?;
    let switches_before = switches(server.pid());
    let started = Instant::now();
    let (rps, errors) = load_result(&start_loadgen(&dir, &addr, seconds)?.finish()?)?;
    let switches_per_s =
        switches(server.pid()).saturating_sub(switches_before) as f64 / started.elapsed().as_secs_f64();
    let top = match (top, before) {
        (Some(t), Some(b)) => {
            let after = usage(t.pid)?;
            let screen = t.stop()?;
            let dropped = top_dropped(&screen).context("no `dropped` count in top's header")?;
            Some((after.cpu_s - b.cpu_s, after.hwm_kb, dropped))
        }
        _ => None,
    };
    if errors > 0 {
        bail!("loadgen reported {errors} errors");
    }
    drop(server);
    Ok(RunResult { rps, switches_per_s, top })
}

fn throughput(bin: &Path, args: &BenchTopArgs) -> Result<()> {
    util::step(&format!(
        "netpoll-heavy server: {} rounds x {} s, bare vs `parkscope top` (1 s interval, stacks) in tmux",
        args.rounds, args.load_seconds
    ));
    println!(
        "\nhttpserver-go1.27 + loadgen-go1.27 -conns 16, {} s per run; goal: top >= 0.97 of bare",
        args.load_seconds
    );
    println!(
        "\n| round | bare req/s | top req/s | ratio | server switches/s (bare) | top CPU | top peak RSS | dropped |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let (mut ratios, mut bares, mut tops) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Alternate which goes first so drift does not favour one side.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let (mut bare, mut traced) = (None, None);
        for with_top in order {
            let r = server_run(bin, args.load_seconds, with_top)?;
            if with_top { traced = Some(r) } else { bare = Some(r) }
        }
        let (Some(bare), Some(traced)) = (bare, traced) else { unreachable!("both modes ran") };
        let (cpu_s, hwm_kb, dropped) = traced.top.unwrap_or_default();
        let ratio = traced.rps / bare.rps;
        ratios.push(ratio);
        bares.push(bare.rps);
        tops.push(traced.rps);
        println!(
            "| {} | {} | {} | {ratio:.3} | {} | {:.1}% of a CPU | {:.1} MB | {dropped} |",
            round + 1,
            thousands(bare.rps),
            thousands(traced.rps),
            thousands(bare.switches_per_s),
            cpu_s / args.load_seconds as f64 * 100.0,
            hwm_kb as f64 / 1024.0,
        );
    }
    let m = median(&ratios);
    println!(
        "\nbare {} req/s {}, top {} req/s {}; median paired ratio {m:.3} {} (goal >= 0.97: {})",
        thousands(median(&bares)),
        spread(&bares, thousands),
        thousands(median(&tops)),
        spread(&tops, thousands),
        spread(&ratios, |r| format!("{r:.3}")),
        if m >= 0.97 { "MET" } else { "NOT MET" }
    );
    Ok(())
}

/// top on the loaded server for `--minutes`: CPU and memory sampled every `--sample-seconds`,
/// printed per minute.
fn long_run(bin: &Path, args: &BenchTopArgs) -> Result<()> {
    util::step(&format!(
        "long run: `parkscope top` on the loaded server for {} min, sampled every {} s",
        args.minutes, args.sample_seconds
    ));
    let dir: PathBuf = examples::bin_dir();
    let (server, addr) = start_go_server(&dir)?;
    let top = TopInTmux::start(bin, server.pid(), GO_HEADER)?;
    let length = Duration::from_secs(args.minutes * 60);
    let load = start_loadgen(&dir, &addr, args.minutes * 60)?;
    let start = Instant::now();
    let first = usage(top.pid)?;
    let every = Duration::from_secs(args.sample_seconds.max(1));
    let mut samples: Vec<(f64, Usage)> = vec![(0.0, first)];
    while start.elapsed() < length {
        std::thread::sleep(every.min(length.saturating_sub(start.elapsed())).max(Duration::from_millis(10)));
        let u = usage(top.pid).map_err(|e| e.context("parkscope top exited during the long run"))?;
        samples.push((start.elapsed().as_secs_f64(), u));
    }
    let screen = top.stop()?;
    let (rps, errors) = load_result(&load.finish()?)?;
    drop(server);
    if errors > 0 {
        bail!("loadgen reported {errors} errors");
    }

    println!(
        "\n`parkscope top -p PID` (1 s interval) on httpserver-go1.27 under loadgen -conns 16 for {} min",
        args.minutes
    );
    println!("\n| minute | top CPU in it | RSS at its end | RSS min..max in it | peak RSS (VmHWM) so far |");
    println!("|---|---|---|---|---|");
    let mut from = 0;
    for minute in 1..=args.minutes {
        let end_s = (minute * 60) as f64;
        let Some(to) = samples.iter().rposition(|(t, _)| *t <= end_s + 0.5) else { break };
        if to <= from {
            break;
        }
        let part = &samples[from..=to];
        let (t0, u0) = part[0];
        let (t1, u1) = part[part.len() - 1];
        let rss: Vec<f64> = part.iter().map(|(_, u)| u.rss_kb as f64 / 1024.0).collect();
        println!(
            "| {minute} | {:.2} s ({:.1}% of a CPU) | {:.1} MB | {} MB | {:.1} MB |",
            u1.cpu_s - u0.cpu_s,
            (u1.cpu_s - u0.cpu_s) / (t1 - t0) * 100.0,
            u1.rss_kb as f64 / 1024.0,
            spread(&rss, |x| format!("{x:.1}")),
            u1.hwm_kb as f64 / 1024.0,
        );
        from = to;
    }
    let (t_end, last) = samples[samples.len() - 1];
    println!(
        "\ntop: {:.1} s of CPU in {:.0} s ({:.2}% of one CPU), peak RSS (VmHWM) {:.1} MB, {} samples; \
         server {} req/s over the run; dropped events {}",
        last.cpu_s - first.cpu_s,
        t_end,
        (last.cpu_s - first.cpu_s) / t_end * 100.0,
        last.hwm_kb as f64 / 1024.0,
        samples.len(),
        thousands(rps),
        top_dropped(&screen).context("no `dropped` count in top's header")?,
    );
    Ok(())
}
