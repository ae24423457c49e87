//! Every fixed port of the integration tests, in one table: a module per test file, a constant
//! per port (or per block of ports, when a test derives several from one base), so that no two
//! tests share a port by accident. `cargo test -p sipsctp-tests --lib` checks on the host that
//! no two entries overlap and that none lies in the kernel's ephemeral range (32768-60999),
//! where a test's port-0 socket could take it first.
//!
//! Tests that can let the kernel choose (port 0) keep doing so and are not listed. Ports fixed
//! elsewhere are listed with where (`tests/data/daemon/kamailio.cfg`). Port 9 (discard) as a
//! dead upstream that nobody binds is not listed.
//!
//! Admin APIs (HTTP on 127.0.0.1) live in 94xx and 194xx; SIP ports in 5xxx, 6xxx, 15xxx and
//! 16xxx.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// `127.0.0.1:port`.
pub const fn lo(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// One entry: `count` ports from `first`, used by `name` in `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The test file (module name).
    pub test: &'static str,
    /// The constant.
    pub name: &'static str,
    /// Its first port.
    pub first: u16,
    /// How many ports from `first` the test uses (`base + 10`, `port + 1`, ...).
    pub count: u16,
}

impl Entry {
    /// The last port of the entry.
    pub fn last(&self) -> u32 {
        u32::from(self.first) + u32::from(self.count) - 1
    }
}

/// Defines a module of `pub const NAME: u16` per test file and [`TABLE`] listing them all.
/// `NAME = PORT;` is one port, `NAME = PORT, count N;` a block of N ports from PORT.
macro_rules! ports {
    ($(
        $(#[$doc:meta])*
        $test:ident {
            $( $(#[$cdoc:meta])* $name:ident = $port:literal $(, count $count:literal)?; )*
        }
    )*) => {
        $(
            $(#[$doc])*
            pub mod $test {
                $( $(#[$cdoc])* pub const $name: u16 = $port; )*
            }
        )*
        /// Every entry of the table.
        pub const TABLE: &[Entry] = &[
            $($(
                Entry {
                    test: stringify!($test),
                    name: stringify!($name),
                    first: $test::$name,
                    count: ports!(@count $($count)?),
                },
            )*)*
        ];
    };
    (@count) => { 1 };
    (@count $n:literal) => { $n };
}

ports! {
    /// `daemon_admin.rs`: admin writes, SIGHUP, SIP over TCP.
    daemon_admin {
        PUT_ADMIN = 19471;
        PUT_SIP = 15260;
        HUP_ADMIN = 19472;
        HUP_SIP = 15270;
        TCP_ADMIN = 19473;
        TCP_SIP = 15280;
        TCP_UAC = 15288;
        TCP_UAS = 15289;
    }

    /// `daemon_admin_guard.rs`: slowloris, token on every endpoint, Host check.
    daemon_admin_guard {
        SLOWLORIS_ADMIN = 19481;
        SLOWLORIS_SIP = 16110;
        TOKEN_ADMIN = 19482;
        TOKEN_SIP = 16120;
        HOST_ADMIN = 19483;
        HOST_SIP = 16130;
    }

    /// `daemon_calls.rs`: sipp calls through the daemon. `*_BASE`: daemon, UAC and UAS at
    /// base, base + 10 and base + 20.
    daemon_calls {
        S1_TO_UDP_BASE = 5100, count 21;
        S1_TO_UDP_ADMIN = 9460;
        SN_TO_UDP_BASE = 5160, count 21;
        SN_TO_UDP_ADMIN = 9461;
        SCTP_TO_SCTP_ADMIN = 9462;
        SCTP_TO_SCTP_DAEMON = 5260;
        SCTP_TO_SCTP_UAC = 5270;
        SCTP_TO_SCTP_UAS = 5280;
        UDP_TO_SCTP_ADMIN = 9463;
        UDP_TO_SCTP_DAEMON = 5360;
        UDP_TO_SCTP_UAC = 5370;
        UDP_TO_SCTP_UAS = 5380;
        /// Kamailio's SCTP+UDP port and its UDP UAS: fixed in `tests/data/daemon/kamailio.cfg`.
        KAMAILIO = 5390;
        KAMAILIO_UAS = 5391;
        KAMAILIO_CALLS_ADMIN = 9470;
        KAMAILIO_CALLS_DAEMON = 5580;
        KAMAILIO_CALLS_UAC = 5590;
        KAMAILIO_OPTIONS_ADMIN = 9465;
        KAMAILIO_OPTIONS_DAEMON = 5560;
        /// `-t s1`, `-t u1`, then the keepalive UAC.
        KAMAILIO_OPTIONS_UAC = 5570, count 3;
        LOSS_ADMIN = 9466;
        LOSS_DAEMON = 5660;
        LOSS_UAC = 5670;
        LOSS_UAS = 5680;
        LOSS_BOTH_ADMIN = 9472;
        LOSS_BOTH_DAEMON = 5760;
        LOSS_BOTH_UAC = 5770;
        LOSS_BOTH_UAS = 5780;
        TWO_LISTENERS_ADMIN = 9473;
        TWO_LISTENERS_FIRST = 6060;
        TWO_LISTENERS_SECOND = 6070;
        TWO_LISTENERS_UAC = 6075;
        TWO_LISTENERS_UAS = 6080;
    }

    /// `daemon_hostile.rs`: H1 (Via steering) and H2 (a TCP hog); the victims on 127.0.0.3.
    daemon_hostile {
        ADMIN = 9471;
        DAEMON = 5960;
        H1_UPSTREAM = 5970;
        H2_UPSTREAM = 5971;
        VICTIM_TCP = 5998;
        VICTIM_UDP = 5999;
    }

    /// `daemon_input.rs`: malformed input, keepalive, a dead SCTP upstream.
    daemon_input {
        ADMIN = 9464;
        DAEMON = 5460;
        UPSTREAM = 5480;
        DEAD_UPSTREAM_ADMIN = 9469;
        DEAD_UPSTREAM_DAEMON = 5463;
        DEAD_UPSTREAM = 5464;
    }

    /// `daemon_kernel.rs`: the kernel eyes; sipp's UAC at sip + 10.
    daemon_kernel {
        ON_ADMIN = 19461;
        ON_SIP = 15160, count 11;
        OFF_ADMIN = 19462;
        OFF_SIP = 15180, count 11;
        AUTO_ADMIN = 19463;
        AUTO_SIP = 15200, count 11;
        CAPABILITIES_ADMIN = 19464;
        CAPABILITIES_SIP = 15220, count 11;
        PERFMON_ADMIN = 19465;
        PERFMON_SIP = 15240;
    }

    /// `daemon_lifecycle.rs`: SIGTERM under load; daemon, UAC and UAS at base, base + 10 and
    /// base + 20.
    daemon_lifecycle {
        S1_ADMIN = 9467;
        S1_BASE = 6160, count 21;
        SN_ADMIN = 9468;
        SN_BASE = 6360, count 21;
    }

    /// `daemon_ops.rs`: log rate limits, loader timeout, capset refused.
    daemon_ops {
        CHURN_ADMIN = 19486;
        CHURN_SIP = 16160;
        TIMEOUT_ON_ADMIN = 19487;
        TIMEOUT_ON_SIP = 16170;
        TIMEOUT_AUTO_ADMIN = 19488;
        TIMEOUT_AUTO_SIP = 16171;
        CAPSET_ADMIN = 19489;
        CAPSET_SIP = 16180;
    }

    /// `daemon_reload.rs`: SIGHUP of srto_* and max_message_size.
    daemon_reload {
        RTO_ADMIN = 19484;
        RTO_SIP = 16140;
        RTO_UPSTREAM = 16149;
        SIZE_ADMIN = 19485;
        SIZE_SIP = 16150;
        SIZE_UPSTREAM = 16159;
    }

    /// `daemon_partial_delivery.rs`: a peer that withholds the end of a message (H3); the
    /// route's upstream is never reached.
    daemon_partial_delivery {
        ADMIN = 9495;
        DAEMON = 5930;
        UPSTREAM = 5931;
    }

    /// `daemon_transport_limits.rs`: TCP limits; each daemon's upstream at port + 1.
    daemon_transport_limits {
        MANY_ADMIN = 9481;
        MANY = 6260, count 2;
        KEEP_ADMIN = 9482;
        KEEP = 6264, count 2;
        EMFILE_ADMIN = 9483;
        EMFILE = 6266, count 2;
        MTU_ADMIN = 9484;
        MTU = 6270, count 2;
        MTU_TCP_ADMIN = 9485;
        MTU_TCP = 6274, count 2;
    }

    /// `dashboards_live.rs`: the dashboards' queries against a live run; rotel's gRPC port is
    /// the OTLP/HTTP one + 1.
    dashboards_live {
        ADMIN = 9476;
        DAEMON = 5980;
        UAC = 5985;
        UAS = 5990;
        PROMETHEUS = 9492;
        OTLP = 4401, count 2;
    }

    /// `exporter_correlation.rs`: kernel events joined to transactions.
    exporter_correlation {
        ADMIN = 9474;
        DAEMON = 5880;
        UAC = 5885;
        UAS = 5890;
        PROMETHEUS = 9490;
        OTLP_GRPC = 4397;
        OTLP_HTTP = 4398;
    }

    /// `daemon_soak.rs`: hostile peers of each kind next to sipp callers over SCTP, UDP and
    /// TCP.
    daemon_soak {
        ADMIN = 9477;
        DAEMON = 6300;
        UAS = 6310;
        /// sipp's `-t s1`, `-t u1` and `-t t1` callers.
        UAC = 6320, count 3;
    }

    /// `exporter_standalone.rs`: sipsctp-exporter beside Kamailio and lksctp's sctp_test.
    exporter_standalone {
        KAM_ADMIN = 9478;
        KAMAILIO = 6400;
        KAM_UAC = 6410;
        KAM_UAS = 6420;
        NON_SIP_ADMIN = 9479;
        NON_SIP_SERVER = 6430;
        NON_SIP_CLIENT = 6431, count 3;
        TWIN_SERVER = 6435;
        TWIN_CLIENT = 6436, count 2;
        RESTART_ADMIN = 9480;
        RESTART_SERVER = 6440;
        RESTART_CLIENT = 6441, count 2;
        NOBODY_ADMIN = 9486;
        /// The OTLP receiver of the Kamailio test: HTTP, gRPC + 1.
        KAM_OTLP = 6480, count 2;
        SIPP_ADMIN = 9491;
        SIPP_UAS = 6470;
        SIPP_UAC = 6471;
    }

    /// `load_generator.rs`: sipsctp-load over SCTP, direct and through sipsctpd.
    load_generator {
        MANY_UAS = 6450;
        MANY_UAC = 6451, count 2;
        ONE_UAS = 6455;
        ONE_UAC = 6456, count 2;
        RELAY_ADMIN = 9487;
        RELAY = 6460;
        RELAY_UAS = 6465;
        RELAY_UAC = 6466, count 2;
    }

    /// `sctp_endpoint.rs`: a peer restarted on the same port.
    sctp_endpoint {
        RESTARTED_PEER = 6560;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair of entries that share a port.
    fn clashes(entries: &[Entry]) -> Vec<String> {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| e.first);
        let mut out = Vec::new();
        for (i, a) in sorted.iter().enumerate() {
            for b in sorted.iter().skip(i + 1) {
                if u32::from(b.first) > a.last() {
                    break;
                }
                out.push(format!(
                    "{}::{} ({}..={}) and {}::{} ({}..={})",
                    a.test,
                    a.name,
                    a.first,
                    a.last(),
                    b.test,
                    b.name,
                    b.first,
                    b.last()
                ));
            }
        }
        out
    }

    #[test]
    fn no_two_entries_overlap() {
        assert!(TABLE.len() > 50, "the table lost its entries");
        let c = clashes(TABLE);
        assert!(c.is_empty(), "ports used twice: {c:#?}");
    }

    #[test]
    fn a_block_running_into_another_entry_is_a_clash() {
        let entry = |name, first, count| Entry {
            test: "t",
            name,
            first,
            count,
        };
        let c = clashes(&[
            entry("C", 5200, 1),
            entry("B", 5120, 1),
            entry("A", 5100, 21),
        ]);
        assert_eq!(c, ["t::A (5100..=5120) and t::B (5120..=5120)"]);
        assert!(clashes(&[entry("A", 5100, 20), entry("B", 5120, 1)]).is_empty());
    }

    #[test]
    fn no_entry_is_ephemeral_or_privileged() {
        for e in TABLE {
            assert!(e.count >= 1 && e.first > 1024, "{e:?}");
            assert!(
                e.last() < 32768,
                "{e:?} reaches into the ephemeral range (net.ipv4.ip_local_port_range \
                 32768-60999), where the kernel may give it to a port-0 socket"
            );
        }
    }
}
