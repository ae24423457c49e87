//! Which transactions become spans: the always-keep rules, the ratio for the rest, and the
//! token bucket that caps spans per second.
//!
//! Pure: no clock, no randomness of its own. The caller hands in `now` and a uniform sample,
//! so the decisions are tested without either.

use std::time::{Duration, Instant};

use sipsctp_correlate::{Joined, Outcome, Verdict};

/// Why a transaction is kept whatever the ratio says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Always {
    /// The kernel retransmitted for it, or events touched one of its legs.
    Kernel,
    /// No final response in time.
    Timeout,
    /// 408, 5xx, or the request could not be sent.
    Error,
    /// The request was retransmitted over SIP.
    SipRetransmission,
    /// The first response came at or after the slow threshold.
    Slow,
}

/// Whether a final status makes the spans' status Error.
pub(crate) const fn is_error_status(code: u16) -> bool {
    code == 408 || (code >= 500 && code <= 599)
}

/// Whether `j` is always kept, and why (the first reason that applies).
pub(crate) fn always_keep(j: &Joined, slow_threshold: Duration) -> Option<Always> {
    let tx = &j.tx;
    if j.verdict == Verdict::Yes || !j.request.is_empty() || !j.response.is_empty() {
        return Some(Always::Kernel);
    }
    match tx.outcome {
        Outcome::Expired => return Some(Always::Timeout),
        Outcome::SendFailed => return Some(Always::Error),
        Outcome::Final(code) if is_error_status(code) => return Some(Always::Error),
        Outcome::Final(_) | Outcome::Forwarded => {}
    }
    if tx.sip_retransmissions > 0 {
        return Some(Always::SipRetransmission);
    }
    let first = tx.first_response_at?;
    (first.saturating_sub(tx.forwarded_at) >= slow_threshold).then_some(Always::Slow)
}

/// Whether the ratio keeps a transaction; `uniform` is a sample from `[0, 1)`.
pub(crate) fn ratio_keeps(ratio: f64, uniform: f64) -> bool {
    uniform < ratio
}

/// A token bucket: `rate` tokens a second, at most `rate` saved (a one-second burst).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate);
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes `n` tokens at `now` if there are that many (all or none).
    pub(crate) fn take(&mut self, now: Instant, n: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::span::tests::{joined, note_t3};

    #[test]
    fn plain_fast_success_is_left_to_the_ratio() {
        let j = joined();
        assert_eq!(always_keep(&j, Duration::from_secs(1)), None);
        assert!(!ratio_keeps(0.0, 0.0));
        assert!(ratio_keeps(1.0, 0.999_999));
        assert!(ratio_keeps(0.01, 0.009));
        assert!(!ratio_keeps(0.01, 0.01));
    }

    #[test]
    fn always_keep_rules() {
        let slow = Duration::from_secs(1);
        let mut j = joined();
        j.verdict = Verdict::Yes;
        assert_eq!(always_keep(&j, slow), Some(Always::Kernel));

        let mut j = joined();
        j.response.push(note_t3(j.tx.ended_at));
        assert_eq!(always_keep(&j, slow), Some(Always::Kernel));

        let mut j = joined();
        j.tx.outcome = Outcome::Expired;
        assert_eq!(always_keep(&j, slow), Some(Always::Timeout));

        let mut j = joined();
        j.tx.outcome = Outcome::SendFailed;
        assert_eq!(always_keep(&j, slow), Some(Always::Error));

        for (code, keep) in [
            (408, true),
            (500, true),
            (503, true),
            (599, true),
            (404, false),
        ] {
            let mut j = joined();
            j.tx.outcome = Outcome::Final(code);
            assert_eq!(always_keep(&j, slow).is_some(), keep, "{code}");
        }

        let mut j = joined();
        j.tx.sip_retransmissions = 1;
        assert_eq!(always_keep(&j, slow), Some(Always::SipRetransmission));
    }

    #[test]
    fn slow_is_measured_from_the_forward_to_the_first_response() {
        let mut j = joined();
        let fwd = j.tx.forwarded_at;
        j.tx.first_response_at = Some(fwd + Duration::from_millis(999));
        assert_eq!(always_keep(&j, Duration::from_secs(1)), None);
        j.tx.first_response_at = Some(fwd + Duration::from_secs(1));
        assert_eq!(always_keep(&j, Duration::from_secs(1)), Some(Always::Slow));
        // Received long before the forward: the relay's own queueing is not the peer's delay.
        j.tx.received_at = Duration::ZERO;
        j.tx.first_response_at = Some(fwd + Duration::from_millis(10));
        assert_eq!(always_keep(&j, Duration::from_secs(1)), None);
    }

    #[test]
    fn token_bucket_caps_per_second_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, t0);
        assert!(b.take(t0, 2));
        assert!(b.take(t0, 2));
        assert!(!b.take(t0, 1), "burst is one second's worth");
        // A pair needs two tokens: one is not enough, and none is taken.
        let half = t0 + Duration::from_millis(250);
        assert!(!b.take(half, 2));
        assert!(b.take(half, 1));
        // A long idle time refills to the cap, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..4 {
            assert!(b.take(later, 1));
        }
        assert!(!b.take(later, 1));
        // A clock that goes backwards takes nothing and adds nothing.
        assert!(!b.take(t0, 1));
    }
}
