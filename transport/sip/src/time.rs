//! [`MonoTime`]: a point on `CLOCK_MONOTONIC`, in nanoseconds, the clock the kernel stamps its
//! SCTP events with (`bpf_ktime_get_ns`). The relay's events carry it so that an exporter can
//! put kernel events and SIP transactions on one time line. This module never reads a clock:
//! the caller passes the time in.

use core::{fmt, ops::Add, time::Duration};

/// Nanoseconds on `CLOCK_MONOTONIC`. Ordered; never goes backwards within one boot.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(u64);

impl MonoTime {
    /// The time `nanos` nanoseconds after boot.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds after boot.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero when `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - d`, `None` before boot.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        self.0
            .checked_sub(u64::try_from(d.as_nanos()).ok()?)
            .map(Self)
    }
}

impl Add<Duration> for MonoTime {
    type Output = Self;

    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl fmt::Debug for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = MonoTime::from_nanos(1_500_000_000);
        assert_eq!((t + Duration::from_millis(500)).as_nanos(), 2_000_000_000);
        assert_eq!(
            t.saturating_duration_since(MonoTime::from_nanos(2_000_000_000)),
            Duration::ZERO
        );
        assert_eq!(t.checked_sub(Duration::from_secs(2)), None);
        assert_eq!(
            MonoTime::from_nanos(u64::MAX - 1) + Duration::from_secs(1),
            MonoTime::from_nanos(u64::MAX)
        );
        assert_eq!(format!("{t:?}"), "1.500000000s");
    }
}
