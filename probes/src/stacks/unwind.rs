//! User-stack unwinding of a live thread from (pc, sp, optional bp): DWARF CFI through framehop
//! first, or for Go code the pclntab's SP-delta tables as Go's own unwinder uses them (first
//! when the build has no CFI for Go code, `-w`), then only frame-pointer steps whose every link
//! can be checked against the target's memory map and code. Nothing here guesses: a frame that
//! cannot be verified ends the stack.

use std::ops::Range;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder};

use super::StackError;
use super::maps::{AddressSpace, Mapping};
use super::memory::{PageCache, RemoteMemory, StackReader};
use super::objects::{self, FunctionStarts, ObjectPlacement, SectionData};
use crate::go::GoExecutable;

/// How far above sp a frame record of the current function is searched for when bp is unknown.
/// Frames bigger than this (huge local arrays) are not recovered; the stack just ends there.
const FRAME_RECORD_SEARCH: u64 = 64 << 10;

/// Code pages kept across unwinds for call-site checks; dropped wholesale beyond this many.
const CODE_CACHE_PAGES: usize = 1024;

/// Unwinds user stacks of one process. Keeps the parsed memory map and, per object, the unwind
/// sections loaded on first use, so repeated unwinds of the same process stay cheap: objects
/// survive map changes that leave them in place, so an unwinder kept across views parses each
/// object's CFI once. Its memory is bounded by the target's own mappings (one slot per mapped
/// object, dropped when the object goes away) and `CODE_CACHE_PAGES`.
pub struct UserUnwinder {
    pid: u32,
    mem: RemoteMemory,
    space: Arc<AddressSpace>,
    /// The map was handed in for a view ([`UserUnwinder::use_space`]): it was read after the
    /// view's thread list, so every listed thread's stack and every library it runs is in it,
    /// and a miss re-reads the map at most once per view, not once per thread (which was
    /// threads x mappings again).
    view_space: bool,
    /// A re-read already happened since the last [`UserUnwinder::use_space`].
    refreshed_in_view: bool,
    /// Executable objects, sorted by span start; loaded lazily.
    objects: Vec<ObjectSlot>,
    unwinder: UnwinderX86_64<SectionData>,
    cache: CacheX86_64,
    /// Code bytes for checking that a return address follows a call. Code is immutable for
    /// the life of a mapping, so this survives across unwinds (cleared when the map changes).
    code: PageCache,
}

struct ObjectSlot {
    name: String,
    exec_span: Range<u64>,
    exec_mapping: Mapping,
    /// The vDSO exists only in memory; everything else is read from its file.
    in_memory: bool,
    state: SlotState,
}

enum SlotState {
    Unloaded,
    Loaded {
        base_avma: u64,
        function_starts: FunctionStarts,
        plt_svma: Vec<Range<u64>>,
        /// A Go executable's pclntab, parsed once per object like its CFI.
        go: Option<Box<GoExecutable>>,
        go_has_cfi: bool,
    },
    /// Load failed once; not retried until the map changes, so a broken file costs one attempt.
    Failed,
}

/// Per-walk state: registers, the frame being unwound, and whether rbp is the real value.
#[derive(Clone, Copy)]
struct Cursor {
    regs: UnwindRegsX86_64,
    address: FrameAddress,
    /// False while rbp is our placeholder 0 (bp not supplied and not yet restored by any CFI
    /// rule). Frame-pointer steps are only allowed with a known rbp.
    bp_known: bool,
}

impl UserUnwinder {
    /// Reads /proc/PID/maps and opens the process memory. Objects are loaded on first use.
    pub fn new(pid: u32) -> Result<Self, StackError> {
        let space = AddressSpace::read(pid)?;
        let mut this = Self::open(pid)?;
        this.install_maps(Arc::new(space));
        Ok(this)
    }

    /// An unwinder for the process whose map `space` is, sharing that reading of the map.
    pub fn with_space(space: Arc<AddressSpace>) -> Result<Self, StackError> {
        let mut this = Self::open(space.pid())?;
        this.use_space(space);
        Ok(this)
    }

    fn open(pid: u32) -> Result<Self, StackError> {
        Ok(Self {
            pid,
            mem: RemoteMemory::open(pid)?,
            space: Arc::new(AddressSpace::from_parts(pid, Vec::new())),
            view_space: false,
            refreshed_in_view: false,
            objects: Vec::new(),
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            code: PageCache::default(),
        })
    }

    /// Starts a view: unwinds use `space` (read once for the view, after its thread list) and
    /// re-read the map at most once until the next call. Objects already loaded and still
    /// mapped where they were are kept. `space` must be of this unwinder's process.
    pub fn use_space(&mut self, space: Arc<AddressSpace>) {
        debug_assert_eq!(space.pid(), self.pid);
        self.install_maps(space);
        self.view_space = true;
        self.refreshed_in_view = false;
    }

    /// The map unwinds currently use (the view's, or a re-read of it after a miss): symbolise
    /// the addresses they return against this one.
    pub fn space(&self) -> &Arc<AddressSpace> {
        &self.space
    }

    /// Return addresses, innermost first (first element = pc), at most `max_frames`.
    ///
    /// Never fails: a stack that cannot be unwound further simply ends, so the caller always
    /// gets at least the pc it passed (which is ground truth from the kernel).
    pub fn unwind(&mut self, pc: u64, sp: u64, bp: Option<u64>, max_frames: usize) -> Vec<u64> {
        let mut frames = Vec::new();
        if max_frames == 0 {
            return frames;
        }
        frames.push(pc);
        if self.code.len() > CODE_CACHE_PAGES {
            self.code.clear();
        }

        let mut refreshed = false;
        let stack = match self.stack_bounds(sp) {
            Some(b) => b,
            None => {
                // A thread created after we read the map has a stack we do not know yet.
                refreshed = true;
                self.refresh_maps();
                match self.stack_bounds(sp) {
                    Some(b) => b,
                    None => return frames,
                }
            }
        };
        if !refreshed && !self.is_executable(pc) {
            refreshed = true;
            self.refresh_maps();
        }
        let mut walk = Walk { stack: StackReader::new(stack), refreshed };
        let mut cur = Cursor {
            // With bp unknown we start from 0: a CFI rule that needs rbp then fails or ends
            // instead of producing a frame from a made-up value.
            regs: UnwindRegsX86_64::new(pc, sp, bp.unwrap_or(0)),
            address: FrameAddress::from_instruction_pointer(pc),
            bp_known: bp.is_some(),
        };

        while frames.len() < max_frames {
            match self.step(&mut walk, &mut cur) {
                Some(ra) => frames.push(ra),
                None => break,
            }
        }
        frames
    }

    /// Unwinds one frame; returns the caller's return address and advances the cursor.
    fn step(&mut self, walk: &mut Walk, cur: &mut Cursor) -> Option<u64> {
        let lookup = cur.address.address_for_lookup();
        self.ensure_loaded(lookup);

        // Go code without CFI: the pclntab is the only exact description of its frames, and
        // framehop's guess for a pc it has no rule for must not be tried first.
        let go = self.go_frame(lookup);
        if let Some((frame, false)) = go {
            match self.go_step(walk, cur, frame) {
                GoStep::Caller(ra) => return Some(ra),
                GoStep::End => return None,
                GoStep::Unknown => {}
            }
        }

        let mut regs = cur.regs;
        let result = self.cfi_step(walk, cur.address, &mut regs);
        let cfi_ended = match result {
            Ok(Some(ra)) if self.plausible_cfi_caller(walk, &cur.regs, &regs, ra) => {
                // A CFI rule that changed rbp restored it from the stack: from here on it is real.
                let bp_known = cur.bp_known || regs.bp() != cur.regs.bp();
                *cur = Cursor { regs, address: FrameAddress::from_return_address(ra)?, bp_known };
                return Some(ra);
            }
            Ok(Some(_)) | Err(_) => false,
            Ok(None) => true,
        };

        // Go code whose CFI did not lead anywhere: Go's own tables decide before any
        // frame-pointer heuristics.
        if let Some((frame, true)) = go {
            match self.go_step(walk, cur, frame) {
                GoStep::Caller(ra) => return Some(ra),
                GoStep::End => return None,
                GoStep::Unknown => {}
            }
        }

        if cur.bp_known {
            // "End of stack" with a real rbp is the real end (CFI said so, or rbp is 0).
            if cfi_ended {
                return None;
            }
            return self.frame_pointer_step(walk, cur);
        }
        // bp is unknown. An end reported only because our placeholder rbp is 0 is not a real
        // end; find out whether this frame's rule depends on rbp at all before recovering.
        if cfi_ended && !self.rule_uses_bp(walk, cur) {
            return None;
        }
        self.recover_frame_record(walk, cur)
    }

    fn cfi_step(
        &mut self,
        walk: &mut Walk,
        address: FrameAddress,
        regs: &mut UnwindRegsX86_64,
    ) -> Result<Option<u64>, framehop::Error> {
        let mem = &self.mem;
        let stack = &mut walk.stack;
        let mut read = |addr: u64| stack.read_u64(mem, addr).ok_or(());
        self.unwinder.unwind_frame(address, regs, &mut self.cache, &mut read)
    }

    /// What the pclntab says of the frame at `lookup` (an instruction, or a return address
    /// minus one, so a call at the end of a function stays in it), with whether the object's Go
    /// code also has CFI. `None` outside Go code.
    fn go_frame(&self, lookup: u64) -> Option<(GoFrameStep, bool)> {
        let SlotState::Loaded { base_avma, go: Some(exe), go_has_cfi, .. } =
            &self.objects[self.slot_for(lookup)?].state
        else {
            return None;
        };
        let frame = exe.pclntab.frame_at(lookup.wrapping_sub(*base_avma))?;
        let step = GoFrameStep {
            sp_delta: frame.sp_delta,
            // Where Go's unwinder stops: the first frame of a stack (goexit, mstart, rt0_go),
            // and functions that switch stacks or write SP (systemstack, mcall, morestack,
            // gogo, asmcgocall), past which the SP delta means nothing.
            stop: frame.top_frame || frame.sp_write,
        };
        Some((step, *go_has_cfi))
    }

    /// One step over a Go frame by its SP delta at the pc, as Go's unwinder does: the return
    /// address is at sp + delta and the caller's sp is 8 above it. Accepted only with the same
    /// checks as any other step: the return address in code right after a call, the new sp
    /// inside the thread's stack and above the old one. A frame the tables describe but the
    /// checks reject ends the stack (nothing else knows Go frames better); one without a table
    /// is left to the other rules.
    fn go_step(&mut self, walk: &mut Walk, cur: &mut Cursor, frame: GoFrameStep) -> GoStep {
        if frame.stop {
            return GoStep::End;
        }
        let Some(delta) = frame.sp_delta.and_then(|d| u64::try_from(d).ok()) else {
            return GoStep::Unknown;
        };
        if !delta.is_multiple_of(8) {
            return GoStep::Unknown;
        }
        let sp = cur.regs.sp();
        let stack_end = walk.stack.bounds().end;
        let Some(ra_slot) = sp.checked_add(delta).filter(|&slot| slot <= stack_end.saturating_sub(8)) else {
            return GoStep::End;
        };
        let Some(ra) = walk.stack.read_u64(&self.mem, ra_slot) else {
            return GoStep::End;
        };
        if !self.is_executable_refreshing(walk, ra)
            || (self.call_site(ra).is_none() && !self.is_go_stack_top_return(ra))
        {
            return GoStep::End;
        }
        // rbp: a frame without stack space cannot have saved it, so the caller's is the same;
        // a frame whose rbp points at the slot under its return address saved the caller's
        // there (Go's frame record). Otherwise it is not known from here.
        let bp = cur.regs.bp();
        let (new_bp, bp_known) = if delta == 0 {
            (bp, cur.bp_known)
        } else if cur.bp_known && bp == ra_slot - 8 {
            match walk.stack.read_u64(&self.mem, bp) {
                Some(saved) if saved == 0 || saved > ra_slot => (saved, true),
                _ => (0, false),
            }
        } else {
            (0, false)
        };
        match self.advance(cur, ra, ra_slot + 8, new_bp) {
            Some(ra) => {
                cur.bp_known = bp_known;
                GoStep::Caller(ra)
            }
            None => GoStep::End,
        }
    }

    /// The return address Go plants at the top of every goroutine stack: one byte past the
    /// entry of `runtime.goexit` (a top-frame function whose first instruction is a one-byte
    /// NOP), so a goroutine's first function "returns" into goexit without any call before it.
    fn is_go_stack_top_return(&self, ra: u64) -> bool {
        let Some(slot) = self.slot_for(ra) else { return false };
        let SlotState::Loaded { base_avma, go: Some(exe), .. } = &self.objects[slot].state else {
            return false;
        };
        let svma = ra.wrapping_sub(*base_avma);
        exe.pclntab
            .frame_at(svma.wrapping_sub(1))
            .is_some_and(|f| f.top_frame && f.entry.checked_add(1) == Some(svma))
    }

    /// Re-runs the frame's rule with rbp set to sp (a readable stack address): a rule that
    /// ignores rbp ends again, one that needs rbp now reads memory and yields something else.
    fn rule_uses_bp(&mut self, walk: &mut Walk, cur: &Cursor) -> bool {
        let mut probe = cur.regs;
        probe.set_bp(cur.regs.sp());
        !matches!(self.cfi_step(walk, cur.address, &mut probe), Ok(None))
    }

    /// Accepts a CFI-derived caller only if it is in code and the stack moved up within the
    /// thread's stack; CFI is exact when it applies, so this only filters out corrupt stacks.
    fn plausible_cfi_caller(
        &mut self,
        walk: &mut Walk,
        old: &UnwindRegsX86_64,
        new: &UnwindRegsX86_64,
        ra: u64,
    ) -> bool {
        let stack = walk.stack.bounds();
        new.sp() > old.sp() && new.sp() <= stack.end && self.is_executable_refreshing(walk, ra)
    }

    /// One frame-pointer step from a known rbp, after CFI could not unwind this frame (no FDE,
    /// unreadable rule). Accepted only if the chain is plausible: rbp inside the stack at or
    /// above sp, the saved rbp strictly higher (or 0 at the root), and the return address in
    /// code right after a call instruction.
    fn frame_pointer_step(&mut self, walk: &mut Walk, cur: &mut Cursor) -> Option<u64> {
        let bp = cur.regs.bp();
        let sp = cur.regs.sp();
        if bp < sp || !bp.is_multiple_of(8) {
            return None;
        }
        let saved_bp = walk.stack.read_u64(&self.mem, bp)?;
        let ra = walk.stack.read_u64(&self.mem, bp.checked_add(8)?)?;
        if saved_bp != 0 && saved_bp <= bp {
            return None;
        }
        if !self.is_executable_refreshing(walk, ra) || self.call_site(ra).is_none() {
            return None;
        }
        self.advance(cur, ra, bp + 16, saved_bp)
    }

    /// bp is unknown and this frame's CFI computes the CFA from rbp, so rbp still holds this
    /// frame's own frame-record address (no inner frame saved or changed it, or CFI would have
    /// told us). Look for that record above sp, and accept it only if the call instruction
    /// before its return address provably targets the function we are in: a direct call to its
    /// start, or a call through a GOT slot or PLT stub whose GOT entry holds that start. Stale
    /// records and pointers that merely look like code addresses fail that test.
    fn recover_frame_record(&mut self, walk: &mut Walk, cur: &mut Cursor) -> Option<u64> {
        let callee = self.function_start(cur.address.address_for_lookup())?;
        let sp = cur.regs.sp();
        let stack = walk.stack.bounds();
        let limit = stack.end.min(sp.saturating_add(FRAME_RECORD_SEARCH)).checked_sub(16)?;
        let mut x = sp.next_multiple_of(8);
        while x <= limit {
            if let Some((ra, saved_bp)) = self.frame_record_at(walk, x, callee) {
                cur.bp_known = true;
                return self.advance(cur, ra, x + 16, saved_bp);
            }
            x += 8;
        }
        None
    }

    fn frame_record_at(&mut self, walk: &mut Walk, x: u64, callee: u64) -> Option<(u64, u64)> {
        let ra = walk.stack.read_u64(&self.mem, x + 8)?;
        if !self.is_executable(ra) {
            return None;
        }
        let saved_bp = walk.stack.read_u64(&self.mem, x)?;
        let end = walk.stack.bounds().end;
        if saved_bp != 0 && (saved_bp <= x || saved_bp >= end) {
            return None;
        }
        (self.call_target(ra)? == callee).then_some((ra, saved_bp))
    }

    fn advance(&mut self, cur: &mut Cursor, ra: u64, new_sp: u64, new_bp: u64) -> Option<u64> {
        let mut regs = cur.regs;
        regs.set_ip(ra);
        regs.set_sp(new_sp);
        regs.set_bp(new_bp);
        cur.regs = regs;
        cur.address = FrameAddress::from_return_address(ra)?;
        Some(ra)
    }

    /// The call instruction that ends right before `ra`, if there is one.
    fn call_site(&mut self, ra: u64) -> Option<CallSite> {
        let mut bytes = [0u8; 7];
        let start = ra.checked_sub(7)?;
        self.code.read(&self.mem, start, &mut bytes)?;
        decode_call_before(&bytes, ra)
    }

    /// Where the call before `ra` goes, following one GOT or PLT indirection, in absolute
    /// addresses. `None` when it cannot be determined exactly (register-indirect calls).
    fn call_target(&mut self, ra: u64) -> Option<u64> {
        match self.call_site(ra)? {
            CallSite::Direct(target) => {
                if self.is_plt(target) {
                    let slot = self.plt_got_slot(target)?;
                    self.read_live_u64(slot)
                } else {
                    Some(target)
                }
            }
            CallSite::RipIndirect(slot) => self.read_live_u64(slot),
            CallSite::Other => None,
        }
    }

    /// GOT entries can change (lazy binding), so they are read fresh, never from the cache.
    fn read_live_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.mem.read_exact(addr, &mut b).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// Decodes a PLT stub's `jmp *disp32(%rip)` (after optional endbr64 and bnd prefix) and
    /// returns the GOT slot it jumps through.
    fn plt_got_slot(&mut self, stub: u64) -> Option<u64> {
        let mut b = [0u8; 16];
        self.code.read(&self.mem, stub, &mut b)?;
        let mut i = 0;
        if b[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
            i += 4; // endbr64
        }
        if b[i] == 0xf2 {
            i += 1; // bnd
        }
        if b[i] != 0xff || b[i + 1] != 0x25 {
            return None;
        }
        let disp = i32::from_le_bytes(b[i + 2..i + 6].try_into().ok()?);
        let next = stub + (i as u64) + 6;
        Some(next.wrapping_add_signed(i64::from(disp)))
    }

    fn is_plt(&self, addr: u64) -> bool {
        match self.slot_for(addr).map(|i| &self.objects[i].state) {
            Some(SlotState::Loaded { base_avma, plt_svma, .. }) => {
                let svma = addr.wrapping_sub(*base_avma);
                plt_svma.iter().any(|r| r.contains(&svma))
            }
            _ => false,
        }
    }

    fn function_start(&self, addr: u64) -> Option<u64> {
        match &self.objects[self.slot_for(addr)?].state {
            SlotState::Loaded { base_avma, function_starts, .. } => function_starts
                .function_start(addr.wrapping_sub(*base_avma))
                .map(|s| s.wrapping_add(*base_avma)),
            _ => None,
        }
    }

    fn stack_bounds(&self, sp: u64) -> Option<Range<u64>> {
        let m = self.space.find(sp)?;
        (m.readable && m.writable).then(|| m.range.clone())
    }

    fn is_executable(&self, addr: u64) -> bool {
        self.space.find(addr).is_some_and(|m| m.executable)
    }

    /// Like `is_executable`, but a miss re-reads the map once per walk: a library loaded after
    /// `new()` (dlopen) is legitimately absent from our copy.
    fn is_executable_refreshing(&mut self, walk: &mut Walk, addr: u64) -> bool {
        if self.is_executable(addr) {
            return true;
        }
        if walk.refreshed {
            return false;
        }
        walk.refreshed = true;
        self.refresh_maps();
        self.is_executable(addr)
    }

    fn slot_for(&self, addr: u64) -> Option<usize> {
        let idx = self.objects.partition_point(|o| o.exec_span.start <= addr).checked_sub(1)?;
        self.objects[idx].exec_span.contains(&addr).then_some(idx)
    }

    /// Loads the unwind information of the object containing `addr` on first use.
    fn ensure_loaded(&mut self, addr: u64) {
        let Some(idx) = self.slot_for(addr) else {
            return;
        };
        let slot = &self.objects[idx];
        if !matches!(slot.state, SlotState::Unloaded) {
            return;
        }
        let placement = ObjectPlacement {
            name: &slot.name,
            exec_span: slot.exec_span.clone(),
            exec_mapping: &slot.exec_mapping,
        };
        let loaded = if slot.in_memory {
            objects::load_from_memory(&self.mem, &placement)
        } else {
            objects::load_file(self.pid, &placement)
        };
        let state = match loaded {
            Ok(obj) => {
                self.unwinder.add_module(obj.module);
                SlotState::Loaded {
                    base_avma: obj.base_avma,
                    function_starts: obj.function_starts,
                    plt_svma: obj.plt_svma,
                    go: obj.go.map(Box::new),
                    go_has_cfi: obj.go_has_cfi,
                }
            }
            Err(e) => {
                tracing::debug!(pid = self.pid, error = %e, "no unwind info for object; frame-pointer rules only");
                SlotState::Failed
            }
        };
        self.objects[idx].state = state;
    }

    fn refresh_maps(&mut self) {
        if self.view_space {
            if self.refreshed_in_view {
                return;
            }
            self.refreshed_in_view = true;
        }
        match AddressSpace::read(self.pid) {
            Ok(space) => self.install_maps(Arc::new(space)),
            Err(e) => tracing::debug!(pid = self.pid, error = %e, "could not re-read memory map"),
        }
    }

    /// Replaces the map, keeping already-loaded objects whose placement did not change and
    /// dropping framehop modules of objects that went away or moved.
    fn install_maps(&mut self, space: Arc<AddressSpace>) {
        if Arc::ptr_eq(&space, &self.space) {
            return;
        }
        let mut old: Vec<ObjectSlot> = std::mem::take(&mut self.objects);
        let mut fresh = group_objects(space.mappings());
        for slot in &mut fresh {
            if let Some(pos) =
                old.iter().position(|o| o.exec_span == slot.exec_span && o.exec_mapping == slot.exec_mapping)
            {
                slot.state = old.swap_remove(pos).state;
            }
        }
        for gone in old {
            if matches!(gone.state, SlotState::Loaded { .. }) {
                self.unwinder.remove_module(gone.exec_span.start);
            }
        }
        // Code pages stay valid while the executable mappings stay; thread stacks coming and
        // going (most of the map of a many-threaded process) do not touch them.
        let executable = |s: &AddressSpace| -> Vec<Mapping> {
            s.mappings().iter().filter(|m| m.executable).cloned().collect()
        };
        if !self.space.is_empty() && executable(&self.space) != executable(&space) {
            self.code.clear();
        }
        self.objects = fresh;
        self.space = space;
    }
}

/// What a step over a Go frame needs from the pclntab, copied out of it.
#[derive(Clone, Copy)]
struct GoFrameStep {
    sp_delta: Option<i32>,
    /// The walk ends at this frame (Go's unwinder would stop here too).
    stop: bool,
}

/// The outcome of stepping over a Go frame.
enum GoStep {
    Caller(u64),
    /// The tables say the stack ends here, or describe a step the checks reject.
    End,
    /// No table covers this pc: other rules may try.
    Unknown,
}

/// Per-unwind scratch: the thread's stack reader and whether the map was already re-read.
struct Walk {
    stack: StackReader,
    refreshed: bool,
}

/// Groups executable mappings into objects: all executable mappings of one file (same device
/// and inode) form one span, and the vDSO is an object read from memory. Anonymous executable
/// memory (JIT code) has no unwind info and gets no object.
fn group_objects(maps: &[Mapping]) -> Vec<ObjectSlot> {
    let mut slots: Vec<ObjectSlot> = Vec::new();
    for m in maps.iter().filter(|m| m.executable) {
        let in_memory = m.path == "[vdso]";
        if !in_memory && !m.is_file() {
            continue;
        }
        let same_file = |o: &ObjectSlot| {
            !in_memory && !o.in_memory && o.exec_mapping.dev == m.dev && o.exec_mapping.inode == m.inode
        };
        match slots.iter_mut().find(|o| same_file(o)) {
            Some(o) => {
                o.exec_span.start = o.exec_span.start.min(m.range.start);
                o.exec_span.end = o.exec_span.end.max(m.range.end);
            }
            None => slots.push(ObjectSlot {
                name: m.path.clone(),
                exec_span: m.range.clone(),
                exec_mapping: m.clone(),
                in_memory,
                state: SlotState::Unloaded,
            }),
        }
    }
    slots.sort_by_key(|o| o.exec_span.start);
    slots
}

/// A call instruction that ends at a return address.
#[derive(Debug, PartialEq, Eq)]
enum CallSite {
    /// `call rel32`, with its absolute target.
    Direct(u64),
    /// `call *disp32(%rip)`, with the absolute address of the pointer it loads.
    RipIndirect(u64),
    /// Another `call r/m64` form (register or memory through a register): target unknown.
    Other,
}

/// Recognises the call instruction whose last byte is right before `ra`, given the 7 bytes
/// preceding it. x86 cannot be decoded backwards in general, so this only accepts encodings
/// whose length is implied by their own ModRM byte: `e8 rel32` and `ff /2`.
fn decode_call_before(bytes: &[u8; 7], ra: u64) -> Option<CallSite> {
    if bytes[2] == 0xe8 {
        let rel = i32::from_le_bytes(bytes[3..7].try_into().ok()?);
        return Some(CallSite::Direct(ra.wrapping_add_signed(i64::from(rel))));
    }
    // ff /2 is 2..=7 bytes long (opcode, ModRM, optional SIB, disp8/disp32).
    for len in 2..=7usize {
        let at = 7 - len;
        if bytes[at] != 0xff {
            continue;
        }
        let modrm = bytes[at + 1];
        if (modrm >> 3) & 7 != 2 || ff_rm_length(modrm, bytes.get(at + 2).copied()) != Some(len) {
            continue;
        }
        if modrm == 0x15 {
            let disp = i32::from_le_bytes(bytes[at + 2..at + 6].try_into().ok()?);
            return Some(CallSite::RipIndirect(ra.wrapping_add_signed(i64::from(disp))));
        }
        return Some(CallSite::Other);
    }
    None
}

/// Length of an `ff /r` instruction from its ModRM (and SIB) byte.
fn ff_rm_length(modrm: u8, sib: Option<u8>) -> Option<usize> {
    let md = modrm >> 6;
    let rm = modrm & 7;
    let has_sib = md != 3 && rm == 4;
    let sib_base_is_disp32 = has_sib && md == 0 && sib? & 7 == 5;
    let disp = match md {
        0 if rm == 5 => 4, // rip-relative
        0 if sib_base_is_disp32 => 4,
        0 | 3 => 0,
        1 => 1,
        _ => 4,
    };
    Some(2 + usize::from(has_sib) + disp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(code: &[u8]) -> [u8; 7] {
        let mut b = [0x90u8; 7];
        b[7 - code.len()..].copy_from_slice(code);
        b
    }

    #[test]
    fn decodes_direct_call() {
        // call rel32 = -0x100 from ra 0x2000
        let b = before(&[0xe8, 0x00, 0xff, 0xff, 0xff]);
        assert_eq!(decode_call_before(&b, 0x2000), Some(CallSite::Direct(0x1f00)));
    }

    #[test]
    fn decodes_rip_indirect_call() {
        // call *0x10(%rip)
        let b = before(&[0xff, 0x15, 0x10, 0, 0, 0]);
        assert_eq!(decode_call_before(&b, 0x2000), Some(CallSite::RipIndirect(0x2010)));
    }

    #[test]
    fn decodes_register_and_memory_calls() {
        assert_eq!(decode_call_before(&before(&[0xff, 0xd0]), 0x10), Some(CallSite::Other)); // call *%rax
        assert_eq!(decode_call_before(&before(&[0x41, 0xff, 0xd3]), 0x10), Some(CallSite::Other)); // call *%r11
        assert_eq!(decode_call_before(&before(&[0xff, 0x50, 0x08]), 0x10), Some(CallSite::Other)); // call *8(%rax)
        assert_eq!(decode_call_before(&before(&[0xff, 0x54, 0x24, 0x08]), 0x10), Some(CallSite::Other)); // call *8(%rsp)
    }

    #[test]
    fn rejects_non_calls() {
        assert_eq!(decode_call_before(&[0x90; 7], 0x10), None);
        // mov %rsp,%rbp; pop %rbp; ret — no call ends here
        assert_eq!(decode_call_before(&before(&[0x48, 0x89, 0xe5, 0x5d, 0xc3]), 0x10), None);
    }

    #[test]
    fn groups_mappings_of_one_file() {
        let text = "\
1000-2000 r--p 00000000 fe:01 7 /bin/x
2000-3000 r-xp 00001000 fe:01 7 /bin/x
3000-4000 r-xp 00002000 fe:01 7 /bin/x
5000-6000 r-xp 00000000 fe:01 8 /lib/y
7000-8000 rwxp 00000000 00:00 0
9000-a000 r-xp 00000000 00:00 0 [vdso]
";
        let maps = super::super::maps::parse_maps(text).unwrap();
        let slots = group_objects(&maps);
        let spans: Vec<_> =
            slots.iter().map(|s| (s.name.as_str(), s.exec_span.clone(), s.in_memory)).collect();
        assert_eq!(
            spans,
            vec![
                ("/bin/x", 0x2000..0x4000, false),
                ("/lib/y", 0x5000..0x6000, false),
                ("[vdso]", 0x9000..0xa000, true)
            ]
        );
    }
}
