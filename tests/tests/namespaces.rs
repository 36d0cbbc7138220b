//! Targets as they run in containers: in their own pid and mount namespaces, started from a
//! binary the host cannot see (a tmpfs mounted only inside the target's mount namespace).
//! Ground truth: the Go runtime's own goroutine dump, blocker's manifest (in the target's own
//! ids), and /proc's NSpid lines, which give each thread's id in every namespace.

use std::collections::{BTreeMap, BTreeSet};

use parkscope_tests::{
    Contained, GoTarget, assert_goroutines_match_dump, pprof_dump_at, read_tids, run_parkscope,
};
use serde_json::Value;

fn snapshot_json(pid: u32) -> Value {
    let out = run_parkscope(&["snapshot", "-p", &pid.to_string(), "--window", "0", "--json"]);
    out.assert_code(0);
    out.json()
}

/// Thread roles with how many threads have each (null: no role).
fn roles(snap: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in snap["threads"].as_array().unwrap() {
        *out.entry(t["role"].as_str().unwrap_or("none").to_owned()).or_default() += 1;
    }
    out
}

#[test]
fn go_target_in_its_own_namespaces_is_read_in_host_tids() {
    let t = Contained::start("parked-go1.27", &["-n", "2"]);
    assert!(
        !t.inner_path.exists(),
        "{} should exist only in the target's mount namespace",
        t.inner_path.display()
    );
    assert_eq!(t.info()["pid"], 1, "the target should be pid 1 of its own namespace: {}", t.info());
    let dump = pprof_dump_at(t.info()["pprof"].as_str().unwrap());
    let snap = snapshot_json(t.pid);
    assert_eq!(snap["runtime"]["version"], t.info()["go"], "{:#}", snap["runtime"]);
    let ours = assert_goroutines_match_dump("parked-go1.27 in namespaces", &dump, &snap);
    assert!(ours.len() >= 14, "the parked population: {ours:#?}");

    // Every tid printed is a host tid of this process, and the goroutine <-> thread join holds
    // both ways.
    let tasks = read_tids(t.pid);
    let threads: BTreeMap<u64, &Value> =
        snap["threads"].as_array().unwrap().iter().map(|th| (th["tid"].as_u64().unwrap(), th)).collect();
    assert_eq!(threads.keys().map(|&k| k as u32).collect::<BTreeSet<_>>(), tasks, "{:#}", snap["threads"]);
    let mut on_threads = 0;
    for g in snap["goroutines"].as_array().unwrap() {
        let Some(tid) = g["tid"].as_u64() else { continue };
        on_threads += 1;
        assert!(tasks.contains(&(tid as u32)), "goroutine on tid {tid}, not a thread of {}: {g:#}", t.pid);
    }
    for th in threads.values() {
        if let Some(goid) = th["goroutine"].as_u64() {
            let g = snap["goroutines"].as_array().unwrap().iter().find(|g| g["goid"] == goid);
            let g = g.unwrap_or_else(|| panic!("thread runs goroutine {goid}, not listed: {th:#}"));
            assert_eq!(g["tid"], th["tid"], "{g:#}\n{th:#}");
        }
    }
    // The goroutine blocked in read(2) on the pipe is on the thread /proc shows in that read.
    let pipe_fd = t.info()["pipe_fd"].as_i64().unwrap();
    let reader = threads
        .values()
        .find(|th| th["syscall"]["name"] == "read" && th["syscall"]["fd"] == pipe_fd)
        .unwrap_or_else(|| panic!("no thread in read on fd {pipe_fd}: {:#}", snap["threads"]));
    assert!(reader["goroutine"].is_u64(), "the pipe reader's goroutine: {reader:#}");
    assert!(on_threads >= 1);

    // Idle Ms, the netpoller and sysmon are recognised as they are for the same binary on the
    // host: every thread has a role, the same roles.
    let host = GoTarget::start("parked-go1.27", &["-n", "2"], &[], false);
    let host_roles = roles(&snapshot_json(host.pid));
    let ns_roles = roles(&snap);
    // (A spinning M, role "runtime", may come and go on either side.)
    for role in
        host_roles.keys().filter(|r| ["idle_m", "netpoller", "sysmon", "goroutine"].contains(&r.as_str()))
    {
        assert!(
            ns_roles.contains_key(role),
            "{role} on the host ({host_roles:?}), not in namespaces ({ns_roles:?})"
        );
    }
    assert!(!ns_roles.contains_key("none"), "{ns_roles:?}");
    assert_eq!(ns_roles.get("netpoller"), Some(&1), "{ns_roles:?}");
    assert_eq!(ns_roles.get("sysmon"), Some(&1), "{ns_roles:?}");
    assert!(ns_roles.get("idle_m").is_some_and(|&n| n >= 1), "{ns_roles:?}");
    let idle = ns_roles.iter().filter(|(r, _)| ["idle_m", "netpoller", "sysmon"].contains(&r.as_str()));
    assert_eq!(snap["summary"]["runtime_idle"].as_u64(), Some(idle.map(|(_, n)| *n as u64).sum()));

    // A profile labels samples with host tids, and the runtime's roles reach it through them.
    let dir = std::env::temp_dir().join(format!("parkscope-ns-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pb = dir.join("off.pb.gz").to_str().unwrap().to_owned();
    let prof = run_parkscope(&["profile", "-p", &t.pid.to_string(), "--duration", "1s", "-o", &pb]);
    prof.assert_code(0);
    let tags = parkscope_tests::pprof(&["-tags", &pb]);
    let _ = std::fs::remove_dir_all(&dir);
    for role in ["idle_m", "netpoller", "sysmon"] {
        assert!(tags.contains(role), "no {role} label:\n{tags}");
    }
    for tid in &tasks {
        assert!(tags.contains(&tid.to_string()), "tid {tid} missing from the profile:\n{tags}");
    }

    // The table names host tids for goroutines on threads too.
    let table = run_parkscope(&["snapshot", "-p", &t.pid.to_string(), "--window", "0"]);
    table.assert_code(0);
    for line in
        table.stdout.lines().filter(|l| l.trim_start().starts_with("goroutine ") && l.contains(" tid "))
    {
        let tid: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(tasks.contains(&tid), "{line}: tid {tid} is not a thread of {}", t.pid);
    }
}

#[test]
fn c_target_in_its_own_namespaces_gets_symbolised_stacks() {
    let b = Contained::start("blocker", &[]);
    assert!(!b.inner_path.exists());
    let role = b
        .lines
        .iter()
        .find(|l| l["role"] == "pipe_read")
        .unwrap_or_else(|| panic!("no pipe_read in the manifest: {:#?}", b.lines));
    let ns_tid = role["tid"].as_u64().unwrap() as u32;
    let host_tid =
        b.host_tid(ns_tid).unwrap_or_else(|| panic!("no thread is {ns_tid} in the target's namespace"));
    assert_ne!(host_tid, ns_tid, "the manifest should be in the namespace's ids");

    let snap = snapshot_json(b.pid);
    let tasks = read_tids(b.pid);
    let threads: Vec<&Value> = snap["threads"].as_array().unwrap().iter().collect();
    assert_eq!(threads.iter().map(|t| t["tid"].as_u64().unwrap() as u32).collect::<BTreeSet<_>>(), tasks);
    let t = threads.iter().find(|t| t["tid"] == host_tid).unwrap();
    assert_eq!(t["syscall"]["name"], "read", "{t:#}");
    let user: Vec<&str> = t["user_stack"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    // Named from the binary the host cannot see by its path (through /proc/PID/map_files), and
    // unwound past libc's read (its CFI, also read through the target's view of the file).
    assert!(user.iter().any(|f| f.starts_with("blocker_pipe_read+")), "{user:#?}");
    assert!(user.iter().any(|f| f.starts_with("main+") || f.contains("start_thread")), "{user:#?}");
}
