//! The eBPF programs built by this workspace attach to the running kernel's SCTP code and
//! deliver events through their ring buffer and aya-log lines through the log crate.
//!
//! Traffic: a tokio-sctp (one-to-one, libsctp-based) echo over loopback, independent of this
//! project's socket code. Both ends send data, so both paths take RTT samples and
//! `sctp_transport_update_rto` runs for two distinct transports. The probes watch exactly the
//! two ports of the echo (the daemon scope).

use std::{collections::BTreeSet, time::Duration};

use sipsctp_ebpf::{AssocChangeState, EventKind, KernelProbes, LoadOptions, ProbeState, Scope};
use sipsctp_tests::{
    CapturingLogger,
    kernel_sctp::{client_socket, echo_client, listener, spawn_echo_server},
    require_sctp, vm_kernel,
};

#[tokio::test]
async fn rto_update_probe_delivers_ring_buffer_events_and_log_lines() {
    require_sctp();
    let logs = CapturingLogger::install();
    let listener = listener(None);
    let server = listener.local_addr().unwrap();
    let (client, client_port) = client_socket(None);
    let ports = [server.port(), client_port];
    let mut probes = KernelProbes::load(Scope::daemon(ports).unwrap())
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    let rto = probes.probe("rto_update").expect("an rto_update probe");
    assert!(rto.is_up(), "kernel {}: {rto:?}", vm_kernel());

    let echo = spawn_echo_server(listener, 1);
    let stream = echo_client(client, server, 30, 1, 64).await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), echo)
        .await
        .unwrap()
        .unwrap();

    let mut transports = BTreeSet::new();
    let mut events = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while transports.len() < 2 {
        let e = tokio::time::timeout_at(deadline, probes.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "kernel {}: only {events} RTO events for {} transports within 10 s",
                    vm_kernel(),
                    transports.len()
                )
            })
            .unwrap();
        assert!(
            ports.contains(&e.local_port) && ports.contains(&e.peer_port),
            "an event of another association: {e:?}"
        );
        let EventKind::RtoUpdate { rtt, .. } = e.kind else {
            continue;
        };
        let transport = e
            .transport
            .unwrap_or_else(|| panic!("an RTO event without its transport: {e:?}"));
        assert!(e.time > Duration::ZERO, "no timestamp: {e:?}");
        // Loopback RTT samples are a few jiffies at most; anything large is a wrong argument.
        assert!(
            rtt.count < 1000,
            "implausible rtt sample {} jiffies",
            rtt.count
        );
        transports.insert(transport);
        events += 1;
    }
    let logged = sipsctp_tests::eventually(Duration::from_secs(5), || {
        logs.lines()
            .iter()
            .any(|l| l.contains("sctp_transport_update_rto rtt="))
    })
    .await;
    assert!(
        logged,
        "no aya-log line from the probe; lines: {:?}",
        logs.lines()
    );
    assert_eq!(probes.events_lost().unwrap(), 0, "ring buffer overflowed");
    assert_eq!(probes.malformed_records(), 0);
    eprintln!(
        "kernel {}: {events} RTO update events over {} transports",
        vm_kernel(),
        transports.len()
    );
}

#[tokio::test]
async fn a_hook_the_kernel_lacks_downs_only_its_probe() {
    require_sctp();
    let logs = CapturingLogger::install();
    let listener = listener(None);
    let server = listener.local_addr().unwrap();
    let (client, client_port) = client_socket(None);
    let ports = [server.port(), client_port];
    // Point the HEARTBEAT-ACK program at a function no kernel has: as on a kernel where the
    // hook was renamed or inlined away.
    let options = LoadOptions::new(Scope::daemon(ports).unwrap())
        .function("sctp_sf_backbeat_8_3", "sipsctp_no_such_kernel_function");
    let mut probes = KernelProbes::load_with(options)
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    for s in probes.status() {
        if s.name == "heartbeat_ack" {
            let ProbeState::Down { reason } = &s.state else {
                panic!("heartbeat_ack should be down: {s:?}")
            };
            assert!(
                reason.contains("sipsctp_no_such_kernel_function"),
                "reason: {reason}"
            );
        } else {
            assert!(s.is_up(), "kernel {}: {s:?}", vm_kernel());
        }
    }
    assert!(
        logs.lines()
            .iter()
            .any(|l| l.starts_with("[WARN]") && l.contains("probe heartbeat_ack is down")),
        "no warning; lines: {:?}",
        logs.lines()
    );

    // The other probes still deliver.
    let echo = spawn_echo_server(listener, 1);
    drop(echo_client(client, server, 3, 1, 64).await);
    tokio::time::timeout(Duration::from_secs(10), echo)
        .await
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut comm_up = 0;
    while comm_up < 2 {
        let e = tokio::time::timeout_at(deadline, probes.next_event())
            .await
            .unwrap_or_else(|_| panic!("kernel {}: {comm_up} COMM_UP events", vm_kernel()))
            .unwrap();
        if matches!(
            e.kind,
            EventKind::AssocChange {
                state: AssocChangeState::CommUp,
                ..
            }
        ) {
            comm_up += 1;
        }
    }
}
