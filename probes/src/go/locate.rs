//! Finds the Go runtime's global variables (and the uprobe functions) in an executable that has
//! no symbol table: a build with `-ldflags="-s -w"`, which is how Debian and most container
//! images ship Go programs.
//!
//! What such a binary still has is `.gopclntab`, the table the runtime itself uses for
//! tracebacks: every function's name and entry (see [`super::pclntab`]). So each variable is
//! found through the code of runtime functions that are known to use it: the functions are
//! looked up by name, their machine code decoded (iced-x86), and their RIP-relative memory
//! operands collected, with a small per-function register tracker so that the Go compiler's
//! `lea sym(%rip), %reg; xchg %val, (%reg)` form of atomic stores is seen as an access to `sym`.
//! The rules below say which access of which function is which variable. Each was checked
//! against the disassembly of Go 1.19 through 1.27 builds, and each is cross-checked by a second,
//! independent fact (another function using the same address the same way, the shape of a slice
//! header, the variable's initial value in the file) rather than trusting a first hit: a rule
//! that finds no candidate, or more than one, is an error naming the variable, never a guess.
//!
//! | variable | found by | cross-checked by |
//! | --- | --- | --- |
//! | `runtime.sched` | the 64-bit atomic add to `sched.goidgen` (its first field) in `newproc1` | `GOMAXPROCS` locking `sched.lock`, a few words further on |
//! | `runtime.gomaxprocs` | 32-bit loads in `GOMAXPROCS` | the 32-bit atomic store `procresize` makes |
//! | `runtime.allp` | `procresize` writing a slice header (pointer, len, cap) | `retake` reading its pointer and len |
//! | `runtime.allgs` | `allgadd` appending to a slice (pointer, len, cap written) | `forEachG` reading its pointer and len |
//! | `runtime.allglen` | the last atomic store of `allgadd` | `forEachGRace` loading it |
//! | `runtime.allm` | the word `mcommoninit` both loads (into `mp.alllink`) and atomically stores | `schedtrace` loading it |
//! | `runtime.waitReasonStrings` | the table `waitReason.String` indexes; its bounds check gives the length | the string headers in the file have plausible lengths |
//! | `runtime.epfd` | the first 32-bit store of `netpollinit` | its initial value in `.data` is -1, and `netpollinit` reads it back |
//!
//! Everything is bounded, since the binary is the target's: the file is only read through
//! checked slices, at most [`MAX_FUNCTION_BYTES`] of any function are decoded, at most
//! [`MAX_INSTRUCTIONS`] instructions, and a malformed file yields an error, never a panic.
//! [`globals`] is a pure function of the file's bytes (what the fuzz target drives).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

use super::binary::{GLOBALS, UPROBE_FUNCTIONS};
use super::pclntab::{GoExecutable, PclntabError};

/// Longest function decoded; the runtime functions used here are a few KiB at most.
pub const MAX_FUNCTION_BYTES: usize = 64 * 1024;
/// Most instructions decoded in one function.
pub const MAX_INSTRUCTIONS: usize = 16 * 1024;

/// Why a variable could not be located. One line naming what was not found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("the pclntab cannot be read: {0}")]
    Pclntab(#[from] PclntabError),
    #[error("there is no .gopclntab")]
    NoPclntab,
    #[error("runtime function {0} is not in the pclntab")]
    MissingFunction(&'static str),
    #[error("{global} was not found: {why}")]
    NotFound { global: &'static str, why: String },
}

/// The runtime's globals and the uprobe functions, as located in the code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Located {
    /// Stated address and size of each of [`GLOBALS`]. The size is that of the variable where
    /// the code shows it (slice headers, scalars, the wait reason table); 0 for `runtime.sched`,
    /// whose size nothing here needs.
    pub globals: HashMap<&'static str, (u64, u64)>,
    /// Entry address and file offset of each of [`UPROBE_FUNCTIONS`] the pclntab has.
    pub functions: HashMap<&'static str, (u64, u64)>,
}

/// Locates every one of [`GLOBALS`] (and the [`UPROBE_FUNCTIONS`]) in the ELF file `file`.
pub fn globals(file: &[u8]) -> Result<Located, LocateError> {
    let exe = GoExecutable::from_bytes(file, "the executable")?.ok_or(LocateError::NoPclntab)?;
    let image = Image::new(file, &exe);
    let mut located = Located::default();
    for (name, find) in RULES {
        let found = find(&image)?;
        located.globals.insert(name, found);
    }
    debug_assert!(GLOBALS.iter().all(|g| located.globals.contains_key(g)));
    for f in UPROBE_FUNCTIONS {
        if let Some(range) = image.functions.get(f)
            && let Some(offset) = exe.file_offset_of(range.start)
        {
            located.functions.insert(f, (range.start, offset));
        }
    }
    Ok(located)
}

type Rule = fn(&dyn Program) -> Result<(u64, u64), LocateError>;

/// One rule per global, in [`GLOBALS`] order.
const RULES: &[(&str, Rule)] = &[
    ("runtime.allgs", allgs),
    ("runtime.allglen", allglen),
    ("runtime.allm", allm),
    ("runtime.allp", allp),
    ("runtime.sched", sched),
    ("runtime.gomaxprocs", gomaxprocs),
    ("runtime.waitReasonStrings", wait_reason_strings),
    ("runtime.epfd", epfd),
];

/// Runtime functions whose code the rules read.
const CODE_FUNCTIONS: &[&str] = &[
    "runtime.newproc1",
    "runtime.GOMAXPROCS",
    "runtime.procresize",
    "runtime.retake",
    "runtime.allgadd",
    "runtime.forEachG",
    "runtime.forEachGRace",
    "runtime.mcommoninit",
    "runtime.schedtrace",
    "runtime.waitReason.String",
    "runtime.netpollinit",
];

/// What the rules read: decoded runtime functions by name, file bytes by address.
trait Program {
    /// Decodes the runtime function `name`.
    fn scan(&self, name: &'static str) -> Result<Scan, LocateError>;
    /// `len` bytes of the file at link-time address `addr`, if the file holds them all.
    fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

/// The executable's bytes with its pclntab: function code by name, data by address.
struct Image<'a> {
    file: &'a [u8],
    exe: &'a GoExecutable,
    functions: HashMap<&'static str, Range<u64>>,
}

impl<'a> Image<'a> {
    fn new(file: &'a [u8], exe: &'a GoExecutable) -> Image<'a> {
        let wanted: Vec<&'static str> = CODE_FUNCTIONS.iter().chain(UPROBE_FUNCTIONS).copied().collect();
        let found = exe.pclntab.functions_named(&wanted);
        let functions = wanted.into_iter().zip(found).filter_map(|(n, r)| Some((n, r?))).collect();
        Image { file, exe, functions }
    }
}

impl Program for Image<'_> {
    fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (off, available) = self.exe.file_range_of(addr)?;
        if (len as u64) > available {
            return None;
        }
        let off = usize::try_from(off).ok()?;
        self.file.get(off..off.checked_add(len)?)
    }

    fn scan(&self, name: &'static str) -> Result<Scan, LocateError> {
        let range = self.functions.get(name).ok_or(LocateError::MissingFunction(name))?;
        let (off, available) =
            self.exe.file_range_of(range.start).ok_or(LocateError::MissingFunction(name))?;
        // A functab end past the segment (a lying table) is cut to what the file holds.
        let len = range.end.saturating_sub(range.start).min(available).min(MAX_FUNCTION_BYTES as u64);
        let code = usize::try_from(off)
            .ok()
            .and_then(|off| self.file.get(off..off.checked_add(len as usize)?))
            .ok_or(LocateError::MissingFunction(name))?;
        Ok(scan(code, range.start))
    }
}

fn not_found(global: &'static str, why: impl Into<String>) -> LocateError {
    LocateError::NotFound { global, why: why.into() }
}

/// The one candidate left, or an error saying there were none or several.
fn single(global: &'static str, what: &str, mut candidates: Vec<u64>) -> Result<u64, LocateError> {
    candidates.sort_unstable();
    candidates.dedup();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(not_found(global, format!("no {what}"))),
        many => Err(not_found(global, format!("{} candidates for {what}", many.len()))),
    }
}

/// `sched.goidgen` is the first field of `runtime.schedt` in every release, and `newproc1`
/// refills a P's goid cache with `sched.goidgen.Add(_GoidCacheBatch)`: a 64-bit locked add.
/// `GOMAXPROCS` takes `sched.lock` (24 or 32 bytes further on, depending on the release).
fn sched(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.sched";
    let newproc1 = image.scan("runtime.newproc1")?;
    let gomaxprocs = image.scan("runtime.GOMAXPROCS")?;
    let lock_args: Vec<u64> = gomaxprocs.addresses_of(|r| r.access == Access::Address).collect();
    let candidates = newproc1
        .addresses_of(|r| r.access == Access::Update && r.width == 8 && !r.indexed)
        .filter(|&s| lock_args.iter().any(|&l| l > s && l - s <= 64))
        .collect();
    Ok((single(G, "64-bit atomic add in newproc1 near a lock GOMAXPROCS takes", candidates)?, 0))
}

/// `GOMAXPROCS` reads `gomaxprocs` (32 bits) under `sched.lock`; `procresize` ends with
/// `atomic.Store(&gomaxprocs, nprocs)`.
fn gomaxprocs(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.gomaxprocs";
    let reads: HashSet<u64> = image
        .scan("runtime.GOMAXPROCS")?
        .addresses_of(|r| r.access == Access::Read && r.width == 4 && !r.indexed)
        .collect();
    let stores = image.scan("runtime.procresize")?;
    let candidates = stores
        .addresses_of(|r| matches!(r.access, Access::Swap | Access::Write) && r.width == 4 && !r.indexed)
        .filter(|a| reads.contains(a))
        .collect();
    Ok((single(G, "32-bit word GOMAXPROCS reads and procresize stores", candidates)?, 4))
}

/// `procresize` grows `allp` (`allp = append(allp[:cap(allp)], ...)`, `allp = allp[:nprocs]`),
/// writing the three words of its slice header; `retake` loops over it (pointer and len).
fn allp(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.allp";
    let writer = image.scan("runtime.procresize")?;
    let reader = image.scan("runtime.retake")?;
    let candidates =
        slice_headers(&writer).into_iter().filter(|&a| reader.reads(a, 8) && reader.reads(a + 8, 8));
    Ok((single(G, "slice header procresize writes and retake reads", candidates.collect())?, 24))
}

/// `allgadd` does `allgs = append(allgs, gp)`, writing the slice header; `forEachG` ranges
/// over it.
fn allgs(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.allgs";
    let writer = image.scan("runtime.allgadd")?;
    let reader = image.scan("runtime.forEachG")?;
    let candidates =
        slice_headers(&writer).into_iter().filter(|&a| reader.reads(a, 8) && reader.reads(a + 8, 8));
    Ok((single(G, "slice header allgadd writes and forEachG reads", candidates.collect())?, 24))
}

/// `allgadd` ends with `atomicstorep(&allgptr, &allgs[0])` then `atomic.Storeuintptr(&allglen,
/// len(allgs))`: its last atomic store is to `allglen`, which `forEachGRace` (through
/// `atomicAllG`) loads.
fn allglen(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.allglen";
    let writer = image.scan("runtime.allgadd")?;
    let reader = image.scan("runtime.forEachGRace")?;
    let last_swap = writer.refs.iter().rev().find(|r| r.access == Access::Swap && r.width == 8 && !r.indexed);
    let Some(last_swap) = last_swap else { return Err(not_found(G, "no atomic store in allgadd")) };
    if !reader.reads(last_swap.addr, 8) {
        return Err(not_found(G, "forEachGRace does not load the word allgadd stores last"));
    }
    Ok((last_swap.addr, 8))
}

/// `mcommoninit` links the new M in: `mp.alllink = allm` (a load) then
/// `atomicstorep(&allm, mp)` (an atomic store); `schedtrace` walks the list from `allm`.
fn allm(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.allm";
    let init = image.scan("runtime.mcommoninit")?;
    let trace = image.scan("runtime.schedtrace")?;
    let swapped: HashSet<u64> =
        init.addresses_of(|r| r.access == Access::Swap && r.width == 8 && !r.indexed).collect();
    let candidates = init
        .addresses_of(|r| r.access == Access::Read && r.width == 8 && !r.indexed)
        .filter(|a| swapped.contains(a) && trace.reads(*a, 8))
        .collect();
    Ok((single(G, "word mcommoninit loads and atomically stores and schedtrace loads", candidates)?, 8))
}

/// `waitReason.String` is `if w >= waitReason(len(waitReasonStrings)) { return "unknown wait
/// reason" }; return waitReasonStrings[w]`: the bound of its first compare is the table's
/// length, and the table is the base of its indexed load.
fn wait_reason_strings(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.waitReasonStrings";
    let code = image.scan("runtime.waitReason.String")?;
    let Some(&n) = code.bounds.first() else {
        return Err(not_found(G, "waitReason.String has no bounds check"));
    };
    // waitReason is a uint8.
    if !(2..=256).contains(&n) {
        return Err(not_found(G, format!("waitReason.String checks against {n}, not a uint8 bound")));
    }
    // The lea'd base of the indexed loads (the string's length is loaded 8 bytes further on).
    let bases: HashSet<u64> = code.addresses_of(|r| r.access == Access::Address).collect();
    let indexed = code.addresses_of(|r| r.indexed).filter(|a| bases.contains(a)).collect();
    let table = single(G, "indexed table in waitReason.String", indexed)?;
    // Cross-check: n string headers {ptr, len} in the file, the first ("") empty and the others
    // short, non-empty strings. A PIE's pointers may await relocation; the lengths do not.
    let headers = image
        .bytes_at(table, (n * 16) as usize)
        .ok_or_else(|| not_found(G, format!("{n} string headers at {table:#x} are not in the file")))?;
    let len_of =
        |i: usize| u64::from_le_bytes(headers[i * 16 + 8..i * 16 + 16].try_into().unwrap_or_default());
    let plausible = len_of(0) == 0 && (1..n as usize).all(|i| (1..=128).contains(&len_of(i)));
    if !plausible {
        return Err(not_found(G, format!("the {n} entries at {table:#x} are not wait reason strings")));
    }
    Ok((table, n * 16))
}

/// `netpollinit` starts with `epfd = epollcreate1(...)` (the first 32-bit store) and then
/// uses it; `epfd` is declared `= -1`, so the file holds that initial value.
fn epfd(image: &dyn Program) -> Result<(u64, u64), LocateError> {
    const G: &str = "runtime.epfd";
    let code = image.scan("runtime.netpollinit")?;
    let Some(first) = code.refs.iter().find(|r| r.access == Access::Write && r.width == 4 && !r.indexed)
    else {
        return Err(not_found(G, "netpollinit makes no 32-bit store"));
    };
    if !code.reads(first.addr, 4) {
        return Err(not_found(G, "netpollinit does not read back what it stores first"));
    }
    if image.bytes_at(first.addr, 4) != Some(&(-1i32).to_le_bytes()[..]) {
        return Err(not_found(G, format!("the word at {:#x} does not start as -1", first.addr)));
    }
    Ok((first.addr, 4))
}

/// Addresses `a` where the code writes the three words `a`, `a+8`, `a+16` (a slice header).
fn slice_headers(code: &Scan) -> Vec<u64> {
    let written: HashSet<u64> =
        code.addresses_of(|r| r.access == Access::Write && r.width == 8 && !r.indexed).collect();
    written.iter().copied().filter(|&a| written.contains(&(a + 8)) && written.contains(&(a + 16))).collect()
}

/// How an instruction uses a memory operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `lea`: the address itself is taken.
    Address,
    Read,
    Write,
    /// `xchg` with memory: how the Go compiler emits atomic stores.
    Swap,
    /// Read-modify-write (`lock xadd`, `add` to memory, `cmpxchg`, ...).
    Update,
}

/// One memory operand whose address is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRef {
    pub ip: u64,
    pub addr: u64,
    pub access: Access,
    /// Bytes accessed; 0 for [`Access::Address`] and operand sizes that are not 1, 2, 4 or 8.
    pub width: u8,
    /// The operand also has an index register (`addr` is the table's base).
    pub indexed: bool,
}

/// What decoding one function gave.
#[derive(Debug, Default)]
pub struct Scan {
    /// Memory operands at known addresses, in code order.
    pub refs: Vec<MemRef>,
    /// Immediates compared with a register (`cmp reg, imm`), in code order.
    pub bounds: Vec<u64>,
}

impl Scan {
    fn addresses_of<F: Fn(&MemRef) -> bool + 'static>(&self, keep: F) -> impl Iterator<Item = u64> + '_ {
        self.refs.iter().filter(move |r| keep(r)).map(|r| r.addr)
    }

    /// Whether the code loads `width` bytes at `addr` (plainly, by `cmp`, or atomically).
    fn reads(&self, addr: u64, width: u8) -> bool {
        self.refs.iter().any(|r| r.addr == addr && r.width == width && r.access == Access::Read && !r.indexed)
    }
}

/// Decodes `code` (a function starting at link-time address `ip`) and collects its memory
/// operands whose address is known: RIP-relative ones, and those based on a register that a
/// RIP-relative `lea` loaded (and nothing overwrote since, on every path the linear sweep can
/// see: the tracked registers are forgotten at branch targets, calls and instructions with
/// effects the tracker does not model).
pub fn scan(code: &[u8], ip: u64) -> Scan {
    let code = &code[..code.len().min(MAX_FUNCTION_BYTES)];
    let end = ip.saturating_add(code.len() as u64);
    // Pass 1: branch targets inside the function.
    let mut targets = HashSet::new();
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut count = 0;
    while decoder.can_decode() && count < MAX_INSTRUCTIONS {
        decoder.decode_out(&mut insn);
        count += 1;
        if insn.op_count() > 0
            && insn.op0_kind() == OpKind::NearBranch64
            && insn.mnemonic() != Mnemonic::Call
            && (ip..end).contains(&insn.near_branch64())
        {
            targets.insert(insn.near_branch64());
        }
    }
    // Pass 2: memory operands, with the registers lea'd from RIP-relative addresses.
    let mut out = Scan::default();
    let mut regs: [Option<u64>; 16] = [None; 16];
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut count = 0;
    while decoder.can_decode() && count < MAX_INSTRUCTIONS {
        decoder.decode_out(&mut insn);
        count += 1;
        if targets.contains(&insn.ip()) {
            regs = [None; 16];
        }
        if insn.is_invalid() {
            regs = [None; 16];
            continue;
        }
        let mnemonic = insn.mnemonic();
        for op in 0..insn.op_count() {
            if insn.op_kind(op) == OpKind::Memory
                && let Some((addr, indexed)) = memory_address(&insn, &regs)
            {
                out.refs.push(MemRef {
                    ip: insn.ip(),
                    addr,
                    access: access(&insn, op),
                    width: if mnemonic == Mnemonic::Lea { 0 } else { width(insn.memory_size()) },
                    indexed,
                });
            }
        }
        if mnemonic == Mnemonic::Cmp
            && insn.op_count() == 2
            && insn.op0_kind() == OpKind::Register
            && matches!(
                insn.op1_kind(),
                OpKind::Immediate8
                    | OpKind::Immediate32
                    | OpKind::Immediate8to32
                    | OpKind::Immediate8to64
                    | OpKind::Immediate32to64
            )
        {
            out.bounds.push(insn.immediate(1));
        }
        track(&insn, &mut regs);
    }
    out
}

/// The address of `insn`'s memory operand and whether it is indexed, when known.
fn memory_address(insn: &Instruction, regs: &[Option<u64>; 16]) -> Option<(u64, bool)> {
    // fs/gs-relative operands (thread-local storage) are not global addresses.
    if !matches!(insn.segment_prefix(), Register::None | Register::DS | Register::SS) {
        return None;
    }
    if insn.is_ip_rel_memory_operand() {
        return Some((insn.ip_rel_memory_address(), false));
    }
    let base = regs[gpr64(insn.memory_base())?]?;
    Some((base.wrapping_add(insn.memory_displacement64()), insn.memory_index() != Register::None))
}

fn access(insn: &Instruction, op: u32) -> Access {
    match insn.mnemonic() {
        Mnemonic::Lea => Access::Address,
        Mnemonic::Xchg => Access::Swap,
        Mnemonic::Xadd | Mnemonic::Cmpxchg | Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b => Access::Update,
        Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Bt => Access::Read,
        Mnemonic::Mov | Mnemonic::Movups | Mnemonic::Movaps | Mnemonic::Movdqu | Mnemonic::Movq
            if op == 0 =>
        {
            Access::Write
        }
        _ if op == 0 => Access::Update,
        _ => Access::Read,
    }
}

fn width(size: MemorySize) -> u8 {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => 1,
        MemorySize::UInt16 | MemorySize::Int16 => 2,
        MemorySize::UInt32 | MemorySize::Int32 => 4,
        MemorySize::UInt64 | MemorySize::Int64 => 8,
        _ => 0,
    }
}

/// Index 0..16 of a general-purpose register, for its 64-bit form only (an address base).
fn gpr64(reg: Register) -> Option<usize> {
    let r = reg as u32;
    let rax = Register::RAX as u32;
    (rax..rax + 16).contains(&r).then(|| (r - rax) as usize)
}

/// Index 0..16 of the full register any general-purpose register (of any width) is part of.
fn gpr_any(reg: Register) -> Option<usize> {
    let r = reg as u32;
    let idx = |first: Register| r.checked_sub(first as u32).filter(|i| *i < 16).map(|i| i as usize);
    match reg {
        Register::AH | Register::CH | Register::DH | Register::BH => Some(r as usize - Register::AH as usize),
        _ => idx(Register::RAX)
            .or_else(|| idx(Register::EAX))
            .or_else(|| idx(Register::AX))
            .or_else(|| (r >= Register::SPL as u32).then(|| idx(Register::SPL).map(|i| i + 4)).flatten())
            .or_else(|| (r <= Register::BL as u32).then(|| idx(Register::AL)).flatten()),
    }
}

/// Updates what is known of the registers after `insn`.
fn track(insn: &Instruction, regs: &mut [Option<u64>; 16]) {
    let mnemonic = insn.mnemonic();
    let reg_op =
        |i: u32| (insn.op_count() > i && insn.op_kind(i) == OpKind::Register).then(|| insn.op_register(i));
    match mnemonic {
        Mnemonic::Lea => {
            if let Some(dst) = reg_op(0).and_then(gpr_any) {
                regs[dst] = match (insn.is_ip_rel_memory_operand(), gpr64(insn.op0_register())) {
                    (true, Some(_)) => Some(insn.ip_rel_memory_address()),
                    _ => None,
                };
            }
        }
        Mnemonic::Mov if reg_op(1).is_some() => {
            if let Some(dst) = reg_op(0).and_then(gpr_any) {
                regs[dst] = match (gpr64(insn.op0_register()), reg_op(1).and_then(gpr64)) {
                    (Some(_), Some(src)) => regs[src],
                    _ => None,
                };
            }
        }
        // Only read their operands.
        Mnemonic::Cmp
        | Mnemonic::Test
        | Mnemonic::Bt
        | Mnemonic::Nop
        | Mnemonic::Push
        | Mnemonic::Prefetchnta
        | Mnemonic::Prefetcht0 => {}
        // Conditional branches: what is known holds on both paths (targets are reset anyway).
        _ if insn.op_count() == 1
            && insn.op0_kind() == OpKind::NearBranch64
            && mnemonic != Mnemonic::Call =>
        {
            if mnemonic == Mnemonic::Jmp {
                *regs = [None; 16];
            }
        }
        // Write their first operand, nothing else.
        Mnemonic::Mov
        | Mnemonic::Movzx
        | Mnemonic::Movsx
        | Mnemonic::Movsxd
        | Mnemonic::Add
        | Mnemonic::Sub
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Shl
        | Mnemonic::Shr
        | Mnemonic::Sar
        | Mnemonic::Inc
        | Mnemonic::Dec
        | Mnemonic::Neg
        | Mnemonic::Not
        | Mnemonic::Imul
            if insn.op_count() >= 1 =>
        {
            if let Some(dst) = reg_op(0).and_then(gpr_any) {
                regs[dst] = None;
            }
        }
        // Calls, returns, atomics with register results, string ops, anything else: forget all.
        _ => *regs = [None; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: u64 = 0x40_1000;

    fn rip(insn_end: u64, target: u64) -> [u8; 4] {
        (target.wrapping_sub(insn_end) as i32).to_le_bytes()
    }

    /// `waitReason.String` of Go 1.27, re-assembled at IP: cmp $0x2f,%al; jb; lea str,%rax;
    /// mov $0x13,%ebx; ret; movzbl %al,%ecx; shl $4,%rcx; lea table,%rdx;
    /// mov (%rdx,%rcx,1),%rax; mov 8(%rdx,%rcx,1),%rbx; ret.
    fn wait_reason_string(table: u64) -> Vec<u8> {
        let mut c = vec![0x3c, 0x2f, 0x72, 0x0d];
        c.extend([0x48, 0x8d, 0x05]);
        c.extend(rip(IP + 11, 0x75_6341));
        c.extend([0xbb, 0x13, 0, 0, 0, 0xc3]);
        c.extend([0x0f, 0xb6, 0xc8, 0x48, 0xc1, 0xe1, 0x04]);
        c.extend([0x48, 0x8d, 0x15]);
        c.extend(rip(IP + 0x1f, table));
        c.extend([0x48, 0x8b, 0x04, 0x0a, 0x48, 0x8b, 0x5c, 0x0a, 0x08, 0xc3]);
        c
    }

    #[test]
    fn bounds_check_and_indexed_table() {
        let table = 0xb0_9340;
        let s = scan(&wait_reason_string(table), IP);
        assert_eq!(s.bounds.first(), Some(&0x2f));
        let indexed: Vec<u64> = s.addresses_of(|r| r.indexed).collect();
        assert_eq!(indexed, vec![table, table + 8]);
        assert_eq!(s.refs.iter().filter(|r| r.access == Access::Address).count(), 2);
    }

    #[test]
    fn lea_then_xchg_is_an_atomic_store_to_the_symbol() {
        // lea allglen(%rip),%rdx; xchg %rcx,(%rdx); mov allgs+8(%rip),%rcx
        let allglen = 0xb3_1488u64;
        let mut c = vec![0x48, 0x8d, 0x15];
        c.extend(rip(IP + 7, allglen));
        c.extend([0x48, 0x87, 0x0a]);
        c.extend([0x48, 0x8b, 0x0d]);
        c.extend(rip(IP + 17, 0xb0_efa8));
        let s = scan(&c, IP);
        let swap = s.refs.iter().find(|r| r.access == Access::Swap).unwrap();
        assert_eq!((swap.addr, swap.width, swap.indexed), (allglen, 8, false));
        assert!(s.reads(0xb0_efa8, 8));
    }

    #[test]
    fn tracked_registers_are_forgotten_when_overwritten_or_at_branch_targets() {
        // lea X(%rip),%rdx; mov %rax,%rdx; xchg %rcx,(%rdx) -> unknown
        let mut c = vec![0x48, 0x8d, 0x15];
        c.extend(rip(IP + 7, 0x50_0000));
        c.extend([0x48, 0x89, 0xc2, 0x48, 0x87, 0x0a]);
        assert!(scan(&c, IP).refs.iter().all(|r| r.access == Access::Address));
        // lea X(%rip),%rdx; jmp L; L: xchg %rcx,(%rdx) -> unknown (L is a join point)
        let mut c = vec![0x48, 0x8d, 0x15];
        c.extend(rip(IP + 7, 0x50_0000));
        c.extend([0xeb, 0x00, 0x48, 0x87, 0x0a]);
        assert!(scan(&c, IP).refs.iter().all(|r| r.access == Access::Address));
        // lea X(%rip),%edx (32-bit) is not an address.
        let mut c = vec![0x8d, 0x15];
        c.extend(rip(IP + 6, 0x50_0000));
        c.extend([0x48, 0x87, 0x0a]);
        assert!(scan(&c, IP).refs.iter().all(|r| r.access == Access::Address));
        // A call clobbers every register.
        let mut c = vec![0x48, 0x8d, 0x15];
        c.extend(rip(IP + 7, 0x50_0000));
        c.extend([0xe8, 0, 0, 0, 0, 0x48, 0x87, 0x0a]);
        assert!(scan(&c, IP).refs.iter().all(|r| r.access == Access::Address));
    }

    #[test]
    fn widths_and_kinds_of_rip_relative_operands() {
        // mov %eax,X(%rip); movslq X(%rip),%rbx; lock xadd %rcx,Y(%rip); cmpb $0,Z(%rip)
        let mut c = vec![0x89, 0x05];
        c.extend(rip(IP + 6, 0x60_0000));
        c.extend([0x48, 0x63, 0x1d]);
        c.extend(rip(IP + 13, 0x60_0000));
        c.extend([0xf0, 0x48, 0x0f, 0xc1, 0x0d]);
        c.extend(rip(IP + 22, 0x60_1000));
        c.extend([0x80, 0x3d]);
        c.extend(rip(IP + 29, 0x60_2000));
        c.push(0);
        let s = scan(&c, IP);
        let got: Vec<(u64, Access, u8)> = s.refs.iter().map(|r| (r.addr, r.access, r.width)).collect();
        assert_eq!(
            got,
            vec![
                (0x60_0000, Access::Write, 4),
                (0x60_0000, Access::Read, 4),
                (0x60_1000, Access::Update, 8),
                (0x60_2000, Access::Read, 1),
            ]
        );
    }

    #[test]
    fn fs_relative_operands_are_not_globals() {
        // mov %fs:0xfffffffffffffff8,%r14
        let c = [0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff];
        assert!(scan(&c, IP).refs.is_empty());
    }

    #[test]
    fn malformed_code_never_panics_and_is_bounded() {
        let good = wait_reason_string(0xb0_9340);
        for len in 0..good.len() {
            let _ = scan(&good[..len], IP);
        }
        for i in 0..good.len() {
            for v in [0x00, 0x0f, 0x48, 0x66, 0xf0, 0xff] {
                let mut c = good.clone();
                c[i] = v;
                let _ = scan(&c, IP);
                let _ = scan(&c, u64::MAX - 4);
            }
        }
        // Prefix soup and a huge buffer of one-byte instructions stay within the bounds.
        let _ = scan(&[0x66; 100], IP);
        let big = vec![0x90; MAX_FUNCTION_BYTES * 4];
        assert!(scan(&big, IP).refs.is_empty());
    }

    /// A tiny x86-64 assembler for the few forms the rules look at, RIP-relative displacements
    /// computed from where each instruction ends. Registers by number (0 = rax ... 7 = rdi,
    /// 8.. = r8..).
    struct Asm {
        ip: u64,
        code: Vec<u8>,
    }

    impl Asm {
        fn new(ip: u64) -> Asm {
            Asm { ip, code: Vec::new() }
        }
        fn rex(w: bool, reg: u8, base: u8) -> u8 {
            0x40 | (u8::from(w) << 3) | ((reg >> 3) << 2) | (base >> 3)
        }
        /// `op reg, disp32(%rip)` with an optional REX.W (`w`).
        fn rip_op(mut self, prefix: &[u8], w: bool, op: &[u8], reg: u8, target: u64) -> Asm {
            self.code.extend(prefix);
            if w || reg >= 8 {
                self.code.push(Self::rex(w, reg, 0));
            }
            self.code.extend(op);
            self.code.push(0x05 | ((reg & 7) << 3));
            let end = self.ip + self.code.len() as u64 + 4;
            self.code.extend(rip(end, target));
            self
        }
        /// `op reg, (base)` (base is not rsp/rbp/r12/r13).
        fn base_op(mut self, prefix: &[u8], w: bool, op: &[u8], reg: u8, base: u8) -> Asm {
            self.code.extend(prefix);
            if w || reg >= 8 || base >= 8 {
                self.code.push(Self::rex(w, reg, base));
            }
            self.code.extend(op);
            self.code.push(((reg & 7) << 3) | (base & 7));
            self
        }
        fn lea(self, reg: u8, target: u64) -> Asm {
            self.rip_op(&[], true, &[0x8d], reg, target)
        }
        fn load64(self, reg: u8, target: u64) -> Asm {
            self.rip_op(&[], true, &[0x8b], reg, target)
        }
        fn store64(self, reg: u8, target: u64) -> Asm {
            self.rip_op(&[], true, &[0x89], reg, target)
        }
        fn load32(self, reg: u8, target: u64) -> Asm {
            self.rip_op(&[], false, &[0x8b], reg, target)
        }
        fn store32(self, reg: u8, target: u64) -> Asm {
            self.rip_op(&[], false, &[0x89], reg, target)
        }
        fn xchg64(self, reg: u8, base: u8) -> Asm {
            self.base_op(&[], true, &[0x87], reg, base)
        }
        fn xchg32(self, reg: u8, base: u8) -> Asm {
            self.base_op(&[], false, &[0x87], reg, base)
        }
        fn lock_xadd64(self, reg: u8, base: u8) -> Asm {
            self.base_op(&[0xf0], true, &[0x0f, 0xc1], reg, base)
        }
        fn call(mut self) -> Asm {
            self.code.extend([0xe8, 0, 0, 0, 0]);
            self
        }
        fn ret(mut self) -> Asm {
            self.code.push(0xc3);
            self
        }
    }

    /// Functions (each at its own address) and data, as a [`Program`].
    #[derive(Default)]
    struct Fake {
        functions: HashMap<&'static str, (u64, Vec<u8>)>,
        data: Vec<(u64, Vec<u8>)>,
    }

    impl Fake {
        fn with(mut self, name: &'static str, asm: Asm) -> Fake {
            self.functions.insert(name, (asm.ip, asm.code));
            self
        }
        fn data(mut self, addr: u64, bytes: Vec<u8>) -> Fake {
            self.data.push((addr, bytes));
            self
        }
    }

    impl Program for Fake {
        fn scan(&self, name: &'static str) -> Result<Scan, LocateError> {
            let (ip, code) = self.functions.get(name).ok_or(LocateError::MissingFunction(name))?;
            Ok(scan(code, *ip))
        }
        fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
            self.data.iter().find_map(|(a, d)| {
                let start = usize::try_from(addr.checked_sub(*a)?).ok()?;
                d.get(start..start.checked_add(len)?)
            })
        }
    }

    const F1: u64 = 0x41_0000;
    const F2: u64 = 0x42_0000;
    const RAX: u8 = 0;
    const RCX: u8 = 1;
    const RDX: u8 = 2;
    const RBX: u8 = 3;
    const RSI: u8 = 6;
    const R10: u8 = 10;
    const R11: u8 = 11;

    fn err_of(r: Result<(u64, u64), LocateError>) -> String {
        r.expect_err("the rule must fail").to_string()
    }

    #[test]
    fn sched_is_the_goid_counter_next_to_the_lock_gomaxprocs_takes() {
        let s = 0xb1_2c40;
        let newproc1 = |extra: Option<u64>| {
            let mut a = Asm::new(F1).lea(R11, s).lock_xadd64(R10, R11);
            if let Some(other) = extra {
                a = a.lea(RCX, other).lock_xadd64(RDX, RCX);
            }
            a.ret()
        };
        let gomaxprocs = |lock: u64| Asm::new(F2).lea(RAX, lock).call().ret();
        let p = Fake::default()
            .with("runtime.newproc1", newproc1(None))
            .with("runtime.GOMAXPROCS", gomaxprocs(s + 0x20));
        assert_eq!(sched(&p).unwrap(), (s, 0));
        // The lock is not near the counter.
        let p = Fake::default()
            .with("runtime.newproc1", newproc1(None))
            .with("runtime.GOMAXPROCS", gomaxprocs(s + 0x1000));
        assert!(err_of(sched(&p)).contains("runtime.sched was not found: no "));
        // Two counters near the lock: ambiguous, refused.
        let p = Fake::default()
            .with("runtime.newproc1", newproc1(Some(s + 8)))
            .with("runtime.GOMAXPROCS", gomaxprocs(s + 0x20));
        assert!(err_of(sched(&p)).contains("2 candidates"));
        // A function missing from the pclntab.
        let p = Fake::default().with("runtime.newproc1", newproc1(None));
        assert!(matches!(sched(&p), Err(LocateError::MissingFunction("runtime.GOMAXPROCS"))));
    }

    #[test]
    fn gomaxprocs_is_read_by_gomaxprocs_and_stored_atomically_by_procresize() {
        let g = 0xb3_1320;
        let p = Fake::default()
            .with("runtime.GOMAXPROCS", Asm::new(F1).load32(RCX, g + 8).load32(RCX, g).ret())
            .with("runtime.procresize", Asm::new(F2).lea(RSI, g).xchg32(RAX, RSI).ret());
        assert_eq!(gomaxprocs(&p).unwrap(), (g, 4));
        // A 64-bit store is not gomaxprocs.
        let p = Fake::default()
            .with("runtime.GOMAXPROCS", Asm::new(F1).load32(RCX, g).ret())
            .with("runtime.procresize", Asm::new(F2).lea(RSI, g).xchg64(RAX, RSI).ret());
        assert!(err_of(gomaxprocs(&p)).contains("runtime.gomaxprocs"));
    }

    #[test]
    fn slices_are_headers_written_whole_and_read_elsewhere() {
        let a = 0xb0_f080;
        let writer =
            |base: u64| Asm::new(F1).store64(RSI, base + 8).store64(RDX, base + 16).store64(RAX, base).ret();
        let reader = |len: bool| {
            let asm = Asm::new(F2).load64(RBX, a);
            if len { asm.load64(RCX, a + 8).ret() } else { asm.ret() }
        };
        let p = Fake::default().with("runtime.procresize", writer(a)).with("runtime.retake", reader(true));
        assert_eq!(allp(&p).unwrap(), (a, 24));
        let p = Fake::default().with("runtime.allgadd", writer(a)).with("runtime.forEachG", reader(true));
        assert_eq!(allgs(&p).unwrap(), (a, 24));
        // The reader does not read the len: not confirmed.
        let p = Fake::default().with("runtime.procresize", writer(a)).with("runtime.retake", reader(false));
        assert!(err_of(allp(&p)).contains("runtime.allp was not found"));
        // Only two words written: not a slice header.
        let p = Fake::default()
            .with("runtime.allgadd", Asm::new(F1).store64(RSI, a + 8).store64(RAX, a).ret())
            .with("runtime.forEachG", reader(true));
        assert!(err_of(allgs(&p)).contains("runtime.allgs was not found"));
    }

    #[test]
    fn allglen_is_the_last_atomic_store_of_allgadd() {
        let (allgptr, len) = (0xb0_e478, 0xb3_1488);
        let allgadd = Asm::new(F1).lea(RCX, allgptr).xchg64(RBX, RCX).lea(RDX, len).xchg64(RCX, RDX).ret();
        let p = Fake::default()
            .with("runtime.allgadd", allgadd)
            .with("runtime.forEachGRace", Asm::new(F2).load64(RCX, len).load64(RBX, allgptr).ret());
        assert_eq!(allglen(&p).unwrap(), (len, 8));
        let allgadd = Asm::new(F1).lea(RCX, allgptr).xchg64(RBX, RCX).lea(RDX, len).xchg64(RCX, RDX).ret();
        let p = Fake::default()
            .with("runtime.allgadd", allgadd)
            .with("runtime.forEachGRace", Asm::new(F2).load64(RBX, allgptr).ret());
        assert!(err_of(allglen(&p)).contains("forEachGRace"));
    }

    #[test]
    fn allm_is_loaded_and_swapped_by_mcommoninit() {
        let m = 0xb0_e4a8;
        let init = Asm::new(F1).load64(RCX, m).lea(RCX, m).xchg64(RBX, RCX).load64(RAX, m + 0x100).ret();
        let p = Fake::default()
            .with("runtime.mcommoninit", init)
            .with("runtime.schedtrace", Asm::new(F2).load64(RCX, m).ret());
        assert_eq!(allm(&p).unwrap(), (m, 8));
        let init = Asm::new(F1).load64(RCX, m).ret();
        let p = Fake::default()
            .with("runtime.mcommoninit", init)
            .with("runtime.schedtrace", Asm::new(F2).load64(RCX, m).ret());
        assert!(err_of(allm(&p)).contains("runtime.allm"));
    }

    fn string_headers(lens: &[u64]) -> Vec<u8> {
        lens.iter().flat_map(|&l| [0x75_0000u64.to_le_bytes(), l.to_le_bytes()]).flatten().collect()
    }

    #[test]
    fn wait_reason_strings_come_with_their_length() {
        let table = 0xb0_9340;
        let mut lens = vec![0u64];
        lens.extend((1..0x2f).map(|i| 5 + i % 20));
        let p = Fake::default()
            .with("runtime.waitReason.String", Asm { ip: IP, code: wait_reason_string(table) })
            .data(table, string_headers(&lens));
        assert_eq!(wait_reason_strings(&p).unwrap(), (table, 0x2f * 16));
        // Entries that are not short strings (here: a length of 4096) are refused.
        lens[7] = 4096;
        let p = Fake::default()
            .with("runtime.waitReason.String", Asm { ip: IP, code: wait_reason_string(table) })
            .data(table, string_headers(&lens));
        assert!(err_of(wait_reason_strings(&p)).contains("are not wait reason strings"));
        // The table not in the file (e.g. in .bss) is refused.
        let p = Fake::default()
            .with("runtime.waitReason.String", Asm { ip: IP, code: wait_reason_string(table) });
        assert!(err_of(wait_reason_strings(&p)).contains("not in the file"));
        // A bound beyond a uint8.
        let mut code = wait_reason_string(table);
        code[1] = 0x00;
        let p = Fake::default().with("runtime.waitReason.String", Asm { ip: IP, code });
        assert!(err_of(wait_reason_strings(&p)).contains("not a uint8 bound"));
    }

    #[test]
    fn epfd_is_netpollinits_first_store_and_starts_as_minus_one() {
        let e = 0xab_f6b0;
        let init = || Asm::new(F1).store32(RAX, e).load32(RBX, e).store32(RAX, e + 0x100).ret();
        let p = Fake::default().with("runtime.netpollinit", init()).data(e, vec![0xff; 4]);
        assert_eq!(epfd(&p).unwrap(), (e, 4));
        let p = Fake::default().with("runtime.netpollinit", init()).data(e, vec![0; 4]);
        assert!(err_of(epfd(&p)).contains("does not start as -1"));
        let p = Fake::default()
            .with("runtime.netpollinit", Asm::new(F1).store32(RAX, e).ret())
            .data(e, vec![0xff; 4]);
        assert!(err_of(epfd(&p)).contains("read back"));
    }

    #[test]
    fn non_go_and_garbage_files_give_errors() {
        assert!(matches!(globals(b"not an elf"), Err(LocateError::Pclntab(_))));
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert!(matches!(globals(&me), Err(LocateError::NoPclntab)));
    }
}
