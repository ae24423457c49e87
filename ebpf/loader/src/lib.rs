//! Loads sipsctp's eBPF programs into the running kernel, attaches them to kernel SCTP
//! functions, and turns their ring-buffer records into typed [`SctpEvent`]s on tokio.
//!
//! # Organization
//! The pure half lives in `sipsctp-ebpf-events` (no aya, no tokio, no syscalls), re-exported
//! here under the paths it always had; a crate that only decodes events depends on that one.
//! - [`btf`]: a reader of the kernel's BTF, base + split (module) blobs: struct member offsets
//!   by name (pure, re-exported), and [`btf::from_sys_fs`], which reads `/sys/kernel/btf`.
//! - [`layout`]: which members the programs read, and their resolution into [`Offsets`]
//!   (re-exported).
//! - [`hz`]: the kernel's tick rate (re-exported), and [`hz::measure`], which measures it.
//! - [`event`]: decoding of ring-buffer records into [`SctpEvent`] (re-exported).
//! - [`prog_stats`]: the kernel's counts of skipped probe runs (`bpf(2)`).
//! - this file: [`KernelProbes`], which loads, attaches, filters and streams.
//!
//! # Loading
//! [`KernelProbes::load`] measures HZ, reads `/sys/kernel/btf/vmlinux` plus the sctp module's
//! split BTF `/sys/kernel/btf/sctp`, resolves every member the programs read (no offset is
//! compiled in anywhere), and hands the offsets and the filter to the programs as the
//! `OFFSETS` and `CONFIG` globals before loading the object. Each probe (one or a few kernel
//! functions) whose functions, members or enum values the kernel lacks stays detached with a
//! `log::warn!` and a reason in [`KernelProbes::status`]; the others run.
//!
//! All programs are kprobes/kretprobes: aya 0.14's fentry/fexit can name vmlinux functions
//! only (no module BTF object), SCTP is a module on the supported kernels, and several hooks
//! are not fentry-able anyway (8 arguments, unions passed by value).
//!
//! # Kernel counters
//! The events count what the kernel itself counts in `/proc/net/sctp/snmp` (per network
//! namespace), because they hook the very functions that increment those counters:
//!
//! | snmp counter | events |
//! |---|---|
//! | `SctpT3Retransmits` | [`EventKind::Retransmit`] with [`RetransmitReason::T3Rtx`] (`sctp_retransmit`) |
//! | `SctpFastRetransmits` | [`EventKind::Retransmit`] with [`RetransmitReason::FastRtx`] (`sctp_transport_lower_cwnd(.., FAST_RTX)`, see below) |
//! | `SctpPmtudRetransmits` | [`EventKind::Retransmit`] with [`RetransmitReason::Pmtud`] |
//! | `SctpT3RtxExpireds` | [`EventKind::T3RtxExpired`] (`sctp_sf_do_6_3_3_rtx`) |
//! | `SctpT1InitExpireds` | [`EventKind::T1Expired`] with [`T1Timer::Init`] (`sctp_sf_t1_init_timer_expire`) |
//! | `SctpT1CookieExpireds` | [`EventKind::T1Expired`] with [`T1Timer::Cookie`] |
//!
//! Fast retransmit is not seen at `sctp_retransmit`: the kernel increments
//! `SctpFastRetransmits` in `sctp_retransmit`'s `SCTP_RTXR_FAST_RTX` branch, but the compiler
//! inlines `sctp_retransmit` into its fast-retransmit caller (`sctp_outq_sack` via
//! `sctp_mark_missing`, same file), where no kprobe fires — observed on Debian's 6.1 and 6.12
//! under 20 % loss: 46 and 36 fast retransmits counted, none seen at `sctp_retransmit`. That
//! branch's next statement is
//! `sctp_transport_lower_cwnd(transport, SCTP_LOWER_CWND_FAST_RTX)` (another file, never
//! inlined; no other caller passes that reason), which is where fast retransmits are taken.
//!
//! [`RetransmitReason::T1Rtx`] has no counter of its own (the kernel only bumps the
//! association's `init_retries`). The `tests/tests/ebpf_*.rs` integration tests check these
//! equalities exactly on every supported kernel.
//!
//! # Filtering
//! By default ([`Scope::Daemon`]) only associations in one network namespace whose local port
//! is one of the daemon's listening ports are reported; the ports can change at run time
//! ([`KernelProbes::add_port`]). [`Scope::All`] reports every SCTP association on the host.
//!
//! aya-log lines written by the programs are forwarded to the `log` crate (target: the
//! program's module path), and are only produced when `log`'s max level allows them at load.
//!
//! This crate never parses SIP and never opens SCTP sockets.
#![warn(missing_docs)]

pub mod btf;
pub mod hz;
pub mod prog_stats;

pub use sipsctp_ebpf_events::{event, layout, message};

use std::os::{
    fd::{AsFd as _, AsRawFd as _},
    unix::fs::MetadataExt as _,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{KProbe, links::FdLink},
};
use aya_log::EbpfLogger;
pub use event::{
    AssocChangeState, AssocState, DecodeError, EventKind, Jiffies, PathCommand, PathState,
    RetransmitReason, SctpEvent, T1Timer,
};
pub use hz::Hz;
pub use message::{CapturedMessage, Direction};
use sipsctp_ebpf_common::{
    Config, STAT_CAPTURES_LOST, STAT_EVENTS_LOST, STAT_READ_ERRORS, STAT_STASH_MISSES,
    STAT_STASH_OVERFLOWS,
};
pub use sipsctp_ebpf_common::{KernelEvent, Offsets};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    btf::Btf,
    layout::{ASSOC_STATES, EnumValue, Field, RTX_REASONS, Resolved, TRANSPORT_CMDS},
};

/// How often the rings are drained (the programs do not wake the reader per record; see
/// [`sipsctp_ebpf_common::DRAIN_INTERVAL_MS`]).
const DRAIN: std::time::Duration =
    std::time::Duration::from_millis(sipsctp_ebpf_common::DRAIN_INTERVAL_MS);

/// The object file of the programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipsctp-probes"));

/// One kernel function a program attaches to.
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    /// The program's name in the object.
    pub program: &'static str,
    /// The kernel function.
    pub function: &'static str,
}

/// A probe: programs that only make sense together, the members they read and the kernel
/// enum values they assume.
#[derive(Clone, Copy, Debug)]
pub struct ProbeDef {
    /// The probe's name (see [`PROBES`]).
    pub name: &'static str,
    /// Its programs.
    pub hooks: &'static [Hook],
    /// Whether it emits events (and so needs the identity members of
    /// [`layout::IDENTITY`]).
    pub emits: bool,
    /// The other members it reads.
    pub fields: &'static [Field],
    /// Kernel enum values it relies on.
    pub enums: &'static [EnumValue],
    /// A message-capture probe: attached only with [`LoadOptions::capture_messages`].
    pub capture: bool,
}

const fn hook(program: &'static str, function: &'static str) -> Hook {
    Hook { program, function }
}

/// Every probe the loader knows.
pub const PROBES: &[ProbeDef] = &[
    ProbeDef {
        name: "retransmit",
        hooks: &[
            hook("sctp_retransmit", "sctp_retransmit"),
            hook("sctp_transport_lower_cwnd", "sctp_transport_lower_cwnd"),
        ],
        emits: true,
        fields: &[
            Field::TpRto,
            Field::TpCwnd,
            Field::TpSsthresh,
            Field::TpFlightSize,
            Field::TpErrorCount,
        ],
        enums: RTX_REASONS,
        capture: false,
    },
    ProbeDef {
        name: "t3_rtx_expired",
        hooks: &[hook("sctp_sf_do_6_3_3_rtx", "sctp_sf_do_6_3_3_rtx")],
        emits: true,
        fields: &[
            Field::TpRto,
            Field::TpErrorCount,
            Field::AsocOverallErrorCount,
            Field::TpCwnd,
            Field::TpFlightSize,
        ],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "t1_init_expired",
        hooks: &[hook(
            "sctp_sf_t1_init_timer_expire",
            "sctp_sf_t1_init_timer_expire",
        )],
        emits: true,
        fields: &[
            Field::AsocInitRetries,
            Field::AsocMaxInitAttempts,
            Field::TpRto,
        ],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "t1_cookie_expired",
        hooks: &[hook(
            "sctp_sf_t1_cookie_timer_expire",
            "sctp_sf_t1_cookie_timer_expire",
        )],
        emits: true,
        fields: &[
            Field::AsocInitRetries,
            Field::AsocMaxInitAttempts,
            Field::TpRto,
        ],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "rto_update",
        hooks: &[
            hook("sctp_transport_update_rto", "sctp_transport_update_rto"),
            hook("sctp_transport_update_rto_ret", "sctp_transport_update_rto"),
        ],
        emits: true,
        fields: &[Field::TpRto, Field::TpSrtt, Field::TpRttvar],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "assoc_new",
        hooks: &[
            hook("sctp_assoc_set_id", "sctp_assoc_set_id"),
            hook("sctp_assoc_set_id_ret", "sctp_assoc_set_id"),
        ],
        emits: true,
        fields: &[Field::AsocState],
        enums: ASSOC_STATES,
        capture: false,
    },
    ProbeDef {
        name: "assoc_free",
        hooks: &[hook("sctp_association_free", "sctp_association_free")],
        emits: true,
        fields: &[Field::AsocState, Field::AsocOverallErrorCount],
        enums: ASSOC_STATES,
        capture: false,
    },
    ProbeDef {
        name: "assoc_change",
        hooks: &[hook(
            "sctp_ulpevent_make_assoc_change",
            "sctp_ulpevent_make_assoc_change",
        )],
        emits: true,
        fields: &[],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "path_change",
        hooks: &[hook(
            "sctp_assoc_control_transport",
            "sctp_assoc_control_transport",
        )],
        emits: true,
        fields: &[Field::TpState, Field::TpErrorCount],
        enums: TRANSPORT_CMDS,
        capture: false,
    },
    ProbeDef {
        name: "primary_change",
        hooks: &[hook("sctp_assoc_set_primary", "sctp_assoc_set_primary")],
        emits: true,
        fields: &[],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "heartbeat_sent",
        hooks: &[hook("sctp_sf_sendbeat_8_3", "sctp_sf_sendbeat_8_3")],
        emits: true,
        fields: &[
            Field::TpRto,
            Field::TpErrorCount,
            Field::TpParamFlags,
            Field::TpState,
        ],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "heartbeat_ack",
        hooks: &[hook("sctp_sf_backbeat_8_3", "sctp_sf_backbeat_8_3")],
        emits: true,
        fields: &[
            Field::ChunkTransport,
            Field::TpRto,
            Field::TpErrorCount,
            Field::TpState,
        ],
        enums: &[],
        capture: false,
    },
    ProbeDef {
        name: "message_sent",
        hooks: &[hook("sctp_outq_tail", "sctp_outq_tail")],
        emits: true,
        fields: &[Field::ChunkHdr, Field::OutqAsoc],
        enums: &[],
        capture: true,
    },
    ProbeDef {
        name: "message_received",
        hooks: &[hook(
            "sctp_ulpevent_make_rcvmsg",
            "sctp_ulpevent_make_rcvmsg",
        )],
        emits: true,
        fields: &[Field::ChunkHdr, Field::ChunkSkb, Field::SkbData],
        enums: &[],
        capture: true,
    },
    ProbeDef {
        name: "socket_owners",
        hooks: &[
            hook("sctp_init_sock", "sctp_init_sock"),
            hook("sctp_copy_sock", "sctp_copy_sock"),
        ],
        emits: false,
        fields: &[],
        enums: &[],
        capture: false,
    },
];

/// Whether a probe runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeState {
    /// Attached.
    Up,
    /// Not attached.
    Down {
        /// Why (a missing function, member or enum value, a verifier rejection...).
        reason: String,
    },
}

/// A probe and its state.
#[derive(Clone, Debug)]
pub struct ProbeStatus {
    /// The probe's name (see [`PROBES`]).
    pub name: &'static str,
    /// The kernel functions it attaches to.
    pub functions: Vec<String>,
    /// Up or down.
    pub state: ProbeState,
}

impl ProbeStatus {
    /// Whether the probe runs.
    pub fn is_up(&self) -> bool {
        self.state == ProbeState::Up
    }
}

/// Which associations are reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only associations in network namespace `netns` (an inode number, see
    /// [`current_netns`]) whose local port is one of `ports`: the daemon's own.
    Daemon {
        /// Network namespace inode.
        netns: u32,
        /// Local (listening) ports.
        ports: Vec<u16>,
    },
    /// Every SCTP association on the host, in every network namespace.
    All,
}

impl Scope {
    /// The calling thread's network namespace and `ports`.
    ///
    /// # Errors
    /// When `/proc/thread-self/ns/net` cannot be read.
    pub fn daemon(ports: impl IntoIterator<Item = u16>) -> Result<Scope, ProbeError> {
        Ok(Scope::Daemon {
            netns: current_netns()?,
            ports: ports.into_iter().collect(),
        })
    }
}

/// The inode number of the calling thread's network namespace, as the kernel's
/// `net->ns.inum` and [`SctpEvent::netns`] give it.
///
/// # Errors
/// When `/proc/thread-self/ns/net` cannot be read.
pub fn current_netns() -> Result<u32, ProbeError> {
    netns_of("/proc/thread-self/ns/net")
}

/// The inode number of the network namespace `path` refers to (`/proc/<pid>/ns/net`,
/// `/run/netns/<name>`).
///
/// # Errors
/// When `path` cannot be read.
pub fn netns_of(path: &str) -> Result<u32, ProbeError> {
    let ino = std::fs::metadata(path)
        .map_err(|source| ProbeError::Netns {
            path: path.into(),
            source,
        })?
        .ino();
    u32::try_from(ino).map_err(|_| ProbeError::Netns {
        path: path.into(),
        source: std::io::Error::other(format!("inode {ino} does not fit 32 bits")),
    })
}

/// How to load the probes.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Which associations to report.
    pub scope: Scope,
    /// Program name -> kernel function to attach it to instead of its own (see
    /// [`ProbeDef::hooks`]). For kernels where the compiler renamed a function
    /// (`sctp_foo.constprop.0`: kprobes attach to the symbol name); a name the kernel lacks
    /// downs that probe like a missing hook does.
    pub functions: std::collections::BTreeMap<String, String>,
    /// Whether to attach the message-capture probes (see [`ProbeDef::capture`]) and read the
    /// `SIP` ring buffer ([`Record::Message`]).
    pub capture_messages: bool,
}

impl LoadOptions {
    /// `scope`, every program on its own function, no message capture.
    pub fn new(scope: Scope) -> LoadOptions {
        LoadOptions {
            scope,
            functions: std::collections::BTreeMap::new(),
            capture_messages: false,
        }
    }

    /// Captures the first bytes of every message of the observed associations.
    pub fn capture_messages(mut self, on: bool) -> LoadOptions {
        self.capture_messages = on;
        self
    }

    /// Attaches `program` to kernel function `function` instead of its own.
    pub fn function(mut self, program: &str, function: &str) -> LoadOptions {
        self.functions
            .insert(program.to_owned(), function.to_owned());
        self
    }
}

/// What [`KernelProbes::next`] delivers.
#[derive(Debug, Clone)]
pub enum Record {
    /// A kernel event.
    Event(SctpEvent),
    /// A captured message.
    Message(CapturedMessage),
}

/// Runs of one program the kernel skipped (see [`KernelProbes::missed_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissedRuns {
    /// The probe the program belongs to (see [`PROBES`]).
    pub probe: &'static str,
    /// The program's name in the object (see [`Hook`]).
    pub program: &'static str,
    /// Runs skipped so far.
    pub runs: u64,
}

/// Counters the programs keep in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events dropped because the ring buffer was full.
    pub events_lost: u64,
    /// Events dropped because a kernel read failed while identifying the association.
    pub read_errors: u64,
    /// RTO updates lost because the return probe found no entry record.
    pub stash_misses: u64,
    /// Times the per-CPU RTO entry-record stack was full and reset.
    pub stash_overflows: u64,
}

/// Errors while loading or reading the probes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The object could not be loaded (no privilege, no BPF...).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A map is missing from the object (a build problem).
    #[error("map {0} is not in the eBPF object")]
    MissingMap(&'static str),
    /// A map had the wrong type or could not be read or written.
    #[error("map {map}: {source}")]
    Map {
        /// The map name.
        map: &'static str,
        /// What aya said.
        #[source]
        source: aya::maps::MapError,
    },
    /// The kernel's HZ could not be found.
    #[error("finding the kernel's HZ: {0}")]
    Hz(#[from] hz::HzError),
    /// A network namespace could not be identified.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not one probe could be attached: eBPF is of no use here.
    #[error("no probe could be attached; the first reason: {first}{hint}")]
    NoProbeAttached {
        /// Why the first probe is down.
        first: String,
        /// What to do about it, when known (empty otherwise).
        hint: &'static str,
    },
    /// aya-log could not be set up.
    #[error("aya-log: {0}")]
    Log(#[from] aya_log::Error),
    /// Registering a ring buffer with tokio failed.
    #[error("registering the ring buffer with tokio: {0}")]
    Io(#[from] std::io::Error),
    /// A program's statistics could not be read.
    #[error("reading the statistics of program {program}: {source}")]
    ProgramInfo {
        /// The program's name in the object.
        program: &'static str,
        /// What the kernel (or aya) said.
        #[source]
        source: std::io::Error,
    },
}

/// The loaded programs. Dropping it detaches and unloads them.
pub struct KernelProbes {
    links: Vec<ProbeLink>,
    ebpf: Ebpf,
    events: AsyncFd<RingBuf<MapData>>,
    captures: Option<AsyncFd<RingBuf<MapData>>>,
    ports: HashMap<MapData, u16, u8>,
    status: Vec<ProbeStatus>,
    hz: Hz,
    scope: Scope,
    malformed: u64,
    logs: tokio::task::JoinHandle<()>,
    counts_misses: bool,
}

impl KernelProbes {
    /// Measures HZ, resolves struct offsets from BTF, loads the programs, attaches every probe
    /// the kernel supports, and starts forwarding aya-log lines to the `log` crate. Probes the
    /// kernel cannot support stay down (see [`KernelProbes::status`]), with a `log::warn!`.
    ///
    /// Must be called within a tokio runtime (the log forwarder is a task). Blocks: about
    /// 200 ms to measure HZ (see [`hz`]), then the kernel verifies and attaches 17 programs
    /// (well under a second on hardware, seconds under qemu's TCG); from async code, call it in
    /// `tokio::task::spawn_blocking`. Load it after the sctp module is loaded (an SCTP socket
    /// exists): its BTF is read now. To attach outside the runtime (on a thread that holds
    /// privileges the rest of the process should not), use [`KernelProbes::attach`] and
    /// [`AttachedProbes::start`].
    ///
    /// # Errors
    /// When HZ cannot be measured, the object cannot be loaded at all (no privilege), or a
    /// map is missing. A missing hook, member or BTF is not an error: it downs probes.
    pub fn load(scope: Scope) -> Result<KernelProbes, ProbeError> {
        KernelProbes::load_with(LoadOptions::new(scope))
    }

    /// [`KernelProbes::load`] with options (see [`LoadOptions`]).
    ///
    /// # Errors
    /// As [`KernelProbes::load`].
    pub fn load_with(options: LoadOptions) -> Result<KernelProbes, ProbeError> {
        KernelProbes::attach(options)?.start()
    }

    /// The privileged half of [`KernelProbes::load_with`]: measures HZ, reads BTF, loads and
    /// attaches, without tokio. Needs CAP_BPF and CAP_PERFMON (or root); what it returns needs
    /// neither: reading the ring buffers and the maps through their open descriptors works
    /// once the capabilities are dropped.
    ///
    /// # Errors
    /// As [`KernelProbes::load`].
    pub fn attach(options: LoadOptions) -> Result<AttachedProbes, ProbeError> {
        let LoadOptions {
            scope,
            functions,
            capture_messages,
        } = options;
        let t0 = std::time::Instant::now();
        let hz = hz::measure()?;
        let t_hz = t0.elapsed();
        let (btf, resolved) = match btf::from_sys_fs(Some("sctp")) {
            Ok(btf) => {
                let r = layout::resolve(&btf);
                if let Some(e) = &r.temp_flag {
                    log::warn!(
                        "{}: {e}; events of temporary associations (id 0, built to answer an \
                         INIT) are not filtered out",
                        layout::TEMP_FLAG
                    );
                }
                (Ok(btf), r)
            }
            Err(e) => (Err(format!("kernel BTF: {e}")), Resolved::default()),
        };
        let config = match &scope {
            Scope::Daemon { netns, .. } => Config {
                netns: *netns,
                observe_all: 0,
            },
            Scope::All => Config {
                netns: 0,
                observe_all: 1,
            },
        };
        // aya-log-ebpf's levels: Error 1 .. Trace 5; 0 turns logging off.
        let log_level: u8 = match log::max_level() {
            log::LevelFilter::Off => 0,
            log::LevelFilter::Error => 1,
            log::LevelFilter::Warn => 2,
            log::LevelFilter::Info => 3,
            log::LevelFilter::Debug => 4,
            log::LevelFilter::Trace => 5,
        };
        let t_btf = t0.elapsed();
        let mut ebpf = EbpfLoader::new()
            .override_global("OFFSETS", &resolved.offsets, true)
            .override_global("CONFIG", &config, true)
            .override_global(aya_log::LEVEL, &log_level, false)
            .load(PROGRAMS)?;
        let t_object = t0.elapsed();
        let logger = EbpfLogger::init(&mut ebpf)?;
        // The ports go in before any program is attached, so that no event of theirs is lost.
        let ports_map = ebpf
            .take_map("PORTS")
            .ok_or(ProbeError::MissingMap("PORTS"))?;
        let mut ports =
            HashMap::<_, u16, u8>::try_from(ports_map).map_err(|source| ProbeError::Map {
                map: "PORTS",
                source,
            })?;
        if let Scope::Daemon { ports: list, .. } = &scope {
            for &p in list {
                ports.insert(p, 1, 0).map_err(|source| ProbeError::Map {
                    map: "PORTS",
                    source,
                })?;
            }
        }

        // Where the kernel counts skipped kprobe hits (6.7+), the links are taken out of aya's
        // programs, with a second fd each to read their statistics (see `prog_stats`).
        let counts_misses = prog_stats::kernel_release()
            .map(|r| prog_stats::counts_kprobe_misses(&r))
            .unwrap_or(false);
        let mut links: Vec<ProbeLink> = Vec::new();
        let mut status = Vec::with_capacity(PROBES.len());
        for def in PROBES.iter().filter(|d| capture_messages || !d.capture) {
            let state = match &btf {
                Err(reason) => ProbeState::Down {
                    reason: reason.clone(),
                },
                Ok(btf) => match probe_problem(btf, &resolved, def) {
                    Some(reason) => ProbeState::Down { reason },
                    None => match attach(&mut ebpf, def, &functions, counts_misses) {
                        Ok(mut taken) => {
                            links.append(&mut taken);
                            ProbeState::Up
                        }
                        Err(reason) => ProbeState::Down { reason },
                    },
                },
            };
            if let ProbeState::Down { reason } = &state {
                log::warn!("probe {} is down: {reason}", def.name);
            }
            status.push(ProbeStatus {
                name: def.name,
                functions: def
                    .hooks
                    .iter()
                    .map(|h| function_of(h, &functions).to_owned())
                    .collect(),
                state,
            });
        }

        log::debug!(
            "load timing: HZ {t_hz:?}, BTF {:?}, object {:?}, attach {:?}",
            t_btf - t_hz,
            t_object - t_btf,
            t0.elapsed() - t_object
        );
        if !status.iter().any(ProbeStatus::is_up)
            && let Some(ProbeState::Down { reason }) = status.first().map(|s| &s.state)
        {
            return Err(ProbeError::NoProbeAttached {
                first: reason.clone(),
                hint: hint_for(reason),
            });
        }
        let map = ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: "EVENTS",
            source,
        })?;
        let captures = if capture_messages {
            let map = ebpf.take_map("SIP").ok_or(ProbeError::MissingMap("SIP"))?;
            Some(RingBuf::try_from(map).map_err(|source| ProbeError::Map { map: "SIP", source })?)
        } else {
            None
        };
        log::debug!(
            "sctp probes attached: HZ {hz}, scope {scope:?}, {} of {} probes up",
            status.iter().filter(|s| s.is_up()).count(),
            status.len()
        );
        // Missed hits are only counted when every attached program's link could be read.
        let unreadable = links.iter().find(|l| l.stats.is_err());
        if let Some(ProbeLink {
            program,
            stats: Err(e),
            ..
        }) = unreadable
        {
            log::warn!(
                "cannot read the statistics of the link of {program} ({e}); skipped probe \
                 runs are not counted"
            );
        }
        let counts_misses = counts_misses && unreadable.is_none();
        Ok(AttachedProbes {
            ebpf,
            ring,
            captures,
            logger,
            ports,
            status,
            hz,
            scope,
            links,
            counts_misses,
        })
    }
}

/// Probes loaded and attached but not yet read: what [`KernelProbes::attach`] returns. No
/// tokio inside, so it can be made on a thread of its own and handed to the runtime, where
/// [`AttachedProbes::start`] begins reading. Dropping it detaches and unloads the programs.
pub struct AttachedProbes {
    links: Vec<ProbeLink>,
    counts_misses: bool,
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    captures: Option<RingBuf<MapData>>,
    logger: EbpfLogger<&'static dyn log::Log>,
    ports: HashMap<MapData, u16, u8>,
    status: Vec<ProbeStatus>,
    hz: Hz,
    scope: Scope,
}

impl AttachedProbes {
    /// Every probe and whether it runs.
    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    /// Registers the ring buffers with tokio and starts forwarding aya-log lines: from here
    /// on [`KernelProbes::next_event`] delivers. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`ProbeError::Io`] when a ring buffer cannot be registered with tokio.
    pub fn start(self) -> Result<KernelProbes, ProbeError> {
        let AttachedProbes {
            links,
            counts_misses,
            ebpf,
            ring,
            captures,
            logger,
            ports,
            status,
            hz,
            scope,
        } = self;
        // SAFETY: the RingBuf owns its map's fd; it stays open and `as_raw_fd` returns that same
        // fd until the AsyncFd (which owns the RingBuf) is dropped.
        let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let captures = match captures {
            // SAFETY: as for `events`.
            Some(ring) => Some(
                unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                    .map_err(std::io::Error::from)?,
            ),
            None => None,
        };
        let logs = spawn_log_forwarder(logger)?;
        Ok(KernelProbes {
            links,
            ebpf,
            events,
            captures,
            ports,
            status,
            hz,
            scope,
            malformed: 0,
            logs,
            counts_misses,
        })
    }
}

impl KernelProbes {
    /// Every probe and whether it runs.
    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    /// The probe called `name` (see [`PROBES`]).
    pub fn probe(&self, name: &str) -> Option<&ProbeStatus> {
        self.status.iter().find(|s| s.name == name)
    }

    /// The kernel's tick rate, as measured at load.
    pub fn hz(&self) -> Hz {
        self.hz
    }

    /// The scope given at load (ports as given then; see [`KernelProbes::add_port`]).
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Starts reporting associations whose local port is `port` (with [`Scope::Daemon`]).
    ///
    /// # Errors
    /// When the kernel map refuses the entry (full: 1024 ports).
    pub fn add_port(&mut self, port: u16) -> Result<(), ProbeError> {
        self.ports
            .insert(port, 1, 0)
            .map_err(|source| ProbeError::Map {
                map: "PORTS",
                source,
            })
    }

    /// Stops reporting associations whose local port is `port`.
    ///
    /// # Errors
    /// When the port was not registered.
    pub fn remove_port(&mut self, port: u16) -> Result<(), ProbeError> {
        self.ports.remove(&port).map_err(|source| ProbeError::Map {
            map: "PORTS",
            source,
        })
    }

    /// Waits for the next kernel event. Malformed records are skipped and counted
    /// ([`KernelProbes::malformed_records`]).
    ///
    /// # Cancel safety
    /// Cancel safe: an event is consumed from the ring buffer only when it is returned.
    ///
    /// # Errors
    /// Only when polling the ring buffer's file descriptor fails.
    pub async fn next_event(&mut self) -> Result<SctpEvent, ProbeError> {
        loop {
            if let Some(e) = self.try_next_event() {
                return Ok(e);
            }
            // The programs wake the reader only when a ring fills: look every DRAIN interval.
            tokio::select! {
                g = self.events.readable_mut() => g?.clear_ready(),
                () = tokio::time::sleep(DRAIN) => {}
            }
        }
    }

    /// The next kernel event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<SctpEvent> {
        let hz = self.hz;
        let ring = self.events.get_mut();
        while let Some(item) = ring.next() {
            match SctpEvent::decode(&item, hz) {
                Ok(e) => return Some(e),
                Err(e) => {
                    self.malformed += 1;
                    log::debug!("skipping a malformed kernel event record: {e}");
                }
            }
        }
        None
    }

    /// Waits for the next kernel event or, with [`LoadOptions::capture_messages`], captured
    /// message, whichever is ready first. Malformed records are skipped and counted.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`KernelProbes::next_event`].
    ///
    /// # Errors
    /// Only when polling a ring buffer's file descriptor fails.
    pub async fn next(&mut self) -> Result<Record, ProbeError> {
        loop {
            if let Some(e) = self.try_next_event() {
                return Ok(Record::Event(e));
            }
            if let Some(m) = self.try_next_message() {
                return Ok(Record::Message(m));
            }
            // The programs wake the reader only when a ring fills: look every DRAIN interval.
            let Some(captures) = self.captures.as_mut() else {
                tokio::select! {
                    g = self.events.readable_mut() => g?.clear_ready(),
                    () = tokio::time::sleep(DRAIN) => {}
                }
                continue;
            };
            tokio::select! {
                g = self.events.readable_mut() => g?.clear_ready(),
                g = captures.readable_mut() => g?.clear_ready(),
                () = tokio::time::sleep(DRAIN) => {}
            }
        }
    }

    /// The next captured message if one is waiting.
    pub fn try_next_message(&mut self) -> Option<CapturedMessage> {
        let ring = self.captures.as_mut()?.get_mut();
        while let Some(item) = ring.next() {
            match CapturedMessage::decode(&item) {
                Ok(m) => return Some(m),
                Err(e) => {
                    self.malformed += 1;
                    log::debug!("skipping a malformed message capture record: {e}");
                }
            }
        }
        None
    }

    /// Messages the kernel side could not capture because the `SIP` ring buffer was full.
    ///
    /// # Errors
    /// When the counter map cannot be read.
    pub fn captures_lost(&self) -> Result<u64, ProbeError> {
        self.stat(STAT_CAPTURES_LOST)
    }

    /// Ring-buffer records that did not decode (a build mismatch or a kernel value out of
    /// range; should stay 0).
    pub fn malformed_records(&self) -> u64 {
        self.malformed
    }

    /// Events the kernel side could not deliver because the ring buffer was full.
    ///
    /// # Errors
    /// When the counter map cannot be read.
    pub fn events_lost(&self) -> Result<u64, ProbeError> {
        self.stat(STAT_EVENTS_LOST)
    }

    /// Whether this kernel counts the runs it skips (see [`KernelProbes::missed_runs`]).
    pub fn counts_missed_runs(&self) -> bool {
        self.counts_misses
    }

    /// Runs of the programs that the kernel skipped because another BPF program was already
    /// running on that CPU (their events are lost; see [`prog_stats`]), per program of each
    /// probe that is up. `None` when this kernel does not count such runs for kprobes (before
    /// 6.7): there they are lost without a trace.
    ///
    /// # Errors
    /// [`ProbeError::ProgramInfo`] when a program's statistics cannot be read.
    pub fn missed_runs(&self) -> Result<Option<Vec<MissedRuns>>, ProbeError> {
        if !self.counts_misses {
            return Ok(None);
        }
        let mut out = Vec::new();
        for s in self.status.iter().filter(|s| s.is_up()) {
            let Some(def) = PROBES.iter().find(|d| d.name == s.name) else {
                continue;
            };
            for h in def.hooks {
                let Some(p) = self.ebpf.program(h.program) else {
                    continue;
                };
                let info = |source| ProbeError::ProgramInfo {
                    program: h.program,
                    source,
                };
                let fd = p
                    .fd()
                    .map_err(|e| info(std::io::Error::other(e.to_string())))?;
                let mut runs = prog_stats::recursion_misses(fd.as_fd()).map_err(info)?;
                if let Some(Ok(stats)) = self
                    .links
                    .iter()
                    .find(|l| l.program == h.program)
                    .map(|l| l.stats.as_ref())
                {
                    runs += prog_stats::kprobe_link_missed(stats.as_fd())
                        .map_err(info)?
                        .unwrap_or(0);
                }
                out.push(MissedRuns {
                    probe: def.name,
                    program: h.program,
                    runs,
                });
            }
        }
        Ok(Some(out))
    }

    /// All kernel-side counters.
    ///
    /// # Errors
    /// When the counter map cannot be read.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        Ok(KernelCounters {
            events_lost: self.stat(STAT_EVENTS_LOST)?,
            read_errors: self.stat(STAT_READ_ERRORS)?,
            stash_misses: self.stat(STAT_STASH_MISSES)?,
            stash_overflows: self.stat(STAT_STASH_OVERFLOWS)?,
        })
    }

    fn stat(&self, index: u32) -> Result<u64, ProbeError> {
        let map = self
            .ebpf
            .map("STATS")
            .ok_or(ProbeError::MissingMap("STATS"))?;
        let stats = PerCpuArray::<_, u64>::try_from(map).map_err(|source| ProbeError::Map {
            map: "STATS",
            source,
        })?;
        let per_cpu = stats.get(&index, 0).map_err(|source| ProbeError::Map {
            map: "STATS",
            source,
        })?;
        Ok(per_cpu.iter().sum())
    }
}

impl Drop for KernelProbes {
    fn drop(&mut self) {
        self.logs.abort();
    }
}

/// The kernel function `hook`'s program attaches to: its own, or the one `functions` names.
fn function_of<'a>(
    hook: &'a Hook,
    functions: &'a std::collections::BTreeMap<String, String>,
) -> &'a str {
    functions
        .get(hook.program)
        .map_or(hook.function, String::as_str)
}

/// Why `def` cannot run on this kernel, from BTF alone.
fn probe_problem(btf: &Btf, resolved: &Resolved, def: &ProbeDef) -> Option<String> {
    let identity: &[Field] = if def.emits { layout::IDENTITY } else { &[] };
    resolved
        .check(btf, identity, &[])
        .or_else(|| resolved.check(btf, def.fields, def.enums))
}

/// A program's attachment, taken out of aya's program (dropping it detaches), with a second
/// fd to read its statistics (see [`prog_stats`]).
struct ProbeLink {
    program: &'static str,
    _link: FdLink,
    stats: std::io::Result<std::os::fd::OwnedFd>,
}

/// Loads and attaches every program of `def`; on any failure unloads the ones already done.
/// With `take_links`, returns the attachments (see [`ProbeLink`]).
fn attach(
    ebpf: &mut Ebpf,
    def: &ProbeDef,
    functions: &std::collections::BTreeMap<String, String>,
    take_links: bool,
) -> Result<Vec<ProbeLink>, String> {
    let mut links = Vec::new();
    let mut done: Vec<&'static str> = Vec::new();
    let mut result = Ok(());
    for h in def.hooks {
        let r = (|| -> Result<(), String> {
            let program: &mut KProbe = ebpf
                .program_mut(h.program)
                .ok_or_else(|| format!("program {} is not in the eBPF object", h.program))?
                .try_into()
                .map_err(|e| format!("program {}: {e}", h.program))?;
            program
                .load()
                .map_err(|e| format!("loading {}: {}", h.program, verbose(&e)))?;
            done.push(h.program);
            let function = function_of(h, functions);
            let id = program
                .attach(function, 0)
                .map_err(|e| format!("attaching to {function}: {}", verbose(&e)))?;
            if take_links {
                let link = program
                    .take_link(id)
                    .map_err(|e| format!("taking the link of {}: {e}", h.program))?;
                let link = FdLink::try_from(link)
                    .map_err(|e| format!("the link of {} is not a BPF link: {e}", h.program))?;
                let stats = link
                    .info()
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|i| prog_stats::link_fd_by_id(i.id()));
                links.push(ProbeLink {
                    program: h.program,
                    _link: link,
                    stats,
                });
            }
            Ok(())
        })();
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    if result.is_err() {
        // The links taken so far detach when dropped, before their programs are unloaded.
        drop(links);
        for name in done {
            if let Some(p) = ebpf.program_mut(name) {
                let unloaded = <&mut KProbe>::try_from(p).map(|k| k.unload());
                if let Ok(Err(e)) = unloaded {
                    log::warn!("unloading {name}: {e}");
                }
            }
        }
        return result.map(|()| Vec::new());
    }
    Ok(links)
}

/// An error with its sources (aya puts the OS error and the verifier log there).
fn verbose(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Drives aya-log's ring buffer: each readable wake-up flushes the records into `log`.
/// Advice for a reason every probe failed with, when there is one.
fn hint_for(reason: &str) -> &'static str {
    if reason.contains("perf_event_open") && reason.contains("Permission denied") {
        // Debian's kernels add perf_event_paranoid = 3 (their default), under which
        // perf_event_open needs CAP_SYS_ADMIN; at 2 or below CAP_PERFMON is enough.
        " (kprobes need CAP_PERFMON with kernel.perf_event_paranoid <= 2, or CAP_SYS_ADMIN: \
         Debian's default of 3 allows perf_event_open only with CAP_SYS_ADMIN)"
    } else {
        ""
    }
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use sipsctp_ebpf_events::testing::kernel_like;

    fn def(name: &str) -> &'static ProbeDef {
        PROBES.iter().find(|d| d.name == name).unwrap()
    }

    #[test]
    fn probe_table_is_consistent() {
        let names: BTreeSet<_> = PROBES.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), PROBES.len(), "duplicate probe names");
        let programs: Vec<_> = PROBES
            .iter()
            .flat_map(|d| d.hooks.iter().map(|h| h.program))
            .collect();
        let unique: BTreeSet<_> = programs.iter().collect();
        assert_eq!(unique.len(), programs.len(), "a program in two probes");
    }

    #[test]
    fn a_probe_is_down_for_a_missing_member_or_enum_and_only_that_probe() {
        let (base, split) = kernel_like();
        let btf = Btf::parse(&base).unwrap().parse_split(&split).unwrap();
        let mut resolved = layout::resolve(&btf);
        // The hand-made kernel lacks most members: every emitting probe is down for one.
        let reason = probe_problem(&btf, &resolved, def("retransmit")).unwrap();
        assert!(reason.contains("sctp_"), "{reason}");
        // The socket-owner probe reads no member.
        assert_eq!(probe_problem(&btf, &resolved, def("socket_owners")), None);
        // With every member present, what remains are the enums the kernel lacks or changed.
        resolved.missing.clear();
        assert_eq!(probe_problem(&btf, &resolved, def("assoc_change")), None);
        let reason = probe_problem(&btf, &resolved, def("path_change")).unwrap();
        assert!(reason.contains("sctp_transport_cmd"), "{reason}");
        let mut only_cwnd = layout::resolve(&btf);
        only_cwnd.missing.retain(|f, _| *f == Field::TpCwnd);
        let reason = probe_problem(&btf, &only_cwnd, def("t3_rtx_expired")).unwrap();
        assert!(reason.contains("sctp_transport.cwnd"), "{reason}");
        assert_eq!(probe_problem(&btf, &only_cwnd, def("primary_change")), None);
    }

    #[test]
    fn function_overrides_apply_per_program() {
        let o = LoadOptions::new(Scope::All).function("sctp_retransmit", "sctp_retransmit.isra.0");
        let h = &def("retransmit").hooks[0];
        assert_eq!(function_of(h, &o.functions), "sctp_retransmit.isra.0");
        let other = &def("retransmit").hooks[1];
        assert_eq!(
            function_of(other, &o.functions),
            "sctp_transport_lower_cwnd"
        );
    }
}
