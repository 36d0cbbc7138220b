//! parkscope's recording format (docs/recording.md): a file header, then append-only,
//! self-delimiting chunks (length, kind, codec, CRC-32, zstd payload), each decodable on its
//! own, so a recorder killed mid-write leaves everything up to its last complete chunk readable.
//! Snapshots are delta-encoded against the previous one ([`delta`]); the [`Reader`] is bounded
//! (chunk and decompressed sizes, entry counts) and turns any truncation or corruption into a
//! [`ReadError`] naming the byte offset and what was expected.
//!
//! Depends on the model only, so the viewer can replay a recording without the probes.

pub mod chunk;
pub mod delta;
pub mod fuzz;
pub mod header;
pub mod index;
pub mod reader;
pub mod writer;

pub use chunk::{ChunkKind, Limits, ReadError};
pub use header::{End, FORMAT_VERSION, Header};
pub use index::{IndexEntry, Indexer};
pub use reader::{Item, Reader};
pub use writer::Writer;
