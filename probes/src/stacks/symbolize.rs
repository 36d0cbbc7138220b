//! Names stack addresses: user addresses of a live process (ASLR, dynsym/symtab/DWARF,
//! demangled Rust/C++) and kernel addresses (kallsyms) through blazesym, and addresses in Go
//! executables through the binary's own pclntab (see [`crate::go::pclntab`]): Go's DWARF is
//! compressed, and inflating it for file:line was most of a goroutine snapshot's CPU.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Sym, Symbolized};
use blazesym::{MaybeDefault, Pid};

use super::maps::{self, Mapping};
use crate::go::GoExecutable;

/// One named stack frame. `addr` is the address as unwound (a return address for all but the
/// innermost frame); `function` and `offset` describe that address within its symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    pub function: Option<String>,
    /// Byte offset of `addr` from the start of `function` (0 when unknown).
    pub offset: u64,
    /// Path of the backing object as the target maps it (e.g. `/usr/lib/.../libc.so.6`), or a
    /// pseudo name such as `[vdso]`; `None` for kernel frames and anonymous memory.
    pub module: Option<String>,
    /// `file:line` of the instruction, from DWARF, when available.
    pub file_line: Option<String>,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(name) => write!(f, "{name}+{:#x}", self.offset)?,
            None => write!(f, "{:#x}", self.addr)?,
        }
        if let Some(module) = &self.module {
            // The directory is noise in a stack listing; the file name identifies the object.
            let short = Path::new(module).file_name().map_or(module.as_str().into(), |n| n.to_string_lossy());
            write!(f, " ({short})")?;
        }
        if let Some(loc) = &self.file_line {
            write!(f, " at {loc}")?;
        }
        Ok(())
    }
}

/// Reusable symbolizer: blazesym caches parsed objects and kallsyms between calls, and the
/// pclntabs of Go executables are kept per file, so one instance should live as long as the
/// agent.
pub struct Symbolizer {
    inner: blazesym::symbolize::Symbolizer,
    /// Each executable file mapping seen, by identity: its pclntab, or `None` when it has none
    /// (not Go, unreadable, malformed), so each file is opened at most once.
    go: HashMap<ObjectKey, Option<Arc<GoExecutable>>>,
}

/// Identifies a mapped file: device and inode say which file it is even when paths differ or the
/// file was replaced under the same path; the path (or the device and inode alone) would not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    dev: String,
    inode: u64,
    path: String,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        let inner = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .build();
        Self { inner, go: HashMap::new() }
    }

    /// Names addresses of process `pid`, in order, one frame per address. The first address is
    /// taken as an instruction pointer, the rest as return addresses.
    pub fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        self.user_frames(pid, addrs, first_is_ip)
    }

    /// Names kernel addresses (from kallsyms), in order, one frame per address. The first
    /// address is taken as an instruction pointer, the rest as return addresses.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let symbolized = self.symbolize(&kernel_source(), addrs, first_is_ip);
        build_frames(addrs, symbolized, first_is_ip, |_| None)
    }

    /// Like [`Symbolizer::user`] for many stacks at once (a profile's distinct addresses):
    /// `is_return[i]` says whether `addrs[i]` is a return address (looked up at addr-1) or an
    /// instruction pointer. One pass over the target's maps for the whole batch.
    pub fn user_batch(&mut self, pid: u32, addrs: &[u64], is_return: &[bool]) -> Vec<Frame> {
        let ret = |i: usize| is_return.get(i).copied().unwrap_or(true);
        self.user_frames(pid, addrs, ret)
    }

    /// Names user addresses: those in a Go executable from its pclntab, the rest (and any the
    /// pclntab cannot name) through blazesym.
    fn user_frames(&mut self, pid: u32, addrs: &[u64], is_return: impl Fn(usize) -> bool) -> Vec<Frame> {
        // Module names for frames blazesym cannot name come from the map; a process that is
        // gone just yields frames without modules.
        let maps = maps::read_maps(pid).unwrap_or_default();
        let mut frames: Vec<Option<Frame>> = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| self.go_frame_in_process(pid, &maps, addr, is_return(i)))
            .collect();
        let rest: Vec<usize> = (0..addrs.len()).filter(|&i| frames[i].is_none()).collect();
        if !rest.is_empty() {
            let rest_addrs: Vec<u64> = rest.iter().map(|&i| addrs[i]).collect();
            let rest_ret = |j: usize| is_return(rest[j]);
            let symbolized = match NonZeroU32::new(pid) {
                Some(nz) => {
                    let src = Source::Process(Process::new(Pid::Pid(nz)));
                    self.symbolize(&src, &rest_addrs, rest_ret)
                }
                None => Vec::new(),
            };
            let named = build_frames(&rest_addrs, symbolized, rest_ret, |addr| module_of(&maps, addr));
            for (i, frame) in rest.into_iter().zip(named) {
                frames[i] = Some(frame);
            }
        }
        frames.into_iter().flatten().collect()
    }

    /// The frame of `addr` of process `pid` from the pclntab of the Go executable it lies in, if
    /// it does and the pclntab names it.
    fn go_frame_in_process(
        &mut self,
        pid: u32,
        maps: &[Mapping],
        addr: u64,
        is_return: bool,
    ) -> Option<Frame> {
        let m = &maps[maps::find(maps, addr)?];
        if !m.executable || !m.is_file() {
            return None;
        }
        let key = ObjectKey { dev: m.dev.clone(), inode: m.inode, path: m.path.clone() };
        // The file as the target maps it (also when deleted or in another mount namespace).
        let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", m.range.start, m.range.end);
        let rooted = format!("/proc/{pid}/root{}", m.path);
        let exe = self.go_executable(key, &[Path::new(&mapped), Path::new(&rooted), Path::new(&m.path)])?;
        // The mapping's file offset, through the program headers, gives the link-time address;
        // this is the same for PIE (loaded at a slide) and non-PIE builds.
        let vaddr = exe.vaddr_of_offset((addr - m.range.start).checked_add(m.offset)?)?;
        go_frame(&exe, addr, vaddr, is_return, &m.path)
    }

    /// The cached pclntab of the file `key` names, opened from the first of `paths` that opens.
    fn go_executable(&mut self, key: ObjectKey, paths: &[&Path]) -> Option<Arc<GoExecutable>> {
        if let Some(known) = self.go.get(&key) {
            return known.clone();
        }
        let mut found = None;
        for path in paths {
            match GoExecutable::open(path) {
                Ok(exe) => {
                    found = exe.map(Arc::new);
                    break;
                }
                // Not opened: try the next way to reach the file.
                Err(crate::go::PclntabError::Io { .. }) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, path = %key.path, "not using the pclntab");
                    break;
                }
            }
        }
        self.go.insert(key, found.clone());
        found
    }

    /// Like [`Symbolizer::kernel`] for many stacks at once; see [`Symbolizer::user_batch`].
    pub fn kernel_batch(&mut self, addrs: &[u64], is_return: &[bool]) -> Vec<Frame> {
        let ret = |i: usize| is_return.get(i).copied().unwrap_or(true);
        let symbolized = self.symbolize(&kernel_source(), addrs, ret);
        build_frames(addrs, symbolized, ret, |_| None)
    }

    /// Names addresses of an object file that is no longer mapped anywhere we can see (its
    /// process exited), by their offsets into the file. `is_return` as in
    /// [`Symbolizer::user_batch`]; `module` is recorded in each frame.
    pub fn file_offsets(&mut self, path: &Path, offsets: &[u64], is_return: &[bool]) -> Vec<Frame> {
        let ret = |i: usize| is_return.get(i).copied().unwrap_or(true);
        let module = path.to_string_lossy().into_owned();
        let exe = std::fs::metadata(path).ok().and_then(|meta| {
            use std::os::unix::fs::MetadataExt;
            let key =
                ObjectKey { dev: format!("dev{}", meta.dev()), inode: meta.ino(), path: module.clone() };
            self.go_executable(key, &[path])
        });
        let mut frames: Vec<Option<Frame>> = offsets
            .iter()
            .enumerate()
            .map(|(i, &off)| {
                let exe = exe.as_ref()?;
                go_frame(exe, off, exe.vaddr_of_offset(off)?, ret(i), &module)
            })
            .collect();
        let rest: Vec<usize> = (0..offsets.len()).filter(|&i| frames[i].is_none()).collect();
        if !rest.is_empty() {
            let rest_offsets: Vec<u64> = rest.iter().map(|&i| offsets[i]).collect();
            let rest_ret = |j: usize| ret(rest[j]);
            let lookups: Vec<u64> =
                rest_offsets.iter().enumerate().map(|(j, &a)| lookup(rest_ret(j), a)).collect();
            let src = Source::Elf(blazesym::symbolize::source::Elf::new(path));
            let symbolized = match self.inner.symbolize(&src, Input::FileOffset(&lookups)) {
                Ok(results) => {
                    results.into_iter().map(|r| Symbolized::into_sym(r).map(Sym::into_owned)).collect()
                }
                Err(e) => {
                    tracing::debug!(error = %e, path = %path.display(), "symbolization by file offset failed");
                    Vec::new()
                }
            };
            let named = build_frames(&rest_offsets, symbolized, rest_ret, |_| Some(module.clone()));
            for (i, frame) in rest.into_iter().zip(named) {
                frames[i] = Some(frame);
            }
        }
        frames.into_iter().flatten().collect()
    }

    /// Symbolizes the call sites: a return address points at the instruction after the call,
    /// which may already belong to the next function (or next line), so it is looked up at
    /// addr-1. Failure names nothing rather than failing the whole stack.
    fn symbolize(
        &self,
        src: &Source<'_>,
        addrs: &[u64],
        is_return: impl Fn(usize) -> bool,
    ) -> Vec<Option<Sym<'static>>> {
        let lookups: Vec<u64> = addrs.iter().enumerate().map(|(i, &a)| lookup(is_return(i), a)).collect();
        match self.inner.symbolize(src, Input::AbsAddr(&lookups)) {
            Ok(results) => {
                results.into_iter().map(|r| Symbolized::into_sym(r).map(Sym::into_owned)).collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, "symbolization failed");
                Vec::new()
            }
        }
    }
}

/// A stack as unwound: the first address is where the thread is, the rest are return addresses.
fn first_is_ip(index: usize) -> bool {
    index != 0
}

fn lookup(is_return: bool, addr: u64) -> u64 {
    if is_return { addr.saturating_sub(1) } else { addr }
}

fn kernel_source() -> Source<'static> {
    Source::Kernel(Kernel {
        // kallsyms always matches the running kernel; a vmlinux found on disk might not,
        // and parsing one costs seconds.
        vmlinux: MaybeDefault::None,
        ..Kernel::default()
    })
}

fn build_frames(
    addrs: &[u64],
    mut syms: Vec<Option<Sym<'static>>>,
    is_return: impl Fn(usize) -> bool,
    module_of: impl Fn(u64) -> Option<String>,
) -> Vec<Frame> {
    syms.resize(addrs.len(), None);
    addrs
        .iter()
        .zip(syms)
        .enumerate()
        .map(|(i, (&addr, sym))| {
            let module = module_of(addr).or_else(|| {
                sym.as_ref().and_then(|s| s.module.as_ref()).map(|m| m.to_string_lossy().into_owned())
            });
            let Some(sym) = sym else {
                return Frame { addr, function: None, offset: 0, module, file_line: None };
            };
            // blazesym's offset is relative to the address it looked up; report it for the
            // address we were given.
            let offset = sym.offset as u64 + (addr - lookup(is_return(i), addr));
            // With inlining, the symbol is the real (outer) function, which `offset` refers to,
            // while the innermost inlined function's location is the instruction's true line.
            let code_info =
                sym.inlined.last().and_then(|f| f.code_info.as_ref()).or(sym.code_info.as_deref());
            let file_line = code_info.map(|ci| match ci.line {
                Some(line) => format!("{}:{line}", ci.file.to_string_lossy()),
                None => ci.file.to_string_lossy().into_owned(),
            });
            Frame { addr, function: Some(sym.name.into_owned()), offset, module, file_line }
        })
        .collect()
}

/// The frame of `addr` (at link-time address `vaddr` in `exe`) as the pclntab names it, in the
/// same form blazesym's frames take: the physical function, the offset from its entry, and the
/// file name (without its directory) and line of the instruction, the inlined callee's in
/// inlined code. A return address is looked up at the call instruction (vaddr-1).
fn go_frame(exe: &GoExecutable, addr: u64, vaddr: u64, is_return: bool, module: &str) -> Option<Frame> {
    let loc = exe.lookup(lookup(is_return, vaddr))?;
    let file_line = loc.file.map(|file| {
        let name = file.rsplit('/').next().unwrap_or(file);
        match loc.line {
            Some(line) => format!("{name}:{line}"),
            None => name.to_owned(),
        }
    });
    Some(Frame {
        addr,
        function: Some(loc.function.to_owned()),
        offset: vaddr.saturating_sub(loc.entry),
        module: Some(module.to_owned()),
        file_line,
    })
}

fn module_of(maps: &[Mapping], addr: u64) -> Option<String> {
    let m = &maps[maps::find(maps, addr)?];
    (!m.path.is_empty()).then(|| m.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, module: Option<&str>, file_line: Option<&str>) -> Frame {
        Frame {
            addr: 0x7f12345678,
            function: function.map(str::to_owned),
            offset: 0x12,
            module: module.map(str::to_owned),
            file_line: file_line.map(str::to_owned),
        }
    }

    #[test]
    fn displays_known_and_unknown_frames() {
        let lib = Some("/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(frame(Some("read"), lib, None).to_string(), "read+0x12 (libc.so.6)");
        assert_eq!(frame(None, lib, None).to_string(), "0x7f12345678 (libc.so.6)");
        assert_eq!(
            frame(Some("main"), Some("/tmp/t"), Some("t.c:42")).to_string(),
            "main+0x12 (t) at t.c:42"
        );
        assert_eq!(frame(None, None, None).to_string(), "0x7f12345678");
    }

    #[test]
    fn symbolizes_own_function() {
        let here = symbolizes_own_function as fn() as usize as u64;
        let frames = Symbolizer::new().user(std::process::id(), &[here]);
        assert_eq!(frames.len(), 1);
        let name = frames[0].function.as_deref().unwrap_or_default();
        assert!(name.contains("symbolizes_own_function"), "{}", frames[0]);
        assert_eq!(frames[0].offset, 0);
    }
}
