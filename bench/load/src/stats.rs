//! Per-step accounting of the UAC: transactions offered, started, completed and failed by
//! kind, SIP retransmissions, scheduling lag, and HDR histograms of latencies; their JSON
//! form and a short human table.
//!
//! A transaction (a call or an OPTIONS) belongs to the step in which it was started, and
//! ends exactly once, completed or failed with one [`FailKind`]; so after the drain
//! `started == completed + failed` holds for every step.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Why a transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// No final response in time (Timer B / F, `--timeout-ms`), or still open at the end.
    Timeout,
    /// A 3xx final response.
    Status3xx,
    /// A 4xx final response.
    Status4xx,
    /// A 5xx final response.
    Status5xx,
    /// A 6xx final response.
    Status6xx,
    /// The transport refused a request (or the connection was gone).
    SendError,
    /// A response to it could not be read.
    BadResponse,
}

impl FailKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 7] = [
        Self::Timeout,
        Self::Status3xx,
        Self::Status4xx,
        Self::Status5xx,
        Self::Status6xx,
        Self::SendError,
        Self::BadResponse,
    ];

    /// The name in the JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Status3xx => "status_3xx",
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::Status6xx => "status_6xx",
            Self::SendError => "send_error",
            Self::BadResponse => "bad_response",
        }
    }

    /// The kind of a non-2xx final status (300-699).
    pub const fn of_status(status: u16) -> Self {
        match status / 100 {
            3 => Self::Status3xx,
            4 => Self::Status4xx,
            5 => Self::Status5xx,
            _ => Self::Status6xx,
        }
    }
}

/// Highest latency recorded, µs (larger values are clamped): 1 hour.
const MAX_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    // 3 significant digits over 1 µs .. 1 h; the bounds are constants that are valid.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| unreachable!())
}

/// What happened to the transactions of one step.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Offered rate, per second.
    pub rate: f64,
    /// Step length, seconds.
    pub secs: f64,
    /// Transactions the schedule offered.
    pub offered: u64,
    /// Transactions started (first request handed to the transport).
    pub started: u64,
    /// Transactions completed (a call: 200 to INVITE, ACK, 200 to BYE; OPTIONS: 200).
    pub completed: u64,
    /// Failed transactions by kind ([`FailKind::ALL`] order).
    pub failed: [u64; 7],
    /// SIP retransmissions of requests (Timer A / E), over UDP only.
    pub retransmissions: u64,
    /// Responses received again for a transaction that already had them (retransmitted by
    /// the UAS or a proxy), answered with the ACK again for a 2xx to INVITE.
    pub duplicate_responses: u64,
    /// Transactions started 10 ms or more after their due time.
    pub late_starts: u64,
    /// Largest delay between due time and start, µs.
    pub max_start_lag_us: u64,
    /// INVITE sent to 200 received (OPTIONS: OPTIONS to 200), µs.
    pub setup: Histogram<u64>,
    /// First request sent to the last final response (a call: INVITE to the BYE's 200), µs.
    pub transaction: Histogram<u64>,
}

impl StepStats {
    /// An empty record for a step at `rate` per second lasting `secs` and offering `offered`.
    pub fn new(rate: f64, secs: f64, offered: u64) -> Self {
        Self {
            rate,
            secs,
            offered,
            started: 0,
            completed: 0,
            failed: [0; 7],
            retransmissions: 0,
            duplicate_responses: 0,
            late_starts: 0,
            max_start_lag_us: 0,
            setup: histogram(),
            transaction: histogram(),
        }
    }

    /// Counts a failure.
    pub fn fail(&mut self, kind: FailKind) {
        if let Some(i) = FailKind::ALL.iter().position(|&k| k == kind)
            && let Some(c) = self.failed.get_mut(i)
        {
            *c += 1;
        }
    }

    /// Failed transactions of one kind.
    pub fn failed_of(&self, kind: FailKind) -> u64 {
        FailKind::ALL
            .iter()
            .position(|&k| k == kind)
            .and_then(|i| self.failed.get(i).copied())
            .unwrap_or(0)
    }

    /// All failed transactions.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Records a start `lag_us` after the due time.
    pub fn started(&mut self, lag_us: u64) {
        self.started += 1;
        self.max_start_lag_us = self.max_start_lag_us.max(lag_us);
        if lag_us >= 10_000 {
            self.late_starts += 1;
        }
    }

    /// Records a latency into `h` (µs, clamped to 1 µs .. 1 h).
    pub fn record(h: &mut Histogram<u64>, us: u64) {
        h.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds `o` to `self` (for the totals; rate and length are summed as transactions and
    /// seconds).
    pub fn merge(&mut self, o: &Self) {
        self.secs += o.secs;
        self.offered += o.offered;
        self.started += o.started;
        self.completed += o.completed;
        for (a, b) in self.failed.iter_mut().zip(o.failed) {
            *a += b;
        }
        self.retransmissions += o.retransmissions;
        self.duplicate_responses += o.duplicate_responses;
        self.late_starts += o.late_starts;
        self.max_start_lag_us = self.max_start_lag_us.max(o.max_start_lag_us);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.setup.add(&o.setup);
        let _ = self.transaction.add(&o.transaction);
        self.rate = if self.secs > 0.0 {
            self.offered as f64 / self.secs
        } else {
            0.0
        };
    }

    /// Completed transactions per second of the step.
    pub fn achieved_rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.completed as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The JSON object of the step.
    pub fn to_json(&self) -> Value {
        let failed: serde_json::Map<String, Value> = FailKind::ALL
            .iter()
            .zip(self.failed)
            .map(|(k, n)| (k.name().to_owned(), json!(n)))
            .collect();
        json!({
            "rate": self.rate,
            "secs": self.secs,
            "offered": self.offered,
            "started": self.started,
            "completed": self.completed,
            "failed": failed,
            "failed_total": self.failed_total(),
            "retransmissions": self.retransmissions,
            "duplicate_responses": self.duplicate_responses,
            "late_starts": self.late_starts,
            "max_start_lag_us": self.max_start_lag_us,
            "achieved_rate": round3(self.achieved_rate()),
            "latency_us": {
                "setup": summary(&self.setup),
                "transaction": summary(&self.transaction),
            },
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// count, min, mean, p50, p90, p99, p99.9 and max of a histogram, µs.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": round3(h.mean()),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// The totals over all steps.
pub fn totals(steps: &[StepStats]) -> StepStats {
    let mut t = StepStats::new(0.0, 0.0, 0);
    for s in steps {
        t.merge(s);
    }
    t
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// A short table: one line per step and the totals.
pub fn table(steps: &[StepStats]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "step",
        "rate/s",
        "started",
        "done",
        "failed",
        "retrans",
        "late",
        "done/s",
        "setup50",
        "setup99",
        "txn99",
        "txn_max"
    );
    let t = totals(steps);
    for (i, s) in steps
        .iter()
        .enumerate()
        .map(|(i, s)| (i.to_string(), s))
        .chain(std::iter::once(("all".to_owned(), &t)))
    {
        let q = |h: &Histogram<u64>, x: f64| {
            if h.is_empty() {
                "-".to_owned()
            } else {
                ms(h.value_at_quantile(x))
            }
        };
        let _ = writeln!(
            out,
            "{:>5} {:>9.1} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9.1} {:>9} {:>9} {:>9} {:>9}",
            i,
            s.rate,
            s.started,
            s.completed,
            s.failed_total(),
            s.retransmissions,
            s.late_starts,
            s.achieved_rate(),
            q(&s.setup, 0.5),
            q(&s.setup, 0.99),
            q(&s.transaction, 0.99),
            q(&s.transaction, 1.0),
        );
    }
    out.push_str("(latencies in ms; setup = INVITE->200, txn = whole transaction)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_by_kind_and_totals() {
        let mut a = StepStats::new(100.0, 2.0, 200);
        for _ in 0..200 {
            a.started(0);
        }
        a.completed = 195;
        a.fail(FailKind::Timeout);
        a.fail(FailKind::of_status(486));
        a.fail(FailKind::of_status(503));
        a.fail(FailKind::of_status(603));
        a.fail(FailKind::of_status(302));
        assert_eq!(a.failed_total(), 5);
        assert_eq!(a.failed_of(FailKind::Status4xx), 1);
        assert_eq!(a.started, a.completed + a.failed_total());
        for us in 1..=1000 {
            StepStats::record(&mut a.setup, us);
            StepStats::record(&mut a.transaction, us * 2);
        }
        let mut b = StepStats::new(300.0, 2.0, 600);
        b.started(20_000);
        b.completed = 1;
        b.retransmissions = 3;
        StepStats::record(&mut b.setup, 0);
        StepStats::record(&mut b.transaction, u64::MAX);

        let t = totals(&[a.clone(), b.clone()]);
        assert_eq!((t.offered, t.started, t.completed), (800, 201, 196));
        assert_eq!((t.late_starts, t.max_start_lag_us), (1, 20_000));
        assert_eq!(t.rate, 200.0);
        assert_eq!(t.secs, 4.0);
        assert_eq!(t.setup.len(), 1001);
        assert_eq!(t.setup.min(), 1);
        assert!(t.transaction.max() >= MAX_US);

        let j = a.to_json();
        assert_eq!(j["offered"], 200);
        assert_eq!(j["failed"]["timeout"], 1);
        assert_eq!(j["failed"]["status_4xx"], 1);
        assert_eq!(j["failed"]["send_error"], 0);
        assert_eq!(j["failed_total"], 5);
        assert_eq!(j["achieved_rate"], 97.5);
        let s = &j["latency_us"]["setup"];
        assert_eq!(s["count"], 1000);
        assert_eq!(s["p50"], 500);
        assert!((990..=991).contains(&s["p99"].as_u64().unwrap()));
        assert_eq!(s["max"], 1000);
        assert_eq!(j["latency_us"]["transaction"]["min"], 2);
        assert_eq!(
            StepStats::new(1.0, 1.0, 1).to_json()["latency_us"]["setup"]["count"],
            0
        );

        let tab = table(&[a, b]);
        assert_eq!(tab.lines().count(), 5);
        assert!(tab.lines().nth(3).unwrap().trim_start().starts_with("all"));
    }
}
