//! Kamailio's parameters on a socket: reading the kernel's defaults from a fresh socket,
//! applying every kernel-backed value at start, applying one runtime change with a scope, and
//! reading the values back (`sctp.options <addr>` in Kamailio).
//!
//! A thin layer over [`SctpSocket`]'s option calls; the rules live in [`crate::params`].

use crate::{
    AssocId, DelayedSack, InitMsg, PeerAddrFlags, PeerAddrParams, Result, RtoInfo, SctpSocket,
    params::{OsDefaults, Param, Scope, SctpParams},
};

/// Reads the kernel's defaults from `sock`, which must be freshly created (nothing set yet).
/// Linux reports the buffer sizes doubled; they are halved as Kamailio does.
///
/// # Errors
/// When an option cannot be read.
pub fn read_os_defaults(sock: &SctpSocket) -> Result<OsDefaults> {
    let f = AssocId::FUTURE;
    let rto = sock.rto_info(f)?;
    let assoc = sock.assoc_params(f)?;
    let init = sock.init_msg()?;
    let paddr = sock.peer_addr_params(f, None)?;
    let sack = sock.delayed_sack(f)?;
    Ok(OsDefaults {
        rcvbuf: i64::try_from(sock.recv_buffer_size()? / 2).unwrap_or(i64::MAX),
        sndbuf: i64::try_from(sock.send_buffer_size()? / 2).unwrap_or(i64::MAX),
        rto_initial: rto.initial_ms.into(),
        rto_max: rto.max_ms.into(),
        rto_min: rto.min_ms.into(),
        asocmaxrxt: assoc.max_retrans.into(),
        init_max_attempts: init.max_attempts.into(),
        init_max_timeo: init.max_init_timeo_ms.into(),
        hbinterval: hbinterval_of(&paddr),
        pathmaxrxt: paddr.path_max_rxt.into(),
        sack_delay: sack.delay_ms.into(),
        sack_freq: sack.freq.into(),
        max_burst: sock.max_burst(f)?.into(),
    })
}

fn hbinterval_of(p: &PeerAddrParams) -> i64 {
    if p.flags.contains(PeerAddrFlags::HB_DISABLE) {
        -1
    } else {
        p.hb_interval_ms.into()
    }
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn u16_of(v: i64) -> u16 {
    u16::try_from(v.max(0)).unwrap_or(u16::MAX)
}

/// Whether `p` is applied with a socket option (the others live in the transport).
pub fn is_kernel_backed(p: Param) -> bool {
    !matches!(
        p,
        Param::SendTtl
            | Param::SendRetries
            | Param::AssocTracking
            | Param::AssocReuse
            | Param::MaxAssocs
    )
}

/// Applies every kernel-backed value of `params` to `sock` as endpoint defaults (assoc id 0),
/// as Kamailio does at start.
///
/// # Errors
/// The first option the kernel refuses, naming it.
pub fn apply_all(sock: &SctpSocket, params: &SctpParams) -> Result<()> {
    sock.set_recv_buffer_size(usize::try_from(params.get(Param::SocketRcvbuf)).unwrap_or(0))?;
    sock.set_send_buffer_size(usize::try_from(params.get(Param::SocketSndbuf)).unwrap_or(0))?;
    for p in [
        Param::Autoclose,
        Param::SrtoInitial,
        Param::Asocmaxrxt,
        Param::InitMaxAttempts,
        Param::Hbinterval,
        Param::SackDelay,
        Param::MaxBurst,
    ] {
        apply(sock, params, p, Scope::Future)?;
    }
    Ok(())
}

/// Applies the value of `param` in `params` (with the values it travels with in one socket
/// option) to `sock`: endpoint defaults and/or each live association, per `scope`.
///
/// The kernel takes `SCTP_CURRENT_ASSOC`/`SCTP_ALL_ASSOC` only for some options; this
/// function sets the endpoint default and then each association the kernel lists, which works
/// for all of them.
///
/// # Errors
/// The first option the kernel refuses. Read-only and internal parameters do nothing.
pub fn apply(sock: &SctpSocket, params: &SctpParams, param: Param, scope: Scope) -> Result<()> {
    if !is_kernel_backed(param) {
        return Ok(());
    }
    let mut targets = Vec::new();
    if scope.future() {
        targets.push(AssocId::FUTURE);
    }
    if scope.current() {
        targets.extend(sock.assoc_ids()?);
    }
    let v = |p: Param| params.get(p);
    match param {
        // Buffers are socket-wide and fixed after start (read-only at run time).
        Param::SocketRcvbuf => sock.set_recv_buffer_size(usize::try_from(v(param)).unwrap_or(0)),
        Param::SocketSndbuf => sock.set_send_buffer_size(usize::try_from(v(param)).unwrap_or(0)),
        // Socket-wide: idle time of every association of the socket.
        Param::Autoclose => sock.set_autoclose(u32_of(v(param))),
        // Socket-wide: used by the next INIT sent.
        Param::InitMaxAttempts | Param::InitMaxTimeo => sock.set_init_msg(&InitMsg {
            num_ostreams: 0,
            max_instreams: 0,
            max_attempts: u16_of(v(Param::InitMaxAttempts)),
            max_init_timeo_ms: u16_of(v(Param::InitMaxTimeo)),
        }),
        Param::SrtoInitial | Param::SrtoMax | Param::SrtoMin => {
            let rto = RtoInfo {
                initial_ms: u32_of(v(Param::SrtoInitial)),
                max_ms: u32_of(v(Param::SrtoMax)),
                min_ms: u32_of(v(Param::SrtoMin)),
            };
            targets.iter().try_for_each(|&a| sock.set_rto_info(a, &rto))
        }
        Param::Asocmaxrxt => targets.iter().try_for_each(|&a| {
            let mut ap = sock.assoc_params(a)?;
            ap.max_retrans = u16_of(v(param));
            ap.cookie_life_ms = 0;
            sock.set_assoc_params(a, &ap)
        }),
        Param::Hbinterval | Param::Pathmaxrxt => {
            let hb = v(Param::Hbinterval);
            // PMTUD stays on (Kamailio's runtime setter dropped this flag: fixed).
            let mut flags = PeerAddrFlags::PMTUD_ENABLE;
            if hb < 0 {
                flags = flags | PeerAddrFlags::HB_DISABLE;
            } else if hb > 0 {
                flags = flags | PeerAddrFlags::HB_ENABLE;
            }
            let pp = PeerAddrParams {
                addr: None,
                hb_interval_ms: u32_of(hb),
                path_max_rxt: u16_of(v(Param::Pathmaxrxt)),
                path_mtu: 0,
                sack_delay_ms: 0,
                flags,
            };
            targets
                .iter()
                .try_for_each(|&a| sock.set_peer_addr_params(a, &pp))
        }
        Param::SackDelay | Param::SackFreq => {
            let ds = DelayedSack {
                delay_ms: u32_of(v(Param::SackDelay)),
                freq: u32_of(v(Param::SackFreq)),
            };
            targets
                .iter()
                .try_for_each(|&a| sock.set_delayed_sack(a, &ds))
        }
        Param::MaxBurst => targets
            .iter()
            .try_for_each(|&a| sock.set_max_burst(a, u32_of(v(param)))),
        Param::SendTtl
        | Param::SendRetries
        | Param::AssocTracking
        | Param::AssocReuse
        | Param::MaxAssocs => Ok(()),
    }
}

/// The kernel's values of the kernel-backed parameters on `sock`: the endpoint defaults
/// (`assoc` = [`AssocId::FUTURE`]) or one association's. Buffer sizes are halved back to what
/// was asked for (the kernel reports them doubled); autoclose and INIT settings are
/// socket-wide.
///
/// # Errors
/// When an option cannot be read.
pub fn read_back(sock: &SctpSocket, assoc: AssocId) -> Result<Vec<(Param, i64)>> {
    let rto = sock.rto_info(assoc)?;
    let ap = sock.assoc_params(assoc)?;
    let init = sock.init_msg()?;
    let pp = sock.peer_addr_params(assoc, None)?;
    let ds = sock.delayed_sack(assoc)?;
    Ok(vec![
        (
            Param::SocketRcvbuf,
            i64::try_from(sock.recv_buffer_size()? / 2).unwrap_or(i64::MAX),
        ),
        (
            Param::SocketSndbuf,
            i64::try_from(sock.send_buffer_size()? / 2).unwrap_or(i64::MAX),
        ),
        (Param::Autoclose, sock.autoclose()?.into()),
        (Param::SrtoInitial, rto.initial_ms.into()),
        (Param::SrtoMax, rto.max_ms.into()),
        (Param::SrtoMin, rto.min_ms.into()),
        (Param::Asocmaxrxt, ap.max_retrans.into()),
        (Param::InitMaxAttempts, init.max_attempts.into()),
        (Param::InitMaxTimeo, init.max_init_timeo_ms.into()),
        (Param::Hbinterval, hbinterval_of(&pp)),
        (Param::Pathmaxrxt, pp.path_max_rxt.into()),
        (Param::SackDelay, ds.delay_ms.into()),
        (Param::SackFreq, ds.freq.into()),
        (Param::MaxBurst, sock.max_burst(assoc)?.into()),
    ])
}
