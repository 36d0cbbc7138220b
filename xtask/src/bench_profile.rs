//! `cargo xtask bench-profile`: what `parkscope profile` costs. Off-CPU profiling pays per
//! context switch, so it is measured on the pipe ping-pong (2 switches per round, pinned to one
//! CPU) against a BCC-style offcputime in bpftrace (user stack at switch-out, sum at switch-in);
//! both profilers are also run against the Go server under load, where the throughput ratio to
//! the bare server is what matters (off-CPU and 99 Hz CPU profiling). The 99 Hz CPU profile
//! runs on the ping-pong too: it must cost nothing per switch (its events are per CPU, not per
//! thread), which the ping-pong shows far more clearly than the noisier server.
//!
//! Like `bench`: every round runs every mode once, in an order rotated each round, and the
//! figures are medians over rounds (server ratios paired per round). docs/performance.md has
//! the figures of a real run.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
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
pub struct BenchProfileArgs {
    /// Rounds: each runs every mode of every scenario once (in rotated order).
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Length of each measured run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,

    /// CPU the pingpong workload is pinned to (both threads: every round is 2 context switches).
    #[arg(long, default_value_t = 1)]
    cpu: usize,
}

/// Traced pingpong waits this long before starting, so the profiler is attached first.
const START_DELAY: Duration = Duration::from_millis(3000);

/// BCC libbpf-tools/offcputime's pattern in bpftrace: at switch-out remember the time and the
/// user stack of a target thread; at its switch-in add the delta to (tid, stack).
const OFFCPUTIME_BT: &str = r#"BEGIN { printf("ready\n"); }
tracepoint:sched:sched_switch /pid == PID/ { @start[tid] = nsecs; @stk[tid] = ustack; }
tracepoint:sched:sched_switch /@start[args->next_pid]/ {
  @off[args->next_pid, @stk[args->next_pid]] = sum(nsecs - @start[args->next_pid]);
  delete(@start[args->next_pid]);
}
END { clear(@start); clear(@stk); clear(@off); }"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    OffCpu,
    Cpu,
    Offcputime,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::OffCpu => "parkscope profile offcpu",
            Mode::Cpu => "parkscope profile cpu 99Hz",
            Mode::Offcputime => "bpftrace offcputime",
        }
    }
}

struct Ctx {
    parkscope: PathBuf,
    bin: PathBuf,
    work: PathBuf,
    seconds: u64,
    cpu: String,
}

pub fn run(args: BenchProfileArgs) -> Result<()> {
    if args.rounds == 0 || args.seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    if !util::output_contains(Command::new("bpftrace").arg("--version"), "bpftrace") {
        bail!("bpftrace not found on PATH: the comparison needs it (apt-get install bpftrace)");
    }
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let root = util::root();
    let work = root.join("target/bench-profile");
    std::fs::create_dir_all(&work)?;
    let ctx = Ctx {
        parkscope: root.join("target/release/parkscope"),
        bin: examples::bin_dir(),
        work,
        seconds: args.seconds,
        cpu: args.cpu.to_string(),
    };

    // The goal line below reads indices 1 (ours) and 2 (bpftrace): append new modes at the end.
    let pp_modes = [Mode::Bare, Mode::OffCpu, Mode::Offcputime, Mode::Cpu];
    let http_modes = [Mode::Bare, Mode::OffCpu, Mode::Cpu];
    let mut pp: Vec<Vec<f64>> = vec![Vec::new(); pp_modes.len()];
    let mut http: Vec<Vec<f64>> = vec![Vec::new(); http_modes.len()];
    for round in 0..args.rounds {
        eprintln!("-- round {}/{}", round + 1, args.rounds);
        for i in (0..pp_modes.len()).map(|i| (i + round) % pp_modes.len()) {
            let rounds_per_s = pingpong(&ctx, pp_modes[i])?;
            eprintln!("   pingpong  {:<28} {:>10.0} rounds/s", pp_modes[i].label(), rounds_per_s);
            pp[i].push(rounds_per_s);
        }
        for i in (0..http_modes.len()).map(|i| (i + round) % http_modes.len()) {
            let rps = server(&ctx, http_modes[i])?;
            eprintln!("   http      {:<28} {:>10.0} req/s", http_modes[i].label(), rps);
            http[i].push(rps);
        }
    }

    let m = |v: &[f64]| median(v);
    // One pingpong round is 2 context switches of the target (ping -> pong -> ping).
    let per_switch = |rate: f64| 1e9 / rate / 2.0;
    let bare = per_switch(m(&pp[0]));
    let ours = per_switch(m(&pp[1])) - bare;
    let bt = per_switch(m(&pp[2])) - bare;
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    let mut out = format!(
        "\nparkscope bench-profile: {} rounds x {} s, median (min..max); kernel {}\n\n\
         1. pingpong pinned to CPU {} (1 round = 2 context switches + 4 syscalls)\n",
        args.rounds,
        args.seconds,
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        args.cpu
    );
    for (i, mode) in pp_modes.iter().enumerate() {
        let extra = per_switch(m(&pp[i])) - bare;
        out.push_str(&format!(
            "   {:<28} {:>10.0} rounds/s {:>22} ratio {:.3}  {}\n",
            mode.label(),
            m(&pp[i]),
            spread(&pp[i], |x| format!("{x:.0}")),
            m(&pp[i]) / m(&pp[0]),
            if i == 0 { "-".to_owned() } else { format!("+{extra:.0} ns per switch") }
        ));
    }
    out.push_str(&format!(
        "   goal ours <= 0.6 x offcputime per switch: {ours:.0} ns vs {bt:.0} ns = {:.2}x -> {}\n\n",
        ours / bt,
        verdict(ours <= 0.6 * bt)
    ));
    out.push_str("2. httpserver-go1.27 + loadgen-go1.27 -conns 16 (unpinned), profiled for the whole run\n");
    for (i, mode) in http_modes.iter().enumerate() {
        let paired: Vec<f64> = http[i].iter().zip(&http[0]).map(|(t, b)| t / b).collect();
        let ratio = median(&paired);
        let goal = match mode {
            Mode::OffCpu => format!("goal >= 0.97 -> {}", verdict(ratio >= 0.97)),
            Mode::Cpu => format!("goal >= 0.99 -> {}", verdict(ratio >= 0.99)),
            _ => String::new(),
        };
        out.push_str(&format!(
            "   {:<28} {:>10.0} req/s {:>22} ratio {ratio:.3} (paired) {goal}\n",
            mode.label(),
            m(&http[i]),
            spread(&http[i], |x| format!("{x:.0}")),
        ));
    }
    print!("{out}");
    Ok(())
}

/// A profiler attached to `pid` and ready, or None for the bare mode.
fn start_profiler(ctx: &Ctx, mode: Mode, pid: u32) -> Result<Option<Proc>> {
    let pid_s = pid.to_string();
    let (mut cmd, ready_on_stderr) = match mode {
        Mode::Bare => return Ok(None),
        Mode::OffCpu | Mode::Cpu => {
            let mut c = Command::new(&ctx.parkscope);
            let kind = if mode == Mode::Cpu { "cpu" } else { "offcpu" };
            let out = ctx.work.join(format!("{kind}.pb.gz"));
            c.args(["profile", "-p", &pid_s, "--kind", kind, "--duration", "1h", "-o"]).arg(out);
            (c, true)
        }
        Mode::Offcputime => {
            let mut c = Command::new("bpftrace");
            c.arg("-e").arg(OFFCPUTIME_BT.replace("PID", &pid_s));
            (c, false)
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {}", mode.label()))?;
    // parkscope prints a progress line per second once profiling; bpftrace prints "ready".
    let rx = if ready_on_stderr {
        lines(child.stderr.take().context("stderr")?)
    } else {
        lines(child.stdout.take().context("stdout")?)
    };
    let proc = Proc::guard(child, mode.label());
    wait_for_line(&rx, mode.label(), |l| l.contains("profiling pid") || l == "ready")?;
    // Keep draining so the profiler never blocks on a full pipe.
    thread::spawn(move || for _ in rx {});
    Ok(Some(proc))
}

/// Stops a profiler with SIGINT (parkscope then writes its profile and exits 130; bpftrace
/// prints its maps, cleared in END, and exits 0) and waits for it: writing a profile includes
/// symbolising it, hence the longer bound.
fn stop(p: Option<Proc>) -> Result<()> {
    if let Some(mut p) = p {
        p.interrupt(Duration::from_secs(30))?;
    }
    Ok(())
}

/// Pingpong rounds per second with `mode` attached.
fn pingpong(ctx: &Ctx, mode: Mode) -> Result<f64> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &ctx.cpu]).arg(ctx.bin.join("pingpong")).args(["--seconds", &ctx.seconds.to_string()]);
    if mode != Mode::Bare {
        cmd.args(["--start-delay-ms", &START_DELAY.as_millis().to_string()]);
    }
    let started = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("starting pingpong")?;
    let profiler = start_profiler(ctx, mode, child.id())?;
    if profiler.is_some() && started.elapsed() >= START_DELAY {
        eprintln!("   warning: {} ready after pingpong started: this run understates it", mode.label());
    }
    let out = Proc::guard(child, "pingpong").finish()?;
    stop(profiler)?;
    Ok(json_f64(&last_json(&out, "pingpong")?, "syscalls_per_sec")? / 4.0)
}

/// Server requests per second under loadgen with `mode` attached to the server.
fn server(ctx: &Ctx, mode: Mode) -> Result<f64> {
    let (server, addr) = start_go_server(&ctx.bin)?;
    let profiler = start_profiler(ctx, mode, server.pid())?;
    let out = start_loadgen(&ctx.bin, &addr, ctx.seconds)?.finish()?;
    stop(profiler)?;
    drop(server);
    Ok(load_result(&out)?.0)
}
