//! `CLOCK_MONOTONIC`, read directly: the clock the kernel stamps its SCTP events with, so the
//! relay's stamps, the correlator's `now` and the probes' events share one time line; and the
//! mapping of that clock to wall time for exported spans. The one `unsafe` call lives here.

use std::time::{Duration, SystemTime};

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

/// The wall time and the monotonic time read together once, to turn monotonic stamps into
/// wall time (`wall0 + (mono - mono0)`): a wall-clock step later does not bend span times.
#[derive(Debug, Clone, Copy)]
pub struct WallAnchor {
    /// Wall time at the anchor.
    pub wall0: SystemTime,
    /// `CLOCK_MONOTONIC` at the anchor.
    pub mono0: Duration,
}

impl WallAnchor {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            wall0: SystemTime::now(),
            mono0: monotonic(),
        }
    }

    /// The wall time of monotonic stamp `mono`.
    pub fn wall(&self, mono: Duration) -> SystemTime {
        if mono >= self.mono0 {
            self.wall0 + (mono - self.mono0)
        } else {
            self.wall0
                .checked_sub(self.mono0 - mono)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
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

    #[test]
    fn wall_follows_monotonic_from_the_anchor() {
        let a = WallAnchor {
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
            mono0: Duration::from_secs(50),
        };
        assert_eq!(
            a.wall(Duration::from_millis(50_250)),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_250)
        );
        assert_eq!(
            a.wall(Duration::from_secs(49)),
            SystemTime::UNIX_EPOCH + Duration::from_secs(999)
        );
    }
}
