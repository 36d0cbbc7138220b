//! Where and with what the opt-in Go uprobes attach: the file offsets of `runtime.casgstatus`
//! and `runtime.gopark` just past their stack-growth checks, and the runtime offsets and status
//! values the programs need, all taken from the target's own binary.
//!
//! Why past the check: a Go function starts with `cmp 0x10(%r14),%rsp; jbe morestack`. A uprobe
//! on that `cmp` must be single-stepped out of line, ~10 us a hit on these VMs, while the
//! `push %rbp` that follows (Go >= 1.21 frames) is emulated by the kernel (~0.4 us). The check
//! does not touch the argument registers, and when it fails the function is re-entered from
//! the top after the stack grows, so a probe past it still fires exactly once per call. Older
//! runtimes (Go 1.19, 1.20) set up frames with `sub $N,%rsp` instead, which the kernel cannot
//! emulate: there every hit is single-stepped, and parkscope says so when it attaches.

use std::path::PathBuf;

use parkscope_common::{GoProbeConfig, NO_GO_STATUS};

use super::layout::{GField, GoConst};
use super::{GoError, GoProcess};

/// Where to attach one program: the executable (as /proc/PID/exe, so the right inode is used
/// even if the file was replaced on disk) and the file offset of the probed instruction.
#[derive(Debug, Clone)]
pub struct UprobePoint {
    pub function: &'static str,
    pub file_offset: u64,
    /// Bytes from the function's entry to the probed instruction (the stack check's length).
    pub past_entry: u64,
    /// The probed instruction is one the kernel emulates (`push %rbp`); otherwise (`sub`) it
    /// is single-stepped, at many times the cost per hit.
    pub emulated: bool,
}

/// Everything `KernelProbes::attach_go_uprobes` needs.
#[derive(Debug, Clone)]
pub struct GoUprobePlan {
    pub exe: PathBuf,
    pub casgstatus: UprobePoint,
    pub gopark: UprobePoint,
    pub config: GoProbeConfig,
}

/// Why a prologue was not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised prologue {bytes}")]
pub struct PrologueError {
    bytes: String,
}

/// The instruction a probe goes on: past the stack-growth check, at the frame setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSetup {
    /// Bytes from the function's entry.
    pub offset: usize,
    /// `push %rbp` (emulated by the kernel) rather than `sub $N,%rsp` (single-stepped).
    pub push: bool,
}

/// The first instruction of the function's frame setup: at 0 for a function without a
/// stack-growth check (`//go:nosplit`), else right after the check. The checks recognised are
/// the three the Go linker emits on amd64 (cmd/internal/obj/x86's stacksplit): small frames
/// compare SP with g.stackguard0 (R14 holds g); medium frames compare SP-framesize, computed
/// into R12 by a LEA; huge frames compute it with MOV+SUB and a carry check. The frame setup is
/// `push %rbp` (Go >= 1.21) or `sub $N,%rsp` (older releases). Anything else is refused rather
/// than guessed: a probe in the middle of an instruction would corrupt the code.
pub fn frame_setup(code: &[u8]) -> Result<FrameSetup, PrologueError> {
    let err = || PrologueError {
        bytes: code.iter().take(24).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
    };
    const PUSH_RBP: u8 = 0x55;
    const CMP_RSP_G_STACKGUARD: [u8; 4] = [0x49, 0x3b, 0x66, 0x10];
    const CMP_R12_G_STACKGUARD: [u8; 4] = [0x4d, 0x3b, 0x66, 0x10];
    let at = |i: usize, bytes: &[u8]| code.get(i..i + bytes.len()) == Some(bytes);
    let setup_at = |i: usize| {
        if code.get(i) == Some(&PUSH_RBP) {
            Some(FrameSetup { offset: i, push: true })
        } else if at(i, &[0x48, 0x83, 0xec]) || at(i, &[0x48, 0x81, 0xec]) {
            // sub $imm8,%rsp / sub $imm32,%rsp
            Some(FrameSetup { offset: i, push: false })
        } else {
            None
        }
    };
    if !at(0, &CMP_RSP_G_STACKGUARD) && !at(0, &[0x4c, 0x8d]) && !at(0, &[0x49, 0x89, 0xe4]) {
        return setup_at(0).ok_or_else(err);
    }
    let mut i = if at(0, &CMP_RSP_G_STACKGUARD) {
        4
    } else {
        // lea -N(%rsp),%r12 (disp8 or disp32)
        let lea = if at(0, &[0x4c, 0x8d, 0x64, 0x24]) {
            5
        } else if at(0, &[0x4c, 0x8d, 0xa4, 0x24]) {
            8
        } else if at(0, &[0x49, 0x89, 0xe4]) && at(3, &[0x49, 0x81, 0xec]) {
            // mov %rsp,%r12; sub $N,%r12; jb (rel8 or rel32)
            match code.get(10) {
                Some(0x72) => 12,
                Some(0x0f) if code.get(11) == Some(&0x82) => 16,
                _ => return Err(err()),
            }
        } else {
            return Err(err());
        };
        if !at(lea, &CMP_R12_G_STACKGUARD) {
            return Err(err());
        }
        lea + 4
    };
    // jbe morestack: rel8 or rel32
    i += match (code.get(i), code.get(i + 1)) {
        (Some(0x76), _) => 2,
        (Some(0x0f), Some(0x86)) => 6,
        _ => return Err(err()),
    };
    setup_at(i).ok_or_else(err)
}

impl GoProcess {
    /// The uprobe attachment points and program settings for this process.
    pub fn uprobe_plan(&self) -> Result<GoUprobePlan, GoError> {
        let point = |function: &'static str| -> Result<UprobePoint, GoError> {
            let code = self.binary.function(function).ok_or_else(|| GoError::UnknownLayout {
                version: self.version().to_owned(),
                missing: format!("function {function} in the symbol table"),
            })?;
            let setup = frame_setup(&code.head).map_err(|e| GoError::Binary {
                path: self.binary.path.clone(),
                reason: format!("{function}: {e}; cannot place a uprobe safely"),
            })?;
            let past = setup.offset as u64;
            Ok(UprobePoint {
                function,
                file_offset: code.file_offset + past,
                past_entry: past,
                emulated: setup.push,
            })
        };
        let l = &self.binary.layout;
        let status = |c: GoConst| -> Result<u32, GoError> {
            l.constant(c).map(|v| v as u32).ok_or_else(|| GoError::UnknownLayout {
                version: self.version().to_owned(),
                missing: format!("constant {} in {}", c.name(), l.source),
            })
        };
        let config = GoProbeConfig {
            window_start_ns: 0,
            goid_off: l.field(GField::Goid).offset as u32,
            waitreason_off: l.field(GField::Waitreason).offset as u32,
            running: status(GoConst::Grunning)?,
            syscall: status(GoConst::Gsyscall)?,
            waiting: status(GoConst::Gwaiting)?,
            dead: status(GoConst::Gdead)?,
            copystack: status(GoConst::Gcopystack)?,
            deadextra: l.constant(GoConst::Gdeadextra).map_or(NO_GO_STATUS, |v| v as u32),
            aggregate: 0,
            _pad: 0,
        };
        Ok(GoUprobePlan {
            exe: PathBuf::from(format!("/proc/{}/exe", self.pid)),
            casgstatus: point("runtime.casgstatus")?,
            gopark: point("runtime.gopark")?,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(offset: usize) -> Result<FrameSetup, PrologueError> {
        Ok(FrameSetup { offset, push: true })
    }

    #[test]
    fn recognises_the_linkers_stack_checks() {
        // nosplit: push %rbp first (casgstatus in go1.27), or sub (casgstatus in go1.19).
        assert_eq!(frame_setup(&[0x55, 0x48, 0x89, 0xe5]), push(0));
        assert_eq!(frame_setup(&[0x48, 0x83, 0xec, 0x40]), Ok(FrameSetup { offset: 0, push: false }));
        // cmp 0x10(%r14),%rsp; jbe rel32; push %rbp (gopark in go1.27)
        assert_eq!(frame_setup(&[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 1, 2, 0, 0, 0x55]), push(10));
        // cmp; jbe rel8; push
        assert_eq!(frame_setup(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55]), push(6));
        // cmp; jbe rel8; sub $0x28,%rsp (go1.19 frames)
        assert_eq!(
            frame_setup(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x48, 0x83, 0xec, 0x28]),
            Ok(FrameSetup { offset: 6, push: false })
        );
        // lea -0x98(%rsp),%r12 (disp32); cmp 0x10(%r14),%r12; jbe rel32; push
        let medium = [
            0x4c, 0x8d, 0xa4, 0x24, 0x68, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 0, 0, 0,
            0x55,
        ];
        assert_eq!(frame_setup(&medium), push(18));
        // lea -0x18(%rsp),%r12 (disp8); cmp; jbe rel8; push
        assert_eq!(
            frame_setup(&[0x4c, 0x8d, 0x64, 0x24, 0xe8, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x10, 0x55]),
            push(11)
        );
        // mov %rsp,%r12; sub $N,%r12; jb rel8; cmp; jbe rel32; push
        let huge = [
            0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0, 0x10, 0, 0, 0x72, 0x0a, 0x4d, 0x3b, 0x66, 0x10, 0x0f,
            0x86, 0, 0, 0, 0, 0x55,
        ];
        assert_eq!(frame_setup(&huge), push(22));
    }

    #[test]
    fn refuses_anything_else() {
        // a frameless leaf's mov, a check followed by something else, a cut check, garbage.
        assert!(frame_setup(&[0x48, 0x89, 0x44, 0x24, 0x08]).is_err());
        assert!(frame_setup(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x48, 0x89]).is_err());
        assert!(frame_setup(&[0x49, 0x3b, 0x66, 0x10, 0x90]).is_err());
        assert!(frame_setup(&[0x4c, 0x8d, 0x64, 0x24, 0xe8, 0x49, 0x3b]).is_err());
        assert!(frame_setup(&[]).is_err());
    }
}
