//! Size limits the parser enforces before it trusts a message ([`Limits`]).
//!
//! Plain configuration data: no parsing and no I/O here.

/// Bounds on what the parser accepts; anything larger is an error, never a truncation.
///
/// The defaults suit a relay: 65535 bytes per message (the largest UDP payload, and what
/// Kamailio's SCTP `sctp_socket_rcvbuf`-sized reads handle comfortably), 100 headers, and
/// 8192 bytes per logical header line (continuation lines included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (leading CRLFs, head and body), in bytes.
    pub max_message_size: usize,
    /// Most header fields (lines, not comma-separated values).
    pub max_headers: usize,
    /// Longest start line or logical header line (with its continuation lines), in bytes,
    /// excluding the final CRLF.
    pub max_line_length: usize,
}

impl Limits {
    /// The default limits: 65535 bytes, 100 headers, 8192-byte lines.
    pub const DEFAULT: Self = Self {
        max_message_size: 65_535,
        max_headers: 100,
        max_line_length: 8192,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
