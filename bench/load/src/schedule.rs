//! The open-loop schedule: rate steps, and which transactions are due at a given time.
//!
//! Step `k` runs at `rate_k` per second for `secs` seconds and offers
//! `round(rate_k * secs)` transactions; the `i`-th is due at `start_k + i / rate_k`.
//! [`Scheduler::next_due`] hands them out one at a time as the clock passes their due time,
//! whatever is still outstanding (open loop), so a caller that wakes up every millisecond
//! (or later, after a stall) starts everything that has become due since. Pure: time is a
//! number of microseconds since the start of the run.

/// One rate step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Transactions (calls or OPTIONS) per second; 0 is a pause.
    pub rate: f64,
    /// Length in microseconds.
    pub len_us: u64,
    /// Start, microseconds since the start of the run.
    pub start_us: u64,
    /// Transactions offered in the step.
    pub offered: u64,
}

impl Step {
    /// Due time of the `i`-th transaction of the step.
    pub fn due_us(&self, i: u64) -> u64 {
        self.start_us + (i as f64 * 1e6 / self.rate) as u64
    }

    /// End of the step.
    pub const fn end_us(&self) -> u64 {
        self.start_us + self.len_us
    }
}

/// Builds the steps from rates and a step length.
pub fn steps(rates: &[f64], step_secs: f64) -> Vec<Step> {
    let len_us = (step_secs * 1e6).round() as u64;
    rates
        .iter()
        .enumerate()
        .map(|(k, &rate)| Step {
            rate,
            len_us,
            start_us: k as u64 * len_us,
            offered: (rate * step_secs).round() as u64,
        })
        .collect()
}

/// A transaction that has become due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Index of its step.
    pub step: usize,
    /// When it was due (µs since the start): the send is late by `now - due_us`.
    pub due_us: u64,
}

/// Hands out due transactions in order.
#[derive(Debug, Clone)]
pub struct Scheduler {
    steps: Vec<Step>,
    step: usize,
    started_in_step: u64,
}

impl Scheduler {
    /// A scheduler over `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            step: 0,
            started_in_step: 0,
        }
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The next transaction due at or before `now_us`, if any.
    pub fn next_due(&mut self, now_us: u64) -> Option<Due> {
        loop {
            let s = self.steps.get(self.step)?;
            if self.started_in_step < s.offered {
                let due_us = s.due_us(self.started_in_step);
                if due_us > now_us {
                    return None;
                }
                self.started_in_step += 1;
                return Some(Due {
                    step: self.step,
                    due_us,
                });
            }
            if now_us < s.end_us() {
                return None;
            }
            self.step += 1;
            self.started_in_step = 0;
        }
    }

    /// Whether every step is over and every transaction was handed out.
    pub fn finished(&self, now_us: u64) -> bool {
        match self.steps.get(self.step) {
            None => true,
            Some(s) => {
                self.step + 1 == self.steps.len()
                    && self.started_in_step == s.offered
                    && now_us >= s.end_us()
            }
        }
    }

    /// The end of the last step.
    pub fn end_us(&self) -> u64 {
        self.steps.last().map_or(0, Step::end_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler, now: u64) -> Vec<Due> {
        std::iter::from_fn(|| s.next_due(now)).collect()
    }

    #[test]
    fn steps_offer_rate_times_length() {
        let st = steps(&[100.0, 0.0, 2.5], 2.0);
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].offered, 200);
        assert_eq!(st[1].offered, 0);
        assert_eq!(st[2].offered, 5);
        assert_eq!(st[2].start_us, 4_000_000);
        assert_eq!(st[2].due_us(1), 4_400_000);
    }

    #[test]
    fn hands_out_what_is_due_open_loop() {
        let mut s = Scheduler::new(steps(&[1000.0, 2000.0], 1.0));
        // The first is due at 0.
        assert_eq!(drain(&mut s, 0), [Due { step: 0, due_us: 0 }]);
        // 1 ms later one more; a stall of 10 ms gives the 10 that became due.
        assert_eq!(drain(&mut s, 1_000).len(), 1);
        let late = drain(&mut s, 11_000);
        assert_eq!(late.len(), 10);
        assert_eq!(late[0].due_us, 2_000);
        assert_eq!(late[9].due_us, 11_000);
        // The whole first step, then the second at twice the rate.
        assert_eq!(drain(&mut s, 999_999).len(), 1000 - 12);
        assert_eq!(
            drain(&mut s, 1_000_000),
            [Due {
                step: 1,
                due_us: 1_000_000
            }]
        );
        assert!(!s.finished(1_500_000));
        let rest = drain(&mut s, 5_000_000);
        assert_eq!(rest.len(), 1999);
        assert!(rest.iter().all(|d| d.step == 1));
        assert!(s.finished(5_000_000));
        assert_eq!(s.next_due(u64::MAX), None);
    }

    #[test]
    fn a_pause_and_a_late_start_skip_nothing() {
        let mut s = Scheduler::new(steps(&[10.0, 0.0, 10.0], 1.0));
        // Woken only after all steps ended: every transaction of every step comes out, in
        // order, each with its own step.
        let all = drain(&mut s, 10_000_000);
        assert_eq!(all.len(), 20);
        assert_eq!(all.iter().filter(|d| d.step == 0).count(), 10);
        assert_eq!(all.iter().filter(|d| d.step == 2).count(), 10);
        assert!(all.windows(2).all(|w| w[0].due_us < w[1].due_us));
        assert!(s.finished(10_000_000));
        assert_eq!(s.end_us(), 3_000_000);
    }

    #[test]
    fn not_finished_before_the_last_step_ends() {
        let mut s = Scheduler::new(steps(&[1.0], 1.0));
        assert_eq!(drain(&mut s, 0).len(), 1);
        assert!(!s.finished(999_999));
        assert!(s.finished(1_000_000));
        assert!(Scheduler::new(vec![]).finished(0));
    }
}
