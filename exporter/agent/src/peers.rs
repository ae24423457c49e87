//! Peer names: the bounded `peer` label of the exporter's metrics and spans.
//!
//! An operator names the peers that matter (`[[route]] name = "carrier-a"` for an upstream,
//! `[[peer]] name = ..., addresses = [...]` for any other, e.g. a caller's trunk or the
//! other addresses of a multi-homed upstream); every other address is `other`. At most
//! [`MAX_PEERS`] names, so that a label never grows with traffic.

use std::{collections::HashMap, net::IpAddr};

/// Names an operator may configure.
pub const MAX_PEERS: usize = 64;

/// The label of every address not named.
pub const OTHER: &str = "other";

/// A configuration of peer names that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Too many names.
    #[error("at most {MAX_PEERS} peer names (routes and [[peer]] entries), {0} configured")]
    TooMany(usize),
    /// A name that cannot be a label value the way operators query it.
    #[error(
        "peer name {0:?}: 1 to 64 characters of letters, digits, '-', '_' and '.', and not \"other\""
    )]
    BadName(String),
    /// One address, two names.
    #[error("address {addr} is named both {first:?} and {second:?}")]
    Conflict {
        /// The address.
        addr: IpAddr,
        /// The name it had.
        first: String,
        /// The name it was given again.
        second: String,
    },
}

/// Addresses to names.
#[derive(Debug, Clone, Default)]
pub struct PeerNames {
    names: Vec<Box<str>>,
    by_ip: HashMap<IpAddr, usize>,
}

/// An IPv4-mapped IPv6 address is the IPv4 one (the kernel reports either).
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl PeerNames {
    /// Names from `(name, addresses)` entries; one name may come in several entries (its
    /// addresses add up).
    ///
    /// # Errors
    /// More than [`MAX_PEERS`] names, a name that is not a clean label, or an address with
    /// two names.
    pub fn new<I, A>(entries: I) -> Result<Self, PeerError>
    where
        I: IntoIterator<Item = (String, A)>,
        A: IntoIterator<Item = IpAddr>,
    {
        let mut p = Self::default();
        for (name, addrs) in entries {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name != OTHER
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(PeerError::BadName(name));
            }
            let index = match p.names.iter().position(|n| **n == *name) {
                Some(i) => i,
                None => {
                    p.names.push(name.clone().into_boxed_str());
                    p.names.len() - 1
                }
            };
            for addr in addrs {
                let addr = canonical(addr);
                match p.by_ip.get(&addr) {
                    Some(&i) if i != index => {
                        return Err(PeerError::Conflict {
                            addr,
                            first: p.names.get(i).map(|n| n.to_string()).unwrap_or_default(),
                            second: name,
                        });
                    }
                    _ => {
                        p.by_ip.insert(addr, index);
                    }
                }
            }
        }
        if p.names.len() > MAX_PEERS {
            return Err(PeerError::TooMany(p.names.len()));
        }
        Ok(p)
    }

    /// The name of `ip`, or [`OTHER`].
    pub fn name(&self, ip: IpAddr) -> &str {
        self.lookup(ip).unwrap_or(OTHER)
    }

    /// The name of `ip`, if it has one.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        self.by_ip
            .get(&canonical(ip))
            .and_then(|&i| self.names.get(i))
            .map(|n| &**n)
    }

    /// Every name, in configuration order (without [`OTHER`]).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_addresses_and_everything_else_is_other() {
        let p = PeerNames::new([
            ("carrier-a".to_owned(), vec![ip("10.0.0.20")]),
            ("carrier-a".to_owned(), vec![ip("10.0.1.20")]),
            ("pbx".to_owned(), vec![ip("2001:db8::5")]),
        ])
        .unwrap();
        assert_eq!(p.name(ip("10.0.0.20")), "carrier-a");
        assert_eq!(p.name(ip("10.0.1.20")), "carrier-a");
        assert_eq!(p.name(ip("::ffff:10.0.1.20")), "carrier-a");
        assert_eq!(p.name(ip("2001:db8::5")), "pbx");
        assert_eq!(p.name(ip("192.0.2.1")), OTHER);
        assert_eq!(p.names().collect::<Vec<_>>(), ["carrier-a", "pbx"]);
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let e = PeerNames::new([
            ("a".to_owned(), vec![ip("10.0.0.1")]),
            ("b".to_owned(), vec![ip("10.0.0.1")]),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "address 10.0.0.1 is named both \"a\" and \"b\""
        );
        for bad in ["", "other", "a b", "x\"y", &"n".repeat(65)] {
            assert!(
                matches!(
                    PeerNames::new([(bad.to_owned(), Vec::<IpAddr>::new())]),
                    Err(PeerError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        let many = (0..=MAX_PEERS).map(|i| (format!("p{i}"), Vec::<IpAddr>::new()));
        assert_eq!(
            PeerNames::new(many).unwrap_err(),
            PeerError::TooMany(MAX_PEERS + 1)
        );
    }
}
