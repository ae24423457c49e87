//! What the eBPF tests compare the probes with: the kernel's own SCTP counters
//! (`/proc/net/sctp/snmp`) and association table (`/proc/net/sctp/assocs`), and the knobs that
//! make kernel SCTP misbehave on demand (netem loss on `lo`, short retransmission timeouts via
//! `SCTP_RTOINFO`). Plus a small tokio-sctp echo used as traffic.
//!
//! Independent of the project's own socket code on purpose: tokio-sctp and procfs only.

use std::{
    collections::BTreeMap, net::SocketAddr, os::fd::AsRawFd, process::Command, time::Duration,
};

use bytes::BytesMut;
use tokio_sctp::{SctpListener, SctpSocket, SctpStream, SendOptions};

/// `/proc/net/sctp/snmp` of the calling thread's network namespace, by counter name.
pub fn snmp() -> BTreeMap<String, u64> {
    // /proc/net is the process's (main thread's) namespace; thread-self is the caller's.
    let text = std::fs::read_to_string("/proc/thread-self/net/sctp/snmp")
        .unwrap_or_else(|e| panic!("reading /proc/thread-self/net/sctp/snmp: {e}"));
    parse_snmp(&text)
}

/// Parses `name value` lines.
pub fn parse_snmp(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// `after[name] - before[name]`, panicking when the counter does not exist.
pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, name: &str) -> u64 {
    let get = |m: &BTreeMap<String, u64>| {
        *m.get(name)
            .unwrap_or_else(|| panic!("/proc/net/sctp/snmp has no {name}: {m:?}"))
    };
    get(after) - get(before)
}

/// One line of `/proc/net/sctp/assocs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssocLine {
    /// `ASSOC-ID`.
    pub assoc_id: i32,
    /// `LPORT`.
    pub local_port: u16,
    /// `RPORT`.
    pub peer_port: u16,
}

/// `/proc/net/sctp/assocs` of the calling thread's network namespace.
pub fn assocs() -> Vec<AssocLine> {
    let text = std::fs::read_to_string("/proc/thread-self/net/sctp/assocs")
        .unwrap_or_else(|e| panic!("reading /proc/thread-self/net/sctp/assocs: {e}"));
    parse_assocs(&text)
}

/// Parses the table: columns ` ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID
/// INODE LPORT RPORT LADDRS <-> RADDRS ...` (net/sctp/proc.c).
pub fn parse_assocs(text: &str) -> Vec<AssocLine> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            Some(AssocLine {
                assoc_id: t.get(6)?.parse().ok()?,
                local_port: t.get(11)?.parse().ok()?,
                peer_port: t.get(12)?.parse().ok()?,
            })
        })
        .collect()
}

/// Waits until no association in `/proc/net/sctp/assocs` uses one of `ports` locally.
pub async fn wait_assocs_gone(ports: &[u16], limit: Duration) {
    let gone = crate::eventually(limit, || {
        assocs().iter().all(|a| !ports.contains(&a.local_port))
    })
    .await;
    assert!(
        gone,
        "associations on ports {ports:?} still exist after {limit:?}: {:?}",
        assocs()
    );
}

/// Waits until the namespace has no SCTP association at all: what earlier tests left (an
/// association still shutting down, say) would otherwise move the namespace-wide
/// `/proc/net/sctp/snmp` counters during a test that compares them with its own numbers.
pub async fn wait_sctp_idle(limit: Duration) {
    let idle = crate::eventually(limit, || assocs().is_empty()).await;
    assert!(
        idle,
        "SCTP associations left by earlier tests after {limit:?}: {:?}",
        assocs()
    );
}

/// Whether something in the calling thread's network namespace listens on SCTP `port`
/// (`/proc/thread-self/net/sctp/eps`).
pub fn sctp_listens(port: u16) -> bool {
    std::fs::read_to_string("/proc/thread-self/net/sctp/eps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(5) == Some(port.to_string().as_str()))
}

/// The kernel's SCTP RTO defaults of this namespace (`net.sctp.rto_min/initial/max`) lowered
/// for the peers a test starts (sipp and others take the kernel's defaults, unlike sipsctpd,
/// whose `[sctp] sctp_srto_*` the tests set), put back on drop. Under netem loss a peer with
/// the defaults (initial 3 s, max 60 s) backs a chunk lost three times in a row off for tens
/// of seconds, and on an ordered stream every later message waits behind it: a test's
/// transactions then time out for a reason that is not the one it checks.
pub struct QuickRto {
    saved: Vec<(&'static str, String)>,
}

impl QuickRto {
    /// rto_min 100 ms, rto_initial 200 ms, rto_max 1000 ms.
    pub fn set() -> QuickRto {
        let mut saved = Vec::new();
        // In an order that keeps min <= initial <= max at every step from the defaults.
        for (key, value) in [
            ("rto_min", "100"),
            ("rto_initial", "200"),
            ("rto_max", "1000"),
        ] {
            let path = format!("/proc/sys/net/sctp/{key}");
            if let Ok(old) = std::fs::read_to_string(&path)
                && std::fs::write(&path, value).is_ok()
            {
                saved.push((key, old.trim().to_owned()));
            }
        }
        QuickRto { saved }
    }
}

impl Drop for QuickRto {
    fn drop(&mut self) {
        // Back in the reverse order (max first), keeping min <= initial <= max.
        for (key, old) in self.saved.iter().rev() {
            let _ = std::fs::write(format!("/proc/sys/net/sctp/{key}"), old);
        }
    }
}

/// Packet loss on `lo` through netem, removed on drop (also when the test panics).
pub struct NetemOnLo {
    _private: (),
}

impl NetemOnLo {
    /// `tc qdisc add dev lo root netem <args>`, e.g. `["loss", "20%"]`.
    pub fn add(args: &[&str]) -> NetemOnLo {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
        let mut all = vec!["qdisc", "add", "dev", "lo", "root", "netem"];
        all.extend_from_slice(args);
        crate::netns::tc(&all);
        NetemOnLo { _private: () }
    }
}

impl NetemOnLo {
    /// `tc qdisc change dev lo root netem <args>`.
    pub fn change(&self, args: &[&str]) {
        let mut all = vec!["qdisc", "change", "dev", "lo", "root", "netem"];
        all.extend_from_slice(args);
        crate::netns::tc(&all);
    }
}

impl Drop for NetemOnLo {
    fn drop(&mut self) {
        let out = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("removing netem from lo failed: {out:?}");
        }
    }
}

/// Sets the socket's RTO bounds for its future associations (`SCTP_RTOINFO`), in ms.
pub fn set_rto(fd: &impl AsRawFd, initial_ms: u32, min_ms: u32, max_ms: u32) {
    /// `struct sctp_rtoinfo` (UAPI).
    #[repr(C)]
    struct RtoInfo {
        assoc_id: i32,
        initial: u32,
        max: u32,
        min: u32,
    }
    const SOL_SCTP: libc::c_int = 132;
    const SCTP_RTOINFO: libc::c_int = 0;
    let info = RtoInfo {
        assoc_id: 0,
        initial: initial_ms,
        max: max_ms,
        min: min_ms,
    };
    // SAFETY: `info` is a live repr(C) value of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            SCTP_RTOINFO,
            (&info as *const RtoInfo).cast(),
            std::mem::size_of::<RtoInfo>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SCTP_RTOINFO): {}",
        std::io::Error::last_os_error()
    );
}

/// Timeouts for the tests' sockets (ms): initial, min, max RTO.
#[derive(Clone, Copy, Debug)]
pub struct Rto {
    /// `srto_initial` (also the first T1 timeout).
    pub initial_ms: u32,
    /// `srto_min`.
    pub min_ms: u32,
    /// `srto_max`.
    pub max_ms: u32,
}

/// A listener on 127.0.0.1 (port chosen by the kernel) with `rto` (else the kernel's
/// defaults) for its associations.
pub fn listener(rto: Option<Rto>) -> SctpListener {
    let socket = SctpSocket::new(socket2::Domain::IPV4).expect("SCTP socket");
    if let Some(rto) = rto {
        set_rto(&socket, rto.initial_ms, rto.min_ms, rto.max_ms);
    }
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    SctpListener::bind_from(socket, "127.0.0.1:0".parse().expect("address")).expect("bind")
}

/// A client socket bound to 127.0.0.1 on a kernel-chosen port (returned), not yet connected,
/// with `rto` (else the kernel's defaults).
pub fn client_socket(rto: Option<Rto>) -> (SctpSocket, u16) {
    let socket = SctpSocket::new(socket2::Domain::IPV4).expect("SCTP socket");
    if let Some(rto) = rto {
        set_rto(&socket, rto.initial_ms, rto.min_ms, rto.max_ms);
    }
    socket
        .bind_sys("127.0.0.1:0".parse().expect("address"))
        .expect("bind client");
    let port = socket.local_addr().expect("local address").port();
    (socket, port)
}

/// Serves one echo association per accepted connection until each peer closes.
pub fn spawn_echo_server(
    listener: SctpListener,
    associations: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..associations {
            let (stream, _) = listener.accept().await.expect("accept");
            tasks.push(tokio::spawn(async move { echo(stream).await }));
        }
        for t in tasks {
            t.await.expect("echo task");
        }
    })
}

async fn echo(stream: SctpStream) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match stream.recvmsg_eor_buf(&mut buf).await {
            Ok((0, _, _)) | Err(_) => return,
            Ok((n, _, _)) => {
                if stream
                    .sendmsg(&buf[..n], None, &SendOptions::default())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Connects `socket` to `server`, then runs `rounds` of: one request/answer, and a burst of
/// `burst` messages of `size` bytes sent back to back before their echoes are read (bursts
/// let SACKs report gaps, which is what fast retransmit needs).
pub async fn echo_client(
    socket: SctpSocket,
    server: SocketAddr,
    rounds: usize,
    burst: usize,
    size: usize,
) -> SctpStream {
    let stream = SctpStream::connect_from(socket, server)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("SCTP_NODELAY");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for round in 0..rounds {
        for i in 0..burst.max(1) {
            let mut msg = format!("OPTIONS sip:probe@127.0.0.1 SIP/2.0 #{round}.{i} ").into_bytes();
            msg.resize(size.max(msg.len()), b'x');
            stream
                .sendmsg(&msg, None, &SendOptions::default())
                .await
                .expect("sendmsg");
        }
        for _ in 0..burst.max(1) {
            buf.clear();
            let (n, _, _) = stream.recvmsg_eor_buf(&mut buf).await.expect("recvmsg");
            assert!(n > 0, "the echo server closed early");
        }
    }
    stream
}

/// What `SCTP_GET_PEER_ADDR_INFO` reports for one path (`struct sctp_paddrinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddrInfo {
    /// `spinfo_assoc_id`.
    pub assoc_id: i32,
    /// `spinfo_state`.
    pub state: i32,
    /// `spinfo_cwnd`.
    pub cwnd: u32,
    /// `spinfo_srtt`: the kernel copies `transport->srtt` as is, in jiffies.
    pub srtt: u32,
    /// `spinfo_rto`: `jiffies_to_msecs(transport->rto)`, milliseconds.
    pub rto_ms: u32,
    /// `spinfo_mtu`.
    pub mtu: u32,
}

/// `getsockopt(SCTP_GET_PEER_ADDR_INFO)` for the path to `peer` (IPv4) on `fd`.
///
/// `struct sctp_paddrinfo` is `packed, aligned(4)` in the UAPI (152 bytes: assoc id, a
/// `sockaddr_storage`, then five 32-bit fields), so it is built and read as bytes here rather
/// than through a Rust struct (tokio-sctp's `Status::primary` gets this layout wrong: its
/// `rto` field holds the kernel's `spinfo_mtu`).
pub fn peer_addr_info(fd: &impl AsRawFd, peer: std::net::SocketAddrV4) -> PeerAddrInfo {
    const SOL_SCTP: libc::c_int = 132;
    const SCTP_GET_PEER_ADDR_INFO: libc::c_int = 15;
    const SIZE: usize = 4 + 128 + 5 * 4;
    let mut buf = [0u8; SIZE];
    // sockaddr_in at offset 4: family (host order), port and address (network order).
    buf[4..6].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    buf[6..8].copy_from_slice(&peer.port().to_be_bytes());
    buf[8..12].copy_from_slice(&peer.ip().octets());
    let mut len = SIZE as libc::socklen_t;
    // SAFETY: `buf` is a live, writable buffer of `len` bytes; the kernel writes at most `len`
    // bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            SCTP_GET_PEER_ADDR_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(SCTP_GET_PEER_ADDR_INFO, {peer}): {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(len as usize, SIZE, "struct sctp_paddrinfo size");
    let word = |at: usize| [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    PeerAddrInfo {
        assoc_id: i32::from_ne_bytes(word(0)),
        state: i32::from_ne_bytes(word(132)),
        cwnd: u32::from_ne_bytes(word(136)),
        srtt: u32::from_ne_bytes(word(140)),
        rto_ms: u32::from_ne_bytes(word(144)),
        mtu: u32::from_ne_bytes(word(148)),
    }
}
