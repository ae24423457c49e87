//! The capabilities the exporter needs, checked before it starts so that an unprivileged
//! start names what is missing (read from `/proc/self/status`, no system call of our own).

/// A capability by number and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Its bit.
    pub bit: u32,
    /// `CAP_...`.
    pub name: &'static str,
}

/// What the probes need (as sipsctpd's loader).
pub const NEEDED: &[Cap] = &[
    Cap {
        bit: 39,
        name: "CAP_BPF",
    },
    Cap {
        bit: 38,
        name: "CAP_PERFMON",
    },
    Cap {
        bit: 21,
        name: "CAP_SYS_ADMIN",
    },
];

/// The effective set (`CapEff:` in hex) of a `/proc/PID/status` text.
pub fn effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Those of `need` not in `effective`.
pub fn lacking(effective: u64, need: &[Cap]) -> Vec<Cap> {
    need.iter()
        .copied()
        .filter(|c| effective & (1u64 << c.bit) == 0)
        .collect()
}

/// Those of `need` this process lacks (all of them when its status cannot be read).
pub fn missing(need: &[Cap]) -> Vec<Cap> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective(&s))
        .unwrap_or(0);
    lacking(eff, need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_set_names_what_is_missing() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(root), Some(0x1ff_ffff_ffff));
        assert_eq!(lacking(0x1ff_ffff_ffff, NEEDED), vec![]);
        let nobody = "CapEff:\t0000000000000000\n";
        let names: Vec<&str> = lacking(effective(nobody).unwrap(), NEEDED)
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"]);
        // CAP_BPF and CAP_PERFMON only.
        let two = (1u64 << 39) | (1u64 << 38);
        assert_eq!(lacking(two, NEEDED).len(), 1);
        assert_eq!(effective("no caps here"), None);
    }
}
