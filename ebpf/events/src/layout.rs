//! Which kernel struct members the programs read, and which probes need which: the BTF paths
//! behind each field of [`Offsets`], the size each must have, the kernel enum values the
//! programs and the decoder rely on, and the resolution of all of them against the running
//! kernel's BTF.
//!
//! Pure (works on a parsed [`Btf`]); the loader decides what to do with a missing field:
//! every probe that needs it stays detached, with the reason.

use std::collections::BTreeMap;

use sipsctp_ebpf_common::{LOWER_CWND_FAST_RTX, Offsets, path_command, rtx_reason};

use crate::btf::{Btf, BtfError};

/// One member the programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `sctp_association.base.sk`
    AsocSk,
    /// `sctp_association.base.bind_addr.port`
    AsocLocalPort,
    /// `sctp_association.peer.port`
    AsocPeerPort,
    /// `sctp_association.assoc_id`
    AsocId,
    /// `sctp_association.peer.primary_path`
    AsocPrimaryPath,
    /// `sctp_association.peer.active_path`
    AsocActivePath,
    /// `sctp_association.state`
    AsocState,
    /// `sctp_association.overall_error_count`
    AsocOverallErrorCount,
    /// `sctp_association.init_retries`
    AsocInitRetries,
    /// `sctp_association.max_init_attempts`
    AsocMaxInitAttempts,
    /// `sock.__sk_common.skc_net.net`
    SockNet,
    /// `net.ns.inum`
    NetInum,
    /// `sctp_transport.asoc`
    TpAsoc,
    /// `sctp_transport.ipaddr.sa.sa_family`
    TpFamily,
    /// `sctp_transport.ipaddr.v4.sin_addr`
    TpAddr4,
    /// `sctp_transport.ipaddr.v6.sin6_addr`
    TpAddr6,
    /// `sctp_transport.rto`
    TpRto,
    /// `sctp_transport.rttvar`
    TpRttvar,
    /// `sctp_transport.srtt`
    TpSrtt,
    /// `sctp_transport.cwnd`
    TpCwnd,
    /// `sctp_transport.ssthresh`
    TpSsthresh,
    /// `sctp_transport.flight_size`
    TpFlightSize,
    /// `sctp_transport.state`
    TpState,
    /// `sctp_transport.error_count`
    TpErrorCount,
    /// `sctp_transport.param_flags`
    TpParamFlags,
    /// `sctp_chunk.transport`
    ChunkTransport,
    /// `sctp_chunk.chunk_hdr`
    ChunkHdr,
    /// `sctp_chunk.skb`
    ChunkSkb,
    /// `sctp_outq.asoc`
    OutqAsoc,
    /// `sk_buff.data`
    SkbData,
}

/// Pointer size of the kernel (the loader runs on the kernel it probes).
const PTR: u32 = std::mem::size_of::<usize>() as u32;

impl Field {
    /// Every field.
    pub const ALL: &'static [Field] = &[
        Field::AsocSk,
        Field::AsocLocalPort,
        Field::AsocPeerPort,
        Field::AsocId,
        Field::AsocPrimaryPath,
        Field::AsocActivePath,
        Field::AsocState,
        Field::AsocOverallErrorCount,
        Field::AsocInitRetries,
        Field::AsocMaxInitAttempts,
        Field::SockNet,
        Field::NetInum,
        Field::TpAsoc,
        Field::TpFamily,
        Field::TpAddr4,
        Field::TpAddr6,
        Field::TpRto,
        Field::TpRttvar,
        Field::TpSrtt,
        Field::TpCwnd,
        Field::TpSsthresh,
        Field::TpFlightSize,
        Field::TpState,
        Field::TpErrorCount,
        Field::TpParamFlags,
        Field::ChunkTransport,
        Field::ChunkHdr,
        Field::ChunkSkb,
        Field::OutqAsoc,
        Field::SkbData,
    ];

    /// The BTF path and the size (bytes) the programs read it with.
    pub fn spec(self) -> (&'static str, u32) {
        match self {
            Field::AsocSk => ("sctp_association.base.sk", PTR),
            Field::AsocLocalPort => ("sctp_association.base.bind_addr.port", 2),
            Field::AsocPeerPort => ("sctp_association.peer.port", 2),
            Field::AsocId => ("sctp_association.assoc_id", 4),
            Field::AsocPrimaryPath => ("sctp_association.peer.primary_path", PTR),
            Field::AsocActivePath => ("sctp_association.peer.active_path", PTR),
            Field::AsocState => ("sctp_association.state", 4),
            Field::AsocOverallErrorCount => ("sctp_association.overall_error_count", 4),
            Field::AsocInitRetries => ("sctp_association.init_retries", 2),
            Field::AsocMaxInitAttempts => ("sctp_association.max_init_attempts", 2),
            Field::SockNet => ("sock.__sk_common.skc_net.net", PTR),
            Field::NetInum => ("net.ns.inum", 4),
            Field::TpAsoc => ("sctp_transport.asoc", PTR),
            Field::TpFamily => ("sctp_transport.ipaddr.sa.sa_family", 2),
            Field::TpAddr4 => ("sctp_transport.ipaddr.v4.sin_addr", 4),
            Field::TpAddr6 => ("sctp_transport.ipaddr.v6.sin6_addr", 16),
            // `unsigned long`: the programs read 8 bytes.
            Field::TpRto => ("sctp_transport.rto", 8),
            Field::TpRttvar => ("sctp_transport.rttvar", 4),
            Field::TpSrtt => ("sctp_transport.srtt", 4),
            Field::TpCwnd => ("sctp_transport.cwnd", 4),
            Field::TpSsthresh => ("sctp_transport.ssthresh", 4),
            Field::TpFlightSize => ("sctp_transport.flight_size", 4),
            Field::TpState => ("sctp_transport.state", 4),
            Field::TpErrorCount => ("sctp_transport.error_count", 2),
            Field::TpParamFlags => ("sctp_transport.param_flags", 4),
            Field::ChunkTransport => ("sctp_chunk.transport", PTR),
            Field::ChunkHdr => ("sctp_chunk.chunk_hdr", PTR),
            Field::ChunkSkb => ("sctp_chunk.skb", PTR),
            Field::OutqAsoc => ("sctp_outq.asoc", PTR),
            Field::SkbData => ("sk_buff.data", PTR),
        }
    }

    /// The BTF path.
    pub fn path(self) -> &'static str {
        self.spec().0
    }

    fn slot(self, o: &mut Offsets) -> &mut u32 {
        match self {
            Field::AsocSk => &mut o.asoc_sk,
            Field::AsocLocalPort => &mut o.asoc_local_port,
            Field::AsocPeerPort => &mut o.asoc_peer_port,
            Field::AsocId => &mut o.asoc_id,
            Field::AsocPrimaryPath => &mut o.asoc_primary_path,
            Field::AsocActivePath => &mut o.asoc_active_path,
            Field::AsocState => &mut o.asoc_state,
            Field::AsocOverallErrorCount => &mut o.asoc_overall_error_count,
            Field::AsocInitRetries => &mut o.asoc_init_retries,
            Field::AsocMaxInitAttempts => &mut o.asoc_max_init_attempts,
            Field::SockNet => &mut o.sock_net,
            Field::NetInum => &mut o.net_inum,
            Field::TpAsoc => &mut o.tp_asoc,
            Field::TpFamily => &mut o.tp_family,
            Field::TpAddr4 => &mut o.tp_addr4,
            Field::TpAddr6 => &mut o.tp_addr6,
            Field::TpRto => &mut o.tp_rto,
            Field::TpRttvar => &mut o.tp_rttvar,
            Field::TpSrtt => &mut o.tp_srtt,
            Field::TpCwnd => &mut o.tp_cwnd,
            Field::TpSsthresh => &mut o.tp_ssthresh,
            Field::TpFlightSize => &mut o.tp_flight_size,
            Field::TpState => &mut o.tp_state,
            Field::TpErrorCount => &mut o.tp_error_count,
            Field::TpParamFlags => &mut o.tp_param_flags,
            Field::ChunkTransport => &mut o.chunk_transport,
            Field::ChunkHdr => &mut o.chunk_hdr,
            Field::ChunkSkb => &mut o.chunk_skb,
            Field::OutqAsoc => &mut o.outq_asoc,
            Field::SkbData => &mut o.skb_data,
        }
    }
}

/// The fields every event needs: identity, filter and the path address.
pub const IDENTITY: &[Field] = &[
    Field::AsocSk,
    Field::AsocLocalPort,
    Field::AsocPeerPort,
    Field::AsocId,
    Field::AsocPrimaryPath,
    Field::AsocActivePath,
    Field::SockNet,
    Field::NetInum,
    Field::TpAsoc,
    Field::TpFamily,
    Field::TpAddr4,
    Field::TpAddr6,
];

/// A kernel enum value a probe relies on: (enum, variant, the value the probe assumes).
pub type EnumValue = (&'static str, &'static str, u64);

/// Why a member cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Not in the kernel's BTF.
    #[error("{path}: {source}")]
    Missing {
        /// The BTF path.
        path: &'static str,
        /// What the BTF reader said.
        #[source]
        source: BtfError,
    },
    /// In BTF with a size the program does not read it with.
    #[error("{path}: {found} bytes, the program reads {expected}")]
    Size {
        /// The BTF path.
        path: &'static str,
        /// The size the program reads.
        expected: u32,
        /// The size BTF gives.
        found: u32,
    },
    /// A kernel enum value differs from what the program assumes.
    #[error("enum {name}: {variant} is {found:?} in this kernel, the program assumes {expected}")]
    Enum {
        /// The enum.
        name: &'static str,
        /// The variant.
        variant: &'static str,
        /// The assumed value.
        expected: u64,
        /// What BTF gives (None: absent).
        found: Option<i64>,
    },
}

/// The BTF path of the flag that marks temporary associations.
pub const TEMP_FLAG: &str = "sctp_association.temp";

/// The offsets found, and the reason for each field that was not.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Offsets of the fields found (0 for the others).
    pub offsets: Offsets,
    /// Fields not usable, with why.
    pub missing: BTreeMap<Field, FieldError>,
    /// Why [`TEMP_FLAG`] could not be resolved, if so: temporary associations are then not
    /// filtered out (no probe is down for it).
    pub temp_flag: Option<BtfError>,
}

impl Resolved {
    /// The first problem among `fields` and `enums`, if any.
    pub fn check(&self, btf: &Btf, fields: &[Field], enums: &[EnumValue]) -> Option<String> {
        for f in fields {
            if let Some(e) = self.missing.get(f) {
                return Some(e.to_string());
            }
        }
        for &(name, variant, expected) in enums {
            let found = btf.enum_value(name, variant).ok();
            if found != i64::try_from(expected).ok() {
                return Some(
                    FieldError::Enum {
                        name,
                        variant,
                        expected,
                        found,
                    }
                    .to_string(),
                );
            }
        }
        None
    }
}

/// Resolves every [`Field`] against `btf`.
pub fn resolve(btf: &Btf) -> Resolved {
    let mut r = Resolved::default();
    for &f in Field::ALL {
        let (path, expected) = f.spec();
        match btf.field(path) {
            Ok(found) if found.size == expected => *f.slot(&mut r.offsets) = found.offset,
            Ok(found) => {
                r.missing.insert(
                    f,
                    FieldError::Size {
                        path,
                        expected,
                        found: found.size,
                    },
                );
            }
            Err(source) => {
                r.missing.insert(f, FieldError::Missing { path, source });
            }
        }
    }
    match btf.flag(TEMP_FLAG) {
        Ok((byte, mask)) => {
            r.offsets.asoc_temp = byte;
            r.offsets.asoc_temp_mask = u32::from(mask);
        }
        Err(e) => r.temp_flag = Some(e),
    }
    r
}

/// The `sctp_retransmit_reason` and `sctp_lower_cwnd` values the retransmission probe and
/// decoder assume.
pub const RTX_REASONS: &[EnumValue] = &[
    (
        "sctp_retransmit_reason",
        "SCTP_RTXR_T3_RTX",
        rtx_reason::T3_RTX,
    ),
    (
        "sctp_retransmit_reason",
        "SCTP_RTXR_FAST_RTX",
        rtx_reason::FAST_RTX,
    ),
    (
        "sctp_retransmit_reason",
        "SCTP_RTXR_PMTUD",
        rtx_reason::PMTUD,
    ),
    (
        "sctp_retransmit_reason",
        "SCTP_RTXR_T1_RTX",
        rtx_reason::T1_RTX,
    ),
    (
        "sctp_lower_cwnd",
        "SCTP_LOWER_CWND_FAST_RTX",
        LOWER_CWND_FAST_RTX,
    ),
];

/// The `sctp_transport_cmd` values the path probe and decoder assume.
pub const TRANSPORT_CMDS: &[EnumValue] = &[
    ("sctp_transport_cmd", "SCTP_TRANSPORT_UP", path_command::UP),
    (
        "sctp_transport_cmd",
        "SCTP_TRANSPORT_DOWN",
        path_command::DOWN,
    ),
    ("sctp_transport_cmd", "SCTP_TRANSPORT_PF", path_command::PF),
];

/// The `sctp_state` values the association decoder assumes (`AssocState`).
pub const ASSOC_STATES: &[EnumValue] = &[
    ("sctp_state", "SCTP_STATE_CLOSED", 0),
    ("sctp_state", "SCTP_STATE_COOKIE_WAIT", 1),
    ("sctp_state", "SCTP_STATE_COOKIE_ECHOED", 2),
    ("sctp_state", "SCTP_STATE_ESTABLISHED", 3),
    ("sctp_state", "SCTP_STATE_SHUTDOWN_PENDING", 4),
    ("sctp_state", "SCTP_STATE_SHUTDOWN_SENT", 5),
    ("sctp_state", "SCTP_STATE_SHUTDOWN_RECEIVED", 6),
    ("sctp_state", "SCTP_STATE_SHUTDOWN_ACK_SENT", 7),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Builder, kernel_like};

    #[test]
    fn resolves_what_the_kernel_has_and_names_what_it_lacks() {
        let (base, split) = kernel_like();
        let btf = Btf::parse(&base).unwrap().parse_split(&split).unwrap();
        let r = resolve(&btf);
        assert_eq!(r.offsets.sock_net, 40);
        assert_eq!(r.offsets.net_inum, 144);
        assert_eq!(r.offsets.asoc_peer_port, 258);
        assert_eq!(r.offsets.asoc_local_port, 56);
        assert_eq!(r.offsets.tp_rto, 176);
        assert_eq!(r.offsets.tp_addr6, 144);
        assert_eq!((r.offsets.asoc_temp, r.offsets.asoc_temp_mask), (1756, 2));
        assert!(r.temp_flag.is_none());
        // The hand-made kernel lacks e.g. sctp_transport.cwnd and peer.active_path.
        assert!(matches!(
            r.missing.get(&Field::TpCwnd),
            Some(FieldError::Missing { .. })
        ));
        let problem = r.check(&btf, IDENTITY, &[]).unwrap();
        assert!(problem.contains("active_path"), "{problem}");
        assert_eq!(r.check(&btf, &[Field::TpRto], &[]), None);
        assert!(!r.missing.contains_key(&Field::TpRto));
    }

    #[test]
    fn a_size_mismatch_is_a_missing_field() {
        let (base, split) = kernel_like();
        let btf = Btf::parse(&base).unwrap().parse_split(&split).unwrap();
        let r = resolve(&btf);
        // `rtt` is not read by the programs, but `rttvar` is absent from the hand-made BTF
        // and `sctp_association.peer.transport_count` is 2 bytes: check one of each kind via
        // a field whose expected size differs.
        assert!(matches!(
            r.missing.get(&Field::TpRttvar),
            Some(FieldError::Missing { .. })
        ));
        let mut b = Builder::base();
        let u32_t = b.int("unsigned int", 4);
        b.structure("sctp_transport", 16, &[("rto", u32_t, 0, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        let r = resolve(&btf);
        assert!(matches!(
            r.missing.get(&Field::TpRto),
            Some(FieldError::Size {
                expected: 8,
                found: 4,
                ..
            })
        ));
    }

    #[test]
    fn enum_checks_compare_values() {
        let (base, split) = kernel_like();
        let btf = Btf::parse(&base).unwrap().parse_split(&split).unwrap();
        let mut r = resolve(&btf);
        r.missing.clear();
        assert!(
            r.check(&btf, &[], RTX_REASONS)
                .unwrap()
                .contains("sctp_lower_cwnd"),
            "the hand-made BTF lacks enum sctp_lower_cwnd"
        );
        assert_eq!(r.check(&btf, &[], &RTX_REASONS[..4]), None);
        let wrong: &[EnumValue] = &[("sctp_retransmit_reason", "SCTP_RTXR_PMTUD", 7)];
        assert!(r.check(&btf, &[], wrong).unwrap().contains("PMTUD"));
        assert!(r.check(&btf, &[], TRANSPORT_CMDS).is_some(), "absent enum");
    }
}
