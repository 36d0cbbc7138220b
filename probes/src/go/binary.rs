//! One Go executable on disk: its build information, the runtime layout that applies to it, and
//! the addresses of the runtime's global variables: from .symtab when the binary has one (a
//! plain or `-ldflags=-w` build), else located in the runtime's code (`-s -w`; see
//! [`super::locate`]), and cached by Go build id and file identity either way that costs time.

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

use super::buildinfo::{self, BuildInfo};
use super::layout::{self, Layout, LayoutSource, LayoutTable};
use super::locate::{self, Located};
use super::{GoError, dwarf};
use crate::disk_cache::FileIdentity;

/// Runtime globals parkscope reads: from the symbol table, else located in the code.
pub const GLOBALS: &[&str] = &[
    "runtime.allgs",
    "runtime.allglen",
    "runtime.allm",
    "runtime.allp",
    "runtime.sched",
    "runtime.gomaxprocs",
    "runtime.waitReasonStrings",
    "runtime.epfd",
];

/// Runtime functions the opt-in uprobes attach to (see [`super::uprobes`]).
pub const UPROBE_FUNCTIONS: &[&str] = &["runtime.casgstatus", "runtime.gopark"];

/// Where a function's code is, and its first bytes (enough to decode its prologue).
#[derive(Debug, Clone)]
pub struct FunctionCode {
    /// Stated (link-time) address.
    pub addr: u64,
    /// Offset of its first byte in the executable file (what a uprobe is attached by).
    pub file_offset: u64,
    pub head: Vec<u8>,
}

/// What parkscope knows about a Go executable before looking at any process running it.
#[derive(Debug, Clone)]
pub struct GoBinary {
    pub path: String,
    pub buildinfo: BuildInfo,
    pub layout: Layout,
    /// Stated (link-time) address and size of each of [`GLOBALS`] (when located in the code,
    /// `runtime.sched`'s size is 0: unknown and unused).
    pub globals: HashMap<&'static str, (u64, u64)>,
    /// Position-independent executables are loaded at a slide; the others at their stated addresses.
    pub position_independent: bool,
    /// Lowest stated address of a loadable segment (to compute the slide of a PIE).
    pub first_load_vaddr: u64,
    /// The [`UPROBE_FUNCTIONS`] found in the symbol table or the pclntab.
    pub functions: HashMap<&'static str, FunctionCode>,
}

/// What costs time to work out about one binary, cached on disk by its Go build id and the
/// identity of the file it was read from ([`FileIdentity`]): the layout
/// from its DWARF (walking the compressed DWARF of a Go binary is most of a snapshot's CPU, ~40 ms
/// of ~70 ms on a small server) and, for a binary without a symbol table, the located globals
/// and uprobe functions. `snapshot` is run again and again against the same binary. The build id
/// alone would do for honest binaries (it hashes their inputs and contents), but the target
/// controls it; with the file's identity, no other file can claim this one's entry. One text file per build: layout table lines (see [`Layout::to_table`]), then
/// `global NAME ADDR SIZE` and `function NAME ADDR FILE_OFFSET` lines. Best effort: an
/// unreadable or unwritable cache only means working them out again.
struct BuildCache {
    path: std::path::PathBuf,
}

/// What a [`BuildCache`] file holds.
#[derive(Default)]
struct Cached {
    /// The layout from this file's Go DWARF, as stored (completed by the caller).
    layout: Option<LayoutTable>,
    located: Option<Located>,
}

impl BuildCache {
    /// The cache entry of `file`, the executable `identity` names (see [`FileIdentity`]).
    fn for_binary(file: &object::File<'_>, identity: &FileIdentity) -> Option<BuildCache> {
        let note = file.section_by_name(".note.go.buildid")?.data().ok()?;
        // The note's payload is the printable build id ("actionID/contentID..."); keep a
        // filename-safe form of it.
        let id: String = String::from_utf8_lossy(note)
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        if id.len() < 16 {
            return None;
        }
        Some(BuildCache {
            path: crate::disk_cache::dir("go-layouts")?.join(format!("{id}-{}.txt", identity.as_str())),
        })
    }

    fn load(&self) -> Cached {
        // A layout table is a few kB; anything far bigger is not a file this code wrote.
        let Some(text) = crate::disk_cache::read_bounded(&self.path, 1 << 20) else {
            return Cached::default();
        };
        let (mut table, mut located, mut ok) = (String::new(), Located::default(), true);
        for line in text.lines() {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let num = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            match words.as_slice() {
                ["global", name, addr, size] => {
                    match (GLOBALS.iter().find(|g| *g == name), num(addr), num(size)) {
                        (Some(g), Some(a), Some(s)) => drop(located.globals.insert(g, (a, s))),
                        _ => ok = false,
                    }
                }
                ["function", name, addr, off] => {
                    match (UPROBE_FUNCTIONS.iter().find(|f| *f == name), num(addr), num(off)) {
                        (Some(f), Some(a), Some(o)) => drop(located.functions.insert(f, (a, o))),
                        _ => ok = false,
                    }
                }
                _ => {
                    table.push_str(line);
                    table.push('\n');
                }
            }
        }
        let layout = table
            .lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .then(|| LayoutTable::from_table(&table).ok())
            .flatten();
        let complete = ok && GLOBALS.iter().all(|g| located.globals.contains_key(g));
        Cached { layout, located: complete.then_some(located) }
    }

    fn store(&self, cached: &Cached, version: &str) {
        use std::fmt::Write;
        let mut text = cached.layout.as_ref().map(|l| l.to_table(version)).unwrap_or_default();
        if let Some(located) = &cached.located {
            let _ = writeln!(text, "# Located in the code of the runtime (no symbol table).");
            for g in GLOBALS {
                if let Some((addr, size)) = located.globals.get(g) {
                    let _ = writeln!(text, "global {g} {addr:#x} {size:#x}");
                }
            }
            for f in UPROBE_FUNCTIONS {
                if let Some((addr, off)) = located.functions.get(f) {
                    let _ = writeln!(text, "function {f} {addr:#x} {off:#x}");
                }
            }
        }
        let written = crate::disk_cache::write_atomically(&self.path, &text);
        if let Err(e) = written {
            tracing::debug!("not caching Go binary facts in {}: {e}", self.path.display());
        }
    }
}

impl GoBinary {
    /// Reads `path`. `display` names it in errors (e.g. the target's exe path, not /proc/PID/exe).
    pub fn open(path: &Path, display: &str) -> Result<GoBinary, GoError> {
        use std::io::Read;
        let bin_err = |reason: String| GoError::Binary { path: display.to_owned(), reason };
        // The identity and the bytes come from one open file, so they describe the same file.
        let mut handle = std::fs::File::open(path).map_err(|e| bin_err(e.to_string()))?;
        let meta = handle.metadata().map_err(|e| bin_err(e.to_string()))?;
        let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 30));
        handle.read_to_end(&mut data).map_err(|e| bin_err(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| bin_err(e.to_string()))?;
        Self::from_object(&file, &data, display, Some(&FileIdentity::of(&meta)))
    }

    /// Like [`GoBinary::open`] for a file already in memory, without the on-disk cache
    /// (nothing is read or written but `data`: what the fuzz targets exercise).
    pub fn from_bytes(data: &[u8], display: &str) -> Result<GoBinary, GoError> {
        let file = object::File::parse(data)
            .map_err(|e| GoError::Binary { path: display.to_owned(), reason: e.to_string() })?;
        Self::from_object(&file, data, display, None)
    }

    fn from_object(
        file: &object::File<'_>,
        data: &[u8],
        display: &str,
        cache_identity: Option<&FileIdentity>,
    ) -> Result<GoBinary, GoError> {
        let not_go = || GoError::NotGo { pid: 0, path: display.to_owned() };
        let section = file.section_by_name(".go.buildinfo").ok_or_else(not_go)?;
        let bytes = section.data().map_err(|_| not_go())?;
        let buildinfo =
            buildinfo::parse(bytes).map_err(|reason| GoError::Binary { path: display.to_owned(), reason })?;

        let mut globals = HashMap::new();
        let mut functions = HashMap::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            if let Some(g) = GLOBALS.iter().find(|g| **g == name) {
                globals.insert(*g, (sym.address(), sym.size()));
            } else if let Some(f) = UPROBE_FUNCTIONS.iter().find(|f| **f == name)
                && let Some(code) = function_code(file, &sym)
            {
                functions.insert(*f, code);
            }
        }

        let cache = cache_identity.and_then(|identity| BuildCache::for_binary(file, identity));
        let mut cached = cache.as_ref().map(BuildCache::load).unwrap_or_default();
        let mut dirty = false;
        // No symbol table (or one without the runtime's globals): locate them in the code.
        if GLOBALS.iter().any(|g| !globals.contains_key(g)) {
            let located = match cached.located.take() {
                Some(l) => l,
                None => {
                    dirty = true;
                    locate::globals(data).map_err(|e| GoError::Stripped {
                        path: display.to_owned(),
                        version: buildinfo.version.clone(),
                        missing: e.to_string(),
                    })?
                }
            };
            globals = located.globals.clone();
            for (name, (addr, file_offset)) in &located.functions {
                if !functions.contains_key(name)
                    && let Some(code) = code_at(data, *addr, *file_offset)
                {
                    functions.insert(*name, code);
                }
            }
            cached.located = Some(located);
        }

        let dwarf_err =
            |reason: String| GoError::Binary { path: display.to_owned(), reason: format!("DWARF: {reason}") };
        // A cached layout was stored from this very file's Go DWARF (below), so the DWARF is
        // neither checked nor decompressed again: that is what the cache saves.
        let from_cache =
            cached.layout.as_ref().and_then(|t| t.complete(LayoutSource::Dwarf, &buildinfo.version).ok());
        let layout = match from_cache {
            Some(l) => l,
            None if dwarf::has_go_dwarf(file).map_err(dwarf_err)? => {
                let t = dwarf::layout(file).map_err(dwarf_err)?;
                let l = t.complete(LayoutSource::Dwarf, &buildinfo.version)?;
                cached.layout = Some(t);
                dirty = true;
                l
            }
            None => layout::from_tables(&buildinfo.version)?,
        };
        if dirty && let Some(c) = &cache {
            c.store(&cached, &buildinfo.version);
        }
        let first_load_vaddr = file
            .segments()
            .filter_map(|s| {
                use object::ObjectSegment;
                (s.size() > 0).then(|| s.address())
            })
            .min()
            .unwrap_or(0);
        Ok(GoBinary {
            path: display.to_owned(),
            buildinfo,
            layout,
            globals,
            position_independent: file.kind() == object::ObjectKind::Dynamic,
            first_load_vaddr,
            functions,
        })
    }

    /// The function named `name` in [`UPROBE_FUNCTIONS`], if the binary has it.
    pub fn function(&self, name: &str) -> Option<&FunctionCode> {
        self.functions.get(name)
    }

    /// The layout table from this binary's Go DWARF alone (for checking the repo's tables
    /// against it).
    pub fn dwarf_layout(path: &Path) -> Result<Option<LayoutTable>, String> {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        if !dwarf::has_go_dwarf(&file)? {
            return Ok(None);
        }
        dwarf::layout(&file).map(Some)
    }
}

/// Longer than any stack-growth check plus the `push %rbp` after it.
const HEAD: usize = 48;

/// A function's code given its address and file offset (from the pclntab and program headers).
fn code_at(data: &[u8], addr: u64, file_offset: u64) -> Option<FunctionCode> {
    let start = usize::try_from(file_offset).ok()?;
    let head = data.get(start..start.checked_add(HEAD)?.min(data.len()))?.to_vec();
    Some(FunctionCode { addr, file_offset, head })
}

/// The file offset and first bytes of a function symbol's code.
fn function_code(file: &object::File<'_>, sym: &object::Symbol<'_, '_>) -> Option<FunctionCode> {
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (file_start, _) = section.file_range()?;
    let rel = sym.address().checked_sub(section.address())?;
    let data = section.data().ok()?;
    let start = usize::try_from(rel).ok()?;
    let end = start.checked_add(HEAD)?.min(data.len());
    Some(FunctionCode {
        addr: sym.address(),
        file_offset: file_start.checked_add(rel)?,
        head: data.get(start..end)?.to_vec(),
    })
}
