//! The Go version and main module a binary was built from, read from its `.go.buildinfo`
//! section (the same record `go version -m` reads). Its presence is what makes a binary a Go
//! binary; it survives `-ldflags="-s -w"`.

/// What `.go.buildinfo` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// e.g. `go1.27.3`.
    pub version: String,
    /// The main module's path (`mod` line), else the main package path (`path` line).
    pub module: Option<String>,
}

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_SIZE: usize = 32;
const FLAGS_OFFSET: usize = 15;
/// Since Go 1.18 the strings follow the header inline (varint length + bytes).
const FLAG_VERSION_INLINE: u8 = 0x2;

/// Parses the section's bytes. `Err` says why the record cannot be read.
pub fn parse(section: &[u8]) -> Result<BuildInfo, String> {
    if section.len() < HEADER_SIZE || !section.starts_with(MAGIC) {
        return Err("no Go build information header".into());
    }
    if section[FLAGS_OFFSET] & FLAG_VERSION_INLINE == 0 {
        // Before 1.18 the header held pointers into the data segment; those releases are far
        // older than anything with a supported runtime layout.
        return Err("build information in the pre-Go-1.18 format".into());
    }
    let (version, rest) = read_string(&section[HEADER_SIZE..]).ok_or("truncated Go version string")?;
    let modinfo = read_string(rest).map(|(m, _)| m).unwrap_or_default();
    let field = |key: &str| {
        modinfo.lines().find_map(|l| {
            let mut parts = l.split('\t');
            (parts.next() == Some(key)).then(|| parts.next().map(str::to_owned)).flatten()
        })
    };
    Ok(BuildInfo { version, module: field("mod").or_else(|| field("path")) })
}

/// The build information of the executable of process `pid` (through /proc/PID/exe, so also
/// for a target in another mount namespace), reading only that section: what can still be said
/// of a Go program whose runtime cannot be read. None for a non-Go or unreadable binary.
pub fn of_process(pid: u32) -> Option<BuildInfo> {
    use object::{Object, ObjectSection};
    let file = std::fs::File::open(format!("/proc/{pid}/exe")).ok()?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let section = elf.section_by_name(".go.buildinfo")?;
    parse(section.data().ok()?).ok()
}

fn read_string(data: &[u8]) -> Option<(String, &[u8])> {
    let mut len = 0u64;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = *data.get(i)?;
        len |= u64::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(usize::try_from(len).ok()?)?;
    let s = String::from_utf8_lossy(data.get(i..end)?).into_owned();
    Some((s, &data[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8);
        s.push(FLAG_VERSION_INLINE);
        s.resize(HEADER_SIZE, 0);
        for text in [version, modinfo] {
            s.push(text.len() as u8);
            s.extend_from_slice(text.as_bytes());
        }
        s
    }

    #[test]
    fn reads_version_and_module() {
        let info = parse(&section("go1.27.3", "path\tex/cmd\nmod\tex\t(devel)\t\n")).unwrap();
        assert_eq!(info.version, "go1.27.3");
        assert_eq!(info.module.as_deref(), Some("ex"));
        let info = parse(&section("go1.19.8", "path\tcommand-line-arguments\n")).unwrap();
        assert_eq!(info.module.as_deref(), Some("command-line-arguments"));
    }

    #[test]
    fn rejects_other_data() {
        assert!(parse(b"not a go binary at all, not at all").is_err());
        let mut old = section("go1.16", "");
        old[FLAGS_OFFSET] = 0;
        assert!(parse(&old).unwrap_err().contains("pre-Go-1.18"));
    }

    #[test]
    fn long_strings_use_multibyte_lengths() {
        let long = "x".repeat(300);
        let mut s = section("go1.27.3", "");
        s.truncate(HEADER_SIZE + 9);
        s.extend_from_slice(&[0xac, 0x02]);
        s.extend_from_slice(long.as_bytes());
        assert_eq!(parse(&s).unwrap().module, None);
        assert_eq!(read_string(&[0xac, 0x02]).map(|(s, _)| s.len()), None);
    }
}
