//! Syscall names, classes and first-argument kinds for x86_64: what `nr` means to a person
//! (`read`, class `read`, fd in arg0) and to the kernel side (whether arg0 keys a histogram).

use crate::syscall_table::SYSCALL_NAMES;

/// What kind of waiting a syscall stands for, as shown in snapshots and schedtrace lines.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyscallClass {
    Read = 0,
    Write = 1,
    Poll = 2,
    Futex = 3,
    Sleep = 4,
    Other = 5,
}

impl SyscallClass {
    /// All classes, in display order.
    pub const ALL: [SyscallClass; 6] = [
        SyscallClass::Read,
        SyscallClass::Write,
        SyscallClass::Poll,
        SyscallClass::Futex,
        SyscallClass::Sleep,
        SyscallClass::Other,
    ];

    /// The lower-case name used in JSON and schedtrace (`read`, `write`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            SyscallClass::Read => "read",
            SyscallClass::Write => "write",
            SyscallClass::Poll => "poll",
            SyscallClass::Futex => "futex",
            SyscallClass::Sleep => "sleep",
            SyscallClass::Other => "other",
        }
    }
}

/// What the first argument of a syscall is, so the kernel side knows whether to key its
/// histograms by it and userspace knows how to describe it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Not interesting (a pointer, a count, a clock id...).
    None = 0,
    /// A file descriptor.
    Fd = 1,
    /// A futex word's user address (or an array of them for futex_waitv).
    FutexAddr = 2,
}

impl ArgKind {
    pub const fn from_u8(v: u8) -> ArgKind {
        match v {
            1 => ArgKind::Fd,
            2 => ArgKind::FutexAddr,
            _ => ArgKind::None,
        }
    }
}

const READ: &[&str] = &["read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg"];
const WRITE: &[&str] =
    &["write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg"];
const POLL: &[&str] = &["epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect6"];
const FUTEX: &[&str] = &["futex", "futex_wait", "futex_waitv"];
const SLEEP: &[&str] = &["nanosleep", "clock_nanosleep"];

/// Syscalls outside the read/write/poll families whose first argument is still an fd: an fd
/// shown next to `accept4` or `fsync` is what a person needs to know first.
const OTHER_FD_FIRST: &[&str] = &[
    "accept",
    "accept4",
    "connect",
    "shutdown",
    "bind",
    "listen",
    "getsockopt",
    "setsockopt",
    "ioctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "ftruncate",
    "fallocate",
    "lseek",
    "getdents64",
    "fstat",
    "newfstatat",
    "splice",
    "tee",
    "sendfile",
    "close",
    "epoll_ctl",
    "signalfd4",
    "timerfd_settime",
    "timerfd_gettime",
    "inotify_add_watch",
    "copy_file_range",
    "io_uring_enter",
    "readahead",
];

fn contains(list: &[&str], name: &str) -> bool {
    list.contains(&name)
}

/// The kernel name of syscall `nr` on x86_64, if it has one.
pub fn name(nr: u32) -> Option<&'static str> {
    SYSCALL_NAMES.binary_search_by_key(&nr, |(n, _)| u32::from(*n)).ok().map(|i| SYSCALL_NAMES[i].1)
}

/// `nr` for people: its kernel name, or `syscall_<nr>` when the table has none (a newer kernel).
pub fn display_name(nr: u32) -> DisplayName {
    DisplayName(nr)
}

/// See [`display_name`]; formats without allocating, so the kernel-side crate can share it.
#[derive(Clone, Copy, Debug)]
pub struct DisplayName(u32);

impl core::fmt::Display for DisplayName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "syscall_{}", self.0),
        }
    }
}

/// The syscall number of `name` on x86_64.
pub fn number(name: &str) -> Option<u32> {
    SYSCALL_NAMES.iter().find(|(_, n)| *n == name).map(|(nr, _)| u32::from(*nr))
}

/// The class of syscall `nr`; unknown numbers are [`SyscallClass::Other`].
pub fn class(nr: u32) -> SyscallClass {
    let Some(n) = name(nr) else { return SyscallClass::Other };
    if contains(READ, n) {
        SyscallClass::Read
    } else if contains(WRITE, n) {
        SyscallClass::Write
    } else if contains(POLL, n) {
        SyscallClass::Poll
    } else if contains(FUTEX, n) {
        SyscallClass::Futex
    } else if contains(SLEEP, n) {
        SyscallClass::Sleep
    } else {
        SyscallClass::Other
    }
}

/// What the first argument of syscall `nr` is.
pub fn arg0_kind(nr: u32) -> ArgKind {
    let Some(n) = name(nr) else { return ArgKind::None };
    match class(nr) {
        SyscallClass::Read | SyscallClass::Write => ArgKind::Fd,
        SyscallClass::Poll if n.starts_with("epoll_") => ArgKind::Fd,
        SyscallClass::Futex => ArgKind::FutexAddr,
        SyscallClass::Other if contains(OTHER_FD_FIRST, n) => ArgKind::Fd,
        _ => ArgKind::None,
    }
}

/// Iterates over every known `(nr, name)` pair.
pub fn all() -> impl Iterator<Item = (u32, &'static str)> {
    SYSCALL_NAMES.iter().map(|(nr, n)| (u32::from(*nr), *n))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{collections::BTreeMap, string::String, vec::Vec};

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(SYSCALL_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        let mut names: Vec<_> = SYSCALL_NAMES.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SYSCALL_NAMES.len());
    }

    #[test]
    fn every_listed_family_member_exists_and_classifies() {
        for (list, class_) in [
            (READ, SyscallClass::Read),
            (WRITE, SyscallClass::Write),
            (POLL, SyscallClass::Poll),
            (FUTEX, SyscallClass::Futex),
            (SLEEP, SyscallClass::Sleep),
        ] {
            for n in list {
                let nr = number(n).unwrap_or_else(|| panic!("{n} missing from the table"));
                assert_eq!(class(nr), class_, "{n}");
            }
        }
        for n in OTHER_FD_FIRST {
            let nr = number(n).unwrap_or_else(|| panic!("{n} missing from the table"));
            assert_eq!(arg0_kind(nr), ArgKind::Fd, "{n}");
        }
    }

    #[test]
    fn well_known_numbers() {
        assert_eq!(name(0), Some("read"));
        assert_eq!(name(1), Some("write"));
        assert_eq!(name(202), Some("futex"));
        assert_eq!(name(232), Some("epoll_wait"));
        assert_eq!(name(281), Some("epoll_pwait"));
        assert_eq!(name(449), Some("futex_waitv"));
        assert_eq!(name(455), Some("futex_wait"));
        assert_eq!(name(9999), None);
        assert_eq!(std::format!("{}", display_name(0)), "read");
        assert_eq!(std::format!("{}", display_name(9999)), "syscall_9999");
        assert_eq!(class(288), SyscallClass::Other); // accept4
        assert_eq!(arg0_kind(288), ArgKind::Fd);
        assert_eq!(arg0_kind(7), ArgKind::None); // poll: arg0 is a pollfd array
        assert_eq!(arg0_kind(232), ArgKind::Fd); // epoll_wait: the epoll fd
        assert_eq!(arg0_kind(202), ArgKind::FutexAddr);
    }

    /// Ground truth nobody here computed: the system's own <asm/unistd_64.h>.
    #[test]
    fn matches_system_header() {
        let path = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        let text = std::fs::read_to_string(path).expect("linux-libc-dev header (installed by xtask setup)");
        let mut from_header = BTreeMap::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some("#define"), Some(macro_), Some(value)) = (parts.next(), parts.next(), parts.next())
                && let Some(n) = macro_.strip_prefix("__NR_")
                && let Ok(nr) = value.parse::<u32>()
            {
                from_header.insert(nr, String::from(n));
            }
        }
        assert!(from_header.len() > 300, "header parsed to only {} entries", from_header.len());
        for (nr, n) in &from_header {
            assert_eq!(name(*nr), Some(n.as_str()), "syscall {nr}");
        }
    }

    /// Ground truth: every syscall the running kernel has a tracepoint for is in the table
    /// (tracefs names a few by their in-kernel alias; see ALIASES).
    #[test]
    fn covers_running_kernel_tracepoints() {
        const ALIASES: &[(&str, &str)] = &[
            ("newfstat", "fstat"),
            ("newstat", "stat"),
            ("newlstat", "lstat"),
            ("newuname", "uname"),
            ("sendfile64", "sendfile"),
            ("umount", "umount2"),
        ];
        let dir = std::path::Path::new("/sys/kernel/tracing/events/syscalls");
        let Ok(entries) = std::fs::read_dir(dir) else {
            assert!(std::env::var_os("CI").is_none(), "tracefs not mounted at {}", dir.display());
            std::eprintln!("tracefs not mounted; skipped outside CI");
            return;
        };
        let mut checked = 0;
        for e in entries {
            let file = e.unwrap().file_name();
            let Some(n) = file.to_str().and_then(|f| f.strip_prefix("sys_enter_")) else { continue };
            let n = ALIASES.iter().find(|(a, _)| *a == n).map_or(n, |(_, real)| real);
            assert!(number(n).is_some(), "kernel tracepoint sys_enter_{n} has no table entry");
            checked += 1;
        }
        assert!(checked > 300);
    }
}
