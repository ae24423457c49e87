//! Dropping Linux capabilities once the eBPF probes are attached.
//!
//! Capabilities belong to threads, and a new thread starts with its creator's. So the daemon
//! drops them on the main thread before the tokio runtime creates any worker: every thread made
//! afterwards starts without them. The one thread that keeps them is the eBPF loader, started
//! just before the drop, which exits once the probes are attached (see `kernel::Attaching`).
//!
//! What is kept: nothing, except `CAP_NET_BIND_SERVICE` when a listener or the admin API binds
//! a port below 1024 (the sockets are bound after the drop). Reading the probes' ring buffers
//! and maps through their open descriptors needs no capability on the kernels supported.
//! Effective, permitted and inheritable sets are reduced to that, the ambient set is cleared,
//! and, when the process may (`CAP_SETPCAP`), the bounding set too, so that no later `execve`
//! can regain anything.
//!
//! The `unsafe` syscalls (`capget`, `capset`, `prctl`) are confined to [`sys`]; the rest is
//! plain logic over 64-bit capability masks.

use std::fmt;

/// `CAP_NET_BIND_SERVICE`.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// `CAP_SETPCAP` (needed to shrink the bounding set).
const CAP_SETPCAP: u32 = 8;

/// Capability names, by number (as in `capabilities(7)`, without the `CAP_` prefix).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// A set of capabilities as a bit mask (bit n = capability n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The empty set.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set holding only `cap`.
    pub fn of(cap: u32) -> CapSet {
        CapSet(1u64.checked_shl(cap).unwrap_or(0))
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: u32) -> bool {
        self.0 & CapSet::of(cap).0 != 0
    }

    /// Capabilities in both sets.
    pub fn and(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// Capabilities in `self` but not in `other`.
    pub fn without(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for CapSet {
    /// `cap_bpf,cap_perfmon` (`none` when empty; `cap_N` for numbers without a name here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        for cap in 0..64u32 {
            if !self.has(cap) {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match NAMES.get(cap as usize) {
                Some(name) => write!(f, "cap_{name}")?,
                None => write!(f, "cap_{cap}")?,
            }
        }
        Ok(())
    }
}

/// What [`drop_all_except`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Permitted before.
    pub held: CapSet,
    /// Permitted (and effective) after.
    pub kept: CapSet,
    /// Whether the bounding set was reduced too (needs `CAP_SETPCAP`).
    pub bounding_reduced: bool,
}

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A capability syscall failed.
    #[error("{call}: {source}")]
    Syscall {
        /// Which call.
        call: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// What to keep: `CAP_NET_BIND_SERVICE` when some port to bind is below 1024.
pub fn needed(ports: impl IntoIterator<Item = u16>) -> CapSet {
    if ports.into_iter().any(|p| p != 0 && p < 1024) {
        CapSet::of(CAP_NET_BIND_SERVICE)
    } else {
        CapSet::EMPTY
    }
}

/// Drops every capability of the calling thread except those of `keep` it holds: effective,
/// permitted, inheritable, ambient, and the bounding set when allowed. Threads created later
/// by this thread start with the result; threads that already exist keep what they have.
///
/// # Errors
/// [`PrivilegeError`] when the kernel refuses `capget` or `capset`.
pub fn drop_all_except(keep: CapSet) -> Result<Dropped, PrivilegeError> {
    let now = sys::get()?;
    let kept = now.permitted.and(keep);
    // The bounding set first: shrinking it needs CAP_SETPCAP, which the capset below removes.
    // Best effort, every capability tried: a refusal (e.g. a seccomp filter) must not keep the
    // other sets whole.
    let mut bounding_reduced = now.effective.has(CAP_SETPCAP);
    if bounding_reduced {
        for cap in 0..=sys::last_cap() {
            if !keep.has(cap) && sys::in_bounding(cap) && sys::drop_bounding(cap).is_err() {
                bounding_reduced = false;
            }
        }
    }
    sys::clear_ambient();
    sys::set(sys::Sets {
        effective: kept,
        permitted: kept,
        inheritable: CapSet::EMPTY,
    })?;
    Ok(Dropped {
        held: now.permitted,
        kept,
        bounding_reduced,
    })
}

/// The calling thread's effective and permitted capabilities.
///
/// # Errors
/// [`PrivilegeError`] when `capget` fails.
pub fn current() -> Result<(CapSet, CapSet), PrivilegeError> {
    let s = sys::get()?;
    Ok((s.effective, s.permitted))
}

/// The syscalls, each `unsafe` block with its reason.
mod sys {
    use super::{CapSet, PrivilegeError};

    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;

    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    /// A thread's three capability sets.
    pub(super) struct Sets {
        pub(super) effective: CapSet,
        pub(super) permitted: CapSet,
        pub(super) inheritable: CapSet,
    }

    fn join(lo: u32, hi: u32) -> CapSet {
        CapSet(u64::from(lo) | (u64::from(hi) << 32))
    }

    fn split(s: CapSet) -> (u32, u32) {
        // Truncation intended: the low and the high word.
        (s.0 as u32, (s.0 >> 32) as u32)
    }

    fn error(call: &'static str) -> PrivilegeError {
        PrivilegeError::Syscall {
            call,
            source: std::io::Error::last_os_error(),
        }
    }

    pub(super) fn get() -> Result<Sets, PrivilegeError> {
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget(2) with a valid version-3 header and room for the two data structs
        // that version writes; pid 0 = the calling thread. Both live across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(error("capget"));
        }
        Ok(Sets {
            effective: join(data[0].effective, data[1].effective),
            permitted: join(data[0].permitted, data[1].permitted),
            inheritable: join(data[0].inheritable, data[1].inheritable),
        })
    }

    pub(super) fn set(s: Sets) -> Result<(), PrivilegeError> {
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let (e0, e1) = split(s.effective);
        let (p0, p1) = split(s.permitted);
        let (i0, i1) = split(s.inheritable);
        let data = [
            Data {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            Data {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: capset(2) with a valid version-3 header and the two data structs it reads;
        // pid 0 = the calling thread. Both live across the call; the kernel only reads `data`.
        let rc =
            unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        if rc != 0 {
            return Err(error("capset"));
        }
        Ok(())
    }

    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub(super) fn last_cap() -> u32 {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
            .min(63)
    }

    pub(super) fn in_bounding(cap: u32) -> bool {
        // SAFETY: prctl(2) PR_CAPBSET_READ takes a capability number and reads nothing from
        // memory; an unknown number gives -1 (EINVAL), handled as "not in the set".
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        rc == 1
    }

    pub(super) fn drop_bounding(cap: u32) -> Result<(), PrivilegeError> {
        // SAFETY: prctl(2) PR_CAPBSET_DROP takes a capability number and reads nothing from
        // memory; the result is checked.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            return Err(error("prctl(PR_CAPBSET_DROP)"));
        }
        Ok(())
    }

    /// Clears the ambient set (a kernel without ambient capabilities has none to clear).
    pub(super) fn clear_ambient() {
        // SAFETY: prctl(2) PR_CAP_AMBIENT_CLEAR_ALL takes no pointers; the result does not
        // matter (EINVAL only on kernels before 4.3, which have no ambient set).
        let _ = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::c_ulong::from(libc::PR_CAP_AMBIENT_CLEAR_ALL as u32),
                0,
                0,
                0,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_print_their_names() {
        let s = CapSet(CapSet::of(39).0 | CapSet::of(38).0 | CapSet::of(10).0);
        assert_eq!(s.to_string(), "cap_net_bind_service,cap_perfmon,cap_bpf");
        assert_eq!(CapSet::EMPTY.to_string(), "none");
        assert_eq!(CapSet::of(45).to_string(), "cap_45");
        assert!(CapSet::of(64).is_empty());
        assert_eq!(
            s.without(CapSet::of(38)).and(CapSet::of(39)),
            CapSet::of(39)
        );
    }

    #[test]
    fn bind_service_is_kept_only_for_low_ports() {
        assert_eq!(needed([5060, 9090]), CapSet::EMPTY);
        assert_eq!(needed([0, 5060]), CapSet::EMPTY);
        assert_eq!(needed([5060, 80]), CapSet::of(CAP_NET_BIND_SERVICE));
    }

    #[test]
    fn the_calling_threads_sets_can_be_read() {
        // Whatever this test runs with, capget works and permitted covers effective.
        let (effective, permitted) = current().expect("capget");
        assert!(effective.without(permitted).is_empty());
    }
}
