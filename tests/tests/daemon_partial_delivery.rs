//! `sipsctpd` against a peer that never finishes a message (the hardening review's H3).
//!
//! A Python SCTP client in its own network namespace (behind a veth, 10.83.0.2) sends one
//! 300 KB message to the daemon's SCTP listener (10.83.0.1) while an nft rule in its namespace
//! drops every DATA chunk that carries the last fragment of a message (E bit set, B bit clear):
//! the message never completes, and its first fragments fill the receive window. Meanwhile
//! two well-behaved SCTP clients (`tokio-sctp`, one connected before the attack and one after
//! it started) send OPTIONS keep-alives for the daemon itself, which it answers locally:
//!
//! - every keep-alive is answered within [`ANSWER_WITHIN`], before and after the attack's
//!   partial message is given up;
//! - the unfinished message is given up after the partial-message age limit (5 s with the
//!   `[sctp]` timers below), counted once in
//!   `sipsctp_sctp_messages_dropped_total{reason="partial_timeout"}`, and the attacker's
//!   association is aborted.
//!
//! On the old code (`SCTP_FRAGMENT_INTERLEAVE` 0, no partial delivery point, no age limit) the
//! keep-alives sent during the attack go unanswered.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use sipsctp_tests::{
    calls::config,
    daemon::{Daemon, Peer, require_tool, scratch, wait_until},
    netns::{Netns, ip},
    ports::{daemon_partial_delivery as ports, lo},
    require_sctp, vm_kernel,
};
use tokio_sctp::SctpStream;

const NS: &str = "sxd-h3";
const HOST_IF: &str = "sxd-h3-0";
const NS_IF: &str = "sxd-h3-1";
const DAEMON_IP: &str = "10.83.0.1";
const ATTACKER_IP: &str = "10.83.0.2";
const PORT: u16 = ports::DAEMON;
const ADMIN: SocketAddr = lo(ports::ADMIN);
/// The attacker's message: larger than any receive window here.
const ATTACK_BYTES: usize = 300_000;
/// How long one keep-alive may wait for its 200.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The attacker: connects, sends one `size`-byte message in one `send` (one SCTP message, the
/// kernel fragments it), says so on stdout, and keeps the association open for `hold` s.
/// SO_SNDBUFFORCE (32): the whole message must fit in its send buffer, or `send` would wait
/// for room forever.
const ATTACKER: &str = r#"
import socket, sys, time
host, port, size, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)
s.connect((host, port))
head = b"OPTIONS sip:%s:%d SIP/2.0\r\nX-Pad: " % (host.encode(), port)
n = s.send(head + b"p" * (size - len(head)))
print("sent", n, flush=True)
time.sleep(hold)
"#;

/// Removes the veth (and the namespace, by `Netns`'s drop) even when the test fails.
struct Link {
    ns: Netns,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", HOST_IF]).output();
    }
}

fn link() -> Link {
    let link = Link { ns: Netns::new(NS) };
    let _ = Command::new("ip").args(["link", "del", HOST_IF]).output();
    ip(&[
        "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", NS,
    ]);
    ip(&["addr", "add", &format!("{DAEMON_IP}/24"), "dev", HOST_IF]);
    ip(&["link", "set", HOST_IF, "up"]);
    link.ns
        .ip(&["addr", "add", &format!("{ATTACKER_IP}/24"), "dev", NS_IF]);
    // One SCTP packet per skb: with GSO the kernel hands the output hook a batch of packets
    // in one skb, whose first DATA chunk is all the nft rule below sees, and the last fragment
    // of the message sometimes rode in such a batch past it.
    link.ns
        .ip(&["link", "set", "dev", NS_IF, "gso_max_size", "1500"]);
    link.ns.ip(&["link", "set", NS_IF, "up"]);
    // The last fragment of every fragmented message leaving the namespace is lost, each
    // retransmission too. DATA chunk flags: E = 0x01, B = 0x02.
    let rules = "table inet h3 {\n\
                 \tchain out {\n\
                 \t\ttype filter hook output priority 0;\n\
                 \t\tsctp chunk data flags & 0x03 == 0x01 counter drop\n\
                 \t}\n\
                 }\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", NS, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    std::io::Write::write_all(nft.stdin.as_mut().unwrap(), rules.as_bytes()).unwrap();
    let out = nft.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Quick retransmissions and zero-window probes on the attacker's side.
    for (k, v) in [
        ("net.sctp.rto_min", "100"),
        ("net.sctp.rto_initial", "300"),
        ("net.sctp.rto_max", "1000"),
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", NS, "sysctl", "-w", &format!("{k}={v}")])
            .output()
            .expect("sysctl in the namespace");
        assert!(
            out.status.success(),
            "sysctl {k}={v} in {NS}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    link
}

/// The packets the nft rule dropped so far.
fn nft_dropped() -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", NS, "nft", "list", "table", "inet", "h3"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `/proc/net/sctp/assocs` in the attacker's namespace (its TX_QUEUE: what it could not send).
fn ns_assocs() -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", NS, "cat", "/proc/net/sctp/assocs"])
        .output()
        .expect("read the attacker's associations");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A well-behaved SCTP client sending keep-alives (OPTIONS to the daemon itself).
struct Client {
    name: &'static str,
    stream: SctpStream,
    local: SocketAddr,
    sent: u32,
    answered: u32,
    worst: Duration,
}

impl Client {
    async fn connect(name: &'static str) -> Client {
        let daemon: SocketAddr = format!("{DAEMON_IP}:{PORT}").parse().unwrap();
        let stream = tokio::time::timeout(Duration::from_secs(5), SctpStream::connect(daemon))
            .await
            .unwrap_or_else(|_| panic!("{name}: association setup took over 5 s"))
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let local = stream.local_addr().unwrap();
        Client {
            name,
            stream,
            local,
            sent: 0,
            answered: 0,
            worst: Duration::ZERO,
        }
    }

    /// One keep-alive; whether its 200 came within [`ANSWER_WITHIN`].
    async fn keepalive(&mut self) -> bool {
        self.sent += 1;
        let n = self.sent;
        let msg = format!(
            "OPTIONS sip:{DAEMON_IP}:{PORT} SIP/2.0\r\n\
             Via: SIP/2.0/SCTP {local};branch=z9hG4bK-{name}-{n}\r\n\
             From: <sip:{name}@example.org>;tag={name}{n}\r\n\
             To: <sip:{DAEMON_IP}:{PORT}>\r\n\
             Call-ID: h3-{name}-{n}@example.org\r\n\
             CSeq: {n} OPTIONS\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            name = self.name,
        );
        let t = Instant::now();
        self.stream
            .sendmsg(msg.as_bytes(), None, &tokio_sctp::SendOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", self.name));
        let want = format!("CSeq: {n} OPTIONS");
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            let mut buf = BytesMut::with_capacity(65_536);
            let got =
                tokio::time::timeout_at(deadline, self.stream.recvmsg_eor_buf(&mut buf)).await;
            let Ok(got) = got else { return false };
            got.unwrap_or_else(|e| panic!("{}: recv: {e}", self.name));
            let text = String::from_utf8_lossy(&buf);
            if text.starts_with("SIP/2.0 200") && text.contains(&want) {
                self.answered += 1;
                self.worst = self.worst.max(t.elapsed());
                return true;
            }
        }
    }
}

#[test]
fn h3_an_unfinished_message_does_not_starve_the_listener() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    for tool in ["ip", "nft", "python3"] {
        require_tool(tool);
    }
    let _link = link();
    let dir = scratch("partial-delivery");
    // Short SCTP timers: the partial-message age limit is max(5 s, 2 x srto_max).
    let d = Daemon::start(
        "partial-delivery",
        ADMIN,
        &config(
            &[("sctp", &[DAEMON_IP], PORT)],
            &[(None, format!("sctp:127.0.0.1:{}", ports::UPSTREAM).as_str())],
            ADMIN,
            "[ebpf]\nmode = \"off\"\n\n[sctp]\nsctp_srto_initial = 300\nsctp_srto_min = 100\n\
             sctp_srto_max = 1000\n",
        ),
    );

    rt.block_on(async {
        let mut before = Client::connect("before").await;
        assert!(
            before.keepalive().await,
            "kernel {}: no answer before the attack\n{}",
            vm_kernel(),
            d.stderr()
        );

        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", NS, "python3", "-c", ATTACKER])
            .arg(DAEMON_IP)
            .arg(PORT.to_string())
            .arg(ATTACK_BYTES.to_string())
            .arg("60");
        let mut attacker = Peer::spawn("python3 attacker", cmd, dir.join("attacker.log"));
        assert!(
            wait_until(Duration::from_secs(10), || attacker
                .output()
                .contains("sent ")),
            "kernel {}: the attacker did not send: {}",
            vm_kernel(),
            attacker.output()
        );
        // Its fragments fill the daemon's receive window; the kernel starts partial delivery
        // when a chunk arrives that fills what is left (`sctp_eat_data`: datalen >= rwnd,
        // possibly only with a zero-window probe after the attacker's RTO), the daemon reads
        // the start of the message, the window opens, and the last fragment goes out (and is
        // dropped). That drop is the sign the association is in partial delivery.
        let last_dropped = wait_until(Duration::from_secs(20), || nft_dropped() > 0);
        assert!(
            last_dropped,
            "kernel {}: the attacker's last fragment never went out (no partial delivery?); \
             its view:\n{}\nthe daemon's:\n{}",
            vm_kernel(),
            ns_assocs(),
            std::fs::read_to_string("/proc/net/sctp/assocs").unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let attack_started = Instant::now();
        let assocs_during = std::fs::read_to_string("/proc/net/sctp/assocs").unwrap_or_default();

        // During the attack: the old client goes on, a new one connects; 12 keep-alives
        // each over about 6 s (past the age limit).
        let mut after = Client::connect("during").await;
        let mut missed = Vec::new();
        // Keep-alives answered while the unfinished message was still held (not yet given up).
        let mut answered_while_held = 0;
        for i in 0..12 {
            let held = d.metrics().sctp_dropped("partial_timeout") == 0;
            if !before.keepalive().await {
                missed.push(format!("before #{i} at {:?}", attack_started.elapsed()));
            }
            if !after.keepalive().await {
                missed.push(format!("during #{i} at {:?}", attack_started.elapsed()));
            }
            if held && d.metrics().sctp_dropped("partial_timeout") == 0 {
                answered_while_held = 2 * (i + 1) - missed.len();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let m = d.metrics();
        assert!(
            missed.is_empty(),
            "kernel {}: keep-alives unanswered within {ANSWER_WITHIN:?} while one peer's \
             message stayed unfinished: {missed:?}\nassociations then:\n{assocs_during}\n\
             nft dropped {} last fragments; the attacker's view:\n{}\n{}\n{}",
            vm_kernel(),
            nft_dropped(),
            ns_assocs(),
            m.nonzero(),
            d.stderr()
        );
        // Not thanks to the age limit: the listener served while the message was held.
        assert!(
            answered_while_held >= 6,
            "kernel {}: only {answered_while_held} keep-alives answered before the partial \
             message was given up",
            vm_kernel()
        );
        // The unfinished message is given up (once) and its association aborted.
        assert!(
            wait_until(Duration::from_secs(10), || d
                .metrics()
                .sctp_dropped("partial_timeout")
                >= 1),
            "kernel {}: the partial message was not given up\n{}",
            vm_kernel(),
            d.metrics().nonzero()
        );
        let m = d.metrics();
        assert_eq!(m.sctp_dropped("partial_timeout"), 1, "{}", m.nonzero());
        assert!(
            wait_until(Duration::from_secs(5), || d
                .metrics()
                .value("sipsctp_sctp_comm_lost_total")
                >= 1),
            "kernel {}: the attacker's association was not aborted\n{}",
            vm_kernel(),
            d.metrics().nonzero()
        );
        // Still serving afterwards.
        assert!(before.keepalive().await && after.keepalive().await);
        let m = d.metrics();
        eprintln!(
            "kernel {}: {} + {} keep-alives answered (worst {} ms / {} ms; {} of them while a \
             peer's {} B message was held unfinished); given up after {:.1} s: \
             dropped{{partial_timeout}} = {}, comm_lost = {}, nft dropped {} last fragments",
            vm_kernel(),
            before.answered,
            after.answered,
            before.worst.as_millis(),
            after.worst.as_millis(),
            answered_while_held,
            ATTACK_BYTES,
            attack_started.elapsed().as_secs_f64(),
            m.sctp_dropped("partial_timeout"),
            m.value("sipsctp_sctp_comm_lost_total"),
            nft_dropped()
        );
        attacker.assert_running();
    });
}
