//! The SIP layer of sipsctp, sans-IO: a zero-copy parser, header edits for a relay, stateless
//! relay decisions and transaction tracking for metrics.
//!
//! Like `quinn-proto`, this crate is deterministic and does no I/O: no sockets, no tokio, no
//! clock (time arrives as [`MonoTime`] arguments), no DNS, no logging. Bytes come
//! in, [`Decision`]s and bytes go out; the daemon moves them. Parsing follows rustls' habits:
//! a cursor whose takes return `Option`, no indexing or `unwrap` on input-derived data
//! (enforced by `clippy::indexing_slicing` and friends outside tests), and typed errors that
//! name the field and the byte offset ([`ParseError`]).
//!
//! # Organization
//!
//! - Parsing: [`Message`] (start line, headers, body, typed accessors) built from
//!   [`StartLine`], [`Header`]/[`HeaderName`] (compact forms, folding), [`Via`], [`NameAddr`]
//!   and [`Contact`], [`CSeq`], [`Uri`], [`Host`], [`Params`]; bounded by [`Limits`].
//! - Streams: [`frame`] cuts the first complete message off a TCP receive buffer;
//!   [`StreamFramer`] does it for a connection in linear time and recognises RFC 5626
//!   keep-alives; [`leading_crlf`] measures keep-alive CRLFs.
//! - Serialising: [`Editor`] (insert/remove the top `Via`, `Via` parameters, `Max-Forwards`,
//!   `Record-Route`, `Route` values) and [`build_response`], both copying untouched bytes.
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
//! # Why not an existing crate
//!
//! Evaluated before writing this (issue requirement):
//!
//! - `rsip` 0.4.0: its dependencies are superseded majors (`nom` 7, `bstr` 0.2, `sha2` and
//!   `md-5` 0.9, `uuid` 0.8), the signs of a crate unmaintained since its last release; it
//!   parses every header into owned `String`s (an allocation per header per message), has no
//!   limits on size or header count, and offers no way to edit a message without
//!   re-serialising all of it. The benchmark (`benches/parse.rs`) measures it next to this
//!   parser on the same messages.
//! - `ezk-sip-types` 0.6 (ezk): maintained, but built on `bytes::Bytes`/`BytesStr` ownership
//!   and `&str` input (a message must be valid UTF-8 up front, which SIP does not promise:
//!   reason phrases and display names may carry other bytes), parses with `nom` 7, pulls
//!   `anyhow` and `lazy_static` into a library, has no configurable limits, and like rsip
//!   re-serialises on output.
//!
//! Neither gives zero-copy views with offsets, which the relay needs to edit a message by
//! copying slices; so this crate has its own parser, fuzzed (`fuzz/`) and benchmarked.
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

mod addr;
pub mod bridge;
mod cseq;
mod cursor;
pub mod driver;
mod edit;
mod error;
mod frame;
mod hash;
mod head;
mod header;
mod host;
mod limits;
mod message;
mod method;
pub mod overload;
mod params;
pub mod relay;
mod response;
mod split;
mod start_line;
mod time;
pub mod transaction;
mod transport;
mod uri;
mod via;

pub use addr::{Contact, NameAddr};
pub use cseq::CSeq;
pub use driver::{RelayDriver, SipEvent};
pub use edit::{EditError, Editor};
pub use error::{Field, ParseError, ParseErrorKind};
pub use frame::{Framed, StreamFramer, frame};
pub use head::leading_crlf;
pub use header::{Header, HeaderName};
pub use host::Host;
pub use limits::Limits;
pub use message::Message;
pub use method::{Method, MethodBuf};
pub use params::{Param, Params};
pub use relay::{Decision, DropReason, Relay, RelayConfig};
pub use response::{ResponseSpec, build_response};
/// The association id type of the whole workspace (the SCTP transport's and the kernel events').
pub use sipsctp_ebpf_common::assoc::AssocId;
pub use start_line::{RequestLine, StartLine, StatusLine};
pub use time::MonoTime;
pub use transaction::TransactionTable;
pub use transport::Transport;
pub use uri::Uri;
pub use via::{MAGIC_COOKIE, Rport, Via};
