//! A minimal SCTP echo server on [`SctpSocket`]: every message goes back on the association it
//! came on, with its stream, PPID and ordering; notifications and dropped messages are printed.
//!
//!     cargo run -p sipsctp-sctp --example echo -- 127.0.0.1:36060 127.0.0.2
//!
//! Several addresses make one multi-homed socket (an extra address without a port takes the
//! first one's). It needs kernel SCTP (`modprobe sctp`; on this project's machines run it in
//! the VM: `cargo xtask vm -- target/debug/examples/echo`). The checks that used to live here
//! are integration tests now: `tests/tests/sctp_api.rs`.

use std::{net::SocketAddr, process::ExitCode};

use sipsctp_sctp::{Incoming, SctpSocket, SendOptions, SendTarget, SocketConfig};

/// Parses `IP:PORT` or a bare IP (port 0: the first address's port).
fn parse(arg: &str) -> Option<SocketAddr> {
    arg.parse()
        .ok()
        .or_else(|| arg.parse().ok().map(|ip| SocketAddr::new(ip, 0)))
}

/// Serves forever: an error on one message (a malformed notification, an association gone
/// before its echo) is printed and the socket goes on.
async fn serve(socket: SctpSocket) {
    loop {
        let item = match socket.recv().await {
            Ok(item) => item,
            Err(e) => {
                eprintln!("recv: {e}");
                continue;
            }
        };
        match item {
            Incoming::Message {
                data,
                assoc_id,
                peer,
                stream,
                ppid,
                unordered,
            } => {
                println!(
                    "{} B from {peer} (association {assoc_id}, stream {stream})",
                    data.len()
                );
                let opts = SendOptions {
                    stream,
                    ppid,
                    unordered,
                    ..SendOptions::default()
                };
                if let Err(e) = socket.send(&data, SendTarget::Assoc(assoc_id), &opts).await {
                    eprintln!("echo to {peer}: {e}");
                }
            }
            Incoming::Notification { notification, .. } => println!("{notification:?}"),
            Incoming::Dropped { peer, reason, .. } => println!("dropped from {peer}: {reason:?}"),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addrs: Option<Vec<SocketAddr>> = if args.is_empty() {
        Some(vec![SocketAddr::from(([127, 0, 0, 1], 36060))])
    } else {
        args.iter().map(|a| parse(a)).collect()
    };
    let Some(addrs) = addrs else {
        eprintln!("usage: echo [IP[:PORT]]...  (default 127.0.0.1:36060)");
        return ExitCode::from(2);
    };
    let socket = match SctpSocket::bind(&addrs, &SocketConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: bind {addrs:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("echo: listening on {:?}", socket.local_addrs());
    serve(socket).await;
    ExitCode::SUCCESS
}
