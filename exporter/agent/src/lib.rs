//! The exporter agent: sipsctp's kernel eyes and what it makes of them.
//!
//! - [`kernel`]: the eBPF probes on kernel SCTP (or, without them, `/proc/net/sctp/snmp` and
//!   per-association polling), the kernel metrics and the recent-events view.
//! - [`otlp`]: joined transactions as OTLP spans, exported from a bounded queue of its own.
//!
//! The relay daemon uses it as a library; it never depends on the relay (`transport/*`).

pub mod kernel;
pub mod otlp;
