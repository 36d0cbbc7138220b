//! What one "block" is on the default path, where the kernel side attributes blocking at the
//! context switch instead of tracing every syscall: a call that wakes and sleeps again inside
//! the kernel is one block from its first sleep; a call made again from the same place with
//! the same arguments (a loop, a restart after a signal handler) is a new block; a call that
//! never sleeps (a non-blocking read returning EAGAIN) is never a block.
//!
//! The target is this test process: its threads do exactly the calls under test, and /proc
//! (the syscall file, the context-switch counts) is the ground truth that they did.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use parkscope_tests::{LiveParkscope, monotonic_ns, read_task_state};
use serde_json::Value;

/// The raw `/proc/self/task/TID/syscall` line: number, six arguments, user sp and pc.
fn syscall_line(tid: u32) -> String {
    let path = format!("/proc/self/task/{tid}/syscall");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_owned()
}

/// `voluntary_ctxt_switches` of a thread of this process: how many times it went to sleep.
fn voluntary_switches(tid: u32) -> u64 {
    let path = format!("/proc/self/task/{tid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path}: no voluntary_ctxt_switches"))
}

fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

fn pipe(flags: libc::c_int) -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-int array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) }, 0, "pipe2");
    (fds[0], fds[1])
}

fn write_bytes(fd: i32, buf: &[u8]) -> isize {
    // SAFETY: buf is valid for its length.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

fn read_bytes(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: buf is valid for its length.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

fn attach(window: &str) -> LiveParkscope {
    let pid = std::process::id().to_string();
    let run = LiveParkscope::start_until(
        &["snapshot", "-p", &pid, "--window", window, "--json", "--no-stacks", "--no-go"],
        "probes attached",
    );
    // The seed view is taken right after the log line.
    thread::sleep(Duration::from_millis(300));
    run
}

fn finish(run: LiveParkscope) -> Value {
    let (code, stdout, log) = run.finish();
    assert_eq!(code, 0, "parkscope failed:\n{log}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn thread_view(view: &Value, tid: u32) -> &Value {
    view["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["tid"].as_u64() == Some(u64::from(tid)))
        .unwrap_or_else(|| panic!("tid {tid} missing from the view:\n{view:#}"))
}

#[test]
fn a_call_that_wakes_and_sleeps_again_inside_the_kernel_is_one_block() {
    // One write() far larger than the pipe: it fills the pipe and sleeps inside the call; each
    // page the reader takes frees a slot and wakes it, it copies one more page, finds the pipe
    // full again and goes back to sleep, all without returning to user mode until the last
    // byte is in.
    let (rfd, wfd) = pipe(0);
    // SAFETY: F_GETPIPE_SZ on our own pipe.
    let capacity = unsafe { libc::fcntl(wfd, libc::F_GETPIPE_SZ) } as usize;
    const PAGE: usize = 4096;
    let total = capacity + 200 * PAGE;

    let run = attach("4s");
    let attached = monotonic_ns();
    let (tx, rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        let data = vec![7u8; total];
        tx.send((gettid(), monotonic_ns())).expect("send");
        write_bytes(wfd, &data)
    });
    let (tid, entered_ns) = rx.recv().expect("writer started");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(read_task_state(std::process::id(), tid), 'S', "the writer should be asleep in write()");
    let line_before = syscall_line(tid);
    assert!(line_before.starts_with(&format!("1 {wfd:#x} ")), "not in write({wfd}): {line_before}");
    let sleeps_before = voluntary_switches(tid);

    let first_read = monotonic_ns();
    let mut reads = 0;
    let mut drained = 0;
    let mut page = vec![0u8; PAGE];
    // Keep waking it until well before the window ends, so the view comes after every wakeup.
    while monotonic_ns() < attached + 3_000_000_000 {
        let n = read_bytes(rfd, &mut page);
        assert_eq!(n, PAGE as isize, "one page from the full pipe");
        drained += PAGE;
        reads += 1;
        thread::sleep(Duration::from_millis(50));
    }
    assert!(drained + capacity < total, "the write would have completed: make it larger");
    let last_read = monotonic_ns();
    thread::sleep(Duration::from_millis(100));
    let resleeps = voluntary_switches(tid) - sleeps_before;
    // Ground truth that the scenario happened: it woke and slept again, and /proc shows the
    // very same call (number, arguments, user sp and pc) as before the wakeups.
    assert!(resleeps * 2 >= reads, "{reads} reads but the writer slept again only {resleeps} times");
    assert_eq!(syscall_line(tid), line_before, "the writer left its write() call");

    let view = finish(run);
    let ended = monotonic_ns();
    let t = thread_view(&view, tid);
    let call = &t["syscall"];
    assert_eq!(call["name"].as_str(), Some("write"), "{t:#}");
    assert_eq!(call["fd"].as_i64(), Some(i64::from(wfd)), "{t:#}");
    let blocked = call["blocked_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("the write began sleeping during the window: no exact time:\n{t:#}"));
    // One block from its first sleep, which came before the first read; counting each sleep
    // as a new block would give at most the time since the last wakeup (ended - last_read).
    assert!(
        blocked >= last_read - first_read,
        "blocked_ns {blocked} < {} ns of wakeups inside the call ({reads} reads): the sleeps were split",
        last_read - first_read
    );
    assert!(blocked <= ended - entered_ns, "blocked_ns {blocked} > time since write() was called");

    // Take the rest so the write completes.
    while drained < total {
        let n = read_bytes(rfd, &mut page);
        assert!(n > 0, "reading the rest");
        drained += n as usize;
    }
    assert_eq!(writer.join().expect("writer"), total as isize);
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
}

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_call_restarted_after_a_signal_handler_is_a_new_block() {
    // SAFETY: a plain handler with SA_RESTART, installed before the thread it interrupts exists.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr1 as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }
    let (rfd, wfd) = pipe(0);
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        tx.send(gettid()).expect("send");
        let mut byte = [0u8; 1];
        read_bytes(rfd, &mut byte)
    });
    let tid = rx.recv().expect("reader started");
    thread::sleep(Duration::from_millis(200));
    let line_before = syscall_line(tid);
    assert!(line_before.starts_with(&format!("0 {rfd:#x} ")), "not in read({rfd}): {line_before}");

    let run = attach("3s");
    thread::sleep(Duration::from_millis(500));
    let handled_before = HANDLED.load(Ordering::SeqCst);
    let signalled = monotonic_ns();
    // SAFETY: tgkill to a thread of our own process.
    assert_eq!(unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) }, 0);
    while HANDLED.load(Ordering::SeqCst) == handled_before {
        assert!(monotonic_ns() - signalled < 5_000_000_000, "the handler never ran");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(200));
    // The kernel restarted the read with the very same registers: only the trip to user mode
    // for the handler tells the two calls apart.
    assert_eq!(syscall_line(tid), line_before, "the restarted read differs");

    let view = finish(run);
    let ended = monotonic_ns();
    let t = thread_view(&view, tid);
    let call = &t["syscall"];
    assert_eq!(call["name"].as_str(), Some("read"), "{t:#}");
    assert_eq!(call["fd"].as_i64(), Some(i64::from(rfd)), "{t:#}");
    let blocked = call["blocked_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("the restarted read began during the window: no exact time:\n{t:#}"));
    assert!(blocked <= ended - signalled, "blocked_ns {blocked} reaches back before the signal handler ran");

    assert_eq!(write_bytes(wfd, &[1]), 1);
    assert_eq!(reader.join().expect("reader"), 1);
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
}

#[test]
fn repeated_sleeps_from_one_site_are_separate_blocks_and_eagain_reads_are_none() {
    let (rfd, wfd) = pipe(libc::O_NONBLOCK);
    let stop = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let worker = {
        let (stop, loops) = (stop.clone(), loops.clone());
        thread::spawn(move || {
            tx.send(gettid()).expect("send");
            let mut byte = [0u8; 1];
            // The same nanosleep from the same frame with the same arguments every time: its
            // saved registers are identical, only the return to user mode in between differs.
            let pause = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(read_bytes(rfd, &mut byte), -1, "the pipe is empty");
                assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN));
                // SAFETY: a valid timespec; no remainder wanted.
                unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
                loops.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let tid = rx.recv().expect("worker started");

    // It may be caught on CPU (or waiting for one) at the final view: try a few windows.
    let mut seen_asleep = false;
    for _ in 0..3 {
        let loops_before = loops.load(Ordering::Relaxed);
        let view = finish(attach("2s"));
        assert!(loops.load(Ordering::Relaxed) > loops_before + 20, "the loop did not run during the window");
        let t = thread_view(&view, tid);
        let call = &t["syscall"];
        if call.is_null() {
            assert!(matches!(t["state"].as_str(), Some("running" | "runnable")), "{t:#}");
            continue;
        }
        let name = call["name"].as_str().unwrap_or_default();
        assert_ne!(name, "read", "a read that returned EAGAIN reported as blocking:\n{t:#}");
        assert!(name.contains("nanosleep"), "{t:#}");
        let blocked = call["blocked_ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("a 20 ms sleep begun during the window has no exact time:\n{t:#}"));
        // Merging the identical sleeps would give about the whole window.
        assert!(
            blocked < 1_000_000_000,
            "blocked_ns {blocked}: the loop's sleeps were merged into one block"
        );
        seen_asleep = true;
        break;
    }
    assert!(seen_asleep, "the sleeping loop was never seen asleep in three windows");
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker");
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
}
