//! Under packet loss, the probes' retransmission and timer events equal the kernel's own
//! counters in `/proc/net/sctp/snmp` over the same interval: on Linux 6.7 and later exactly,
//! counting the probe hits the kernel skipped (a probe nested in another on that CPU, which
//! happens when the host stalls the VM; `KernelProbes::missed_runs`); before 6.7, where such
//! hits vanish without a count, never more and at most a few (2, or 2 %) fewer.
//!
//! Setup: six tokio-sctp echo associations (client sockets bound before connecting, so their
//! ports are known to the probes before the INIT) with short RTO bounds (`SCTP_RTOINFO`).
//! netem first drops every packet on `lo` for longer than the initial RTO (each association
//! gets at least one T1-init expiry), then 20 % of them while the associations exchange
//! request/answer pairs and bursts: T1-cookie and T3-rtx expiries, T3 and fast
//! retransmissions. The snmp
//! snapshot is taken before any socket exists and after every association of the test is gone
//! from `/proc/net/sctp/assocs`, so both frame exactly the test's traffic (nothing else in the
//! VM speaks SCTP while the test runs).
//!
//! Which counter matches which event, and why it is exact: the probes hook the functions
//! that increment the counters (see the loader's crate documentation):
//! `sctp_retransmit` bumps `SctpT3Retransmits` / `SctpFastRetransmits` /
//! `SctpPmtudRetransmits` by its `reason`; `sctp_sf_do_6_3_3_rtx` bumps `SctpT3RtxExpireds`;
//! `sctp_sf_t1_init_timer_expire` / `sctp_sf_t1_cookie_timer_expire` bump
//! `SctpT1InitExpireds` / `SctpT1CookieExpireds`.

use std::{collections::BTreeMap, time::Duration};

use sipsctp_ebpf::{
    AssocChangeState, EventKind, KernelProbes, RetransmitReason, Scope, SctpEvent, T1Timer,
    current_netns,
};
use sipsctp_tests::{
    kernel_sctp::{
        NetemOnLo, Rto, client_socket, delta, echo_client, listener, snmp, spawn_echo_server,
        wait_assocs_gone,
    },
    require_sctp, vm_kernel,
};

const ASSOCIATIONS: usize = 6;
const RTO: Rto = Rto {
    initial_ms: 200,
    min_ms: 100,
    max_ms: 800,
};

fn drain(probes: &mut KernelProbes) -> Vec<SctpEvent> {
    std::iter::from_fn(|| probes.try_next_event()).collect()
}

#[tokio::test]
async fn retransmissions_and_timer_expiries_equal_the_kernel_counters_under_loss() {
    require_sctp();
    // Load first, then create the sockets: the probes learn each socket's owner when it is
    // created, and each port is added before its first packet.
    let mut probes = KernelProbes::load(Scope::daemon([]).unwrap())
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    for s in probes.status() {
        assert!(s.is_up(), "kernel {}: probe {s:?}", vm_kernel());
    }
    let listener = listener(Some(RTO));
    let server = listener.local_addr().unwrap();
    let clients: Vec<_> = (0..ASSOCIATIONS)
        .map(|_| client_socket(Some(RTO)))
        .collect();
    let mut ports: Vec<u16> = clients.iter().map(|(_, p)| *p).collect();
    ports.push(server.port());
    for &p in &ports {
        probes.add_port(p).unwrap();
    }

    // The snmp counters are namespace-wide: start from a quiet namespace.
    sipsctp_tests::kernel_sctp::wait_sctp_idle(Duration::from_secs(60)).await;
    let before = snmp();
    // Every first INIT is lost (so each association has at least one T1-init expiry), then
    // 20 % of all packets.
    let netem = NetemOnLo::add(&["loss", "100%"]);
    let echo = spawn_echo_server(listener, ASSOCIATIONS);
    let mut tasks = Vec::new();
    for (socket, _) in clients {
        tasks.push(tokio::spawn(echo_client(socket, server, 12, 8, 1200)));
    }
    tokio::time::sleep(Duration::from_millis(RTO.initial_ms as u64 + 100)).await;
    netem.change(&["loss", "20%"]);
    let mut streams = Vec::new();
    for t in tasks {
        streams.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("echo clients finish within 120 s under 20% loss")
                .expect("echo client"),
        );
    }
    drop(netem);
    drop(streams);
    tokio::time::timeout(Duration::from_secs(30), echo)
        .await
        .expect("the echo server finishes")
        .expect("echo server");
    wait_assocs_gone(&ports, Duration::from_secs(30)).await;
    let after = snmp();

    let events = drain(&mut probes);
    let netns = current_netns().unwrap();
    let pid = std::process::id();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &events {
        assert!(ports.contains(&e.local_port), "filtered port leaked: {e:?}");
        assert_eq!(e.netns, netns, "{e:?}");
        assert_eq!(e.owner, Some(pid), "owner of {e:?}");
        let name = match e.kind {
            EventKind::Retransmit {
                reason: RetransmitReason::T3Rtx,
                ..
            } => "retransmit T3_RTX",
            EventKind::Retransmit {
                reason: RetransmitReason::FastRtx,
                ..
            } => "retransmit FAST_RTX",
            EventKind::Retransmit {
                reason: RetransmitReason::Pmtud,
                ..
            } => "retransmit PMTUD",
            EventKind::Retransmit {
                reason: RetransmitReason::T1Rtx,
                ..
            } => "retransmit T1_RTX",
            EventKind::T3RtxExpired { .. } => "t3_rtx_expired",
            EventKind::T1Expired {
                timer: T1Timer::Init,
                ..
            } => "t1_init_expired",
            EventKind::T1Expired {
                timer: T1Timer::Cookie,
                ..
            } => "t1_cookie_expired",
            EventKind::RtoUpdate { .. } => "rto_update",
            EventKind::AssocNew { .. } => "assoc_new",
            EventKind::AssocFree { .. } => "assoc_free",
            EventKind::AssocChange {
                state: AssocChangeState::CommUp,
                ..
            } => "comm_up",
            EventKind::AssocChange {
                state: AssocChangeState::ShutdownComp,
                ..
            } => "shutdown_comp",
            EventKind::AssocChange { .. } => "assoc_change other",
            EventKind::PathChange { .. } => "path_change",
            EventKind::PrimaryChange { .. } => "primary_change",
            EventKind::HeartbeatSent { .. } => "heartbeat_sent",
            EventKind::HeartbeatAck { .. } => "heartbeat_ack",
            _ => "other",
        };
        *counts.entry(name).or_default() += 1;
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let snmp_deltas: BTreeMap<&str, u64> = [
        "SctpT3Retransmits",
        "SctpFastRetransmits",
        "SctpPmtudRetransmits",
        "SctpT3RtxExpireds",
        "SctpT1InitExpireds",
        "SctpT1CookieExpireds",
        "SctpActiveEstabs",
        "SctpPassiveEstabs",
        "SctpShutdowns",
        "SctpAborteds",
    ]
    .into_iter()
    .map(|n| (n, delta(&before, &after, n)))
    .collect();
    let report = format!(
        "kernel {}, HZ {}: events {counts:?}; snmp deltas {snmp_deltas:?}; kernel counters {:?}",
        vm_kernel(),
        probes.hz(),
        probes.counters().unwrap()
    );
    eprintln!("{report}");

    // A kprobe hit the kernel skipped because it nested in another probe on that CPU (a timer
    // softirq interrupting a probe that runs in process context: more likely when the host
    // stalls the VM) loses its event. Linux counts these since 6.7, per program and link
    // (`KernelProbes::missed_runs`): there the events plus the skipped runs must equal the
    // kernel's counters exactly. Before 6.7 nothing counts them: the events must not exceed
    // the counters and may fall short by a few (at most 2, or 2 %), never more.
    let missed = probes.missed_runs().unwrap();
    let skipped = |program: &str| {
        missed.as_ref().map_or(0, |m| {
            m.iter()
                .filter(|r| r.program == program)
                .map(|r| r.runs)
                .sum::<u64>()
        })
    };
    let report = format!("{report}; skipped runs {missed:?}");
    eprintln!(
        "kernel {}: probe runs skipped: {}",
        vm_kernel(),
        missed
            .as_ref()
            .map_or("not counted by this kernel".to_owned(), |m| {
                let nonzero: Vec<String> = m
                    .iter()
                    .filter(|r| r.runs > 0)
                    .map(|r| format!("{} {}", r.program, r.runs))
                    .collect();
                format!("{nonzero:?}")
            })
    );
    // sctp_retransmit runs once per retransmission, whatever the reason: a skipped run is one
    // of the three, so each reason's count lies within the skipped runs of its counter, and
    // the three together are exact.
    let retransmits = [
        ("retransmit T3_RTX", "SctpT3Retransmits"),
        ("retransmit FAST_RTX", "SctpFastRetransmits"),
        ("retransmit PMTUD", "SctpPmtudRetransmits"),
    ];
    // Where skipped runs are not counted (before 6.7): how many events may be missing.
    let uncounted = |kernel: u64| {
        if missed.is_some() {
            0
        } else {
            (kernel / 50).max(2)
        }
    };
    let rtx_skipped = skipped("sctp_retransmit");
    for (event, counter) in retransmits {
        assert!(
            count(event) <= snmp_deltas[counter]
                && snmp_deltas[counter]
                    <= count(event) + rtx_skipped + uncounted(snmp_deltas[counter]),
            "{event} events vs {counter} delta ({rtx_skipped} runs skipped); {report}"
        );
    }
    let rtx_events: u64 = retransmits.iter().map(|(e, _)| count(e)).sum();
    let rtx_kernel: u64 = retransmits.iter().map(|(_, c)| snmp_deltas[c]).sum();
    assert!(
        rtx_events + rtx_skipped <= rtx_kernel
            && rtx_kernel <= rtx_events + rtx_skipped + uncounted(rtx_kernel),
        "retransmit events {rtx_events} + skipped runs {rtx_skipped} vs the three counters \
         {rtx_kernel}; {report}"
    );
    let timers = [
        (
            "t3_rtx_expired",
            "sctp_sf_do_6_3_3_rtx",
            "SctpT3RtxExpireds",
        ),
        (
            "t1_init_expired",
            "sctp_sf_t1_init_timer_expire",
            "SctpT1InitExpireds",
        ),
        (
            "t1_cookie_expired",
            "sctp_sf_t1_cookie_timer_expire",
            "SctpT1CookieExpireds",
        ),
    ];
    for (event, program, counter) in timers {
        let seen = count(event) + skipped(program);
        let kernel = snmp_deltas[counter];
        assert!(
            seen <= kernel && kernel <= seen + uncounted(kernel),
            "{event} events + skipped runs of {program} ({seen}) vs {counter} delta ({kernel}); \
             {report}"
        );
    }
    if missed.is_none() {
        eprintln!(
            "kernel {}: skipped probe runs are not counted here; events short of the kernel's \
             counters: retransmissions {}, T3 expiries {}",
            vm_kernel(),
            rtx_kernel - rtx_events,
            snmp_deltas["SctpT3RtxExpireds"] - count("t3_rtx_expired")
        );
    }
    // Association life cycle, as it holds in this scenario (no init collision, no restart, no
    // abort): each side's COMM_UP is one `SctpActiveEstabs`/`SctpPassiveEstabs`, each side's
    // SHUTDOWN_COMP one `SctpShutdowns`; a duplicate COOKIE-ECHO (its COOKIE-ACK was lost)
    // finds the association established and makes no second COMM_UP.
    let both_sides = 2 * ASSOCIATIONS as u64;
    assert_eq!(snmp_deltas["SctpAborteds"], 0, "{report}");
    assert_eq!(
        count("comm_up"),
        snmp_deltas["SctpActiveEstabs"] + snmp_deltas["SctpPassiveEstabs"],
        "{report}"
    );
    assert_eq!(count("comm_up"), both_sides, "{report}");
    assert_eq!(
        count("shutdown_comp"),
        snmp_deltas["SctpShutdowns"],
        "{report}"
    );
    assert_eq!(count("assoc_new"), both_sides, "{report}");
    assert_eq!(count("assoc_free"), both_sides, "{report}");
    assert!(
        count("t1_init_expired") >= ASSOCIATIONS as u64,
        "every first INIT was dropped: at least one T1-init expiry each; {report}"
    );
    assert!(
        count("retransmit T3_RTX") > 0,
        "20% loss caused no T3 retransmission: the test proves nothing; {report}"
    );
    let c = probes.counters().unwrap();
    assert_eq!(c.events_lost, 0, "{report}");
    assert_eq!(c.read_errors, 0, "{report}");
    assert_eq!(probes.malformed_records(), 0, "{report}");
}
