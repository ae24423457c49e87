//! This project's one-to-many SCTP socket echoes messages of SIP-relevant sizes to an
//! independent one-to-one client (the `tokio-sctp` crate, which goes through libsctp), byte-exact,
//! over the VM's kernel SCTP. The server replies on the association the message came in on.

use std::{net::SocketAddr, time::Duration};

use bytes::BytesMut;
use sipsctp_sctp::{Incoming, SctpSocket, SendOptions, SendTarget, SocketConfig};
use sipsctp_tests::{require_sctp, vm_kernel};
use tokio_sctp::SctpStream;

/// Deterministic, position-dependent content, so a reordered or shifted byte shows up.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

async fn serve(server: SctpSocket, messages: usize) -> Vec<(usize, u32)> {
    let mut seen = Vec::new();
    while seen.len() < messages {
        match server.recv().await.expect("server recv") {
            Incoming::Message { data, assoc_id, .. } => {
                server
                    .send(&data, SendTarget::Assoc(assoc_id), &SendOptions::default())
                    .await
                    .expect("server echo");
                seen.push((data.len(), assoc_id.get()));
            }
            Incoming::Notification { .. } => {}
            Incoming::Dropped { reason, .. } => panic!("server dropped a message: {reason:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn one_to_many_server_echoes_100b_8k_60k_to_tokio_sctp_client() {
    require_sctp();
    let config = SocketConfig::default();
    let server = SctpSocket::bind(&["127.0.0.1:0".parse::<SocketAddr>().unwrap()], &config)
        .expect("bind the one-to-many server");
    let addr = server.local_addr().unwrap();
    let sizes = [100usize, 8 * 1024, 60 * 1024];
    let server_task = tokio::spawn(serve(server, sizes.len()));

    let client = SctpStream::connect(addr).await.expect("tokio-sctp connect");
    let mut buf = BytesMut::with_capacity(128 * 1024);
    for (i, &size) in sizes.iter().enumerate() {
        let msg = payload(size, i as u8);
        let sent = client
            .sendmsg(&msg, None, &tokio_sctp::SendOptions::default())
            .await
            .expect("client send");
        assert_eq!(sent, size);
        buf.clear();
        let (n, _, flags) =
            tokio::time::timeout(Duration::from_secs(10), client.recvmsg_eor_buf(&mut buf))
                .await
                .expect("echo within 10 s")
                .expect("client recv");
        assert!(
            flags.contains(tokio_sctp::RecvFlags::EOR),
            "echo of {size} B not whole"
        );
        assert_eq!(n, size, "echo length");
        assert!(buf[..] == msg[..], "echo of {size} B differs");
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), sizes);
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1),
        "one association: {seen:?}"
    );
    eprintln!(
        "kernel {}: echoed {sizes:?} byte-exact on association {}",
        vm_kernel(),
        seen[0].1
    );
}
