//! Entry points for fuzz targets (cargo feature `fuzzing`; hidden from the docs): the decoders
//! that read bytes a peer influences through the kernel — the `SCTP_RCVINFO` control-message
//! parser and the notification decoder — reachable with plain byte slices.
//!
//! Not an API: no stability promise, and nothing here is compiled without the feature. It
//! adds no behaviour; each function only adapts its input to the decoder the socket uses.

use crate::{
    notification::{DecodeError, Notification},
    sys::cmsg,
};

/// `SCTP_RCVINFO` as the control-message parser read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcvInfo {
    /// `rcv_sid`.
    pub stream: u16,
    /// `rcv_ssn`.
    pub ssn: u16,
    /// `rcv_flags`.
    pub flags: u16,
    /// The payload protocol identifier as on the wire.
    pub ppid: u32,
    /// `rcv_tsn`.
    pub tsn: u32,
    /// `rcv_cumtsn`.
    pub cumtsn: u32,
    /// `rcv_context`.
    pub context: u32,
    /// `rcv_assoc_id`.
    pub assoc_id: u32,
    /// `SCTP_UNORDERED` in `rcv_flags`.
    pub unordered: bool,
}

/// Parses `control` as the control data recvmsg(2) returned (`msg_controllen` =
/// `control.len()`), through the same aligned buffer the socket uses. Input longer than that
/// buffer is cut to its size, as the kernel would (`MSG_CTRUNC`).
pub fn parse_rcvinfo(control: &[u8]) -> Option<RcvInfo> {
    let (buf, len) = cmsg::CmsgBuf::from_bytes(control);
    cmsg::parse_rcvinfo(&buf, len).map(|r| RcvInfo {
        stream: r.stream,
        ssn: r.ssn,
        flags: r.flags,
        ppid: r.ppid,
        tsn: r.tsn,
        cumtsn: r.cumtsn,
        context: r.context,
        assoc_id: r.assoc_id,
        unordered: r.unordered(),
    })
}

/// [`Notification::decode`], the decoder of `MSG_NOTIFICATION` reads.
///
/// # Errors
/// As [`Notification::decode`].
pub fn decode_notification(bytes: &[u8]) -> Result<Notification, DecodeError> {
    Notification::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_are_safe_to_parse() {
        // A SCTP_RCVINFO at the start: cmsg_len 16 + 28, level IPPROTO_SCTP, type SCTP_RCVINFO.
        let mut control = Vec::new();
        control.extend_from_slice(&44usize.to_ne_bytes());
        control.extend_from_slice(&132i32.to_ne_bytes());
        control.extend_from_slice(&3i32.to_ne_bytes());
        control.extend_from_slice(&7u16.to_ne_bytes());
        control.extend_from_slice(&[0; 26]);
        let got = parse_rcvinfo(&control).expect("rcvinfo");
        assert_eq!(got.stream, 7);
        // Cut, oversized and random inputs: no panic.
        for cut in 0..control.len() {
            assert_eq!(parse_rcvinfo(&control[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_rcvinfo(&[0xff; 4096]), None);
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse_rcvinfo(&bytes);
            let _ = decode_notification(&bytes);
        }
        assert!(decode_notification(&[]).is_err());
    }
}
