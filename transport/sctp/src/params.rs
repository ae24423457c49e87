//! Kamailio's 19 sctp module parameters: names, units, defaults, ranges, when a change takes
//! effect, and the validation Kamailio lacks (srto_min <= srto_initial <= srto_max,
//! sack_delay <= 500, hbinterval -1 = heartbeats off, assoc_reuse needs assoc_tracking).
//!
//! Pure data and rules: no sockets here. `crate::socket` reads the OS defaults and applies the
//! values with their socket options.
//!
//! Names are Kamailio's module parameter names (`sctp_srto_initial`); like `cfg.set_now_int sctp
//! srto_initial 2000`, lookups also accept them without the `sctp_` prefix.
//!
//! For the kernel-backed parameters whose socket option treats 0 as "no change" (RTO values,
//! retransmission limits, INIT settings, heartbeat interval, path retransmissions, SACK delay and
//! frequency), 0 means "keep the current value", as in Kamailio's runtime fixups and the kernel.

use std::fmt;

/// One of the 19 parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // each variant is documented by `Param::doc`
pub enum Param {
    SocketRcvbuf,
    SocketSndbuf,
    Autoclose,
    SendTtl,
    SendRetries,
    AssocTracking,
    AssocReuse,
    MaxAssocs,
    SrtoInitial,
    SrtoMax,
    SrtoMin,
    Asocmaxrxt,
    InitMaxAttempts,
    InitMaxTimeo,
    Hbinterval,
    Pathmaxrxt,
    SackDelay,
    SackFreq,
    MaxBurst,
}

/// What a value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// A plain count.
    Count,
    /// 0 or 1.
    Flag,
}

/// When a change made at run time takes effect (Kamailio's behaviour, kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Only at start; a runtime change is refused.
    ReadOnly,
    /// The listening sockets' defaults for associations set up afterwards (and live ones too
    /// when the change asks for scope `current` or `all`).
    NewAssociations,
    /// The next INIT sent (and live associations when asked).
    NextInit,
    /// The next message sent.
    NextSend,
    /// Immediately (internal to the transport).
    Immediately,
}

/// Where a runtime change is applied, mapped to the kernel's assoc-id selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scope {
    /// Endpoint defaults for future associations (SCTP_FUTURE_ASSOC = 0). Kamailio's only mode.
    #[default]
    Future,
    /// Live associations only (SCTP_CURRENT_ASSOC = 1).
    Current,
    /// Both (SCTP_ALL_ASSOC = 2).
    All,
}

impl Scope {
    /// Parses `future`, `current` or `all`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "future" => Some(Scope::Future),
            "current" => Some(Scope::Current),
            "all" => Some(Scope::All),
            _ => None,
        }
    }

    /// Whether endpoint defaults (new associations) change.
    pub fn future(self) -> bool {
        matches!(self, Scope::Future | Scope::All)
    }

    /// Whether live associations change.
    pub fn current(self) -> bool {
        matches!(self, Scope::Current | Scope::All)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Future => "future",
            Scope::Current => "current",
            Scope::All => "all",
        })
    }
}

const MAX_2_30: i64 = 1 << 30;

/// The static description of one parameter.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Kamailio's module parameter name.
    pub name: &'static str,
    /// Unit of the value.
    pub unit: Unit,
    /// Smallest accepted value.
    pub min: i64,
    /// Largest accepted value.
    pub max: i64,
    /// The default when the OS does not provide one (the OS value wins where `from_os`).
    pub default: i64,
    /// Whether the default is read from a fresh socket at start, as Kamailio does.
    pub from_os: bool,
    /// Whether 0 means "keep the current value".
    pub zero_keeps: bool,
    /// When a runtime change takes effect.
    pub applies: Applies,
    /// One line for `--help`, errors and the admin API.
    pub doc: &'static str,
}

impl Param {
    /// Number of parameters.
    pub const COUNT: usize = 19;

    /// All parameters, in Kamailio's order.
    pub const ALL: [Param; Param::COUNT] = [
        Param::SocketRcvbuf,
        Param::SocketSndbuf,
        Param::Autoclose,
        Param::SendTtl,
        Param::SendRetries,
        Param::AssocTracking,
        Param::AssocReuse,
        Param::MaxAssocs,
        Param::SrtoInitial,
        Param::SrtoMax,
        Param::SrtoMin,
        Param::Asocmaxrxt,
        Param::InitMaxAttempts,
        Param::InitMaxTimeo,
        Param::Hbinterval,
        Param::Pathmaxrxt,
        Param::SackDelay,
        Param::SackFreq,
        Param::MaxBurst,
    ];

    /// Position in [`Param::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The parameter's description.
    pub fn spec(self) -> Spec {
        use Applies::*;
        use Unit::*;
        let s = |name, unit, min, max, default, from_os, zero_keeps, applies, doc| Spec {
            name,
            unit,
            min,
            max,
            default,
            from_os,
            zero_keeps,
            applies,
            doc,
        };
        match self {
            Param::SocketRcvbuf => s(
                "sctp_socket_rcvbuf",
                Bytes,
                512,
                MAX_2_30,
                212_992,
                true,
                false,
                ReadOnly,
                "socket receive buffer (SO_RCVBUF; the kernel doubles it and caps it at net.core.rmem_max)",
            ),
            Param::SocketSndbuf => s(
                "sctp_socket_sndbuf",
                Bytes,
                512,
                MAX_2_30,
                212_992,
                true,
                false,
                ReadOnly,
                "socket send buffer (SO_SNDBUF; the kernel doubles it and caps it at net.core.wmem_max)",
            ),
            Param::Autoclose => s(
                "sctp_autoclose",
                Seconds,
                1,
                MAX_2_30,
                180,
                false,
                false,
                NewAssociations,
                "idle time after which an association is closed (SCTP_AUTOCLOSE)",
            ),
            Param::SendTtl => s(
                "sctp_send_ttl",
                Millis,
                0,
                MAX_2_30,
                32_000,
                false,
                false,
                NextSend,
                "PR-SCTP lifetime of a sent message; 0 = never abandoned",
            ),
            Param::SendRetries => s(
                "sctp_send_retries",
                Count,
                0,
                9,
                0,
                false,
                false,
                NextSend,
                "resends by address of a message the kernel returned unsent (SEND_FAILED)",
            ),
            Param::AssocTracking => s(
                "sctp_assoc_tracking",
                Flag,
                0,
                1,
                1,
                false,
                false,
                Immediately,
                "track associations (needed for reuse and the per-association views); 0 flushes the table",
            ),
            Param::AssocReuse => s(
                "sctp_assoc_reuse",
                Flag,
                0,
                1,
                1,
                false,
                false,
                Immediately,
                "send replies on the association the request came from (needs sctp_assoc_tracking)",
            ),
            Param::MaxAssocs => s(
                "sctp_max_assocs",
                Count,
                -1,
                i64::from(i32::MAX),
                -1,
                false,
                false,
                Immediately,
                "most open associations; more are aborted (inbound) or refused (outbound); -1 = no limit",
            ),
            Param::SrtoInitial => s(
                "sctp_srto_initial",
                Millis,
                0,
                MAX_2_30,
                3000,
                true,
                true,
                NewAssociations,
                "initial retransmission timeout (SCTP_RTOINFO); 0 keeps the current value",
            ),
            Param::SrtoMax => s(
                "sctp_srto_max",
                Millis,
                0,
                MAX_2_30,
                60_000,
                true,
                true,
                NewAssociations,
                "largest retransmission timeout (SCTP_RTOINFO); 0 keeps the current value",
            ),
            Param::SrtoMin => s(
                "sctp_srto_min",
                Millis,
                0,
                MAX_2_30,
                1000,
                true,
                true,
                NewAssociations,
                "smallest retransmission timeout (SCTP_RTOINFO); 0 keeps the current value",
            ),
            Param::Asocmaxrxt => s(
                "sctp_asocmaxrxt",
                Count,
                0,
                1024,
                10,
                true,
                true,
                NewAssociations,
                "retransmissions before an association is declared dead (SCTP_ASSOCINFO)",
            ),
            Param::InitMaxAttempts => s(
                "sctp_init_max_attempts",
                Count,
                0,
                1024,
                8,
                true,
                true,
                NextInit,
                "INIT retransmissions before giving up (SCTP_INITMSG)",
            ),
            Param::InitMaxTimeo => s(
                "sctp_init_max_timeo",
                Millis,
                0,
                MAX_2_30,
                60_000,
                true,
                true,
                NextInit,
                "largest INIT retransmission timeout (SCTP_INITMSG)",
            ),
            Param::Hbinterval => s(
                "sctp_hbinterval",
                Millis,
                -1,
                MAX_2_30,
                30_000,
                true,
                true,
                NewAssociations,
                "heartbeat interval (SCTP_PEER_ADDR_PARAMS); -1 disables heartbeats",
            ),
            Param::Pathmaxrxt => s(
                "sctp_pathmaxrxt",
                Count,
                0,
                1024,
                5,
                true,
                true,
                NewAssociations,
                "retransmissions before a path is declared down (SCTP_PEER_ADDR_PARAMS)",
            ),
            Param::SackDelay => s(
                "sctp_sack_delay",
                Millis,
                0,
                500,
                200,
                true,
                true,
                NewAssociations,
                "delayed SACK timeout (SCTP_DELAYED_SACK); the kernel accepts at most 500",
            ),
            Param::SackFreq => s(
                "sctp_sack_freq",
                Count,
                0,
                1024,
                2,
                true,
                true,
                NewAssociations,
                "packets received before a SACK is sent (SCTP_DELAYED_SACK); 1 disables delayed SACK",
            ),
            Param::MaxBurst => s(
                "sctp_max_burst",
                Count,
                0,
                1024,
                4,
                true,
                false,
                NewAssociations,
                "most packets sent at once (SCTP_MAX_BURST); 0 = no burst limit",
            ),
        }
    }

    /// Kamailio's parameter name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Looks a parameter up by its name, with or without the `sctp_` prefix.
    pub fn from_name(name: &str) -> Option<Param> {
        let full = if name.starts_with("sctp_") {
            name.to_owned()
        } else {
            format!("sctp_{name}")
        };
        Param::ALL.into_iter().find(|p| p.name() == full)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused parameter value or combination. Each names the parameter(s) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// No parameter has that name.
    #[error("unknown sctp parameter `{0}` (known: sctp_socket_rcvbuf ... sctp_max_burst)")]
    Unknown(String),
    /// Outside the parameter's range.
    #[error("{param} = {value}: out of range {min}..={max}")]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// The refused value.
        value: i64,
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// The RTO values are not ordered.
    #[error(
        "sctp_srto_min ({min}) <= sctp_srto_initial ({initial}) <= sctp_srto_max ({max}) does not hold"
    )]
    RtoOrder {
        /// Effective srto_min.
        min: i64,
        /// Effective srto_initial.
        initial: i64,
        /// Effective srto_max.
        max: i64,
    },
    /// A parameter that needs another one switched on.
    #[error("{param} = 1 needs {needs} = 1")]
    Requires {
        /// The parameter that was set.
        param: &'static str,
        /// The one it needs.
        needs: &'static str,
    },
    /// A read-only parameter was changed at run time.
    #[error("{0} cannot be changed at run time (only at start)")]
    ReadOnly(&'static str),
}

/// Values of all 19 parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SctpParams {
    values: [i64; Param::COUNT],
}

/// The kernel's defaults, read from a fresh one-to-many socket at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsDefaults {
    /// SO_RCVBUF as set (the kernel reports double; already halved).
    pub rcvbuf: i64,
    /// SO_SNDBUF as set (already halved).
    pub sndbuf: i64,
    /// RTO initial, ms.
    pub rto_initial: i64,
    /// RTO max, ms.
    pub rto_max: i64,
    /// RTO min, ms.
    pub rto_min: i64,
    /// Association max retransmissions.
    pub asocmaxrxt: i64,
    /// INIT attempts.
    pub init_max_attempts: i64,
    /// INIT max timeout, ms.
    pub init_max_timeo: i64,
    /// Heartbeat interval, ms (or -1 when heartbeats are off).
    pub hbinterval: i64,
    /// Path max retransmissions.
    pub pathmaxrxt: i64,
    /// SACK delay, ms.
    pub sack_delay: i64,
    /// SACK frequency.
    pub sack_freq: i64,
    /// Max burst.
    pub max_burst: i64,
}

impl Default for SctpParams {
    /// Kamailio's defaults with the RFC 4960 / Linux values where Kamailio reads the OS.
    fn default() -> Self {
        let mut values = [0; Param::COUNT];
        for p in Param::ALL {
            if let Some(v) = values.get_mut(p.index()) {
                *v = p.spec().default;
            }
        }
        SctpParams { values }
    }
}

impl SctpParams {
    /// Kamailio's defaults, with the OS-provided ones taken from `os`.
    pub fn with_os_defaults(os: &OsDefaults) -> SctpParams {
        let mut p = SctpParams::default();
        let pairs = [
            (Param::SocketRcvbuf, os.rcvbuf),
            (Param::SocketSndbuf, os.sndbuf),
            (Param::SrtoInitial, os.rto_initial),
            (Param::SrtoMax, os.rto_max),
            (Param::SrtoMin, os.rto_min),
            (Param::Asocmaxrxt, os.asocmaxrxt),
            (Param::InitMaxAttempts, os.init_max_attempts),
            (Param::InitMaxTimeo, os.init_max_timeo),
            (Param::Hbinterval, os.hbinterval),
            (Param::Pathmaxrxt, os.pathmaxrxt),
            (Param::SackDelay, os.sack_delay),
            (Param::SackFreq, os.sack_freq),
            (Param::MaxBurst, os.max_burst),
        ];
        for (param, v) in pairs {
            p.put(param, v);
        }
        p
    }

    /// The current value of `p`.
    pub fn get(&self, p: Param) -> i64 {
        self.values.get(p.index()).copied().unwrap_or(0)
    }

    fn put(&mut self, p: Param, v: i64) {
        if let Some(slot) = self.values.get_mut(p.index()) {
            *slot = v;
        }
    }

    /// Sets `p` at start (configuration): range-checked; 0 keeps the current value where the
    /// parameter says so. Cross-checks run in [`SctpParams::validate`].
    ///
    /// # Errors
    /// [`ParamError::OutOfRange`].
    pub fn set(&mut self, p: Param, value: i64) -> Result<(), ParamError> {
        let spec = p.spec();
        if value < spec.min || value > spec.max {
            return Err(ParamError::OutOfRange {
                param: spec.name,
                value,
                min: spec.min,
                max: spec.max,
            });
        }
        if !(value == 0 && spec.zero_keeps) {
            self.put(p, value);
        }
        Ok(())
    }

    /// The combination rules Kamailio does not check.
    ///
    /// # Errors
    /// [`ParamError::RtoOrder`], [`ParamError::Requires`].
    pub fn validate(&self) -> Result<(), ParamError> {
        let (min, initial, max) = (
            self.get(Param::SrtoMin),
            self.get(Param::SrtoInitial),
            self.get(Param::SrtoMax),
        );
        if !(min <= initial && initial <= max) {
            return Err(ParamError::RtoOrder { min, initial, max });
        }
        if self.get(Param::AssocReuse) == 1 && self.get(Param::AssocTracking) == 0 {
            return Err(ParamError::Requires {
                param: Param::AssocReuse.name(),
                needs: Param::AssocTracking.name(),
            });
        }
        Ok(())
    }

    /// A runtime change (`cfg.set_now_int sctp <name> <value>`): refused for read-only
    /// parameters, range-checked, cross-checked against the other values; on success the new
    /// value is stored and returned (it differs from `value` when 0 kept the old one).
    ///
    /// # Errors
    /// [`ParamError::ReadOnly`], [`ParamError::OutOfRange`], [`ParamError::RtoOrder`],
    /// [`ParamError::Requires`]; on error nothing changed.
    pub fn change(&mut self, p: Param, value: i64) -> Result<i64, ParamError> {
        if p.spec().applies == Applies::ReadOnly {
            return Err(ParamError::ReadOnly(p.name()));
        }
        let mut next = *self;
        next.set(p, value)?;
        next.validate()?;
        *self = next;
        Ok(self.get(p))
    }

    /// Every `(parameter, value)` pair, in Kamailio's order.
    pub fn iter(&self) -> impl Iterator<Item = (Param, i64)> + '_ {
        Param::ALL.into_iter().map(|p| (p, self.get(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nineteen_unique_names_that_round_trip() {
        let mut names: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 19);
        for (i, p) in Param::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(Param::from_name(p.name()), Some(*p));
            let short = p.name().trim_start_matches("sctp_");
            assert_eq!(Param::from_name(short), Some(*p));
        }
        assert_eq!(Param::from_name("sctp_nope"), None);
    }

    #[test]
    fn defaults_are_kamailios_and_valid() {
        let p = SctpParams::default();
        assert_eq!(p.get(Param::Autoclose), 180);
        assert_eq!(p.get(Param::SendTtl), 32_000);
        assert_eq!(p.get(Param::SendRetries), 0);
        assert_eq!(p.get(Param::AssocTracking), 1);
        assert_eq!(p.get(Param::AssocReuse), 1);
        assert_eq!(p.get(Param::MaxAssocs), -1);
        assert_eq!(p.get(Param::SrtoInitial), 3000);
        p.validate().unwrap();
        for (param, v) in p.iter() {
            let s = param.spec();
            assert!(
                v >= s.min && v <= s.max,
                "{param} default {v} out of its own range"
            );
        }
    }

    #[test]
    fn os_defaults_replace_the_os_backed_ones_only() {
        let os = OsDefaults {
            rcvbuf: 106_496,
            sndbuf: 106_496,
            rto_initial: 2000,
            rto_max: 50_000,
            rto_min: 500,
            asocmaxrxt: 9,
            init_max_attempts: 7,
            init_max_timeo: 50_000,
            hbinterval: 25_000,
            pathmaxrxt: 4,
            sack_delay: 150,
            sack_freq: 3,
            max_burst: 5,
        };
        let p = SctpParams::with_os_defaults(&os);
        assert_eq!(p.get(Param::SocketRcvbuf), 106_496);
        assert_eq!(p.get(Param::SrtoMin), 500);
        assert_eq!(p.get(Param::MaxBurst), 5);
        assert_eq!(p.get(Param::Autoclose), 180, "not an OS default");
    }

    #[test]
    fn ranges_are_enforced_with_the_parameter_named() {
        let mut p = SctpParams::default();
        let e = p.set(Param::SackDelay, 501).unwrap_err();
        assert_eq!(e.to_string(), "sctp_sack_delay = 501: out of range 0..=500");
        assert!(p.set(Param::SendRetries, 10).is_err());
        assert!(p.set(Param::Autoclose, 0).is_err());
        assert!(p.set(Param::Hbinterval, -2).is_err());
        p.set(Param::Hbinterval, -1).unwrap();
        assert_eq!(
            p.get(Param::Hbinterval),
            -1,
            "-1 = heartbeats disabled, stored as such"
        );
        assert!(p.set(Param::AssocTracking, 2).is_err());
    }

    #[test]
    fn zero_keeps_where_the_kernel_does() {
        let mut p = SctpParams::default();
        p.set(Param::SrtoInitial, 0).unwrap();
        assert_eq!(p.get(Param::SrtoInitial), 3000);
        p.set(Param::MaxBurst, 0).unwrap();
        assert_eq!(
            p.get(Param::MaxBurst),
            0,
            "0 = no burst limit is a real value"
        );
        p.set(Param::SendTtl, 0).unwrap();
        assert_eq!(p.get(Param::SendTtl), 0);
    }

    #[test]
    fn rto_order_and_reuse_dependency_are_checked() {
        let mut p = SctpParams::default();
        p.set(Param::SrtoMin, 4000).unwrap();
        let e = p.validate().unwrap_err();
        assert_eq!(
            e,
            ParamError::RtoOrder {
                min: 4000,
                initial: 3000,
                max: 60_000
            }
        );
        let mut p = SctpParams::default();
        p.set(Param::AssocTracking, 0).unwrap();
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "sctp_assoc_reuse = 1 needs sctp_assoc_tracking = 1"
        );
    }

    #[test]
    fn runtime_changes_refuse_read_only_and_leave_nothing_half_done() {
        let mut p = SctpParams::default();
        assert_eq!(
            p.change(Param::SocketRcvbuf, 4096),
            Err(ParamError::ReadOnly("sctp_socket_rcvbuf"))
        );
        let before = p;
        assert!(p.change(Param::SrtoMax, 100).is_err(), "max below initial");
        assert_eq!(p, before);
        assert_eq!(p.change(Param::SrtoInitial, 2000), Ok(2000));
        assert_eq!(p.change(Param::SrtoInitial, 0), Ok(2000), "0 keeps");
        assert_eq!(p.change(Param::MaxAssocs, 2), Ok(2));
    }

    #[test]
    fn scopes_parse_and_map() {
        assert_eq!(Scope::parse("future"), Some(Scope::Future));
        assert!(Scope::All.future() && Scope::All.current());
        assert!(!Scope::Future.current() && !Scope::Current.future());
        assert_eq!(Scope::parse("everything"), None);
    }
}
