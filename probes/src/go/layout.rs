//! The Go runtime's struct layouts and constants that parkscope reads: which fields it needs
//! (a typed enum per struct, each variant with the alternative member paths different Go
//! versions use), where they are in one binary, and the per-version tables kept in the repo for
//! binaries without DWARF. Every source (the binary's DWARF, a repo table, the build cache)
//! fills the same [`LayoutTable`]; [`LayoutTable::complete`] turns it into a [`Layout`] or names
//! what is missing, so a read never meets an absent field.

use std::fmt::Write as _;

use super::GoError;

/// A runtime struct parkscope reads in one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoStruct {
    G,
    M,
    P,
    Schedt,
    PollDesc,
}

impl GoStruct {
    pub const ALL: [GoStruct; 5] =
        [GoStruct::G, GoStruct::M, GoStruct::P, GoStruct::Schedt, GoStruct::PollDesc];
    pub const COUNT: usize = GoStruct::ALL.len();

    /// The runtime type's name, as DWARF and the tables spell it.
    pub const fn name(self) -> &'static str {
        match self {
            GoStruct::G => "runtime.g",
            GoStruct::M => "runtime.m",
            GoStruct::P => "runtime.p",
            GoStruct::Schedt => "runtime.schedt",
            GoStruct::PollDesc => "runtime.pollDesc",
        }
    }
}

/// Where one field is found: our key for it (the tables' spelling), the struct that holds it,
/// and the member paths (dot-separated through nested structs) tried in order. Different Go
/// versions name or nest a field differently (`sched.runqsize` vs `sched.runq.size`); the first
/// path the binary's DWARF has wins. Nothing here is tied to a version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub key: &'static str,
    pub strukt: GoStruct,
    pub paths: &'static [&'static str],
}

/// Declares one enum of fields, its `ALL` list (every variant, in order: the macro keeps the
/// two from drifting apart) and each variant's [`FieldSpec`].
macro_rules! fields {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $strukt:ident, $key:literal, [$($path:literal),+];)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn spec(self) -> FieldSpec {
                match self {
                    $($name::$variant => FieldSpec {
                        key: $key,
                        strukt: GoStruct::$strukt,
                        paths: &[$($path),+],
                    },)+
                }
            }
        }
    };
}

fields! {
    /// A field of `runtime.g` (a goroutine) that every supported release has.
    GField {
        Goid => G, "g.goid", ["goid"];
        Atomicstatus => G, "g.atomicstatus", ["atomicstatus"];
        Waitreason => G, "g.waitreason", ["waitreason"];
        Waitsince => G, "g.waitsince", ["waitsince"];
        M => G, "g.m", ["m"];
        SchedSp => G, "g.sched.sp", ["sched.sp"];
        SchedPc => G, "g.sched.pc", ["sched.pc"];
        SchedBp => G, "g.sched.bp", ["sched.bp"];
        Startpc => G, "g.startpc", ["startpc"];
        Gopc => G, "g.gopc", ["gopc"];
        Syscallsp => G, "g.syscallsp", ["syscallsp"];
        Syscallpc => G, "g.syscallpc", ["syscallpc"];
        StackLo => G, "g.stack.lo", ["stack.lo"];
        StackHi => G, "g.stack.hi", ["stack.hi"];
        Lockedm => G, "g.lockedm", ["lockedm"];
    }
}

fields! {
    /// A field of `runtime.m` (an OS thread) that every supported release has.
    MField {
        Id => M, "m.id", ["id"];
        Procid => M, "m.procid", ["procid"];
        Curg => M, "m.curg", ["curg"];
        Ncgo => M, "m.ncgo", ["ncgo"];
        Incgo => M, "m.incgo", ["incgo"];
        P => M, "m.p", ["p"];
        Lockedg => M, "m.lockedg", ["lockedg"];
        Alllink => M, "m.alllink", ["alllink"];
        Mallocing => M, "m.mallocing", ["mallocing"];
        Throwing => M, "m.throwing", ["throwing"];
        Preemptoff => M, "m.preemptoff", ["preemptoff"];
        Locks => M, "m.locks", ["locks"];
        Dying => M, "m.dying", ["dying"];
        Spinning => M, "m.spinning", ["spinning"];
        Blocked => M, "m.blocked", ["blocked"];
    }
}

fields! {
    /// A field of `runtime.p` (a processor) that every supported release has.
    PField {
        Id => P, "p.id", ["id"];
        Status => P, "p.status", ["status"];
        Schedtick => P, "p.schedtick", ["schedtick"];
        Syscalltick => P, "p.syscalltick", ["syscalltick"];
        M => P, "p.m", ["m"];
        Runqhead => P, "p.runqhead", ["runqhead"];
        Runqtail => P, "p.runqtail", ["runqtail"];
        Gfreecnt => P, "p.gfreecnt", ["gFree.n", "gFree.size"];
        TimersLen => P, "p.timers.len", ["timers.heap.len", "timers.len"];
    }
}

fields! {
    /// A field of `runtime.schedt` (the scheduler) that every supported release has.
    SchedField {
        Npidle => Schedt, "sched.npidle", ["npidle"];
        Nmspinning => Schedt, "sched.nmspinning", ["nmspinning"];
        Nmidle => Schedt, "sched.nmidle", ["nmidle"];
        Runqsize => Schedt, "sched.runqsize", ["runqsize", "runq.size"];
        Mnext => Schedt, "sched.mnext", ["mnext"];
        Nmfreed => Schedt, "sched.nmfreed", ["nmfreed"];
        Gcwaiting => Schedt, "sched.gcwaiting", ["gcwaiting"];
        Nmidlelocked => Schedt, "sched.nmidlelocked", ["nmidlelocked"];
        Stopwait => Schedt, "sched.stopwait", ["stopwait"];
        Sysmonwait => Schedt, "sched.sysmonwait", ["sysmonwait"];
    }
}

fields! {
    /// A field of `runtime.pollDesc` (the netpoller's per-fd state).
    PollDescField {
        Fd => PollDesc, "pollDesc.fd", ["fd"];
        Rg => PollDesc, "pollDesc.rg", ["rg"];
        Wg => PollDesc, "pollDesc.wg", ["wg"];
    }
}

fields! {
    /// A field only some releases have; its absence is meaningful (the output omits it).
    OptionalField {
        ParentGoid => G, "g.parentGoid", ["parentGoid"];
        Mstartfn => M, "m.mstartfn", ["mstartfn"];
        Needspinning => Schedt, "sched.needspinning", ["needspinning"];
    }
}

/// A field every supported release has: a [`Layout`] holds each one, so reading it cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoField {
    G(GField),
    M(MField),
    P(PField),
    Sched(SchedField),
    PollDesc(PollDescField),
}

impl GoField {
    pub const COUNT: usize = GField::ALL.len()
        + MField::ALL.len()
        + PField::ALL.len()
        + SchedField::ALL.len()
        + PollDescField::ALL.len();

    /// Every required field, in index order.
    pub fn all() -> impl Iterator<Item = GoField> {
        (GField::ALL.iter().map(|&f| GoField::G(f)))
            .chain(MField::ALL.iter().map(|&f| GoField::M(f)))
            .chain(PField::ALL.iter().map(|&f| GoField::P(f)))
            .chain(SchedField::ALL.iter().map(|&f| GoField::Sched(f)))
            .chain(PollDescField::ALL.iter().map(|&f| GoField::PollDesc(f)))
    }

    /// This field's slot in a layout's arrays.
    pub const fn index(self) -> usize {
        const M0: usize = GField::ALL.len();
        const P0: usize = M0 + MField::ALL.len();
        const S0: usize = P0 + PField::ALL.len();
        const D0: usize = S0 + SchedField::ALL.len();
        match self {
            GoField::G(f) => f as usize,
            GoField::M(f) => M0 + f as usize,
            GoField::P(f) => P0 + f as usize,
            GoField::Sched(f) => S0 + f as usize,
            GoField::PollDesc(f) => D0 + f as usize,
        }
    }

    pub const fn spec(self) -> FieldSpec {
        match self {
            GoField::G(f) => f.spec(),
            GoField::M(f) => f.spec(),
            GoField::P(f) => f.spec(),
            GoField::Sched(f) => f.spec(),
            GoField::PollDesc(f) => f.spec(),
        }
    }
}

impl From<GField> for GoField {
    fn from(f: GField) -> GoField {
        GoField::G(f)
    }
}

impl From<MField> for GoField {
    fn from(f: MField) -> GoField {
        GoField::M(f)
    }
}

impl From<PField> for GoField {
    fn from(f: PField) -> GoField {
        GoField::P(f)
    }
}

impl From<SchedField> for GoField {
    fn from(f: SchedField) -> GoField {
        GoField::Sched(f)
    }
}

impl From<PollDescField> for GoField {
    fn from(f: PollDescField) -> GoField {
        GoField::PollDesc(f)
    }
}

impl OptionalField {
    pub const COUNT: usize = OptionalField::ALL.len();
}

/// A constant read from the binary: goroutine states and the netpoller's pointer tagging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoConst {
    Gidle,
    Grunnable,
    Grunning,
    Gsyscall,
    Gwaiting,
    Gdead,
    Gcopystack,
    Gpreempted,
    Gscan,
    Gleaked,
    Gdeadextra,
    TagBits,
    TagAlignBits,
}

impl GoConst {
    pub const ALL: [GoConst; 13] = [
        GoConst::Gidle,
        GoConst::Grunnable,
        GoConst::Grunning,
        GoConst::Gsyscall,
        GoConst::Gwaiting,
        GoConst::Gdead,
        GoConst::Gcopystack,
        GoConst::Gpreempted,
        GoConst::Gscan,
        GoConst::Gleaked,
        GoConst::Gdeadextra,
        GoConst::TagBits,
        GoConst::TagAlignBits,
    ];
    pub const COUNT: usize = GoConst::ALL.len();

    /// The constant's name, as DWARF and the tables spell it.
    pub const fn name(self) -> &'static str {
        match self {
            GoConst::Gidle => "runtime._Gidle",
            GoConst::Grunnable => "runtime._Grunnable",
            GoConst::Grunning => "runtime._Grunning",
            GoConst::Gsyscall => "runtime._Gsyscall",
            GoConst::Gwaiting => "runtime._Gwaiting",
            GoConst::Gdead => "runtime._Gdead",
            GoConst::Gcopystack => "runtime._Gcopystack",
            GoConst::Gpreempted => "runtime._Gpreempted",
            GoConst::Gscan => "runtime._Gscan",
            GoConst::Gleaked => "runtime._Gleaked",
            GoConst::Gdeadextra => "runtime._Gdeadextra",
            GoConst::TagBits => "runtime.tagBits",
            GoConst::TagAlignBits => "runtime.tagAlignBits",
        }
    }

    /// Whether every supported release has it. The others exist only in some releases, and
    /// their absence is meaningful (no such status, no pointer tagging).
    pub const fn required(self) -> bool {
        !matches!(self, GoConst::Gleaked | GoConst::Gdeadextra | GoConst::TagBits | GoConst::TagAlignBits)
    }
}

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

impl std::fmt::Display for LayoutSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutSource::Dwarf => f.write_str("the binary's DWARF"),
            LayoutSource::Table(release) => write!(f, "the repo's {release} layout table"),
        }
    }
}

/// What one source says of the layout, before it is known to be complete: every source (the
/// binary's DWARF, a repo table, the build cache) fills this same table, indexed by the enums
/// above; what the source lacks is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutTable {
    pub fields: [Option<Field>; GoField::COUNT],
    pub optional: [Option<Field>; OptionalField::COUNT],
    pub sizes: [Option<u64>; GoStruct::COUNT],
    pub consts: [Option<i64>; GoConst::COUNT],
}

impl Default for LayoutTable {
    fn default() -> LayoutTable {
        LayoutTable {
            fields: [None; GoField::COUNT],
            optional: [None; OptionalField::COUNT],
            sizes: [None; GoStruct::COUNT],
            consts: [None; GoConst::COUNT],
        }
    }
}

/// One entry of a layout, by the key the tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Field(GoField),
    Optional(OptionalField),
}

impl Key {
    fn all() -> impl Iterator<Item = Key> {
        GoField::all().map(Key::Field).chain(OptionalField::ALL.iter().map(|&f| Key::Optional(f)))
    }

    fn spec(self) -> FieldSpec {
        match self {
            Key::Field(f) => f.spec(),
            Key::Optional(f) => f.spec(),
        }
    }
}

impl LayoutTable {
    /// Every field's spec with its place in this table (for the sources that fill it).
    pub fn slots(&mut self) -> impl Iterator<Item = (FieldSpec, &mut Option<Field>)> {
        let LayoutTable { fields, optional, .. } = self;
        GoField::all()
            .map(GoField::spec)
            .zip(fields.iter_mut())
            .chain(OptionalField::ALL.iter().map(|f| f.spec()).zip(optional.iter_mut()))
    }

    fn entry(&self, key: Key) -> Option<Field> {
        match key {
            Key::Field(f) => self.fields[f.index()],
            Key::Optional(f) => self.optional[f as usize],
        }
    }

    /// The layout, if this table has every required field, struct size and constant; else an
    /// error naming the first one missing, the Go version and where the table came from.
    pub fn complete(&self, source: LayoutSource, version: &str) -> Result<Layout, GoError> {
        let missing = |what: String| GoError::UnknownLayout {
            version: version.to_owned(),
            missing: format!("{what} in {source}"),
        };
        let mut fields = [Field { offset: 0, size: 0 }; GoField::COUNT];
        for (f, slot) in GoField::all().zip(fields.iter_mut()) {
            let spec = f.spec();
            *slot = self.fields[f.index()]
                .ok_or_else(|| missing(format!("{}.{}", spec.strukt.name(), spec.paths.join("|"))))?;
        }
        let mut sizes = [0; GoStruct::COUNT];
        for (s, slot) in GoStruct::ALL.iter().zip(sizes.iter_mut()) {
            *slot = self.sizes[*s as usize]
                .filter(|&n| n > 0)
                .ok_or_else(|| missing(format!("sizeof({})", s.name())))?;
        }
        if let Some(c) = GoConst::ALL.iter().find(|c| c.required() && self.consts[**c as usize].is_none()) {
            return Err(missing(c.name().to_owned()));
        }
        Ok(Layout { source, fields, optional: self.optional, sizes, consts: self.consts })
    }

    /// The table text (the format of `layouts/*.txt`): sizes, fields and constants, each sorted
    /// by name.
    pub fn to_table(&self, version: &str) -> String {
        let mut out = format!(
            "# Go runtime layout of {version} on linux/amd64, as its DWARF describes it.\n\
             # Used for binaries built with -ldflags=-w. Regenerate: PARKSCOPE_BLESS=1 cargo test -p parkscope-probes --test go_layouts\n"
        );
        let mut sizes: Vec<(&str, u64)> =
            GoStruct::ALL.iter().filter_map(|s| Some((s.name(), self.sizes[*s as usize]?))).collect();
        sizes.sort_unstable();
        for (name, size) in sizes {
            let _ = writeln!(out, "size {name} {size}");
        }
        let mut fields: Vec<(&str, Field)> =
            Key::all().filter_map(|k| Some((k.spec().key, self.entry(k)?))).collect();
        fields.sort_unstable_by_key(|(key, _)| *key);
        for (key, f) in fields {
            let _ = writeln!(out, "field {key} {} {}", f.offset, f.size);
        }
        let mut consts: Vec<(&str, i64)> =
            GoConst::ALL.iter().filter_map(|c| Some((c.name(), self.consts[*c as usize]?))).collect();
        consts.sort_unstable();
        for (name, value) in consts {
            let _ = writeln!(out, "const {name} {value}");
        }
        out
    }

    /// Parses a table; `Err` names the malformed line (a bad number, a name no enum here has,
    /// or one stated twice).
    pub fn from_table(text: &str) -> Result<LayoutTable, String> {
        let mut t = LayoutTable::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let ok = match words.as_slice() {
                ["size", name, size] => {
                    match (GoStruct::ALL.iter().find(|s| s.name() == *name), size.parse()) {
                        (Some(s), Ok(size)) => t.sizes[*s as usize].replace(size).is_none(),
                        _ => false,
                    }
                }
                ["field", key, off, size] => {
                    match (Key::all().find(|k| k.spec().key == *key), off.parse(), size.parse()) {
                        (Some(k), Ok(offset), Ok(size)) => {
                            let slot = match k {
                                Key::Field(f) => &mut t.fields[f.index()],
                                Key::Optional(f) => &mut t.optional[f as usize],
                            };
                            slot.replace(Field { offset, size }).is_none()
                        }
                        _ => false,
                    }
                }
                ["const", name, v] => match (GoConst::ALL.iter().find(|c| c.name() == *name), v.parse()) {
                    (Some(c), Ok(v)) => t.consts[*c as usize].replace(v).is_none(),
                    _ => false,
                },
                _ => false,
            };
            if !ok {
                return Err(line.to_owned());
            }
        }
        Ok(t)
    }
}

/// The runtime layout of one binary, complete: every [`GoField`] and struct size, the optional
/// fields and constants it has. Made only by [`LayoutTable::complete`], so a lookup of a
/// required field always has an answer and none falls back to a made-up offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub source: LayoutSource,
    fields: [Field; GoField::COUNT],
    optional: [Option<Field>; OptionalField::COUNT],
    sizes: [u64; GoStruct::COUNT],
    consts: [Option<i64>; GoConst::COUNT],
}

impl Layout {
    pub fn field(&self, f: impl Into<GoField>) -> Field {
        self.fields[f.into().index()]
    }

    pub fn optional(&self, f: OptionalField) -> Option<Field> {
        self.optional[f as usize]
    }

    pub fn size(&self, s: GoStruct) -> u64 {
        self.sizes[s as usize]
    }

    /// A constant; every required one is present (see [`GoConst::required`]).
    pub fn constant(&self, c: GoConst) -> Option<i64> {
        self.consts[c as usize]
    }

    /// The source-independent content, as a table (to compare layouts from different sources,
    /// and to store one).
    pub fn table(&self) -> LayoutTable {
        LayoutTable {
            fields: self.fields.map(Some),
            optional: self.optional,
            sizes: self.sizes.map(Some),
            consts: self.consts,
        }
    }

    /// The table text of this layout (see [`LayoutTable::to_table`]).
    pub fn to_table(&self, version: &str) -> String {
        self.table().to_table(version)
    }

    /// Every field, required and optional, with its spec (for bounds checks and for
    /// rendering a layout as DWARF).
    pub fn all_fields(&self) -> impl Iterator<Item = (FieldSpec, Field)> + '_ {
        Key::all().filter_map(|k| {
            let f = match k {
                Key::Field(f) => Some(self.field(f)),
                Key::Optional(f) => self.optional(f),
            };
            Some((k.spec(), f?))
        })
    }

    /// Replaces a field or struct size as a hostile DWARF could state it (for the bounds
    /// checks' tests).
    #[cfg(test)]
    pub(crate) fn set_field(&mut self, f: impl Into<GoField>, at: Field) {
        self.fields[f.into().index()] = at;
    }

    #[cfg(test)]
    pub(crate) fn set_size(&mut self, s: GoStruct, size: u64) {
        self.sizes[s as usize] = size;
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
    let table = LayoutTable::from_table(text).map_err(|line| GoError::UnknownLayout {
        version: version.to_owned(),
        missing: format!("a well-formed {release} table (bad line {line:?})"),
    })?;
    table.complete(LayoutSource::Table(release.to_owned()), version)
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

    /// Every built-in table has every required field, struct size and constant (`from_tables`
    /// completes it), states nothing twice or unknown (the parser refuses both), and renders
    /// back to its own text.
    #[test]
    fn every_table_parses_and_is_complete() {
        for (release, text) in TABLES {
            let l = from_tables(&format!("{release}.1")).unwrap();
            assert_eq!(l.source, LayoutSource::Table((*release).into()));
            for f in GoField::all() {
                let Field { offset, size } = l.field(f);
                assert!(size > 0 && offset + size <= l.size(f.spec().strukt), "{release}: {f:?}");
            }
            assert_eq!(l.to_table(release), *text, "{release}");
            let again = LayoutTable::from_table(&l.to_table(release)).unwrap();
            assert_eq!(again, l.table());
        }
    }

    /// The enums and their `ALL` lists agree: each variant's discriminant is its place, every
    /// index is used once, and every key is distinct.
    #[test]
    fn field_indices_are_dense_and_keys_distinct() {
        let indices: Vec<usize> = GoField::all().map(GoField::index).collect();
        assert_eq!(indices, (0..GoField::COUNT).collect::<Vec<_>>());
        for (i, f) in OptionalField::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
        for (i, s) in GoStruct::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        for (i, c) in GoConst::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let mut keys: Vec<&str> = Key::all().map(|k| k.spec().key).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn unknown_release_is_a_specific_error() {
        let err = from_tables("go1.7.6").unwrap_err();
        assert!(matches!(err, GoError::UnknownLayout { .. }), "{err}");
        assert!(err.to_string().contains("go1.7"), "{err}");
    }

    #[test]
    fn incomplete_layout_names_what_is_missing() {
        let mut t = from_tables("go1.27.0").unwrap().table();
        t.fields[GoField::G(GField::Goid).index()] = None;
        let err = t.complete(LayoutSource::Table("go1.27".into()), "go1.27.0").unwrap_err().to_string();
        assert!(err.contains("runtime.g.goid") && err.contains("go1.27.0"), "{err}");
        assert!(err.contains("the repo's go1.27 layout table"), "{err}");
        let mut t = from_tables("go1.27.0").unwrap().table();
        t.sizes[GoStruct::PollDesc as usize] = None;
        t.consts[GoConst::Gwaiting as usize] = None;
        let err = t.complete(LayoutSource::Dwarf, "go1.27.0").unwrap_err().to_string();
        assert!(err.contains("sizeof(runtime.pollDesc) in the binary's DWARF"), "{err}");
        // An optional field may be missing.
        let mut t = from_tables("go1.27.0").unwrap().table();
        t.optional[OptionalField::ParentGoid as usize] = None;
        assert_eq!(
            t.complete(LayoutSource::Dwarf, "go1.27.0").unwrap().optional(OptionalField::ParentGoid),
            None
        );
    }

    #[test]
    fn malformed_table_line_is_reported() {
        for bad in [
            "field g.goid notanumber 8",
            "field g.nosuchfield 8 8",
            "size runtime.nosuchstruct 8",
            "const runtime._Gnosuch 1",
            "const runtime._Gidle x",
        ] {
            assert_eq!(LayoutTable::from_table(bad).unwrap_err(), bad);
        }
        assert_eq!(
            LayoutTable::from_table("field g.goid 8 8\nfield g.goid 16 8").unwrap_err(),
            "field g.goid 16 8"
        );
    }
}
