//! `cargo xtask demo`: the README's main job. Inside the VM (kernel SCTP), sipp places calls
//! over SCTP through `sipsctpd` (started with `transport/daemon/dist/sipsctpd.toml`) to a sipp
//! UAS over UDP; then the demo prints what the daemon exposes (`/sctp/info`, `/metrics`) and
//! stops it with SIGTERM. Its second part shows why a transaction was slow: UDP calls through
//! sipsctpd to an SCTP upstream with 10 % loss, spans to a real OTLP receiver (rotel), and one
//! slow INVITE's trace with the kernel's retransmission on it.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{
    kernel::Series,
    setup,
    test::{artifacts, cargo},
    util::{step, workspace_root},
    vm,
};

/// The guest side of the demo.
const SCRIPT: &str = include_str!("../guest/demo.sh");

/// `cargo xtask demo` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Guest kernel series.
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: Series,
    /// Calls sipp places.
    #[arg(long, default_value_t = 100)]
    pub calls: u32,
}

/// Builds sipsctpd and runs the demo in the VM; returns its exit code.
pub fn run(o: &Options) -> Result<u8> {
    setup::run(&setup::Options {
        kernel: Some(o.kernel),
    })?;
    step("building sipsctpd (release)");
    let exes = artifacts(
        cargo().args(["build", "--release", "-p", "sipsctpd", "--bin", "sipsctpd"]),
        false,
    )?;
    let Some(daemon) = exes.into_iter().find(|e| e.ends_with("sipsctpd")) else {
        bail!("cargo built no sipsctpd");
    };
    let config = workspace_root().join("transport/daemon/dist/sipsctpd.toml");
    let mut r = vm::Run::new(o.kernel, vec![SCRIPT.to_owned()]);
    r.env
        .push(("SIPSCTPD".into(), daemon.to_string_lossy().into_owned()));
    r.env
        .push(("CONFIG".into(), config.to_string_lossy().into_owned()));
    r.env.push(("CALLS".into(), o.calls.to_string()));
    let root = workspace_root();
    r.env.push((
        "ROTEL".into(),
        root.join("tools/bin/rotel-agent")
            .to_string_lossy()
            .into_owned(),
    ));
    r.env.push((
        "UAS_XML".into(),
        root.join("tests/data/daemon/uas_ua.xml")
            .to_string_lossy()
            .into_owned(),
    ));
    r.timeout = Duration::from_secs(300);
    vm::announce(&vm::Run::new(
        o.kernel,
        vec![
            "sipp -> sipsctpd (SCTP) -> sipp (UDP); then sipp (UDP) -> sipsctpd -> lossy SCTP \
             upstream, traced"
                .into(),
        ],
    ));
    vm::run(&r)
}
