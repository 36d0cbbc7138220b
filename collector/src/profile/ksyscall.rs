//! The syscall an off-CPU interval was spent in, named from its kernel stack, for profiles taken
//! without the syscall probes (the default: they cost every syscall of the target, and the
//! kernel stack captured at switch-out already says where the thread entered the kernel).
//!
//! x86-64 kernels enter a syscall through `do_syscall_64` into `__x64_sys_NAME`, which the
//! SYSCALL_DEFINE macros expand into `__se_sys_NAME` and `__do_sys_NAME`; the compiler inlines
//! some of those layers away, and several calls are thin wrappers around a `ksys_NAME` or
//! `__sys_NAME` (ksys_read, __sys_recvfrom) that may be all that is left. The frame nearest the
//! entry that names a real syscall wins, so `__x64_sys_epoll_pwait` beats the
//! `do_epoll_wait` below it. Helpers that carry no syscall name are mapped by a short table for
//! when every wrapper was inlined.

use parkscope_common::syscalls;

/// Prefixes that are followed by a syscall's own name.
const PREFIXES: [&str; 10] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__x64_compat_sys_",
    "__ia32_compat_sys_",
    "__se_sys_",
    "__do_sys_",
    "__se_compat_sys_",
    "__do_compat_sys_",
    "ksys_",
    "__sys_",
];

/// Inner helpers that only one family of calls goes through, for stacks whose wrappers were
/// all inlined. Consulted only when no frame names the call itself.
/// (hrtimer_nanosleep is not here: nanosleep and clock_nanosleep share it.)
const HELPERS: [(&str, &str); 6] = [
    ("do_epoll_wait", "epoll_wait"),
    ("do_sys_poll", "poll"),
    ("core_sys_select", "select"),
    ("do_select", "select"),
    ("do_futex", "futex"),
    ("futex_wait", "futex"),
];

/// The syscall named by a kernel stack (function names, innermost first), if it shows one.
pub fn syscall_from_kernel_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let frames: Vec<&str> = functions.into_iter().map(base_name).collect();
    let named = frames
        .iter()
        .rev()
        .find_map(|f| PREFIXES.iter().find_map(|p| f.strip_prefix(p)).and_then(syscall_name));
    named.or_else(|| {
        frames
            .iter()
            .rev()
            .find_map(|f| HELPERS.iter().find(|(h, _)| h == f).and_then(|(_, s)| syscall_name(s)))
    })
}

/// The table's own spelling of a syscall name (a `&'static str`), if it is one.
fn syscall_name(name: &str) -> Option<&'static str> {
    syscalls::number(name).and_then(syscalls::name)
}

/// A kernel symbol without the compiler's clone suffixes (`do_compat_epoll_pwait.part.0`) and
/// without the `+0x2a/0x50` offset of /proc stack text.
fn base_name(f: &str) -> &str {
    let f = f.split('+').next().unwrap_or(f).trim();
    f.split('.').next().unwrap_or(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(stack: &[&str]) -> Option<&'static str> {
        syscall_from_kernel_stack(stack.iter().copied())
    }

    // Stacks as this machine's kernel (6.x, x86-64) shows them in real profiles and in
    // /proc/PID/task/TID/stack, innermost first.
    #[test]
    fn names_the_syscall_nearest_the_entry() {
        let entry = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"];
        let with_entry =
            |inner: &[&'static str]| -> Vec<&'static str> { inner.iter().chain(&entry).copied().collect() };
        let futex =
            with_entry(&["futex_do_wait", "__futex_wait", "futex_wait", "do_futex", "__x64_sys_futex"]);
        assert_eq!(name(&futex), Some("futex"));
        let epoll = with_entry(&["do_epoll_wait", "do_compat_epoll_pwait.part.0", "__x64_sys_epoll_pwait"]);
        assert_eq!(name(&epoll), Some("epoll_pwait"));
        assert_eq!(name(&with_entry(&["do_epoll_wait", "__x64_sys_epoll_wait"])), Some("epoll_wait"));
        // read and write reach vfs through ksys_* with the __x64_sys_ wrapper inlined.
        assert_eq!(name(&with_entry(&["anon_pipe_read", "vfs_read", "ksys_read"])), Some("read"));
        assert_eq!(name(&with_entry(&["anon_pipe_write", "vfs_write", "ksys_write"])), Some("write"));
        let recv = with_entry(&[
            "wait_woken",
            "sk_wait_data",
            "tcp_recvmsg_locked",
            "tcp_recvmsg",
            "sock_recvmsg",
            "__sys_recvfrom",
            "__x64_sys_recvfrom",
        ]);
        assert_eq!(name(&recv), Some("recvfrom"));
        let sleep = with_entry(&["hrtimer_nanosleep", "common_nsleep_timens", "__x64_sys_clock_nanosleep"]);
        assert_eq!(name(&sleep), Some("clock_nanosleep"));
        assert_eq!(name(&with_entry(&["hrtimer_nanosleep", "__x64_sys_nanosleep"])), Some("nanosleep"));
        assert_eq!(name(&with_entry(&["__do_sys_pause"])), Some("pause"));
        // /proc stack text carries offsets.
        assert_eq!(
            name(&["hrtimer_nanosleep+0xb5/0x130", "__x64_sys_nanosleep+0xae/0xf0"]),
            Some("nanosleep")
        );
    }

    #[test]
    fn falls_back_to_helpers_and_ignores_what_is_no_syscall() {
        assert_eq!(name(&["do_epoll_wait", "do_syscall_64"]), Some("epoll_wait"));
        assert_eq!(name(&["futex_do_wait", "__futex_wait", "futex_wait"]), Some("futex"));
        // ksys_mmap_pgoff names no syscall of the table; the fault path is no syscall at all.
        assert_eq!(name(&["ksys_mmap_pgoff", "do_syscall_64"]), None);
        assert_eq!(
            name(&["schedule", "io_schedule", "folio_wait_bit", "filemap_fault", "asm_exc_page_fault"]),
            None
        );
        // A preempted thread (involuntary switch) was not in a syscall.
        assert_eq!(name(&["preempt_schedule_irq", "irqentry_exit", "asm_sysvec_apic_timer_interrupt"]), None);
        assert_eq!(name(&[]), None);
    }
}
