//! The running kernel's tick rate, `HZ`, which turns the jiffies the probes read (`rto`,
//! `srtt`, `rttvar`, RTT samples) into time.
//!
//! # Method
//! `CONFIG_HZ` is a build option that no interface reports directly: BTF has no macros,
//! kallsyms has no constants, and `/proc/config.gz` / `/boot/config-*` are often absent (also
//! in this project's VM). So the loader *measures* it, once, at load time
//! (`sipsctp_ebpf::hz::measure`, which runs [`measure_with`] on the real kernel): it reads the
//! kernel's `jiffies` counter from `/proc/schedstat` (its `timestamp` line is `jiffies`; falls
//! back to the first `jiffies:` line of `/proc/timer_list`, see [`parse_schedstat`] and
//! [`parse_timer_list`]) against `CLOCK_MONOTONIC`, from one tick
//! edge to another tick edge at least [`WINDOW`] later, and rounds the rate to the nearest
//! value the kernel can be configured with ([`CANDIDATES`]). A rate further than 10 % from
//! every choice is an error, never a guess. Nothing here assumes 250.
//!
//! # Precision
//! The measured rate is only approximate: jiffies advances when a tick is *handled*, and the
//! tick interrupt's latency varies (under qemu's TCG emulation by milliseconds). In this
//! project's VM, 200 ms windows measured the 250 Hz kernels at 246.0-252.9 ticks/s, and
//! 150 ms windows above 253 (an earlier candidate list with 256 misread those). So the candidates
//! are the values of `kernel/Kconfig.hz` (100, 250, 300, 1000, what x86-64, arm64 and most
//! architectures offer) plus 32-bit ARM's 200 and 500: at least 20 % apart, so an error of
//! several percent still rounds right. Alpha's 1024 and 1200 and other exotic rates are not
//! supported: such a kernel fails the 10 % check rather than being misread.
//!
//! Pure: the reading of `/proc` and of the clock stays in the loader; everything here is
//! handed its inputs.

use std::{num::NonZeroU32, time::Duration};

/// The tick rates recognised: `kernel/Kconfig.hz`'s choices and 32-bit ARM's 200 and 500.
pub const CANDIDATES: &[u32] = &[100, 200, 250, 300, 500, 1000];
/// Minimum time between the two tick edges the rate is measured on.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Sleep between two reads of the jiffies counter.
const POLL: Duration = Duration::from_micros(200);
/// Give up when jiffies does not move for this long.
const STALL: Duration = Duration::from_secs(2);

/// Errors finding HZ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HzError {
    /// Neither `/proc/schedstat` nor `/proc/timer_list` gave a jiffies value.
    #[error("no jiffies source: /proc/schedstat: {schedstat}; /proc/timer_list: {timer_list}")]
    NoJiffies {
        /// Why `/proc/schedstat` did not serve.
        schedstat: String,
        /// Why `/proc/timer_list` did not serve.
        timer_list: String,
    },
    /// The jiffies counter did not advance.
    #[error("jiffies did not advance within {0:?}")]
    Stalled(Duration),
    /// The measured rate is not a tick rate Linux can be built with.
    #[error("measured {0:.1} ticks/s, not within 10% of a supported HZ")]
    Implausible(f64),
}

/// A kernel tick rate (ticks per second).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hz(NonZeroU32);

impl Hz {
    /// `hz` ticks per second; `None` for 0.
    pub fn new(hz: u32) -> Option<Hz> {
        NonZeroU32::new(hz).map(Hz)
    }

    /// Ticks per second.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// `jiffies` as a duration (exact to the nanosecond, saturating).
    pub fn to_duration(self, jiffies: u64) -> Duration {
        let ns = u128::from(jiffies) * 1_000_000_000 / u128::from(self.get());
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// `jiffies` in milliseconds rounded the way the kernel's `jiffies_to_msecs()` does
    /// (exact when HZ divides 1000, rounded up otherwise), which is what the kernel reports to
    /// user space, e.g. `SCTP_GET_PEER_ADDR_INFO`'s `spinfo_rto` or `/proc/net/sctp/remaddr`.
    pub fn to_kernel_msecs(self, jiffies: u64) -> u64 {
        let hz = u128::from(self.get());
        let ms = (u128::from(jiffies) * 1000).div_ceil(hz);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for Hz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Hz", self.get())
    }
}

/// The nearest supported HZ to a measured `rate`, if within 10 %.
pub fn nearest(rate: f64) -> Option<Hz> {
    let best = CANDIDATES.iter().copied().min_by(|&a, &b| {
        let da = (f64::from(a) - rate).abs();
        let db = (f64::from(b) - rate).abs();
        da.total_cmp(&db)
    })?;
    if (f64::from(best) - rate).abs() <= f64::from(best) * 0.1 {
        Hz::new(best)
    } else {
        None
    }
}

/// Measures HZ (see the module documentation) with the jiffies source, the clock and sleeping
/// passed in: the loader's `sipsctp_ebpf::hz::measure` passes `/proc`, `CLOCK_MONOTONIC` and
/// `thread::sleep`; tests pass a simulated kernel.
///
/// # Errors
/// What `jiffies` returns, [`HzError::Stalled`] when it does not advance for 2 s of `now`, and
/// [`HzError::Implausible`] when the rate is not within 10 % of a [`CANDIDATES`] value.
pub fn measure_with(
    mut jiffies: impl FnMut() -> Result<u64, HzError>,
    mut now: impl FnMut() -> Duration,
    mut sleep: impl FnMut(Duration),
) -> Result<Hz, HzError> {
    let (j0, t0) = edge(&mut jiffies, &mut now, &mut sleep)?;
    while now().saturating_sub(t0) < WINDOW {
        sleep(POLL.max(WINDOW / 8));
    }
    let (j1, t1) = edge(&mut jiffies, &mut now, &mut sleep)?;
    let secs = t1.saturating_sub(t0).as_secs_f64();
    let ticks = j1.wrapping_sub(j0) as f64;
    let rate = if secs > 0.0 { ticks / secs } else { 0.0 };
    log::debug!("HZ: {ticks} ticks in {secs:.4} s: {rate:.1} ticks/s");
    nearest(rate).ok_or(HzError::Implausible(rate))
}

/// Polls until jiffies changes; returns the new value and when it was first seen.
fn edge(
    jiffies: &mut dyn FnMut() -> Result<u64, HzError>,
    now: &mut dyn FnMut() -> Duration,
    sleep: &mut dyn FnMut(Duration),
) -> Result<(u64, Duration), HzError> {
    let first = jiffies()?;
    let since = now();
    loop {
        sleep(POLL);
        let j = jiffies()?;
        let t = now();
        if j != first {
            return Ok((j, t));
        }
        if t.saturating_sub(since) > STALL {
            return Err(HzError::Stalled(STALL));
        }
    }
}

/// `/proc/schedstat`'s second line is `timestamp <jiffies>` (kernel/sched/stats.c).
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("timestamp "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/timer_list` has `jiffies: <n>` per tick device (kernel/time/timer_list.c).
pub fn parse_timer_list(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("jiffies:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A simulated kernel: tick k is due at k/hz and *handled* (jiffies incremented) up to
    /// `latency` later, a pseudo-random amount per tick, as under an emulator; each read costs
    /// `read_cost` of simulated time, each sleep exactly what was asked.
    fn simulate(hz: u32, read_cost: Duration, phase: Duration) -> Result<Hz, HzError> {
        let t = Cell::new(phase);
        let tick_ns = 1_000_000_000f64 / f64::from(hz);
        let latency_ns = (3_000_000f64).min(tick_ns * 0.9);
        let lat = |k: u64| latency_ns * ((k.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0);
        measure_with(
            || {
                t.set(t.get() + read_cost);
                let now = t.get().as_nanos() as f64;
                let k = (now / tick_ns) as u64;
                let handled = if k as f64 * tick_ns + lat(k) <= now {
                    k
                } else {
                    k - 1
                };
                Ok(4_294_667_296 + handled)
            },
            || t.get(),
            |d| t.set(t.get() + d),
        )
    }

    #[test]
    fn measures_every_possible_hz() {
        for &hz in CANDIDATES {
            for phase_us in [0, 137, 3999, 12_345] {
                for cost_us in [5, 80, 300] {
                    let got = simulate(
                        hz,
                        Duration::from_micros(cost_us),
                        Duration::from_micros(phase_us),
                    )
                    .unwrap();
                    assert_eq!(got.get(), hz, "phase {phase_us} us, read cost {cost_us} us");
                }
            }
        }
    }

    #[test]
    fn stalled_jiffies_are_an_error() {
        let t = Cell::new(Duration::ZERO);
        let r = measure_with(|| Ok(7), || t.get(), |d| t.set(t.get() + d));
        assert!(matches!(r, Err(HzError::Stalled(_))));
    }

    #[test]
    fn implausible_rates_are_rejected() {
        assert_eq!(nearest(251.0).map(Hz::get), Some(250));
        assert_eq!(nearest(256.0).map(Hz::get), Some(250));
        assert_eq!(nearest(270.0).map(Hz::get), Some(250));
        assert_eq!(nearest(280.0).map(Hz::get), Some(300));
        assert_eq!(nearest(1040.0).map(Hz::get), Some(1000));
        assert!(nearest(150.0).is_none());
        assert!(nearest(700.0).is_none());
        assert!(nearest(1200.0).is_none());
        assert!(nearest(0.0).is_none());
    }

    #[test]
    fn converts_like_the_kernel() {
        let hz250 = Hz::new(250).unwrap();
        assert_eq!(hz250.to_kernel_msecs(50), 200);
        assert_eq!(hz250.to_duration(3), Duration::from_millis(12));
        let hz300 = Hz::new(300).unwrap();
        // jiffies_to_msecs rounds up when HZ does not divide 1000: 1 jiffy = 3.33 ms -> 4.
        assert_eq!(hz300.to_kernel_msecs(1), 4);
        assert_eq!(hz300.to_kernel_msecs(300), 1000);
        let hz1024 = Hz::new(1024).unwrap();
        assert_eq!(hz1024.to_kernel_msecs(1024), 1000);
        assert_eq!(hz1024.to_kernel_msecs(1), 1);
        assert!(Hz::new(0).is_none());
    }

    #[test]
    fn parses_the_jiffies_sources() {
        let schedstat = "version 15\ntimestamp 4294893230\ncpu0 0 0 0 0 0 0 1 2 3\n";
        assert_eq!(parse_schedstat(schedstat), Some(4_294_893_230));
        assert_eq!(parse_schedstat("version 15\n"), None);
        let timer_list =
            "Timer List Version: v0.9\nnow at 4133279595 nsecs\n\ncpu: 0\n jiffies: 4294893272\n";
        assert_eq!(parse_timer_list(timer_list), Some(4_294_893_272));
        assert_eq!(parse_timer_list("jiffies: x"), None);
    }
}
