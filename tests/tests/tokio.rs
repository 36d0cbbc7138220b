//! tokio targets (examples/rust, built with the oldest and the newest tokio): every block a
//! task makes on its worker (std::thread::sleep, a std Mutex held elsewhere, a blocking FIFO
//! read, a CPU busy loop) is reported as one stall with the right tid and task id, its onset
//! and duration agreeing with what the target printed (CLOCK_MONOTONIC, like parkscope's
//! `taken_at.monotonic_ns`); a 4 s spawn_blocking sleep, idle workers and an idle run give no
//! stall; stalls in progress at attach are found with lower bounds; schedtrace counts workers,
//! blocking threads and stalls; the stripped build gives the thread view with a notice; a target in its own pid
//! namespace is joined in host tids. Ground truth: the target's own lines (tokio::task::id(),
//! gettid) and /proc's NSpid.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use parkscope_tests::{Contained, example_bin, lines_of, run_parkscope};
use serde_json::Value;

/// The idle time before the block: parkscope has attached by then (its window covers the
/// block's start, so a blocked call's time is exact and an on-CPU poll is seen from its first
/// 10 ms).
const LEAD_MS: u64 = 2500;
const BLOCK_MS: u64 = 4000;
const WINDOW: &str = "3000ms";

struct Target {
    child: Child,
    lines: Receiver<String>,
    ready: Value,
}

impl Target {
    fn start(bin: &str, steps: &[String]) -> Target {
        let mut child = Command::new(example_bin(bin))
            .args(steps)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (run `cargo xtask examples`)"));
        let lines = lines_of(child.stdout.take().unwrap());
        let ready: Value =
            serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
        assert_eq!(ready["ready"], true, "{ready}");
        Target { child, lines, ready }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next(&self) -> Value {
        serde_json::from_str(&self.lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snapshot(pid: u32, window: &str) -> Value {
    let out = run_parkscope(&["snapshot", "-p", &pid.to_string(), "--window", window, "--json"]);
    out.assert_code(0);
    out.json()
}

fn roles(snap: &Value) -> Vec<(u64, String)> {
    snap["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tid"].as_u64().unwrap(), t["role"].as_str().unwrap_or("none").to_owned()))
        .collect()
}

/// One block of `kind` during a snapshot: exactly one stall, on the block's tid and task, with
/// onset within 200 ms and duration within 10% or 20 ms of the target's own clock.
fn check_block(bin: &'static str, kind: &'static str) {
    let steps = [format!("idle:{LEAD_MS}"), format!("{kind}:{BLOCK_MS}")];
    let t = Target::start(bin, &steps);
    let version = t.ready["tokio"].as_str().unwrap().to_owned();
    let snap = snapshot(t.pid(), WINDOW);
    let begin = t.next();
    assert_eq!(begin["begin"], true, "{begin}");
    let ctx = format!("{bin} {kind}: {:#}\n{begin}", snap["stalls"]);
    assert_eq!(snap["runtime"]["kind"], "tokio", "{ctx}");
    assert_eq!(snap["runtime"]["version"], format!("tokio {version}"), "{ctx}");
    assert!(snap["runtime"]["error"].is_null(), "{ctx}");
    let (tid, task, began) = (
        begin["tid"].as_u64().unwrap(),
        begin["task"].as_u64().unwrap(),
        begin["begin_ns"].as_u64().unwrap(),
    );
    let taken = snap["taken_at"]["monotonic_ns"].as_u64().unwrap();
    assert!(taken < began + BLOCK_MS * 1_000_000, "the view was taken after the block: {ctx}");
    let stalls = snap["stalls"].as_array().unwrap();
    assert_eq!(stalls.len(), 1, "one stall: {ctx}");
    let st = &stalls[0];
    assert_eq!(st["tid"], tid, "{ctx}");
    assert_eq!(st["task_id"], task, "{ctx}");
    let truth = taken - began;
    let ours = st["duration_ns"].as_u64().unwrap();
    let err = truth.abs_diff(ours);
    assert!(err <= 20_000_000 || err * 10 <= truth, "duration {ours} vs {truth}: {ctx}");
    let onset = taken - ours;
    assert!(onset.abs_diff(began) <= 200_000_000, "onset {onset} vs {began}: {ctx}");
    let expect = match kind {
        "sleep" => Some("clock_nanosleep"),
        "mutex" => Some("futex"),
        "fifo" => Some("read"),
        _ => None,
    };
    match expect {
        Some(call) => {
            assert_eq!(st["activity"]["kind"], "syscall", "{ctx}");
            assert_eq!(st["activity"]["name"], call, "{ctx}");
        }
        None => assert_eq!(st["activity"]["kind"], "on_cpu", "{ctx}"),
    }
    let thread = snap["threads"].as_array().unwrap().iter().find(|th| th["tid"] == tid).unwrap();
    assert_eq!(thread["role"], "tokio_worker", "{ctx}");
    assert_eq!(thread["task"]["task_id"], task, "{ctx}");
}

fn check_all_blocks(bin: &'static str) {
    // Concurrently, to keep the suite short: each target is its own process with its own truth.
    let runs: Vec<_> = ["sleep", "mutex", "fifo", "spin"]
        .into_iter()
        .map(|kind| std::thread::spawn(move || check_block(bin, kind)))
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

#[test]
fn newest_tokio_blocks_are_stalls_with_tid_task_onset_and_duration() {
    check_all_blocks("tokio-stalls-newest");
}

#[test]
fn oldest_tokio_blocks_are_stalls_with_tid_task_onset_and_duration() {
    check_all_blocks("tokio-stalls-oldest");
}

#[test]
fn spawn_blocking_sleep_and_idle_workers_are_no_stalls() {
    for bin in ["tokio-stalls-newest", "tokio-stalls-oldest"] {
        let t = Target::start(bin, &[format!("idle:{LEAD_MS}"), format!("blocking:{BLOCK_MS}")]);
        let snap = snapshot(t.pid(), WINDOW);
        let begin = t.next();
        let ctx = format!("{bin}: {:#}\n{begin}", snap["threads"]);
        assert_eq!(snap["stalls"].as_array().unwrap().len(), 0, "{ctx}");
        assert_eq!(snap["summary"]["stalls"], 0, "{ctx}");
        let tid = begin["tid"].as_u64().unwrap();
        let r = roles(&snap);
        assert!(r.contains(&(tid, "tokio_blocking".to_owned())), "{ctx}");
        // The two workers, idle.
        let workers: Vec<_> =
            snap["threads"].as_array().unwrap().iter().filter(|th| th["role"] == "tokio_worker").collect();
        assert_eq!(workers.len(), 2, "{ctx}");
        assert!(workers.iter().all(|w| w["task"].is_null()), "{ctx}");
    }
}

#[test]
fn an_idle_run_has_no_stalls() {
    // `cargo xtask test-tokio-idle` runs it for 30 s.
    let window = std::env::var("PARKSCOPE_TOKIO_IDLE").unwrap_or_else(|_| "3s".to_owned());
    let t = Target::start("tokio-stalls-newest", &[]);
    let snap = snapshot(t.pid(), &window);
    assert_eq!(snap["stalls"].as_array().unwrap().len(), 0, "{:#}", snap["threads"]);
}

#[test]
fn stripped_tokio_gives_the_thread_view_with_a_notice() {
    let t = Target::start(
        "tokio-stalls-newest-stripped",
        &[format!("idle:{LEAD_MS}"), format!("sleep:{BLOCK_MS}")],
    );
    let out = run_parkscope(&["snapshot", "-p", &t.pid().to_string(), "--window", "300ms", "--json"]);
    out.assert_code(0);
    let snap = out.json();
    assert_eq!(snap["runtime"]["kind"], "tokio", "{out}");
    assert_eq!(snap["runtime"]["version"], format!("tokio {}", t.ready["tokio"].as_str().unwrap()), "{out}");
    assert!(snap["runtime"]["error"].as_str().unwrap().contains("stripped"), "{out}");
    assert!(out.stderr.contains("tokio"), "{out}");
    assert_eq!(
        snap["threads"].as_array().unwrap().len(),
        std::fs::read_dir(format!("/proc/{}/task", t.pid())).unwrap().count(),
        "{out}"
    );
}

#[test]
fn tokio_in_a_pid_namespace_is_joined_in_host_tids() {
    let t =
        Contained::start("tokio-stalls-newest", &[&format!("idle:{LEAD_MS}"), &format!("sleep:{BLOCK_MS}")]);
    let snap = snapshot(t.pid, WINDOW);
    let begin = t.next_line(Duration::from_secs(20)).unwrap();
    let (ns_tid, task) = (begin["tid"].as_u64().unwrap() as u32, begin["task"].as_u64().unwrap());
    let host = t.host_tid(ns_tid).unwrap_or_else(|| panic!("no host tid for {ns_tid}"));
    assert_ne!(host, ns_tid, "the target should have its own tids");
    let stalls = snap["stalls"].as_array().unwrap();
    assert_eq!(stalls.len(), 1, "{:#}\n{begin}", snap["stalls"]);
    assert_eq!(stalls[0]["tid"], host, "{:#}", stalls[0]);
    assert_eq!(stalls[0]["task_id"], task, "{:#}", stalls[0]);
}

#[test]
fn schedtrace_counts_workers_blocking_threads_and_stalls() {
    let t = Target::start("tokio-stalls-newest", &["idle:1000".to_owned(), "sleep:2000".to_owned()]);
    let idle = Target::start("tokio-stalls-newest", &[]);
    let (busy_pid, idle_pid) = (t.pid().to_string(), idle.pid().to_string());
    let trace = |pid: String| {
        std::thread::spawn(move || run_parkscope(&["schedtrace", "-p", &pid, "-i", "300ms", "-c", "10"]))
    };
    let (busy, quiet) = (trace(busy_pid), trace(idle_pid));
    let (busy, quiet) = (busy.join().unwrap(), quiet.join().unwrap());
    busy.assert_code(0);
    quiet.assert_code(0);
    assert!(busy.stdout.lines().all(|l| l.contains(" workers=2 blocking=0 stalled=")), "{busy}");
    assert!(busy.stdout.lines().any(|l| l.ends_with(" stalled=1")), "the 2 s sleep: {busy}");
    assert!(quiet.stdout.lines().all(|l| l.ends_with(" workers=2 blocking=0 stalled=0")), "{quiet}");
}

#[test]
fn stalls_in_progress_at_attach_are_found_with_a_lower_bound() {
    let runs: Vec<_> = ["sleep", "spin"]
        .into_iter()
        .map(|kind| {
            std::thread::spawn(move || {
                let t = Target::start("tokio-stalls-newest", &[format!("{kind}:{BLOCK_MS}")]);
                let begin = t.next();
                let snap = snapshot(t.pid(), "500ms");
                let ctx = format!("{kind}: {:#}\n{begin}", snap["stalls"]);
                let stalls = snap["stalls"].as_array().unwrap();
                assert_eq!(stalls.len(), 1, "{ctx}");
                assert_eq!(stalls[0]["tid"], begin["tid"], "{ctx}");
                assert_eq!(stalls[0]["task_id"], begin["task"], "{ctx}");
                assert_eq!(stalls[0]["exact"], false, "{ctx}");
                let truth =
                    snap["taken_at"]["monotonic_ns"].as_u64().unwrap() - begin["begin_ns"].as_u64().unwrap();
                let ours = stalls[0]["duration_ns"].as_u64().unwrap();
                assert!(truth < BLOCK_MS * 1_000_000, "the view was taken after the block: {ctx}");
                // A lower bound: never more than the truth, at least the window.
                assert!(ours <= truth + 20_000_000 && ours >= 450_000_000, "{ours} vs {truth}: {ctx}");
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

/// Both workers held in a poll at once: nobody can poll the I/O driver, for as long as the
/// shorter of the two polls has lasted (the targets' own clock readings are the truth); with one
/// worker free, no starvation.
#[test]
fn every_worker_inside_a_poll_starves_the_io_driver_and_one_free_worker_does_not() {
    let t = Target::start("tokio-stalls-newest", &["sleepall:1500".to_owned(), "sleep:1500".to_owned()]);
    let (a, b) = (t.next(), t.next());
    assert!(a["begin"] == true && b["begin"] == true, "{a}\n{b}");
    assert_ne!(a["tid"], b["tid"], "the two sleeps should hold both workers: {a}\n{b}");
    let snap = snapshot(t.pid(), "300ms");
    let ctx = format!("{:#}\n{a}\n{b}", snap["summary"]);
    let starved = snap["summary"]["io_driver_starved_ns"].as_u64().unwrap_or_else(|| panic!("{ctx}"));
    let later = a["begin_ns"].as_u64().unwrap().max(b["begin_ns"].as_u64().unwrap());
    let truth = snap["taken_at"]["monotonic_ns"].as_u64().unwrap() - later;
    assert!(truth < 1_500_000_000, "the view was taken after the sleeps: {ctx}");
    assert!(starved <= truth + 20_000_000 && starved >= 100_000_000, "{starved} vs {truth}: {ctx}");
    assert!(snap["stalls"].as_array().unwrap().len() == 2, "{:#}", snap["stalls"]);

    // The single sleep: one worker stalled, the other free to poll the driver.
    let single = loop {
        let line = t.next();
        if line["begin"] == true && line["kind"] == "sleep" {
            break line;
        }
    };
    let snap = snapshot(t.pid(), "300ms");
    assert_eq!(snap["stalls"].as_array().unwrap().len(), 1, "{:#}\n{single}", snap["stalls"]);
    assert!(snap["summary"]["io_driver_starved_ns"].is_null(), "{:#}", snap["summary"]);
}

/// An off-CPU profile of a worker stalled in one task: its sleep's samples carry the task id
/// the target printed (`tokio::task::id()`), and the role; the idle worker's and the main
/// thread's do not claim a task, and none has a `task_name` (the target serves no console).
/// Read back with pprof's own `-tags`.
#[test]
fn an_offcpu_profile_labels_a_stalled_workers_sleep_with_its_task() {
    let t = Target::start("tokio-stalls-newest", &["sleep:4000".to_owned()]);
    let begin = t.next();
    assert_eq!(begin["begin"], true, "{begin}");
    let dir = std::env::temp_dir().join(format!("parkscope-tokio-profile-{}", t.pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let pb = dir.join("offcpu.pb.gz");
    let pb_s = pb.to_str().unwrap();
    let out = run_parkscope(&["profile", "-p", &t.pid().to_string(), "--duration", "2s", "-o", pb_s]);
    out.assert_code(0);
    // No console-subscriber in this target: no console read, no notice, no task names.
    assert!(!out.stderr.contains("task names"), "{out}");
    let sleeping = parkscope_tests::pprof(&["-tags", "-tagfocus=syscall=clock_nanosleep", pb_s]);
    assert_eq!(tag_values(&sleeping, "task"), [begin["task"].to_string()], "{sleeping}");
    assert_eq!(tag_values(&sleeping, "role"), ["tokio_worker"], "{sleeping}");
    // Every task label of the whole profile is that one task: no parked worker or other thread
    // is labelled with a task it was not polling.
    let all = parkscope_tests::pprof(&["-tags", pb_s]);
    assert_eq!(tag_values(&all, "task"), [begin["task"].to_string()], "{all}");
    assert!(!all.contains("task_name:"), "{all}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The values of label `key` that carry a non-zero total in `pprof -tags` output.
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
