//! Identity of a target's file descriptors: what each fd of /proc/PID/fd is (a TCP connection
//! with both ends, a pipe and which fd holds its other end, an epoll and the fds it watches,
//! a file), so a thread blocked on fd N can be reported as blocked on something a human knows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ::procfs::net::{TcpNetEntry, TcpState, UdpNetEntry, UnixNetEntry};
use ::procfs::process::Process;

use super::sock_diag::{InetSocket, InetTable, SockDiag};
use super::{ProcError, io_error, pid_exists, procfs_error};

/// How many watched fds an epoll description lists before eliding the rest.
const MAX_LISTED_WATCHED_FDS: usize = 16;

/// What an fd refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdTarget {
    /// A TCP socket; `state` is the kernel's state in lowercase (`established`, `listen`, ...).
    Tcp { local: SocketAddr, remote: SocketAddr, state: String },
    /// A UDP socket; `remote` is set once it is connected.
    Udp { local: SocketAddr, remote: Option<SocketAddr> },
    /// A Unix-domain socket; `path` is the bound path (`@name` for the abstract namespace).
    Unix { path: Option<String>, inode: u64 },
    /// A socket of a family we do not resolve (netlink, packet, ...) or not in the tables.
    Socket { inode: u64 },
    /// A pipe, with this process's fds on the opposite end (empty if another process has it).
    Pipe { inode: u64, other_end_fds: Vec<i32> },
    /// An epoll instance and the fds registered in it.
    Epoll { watched_fds: Vec<i32> },
    /// Another anonymous inode, named as after `anon_inode:` (`[eventfd]`, `[timerfd]`,
    /// `inotify`, `bpf-map`, ...).
    AnonInode(String),
    /// A file, directory or device (also a FIFO opened by path).
    Path(PathBuf),
    /// Anything else, as the link text (`net:[4026531840]`, ...).
    Other(String),
}

impl fmt::Display for FdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdTarget::Tcp { local, remote, state } => {
                if state == "listen" {
                    write!(f, "tcp {local} (listen)")
                } else {
                    write!(f, "tcp {local} -> {remote}")
                }
            }
            FdTarget::Udp { local, remote: Some(remote) } => write!(f, "udp {local} -> {remote}"),
            FdTarget::Udp { local, remote: None } => write!(f, "udp {local}"),
            FdTarget::Unix { path: Some(path), .. } => write!(f, "unix:{path}"),
            FdTarget::Unix { path: None, inode } => write!(f, "unix:[{inode}]"),
            FdTarget::Socket { inode } => write!(f, "socket:[{inode}]"),
            FdTarget::Pipe { inode, other_end_fds } => {
                write!(f, "pipe:[{inode}]")?;
                match other_end_fds.as_slice() {
                    [] => Ok(()),
                    [fd] => write!(f, " (other end: fd {fd})"),
                    fds => write!(f, " (other end: fds {})", join_fds(fds)),
                }
            }
            FdTarget::Epoll { watched_fds } => {
                f.write_str("anon_inode:[eventpoll]")?;
                if watched_fds.is_empty() {
                    return Ok(());
                }
                let listed = &watched_fds[..watched_fds.len().min(MAX_LISTED_WATCHED_FDS)];
                write!(f, " (watching fds {}", join_fds(listed))?;
                if watched_fds.len() > listed.len() {
                    f.write_str(",...")?;
                }
                f.write_str(")")
            }
            FdTarget::AnonInode(name) => write!(f, "anon_inode:{name}"),
            FdTarget::Path(path) => write!(f, "{}", path.display()),
            FdTarget::Other(text) => f.write_str(text),
        }
    }
}

fn join_fds(fds: &[i32]) -> String {
    fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The fds of one process, as read at one moment.
#[derive(Debug, Clone)]
pub struct FdTable {
    pid: u32,
    entries: BTreeMap<i32, FdEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FdEntry {
    target: FdTarget,
    /// Open flags from fdinfo (`O_ACCMODE`, `O_NONBLOCK`, ...).
    flags: Option<u32>,
    /// The inode of the open file (fdinfo `ino:`, kernels since 5.14), to tell whether an
    /// epoll registration's `tfd` still names the file it was registered for.
    inode: Option<u64>,
    /// For an epoll fd, its registrations.
    registrations: Vec<EpollRegistration>,
}

/// One fd registered in an epoll instance, as the epoll's fdinfo lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollRegistration {
    /// The fd number it was registered under (the kernel keeps listing it after the process
    /// closes or reuses that number: compare `inode`).
    pub tfd: i32,
    /// The event mask asked for (EPOLLIN, EPOLLOUT, EPOLLET, ...).
    pub events: u32,
    /// The registrant's 64-bit `epoll_data` (a runtime's token: tokio stores the address of
    /// the fd's `ScheduledIo` there).
    pub data: u64,
    /// The inode of the registered file, when the kernel prints it.
    pub inode: Option<u64>,
}

impl FdTable {
    /// Reads every fd of `pid`. Fds closed while being read are left out.
    pub fn read(pid: u32) -> Result<FdTable, ProcError> {
        let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
        let dir = std::fs::read_dir(&fd_dir).map_err(|e| match io_error(pid, &fd_dir, e) {
            ProcError::Exited(_) => ProcError::NoSuchProcess(pid),
            other => other,
        })?;

        let mut raw = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_error(pid, &fd_dir, e))?;
            let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            match read_one(pid, &fd_dir, fd) {
                Ok(one) => raw.push(one),
                // Closed between readdir and readlink: it is no longer an fd of the process.
                Err(ProcError::Exited(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if raw.is_empty() && !pid_exists(pid) {
            return Err(ProcError::Exited(pid));
        }

        let socket_inodes: HashSet<u64> = raw
            .iter()
            .filter_map(|r| match r.link {
                Link::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect();
        let sockets =
            if socket_inodes.is_empty() { HashMap::new() } else { read_socket_tables(pid, &socket_inodes) };
        Ok(FdTable { pid, entries: assemble(raw, &sockets) })
    }

    /// The process this table belongs to.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn get(&self, fd: i32) -> Option<&FdTarget> {
        self.entries.get(&fd).map(|e| &e.target)
    }

    /// A one-line human description of `fd` (see `FdTarget`'s `Display`).
    pub fn describe(&self, fd: i32) -> Option<String> {
        self.get(fd).map(FdTarget::to_string)
    }

    /// The open flags of `fd` (from /proc/PID/fdinfo), e.g. to tell whether it is non-blocking.
    pub fn flags(&self, fd: i32) -> Option<u32> {
        self.entries.get(&fd).and_then(|e| e.flags)
    }

    /// Every registration of every epoll fd of the process, once each: two fds of one epoll
    /// instance (mio dups its epoll fd) list the same registrations.
    pub fn epoll_registrations(&self) -> Vec<EpollRegistration> {
        let mut all: Vec<EpollRegistration> =
            self.entries.values().flat_map(|e| e.registrations.iter().copied()).collect();
        all.sort_unstable_by_key(|r| (r.tfd, r.data, r.inode));
        all.dedup_by_key(|r| (r.tfd, r.data, r.inode));
        all
    }

    /// Whether the registration's `tfd` still names the file it was registered for (same
    /// inode); when either inode is unknown (older kernels print none), whether that fd is open.
    pub fn is_registered_file(&self, reg: &EpollRegistration) -> bool {
        match (self.entries.get(&reg.tfd).and_then(|e| e.inode), reg.inode) {
            (Some(a), Some(b)) => a == b,
            _ => self.entries.contains_key(&reg.tfd),
        }
    }

    /// All fds in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &FdTarget)> + '_ {
        self.entries.iter().map(|(&fd, e)| (fd, &e.target))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One fd as read, before sockets and pipe ends are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawFd {
    fd: i32,
    link: Link,
    info: FdInfo,
}

fn read_one(pid: u32, fd_dir: &Path, fd: i32) -> Result<RawFd, ProcError> {
    let link_path = fd_dir.join(fd.to_string());
    let target = std::fs::read_link(&link_path).map_err(|e| io_error(pid, &link_path, e))?;
    let info_path = PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}"));
    let info_text = super::read_text(pid, &info_path)?;
    let info = parse_fdinfo(&info_text)
        .map_err(|what| ProcError::Parse { path: info_path.display().to_string(), what })?;
    Ok(RawFd { fd, link: classify_link(target.as_os_str().as_bytes()), info })
}

/// The kind of an fd, from its /proc/PID/fd link text alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Socket(u64),
    Pipe(u64),
    Anon(String),
    Path(PathBuf),
    Other(String),
}

/// Classifies a /proc/PID/fd link: an absolute path, or `type:[inode]` / `anon_inode:name`
/// for objects that have no path.
fn classify_link(text: &[u8]) -> Link {
    if text.starts_with(b"/") {
        return Link::Path(PathBuf::from(std::ffi::OsStr::from_bytes(text)));
    }
    let text = String::from_utf8_lossy(text).into_owned();
    let bracketed_inode = |rest: &str| rest.strip_prefix('[')?.strip_suffix(']')?.parse::<u64>().ok();
    if let Some(inode) = text.strip_prefix("socket:").and_then(bracketed_inode) {
        return Link::Socket(inode);
    }
    if let Some(inode) = text.strip_prefix("pipe:").and_then(bracketed_inode) {
        return Link::Pipe(inode);
    }
    if let Some(name) = text.strip_prefix("anon_inode:") {
        return Link::Anon(name.to_owned());
    }
    Link::Other(text)
}

/// What fdinfo adds to the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FdInfo {
    flags: Option<u32>,
    /// The open file's inode (`ino:`, decimal).
    inode: Option<u64>,
    /// For an epoll fd, the fds registered in it (`tfd:` lines), ascending.
    watched_fds: Vec<i32>,
    /// For an epoll fd, each `tfd:` line whole, in the kernel's order.
    registrations: Vec<EpollRegistration>,
}

/// Parses /proc/PID/fdinfo/FD: `flags:` in octal, and for epoll one line per registration:
/// `tfd:        5 events:       19 data:                5  pos:0 ino:3f2 sdev:e`.
///
/// A `tfd` is the fd number the target was registered under; if the process has since closed
/// or reused that number the kernel still lists it (epoll tracks the open file, not the fd).
fn parse_fdinfo(text: &str) -> Result<FdInfo, String> {
    let mut info = FdInfo::default();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("flags:") {
            let value = value.trim();
            info.flags = Some(u32::from_str_radix(value, 8).map_err(|_| format!("bad flags {value:?}"))?);
        } else if let Some(value) = line.strip_prefix("ino:") {
            info.inode = value.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("tfd:") {
            let tfd = rest.split_ascii_whitespace().next().unwrap_or_default();
            let tfd: i32 = tfd.parse().map_err(|_| format!("bad tfd {tfd:?}"))?;
            info.watched_fds.push(tfd);
            if info.registrations.len() < MAX_EPOLL_REGISTRATIONS {
                info.registrations.push(parse_registration(tfd, rest));
            }
        }
    }
    info.watched_fds.sort_unstable();
    info.watched_fds.dedup();
    Ok(info)
}

/// How many registrations of one epoll are kept (a server with more connections than this has
/// the rest left out of what is read through them).
pub const MAX_EPOLL_REGISTRATIONS: usize = 200_000;

/// The fields of a `tfd:` line after the fd: `events: 8000201d data: 7fb5a8000d80 pos:0
/// ino:2c5531 sdev:9` (hex; `data` is the registrant's word). A field that does not parse is
/// left out (`events`/`data` 0), never guessed.
fn parse_registration(tfd: i32, rest: &str) -> EpollRegistration {
    let mut reg = EpollRegistration { tfd, events: 0, data: 0, inode: None };
    let mut words = rest.split_ascii_whitespace().skip(1);
    while let Some(word) = words.next() {
        let (key, value) = match word.split_once(':') {
            Some((k, v)) if !v.is_empty() => (k, Some(v)),
            Some((k, _)) => (k, words.next()),
            None => continue,
        };
        let Some(value) = value else { break };
        match key {
            "events" => reg.events = u32::from_str_radix(value, 16).unwrap_or(0),
            "data" => reg.data = u64::from_str_radix(value, 16).unwrap_or(0),
            "ino" => reg.inode = u64::from_str_radix(value, 16).ok(),
            _ => {}
        }
    }
    reg
}

/// Resolves sockets against `sockets` (inode -> target) and finds each pipe fd's other end.
fn assemble(raw: Vec<RawFd>, sockets: &HashMap<u64, FdTarget>) -> BTreeMap<i32, FdEntry> {
    // pipe inode -> (fd, O_ACCMODE) of every fd on that pipe.
    let mut pipes: HashMap<u64, Vec<(i32, Option<u32>)>> = HashMap::new();
    for r in &raw {
        if let Link::Pipe(inode) = r.link {
            pipes.entry(inode).or_default().push((r.fd, r.info.flags.map(|f| f & libc::O_ACCMODE as u32)));
        }
    }

    raw.into_iter()
        .map(|mut r| {
            let registrations = std::mem::take(&mut r.info.registrations);
            let target = match r.link {
                Link::Socket(inode) => sockets.get(&inode).cloned().unwrap_or(FdTarget::Socket { inode }),
                Link::Pipe(inode) => {
                    let mode = r.info.flags.map(|f| f & libc::O_ACCMODE as u32);
                    let other_end_fds = pipes
                        .get(&inode)
                        .map(|ends| {
                            ends.iter()
                                .filter(|&&(fd, other)| fd != r.fd && opposite_ends(mode, other))
                                .map(|&(fd, _)| fd)
                                .collect()
                        })
                        .unwrap_or_default();
                    FdTarget::Pipe { inode, other_end_fds }
                }
                Link::Anon(name) if name == "[eventpoll]" => {
                    FdTarget::Epoll { watched_fds: r.info.watched_fds }
                }
                Link::Anon(name) => FdTarget::AnonInode(name),
                Link::Path(path) => FdTarget::Path(path),
                Link::Other(text) => FdTarget::Other(text),
            };
            (r.fd, FdEntry { target, flags: r.info.flags, inode: r.info.inode, registrations })
        })
        .collect()
}

/// Whether two fds of one pipe face each other: one can read what the other can write.
/// (Both `O_RDWR` happens with a FIFO or /proc/PID/fd reopened read-write.)
fn opposite_ends(a: Option<u32>, b: Option<u32>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    let reads = |m: u32| m == libc::O_RDONLY as u32 || m == libc::O_RDWR as u32;
    let writes = |m: u32| m == libc::O_WRONLY as u32 || m == libc::O_RDWR as u32;
    (reads(a) && writes(b)) || (writes(a) && reads(b))
}

/// Reads the socket tables of the target's network namespace (not the caller's) into
/// inode -> target: TCP and UDP through NETLINK_SOCK_DIAG (`sock_diag`), each table falling back
/// to /proc/PID/net/NAME when its dump fails; Unix sockets from /proc/PID/net/unix (a cheap read:
/// the kernel walks 256 buckets for it). A table that cannot be read either way is skipped: its
/// sockets then stay `FdTarget::Socket`, which is less informative but still true.
///
/// Tables are read until every inode of `wanted` (the target's sockets) is found: a socket is
/// in one table only, and each TCP dump walks the whole established hash (262,144 buckets on a
/// machine with a few GB), so a server whose sockets are all TCP over IPv4 costs one dump, not
/// four and the unix table.
fn read_socket_tables(pid: u32, wanted: &HashSet<u64>) -> HashMap<u64, FdTarget> {
    let Some(process) = open_process(pid) else {
        return HashMap::new();
    };
    let mut diag = SockDiag::open_for(pid)
        .map_err(|e| tracing::debug!(pid, "TCP/UDP sockets read from /proc/{pid}/net instead: {e}"))
        .ok();
    let mut index = HashMap::new();
    let all_found = |index: &HashMap<u64, FdTarget>| wanted.iter().all(|inode| index.contains_key(inode));
    for table in InetTable::ALL {
        if all_found(&index) {
            return index;
        }
        let dumped = diag.as_mut().and_then(|diag| {
            diag.dump(table)
                .map_err(|e| tracing::debug!(pid, "/proc/{pid}/net/{} read instead: {e}", table.proc_name()))
                .ok()
        });
        match dumped {
            Some(sockets) => index_inet_sockets(&mut index, table, &sockets),
            None => index.extend(read_proc_inet_table(&process, pid, table)),
        }
    }
    if !all_found(&index) {
        index_unix(&mut index, &proc_table(pid, "unix", process.unix()));
    }
    index
}

fn open_process(pid: u32) -> Option<Process> {
    let raw_pid = i32::try_from(pid).ok()?;
    Process::new(raw_pid).map_err(|e| tracing::debug!(pid, "cannot open process for socket tables: {e}")).ok()
}

/// A /proc/PID/net table as parsed by procfs, or nothing (logged) when it cannot be read.
fn proc_table<T>(pid: u32, name: &str, read: ::procfs::ProcResult<Vec<T>>) -> Vec<T> {
    read.unwrap_or_else(|e| {
        // tcp6/udp6 are absent when IPv6 is disabled: nothing to resolve there.
        if !matches!(e, ::procfs::ProcError::NotFound(_)) {
            let path = PathBuf::from(format!("/proc/{pid}/net/{name}"));
            tracing::debug!(pid, "socket table skipped: {}", procfs_error(pid, &path, e));
        }
        Vec::new()
    })
}

/// One TCP or UDP table read from /proc/PID/net (what the netlink path must equal).
fn read_proc_inet_table(process: &Process, pid: u32, table: InetTable) -> HashMap<u64, FdTarget> {
    let name = table.proc_name();
    let mut index = HashMap::new();
    match table {
        InetTable::Tcp4 => index_tcp(&mut index, &proc_table(pid, name, process.tcp())),
        InetTable::Tcp6 => index_tcp(&mut index, &proc_table(pid, name, process.tcp6())),
        InetTable::Udp4 => index_udp(&mut index, &proc_table(pid, name, process.udp())),
        InetTable::Udp6 => index_udp(&mut index, &proc_table(pid, name, process.udp6())),
    }
    index
}

/// Indexes parsed socket tables by inode.
#[cfg(test)]
fn socket_index(tcp: &[TcpNetEntry], udp: &[UdpNetEntry], unix: &[UnixNetEntry]) -> HashMap<u64, FdTarget> {
    let mut index = HashMap::new();
    index_tcp(&mut index, tcp);
    index_udp(&mut index, udp);
    index_unix(&mut index, unix);
    index
}

// Inode 0 marks sockets no fd refers to any more (TIME_WAIT, request socks): they are skipped so
// they cannot shadow anything.

fn index_tcp(index: &mut HashMap<u64, FdTarget>, tcp: &[TcpNetEntry]) {
    for e in tcp.iter().filter(|e| e.inode != 0) {
        index.insert(e.inode, tcp_target(e.local_address, e.remote_address, &e.state));
    }
}

fn index_udp(index: &mut HashMap<u64, FdTarget>, udp: &[UdpNetEntry]) {
    for e in udp.iter().filter(|e| e.inode != 0) {
        index.insert(e.inode, udp_target(e.local_address, e.remote_address));
    }
}

fn index_unix(index: &mut HashMap<u64, FdTarget>, unix: &[UnixNetEntry]) {
    for e in unix.iter().filter(|e| e.inode != 0) {
        index.insert(
            e.inode,
            FdTarget::Unix {
                path: e.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                inode: e.inode,
            },
        );
    }
}

/// Indexes one table dumped by inet_diag, as the /proc path would have.
fn index_inet_sockets(index: &mut HashMap<u64, FdTarget>, table: InetTable, sockets: &[InetSocket]) {
    for s in sockets.iter().filter(|s| s.inode != 0) {
        let target = if table.is_tcp() {
            // /proc prints the same number; one it would not know is left unresolved.
            let Some(state) = TcpState::from_u8(s.state) else {
                tracing::debug!(inode = s.inode, "unknown TCP state {} left unresolved", s.state);
                continue;
            };
            tcp_target(s.local, s.remote, &state)
        } else {
            udp_target(s.local, s.remote)
        };
        index.insert(s.inode, target);
    }
}

fn tcp_target(local: SocketAddr, remote: SocketAddr, state: &TcpState) -> FdTarget {
    FdTarget::Tcp { local, remote, state: tcp_state_name(state).to_owned() }
}

/// A UDP socket is connected when its remote is set (the kernel shows `0.0.0.0:0` otherwise).
fn udp_target(local: SocketAddr, remote: SocketAddr) -> FdTarget {
    let connected = remote.port() != 0 || !remote.ip().is_unspecified();
    FdTarget::Udp { local, remote: connected.then_some(remote) }
}

fn tcp_state_name(state: &TcpState) -> &'static str {
    match state {
        TcpState::Established => "established",
        TcpState::SynSent => "syn_sent",
        TcpState::SynRecv => "syn_recv",
        TcpState::FinWait1 => "fin_wait1",
        TcpState::FinWait2 => "fin_wait2",
        TcpState::TimeWait => "time_wait",
        TcpState::Close => "close",
        TcpState::CloseWait => "close_wait",
        TcpState::LastAck => "last_ack",
        TcpState::Listen => "listen",
        TcpState::Closing => "closing",
        TcpState::NewSynRecv => "new_syn_recv",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::procfs::{ExplicitSystemInfo, FromBufRead, FromBufReadSI};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd as Fd};
    use std::os::unix::net::{UnixListener, UnixStream};

    fn raw(fd: i32, link: &str, fdinfo: &str) -> RawFd {
        RawFd { fd, link: classify_link(link.as_bytes()), info: parse_fdinfo(fdinfo).unwrap() }
    }

    #[test]
    fn classifies_links() {
        assert_eq!(classify_link(b"socket:[26243]"), Link::Socket(26243));
        assert_eq!(classify_link(b"pipe:[77]"), Link::Pipe(77));
        assert_eq!(classify_link(b"anon_inode:[eventpoll]"), Link::Anon("[eventpoll]".into()));
        assert_eq!(classify_link(b"/tmp/a:b (deleted)"), Link::Path("/tmp/a:b (deleted)".into()));
        assert_eq!(classify_link(b"net:[4026531840]"), Link::Other("net:[4026531840]".into()));
        assert_eq!(classify_link(b"socket:[x]"), Link::Other("socket:[x]".into()));
        assert_eq!(classify_link(b"pipe:"), Link::Other("pipe:".into()));
        assert_eq!(classify_link(b""), Link::Other(String::new()));
    }

    #[test]
    fn parses_fdinfo() {
        let epoll = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n\
tfd:        8 events:       19 data:                8  pos:0 ino:3f2 sdev:e\n\
tfd:        5 events:       19 data:                5  pos:0 ino:3f3 sdev:e\n";
        let reg = |tfd, data, inode| EpollRegistration { tfd, events: 0x19, data, inode: Some(inode) };
        assert_eq!(
            parse_fdinfo(epoll),
            Ok(FdInfo {
                flags: Some(0o2000002),
                inode: Some(1057),
                watched_fds: vec![5, 8],
                registrations: vec![reg(8, 8, 0x3f2), reg(5, 5, 0x3f3)],
            })
        );
        // tokio's line: the data word is a pointer; a line cut short keeps what it has.
        let tokio = "tfd:        7 events: 8000201d data:     7fb5a8000d80  pos:0 ino:2c5531 sdev:9\n\
tfd:        9 events: 8000201d data:\n";
        let regs = parse_fdinfo(tokio).unwrap().registrations;
        assert_eq!(
            regs,
            vec![
                EpollRegistration { tfd: 7, events: 0x8000201d, data: 0x7fb5a8000d80, inode: Some(0x2c5531) },
                EpollRegistration { tfd: 9, events: 0x8000201d, data: 0, inode: None },
            ]
        );
        assert_eq!(parse_fdinfo("").map(|i| i.flags), Ok(None));
        assert!(parse_fdinfo("flags:\t09\n").is_err());
        assert!(parse_fdinfo("tfd: x events: 1\n").is_err());
        assert!(parse_fdinfo("tfd:\n").is_err());
    }

    #[test]
    fn pipe_ends_follow_access_modes() {
        let table = assemble(
            vec![
                raw(3, "pipe:[100]", "flags:\t00\n"),
                raw(4, "pipe:[100]", "flags:\t01\n"),
                raw(7, "pipe:[100]", "flags:\t04001\n"),
                raw(5, "pipe:[200]", "flags:\t00\n"),
                raw(6, "pipe:[300]", "flags:\t02\n"),
                raw(9, "pipe:[300]", "flags:\t02\n"),
            ],
            &HashMap::new(),
        );
        let describe = |fd| table[&fd].target.to_string();
        assert_eq!(describe(3), "pipe:[100] (other end: fds 4,7)");
        assert_eq!(describe(4), "pipe:[100] (other end: fd 3)");
        assert_eq!(describe(5), "pipe:[200]");
        assert_eq!(describe(6), "pipe:[300] (other end: fd 9)");
        assert_eq!(table[&7].flags, Some(0o4001));
    }

    #[test]
    fn epoll_lists_at_most_sixteen_fds() {
        let info: String = (0..20)
            .map(|fd| format!("tfd: {fd:>8} events:       19 data: 0  pos:0 ino:1 sdev:e\n"))
            .collect();
        let table = assemble(
            vec![
                raw(3, "anon_inode:[eventpoll]", &info),
                raw(4, "anon_inode:[eventpoll]", "flags:\t02\n"),
                raw(5, "anon_inode:[eventfd]", "flags:\t02\n"),
                raw(6, "/dev/null", "flags:\t02\n"),
                raw(7, "socket:[42]", "flags:\t02\n"),
            ],
            &HashMap::new(),
        );
        let describe = |fd| table[&fd].target.to_string();
        assert_eq!(
            describe(3),
            "anon_inode:[eventpoll] (watching fds 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,...)"
        );
        assert_eq!(describe(4), "anon_inode:[eventpoll]");
        assert_eq!(describe(5), "anon_inode:[eventfd]");
        assert_eq!(describe(6), "/dev/null");
        assert_eq!(describe(7), "socket:[42]");
    }

    /// Socket tables as the kernel prints them, parsed by procfs and indexed by us.
    #[test]
    fn resolves_sockets_from_table_text() {
        let si = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: true,
        };
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A152 0100007F:1388 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A153 0100007F:1388 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 0100007F:14E9 0100007F:270F 01 00000000:00000000 00:00000000 00000000     0        0 1004 2 0000000000000000 0
  11: 0100007F:14EA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1005 2 0000000000000000 0
";
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 1006 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 1007
0000000000000000: 00000002 00000000 00010000 0001 01 1008 @abstract
";
        let mut tcp_entries = ::procfs::net::TcpNetEntries::from_buf_read(tcp.as_bytes(), &si).unwrap().0;
        tcp_entries.extend(::procfs::net::TcpNetEntries::from_buf_read(tcp6.as_bytes(), &si).unwrap().0);
        let udp_entries = ::procfs::net::UdpNetEntries::from_buf_read(udp.as_bytes(), &si).unwrap().0;
        let unix_entries = ::procfs::net::UnixNetEntries::from_buf_read(unix.as_bytes()).unwrap().0;
        let index = socket_index(&tcp_entries, &udp_entries, &unix_entries);

        let raws =
            (1001..=1009).map(|inode| raw(inode, &format!("socket:[{inode}]"), "flags:\t02\n")).collect();
        let table = assemble(raws, &index);
        let describe = |fd| table[&fd].target.to_string();
        assert_eq!(describe(1001), "tcp 127.0.0.1:5000 (listen)");
        assert_eq!(describe(1002), "tcp 127.0.0.1:41298 -> 127.0.0.1:5000");
        assert_eq!(describe(1003), "tcp [::1]:80 (listen)");
        assert_eq!(describe(1004), "udp 127.0.0.1:5353 -> 127.0.0.1:9999");
        assert_eq!(describe(1005), "udp 127.0.0.1:5354");
        assert_eq!(describe(1006), "unix:/run/app.sock");
        assert_eq!(describe(1007), "unix:[1007]");
        assert_eq!(describe(1008), "unix:@abstract");
        assert_eq!(describe(1009), "socket:[1009]");
        // The TIME_WAIT entry has inode 0 and must not be indexed.
        assert!(!index.contains_key(&0));
        assert_eq!(
            table[&1002].target,
            FdTarget::Tcp {
                local: "127.0.0.1:41298".parse().unwrap(),
                remote: "127.0.0.1:5000".parse().unwrap(),
                state: "established".into(),
            }
        );
    }

    fn inode_of(fd: Fd) -> u64 {
        // SAFETY: all-zeroes is a valid `stat`, and fstat only writes into it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open for the duration of the call; `st` is a valid out pointer.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        st.st_ino
    }

    /// Ground truth: fds this test opens itself, with the ports the kernel gave them
    /// (getsockname via `local_addr`) and inodes from fstat.
    #[test]
    fn describes_own_fds() {
        let (pipe_r, pipe_w) = std::io::pipe().unwrap();
        let pipe_inode = inode_of(pipe_r.as_raw_fd());

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(server_addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (accepted, _) = listener.accept().unwrap();

        let listener6 = TcpListener::bind("[::1]:0").unwrap();
        let port6 = listener6.local_addr().unwrap().port();

        let udp_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp_a.connect(udp_b.local_addr().unwrap()).unwrap();

        let (unix_a, unix_b) = UnixStream::pair().unwrap();
        let sock_path =
            std::env::temp_dir().join(format!("parkscope-procfs-test-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock_path);
        let unix_listener = UnixListener::bind(&sock_path).unwrap();

        // SAFETY: epoll_create1 has no memory preconditions; the result is checked below.
        let raw_epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(raw_epoll >= 0, "epoll_create1 failed");
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw_epoll) };
        for fd in [pipe_r.as_raw_fd(), client.as_raw_fd()] {
            let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: both fds are open; `event` is a valid epoll_event.
            let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
            assert_eq!(rc, 0, "epoll_ctl failed");
        }

        let exe = std::env::current_exe().unwrap();
        let file = std::fs::File::open(&exe).unwrap();

        let table = FdTable::read(std::process::id()).expect("read own fd table");
        let describe = |fd: Fd| table.describe(fd).unwrap_or_else(|| panic!("fd {fd} missing"));

        assert_eq!(
            describe(pipe_r.as_raw_fd()),
            format!("pipe:[{pipe_inode}] (other end: fd {})", pipe_w.as_raw_fd())
        );
        assert_eq!(
            describe(pipe_w.as_raw_fd()),
            format!("pipe:[{pipe_inode}] (other end: fd {})", pipe_r.as_raw_fd())
        );
        assert_eq!(describe(listener.as_raw_fd()), format!("tcp {server_addr} (listen)"));
        assert_eq!(describe(client.as_raw_fd()), format!("tcp {client_addr} -> {server_addr}"));
        assert_eq!(describe(accepted.as_raw_fd()), format!("tcp {server_addr} -> {client_addr}"));
        assert_eq!(describe(listener6.as_raw_fd()), format!("tcp [::1]:{port6} (listen)"));
        assert_eq!(
            describe(udp_a.as_raw_fd()),
            format!("udp {} -> {}", udp_a.local_addr().unwrap(), udp_b.local_addr().unwrap())
        );
        assert_eq!(describe(udp_b.as_raw_fd()), format!("udp {}", udp_b.local_addr().unwrap()));
        assert_eq!(describe(unix_a.as_raw_fd()), format!("unix:[{}]", inode_of(unix_a.as_raw_fd())));
        assert_eq!(describe(unix_b.as_raw_fd()), format!("unix:[{}]", inode_of(unix_b.as_raw_fd())));
        assert_eq!(describe(unix_listener.as_raw_fd()), format!("unix:{}", sock_path.display()));
        let mut watched = [pipe_r.as_raw_fd(), client.as_raw_fd()];
        watched.sort_unstable();
        assert_eq!(
            describe(epoll.as_raw_fd()),
            format!("anon_inode:[eventpoll] (watching fds {},{})", watched[0], watched[1])
        );
        assert_eq!(describe(file.as_raw_fd()), exe.display().to_string());

        // Flags come from fdinfo: the pipe's read end is O_RDONLY, its write end O_WRONLY.
        let accmode = |fd| table.flags(fd).map(|f| f & libc::O_ACCMODE as u32);
        assert_eq!(accmode(pipe_r.as_raw_fd()), Some(libc::O_RDONLY as u32));
        assert_eq!(accmode(pipe_w.as_raw_fd()), Some(libc::O_WRONLY as u32));
        assert!(table.iter().any(|(fd, _)| fd == file.as_raw_fd()));
        assert_eq!(table.pid(), std::process::id());

        drop(unix_listener);
        let _ = std::fs::remove_file(&sock_path);
    }

    /// What the netlink path and the /proc path say about `inodes` of `pid`, table by table:
    /// the /proc tables are the ground truth (the kernel printed them; nobody here computed
    /// them).
    fn both_paths(pid: u32, inodes: &[u64]) -> Vec<(InetTable, u64, Option<FdTarget>, Option<FdTarget>)> {
        let process = open_process(pid).expect("open process");
        let mut diag = SockDiag::open_for(pid).expect("open NETLINK_SOCK_DIAG");
        let mut rows = Vec::new();
        for table in InetTable::ALL {
            let mut from_netlink = HashMap::new();
            index_inet_sockets(&mut from_netlink, table, &diag.dump(table).expect("inet_diag dump"));
            let from_proc = read_proc_inet_table(&process, pid, table);
            for &inode in inodes {
                let (a, b) = (from_netlink.get(&inode).cloned(), from_proc.get(&inode).cloned());
                if a.is_some() || b.is_some() {
                    rows.push((table, inode, a, b));
                }
            }
        }
        rows
    }

    /// TCP and UDP sockets of every shape this test can make, seen through inet_diag and through
    /// /proc/PID/net: the same inodes, addresses, states and UDP peers.
    #[test]
    fn netlink_tables_equal_proc_tables() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let listener6 = TcpListener::bind("[::1]:0").unwrap();
        let client6 = TcpStream::connect(listener6.local_addr().unwrap()).unwrap();
        let (accepted6, _) = listener6.accept().unwrap();
        // A dual-stack listener: its accepted v4 peer is a v6 socket with v4-mapped addresses.
        let dual = TcpListener::bind("[::]:0").unwrap();
        let mapped_client = TcpStream::connect(("127.0.0.1", dual.local_addr().unwrap().port())).unwrap();
        let (mapped, _) = dual.accept().unwrap();
        // One side half-closed by its peer: close_wait on the accepted end.
        let closing = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (close_wait, _) = listener.accept().unwrap();
        closing.shutdown(std::net::Shutdown::Write).unwrap();
        // The FIN's ACK comes back through loopback's softirq: wait (on /proc's word) until the
        // closing end has settled in fin_wait2, so both reads below see one state.
        let process = open_process(std::process::id()).unwrap();
        let closing_inode = inode_of(closing.as_raw_fd());
        let settled = (0..200).any(|_| {
            let tcp = read_proc_inet_table(&process, std::process::id(), InetTable::Tcp4);
            let done =
                matches!(tcp.get(&closing_inode), Some(FdTarget::Tcp { state, .. }) if state == "fin_wait2");
            if !done {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done
        });
        assert!(settled, "the half-closed connection never reached fin_wait2");

        let udp_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp_a.connect(udp_b.local_addr().unwrap()).unwrap();
        let udp6_a = UdpSocket::bind("[::1]:0").unwrap();
        let udp6_b = UdpSocket::bind("[::1]:0").unwrap();
        udp6_a.connect(udp6_b.local_addr().unwrap()).unwrap();
        let (unix_a, _unix_b) = UnixStream::pair().unwrap();

        let inet_fds = [
            listener.as_raw_fd(),
            client.as_raw_fd(),
            accepted.as_raw_fd(),
            listener6.as_raw_fd(),
            client6.as_raw_fd(),
            accepted6.as_raw_fd(),
            dual.as_raw_fd(),
            mapped_client.as_raw_fd(),
            mapped.as_raw_fd(),
            closing.as_raw_fd(),
            close_wait.as_raw_fd(),
            udp_a.as_raw_fd(),
            udp_b.as_raw_fd(),
            udp6_a.as_raw_fd(),
            udp6_b.as_raw_fd(),
        ];
        let inodes: Vec<u64> = inet_fds.iter().map(|&fd| inode_of(fd)).collect();
        let unix_inode = inode_of(unix_a.as_raw_fd());
        let mut all_inodes = inodes.clone();
        all_inodes.push(unix_inode);

        let rows = both_paths(std::process::id(), &all_inodes);
        for (table, inode, from_netlink, from_proc) in &rows {
            assert_eq!(from_netlink, from_proc, "{} inode {inode}", table.proc_name());
            assert!(from_proc.is_some(), "{} inode {inode}: only netlink has it", table.proc_name());
        }
        // Each inet socket is in exactly one table, the unix socket in none of them.
        let mut seen: Vec<u64> = rows.iter().map(|r| r.1).collect();
        seen.sort_unstable();
        let mut expected = inodes.clone();
        expected.sort_unstable();
        assert_eq!(seen, expected);

        let target = |fd: Fd| rows.iter().find(|r| r.1 == inode_of(fd)).and_then(|r| r.3.clone()).unwrap();
        // Spot checks of the ground truth itself, so both paths cannot agree on nothing.
        assert_eq!(
            target(mapped.as_raw_fd()).to_string(),
            format!(
                "tcp [::ffff:127.0.0.1]:{} -> [::ffff:127.0.0.1]:{}",
                dual.local_addr().unwrap().port(),
                mapped_client.local_addr().unwrap().port()
            )
        );
        assert!(
            matches!(target(close_wait.as_raw_fd()), FdTarget::Tcp { state, .. } if state == "close_wait")
        );
        assert!(matches!(target(udp_b.as_raw_fd()), FdTarget::Udp { remote: None, .. }));
        assert!(matches!(target(udp6_a.as_raw_fd()), FdTarget::Udp { remote: Some(_), .. }));

        // And the whole read, netlink for inet plus /proc for unix, gives the same.
        let mut wanted: HashSet<u64> = rows.iter().map(|r| r.1).collect();
        wanted.insert(unix_inode);
        let index = read_socket_tables(std::process::id(), &wanted);
        for (_, inode, _, from_proc) in &rows {
            assert_eq!(index.get(inode), from_proc.as_ref());
        }
        assert_eq!(index.get(&unix_inode), Some(&FdTarget::Unix { path: None, inode: unix_inode }));
        // Reading stops once every wanted socket is found: the first table (TCP over IPv4)
        // holds the listener, so no UDP socket is looked up.
        let listener_inode = inode_of(listener.as_raw_fd());
        let first_only = read_socket_tables(std::process::id(), &HashSet::from([listener_inode]));
        assert!(matches!(first_only.get(&listener_inode), Some(FdTarget::Tcp { .. })));
        assert!(
            first_only.values().all(|t| matches!(t, FdTarget::Tcp { .. })),
            "only the TCP table was read"
        );
    }

    /// A socket made in another network namespace is found through the namespace of the pid
    /// (here a thread id: /proc/TID/ns/net is that thread's namespace) and not through ours.
    #[test]
    fn reads_the_targets_network_namespace() {
        let (to_test, from_thread) = std::sync::mpsc::channel();
        let (to_thread, until_done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare has no memory preconditions; it changes only this thread's
            // network namespace (the thread ends with the test).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            // The new namespace's loopback is down: bind the wildcard address.
            let listener = TcpListener::bind("0.0.0.0:0").unwrap();
            let udp = UdpSocket::bind("[::]:0").unwrap();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            to_test
                .send((
                    tid,
                    listener.as_raw_fd(),
                    listener.local_addr().unwrap(),
                    udp.as_raw_fd(),
                    udp.local_addr().unwrap(),
                ))
                .unwrap();
            let _ = until_done.recv();
        });
        let (tid, listener_fd, listener_addr, udp_fd, udp_addr) = from_thread.recv().unwrap();
        let inodes = [inode_of(listener_fd), inode_of(udp_fd)];

        let rows = both_paths(tid, &inodes);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (table, inode, from_netlink, from_proc) in &rows {
            assert_eq!(from_netlink, from_proc, "{} inode {inode}", table.proc_name());
        }
        // The fd table is the process's; its sockets resolve in the namespace read.
        let theirs = FdTable::read(tid).unwrap();
        assert_eq!(theirs.describe(listener_fd).unwrap(), format!("tcp {listener_addr} (listen)"));
        assert_eq!(theirs.describe(udp_fd).unwrap(), format!("udp {udp_addr}"));
        let ours = FdTable::read(std::process::id()).unwrap();
        assert_eq!(ours.describe(listener_fd).unwrap(), format!("socket:[{}]", inodes[0]));
        assert_eq!(ours.describe(udp_fd).unwrap(), format!("socket:[{}]", inodes[1]));

        to_thread.send(()).unwrap();
        thread.join().unwrap();
    }

    /// CPU time of reading this process's TCP/UDP tables both ways (run with `--ignored
    /// --nocapture`; a figure for docs/performance.md, not a check).
    #[test]
    #[ignore]
    fn socket_table_cost() {
        fn cpu_now() -> std::time::Duration {
            // SAFETY: all-zeroes is a valid timespec; clock_gettime only writes into it.
            let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
            // SAFETY: `ts` is a valid out pointer.
            assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) }, 0);
            std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        }
        let pid = std::process::id();
        let process = open_process(pid).unwrap();
        const ROUNDS: u32 = 50;
        let start = cpu_now();
        for _ in 0..ROUNDS {
            for table in InetTable::ALL {
                std::hint::black_box(read_proc_inet_table(&process, pid, table));
            }
        }
        let proc_cost = (cpu_now() - start) / ROUNDS;
        let start = cpu_now();
        for _ in 0..ROUNDS {
            let mut diag = SockDiag::open_for(pid).unwrap();
            for table in InetTable::ALL {
                let mut index = HashMap::new();
                index_inet_sockets(&mut index, table, &diag.dump(table).unwrap());
                std::hint::black_box(index);
            }
        }
        let netlink_cost = (cpu_now() - start) / ROUNDS;
        println!("tcp+tcp6+udp+udp6 per read: /proc {proc_cost:?}, NETLINK_SOCK_DIAG {netlink_cost:?}");
    }

    #[test]
    fn missing_process_is_no_such_process() {
        let pid_max: u32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        assert!(matches!(
            FdTable::read(pid_max),
            Err(ProcError::NoSuchProcess(p)) if p == pid_max
        ));
    }
}
