//! `parkscope schedtrace` against a live `blocker`: the line format, the counts against blocker's
//! manifest and /proc/PID/task, `--detail`, and a target that exits mid-trace.

use std::time::Duration;

use parkscope_tests::{Blocker, read_task_state, read_tids, run_parkscope};

/// One parsed `SCHED <ms>ms: threads=N ... maxblocked=<dur>` line.
#[derive(Debug)]
struct Sched {
    ms: u64,
    threads: u64,
    running: u64,
    runnable: u64,
    blocked: u64,
    read: u64,
    write: u64,
    poll: u64,
    futex: u64,
    sleep: u64,
    other: u64,
    maxblocked: String,
}

const KEYS: [&str; 10] =
    ["threads", "running", "runnable", "blocked", "read", "write", "poll", "futex", "sleep", "other"];

fn parse_line(line: &str) -> Sched {
    let bad = |why: &str| -> ! { panic!("malformed schedtrace line ({why}): {line:?}") };
    let rest = line.strip_prefix("SCHED ").unwrap_or_else(|| bad("no `SCHED ` prefix"));
    let (ms, rest) = rest.split_once("ms: ").unwrap_or_else(|| bad("no `<ms>ms: `"));
    let ms: u64 = ms.parse().unwrap_or_else(|_| bad("ms is not a number"));
    let fields: Vec<(&str, &str)> =
        rest.split(' ').map(|f| f.split_once('=').unwrap_or_else(|| bad("field without ="))).collect();
    if fields.len() != KEYS.len() + 1 {
        bad("wrong number of fields");
    }
    let mut n = [0u64; 10];
    for (i, key) in KEYS.iter().enumerate() {
        if fields[i].0 != *key {
            bad(&format!("expected {key}= at position {i}"));
        }
        n[i] = fields[i].1.parse().unwrap_or_else(|_| bad(&format!("{key} is not a number")));
    }
    let (key, maxblocked) = fields[KEYS.len()];
    if key != "maxblocked" {
        bad("last field is not maxblocked");
    }
    let unit_ok = ["ns", "us", "ms", "s", "m", "h"]
        .iter()
        .any(|u| maxblocked.strip_suffix(u).is_some_and(|num| !num.is_empty() && num.parse::<f64>().is_ok()));
    if !unit_ok {
        bad("maxblocked is not a duration");
    }
    Sched {
        ms,
        threads: n[0],
        running: n[1],
        runnable: n[2],
        blocked: n[3],
        read: n[4],
        write: n[5],
        poll: n[6],
        futex: n[7],
        sleep: n[8],
        other: n[9],
        maxblocked: maxblocked.to_owned(),
    }
}

/// `maxblocked` in nanoseconds (the formatter prints one decimal in the largest unit).
fn duration_ns(s: &str) -> f64 {
    for (unit, scale) in [("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)] {
        if let Some(num) = s.strip_suffix(unit)
            && let Ok(v) = num.parse::<f64>()
        {
            return v * scale;
        }
    }
    panic!("not a duration: {s}")
}

#[test]
fn lines_match_the_manifest_and_proc() {
    let b = Blocker::start(&[]);
    let out = run_parkscope(&["schedtrace", "-p", &b.pid.to_string(), "--interval", "500ms", "--count", "3"]);
    let tasks = read_tids(b.pid).len() as u64;
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "--count 3 printed {} lines: {out}", lines.len());
    let scheds: Vec<Sched> = lines.iter().map(|l| parse_line(l)).collect();

    assert!((400..1500).contains(&scheds[0].ms), "first line at {} ms: {out}", scheds[0].ms);
    for w in scheds.windows(2) {
        let gap = w[1].ms.saturating_sub(w[0].ms);
        assert!(w[1].ms > w[0].ms && (250..=900).contains(&gap), "lines not ~500 ms apart: {out}");
    }
    for s in &scheds {
        assert_eq!(s.threads, tasks, "threads= vs /proc/PID/task: {s:?}");
        assert_eq!(s.blocked, s.read + s.write + s.poll + s.futex + s.sleep + s.other, "class sum: {s:?}");
        assert_eq!(s.threads, s.running + s.runnable + s.blocked, "state sum: {s:?}");
        // From the manifest: pipe_read + tcp_recv read; pipe_write writes; mutex_wait + cond_wait
        // futex; epoll_wait polls; sleeper + late_read (still in its 3 s nanosleep) sleep.
        assert!(s.read >= 2, "read: {s:?}");
        assert!(s.write >= 1, "write: {s:?}");
        assert!(s.futex >= 2, "futex: {s:?}");
        assert!(s.poll >= 1, "poll: {s:?}");
        assert!(s.sleep >= 2, "sleep: {s:?}");
        assert!(s.running + s.runnable >= 1, "the spinner is on or waiting for a CPU: {s:?}");
        // Everyone but the spinner has been blocked since before the trace began.
        let max = duration_ns(&s.maxblocked);
        assert!(max >= s.ms as f64 * 1e6 * 0.9, "maxblocked {} below the trace's age: {s:?}", s.maxblocked);
        assert!(
            max <= b.started.elapsed().as_nanos() as f64 * 1.05,
            "maxblocked {} beyond the process's age",
            s.maxblocked
        );
    }
}

#[test]
fn detail_names_each_thread() {
    let b = Blocker::start(&[]);
    let out = run_parkscope(&[
        "schedtrace",
        "-p",
        &b.pid.to_string(),
        "--interval",
        "500ms",
        "--count",
        "1",
        "--detail",
    ]);
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    parse_line(lines[0]);
    let details: Vec<&str> = lines[1..].iter().map(|l| l.trim_start()).collect();
    assert_eq!(details.len(), read_tids(b.pid).len(), "one detail line per thread: {out}");
    for name in ["pipe_read", "pipe_write", "epoll_wait", "tcp_recv"] {
        let role = b.role(name);
        let want = format!(
            "tid={} name={name} state=sleeping syscall={} fd={}",
            role.tid,
            role.syscall.as_deref().expect("syscall"),
            role.fd.expect("fd")
        );
        assert!(details.iter().any(|l| l.starts_with(&want)), "no line starting {want:?}: {out}");
    }
    for name in ["mutex_wait", "cond_wait", "sleeper"] {
        let role = b.role(name);
        let want = format!(
            "tid={} name={name} state=sleeping syscall={}",
            role.tid,
            role.syscall.as_deref().expect("sc")
        );
        let line =
            details.iter().find(|l| l.starts_with(&want)).unwrap_or_else(|| panic!("no {want:?}: {out}"));
        assert!(!line.contains(" fd="), "{name} blocks on no fd: {line:?}");
    }
    let spinner = b.role("spinner");
    let prefix = format!("tid={} name=spinner state=", spinner.tid);
    let line = details.iter().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no spinner: {out}"));
    let state = line[prefix.len()..].split(' ').next().unwrap_or_default();
    assert!(matches!(state, "running" | "runnable"), "spinner: {line:?}");
    assert!(!line.contains("syscall="), "spinner: {line:?}");
}

#[test]
fn target_exit_ends_the_trace_with_5() {
    let b = Blocker::start(&["--exit-after-ms", "1200"]);
    let out = run_parkscope(&["schedtrace", "-p", &b.pid.to_string(), "--interval", "500ms"]);
    out.assert_code(5);
    assert!(out.elapsed < Duration::from_secs(6), "took {:?} to notice the exit at 1.2 s", out.elapsed);
    for line in out.stdout.lines() {
        parse_line(line);
    }
    assert!(out.stderr.lines().any(|l| l.starts_with("parkscope:")), "no `parkscope:` line: {out}");
}

/// `--json`: every line is one JSON object with the text line's numbers, and they agree with
/// the text form's idea of the same target (a text line taken just before) and with /proc.
#[test]
fn json_lines_parse_and_agree_with_the_text_form_and_proc() {
    let b = Blocker::start(&[]);
    let pid = b.pid.to_string();
    let text = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "1"]);
    text.assert_code(0);
    let t = parse_line(text.stdout.lines().next().expect("a text line"));
    let out = run_parkscope(&["schedtrace", "-p", &pid, "--interval", "300ms", "--count", "3", "--json"]);
    out.assert_code(0);
    let tids = read_tids(b.pid);
    // Blocked per /proc: every thread asleep (S or D), read after the trace; the blocker's
    // threads other than the spinner stay asleep for the test's whole life.
    let asleep = tids.iter().filter(|&&tid| matches!(read_task_state(b.pid, tid), 'S' | 'D')).count() as u64;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "--count 3 printed {} lines: {out}", lines.len());
    let mut last_ms = 0;
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        let n = |key: &str| v[key].as_u64().unwrap_or_else(|| panic!("{key} is not a count: {line}"));
        assert_eq!(n("pid"), u64::from(b.pid), "{line}");
        let ms = n("elapsed_ms");
        assert!(ms > last_ms && (200..2000).contains(&(ms - last_ms)), "lines not ~300 ms apart: {out}");
        last_ms = ms;
        assert_eq!(n("threads"), tids.len() as u64, "threads vs /proc/PID/task: {line}");
        assert_eq!(n("threads"), t.threads, "threads vs the text line: {line}");
        assert_eq!(n("blocked"), asleep, "blocked vs the threads /proc shows asleep: {line}");
        assert_eq!(n("blocked"), t.blocked, "blocked vs the text line: {line}");
        assert_eq!(n("running") + n("runnable"), t.running + t.runnable, "on or waiting for a CPU: {line}");
        let classes = ["read", "write", "poll", "futex", "sleep", "other"].map(n);
        assert_eq!(n("blocked"), classes.iter().sum::<u64>(), "class sum: {line}");
        // late_read leaves its 3 s nanosleep for read(2): the two counts move together.
        assert_eq!(n("read") + n("sleep"), t.read + t.sleep, "read+sleep vs the text line: {line}");
        for (key, text_count) in
            [("write", t.write), ("poll", t.poll), ("futex", t.futex), ("other", t.other)]
        {
            assert_eq!(n(key), text_count, "{key} vs the text line: {line}");
        }
        let max = v["max_blocked_ns"].as_u64().unwrap_or_else(|| panic!("no max_blocked_ns: {line}"));
        assert!(
            max as f64 >= duration_ns(&t.maxblocked),
            "max_blocked_ns {max} below the earlier text line's: {line}"
        );
        assert!(v["window_ns"].as_u64().is_some_and(|w| w > 0), "probes attached: {line}");
    }
}
