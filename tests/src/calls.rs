//! sipp calls through the daemon: a configuration builder, sipp's UAS and UAC runs with
//! their results, and netem's drop count. Shared by the tests that relay real calls.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    daemon::{
        Daemon, Peer, ToolRun, data_file, run_tool_sampling, sipp, sipp_in, sipp_totals, tail,
        wait_port,
    },
    kernel_sctp, vm_kernel,
};

/// A daemon configuration: listeners `(proto, addresses, port)`, routes `(domain, upstream)`,
/// the admin address, and extra TOML (e.g. an `[sctp]` table). `extra` starts inside the
/// `[admin]` table, so it may begin with more admin keys (`token = "..."`) before its own
/// tables.
pub fn config(
    listen: &[(&str, &[&str], u16)],
    routes: &[(Option<&str>, &str)],
    admin: impl std::fmt::Display,
    extra: &str,
) -> String {
    let mut s = String::new();
    for (proto, addrs, port) in listen {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        s.push_str(&format!(
            "[[listen]]\nproto = \"{proto}\"\naddresses = [{}]\nport = {port}\n\n",
            addrs.join(", ")
        ));
    }
    for (domain, upstream) in routes {
        s.push_str("[[route]]\n");
        if let Some(d) = domain {
            s.push_str(&format!("domain = \"{d}\"\n"));
        }
        s.push_str(&format!("upstream = \"{upstream}\"\n\n"));
    }
    s.push_str(&format!("[admin]\nlisten = \"{admin}\"\n\n{extra}\n"));
    s
}

/// As [`uas`], with scenario file `scenario` instead of the built-in one when given.
pub fn uas_with(dir: &Path, scenario: Option<&Path>, transport: &str, ip: &str, port: u16) -> Peer {
    let mut c = sipp(dir, None);
    // By default sipp's built-in UAS behaving like a user agent (`uas_ua.xml`): it answers BYE
    // retransmissions for 32 s and does not abort a call on a late INVITE retransmission.
    let ua = data_file("uas_ua.xml");
    c.arg("-sf").arg(scenario.unwrap_or(&ua));
    c.args(["-default_behaviors", "all,-abortunexp"]);
    c.args(["-t", transport, "-i", ip, "-p", &port.to_string()]);
    let mut p = Peer::spawn(
        &format!("sipp UAS -t {transport} on {ip}:{port}"),
        c,
        dir.join("uas.log"),
    );
    wait_port(port, transport.starts_with('u'), &mut p);
    p
}

/// One sipp UAC run.
pub struct Uac<'a> {
    /// `-sn uac` when `None`, else `-sf` this file.
    pub scenario: Option<PathBuf>,
    pub transport: &'a str,
    pub local_ip: &'a str,
    pub local_port: u16,
    pub remote: SocketAddr,
    pub calls: u32,
    pub rate: u32,
    pub netns: Option<&'a str>,
}

/// What a UAC run left: its run, successful and failed calls, its directory, and how the
/// kernel's SCTP counters moved meanwhile (non-zero changes).
pub struct UacRun {
    pub run: ToolRun,
    pub ok: u64,
    pub failed: u64,
    pub dir: PathBuf,
    pub snmp: Vec<(String, u64)>,
}

impl UacRun {
    pub fn show(&self) -> String {
        let errors = std::fs::read_to_string(self.dir.join("sipp-errors.log")).unwrap_or_default();
        format!(
            "sipp {} after {:.1} s, {} successful, {} failed\n--- kernel SCTP counters that \
             moved meanwhile ---\n{:?}\n--- sipp output (tail) ---\n{}\n\
             --- sipp errors (tail) ---\n{}",
            self.run.status,
            self.run.took.as_secs_f64(),
            self.ok,
            self.failed,
            self.snmp,
            tail(&self.run.output, 30),
            tail(&errors, 30)
        )
    }

    /// Panics unless sipp exited 0 with `calls` successful calls and none failed; the message
    /// has sipp's view and the daemon's metrics.
    pub fn assert_all_ok(&self, calls: u32, what: &str, d: &Daemon) {
        assert!(
            self.run.status.success() && (self.ok, self.failed) == (u64::from(calls), 0),
            "kernel {}: {what}: expected {calls} successful calls, 0 failed, exit 0: {}\n\
             --- sipsctpd's metrics (non-zero) ---\n{}",
            vm_kernel(),
            self.show(),
            d.metrics_for_message()
        );
        let unexpected = self.unexpected();
        assert!(
            unexpected.iter().all(|m| m.starts_with("SIP/2.0 18")),
            "kernel {}: {what}: sipp let through unexpected messages other than a late 18x: \
             {unexpected:?}",
            vm_kernel()
        );
        if !unexpected.is_empty() {
            eprintln!(
                "kernel {}: {what}: {} provisional response(s) arrived after their final one \
                 (SCTP delivers unordered) and were ignored by sipp",
                vm_kernel(),
                unexpected.len()
            );
        }
    }

    /// The first lines of the messages sipp let pass as unexpected (it runs with
    /// `-default_behaviors all,-abortunexp`; see [`Uac::run`]).
    pub fn unexpected(&self) -> Vec<String> {
        let errors = std::fs::read_to_string(self.dir.join("sipp-errors.log")).unwrap_or_default();
        errors
            .split("Continuing call on unexpected message")
            .skip(1)
            .map(|rest| {
                rest.split_once("received '")
                    .map_or(rest, |(_, m)| m)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

impl Uac<'_> {
    pub fn run(&self, dir: &Path, each: impl FnMut()) -> UacRun {
        let dir = dir.join(format!("uac-{}-{}", self.transport, self.local_port));
        std::fs::create_dir_all(&dir).expect("uac dir");
        let stat = dir.join("stat.csv");
        let mut c = sipp_in(self.netns, &dir, Some(&stat));
        match &self.scenario {
            None => c.args(["-sn", "uac"]),
            Some(f) => c.arg("-sf").arg(f),
        };
        c.args(["-t", self.transport, "-i", self.local_ip])
            .args(["-p", &self.local_port.to_string()])
            .args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()])
            .args(["-timeout", "120s", "-timeout_error"])
            // SCTP delivers SIP unordered (RFC 4168 5.1, as Kamailio and sipp send it): when the
            // kernel must retransmit a 180 (the reader's buffer was full), the 200 sent after it
            // can arrive first. A UA ignores the late provisional; sipp's default is to abort
            // the call. So sipp continues, and `assert_all_ok` checks that only late 18x were
            // let through.
            .args(["-default_behaviors", "all,-abortunexp"])
            .arg(self.remote.to_string());
        let before = kernel_sctp::snmp();
        let run = run_tool_sampling("sipp-uac", c, &dir, Duration::from_secs(150), each);
        let after = kernel_sctp::snmp();
        let snmp = after
            .into_iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
                (d > 0 && !k.starts_with("SctpCurr")).then_some((k, d))
            })
            .collect();
        let (ok, failed) = if stat.is_file() {
            sipp_totals(&stat)
        } else {
            (0, 0)
        };
        UacRun {
            run,
            ok,
            failed,
            dir,
            snmp,
        }
    }
}

/// `dropped N` of the netem qdisc on `dev` (in `ns` when given).
pub fn netem_dropped(ns: Option<&str>, dev: &str) -> u64 {
    let mut c = Command::new("tc");
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    let out = c
        .args(["-s", "qdisc", "show", "dev", dev])
        .output()
        .expect("tc -s qdisc show");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("dropped ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` in tc's statistics of {dev}: {text}"))
}
