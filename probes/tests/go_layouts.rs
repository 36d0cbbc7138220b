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
    }
}

#[test]
fn dwarf_less_builds_use_the_table() {
    for release in layout::table_releases() {
        let w = GoBinary::open(&example(&format!("parked-{release}-w")), "parked-w").unwrap();
        assert_eq!(w.layout.source, LayoutSource::Table(release.to_owned()));
        let full = GoBinary::open(&example(&format!("parked-{release}")), "parked").unwrap();
        assert_eq!(full.layout.source, LayoutSource::Dwarf);
        assert_eq!(w.layout.fields, full.layout.fields);
        assert_eq!(w.layout.sizes, full.layout.sizes);
        assert_eq!(w.layout.consts, full.layout.consts);
    }
}

#[test]
fn fully_stripped_builds_use_the_table_and_located_globals() {
    for release in layout::table_releases() {
        let sw = GoBinary::open(&example(&format!("parked-{release}-sw")), "parked-sw").unwrap();
        assert_eq!(sw.layout.source, LayoutSource::Table(release.to_owned()));
        let w = GoBinary::open(&example(&format!("parked-{release}-w")), "parked-w").unwrap();
        assert_eq!(sw.layout.fields, w.layout.fields);
    }
}

#[test]
fn non_go_binaries_are_not_go() {
    let err = GoBinary::open(&example("blocker"), "blocker").unwrap_err();
    assert!(matches!(err, GoError::NotGo { .. }), "{err}");
}
