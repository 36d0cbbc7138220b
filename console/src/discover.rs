//! Where a process serves the console: its own listening TCP sockets (from /proc/PID/fd joined
//! with the /proc/PID/net tables of its network namespace, `parkscope_probes::procfs::fds`),
//! and the connection to one, made inside the target's network namespace when it has its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parkscope_probes::procfs::fds::{FdTable, FdTarget};
use parkscope_probes::procfs::netns;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{ConsoleError, DEFAULT_ADDR};

/// console-subscriber names its aggregator thread `console_subscriber`; /proc keeps the first
/// 15 bytes of a thread name.
const CONSOLE_THREAD_COMM: &str = "console_subscri";
/// Threads looked at, at most, when looking for that thread.
const MAX_THREADS_SCANNED: usize = 1 << 20;

/// Hint for callers deciding whether to look for a console at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleHint {
    /// The target runs console-subscriber's aggregator thread.
    ThreadPresent,
    Absent,
}

/// Whether `pid` runs console-subscriber (its aggregator thread is there). Cheap: one small
/// read per thread, so callers can decide to look for the endpoint only then.
pub fn console_thread_present(pid: u32) -> ConsoleHint {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return ConsoleHint::Absent };
    for entry in dir.take(MAX_THREADS_SCANNED).flatten() {
        let Ok(comm) = std::fs::read(entry.path().join("comm")) else { continue };
        if comm.starts_with(CONSOLE_THREAD_COMM.as_bytes()) {
            return ConsoleHint::ThreadPresent;
        }
    }
    ConsoleHint::Absent
}

/// The process's listening TCP sockets, as addresses to connect to (a wildcard bind is reached
/// on loopback), without duplicates, in fd order.
pub fn listening_endpoints(pid: u32) -> Result<Vec<SocketAddr>, ConsoleError> {
    let table = FdTable::read(pid).map_err(|e| ConsoleError::Sockets { pid, cause: e.to_string() })?;
    let mut out = Vec::new();
    for (_, target) in table.iter() {
        let FdTarget::Tcp { local, state, .. } = target else { continue };
        if state != "listen" {
            continue;
        }
        let ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, local.port());
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// Endpoints to try, best first: console-subscriber's default when the process listens there,
/// then every other listening socket on port 6669, then the rest; at most `max`.
pub fn candidates(pid: u32, max: usize) -> Result<Vec<SocketAddr>, ConsoleError> {
    let mut all = listening_endpoints(pid)?;
    all.sort_by_key(|a| (*a != DEFAULT_ADDR, a.port() != DEFAULT_ADDR.port()));
    all.truncate(max);
    Ok(all)
}

/// A TCP connection to `addr` as seen from `pid`: made here when the target shares our network
/// namespace, else from inside the target's (probes' `netns`: a short-lived thread that enters it;
/// the socket keeps the namespace it was made in).
pub async fn connect(pid: u32, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConsoleError> {
    let connect_err = |e: std::io::Error| ConsoleError::Connect { addr, cause: e.to_string() };
    if netns::shares_network_namespace(pid).unwrap_or(false) {
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(ConsoleError::Connect { addr, cause: format!("no answer within {timeout:?}") }),
            Ok(r) => r.map_err(connect_err),
        };
    }
    let netns_err = move |e: std::io::Error| ConsoleError::Netns { pid, addr, cause: e.to_string() };
    let connected = tokio::task::spawn_blocking(move || {
        netns::in_network_namespace_of(pid, move || std::net::TcpStream::connect_timeout(&addr, timeout))
    })
    .await
    .map_err(|e| netns_err(std::io::Error::other(e)))?
    .map_err(netns_err)?
    .map_err(|e| ConsoleError::Connect {
        addr,
        cause: format!("{e} (inside the target's network namespace)"),
    })?;
    connected.set_nonblocking(true).map_err(connect_err)?;
    TcpStream::from_std(connected).map_err(connect_err)
}

/// A gRPC channel over the one connection made above (tonic would otherwise dial itself, in
/// our namespace). A reconnect attempt gets an error, never a new connection.
pub async fn channel_over(stream: TcpStream, addr: SocketAddr) -> Result<Channel, ConsoleError> {
    let slot = Arc::new(Mutex::new(Some(stream)));
    let connector = tower::service_fn(move |_: Uri| {
        let taken = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            taken
                .map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the console connection was already used"))
        }
    });
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ConsoleError::Protocol { addr, cause: e.to_string() })?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConsoleError::Protocol { addr, cause: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listeners_are_found_and_wildcards_reached_on_loopback() {
        let any = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = any.local_addr().expect("addr").port();
        // A connected (not listening) socket is not a candidate.
        let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let _client = std::net::TcpStream::connect(lo.local_addr().expect("addr")).expect("connect");
        let found = listening_endpoints(std::process::id()).expect("fd table");
        assert!(found.contains(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)), "{found:?}");
        assert!(found.contains(&lo.local_addr().expect("addr")), "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(console_thread_present(std::process::id()), ConsoleHint::Absent);
    }
}
