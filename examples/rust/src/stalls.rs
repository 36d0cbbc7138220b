//! A tokio program whose tasks block their worker thread on purpose, one after another, and
//! print their own ground truth: one JSON line when each block begins and one when it ends, with
//! the task id (`tokio::task::id()`), the thread id (gettid) and CLOCK_MONOTONIC nanoseconds.
//!
//! Usage: `stalls [STEP...]`, each step `KIND:MS`, run in order, each in a new task:
//! - `sleep:MS`    std::thread::sleep inside async code (clock_nanosleep)
//! - `mutex:MS`    a std Mutex held by another OS thread for MS (futex)
//! - `fifo:MS`     a blocking read(2) of a FIFO that another OS thread writes after MS
//! - `spin:MS`     a CPU busy loop for MS (no syscall)
//! - `sleepall:MS` std::thread::sleep in two tasks at once: both workers stalled, so none
//!                 polls the I/O driver (two begin lines, one per worker)
//! - `blocking:MS` std::thread::sleep on tokio's blocking pool (spawn_blocking): not a stall
//! - `idle:MS`     the workers idle (tokio::time::sleep)
//!
//! After the last step it prints `{"done":true}` and idles until killed. Before the first it
//! prints `{"ready":true,...}` with its pid and the tokio version it was built with.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// One line on stdout, written whole (stdout is a pipe in tests).
fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn task_id() -> String {
    tokio::task::try_id().map_or_else(|| "null".to_owned(), |id| id.to_string())
}

/// Runs `block` and prints when it began and ended, on the thread and task that run it.
fn reported(step: usize, kind: &str, ms: u64, block: impl FnOnce()) {
    let (task, tid) = (task_id(), gettid());
    let begin = now_ns();
    emit(format!(
        r#"{{"begin":true,"step":{step},"kind":"{kind}","ms":{ms},"task":{task},"tid":{tid},"begin_ns":{begin}}}"#
    ));
    block();
    let end = now_ns();
    emit(format!(
        r#"{{"end":true,"step":{step},"kind":"{kind}","ms":{ms},"task":{task},"tid":{tid},"begin_ns":{begin},"end_ns":{end}}}"#
    ));
}

#[inline(never)]
fn block_sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[inline(never)]
fn block_mutex(ms: u64) {
    let lock = Arc::new(Mutex::new(()));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let _g = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(ms));
        })
    };
    held_rx.recv().unwrap();
    drop(lock.lock().unwrap());
    holder.join().unwrap();
}

#[inline(never)]
fn block_fifo(ms: u64) {
    // A FIFO of its own (the pid alone repeats in pid namespaces), unlinked once both ends are
    // open.
    let path =
        std::env::temp_dir().join(format!("parkscope-stalls-{}-{}.fifo", std::process::id(), now_ns()));
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: c is a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        panic!("mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
    }
    // The writer opens its end first (O_RDWR never waits for a reader), so the reader's open
    // returns at once and the wait is in read(2).
    let writer = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut reader = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let t = std::thread::spawn(move || {
        let mut writer = writer;
        std::thread::sleep(Duration::from_millis(ms));
        writer.write_all(b"x").unwrap();
    });
    let mut b = [0u8; 1];
    reader.read_exact(&mut b).unwrap();
    t.join().unwrap();
}

#[inline(never)]
fn block_spin(ms: u64) {
    let until = now_ns() + ms * 1_000_000;
    let mut x = 0u64;
    while now_ns() < until {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    std::hint::black_box(x);
}

fn main() {
    let steps: Vec<(String, u64)> = std::env::args()
        .skip(1)
        .map(|a| {
            let (k, ms) = a.split_once(':').unwrap_or_else(|| panic!("step {a:?} is not KIND:MS"));
            (k.to_owned(), ms.parse().unwrap_or_else(|_| panic!("step {a:?}: bad milliseconds")))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        // Idle tasks parked on a timer and a channel: never stalls.
        let (_keep_tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move { rx.recv().await });
        tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        emit(format!(
            r#"{{"ready":true,"pid":{},"main_tid":{},"tokio":"{}"}}"#,
            std::process::id(),
            gettid(),
            env!("TOKIO_VERSION")
        ));
        for (step, (kind, ms)) in steps.into_iter().enumerate() {
            match kind.as_str() {
                "idle" => tokio::time::sleep(Duration::from_millis(ms)).await,
                "sleepall" => {
                    let both: Vec<_> = (0..2)
                        .map(|_| tokio::spawn(async move { reported(step, "sleepall", ms, || block_sleep(ms)) }))
                        .collect();
                    for t in both {
                        t.await.unwrap();
                    }
                }
                "blocking" => {
                    tokio::task::spawn_blocking(move || reported(step, "blocking", ms, || block_sleep(ms)))
                        .await
                        .unwrap()
                }
                "sleep" | "mutex" | "fifo" | "spin" => tokio::spawn(async move {
                    reported(step, &kind, ms, || match kind.as_str() {
                        "sleep" => block_sleep(ms),
                        "mutex" => block_mutex(ms),
                        "fifo" => block_fifo(ms),
                        _ => block_spin(ms),
                    })
                })
                .await
                .unwrap(),
                other => panic!("unknown step kind {other:?}"),
            }
        }
        emit(r#"{"done":true}"#.to_owned());
        std::future::pending::<()>().await;
    });
}
