//! Which SCTP traffic is observed: the target process (by pid, or every process of a name),
//! its network namespace, and the local ports of its SCTP sockets, found again on each scan
//! so that a restarted process (by name) and new listeners are followed.

use std::{collections::BTreeSet, fmt, io};

use crate::procfs::{self, Association, Endpoint};

/// The process(es) to observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One process.
    Pid(u32),
    /// Every process with this name (`/proc/PID/comm`).
    Process(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid(p) => write!(f, "pid {p}"),
            Target::Process(n) => write!(f, "process \"{n}\""),
        }
    }
}

/// What one scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The processes.
    pub pids: Vec<u32>,
    /// Their network namespace (the first process's, when they differ).
    pub netns: u32,
    /// The local ports of their SCTP sockets (within the configured ports, if any).
    pub ports: Vec<u16>,
    /// Their SCTP sockets' inodes.
    pub sockets: BTreeSet<u64>,
}

/// Why a scan found nothing to observe.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// No such process (now).
    #[error("{0}: no such process")]
    NotFound(Target),
    /// Its `/proc` entries cannot be read by this process.
    #[error(
        "cannot read /proc/{pid}/{what}: {source} (run sipsctp-exporter as the observed \
         process's user, or as root / with CAP_SYS_PTRACE to look at another user's process)"
    )]
    Access {
        /// The process.
        pid: u32,
        /// The entry.
        what: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
}

/// Whether `comm` (at most 15 bytes, as the kernel keeps it) is the name `name`; a name longer
/// than 15 bytes matches on its first 15 (all the kernel keeps).
pub fn is_named(comm: &str, name: &str) -> bool {
    let cut = name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= 15)
        .last()
        .unwrap_or(0);
    comm == name || (name.len() > 15 && comm == &name[..cut])
}

/// The local ports of the endpoints whose socket is in `sockets`, within `only` when given;
/// sorted, each once.
pub fn ports_of(endpoints: &[Endpoint], sockets: &BTreeSet<u64>, only: Option<&[u16]>) -> Vec<u16> {
    let ports: BTreeSet<u16> = endpoints
        .iter()
        .filter(|e| sockets.contains(&e.inode))
        .map(|e| e.port)
        .filter(|p| only.is_none_or(|o| o.contains(p)))
        .collect();
    ports.into_iter().collect()
}

/// The associations of the observed sockets.
pub fn associations_of<'a>(
    assocs: &'a [Association],
    observed: &'a Observed,
) -> impl Iterator<Item = &'a Association> {
    assocs
        .iter()
        .filter(|a| observed.sockets.contains(&a.inode) && observed.ports.contains(&a.local_port))
}

/// Scans `/proc` for `target`.
///
/// # Errors
/// No process, or its entries cannot be read.
pub fn scan(target: &Target, only: Option<&[u16]>) -> Result<Observed, ScopeError> {
    let pids: Vec<u32> = match target {
        Target::Pid(p) => {
            if !procfs::proc_dir(*p).exists() {
                return Err(ScopeError::NotFound(target.clone()));
            }
            vec![*p]
        }
        Target::Process(name) => {
            let mut pids: Vec<u32> = procfs::pids()
                .into_iter()
                .filter(|p| procfs::comm(*p).is_ok_and(|c| is_named(&c, name)))
                .collect();
            pids.sort_unstable();
            if pids.is_empty() {
                return Err(ScopeError::NotFound(target.clone()));
            }
            pids
        }
    };
    let first = pids[0];
    let netns = procfs::netns(first).map_err(|source| access(first, "ns/net", source))?;
    let mut sockets = BTreeSet::new();
    for &p in &pids {
        match procfs::socket_inodes(p) {
            Ok(s) => sockets.extend(s),
            // A process of the name that went away meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(access(p, "fd", source)),
        }
    }
    // No /proc/net/sctp: the sctp module is not loaded, so no SCTP socket exists yet.
    let endpoints = procfs::endpoints(first).unwrap_or_default();
    let sctp: BTreeSet<u64> = endpoints
        .iter()
        .map(|e| e.inode)
        .filter(|i| sockets.contains(i))
        .collect();
    Ok(Observed {
        ports: ports_of(&endpoints, &sctp, only),
        pids,
        netns,
        sockets: sctp,
    })
}

fn access(pid: u32, what: &'static str, source: io::Error) -> ScopeError {
    if source.kind() == io::ErrorKind::NotFound {
        ScopeError::NotFound(Target::Pid(pid))
    } else {
        ScopeError::Access { pid, what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16, inode: u64) -> Endpoint {
        Endpoint { port, inode }
    }

    #[test]
    fn ports_are_those_of_the_processs_own_sockets() {
        let eps = [ep(5060, 1), ep(5061, 2), ep(5060, 3), ep(7000, 9)];
        let mine: BTreeSet<u64> = [1, 2, 3].into();
        assert_eq!(ports_of(&eps, &mine, None), vec![5060, 5061]);
        assert_eq!(ports_of(&eps, &mine, Some(&[5061, 7000])), vec![5061]);
        assert_eq!(ports_of(&eps, &BTreeSet::new(), None), Vec::<u16>::new());
    }

    #[test]
    fn names_match_the_kernels_15_byte_comm() {
        assert!(is_named("kamailio", "kamailio"));
        assert!(!is_named("kamailio2", "kamailio"));
        // The kernel keeps 15 bytes: longer names match on those.
        assert!(is_named("sipsctp-exporte", "sipsctp-exporter"));
        assert!(!is_named("sipsctp-export", "sipsctp-exporter"));
        assert!(!is_named("sipsctp-exporte", "sipsctp-export"));
    }

    #[test]
    fn associations_are_filtered_to_the_observed_sockets_and_ports() {
        let a = |id, inode, port| Association {
            assoc_id: id,
            inode,
            local_port: port,
            peer_port: 5060,
            peers: vec![],
        };
        let all = [a(1, 10, 5060), a(2, 11, 5060), a(3, 10, 6000)];
        let o = Observed {
            pids: vec![1],
            netns: 4026531840,
            ports: vec![5060],
            sockets: [10].into(),
        };
        let ids: Vec<u32> = associations_of(&all, &o).map(|a| a.assoc_id).collect();
        assert_eq!(ids, vec![1]);
    }
}
