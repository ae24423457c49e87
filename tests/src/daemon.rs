//! Helpers for the `sipsctpd` integration tests (`tests/tests/daemon_*.rs`): the daemon as a
//! child process with a configuration in a scratch file, its admin API over a plain
//! `TcpStream`, a parser for its `/metrics` text, sipp and other peers as child processes, and
//! the kernel's SCTP views under `/proc/net/sctp`.
//!
//! Everything here panics loudly: a missing binary or tool, a daemon that does not come up, a
//! peer that does not start listening. Nothing is skipped.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::vm_kernel;

/// `target/<profile>/sipsctpd`: the test executable is `target/<profile>/deps/<test>-<hash>`,
/// and `cargo xtask test` builds the daemon next to `deps/`. Panics when it is missing.
pub fn daemon_binary() -> PathBuf {
    workspace_binary("sipsctpd")
}

/// The `sipsctp-exporter` binary next to the test binaries (built by `cargo xtask test`).
pub fn exporter_binary() -> PathBuf {
    workspace_binary("sipsctp-exporter")
}

/// The `sipsctp-load` generator next to the test binaries (built by `cargo xtask test`).
pub fn load_binary() -> PathBuf {
    workspace_binary("sipsctp-load")
}

/// A binary of the workspace in `target/<profile>/`.
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let bin = deps.parent().expect("target/<profile>").join(name);
    assert!(
        bin.is_file(),
        "the binary {} is missing: `cargo xtask test` builds it (cargo build -p sipsctpd -p \
         sipsctp-exporter -p sipsctp-load) before running the integration tests",
        bin.display()
    );
    bin
}

/// `tests/data/daemon/<name>`, which must exist.
pub fn data_file(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/daemon")
        .join(name);
    assert!(p.is_file(), "test data file {} is missing", p.display());
    p
}

/// A fresh scratch directory for a test's files (configs, logs, sipp's statistics):
/// `target/tmp/sipsctpd-tests/<kernel>/<name>` (the workspace is shared with the VM, so what a
/// failed run left can be read on the host afterwards).
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<exe>")
        .to_path_buf();
    let dir = target
        .join("tmp/sipsctpd-tests")
        .join(vm_kernel())
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create the scratch directory {}: {e}", dir.display()));
    dir
}

/// Panics unless `tool` is an executable on `PATH` (the guest's root is the host's: install it
/// on the host).
pub fn require_tool(tool: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| {
        let f = d.join(tool);
        f.is_file()
            && std::fs::metadata(&f).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.permissions().mode() & 0o111 != 0
            })
    });
    assert!(
        found,
        "`{tool}` is not installed (kernel {}, PATH={path:?}): the daemon tests need it; install \
         it on the host (the VM's root is the host's): sipp = sip-tester, kamailio + \
         kamailio-sctp-modules, promtool = prometheus, curl, iproute2",
        vm_kernel()
    );
}

/// User plus system CPU time of process `pid` so far, in clock ticks (0 when it is gone).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// One thread of a process: its name and its capability sets (`CapInh`, `CapPrm`, `CapEff`,
/// `CapBnd`, `CapAmb` from `/proc/<pid>/task/<tid>/status`, as masks).
#[derive(Debug, Clone)]
pub struct ThreadCaps {
    /// The thread's id.
    pub tid: u32,
    /// Its name (`comm`).
    pub name: String,
    /// `Cap*` field name (without the `Cap` prefix) to mask.
    pub sets: BTreeMap<String, u64>,
}

/// The capability sets of every thread of `pid`.
pub fn thread_capabilities(pid: u32) -> Vec<ThreadCaps> {
    let mut out = Vec::new();
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let mut name = String::new();
        let mut sets = BTreeMap::new();
        for line in status.lines() {
            if let Some(n) = line.strip_prefix("Name:") {
                name = n.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("Cap")
                && let Some((set, hex)) = rest.split_once(':')
                && let Ok(mask) = u64::from_str_radix(hex.trim(), 16)
            {
                sets.insert(set.to_owned(), mask);
            }
        }
        out.push(ThreadCaps { tid, name, sets });
    }
    out
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Each thread of `pid`: its id, name, state and where it waits (`wchan`), a line each (for
/// failure messages: what a process that stopped answering is doing).
pub fn thread_states(pid: u32) -> String {
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return format!("{dir}: gone (the process exited)");
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let read = |f: &str| {
            std::fs::read_to_string(entry.path().join(f))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let state = read("status")
            .lines()
            .find_map(|l| l.strip_prefix("State:").map(|s| s.trim().to_owned()))
            .unwrap_or_default();
        out.push(format!(
            "  {} {} state={state} wchan={}",
            entry.file_name().to_string_lossy(),
            read("comm"),
            read("wchan")
        ));
    }
    out.join("\n")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes (blocking); returns whether it
/// held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first `n` lines of each kind in a daemon log, in order, and how many there were of
/// each: a kind is the level and target with the `event=` name (or the message up to its first
/// digit), so a burst of one event shows as a few lines and a count.
pub fn log_digest(log: &str, n: usize) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for line in log.lines() {
        // "<timestamp>  LEVEL target: message"
        let rest = line.split_once(' ').map_or(line, |(_, r)| r.trim_start());
        let kind: String = match rest.split_once("event=") {
            Some((head, ev)) => {
                let name: String = ev.chars().take_while(|c| c.is_alphanumeric()).collect();
                format!("{head}event={name}")
            }
            None => rest.chars().take_while(|c| !c.is_ascii_digit()).collect(),
        };
        match seen.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => {
                *count += 1;
                if *count <= n {
                    out.push(line.to_string());
                }
            }
            None => {
                seen.push((kind, 1));
                out.push(line.to_string());
            }
        }
    }
    out.push("(lines of each kind:)".to_string());
    out.extend(seen.into_iter().map(|(k, c)| format!("{c:>7}  {k}")));
    out.join("\n")
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The admin API.

/// An HTTP/1.1 request to `addr` (`Connection: close`); returns the status and the body.
/// Panics when the exchange fails.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(addr, method, path, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// As [`http`], with the error returned.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    try_http_with(addr, method, path, &[], body)
}

/// As [`try_http`], with extra header lines (`("Authorization", "Bearer x")`). `Host` is
/// `addr` unless `headers` names one.
pub fn try_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(
        s,
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{text:?}"));
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, after)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).map_err(|_| bad())?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n).ok_or_else(bad)?);
            r = after.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

/// A parsed `/metrics` text (Prometheus text format 0.0.4).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The text as served.
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses the exposition text (comments skipped; label values without escapes, as the
    /// daemon's are).
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("metrics line without a value: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("metrics line {line:?}: value: {e}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("metrics line {line:?}: labels"));
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv
                                .split_once("=\"")
                                .unwrap_or_else(|| panic!("metrics line {line:?}: label {kv:?}"));
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The sum of the samples of `name` whose labels include every pair of `labels` (0 when
    /// none: the daemon creates labelled series on first use). With all of a series' labels
    /// given, that is the series' value.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let v: f64 = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum();
        // Counters and gauges here are integers.
        v.round() as u64
    }

    /// As [`Metrics::sum`], unrounded (a histogram's `_sum` in seconds).
    pub fn sum_f64(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// `sipsctp_sip_requests_total{method, transport, direction}`.
    pub fn requests(&self, method: &str, transport: &str, direction: &str) -> u64 {
        self.sum(
            "sipsctp_sip_requests_total",
            &[
                ("method", method),
                ("transport", transport),
                ("direction", direction),
            ],
        )
    }

    /// `sipsctp_sip_responses_total{method, status_class, transport, direction}`.
    pub fn responses(&self, method: &str, class: &str, transport: &str, direction: &str) -> u64 {
        self.sum(
            "sipsctp_sip_responses_total",
            &[
                ("method", method),
                ("status_class", class),
                ("transport", transport),
                ("direction", direction),
            ],
        )
    }

    /// `sipsctp_sip_messages_dropped_total{reason}`.
    pub fn sip_dropped(&self, reason: &str) -> u64 {
        self.sum("sipsctp_sip_messages_dropped_total", &[("reason", reason)])
    }

    /// `sipsctp_sctp_messages_dropped_total{reason}`.
    pub fn sctp_dropped(&self, reason: &str) -> u64 {
        self.sum("sipsctp_sctp_messages_dropped_total", &[("reason", reason)])
    }

    /// An unlabelled counter or gauge (`sipsctp_sctp_established_total`, ...).
    pub fn value(&self, name: &str) -> u64 {
        self.sum(name, &[])
    }

    /// The non-zero `sipsctp_` samples, one a line (for messages).
    pub fn nonzero(&self) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with("sipsctp_") && !l.ends_with(" 0") && !l.contains("_bucket"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon.

/// A running `sipsctpd`, killed (SIGKILL) and reaped when dropped unless it already exited.
pub struct Daemon {
    child: Child,
    exited: Option<ExitStatus>,
    /// Its admin API.
    pub admin: SocketAddr,
    /// Its directory (config.toml, stderr.log).
    pub dir: PathBuf,
    /// The `[admin] token` of its configuration: every admin request but `GET /health` sends
    /// it (the daemon asks for it on every other endpoint once one is configured).
    pub token: Option<String>,
    name: String,
}

/// The value of `token = "..."` in the `[admin]` section of a configuration text, if any.
pub fn admin_token(config: &str) -> Option<String> {
    let mut section = "";
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[admin]"
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "token"
        {
            let v = v.trim().trim_matches('"');
            return (!v.is_empty()).then(|| v.to_owned());
        }
    }
    None
}

impl Daemon {
    /// Writes `config` to `<scratch of name>/sipsctpd/config.toml` and starts the daemon with it
    /// (log on stderr, into `stderr.log` beside it); waits until `GET /health` on `admin` (the config's `[admin] listen`) answers 200.
    /// Panics, with the daemon's log, when it exits or does not come up within 15 s.
    pub fn start(name: &str, admin: SocketAddr, config: &str) -> Daemon {
        let bin = daemon_binary();
        assert!(
            config.contains(&admin.to_string()),
            "the test's config must set [admin] listen = \"{admin}\""
        );
        let dir = scratch(&format!("{name}/sipsctpd"));
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).expect("write the daemon's config");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
        let stdout = std::fs::File::create(dir.join("stdout.log")).expect("stdout file");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut d = Daemon {
            child,
            exited: None,
            admin,
            dir,
            token: admin_token(config),
            name: name.to_owned(),
        };
        let t0 = Instant::now();
        loop {
            if let Some(status) = d.child.try_wait().expect("wait for the daemon") {
                d.exited = Some(status);
                panic!(
                    "kernel {}: sipsctpd ({name}) exited at start with {status}; config:\n{config}\n\
                     --- its stderr ---\n{}",
                    vm_kernel(),
                    d.stderr()
                );
            }
            if let Ok((200, body)) = try_http(admin, "GET", "/health", "")
                && body.contains("\"ok\"")
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "kernel {}: sipsctpd ({name}) did not answer GET /health on {admin} within 15 s; \
                 --- its stderr ---\n{}",
                vm_kernel(),
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let up = t0.elapsed();
        // Start-up work that goes on after /health answers (loading the eBPF probes takes
        // seconds under the VM's emulated CPUs) would slow the first calls down: wait until the
        // daemon's CPU time stands still.
        let idle = wait_until(Duration::from_secs(45), || {
            let a = cpu_ticks(d.pid());
            std::thread::sleep(Duration::from_millis(300));
            cpu_ticks(d.pid()).saturating_sub(a) <= 2
        });
        eprintln!(
            "sipsctpd ({name}) up in {} ms, idle after {} ms{}, pid {}",
            up.as_millis(),
            t0.elapsed().as_millis(),
            if idle { "" } else { " (still busy after 45 s)" },
            d.pid()
        );
        d
    }

    /// Waits (up to 30 s) until the SIP counters stop moving for a second and the exporter has
    /// joined every finished transaction: everything in flight (a peer's late retransmissions
    /// included) has been relayed and the transaction metrics are complete. Returns the
    /// metrics then.
    pub fn settle(&self) -> Metrics {
        let total = |m: &Metrics| {
            m.sum("sipsctp_sip_requests_total", &[])
                + m.sum("sipsctp_sip_responses_total", &[])
                + m.sum("sipsctp_sip_messages_dropped_total", &[])
                + m.sum("sipsctp_sip_transaction_duration_seconds_count", &[])
        };
        let mut last = self.metrics();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.metrics();
            let joined = now.value("sipsctp_exporter_transactions_lingering") == 0;
            if (joined && total(&now) == total(&last)) || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr (the log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// `GET path` on the admin API (with the bearer token when one is configured).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_request("GET", path, "")
            .unwrap_or_else(|e| panic!("GET http://{}{path}: {e}", self.admin))
    }

    /// A request to the admin API with the bearer token when one is configured.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        try_http_with(self.admin, method, path, &headers, body)
    }

    /// The non-zero `sipsctp_` samples of `GET /metrics`, or why they could not be read (never
    /// panics: for failure messages).
    pub fn metrics_for_message(&self) -> String {
        match self.try_request("GET", "/metrics", "") {
            Ok((200, body)) => Metrics::parse(&body).nonzero(),
            Ok((status, body)) => format!("GET /metrics: {status} {body}"),
            Err(e) => format!("GET /metrics: {e}"),
        }
    }

    /// `GET /metrics`, parsed (panics unless 200).
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// `sipsctp_config_reloads_total` by outcome: (applied, refused); `None` while the admin
    /// API does not answer.
    pub fn reloads(&self) -> Option<(u64, u64)> {
        let (status, body) = self.try_request("GET", "/metrics", "").ok()?;
        if status != 200 {
            return None;
        }
        let m = Metrics::parse(&body);
        let n = |o| m.sum("sipsctp_config_reloads_total", &[("outcome", o)]);
        Some((n("applied"), n("refused")))
    }

    /// Sends SIGHUP and waits (10 s at most) until the daemon has counted the reload's
    /// outcome; whether it applied. Panics with the daemon's threads' states and its log when
    /// no outcome comes.
    pub fn reload(&self) -> bool {
        let before = self.reloads().expect("the admin API answers before SIGHUP");
        self.signal(libc::SIGHUP);
        let mut after = before;
        let done = wait_until(Duration::from_secs(10), || {
            after = self.reloads().unwrap_or(after);
            after != before
        });
        assert!(
            done,
            "SIGHUP: no reload outcome counted in 10 s (reloads before {before:?}); the \
             daemon's threads:\n{}\nits log:\n{}",
            thread_states(self.pid()),
            tail(&self.stderr(), 20)
        );
        after.0 > before.0
    }

    /// Waits up to `limit` for the daemon to exit; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for the daemon") {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics (with the log) if the daemon is no longer running.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.child.try_wait().expect("wait for the daemon") {
            self.exited = Some(s);
            panic!(
                "kernel {}: sipsctpd ({}) died: {s}\n--- its stderr ---\n{}",
                vm_kernel(),
                self.name,
                tail(&self.stderr(), 60)
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.stderr();
            eprintln!(
                "--- sipsctpd ({}) log digest: the first 3 lines of each kind ---\n{}\n\
                 --- sipsctpd ({}) stderr, last 40 lines ---\n{}",
                self.name,
                log_digest(&log, 3),
                self.name,
                tail(&log, 40)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Peers: sipp, kamailio.

/// A background peer (sipp UAS, kamailio), killed and reaped when dropped.
pub struct Peer {
    child: Child,
    /// What it is, for messages.
    pub what: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Peer {
    /// Starts `cmd` with stdout and stderr into `log`, in a process group of its own (Kamailio
    /// forks workers that hold its sockets: dropping the peer kills the whole group). Panics
    /// when it cannot start.
    pub fn spawn(what: &str, mut cmd: Command, log: PathBuf) -> Peer {
        let out = std::fs::File::create(&log).expect("peer log file");
        let err = out.try_clone().expect("peer log file");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {what} ({:?}): {e}; it must be installed on the host",
                cmd.get_program()
            )
        });
        Peer {
            child,
            what: what.to_owned(),
            log,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with its output) if it exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.child.try_wait().expect("wait for a peer") {
            panic!(
                "{} exited early with {s}; its output:\n{}",
                self.what,
                tail(&self.output(), 40)
            );
        }
    }

    /// Waits up to `limit` for it to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for a peer") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The group's id is the child's pid (`process_group(0)`); util-linux `kill` takes a
        // negative id for a group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} output, last 30 lines ---\n{}",
                self.what,
                tail(&self.output(), 30)
            );
        }
    }
}

/// What a finished foreground tool run left.
pub struct ToolRun {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout and stderr, together.
    pub output: String,
    /// How long it ran.
    pub took: Duration,
}

/// Runs `cmd` to completion with its output in `dir/<name>.out`; kills it after `limit`.
/// Panics when it cannot start.
pub fn run_tool(name: &str, cmd: Command, dir: &Path, limit: Duration) -> ToolRun {
    run_tool_sampling(name, cmd, dir, limit, || {})
}

/// As [`run_tool`], calling `each` about every 500 ms while the tool runs (to sample the
/// daemon's state during the run; not more often: under the VM's emulated CPUs every admin
/// request costs the daemon noticeable time).
pub fn run_tool_sampling(
    name: &str,
    mut cmd: Command,
    dir: &Path,
    limit: Duration,
    mut each: impl FnMut(),
) -> ToolRun {
    let log = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&log).expect("tool output file");
    let err = out.try_clone().expect("tool output file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let t0 = Instant::now();
    let mut sampled = t0;
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {name} ({:?}): {e}; kernel {}: it must be installed on the host",
            cmd.get_program(),
            vm_kernel()
        )
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the tool") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let s = child.wait().expect("reap the tool");
            eprintln!("{name} killed after {limit:?}");
            break s;
        }
        if sampled.elapsed() >= Duration::from_millis(500) {
            each();
            sampled = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolRun {
        status,
        output: std::fs::read_to_string(&log).unwrap_or_default(),
        took: t0.elapsed(),
    }
}

/// The unsigned integer value of `"key":N` in a JSON text (the admin API's documents), if any.
pub fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A sipp command with the options every run here needs: `-nostdin`, `-max_socket 100` (sipp
/// refuses its default of 50 000 above the VM's open-file limit; SCTP and `-t sn` need it),
/// and, with `stat`, `-trace_stat -stf stat` and `-trace_err -error_file`. Runs in `dir`.
pub fn sipp(dir: &Path, stat: Option<&Path>) -> Command {
    sipp_in(None, dir, stat)
}

/// As [`sipp`], run inside network namespace `netns` (`ip netns exec`) when given.
pub fn sipp_in(netns: Option<&str>, dir: &Path, stat: Option<&Path>) -> Command {
    require_tool("sipp");
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sipp"]);
            c
        }
        None => Command::new("sipp"),
    };
    c.current_dir(dir).args(["-nostdin", "-max_socket", "100"]);
    if let Some(stat) = stat {
        c.args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(stat)
            .args(["-trace_err", "-error_file"])
            .arg(dir.join("sipp-errors.log"));
    }
    c
}

/// The last row of sipp's `-trace_stat` file, by column name.
pub fn sipp_stats(stat_file: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(stat_file)
        .unwrap_or_else(|e| panic!("sipp's statistics file {}: {e}", stat_file.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stat header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("a stat row").split(';').collect();
    header
        .iter()
        .zip(last)
        .map(|(h, v)| ((*h).to_owned(), v.trim().to_owned()))
        .collect()
}

/// `SuccessfulCall(C)` and `FailedCall(C)` of a sipp stat file.
pub fn sipp_totals(stat_file: &Path) -> (u64, u64) {
    let s = sipp_stats(stat_file);
    let col = |name: &str| -> u64 {
        s.get(name)
            .unwrap_or_else(|| panic!("no {name} column in {:?}", s.keys()))
            .parse()
            .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", s[name]))
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

// ---------------------------------------------------------------------------------------------
// The kernel's view.

/// The local ports of the UDP sockets of the current network namespace.
pub fn udp_ports() -> Vec<u16> {
    let mut v = Vec::new();
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            if let Some(local) = line.split_whitespace().nth(1)
                && let Some((_, port)) = local.rsplit_once(':')
                && let Ok(p) = u16::from_str_radix(port, 16)
            {
                v.push(p);
            }
        }
    }
    v
}

/// Rows of a `/proc/net/sctp/*` table as column name -> value.
fn sctp_table(file: &str) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        panic!(
            "{file}: {e} (no kernel SCTP? these tests run in the VM: cargo xtask test; kernel {})",
            vm_kernel()
        )
    });
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The local ports of the listening SCTP endpoints (`/proc/net/sctp/eps`).
pub fn sctp_listening_ports() -> Vec<u16> {
    sctp_table("/proc/net/sctp/eps")
        .iter()
        .filter_map(|r| r.get("LPORT")?.parse().ok())
        .collect()
}

/// The kernel's associations (`/proc/net/sctp/assocs`) with `port` as local or remote port,
/// as `(LPORT, RPORT)`.
pub fn sctp_assocs_on(port: u16) -> Vec<(u16, u16)> {
    sctp_table("/proc/net/sctp/assocs")
        .iter()
        .filter_map(|r| {
            let l: u16 = r.get("LPORT")?.parse().ok()?;
            let p: u16 = r.get("RPORT")?.parse().ok()?;
            (l == port || p == port).then_some((l, p))
        })
        .collect()
}

/// Waits up to 10 s until `port` is open: UDP (`udp`) or a listening SCTP endpoint.
pub fn wait_port(port: u16, udp: bool, who: &mut Peer) {
    let up = wait_until(Duration::from_secs(10), || {
        who.assert_running();
        if udp {
            udp_ports().contains(&port)
        } else {
            sctp_listening_ports().contains(&port)
        }
    });
    assert!(
        up,
        "{} is not listening on {} port {port} after 10 s; its output:\n{}",
        who.what,
        if udp { "UDP" } else { "SCTP" },
        tail(&who.output(), 30)
    );
}

/// `promtool check metrics` on `text` (on stdin); panics with promtool's output unless it
/// passes.
pub fn promtool_check(text: &str) {
    require_tool("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start promtool: {e}"));
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- the metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
