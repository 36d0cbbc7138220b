//! Which tokio tasks are parked on which fd, read from the target's memory without stopping it.
//!
//! tokio registers every socket and pipe it drives with its epoll instance, and the 64-bit
//! `epoll_data` word of each registration is the address of that fd's `ScheduledIo` (the
//! reactor of tokio 1.30 and later; the kernel lists each registration in the epoll fd's
//! fdinfo). A task
//! waiting for the fd leaves its waker there: in the `reader` or `writer` slot (AsyncRead /
//! AsyncWrite polls), or in a waiter node of the `ScheduledIo`'s wait list (`readiness()`
//! futures: `accept`, `recv_from`, `readable`, ...). A tokio task's waker is
//! `(&WAKER_VTABLE, task header)`; the header's vtable says at which offset the task id is.
//!
//! The struct layouts read here are not in a release binary (no DWARF). They are fixed to what
//! tokio's sources and rustc give on x86-64 (verified on tokio 1.47.1 and 1.54.1) and every
//! read is checked against them: the `ScheduledIo` words must look like one (aligned list
//! pointers, an unlocked-or-locked mutex, a well-formed wait list ending at its tail), a waker
//! must point at a vtable inside the executable, a task vtable must be seven code pointers and
//! three in-order offsets. What fails a check is counted (`unrecognized`), never reported.
//! Everything is bounded: registrations, nodes per list, bytes per read.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use crate::memory::TargetMemory;
use crate::procfs::fds::EpollRegistration;
use crate::procfs::maps::AddressSpace;

use super::TokioBinary;

/// x86-64's `repr(align(128))` of `ScheduledIo`: a token that is not so aligned is not one.
const SCHEDULED_IO_ALIGN: u64 = 128;
/// Bytes of a `ScheduledIo` read: registration-list pointers (0, 8), readiness (16), the
/// mutex word (24), the wait list's head and tail (32, 40), the reader (48) and writer (64)
/// waker slots, 16 bytes each.
const SCHEDULED_IO_BYTES: usize = 80;
const LIST_HEAD: usize = 4;
const LIST_TAIL: usize = 5;
const READER_SLOT: usize = 6;
const WRITER_SLOT: usize = 8;
/// A wait-list node (`Waiter`): prev (0), next (8), waker (16, 24), interest (32).
const NODE_BYTES: usize = 40;
const NODE_NEXT: usize = 1;
const NODE_WAKER: usize = 2;
const NODE_INTEREST: usize = 4;
/// Most nodes followed in one wait list.
const MAX_NODES_PER_LIST: usize = 256;
/// Most nodes followed in one read, all lists together (a target whose lists are all long
/// costs a bounded number of reads; the rest are counted unrecognized).
const MAX_NODES_PER_READ: usize = 100_000;
/// Most registrations read in one pass.
pub const MAX_REGISTRATIONS: usize = 100_000;
/// A task header's first four words: state, queue_next, vtable, owner_id.
const HEADER_BYTES: usize = 32;
/// A task vtable: seven functions, then trailer, scheduler and id offsets.
const TASK_VTABLE_WORDS: usize = 10;
/// Offsets inside a task's cell are small; anything larger is not one.
const MAX_CELL_OFFSET: u64 = 1 << 20;
/// tokio's task state bits (runtime/task/state.rs): a task with none of them set is idle,
/// waiting to be woken.
const RUNNING: u64 = 0b001;
const COMPLETE: u64 = 0b010;
const NOTIFIED: u64 = 0b100;
/// tokio's `Interest` bits (io/interest.rs).
const READABLE: u64 = 0b0001;
const WRITABLE: u64 = 0b0010;

/// Which readiness a waiter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoInterest {
    Read,
    Write,
    ReadWrite,
}

/// Whose waker a registration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoWaiter {
    /// A tokio task, idle (neither running, scheduled nor complete) when read.
    Task(u64),
    /// The future the runtime's `block_on` runs (`#[tokio::main]`'s body): not a task.
    BlockOn,
    /// A waker of another kind (a combinator's, another executor's): its task is not known.
    Other,
}

/// One waiter found on one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoWait {
    pub fd: i32,
    pub interest: Option<IoInterest>,
    pub waiter: IoWaiter,
}

/// One pass over the target's tokio registrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoWaitRead {
    pub waits: Vec<IoWait>,
    /// Registrations whose token is a `ScheduledIo` address (tokio's), read.
    pub registrations: usize,
    /// Registrations (or their waiters) that failed a layout check, or changed while read.
    pub unrecognized: usize,
    /// Registrations left out by [`MAX_REGISTRATIONS`].
    pub capped: usize,
}

/// What a pass needs of the target that does not change while it runs (its executable's
/// mapping and the addresses of tokio's wakers there): found once per target, not per view.
pub struct IoWaitReader {
    pid: u32,
    image: ExeImage,
    task_vtable: u64,
    block_on_fns: HashSet<u64>,
}

impl IoWaitReader {
    /// Err: why nothing can be read (a stripped binary, no executable mapping, the process
    /// gone).
    pub fn new(pid: u32, binary: &TokioBinary) -> Result<IoWaitReader, String> {
        let task_vtable = binary
            .wakers
            .task_vtable
            .ok_or("the binary has no tokio::runtime::task::waker::WAKER_VTABLE symbol (stripped?)")?;
        let image = ExeImage::of(pid, binary.first_load_vaddr)?;
        let block_on_fns = binary.wakers.block_on_fns.iter().map(|a| a.wrapping_add(image.bias)).collect();
        Ok(IoWaitReader { pid, task_vtable: task_vtable.wrapping_add(image.bias), image, block_on_fns })
    }

    /// Reads which tasks wait on which of `registrations` (every epoll registration of the
    /// target; those whose `tfd` no longer names the registered file must be left out by the
    /// caller). Err: the process refused the read or is gone.
    pub fn read(&self, registrations: &[EpollRegistration]) -> Result<IoWaitRead, String> {
        let image = &self.image;
        let memory = TargetMemory::new(self.pid);

        let mut read = IoWaitRead::default();
        let tokens: Vec<&EpollRegistration> =
            registrations.iter().filter(|r| is_scheduled_io_token(r.data)).collect();
        read.capped = tokens.len().saturating_sub(MAX_REGISTRATIONS);
        let tokens = &tokens[..tokens.len().min(MAX_REGISTRATIONS)];
        read.registrations = tokens.len();

        // Every ScheduledIo in batches (one process_vm_readv per 1024).
        let mut bufs = vec![[0u8; SCHEDULED_IO_BYTES]; tokens.len()];
        let mut ok = vec![false; tokens.len()];
        {
            let mut reqs: Vec<(u64, &mut [u8])> =
                tokens.iter().zip(bufs.iter_mut()).map(|(r, b)| (r.data, &mut b[..])).collect();
            let which: Vec<usize> = (0..reqs.len()).collect();
            memory
                .read_ranges(&mut reqs, &which, &mut ok)
                .map_err(|e| format!("reading the target's memory: {e:?}"))?;
        }

        let mut wakers: Vec<(i32, Option<IoInterest>, u64, u64)> = Vec::new();
        let mut node_budget = MAX_NODES_PER_READ;
        for ((reg, buf), ok) in tokens.iter().zip(&bufs).zip(&ok) {
            let w = words::<{ SCHEDULED_IO_BYTES / 8 }>(buf);
            if !ok || !looks_like_scheduled_io(&w) {
                read.unrecognized += 1;
                continue;
            }
            for (slot, interest) in [(READER_SLOT, IoInterest::Read), (WRITER_SLOT, IoInterest::Write)] {
                if let Some((vtable, data)) = image.waker(w[slot], w[slot + 1]) {
                    wakers.push((reg.tfd, Some(interest), vtable, data));
                }
            }
            match walk_wait_list(&memory, image, w[LIST_HEAD], w[LIST_TAIL], &mut node_budget) {
                Some(nodes) => wakers.extend(nodes.into_iter().map(|(i, v, d)| (reg.tfd, i, v, d))),
                None => read.unrecognized += 1,
            }
        }

        let mut task_vtables: HashMap<u64, Option<u64>> = HashMap::new();
        let mut other_vtables: HashMap<u64, bool> = HashMap::new();
        let mut seen = HashSet::new();
        for (fd, interest, vtable, data) in wakers {
            let waiter = if vtable == self.task_vtable {
                match read_task(&memory, image, &mut task_vtables, data) {
                    TaskRead::Idle(id) => IoWaiter::Task(id),
                    TaskRead::Busy => continue,
                    TaskRead::Unrecognized => {
                        read.unrecognized += 1;
                        continue;
                    }
                }
            } else {
                let block_on = *other_vtables.entry(vtable).or_insert_with(|| {
                    let mut raw = [0u8; 32];
                    memory.read_exact(vtable, &mut raw).is_ok()
                        && words::<4>(&raw).iter().any(|f| self.block_on_fns.contains(f))
                });
                if block_on { IoWaiter::BlockOn } else { IoWaiter::Other }
            };
            let wait = IoWait { fd, interest, waiter };
            if seen.insert(wait) {
                read.waits.push(wait);
            }
        }
        read.waits.sort_by_key(|w| (w.fd, w.waiter_key()));
        Ok(read)
    }
}

/// Whether an epoll data word can be a `ScheduledIo` address: aligned like one and above the
/// lowest address a process can map (tokio's own tokens 0 and 1, and the fd numbers other
/// libraries store there, are not).
fn is_scheduled_io_token(data: u64) -> bool {
    const LOWEST_MAPPABLE: u64 = 0x10000;
    data >= LOWEST_MAPPABLE && data.is_multiple_of(SCHEDULED_IO_ALIGN)
}

impl IoWait {
    fn waiter_key(&self) -> (u8, u64) {
        match self.waiter {
            IoWaiter::Task(id) => (0, id),
            IoWaiter::BlockOn => (1, 0),
            IoWaiter::Other => (2, 0),
        }
    }
}

/// The target's executable as mapped: its load bias, and which ranges are its code and its
/// (read-only) data, where waker and task vtables live.
struct ExeImage {
    bias: u64,
    code: Vec<(u64, u64)>,
    all: Vec<(u64, u64)>,
}

impl ExeImage {
    fn of(pid: u32, first_load_vaddr: u64) -> Result<ExeImage, String> {
        let exe = std::fs::metadata(format!("/proc/{pid}/exe"))
            .map_err(|e| format!("the target's executable: {e}"))?;
        let space = AddressSpace::read(pid).map_err(|e| format!("reading the target's maps: {e}"))?;
        let mine: Vec<_> = space.mappings().iter().filter(|m| m.is_file() && m.inode == exe.ino()).collect();
        let base = mine
            .iter()
            .filter(|m| m.offset == 0)
            .map(|m| m.range.start)
            .min()
            .ok_or("the executable is not mapped in the target")?;
        Ok(ExeImage {
            bias: base.wrapping_sub(first_load_vaddr),
            code: mine.iter().filter(|m| m.executable).map(|m| (m.range.start, m.range.end)).collect(),
            all: mine.iter().filter(|m| m.readable).map(|m| (m.range.start, m.range.end)).collect(),
        })
    }

    fn is_code(&self, addr: u64) -> bool {
        self.code.iter().any(|(s, e)| (*s..*e).contains(&addr))
    }

    fn is_static(&self, addr: u64) -> bool {
        addr.is_multiple_of(8) && self.all.iter().any(|(s, e)| (*s..*e).contains(&addr))
    }

    /// A `Waker`'s two words in whichever order rustc laid them out: the vtable is the one
    /// inside the executable (a static), the data the other (a heap or stack address). None
    /// for an empty slot (`Option<Waker>::None` is a null vtable) or anything else.
    fn waker(&self, a: u64, b: u64) -> Option<(u64, u64)> {
        match (self.is_static(a), self.is_static(b)) {
            (true, false) if b != 0 => Some((a, b)),
            (false, true) if a != 0 => Some((b, a)),
            _ => None,
        }
    }
}

fn words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (word, chunk) in out.iter_mut().zip(bytes.as_chunks::<8>().0) {
        *word = u64::from_le_bytes(*chunk);
    }
    out
}

/// The shape checks of a `ScheduledIo`'s words: registration-list pointers null or aligned
/// like a `ScheduledIo`, a std or parking_lot mutex word that is unlocked or locked (never
/// poisoned: tokio's loom mutex ignores poisoning but std's flag is a 0/1 byte), a wait list
/// with both ends null or both set and aligned.
fn looks_like_scheduled_io(w: &[u64; SCHEDULED_IO_BYTES / 8]) -> bool {
    let aligned_or_null = |p: u64| p.is_multiple_of(SCHEDULED_IO_ALIGN);
    let futex = w[3] & 0xffff_ffff;
    let poison = (w[3] >> 32) & 0xff;
    let (head, tail) = (w[LIST_HEAD], w[LIST_TAIL]);
    aligned_or_null(w[0])
        && aligned_or_null(w[1])
        && futex <= 2
        && poison <= 1
        && (head == 0) == (tail == 0)
        && head.is_multiple_of(8)
        && tail.is_multiple_of(8)
}

/// The wakers of a wait list, from `head` along each node's `next` to `tail`. None when the
/// list is not well formed (a node unreadable, a cycle, too long, not ending at `tail`) or
/// `budget` (nodes left to read) runs out.
fn walk_wait_list(
    memory: &TargetMemory,
    image: &ExeImage,
    head: u64,
    tail: u64,
    budget: &mut usize,
) -> Option<Vec<(Option<IoInterest>, u64, u64)>> {
    let mut out = Vec::new();
    let (mut node, mut last) = (head, 0);
    let mut visited = HashSet::new();
    while node != 0 {
        if !visited.insert(node)
            || visited.len() > MAX_NODES_PER_LIST
            || !node.is_multiple_of(8)
            || *budget == 0
        {
            return None;
        }
        *budget -= 1;
        let mut raw = [0u8; NODE_BYTES];
        memory.read_exact(node, &mut raw).ok()?;
        let n = words::<{ NODE_BYTES / 8 }>(&raw);
        if let Some((vtable, data)) = image.waker(n[NODE_WAKER], n[NODE_WAKER + 1]) {
            let interest = match n[NODE_INTEREST] & (READABLE | WRITABLE) {
                READABLE => Some(IoInterest::Read),
                WRITABLE => Some(IoInterest::Write),
                x if x == READABLE | WRITABLE => Some(IoInterest::ReadWrite),
                _ => None,
            };
            out.push((interest, vtable, data));
        }
        last = node;
        node = n[NODE_NEXT];
    }
    (last == tail).then_some(out)
}

enum TaskRead {
    /// Waiting to be woken: its id.
    Idle(u64),
    /// Running, scheduled or complete: not parked.
    Busy,
    Unrecognized,
}

/// Reads the task whose header is at `header`: its state, and its id at the offset its
/// vtable gives (cached per vtable: one per future type).
fn read_task(
    memory: &TargetMemory,
    image: &ExeImage,
    vtables: &mut HashMap<u64, Option<u64>>,
    header: u64,
) -> TaskRead {
    let mut raw = [0u8; HEADER_BYTES];
    if !header.is_multiple_of(8) || memory.read_exact(header, &mut raw).is_err() {
        return TaskRead::Unrecognized;
    }
    let [state, _queue_next, vtable, _owner] = words::<4>(&raw);
    if !image.is_static(vtable) {
        return TaskRead::Unrecognized;
    }
    let id_offset = *vtables.entry(vtable).or_insert_with(|| task_id_offset(memory, image, vtable));
    let Some(id_offset) = id_offset else { return TaskRead::Unrecognized };
    let mut id = [0u8; 8];
    if memory.read_exact(header.wrapping_add(id_offset), &mut id).is_err() {
        return TaskRead::Unrecognized;
    }
    let id = u64::from_le_bytes(id);
    if id == 0 {
        return TaskRead::Unrecognized;
    }
    if state & (RUNNING | COMPLETE | NOTIFIED) != 0 { TaskRead::Busy } else { TaskRead::Idle(id) }
}

/// `Vtable::id_offset` of a task vtable: seven code pointers, then trailer, scheduler and id
/// offsets with header < scheduler < id < trailer (tokio's `Cell` is `repr(C)`: header, core
/// (scheduler, task id, ...), trailer). None for anything else.
fn task_id_offset(memory: &TargetMemory, image: &ExeImage, vtable: u64) -> Option<u64> {
    let mut raw = [0u8; TASK_VTABLE_WORDS * 8];
    memory.read_exact(vtable, &mut raw).ok()?;
    let w = words::<TASK_VTABLE_WORDS>(&raw);
    let (trailer, scheduler, id) = (w[7], w[8], w[9]);
    let shaped = w[..7].iter().all(|f| image.is_code(*f))
        && (HEADER_BYTES as u64..MAX_CELL_OFFSET).contains(&scheduler)
        && scheduler < id
        && id < trailer
        && trailer < MAX_CELL_OFFSET
        && id.is_multiple_of(8);
    shaped.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(words: [u64; 10]) -> [u64; 10] {
        words
    }

    #[test]
    fn tokens_that_cannot_be_scheduled_io() {
        // tokio's wakeup and signal tokens, fd numbers (256 is aligned), unaligned pointers.
        for data in [0, 1, 128, 256, 0x7fb5_a800_0d88] {
            assert!(!is_scheduled_io_token(data), "{data:#x}");
        }
        assert!(is_scheduled_io_token(0x7fb5_a800_0d80));
    }

    #[test]
    fn scheduled_io_shape() {
        // As read from tokio 1.54.1's iopark example: linked, unlocked, one reader.
        let ok = io([
            0x7fb5a8000f80,
            0,
            0x10002,
            0x7f00_0000_0000,
            0,
            0,
            0x55a3_74cd_3f70,
            0x55a3_a688_d000,
            0,
            1,
        ]);
        assert!(looks_like_scheduled_io(&ok));
        let mut locked = ok;
        locked[3] = 2;
        assert!(looks_like_scheduled_io(&locked));
        let mut bad_link = ok;
        bad_link[0] = 0x7fb5a8000f88;
        assert!(!looks_like_scheduled_io(&bad_link));
        let mut half_list = ok;
        half_list[LIST_HEAD] = 0x55a3a688d5d8;
        assert!(!looks_like_scheduled_io(&half_list));
        let mut mutex_garbage = ok;
        mutex_garbage[3] = 0x1234_5678;
        assert!(!looks_like_scheduled_io(&mutex_garbage));
    }

    #[test]
    fn a_waker_is_a_static_vtable_and_a_pointer_in_either_order() {
        let image = ExeImage { bias: 0, code: vec![(0x1000, 0x2000)], all: vec![(0x1000, 0x3000)] };
        assert_eq!(image.waker(0x2800, 0x7f00_0000_1000), Some((0x2800, 0x7f00_0000_1000)));
        assert_eq!(image.waker(0x7f00_0000_1000, 0x2800), Some((0x2800, 0x7f00_0000_1000)));
        // Empty slots: a null vtable beside leftover data, or nothing.
        assert_eq!(image.waker(0, 0x7f00_0000_1000), None);
        assert_eq!(image.waker(0, 0), None);
        assert_eq!(image.waker(0x2800, 0), None);
        // Two statics, or a misaligned "vtable": not a waker.
        assert_eq!(image.waker(0x2800, 0x2808), None);
        assert_eq!(image.waker(0x2801, 0x7f00_0000_1000), None);
    }

    /// Wait-list nodes laid out as tokio's `Waiter` (prev, next, waker vtable, waker data,
    /// interest), in this process's memory, walked through process_vm_readv like a target's.
    #[test]
    fn wait_list_walks_end_at_the_tail_and_refuse_cycles_and_long_lists() {
        static VTABLE: [u64; 4] = [0; 4];
        let vt = VTABLE.as_ptr() as u64;
        let image = ExeImage { bias: 0, code: vec![], all: vec![(vt, vt + 32)] };
        let memory = TargetMemory::new(std::process::id());
        let mut nodes = vec![[0u64; 5]; MAX_NODES_PER_LIST + 2];
        let base = nodes.as_ptr() as u64;
        let addr = |i: usize| base + 40 * i as u64;
        // A list of three: 0 -> 1 -> 2, a reader, a writer and an interest-less waiter.
        for (i, interest) in [(0, READABLE), (1, WRITABLE), (2, 0)] {
            nodes[i] = [0, if i < 2 { addr(i + 1) } else { 0 }, vt, 0x7f00_0000_1000 + i as u64, interest];
        }
        let mut budget = 10;
        let got = walk_wait_list(&memory, &image, addr(0), addr(2), &mut budget).expect("a well-formed list");
        assert_eq!(
            got,
            vec![
                (Some(IoInterest::Read), vt, 0x7f00_0000_1000),
                (Some(IoInterest::Write), vt, 0x7f00_0000_1001),
                (None, vt, 0x7f00_0000_1002)
            ]
        );
        assert_eq!(budget, 7);
        // Not ending at the tail it claims.
        assert_eq!(walk_wait_list(&memory, &image, addr(0), addr(1), &mut 10), None);
        // Out of budget.
        assert_eq!(walk_wait_list(&memory, &image, addr(0), addr(2), &mut 2), None);
        // A cycle 2 -> 0.
        nodes[2][1] = addr(0);
        assert_eq!(walk_wait_list(&memory, &image, addr(0), addr(2), &mut 10), None);
        // Longer than any list is allowed to be.
        for i in 0..nodes.len() {
            nodes[i] = [0, if i + 1 < nodes.len() { addr(i + 1) } else { 0 }, vt, 0x7f00_0000_1000, READABLE];
        }
        let last = addr(nodes.len() - 1);
        let mut plenty = usize::MAX;
        assert_eq!(walk_wait_list(&memory, &image, addr(0), last, &mut plenty), None);
        // An unreadable node.
        assert_eq!(walk_wait_list(&memory, &image, 8, 8, &mut 10), None);
        drop(nodes);
    }

    #[test]
    fn reads_its_own_process_as_a_target_without_tokio_registrations() {
        // No WAKER_VTABLE: a clear error, nothing read.
        let binary = TokioBinary {
            version: None,
            symbols: false,
            task_id_slot: Err(String::new()),
            scheduler_slot: Err(String::new()),
            wakers: Default::default(),
            first_load_vaddr: 0,
        };
        let err = IoWaitReader::new(std::process::id(), &binary).err().expect("no reader without the symbol");
        assert!(err.contains("WAKER_VTABLE"), "{err}");
    }
}
