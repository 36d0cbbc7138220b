//! One Go executable on disk: its build information, the runtime layout that applies to it, and
//! the addresses of the runtime's global variables (from .symtab, which `-ldflags=-w` keeps and
//! `-s` removes).

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

use super::buildinfo::{self, BuildInfo};
use super::layout::{self, Layout};
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
}

impl GoBinary {
    /// Reads `path`. `display` names it in errors (e.g. the target's exe path, not /proc/PID/exe).
    pub fn open(path: &Path, display: &str) -> Result<GoBinary, GoError> {
        let bin_err = |reason: String| GoError::Binary { path: display.to_owned(), reason };
        let data = std::fs::read(path).map_err(|e| bin_err(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| bin_err(e.to_string()))?;
        Self::from_object(&file, display)
    }

    fn from_object(file: &object::File<'_>, display: &str) -> Result<GoBinary, GoError> {
        let not_go = || GoError::NotGo { pid: 0, path: display.to_owned() };
        let section = file.section_by_name(".go.buildinfo").ok_or_else(not_go)?;
        let bytes = section.data().map_err(|_| not_go())?;
        let buildinfo =
            buildinfo::parse(bytes).map_err(|reason| GoError::Binary { path: display.to_owned(), reason })?;

        let mut globals = HashMap::new();
        for sym in file.symbols() {
            if let Ok(name) = sym.name()
                && let Some(g) = GLOBALS.iter().find(|g| **g == name)
            {
                globals.insert(*g, (sym.address(), sym.size()));
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
            let l = dwarf::layout(file).map_err(|reason| GoError::Binary {
                path: display.to_owned(),
                reason: format!("DWARF: {reason}"),
            })?;
            l.check_complete(&buildinfo.version)?;
            l
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
        })
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
