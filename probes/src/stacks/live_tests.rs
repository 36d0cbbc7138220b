//! End-to-end checks against a real blocked process: a C program compiled at test time blocks
//! in read(2), the kernel's /proc/PID/syscall gives its pc and sp, and the unwound, symbolized
//! stack must show the call chain the program's source makes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{Frame, Symbolizer, UserUnwinder};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <unistd.h>

/* noipa: no inlining, cloning or interprocedural tricks, so the frame exists under this name. */
__attribute__((noipa)) int parkscope_test_blocked_here(int fd) {
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf); /* nobody writes: blocks forever */
    return (int)n + buf[0];                /* uses the result: read is not a tail call */
}

int main(void) {
    int p[2];
    if (pipe(p) != 0) return 1;
    int r = parkscope_test_blocked_here(p[0]);
    printf("%d\n", r);
    return r;
}
"#;

/// Kills and reaps the child however the test ends, so a failed assertion leaves no process.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the scratch directory however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compile(flags: &[&str], tag: &str) -> (TempDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!("parkscope-stacks-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let src = dir.0.join("blocked.c");
    let exe = dir.0.join("blocked");
    std::fs::write(&src, PROGRAM).unwrap();
    let out = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("running cc (is gcc installed?)");
    assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    (dir, exe)
}

/// The user (pc, sp) of a thread blocked in read(2), from the kernel's own report.
fn wait_blocked_in_read(pid: u32) -> (u64, u64) {
    let path = format!("/proc/{pid}/task/{pid}/syscall");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let fields: Vec<&str> = text.split_whitespace().collect();
        // "nr arg0..arg5 sp pc" while in a syscall; read is syscall 0 on x86_64.
        if fields.len() == 9 && fields[0] == "0" {
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            return (hex(fields[8]), hex(fields[7]));
        }
        assert!(Instant::now() < deadline, "child never blocked in read; last {path}: {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn position(frames: &[Frame], what: &str, pred: impl Fn(&Frame) -> bool) -> usize {
    frames.iter().position(pred).unwrap_or_else(|| panic!("no {what} frame in:\n{}", render(frames)))
}

fn render(frames: &[Frame]) -> String {
    frames.iter().map(|f| format!("  {f}\n")).collect()
}

fn check_blocked_stack(flags: &[&str], tag: &str) {
    let (_dir, exe) = compile(flags, tag);
    let child = KillOnDrop(Command::new(&exe).spawn().unwrap());
    let pid = child.0.id();
    let (pc, sp) = wait_blocked_in_read(pid);

    let mut unwinder = UserUnwinder::new(pid).unwrap();
    let addrs = unwinder.unwind(pc, sp, None, 64);
    assert_eq!(addrs[0], pc);
    let frames = Symbolizer::new().user(pid, &addrs);
    assert_eq!(frames.len(), addrs.len());

    let name = |f: &Frame| f.function.clone().unwrap_or_default();
    let in_module = |f: &Frame, m: &str| {
        f.module
            .as_deref()
            .is_some_and(|p| Path::new(p).file_name().is_some_and(|n| n.to_string_lossy().starts_with(m)))
    };
    let read = position(&frames, "libc read", |f| name(f).contains("read") && in_module(f, "libc"));
    let blocked = position(&frames, "parkscope_test_blocked_here", |f| {
        name(f) == "parkscope_test_blocked_here" && in_module(f, "blocked")
    });
    let main = position(&frames, "main", |f| name(f) == "main" && in_module(f, "blocked"));
    assert!(read < blocked && blocked < main, "frames out of order:\n{}", render(&frames));
    // Adjacent: nothing invented between the function and its direct callers.
    assert_eq!((blocked - read, main - blocked), (1, 1), "unexpected frames:\n{}", render(&frames));
    // DWARF from -g names the call site line.
    assert!(
        frames[blocked].file_line.as_deref().is_some_and(|l| l.starts_with("blocked.c:")),
        "no line info:\n{}",
        render(&frames)
    );

    // A second unwind reuses the loaded modules and must agree.
    assert_eq!(unwinder.unwind(pc, sp, None, 64), addrs);

    // The per-view path (one reading of the map per view, CFI and names cached across views)
    // names the same frames, the second time from its caches.
    let mut stacks = super::ThreadStacks::new(pid);
    for view in 0..2 {
        stacks.begin_view();
        assert_eq!(stacks.user_stack(pc, sp, None, 64), frames, "view {view}");
    }
}

#[test]
fn stacks_caches_can_move_between_threads() {
    // The observer keeps them across views while moving between tokio's blocking threads.
    fn assert_send<T: Send>() {}
    assert_send::<super::ThreadStacks>();
    assert_send::<Symbolizer>();
}

#[test]
fn stacks_unwind_blocked_read_optimized_without_frame_pointers() {
    check_blocked_stack(&["-O2", "-g", "-fomit-frame-pointer"], "o2");
}

#[test]
fn stacks_unwind_blocked_read_with_frame_pointers_unoptimized() {
    check_blocked_stack(&["-O0", "-g", "-fno-omit-frame-pointer"], "o0fp");
}

#[test]
fn stacks_max_frames_truncates() {
    let (_dir, exe) = compile(&["-O2", "-g"], "max");
    let child = KillOnDrop(Command::new(&exe).spawn().unwrap());
    let pid = child.0.id();
    let (pc, sp) = wait_blocked_in_read(pid);
    let mut unwinder = UserUnwinder::new(pid).unwrap();
    assert_eq!(unwinder.unwind(pc, sp, None, 0), Vec::<u64>::new());
    assert_eq!(unwinder.unwind(pc, sp, None, 1), vec![pc]);
    let full = unwinder.unwind(pc, sp, None, 64);
    assert_eq!(unwinder.unwind(pc, sp, None, 2), full[..2]);
}

#[test]
fn stacks_kernel_symbolizes_kallsyms_entry() {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let addr = kallsyms
        .lines()
        .find_map(|line| {
            let mut it = line.split_whitespace();
            let (addr, kind, name) = (it.next()?, it.next()?, it.next()?);
            (name == "do_syscall_64" && kind.eq_ignore_ascii_case("t"))
                .then(|| u64::from_str_radix(addr, 16).unwrap())
        })
        .expect("do_syscall_64 in /proc/kallsyms");
    assert_ne!(addr, 0, "kallsyms addresses are hidden (kptr_restrict); run as root");
    // As an innermost frame the address itself is looked up; as a return address, addr-1 would
    // fall into the previous symbol, so use an address inside the function for that case.
    let frames = Symbolizer::new().kernel(&[addr, addr + 1]);
    assert_eq!(frames[0].function.as_deref(), Some("do_syscall_64"), "{}", frames[0]);
    assert_eq!(frames[0].offset, 0);
    assert_eq!(frames[1].function.as_deref(), Some("do_syscall_64"), "{}", frames[1]);
    assert_eq!(frames[1].offset, 1);
}
