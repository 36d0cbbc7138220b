//! The Go runtime's struct layouts and constants that parkscope reads: which fields it needs
//! (named by what they are, with the alternative paths different Go versions use), where they
//! are in one binary, and the per-version tables kept in the repo for binaries without DWARF.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::GoError;

/// One field parkscope reads: `key` is our name for it, `strukt` the runtime type that holds it,
/// `paths` the member paths (dot-separated through nested structs) tried in order. Different Go
/// versions name or nest a field differently (`sched.runqsize` vs `sched.runq.size`); the first
/// path the binary's DWARF has wins. Nothing here is tied to a version number.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub key: &'static str,
    pub strukt: &'static str,
    pub paths: &'static [&'static str],
    pub required: bool,
}

const fn req(key: &'static str, strukt: &'static str, paths: &'static [&'static str]) -> FieldSpec {
    FieldSpec { key, strukt, paths, required: true }
}

const fn opt(key: &'static str, strukt: &'static str, paths: &'static [&'static str]) -> FieldSpec {
    FieldSpec { key, strukt, paths, required: false }
}

const G: &str = "runtime.g";
const M: &str = "runtime.m";
const P: &str = "runtime.p";
const SCHED: &str = "runtime.schedt";
const PD: &str = "runtime.pollDesc";

/// Every field read from the target, by key.
pub const FIELDS: &[FieldSpec] = &[
    req("g.goid", G, &["goid"]),
    req("g.atomicstatus", G, &["atomicstatus"]),
    req("g.waitreason", G, &["waitreason"]),
    req("g.waitsince", G, &["waitsince"]),
    req("g.m", G, &["m"]),
    req("g.sched.sp", G, &["sched.sp"]),
    req("g.sched.pc", G, &["sched.pc"]),
    req("g.sched.bp", G, &["sched.bp"]),
    req("g.startpc", G, &["startpc"]),
    req("g.gopc", G, &["gopc"]),
    opt("g.parentGoid", G, &["parentGoid"]),
    req("g.syscallsp", G, &["syscallsp"]),
    req("g.syscallpc", G, &["syscallpc"]),
    req("g.stack.lo", G, &["stack.lo"]),
    req("g.stack.hi", G, &["stack.hi"]),
    req("g.lockedm", G, &["lockedm"]),
    req("m.id", M, &["id"]),
    req("m.procid", M, &["procid"]),
    req("m.curg", M, &["curg"]),
    req("m.ncgo", M, &["ncgo"]),
    req("m.incgo", M, &["incgo"]),
    req("m.p", M, &["p"]),
    req("m.lockedg", M, &["lockedg"]),
    req("m.alllink", M, &["alllink"]),
    req("m.mallocing", M, &["mallocing"]),
    req("m.throwing", M, &["throwing"]),
    req("m.preemptoff", M, &["preemptoff"]),
    req("m.locks", M, &["locks"]),
    req("m.dying", M, &["dying"]),
    req("m.spinning", M, &["spinning"]),
    req("m.blocked", M, &["blocked"]),
    opt("m.mstartfn", M, &["mstartfn"]),
    req("p.id", P, &["id"]),
    req("p.status", P, &["status"]),
    req("p.schedtick", P, &["schedtick"]),
    req("p.syscalltick", P, &["syscalltick"]),
    req("p.m", P, &["m"]),
    req("p.runqhead", P, &["runqhead"]),
    req("p.runqtail", P, &["runqtail"]),
    req("p.gfreecnt", P, &["gFree.n", "gFree.size"]),
    req("p.timers.len", P, &["timers.heap.len", "timers.len"]),
    req("sched.npidle", SCHED, &["npidle"]),
    req("sched.nmspinning", SCHED, &["nmspinning"]),
    opt("sched.needspinning", SCHED, &["needspinning"]),
    req("sched.nmidle", SCHED, &["nmidle"]),
    req("sched.runqsize", SCHED, &["runqsize", "runq.size"]),
    req("sched.mnext", SCHED, &["mnext"]),
    req("sched.nmfreed", SCHED, &["nmfreed"]),
    req("sched.gcwaiting", SCHED, &["gcwaiting"]),
    req("sched.nmidlelocked", SCHED, &["nmidlelocked"]),
    req("sched.stopwait", SCHED, &["stopwait"]),
    req("sched.sysmonwait", SCHED, &["sysmonwait"]),
    req("pollDesc.fd", PD, &["fd"]),
    req("pollDesc.rg", PD, &["rg"]),
    req("pollDesc.wg", PD, &["wg"]),
];

/// Structs whose whole size we need (each is read in one piece).
pub const STRUCTS: &[&str] = &[G, M, P, SCHED, PD];

/// Constants read from the binary: goroutine states and the netpoller's pointer tagging. The
/// optional ones exist only in some versions; their absence is meaningful (no tagging).
pub const CONSTS: &[(&str, bool)] = &[
    ("runtime._Gidle", true),
    ("runtime._Grunnable", true),
    ("runtime._Grunning", true),
    ("runtime._Gsyscall", true),
    ("runtime._Gwaiting", true),
    ("runtime._Gdead", true),
    ("runtime._Gcopystack", true),
    ("runtime._Gpreempted", true),
    ("runtime._Gscan", true),
    ("runtime._Gleaked", false),
    ("runtime._Gdeadextra", false),
    ("runtime.tagBits", false),
    ("runtime.tagAlignBits", false),
];

/// Where a field is: byte offset inside its struct and byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u64,
    pub size: u64,
}

/// Where the layout came from, which outputs report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// The table kept in the repo for this Go release (the binary has no DWARF).
    Table(String),
}

/// The runtime layout of one binary: every field of [`FIELDS`] that it has, struct sizes and
/// constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub source: LayoutSource,
    pub fields: BTreeMap<String, Field>,
    pub sizes: BTreeMap<String, u64>,
    pub consts: BTreeMap<String, i64>,
}

impl Layout {
    /// A field that must exist (checked by [`Layout::check_complete`] before any read).
    pub fn field(&self, key: &str) -> Field {
        self.fields.get(key).copied().unwrap_or(Field { offset: 0, size: 0 })
    }

    pub fn opt_field(&self, key: &str) -> Option<Field> {
        self.fields.get(key).copied()
    }

    pub fn size(&self, strukt: &str) -> u64 {
        self.sizes.get(strukt).copied().unwrap_or(0)
    }

    pub fn constant(&self, name: &str) -> Option<i64> {
        self.consts.get(name).copied()
    }

    /// Fails naming the first required field, size or constant that is missing.
    pub fn check_complete(&self, version: &str) -> Result<(), GoError> {
        let missing = FIELDS
            .iter()
            .filter(|f| f.required && !self.fields.contains_key(f.key))
            .map(|f| format!("{}.{}", f.strukt, f.paths.join("|")))
            .chain(STRUCTS.iter().filter(|s| self.size(s) == 0).map(|s| format!("sizeof({s})")))
            .chain(
                CONSTS.iter().filter(|(c, r)| *r && !self.consts.contains_key(*c)).map(|(c, _)| (*c).into()),
            )
            .next();
        match missing {
            Some(what) => Err(GoError::UnknownLayout { version: version.to_owned(), missing: what }),
            None => Ok(()),
        }
    }

    /// The table text for this layout (the format of `layouts/*.txt`).
    pub fn to_table(&self, version: &str) -> String {
        let mut out = format!(
            "# Go runtime layout of {version} on linux/amd64, as its DWARF describes it.\n\
             # Used for binaries built with -ldflags=-w. Regenerate: PARKSCOPE_BLESS=1 cargo test -p parkscope-probes --test go_layouts\n"
        );
        for (name, size) in &self.sizes {
            let _ = writeln!(out, "size {name} {size}");
        }
        for (key, f) in &self.fields {
            let _ = writeln!(out, "field {key} {} {}", f.offset, f.size);
        }
        for (name, value) in &self.consts {
            let _ = writeln!(out, "const {name} {value}");
        }
        out
    }

    /// Parses a table; `Err` names the malformed line.
    pub fn from_table(minor: &str, text: &str) -> Result<Layout, String> {
        let mut l = Layout {
            source: LayoutSource::Table(minor.to_owned()),
            fields: BTreeMap::new(),
            sizes: BTreeMap::new(),
            consts: BTreeMap::new(),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let ok = match words.as_slice() {
                ["size", name, size] => size.parse().map(|s| l.sizes.insert((*name).into(), s)).is_ok(),
                ["field", key, off, size] => match (off.parse(), size.parse()) {
                    (Ok(offset), Ok(size)) => {
                        l.fields.insert((*key).into(), Field { offset, size }).is_none()
                    }
                    _ => false,
                },
                ["const", name, v] => v.parse().map(|v| l.consts.insert((*name).into(), v)).is_ok(),
                _ => false,
            };
            if !ok {
                return Err(line.to_owned());
            }
        }
        Ok(l)
    }
}

/// The per-release tables kept in the repo: (release, text). A binary's release is its version
/// cut to major.minor (`go1.27.3` -> `go1.27`); struct layouts do not change in patch releases.
/// Go 1.20 is missing: no build of it could be had to generate its table from (see setup.rs).
const TABLES: &[(&str, &str)] = &[
    ("go1.19", include_str!("layouts/go1.19.txt")),
    ("go1.21", include_str!("layouts/go1.21.txt")),
    ("go1.22", include_str!("layouts/go1.22.txt")),
    ("go1.23", include_str!("layouts/go1.23.txt")),
    ("go1.24", include_str!("layouts/go1.24.txt")),
    ("go1.25", include_str!("layouts/go1.25.txt")),
    ("go1.26", include_str!("layouts/go1.26.txt")),
    ("go1.27", include_str!("layouts/go1.27.txt")),
];

/// `go1.27.3` -> `go1.27`; `go1.21rc2` -> `go1.21`; `devel ...` stays as is.
pub fn release_of(version: &str) -> &str {
    let Some(rest) = version.strip_prefix("go1.") else { return version };
    let minor_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    &version[..4 + minor_len]
}

/// The releases a table exists for.
pub fn table_releases() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(r, _)| *r)
}

/// The repo's table for `version`'s release.
pub fn from_tables(version: &str) -> Result<Layout, GoError> {
    let release = release_of(version);
    let (_, text) = TABLES.iter().find(|(r, _)| *r == release).ok_or_else(|| GoError::UnknownLayout {
        version: version.to_owned(),
        missing: format!(
            "a layout table for {release} (have {})",
            table_releases().collect::<Vec<_>>().join(", ")
        ),
    })?;
    let layout = Layout::from_table(release, text).map_err(|line| GoError::UnknownLayout {
        version: version.to_owned(),
        missing: format!("a well-formed table (bad line {line:?})"),
    })?;
    layout.check_complete(version)?;
    Ok(layout)
}

/// The textual conventions of one release's schedtrace output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedtraceStyle {
    /// `[ 0 0 ]` rather than `[0 0]` around the per-P run queue lengths.
    pub spaced_brackets: bool,
    /// `nil` rather than `-1` for an absent M, P or G in the detail lines.
    pub nil_ids: bool,
    /// A trailing `schedticks=[ .. ]` with each P's schedtick.
    pub schedticks: bool,
}

/// The style of `version` from `layouts/schedtrace.txt`: its release's row, else the nearest
/// lower listed release, else the lowest listed one.
pub fn schedtrace_style(version: &str) -> SchedtraceStyle {
    let minor = |r: &str| r.strip_prefix("go1.").and_then(|m| m.parse::<u32>().ok());
    let rows: Vec<(u32, SchedtraceStyle)> = include_str!("layouts/schedtrace.txt")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| match l.split_ascii_whitespace().collect::<Vec<_>>().as_slice() {
            [rel, brackets, absent, ticks] => Some((
                minor(rel)?,
                SchedtraceStyle {
                    spaced_brackets: *brackets == "spaced",
                    nil_ids: *absent == "nil",
                    schedticks: *ticks == "yes",
                },
            )),
            _ => None,
        })
        .collect();
    let want = minor(release_of(version)).unwrap_or(u32::MAX);
    rows.iter()
        .filter(|(m, _)| *m <= want)
        .max_by_key(|(m, _)| *m)
        .or_else(|| rows.iter().min_by_key(|(m, _)| *m))
        .map(|(_, s)| *s)
        .unwrap_or(SchedtraceStyle { spaced_brackets: false, nil_ids: false, schedticks: false })
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedtrace_styles() {
        let old = schedtrace_style("go1.19.8");
        assert!(!old.spaced_brackets && !old.nil_ids && !old.schedticks);
        let new = schedtrace_style("go1.27.3");
        assert!(new.spaced_brackets && new.nil_ids && new.schedticks);
        // Go 1.21 prints nil for an absent id; 1.25 brought `[ .. ]` and schedticks.
        let go121 = SchedtraceStyle { spaced_brackets: false, nil_ids: true, schedticks: false };
        assert_eq!(schedtrace_style("go1.21.13"), go121);
        assert_eq!(schedtrace_style("go1.24.11"), go121);
        assert_eq!(schedtrace_style("go1.25.5"), new);
        assert_eq!(schedtrace_style("go1.30.0"), new);
    }

    use super::*;

    #[test]
    fn releases() {
        assert_eq!(release_of("go1.27.3"), "go1.27");
        assert_eq!(release_of("go1.19"), "go1.19");
        assert_eq!(release_of("go1.21rc2"), "go1.21");
        assert_eq!(release_of("devel go1.28-abc"), "devel go1.28-abc");
    }

    #[test]
    fn every_table_parses_and_is_complete() {
        for release in table_releases() {
            let l = from_tables(&format!("{release}.1")).unwrap();
            assert_eq!(l.source, LayoutSource::Table(release.into()));
            // Round trip: the text a layout renders parses back to the same layout.
            let again = Layout::from_table(release, &l.to_table(release)).unwrap();
            assert_eq!(again, l);
        }
    }

    #[test]
    fn unknown_release_is_a_specific_error() {
        let err = from_tables("go1.7.6").unwrap_err();
        assert!(matches!(err, GoError::UnknownLayout { .. }), "{err}");
        assert!(err.to_string().contains("go1.7"), "{err}");
    }

    #[test]
    fn incomplete_layout_names_what_is_missing() {
        let mut l = from_tables("go1.27.0").unwrap();
        l.fields.remove("g.goid");
        let err = l.check_complete("go1.27.0").unwrap_err().to_string();
        assert!(err.contains("runtime.g.goid"), "{err}");
    }

    #[test]
    fn malformed_table_line_is_reported() {
        assert_eq!(
            Layout::from_table("x", "field g.goid notanumber 8").unwrap_err(),
            "field g.goid notanumber 8"
        );
    }
}
