//! Parse cost of this crate's parser next to `rsip` 0.4 on the same messages (the fuzz seed
//! corpus: an INVITE with SDP, a 200 OK, ACK, BYE, CANCEL, OPTIONS, REGISTER, a compact-form
//! MESSAGE, the RFC 4475 "wsinv" folded torture message, an IPv6 OPTIONS).
//!
//! Two groups:
//! - `parse/<message>`: parse only (rsip builds its whole message tree, with a `String` per
//!   header; this parser builds views and checks framing);
//! - `fields/<message>`: parse, then read what the relay reads on every request: the top
//!   `Via` (branch), `Call-ID`, `CSeq`, `From` tag and `To` tag.
//!
//! After criterion's runs, an interleaved timing loop prints the rsip/this-crate ratio per
//! message and group (criterion itself compares runs of one function, not two functions),
//! taking the best of 30 alternating slices so that other load on a shared machine does not
//! favour either side. A message rsip rejects is reported and left out of its side.
//!
//! Short on purpose: 2 s of measurement per benchmark (`cargo bench -p sipsctp-sip`).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::Criterion;
use rsip::prelude::*;
use sipsctp_sip::Message;

const MESSAGES: [(&str, &[u8]); 10] = [
    (
        "invite_sdp",
        include_bytes!("../fuzz/seeds/parse/invite_sdp.sip"),
    ),
    ("ok_200", include_bytes!("../fuzz/seeds/parse/ok_200.sip")),
    ("ack", include_bytes!("../fuzz/seeds/parse/ack.sip")),
    ("bye", include_bytes!("../fuzz/seeds/parse/bye.sip")),
    ("cancel", include_bytes!("../fuzz/seeds/parse/cancel.sip")),
    ("options", include_bytes!("../fuzz/seeds/parse/options.sip")),
    (
        "register",
        include_bytes!("../fuzz/seeds/parse/register.sip"),
    ),
    ("compact", include_bytes!("../fuzz/seeds/parse/compact.sip")),
    ("folded", include_bytes!("../fuzz/seeds/parse/folded.sip")),
    (
        "ipv6_via",
        include_bytes!("../fuzz/seeds/parse/ipv6_via.sip"),
    ),
];

fn ours_parse(b: &[u8]) -> usize {
    Message::parse(b).map_or(0, |m| m.headers().len())
}

fn ours_fields(b: &[u8]) -> usize {
    let Ok(m) = Message::parse(b) else { return 0 };
    let branch = m.top_via().ok().and_then(|v| v.branch).map_or(0, str::len);
    let call_id = m.call_id().map_or(0, str::len);
    let seq = m.cseq().map_or(0, |c| c.seq as usize);
    let from = m.from_tag().ok().flatten().map_or(0, str::len);
    let to = m.to_tag().ok().flatten().map_or(0, str::len);
    branch + call_id + seq + from + to
}

fn rsip_parse(b: &[u8]) -> usize {
    rsip::SipMessage::try_from(b).map_or(0, |m| m.headers().iter().count())
}

fn rsip_fields(b: &[u8]) -> usize {
    let Ok(m) = rsip::SipMessage::try_from(b) else {
        return 0;
    };
    let branch = m
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()))
        .unwrap_or(0);
    let call_id = m.call_id_header().map_or(0, |c| c.value().len());
    let seq = m
        .cseq_header()
        .ok()
        .and_then(|c| c.typed().ok())
        .map_or(0, |c| c.seq as usize);
    let from = m
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    let to = m
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    branch + call_id + seq + from + to
}

type Parser = fn(&[u8]) -> usize;

const GROUPS: [(&str, Parser, Parser); 2] = [
    ("parse", ours_parse, rsip_parse),
    ("fields", ours_fields, rsip_fields),
];

/// Nanoseconds per call of `f` on `b` over one slice of about `slice`.
fn slice_ns(f: Parser, b: &[u8], slice: Duration) -> f64 {
    let mut iters = 0u64;
    let start = Instant::now();
    while start.elapsed() < slice {
        for _ in 0..50 {
            black_box(f(black_box(b)));
        }
        iters += 50;
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The best (lowest) nanoseconds per call of `a` and of `b` on `msg`, over `rounds`
/// alternating slices: interleaving and taking the minimum keeps other load on the machine
/// (other builds, VMs) from favouring either side.
fn best_ns(a: Parser, b: Parser, msg: &[u8], rounds: usize) -> (f64, f64) {
    let slice = Duration::from_millis(10);
    let (mut best_a, mut best_b) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        best_a = best_a.min(slice_ns(a, msg, slice));
        best_b = best_b.min(slice_ns(b, msg, slice));
    }
    (best_a, best_b)
}

fn main() {
    // Which messages rsip accepts at all.
    let rsip_ok: Vec<bool> = MESSAGES
        .iter()
        .map(|(name, b)| {
            let ok = rsip::SipMessage::try_from(*b).is_ok();
            if !ok {
                println!("rsip rejects {name}: left out of rsip's side");
            }
            assert!(Message::parse(b).is_ok(), "this parser rejects {name}");
            ok
        })
        .collect();

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    for (group, ours, theirs) in GROUPS {
        let mut g = c.benchmark_group(group);
        for ((name, b), rsip_ok) in MESSAGES.iter().zip(&rsip_ok) {
            g.bench_function(format!("{name}/sipsctp"), |bench| {
                bench.iter(|| ours(black_box(b)))
            });
            if *rsip_ok {
                g.bench_function(format!("{name}/rsip"), |bench| {
                    bench.iter(|| theirs(black_box(b)))
                });
            }
        }
        g.finish();
    }
    c.final_summary();

    println!("\nrsip time / sipsctp time (best of 30 interleaved 10 ms slices each):");
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "message", "sipsctp ns", "rsip ns", "ratio"
    );
    for (group, ours, theirs) in GROUPS {
        println!("[{group}]");
        let mut ratios = Vec::new();
        for ((name, b), rsip_ok) in MESSAGES.iter().zip(&rsip_ok) {
            if *rsip_ok {
                let (a, r) = best_ns(ours, theirs, b, 30);
                ratios.push(r / a);
                println!("{name:<12} {a:>12.0} {r:>12.0} {:>7.1}x", r / a);
            } else {
                let (a, _) = best_ns(ours, ours, b, 10);
                println!("{name:<12} {a:>12.0} {:>12} {:>8}", "rejected", "-");
            }
        }
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len().max(1) as f64).exp();
        let worst = ratios.iter().copied().fold(f64::MAX, f64::min);
        println!("[{group}] geometric mean {geo:.1}x, lowest {worst:.1}x");
    }
}
