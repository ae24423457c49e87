//! When the relay sheds new work: a hysteresis on how many received messages wait to be
//! relayed (the relay loop's backlog, i.e. how far it lags behind its inputs). Past
//! [`Overload::high`] waiting messages the relay is overloaded and answers new requests (an
//! `INVITE` or other request outside a dialog) with `503` + `Retry-After` instead of
//! forwarding them, while responses, `ACK`, `CANCEL`, in-dialog requests and retransmissions
//! of transactions it already forwards keep going; at [`Overload::low`] or fewer it takes new
//! work again. Pure: the daemon feeds it the backlog it measures on each wake-up.

/// The shedding state and its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// Waiting messages at which shedding starts.
    pub high: usize,
    /// Waiting messages at which it stops (below `high`, so it does not flap).
    pub low: usize,
    /// The `Retry-After` of the 503s, seconds.
    pub retry_after: u32,
    on: bool,
}

impl Overload {
    /// Not shedding, with these thresholds (`low` is clamped below `high`).
    pub const fn new(high: usize, low: usize, retry_after: u32) -> Self {
        let low = if low < high {
            low
        } else {
            high.saturating_sub(1)
        };
        Self {
            high,
            low,
            retry_after,
            on: false,
        }
    }

    /// Takes the backlog measured now; returns the new state when it changed (`Some(true)`:
    /// shedding starts).
    pub fn update(&mut self, backlog: usize) -> Option<bool> {
        let next = if self.on {
            backlog > self.low
        } else {
            backlog >= self.high
        };
        (next != self.on).then(|| {
            self.on = next;
            next
        })
    }

    /// Whether new work is shed now.
    pub const fn shedding(&self) -> bool {
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_starts_at_high_and_stops_at_low_without_flapping_between() {
        let mut o = Overload::new(100, 20, 5);
        assert_eq!(o.update(99), None);
        assert!(!o.shedding());
        assert_eq!(o.update(100), Some(true));
        assert_eq!(o.update(60), None, "between the thresholds: still shedding");
        assert_eq!(o.update(150), None);
        assert_eq!(o.update(20), Some(false));
        assert_eq!(
            o.update(60),
            None,
            "between the thresholds: still taking work"
        );
        assert!(!o.shedding());
    }

    #[test]
    fn a_low_threshold_at_or_over_high_is_clamped() {
        let mut o = Overload::new(10, 50, 1);
        assert_eq!(o.low, 9);
        assert_eq!(o.update(10), Some(true));
        assert_eq!(o.update(9), Some(false));
    }
}
