//! What `/proc` says about the observed processes and their SCTP sockets: a process's name,
//! network namespace and socket inodes, and its namespace's SCTP endpoints and associations
//! (`/proc/PID/net/sctp/{eps,assocs}`). The parsers are pure (text in, rows out) and tested on
//! the kernel's own output; the readers are thin.

use std::{
    collections::BTreeSet,
    io,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// One SCTP endpoint (a socket's local side): a row of `/proc/net/sctp/eps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Local port.
    pub port: u16,
    /// The socket's inode (matches `socket:[N]` in `/proc/PID/fd`).
    pub inode: u64,
}

/// One association: a row of `/proc/net/sctp/assocs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// Its id on its socket (`ASSOC-ID`).
    pub assoc_id: u32,
    /// The socket's inode.
    pub inode: u64,
    /// Local port.
    pub local_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Peer addresses (the primary path is marked `*` by the kernel; kept in its order).
    pub peers: Vec<IpAddr>,
}

/// Rows of `/proc/net/sctp/eps`:
/// `ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS`. Lines that do not parse are skipped.
pub fn parse_eps(text: &str) -> Vec<Endpoint> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Endpoint {
                port: f.get(5)?.parse().ok()?,
                inode: f.get(7)?.parse().ok()?,
            })
        })
        .collect()
}

/// Rows of `/proc/net/sctp/assocs`:
/// `ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT LADDRS <->
/// RADDRS HBINT INS OUTS ...`. Lines that do not parse are skipped.
pub fn parse_assocs(text: &str) -> Vec<Association> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let arrow = f.iter().position(|w| *w == "<->")?;
            let peers = f
                .get(arrow + 1..)?
                .iter()
                .map_while(|w| w.trim_start_matches('*').parse::<IpAddr>().ok())
                .collect();
            Some(Association {
                assoc_id: f.get(6)?.parse().ok()?,
                inode: f.get(10)?.parse().ok()?,
                local_port: f.get(11)?.parse().ok()?,
                peer_port: f.get(12)?.parse().ok()?,
                peers,
            })
        })
        .collect()
}

/// The inode of a `socket:[N]` link target.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `/proc/PID`.
pub fn proc_dir(pid: u32) -> PathBuf {
    Path::new("/proc").join(pid.to_string())
}

/// The process's name (`/proc/PID/comm`, at most 15 bytes).
///
/// # Errors
/// The process is gone or unreadable.
pub fn comm(pid: u32) -> io::Result<String> {
    Ok(std::fs::read_to_string(proc_dir(pid).join("comm"))?
        .trim_end()
        .to_owned())
}

/// The inode of the process's network namespace (`/proc/PID/ns/net`), as the kernel events
/// carry it.
///
/// # Errors
/// The process is gone, or this process may not look at it (ptrace read access).
pub fn netns(pid: u32) -> io::Result<u32> {
    let ino = std::fs::metadata(proc_dir(pid).join("ns/net"))?.ino();
    u32::try_from(ino).map_err(|_| io::Error::other("network namespace inode over 32 bits"))
}

/// The inodes of the process's sockets (`/proc/PID/fd/*` pointing at `socket:[N]`).
///
/// # Errors
/// The process is gone, or this process may not look at it (ptrace read access).
pub fn socket_inodes(pid: u32) -> io::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(proc_dir(pid).join("fd"))? {
        let Ok(e) = e else { continue };
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(inode) = target.to_str().and_then(socket_inode)
        {
            out.insert(inode);
        }
    }
    Ok(out)
}

/// Every process id now.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The SCTP endpoints of the process's network namespace.
///
/// # Errors
/// The process is gone, or SCTP is not loaded (no `/proc/net/sctp`).
pub fn endpoints(pid: u32) -> io::Result<Vec<Endpoint>> {
    std::fs::read_to_string(proc_dir(pid).join("net/sctp/eps")).map(|t| parse_eps(&t))
}

/// The SCTP associations of the process's network namespace.
///
/// # Errors
/// The process is gone, or SCTP is not loaded.
pub fn associations(pid: u32) -> io::Result<Vec<Association>> {
    std::fs::read_to_string(proc_dir(pid).join("net/sctp/assocs")).map(|t| parse_assocs(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Debian's 6.12 kernel in the test VM (Kamailio on 5390, sipp on 5570).
    const EPS: &str = " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
ffff8880047b2000 ffff888004c0a300 2   10  29   5390      0 13406 10.79.0.1 127.0.0.1
ffff888004f2d800 ffff888004c0cb00 2   10  52   5570      0 14100 127.0.0.1
garbage line
";

    const ASSOCS: &str = " ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT LADDRS <-> RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf
ffff888004d4e000 ffff888004c0a300 2   1   3  6734   2        0        0     0 13406  5390 33012  127.0.0.1 <-> *127.0.0.1 \t   30000    10    10   10    0    0        0        1        0   212992   212992
ffff888004d4f000 ffff888004c0a300 2   1   3  6735   3        0        0     0 13406  5390  5391  10.79.0.1 <-> *10.79.0.2 10.80.0.2 \t   30000    10    10   10    0    0        7        1        0   212992   212992
";

    #[test]
    fn endpoints_give_port_and_inode() {
        assert_eq!(
            parse_eps(EPS),
            vec![
                Endpoint {
                    port: 5390,
                    inode: 13406
                },
                Endpoint {
                    port: 5570,
                    inode: 14100
                }
            ]
        );
        assert_eq!(parse_eps(""), vec![]);
    }

    #[test]
    fn associations_give_ids_ports_and_every_peer_address() {
        let a = parse_assocs(ASSOCS);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].assoc_id, 2);
        assert_eq!(a[0].inode, 13406);
        assert_eq!((a[0].local_port, a[0].peer_port), (5390, 33012));
        assert_eq!(a[0].peers, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            a[1].peers,
            vec![
                "10.79.0.2".parse::<IpAddr>().unwrap(),
                "10.80.0.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode("socket:[13406]"), Some(13406));
        assert_eq!(socket_inode("pipe:[1]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
