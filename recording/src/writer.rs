//! Writes a recording: the file header and header chunk at once, then one chunk per snapshot
//! or batch of events, each written whole and flushed (no fsync: a killed recorder loses
//! nothing the kernel already has; only a machine crash can lose the last chunks).

use std::io::Write;

use parkscope_model::{Event, Snapshot};

use crate::chunk::{self, ChunkKind};
use crate::delta::Encoder;
use crate::header::{End, FORMAT_VERSION, Header};

/// What writing one snapshot cost.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Bytes of the chunk in the file.
    pub bytes: u64,
    pub keyframe: bool,
}

/// An open recording.
pub struct Writer<W: Write> {
    out: W,
    encoder: Encoder,
    bytes: u64,
    snapshots: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the file header and `header`, and flushes them.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Writer<W>> {
        let mut first = chunk::file_header(FORMAT_VERSION).to_vec();
        first.extend(chunk::encode(ChunkKind::Header, &serde_json::to_vec(header)?)?);
        out.write_all(&first)?;
        out.flush()?;
        Ok(Writer { out, encoder: Encoder::new(), bytes: first.len() as u64, snapshots: 0 })
    }

    /// Appends `snapshot` (a keyframe or a delta) and flushes.
    pub fn write_snapshot(&mut self, snapshot: &Snapshot) -> std::io::Result<Written> {
        let encoded = self.encoder.encode(snapshot);
        let keyframe = encoded.keyframe;
        let bytes = self.write_chunk(ChunkKind::Snapshot, &serde_json::to_vec(&encoded)?)?;
        self.snapshots += 1;
        Ok(Written { bytes, keyframe })
    }

    /// Appends the events since the previous snapshot (nothing when there are none).
    pub fn write_events(&mut self, events: &[Event]) -> std::io::Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        self.write_chunk(ChunkKind::Events, &serde_json::to_vec(events)?)
    }

    /// Writes the end chunk and flushes; the recording is complete.
    pub fn finish(mut self, end: &End) -> std::io::Result<W> {
        self.write_chunk(ChunkKind::End, &serde_json::to_vec(end)?)?;
        Ok(self.out)
    }

    /// The output without an end chunk: what a killed recorder leaves.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    fn write_chunk(&mut self, kind: ChunkKind, raw: &[u8]) -> std::io::Result<u64> {
        let c = chunk::encode(kind, raw)?;
        // One write per chunk: a reader (or a kill) sees whole chunks or a torn last one.
        self.out.write_all(&c)?;
        self.out.flush()?;
        self.bytes += c.len() as u64;
        Ok(c.len() as u64)
    }
}
