//! `sipsctp-load forward`: the physical limit of an SCTP relay, for the system benchmark.
//! Every message from a client association goes to the upstream as it is, every message from
//! the upstream goes to the client association heard from last: one receive and one send per
//! message, no SIP work (no parsing, no editing), on one one-to-many socket. Meant for one
//! trunk association per side (`sipsctp-load uac --connections 1`).

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use sipsctp_sctp::{AssocId, Incoming, SctpSocket, SendOptions, SendTarget, SocketConfig};

use crate::run::Error;

/// What the forwarder did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    to_upstream: u64,
    to_client: u64,
    dropped: u64,
    notifications: u64,
}

/// Forwards between clients on `listen` and `upstream` until SIGINT/SIGTERM or
/// `duration`; returns the counts.
///
/// # Errors
/// The socket cannot be opened or the runtime started.
pub fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    duration: Option<f64>,
) -> Result<Value, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(async move {
        let config = SocketConfig {
            backlog: Some(1024),
            send_buffer_size: Some(4 << 20),
            recv_buffer_size: Some(4 << 20),
            ..SocketConfig::default()
        };
        let sock = SctpSocket::bind(&[listen], &config)
            .map_err(|source| Error::Sctp { addr: listen, source })?;
        println!("listening sctp {listen}");
        let mut c = Counts::default();
        let mut client: Option<AssocId> = None;
        let opts = SendOptions::default();
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let limit = duration.map_or(Duration::MAX, Duration::from_secs_f64);
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                () = tokio::time::sleep(limit) => {}
            }
        };
        tokio::pin!(stop);
        loop {
            let got = tokio::select! {
                () = &mut stop => break,
                got = sock.recv() => got,
            };
            match got {
                Ok(Incoming::Message { data, assoc_id, peer, .. }) => {
                    let (to, count) = if peer == upstream {
                        match client {
                            Some(a) => (SendTarget::Assoc(a), &mut c.to_client),
                            None => {
                                c.dropped += 1;
                                continue;
                            }
                        }
                    } else {
                        client = Some(assoc_id);
                        (SendTarget::Addr(upstream), &mut c.to_upstream)
                    };
                    match sock.send(&data, to, &opts).await {
                        Ok(_) => *count += 1,
                        Err(_) => c.dropped += 1,
                    }
                }
                Ok(Incoming::Notification { .. }) => c.notifications += 1,
                Ok(Incoming::Dropped { .. }) => c.dropped += 1,
                Err(_) => c.dropped += 1,
            }
        }
        Ok(json!({
            "to_upstream": c.to_upstream,
            "to_client": c.to_client,
            "dropped": c.dropped,
            "notifications": c.notifications,
        }))
    })
}
