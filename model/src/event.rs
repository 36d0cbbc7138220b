//! What happened between two snapshots, as the probes streamed it.

use serde::{Deserialize, Serialize};

use crate::thread::SyscallClass;

/// One event, stamped on CLOCK_MONOTONIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ns: u64,
    pub kind: EventKind,
}

/// The kinds of event the collector streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// A syscall that blocked at least the long-call threshold returned (`at_ns` is its return).
    BlockEnded {
        tid: u32,
        nr: u32,
        name: String,
        class: SyscallClass,
        fd: Option<i32>,
        duration_ns: u64,
        /// The return value (negative: -errno).
        ret: i64,
    },
}
