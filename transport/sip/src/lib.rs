//! The SIP layer of the relay, sans-IO: stateless relay decisions, transaction tracking for
//! metrics, the bridge where UDP meets a reliable transport, and the relay driver; the
//! messages themselves (parser, framing, edits) come from `sipsctp-sip-message`.
//!
//! Like `quinn-proto`, this crate is deterministic and does no I/O: no sockets, no tokio, no
//! clock (time arrives as [`MonoTime`] arguments), no DNS, no logging. Bytes come
//! in, [`Decision`]s and bytes go out; the daemon moves them. As in the message crate, no
//! indexing or `unwrap` on input-derived data (enforced by `clippy::indexing_slicing` and
//! friends outside tests).
//!
//! # Organization
//!
//! - Messages: parsing, stream framing, [`Editor`] and [`build_response`] live in
//!   `sipsctp-sip-message` (`sip/message`, shared with the exporter) and are re-exported
//!   here, so the relay's code names them from this crate.
//! - [`relay`]: [`Relay`] turns a message into a [`Decision`] (RFC 3261 section 16.11).
//! - [`transaction`]: [`TransactionTable`], a bounded table that turns forwarded requests and
//!   their responses into latencies, expiries and overflow counts.
//! - [`driver`]: [`RelayDriver`], the relay loop without the I/O: messages in, transmits and
//!   [`SipEvent`]s out, timers polled; time is [`MonoTime`] (`CLOCK_MONOTONIC`, passed in).
//! - [`bridge`]: the transaction state kept where a request crosses between a reliable
//!   transport and UDP (retransmissions the reliable side never makes).
//!
//! # Example
//!
//! ```
//! use sipsctp_sip::relay::{Listener, LocalAddr, Peer, RelayConfig, RouteTarget, Upstream};
//! use sipsctp_sip::{Decision, Limits, Message, Relay, Transport};
//!
//! let relay = Relay::new(RelayConfig {
//!     listeners: vec![
//!         Listener { transport: Transport::Udp, addr: "192.0.2.10:5060".parse()?, advertise: None },
//!         Listener { transport: Transport::Sctp, addr: "10.0.0.10:5060".parse()?, advertise: None },
//!     ],
//!     aliases: vec![],
//!     routes: vec![],
//!     default_route: Some(RouteTarget::Upstream(Upstream {
//!         transport: Transport::Sctp,
//!         addr: "10.0.0.20:5060".parse()?,
//!     })),
//!     record_route: false,
//!     secret: [42; 16],
//!     limits: Limits::DEFAULT,
//! })?;
//!
//! let invite = b"INVITE sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n\
//! Max-Forwards: 70\r\n\
//! To: <sip:bob@example.com>\r\n\
//! From: <sip:alice@example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710\r\n\
//! CSeq: 314159 INVITE\r\n\
//! Content-Length: 0\r\n\r\n";
//! let from = Peer { transport: Transport::Udp, addr: "198.51.100.7:5060".parse()?, assoc: None };
//! let local = LocalAddr { transport: Transport::Udp, addr: "192.0.2.10:5060".parse()? };
//!
//! let Decision::Forward { to, bytes, tx } = relay.handle(invite, from, local) else {
//!     panic!("expected a forward");
//! };
//! assert_eq!((to.transport, to.addr), (Transport::Sctp, "10.0.0.20:5060".parse()?));
//! let forwarded = Message::parse(&bytes)?;
//! let top = forwarded.top_via()?;
//! assert_eq!(top.transport, "SCTP");
//! assert_eq!(tx.map(|k| k.branch), top.branch.map(Into::into));
//! assert_eq!(forwarded.max_forwards()?, Some(69));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Why the project has its own parser rather than `rsip` or `ezk-sip-types`: the message
//! crate's documentation (`sip/message/src/lib.rs`); `benches/parse.rs` measures it next to
//! rsip.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod bridge;
pub mod driver;
mod hash;
pub mod overload;
pub mod relay;
mod time;
pub mod transaction;

pub use driver::{RelayDriver, SipEvent};
pub use relay::{Decision, DropReason, Relay, RelayConfig};
/// The association id type of the whole workspace (the SCTP transport's and the kernel events').
pub use sipsctp_ebpf_common::assoc::AssocId;
pub use sipsctp_sip_message::{
    CSeq, Contact, EditError, Editor, Field, Framed, Header, HeaderName, Host, Limits,
    MAGIC_COOKIE, Message, Method, MethodBuf, NameAddr, Param, Params, ParseError, ParseErrorKind,
    RequestLine, ResponseSpec, Rport, StartLine, StatusLine, StreamFramer, Transport, Uri, Via,
    build_response, frame, leading_crlf,
};
pub use time::MonoTime;
pub use transaction::TransactionTable;
