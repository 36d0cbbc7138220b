//! parkscope's kernel-side programs. One file per hook under `probes/`; the maps they share are
//! in `maps.rs`, the read-only globals userspace sets at load time in `globals.rs`.
//!
//! Every program filters on the target's tgid first and returns at once for any other task, so
//! the rest of the machine pays only the tracepoint dispatch and one comparison.
#![no_std]
#![no_main]

mod globals;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; the loop only satisfies the type.
    loop {}
}

// GPL-compatible: bpf_probe_read_kernel and the ring buffer helpers require it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
