//! Ancillary data: building the send control buffer (`SCTP_SNDINFO`, plus `SCTP_PRINFO` with
//! the TTL policy when a lifetime is given) and reading `SCTP_RCVINFO` from a received one.
//!
//! It never sends or receives anything; it only lays out and checks bytes. Payload protocol
//! identifiers are converted here between the wire value the rest of the crate uses and the
//! kernel's opaque field (which goes to the wire unconverted, so it holds network byte order).

/// Capacity of a control buffer: `SCTP_SNDINFO` + `SCTP_PRINFO` take 64 bytes, `SCTP_RCVINFO`
/// 48; the rest is room for anything else the kernel may add.
const CMSG_CAP: usize = 256;

/// An aligned control-message buffer.
#[repr(C, align(8))]
pub(crate) struct CmsgBuf {
    bytes: [u8; CMSG_CAP],
}

const _: () = assert!(align_of::<CmsgBuf>() >= align_of::<libc::cmsghdr>());

impl CmsgBuf {
    /// A zeroed buffer.
    pub(crate) fn new() -> Self {
        Self {
            bytes: [0; CMSG_CAP],
        }
    }

    /// The whole buffer, for recvmsg(2) to fill.
    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The first `len` bytes.
    pub(crate) fn prefix(&self, len: usize) -> &[u8] {
        self.bytes.get(..len).unwrap_or(&self.bytes)
    }

    /// A buffer holding `bytes` (cut to its capacity) and the length to parse, as recvmsg(2)
    /// would leave it: for fuzzing the parser with arbitrary input.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn from_bytes(bytes: &[u8]) -> (Self, usize) {
        let mut buf = Self::new();
        let len = bytes.len().min(CMSG_CAP);
        if let (Some(dst), Some(src)) = (buf.bytes.get_mut(..len), bytes.get(..len)) {
            dst.copy_from_slice(src);
        }
        (buf, len)
    }
}

impl Default for CmsgBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// What to put in `SCTP_SNDINFO` (and `SCTP_PRINFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendInfo {
    /// `snd_sid`: the stream.
    pub(crate) stream: u16,
    /// `SCTP_UNORDERED` in `snd_flags`.
    pub(crate) unordered: bool,
    /// The payload protocol identifier as it should appear on the wire.
    pub(crate) ppid: u32,
    /// `snd_context`: returned in a send-failed notification.
    pub(crate) context: u32,
    /// `snd_assoc_id` (ignored by the kernel when a destination address is given).
    pub(crate) assoc_id: u32,
    /// `SCTP_PR_SCTP_TTL` with this lifetime in milliseconds.
    pub(crate) ttl_ms: Option<u32>,
    /// An association-level action instead of (or with) data.
    pub(crate) control: SendControl,
}

/// Association-level actions carried by `snd_flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SendControl {
    /// A plain data message.
    #[default]
    None,
    /// `SCTP_ABORT`: abort the association; the data is the user-initiated abort reason.
    Abort,
    /// `SCTP_EOF`: graceful SHUTDOWN of the association (no data).
    Eof,
}

/// `SCTP_RCVINFO` as read from a received control buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RcvInfo {
    /// `rcv_sid`.
    pub(crate) stream: u16,
    /// `rcv_ssn`.
    pub(crate) ssn: u16,
    /// `rcv_flags` (`SCTP_UNORDERED` for unordered messages).
    pub(crate) flags: u16,
    /// The payload protocol identifier as it was on the wire.
    pub(crate) ppid: u32,
    /// `rcv_tsn`.
    pub(crate) tsn: u32,
    /// `rcv_cumtsn`.
    pub(crate) cumtsn: u32,
    /// `rcv_context`.
    pub(crate) context: u32,
    /// `rcv_assoc_id`.
    pub(crate) assoc_id: u32,
}

impl RcvInfo {
    /// Whether the message was sent unordered (`SCTP_UNORDERED` in `rcv_flags`).
    pub(crate) fn unordered(&self) -> bool {
        self.flags & (libc::SCTP_UNORDERED as u16) != 0
    }
}

/// `CMSG_SPACE(size_of::<T>())`.
fn space_of<T>() -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument (unsafe only by declaration).
    unsafe { libc::CMSG_SPACE(size_of::<T>() as libc::c_uint) as usize }
}

/// `CMSG_LEN(size_of::<T>())`.
fn len_of<T>() -> usize {
    // SAFETY: CMSG_LEN is pure arithmetic on its argument (unsafe only by declaration).
    unsafe { libc::CMSG_LEN(size_of::<T>() as libc::c_uint) as usize }
}

/// A msghdr that only describes `control` (for the CMSG_* walkers).
fn control_msghdr(control: &[u8]) -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_ptr().cast_mut().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Writes `SCTP_SNDINFO` (and `SCTP_PRINFO` when `info.ttl_ms` is set) into `buf`; returns
/// the number of bytes to pass as `msg_controllen`.
pub(crate) fn build_send(buf: &mut CmsgBuf, info: &SendInfo) -> usize {
    let mut flags: u16 = 0;
    if info.unordered {
        flags |= libc::SCTP_UNORDERED as u16;
    }
    match info.control {
        SendControl::None => {}
        SendControl::Abort => flags |= libc::SCTP_ABORT as u16,
        SendControl::Eof => flags |= libc::SCTP_EOF as u16,
    }
    let sndinfo = libc::sctp_sndinfo {
        snd_sid: info.stream,
        snd_flags: flags,
        snd_ppid: info.ppid.to_be(),
        snd_context: info.context,
        snd_assoc_id: info.assoc_id.cast_signed(),
    };
    let prinfo = info.ttl_ms.map(|ttl| libc::sctp_prinfo {
        pr_policy: libc::SCTP_PR_SCTP_TTL as u16,
        pr_value: ttl,
    });
    let total =
        space_of::<libc::sctp_sndinfo>() + prinfo.map_or(0, |_| space_of::<libc::sctp_prinfo>());
    buf.bytes = [0; CMSG_CAP];
    let Some(control) = buf.bytes.get_mut(..total) else {
        // Cannot happen: CMSG_CAP is far larger than both messages.
        return 0;
    };
    let msg = control_msghdr(control);
    // SAFETY: `msg` describes `control`, a zeroed, 8-aligned buffer of `total` bytes, which
    // was sized to hold both headers and payloads; CMSG_FIRSTHDR / CMSG_NXTHDR only return
    // pointers whose header and (aligned) data lie inside it, and null is checked before any
    // write. Payloads are written unaligned-safe.
    unsafe {
        let first = libc::CMSG_FIRSTHDR(&msg);
        if first.is_null() {
            return 0;
        }
        (*first).cmsg_level = libc::IPPROTO_SCTP;
        (*first).cmsg_type = libc::SCTP_SNDINFO;
        (*first).cmsg_len = len_of::<libc::sctp_sndinfo>() as _;
        libc::CMSG_DATA(first)
            .cast::<libc::sctp_sndinfo>()
            .write_unaligned(sndinfo);
        if let Some(prinfo) = prinfo {
            let second = libc::CMSG_NXTHDR(&msg, first);
            if second.is_null() {
                return 0;
            }
            (*second).cmsg_level = libc::IPPROTO_SCTP;
            (*second).cmsg_type = libc::SCTP_PRINFO;
            (*second).cmsg_len = len_of::<libc::sctp_prinfo>() as _;
            libc::CMSG_DATA(second)
                .cast::<libc::sctp_prinfo>()
                .write_unaligned(prinfo);
        }
    }
    total
}

/// Finds `SCTP_RCVINFO` in the first `len` bytes of a received control buffer. Messages with
/// a short or overlong length are skipped, never read past.
pub(crate) fn parse_rcvinfo(buf: &CmsgBuf, len: usize) -> Option<RcvInfo> {
    let control = buf.prefix(len);
    let msg = control_msghdr(control);
    let base = control.as_ptr() as usize;
    let end = base + control.len();
    let want = len_of::<libc::sctp_rcvinfo>();
    // SAFETY: `msg` describes `control` (live, 8-aligned, initialized). CMSG_FIRSTHDR and
    // CMSG_NXTHDR return null or a header lying entirely inside it; each header is read only
    // after that check; the walk stops at a `cmsg_len` that runs past the buffer, and the
    // payload is read (unaligned) only when `cmsg_len` covers a whole `sctp_rcvinfo`, which
    // then ends inside the buffer.
    unsafe {
        let mut cur = libc::CMSG_FIRSTHDR(&msg);
        while !cur.is_null() {
            let hdr = cur.read();
            let clen = hdr.cmsg_len as usize;
            if (cur as usize).checked_add(clen).is_none_or(|e| e > end) {
                // A length past the buffer: the rest cannot be trusted (and walking on
                // would overflow the pointer arithmetic).
                break;
            }
            let data = libc::CMSG_DATA(cur);
            if hdr.cmsg_level == libc::IPPROTO_SCTP
                && hdr.cmsg_type == libc::SCTP_RCVINFO
                && clen >= want
            {
                let r = data.cast::<libc::sctp_rcvinfo>().read_unaligned();
                return Some(RcvInfo {
                    stream: r.rcv_sid,
                    ssn: r.rcv_ssn,
                    flags: r.rcv_flags,
                    ppid: u32::from_be(r.rcv_ppid),
                    tsn: r.rcv_tsn,
                    cumtsn: r.rcv_cumtsn,
                    context: r.rcv_context,
                    assoc_id: r.rcv_assoc_id.cast_unsigned(),
                });
            }
            cur = libc::CMSG_NXTHDR(&msg, cur);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a control buffer with the same libc macros: (level, type, payload bytes).
    fn walk(buf: &CmsgBuf, len: usize) -> Vec<(i32, i32, Vec<u8>)> {
        let control = buf.prefix(len);
        let mut out = Vec::new();
        let mut off = 0usize;
        let hdr = len_of::<()>();
        while off + hdr <= control.len() {
            let clen = usize::from_ne_bytes(control[off..off + 8].try_into().unwrap());
            let level = i32::from_ne_bytes(control[off + 8..off + 12].try_into().unwrap());
            let typ = i32::from_ne_bytes(control[off + 12..off + 16].try_into().unwrap());
            out.push((level, typ, control[off + hdr..off + clen].to_vec()));
            off += (clen + 7) & !7;
        }
        out
    }

    #[test]
    fn sndinfo_only() {
        let mut buf = CmsgBuf::new();
        let info = SendInfo {
            stream: 3,
            unordered: true,
            ppid: 0x0102_0304,
            context: 99,
            assoc_id: 17,
            ttl_ms: None,
            control: SendControl::None,
        };
        let n = build_send(&mut buf, &info);
        assert_eq!(n, 32);
        let msgs = walk(&buf, n);
        assert_eq!(msgs.len(), 1);
        let (level, typ, data) = &msgs[0];
        assert_eq!((*level, *typ), (libc::IPPROTO_SCTP, libc::SCTP_SNDINFO));
        assert_eq!(data.len(), 16);
        assert_eq!(&data[0..2], &3u16.to_ne_bytes());
        assert_eq!(&data[2..4], &(libc::SCTP_UNORDERED as u16).to_ne_bytes());
        // The wire value goes out in network byte order.
        assert_eq!(&data[4..8], &[1, 2, 3, 4]);
        assert_eq!(&data[8..12], &99u32.to_ne_bytes());
        assert_eq!(&data[12..16], &17i32.to_ne_bytes());
    }

    #[test]
    fn sndinfo_and_prinfo() {
        let mut buf = CmsgBuf::new();
        let info = SendInfo {
            ttl_ms: Some(1500),
            ..Default::default()
        };
        let n = build_send(&mut buf, &info);
        assert_eq!(n, 32 + 24);
        let msgs = walk(&buf, n);
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].2[2..4], &0u16.to_ne_bytes());
        let (level, typ, data) = &msgs[1];
        assert_eq!((*level, *typ), (libc::IPPROTO_SCTP, libc::SCTP_PRINFO));
        assert_eq!(data.len(), 8);
        assert_eq!(&data[0..2], &(libc::SCTP_PR_SCTP_TTL as u16).to_ne_bytes());
        assert_eq!(&data[4..8], &1500u32.to_ne_bytes());
    }

    /// Lays out a received control buffer by hand: an unrelated message, then SCTP_RCVINFO.
    fn rcv_buffer(rcv: &libc::sctp_rcvinfo) -> (CmsgBuf, usize) {
        let mut buf = CmsgBuf::new();
        let mut off = 0;
        let mut push = |level: i32, typ: i32, payload: &[u8]| {
            let clen = 16 + payload.len();
            buf.bytes[off..off + 8].copy_from_slice(&clen.to_ne_bytes());
            buf.bytes[off + 8..off + 12].copy_from_slice(&level.to_ne_bytes());
            buf.bytes[off + 12..off + 16].copy_from_slice(&typ.to_ne_bytes());
            buf.bytes[off + 16..off + clen].copy_from_slice(payload);
            off += (clen + 7) & !7;
        };
        push(libc::SOL_SOCKET, 29, &[1, 2, 3, 4, 5]);
        let mut p = Vec::new();
        p.extend_from_slice(&rcv.rcv_sid.to_ne_bytes());
        p.extend_from_slice(&rcv.rcv_ssn.to_ne_bytes());
        p.extend_from_slice(&rcv.rcv_flags.to_ne_bytes());
        p.extend_from_slice(&[0, 0]);
        for v in [rcv.rcv_ppid, rcv.rcv_tsn, rcv.rcv_cumtsn, rcv.rcv_context] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        p.extend_from_slice(&rcv.rcv_assoc_id.to_ne_bytes());
        assert_eq!(p.len(), size_of::<libc::sctp_rcvinfo>());
        push(libc::IPPROTO_SCTP, libc::SCTP_RCVINFO, &p);
        (buf, off)
    }

    #[test]
    fn rcvinfo_parse() {
        let rcv = libc::sctp_rcvinfo {
            rcv_sid: 5,
            rcv_ssn: 6,
            rcv_flags: 1,
            rcv_ppid: 0x0000_0027u32.to_be(),
            rcv_tsn: 1000,
            rcv_cumtsn: 999,
            rcv_context: 0,
            rcv_assoc_id: 42,
        };
        let (buf, len) = rcv_buffer(&rcv);
        let got = parse_rcvinfo(&buf, len).unwrap();
        assert_eq!(
            got,
            RcvInfo {
                stream: 5,
                ssn: 6,
                flags: 1,
                ppid: 0x27,
                tsn: 1000,
                cumtsn: 999,
                context: 0,
                assoc_id: 42,
            }
        );
        // Truncated control data: no rcvinfo, no panic. Only the last message's trailing
        // alignment padding may be missing.
        let rcvinfo_end = 24 + len_of::<libc::sctp_rcvinfo>();
        assert_eq!(len, 24 + space_of::<libc::sctp_rcvinfo>());
        for cut in 0..len {
            let want = if cut >= rcvinfo_end { Some(got) } else { None };
            assert_eq!(parse_rcvinfo(&buf, cut), want, "cut at {cut}");
        }
        assert_eq!(parse_rcvinfo(&buf, 0), None);
    }

    #[test]
    fn send_then_parse_is_not_rcvinfo() {
        let mut buf = CmsgBuf::new();
        let n = build_send(&mut buf, &SendInfo::default());
        assert_eq!(parse_rcvinfo(&buf, n), None);
    }

    #[test]
    fn garbage_lengths() {
        let mut buf = CmsgBuf::new();
        // cmsg_len claims more than the buffer.
        buf.bytes[0..8].copy_from_slice(&10_000usize.to_ne_bytes());
        buf.bytes[8..12].copy_from_slice(&libc::IPPROTO_SCTP.to_ne_bytes());
        buf.bytes[12..16].copy_from_slice(&libc::SCTP_RCVINFO.to_ne_bytes());
        assert_eq!(parse_rcvinfo(&buf, 64), None);
        // cmsg_len smaller than a header.
        buf.bytes[0..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(parse_rcvinfo(&buf, 64), None);
        buf.bytes[0..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(parse_rcvinfo(&buf, CMSG_CAP), None);
    }

    #[test]
    fn from_bytes_copies_up_to_capacity_and_parses_like_a_received_buffer() {
        let rcv = libc::sctp_rcvinfo {
            rcv_sid: 9,
            rcv_ssn: 0,
            rcv_flags: 0,
            rcv_ppid: 0,
            rcv_tsn: 0,
            rcv_cumtsn: 0,
            rcv_context: 0,
            rcv_assoc_id: 3,
        };
        let (orig, len) = rcv_buffer(&rcv);
        let (copy, copied) = CmsgBuf::from_bytes(orig.prefix(len));
        assert_eq!(copied, len);
        assert_eq!(parse_rcvinfo(&copy, copied).map(|r| r.stream), Some(9));
        let (_, capped) = CmsgBuf::from_bytes(&[0u8; CMSG_CAP * 2]);
        assert_eq!(capped, CMSG_CAP);
    }
}
