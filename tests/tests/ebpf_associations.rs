//! The probes' per-association view agrees with what user space sees through the socket API:
//!
//! - the RTO of the last RTO-update event of each path equals the RTO
//!   `SCTP_GET_PEER_ADDR_INFO` reports for that path (`spinfo_rto`, which the kernel converts
//!   with `jiffies_to_msecs`: this also checks the loader's HZ, the event carries jiffies), and
//!   its srtt equals `spinfo_srtt` (copied as is, in jiffies). `/proc/net/sctp/remaddr` would
//!   not check HZ: it prints the RTO in raw jiffies.
//! - COMM_UP and SHUTDOWN_COMP events (and association new/free) carry the association ids
//!   `SCTP_STATUS` gives each socket (`sstat_assoc_id`), which `/proc/net/sctp/assocs` lists
//!   too.
//!
//! Traffic: one tokio-sctp echo association over loopback. For the RTO comparison netem
//! delays every packet on `lo` by 20 ms, and `SCTP_RTOINFO` lowers the minimum RTO to 10 ms,
//! so that the RTO is computed from real samples instead of sitting at the 1 s minimum.

use std::{net::SocketAddrV4, time::Duration};

use sipsctp_ebpf::{AssocChangeState, EventKind, KernelProbes, Scope, SctpEvent};
use sipsctp_tests::{
    kernel_sctp::{
        NetemOnLo, Rto, assocs, client_socket, listener, peer_addr_info, wait_assocs_gone,
    },
    require_sctp, vm_kernel,
};
use tokio_sctp::{SctpListener, SctpStream, SendOptions};

const RTO: Rto = Rto {
    initial_ms: 1000,
    min_ms: 10,
    max_ms: 2000,
};

fn drain(probes: &mut KernelProbes) -> Vec<SctpEvent> {
    std::iter::from_fn(|| probes.try_next_event()).collect()
}

/// Loads the probes (daemon scope), then opens a listener and a bound client socket and adds
/// both ports: every event of the association is seen, with its owner.
fn setup() -> (KernelProbes, SctpListener, tokio_sctp::SctpSocket, u16, u16) {
    let mut probes = KernelProbes::load(Scope::daemon([]).unwrap())
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    for s in probes.status() {
        assert!(s.is_up(), "kernel {}: probe {s:?}", vm_kernel());
    }
    let listener = listener(Some(RTO));
    let server_port = listener.local_addr().unwrap().port();
    let (client, client_port) = client_socket(Some(RTO));
    probes.add_port(server_port).unwrap();
    probes.add_port(client_port).unwrap();
    (probes, listener, client, server_port, client_port)
}

async fn exchange(a: &SctpStream, b: &SctpStream, rounds: usize) {
    let mut buf = bytes::BytesMut::with_capacity(4096);
    for i in 0..rounds {
        for (from, to) in [(a, b), (b, a)] {
            let msg = format!("OPTIONS sip:probe@127.0.0.1 SIP/2.0 #{i}");
            from.sendmsg(msg.as_bytes(), None, &SendOptions::default())
                .await
                .unwrap();
            buf.clear();
            let (n, _, _) = to.recvmsg_eor_buf(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], msg.as_bytes());
        }
    }
}

#[tokio::test]
async fn last_rto_update_of_each_path_equals_the_rto_the_socket_api_reports() {
    require_sctp();
    let (mut probes, listener, client, server_port, client_port) = setup();
    let netem = NetemOnLo::add(&["delay", "20ms"]);
    let server = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(SctpStream::connect_from(client, server), async {
        listener.accept().await.unwrap().0
    });
    let client = client.unwrap();
    exchange(&client, &accepted, 25).await;
    // Let the last delayed SACKs (200 ms) arrive: no RTT sample may follow the reads below.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let client_info = peer_addr_info(&client, SocketAddrV4::new(localhost, server_port));
    let server_info = peer_addr_info(&accepted, SocketAddrV4::new(localhost, client_port));
    let events = drain(&mut probes);
    drop(netem);

    let hz = probes.hz();
    for (side, port, info) in [
        ("client", client_port, client_info),
        ("server", server_port, server_info),
    ] {
        let updates: Vec<&SctpEvent> = events
            .iter()
            .filter(|e| e.local_port == port && matches!(e.kind, EventKind::RtoUpdate { .. }))
            .collect();
        let last = updates
            .last()
            .unwrap_or_else(|| panic!("kernel {}: no RTO update for the {side} path", vm_kernel()));
        assert_eq!(
            i64::from(last.assoc_id.get()),
            i64::from(info.assoc_id),
            "{side}: {last:?}"
        );
        let EventKind::RtoUpdate {
            rto, srtt, rttvar, ..
        } = last.kind
        else {
            unreachable!()
        };
        eprintln!(
            "kernel {}, HZ {hz}: {side}: {} RTO updates, last: rto {} jiffies = {} ms, srtt {} \
             rttvar {} jiffies; SCTP_GET_PEER_ADDR_INFO: rto {} ms, srtt {} jiffies",
            vm_kernel(),
            updates.len(),
            rto.count,
            rto.to_kernel_msecs(),
            srtt.count,
            rttvar.count,
            info.rto_ms,
            info.srtt,
        );
        assert_eq!(
            rto.to_kernel_msecs(),
            u64::from(info.rto_ms),
            "kernel {}: {side}: last RTO update {last:?} vs {info:?}",
            vm_kernel()
        );
        assert_eq!(srtt.count, u64::from(info.srtt), "{side}: srtt");
        // The comparison is only meaningful if the RTO came from samples (40 ms RTT), not
        // from a bound.
        assert!(
            rto.to_kernel_msecs() > u64::from(RTO.min_ms)
                && rto.to_kernel_msecs() < u64::from(RTO.initial_ms),
            "{side}: rto {} ms sits at a bound",
            rto.to_kernel_msecs()
        );
    }
    assert_eq!(probes.malformed_records(), 0);
    assert_eq!(probes.events_lost().unwrap(), 0);
}

#[tokio::test]
async fn comm_up_and_shutdown_comp_events_carry_the_assoc_ids_user_space_sees() {
    require_sctp();
    let (mut probes, listener, client, server_port, client_port) = setup();
    let server = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(SctpStream::connect_from(client, server), async {
        listener.accept().await.unwrap().0
    });
    let client = client.unwrap();
    exchange(&client, &accepted, 3).await;
    // sctp_assoc_t is signed in the kernel's UAPI; tokio-sctp spells it u32.
    let client_id = i32::try_from(client.status().unwrap().assoc_id).unwrap();
    let server_id = i32::try_from(accepted.status().unwrap().assoc_id).unwrap();
    // The second, independent view: the kernel's association table.
    let table = assocs();
    for (port, id) in [(client_port, client_id), (server_port, server_id)] {
        assert!(
            table
                .iter()
                .any(|a| a.local_port == port && a.assoc_id == id),
            "/proc/net/sctp/assocs lacks id {id} on port {port}: {table:?}"
        );
    }
    assert_ne!(client_id, 0);
    assert_ne!(server_id, 0);

    // Graceful shutdown from the client; the server answers when it reads the EOF.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = bytes::BytesMut::with_capacity(64);
    let (n, _, _) = accepted.recvmsg_eor_buf(&mut buf).await.unwrap();
    assert_eq!(n, 0, "expected the client's EOF");
    drop(accepted);
    drop(client);
    wait_assocs_gone(&[server_port, client_port], Duration::from_secs(10)).await;
    let events = drain(&mut probes);
    let pid = std::process::id();

    for (side, port, id) in [
        ("client", client_port, client_id),
        ("server", server_port, server_id),
    ] {
        let id = i64::from(id);
        let mine: Vec<&SctpEvent> = events.iter().filter(|e| e.local_port == port).collect();
        let of = |want: fn(&EventKind) -> bool| -> Vec<i64> {
            mine.iter()
                .filter(|e| want(&e.kind))
                .map(|e| i64::from(e.assoc_id.get()))
                .collect()
        };
        let comm_up = of(|k| {
            matches!(
                k,
                EventKind::AssocChange {
                    state: AssocChangeState::CommUp,
                    ..
                }
            )
        });
        let shutdown_comp = of(|k| {
            matches!(
                k,
                EventKind::AssocChange {
                    state: AssocChangeState::ShutdownComp,
                    ..
                }
            )
        });
        let new = of(|k| matches!(k, EventKind::AssocNew { .. }));
        let free = of(|k| matches!(k, EventKind::AssocFree { .. }));
        eprintln!(
            "kernel {}: {side} assoc id {id}: COMM_UP {comm_up:?}, SHUTDOWN_COMP \
             {shutdown_comp:?}, new {new:?}, free {free:?}",
            vm_kernel()
        );
        assert_eq!(comm_up, vec![id], "{side} COMM_UP; events: {mine:#?}");
        assert_eq!(
            shutdown_comp,
            vec![id],
            "{side} SHUTDOWN_COMP; events: {mine:#?}"
        );
        assert_eq!(new, vec![id], "{side} association new");
        assert_eq!(free, vec![id], "{side} association free");
        for e in &mine {
            assert_eq!(e.owner, Some(pid), "owner of {e:?}");
            assert_eq!(
                e.peer,
                Some(std::net::IpAddr::from([127, 0, 0, 1])),
                "path address of {e:?}"
            );
            let peer_port = if port == client_port {
                server_port
            } else {
                client_port
            };
            assert_eq!(e.peer_port, peer_port, "{e:?}");
        }
    }
    assert_eq!(probes.malformed_records(), 0);
    assert_eq!(probes.events_lost().unwrap(), 0);
}
