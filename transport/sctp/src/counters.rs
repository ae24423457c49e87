//! The transport's counters, under Kamailio's names, plus what Kamailio does not count
//! (dropped messages by reason, received and sent). Lock-free: the transport bumps them,
//! views read a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a received message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// Larger than the configured maximum message size.
    TooLarge,
    /// Its association ended before the message was complete.
    Incomplete,
    /// A notification the transport could not decode.
    BadNotification,
    /// A message from an association rejected by `sctp_max_assocs`.
    Rejected,
    /// Still unfinished at the partial-message age limit (its association is aborted).
    PartialTimeout,
    /// Given up because unfinished messages would have held more than their total cap (its
    /// association is aborted).
    PartialBytes,
}

impl DropCause {
    /// Every reason, for exporting zeros too.
    pub const ALL: [DropCause; 6] = [
        DropCause::TooLarge,
        DropCause::Incomplete,
        DropCause::BadNotification,
        DropCause::Rejected,
        DropCause::PartialTimeout,
        DropCause::PartialBytes,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::TooLarge => "too_large",
            DropCause::Incomplete => "incomplete",
            DropCause::BadNotification => "bad_notification",
            DropCause::Rejected => "rejected_association",
            DropCause::PartialTimeout => "partial_timeout",
            DropCause::PartialBytes => "partial_bytes",
        }
    }
}

/// Why a message to send was dropped by the endpoint (it never reached the kernel, or was
/// held back while its association was being set up). Each is also a `send_failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendDropCause {
    /// Its destination already had the most messages allowed waiting.
    QueueMessages,
    /// Its destination already had the most bytes allowed waiting.
    QueueBytes,
    /// All destinations together already had the most bytes allowed waiting.
    TotalBytes,
    /// The most destinations allowed already had messages waiting.
    Destinations,
    /// It would have started one more association setup than allowed.
    Setups,
    /// It was held while its association was being set up, and the setup failed.
    SetupFailed,
    /// It was still waiting in a send queue when the endpoint shut down.
    Shutdown,
    /// It was held for an association whose peer took no data for the stall limit (or that
    /// was the longest stalled of too many); the association was aborted.
    Stalled,
}

impl SendDropCause {
    /// Every reason, for exporting zeros too.
    pub const ALL: [SendDropCause; 8] = [
        SendDropCause::QueueMessages,
        SendDropCause::QueueBytes,
        SendDropCause::TotalBytes,
        SendDropCause::Destinations,
        SendDropCause::Setups,
        SendDropCause::SetupFailed,
        SendDropCause::Shutdown,
        SendDropCause::Stalled,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SendDropCause::QueueMessages => "queue_messages",
            SendDropCause::QueueBytes => "queue_bytes",
            SendDropCause::TotalBytes => "total_bytes",
            SendDropCause::Destinations => "destinations",
            SendDropCause::Setups => "setups",
            SendDropCause::SetupFailed => "setup_failed",
            SendDropCause::Shutdown => "shutdown",
            SendDropCause::Stalled => "stalled",
        }
    }
}

/// One counter of [`Counters`], as the endpoint core names it in an
/// [`Action::Count`](crate::endpoint_core::Action::Count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `established`.
    Established,
    /// `connect_failed`.
    ConnectFailed,
    /// `local_reject`.
    LocalReject,
    /// `remote_shutdown`.
    RemoteShutdown,
    /// `assoc_shutdown`.
    AssocShutdown,
    /// `comm_lost`.
    CommLost,
    /// `sendq_full`.
    SendqFull,
    /// `send_failed`.
    SendFailed,
    /// `send_force_retry`.
    SendForceRetry,
    /// A dropped received message, by reason.
    Dropped(DropCause),
    /// A message to send dropped by the endpoint, by reason.
    SendDropped(SendDropCause),
}

/// Kamailio's sctp counters (`kamctl stats sctp`), same names.
#[derive(Debug, Default)]
pub struct Counters {
    /// Associations that came up (COMM_UP).
    pub established: AtomicU64,
    /// Associations that could not be set up (CANT_STR_ASSOC).
    pub connect_failed: AtomicU64,
    /// Associations aborted for `sctp_max_assocs`.
    pub local_reject: AtomicU64,
    /// SHUTDOWN received from peers.
    pub remote_shutdown: AtomicU64,
    /// Associations shut down (SHUTDOWN_COMP).
    pub assoc_shutdown: AtomicU64,
    /// Associations lost (COMM_LOST).
    pub comm_lost: AtomicU64,
    /// Sends that found the socket's send buffer full (EAGAIN).
    pub sendq_full: AtomicU64,
    /// Sends that failed for good.
    pub send_failed: AtomicU64,
    /// Resends after SEND_FAILED (`sctp_send_retries`).
    pub send_force_retry: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_incomplete: AtomicU64,
    dropped_bad_notification: AtomicU64,
    dropped_rejected: AtomicU64,
    dropped_partial_timeout: AtomicU64,
    dropped_partial_bytes: AtomicU64,
    send_dropped: [AtomicU64; 8],
}

/// A point-in-time copy of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // same fields as Counters
pub struct CounterSnapshot {
    pub established: u64,
    pub connect_failed: u64,
    pub local_reject: u64,
    pub remote_shutdown: u64,
    pub assoc_shutdown: u64,
    pub comm_lost: u64,
    pub sendq_full: u64,
    pub send_failed: u64,
    pub send_force_retry: u64,
    /// Dropped received messages, by reason.
    pub dropped_too_large: u64,
    /// Messages cut short by their association's end.
    pub dropped_incomplete: u64,
    /// Dropped notifications.
    pub dropped_bad_notification: u64,
    /// Dropped messages of rejected associations.
    pub dropped_rejected: u64,
    /// Messages given up unfinished at the age limit.
    pub dropped_partial_timeout: u64,
    /// Messages given up unfinished at the total cap on partial messages.
    pub dropped_partial_bytes: u64,
    /// Messages to send dropped by the endpoint, indexed like [`SendDropCause::ALL`]; read
    /// with [`CounterSnapshot::send_dropped`].
    pub send_dropped: [u64; 8],
}

impl Counters {
    /// Adds one.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn count(&self, counter: Counter) {
        let c = match counter {
            Counter::Established => &self.established,
            Counter::ConnectFailed => &self.connect_failed,
            Counter::LocalReject => &self.local_reject,
            Counter::RemoteShutdown => &self.remote_shutdown,
            Counter::AssocShutdown => &self.assoc_shutdown,
            Counter::CommLost => &self.comm_lost,
            Counter::SendqFull => &self.sendq_full,
            Counter::SendFailed => &self.send_failed,
            Counter::SendForceRetry => &self.send_force_retry,
            Counter::Dropped(reason) => return self.dropped(reason),
            Counter::SendDropped(reason) => &self.send_dropped[send_drop_index(reason)],
        };
        Counters::bump(c);
    }

    /// Counts a dropped message.
    pub fn dropped(&self, reason: DropCause) {
        Counters::bump(match reason {
            DropCause::TooLarge => &self.dropped_too_large,
            DropCause::Incomplete => &self.dropped_incomplete,
            DropCause::BadNotification => &self.dropped_bad_notification,
            DropCause::Rejected => &self.dropped_rejected,
            DropCause::PartialTimeout => &self.dropped_partial_timeout,
            DropCause::PartialBytes => &self.dropped_partial_bytes,
        });
    }

    /// A consistent-enough copy (each counter read once, relaxed).
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            established: r(&self.established),
            connect_failed: r(&self.connect_failed),
            local_reject: r(&self.local_reject),
            remote_shutdown: r(&self.remote_shutdown),
            assoc_shutdown: r(&self.assoc_shutdown),
            comm_lost: r(&self.comm_lost),
            sendq_full: r(&self.sendq_full),
            send_failed: r(&self.send_failed),
            send_force_retry: r(&self.send_force_retry),
            dropped_too_large: r(&self.dropped_too_large),
            dropped_incomplete: r(&self.dropped_incomplete),
            dropped_bad_notification: r(&self.dropped_bad_notification),
            dropped_rejected: r(&self.dropped_rejected),
            dropped_partial_timeout: r(&self.dropped_partial_timeout),
            dropped_partial_bytes: r(&self.dropped_partial_bytes),
            send_dropped: std::array::from_fn(|i| self.send_dropped.get(i).map_or(0, r)),
        }
    }
}

impl CounterSnapshot {
    /// `(Kamailio name, value)` for the nine event counters.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("established", self.established),
            ("connect_failed", self.connect_failed),
            ("local_reject", self.local_reject),
            ("remote_shutdown", self.remote_shutdown),
            ("assoc_shutdown", self.assoc_shutdown),
            ("comm_lost", self.comm_lost),
            ("sendq_full", self.sendq_full),
            ("send_failed", self.send_failed),
            ("send_force_retry", self.send_force_retry),
        ]
    }

    /// Messages to send dropped by the endpoint, by reason.
    pub fn send_dropped(&self, reason: SendDropCause) -> u64 {
        self.send_dropped[send_drop_index(reason)]
    }

    /// Dropped messages by reason.
    pub fn dropped(&self, reason: DropCause) -> u64 {
        match reason {
            DropCause::TooLarge => self.dropped_too_large,
            DropCause::Incomplete => self.dropped_incomplete,
            DropCause::BadNotification => self.dropped_bad_notification,
            DropCause::Rejected => self.dropped_rejected,
            DropCause::PartialTimeout => self.dropped_partial_timeout,
            DropCause::PartialBytes => self.dropped_partial_bytes,
        }
    }
}

/// The position of `reason` in [`SendDropCause::ALL`] (and in the counter arrays).
const fn send_drop_index(reason: SendDropCause) -> usize {
    match reason {
        SendDropCause::QueueMessages => 0,
        SendDropCause::QueueBytes => 1,
        SendDropCause::TotalBytes => 2,
        SendDropCause::Destinations => 3,
        SendDropCause::Setups => 4,
        SendDropCause::SetupFailed => 5,
        SendDropCause::Shutdown => 6,
        SendDropCause::Stalled => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sees_bumps_under_kamailio_names() {
        let c = Counters::default();
        Counters::bump(&c.established);
        Counters::bump(&c.established);
        Counters::bump(&c.send_force_retry);
        c.dropped(DropCause::TooLarge);
        let s = c.snapshot();
        assert_eq!(s.named()[0], ("established", 2));
        assert_eq!(s.named()[8], ("send_force_retry", 1));
        assert_eq!(s.dropped(DropCause::TooLarge), 1);
        assert_eq!(s.dropped(DropCause::Rejected), 0);
    }

    #[test]
    fn every_drop_cause_has_its_own_counter_and_label() {
        let c = Counters::default();
        for (i, reason) in DropCause::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                c.count(Counter::Dropped(reason));
            }
        }
        let s = c.snapshot();
        for (i, reason) in DropCause::ALL.into_iter().enumerate() {
            assert_eq!(s.dropped(reason), i as u64 + 1, "{}", reason.as_str());
        }
        let names: std::collections::HashSet<&str> =
            DropCause::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropCause::ALL.len());
        assert!(names.contains("partial_timeout") && names.contains("partial_bytes"));
    }

    #[test]
    fn count_reaches_the_named_counter_only() {
        let all = [
            Counter::Established,
            Counter::ConnectFailed,
            Counter::LocalReject,
            Counter::RemoteShutdown,
            Counter::AssocShutdown,
            Counter::CommLost,
            Counter::SendqFull,
            Counter::SendFailed,
            Counter::SendForceRetry,
        ];
        for (i, counter) in all.into_iter().enumerate() {
            let c = Counters::default();
            c.count(counter);
            let named = c.snapshot().named();
            for (j, (name, v)) in named.into_iter().enumerate() {
                assert_eq!(v, u64::from(i == j), "{counter:?} moved {name}");
            }
        }
        let c = Counters::default();
        c.count(Counter::Dropped(DropCause::Rejected));
        let s = c.snapshot();
        assert_eq!(s.dropped(DropCause::Rejected), 1);
        assert_eq!(s.dropped(DropCause::TooLarge), 0);
        assert!(s.named().iter().all(|(_, v)| *v == 0));
    }

    #[test]
    fn send_drops_are_counted_per_reason() {
        let c = Counters::default();
        for (i, reason) in SendDropCause::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                c.count(Counter::SendDropped(reason));
            }
        }
        let s = c.snapshot();
        for (i, reason) in SendDropCause::ALL.into_iter().enumerate() {
            assert_eq!(s.send_dropped(reason), i as u64 + 1, "{}", reason.as_str());
            assert_eq!(send_drop_index(reason), i);
        }
        assert!(s.named().iter().all(|(_, v)| *v == 0));
        let names: std::collections::HashSet<&str> =
            SendDropCause::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), SendDropCause::ALL.len());
    }
}
