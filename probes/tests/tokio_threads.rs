//! The tokio facts (probes/src/tokio/) against the example's own ground truth: the release in
//! its Cargo.lock, and the task id `tokio::task::id()` printed by the task that spins on a
//! worker, read from that worker's thread-local storage while it spins; the workers' scheduler
//! cell is set and the main thread's is not. For both tokio releases the examples are built with, plain and stripped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use parkscope_probes::procfs::maps::AddressSpace;
use parkscope_probes::tokio::{ThreadPointers, TokioBinary};

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/bin").join(name)
}

fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}

fn check(which: &str, version: &str) {
    let path = bin(&format!("tokio-stalls-{which}"));
    assert!(path.is_file(), "{} missing: run `cargo xtask examples`", path.display());
    let mut child =
        Command::new(&path).args(["idle:200", "spin:3000"]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert_eq!(field(&ready, "tokio").as_deref(), Some(version), "{ready}");
    let begin = lines.by_ref().map(Result::unwrap).find(|l| l.contains("\"begin\"")).unwrap();
    let (task, spin_tid): (u64, u32) =
        (field(&begin, "task").unwrap().parse().unwrap(), field(&begin, "tid").unwrap().parse().unwrap());

    let binary = TokioBinary::of_process(pid).unwrap();
    assert_eq!(binary.version.as_deref(), Some(version));
    assert!(binary.symbols);
    let slot = binary.task_id_slot.clone().unwrap();
    let tids: Vec<(u32, u32)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse::<u32>().unwrap())
        .map(|t| (t, t))
        .collect();
    let mut pointers = ThreadPointers::new();
    pointers.locate(pid, &tids, &AddressSpace::read(pid).unwrap());
    let read = |tid| pointers.read_word(pid, tid, slot.offset);
    assert_eq!(read(spin_tid), Some(task), "{which}: the spinning worker's task id");
    let scheduler = binary.scheduler_slot.clone().unwrap();
    let mut found = 0;
    for &(tid, _) in &tids {
        let in_scheduler = pointers.read_word(pid, tid, scheduler.offset);
        if tid == pid {
            // The main thread (block_on of a multi-thread runtime) is no worker and polls
            // nothing, when its control block is found.
            assert!(matches!(read(tid), None | Some(0)), "{which}: main thread");
            assert!(matches!(in_scheduler, None | Some(0)), "{which}: main thread");
        } else {
            // The other threads are the two workers (the example starts nothing else before
            // the spin): each runs a scheduler loop. The idle one shows the id of the
            // blocking-pool task its loop was launched in, never the spinning task's.
            assert!(in_scheduler.is_some_and(|p| p != 0), "{which}: worker {tid}");
            if tid != spin_tid {
                assert_ne!(read(tid), Some(task), "{which}: thread {tid}");
                assert!(read(tid).is_some(), "{which}: thread {tid}");
                found += 1;
            }
        }
    }
    assert!(found >= 1, "{which}: the other worker was not found");
    child.kill().unwrap();
    child.wait().unwrap();

    let stripped =
        TokioBinary::parse(&std::fs::read(bin(&format!("tokio-stalls-{which}-stripped"))).unwrap(), which)
            .unwrap();
    assert_eq!(stripped.version.as_deref(), Some(version));
    assert!(!stripped.symbols);
    assert!(stripped.task_id_slot.is_err());
}

#[test]
fn newest_tokio_task_ids_from_tls() {
    check("newest", "1.54.1");
}

#[test]
fn oldest_tokio_task_ids_from_tls() {
    check("oldest", "1.47.1");
}

#[test]
fn a_c_program_is_not_tokio() {
    let data = std::fs::read(bin("blocker")).unwrap();
    assert!(TokioBinary::parse(&data, "blocker").is_err());
}
