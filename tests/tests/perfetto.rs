//! The Perfetto export end to end: three `snapshot --json` of a real target (the C blocker; the
//! Go parked example), read back into the model, exported, then decoded by
//! tests/perfetto_check.py with the official generated protos of the `perfetto` PyPI package (the
//! venv `cargo xtask setup` makes). Ground truth: blocker's manifest (tids, fds) and the monotonic
//! clock around its start; the Go target's own clock reading when a goroutine parked, and its
//! goroutine dump (`goroutine?debug=2`).

use std::path::PathBuf;
use std::process::Command;

use parkscope_export::Entry;
use parkscope_model::Snapshot;
use parkscope_tests::{Blocker, monotonic_ns, run_parkscope, workspace_root};
use serde_json::Value;

/// The venv's python (made by `cargo xtask setup` under `$PARKSCOPE_TOOLS`, default
/// `~/.cache/parkscope`).
fn perfetto_python() -> PathBuf {
    let tools = std::env::var_os("PARKSCOPE_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/parkscope"),
        PathBuf::from,
    );
    let python = tools.join("perfetto-venv/bin/python3");
    assert!(
        python.is_file(),
        "{} not found: run `cargo xtask setup` (installs the perfetto package)",
        python.display()
    );
    python
}

#[test]
fn the_pipe_readers_blocked_read_is_one_slice_spanning_the_snapshots() {
    let before_start = monotonic_ns();
    let blocker = Blocker::start(&[]);
    let ready = monotonic_ns();
    let pipe_read = blocker.role("pipe_read").clone();
    let pid = blocker.pid.to_string();

    let snapshots: Vec<Snapshot> = (0..3).map(|_| snapshot_of(&pid)).collect();
    let path = std::env::temp_dir().join(format!("parkscope-perfetto-{pid}.pftrace"));
    let file = std::fs::File::create(&path).expect("create the trace file");
    let entries = snapshots.iter().cloned().map(|s| Entry::Snapshot(Box::new(s)));
    let stats = parkscope_export::perfetto(entries, std::io::BufWriter::new(file)).expect("export");
    assert_eq!(stats.snapshots, 3);

    let mut tids: Vec<String> = blocker.roles.iter().map(|r| r.tid.to_string()).collect();
    tids.push(pid.clone());
    let checked = check(&path, &pid, &tids);
    let _ = std::fs::remove_file(&path);

    let reads: Vec<&Value> =
        checked["slices"].as_array().expect("slices").iter().filter(|s| s["tid"] == pipe_read.tid).collect();
    assert_eq!(reads.len(), 1, "one slice for the pipe reader's one read: {reads:#?}");
    let read = reads[0];
    assert_eq!(read["name"], "read");
    assert_eq!(read["args"]["fd"], i64::from(pipe_read.fd.expect("pipe_read has an fd")));
    let desc = read["args"]["fd_desc"].as_str().expect("fd_desc");
    assert!(desc.starts_with(pipe_read.fd_desc.as_deref().expect("manifest fd_desc")), "{desc}");
    assert!(read["args"]["user_stack"].as_str().is_some_and(|s| s.contains("blocker_pipe_read")), "{read:#}");

    // The read began after blocker was started and before its manifest was printed; what the
    // trace says is the latest begin the snapshots allow (their times in the call are lower
    // bounds: it was entered before the probes attached), so it is within that span.
    let (begin, end) = (read["begin"].as_u64().expect("begin"), read["end"].as_u64().expect("end"));
    assert!((before_start..=ready).contains(&begin), "begin {begin} outside [{before_start}, {ready}]");
    // It lasts from there to the last snapshot, which still showed the thread in the call; the
    // recording's own numbers give the same span.
    let last = snapshots.last().expect("3 snapshots");
    assert_eq!(end, last.taken_at.monotonic_ns);
    let recorded_begin = snapshots
        .iter()
        .map(|s| {
            let call = s.thread(pipe_read.tid).and_then(|t| t.syscall.as_ref()).expect("in its read");
            s.taken_at.monotonic_ns - call.time_ns().expect("a time in the call")
        })
        .min()
        .expect("3 snapshots");
    assert_eq!(begin, recorded_begin);
    assert!(
        end - begin >= last.thread(pipe_read.tid).and_then(|t| t.syscall.as_ref()?.time_ns()).expect("time")
    );
}

/// Runs tests/perfetto_check.py on `path`; returns what it printed.
fn check(path: &std::path::Path, pid: &str, tids: &[String]) -> Value {
    let out = Command::new(perfetto_python())
        .arg(workspace_root().join("tests/perfetto_check.py"))
        .arg(path)
        .args(["--pid", pid, "--tids", &tids.join(",")])
        .output()
        .expect("run perfetto_check.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "perfetto_check.py failed on {}:\n{stderr}", path.display());
    serde_json::from_slice(&out.stdout).expect("perfetto_check.py prints JSON")
}

/// One `snapshot --json`, read back into the model.
fn snapshot_of(pid: &str) -> Snapshot {
    let out = run_parkscope(&["snapshot", "-p", pid, "--json"]);
    out.assert_code(0);
    let mut json = out.json();
    // The contract lists the stack table bare; the model's own form wraps it.
    if json["stacks"].is_array() {
        json["stacks"] = serde_json::json!({ "stacks": json["stacks"].take() });
    }
    serde_json::from_value(json).unwrap_or_else(|e| panic!("snapshot --json is not a model Snapshot: {e}"))
}

#[test]
fn a_goroutine_parked_between_snapshots_is_one_wait_slice_named_as_the_runtime_names_it() {
    let target = parkscope_tests::GoTarget::start("parked-go1.27", &["-n", "1"], &[], false);
    let pid = target.pid.to_string();
    let first = snapshot_of(&pid);
    let (late_goid, parked_ns) = target.park_late_goroutine();
    let (second, third) = (snapshot_of(&pid), snapshot_of(&pid));
    let dump = target.pprof_dump();

    let path = std::env::temp_dir().join(format!("parkscope-perfetto-go-{pid}.pftrace"));
    let file = std::fs::File::create(&path).expect("create the trace file");
    let snapshots = [first, second, third];
    let entries = snapshots.iter().cloned().map(|s| Entry::Snapshot(Box::new(s)));
    let stats = parkscope_export::perfetto(entries, std::io::BufWriter::new(file)).expect("export");
    assert!(stats.goroutine_slices > 0, "{stats:?}");
    let tids: Vec<String> = snapshots[2].threads.iter().map(|t| t.tid.to_string()).collect();
    let checked = check(&path, &pid, &tids);
    let _ = std::fs::remove_file(&path);

    let slices = checked["slices"].as_array().expect("slices");
    let goid_of = |s: &Value| s["args"]["goid"].as_u64();
    let late: Vec<&Value> = slices.iter().filter(|s| goid_of(s) == Some(late_goid)).collect();
    assert_eq!(late.len(), 1, "one wait of the late goroutine: {late:#?}");
    assert_eq!(late[0]["name"], "chan receive");
    // It parked at parked_ns (the target's own clock reading); the slice's begin is the latest
    // start the snapshots allow, so not before that, and it was waiting at the second snapshot.
    let begin = late[0]["begin"].as_u64().expect("begin");
    assert!(
        (parked_ns..=snapshots[1].taken_at.monotonic_ns).contains(&begin),
        "begin {begin}, parked {parked_ns}"
    );
    assert_eq!(late[0]["end"].as_u64(), Some(snapshots[2].taken_at.monotonic_ns));

    // Every goroutine still waiting at the end is named as the runtime's own dump names it.
    let mut compared = 0;
    for s in slices.iter().filter(|s| s["end"].as_u64() == Some(snapshots[2].taken_at.monotonic_ns)) {
        let Some(goid) = goid_of(s) else { continue };
        let Some((reason, block)) = dump.get(&goid) else { continue };
        if parkscope_tests::transient_in_dump(reason, block) {
            continue;
        }
        // A goroutine in a syscall is "syscall" in the dump; its slice names the call.
        let label =
            if s["args"]["status"] == "syscall" { "syscall" } else { s["name"].as_str().expect("name") };
        assert_eq!(label, reason, "goroutine {goid}: {block}");
        compared += 1;
    }
    eprintln!("{compared} goroutine slices named as the runtime's dump names them");
    assert!(compared >= 5, "compared {compared} goroutines with the dump");
}

/// `record` then `export --perfetto` of the C blocker, through the binary: the pipe reader's read
/// is one slice spanning what the recording holds (the recording read back is the reference),
/// and a recording cut in the middle still exports what precedes the damage, with exit code 9.
#[test]
fn a_recording_exports_the_pipe_read_as_one_slice_and_a_damaged_one_up_to_the_damage() {
    let blocker = Blocker::start(&[]);
    let pipe_read = blocker.role("pipe_read").clone();
    let pid = blocker.pid.to_string();
    let dir = std::env::temp_dir().join(format!("parkscope-export-{pid}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (rec, trace) = (dir.join("blocker.psrec"), dir.join("blocker.pftrace"));
    let (rec_s, trace_s) = (rec.to_str().expect("utf-8"), trace.to_str().expect("utf-8"));
    run_parkscope(&["record", "-p", &pid, "-o", rec_s, "--duration", "3s", "--interval", "1s"])
        .assert_code(0);
    let out = run_parkscope(&["export", rec_s, "--perfetto", "-o", trace_s]);
    out.assert_code(0);
    assert!(out.stderr.contains("4 snapshots"), "{out}");

    let snapshots = recorded_snapshots(&rec);
    assert_eq!(snapshots.len(), 4, "one at attach, then one per second for 3 s");
    let mut tids: Vec<String> = blocker.roles.iter().map(|r| r.tid.to_string()).collect();
    tids.push(pid.clone());
    let checked = check(&trace, &pid, &tids);
    let reads: Vec<&Value> =
        checked["slices"].as_array().expect("slices").iter().filter(|s| s["tid"] == pipe_read.tid).collect();
    assert_eq!(reads.len(), 1, "one slice for the pipe reader's one read: {reads:#?}");
    let (begin, end) = (reads[0]["begin"].as_u64().expect("begin"), reads[0]["end"].as_u64().expect("end"));
    assert_eq!(reads[0]["name"], "read");
    let recorded_begin = snapshots
        .iter()
        .map(|s| {
            let call = s.thread(pipe_read.tid).and_then(|t| t.syscall.as_ref()).expect("in its read");
            s.taken_at.monotonic_ns - call.time_ns().expect("a time in the call")
        })
        .min()
        .expect("4 snapshots");
    assert_eq!(begin, recorded_begin, "the slice begins where the recording says the read began");
    assert_eq!(end, snapshots.last().expect("4").taken_at.monotonic_ns, "and ends at the last snapshot");

    // Cut the file inside its last snapshot chunk: exit 9, a one-line cause with the offset,
    // and a trace of what came before that the official schema still decodes.
    let bytes = std::fs::read(&rec).expect("read the recording");
    let cut = dir.join("cut.psrec");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).expect("write the cut recording");
    let out = run_parkscope(&["export", cut.to_str().expect("utf-8"), "--perfetto", "-o", trace_s]);
    out.assert_code(9);
    assert!(out.stderr.contains("byte") && out.stderr.contains("exported the"), "{out}");
    let checked = check(&trace, &pid, &tids);
    assert!(checked["slices"].as_array().is_some_and(|s| s.iter().any(|s| s["tid"] == pipe_read.tid)));

    // Not a recording at all: exit 9 and no trace left behind.
    std::fs::write(&cut, b"not a recording").expect("write");
    let _ = std::fs::remove_file(&trace);
    run_parkscope(&["export", cut.to_str().expect("utf-8"), "--perfetto", "-o", trace_s]).assert_code(9);
    assert!(!trace.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every snapshot of a recording, read with the recording crate's own reader.
fn recorded_snapshots(path: &std::path::Path) -> Vec<Snapshot> {
    let file = std::fs::File::open(path).expect("open the recording");
    let mut reader = parkscope_recording::Reader::new(std::io::BufReader::new(file)).expect("a recording");
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().expect("an undamaged recording") {
        if let parkscope_recording::Item::Snapshot(s, _) = item {
            out.push(*s);
        }
    }
    out
}
