//! `cargo xtask demo`: the README's main job. Until the daemon exists this is the SCTP echo
//! demo: a one-to-many server and client of this project's transport crate exchange messages
//! over the VM's kernel SCTP and print what the kernel reports about their association.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{kernel::Series, setup, test::artifacts, test::cargo, util::step, vm};

/// `cargo xtask demo` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Guest kernel series.
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: Series,
}

/// Builds the demo and runs it in the VM; returns its exit code.
pub fn run(o: &Options) -> Result<u8> {
    setup::run(&setup::Options {
        kernel: Some(o.kernel),
    })?;
    step("building the echo demo");
    let exes = artifacts(
        cargo().args(["build", "-p", "sipsctp-sctp", "--example", "echo"]),
        false,
    )?;
    let Some(exe) = exes.into_iter().find(|e| e.ends_with("echo")) else {
        bail!("cargo built no echo example");
    };
    let mut r = vm::Run::new(o.kernel, vec![exe.to_string_lossy().into_owned()]);
    r.timeout = Duration::from_secs(300);
    vm::announce(&r);
    vm::run(&r)
}
