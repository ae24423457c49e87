//! sipsctp's developer tasks, run as `cargo xtask <task>`.
//!
//! The machine this project is developed and tested on has no SCTP and no kprobes in its
//! kernel, so everything that opens an SCTP socket or attaches a probe runs inside a qemu VM
//! booting Debian's stock kernel. This crate owns that VM and the one test command:
//!
//! - [`setup`]: installs packages, bpf-linker, kernels and initramfs images (idempotent, cached);
//! - [`vm`]: boots a kernel with the host's root read-only and runs one command in it;
//! - [`test`]: formatting, clippy, host unit tests, then the integration tests in the VM on
//!   every supported kernel;
//! - [`demo`]: the README's main job (SIP through sipsctpd in the VM);
//! - [`bench`]: the host benchmarks;
//! - [`fuzz`]: every cargo-fuzz target for a fixed time (not part of `test`: it takes minutes);
//! - [`dashboards`]: the Grafana dashboards' and alert rules' checks (part of `test`) and their
//!   previews rendered from a live run.

mod bench;
mod bench_system;
mod cache;
mod dashboards;
mod demo;
mod fuzz;
mod initramfs;
mod kernel;
mod layering;
mod setup;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sipsctp developer tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the test VM need (root; idempotent; cached per user).
    Setup(setup::Options),
    /// Boot the test VM and run one command in it; its exit code is ours.
    Vm(vm::Options),
    /// The whole test suite: setup, fmt, clippy, unit tests, integration tests in the VM.
    Test(test::Options),
    /// The main job: sipp -> sipsctpd (SCTP) -> sipp (UDP) inside the VM, then its metrics.
    Demo(demo::Options),
    /// The criterion benchmarks (host, no sockets), then a summary; `bench system`: sipsctpd
    /// against Kamailio and the raw kernel limit in the VM (table, JSON, PNG in target/bench/).
    Bench(bench::Options),
    /// Every fuzz target (SIP, SCTP notifications, kernel event records, BTF) for S seconds
    /// each; exit 1 and the crashing input's path when one crashes.
    Fuzz(fuzz::Options),
    /// Run the dashboards' live test in the VM, then render each dashboard's preview PNG into
    /// dashboards/previews/.
    Dashboards(dashboards::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(o) => setup::run(&o).map(|()| 0),
        Task::Vm(o) => vm::run_cli(&o),
        Task::Test(o) => test::run(&o),
        Task::Demo(o) => demo::run(&o),
        Task::Bench(o) => bench::run(&o).map(|()| 0),
        Task::Fuzz(o) => fuzz::run(&o),
        Task::Dashboards(o) => dashboards::run(&o),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::from(vm::EXIT_INFRA)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
