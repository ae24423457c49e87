//! Fuzzes the parser of the ancillary data `recvmsg(2)` returns with each SCTP message
//! (`SCTP_RCVINFO`, through the crate's `fuzzing` feature): the walk over `cmsghdr`s of any
//! length and level. Any panic is a bug; so is a result that changes between two parses of
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipsctp_sctp::fuzzing::parse_rcvinfo;

fuzz_target!(|data: &[u8]| {
    let first = parse_rcvinfo(data);
    let again = parse_rcvinfo(data);
    assert_eq!(first.is_some(), again.is_some());
    if let (Some(a), Some(b)) = (first, again) {
        assert_eq!((a.stream, a.ppid, a.assoc_id, a.tsn), (b.stream, b.ppid, b.assoc_id, b.tsn));
    }
});
