//! sipsctpd's kernel eyes in the VM: with `[ebpf] mode = "on"` the probes attach and
//! `/metrics` and `/kernel/events` show the daemon's own associations (retransmissions under
//! netem loss, the association's life); with `mode = "off"`, and unprivileged with
//! `mode = "auto"`, the daemon runs, says why eBPF is off, and the fallback numbers (polled from
//! `/proc/net/sctp/snmp`) appear and equal the kernel's counters.
//!
//! Capabilities: once the probes are attached no thread of the daemon holds any (started as
//! root: the bounding set is emptied too), and the probes keep reporting; started as nobody
//! with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (what the systemd unit grants), the probes attach
//! too; with CAP_BPF and CAP_PERFMON only, under Debian's `perf_event_paranoid = 3`, no kprobe
//! attaches and the daemon says so, naming the sysctl.
//!
//! Traffic: sipp over SCTP sending OPTIONS to the daemon itself (answered 200 by it).

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sipsctp_tests::{
    calls,
    daemon::{
        Daemon, Metrics, daemon_binary, data_file, require_tool, scratch, thread_capabilities,
        try_http,
    },
    kernel_sctp::{NetemOnLo, QuickRto, delta, snmp},
    ports::{daemon_kernel as ports, lo},
    vm_kernel,
};

fn config(sip_port: u16, admin: SocketAddr, mode: &str) -> String {
    calls::config(
        &[
            ("sctp", &["127.0.0.1"], sip_port),
            ("udp", &["127.0.0.1"], sip_port),
        ],
        &[(None, "udp:127.0.0.1:9")],
        admin,
        &format!(
            "[sctp]\nsctp_srto_min = 100\nsctp_srto_initial = 200\nsctp_srto_max = 400\n\
             [ebpf]\nmode = \"{mode}\"\npoll_interval_ms = 200\n"
        ),
    )
}

/// `calls` OPTIONS from sipp over one SCTP association (`-t s1`) to the daemon itself.
fn options_over_sctp(name: &str, sip_port: u16, calls: u32) {
    require_tool("sipp");
    let dir = scratch(&format!("{name}/sipp"));
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(data_file("kernel_options.xml"))
        .args([
            "-t",
            "s1",
            "-i",
            "127.0.0.1",
            "-p",
            &(sip_port + 10).to_string(),
        ])
        .arg(format!("127.0.0.1:{sip_port}"))
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-timeout",
            "120",
            "-timeout_error",
            "-nostdin",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
    assert!(
        out.status.success(),
        "kernel {}: sipp failed ({}):\n{}",
        vm_kernel(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// No thread of `pid` holds a capability (inheritable, permitted, effective, ambient; and
/// the bounding set when `bounding`), and the eBPF loader thread is gone.
fn assert_holds_no_capabilities(pid: u32, bounding: bool) {
    let threads = thread_capabilities(pid);
    assert!(threads.len() > 1, "threads of {pid}: {threads:?}");
    for t in &threads {
        assert_ne!(t.name, "ebpf-attach", "the loader thread is still there");
        let mut sets = vec!["Inh", "Prm", "Eff", "Amb"];
        if bounding {
            sets.push("Bnd");
        }
        for set in sets {
            assert_eq!(
                t.sets.get(set).copied(),
                Some(0),
                "kernel {}: thread {} ({}) still has Cap{set}: {:x?}",
                vm_kernel(),
                t.tid,
                t.name,
                t.sets
            );
        }
    }
}

fn wait_kernel_source(admin: SocketAddr, want: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok((200, body)) = try_http(admin, "GET", "/health", "")
            && let Some(k) = body
                .split("\"kernel\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            && k.starts_with(want)
        {
            return k.to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "kernel {}: the daemon's kernel eyes did not become `{want}` within 60 s",
            vm_kernel()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ebpf_on_shows_the_daemons_own_retransmissions_and_association() {
    let admin = lo(ports::ON_ADMIN);
    let port = ports::ON_SIP;
    let d = Daemon::start("kernel_on", admin, &config(port, admin, "on"));
    wait_kernel_source(admin, "ebpf");
    let m = d.metrics();
    assert_eq!(m.sum("sipsctp_kernel_source", &[("source", "ebpf")]), 1);
    for line in m
        .nonzero()
        .lines()
        .filter(|l| l.starts_with("sipsctp_ebpf_probe_up"))
    {
        assert!(line.ends_with(" 1"), "a probe is down: {line}");
    }
    assert!(m.sum("sipsctp_ebpf_probe_up", &[]) >= 12, "{}", m.nonzero());

    let before = snmp();
    {
        let _loss = NetemOnLo::add(&["loss", "10%"]);
        let _rto = QuickRto::set();
        options_over_sctp("kernel_on", port, 150);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = snmp();
    let m = d.metrics();
    let ours = m.sum("sipsctp_kernel_retransmissions_total", &[]);
    let kernel =
        delta(&before, &after, "SctpT3Retransmits") + delta(&before, &after, "SctpFastRetransmits");
    assert!(
        ours > 0,
        "no retransmission seen under 10% loss; kernel counted {kernel}"
    );
    // The daemon sees its own side only (local port = its listener); the kernel counts both.
    assert!(ours <= kernel, "eBPF {ours} > kernel {kernel}");
    assert_eq!(
        m.sum(
            "sipsctp_kernel_association_events_total",
            &[("event", "comm_up")]
        ),
        1
    );
    assert_eq!(m.value("sipsctp_ebpf_events_lost_total"), 0);
    assert!(m.value("sipsctp_kernel_rto_seconds_count") > 0);
    // Skipped probe runs: a series per probe where the kernel counts them (6.7 and later; the
    // daemon reads them every second), none where it does not, and the log says so.
    let skipped: Vec<&str> = m
        .text
        .lines()
        .filter(|l| l.starts_with("sipsctp_ebpf_probe_runs_skipped_total{"))
        .collect();
    let counted = vm_kernel() != "6.1";
    if counted {
        assert!(
            skipped.len() >= 12 && skipped.iter().any(|l| l.contains("probe=\"retransmit\"")),
            "kernel {}: a skipped-runs series per probe: {skipped:?}",
            vm_kernel()
        );
    } else {
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(
            d.stderr()
                .contains("does not count the probe runs it skips"),
            "kernel {}: the log says skipped runs go uncounted",
            vm_kernel()
        );
    }
    let (status, body) = d.get("/kernel/events?limit=5");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("\"local_port\":").count(), 5, "{body}");
    assert_eq!(
        body.matches(&format!("\"local_port\":{port}")).count(),
        5,
        "only the daemon's: {body}"
    );
    let (status, _) = d.get("/kernel/events?limit=nope");
    assert_eq!(status, 400);
    // Everything above was read after the capabilities were dropped.
    assert_holds_no_capabilities(d.pid(), true);
    let (_, health) = d.get("/health");
    assert!(health.contains("\"capabilities\":\"none\""), "{health}");
    let stderr = d.stderr();
    assert!(
        stderr.contains("capabilities dropped") && !stderr.contains("cannot read the eBPF"),
        "{stderr}"
    );
    eprintln!(
        "kernel {}: eBPF retransmissions {ours} (the kernel counted {kernel} on both sides)",
        vm_kernel()
    );
}

#[test]
fn ebpf_off_polls_the_kernel_counters() {
    let admin = lo(ports::OFF_ADMIN);
    let port = ports::OFF_SIP;
    let d = Daemon::start("kernel_off", admin, &config(port, admin, "off"));
    let why = wait_kernel_source(admin, "poll");
    assert!(why.contains("off in the configuration"), "{why}");
    assert!(
        d.stderr().contains("eBPF off (configured)"),
        "{}",
        d.stderr()
    );
    // The snmp counters are namespace-wide: start from a quiet namespace (nothing left over
    // from earlier tests), and let a poll pass.
    let idle = sipsctp_tests::daemon::wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string("/proc/net/sctp/assocs")
            .map(|t| t.lines().count() <= 1)
            .unwrap_or(false)
    });
    assert!(idle, "SCTP associations left by earlier tests");
    std::thread::sleep(Duration::from_millis(500));
    let m0 = d.metrics();
    let before = snmp();
    {
        let _loss = NetemOnLo::add(&["loss", "10%"]);
        let _rto = QuickRto::set();
        options_over_sctp("kernel_off", port, 150);
    }
    // Data still in flight is retransmitted after the loss ends (the RTO is a second or more):
    // count up to the end of the last association, then let a poll pass.
    let idle = sipsctp_tests::daemon::wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string("/proc/net/sctp/assocs")
            .map(|t| t.lines().count() <= 1)
            .unwrap_or(false)
    });
    assert!(idle, "the test's associations did not end");
    let after = snmp();
    std::thread::sleep(Duration::from_millis(800));
    let m1 = d.metrics();
    assert_eq!(m1.sum("sipsctp_kernel_source", &[("source", "poll")]), 1);
    let grew = |m: &Metrics, m0: &Metrics, reason: &str| {
        m.sum(
            "sipsctp_kernel_retransmissions_total",
            &[("reason", reason)],
        ) - m0.sum(
            "sipsctp_kernel_retransmissions_total",
            &[("reason", reason)],
        )
    };
    // Host-wide counters, polled every 200 ms: equal to the kernel's over the same interval
    // (nothing else runs SCTP in the VM meanwhile).
    assert_eq!(
        grew(&m1, &m0, "t3_rtx"),
        delta(&before, &after, "SctpT3Retransmits")
    );
    assert_eq!(
        grew(&m1, &m0, "fast_rtx"),
        delta(&before, &after, "SctpFastRetransmits")
    );
    assert!(
        m1.value("sipsctp_kernel_rto_seconds_count") > 0,
        "no per-association getsockopt poll"
    );
    assert_eq!(m1.sum("sipsctp_ebpf_probe_up", &[]), 0);
}

#[test]
fn unprivileged_auto_says_why_and_falls_back() {
    require_tool("setpriv");
    let admin = lo(ports::AUTO_ADMIN);
    let port = ports::AUTO_SIP;
    let dir = scratch("kernel_unprivileged");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config(port, admin, "auto")).unwrap();
    let log = dir.join("stderr.log");
    let mut child = as_nobody_with(&[], &cfg, &log);
    let why = wait_kernel_source(admin, "poll");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(why.starts_with("poll: eBPF unavailable:"), "{why}");
    assert!(stderr.contains("eBPF unavailable"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("kernel {}: unprivileged: {why}", vm_kernel());
}

#[test]
fn nobody_with_the_units_capabilities_attaches_then_holds_nothing() {
    require_tool("setpriv");
    let admin = lo(ports::CAPABILITIES_ADMIN);
    let port = ports::CAPABILITIES_SIP;
    let dir = scratch("kernel_capabilities");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config(port, admin, "on")).unwrap();
    let log = dir.join("stderr.log");
    // What the systemd unit grants (its AmbientCapabilities, CAP_NET_BIND_SERVICE aside).
    let mut child = as_nobody_with(&["bpf", "perfmon", "sys_admin"], &cfg, &log);
    let source = std::panic::catch_unwind(|| wait_kernel_source(admin, "ebpf"));
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    if source.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "kernel {}: no eBPF as nobody with CAP_BPF+CAP_PERFMON:\n{}",
            vm_kernel(),
            stderr()
        );
    }
    let pid = child.id();
    let checks = std::panic::catch_unwind(|| {
        assert_holds_no_capabilities(pid, false);
        let (_, metrics) = try_http(admin, "GET", "/metrics", "").expect("GET /metrics");
        let m = Metrics::parse(&metrics);
        assert!(m.sum("sipsctp_ebpf_probe_up", &[]) >= 12, "{}", m.nonzero());
        options_over_sctp("kernel_capabilities", port, 5);
        std::thread::sleep(Duration::from_millis(500));
        let (status, body) = try_http(admin, "GET", "/metrics", "").expect("GET /metrics");
        assert_eq!(status, 200);
        let m = Metrics::parse(&body);
        assert_eq!(
            m.sum(
                "sipsctp_kernel_association_events_total",
                &[("event", "comm_up")]
            ),
            1,
            "{}",
            m.nonzero()
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    let stderr = stderr();
    if let Err(e) = checks {
        eprintln!("--- sipsctpd stderr ---\n{stderr}");
        std::panic::resume_unwind(e);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `sipsctpd --config cfg` as nobody with only the capabilities `caps` (setpriv names, e.g.
/// `bpf`) inheritable and ambient, its stderr to `log`.
fn as_nobody_with(
    caps: &[&str],
    cfg: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    let caps: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(daemon_binary())
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sipsctpd as nobody")
}

#[test]
fn cap_perfmon_alone_under_perf_event_paranoid_3_falls_back_and_names_the_sysctl() {
    require_tool("setpriv");
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .expect("perf_event_paranoid")
        .trim()
        .parse::<i32>()
        .expect("a number");
    let admin = lo(ports::PERFMON_ADMIN);
    let dir = scratch("kernel_perfmon_only");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config(ports::PERFMON_SIP, admin, "auto")).unwrap();
    let log = dir.join("stderr.log");
    let mut child = as_nobody_with(&["bpf", "perfmon"], &cfg, &log);
    let source = std::panic::catch_unwind(|| {
        wait_kernel_source(admin, if paranoid >= 3 { "poll" } else { "ebpf" })
    });
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let Ok(source) = source else {
        panic!(
            "kernel {}: perf_event_paranoid {paranoid}, CAP_BPF+CAP_PERFMON: unexpected kernel \
             source:\n{stderr}",
            vm_kernel()
        );
    };
    if paranoid >= 3 {
        assert!(
            source.contains("no probe could be attached") && source.contains("perf_event_paranoid"),
            "{source}"
        );
    }
    eprintln!(
        "kernel {}: perf_event_paranoid {paranoid}, CAP_BPF+CAP_PERFMON: {source}",
        vm_kernel()
    );
}
