//! tokio tasks parked on I/O (`snapshot.io_waits`), against examples/rust/src/iopark.rs built
//! with the oldest and the newest tokio: every task the target says it parked on a socket, a
//! listener, a UDP socket or a pipe is listed on that fd with that task id (its own
//! `tokio::task::id()` and `as_raw_fd()`), the fd described with the addresses the socket
//! itself reports (`local_addr()` / `peer_addr()`), the write-blocked one as `write`; the
//! `block_on` future's accept is listed as `block_on`; a task asleep on a timer is not listed.
//! Also: a current-thread runtime, 1,000 parked connections, the table lines, a recording's
//! replay, a target in its own pid and mount namespaces, and a stripped build (a clear error,
//! the threads intact).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use parkscope_tests::{Contained, example_bin, lines_of, parkscope_bin, run_parkscope};
use serde_json::Value;

/// A directory of this test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("parkscope-tokio-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running iopark and the park lines it printed.
struct IoPark {
    child: Child,
    parks: Vec<Value>,
    /// Kept so the stripped copy outlives the target.
    _dir: Option<TempDir>,
}

impl IoPark {
    fn start(bin: &str, args: &[&str]) -> IoPark {
        IoPark::start_at(example_bin(bin), args, None)
    }

    fn start_at(bin: std::path::PathBuf, args: &[&str], dir: Option<TempDir>) -> IoPark {
        let mut child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask examples`)", bin.display()));
        let lines = lines_of(child.stdout.take().unwrap());
        let mut parks = Vec::new();
        loop {
            let line = lines.recv_timeout(Duration::from_secs(20)).expect("iopark's lines");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["ready"] == true {
                break;
            }
            parks.push(v);
        }
        IoPark { child, parks, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn parks_of(&self, kind: &str) -> Vec<&Value> {
        self.parks.iter().filter(|p| p["park"] == kind).collect()
    }
}

impl Drop for IoPark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snapshot(pid: u32) -> Value {
    let out = run_parkscope(&["snapshot", "-p", &pid.to_string(), "--window", "0", "--json"]);
    out.assert_code(0);
    out.json()
}

/// A snapshot once the target has parked what it said it would: a task prints its line, and the
/// target its ready line, just before the task's first poll of the I/O, and `block_on` accepts
/// just after; so a view taken at once may be a poll early. Up to 5 views, 300 ms apart; the
/// last is returned whatever it shows.
fn settled_snapshot(pid: u32, want: &BTreeSet<Wait>) -> Value {
    for _ in 0..4 {
        let snap = snapshot(pid);
        if snap["io_waits"]["error"].is_null() && waits(&snap) == *want {
            return snap;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    snapshot(pid)
}

/// A wait as (fd, waiter, task id, interest).
type Wait = (i64, String, Option<u64>, String);

fn waits(snap: &Value) -> BTreeSet<Wait> {
    let io = &snap["io_waits"];
    assert!(io["error"].is_null(), "io_waits not read: {io}");
    assert_eq!(io["unrecognized"], 0, "{io}");
    io["waits"]
        .as_array()
        .expect("io_waits.waits")
        .iter()
        .map(|w| {
            (
                w["fd"].as_i64().unwrap(),
                w["waiter"].as_str().unwrap().to_owned(),
                w["task_id"].as_u64(),
                w["interest"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

fn desc_of(snap: &Value, fd: i64) -> String {
    snap["io_waits"]["waits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["fd"] == fd)
        .and_then(|w| w["fd_desc"].as_str())
        .unwrap_or_else(|| panic!("no description of fd {fd}"))
        .to_owned()
}

/// What the target printed, as the waits parkscope must list: every park but the timer's
/// (asleep, not on I/O); `stale` keeps its read waker registered after a timeout (tokio keeps
/// a reader's last waker until the next poll), so it is listed, as documented.
fn expected(t: &IoPark) -> BTreeSet<Wait> {
    expected_of(&t.parks)
}

fn expected_of(parks: &[Value]) -> BTreeSet<Wait> {
    parks
        .iter()
        .filter(|p| p["park"].is_string() && p["park"] != "timer")
        .map(|p| {
            let fd = p["fd"].as_i64().unwrap();
            let interest = if p["park"] == "tcp_write" { "write" } else { "read" }.to_owned();
            if p["park"] == "block_on_accept" {
                (fd, "block_on".to_owned(), None, interest)
            } else {
                (fd, "task".to_owned(), Some(p["task"].as_u64().unwrap()), interest)
            }
        })
        .collect()
}

fn check(bin: &str, args: &[&str]) {
    let t = IoPark::start(bin, args);
    let snap = settled_snapshot(t.pid(), &expected(&t));
    assert_eq!(waits(&snap), expected(&t), "{bin} {args:?}: io_waits vs the target's own lines");
    // The fds described with the addresses the sockets themselves report.
    for p in &t.parks {
        let fd = p["fd"].as_i64().unwrap();
        let local = p["local"].as_str();
        let want = match p["park"].as_str().unwrap() {
            "timer" => continue,
            "accept" | "block_on_accept" => format!("tcp {} (listen)", local.unwrap()),
            "udp_recv" => format!("udp {}", local.unwrap()),
            "pipe_read" => "pipe:[".to_owned(),
            _ => format!("tcp {} -> {}", local.unwrap(), p["peer"].as_str().unwrap()),
        };
        let got = desc_of(&snap, fd);
        assert!(got.starts_with(&want), "fd {fd} ({p}): described as {got:?}, expected {want:?}");
    }
    let registrations = snap["io_waits"]["registrations"].as_u64().unwrap();
    assert!(registrations as usize >= t.parks.len() - 1, "{registrations} registrations read");
}

#[test]
fn newest_tokio_tasks_parked_on_io_are_listed_with_fd_and_peer() {
    check("tokio-iopark-newest", &[]);
}

#[test]
fn oldest_tokio_tasks_parked_on_io_are_listed_with_fd_and_peer() {
    check("tokio-iopark-oldest", &[]);
}

#[test]
fn a_current_thread_runtime_has_its_io_waits_listed_too() {
    check("tokio-iopark-newest", &["--current-thread"]);
}

#[test]
fn a_thousand_parked_connections_are_all_listed_and_the_table_groups_by_fd() {
    let t = IoPark::start("tokio-iopark-newest", &["--many", "1000"]);
    assert_eq!(t.parks_of("many").len(), 1000);
    let snap = settled_snapshot(t.pid(), &expected(&t));
    assert_eq!(waits(&snap), expected(&t));

    let table = run_parkscope(&["snapshot", "-p", &t.pid().to_string(), "--window", "0"]);
    table.assert_code(0);
    let text = &table.stdout;
    let tasks = expected(&t).iter().filter(|w| w.1 == "task").count();
    assert!(text.contains(&format!("parked on I/O: {tasks} tasks")), "{text}");
    // Both acceptors on the one listener share its line.
    let accepts = t.parks_of("accept");
    let fd = accepts[0]["fd"].as_i64().unwrap();
    let ids: Vec<String> = accepts.iter().map(|p| p["task"].to_string()).collect();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("fd {fd} read:")))
        .expect("the listener's line");
    assert!(line.contains(&format!("tasks {}", ids.join(","))), "{line}");
    assert!(text.contains("more fds (see --json)"), "1,000 fds are cut short in the table");
}

#[test]
fn a_recording_replays_the_io_waits_it_saw() {
    let t = IoPark::start("tokio-iopark-newest", &[]);
    let dir = TempDir::new("record");
    let file = dir.0.join("io.psrec");
    let out = Command::new(parkscope_bin())
        .args(["record", "-p", &t.pid().to_string(), "-o", file.to_str().unwrap(), "-i", "1s", "-d", "3s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let replay = run_parkscope(&["snapshot", "--from", file.to_str().unwrap(), "--json"]);
    replay.assert_code(0);
    assert_eq!(waits(&replay.json()), expected(&t), "the recording's last snapshot");
}

#[test]
fn a_stripped_build_says_why_and_keeps_the_threads() {
    let dir = TempDir::new("stripped");
    let stripped = dir.0.join("iopark-stripped");
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(example_bin("tokio-iopark-newest"))
        .status()
        .expect("strip (binutils)");
    assert!(status.success());
    let t = IoPark::start_at(stripped, &[], Some(dir));
    let snap = snapshot(t.pid());
    let err = snap["io_waits"]["error"].as_str().unwrap_or_else(|| panic!("no error: {}", snap["io_waits"]));
    assert!(err.contains("stripped"), "{err}");
    assert!(snap["io_waits"]["waits"].as_array().unwrap().is_empty());
    assert!(snap["threads"].as_array().unwrap().len() >= 3, "the thread view stays whole");
}

#[test]
fn a_target_in_its_own_pid_and_mount_namespaces_is_read_through_the_host() {
    // Its binary exists only inside its mount namespace; its fds and memory are read by host pid.
    let t = Contained::start("tokio-iopark-newest", &[]);
    let want = expected_of(&t.lines);
    let snap = settled_snapshot(t.pid, &want);
    assert!(want.len() >= 8, "the target's own lines: {:?}", t.lines);
    assert_eq!(waits(&snap), want);
}
