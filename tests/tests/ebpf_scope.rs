//! The default scope reports only the daemon's own associations (its network namespace and
//! its registered ports); the observe-all scope reports every association on the host, with
//! its namespace and the process that owns its socket.
//!
//! Four kinds of association run at once, each watched by a daemon-scope instance of the
//! probes (port P and its client registered) and an observe-all instance:
//! 1. ours: own namespace, port P (registered) — reported by both;
//! 2. another namespace (`ip netns add`, sockets created by a thread that `setns`es into it),
//!    listening on the *same* port P — only observe-all, with that namespace's inode;
//! 3. own namespace, unregistered ports — only observe-all;
//! 4. another process (lksctp-tools' `sctp_darn` server and `sctp_test` client), own
//!    namespace, unregistered ports — only observe-all, owned by those processes.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sipsctp_ebpf::{
    AssocChangeState, EventKind, KernelProbes, Scope, SctpEvent, current_netns, netns_of,
};
use sipsctp_tests::{
    kernel_sctp::{client_socket, echo_client, listener, spawn_echo_server, wait_assocs_gone},
    netns::Netns,
    require_sctp, vm_kernel,
};

fn drain(probes: &mut KernelProbes) -> Vec<SctpEvent> {
    std::iter::from_fn(|| probes.try_next_event()).collect()
}

fn comm_up_ports(events: &[SctpEvent], netns: u32) -> BTreeSet<u16> {
    events
        .iter()
        .filter(|e| {
            e.netns == netns
                && matches!(
                    e.kind,
                    EventKind::AssocChange {
                        state: AssocChangeState::CommUp,
                        ..
                    }
                )
        })
        .map(|e| e.local_port)
        .collect()
}

/// A free SCTP port on 127.0.0.1 in the calling thread's namespace (bound, then released).
fn free_port() -> u16 {
    listener(None).local_addr().unwrap().port()
}

/// Waits until an SCTP endpoint listens on `port` (`/proc/net/sctp/eps`, column LPORT).
async fn wait_listening(port: u16) {
    let listening = sipsctp_tests::eventually(Duration::from_secs(10), || {
        std::fs::read_to_string("/proc/net/sctp/eps")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(5) == Some(&port.to_string()))
    })
    .await;
    assert!(listening, "nothing listens on SCTP port {port}");
}

/// Kills and reaps a child this test started.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn daemon_scope_hides_other_namespaces_ports_and_processes_observe_all_shows_them() {
    require_sctp();
    let own_ns = current_netns().unwrap();
    let mut daemon = KernelProbes::load(Scope::daemon([]).unwrap())
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    let mut all = KernelProbes::load(Scope::All)
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    for s in daemon.status().iter().chain(all.status()) {
        assert!(s.is_up(), "kernel {}: probe {s:?}", vm_kernel());
    }

    // 1. Ours.
    let ours = listener(None);
    let port_p = ours.local_addr().unwrap().port();
    let (our_client, our_client_port) = client_socket(None);
    daemon.add_port(port_p).unwrap();
    daemon.add_port(our_client_port).unwrap();

    // 2. Another namespace, same port number.
    let other = Netns::new("sipsctp-ebpf-scope");
    let other_ns = netns_of(&format!("/run/netns/{}", other.name())).unwrap();
    assert_ne!(other_ns, own_ns);
    let other_addr: SocketAddr = format!("127.0.0.1:{port_p}").parse().unwrap();
    let (other_listener, (other_client, other_client_port)) = other.enter(|| {
        let socket = tokio_sctp::SctpSocket::new(socket2::Domain::IPV4).unwrap();
        socket.set_reuseaddr(true).unwrap();
        let l = tokio_sctp::SctpListener::bind_from(socket, other_addr).unwrap();
        (l, client_socket(None))
    });

    // 3. Own namespace, unregistered ports.
    let stranger = listener(None);
    let stranger_addr = stranger.local_addr().unwrap();
    let (stranger_client, stranger_client_port) = client_socket(None);

    // 4. Another process: sctp_darn listens, sctp_test connects and sends.
    let darn_port = free_port();
    let test_port = free_port();
    let darn = Reaped(
        Command::new("sctp_darn")
            .args(["-H", "127.0.0.1", "-P", &darn_port.to_string(), "-l"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running sctp_darn (lksctp-tools)"),
    );
    wait_listening(darn_port).await;

    let servers = [
        spawn_echo_server(ours, 1),
        spawn_echo_server(other_listener, 1),
        spawn_echo_server(stranger, 1),
    ];
    let clients = tokio::join!(
        echo_client(our_client, ours_addr(port_p), 5, 2, 100),
        echo_client(other_client, other_addr, 5, 2, 100),
        echo_client(stranger_client, stranger_addr, 5, 2, 100),
    );
    let sctp_test = Command::new("sctp_test")
        .args([
            "-H",
            "127.0.0.1",
            "-P",
            &test_port.to_string(),
            "-h",
            "127.0.0.1",
            "-p",
            &darn_port.to_string(),
            "-s",
            "-c",
            "0",
            "-x",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running sctp_test (lksctp-tools)");
    let test_pid = sctp_test.id();
    let test_status = tokio::task::spawn_blocking(move || {
        let mut child = sctp_test;
        child.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(test_status.success(), "sctp_test failed: {test_status}");
    drop(clients);
    for s in servers {
        tokio::time::timeout(Duration::from_secs(10), s)
            .await
            .expect("echo servers finish")
            .unwrap();
    }
    let darn_pid = darn.0.id();
    drop(darn);
    wait_assocs_gone(
        &[
            port_p,
            our_client_port,
            stranger_addr.port(),
            stranger_client_port,
            darn_port,
            test_port,
        ],
        Duration::from_secs(10),
    )
    .await;
    let other_gone = sipsctp_tests::eventually(Duration::from_secs(10), || {
        other.enter(|| sipsctp_tests::kernel_sctp::assocs().is_empty())
    })
    .await;
    assert!(other_gone, "associations left in the other namespace");

    let seen_by_daemon = drain(&mut daemon);
    let seen_by_all = drain(&mut all);
    let pid = std::process::id();

    // The daemon scope: ours only, all of it.
    for e in &seen_by_daemon {
        assert_eq!(e.netns, own_ns, "another namespace leaked: {e:?}");
        assert!(
            [port_p, our_client_port].contains(&e.local_port),
            "an unregistered port leaked: {e:?}"
        );
        assert_eq!(e.owner, Some(pid), "{e:?}");
    }
    assert_eq!(
        comm_up_ports(&seen_by_daemon, own_ns),
        BTreeSet::from([port_p, our_client_port]),
        "kernel {}: the daemon scope missed our own association",
        vm_kernel()
    );

    // Observe-all: everything, each with its namespace and owner.
    assert_eq!(
        comm_up_ports(&seen_by_all, own_ns),
        BTreeSet::from([
            port_p,
            our_client_port,
            stranger_addr.port(),
            stranger_client_port,
            darn_port,
            test_port,
        ]),
        "kernel {}: observe-all in the own namespace",
        vm_kernel()
    );
    assert_eq!(
        comm_up_ports(&seen_by_all, other_ns),
        BTreeSet::from([port_p, other_client_port]),
        "kernel {}: observe-all in the other namespace",
        vm_kernel()
    );
    let owners = |port: u16, netns: u32| -> BTreeSet<Option<u32>> {
        seen_by_all
            .iter()
            .filter(|e| e.local_port == port && e.netns == netns)
            .map(|e| e.owner)
            .collect()
    };
    assert_eq!(owners(darn_port, own_ns), BTreeSet::from([Some(darn_pid)]));
    assert_eq!(owners(test_port, own_ns), BTreeSet::from([Some(test_pid)]));
    assert_eq!(owners(port_p, other_ns), BTreeSet::from([Some(pid)]));
    eprintln!(
        "kernel {}: daemon scope {} events, observe-all {} events (namespaces {own_ns} and \
         {other_ns}; sctp_darn {darn_pid}, sctp_test {test_pid})",
        vm_kernel(),
        seen_by_daemon.len(),
        seen_by_all.len()
    );
    for p in [&daemon, &all] {
        assert_eq!(p.malformed_records(), 0);
        assert_eq!(p.events_lost().unwrap(), 0);
    }
}

fn ours_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
