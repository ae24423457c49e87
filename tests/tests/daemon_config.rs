//! `sipsctpd`'s command line on configuration files (no listener is opened):
//!
//! - `--check-config` on a file with an unknown key, an unknown `[sctp]` parameter, or an
//!   `[sctp]` value out of Kamailio's range exits 3 and names the key;
//! - `--print-default-config` prints a file that `--check-config` accepts (exit 0), and so is
//!   the shipped example `transport/daemon/dist/sipsctpd.toml`;
//! - no `--config` at all is a command-line error (exit 2).

use std::{path::Path, process::Command};

use sipsctp_tests::{
    daemon::{daemon_binary, data_file, scratch},
    vm_kernel,
};

/// Runs the daemon with `args`; returns exit code, stdout and stderr.
fn sipsctpd(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(daemon_binary())
        .args(args)
        .output()
        .expect("run sipsctpd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_config(file: &Path) -> (i32, String, String) {
    sipsctpd(&[
        "--check-config".as_ref(),
        "--config".as_ref(),
        file.as_os_str(),
    ])
}

#[test]
fn daemon_check_config_rejects_bad_files_with_exit_3_naming_the_key() {
    for (file, key) in [
        ("bad_unknown_key.toml", "retransmit"),
        ("bad_sctp_name.toml", "sctp.sctp_rto_min"),
        ("bad_sctp_value.toml", "sctp.sctp_sack_delay"),
    ] {
        let path = data_file(file);
        let (code, out, err) = check_config(&path);
        assert_eq!(
            code,
            3,
            "kernel {}: --check-config {file}: exit code (3 = invalid configuration); \
             stdout {out:?}, stderr {err:?}",
            vm_kernel()
        );
        assert!(
            err.contains(key),
            "--check-config {file}: the error names `{key}`: {err:?}"
        );
        assert!(
            !out.contains("configuration valid"),
            "--check-config {file} must not claim validity: {out:?}"
        );
        eprintln!("--check-config {file}: exit 3, {}", err.trim());
    }
    // The range is in the message, so that the operator can fix the value.
    let (_, _, err) = check_config(&data_file("bad_sctp_value.toml"));
    assert!(err.contains("900") && err.contains("0..=500"), "{err:?}");
}

#[test]
fn daemon_print_default_config_is_accepted_by_check_config() {
    let (code, text, err) = sipsctpd(&["--print-default-config".as_ref()]);
    assert_eq!(code, 0, "--print-default-config: {err}");
    // Every one of Kamailio's 19 sctp parameters is shown.
    let params = text
        .lines()
        .filter(|l| l.trim_start().starts_with("# sctp_"))
        .count();
    assert_eq!(
        params, 19,
        "--print-default-config lists the 19 sctp parameters:\n{text}"
    );
    let dir = scratch("default-config");
    let file = dir.join("default.toml");
    std::fs::write(&file, &text).expect("write the default config");
    let (code, out, err) = check_config(&file);
    assert_eq!(
        code, 0,
        "--check-config on --print-default-config's output: stdout {out:?}, stderr {err:?}\n{text}"
    );
    assert!(out.contains("configuration valid"), "{out:?}");

    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../transport/daemon/dist/sipsctpd.toml");
    let (code, out, err) = check_config(&example);
    assert_eq!(
        code,
        0,
        "--check-config on the shipped example {}: {out} {err}",
        example.display()
    );

    let (code, _, err) = sipsctpd(&[]);
    assert_eq!(
        code, 2,
        "no --config is a command-line error (exit 2): {err}"
    );
}
