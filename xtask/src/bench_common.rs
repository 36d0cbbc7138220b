//! Helpers shared by the benchmarks (bench.rs, bench_go.rs, bench_profile.rs): a child-process
//! guard that never leaves a workload or tracer running, a line reader that keeps pipes
//! drained, and the statistics the reports print.

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
