//! The pclntab reader (probes/src/go/pclntab.rs) against ground truth it did not compute, on
//! real Go 1.19 and Go 1.27 builds: `go tool addr2line` of the same release, and the binaries'
//! own DWARF line tables (through blazesym, inlined frames included), for addresses sampled
//! across the whole text. Builds without DWARF (`-w`) or symbols (`-s -w`), cgo builds (linked
//! by the system linker) and PIE builds (made here) are covered; so is the live path: the
//! `Symbolizer` naming addresses of running PIE and non-PIE processes.
//! Needs the example builds (`cargo xtask examples`) and both Go toolchains (`cargo xtask setup`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use parkscope_probes::go::{GoExecutable, GoLocation, PclntabVersion};
use parkscope_probes::stacks::Symbolizer;

const RELEASES: [&str; 2] = ["go1.19", "go1.27"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn example(name: &str) -> PathBuf {
    let p = root().join("examples/bin").join(name);
    assert!(p.is_file(), "{} missing: run `cargo xtask examples`", p.display());
    p
}

/// The `go` of a release, as `cargo xtask setup` installs it.
fn go(release: &str) -> PathBuf {
    let found = match release {
        "go1.19" => Some(PathBuf::from("/usr/lib/go-1.19/bin/go")),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            let tools = std::env::var_os("PARKSCOPE_TOOLS")
                .map_or_else(|| Path::new(&home).join(".cache/parkscope"), PathBuf::from);
            std::fs::read_dir(tools.join("go-venv/lib"))
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("site-packages/go/bin/go"))
                .find(|p| p.is_file())
        }
    };
    found
        .filter(|p| p.is_file())
        .unwrap_or_else(|| panic!("{release} toolchain missing: run `cargo xtask setup`"))
}

fn open(bin: &Path) -> GoExecutable {
    GoExecutable::open(bin).unwrap().unwrap_or_else(|| panic!("{} has no pclntab", bin.display()))
}

/// The entry, the end of the function's code (where the line table ends), and a few
/// pseudo-random pcs inside, for every `stride`-th function.
fn samples(exe: &GoExecutable, stride: usize) -> Vec<u64> {
    let t = &exe.pclntab;
    let end = t.text_range().unwrap().end;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    for i in (0..t.len()).step_by(stride) {
        let (entry, _) = t.function(i).unwrap();
        let next = t.function(i + 1).map_or(end, |(e, _)| e);
        out.push(entry);
        for _ in 0..4 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            out.push(entry + (seed >> 33) % (next - entry).max(1));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// (function, "file:line") for each of `addrs` from `go tool addr2line`, which reads the
/// pclntab with the Go tree's own debug/gosym.
fn addr2line(release: &str, bin: &Path, addrs: &[u64]) -> Vec<(String, String)> {
    let mut child = Command::new(go(release))
        .args(["tool", "addr2line"])
        .arg(bin)
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: String = addrs.iter().map(|a| format!("{a:#x}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "go tool addr2line failed on {}", bin.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * addrs.len());
    lines.chunks(2).map(|c| (c[0].to_owned(), c[1].to_owned())).collect()
}

/// What the DWARF says about a link-time address: (physical function, full path of the
/// innermost location's file, its line, whether the address is in inlined code).
type DwarfLoc = (String, String, u32, bool);

fn dwarf(bin: &Path, addrs: &[u64]) -> Vec<Option<DwarfLoc>> {
    let blaze = Blaze::builder().enable_code_info(true).enable_inlined_fns(true).build();
    let src = Source::Elf(Elf::new(bin));
    let results = blaze.symbolize(&src, Input::VirtOffset(addrs)).unwrap();
    results
        .into_iter()
        .map(|r| {
            let Symbolized::Sym(sym) = r else { return None };
            let ci = sym.inlined.last().and_then(|f| f.code_info.as_ref()).or(sym.code_info.as_deref())?;
            let path = ci.to_path().to_string_lossy().into_owned();
            Some((sym.name.into_owned(), path, ci.line?, !sym.inlined.is_empty()))
        })
        .collect()
}

/// A name as Go 1.18 and 1.19 store it in the pclntab: everything within the outermost
/// brackets as `[...]`.
fn abbreviated(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(i), Some(j)) if j > i => format!("{}[...]{}", &name[..i], &name[j + 1..]),
        _ => name.to_owned(),
    }
}

/// Whether `ours` names the function `truth` names: equal, or both abbreviated alike where one
/// side only has the abbreviated name.
fn same_function(ours: &str, truth: &str) -> bool {
    ours == truth
        || (ours.contains("[...]") || truth.contains("[...]")) && abbreviated(ours) == abbreviated(truth)
}

fn file_line(loc: &GoLocation<'_>) -> String {
    format!("{}:{}", loc.file.unwrap_or("?"), loc.line.map_or(0, i64::from))
}

/// Every sampled address of `bin` named by the pclntab must be named identically (function,
/// file, line) by `go tool addr2line`; returns how many were compared.
fn check_addr2line(release: &str, bin: &Path, exe: &GoExecutable, addrs: &[u64]) -> usize {
    let truth = addr2line(release, bin, addrs);
    let mut compared = 0;
    let mut wrong = Vec::new();
    for (&a, (func, fl)) in addrs.iter().zip(&truth) {
        let Some(loc) = exe.lookup(a) else { continue };
        compared += 1;
        if !same_function(loc.function, func) || file_line(&loc) != *fl {
            wrong.push(format!(
                "{a:#x}: pclntab {} {} / addr2line {func} {fl}",
                loc.function,
                file_line(&loc)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}: {} of {compared} differ, e.g.\n{}",
        bin.display(),
        wrong.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    compared
}

/// Whether link-time address `vaddr` of `bin` lies in a NOP instruction. The compiler marks
/// where inlined code begins with a NOP carrying the call's line, and aligns loops with NOPs; the
/// pclntab gives such a NOP the line it was generated for, while Go's DWARF may leave it on the
/// previous line. No stack ever points into one.
fn in_nop(bin: &Path, vaddr: u64) -> bool {
    use object::{Object, ObjectSection};
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let bytes = text.data().unwrap();
    let at = (vaddr - text.address()) as usize;
    // Length of the NOP starting at `i`, if one does: 0x66 prefixes, then 0x90 or 0f 1f /0.
    let nop_len = |i: usize| -> Option<usize> {
        let prefixes = bytes.get(i..)?.iter().take_while(|&&b| b == 0x66).count();
        let op = i + prefixes;
        match bytes.get(op..op + 3)? {
            [0x90, ..] => Some(prefixes + 1),
            [0x0f, 0x1f, modrm] => {
                let (md, rm) = (modrm >> 6, modrm & 7);
                let sib = usize::from(md != 3 && rm == 4);
                let disp = match (md, rm) {
                    (0, 5) | (2, _) => 4,
                    (1, _) => 1,
                    _ => 0,
                };
                Some(prefixes + 3 + sib + disp)
            }
            _ => None,
        }
    };
    (0..15).filter(|&k| k <= at).any(|k| nop_len(at - k).is_some_and(|len| len > k))
}

/// Like [`check_addr2line`] against the DWARF of `dwarf_bin` (the same code with DWARF kept).
/// At most `max_missing` of the addresses may lack DWARF line information: Go 1.27 writes no
/// line table for a few packages (internal/abi among them, ~4% of the text). Returns (compared,
/// in inlined code).
fn check_dwarf(dwarf_bin: &Path, exe: &GoExecutable, addrs: &[u64], max_missing: f64) -> (usize, usize) {
    let truth = dwarf(dwarf_bin, addrs);
    let (mut compared, mut inlined) = (0, 0);
    let mut wrong = Vec::new();
    let mut missing = Vec::new();
    for (&a, d) in addrs.iter().zip(&truth) {
        let Some(loc) = exe.lookup(a) else { continue };
        let Some((func, file, line, in_inlined)) = d else {
            missing.push(format!("{a:#x} {}", loc.function));
            continue;
        };
        compared += 1;
        inlined += usize::from(*in_inlined);
        // Go's DWARF names generated code's file `<autogenerated>` in compilation directory `.`.
        let file = file.strip_prefix("./").unwrap_or(file);
        let line_differs = loc.line != Some(*line) && !in_nop(dwarf_bin, a);
        if !same_function(loc.function, func) || loc.file != Some(file) || line_differs {
            wrong.push(format!(
                "{a:#x}: pclntab {} {} / DWARF {func} {file}:{line}{}",
                loc.function,
                file_line(&loc),
                if *in_inlined { " (inlined)" } else { "" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}: {} of {compared} differ, e.g.\n{}",
        dwarf_bin.display(),
        wrong.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    // Addresses DWARF cannot name (assembly without line info would be one cause) must be rare.
    assert!(
        (missing.len() as f64) < max_missing * compared as f64,
        "{}: DWARF named none of {} addresses, e.g. {:?}",
        dwarf_bin.display(),
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    (compared, inlined)
}

#[test]
fn plain_builds_match_addr2line_and_dwarf() {
    for release in RELEASES {
        for prog in ["parked", "httpserver"] {
            let bin = example(&format!("{prog}-{release}"));
            let exe = open(&bin);
            let expected = if release == "go1.19" { PclntabVersion::Go118 } else { PclntabVersion::Go120 };
            assert_eq!(exe.pclntab.version(), expected);
            let addrs = samples(&exe, 1);
            let n = check_addr2line(release, &bin, &exe, &addrs);
            let (d, inlined) = check_dwarf(&bin, &exe, &addrs, 0.1);
            // The rest is alignment padding after functions' code, which no function owns.
            assert!(n * 10 > addrs.len() * 8, "{}: pclntab named only {n} of {}", bin.display(), addrs.len());
            assert!(inlined > 500, "{}: only {inlined} sampled addresses in inlined code", bin.display());
            eprintln!(
                "{}: {n} addresses equal to addr2line, {d} to DWARF ({inlined} inlined)",
                bin.display()
            );
        }
    }
}

#[test]
fn stripped_builds_match_addr2line_and_the_dwarf_of_the_plain_build() {
    for release in RELEASES {
        let plain = example(&format!("parked-{release}"));
        let plain_exe = open(&plain);
        for suffix in ["-w", "-sw"] {
            let bin = example(&format!("parked-{release}{suffix}"));
            let exe = open(&bin);
            let addrs = samples(&exe, 1);
            let n = check_addr2line(release, &bin, &exe, &addrs);
            // Only the link flags differ, so the code (and so the text) is the plain build's.
            assert_eq!(exe.pclntab.text_range(), plain_exe.pclntab.text_range(), "{}", bin.display());
            let (d, _) = check_dwarf(&plain, &exe, &addrs, 0.1);
            eprintln!("{}: {n} addresses equal to addr2line, {d} to the plain build's DWARF", bin.display());
        }
    }
}

#[test]
fn cgo_builds_match_dwarf() {
    // The system linker places the Go text after the C start-up code, so the text start must
    // come from the binary (go tool addr2line assumes the start of .text and is not ground
    // truth here).
    for release in RELEASES {
        let bin = example(&format!("parkedcgo-{release}"));
        let exe = open(&bin);
        let addrs = samples(&exe, 1);
        let (d, inlined) = check_dwarf(&bin, &exe, &addrs, 0.1);
        assert!(d * 10 > addrs.len() * 8, "{}: only {d} of {} compared", bin.display(), addrs.len());
        // Without its symbol table, the text start must come from the runtime's moduledata.
        // `strip` keeps the layout (a `-s -w` link moves the text), so the answers must not change.
        let stripped = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("parkedcgo-{release}-stripped"));
        let status =
            Command::new("strip").arg("--strip-all").arg("-o").arg(&stripped).arg(&bin).status().unwrap();
        assert!(status.success(), "strip failed");
        let stripped_exe = open(&stripped);
        assert_eq!(stripped_exe.pclntab.text_range(), exe.pclntab.text_range(), "{}", stripped.display());
        for &a in &addrs {
            let (ours, plain) = (stripped_exe.lookup(a), exe.lookup(a));
            let same = match (&ours, &plain) {
                (Some(o), Some(p)) => {
                    same_function(o.function, p.function)
                        && (o.entry, o.file, o.line) == (p.entry, p.file, p.line)
                }
                (o, p) => o == p,
            };
            assert!(same, "{} at {a:#x}: {ours:?} / {plain:?}", stripped.display());
        }
        eprintln!("{}: {d} addresses equal to DWARF ({inlined} inlined); same when stripped", bin.display());
    }
}

/// examples/go/`prog` built by `release` into the test-binary build directory.
fn go_build(release: &str, prog: &str, suffix: &str, flags: &[&str], ldflags: &str, cgo: bool) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pclntab");
    let out = out_dir.join(format!("{prog}-{release}{suffix}"));
    let status = Command::new(go(release))
        .arg("build")
        .args(flags)
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(root().join("examples/go").join(prog))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOCACHE", out_dir.join(format!("gocache-{release}")))
        .status()
        .unwrap();
    assert!(status.success(), "go build {flags:?} -ldflags={ldflags} failed for {prog} with {release}");
    out
}

/// examples/go/parked built as a position-independent executable by `release`.
fn pie_build(release: &str, suffix: &str, ldflags: &str) -> PathBuf {
    go_build(release, "parked", &format!("-pie{suffix}"), &["-buildmode=pie"], ldflags, false)
}

#[test]
fn pie_builds_match_addr2line_and_dwarf() {
    for release in RELEASES {
        let bin = pie_build(release, "", "");
        let exe = open(&bin);
        let addrs = samples(&exe, 1);
        // Go 1.19's addr2line takes the text start from the pclntab header, which a PIE leaves
        // to a relocation (zero in the file); Go 1.27's takes the start of .text.
        let n = check_addr2line("go1.27", &bin, &exe, &addrs);
        let (d, _) = check_dwarf(&bin, &exe, &addrs, 0.1);
        let stripped = pie_build(release, "-sw", "-s -w");
        let stripped_exe = open(&stripped);
        assert_eq!(stripped_exe.pclntab.text_range(), exe.pclntab.text_range());
        let s = check_addr2line("go1.27", &stripped, &stripped_exe, &samples(&stripped_exe, 1));
        eprintln!("{}: {n} equal to addr2line, {d} to DWARF; -s -w: {s} to addr2line", bin.display());
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &Path) -> Running {
    let mut child = Command::new(bin).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("\"ready\""));
    assert!(ready, "{} never said it was ready", bin.display());
    running
}

/// Link-time address to run-time address of the main executable of `pid`: the start of its
/// mapping at file offset 0 minus the page of its first loadable segment (0 for a PIE).
fn slide(pid: u32, bin: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let canonical = bin.canonicalize().unwrap();
    let line = maps
        .lines()
        .find(|l| {
            l.ends_with(&*canonical.to_string_lossy()) && l.split_whitespace().nth(2) == Some("00000000")
        })
        .unwrap_or_else(|| panic!("no mapping of {} in\n{maps}", canonical.display()));
    let start = u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    use object::{Object, ObjectSegment};
    let first = file.segments().map(|s| s.address()).min().unwrap();
    start - (first & !0xfff)
}

#[test]
fn symbolizer_names_live_go_processes_from_the_pclntab() {
    let bins = [
        example("parked-go1.27"),
        example("parked-go1.19-sw"),
        pie_build("go1.27", "", ""),
        pie_build("go1.19", "-sw", "-s -w"),
    ];
    for bin in bins {
        let exe = open(&bin);
        let target = start(&bin);
        let pid = target.0.id();
        let slide = slide(pid, &bin);
        let mains = (0..exe.pclntab.len())
            .filter_map(|i| exe.pclntab.function(i))
            .filter(|(_, name)| name.starts_with("main."))
            .map(|(entry, _)| entry);
        let vaddrs: Vec<u64> =
            samples(&exe, 7).into_iter().chain(mains).filter(|&a| exe.lookup(a).is_some()).collect();
        let live: Vec<u64> = vaddrs.iter().map(|a| a + slide).collect();
        let frames = Symbolizer::new().user_batch(pid, &live, &vec![false; live.len()]);
        let mut by_function = BTreeMap::new();
        for ((&vaddr, &addr), frame) in vaddrs.iter().zip(&live).zip(&frames) {
            let loc = exe.lookup(vaddr).unwrap();
            let file = loc.file.unwrap().rsplit('/').next().unwrap();
            let expected = format!(
                "{}+{:#x} ({}) at {file}:{}",
                loc.function,
                vaddr - loc.entry,
                bin.file_name().unwrap().to_string_lossy(),
                loc.line.unwrap()
            );
            assert_eq!(frame.addr, addr);
            assert_eq!(frame.to_string(), expected, "{}", bin.display());
            *by_function.entry(loc.function.to_owned()).or_insert(0) += 1;
        }
        assert!(by_function.contains_key("main.main"), "{}", bin.display());
        eprintln!(
            "{}: {} live addresses (slide {slide:#x}) named as the pclntab says",
            bin.display(),
            live.len()
        );
    }
}
