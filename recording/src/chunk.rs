//! The framing: the 16-byte file header and the self-delimiting chunks after it. Every length a
//! file states is checked against [`Limits`] before anything is allocated for it, and every
//! failure names the byte offset where it was found.

use std::fmt;
use std::io::Read;

/// The first 8 bytes of every recording (PNG-style: a high byte, the name, CR LF, so a text-mode
/// transfer or a truncation to 7 bits is noticed at once).
pub const MAGIC: [u8; 8] = *b"\x89PSREC\r\n";
/// Magic, then the format version (u32 LE), then 4 reserved bytes (0).
pub const FILE_HEADER_LEN: usize = 16;
/// payload length u32, kind u8, codec u8, reserved u16, decompressed length u32, CRC-32 u32.
pub const CHUNK_HEADER_LEN: usize = 16;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// The recording's [`crate::Header`] (always the first chunk).
    Header = 1,
    /// One snapshot, full (keyframe) or as a delta against the previous one.
    Snapshot = 2,
    /// Events ([`parkscope_model::Event`]) that happened between two snapshots.
    Events = 3,
    /// The recorder closed the file ([`crate::End`]): nothing follows.
    End = 4,
}

impl ChunkKind {
    fn from_u8(b: u8) -> Option<ChunkKind> {
        Some(match b {
            1 => ChunkKind::Header,
            2 => ChunkKind::Snapshot,
            3 => ChunkKind::Events,
            4 => ChunkKind::End,
            _ => return None,
        })
    }
}

/// How a payload is stored.
pub const CODEC_STORED: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// Bounds on what a reader accepts. The defaults fit a 1,000,000-goroutine keyframe.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload of one chunk as stored.
    pub max_chunk_bytes: u32,
    /// Largest payload of one chunk decompressed.
    pub max_raw_bytes: u32,
    /// Most threads, goroutines and stacks a decoded snapshot (and the decoder's state) may hold.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_chunk_bytes: 256 << 20, max_raw_bytes: 1 << 30, max_entries: 4 << 20 }
    }
}

/// A recording that cannot be read (further): where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// Byte offset in the file of the chunk (or header) that failed.
    pub offset: u64,
    /// What was expected and what was found.
    pub what: String,
}

impl ReadError {
    pub fn new(offset: u64, what: impl Into<String>) -> ReadError {
        ReadError { offset, what: what.into() }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for ReadError {}

/// Encodes one chunk: header and zstd-compressed payload, ready for a single write.
pub fn encode(kind: ChunkKind, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let payload = zstd::bulk::compress(raw, 3)?;
    let too_big = || std::io::Error::other("chunk payload over 4 GiB");
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let raw_len = u32::try_from(raw.len()).map_err(|_| too_big())?;
    Ok(frame(kind, CODEC_ZSTD, payload_len, raw_len, &payload))
}

/// Lays out a chunk (also used by tests and the fuzz harness to build stored chunks).
pub fn frame(kind: ChunkKind, codec: u8, payload_len: u32, raw_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + payload.len());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.push(kind as u8);
    out.push(codec);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&raw_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The file header's bytes for format `version`.
pub fn file_header(version: u32) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h
}

/// Reads exactly `buf.len()` bytes, or as many as there were before the end of the input.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads and checks the file header; returns the format version.
pub fn read_file_header(src: &mut impl Read) -> Result<u32, ReadError> {
    let mut h = [0u8; FILE_HEADER_LEN];
    let got =
        read_full(src, &mut h).map_err(|e| ReadError::new(0, format!("reading the file header: {e}")))?;
    if got < MAGIC.len() || h[..8] != MAGIC {
        return Err(ReadError::new(
            0,
            "expected a parkscope recording (magic \\x89PSREC\\r\\n), found other bytes",
        ));
    }
    if got < FILE_HEADER_LEN {
        return Err(ReadError::new(
            got as u64,
            format!("expected a {FILE_HEADER_LEN}-byte file header, found end of file"),
        ));
    }
    Ok(u32::from_le_bytes([h[8], h[9], h[10], h[11]]))
}

/// One chunk as read: its kind and decompressed payload.
#[derive(Debug)]
pub struct Chunk {
    pub offset: u64,
    pub kind: ChunkKind,
    pub raw: Vec<u8>,
}

/// Reads the chunk at `offset`: `Ok(None)` at a clean end of input (no byte of a new chunk).
pub fn read_chunk(
    src: &mut impl Read,
    offset: u64,
    limits: &Limits,
) -> Result<Option<(Chunk, u64)>, ReadError> {
    let io = |e: std::io::Error| ReadError::new(offset, format!("reading a chunk: {e}"));
    let mut h = [0u8; CHUNK_HEADER_LEN];
    let got = read_full(src, &mut h).map_err(io)?;
    if got == 0 {
        return Ok(None);
    }
    if got < CHUNK_HEADER_LEN {
        return Err(ReadError::new(
            offset,
            format!(
                "expected a {CHUNK_HEADER_LEN}-byte chunk header, found {got} bytes before the end (truncated)"
            ),
        ));
    }
    let payload_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let (kind_byte, codec) = (h[4], h[5]);
    let raw_len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if payload_len > limits.max_chunk_bytes || raw_len > limits.max_raw_bytes {
        return Err(ReadError::new(
            offset,
            format!(
                "expected a chunk of at most {} bytes ({} decompressed), found one of {payload_len} ({raw_len}): corrupt",
                limits.max_chunk_bytes, limits.max_raw_bytes
            ),
        ));
    }
    // Grown as bytes arrive: a truncated file claiming a large chunk allocates what it has.
    let mut payload = Vec::new();
    src.by_ref().take(u64::from(payload_len)).read_to_end(&mut payload).map_err(io)?;
    if payload.len() < payload_len as usize {
        return Err(ReadError::new(
            offset,
            format!(
                "expected a {payload_len}-byte chunk payload, found {} bytes before the end (truncated)",
                payload.len()
            ),
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..12]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Err(ReadError::new(
            offset,
            "expected a chunk whose CRC-32 matches, found a mismatch (corrupt)",
        ));
    }
    let kind = ChunkKind::from_u8(kind_byte)
        .ok_or_else(|| ReadError::new(offset, format!("expected a chunk kind 1-4, found {kind_byte}")))?;
    let raw = match codec {
        CODEC_STORED => payload,
        CODEC_ZSTD => {
            let mut raw = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(payload.as_slice())
                .map_err(|e| ReadError::new(offset, format!("expected a zstd payload: {e}")))?;
            decoder
                .take(u64::from(raw_len) + 1)
                .read_to_end(&mut raw)
                .map_err(|e| ReadError::new(offset, format!("expected a zstd payload: {e}")))?;
            raw
        }
        other => return Err(ReadError::new(offset, format!("expected codec 0 or 1, found {other}"))),
    };
    if raw.len() != raw_len as usize {
        return Err(ReadError::new(
            offset,
            format!("expected {raw_len} bytes decompressed, found {} (corrupt)", raw.len()),
        ));
    }
    let next = offset + (CHUNK_HEADER_LEN as u64) + u64::from(payload_len);
    Ok(Some((Chunk { offset, kind, raw }, next)))
}
