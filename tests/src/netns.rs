//! Network namespaces and veth links for tests that need more than loopback (multi-homing,
//! a path that can be cut). Created with iproute2 inside the VM; sockets are placed in a
//! namespace by creating them while the calling thread has entered it (`setns`), which is all
//! the unsafe code of this crate.

use std::{fs::File, os::fd::AsRawFd as _, process::Command};

/// Runs `ip ARGS`, panicking with its stderr on failure (tests want loud setup errors).
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tc ARGS`, panicking on failure.
pub fn tc(args: &[&str]) {
    let out = Command::new("tc")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running tc {args:?}: {e}"));
    assert!(
        out.status.success(),
        "tc {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (deleting a leftover of the same name) with `lo` up.
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        Netns {
            name: name.to_owned(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `tc ARGS` inside the namespace.
    pub fn tc(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        tc(&all);
    }

    /// Runs `f` with the calling thread inside this namespace, then returns the thread to the
    /// namespace it was in. Sockets created by `f` stay in this namespace.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let home = File::open("/proc/thread-self/ns/net").expect("open own netns");
        let target =
            File::open(format!("/run/netns/{}", self.name)).expect("open the namespace file");
        setns(&target);
        let out = f();
        setns(&home);
        out
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn setns(ns: &File) {
    // SAFETY: setns only reads the fd, which `ns` keeps open for the duration of the call;
    // CLONE_NEWNET moves just this thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Links `a` and `b` with a veth pair `a_if`/`b_if` carrying `a_addr`/`b_addr` (CIDR).
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}
