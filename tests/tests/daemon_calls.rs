//! `sipsctpd` relaying real calls between real peers, inside the VM:
//!
//! - sipp UAC over SCTP -> sipsctpd -> sipp UAS over UDP, sipp's built-in `uac`/`uas`
//!   (INVITE/ACK/BYE): 1000 calls on one association (`-t s1`) and 100 calls on one association
//!   each (`-t sn`), none failed; the daemon's counters equal what sipp sent (INVITE and BYE
//!   exactly once per call in over SCTP and out over UDP; ACK and the responses at least once
//!   and relayed one for one; every INVITE and BYE transaction completed), exactly 1 and
//!   100 associations respectively, and `promtool check metrics` accepts `/metrics`;
//! - SCTP (`-t s1`) -> sipsctpd -> SCTP (sipp UAS `-t s1`): 1000 calls over exactly two
//!   associations (the UAC's and one to the UAS: responses return on the association their
//!   request came on) and every message relayed exactly once;
//! - UDP -> sipsctpd -> SCTP: 1000 calls over one association to the UAS;
//! - Kamailio (sctp module) as the SCTP upstream: 200 calls from sipp over SCTP through sipsctpd
//!   and Kamailio (stateless `forward()`) to a sipp UAS over UDP, every message relayed once
//!   each way over two associations; and behind a domain route: sipp OPTIONS over SCTP
//!   and over UDP answered by Kamailio (its Server header checked by the scenario), the
//!   replies coming back on the daemon's association; the keep-alive (an OPTIONS to the
//!   daemon itself) answered 200 with nothing sent to Kamailio;
//! - 10 % netem loss on the SCTP leg (the UAC in its own network namespace behind a veth,
//!   loss on both ends of the veth; the UDP leg on loopback is clean): every one of 100 calls
//!   completes, SCTP retransmits (the kernel counts them), and SIP never does (INVITE and BYE
//!   arrive exactly once each).
//!
//! Rates fit the VM: its CPUs are emulated (TCG) and the daemon is the debug build; sipp's UDP
//! peers retransmit after 500 ms. SCTP -> UDP runs at 40 calls/s (the UAC does not retransmit;
//! the UDP UAS's extra 200s are allowed for). UDP -> SCTP runs at 20 calls/s: at 40, with the
//! VM's CPUs shared with another busy process, the sipp UAS over SCTP fell behind and stopped
//! answering BYEs (the daemon relayed every retransmitted BYE; the UAS answered a fraction),
//! and the UAC's BYE retransmissions made it worse; at 20 no retransmission happens even then.
//! The one-association-per-call `-t sn` run goes at 10 calls/s.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use sipsctp_tests::{
    calls::{Uac, config, netem_dropped, uas_with},
    daemon::{
        Daemon, Metrics, Peer, data_file, json_u64, promtool_check, require_tool, scratch,
        wait_port, wait_until,
    },
    kernel_sctp,
    netns::{Netns, ip},
    ports::{daemon_calls as ports, lo},
    require_sctp, vm_kernel,
};

/// A daemon `name` listening on SCTP and UDP at 127.0.0.1:`port` that sends every request to
/// `upstream`, with its admin API on `admin` and `extra` TOML.
fn relay_daemon(name: &str, port: u16, upstream: &str, admin: &str, extra: &str) -> Daemon {
    Daemon::start(
        name,
        addr(admin),
        &config(
            &[
                ("sctp", &["127.0.0.1"], port),
                ("udp", &["127.0.0.1"], port),
            ],
            &[(None, upstream)],
            admin,
            extra,
        ),
    )
}

/// sipp's built-in UAS, behaving like a user agent (`uas_ua.xml`), on `ip:port` over
/// `transport` (`u1`, `s1`), in the background; returns once its port is open.
fn uas(dir: &Path, transport: &str, ip: &str, port: u16) -> Peer {
    uas_with(dir, None, transport, ip, port)
}

/// The eBPF kernel probes off: loading them takes the emulated CPUs of the VM some 10 s per
/// daemon start, which the relay tests do not need to pay each time (the s1 -> UDP counters test
/// and the SIGTERM tests keep the default, probes on).
const EBPF_OFF: &str = "[ebpf]\nmode = \"off\"\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// Every SIP drop counter of the daemon, non-zero ones only.
fn sip_drops(m: &Metrics) -> Vec<String> {
    m.text
        .lines()
        .filter(|l| {
            (l.starts_with("sipsctp_sip_messages_dropped_total")
                || l.starts_with("sipsctp_sctp_messages_dropped_total")
                || l.starts_with("sipsctp_sip_transactions_"))
                && !l.ends_with(" 0")
        })
        .map(str::to_owned)
        .collect()
}

/// How many associations `/sctp/assocs` lists.
fn assocs_listed(d: &Daemon) -> usize {
    let (status, body) = d.get("/sctp/assocs");
    assert_eq!(status, 200, "GET /sctp/assocs: {body}");
    body.matches("\"assoc_id\"").count()
}

/// The histogram count of completed transactions `method`/`class`.
fn completed(m: &Metrics, method: &str, class: &str) -> u64 {
    m.sum(
        "sipsctp_sip_transaction_duration_seconds_count",
        &[("method", method), ("status_class", class)],
    )
}

/// What the counters must show after `n` sipp `uac`/`uas` calls relayed from `uac` (the
/// transport the UAC speaks) to `uas` (the UAS's side): INVITE and BYE in and out exactly once
/// per call (the UAC never retransmits), every ACK relayed (one per call plus one per 200 the
/// UAS retransmitted before it came), 180 and the 200 to BYE exactly once each way, the 200
/// to INVITE in at least once per call, and every INVITE and BYE transaction completed with a
/// 2xx. Returns the ACKs and the 200s to INVITE that came in, for the caller's own checks.
fn assert_calls_relayed(m: &Metrics, n: u64, uac: &str, uas: &str, show: &str) -> (u64, u64) {
    for method in ["INVITE", "BYE"] {
        assert_eq!(
            (
                m.requests(method, uac, "in"),
                m.requests(method, uas, "out")
            ),
            (n, n),
            "kernel {}: {method} in over {uac}, out over {uas}:\n{show}",
            vm_kernel()
        );
    }
    let acks = m.requests("ACK", uac, "in");
    assert!(acks >= n, "ACK in over {uac}: {acks} < {n}:\n{show}");
    assert_eq!(
        m.requests("ACK", uas, "out"),
        acks,
        "every ACK relayed:\n{show}"
    );
    // A request the relay retransmitted toward a UDP UAS (timers A/E: its answer was late or
    // lost) may be answered twice: the 180 again (relayed: provisional), the 200 to BYE again
    // (absorbed). Without retransmissions, exactly one each.
    let rtx = m.sum("sipsctp_sip_retransmissions_total", &[("leg", "request")]);
    let (p_in, p_out, b_in, b_out) = (
        m.responses("INVITE", "1xx", uas, "in"),
        m.responses("INVITE", "1xx", uac, "out"),
        m.responses("BYE", "2xx", uas, "in"),
        m.responses("BYE", "2xx", uac, "out"),
    );
    assert!(
        (n..=n + rtx).contains(&p_in)
            && p_out == p_in
            && (n..=n + rtx).contains(&b_in)
            && b_out == n,
        "180 in over {uas} {p_in}, out over {uac} {p_out}; 200-to-BYE in {b_in}, out {b_out}; \
         {n} calls, {rtx} requests retransmitted by the relay:\n{show}"
    );
    let ok_in = m.responses("INVITE", "2xx", uas, "in");
    assert!(ok_in >= n, "200 to INVITE in over {uas}: {ok_in}:\n{show}");
    assert_eq!(
        (completed(m, "INVITE", "2xx"), completed(m, "BYE", "2xx")),
        (n, n),
        "completed transactions:\n{show}"
    );
    (acks, ok_in)
}

/// Calls for the SCTP -> SCTP run (both legs reliable: sipp never retransmits, so the run
/// only takes as long as the daemon needs; about 40 s in the VM, whose TCG-emulated CPUs
/// let the debug build relay some 150 messages per second).
const CALLS: u32 = 1000;

/// sipp UAC over SCTP (`transport`: `s1` or `sn`) -> sipsctpd -> sipp UAS over UDP: `calls`
/// calls at `rate`; checks sipp's totals, the daemon's counters against them, the association
/// count, and `promtool check metrics`.
fn sctp_to_udp(
    name: &str,
    transport: &str,
    calls: u32,
    rate: u32,
    base: u16,
    admin: &str,
    extra: &str,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let (daemon_port, uac_port, uas_port) = (base, base + 10, base + 20);
    let dir = scratch(name);
    let _uas = uas(&dir, "u1", "127.0.0.1", uas_port);
    let d = relay_daemon(
        name,
        daemon_port,
        &format!("udp:127.0.0.1:{uas_port}"),
        admin,
        extra,
    );
    let mut peak = 0usize;
    let r = Uac {
        scenario: None,
        transport,
        local_ip: "127.0.0.1",
        local_port: uac_port,
        remote: SocketAddr::from(([127, 0, 0, 1], daemon_port)),
        calls,
        rate,
        netns: None,
    }
    .run(&dir, || peak = peak.max(assocs_listed(&d)));
    r.assert_all_ok(
        calls,
        &format!("sipp -t {transport} -> sipsctpd -> sipp UAS over UDP"),
        &d,
    );
    // sipp exited: its associations end with it.
    let closed = wait_until(Duration::from_secs(10), || {
        json_u64(&d.get("/sctp/info").1, "opened_connections") == Some(0)
    });
    let m = d.settle();
    assert!(
        closed,
        "associations still open 10 s after sipp: {}",
        d.get("/sctp/info").1
    );
    promtool_check(&m.text);

    let n = u64::from(calls);
    let show = m.nonzero();
    let (acks, ok_in) = assert_calls_relayed(&m, n, "sctp", "udp", &show);
    // The UDP UAS retransmits the 200 until the ACK arrives: those after sipp ended the call
    // and closed its association cannot all be delivered (see the send failures below).
    assert!(
        m.responses("INVITE", "2xx", "sctp", "out") >= n,
        "200 to INVITE out over SCTP:\n{show}"
    );
    // s1: one association for all calls; sn: one per call. Each closed by sipp, none lost.
    let assocs = if transport == "s1" { 1 } else { n };
    assert_eq!(
        (
            m.value("sipsctp_sctp_established_total"),
            m.value("sipsctp_sctp_comm_lost_total"),
        ),
        (assocs, 0),
        "kernel {}: SCTP counters (established, comm_lost):\n{show}\n{}",
        vm_kernel(),
        r.show()
    );
    // A 200 the UDP UAS retransmitted after sipp had ended the call (and closed its
    // association) cannot be delivered: the only sends allowed to fail.
    let late = ok_in - n;
    let failed = m.value("sipsctp_sctp_send_failed_total");
    assert!(
        failed <= late && m.sip_dropped("send_failed") <= late,
        "kernel {}: {failed} SCTP sends failed, {} SIP messages dropped as send_failed; only \
         the {late} retransmitted 200s may:\n{show}",
        vm_kernel(),
        m.sip_dropped("send_failed")
    );
    if transport == "s1" {
        assert_eq!(peak, 1, "/sctp/assocs listed at most one association");
    }
    // The UDP UAS's 200 retransmissions that came before the ACK reached it are absorbed by
    // the relay (which re-sends the ACK): counted, allowed.
    let drops: Vec<String> = sip_drops(&m)
        .into_iter()
        .filter(|l| !l.contains("send_failed") && !l.contains("retransmission_absorbed"))
        .collect();
    assert!(
        drops.is_empty(),
        "no other drops, no expired transactions: {drops:?}"
    );
    eprintln!(
        "kernel {}: sipp -t {transport} -> sipsctpd -> UDP UAS: {n} calls in {:.1} s, 0 failed, \
         {assocs} association(s) (at most {peak} open at once), ACK {acks}, 200-to-INVITE \
         {ok_in}; counters exact; promtool check metrics passed",
        vm_kernel(),
        r.run.took.as_secs_f64()
    );
}

#[test]
fn daemon_sctp_s1_to_udp_1000_calls_match_the_counters() {
    sctp_to_udp(
        "sctp-s1-to-udp",
        "s1",
        CALLS,
        40,
        ports::S1_TO_UDP_BASE,
        &lo(ports::S1_TO_UDP_ADMIN).to_string(),
        "",
    );
}

#[test]
fn daemon_sctp_sn_to_udp_100_calls_one_association_each() {
    sctp_to_udp(
        "sctp-sn-to-udp",
        "sn",
        100,
        10,
        ports::SN_TO_UDP_BASE,
        &lo(ports::SN_TO_UDP_ADMIN).to_string(),
        EBPF_OFF,
    );
}

#[test]
fn daemon_sctp_s1_to_sctp_1000_calls_on_one_association_each_way() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("sctp-to-sctp");
    let _uas = uas(&dir, "s1", "127.0.0.1", ports::SCTP_TO_SCTP_UAS);
    let admin = &lo(ports::SCTP_TO_SCTP_ADMIN).to_string();
    let d = Daemon::start(
        "sctp-to-sctp",
        addr(admin),
        &config(
            &[("sctp", &["127.0.0.1"], ports::SCTP_TO_SCTP_DAEMON)],
            &[(
                None,
                format!("sctp:127.0.0.1:{}", ports::SCTP_TO_SCTP_UAS).as_str(),
            )],
            admin,
            EBPF_OFF,
        ),
    );
    let mut peak = 0usize;
    let r = Uac {
        scenario: None,
        transport: "s1",
        local_ip: "127.0.0.1",
        local_port: ports::SCTP_TO_SCTP_UAC,
        remote: lo(ports::SCTP_TO_SCTP_DAEMON),
        calls: CALLS,
        rate: 200,
        netns: None,
    }
    .run(&dir, || peak = peak.max(assocs_listed(&d)));
    r.assert_all_ok(CALLS, "sipp -t s1 -> sipsctpd -> sipp UAS -t s1", &d);
    println!(
        "kernel {}: SCTP counters during the run: {:?}",
        vm_kernel(),
        r.snmp
    );
    let m = d.settle();
    let show = m.nonzero();
    let n = u64::from(CALLS);
    // Reliable on both legs: no SIP retransmission anywhere, every message exactly once.
    for method in ["INVITE", "ACK", "BYE"] {
        assert_eq!(
            (
                m.requests(method, "sctp", "in"),
                m.requests(method, "sctp", "out")
            ),
            (n, n),
            "kernel {}: {method} in and out over SCTP:\n{show}",
            vm_kernel()
        );
    }
    for (method, class) in [("INVITE", "1xx"), ("INVITE", "2xx"), ("BYE", "2xx")] {
        assert_eq!(
            (
                m.responses(method, class, "sctp", "in"),
                m.responses(method, class, "sctp", "out")
            ),
            (n, n),
            "{class} to {method} in and out over SCTP:\n{show}"
        );
    }
    // One association from sipp's single socket, one to the UAS: the responses went back on
    // the association their request came on (a new one would show here).
    assert_eq!(
        (m.value("sipsctp_sctp_established_total"), peak),
        (2, 2),
        "kernel {}: associations established, and the most /sctp/assocs listed during the \
         run:\n{show}",
        vm_kernel()
    );
    assert!(sip_drops(&m).is_empty(), "{:?}", sip_drops(&m));
    assert_eq!(
        m.value("sipsctp_sctp_send_queue_messages"),
        0,
        "messages still waiting in the send queue after the run:\n{show}"
    );
    // sipp's association ended with sipp; the one to the UAS stays.
    let one_left = wait_until(Duration::from_secs(10), || assocs_listed(&d) == 1);
    let (_, list) = d.get("/sctp/assocs");
    assert!(
        one_left
            && list.contains(&format!(
                "\"primary\":\"127.0.0.1:{}\"",
                ports::SCTP_TO_SCTP_UAS
            )),
        "after sipp's exit only the association to the UAS is left: {list}"
    );
    eprintln!(
        "kernel {}: sipp -t s1 -> sipsctpd -> sipp UAS -t s1: {n} calls in {:.1} s, 0 failed, \
         2 associations",
        vm_kernel(),
        r.run.took.as_secs_f64()
    );
}

/// Calls for UDP -> SCTP: the UDP UAC retransmits an INVITE unanswered after 500 ms, and sipp's
/// UAS over SCTP aborts a call on a retransmitted INVITE (it expects none on a reliable
/// transport), so the rate stays where the VM answers well within 500 ms.
#[test]
fn daemon_udp_to_sctp_1000_calls() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("udp-to-sctp");
    let _uas = uas(&dir, "s1", "127.0.0.1", ports::UDP_TO_SCTP_UAS);
    let admin = &lo(ports::UDP_TO_SCTP_ADMIN).to_string();
    let d = relay_daemon(
        "udp-to-sctp",
        ports::UDP_TO_SCTP_DAEMON,
        &format!("sctp:127.0.0.1:{}", ports::UDP_TO_SCTP_UAS),
        admin,
        EBPF_OFF,
    );
    let r = Uac {
        scenario: None,
        transport: "u1",
        local_ip: "127.0.0.1",
        local_port: ports::UDP_TO_SCTP_UAC,
        remote: lo(ports::UDP_TO_SCTP_DAEMON),
        calls: CALLS,
        rate: 20,
        netns: None,
    }
    .run(&dir, || {});
    r.assert_all_ok(CALLS, "sipp -t u1 -> sipsctpd -> sipp UAS -t s1", &d);
    let m = d.settle();
    let show = m.nonzero();
    let n = u64::from(CALLS);
    // INVITE and BYE go to the SCTP UAS once each: a retransmission from the UDP caller is
    // absorbed by the relay (and answered with the last response it sent, if any). ACKs are
    // all relayed.
    for method in ["INVITE", "BYE"] {
        let inn = m.requests(method, "udp", "in");
        assert!(inn >= n, "{method} in over UDP: {inn}:\n{show}");
        assert_eq!(
            m.requests(method, "sctp", "out"),
            n,
            "{method} relayed once:\n{show}"
        );
    }
    let retransmitted_in =
        m.requests("INVITE", "udp", "in") + m.requests("BYE", "udp", "in") - 2 * n;
    assert_eq!(
        m.sip_dropped("retransmission_absorbed"),
        retransmitted_in,
        "every UDP retransmission absorbed, nothing else:\n{show}"
    );
    let acks = m.requests("ACK", "udp", "in");
    assert!(acks >= n, "ACK in over UDP: {acks}:\n{show}");
    assert_eq!(
        m.requests("ACK", "sctp", "out"),
        acks,
        "ACK relayed:\n{show}"
    );
    assert_eq!(
        (
            m.responses("INVITE", "2xx", "sctp", "in"),
            m.responses("BYE", "2xx", "sctp", "in")
        ),
        (
            m.responses("INVITE", "2xx", "udp", "out"),
            m.responses("BYE", "2xx", "udp", "out")
        ),
        "every 200 relayed:\n{show}"
    );
    assert_eq!(
        m.value("sipsctp_sctp_established_total"),
        1,
        "one association, to the UAS, for all calls:\n{show}"
    );
    let drops: Vec<String> = sip_drops(&m)
        .into_iter()
        .filter(|l| !l.contains("retransmission_absorbed"))
        .collect();
    assert!(drops.is_empty(), "{drops:?}");
    eprintln!(
        "kernel {}: sipp -t u1 -> sipsctpd -> sipp UAS -t s1: {n} calls in {:.1} s, 0 failed, \
         INVITE in {} (UDP retransmissions included), SCTP sends that found the buffer full {}",
        vm_kernel(),
        r.run.took.as_secs_f64(),
        m.requests("INVITE", "udp", "in"),
        m.value("sipsctp_sctp_sendq_full_total")
    );
}

/// Kamailio with `tests/data/daemon/kamailio.cfg` (SCTP and UDP on 127.0.0.1:5390; OPTIONS
/// answered, everything else forwarded to a UDP UAS on 127.0.0.1:5391), in `dir`; returns once
/// its SCTP port is open.
fn kamailio(dir: &Path) -> Peer {
    require_tool("kamailio");
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f")
        .arg(data_file("kamailio.cfg"))
        .args(["-DD", "-E", "-m", "32", "-M", "8"])
        .current_dir(dir);
    let mut kam = Peer::spawn("kamailio", cmd, dir.join("kamailio.log"));
    wait_port(ports::KAMAILIO, false, &mut kam);
    kam
}

#[test]
fn daemon_kamailio_sctp_upstream_relays_calls_to_its_uas() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("kamailio-calls");
    let _uas = uas(&dir, "u1", "127.0.0.1", ports::KAMAILIO_UAS);
    let mut kam = kamailio(&dir);
    let admin = &lo(ports::KAMAILIO_CALLS_ADMIN).to_string();
    let d = relay_daemon(
        "kamailio-calls",
        ports::KAMAILIO_CALLS_DAEMON,
        &format!("sctp:127.0.0.1:{}", ports::KAMAILIO),
        admin,
        EBPF_OFF,
    );
    let n = 200u32;
    let what = "sipp -t s1 -> sipsctpd -> Kamailio over SCTP -> sipp UAS over UDP";
    let r = Uac {
        scenario: None,
        transport: "s1",
        local_ip: "127.0.0.1",
        local_port: ports::KAMAILIO_CALLS_UAC,
        remote: lo(ports::KAMAILIO_CALLS_DAEMON),
        calls: n,
        rate: 20,
        netns: None,
    }
    .run(&dir, || {});
    r.assert_all_ok(n, what, &d);
    kam.assert_running();
    let m = d.settle();
    let show = m.nonzero();
    let n = u64::from(n);
    // Both legs are SCTP: in from sipp, out to Kamailio; the responses in from Kamailio, out to
    // sipp.
    let (_, ok_in) = assert_calls_relayed(&m, n, "sctp", "sctp", &show);
    // The UAS retransmits the 200 (over UDP, through Kamailio) until the ACK arrives; each one
    // that reaches the daemon goes on to sipp, whose association is still up.
    assert_eq!(
        m.responses("INVITE", "2xx", "sctp", "out"),
        ok_in,
        "every 200 to INVITE relayed:\n{show}"
    );
    // Kamailio sent its responses on the daemon's association to it: two in all.
    let (_, list) = d.get("/sctp/assocs");
    assert!(
        list.contains(&format!("\"primary\":\"127.0.0.1:{}\"", ports::KAMAILIO)),
        "the association to Kamailio: {list}"
    );
    assert_eq!(
        (
            m.value("sipsctp_sctp_established_total"),
            m.value("sipsctp_sctp_comm_lost_total"),
            m.value("sipsctp_sctp_send_failed_total"),
        ),
        (2, 0, 0),
        "kernel {}: (established, comm_lost, send_failed): sipp's association and the one to \
         Kamailio:\n{show}\n{list}",
        vm_kernel()
    );
    assert!(sip_drops(&m).is_empty(), "{:?}", sip_drops(&m));
    eprintln!(
        "kernel {}: {what}: {n} calls in {:.1} s, 0 failed, 200-to-INVITE {ok_in}, 2 associations",
        vm_kernel(),
        r.run.took.as_secs_f64()
    );
}

#[test]
fn daemon_kamailio_sctp_upstream_answers_options_and_keepalive_stays_local() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("kamailio");
    let mut kam = kamailio(&dir);
    let admin = &lo(ports::KAMAILIO_OPTIONS_ADMIN).to_string();
    let d = Daemon::start(
        "kamailio",
        addr(admin),
        &config(
            &[
                ("sctp", &["127.0.0.1"], ports::KAMAILIO_OPTIONS_DAEMON),
                ("udp", &["127.0.0.1"], ports::KAMAILIO_OPTIONS_DAEMON),
            ],
            &[(
                Some("kamailio.test"),
                format!("sctp:127.0.0.1:{}", ports::KAMAILIO).as_str(),
            )],
            admin,
            EBPF_OFF,
        ),
    );
    let scenario = data_file("options_kamailio.xml");
    let n = 100u32;
    for (transport, port) in [
        ("s1", ports::KAMAILIO_OPTIONS_UAC),
        ("u1", ports::KAMAILIO_OPTIONS_UAC + 1),
    ] {
        let r = Uac {
            scenario: Some(scenario.clone()),
            transport,
            local_ip: "127.0.0.1",
            local_port: port,
            remote: lo(ports::KAMAILIO_OPTIONS_DAEMON),
            calls: n,
            rate: 20,
            netns: None,
        }
        .run(&dir, || {});
        r.assert_all_ok(
            n,
            &format!("sipp OPTIONS -t {transport} -> sipsctpd -> Kamailio over SCTP"),
            &d,
        );
        kam.assert_running();
    }
    // Late UDP retransmissions relayed, nothing in flight any more.
    let m = d.settle();
    let out = m.requests("OPTIONS", "sctp", "out");
    assert!(
        out >= u64::from(2 * n) && m.responses("OPTIONS", "2xx", "sctp", "in") >= u64::from(2 * n),
        "OPTIONS to Kamailio and its 200s:\n{}",
        m.nonzero()
    );
    assert_eq!(
        m.requests("OPTIONS", "sctp", "in"),
        u64::from(n),
        "the SCTP UAC's OPTIONS arrive once each:\n{}",
        m.nonzero()
    );
    // Kamailio's 200s came back on the daemon's association: sipp's one plus the daemon's to
    // Kamailio, no third.
    let (_, list) = d.get("/sctp/assocs");
    assert!(
        list.contains(&format!("\"primary\":\"127.0.0.1:{}\"", ports::KAMAILIO)),
        "the association to Kamailio: {list}"
    );
    assert_eq!(
        m.value("sipsctp_sctp_established_total"),
        2,
        "kernel {}: sipp's association and the one to Kamailio:\n{}\n{list}",
        vm_kernel(),
        m.nonzero()
    );

    // The keep-alive: answered by the daemon, nothing to Kamailio.
    let r = Uac {
        scenario: Some(data_file("options_keepalive.xml")),
        transport: "s1",
        local_ip: "127.0.0.1",
        local_port: ports::KAMAILIO_OPTIONS_UAC + 2,
        remote: lo(ports::KAMAILIO_OPTIONS_DAEMON),
        calls: 50,
        rate: 50,
        netns: None,
    }
    .run(&dir, || {});
    r.assert_all_ok(50, "sipp OPTIONS keep-alive -t s1 to sipsctpd", &d);
    let m2 = d.settle();
    assert_eq!(
        m2.requests("OPTIONS", "sctp", "out"),
        out,
        "kernel {}: a keep-alive reached the upstream:\n{}",
        vm_kernel(),
        m2.nonzero()
    );
    assert_eq!(m2.requests("OPTIONS", "sctp", "in"), u64::from(n) + 50);
    assert_eq!(
        m2.responses("OPTIONS", "2xx", "sctp", "out"),
        u64::from(n) + 50,
        "the 200s to the SCTP UAC: Kamailio's relayed, then the daemon's own:\n{}",
        m2.nonzero()
    );
    assert!(sip_drops(&m2).is_empty(), "{:?}", sip_drops(&m2));
    eprintln!(
        "kernel {}: sipp OPTIONS over SCTP and UDP -> sipsctpd -> Kamailio over SCTP: {} \
         answered by Kamailio; 50 keep-alives answered by sipsctpd, none forwarded",
        vm_kernel(),
        2 * n
    );
}

/// Removes the namespace (and with it the veth) even when the test fails.
struct LossLink {
    ns: Netns,
}

impl Drop for LossLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "sxd-loss0"])
            .output();
    }
}

#[test]
fn daemon_calls_complete_with_10_percent_loss_on_the_sctp_leg() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    require_tool("tc");
    require_tool("ip");
    // The UAC in its own namespace, 10.77.0.2, behind a veth to the daemon's 10.77.0.1; netem
    // drops 10 % of what leaves either end. The UDP leg (daemon <-> UAS) stays on loopback.
    let link = LossLink {
        ns: Netns::new("sxd-loss"),
    };
    let ns = link.ns.name().to_owned();
    ip(&[
        "link",
        "add",
        "sxd-loss0",
        "type",
        "veth",
        "peer",
        "name",
        "sxd-loss1",
        "netns",
        &ns,
    ]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", "sxd-loss0"]);
    ip(&["link", "set", "sxd-loss0", "up"]);
    link.ns
        .ip(&["addr", "add", "10.77.0.2/24", "dev", "sxd-loss1"]);
    link.ns.ip(&["link", "set", "sxd-loss1", "up"]);
    sipsctp_tests::netns::tc(&[
        "qdisc",
        "add",
        "dev",
        "sxd-loss0",
        "root",
        "netem",
        "loss",
        "10%",
    ]);
    link.ns.tc(&[
        "qdisc",
        "add",
        "dev",
        "sxd-loss1",
        "root",
        "netem",
        "loss",
        "10%",
    ]);
    // Faster SCTP recovery in the UAC's namespace (the daemon's side: its [sctp] table).
    for (k, v) in [
        ("net.sctp.rto_min", "100"),
        ("net.sctp.rto_initial", "300"),
        ("net.sctp.rto_max", "1000"),
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "sysctl", "-w", &format!("{k}={v}")])
            .output()
            .expect("sysctl in the namespace");
        assert!(
            out.status.success(),
            "sysctl {k}={v} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = scratch("loss");
    // No 180: sipsctpd sends SIP unordered over SCTP (RFC 4168 allows it, against head-of-line
    // blocking), so on a lossy leg a 180 SCTP had to retransmit can arrive after the 200,
    // which sipp's built-in UAC takes for an unexpected message (a real UA ignores it).
    let _uas = uas_with(
        &dir,
        Some(&data_file("uas_no_ringing.xml")),
        "u1",
        "127.0.0.1",
        ports::LOSS_UAS,
    );
    let admin = &lo(ports::LOSS_ADMIN).to_string();
    let d = Daemon::start(
        "loss",
        addr(admin),
        &config(
            &[
                ("sctp", &["10.77.0.1"], ports::LOSS_DAEMON),
                ("udp", &["127.0.0.1"], ports::LOSS_DAEMON),
            ],
            &[(None, format!("udp:127.0.0.1:{}", ports::LOSS_UAS).as_str())],
            admin,
            &format!(
                "{EBPF_OFF}[sctp]\nsctp_srto_initial = 300\nsctp_srto_min = 100\n\
                 sctp_srto_max = 1000\n"
            ),
        ),
    );
    let snmp0 = kernel_sctp::snmp();
    let calls = 100u32;
    let r = Uac {
        scenario: None,
        transport: "s1",
        local_ip: "10.77.0.2",
        local_port: ports::LOSS_UAC,
        remote: SocketAddr::from(([10, 77, 0, 1], ports::LOSS_DAEMON)),
        calls,
        rate: 10,
        netns: Some(&ns),
    }
    .run(&dir, || {});
    let snmp1 = kernel_sctp::snmp();
    let dropped = (
        netem_dropped(None, "sxd-loss0"),
        netem_dropped(Some(&ns), "sxd-loss1"),
    );
    r.assert_all_ok(
        calls,
        "sipp -t s1 over a 10 % lossy link -> sipsctpd -> UDP UAS",
        &d,
    );
    let m = d.settle();
    let show = m.nonzero();
    let n = u64::from(calls);
    // SCTP, not SIP, repaired the losses: each INVITE and BYE arrived exactly once.
    assert_eq!(
        (
            m.requests("INVITE", "sctp", "in"),
            m.requests("BYE", "sctp", "in")
        ),
        (n, n),
        "kernel {}: INVITE and BYE in over the lossy SCTP leg:\n{show}",
        vm_kernel()
    );
    assert_eq!(m.responses("BYE", "2xx", "sctp", "out"), n, "{show}");
    assert_eq!(
        (
            m.value("sipsctp_sctp_established_total"),
            m.value("sipsctp_sctp_comm_lost_total")
        ),
        (1, 0),
        "one association, never lost:\n{show}"
    );
    let rtx = |s: &std::collections::BTreeMap<String, u64>| {
        s.get("SctpT3Retransmits").copied().unwrap_or(0)
            + s.get("SctpFastRetransmits").copied().unwrap_or(0)
    };
    assert!(
        dropped.0 > 0 && dropped.1 > 0 && rtx(&snmp1) > rtx(&snmp0),
        "netem dropped {dropped:?} packets (daemon side, UAC side); the daemon's namespace \
         retransmitted {} times",
        rtx(&snmp1) - rtx(&snmp0)
    );
    eprintln!(
        "kernel {}: {n} calls over a 10 % lossy SCTP leg in {:.1} s, 0 failed; netem dropped \
         {} + {} packets, the daemon's side retransmitted {} times; INVITE/BYE in exactly {n}",
        vm_kernel(),
        r.run.took.as_secs_f64(),
        dropped.0,
        dropped.1,
        rtx(&snmp1) - rtx(&snmp0)
    );
}

/// Restores `lo` and the SCTP sysctls of the VM's namespace even when the test fails.
struct LossyLoopback {
    sysctls: Vec<(String, String)>,
}

impl LossyLoopback {
    /// 10 % loss on every packet on `lo`, faster SCTP recovery for the peers (sipp uses the
    /// namespace's defaults).
    fn new(loss: &str) -> Self {
        let mut sysctls = Vec::new();
        for (k, v) in [
            ("net.sctp.rto_min", "100"),
            ("net.sctp.rto_initial", "300"),
            ("net.sctp.rto_max", "1000"),
        ] {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            let old = std::fs::read_to_string(&path).expect("read a sysctl");
            std::fs::write(&path, v).expect("write a sysctl");
            sysctls.push((path, old.trim().to_owned()));
        }
        sipsctp_tests::netns::tc(&["qdisc", "add", "dev", "lo", "root", "netem", "loss", loss]);
        LossyLoopback { sysctls }
    }
}

impl Drop for LossyLoopback {
    fn drop(&mut self) {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
        for (path, old) in &self.sysctls {
            let _ = std::fs::write(path, old);
        }
    }
}

/// The classic trunk: SCTP callers in front of a UDP server, with 10 % loss on both legs
/// (loopback). SCTP repairs its leg; on the UDP leg nobody but the relay retransmits for the
/// SCTP caller, so sipsctpd keeps that leg's transactions (timers A/E, absorbed duplicates,
/// re-sent ACKs). Every call must complete.
#[test]
fn daemon_sctp_to_udp_300_calls_with_10_percent_loss_on_both_legs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    require_tool("tc");
    let dir = scratch("bridge-loss");
    let (daemon_port, uac_port, uas_port) = (
        ports::LOSS_BOTH_DAEMON,
        ports::LOSS_BOTH_UAC,
        ports::LOSS_BOTH_UAS,
    );
    let _uas = uas(&dir, "u1", "127.0.0.1", uas_port);
    let admin = &lo(ports::LOSS_BOTH_ADMIN).to_string();
    let d = relay_daemon(
        "bridge-loss",
        daemon_port,
        &format!("udp:127.0.0.1:{uas_port}"),
        admin,
        &format!(
            "{EBPF_OFF}[sctp]\nsctp_srto_initial = 300\nsctp_srto_min = 100\n\
             sctp_srto_max = 1000\n"
        ),
    );
    let lossy = LossyLoopback::new("10%");
    let calls = 300u32;
    let r = Uac {
        scenario: None,
        transport: "s1",
        local_ip: "127.0.0.1",
        local_port: uac_port,
        remote: addr(&format!("127.0.0.1:{daemon_port}")),
        calls,
        rate: 10,
        netns: None,
    }
    .run(&dir, || {});
    let netem = netem_dropped(None, "lo");
    drop(lossy);
    r.assert_all_ok(
        calls,
        "sipp -t s1 -> sipsctpd -> sipp UAS over UDP, 10 % loss on both legs",
        &d,
    );
    let m = d.settle();
    let show = m.nonzero();
    let rtx = |leg: &str| m.sum("sipsctp_sip_retransmissions_total", &[("leg", leg)]);
    assert!(
        netem > 0 && rtx("request") > 0,
        "kernel {}: netem dropped {netem}; the relay retransmitted {} requests:\n{show}",
        vm_kernel(),
        rtx("request")
    );
    let n = u64::from(calls);
    assert_eq!(
        (
            m.requests("INVITE", "sctp", "in"),
            m.requests("BYE", "sctp", "in")
        ),
        (n, n),
        "kernel {}: each INVITE and BYE came in once over SCTP:\n{show}",
        vm_kernel()
    );
    assert_eq!(
        (
            m.responses("INVITE", "2xx", "sctp", "out"),
            m.responses("BYE", "2xx", "sctp", "out")
        ),
        (n, n),
        "kernel {}: each final answer went to the SCTP caller once (duplicates absorbed):\n{show}",
        vm_kernel()
    );
    eprintln!(
        "kernel {}: {n} calls SCTP -> UDP with 10 % loss on both legs in {:.1} s, 0 failed; \
         netem dropped {netem}; the relay retransmitted {} requests, re-sent {} ACKs, absorbed \
         {} duplicates",
        vm_kernel(),
        r.run.took.as_secs_f64(),
        rtx("request"),
        rtx("ack"),
        m.sip_dropped("retransmission_absorbed")
    );
}

/// M4 of the hardening review: with two SCTP listeners, a response goes back from the listener
/// (and on the association) its request came in on. Before, every SCTP send left from the
/// first listener of the address family: the 200s to a caller of the second listener opened
/// a second association from the other port.
#[test]
fn daemon_responses_leave_from_the_listener_of_their_association() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("two-listeners");
    let _uas = uas(&dir, "u1", "127.0.0.1", ports::TWO_LISTENERS_UAS);
    let admin = &lo(ports::TWO_LISTENERS_ADMIN).to_string();
    let d = Daemon::start(
        "two-listeners",
        addr(admin),
        &config(
            &[
                ("sctp", &["127.0.0.1"], ports::TWO_LISTENERS_FIRST),
                ("sctp", &["127.0.0.1"], ports::TWO_LISTENERS_SECOND),
                ("udp", &["127.0.0.1"], ports::TWO_LISTENERS_FIRST),
            ],
            &[(
                None,
                format!("udp:127.0.0.1:{}", ports::TWO_LISTENERS_UAS).as_str(),
            )],
            admin,
            EBPF_OFF,
        ),
    );
    let calls = 20u32;
    let mut peak = 0usize;
    let r = Uac {
        scenario: None,
        transport: "s1",
        local_ip: "127.0.0.1",
        local_port: ports::TWO_LISTENERS_UAC,
        remote: lo(ports::TWO_LISTENERS_SECOND),
        calls,
        rate: 10,
        netns: None,
    }
    .run(&dir, || peak = peak.max(assocs_listed(&d)));
    r.assert_all_ok(
        calls,
        "sipp -t s1 -> the second SCTP listener -> UDP UAS",
        &d,
    );
    let m = d.settle();
    let show = m.nonzero();
    assert_eq!(
        (m.value("sipsctp_sctp_established_total"), peak),
        (1, 1),
        "kernel {}: one association (sipp's, on the second listener) carried every response; \
         none opened from the first listener:\n{show}",
        vm_kernel()
    );
    assert_eq!(
        m.responses("INVITE", "2xx", "sctp", "out"),
        u64::from(calls),
        "{show}"
    );
}
