//! sipsctpd's SIGHUP reload (hardening review M5), in the VM, with the test as the UDP client
//! and the UDP upstream:
//!
//! - a reload lowering `sctp_srto_min` and `sctp_srto_initial` together (the same file starts
//!   fine) is applied: the running values and the kernel's, read back through
//!   `GET /sctp/options?kernel=1`, are the new ones;
//! - a reload that changes `[sip] max_message_size` (it sized the UDP buffers, the TCP framer
//!   and the SCTP reassembler at start) keeps the old value, with a log line naming the key and
//!   saying a restart is needed, while the same file's other changes apply (`record_route`):
//!   a 3000-byte request without Content-Length, above the old 2048 limit, is dropped and
//!   counted (as `malformed`: the parser refuses a message over the limit), never relayed
//!   truncated, and the next request carries a Record-Route.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use sipsctp_tests::{
    calls,
    daemon::{Daemon, tail},
    ports::{daemon_reload as ports, lo},
    vm_kernel,
};

/// Each test its own ports.
const RTO: Ports = Ports {
    admin: lo(ports::RTO_ADMIN),
    sip: ports::RTO_SIP,
    upstream: ports::RTO_UPSTREAM,
};
const SIZE: Ports = Ports {
    admin: lo(ports::SIZE_ADMIN),
    sip: ports::SIZE_SIP,
    upstream: ports::SIZE_UPSTREAM,
};

struct Ports {
    admin: SocketAddr,
    sip: u16,
    upstream: u16,
}

#[derive(Clone, Copy)]
struct Settings {
    srto_min: i64,
    srto_initial: i64,
    max_message_size: usize,
    record_route: bool,
}

fn config(p: &Ports, s: &Settings) -> String {
    let Ports {
        admin,
        sip,
        upstream,
    } = p;
    calls::config(
        &[
            ("sctp", &["127.0.0.1"], *sip),
            ("udp", &["127.0.0.1"], *sip),
        ],
        &[(None, format!("udp:127.0.0.1:{upstream}").as_str())],
        admin,
        &format!(
            "[sctp]\nsctp_srto_max = 60000\nsctp_srto_initial = {}\nsctp_srto_min = {}\n\
             [sip]\nmax_message_size = {}\nrecord_route = {}\n[ebpf]\nmode = \"off\"\n",
            s.srto_initial, s.srto_min, s.max_message_size, s.record_route
        ),
    )
}

fn option_value(json: &str, name: &str) -> Option<i64> {
    let v = json.split(&format!("\"{name}\":")).nth(1)?;
    v.split([',', '}']).next()?.trim().parse().ok()
}

/// The running `[sctp]` value of `name` and the kernel's on the listener.
fn values(d: &Daemon, p: &Ports, name: &str) -> (Option<i64>, Option<i64>) {
    let (status, body) = d.get("/sctp/options?kernel=1");
    assert_eq!(status, 200, "{body}");
    // {"kernel":{"<listener>":{..}},"options":{..}}
    let section = |key: &str| body.split(key).nth(1).unwrap_or_default();
    (
        option_value(section("\"options\":"), name),
        option_value(section(&format!("\"127.0.0.1:{}\":", p.sip)), name),
    )
}

/// An OPTIONS to a domain the default route takes to the upstream; `body` without a
/// Content-Length (allowed over UDP: the body is the rest of the datagram).
fn options(n: u32, client: SocketAddr, body: &str) -> String {
    let cl = if body.is_empty() {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    format!(
        "OPTIONS sip:bob@example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP {client};branch=z9hG4bK-reload-{n}\r\n\
         From: <sip:alice@example.org>;tag=r{n}\r\n\
         To: <sip:bob@example.net>\r\n\
         Call-ID: reload-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         {cl}\r\n{body}"
    )
}

/// What the upstream receives within `within`: each datagram as text.
fn received(upstream: &UdpSocket, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        upstream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match upstream.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

/// Writes the configuration, sends SIGHUP and waits until the daemon has counted the
/// outcome (`sipsctp_config_reloads_total`); its log line (reloaded or refused) must be there
/// by then, as it is written first.
fn reload(d: &Daemon, p: &Ports, s: &Settings) {
    let logged = |applied: bool| {
        let line = if applied {
            "SIGHUP: configuration reloaded"
        } else {
            "configuration refused"
        };
        d.stderr().matches(line).count()
    };
    let before = (logged(true), logged(false));
    std::fs::write(d.dir.join("config.toml"), config(p, s)).expect("write the config");
    let applied = d.reload();
    let now = if applied { before.0 } else { before.1 };
    assert!(
        logged(applied) > now,
        "the reload was counted (applied: {applied}) but its log line is missing:\n{}",
        tail(&d.stderr(), 20)
    );
}

const START: Settings = Settings {
    srto_min: 1000,
    srto_initial: 3000,
    max_message_size: 2048,
    record_route: false,
};

#[test]
fn sighup_lowers_both_rto_bounds_at_once() {
    let p = &RTO;
    let mut d = Daemon::start("reload_rto", p.admin, &config(p, &START));
    assert_eq!(values(&d, p, "sctp_srto_min"), (Some(1000), Some(1000)));
    assert_eq!(values(&d, p, "sctp_srto_initial"), (Some(3000), Some(3000)));
    // Both lower at once: srto_initial 600 is below the running srto_min 1000, so changing
    // one at a time in the wrong order is refused.
    let lower = Settings {
        srto_min: 300,
        srto_initial: 600,
        ..START
    };
    reload(&d, p, &lower);
    let log = d.stderr();
    assert!(
        !log.contains("configuration refused"),
        "kernel {}: a reload lowering srto_min and srto_initial was refused:\n{}",
        vm_kernel(),
        tail(&log, 10)
    );
    assert_eq!(values(&d, p, "sctp_srto_min"), (Some(300), Some(300)));
    assert_eq!(values(&d, p, "sctp_srto_initial"), (Some(600), Some(600)));
    assert_eq!(values(&d, p, "sctp_srto_max"), (Some(60_000), Some(60_000)));
    // And back up (the other order).
    reload(&d, p, &START);
    assert_eq!(values(&d, p, "sctp_srto_min"), (Some(1000), Some(1000)));
    assert_eq!(values(&d, p, "sctp_srto_initial"), (Some(3000), Some(3000)));
    d.assert_running();
    eprintln!(
        "kernel {}: srto 1000/3000 -> 300/600 -> 1000/3000 by SIGHUP",
        vm_kernel()
    );
}

#[test]
fn sighup_keeps_max_message_size_and_applies_the_rest() {
    let p = &SIZE;
    let mut d = Daemon::start("reload_size", p.admin, &config(p, &START));
    let upstream = UdpSocket::bind(("127.0.0.1", p.upstream)).expect("upstream socket");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    let client_addr = client.local_addr().unwrap();
    let daemon: SocketAddr = ([127, 0, 0, 1], p.sip).into();
    client
        .send_to(options(1, client_addr, "").as_bytes(), daemon)
        .unwrap();
    let got = received(&upstream, Duration::from_secs(3));
    assert!(
        got.len() == 1 && !got[0].contains("Record-Route"),
        "before the reload: one OPTIONS relayed, without Record-Route: {got:?}"
    );
    let dropped_before = d.metrics().sip_dropped("malformed");
    let bigger = Settings {
        max_message_size: 8192,
        record_route: true,
        ..START
    };
    reload(&d, p, &bigger);
    // About 3000 bytes: beyond the 2048 the UDP buffer was sized for.
    let big = options(2, client_addr, &"b".repeat(2800));
    assert!(big.len() > 2900, "{}", big.len());
    client.send_to(big.as_bytes(), daemon).unwrap();
    client
        .send_to(options(3, client_addr, "").as_bytes(), daemon)
        .unwrap();
    let got = received(&upstream, Duration::from_secs(3));
    assert!(
        !got.iter().any(|m| m.contains("reload-2@")),
        "kernel {}: the 3000-byte request was relayed ({} bytes): the old 2048 limit must stay \
         until a restart",
        vm_kernel(),
        got.iter()
            .find(|m| m.contains("reload-2@"))
            .map_or(0, String::len)
    );
    let third = got
        .iter()
        .find(|m| m.contains("reload-3@"))
        .unwrap_or_else(|| panic!("the OPTIONS after the reload was not relayed: {got:?}"));
    assert!(
        third.contains("Record-Route:"),
        "record_route = true applied by the same reload: {third}"
    );
    assert_eq!(
        d.metrics().sip_dropped("malformed"),
        dropped_before + 1,
        "the oversized request is a counted drop"
    );
    let log = d.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("sip.max_message_size"))
        .unwrap_or_else(|| {
            panic!(
                "kernel {}: no log line names sip.max_message_size:\n{}",
                vm_kernel(),
                tail(&log, 10)
            )
        });
    assert!(line.contains("restart needed"), "{line}");
    assert!(
        line.contains("2048"),
        "the line says the value kept: {line}"
    );
    d.assert_running();
    eprintln!(
        "kernel {}: reload kept max_message_size 2048: {line}",
        vm_kernel()
    );
}
