//! The repo's per-release Go runtime layout tables (probes/src/go/layouts/*.txt) must equal what
//! the DWARF of real builds says, for every release they cover: the tables are what binaries
//! built with `-ldflags=-w` are read with. `PARKSCOPE_BLESS=1` rewrites the tables from DWARF.
//! Needs the example builds (`cargo xtask examples`).

use std::path::{Path, PathBuf};

use parkscope_probes::go::{GoBinary, GoError, LayoutSource, layout};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn example(name: &str) -> PathBuf {
    let p = root().join("examples/bin").join(name);
    assert!(p.is_file(), "{} missing: run `cargo xtask examples`", p.display());
    p
}

#[test]
fn tables_equal_dwarf_of_real_builds() {
    let bless = std::env::var_os("PARKSCOPE_BLESS").is_some();
    for release in layout::table_releases() {
        let bin = example(&format!("parked-{release}"));
        let dwarf = GoBinary::dwarf_layout(&bin).unwrap().expect("the plain build has DWARF");
        let from_dwarf = GoBinary::open(&bin, "parked").unwrap();
        assert!(from_dwarf.buildinfo.version.starts_with(release), "{}", from_dwarf.buildinfo.version);
        assert_eq!(layout::release_of(&from_dwarf.buildinfo.version), release);
        let text = dwarf.to_table(release);
        let path = root().join(format!("probes/src/go/layouts/{release}.txt"));
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let table = std::fs::read_to_string(&path).unwrap();
        assert_eq!(table, text, "{} is stale: rerun with PARKSCOPE_BLESS=1", path.display());
        // Typed: the DWARF's table is complete and equals the built-in table of its release,
        // field by field (the text comparison above also holds the file's form).
        let version = &from_dwarf.buildinfo.version;
        let built_in = layout::from_tables(version).unwrap();
        assert_eq!(
            dwarf.complete(LayoutSource::Dwarf, version).unwrap().table(),
            built_in.table(),
            "{release}"
        );
        assert_eq!(from_dwarf.layout.table(), built_in.table(), "{release}");
    }
}

#[test]
fn dwarf_less_builds_use_the_table() {
    for release in layout::table_releases() {
        let w = GoBinary::open(&example(&format!("parked-{release}-w")), "parked-w").unwrap();
        assert_eq!(w.layout.source, LayoutSource::Table(release.to_owned()));
        let full = GoBinary::open(&example(&format!("parked-{release}")), "parked").unwrap();
        assert_eq!(full.layout.source, LayoutSource::Dwarf);
        assert_eq!(w.layout.table(), full.layout.table());
    }
}

/// An externally linked `-w` build can keep the DWARF of its C objects (Go 1.19's linker does):
/// that DWARF has no Go unit, so the layout comes from the table.
#[test]
fn c_only_dwarf_is_not_go_dwarf() {
    for release in ["go1.19", "go1.27"] {
        let bin = example(&format!("parkedcgo-{release}-w"));
        assert_eq!(GoBinary::dwarf_layout(&bin).unwrap(), None, "{release}");
        let w = GoBinary::open(&bin, "parkedcgo-w").unwrap();
        assert_eq!(w.layout.source, LayoutSource::Table(release.to_owned()));
    }
    // The case that matters is real: the Go 1.19 build does carry (C) DWARF.
    let go119 = std::fs::read(example("parkedcgo-go1.19-w")).unwrap();
    let file = object::File::parse(&*go119).unwrap();
    assert!(object::Object::section_by_name(&file, ".debug_info").is_some());
}

#[test]
fn fully_stripped_builds_use_the_table_and_located_globals() {
    for release in layout::table_releases() {
        let sw = GoBinary::open(&example(&format!("parked-{release}-sw")), "parked-sw").unwrap();
        assert_eq!(sw.layout.source, LayoutSource::Table(release.to_owned()));
        let w = GoBinary::open(&example(&format!("parked-{release}-w")), "parked-w").unwrap();
        assert_eq!(sw.layout.table(), w.layout.table());
    }
}

#[test]
fn non_go_binaries_are_not_go() {
    let err = GoBinary::open(&example("blocker"), "blocker").unwrap_err();
    assert!(matches!(err, GoError::NotGo { .. }), "{err}");
}
