//! SCTP echo demo (needs kernel SCTP: run it in the VM with `cargo xtask demo`, or
//! `cargo xtask vm --kernel 6.12 -- <path of this binary>`).
//!
//! A one-to-many server on 127.0.0.1:36060 and 127.0.0.2 (multi-homed with
//! `SCTP_SOCKOPT_BINDX_ADD`) echoes every message back to its association; a one-to-many client
//! on 127.0.0.1:0 sends messages of 100 B, 8 KiB and 60 KiB (the first by address, setting the
//! association up implicitly, others by association id), with and without a lifetime, ordered
//! and unordered, on two streams, with `send` and `try_send`, checks each echo byte for byte,
//! then sends a 100 KiB message that the server (64 KiB limit) must drop and report. It prints
//! every round trip, the notifications each side sees (COMM_UP, the second path's
//! PEER_ADDR_CHANGE, SHUTDOWN, SHUTDOWN_COMP) and the association's status, and tunes and reads
//! back the Kamailio-style options. Then: an IPv6 socket also bound to IPv4 serves an IPv6 and
//! an IPv4 client; a send to a closed port comes back as SEND_FAILED with its data and context;
//! 100 messages of 60 KiB go out through `try_send` + `writable` back-pressure. Exits non-zero
//! on any mismatch.
//!
//! It owns nothing but this demo; it never talks to anything but loopback.

use std::{
    error::Error as StdError,
    net::SocketAddr,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use sipsctp_sctp::{
    AssocChangeState, AssocId, AssocParams, AssocState, DelayedSack, Incoming, InitMsg,
    Notification, PeerAddrFlags, PeerAddrParams, RtoInfo, SctpSocket, SendOptions, SendTarget,
    SocketConfig,
};

type BoxError = Box<dyn StdError + Send + Sync>;

const SERVER: &str = "127.0.0.1:36060";
/// The server's second address (multi-homing on loopback; port 0 = the first one's).
const SERVER_2: &str = "127.0.0.2:0";
/// The server's limit on incoming messages.
const SERVER_MAX: usize = 64 * 1024;
/// A message above that limit.
const TOO_LARGE: usize = 100 * 1024;
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(5);

fn describe(n: &Notification) -> String {
    match n {
        Notification::AssocChange {
            state,
            error,
            outbound_streams,
            inbound_streams,
            assoc_id,
        } => format!(
            "ASSOC_CHANGE {state:?} assoc={assoc_id} out={outbound_streams} in={inbound_streams} error={error}"
        ),
        Notification::PeerAddrChange {
            addr,
            state,
            error,
            assoc_id,
        } => format!("PEER_ADDR_CHANGE {state:?} {addr} assoc={assoc_id} error={error}"),
        Notification::SendFailed {
            status,
            error,
            assoc_id,
            context,
            payload_len,
            ..
        } => format!(
            "SEND_FAILED {status:?} assoc={assoc_id} error={error} context={context} {payload_len} B"
        ),
        Notification::RemoteError {
            error, assoc_id, ..
        } => format!("REMOTE_ERROR cause={error} assoc={assoc_id}"),
        Notification::Shutdown { assoc_id } => format!("SHUTDOWN assoc={assoc_id}"),
        Notification::SenderDry { assoc_id } => format!("SENDER_DRY assoc={assoc_id}"),
        Notification::PartialDelivery {
            indication,
            assoc_id,
            ..
        } => format!("PARTIAL_DELIVERY indication={indication} assoc={assoc_id}"),
        Notification::Other(t) => format!("other notification type {t:#x}"),
    }
}

/// Deterministic content for a message of `len` bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The echo server: echoes messages, answers dropped ones with `dropped:<size>`, and returns
/// the notifications it saw once an association has shut down.
async fn serve(name: &'static str, server: Arc<SctpSocket>) -> Result<Vec<String>, BoxError> {
    let mut seen = Vec::new();
    loop {
        match server.recv().await? {
            Incoming::Message {
                data,
                assoc_id,
                peer,
                stream,
                ppid,
                unordered,
            } => {
                let opts = SendOptions {
                    stream,
                    ppid,
                    unordered,
                    ..Default::default()
                };
                println!(
                    "{name}: {} B from {peer} assoc={assoc_id} stream={stream} ppid={ppid} unordered={unordered}, echoing",
                    data.len()
                );
                server
                    .send(&data, SendTarget::Assoc(assoc_id), &opts)
                    .await?;
            }
            Incoming::Dropped {
                assoc_id,
                peer,
                reason,
            } => {
                println!("{name}: dropped a message from {peer} assoc={assoc_id}: {reason:?}");
                let size = reason.size_so_far();
                let reply = format!("dropped:{size}");
                server
                    .send(
                        reply.as_bytes(),
                        SendTarget::Assoc(assoc_id),
                        &SendOptions::default(),
                    )
                    .await?;
            }
            Incoming::Notification {
                notification: n, ..
            } => {
                let text = describe(&n);
                println!("{name}: notification {text}");
                seen.push(text);
                if let Notification::AssocChange {
                    state: AssocChangeState::ShutdownComp | AssocChangeState::CommLost,
                    ..
                } = n
                {
                    return Ok(seen);
                }
            }
        }
    }
}

/// Waits for the next message on the client, printing notifications on the way.
async fn next_message(
    client: &SctpSocket,
    notes: &mut Vec<String>,
) -> Result<(Vec<u8>, AssocId, SocketAddr, u16, u32), BoxError> {
    loop {
        match tokio::time::timeout(STEP, client.recv()).await?? {
            Incoming::Message {
                data,
                assoc_id,
                peer,
                stream,
                ppid,
                ..
            } => return Ok((data, assoc_id, peer, stream, ppid)),
            Incoming::Notification {
                notification: n, ..
            } => {
                let text = describe(&n);
                println!("client: notification {text}");
                notes.push(text);
            }
            Incoming::Dropped { reason, .. } => {
                return Err(format!("client dropped an echo: {reason:?}").into());
            }
        }
    }
}

struct Case {
    size: usize,
    by_assoc: bool,
    stream: u16,
    unordered: bool,
    ttl_ms: Option<u32>,
    try_send: bool,
}

async fn run() -> Result<(), BoxError> {
    let server_addr: SocketAddr = SERVER.parse()?;
    let server_cfg = SocketConfig {
        max_message_size: SERVER_MAX,
        // Small reads, so that big messages arrive in pieces and are joined.
        read_chunk_size: 16 * 1024,
        partial_delivery_point: Some(32 * 1024),
        send_buffer_size: Some(512 * 1024),
        recv_buffer_size: Some(512 * 1024),
        ..Default::default()
    };
    let server = Arc::new(SctpSocket::bind(
        &[server_addr, SERVER_2.parse()?],
        &server_cfg,
    )?);
    let mut server_2: SocketAddr = SERVER_2.parse()?;
    server_2.set_port(server_addr.port());
    println!(
        "server: listening on {:?}, SO_RCVBUF {} SO_SNDBUF {} pd point {} nodelay {}",
        server.local_addrs()?,
        server.recv_buffer_size()?,
        server.send_buffer_size()?,
        server.partial_delivery_point()?,
        server.nodelay()?,
    );
    let server_task = tokio::spawn(serve("server", Arc::clone(&server)));

    let client_cfg = SocketConfig {
        max_message_size: 256 * 1024,
        backlog: None,
        send_buffer_size: Some(512 * 1024),
        recv_buffer_size: Some(512 * 1024),
        ..Default::default()
    };
    let client = SctpSocket::bind(&["127.0.0.1:0".parse()?], &client_cfg)?;
    println!("client: bound to {}", client.local_addr()?);

    // Kamailio-style tuning on the client, read back before any association exists.
    client.set_init_msg(&InitMsg {
        num_ostreams: 5,
        max_instreams: 5,
        max_attempts: 4,
        max_init_timeo_ms: 2000,
    })?;
    client.set_rto_info(
        AssocId::FUTURE,
        &RtoInfo {
            initial_ms: 1000,
            max_ms: 8000,
            min_ms: 400,
        },
    )?;
    client.set_assoc_params(
        AssocId::FUTURE,
        &AssocParams {
            max_retrans: 6,
            cookie_life_ms: 30_000,
            ..Default::default()
        },
    )?;
    client.set_peer_addr_params(
        AssocId::FUTURE,
        &PeerAddrParams {
            hb_interval_ms: 5000,
            path_max_rxt: 4,
            flags: PeerAddrFlags::HB_ENABLE,
            ..Default::default()
        },
    )?;
    client.set_delayed_sack(
        AssocId::FUTURE,
        &DelayedSack {
            delay_ms: 100,
            freq: 2,
        },
    )?;
    client.set_max_burst(AssocId::FUTURE, 8)?;
    client.set_autoclose(120)?;
    let init = client.init_msg()?;
    let rto = client.rto_info(AssocId::FUTURE)?;
    let assoc = client.assoc_params(AssocId::FUTURE)?;
    let paddr = client.peer_addr_params(AssocId::FUTURE, None)?;
    let sack = client.delayed_sack(AssocId::FUTURE)?;
    let burst = client.max_burst(AssocId::FUTURE)?;
    let autoclose = client.autoclose()?;
    println!("client: INITMSG {init:?}");
    println!("client: RTOINFO {rto:?}");
    println!("client: ASSOCINFO {assoc:?}");
    println!("client: PEER_ADDR_PARAMS {paddr:?}");
    println!("client: DELAYED_SACK {sack:?} MAX_BURST {burst} AUTOCLOSE {autoclose}");
    let mut failures = Vec::new();
    let server_local = server.local_addrs()?;
    if server_local != [server_addr, server_2] {
        failures.push(format!("server local addrs {server_local:?}"));
    }
    if (init.num_ostreams, init.max_instreams) != (5, 5) {
        failures.push(format!("INITMSG read back {init:?}"));
    }
    if (rto.initial_ms, rto.max_ms, rto.min_ms) != (1000, 8000, 400) {
        failures.push(format!("RTOINFO read back {rto:?}"));
    }
    if (assoc.max_retrans, assoc.cookie_life_ms) != (6, 30_000) {
        failures.push(format!("ASSOCINFO read back {assoc:?}"));
    }
    if (paddr.hb_interval_ms, paddr.path_max_rxt) != (5000, 4) {
        failures.push(format!("PEER_ADDR_PARAMS read back {paddr:?}"));
    }
    if (sack.delay_ms, sack.freq, burst, autoclose) != (100, 2, 8, 120) {
        failures.push(format!(
            "DELAYED_SACK/MAX_BURST/AUTOCLOSE read back {sack:?} {burst} {autoclose}"
        ));
    }

    let cases = [
        Case {
            size: 100,
            by_assoc: false,
            stream: 0,
            unordered: true,
            ttl_ms: None,
            try_send: false,
        },
        Case {
            size: 8 * 1024,
            by_assoc: true,
            stream: 0,
            unordered: true,
            ttl_ms: None,
            try_send: false,
        },
        Case {
            size: 60 * 1024,
            by_assoc: true,
            stream: 0,
            unordered: true,
            ttl_ms: None,
            try_send: false,
        },
        Case {
            size: 100,
            by_assoc: true,
            stream: 1,
            unordered: false,
            ttl_ms: Some(5000),
            try_send: false,
        },
        Case {
            size: 60 * 1024,
            by_assoc: false,
            stream: 1,
            unordered: false,
            ttl_ms: Some(5000),
            try_send: true,
        },
    ];
    let mut notes = Vec::new();
    let mut assoc_id: Option<AssocId> = None;
    for (i, case) in cases.iter().enumerate() {
        let seq = u32::try_from(i)?;
        let data = pattern(case.size, seq + 1);
        let to = match (case.by_assoc, assoc_id) {
            (true, Some(id)) => SendTarget::Assoc(id),
            _ => SendTarget::Addr(server_addr),
        };
        let opts = SendOptions {
            stream: case.stream,
            unordered: case.unordered,
            ppid: 1000 + seq,
            ttl_ms: case.ttl_ms,
            context: seq,
        };
        let t0 = Instant::now();
        let sent = if case.try_send {
            match client.try_send(&data, to, &opts) {
                Ok(n) => n,
                Err(e) if e.is_would_block() => {
                    println!("client: try_send would block, waiting for writability");
                    client.writable().await?;
                    client.send(&data, to, &opts).await?
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            tokio::time::timeout(STEP, client.send(&data, to, &opts)).await??
        };
        let (echo, got_assoc, peer, stream, ppid) = next_message(&client, &mut notes).await?;
        let micros = t0.elapsed().as_micros();
        let ok = sent == data.len()
            && echo == data
            && peer == server_addr
            && stream == case.stream
            && ppid == opts.ppid
            && assoc_id.is_none_or(|id| id == got_assoc);
        println!(
            "client: round trip {:>6} B via {:<22} assoc={got_assoc} stream={stream} ppid={ppid} ttl={:?} {}: {micros} us {}",
            case.size,
            match to {
                SendTarget::Assoc(_) => "association id".to_string(),
                SendTarget::Addr(a) => format!("address {a}"),
            },
            case.ttl_ms,
            if case.try_send { "try_send" } else { "send" },
            if ok { "OK" } else { "MISMATCH" },
        );
        if !ok {
            failures.push(format!(
                "round trip {i}: sent {sent} of {} B, echo {} B (equal: {}), peer {peer}, stream {stream}, ppid {ppid}, assoc {got_assoc}",
                data.len(),
                echo.len(),
                echo == data
            ));
        }
        assoc_id.get_or_insert(got_assoc);
    }
    let Some(assoc_id) = assoc_id else {
        return Err("no association".into());
    };

    // A message above the server's limit: dropped there, reported back.
    let big = pattern(TOO_LARGE, 99);
    let t0 = Instant::now();
    tokio::time::timeout(
        STEP,
        client.send(&big, SendTarget::Assoc(assoc_id), &SendOptions::default()),
    )
    .await??;
    let (reply, ..) = next_message(&client, &mut notes).await?;
    let expect = format!("dropped:{TOO_LARGE}");
    let ok = reply == expect.as_bytes();
    println!(
        "client: {TOO_LARGE} B message -> server replied {:?} in {} us {}",
        String::from_utf8_lossy(&reply),
        t0.elapsed().as_micros(),
        if ok { "OK" } else { "MISMATCH" }
    );
    if !ok {
        failures.push(format!(
            "oversize reply {:?}",
            String::from_utf8_lossy(&reply)
        ));
    }

    // What the kernel says about the association.
    let st = client.status(assoc_id)?;
    let p = &st.primary;
    println!(
        "client: SCTP_STATUS assoc={} state={:?} rwnd={} unacked={} pending={} in={} out={} frag_point={}",
        st.assoc_id,
        st.state,
        st.rwnd,
        st.unacked,
        st.pending,
        st.inbound_streams,
        st.outbound_streams,
        st.fragmentation_point
    );
    println!(
        "client: primary path {:?} state={:?} srtt={} ms rto={} ms cwnd={} B mtu={}",
        p.addr, p.state, p.srtt_ms, p.rto_ms, p.cwnd, p.mtu
    );
    let info = client.peer_addr_info(assoc_id, server_addr)?;
    println!("client: SCTP_GET_PEER_ADDR_INFO {info:?}");
    println!(
        "client: local addrs {:?}, peer addrs {:?}",
        client.local_addrs()?,
        client.peer_addrs(assoc_id)?
    );
    let assoc_rto = client.rto_info(assoc_id)?;
    let assoc_paddr = client.peer_addr_params(assoc_id, Some(server_addr))?;
    println!("client: association RTOINFO {assoc_rto:?} PEER_ADDR_PARAMS {assoc_paddr:?}");
    if st.state != AssocState::Established {
        failures.push(format!("state {:?}", st.state));
    }
    if (st.outbound_streams, st.inbound_streams) != (5, 5) {
        failures.push(format!(
            "streams out={} in={} (INITMSG asked for 5/5)",
            st.outbound_streams, st.inbound_streams
        ));
    }
    if p.addr != Some(server_addr) || info.addr != Some(server_addr) {
        failures.push(format!("primary path {:?} / {:?}", p.addr, info.addr));
    }
    if assoc_rto.max_ms != 8000 || assoc_paddr.hb_interval_ms != 5000 {
        failures.push(format!(
            "association did not inherit {assoc_rto:?} {assoc_paddr:?}"
        ));
    }
    let peers = client.peer_addrs(assoc_id)?;
    if !(peers.contains(&server_addr) && peers.contains(&server_2)) {
        failures.push(format!("client peer addrs {peers:?}"));
    }
    // The second path is confirmed by a heartbeat: wait for its PEER_ADDR_CHANGE.
    let want = format!("PEER_ADDR_CHANGE Confirmed {server_2}");
    let t0 = Instant::now();
    while !notes.iter().any(|n| n.starts_with(&want)) && t0.elapsed() < STEP {
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
            match item? {
                Incoming::Notification {
                    notification: n, ..
                } => {
                    let text = describe(&n);
                    println!("client: notification {text}");
                    notes.push(text);
                }
                other => failures.push(format!("unexpected {other:?}")),
            }
        }
    }
    let second = client.peer_addr_info(assoc_id, server_2)?;
    println!(
        "client: second path {server_2}: {:?} after {} ms",
        second.state,
        t0.elapsed().as_millis()
    );
    if !notes.iter().any(|n| n.starts_with(&want)) {
        failures.push(format!("client saw no {want}"));
    }
    if !notes.iter().any(|n| n.starts_with("ASSOC_CHANGE CommUp")) {
        failures.push("client saw no COMM_UP".into());
    }

    // Closing the client shuts the association down gracefully; the server sees it.
    drop(client);
    let server_notes = tokio::time::timeout(STEP, server_task).await???;
    for want in [
        "ASSOC_CHANGE CommUp",
        "SHUTDOWN",
        "ASSOC_CHANGE ShutdownComp",
    ] {
        if !server_notes.iter().any(|n| n.starts_with(want)) {
            failures.push(format!("server saw no {want}"));
        }
    }
    v6_check(&mut failures).await?;
    send_failed_check(&mut failures).await?;
    burst_check(&mut failures).await?;
    println!("client: notifications seen: {notes:?}");
    println!("server: notifications seen: {server_notes:?}");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

/// A message to a port nobody listens on: the peer's kernel aborts the setup, and the data
/// comes back in a SEND_FAILED notification with its context.
async fn send_failed_check(failures: &mut Vec<String>) -> Result<(), BoxError> {
    let nobody: SocketAddr = "127.0.0.1:36099".parse()?;
    let client_cfg = SocketConfig {
        backlog: None,
        ..Default::default()
    };
    let client = SctpSocket::bind(&["127.0.0.1:0".parse()?], &client_cfg)?;
    let data = pattern(500, 5);
    let opts = SendOptions {
        context: 0xC0FFEE,
        ppid: 77,
        ..Default::default()
    };
    client.send(&data, SendTarget::Addr(nobody), &opts).await?;
    let (mut cant_start, mut returned) = (false, false);
    let t0 = Instant::now();
    while !(cant_start && returned) && t0.elapsed() < STEP {
        let Ok(item) = tokio::time::timeout(STEP, client.recv()).await else {
            break;
        };
        let Incoming::Notification {
            notification: n, ..
        } = item?
        else {
            continue;
        };
        println!("failclient: notification {}", describe(&n));
        match n {
            Notification::AssocChange {
                state: AssocChangeState::CantStrAssoc,
                ..
            } => cant_start = true,
            Notification::SendFailed {
                context,
                ppid,
                payload,
                payload_len,
                ..
            } => {
                returned = context == 0xC0FFEE
                    && ppid == 77
                    && payload == data
                    && payload_len == data.len();
                println!(
                    "failclient: SEND_FAILED returned {} B, context {context:#x}, ppid {ppid}: {}",
                    payload.len(),
                    if returned { "OK" } else { "MISMATCH" }
                );
            }
            _ => {}
        }
    }
    if !(cant_start && returned) {
        failures.push(format!(
            "send to a closed port: CANT_STR_ASSOC {cant_start}, data returned {returned}"
        ));
    }
    Ok(())
}

/// Back-pressure: 100 messages of 60 KiB pushed with `try_send` as fast as the kernel takes
/// them, waiting with `writable` on `WouldBlock`, into a server that only counts.
async fn burst_check(failures: &mut Vec<String>) -> Result<(), BoxError> {
    const COUNT: usize = 100;
    const SIZE: usize = 60 * 1024;
    let sink_addr: SocketAddr = "127.0.0.1:36063".parse()?;
    // A receive window of several messages: with the default one (about 100 KiB) only one
    // 60 KiB message is in flight at a time, and on loopback (one message per packet) each
    // then waits for the peer's delayed SACK (200 ms).
    let sink_cfg = SocketConfig {
        recv_buffer_size: Some(1 << 20),
        ..Default::default()
    };
    let sink = SctpSocket::bind(&[sink_addr], &sink_cfg)?;
    let sink_task = tokio::spawn(async move {
        let mut got = 0usize;
        let mut bytes = 0usize;
        while got < COUNT {
            if let Incoming::Message { data, .. } = sink.recv().await? {
                got += 1;
                bytes += data.len();
            }
        }
        Ok::<_, BoxError>(bytes)
    });
    let client_cfg = SocketConfig {
        backlog: None,
        ..Default::default()
    };
    let client = SctpSocket::bind(&["127.0.0.1:0".parse()?], &client_cfg)?;
    let data = pattern(SIZE, 9);
    let t0 = Instant::now();
    let mut would_block = 0usize;
    for _ in 0..COUNT {
        loop {
            match client.try_send(&data, SendTarget::Addr(sink_addr), &SendOptions::default()) {
                Ok(_) => break,
                Err(e) if e.is_would_block() => {
                    would_block += 1;
                    tokio::time::timeout(STEP, client.writable()).await??;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let bytes = tokio::time::timeout(STEP, sink_task).await???;
    let ms = t0.elapsed().as_millis();
    let ok = bytes == COUNT * SIZE;
    println!(
        "burst: {COUNT} x {SIZE} B with try_send in {ms} ms, {would_block} WouldBlock waits, sink got {bytes} B {}",
        if ok { "OK" } else { "MISMATCH" }
    );
    if !ok {
        failures.push(format!("burst: sink got {bytes} B"));
    }
    Ok(())
}

/// An IPv6 socket that is also bound to an IPv4 address: an IPv6 client and an IPv4 client
/// each get their echo, and the server sees the IPv4 peer as IPv4 (not v4-mapped). Skipped
/// when the machine has no IPv6 loopback.
async fn v6_check(failures: &mut Vec<String>) -> Result<(), BoxError> {
    let addr6: SocketAddr = "[::1]:36062".parse()?;
    let addr4: SocketAddr = "127.0.0.1:36062".parse()?;
    let server = match SctpSocket::bind(&[addr6, addr4], &SocketConfig::default()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            println!("v6: skipped, no IPv6 loopback here: {e}");
            return Ok(());
        }
    };
    println!("v6server: bound to {:?}", server.local_addrs()?);
    let task = tokio::spawn(serve("v6server", Arc::clone(&server)));
    // Kept open until both are done: the server stops at the first shutdown.
    let mut clients: Vec<SctpSocket> = Vec::new();
    for (bind, to) in [("[::1]:0", addr6), ("127.0.0.1:0", addr4)] {
        let client_cfg = SocketConfig {
            backlog: None,
            ..Default::default()
        };
        let client = SctpSocket::bind(&[bind.parse()?], &client_cfg)?;
        let data = pattern(1000, 42);
        let t0 = Instant::now();
        tokio::time::timeout(
            STEP,
            client.send(&data, SendTarget::Addr(to), &SendOptions::default()),
        )
        .await??;
        let mut notes = Vec::new();
        let (echo, assoc, peer, ..) = next_message(&client, &mut notes).await?;
        let ok = echo == data && peer == to;
        println!(
            "v6client {}: round trip 1000 B to {to} assoc={assoc} peer={peer}: {} us {}",
            client.local_addr()?,
            t0.elapsed().as_micros(),
            if ok { "OK" } else { "MISMATCH" }
        );
        if !ok {
            failures.push(format!(
                "v6 check to {to}: peer {peer}, equal {}",
                echo == data
            ));
        }
        clients.push(client);
    }
    drop(clients);
    tokio::time::timeout(STEP, task).await???;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("echo: PASS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = format!("echo: FAIL: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
