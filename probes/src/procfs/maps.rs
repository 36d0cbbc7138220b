//! The target's address space as /proc/PID/maps describes it: which ranges are code, which are
//! stacks, and which file (or vDSO) backs each range. A process with thousands of threads has
//! thousands of mappings (every thread stack is one, plus its guard page), so the map is read once
//! per view into an [`AddressSpace`] that every thread's unwind and symbolisation share.

use std::ops::Range;

use crate::stacks::StackError;

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub range: Range<u64>,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// Offset into the backing file of `range.start`.
    pub offset: u64,
    /// Device and inode identify the backing file even when two paths name it (or it was
    /// deleted), so mappings of one object can be grouped without trusting the path text.
    pub dev: String,
    pub inode: u64,
    /// The path column as the kernel printed it: a file path, `[stack]`, `[vdso]`, or empty.
    pub path: String,
}

impl Mapping {
    pub fn contains(&self, addr: u64) -> bool {
        self.range.contains(&addr)
    }

    /// File-backed mappings have a non-zero inode; `[vdso]` and friends have inode 0.
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }
}

/// One reading of a process's /proc/PID/maps, sorted by address: the snapshot of its address
/// space that a view's unwinds and symbolisation share (reading it per thread made a view cost
/// threads x mappings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpace {
    pid: u32,
    maps: Vec<Mapping>,
}

impl AddressSpace {
    /// Reads and parses /proc/PID/maps once.
    pub fn read(pid: u32) -> Result<Self, StackError> {
        Ok(Self { pid, maps: read_maps(pid)? })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    pub(crate) fn mappings(&self) -> &[Mapping] {
        &self.maps
    }

    /// The mapping containing `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<&Mapping> {
        find(&self.maps, addr).map(|i| &self.maps[i])
    }

    pub(crate) fn from_parts(pid: u32, mut maps: Vec<Mapping>) -> Self {
        maps.sort_by_key(|m| m.range.start);
        Self { pid, maps }
    }
}

/// Reads and parses /proc/PID/maps, sorted by start address (the kernel already prints them
/// in that order; we rely on it for binary search, so we sort anyway to be robust).
pub(crate) fn read_maps(pid: u32) -> Result<Vec<Mapping>, StackError> {
    let path = format!("/proc/{pid}/maps");
    let text =
        std::fs::read_to_string(&path).map_err(|source| StackError::from_proc_io(pid, &path, source))?;
    let mut maps = parse_maps(&text).map_err(|line| StackError::MapsFormat { pid, line })?;
    maps.sort_by_key(|m| m.range.start);
    Ok(maps)
}

/// Parses the text of a maps file; on a malformed line returns that line.
pub(crate) fn parse_maps(text: &str) -> Result<Vec<Mapping>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_line(line).ok_or_else(|| line.to_owned()))
        .collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    // The path is the sixth column but may itself contain spaces, so split off the first
    // five fields one at a time and keep the remainder whole.
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (value, tail) = trimmed.split_at(end);
        rest = tail;
        (!value.is_empty()).then_some(value)
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?.to_owned();
    let inode = field()?.parse().ok()?;
    let path = rest.trim().to_owned();

    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = perms.as_bytes();
    if perms.len() < 3 || start > end {
        return None;
    }
    Some(Mapping {
        range: start..end,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev,
        inode,
        path,
    })
}

/// Index of the mapping containing `addr` in a start-sorted list.
pub(crate) fn find(maps: &[Mapping], addr: u64) -> Option<usize> {
    let idx = maps.partition_point(|m| m.range.start <= addr).checked_sub(1)?;
    maps[idx].contains(addr).then_some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c8a00000-55d0c8a01000 r--p 00000000 fe:01 1234  /tmp/my prog
55d0c8a01000-55d0c8a02000 r-xp 00001000 fe:01 1234  /tmp/my prog
7ffd1e6f0000-7ffd1e711000 rw-p 00000000 00:00 0                          [stack]
7ffd1e7c4000-7ffd1e7c6000 r-xp 00000000 00:00 0                          [vdso]
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
";

    #[test]
    fn parses_paths_with_spaces_and_anonymous_mappings() {
        let maps = parse_maps(SAMPLE).unwrap();
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].path, "/tmp/my prog");
        assert!(maps[1].executable && !maps[1].writable);
        assert_eq!(maps[1].offset, 0x1000);
        assert_eq!(maps[1].inode, 1234);
        assert!(maps[1].is_file());
        assert_eq!(maps[2].path, "[stack]");
        assert!(!maps[3].is_file());
        assert_eq!(maps[4].path, "");
    }

    #[test]
    fn rejects_garbage_lines() {
        assert_eq!(parse_maps("not a maps line\n"), Err("not a maps line".to_owned()));
    }

    #[test]
    fn finds_containing_mapping() {
        let mut maps = parse_maps(SAMPLE).unwrap();
        maps.sort_by_key(|m| m.range.start);
        let i = find(&maps, 0x55d0c8a01010).unwrap();
        assert_eq!(maps[i].range.start, 0x55d0c8a01000);
        assert_eq!(find(&maps, 0x55d0c8a02000), None);
        assert_eq!(find(&maps, 0x10), None);
    }
}
