//! Host integration tests of the binary: a `uac` against a `uas` on loopback over UDP and
//! TCP (every call completes, both sides' JSON agree), and against a UAS that ignores
//! INVITEs or rejects them (timeouts and status failures are reported). SCTP needs kernel
//! SCTP, which the host lacks: it is exercised in the VM.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sipsctp-load");

/// A UAS child process, killed when dropped.
struct Uas {
    child: Child,
    addr: String,
}

impl Drop for Uas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uas(transport: &str, extra: &[&str]) -> Uas {
    let mut child = Command::new(BIN)
        .args([
            "uas",
            "--transport",
            transport,
            "--listen",
            "127.0.0.1:0",
            "--quiet",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start uas");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix(&format!("listening {transport} "))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Uas { child, addr }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sipsctp-load-{}-{name}.json", std::process::id()))
}

fn read_json(p: &PathBuf) -> Value {
    let v = serde_json::from_str(&std::fs::read_to_string(p).expect("json written"))
        .expect("valid json");
    let _ = std::fs::remove_file(p);
    v
}

fn uac(name: &str, transport: &str, target: &str, extra: &[&str]) -> Value {
    let out = tmp(name);
    let status = Command::new(BIN)
        .args([
            "uac",
            "--transport",
            transport,
            "--target",
            target,
            "--quiet",
        ])
        .arg("--json")
        .arg(&out)
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .expect("run uac");
    assert!(status.success(), "uac exited with {status}");
    read_json(&out)
}

fn calls_complete(transport: &str, connections: &str) {
    let uas_json = tmp(&format!("uas-{transport}"));
    let mut server = uas(
        transport,
        &["--duration-secs", "6", "--json", uas_json.to_str().unwrap()],
    );
    let v = uac(
        &format!("calls-{transport}"),
        transport,
        &server.addr.clone(),
        &[
            "--rate",
            "200",
            "--step-secs",
            "2",
            "--connections",
            connections,
        ],
    );
    assert_eq!(v["role"], "uac");
    assert_eq!(v["transport"], transport);
    assert_eq!(v["scenario"], "call");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    for s in [&steps[0], &v["totals"]] {
        assert_eq!(s["offered"], 400, "{s}");
        assert_eq!(s["started"], 400, "{s}");
        assert_eq!(s["completed"], 400, "{s}");
        assert_eq!(s["failed_total"], 0, "{s}");
        assert_eq!(s["retransmissions"], 0, "{s}");
        assert_eq!(s["latency_us"]["setup"]["count"], 400, "{s}");
        assert_eq!(s["latency_us"]["transaction"]["count"], 400, "{s}");
        let p50 = s["latency_us"]["setup"]["p50"].as_u64().unwrap();
        let p99 = s["latency_us"]["transaction"]["p99"].as_u64().unwrap();
        let max = s["latency_us"]["transaction"]["max"].as_u64().unwrap();
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{s}");
        let rate = s["achieved_rate"].as_f64().unwrap();
        assert!((rate - 200.0).abs() < 1e-9, "{s}");
    }
    assert_eq!(v["counters"]["unmatched"], 0);
    assert_eq!(v["counters"]["bad_messages"], 0);
    // INVITE, ACK, BYE out; 100, 200, 200 in.
    assert_eq!(v["counters"]["sent"], 1200);
    assert_eq!(v["counters"]["received"], 1200);

    let status = server.child.wait().expect("uas exits after its duration");
    assert!(status.success());
    let u = read_json(&uas_json);
    assert_eq!(u["role"], "uas");
    assert_eq!(u["received"]["invite"], 400);
    assert_eq!(u["received"]["ack"], 400);
    assert_eq!(u["received"]["bye"], 400);
    assert_eq!(u["received"]["bad"], 0);
    assert_eq!(u["sent"], 1200);
}

#[test]
fn udp_calls_complete() {
    calls_complete("udp", "1");
}

#[test]
fn tcp_calls_complete_over_two_connections() {
    calls_complete("tcp", "2");
}

#[test]
fn ignored_invites_time_out_after_retransmissions() {
    let server = uas("udp", &["--ignore-invites"]);
    let v = uac(
        "timeouts",
        "udp",
        &server.addr,
        &[
            "--rate",
            "20",
            "--step-secs",
            "1",
            "--timeout-ms",
            "300",
            "--t1-ms",
            "50",
        ],
    );
    let t = &v["totals"];
    assert_eq!(t["started"], 20, "{t}");
    assert_eq!(t["completed"], 0, "{t}");
    assert_eq!(t["failed"]["timeout"], 20, "{t}");
    assert_eq!(t["failed_total"], 20, "{t}");
    // INVITE at 0, again at 50 and 150 ms (the next, at 350 ms, is past the timeout).
    assert_eq!(t["retransmissions"], 40, "{t}");
    assert_eq!(t["latency_us"]["setup"]["count"], 0, "{t}");
}

#[test]
fn rejected_calls_and_options_over_tcp() {
    let server = uas("tcp", &["--invite-status", "486", "--ringing"]);
    let v = uac(
        "rejected",
        "tcp",
        &server.addr,
        &["--rate", "50", "--step-secs", "1"],
    );
    let t = &v["totals"];
    assert_eq!(t["failed"]["status_4xx"], 50, "{t}");
    assert_eq!(t["completed"], 0, "{t}");

    let v = uac(
        "options",
        "tcp",
        &server.addr,
        &[
            "--rate",
            "100,300",
            "--step-secs",
            "1",
            "--scenario",
            "options",
        ],
    );
    assert_eq!(v["scenario"], "options");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["completed"], 100);
    assert_eq!(steps[1]["completed"], 300);
    assert_eq!(steps[1]["rate"], 300.0);
    assert_eq!(v["totals"]["completed"], 400);
    assert_eq!(v["totals"]["latency_us"]["setup"]["count"], 400);
}
