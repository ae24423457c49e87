//! `CLOCK_MONOTONIC`, read directly: the clock the kernel stamps its SCTP events with, so the
//! relay's [`MonoTime`] stamps and the probes' events share one time line. The relay loop reads
//! it once per wake-up. The one `unsafe` call lives here.

use sipsctp_sip::MonoTime;

/// Now, on `CLOCK_MONOTONIC`.
pub fn now() -> MonoTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_MONOTONIC
    // is always supported on Linux, and on the impossible error `ts` stays zeroed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return MonoTime::default();
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    MonoTime::from_nanos(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_matches_std() {
        let a = super::now();
        let i = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::now();
        let d = b.saturating_duration_since(a);
        assert!(d >= std::time::Duration::from_millis(20), "{d:?}");
        assert!(
            d <= i.elapsed() + std::time::Duration::from_millis(5),
            "{d:?}"
        );
    }
}
