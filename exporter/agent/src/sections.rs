//! The configuration sections sipsctpd and sipsctp-exporter share, as the TOML file spells
//! them (`[otlp]`, `[[peer]]`), and their checks into the agent's types. A refusal names the
//! key ([`SectionError`]); each program wraps it in its own configuration error.

use std::net::IpAddr;

use serde::Deserialize;

use crate::{
    otlp::{OtlpConfig, Protocol},
    peers::{PeerError, PeerNames},
};

/// A refused value: the key (`otlp.protocol`, `peer[2].addresses`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SectionError {
    /// The key, dotted from the file's top.
    pub key: String,
    /// What is wrong with its value.
    pub message: String,
}

fn refused(key: impl Into<String>, message: impl Into<String>) -> SectionError {
    SectionError {
        key: key.into(),
        message: message.into(),
    }
}

/// `[otlp]` as written.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct OtlpSection {
    /// The collector's base URL; absent = no export.
    pub endpoint: Option<String>,
    /// `"http"` or `"grpc"`.
    pub protocol: Option<String>,
    /// Share of ordinary transactions kept.
    pub sampling_ratio: Option<f64>,
    /// Spans per second at most.
    pub max_spans_per_second: Option<u32>,
    /// First response this late = slow (always kept).
    pub slow_threshold_ms: Option<u64>,
    /// Whether spans carry `sip.call_id`.
    pub call_id: Option<bool>,
}

impl OtlpSection {
    /// Every key checked, whether or not an endpoint turns the export on; `None` without an
    /// endpoint.
    ///
    /// # Errors
    /// The first key with a bad value.
    pub fn check(&self) -> Result<Option<OtlpConfig>, SectionError> {
        let d = OtlpConfig::default();
        let protocol = match self.protocol.as_deref() {
            None | Some("http") => Protocol::Http,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(refused(
                    "otlp.protocol",
                    format!("`{other}`: \"http\" or \"grpc\""),
                ));
            }
        };
        let c = OtlpConfig {
            endpoint: self.endpoint.clone().unwrap_or(d.endpoint),
            protocol,
            sampling_ratio: self.sampling_ratio.unwrap_or(d.sampling_ratio),
            max_spans_per_second: self.max_spans_per_second.unwrap_or(d.max_spans_per_second),
            slow_threshold: self
                .slow_threshold_ms
                .map_or(d.slow_threshold, std::time::Duration::from_millis),
            call_id: self.call_id.unwrap_or(d.call_id),
        };
        // The validator's messages start with the key.
        c.validate().map_err(|e| {
            let text = e.to_string();
            match text.split_once(": ") {
                Some((key, message)) => refused(key, message),
                None => refused("otlp", text),
            }
        })?;
        Ok(self.endpoint.is_some().then_some(c))
    }
}

/// One `[[peer]]` as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The `peer` label.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<String>,
}

/// A named peer, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The `peer` label.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// The `[[peer]]` entries with their addresses parsed.
///
/// # Errors
/// `peer[i].addresses` when one is not an IP address.
pub fn peers(sections: &[PeerSection]) -> Result<Vec<Peer>, SectionError> {
    sections
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let addresses = p
                .addresses
                .iter()
                .map(|a| {
                    a.parse::<IpAddr>().map_err(|_| {
                        refused(
                            format!("peer[{i}].addresses"),
                            format!("`{a}` is not an IP address"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Peer {
                name: p.name.clone(),
                addresses,
            })
        })
        .collect()
}

/// The names of `peers` (and any further `(name, addresses)` entries first).
///
/// # Errors
/// A bad name, two names for one address, or more than the bound of names.
pub fn peer_names(
    more: impl IntoIterator<Item = (String, Vec<IpAddr>)>,
    peers: &[Peer],
) -> Result<PeerNames, PeerError> {
    let from_peers = peers.iter().map(|p| (p.name.clone(), p.addresses.clone()));
    PeerNames::new(more.into_iter().chain(from_peers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_without_endpoint_is_checked_but_off() {
        let s = OtlpSection {
            sampling_ratio: Some(0.5),
            ..OtlpSection::default()
        };
        assert_eq!(s.check().unwrap(), None);
        let bad = OtlpSection {
            protocol: Some("udp".into()),
            ..OtlpSection::default()
        };
        assert_eq!(bad.check().unwrap_err().key, "otlp.protocol");
        let bad = OtlpSection {
            sampling_ratio: Some(1.5),
            ..OtlpSection::default()
        };
        assert_eq!(bad.check().unwrap_err().key, "otlp.sampling_ratio");
        let on = OtlpSection {
            endpoint: Some("http://127.0.0.1:4318".into()),
            protocol: Some("grpc".into()),
            ..OtlpSection::default()
        };
        let c = on.check().unwrap().unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
    }

    #[test]
    fn peer_addresses_are_parsed_and_named_by_key() {
        let ok = peers(&[PeerSection {
            name: "carrier-a".into(),
            addresses: vec!["192.0.2.10".into(), "2001:db8::1".into()],
        }])
        .unwrap();
        assert_eq!(ok[0].addresses.len(), 2);
        let e = peers(&[
            PeerSection {
                name: "a".into(),
                addresses: vec![],
            },
            PeerSection {
                name: "b".into(),
                addresses: vec!["host.example".into()],
            },
        ])
        .unwrap_err();
        assert_eq!(e.key, "peer[1].addresses");
        let names = peer_names([], &ok).unwrap();
        assert_eq!(
            names.lookup("192.0.2.10".parse().unwrap()),
            Some("carrier-a")
        );
    }
}
