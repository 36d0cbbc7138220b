//! A tokio TCP echo server: the tokio workload of `cargo xtask bench-tokio`. Every connection
//! is one task that reads what the peer sends and writes it back, so each request is a read
//! and a write on a worker, woken by tokio's I/O driver (epoll).
//!
//! Usage: `echo [--addr 127.0.0.1:0] [--workers 2]` (the address must be loopback; port 0
//! picks a free port). Once listening it prints one line,
//! `{"listening":"127.0.0.1:PORT","pid":PID,"tokio":"1.54.1"}` (the tokio version from its
//! Cargo.lock), and serves until killed.

use std::io::Write;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn usage(why: &str) -> ! {
    eprintln!("echo: {why}\nusage: echo [--addr 127.0.0.1:0] [--workers N]");
    std::process::exit(2);
}

async fn serve(mut conn: tokio::net::TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut workers = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--addr" => addr = value().parse().unwrap_or_else(|_| usage("--addr is not HOST:PORT")),
            "--workers" => {
                workers = value().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage("bad --workers"))
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if !addr.ip().is_loopback() {
        usage("only loopback addresses are allowed");
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
            eprintln!("echo: bind {addr}: {e}");
            std::process::exit(1);
        });
        let local = listener.local_addr().unwrap();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                r#"{{"listening":"{local}","pid":{},"tokio":"{}"}}"#,
                std::process::id(),
                env!("TOKIO_VERSION")
            );
            let _ = out.flush();
        }
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(serve(conn));
                }
                // Out of fds or a connection reset before accept: keep serving the others.
                Err(e) => {
                    eprintln!("echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}
