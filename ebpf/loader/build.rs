//! Builds the eBPF programs (`ebpf/probes`) for the BPF target with Debian's rustc-web
//! toolchain (`/usr`, which ships the `core` source that `-Z build-std` needs) and bpf-linker
//! (named in `.cargo/config.toml`, installed by `cargo xtask setup`).
//!
//! aya-build puts its nested cargo build under `OUT_DIR`, which differs between `cargo check`,
//! `cargo clippy` and `cargo build`/`test` of this crate: each would compile the programs and
//! the BPF `core` from scratch (~45 s). So the nested build runs in one shared folder,
//! `<target>/ebpf`, and the object is copied into this build's `OUT_DIR`.

use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?);
    // OUT_DIR = <target>/<profile>/build/<package>-<hash>/out
    let shared = out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("ebpf"))
        .unwrap_or_else(|| out_dir.clone());
    fs::create_dir_all(&shared)?;
    // build-std is unstable; enable it for the nested eBPF build only (this process and the
    // cargo it spawns), never for the host crates.
    // SAFETY: build scripts are single-threaded at this point; nothing reads the environment
    // concurrently.
    unsafe {
        env::set_var("RUSTC_BOOTSTRAP", "1");
        env::set_var("OUT_DIR", &shared);
    }
    println!("cargo:rerun-if-changed=../../tools/bin/bpf-linker");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sipsctp-ebpf-probes",
            root_dir: "../probes",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("/usr"),
    )?;
    fs::copy(
        shared.join("sipsctp-probes"),
        out_dir.join("sipsctp-probes"),
    )?;
    Ok(())
}
