//! Structured stack frames and the table that interns whole stacks per snapshot: a stack shared
//! by many threads or goroutines (100,000 goroutines parked in the same place) is stored once
//! and referenced by [`StackId`]. The text of a frame is a rendering ([`Frame`]'s `Display`).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a frame's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    User,
    Kernel,
}

/// One frame of a stack, innermost first in a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub kind: FrameKind,
    /// The address as captured (a return address for outer frames); 0 when only the name is
    /// known (the kernel stacks /proc gives).
    pub address: u64,
    pub function: Option<String>,
    /// Byte offset of `address` from the start of `function`, when known.
    pub offset: Option<u64>,
    /// The function's size, when the source gives it (kernel frames: `func+0x1a/0x80`).
    pub size: Option<u64>,
    /// The backing object: its path as the target maps it for user frames (or a pseudo name
    /// such as `[vdso]`), the kernel module for kernel frames (null for the kernel image).
    pub module: Option<String>,
    /// Source file and line of the instruction, when the binary says (DWARF, Go's pclntab).
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    /// A user frame known by address only.
    pub fn unnamed(address: u64) -> Frame {
        Frame {
            kind: FrameKind::User,
            address,
            function: None,
            offset: None,
            size: None,
            module: None,
            file: None,
            line: None,
        }
    }

    /// Parses one frame as /proc/PID/task/TID/stack prints it (`func+0x1a/0x80 [module]`, the
    /// `[<0>] ` prefix already stripped). Text that does not have that form is kept whole as
    /// the function name, so nothing is lost.
    pub fn parse_kernel(text: &str) -> Frame {
        let mut frame = Frame { kind: FrameKind::Kernel, ..Frame::unnamed(0) };
        let (symbol, module) = match text.rsplit_once(" [") {
            Some((sym, rest)) if rest.ends_with(']') => (sym, Some(&rest[..rest.len() - 1])),
            _ => (text, None),
        };
        let parsed = symbol.rsplit_once('+').and_then(|(name, off_size)| {
            let (off, size) = off_size.split_once('/')?;
            Some((name, parse_hex(off)?, parse_hex(size)?))
        });
        match parsed {
            Some((name, off, size)) if !name.is_empty() => {
                frame.function = Some(name.to_owned());
                frame.offset = Some(off);
                frame.size = Some(size);
                frame.module = module.map(str::to_owned);
            }
            _ => frame.function = Some(text.to_owned()),
        }
        frame
    }

    /// The name shown where only one word fits: the function, else `[module]`, else the address.
    pub fn short_name(&self) -> String {
        match (&self.function, &self.module) {
            (Some(f), _) => f.clone(),
            (None, Some(m)) => format!("[{}]", m.rsplit('/').next().unwrap_or(m)),
            (None, None) => format!("{:#x}", self.address),
        }
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// `function+0xoff (module) at file:line` for user frames, `function+0xoff/0xsize [module]`
/// for kernel ones: the forms `snapshot` has always printed.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.function, self.offset) {
            (Some(name), Some(off)) => write!(f, "{name}+{off:#x}")?,
            (Some(name), None) => f.write_str(name)?,
            (None, _) => write!(f, "{:#x}", self.address)?,
        }
        if let Some(size) = self.size {
            write!(f, "/{size:#x}")?;
        }
        if let Some(module) = &self.module {
            match self.kind {
                FrameKind::Kernel => write!(f, " [{module}]")?,
                // The directory is noise in a stack listing; the file name identifies the object.
                FrameKind::User => write!(f, " ({})", module.rsplit('/').next().unwrap_or(module))?,
            }
        }
        if let Some(file) = &self.file {
            write!(f, " at {file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        Ok(())
    }
}

/// Index of a stack in its snapshot's [`StackTable`]. [`StackId::EMPTY`] is the empty stack
/// (not collected, or nothing to unwind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StackId(pub u32);

impl StackId {
    pub const EMPTY: StackId = StackId(0);

    pub fn is_empty(self) -> bool {
        self == StackId::EMPTY
    }
}

impl Default for StackId {
    fn default() -> Self {
        StackId::EMPTY
    }
}

/// Every distinct stack of one snapshot, each stored once. Entry 0 is always the empty stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackTable {
    stacks: Vec<Vec<Frame>>,
    /// Rebuilt on demand after deserialising (see [`StackTable::intern`]).
    #[serde(skip)]
    index: HashMap<Vec<Frame>, StackId>,
}

impl Default for StackTable {
    fn default() -> Self {
        StackTable { stacks: vec![Vec::new()], index: HashMap::new() }
    }
}

impl PartialEq for StackTable {
    fn eq(&self, other: &Self) -> bool {
        self.stacks == other.stacks
    }
}

impl StackTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `frames`, adding them if this table has not seen them.
    pub fn intern(&mut self, frames: Vec<Frame>) -> StackId {
        if frames.is_empty() {
            return StackId::EMPTY;
        }
        if self.index.len() + 1 < self.stacks.len() {
            // Deserialised (or cloned without its index): index what is there first.
            self.index = self.stacks.iter().enumerate().skip(1).map(|(i, s)| (s.clone(), id(i))).collect();
        }
        if let Some(&id) = self.index.get(&frames) {
            return id;
        }
        let new = id(self.stacks.len());
        self.index.insert(frames.clone(), new);
        self.stacks.push(frames);
        new
    }

    /// The frames of `id`, innermost first; an unknown id (a corrupt recording) reads as empty.
    pub fn get(&self, id: StackId) -> &[Frame] {
        self.stacks.get(id.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether `id` names a stack of this table.
    pub fn contains(&self, id: StackId) -> bool {
        (id.0 as usize) < self.stacks.len()
    }

    /// Distinct stacks, the empty one included.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.len() <= 1
    }

    /// Every stack with its id, the empty one (id 0) first.
    pub fn iter(&self) -> impl Iterator<Item = (StackId, &[Frame])> {
        self.stacks.iter().enumerate().map(|(i, s)| (id(i), s.as_slice()))
    }

    /// Each frame of `id` rendered as text, innermost first.
    pub fn render(&self, id: StackId) -> Vec<String> {
        self.get(id).iter().map(ToString::to_string).collect()
    }
}

fn id(i: usize) -> StackId {
    StackId(u32::try_from(i).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_frames_render_as_proc_prints_them() {
        for text in [
            "pipe_read+0x2f4/0x480",
            "ext4_file_read_iter+0x5b/0x190 [ext4]",
            "entry_SYSCALL_64_after_hwframe+0x76/0x7e",
        ] {
            let f = Frame::parse_kernel(text);
            assert_eq!(f.to_string(), text);
            assert!(f.function.is_some() && f.offset.is_some() && f.size.is_some());
        }
        let odd = Frame::parse_kernel("0xffffffffc0de");
        assert_eq!(odd.to_string(), "0xffffffffc0de");
        assert_eq!(odd.offset, None);
    }

    #[test]
    fn user_frames_render_short_module_and_location() {
        let f = Frame {
            function: Some("main.parkedPipeRead".into()),
            offset: Some(0x4d),
            module: Some("/tmp/x/parked".into()),
            file: Some("/src/main.go".into()),
            line: Some(42),
            ..Frame::unnamed(0x4a1b2d)
        };
        assert_eq!(f.to_string(), "main.parkedPipeRead+0x4d (parked) at /src/main.go:42");
        assert_eq!(Frame::unnamed(0x10).to_string(), "0x10");
    }

    #[test]
    fn interning_stores_each_stack_once_and_survives_a_round_trip() {
        let mut t = StackTable::new();
        let a = vec![Frame::unnamed(1), Frame::unnamed(2)];
        let b = vec![Frame::unnamed(3)];
        let ia = t.intern(a.clone());
        assert_eq!(t.intern(b.clone()), StackId(2));
        assert_eq!(t.intern(a.clone()), ia);
        assert_eq!(t.intern(Vec::new()), StackId::EMPTY);
        assert_eq!(t.len(), 3);
        let mut back: StackTable = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.intern(b), StackId(2), "the index is rebuilt after deserialising");
        assert_eq!(back.len(), 3);
        assert!(back.get(StackId(99)).is_empty());
    }
}
