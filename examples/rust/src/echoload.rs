//! The load generator of `cargo xtask bench-tokio`: `--conns` TCP connections to the echo
//! server, each a task that sends a `--size`-byte request (its sequence number in the first 8
//! bytes) and reads the echo back, again and again for `--duration`. Every echo is checked
//! byte for byte.
//!
//! Usage: `echoload --addr 127.0.0.1:PORT [--conns 16] [--duration 10s] [--size 64]
//! [--workers 2]`. Only loopback addresses are accepted; the duration is capped at 1 h. The
//! clock starts once every connection is open. At the end it prints one line,
//! `{"requests":N,"seconds":F,"rps":F,"errors":E}`: `requests` counts echoes received whole and
//! correct; `errors` counts connections that failed (connect, I/O, or a wrong echo; such a
//! connection stops); a request cut short by the end of the run counts in neither. Exit
//! status 1 if no request succeeded, 2 for bad arguments.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn usage(why: &str) -> ! {
    eprintln!(
        "echoload: {why}\nusage: echoload --addr 127.0.0.1:PORT [--conns N] [--duration 10s] [--size BYTES] [--workers N]"
    );
    std::process::exit(2);
}

/// `10s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let secs = num.parse::<f64>().ok()? * scale;
    (secs.is_finite() && secs > 0.0 && secs <= 3600.0).then(|| Duration::from_secs_f64(secs))
}

/// One connection's loop until `deadline`; Err on the first failure.
async fn drive(
    mut conn: tokio::net::TcpStream,
    size: usize,
    deadline: Instant,
    done: Arc<AtomicU64>,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut request = vec![0xa5u8; size];
    let mut reply = vec![0u8; size];
    let mut seq = 0u64;
    let rounds = async {
        loop {
            seq += 1;
            request[..8].copy_from_slice(&seq.to_le_bytes());
            conn.write_all(&request).await?;
            conn.read_exact(&mut reply).await?;
            if reply != request {
                return Err(std::io::Error::other(format!("echo {seq} differs from the request")));
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    };
    match tokio::time::timeout_at(deadline, rounds).await {
        Ok(result) => result,
        // The deadline: the request in flight counts in neither.
        Err(_) => Ok(()),
    }
}

fn main() {
    let mut addr: Option<SocketAddr> = None;
    let (mut conns, mut size, mut workers) = (16usize, 64usize, 2usize);
    let mut duration = Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        let count = |v: &str, max: usize| v.parse::<usize>().ok().filter(|&n| n >= 1 && n <= max);
        match a.as_str() {
            "--addr" => addr = Some(value.parse().unwrap_or_else(|_| usage("--addr is not HOST:PORT"))),
            "--conns" => conns = count(&value, 10_000).unwrap_or_else(|| usage("bad --conns")),
            // At least the 8 bytes of the sequence number.
            "--size" => {
                size = count(&value, 1 << 20).filter(|&n| n >= 8).unwrap_or_else(|| usage("bad --size"))
            }
            "--workers" => workers = count(&value, 256).unwrap_or_else(|| usage("bad --workers")),
            "--duration" => duration = parse_duration(&value).unwrap_or_else(|| usage("bad --duration")),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let addr = addr.unwrap_or_else(|| usage("--addr is required"));
    if !addr.ip().is_loopback() {
        usage("only loopback addresses are allowed");
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    let (requests, seconds, errors) = rt.block_on(async move {
        let mut streams = Vec::with_capacity(conns);
        let mut errors = 0u64;
        for _ in 0..conns {
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => streams.push(s),
                Ok(Err(e)) => {
                    eprintln!("echoload: connect {addr}: {e}");
                    errors += 1;
                }
                Err(_) => {
                    eprintln!("echoload: connect {addr}: timed out");
                    errors += 1;
                }
            }
        }
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + duration;
        let tasks: Vec<_> =
            streams.into_iter().map(|s| tokio::spawn(drive(s, size, deadline, done.clone()))).collect();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if errors == 0 {
                        eprintln!("echoload: {e}");
                    }
                    errors += 1;
                }
                Err(e) => {
                    eprintln!("echoload: a connection task failed: {e}");
                    errors += 1;
                }
            }
        }
        // The counter stops at the deadline (a round completing later is cut off by it).
        let seconds = duration.as_secs_f64();
        (done.load(Ordering::Relaxed), seconds, errors)
    });
    println!(
        r#"{{"requests":{requests},"seconds":{seconds:.3},"rps":{:.1},"errors":{errors}}}"#,
        requests as f64 / seconds
    );
    std::process::exit(if requests == 0 { 1 } else { 0 });
}
