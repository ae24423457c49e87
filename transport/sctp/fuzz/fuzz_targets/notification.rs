//! Fuzzes `Notification::decode`, which the endpoint runs on every message the kernel hands
//! up with `MSG_NOTIFICATION` (the bytes of `struct sctp_assoc_change`, `sctp_paddr_change`,
//! `sctp_send_failed_event`, ...). Any panic is a bug; so is a notification of another type
//! than its header says, or data that claims more bytes than the message had.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipsctp_sctp::Notification;

/// `enum sctp_sn_type` values and the kernel names `Notification::kind` gives them.
const KINDS: &[(u16, &str)] = &[
    (0x8001, "SCTP_ASSOC_CHANGE"),
    (0x8002, "SCTP_PEER_ADDR_CHANGE"),
    (0x8004, "SCTP_REMOTE_ERROR"),
    (0x8005, "SCTP_SHUTDOWN_EVENT"),
    (0x8006, "SCTP_PARTIAL_DELIVERY_EVENT"),
    (0x8009, "SCTP_SENDER_DRY_EVENT"),
    (0x800d, "SCTP_SEND_FAILED_EVENT"),
];

fuzz_target!(|data: &[u8]| {
    let decoded = Notification::decode(data);
    assert_eq!(decoded, Notification::decode(data));
    let n = match decoded {
        Ok(n) => n,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{n:?}");
    let sn_type = data
        .first_chunk::<2>()
        .map(|b| u16::from_ne_bytes(*b))
        .expect("a decoded notification has a header");
    match KINDS.iter().find(|(t, _)| *t == sn_type) {
        Some((_, name)) => assert_eq!(n.kind(), *name),
        None => assert_eq!(n, Notification::Other(sn_type)),
    }
    assert_eq!(n.assoc_id().is_none(), matches!(n, Notification::Other(_)));
    match &n {
        Notification::SendFailed {
            payload,
            payload_len,
            ..
        } => {
            assert!(payload.len() <= *payload_len, "{n:?}");
            assert!(32 + payload.len() <= data.len(), "{n:?}");
        }
        Notification::RemoteError { data: causes, .. } => {
            assert!(16 + causes.len() <= data.len(), "{n:?}");
        }
        _ => {}
    }
});
