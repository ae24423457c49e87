//! The crate's error type: which socket operation failed and the kernel's reason, or a
//! malformed notification.
//!
//! It never logs or counts; callers decide what an error means for them.

use std::io;

use crate::notification::DecodeError;

/// Errors of the SCTP socket layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or socket option failed.
    #[error("SCTP {op} failed: {source}")]
    Socket {
        /// The operation, e.g. `"bind"` or `"setsockopt(SCTP_EVENT)"`.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The kernel sent a notification this crate could not decode.
    #[error("malformed SCTP notification")]
    Notification(#[from] DecodeError),
    /// The kernel's answer lacked something this crate relies on (e.g. data without
    /// `SCTP_RCVINFO`); only that one message is affected.
    #[error("unexpected SCTP socket behaviour: {0}")]
    Protocol(&'static str),
    /// The caller passed something unusable (e.g. no address to bind).
    #[error("invalid argument: {0}")]
    InvalidInput(&'static str),
}

impl Error {
    pub(crate) fn socket(op: &'static str, source: io::Error) -> Self {
        Self::Socket { op, source }
    }

    /// The [`io::ErrorKind`] of a failed operation (`InvalidData` for a malformed
    /// notification, `InvalidInput` for a bad argument).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Socket { source, .. } => source.kind(),
            Self::Notification(_) | Self::Protocol(_) => io::ErrorKind::InvalidData,
            Self::InvalidInput(_) => io::ErrorKind::InvalidInput,
        }
    }

    /// Whether the operation failed only because it would have had to wait
    /// (`try_send` with a full send buffer).
    pub fn is_would_block(&self) -> bool {
        self.kind() == io::ErrorKind::WouldBlock
    }

    /// The OS error number, when the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Socket { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Socket { source, .. } => source,
            other => io::Error::new(other.kind(), other),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
