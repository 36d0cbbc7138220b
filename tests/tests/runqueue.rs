//! Running vs runnable: two spinning threads pinned to one CPU. At any instant one is on that
//! CPU and the other waits on its run queue, while /proc shows both as "R". parkscope is pinned
//! to the other CPU so that it never is the task on the spinners' CPU when it reads.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use parkscope_tests::{example_bin, parkscope_bin};
use serde_json::Value;

struct Spinners {
    child: Child,
    pid: u32,
    tids: Vec<u64>,
}

impl Spinners {
    fn start() -> Spinners {
        let child = Command::new("taskset")
            .args(["-c", "1"])
            .arg(example_bin("spinners"))
            .arg("2")
            .stdout(Stdio::piped())
            .spawn()
            .expect("taskset + examples/bin/spinners");
        // The guard exists from here on, so the child is reaped on every path, panics included.
        let mut s = Spinners { child, pid: 0, tids: Vec::new() };
        let stdout = s.child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if v["ready"] == true {
                s.pid = v["pid"].as_u64().unwrap() as u32;
                return s;
            }
            s.tids.push(v["tid"].as_u64().unwrap());
        }
        panic!("spinners exited before it was ready");
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parkscope_on_cpu0(args: &[&str]) -> String {
    let out = Command::new("taskset").args(["-c", "0"]).arg(parkscope_bin()).args(args).output().unwrap();
    assert!(out.status.success(), "parkscope {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn field(line: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    let at = line.find(&key).unwrap_or_else(|| panic!("no {name} in {line}")) + key.len();
    line[at..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn schedtrace_tells_running_from_runnable() {
    let s = Spinners::start();
    let out =
        parkscope_on_cpu0(&["schedtrace", "-p", &s.pid.to_string(), "--interval", "300ms", "--count", "4"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let mut exact = 0;
    for l in &lines {
        // Both spinners are always R; only which of them holds the CPU changes.
        assert_eq!(field(l, "running") + field(l, "runnable"), 2, "{l}");
        assert!(field(l, "running") <= 1, "two threads cannot run on one CPU: {l}");
        if field(l, "running") == 1 && field(l, "runnable") == 1 {
            exact += 1;
        }
    }
    // A kernel worker may briefly hold CPU 1 at one reading; not at most of them.
    assert!(exact >= 3, "expected running=1 runnable=1 in most lines:\n{out}");
}

#[test]
fn snapshot_marks_the_waiting_spinner_runnable() {
    let s = Spinners::start();
    let out = parkscope_on_cpu0(&["snapshot", "-p", &s.pid.to_string(), "--window", "500ms", "--json"]);
    let view: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<&str> = view["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| s.tids.contains(&t["tid"].as_u64().unwrap()))
        .map(|t| {
            assert!(t["syscall"].is_null(), "a spinner is never in a syscall: {t}");
            t["state"].as_str().unwrap()
        })
        .collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&"runnable"), "one spinner waits for the CPU: {states:?}");
    assert!(!states.iter().all(|s| *s == "running"), "{states:?}");
}
