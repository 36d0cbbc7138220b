//! Names of addresses in libraries whose symbols and lines come from a separate debug file
//! (libc6-dbg's `/usr/lib/debug/.build-id/...`), kept on disk between runs. blazesym reads such
//! a file's DWARF whole, inflating its compressed sections, to name even one address: about a
//! third of a fresh `snapshot`'s CPU on a machine with libc's debug file installed, paid again
//! by every snapshot although the few addresses a target blocks in (libc's futex wait, `read`,
//! `epoll_wait`) are the same each time. A name found once is saved and read back instead.
//!
//! An entry is keyed by the library's build id and the identities ([`FileIdentity`]) of the
//! library and of its debug file, so an entry cannot outlive either file or be claimed by
//! another (a target can write a library with any build id; it cannot give it libc's inode and
//! change time). Only files with a debug file under a build-id path are saved: the others are
//! named from their own symbol tables, which is cheap, and a debug file found by another route
//! (`.gnu_debuglink` name lookup) could appear later without changing the key.
//!
//! One text file per entry under the `names-v1` cache directory: a header line, then one line
//! per looked-up file offset, `OFFSET\t-` (nothing named there) or
//! `OFFSET\tFUNCTION_OFFSET\tFUNCTION\tFILE:LINE` (hex offsets; the last field may be empty).
//! Bounded: at most [`MAX_NAMES`] per entry and [`MAX_ENTRY_BYTES`] per file; a file that does
//! not parse is ignored and replaced; the directory keeps at most [`MAX_ENTRY_FILES`] entries.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Named, ObjectKey};
use crate::disk_cache::{self, FileIdentity};

/// The cache directory's name; a new format takes a new name, so old files are never misread.
const DIR_KIND: &str = "names-v1";
const HEADER: &str = "# parkscope names v1";
/// Names saved per entry at most: far more than the addresses a program blocks or runs in.
const MAX_NAMES: usize = 1 << 16;
/// An entry file bigger than this was not written by this code (names are < 4 kB each).
const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// Entry files kept at most; beyond, the least recently written are removed.
const MAX_ENTRY_FILES: usize = 256;
/// Mapped files whose entry (or lack of one) is remembered at most; beyond, they start over.
const MAX_OBJECTS: usize = 4096;
/// Where debug files are looked for by build id, as blazesym looks (its default directories).
const DEBUG_DIRS: &[&str] = &["/usr/lib/debug", "/lib/debug"];

/// The saved names of this run: which entry each mapped file has, and the entries read so far.
pub(super) struct SavedNames {
    /// The cache directory; None: nothing is saved.
    dir: Option<PathBuf>,
    /// Where debug files are looked for by build id.
    debug_dirs: Vec<PathBuf>,
    /// Per mapped file: the path of its entry, or None when its names are not saved.
    objects: HashMap<ObjectKey, Option<PathBuf>>,
    entries: HashMap<PathBuf, Entry>,
}

#[derive(Default)]
struct Entry {
    /// By file offset of the looked-up address; `None`: nothing is named there.
    names: HashMap<u64, Option<Named>>,
    /// Names added since the entry was read or written.
    dirty: bool,
}

impl SavedNames {
    /// Saves under the user's cache directory (see [`disk_cache::dir`]).
    pub fn new() -> Self {
        Self::in_dirs(disk_cache::dir(DIR_KIND), DEBUG_DIRS.iter().map(PathBuf::from).collect())
    }

    pub fn in_dirs(dir: Option<PathBuf>, debug_dirs: Vec<PathBuf>) -> Self {
        Self { dir, debug_dirs, objects: HashMap::new(), entries: HashMap::new() }
    }

    /// The entry the mapped file `key` (opened at `path`) saves its names in, when it has one.
    pub fn entry_for(&mut self, key: &ObjectKey, path: &Path) -> Option<PathBuf> {
        if let Some(known) = self.objects.get(key) {
            return known.clone();
        }
        if self.objects.len() >= MAX_OBJECTS {
            self.flush();
            self.objects.clear();
            self.entries.clear();
        }
        let entry = self.dir.as_deref().and_then(|dir| entry_path(dir, &self.debug_dirs, path));
        if let Some(entry) = &entry
            && !self.entries.contains_key(entry)
        {
            let names =
                disk_cache::read_bounded(entry, MAX_ENTRY_BYTES).and_then(|t| parse(&t)).unwrap_or_default();
            self.entries.insert(entry.clone(), Entry { names, dirty: false });
        }
        self.objects.insert(key.clone(), entry.clone());
        entry
    }

    /// What `entry` says about file offset `offset`: None when it was never looked up.
    pub fn get(&self, entry: &Path, offset: u64) -> Option<&Option<Named>> {
        self.entries.get(entry)?.names.get(&offset)
    }

    /// Saves what blazesym said about `offset` (written by [`SavedNames::flush`]). A name that
    /// would not survive the line format, or one beyond the entry's bound, is not saved.
    pub fn insert(&mut self, entry: &Path, offset: u64, named: &Option<Named>) {
        let Some(e) = self.entries.get_mut(entry) else { return };
        let fits = named.as_ref().is_none_or(|n| {
            let clean = |s: &str| !s.is_empty() && !s.contains(['\t', '\n', '\r']);
            clean(&n.function) && n.file_line.as_deref().is_none_or(clean)
        });
        if fits && e.names.len() < MAX_NAMES && !e.names.contains_key(&offset) {
            // The module is the mapping's to say (frames take it from the map), not the entry's.
            let saved = named.as_ref().map(|n| Named { module: None, ..n.clone() });
            e.names.insert(offset, saved);
            e.dirty = true;
        }
    }

    /// Writes the entries that gained names. Best effort: a failure only costs the next run.
    pub fn flush(&mut self) {
        let mut created = false;
        for (path, entry) in self.entries.iter_mut().filter(|(_, e)| e.dirty) {
            entry.dirty = false;
            created |= !path.exists();
            if let Err(e) = disk_cache::write_atomically(path, &render(&entry.names)) {
                tracing::debug!("not saving names in {}: {e}", path.display());
            }
        }
        if created && let Some(dir) = &self.dir {
            prune(dir, MAX_ENTRY_FILES);
        }
    }
}

impl Drop for SavedNames {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The entry (in `dir`) of the ELF file at `path`, if its names come from a debug file found by
/// build id in one of `debug_dirs`.
fn entry_path(dir: &Path, debug_dirs: &[PathBuf], path: &Path) -> Option<PathBuf> {
    // Identity and build id from one open file, so they describe the same file.
    let file = std::fs::File::open(path).ok()?;
    let identity = FileIdentity::of(&file.metadata().ok()?);
    let build_id = crate::stacks::modules::gnu_build_id(file)?;
    // blazesym ignores build ids this short; a build id is hex by construction.
    if build_id.len() < 16 || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (first, rest) = build_id.split_at(2);
    let debug = debug_dirs.iter().find_map(|debug_dir| {
        let meta = std::fs::metadata(debug_dir.join(format!(".build-id/{first}/{rest}.debug"))).ok()?;
        meta.is_file().then(|| FileIdentity::of(&meta))
    })?;
    Some(dir.join(format!("{build_id}-{}-{}.txt", identity.as_str(), debug.as_str())))
}

fn render(names: &HashMap<u64, Option<Named>>) -> String {
    let mut sorted: Vec<_> = names.iter().collect();
    sorted.sort_unstable_by_key(|(offset, _)| **offset);
    let mut text = format!("{HEADER}\n");
    for (offset, named) in sorted {
        let _ = match named {
            None => writeln!(text, "{offset:x}\t-"),
            Some(n) => writeln!(
                text,
                "{offset:x}\t{:x}\t{}\t{}",
                n.offset,
                n.function,
                n.file_line.as_deref().unwrap_or_default()
            ),
        };
    }
    text
}

/// Reads an entry; None when any line is not one this code writes (the entry is then redone).
fn parse(text: &str) -> Option<HashMap<u64, Option<Named>>> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut names = HashMap::new();
    for line in lines {
        if names.len() >= MAX_NAMES {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        let (offset, named) = match fields.as_slice() {
            [offset, "-"] => (hex(offset)?, None),
            [offset, fn_offset, function, file_line] if !function.is_empty() => (
                hex(offset)?,
                Some(Named {
                    function: (*function).to_owned(),
                    offset: hex(fn_offset)?,
                    file_line: (!file_line.is_empty()).then(|| (*file_line).to_owned()),
                    module: None,
                }),
            ),
            _ => return None,
        };
        names.insert(offset, named);
    }
    Some(names)
}

/// Removes the least recently written entry files of `dir` beyond `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(listing) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = listing
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort_unstable();
    for (_, path) in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(function: &str, offset: u64, file_line: Option<&str>) -> Option<Named> {
        Some(Named {
            function: function.to_owned(),
            offset,
            file_line: file_line.map(str::to_owned),
            module: None,
        })
    }

    #[test]
    fn entries_read_back_what_was_written() {
        let mut names = HashMap::new();
        names.insert(0x9a1f0, named("__futex_abstimed_wait_common", 0x2c, Some("futex-internal.c:57")));
        names.insert(0x11d2b0, named("<alloc::string::String as core::fmt::Write>::write_str", 0, None));
        names.insert(0x4, None);
        assert_eq!(parse(&render(&names)), Some(names));
    }

    #[test]
    fn anything_else_is_not_an_entry() {
        for text in [
            "",
            "# another header\n10\t-\n",
            "# parkscope names v1\n10\n",
            "# parkscope names v1\nzz\t-\n",
            "# parkscope names v1\n10\t4\t\tx.c:1\n",
            "# parkscope names v1\n10\tq\tf\t\n",
            "# parkscope names v1\n10\t4\tf\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        let too_many: String = std::iter::once(format!("{HEADER}\n"))
            .chain((0..=MAX_NAMES).map(|i| format!("{i:x}\t-\n")))
            .collect();
        assert_eq!(parse(&too_many), None);
    }

    #[test]
    fn names_that_would_break_a_line_are_not_saved() {
        let entry = PathBuf::from("/nonexistent/entry.txt");
        let mut saved = SavedNames::in_dirs(None, Vec::new());
        saved.entries.insert(entry.clone(), Entry::default());
        saved.insert(&entry, 1, &named("f\tg", 0, None));
        saved.insert(&entry, 2, &named("f", 0, Some("a\nb:1")));
        saved.insert(&entry, 3, &named("f", 0, Some("a.c:1")));
        assert_eq!(saved.get(&entry, 1), None);
        assert_eq!(saved.get(&entry, 2), None);
        assert_eq!(saved.get(&entry, 3), Some(&named("f", 0, Some("a.c:1"))));
        saved.entries.clear(); // nothing to write
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("parkscope-saved-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5 {
            let path = dir.join(format!("{i}.txt"));
            std::fs::write(&path, "x").unwrap();
            let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        }
        std::fs::write(dir.join("other.layout"), "x").unwrap();
        prune(&dir, 2);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["3.txt", "4.txt", "other.layout"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
