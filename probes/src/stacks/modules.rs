//! The objects a process has mapped for execution, as a profile names them: address range, file
//! offset, path and build id, so a profile can be symbolised (or re-symbolised) against the exact
//! binaries that ran. Also the running kernel's build id.

use std::{fs::File, path::Path};

use object::{Object, ObjectSection, ReadCache};

use super::{StackError, maps};

/// One executable mapping of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMapping {
    pub start: u64,
    /// One past the last address.
    pub limit: u64,
    /// Offset into the file of `start`.
    pub file_offset: u64,
    /// The path as the kernel printed it (`/usr/lib/...`, or `[vdso]`).
    pub path: String,
    /// Hex GNU build id, or the Go build id string, when the object has one.
    pub build_id: Option<String>,
}

impl ModuleMapping {
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.limit).contains(&addr)
    }

    /// A real file (as opposed to `[vdso]` and other pseudo mappings).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }
}

/// The executable mappings of `pid`, sorted by address, with build ids read from each file's
/// notes (each file opened once, only its headers and note sections read).
pub fn executable_mappings(pid: u32) -> Result<Vec<ModuleMapping>, StackError> {
    let maps = maps::read_maps(pid)?;
    let mut ids: Vec<(String, Option<String>)> = Vec::new();
    let mut out = Vec::new();
    for m in maps.iter().filter(|m| m.executable && !m.path.is_empty()) {
        let build_id = if m.is_file() {
            match ids.iter().find(|(p, _)| *p == m.path) {
                Some((_, id)) => id.clone(),
                None => {
                    // Through the target's own view of the file: its path may not exist (or be
                    // another file) in our mount namespace.
                    let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", m.range.start, m.range.end);
                    let rooted = format!("/proc/{pid}/root{}", m.path);
                    let id = [mapped.as_str(), rooted.as_str()]
                        .iter()
                        .find(|p| Path::new(p).exists())
                        .and_then(|p| elf_build_id(Path::new(p)));
                    ids.push((m.path.clone(), id.clone()));
                    id
                }
            }
        } else {
            None
        };
        out.push(ModuleMapping {
            start: m.range.start,
            limit: m.range.end,
            file_offset: m.offset,
            path: m.path.clone(),
            build_id,
        });
    }
    Ok(out)
}

/// The GNU build id of an ELF file as hex, else its Go build id (`.note.go.buildid`), else None.
pub fn elf_build_id(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let cache = ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    if let Ok(Some(id)) = obj.build_id() {
        return Some(hex(id));
    }
    let note = obj.section_by_name(".note.go.buildid")?.data().ok()?;
    go_build_id(note)
}

/// The GNU build id of the ELF file open as `file`, as hex (reads its headers and notes only).
pub(crate) fn gnu_build_id(file: File) -> Option<String> {
    let cache = ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    obj.build_id().ok().flatten().map(hex)
}

/// The running kernel's GNU build id, from /sys/kernel/notes (the kernel's own note section).
pub fn kernel_build_id() -> Option<String> {
    let notes = std::fs::read("/sys/kernel/notes").ok()?;
    find_note(&notes, b"GNU\0", 3).map(hex)
}

/// Parses the Go note (name "Go", type 4 = ELF_NOTE_GOBUILDID_TAG) into its string.
fn go_build_id(notes: &[u8]) -> Option<String> {
    let desc = find_note(notes, b"Go\0\0", 4)?;
    let id = std::str::from_utf8(desc).ok()?.trim_end_matches('\0');
    (!id.is_empty()).then(|| id.to_owned())
}

/// Walks ELF notes (namesz, descsz, type, name, desc; 4-byte aligned) for one with `name` and
/// `kind`, returning its descriptor.
fn find_note<'a>(mut data: &'a [u8], name: &[u8], kind: u32) -> Option<&'a [u8]> {
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let align = |n: usize| n.div_ceil(4) * 4;
    while data.len() >= 12 {
        let namesz = word(data, 0)? as usize;
        let descsz = word(data, 4)? as usize;
        let ty = word(data, 8)?;
        let name_at = 12;
        let desc_at = name_at + align(namesz);
        let end = desc_at + align(descsz);
        let note_name = data.get(name_at..name_at + namesz)?;
        let desc = data.get(desc_at..desc_at + descsz)?;
        // Names are NUL-terminated; compare without padding.
        let trimmed = |n: &[u8]| n.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        if ty == kind && note_name[..trimmed(note_name)] == name[..trimmed(name)] {
            return Some(desc);
        }
        data = data.get(end.min(data.len())..)?;
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_ne_bytes());
        v.extend((desc.len() as u32).to_ne_bytes());
        v.extend(kind.to_ne_bytes());
        v.extend(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    #[test]
    fn finds_notes_by_name_and_type() {
        let mut notes = note(b"Xen\0", 3, b"nope");
        notes.extend(note(b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        assert_eq!(find_note(&notes, b"GNU\0", 3).map(hex).as_deref(), Some("deadbeef01"));
        assert_eq!(find_note(&notes, b"GNU\0", 1), None);
        let go = note(b"Go\0\0", 4, b"abc/def\0");
        assert_eq!(go_build_id(&go).as_deref(), Some("abc/def"));
    }

    #[test]
    fn own_mappings_have_our_build_id() {
        let mods = executable_mappings(std::process::id()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let ours = mods.iter().find(|m| Path::new(&m.path) == exe).expect("own executable mapped");
        assert!(ours.start < ours.limit);
        // Rust test binaries are linked with a GNU build id by default on Linux.
        assert_eq!(ours.build_id, elf_build_id(&exe));
        assert!(ours.build_id.is_some(), "{ours:?}");
    }

    #[test]
    fn kernel_has_a_build_id() {
        let id = kernel_build_id().expect("/sys/kernel/notes has a GNU build id");
        assert!(id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
