//! The fuzz seeds (`seeds/notification`): one notification of each type the endpoint decodes,
//! laid out as Linux writes them (`include/uapi/linux/sctp.h`, host byte order; the same
//! layouts as the unit tests of `transport/sctp/src/notification.rs`). Each must decode to
//! its type here, and the files must be what this makes:
//! `SIPSCTP_WRITE_SEEDS=1 cargo test --manifest-path transport/sctp/fuzz/Cargo.toml`
//! rewrites them.

use std::{net::SocketAddr, path::Path};

use sipsctp_sctp::{AssocChangeState, AssocId, Notification, PeerAddrState};

fn header(sn_type: u16, flags: u16, len: u32) -> Vec<u8> {
    let mut b = sn_type.to_ne_bytes().to_vec();
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&len.to_ne_bytes());
    b
}

fn assoc_change(state: u16, error: u16) -> Vec<u8> {
    let mut b = header(0x8001, 0, 20);
    for v in [state, error, 10, 12] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&3u32.to_ne_bytes());
    b
}

/// `struct sctp_paddr_change`: a `sockaddr_storage` (128 bytes), state, error, assoc id.
fn paddr_change(addr: SocketAddr, state: i32) -> Vec<u8> {
    let mut b = header(0x8002, 0, 148);
    let mut storage = [0u8; 128];
    let mut raw = Vec::new();
    match addr {
        SocketAddr::V4(a) => {
            raw.extend_from_slice(&2u16.to_ne_bytes()); // AF_INET
            raw.extend_from_slice(&a.port().to_be_bytes());
            raw.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            raw.extend_from_slice(&10u16.to_ne_bytes()); // AF_INET6
            raw.extend_from_slice(&a.port().to_be_bytes());
            raw.extend_from_slice(&a.flowinfo().to_be_bytes());
            raw.extend_from_slice(&a.ip().octets());
            raw.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    storage[..raw.len()].copy_from_slice(&raw);
    b.extend_from_slice(&storage);
    for v in [state, 5, 9] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

/// `struct sctp_send_failed_event` with its undelivered data.
fn send_failed(payload: &[u8], declared_extra: u32) -> Vec<u8> {
    let len = 32 + payload.len() as u32 + declared_extra;
    let mut b = header(0x800d, 1, len);
    b.extend_from_slice(&110u32.to_ne_bytes()); // ssfe_error
    b.extend_from_slice(&4u16.to_ne_bytes()); // snd_sid
    b.extend_from_slice(&1u16.to_ne_bytes()); // snd_flags
    b.extend_from_slice(&39u32.to_be_bytes()); // snd_ppid (wire order)
    b.extend_from_slice(&0xfeedu32.to_ne_bytes()); // snd_context
    b.extend_from_slice(&0u32.to_ne_bytes()); // snd_assoc_id
    b.extend_from_slice(&21u32.to_ne_bytes()); // ssfe_assoc_id
    b.extend_from_slice(payload);
    b
}

fn remote_error() -> Vec<u8> {
    let mut b = header(0x8004, 0, 20);
    b.extend_from_slice(&0x000bu16.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&8u32.to_ne_bytes());
    b.extend_from_slice(&[0, 0xb, 0, 4]);
    b
}

fn with_assoc(sn_type: u16, assoc: u32) -> Vec<u8> {
    let mut b = header(sn_type, 0, 12);
    b.extend_from_slice(&assoc.to_ne_bytes());
    b
}

fn partial_delivery() -> Vec<u8> {
    let mut b = header(0x8006, 0, 24);
    for v in [0u32, 7, 2, 11] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("assoc_change_up", assoc_change(0, 0)),
        ("assoc_change_cant_str", assoc_change(4, 1)),
        (
            "paddr_change_v6",
            paddr_change("[2001:db8::7]:5060".parse().unwrap(), 1),
        ),
        (
            "paddr_change_v4",
            paddr_change("192.0.2.7:5060".parse().unwrap(), 6),
        ),
        (
            "send_failed",
            send_failed(b"INVITE sip:bob@example.com SIP/2.0\r\n", 0),
        ),
        ("send_failed_cut", send_failed(b"abc", 100)),
        ("remote_error", remote_error()),
        ("shutdown", with_assoc(0x8005, 5)),
        ("sender_dry", with_assoc(0x8009, 6)),
        ("partial_delivery", partial_delivery()),
        ("authentication_other", header(0x8008, 0, 8)),
    ]
}

#[test]
fn seeds_decode_and_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/notification");
    let write = std::env::var_os("SIPSCTP_WRITE_SEEDS").is_some_and(|v| v == "1");
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds() {
        let n = Notification::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match name {
            "assoc_change_up" => assert!(matches!(
                n,
                Notification::AssocChange {
                    state: AssocChangeState::CommUp,
                    assoc_id: AssocId(3),
                    ..
                }
            )),
            "paddr_change_v6" => assert_eq!(
                n,
                Notification::PeerAddrChange {
                    addr: "[2001:db8::7]:5060".parse().unwrap(),
                    state: PeerAddrState::Unreachable,
                    error: 5,
                    assoc_id: AssocId(9),
                }
            ),
            "send_failed_cut" => assert!(matches!(
                n,
                Notification::SendFailed {
                    payload_len: 103,
                    ..
                }
            )),
            "authentication_other" => assert_eq!(n, Notification::Other(0x8008)),
            _ => assert_ne!(n.kind(), "other", "{name}"),
        }
        let path = dir.join(format!("{name}.bin"));
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == bytes,
            "{} is stale: rewrite the seeds with SIPSCTP_WRITE_SEEDS=1",
            path.display()
        );
    }
}
