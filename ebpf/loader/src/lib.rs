//! Loads sipsctp's eBPF programs into the running kernel, attaches them to kernel SCTP
//! functions, and turns their ring-buffer records into typed [`KernelEvent`]s on tokio.
//!
//! The programs are embedded at build time (see `build.rs`). aya-log lines written by the
//! programs are forwarded to the `log` crate (target: the program's module path), so they end up
//! in whatever logger the process installed.
//!
//! This crate never parses SIP and never opens SCTP sockets.
#![warn(missing_docs)]

use std::os::fd::AsRawFd as _;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::KProbe,
};
use aya_log::EbpfLogger;
use sipsctp_ebpf_common::STAT_EVENTS_LOST;
pub use sipsctp_ebpf_common::{KernelEvent, kind};
use tokio::io::{Interest, unix::AsyncFd};

/// The object file of the programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipsctp-probes"));

/// The kprobes this crate attaches: program name = kernel function name.
pub const KPROBES: &[&str] = &["sctp_transport_update_rto"];

/// Errors while loading or reading the probes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The object could not be loaded (verifier, missing BTF, no privilege...).
    #[error("loading the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing from the object (a build problem).
    #[error("program {0} is not in the eBPF object")]
    MissingProgram(&'static str),
    /// A map is missing from the object (a build problem).
    #[error("map {0} is not in the eBPF object")]
    MissingMap(&'static str),
    /// Loading into the kernel or attaching a program failed.
    #[error("program {program}: {source}")]
    Program {
        /// The program (= kernel function) name.
        program: &'static str,
        /// What aya said.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map had the wrong type or could not be read.
    #[error("map {map}: {source}")]
    Map {
        /// The map name.
        map: &'static str,
        /// What aya said.
        #[source]
        source: aya::maps::MapError,
    },
    /// aya-log could not be set up.
    #[error("aya-log: {0}")]
    Log(#[from] aya_log::Error),
    /// Registering a ring buffer with tokio failed.
    #[error("registering the ring buffer with tokio: {0}")]
    Io(#[from] std::io::Error),
}

/// The loaded and attached probes. Dropping it detaches and unloads them.
pub struct KernelProbes {
    ebpf: Ebpf,
    events: AsyncFd<RingBuf<MapData>>,
    malformed: u64,
    _logs: tokio::task::JoinHandle<()>,
}

impl KernelProbes {
    /// Loads the programs, attaches every probe, and starts forwarding aya-log lines to the
    /// `log` crate.
    ///
    /// Must be called within a tokio runtime (the log forwarder is a task).
    ///
    /// # Errors
    /// When the kernel refuses the object or a program (no privilege, verifier, a hook that
    /// does not exist on this kernel).
    pub fn load() -> Result<KernelProbes, ProbeError> {
        let mut ebpf = Ebpf::load(PROGRAMS)?;
        let logger = EbpfLogger::init(&mut ebpf)?;
        let logs = spawn_log_forwarder(logger)?;
        for &name in KPROBES {
            let program: &mut KProbe = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    program: name,
                    source,
                })?;
            program.load().map_err(|source| ProbeError::Program {
                program: name,
                source,
            })?;
            program
                .attach(name, 0)
                .map_err(|source| ProbeError::Program {
                    program: name,
                    source,
                })?;
        }
        let map = ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: "EVENTS",
            source,
        })?;
        // SAFETY: the RingBuf owns its map's fd; it stays open and `as_raw_fd` returns that same
        // fd until the AsyncFd (which owns the RingBuf) is dropped.
        let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(KernelProbes {
            ebpf,
            events,
            malformed: 0,
            _logs: logs,
        })
    }

    /// Waits for the next kernel event.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is consumed from the ring buffer only when it is returned.
    ///
    /// # Errors
    /// Only when polling the ring buffer's file descriptor fails.
    pub async fn next_event(&mut self) -> Result<KernelEvent, ProbeError> {
        loop {
            if let Some(e) = self.try_next_event() {
                return Ok(e);
            }
            let mut guard = self.events.readable_mut().await?;
            guard.clear_ready();
        }
    }

    /// The next kernel event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<KernelEvent> {
        let ring = self.events.get_mut();
        while let Some(item) = ring.next() {
            match KernelEvent::from_bytes(&item) {
                Some(e) => return Some(e),
                None => self.malformed += 1,
            }
        }
        None
    }

    /// Ring-buffer records too short to be an event (a build mismatch; should stay 0).
    pub fn malformed_records(&self) -> u64 {
        self.malformed
    }

    /// Events the kernel side could not deliver because the ring buffer was full.
    ///
    /// # Errors
    /// When the counter map cannot be read.
    pub fn events_lost(&self) -> Result<u64, ProbeError> {
        let map = self
            .ebpf
            .map("STATS")
            .ok_or(ProbeError::MissingMap("STATS"))?;
        let stats = PerCpuArray::<_, u64>::try_from(map).map_err(|source| ProbeError::Map {
            map: "STATS",
            source,
        })?;
        let per_cpu = stats
            .get(&STAT_EVENTS_LOST, 0)
            .map_err(|source| ProbeError::Map {
                map: "STATS",
                source,
            })?;
        Ok(per_cpu.iter().sum())
    }
}

/// Drives aya-log's ring buffer: each readable wake-up flushes the records into `log`.
fn spawn_log_forwarder(
    logger: EbpfLogger<&'static dyn log::Log>,
) -> Result<tokio::task::JoinHandle<()>, ProbeError> {
    // SAFETY: the EbpfLogger owns aya-log's ring-buffer map fd; it stays open and `as_raw_fd`
    // returns that same fd until the AsyncFd (which owns the logger) is dropped.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    Ok(tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    log::warn!(
                        "aya-log forwarder stopped (fd {}): {e}",
                        fd.get_ref().as_raw_fd()
                    );
                    return;
                }
            }
        }
    }))
}
