//! `cargo xtask bench`: what tracing costs the traced process, the server under load, and every
//! other process on the machine, against the bare workload and against bpftrace doing the same
//! job. docs/performance.md explains the method and records the figures of a real run.
//!
//! Every round runs every mode of every scenario once, in an order rotated each round (ABC, BCA,
//! CAB), so slow drift on a shared machine spreads over all modes instead of favouring one.
//! Figures are the median over rounds, with the spread shown.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc::Receiver,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench_common::{
        Proc, json_f64, last_json, lines, load_result, median, spread, start_go_server, start_loadgen,
        thousands, wait_for_line,
    },
    examples, util,
};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Rounds: each runs every mode of every scenario once (in rotated order).
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Length of each measured run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,

    /// CPU the single-threaded-at-a-time workloads (pingpong, getppid loop) are pinned to.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
}

/// How long traced pingpong runs wait before starting, so the tracer is attached first.
const START_DELAY: Duration = Duration::from_millis(2500);
/// parkscope's exit code when its target exited first (a race at the end of pingpong runs).
const PARKSCOPE_TARGET_EXITED: i32 = 5;
/// parkscope's exit code when interrupted (SIGINT) before its window ended.
const PARKSCOPE_INTERRUPTED: i32 = 130;

/// The bpftrace equivalent of our syscall probes: entry time per thread, log2 histogram of the
/// duration on exit, filtered by pid. (It does not trace context switches; parkscope does.)
const BPFTRACE_SCRIPT: &str = r#"BEGIN { printf("ready\n"); }
tracepoint:raw_syscalls:sys_enter /pid == PID/ { @start[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /pid == PID && @start[tid]/ {
  @ns = hist(nsecs - @start[tid]); delete(@start[tid]);
}"#;

/// The untraced process: getppid() in a loop; prints its own cost per call.
const GETPPID_LOOP_C: &str = r#"#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 5.0, t0 = now(), t;
    long long n = 0;
    do {
        for (int i = 0; i < 4096; i++)
            syscall(SYS_getppid);
        n += 4096;
        t = now();
    } while (t - t0 < secs);
    printf("{\"calls\":%lld,\"seconds\":%.6f,\"ns_per_call\":%.3f}\n", n, t - t0, (t - t0) * 1e9 / n);
    return 0;
}
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    /// `schedtrace --threads`: blocks attributed at the context switch (the default path).
    Parkscope,
    /// `snapshot` with a window longer than the run: blocks, switches and wakeups.
    Snapshot,
    /// `snapshot --syscalls`: the opt-in per-call detail (sys_enter/sys_exit) on top.
    SnapshotSyscalls,
    Bpftrace,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Parkscope => "parkscope schedtrace",
            Mode::Snapshot => "parkscope snapshot",
            Mode::SnapshotSyscalls => "snapshot --syscalls",
            Mode::Bpftrace => "bpftrace (same job)",
        }
    }

    fn is_snapshot(self) -> bool {
        matches!(self, Mode::Snapshot | Mode::SnapshotSyscalls)
    }
}

struct Ctx {
    parkscope: PathBuf,
    bin: PathBuf,
    work: PathBuf,
    getppid: PathBuf,
    seconds: u64,
    cpu: String,
    late_attach: usize,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.rounds == 0 || args.seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
        bail!("bench attaches eBPF programs: run it as root");
    }
    if !util::output_contains(Command::new("bpftrace").arg("--version"), "bpftrace") {
        bail!("bpftrace not found on PATH: the comparison needs it (apt-get install bpftrace)");
    }
    util::step("building parkscope (release)");
    util::cargo(&["build", "--release", "-p", "parkscope"])?;
    let root = util::root();
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work)?;
    let src = work.join("getppid-loop.c");
    std::fs::write(&src, GETPPID_LOOP_C)?;
    let getppid = work.join("getppid-loop");
    util::run(Command::new("cc").args(["-O2", "-o"]).arg(&getppid).arg(&src))?;

    let mut ctx = Ctx {
        // PARKSCOPE_BIN: measure a copy of the binary (the tests honour the same variable).
        parkscope: std::env::var_os("PARKSCOPE_BIN")
            .map_or_else(|| root.join("target/release/parkscope"), PathBuf::from),
        bin: examples::bin_dir(),
        work,
        getppid,
        seconds: args.seconds,
        cpu: args.cpu.to_string(),
        late_attach: 0,
    };
    let est = args.rounds as u64 * (17 * args.seconds + 40) + 4 * (args.seconds + 4);
    util::step(&format!(
        "bench: {} rounds x {} s per run (about {} s); pingpong and getppid pinned to CPU {}",
        args.rounds, args.seconds, est, args.cpu
    ));

    let pp_modes = [Mode::Bare, Mode::Parkscope, Mode::Snapshot, Mode::SnapshotSyscalls, Mode::Bpftrace];
    let http_modes = [Mode::Bare, Mode::Parkscope];
    let idle_modes = [Mode::Bare, Mode::Parkscope, Mode::Snapshot, Mode::SnapshotSyscalls, Mode::Bpftrace];
    let mut pp: Vec<Vec<f64>> = vec![Vec::new(); pp_modes.len()];
    let mut http: Vec<Vec<f64>> = vec![Vec::new(); http_modes.len()];
    let mut http_errors = 0u64;
    let mut idle: Vec<Vec<f64>> = vec![Vec::new(); idle_modes.len()];
    let mut idle_switch: Vec<Vec<f64>> = vec![Vec::new(); idle_modes.len()];
    for round in 0..args.rounds {
        eprintln!("-- round {}/{}", round + 1, args.rounds);
        for i in rotated(pp_modes.len(), round) {
            let rate = pingpong(&mut ctx, pp_modes[i])?;
            eprintln!("   pingpong  {:<22} {:>12} syscalls/s", pp_modes[i].label(), thousands(rate));
            pp[i].push(rate);
        }
        for i in rotated(http_modes.len(), round) {
            let (rps, errors) = server(&ctx, http_modes[i])?;
            eprintln!(
                "   http      {:<22} {:>12} req/s ({errors} errors)",
                http_modes[i].label(),
                thousands(rps)
            );
            http_errors += errors;
            http[i].push(rps);
        }
        for i in rotated(idle_modes.len(), round) {
            let ns = untraced(&ctx, idle_modes[i])?;
            eprintln!(
                "   getppid   {:<22} {:>12.1} ns/call (tracer on another pid)",
                idle_modes[i].label(),
                ns
            );
            idle[i].push(ns);
        }
        for i in rotated(idle_modes.len(), round) {
            let rate = untraced_pingpong(&ctx, idle_modes[i])?;
            eprintln!(
                "   pingpong  {:<22} {:>12} syscalls/s (untraced; tracer on another pid)",
                idle_modes[i].label(),
                thousands(rate)
            );
            idle_switch[i].push(rate);
        }
    }
    eprintln!("-- lost events: parkscope snapshot --window 2s --json on a busy pingpong");
    let lost_default = lost_events(&ctx, false)?;
    let lost_syscalls = lost_events(&ctx, true)?;
    eprintln!("-- kernel BPF stats (kernel.bpf_stats_enabled=1) per program, pinned pingpong");
    let mut prog_stats = Vec::new();
    for mode in [Mode::Parkscope, Mode::Snapshot, Mode::SnapshotSyscalls, Mode::Bpftrace] {
        prog_stats.push((mode, bpf_stats(&ctx, mode)?));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Report.
    let m = |v: &Vec<f64>| median(v);
    let per_call = |rate: f64| 1e9 / rate;
    let at = |mode: Mode| pp_modes.iter().position(|m| *m == mode).expect("every mode is measured");
    let (pp_bare, pp_bt) = (m(&pp[at(Mode::Bare)]), m(&pp[at(Mode::Bpftrace)]));
    let bt_ns = per_call(pp_bt) - per_call(pp_bare);
    // Paired per round (traced run next to its bare run): less sensitive to drift in load.
    let paired: Vec<f64> = http[1].iter().zip(&http[0]).map(|(t, b)| t / b).collect();
    let http_ratio = median(&paired);
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };

    let mut out = String::new();
    out.push_str(&format!(
        "\nparkscope bench: {} rounds x {} s, median (min..max); kernel {}, {} CPUs\n\n",
        args.rounds,
        args.seconds,
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));
    out.push_str(&format!(
        "1. pingpong, pinned to CPU {} (1 round = 4 syscalls + 2 context switches)\n",
        args.cpu
    ));
    out.push_str(&format!(
        "   {:<24} {:>12} {:>25} {:>7} {:>14} {:>14}\n",
        "mode", "syscalls/s", "(min..max)", "ratio", "ns/syscall", "ns/round"
    ));
    for (i, mode) in pp_modes.iter().enumerate() {
        let rate = m(&pp[i]);
        let extra = per_call(rate) - per_call(pp_bare);
        let (ns, round) = if i == 0 {
            ("-".into(), "-".into())
        } else {
            (format!("+{extra:.0}"), format!("+{:.0}", 4.0 * extra))
        };
        out.push_str(&format!(
            "   {:<24} {:>12} {:>25} {:>7.3} {:>14} {:>14}\n",
            mode.label(),
            thousands(rate),
            spread(&pp[i], thousands),
            rate / pp_bare,
            ns,
            round
        ));
    }
    for (i, mode) in pp_modes.iter().enumerate().filter(|(_, m)| **m != Mode::Bare && **m != Mode::Bpftrace) {
        let ns = per_call(m(&pp[i])) - per_call(pp_bare);
        out.push_str(&format!(
            "   goal {} <= 0.25 x bpftrace per syscall: {:.0} ns vs {:.0} ns = {:.2}x -> {}\n",
            mode.label(),
            ns,
            bt_ns,
            ns / bt_ns,
            verdict(ns <= 0.25 * bt_ns)
        ));
    }
    out.push('\n');
    out.push_str("2. httpserver-go1.27 + loadgen-go1.27 -conns 16 (unpinned)\n");
    out.push_str(&format!("   {:<24} {:>12} {:>25} {:>7}\n", "mode", "req/s", "(min..max)", "ratio"));
    for (i, mode) in http_modes.iter().enumerate() {
        out.push_str(&format!(
            "   {:<24} {:>12} {:>25} {:>7.3}\n",
            mode.label(),
            thousands(m(&http[i])),
            spread(&http[i], thousands),
            m(&http[i]) / m(&http[0])
        ));
    }
    out.push_str(&format!(
        "   goal rps ratio >= 0.99: median of per-round ratios {:.3} {} -> {} ({} loadgen errors)\n\n",
        http_ratio,
        spread(&paired, |v| format!("{v:.3}")),
        verdict(http_ratio >= 0.99),
        http_errors
    ));
    out.push_str(&format!(
        "3. untraced process: getppid() loop pinned to CPU {} while the tracer traces an idle pid\n",
        args.cpu
    ));
    out.push_str(&format!("   {:<24} {:>12} {:>25} {:>14}\n", "mode", "ns/call", "(min..max)", "delta"));
    for (i, mode) in idle_modes.iter().enumerate() {
        let delta = if i == 0 { "-".into() } else { format!("{:+.1} ns", m(&idle[i]) - m(&idle[0])) };
        out.push_str(&format!(
            "   {:<24} {:>12.1} {:>25} {:>14}\n",
            mode.label(),
            m(&idle[i]),
            spread(&idle[i], |v| format!("{v:.1}")),
            delta
        ));
    }
    let idle_delta = m(&idle[1]) - m(&idle[0]);
    out.push_str(&format!(
        "   goal untraced +<= 5 ns per syscall (schedtrace): {idle_delta:+.1} ns -> {}\n",
        verdict(idle_delta <= 5.0)
    ));
    out.push_str(&format!(
        "   untraced pingpong pinned to CPU {} (what other processes pay per context switch instead; \
         1 round = 4 syscalls + 2 switches)\n",
        args.cpu
    ));
    out.push_str(&format!(
        "   {:<24} {:>12} {:>25} {:>14}\n",
        "mode", "syscalls/s", "(min..max)", "ns/switch"
    ));
    for (i, mode) in idle_modes.iter().enumerate() {
        let rate = m(&idle_switch[i]);
        // Every extra ns of a round charged to its 2 switches (4 syscalls per round).
        let per_switch = (per_call(rate) - per_call(m(&idle_switch[0]))) * 4.0 / 2.0;
        let shown = if i == 0 { "-".into() } else { format!("{per_switch:+.1}") };
        out.push_str(&format!(
            "   {:<24} {:>12} {:>25} {:>14}\n",
            mode.label(),
            thousands(rate),
            spread(&idle_switch[i], thousands),
            shown
        ));
    }
    for (what, (dropped, traced, window_s)) in
        [("snapshot", lost_default), ("snapshot --syscalls", lost_syscalls)]
    {
        out.push_str(&format!(
            "\n4. lost events ({what} --window 2s on busy pingpong): dropped_events={} \
             syscalls_traced={} ({}/s over the {:.2} s window)",
            dropped,
            thousands(traced as f64),
            thousands(traced as f64 / window_s),
            window_s
        ));
    }
    out.push_str("\n\n5. kernel BPF stats per program (run_time_ns / run_cnt), pinned pingpong, stats on\n");
    for (mode, progs) in &prog_stats {
        for p in progs {
            out.push_str(&format!(
                "   {:<24} {:<18} {:>12} runs {:>8.1} ns/run\n",
                mode.label(),
                p.name,
                thousands(p.run_cnt as f64),
                p.run_time_ns as f64 / (p.run_cnt.max(1)) as f64
            ));
        }
    }
    out.push_str(&format!("\nload average at the end: {}", load));
    if ctx.late_attach > 0 {
        out.push_str(&format!(
            "\nWARNING: in {} traced pingpong runs the tracer became ready after pingpong started; \
             those runs understate the overhead.\n",
            ctx.late_attach
        ));
    }
    print!("{out}");
    Ok(())
}

/// Indices 0..n rotated left by `round`: ABC, BCA, CAB, ...
fn rotated(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n).collect()
}

/// A running tracer, ready (probes attached) when returned.
struct Tracer {
    proc: Proc,
    mode: Mode,
    stderr: PathBuf,
    _lines: Receiver<String>,
}

impl Tracer {
    fn start(ctx: &Ctx, mode: Mode, pid: u32) -> Result<Option<Tracer>> {
        let stderr = ctx
            .work
            .join(format!("{}.stderr", if mode == Mode::Bpftrace { "bpftrace" } else { "parkscope" }));
        let mut cmd = match mode {
            Mode::Bare => return Ok(None),
            Mode::Parkscope => {
                let mut c = Command::new(&ctx.parkscope);
                // --threads: on the Go server too, the thread-level lines that need the switch
                // probe (its GODEBUG-style lines read only the runtime's memory, no probes).
                c.args(["schedtrace", "--threads", "-p", &pid.to_string(), "--interval", "1000ms"]);
                c
            }
            Mode::Snapshot | Mode::SnapshotSyscalls => {
                let mut c = Command::new(&ctx.parkscope);
                // -v: "probes attached" on stderr says it is ready; the window outlasts the run.
                c.args([
                    "-v",
                    "snapshot",
                    "-p",
                    &pid.to_string(),
                    "--window",
                    "600s",
                    "--json",
                    "--no-stacks",
                ]);
                if mode == Mode::SnapshotSyscalls {
                    c.arg("--syscalls");
                }
                c
            }
            Mode::Bpftrace => {
                let mut c = Command::new("bpftrace");
                c.arg("-e").arg(BPFTRACE_SCRIPT.replace("PID", &pid.to_string()));
                c
            }
        };
        let rx = if mode.is_snapshot() {
            cmd.stdout(std::fs::File::create(ctx.work.join("snapshot.json"))?).stderr(Stdio::piped());
            let mut proc = Proc::spawn(&mut cmd, mode.label())?;
            let rx = lines(proc.child.stderr.take().context("tracer stderr")?);
            (proc, rx)
        } else {
            cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr)?);
            let mut proc = Proc::spawn(&mut cmd, mode.label())?;
            let rx = lines(proc.child.stdout.take().context("tracer stdout")?);
            (proc, rx)
        };
        let (proc, rx) = rx;
        // parkscope schedtrace prints its first SCHED line one interval after attaching,
        // snapshot -v logs "probes attached"; bpftrace runs BEGIN once every probe is attached.
        let ready = wait_for_line(&rx, mode.label(), |l| {
            l.starts_with("SCHED") || l == "ready" || l.contains("probes attached")
        });
        if let Err(e) = ready {
            return Err(e.context(format!("see {}", stderr.display())));
        }
        Ok(Some(Tracer { proc, mode, stderr, _lines: rx }))
    }

    fn stop(mut self) -> Result<()> {
        let code = self.proc.interrupt(Duration::from_secs(15))?;
        let ok = match self.mode {
            Mode::Parkscope => matches!(code, Some(0 | PARKSCOPE_TARGET_EXITED)),
            // An interrupted snapshot prints its view and exits 130.
            Mode::Snapshot | Mode::SnapshotSyscalls => {
                matches!(code, Some(0 | PARKSCOPE_TARGET_EXITED | PARKSCOPE_INTERRUPTED))
            }
            _ => code == Some(0),
        };
        if !ok {
            bail!("{} exited with {code:?}; see {}", self.mode.label(), self.stderr.display());
        }
        Ok(())
    }
}

fn pinned(ctx: &Ctx, prog: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &ctx.cpu]).arg(prog).stdout(Stdio::piped()).stderr(Stdio::null());
    c
}

/// One pingpong run; returns syscalls/s as pingpong measured it over its whole (traced) run.
fn pingpong(ctx: &mut Ctx, mode: Mode) -> Result<f64> {
    let mut cmd = pinned(ctx, &ctx.bin.join("pingpong"));
    cmd.args(["--seconds", &ctx.seconds.to_string()]);
    if mode != Mode::Bare {
        cmd.args(["--start-delay-ms", &START_DELAY.as_millis().to_string()]);
    }
    let started = Instant::now();
    let pp = Proc::spawn(&mut cmd, "pingpong")?;
    let tracer = Tracer::start(ctx, mode, pp.pid())?;
    if tracer.is_some() && started.elapsed() >= START_DELAY {
        eprintln!(
            "   warning: {} ready only after {:?}: this run understates it",
            mode.label(),
            started.elapsed()
        );
        ctx.late_attach += 1;
    }
    let out = pp.finish()?;
    if let Some(t) = tracer {
        t.stop()?;
    }
    json_f64(&last_json(&out, "pingpong")?, "syscalls_per_sec")
}

/// One httpserver + loadgen run; returns (requests/s, errors).
fn server(ctx: &Ctx, mode: Mode) -> Result<(f64, u64)> {
    let (mut server, addr) = start_go_server(&ctx.bin)?;
    let tracer = Tracer::start(ctx, mode, server.pid())?;
    let out = start_loadgen(&ctx.bin, &addr, ctx.seconds)?.finish()?;
    if let Some(t) = tracer {
        t.stop()?;
    }
    let code = server.interrupt(Duration::from_secs(15))?;
    if code != Some(0) {
        bail!("httpserver exited with {code:?}");
    }
    load_result(&out)
}

/// getppid() cost of a process the tracer does not trace, while it traces an idle one.
fn untraced(ctx: &Ctx, mode: Mode) -> Result<f64> {
    let idle = Proc::spawn(Command::new("sleep").arg("3600"), "sleep (idle target)")?;
    let tracer = Tracer::start(ctx, mode, idle.pid())?;
    let mut cmd = pinned(ctx, &ctx.getppid);
    cmd.arg(ctx.seconds.to_string());
    let out = Proc::spawn(&mut cmd, "getppid-loop")?.finish()?;
    if let Some(t) = tracer {
        t.stop()?;
    }
    drop(idle);
    json_f64(&last_json(&out, "getppid-loop")?, "ns_per_call")
}

/// Pingpong of a process the tracer does not trace (pinned), while it traces an idle one: what
/// every other process pays per context switch, now that the syscall probes are off by default.
fn untraced_pingpong(ctx: &Ctx, mode: Mode) -> Result<f64> {
    let idle = Proc::spawn(Command::new("sleep").arg("3600"), "sleep (idle target)")?;
    let tracer = Tracer::start(ctx, mode, idle.pid())?;
    let mut cmd = pinned(ctx, &ctx.bin.join("pingpong"));
    cmd.args(["--seconds", &ctx.seconds.to_string()]);
    let out = Proc::spawn(&mut cmd, "pingpong (untraced)")?.finish()?;
    if let Some(t) = tracer {
        t.stop()?;
    }
    drop(idle);
    json_f64(&last_json(&out, "pingpong")?, "syscalls_per_sec")
}

/// Drop counters of a 2 s snapshot of a busy pingpong: (dropped_events, syscalls_traced, window s).
fn lost_events(ctx: &Ctx, syscalls: bool) -> Result<(u64, u64, f64)> {
    let mut cmd = pinned(ctx, &ctx.bin.join("pingpong"));
    cmd.args(["--seconds", "4"]);
    let pp = Proc::spawn(&mut cmd, "pingpong")?;
    thread::sleep(Duration::from_millis(300));
    let mut snap = Command::new(&ctx.parkscope);
    snap.args(["snapshot", "-p", &pp.pid().to_string(), "--window", "2s", "--json"]).stdout(Stdio::piped());
    if syscalls {
        snap.arg("--syscalls");
    }
    let out = Proc::spawn(&mut snap, "parkscope snapshot")?.finish()?;
    pp.finish()?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parkscope snapshot --json output")?;
    let s = &v["summary"];
    Ok((
        s["dropped_events"].as_u64().context("no summary.dropped_events")?,
        s["syscalls_traced"].as_u64().context("no summary.syscalls_traced")?,
        json_f64(s, "window_ns")? / 1e9,
    ))
}

/// One BPF program's kernel statistics (kernel.bpf_stats_enabled), from its holder's fdinfo.
struct ProgStats {
    name: String,
    run_cnt: u64,
    run_time_ns: u64,
}

/// Runs a pinned pingpong under `mode` with kernel BPF stats on and returns each of the
/// tracer's programs' run count and time. Names are the kernel's (16 bytes: parkscope's two
/// sched programs share "parkscope_sched"), so a repeated name gets its load order appended
/// (parkscope loads sched_switch before sched_waking).
fn bpf_stats(ctx: &Ctx, mode: Mode) -> Result<Vec<ProgStats>> {
    let sysctl =
        |v: &str| util::run(Command::new("sysctl").args(["-q", &format!("kernel.bpf_stats_enabled={v}")]));
    sysctl("1")?;
    let result = (|| {
        let mut cmd = pinned(ctx, &ctx.bin.join("pingpong"));
        cmd.args([
            "--seconds",
            &ctx.seconds.to_string(),
            "--start-delay-ms",
            &START_DELAY.as_millis().to_string(),
        ]);
        let started = Instant::now();
        let pp = Proc::spawn(&mut cmd, "pingpong")?;
        let tracer = Tracer::start(ctx, mode, pp.pid())?.context("a tracer mode")?;
        // Read while pingpong still runs: parkscope detaches (closing its programs) as soon
        // as its target exits.
        let near_end = START_DELAY + Duration::from_secs(ctx.seconds) - Duration::from_millis(500);
        thread::sleep(near_end.saturating_sub(started.elapsed()));
        let stats = prog_stats(tracer.proc.pid())?;
        let _ = pp.finish()?;
        tracer.stop()?;
        Ok(stats)
    })();
    sysctl("0")?;
    result
}

/// Reads run_cnt/run_time_ns of every BPF program fd `pid` holds, named by prog id.
fn prog_stats(pid: u32) -> Result<Vec<ProgStats>> {
    let mut fds: Vec<(u32, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_str() == Some("anon_inode:bpf-prog")))
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    fds.sort();
    let mut out: Vec<ProgStats> = Vec::new();
    for (fd, _) in fds {
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let id = field("prog_id:") as u32;
        let mut name = prog_name(id).unwrap_or_else(|| format!("prog {id}"));
        let same = out.iter().filter(|p| p.name.split(" #").next() == Some(name.as_str())).count();
        if same > 0 {
            name = format!("{name} #{}", same + 1);
        }
        out.push(ProgStats { name, run_cnt: field("run_cnt:"), run_time_ns: field("run_time_ns:") });
    }
    Ok(out)
}

/// The kernel's name of BPF program `id` (bpf(BPF_PROG_GET_FD_BY_ID), bpf(BPF_OBJ_GET_INFO_BY_FD)).
fn prog_name(id: u32) -> Option<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // union bpf_attr: prog_id is its first u32; info: bpf_fd u32, info_len u32, info u64.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    // SAFETY: attr is a zeroed bpf_attr-sized buffer holding a prog id.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, attr.as_ptr(), 128) };
    if fd < 0 {
        return None;
    }
    // struct bpf_prog_info: name[16] at byte 64; 256 bytes cover it (the kernel fills up to
    // info_len and tells how much it knows).
    let mut info = [0u8; 256];
    let mut attr = [0u64; 16];
    attr[0] = (fd as u64) | (256u64 << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: info outlives the call and is info_len bytes long; fd is ours and closed below.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, attr.as_ptr(), 128) };
    // SAFETY: closing the fd we were given.
    unsafe { libc::close(fd as i32) };
    if rc != 0 {
        return None;
    }
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}
