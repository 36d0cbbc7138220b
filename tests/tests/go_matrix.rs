//! The Go release matrix: every Go release that has a layout table (probes/src/go/layouts/,
//! 1.19 and 1.21..1.27) x every build variant of examples/go/parked and parkedcgo, each checked
//! against the target's own runtime: goroutines and wait reasons one for one against its
//! `goroutine?debug=2` dump, netpoll fds against its sockets, cgo calls against its pipes,
//! `parkscope schedtrace` against GODEBUG=schedtrace of the same process, and `--go-uprobes`
//! park times against the target's own clock.
//!
//! The suite (`cargo xtask test`) runs a representative part: every release's plain build
//! (DWARF) and stripped (`-s -w`) build, and the `-w` build (layout table) of three releases. `cargo xtask test-go-matrix`
//! builds every variant and runs everything: PARKSCOPE_GO_MATRIX=full widens the `-w` test to
//! every release and `--include-ignored` adds the variants only that command builds. A missing
//! build fails the test: every release is tested from a real build.

use std::path::Path;

use parkscope_tests::{
    GoTarget,
    go_checks::{
        check_cgo_calls, check_go_uprobes_time_a_park, check_goroutines_match_dump,
        check_schedtrace_matches_godebug, snapshot,
    },
    workspace_root,
};

/// The releases with a layout table, oldest first (`go1.19`, `go1.21`, ...): the releases
/// parkscope claims to read, so the ones this matrix must cover.
fn releases() -> Vec<String> {
    let dir = workspace_root().join("probes/src/go/layouts");
    let mut minors: Vec<u32> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("go1.")?.strip_suffix(".txt")?.parse().ok()
        })
        .collect();
    minors.sort_unstable();
    assert!(minors.len() >= 8, "layout tables in {}: {minors:?}", dir.display());
    minors.into_iter().map(|m| format!("go1.{m}")).collect()
}

fn full() -> bool {
    std::env::var("PARKSCOPE_GO_MATRIX").is_ok_and(|v| v == "full")
}

/// The `-w` builds the suite checks: the oldest release, one of the middle, and the first
/// with the 1.26 goroutine states (`_Gleaked`, `_Gdeadextra`).
const SUITE_TABLE_RELEASES: &[&str] = &["go1.21", "go1.24", "go1.26"];

/// What the runtime view says its layout came from, for a running `bin`.
fn layout_source(bin: &str) -> String {
    let t = GoTarget::start(bin, &["-n", "1"], &[], false);
    let snap = snapshot(t.pid, &["--window", "0", "--no-stacks"]);
    snap["runtime"]["layout"].as_str().unwrap_or_else(|| panic!("{bin}: {:#}", snap["runtime"])).to_owned()
}

fn check_parked(bin: &str) {
    eprintln!("matrix: {bin}");
    check_goroutines_match_dump(bin);
    check_schedtrace_matches_godebug(bin);
}

fn check_parkedcgo(bin: &str, c_symbols: bool) {
    eprintln!("matrix: {bin}");
    check_cgo_calls(bin, 2, c_symbols);
    check_schedtrace_matches_godebug(bin);
}

/// A build with symbols: the C function's name comes from its symbol table.
fn has_symtab(bin: &str) -> bool {
    let path = workspace_root().join("examples/bin").join(bin);
    let out = std::process::Command::new("readelf").arg("-S").arg(Path::new(&path)).output().unwrap();
    assert!(out.status.success(), "readelf -S {}", path.display());
    String::from_utf8_lossy(&out.stdout).contains(".symtab")
}

#[test]
fn every_release_plain_build() {
    for r in releases() {
        let bin = format!("parked-{r}");
        check_parked(&bin);
        assert_eq!(layout_source(&bin), "dwarf", "{bin}");
    }
}

#[test]
fn dwarf_less_builds_read_through_the_tables() {
    let all = releases();
    let picked: Vec<&String> =
        all.iter().filter(|r| full() || SUITE_TABLE_RELEASES.contains(&r.as_str())).collect();
    assert!(!picked.is_empty());
    for r in picked {
        let bin = format!("parked-{r}-w");
        check_parked(&bin);
        assert_eq!(layout_source(&bin), format!("table:{r}"), "{bin}");
    }
}

#[test]
#[ignore = "full matrix: cargo xtask test-go-matrix"]
fn position_independent_builds() {
    for r in releases() {
        check_parked(&format!("parked-{r}-pie"));
        check_parkedcgo(&format!("parkedcgo-{r}-pie"), true);
    }
}

/// examples/go/parked with CGO_ENABLED=1: dynamically linked, the cgo net resolver; the plain
/// build is CGO_ENABLED=0 (static).
#[test]
#[ignore = "full matrix: cargo xtask test-go-matrix"]
fn cgo_enabled_builds() {
    for r in releases() {
        check_parked(&format!("parked-{r}-cgo"));
    }
}

#[test]
#[ignore = "full matrix: cargo xtask test-go-matrix"]
fn cgo_calls_plain_and_dwarf_less() {
    for r in releases() {
        check_parkedcgo(&format!("parkedcgo-{r}"), true);
        let w = format!("parkedcgo-{r}-w");
        check_parkedcgo(&w, true);
        assert_eq!(layout_source(&w), format!("table:{r}"), "{w}");
    }
}

/// `-s -w`: no DWARF, no symbol table: how distributions and container images ship Go
/// programs, so the suite reads the stripped build of every release (the runtime's variables
/// located in its code, the layout from its table).
#[test]
fn stripped_builds() {
    for r in releases() {
        let parked = format!("parked-{r}-sw");
        assert!(!has_symtab(&parked), "{parked} has a symbol table");
        check_parked(&parked);
    }
}

/// `-s -w` cgo builds (externally linked): the full matrix only.
#[test]
#[ignore = "full matrix: cargo xtask test-go-matrix"]
fn stripped_cgo_builds() {
    for r in releases() {
        let cgo = format!("parkedcgo-{r}-sw");
        assert!(!has_symtab(&cgo), "{cgo} has a symbol table");
        check_parkedcgo(&cgo, false);
    }
}

/// `--go-uprobes` (a uprobe on casgstatus placed from each release's own code, the g offsets
/// from its layout) times a park exactly, in plain, table-read and position-independent builds.
#[test]
#[ignore = "full matrix: cargo xtask test-go-matrix"]
fn go_uprobes_every_release() {
    for r in releases() {
        for suffix in ["", "-w", "-pie"] {
            let bin = format!("parked-{r}{suffix}");
            eprintln!("matrix: {bin} --go-uprobes");
            check_go_uprobes_time_a_park(&bin);
        }
    }
}
