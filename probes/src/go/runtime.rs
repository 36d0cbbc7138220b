//! Reads the scheduler state of a live Go process: every goroutine (allgs), every M (allm),
//! every P (allp) and the global scheduler (sched), from its memory, while it keeps running.
//! Lists are re-read when they change under us; entries that do not hold together (a goroutine
//! freed and reused mid-read) are dropped and counted, never reported as data.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::layout::{Field, GField, GoConst, GoStruct, MField, OptionalField, PField, SchedField};
use super::memory::{Memory, ReadMemory, sign_extend, uint_at};
use super::{GoBinary, GoError, netpoll};
use crate::procfs::{ProcError, TidMap};
use crate::stacks::maps;

/// Bounds that keep a corrupt read from turning into a huge allocation or an endless walk.
/// The target controls its memory and its binary (so its DWARF, so the layout): every count,
/// size and walk below is capped, and going past a cap is an error or a cut, never a crash.
const MAX_GOROUTINES: u64 = 20_000_000;
/// Bytes of allgs (pointer array and g structs) read at once: about 2.3 million goroutines of
/// Go 1.27 (456-byte gs); a larger allgs is refused rather than allocated.
const MAX_ALLGS_BYTES: u64 = 1 << 30;
const MAX_MS: usize = 100_000;
/// Bytes of M structs held by one allm walk.
const MAX_ALLM_BYTES: usize = 256 << 20;
const MAX_PS: u64 = 1 << 16;
/// Bytes of P structs one allp read goes through (16,384 Ps of Go 1.27's 16 KB): each P is
/// read whole, so a hostile allp length would otherwise cost a gigabyte of reads.
const MAX_ALLP_BYTES: u64 = 256 << 20;
/// The largest runtime struct size or field a layout may state (runtime.p, the largest, is
/// 16 KB in Go 1.27; the widest field read is a string header).
const MAX_STRUCT_SIZE: u64 = 1 << 16;
const MAX_FIELD_SIZE: u64 = 16;
/// Stack bytes read per goroutine for the frame-pointer walk (deeper frames are cut).
const STACK_WINDOW: u64 = 32 << 10;
/// Stack bytes held at once by the walks: goroutines are walked in batches of this much.
const STACK_BATCH_BYTES: usize = 64 << 20;
/// Time one sequential walk (allm, allp) may take before it is abandoned: each step is a
/// syscall, and a hostile list could make it long even under the count caps.
const WALK_BUDGET: Duration = Duration::from_secs(5);
/// Frames per goroutine stack.
const MAX_FRAMES: usize = 64;
/// Attempts at a consistent allgs/allp read before giving up.
const RETRIES: usize = 4;

/// A goroutine's scheduling state, without the GC's scan bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GStatus {
    Idle,
    Runnable,
    Running,
    Syscall,
    Waiting,
    Dead,
    Copystack,
    Preempted,
}

impl GStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GStatus::Idle => "idle",
            GStatus::Runnable => "runnable",
            GStatus::Running => "running",
            GStatus::Syscall => "syscall",
            GStatus::Waiting => "waiting",
            GStatus::Dead => "dead",
            GStatus::Copystack => "copystack",
            GStatus::Preempted => "preempted",
        }
    }
}

/// Which direction a goroutine waits on its fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    Read,
    Write,
}

impl PollMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Read => "read",
            PollMode::Write => "write",
        }
    }
}

/// One goroutine as read from the runtime.
#[derive(Debug, Clone)]
pub struct GoroutineState {
    pub addr: u64,
    pub goid: u64,
    pub status: GStatus,
    /// `atomicstatus` as the runtime holds it (scan bit included), as scheddetail prints it.
    pub raw_status: u32,
    pub waitreason: u8,
    /// The runtime's own string for `waitreason` (set only while waiting).
    pub wait_reason: Option<String>,
    /// The runtime's nanotime when it first saw this goroutine waiting (set during GC), 0 if unknown.
    pub waitsince: i64,
    /// Address of the M running it (running or in a syscall), 0 otherwise.
    pub m: u64,
    pub m_id: Option<i64>,
    pub tid: Option<u32>,
    /// In a cgo call (status syscall on an M that is in C).
    pub cgo: bool,
    pub startpc: u64,
    pub gopc: u64,
    pub parent_goid: Option<u64>,
    /// Program counters of its stack, innermost first: the saved pc, then return addresses.
    /// Empty when the goroutine is on a CPU (its saved registers are stale then).
    pub pcs: Vec<u64>,
    pub netpoll: Option<(i32, PollMode)>,
    pub lockedm_id: Option<i64>,
}

/// One M (OS thread) of the runtime.
#[derive(Debug, Clone)]
pub struct MState {
    pub addr: u64,
    pub id: i64,
    /// The OS thread id as /proc and the kernel's probes know it (the host's, for a target in
    /// a container); 0 when no live thread has `ns_tid` (the M's thread exited).
    pub tid: u32,
    /// The thread id as the runtime knows it (`m.procid`, from gettid in the target's own pid
    /// namespace): equal to `tid` unless the target is in another pid namespace.
    pub ns_tid: u32,
    pub curg_goid: Option<u64>,
    pub p_id: Option<i64>,
    pub ncgo: i64,
    pub incgo: bool,
    pub mallocing: i64,
    pub throwing: i64,
    pub preemptoff: String,
    pub locks: i64,
    pub dying: i64,
    pub spinning: bool,
    pub blocked: bool,
    pub lockedg_goid: Option<u64>,
    /// Entry pc of the function the M was started with (sysmon, templateThread, ...), 0 if none.
    pub mstartfn_pc: u64,
}

/// One P.
#[derive(Debug, Clone)]
pub struct PState {
    pub id: i64,
    pub status: i64,
    pub schedtick: u64,
    pub syscalltick: u64,
    pub m_id: Option<i64>,
    pub runqsize: u64,
    pub gfreecnt: i64,
    pub timerslen: u64,
}

/// The global scheduler's counters.
#[derive(Debug, Clone)]
pub struct SchedState {
    pub gomaxprocs: i64,
    pub npidle: i64,
    pub mcount: i64,
    pub nmspinning: i64,
    /// Only in runtimes that have it (its presence decides whether schedtrace prints it).
    pub needspinning: Option<i64>,
    pub nmidle: i64,
    pub runqsize: i64,
    pub gcwaiting: i64,
    pub nmidlelocked: i64,
    pub stopwait: i64,
    pub sysmonwait: i64,
}

/// Everything read in one pass.
#[derive(Debug, Clone)]
pub struct RuntimeState {
    /// CLOCK_MONOTONIC (the runtime's nanotime) when the read began.
    pub nanotime: u64,
    pub sched: SchedState,
    pub ps: Vec<PState>,
    pub ms: Vec<MState>,
    /// Every g in allgs order (creation order, like the runtime's dumps), dead (free, reusable)
    /// ones included: outputs that list goroutines skip those.
    pub goroutines: Vec<GoroutineState>,
    /// How many of them are dead.
    pub dead: usize,
    /// Entries dropped because they were mid-change or unreadable.
    pub inconsistent: usize,
    /// The runtime's epoll fd (-1 before the netpoller starts).
    pub epfd: i32,
}

/// A live Go process: its binary's facts, the load slide, and the wait reason strings.
pub struct GoProcess {
    pub pid: u32,
    pub binary: GoBinary,
    slide: u64,
    wait_reasons: Vec<String>,
    status_of: HashMap<i64, GStatus>,
    scan_bit: u32,
    /// What the last [`GoProcess::read`] learnt of the address space: reused by the next one,
    /// so that periodic reads do not parse /proc/PID/maps each time (see memory.rs).
    mappings: std::sync::Mutex<super::memory::Mappings>,
}

impl GoProcess {
    /// Detects and prepares a Go target: `NotGo`, `Stripped` and `UnknownLayout` say why not.
    pub fn attach(pid: u32) -> Result<GoProcess, GoError> {
        let exe = format!("/proc/{pid}/exe");
        let target = std::fs::read_link(&exe).map_err(|e| GoError::from_io(pid, &exe, &e))?;
        let display = target.to_string_lossy().into_owned();
        let binary = GoBinary::open(Path::new(&exe), &display).map_err(|e| match e {
            GoError::NotGo { path, .. } => GoError::NotGo { pid, path },
            other => other,
        })?;
        let slide = if binary.position_independent { exe_slide(pid, &display, &binary)? } else { 0 };
        let mem = Memory::open(pid)?;
        GoProcess::prepare(pid, binary, slide, &mem)
    }

    /// The part of [`GoProcess::attach`] after the binary is read: checks the layout's sizes
    /// are plausible, reads the wait reason strings and maps the status constants.
    pub(super) fn prepare<M: ReadMemory>(
        pid: u32,
        binary: GoBinary,
        slide: u64,
        mem: &M,
    ) -> Result<GoProcess, GoError> {
        check_layout_bounds(&binary)?;
        let mut this = GoProcess {
            pid,
            binary,
            slide,
            wait_reasons: Vec::new(),
            status_of: HashMap::new(),
            scan_bit: 0,
            mappings: Default::default(),
        };
        this.wait_reasons = this.read_wait_reasons(mem)?;
        let l = &this.binary.layout;
        for (c, status) in [
            (GoConst::Gidle, GStatus::Idle),
            (GoConst::Grunnable, GStatus::Runnable),
            (GoConst::Grunning, GStatus::Running),
            (GoConst::Gsyscall, GStatus::Syscall),
            (GoConst::Gwaiting, GStatus::Waiting),
            (GoConst::Gdead, GStatus::Dead),
            (GoConst::Gcopystack, GStatus::Copystack),
            (GoConst::Gpreempted, GStatus::Preempted),
            // A leaked goroutine is parked for good; a dead g kept for an extra M is dead.
            (GoConst::Gleaked, GStatus::Waiting),
            (GoConst::Gdeadextra, GStatus::Dead),
        ] {
            if let Some(v) = l.constant(c) {
                this.status_of.insert(v, status);
            }
        }
        this.scan_bit = l.constant(GoConst::Gscan).unwrap_or(0) as u32;
        Ok(this)
    }

    pub fn version(&self) -> &str {
        &self.binary.buildinfo.version
    }

    /// The status a runtime status value (as in `g.atomicstatus`, scan bit included or not)
    /// stands for in this runtime.
    pub fn status_of_value(&self, value: u32) -> Option<GStatus> {
        self.status_of.get(&i64::from(value & !self.scan_bit)).copied()
    }

    /// `waitReason.String()` as the runtime defines it, for any status.
    pub fn wait_reason_text(&self, w: u8) -> &str {
        self.wait_reasons.get(usize::from(w)).map_or("unknown wait reason", String::as_str)
    }

    fn global(&self, name: &str) -> u64 {
        self.binary.globals.get(name).map_or(0, |(a, _)| a.wrapping_add(self.slide))
    }

    /// runtime.waitReasonStrings, read from memory (a PIE's string pointers are relocated there).
    fn read_wait_reasons<M: ReadMemory>(&self, mem: &M) -> Result<Vec<String>, GoError> {
        let size = self.binary.globals.get("runtime.waitReasonStrings").map_or(0, |(_, s)| *s);
        let n = (size / 16).min(4096) as usize;
        let mut headers = vec![0u8; n * 16];
        mem.read(self.global("runtime.waitReasonStrings"), &mut headers)?;
        let mut bufs: Vec<Vec<u8>> =
            headers.chunks(16).map(|h| vec![0u8; uint_at(h, 8, 8).min(256) as usize]).collect();
        let mut reqs: Vec<(u64, &mut [u8])> =
            headers.chunks(16).zip(bufs.iter_mut()).map(|(h, b)| (uint_at(h, 0, 8), &mut b[..])).collect();
        let ok = mem.read_many(&mut reqs)?;
        Ok(bufs
            .iter()
            .zip(ok)
            .map(|(b, ok)| if ok { String::from_utf8_lossy(b).into_owned() } else { String::new() })
            .collect())
    }

    /// Reads the scheduler, Ps, Ms and goroutines once.
    pub fn read(&self, stacks: bool) -> Result<RuntimeState, GoError> {
        let known = std::mem::take(&mut *self.mappings.lock().unwrap_or_else(|p| p.into_inner()));
        let mem = Memory::reuse(self.pid, known)?;
        let state = self.read_with(&mem, stacks, &LiveProc { pid: self.pid });
        *self.mappings.lock().unwrap_or_else(|p| p.into_inner()) = mem.into_mappings();
        state
    }

    /// One read over `mem`, with what /proc says of the process from `proc`.
    pub(super) fn read_with<M: ReadMemory>(
        &self,
        mem: &M,
        stacks: bool,
        proc: &impl ProcView,
    ) -> Result<RuntimeState, GoError> {
        let nanotime = crate::kernel::monotonic_now_ns();
        let l = &self.binary.layout;
        let sched = self.read_sched(mem)?;
        let mut ms = self.read_ms(mem)?;
        // m.procid is the target's own view of its thread ids: in a container those are not
        // the ids /proc, the probes and every other output use.
        let tids = proc.tids()?;
        for m in &mut ms {
            m.tid = if m.ns_tid == 0 { 0 } else { tids.host_tid(m.ns_tid).unwrap_or(0) };
        }
        let by_addr: HashMap<u64, &MState> = ms.iter().map(|m| (m.addr, m)).collect();
        let ps = self.read_ps(mem, &by_addr)?;
        let epfd = sign_extend(mem.read_u64(self.global("runtime.epfd"))?, 4) as i32;
        let (gptrs, gbufs) = self.read_allgs(mem)?;
        let gsize = l.size(GoStruct::G);

        let mut goroutines = Vec::with_capacity(gptrs.len());
        let mut dead = 0;
        let mut inconsistent = 0;
        let f = |buf: &[u8], key: GField| {
            let Field { offset, size } = l.field(key);
            uint_at(buf, offset, size)
        };
        for (i, &addr) in gptrs.iter().enumerate() {
            let Some(buf) = gbufs.get(i * gsize as usize..(i + 1) * gsize as usize) else { break };
            let raw = f(buf, GField::Atomicstatus) as u32;
            let Some(&status) = self.status_of.get(&i64::from(raw & !self.scan_bit)) else {
                inconsistent += 1;
                continue;
            };
            // Dead gs stay in allgs for reuse; they are kept (scheddetail lists them) but not
            // checked further.
            if status == GStatus::Dead {
                dead += 1;
            }
            let goid = f(buf, GField::Goid);
            let (lo, hi) = (f(buf, GField::StackLo), f(buf, GField::StackHi));
            if goid == 0 && !matches!(status, GStatus::Idle | GStatus::Dead) || lo > hi {
                inconsistent += 1;
                continue;
            }
            let waitreason = f(buf, GField::Waitreason) as u8;
            let m_addr = f(buf, GField::M);
            let m = by_addr.get(&m_addr);
            let lockedm = f(buf, GField::Lockedm);
            goroutines.push(GoroutineState {
                addr,
                goid,
                status,
                raw_status: raw,
                waitreason,
                wait_reason: matches!(status, GStatus::Waiting)
                    .then(|| self.wait_reasons.get(usize::from(waitreason)).cloned())
                    .flatten()
                    .filter(|s| !s.is_empty()),
                waitsince: sign_extend(f(buf, GField::Waitsince), 8),
                m: m_addr,
                m_id: m.map(|m| m.id),
                tid: m.map(|m| m.tid).filter(|&t| t != 0),
                cgo: status == GStatus::Syscall && m.is_some_and(|m| m.incgo && m.ncgo > 0),
                startpc: f(buf, GField::Startpc),
                gopc: f(buf, GField::Gopc),
                parent_goid: l.optional(OptionalField::ParentGoid).map(|p| uint_at(buf, p.offset, p.size)),
                pcs: Vec::new(),
                netpoll: None,
                lockedm_id: by_addr.get(&lockedm).map(|m| m.id),
            });
        }
        if stacks {
            self.unwind_all(mem, &gbufs, &gptrs, &mut goroutines)?;
        }
        let parked = netpoll::parked_on_fds(mem, l, &proc.epoll_fdinfo(epfd)?)?;
        for g in &mut goroutines {
            g.netpoll = parked.get(&g.addr).copied();
        }
        Ok(RuntimeState { nanotime, sched, ps, ms, goroutines, dead, inconsistent, epfd })
    }

    /// allgs as a consistent (pointer array, g structs) pair: the slice header is re-read after
    /// the array, and the read repeated if the runtime grew or moved it meanwhile.
    fn read_allgs<M: ReadMemory>(&self, mem: &M) -> Result<(Vec<u64>, Vec<u8>), GoError> {
        let gsize = self.binary.layout.size(GoStruct::G) as usize;
        let at = self.global("runtime.allgs");
        let mut last = String::new();
        for _ in 0..RETRIES {
            let mut hdr = [0u8; 16];
            mem.read(at, &mut hdr)?;
            let (ptr, len) = (uint_at(&hdr, 0, 8), uint_at(&hdr, 8, 8));
            if len > MAX_GOROUTINES || len * (8 + gsize as u64) > MAX_ALLGS_BYTES {
                last = format!("allgs length {len}");
                continue;
            }
            let mut arr = vec![0u8; len as usize * 8];
            if len > 0 && mem.read(ptr, &mut arr).is_err() {
                last = format!("allgs array at {ptr:#x} unreadable");
                continue;
            }
            let mut again = [0u8; 16];
            mem.read(at, &mut again)?;
            if uint_at(&again, 0, 8) != ptr {
                last = "allgs moved while read".into();
                continue;
            }
            let gptrs: Vec<u64> = arr.chunks(8).map(|c| uint_at(c, 0, 8)).collect();
            let mut gbufs = vec![0u8; gptrs.len() * gsize];
            let mut reqs: Vec<(u64, &mut [u8])> =
                gptrs.iter().copied().zip(gbufs.chunks_mut(gsize.max(1))).collect();
            let ok = mem.read_many(&mut reqs)?;
            // A g that could not be read keeps zeroed bytes: status 0 with goid 0 is dropped
            // as inconsistent by the caller.
            for (i, good) in ok.iter().enumerate() {
                if !good {
                    gbufs[i * gsize..(i + 1) * gsize].fill(0xff);
                }
            }
            return Ok((gptrs, gbufs));
        }
        Err(GoError::Inconsistent { what: "allgs", detail: last })
    }

    /// Frame-pointer walks from each parked goroutine's saved registers (g.sched), over one read
    /// of its stack. Go keeps frame pointers on amd64: [bp] is the caller's bp, [bp+8] the
    /// return address. Every link must stay inside the goroutine's own stack and move upward.
    fn unwind_all<M: ReadMemory>(
        &self,
        mem: &M,
        gbufs: &[u8],
        gptrs: &[u64],
        gs: &mut [GoroutineState],
    ) -> Result<(), GoError> {
        let l = &self.binary.layout;
        let gsize = l.size(GoStruct::G) as usize;
        let index: HashMap<u64, usize> = gptrs.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let f = |buf: &[u8], key: GField| {
            let Field { offset, size } = l.field(key);
            uint_at(buf, offset, size)
        };
        struct Walk {
            g: usize,
            pc: u64,
            sp: u64,
            bp: u64,
        }
        let mut walks = Vec::new();
        let mut lens = Vec::new();
        for (gi, g) in gs.iter().enumerate() {
            if matches!(g.status, GStatus::Running | GStatus::Dead) {
                continue;
            }
            let Some(&i) = index.get(&g.addr) else { continue };
            let buf = &gbufs[i * gsize..(i + 1) * gsize];
            let (sp, pc, bp) = (f(buf, GField::SchedSp), f(buf, GField::SchedPc), f(buf, GField::SchedBp));
            let (lo, hi) = (f(buf, GField::StackLo), f(buf, GField::StackHi));
            if pc == 0 || sp < lo || sp >= hi {
                continue;
            }
            walks.push(Walk { g: gi, pc, sp, bp });
            lens.push((hi - sp).min(STACK_WINDOW) as usize);
        }
        // In batches of at most STACK_BATCH_BYTES of stack, so that a million parked
        // goroutines do not need their 32 KB windows all at once.
        let mut stack_bytes = Vec::new();
        let mut first = 0;
        while first < walks.len() {
            let mut end = first;
            let mut total = 0;
            while end < walks.len() && (end == first || total + lens[end] <= STACK_BATCH_BYTES) {
                total += lens[end];
                end += 1;
            }
            stack_bytes.clear();
            stack_bytes.resize(total, 0u8);
            let mut reqs: Vec<(u64, &mut [u8])> = Vec::with_capacity(end - first);
            let mut rest = &mut stack_bytes[..];
            for (w, &len) in walks[first..end].iter().zip(&lens[first..end]) {
                let (chunk, tail) = rest.split_at_mut(len);
                reqs.push((w.sp, chunk));
                rest = tail;
            }
            let ok = mem.read_many(&mut reqs)?;
            for ((w, (_, stack)), ok) in walks[first..end].iter().zip(&reqs).zip(ok) {
                gs[w.g].pcs = if ok { frame_walk(w.pc, w.sp, w.bp, stack) } else { vec![w.pc] };
            }
            first = end;
        }
        Ok(())
    }

    fn read_sched<M: ReadMemory>(&self, mem: &M) -> Result<SchedState, GoError> {
        let l = &self.binary.layout;
        let mut buf = vec![0u8; l.size(GoStruct::Schedt) as usize];
        mem.read(self.global("runtime.sched"), &mut buf)?;
        let i = |key: SchedField| {
            let f = l.field(key);
            sign_extend(uint_at(&buf, f.offset, f.size), f.size)
        };
        let gomaxprocs = sign_extend(mem.read_u64(self.global("runtime.gomaxprocs"))?, 4);
        Ok(SchedState {
            gomaxprocs,
            npidle: i(SchedField::Npidle),
            mcount: i(SchedField::Mnext) - i(SchedField::Nmfreed),
            nmspinning: i(SchedField::Nmspinning),
            needspinning: l
                .optional(OptionalField::Needspinning)
                .map(|f| sign_extend(uint_at(&buf, f.offset, f.size), f.size)),
            nmidle: i(SchedField::Nmidle),
            runqsize: i(SchedField::Runqsize),
            gcwaiting: i(SchedField::Gcwaiting),
            nmidlelocked: i(SchedField::Nmidlelocked),
            stopwait: i(SchedField::Stopwait),
            sysmonwait: i(SchedField::Sysmonwait),
        })
    }

    /// Walks allm (a singly linked list through m.alllink; Ms are never freed from it while
    /// linked, but a cycle or garbage pointer from a racing read ends the walk).
    fn read_ms<M: ReadMemory>(&self, mem: &M) -> Result<Vec<MState>, GoError> {
        let l = &self.binary.layout;
        let size = l.size(GoStruct::M) as usize;
        let mut out: Vec<MState> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut raw: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut addr = mem.read_u64(self.global("runtime.allm"))?;
        let deadline = Instant::now() + WALK_BUDGET;
        let max_ms = MAX_MS.min(MAX_ALLM_BYTES / size.max(1));
        while addr != 0 && raw.len() < max_ms && seen.insert(addr) {
            if Instant::now() > deadline {
                return Err(GoError::Inconsistent { what: "allm", detail: "the walk took too long".into() });
            }
            let mut buf = vec![0u8; size];
            if mem.read(addr, &mut buf).is_err() {
                break;
            }
            let next = uint_at(&buf, l.field(MField::Alllink).offset, 8);
            raw.push((addr, buf));
            addr = next;
        }
        // curg/lockedg/p are pointers: read just the fields we print from them.
        let goid_f = l.field(GField::Goid);
        let pid_f = l.field(PField::Id);
        let read_at = |base: u64, f: Field| -> Option<u64> {
            if base == 0 {
                return None;
            }
            let mut b = [0u8; 8];
            let b = b.get_mut(..usize::try_from(f.size).ok()?)?;
            mem.read(base.checked_add(f.offset)?, b).ok()?;
            Some(uint_at(b, 0, f.size))
        };
        for (addr, buf) in &raw {
            let u = |key: MField| {
                let f = l.field(key);
                uint_at(buf, f.offset, f.size)
            };
            let i = |key: MField| {
                let f = l.field(key);
                sign_extend(uint_at(buf, f.offset, f.size), f.size)
            };
            let preemptoff = {
                let f = l.field(MField::Preemptoff);
                let (ptr, len) =
                    (uint_at(buf, f.offset, 8), uint_at(buf, f.offset.saturating_add(8), 8).min(256));
                let mut s = vec![0u8; len as usize];
                if len > 0 && mem.read(ptr, &mut s).is_ok() {
                    String::from_utf8_lossy(&s).into_owned()
                } else {
                    String::new()
                }
            };
            let mstartfn_pc = l
                .optional(OptionalField::Mstartfn)
                .map(|f| uint_at(buf, f.offset, 8))
                .filter(|&fv| fv != 0)
                .and_then(|fv| mem.read_u64(fv).ok())
                .unwrap_or(0);
            out.push(MState {
                addr: *addr,
                id: i(MField::Id),
                // Translated to /proc's ids by read_with.
                tid: 0,
                ns_tid: u(MField::Procid) as u32,
                curg_goid: read_at(u(MField::Curg), goid_f),
                p_id: read_at(u(MField::P), pid_f).map(|v| sign_extend(v, pid_f.size)),
                ncgo: i(MField::Ncgo),
                incgo: u(MField::Incgo) != 0,
                mallocing: i(MField::Mallocing),
                throwing: i(MField::Throwing),
                preemptoff,
                locks: i(MField::Locks),
                dying: i(MField::Dying),
                spinning: u(MField::Spinning) != 0,
                blocked: u(MField::Blocked) != 0,
                lockedg_goid: read_at(u(MField::Lockedg), goid_f),
                mstartfn_pc,
            });
        }
        Ok(out)
    }

    fn read_ps<M: ReadMemory>(&self, mem: &M, ms: &HashMap<u64, &MState>) -> Result<Vec<PState>, GoError> {
        let l = &self.binary.layout;
        let size = l.size(GoStruct::P) as usize;
        let at = self.global("runtime.allp");
        let deadline = Instant::now() + WALK_BUDGET;
        for _ in 0..RETRIES {
            if Instant::now() > deadline {
                return Err(GoError::Inconsistent { what: "allp", detail: "the walk took too long".into() });
            }
            let mut hdr = [0u8; 16];
            mem.read(at, &mut hdr)?;
            let (ptr, len) = (uint_at(&hdr, 0, 8), uint_at(&hdr, 8, 8));
            if len > MAX_PS || len * size as u64 > MAX_ALLP_BYTES {
                return Err(GoError::Inconsistent { what: "allp", detail: format!("allp length {len}") });
            }
            let mut arr = vec![0u8; len as usize * 8];
            if len > 0 && mem.read(ptr, &mut arr).is_err() {
                continue;
            }
            let mut out = Vec::with_capacity(len as usize);
            let mut buf = vec![0u8; size];
            let mut failed = false;
            for c in arr.chunks(8) {
                if Instant::now() > deadline {
                    return Err(GoError::Inconsistent {
                        what: "allp",
                        detail: "the walk took too long".into(),
                    });
                }
                if mem.read(uint_at(c, 0, 8), &mut buf).is_err() {
                    failed = true;
                    break;
                }
                let u = |key: PField| {
                    let f = l.field(key);
                    uint_at(&buf, f.offset, f.size)
                };
                let i = |key: PField| {
                    let f = l.field(key);
                    sign_extend(uint_at(&buf, f.offset, f.size), f.size)
                };
                out.push(PState {
                    id: i(PField::Id),
                    status: i(PField::Status),
                    schedtick: u(PField::Schedtick),
                    syscalltick: u(PField::Syscalltick),
                    m_id: ms.get(&u(PField::M)).map(|m| m.id),
                    // runqhead/runqtail are uint32 counters that wrap: their difference is the size.
                    runqsize: u64::from(
                        (u(PField::Runqtail) as u32).wrapping_sub(u(PField::Runqhead) as u32),
                    ),
                    gfreecnt: i(PField::Gfreecnt),
                    timerslen: u(PField::TimersLen),
                });
            }
            if !failed {
                return Ok(out);
            }
        }
        Err(GoError::Inconsistent { what: "allp", detail: "a P could not be read".into() })
    }
}

/// What a runtime read needs from /proc besides the target's memory (kept apart so that the fuzz
/// harness can give its own).
pub(super) trait ProcView {
    /// The process's thread ids as its pid namespace and /proc know them.
    fn tids(&self) -> Result<TidMap, GoError>;
    /// The fdinfo text of the runtime's epoll fd (empty before the netpoller starts).
    fn epoll_fdinfo(&self, epfd: i32) -> Result<String, GoError>;
}

/// The live process's /proc.
struct LiveProc {
    pid: u32,
}

impl ProcView for LiveProc {
    fn tids(&self) -> Result<TidMap, GoError> {
        TidMap::read(self.pid).map_err(|e| match e {
            ProcError::PermissionDenied { .. } => GoError::NotPermitted { pid: self.pid },
            ProcError::NoSuchProcess(_) | ProcError::Exited(_) => GoError::Exited(self.pid),
            other => GoError::Binary { path: format!("/proc/{}/task", self.pid), reason: other.to_string() },
        })
    }

    fn epoll_fdinfo(&self, epfd: i32) -> Result<String, GoError> {
        netpoll::read_epoll_fdinfo(self.pid, epfd)
    }
}

/// The frame-pointer walk of one goroutine over `stack`, its stack bytes from `sp` up: the
/// saved pc, then each return address. Every link must stay inside the bytes read and move
/// strictly upward, so the walk ends (at most MAX_FRAMES frames) whatever the stack holds.
fn frame_walk(pc: u64, sp: u64, bp: u64, stack: &[u8]) -> Vec<u64> {
    let mut pcs = vec![pc];
    let word = |addr: u64| -> Option<u64> {
        let off = addr.checked_sub(sp)?;
        (off.checked_add(8)? <= stack.len() as u64).then(|| uint_at(stack, off, 8))
    };
    let mut bp = bp;
    while pcs.len() < MAX_FRAMES && bp >= sp && bp.is_multiple_of(8) {
        let (Some(next_bp), Some(ret)) = (word(bp), bp.checked_add(8).and_then(word)) else { break };
        if ret == 0 {
            break;
        }
        pcs.push(ret);
        if next_bp <= bp {
            break;
        }
        bp = next_bp;
    }
    pcs
}

/// Refuses a layout whose struct sizes or fields are implausible (a hostile DWARF can state
/// anything): each struct read in one piece at most MAX_STRUCT_SIZE, each field inside its
/// struct and at most MAX_FIELD_SIZE wide.
fn check_layout_bounds(binary: &GoBinary) -> Result<(), GoError> {
    let l = &binary.layout;
    let bad = |what: String| GoError::UnknownLayout {
        version: binary.buildinfo.version.clone(),
        missing: format!("plausible {what}"),
    };
    for s in GoStruct::ALL {
        let size = l.size(s);
        if size > MAX_STRUCT_SIZE {
            return Err(bad(format!("sizeof({}) (states {size})", s.name())));
        }
    }
    for (spec, f) in l.all_fields() {
        let inside = f.offset.checked_add(f.size).is_some_and(|end| end <= l.size(spec.strukt));
        if f.size > MAX_FIELD_SIZE || !inside {
            return Err(bad(format!("{} (offset {}, size {})", spec.key, f.offset, f.size)));
        }
    }
    Ok(())
}

/// The slide of a position-independent executable: where its first loadable segment landed.
fn exe_slide(pid: u32, path: &str, binary: &GoBinary) -> Result<u64, GoError> {
    let maps = maps::read_maps(pid).map_err(|e| GoError::from_stack(pid, e))?;
    let lowest = maps
        .iter()
        .filter(|m| m.path == path || m.path.strip_suffix(" (deleted)") == Some(path))
        .filter(|m| m.offset == 0)
        .map(|m| m.range.start)
        .min()
        .ok_or_else(|| GoError::Binary {
            path: path.to_owned(),
            reason: "not found in the process's mappings".into(),
        })?;
    Ok(lowest.wrapping_sub(binary.first_load_vaddr & !0xfff))
}
