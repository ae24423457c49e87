//! `sipsctp-bench`: the guest side of `cargo xtask bench system`. Inside the VM (kernel SCTP),
//! it puts each system under test between a `sipsctp-load` UAC and UAS on loopback and steps
//! the offered call rate up: the raw SCTP forwarder (no SIP work: the physical limit),
//! sipsctpd (release) SCTP -> SCTP with eBPF off, on, and on with every span exported to an
//! OTLP receiver, sipsctpd SCTP -> UDP and UDP -> SCTP, and Kamailio's sctp module
//! (stateless forward) SCTP -> SCTP and SCTP -> UDP. For each step: what the UAC offered,
//! completed and lost, its latency percentiles, and the CPU seconds of the system under test
//! and of the whole VM (`/proc`); with `--syscalls`, the system calls per relayed message
//! (`strace -c`); with `--perf`, a CPU profile (`perf record`). The results go to one JSON file for the host to tabulate and
//! plot. A step where fewer than half the calls complete ends that system's run (collapse).

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::{Value, json};

/// Flags (the host's xtask passes them).
#[derive(Parser, Debug)]
#[command(name = "sipsctp-bench")]
struct Cli {
    /// The sipsctp-load binary.
    #[arg(long)]
    load: PathBuf,
    /// The sipsctpd binary (release).
    #[arg(long)]
    sipsctpd: PathBuf,
    /// The OTLP receiver (rotel-agent) for the span-export variant.
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// The sipsctp-exporter binary (release), for the Kamailio variants observed by it.
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Offered call rates, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,400,700,1000,1500,2000"
    )]
    rates: Vec<u32>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5)]
    step_secs: u32,
    /// Only these systems (names as in the results); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Scratch directory (configs, logs).
    #[arg(long)]
    dir: PathBuf,
    /// Also measure memory per association: this many idle associations held open to
    /// sipsctpd and to Kamailio (0: skip). Needs as many descriptors (`ulimit -n`).
    #[arg(long, default_value_t = 0)]
    assocs: usize,
    /// Also count the system's syscalls per relayed message: one more step at this rate, before
    /// the others, with `strace -c` attached to every thread of the system (0: skip). strace slows what it
    /// traces several times over: keep the rate low.
    #[arg(long, default_value_t = 0)]
    syscalls: u32,
    /// Also profile each system: one more step at this rate, before the others, under
    /// `perf record` (call graphs from DWARF unwind tables, 999 Hz); its `perf.data` path goes
    /// into the results (0: skip). Useful on the host only: perf samples nothing but idle in
    /// the emulated VM.
    #[arg(long, default_value_t = 0)]
    perf: u32,
    /// Where the results go.
    #[arg(long)]
    out: PathBuf,
}

const SUT: u16 = 7000;
const UAS: u16 = 7100;
const ADMIN: u16 = 9499;
const OTLP: u16 = 4409;
const EXPORTER_ADMIN: u16 = 9498;

/// Transports of the two legs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leg {
    Sctp,
    Udp,
}

impl Leg {
    fn name(self) -> &'static str {
        match self {
            Leg::Sctp => "sctp",
            Leg::Udp => "udp",
        }
    }
}

/// One system under test.
struct System {
    name: &'static str,
    what: &'static str,
    inbound: Leg,
    outbound: Leg,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Sipsctpd {
        ebpf: bool,
        otlp: bool,
    },
    /// Kamailio; observed by sipsctp-exporter (with or without SIP capture) when `Some`.
    Kamailio {
        exporter: Option<bool>,
    },
}

const SYSTEMS: &[System] = &[
    System {
        name: "raw",
        what: "raw SCTP forwarder, no SIP work (sipsctp-load forward): the physical limit",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Raw,
    },
    System {
        name: "sipsctpd",
        what: "sipsctpd SCTP -> SCTP, eBPF off",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Sipsctpd {
            ebpf: false,
            otlp: false,
        },
    },
    System {
        name: "sipsctpd-ebpf",
        what: "sipsctpd SCTP -> SCTP, eBPF probes on",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Sipsctpd {
            ebpf: true,
            otlp: false,
        },
    },
    System {
        name: "sipsctpd-ebpf-otlp",
        what: "sipsctpd SCTP -> SCTP, eBPF on, every span exported (OTLP/HTTP to rotel)",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Sipsctpd {
            ebpf: true,
            otlp: true,
        },
    },
    System {
        name: "kamailio",
        what: "Kamailio 5.6 sctp module SCTP -> SCTP, stateless forward",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Kamailio { exporter: None },
    },
    System {
        name: "kamailio-exporter",
        what: "Kamailio SCTP -> SCTP observed by sipsctp-exporter, SIP capture off",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Kamailio {
            exporter: Some(false),
        },
    },
    System {
        name: "kamailio-exporter-sip",
        what: "Kamailio SCTP -> SCTP observed by sipsctp-exporter, SIP capture on",
        inbound: Leg::Sctp,
        outbound: Leg::Sctp,
        kind: Kind::Kamailio {
            exporter: Some(true),
        },
    },
    System {
        name: "sipsctpd-sctp-udp",
        what: "sipsctpd SCTP -> UDP, eBPF off",
        inbound: Leg::Sctp,
        outbound: Leg::Udp,
        kind: Kind::Sipsctpd {
            ebpf: false,
            otlp: false,
        },
    },
    System {
        name: "kamailio-sctp-udp",
        what: "Kamailio 5.6 SCTP -> UDP, stateless forward",
        inbound: Leg::Sctp,
        outbound: Leg::Udp,
        kind: Kind::Kamailio { exporter: None },
    },
    System {
        name: "sipsctpd-udp-udp",
        what: "sipsctpd UDP -> UDP, eBPF off (runs on a host without SCTP: --host)",
        inbound: Leg::Udp,
        outbound: Leg::Udp,
        kind: Kind::Sipsctpd {
            ebpf: false,
            otlp: false,
        },
    },
    System {
        name: "kamailio-udp-udp",
        what: "Kamailio 5.6 UDP -> UDP, stateless forward (runs on a host without SCTP: --host)",
        inbound: Leg::Udp,
        outbound: Leg::Udp,
        kind: Kind::Kamailio { exporter: None },
    },
    System {
        name: "sipsctpd-udp-sctp",
        what: "sipsctpd UDP -> SCTP, eBPF off",
        inbound: Leg::Udp,
        outbound: Leg::Sctp,
        kind: Kind::Sipsctpd {
            ebpf: false,
            otlp: false,
        },
    },
];

/// A child killed (its process group) when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(mut c: Command, log: &Path) -> Proc {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::File::create(log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file");
        c.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        Proc(c.spawn().unwrap_or_else(|e| panic!("start {c:?}: {e}")))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether something listens on `port` over `leg` in this namespace.
fn listens(leg: Leg, port: u16) -> bool {
    match leg {
        Leg::Sctp => std::fs::read_to_string("/proc/net/sctp/eps")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(5) == Some(port.to_string().as_str())),
        Leg::Udp => UdpSocket::bind(lo(port)).is_err(),
    }
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// utime + stime of `pid` (all its threads), seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / clock_ticks()
}

/// `/proc`'s clock ticks per second: USER_HZ, 100 on every Linux architecture this runs on
/// (the kernel converts from its own HZ).
fn clock_ticks() -> f64 {
    100.0
}

/// Every process whose name is `comm`.
fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Busy CPU seconds of the whole VM (`/proc/stat`'s first line, all but idle and iowait).
fn vm_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / clock_ticks()
}

/// The UAS for `leg` on [`UAS`].
fn start_uas(cli: &Cli, leg: Leg, dir: &Path) -> Proc {
    let mut c = Command::new(&cli.load);
    c.args(["uas", "--transport", leg.name(), "--quiet"])
        .args(["--listen", &lo(UAS).to_string()]);
    let p = Proc::spawn(c, &dir.join("uas.log"));
    wait_for("the UAS listening", Duration::from_secs(10), || {
        listens(leg, UAS)
    });
    p
}

fn sipsctpd_config(s: &System, ebpf: bool, otlp: bool) -> String {
    let mut c = format!(
        "[[listen]]\nproto = \"{}\"\naddresses = [\"127.0.0.1\"]\nport = {SUT}\n\n",
        s.inbound.name()
    );
    if s.outbound != s.inbound {
        // The outbound leg leaves from a listener of its transport.
        c.push_str(&format!(
            "[[listen]]\nproto = \"{}\"\naddresses = [\"127.0.0.1\"]\nport = {}\n\n",
            s.outbound.name(),
            SUT + 1
        ));
    }
    c.push_str(&format!(
        "[[route]]\nupstream = \"{}:127.0.0.1:{UAS}\"\n\n[admin]\nlisten = \"127.0.0.1:{ADMIN}\"\n\n\
         [log]\nlevel = \"warn\"\n\n[ebpf]\nmode = \"{}\"\n\n",
        s.outbound.name(),
        if ebpf { "on" } else { "off" }
    ));
    if otlp {
        c.push_str(&format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{OTLP}\"\nsampling_ratio = 1.0\n\
             max_spans_per_second = 1000000\n"
        ));
    }
    c
}

/// Kamailio's configuration: 2 UDP (and 2 SCTP) worker processes (one per vCPU of the VM), the
/// kernel's default socket buffers (the sctp module's `socket_*buf` parameters are not
/// module parameters in 5.6), stateless forward; no sctp module without an SCTP leg.
fn kamailio_config(s: &System) -> String {
    let sctp = s.inbound == Leg::Sctp || s.outbound == Leg::Sctp;
    let mut listen = format!("listen={}:127.0.0.1:{SUT}\n", s.inbound.name());
    if s.outbound != s.inbound {
        listen.push_str(&format!(
            "listen={}:127.0.0.1:{}\n",
            s.outbound.name(),
            SUT + 1
        ));
    }
    format!(
        "#!KAMAILIO\n\
         debug=1\nlog_stderror=yes\nchildren=2\n{}\
         disable_tcp=yes\nauto_aliases=no\n\
         {listen}\
         {}loadmodule \"sl.so\"\nloadmodule \"textops.so\"\n\
         loadmodule \"pv.so\"\n\
         request_route {{\n\
         \x20   if (is_method(\"OPTIONS\")) {{ sl_send_reply(\"200\", \"OK\"); exit; }}\n\
         \x20   $du = \"sip:127.0.0.1:{UAS};transport={}\";\n\
         \x20   forward();\n\
         }}\n",
        if sctp {
            "enable_sctp=yes\nsctp_children=2\n"
        } else {
            "enable_sctp=no\n"
        },
        if sctp { "loadmodule \"sctp.so\"\n" } else { "" },
        s.outbound.name()
    )
}

/// sipsctp-exporter observing Kamailio (`--process kamailio`), SIP capture `sip`; returns once
/// its probes are attached (`/health` says ok).
fn start_exporter(cli: &Cli, sip: bool, dir: &Path) -> Proc {
    let Some(bin) = &cli.exporter else {
        panic!("--exporter is needed for the variants observed by sipsctp-exporter");
    };
    let cfg = dir.join("exporter.toml");
    std::fs::write(
        &cfg,
        format!("[observe]\nprocess = \"kamailio\"\nsip = {sip}\n"),
    )
    .expect("write the exporter's config");
    let mut c = Command::new(bin);
    c.arg("--config")
        .arg(&cfg)
        .args(["--admin", &lo(EXPORTER_ADMIN).to_string()]);
    let p = Proc::spawn(c, &dir.join("exporter.log"));
    wait_for("sipsctp-exporter attached", Duration::from_secs(60), || {
        http_get(lo(EXPORTER_ADMIN), "/health").is_some_and(|b| b.contains("\"ok\""))
    });
    p
}

/// The body of `GET path` on `addr`, if it answers.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// Starts the system under test; returns it and how to find its processes.
fn start_system(cli: &Cli, s: &System, dir: &Path) -> (Proc, Option<Proc>) {
    match s.kind {
        Kind::Raw => {
            let mut c = Command::new(&cli.load);
            c.args(["forward", "--listen", &lo(SUT).to_string()])
                .args(["--upstream", &lo(UAS).to_string()]);
            (Proc::spawn(c, &dir.join("forward.log")), None)
        }
        Kind::Sipsctpd { ebpf, otlp } => {
            let rotel = if otlp {
                let Some(r) = &cli.rotel else {
                    panic!("--rotel is needed for the OTLP variant");
                };
                let mut c = Command::new(r);
                c.current_dir(dir)
                    .args([
                        "start",
                        "--otlp-grpc-endpoint",
                        &format!("127.0.0.1:{}", OTLP + 1),
                    ])
                    .args(["--otlp-http-endpoint", &format!("127.0.0.1:{OTLP}")])
                    .args(["--exporter", "blackhole"]);
                let p = Proc::spawn(c, &dir.join("rotel.log"));
                wait_for("rotel listening", Duration::from_secs(20), || {
                    TcpStream::connect(lo(OTLP)).is_ok()
                });
                Some(p)
            } else {
                None
            };
            let cfg = dir.join("sipsctpd.toml");
            std::fs::write(&cfg, sipsctpd_config(s, ebpf, otlp)).expect("write the config");
            let mut c = Command::new(&cli.sipsctpd);
            c.arg("--config").arg(&cfg);
            (Proc::spawn(c, &dir.join("sipsctpd.log")), rotel)
        }
        Kind::Kamailio { .. } => {
            let cfg = dir.join("kamailio.cfg");
            std::fs::write(&cfg, kamailio_config(s)).expect("write kamailio.cfg");
            let mut c = Command::new("kamailio");
            c.arg("-f").arg(&cfg).args(["-DD", "-E"]);
            (Proc::spawn(c, &dir.join("kamailio.log")), None)
        }
    }
}

/// The processes whose CPU counts as the system's.
fn system_pids(s: &System, main: &Proc) -> Vec<u32> {
    match s.kind {
        Kind::Kamailio { .. } => pids_named("kamailio"),
        _ => vec![main.pid()],
    }
}

/// One step: the UAC at `rate` calls/s for the step's length; `observer` (sipsctp-exporter)
/// has its CPU reported apart.
fn step(
    cli: &Cli,
    s: &System,
    rate: u32,
    dir: &Path,
    pids: &[u32],
    observer: Option<u32>,
) -> Value {
    let json = dir.join(format!("uac-{rate}.json"));
    let cpu0: f64 = pids.iter().map(|p| cpu_of(*p)).sum();
    let observer0 = observer.map(cpu_of);
    let vm0 = vm_cpu();
    let t0 = Instant::now();
    let out = Command::new(&cli.load)
        .args(["uac", "--transport", s.inbound.name(), "--quiet"])
        .args(["--target", &lo(SUT).to_string()])
        .args(["--scenario", "call", "--connections", "1"])
        .args(["--rate", &rate.to_string()])
        .args(["--step-secs", &cli.step_secs.to_string()])
        .args(["--timeout-ms", "4000"])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run the UAC");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = pids.iter().map(|p| cpu_of(*p)).sum::<f64>() - cpu0;
    let observer_cpu = observer.zip(observer0).map(|(p, c0)| cpu_of(p) - c0);
    let vm = vm_cpu() - vm0;
    let v: Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| {
            json!({"error": format!("the UAC failed: {} {}", out.status,
                String::from_utf8_lossy(&out.stderr))})
        });
    let t = &v["totals"];
    json!({
        "rate": rate,
        "offered": t["offered"],
        "completed": t["completed"],
        "failed": t["failed_total"],
        "failed_by_kind": t["failed"],
        "retransmissions": t["retransmissions"],
        "achieved_rate": t["achieved_rate"],
        "setup_p50_us": t["latency_us"]["setup"]["p50"],
        "setup_p99_us": t["latency_us"]["setup"]["p99"],
        "call_p50_us": t["latency_us"]["transaction"]["p50"],
        "call_p99_us": t["latency_us"]["transaction"]["p99"],
        "cpu_system_s": cpu,
        "cpu_observer_s": observer_cpu,
        "cpu_vm_s": vm,
        "wall_s": wall,
        "uac_error": v.get("error"),
    })
}

/// Messages a completed call puts through the relay: INVITE, 100, 200, ACK, BYE, 200.
const MESSAGES_PER_CALL: f64 = 6.0;

/// Every thread of `pids`.
fn threads_of(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .flat_map(|p| {
            std::fs::read_dir(format!("/proc/{p}/task"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        })
        .collect()
}

/// One step at `rate` with `strace -c` on every thread of `pids`: system calls per relayed
/// message, in all and by name.
fn syscalls(cli: &Cli, s: &System, rate: u32, dir: &Path, pids: &[u32]) -> Value {
    let out = dir.join(format!("strace-{rate}.txt"));
    let mut c = Command::new("strace");
    c.args(["-c", "-f", "-q", "-o"]).arg(&out);
    for t in threads_of(pids) {
        c.args(["-p", &t.to_string()]);
    }
    let tracer = Proc::spawn(c, &dir.join("strace.log"));
    // strace attaches to each thread before the load starts.
    thread::sleep(Duration::from_secs(1));
    let st = step(cli, s, rate, dir, pids, None);
    // SIGINT (through the group): strace detaches and writes its summary.
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", tracer.pid())])
        .status();
    wait_for("strace's summary", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("total"))
    });
    tracer.stop(Duration::from_secs(2));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let calls = sipsctp_load::strace::calls(&text);
    let completed = st["completed"].as_f64().unwrap_or(0.0);
    let messages = completed * MESSAGES_PER_CALL;
    let per = |n: u64| {
        if messages > 0.0 {
            n as f64 / messages
        } else {
            0.0
        }
    };
    let by_name: serde_json::Map<String, Value> = calls
        .iter()
        .filter(|(n, _)| n.as_str() != "total")
        .map(|(n, c)| (n.clone(), json!(per(*c))))
        .collect();
    json!({
        "rate": rate,
        "completed": completed,
        "messages": messages,
        "per_message": per(calls.get("total").copied().unwrap_or(0)),
        "by_name": by_name,
    })
}

/// One step at `rate` under `perf record` of `pids`; where the samples are.
fn profile(cli: &Cli, s: &System, rate: u32, dir: &Path, pids: &[u32]) -> Value {
    let data = dir.join(format!("perf-{rate}.data"));
    let mut c = Command::new("perf");
    c.args([
        "record",
        "-q",
        "-F",
        "999",
        "--call-graph",
        "dwarf,16384",
        "-o",
    ])
    .arg(&data)
    .arg("-p")
    .arg(
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    let perf = Proc::spawn(c, &dir.join("perf.log"));
    thread::sleep(Duration::from_secs(1));
    let st = step(cli, s, rate, dir, pids, None);
    // SIGINT: perf stops and finishes its file.
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", perf.pid())])
        .status();
    // (stop's SIGTERM ends it the same way; it then writes build ids, which takes seconds.)
    perf.stop(Duration::from_secs(60));
    json!({
        "rate": rate,
        "completed": st["completed"],
        "offered": st["offered"],
        "perf_data": data,
    })
}

/// Resident memory of `pids`, bytes (`VmRSS`).
fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// The kernel's slab memory, bytes (`Slab` of `/proc/meminfo`).
fn slab() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Associations whose local port is `port` (`/proc/net/sctp/assocs`).
fn assocs_on(port: u16) -> usize {
    std::fs::read_to_string("/proc/net/sctp/assocs")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(11) == Some(port.to_string().as_str()))
        .count()
}

/// An OPTIONS to the system under test itself, which it answers (a keep-alive).
fn options(local: SocketAddr, n: usize) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:{SUT} SIP/2.0\r\n\
         Via: SIP/2.0/SCTP {local};branch=z9hG4bK-mem-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:mem@127.0.0.1>;tag=m{n}\r\n\
         To: <sip:127.0.0.1:{SUT}>\r\n\
         Call-ID: mem-{n}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Opens `n` idle associations to [`SUT`] (one client socket each, an OPTIONS on each) and
/// returns the sockets once the system has them all (or after a minute).
fn hold_assocs(rt: &tokio::runtime::Runtime, n: usize) -> Vec<sipsctp_sctp::SctpSocket> {
    rt.block_on(async {
        let config = sipsctp_sctp::SocketConfig {
            backlog: None,
            ..sipsctp_sctp::SocketConfig::default()
        };
        let mut socks = Vec::with_capacity(n);
        for i in 0..n {
            let s = match sipsctp_sctp::SctpSocket::bind(&[lo(0)], &config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("  association {i}: {e}; holding {} instead", socks.len());
                    break;
                }
            };
            let local = s.local_addr().unwrap_or(lo(0));
            let msg = options(local, i);
            let _ = s
                .send(
                    msg.as_bytes(),
                    sipsctp_sctp::SendTarget::Addr(lo(SUT)),
                    &sipsctp_sctp::SendOptions::default(),
                )
                .await;
            socks.push(s);
            if i % 500 == 499 {
                tokio::task::yield_now().await;
            }
        }
        let t = Instant::now();
        while assocs_on(SUT) < socks.len() && t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        socks
    })
}

/// Memory per idle association of sipsctpd and Kamailio: RSS and kernel slab before and after
/// `n` associations are opened to each.
fn memory(cli: &Cli, n: usize) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut out = Vec::new();
    for name in ["sipsctpd", "kamailio"] {
        let s = SYSTEMS
            .iter()
            .find(|s| s.name == name)
            .expect("a known system");
        let dir = cli.dir.join(format!("memory-{name}"));
        std::fs::create_dir_all(&dir).expect("create a directory");
        let (sut, helper) = start_system(cli, s, &dir);
        wait_for(
            &format!("{name} listening"),
            Duration::from_secs(60),
            || listens(Leg::Sctp, SUT),
        );
        thread::sleep(Duration::from_secs(1));
        let pids = system_pids(s, &sut);
        let (rss0, slab0) = (rss(&pids), slab());
        let socks = hold_assocs(&rt, n);
        thread::sleep(Duration::from_secs(2));
        let held = assocs_on(SUT);
        let (rss1, slab1) = (rss(&pids), slab());
        let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / held.max(1) as f64;
        eprintln!(
            "  {name}: {held} associations held; RSS {:.0} B/association, kernel slab {:.0} B/association (both ends and the client's socket)",
            per(rss0, rss1),
            per(slab0, slab1)
        );
        out.push(json!({
            "name": name,
            "associations": held,
            "rss_before": rss0,
            "rss_after": rss1,
            "rss_per_assoc": per(rss0, rss1),
            "slab_before": slab0,
            "slab_after": slab1,
            "slab_per_assoc": per(slab0, slab1),
        }));
        drop(socks);
        sut.stop(Duration::from_secs(10));
        if let Some(h) = helper {
            h.stop(Duration::from_secs(2));
        }
        // The closed client sockets' associations shut down before the next system.
        let t = Instant::now();
        while assocs_on(SUT) > 0 && t.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    Value::Array(out)
}

fn main() {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.dir).expect("create the scratch directory");
    let mut results = Vec::new();
    for s in SYSTEMS {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == s.name) {
            continue;
        }
        let dir = cli.dir.join(s.name);
        std::fs::create_dir_all(&dir).expect("create a system's directory");
        eprintln!("sipsctp-bench: {} ({})", s.name, s.what);
        let uas = start_uas(&cli, s.outbound, &dir);
        let (sut, helper) = start_system(&cli, s, &dir);
        wait_for(
            &format!("{} listening", s.name),
            Duration::from_secs(60),
            || listens(s.inbound, SUT),
        );
        let observer = match s.kind {
            Kind::Kamailio {
                exporter: Some(sip),
            } => Some(start_exporter(&cli, sip, &dir)),
            _ => None,
        };
        // eBPF attaching, association setup: let it settle.
        thread::sleep(Duration::from_secs(1));
        let pids = system_pids(s, &sut);
        // First, on the fresh system: a system that collapsed in a later step may still be
        // busy with its backlog (retransmissions, log lines) and would count that too.
        let traced = (cli.syscalls > 0).then(|| {
            let v = syscalls(&cli, s, cli.syscalls, &dir, &pids);
            eprintln!(
                "  syscalls at {} calls/s: {:.2} per relayed message",
                cli.syscalls,
                v["per_message"].as_f64().unwrap_or(0.0)
            );
            v
        });
        let profiled = (cli.perf > 0).then(|| profile(&cli, s, cli.perf, &dir, &pids));
        let mut steps = Vec::new();
        for &rate in &cli.rates {
            let st = step(&cli, s, rate, &dir, &pids, observer.as_ref().map(Proc::pid));
            let offered = st["offered"].as_u64().unwrap_or(0);
            let completed = st["completed"].as_u64().unwrap_or(0);
            eprintln!(
                "  {rate:>5} calls/s: {completed}/{offered} completed, setup p99 {} us, {:.2} CPU s",
                st["setup_p99_us"],
                st["cpu_system_s"].as_f64().unwrap_or(0.0)
            );
            steps.push(st);
            if offered == 0 || completed * 2 < offered {
                eprintln!("  collapsed: no higher rates for {}", s.name);
                break;
            }
        }
        if let Some(o) = observer {
            o.stop(Duration::from_secs(2));
        }
        sut.stop(Duration::from_secs(5));
        if let Some(h) = helper {
            h.stop(Duration::from_secs(2));
        }
        uas.stop(Duration::from_secs(2));
        results.push(json!({
            "name": s.name,
            "what": s.what,
            "inbound": s.inbound.name(),
            "outbound": s.outbound.name(),
            "steps": steps,
            "syscalls": traced,
            "profile": profiled,
        }));
    }
    let memory = (cli.assocs > 0).then(|| {
        eprintln!(
            "sipsctp-bench: memory with {} idle associations",
            cli.assocs
        );
        memory(&cli, cli.assocs)
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let doc = json!({
        "kernel": kernel.trim(),
        "vcpus": cpus,
        "step_secs": cli.step_secs,
        "rates": cli.rates,
        "systems": results,
        "memory": memory,
    });
    std::fs::write(
        &cli.out,
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    )
    .expect("write the results");
    eprintln!("sipsctp-bench: results in {}", cli.out.display());
}
