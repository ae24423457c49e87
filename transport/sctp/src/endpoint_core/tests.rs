//! The endpoint core's decisions, branch by branch, without a socket: each test feeds
//! notifications, messages and send results and checks the actions and the state after.

use super::*;
use crate::notification::{PeerAddrState, SendFailedStatus};
use crate::sendq::QueueLimits;

const S: SocketId = SocketId(0);
const A1: AssocId = AssocId(1);
const A2: AssocId = AssocId(2);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn p1() -> SocketAddr {
    addr("10.0.0.1:5060")
}

fn p2() -> SocketAddr {
    addr("10.0.0.2:5060")
}

fn params(set: &[(Param, i64)]) -> SctpParams {
    let mut p = SctpParams::default();
    for &(k, v) in set {
        p.set(k, v).unwrap();
    }
    p.validate().unwrap();
    p
}

const MAX: usize = 65_536;

/// A core with one listener and `messages` per destination queue (other bounds wide).
fn core_with(set: &[(Param, i64)], messages: usize, max_message_size: usize) -> EndpointCore {
    EndpointCore::new(
        params(set),
        &CoreConfig {
            listeners: 1,
            queues: QueueLimits::messages(messages),
            max_setups: 256,
            max_message_size,
        },
    )
}

fn core(set: &[(Param, i64)]) -> EndpointCore {
    core_with(set, 4, MAX)
}

/// [`SendPlan`] seen from a test: transmit, or queued; refusals as errors.
#[derive(Debug)]
enum Planned {
    Transmit(Attempt),
    Queued(SendOutcome),
}

fn plan(
    c: &mut EndpointCore,
    dest: SocketAddr,
    data: &[u8],
    budget: u32,
) -> Result<Planned, SendError> {
    match c.plan_send(S, dest, data, budget) {
        SendPlan::Transmit(a) => Ok(Planned::Transmit(a)),
        SendPlan::Done(step) => step.result.map(Planned::Queued),
    }
}

fn now() -> Instant {
    Instant::now()
}

fn assoc_change(state: AssocChangeState, assoc: AssocId, error: u16) -> Notification {
    Notification::AssocChange {
        state,
        error,
        outbound_streams: 10,
        inbound_streams: 5,
        assoc_id: assoc,
    }
}

/// COMM_UP of `assoc` with `peer`, checked to be accepted.
fn up(c: &mut EndpointCore, assoc: AssocId, peer: SocketAddr) {
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, assoc, 0),
        Some(peer),
        &[peer],
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Emit(AssocEvent::Up { .. }))),
        "{actions:?}"
    );
}

/// DATA chunk flags: B, E, and U as the kernel sets them on an unordered message.
const WHOLE: u16 = 0x07;
const FIRST: u16 = 0x06;
const MIDDLE: u16 = 0x04;
const LAST: u16 = 0x05;

/// A message's context as the endpoint sets it (tag 7).
fn ctx(budget: u32) -> u32 {
    Context { tag: 7, budget }.to_raw()
}

/// The SEND_FAILED event of an unfragmented message.
fn send_failed(
    assoc: AssocId,
    error: u32,
    status: SendFailedStatus,
    context: u32,
    payload: &[u8],
    payload_len: usize,
) -> Notification {
    fragment(assoc, error, status, WHOLE, context, payload, payload_len)
}

/// The SEND_FAILED event of one DATA chunk with `flags`.
fn fragment(
    assoc: AssocId,
    error: u32,
    status: SendFailedStatus,
    flags: u16,
    context: u32,
    payload: &[u8],
    payload_len: usize,
) -> Notification {
    Notification::SendFailed {
        status,
        error,
        assoc_id: assoc,
        stream: 0,
        send_flags: flags,
        ppid: 0,
        context,
        payload: payload.to_vec(),
        payload_len,
    }
}

fn counts(actions: &[Action]) -> Vec<Counter> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Count(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<&AssocEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn resends(actions: &[Action]) -> Vec<&Resend> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Resend(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Sends `data` to `dest` and reports `result` for the attempt; returns the step.
fn send_with(c: &mut EndpointCore, dest: SocketAddr, data: &[u8], result: Transmit) -> SendStep {
    let budget = c.send_budget();
    match plan(c, dest, data, budget).unwrap() {
        Planned::Transmit(attempt) => c.handle_transmit(now(), S, &attempt, data, result),
        Planned::Queued(o) => panic!("expected a transmit, got {o:?}"),
    }
}

// --- associations -------------------------------------------------------------------------

#[test]
fn comm_up_is_counted_tracked_and_reported_with_every_peer_address() {
    let mut c = core(&[]);
    let extra = addr("10.0.1.1:5060");
    // No address with the notification: the first the socket lists is the peer.
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A1, 0),
        None,
        &[p1(), extra],
    );
    assert_eq!(
        actions,
        vec![
            Action::Count(Counter::Established),
            Action::Emit(AssocEvent::Up {
                socket: S,
                assoc: A1,
                peer: Some(p1()),
                outbound_streams: 10,
                inbound_streams: 5,
            }),
        ]
    );
    assert_eq!((c.opened(), c.tracked()), (1, 1));
    // Both addresses reach the association (reuse is on by default).
    for a in [p1(), extra] {
        match plan(&mut c, a, b"x", 0).unwrap() {
            Planned::Transmit(t) => assert_eq!(t.route, Route::Assoc(A1), "{a}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn comm_up_over_the_limit_is_aborted_and_its_messages_dropped() {
    let mut c = core(&[(Param::MaxAssocs, 1)]);
    up(&mut c, A1, p1());
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A2, 0),
        Some(p2()),
        &[p2()],
    );
    assert_eq!(
        actions,
        vec![
            Action::Count(Counter::Established),
            Action::Count(Counter::LocalReject),
            Action::Abort {
                socket: S,
                assoc: A2,
                reason: LIMIT_ABORT_REASON,
            },
            Action::Emit(AssocEvent::LimitReject {
                socket: S,
                assoc: A2,
                peer: Some(p2()),
            }),
        ]
    );
    assert_eq!(c.opened(), 1);
    // Data that was already on its way from the rejected peer is dropped and counted.
    assert_eq!(
        c.handle_message(now(), S, A2, p2(), 7),
        Delivery {
            deliver: false,
            actions: vec![
                Action::Count(Counter::Dropped(DropCause::Rejected)),
                Action::Emit(AssocEvent::Dropped {
                    socket: S,
                    assoc: A2,
                    peer: Some(p2()),
                    cause: DropCause::Rejected,
                    size: 7,
                }),
            ]
        }
    );
    assert_eq!(
        c.handle_message(now(), S, A1, p1(), 7),
        Delivery {
            deliver: true,
            actions: vec![]
        }
    );
    // Its COMM_LOST (after our ABORT) does not uncount the accepted one.
    c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommLost, A2, 0),
        Some(p2()),
        &[],
    );
    assert_eq!(c.opened(), 1);
    // An outbound send that would open a second association is refused.
    assert!(matches!(
        plan(&mut c, p2(), b"x", 0),
        Err(SendError::Limit(LimitExceeded { max: 1, .. }))
    ));
}

#[test]
fn comm_lost_moves_the_associations_queue_to_its_address_and_wakes_the_sender() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    // Two messages wait for A1 (the buffer was full).
    let first = send_with(&mut c, p1(), b"one", Transmit::WouldBlock);
    assert_eq!(
        first.result.unwrap(),
        SendOutcome::Queued { assoc: Some(A1) }
    );
    match plan(&mut c, p1(), b"two", 0).unwrap() {
        Planned::Queued(o) => assert_eq!(o, SendOutcome::Queued { assoc: Some(A1) }),
        other => panic!("order: the second must queue behind the first, got {other:?}"),
    }
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommLost, A1, 3),
        None,
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Count(Counter::CommLost),
            Action::Wake(S),
            Action::Emit(AssocEvent::Down {
                socket: S,
                assoc: A1,
                // No address with the notification: the table's primary.
                peer: Some(p1()),
                cause: DownCause::CommLost { error: 3 },
            }),
        ]
    );
    assert_eq!((c.opened(), c.tracked(), c.queued()), (0, 0, 2));
    // They now go by address, in order, without a lifetime (no association is up).
    let q1 = c.poll_queued(S).unwrap();
    assert_eq!(q1.attempt.route, Route::Addr(p1()));
    assert_eq!(q1.data, b"one");
    assert_eq!(
        c.handle_queued_result(now(), S, q1, Transmit::Sent { assoc: None }),
        vec![]
    );
    // "one" starts a new association: "two" is held until it is up.
    assert_eq!(c.setups(), 1);
    assert_eq!(c.poll_queued(S), None);
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A2, 0),
        Some(p1()),
        &[p1()],
    );
    assert!(a.contains(&Action::Wake(S)), "{a:?}");
    assert_eq!(c.setups(), 0);
    let q2 = c.poll_queued(S).unwrap();
    assert_eq!(q2.data, b"two");
    assert_eq!(q2.attempt.route, Route::Assoc(A2), "on the new association");
}

#[test]
fn requeued_messages_that_do_not_fit_the_address_queue_are_send_failures() {
    let mut c = core_with(&[], 1, MAX);
    // A message waits for p1 by address; the association that comes up names another
    // address of the peer first, so it keeps waiting by address.
    let step = send_with(&mut c, p1(), b"by-addr", Transmit::WouldBlock);
    assert!(step.result.is_ok());
    let other = addr("10.0.1.1:5060");
    up(&mut c, A1, other);
    c.handle_notification(
        now(),
        S,
        Notification::PeerAddrChange {
            addr: p1(),
            state: PeerAddrState::Added,
            error: 0,
            assoc_id: A1,
        },
        None,
        &[],
    );
    // Another waits on the association itself.
    let step = send_with(&mut c, p1(), b"on-assoc", Transmit::WouldBlock);
    assert_eq!(
        step.result.unwrap(),
        SendOutcome::Queued { assoc: Some(A1) }
    );
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::ShutdownComp, A1, 0),
        Some(p1()),
        &[],
    );
    assert_eq!(
        counts(&actions),
        vec![
            Counter::AssocShutdown,
            Counter::SendFailed,
            Counter::SendDropped(SendDropCause::QueueMessages)
        ]
    );
    assert_eq!(
        events(&actions),
        vec![
            &AssocEvent::SendFailure {
                socket: S,
                assoc: A1,
                dest: Some(p1()),
                error: 0,
                partly_sent: false,
                len: 8,
            },
            &AssocEvent::Down {
                socket: S,
                assoc: A1,
                peer: Some(p1()),
                cause: DownCause::ShutdownComplete,
            },
        ]
    );
    assert_eq!(c.queued(), 1);
}

#[test]
fn a_down_for_an_unknown_association_changes_nothing_it_should_not() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    // A stale id: never seen up (e.g. its COMM_UP came before tracking was switched on).
    let actions = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommLost, AssocId(99), 0),
        None,
        &[],
    );
    assert_eq!(
        events(&actions),
        vec![&AssocEvent::Down {
            socket: S,
            assoc: AssocId(99),
            peer: None,
            cause: DownCause::CommLost { error: 0 },
        }]
    );
    assert_eq!(c.tracked(), 1, "the tracked association survives");
    // Path changes and send failures for unknown ids do not invent entries.
    c.handle_notification(
        now(),
        S,
        Notification::PeerAddrChange {
            addr: p2(),
            state: PeerAddrState::Added,
            error: 0,
            assoc_id: AssocId(99),
        },
        None,
        &[],
    );
    assert!(c.table().lookup(S, p2()).is_none());
}

#[test]
fn other_association_changes_are_reported_and_counted() {
    let mut c = core(&[]);
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CantStrAssoc, A1, 110),
        Some(p1()),
        &[],
    );
    assert_eq!(
        a,
        vec![
            Action::Count(Counter::ConnectFailed),
            Action::Emit(AssocEvent::CantStart {
                socket: S,
                peer: Some(p1()),
                error: 110,
            }),
        ]
    );
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::Restart, A1, 0),
        Some(p1()),
        &[],
    );
    assert_eq!(
        a,
        vec![Action::Emit(AssocEvent::Restart {
            socket: S,
            assoc: A1,
            peer: Some(p1()),
        })]
    );
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::Other(9), A1, 0),
        None,
        &[],
    );
    assert_eq!(a, vec![]);
    let a = c.handle_notification(now(), S, Notification::Shutdown { assoc_id: A1 }, None, &[]);
    assert_eq!(
        a,
        vec![
            Action::Count(Counter::RemoteShutdown),
            Action::Emit(AssocEvent::RemoteShutdown {
                socket: S,
                assoc: A1
            }),
        ]
    );
    let a = c.handle_notification(
        now(),
        S,
        Notification::SenderDry { assoc_id: A1 },
        None,
        &[],
    );
    assert_eq!(a, vec![Action::Wake(S)]);
    let a = c.handle_notification(
        now(),
        S,
        Notification::RemoteError {
            error: 0xb,
            assoc_id: A1,
            data: vec![],
        },
        None,
        &[],
    );
    assert_eq!(
        a,
        vec![Action::Emit(AssocEvent::RemoteError {
            socket: S,
            assoc: A1,
            error: 0xb,
        })]
    );
    for quiet in [
        Notification::PartialDelivery {
            indication: 0,
            assoc_id: A1,
            stream: 0,
            seq: 0,
        },
        Notification::Other(0x8008),
    ] {
        assert_eq!(c.handle_notification(now(), S, quiet, None, &[]), vec![]);
    }
}

#[test]
fn path_changes_update_the_table_and_are_reported() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    let second = addr("10.0.1.1:5060");
    let change = |state| Notification::PeerAddrChange {
        addr: second,
        state,
        error: 0,
        assoc_id: A1,
    };
    let a = c.handle_notification(now(), S, change(PeerAddrState::Added), None, &[]);
    assert_eq!(
        a,
        vec![Action::Emit(AssocEvent::PathChange {
            socket: S,
            assoc: A1,
            addr: second,
            state: PeerAddrState::Added,
            error: 0,
        })]
    );
    assert_eq!(c.table().lookup(S, second).map(|a| a.id), Some(A1));
    c.handle_notification(now(), S, change(PeerAddrState::MadePrimary), None, &[]);
    assert_eq!(c.table().get(S, A1).and_then(|a| a.primary), Some(second));
    c.handle_notification(now(), S, change(PeerAddrState::Unreachable), None, &[]);
    assert!(
        c.table().lookup(S, second).is_some(),
        "unreachable keeps it"
    );
    c.handle_notification(now(), S, change(PeerAddrState::Removed), None, &[]);
    assert!(c.table().lookup(S, second).is_none());
}

#[test]
fn received_drops_are_counted_by_reason() {
    let mut c = core(&[]);
    let a = c.handle_dropped(
        S,
        A1,
        p1(),
        DropReason::TooLarge {
            size_so_far: 70_000,
        },
    );
    assert_eq!(
        a,
        vec![
            Action::Count(Counter::Dropped(DropCause::TooLarge)),
            Action::Emit(AssocEvent::Dropped {
                socket: S,
                assoc: A1,
                peer: Some(p1()),
                cause: DropCause::TooLarge,
                size: 70_000,
            }),
        ]
    );
    let a = c.handle_dropped(S, A1, p1(), DropReason::Incomplete { size_so_far: 3 });
    assert_eq!(counts(&a), vec![Counter::Dropped(DropCause::Incomplete)]);
}

#[test]
fn a_message_given_up_unfinished_is_counted_and_aborts_its_association() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    let a = c.handle_dropped(S, A1, p1(), DropReason::Expired { size_so_far: 9000 });
    assert_eq!(
        a,
        vec![
            Action::Count(Counter::Dropped(DropCause::PartialTimeout)),
            Action::Abort {
                socket: S,
                assoc: A1,
                reason: PARTIAL_ABORT_REASON,
            },
            Action::Emit(AssocEvent::Dropped {
                socket: S,
                assoc: A1,
                peer: Some(p1()),
                cause: DropCause::PartialTimeout,
                size: 9000,
            }),
        ]
    );
    let a = c.handle_dropped(S, A2, p2(), DropReason::OverBudget { size_so_far: 12 });
    assert_eq!(counts(&a), vec![Counter::Dropped(DropCause::PartialBytes)]);
    assert!(a.contains(&Action::Abort {
        socket: S,
        assoc: A2,
        reason: PARTIAL_ABORT_REASON,
    }));
    // Too large or cut short by its association's end: no abort.
    for r in [
        DropReason::TooLarge { size_so_far: 1 },
        DropReason::Incomplete { size_so_far: 1 },
    ] {
        let a = c.handle_dropped(S, A1, p1(), r);
        assert!(
            !a.iter().any(|x| matches!(x, Action::Abort { .. })),
            "{r:?}"
        );
    }
}

#[test]
fn the_partial_message_age_limit_follows_srto_max_within_bounds() {
    // The default srto_max (60 s) gives the upper bound, 64 x T1.
    assert_eq!(core(&[]).partial_timeout(), Duration::from_secs(32));
    let short = [
        (Param::SrtoInitial, 300),
        (Param::SrtoMin, 100),
        (Param::SrtoMax, 1000),
    ];
    assert_eq!(core(&short).partial_timeout(), PARTIAL_TIMEOUT_MIN);
    let mid = [(Param::SrtoMax, 7000)];
    assert_eq!(core(&mid).partial_timeout(), Duration::from_secs(14));
    // A runtime change applies at the next check.
    let mut c = core(&[]);
    let mut next = c.params();
    next.change(Param::SrtoMax, 4000).unwrap();
    c.handle_param_change(next, Param::SrtoMax, 4000);
    assert_eq!(c.partial_timeout(), Duration::from_secs(8));
}

// --- SEND_FAILED and the retry budget -------------------------------------------------------

#[test]
fn a_returned_message_with_budget_left_is_resent_by_address() {
    let mut c = core(&[(Param::SendRetries, 2), (Param::SendTtl, 500)]);
    up(&mut c, A1, p1());
    let n = send_failed(A1, 0, SendFailedStatus::Sent, ctx(2), b"INVITE", 6);
    let a = c.handle_notification(now(), S, n, Some(p1()), &[]);
    assert_eq!(counts(&a), vec![Counter::SendForceRetry]);
    assert_eq!(
        events(&a),
        vec![&AssocEvent::SendRetried {
            socket: S,
            assoc: A1,
            dest: p1(),
            retries_left: 1,
        }]
    );
    let r = resends(&a);
    assert_eq!(r.len(), 1);
    assert_eq!(
        *r[0],
        Resend {
            socket: S,
            failed_on: A1,
            dest: p1(),
            data: b"INVITE".to_vec(),
            context: Context { tag: 7, budget: 1 },
            options: SendOptions {
                // The association is still tracked: the lifetime applies.
                ttl_ms: Some(500),
                context: ctx(1),
                ..SendOptions::default()
            },
        }
    );
}

#[test]
fn the_destination_of_a_returned_message_comes_from_the_table_when_the_kernel_gives_none() {
    let mut c = core(&[(Param::SendRetries, 1)]);
    up(&mut c, A1, p1());
    let a = c.handle_notification(
        now(),
        S,
        send_failed(A1, 0, SendFailedStatus::Unsent, ctx(1), b"x", 1),
        None,
        &[],
    );
    assert_eq!(resends(&a).first().map(|r| r.dest), Some(p1()));
}

#[test]
fn an_exhausted_budget_is_one_send_failure() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    up(&mut c, A1, p1());
    let a = c.handle_notification(
        now(),
        S,
        send_failed(A1, 0, SendFailedStatus::Unsent, ctx(0), b"INVITE", 6),
        Some(p1()),
        &[],
    );
    assert_eq!(
        a,
        vec![
            Action::Count(Counter::SendFailed),
            Action::Emit(AssocEvent::SendFailure {
                socket: S,
                assoc: A1,
                dest: Some(p1()),
                error: 0,
                partly_sent: false,
                len: 6,
            }),
        ]
    );
}

#[test]
fn an_error_in_the_notification_is_never_retried_and_says_whether_data_left() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    for (status, partly_sent) in [
        (SendFailedStatus::Sent, true),
        (SendFailedStatus::Unsent, false),
        (SendFailedStatus::Other(7), false),
    ] {
        let a = c.handle_notification(
            now(),
            S,
            send_failed(A1, 110, status, ctx(2), b"abc", 3),
            Some(p1()),
            &[],
        );
        assert!(resends(&a).is_empty());
        assert_eq!(
            events(&a),
            vec![&AssocEvent::SendFailure {
                socket: S,
                assoc: A1,
                dest: Some(p1()),
                error: 110,
                partly_sent,
                len: 3,
            }]
        );
    }
}

#[test]
fn a_truncated_or_empty_returned_message_is_not_resent() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    // The notification was cut short on receipt: 3 of 10 bytes.
    let a = c.handle_notification(
        now(),
        S,
        send_failed(A1, 0, SendFailedStatus::Unsent, ctx(2), b"abc", 10),
        Some(p1()),
        &[],
    );
    assert!(resends(&a).is_empty());
    assert_eq!(counts(&a), vec![Counter::SendFailed]);
    match events(&a).as_slice() {
        [AssocEvent::SendFailure { len, .. }] => assert_eq!(*len, 10),
        other => panic!("{other:?}"),
    }
    let a = c.handle_notification(
        now(),
        S,
        send_failed(A1, 0, SendFailedStatus::Unsent, ctx(2), b"", 0),
        Some(p1()),
        &[],
    );
    assert!(resends(&a).is_empty());
    assert_eq!(counts(&a), vec![Counter::SendFailed]);
}

#[test]
fn a_returned_message_of_an_unknown_association_without_address_fails() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    // Stale id, no address from the kernel: nowhere to resend to.
    let a = c.handle_notification(
        now(),
        S,
        send_failed(AssocId(42), 0, SendFailedStatus::Unsent, ctx(2), b"x", 1),
        None,
        &[],
    );
    assert_eq!(
        events(&a),
        vec![&AssocEvent::SendFailure {
            socket: S,
            assoc: AssocId(42),
            dest: None,
            error: 0,
            partly_sent: false,
            len: 1,
        }]
    );
}

#[test]
fn nothing_is_resent_while_shutting_down() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    up(&mut c, A1, p1());
    c.stop_accepting();
    let a = c.handle_notification(
        now(),
        S,
        send_failed(A1, 0, SendFailedStatus::Unsent, ctx(2), b"x", 1),
        Some(p1()),
        &[],
    );
    assert!(resends(&a).is_empty());
    assert_eq!(counts(&a), vec![Counter::SendFailed]);
}

#[test]
fn a_resend_that_finds_the_buffer_full_queues_by_address_or_fails_when_full() {
    let mut c = core_with(&[(Param::SendRetries, 2)], 1, MAX);
    let resend = |data: &[u8]| Resend {
        socket: S,
        failed_on: A1,
        dest: p1(),
        data: data.to_vec(),
        context: Context { tag: 3, budget: 1 },
        options: SendOptions::default(),
    };
    assert_eq!(
        c.handle_resend_result(now(), resend(b"a"), Transmit::Sent { assoc: None }),
        vec![]
    );
    assert_eq!(
        c.handle_resend_result(now(), resend(b"b"), Transmit::WouldBlock),
        vec![Action::Count(Counter::SendqFull), Action::Wake(S)]
    );
    assert_eq!(c.queued(), 1);
    let a = c.handle_resend_result(now(), resend(b"cc"), Transmit::WouldBlock);
    assert_eq!(
        counts(&a),
        vec![
            Counter::SendqFull,
            Counter::SendFailed,
            Counter::SendDropped(SendDropCause::QueueMessages)
        ],
        "the queue holds one"
    );
    let a = c.handle_resend_result(
        now(),
        resend(b"ddd"),
        Transmit::Failed(Error::InvalidInput("refused")),
    );
    assert_eq!(
        events(&a),
        vec![&AssocEvent::SendFailure {
            socket: S,
            assoc: A1,
            dest: Some(p1()),
            error: 0,
            partly_sent: false,
            len: 3,
        }]
    );
    // The first resend went by address to a peer with no association: a setup, which holds
    // the queued one until the association is up.
    assert_eq!(c.setups(), 1);
    assert_eq!(c.poll_queued(S), None);
    up(&mut c, A2, p1());
    // The queued resend keeps its remaining budget.
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, b"b");
    assert_eq!(q.attempt.context, Context { tag: 3, budget: 1 });
    assert_eq!(
        q.attempt.options.context,
        Context { tag: 3, budget: 1 }.to_raw()
    );
}

// --- SEND_FAILED for fragmented messages (review item M1) ---------------------------------

/// The three SEND_FAILED events of `abcdefgh` sent in chunks of 3, 3 and 2 bytes.
fn fragments(c: &mut EndpointCore, context: u32, status: SendFailedStatus) -> Vec<Vec<Action>> {
    [
        (FIRST, &b"abc"[..]),
        (MIDDLE, &b"def"[..]),
        (LAST, &b"gh"[..]),
    ]
    .into_iter()
    .map(|(flags, data)| {
        let n = fragment(A1, 0, status, flags, context, data, data.len());
        c.handle_notification(now(), S, n, Some(p1()), &[])
    })
    .collect()
}

#[test]
fn a_fragmented_message_is_resent_whole_once_after_its_last_fragment() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    up(&mut c, A1, p1());
    let steps = fragments(&mut c, ctx(2), SendFailedStatus::Sent);
    assert_eq!(steps[0], vec![], "nothing is decided on the first fragment");
    assert_eq!(steps[1], vec![], "nor on a middle one");
    let last = &steps[2];
    assert_eq!(counts(last), vec![Counter::SendForceRetry]);
    let r = resends(last);
    assert_eq!(r.len(), 1, "{last:?}");
    assert_eq!(r[0].data, b"abcdefgh", "the whole message, in order");
    assert_eq!(r[0].context, Context { tag: 7, budget: 1 });
    assert_eq!(r[0].options.context, ctx(1));
    assert_eq!(r[0].dest, p1());
}

#[test]
fn a_fragmented_message_that_fails_for_good_is_one_failure_of_its_whole_size() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    let steps = fragments(&mut c, ctx(0), SendFailedStatus::Unsent);
    assert_eq!(steps[0], vec![]);
    assert_eq!(steps[1], vec![]);
    assert_eq!(
        steps[2],
        vec![
            Action::Count(Counter::SendFailed),
            Action::Emit(AssocEvent::SendFailure {
                socket: S,
                assoc: A1,
                dest: Some(p1()),
                error: 0,
                partly_sent: false,
                len: 8,
            }),
        ]
    );
}

#[test]
fn a_resent_fragmented_message_uses_its_budget_once_per_return() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    let mut budget = 2;
    let mut failures = 0;
    let mut retries = 0;
    // The same message comes back three times (the original and two resends).
    for _ in 0..3 {
        let steps = fragments(&mut c, ctx(budget), SendFailedStatus::Unsent);
        let all: Vec<Action> = steps.into_iter().flatten().collect();
        for counter in counts(&all) {
            match counter {
                Counter::SendFailed => failures += 1,
                Counter::SendForceRetry => retries += 1,
                other => panic!("{other:?}"),
            }
        }
        if let Some(r) = resends(&all).first() {
            budget = r.context.budget;
        }
    }
    assert_eq!((retries, failures), (2, 1));
}

#[test]
fn an_error_on_a_fragmented_message_fails_it_once_and_remembers_what_was_sent() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    let first = fragment(A1, 0, SendFailedStatus::Sent, FIRST, ctx(2), b"abc", 3);
    let last = fragment(A1, 110, SendFailedStatus::Unsent, LAST, ctx(2), b"de", 2);
    assert_eq!(
        c.handle_notification(now(), S, first, Some(p1()), &[]),
        vec![]
    );
    let a = c.handle_notification(now(), S, last, Some(p1()), &[]);
    assert_eq!(
        events(&a),
        vec![&AssocEvent::SendFailure {
            socket: S,
            assoc: A1,
            dest: Some(p1()),
            error: 110,
            partly_sent: true,
            len: 5,
        }]
    );
}

#[test]
fn a_fragment_is_never_resent_as_a_message() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    // Lone middle and last fragments (their first one was lost): never resent.
    for flags in [MIDDLE, LAST] {
        let n = fragment(A1, 0, SendFailedStatus::Unsent, flags, ctx(2), b"def", 3);
        let mut a = c.handle_notification(now(), S, n, Some(p1()), &[]);
        if flags == MIDDLE {
            assert_eq!(a, vec![]);
            // The run ends without its last fragment when something else arrives.
            a = c.handle_notification(
                now(),
                S,
                Notification::SenderDry { assoc_id: A1 },
                None,
                &[],
            );
        }
        assert!(resends(&a).is_empty(), "{a:?}");
        assert_eq!(
            counts(&a),
            vec![Counter::SendFailed],
            "flags {flags:#x}: counted once"
        );
    }
}

#[test]
fn a_message_whose_last_fragment_never_comes_is_counted_when_anything_else_arrives() {
    let mut c = core(&[(Param::SendRetries, 2)]);
    up(&mut c, A1, p1());
    let first = |c: &mut EndpointCore| {
        let n = fragment(A1, 0, SendFailedStatus::Unsent, FIRST, ctx(2), b"abc", 3);
        assert_eq!(c.handle_notification(now(), S, n, Some(p1()), &[]), vec![]);
    };
    // Another notification: the failure comes first, then that notification's own actions.
    first(&mut c);
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommLost, A1, 0),
        Some(p1()),
        &[],
    );
    assert_eq!(
        counts(&a),
        vec![Counter::SendFailed, Counter::CommLost],
        "{a:?}"
    );
    assert!(resends(&a).is_empty());
    // A received message.
    first(&mut c);
    let d = c.handle_message(now(), S, A2, p2(), 10);
    assert!(d.deliver);
    assert_eq!(counts(&d.actions), vec![Counter::SendFailed]);
    // A dropped one.
    first(&mut c);
    let a = c.handle_dropped(S, A2, p2(), DropReason::Incomplete { size_so_far: 1 });
    assert_eq!(
        counts(&a),
        vec![Counter::SendFailed, Counter::Dropped(DropCause::Incomplete)]
    );
    // The next message's first fragment.
    first(&mut c);
    let n = fragment(A1, 0, SendFailedStatus::Unsent, WHOLE, ctx(0), b"x", 1);
    let a = c.handle_notification(now(), S, n, Some(p1()), &[]);
    assert_eq!(counts(&a), vec![Counter::SendFailed, Counter::SendFailed]);
    match events(&a).as_slice() {
        [
            AssocEvent::SendFailure { len: 3, .. },
            AssocEvent::SendFailure { len: 1, .. },
        ] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_fragmented_messages_back_to_back_are_each_handled_once() {
    let mut c = core(&[(Param::SendRetries, 1)]);
    let one = Context { tag: 1, budget: 1 }.to_raw();
    let two = Context { tag: 2, budget: 1 }.to_raw();
    let mut all = Vec::new();
    for (flags, context, data) in [
        (FIRST, one, &b"ab"[..]),
        (LAST, one, &b"c"[..]),
        (FIRST, two, &b"xy"[..]),
        (MIDDLE, two, &b"z"[..]),
        (LAST, two, &b"!"[..]),
    ] {
        let n = fragment(
            A1,
            0,
            SendFailedStatus::Unsent,
            flags,
            context,
            data,
            data.len(),
        );
        all.extend(c.handle_notification(now(), S, n, Some(p1()), &[]));
    }
    let r = resends(&all);
    let data: Vec<&[u8]> = r.iter().map(|r| r.data.as_slice()).collect();
    assert_eq!(data, vec![&b"abc"[..], &b"xyz!"[..]]);
    assert_eq!(
        counts(&all),
        vec![Counter::SendForceRetry, Counter::SendForceRetry]
    );
}

#[test]
fn a_fragmented_message_over_the_size_bound_is_one_failure() {
    let mut c = core_with(&[(Param::SendRetries, 2)], 4, 5);
    let steps = fragments(&mut c, ctx(2), SendFailedStatus::Unsent);
    assert!(resends(&steps[2]).is_empty());
    match events(&steps[2]).as_slice() {
        [AssocEvent::SendFailure { len, .. }] => assert_eq!(*len, 8),
        other => panic!("{other:?}"),
    }
}

// --- sending ---------------------------------------------------------------------------------

#[test]
fn sends_go_on_the_association_with_the_lifetime_or_by_address_without() {
    let mut c = core(&[(Param::SendTtl, 300), (Param::SendRetries, 3)]);
    assert_eq!(c.send_budget(), 3);
    // No association yet: by address, no lifetime (Linux would abandon it at COMM_UP).
    match plan(&mut c, p1(), b"x", 3).unwrap() {
        Planned::Transmit(t) => {
            assert_eq!(t.route, Route::Addr(p1()));
            assert_eq!(t.options.ttl_ms, None);
            assert_eq!(t.context.budget, 3);
            assert_eq!(Context::from_raw(t.options.context), t.context);
            assert!(t.addr_fallback);
        }
        other => panic!("{other:?}"),
    }
    up(&mut c, A1, p1());
    match plan(&mut c, p1(), b"x", 3).unwrap() {
        Planned::Transmit(t) => {
            assert_eq!(t.route, Route::Assoc(A1));
            assert_eq!(t.options.ttl_ms, Some(300));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_queue_on_the_already_queued_path_is_counted() {
    let mut c = core_with(&[], 2, MAX);
    send_with(&mut c, p1(), b"1", Transmit::WouldBlock);
    assert!(matches!(c.plan_send(S, p1(), b"2", 0), SendPlan::Done(_)));
    // Something waits for p1 already: the third is refused without reaching the kernel.
    match c.plan_send(S, p1(), b"3", 0) {
        SendPlan::Done(step) => {
            assert!(matches!(step.result, Err(SendError::QueueFull { .. })));
            assert_eq!(
                counts(&step.actions),
                vec![
                    Counter::SendFailed,
                    Counter::SendDropped(SendDropCause::QueueMessages)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_still_queued_at_shutdown_are_counted_as_dropped() {
    let mut c = core_with(&[], 4, MAX);
    up(&mut c, A1, p1());
    // Two wait for room after EAGAIN, one is held for an association being set up.
    send_with(&mut c, p1(), b"one", Transmit::WouldBlock);
    assert!(matches!(c.plan_send(S, p1(), b"two", 0), SendPlan::Done(_)));
    send_with(&mut c, p2(), b"setup", Transmit::Sent { assoc: None });
    assert!(matches!(
        c.plan_send(S, p2(), b"held", 0),
        SendPlan::Done(_)
    ));
    assert_eq!(c.queued(), 3);
    let a = c.discard_queued();
    let shutdown = Counter::SendDropped(SendDropCause::Shutdown);
    assert_eq!(counts(&a).iter().filter(|c| **c == shutdown).count(), 3);
    assert_eq!(
        counts(&a)
            .iter()
            .filter(|c| **c == Counter::SendFailed)
            .count(),
        3
    );
    let mut lens: Vec<usize> = events(&a)
        .iter()
        .filter_map(|e| match e {
            AssocEvent::SendFailure { len, .. } => Some(*len),
            _ => None,
        })
        .collect();
    lens.sort_unstable();
    assert_eq!(lens, vec![3, 3, 4], "one, two, held");
    assert_eq!((c.queued(), c.queued_bytes(), c.setups()), (0, 0, 0));
    assert_eq!(c.discard_queued(), vec![]);
}

#[test]
fn a_full_buffer_queues_and_later_sends_keep_their_place_until_the_queue_is_full() {
    let mut c = core_with(&[], 2, MAX);
    let step = send_with(&mut c, p1(), b"1", Transmit::WouldBlock);
    assert_eq!(step.result.unwrap(), SendOutcome::Queued { assoc: None });
    assert_eq!(
        step.actions,
        vec![Action::Count(Counter::SendqFull), Action::Wake(S)]
    );
    assert!(matches!(
        plan(&mut c, p1(), b"2", 0),
        Ok(Planned::Queued(_))
    ));
    match plan(&mut c, p1(), b"3", 0) {
        Err(SendError::QueueFull { dest, source }) => {
            assert_eq!(dest, p1());
            assert_eq!(source, QueueFull::Messages { limit: 2 });
        }
        other => panic!("{other:?}"),
    }
    // Another destination is not held up.
    assert!(matches!(
        plan(&mut c, p2(), b"x", 0),
        Ok(Planned::Transmit(_))
    ));
    // The drainer: a full buffer puts the message back first; a refusal is a failure.
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, b"1");
    assert_eq!(
        c.handle_queued_result(now(), S, q, Transmit::WouldBlock),
        vec![]
    );
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, b"1", "put back at the front");
    // While it is in flight a new send for that destination still queues behind it.
    assert!(matches!(
        plan(&mut c, p1(), b"3", 0),
        Ok(Planned::Queued(_))
    ));
    let a = c.handle_queued_result(now(), S, q, Transmit::Failed(Error::InvalidInput("no")));
    assert_eq!(
        events(&a),
        vec![&AssocEvent::SendFailure {
            socket: S,
            assoc: AssocId(0),
            dest: Some(p1()),
            error: 0,
            partly_sent: false,
            len: 1,
        }]
    );
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, b"2");
}

#[test]
fn a_full_queue_on_the_first_eagain_is_a_counted_failure() {
    let mut c = core_with(&[], 0, MAX);
    let step = send_with(&mut c, p1(), b"1", Transmit::WouldBlock);
    assert!(matches!(step.result, Err(SendError::QueueFull { .. })));
    assert_eq!(
        step.actions,
        vec![
            Action::Count(Counter::SendqFull),
            Action::Count(Counter::SendFailed),
            Action::Count(Counter::SendDropped(SendDropCause::QueueMessages)),
        ]
    );
}

#[test]
fn a_refused_send_is_a_counted_socket_error() {
    let mut c = core(&[]);
    let step = send_with(
        &mut c,
        p1(),
        b"1",
        Transmit::Failed(Error::InvalidInput("empty message")),
    );
    assert!(matches!(step.result, Err(SendError::Socket { dest, .. }) if dest == p1()));
    assert_eq!(step.actions, vec![Action::Count(Counter::SendFailed)]);
    let step = send_with(&mut c, p1(), b"1", Transmit::Sent { assoc: None });
    assert_eq!(step.result.unwrap(), SendOutcome::Sent { assoc: None });
    assert_eq!(step.actions, vec![]);
}

#[test]
fn shutting_down_refuses_new_associations_only() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    c.stop_accepting();
    assert!(c.closing());
    assert!(matches!(
        plan(&mut c, p2(), b"x", 0),
        Err(SendError::ShuttingDown(d)) if d == p2()
    ));
    match plan(&mut c, p1(), b"x", 0).unwrap() {
        Planned::Transmit(t) => {
            assert_eq!(t.route, Route::Assoc(A1));
            assert!(!t.addr_fallback, "no new association by address");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_listener_is_refused() {
    let mut c = core(&[]);
    match c.plan_send(SocketId(3), p1(), b"x", 0) {
        SendPlan::Done(SendStep {
            result: Err(SendError::UnknownSocket(SocketId(3))),
            actions,
        }) => assert_eq!(actions, vec![], "not counted"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.poll_queued(SocketId(3)), None);
}

#[test]
fn parameter_changes_reach_the_table() {
    let mut c = core(&[]);
    up(&mut c, A1, p1());
    let mut next = c.params();
    let v = next.change(Param::AssocReuse, 0).unwrap();
    c.handle_param_change(next, Param::AssocReuse, v);
    assert_eq!(c.params().get(Param::AssocReuse), 0);
    match plan(&mut c, p1(), b"x", 0).unwrap() {
        Planned::Transmit(t) => assert_eq!(t.route, Route::Addr(p1())),
        other => panic!("{other:?}"),
    }
    let mut next = c.params();
    let v = next.change(Param::AssocTracking, 0).unwrap();
    c.handle_param_change(next, Param::AssocTracking, v);
    assert_eq!(c.tracked(), -1);
    let mut next = c.params();
    let v = next.change(Param::MaxAssocs, 0).unwrap();
    c.handle_param_change(next, Param::MaxAssocs, v);
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A2, 0),
        Some(p2()),
        &[],
    );
    assert!(a.contains(&Action::Count(Counter::LocalReject)), "{a:?}");
}

// --- bounded sending (review item H4) --------------------------------------------------------

/// A core with `limits` and `max_setups`.
fn bounded(set: &[(Param, i64)], limits: QueueLimits, max_setups: usize) -> EndpointCore {
    EndpointCore::new(
        params(set),
        &CoreConfig {
            listeners: 1,
            queues: limits,
            max_setups,
            max_message_size: MAX,
        },
    )
}

fn wide() -> QueueLimits {
    QueueLimits::messages(100)
}

/// Plans a send and, when it is to be transmitted, reports that the kernel took it.
fn send_taken(c: &mut EndpointCore, dest: SocketAddr, data: &[u8]) -> SendStep {
    match c.plan_send(S, dest, data, 0) {
        SendPlan::Transmit(a) => c.handle_transmit(
            now(),
            S,
            &a,
            data,
            Transmit::Sent {
                assoc: route_assoc(a.route),
            },
        ),
        SendPlan::Done(step) => step,
    }
}

fn drain(c: &mut EndpointCore) -> Vec<(Route, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(q) = c.poll_queued(S) {
        let route = q.attempt.route;
        out.push((route, q.data.clone()));
        assert_eq!(
            c.handle_queued_result(
                now(),
                S,
                q,
                Transmit::Sent {
                    assoc: route_assoc(route)
                }
            ),
            vec![]
        );
    }
    out
}

#[test]
fn only_the_first_message_to_a_new_destination_reaches_the_kernel_until_it_is_up() {
    let mut c = bounded(&[], wide(), 8);
    let first = send_taken(&mut c, p1(), b"1");
    assert_eq!(first.result.unwrap(), SendOutcome::Sent { assoc: None });
    assert_eq!(c.setups(), 1);
    for m in [&b"2"[..], b"3"] {
        let step = send_taken(&mut c, p1(), m);
        assert_eq!(step.result.unwrap(), SendOutcome::Queued { assoc: None });
        assert_eq!(step.actions, vec![], "held, not a drop");
    }
    assert_eq!(c.queued(), 2);
    assert_eq!(c.poll_queued(S), None, "held until the association is up");
    // Another destination is not affected.
    assert_eq!(
        send_taken(&mut c, p2(), b"x").result.unwrap(),
        SendOutcome::Sent { assoc: None }
    );
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A1, 0),
        Some(p1()),
        &[p1()],
    );
    assert_eq!(counts(&a), vec![Counter::Established]);
    assert!(a.contains(&Action::Wake(S)));
    assert_eq!(c.setups(), 1, "p2's setup goes on");
    // A message sent now still queues behind the held ones.
    assert_eq!(
        send_taken(&mut c, p1(), b"4").result.unwrap(),
        SendOutcome::Queued { assoc: Some(A1) }
    );
    assert_eq!(
        drain(&mut c),
        vec![
            (Route::Assoc(A1), b"2".to_vec()),
            (Route::Assoc(A1), b"3".to_vec()),
            (Route::Assoc(A1), b"4".to_vec()),
        ]
    );
    assert_eq!(
        send_taken(&mut c, p1(), b"5").result.unwrap(),
        SendOutcome::Sent { assoc: Some(A1) }
    );
}

#[test]
fn held_messages_are_dropped_and_counted_when_the_setup_fails() {
    let mut c = bounded(&[], wide(), 8);
    send_taken(&mut c, p1(), b"first").result.unwrap();
    send_taken(&mut c, p1(), b"held-1").result.unwrap();
    send_taken(&mut c, p1(), b"held-22").result.unwrap();
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CantStrAssoc, AssocId(0), 0),
        Some(p1()),
        &[],
    );
    assert_eq!(
        counts(&a),
        vec![
            Counter::ConnectFailed,
            Counter::SendDropped(SendDropCause::SetupFailed),
            Counter::SendFailed,
            Counter::SendDropped(SendDropCause::SetupFailed),
            Counter::SendFailed,
        ]
    );
    let lens: Vec<usize> = events(&a)
        .iter()
        .filter_map(|e| match e {
            AssocEvent::SendFailure { len, dest, .. } => {
                assert_eq!(*dest, Some(p1()));
                Some(*len)
            }
            _ => None,
        })
        .collect();
    assert_eq!(lens, vec![6, 7], "each held message once, in order");
    assert_eq!((c.queued(), c.setups()), (0, 0));
    // The next message starts a new setup.
    assert_eq!(
        send_taken(&mut c, p1(), b"again").result.unwrap(),
        SendOutcome::Sent { assoc: None }
    );
    assert_eq!(c.setups(), 1);
    // CANT_STR_ASSOC for a destination nobody was setting up drops nothing.
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CantStrAssoc, AssocId(0), 0),
        Some(p2()),
        &[],
    );
    assert_eq!(counts(&a), vec![Counter::ConnectFailed]);
}

#[test]
fn a_setup_that_comes_up_through_another_peer_address_releases_the_held_messages() {
    let mut c = bounded(&[], wide(), 8);
    send_taken(&mut c, p1(), b"1").result.unwrap();
    send_taken(&mut c, p1(), b"2").result.unwrap();
    // The kernel names another address as primary; p1 is in the list.
    let primary = addr("10.0.1.1:5060");
    c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A1, 0),
        Some(primary),
        &[primary, p1()],
    );
    assert_eq!(c.setups(), 0);
    assert_eq!(drain(&mut c), vec![(Route::Assoc(A1), b"2".to_vec())]);
}

#[test]
fn an_association_rejected_at_comm_up_drops_its_held_messages() {
    let mut c = bounded(&[(Param::MaxAssocs, 1)], wide(), 8);
    up(&mut c, A1, p2());
    // Racing the limit: a send to p1 got out before p2 came up.
    c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::ShutdownComp, A1, 0),
        None,
        &[],
    );
    send_taken(&mut c, p1(), b"1").result.unwrap();
    send_taken(&mut c, p1(), b"2").result.unwrap();
    up(&mut c, AssocId(5), p2());
    let a = c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommUp, A2, 0),
        Some(p1()),
        &[p1()],
    );
    assert!(a.contains(&Action::Count(Counter::LocalReject)));
    assert!(a.contains(&Action::Count(Counter::SendDropped(
        SendDropCause::SetupFailed
    ))));
    assert_eq!((c.queued(), c.setups()), (0, 0));
}

#[test]
fn one_destination_fills_only_its_own_bounds() {
    let limits = QueueLimits {
        messages: 3,
        bytes: 250,
        total_bytes: 10_000,
        destinations: 10,
    };
    let mut c = bounded(&[], limits, 8);
    let msg = [0u8; 100];
    send_taken(&mut c, p1(), &msg).result.unwrap();
    // Two held (200 bytes); the third would make 300 bytes.
    for _ in 0..2 {
        assert!(matches!(
            send_taken(&mut c, p1(), &msg).result,
            Ok(SendOutcome::Queued { .. })
        ));
    }
    let step = send_taken(&mut c, p1(), &msg);
    match step.result {
        Err(SendError::QueueFull { dest, source }) => {
            assert_eq!(dest, p1());
            assert_eq!(
                source,
                QueueFull::Bytes {
                    limit: 250,
                    queued: 200
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        step.actions,
        vec![
            Action::Count(Counter::SendFailed),
            Action::Count(Counter::SendDropped(SendDropCause::QueueBytes)),
        ]
    );
    // A small one still fits (3 messages, 201 bytes); a fourth hits the message bound.
    assert!(matches!(
        send_taken(&mut c, p1(), b"s").result,
        Ok(SendOutcome::Queued { .. })
    ));
    match send_taken(&mut c, p1(), b"t").result {
        Err(SendError::QueueFull { source, .. }) => {
            assert_eq!(source, QueueFull::Messages { limit: 3 })
        }
        other => panic!("{other:?}"),
    }
    // Meanwhile another destination with an association is served directly.
    up(&mut c, A2, p2());
    for _ in 0..10 {
        assert_eq!(
            send_taken(&mut c, p2(), &msg).result.unwrap(),
            SendOutcome::Sent { assoc: Some(A2) }
        );
    }
}

#[test]
fn total_bytes_and_destinations_bound_every_queue() {
    let limits = QueueLimits {
        messages: 100,
        bytes: 1000,
        total_bytes: 450,
        destinations: 2,
    };
    let mut c = bounded(&[], limits, 8);
    let dest = |i: u8| SocketAddr::from(([10, 0, 9, i], 5060));
    let msg = [0u8; 200];
    // Three destinations in setup; two may hold messages.
    for i in 1..=3 {
        send_taken(&mut c, dest(i), b"first").result.unwrap();
    }
    assert_eq!(c.setups(), 3);
    send_taken(&mut c, dest(1), &msg).result.unwrap();
    send_taken(&mut c, dest(2), &msg).result.unwrap();
    let step = send_taken(&mut c, dest(3), &msg);
    assert!(
        matches!(
            step.result,
            Err(SendError::QueueFull {
                source: QueueFull::Destinations { limit: 2 },
                ..
            })
        ),
        "{:?}",
        step.result
    );
    assert!(step.actions.contains(&Action::Count(Counter::SendDropped(
        SendDropCause::Destinations
    ))));
    // 400 bytes wait; 200 more would pass 450.
    let step = send_taken(&mut c, dest(1), &msg);
    assert!(
        matches!(
            step.result,
            Err(SendError::QueueFull {
                source: QueueFull::TotalBytes {
                    limit: 450,
                    queued: 400
                },
                ..
            })
        ),
        "{:?}",
        step.result
    );
    assert!(step.actions.contains(&Action::Count(Counter::SendDropped(
        SendDropCause::TotalBytes
    ))));
    assert_eq!(c.queued_bytes(), 400);
}

#[test]
fn association_setups_are_bounded_in_number_and_in_bytes() {
    let dest = |i: u8| SocketAddr::from(([10, 0, 9, i], 5060));
    let mut c = bounded(&[], wide(), 2);
    send_taken(&mut c, dest(1), b"a").result.unwrap();
    send_taken(&mut c, dest(2), b"b").result.unwrap();
    let step = send_taken(&mut c, dest(3), b"c");
    match step.result {
        Err(SendError::SetupLimit { dest: d, source }) => {
            assert_eq!(d, dest(3));
            assert_eq!(source, SetupLimit::Associations { limit: 2 });
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        step.actions,
        vec![
            Action::Count(Counter::SendFailed),
            Action::Count(Counter::SendDropped(SendDropCause::Setups)),
        ]
    );
    // Destinations already in setup or up are not affected by the bound.
    assert!(send_taken(&mut c, dest(1), b"more").result.is_ok());
    up(&mut c, A1, dest(1));
    assert!(send_taken(&mut c, dest(1), b"more").result.is_ok());
    assert!(
        send_taken(&mut c, dest(3), b"c").result.is_ok(),
        "a slot is free again"
    );

    // Bytes: half of sctp_socket_sndbuf (4096 -> 2048) for first messages in the kernel.
    let mut c = bounded(&[(Param::SocketSndbuf, 4096)], wide(), 100);
    send_taken(&mut c, dest(1), &[0u8; 1500]).result.unwrap();
    match send_taken(&mut c, dest(2), &[0u8; 600]).result {
        Err(SendError::SetupLimit { source, .. }) => assert_eq!(
            source,
            SetupLimit::Bytes {
                limit: 2048,
                in_kernel: 1500
            }
        ),
        other => panic!("{other:?}"),
    }
    assert!(send_taken(&mut c, dest(2), &[0u8; 500]).result.is_ok());
    // A setup that ends gives its bytes back.
    c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CantStrAssoc, AssocId(0), 0),
        Some(dest(1)),
        &[],
    );
    assert!(send_taken(&mut c, dest(3), &[0u8; 1500]).result.is_ok());
}

#[test]
fn a_setup_that_outlives_its_init_retry_period_lets_its_messages_go() {
    let mut c = bounded(
        &[(Param::InitMaxAttempts, 2), (Param::InitMaxTimeo, 1000)],
        wide(),
        8,
    );
    let t0 = Instant::now();
    send_taken(&mut c, p1(), b"1").result.unwrap();
    send_taken(&mut c, p1(), b"2").result.unwrap();
    // 2 x (2 + 1) x 1 s + 10 s = 16 s.
    assert_eq!(c.handle_timeout(t0 + Duration::from_secs(15)), vec![]);
    assert_eq!(c.poll_queued(S), None);
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(17)),
        vec![Action::Wake(S)]
    );
    assert_eq!(c.setups(), 0);
    assert_eq!(drain(&mut c), vec![(Route::Addr(p1()), b"2".to_vec())]);
}

#[test]
fn with_tracking_off_nothing_is_held() {
    let mut c = bounded(
        &[(Param::AssocReuse, 0), (Param::AssocTracking, 0)],
        wide(),
        1,
    );
    for i in 0..5u8 {
        assert_eq!(
            send_taken(&mut c, p1(), &[i]).result.unwrap(),
            SendOutcome::Sent { assoc: None }
        );
        // Nor is the setup bound applied: the table cannot tell new destinations.
        assert_eq!(
            send_taken(&mut c, SocketAddr::from(([10, 0, 9, i], 1)), b"x")
                .result
                .unwrap(),
            SendOutcome::Sent { assoc: None }
        );
    }
    assert_eq!(c.setups(), 0);
}

#[test]
fn a_message_queued_on_eagain_starts_the_setup_when_the_drainer_sends_it() {
    let mut c = bounded(&[], wide(), 8);
    let step = send_with(&mut c, p1(), b"1", Transmit::WouldBlock);
    assert_eq!(step.result.unwrap(), SendOutcome::Queued { assoc: None });
    assert_eq!(c.setups(), 0, "nothing reached the kernel yet");
    // Queued behind it, not held: it is not in setup.
    send_taken(&mut c, p1(), b"2").result.unwrap();
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, b"1");
    c.handle_queued_result(now(), S, q, Transmit::Sent { assoc: None });
    assert_eq!(c.setups(), 1);
    assert_eq!(c.poll_queued(S), None, "2 is held now");
}

// --- slow receivers -------------------------------------------------------------------------

/// `SCTP_STATUS` of `assoc` with the peer's window and the unsent chunks.
fn status(assoc: AssocId, rwnd: u32, pending: u16) -> AssocStatus {
    AssocStatus {
        assoc_id: assoc,
        state: crate::AssocState::Established,
        rwnd,
        unacked: 1,
        pending,
        inbound_streams: 5,
        outbound_streams: 10,
        fragmentation_point: 1452,
        primary: crate::PeerAddrInfo {
            assoc_id: assoc,
            addr: None,
            state: crate::PathState::Active,
            cwnd: 4380,
            srtt_ms: 1,
            rto_ms: 1000,
            mtu: 1500,
        },
    }
}

/// A core whose associations' share of the send buffer is [`FLOW_BUDGET_MIN`] (16 KiB), with
/// A1 up to p1 and A2 up to p2.
fn flowing() -> EndpointCore {
    let mut c = bounded(&[(Param::SocketSndbuf, 65_536)], wide(), 8);
    assert_eq!(c.flow_budget(), FLOW_BUDGET_MIN);
    up(&mut c, A1, p1());
    up(&mut c, A2, p2());
    c
}

/// Sends 1000-byte messages to `dest` that the kernel takes until one asks for a status
/// check; returns that attempt (the message is not reported yet) and how many went before.
fn send_until_check(c: &mut EndpointCore, dest: SocketAddr) -> (Attempt, usize) {
    let data = [b'x'; 1000];
    for sent in 0.. {
        match c.plan_send(S, dest, &data, 0) {
            SendPlan::Transmit(a) if a.check.is_some() => return (a, sent),
            SendPlan::Transmit(a) => {
                let step = c.handle_transmit(
                    now(),
                    S,
                    &a,
                    &data,
                    Transmit::Sent {
                        assoc: route_assoc(a.route),
                    },
                );
                assert!(step.result.is_ok(), "{step:?}");
            }
            SendPlan::Done(step) => panic!("expected a transmit: {step:?}"),
        }
    }
    unreachable!()
}

#[test]
fn a_share_of_the_buffer_is_sent_before_the_association_is_checked() {
    let mut c = flowing();
    let (a, before) = send_until_check(&mut c, p1());
    // 16 messages of 1000 bytes fit 16 KiB; the 17th would not.
    assert_eq!(before, 16);
    assert_eq!(a.check, Some(A1));
    // A peer that takes data: the share starts over, the message goes.
    let (go, actions) = c.handle_status(now(), S, A1, Some(&status(A1, 60_000, 0)));
    assert!(go);
    assert_eq!(actions, vec![]);
    let step = c.handle_transmit(
        now(),
        S,
        &a,
        &[b'x'; 1000],
        Transmit::Sent { assoc: Some(A1) },
    );
    assert_eq!(step.result.unwrap(), SendOutcome::Sent { assoc: Some(A1) });
    let (_, again) = send_until_check(&mut c, p1());
    assert_eq!(
        again, 15,
        "a fresh share after the check (its message counted)"
    );
    // A slow peer whose window still takes a message is not stalled either.
    let (go, _) = c.handle_status(now(), S, A1, Some(&status(A1, 1000, 10)));
    assert!(go);
    assert_eq!(c.stalled(), 0);
}

#[test]
fn sender_dry_gives_a_fresh_share() {
    let mut c = flowing();
    for _ in 0..10 {
        send_taken(&mut c, p1(), &[b'x'; 1000]).result.unwrap();
    }
    c.handle_notification(
        now(),
        S,
        Notification::SenderDry { assoc_id: A1 },
        None,
        &[],
    );
    let (_, before) = send_until_check(&mut c, p1());
    assert_eq!(before, 16);
}

#[test]
fn a_peer_that_takes_no_data_is_stalled_its_messages_wait_outside_the_kernel_and_others_flow() {
    let mut c = flowing();
    let (a, _) = send_until_check(&mut c, p1());
    let t0 = now();
    let (go, actions) = c.handle_status(t0, S, A1, Some(&status(A1, 0, 3)));
    assert!(!go);
    assert_eq!(
        events(&actions),
        vec![&AssocEvent::Stalled {
            socket: S,
            assoc: A1,
            rwnd: 0,
            pending_chunks: 3
        }]
    );
    assert_eq!(c.stalled(), 1);
    // The checked message waits in A1's queue, and so does every later one.
    let step = c.handle_transmit(t0, S, &a, b"m0", Transmit::Stalled);
    assert_eq!(
        step.result.unwrap(),
        SendOutcome::Queued { assoc: Some(A1) }
    );
    assert_eq!(
        counts(&step.actions),
        vec![],
        "not a full buffer (sendq_full)"
    );
    for m in [&b"m1"[..], b"m2"] {
        match plan(&mut c, p1(), m, 0).unwrap() {
            Planned::Queued(o) => assert_eq!(o, SendOutcome::Queued { assoc: Some(A1) }),
            p => panic!("a message for a stalled association went on: {p:?}"),
        }
    }
    assert_eq!(c.queued(), 3);
    assert!(
        drain(&mut c).is_empty(),
        "the drainer leaves a stalled queue alone"
    );
    // Another association is not affected.
    let other = send_taken(&mut c, p2(), b"to p2");
    assert_eq!(other.result.unwrap(), SendOutcome::Sent { assoc: Some(A2) });
    // A1 drains: it resumes and its messages go, in order.
    let actions = c.handle_notification(
        t0 + Duration::from_secs(2),
        S,
        Notification::SenderDry { assoc_id: A1 },
        None,
        &[],
    );
    assert_eq!(
        events(&actions),
        vec![&AssocEvent::Resumed {
            socket: S,
            assoc: A1,
            stalled_for: Duration::from_secs(2)
        }]
    );
    assert!(actions.contains(&Action::Wake(S)));
    assert_eq!(c.stalled(), 0);
    let sent: Vec<Vec<u8>> = drain(&mut c).into_iter().map(|(_, d)| d).collect();
    assert_eq!(sent, vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
}

#[test]
fn a_window_smaller_than_a_message_stalls() {
    let mut c = flowing();
    send_until_check(&mut c, p1());
    // The association carries 1000-byte messages; 999 bytes of window do not take one.
    let (go, _) = c.handle_status(now(), S, A1, Some(&status(A1, 999, 0)));
    assert!(!go);
    assert_eq!(c.stalled(), 1);
}

#[test]
fn a_status_that_cannot_be_read_lets_the_send_find_out() {
    let mut c = flowing();
    send_until_check(&mut c, p1());
    let (go, actions) = c.handle_status(now(), S, A1, None);
    assert!(go);
    assert_eq!(actions, vec![]);
}

#[test]
fn a_queued_message_checked_and_found_stalled_goes_back_to_the_front() {
    let mut c = flowing();
    for _ in 0..16 {
        send_taken(&mut c, p1(), &[b'x'; 1000]).result.unwrap();
    }
    // The buffer is full: two messages queue.
    let (q1, q2) = (vec![b'1'; 1000], vec![b'2'; 1000]);
    for m in [&q1, &q2] {
        let budget = c.send_budget();
        match plan(&mut c, p1(), m, budget).unwrap() {
            Planned::Transmit(a) => {
                c.handle_transmit(now(), S, &a, m, Transmit::WouldBlock)
                    .result
                    .unwrap();
            }
            Planned::Queued(_) => {}
        }
    }
    // The drainer's first one must be checked: 16 KB went, and the window is shut.
    let q = c.poll_queued(S).unwrap();
    assert_eq!(q.data, q1);
    assert_eq!(q.attempt.check, Some(A1));
    let (go, _) = c.handle_status(now(), S, A1, Some(&status(A1, 0, 5)));
    assert!(!go);
    assert_eq!(
        c.handle_queued_result(now(), S, q, Transmit::Stalled),
        vec![]
    );
    assert_eq!(c.queued(), 2);
    assert!(c.poll_queued(S).is_none());
    c.handle_notification(
        now(),
        S,
        Notification::SenderDry { assoc_id: A1 },
        None,
        &[],
    );
    let sent: Vec<Vec<u8>> = drain(&mut c).into_iter().map(|(_, d)| d).collect();
    assert_eq!(sent, vec![q1, q2]);
}

/// Stalls `assoc` (up to `peer`) at `t`.
fn stall(c: &mut EndpointCore, assoc: AssocId, peer: SocketAddr, t: Instant) -> Vec<Action> {
    let (a, _) = send_until_check(c, peer);
    let (go, mut actions) = c.handle_status(t, S, assoc, Some(&status(assoc, 0, 4)));
    assert!(!go);
    actions.extend(
        c.handle_transmit(t, S, &a, b"held", Transmit::Stalled)
            .actions,
    );
    actions
}

#[test]
fn an_association_stalled_past_the_limit_is_aborted_and_its_messages_counted() {
    let mut c = flowing();
    assert_eq!(
        c.stall_timeout(),
        Duration::from_secs(32),
        "send_ttl's default"
    );
    let t0 = now();
    stall(&mut c, A1, p1(), t0);
    assert_eq!(c.handle_timeout(t0 + Duration::from_secs(31)), vec![]);
    let actions = c.handle_timeout(t0 + Duration::from_secs(33));
    assert!(actions.contains(&Action::Abort {
        socket: S,
        assoc: A1,
        reason: STALL_ABORT_REASON
    }));
    assert_eq!(
        counts(&actions),
        vec![
            Counter::SendDropped(SendDropCause::Stalled),
            Counter::SendFailed
        ]
    );
    assert!(events(&actions).contains(&&AssocEvent::StallAborted {
        socket: S,
        assoc: A1,
        stalled_for: Duration::from_secs(33),
        dropped: 1
    }));
    assert_eq!((c.stalled(), c.queued()), (0, 0));
    // The kernel's COMM_LOST after the ABORT finds nothing left to move.
    let actions = c.handle_notification(
        t0 + Duration::from_secs(33),
        S,
        assoc_change(AssocChangeState::CommLost, A1, 0),
        Some(p1()),
        &[],
    );
    assert_eq!(c.queued(), 0, "{actions:?}");
}

#[test]
fn the_stall_limit_follows_send_ttl_within_bounds() {
    for (ttl, want) in [(0, 32), (1000, 5), (10_000, 10), (120_000, 32)] {
        let c = core(&[(Param::SendTtl, ttl)]);
        assert_eq!(
            c.stall_timeout(),
            Duration::from_secs(want),
            "send_ttl {ttl}"
        );
    }
}

#[test]
fn one_stalled_association_too_many_aborts_the_longest_stalled() {
    let mut c = bounded(&[(Param::SocketSndbuf, 65_536)], wide(), 8);
    let t0 = now();
    for i in 0..=MAX_STALLED {
        let n = u32::try_from(i).unwrap() + 10;
        let peer = SocketAddr::from(([10, 0, 1, u8::try_from(i).unwrap()], 5060));
        up(&mut c, AssocId(n), peer);
        let actions = stall(
            &mut c,
            AssocId(n),
            peer,
            t0 + Duration::from_secs(u64::from(n)),
        );
        let aborted: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, Action::Abort { .. }))
            .collect();
        if i < MAX_STALLED {
            assert!(aborted.is_empty(), "{i}: {actions:?}");
        } else {
            assert_eq!(
                aborted,
                vec![&Action::Abort {
                    socket: S,
                    assoc: AssocId(10),
                    reason: STALL_ABORT_REASON
                }]
            );
        }
    }
    assert_eq!(c.stalled(), MAX_STALLED);
}

#[test]
fn a_stalled_association_that_goes_down_sends_its_messages_by_address() {
    let mut c = flowing();
    stall(&mut c, A1, p1(), now());
    c.handle_notification(
        now(),
        S,
        assoc_change(AssocChangeState::CommLost, A1, 0),
        Some(p1()),
        &[],
    );
    assert_eq!(c.stalled(), 0);
    let sent = drain(&mut c);
    assert_eq!(sent, vec![(Route::Addr(p1()), b"held".to_vec())]);
}

#[test]
fn with_tracking_off_no_association_is_checked() {
    let mut c = bounded(
        &[
            (Param::SocketSndbuf, 65_536),
            (Param::AssocReuse, 0),
            (Param::AssocTracking, 0),
        ],
        wide(),
        8,
    );
    for _ in 0..100 {
        match c.plan_send(S, p1(), &[b'x'; 1000], 0) {
            SendPlan::Transmit(a) => assert_eq!(a.check, None),
            SendPlan::Done(step) => panic!("{step:?}"),
        }
    }
}
