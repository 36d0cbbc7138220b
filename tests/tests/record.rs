//! `parkscope record` and the `--from` replays against real targets: a replayed snapshot is the
//! live one (taken by a second parkscope at the same time) in every fact that does not move; a
//! SIGKILLed recorder leaves a file that replays up to its last chunk; a truncated or corrupted
//! file is a clean error (exit 9) or a shorter replay, never a crash.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use parkscope_tests::{Blocker, GoTarget, parkscope_bin, run_parkscope, transient_ours};
use serde_json::Value;

const INTERVAL_NS: u64 = 1_000_000_000;
const BAD_RECORDING: i32 = 9;

fn start_record(pid: u32, out: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(parkscope_bin())
        .args(["record", "-p", &pid.to_string(), "-o", out.to_str().unwrap(), "--interval", "1s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting parkscope record")
}

fn wait_ok(child: Child) -> String {
    let out = child.wait_with_output().expect("waiting for parkscope record");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "parkscope record failed:\n{stderr}");
    stderr
}

fn by_key<'a>(view: &'a Value, list: &str, key: &str) -> BTreeMap<u64, &'a Value> {
    view[list].as_array().expect(list).iter().map(|e| (e[key].as_u64().expect(key), e)).collect()
}

fn time_ns(syscall: &Value) -> Option<u64> {
    syscall["blocked_ns"].as_u64().or_else(|| syscall["blocked_at_least_ns"].as_u64())
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The live view and the replayed one agree on what does not move between two instants up to
/// one interval apart.
fn assert_same_view(live: &Value, replay: &Value, what: &str) {
    let ctx = || format!("{what}\n--- live ---\n{live:#}\n--- replay ---\n{replay:#}");
    assert_eq!(keys(live), keys(replay), "top-level fields: {}", ctx());
    let lag = live["taken_at"]["monotonic_ns"].as_u64().unwrap() as i64
        - replay["taken_at"]["monotonic_ns"].as_u64().unwrap() as i64;
    // The replayed snapshot is the last one recorded at or before the live one: nominally up
    // to one interval earlier, more when a view took long (unoptimised builds on a loaded
    // machine; the recorder keeps to multiples of the interval but never skips a view).
    assert!(
        (0..=2 * INTERVAL_NS as i64 + 500_000_000).contains(&lag),
        "replayed snapshot {lag} ns before the live one: {}",
        ctx()
    );
    // Times grow by the lag between the two views (lower bounds may be tighter on one side).
    let slack = lag.unsigned_abs() + 250_000_000;
    let (lt, rt) = (by_key(live, "threads", "tid"), by_key(replay, "threads", "tid"));
    assert_eq!(lt.keys().collect::<Vec<_>>(), rt.keys().collect::<Vec<_>>(), "threads: {}", ctx());
    let mut blocked = 0;
    for (tid, l) in &lt {
        let r = rt[tid];
        assert_eq!(keys(l), keys(r), "thread {tid} fields");
        assert_eq!(l["name"], r["name"], "thread {tid} name");
        // A thread on a CPU moves between running and runnable; blocked ones stay put.
        let state = l["state"].as_str().unwrap();
        if !matches!(state, "sleeping" | "disk_sleep") {
            continue;
        }
        blocked += 1;
        assert_eq!(l["state"], r["state"], "thread {tid} state: {}", ctx());
        let (ls, rs) = (&l["syscall"], &r["syscall"]);
        for field in ["nr", "name", "class", "fd", "fd_desc", "futex_addr"] {
            assert_eq!(ls[field], rs[field], "thread {tid} syscall.{field}: {}", ctx());
        }
        assert_eq!(l["role"], r["role"], "thread {tid} role");
        assert_eq!(l["wchan"], r["wchan"], "thread {tid} wchan");
        if let (Some(lt), Some(rt)) = (time_ns(ls), time_ns(rs)) {
            let d = lt as i64 - rt as i64;
            assert!(
                d.unsigned_abs() <= slack,
                "thread {tid}: live {lt} ns vs replay {rt} ns (lag {lag} ns): {}",
                ctx()
            );
        } else {
            assert_eq!(time_ns(ls).is_some(), time_ns(rs).is_some(), "thread {tid}: a time on one side only");
        }
        assert_eq!(l["kernel_stack"], r["kernel_stack"], "thread {tid} kernel stack");
    }
    assert!(blocked >= 2, "the target has blocked threads: {}", ctx());
    assert_eq!(live["runtime"].is_null(), replay["runtime"].is_null(), "runtime");
    let (lg, rg) = (by_key(live, "goroutines", "goid"), by_key(replay, "goroutines", "goid"));
    let mut waiting = 0;
    for (goid, l) in &lg {
        if transient_ours(l) || l["status"] != "waiting" {
            continue;
        }
        let r = rg.get(goid).unwrap_or_else(|| panic!("goroutine {goid} missing from the replay: {}", ctx()));
        waiting += 1;
        for field in ["status", "wait_reason", "netpoll", "start", "created_by", "stack"] {
            assert_eq!(l[field], r[field], "goroutine {goid} {field}: {}", ctx());
        }
        if let (Some(lw), Some(rw)) = (l["waiting_ns"].as_u64(), r["waiting_ns"].as_u64()) {
            assert!(
                (lw as i64 - rw as i64).unsigned_abs() <= slack,
                "goroutine {goid} waiting_ns: {lw} vs {rw}"
            );
        }
    }
    assert_eq!(lg.is_empty(), rg.is_empty(), "goroutines on one side only");
    if !lg.is_empty() {
        assert!(waiting >= 5, "the Go target has parked goroutines: {}", ctx());
        let netpoll = lg.values().filter(|g| !g["netpoll"].is_null()).count();
        assert!(netpoll >= 1, "a goroutine in IO wait has its netpoll fd");
    }
}

/// Records `pid` for 5 s at 1 s while a second parkscope takes a live snapshot at about 4 s;
/// then replays the recording at the live snapshot's wall-clock time.
fn round_trip(pid: u32, name: &str) {
    let dir = std::env::temp_dir().join(format!("parkscope-record-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rec.psrec");
    let started = Instant::now();
    let recorder = start_record(pid, &file, &["--duration", "5s"]);
    // The live snapshot's window is 1 s: started at 3 s, it is taken at about 4 s.
    thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let live = run_parkscope(&["snapshot", "-p", &pid.to_string(), "--json"]);
    live.assert_code(0);
    let live = live.json();
    let stderr = wait_ok(recorder);
    assert!(stderr.contains("recorded"), "{stderr}");
    let wall = live["taken_at"]["wall_unix_ns"].as_u64().unwrap();
    let at = format!("{}.{:09}", wall / 1_000_000_000, wall % 1_000_000_000);
    let replay = run_parkscope(&["snapshot", "--from", file.to_str().unwrap(), "--at", &at, "--json"]);
    replay.assert_code(0);
    assert!(replay.stderr.is_empty(), "a cleanly closed recording replays silently: {replay}");
    let replay = replay.json();
    assert_same_view(&live, &replay, name);
    eprintln!(
        "{name}: replayed snapshot {} ms before the live one",
        (live["taken_at"]["monotonic_ns"].as_u64().unwrap()
            - replay["taken_at"]["monotonic_ns"].as_u64().unwrap())
            / 1_000_000
    );

    // The table and the schedtrace lines replay too (one line per recorded snapshot).
    let table = run_parkscope(&["snapshot", "--from", file.to_str().unwrap(), "--at", "2s"]);
    table.assert_code(0);
    assert!(table.stdout.contains(&format!("pid {pid} ")), "{table}");
    let sched = run_parkscope(&["schedtrace", "--from", file.to_str().unwrap()]);
    sched.assert_code(0);
    let lines = sched.stdout.lines().filter(|l| l.starts_with("SCHED ")).count();
    assert!((5..=7).contains(&lines), "5 s at 1 s: {sched}");

    // And the off-CPU profile sampled from it opens in pprof's own reader format (gzip'd
    // protobuf with the offcpu sample type).
    let prof = dir.join("offcpu.pb.gz");
    let p = run_parkscope(&["profile", "--from", file.to_str().unwrap(), "-o", prof.to_str().unwrap()]);
    p.assert_code(0);
    let top = parkscope_tests::pprof(&["-top", "-sample_index=offcpu", prof.to_str().unwrap()]);
    assert!(top.contains("Type: offcpu"), "{top}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replayed_snapshot_is_the_live_one_c_and_go() {
    let blocker = Blocker::start(&[]);
    let go = GoTarget::start("parked-go1.27", &["-n", "3"], &[], false);
    let (bp, gp) = (blocker.pid, go.pid);
    // Both at once: the test's wall time is one recording's.
    let c = thread::spawn(move || round_trip(bp, "blocker"));
    round_trip(gp, "parked-go1.27");
    c.join().expect("the C round trip");
}

/// Runs `schedtrace --from` on `bytes`: its exit code, the SCHED lines, and stderr.
fn replay_bytes(bytes: &[u8], path: &std::path::Path) -> (i32, Vec<String>, String) {
    std::fs::write(path, bytes).unwrap();
    let out = run_parkscope(&["schedtrace", "--from", path.to_str().unwrap()]);
    let lines = out.stdout.lines().map(str::to_owned).collect();
    (out.code(), lines, out.stderr)
}

#[test]
fn a_killed_recorder_leaves_a_replayable_file_and_damage_is_a_clean_error() {
    let blocker = Blocker::start(&[]);
    let dir = std::env::temp_dir().join(format!("parkscope-record-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("killed.psrec");
    let started = Instant::now();
    let mut recorder = start_record(blocker.pid, &file, &[]);
    thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    // At 3 s, or later if attaching and the first views took that long (unoptimised builds on
    // a loaded machine): once the file holds two snapshots, so the kill lands mid-recording.
    while started.elapsed() < Duration::from_secs(30) {
        let so_far = run_parkscope(&["schedtrace", "--from", file.to_str().unwrap()]);
        if so_far.stdout.lines().count() >= 2 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    recorder.kill().expect("SIGKILL the recorder");
    let _ = recorder.wait();

    let bytes = std::fs::read(&file).unwrap();
    let scratch = dir.join("damaged.psrec");
    let (code, full, stderr) = replay_bytes(&bytes, &scratch);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("was not closed"), "the replay says the recorder did not close it: {stderr}");
    // Every snapshot written before the kill was flushed.
    assert!(full.len() >= 2, "{full:?}");
    let snap = run_parkscope(&["snapshot", "--from", file.to_str().unwrap(), "--json"]);
    snap.assert_code(0);
    assert_eq!(snap.json()["pid"].as_u64(), Some(u64::from(blocker.pid)));

    // Truncations and flips: exit 0 with a prefix of the lines, or exit 9 with a prefix and one
    // line naming the offset. Never a signal (run_parkscope's code() fails on one).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(blocker.pid);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0;
    for i in 0..60 {
        let mut damaged = bytes.clone();
        if i % 2 == 0 {
            damaged.truncate((next() % bytes.len() as u64) as usize);
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() % damaged.len() as u64) as usize;
                damaged[at] ^= 1 << (next() % 8);
            }
        }
        let (code, lines, stderr) = replay_bytes(&damaged, &scratch);
        assert!(
            lines.len() <= full.len() && lines[..] == full[..lines.len()],
            "try {i}: not a prefix: {lines:?}"
        );
        match code {
            0 => {}
            BAD_RECORDING => {
                errors += 1;
                let first = stderr.lines().next().unwrap_or_default();
                assert!(first.contains("at byte "), "try {i}: the error names the offset: {stderr}");
                assert!(!stderr.contains("panicked"), "{stderr}");
            }
            other => panic!("try {i}: exit {other}: {stderr}"),
        }
    }
    assert!(errors > 0, "some damage is reported");
    let _ = std::fs::remove_dir_all(&dir);
}
