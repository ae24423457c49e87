//! The kernel's SCTP settings that shape the endpoint's behaviour, read from
//! `/proc/sys/net/sctp` (as the network namespace of the calling thread sees them), typed.
//!
//! Read-only: it never writes a sysctl, and it never decides anything; the daemon reports
//! what it finds.

use std::{fs, io};

/// Where [`sndbuf_policy`] reads.
pub const SNDBUF_POLICY_PATH: &str = "/proc/sys/net/sctp/sndbuf_policy";

/// How the kernel charges a one-to-many socket's send buffer (`net.sctp.sndbuf_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SndbufPolicy {
    /// 0, Linux's default: one send buffer (`SO_SNDBUF`) for the whole socket, shared by all
    /// its associations. Data that one association cannot send (an INIT nobody answers, a
    /// peer that advertises a zero window) takes room from all the others; once the buffer
    /// is full every send on the socket fails with EAGAIN. The endpoint bounds what it lets
    /// into the kernel for associations being set up for this reason.
    Shared,
    /// 1: each association is charged on its own, up to `SO_SNDBUF` each; one stuck
    /// association no longer blocks the others (but the socket may then use up to
    /// `SO_SNDBUF` per association).
    PerAssociation,
    /// A value this version does not know.
    Other(i64),
}

impl SndbufPolicy {
    /// Reads the sysctl's text (`"0\n"`).
    ///
    /// # Errors
    /// [`SysctlError::Parse`] when it is not an integer.
    pub fn parse(text: &str) -> Result<SndbufPolicy, SysctlError> {
        let v: i64 = text.trim().parse().map_err(|_| SysctlError::Parse {
            path: SNDBUF_POLICY_PATH,
            text: text.chars().take(32).collect(),
        })?;
        Ok(match v {
            0 => SndbufPolicy::Shared,
            1 => SndbufPolicy::PerAssociation,
            other => SndbufPolicy::Other(other),
        })
    }

    /// Whether all associations of a socket share one send buffer.
    pub fn is_shared(self) -> bool {
        self == SndbufPolicy::Shared
    }
}

/// A sysctl that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysctlError {
    /// The file could not be read (no SCTP module loaded: it does not exist).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file did not hold an integer.
    #[error("{path}: not an integer: {text:?}")]
    Parse {
        /// The file.
        path: &'static str,
        /// The start of what it held.
        text: String,
    },
}

/// `net.sctp.sndbuf_policy` for the calling thread's network namespace.
///
/// # Errors
/// [`SysctlError`]: the file is missing (SCTP not loaded) or unreadable, or holds no integer.
pub fn sndbuf_policy() -> Result<SndbufPolicy, SysctlError> {
    let text = fs::read_to_string(SNDBUF_POLICY_PATH).map_err(|source| SysctlError::Read {
        path: SNDBUF_POLICY_PATH,
        source,
    })?;
    SndbufPolicy::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_map_to_their_meaning() {
        assert_eq!(SndbufPolicy::parse("0\n").unwrap(), SndbufPolicy::Shared);
        assert_eq!(
            SndbufPolicy::parse(" 1 ").unwrap(),
            SndbufPolicy::PerAssociation
        );
        assert_eq!(SndbufPolicy::parse("7").unwrap(), SndbufPolicy::Other(7));
        assert!(SndbufPolicy::Shared.is_shared());
        assert!(!SndbufPolicy::PerAssociation.is_shared());
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        for bad in ["", "x", "1 2", "99999999999999999999999"] {
            let e = SndbufPolicy::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with(SNDBUF_POLICY_PATH),
                "{bad:?}: {e}"
            );
        }
        let long = "y".repeat(1000);
        match SndbufPolicy::parse(&long) {
            Err(SysctlError::Parse { text, .. }) => assert_eq!(text.len(), 32),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_reader_reports_a_missing_file_or_the_value() {
        // The development host has no SCTP (no file); a host with SCTP has a value.
        match sndbuf_policy() {
            Ok(_) => assert!(std::path::Path::new(SNDBUF_POLICY_PATH).exists()),
            Err(SysctlError::Read { path, source }) => {
                assert_eq!(path, SNDBUF_POLICY_PATH);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            Err(e) => panic!("{e}"),
        }
    }
}
