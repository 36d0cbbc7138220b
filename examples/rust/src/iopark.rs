//! A tokio program whose tasks park on I/O on purpose and print their own ground truth: for
//! each, one JSON line with what it waits on, its task id (`tokio::task::id()`), the fd
//! (`as_raw_fd()`) and the socket's own addresses (`local_addr()` / `peer_addr()`).
//!
//! Usage: `iopark [--current-thread] [--many N]`
//! - `tcp_read`   reads a TCP stream whose peer (a std thread) never writes (AsyncRead: the
//!                waker sits in the reader slot of tokio's ScheduledIo)
//! - `tcp_write`  writes to a TCP stream whose peer never reads, until the send buffer is full
//!                (the writer slot)
//! - `accept`     `TcpListener::accept()` with nobody connecting (a waiter in the list), by two
//!                tasks on one listener (two waiters in one list): two lines, one fd
//! - `udp_recv`   `UdpSocket::recv_from()` with nobody sending (a waiter in the list)
//! - `pipe_read`  reads a pipe (`tokio::net::unix::pipe`) nobody writes (the reader slot)
//! - `timer`      `tokio::time::sleep` for an hour, holding an idle TCP stream: parked, but not
//!                on I/O (it must not be listed as such)
//! - `stale`      reads a TCP stream with a 50 ms timeout, then waits on a channel nobody
//!                sends on, keeping the stream: its waker stays registered for the stream
//! - `many`       N more `tcp_read` tasks (`--many N`, default 0), one line each
//!
//! Then the main future (`block_on`, not a task) accepts on its own listener and prints
//! `{"park":"block_on_accept",...}`, and last `{"ready":true,"pid":...}`. It idles until
//! killed. `--current-thread` runs it all on a current-thread runtime (default: multi-thread,
//! 2 workers).

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// One line on stdout, written whole (stdout is a pipe in tests).
fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn park_line(kind: &str, fd: i32, local: Option<SocketAddr>, peer: Option<SocketAddr>) {
    let task = tokio::task::try_id().map_or_else(|| "null".to_owned(), |id| id.to_string());
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "null".to_owned(), |a| format!("\"{a}\""));
    emit(format!(
        r#"{{"park":"{kind}","task":{task},"fd":{fd},"local":{},"peer":{}}}"#,
        addr(local),
        addr(peer)
    ));
}

/// A connected pair: our tokio stream, and the peer's std stream (kept by the caller so the
/// connection stays open and silent).
async fn connected() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    (stream, peer)
}

async fn tcp_read(kind: &'static str, ready: tokio::sync::mpsc::Sender<()>) {
    let (mut stream, peer) = connected().await;
    park_line(kind, stream.as_raw_fd(), stream.local_addr().ok(), stream.peer_addr().ok());
    let _ = ready.send(()).await;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await;
    drop(peer);
    panic!("{kind}: the silent peer sent something: {n:?}");
}

async fn tcp_write(ready: tokio::sync::mpsc::Sender<()>) {
    let (mut stream, peer) = connected().await;
    // Fill the send buffer (and the peer's receive buffer) until a write would block: the
    // write below then parks for good, since the peer never reads.
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.try_write(&chunk) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("tcp_write: {e}"),
        }
    }
    park_line("tcp_write", stream.as_raw_fd(), stream.local_addr().ok(), stream.peer_addr().ok());
    let _ = ready.send(()).await;
    let r = stream.write_all(&chunk).await;
    drop(peer);
    panic!("tcp_write: the peer that never reads took it all: {r:?}");
}

async fn accept(listener: std::sync::Arc<TcpListener>, ready: tokio::sync::mpsc::Sender<()>) {
    park_line("accept", listener.as_raw_fd(), listener.local_addr().ok(), None);
    let _ = ready.send(()).await;
    let r = listener.accept().await;
    panic!("accept: somebody connected: {r:?}");
}

async fn udp_recv(ready: tokio::sync::mpsc::Sender<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    park_line("udp_recv", socket.as_raw_fd(), socket.local_addr().ok(), None);
    let _ = ready.send(()).await;
    let mut buf = [0u8; 64];
    let r = socket.recv_from(&mut buf).await;
    panic!("udp_recv: somebody sent: {r:?}");
}

async fn pipe_read(ready: tokio::sync::mpsc::Sender<()>) {
    let (tx, mut rx) = tokio::net::unix::pipe::pipe().expect("pipe");
    park_line("pipe_read", rx.as_raw_fd(), None, None);
    let _ = ready.send(()).await;
    let mut buf = [0u8; 64];
    let r = rx.read(&mut buf).await;
    drop(tx);
    panic!("pipe_read: the silent writer wrote: {r:?}");
}

async fn timer(ready: tokio::sync::mpsc::Sender<()>) {
    let (stream, peer) = connected().await;
    park_line("timer", stream.as_raw_fd(), stream.local_addr().ok(), stream.peer_addr().ok());
    let _ = ready.send(()).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    drop((stream, peer));
}

async fn stale(ready: tokio::sync::mpsc::Sender<()>) {
    let (mut stream, peer) = connected().await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
    assert!(r.is_err(), "stale: the silent peer sent something");
    park_line("stale", stream.as_raw_fd(), stream.local_addr().ok(), stream.peer_addr().ok());
    let (_never_sent, rx) = tokio::sync::oneshot::channel::<()>();
    let _ = ready.send(()).await;
    let _ = rx.await;
    drop((stream, peer));
}

async fn run(many: usize) {
    let (ready, mut readies) = tokio::sync::mpsc::channel(16);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(tcp_read("tcp_read", ready.clone())));
    tasks.push(tokio::spawn(tcp_write(ready.clone())));
    let shared = std::sync::Arc::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    tasks.push(tokio::spawn(accept(shared.clone(), ready.clone())));
    tasks.push(tokio::spawn(accept(shared, ready.clone())));
    tasks.push(tokio::spawn(udp_recv(ready.clone())));
    tasks.push(tokio::spawn(pipe_read(ready.clone())));
    tasks.push(tokio::spawn(timer(ready.clone())));
    tasks.push(tokio::spawn(stale(ready.clone())));
    for _ in 0..many {
        tasks.push(tokio::spawn(tcp_read("many", ready.clone())));
    }
    for _ in 0..tasks.len() {
        readies.recv().await.expect("a task ended before it parked");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    park_line("block_on_accept", listener.as_raw_fd(), listener.local_addr().ok(), None);
    emit(format!(
        r#"{{"ready":true,"pid":{},"tasks":{},"flavor":"{}"}}"#,
        std::process::id(),
        tasks.len(),
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            "current_thread"
        } else {
            "multi_thread"
        }
    ));
    let r = listener.accept().await;
    panic!("block_on_accept: somebody connected: {r:?}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut current_thread, mut many) = (false, 0usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--current-thread" => current_thread = true,
            "--many" => many = args.next().and_then(|n| n.parse().ok()).expect("--many N"),
            other => panic!("unknown argument {other:?} (usage: iopark [--current-thread] [--many N])"),
        }
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
    }
    .expect("runtime");
    runtime.block_on(run(many));
}
