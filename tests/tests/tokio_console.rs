//! tokio tasks through console-subscriber, against console-subscriber's own example program
//! (`examples/bin/console-app`, built from the crate's crates.io source by `cargo xtask
//! examples`). Ground truth: the test's own `WatchUpdates` stream from the same target (the
//! console protocol itself), and the misbehaviours the example's tasks were written to show
//! (`coma` loses its waker, `burn` wakes itself, `noyield`'s `greedy` never yields), which are
//! what tokio-console's warnings flag in them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use console_api::instrument::{InstrumentRequest, Update, instrument_client::InstrumentClient};
use parkscope_tests::{example_bin, run_parkscope};
use serde_json::Value;

/// console-subscriber's default publish interval (the app does not change it).
const PUBLISH_INTERVAL_NS: u64 = 1_000_000_000;

/// console-app with `args`, serving the console on a port of its own.
struct App {
    child: Child,
    addr: SocketAddr,
}

impl App {
    fn start(args: &[&str]) -> App {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(example_bin("console-app"))
            .args(args)
            .env("TOKIO_CONSOLE_BIND", addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting console-app");
        App { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One task as the test's own stream has it after an update.
#[derive(Debug, Clone)]
struct Truth {
    name: Option<String>,
    task_id: Option<u64>,
    polls: u64,
    busy_ns: u64,
    last_poll_started: Option<u64>,
    last_poll_ended: Option<u64>,
    dropped: bool,
    wakes: u64,
    self_wakes: u64,
}

impl Truth {
    fn running(&self) -> bool {
        self.last_poll_started > self.last_poll_ended
    }

    /// Busy time at `now`, the poll in progress included.
    fn busy_at(&self, now: u64) -> u64 {
        match self.last_poll_started {
            Some(s) if self.running() => self.busy_ns + now.saturating_sub(s),
            _ => self.busy_ns,
        }
    }
}

/// The whole task state after each update of the test's stream.
#[derive(Debug, Clone, Default)]
struct State {
    now: u64,
    tasks: BTreeMap<u64, Truth>,
}

/// A protobuf timestamp as ns since the Unix epoch.
fn stamp(t: Option<&prost_types::Timestamp>) -> Option<u64> {
    t.map(|t| t.seconds as u64 * 1_000_000_000 + t.nanos as u64)
}

fn truth(name: Option<String>, task_id: Option<u64>, s: &console_api::tasks::Stats) -> Truth {
    let poll = s.poll_stats.as_ref();
    Truth {
        name,
        task_id,
        polls: poll.map_or(0, |p| p.polls),
        busy_ns: poll
            .and_then(|p| p.busy_time.as_ref())
            .map_or(0, |d| d.seconds as u64 * 1_000_000_000 + d.nanos as u64),
        last_poll_started: stamp(poll.and_then(|p| p.last_poll_started.as_ref())),
        last_poll_ended: stamp(poll.and_then(|p| p.last_poll_ended.as_ref())),
        dropped: s.dropped_at.is_some(),
        wakes: s.wakes,
        self_wakes: s.self_wakes,
    }
}

/// Streams the target's updates (the test's own subscription) on a thread of its own, each
/// folded into the full state; ends when the receiver is dropped.
fn watch(addr: SocketAddr) -> mpsc::Receiver<State> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let mut client = loop {
                match InstrumentClient::connect(format!("http://{addr}")).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let mut stream =
                client.watch_updates(InstrumentRequest {}).await.expect("WatchUpdates").into_inner();
            let mut state = State::default();
            while let Ok(Some(update)) = stream.message().await {
                fold(&mut state, update);
                if tx.send(state.clone()).is_err() {
                    return;
                }
            }
        });
    });
    rx
}

fn fold(state: &mut State, update: Update) {
    state.now = stamp(update.now.as_ref()).expect("update.now");
    let Some(tu) = update.task_update else { return };
    let mut stats = tu.stats_update;
    for task in tu.new_tasks {
        let id = task.id.expect("task id").id;
        let mut name = None;
        let mut task_id = None;
        for f in &task.fields {
            match (&f.name, &f.value) {
                (Some(console_api::field::Name::StrName(n)), Some(v)) if n == "task.name" => {
                    name = Some(match v {
                        console_api::field::Value::StrVal(s) | console_api::field::Value::DebugVal(s) => {
                            s.clone()
                        }
                        other => format!("{other:?}"),
                    })
                }
                (Some(console_api::field::Name::StrName(n)), Some(console_api::field::Value::U64Val(v)))
                    if n == "task.id" =>
                {
                    task_id = Some(*v)
                }
                _ => {}
            }
        }
        let Some(s) = stats.remove(&id) else { continue };
        state.tasks.insert(id, truth(name, task_id, &s));
    }
    for (id, s) in stats {
        if let Some(t) = state.tasks.get_mut(&id) {
            *t = truth(t.name.clone(), t.task_id, &s);
        }
    }
}

/// The next state of the stream that satisfies `ready`, waiting at most `within`.
fn wait_for(
    rx: &mpsc::Receiver<State>,
    within: Duration,
    what: &str,
    ready: impl Fn(&State) -> bool,
) -> State {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) if ready(&s) => return s,
            Ok(_) => {}
            Err(e) => panic!("the console stream never showed {what} within {within:?} ({e})"),
        }
    }
}

fn snapshot(pid: u32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["snapshot", "-p", &pid, "--json", "--no-stacks"];
    args.extend_from_slice(extra);
    let out = run_parkscope(&args);
    out.assert_code(0);
    let v = out.json();
    assert!(v["task_source"]["error"].is_null(), "tasks not read: {out}");
    assert!(!v["threads"].as_array().expect("threads").is_empty(), "no threads: {out}");
    v
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

/// The warning names of a task (`name` or `name: detail`).
fn warning_names(t: &Value) -> Vec<String> {
    t["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().expect("a string").split(':').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn task_list_agrees_with_the_console_protocol() {
    let app = App::start(&["burn", "blocks"]);
    let rx = watch(app.addr);
    // The subscription's full state, then one published tick: the app is up and publishing.
    let first = wait_for(&rx, Duration::from_secs(20), "a first update", |_| true);
    wait_for(&rx, Duration::from_secs(5), "a published tick", |s| s.now > first.now);

    // No --console-addr: the endpoint is found among the app's listening sockets.
    let ours = snapshot(app.pid(), &["--window", "1s"]);
    let source = &ours["task_source"];
    assert_eq!(source["addr"].as_str(), Some(app.addr.to_string().as_str()), "{source}");
    let at = u64_of(&source["at_unix_ns"]);
    let mut states = Vec::new();
    loop {
        let s = wait_for(&rx, Duration::from_secs(5), "an update past ours", |_| true);
        let done = s.now >= at;
        states.push(s);
        if done {
            break;
        }
    }
    let next = states.last().expect("a state").clone();
    let prev = states.iter().rev().find(|s| s.now <= at).cloned().unwrap_or_else(|| first.clone());
    assert!(prev.now <= at && at <= next.now);

    let tasks = ours["tasks"].as_array().expect("tasks");
    assert_eq!(u64_of(&ours["summary"]["tasks"]) as usize, tasks.len());
    let mut exact = 0;
    for t in tasks {
        let id = u64_of(&t["console_id"]);
        let truth_next =
            next.tasks.get(&id).unwrap_or_else(|| panic!("task {id} unknown to the protocol: {t}"));
        assert_eq!(t["name"].as_str(), truth_next.name.as_deref(), "{t}");
        assert_eq!(t["task_id"].as_u64(), truth_next.task_id, "{t}");
        let polls = u64_of(&t["polls"]);
        let busy = u64_of(&t["busy_ns"]);
        let (prev_polls, prev_busy) = prev.tasks.get(&id).map_or((0, 0), |p| (p.polls, p.busy_at(prev.now)));
        assert!(
            prev_polls <= polls && polls <= truth_next.polls,
            "task {id} polls {polls} not within the protocol's {prev_polls}..{} : {t}",
            truth_next.polls
        );
        let next_busy = truth_next.busy_at(next.now);
        assert!(
            prev_busy <= busy && busy <= next_busy,
            "task {id} busy {busy} not within the protocol's {prev_busy}..{next_busy}: {t}"
        );
        assert!(busy - prev_busy <= PUBLISH_INTERVAL_NS, "task {id} busy {busy} vs {prev_busy}: {t}");
        if prev.now == at {
            // The same published tick as ours: the same numbers.
            assert_eq!((polls, busy), (prev_polls, prev_busy), "task {id} at the same tick: {t}");
            exact += 1;
        }
    }
    // Every live task the protocol listed before our update is in our list.
    for (id, truth) in prev.tasks.iter().filter(|(_, t)| !t.dropped) {
        assert!(
            tasks.iter().any(|t| t["console_id"].as_u64() == Some(*id)),
            "live task {id} ({:?}) missing from ours",
            truth.name
        );
    }
    for name in ["burn", "blocks", "task1", "task2"] {
        assert!(tasks.iter().any(|t| t["name"].as_str() == Some(name)), "no task {name}");
    }
    eprintln!("{} tasks, {exact} compared at the very tick the protocol published", tasks.len());
}

#[test]
fn misbehaving_tasks_get_tokio_consoles_warnings() {
    let app = App::start(&["coma", "burn", "noyield"]);
    let rx = watch(app.addr);
    // Until each misbehaviour shows in the protocol's own numbers: burn has woken itself more
    // than half the time, and greedy (noyield's child) has been in its first poll over 1.5 s
    // (it sleeps 20 s in it; 12 s leaves room before the next greedy starts).
    wait_for(&rx, Duration::from_secs(20), "burn self-waking and greedy stuck", |s| {
        let live = || s.tasks.values().filter(|t| !t.dropped);
        let burn = live()
            .filter(|t| t.name.as_deref() == Some("burn"))
            .any(|t| t.wakes > 0 && t.self_wakes * 100 / t.wakes > 50);
        let greedy = live().filter(|t| t.name.as_deref() == Some("greedy")).any(|t| {
            t.running()
                && t.polls <= 1
                && (1_500_000_000..12_000_000_000)
                    .contains(&s.now.saturating_sub(t.last_poll_started.unwrap_or(u64::MAX)))
        });
        burn && greedy
    });
    let ours = snapshot(app.pid(), &["--window", "0", "--console-addr", &app.addr.to_string()]);
    let tasks = ours["tasks"].as_array().expect("tasks");
    let with = |name: &str| -> Vec<&Value> {
        tasks.iter().filter(|t| t["name"].as_str() == Some(name) && t["state"] != "completed").collect()
    };
    let coma = with("coma");
    assert_eq!(coma.len(), 1, "{tasks:#?}");
    assert_eq!(warning_names(coma[0]), ["lost-waker"], "{}", coma[0]);
    let burn = with("burn");
    assert_eq!(burn.len(), 1, "{tasks:#?}");
    assert_eq!(warning_names(burn[0]), ["self-wakes"], "{}", burn[0]);
    let greedy: Vec<&Value> = with("greedy").into_iter().filter(|t| t["state"] == "running").collect();
    assert_eq!(greedy.len(), 1, "{tasks:#?}");
    assert_eq!(warning_names(greedy[0]), ["never-yielded"], "{}", greedy[0]);
    // Nothing else misbehaves: the sleeping `wait` tasks, task1/task2, noyield itself.
    for t in tasks {
        if !["coma", "burn", "greedy"].contains(&t["name"].as_str().unwrap_or_default()) {
            assert!(warning_names(t).is_empty(), "unexpected warning: {t}");
        }
    }
}

#[test]
fn a_dead_or_hostile_console_costs_the_task_list_only() {
    let app = App::start(&[]);
    wait_for(&watch(app.addr), Duration::from_secs(20), "the app's console", |_| true);
    let pid = app.pid().to_string();
    let run = |addr: &str| {
        let out = run_parkscope(&[
            "snapshot",
            "-p",
            &pid,
            "--json",
            "--no-stacks",
            "--window",
            "0",
            "--console-addr",
            addr,
        ]);
        out.assert_code(0);
        let v = out.json();
        assert!(!v["threads"].as_array().expect("threads").is_empty(), "{out}");
        assert!(v["tasks"].as_array().expect("tasks").is_empty(), "{out}");
        assert!(v["task_source"]["hint"].is_string(), "{out}");
        (v["task_source"]["error"].as_str().expect("an error").to_owned(), out.elapsed)
    };
    // Nobody listens there.
    let dead = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port");
    let (err, _) = run(&dead.to_string());
    assert!(err.contains("cannot connect"), "{err}");
    // A listener that answers with junk, then holds the connection open.
    let hostile = TcpListener::bind("127.0.0.1:0").expect("listener");
    let hostile_addr = hostile.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in hostile.incoming().take(4) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = conn.write_all(&[0xff; 1 << 16]);
                std::thread::sleep(Duration::from_secs(10));
            });
        }
    });
    let (err, elapsed) = run(&hostile_addr.to_string());
    assert!(err.contains(&hostile_addr.to_string()), "{err}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn a_target_in_its_own_network_namespace_is_read_through_it() {
    // A fresh network namespace with only loopback: the app's 127.0.0.1:6669 there is not
    // reachable from ours. unshare execs sh, which execs the app: one pid.
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\""])
        .arg(example_bin("console-app"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    // console-subscriber's listener (port 6669 = 0x1A0D, state 0A = listen) in its namespace.
    while !std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default().lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(":1A0D") && f[3] == "0A"
    }) {
        assert!(Instant::now() < deadline, "the app in its namespace never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The app spawns task1 and task2 just after its console listens: a first read may come
    // before task2 exists, so read again (each a whole snapshot) until both are there.
    let has = |v: &Value, name: &str| {
        v["tasks"].as_array().is_some_and(|t| t.iter().any(|t| t["name"].as_str() == Some(name)))
    };
    let ours = loop {
        let ours = snapshot(pid, &["--window", "0"]);
        if ["task1", "task2"].iter().all(|n| has(&ours, n)) || Instant::now() >= deadline {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ours["task_source"]["addr"].as_str(), Some("127.0.0.1:6669"));
    for name in ["task1", "task2"] {
        assert!(has(&ours, name), "no task {name}: {:#?}", ours["tasks"]);
    }
}

/// One sample of a pprof profile as `go tool pprof -raw` prints it: its first value and its
/// labels (string and numeric alike, by key).
#[derive(Debug)]
struct RawSample {
    value: i64,
    labels: BTreeMap<String, String>,
}

/// Every sample of a profile, from pprof's own `-raw` dump: a line of values (`V1 V2: LOCS`),
/// then a line of string labels and one of numeric labels (`key:[value] ...`), each if any.
fn raw_samples(path: &str) -> Vec<RawSample> {
    let raw = parkscope_tests::pprof(&["-raw", path]);
    let mut samples: Vec<RawSample> = Vec::new();
    let section = raw.lines().skip_while(|l| !l.starts_with("Samples:")).skip(2);
    for line in section.take_while(|l| !l.starts_with("Locations")) {
        if line.contains(":[") {
            let sample = samples.last_mut().unwrap_or_else(|| panic!("labels before a sample: {raw}"));
            for pair in line.trim().split("] ") {
                let (k, v) = pair.split_once(":[").unwrap_or_else(|| panic!("label {pair:?}: {raw}"));
                sample.labels.insert(k.to_owned(), v.trim_end_matches(']').to_owned());
            }
        } else if let Some((values, _)) = line.split_once(':') {
            let value = values.split_whitespace().next().and_then(|v| v.parse().ok());
            let value = value.unwrap_or_else(|| panic!("sample line {line:?}: {raw}"));
            samples.push(RawSample { value, labels: BTreeMap::new() });
        }
    }
    assert!(!samples.is_empty(), "no samples: {raw}");
    samples
}

/// A temporary directory of this test's, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("parkscope-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An off-CPU profile of the app while `greedy` (noyield's child, named so in the app's
/// source) sleeps 20 s inside its poll: the worker's sleep carries `task` = greedy's task id
/// and `task_name` = greedy; `huge-blocking` (`large`'s named spawn_blocking, sleeping 100 ms
/// at a time) names its blocking thread's sleeps; and every sample with a task is named
/// exactly as the test's own console stream names that task id (no name where the protocol
/// gives none). `burn` spins on a CPU: an off-CPU profile has no task for it.
#[test]
fn an_offcpu_profile_names_each_task_as_the_console_protocol_does() {
    let app = App::start(&["noyield", "blocks", "large", "burn"]);
    let rx = watch(app.addr);
    // greedy inside its first poll, with at least 8 s of its 20 s sleep left for the window.
    let running_greedy = |s: &State| -> Option<u64> {
        s.tasks
            .values()
            .filter(|t| !t.dropped && t.name.as_deref() == Some("greedy") && t.running() && t.polls <= 1)
            .find(|t| s.now.saturating_sub(t.last_poll_started.unwrap_or(u64::MAX)) < 12_000_000_000)
            .and_then(|t| t.task_id)
    };
    let before =
        wait_for(&rx, Duration::from_secs(20), "greedy in its poll", |s| running_greedy(s).is_some());
    let greedy = running_greedy(&before).expect("greedy's task id");

    let dir = TempDir::new("task-names");
    let pb = dir.file("offcpu.pb.gz");
    let out = run_parkscope(&["profile", "-p", &app.pid().to_string(), "--duration", "3s", "-o", &pb]);
    out.assert_code(0);
    assert!(!out.stderr.contains("task names not read"), "{out}");
    // The protocol's names from an update published over an interval after the window (the
    // queued ones are drained first): every task the profile saw is in it.
    let ended = Instant::now();
    let after = loop {
        let s = wait_for(&rx, Duration::from_secs(5), "an update after the profile", |_| true);
        if ended.elapsed() > Duration::from_nanos(PUBLISH_INTERVAL_NS) {
            break s;
        }
    };
    let names: BTreeMap<String, String> = after
        .tasks
        .values()
        .filter_map(|t| Some((t.task_id?.to_string(), t.name.clone().filter(|n| !n.is_empty())?)))
        .collect();

    let samples = raw_samples(&pb);
    let mut named = 0;
    for s in samples.iter().filter(|s| s.value > 0) {
        let Some(task) = s.labels.get("task") else {
            assert!(!s.labels.contains_key("task_name"), "a task_name without a task: {s:?}");
            continue;
        };
        assert_eq!(s.labels.get("task_name"), names.get(task), "task {task} ({s:?}); protocol: {names:?}");
        named += usize::from(s.labels.contains_key("task_name"));
    }
    let greedy_sleep = samples.iter().find(|s| {
        s.value > 0
            && s.labels.get("task") == Some(&greedy.to_string())
            && s.labels.get("syscall").map(String::as_str) == Some("clock_nanosleep")
    });
    let greedy_sleep = greedy_sleep.unwrap_or_else(|| panic!("no sleep of greedy ({greedy}): {samples:#?}"));
    assert_eq!(greedy_sleep.labels.get("task_name").map(String::as_str), Some("greedy"), "{greedy_sleep:?}");
    assert_eq!(greedy_sleep.labels.get("role").map(String::as_str), Some("tokio_worker"), "{greedy_sleep:?}");
    // The whole window, within a scheduling tick.
    assert!(greedy_sleep.value > 2_500_000_000, "{greedy_sleep:?}");
    let huge_blocking = names.iter().find(|(_, n)| *n == "huge-blocking").map(|(id, _)| id);
    let huge_blocking = huge_blocking.unwrap_or_else(|| panic!("no huge-blocking task: {names:?}"));
    assert!(
        samples.iter().any(|s| s.value > 0
            && s.labels.get("task") == Some(huge_blocking)
            && s.labels.get("role").map(String::as_str) == Some("tokio_blocking")
            && s.labels.get("task_name").map(String::as_str) == Some("huge-blocking")),
        "no named sleep of huge-blocking ({huge_blocking}): {samples:#?}"
    );
    let comments = parkscope_tests::pprof(&["-comments", &pb]);
    assert!(comments.contains(&format!("console-subscriber at {}", app.addr)), "{comments}");
    eprintln!("{named} samples named, {} tasks named by the protocol", names.len());
}

/// A console that cannot be read costs the names only: the profile is written, with its
/// threads and task ids, no `task_name`, and one line on stderr says why.
#[test]
fn a_dead_console_costs_the_profile_its_task_names_only() {
    let app = App::start(&[]);
    wait_for(&watch(app.addr), Duration::from_secs(20), "the app's console", |_| true);
    let dead = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port");
    let dir = TempDir::new("dead-console");
    let pb = dir.file("offcpu.pb.gz");
    let pid = app.pid().to_string();
    let out = run_parkscope(&[
        "profile",
        "-p",
        &pid,
        "--duration",
        "1s",
        "-o",
        &pb,
        "--console-addr",
        &dead.to_string(),
    ]);
    out.assert_code(0);
    let notice: Vec<&str> = out.stderr.lines().filter(|l| l.contains("task names not read")).collect();
    assert_eq!(notice.len(), 1, "{out}");
    assert!(notice[0].contains("cannot connect") && notice[0].contains("hint:"), "{out}");
    let samples = raw_samples(&pb);
    assert!(
        samples.iter().any(|s| s.labels.get("role").map(String::as_str) == Some("tokio_worker")),
        "{samples:#?}"
    );
    assert!(samples.iter().all(|s| !s.labels.contains_key("task_name")), "{samples:#?}");
    let comments = parkscope_tests::pprof(&["-comments", &pb]);
    assert!(comments.contains("no task_name labels: cannot connect"), "{comments}");
}
