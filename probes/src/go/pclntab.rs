//! Names code addresses of a Go executable from its `.gopclntab`: the table the Go runtime
//! itself uses for tracebacks and `runtime.FuncForPC`, present in every Go binary (even one built
//! with `-ldflags="-s -w"`) and never compressed.
//!
//! Why not DWARF: Go compresses its DWARF, and inflating it to answer file:line for a few hundred
//! stack addresses was most of the CPU of a goroutine snapshot. The pclntab answers the same
//! question by a binary search and a short scan, straight from the file's bytes.
//!
//! The format (Go 1.18 and later; `runtime/symtab.go`, `internal/abi/symtab.go`,
//! `debug/gosym/pclntab.go` in the Go tree), all little-endian on the targets we read:
//! - a header (`pcHeader`): magic (0xfffffff0 for Go 1.18/1.19, 0xfffffff1 since 1.20), two pad
//!   bytes, the pc quantum (1 on amd64), the pointer size, the number of functions and of files,
//!   a slot that held the text start (only filled, and not always relocated, before 1.20), then
//!   the offsets, from the header, of five tables: funcnametab, cutab, filetab, pctab and
//!   pclntable;
//! - funcnametab: NUL-terminated function names;
//! - cutab: per compilation unit, an array of u32 offsets into filetab (`u32::MAX` = none);
//! - filetab: NUL-terminated file names;
//! - pctab: pc-value tables, each a sequence of (value delta as a zig-zag varint, pc delta as a
//!   varint times the quantum) pairs starting from value -1 at the function entry, ended by a
//!   zero value delta (except in the first pair);
//! - pclntable: the functab, `nfunc` pairs of u32 (entry offset from the text start, offset of
//!   the function's `_func` record from the pclntable) sorted by entry and followed by the end
//!   offset of the last function; then the `_func` records, whose u32 fields we use are the
//!   entry offset (0), name offset into funcnametab (1), pcsp (4), pcfile (5) and pcln (6)
//!   table offsets into pctab, and the compilation unit's index into cutab (8); then (after a
//!   u32 start line since 1.20) the byte-sized funcID and flag, whose flag bits tell a stack
//!   walk where to stop ([`GoFrame`]).
//!
//! A pc in inlined code gets the inlined callee's file and line from pcfile/pcln (that is what
//! they record), while its function is the physical (outer) one, which is what `offset` is
//! relative to.
//!
//! Function entries are relative to the runtime's `moduledata.text`, which the pclntab no longer
//! records (1.20+), so [`GoExecutable`] finds it in the ELF file: from `runtime.firstmoduledata`
//! (in `.go.module` or `.noptrdata`, found by its pointer to the pclntab, and checked against
//! the functab; this is what a binary linked by the system linker (cgo) needs, whose Go text
//! does not start at `.text`), else the
//! `runtime.text` symbol, else the header's slot (1.18/1.19), else the start of `.text` (which
//! is where an internally linked binary puts it).
//!
//! Nothing here trusts the data: every read is bounds-checked, and malformed or truncated input
//! gives an error or `None`, never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use object::elf;
use object::read::ReadRef;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, SectionTable, Sym};
use object::{Endianness, ReadCache};

/// Why a pclntab cannot be read. One line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum PclntabError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is not a 64-bit little-endian ELF file: {reason}")]
    NotElf { path: String, reason: String },
    #[error("the pclntab has magic {0:#x}, not that of Go 1.18 or later")]
    UnsupportedVersion(u32),
    #[error("the pclntab is malformed: {0}")]
    Malformed(&'static str),
    #[error("cannot find the start of the Go text in {0}")]
    NoTextStart(String),
}

const GO118_MAGIC: u32 = 0xffff_fff0;
const GO120_MAGIC: u32 = 0xffff_fff1;

/// Which pclntab header variant a binary carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclntabVersion {
    /// Go 1.18 and 1.19 (the header still has a text start).
    Go118,
    /// Go 1.20 and later.
    Go120,
}

/// Where a pc is, as the pclntab says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLocation<'a> {
    /// The physical function containing the pc (the outer one when the pc is in inlined code).
    pub function: &'a str,
    /// Entry address of `function`, in the same (link-time) address space as the pc.
    pub entry: u64,
    /// Source file of the instruction (the inlined callee's, in inlined code), full path as the
    /// linker recorded it.
    pub file: Option<&'a str>,
    /// Source line of the instruction.
    pub line: Option<u32>,
}

/// A parsed pclntab: the bytes and the table offsets; functions are decoded on lookup.
#[derive(Debug, Clone)]
pub struct Pclntab {
    data: Vec<u8>,
    version: PclntabVersion,
    quantum: u32,
    nfunc: usize,
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    pclntable: usize,
    /// The header's text start (Go 1.18/1.19 only; may be 0 when it awaited a relocation).
    header_text_start: u64,
    /// Link-time address function entries are relative to.
    text_start: u64,
}

impl Pclntab {
    /// Checks the header of `data` (the whole `.gopclntab` section) and records where its tables
    /// are. `text_start` is `moduledata.text`, the base of function entries.
    pub fn parse(data: Vec<u8>, text_start: u64) -> Result<Pclntab, PclntabError> {
        let magic = read_u32(&data, 0).ok_or(PclntabError::Malformed("truncated header"))?;
        let version = match magic {
            GO118_MAGIC => PclntabVersion::Go118,
            GO120_MAGIC => PclntabVersion::Go120,
            other => return Err(PclntabError::UnsupportedVersion(other)),
        };
        let (quantum, ptr_size) = match data.get(6..8) {
            Some(&[q, p]) => (u32::from(q), p),
            _ => return Err(PclntabError::Malformed("truncated header")),
        };
        if ptr_size != 8 {
            return Err(PclntabError::Malformed("pointer size is not 8"));
        }
        if quantum == 0 {
            return Err(PclntabError::Malformed("pc quantum is 0"));
        }
        let word = |i: usize| -> Result<u64, PclntabError> {
            read_u64(&data, 8 + 8 * i).ok_or(PclntabError::Malformed("truncated header"))
        };
        let offset = |i: usize| -> Result<usize, PclntabError> {
            let off = usize::try_from(word(i)?).map_err(|_| PclntabError::Malformed("table offset"))?;
            if off > data.len() {
                return Err(PclntabError::Malformed("table offset beyond the end"));
            }
            Ok(off)
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| PclntabError::Malformed("function count"))?;
        let pclntable = offset(7)?;
        // The functab (nfunc pairs and the end entry) must fit, whatever else is wrong.
        let functab_end = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4 + pclntable))
            .ok_or(PclntabError::Malformed("function count"))?;
        if functab_end > data.len() {
            return Err(PclntabError::Malformed("functab runs past the end"));
        }
        Ok(Pclntab {
            version,
            quantum,
            nfunc,
            funcnametab: offset(3)?,
            cutab: offset(4)?,
            filetab: offset(5)?,
            pctab: offset(6)?,
            pclntable,
            header_text_start: word(2)?,
            text_start,
            data,
        })
    }

    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// Number of functions in the functab.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The base function entries are relative to.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Link-time address range covered by the functions, first entry to end of the last.
    pub fn text_range(&self) -> Option<Range<u64>> {
        let first = self.functab_entry(0)?;
        let end = self.functab_entry(self.nfunc)?;
        Some(self.text_start.checked_add(u64::from(first))?..self.text_start.checked_add(u64::from(end))?)
    }

    /// The `i`-th function: its entry address and name (for listing or testing).
    pub fn function(&self, i: usize) -> Option<(u64, &str)> {
        if i >= self.nfunc {
            return None;
        }
        let func = self.func_record(i)?;
        let entry = self.text_start.checked_add(u64::from(read_u32(&self.data, func)?))?;
        Some((entry, self.name(func)?))
    }

    /// Names the instruction at link-time address `pc`. `None` when `pc` is in no function's
    /// code (outside the text, or in padding after a function's last instruction) or the data
    /// is malformed.
    pub fn lookup(&self, pc: u64) -> Option<GoLocation<'_>> {
        let (func, entry) = self.func_at(pc)?;
        let function = self.name(func)?;
        let field = |n: usize| read_u32(&self.data, func + 4 * n);
        // The line table covers exactly the function's instructions: past its end, no answer.
        let line = self.pc_value(field(6)?, entry, pc)?;
        let file_index = self.pc_value(field(5)?, entry, pc);
        let file = file_index.and_then(|f| self.file_name(field(8)?, f));
        Some(GoLocation { function, entry, file, line: u32::try_from(line).ok() })
    }

    /// What Go's own unwinder knows of the instruction at link-time address `pc` (see
    /// [`GoFrame`]); `None` when `pc` is in no function or the data is malformed.
    pub fn frame_at(&self, pc: u64) -> Option<GoFrame<'_>> {
        let (func, entry) = self.func_at(pc)?;
        let function = self.name(func)?;
        // funcID and flag bytes follow cuOffset; Go 1.20 put startLine (i32) before them.
        let flag_at = match self.version {
            PclntabVersion::Go118 => func + 37,
            PclntabVersion::Go120 => func + 41,
        };
        let flag = *self.data.get(flag_at)?;
        let pcsp = read_u32(&self.data, func + 4 * 4)?;
        Some(GoFrame {
            function,
            entry,
            sp_delta: self.pc_value(pcsp, entry, pc),
            top_frame: flag & FUNC_FLAG_TOP_FRAME != 0,
            sp_write: flag & FUNC_FLAG_SP_WRITE != 0,
        })
    }

    /// The `_func` record and entry address of the function containing link-time address `pc`.
    fn func_at(&self, pc: u64) -> Option<(usize, u64)> {
        let target = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        if self.nfunc == 0 || target < self.functab_entry(0)? || target >= self.functab_entry(self.nfunc)? {
            return None;
        }
        // Last function whose entry is <= target.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.functab_entry(mid)? <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let func = self.func_record(lo)?;
        let entry = self.text_start.checked_add(u64::from(read_u32(&self.data, func)?))?;
        Some((func, entry))
    }

    /// The address ranges (entry to the next function's entry) of the functions named in
    /// `names`, in the same order; one pass over the functab.
    pub fn functions_named(&self, names: &[&str]) -> Vec<Option<Range<u64>>> {
        let mut found: Vec<Option<Range<u64>>> = vec![None; names.len()];
        let mut left = names.len();
        for i in 0..self.nfunc {
            if left == 0 {
                break;
            }
            let Some(func) = self.func_record(i) else { continue };
            let Some(name) = self.name(func) else { continue };
            let Some(slot) = names.iter().position(|n| *n == name) else { continue };
            if found[slot].is_some() {
                continue;
            }
            let range = (|| {
                let entry = self.text_start.checked_add(u64::from(read_u32(&self.data, func)?))?;
                let end = self.text_start.checked_add(u64::from(self.functab_entry(i + 1)?))?;
                (end > entry).then_some(entry..end)
            })();
            if range.is_some() {
                found[slot] = range;
                left -= 1;
            }
        }
        found
    }

    /// Entry offset (from the text start) of functab slot `i` (`i == nfunc` is the end).
    fn functab_entry(&self, i: usize) -> Option<u32> {
        read_u32(&self.data, self.pclntable.checked_add(i.checked_mul(8)?)?)
    }

    /// Offset in `data` of the `_func` record of function `i`.
    fn func_record(&self, i: usize) -> Option<usize> {
        let off = read_u32(&self.data, self.pclntable.checked_add(i.checked_mul(8)?.checked_add(4)?)?)?;
        let rec = self.pclntable.checked_add(off as usize)?;
        // entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset.
        (rec.checked_add(9 * 4)? <= self.data.len()).then_some(rec)
    }

    fn name(&self, func: usize) -> Option<&str> {
        let name_off = usize::try_from(read_u32(&self.data, func + 4)?).ok()?;
        c_str(&self.data, self.funcnametab.checked_add(name_off)?)
    }

    /// File `index` of compilation unit `cu`.
    fn file_name(&self, cu: u32, index: i32) -> Option<&str> {
        let slot = usize::try_from(cu).ok()?.checked_add(usize::try_from(index).ok()?)?;
        let file_off = read_u32(&self.data, self.cutab.checked_add(slot.checked_mul(4)?)?)?;
        if file_off == u32::MAX {
            return None;
        }
        c_str(&self.data, self.filetab.checked_add(file_off as usize)?)
    }

    /// Runs the pc-value table at `table` (an offset into pctab) from `entry` and returns the
    /// value in force at `pc`; `None` if the table ends before `pc` or is malformed.
    fn pc_value(&self, table: u32, entry: u64, pc: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let start = self.pctab.checked_add(table as usize)?;
        let mut cursor = self.data.get(start..)?;
        let mut value: i32 = -1;
        let mut at = entry;
        // Each entry takes at least two bytes, so the table's end bounds the walk; the cap
        // bounds it too when a hostile table is most of a large pclntab.
        for _ in 0..MAX_PC_VALUE_ENTRIES {
            // As the runtime reads it: a zero delta ends the table except while still at the entry.
            let udelta = read_varint(&mut cursor)?;
            if udelta == 0 && at != entry {
                return None;
            }
            // Zig-zag: the low bit is the sign.
            let delta = if udelta & 1 != 0 { !(udelta >> 1) as i32 } else { (udelta >> 1) as i32 };
            value = value.wrapping_add(delta);
            let pc_delta = read_varint(&mut cursor)?;
            at = at.checked_add(u64::from(pc_delta) * u64::from(self.quantum))?;
            if pc < at {
                return Some(value);
            }
        }
        None
    }
}

/// Entries of one pc-value table decoded at most; real tables have one per change of the
/// value (line, file, SP delta), far fewer than this even in generated giant functions.
const MAX_PC_VALUE_ENTRIES: usize = 1 << 20;

/// `abi.FuncFlagTopFrame`: the function is the outermost of its stack (goexit, mstart, rt0_go).
const FUNC_FLAG_TOP_FRAME: u8 = 1;
/// `abi.FuncFlagSPWrite`: the function writes SP (stack switches such as systemstack, mcall,
/// morestack, gogo), which its SP-delta table cannot describe.
const FUNC_FLAG_SP_WRITE: u8 = 2;

/// What Go's own unwinder (`runtime/traceback.go`) uses to step over one frame without DWARF
/// or frame pointers: at a pc, the frame's size from the function's SP-delta (`pcsp`) table,
/// and the function's flags that say where unwinding must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoFrame<'a> {
    pub function: &'a str,
    /// Entry address of `function` (link-time).
    pub entry: u64,
    /// Bytes between SP and the return address at this pc (the return address is at
    /// SP + delta, the caller's SP is 8 above it); `None` when the function has no table or
    /// the table does not cover the pc.
    pub sp_delta: Option<i32>,
    /// The function begins its stack (`FuncFlagTopFrame`): a walk ends here, completely.
    pub top_frame: bool,
    /// The function switches or rewrites SP (`FuncFlagSPWrite`): its SP delta cannot be
    /// trusted to lead to its caller, so a walk stops here.
    pub sp_write: bool,
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// An unsigned LEB128 varint of at most 32 bits; advances `cursor`.
fn read_varint(cursor: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for (i, &b) in cursor.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *cursor = &cursor[i + 1..];
            return Some(value);
        }
    }
    None
}

fn c_str(data: &[u8], at: usize) -> Option<&str> {
    let rest = data.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..len]).ok()
}

/// A loadable segment: which file bytes land at which link-time addresses.
#[derive(Debug, Clone, Copy)]
struct Load {
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// A Go executable's pclntab with what is needed to use it on a mapped file: the ELF program
/// headers (file offset to link-time address, for PIE and non-PIE builds alike).
#[derive(Debug, Clone)]
pub struct GoExecutable {
    pub pclntab: Pclntab,
    loads: Vec<Load>,
    /// Full names from the symbol table of functions whose pclntab name is abbreviated, by
    /// entry: Go 1.18 and 1.19 store a generic function's (or an array type's equality
    /// function's) name with everything in its outer brackets as `[...]`, where the symbol table
    /// and DWARF have it whole.
    full_names: HashMap<u64, String>,
}

impl GoExecutable {
    /// Reads the pclntab of the ELF file at `path`. `Ok(None)` for a file that has no
    /// `.gopclntab` (not Go, or not an executable the Go linker laid out). Only the headers and
    /// the few sections needed are read, so asking about a large non-Go library is cheap.
    pub fn open(path: &Path) -> Result<Option<GoExecutable>, PclntabError> {
        let display = || path.display().to_string();
        let file =
            File::open(path).map_err(|e| PclntabError::Io { path: display(), reason: e.to_string() })?;
        let cache = ReadCache::new(file);
        Self::from_data(&cache, &display())
    }

    /// Like [`GoExecutable::open`] for a file already in memory.
    pub fn from_bytes(data: &[u8], display: &str) -> Result<Option<GoExecutable>, PclntabError> {
        Self::from_data(data, display)
    }

    pub(crate) fn from_data<'d, R: ReadRef<'d>>(
        data: R,
        display: &str,
    ) -> Result<Option<GoExecutable>, PclntabError> {
        let not_elf =
            |e: object::Error| PclntabError::NotElf { path: display.to_owned(), reason: e.to_string() };
        let header = elf::FileHeader64::<Endianness>::parse(data).map_err(not_elf)?;
        let endian = header.endian().map_err(not_elf)?;
        if endian != Endianness::Little {
            return Err(PclntabError::NotElf { path: display.to_owned(), reason: "big-endian".into() });
        }
        let sections = header.sections(endian, data).map_err(not_elf)?;
        // PIE builds put it in relro.
        let named = [b".gopclntab".as_slice(), b".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|name| sections.section_by_name(endian, name).map(|(_, s)| s));
        let (mut pclntab, pcln_addr) = match named {
            Some(pcln_section) => {
                if pcln_section.sh_flags(endian).contains(elf::SHF_COMPRESSED) {
                    return Err(PclntabError::Malformed("the section is compressed"));
                }
                let bytes = pcln_section.data(endian, data).map_err(not_elf)?.to_vec();
                (Pclntab::parse(bytes, 0)?, pcln_section.sh_addr(endian))
            }
            // Only a Go binary is searched (a non-Go library asked about must stay cheap).
            None if sections.section_by_name(endian, b".go.buildinfo").is_some() => {
                match unnamed_pclntab(&sections, endian, data) {
                    Some(found) => found,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };

        let loads = header
            .program_headers(endian, data)
            .map_err(not_elf)?
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .map(|p| Load {
                offset: p.p_offset(endian),
                vaddr: p.p_vaddr(endian),
                filesz: p.p_filesz(endian),
            })
            .collect();

        let text_start = moduledata_text(&sections, endian, data, &pclntab, pcln_addr)
            .or_else(|| symbol_address(&sections, endian, data, b"runtime.text"))
            .or_else(|| (pclntab.header_text_start != 0).then_some(pclntab.header_text_start))
            .or_else(|| sections.section_by_name(endian, b".text").map(|(_, s)| s.sh_addr(endian)))
            .ok_or_else(|| PclntabError::NoTextStart(display.to_owned()))?;
        pclntab.text_start = text_start;
        let abbreviated = pclntab
            .data
            .get(pclntab.funcnametab..pclntab.cutab)
            .is_some_and(|names| names.windows(ELIDED.len()).any(|w| w == ELIDED));
        let full_names =
            if abbreviated { bracketed_functions(&sections, endian, data) } else { HashMap::new() };
        Ok(Some(GoExecutable { pclntab, loads, full_names }))
    }

    /// The link-time address of the byte at `offset` in the file, if a loadable segment maps it.
    pub fn vaddr_of_offset(&self, offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|l| offset >= l.offset && offset - l.offset < l.filesz)
            .map(|l| l.vaddr + (offset - l.offset))
    }

    /// The file offset of link-time address `vaddr` and how many file bytes follow it in its
    /// loadable segment.
    pub fn file_range_of(&self, vaddr: u64) -> Option<(u64, u64)> {
        self.loads
            .iter()
            .find(|l| vaddr >= l.vaddr && vaddr - l.vaddr < l.filesz)
            .and_then(|l| Some((l.offset.checked_add(vaddr - l.vaddr)?, l.filesz - (vaddr - l.vaddr))))
    }

    /// The file offset of link-time address `vaddr`, if a loadable segment maps it from the file.
    pub fn file_offset_of(&self, vaddr: u64) -> Option<u64> {
        self.file_range_of(vaddr).map(|(off, _)| off)
    }

    /// See [`Pclntab::lookup`]; an abbreviated name (see `full_names`) is given whole when the
    /// symbol table has it.
    pub fn lookup(&self, vaddr: u64) -> Option<GoLocation<'_>> {
        let mut loc = self.pclntab.lookup(vaddr)?;
        if loc.function.contains("[...]")
            && let Some(full) = self.full_names.get(&loc.entry)
        {
            loc.function = full;
        }
        Some(loc)
    }
}

const ELIDED: &[u8] = b"[...]";

/// Functions of the symbol table with a `[` in their name, by address.
fn bracketed_functions<'d, R: ReadRef<'d>>(
    sections: &SectionTable<'d, elf::FileHeader64<Endianness>, R>,
    endian: Endianness,
    data: R,
) -> HashMap<u64, String> {
    let Ok(symbols) = sections.symbols(endian, data, elf::SHT_SYMTAB) else { return HashMap::new() };
    symbols
        .iter()
        .filter(|sym| sym.st_type() == elf::STT_FUNC)
        .filter_map(|sym| {
            let name = symbols.symbol_name(endian, sym).ok()?;
            if !name.contains(&b'[') {
                return None;
            }
            Some((sym.st_value(endian), std::str::from_utf8(name).ok()?.to_owned()))
        })
        .collect()
}

/// The pclntab of a PIE linked by the system linker (cgo), which merges it into `.data.rel.ro`
/// without a section of its own: found by its header's magic (at a word boundary), accepted only
/// when it parses and a `runtime.firstmoduledata` record points to it (see [`moduledata_text`]),
/// so a stray magic is not taken. With its link-time address.
fn unnamed_pclntab<'d, R: ReadRef<'d>>(
    sections: &SectionTable<'d, elf::FileHeader64<Endianness>, R>,
    endian: Endianness,
    data: R,
) -> Option<(Pclntab, u64)> {
    let (_, section) = sections.section_by_name(endian, b".data.rel.ro")?;
    let bytes = section.data(endian, data).ok()?;
    let addr = section.sh_addr(endian);
    // Magic, two zero pad bytes, pc quantum 1, pointer size 8.
    let heads = [GO118_MAGIC, GO120_MAGIC].map(|m| {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&m.to_le_bytes());
        h[6] = 1;
        h[7] = 8;
        h
    });
    // Each try copies the rest of the section and scans for the module record: a section full
    // of fake headers must not make that quadratic.
    const MAX_TRIES: usize = 8;
    let mut tries = 0;
    for at in (0..bytes.len().saturating_sub(8)).step_by(8) {
        if !heads.iter().any(|h| bytes[at..at + 8] == *h) {
            continue;
        }
        tries += 1;
        if tries > MAX_TRIES {
            break;
        }
        let Ok(pclntab) = Pclntab::parse(bytes[at..].to_vec(), 0) else { continue };
        let pcln_addr = addr.checked_add(at as u64)?;
        if moduledata_text(sections, endian, data, &pclntab, pcln_addr).is_some() {
            return Some((pclntab, pcln_addr));
        }
    }
    None
}

/// `moduledata.text` of `runtime.firstmoduledata`, which begins with a pointer to the pclntab
/// header. Accepted only when the record agrees with the pclntab (its funcnametab pointer and
/// functab length, and its minpc being the first function's entry), so a stray word that
/// happens to equal the pclntab's address, or an unrelocated PIE record, is not used.
fn moduledata_text<'d, R: ReadRef<'d>>(
    sections: &SectionTable<'d, elf::FileHeader64<Endianness>, R>,
    endian: Endianness,
    data: R,
    pclntab: &Pclntab,
    pcln_addr: u64,
) -> Option<u64> {
    // Field offsets in moduledata, the same from Go 1.18 through 1.27: pcHeader, then six slices
    // (funcnametab, cutab, filetab, pctab, pclntable, ftab) of three words, findfunctab, minpc,
    // maxpc, text.
    const FUNCNAMETAB: usize = 8;
    const FTAB_LEN: usize = 8 + 5 * 24 + 8;
    const MINPC: usize = 8 + 6 * 24 + 8;
    const TEXT: usize = MINPC + 16;
    let first_entry = u64::from(pclntab.functab_entry(0)?);
    // Recent releases give it a section of its own; older ones put it in .noptrdata.
    for name in [b".go.module".as_slice(), b".noptrdata", b".data", b".data.rel.ro"] {
        let Some((_, section)) = sections.section_by_name(endian, name) else { continue };
        let Ok(bytes) = section.data(endian, data) else { continue };
        for at in (0..bytes.len().saturating_sub(TEXT + 8)).step_by(8) {
            if read_u64(bytes, at) != Some(pcln_addr) {
                continue;
            }
            let word = |off: usize| read_u64(bytes, at + off);
            let text = word(TEXT)?;
            let consistent = word(FUNCNAMETAB) == pcln_addr.checked_add(pclntab.funcnametab as u64)
                && word(FTAB_LEN) == (pclntab.nfunc as u64).checked_add(1)
                && text != 0
                && word(MINPC) == text.checked_add(first_entry);
            if consistent {
                return Some(text);
            }
        }
    }
    None
}

fn symbol_address<'d, R: ReadRef<'d>>(
    sections: &SectionTable<'d, elf::FileHeader64<Endianness>, R>,
    endian: Endianness,
    data: R,
    wanted: &[u8],
) -> Option<u64> {
    let symbols = sections.symbols(endian, data, elf::SHT_SYMTAB).ok()?;
    symbols.iter().find_map(|sym| {
        let name = symbols.symbol_name(endian, sym).ok()?;
        (name == wanted).then(|| sym.st_value(endian))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a small pclntab: two functions at text offsets 0x10 and 0x40 (end 0x60), in one
    /// compilation unit with two files; the second function has code from both (as inlining
    /// leaves it).
    fn sample(magic: u32) -> Vec<u8> {
        fn varint(out: &mut Vec<u8>, mut v: u32) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        fn zigzag(v: i32) -> u32 {
            ((v << 1) ^ (v >> 31)) as u32
        }
        // (value, pc delta) steps from value -1.
        fn table(out: &mut Vec<u8>, steps: &[(i32, u32)]) -> u32 {
            let at = out.len() as u32;
            let mut prev = -1;
            for &(v, pcd) in steps {
                varint(out, zigzag(v - prev));
                varint(out, pcd);
                prev = v;
            }
            out.push(0);
            at
        }
        let funcnames = b"main.first\0main.second\0".to_vec();
        let files = b"/src/a.go\0/src/b.go\0".to_vec();
        let cutab: Vec<u8> = [0u32, 10].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        let f1_file = table(&mut pctab, &[(0, 0x30)]);
        let f1_line = table(&mut pctab, &[(3, 0x8), (4, 0x28)]);
        let f2_file = table(&mut pctab, &[(0, 0x4), (1, 0x8), (0, 0x14)]);
        let f2_line = table(&mut pctab, &[(20, 0x4), (7, 0x8), (21, 0x14)]);
        // main.first opens an 0x18-byte frame after 4 bytes of prologue.
        let f1_sp = table(&mut pctab, &[(0, 0x4), (0x18, 0x2c)]);

        let header_len = 8 + 8 * 8;
        let funcname_off = header_len;
        let cu_off = funcname_off + funcnames.len();
        let file_off = cu_off + cutab.len();
        let pctab_off = file_off + files.len();
        let pcln_off = pctab_off + pctab.len();

        let mut pclntable = Vec::new();
        let functab_len = 2 * 8 + 4;
        // The flag byte: after cuOffset (field 8) in 1.18/1.19, after startLine (field 9) since.
        let flag_word = |flag: u32| {
            let shifted = flag << 8; // funcID first, then flag
            if magic == GO118_MAGIC { [shifted, 0] } else { [0, shifted] }
        };
        let rec = |entry: u32, name: u32, pcsp: u32, pcfile: u32, pcln: u32, flag: u32| -> Vec<u8> {
            let [w9, w10] = flag_word(flag);
            [entry, name, 0, 0, pcsp, pcfile, pcln, 0, 0, w9, w10]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        };
        // main.second has no SP table and is marked as its stack's top frame and SP-writing.
        let r1 = rec(0x10, 0, f1_sp, f1_file, f1_line, 0);
        let r2 = rec(0x40, 11, 0, f2_file, f2_line, 3);
        for (entry, off) in [(0x10u32, functab_len), (0x40, functab_len + r1.len())] {
            pclntable.extend((entry).to_le_bytes());
            pclntable.extend((off as u32).to_le_bytes());
        }
        pclntable.extend(0x60u32.to_le_bytes());
        pclntable.extend(r1);
        pclntable.extend(r2);

        let mut out = Vec::new();
        out.extend(magic.to_le_bytes());
        out.extend([0, 0, 1, 8]);
        for w in [2, 2, 0, funcname_off, cu_off, file_off, pctab_off, pcln_off] {
            out.extend((w as u64).to_le_bytes());
        }
        out.extend(funcnames);
        out.extend(cutab);
        out.extend(files);
        out.extend(pctab);
        out.extend(pclntable);
        out
    }

    const TEXT: u64 = 0x40_1000;

    #[test]
    fn looks_up_functions_files_and_lines() {
        for magic in [GO118_MAGIC, GO120_MAGIC] {
            let t = Pclntab::parse(sample(magic), TEXT).unwrap();
            assert_eq!(t.len(), 2);
            let at = |off: u64| t.lookup(TEXT + off).map(|l| (l.function, l.entry - TEXT, l.file, l.line));
            assert_eq!(at(0x10), Some(("main.first", 0x10, Some("/src/a.go"), Some(3))));
            assert_eq!(at(0x17), Some(("main.first", 0x10, Some("/src/a.go"), Some(3))));
            assert_eq!(at(0x18), Some(("main.first", 0x10, Some("/src/a.go"), Some(4))));
            assert_eq!(at(0x3f), Some(("main.first", 0x10, Some("/src/a.go"), Some(4))));
            assert_eq!(at(0x40), Some(("main.second", 0x40, Some("/src/a.go"), Some(20))));
            // Inlined code: another file and line, same physical function.
            assert_eq!(at(0x44), Some(("main.second", 0x40, Some("/src/b.go"), Some(7))));
            assert_eq!(at(0x4c), Some(("main.second", 0x40, Some("/src/a.go"), Some(21))));
            assert_eq!(at(0x5f), Some(("main.second", 0x40, Some("/src/a.go"), Some(21))));
            assert_eq!(at(0x60), None);
            assert_eq!(at(0x0f), None);
            assert_eq!(t.lookup(0), None);
            assert_eq!(t.function(1).map(|(e, n)| (e - TEXT, n)), Some((0x40, "main.second")));
            assert_eq!(t.text_range(), Some(TEXT + 0x10..TEXT + 0x60));
        }
    }

    #[test]
    fn frame_sizes_and_flags() {
        for magic in [GO118_MAGIC, GO120_MAGIC] {
            let t = Pclntab::parse(sample(magic), TEXT).unwrap();
            let at =
                |off: u64| t.frame_at(TEXT + off).map(|f| (f.function, f.sp_delta, f.top_frame, f.sp_write));
            assert_eq!(at(0x10), Some(("main.first", Some(0), false, false)));
            assert_eq!(at(0x13), Some(("main.first", Some(0), false, false)));
            assert_eq!(at(0x14), Some(("main.first", Some(0x18), false, false)));
            assert_eq!(at(0x3f), Some(("main.first", Some(0x18), false, false)));
            assert_eq!(at(0x44), Some(("main.second", None, true, true)));
            assert_eq!(at(0x60), None);
            assert_eq!(t.frame_at(TEXT + 0x14).map(|f| f.entry), Some(TEXT + 0x10));
        }
    }

    #[test]
    fn finds_functions_by_name() {
        let t = Pclntab::parse(sample(GO120_MAGIC), TEXT).unwrap();
        let found = t.functions_named(&["main.second", "main.missing", "main.first"]);
        assert_eq!(found, vec![Some(TEXT + 0x40..TEXT + 0x60), None, Some(TEXT + 0x10..TEXT + 0x40)]);
        // Corrupted records give no range, never a panic.
        let full = sample(GO120_MAGIC);
        for i in 0..full.len() {
            let mut data = full.clone();
            data[i] = 0xff;
            if let Ok(t) = Pclntab::parse(data, TEXT) {
                let _ = t.functions_named(&["main.first", "main.second"]);
            }
        }
    }

    #[test]
    fn rejects_other_versions() {
        let mut data = sample(GO120_MAGIC);
        data[..4].copy_from_slice(&0xffff_fffau32.to_le_bytes());
        assert!(matches!(Pclntab::parse(data, TEXT), Err(PclntabError::UnsupportedVersion(0xffff_fffa))));
    }

    #[test]
    fn truncated_or_corrupted_data_never_panics() {
        let full = sample(GO120_MAGIC);
        let probes: Vec<u64> = (0..0x70).map(|o| TEXT + o).collect();
        for len in 0..full.len() {
            if let Ok(t) = Pclntab::parse(full[..len].to_vec(), TEXT) {
                for &pc in &probes {
                    let _ = t.lookup(pc);
                }
            }
        }
        // Every byte replaced by a few values, one at a time.
        for i in 0..full.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut data = full.clone();
                data[i] = v;
                if let Ok(t) = Pclntab::parse(data, TEXT) {
                    for &pc in &probes {
                        let _ = t.lookup(pc);
                    }
                    let _ = t.function(0);
                    let _ = t.text_range();
                    for &pc in &probes {
                        let _ = t.frame_at(pc);
                    }
                }
            }
        }
        // A text start near the top of the address space must not overflow.
        let t = Pclntab::parse(full, u64::MAX - 0x20).unwrap();
        let _ = t.lookup(u64::MAX);
        let _ = t.text_range();
    }

    #[test]
    fn varints_are_bounded() {
        let mut c: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(read_varint(&mut c), None);
        let mut c: &[u8] = &[0xe5, 0x8e, 0x26, 9];
        assert_eq!(read_varint(&mut c), Some(624_485));
        assert_eq!(c, &[9]);
        let mut c: &[u8] = &[];
        assert_eq!(read_varint(&mut c), None);
    }

    #[test]
    fn non_elf_and_non_go_files() {
        assert!(matches!(GoExecutable::from_bytes(b"not an elf", "x"), Err(PclntabError::NotElf { .. })));
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert!(GoExecutable::from_bytes(&me, "self").unwrap().is_none());
    }
}
