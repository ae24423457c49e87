//! The Grafana dashboards and alert rules in `dashboards/`: their checks, run by
//! `cargo xtask test` on the host before the VM part, and `cargo xtask dashboards`, which
//! renders their previews from a live run.
//!
//! - [`lint`]: every dashboard and the alert rules against a real scrape of sipsctpd
//!   (`dashboards/testdata/scrape.txt`; the live VM test `tests/tests/dashboards_live.rs`
//!   fails when that file no longer matches what the daemon serves);
//! - `promtool check rules` and `promtool test rules` (the alerts' unit tests);
//! - [`schema`]: each dashboard type-checked against Grafana's published schema
//!   (`@grafana/schema`, TypeScript's `tsc --noEmit`, pinned, installed by setup);
//! - [`render`]: PNG previews from the panel data the live test wrote.

pub mod lint;
pub mod queries;
pub mod render;
pub mod schema;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::util::{exec, step, workspace_root};

/// `dashboards/`.
pub fn dir() -> PathBuf {
    workspace_root().join("dashboards")
}

/// The dashboard files (`dashboards/*.json`), sorted, parsed.
///
/// # Errors
/// A file that cannot be read or is not JSON.
pub fn load() -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir()).context("reading dashboards/")? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let v: Value =
                serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))?;
            out.push((name, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() {
        bail!("dashboards/ holds no dashboard");
    }
    Ok(out)
}

/// The host checks: the lint, promtool's rule check and unit tests, the schema check.
///
/// # Errors
/// Any finding, with every finding listed.
pub fn check() -> Result<()> {
    step("dashboards: lint against dashboards/testdata/scrape.txt");
    let scrape_path = dir().join("testdata/scrape.txt");
    let scrape_text = std::fs::read_to_string(&scrape_path)
        .with_context(|| format!("reading {}", scrape_path.display()))?;
    let scrape = lint::Scrape::parse(&scrape_text).map_err(anyhow::Error::msg)?;
    let boards = load()?;
    let mut findings = Vec::new();
    let mut uids = std::collections::HashSet::new();
    for (file, d) in &boards {
        if !uids.insert(d["uid"].as_str().unwrap_or_default().to_owned()) {
            findings.push(format!("{file}: uid {} used twice", d["uid"]));
        }
        findings.extend(lint::dashboard(file, d, &scrape));
    }
    let alerts = dir().join("alerts.yml");
    let alerts_text = std::fs::read_to_string(&alerts).context("reading dashboards/alerts.yml")?;
    findings.extend(lint::alerts("alerts.yml", &alerts_text, &scrape));
    if !findings.is_empty() {
        bail!(
            "the dashboards' lint found {} problem(s):\n  {}",
            findings.len(),
            findings.join("\n  ")
        );
    }
    let n: usize = boards
        .iter()
        .map(|(f, d)| queries::dashboard_queries(f, d).len())
        .sum();
    step(format!(
        "dashboards: {} dashboards, {n} queries, {} alerts: clean",
        boards.len(),
        queries::alert_queries("alerts.yml", &alerts_text)
            .map(|a| a.len())
            .unwrap_or(0)
    ));
    step("dashboards: promtool check rules + test rules");
    exec(promtool(&dir()).args(["check", "rules", "alerts.yml"]))?;
    exec(promtool(&dir()).args(["test", "rules", "alerts_test.yml"]))?;
    schema::check(&boards)?;
    Ok(())
}

fn promtool(cwd: &Path) -> Command {
    let mut c = Command::new("promtool");
    c.current_dir(cwd);
    c
}

/// `cargo xtask dashboards` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Only run the host checks (lint, promtool, schema), as `cargo xtask test` does.
    #[arg(long)]
    pub check: bool,
    /// Render from this live run's results folder instead of running the live test in the VM
    /// (it writes `target/dashboards-live/results` of the workspace).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Kernel series of the VM run.
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: crate::kernel::Series,
}

/// Runs the live test in the VM (unless `--from`), then renders a PNG per dashboard into
/// `dashboards/previews/`.
///
/// # Errors
/// The live test failed, or rendering did.
pub fn run(o: &Options) -> Result<u8> {
    if o.check {
        return check().map(|()| 0);
    }
    let results = match &o.from {
        Some(p) => p.clone(),
        None => {
            let code = crate::test::run(&crate::test::Options {
                kernel: Some(o.kernel),
                vm_only: true,
                timeout: 900,
                filter: vec!["every_dashboard_query".into(), "--nocapture".into()],
            })?;
            if code != 0 {
                bail!("the live dashboards test failed (exit {code}): no previews");
            }
            workspace_root().join("target/dashboards-live/results")
        }
    };
    let out = dir().join("previews");
    std::fs::create_dir_all(&out)?;
    for (file, d) in load()? {
        let uid = d["uid"].as_str().unwrap_or_default();
        let data_path = results.join(format!("{uid}.json"));
        let data: Value = serde_json::from_str(
            &std::fs::read_to_string(&data_path)
                .with_context(|| format!("reading {}", data_path.display()))?,
        )?;
        let png = out.join(format!("{}.png", file.trim_end_matches(".json")));
        render::dashboard(&d, &data, &png)?;
        step(format!("dashboards: {}", png.display()));
    }
    Ok(0)
}
