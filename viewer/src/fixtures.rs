//! Model snapshots built in code, shaped like what the collector produces for parkscope's
//! example targets (the C blocker, the Go parked example, a tokio service): the viewer's
//! snapshot tests and its frame-time benchmark draw these. Not used by the viewer itself.

use parkscope_model::{
    Frame, FrameKind, GoStatus, GoroutineView, IoInterest, IoWaitView, IoWaiterKind, IoWaits, NetpollMode,
    NetpollView, RuntimeKind, RuntimeView, Snapshot, StackId, Summary, SyscallClass, SyscallView,
    TaskOnThread, TaskState, TaskView, ThreadRole, ThreadState, ThreadView, Timestamp,
};

const SECOND: u64 = 1_000_000_000;

/// 2026-12-02 20:00:00 UTC, and an arbitrary boot-relative monotonic clock.
pub fn taken_at(offset_s: u64) -> Timestamp {
    Timestamp { monotonic_ns: (5_000 + offset_s) * SECOND, wall_unix_ns: (1_796_241_600 + offset_s) * SECOND }
}

fn user(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        kind: FrameKind::User,
        address: 0x401000 + u64::from(line) * 4,
        function: Some(function.to_owned()),
        offset: Some(u64::from(line % 64)),
        size: None,
        module: Some("/opt/app/bin/target".to_owned()),
        file: Some(file.to_owned()),
        line: Some(line),
    }
}

fn kernel(text: &str) -> Frame {
    Frame::parse_kernel(text)
}

fn thread(tid: u32, name: &str, state: ThreadState) -> ThreadView {
    ThreadView {
        tid,
        name: name.to_owned(),
        state,
        syscall: None,
        wchan: None,
        user_stack_id: StackId::EMPTY,
        kernel_stack_id: StackId::EMPTY,
        completed: Vec::new(),
        long_calls: Vec::new(),
        role: None,
        goroutine: None,
        task: None,
    }
}

fn call(
    nr: u32,
    name: &str,
    fd: Option<i32>,
    desc: Option<&str>,
    exact: Option<u64>,
    at_least: Option<u64>,
) -> SyscallView {
    SyscallView {
        nr,
        name: name.to_owned(),
        class: SyscallClass::of(nr),
        fd,
        fd_desc: desc.map(str::to_owned),
        blocked_ns: exact,
        blocked_at_least_ns: at_least,
        waker_tid: None,
        futex_addr: None,
        args: Default::default(),
    }
}

fn finish(mut s: Snapshot) -> Snapshot {
    let window_ns = s.summary.window_ns;
    let dropped = s.summary.dropped_events;
    s.summary = Summary { window_ns, dropped_events: dropped, ..Summary::count(&s.threads) };
    s.summary.goroutines = s.goroutines.len();
    s.summary.goroutines_waiting = s.goroutines.iter().filter(|g| g.status == GoStatus::Waiting).count();
    s.summary.tasks = s.tasks.len();
    s.summary.stalls = s.stalls.len();
    s
}

/// Like the C blocker: threads blocked in read on a pipe, accept on a TCP listener, recv on a
/// connected socket, a futex, nanosleep, plus a running and a runnable thread.
pub fn c_blocker() -> Snapshot {
    let mut s = Snapshot::new(4242, "blocker".to_owned(), taken_at(0));
    s.summary.window_ns = SECOND;
    let main = thread(4242, "blocker", ThreadState::Sleeping);
    let mut threads = vec![main];

    let mut pipe = thread(4243, "pipe-reader", ThreadState::Sleeping);
    let mut c = call(0, "read", Some(3), Some("pipe:[91234]"), None, Some(SECOND));
    c.waker_tid = None;
    pipe.syscall = Some(c);
    pipe.user_stack_id = s.stacks.intern(vec![
        user("read", "../sysdeps/unix/sysv/linux/read.c", 26),
        user("pipe_reader", "examples/blocker/blocker.c", 88),
        user("start_thread", "./nptl/pthread_create.c", 447),
    ]);
    pipe.kernel_stack_id = s.stacks.intern(vec![
        kernel("pipe_read+0x2f5/0x480"),
        kernel("vfs_read+0x2a1/0x2d0"),
        kernel("ksys_read+0x6d/0xf0"),
        kernel("do_syscall_64+0x82/0x170"),
    ]);
    threads.push(pipe);

    let mut acc = thread(4244, "acceptor", ThreadState::Sleeping);
    acc.syscall =
        Some(call(288, "accept4", Some(4), Some("tcp 127.0.0.1:40111 LISTEN"), Some(750_000_000), None));
    acc.user_stack_id = s.stacks.intern(vec![
        user("accept4", "../sysdeps/unix/sysv/linux/accept4.c", 31),
        user("acceptor", "examples/blocker/blocker.c", 120),
    ]);
    threads.push(acc);

    let mut recv = thread(4245, "sock-reader", ThreadState::Sleeping);
    let mut c = call(
        45,
        "recvfrom",
        Some(6),
        Some("tcp 127.0.0.1:40112 -> 127.0.0.1:40111"),
        Some(2_500_000_000),
        None,
    );
    c.waker_tid = Some(4246);
    recv.syscall = Some(c);
    threads.push(recv);

    let mut fut = thread(4246, "futex-waiter", ThreadState::Sleeping);
    let mut c = call(202, "futex", None, None, Some(12 * SECOND), None);
    c.futex_addr = Some("0x7f3a5c000b40".to_owned());
    c.waker_tid = Some(4248);
    fut.syscall = Some(c);
    threads.push(fut);

    let mut sleeper = thread(4247, "sleeper", ThreadState::Sleeping);
    sleeper.syscall = Some(call(230, "clock_nanosleep", None, None, Some(400_000_000), None));
    threads.push(sleeper);

    threads.push(thread(4248, "spinner", ThreadState::Running));
    threads.push(thread(4249, "yielder", ThreadState::Runnable));
    // The main thread waits on its children.
    threads[0].syscall = Some(call(202, "futex", None, None, None, Some(SECOND)));
    s.threads = threads;
    finish(s)
}

/// Like the Go parked example with `goroutines` parked goroutines: most in `chan receive` on
/// one stack, some in `select`, some in "IO wait" on sockets, some sleeping; the runtime's
/// threads with their roles.
pub fn go_parked(goroutines: usize) -> Snapshot {
    let mut s = Snapshot::new(5150, "parked".to_owned(), taken_at(0));
    s.summary.window_ns = SECOND;
    s.runtime = Some(RuntimeView {
        kind: RuntimeKind::Go,
        version: "go1.27.3".to_owned(),
        module: Some("example.com/parked".to_owned()),
        layout: Some("dwarf".to_owned()),
        gomaxprocs: Some(4),
        goroutines_dead: Some(0),
        goroutines_inconsistent: Some(0),
        error: None,
        hint: None,
    });
    let gopark = user("runtime.gopark", "/usr/lib/go/src/runtime/proc.go", 435);
    let chan = s.stacks.intern(vec![
        gopark.clone(),
        user("runtime.chanrecv", "/usr/lib/go/src/runtime/chan.go", 664),
        user("runtime.chanrecv1", "/usr/lib/go/src/runtime/chan.go", 506),
        user("main.parkOnChan", "/src/parked/main.go", 41),
        user("runtime.goexit", "/usr/lib/go/src/runtime/asm_amd64.s", 1700),
    ]);
    let select = s.stacks.intern(vec![
        gopark.clone(),
        user("runtime.selectgo", "/usr/lib/go/src/runtime/select.go", 335),
        user("main.parkOnSelect", "/src/parked/main.go", 52),
    ]);
    let netpoll = s.stacks.intern(vec![
        gopark.clone(),
        user("runtime.netpollblock", "/usr/lib/go/src/runtime/netpoll.go", 575),
        user("internal/poll.runtime_pollWait", "/usr/lib/go/src/runtime/netpoll.go", 351),
        user("net.(*conn).Read", "/usr/lib/go/src/net/net.go", 194),
        user("main.readConn", "/src/parked/main.go", 67),
    ]);
    let sleep = s.stacks.intern(vec![
        gopark,
        user("time.Sleep", "/usr/lib/go/src/runtime/time.go", 300),
        user("main.sleeper", "/src/parked/main.go", 75),
    ]);
    let main_stack = s.stacks.intern(vec![
        user("runtime.gopark", "/usr/lib/go/src/runtime/proc.go", 435),
        user("sync.(*WaitGroup).Wait", "/usr/lib/go/src/sync/waitgroup.go", 118),
        user("main.main", "/src/parked/main.go", 30),
    ]);
    let mut gs = Vec::with_capacity(goroutines + 1);
    let base = GoroutineView {
        goid: 1,
        status: GoStatus::Waiting,
        wait_reason: Some("sync.WaitGroup.Wait".to_owned()),
        waiting_ns: Some(60 * SECOND),
        status_ns: None,
        status_ns_exact: false,
        transitions: None,
        cgo: false,
        c_function: None,
        m: None,
        tid: None,
        syscall: None,
        netpoll: None,
        start: "main.main".to_owned(),
        created_by: None,
        parent_goid: None,
        stack_id: main_stack,
    };
    gs.push(base.clone());
    for i in 0..goroutines {
        let goid = 100 + i as u64;
        let mut g = GoroutineView {
            goid,
            created_by: Some("main.main".to_owned()),
            parent_goid: Some(1),
            waiting_ns: Some((30 + (i as u64 % 30)) * SECOND),
            ..base.clone()
        };
        match i % 100 {
            0..=84 => {
                g.wait_reason = Some("chan receive".to_owned());
                g.start = "main.parkOnChan".to_owned();
                g.stack_id = chan;
            }
            85..=94 => {
                g.wait_reason = Some("select".to_owned());
                g.start = "main.parkOnSelect".to_owned();
                g.stack_id = select;
            }
            95..=97 => {
                g.wait_reason = Some("IO wait".to_owned());
                g.start = "main.readConn".to_owned();
                g.stack_id = netpoll;
                let fd = 10 + (i % 1000) as i32;
                g.netpoll = Some(NetpollView {
                    fd,
                    mode: NetpollMode::Read,
                    fd_desc: Some(format!("tcp 127.0.0.1:{} -> 127.0.0.1:9000", 30000 + fd)),
                });
            }
            _ => {
                g.wait_reason = Some("sleep".to_owned());
                g.start = "main.sleeper".to_owned();
                g.stack_id = sleep;
                g.waiting_ns = None;
            }
        }
        gs.push(g);
    }
    // One goroutine on a CPU, on M0.
    let spin = s.stacks.intern(vec![user("main.spin", "/src/parked/main.go", 90)]);
    gs.push(GoroutineView {
        goid: 99,
        status: GoStatus::Running,
        wait_reason: None,
        waiting_ns: None,
        m: Some(0),
        tid: Some(5150),
        start: "main.spin".to_owned(),
        stack_id: spin,
        ..base
    });
    s.goroutines = gs;

    let mut m0 = thread(5150, "parked", ThreadState::Running);
    m0.role = Some(ThreadRole::Goroutine);
    m0.goroutine = Some(99);
    let mut sysmon = thread(5151, "parked", ThreadState::Sleeping);
    sysmon.role = Some(ThreadRole::Sysmon);
    sysmon.syscall = Some(call(35, "nanosleep", None, None, Some(10_000_000), None));
    let mut poller = thread(5152, "parked", ThreadState::Sleeping);
    poller.role = Some(ThreadRole::Netpoller);
    poller.syscall =
        Some(call(281, "epoll_pwait", Some(3), Some("anon_inode:[eventpoll]"), None, Some(SECOND)));
    let mut idle = thread(5153, "parked", ThreadState::Sleeping);
    idle.role = Some(ThreadRole::IdleM);
    let mut c = call(202, "futex", None, None, None, Some(SECOND));
    c.waker_tid = Some(5151);
    idle.syscall = Some(c);
    s.threads = vec![m0, sysmon, poller, idle];
    finish(s)
}

fn tokio_runtime() -> Option<RuntimeView> {
    Some(RuntimeView {
        kind: RuntimeKind::Tokio,
        version: "tokio 1.54.1".to_owned(),
        module: None,
        layout: None,
        gomaxprocs: None,
        goroutines_dead: None,
        goroutines_inconsistent: None,
        error: None,
        hint: None,
    })
}

fn wait(
    fd: i32,
    desc: &str,
    interest: Option<IoInterest>,
    waiter: IoWaiterKind,
    task_id: Option<u64>,
) -> IoWaitView {
    IoWaitView { fd, fd_desc: Some(desc.to_owned()), interest, waiter, task_id }
}

/// A tokio service: two workers (one polling a task that blocks in a read, a stall), a
/// blocking-pool thread, and console tasks in every state; two idle ones parked on I/O (one
/// on a socket, one on two), and `#[tokio::main]`'s future on the listener.
pub fn tokio_tasks() -> Snapshot {
    let mut s = Snapshot::new(6001, "service".to_owned(), taken_at(0));
    s.runtime = tokio_runtime();
    let mut w1 = thread(6002, "tokio-runtime-w", ThreadState::Sleeping);
    w1.role = Some(ThreadRole::TokioWorker);
    w1.syscall = Some(call(0, "read", Some(9), Some("/var/lib/service/data.db"), Some(3 * SECOND), None));
    w1.task = Some(TaskOnThread { task_id: 17, poll_ns: Some(3 * SECOND), poll_ns_exact: true });
    let stall_stack = s.stacks.intern(vec![
        user("std::fs::read", "library/std/src/fs.rs", 300),
        user("service::load_blocking", "src/main.rs", 42),
    ]);
    w1.user_stack_id = stall_stack;
    let mut w2 = thread(6003, "tokio-runtime-w", ThreadState::Sleeping);
    w2.role = Some(ThreadRole::TokioWorker);
    w2.syscall =
        Some(call(232, "epoll_wait", Some(5), Some("anon_inode:[eventpoll]"), Some(200_000_000), None));
    let mut b = thread(6004, "tokio-runtime-b", ThreadState::Running);
    b.role = Some(ThreadRole::TokioBlocking);
    s.threads = vec![w1, w2, b];
    let task = |id: u64, name: &str, state: TaskState| TaskView {
        task_id: Some(id),
        console_id: Some(id + 1000),
        name: Some(name.to_owned()),
        kind: Some("task".to_owned()),
        spawn_location: Some(format!("src/main.rs:{}:5", 10 + id)),
        state,
        polls: id * 3,
        busy_ns: id * 1_000_000,
        scheduled_ns: id * 10_000,
        idle_ns: id * 100_000_000,
        wakes: id,
        waker_clones: id,
        waker_drops: id,
        self_wakes: 0,
        warnings: Vec::new(),
        worker_tid: None,
        io_fd: None,
        io_fd_desc: None,
    };
    let mut running = task(17, "load", TaskState::Running);
    running.worker_tid = Some(6002);
    running.busy_ns = 3 * SECOND;
    running.warnings = vec!["has been busy for 3s".to_owned()];
    let mut conn = task(21, "conn", TaskState::Idle);
    conn.io_fd = Some(12);
    conn.io_fd_desc = Some("tcp 10.0.0.5:8080 -> 10.0.0.9:51544".to_owned());
    // Waits on two fds: no single `io_fd`, the I/O column says how many.
    let proxy = task(24, "proxy", TaskState::Idle);
    s.tasks = vec![
        running,
        conn,
        task(22, "ticker", TaskState::Scheduled),
        task(23, "flush", TaskState::Completed),
        proxy,
    ];
    use IoInterest::{Read, Write};
    use IoWaiterKind::{BlockOn, Task};
    s.io_waits = Some(IoWaits {
        waits: vec![
            wait(8, "tcp 0.0.0.0:8080 (listen)", Some(Read), BlockOn, None),
            wait(12, "tcp 10.0.0.5:8080 -> 10.0.0.9:51544", Some(Read), Task, Some(21)),
            wait(14, "tcp 10.0.0.5:8080 -> 10.0.0.7:40022", Some(Read), Task, Some(24)),
            wait(15, "tcp 10.0.0.5:33410 -> 10.0.0.20:5432", Some(Write), Task, Some(24)),
        ],
        registrations: 6,
        unrecognized: 0,
        capped: 0,
        error: None,
    });
    s.stalls = vec![parkscope_model::StallView {
        tid: 6002,
        task_id: Some(17),
        duration_ns: 3 * SECOND,
        exact: true,
        activity: parkscope_model::StallActivity::Syscall {
            name: "read".to_owned(),
            fd: Some(9),
            fd_desc: Some("/var/lib/service/data.db".to_owned()),
        },
        user_stack_id: stall_stack,
    }];
    finish(s)
}

/// A tokio service without console-subscriber: no console tasks, only the waiters parked on
/// I/O read from its memory: an accept loop, connections (one split into a reader and a
/// writer task on one socket, one with a long IPv6 description), a task on two fds, a pipe,
/// `#[tokio::main]`'s future on a second listener and a waker of another kind.
pub fn tokio_io_waits() -> Snapshot {
    let mut s = Snapshot::new(7001, "gateway".to_owned(), taken_at(0));
    s.summary.window_ns = SECOND;
    s.runtime = tokio_runtime();
    let mut w1 = thread(7002, "tokio-runtime-w", ThreadState::Sleeping);
    w1.role = Some(ThreadRole::TokioWorker);
    w1.syscall =
        Some(call(232, "epoll_wait", Some(5), Some("anon_inode:[eventpoll]"), Some(800_000_000), None));
    let mut w2 = thread(7003, "tokio-runtime-w", ThreadState::Sleeping);
    w2.role = Some(ThreadRole::TokioWorker);
    w2.syscall = Some(call(202, "futex", None, None, Some(800_000_000), None));
    s.threads = vec![thread(7001, "gateway", ThreadState::Sleeping), w1, w2];
    s.threads[0].syscall = Some(call(202, "futex", None, None, None, Some(SECOND)));
    use IoInterest::{Read, ReadWrite, Write};
    use IoWaiterKind::{BlockOn, Other, Task};
    s.io_waits = Some(IoWaits {
        waits: vec![
            wait(6, "tcp 0.0.0.0:8080 (listen)", Some(Read), Task, Some(3)),
            wait(16, "unix /run/gateway/admin.sock", Some(Read), Task, Some(8)),
            wait(7, "tcp 10.0.0.5:8080 -> 10.0.0.9:51544", Some(Read), Task, Some(5)),
            wait(7, "tcp 10.0.0.5:8080 -> 10.0.0.9:51544", Some(Write), Task, Some(6)),
            wait(
                9,
                "tcp [2001:db8:85a3::8a2e:370:7334]:8443 -> [2001:db8:85a3::8a2e:370:9f1c]:51544",
                Some(Read),
                Task,
                Some(8),
            ),
            wait(11, "pipe:[123456]", Some(Read), Task, Some(12)),
            wait(13, "udp 0.0.0.0:5353", Some(ReadWrite), Other, None),
            wait(15, "tcp 127.0.0.1:9000 (listen)", Some(Read), BlockOn, None),
        ],
        registrations: 11,
        unrecognized: 1,
        capped: 0,
        error: None,
    });
    finish(s)
}

/// [`tokio_io_waits`] of a stripped build: the waiters could not be read, and say why.
pub fn tokio_io_unreadable() -> Snapshot {
    let mut s = tokio_io_waits();
    s.io_waits = Some(IoWaits {
        error: Some(
            "the binary has no tokio::runtime::task::waker::WAKER_VTABLE symbol (stripped?)".to_owned(),
        ),
        ..IoWaits::default()
    });
    s
}
