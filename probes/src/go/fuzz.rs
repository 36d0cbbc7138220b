//! Fuzz harnesses of the parsers that read what a Go target controls (its binary, its memory):
//! one function per target, shared by the libFuzzer targets in `fuzz/` (`cargo xtask fuzz`)
//! and by the unit tests below, which run each over a few thousand mutations of real-format
//! inputs in `cargo test`. A harness returns normally for any input: a panic, a hang or a huge
//! allocation is the bug being looked for. Also here: the seed inputs (built from the real
//! layout tables and the real formats) and the in-memory image the runtime walks read.

use std::collections::{BTreeMap, HashMap};

use super::binary::{GLOBALS, GoBinary};
use super::buildinfo::{self, BuildInfo};
use super::layout::{self, GField, GoConst, GoStruct, Layout, MField, PField, PollDescField, SchedField};
use super::memory::ReadMemory;
use super::runtime::{GoProcess, ProcView};
use super::{GoError, GoExecutable, Pclntab, locate, netpoll};
use crate::procfs::TidMap;

/// One harness: runs one input.
pub type Harness = fn(&[u8]);

/// The fuzz targets: (name, harness).
pub const TARGETS: &[(&str, Harness)] = &[
    ("pclntab", pclntab),
    ("go_executable", go_executable),
    ("buildinfo", buildinfo),
    ("go_binary", go_binary),
    ("epoll_fdinfo", epoll_fdinfo),
    ("runtime", runtime),
    ("locate", locate),
];

/// Link-time text start the pclntab harness and seeds use.
const TEXT: u64 = 0x40_1000;

/// `Pclntab::parse` of the input, then lookups at every listed function and around them.
pub fn pclntab(data: &[u8]) {
    let Ok(t) = Pclntab::parse(data.to_vec(), TEXT) else { return };
    let _ = t.text_range();
    for i in 0..t.len().min(64) {
        if let Some((entry, _)) = t.function(i) {
            for pc in [entry, entry + 1, entry + 7, entry.wrapping_sub(1)] {
                let _ = t.lookup(pc);
            }
        }
    }
    for pc in (0..0x200).step_by(3) {
        let _ = t.lookup(TEXT + pc);
    }
    let _ = t.lookup(u64::MAX);
}

/// `GoExecutable::from_bytes` of the input as an ELF file, then lookups.
pub fn go_executable(data: &[u8]) {
    let Ok(Some(exe)) = GoExecutable::from_bytes(data, "fuzz") else { return };
    let start = exe.pclntab.text_start();
    for i in 0..exe.pclntab.len().min(64) {
        if let Some((entry, _)) = exe.pclntab.function(i) {
            let _ = exe.lookup(entry);
            let _ = exe.lookup(entry.wrapping_add(5));
        }
    }
    for off in [0, 1, 0x40, 0x1000, u64::MAX] {
        let _ = exe.vaddr_of_offset(off);
        let _ = exe.lookup(start.wrapping_add(off));
    }
}

/// `buildinfo::parse` of the input as a `.go.buildinfo` section.
pub fn buildinfo(data: &[u8]) {
    let _ = buildinfo::parse(data);
}

/// `GoBinary::from_bytes` of the input as an ELF file (build info, symbols, DWARF layout), then
/// the start of an attach over an empty address space (the layout's bounds are checked there).
pub fn go_binary(data: &[u8]) {
    let Ok(binary) = GoBinary::from_bytes(data, "fuzz") else { return };
    let _ = GoProcess::prepare(0, binary, 0, &Image::default());
}

/// The stripped-binary locator: with the first byte even, `locate::globals` of the rest as an
/// ELF file; odd, `locate::scan` of the rest as x86-64 code.
pub fn locate(data: &[u8]) {
    match data.split_first() {
        Some((k, rest)) if k % 2 == 0 => drop(locate::globals(rest)),
        Some((_, code)) => drop(locate::scan(code, TEXT)),
        None => {}
    }
}

/// `parse_epoll_fdinfo` of the input as text.
pub fn epoll_fdinfo(data: &[u8]) {
    let _ = netpoll::parse_epoll_fdinfo(&String::from_utf8_lossy(data));
}

/// A whole runtime read (sched, allm, allp, allgs, stack walks, netpoll) over the input decoded
/// as an address space ([`Image::decode`]), with a real release's layout.
pub fn runtime(data: &[u8]) {
    let (flags, image) = Image::decode(data);
    let Some(binary) = image_binary(flags & 1 != 0) else { return };
    let Ok(process) = GoProcess::prepare(0, binary, 0, &image) else { return };
    let _ = process.read_with(&image, flags & 2 != 0, &image);
}

/// A target's address space as the runtime harness sees it: regions of bytes (or of one
/// repeated word, so that a few input bytes can state a huge, readable array) and the epoll
/// fdinfo text.
#[derive(Default)]
pub struct Image {
    regions: BTreeMap<u64, Region>,
    fdinfo: String,
}

enum Region {
    Bytes(Vec<u8>),
    Fill { len: u64, word: u64 },
}

impl Region {
    fn len(&self) -> u64 {
        match self {
            Region::Bytes(b) => b.len() as u64,
            Region::Fill { len, .. } => *len,
        }
    }
}

/// The largest region a fill record states (keeps one run of the harness fast).
const MAX_FILL: u64 = 16 << 20;

impl Image {
    /// Decodes `data`: a flags byte (bit 0: Go 1.19's layout, else Go 1.27's; bit 1: walk
    /// stacks), then records until the input ends: `0, addr u64, len u16, bytes` (a region),
    /// `1, addr u64, len u32, word u64` (a fill region), `2, len u16, text` (the fdinfo).
    pub fn decode(data: &[u8]) -> (u8, Image) {
        let mut image = Image::default();
        let Some((&flags, mut rest)) = data.split_first() else { return (0, image) };
        let mut take = |n: usize| -> Option<&[u8]> {
            let n = n.min(rest.len());
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Some(head)
        };
        let le = |b: &[u8]| {
            let mut raw = [0u8; 8];
            raw[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            u64::from_le_bytes(raw)
        };
        while let Some(&[tag]) = take(1) {
            match tag {
                0 => {
                    let addr = take(8).map_or(0, le);
                    let len = take(2).map_or(0, le) as usize;
                    let bytes = take(len).unwrap_or_default().to_vec();
                    image.regions.insert(addr, Region::Bytes(bytes));
                }
                1 => {
                    let addr = take(8).map_or(0, le);
                    let len = take(4).map_or(0, le).min(MAX_FILL);
                    let word = take(8).map_or(0, le);
                    image.regions.insert(addr, Region::Fill { len, word });
                }
                2 => {
                    let len = take(2).map_or(0, le) as usize;
                    image.fdinfo = String::from_utf8_lossy(take(len).unwrap_or_default()).into_owned();
                }
                _ => break,
            }
        }
        (flags, image)
    }

    /// The encoding [`Image::decode`] reads.
    fn encode(flags: u8, regions: &[(u64, Vec<u8>)], fdinfo: &str) -> Vec<u8> {
        let mut out = vec![flags];
        for (addr, bytes) in regions {
            out.push(0);
            out.extend(addr.to_le_bytes());
            out.extend((bytes.len() as u16).to_le_bytes());
            out.extend(bytes);
        }
        out.push(2);
        out.extend((fdinfo.len() as u16).to_le_bytes());
        out.extend(fdinfo.as_bytes());
        out
    }
}

impl ReadMemory for Image {
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Vec<bool>, GoError> {
        Ok(reqs
            .iter_mut()
            .map(|(addr, buf)| {
                let Some((&start, region)) = self.regions.range(..=*addr).next_back() else { return false };
                let off = *addr - start;
                if off.checked_add(buf.len() as u64).is_none_or(|end| end > region.len()) {
                    return false;
                }
                match region {
                    Region::Bytes(b) => buf.copy_from_slice(&b[off as usize..off as usize + buf.len()]),
                    Region::Fill { word, .. } => {
                        // The word repeated, starting at the phase of `addr`.
                        let mut pattern = word.to_le_bytes();
                        pattern.rotate_left((off % 8) as usize);
                        for chunk in buf.chunks_mut(8) {
                            chunk.copy_from_slice(&pattern[..chunk.len()]);
                        }
                    }
                }
                true
            })
            .collect())
    }
}

/// The image's /proc: the process is in /proc's pid namespace, its epoll set is the image's.
impl ProcView for Image {
    fn tids(&self) -> Result<TidMap, GoError> {
        Ok(TidMap::Same)
    }

    fn epoll_fdinfo(&self, _epfd: i32) -> Result<String, GoError> {
        Ok(self.fdinfo.clone())
    }
}

/// Where the runtime harness's binary says each global is (its image places them there).
const GLOBALS_AT: u64 = 0x50_0000;
const GLOBAL_STRIDE: u64 = 0x2000;
const WAIT_REASONS: u64 = 4;

fn global_addr(name: &str) -> u64 {
    GLOBALS_AT + GLOBAL_STRIDE * GLOBALS.iter().position(|g| *g == name).unwrap_or(0) as u64
}

/// A binary with a real release's layout (from the repo's table) and globals at fixed places.
fn image_binary(go119: bool) -> Option<GoBinary> {
    let version = if go119 { "go1.19.13" } else { "go1.27.3" };
    let layout = layout::from_tables(version).ok()?;
    let globals = GLOBALS
        .iter()
        .map(|g| {
            let size = if *g == "runtime.waitReasonStrings" { WAIT_REASONS * 16 } else { 8 };
            (*g, (global_addr(g), size))
        })
        .collect();
    Some(GoBinary {
        path: "fuzz".into(),
        buildinfo: BuildInfo { version: version.into(), module: None },
        layout,
        globals,
        position_independent: false,
        first_load_vaddr: 0,
        functions: HashMap::new(),
    })
}

/// Addresses of the runtime seed's objects.
const G_AT: u64 = 0xc000_0000;
const ALLGS_ARRAY: u64 = 0xc001_0000;
const STACK_LO: u64 = 0xc002_0000;
const STACK_HI: u64 = STACK_LO + 0x800;
const M_AT: u64 = 0xc003_0000;
const STRINGS_AT: u64 = 0xc004_0000;
const P_AT: u64 = 0xc005_0000;
const ALLP_ARRAY: u64 = 0xc006_0000;
const POLLDESC_AT: u64 = 0xc007_0000;

/// A coherent address space of a small Go program in `layout`: three gs (one parked in IO wait
/// with a three-frame stack, one running on M 0, one dead), two Ms, one P, the scheduler, four
/// wait reasons and an epoll set naming the parked g's pollDesc.
fn runtime_seed(go119: bool, stacks: bool) -> Vec<u8> {
    let binary = image_binary(go119).expect("the repo's tables parse");
    let l = &binary.layout;
    let c = |n: GoConst| l.constant(n).expect("a required constant") as u64;
    let put = |buf: &mut Vec<u8>, key: layout::GoField, v: u64| {
        let f = l.field(key);
        let (off, size) = (f.offset as usize, f.size.min(8) as usize);
        buf[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
    };
    let gsize = l.size(GoStruct::G) as usize;
    let g_addr = |i: u64| G_AT + i * gsize as u64;
    let m_addr = |i: u64| M_AT + i * 0x1000;
    let mut regions = Vec::new();

    let mut gs = vec![0u8; 3 * gsize];
    for (i, status, goid) in
        [(0, c(GoConst::Gwaiting), 1), (1, c(GoConst::Grunning), 2), (2, c(GoConst::Gdead), 0)]
    {
        let g = &mut gs[i * gsize..(i + 1) * gsize];
        let mut buf = g.to_vec();
        put(&mut buf, GField::Atomicstatus.into(), status);
        put(&mut buf, GField::Goid.into(), goid);
        put(&mut buf, GField::StackLo.into(), STACK_LO);
        put(&mut buf, GField::StackHi.into(), STACK_HI);
        if i == 0 {
            put(&mut buf, GField::Waitreason.into(), 2);
            put(&mut buf, GField::SchedSp.into(), STACK_LO + 0x100);
            put(&mut buf, GField::SchedBp.into(), STACK_LO + 0x180);
            put(&mut buf, GField::SchedPc.into(), 0x40_1234);
            put(&mut buf, GField::Startpc.into(), 0x40_2000);
        } else if i == 1 {
            put(&mut buf, GField::M.into(), m_addr(0));
        }
        g.copy_from_slice(&buf);
    }
    regions.push((G_AT, gs));
    regions.push((
        ALLGS_ARRAY,
        [g_addr(0), g_addr(1), g_addr(2)].iter().flat_map(|a| a.to_le_bytes()).collect(),
    ));
    regions.push((
        global_addr("runtime.allgs"),
        [ALLGS_ARRAY, 3].iter().flat_map(|a| a.to_le_bytes()).collect(),
    ));

    // g 0's frames: bp chain 0x180 -> 0x200 -> 0x300 -> 0 with return addresses above each.
    let mut stack = vec![0u8; (STACK_HI - STACK_LO) as usize];
    for (bp, next, ret) in
        [(0x180u64, 0x200u64, 0x40_1300u64), (0x200, 0x300, 0x40_1400), (0x300, 0, 0x40_1500)]
    {
        let at = bp as usize;
        stack[at..at + 8].copy_from_slice(&(if next == 0 { 0 } else { STACK_LO + next }).to_le_bytes());
        stack[at + 8..at + 16].copy_from_slice(&ret.to_le_bytes());
    }
    regions.push((STACK_LO, stack));

    let msize = l.size(GoStruct::M) as usize;
    for i in 0..2 {
        let mut m = vec![0u8; msize];
        put(&mut m, MField::Id.into(), i);
        put(&mut m, MField::Procid.into(), 1000 + i);
        put(&mut m, MField::Alllink.into(), if i == 0 { m_addr(1) } else { 0 });
        if i == 0 {
            put(&mut m, MField::Curg.into(), g_addr(1));
            put(&mut m, MField::P.into(), P_AT);
            let f = l.field(MField::Preemptoff);
            m[f.offset as usize..f.offset as usize + 8].copy_from_slice(&(STRINGS_AT + 0x100).to_le_bytes());
            m[f.offset as usize + 8..f.offset as usize + 16].copy_from_slice(&2u64.to_le_bytes());
        }
        regions.push((m_addr(i), m));
    }
    regions.push((global_addr("runtime.allm"), m_addr(0).to_le_bytes().to_vec()));

    let mut p = vec![0u8; l.size(GoStruct::P) as usize];
    put(&mut p, PField::M.into(), m_addr(0));
    put(&mut p, PField::Runqtail.into(), 3);
    put(&mut p, PField::Runqhead.into(), 1);
    regions.push((P_AT, p));
    regions.push((ALLP_ARRAY, P_AT.to_le_bytes().to_vec()));
    regions
        .push((global_addr("runtime.allp"), [ALLP_ARRAY, 1].iter().flat_map(|a| a.to_le_bytes()).collect()));

    let mut sched = vec![0u8; l.size(GoStruct::Schedt) as usize];
    put(&mut sched, SchedField::Mnext.into(), 2);
    put(&mut sched, SchedField::Npidle.into(), 0);
    regions.push((global_addr("runtime.sched"), sched));
    regions.push((global_addr("runtime.gomaxprocs"), 1u64.to_le_bytes().to_vec()));
    regions.push((global_addr("runtime.epfd"), 5u64.to_le_bytes().to_vec()));

    let reasons = ["", "GC assist marking", "IO wait", "chan receive"];
    let mut text = Vec::new();
    let mut headers = Vec::new();
    for r in reasons {
        headers.extend((STRINGS_AT + text.len() as u64).to_le_bytes());
        headers.extend((r.len() as u64).to_le_bytes());
        text.extend(r.as_bytes());
    }
    text.resize(0x100, 0);
    text.extend(b"gc");
    regions.push((STRINGS_AT, text));
    regions.push((global_addr("runtime.waitReasonStrings"), headers));

    let mut pd = vec![0u8; l.size(GoStruct::PollDesc) as usize];
    put(&mut pd, PollDescField::Fd.into(), 7);
    put(&mut pd, PollDescField::Rg.into(), g_addr(0));
    regions.push((POLLDESC_AT, pd));
    let data = match (l.constant(GoConst::TagBits), l.constant(GoConst::TagAlignBits)) {
        (Some(tag), Some(align)) => (POLLDESC_AT >> align) << tag,
        _ => POLLDESC_AT,
    };
    let fdinfo =
        format!("pos:\t0\nflags:\t02\ntfd:        7 events: 80000019 data: {data:x}  pos:0 ino:3f2 sdev:e\n");
    Image::encode(u8::from(go119) | if stacks { 2 } else { 0 }, &regions, &fdinfo)
}

/// A `.go.buildinfo` section in the Go 1.18+ inline format.
fn buildinfo_section(version: &str, modinfo: &str) -> Vec<u8> {
    let mut s = b"\xff Go buildinf:".to_vec();
    s.push(8);
    s.push(2);
    s.resize(32, 0);
    for text in [version, modinfo] {
        let mut len = text.len();
        while len >= 0x80 {
            s.push((len as u8) | 0x80);
            len >>= 7;
        }
        s.push(len as u8);
        s.extend(text.as_bytes());
    }
    s
}

/// A pclntab of `nfunc` functions 0x40 bytes apart from `TEXT + 0x10`, in one compilation unit
/// of two files, each with a file and a line table (the second half of each function is code
/// inlined from the other file).
fn pclntab_section(magic: u32, nfunc: u32, text_start: u64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn table(out: &mut Vec<u8>, steps: &[(i32, u32)]) -> u32 {
        let at = out.len() as u32;
        let mut prev = -1;
        for &(v, pcd) in steps {
            let d = v - prev;
            varint(out, ((d << 1) ^ (d >> 31)) as u32);
            varint(out, pcd);
            prev = v;
        }
        out.push(0);
        at
    }
    let mut names: Vec<u8> = Vec::new();
    let mut pctab = vec![0u8];
    let mut tables = Vec::new();
    for i in 0..nfunc {
        let name_off = names.len() as u32;
        names.extend(format!("main.f{i}[...]\0").as_bytes());
        let file = table(&mut pctab, &[(0, 0x20), (1, 0x10)]);
        let line = table(&mut pctab, &[(10 + i as i32, 0x8), (100, 0x28)]);
        tables.push((name_off, file, line));
    }
    let files = b"/src/a.go\0/src/b.go\0".to_vec();
    let cutab: Vec<u8> = [0u32, 10].iter().flat_map(|v| v.to_le_bytes()).collect();
    let header_len = 8 + 8 * 8;
    let funcname_off = header_len;
    let cu_off = funcname_off + names.len();
    let file_off = cu_off + cutab.len();
    let pctab_off = file_off + files.len();
    let pcln_off = pctab_off + pctab.len();
    let functab_len = nfunc as usize * 8 + 4;
    let mut functab = Vec::new();
    let mut records = Vec::new();
    for (i, &(name, file, line)) in tables.iter().enumerate() {
        let entry = 0x10 + 0x40 * i as u32;
        functab.extend(entry.to_le_bytes());
        functab.extend(((functab_len + records.len()) as u32).to_le_bytes());
        for v in [entry, name, 0, 0, 0, file, line, 0, 0, 0, 0] {
            records.extend(v.to_le_bytes());
        }
    }
    functab.extend((0x10 + 0x40 * nfunc).to_le_bytes());
    let mut out = Vec::new();
    out.extend(magic.to_le_bytes());
    out.extend([0, 0, 1, 8]);
    for w in [
        nfunc as u64,
        2,
        text_start,
        funcname_off as u64,
        cu_off as u64,
        file_off as u64,
        pctab_off as u64,
        pcln_off as u64,
    ] {
        out.extend(w.to_le_bytes());
    }
    out.extend(names);
    out.extend(cutab);
    out.extend(files);
    out.extend(pctab);
    out.extend(functab);
    out.extend(records);
    out
}

/// Minimal DWARF 4 (.debug_abbrev, .debug_info) stating `layout`'s struct sizes, fields (by
/// each field's first member path, nested structs included) and constants, as Go writes them.
fn dwarf_sections(layout: &Layout) -> (Vec<u8>, Vec<u8>) {
    use gimli::constants::*;
    fn uleb(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn sleb(out: &mut Vec<u8>, mut v: i64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut abbrev = Vec::new();
    type Abbrev = (u16, bool, &'static [(u16, u16)]);
    let abbrevs: [Abbrev; 5] = [
        // A Go unit (DW_AT_language DW_LANG_Go): only Go units' DWARF is read for layouts.
        (
            DW_TAG_compile_unit.0,
            true,
            &[(DW_AT_name.0, DW_FORM_string.0), (DW_AT_language.0, DW_FORM_data1.0)],
        ),
        (
            DW_TAG_structure_type.0,
            true,
            &[(DW_AT_name.0, DW_FORM_string.0), (DW_AT_byte_size.0, DW_FORM_udata.0)],
        ),
        (
            DW_TAG_member.0,
            false,
            &[
                (DW_AT_name.0, DW_FORM_string.0),
                (DW_AT_data_member_location.0, DW_FORM_udata.0),
                (DW_AT_type.0, DW_FORM_ref4.0),
            ],
        ),
        (
            DW_TAG_base_type.0,
            false,
            &[(DW_AT_name.0, DW_FORM_string.0), (DW_AT_byte_size.0, DW_FORM_udata.0)],
        ),
        (
            DW_TAG_constant.0,
            false,
            &[(DW_AT_name.0, DW_FORM_string.0), (DW_AT_const_value.0, DW_FORM_sdata.0)],
        ),
    ];
    for (code, (tag, children, attrs)) in abbrevs.iter().enumerate() {
        uleb(&mut abbrev, code as u64 + 1);
        uleb(&mut abbrev, u64::from(*tag));
        abbrev.push(u8::from(*children));
        for (at, form) in *attrs {
            uleb(&mut abbrev, u64::from(*at));
            uleb(&mut abbrev, u64::from(*form));
        }
        abbrev.extend([0, 0]);
    }
    abbrev.push(0);

    // A struct as a tree of member paths: leaves are fields (offset, size), inner nodes nested
    // structs placed at offset 0 whose members carry the absolute offsets.
    #[derive(Default)]
    struct Node {
        children: BTreeMap<String, Node>,
        leaf: Option<(u64, u64)>,
    }
    let mut trees: BTreeMap<&str, Node> = GoStruct::ALL.iter().map(|s| (s.name(), Node::default())).collect();
    for (spec, f) in layout.all_fields() {
        let Some(tree) = trees.get_mut(spec.strukt.name()) else { continue };
        let mut node = tree;
        for part in spec.paths[0].split('.') {
            node = node.children.entry(part.to_owned()).or_default();
        }
        node.leaf = Some((f.offset, f.size));
    }
    let name = |out: &mut Vec<u8>, s: &str| {
        out.extend(s.as_bytes());
        out.push(0);
    };
    let mut info = vec![0u8; 11];
    info[4..6].copy_from_slice(&4u16.to_le_bytes());
    info[10] = 8;
    uleb(&mut info, 1);
    name(&mut info, "fuzz");
    info.push(gimli::DW_LANG_Go.0 as u8);
    let mut base: HashMap<u64, u32> = HashMap::new();
    fn emit(
        info: &mut Vec<u8>,
        base: &mut HashMap<u64, u32>,
        node: &Node,
        sname: &str,
        size: u64,
        name: &dyn Fn(&mut Vec<u8>, &str),
    ) -> u32 {
        let mut members = Vec::new();
        for (m, child) in &node.children {
            let (off, ty) = match child.leaf {
                Some((off, fsize)) => {
                    let ty = *base.entry(fsize).or_insert_with(|| {
                        let at = info.len() as u32;
                        uleb(info, 4);
                        name(info, &format!("uint{}", fsize * 8));
                        uleb(info, fsize);
                        at
                    });
                    (off, ty)
                }
                None => (0, emit(info, base, child, &format!("{sname}.{m}"), size, name)),
            };
            members.push((m.clone(), off, ty));
        }
        let at = info.len() as u32;
        uleb(info, 2);
        name(info, sname);
        uleb(info, size);
        for (m, off, ty) in members {
            uleb(info, 3);
            name(info, &m);
            uleb(info, off);
            info.extend(ty.to_le_bytes());
        }
        info.push(0);
        at
    }
    for (sname, tree) in &trees {
        let size = GoStruct::ALL.iter().find(|s| s.name() == *sname).map_or(0, |s| layout.size(*s));
        emit(&mut info, &mut base, tree, sname, size, &name);
    }
    for c in GoConst::ALL {
        let Some(v) = layout.constant(c) else { continue };
        uleb(&mut info, 5);
        name(&mut info, c.name());
        sleb(&mut info, v);
    }
    info.push(0);
    let unit_length = (info.len() - 4) as u32;
    info[..4].copy_from_slice(&unit_length.to_le_bytes());
    (abbrev, info)
}

/// A small ELF executable with what a Go binary has that parkscope reads: `.go.buildinfo`, a
/// `.gopclntab`, `runtime.firstmoduledata` in `.noptrdata`, the runtime's symbols, a build id
/// note and (unless `-w`) DWARF stating a real release's layout.
fn go_elf(go119: bool, with_dwarf: bool) -> Vec<u8> {
    go_elf_with(go119, with_dwarf, None)
}

/// [`go_elf`], with `.debug_info` compressed (SHF_COMPRESSED) and stating `inflated` bytes
/// when that is given (the payload is not a real zlib stream: only the claim matters).
fn go_elf_with(go119: bool, with_dwarf: bool, inflated: Option<u64>) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let version = if go119 { "go1.19.13" } else { "go1.27.3" };
    let layout = layout::from_tables(version).expect("the repo's tables parse");
    let nfunc = 4u32;
    let magic = if go119 { 0xffff_fff0 } else { 0xffff_fff1 };
    let mut sections: Vec<(&str, u32, u64, Vec<u8>, u32)> = Vec::new(); // name, type, flags, data, link
    let text = [0x55, 0x48, 0x89, 0xe5, 0xc3].repeat(0x60);
    sections.push((".text", 1, 6, text, 0));
    sections.push((
        ".note.go.buildid",
        7,
        2,
        b"\x04\0\0\0\x53\0\0\0\x04\0\0\0Go\0\0fuzzbuildid0123456789/abcdefghij".to_vec(),
        0,
    ));
    let pcln = pclntab_section(magic, nfunc, if go119 { BASE + 0x1000 } else { 0 });
    sections.push((".gopclntab", 1, 2, pcln, 0));
    sections.push((
        ".go.buildinfo",
        1,
        3,
        buildinfo_section(version, "path\tex/cmd\nmod\tex\t(devel)\t\n"),
        0,
    ));
    sections.push((".noptrdata", 1, 3, vec![0u8; 0x200], 0));
    if with_dwarf {
        let (abbrev, info) = dwarf_sections(&layout);
        sections.push((".debug_abbrev", 1, 0, abbrev, 0));
        match inflated {
            None => sections.push((".debug_info", 1, 0, info, 0)),
            Some(size) => {
                let mut chdr = Vec::new();
                chdr.extend(1u32.to_le_bytes()); // ELFCOMPRESS_ZLIB
                chdr.extend(0u32.to_le_bytes());
                chdr.extend(size.to_le_bytes());
                chdr.extend(1u64.to_le_bytes());
                chdr.extend([0x78, 0x9c, 0x03, 0x00]);
                sections.push((".debug_info", 1, 0x800, chdr, 0));
            }
        }
    }
    // Lay out: header, phdr, then each section (addr = BASE + offset for allocated ones).
    let mut file = vec![0u8; 64 + 56];
    let mut placed = Vec::new();
    for (_, _, flags, data, _) in &sections {
        while !file.len().is_multiple_of(16) {
            file.push(0);
        }
        let off = file.len() as u64;
        placed.push((off, if flags & 2 != 0 { BASE + off } else { 0 }));
        file.extend(data);
    }
    let addr_of =
        |name: &str| sections.iter().zip(&placed).find(|(s, _)| s.0 == name).map_or(0, |(_, p)| p.1);
    let text_addr = addr_of(".text");
    // runtime.firstmoduledata in .noptrdata: pclntab pointer, funcnametab pointer, ftab
    // length, minpc (the first function, at text + 0x10) and text (the start of .text).
    let pcln_addr = addr_of(".gopclntab");
    let text_start = text_addr;
    let md = (addr_of(".noptrdata") - BASE) as usize + 0x10;
    let mut w = |at: usize, v: u64| file[md + at..md + at + 8].copy_from_slice(&v.to_le_bytes());
    w(0, pcln_addr);
    w(8, pcln_addr + 8 + 8 * 8);
    w(8 + 5 * 24 + 8, u64::from(nfunc) + 1);
    w(8 + 6 * 24 + 8, text_start + 0x10);
    w(8 + 6 * 24 + 24, text_start);
    // Symbols: every global in .noptrdata, the uprobe functions and runtime.text in .text.
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 24];
    let mut sym = |name: &str, value: u64, size: u64, shndx: u16, func: bool| {
        let st_name = strtab.len() as u32;
        strtab.extend(name.as_bytes());
        strtab.push(0);
        symtab.extend(st_name.to_le_bytes());
        symtab.push(if func { 0x12 } else { 0x11 });
        symtab.push(0);
        symtab.extend(shndx.to_le_bytes());
        symtab.extend(value.to_le_bytes());
        symtab.extend(size.to_le_bytes());
    };
    for (i, g) in GLOBALS.iter().enumerate() {
        sym(
            g,
            addr_of(".noptrdata") + 0x100 + 8 * i as u64,
            if *g == "runtime.waitReasonStrings" { 64 } else { 8 },
            5,
            false,
        );
    }
    sym("runtime.text", text_start, 0, 1, true);
    sym("runtime.casgstatus", text_addr + 0x20, 0x40, 1, true);
    sym("runtime.gopark", text_addr + 0x60, 0x40, 1, true);
    sym("main.f0[go.shape.int]", text_start + 0x10, 0x40, 1, true);
    while !file.len().is_multiple_of(8) {
        file.push(0);
    }
    let symtab_off = file.len() as u64;
    file.extend(&symtab);
    let strtab_off = file.len() as u64;
    file.extend(&strtab);
    // Section names and headers.
    let mut shstrtab = vec![0u8];
    let mut name_off = Vec::new();
    for n in sections.iter().map(|s| s.0).chain([".symtab", ".strtab", ".shstrtab"]) {
        name_off.push(shstrtab.len() as u32);
        shstrtab.extend(n.as_bytes());
        shstrtab.push(0);
    }
    let shstrtab_off = file.len() as u64;
    file.extend(&shstrtab);
    while !file.len().is_multiple_of(8) {
        file.push(0);
    }
    let shoff = file.len() as u64;
    let nsec = sections.len() + 4;
    let sh = |name: u32,
              ty: u32,
              flags: u64,
              addr: u64,
              off: u64,
              size: u64,
              link: u32,
              entsize: u64,
              file: &mut Vec<u8>| {
        file.extend(name.to_le_bytes());
        file.extend(ty.to_le_bytes());
        file.extend(flags.to_le_bytes());
        file.extend(addr.to_le_bytes());
        file.extend(off.to_le_bytes());
        file.extend(size.to_le_bytes());
        file.extend(link.to_le_bytes());
        file.extend((if ty == 2 { 1u32 } else { 0 }).to_le_bytes());
        file.extend(8u64.to_le_bytes());
        file.extend(entsize.to_le_bytes());
    };
    file.extend([0u8; 64]);
    for (i, ((_, ty, flags, data, link), (off, addr))) in sections.iter().zip(&placed).enumerate() {
        sh(name_off[i], *ty, *flags, *addr, *off, data.len() as u64, *link, 0, &mut file);
    }
    let n = sections.len();
    sh(name_off[n], 2, 0, 0, symtab_off, symtab.len() as u64, n as u32 + 2, 24, &mut file);
    sh(name_off[n + 1], 3, 0, 0, strtab_off, strtab.len() as u64, 0, 0, &mut file);
    sh(name_off[n + 2], 3, 0, 0, shstrtab_off, shstrtab.len() as u64, 0, 0, &mut file);
    // ELF header and one PT_LOAD mapping the whole file at BASE.
    let len = file.len() as u64;
    let mut h = Vec::new();
    h.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend(2u16.to_le_bytes());
    h.extend(62u16.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    h.extend(text_addr.to_le_bytes());
    h.extend(64u64.to_le_bytes());
    h.extend(shoff.to_le_bytes());
    h.extend(0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, nsec as u16, nsec as u16 - 1] {
        h.extend(v.to_le_bytes());
    }
    h.extend(1u32.to_le_bytes());
    h.extend(5u32.to_le_bytes());
    for v in [0, BASE, BASE, len, len, 0x1000] {
        h.extend(v.to_le_bytes());
    }
    file[..h.len()].copy_from_slice(&h);
    file
}

/// Seed inputs of `target` (see [`TARGETS`]), built from the real formats and the repo's real
/// layout tables. `cargo xtask fuzz` adds sections of the example Go builds to them.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "pclntab" => vec![pclntab_section(0xffff_fff1, 6, 0), pclntab_section(0xffff_fff0, 3, TEXT)],
        "go_executable" | "go_binary" => vec![go_elf(false, true), go_elf(true, true), go_elf(false, false)],
        "buildinfo" => vec![
            buildinfo_section("go1.27.3", "path\tex/cmd\nmod\tex\t(devel)\t\n"),
            buildinfo_section("go1.19.13", &"dep\tgolang.org/x/sys\tv0.1.0\n".repeat(10)),
        ],
        "epoll_fdinfo" => vec![
            b"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
tfd:        4 events: 80000019 data: 7f2a5c1c0000  pos:0 ino:3f2 sdev:e\n\
tfd:        3 events:       19 data:           c0000a8000  pos:0 ino:3f3 sdev:e\n"
                .to_vec(),
        ],
        "locate" => {
            let mut stripped = vec![0];
            stripped.extend(go_elf(false, false));
            // mov runtime.allm(%rip),%rax; lea 0x10(%rip),%rcx; xchg %rdx,(%rcx); ret
            let code =
                [1, 0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x48, 0x8d, 0x0d, 0x10, 0, 0, 0, 0x48, 0x87, 0x11, 0xc3];
            vec![stripped, code.to_vec()]
        }
        "runtime" => vec![runtime_seed(false, true), runtime_seed(true, true), runtime_seed(false, false)],
        _ => Vec::new(),
    }
}

/// A deterministic mutator for the unit tests (libFuzzer's is far better; this one only has to
/// bring a panic back in `cargo test` if one is reintroduced): bit flips, interesting values,
/// truncation, duplication and byte insertion.
pub fn mutate(seed: &[u8], rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let mut data = seed.to_vec();
    for _ in 0..1 + next() % 4 {
        if data.is_empty() {
            data.push(next() as u8);
            continue;
        }
        let at = (next() % data.len() as u64) as usize;
        match next() % 7 {
            0 => data[at] ^= 1 << (next() % 8),
            1 => data[at] = [0, 0xff, 0x7f, 0x80, 1][(next() % 5) as usize],
            2 => {
                let v: u64 = [0, u64::MAX, 1 << 31, 1 << 40, 0x7fff_ffff, next()][(next() % 6) as usize];
                let end = (at + 8).min(data.len());
                data[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            3 => data.truncate(at),
            4 => {
                let end = (at + 1 + (next() % 64) as usize).min(data.len());
                let chunk = data[at..end].to_vec();
                let to = (next() % data.len() as u64) as usize;
                data.splice(to..to, chunk);
            }
            5 => data.insert(at, next() as u8),
            _ => {
                let end = (at + (next() % 16) as usize).min(data.len());
                data.drain(at..end);
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime seed is a coherent process: the walks find what it holds, so mutations of it
    /// reach deep into them.
    #[test]
    fn runtime_seed_reads_as_the_process_it_describes() {
        for go119 in [false, true] {
            let (flags, image) = Image::decode(&runtime_seed(go119, true));
            assert_eq!(flags, u8::from(go119) | 2);
            let process = GoProcess::prepare(0, image_binary(go119).unwrap(), 0, &image).unwrap();
            assert_eq!(process.wait_reason_text(2), "IO wait");
            let state = process.read_with(&image, true, &image).unwrap();
            assert_eq!(state.inconsistent, 0);
            assert_eq!(state.dead, 1);
            let goids: Vec<u64> = state.goroutines.iter().map(|g| g.goid).collect();
            assert_eq!(goids, [1, 2, 0]);
            let parked = &state.goroutines[0];
            assert_eq!(parked.wait_reason.as_deref(), Some("IO wait"));
            assert_eq!(parked.pcs, [0x40_1234, 0x40_1300, 0x40_1400, 0x40_1500]);
            assert_eq!(parked.netpoll, Some((7, super::super::PollMode::Read)));
            assert_eq!(state.goroutines[1].m_id, Some(0));
            assert_eq!(state.goroutines[1].tid, Some(1000));
            let ms: Vec<(i64, Option<u64>)> = state.ms.iter().map(|m| (m.id, m.curg_goid)).collect();
            assert_eq!(ms, [(0, Some(2)), (1, None)]);
            assert_eq!(state.ms[0].preemptoff, "gc");
            assert_eq!(state.ps.len(), 1);
            assert_eq!((state.ps[0].m_id, state.ps[0].runqsize), (Some(0), 2));
            assert_eq!(state.epfd, 5);
        }
    }

    /// The ELF seed is a Go binary to parkscope: its DWARF gives exactly the release's table
    /// (so the DWARF reader is fuzzed from a valid start), and its pclntab names its functions.
    #[test]
    fn elf_seed_reads_as_a_go_binary() {
        for go119 in [false, true] {
            let version = if go119 { "go1.19.13" } else { "go1.27.3" };
            let elf = go_elf(go119, true);
            let binary = GoBinary::from_bytes(&elf, "seed").unwrap();
            assert_eq!(binary.buildinfo.version, version);
            assert_eq!(binary.layout.source, layout::LayoutSource::Dwarf);
            let table = layout::from_tables(version).unwrap();
            assert_eq!(binary.layout.table(), table.table());
            assert!(binary.function("runtime.gopark").is_some());
            let exe = GoExecutable::from_bytes(&elf, "seed").unwrap().unwrap();
            let (entry, _) = exe.pclntab.function(0).unwrap();
            let loc = exe.lookup(entry).unwrap();
            assert_eq!(
                (loc.function, loc.file, loc.line),
                ("main.f0[go.shape.int]", Some("/src/a.go"), Some(10))
            );
        }
        let stripped = GoBinary::from_bytes(&go_elf(false, false), "seed").unwrap();
        assert_eq!(stripped.layout.source, layout::LayoutSource::Table("go1.27".into()));
    }

    /// Hostile layouts (a DWARF can state any size) are refused before anything is allocated.
    #[test]
    fn implausible_layout_sizes_are_refused() {
        let mut binary = image_binary(false).unwrap();
        binary.layout.set_size(GoStruct::G, 1 << 40);
        let err = GoProcess::prepare(0, binary, 0, &Image::default()).err().unwrap().to_string();
        assert!(err.contains("sizeof(runtime.g)"), "{err}");
        let mut binary = image_binary(false).unwrap();
        binary.layout.set_field(MField::Curg, layout::Field { offset: u64::MAX, size: 8 });
        let err = GoProcess::prepare(0, binary, 0, &Image::default()).err().unwrap().to_string();
        assert!(err.contains("m.curg"), "{err}");
    }

    /// A compressed DWARF section claiming more than MAX_SECTION_SIZE inflated is refused
    /// before anything is allocated for it.
    #[test]
    fn dwarf_bomb_is_refused() {
        let err = GoBinary::from_bytes(&go_elf_with(false, true, Some(2 << 30)), "bomb").unwrap_err();
        assert!(err.to_string().contains(".debug_info states 2147483648 bytes"), "{err}");
    }

    fn process_over(image: &Image) -> GoProcess {
        GoProcess::prepare(0, image_binary(false).unwrap(), 0, image).unwrap()
    }

    /// The runtime seed's image with `edit` applied to its regions.
    fn seed_image(edit: impl FnOnce(&mut BTreeMap<u64, Region>)) -> Image {
        let (_, mut image) = Image::decode(&runtime_seed(false, true));
        edit(&mut image.regions);
        image
    }

    fn set_word(regions: &mut BTreeMap<u64, Region>, addr: u64, v: u64) {
        let (&start, region) = regions.range_mut(..=addr).next_back().unwrap();
        let Region::Bytes(b) = region else { panic!("not a byte region") };
        let at = (addr - start) as usize;
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// An allgs of 3 million readable pointers (1.4 GB of gs at Go 1.27's 456 bytes) is refused
    /// as inconsistent instead of allocated.
    #[test]
    fn huge_allgs_is_refused_not_allocated() {
        let image = seed_image(|r| {
            set_word(r, global_addr("runtime.allgs") + 8, 3_000_000);
            r.insert(ALLGS_ARRAY, Region::Fill { len: 24_000_000, word: G_AT });
        });
        let err = process_over(&image).read_with(&image, true, &image).unwrap_err();
        assert!(err.to_string().contains("allgs length 3000000"), "{err}");
    }

    /// A cycle in allm (m1.alllink -> m0) ends the walk with each M once.
    #[test]
    fn allm_cycle_ends_the_walk() {
        let layout = layout::from_tables("go1.27.3").unwrap();
        let alllink = layout.field(MField::Alllink).offset;
        let image = seed_image(|r| set_word(r, M_AT + 0x1000 + alllink, M_AT));
        let state = process_over(&image).read_with(&image, false, &image).unwrap();
        assert_eq!(state.ms.iter().map(|m| m.id).collect::<Vec<_>>(), [0, 1]);
    }

    /// A wait reason string stating u64::MAX bytes is read as its first 256.
    #[test]
    fn giant_wait_reason_length_is_capped() {
        let image = seed_image(|r| {
            set_word(r, global_addr("runtime.waitReasonStrings") + 16, 0x1_0000_0000);
            set_word(r, global_addr("runtime.waitReasonStrings") + 24, u64::MAX);
            r.insert(0x1_0000_0000, Region::Fill { len: 1 << 20, word: u64::from_le_bytes(*b"abcdefgh") });
        });
        let process = process_over(&image);
        assert_eq!(process.wait_reason_text(1).len(), 256);
        assert!(process.wait_reason_text(1).starts_with("abcdefgh"));
    }

    /// A parked goroutine whose saved frame pointer links to itself or out of its stack gets
    /// its saved pc and the frames that do hold together, no more.
    #[test]
    fn stack_walk_cycles_and_escapes_end() {
        // 0x180 -> 0x180 (itself).
        let image = seed_image(|r| set_word(r, STACK_LO + 0x180, STACK_LO + 0x180));
        let state = process_over(&image).read_with(&image, true, &image).unwrap();
        assert_eq!(state.goroutines[0].pcs, [0x40_1234, 0x40_1300]);
        // 0x200 -> far above the stack's end.
        let image = seed_image(|r| set_word(r, STACK_LO + 0x200, u64::MAX - 7));
        let state = process_over(&image).read_with(&image, true, &image).unwrap();
        assert_eq!(state.goroutines[0].pcs, [0x40_1234, 0x40_1300, 0x40_1400]);
    }

    /// A uprobe function's symbol at the top of the address space, in a section at address 0,
    /// is skipped (its file offset would overflow), not a panic.
    #[test]
    fn function_symbol_at_the_top_of_memory() {
        let mut elf = go_elf(false, true);
        // casgstatus is the only symbol at .text + 0x20; its st_shndx is the 2 bytes before.
        let text = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        let value = (text + 0x20).to_le_bytes();
        let hits: Vec<usize> = (0..elf.len() - 8).filter(|&i| elf[i..i + 8] == value).collect();
        assert_eq!(hits.len(), 1);
        elf[hits[0]..hits[0] + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        // .debug_abbrev (section 6) has address 0.
        elf[hits[0] - 2..hits[0]].copy_from_slice(&6u16.to_le_bytes());
        let binary = GoBinary::from_bytes(&elf, "top").unwrap();
        assert!(binary.function("runtime.casgstatus").is_none());
        assert!(binary.function("runtime.gopark").is_some());
    }

    /// An allp of 64,520 Ps, all readable (found by the fuzzer: a gigabyte of P reads, 10 s a
    /// run), is refused by its byte bound.
    #[test]
    fn huge_allp_is_refused() {
        let image = seed_image(|r| {
            set_word(r, global_addr("runtime.allp") + 8, 64_520);
            r.insert(ALLP_ARRAY, Region::Fill { len: 64_520 * 8, word: P_AT });
        });
        let err = process_over(&image).read_with(&image, false, &image).unwrap_err();
        assert!(err.to_string().contains("allp length 64520"), "{err}");
    }

    /// Every harness over its seeds and a few thousand mutations of them: a panic that comes
    /// back fails here, without the libFuzzer build.
    #[test]
    fn mutated_inputs_never_panic() {
        let per_target = 3000;
        for (name, harness) in TARGETS {
            let seeds = seeds(name);
            assert!(!seeds.is_empty(), "{name} has no seeds");
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
            for seed in &seeds {
                harness(seed);
            }
            for i in 0..per_target {
                let input = mutate(&seeds[i % seeds.len()], &mut rng);
                harness(&input);
            }
        }
    }
}
