//! Helpers shared by the benchmarks (bench.rs, bench_go.rs, bench_profile.rs): a child-process
//! guard that never leaves a workload or tracer running, a line reader that keeps pipes
//! drained, and the statistics the reports print.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
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
