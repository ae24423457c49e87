//! Fuzzes the BTF reader the loader runs on the kernel's blobs at load time: parsing a base
//! blob and a split blob on top of it, then every lookup the loader makes (each member the
//! programs read, the temporary-association flag, the enum values the probes assume, struct
//! sizes, functions). Any panic is a bug; so is a resolution that disagrees with the lookup
//! it is made of.
//!
//! Input: a base blob's length (u32, little endian), the base, then an optional split blob
//! (`sipsctp_ebpf_events::testing::fuzz_input` makes one, and the seeds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipsctp_ebpf_events::{
    btf::Btf,
    layout::{self, ASSOC_STATES, Field, IDENTITY, RTX_REASONS, TEMP_FLAG, TRANSPORT_CMDS},
    testing::split_fuzz_input,
};

fn exercise(btf: &Btf) {
    let r = layout::resolve(btf);
    for &f in Field::ALL {
        match (btf.field(f.path()), r.missing.get(&f)) {
            (Ok(found), None) => assert_eq!(found.size, f.spec().1, "{f:?}"),
            (Ok(_), Some(e)) => assert!(matches!(e, layout::FieldError::Size { .. }), "{f:?}: {e}"),
            (Err(_), missing) => assert!(missing.is_some(), "{f:?} resolved but its lookup fails"),
        }
    }
    assert_eq!(btf.flag(TEMP_FLAG).is_err(), r.temp_flag.is_some());
    for enums in [RTX_REASONS, TRANSPORT_CMDS, ASSOC_STATES] {
        let _ = r.check(btf, IDENTITY, enums).map(|s| s.len());
        for &(name, variant, _) in enums {
            let _ = btf.enum_value(name, variant);
        }
    }
    for name in [
        "sock",
        "net",
        "sctp_association",
        "sctp_transport",
        "sctp_addr",
    ] {
        let _ = btf.composite_size(name);
    }
    let _ = btf.has_func("sctp_transport_update_rto");
    let _ = btf.type_count();
}

fuzz_target!(|data: &[u8]| {
    let (base, split) = split_fuzz_input(data);
    let Ok(btf) = Btf::parse(base) else {
        return;
    };
    exercise(&btf);
    if let Some(split) = split
        && let Ok(both) = btf.parse_split(split)
    {
        exercise(&both);
    }
});
