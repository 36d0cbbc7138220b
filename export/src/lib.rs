//! parkscope's exports of a recording (a time-ordered sequence of snapshots and events) to other
//! tools' formats: today a Perfetto protobuf trace ([`perfetto()`]).
//!
//! Depends on the model only: whatever yields [`Entry`]s (a recording's reader, a live
//! collector) can be exported.

pub mod perfetto;

/// The Perfetto protos parkscope writes, generated at build time from the vendored official
/// `.proto` files (protos/; see protos/README.md).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/perfetto.protos.rs"));
}

use parkscope_model::{Event, Snapshot};

/// One item of a recording, in time order.
#[derive(Debug, Clone)]
pub enum Entry {
    Snapshot(Box<Snapshot>),
    Event(Event),
}

pub use perfetto::{ExportError, ExportStats, PerfettoWriter, perfetto};
