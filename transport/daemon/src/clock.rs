//! The relay's clock: `CLOCK_MONOTONIC` (read by the agent's clock module, where the one
//! `unsafe` call lives), the clock the kernel stamps its SCTP events with, so the relay's
//! [`MonoTime`] stamps and the probes' events share one time line. The relay loop reads it
//! once per wake-up.

use sipsctp_sip::MonoTime;

/// Now, on `CLOCK_MONOTONIC`.
pub fn now() -> MonoTime {
    let t = sipsctp_agent::clock::monotonic();
    MonoTime::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX))
}
