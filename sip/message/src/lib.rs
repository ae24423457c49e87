//! SIP messages without I/O: a zero-copy parser, stream framing, and edits that copy the
//! bytes they do not touch. The relay (`sipsctp-sip`, under `transport/`) and the exporter
//! (which reads the SIP the kernel carried) both parse with this crate; it depends on neither.
//!
//! Parsing follows rustls' habits: a cursor whose takes return `Option`, no indexing or
//! `unwrap` on input-derived data (enforced by `clippy::indexing_slicing` and friends outside
//! tests), and typed errors that name the field and the byte offset ([`ParseError`]). Nothing
//! here reads a clock, opens a socket or logs.
//!
//! # Organization
//!
//! - Parsing: [`Message`] (start line, headers, body, typed accessors) built from
//!   [`StartLine`], [`Header`]/[`HeaderName`] (compact forms, folding), [`Via`], [`NameAddr`]
//!   and [`Contact`], [`CSeq`], [`Uri`], [`Host`], [`Params`]; bounded by [`Limits`].
//!   [`Message::parse_head`] reads the head alone (a captured prefix of a message).
//! - Streams: [`frame`] cuts the first complete message off a TCP receive buffer;
//!   [`StreamFramer`] does it for a connection in linear time and recognises RFC 5626
//!   keep-alives; [`leading_crlf`] measures keep-alive CRLFs.
//! - Serialising: [`Editor`] (insert/remove the top `Via`, `Via` parameters, `Max-Forwards`,
//!   `Record-Route`, `Route` values) and [`build_response`], both copying untouched bytes.
//!
//! # Example
//!
//! ```
//! use sipsctp_sip_message::{Limits, Message, Method};
//!
//! let options = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/SCTP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n\
//! To: <sip:bob@example.com>\r\n\
//! From: <sip:alice@example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710\r\n\
//! CSeq: 1 OPTIONS\r\n\
//! Content-Length: 0\r\n\r\n";
//! let msg = Message::parse_with(options, &Limits::DEFAULT)?;
//! assert_eq!(msg.method(), Some(Method::Options));
//! assert_eq!(msg.top_via()?.branch, Some("z9hG4bK776asdhds"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why not an existing crate
//!
//! Evaluated before writing this:
//!
//! - `rsip` 0.4.0: its dependencies are superseded majors (`nom` 7, `bstr` 0.2, `sha2` and
//!   `md-5` 0.9, `uuid` 0.8), the signs of a crate unmaintained since its last release; it
//!   parses every header into owned `String`s (an allocation per header per message), has no
//!   limits on size or header count, and offers no way to edit a message without
//!   re-serialising all of it. The benchmark (`transport/sip/benches/parse.rs`) measures it
//!   next to this parser on the same messages.
//! - `ezk-sip-types` 0.6 (ezk): maintained, but built on `bytes::Bytes`/`BytesStr` ownership
//!   and `&str` input (a message must be valid UTF-8 up front, which SIP does not promise:
//!   reason phrases and display names may carry other bytes), parses with `nom` 7, pulls
//!   `anyhow` and `lazy_static` into a library, has no configurable limits, and like rsip
//!   re-serialises on output.
//!
//! Neither gives zero-copy views with offsets, which the relay needs to edit a message by
//! copying slices; so the project has its own parser, fuzzed (`transport/sip/fuzz`) and
//! benchmarked.
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
mod cseq;
mod cursor;
mod edit;
mod error;
mod frame;
mod head;
mod header;
mod host;
mod limits;
mod message;
mod method;
mod params;
mod response;
mod split;
mod start_line;
mod transport;
mod uri;
mod via;

pub use addr::{Contact, NameAddr};
pub use cseq::CSeq;
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
pub use response::{ResponseSpec, build_response};
pub use start_line::{RequestLine, StartLine, StatusLine};
pub use transport::Transport;
pub use uri::Uri;
pub use via::{MAGIC_COOKIE, Rport, Via};
