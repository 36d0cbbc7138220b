//! One module per subcommand; each returns the exit code it ended with or a [`Failure`].
//! snapshot, schedtrace, record and top consume a `parkscope_collector::Collector`, profile a
//! `parkscope_collector::profile::ProfileCollector`; none touches the probes.
pub mod export;
pub mod profile;
pub mod record;
pub mod replay;
pub mod schedtrace;
pub mod snapshot;
pub mod top;
pub mod top_from;

use tokio::io::AsyncWriteExt;

use crate::error::Failure;

/// Runs file-bound or otherwise blocking work (/proc, target memory, bpf() loads,
/// symbolisation) on tokio's blocking pool, so the reactor never waits on it.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure::internal(&e.into()))
}

/// Writes to stdout through the reactor, so a slow reader never blocks our event loop.
pub async fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = tokio::io::stdout();
    let r = async {
        out.write_all(text.as_bytes()).await?;
        out.flush().await
    }
    .await;
    match r {
        // A closed pipe (`| head`) is the reader's choice, not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::internal(&anyhow::Error::from(e).context("writing to stdout"))),
        Ok(()) => Ok(()),
    }
}

/// The warning for a Go program whose runtime could not be read: its one-line cause, what is
/// output instead (`fallback`), and the hint. The command still exits with GO_UNREADABLE.
pub fn warn_go_unreadable(cause: &str, hint: Option<&str>, fallback: &str) {
    eprintln!("parkscope: warning: the Go runtime cannot be read: {cause}; {fallback}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}
