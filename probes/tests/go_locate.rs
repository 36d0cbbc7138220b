//! Locating the runtime's globals without a symbol table (probes/src/go/locate.rs) must give
//! what the symbol table says: for every Go release installed, examples/go/parked and
//! examples/go/parkedcgo are built with `-ldflags=-w` (symbol table kept: the ground truth) and
//! `-s -w` (none), as executables and PIEs, and the located addresses of every global, the
//! length of runtime.waitReasonStrings and the file offsets of the uprobe functions must equal
//! the `-w` build's .symtab, located both in the `-w` binary (its symtab unused) and in the
//! `-s -w` one.
//!
//! The builds go to target/go-builds/ and are remade only when their sources are newer, so a
//! run after the first takes seconds. A release that is not installed is skipped, except in CI
//! (CI=true), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use object::{Object, ObjectSection, ObjectSymbol};
use parkscope_probes::go::{GLOBALS, GoBinary, LayoutSource, UPROBE_FUNCTIONS, layout, locate};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tools_dir() -> PathBuf {
    std::env::var_os("PARKSCOPE_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/parkscope"),
        PathBuf::from,
    )
}

/// The go command of each release this test covers, where installed (same places as
/// `cargo xtask setup` installs them).
fn releases() -> Vec<(String, PathBuf)> {
    let tools = tools_dir();
    let venv_go = |venv: PathBuf| -> Option<PathBuf> {
        std::fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/go/bin/go"))
            .find(|p| p.is_file())
    };
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for minor in [19, 21, 22, 23, 24, 25, 26, 27] {
        let tag = format!("go1.{minor}");
        let go = match minor {
            19 => Some(PathBuf::from("/usr/lib/go-1.19/bin/go")).filter(|p| p.is_file()),
            27 => venv_go(tools.join("go-venv")),
            _ => venv_go(tools.join("go").join(&tag)),
        };
        match go {
            Some(go) => out.push((tag, go)),
            None => missing.push(tag),
        }
    }
    if !missing.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "Go releases not installed: {missing:?}");
        eprintln!("skipping Go releases not installed: {missing:?} (run `cargo xtask setup`)");
    }
    out
}

fn newer_than(out: &Path, sources: &[PathBuf]) -> bool {
    let Ok(t) = out.metadata().and_then(|m| m.modified()) else { return false };
    sources.iter().all(|s| s.metadata().and_then(|m| m.modified()).is_ok_and(|st| st <= t))
}

/// Variants built of each program: (suffix, ldflags, PIE).
const VARIANTS: &[(&str, &str, bool)] =
    &[("w", "-w", false), ("sw", "-s -w", false), ("pie-w", "-w", true), ("pie-sw", "-s -w", true)];

/// target/go-builds/<prog>-<tag>-<variant>, built if missing or stale.
fn build(go: &Path, tag: &str, prog: &str, variant: &(&str, &str, bool)) -> PathBuf {
    let (suffix, ldflags, pie) = *variant;
    let dir = root().join("examples/go").join(prog);
    let out_dir = root().join("target/go-builds");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{prog}-{tag}-{suffix}"));
    let sources: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    if newer_than(&out, &sources) {
        return out;
    }
    let mut cmd = Command::new(go);
    cmd.arg("build");
    if pie {
        cmd.arg("-buildmode=pie");
    }
    let status = cmd
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&dir)
        .env("CGO_ENABLED", if prog == "parkedcgo" { "1" } else { "0" })
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", tools_dir().join("gocache").join(tag))
        .status()
        .unwrap();
    assert!(status.success(), "building {}", out.display());
    out
}

/// Builds every program, release and variant once per test process, two at a time (the
/// first run in a fresh checkout links 64 binaries); later calls to [`build`] find them fresh.
fn build_all() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let mut jobs = Vec::new();
        for (tag, go) in releases() {
            for prog in ["parked", "parkedcgo"] {
                for variant in VARIANTS {
                    jobs.push((go.clone(), tag.clone(), prog, variant));
                }
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while let Some((go, tag, prog, variant)) =
                        jobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        build(go, tag, prog, variant);
                    }
                });
            }
        });
    });
}

/// What the symbol table of `with_symtab` says: globals (address, size) and uprobe functions
/// (address, file offset), translated into `target`'s addresses: the `-s -w` build of the same
/// program may have its sections a few bytes further on (the recorded ldflags are longer), so
/// each symbol keeps its offset within its section, whose size must be the same in both.
fn from_symtab(with_symtab: &[u8], target: &[u8]) -> locate::Located {
    let file = object::File::parse(with_symtab).unwrap();
    let other = object::File::parse(target).unwrap();
    // (address, file offset) in `target` of the byte at `addr` of `section` in `file`.
    let translate = |section: &object::Section<'_, '_>, addr: u64| -> (u64, u64) {
        let name = section.name().unwrap();
        let there = other.section_by_name(name).unwrap_or_else(|| panic!("no {name} in the other build"));
        assert_eq!(there.size(), section.size(), "{name} differs in size between the builds");
        let rel = addr - section.address();
        (there.address() + rel, there.file_range().map_or(0, |(off, _)| off + rel))
    };
    let mut truth = locate::Located::default();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(index) = sym.section_index() else { continue };
        let section = file.section_by_index(index).unwrap();
        if let Some(g) = GLOBALS.iter().find(|g| **g == name) {
            let size = if *g == "runtime.sched" { 0 } else { sym.size() };
            truth.globals.insert(g, (translate(&section, sym.address()).0, size));
        } else if let Some(f) = UPROBE_FUNCTIONS.iter().find(|f| **f == name) {
            truth.functions.insert(f, translate(&section, sym.address()));
        }
    }
    assert_eq!(truth.globals.len(), GLOBALS.len(), "the -w build's symbol table lacks a global");
    assert_eq!(truth.functions.len(), UPROBE_FUNCTIONS.len());
    truth
}

fn has_symtab(data: &[u8]) -> bool {
    object::File::parse(data).unwrap().section_by_name(".symtab").is_some()
}

#[test]
fn located_globals_equal_the_symbol_table_for_every_release() {
    build_all();
    let mut checked = 0;
    for (tag, go) in releases() {
        for prog in ["parked", "parkedcgo"] {
            for pair in VARIANTS.chunks(2) {
                let with_symtab = build(&go, &tag, prog, &pair[0]);
                let stripped = build(&go, &tag, prog, &pair[1]);
                let w = std::fs::read(&with_symtab).unwrap();
                let sw = std::fs::read(&stripped).unwrap();
                assert!(
                    has_symtab(&w) && !has_symtab(&sw),
                    "{} / {}",
                    with_symtab.display(),
                    stripped.display()
                );
                for (path, data) in [(&with_symtab, &w), (&stripped, &sw)] {
                    let truth = from_symtab(&w, data);
                    let t = Instant::now();
                    let located = locate::globals(data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let took = t.elapsed();
                    for g in GLOBALS {
                        assert_eq!(
                            located.globals.get(g),
                            truth.globals.get(g),
                            "{g} in {} (located vs symtab)",
                            path.display()
                        );
                    }
                    assert_eq!(located.functions, truth.functions, "uprobe functions in {}", path.display());
                    eprintln!("{}: located in {took:?}", path.display());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0 || std::env::var("CI").as_deref() != Ok("true"));
}

/// `GoBinary::open` on a stripped build: the globals come from the code (then from the cache),
/// the layout from the release's table, the uprobe functions from the pclntab.
#[test]
fn stripped_builds_open_with_located_globals_and_cache_them() {
    build_all();
    let cache = std::env::temp_dir().join(format!("parkscope-locate-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // SAFETY: set before any thread of this test reads the environment; the other test of this
    // file does not read PARKSCOPE_CACHE.
    unsafe { std::env::set_var("PARKSCOPE_CACHE", &cache) };
    for (tag, go) in releases() {
        if !layout::table_releases().any(|r| r == tag) {
            continue;
        }
        for pair in VARIANTS.chunks(2) {
            let w = build(&go, &tag, "parked", &pair[0]);
            let sw = build(&go, &tag, "parked", &pair[1]);
            let truth = from_symtab(&std::fs::read(&w).unwrap(), &std::fs::read(&sw).unwrap());
            let t = Instant::now();
            let cold = GoBinary::open(&sw, "parked-sw").unwrap();
            let cold_took = t.elapsed();
            let t = Instant::now();
            let cached = GoBinary::open(&sw, "parked-sw").unwrap();
            let cached_took = t.elapsed();
            eprintln!("{}: open {cold_took:?} cold, {cached_took:?} cached", sw.display());
            for b in [&cold, &cached] {
                assert_eq!(b.layout.source, LayoutSource::Table(tag.clone()));
                for g in GLOBALS {
                    assert_eq!(b.globals.get(g), truth.globals.get(g), "{g} of {}", sw.display());
                }
                for f in UPROBE_FUNCTIONS {
                    let code = b.function(f).unwrap();
                    assert_eq!(Some(&(code.addr, code.file_offset)), truth.functions.get(f));
                    assert_eq!(code.head.len(), 48);
                }
            }
        }
    }
    let entries = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert!(entries > 0 || releases().is_empty(), "nothing was cached");
    cache_entries_of_another_file_are_never_used(&cache);
    let _ = std::fs::remove_dir_all(&cache);
}

/// The target writes its own binary, build id included: a copy of a real binary (same build id,
/// another file) whose cache entry says something else must not change what the real binary is
/// read with. Here the copy's entry is rewritten with wrong addresses, as a hostile binary's
/// own facts would be.
fn cache_entries_of_another_file_are_never_used(cache: &Path) {
    let Some((tag, go)) = releases().into_iter().last() else { return };
    let w = build(&go, &tag, "parked", &VARIANTS[0]);
    let sw = build(&go, &tag, "parked", &VARIANTS[1]);
    let truth = from_symtab(&std::fs::read(&w).unwrap(), &std::fs::read(&sw).unwrap());
    let copy = cache.join("copy-of-parked-sw");
    std::fs::copy(&sw, &copy).unwrap();
    let entries = cache.join("go-layouts");
    let before: std::collections::BTreeSet<_> =
        std::fs::read_dir(&entries).unwrap().map(|e| e.unwrap().path()).collect();
    GoBinary::open(&copy, "copy").unwrap();
    let planted: Vec<PathBuf> = std::fs::read_dir(&entries)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !before.contains(p) && p.extension().is_some_and(|x| x == "txt"))
        .collect();
    assert_eq!(planted.len(), 1, "the copy has an entry of its own: {planted:?}");
    let text = std::fs::read_to_string(&planted[0]).unwrap();
    // `global NAME ADDR SIZE` lines get an address of our choosing.
    let poisoned: String = text
        .lines()
        .map(|l| match l.split_ascii_whitespace().collect::<Vec<_>>().as_slice() {
            ["global", name, _, _] => format!("global {name} 0x1000 0x8\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(poisoned, text);
    std::fs::write(&planted[0], poisoned).unwrap();
    let real = GoBinary::open(&sw, "parked-sw").unwrap();
    for g in GLOBALS {
        assert_eq!(
            real.globals.get(g),
            truth.globals.get(g),
            "{g} of {} after a copy's entry was poisoned",
            sw.display()
        );
    }
    let _ = std::fs::remove_file(&copy);
}

/// Not a Go binary, or Go with the code a rule reads destroyed: specific errors, no panic.
#[test]
fn damaged_binaries_give_errors_naming_what_was_not_found() {
    build_all();
    let Some((tag, go)) = releases().into_iter().last() else { return };
    let sw = std::fs::read(build(&go, &tag, "parked", &VARIANTS[1])).unwrap();
    let err = locate::globals(&std::fs::read("/proc/self/exe").unwrap()).unwrap_err();
    assert!(matches!(err, locate::LocateError::NoPclntab), "{err}");
    // Overwrite runtime.netpollinit's code with int3: epfd can no longer be found.
    let exe = parkscope_probes::go::GoExecutable::from_bytes(&sw, "sw").unwrap().unwrap();
    let range = exe.pclntab.functions_named(&["runtime.netpollinit"])[0].clone().unwrap();
    let off = exe.file_offset_of(range.start).unwrap() as usize;
    let mut damaged = sw.clone();
    damaged[off..off + (range.end - range.start) as usize].fill(0xcc);
    let err = locate::globals(&damaged).unwrap_err();
    assert!(err.to_string().contains("runtime.epfd"), "{err}");
    // Truncations anywhere never panic.
    for cut in [0, 64, sw.len() / 3, sw.len() / 2, sw.len() - 1] {
        let _ = locate::globals(&sw[..cut]);
    }
}
