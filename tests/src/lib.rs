//! Helpers for sipsctp's integration tests.
//!
//! These tests need the kernel's SCTP stack (and, for the probes, kprobes), which the
//! development machine lacks: `cargo xtask test` builds them on the host and runs them inside
//! the project's qemu VM on each supported kernel. Outside the VM they fail loudly: a test that
//! needs SCTP never skips itself.

pub mod calls;
pub mod daemon;
pub mod kernel_sctp;
pub mod lossy;
pub mod netns;
pub mod ports;
pub mod spans;

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

/// Panics with an explanation when the kernel has no SCTP: under the harness that is a broken
/// VM, elsewhere the wrong place to run these tests. Call it within a tokio runtime.
pub fn require_sctp() {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    match tokio_sctp::SctpListener::bind(any) {
        Ok(_) => {}
        Err(e) => panic!(
            "kernel SCTP is not available ({e}); the integration tests run inside the VM: \
             `cargo xtask test` (SIPSCTP_VM={:?})",
            std::env::var("SIPSCTP_VM").ok()
        ),
    }
}

/// [`require_sctp`] from a test without a runtime of its own (tokio-sctp's listener needs one).
pub fn require_sctp_blocking() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async { require_sctp() });
}

/// The kernel series the VM booted (`6.1`, `6.12`), for messages.
pub fn vm_kernel() -> String {
    std::env::var("SIPSCTP_VM_KERNEL").unwrap_or_else(|_| "host".into())
}

/// A `log` logger that keeps every line (and prints it), so tests can assert on what the
/// eBPF programs logged through aya-log.
pub struct CapturingLogger {
    lines: Mutex<Vec<String>>,
}

impl CapturingLogger {
    /// Installs the logger process-wide (once) and returns it.
    pub fn install() -> &'static CapturingLogger {
        static LOGGER: OnceLock<CapturingLogger> = OnceLock::new();
        let logger = LOGGER.get_or_init(|| CapturingLogger {
            lines: Mutex::new(Vec::new()),
        });
        if log::set_logger(logger).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        logger
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!(
            "[{}] {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
        eprintln!("{line}");
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    fn flush(&self) {}
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
