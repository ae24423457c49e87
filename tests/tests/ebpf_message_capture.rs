//! The message-capture probes (`sctp_outq_tail`, `sctp_ulpevent_make_rcvmsg`; sipsctp-exporter's
//! `[observe] sip`) on the real kernel: every message an observed association sends or
//! receives is captured once, from its first fragment, with its first bytes exactly as sent,
//! its length, the association id the sockets see and, on receipt, a TSN; associations out of
//! scope are not captured, and without `capture_messages` nothing is.

use std::time::Duration;

use bytes::BytesMut;
use sipsctp_ebpf::{
    CapturedMessage, Direction, KernelProbes, LoadOptions, Record, Scope, current_netns,
};
use sipsctp_tests::{
    kernel_sctp::{client_socket, listener},
    require_sctp, vm_kernel,
};
use tokio_sctp::{SctpStream, SendOptions};

/// A SIP-looking message of `len` bytes whose first line names `tag`.
fn message(tag: &str, len: usize) -> Vec<u8> {
    let mut m = format!(
        "OPTIONS sip:{tag}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/SCTP 127.0.0.1;branch=z9hG4bK-{tag}\r\n\
         Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    let mut i = 0u8;
    while m.len() < len {
        m.push(b'a' + i % 26);
        i = i.wrapping_add(1);
    }
    m.truncate(len);
    m
}

/// Every captured message that arrives within `within`.
async fn captures(probes: &mut KernelProbes, within: Duration) -> Vec<CapturedMessage> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(r) = tokio::time::timeout_at(deadline, probes.next()).await {
        if let Record::Message(m) = r.expect("reading the ring buffers") {
            out.push(m);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_captured_once_per_direction_with_its_first_bytes() {
    require_sctp();
    let server = listener(None);
    let server_addr = server.local_addr().unwrap();
    let (client, client_port) = client_socket(None);
    let scope = Scope::daemon([server_addr.port(), client_port]).unwrap();
    let mut probes = KernelProbes::load_with(LoadOptions::new(scope).capture_messages(true))
        .unwrap_or_else(|e| panic!("loading the probes on kernel {}: {e}", vm_kernel()));
    for s in probes.status() {
        assert!(s.is_up(), "kernel {}: probe {s:?}", vm_kernel());
    }
    assert!(
        probes.probe("message_sent").is_some() && probes.probe("message_received").is_some(),
        "the capture probes are loaded when asked"
    );
    // Scope: a second pair of sockets on ports the probes do not observe.
    let stranger = listener(None);
    let stranger_addr = stranger.local_addr().unwrap();
    let (stranger_client, _) = client_socket(None);

    let accept = tokio::spawn(async move { server.accept().await.expect("accept").0 });
    let stream = SctpStream::connect_from(client, server_addr)
        .await
        .expect("connect");
    let accepted = accept.await.unwrap();
    let accept_stranger = tokio::spawn(async move { stranger.accept().await.expect("accept").0 });
    let stranger_stream = SctpStream::connect_from(stranger_client, stranger_addr)
        .await
        .expect("connect");
    let stranger_accepted = accept_stranger.await.unwrap();

    // A small message, one longer than the prefix, and one over lo's MTU (65536), which the
    // kernel fragments: each must be captured once, from its first fragment.
    let sizes = [300usize, 3000, 100_000];
    let mut buf = BytesMut::with_capacity(128 * 1024);
    for (i, &len) in sizes.iter().enumerate() {
        let m = message(&format!("m{i}"), len);
        stream
            .sendmsg(&m, None, &SendOptions::default())
            .await
            .expect("send");
        buf.clear();
        let mut got = 0;
        while got < len {
            let (n, _, _) = accepted.recvmsg_eor_buf(&mut buf).await.expect("recv");
            got += n;
        }
        let s = message("stranger", 300);
        stranger_stream
            .sendmsg(&s, None, &SendOptions::default())
            .await
            .expect("send");
        buf.clear();
        stranger_accepted
            .recvmsg_eor_buf(&mut buf)
            .await
            .expect("recv");
    }
    let client_assoc = stream.status().expect("SCTP_STATUS").assoc_id as u32;
    let server_assoc = accepted.status().expect("SCTP_STATUS").assoc_id as u32;
    let got = captures(&mut probes, Duration::from_secs(2)).await;
    let netns = current_netns().unwrap();
    for m in &got {
        println!(
            "kernel {}: {:?} assoc {} port {} tsn {:?} len {} captured {} {:?}",
            vm_kernel(),
            m.direction,
            m.assoc_id,
            m.local_port,
            m.tsn,
            m.len,
            m.prefix.len(),
            String::from_utf8_lossy(&m.prefix[..m.prefix.len().min(40)])
        );
        assert_eq!(m.netns, netns);
        assert!(
            !m.prefix.windows(8).any(|w| w == b"stranger"),
            "an association out of scope was captured: {m:?}"
        );
    }
    assert_eq!(
        got.len(),
        2 * sizes.len(),
        "one capture per message and direction, no fragment but the first"
    );
    for (i, &len) in sizes.iter().enumerate() {
        let m = message(&format!("m{i}"), len);
        let sent: Vec<_> = got
            .iter()
            .filter(|c| c.direction == Direction::Sent && m.starts_with(&c.prefix))
            .filter(|c| c.prefix.starts_with(&m[..40]))
            .collect();
        let received: Vec<_> = got
            .iter()
            .filter(|c| c.direction == Direction::Received && m.starts_with(&c.prefix))
            .filter(|c| c.prefix.starts_with(&m[..40]))
            .collect();
        assert_eq!((sent.len(), received.len()), (1, 1), "message {i}");
        let (s, r) = (sent[0], received[0]);
        assert_eq!(s.prefix.len(), len.min(1024), "sent message {i}");
        assert_eq!(r.prefix.len(), len.min(1024), "received message {i}");
        if len < 65_000 {
            assert_eq!((s.len, r.len), (len as u32, len as u32), "message {i}");
        } else {
            // The first fragment only: less than the message, more than the prefix.
            assert!(
                s.len < len as u32 && s.len > 1024,
                "sent fragment {}",
                s.len
            );
            assert_eq!(r.len, s.len, "the received first fragment is the sent one");
        }
        assert_eq!(
            s.assoc_id.get(),
            client_assoc,
            "sent on the client's association"
        );
        assert_eq!(s.local_port, client_port);
        assert_eq!(
            r.assoc_id.get(),
            server_assoc,
            "received on the server's association"
        );
        assert_eq!(r.local_port, server_addr.port());
        assert!(s.tsn.is_none() && r.tsn.is_some(), "a TSN on receipt only");
        assert_eq!(r.peer, Some(server_addr.ip()));
    }
    let tsns: Vec<u32> = got.iter().filter_map(|c| c.tsn).collect();
    assert!(
        tsns.windows(2).all(|w| w[1] > w[0]),
        "received TSNs increase: {tsns:?}"
    );
    assert_eq!(probes.captures_lost().unwrap(), 0);

    // Without capture_messages: the probes are not even loaded, and nothing comes.
    drop(probes);
    let mut plain = KernelProbes::load(Scope::daemon([server_addr.port(), client_port]).unwrap())
        .expect("loading the probes");
    assert!(plain.probe("message_sent").is_none());
    stream
        .sendmsg(&message("late", 200), None, &SendOptions::default())
        .await
        .expect("send");
    buf.clear();
    accepted.recvmsg_eor_buf(&mut buf).await.expect("recv");
    assert!(
        captures(&mut plain, Duration::from_millis(500))
            .await
            .is_empty()
    );
}
