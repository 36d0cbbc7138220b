//! `parkscope snapshot` of a process with hundreds of threads (examples/c/manythreads), every
//! one blocked in read(2) on one pipe: each thread is listed with the syscall, fd and pipe that
//! the target's own ready line and /proc/PID/task/TID/syscall (read by the test) say, and with a
//! user stack naming the function it blocks in and its caller. With many threads the map is
//! read once per view and names come from caches shared by threads and views, so a stack named
//! wrongly from a cache (or a thread left without one) shows here. No timing is asserted
//! (`cargo xtask bench-threads` measures that).

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use parkscope_tests::{TaskSyscall, example_bin, lines_of, read_task_syscall, run_parkscope};
use serde_json::Value;

const THREADS: usize = 500;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running manythreads and its ready line; killed when dropped.
struct ManyThreads {
    child: Child,
    ready: Value,
}

impl ManyThreads {
    fn start(threads: usize) -> ManyThreads {
        let mut child = Command::new(example_bin("manythreads"))
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start manythreads: {e}"));
        let lines = lines_of(child.stdout.take().expect("stdout is piped"));
        let line = lines.recv_timeout(READY_TIMEOUT).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("manythreads gave no ready line: {e}")
        });
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(ready["pid"].as_u64(), Some(u64::from(child.id())), "{ready}");
        ManyThreads { child, ready }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tids(&self) -> Vec<u32> {
        let tids = self.ready["tids"].as_array().expect("tids");
        tids.iter().map(|t| u32::try_from(t.as_u64().expect("tid")).expect("tid fits u32")).collect()
    }
}

impl Drop for ManyThreads {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The index of the first frame of `stack` naming `function` (as `function+0x...`).
fn frame_of(stack: &[&str], function: &str) -> Option<usize> {
    stack.iter().position(|f| f.starts_with(&format!("{function}+")))
}

fn check_view(target: &ManyThreads, view: &Value) {
    let pid = target.pid();
    let fd = target.ready["fd"].as_i64().expect("fd");
    let fd_desc = target.ready["fd_desc"].as_str().expect("fd_desc");
    let func = target.ready["func"].as_str().expect("func");
    let threads: HashMap<u64, &Value> = view["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| (t["tid"].as_u64().expect("tid"), t))
        .collect();
    let tids = target.tids();
    assert_eq!(tids.len(), THREADS);
    // Threads that run the same code parked at the same place have the same stack.
    let mut stacks: HashMap<Vec<String>, usize> = HashMap::new();
    for tid in tids {
        let t = threads.get(&u64::from(tid)).unwrap_or_else(|| panic!("thread {tid} missing"));
        let who = format!("thread {tid}");
        // Ground truth from the kernel, read by the test now (the threads never leave read).
        let TaskSyscall::In { nr, args } = read_task_syscall(pid, tid) else {
            panic!("{who}: /proc says it is not in a syscall")
        };
        let sc = &t["syscall"];
        assert_eq!(t["state"], "sleeping", "{who}: {t:#}");
        assert_eq!(sc["nr"].as_u64(), Some(u64::from(nr)), "{who}: {sc:#}");
        assert_eq!(sc["name"], "read", "{who}: {sc:#}");
        assert_eq!(sc["fd"].as_i64(), Some(fd), "{who}: {sc:#}");
        assert_eq!(i64::try_from(args[0]).ok(), Some(fd), "{who}: /proc/.../syscall arg0");
        // parkscope adds where the other end is ("pipe:[N] (other end: fd 4)").
        let desc = sc["fd_desc"].as_str().unwrap_or_default();
        assert!(desc.starts_with(fd_desc), "{who}: {sc:#}");
        assert_eq!(t["name"], "reader", "{who}");

        let user: Vec<&str> = t["user_stack"]
            .as_array()
            .expect("user_stack")
            .iter()
            .map(|f| f.as_str().expect("str"))
            .collect();
        let blocking = frame_of(&user, func).unwrap_or_else(|| panic!("{who}: no {func} in {user:#?}"));
        let caller = frame_of(&user, "reader").unwrap_or_else(|| panic!("{who}: no reader in {user:#?}"));
        assert!(blocking < caller, "{who}: {func} is not called by reader: {user:#?}");
        assert!(user[blocking].contains("(manythreads) at manythreads.c:"), "{who}: {}", user[blocking]);
        assert!(!t["kernel_stack"].as_array().expect("kernel_stack").is_empty(), "{who}: no kernel stack");
        *stacks.entry(user.iter().map(|f| f.to_string()).collect()).or_default() += 1;
    }
    assert_eq!(stacks.len(), 1, "threads parked at one place have different stacks: {stacks:#?}");
}

#[test]
fn every_thread_of_many_has_its_syscall_and_stack() {
    let target = ManyThreads::start(THREADS);
    let pid = target.pid().to_string();
    // With a window: two views (attach, end of window), the second served from the caches of
    // the first.
    let out = run_parkscope(&["snapshot", "-p", &pid, "--json", "--window", "500ms"]);
    out.assert_code(0);
    check_view(&target, &out.json());
    let out = run_parkscope(&["snapshot", "-p", &pid, "--json", "--window", "0"]);
    out.assert_code(0);
    check_view(&target, &out.json());
}
