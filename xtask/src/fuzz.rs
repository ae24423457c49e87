//! `cargo xtask fuzz`: runs every cargo-fuzz target of the workspace (libFuzzer, AddressSanitizer)
//! for a fixed time each, then prints one line per target: executions, corpus size, and the
//! crashing input when there is one. Not part of `cargo xtask test`: it takes minutes.
//!
//! The fuzz crates are workspaces of their own (`<crate>/fuzz`, cargo-fuzz's layout). Each
//! target starts from its seeds (`fuzz/seeds/<target>`, committed, never written) and keeps
//! what it learns in `fuzz/corpus/<target>` (git-ignored), so later runs start further on. A
//! crashing input is written by libFuzzer to `fuzz/artifacts/<target>/`.
//!
//! Toolchain: cargo-fuzz needs nightly flags (`-Zsanitizer=address`, `-Cpasses=sancov-module`).
//! No nightly toolchain can be fetched on the machines this project runs on, so the stable
//! toolchain that runs xtask is unlocked for the fuzz build only with `RUSTC_BOOTSTRAP=1`
//! (rustup's stable ships the ASan runtime; `--sanitizer none` where a toolchain does not).
//! cargo-fuzz itself is built from crates.io once per version into the per-user cache.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cache,
    util::{exec, have_program, show, step, workspace_root},
};

/// One fuzz target: the crate whose `fuzz/` holds it, and its binary name.
struct Target {
    /// The crate directory, relative to the workspace root.
    dir: &'static str,
    /// The `[[bin]]` of the fuzz crate.
    bin: &'static str,
}

impl Target {
    /// `crate/bin`, as the summary names it (and as TARGET may be given).
    fn name(&self) -> String {
        let krate = self.dir.rsplit('/').next().unwrap_or(self.dir);
        format!("{krate}/{}", self.bin)
    }

    fn fuzz_dir(&self) -> PathBuf {
        workspace_root().join(self.dir).join("fuzz")
    }
}

/// Every fuzz target of the workspace.
const TARGETS: &[Target] = &[
    Target {
        dir: "transport/sip",
        bin: "parse",
    },
    Target {
        dir: "transport/sctp",
        bin: "notification",
    },
    Target {
        dir: "transport/sctp",
        bin: "cmsg",
    },
    Target {
        dir: "ebpf/events",
        bin: "record",
    },
    Target {
        dir: "ebpf/events",
        bin: "btf",
    },
];

/// `cargo xtask fuzz` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// The sanitizer to build with: `address` (default), or `none` for a toolchain without
    /// the ASan runtime (panics and hangs are still found, memory errors in unsafe code not).
    #[arg(long, default_value = "address")]
    pub sanitizer: String,
    /// Targets to run (`parse`, `sip/parse`, ...; default: all). `--list` names them.
    pub targets: Vec<String>,
    /// List the targets and exit.
    #[arg(long)]
    pub list: bool,
}

/// What one run gave.
struct Outcome {
    name: String,
    seconds: f64,
    executions: Option<u64>,
    corpus: usize,
    /// Inputs libFuzzer wrote to the artifacts folder in this run (crash, leak, timeout, oom).
    artifacts: Vec<PathBuf>,
    /// cargo fuzz's exit status, when not success.
    failed: Option<String>,
    log: PathBuf,
}

/// Runs the targets; returns the exit code: 0 when none failed, 1 otherwise.
pub fn run(o: &Options) -> Result<u8> {
    if o.list {
        for t in TARGETS {
            println!(
                "{}  ({}/fuzz, seeds in fuzz/seeds/{})",
                t.name(),
                t.dir,
                t.bin
            );
        }
        return Ok(0);
    }
    let targets = select(&o.targets)?;
    let cargo_fuzz = install()?;
    let target_dir = target_dir().join("fuzz");
    let logs = target_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut outcomes = Vec::new();
    for t in targets {
        step(format!(
            "fuzz {}: building ({} sanitizer)",
            t.name(),
            o.sanitizer
        ));
        exec(fuzz_command(&cargo_fuzz, t, &target_dir, &o.sanitizer, "build").arg(t.bin))?;
        outcomes.push(fuzz_one(&cargo_fuzz, t, &target_dir, &logs, o)?);
    }
    step(format!(
        "fuzzing done, {} s per target ({} sanitizer):",
        o.time, o.sanitizer
    ));
    let width = outcomes.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut failed = 0;
    for r in &outcomes {
        let execs = r
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let rate = r
            .executions
            .map_or_else(String::new, |n| format!(" ({:.0}/s)", n as f64 / r.seconds));
        let verdict = match (&r.failed, r.artifacts.is_empty()) {
            (None, true) => "no crash".to_owned(),
            _ => {
                failed += 1;
                match r.artifacts.first() {
                    Some(a) => format!("CRASH: {}", a.display()),
                    None => format!(
                        "FAILED ({}), no input written: see {}",
                        r.failed.as_deref().unwrap_or("?"),
                        r.log.display()
                    ),
                }
            }
        };
        println!(
            "  {:<width$}  {:>4.0} s  {execs:>10} runs{rate}  corpus {:>5}  {verdict}",
            r.name, r.seconds, r.corpus
        );
    }
    if failed > 0 {
        eprintln!("xtask: error: {failed} fuzz target(s) failed; reproduce a crash with:");
        for r in outcomes.iter().filter(|r| !r.artifacts.is_empty()) {
            if let Some(t) = TARGETS.iter().find(|t| t.name() == r.name) {
                for a in &r.artifacts {
                    let mut c = fuzz_command(&cargo_fuzz, t, &target_dir, &o.sanitizer, "run");
                    c.arg(t.bin).arg(a);
                    eprintln!(
                        "  (cd {} && RUSTC_BOOTSTRAP=1 {})",
                        workspace_root().join(t.dir).display(),
                        show(&c)
                    );
                }
            }
        }
        return Ok(1);
    }
    Ok(0)
}

/// The targets named on the command line (by full name or binary name), or all.
fn select(names: &[String]) -> Result<Vec<&'static Target>> {
    if names.is_empty() {
        return Ok(TARGETS.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        let found: Vec<&Target> = TARGETS
            .iter()
            .filter(|t| t.name() == *n || t.bin == n)
            .collect();
        match found.as_slice() {
            [t] => out.push(*t),
            [] => bail!(
                "no fuzz target {n:?}; targets: {}",
                TARGETS
                    .iter()
                    .map(Target::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => bail!("{n:?} names several targets: give crate/target"),
        }
    }
    Ok(out)
}

/// cargo-fuzz, built once per version into the per-user cache.
fn install() -> Result<PathBuf> {
    let bin = cache::cargo_fuzz_root().join("bin/cargo-fuzz");
    if bin.is_file() {
        step(format!("cargo-fuzz {} (cached)", cache::CARGO_FUZZ_VERSION));
        return Ok(bin);
    }
    if !have_program("cargo") {
        bail!("cargo is not on PATH");
    }
    step(format!(
        "building cargo-fuzz {} from crates.io (about two minutes)",
        cache::CARGO_FUZZ_VERSION
    ));
    let build_root = cache::root().join("build");
    fs::create_dir_all(&build_root)?;
    exec(
        Command::new("cargo")
            .args(["install", "--locked", "--force", "--root"])
            .arg(cache::cargo_fuzz_root())
            .args(["cargo-fuzz", "--version", cache::CARGO_FUZZ_VERSION])
            // outside the workspace, so its .cargo/config.toml does not apply
            .current_dir(&build_root)
            .env_remove("RUSTC_BOOTSTRAP")
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    if !bin.is_file() {
        bail!("cargo install did not produce {}", bin.display());
    }
    Ok(bin)
}

/// `cargo-fuzz fuzz <verb>` for target `t`'s crate, with the build settings every verb shares.
fn fuzz_command(
    cargo_fuzz: &Path,
    t: &Target,
    target_dir: &Path,
    sanitizer: &str,
    verb: &str,
) -> Command {
    let mut c = Command::new(cargo_fuzz);
    c.args(["fuzz", verb, "--sanitizer", sanitizer, "--target-dir"])
        .arg(target_dir)
        .current_dir(workspace_root().join(t.dir))
        // Nightly flags on the stable toolchain, for this build only (see the module doc).
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// Fuzzes one target for `o.time` seconds; its output goes to `logs/<crate>-<bin>.log`.
fn fuzz_one(
    cargo_fuzz: &Path,
    t: &Target,
    target_dir: &Path,
    logs: &Path,
    o: &Options,
) -> Result<Outcome> {
    let fuzz_dir = t.fuzz_dir();
    let corpus = fuzz_dir.join("corpus").join(t.bin);
    let seeds = fuzz_dir.join("seeds").join(t.bin);
    let artifacts = fuzz_dir.join("artifacts").join(t.bin);
    fs::create_dir_all(&corpus)?;
    let log = logs.join(format!("{}.log", t.name().replace('/', "-")));
    let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut c = fuzz_command(cargo_fuzz, t, target_dir, &o.sanitizer, "run");
    // libFuzzer writes new inputs to the first corpus folder only: the seeds stay as they are.
    c.arg(t.bin).arg(&corpus);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.arg("--")
        .arg(format!("-max_total_time={}", o.time))
        // One input running this long is a hang, a bug of its own (the default is 20 min).
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    step(format!(
        "fuzz {}: {} s (log: {})",
        t.name(),
        o.time,
        log.display()
    ));
    let since = SystemTime::now();
    let t0 = Instant::now();
    let status = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot start {}", show(&c)))?;
    let seconds = t0.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut new_artifacts: Vec<PathBuf> = fs::read_dir(&artifacts)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m >= since)
        })
        .map(|e| e.path())
        .collect();
    new_artifacts.sort();
    let failed = (!status.success()).then(|| status.to_string());
    if failed.is_some() {
        eprintln!("xtask: fuzz {} failed ({status}); from its log:", t.name());
        for l in report(&text) {
            eprintln!("    {l}");
        }
    }
    Ok(Outcome {
        name: t.name(),
        seconds,
        executions: executions(&text),
        corpus: fs::read_dir(&corpus).map_or(0, |d| d.count()),
        artifacts: new_artifacts,
        failed,
        log,
    })
}

/// The part of a failed run's log that says what happened: from the first panic, sanitizer
/// or libFuzzer error line on (30 lines), else the last 30 lines.
fn report(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let first = lines.iter().position(|l| {
        l.contains("panicked at") || l.contains("==ERROR:") || l.contains("ERROR: libFuzzer")
    });
    let start = first.unwrap_or_else(|| lines.len().saturating_sub(30));
    lines.iter().skip(start).take(30).copied().collect()
}

/// The number of inputs run, from libFuzzer's final statistics (`-print_final_stats=1`) or its
/// closing `Done N runs in S second(s)` line.
fn executions(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        if let Some(v) = l.strip_prefix("stat::number_of_executed_units:") {
            return v.trim().parse().ok();
        }
        l.strip_prefix("Done ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_execution_counts() {
        let done = "#2\tINITED cov: 3\nDone 166441 runs in 21 second(s)\n";
        assert_eq!(executions(done), Some(166_441));
        let stats = "Done 5 runs in 1 second(s)\nstat::number_of_executed_units: 1710890\n\
                     stat::average_exec_per_sec:     55190\n";
        assert_eq!(executions(stats), Some(1_710_890));
        assert_eq!(executions("==1== ERROR: libFuzzer: deadly signal\n"), None);
    }

    #[test]
    fn a_failure_report_starts_at_the_panic() {
        let log = "INFO: Seed: 1\n#2 INITED\n\nthread '<unnamed>' panicked at src/x.rs:3:5:\n\
                   planted\n==1== ERROR: libFuzzer: deadly signal\nstat::x: 1\n";
        let r = report(log);
        assert_eq!(
            r.first().copied(),
            Some("thread '<unnamed>' panicked at src/x.rs:3:5:")
        );
        assert_eq!(r.len(), 4);
        let plain: String = (0..50).map(|i| format!("line {i}\n")).collect();
        assert_eq!(report(&plain).first().copied(), Some("line 20"));
    }

    #[test]
    fn targets_are_named_once_and_selectable() {
        let names: std::collections::BTreeSet<String> = TARGETS.iter().map(Target::name).collect();
        assert_eq!(names.len(), TARGETS.len());
        assert!(names.contains("events/btf") && names.contains("sip/parse"));
        assert_eq!(select(&["btf".into()]).unwrap().len(), 1);
        assert_eq!(
            select(&["sctp/notification".into()]).unwrap()[0].bin,
            "notification"
        );
        assert!(select(&["nope".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), TARGETS.len());
        for t in TARGETS {
            assert!(t.fuzz_dir().join("Cargo.toml").is_file(), "{}", t.name());
            assert!(
                t.fuzz_dir().join("seeds").join(t.bin).is_dir(),
                "{} has no seeds",
                t.name()
            );
        }
    }
}
