//! An index of a recording's snapshots (byte offset, time, keyframe or not), built by reading
//! the chunks without decoding the snapshots, so a replay can seek in a recording of any
//! length while holding one snapshot: it moves a [`Reader`] to the last keyframe at or before
//! the snapshot it wants ([`Reader::seek_to_keyframe`]) and decodes forward from there.
//!
//! [`Reader`]: crate::Reader
//! [`Reader::seek_to_keyframe`]: crate::Reader::seek_to_keyframe

use std::io::Read;

use parkscope_model::Timestamp;
use serde::Deserialize;

use crate::chunk::{self, ChunkKind, Limits, ReadError};
use crate::header::End;

/// Where one snapshot is, and what a seek needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte offset of its chunk.
    pub offset: u64,
    pub taken_at: Timestamp,
    /// A full snapshot: decoding can start here.
    pub keyframe: bool,
}

/// The two fields of a snapshot chunk the index keeps (serde skips the rest without building it).
#[derive(Deserialize)]
struct Head {
    keyframe: bool,
    taken_at: Timestamp,
}

/// Reads a recording's chunks after its header chunk, yielding an [`IndexEntry`] per snapshot.
/// Holds one chunk's payload at a time; catches what the framing catches (truncation, CRC,
/// sizes, a snapshot record without its keyframe flag or time). Damage inside a delta (an
/// unknown key or stack) is found only when the snapshot is decoded.
pub struct Indexer<R: Read> {
    src: R,
    offset: u64,
    limits: Limits,
    ended: bool,
    snapshots: usize,
}

impl<R: Read> Indexer<R> {
    /// `src` positioned at byte `offset`, the first chunk after the header chunk (what
    /// [`crate::Reader::offset`] says right after [`crate::Reader::new`]; see
    /// [`crate::Reader::into_indexer`]). At most `limits.max_entries` snapshots are indexed.
    pub fn new(src: R, offset: u64, limits: Limits) -> Indexer<R> {
        Indexer { src, offset, limits, ended: false, snapshots: 0 }
    }

    /// Whether the end chunk was read (the recorder closed the file cleanly).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Byte offset of the next chunk.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next snapshot's entry; `Ok(None)` at the end of the input (clean or not: see
    /// [`Indexer::ended`]).
    pub fn next_entry(&mut self) -> Result<Option<IndexEntry>, ReadError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let offset = self.offset;
            let Some((c, next)) = chunk::read_chunk(&mut self.src, offset, &self.limits)? else {
                return Ok(None);
            };
            match c.kind {
                ChunkKind::Header => {
                    return Err(ReadError::new(
                        offset,
                        "expected a snapshot, events or end chunk, found a second header",
                    ));
                }
                ChunkKind::Events => {}
                ChunkKind::End => {
                    serde_json::from_slice::<End>(&c.raw)
                        .map_err(|e| ReadError::new(offset, format!("expected an end record: {e}")))?;
                    self.ended = true;
                }
                ChunkKind::Snapshot => {
                    if self.snapshots >= self.limits.max_entries {
                        return Err(ReadError::new(
                            offset,
                            format!("expected at most {} snapshots, found more", self.limits.max_entries),
                        ));
                    }
                    let head: Head = serde_json::from_slice(&c.raw)
                        .map_err(|e| ReadError::new(offset, format!("expected a snapshot record: {e}")))?;
                    self.offset = next;
                    self.snapshots += 1;
                    return Ok(Some(IndexEntry { offset, taken_at: head.taken_at, keyframe: head.keyframe }));
                }
            }
            self.offset = next;
        }
    }
}
