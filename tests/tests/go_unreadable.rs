//! A Go program whose runtime parkscope cannot read still gets its thread view: snapshot,
//! schedtrace and profile print what /proc and the probes say of its threads, warn on stderr
//! with the cause and a hint, and exit with GO_UNREADABLE (7); only `--goroutines` fails hard.
//!
//! The target is a real binary that stays unreadable: a copy of examples/bin/parked-go1.27-w
//! (symbols, no DWARF) whose build information is patched to claim Go 1.99, a release with no
//! layout table. Ground truth for the threads: /proc/PID/task.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use parkscope_tests::{GoTarget, example_bin, pprof, read_tids, run_parkscope};

const GO_UNREADABLE: i32 = 7;

/// A copy of `bin` in `dir` whose `.go.buildinfo` version string says go1.99 instead of go1.27.
fn unknown_release_copy(bin: &str, dir: &Path) -> PathBuf {
    let mut data = std::fs::read(example_bin(bin)).unwrap();
    let magic = b"\xff Go buildinf:";
    let at = data.windows(magic.len()).position(|w| w == magic).expect("a .go.buildinfo header");
    // The header is 32 bytes; then the version as a varint length (one byte here) and its text.
    let version = at + 33;
    assert_eq!(&data[version..version + 6], b"go1.27", "{bin}: build information not as expected");
    data[version + 4..version + 6].copy_from_slice(b"99");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{bin}-as-go1.99"));
    std::fs::write(&path, &data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_warned(out: &parkscope_tests::Output) {
    assert!(out.stderr.contains("warning: the Go runtime cannot be read"), "{out}");
    assert!(out.stderr.contains("go1.99"), "the cause names the release: {out}");
    assert!(out.stderr.contains("\nhint: "), "{out}");
}

#[test]
fn unreadable_runtime_keeps_the_thread_view_and_exits_7() {
    let scratch = Scratch(std::env::temp_dir().join(format!("parkscope-unreadable-{}", std::process::id())));
    let bin = unknown_release_copy("parked-go1.27-w", &scratch.0);
    let t = GoTarget::start_at(&bin, &["-n", "1"], &[], false);
    let pid = t.pid.to_string();
    let tasks = read_tids(t.pid);

    // snapshot --json: every thread, the runtime part says what is known and why no more.
    let out = run_parkscope(&["snapshot", "-p", &pid, "--window", "0", "--json"]);
    out.assert_code(GO_UNREADABLE);
    assert_warned(&out);
    let snap = out.json();
    let rt = &snap["runtime"];
    assert_eq!(rt["kind"], "go", "{rt:#}");
    assert_eq!(rt["version"], "go1.99.3", "{rt:#}");
    assert_eq!(rt["module"], "parkscope.example/parked", "{rt:#}");
    assert!(rt["layout"].is_null() && rt["gomaxprocs"].is_null(), "{rt:#}");
    assert!(rt["error"].as_str().is_some_and(|e| e.contains("go1.99")), "{rt:#}");
    assert_eq!(snap["goroutines"].as_array().map(Vec::len), Some(0));
    let tids: std::collections::BTreeSet<u32> =
        snap["threads"].as_array().unwrap().iter().map(|t| t["tid"].as_u64().unwrap() as u32).collect();
    assert_eq!(tids, tasks, "{:#}", snap["threads"]);
    let pipe_fd = t.info["pipe_fd"].as_i64().unwrap();
    assert!(
        snap["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["syscall"]["name"] == "read" && t["syscall"]["fd"] == pipe_fd),
        "the pipe reader: {:#}",
        snap["threads"]
    );

    // The table: the threads, and a line saying why there are no goroutines.
    let table = run_parkscope(&["snapshot", "-p", &pid, "--window", "0"]);
    table.assert_code(GO_UNREADABLE);
    assert_warned(&table);
    for tid in &tasks {
        assert!(table.stdout.lines().any(|l| l.starts_with(&format!("{tid} "))), "tid {tid}: {table}");
    }
    assert!(table.stdout.contains("goroutines: not read"), "{table}");

    // Go detail asked for by name still fails hard, printing nothing.
    let strict = run_parkscope(&["snapshot", "-p", &pid, "--window", "0", "--goroutines"]);
    strict.assert_code(GO_UNREADABLE);
    assert!(strict.stdout.is_empty() && strict.stderr.contains("hint:"), "{strict}");

    // schedtrace: thread-level lines instead of the runtime's.
    let trace = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "200ms", "--count", "2"]);
    trace.assert_code(GO_UNREADABLE);
    assert_warned(&trace);
    let lines: Vec<&str> = trace.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{trace}");
    for l in lines {
        assert!(l.starts_with("SCHED ") && l.contains(&format!("threads={} ", tasks.len())), "{l}\n{trace}");
    }

    // profile: written, by threads only, saying why.
    let pb = scratch.0.join("off.pb.gz").to_str().unwrap().to_owned();
    let prof = run_parkscope(&["profile", "-p", &pid, "--duration", "1s", "-o", &pb]);
    prof.assert_code(GO_UNREADABLE);
    assert_warned(&prof);
    let comments = pprof(&["-comments", &pb]);
    assert!(comments.contains("threads only") && comments.contains("go1.99"), "{comments}");
    let tags = pprof(&["-tags", &pb]);
    for tid in &tasks {
        // Every thread of the parked program sleeps through the window: each is in the profile.
        assert!(tags.contains(&tid.to_string()), "tid {tid} missing from the profile:\n{tags}");
    }
}
