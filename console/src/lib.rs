//! Tasks of a live tokio process through console-subscriber's gRPC protocol
//! (`rs.tokio.console.instrument.Instrument/WatchUpdates`): finding the endpoint among the
//! process's own listening sockets, reading the task list with its stats for a bounded time,
//! and tokio-console's warnings. Watching never pauses the target (the protocol's `Pause` is
//! never sent). Kept out of `parkscope-probes` so that crate's tests do not build tonic.

pub mod discover;
pub mod state;
pub mod warnings;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use console_api::instrument::{InstrumentRequest, instrument_client::InstrumentClient};
use parkscope_model::TaskView;
use tokio::sync::watch;

pub use discover::{ConsoleHint, console_thread_present, listening_endpoints};
pub use state::Caps;

/// console-subscriber's default bind address.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6669);

/// Bounds on one read of a target's console.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Keep merging updates until this much time has passed since the first one (0: the first
    /// update only, which is the whole state).
    pub collect_for: Duration,
    /// TCP connect, per endpoint.
    pub connect_timeout: Duration,
    /// From the call to the first update (the whole state, sent at once on subscription).
    pub first_update_timeout: Duration,
    /// Endpoint candidates tried when none was given.
    pub max_candidates: usize,
    /// Largest gRPC message accepted (console-subscriber keeps its own below 4 MiB).
    pub max_message_bytes: usize,
    /// Updates merged at most.
    pub max_updates: u32,
    pub caps: Caps,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            collect_for: Duration::ZERO,
            connect_timeout: Duration::from_millis(500),
            first_update_timeout: Duration::from_secs(3),
            max_candidates: 16,
            max_message_bytes: 16 << 20,
            max_updates: 64,
            caps: Caps::default(),
        }
    }
}

/// What one read gave.
#[derive(Debug)]
pub struct ConsoleTasks {
    pub addr: SocketAddr,
    pub tasks: Vec<TaskView>,
    pub updates: u32,
    /// The `now` of the last update merged, ns since the Unix epoch.
    pub at_unix_ns: Option<u64>,
    pub dropped_events: u64,
    pub tasks_capped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("process {pid} has no listening TCP socket that answers the tokio console protocol{}", tried_list(.tried))]
    NoEndpoint { pid: u32, tried: Vec<SocketAddr> },
    #[error("cannot read the sockets of process {pid}: {cause}")]
    Sockets { pid: u32, cause: String },
    #[error("cannot connect to the tokio console at {addr}: {cause}")]
    Connect { addr: SocketAddr, cause: String },
    #[error("cannot enter the network namespace of process {pid} to reach {addr}: {cause}")]
    Netns { pid: u32, addr: SocketAddr, cause: String },
    #[error("the tokio console at {addr} did not answer: {cause}")]
    Protocol { addr: SocketAddr, cause: String },
    #[error("the tokio console at {addr} sent no update within {waited:?}")]
    Timeout { addr: SocketAddr, waited: Duration },
}

fn tried_list(tried: &[SocketAddr]) -> String {
    if tried.is_empty() {
        return " (it listens on none)".to_owned();
    }
    let list: Vec<String> = tried.iter().map(ToString::to_string).collect();
    format!(" (tried {})", list.join(", "))
}

impl ConsoleError {
    /// A hint for the person at the terminal.
    pub fn hint(&self) -> String {
        match self {
            ConsoleError::NoEndpoint { .. } => "tasks need console-subscriber in the target (built with RUSTFLAGS=\"--cfg tokio_unstable\"); if it binds elsewhere, pass --console-addr HOST:PORT (its TOKIO_CONSOLE_BIND)".to_owned(),
            ConsoleError::Sockets { .. } => "run as root to read another user's /proc/PID/fd, or pass --console-addr HOST:PORT".to_owned(),
            ConsoleError::Connect { .. } | ConsoleError::Timeout { .. } => "check --console-addr (the target's TOKIO_CONSOLE_BIND); the thread view needs no console".to_owned(),
            ConsoleError::Netns { .. } => "entering another network namespace needs CAP_SYS_ADMIN; or pass a --console-addr reachable from here".to_owned(),
            ConsoleError::Protocol { .. } => "is this a console-subscriber endpoint (console-api 0.9)? pass --console-addr HOST:PORT".to_owned(),
        }
    }
}

/// Reads the task list of `pid`: from `addr` when given, else from the process's own listening
/// sockets (console-subscriber's default 127.0.0.1:6669 first, then each other one with a short
/// handshake). A target in another network namespace is reached through that namespace.
pub async fn collect(
    pid: u32,
    addr: Option<SocketAddr>,
    opts: Options,
) -> Result<ConsoleTasks, ConsoleError> {
    // Never stopped early: the sender lives as long as the read.
    let (_never, stop) = watch::channel(false);
    collect_until(pid, addr, opts, stop).await
}

/// [`collect`], whose merging of updates also ends when `stop` turns true or its sender is
/// dropped (a window cut short): the tasks merged so far stand. Finding the endpoint and its
/// first update are bounded by `opts` alone.
pub async fn collect_until(
    pid: u32,
    addr: Option<SocketAddr>,
    opts: Options,
    mut stop: watch::Receiver<bool>,
) -> Result<ConsoleTasks, ConsoleError> {
    if let Some(addr) = addr {
        // Given by hand it may be anyone's console: say so when the target does not listen there
        // (a forwarded port is legitimate, so this is a warning, not a refusal).
        if let Ok(own) = discover::listening_endpoints(pid)
            && !own.iter().any(|a| *a == addr || (a.port() == addr.port() && addr.ip().is_unspecified()))
        {
            tracing::warn!(pid, %addr, "not a listening socket of the target; the tasks shown are that endpoint's");
        }
        return collect_from(pid, addr, opts, &mut stop).await;
    }
    let candidates = discover::candidates(pid, opts.max_candidates)?;
    let mut tried = Vec::new();
    let mut last_err = None;
    for addr in candidates {
        tried.push(addr);
        // A listener that is not the console is not worth waiting long for: the console
        // sends its whole state at once on subscription.
        let probe =
            Options { first_update_timeout: opts.first_update_timeout.min(Duration::from_secs(1)), ..opts };
        match collect_from(pid, addr, probe, &mut stop).await {
            Ok(tasks) => return Ok(tasks),
            Err(e @ ConsoleError::Netns { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(pid, %addr, "not a console endpoint: {e}");
                last_err = Some(e);
            }
        }
    }
    // With one candidate, its own error says more than "none answered".
    match (tried.len(), last_err) {
        (1, Some(e)) => Err(e),
        _ => Err(ConsoleError::NoEndpoint { pid, tried }),
    }
}

async fn collect_from(
    pid: u32,
    addr: SocketAddr,
    opts: Options,
    stop: &mut watch::Receiver<bool>,
) -> Result<ConsoleTasks, ConsoleError> {
    let stream = discover::connect(pid, addr, opts.connect_timeout).await?;
    let channel = discover::channel_over(stream, addr).await?;
    let mut client = InstrumentClient::new(channel).max_decoding_message_size(opts.max_message_bytes);
    let protocol =
        |e: tonic::Status| ConsoleError::Protocol { addr, cause: format!("{}: {}", e.code(), e.message()) };
    let first_deadline = tokio::time::Instant::now() + opts.first_update_timeout;
    let timeout = ConsoleError::Timeout { addr, waited: opts.first_update_timeout };
    let mut updates = tokio::time::timeout_at(first_deadline, client.watch_updates(InstrumentRequest {}))
        .await
        .map_err(|_| ConsoleError::Timeout { addr, waited: opts.first_update_timeout })?
        .map_err(protocol)?
        .into_inner();
    let first = match tokio::time::timeout_at(first_deadline, updates.message()).await {
        Err(_) => return Err(timeout),
        Ok(Err(e)) => return Err(protocol(e)),
        Ok(Ok(None)) => {
            return Err(ConsoleError::Protocol {
                addr,
                cause: "stream ended before the first update".into(),
            });
        }
        Ok(Ok(Some(u))) => u,
    };
    let started = Instant::now();
    let mut state = state::TaskState::new(opts.caps);
    state.merge(first);
    let end = tokio::time::Instant::now() + opts.collect_for;
    while state.updates < opts.max_updates && started.elapsed() < opts.collect_for && !*stop.borrow() {
        let next = tokio::select! {
            biased;
            _ = stop.changed() => break,
            next = tokio::time::timeout_at(end, updates.message()) => next,
        };
        match next {
            Ok(Ok(Some(u))) => state.merge(u),
            // The state so far stands; a stream that fails later is reported in the log only.
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::warn!(%addr, "console stream ended: {e}");
                break;
            }
            Err(_) => break,
        }
    }
    Ok(ConsoleTasks {
        addr,
        tasks: state.views(),
        updates: state.updates,
        at_unix_ns: state.now,
        dropped_events: state.dropped_events,
        tasks_capped: state.tasks_capped,
    })
}
