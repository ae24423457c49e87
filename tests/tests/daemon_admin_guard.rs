//! sipsctpd's admin API against hostile clients (hardening review M3), in the VM:
//!
//! - slowloris: 2000 connections that each send half a request header and then nothing. The
//!   daemon holds at most 64 admin connections (the rest are closed at once and counted in
//!   `sipsctp_admin_connections_rejected_total`) and closes one whose header is not complete
//!   within 5 s; so every one of the 2000 is closed within the header timeout plus a margin,
//!   `GET /health` answers on a new connection within 10 s of the flood (the 5 s timeout plus
//!   margin for the emulated CPUs), and an idle connection (nothing sent, or idle after a
//!   request) is closed too;
//! - with a token configured, every endpoint but `GET /health` needs it (401 without, 403 with
//!   a wrong one), reads included;
//! - without a token, a request whose `Host` (or absolute request target) is not a loopback name
//!   or address nor the listen address gets 403 (DNS rebinding), `/health` included.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use sipsctp_tests::{
    calls,
    daemon::{Daemon, Metrics, try_http, try_http_with, wait_until},
    ports::{daemon_admin_guard as ports, lo},
    vm_kernel,
};

/// The daemon's limits (`transport/daemon/src/admin.rs`).
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack for the emulated CPUs of the VM on top of the header timeout.
const MARGIN: Duration = Duration::from_secs(5);

const TOKEN: &str = "guard-token-0123";

fn config(sip_port: u16, admin: SocketAddr, token: Option<&str>) -> String {
    let token = token
        .map(|t| format!("token = \"{t}\"\n"))
        .unwrap_or_default();
    calls::config(
        &[
            ("sctp", &["127.0.0.1"], sip_port),
            ("udp", &["127.0.0.1"], sip_port),
        ],
        &[(None, "udp:127.0.0.1:9")],
        admin,
        &format!("{token}[ebpf]\nmode = \"off\"\n"),
    )
}

/// Raises this process's open-file limit to at least `n` (the daemon, started before, keeps
/// its own).
fn raise_nofile(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    if l.rlim_cur >= n {
        return;
    }
    l.rlim_cur = n;
    l.rlim_max = l.rlim_max.max(n);
    // SAFETY: setrlimit reads the struct we own. Raising the hard limit needs root (the VM's
    // tests run as root).
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
    assert_eq!(
        rc,
        0,
        "raise RLIMIT_NOFILE to {n}: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether the daemon closed the nonblocking `s` (EOF or reset); `false` while it is open.
/// With `silent`, panics if the daemon sent anything (it must not answer half a header);
/// otherwise what it sent is read and skipped.
fn closed(s: &mut TcpStream, silent: bool) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if silent => panic!(
                "the daemon answered a half header: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_connections_are_capped_and_timed_out() {
    let admin = lo(ports::SLOWLORIS_ADMIN);
    let d = Daemon::start(
        "admin_slowloris",
        admin,
        &config(ports::SLOWLORIS_SIP, admin, None),
    );
    raise_nofile(8192);
    const N: usize = 2000;
    let mut conns: Vec<(TcpStream, Instant, Option<Instant>)> = Vec::with_capacity(N);
    let mut refused = 0;
    let t0 = Instant::now();
    for _ in 0..N {
        // A burst can overflow the accept queue for a moment: the kernel drops the SYN and the
        // client sends it again after 1 s, then 3 s.
        match TcpStream::connect_timeout(&admin, Duration::from_secs(5)) {
            Ok(mut s) => {
                let at = Instant::now();
                // Half a header: no blank line, ever.
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1");
                s.set_nonblocking(true).expect("nonblocking");
                conns.push((s, at, None));
            }
            // The daemon no longer accepts and its backlog is full: each further try would
            // wait its 5 s out.
            Err(_) if refused >= 10 => break,
            Err(_) => refused += 1,
        }
    }
    let flood_end = Instant::now();
    eprintln!(
        "kernel {}: {} half-header connections opened in {} ms ({refused} refused or timed out); \
         the daemon's {}",
        vm_kernel(),
        conns.len(),
        (flood_end - t0).as_millis(),
        std::fs::read_to_string(format!("/proc/{}/limits", d.pid()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("open-file limit: unknown")
    );

    // A new connection gets /health once the held ones time out; meanwhile the daemon closes
    // every half-header connection: at once (over the cap) or at the header timeout.
    let mut health = None;
    let mut health_tries = 0;
    let all_closed = wait_until(HEADER_TIMEOUT + MARGIN, || {
        let now = Instant::now();
        for (s, _, at) in conns.iter_mut().filter(|c| c.2.is_none()) {
            if closed(s, true) {
                *at = Some(now);
            }
        }
        if health.is_none() {
            health_tries += 1;
            if health_answers(admin) {
                health = Some(flood_end.elapsed());
            }
        }
        health.is_some() && conns.iter().all(|c| c.2.is_some())
    });
    let open = conns.iter().filter(|c| c.2.is_none()).count();
    assert!(
        open == 0,
        "kernel {}: {open} of {} half-header connections still open {} ms after the flood \
         (header timeout {HEADER_TIMEOUT:?}); log:\n{}",
        vm_kernel(),
        conns.len(),
        flood_end.elapsed().as_millis(),
        sipsctp_tests::daemon::tail(&d.stderr(), 20)
    );
    let Some(health) = health else {
        panic!(
            "kernel {}: GET /health did not answer within {:?} of the flood; log:\n{}",
            vm_kernel(),
            HEADER_TIMEOUT + MARGIN,
            sipsctp_tests::daemon::tail(&d.stderr(), 20)
        );
    };
    assert!(all_closed);
    eprintln!(
        "GET /health answered {} ms after the flood",
        health.as_millis()
    );
    assert_eq!(
        (refused, conns.len()),
        (0, N),
        "connections to the admin API refused or timed out"
    );
    // Those closed late were held (at most 64 at a time) until the header timeout; the rest
    // were refused at once and counted.
    let late = conns
        .iter()
        .filter(|(_, opened, at)| {
            at.is_some_and(|at| at - *opened >= HEADER_TIMEOUT - Duration::from_millis(500))
        })
        .count();
    let (status, text) = try_http(admin, "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    let m = Metrics::parse(&text);
    let rejected = m.value("sipsctp_admin_connections_rejected_total") as usize;
    eprintln!(
        "{late} closed at the header timeout, {rejected} rejected at the cap \
         ({health_tries} GET /health tries)"
    );
    // The first 64 are held; the flood's others and the /health tries may be rejected.
    assert!(
        rejected >= 1 && rejected <= N - MAX_CONNECTIONS + health_tries,
        "rejected {rejected}: the first {MAX_CONNECTIONS} are held, the flood exceeds them"
    );
    assert!(
        rejected + late >= N,
        "rejected {rejected} + closed at the timeout {late} < {N}: some connection was closed \
         early without being counted"
    );
    // The /metrics request is the one admin connection open now.
    assert_eq!(m.value("sipsctp_admin_connections"), 1, "{}", m.nonzero());

    // Idle connections are closed too: one that never sends, one idle after a request.
    let mut silent = TcpStream::connect(admin).expect("connect");
    silent.set_nonblocking(true).unwrap();
    let mut idle = TcpStream::connect(admin).expect("connect");
    write!(
        idle,
        "GET /health HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let t = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 4096];
    let n = idle.read(&mut answer).expect("the /health answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    idle.set_nonblocking(true).unwrap();
    let mut closed_at = [None, None];
    let both = wait_until(HEADER_TIMEOUT + MARGIN, || {
        for (i, s) in [&mut silent, &mut idle].into_iter().enumerate() {
            if closed_at[i].is_none() && closed(s, i == 0) {
                closed_at[i] = Some(t.elapsed());
            }
        }
        closed_at.iter().all(Option::is_some)
    });
    assert!(
        both,
        "idle admin connections not closed within {:?}: {closed_at:?}",
        HEADER_TIMEOUT + MARGIN
    );
    eprintln!("idle connections closed after {closed_at:?}");
    for at in closed_at.into_iter().flatten() {
        assert!(
            at >= HEADER_TIMEOUT - Duration::from_millis(500),
            "an idle connection was closed after {at:?}, before the {HEADER_TIMEOUT:?} timeout"
        );
    }
}

/// Whether `GET /health` answers 200 on a new connection within a second or two.
fn health_answers(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200") && text.contains("\"ok\"")
}

/// A raw request with exactly these header lines (no Host unless given); the status.
fn raw(addr: SocketAddr, request_line: &str, headers: &[&str], body: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{request_line}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{request_line}: no status in {text:?}"))
}

/// Every endpoint, with the status it answers an authorized request.
const ENDPOINTS: [(&str, &str, &str, u16); 8] = [
    ("GET", "/metrics", "", 200),
    ("GET", "/sctp/info", "", 200),
    ("GET", "/sctp/options", "", 200),
    ("GET", "/sctp/options?kernel=1", "", 200),
    ("GET", "/sctp/assocs", "", 200),
    ("GET", "/kernel/events?limit=5", "", 200),
    ("PUT", "/cfg/sctp/sctp_sack_delay?scope=future", "150", 200),
    ("GET", "/no/such/endpoint", "", 404),
];

#[test]
fn with_a_token_every_endpoint_but_health_needs_it() {
    let admin = lo(ports::TOKEN_ADMIN);
    let _d = Daemon::start(
        "admin_token_all",
        admin,
        &config(ports::TOKEN_SIP, admin, Some(TOKEN)),
    );
    let bearer = format!("Bearer {TOKEN}");
    for (method, path, body, ok) in ENDPOINTS {
        let no = try_http_with(admin, method, path, &[], body).expect("request");
        assert_eq!(no.0, 401, "{method} {path} without a token: {}", no.1);
        let wrong = try_http_with(
            admin,
            method,
            path,
            &[("Authorization", "Bearer not-the-token")],
            body,
        )
        .expect("request");
        assert_eq!(
            wrong.0, 403,
            "{method} {path} with a wrong token: {}",
            wrong.1
        );
        let right = try_http_with(admin, method, path, &[("Authorization", &bearer)], body)
            .expect("request");
        assert_eq!(right.0, ok, "{method} {path} with the token: {}", right.1);
        // The token is for the admin API, not for a name: any Host is fine with it.
        let other_host = try_http_with(
            admin,
            method,
            path,
            &[("Authorization", &bearer), ("Host", "admin.example.net")],
            body,
        )
        .expect("request");
        assert_eq!(other_host.0, ok, "{method} {path}: {}", other_host.1);
    }
    let (status, body) = try_http(admin, "GET", "/health", "").expect("GET /health");
    assert_eq!(status, 200, "GET /health needs no token: {body}");
    eprintln!(
        "kernel {}: token rules checked on {} endpoints",
        vm_kernel(),
        ENDPOINTS.len()
    );
}

#[test]
fn without_a_token_the_host_must_be_local() {
    let admin = lo(ports::HOST_ADMIN);
    let _d = Daemon::start(
        "admin_host_check",
        admin,
        &config(ports::HOST_SIP, admin, None),
    );
    let port = admin.port();
    let all = ENDPOINTS
        .iter()
        .copied()
        .chain([("GET", "/health", "", 200)]);
    for (method, path, body, ok) in all {
        for host in [
            format!("127.0.0.1:{port}"),
            "127.0.0.1".to_owned(),
            format!("localhost:{port}"),
            "LocalHost".to_owned(),
            format!("[::1]:{port}"),
            format!("127.0.0.7:{port}"),
        ] {
            let s = raw(
                admin,
                &format!("{method} {path} HTTP/1.1"),
                &[&format!("Host: {host}")],
                body,
            );
            assert_eq!(s, ok, "{method} {path} with Host: {host}");
        }
        for host in [
            format!("rebind.example.com:{port}"),
            "rebind.example.com".to_owned(),
            format!("localhost.example.com:{port}"),
            format!("10.1.2.3:{port}"),
            format!("127.0.0.1.example.com:{port}"),
        ] {
            let s = raw(
                admin,
                &format!("{method} {path} HTTP/1.1"),
                &[&format!("Host: {host}")],
                body,
            );
            assert_eq!(s, 403, "{method} {path} with Host: {host}");
        }
        // No Host at all, two of them, or an absolute target naming another host.
        let line = format!("{method} {path} HTTP/1.1");
        assert_eq!(
            raw(admin, &line, &[], body),
            403,
            "{method} {path} without Host"
        );
        assert_eq!(
            raw(
                admin,
                &line,
                &[
                    &format!("Host: 127.0.0.1:{port}"),
                    "Host: rebind.example.com"
                ],
                body
            ),
            403,
            "{method} {path} with two Hosts"
        );
        assert_eq!(
            raw(
                admin,
                &format!("{method} http://rebind.example.com:{port}{path} HTTP/1.1"),
                &[&format!("Host: 127.0.0.1:{port}")],
                body
            ),
            403,
            "{method} {path} with an absolute target naming another host"
        );
    }
    eprintln!("kernel {}: Host rules checked", vm_kernel());
}
