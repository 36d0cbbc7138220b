//! Helpers shared by the benchmarks (bench.rs, bench_go.rs, bench_profile.rs, bench_top.rs,
//! bench_tokio.rs...): a child-process guard that never leaves a workload or tracer running, a
//! line reader that keeps pipes drained, the statistics the reports print, `top` run in a real
//! terminal (tmux), and a process's CPU time, RSS and context switches from /proc.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::util;

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

pub fn spread(v: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("({}..{})", fmt(min), fmt(max))
}

pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A child process killed and reaped when dropped, so an error anywhere leaves nothing behind.
pub struct Proc {
    pub child: Child,
    what: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self::guard(child, what))
    }

    /// Takes charge of an already spawned child.
    pub fn guard(child: Child, what: &str) -> Proc {
        Proc { child, what: what.to_string() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout to the end, waits, and fails on a non-zero exit.
    pub fn finish(mut self) -> Result<String> {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).with_context(|| format!("reading {} output", self.what))?;
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed with {status}; output: {out}", self.what);
        }
        Ok(out)
    }

    /// Sends SIGINT and waits up to `timeout` for the exit status.
    pub fn interrupt(&mut self, timeout: Duration) -> Result<Option<i32>> {
        util::run(Command::new("kill").args(["-INT", &self.pid().to_string()]).stderr(Stdio::null()))
            .or_else(|e| if self.child.try_wait()?.is_some() { Ok(()) } else { Err(e) })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?} of SIGINT", self.what);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Forwards a child's output line by line (draining it, so the child never blocks on a full pipe).
pub fn lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// How long a workload or tracer may take to start and show it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits (up to [`READY_TIMEOUT`]) for the first line that satisfies `pred`.
pub fn wait_for_line(rx: &Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if pred(&line) => return Ok(line),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => bail!("{what}: not ready within {READY_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("{what} exited before it was ready"),
        }
    }
}

/// The summary a workload prints last: its output's last JSON line.
pub fn last_json(out: &str, what: &str) -> Result<serde_json::Value> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{what}: no JSON in {out:?}"))?;
    serde_json::from_str(line).with_context(|| format!("{what}: bad JSON {line:?}"))
}

/// A number from a JSON summary.
pub fn json_f64(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key].as_f64().with_context(|| format!("missing {key} in {v}"))
}

/// examples/bin/httpserver-go1.27, started (guarded) and listening, with its address.
pub fn start_go_server(bin_dir: &Path) -> Result<(Proc, String)> {
    let mut server = Proc::spawn(
        Command::new(bin_dir.join("httpserver-go1.27")).stdout(Stdio::piped()).stderr(Stdio::null()),
        "httpserver-go1.27",
    )?;
    let rx = lines(server.child.stdout.take().context("httpserver stdout")?);
    let hello = wait_for_line(&rx, "httpserver", |l| l.contains("listening"))?;
    let hello: serde_json::Value = serde_json::from_str(&hello)?;
    let addr = hello["listening"].as_str().context("no listening address")?.to_owned();
    Ok((server, addr))
}

/// Starts examples/bin/loadgen-go1.27 against `addr`: 16 keep-alive connections for `seconds`.
pub fn start_loadgen(bin_dir: &Path, addr: &str, seconds: u64) -> Result<Proc> {
    Proc::spawn(
        Command::new(bin_dir.join("loadgen-go1.27"))
            .args(["-url", &format!("http://{addr}/hello"), "-conns", "16"])
            .args(["-duration", &format!("{seconds}s")])
            .stdout(Stdio::piped()),
        "loadgen-go1.27",
    )
}

/// (requests/s, errors) from loadgen's output.
pub fn load_result(out: &str) -> Result<(f64, u64)> {
    let v = last_json(out, "loadgen")?;
    Ok((json_f64(&v, "rps")?, json_f64(&v, "errors")? as u64))
}

/// Kernel, CPUs and load average: what a throughput figure of these benches depends on.
pub fn machine_facts() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "kernel {}, {cpus} CPUs, load average {}",
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// A process's CPU time and memory, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime of all its threads, in seconds.
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kb: u64,
    /// VmHWM (peak RSS so far), KiB.
    pub hwm_kb: u64,
}

/// The CPU time (/proc/PID/stat) and RSS (/proc/PID/status) of `pid` now.
pub fn usage(pid: u32) -> Result<Usage> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("pid {pid} gone"))?;
    // Fields after the command name (which may hold spaces and parentheses): state is field 3,
    // utime 14 and stime 15.
    let rest = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        fields.get(i).and_then(|f| f.parse::<f64>().ok()).context("malformed /proc/PID/stat")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_s = (tick(11)? + tick(12)?) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage { cpu_s, rss_kb: kb("VmRSS:"), hwm_kb: kb("VmHWM:") })
}

/// Context switches (voluntary + involuntary) of every thread of `pid` so far.
pub fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Runs `cmd` to its end with stdout captured, and returns its exit code, stdout, and its own
/// CPU seconds and peak RSS (KiB) from wait4's rusage (nothing of other children).
pub fn run_measured(cmd: &mut Command, what: &str) -> Result<(Option<i32>, String, f64, u64)> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("starting {what}"))?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).with_context(|| format!("reading {what} output"))?;
    }
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unreaped child; status and ru are valid to write.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        let _ = child.kill();
        bail!("waiting for {what}: {}", std::io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((code, out, secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss as u64))
}

/// `parkscope top -p PID` in a real terminal: a detached 160x45 tmux session on a tmux server
/// of its own (as tests/tests/top.rs runs it), killed on drop. The shell around top prints its
/// exit status when it ends, so a top that failed is seen.
pub struct TopInTmux {
    socket: String,
    /// The pid of `parkscope top` itself (not of the shell around it).
    pub pid: u32,
}

impl TopInTmux {
    /// Starts top on `target` and waits until it shows a live view of it whose header
    /// contains `expect` (e.g. the runtime and version).
    pub fn start(parkscope: &Path, target: u32, expect: &str) -> Result<TopInTmux> {
        if !util::output_contains(Command::new("tmux").arg("-V"), "tmux") {
            bail!("tmux not found: `cargo xtask setup` installs it");
        }
        let socket = format!("parkscope-bench-{}-{target}", std::process::id());
        let script = format!("{} top -p {target}; echo \"top exited $?\"; sleep 600", parkscope.display());
        let out = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "160", "-y", "45", "-P", "-F", "#{pane_pid}"])
            .args(["sh", "-c", &script])
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!("tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut top = TopInTmux { socket, pid: 0 };
        let shell: u32 =
            String::from_utf8_lossy(&out.stdout).trim().parse().context("tmux printed no pane pid")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        // top is the shell's only child.
        while top.pid == 0 {
            let children =
                std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
            top.pid = children.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if top.pid == 0 && Instant::now() > deadline {
                bail!("parkscope top did not start:\n{}", top.screen()?);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let header = format!("pid {target} (");
        loop {
            let screen = top.screen()?;
            if screen.contains("LIVE") && screen.contains(&header) && screen.contains(expect) {
                return Ok(top);
            }
            if Instant::now() > deadline || screen.contains("top exited") {
                bail!(
                    "parkscope top: no live view of pid {target} with {expect:?} within {READY_TIMEOUT:?}:\n{screen}"
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn screen(&self) -> Result<String> {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]).output()?;
        if !out.status.success() {
            bail!("tmux capture-pane: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Quits top with `q` (it must still be showing its live view, then exit 0) and returns
    /// the last live screen.
    pub fn stop(self) -> Result<String> {
        let screen = self.screen()?;
        if !screen.contains("LIVE") {
            bail!("parkscope top is no longer live:\n{screen}");
        }
        util::run(Command::new("tmux").args(["-L", &self.socket, "send-keys", "q"]))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.screen()?;
            if now.contains("top exited 0") {
                return Ok(screen);
            }
            if now.contains("top exited") || Instant::now() > deadline {
                bail!("parkscope top did not quit cleanly on q:\n{now}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TopInTmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).stderr(Stdio::null()).status();
    }
}

/// The `dropped N` count of top's header (events the probes lost), if shown.
pub fn top_dropped(screen: &str) -> Option<u64> {
    let after = screen.split("| dropped ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}
