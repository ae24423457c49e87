//! The eBPF programs built by this workspace attach to the running kernel's SCTP code and
//! deliver events through their ring buffer and aya-log lines through the log crate.
//!
//! Traffic: a tokio-sctp (one-to-one, libsctp-based) echo over loopback, independent of this
//! project's socket code. Both ends send data, so both paths take RTT samples and
//! `sctp_transport_update_rto` runs for two distinct transports.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use bytes::BytesMut;
use sipsctp_ebpf::{KernelProbes, kind};
use sipsctp_tests::{CapturingLogger, require_sctp, vm_kernel};
use tokio_sctp::{SctpListener, SctpStream, SendOptions};

async fn echo_traffic(rounds: usize) {
    let listener = SctpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            buf.clear();
            let (n, _, _) = stream.recvmsg_eor_buf(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            stream
                .sendmsg(&buf, None, &SendOptions::default())
                .await
                .unwrap();
        }
    });
    let client = SctpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::with_capacity(4096);
    for i in 0..rounds {
        let msg = format!("OPTIONS sip:probe@127.0.0.1 SIP/2.0 #{i}");
        client
            .sendmsg(msg.as_bytes(), None, &SendOptions::default())
            .await
            .unwrap();
        buf.clear();
        let (n, _, _) = client.recvmsg_eor_buf(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn rto_update_probe_delivers_ring_buffer_events_and_log_lines() {
    require_sctp();
    let logs = CapturingLogger::install();
    let mut probes = KernelProbes::load()
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));

    echo_traffic(30).await;

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
        assert_eq!(e.kind, kind::RTO_UPDATE, "unexpected event {e:?}");
        assert_ne!(e.object, 0, "an RTO event without its transport: {e:?}");
        assert!(e.ts_ns > 0, "no timestamp: {e:?}");
        // Loopback RTT samples are a few jiffies at most; anything large is a wrong argument.
        assert!(
            e.values[0] < 1000,
            "implausible rtt sample {} jiffies",
            e.values[0]
        );
        transports.insert(e.object);
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
