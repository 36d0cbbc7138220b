//! `parkscope top` in a real terminal: tmux runs it at 160x45 on the C blocker, on the Go
//! parked example, on the tokio iopark example (tasks parked on I/O), and on a recording of the C blocker (`top --from FILE`, whole and
//! truncated); keys are sent with `tmux send-keys`, and the screen is read back with
//! `tmux capture-pane -p`. The ground truth is the targets' own manifests (tids, fds, inodes,
//! the function each thread blocks in, iopark's task ids and fds), /proc, and the recording's
//! chunk offsets.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use parkscope_recording::{Item, Reader};
use parkscope_tests::{Blocker, GoTarget, parkscope_bin, run_parkscope};

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 160x45 session; the shell then prints the exit status
    /// and whether the terminal is back in canonical mode, and stays for us to read it.
    fn start(name: &str, command: &str) -> Tmux {
        let found = Command::new("tmux").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
        assert!(found, "tmux is needed for the end-to-end tests of top: `cargo xtask setup` installs it");
        let tmux = Tmux { socket: format!("parkscope-test-{name}-{}", std::process::id()) };
        let script = format!(
            "{command}; echo \"top exited $?\"; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon'; sleep 600"
        );
        tmux.run(&["new-session", "-d", "-x", "160", "-y", "45", "sh", "-c", &script]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("running tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Sends keys (tmux key names: "Enter", "Escape", "Space", or literal text with `-l`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn text(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
    }

    /// Polls the screen until `ok` holds; fails with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(start.elapsed() < timeout, "{what}: not on screen after {timeout:?}:\n{screen}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").status();
    }
}

/// `1.5s`, `>=300.0ms`, `2.0m`: a time as top prints it.
fn is_time(token: &str) -> bool {
    let t = token.trim_start_matches(">=");
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[digits.len()..];
    !digits.is_empty() && digits.parse::<f64>().is_ok() && ["ns", "us", "ms", "s", "m", "h"].contains(&unit)
}

/// The table rows of the screen: lines after the column header that start with a number.
fn rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("TID"))
        .skip(1)
        .filter(|l| l.split_whitespace().next().is_some_and(|t| t.parse::<u32>().is_ok()))
        .collect()
}

fn row_of(screen: &str, tid: u32) -> Option<&str> {
    rows(screen).into_iter().find(|l| l.split_whitespace().next() == Some(&tid.to_string()))
}

/// After `q`: the shell's line says top exited 0 and the terminal is canonical again.
fn assert_quits_cleanly(tmux: &Tmux) {
    tmux.keys(&["q"]);
    // The shell prints the exit status, then `icanon` or `-icanon` from stty.
    let screen = tmux.wait_for("the exit line and the terminal mode", Duration::from_secs(10), |s| {
        s.contains("top exited") && s.lines().any(|l| l.trim().trim_start_matches('-') == "icanon")
    });
    assert!(screen.contains("top exited 0"), "top did not exit 0:\n{screen}");
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "the terminal was left in raw mode (no `icanon` from stty):\n{screen}"
    );
    assert!(!screen.contains("? help"), "top's screen is still shown (alternate screen not left):\n{screen}");
}

#[test]
fn top_on_the_c_blocker() {
    let blocker = Blocker::start(&[]);
    let pipe = blocker.role("pipe_read");
    let writer = blocker.role("pipe_write");
    let bin = parkscope_bin();
    let tmux = Tmux::start("c", &format!("{} top -p {}", bin.display(), blocker.pid));

    // Within 3 s: the blocked rows with their syscall, fd description and time.
    let pipe_desc = pipe.fd_desc.clone().expect("pipe_read has an fd description");
    let screen = tmux.wait_for("the pipe reader's row", Duration::from_secs(3), |s| {
        row_of(s, pipe.tid).is_some_and(|r| r.contains(&pipe_desc))
    });
    let row = row_of(&screen, pipe.tid).unwrap();
    assert!(row.split_whitespace().any(|t| t == "read"), "{row}");
    assert!(row.split_whitespace().any(is_time), "no blocked time in {row}");
    let tcp = blocker.role("tcp_recv");
    let tcp_row = row_of(&screen, tcp.tid).unwrap_or_else(|| panic!("no tcp_recv row:\n{screen}"));
    assert!(tcp_row.contains("recvfrom"), "{tcp_row}");
    assert!(
        tcp_row.contains(&format!("{} -> {}", tcp.str_field("local"), tcp.str_field("remote"))),
        "{tcp_row}"
    );

    // A filter leaves only the matching rows.
    tmux.keys(&["/"]);
    tmux.text("syscall=read fd~pipe");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filtered rows", Duration::from_secs(3), |s| {
        s.contains("filter: syscall=read fd~pipe") && row_of(s, writer.tid).is_none()
    });
    let shown = rows(&screen);
    assert!(!shown.is_empty(), "the filter left nothing:\n{screen}");
    for r in &shown {
        assert!(r.split_whitespace().any(|t| t == "read") && r.contains("pipe:["), "a row not matching: {r}");
    }
    assert!(row_of(&screen, pipe.tid).is_some(), "the pipe reader was filtered out:\n{screen}");

    // Enter shows the selected thread (the first row) with its stacks.
    let first_tid: u32 = shown[0].split_whitespace().next().unwrap().parse().unwrap();
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the detail page", Duration::from_secs(3), |s| s.contains("Kernel stack"));
    assert!(screen.contains(&format!("Thread {first_tid} ")), "{screen}");
    assert!(screen.contains("User stack"), "{screen}");
    if first_tid == pipe.tid {
        assert!(screen.contains(&pipe.func), "the stack misses {}:\n{screen}", pipe.func);
    }
    assert!(screen.contains("read"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["Escape"]);

    // Pause: the screen stays identical for 2 s while the blocked times go on growing.
    tmux.keys(&["Space"]);
    let paused = tmux.wait_for("PAUSED", Duration::from_secs(3), |s| s.starts_with("PAUSED"));
    thread::sleep(Duration::from_secs(2));
    assert_eq!(tmux.screen(), paused, "the screen changed while paused");
    tmux.keys(&["Space"]);
    tmux.wait_for("live again with newer times", Duration::from_secs(3), |s| {
        s.starts_with("LIVE") && row_of(s, pipe.tid) != row_of(&paused, pipe.tid)
    });

    assert_quits_cleanly(&tmux);
}

#[test]
fn top_on_the_go_parked_example() {
    let target = GoTarget::start("parked-go1.27", &["-n", "2"], &[], false);
    let bin = parkscope_bin();
    let tmux = Tmux::start("go", &format!("{} top -p {}", bin.display(), target.pid));

    // The goroutine in a raw read on the pipe shows as a blocked thread within 3 s.
    let pipe_fd = target.info["pipe_fd"].as_i64().expect("pipe_fd");
    let screen = tmux.wait_for("the pipe-reading thread", Duration::from_secs(3), |s| {
        rows(s).iter().any(|r| r.contains(&format!(" {pipe_fd} pipe:[")))
    });
    let row = rows(&screen).into_iter().find(|r| r.contains(&format!(" {pipe_fd} pipe:["))).unwrap();
    assert!(row.split_whitespace().any(|t| t == "read"), "{row}");
    assert!(row.split_whitespace().any(is_time), "no blocked time in {row}");
    assert!(
        screen.lines().next().is_some_and(|l| l.contains(" go go1.27")),
        "no runtime in the header:\n{screen}"
    );
    assert!(screen.contains("gomaxprocs="), "no Go SCHED line:\n{screen}");

    // The goroutines, grouped by stack.
    tmux.keys(&["Tab"]);
    let screen = tmux.wait_for("the goroutine groups", Duration::from_secs(3), |s| s.contains("COUNT"));
    for reason in ["IO wait", "chan receive", "chan send", "select", "sleep"] {
        assert!(screen.contains(reason), "no {reason} group:\n{screen}");
    }

    // A filter on the wait reason leaves the chan receive group only.
    tmux.keys(&["/"]);
    tmux.text(r#"wait="chan receive""#);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filtered groups", Duration::from_secs(3), |s| {
        s.contains("filter: wait=") && !s.contains("select")
    });
    let groups: Vec<&str> = screen.lines().filter(|l| l.starts_with('+') || l.starts_with('-')).collect();
    assert!(!groups.is_empty(), "{screen}");
    for g in &groups {
        assert!(g.contains("chan receive"), "a group not matching: {g}");
    }
    assert!(groups.iter().any(|g| g.contains("main.parkedChanRecv")), "{screen}");

    // Enter on the group shows its stack, file:line included.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the group's stack", Duration::from_secs(3), |s| s.contains("Stack ("));
    assert!(screen.contains("runtime.gopark"), "{screen}");
    assert!(screen.contains("main.parkedChanRecv"), "{screen}");
    assert!(screen.contains("main.go:"), "no file:line in the stack:\n{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["Escape"]);

    // Pause while the target parks one more goroutine: the screen stays as it was; after the
    // pause the count has grown.
    tmux.keys(&["Space"]);
    let paused = tmux.wait_for("PAUSED", Duration::from_secs(3), |s| s.starts_with("PAUSED"));
    let count = |s: &str| -> usize {
        let l = s.lines().nth(2).unwrap_or("");
        l.split(" g ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = count(&paused);
    assert!(before > 0, "no goroutine count in the header:\n{paused}");
    target.park_late_goroutine();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(tmux.screen(), paused, "the screen changed while paused");
    tmux.keys(&["Space"]);
    tmux.wait_for("the late goroutine after the pause", Duration::from_secs(3), |s| count(s) == before + 1);

    assert_quits_cleanly(&tmux);
}

#[test]
fn top_refuses_a_pipe() {
    let blocker = Blocker::start(&[]);
    let out = Command::new(parkscope_bin())
        .args(["top", "-p", &blocker.pid.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running parkscope");
    assert_eq!(out.status.code(), Some(10), "exit code for a non-terminal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("parkscope: top needs a terminal"), "{err}");
    assert!(err.contains("hint: ") && err.contains("parkscope snapshot"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Records the C blocker for 3 s, one snapshot a second (4 snapshots: at attach, then each
/// second); returns the file.
fn record_blocker(blocker: &Blocker, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("parkscope-top-from-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("blocker.psrec");
    let pid = blocker.pid.to_string();
    let out = run_parkscope(&[
        "record",
        "-p",
        &pid,
        "-o",
        file.to_str().unwrap(),
        "--duration",
        "3s",
        "--interval",
        "1s",
    ]);
    out.assert_code(0);
    file
}

/// Byte offsets of the recording's snapshot chunks, read with the format's own reader.
fn snapshot_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut r = Reader::new(bytes).expect("a recording");
    let mut offsets = Vec::new();
    while let Some(item) = r.next_item().expect("an undamaged recording") {
        if let Item::Snapshot(_, off) = item {
            offsets.push(off);
        }
    }
    offsets
}

/// `2.4s`, `>=995.4ms`: a time as top prints it, in seconds.
fn seconds(token: &str) -> f64 {
    let t = token.trim_start_matches(">=");
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let v: f64 = digits.parse().unwrap_or_else(|_| panic!("not a time: {token}"));
    v * match &t[digits.len()..] {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        u => panic!("unit {u} in {token}"),
    }
}

/// The replay state of the header: `REPLAY 2/4 995.4ms/2.9s ...` as (index, count, offset s).
fn replay_state(screen: &str) -> (usize, usize, f64) {
    let first = screen.lines().next().unwrap_or_default();
    let mut words = first.split_whitespace();
    assert_eq!(words.next(), Some("REPLAY"), "no replay header:\n{screen}");
    let (i, n) = words.next().and_then(|w| w.split_once('/')).expect("i/n");
    let (at, _) = words.next().and_then(|w| w.split_once('/')).expect("offset/length");
    (i.parse().unwrap(), n.trim_end_matches('+').parse().unwrap(), seconds(at))
}

/// The blocked time in a thread's row (its last time-shaped token).
fn row_time(row: &str) -> f64 {
    seconds(row.split_whitespace().rfind(|t| is_time(t)).unwrap_or_else(|| panic!("no time in {row}")))
}

#[test]
fn top_from_a_recording_of_the_c_blocker() {
    let blocker = Blocker::start(&[]);
    let pipe = blocker.role("pipe_read");
    let writer = blocker.role("pipe_write");
    let file = record_blocker(&blocker, "whole");
    let snapshots = snapshot_offsets(&std::fs::read(&file).unwrap()).len();
    assert!(snapshots >= 3, "{snapshots} snapshots recorded");
    let bin = parkscope_bin();
    let tmux = Tmux::start("from", &format!("{} top --from {}", bin.display(), file.display()));

    // Within 3 s: the first snapshot's blocked rows with syscall, fd description and time.
    let pipe_desc = pipe.fd_desc.clone().expect("pipe_read has an fd description");
    let screen = tmux.wait_for("the pipe reader's row", Duration::from_secs(3), |s| {
        row_of(s, pipe.tid).is_some_and(|r| r.contains(&pipe_desc))
    });
    assert_eq!(replay_state(&screen), (1, snapshots, 0.0), "opens at the first snapshot:\n{screen}");
    let row = row_of(&screen, pipe.tid).unwrap();
    assert!(row.split_whitespace().any(|t| t == "read"), "{row}");
    assert!(row.split_whitespace().any(is_time), "no blocked time in {row}");
    let tcp = blocker.role("tcp_recv");
    let tcp_row = row_of(&screen, tcp.tid).unwrap_or_else(|| panic!("no tcp_recv row:\n{screen}"));
    assert!(tcp_row.contains("recvfrom"), "{tcp_row}");
    assert!(
        tcp_row.contains(&format!("{} -> {}", tcp.str_field("local"), tcp.str_field("remote"))),
        "{tcp_row}"
    );
    assert!(screen.lines().nth(1).is_some_and(|l| l.starts_with("SCHED ")), "no SCHED line:\n{screen}");

    // A filter leaves only the matching rows.
    tmux.keys(&["/"]);
    tmux.text("syscall=read fd~pipe");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filtered rows", Duration::from_secs(3), |s| {
        s.contains("filter: syscall=read fd~pipe") && row_of(s, writer.tid).is_none()
    });
    let shown = rows(&screen);
    assert!(!shown.is_empty(), "the filter left nothing:\n{screen}");
    for r in &shown {
        assert!(r.split_whitespace().any(|t| t == "read") && r.contains("pipe:["), "a row not matching: {r}");
    }
    assert!(row_of(&screen, pipe.tid).is_some(), "the pipe reader was filtered out:\n{screen}");

    // Enter shows the selected thread with its stacks, as recorded.
    let first_tid: u32 = shown[0].split_whitespace().next().unwrap().parse().unwrap();
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the detail page", Duration::from_secs(3), |s| s.contains("Kernel stack"));
    assert!(screen.contains(&format!("Thread {first_tid} ")), "{screen}");
    assert!(screen.contains("User stack"), "{screen}");
    if first_tid == pipe.tid {
        assert!(screen.contains(&pipe.func), "the stack misses {}:\n{screen}", pipe.func);
    }
    tmux.keys(&["Escape"]);
    tmux.keys(&["Escape"]);

    // `]` steps to the next snapshot: a later time, and the pipe reader blocked for longer by
    // as much (to the 0.1 s the screen prints); `[` steps back; no step past either end.
    let before = tmux.wait_for("the rows again", Duration::from_secs(3), |s| row_of(s, pipe.tid).is_some());
    tmux.keys(&["]"]);
    let after = tmux.wait_for("the second snapshot", Duration::from_secs(3), |s| replay_state(s).0 == 2);
    let (_, _, t0) = replay_state(&before);
    let (_, _, t1) = replay_state(&after);
    assert!(t1 > t0 + 0.5, "the time did not move on: {t0} -> {t1}\n{after}");
    let grew = row_time(row_of(&after, pipe.tid).unwrap()) - row_time(row_of(&before, pipe.tid).unwrap());
    assert!(
        (grew - (t1 - t0)).abs() <= 0.2,
        "blocked {grew:.2}s longer over {:.2}s:\n{before}\n{after}",
        t1 - t0
    );
    assert_ne!(before.lines().nth(1), after.lines().nth(1), "the SCHED line is the new instant's");
    tmux.keys(&["["]);
    tmux.wait_for("back at the first", Duration::from_secs(3), |s| replay_state(s).0 == 1);
    tmux.keys(&["["]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(replay_state(&tmux.screen()).0, 1, "a step before the first");
    // `g` to a time past the end: the last snapshot.
    tmux.keys(&["g"]);
    tmux.text("1h");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the last snapshot", Duration::from_secs(3), |s| replay_state(s).0 == snapshots);

    assert_quits_cleanly(&tmux);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn top_from_a_truncated_recording_replays_up_to_the_damage_and_exits_9() {
    let blocker = Blocker::start(&[]);
    let pipe = blocker.role("pipe_read");
    let file = record_blocker(&blocker, "torn");
    let bytes = std::fs::read(&file).unwrap();
    let offsets = snapshot_offsets(&bytes);
    assert!(offsets.len() >= 3, "{offsets:?}");
    // Cut inside the third snapshot's chunk: two snapshots are whole.
    std::fs::write(&file, &bytes[..offsets[2] as usize + 30]).unwrap();
    let bin = parkscope_bin();
    let tmux = Tmux::start("torn", &format!("{} top --from {}", bin.display(), file.display()));

    let damage = format!("ENDS EARLY (damaged at byte {})", offsets[2]);
    let screen = tmux.wait_for("the replay of what precedes the damage", Duration::from_secs(3), |s| {
        s.lines().next().is_some_and(|l| l.contains(&damage)) && row_of(s, pipe.tid).is_some()
    });
    assert_eq!(replay_state(&screen).0, 1);
    assert_eq!(replay_state(&screen).1, 2, "two whole snapshots:\n{screen}");
    assert!(
        screen.contains(&format!("! recording ends early at byte {}: expected", offsets[2])),
        "the status line says why:\n{screen}"
    );
    let row = row_of(&screen, pipe.tid).unwrap();
    assert!(row.contains(pipe.fd_desc.as_deref().unwrap()) && row.contains("read"), "{row}");
    tmux.keys(&["]"]);
    tmux.wait_for("the second snapshot", Duration::from_secs(3), |s| replay_state(s).0 == 2);
    tmux.keys(&["]"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(replay_state(&tmux.screen()).0, 2, "nothing past the damage");

    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the exit line and the terminal mode", Duration::from_secs(10), |s| {
        s.contains("top exited") && s.lines().any(|l| l.trim().trim_start_matches('-') == "icanon")
    });
    assert!(screen.contains("top exited 9"), "a damaged recording exits 9:\n{screen}");
    assert!(screen.lines().any(|l| l.trim() == "icanon"), "the terminal was left raw:\n{screen}");
    // The cause again on stderr, once the terminal is back.
    assert!(
        screen.contains(&format!(": at byte {}: expected", offsets[2]))
            && screen.contains("replayed the 2 snapshots before it"),
        "{screen}"
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn top_from_refuses_what_is_not_a_recording_and_a_pipe() {
    let dir = std::env::temp_dir().join(format!("parkscope-top-from-{}-refuse", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a recording\n").unwrap();
    // Not a recording: exit 9 before any terminal is needed.
    let out = run_parkscope(&["top", "--from", text.to_str().unwrap()]);
    out.assert_code(9);
    assert!(out.stderr.starts_with(&format!("parkscope: recording {}: at byte 0:", text.display())), "{out}");
    assert!(out.stderr.contains("hint: "), "{out}");
    assert_eq!(out.stderr.lines().count(), 2, "one line of cause, one of hint: {out}");

    // A real recording, but no terminal: exit 10 with the replaying alternatives.
    let blocker = Blocker::start(&[]);
    let file = record_blocker(&blocker, "pipe");
    let out = run_parkscope(&["top", "--from", file.to_str().unwrap()]);
    out.assert_code(10);
    assert!(out.stderr.starts_with("parkscope: top needs a terminal"), "{out}");
    assert!(out.stderr.contains("parkscope snapshot --from"), "{out}");

    // --from and -p exclude each other.
    let out = run_parkscope(&["top", "--from", file.to_str().unwrap(), "-p", &blocker.pid.to_string()]);
    out.assert_code(2);
    assert!(out.stderr.contains("cannot be used with"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// The tokio iopark example: the Tasks tab lists every waiter the target says it parked on I/O
/// (its own task ids and fds), the `block_on` future included, and not the task asleep on a
/// timer; the header counts the tasks.
#[test]
fn top_on_tokio_tasks_parked_on_io() {
    let mut child = Command::new(parkscope_tests::example_bin("tokio-iopark-newest"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("examples/bin/tokio-iopark-newest (run `cargo xtask examples`)");
    let lines = parkscope_tests::lines_of(child.stdout.take().unwrap());
    let mut parks: Vec<serde_json::Value> = Vec::new();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
        if v["ready"] == true {
            break;
        }
        parks.push(v);
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let tmux = Tmux::start("tokio-io", &format!("{} top -p {}", parkscope_bin().display(), child.0.id()));
    // The tab appears with the first view that has waiters; then Tab moves to it.
    tmux.wait_for("the tokio header and the tab", Duration::from_secs(5), |s| {
        s.contains("tokio 1.54.1") && s.contains("Tasks on I/O")
    });
    tmux.keys(&["Tab"]);
    let listed = |screen: &str, p: &serde_json::Value| {
        let fd = p["fd"].to_string();
        let who = if p["park"] == "block_on_accept" { "block_on".to_owned() } else { p["task"].to_string() };
        screen
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|r| r.len() > 3 && r[0] == who && r[2] == fd)
    };
    // Every waiter the target printed, on its fd (a refresh later if the first view came a poll
    // early), and never the task asleep on a timer.
    let screen = tmux.wait_for("every waiter on its fd", Duration::from_secs(5), |s| {
        s.contains("WAITS FOR") && parks.iter().filter(|p| p["park"] != "timer").all(|p| listed(s, p))
    });
    for p in parks.iter().filter(|p| p["park"] == "timer") {
        assert!(!listed(&screen, p), "the timer task is listed on its fd: {p}\n{screen}");
    }
    let tasks = parks.iter().filter(|p| p["park"] != "timer" && p["task"].is_u64()).count();
    assert!(screen.contains(&format!("| io {tasks} |")), "io count of {tasks} tasks:\n{screen}");
    assert_quits_cleanly(&tmux);
}
