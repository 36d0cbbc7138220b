//! tracefs: making sure it is mounted, and reading tracepoint record layouts from format files
//! so the eBPF side never hard-codes a kernel struct offset.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use super::KernelError;

/// Where tracefs lives on every kernel we support.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at [`TRACEFS`] if it is not mounted yet (a fresh VM often has it empty).
/// Tracepoint attachment and format parsing both need it.
pub fn ensure_mounted() -> Result<PathBuf, KernelError> {
    let root = PathBuf::from(TRACEFS);
    if root.join("events").is_dir() {
        return Ok(root);
    }
    let source = CString::new("tracefs").expect("static string");
    let target = CString::new(TRACEFS).expect("static string");
    // SAFETY: valid NUL-terminated strings; a null data pointer is allowed for tracefs.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(KernelError::Tracefs {
            reason: format!("mount tracefs on {TRACEFS}: {}", std::io::Error::last_os_error()),
        });
    }
    tracing::info!("mounted tracefs on {TRACEFS}");
    Ok(root)
}

/// Offset of `field` in the record of tracepoint `category/name`, from its format file.
pub fn field_offset(root: &Path, category: &str, name: &str, field: &str) -> Result<u32, KernelError> {
    let path = root.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| KernelError::Tracefs { reason: format!("read {}: {e}", path.display()) })?;
    parse_field_offset(&text, field)
        .ok_or_else(|| KernelError::Tracefs { reason: format!("no field `{field}` in {}", path.display()) })
}

/// Finds `field` in a tracefs format description such as
/// `\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;`.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        // The declaration ends in the field name, possibly followed by an array suffix.
        let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")).and_then(|o| o.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_SWITCH: &str = "name: sched_switch
ID: 316
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;
";

    #[test]
    fn parses_offsets() {
        assert_eq!(parse_field_offset(SCHED_SWITCH, "prev_pid"), Some(24));
        assert_eq!(parse_field_offset(SCHED_SWITCH, "prev_state"), Some(32));
        assert_eq!(parse_field_offset(SCHED_SWITCH, "next_pid"), Some(56));
        assert_eq!(parse_field_offset(SCHED_SWITCH, "prev_comm"), Some(8));
        assert_eq!(parse_field_offset(SCHED_SWITCH, "pid"), None);
        assert_eq!(parse_field_offset(SCHED_SWITCH, "common_pid"), Some(4));
    }

    /// Ground truth: the running kernel's own format file.
    #[test]
    fn reads_running_kernel_format() {
        let root = ensure_mounted().expect("tracefs (tests run as root)");
        let prev = field_offset(&root, "sched", "sched_switch", "prev_pid").unwrap();
        let next = field_offset(&root, "sched", "sched_switch", "next_pid").unwrap();
        assert!(prev >= 8 && next > prev);
        field_offset(&root, "sched", "sched_waking", "pid").unwrap();
    }
}
