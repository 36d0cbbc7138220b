//! The lifecycle around a run: waiting without blocking the reactor for whichever comes first
//! of a deadline, Ctrl-C/SIGTERM, or the target's exit (watched through a pidfd, so no polling).

use std::{os::fd::OwnedFd, time::Duration};

use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Deadline,
    Interrupted,
    TargetExited,
}

/// Signal and target-exit watchers for one run.
pub struct Session {
    sigint: Signal,
    sigterm: Signal,
    /// Readable once the target process exits.
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl Session {
    /// Must be called inside the runtime. Installs SIGINT/SIGTERM handlers so the probes are
    /// detached by our own drop path instead of the process dying with them attached.
    pub fn new(pid: u32) -> std::io::Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            pidfd: open_pidfd(pid),
        })
    }

    /// Signal watchers only: for consumers of the collector, which watches the target itself.
    pub fn signals() -> std::io::Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            pidfd: None,
        })
    }

    /// Waits up to `dur` (None: forever), returning early on a signal or the target's exit.
    pub async fn wait(&mut self, dur: Option<Duration>) -> Wake {
        let deadline = async {
            match dur {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let exited = async {
            match &self.pidfd {
                Some(fd) => match fd.readable().await {
                    Ok(_guard) => {}
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => Wake::Deadline,
            _ = self.sigint.recv() => Wake::Interrupted,
            _ = self.sigterm.recv() => Wake::Interrupted,
            _ = exited => Wake::TargetExited,
        }
    }
}

/// A pidfd for `pid` registered with the reactor, or None if the kernel lacks pidfd_open
/// (the callers then notice the exit when /proc reads fail).
fn open_pidfd(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    let owned = parkscope_collector::pidfd_open(pid).ok()?;
    // SAFETY: the OwnedFd keeps the fd open for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }.ok()
}
