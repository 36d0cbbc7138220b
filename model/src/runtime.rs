//! The language runtime found in the target, and how far it could be read.

use serde::{Deserialize, Serialize};

/// Which runtime a target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Go,
    Tokio,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Go => "go",
            RuntimeKind::Tokio => "tokio",
        }
    }
}

/// The language runtime of the target, when parkscope finds one. When it cannot be read
/// (`error` set), only what the binary itself says (kind, version, module) is filled, and the
/// rest of the snapshot is the thread view alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeView {
    pub kind: RuntimeKind,
    /// e.g. "go1.27.3" (from the binary's build information; "unknown" if even that is
    /// unreadable), or "tokio 1.54.1".
    pub version: String,
    pub module: Option<String>,
    /// Where the struct layouts came from: "dwarf" or "table:go1.27"; null when none was found.
    pub layout: Option<String>,
    /// Null when the runtime could not be read.
    pub gomaxprocs: Option<i64>,
    /// Free (dead) goroutine structs, not listed; null when the runtime could not be read.
    pub goroutines_dead: Option<usize>,
    /// Entries dropped because they changed while being read; null when not read.
    pub goroutines_inconsistent: Option<usize>,
    /// Why the runtime could not be read (one line); null when it was read. Goroutines are then
    /// not listed and thread roles are unknown.
    pub error: Option<String>,
    /// What to do about `error` (printed on stderr by the commands).
    pub hint: Option<String>,
}

impl RuntimeView {
    /// Whether the goroutines and thread roles come from a read of the runtime.
    pub fn is_read(&self) -> bool {
        self.error.is_none()
    }
}
