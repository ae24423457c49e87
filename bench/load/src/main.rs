//! `sipsctp-load`: parses the flags and runs the UAC, the UAS or the raw forwarder (see
//! `--help`).

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
        Role::Forward(a) => sipsctp_load::forward::run(a.listen, a.upstream, a.duration_secs)
            .and_then(|v| match &a.json {
                Some(p) => run::write_json(p, &v).map(|()| v),
                None => Ok(v),
            }),
    };
    match r {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipsctp-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
