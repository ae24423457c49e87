//! The exporter against the real kernel, inside the VM: sipp calls from a UDP caller through
//! `sipsctpd` to a sipp UAS over SCTP in a network namespace ("carrier-a"), with netem loss
//! on what the daemon sends toward it (the upstream leg: the probes see the retransmissions
//! of the chunks this host sends, so loss on the caller's leg would show nothing).
//!
//! - With 10 % loss and the probes on, every transaction exported (sampling ratio 1) to a real
//!   OTLP receiver (PyPI `rotel`, which prints what it receives) and the daemon scraped by a
//!   real Prometheus: every `sctp.retransmission` span event lies inside its span's time and
//!   names the association `/kernel/events` shows for carrier-a; no retransmission is left out:
//!   the distinct retransmission events over all spans equal the probes' count for that peer
//!   (`sipsctp_peer_retransmissions_total{peer="carrier-a"}`), and `/transactions/recent`
//!   holds the same. Every call succeeds, transactions the kernel retransmitted for take longer
//!   on average (`kernel_retransmitted="yes"` against `"no"`), and Prometheus's query answers
//!   what the daemon's `/metrics` says.
//! - Without loss: the kernel retransmits nothing and the `yes` series stays empty.
//! - With the probes off (`[ebpf] mode = "off"`): every transaction is `unknown`, nothing is
//!   invented.

use std::{collections::BTreeSet, net::SocketAddr, path::Path, process::Command, time::Duration};

use serde_json::Value;
use sipsctp_tests::{
    calls::{Uac, config, netem_dropped},
    daemon::{
        Daemon, Metrics, Peer, data_file, http, require_tool, scratch, sipp_in, tail, wait_until,
    },
    netns::{Netns, ip},
    ports::{exporter_correlation as ports, lo},
    require_sctp,
    spans::printed_spans,
    vm_kernel,
};

const ADMIN: SocketAddr = lo(ports::ADMIN);
/// The daemon's port (UDP on loopback, SCTP toward the upstream).
const PORT: u16 = ports::DAEMON;
const UAC_PORT: u16 = ports::UAC;
const UAS_PORT: u16 = ports::UAS;
const HOST_IP: &str = "10.78.0.1";
const UAS_IP: &str = "10.78.0.2";

/// The upstream's namespace and the veth to it; the veth goes with the namespace (and is
/// deleted here too, should the namespace outlive a failed test).
struct Upstream {
    ns: Netns,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "sxe-up0"]).output();
    }
}

/// The upstream namespace at 10.78.0.2 behind a veth from the daemon's 10.78.0.1, with
/// netem `loss` on what leaves the daemon's end when given.
fn upstream(loss: Option<&str>) -> Upstream {
    require_tool("ip");
    require_tool("tc");
    let up = Upstream {
        ns: Netns::new("sxe-up"),
    };
    let ns = up.ns.name().to_owned();
    ip(&[
        "link", "add", "sxe-up0", "type", "veth", "peer", "name", "sxe-up1", "netns", &ns,
    ]);
    ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "sxe-up0"]);
    ip(&["link", "set", "sxe-up0", "up"]);
    up.ns
        .ip(&["addr", "add", &format!("{UAS_IP}/24"), "dev", "sxe-up1"]);
    up.ns.ip(&["link", "set", "sxe-up1", "up"]);
    if let Some(loss) = loss {
        sipsctp_tests::netns::tc(&[
            "qdisc", "add", "dev", "sxe-up0", "root", "netem", "loss", loss,
        ]);
    }
    up
}

/// sipp's UAS (`uas_ua.xml`) over SCTP inside the upstream namespace; returns once it listens.
fn uas_in(up: &Upstream, dir: &Path) -> Peer {
    let mut c = sipp_in(Some(up.ns.name()), dir, None);
    c.arg("-sf").arg(data_file("uas_ua.xml"));
    c.args(["-default_behaviors", "all,-abortunexp"]);
    c.args(["-t", "s1", "-i", UAS_IP, "-p", &UAS_PORT.to_string()]);
    let mut p = Peer::spawn(
        &format!("sipp UAS -t s1 on {UAS_IP}:{UAS_PORT} in {}", up.ns.name()),
        c,
        dir.join("uas.log"),
    );
    let listening = wait_until(Duration::from_secs(10), || {
        p.assert_running();
        up.ns.enter(|| {
            std::fs::read_to_string("/proc/thread-self/net/sctp/eps")
                .unwrap_or_default()
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(5) == Some(&UAS_PORT.to_string()))
        })
    });
    assert!(
        listening,
        "the UAS does not listen on SCTP port {UAS_PORT} after 10 s:\n{}",
        tail(&p.output(), 30)
    );
    p
}

/// rotel's OTLP/HTTP port.
const OTLP_PORT: u16 = ports::OTLP_HTTP;
/// Prometheus's port.
const PROMETHEUS_PORT: u16 = ports::PROMETHEUS;

/// The OTLP receiver from PyPI `rotel` (installed by `cargo xtask setup` as
/// `tools/bin/rotel-agent`), printing every span it receives into its log.
fn rotel(dir: &Path) -> Peer {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/bin/rotel-agent");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo xtask setup` installs rotel (the OTLP receiver)",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .arg("start")
        .args(["--otlp-grpc-endpoint", &lo(ports::OTLP_GRPC).to_string()])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{OTLP_PORT}")])
        .args(["--exporter", "blackhole"])
        .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"]);
    let mut p = Peer::spawn("rotel-agent", c, dir.join("rotel.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], OTLP_PORT));
    let up = wait_until(Duration::from_secs(15), || {
        p.assert_running();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    assert!(
        up,
        "rotel does not listen on {addr}:\n{}",
        tail(&p.output(), 20)
    );
    p
}

/// Debian's Prometheus scraping the daemon's `/metrics` every second.
fn prometheus(dir: &Path) -> Peer {
    require_tool("prometheus");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sipsctpd\n    \
             static_configs:\n      - targets: [\"{ADMIN}\"]\n"
        ),
    )
    .expect("write prometheus.yml");
    let mut c = Command::new("prometheus");
    c.current_dir(dir)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"));
    let mut p = Peer::spawn("prometheus", c, dir.join("prometheus.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], PROMETHEUS_PORT));
    let up = wait_until(Duration::from_secs(30), || {
        p.assert_running();
        sipsctp_tests::daemon::try_http(addr, "GET", "/-/ready", "").is_ok_and(|(s, _)| s == 200)
    });
    assert!(
        up,
        "prometheus is not ready on {addr}:\n{}",
        tail(&p.output(), 20)
    );
    p
}

/// `query` through Prometheus's HTTP API: the value of its one result (`None`: no result).
fn promql(query: &str) -> Option<f64> {
    let mut q = String::new();
    for b in query.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], PROMETHEUS_PORT));
    let (status, body) = http(addr, "GET", &format!("/api/v1/query?query={q}"), "");
    assert_eq!(status, 200, "{query}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
    let result = v["data"]["result"].as_array()?.first()?.clone();
    result["value"][1].as_str()?.parse().ok()
}

/// The daemon: UDP on loopback, SCTP toward the upstream named carrier-a, `ebpf` mode, fast
/// SCTP recovery (`rto`: initial, min, max in ms), `extra` TOML.
fn daemon_with(name: &str, ebpf: &str, rto: Option<(u32, u32, u32)>, extra_toml: &str) -> Daemon {
    let mut extra = format!("[ebpf]\nmode = \"{ebpf}\"\n{extra_toml}");
    if let Some((initial, min, max)) = rto {
        extra.push_str(&format!(
            "[sctp]\nsctp_srto_initial = {initial}\nsctp_srto_min = {min}\nsctp_srto_max = {max}\n"
        ));
    }
    let mut cfg = config(
        &[("udp", &["127.0.0.1"], PORT), ("sctp", &[HOST_IP], PORT)],
        &[],
        ADMIN,
        &extra,
    );
    cfg.push_str(&format!(
        "\n[[route]]\nname = \"carrier-a\"\nupstream = \"sctp:{UAS_IP}:{UAS_PORT}\"\n"
    ));
    Daemon::start(name, ADMIN, &cfg)
}

fn daemon(name: &str, ebpf: &str, rto: Option<(u32, u32, u32)>) -> Daemon {
    daemon_with(name, ebpf, rto, "")
}

fn uac(calls: u32) -> Uac<'static> {
    Uac {
        scenario: None,
        transport: "u1",
        local_ip: "127.0.0.1",
        local_port: UAC_PORT,
        remote: SocketAddr::from(([127, 0, 0, 1], PORT)),
        calls,
        rate: 10,
        netns: None,
    }
}

fn json(d: &Daemon, path: &str) -> Value {
    let (status, body) = d.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

fn transactions(d: &Daemon) -> Vec<Value> {
    json(d, "/transactions/recent?limit=1024")["transactions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Mean of the duration histogram's series `kernel_retransmitted = verdict`, and its count.
fn duration_mean(m: &Metrics, verdict: &str) -> (f64, u64) {
    let name = "sipsctp_sip_transaction_duration_seconds";
    let labels = [("kernel_retransmitted", verdict)];
    let n = m.sum(&format!("{name}_count"), &labels);
    let sum = m.sum_f64(&format!("{name}_sum"), &labels);
    (if n == 0 { 0.0 } else { sum / n as f64 }, n)
}

/// The probes' retransmissions toward carrier-a, every reason.
fn peer_retransmissions(m: &Metrics) -> u64 {
    m.sum(
        "sipsctp_peer_retransmissions_total",
        &[("peer", "carrier-a")],
    )
}

#[test]
fn exporter_joins_each_upstream_retransmission_to_the_transactions_it_delayed() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("exporter-loss");
    let up = upstream(Some("10%"));
    let _uas = uas_in(&up, &dir);
    let receiver = rotel(&dir);
    let _prometheus = prometheus(&dir);
    let d = daemon_with(
        "exporter-loss",
        "on",
        Some((300, 100, 1000)),
        &format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{OTLP_PORT}\"\nsampling_ratio = 1.0\n\
             max_spans_per_second = 100000\n"
        ),
    );
    let calls = 100;
    let r = uac(calls).run(&dir, || {});
    let dropped = netem_dropped(None, "sxe-up0");
    r.assert_all_ok(
        calls,
        "sipp UDP -> sipsctpd -> SCTP UAS, 10 % loss upstream",
        &d,
    );
    let m = d.settle();
    let show = m.nonzero();
    let txs = transactions(&d);
    let kernel_events = json(&d, "/kernel/events?limit=1024");
    let events = kernel_events["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The association to carrier-a, as the probes report it.
    let upstream_assocs: BTreeSet<i64> = events
        .iter()
        .filter(|e| e["peer"].as_str() == Some(UAS_IP) && e["assoc_id"].as_i64() != Some(0))
        .filter_map(|e| e["assoc_id"].as_i64())
        .collect();
    assert!(
        !upstream_assocs.is_empty(),
        "kernel {}: /kernel/events shows no association to {UAS_IP}: {kernel_events}",
        vm_kernel()
    );
    // Calls x (INVITE, ACK, BYE) were joined, with the outbound association.
    let n = u64::from(calls);
    let count = |method: &str| txs.iter().filter(|t| t["method"] == method).count() as u64;
    assert!(
        count("INVITE") >= n && count("BYE") >= n && count("ACK") >= n,
        "kernel {}: joined INVITE/ACK/BYE: {}/{}/{}, {n} calls",
        vm_kernel(),
        count("INVITE"),
        count("ACK"),
        count("BYE")
    );
    let mut distinct = BTreeSet::new();
    let mut touched = 0;
    for t in &txs {
        let out = &t["outbound"];
        assert_eq!(out["peer_name"], "carrier-a", "{t}");
        assert_eq!(t["incomplete"], false, "no cap was reached: {t}");
        let notes = t["kernel"]["request"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !notes.is_empty() {
            touched += 1;
            assert_eq!(t["kernel_retransmitted"], "yes", "{t}");
        }
        let (from, to) = (u64_of(&t["forwarded_ns"]), u64_of(&t["ended_ns"]));
        for e in notes {
            let at = u64_of(&e["time_ns"]);
            assert!(
                (from..=to).contains(&at),
                "kernel {}: a kernel event outside its transaction's request leg \
                 [{from}, {to}]: {e}\nin {t}",
                vm_kernel()
            );
            let assoc = e["assoc_id"].as_i64().unwrap_or_default();
            assert!(
                upstream_assocs.contains(&assoc) && out["assoc_id"].as_i64() == Some(assoc),
                "kernel {}: event on association {assoc}, the transaction went out on {}, \
                 /kernel/events shows {upstream_assocs:?} to {UAS_IP}: {t}",
                vm_kernel(),
                out["assoc_id"]
            );
            if e["event"] == "sctp.retransmission" {
                distinct.insert((at, assoc, e["reason"].to_string()));
            }
        }
    }
    let probes = peer_retransmissions(&m);
    assert!(
        dropped > 0 && probes > 0,
        "kernel {}: netem dropped {dropped} packets, the probes counted {probes} \
         retransmissions toward carrier-a: no loss, nothing to check\n{show}",
        vm_kernel()
    );
    assert_eq!(
        distinct.len() as u64,
        probes,
        "kernel {}: every retransmission the probes saw toward carrier-a is on at least one \
         transaction (distinct events over all transactions vs the probes' counter)\n{show}",
        vm_kernel()
    );
    let (yes, n_yes) = duration_mean(&m, "yes");
    let (no, n_no) = duration_mean(&m, "no");
    assert!(
        n_yes > 0 && n_no > 0 && yes > no,
        "kernel {}: transactions the kernel retransmitted for take longer: yes {n_yes} x \
         {yes:.3} s, no {n_no} x {no:.3} s\n{show}",
        vm_kernel()
    );
    assert_eq!(duration_mean(&m, "unknown").1, 0, "{show}");
    // The same from the spans rotel received: every one exported, every retransmission inside
    // its span, on carrier-a's association, none missing.
    let exported = |m: &Metrics| m.sum("sipsctp_otlp_spans_total", &[("outcome", "exported")]);
    let want = 2 * txs.len() as u64;
    assert!(
        wait_until(Duration::from_secs(15), || exported(&d.metrics()) >= want),
        "kernel {}: {want} spans (2 per transaction, all sampled) not exported within 15 s:\n{}",
        vm_kernel(),
        d.metrics().nonzero()
    );
    let lost: u64 = [
        "dropped_queue_full",
        "failed",
        "sampled_out",
        "rate_limited",
    ]
    .iter()
    .map(|o| {
        d.metrics()
            .sum("sipsctp_otlp_spans_total", &[("outcome", o)])
    })
    .sum();
    assert_eq!(lost, 0, "{}", d.metrics().nonzero());
    let printed = wait_until(Duration::from_secs(15), || {
        printed_spans(&receiver.output()).len() as u64 >= want
    });
    let spans = printed_spans(&receiver.output());
    assert!(
        printed,
        "kernel {}: rotel printed {} spans, {want} exported",
        vm_kernel(),
        spans.len()
    );
    let mut from_spans = BTreeSet::new();
    let mut slow_invite = None;
    for s in &spans {
        for (at, assoc, reason) in &s.retransmissions {
            assert!(
                (s.start..=s.end).contains(at) && s.kind == "SPAN_KIND_CLIENT",
                "kernel {}: a retransmission event outside its CLIENT span: {}",
                vm_kernel(),
                s.text
            );
            assert!(
                upstream_assocs.contains(assoc) && s.assoc == Some(*assoc),
                "kernel {}: span event on association {assoc} (span's {:?}; /kernel/events: \
                 {upstream_assocs:?}): {}",
                vm_kernel(),
                s.assoc,
                s.text
            );
            from_spans.insert((*at, *assoc, reason.clone()));
        }
        if s.name == "INVITE" && !s.retransmissions.is_empty() && slow_invite.is_none() {
            slow_invite = Some(s);
        }
    }
    assert_eq!(
        from_spans.len() as u64,
        probes,
        "kernel {}: distinct retransmission events over all spans vs the probes' counter",
        vm_kernel()
    );
    // Prometheus scraped the same numbers (after one more scrape).
    std::thread::sleep(Duration::from_secs(3));
    let m = d.metrics();
    for (query, local) in [
        (
            "sum(sipsctp_sip_transaction_duration_seconds_count{kernel_retransmitted=\"yes\"})",
            n_yes,
        ),
        (
            "sum(sipsctp_peer_retransmissions_total{peer=\"carrier-a\"})",
            peer_retransmissions(&m),
        ),
    ] {
        assert_eq!(
            promql(query),
            Some(local as f64),
            "kernel {}: Prometheus's answer to {query} vs the daemon's /metrics",
            vm_kernel()
        );
    }
    if let Some(slow) = slow_invite {
        let trace: Vec<String> = spans
            .iter()
            .filter(|s| s.trace == slow.trace && s.name == "INVITE")
            .map(|s| format!("Span #{}", s.text.trim_end()))
            .collect();
        let trace = trace.join("\n");
        std::fs::write(dir.join("slow-invite-trace.txt"), &trace).expect("write the trace");
        eprintln!("a slow INVITE's trace, as rotel printed it:\n{trace}");
    }
    eprintln!(
        "kernel {}: {n} calls, netem dropped {dropped}, {probes} retransmissions toward \
         carrier-a, all on {touched} transactions; duration mean yes {:.1} ms ({n_yes}), no \
         {:.1} ms ({n_no})",
        vm_kernel(),
        yes * 1000.0,
        no * 1000.0
    );
}

#[test]
fn exporter_without_loss_finds_no_kernel_retransmitted_transaction() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("exporter-clean");
    let up = upstream(None);
    let _uas = uas_in(&up, &dir);
    // Default RTOs (Kamailio's): no spurious retransmission when the VM's CPUs stall.
    let d = daemon("exporter-clean", "on", None);
    let calls = 30;
    let r = uac(calls).run(&dir, || {});
    r.assert_all_ok(calls, "sipp UDP -> sipsctpd -> SCTP UAS, no loss", &d);
    let m = d.settle();
    let show = m.nonzero();
    assert_eq!(peer_retransmissions(&m), 0, "{show}");
    let (_, n_yes) = duration_mean(&m, "yes");
    let (_, n_no) = duration_mean(&m, "no");
    assert_eq!(
        (n_yes, n_no),
        (0, 2 * u64::from(calls)),
        "kernel {}: every INVITE and BYE judged `no`\n{show}",
        vm_kernel()
    );
    assert!(
        transactions(&d)
            .iter()
            .all(|t| t["kernel_retransmitted"] == "no"),
        "kernel {}: {}",
        vm_kernel(),
        d.get("/transactions/recent?limit=5").1
    );
}

#[test]
fn exporter_without_probes_says_unknown() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("exporter-off");
    let up = upstream(Some("10%"));
    let _uas = uas_in(&up, &dir);
    let d = daemon("exporter-off", "off", Some((300, 100, 1000)));
    let calls = 30;
    let r = uac(calls).run(&dir, || {});
    r.assert_all_ok(calls, "sipp UDP -> sipsctpd -> SCTP UAS, no probes", &d);
    let m = d.settle();
    let show = m.nonzero();
    let (_, n_unknown) = duration_mean(&m, "unknown");
    assert_eq!(
        (
            duration_mean(&m, "yes").1,
            duration_mean(&m, "no").1,
            n_unknown
        ),
        (0, 0, 2 * u64::from(calls)),
        "kernel {}: without probes every transaction is unknown\n{show}",
        vm_kernel()
    );
    let txs = transactions(&d);
    assert!(
        txs.iter().all(|t| t["kernel_retransmitted"] == "unknown"
            && t["kernel"]["request"].as_array().is_some_and(Vec::is_empty)),
        "kernel {}: nothing invented: {}",
        vm_kernel(),
        d.get("/transactions/recent?limit=5").1
    );
    assert_eq!(
        m.sum(
            "sipsctp_sip_transactions_kernel_affected_total",
            &[("peer", "carrier-a")]
        ),
        0,
        "{show}"
    );
}

/// A collector that accepts connections and never answers (a hung OTLP receiver).
struct SilentCollector {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentCollector {
    fn start() -> Self {
        let l = std::net::TcpListener::bind(("127.0.0.1", OTLP_PORT)).expect("bind the OTLP port");
        l.set_nonblocking(true).expect("non-blocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((c, _)) = l.accept() {
                    held.push(c);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        SilentCollector {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The collector down from the start, then up, killed during calls, hung (accepting, never
/// answering), then back: every call succeeds whatever the collector does, the spans it could
/// not take are counted `failed`, and export resumes each time it is back. The relay's
/// INVITE times per phase are printed (not asserted: the VM's timing is too noisy for a bound
/// that means something).
#[test]
fn exporter_outlives_a_collector_that_is_down_killed_or_hung() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { require_sctp() });
    let dir = scratch("exporter-collector");
    let up = upstream(None);
    let _uas = uas_in(&up, &dir);
    let d = daemon_with(
        "exporter-collector",
        "off",
        None,
        &format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{OTLP_PORT}\"\nsampling_ratio = 1.0\n\
             max_spans_per_second = 100000\n"
        ),
    );
    let outcome = |o: &str| {
        d.metrics()
            .sum("sipsctp_otlp_spans_total", &[("outcome", o)])
    };
    let invite_ms = |d: &Daemon| {
        let t = transactions(d);
        // This phase's INVITEs: the newest ones.
        let v: Vec<f64> = t
            .iter()
            .rev()
            .filter(|t| t["method"] == "INVITE")
            .filter_map(|t| t["first_response_ms"].as_f64())
            .take(20)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let calls = 20;
    let mut phase = 0;
    let mut run = |what: &str, each: &mut dyn FnMut()| {
        phase += 1;
        let pdir = dir.join(format!("phase-{phase}"));
        std::fs::create_dir_all(&pdir).expect("phase dir");
        let r = uac(calls).run(&pdir, each);
        r.assert_all_ok(calls, &format!("collector {what}"), &d);
        d.settle();
        eprintln!(
            "collector {what}: {calls} calls ok, INVITE first response {:.1} ms on average",
            invite_ms(&d)
        );
    };
    let wait_outcome = |o: &str, above: u64, what: &str| {
        assert!(
            wait_until(Duration::from_secs(20), || outcome(o) > above),
            "kernel {}: collector {what}: sipsctp_otlp_spans_total{{outcome=\"{o}\"}} stays at \
             {above}:\n{}",
            vm_kernel(),
            d.metrics().nonzero()
        );
    };

    // 1. Down from the start.
    run("down", &mut || {});
    wait_outcome("failed", 0, "down");
    assert_eq!(outcome("exported"), 0);
    // 2. Up: export resumes.
    let receiver = rotel(&dir.join("phase-1"));
    let (failed, exported) = (outcome("failed"), outcome("exported"));
    run("up", &mut || {});
    wait_outcome("exported", exported, "up");
    assert!(
        wait_until(Duration::from_secs(10), || !printed_spans(
            &receiver.output()
        )
        .is_empty()),
        "rotel printed no span"
    );
    // 3. Killed during the calls.
    let mut receiver = Some(receiver);
    let mut samples = 0;
    run("killed mid-run", &mut || {
        samples += 1;
        if samples == 2 {
            receiver = None;
        }
    });
    assert!(
        receiver.is_none(),
        "the collector was killed during the run"
    );
    wait_outcome("failed", failed, "killed");
    // 4. Hung: exports time out (5 s each) and are counted.
    let failed = outcome("failed");
    let hung = SilentCollector::start();
    run("hung", &mut || {});
    wait_outcome("failed", failed, "hung");
    drop(hung);
    // 5. Back.
    let receiver = rotel(&dir.join("phase-4"));
    let exported = outcome("exported");
    run("back", &mut || {});
    wait_outcome("exported", exported, "back");
    assert!(
        wait_until(Duration::from_secs(10), || !printed_spans(
            &receiver.output()
        )
        .is_empty()),
        "rotel printed no span after coming back"
    );
    let m = d.metrics();
    eprintln!(
        "kernel {}: spans exported {}, failed {}, dropped_queue_full {}",
        vm_kernel(),
        m.sum("sipsctp_otlp_spans_total", &[("outcome", "exported")]),
        m.sum("sipsctp_otlp_spans_total", &[("outcome", "failed")]),
        m.sum(
            "sipsctp_otlp_spans_total",
            &[("outcome", "dropped_queue_full")]
        ),
    );
}
