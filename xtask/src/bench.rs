//! `cargo xtask bench`: the criterion benchmarks of the transport (`transport/sctp/benches`:
//! per-message bookkeeping), of the kernel event path (`ebpf/events/benches`: ring-buffer
//! record to typed event, against a raw-copy baseline) and of the correlator
//! (`exporter/correlate/benches`: joined transactions per second against a pass-through
//! baseline, and the heap held at the default caps). They open no sockets and attach no
//! probes, so they run on the host. Criterion prints its report as it goes; at the end
//! this prints one line per benchmark of this run (the mean and its 95 % interval), read from
//! criterion's `target/criterion/**/new/` files, then the lines a benchmark wrote to a
//! `target/criterion/*-summary.txt` during this run (the correlator's ratios and memory).

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    test::cargo,
    util::{exec, step, workspace_root},
};

/// Which benchmarks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// The criterion benchmarks on the host (the default).
    Criterion,
    /// The system benchmark in the VM: sipsctpd against Kamailio and the raw kernel limit.
    System,
}

/// `cargo xtask bench` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// `system` runs the system benchmark in the VM (see its flags below); without it, the
    /// criterion benchmarks.
    #[arg(value_enum)]
    pub suite: Option<Suite>,
    /// The system benchmark's settings.
    #[command(flatten)]
    pub system: crate::bench_system::Options,
    /// Criterion's arguments, e.g. a benchmark-name filter (a regex): `-- decode`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Runs the benchmarks and prints the summary.
pub fn run(o: &Options) -> Result<()> {
    if o.suite == Some(Suite::System) {
        return crate::bench_system::run(&o.system);
    }
    let start = SystemTime::now();
    for package in ["sipsctp-sctp", "sipsctp-ebpf-events", "sipsctp-correlate"] {
        step(format!("cargo bench -p {package}"));
        exec(
            cargo()
                .args(["bench", "-p", package, "--bench", "*", "--"])
                .args(&o.args),
        )?;
    }
    let criterion = target_dir().join("criterion");
    let mut rows = Vec::new();
    collect(&criterion, start, &mut rows)?;
    if rows.is_empty() {
        bail!("criterion wrote no results (did the filter match nothing?)");
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    step(format!("{} benchmarks, mean [95 % interval]:", rows.len()));
    for (id, mean, lo, hi) in rows {
        println!("  {id:<width$}  {} [{} {}]", ns(mean), ns(lo), ns(hi));
    }
    for (name, text) in summaries(&criterion, start) {
        step(format!("{name}:"));
        for line in text.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The `*-summary.txt` files directly under `dir` written since `since`, by name.
fn summaries(dir: &Path, since: SystemTime) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let fresh = e.metadata().and_then(|m| m.modified()).ok()? >= since;
            (name.ends_with("-summary.txt") && fresh)
                .then(|| Some((name, fs::read_to_string(e.path()).ok()?)))?
        })
        .collect();
    found.sort();
    found
}

fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

/// Every `new/benchmark.json` under `dir` written since `since`, with its mean estimate.
fn collect(dir: &Path, since: SystemTime, rows: &mut Vec<(String, f64, f64, f64)>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let bench = path.join("benchmark.json");
        let fresh = fs::metadata(&bench)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if path.ends_with("new") && fresh {
            let read = |f: &Path| -> Result<serde_json::Value> {
                let text = fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{}", f.display()))
            };
            let id = read(&bench)?["full_id"].as_str().unwrap_or("?").to_owned();
            let est = read(&path.join("estimates.json"))?;
            let mean = &est["mean"];
            let ci = &mean["confidence_interval"];
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            rows.push((
                id,
                f(&mean["point_estimate"]),
                f(&ci["lower_bound"]),
                f(&ci["upper_bound"]),
            ));
        } else {
            collect(&path, since, rows)?;
        }
    }
    Ok(())
}

/// Nanoseconds in a readable unit.
fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.1} ns")
    }
}
