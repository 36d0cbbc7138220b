//! A target's TCP and UDP sockets (v4 and v6) read through NETLINK_SOCK_DIAG inet_diag dumps in
//! the target's network namespace: the same facts as /proc/PID/net/{tcp,tcp6,udp,udp6} without
//! the kernel walking every bucket of the TCP established hash several times per read.
//!
//! A netlink socket answers for the network namespace it was created in, so when the target is
//! in another namespace the socket is created on a short-lived thread that first enters the
//! target's namespace (`setns` is per-thread; that thread then exits, so no thread of the agent
//! ever changes namespace). Replies are parsed under bounds: a socket count cap, a receive
//! timeout and an overall deadline per dump; an `NLMSG_ERROR`, a truncated datagram or a
//! malformed message is an error for that table, and the caller falls back to /proc for it.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, Parseable,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, SockDiagMessage,
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

/// Most sockets one dump may return before it is abandoned as an error (a table this large
/// would take more memory than describing one process's fds is worth).
pub const MAX_SOCKETS_PER_TABLE: usize = 1_000_000;

/// How long one `recv` on the netlink socket may block: the kernel answers a dump at once, so a
/// silent socket means something is stuck.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one whole dump may take.
const DUMP_DEADLINE: Duration = Duration::from_secs(5);

/// The receive buffer: the kernel caps one dump datagram at 32 KiB; a larger one (which
/// `MSG_TRUNC` reveals) is an error, never a silently cut table.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// One of the four tables /proc/PID/net prints and inet_diag dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InetTable {
    Tcp4,
    Tcp6,
    Udp4,
    Udp6,
}

impl InetTable {
    pub const ALL: [InetTable; 4] = [InetTable::Tcp4, InetTable::Tcp6, InetTable::Udp4, InetTable::Udp6];

    /// The name of the same table under /proc/PID/net.
    pub fn proc_name(self) -> &'static str {
        match self {
            InetTable::Tcp4 => "tcp",
            InetTable::Tcp6 => "tcp6",
            InetTable::Udp4 => "udp",
            InetTable::Udp6 => "udp6",
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, InetTable::Tcp4 | InetTable::Tcp6)
    }

    fn family(self) -> u8 {
        match self {
            InetTable::Tcp4 | InetTable::Udp4 => AF_INET,
            InetTable::Tcp6 | InetTable::Udp6 => AF_INET6,
        }
    }

    fn protocol(self) -> u8 {
        if self.is_tcp() { IPPROTO_TCP } else { IPPROTO_UDP }
    }
}

/// One socket as inet_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's `sk_state` (`TCP_ESTABLISHED` = 1, ..., as /proc/net/tcp's `st` column).
    pub state: u8,
    /// The socket inode (0 for sockets no file refers to: TIME_WAIT, request socks).
    pub inode: u64,
}

/// Why the netlink path could not give a table.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error("cannot enter the network namespace of pid {pid}: {source}")]
    Namespace {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot open a NETLINK_SOCK_DIAG socket: {0}")]
    Socket(#[source] io::Error),
    #[error("{table} dump: {source}")]
    Io {
        table: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{table} dump: the kernel answered errno {errno} ({})", io::Error::from_raw_os_error(*errno))]
    Kernel { table: &'static str, errno: i32 },
    #[error("{table} dump: {what}")]
    Malformed { table: &'static str, what: String },
    #[error("{table} dump: more than {MAX_SOCKETS_PER_TABLE} sockets")]
    TooMany { table: &'static str },
    #[error("{table} dump: unfinished ({RECV_TIMEOUT:?} without a reply, or {DUMP_DEADLINE:?} in all)")]
    Timeout { table: &'static str },
}

/// A NETLINK_SOCK_DIAG socket bound to one network namespace.
#[derive(Debug)]
pub struct SockDiag {
    socket: Socket,
    next_sequence: u32,
}

impl SockDiag {
    /// Opens a socket in the network namespace of `pid`: directly when that is this thread's
    /// namespace, else on a thread that enters it first.
    pub fn open_for(pid: u32) -> Result<SockDiag, SockDiagError> {
        let socket = super::netns::in_network_namespace_of(pid, open_diag_socket)
            .map_err(|source| SockDiagError::Namespace { pid, source })??;
        Ok(SockDiag { socket, next_sequence: 1 })
    }

    /// Dumps every socket of `table` (all states but TIME_WAIT, whose entries never have an
    /// inode).
    pub fn dump(&mut self, table: InetTable) -> Result<Vec<InetSocket>, SockDiagError> {
        let name = table.proc_name();
        let io_error = |source| SockDiagError::Io { table: name, source };
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.socket.send(&dump_request(table, sequence), 0).map_err(io_error)?;

        let deadline = Instant::now() + DUMP_DEADLINE;
        let mut buffer = vec![0u8; RECV_BUFFER_LEN];
        let mut sockets = Vec::new();
        loop {
            if Instant::now() > deadline {
                return Err(SockDiagError::Timeout { table: name });
            }
            let received = match self.socket.recv(&mut &mut buffer[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(SockDiagError::Timeout { table: name });
                }
                Err(e) => return Err(io_error(e)),
            };
            if received > buffer.len() {
                return Err(SockDiagError::Malformed {
                    table: name,
                    what: format!("a reply datagram of {received} bytes exceeds {} bytes", buffer.len()),
                });
            }
            if received == 0 {
                return Err(SockDiagError::Malformed { table: name, what: "empty reply datagram".into() });
            }
            if parse_datagram(&buffer[..received], table, sequence, &mut sockets, MAX_SOCKETS_PER_TABLE)?
                == Progress::Done
            {
                return Ok(sockets);
            }
        }
    }
}

fn open_diag_socket() -> Result<Socket, SockDiagError> {
    let socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Socket)?;
    socket.connect(&NetlinkAddr::new(0, 0)).map_err(SockDiagError::Socket)?;
    let timeout = libc::timeval { tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: the fd is open (owned by `socket`); `timeout` is a valid timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(SockDiagError::Socket(io::Error::last_os_error()));
    }
    Ok(socket)
}

/// The SOCK_DIAG_BY_FAMILY dump request for `table`.
fn dump_request(table: InetTable, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let socket_id = if table.family() == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: table.family(),
            protocol: table.protocol(),
            extensions: ExtensionFlags::empty(),
            // TIME_WAIT sockets have no inode, so nothing could be resolved through them.
            states: StateFlags::all() - StateFlags::TIME_WAIT,
            socket_id,
        })
        .into(),
    );
    message.finalize();
    let mut bytes = vec![0u8; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

#[derive(Debug, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

/// Parses one reply datagram of the dump `sequence` of `table` into `sockets`, which may hold
/// at most `max_sockets`.
fn parse_datagram(
    datagram: &[u8],
    table: InetTable,
    sequence: u32,
    sockets: &mut Vec<InetSocket>,
    max_sockets: usize,
) -> Result<Progress, SockDiagError> {
    let name = table.proc_name();
    let malformed = |what: String| SockDiagError::Malformed { table: name, what };
    let mut offset = 0;
    while offset < datagram.len() {
        let message =
            NetlinkBuffer::new_checked(&datagram[offset..]).map_err(|e| malformed(e.to_string()))?;
        let length = message.length() as usize;
        // Messages are 4-byte aligned; `new_checked` ensured `length` is at least a header.
        offset = offset.saturating_add(length.next_multiple_of(4));
        // A reply to an earlier dump abandoned on this socket: not ours.
        if message.sequence_number() != sequence {
            continue;
        }
        let payload = message.payload();
        match message.message_type() {
            NLMSG_DONE => {
                // The payload is the dump's final status: negative errno when it failed midway.
                let status = payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return match status {
                    Some(status) if status < 0 => {
                        Err(SockDiagError::Kernel { table: name, errno: status.wrapping_neg() })
                    }
                    _ => Ok(Progress::Done),
                };
            }
            NLMSG_ERROR => {
                let error = ErrorBuffer::new_checked(payload).map_err(|e| malformed(e.to_string()))?;
                match error.code() {
                    Some(code) => {
                        return Err(SockDiagError::Kernel { table: name, errno: code.get().wrapping_neg() });
                    }
                    None => continue,
                }
            }
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => return Err(malformed("the kernel reported an overrun".into())),
            SOCK_DIAG_BY_FAMILY => {
                if sockets.len() >= max_sockets {
                    return Err(SockDiagError::TooMany { table: name });
                }
                let header = InetResponseHeader::parse(payload).map_err(|e| malformed(e.to_string()))?;
                if header.family != table.family() {
                    return Err(malformed(format!("a socket of family {} in the reply", header.family)));
                }
                let id = &header.socket_id;
                sockets.push(InetSocket {
                    local: socket_addr(id.source_address, id.source_port),
                    remote: socket_addr(id.destination_address, id.destination_port),
                    state: header.state,
                    inode: u64::from(header.inode),
                });
            }
            other => return Err(malformed(format!("unexpected message type {other}"))),
        }
    }
    Ok(Progress::More)
}

/// The address as /proc prints it: v6 addresses (also v4-mapped ones) stay v6, without scope.
fn socket_addr(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, port)),
        IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkPayload;
    use netlink_packet_sock_diag::inet::InetResponse;

    const MAX: usize = MAX_SOCKETS_PER_TABLE;

    fn response(family: u8, inode: u32, sequence: u32) -> Vec<u8> {
        let socket_id = if family == AF_INET {
            SocketId {
                source_port: 5000,
                destination_port: 41298,
                source_address: "127.0.0.1".parse().unwrap(),
                destination_address: "127.0.0.2".parse().unwrap(),
                interface_id: 0,
                cookie: [0; 8],
            }
        } else {
            SocketId::new_v6()
        };
        let mut header = NetlinkHeader::default();
        header.sequence_number = sequence;
        header.flags = netlink_packet_core::NLM_F_MULTIPART;
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(Box::new(InetResponse {
                header: InetResponseHeader {
                    family,
                    state: 1,
                    timer: None,
                    socket_id,
                    recv_queue: 0,
                    send_queue: 0,
                    uid: 0,
                    inode,
                },
                nlas: Default::default(),
            }))),
        );
        message.finalize();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    fn done(sequence: u32, status: i32) -> Vec<u8> {
        let mut bytes = vec![0u8; 20];
        bytes[..4].copy_from_slice(&20u32.to_ne_bytes());
        bytes[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        bytes[8..12].copy_from_slice(&sequence.to_ne_bytes());
        bytes[16..20].copy_from_slice(&status.to_ne_bytes());
        bytes
    }

    #[test]
    fn parses_a_reply_and_its_end() {
        let mut datagram = response(AF_INET, 77, 9);
        datagram.extend(response(AF_INET, 78, 8)); // an older dump's: ignored
        let mut sockets = Vec::new();
        assert_eq!(parse_datagram(&datagram, InetTable::Tcp4, 9, &mut sockets, MAX).unwrap(), Progress::More);
        assert_eq!(
            sockets,
            vec![InetSocket {
                local: "127.0.0.1:5000".parse().unwrap(),
                remote: "127.0.0.2:41298".parse().unwrap(),
                state: 1,
                inode: 77,
            }]
        );
        assert_eq!(
            parse_datagram(&done(9, 0), InetTable::Tcp4, 9, &mut sockets, MAX).unwrap(),
            Progress::Done
        );
        assert!(matches!(
            parse_datagram(&done(9, -libc::EINTR), InetTable::Tcp4, 9, &mut sockets, MAX),
            Err(SockDiagError::Kernel { errno: libc::EINTR, .. })
        ));
        // A v6 socket in a v4 dump is not what was asked for.
        assert!(matches!(
            parse_datagram(&response(AF_INET6, 5, 9), InetTable::Tcp4, 9, &mut Vec::new(), MAX),
            Err(SockDiagError::Malformed { .. })
        ));
    }

    #[test]
    fn kernel_errors_fail_the_table() {
        // NLMSG_ERROR: header, then the negative errno and the request's header.
        let mut bytes = vec![0u8; 36];
        bytes[..4].copy_from_slice(&36u32.to_ne_bytes());
        bytes[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        bytes[8..12].copy_from_slice(&3u32.to_ne_bytes());
        bytes[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert!(matches!(
            parse_datagram(&bytes, InetTable::Udp6, 3, &mut Vec::new(), MAX),
            Err(SockDiagError::Kernel { table: "udp6", errno: libc::ENOENT })
        ));
        // An error message cut before its code.
        bytes[..4].copy_from_slice(&18u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&bytes[..18], InetTable::Udp6, 3, &mut Vec::new(), MAX),
            Err(SockDiagError::Malformed { .. })
        ));
    }

    /// Every prefix of a valid datagram, and bytes that are not netlink at all, give an error or
    /// an unfinished dump: never a panic, never a socket made of missing bytes.
    #[test]
    fn rejects_truncated_and_garbage_datagrams() {
        let one = response(AF_INET6, 42, 1);
        let mut datagram = one.clone();
        datagram.extend(done(1, 0));
        for cut in 1..datagram.len() {
            let mut sockets = Vec::new();
            match parse_datagram(&datagram[..cut], InetTable::Tcp6, 1, &mut sockets, MAX) {
                Err(SockDiagError::Malformed { .. }) => {}
                Ok(Progress::More) if cut == one.len() => assert_eq!(sockets.len(), 1),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // A length field shorter than the inet_diag message it claims to hold.
        let mut short = one.clone();
        short[..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(parse_datagram(&short, InetTable::Tcp6, 1, &mut Vec::new(), MAX).is_err());
        // Pseudo-random garbage (xorshift, fixed seed), with the length word made plausible.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000 {
            let len = 16 + (round % 200);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if round % 2 == 0 {
                bytes[..4].copy_from_slice(&(len as u32).to_ne_bytes());
                bytes[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
                bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
            }
            let _ = parse_datagram(&bytes, InetTable::Tcp4, 1, &mut Vec::new(), MAX);
        }
    }

    #[test]
    fn stops_at_the_socket_cap() {
        let mut two = response(AF_INET, 7, 1);
        two.extend(response(AF_INET, 8, 1));
        let mut sockets = Vec::new();
        assert!(matches!(
            parse_datagram(&two, InetTable::Tcp4, 1, &mut sockets, 1),
            Err(SockDiagError::TooMany { table: "tcp" })
        ));
        assert_eq!(sockets.len(), 1);
    }
}
