//! `cargo xtask bench-go-uprobes`: what the opt-in Go uprobes (`--go-uprobes`) cost a Go target,
//! on the two workloads that bound it: a channel ping-pong (examples/go/chanpingpong: nothing
//! but goroutine parks and readies, millions a second) and the netpoll-heavy HTTP server under
//! loadgen. Each is run bare, under `snapshot` and `profile` as they are by default, and under
//! both with `--go-uprobes`, so the uprobes' own share is the difference between neighbours.
//!
//! Like the other benchmarks: every round runs every mode once, the order rotated per round,
//! the tracer attached and ready before the measured run starts, medians over rounds, ratios
//! paired per round. docs/performance.md has the figures of a real run.

use std::{
    process::{Command, Stdio},
    sync::mpsc::Receiver,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench_common::{
        Proc, json_f64, last_json, lines, load_result, median, spread, start_go_server, start_loadgen,
        wait_for_line,
    },
    examples, util,
};

#[derive(Debug, clap::Args)]
pub struct BenchGoUprobesArgs {
    /// Rounds: each runs every mode of both workloads once (in rotated order).
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Length of each measured run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,

    /// Goroutine pairs of the channel workload.
    #[arg(long, default_value_t = 4)]
    pairs: u32,

    /// Go release of the channel workload's build (go1.27 or go1.19; the server is go1.27).
    #[arg(long, default_value = "go1.27")]
    go: String,
}

/// The channel workload waits this long before starting, so the tracer is attached first.
const START_DELAY: Duration = Duration::from_millis(3000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Snapshot,
    SnapshotUprobes,
    Profile,
    ProfileUprobes,
}

const MODES: [Mode; 5] =
    [Mode::Bare, Mode::Snapshot, Mode::SnapshotUprobes, Mode::Profile, Mode::ProfileUprobes];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Snapshot => "snapshot --window (default)",
            Mode::SnapshotUprobes => "snapshot --window --go-uprobes",
            Mode::Profile => "profile offcpu (default)",
            Mode::ProfileUprobes => "profile offcpu --go-uprobes",
        }
    }

    fn uprobes(self) -> bool {
        matches!(self, Mode::SnapshotUprobes | Mode::ProfileUprobes)
    }
}

/// One measured run: the workload's rate and operation count, and for snapshots with uprobes
/// the goroutine status changes they saw (almost all of them during the measured run: the
/// workload idles before and after it).
struct Run {
    rate: f64,
    ops: f64,
    transitions: Option<f64>,
}

impl Run {
    fn changes_per_op(&self) -> Option<f64> {
        self.transitions.map(|t| t / self.ops)
    }
}

struct Tracer {
    proc: Proc,
    stdout: Option<Receiver<String>>,
}

/// parkscope attached to `pid` in `mode` and ready (its window or duration runs until SIGINT).
fn start_tracer(parkscope: &std::path::Path, mode: Mode, pid: u32) -> Result<Option<Tracer>> {
    let pid_s = pid.to_string();
    let mut cmd = Command::new(parkscope);
    cmd.arg("-v");
    match mode {
        Mode::Bare => return Ok(None),
        Mode::Snapshot | Mode::SnapshotUprobes => {
            cmd.args(["snapshot", "-p", &pid_s, "--window", "1h", "--json", "--no-stacks"]);
        }
        Mode::Profile | Mode::ProfileUprobes => {
            let out = util::root().join("target/bench/go-uprobes.pb.gz");
            cmd.args(["profile", "-p", &pid_s, "--duration", "1h", "-o"]).arg(out);
        }
    }
    if mode.uprobes() {
        cmd.arg("--go-uprobes");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting parkscope")?;
    let stderr = lines(child.stderr.take().context("stderr")?);
    let stdout = lines(child.stdout.take().context("stdout")?);
    let proc = Proc::guard(child, mode.label());
    // Snapshots log their attach; profiles print a progress line once the window runs.
    let marker = match mode {
        Mode::SnapshotUprobes => "Go uprobes attached",
        Mode::Snapshot => "probes attached",
        _ => "profiling pid",
    };
    wait_for_line(&stderr, mode.label(), |l| l.contains(marker))?;
    thread::spawn(move || for _ in stderr {});
    Ok(Some(Tracer { proc, stdout: Some(stdout) }))
}

/// Stops a tracer with SIGINT (exit 130, after printing its view or writing its profile) and
/// returns the goroutine status changes a snapshot's view reports.
fn stop(tracer: Option<Tracer>) -> Result<Option<f64>> {
    let Some(mut t) = tracer else { return Ok(None) };
    let code = t.proc.interrupt(Duration::from_secs(60))?;
    if !matches!(code, Some(0 | 130 | 5)) {
        bail!("parkscope exited with {code:?}");
    }
    let out: String =
        t.stdout.take().map(|rx| rx.into_iter().collect::<Vec<_>>().join("\n")).unwrap_or_default();
    if out.trim().is_empty() {
        return Ok(None);
    }
    let view: serde_json::Value = serde_json::from_str(&out).context("snapshot JSON")?;
    let s = &view["summary"];
    if s["dropped_events"].as_u64().unwrap_or(0) > 0 {
        eprintln!("   warning: the kernel dropped events during this run: {s}");
    }
    Ok(s["go_transitions"].as_f64())
}

fn channel_run(parkscope: &std::path::Path, args: &BenchGoUprobesArgs, mode: Mode) -> Result<Run> {
    let exe = examples::bin_dir().join(format!("chanpingpong-{}", args.go));
    let mut cmd = Command::new(&exe);
    cmd.args(["-pairs", &args.pairs.to_string(), "-duration", &format!("{}s", args.seconds)]);
    // -hold: the process stays after its summary, so a snapshot's final view is of a live target.
    cmd.args(["-start-delay", &format!("{}ms", START_DELAY.as_millis()), "-hold"]);
    let started = Instant::now();
    let mut workload = Proc::spawn(cmd.stdout(Stdio::piped()), "chanpingpong-go1.27")?;
    let out = lines(workload.child.stdout.take().context("stdout")?);
    wait_for_line(&out, "chanpingpong", |l| l.contains("\"ready\""))?;
    let tracer = start_tracer(parkscope, mode, workload.pid())?;
    if tracer.is_some() && started.elapsed() >= START_DELAY {
        eprintln!("   warning: {} ready after the workload started: this run understates it", mode.label());
    }
    let summary = wait_for_line(&out, "chanpingpong", |l| l.contains("round_trips_per_sec"))?;
    let transitions = stop(tracer)?;
    drop(workload);
    let summary = last_json(&summary, "chanpingpong")?;
    let (rate, ops) = (json_f64(&summary, "round_trips_per_sec")?, json_f64(&summary, "round_trips")?);
    Ok(Run { rate, ops, transitions })
}

fn server_run(parkscope: &std::path::Path, args: &BenchGoUprobesArgs, mode: Mode) -> Result<Run> {
    let dir = examples::bin_dir();
    let (server, addr) = start_go_server(&dir)?;
    let tracer = start_tracer(parkscope, mode, server.pid())?;
    let out = start_loadgen(&dir, &addr, args.seconds)?.finish()?;
    let (rate, errors) = load_result(&out)?;
    if errors > 0 {
        bail!("loadgen reported {errors} errors");
    }
    let ops = json_f64(&last_json(&out, "loadgen")?, "requests")?;
    let transitions = stop(tracer)?;
    drop(server);
    Ok(Run { rate, ops, transitions })
}

pub fn run(args: BenchGoUprobesArgs) -> Result<()> {
    if args.rounds == 0 || args.seconds == 0 || args.pairs == 0 {
        bail!("--rounds, --seconds and --pairs must be at least 1");
    }
    if !["go1.27", "go1.19"].contains(&args.go.as_str()) {
        bail!("--go must be go1.27 or go1.19 (the releases examples are built with)");
    }
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let parkscope = util::root().join("target/release/parkscope");
    std::fs::create_dir_all(util::root().join("target/bench"))?;

    type RunFn = fn(&std::path::Path, &BenchGoUprobesArgs, Mode) -> Result<Run>;
    let chan = format!("chanpingpong-{}", args.go);
    let workloads: [(&str, &str, RunFn); 2] = [
        (&chan, "round trips/s", channel_run),
        ("httpserver-go1.27 + loadgen -conns 16", "req/s", server_run),
    ];
    let mut results: Vec<Vec<Vec<Run>>> =
        workloads.iter().map(|_| MODES.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..args.rounds {
        eprintln!("-- round {}/{}", round + 1, args.rounds);
        for (w, (name, unit, run)) in workloads.iter().enumerate() {
            for i in (0..MODES.len()).map(|i| (i + round) % MODES.len()) {
                let r = run(&parkscope, &args, MODES[i])?;
                eprintln!("   {name:<38} {:<32} {:>12.0} {unit}", MODES[i].label(), r.rate);
                results[w][i].push(r);
            }
        }
    }

    let mut out = format!(
        "\nparkscope bench-go-uprobes: {} rounds x {} s, median (min..max), ratios paired per round; kernel {}\n",
        args.rounds,
        args.seconds,
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );
    for (w, (name, unit, _)) in workloads.iter().enumerate() {
        out.push_str(&format!("\n{name}\n"));
        let bare: Vec<f64> = results[w][0].iter().map(|r| r.rate).collect();
        for (i, mode) in MODES.iter().enumerate() {
            let rates: Vec<f64> = results[w][i].iter().map(|r| r.rate).collect();
            let paired: Vec<f64> = rates.iter().zip(&bare).map(|(t, b)| t / b).collect();
            let per_op: Vec<f64> = results[w][i].iter().filter_map(Run::changes_per_op).collect();
            let seen = if mode.uprobes() && !per_op.is_empty() {
                format!("  {:.1} status changes per op", median(&per_op))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "   {:<32} {:>12.0} {unit} {:>26} ratio {:.3}{seen}\n",
                mode.label(),
                median(&rates),
                spread(&rates, |x| format!("{x:.0}")),
                median(&paired),
            ));
        }
        // The uprobes' own cost: snapshot with them against snapshot without, per change. Both
        // CPUs are busy in both workloads (the server shares them with its load generator), so
        // the wall time an operation gained, times 2, spread over its status changes, is an
        // estimate of the CPU time per uprobe hit.
        let per_op = median(&results[w][2].iter().filter_map(Run::changes_per_op).collect::<Vec<_>>());
        let with = median(&results[w][2].iter().map(|r| r.rate).collect::<Vec<_>>());
        let without = median(&results[w][1].iter().map(|r| r.rate).collect::<Vec<_>>());
        if per_op > 0.0 {
            let ns = 2.0 * (1e9 / with - 1e9 / without) / per_op;
            out.push_str(&format!(
                "   uprobes alone: {per_op:.1} status changes per op; about {ns:.0} ns of CPU per change (estimate)\n"
            ));
        }
    }
    print!("{out}");
    Ok(())
}
