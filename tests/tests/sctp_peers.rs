//! This project's [`SctpEndpoint`] against independent SCTP implementations in user space, over
//! the VM's kernel SCTP on loopback:
//!
//! - **sipp** (`-t s1`: one SCTP socket for all calls; `-t sn`: one socket per call) runs
//!   `tests/data/options_uac.xml`, 50 OPTIONS each expecting a 200 OK, against a minimal SIP
//!   responder written here on top of the endpoint (it copies Via, From, To, Call-ID and CSeq
//!   and replies with `SctpEndpoint::send` to the message's socket and peer, which reuses the
//!   request's association). sipp must exit 0 and count 50 successful calls; the endpoint must
//!   have seen exactly 50 requests on exactly the associations sipp opened (`s1`: one, open
//!   until sipp exits; `sn`: 50, each shut down as its call ends), and every one of them must
//!   end with sipp's graceful SHUTDOWN.
//! - **lksctp-tools' `sctp_test`** as a client (`-s -D`: it sends its size sequence 1 B ..
//!   32 KiB and reads one reply after each) against the endpoint echoing: the endpoint receives
//!   exactly sctp_test's bytes (its digit pattern, NUL-terminated) and sctp_test reads every
//!   echo back whole; and as a server (`-l`) receiving what the endpoint sends to it on an
//!   association the endpoint opens (1 B .. 60 000 B).
//!
//! A missing or misbehaving tool fails the test; nothing is skipped.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sipsctp_sctp::{
    AssocId, SctpSocket, SocketConfig,
    counters::CounterSnapshot,
    endpoint::{EndpointConfig, Received, SctpEndpoint},
};
use sipsctp_tests::{eventually, require_sctp, vm_kernel};
use tokio::sync::mpsc;

const LOCALHOST: [u8; 4] = [127, 0, 0, 1];
const SIPP_CALLS: usize = 50;

/// An endpoint with one listener on 127.0.0.1 (kernel-chosen port) and default parameters.
fn loopback_endpoint() -> (Arc<SctpEndpoint>, mpsc::Receiver<Received>, SocketAddr) {
    let config = EndpointConfig {
        listeners: vec![vec![SocketAddr::from((LOCALHOST, 0))]],
        ..EndpointConfig::default()
    };
    let (endpoint, rx) = SctpEndpoint::bind(&config).expect("bind the endpoint on 127.0.0.1");
    let addr = endpoint.listeners()[0].1[0];
    assert_ne!(addr.port(), 0, "the endpoint reports its bound port");
    (Arc::new(endpoint), rx, addr)
}

/// A scratch directory in the guest's /tmp for a tool's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipsctp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// What a finished tool run left.
struct ToolRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl ToolRun {
    fn show(&self) -> String {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "{} after {:.1} s\n--- stdout (last 40 lines) ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.took.as_secs_f64(),
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// Runs `cmd` to completion on a blocking thread (the runtime keeps serving the endpoint),
/// with its output in files under `dir`; kills it after `limit`. Panics when it cannot start.
async fn run_tool(mut cmd: Command, dir: &Path, limit: Duration) -> ToolRun {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {program} ({e}) in the VM on kernel {}: is it installed on the host \
             (the guest's root is the host's)?",
            vm_kernel()
        )
    });
    let status = tokio::task::spawn_blocking(move || {
        loop {
            if let Some(s) = child.try_wait().expect("wait for the tool") {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let s = child.wait().expect("reap the killed tool");
                eprintln!("{program} killed after {limit:?}");
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("the waiting thread");
    ToolRun {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: t0.elapsed(),
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal SIP responder.

/// The method of `request` and a 200 OK for it: its Via, From, To (with a tag added when it has
/// none), Call-ID and CSeq header lines copied (full or compact names), no body. `None` when it
/// is not a SIP request.
fn ok_response(request: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(request).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, _uri, version) = (start.next()?, start.next()?, start.next()?);
    if version != "SIP/2.0" || method.is_empty() {
        return None;
    }
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                if !value.to_ascii_lowercase().contains(";tag=") {
                    out.push_str(";tag=sipsctp-test");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some((method.to_owned(), out))
}

#[test]
fn ok_response_copies_the_dialog_headers() {
    let req = b"OPTIONS sip:x@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/SCTP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
        v: SIP/2.0/SCTP 10.0.0.1:5060;branch=z9hG4bK0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@c>\r\n\
        Call-ID: 1-2@127.0.0.1\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (method, resp) = ok_response(req).expect("a request");
    assert_eq!(method, "OPTIONS");
    assert_eq!(
        resp,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/SCTP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
         v: SIP/2.0/SCTP 10.0.0.1:5060;branch=z9hG4bK0\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:x@c>;tag=sipsctp-test\r\nCall-ID: 1-2@127.0.0.1\r\nCSeq: 7 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert!(ok_response(b"SIP/2.0 200 OK\r\n\r\n").is_none());
}

/// What the responder saw.
#[derive(Default, Debug)]
struct ResponderLog {
    /// (association, peer, method) of every request.
    requests: Vec<(AssocId, SocketAddr, String)>,
    /// Everything that went wrong (non-requests, refused sends).
    errors: Vec<String>,
}

/// Answers every request arriving on `rx` with a 200 OK through `endpoint`, to the request's
/// socket and peer.
fn spawn_responder(
    endpoint: Arc<SctpEndpoint>,
    mut rx: mpsc::Receiver<Received>,
) -> Arc<Mutex<ResponderLog>> {
    let log = Arc::new(Mutex::new(ResponderLog::default()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let Some((method, resp)) = ok_response(&msg.data) else {
                l.lock().unwrap().errors.push(format!(
                    "not a SIP request from {} on {}: {:?}",
                    msg.peer,
                    msg.assoc,
                    String::from_utf8_lossy(&msg.data)
                ));
                continue;
            };
            let sent = endpoint.send(msg.socket, msg.peer, resp.as_bytes());
            let mut log = l.lock().unwrap();
            log.requests.push((msg.assoc, msg.peer, method));
            if let Err(e) = sent {
                log.errors.push(format!("200 OK to {}: {e}", msg.peer));
            }
        }
    });
    log
}

/// sipp's final `SuccessfulCall(C)` and `FailedCall(C)` from its `-trace_stat` file.
fn sipp_totals(stat_file: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(stat_file)
        .unwrap_or_else(|e| panic!("sipp's statistics file {}: {e}", stat_file.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stat header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("a stat row").split(';').collect();
    let col = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"));
        last[i]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", last[i]))
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

/// Runs sipp's OPTIONS scenario with `transport` (`s1` or `sn`) against a fresh responder and
/// checks both sides; returns, for the transport-specific checks, the endpoint's counters, the
/// associations the requests came on, and the most associations open at once during the run.
async fn sipp_options(transport: &str) -> (CounterSnapshot, BTreeSet<AssocId>, u64) {
    require_sctp();
    let (endpoint, rx, addr) = loopback_endpoint();
    let log = spawn_responder(endpoint.clone(), rx);
    let dir = scratch(&format!("sipp-{transport}"));
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/options_uac.xml");
    assert!(
        scenario.is_file(),
        "scenario {} missing",
        scenario.display()
    );
    let stat = dir.join("stat.csv");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir)
        .arg("-sf")
        .arg(&scenario)
        .args(["-t", transport, "-i", "127.0.0.1"])
        .args(["-m", &SIPP_CALLS.to_string(), "-r", &SIPP_CALLS.to_string()])
        // -max_socket: sipp refuses its default (50 000) above the open-file limit (1024 in the
        // VM); 100 still gives each of the 50 calls of `-t sn` a socket of its own.
        .args(["-max_socket", "100"])
        .args(["-nostdin", "-timeout", "60s", "-timeout_error"])
        .args(["-trace_stat", "-stf"])
        .arg(&stat)
        .args(["-trace_err", "-error_file"])
        .arg(dir.join("errors.log"))
        .arg(addr.to_string());
    // The most associations open at once while sipp runs.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (endpoint, peak) = (endpoint.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(endpoint.info().opened, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let run = run_tool(cmd, &dir, Duration::from_secs(90)).await;
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    let errors_log = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "kernel {}: sipp -t {transport} failed: {}\n--- sipp errors.log ---\n{errors_log}\n\
         --- responder ---\n{:?}",
        vm_kernel(),
        run.show(),
        log.lock().unwrap()
    );
    let (ok, failed) = sipp_totals(&stat);
    assert_eq!(
        (ok, failed),
        (SIPP_CALLS as u64, 0),
        "sipp -t {transport}: successful and failed calls; {}",
        run.show()
    );

    // sipp exited: every one of its associations ends (gracefully, as it closes by default).
    let closed = eventually(Duration::from_secs(10), || endpoint.info().opened == 0).await;
    let c = endpoint.counters();
    assert!(
        closed,
        "sipp -t {transport}: associations still open 10 s after sipp exited: {:?}, {c:?}",
        endpoint.info()
    );
    let log = log.lock().unwrap();
    assert!(
        log.errors.is_empty(),
        "sipp -t {transport}: responder errors: {:?}",
        log.errors
    );
    assert_eq!(
        log.requests.len(),
        SIPP_CALLS,
        "sipp -t {transport}: requests the endpoint delivered"
    );
    assert!(
        log.requests.iter().all(|r| r.2 == "OPTIONS"),
        "sipp -t {transport}: only OPTIONS expected: {:?}",
        log.requests
    );
    let assocs: BTreeSet<AssocId> = log.requests.iter().map(|r| r.0).collect();
    assert_eq!(
        c.established,
        assocs.len() as u64,
        "sipp -t {transport}: every association that came up carried requests ({c:?})"
    );
    assert_eq!(
        (c.assoc_shutdown, c.remote_shutdown, c.comm_lost),
        (c.established, c.established, 0),
        "sipp -t {transport}: every association ends with sipp's SHUTDOWN, none is lost ({c:?})"
    );
    assert_eq!(
        (c.send_failed, c.sendq_full),
        (0, 0),
        "sipp -t {transport}: no failed or queued reply ({c:?})"
    );
    eprintln!(
        "kernel {}: sipp -t {transport}: {ok} OPTIONS -> 200 OK in {:.2} s, {} association(s), \
         at most {peak} open at once, counters {c:?}",
        vm_kernel(),
        run.took.as_secs_f64(),
        assocs.len()
    );
    (c, assocs, peak)
}

#[tokio::test]
async fn sipp_s1_sends_50_options_on_one_association() {
    let (c, assocs, peak) = sipp_options("s1").await;
    assert_eq!(
        (c.established, assocs.len(), peak),
        (1, 1, 1),
        "sipp -t s1 uses one socket, so one association for all calls, open until sipp exits"
    );
}

#[tokio::test]
async fn sipp_sn_sends_50_options_on_one_association_per_call() {
    let (c, assocs, peak) = sipp_options("sn").await;
    assert_eq!(
        (c.established, assocs.len()),
        (SIPP_CALLS as u64, SIPP_CALLS),
        "sipp -t sn opens one socket, so one association, per call"
    );
    // Calls follow each other (50 per second, each done in a few milliseconds) and sipp
    // closes a call's socket when the call ends, so they never pile up until sipp exits.
    assert!(
        peak < SIPP_CALLS as u64 / 2,
        "sipp -t sn: {peak} associations open at once; expected each to end with its call"
    );
}

// ---------------------------------------------------------------------------------------------
// lksctp-tools' sctp_test.

/// sctp_test's test case 4 (`-c 4`): the sizes of one round.
const SCTP_TEST_CASE4: [usize; 10] = [1, 1000, 2000, 3000, 5000, 10000, 15000, 20000, 25000, 32768];

/// What sctp_test sends as a message of `len` bytes (its `build_msg`): the digits `0`..`9`
/// repeated, then a NUL.
fn sctp_test_message(len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len - 1).map(|i| b'0' + (i % 10) as u8).collect();
    m.push(0);
    m
}

/// The sizes in sctp_test's `Data N bytes.` lines (one per data message it read).
fn sctp_test_data_sizes(stdout: &str) -> Vec<usize> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("Data ")? + 5..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test]
async fn sctp_test_client_messages_arrive_exactly_and_echoes_return_whole() {
    require_sctp();
    let (endpoint, mut rx, addr) = loopback_endpoint();
    const ROUNDS: usize = 2;
    let expected: Vec<usize> = SCTP_TEST_CASE4.repeat(ROUNDS);
    let echo_ep = endpoint.clone();
    let server = tokio::spawn(async move {
        let mut got: Vec<Received> = Vec::new();
        while got.len() < ROUNDS * SCTP_TEST_CASE4.len() {
            let Some(msg) = rx.recv().await else { break };
            echo_ep
                .send(msg.socket, msg.peer, &msg.data)
                .unwrap_or_else(|e| panic!("echo of {} B to {}: {e}", msg.data.len(), msg.peer));
            got.push(msg);
        }
        got
    });

    let dir = scratch("sctp_test-client");
    let mut cmd = Command::new("sctp_test");
    cmd.args(["-H", "127.0.0.1", "-P", "0", "-h", "127.0.0.1"])
        .args(["-p", &addr.port().to_string()])
        .args(["-s", "-c", "4", "-x", &ROUNDS.to_string(), "-D", "-d", "1"]);
    let run = run_tool(cmd, &dir, Duration::from_secs(60)).await;
    assert!(
        run.status.success(),
        "kernel {}: sctp_test client failed: {}",
        vm_kernel(),
        run.show()
    );
    let got = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the endpoint did not receive {} messages within 10 s; {}",
                expected.len(),
                run.show()
            )
        })
        .expect("echo task");

    let sizes: Vec<usize> = got.iter().map(|m| m.data.len()).collect();
    let mut sorted_got = sizes.clone();
    let mut sorted_want = expected.clone();
    sorted_got.sort_unstable();
    sorted_want.sort_unstable();
    assert_eq!(
        sorted_got, sorted_want,
        "sizes the endpoint received from sctp_test (arrival order {sizes:?})"
    );
    for m in &got {
        assert!(
            m.data == sctp_test_message(m.data.len()),
            "a {} B message differs from sctp_test's pattern: starts {:?}",
            m.data.len(),
            String::from_utf8_lossy(&m.data[..m.data.len().min(40)])
        );
        assert_eq!(m.stream, 0, "sctp_test sends on stream 0");
    }
    let assocs: BTreeSet<AssocId> = got.iter().map(|m| m.assoc).collect();
    assert_eq!(
        assocs.len(),
        1,
        "one association from sctp_test: {assocs:?}"
    );

    // -D: sctp_test read one message after each send; each must be the whole echo.
    let mut echoed = sctp_test_data_sizes(&run.stdout);
    echoed.sort_unstable();
    assert_eq!(
        echoed,
        sorted_want,
        "sizes of the echoes sctp_test read (partial reads would show as extra, smaller ones); {}",
        run.show()
    );
    let c = endpoint.counters();
    assert_eq!(
        (c.established, c.send_failed, c.dropped_too_large),
        (1, 0, 0),
        "endpoint counters {c:?}"
    );
    eprintln!(
        "kernel {}: sctp_test sent {} messages ({} B in all) to the endpoint and read every echo \
         back whole in {:.2} s",
        vm_kernel(),
        expected.len(),
        expected.iter().sum::<usize>(),
        run.took.as_secs_f64()
    );
}

/// A port that was free on 127.0.0.1 a moment ago (for a tool that needs one given).
fn free_port() -> u16 {
    let probe = SctpSocket::bind(
        &[SocketAddr::from((LOCALHOST, 0))],
        &SocketConfig {
            backlog: None,
            ..SocketConfig::default()
        },
    )
    .expect("probe socket");
    probe.local_addr().expect("probe address").port()
}

/// A child killed (and reaped) when dropped, so that a failing test does not leave it behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sctp_test_server_receives_what_the_endpoint_sends() {
    require_sctp();
    let (endpoint, _rx, _addr) = loopback_endpoint();
    let mut events = endpoint.events();
    let port = free_port();
    let mut child = Reaped(
        Command::new("sctp_test")
            .args(["-H", "127.0.0.1", "-P", &port.to_string(), "-l", "-d", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sctp_test in the VM ({e})")),
    );
    // Its lines, as they come (it flushes each).
    let (line_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let stdout = child.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // It listens once it printed listen(); wait for that before sending.
    let listening = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(l) = lines.recv().await {
            let done = l.contains("listen(");
            seen.push(l);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(listening, Ok(true)),
        "sctp_test -l did not start listening on port {port}: {seen:?}, status {:?}",
        child.0.try_wait()
    );

    let dest = SocketAddr::from((LOCALHOST, port));
    let sizes = [1usize, 200, 1452, 1453, 4000, 16_384, 60_000, 700];
    let (socket, _) = endpoint.listeners()[0].clone();
    for (i, &n) in sizes.iter().enumerate() {
        let msg: Vec<u8> = (0..n).map(|k| b'a' + ((k + i) % 26) as u8).collect();
        endpoint
            .send(socket, dest, &msg)
            .unwrap_or_else(|e| panic!("sending {n} B to sctp_test at {dest}: {e}"));
    }

    let mut got = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < sizes.len() {
            let Some(l) = lines.recv().await else {
                return false;
            };
            got.extend(sctp_test_data_sizes(&l));
            seen.push(l);
        }
        true
    })
    .await;
    drop(child);
    assert!(
        matches!(all, Ok(true)),
        "kernel {}: sctp_test received {got:?} of {sizes:?} within 10 s; its output:\n{}",
        vm_kernel(),
        seen.join("\n")
    );
    let mut want = sizes.to_vec();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "sizes sctp_test read (whole messages)");
    let up = eventually(Duration::from_secs(5), || {
        endpoint.counters().established == 1
    })
    .await;
    let c = endpoint.counters();
    let mut ev = Vec::new();
    while let Ok(e) = events.try_recv() {
        ev.push(e);
    }
    assert!(
        up && (c.established, c.send_failed, c.connect_failed) == (1, 0, 0),
        "kernel {}: the endpoint opened one association to sctp_test: {c:?}, events {ev:?}",
        vm_kernel()
    );
    eprintln!(
        "kernel {}: sctp_test -l read the endpoint's {} messages ({} B) whole",
        vm_kernel(),
        sizes.len(),
        sizes.iter().sum::<usize>()
    );
}
