//! User stacks of Go threads in builds without DWARF (`-s -w`, `-w`), unwound by the pclntab's
//! SP-delta tables (probes/src/stacks/unwind.rs), against ground truth the unwinder did not
//! compute: the symbol table of the plain build of the same source and release (the code is the
//! same, at the same addresses: `-w` and `-s` only drop sections), `objdump -d` of the stripped
//! binary (every return address follows a call instruction), and the stacks the plain build's
//! DWARF CFI gives for the same program run side by side.
//! Needs the example builds (`cargo xtask examples`) and binutils.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parkscope_probes::stacks::{Frame, ThreadStacks};

/// (plain build, build without DWARF) of the same source and release.
const PAIRS: [(&str, &str); 2] =
    [("parked-go1.27", "parked-go1.27-sw"), ("parked-go1.19", "parked-go1.19-w")];

/// Where Go's own unwinder stops: the first frame of a goroutine stack, of an M's g0 stack, and
/// the switch from a goroutine to g0.
const STACK_ENDS: [&str; 3] = ["runtime.goexit", "runtime.mstart", "runtime.mcall"];

fn example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/bin").join(name);
    assert!(p.is_file(), "{} missing: run `cargo xtask examples`", p.display());
    p
}

/// Kills and reaps the target however the test ends.
struct Target(Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a parked example and waits for its info and ready lines (every goroutine parked).
fn start(bin: &str) -> Target {
    let mut child = Command::new(example(bin))
        .args(["-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let target = Target(child);
    for what in ["info", "ready"] {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{bin} printed no {what} line");
    }
    // The pipe stays open (dropping it would make the target's later writes fail).
    std::mem::forget(out);
    target
}

/// A thread in a syscall: its number and user (pc, sp), from /proc/PID/task/TID/syscall.
fn in_syscall(pid: u32, tid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 9 {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((f[0].parse().ok()?, hex(f[8])?, hex(f[7])?))
}

/// Every thread in a syscall, with its syscall number and named user stack. A thread that left
/// its syscall while it was unwound (sysmon wakes up) is read again.
fn stacks(pid: u32) -> BTreeMap<u32, (u64, Vec<Frame>)> {
    let mut stacks = ThreadStacks::new(pid);
    let mut found = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for tid in tids {
        while let Some(before) = in_syscall(pid, tid) {
            stacks.begin_view();
            let frames = stacks.user_stack(before.1, before.2, None, 64);
            if in_syscall(pid, tid) == Some(before) {
                found.insert(tid, (before.0, frames));
                break;
            }
            assert!(Instant::now() < deadline, "thread {tid} never stayed in its syscall");
        }
    }
    found
}

fn name(f: &Frame) -> &str {
    f.function.as_deref().unwrap_or("?")
}

fn render(frames: &[Frame]) -> String {
    frames.iter().map(|f| format!("  {f}\n")).collect()
}

/// The stack up to where Go's unwinder stops (the plain build's CFI goes on into runtime.clone).
fn go_part(frames: &[Frame]) -> &[Frame] {
    let end = frames.iter().position(|f| STACK_ENDS.contains(&name(f))).map_or(frames.len(), |i| i + 1);
    &frames[..end]
}

/// Function symbols of the plain build, sorted by address: (start, size, name without the
/// `.abi0` suffix of assembly functions).
fn symbols(bin: &Path) -> Vec<(u64, u64, String)> {
    let out = Command::new("nm").arg("-S").arg("-n").arg(bin).output().expect("running nm (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [addr, size, kind, name] = f[..] else { return None };
            if !kind.eq_ignore_ascii_case("t") {
                return None;
            }
            let addr = u64::from_str_radix(addr, 16).ok()?;
            let size = u64::from_str_radix(size, 16).ok()?;
            Some((addr, size, name.trim_end_matches(".abi0").to_owned()))
        })
        .collect()
}

fn symbol_at(symbols: &[(u64, u64, String)], addr: u64) -> Option<&(u64, u64, String)> {
    let i = symbols.partition_point(|s| s.0 <= addr).checked_sub(1)?;
    let s = &symbols[i];
    (addr < s.0 + s.1).then_some(s)
}

/// Addresses right after each call instruction of `bin` in [start, end), from `objdump -d`.
fn return_addresses(bin: &Path, start: u64, end: u64) -> BTreeSet<u64> {
    let out = Command::new("objdump")
        .args([
            "-d",
            "--no-show-raw-insn",
            &format!("--start-address={start:#x}"),
            &format!("--stop-address={end:#x}"),
        ])
        .arg(bin)
        .output()
        .expect("running objdump (binutils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let insns: Vec<(u64, bool)> = text
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.trim_start().split_once(':')?;
            let addr = u64::from_str_radix(addr, 16).ok()?;
            Some((addr, rest.split_whitespace().next().is_some_and(|m| m.starts_with("call"))))
        })
        .collect();
    let mut after_calls: BTreeSet<u64> = insns.windows(2).filter(|w| w[0].1).map(|w| w[1].0).collect();
    if insns.last().is_some_and(|l| l.1) {
        after_calls.insert(end);
    }
    after_calls
}

#[test]
fn go_threads_without_dwarf_unwind_like_the_dwarf_build() {
    for (plain, stripped) in PAIRS {
        let plain_target = start(plain);
        let stripped_target = start(stripped);
        let plain_stacks = stacks(plain_target.0.id());
        let stripped_stacks = stacks(stripped_target.0.id());
        let syms = symbols(&example(plain));
        let stripped_bin = example(stripped);
        assert!(stripped_stacks.len() >= 4, "{stripped}: too few threads in syscalls: {stripped_stacks:#?}");

        let mut names_plain = BTreeSet::new();
        let mut names_stripped = BTreeSet::new();
        for (_, frames) in plain_stacks.values() {
            names_plain.extend(go_part(frames).iter().map(|f| name(f).to_owned()));
        }
        for (tid, (nr, frames)) in &stripped_stacks {
            let who = format!("{stripped} thread {tid} (syscall {nr})");
            names_stripped.extend(frames.iter().map(|f| name(f).to_owned()));
            // A complete walk: it ends where Go's own unwinder ends, not after the syscall stub.
            assert!(
                frames.len() >= 3 && STACK_ENDS.contains(&name(frames.last().unwrap())),
                "{who}: incomplete stack:\n{}",
                render(frames)
            );
            for (i, f) in frames.iter().enumerate() {
                // The plain build's symbol table names the same address the same way.
                let at = if i == 0 { f.addr } else { f.addr - 1 };
                let sym = symbol_at(&syms, at).unwrap_or_else(|| panic!("{who}: {f} is in no symbol"));
                assert_eq!(name(f), sym.2, "{who}: frame {i}:\n{}", render(frames));
                // objdump: every return address follows a call in its function, except the one
                // the runtime plants at the top of each goroutine stack (goexit's entry + 1).
                let planted = name(f) == "runtime.goexit" && f.addr == sym.0 + 1;
                if i > 0 && !planted {
                    let calls = return_addresses(&stripped_bin, sym.0, sym.0 + sym.1);
                    assert!(calls.contains(&f.addr), "{who}: {f} follows no call:\n{}", render(frames));
                }
            }
            if *nr == 202 {
                // futex: every sleeping M or goroutine thread sleeps on a note.
                assert!(
                    frames.iter().any(|f| name(f).starts_with("runtime.note")),
                    "{who}: no note sleep:\n{}",
                    render(frames)
                );
            }
        }

        // The raw read(2) thread: the same frames, offsets included, as with DWARF.
        let read = |s: &BTreeMap<u32, (u64, Vec<Frame>)>| -> Vec<(String, u64)> {
            let (_, frames) = s.values().find(|(nr, _)| *nr == 0).expect("a thread in read(2)");
            go_part(frames).iter().map(|f| (name(f).to_owned(), f.offset)).collect()
        };
        let read_stripped = read(&stripped_stacks);
        assert_eq!(read_stripped, read(&plain_stacks), "{stripped}: read thread");
        assert!(read_stripped.iter().any(|(n, _)| n == "main.parkedPipeRead"), "{read_stripped:?}");

        // What the DWARF build's threads reach, the stripped build's reach too.
        for wanted in [
            "runtime.notesleep",
            "runtime.schedule",
            "runtime.mstart",
            "runtime.sysmon",
            "os/signal.signal_recv",
        ] {
            assert!(names_plain.contains(wanted), "{plain}: no {wanted} in {names_plain:#?}");
            assert!(names_stripped.contains(wanted), "{stripped}: no {wanted} in {names_stripped:#?}");
        }
        assert!(
            names_stripped.contains("runtime.stopm") || names_stripped.contains("runtime.stoplockedm"),
            "{stripped}: no idle M in {names_stripped:#?}"
        );
    }
}
