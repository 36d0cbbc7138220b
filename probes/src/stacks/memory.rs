//! The unwinder's reads of the target's memory, through the crate's one target-memory reader
//! (`crate::memory`): the thread keeps running (no ptrace stop), so every read may fail or
//! race, and callers treat failure as "unknown", never as data. Reads are cached per page.

use std::collections::HashMap;
use std::io;
use std::ops::Range;

use super::StackError;
use crate::memory::TargetMemory;

const PAGE: u64 = 4096;

/// The target's address space, for the unwinder.
pub(crate) struct RemoteMemory {
    mem: TargetMemory,
}

impl RemoteMemory {
    /// Checks up front that we may read the process (opening /proc/PID/mem makes the same
    /// ptrace-attach access check as process_vm_readv), so that a refusal is one clear error
    /// rather than every stack silently empty.
    pub fn open(pid: u32) -> Result<Self, StackError> {
        let path = format!("/proc/{pid}/mem");
        std::fs::File::open(&path).map_err(|source| StackError::from_proc_io(pid, &path, source))?;
        Ok(Self { mem: TargetMemory::new(pid) })
    }

    pub fn read_exact(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mem.read_exact(addr, buf)
    }

    /// Reads one page; `None` if it is unmapped or unreadable right now.
    pub fn read_page(&self, page_start: u64) -> Option<Box<[u8]>> {
        let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
        self.read_exact(page_start, &mut buf).ok()?;
        Some(buf)
    }
}

/// Page-granular cache of remote memory. One pread per touched page instead of one per word,
/// which matters because an unwind reads a handful of words per frame from the same pages.
#[derive(Default)]
pub(crate) struct PageCache {
    pages: HashMap<u64, Option<Box<[u8]>>>,
}

impl PageCache {
    pub fn clear(&mut self) {
        self.pages.clear();
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Copies `buf.len()` bytes starting at `addr`, crossing page boundaries as needed.
    pub fn read(&mut self, mem: &RemoteMemory, addr: u64, buf: &mut [u8]) -> Option<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr.checked_add(done as u64)?;
            let page_start = cur & !(PAGE - 1);
            let page = self.pages.entry(page_start).or_insert_with(|| mem.read_page(page_start)).as_ref()?;
            let in_page = (cur - page_start) as usize;
            let n = (page.len() - in_page).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&page[in_page..in_page + n]);
            done += n;
        }
        Some(())
    }

    pub fn read_u64(&mut self, mem: &RemoteMemory, addr: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read(mem, addr, &mut bytes)?;
        Some(u64::from_le_bytes(bytes))
    }
}

/// Reads words of one thread's stack, and nothing outside it: a CFI rule or a frame pointer that
/// points elsewhere is corrupt or stale, and reading there would turn garbage into frames.
/// It does not hold the memory handle so the unwinder can lend it per read while mutating itself.
pub(crate) struct StackReader {
    bounds: Range<u64>,
    cache: PageCache,
}

impl StackReader {
    pub fn new(bounds: Range<u64>) -> Self {
        Self { bounds, cache: PageCache::default() }
    }

    pub fn bounds(&self) -> Range<u64> {
        self.bounds.clone()
    }

    pub fn read_u64(&mut self, mem: &RemoteMemory, addr: u64) -> Option<u64> {
        let end = addr.checked_add(8)?;
        if addr < self.bounds.start || end > self.bounds.end {
            return None;
        }
        self.cache.read_u64(mem, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_across_pages() {
        // Our own process is a real target: /proc/self/mem is the same interface.
        let data: Vec<u8> = (0..3 * PAGE as usize).map(|i| (i % 251) as u8).collect();
        let mem = RemoteMemory::open(std::process::id()).unwrap();
        let mut cache = PageCache::default();
        let base = data.as_ptr() as u64;
        let addr = (base + PAGE) & !(PAGE - 1); // a page boundary inside `data`
        let off = (addr - base) as usize;
        let mut buf = [0u8; 16];
        cache.read(&mem, addr - 8, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[off - 8..off + 8]);

        let mut reader = StackReader::new(base..base + data.len() as u64);
        let word = reader.read_u64(&mem, base).unwrap();
        assert_eq!(word.to_le_bytes(), data[..8]);
        assert_eq!(reader.read_u64(&mem, base + data.len() as u64 - 4), None);
        assert_eq!(reader.read_u64(&mem, base.wrapping_sub(8)), None);
    }
}
