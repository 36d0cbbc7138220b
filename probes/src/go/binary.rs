//! One Go executable on disk: its build information, the runtime layout that applies to it, and
//! the addresses of the runtime's global variables (from .symtab, which `-ldflags=-w` keeps and
//! `-s` removes).

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

use super::buildinfo::{self, BuildInfo};
use super::layout::{self, Layout, LayoutSource};
use super::{GoError, dwarf};

/// Runtime globals parkscope reads; all must be in the symbol table.
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
    /// Stated (link-time) address and size of each of [`GLOBALS`].
    pub globals: HashMap<&'static str, (u64, u64)>,
    /// Position-independent executables are loaded at a slide; the others at their stated addresses.
    pub position_independent: bool,
    /// Lowest stated address of a loadable segment (to compute the slide of a PIE).
    pub first_load_vaddr: u64,
    /// The [`UPROBE_FUNCTIONS`] found in the symbol table.
    pub functions: HashMap<&'static str, FunctionCode>,
}

/// The DWARF-derived layout of one binary, cached on disk by its Go build id: walking the
/// compressed DWARF of a Go binary is most of a snapshot's CPU (~40 ms of ~70 ms on a small
/// server), and `snapshot` is run again and again against the same binary. The build id is a
/// hash of the binary's inputs and contents, so a different binary never gets another's layout.
/// Best effort: an unreadable or unwritable cache only means parsing the DWARF again.
struct LayoutCache {
    path: std::path::PathBuf,
}

impl LayoutCache {
    fn dir() -> Option<std::path::PathBuf> {
        let base = std::env::var_os("PARKSCOPE_CACHE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("parkscope"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/parkscope"))
            })?;
        Some(base.join("go-layouts"))
    }

    fn for_binary(file: &object::File<'_>) -> Option<LayoutCache> {
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
        Some(LayoutCache { path: Self::dir()?.join(format!("{id}.txt")) })
    }

    fn load(&self) -> Option<Layout> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut l = Layout::from_table("cache", &text).ok()?;
        l.source = LayoutSource::Dwarf;
        Some(l)
    }

    fn store(&self, layout: &Layout, version: &str) {
        let Some(dir) = self.path.parent() else { return };
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, layout.to_table(version)))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!("not caching the Go layout in {}: {e}", self.path.display());
        }
    }
}

impl GoBinary {
    /// Reads `path`. `display` names it in errors (e.g. the target's exe path, not /proc/PID/exe).
    pub fn open(path: &Path, display: &str) -> Result<GoBinary, GoError> {
        let bin_err = |reason: String| GoError::Binary { path: display.to_owned(), reason };
        let data = std::fs::read(path).map_err(|e| bin_err(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| bin_err(e.to_string()))?;
        Self::from_object(&file, display, true)
    }

    /// Like [`GoBinary::open`] for a file already in memory, without the on-disk layout cache
    /// (nothing is read or written but `data`: what the fuzz targets exercise).
    pub fn from_bytes(data: &[u8], display: &str) -> Result<GoBinary, GoError> {
        let file = object::File::parse(data)
            .map_err(|e| GoError::Binary { path: display.to_owned(), reason: e.to_string() })?;
        Self::from_object(&file, display, false)
    }

    fn from_object(file: &object::File<'_>, display: &str, use_cache: bool) -> Result<GoBinary, GoError> {
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
        if file.symbols().next().is_none() {
            return Err(GoError::Stripped { path: display.to_owned(), version: buildinfo.version });
        }
        if let Some(missing) = GLOBALS.iter().find(|g| !globals.contains_key(*g)) {
            return Err(GoError::UnknownLayout {
                version: buildinfo.version,
                missing: format!("symbol {missing}"),
            });
        }

        let layout = if dwarf::has_dwarf(file) {
            let cache = if use_cache { LayoutCache::for_binary(file) } else { None };
            match cache.as_ref().and_then(LayoutCache::load) {
                Some(l) => l,
                None => {
                    let l = dwarf::layout(file).map_err(|reason| GoError::Binary {
                        path: display.to_owned(),
                        reason: format!("DWARF: {reason}"),
                    })?;
                    l.check_complete(&buildinfo.version)?;
                    if let Some(c) = &cache {
                        c.store(&l, &buildinfo.version);
                    }
                    l
                }
            }
        } else {
            layout::from_tables(&buildinfo.version)?
        };
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

    /// The layout from this binary's DWARF alone (for checking the repo's tables against it).
    pub fn dwarf_layout(path: &Path) -> Result<Option<Layout>, String> {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        if !dwarf::has_dwarf(&file) {
            return Ok(None);
        }
        dwarf::layout(&file).map(Some)
    }
}

/// The file offset and first bytes of a function symbol's code.
fn function_code(file: &object::File<'_>, sym: &object::Symbol<'_, '_>) -> Option<FunctionCode> {
    /// Longer than any stack-growth check plus the `push %rbp` after it.
    const HEAD: u64 = 48;
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (file_start, _) = section.file_range()?;
    let rel = sym.address().checked_sub(section.address())?;
    let data = section.data().ok()?;
    let start = usize::try_from(rel).ok()?;
    let end = (start + HEAD as usize).min(data.len());
    Some(FunctionCode {
        addr: sym.address(),
        file_offset: file_start + rel,
        head: data.get(start..end)?.to_vec(),
    })
}
