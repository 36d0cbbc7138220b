//! What a recording says about itself: the header chunk written first and the end chunk
//! written on a clean close.

use parkscope_model::{RuntimeKind, Timestamp};
use serde::{Deserialize, Serialize};

/// Version of the framing and of the delta encoding (docs/recording.md). The model's own
/// version is [`Header::schema_version`].
pub const FORMAT_VERSION: u32 = 1;

/// The first chunk of every recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The model's `SCHEMA_VERSION` the snapshots were written with.
    pub schema_version: u32,
    /// The recorder's version (`parkscope --version`).
    pub parkscope_version: String,
    /// `uname -r` of the machine recorded on.
    pub kernel_release: String,
    pub pid: u32,
    pub comm: String,
    /// The target's executable (/proc/PID/exe) when readable.
    pub exe: Option<String>,
    /// The executable's build id: its GNU build id (hex), else its Go build id.
    pub build_id: Option<String>,
    /// The language runtime found at the start, and its version (e.g. "go1.27.3").
    pub runtime: Option<RuntimeKind>,
    pub runtime_version: Option<String>,
    /// Time between snapshots.
    pub interval_ns: u64,
    /// When recording began, on both clocks.
    pub started_at: Timestamp,
}

/// The last chunk of a cleanly closed recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Why recording stopped: "duration", "interrupted", "target exited", "max size".
    pub reason: String,
    pub snapshots: u64,
    pub ended_at: Timestamp,
}
