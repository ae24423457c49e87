//! Where downloads and builds live: the per-user XDG cache, keyed by version, so a fresh clone
//! on the same machine (as CI makes) reuses them; and the project-local, git-ignored `tools/`.

use std::path::PathBuf;

use crate::util::workspace_root;

/// bpf-linker's version and the LLVM it is built against (both part of its cache key).
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM major version bpf-linker links (Debian's `llvm-22-dev`).
pub const LLVM_MAJOR: &str = "22";

/// cargo-fuzz's version (`cargo xtask fuzz`; part of its cache key).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The OTLP receiver the exporter's host tests export to: PyPI `rotel`, a wheel holding the
/// `rotel-agent` binary (part of its cache key).
pub const ROTEL_VERSION: &str = "0.0.1a15";

/// Grafana's published dashboard schema (npm `@grafana/schema`) the dashboards are
/// type-checked against, and the TypeScript that checks them (both part of their cache key).
pub const GRAFANA_SCHEMA_VERSION: &str = "13.2.3";
/// See [`GRAFANA_SCHEMA_VERSION`].
pub const TYPESCRIPT_VERSION: &str = "5.9.3";

/// `$XDG_CACHE_HOME/sipsctp`, else `~/.cache/sipsctp`.
pub fn root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("sipsctp")
}

/// The cached bpf-linker install root for the pinned version.
pub fn bpf_linker_root() -> PathBuf {
    root()
        .join("bpf-linker")
        .join(format!("{BPF_LINKER_VERSION}-llvm{LLVM_MAJOR}"))
}

/// The cached cargo-fuzz install root for the pinned version.
pub fn cargo_fuzz_root() -> PathBuf {
    root().join("cargo-fuzz").join(CARGO_FUZZ_VERSION)
}

/// The unpacked rotel wheel for the pinned version (`rotel/rotel-agent` inside).
pub fn rotel_root() -> PathBuf {
    root().join("rotel").join(ROTEL_VERSION)
}

/// The npm packages of the dashboards' schema check (`node_modules/` inside).
pub fn npm_root() -> PathBuf {
    root().join("npm").join(format!(
        "grafana-schema-{GRAFANA_SCHEMA_VERSION}-typescript-{TYPESCRIPT_VERSION}"
    ))
}

/// Unpacked kernels, one folder per Debian package name and version.
pub fn kernels() -> PathBuf {
    root().join("kernels")
}

/// Downloaded .deb files.
pub fn debs() -> PathBuf {
    root().join("debs")
}

/// The project-local tools folder (git-ignored): `tools/bin/bpf-linker`,
/// `tools/bin/rotel-agent`.
pub fn tools_bin() -> PathBuf {
    workspace_root().join("tools").join("bin")
}
