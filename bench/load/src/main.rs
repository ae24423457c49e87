//! `sipsctp-load`: parses the flags and runs the UAC or the UAS (see `--help`).

use clap::Parser as _;
use sipsctp_load::{
    cli::{Cli, Role},
    run,
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match &cli.role {
        Role::Uac(a) => run::uac(a),
        Role::Uas(a) => run::uas(a),
    };
    match r {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipsctp-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
