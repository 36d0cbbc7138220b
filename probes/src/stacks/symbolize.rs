//! Names stack addresses: user addresses of a live process (ASLR, dynsym/symtab/DWARF,
//! demangled Rust/C++) and kernel addresses (kallsyms) through blazesym, and addresses in Go
//! executables through the binary's own pclntab (see [`crate::go::pclntab`]): Go's DWARF is
//! compressed, and inflating it for file:line was most of a goroutine snapshot's CPU.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::maps::{AddressSpace, Mapping};
use crate::go::GoExecutable;

mod blaze;
mod saved;

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

/// Reusable symbolizer, meant to live as long as the agent (it is `Send`, so an observer that
/// moves between threads keeps it across views). What it keeps, each bounded:
/// - the name of every address it resolved in a file-backed mapping, by (mapping, file
///   offset): the same code in every thread and view costs one lookup (`MAX_NAMED` entries,
///   dropped wholesale beyond);
/// - the pclntabs of Go executables, per file (`MAX_GO_EXECUTABLES`);
/// - blazesym's parsed ELF/DWARF and kallsyms, on blazesym's own thread (`blaze::Blaze`);
/// - and on disk, between runs, the names of libraries named from a separate debug file
///   (`saved::SavedNames`): reading such a file's DWARF is the costly part of a fresh run.
pub struct Symbolizer {
    blaze: blaze::Blaze,
    saved: saved::SavedNames,
    /// Each executable file mapping seen, by identity: its pclntab, or `None` when it has none
    /// (not Go, unreadable, malformed), so each file is opened at most once.
    go: HashMap<ObjectKey, Option<Arc<GoExecutable>>>,
    /// Small ids for the mappings `named` refers to, so its keys are cheap to hash and copy.
    object_ids: HashMap<MappingKey, u32>,
    /// Names by (object id, file offset of the looked-up address); `None`: blazesym named
    /// nothing there.
    named: HashMap<(u32, u64), Option<Named>>,
}

/// Names kept per address at most; beyond, the cache starts over (a long run over many
/// processes stays bounded, and one process's hot code is re-learnt in one view).
const MAX_NAMED: usize = 1 << 16;
/// Mappings with an id at most; beyond, ids and names start over.
const MAX_OBJECT_IDS: usize = 4096;
/// Go executables' pclntabs kept at most (each can be tens of MB); beyond, they start over.
const MAX_GO_EXECUTABLES: usize = 32;

/// Identifies a mapped file: device and inode say which file it is even when paths differ or the
/// file was replaced under the same path; the path (or the device and inode alone) would not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    dev: String,
    inode: u64,
    path: String,
}

impl ObjectKey {
    fn of(m: &Mapping) -> Self {
        Self { dev: m.dev.clone(), inode: m.inode, path: m.path.clone() }
    }
}

/// The addresses of one mapped file to name: the path to open it by, which file it is, and the
/// (index in the stack, file offset) pairs.
type FileLookups = (PathBuf, ObjectKey, Vec<(usize, u64)>);

/// One file mapping of one process, which `named` keys names by. Not the file alone: a file
/// rewritten in place keeps its device, inode and path, and a process started from it later
/// must not get the old build's names; while this mapping exists its code cannot change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MappingKey {
    pid: u32,
    start: u64,
    end: u64,
    offset: u64,
    file: ObjectKey,
}

/// What symbolisation says about one looked-up address, independent of where it is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub function: String,
    /// Offset of the looked-up address from the start of `function`.
    pub offset: u64,
    pub file_line: Option<String>,
    /// The object blazesym says it read, for frames the map does not name.
    pub module: Option<String>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::with_saved(saved::SavedNames::new())
    }

    fn with_saved(saved: saved::SavedNames) -> Self {
        Self {
            blaze: blaze::Blaze::default(),
            saved,
            go: HashMap::new(),
            object_ids: HashMap::new(),
            named: HashMap::new(),
        }
    }

    /// Names addresses of process `pid`, in order, one frame per address. The first address is
    /// taken as an instruction pointer, the rest as return addresses. Reads the process's map;
    /// for many stacks of one process, read it once and use [`Symbolizer::user_in`].
    pub fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        let space = space_or_empty(pid);
        self.user_frames(&space, addrs, first_is_ip)
    }

    /// Like [`Symbolizer::user`], against a map already read (a view's [`AddressSpace`]).
    pub fn user_in(&mut self, space: &AddressSpace, addrs: &[u64]) -> Vec<Frame> {
        self.user_frames(space, addrs, first_is_ip)
    }

    /// Names kernel addresses (from kallsyms), in order, one frame per address. The first
    /// address is taken as an instruction pointer, the rest as return addresses.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
        self.kernel_frames(addrs, first_is_ip)
    }

    /// Like [`Symbolizer::user`] for many stacks at once (a profile's distinct addresses):
    /// `is_return[i]` says whether `addrs[i]` is a return address (looked up at addr-1) or an
    /// instruction pointer. One pass over the target's maps for the whole batch.
    pub fn user_batch(&mut self, pid: u32, addrs: &[u64], is_return: &[bool]) -> Vec<Frame> {
        let ret = |i: usize| is_return.get(i).copied().unwrap_or(true);
        let space = space_or_empty(pid);
        self.user_frames(&space, addrs, ret)
    }

    /// Names user addresses: those in a Go executable from its pclntab, those in other files
    /// from the cache or (once per file offset) from the file through blazesym, the rest (vDSO,
    /// anonymous code) through blazesym's view of the process.
    fn user_frames(
        &mut self,
        space: &AddressSpace,
        addrs: &[u64],
        is_return: impl Fn(usize) -> bool,
    ) -> Vec<Frame> {
        let pid = space.pid();
        let mut frames: Vec<Option<Frame>> = vec![None; addrs.len()];
        // Addresses to ask blazesym about: per file, and those outside any file.
        let mut by_file: HashMap<u32, FileLookups> = HashMap::new();
        let mut in_process: Vec<usize> = Vec::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let ret = is_return(i);
            if let Some(frame) = self.go_frame_in_process(space, addr, ret) {
                frames[i] = Some(frame);
                continue;
            }
            let at = lookup(ret, addr);
            let Some(m) = space.find(at).filter(|m| m.is_file()) else {
                in_process.push(i);
                continue;
            };
            let file_offset = (at - m.range.start).saturating_add(m.offset);
            let id = self.object_id(pid, m);
            match self.named.get(&(id, file_offset)) {
                Some(named) => frames[i] = Some(frame_of(addr, ret, named.clone(), module_of(space, addr))),
                None => by_file
                    .entry(id)
                    .or_insert_with(|| (file_path(pid, m), ObjectKey::of(m), Vec::new()))
                    .2
                    .push((i, file_offset)),
            }
        }
        for (id, (path, key, mut wanted)) in by_file {
            // Names saved by an earlier run spare blazesym this file's debug file.
            let entry = self.saved.entry_for(&key, &path);
            if let Some(entry) = &entry {
                wanted.retain(|&(i, off)| {
                    let Some(named) = self.saved.get(entry, off) else { return true };
                    frames[i] =
                        Some(frame_of(addrs[i], is_return(i), named.clone(), module_of(space, addrs[i])));
                    if self.named.len() < MAX_NAMED {
                        self.named.insert((id, off), named.clone());
                    }
                    false
                });
                if wanted.is_empty() {
                    continue;
                }
            }
            let offsets: Vec<u64> = wanted.iter().map(|&(_, off)| off).collect();
            let reply = self.blaze.elf_offsets(path, offsets);
            // Only answers are remembered: a failure (the file vanished with its process) may
            // not repeat for the next process mapping the same file.
            let remember = reply.is_some();
            let mut named = reply.unwrap_or_default();
            named.resize(wanted.len(), None);
            if remember && self.named.len() + wanted.len() > MAX_NAMED {
                self.named.clear();
            }
            for ((i, off), named) in wanted.into_iter().zip(named) {
                // A batch bigger than the whole cache (a profile's addresses) is named, but
                // only what fits is kept.
                if remember && self.named.len() < MAX_NAMED {
                    self.named.insert((id, off), named.clone());
                }
                if remember && let Some(entry) = &entry {
                    self.saved.insert(entry, off, &named);
                }
                frames[i] = Some(frame_of(addrs[i], is_return(i), named, module_of(space, addrs[i])));
            }
        }
        self.saved.flush();
        if !in_process.is_empty() {
            // Not cached: anonymous code (JIT, perf maps) changes under the same address.
            let lookups: Vec<u64> = in_process.iter().map(|&i| lookup(is_return(i), addrs[i])).collect();
            let mut named =
                NonZeroU32::new(pid).and_then(|nz| self.blaze.process(nz, lookups)).unwrap_or_default();
            named.resize(in_process.len(), None);
            for (i, named) in in_process.into_iter().zip(named) {
                frames[i] = Some(frame_of(addrs[i], is_return(i), named, module_of(space, addrs[i])));
            }
        }
        frames
            .into_iter()
            .zip(addrs)
            .map(|(f, &addr)| f.unwrap_or_else(|| frame_of(addr, false, None, None)))
            .collect()
    }

    /// The small id of mapping `m` of process `pid`; ids and the names keyed by them start over
    /// when too many mappings were seen.
    fn object_id(&mut self, pid: u32, m: &Mapping) -> u32 {
        let key = MappingKey {
            pid,
            start: m.range.start,
            end: m.range.end,
            offset: m.offset,
            file: ObjectKey::of(m),
        };
        if let Some(&id) = self.object_ids.get(&key) {
            return id;
        }
        if self.object_ids.len() >= MAX_OBJECT_IDS {
            self.object_ids.clear();
            self.named.clear();
        }
        let id = u32::try_from(self.object_ids.len()).unwrap_or(u32::MAX);
        self.object_ids.insert(key, id);
        id
    }

    /// The frame of `addr` of the process whose map is `space` from the pclntab of the Go
    /// executable it lies in, if it does and the pclntab names it.
    fn go_frame_in_process(&mut self, space: &AddressSpace, addr: u64, is_return: bool) -> Option<Frame> {
        let pid = space.pid();
        let m = space.find(addr)?;
        if !m.executable || !m.is_file() {
            return None;
        }
        let key = ObjectKey::of(m);
        let exe = match self.go.get(&key) {
            Some(known) => known.clone()?,
            None => {
                // The file as the target maps it (also when deleted or in another mount
                // namespace).
                let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", m.range.start, m.range.end);
                let rooted = format!("/proc/{pid}/root{}", m.path);
                self.go_executable(key, &[Path::new(&mapped), Path::new(&rooted), Path::new(&m.path)])?
            }
        };
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
        if self.go.len() >= MAX_GO_EXECUTABLES {
            self.go.clear();
        }
        self.go.insert(key, found.clone());
        found
    }

    /// Like [`Symbolizer::kernel`] for many stacks at once; see [`Symbolizer::user_batch`].
    pub fn kernel_batch(&mut self, addrs: &[u64], is_return: &[bool]) -> Vec<Frame> {
        let ret = |i: usize| is_return.get(i).copied().unwrap_or(true);
        self.kernel_frames(addrs, ret)
    }

    fn kernel_frames(&mut self, addrs: &[u64], is_return: impl Fn(usize) -> bool) -> Vec<Frame> {
        let lookups: Vec<u64> = addrs.iter().enumerate().map(|(i, &a)| lookup(is_return(i), a)).collect();
        let mut named = self.blaze.kernel(lookups).unwrap_or_default();
        named.resize(addrs.len(), None);
        addrs
            .iter()
            .zip(named)
            .enumerate()
            .map(|(i, (&addr, n))| frame_of(addr, is_return(i), n, None))
            .collect()
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
            let lookups: Vec<u64> = rest.iter().map(|&i| lookup(ret(i), offsets[i])).collect();
            let mut named = self.blaze.elf_offsets(path.to_path_buf(), lookups).unwrap_or_default();
            named.resize(rest.len(), None);
            for (i, n) in rest.into_iter().zip(named) {
                frames[i] = Some(frame_of(offsets[i], ret(i), n, Some(module.clone())));
            }
        }
        frames.into_iter().flatten().collect()
    }
}

/// The map of `pid`, or an empty one for a process that is gone (its frames then just have no
/// modules and blazesym names what it still can).
fn space_or_empty(pid: u32) -> AddressSpace {
    AddressSpace::read(pid).unwrap_or_else(|_| AddressSpace::from_parts(pid, Vec::new()))
}

/// The path to open the file a mapping of `pid` maps: /proc/PID/map_files names exactly the
/// inode the target mapped, even across mount namespaces or after deletion; else the path
/// under the target's root.
fn file_path(pid: u32, m: &Mapping) -> PathBuf {
    let mapped = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.range.start, m.range.end));
    if mapped.exists() { mapped } else { PathBuf::from(format!("/proc/{pid}/root{}", m.path)) }
}

/// A stack as unwound: the first address is where the thread is, the rest are return addresses.
fn first_is_ip(index: usize) -> bool {
    index != 0
}

fn lookup(is_return: bool, addr: u64) -> u64 {
    if is_return { addr.saturating_sub(1) } else { addr }
}

/// The frame of `addr` from what symbolisation said about its looked-up address. `module` (the
/// map's name for the object) wins over blazesym's.
fn frame_of(addr: u64, is_return: bool, named: Option<Named>, module: Option<String>) -> Frame {
    let Some(named) = named else {
        return Frame { addr, function: None, offset: 0, module, file_line: None };
    };
    // The offset is relative to the address looked up; report it for the address we were given.
    let offset = named.offset + (addr - lookup(is_return, addr));
    Frame {
        addr,
        function: Some(named.function),
        offset,
        module: module.or(named.module),
        file_line: named.file_line,
    }
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

fn module_of(space: &AddressSpace, addr: u64) -> Option<String> {
    let m = space.find(addr)?;
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

    /// A file with a debug file found by build id gets its names saved on disk, and later runs
    /// read them from there (shown by editing the saved entry); a changed debug file makes a new
    /// entry. Our own test binary stands in for the library, any file for its debug file.
    #[test]
    fn names_of_files_with_debug_files_are_saved_between_runs() {
        let here = names_of_files_with_debug_files_are_saved_between_runs as fn() as usize as u64;
        let root = std::env::temp_dir().join(format!("parkscope-saved-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (cache, debug) = (root.join("cache"), root.join("debug"));
        let id = crate::stacks::modules::elf_build_id(Path::new("/proc/self/exe")).expect("own build id");
        let debug_file = debug.join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
        std::fs::create_dir_all(debug_file.parent().unwrap()).unwrap();
        std::fs::write(&debug_file, b"a stand-in debug file").unwrap();
        let run = || {
            let saved = saved::SavedNames::in_dirs(Some(cache.clone()), vec![debug.clone()]);
            let mut symbolizer = Symbolizer::with_saved(saved);
            symbolizer.user(std::process::id(), &[here]).remove(0).function.unwrap_or_default()
        };
        let first = run();
        assert!(first.contains("names_of_files_with_debug_files_are_saved_between_runs"), "{first}");
        let entries: Vec<PathBuf> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let text = std::fs::read_to_string(&entries[0]).unwrap();
        assert!(text.contains(&first), "{text}");
        std::fs::write(&entries[0], text.replace(&first, "name_from_the_saved_entry")).unwrap();
        assert_eq!(run(), "name_from_the_saved_entry");
        // Another debug file (new inode change time): the old entry no longer applies.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&debug_file, b"another stand-in").unwrap();
        assert_eq!(run(), first);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&root);
    }
}
