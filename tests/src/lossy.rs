//! The lossy upstream scenario and its observers, for tests that need real data in a real
//! Prometheus: sipp's UAS over SCTP in a network namespace behind a veth, with netem loss on
//! what leaves the daemon's end (the upstream leg: the probes see the retransmissions of the
//! chunks this host sends), Debian's Prometheus scraping the daemon, PyPI rotel receiving its
//! spans. Each test picks its own names, addresses and ports ([`Layout`]) so that tests in
//! other binaries never collide with it (ports from [`crate::ports`]).

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::{
    daemon::{Peer, http, require_tool, sipp_in, tail, try_http, wait_until},
    netns::{Netns, ip, tc},
};

/// Names, addresses and ports of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The upstream's namespace; its veth ends are `<ns>0` (host) and `<ns>1` (namespace).
    pub ns: &'static str,
    /// The daemon's end of the veth.
    pub host_ip: &'static str,
    /// The UAS's address inside the namespace.
    pub uas_ip: &'static str,
    /// The UAS's SCTP port.
    pub uas_port: u16,
    /// The daemon's admin API.
    pub admin: SocketAddr,
    /// Prometheus's HTTP port on 127.0.0.1.
    pub prometheus_port: u16,
    /// rotel's OTLP/HTTP port on 127.0.0.1 (its gRPC port is the next one).
    pub otlp_port: u16,
}

/// The upstream's namespace and its veth (deleted here too, should the namespace outlive a
/// failed test).
pub struct Upstream {
    /// The namespace.
    pub ns: Netns,
    veth: String,
}

impl Upstream {
    /// The host end of the veth (where netem sits).
    pub fn host_dev(&self) -> &str {
        &self.veth
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

/// The upstream namespace at `uas_ip` behind a veth from the daemon's `host_ip`, with netem
/// `loss` on what leaves the daemon's end when given.
pub fn upstream(l: &Layout, loss: Option<&str>) -> Upstream {
    require_tool("ip");
    require_tool("tc");
    let host_dev = format!("{}0", l.ns);
    let ns_dev = format!("{}1", l.ns);
    let up = Upstream {
        ns: Netns::new(l.ns),
        veth: host_dev.clone(),
    };
    ip(&[
        "link", "add", &host_dev, "type", "veth", "peer", "name", &ns_dev, "netns", l.ns,
    ]);
    ip(&[
        "addr",
        "add",
        &format!("{}/24", l.host_ip),
        "dev",
        &host_dev,
    ]);
    ip(&["link", "set", &host_dev, "up"]);
    up.ns
        .ip(&["addr", "add", &format!("{}/24", l.uas_ip), "dev", &ns_dev]);
    up.ns.ip(&["link", "set", &ns_dev, "up"]);
    if let Some(loss) = loss {
        tc(&[
            "qdisc", "add", "dev", &host_dev, "root", "netem", "loss", loss,
        ]);
    }
    up
}

/// sipp's UAS (`uas_ua.xml`) over SCTP inside the upstream namespace; returns once it listens.
pub fn uas_in(l: &Layout, up: &Upstream, dir: &Path) -> Peer {
    let mut c = sipp_in(Some(up.ns.name()), dir, None);
    c.arg("-sf").arg(crate::daemon::data_file("uas_ua.xml"));
    c.args(["-default_behaviors", "all,-abortunexp"]);
    c.args(["-t", "s1", "-i", l.uas_ip, "-p", &l.uas_port.to_string()]);
    let mut p = Peer::spawn(
        &format!("sipp UAS -t s1 on {}:{} in {}", l.uas_ip, l.uas_port, l.ns),
        c,
        dir.join("uas.log"),
    );
    let port = l.uas_port.to_string();
    let listening = wait_until(Duration::from_secs(10), || {
        p.assert_running();
        up.ns.enter(|| {
            std::fs::read_to_string("/proc/thread-self/net/sctp/eps")
                .unwrap_or_default()
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(5) == Some(port.as_str()))
        })
    });
    assert!(
        listening,
        "the UAS does not listen on SCTP port {port} after 10 s:\n{}",
        tail(&p.output(), 30)
    );
    p
}

/// The OTLP receiver from PyPI `rotel` (installed by `cargo xtask setup` as
/// `tools/bin/rotel-agent`), discarding what it receives.
pub fn rotel(l: &Layout, dir: &Path) -> Peer {
    rotel_with(l, dir, false)
}

/// [`rotel`], printing every span it receives into its log with `print_spans` (see
/// [`crate::spans::printed_spans`]).
pub fn rotel_with(l: &Layout, dir: &Path, print_spans: bool) -> Peer {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/bin/rotel-agent");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo xtask setup` installs rotel (the OTLP receiver)",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .arg("start")
        .args([
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{}", l.otlp_port + 1),
        ])
        .args([
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{}", l.otlp_port),
        ])
        .args(["--exporter", "blackhole"]);
    if print_spans {
        c.args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"]);
    }
    let mut p = Peer::spawn("rotel-agent", c, dir.join("rotel.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], l.otlp_port));
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

/// Debian's Prometheus scraping the daemon's `/metrics` every second as job `job`, with
/// `rules` (a rule file) loaded when given.
pub fn prometheus(l: &Layout, dir: &Path, job: &str, rules: Option<&Path>) -> Peer {
    require_tool("prometheus");
    let cfg = dir.join("prometheus.yml");
    let rules = rules.map_or(String::new(), |r| {
        format!("rule_files:\n  - \"{}\"\n", r.display())
    });
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rules}scrape_configs:\n  \
             - job_name: {job}\n    static_configs:\n      - targets: [\"{}\"]\n",
            l.admin
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
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            l.prometheus_port
        ));
    let mut p = Peer::spawn("prometheus", c, dir.join("prometheus.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], l.prometheus_port));
    let up = wait_until(Duration::from_secs(30), || {
        p.assert_running();
        try_http(addr, "GET", "/-/ready", "").is_ok_and(|(s, _)| s == 200)
    });
    assert!(
        up,
        "prometheus is not ready on {addr}:\n{}",
        tail(&p.output(), 20)
    );
    p
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    let mut q = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

/// `GET path` on Prometheus's HTTP API: the JSON answer (`status` may be `error`).
pub fn prometheus_api(l: &Layout, path: &str) -> Value {
    let addr = SocketAddr::from(([127, 0, 0, 1], l.prometheus_port));
    let (status, body) = http(addr, "GET", path, "");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: HTTP {status}, not JSON ({e}): {body}"))
}
