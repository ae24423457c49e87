//! `sipsctp-load`: a SIP load generator for measuring sipsctpd, Kamailio or a raw SCTP echo.
//!
//! Two roles. The UAC offers calls (INVITE, ACK, BYE) or OPTIONS transactions in open-loop
//! rate steps over SCTP, UDP or TCP and records per step what was offered, started,
//! completed and failed (by kind), SIP retransmissions, and HDR histograms of latency; the
//! UAS answers them. The SIP logic is pure and tested without sockets; sockets live at the
//! edges.
//!
//! - [`sip`]: a minimal, allocation-free scanner (start line, the few headers needed,
//!   `Content-Length` framing).
//! - [`msg`]: the UAC's requests; [`answer`]: the UAS's responses.
//! - [`schedule`]: the rate steps and what is due when; [`uac`]: the call state machine,
//!   timers and retransmissions; [`stats`]: per-step accounting and JSON.
//! - [`net`]: non-blocking sends with a per-connection backlog, batched reads;
//!   [`run`]: the two roles wired to tokio; [`cli`]: the flags.
//! - [`forward`]: a third role for the system benchmark, the raw SCTP relay (no SIP work);
//!   [`strace`]: reads `strace -c` summaries (syscalls per relayed message).

pub mod answer;
pub mod cli;
pub mod forward;
pub mod msg;
pub mod net;
pub mod run;
pub mod schedule;
pub mod sip;
pub mod stats;
pub mod strace;
pub mod uac;
