//! Counts for the whole process at one instant, as the table's header and schedtrace show them.

use serde::{Deserialize, Serialize};

use crate::thread::{SyscallClass, SyscallView, ThreadRole, ThreadState, ThreadView};

/// Counts for the whole process at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub threads: usize,
    pub running: usize,
    pub runnable: usize,
    pub blocked: usize,
    pub read: usize,
    pub write: usize,
    pub poll: usize,
    pub futex: usize,
    pub sleep: usize,
    pub other: usize,
    /// Longest time any thread has been in its current call (exact or lower bound).
    pub max_blocked_ns: Option<u64>,
    /// How long probes were attached before this view was taken (0: /proc only).
    pub window_ns: u64,
    /// Events the kernel side had to drop for lack of room (0 means nothing was lost).
    pub dropped_events: u64,
    /// Syscall entries seen for the target during the window.
    pub syscalls_traced: u64,
    /// Threshold for `long_calls` (null when they were not collected).
    pub long_call_threshold_ns: Option<u64>,
    /// Runtime threads waiting by design (idle Ms, the netpoller, sysmon): not in `blocked`.
    pub runtime_idle: usize,
    /// Goroutines listed, and how many of them are parked (status waiting).
    pub goroutines: usize,
    pub goroutines_waiting: usize,
    /// With `--go-uprobes`: goroutine status changes seen during the window (null without).
    pub go_transitions: Option<u64>,
    /// Async-runtime tasks listed (tokio, through the console), and stalled workers.
    #[serde(default)]
    pub tasks: usize,
    #[serde(default)]
    pub stalls: usize,
    /// tokio, while a stall lasts: every worker has been inside a task's poll at least this
    /// long, so none can have polled the I/O driver meanwhile (socket readiness waits
    /// unseen). A lower bound; None when some worker is free (or not tokio).
    #[serde(default)]
    pub io_driver_starved_ns: Option<u64>,
}

impl Summary {
    /// Counts threads by state and blocked threads by syscall class.
    pub fn count(threads: &[ThreadView]) -> Summary {
        let mut s = Summary { threads: threads.len(), ..Summary::default() };
        for t in threads {
            match t.state {
                ThreadState::Running => s.running += 1,
                ThreadState::Runnable => s.runnable += 1,
                st if st.is_blocked() && t.role.is_some_and(ThreadRole::is_idle_by_design) => {
                    s.runtime_idle += 1;
                }
                st if st.is_blocked() => {
                    s.blocked += 1;
                    match t.syscall.as_ref().map_or(SyscallClass::Other, |c| c.class) {
                        SyscallClass::Read => s.read += 1,
                        SyscallClass::Write => s.write += 1,
                        SyscallClass::Poll => s.poll += 1,
                        SyscallClass::Futex => s.futex += 1,
                        SyscallClass::Sleep => s.sleep += 1,
                        SyscallClass::Other => s.other += 1,
                    }
                    if let Some(ns) = t.syscall.as_ref().and_then(SyscallView::time_ns) {
                        s.max_blocked_ns = Some(s.max_blocked_ns.map_or(ns, |m| m.max(ns)));
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// Blocked threads of `class`.
    pub fn blocked_in(&self, class: SyscallClass) -> usize {
        match class {
            SyscallClass::Read => self.read,
            SyscallClass::Write => self.write,
            SyscallClass::Poll => self.poll,
            SyscallClass::Futex => self.futex,
            SyscallClass::Sleep => self.sleep,
            SyscallClass::Other => self.other,
        }
    }
}
