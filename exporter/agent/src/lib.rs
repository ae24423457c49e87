//! The exporter agent: sipsctp's kernel eyes and what it makes of them.
//!
//! - [`kernel`]: the eBPF probes on kernel SCTP (or, without them, `/proc/net/sctp/snmp` and
//!   per-association polling), the kernel metrics and the recent-events view.
//! - [`correlation`]: the correlator task, which joins kernel events to the SIP transactions
//!   the relay reports ([`sipsctp_correlate`]) and hands the result to
//! - [`metrics`] (Prometheus), [`recent`] (`/transactions/recent`) and [`otlp`] (OTLP spans,
//!   exported from a bounded queue of its own).
//! - [`peers`]: the bounded peer names of labels and spans; [`clock`]: `CLOCK_MONOTONIC`.
//!
//! The relay daemon uses it as a library; it never depends on the relay (`transport/*`).

pub mod access;
pub mod clock;
pub mod correlation;
pub mod kernel;
pub mod metrics;
pub mod otlp;
pub mod peers;
pub mod recent;
pub mod sections;
