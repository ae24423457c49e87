//! `cargo xtask setup`: everything the build and the VM need, installed idempotently.
//!
//! - Debian packages (apt) that are missing: qemu, the eBPF Rust toolchain (rustc-web,
//!   cargo-web, rust-web-src), LLVM 22 for bpf-linker, the guest's peers and tools.
//! - bpf-linker, built once per version into the per-user cache, linked into `tools/bin`.
//! - rotel-agent (the OTLP receiver of the exporter's host tests), from the pinned PyPI wheel
//!   fetched with `pip download`, unpacked once into the per-user cache, linked into
//!   `tools/bin`.
//! - `@grafana/schema` and `typescript` (the dashboards' schema check), pinned, from the npm
//!   registry with `npm install` into the per-user cache.
//! - The guest kernels (6.1 and 6.12) and their initramfs images, cached by package version.
//!
//! Only installing needs root: on a machine that has everything, setup runs as any user.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cache, initramfs,
    kernel::{self, Series},
    util::{exec, have_program, is_root, step},
};

/// Debian packages the project needs on the host (and, since the guest's root is the host's
/// root, in the VM).
pub const APT_PACKAGES: &[&str] = &[
    // the VM
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "zstd",
    // eBPF programs: Debian's rustc with its core source for -Z build-std, and LLVM 22 for
    // bpf-linker
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // in the guest: network tools, SCTP peers, probes, Prometheus
    "iproute2",
    "nftables",
    "bpftool",
    "lksctp-tools",
    "libsctp-dev",
    "sip-tester",
    "kamailio",
    "kamailio-sctp-modules",
    "prometheus",
    "curl",
    // on the host: `pip download` of the rotel wheel (the OTLP receiver of the host tests)
    "python3-pip",
    // on the host: the previews' font (the schema check's nodejs and npm are installed by
    // `grafana_schema` when no `npm` is on PATH, so a NodeSource nodejs that bundles npm stays)
    "fonts-dejavu-core",
    // `cargo xtask bench system`: strace for `--syscalls`, perf for `--perf`
    "strace",
    "linux-perf",
];

/// `cargo xtask setup` options.
#[derive(clap::Args, Debug, Default)]
pub struct Options {
    /// Prepare only this kernel series (default: all).
    #[arg(long, value_enum)]
    pub kernel: Option<Series>,
}

/// Runs every setup step; each is a no-op when its result is already there.
pub fn run(o: &Options) -> Result<()> {
    let root = is_root();
    apt_packages(root)?;
    bpf_linker()?;
    rotel()?;
    grafana_schema(root)?;
    let series: Vec<Series> = match o.kernel {
        Some(s) => vec![s],
        None => Series::ALL.to_vec(),
    };
    for s in series {
        let k = kernel::ensure(s, root)?;
        let initrd = initramfs::ensure(&k)?;
        step(format!(
            "kernel {s} ready: {} ({})",
            k.release,
            initrd
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && o.stdout.starts_with(b"ii"))
        .unwrap_or(false)
}

fn apt_packages(root: bool) -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        step(format!("apt: all {} packages present", APT_PACKAGES.len()));
        return Ok(());
    }
    if !root {
        bail!(
            "these Debian packages are missing and installing them needs root: {}\n\
             run `sudo cargo xtask setup` (or install them with apt-get)",
            missing.join(" ")
        );
    }
    step(format!("apt: installing {}", missing.join(" ")));
    exec(Command::new("apt-get").args(["update", "-q"]))
        .context("apt-get update failed: is a Debian mirror reachable?")?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install failed (see its output above)")?;
    Ok(())
}

/// Builds bpf-linker (pinned version, against Debian's LLVM 22) into the per-user cache unless
/// it is there, and links it into the project's `tools/bin`, where `.cargo/config.toml` names it
/// as the linker of the BPF target.
fn bpf_linker() -> Result<()> {
    let cached = cache::bpf_linker_root().join("bin/bpf-linker");
    if cached.is_file() {
        step(format!("bpf-linker {} (cached)", cache::BPF_LINKER_VERSION));
    } else {
        if !have_program("cargo") {
            bail!("cargo is not on PATH");
        }
        let llvm = format!("/usr/lib/llvm-{}", cache::LLVM_MAJOR);
        step(format!(
            "building bpf-linker {} against {llvm} (about a minute)",
            cache::BPF_LINKER_VERSION
        ));
        let build_root = cache::root().join("build");
        fs::create_dir_all(&build_root)?;
        exec(
            Command::new("cargo")
                .args(["install", "--locked", "--force", "--root"])
                .arg(cache::bpf_linker_root())
                .args(["bpf-linker", "--version", cache::BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features"])
                .arg(format!("llvm-{}", cache::LLVM_MAJOR))
                // llvm-sys and bpf-linker's build script each look for LLVM their own way
                .env(format!("LLVM_SYS_{}1_PREFIX", cache::LLVM_MAJOR), &llvm)
                .env("LLVM_PREFIX", &llvm)
                // outside the workspace, so its .cargo/config.toml does not apply
                .current_dir(&build_root)
                .env_remove("RUSTC_BOOTSTRAP")
                .env_remove("CARGO_TARGET_DIR"),
        )?;
    }
    let bin = cache::tools_bin();
    fs::create_dir_all(&bin)?;
    let link = bin.join("bpf-linker");
    if fs::read_link(&link).ok().as_deref() != Some(cached.as_path()) {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&cached, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// The platform of the pinned rotel wheel (its binary needs glibc 2.34; Debian 12 has 2.36).
const ROTEL_PLATFORM: &str = "manylinux_2_34_x86_64";

/// Fetches the pinned rotel wheel from PyPI with `pip download` unless its unpacked copy is in
/// the per-user cache, unpacks it with Python's zipfile module, and links its `rotel-agent`
/// into `tools/bin` (where `exporter/agent/tests/otlp_rotel.rs` looks for it).
fn rotel() -> Result<()> {
    let root = cache::rotel_root();
    let cached = root.join("rotel").join("rotel-agent");
    if cached.is_file() {
        step(format!("rotel-agent {} (cached)", cache::ROTEL_VERSION));
    } else {
        step(format!(
            "fetching rotel {} (the OTLP receiver of the host tests) from PyPI",
            cache::ROTEL_VERSION
        ));
        let parent = root
            .parent()
            .context("the rotel cache folder has no parent")?;
        fs::create_dir_all(parent)?;
        let tmp = parent.join(format!("{}.tmp", cache::ROTEL_VERSION));
        let _ = fs::remove_dir_all(&tmp);
        let wheels = tmp.join("wheel");
        fs::create_dir_all(&wheels)?;
        // The wheel is pinned by version and platform, so the host's own Python version does
        // not matter; `pip download` installs nothing.
        exec(
            Command::new("python3")
                .args(["-m", "pip", "download", "--disable-pip-version-check"])
                .arg(format!("rotel=={}", cache::ROTEL_VERSION))
                .args([
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    ROTEL_PLATFORM,
                ])
                .args(["--python-version", "3.11", "--implementation", "cp"])
                .arg("-d")
                .arg(&wheels),
        )
        .context("pip download of rotel failed: is PyPI reachable, is python3-pip installed?")?;
        let wheel = fs::read_dir(&wheels)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .context("pip download left no .whl file")?;
        let unpacked = tmp.join("unpacked");
        exec(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&unpacked),
        )?;
        let agent = unpacked.join("rotel").join("rotel-agent");
        if !agent.is_file() {
            bail!("{} has no rotel/rotel-agent", wheel.display());
        }
        // zipfile does not keep the mode bits.
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o755))?;
        let _ = fs::remove_dir_all(&root);
        fs::rename(&unpacked, &root)
            .with_context(|| format!("moving rotel into {}", root.display()))?;
        let _ = fs::remove_dir_all(&tmp);
    }
    let bin = cache::tools_bin();
    fs::create_dir_all(&bin)?;
    let link = bin.join("rotel-agent");
    if fs::read_link(&link).ok().as_deref() != Some(cached.as_path()) {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&cached, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// Installs the pinned `@grafana/schema` and `typescript` from the npm registry into the
/// per-user cache unless they are there (`cargo xtask test` type-checks the dashboards with
/// them).
fn grafana_schema(root_user: bool) -> Result<()> {
    let root = cache::npm_root();
    let tsc = root.join("node_modules/typescript/bin/tsc");
    let schema = root.join("node_modules/@grafana/schema/package.json");
    if tsc.is_file() && schema.is_file() {
        step(format!(
            "@grafana/schema {} + typescript {} (cached)",
            cache::GRAFANA_SCHEMA_VERSION,
            cache::TYPESCRIPT_VERSION
        ));
        return Ok(());
    }
    if !have_program("npm") || !have_program("node") {
        if !root_user {
            bail!(
                "nodejs and npm are missing (the dashboards' schema check needs them) and \
                 installing them needs root: run `sudo cargo xtask setup`"
            );
        }
        step("apt: installing nodejs npm");
        exec(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "nodejs",
                    "npm",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .context("apt-get install nodejs npm failed")?;
    }
    step(format!(
        "installing @grafana/schema {} and typescript {} from the npm registry",
        cache::GRAFANA_SCHEMA_VERSION,
        cache::TYPESCRIPT_VERSION
    ));
    let tmp = root.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    fs::write(tmp.join("package.json"), "{\"private\": true}\n")?;
    exec(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--save-exact",
            ])
            .arg(format!("@grafana/schema@{}", cache::GRAFANA_SCHEMA_VERSION))
            .arg(format!("typescript@{}", cache::TYPESCRIPT_VERSION))
            .current_dir(&tmp),
    )
    .context("npm install failed: is the npm registry reachable, are nodejs and npm installed?")?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&tmp, &root)
        .with_context(|| format!("moving the packages into {}", root.display()))?;
    Ok(())
}
