//! The workspace's layering rule, checked by `cargo xtask test` before the build: nothing under
//! `exporter/` depends, directly or through another workspace crate, on a crate under
//! `transport/` (the exporter must build and run without the relay; `architecture.md`).
//! The dependency graph comes from `cargo metadata`; [`violations`] is the pure check.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::util::{output, step, workspace_root};

/// A rule: crates whose manifest directory is under `from` never reach one under `to`.
pub struct Rule {
    /// Directory prefix of the dependents, relative to the workspace root.
    pub from: &'static str,
    /// Directory prefix of the forbidden dependencies.
    pub to: &'static str,
}

/// The rules of `architecture.md`.
pub const RULES: &[Rule] = &[Rule {
    from: "exporter/",
    to: "transport/",
}];

/// A workspace crate: its directory (relative, `/`-separated) and the workspace crates it
/// depends on, by name (normal, build and dev dependencies alike).
#[derive(Debug, Clone)]
pub struct Crate {
    /// `exporter/standalone`.
    pub dir: String,
    /// Names of the workspace crates it depends on.
    pub deps: Vec<String>,
}

/// Every path from a crate under a rule's `from` to one under its `to`, as
/// `a -> b -> c` lines; empty when the rules hold.
pub fn violations(crates: &BTreeMap<String, Crate>, rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules {
        let under = |name: &str, prefix: &str| {
            crates
                .get(name)
                .is_some_and(|c| format!("{}/", c.dir).starts_with(prefix))
        };
        for start in crates.keys().filter(|n| under(n, rule.from)) {
            // Depth-first over workspace crates, remembering the path.
            let mut seen = BTreeSet::new();
            let mut stack = vec![vec![start.clone()]];
            while let Some(path) = stack.pop() {
                let Some(last) = path.last() else { continue };
                if !seen.insert(last.clone()) {
                    continue;
                }
                if path.len() > 1 && under(last, rule.to) {
                    out.push(format!(
                        "{} (`{}` must not reach `{}`)",
                        path.join(" -> "),
                        rule.from,
                        rule.to
                    ));
                    continue;
                }
                for d in crates.get(last).map(|c| c.deps.as_slice()).unwrap_or(&[]) {
                    if crates.contains_key(d) {
                        let mut next = path.clone();
                        next.push(d.clone());
                        stack.push(next);
                    }
                }
            }
        }
    }
    out
}

/// The workspace crates from `cargo metadata --no-deps` output.
fn crates(metadata: &Value, root: &str) -> Result<BTreeMap<String, Crate>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let mut out = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().context("a package without a name")?;
        let manifest = p["manifest_path"].as_str().context("no manifest_path")?;
        let dir = manifest
            .strip_suffix("/Cargo.toml")
            .and_then(|d| d.strip_prefix(root))
            .map(|d| d.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let deps = p["dependencies"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .filter(|d| d["path"].is_string())
                    .filter_map(|d| d["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_owned(), Crate { dir, deps });
    }
    Ok(out)
}

/// Runs the check on this workspace.
///
/// # Errors
/// A rule is broken (every path listed), or `cargo metadata` failed.
pub fn check() -> Result<()> {
    step("layering: exporter/* never depends on transport/*");
    let root = workspace_root();
    let json = output(
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(&root),
    )?;
    let metadata: Value = serde_json::from_str(&json).context("cargo metadata's output")?;
    let crates = crates(&metadata, &root.to_string_lossy())?;
    let found = violations(&crates, RULES);
    if !found.is_empty() {
        bail!(
            "the workspace's layering is broken:\n  {}",
            found.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(list: &[(&str, &str, &[&str])]) -> BTreeMap<String, Crate> {
        list.iter()
            .map(|(n, d, deps)| {
                (
                    (*n).to_owned(),
                    Crate {
                        dir: (*d).to_owned(),
                        deps: deps.iter().map(|s| (*s).to_owned()).collect(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_direct_and_an_indirect_dependency_are_both_found() {
        let crates = ws(&[
            ("exp", "exporter/standalone", &["agent", "msg"]),
            ("agent", "exporter/agent", &["sip"]),
            ("msg", "sip/message", &[]),
            ("sip", "transport/sip", &["msg"]),
            ("daemon", "transport/daemon", &["agent", "sip"]),
        ]);
        let v = violations(&crates, RULES);
        assert_eq!(
            v,
            vec![
                "agent -> sip (`exporter/` must not reach `transport/`)".to_owned(),
                "exp -> agent -> sip (`exporter/` must not reach `transport/`)".to_owned(),
            ]
        );
    }

    #[test]
    fn shared_crates_outside_both_trees_are_allowed() {
        let crates = ws(&[
            ("exp", "exporter/standalone", &["msg", "events"]),
            ("msg", "sip/message", &[]),
            ("events", "ebpf/events", &[]),
            ("sip", "transport/sip", &["msg"]),
            ("daemon", "transport/daemon", &["exp-agent"]),
            ("exp-agent", "exporter/agent", &[]),
        ]);
        assert!(violations(&crates, RULES).is_empty());
    }

    #[test]
    fn a_prefix_is_a_directory_not_a_string_prefix() {
        // `transport-tools/` is not under `transport/`.
        let crates = ws(&[
            ("exp", "exporter/standalone", &["tt"]),
            ("tt", "transport-tools", &[]),
        ]);
        assert!(violations(&crates, RULES).is_empty());
    }
}
