//! The kernel-side programs, compiled by build.rs (aya-build) and embedded in the binary so a
//! single file is all a production box needs.

/// The BPF ELF object, 8-byte aligned as aya's ELF parser requires.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/parkscope"))
}
