//! What parkscope keeps on disk between runs about files it read (a Go binary's layout, the names
//! of a library's addresses): where it lives, how a file on disk is identified so that no other
//! file can claim its entry, and how an entry is written so a reader never sees half of it.
//! Everything here is best effort: an unreadable or unwritable cache only means working the
//! facts out again.

use std::io;
use std::path::{Path, PathBuf};

/// The directory of one kind of cached facts: `$PARKSCOPE_CACHE/<kind>`, else
/// `$XDG_CACHE_HOME/parkscope/<kind>`, else `~/.cache/parkscope/<kind>`. None without any of them.
pub(crate) fn dir(kind: &str) -> Option<PathBuf> {
    let base = std::env::var_os("PARKSCOPE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("parkscope")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/parkscope")))?;
    Some(base.join(kind))
}

/// Which file on disk something was read from: device, inode, size and inode change time. A
/// build id alone cannot key a cache entry, because the target writes its own binaries and
/// libraries: a hostile one could copy a real file's build id and leave facts of its choosing for
/// the next run against the real file. An inode's change time cannot be set back by the file's
/// owner, so another file cannot take this identity (short of the real file being replaced, which
/// changes the facts anyway).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileIdentity(String);

impl FileIdentity {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity(format!(
            "{:x}-{:x}-{:x}-{}.{:09}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.ctime(),
            meta.ctime_nsec()
        ))
    }

    /// The identity as it goes into a cache file's name (hex digits, `-` and `.`).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Writes `path` whole or not at all: into a file of this process's own next to it, then renamed
/// over it, so a concurrent reader (another parkscope) sees the old entry or the new one.
pub(crate) fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("cache path without a directory"))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads a cache file of at most `max_bytes` (a file grown beyond what parkscope writes is not
/// ours to trust, and not worth the memory): None when absent, unreadable, too big or not text.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(max_bytes + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= max_bytes).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own under the system's temporary directory.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("parkscope-disk-cache-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn identity_changes_with_the_file_and_not_with_its_path() {
        let dir = scratch("identity");
        let a = dir.join("a");
        std::fs::write(&a, b"one").unwrap();
        let first = FileIdentity::of(&std::fs::metadata(&a).unwrap());
        let b = dir.join("b");
        std::fs::hard_link(&a, &b).unwrap();
        // A hard link changes the inode's change time: the identity is of the inode's state.
        let linked = FileIdentity::of(&std::fs::metadata(&a).unwrap());
        assert_eq!(linked, FileIdentity::of(&std::fs::metadata(&b).unwrap()));
        std::fs::write(&a, b"other").unwrap();
        assert_ne!(first, FileIdentity::of(&std::fs::metadata(&a).unwrap()));
        assert!(first.as_str().chars().all(|c| c.is_ascii_hexdigit() || c == '-' || c == '.'), "{first:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_whole_files_and_reads_only_small_ones() {
        let dir = scratch("write");
        let path = dir.join("sub/entry.txt");
        write_atomically(&path, "hello\n").unwrap();
        assert_eq!(read_bounded(&path, 6).as_deref(), Some("hello\n"));
        assert_eq!(read_bounded(&path, 5), None, "over the bound");
        assert_eq!(read_bounded(&dir.join("missing"), 100), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
