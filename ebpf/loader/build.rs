//! Builds the eBPF programs (`ebpf/probes`) for the BPF target with Debian's rustc-web
//! toolchain (`/usr`, which ships the `core` source that `-Z build-std` needs) and bpf-linker
//! (named in `.cargo/config.toml`, installed by `cargo xtask setup`).

fn main() -> anyhow::Result<()> {
    // build-std is unstable; enable it for the nested eBPF build only (this process and the
    // cargo it spawns), never for the host crates.
    // SAFETY: build scripts are single-threaded at this point; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    println!("cargo:rerun-if-changed=../../tools/bin/bpf-linker");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sipsctp-ebpf-probes",
            root_dir: "../probes",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("/usr"),
    )
}
