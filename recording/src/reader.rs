//! Reads a recording back, chunk by chunk, into the snapshots and events it was written from.
//! Streaming: only the decoder's state (the previous snapshot, as encoded) is held.

use std::io::{Read, Seek, SeekFrom};

use parkscope_model::{Event, SCHEMA_VERSION, Snapshot};

use crate::chunk::{self, ChunkKind, FILE_HEADER_LEN, Limits, ReadError};
use crate::delta::{Decoder, EncodedSnapshot};
use crate::header::{End, FORMAT_VERSION, Header};
use crate::index::Indexer;

/// One thing read from a recording, with the byte offset of its chunk.
#[derive(Debug)]
pub enum Item {
    Snapshot(Box<Snapshot>, u64),
    Events(Vec<Event>, u64),
    /// The clean end: nothing follows.
    End(End, u64),
}

/// A recording open for reading.
pub struct Reader<R: Read> {
    src: R,
    offset: u64,
    limits: Limits,
    header: Header,
    decoder: Decoder,
    ended: bool,
}

impl<R: Read> Reader<R> {
    /// Reads the file header and the header chunk.
    pub fn new(src: R) -> Result<Reader<R>, ReadError> {
        Reader::with_limits(src, Limits::default())
    }

    pub fn with_limits(mut src: R, limits: Limits) -> Result<Reader<R>, ReadError> {
        let version = chunk::read_file_header(&mut src)?;
        if version != FORMAT_VERSION {
            return Err(ReadError::new(
                8,
                format!(
                    "expected recording format {FORMAT_VERSION}, found {version} (written by another parkscope release)"
                ),
            ));
        }
        let offset = FILE_HEADER_LEN as u64;
        let (c, next) = chunk::read_chunk(&mut src, offset, &limits)?
            .ok_or_else(|| ReadError::new(offset, "expected the header chunk, found end of file"))?;
        if c.kind != ChunkKind::Header {
            return Err(ReadError::new(
                offset,
                format!("expected the header chunk, found a {:?} chunk", c.kind),
            ));
        }
        let header: Header = parse(&c.raw, offset, "header")?;
        if header.schema_version > SCHEMA_VERSION {
            return Err(ReadError::new(
                offset,
                format!(
                    "expected model schema <= {SCHEMA_VERSION}, found {} (recorded by a newer parkscope)",
                    header.schema_version
                ),
            ));
        }
        Ok(Reader {
            src,
            offset: next,
            limits,
            header,
            decoder: Decoder::new(limits.max_entries),
            ended: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether the end chunk was read (the recorder closed the file cleanly).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Byte offset of the next chunk.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// An [`Indexer`] of the chunks from where this reader stands (right after
    /// [`Reader::new`]: every snapshot of the recording).
    pub fn into_indexer(self) -> Indexer<R> {
        Indexer::new(self.src, self.offset, self.limits)
    }

    /// The next item; `Ok(None)` at the end of the input (check [`Reader::ended`] for whether
    /// it was a clean close or the recorder was killed after its last complete chunk).
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        if self.ended {
            return Ok(None);
        }
        let offset = self.offset;
        let Some((c, next)) = chunk::read_chunk(&mut self.src, offset, &self.limits)? else {
            return Ok(None);
        };
        let item = match c.kind {
            ChunkKind::Header => {
                return Err(ReadError::new(
                    offset,
                    "expected a snapshot, events or end chunk, found a second header",
                ));
            }
            ChunkKind::Snapshot => {
                let encoded: EncodedSnapshot = parse(&c.raw, offset, "snapshot")?;
                let s = self.decoder.decode(encoded).map_err(|e| ReadError::new(offset, e))?;
                Item::Snapshot(Box::new(s), offset)
            }
            ChunkKind::Events => {
                let events: Vec<Event> = parse(&c.raw, offset, "events")?;
                if events.len() > self.limits.max_entries {
                    return Err(ReadError::new(
                        offset,
                        format!(
                            "expected at most {} events, found {}",
                            self.limits.max_entries,
                            events.len()
                        ),
                    ));
                }
                Item::Events(events, offset)
            }
            ChunkKind::End => {
                self.ended = true;
                Item::End(parse(&c.raw, offset, "end")?, offset)
            }
        };
        self.offset = next;
        Ok(Some(item))
    }
}

impl<R: Read + Seek> Reader<R> {
    /// Moves to the snapshot chunk at `offset`, which must be a keyframe (an
    /// [`crate::IndexEntry`] says which are), with the decoder's state dropped: the next item is
    /// that snapshot. A delta there is a [`ReadError`] from [`Reader::next_item`], not a wrong
    /// snapshot.
    pub fn seek_to_keyframe(&mut self, offset: u64) -> Result<(), ReadError> {
        self.src
            .seek(SeekFrom::Start(offset))
            .map_err(|e| ReadError::new(offset, format!("seeking to a snapshot: {e}")))?;
        self.offset = offset;
        self.decoder = Decoder::new(self.limits.max_entries);
        self.ended = false;
        Ok(())
    }
}

impl<R: Read> Reader<R> {
    /// Takes every chunk before byte `offset` (a chunk boundary at or after
    /// [`Reader::offset`]) into the decoder's state without building their snapshots
    /// ([`Decoder::skip`]), so the next item is the chunk at `offset`: a seek from a keyframe
    /// to a snapshot after it costs the deltas in between, not as many whole snapshots.
    pub fn skip_to(&mut self, offset: u64) -> Result<(), ReadError> {
        while self.offset < offset {
            let at = self.offset;
            if self.ended {
                return Err(ReadError::new(
                    at,
                    format!("expected chunks up to byte {offset}, found the end chunk"),
                ));
            }
            let Some((c, next)) = chunk::read_chunk(&mut self.src, at, &self.limits)? else {
                return Err(ReadError::new(
                    at,
                    format!("expected chunks up to byte {offset}, found the end of the file"),
                ));
            };
            match c.kind {
                ChunkKind::Header => {
                    return Err(ReadError::new(
                        at,
                        "expected a snapshot, events or end chunk, found a second header",
                    ));
                }
                ChunkKind::Snapshot => {
                    let encoded: EncodedSnapshot = parse(&c.raw, at, "snapshot")?;
                    self.decoder.skip(encoded).map_err(|e| ReadError::new(at, e))?;
                }
                // Events change no decoder state.
                ChunkKind::Events => {}
                ChunkKind::End => self.ended = true,
            }
            self.offset = next;
        }
        if self.offset != offset {
            return Err(ReadError::new(offset, "expected a chunk to start here, found the middle of one"));
        }
        Ok(())
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(raw: &'a [u8], offset: u64, what: &str) -> Result<T, ReadError> {
    serde_json::from_slice(raw).map_err(|e| ReadError::new(offset, format!("expected a {what} record: {e}")))
}
