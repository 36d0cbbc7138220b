//! `cargo xtask bench-tokio`: what a tokio server keeps of its throughput while parkscope
//! watches it. examples/bin/tokio-echo (2 workers) under examples/bin/tokio-echoload (16
//! connections of 64-byte echoes), in rounds that run every mode once, in an order rotated each
//! round: bare; `parkscope snapshot -p PID` run back to back for the whole load (a fresh attach,
//! 1 s window, stacks, each); `parkscope schedtrace -p PID -i 1s`; `parkscope top -p PID` in a
//! real terminal (tmux, 160x45). Each tool is checked to have read the tokio runtime (its
//! version on screen or in its output). Ratios are paired per round against that round's bare
//! run; the goal is >= 0.97 for each mode (issue 11).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench_common::{
        Proc, TopInTmux, json_f64, last_json, lines, machine_facts, median, run_measured, spread, switches,
        thousands, top_dropped, usage, wait_for_line,
    },
    examples, util,
};

#[derive(Debug, Args)]
pub struct BenchTokioArgs {
    /// Rounds: each runs every mode once (in rotated order).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Snapshot,
    Schedtrace,
    Top,
}

const MODES: [Mode; 4] = [Mode::Bare, Mode::Snapshot, Mode::Schedtrace, Mode::Top];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Snapshot => "snapshot, back to back",
            Mode::Schedtrace => "schedtrace -i 1s",
            Mode::Top => "top (tmux 160x45)",
        }
    }
}

/// One run: the echo rate, the server's context switches per second, and what the tool did.
struct RunResult {
    rps: f64,
    switches_per_s: f64,
    tool: Option<ToolResult>,
}

/// What a tool cost and did during one run.
struct ToolResult {
    /// CPU seconds (user + system) over the load.
    cpu_s: f64,
    /// Peak RSS, KiB.
    hwm_kb: u64,
    /// Snapshots taken / SCHED lines printed (top: 0).
    count: u64,
    /// Stalls the snapshots reported / events top says were dropped (schedtrace: 0).
    flagged: u64,
}

struct Ctx {
    parkscope: PathBuf,
    bin: PathBuf,
    seconds: u64,
}

pub fn run(args: BenchTokioArgs) -> Result<()> {
    if args.rounds == 0 || args.seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let ctx = Ctx {
        parkscope: util::root().join("target/release/parkscope"),
        bin: examples::bin_dir(),
        seconds: args.seconds,
    };
    println!("\nmachine: {}", machine_facts());
    let mut results: Vec<Vec<RunResult>> = MODES.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        eprintln!("-- round {}/{}", round + 1, args.rounds);
        for i in (0..MODES.len()).map(|i| (i + round) % MODES.len()) {
            let r = server_run(&ctx, MODES[i])?;
            eprintln!(
                "   {:<24} {:>9} req/s {:>9} switches/s  {}",
                MODES[i].label(),
                thousands(r.rps),
                thousands(r.switches_per_s),
                r.tool.as_ref().map_or(String::new(), |t| note(MODES[i], t.count, t.flagged))
            );
            results[i].push(r);
        }
    }

    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!(
        "\ntokio-echo (2 workers) + tokio-echoload -conns 16, 64-byte echoes: {} rounds x {} s, \
         median (min..max), ratios paired per round\n",
        args.rounds, args.seconds
    );
    println!("| mode | echoes/s | ratio to bare | server switches/s | tool CPU | tool peak RSS | tool did |");
    println!("|---|---|---|---|---|---|---|");
    let bare: Vec<f64> = results[0].iter().map(|r| r.rps).collect();
    for (i, mode) in MODES.iter().enumerate() {
        let rps: Vec<f64> = results[i].iter().map(|r| r.rps).collect();
        let ratios: Vec<f64> = rps.iter().zip(&bare).map(|(t, b)| t / b).collect();
        let sw: Vec<f64> = results[i].iter().map(|r| r.switches_per_s).collect();
        let (ratio, cpu, rss, note) = if *mode == Mode::Bare {
            ("1.000".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            let r = median(&ratios);
            let tools: Vec<&ToolResult> = results[i].iter().filter_map(|r| r.tool.as_ref()).collect();
            let cpu: Vec<f64> = tools.iter().map(|t| t.cpu_s / args.seconds as f64 * 100.0).collect();
            let rss = tools.iter().map(|t| t.hwm_kb).max().unwrap_or(0);
            let count = tools.iter().map(|t| t.count).sum();
            let flagged = tools.iter().map(|t| t.flagged).sum();
            (
                format!(
                    "**{r:.3}** {} goal >= 0.97: {}",
                    spread(&ratios, |x| format!("{x:.3}")),
                    verdict(r >= 0.97)
                ),
                format!("{:.1}% of a CPU", median(&cpu)),
                format!("{:.1} MB", rss as f64 / 1024.0),
                format!("{} in all", note(*mode, count, flagged)),
            )
        };
        println!(
            "| {} | {} {} | {ratio} | {} | {cpu} | {rss} | {note} |",
            mode.label(),
            thousands(median(&rps)),
            spread(&rps, thousands),
            thousands(median(&sw)),
        );
    }
    println!("\nmachine at the end: {}", machine_facts());
    Ok(())
}

/// What a tool did, in words.
fn note(mode: Mode, count: u64, flagged: u64) -> String {
    match mode {
        Mode::Bare => String::new(),
        Mode::Snapshot => format!("{count} snapshots, {flagged} stalls reported"),
        Mode::Schedtrace => format!("{count} lines"),
        Mode::Top => format!("{flagged} events dropped"),
    }
}

/// examples/bin/tokio-echo, started (guarded) and listening: (server, address, tokio version).
fn start_echo(bin: &Path) -> Result<(Proc, String, String)> {
    let mut server = Proc::spawn(
        Command::new(bin.join("tokio-echo")).stdout(Stdio::piped()).stderr(Stdio::null()),
        "tokio-echo",
    )?;
    let rx = lines(server.child.stdout.take().context("tokio-echo stdout")?);
    let hello = wait_for_line(&rx, "tokio-echo", |l| l.contains("listening"))?;
    let hello: serde_json::Value = serde_json::from_str(&hello)?;
    let addr = hello["listening"].as_str().context("no listening address")?.to_owned();
    let tokio = hello["tokio"].as_str().context("no tokio version")?.to_owned();
    Ok((server, addr, tokio))
}

/// A tool running beside the load, stopped (and checked) after it.
enum Tool {
    None,
    /// The thread running snapshots back to back, and the flag that ends it.
    Snapshots(Arc<AtomicBool>, thread::JoinHandle<Result<(usize, f64, u64, u64)>>),
    Schedtrace(Proc, std::sync::mpsc::Receiver<String>),
    Top(TopInTmux),
}

fn server_run(ctx: &Ctx, mode: Mode) -> Result<RunResult> {
    let (server, addr, tokio) = start_echo(&ctx.bin)?;
    let pid = server.pid();
    // What each tool shows once it has read the runtime.
    let runtime = format!("tokio {tokio}");
    let tool = match mode {
        Mode::Bare => Tool::None,
        Mode::Snapshot => {
            let stop = Arc::new(AtomicBool::new(false));
            let (parkscope, flag, runtime) = (ctx.parkscope.clone(), stop.clone(), runtime.clone());
            Tool::Snapshots(stop, thread::spawn(move || snapshots(&parkscope, pid, &runtime, &flag)))
        }
        Mode::Schedtrace => {
            let mut p = Proc::spawn(
                Command::new(&ctx.parkscope)
                    .args(["schedtrace", "-p", &pid.to_string(), "-i", "1s"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
                "parkscope schedtrace",
            )?;
            let rx = lines(p.child.stdout.take().context("schedtrace stdout")?);
            // Its first line comes one interval after attaching; a tokio target's has workers=.
            let first = wait_for_line(&rx, "parkscope schedtrace", |l| l.starts_with("SCHED"))?;
            if !first.contains(" workers=2 ") {
                bail!("schedtrace did not read the tokio runtime (2 workers): {first}");
            }
            Tool::Schedtrace(p, rx)
        }
        Mode::Top => Tool::Top(TopInTmux::start(&ctx.parkscope, pid, &runtime)?),
    };
    let tool_pid = match &tool {
        Tool::Schedtrace(p, _) => Some(p.pid()),
        Tool::Top(t) => Some(t.pid),
        _ => None,
    };
    let before = tool_pid.map(usage).transpose()?;
    let switches_before = switches(pid);
    let started = Instant::now();
    let load = Proc::spawn(
        Command::new(ctx.bin.join("tokio-echoload"))
            .args([
                "--addr",
                &addr,
                "--conns",
                "16",
                "--size",
                "64",
                "--duration",
                &format!("{}s", ctx.seconds),
            ])
            .stdout(Stdio::piped()),
        "tokio-echoload",
    )?;
    let out = load.finish()?;
    let switches_per_s =
        switches(pid).saturating_sub(switches_before) as f64 / started.elapsed().as_secs_f64();
    let after = tool_pid.map(usage).transpose()?;
    let cpu = |a: Option<crate::bench_common::Usage>| -> (f64, u64) {
        match (a, before) {
            (Some(a), Some(b)) => (a.cpu_s - b.cpu_s, a.hwm_kb),
            _ => (0.0, 0),
        }
    };
    let tool = match tool {
        Tool::None => None,
        Tool::Snapshots(stop, handle) => {
            stop.store(true, Ordering::Relaxed);
            let (n, cpu_s, maxrss, stalls) =
                handle.join().map_err(|_| anyhow::anyhow!("the snapshot loop panicked"))??;
            Some(ToolResult { cpu_s, hwm_kb: maxrss, count: n as u64, flagged: stalls })
        }
        Tool::Schedtrace(mut p, rx) => {
            let code = p.interrupt(Duration::from_secs(15))?;
            if code != Some(0) {
                bail!("parkscope schedtrace exited with {code:?}");
            }
            // Lines after the first (the one waited for above), to its end of output.
            let n = rx.iter().filter(|l| l.starts_with("SCHED")).count() + 1;
            let (cpu_s, hwm_kb) = cpu(after);
            Some(ToolResult { cpu_s, hwm_kb, count: n as u64, flagged: 0 })
        }
        Tool::Top(t) => {
            let screen = t.stop()?;
            let (cpu_s, hwm_kb) = cpu(after);
            let dropped = top_dropped(&screen).context("no `dropped` count in top's header")?;
            Some(ToolResult { cpu_s, hwm_kb, count: 0, flagged: dropped })
        }
    };
    let v = last_json(&out, "tokio-echoload")?;
    let errors = json_f64(&v, "errors")?;
    if errors > 0.0 {
        bail!("tokio-echoload reported {errors} errors");
    }
    drop(server);
    Ok(RunResult { rps: json_f64(&v, "rps")?, switches_per_s, tool })
}

/// `parkscope snapshot -p PID` (1 s window, stacks) again and again until `stop`: how many
/// ran, their CPU seconds in all, the largest peak RSS (KiB), and the stalls they reported.
/// Each must exit 0 and show the tokio runtime.
fn snapshots(parkscope: &Path, pid: u32, runtime: &str, stop: &AtomicBool) -> Result<(usize, f64, u64, u64)> {
    let (mut n, mut cpu, mut rss, mut stalls) = (0, 0.0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let (code, out, cpu_s, maxrss) = run_measured(
            Command::new(parkscope).args(["snapshot", "-p", &pid.to_string()]).stderr(Stdio::null()),
            "parkscope snapshot",
        )?;
        if code != Some(0) {
            bail!("parkscope snapshot exited with {code:?}");
        }
        // The table ends with `tokio 1.54.1: 2 workers, 0 blocking-pool threads; K stalled`.
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{runtime}:")))
            .with_context(|| format!("snapshot did not show {runtime}:\n{out}"))?;
        stalls += line
            .rsplit_once("; ")
            .and_then(|(_, s)| s.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("no stall count in {line:?}"))?;
        n += 1;
        cpu += cpu_s;
        rss = rss.max(maxrss);
    }
    Ok((n, cpu, rss, stalls))
}
