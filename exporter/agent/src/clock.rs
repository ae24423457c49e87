//! `CLOCK_MONOTONIC`, read directly: the clock the kernel stamps its SCTP events with, so the
//! relay's stamps, the correlator's `now` and the probes' events share one time line (spans
//! map it to wall time with [`crate::otlp::Clock`]). The one `unsafe` call lives here.

use std::time::Duration;

/// Now, on `CLOCK_MONOTONIC`, as time since boot (without suspend).
pub fn monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_MONOTONIC
    // is always supported on Linux, and on the impossible error `ts` stays zeroed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_matches_std() {
        let a = monotonic();
        let i = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic();
        let d = b.saturating_sub(a);
        assert!(d >= Duration::from_millis(20), "{d:?}");
        assert!(d <= i.elapsed() + Duration::from_millis(5), "{d:?}");
    }
}
