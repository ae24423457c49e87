//! `cargo xtask test`: the one test command. Setup, `cargo fmt --check`, clippy with warnings
//! denied, host unit tests, then the integration tests (the `tests/` crate, built on the host)
//! inside the VM on every kernel series. Any failure fails the whole command: exit 1 when a
//! check or a test failed (including code that does not build), 124/125 when the VM timed out or
//! could not run, 125 when setup failed.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Result, bail};

use crate::{
    kernel::Series,
    setup,
    util::{exec, step, workspace_root},
    vm,
};

/// The crate that never builds for the host (BPF target only).
const PROBES_CRATE: &str = "sipsctp-ebpf-probes";
/// The integration-test crate (needs kernel SCTP: runs in the VM).
const INTEGRATION_CRATE: &str = "sipsctp-tests";

/// `cargo xtask test` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Run the integration tests on this kernel series only (default: all).
    #[arg(long, value_enum)]
    pub kernel: Option<Series>,
    /// Skip setup, fmt, clippy and the host unit tests (for iterating on integration tests).
    #[arg(long)]
    pub vm_only: bool,
    /// Wall-clock limit of one VM run, in seconds.
    #[arg(long, default_value_t = 1500)]
    pub timeout: u64,
    /// Test-name filter handed to every integration test binary.
    #[arg(last = true)]
    pub filter: Vec<String>,
}

/// Exit code of a failed check or test.
const EXIT_FAILED: u8 = 1;

/// Runs the suite; returns the exit code (0 when everything passed).
pub fn run(o: &Options) -> Result<u8> {
    let t0 = Instant::now();
    if !o.vm_only {
        step("setup");
        setup::run(&setup::Options { kernel: o.kernel })?;
    }
    match checks_and_tests(o) {
        Ok(0) => {
            step(format!(
                "all tests passed in {:.0}s",
                t0.elapsed().as_secs_f64()
            ));
            Ok(0)
        }
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            Ok(EXIT_FAILED)
        }
    }
}

/// Everything after setup: a check that fails is an error; the integration tests' result is
/// the exit code.
fn checks_and_tests(o: &Options) -> Result<u8> {
    let ws = workspace_root();
    if !o.vm_only {
        step("cargo fmt --check");
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        crate::layering::check()?;
        step("cargo clippy (warnings denied)");
        exec(
            cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--exclude",
                    PROBES_CRATE,
                ])
                .args(["--", "-D", "warnings"]),
        )?;
        crate::dashboards::check()?;
        step("host unit tests");
        exec(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            PROBES_CRATE,
            "--exclude",
            INTEGRATION_CRATE,
        ]))?;
    }
    step("building the daemon and the integration tests");
    // The daemon tests start target/<profile>/sipsctpd (and sipsctp-exporter, sipsctp-load)
    // next to the test binaries.
    exec(cargo().args([
        "build",
        "-p",
        "sipsctpd",
        "-p",
        "sipsctp-exporter",
        "-p",
        "sipsctp-load",
    ]))?;
    let bins = test_executables(INTEGRATION_CRATE)?;
    if bins.is_empty() {
        bail!("{INTEGRATION_CRATE} produced no test executables");
    }
    let series: Vec<Series> = match o.kernel {
        Some(s) => vec![s],
        None => Series::ALL.to_vec(),
    };
    let mut script = String::from("rc=0\n");
    for b in &bins {
        let mut line = format!("{} --test-threads=1", vm::sh_quote(&b.to_string_lossy()));
        for f in &o.filter {
            line.push(' ');
            line.push_str(&vm::sh_quote(f));
        }
        script.push_str(&format!(
            "echo \"=== $SIPSCTP_VM_KERNEL: {name}\"\n{line} || rc=1\n",
            name = b
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
    }
    script.push_str("exit $rc\n");
    let mut results = Vec::new();
    for s in series {
        let mut r = vm::Run::new(s, vec![script.clone()]);
        r.cwd = ws.join("tests");
        r.timeout = std::time::Duration::from_secs(o.timeout);
        vm::announce(&vm::Run::new(
            s,
            vec![format!("{} integration test binaries", bins.len())],
        ));
        let t = Instant::now();
        let code = vm::run(&r)?;
        step(format!(
            "integration tests on kernel {s}: {} ({:.0}s)",
            if code == 0 {
                "passed".to_owned()
            } else {
                format!("FAILED (exit {code})")
            },
            t.elapsed().as_secs_f64()
        ));
        results.push((s, code));
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, c)| *c != 0)
        .map(|(s, c)| format!("{s} (exit {c})"))
        .collect();
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "xtask: error: integration tests failed on kernel {}",
        failed.join(", ")
    );
    // A test that failed outweighs a VM that could not run (124/125 pass through otherwise).
    let codes = results.iter().map(|(_, c)| *c);
    Ok(if codes.clone().any(|c| c == EXIT_FAILED) {
        EXIT_FAILED
    } else {
        codes.filter(|c| *c != 0).max().unwrap_or(EXIT_FAILED)
    })
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` of the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo` with the same toolchain that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Builds the test targets of `package` and returns their executables.
pub fn test_executables(package: &str) -> Result<Vec<PathBuf>> {
    artifacts(cargo().args(["test", "--no-run", "-p", package]), true)
}

/// Runs a cargo build command with JSON messages; returns the executables it produced
/// (only test harnesses when `tests_only`).
pub fn artifacts(cmd: &mut Command, tests_only: bool) -> Result<Vec<PathBuf>> {
    cmd.arg("--message-format=json-render-diagnostics");
    let out = crate::util::output(cmd)?;
    let mut exes = Vec::new();
    for line in out.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if tests_only && msg["profile"]["test"] != true {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            exes.push(PathBuf::from(exe));
        }
    }
    Ok(exes)
}
