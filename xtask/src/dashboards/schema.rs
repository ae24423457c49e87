//! The dashboards against Grafana's published schema: each JSON file becomes
//! `const d = (<json>) satisfies Checked` (see [`PRELUDE`]) in a TypeScript file, type-checked by `tsc --noEmit`
//! with `@grafana/schema` (the Dashboard type of the classic JSON model Grafana imports and
//! provisions). `satisfies` on an object literal rejects wrong types and unknown keys.
//! Versions are pinned in [`crate::cache`]; setup installs them from the npm registry.

use std::{fs, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cache, util::step};

/// Type-checks every dashboard; also checks that their `schemaVersion` is the one the pinned
/// `@grafana/schema` defaults to (the current Grafana's).
///
/// # Errors
/// The packages are missing (run setup), a dashboard does not type-check, or its
/// schemaVersion is not current.
pub fn check(boards: &[(String, Value)]) -> Result<()> {
    let modules = cache::npm_root().join("node_modules");
    let tsc = modules.join("typescript/bin/tsc");
    if !tsc.is_file() {
        bail!(
            "{} is missing: `cargo xtask setup` installs @grafana/schema {} and typescript {}",
            tsc.display(),
            cache::GRAFANA_SCHEMA_VERSION,
            cache::TYPESCRIPT_VERSION
        );
    }
    step(format!(
        "dashboards: schema check (@grafana/schema {}, tsc {})",
        cache::GRAFANA_SCHEMA_VERSION,
        cache::TYPESCRIPT_VERSION
    ));
    let current = current_schema_version(&modules)?;
    let dir = crate::test::target_dir().join("dashboards-schema");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    std::os::unix::fs::symlink(&modules, dir.join("node_modules"))
        .context("linking node_modules")?;
    let mut files = Vec::new();
    for (file, d) in boards {
        if d["schemaVersion"].as_u64() != Some(current) {
            bail!(
                "{file}: schemaVersion {} but @grafana/schema {} is at {current}",
                d["schemaVersion"],
                cache::GRAFANA_SCHEMA_VERSION
            );
        }
        let ts = format!("{}.ts", file.trim_end_matches(".json"));
        let pretty = serde_json::to_string_pretty(d)?;
        fs::write(
            dir.join(&ts),
            format!(
                "// Generated from dashboards/{file} by `cargo xtask test`.\n{PRELUDE}\n\
                 export const dashboard = ({pretty}) satisfies Checked;\n"
            ),
        )?;
        files.push(ts);
    }
    fs::write(
        dir.join("tsconfig.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "compilerOptions": {
                "strict": true, "noEmit": true, "module": "esnext",
                "moduleResolution": "bundler", "target": "es2022", "skipLibCheck": true,
                "types": []
            },
            "files": files
        }))?,
    )?;
    let out = Command::new("node")
        .arg(&tsc)
        .args(["--noEmit", "-p", "tsconfig.json", "--pretty", "false"])
        .current_dir(&dir)
        .output()
        .context("running node (nodejs)")?;
    if !out.status.success() {
        bail!(
            "the dashboards do not satisfy Grafana's Dashboard type ({}):\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    step(format!(
        "dashboards: {} dashboards satisfy @grafana/schema's Dashboard",
        boards.len()
    ));
    Ok(())
}

/// What each dashboard must satisfy: `@grafana/schema`'s `Dashboard`, with two adjustments a
/// JSON file needs. (1) Its enums (`ThresholdsMode`, `FieldColorModeId`, ...) are TypeScript
/// enums, which a string literal never satisfies: `Json` turns each into the union of its
/// values, nothing else. (2) The core schema types annotation queries as the generic
/// `DataQuery` (no data-source fields) and has no place for the Prometheus annotation options
/// Grafana reads beside it; `PromQuery` and `PromAnnotation` declare exactly the fields these
/// dashboards use (from Grafana's Prometheus data source), so any other key is still an error.
const PRELUDE: &str = "\
import type { Dashboard, AnnotationQuery, DataQuery } from '@grafana/schema';
type Json<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T
  : T extends Array<infer U> ? Array<Json<U>> : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
interface PromQuery extends DataQuery { expr: string; legendFormat?: string; interval?: string; }
type PromAnnotation = AnnotationQuery<PromQuery> & {
  titleFormat?: string; textFormat?: string; tagKeys?: string; useValueForTime?: boolean;
};
type Checked = Json<Omit<Dashboard, 'annotations'> & {
  annotations?: { list?: Array<PromAnnotation | AnnotationQuery> };
}>;";

/// `schemaVersion` of the pinned package's `defaultDashboard`.
fn current_schema_version(modules: &std::path::Path) -> Result<u64> {
    let f = modules.join("@grafana/schema/dist/esm/raw/dashboard/x/types.gen.mjs");
    let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
    text.split("schemaVersion:")
        .nth(1)
        .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no schemaVersion in {}", f.display()))
}
