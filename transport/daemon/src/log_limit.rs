//! Thinning of log lines that a load or a peer can repeat once per message: a relay that
//! fails for a destination, an association that cannot start. The first line of a kind is
//! logged, then at most one per interval, carrying how many were held back since the previous
//! one. The metrics stay exact; only the log is thinned. Pure: the caller passes the time.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// One window per key: when its line was last logged and how many were held back since.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    max_keys: usize,
    keys: HashMap<K, (Instant, u64)>,
}

impl<K: Hash + Eq> LogLimit<K> {
    /// At most one line per key per `interval`, for at most `max_keys` keys at once (more are
    /// forgotten once their interval has passed; if all are recent, all are forgotten: a few
    /// extra lines rather than unbounded memory).
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        LogLimit {
            interval,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
        }
    }

    /// Whether to log this occurrence of `key` at `now`: `Some(held_back)` with the number of
    /// occurrences not logged since its previous line, or `None` to hold this one back.
    pub fn check(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some((last, held)) = self.keys.get_mut(&key) {
            if now.saturating_duration_since(*last) < self.interval {
                *held += 1;
                return None;
            }
            let n = *held;
            *last = now;
            *held = 0;
            return Some(n);
        }
        if self.keys.len() >= self.max_keys {
            let interval = self.interval;
            self.keys
                .retain(|_, (last, _)| now.saturating_duration_since(*last) < interval);
            if self.keys.len() >= self.max_keys {
                self.keys.clear();
            }
        }
        self.keys.insert(key, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_is_logged_repeats_within_the_interval_are_held_back_and_counted() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(S, 16);
        assert_eq!(l.check("a", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(l.check("a", t0 + Duration::from_millis(100 * i)), None);
        }
        // Another key has its own window.
        assert_eq!(l.check("b", t0 + Duration::from_millis(500)), Some(0));
        // The next line of "a" after the interval says how many were held back.
        assert_eq!(l.check("a", t0 + S), Some(5));
        assert_eq!(l.check("a", t0 + S + Duration::from_millis(1)), None);
        assert_eq!(l.check("a", t0 + 3 * S), Some(1));
        assert_eq!(l.check("a", t0 + 5 * S), Some(0));
    }

    #[test]
    fn keys_are_bounded_old_ones_go_first() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(S, 2);
        assert_eq!(l.check(1, t0), Some(0));
        assert_eq!(l.check(2, t0 + Duration::from_millis(900)), Some(0));
        // Full: key 1's interval is over at t0 + 1 s, so it goes; key 2 stays held back.
        assert_eq!(l.check(3, t0 + S), Some(0));
        assert_eq!(l.check(2, t0 + S), None);
        assert_eq!(l.keys.len(), 2);
        // Full and every key recent: all are forgotten rather than growing.
        assert_eq!(l.check(4, t0 + S), Some(0));
        assert_eq!(l.keys.len(), 1);
        assert_eq!(l.check(2, t0 + S), Some(0), "forgotten: logged again");
    }

    #[test]
    fn a_clock_that_goes_back_does_not_panic_and_holds_back() {
        let t0 = Instant::now() + S;
        let mut l = LogLimit::new(S, 4);
        assert_eq!(l.check("a", t0), Some(0));
        assert_eq!(l.check("a", t0 - Duration::from_millis(500)), None);
    }
}
