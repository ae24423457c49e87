//! The two roles at the edges: sockets opened, tasks spawned, the pure UAC ([`Uac`]) and
//! answer builder ([`answer`]) fed, results written.
//!
//! UAC: one task per connection reads responses and feeds them to the UAC under its lock
//! (one lock and one clock read per batch), a ticker wakes every millisecond to fire timers
//! and start what is due, and every task sends what the UAC produced after releasing the
//! lock. UAS: reader tasks answer each request on the connection (UDP: to the source
//! address) it came on.

use std::{
    fs,
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::ControlFlow,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::{
    answer::{Batch, UasConfig, UasCounters, answer},
    cli::{SctpStyle, UacArgs, UasArgs},
    msg::{CallRef, Local, Transport, decode_call_id},
    net::{Conn, Dest, Socket, nth_port, read_loop, route_source},
    schedule::steps,
    sip::{Hdr, Head},
    stats::{StepStats, table, totals},
    uac::{Outbox, Uac, UacConfig},
};

/// Why a role could not run.
#[derive(Debug, Error)]
pub enum Error {
    /// A flag value that cannot work.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// A socket could not be set up.
    #[error("{what} {addr}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// With which address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// SCTP socket setup.
    #[error("SCTP socket on {addr}: {source}")]
    Sctp {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: sipsctp_sctp::Error,
    },
    /// Writing the results.
    #[error("writing {path}: {source}")]
    Output {
        /// Where.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The runtime could not be built.
    #[error("tokio runtime: {0}")]
    Runtime(io::Error),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn runtime(workers: u16) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(workers))
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Writes `v` to `path` ("-": stdout).
pub fn write_json(path: &Path, v: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let err = |source| Error::Output {
        path: path.display().to_string(),
        source,
    };
    if path == Path::new("-") {
        io::stdout().write_all(text.as_bytes()).map_err(err)
    } else {
        fs::write(path, text).map_err(err)
    }
}

fn wildcard(like: SocketAddr) -> SocketAddr {
    match like {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// The address to advertise for a socket bound to `bound` that talks to `peer`.
fn advertised(bound: SocketAddr, peer: SocketAddr) -> SocketAddr {
    let mut a = bound;
    if a.ip().is_unspecified() {
        a.set_ip(route_source(peer).unwrap_or(if peer.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }));
    }
    a
}

/// Socket buffer size asked for (the kernel caps it at `net.core.{r,w}mem_max`): room for
/// bursts of thousands of messages between two wake-ups.
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with large buffers.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer only means earlier drops.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// The SCTP one-to-many configuration (listening, large buffers).
fn sctp_config() -> sipsctp_sctp::SocketConfig {
    sipsctp_sctp::SocketConfig {
        backlog: Some(1024),
        // Room for bursts of a few thousand messages per second.
        send_buffer_size: Some(SOCKET_BUFFER),
        recv_buffer_size: Some(SOCKET_BUFFER),
        ..sipsctp_sctp::SocketConfig::default()
    }
}

/// Opens connection `k` of the UAC.
async fn open_uac_conn(a: &UacArgs, k: usize) -> Result<(Arc<Conn>, Dest), Error> {
    let target = a.target;
    let local = nth_port(a.local.unwrap_or_else(|| wildcard(target)), k);
    let sock_err = |what, addr| move |source| Error::Socket { what, addr, source };
    let (socket, dest) = match (a.common.transport, a.common.sctp_style) {
        (Transport::Udp, _) => {
            let s = udp_socket(local).map_err(sock_err("bind", local))?;
            (Socket::Udp(s), Dest::Addr(target))
        }
        (Transport::Tcp, _) => {
            let s = if target.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(sock_err("socket", local))?;
            if local.port() != 0 {
                s.set_reuseaddr(true)
                    .map_err(sock_err("SO_REUSEADDR", local))?;
            }
            s.bind(local).map_err(sock_err("bind", local))?;
            let s: TcpStream = s
                .connect(target)
                .await
                .map_err(sock_err("connect", target))?;
            s.set_nodelay(true)
                .map_err(sock_err("TCP_NODELAY", target))?;
            (Socket::Tcp(s), Dest::Peer)
        }
        (Transport::Sctp, SctpStyle::OneToOne) => {
            let domain = if target.is_ipv4() {
                socket2::Domain::IPV4
            } else {
                socket2::Domain::IPV6
            };
            let s = tokio_sctp::SctpSocket::new(domain).map_err(sock_err("socket", local))?;
            if local != wildcard(target) {
                s.bind_sys(local).map_err(sock_err("bind", local))?;
            }
            let s = tokio_sctp::SctpStream::connect_from(s, target)
                .await
                .map_err(sock_err("connect", target))?;
            s.set_nodelay(true)
                .map_err(sock_err("SCTP_NODELAY", target))?;
            (Socket::SctpStream(s), Dest::Peer)
        }
        (Transport::Sctp, SctpStyle::OneToMany) => {
            // Listening too, for a peer that answers on an association of its own to the
            // address in Via.
            let s = sipsctp_sctp::SctpSocket::bind(&[local], &sctp_config()).map_err(|source| {
                Error::Sctp {
                    addr: local,
                    source,
                }
            })?;
            // The association is set up by the kernel with the first message sent to it.
            (Socket::SctpMany(Box::new(s)), Dest::Addr(target))
        }
    };
    Ok((Conn::new(socket), dest))
}

/// Time the open transactions get after the schedule: a call may start its BYE just
/// before its INVITE would have timed out, after its hold time.
fn cfg_drain_us(a: &UacArgs) -> u64 {
    a.timeout_ms
        .saturating_mul(2)
        .saturating_add(a.hold_ms)
        .saturating_mul(1000)
}

/// A fresh id for the run, so that responses from an earlier run are not taken for ours.
fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(20) ^ std::process::id()) | 1
}

/// The call a request written by [`Local`] belongs to.
fn call_of(msg: &[u8], run: u32) -> Option<CallRef> {
    let h = Head::parse(msg).ok()?;
    decode_call_id(h.first(Hdr::CallId).ok()??.value, run)
}

/// Sends what the UAC produced; the calls whose messages were refused are returned.
fn flush(conns: &[(Arc<Conn>, Dest)], out: &Outbox, failed: &mut Vec<CallRef>) {
    for (conn, call, m) in out.iter() {
        let ok = conns
            .get(conn as usize)
            .is_some_and(|(c, dest)| c.send(m, *dest).is_ok());
        if !ok {
            failed.push(call);
        }
    }
}

struct Shared {
    uac: Mutex<Uac>,
    start: Instant,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn fail(&self, failed: &mut Vec<CallRef>) {
        if failed.is_empty() {
            return;
        }
        let now = self.now_us();
        let mut u = lock(&self.uac);
        for c in failed.drain(..) {
            u.send_failed(c, now);
        }
    }
}

/// Every millisecond: fires timers, starts due transactions, sends; until the UAC is done
/// (`false`) or the drain limit passed (`true`).
async fn ticker(
    shared: Arc<Shared>,
    conns: Arc<Vec<(Arc<Conn>, Dest)>>,
    drain_limit_us: u64,
    quiet: bool,
) -> bool {
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Outbox::default();
    let mut failed = Vec::new();
    let mut last_report = 0u64;
    loop {
        ticker.tick().await;
        let (now, done, outstanding) = {
            let mut u = lock(&shared.uac);
            let now = shared.now_us();
            u.tick(now, &mut out);
            (now, u.done(now), u.outstanding())
        };
        flush(&conns, &out, &mut failed);
        out.clear();
        shared.fail(&mut failed);
        if !quiet && now >= last_report + 1_000_000 {
            last_report = now - now % 1_000_000;
            let u = lock(&shared.uac);
            let st: u64 = u.stats().iter().map(|s| s.started).sum();
            let done_n: u64 = u.stats().iter().map(|s| s.completed).sum();
            let failed_n: u64 = u.stats().iter().map(StepStats::failed_total).sum();
            eprintln!(
                "t={:>4}s started={st} completed={done_n} failed={failed_n} outstanding={outstanding}",
                now / 1_000_000
            );
        }
        if done {
            return false;
        }
        if now > drain_limit_us {
            return true;
        }
    }
}

/// Runs the UAC; returns its JSON result (also written to `--json`).
///
/// # Errors
///
/// Invalid flags, sockets that cannot be opened or connected, an output that cannot be
/// written.
pub fn uac(a: &UacArgs) -> Result<Value, Error> {
    if a.rate.is_empty() || a.rate.iter().any(|r| !r.is_finite() || *r < 0.0) {
        return Err(Error::Args("--rate needs rates >= 0".into()));
    }
    if !(a.step_secs.is_finite() && a.step_secs > 0.0) {
        return Err(Error::Args("--step-secs must be > 0".into()));
    }
    if a.connections == 0 || a.timeout_ms == 0 || a.t1_ms == 0 {
        return Err(Error::Args(
            "--connections, --timeout-ms and --t1-ms must be > 0".into(),
        ));
    }
    runtime(a.common.workers)?.block_on(uac_async(a))
}

async fn uac_async(a: &UacArgs) -> Result<Value, Error> {
    let run = run_id();
    let mut conns = Vec::with_capacity(a.connections);
    let mut locals = Vec::with_capacity(a.connections);
    for k in 0..a.connections {
        let (c, dest) = open_uac_conn(a, k).await?;
        let bound = c.local_addr().map_err(|source| Error::Socket {
            what: "getsockname",
            addr: a.target,
            source,
        })?;
        let via = advertised(bound, a.target);
        locals.push(Local::new(
            a.common.transport,
            via,
            a.target,
            &a.service,
            run,
        ));
        conns.push((c, dest));
    }
    let cfg = UacConfig {
        scenario: a.scenario,
        transport: a.common.transport,
        t1_us: a.t1_ms.saturating_mul(1000),
        timeout_us: a.timeout_ms.saturating_mul(1000),
        hold_us: a.hold_ms.saturating_mul(1000),
        max_outstanding: a.max_outstanding,
    };
    let schedule = steps(&a.rate, a.step_secs);
    let uac = Uac::new(cfg, locals, schedule);
    let end_us = uac.schedule_end_us();
    let shared = Arc::new(Shared {
        uac: Mutex::new(uac),
        start: Instant::now(),
    });
    let conns = Arc::new(conns);

    for (k, (conn, _)) in conns.iter().enumerate() {
        let sh = shared.clone();
        tokio::spawn(conn.clone().run_writer(move |msg, _e| {
            if let Some(c) = call_of(msg, run) {
                sh.fail(&mut vec![c]);
            }
        }));
        let (sh, cs) = (shared.clone(), conns.clone());
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut out = Outbox::default();
            let mut failed = Vec::new();
            let r = read_loop(&conn, |rx| {
                {
                    let mut u = lock(&sh.uac);
                    let now = sh.now_us();
                    for m in rx.msgs.iter() {
                        u.on_message(now, m, &mut out);
                    }
                }
                flush(&cs, &out, &mut failed);
                out.clear();
                sh.fail(&mut failed);
                ControlFlow::Continue(())
            })
            .await;
            // A stream that ended: its open calls will time out, no new ones go to it.
            if let Err(e) = &r {
                eprintln!("connection {k}: {e}");
            }
            if !matches!(conn.socket, Socket::Udp(_) | Socket::SctpMany(_)) || r.is_err() {
                conn.close();
                if let Ok(k) = u32::try_from(k) {
                    lock(&sh.uac).conn_closed(k);
                }
            }
        });
    }

    // After the schedule, open transactions get their full timeout (a BYE may start late).
    let drain_limit_us = end_us
        .saturating_add(cfg_drain_us(a))
        .saturating_add(1_000_000);
    // The ticker runs on the runtime's workers like the readers (so `--workers 1` is one
    // thread doing everything).
    let ticker = tokio::spawn(ticker(
        shared.clone(),
        conns.clone(),
        drain_limit_us,
        a.common.quiet,
    ));
    let timed_out_drain = ticker.await.unwrap_or(true);
    let elapsed = shared.start.elapsed().as_secs_f64();
    let mut u = lock(&shared.uac);
    if timed_out_drain {
        let now = shared.now_us();
        u.abandon_all(now);
    }
    let stats = u.stats();
    let c = u.counters();
    println!("{}", table(stats));
    let result = json!({
        "tool": "sipsctp-load",
        "role": "uac",
        "transport": a.common.transport.param(),
        "sctp_style": match a.common.sctp_style {
            SctpStyle::OneToMany => "one-to-many",
            SctpStyle::OneToOne => "one-to-one",
        },
        "scenario": match a.scenario {
            crate::uac::Scenario::Call => "call",
            crate::uac::Scenario::Options => "options",
        },
        "target": a.target.to_string(),
        "connections": a.connections,
        "step_secs": a.step_secs,
        "timeout_ms": a.timeout_ms,
        "hold_ms": a.hold_ms,
        "elapsed_secs": (elapsed * 1000.0).round() / 1000.0,
        "steps": stats.iter().map(StepStats::to_json).collect::<Vec<_>>(),
        "totals": totals(stats).to_json(),
        "counters": {
            "sent": c.sent,
            "received": c.received,
            "unmatched": c.unmatched,
            "bad_messages": c.bad_messages,
            "unexpected_requests": c.unexpected_requests,
            "not_started": c.not_started,
        },
    });
    if let Some(p) = &a.common.json {
        write_json(p, &result)?;
    }
    Ok(result)
}

/// Runs the UAS until its duration ends or a signal; returns its counters as JSON (also
/// written to `--json`).
///
/// # Errors
///
/// A socket that cannot be opened, an output that cannot be written.
pub fn uas(a: &UasArgs) -> Result<Value, Error> {
    runtime(a.common.workers)?.block_on(uas_async(a))
}

struct UasShared {
    counters: Mutex<UasCounters>,
    ringing: bool,
    invite_status: u16,
    ignore_invites: bool,
}

impl UasShared {
    fn config(&self, contact: &str, transport: Transport) -> UasConfig {
        let mut c = UasConfig::new(contact, transport);
        c.ringing = self.ringing;
        c.invite_status = self.invite_status;
        c.ignore_invites = self.ignore_invites;
        c
    }
}

/// Answers everything that arrives on `conn` until it closes.
async fn serve(conn: Arc<Conn>, cfg: UasConfig, sh: Arc<UasShared>) {
    let mut out = Batch::default();
    let mut counters = UasCounters::default();
    let r = read_loop(&conn, |rx| {
        for (m, from) in rx.msgs.iter().zip(&rx.from) {
            out.clear();
            if answer(m, &cfg, &mut counters, &mut out).is_ok() {
                for resp in out.iter() {
                    // A refused response is like a lost one: the UAC retransmits or times out.
                    let _ = conn.send(resp, *from);
                }
            }
        }
        lock(&sh.counters).add(&counters);
        counters = UasCounters::default();
        ControlFlow::Continue(())
    })
    .await;
    if let Err(e) = r {
        eprintln!("uas connection: {e}");
    }
    conn.close();
}

fn spawn_conn(conn: Arc<Conn>, cfg: UasConfig, sh: Arc<UasShared>, readers: usize) {
    tokio::spawn(conn.clone().run_writer(|_, _| {}));
    for _ in 0..readers {
        tokio::spawn(serve(conn.clone(), cfg.clone(), sh.clone()));
    }
}

async fn uas_async(a: &UasArgs) -> Result<Value, Error> {
    let t = a.common.transport;
    let listen = a.listen;
    let sh = Arc::new(UasShared {
        counters: Mutex::new(UasCounters::default()),
        ringing: a.ringing,
        invite_status: a.invite_status,
        ignore_invites: a.ignore_invites,
    });
    let sock_err = |what, source| Error::Socket {
        what,
        addr: listen,
        source,
    };
    // Contact for a socket bound to `bound` (a connection's local address when known).
    let contact = |bound: SocketAddr| -> String {
        a.advertise.clone().unwrap_or_else(|| {
            let mut b = bound;
            if b.ip().is_unspecified() {
                b.set_ip(if b.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V6(Ipv6Addr::LOCALHOST)
                });
            }
            b.to_string()
        })
    };
    let readers = usize::from(a.common.workers);
    let bound = match (t, a.common.sctp_style) {
        (Transport::Udp, _) => {
            let s = udp_socket(listen).map_err(|e| sock_err("bind", e))?;
            let conn = Conn::new(Socket::Udp(s));
            let bound = conn.local_addr().map_err(|e| sock_err("getsockname", e))?;
            spawn_conn(conn, sh.config(&contact(bound), t), sh.clone(), readers);
            bound
        }
        (Transport::Sctp, SctpStyle::OneToMany) => {
            let s =
                sipsctp_sctp::SctpSocket::bind(&[listen], &sctp_config()).map_err(|source| {
                    Error::Sctp {
                        addr: listen,
                        source,
                    }
                })?;
            let conn = Conn::new(Socket::SctpMany(Box::new(s)));
            let bound = conn.local_addr().map_err(|e| sock_err("getsockname", e))?;
            spawn_conn(conn, sh.config(&contact(bound), t), sh.clone(), readers);
            bound
        }
        (Transport::Tcp, _) => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| sock_err("bind", e))?;
            let bound = l.local_addr().map_err(|e| sock_err("getsockname", e))?;
            let sh2 = sh.clone();
            let adv = a.advertise.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    let local = s.local_addr().unwrap_or(bound);
                    let cfg = sh2.config(&adv.clone().unwrap_or_else(|| local.to_string()), t);
                    spawn_conn(Conn::new(Socket::Tcp(s)), cfg, sh2.clone(), 1);
                }
            });
            bound
        }
        (Transport::Sctp, SctpStyle::OneToOne) => {
            let l = tokio_sctp::SctpListener::bind(listen).map_err(|e| sock_err("bind", e))?;
            let bound = l.local_addr().map_err(|e| sock_err("getsockname", e))?;
            let sh2 = sh.clone();
            let adv = a.advertise.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    let local = s.local_addr().unwrap_or(bound);
                    let cfg = sh2.config(&adv.clone().unwrap_or_else(|| local.to_string()), t);
                    spawn_conn(Conn::new(Socket::SctpStream(s)), cfg, sh2.clone(), 1);
                }
            });
            bound
        }
    };
    println!("listening {} {bound}", t.param());
    let _ = io::stdout().flush();

    let started = Instant::now();
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let dur = async {
            match a.duration_secs {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
            () = dur => {}
        }
    };
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = report.tick() => {
                if !a.common.quiet {
                    let c = *lock(&sh.counters);
                    eprintln!(
                        "t={:>4}s invite={} ack={} bye={} options={} bad={} sent={}",
                        started.elapsed().as_secs(), c.invite, c.ack, c.bye, c.options, c.bad, c.sent
                    );
                }
            }
        }
    }
    let c = *lock(&sh.counters);
    let result = json!({
        "tool": "sipsctp-load",
        "role": "uas",
        "transport": t.param(),
        "listen": bound.to_string(),
        "elapsed_secs": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "received": {
            "invite": c.invite,
            "ack": c.ack,
            "bye": c.bye,
            "options": c.options,
            "cancel": c.cancel,
            "other": c.other,
            "responses": c.responses,
            "bad": c.bad,
            "requests": c.requests(),
        },
        "sent": c.sent,
    });
    if let Some(p) = &a.common.json {
        write_json(p, &result)?;
    }
    if !a.common.quiet {
        eprintln!("{}", serde_json::to_string(&result).unwrap_or_default());
    }
    Ok(result)
}
