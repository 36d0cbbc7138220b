//! What a binary says about the tokio it carries: presence, release, and the thread-pointer
//! offset of `CONTEXT.current_task_id`.

use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol};

/// Largest executable read whole (tokio services are rarely above a few hundred MB).
const MAX_BINARY_BYTES: u64 = 1 << 30;
/// Most bytes of `set_current_task_id` decoded (it is a few dozen instructions).
const MAX_FN_BYTES: usize = 512;
/// Most bytes of a worker-loop caller decoded.
const MAX_CALLER_BYTES: usize = 16 << 10;
/// Most distinct `tokio-1.x.y` strings kept (one is expected: cargo links one tokio 1.x).
const MAX_VERSIONS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TokioError {
    #[error("not a tokio program: no tokio symbols and no tokio source paths in {0}")]
    NotTokio(String),
    #[error("reading {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("the target's thread-local task id could not be located: {0}")]
    TaskIdSlot(String),
}

/// Where `CONTEXT.current_task_id` lives: `tp + offset` (x86-64 TLS variant II, local-exec:
/// the executable's own TLS block ends at the thread pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSlot {
    pub offset: i64,
}

/// What the binary says about its tokio.
#[derive(Debug, Clone)]
pub struct TokioBinary {
    /// e.g. "1.54.1", from the registry paths of its source files; None when the binary names
    /// none (vendored or git sources) or several.
    pub version: Option<String>,
    /// The binary has a symbol table naming tokio's functions (not stripped).
    pub symbols: bool,
    /// Where the task id is, or why it cannot be read.
    pub task_id_slot: Result<TlsSlot, String>,
    /// Where `CONTEXT.scheduler` lives (non-null while a thread runs a worker loop), or why not
    /// known.
    pub scheduler_slot: Result<TlsSlot, String>,
    /// tokio's wakers, to tell whose waker an I/O registration holds.
    pub wakers: WakerSymbols,
    /// The lowest PT_LOAD virtual address, page-aligned: the load bias of a running copy is
    /// where its first mapping of the file starts minus this.
    pub first_load_vaddr: u64,
}

/// The addresses (the file's own, before the load bias) that identify tokio's wakers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WakerSymbols {
    /// `tokio::runtime::task::waker::WAKER_VTABLE`: every task's waker points at it, with the
    /// task's header as its data.
    pub task_vtable: Option<u64>,
    /// The functions of the wakers `block_on` polls its future with (the parked thread's
    /// `runtime::park` waker, and the current-thread scheduler's handle waker): a waker
    /// vtable holding one of them belongs to the runtime's main future, not to a task.
    pub block_on_fns: Vec<u64>,
}

impl TokioBinary {
    /// Inspects the executable of process `pid` (/proc/PID/exe: the file the process runs,
    /// also inside another mount namespace).
    pub fn of_process(pid: u32) -> Result<TokioBinary, TokioError> {
        let path = format!("/proc/{pid}/exe");
        let read_err = |cause: String| TokioError::Read { path: path.clone(), cause };
        let len = std::fs::metadata(&path).map_err(|e| read_err(e.to_string()))?.len();
        if len > MAX_BINARY_BYTES {
            return Err(read_err(format!("{len} bytes, more than the {MAX_BINARY_BYTES} read")));
        }
        let data = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
        TokioBinary::parse(&data, &path)
    }

    /// Inspects an ELF image.
    pub fn parse(data: &[u8], what: &str) -> Result<TokioBinary, TokioError> {
        let file = object::File::parse(data)
            .map_err(|e| TokioError::Read { path: what.to_owned(), cause: e.to_string() })?;
        let mut symbols = false;
        let mut set_task_id = None;
        let mut context_var = None;
        let mut scoped_set = None;
        let mut worker_enter: Vec<(u64, u64)> = Vec::new();
        let mut wakers = WakerSymbols::default();
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            let Ok(name) = sym.name() else { continue };
            // tokio::util::wake's functions are outside tokio::runtime, so looked for first.
            if is_block_on_waker_fn(name) && wakers.block_on_fns.len() < MAX_BLOCK_ON_FNS {
                wakers.block_on_fns.push(sym.address());
            }
            // Both manglings spell path segments as <len><ident>: legacy `_ZN5tokio7runtime`,
            // v0 `...5tokio7runtime...`.
            if !name.contains("5tokio7runtime") {
                continue;
            }
            if name.contains("4task5waker12WAKER_VTABLE") {
                wakers.task_vtable = Some(sym.address());
            }
            symbols = true;
            if name.contains("7context19set_current_task_id") && sym.size() > 0 {
                set_task_id = Some((sym.address(), sym.size()));
            }
            // `Scoped<scheduler::Context>::set` as the multi-thread worker loop calls it, and
            // the functions that call it (`enter_runtime` monomorphised for the worker loop).
            if name.contains("6Scoped")
                && name.contains("9scheduler7Context")
                && name.contains("3set")
                && name.contains("12multi_thread6worker3run")
            {
                scoped_set = Some(sym.address());
            } else if name.contains("13enter_runtime")
                && name.contains("12multi_thread6worker3run")
                && sym.size() > 0
            {
                worker_enter.push((sym.address(), sym.size()));
            }
            if name.contains("7context7CONTEXT") && name.contains("RUST_STD_INTERNAL_VAL") {
                context_var = Some((sym.address(), sym.size()));
            }
        }
        let version = version_in(data);
        if !symbols && version.is_none() && !mentions_tokio_sources(data) {
            return Err(TokioError::NotTokio(what.to_owned()));
        }
        let stripped = !symbols;
        let task_id_slot = if stripped {
            Err("the binary is stripped (no symbol table), so tokio's functions cannot be found".to_owned())
        } else {
            locate_slot(&file, set_task_id, context_var)
        };
        let scheduler_slot = match scoped_set {
            None => Err("no Scoped<scheduler::Context>::set for the worker loop".to_owned()),
            Some(callee) => worker_enter
                .iter()
                .filter_map(|&(a, n)| Some((a, function_bytes(&file, a, n, MAX_CALLER_BYTES)?)))
                .map(|(a, code)| locate_call_arg_slot(code, a, callee))
                .find(Result::is_ok)
                .unwrap_or_else(|| Err("the worker loop's scheduler cell was not found".to_owned())),
        };
        let first_load_vaddr =
            file.segments().map(|seg| object::ObjectSegment::address(&seg)).min().map_or(0, |a| a & !0xfff);
        Ok(TokioBinary { version, symbols, task_id_slot, scheduler_slot, wakers, first_load_vaddr })
    }
}

/// Most `block_on` waker functions kept (a handful: four per waker kind).
const MAX_BLOCK_ON_FNS: usize = 32;

/// The functions of the wakers `block_on` polls its future with, in either mangling: the parked
/// thread's (tokio >= 1.5x: `tokio::runtime::park::{clone, wake, wake_by_ref, drop_waker}`;
/// before: `tokio::util::wake::*_arc_raw::<runtime::park::Inner>`) and the current-thread
/// scheduler's (`tokio::util::wake::*_arc_raw::<current_thread::Handle>`).
fn is_block_on_waker_fn(name: &str) -> bool {
    const PARK_FNS: [&str; 4] = [
        "7runtime4park5clone",
        "7runtime4park4wake",
        "7runtime4park11wake_by_ref",
        "7runtime4park10drop_waker",
    ];
    let park = name.contains("7runtime4park") && PARK_FNS.iter().any(|f| name.contains(f));
    let arc_raw = name.contains("5tokio4util4wake") && name.contains("arc_raw");
    park || (arc_raw && (name.contains("14current_thread6Handle") || name.contains("4park5Inner")))
}

fn locate_slot(
    file: &object::File,
    set_task_id: Option<(u64, u64)>,
    context_var: Option<(u64, u64)>,
) -> Result<TlsSlot, String> {
    let (addr, size) = set_task_id.ok_or("no tokio::runtime::context::set_current_task_id symbol")?;
    let code = function_bytes(file, addr, size, MAX_FN_BYTES)
        .ok_or("set_current_task_id's code is not in the file")?;
    let slot = locate_task_id_slot(code, addr)?;
    // Cross-check with the thread-local's own symbol where it is kept: the slot must lie inside
    // the CONTEXT variable, placed as glibc places the executable's TLS block.
    if let Some((value, size)) = context_var
        && let Some(block) = tls_block_size(file)
    {
        let start = value as i64 - block as i64;
        if !(start..start + size as i64).contains(&slot.offset) {
            return Err(format!(
                "the decoded slot tp{:+#x} is outside CONTEXT (tp{start:+#x}, {size} bytes)",
                slot.offset
            ));
        }
    }
    Ok(slot)
}

/// The size of the executable's TLS block as glibc lays it out below the thread pointer:
/// the PT_TLS memory size plus the misalignment of its start, rounded up to its alignment.
fn tls_block_size(file: &object::File) -> Option<u64> {
    let (mut start, mut end, mut align) = (u64::MAX, 0u64, 1u64);
    for s in file.sections() {
        if s.name().is_ok_and(|n| n == ".tdata" || n == ".tbss") {
            start = start.min(s.address());
            end = end.max(s.address() + s.size());
            align = align.max(s.align());
        }
    }
    if start == u64::MAX || !align.is_power_of_two() {
        return None;
    }
    let first_byte = start.wrapping_neg() & (align - 1);
    Some((end - start + first_byte).div_ceil(align) * align)
}

fn function_bytes<'d>(file: &object::File<'d>, addr: u64, size: u64, max: usize) -> Option<&'d [u8]> {
    let section = file.sections().find(|s| (s.address()..s.address() + s.size()).contains(&addr))?;
    let data = section.data().ok()?;
    let start = usize::try_from(addr - section.address()).ok()?;
    let len = usize::try_from(size).ok()?.min(max);
    data.get(start..start.checked_add(len)?)
}

/// The thread-pointer offset of the word `set_current_task_id(id)` swaps: the one 8-byte
/// thread-local it both loads (the old id, returned) and stores its argument into.
///
/// A small tracker follows registers holding `tp + k`: `mov r, fs:[0]` (the TCB's self
/// pointer), `lea r, [r' + d]`, `mov r, r'`, `add/sub r, imm`; `fs:[d]` operands are `tp + d`.
/// Registers holding the first argument (rdi and its copies) are tracked too. Any other write
/// to a tracked register forgets it.
pub fn locate_task_id_slot(code: &[u8], ip: u64) -> Result<TlsSlot, String> {
    let mut t = Tracker::new();
    let mut loads: Vec<i64> = Vec::new();
    let mut stores: Vec<i64> = Vec::new();
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        let (load, store) = t.step(&insn);
        loads.extend(load);
        stores.extend(store);
    }
    let mut swapped: Vec<i64> = stores.iter().copied().filter(|a| loads.contains(a)).collect();
    swapped.sort_unstable();
    swapped.dedup();
    match swapped.as_slice() {
        [offset] => Ok(TlsSlot { offset: *offset }),
        [] => Err("set_current_task_id loads and stores its argument into no thread-local word".to_owned()),
        many => Err(format!("set_current_task_id swaps {} thread-local words, not one", many.len())),
    }
}

/// The thread-pointer offset passed as the first argument (`&self`, the thread-local cell) to
/// every call of `callee` in `code`: where `Scoped<scheduler::Context>` lives, which the
/// worker loop sets for as long as it runs. One value, or an error.
pub fn locate_call_arg_slot(code: &[u8], ip: u64, callee: u64) -> Result<TlsSlot, String> {
    let mut t = Tracker::new();
    let mut found: Vec<i64> = Vec::new();
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        if insn.mnemonic() == Mnemonic::Call
            && insn.op0_kind() == OpKind::NearBranch64
            && insn.near_branch64() == callee
        {
            match t.tp.get(&Register::RDI) {
                Some(k) => found.push(*k),
                None => return Err("a call to Scoped::set whose cell is not thread-local".to_owned()),
            }
        }
        t.step(&insn);
    }
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [offset] => Ok(TlsSlot { offset: *offset }),
        [] => Err("the worker loop never calls Scoped::set".to_owned()),
        many => Err(format!("the worker loop sets {} scheduler cells, not one", many.len())),
    }
}

/// Registers holding `tp + k`, and those holding the first argument.
struct Tracker {
    tp: HashMap<Register, i64>,
    arg: Vec<Register>,
}

impl Tracker {
    fn new() -> Tracker {
        Tracker { tp: HashMap::new(), arg: vec![Register::RDI] }
    }

    fn forget(&mut self, r: Register) {
        self.tp.remove(&r.full());
        self.arg.retain(|x| *x != r.full());
    }

    fn tp_addr(&self, insn: &iced_x86::Instruction) -> Option<i64> {
        if insn.memory_index() != Register::None {
            return None;
        }
        let disp = insn.memory_displacement64() as i64;
        if insn.segment_prefix() == Register::FS {
            return (insn.memory_base() == Register::None).then_some(disp);
        }
        self.tp.get(&insn.memory_base()).map(|k| k.wrapping_add(disp))
    }

    /// Follows one instruction; returns the thread-local qword it loads, and the one it stores
    /// the first argument into.
    fn step(&mut self, insn: &iced_x86::Instruction) -> (Option<i64>, Option<i64>) {
        let op0_reg =
            (insn.op_count() > 0 && insn.op0_kind() == OpKind::Register).then(|| insn.op0_register());
        match insn.mnemonic() {
            Mnemonic::Mov if insn.op_count() == 2 && insn.op1_kind() == OpKind::Memory => {
                let r = insn.op0_register();
                if insn.segment_prefix() == Register::FS
                    && insn.memory_base() == Register::None
                    && insn.memory_displacement64() == 0
                    && r.gpr64()
                {
                    self.forget(r);
                    self.tp.insert(r, 0);
                    return (None, None);
                }
                let a = self.tp_addr(insn).filter(|_| r.gpr64());
                self.forget(r);
                (a, None)
            }
            Mnemonic::Mov if insn.op_count() == 2 && insn.op0_kind() == OpKind::Memory => {
                let stored = (insn.op1_kind() == OpKind::Register
                    && insn.op1_register().gpr64()
                    && self.arg.contains(&insn.op1_register()))
                .then(|| self.tp_addr(insn))
                .flatten();
                (None, stored)
            }
            Mnemonic::Mov if insn.op_count() == 2 && insn.op1_kind() == OpKind::Register => {
                let (dst, src) = (insn.op0_register(), insn.op1_register());
                let k = self.tp.get(&src).copied();
                let is_arg = self.arg.contains(&src);
                self.forget(dst);
                if dst.gpr64() {
                    if let Some(k) = k {
                        self.tp.insert(dst, k);
                    }
                    if is_arg {
                        self.arg.push(dst);
                    }
                }
                (None, None)
            }
            Mnemonic::Lea => {
                let r = insn.op0_register();
                let a = self.tp_addr(insn);
                self.forget(r);
                if let Some(a) = a.filter(|_| r.gpr64()) {
                    self.tp.insert(r, a);
                }
                (None, None)
            }
            Mnemonic::Add | Mnemonic::Sub
                if op0_reg.is_some_and(|r| self.tp.contains_key(&r))
                    && matches!(insn.op1_kind(), OpKind::Immediate8to64 | OpKind::Immediate32to64) =>
            {
                let r = insn.op0_register();
                let imm = insn.immediate(1) as i64;
                let k = self.tp[&r];
                let k =
                    if insn.mnemonic() == Mnemonic::Add { k.wrapping_add(imm) } else { k.wrapping_sub(imm) };
                self.tp.insert(r, k);
                (None, None)
            }
            // Calls clobber the caller-saved registers; callee-saved ones keep what they held.
            Mnemonic::Call => {
                let saved = [
                    Register::RBX,
                    Register::RBP,
                    Register::R12,
                    Register::R13,
                    Register::R14,
                    Register::R15,
                ];
                self.tp.retain(|r, _| saved.contains(r));
                self.arg.retain(|r| saved.contains(r));
                (None, None)
            }
            _ => {
                if let Some(r) = op0_reg {
                    self.forget(r);
                }
                (None, None)
            }
        }
    }
}

/// The tokio release named by the registry paths of its source files (`tokio-1.NN.M/src/`,
/// which the panic locations in .rodata carry), when exactly one is named.
pub fn version_in(data: &[u8]) -> Option<String> {
    let needle = b"tokio-1.";
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(&data[i..], needle) {
        let at = i + pos;
        i = at + needle.len();
        // A path segment: preceded by '/' or '\\' (or the start of a string).
        if at > 0 && !matches!(data[at - 1], b'/' | b'\\' | 0) {
            continue;
        }
        let rest = &data[at + "tokio-".len()..];
        let len = rest.iter().take(24).take_while(|b| b.is_ascii_digit() || **b == b'.').count();
        let ver = &rest[..len];
        let after = &rest[len..];
        if !(after.starts_with(b"/src/") || after.starts_with(b"\\src\\")) {
            continue;
        }
        let parts: Vec<&[u8]> = ver.split(|b| *b == b'.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            continue;
        }
        let v = String::from_utf8_lossy(ver).into_owned();
        if !found.contains(&v) {
            found.push(v);
            if found.len() > MAX_VERSIONS {
                break;
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

/// Source paths of tokio's runtime without a release in them (vendored or git sources).
fn mentions_tokio_sources(data: &[u8]) -> bool {
    find(data, b"tokio/src/runtime/").is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let pos = hay[i..hay.len() - needle.len() + 1].iter().position(|b| *b == first)?;
        if &hay[i + pos..i + pos + needle.len()] == needle {
            return Some(i + pos);
        }
        i += pos + 1;
    }
    None
}

/// Register widths without iced-x86's `instr_info` feature: the 64-bit register a general
/// purpose register of any width is part of, and whether it is that 64-bit register.
trait Gpr {
    fn gpr64(self) -> bool;
    fn full(self) -> Register;
}

impl Gpr for Register {
    fn gpr64(self) -> bool {
        let (r, rax) = (self as u32, Register::RAX as u32);
        (rax..rax + 16).contains(&r)
    }

    fn full(self) -> Register {
        let r = self as u32;
        let idx = |first: Register| r.checked_sub(first as u32).filter(|i| *i < 16);
        let i = match self {
            Register::AH | Register::CH | Register::DH | Register::BH => Some(r - Register::AH as u32),
            _ => idx(Register::RAX)
                .or_else(|| idx(Register::EAX))
                .or_else(|| idx(Register::AX))
                .or_else(|| (r >= Register::SPL as u32).then(|| idx(Register::SPL).map(|i| i + 4)).flatten())
                .or_else(|| (r <= Register::BL as u32).then(|| idx(Register::AL)).flatten()),
        };
        // 64-bit registers are laid out RAX..R15 in order.
        i.and_then(|i| GPR64.get(i as usize).copied()).unwrap_or(self)
    }
}

const GPR64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `tokio::runtime::context::set_current_task_id` of examples/rust built with tokio 1.54.1
    /// and rustc 1.98.0 (objdump): `mov %fs:0,%rax; lea -0xf0(%rax),%rax; ...;
    /// mov 0x30(%rax),%rcx; mov %rbx,0x30(%rax)` with rbx = rdi.
    const SET_CURRENT_TASK_ID: &[u8] = &[
        0x41, 0x56, 0x53, 0x50, 0x48, 0x89, 0xfb, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00, 0x48,
        0x8d, 0x80, 0x10, 0xff, 0xff, 0xff, 0x0f, 0xb6, 0x48, 0x48, 0x85, 0xc9, 0x75, 0x13, 0x48, 0x8b, 0x48,
        0x30, 0x48, 0x89, 0x58, 0x30, 0x48, 0x89, 0xc8, 0x48, 0x83, 0xc4, 0x08, 0x5b, 0x41, 0x5e, 0xc3, 0x83,
        0xf9, 0x01, 0x75, 0x1d, 0x48, 0x8d, 0x35, 0x12, 0x9f, 0xff, 0xff, 0x48, 0x89, 0xc7, 0x49, 0x89, 0xc6,
        0xff, 0x15, 0xfe, 0x29, 0x05, 0x00, 0x4c, 0x89, 0xf0, 0x41, 0xc6, 0x46, 0x48, 0x00, 0xeb, 0xcb, 0x31,
        0xc9, 0xeb, 0xcf,
    ];

    #[test]
    fn the_swapped_thread_local_is_found() {
        assert_eq!(locate_task_id_slot(SET_CURRENT_TASK_ID, 0x5f370), Ok(TlsSlot { offset: -0xf0 + 0x30 }));
    }

    #[test]
    fn a_store_of_something_else_is_not_the_slot() {
        // The same code with the argument copy (`mov %rdi,%rbx`) replaced by `xor %ebx,%ebx`
        // plus a nop: nothing stores the argument.
        let mut code = SET_CURRENT_TASK_ID.to_vec();
        code[4..7].copy_from_slice(&[0x31, 0xdb, 0x90]);
        assert!(locate_task_id_slot(&code, 0x5f370).is_err());
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        for len in 0..SET_CURRENT_TASK_ID.len() {
            let _ = locate_task_id_slot(&SET_CURRENT_TASK_ID[..len], 0x1000);
        }
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let _ = locate_task_id_slot(&noise, 0);
        let _ = locate_call_arg_slot(&noise, 0, 0x10);
    }

    #[test]
    fn the_release_comes_from_registry_paths_only_when_one() {
        let one =
            b"\0/home/u/.cargo/registry/src/index.crates.io-abc/tokio-1.47.1/src/runtime/task/core.rs\0";
        assert_eq!(version_in(one).as_deref(), Some("1.47.1"));
        let two = [&one[..], b"/x/tokio-1.54.1/src/lib.rs"].concat();
        assert_eq!(version_in(&two), None);
        assert_eq!(version_in(b"mytokio-1.2.3/src/x"), None);
        assert_eq!(version_in(b"/tokio-1.2/src/x"), None);
    }
}
