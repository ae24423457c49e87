//! sipsctpd's operational hardening (review L1, L2, L3), in the VM (as root):
//!
//! - L1: a peer that opens and closes 100 SCTP associations in a row, each from a new port,
//!   gets at most one "SCTP association" line per kind (up, its SHUTDOWN, down) a second in
//!   the log, the lines saying how many were held back; the metrics count all 100. With the
//!   probes attached (`mode = "on"`), `sipsctp_ebpf_malformed_records_total` (L2) is exported
//!   and 0. Started as root outside systemd, the daemon warns that it keeps uid 0 (L3).
//! - L3: an eBPF loader that does not attach the probes within `[ebpf] attach_timeout_ms`
//!   stops the daemon with the start-up exit code (4) and says why, with `mode = "on"` and
//!   with `mode = "auto"` (where it would otherwise fall back to polling beside a thread that
//!   keeps CAP_SYS_ADMIN); a capability drop the kernel refuses (`capset` failing with EPERM
//!   under a seccomp filter) stops it too (exit 4) instead of a warning.

use std::{
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sipsctp_tests::{
    calls,
    daemon::{Daemon, daemon_binary, scratch, tail, wait_until},
    ports::{daemon_ops as ports, lo},
    require_sctp, vm_kernel,
};

fn config(sip_port: u16, admin: SocketAddr, ebpf: &str) -> String {
    calls::config(
        &[("sctp", &["127.0.0.1"], sip_port)],
        &[(None, "sctp:127.0.0.1:9")],
        admin,
        &format!("[ebpf]\n{ebpf}\n"),
    )
}

/// The `not_logged_since_last=N` of a log line (0 when absent).
fn held_back(line: &str) -> u64 {
    line.split("not_logged_since_last=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_churning_sctp_peer_does_not_flood_the_log() {
    let admin = lo(ports::CHURN_ADMIN);
    let port = ports::CHURN_SIP;
    let d = Daemon::start("ops_churn", admin, &config(port, admin, "mode = \"on\""));
    const N: u64 = 100;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        require_sctp();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for i in 0..N {
            let s = tokio_sctp::SctpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("association {i}: {e}"));
            drop(s);
        }
    });
    let counted = wait_until(Duration::from_secs(20), || {
        let m = d.metrics();
        m.value("sipsctp_sctp_established_total") == N
            && m.value("sipsctp_sctp_current_opened_connections") == 0
    });
    let elapsed = t0.elapsed();
    let m = d.metrics();
    assert!(
        counted,
        "kernel {}: {N} associations not all counted up and down:\n{}",
        vm_kernel(),
        m.nonzero()
    );
    let log = d.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SCTP association"))
        .collect();
    // Up, the peer's SHUTDOWN and down: one line each a second at most (plus the first).
    let bound = 3 * (elapsed.as_secs() + 2);
    eprintln!(
        "kernel {}: {N} associations in {} ms: {} association lines (bound {bound})",
        vm_kernel(),
        elapsed.as_millis(),
        lines.len()
    );
    assert!(
        lines.len() as u64 <= bound,
        "kernel {}: {} 'SCTP association' lines for {N} associations from one peer in {} ms \
         (at most {bound}):\n{}",
        vm_kernel(),
        lines.len(),
        elapsed.as_millis(),
        tail(&lines.join("\n"), 10)
    );
    // The held-back counts add up: every up is accounted for by a line or a count (the last
    // ones held back may not have had a line after them yet).
    let ups: Vec<&&str> = lines.iter().filter(|l| l.contains("event=Up")).collect();
    let accounted: u64 = ups.iter().map(|l| 1 + held_back(l)).sum();
    assert!(
        !ups.is_empty() && accounted <= N,
        "{} Up lines accounting for {accounted} of {N}",
        ups.len()
    );
    // L2: exported, and no record failed to decode; the probes are what feeds the metrics.
    assert!(m.has("sipsctp_ebpf_malformed_records_total"), "{}", m.text);
    assert_eq!(m.value("sipsctp_ebpf_malformed_records_total"), 0);
    assert_eq!(
        m.sum("sipsctp_kernel_source", &[("source", "ebpf")]),
        1,
        "{}",
        m.nonzero()
    );
    // L3: root outside systemd is warned about.
    assert!(
        log.contains("running as uid 0") && log.contains("root-owned files"),
        "no warning about uid 0:\n{}",
        tail(&log, 20)
    );
}

/// Runs the daemon on `config` (in a scratch dir `name`), with `pre` applied in the child
/// before exec; waits up to 60 s for it to exit. Its exit code, stderr and how long it ran.
fn run_to_exit(
    name: &str,
    config: &str,
    pre: Option<fn() -> std::io::Result<()>>,
) -> (Option<i32>, String, Duration) {
    let dir = scratch(name);
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(daemon_binary());
    cmd.arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    if let Some(pre) = pre {
        // SAFETY: `pre` only makes prctl(2) calls, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(pre);
        }
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("start sipsctpd");
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    (status.and_then(|s| s.code()), stderr, t0.elapsed())
}

#[test]
fn an_ebpf_loader_slower_than_its_timeout_stops_the_daemon() {
    for (mode, admin, port) in [
        ("on", ports::TIMEOUT_ON_ADMIN, ports::TIMEOUT_ON_SIP),
        ("auto", ports::TIMEOUT_AUTO_ADMIN, ports::TIMEOUT_AUTO_SIP),
    ] {
        let admin = lo(admin);
        // Attaching takes seconds (HZ alone is measured over 200 ms).
        let cfg = config(
            port,
            admin,
            &format!("mode = \"{mode}\"\nattach_timeout_ms = 100"),
        );
        let (code, stderr, took) = run_to_exit(&format!("ops_attach_{mode}"), &cfg, None);
        eprintln!(
            "kernel {}: mode {mode}, attach_timeout_ms 100: exit {code:?} after {} ms",
            vm_kernel(),
            took.as_millis()
        );
        assert_eq!(
            code,
            Some(4),
            "kernel {}: mode = {mode}: exit code (4 = start-up failure); stderr:\n{}",
            vm_kernel(),
            tail(&stderr, 20)
        );
        assert!(
            stderr.contains("did not attach the probes within 100ms")
                && stderr.contains("attach_timeout_ms"),
            "mode = {mode}: the reason names the timeout:\n{}",
            tail(&stderr, 20)
        );
    }
}

/// A seccomp filter making capset(2) fail with EPERM (the daemon can then not drop its
/// capabilities); x86_64 only, like the project.
fn deny_capset() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut filter = [
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        op(RET_K, 0, 0, ALLOW),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 0, 1, libc::SYS_capset as u32),
        op(RET_K, 0, 0, errno),
        op(RET_K, 0, 0, ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl(2) with integer arguments, then with a pointer to `prog`, which lives
    // across the call (the kernel copies the filter).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn a_refused_capability_drop_stops_the_daemon() {
    let admin = lo(ports::CAPSET_ADMIN);
    let cfg = config(ports::CAPSET_SIP, admin, "mode = \"off\"");
    let (code, stderr, _) = run_to_exit("ops_capset", &cfg, Some(deny_capset));
    assert_eq!(
        code,
        Some(4),
        "kernel {}: capset refused: exit code (4 = start-up failure); stderr:\n{}",
        vm_kernel(),
        tail(&stderr, 20)
    );
    assert!(
        stderr.contains("cannot drop capabilities") && stderr.contains("capset"),
        "the reason names the refused call:\n{}",
        tail(&stderr, 20)
    );
    assert!(
        !stderr.contains("sipsctpd started"),
        "it must not start:\n{}",
        tail(&stderr, 20)
    );
    eprintln!(
        "kernel {}: capset refused: exit 4: {}",
        vm_kernel(),
        tail(&stderr, 1)
    );
}
