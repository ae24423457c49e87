//! sipsctpd's admin API writes and its configuration life, in the VM: `PUT /cfg/sctp/{name}`
//! with the bearer token (refused without it or with a wrong one), the kernel's values read back
//! through `GET /sctp/options?kernel=1`, read-only and unknown parameters refused, SIGHUP
//! reloading routes and runtime parameters (and refusing a bad file), and SIP over TCP relayed
//! to a UDP upstream (sipp `-t t1` -> sipsctpd -> sipp UAS over UDP).

use std::{net::SocketAddr, time::Duration};

use sipsctp_tests::{
    calls,
    daemon::{Daemon, Peer, run_tool, scratch, sipp, sipp_totals, tail, udp_ports, wait_until},
    ports::{daemon_admin as ports, lo},
    vm_kernel,
};

const TOKEN: &str = "s3cret-admin-token";

fn config(sip_port: u16, admin: SocketAddr, srto_initial: i64, upstream_port: u16) -> String {
    calls::config(
        &[
            ("sctp", &["127.0.0.1"], sip_port),
            ("udp", &["127.0.0.1"], sip_port),
            ("tcp", &["127.0.0.1"], sip_port),
        ],
        &[(None, &format!("udp:127.0.0.1:{upstream_port}"))],
        admin,
        &format!(
            "token = \"{TOKEN}\"\n[sctp]\nsctp_srto_initial = {srto_initial}\n[ebpf]\nmode = \"off\"\n"
        ),
    )
}

fn put(admin: SocketAddr, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(admin).expect("connect to the admin API");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn option_value(json: &str, section: &str, name: &str) -> Option<i64> {
    let part = json.split(&format!("\"{section}\":")).nth(1)?;
    let v = part.split(&format!("\"{name}\":")).nth(1)?;
    v.split([',', '}']).next()?.trim().parse().ok()
}

#[test]
fn runtime_changes_need_the_token_and_reach_the_kernel() {
    let admin = lo(ports::PUT_ADMIN);
    let daemon = Daemon::start("admin_put", admin, &config(ports::PUT_SIP, admin, 2000, 9));
    let path = "/cfg/sctp/sctp_srto_initial?scope=all";
    assert_eq!(put(admin, path, "1500", None).0, 401, "no token");
    assert_eq!(
        put(admin, path, "1500", Some("wrong")).0,
        403,
        "wrong token"
    );
    let (status, body) = put(admin, path, "1500", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"value\":1500"), "{body}");
    let (status, body) = daemon.get("/sctp/options?kernel=1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        option_value(&body, "options", "sctp_srto_initial"),
        Some(1500),
        "{body}"
    );
    let kernel = body.split("\"kernel\":").nth(1).unwrap_or_default();
    assert_eq!(
        option_value(kernel, &lo(ports::PUT_SIP).to_string(), "sctp_srto_initial"),
        Some(1500),
        "{body}"
    );
    // Refusals: read-only, unknown, out of range, bad scope, not an integer.
    let (s, b) = put(admin, "/cfg/sctp/sctp_socket_rcvbuf", "4096", Some(TOKEN));
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("cannot be changed at run time"), "{b}");
    assert_eq!(put(admin, "/cfg/sctp/sctp_nope", "1", Some(TOKEN)).0, 404);
    let (s, b) = put(admin, "/cfg/sctp/sctp_sack_delay", "900", Some(TOKEN));
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains("sctp_sack_delay = 900: out of range 0..=500"),
        "{b}"
    );
    assert_eq!(
        put(
            admin,
            "/cfg/sctp/sctp_sack_delay?scope=everywhere",
            "100",
            Some(TOKEN)
        )
        .0,
        400
    );
    assert_eq!(
        put(admin, "/cfg/sctp/sctp_sack_delay", "soon", Some(TOKEN)).0,
        400
    );
    let (_, body) = daemon.get("/sctp/options");
    assert_eq!(
        option_value(&body, "options", "sctp_sack_delay"),
        Some(200),
        "unchanged: {body}"
    );
    eprintln!("kernel {}: admin writes checked", vm_kernel());
}

#[test]
fn sighup_reloads_good_files_and_keeps_the_old_config_on_bad_ones() {
    let admin = lo(ports::HUP_ADMIN);
    let d = Daemon::start("admin_hup", admin, &config(ports::HUP_SIP, admin, 2000, 9));
    let cfg = d.dir.join("config.toml");
    std::fs::write(&cfg, config(ports::HUP_SIP, admin, 2400, 9)).unwrap();
    assert!(d.reload(), "refused:\n{}", tail(&d.stderr(), 10));
    let (_, body) = d.get("/sctp/options?kernel=1");
    assert_eq!(
        option_value(&body, "options", "sctp_srto_initial"),
        Some(2400),
        "SIGHUP did not apply sctp_srto_initial = 2400: {body}\n{}",
        tail(&d.stderr(), 10)
    );
    assert_eq!(
        d.metrics().value("sipsctp_config_last_reload_successful"),
        1
    );
    std::fs::write(&cfg, "[[listen]]\nproto = \"udp\"\nbogus = 1\n").unwrap();
    assert!(!d.reload(), "a file with an unknown key was applied");
    assert!(
        d.stderr().contains("configuration refused"),
        "{}",
        tail(&d.stderr(), 10)
    );
    assert_eq!(
        d.metrics().value("sipsctp_config_last_reload_successful"),
        0
    );
    let (status, body) = d.get("/sctp/options");
    assert_eq!(status, 200);
    assert_eq!(
        option_value(&body, "options", "sctp_srto_initial"),
        Some(2400),
        "{body}"
    );
}

#[test]
fn sip_over_tcp_is_relayed_to_a_udp_upstream() {
    let admin = lo(ports::TCP_ADMIN);
    let (sip_port, uas_port) = (ports::TCP_SIP, ports::TCP_UAS);
    let d = Daemon::start("admin_tcp", admin, &config(sip_port, admin, 2000, uas_port));
    let dir = scratch("admin_tcp/sipp");
    let mut uas_cmd = sipp(&dir, None);
    uas_cmd.args([
        "-sn",
        "uas",
        "-t",
        "u1",
        "-i",
        "127.0.0.1",
        "-p",
        &uas_port.to_string(),
    ]);
    let mut uas = Peer::spawn("sipp UAS over UDP", uas_cmd, dir.join("uas.log"));
    assert!(
        wait_until(Duration::from_secs(10), || {
            uas.assert_running();
            udp_ports().contains(&uas_port)
        }),
        "the sipp UAS did not open its port"
    );
    let stat = dir.join("uac.csv");
    let mut uac = sipp(&dir, Some(&stat));
    uac.args([
        "-sn",
        "uac",
        "-t",
        "t1",
        "-i",
        "127.0.0.1",
        "-p",
        &ports::TCP_UAC.to_string(),
    ])
    .arg(format!("127.0.0.1:{sip_port}"))
    .args(["-m", "30", "-r", "10", "-timeout", "60", "-timeout_error"]);
    let run = run_tool("uac", uac, &dir, Duration::from_secs(90));
    let (ok, failed) = sipp_totals(&stat);
    assert!(
        run.status.success() && ok == 30 && failed == 0,
        "kernel {}: sipp over TCP: {} {ok} ok {failed} failed\n{}",
        vm_kernel(),
        run.status,
        tail(&run.output, 20)
    );
    let m = d.metrics();
    assert_eq!(m.requests("INVITE", "tcp", "in"), 30);
    assert_eq!(m.requests("INVITE", "udp", "out"), 30);
    assert_eq!(m.requests("BYE", "tcp", "in"), 30);
}
