//! Loads one mapped ELF object's unwind information (.eh_frame/.eh_frame_hdr, or .debug_frame
//! for Go) into a framehop module, plus the few extra facts frame-pointer recovery checks against
//! (function starts, PLT ranges), and a Go executable's pclntab, whose SP-delta tables unwind Go
//! code that has no CFI (builds linked with `-w`).

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use framehop::{ExplicitModuleSectionInfo, Module};
use object::{Object, ObjectSection, ObjectSegment, ReadCache, ReadRef};

use super::StackError;
use super::maps::Mapping;
use super::memory::RemoteMemory;
use crate::go::GoExecutable;

/// Section bytes shared between framehop's module and nothing else; `Arc<[u8]>` because
/// framehop only needs `Deref<Target = [u8]>` and modules are cheap to clone that way.
pub(crate) type SectionData = Arc<[u8]>;

/// Everything the unwinder keeps about one loaded object.
pub(crate) struct LoadedObject {
    pub module: Module<SectionData>,
    /// Actual load address of the object's stated address 0 (the ASLR slide).
    pub base_avma: u64,
    pub function_starts: FunctionStarts,
    /// Stated ranges of .plt, .plt.sec and .plt.got: calls into these are calls to another
    /// object's function, which is how a frame-record check accepts cross-object calls.
    pub plt_svma: Vec<Range<u64>>,
    /// The pclntab of a Go executable (its addresses are the object's stated addresses).
    pub go: Option<GoExecutable>,
    /// Go code has CFI (.debug_frame): the pclntab is then only a fallback.
    pub go_has_cfi: bool,
}

/// Where one object lives in the target: its executable span, and every mapping of the same
/// file (the base computation needs the one whose offset lies in a PT_LOAD segment).
pub(crate) struct ObjectPlacement<'a> {
    pub name: &'a str,
    pub exec_span: Range<u64>,
    pub exec_mapping: &'a Mapping,
}

/// Loads a file-backed object. The file is opened through /proc/PID/map_files first: that
/// names exactly the inode the target mapped, even across mount namespaces or after deletion.
pub(crate) fn load_file(pid: u32, placement: &ObjectPlacement<'_>) -> Result<LoadedObject, StackError> {
    let m = placement.exec_mapping;
    let candidates = [
        format!("/proc/{pid}/map_files/{:x}-{:x}", m.range.start, m.range.end),
        format!("/proc/{pid}/root{}", m.path),
    ];
    let mut last_err = None;
    for path in &candidates {
        match File::open(path) {
            Ok(file) => {
                // ReadCache reads only the headers and the sections we ask for, so a 500 MB
                // binary with full debug info costs a few reads, not a full copy.
                let cache = ReadCache::new(file);
                return parse_and_build(&cache, placement);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(StackError::ObjectOpen {
        path: m.path.clone(),
        error: last_err.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)),
    })
}

/// Loads an object that only exists in memory (the vDSO) by copying its mapping.
pub(crate) fn load_from_memory(
    mem: &RemoteMemory,
    placement: &ObjectPlacement<'_>,
) -> Result<LoadedObject, StackError> {
    let m = placement.exec_mapping;
    let len = usize::try_from(m.range.end - m.range.start).unwrap_or(usize::MAX);
    if len > 64 << 20 {
        return Err(StackError::ObjectParse {
            path: m.path.clone(),
            reason: "in-memory object larger than 64 MiB".into(),
        });
    }
    let mut bytes = vec![0u8; len];
    mem.read_exact(m.range.start, &mut bytes)
        .map_err(|error| StackError::ObjectOpen { path: m.path.clone(), error })?;
    parse_and_build(&bytes[..], placement)
}

fn parse_and_build<'data, R: ReadRef<'data>>(
    data: R,
    placement: &ObjectPlacement<'_>,
) -> Result<LoadedObject, StackError> {
    let parse_err = |reason: String| StackError::ObjectParse { path: placement.name.to_owned(), reason };
    let file = object::File::parse(data).map_err(|e| parse_err(e.to_string()))?;
    let base_avma = base_avma(&file, placement.exec_mapping)
        .ok_or_else(|| parse_err("no PT_LOAD segment covers the executable mapping".into()))?;

    let section = |name: &str| -> Option<(Range<u64>, SectionData)> {
        let s = file.section_by_name(name)?;
        // uncompressed_data handles SHF_COMPRESSED and .zdebug_ sections alike (Go compresses
        // its DWARF, .debug_frame included).
        let data = s.uncompressed_data().ok()?;
        let svma = s.address()..s.address() + s.size();
        Some((svma, Arc::from(&*data)))
    };
    let svma_of = |name: &str| file.section_by_name(name).map(|s| s.address()..s.address() + s.size());

    let eh_frame = section(".eh_frame");
    let eh_frame_hdr = section(".eh_frame_hdr");
    let debug_frame = section(".debug_frame");

    // framehop uses .eh_frame whenever it exists and ignores .debug_frame. A Go binary linked
    // externally (cgo) has an .eh_frame covering only the C objects, while the Go functions are
    // described in .debug_frame alone, so for Go we hand framehop .debug_frame instead.
    let is_go =
        file.section_by_name(".gopclntab").is_some() || file.section_by_name(".go.buildinfo").is_some();
    let use_debug_frame = debug_frame.is_some() && (is_go || eh_frame.is_none());

    let function_starts = match (&eh_frame_hdr, use_debug_frame) {
        (Some((svma, data)), false) => FunctionStarts::from_eh_frame_hdr(svma.start, data),
        _ => FunctionStarts::default(),
    };
    let plt_svma = [".plt", ".plt.sec", ".plt.got"].iter().filter_map(|n| svma_of(n)).collect();

    let mut info = ExplicitModuleSectionInfo::<SectionData> {
        base_svma: 0,
        text_svma: svma_of(".text"),
        got_svma: svma_of(".got"),
        ..Default::default()
    };
    if use_debug_frame {
        info.debug_frame = debug_frame.map(|(_, d)| d);
    } else {
        if let Some((svma, data)) = eh_frame {
            info.eh_frame_svma = Some(svma);
            info.eh_frame = Some(data);
        }
        if let Some((svma, data)) = eh_frame_hdr {
            info.eh_frame_hdr_svma = Some(svma);
            info.eh_frame_hdr = Some(data);
        }
    }
    let go_has_cfi = is_go && info.debug_frame.is_some();
    let go = if is_go {
        GoExecutable::from_data(data, placement.name)
            .map_err(|e| tracing::debug!(error = %e, path = placement.name, "no pclntab for unwinding"))
            .ok()
            .flatten()
    } else {
        None
    };
    let module = Module::new(placement.name.to_owned(), placement.exec_span.clone(), base_avma, info);
    Ok(LoadedObject { module, base_avma, function_starts, plt_svma, go, go_has_cfi })
}

/// The ASLR slide: a byte at file offset X is mapped at `m.start + (X - m.offset)` and stated at
/// `p_vaddr + (X - p_offset)` for the PT_LOAD segment holding X, so the difference is constant.
fn base_avma<'data, R: ReadRef<'data>>(file: &object::File<'data, R>, m: &Mapping) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (p_offset, p_filesz) = seg.file_range();
        let p_vaddr = seg.address();
        // The kernel maps segments from page-aligned offsets, so the mapping's offset may lie
        // slightly before p_offset.
        let page_offset = p_offset & !0xfff;
        (m.offset >= page_offset && m.offset < p_offset + p_filesz.max(1))
            .then(|| m.range.start.wrapping_sub(m.offset).wrapping_add(p_offset).wrapping_sub(p_vaddr))
    })
}

/// Sorted stated start addresses of the functions that have an FDE, read from the binary search
/// table of .eh_frame_hdr. Used to check that a recovered frame record's caller really called
/// the function we are in.
#[derive(Default)]
pub(crate) struct FunctionStarts {
    starts: Vec<u64>,
}

impl FunctionStarts {
    /// Decodes the .eh_frame_hdr table. Only the encoding every mainstream linker emits for the
    /// table (DW_EH_PE_datarel | DW_EH_PE_sdata4) is supported; anything else yields an empty
    /// index, which only disables frame-record recovery for that object.
    pub fn from_eh_frame_hdr(hdr_svma: u64, hdr: &[u8]) -> Self {
        Self::parse(hdr_svma, hdr).unwrap_or_default()
    }

    fn parse(hdr_svma: u64, hdr: &[u8]) -> Option<Self> {
        const DATAREL_SDATA4: u8 = 0x3b;
        const OMIT: u8 = 0xff;
        let (&version, rest) = hdr.split_first()?;
        let &[ptr_enc, count_enc, table_enc, ..] = rest else {
            return None;
        };
        if version != 1 || table_enc != DATAREL_SDATA4 || count_enc == OMIT {
            return None;
        }
        let mut pos = 4 + encoded_size(ptr_enc)?;
        let count_size = encoded_size(count_enc)?;
        let count_bytes = hdr.get(pos..pos + count_size)?;
        let mut raw = [0u8; 8];
        raw[..count_size].copy_from_slice(count_bytes);
        let count = usize::try_from(u64::from_le_bytes(raw)).ok()?;
        pos += count_size;
        let table = hdr.get(pos..pos.checked_add(count.checked_mul(8)?)?)?;
        let mut starts: Vec<u64> = table
            .as_chunks::<8>()
            .0
            .iter()
            .map(|&[a, b, c, d, ..]| {
                hdr_svma.wrapping_add_signed(i64::from(i32::from_le_bytes([a, b, c, d])))
            })
            .collect();
        // The table is sorted by definition, but a sort is cheap insurance for binary search.
        starts.sort_unstable();
        Some(Self { starts })
    }

    /// The start of the function containing the stated address `svma`.
    pub fn function_start(&self, svma: u64) -> Option<u64> {
        let idx = self.starts.partition_point(|&s| s <= svma).checked_sub(1)?;
        Some(self.starts[idx])
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// Byte size of a DWARF pointer encoding's value (the low nibble), for the header fields we skip.
fn encoded_size(enc: u8) -> Option<usize> {
    match enc & 0x0f {
        0x02 | 0x0a => Some(2),
        0x03 | 0x0b => Some(4),
        0x04 | 0x0c => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_eh_frame_hdr_table() {
        // version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4
        let mut hdr = vec![1u8, 0x1b, 0x03, 0x3b];
        hdr.extend_from_slice(&0x100i32.to_le_bytes());
        hdr.extend_from_slice(&3u32.to_le_bytes());
        for (loc, fde) in [(-0x200i32, 0x10i32), (-0x100, 0x20), (0x40, 0x30)] {
            hdr.extend_from_slice(&loc.to_le_bytes());
            hdr.extend_from_slice(&fde.to_le_bytes());
        }
        let starts = FunctionStarts::from_eh_frame_hdr(0x2000, &hdr);
        assert_eq!(starts.function_start(0x1e00), Some(0x1e00));
        assert_eq!(starts.function_start(0x1f80), Some(0x1f00));
        assert_eq!(starts.function_start(0x2100), Some(0x2040));
        assert_eq!(starts.function_start(0x1000), None);
    }

    #[test]
    fn unsupported_table_encoding_gives_empty_index() {
        let hdr = [1u8, 0x1b, 0x03, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(FunctionStarts::from_eh_frame_hdr(0, &hdr).is_empty());
    }

    #[test]
    fn loads_our_own_executable() {
        let pid = std::process::id();
        let maps = super::super::maps::read_maps(pid).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let m = maps.iter().find(|m| m.executable && m.path == exe).unwrap();
        let placement = ObjectPlacement { name: &m.path, exec_span: m.range.clone(), exec_mapping: m };
        let loaded = load_file(pid, &placement).unwrap();
        // This very function must be inside the object's mapped code at base + stated address.
        let here = loads_our_own_executable as fn() as usize as u64;
        assert!(m.range.contains(&here));
        let svma = here - loaded.base_avma;
        assert!(loaded.function_starts.function_start(svma).is_some());
    }
}
