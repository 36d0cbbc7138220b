//! A minimal reader of the running kernel's BTF (/sys/kernel/btf/vmlinux): just enough to find
//! a struct member's byte offset (e.g. `task_struct.pid`) and a tracepoint prototype's arity, so
//! the raw-tracepoint programs read kernel structs at offsets the kernel itself publishes instead
//! of hard-coded ones.
//!
//! Why not a crate: aya-obj keeps its type lookups crate-private, and btf-rs is LGPL, which does
//! not sit well in a statically linked MIT/Apache binary. The format is small and stable
//! (Documentation/bpf/btf.rst).

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;

/// The BTF blob, with the byte offset of every type record (type id `i` is `records[i - 1]`).
/// Names and members are decoded only for the few types looked up: the kernel's BTF has some
/// 150,000 types, and decoding them all (names as strings, a name index) was most of the CPU a
/// fresh `snapshot` spent before attaching.
#[derive(Debug)]
pub struct KernelBtf {
    bytes: Blob,
    /// The string and type sections, as ranges of `bytes` (checked against its length).
    strings: std::ops::Range<usize>,
    types: std::ops::Range<usize>,
    records: Vec<u32>,
}

/// The BTF bytes: the kernel's own, mapped read-only where the kernel allows it (Linux >= 6.16
/// lets /sys/kernel/btf/vmlinux be mapped: no 5.5 MB copy into freshly zeroed pages, which was
/// a tenth of a fresh snapshot's CPU), else read into memory.
enum Blob {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Mapped(m) => m,
            Blob::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if matches!(self, Blob::Mapped(_)) { "mapped" } else { "owned" };
        write!(f, "Blob({how}, {} bytes)", self.len())
    }
}

/// One type record's common header.
struct Record {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    size_or_type: u32,
    /// Offset of the kind-specific data after the header, within the type section.
    data: usize,
}

/// Errors are plain strings: they end up in one-line messages naming the file.
pub type BtfResult<T> = Result<T, String>;

fn u32_at(b: &[u8], off: usize) -> BtfResult<u32> {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {off}"))
}

/// `hdr_len + off .. + len` as a checked range of a blob of `total` bytes.
fn section(
    hdr_len: usize,
    off: u32,
    len: u32,
    total: usize,
    what: &str,
) -> BtfResult<std::ops::Range<usize>> {
    let start = hdr_len.checked_add(off as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= total => Ok(start..end),
        _ => Err(format!("{what} section out of range")),
    }
}

impl KernelBtf {
    /// Reads and parses [`VMLINUX_BTF`].
    pub fn load() -> BtfResult<Self> {
        let file = std::fs::File::open(VMLINUX_BTF).map_err(|e| format!("open {VMLINUX_BTF}: {e}"))?;
        // Private: the kernel refuses shared mappings of it. SAFETY: the mapping is read-only,
        // of a file no one can write or truncate (the kernel's own BTF, fixed while it runs),
        // so its bytes cannot change under us.
        let bytes = match unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
            Ok(map) => Blob::Mapped(map),
            Err(e) => {
                tracing::debug!("{VMLINUX_BTF} cannot be mapped ({e}); reading it");
                Blob::Owned(std::fs::read(VMLINUX_BTF).map_err(|e| format!("read {VMLINUX_BTF}: {e}"))?)
            }
        };
        Self::index(bytes).map_err(|e| format!("{VMLINUX_BTF}: {e}"))
    }

    /// Indexes a little-endian BTF blob: checks the header and walks the type records once,
    /// keeping where each starts.
    pub fn parse(bytes: Vec<u8>) -> BtfResult<Self> {
        Self::index(Blob::Owned(bytes))
    }

    fn index(bytes: Blob) -> BtfResult<Self> {
        let b = &bytes[..];
        if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != BTF_MAGIC {
            return Err("not little-endian BTF (bad magic)".into());
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let types = section(hdr_len, u32_at(b, 8)?, u32_at(b, 12)?, b.len(), "type")?;
        let strings = section(hdr_len, u32_at(b, 16)?, u32_at(b, 20)?, b.len(), "string")?;
        let sec = &b[types.clone()];
        let mut records = Vec::with_capacity(sec.len() / 24);
        let mut at = 0usize;
        while at < sec.len() {
            let rec = record(sec, at)?;
            let vlen = rec.vlen as usize;
            // Bytes of kind-specific data after the common 12-byte header.
            let extra = match rec.kind {
                1 | 14 | 17 => 4,                                // INT, VAR, DECL_TAG
                3 => 12,                                         // ARRAY
                6 | KIND_FUNC_PROTO => 8 * vlen,                 // ENUM, FUNC_PROTO
                KIND_STRUCT | KIND_UNION | 15 | 19 => 12 * vlen, // members, DATASEC, ENUM64
                0 | 2 | 7..=12 | 16 | 18 => 0,
                other => return Err(format!("unknown BTF kind {other}")),
            };
            if rec.data + extra > sec.len() {
                return Err(format!("type record at byte {at} runs past the type section"));
            }
            records.push(u32::try_from(types.start + at).map_err(|_| "BTF larger than 4 GiB")?);
            at = rec.data + extra;
        }
        Ok(Self { bytes, strings, types, records })
    }

    /// The blob cut after the last of the types named `names`, for a reader that only looks
    /// those names up (aya, for the ids of the `btf_trace_*` typedefs tp_btf programs attach
    /// to). Ids are positions in the type section, so every type kept keeps its id; the
    /// tracepoint typedefs come early (about a tenth of the way in on 6.18), so the reader
    /// parses that much instead of all. The whole blob if a name is missing (the reader then
    /// says which).
    pub fn into_prefix_through(self, names: &[&str]) -> Vec<u8> {
        let mut missing: Vec<&str> = names.to_vec();
        let mut end = 0usize;
        for id in 1..=self.records.len() as u32 {
            if missing.is_empty() {
                break;
            }
            let Some(r) = self.get(id) else { break };
            if let Some(i) = missing.iter().position(|n| self.name_is(r.name_off, n)) {
                missing.swap_remove(i);
                // The record's end: where the next one starts, or the section's end.
                end = self.records.get(id as usize).map_or(self.types.end, |&next| next as usize);
            }
        }
        if !missing.is_empty() || names.is_empty() {
            return self.bytes.to_vec();
        }
        let type_len = (end - self.types.start) as u32;
        let hdr_len = u32_at(&self.bytes, 4).unwrap_or(0) as usize;
        let mut blob = if hdr_len == 24 && self.types.start == 24 && self.strings.start == self.types.end {
            // The usual layout (header, types, strings): the types after the cut are left out,
            // and the strings moved up behind the kept ones (half the bytes for aya to copy).
            let mut blob = Vec::with_capacity(end + self.strings.len());
            blob.extend_from_slice(&self.bytes[..end]);
            blob.extend_from_slice(&self.bytes[self.strings.clone()]);
            blob[16..20].copy_from_slice(&type_len.to_le_bytes());
            blob
        } else {
            self.bytes.to_vec()
        };
        blob[12..16].copy_from_slice(&type_len.to_le_bytes());
        blob
    }

    fn section(&self) -> &[u8] {
        &self.bytes[self.types.clone()]
    }

    /// The record of type `id` (1-based).
    fn get(&self, id: u32) -> Option<Record> {
        let at = *self.records.get(id.checked_sub(1)? as usize)? as usize - self.types.start;
        record(self.section(), at).ok()
    }

    /// Whether the string at `off` is `name` (compared in place, without decoding).
    fn name_is(&self, off: u32, name: &str) -> bool {
        let strings = &self.bytes[self.strings.clone()];
        let start = off as usize;
        let end = start + name.len();
        strings.get(start..end) == Some(name.as_bytes()) && strings.get(end) == Some(&0)
    }

    /// Ids of the types named `name`, in id order.
    fn ids_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (u32, Record)> + 'a {
        (1..=self.records.len() as u32)
            .filter_map(|id| self.get(id).map(|r| (id, r)))
            .filter(move |(_, r)| self.name_is(r.name_off, name))
    }

    /// Byte offset of `member` in `struct name` (a direct member, not inside an anonymous union).
    pub fn member_offset(&self, name: &str, member: &str) -> BtfResult<u32> {
        let (_, t) = self
            .ids_named(name)
            .find(|(_, r)| r.kind == KIND_STRUCT)
            .ok_or_else(|| format!("no struct {name} in kernel BTF"))?;
        let sec = self.section();
        let mut found = None;
        for i in 0..t.vlen as usize {
            let m = t.data + 12 * i;
            if self.name_is(u32_at(sec, m)?, member) {
                found = Some(u32_at(sec, m + 8)?);
                break;
            }
        }
        let offset = found.ok_or_else(|| format!("struct {name} has no member {member}"))?;
        // With kind_flag the low 24 bits are the bit offset (bitfield size above).
        let bits = if t.kind_flag { offset & 0x00ff_ffff } else { offset };
        if bits % 8 != 0 {
            return Err(format!("{name}.{member} is a bitfield"));
        }
        Ok(bits / 8)
    }

    /// Parameter count of the function prototype behind typedef `name` (such as
    /// `btf_trace_sched_switch`, whose first parameter is the tracepoint's private data).
    pub fn typedef_proto_params(&self, name: &str) -> BtfResult<u32> {
        let (mut id, _) =
            self.ids_named(name).next().ok_or_else(|| format!("no type {name} in kernel BTF"))?;
        // typedef -> pointer -> func_proto
        for _ in 0..4 {
            let t = self.get(id).ok_or_else(|| format!("dangling type id {id}"))?;
            match t.kind {
                KIND_TYPEDEF | KIND_PTR => id = t.size_or_type,
                KIND_FUNC_PROTO => return Ok(t.vlen),
                k => return Err(format!("{name} resolves to BTF kind {k}, not a function prototype")),
            }
        }
        Err(format!("{name}: type chain too deep"))
    }
}

/// The common header of the type record at `at` of the type section `sec`.
fn record(sec: &[u8], at: usize) -> BtfResult<Record> {
    let info = u32_at(sec, at + 4)?;
    Ok(Record {
        name_off: u32_at(sec, at)?,
        kind: (info >> 24) & 0x1f,
        vlen: info & 0xffff,
        kind_flag: info >> 31 == 1,
        size_or_type: u32_at(sec, at + 8)?,
        data: at + 12,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built blob: struct s { int a; int b; } and typedef t -> ptr -> proto(2 params).
    fn blob() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0t\0".to_vec();
        let mut types = Vec::new();
        let mut ty = |name: u32, info: u32, st: u32, extra: &[u32]| {
            for w in [name, info, st].iter().chain(extra) {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: struct s, vlen 2, size 8; members a@0 bits, b@32 bits (type 0 is fine here).
        ty(1, (KIND_STRUCT << 24) | 2, 8, &[3, 0, 0, 5, 0, 32]);
        // 2: typedef t -> 3
        ty(7, KIND_TYPEDEF << 24, 3, &[]);
        // 3: ptr -> 4
        ty(0, KIND_PTR << 24, 4, &[]);
        // 4: func_proto with 2 params
        ty(0, (KIND_FUNC_PROTO << 24) | 2, 0, &[0, 0, 0, 0]);
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn parses_members_and_protos() {
        let btf = KernelBtf::parse(blob()).unwrap();
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("s", "b").unwrap(), 4);
        assert!(btf.member_offset("s", "c").is_err());
        assert!(btf.member_offset("nope", "a").is_err());
        assert_eq!(btf.typedef_proto_params("t").unwrap(), 2);
        assert!(KernelBtf::parse(b"garbage".to_vec()).is_err());
    }

    /// The prefix keeps the ids of the named types and ends after the last of them.
    #[test]
    fn prefix_through_names_keeps_ids() {
        let cut =
            KernelBtf::parse(KernelBtf::parse(blob()).unwrap().into_prefix_through(&["t", "s"])).unwrap();
        assert_eq!(cut.records.len(), 2);
        assert_eq!(cut.member_offset("s", "b").unwrap(), 4);
        let whole =
            KernelBtf::parse(KernelBtf::parse(blob()).unwrap().into_prefix_through(&["t", "nope"])).unwrap();
        assert_eq!(whole.records.len(), 4);
        assert_eq!(whole.typedef_proto_params("t").unwrap(), 2);
    }

    /// A header longer than the 24 bytes known here (a later kernel's added fields) is kept as
    /// it is: the blob is cut by its type length alone, every offset staying valid.
    #[test]
    fn prefix_of_a_longer_header_keeps_its_layout() {
        let mut b = blob();
        // hdr_len 32: eight more header bytes, the sections' offsets (relative to it) unchanged.
        b[4..8].copy_from_slice(&32u32.to_le_bytes());
        b.splice(24..24, [0u8; 8]);
        let cut = KernelBtf::parse(b.clone()).unwrap().into_prefix_through(&["s"]);
        assert_eq!(cut.len(), b.len());
        let cut = KernelBtf::parse(cut).unwrap();
        assert_eq!(cut.records.len(), 1);
        assert_eq!(cut.member_offset("s", "b").unwrap(), 4);
    }

    /// Ground truth: aya, given the prefix, finds the same tracepoint typedef ids as given the
    /// whole of the running kernel's BTF.
    #[test]
    fn running_kernel_prefix_has_the_same_ids() {
        use aya::{Btf, Endianness};
        use aya_obj::btf::BtfKind;
        let names = ["btf_trace_sched_switch", "btf_trace_sched_waking"];
        let whole = Btf::from_sys_fs().unwrap();
        let prefix = KernelBtf::load().unwrap().into_prefix_through(&names);
        let cut = Btf::parse(&prefix, Endianness::default()).unwrap();
        for n in names {
            let id = whole.id_by_type_name_kind(n, BtfKind::Typedef).unwrap();
            assert_eq!(cut.id_by_type_name_kind(n, BtfKind::Typedef).unwrap(), id, "{n}");
        }
        let all = KernelBtf::load().unwrap().records.len();
        assert!(KernelBtf::parse(prefix).unwrap().records.len() < all);
    }

    /// A type section that ends inside a record, or points past the blob, is an error.
    #[test]
    fn truncated_sections_are_errors() {
        let good = blob();
        for cut in [1u32, 4, 13] {
            let mut b = good.clone();
            // type_len (header bytes 12..16) shortened: the last record runs past the section.
            let type_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) - cut;
            b[12..16].copy_from_slice(&type_len.to_le_bytes());
            assert!(KernelBtf::parse(b).is_err(), "cut {cut}");
        }
        let mut b = good.clone();
        b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(KernelBtf::parse(b).is_err());
        let mut b = good;
        b[8..12].copy_from_slice(&(u32::MAX - 2).to_le_bytes());
        assert!(KernelBtf::parse(b).is_err());
    }

    /// Ground truth: the running kernel. task_struct declares `pid_t pid; pid_t tgid;` back to
    /// back, and sched_switch's prototype is (data, preempt, prev, next, prev_state).
    #[test]
    fn running_kernel_task_struct() {
        let btf = KernelBtf::load().expect("kernel BTF (CONFIG_DEBUG_INFO_BTF)");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        if (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 16) {
            assert!(matches!(btf.bytes, Blob::Mapped(_)), "Linux {release} maps its BTF: {:?}", btf.bytes);
        }
        let pid = btf.member_offset("task_struct", "pid").unwrap();
        let tgid = btf.member_offset("task_struct", "tgid").unwrap();
        assert_eq!(tgid, pid + 4);
        assert!(pid > 0);
        assert_eq!(btf.typedef_proto_params("btf_trace_sched_switch").unwrap(), 5);
        assert_eq!(btf.typedef_proto_params("btf_trace_sched_waking").unwrap(), 2);
    }
}
