//! A minimal reader of the running kernel's BTF (/sys/kernel/btf/vmlinux): just enough to find
//! a struct member's byte offset (e.g. `task_struct.pid`) and a tracepoint prototype's arity, so
//! the raw-tracepoint programs read kernel structs at offsets the kernel itself publishes instead
//! of hard-coded ones.
//!
//! Why not a crate: aya-obj keeps its type lookups crate-private, and btf-rs is LGPL, which does
//! not sit well in a statically linked MIT/Apache binary. The format is small and stable
//! (Documentation/bpf/btf.rst).

use std::collections::HashMap;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;

/// One parsed type: its kind, name, the `size_or_type` word, and for structs/unions and
/// function prototypes their members (name, offset in bits) or parameter count.
#[derive(Debug, Clone)]
struct BtfType {
    kind: u32,
    name: String,
    size_or_type: u32,
    members: Vec<(String, u32)>,
    vlen: u32,
}

/// The parsed BTF: types by id (1-based) and struct ids by name.
#[derive(Debug)]
pub struct KernelBtf {
    types: Vec<BtfType>,
    by_name: HashMap<String, Vec<u32>>,
}

/// Errors are plain strings: they end up in one-line messages naming the file.
pub type BtfResult<T> = Result<T, String>;

fn u32_at(b: &[u8], off: usize) -> BtfResult<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {off}"))
}

impl KernelBtf {
    /// Reads and parses [`VMLINUX_BTF`].
    pub fn load() -> BtfResult<Self> {
        let bytes = std::fs::read(VMLINUX_BTF).map_err(|e| format!("read {VMLINUX_BTF}: {e}"))?;
        Self::parse(&bytes).map_err(|e| format!("{VMLINUX_BTF}: {e}"))
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(b: &[u8]) -> BtfResult<Self> {
        if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != BTF_MAGIC {
            return Err("not little-endian BTF (bad magic)".into());
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = hdr_len + u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = hdr_len + u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let strings = b.get(str_off..str_off + str_len).ok_or("string section out of range")?;
        let name_at = |off: u32| -> String {
            let s = strings.get(off as usize..).unwrap_or_default();
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };

        let section = b.get(type_off..type_off + type_len).ok_or("type section out of range")?;
        let mut types = Vec::new();
        let mut at = 0usize;
        while at < section.len() {
            let name_off = u32_at(section, at)?;
            let info = u32_at(section, at + 4)?;
            let size_or_type = u32_at(section, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            // Bytes of kind-specific data after the common 12-byte header.
            let extra = match kind {
                1 | 14 | 17 => 4,              // INT, VAR, DECL_TAG
                3 => 12,                       // ARRAY
                6 => 8 * vlen as usize,        // ENUM
                13 => 8 * vlen as usize,       // FUNC_PROTO
                15 | 19 => 12 * vlen as usize, // DATASEC, ENUM64
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen as usize {
                        let m = at + 12 * i;
                        let offset = u32_at(section, m + 8)?;
                        // With kind_flag the low 24 bits are the bit offset (bitfield size above).
                        let bits = if kind_flag { offset & 0x00ff_ffff } else { offset };
                        members.push((name_at(u32_at(section, m)?), bits));
                    }
                    12 * vlen as usize
                }
                0 | 2 | 7..=12 | 16 | 18 => 0,
                other => return Err(format!("unknown BTF kind {other}")),
            };
            at += extra;
            types.push(BtfType { kind, name: name_at(name_off), size_or_type, members, vlen });
        }
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, t) in types.iter().enumerate() {
            if !t.name.is_empty() {
                by_name.entry(t.name.clone()).or_default().push(i as u32 + 1);
            }
        }
        Ok(Self { types, by_name })
    }

    fn get(&self, id: u32) -> Option<&BtfType> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// Byte offset of `member` in `struct name` (a direct member, not inside an anonymous union).
    pub fn member_offset(&self, name: &str, member: &str) -> BtfResult<u32> {
        let id = self
            .by_name
            .get(name)
            .and_then(|ids| {
                ids.iter().copied().find(|&id| self.get(id).is_some_and(|t| t.kind == KIND_STRUCT))
            })
            .ok_or_else(|| format!("no struct {name} in kernel BTF"))?;
        let t = self.get(id).expect("id from the index");
        let (_, bits) = t
            .members
            .iter()
            .find(|(n, _)| n == member)
            .ok_or_else(|| format!("struct {name} has no member {member}"))?;
        if bits % 8 != 0 {
            return Err(format!("{name}.{member} is a bitfield"));
        }
        Ok(bits / 8)
    }

    /// Parameter count of the function prototype behind typedef `name` (such as
    /// `btf_trace_sched_switch`, whose first parameter is the tracepoint's private data).
    pub fn typedef_proto_params(&self, name: &str) -> BtfResult<u32> {
        let mut id = *self
            .by_name
            .get(name)
            .and_then(|ids| ids.first())
            .ok_or_else(|| format!("no type {name} in kernel BTF"))?;
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
        let btf = KernelBtf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("s", "b").unwrap(), 4);
        assert!(btf.member_offset("s", "c").is_err());
        assert!(btf.member_offset("nope", "a").is_err());
        assert_eq!(btf.typedef_proto_params("t").unwrap(), 2);
        assert!(KernelBtf::parse(b"garbage").is_err());
    }

    /// Ground truth: the running kernel. task_struct declares `pid_t pid; pid_t tgid;` back to
    /// back, and sched_switch's prototype is (data, preempt, prev, next, prev_state).
    #[test]
    fn running_kernel_task_struct() {
        let btf = KernelBtf::load().expect("kernel BTF (CONFIG_DEBUG_INFO_BTF)");
        let pid = btf.member_offset("task_struct", "pid").unwrap();
        let tgid = btf.member_offset("task_struct", "tgid").unwrap();
        assert_eq!(tgid, pid + 4);
        assert!(pid > 0);
        assert_eq!(btf.typedef_proto_params("btf_trace_sched_switch").unwrap(), 5);
        assert_eq!(btf.typedef_proto_params("btf_trace_sched_waking").unwrap(), 2);
    }
}
