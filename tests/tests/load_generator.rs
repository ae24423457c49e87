//! `sipsctp-load` over kernel SCTP, inside the VM (the host has no SCTP): its UAC against its
//! UAS directly, on one-to-many sockets (one trunk association per connection) and on
//! one-to-one associations (tokio-sctp), and through sipsctpd SCTP -> SCTP. Every call must
//! complete; the rates here are modest (the benchmark, `cargo xtask bench system`, finds the
//! limits), what is checked is that the generator works and reports what happened.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use serde_json::Value;
use sipsctp_tests::{
    calls::config,
    daemon::{Daemon, Peer, load_binary, scratch, tail, wait_until},
    kernel_sctp::sctp_listens,
    ports::{lo, load_generator as ports},
    require_sctp_blocking, vm_kernel,
};

/// The UAS on `port` with `style`; returns once it listens.
fn uas(dir: &Path, style: &str, port: u16) -> Peer {
    let mut c = Command::new(load_binary());
    c.args(["uas", "--transport", "sctp", "--sctp-style", style])
        .args(["--listen", &lo(port).to_string()]);
    let mut p = Peer::spawn(
        &format!("sipsctp-load uas ({style})"),
        c,
        dir.join("uas.log"),
    );
    let up = wait_until(Duration::from_secs(10), || {
        p.assert_running();
        sctp_listens(port)
    });
    assert!(up, "the UAS does not listen:\n{}", tail(&p.output(), 20));
    p
}

/// Runs the UAC (`calls` per second for `secs`) and returns its JSON result.
fn uac(
    dir: &Path,
    style: &str,
    local: u16,
    target: SocketAddr,
    rate: u32,
    secs: u32,
    connections: u32,
) -> Value {
    let json = dir.join(format!("uac-{local}.json"));
    let out = Command::new(load_binary())
        .args(["uac", "--transport", "sctp", "--sctp-style", style])
        .args(["--target", &target.to_string()])
        .args(["--local", &lo(local).to_string()])
        .args(["--scenario", "call", "--rate", &rate.to_string()])
        .args(["--step-secs", &secs.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--timeout-ms", "8000"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run sipsctp-load uac");
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipsctp-load uac ({style}): {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the UAC's JSON ({e}): {text}"))
}

/// Every call offered completed, none failed.
fn assert_all_completed(v: &Value, what: &str) -> u64 {
    let t = &v["totals"];
    let offered = t["offered"].as_u64().unwrap_or(0);
    assert!(
        offered > 0
            && t["completed"].as_u64() == Some(offered)
            && t["failed_total"].as_u64() == Some(0),
        "kernel {}: {what}: {t}",
        vm_kernel()
    );
    assert!(
        t["latency_us"]["setup"]["count"].as_u64() == Some(offered),
        "every call has a setup latency: {t}"
    );
    offered
}

#[test]
fn the_generator_places_calls_over_one_to_many_and_one_to_one_sctp() {
    require_sctp_blocking();
    for (style, uas_port, uac_port) in [
        ("one-to-many", ports::MANY_UAS, ports::MANY_UAC),
        ("one-to-one", ports::ONE_UAS, ports::ONE_UAC),
    ] {
        let dir = scratch(&format!("load-{style}"));
        let mut server = uas(&dir, style, uas_port);
        let v = uac(&dir, style, uac_port, lo(uas_port), 200, 3, 2);
        let n = assert_all_completed(&v, &format!("sipsctp-load {style} directly"));
        server.assert_running();
        eprintln!(
            "kernel {}: sipsctp-load {style}: {n} calls, setup p99 {} us",
            vm_kernel(),
            v["totals"]["latency_us"]["setup"]["p99"]
        );
    }
}

#[test]
fn the_generator_places_calls_through_sipsctpd_sctp_to_sctp() {
    require_sctp_blocking();
    let dir = scratch("load-relay");
    let _server = uas(&dir, "one-to-many", ports::RELAY_UAS);
    let admin = lo(ports::RELAY_ADMIN);
    let d = Daemon::start(
        "load-relay",
        admin,
        &config(
            &[("sctp", &["127.0.0.1"], ports::RELAY)],
            &[(None, &format!("sctp:127.0.0.1:{}", ports::RELAY_UAS))],
            admin,
            "[ebpf]\nmode = \"off\"\n",
        ),
    );
    let v = uac(
        &dir,
        "one-to-many",
        ports::RELAY_UAC,
        lo(ports::RELAY),
        100,
        3,
        1,
    );
    let n = assert_all_completed(&v, "sipsctp-load through sipsctpd SCTP -> SCTP");
    let m = d.metrics();
    assert_eq!(
        m.requests("INVITE", "sctp", "out"),
        n,
        "every INVITE went through the relay\n{}",
        m.nonzero()
    );
    eprintln!(
        "kernel {}: sipsctp-load through sipsctpd: {n} calls, setup p99 {} us",
        vm_kernel(),
        v["totals"]["latency_us"]["setup"]["p99"]
    );
}
