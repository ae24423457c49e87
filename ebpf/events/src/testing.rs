//! Test support: a builder of BTF blobs and kernel-shaped samples, for unit tests here and in
//! the loader (feature `test-util`) and for the fuzz seeds (`ebpf/events/fuzz`). Not for
//! production code: it does not check that counts and sizes fit the format's fields.

use sipsctp_ebpf_common::{
    KernelEvent, family, kind, path_command, path_state, rtx_reason, sac_state, t1_timer,
};

use crate::btf::{
    KIND_ARRAY, KIND_CONST, KIND_ENUM, KIND_FUNC, KIND_FUNC_PROTO, KIND_FWD, KIND_INT, KIND_PTR,
    KIND_STRUCT, KIND_TYPEDEF, KIND_UNION, MAGIC,
};

/// Builds BTF blobs by hand (little endian), the way pahole lays them out.
#[derive(Clone, Debug)]
pub struct Builder {
    /// The type section so far.
    pub(crate) types: Vec<u8>,
    /// The string section so far.
    strings: Vec<u8>,
    /// Id the next type gets.
    next_id: u32,
    /// String offset of this blob's first string (the base's length for a split blob).
    str_base: u32,
}

impl Builder {
    /// An empty base (self-contained) blob: ids from 1, the string section starts with "".
    pub fn base() -> Builder {
        Builder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
            str_base: 0,
        }
    }

    /// An empty split blob on top of `base` (as built so far): its ids and string offsets
    /// continue after the base's.
    pub fn split_on(base: &Builder) -> Builder {
        Builder {
            types: Vec::new(),
            strings: Vec::new(),
            next_id: base.next_id,
            str_base: base.str_base + base.strings.len() as u32,
        }
    }

    /// Adds a string to the string section; its offset (0 for "" in a base).
    pub fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() && self.str_base == 0 {
            return 0;
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn header(&mut self, name: &str, kind: u8, kind_flag: bool, vlen: u16, st: u32) -> u32 {
        let name_off = if name.is_empty() {
            0
        } else {
            self.string(name)
        };
        let info = (u32::from(kind_flag) << 31) | (u32::from(kind) << 24) | u32::from(vlen);
        for w in [name_off, info, st] {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// `INT` of `size` bytes (unsigned); its id.
    pub fn int(&mut self, name: &str, size: u32) -> u32 {
        let id = self.header(name, KIND_INT, false, 0, size);
        self.types.extend_from_slice(&(size * 8).to_le_bytes());
        id
    }

    /// `PTR` to type `to`; its id.
    pub fn ptr(&mut self, to: u32) -> u32 {
        self.header("", KIND_PTR, false, 0, to)
    }

    /// `TYPEDEF name` of type `to`; its id.
    pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
        self.header(name, KIND_TYPEDEF, false, 0, to)
    }

    /// `CONST` of type `to`; its id.
    pub fn constant(&mut self, to: u32) -> u32 {
        self.header("", KIND_CONST, false, 0, to)
    }

    /// `ARRAY` of `n` elements of type `elem`, indexed by type `index`; its id.
    pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        let id = self.header("", KIND_ARRAY, false, 0, 0);
        for w in [elem, index, n] {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        id
    }

    /// `FUNC_PROTO` returning `ret` with unnamed parameters of types `params`; its id.
    pub fn func_proto(&mut self, ret: u32, params: &[u32]) -> u32 {
        let id = self.header("", KIND_FUNC_PROTO, false, params.len() as u16, ret);
        for &p in params {
            self.types.extend_from_slice(&0u32.to_le_bytes());
            self.types.extend_from_slice(&p.to_le_bytes());
        }
        id
    }

    /// `FUNC name` of prototype `proto`; its id.
    pub fn func(&mut self, name: &str, proto: u32) -> u32 {
        self.header(name, KIND_FUNC, false, 0, proto)
    }

    /// `members`: (name, type, bit offset, bitfield size). Any bitfield sets kind_flag.
    fn composite(
        &mut self,
        kind: u8,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32, u32)],
    ) -> u32 {
        let kind_flag = members.iter().any(|m| m.3 != 0);
        let id = self.header(name, kind, kind_flag, members.len() as u16, size);
        for &(n, ty, bits, bf) in members {
            let off = if n.is_empty() { 0 } else { self.string(n) };
            let word = if kind_flag { (bf << 24) | bits } else { bits };
            for w in [off, ty, word] {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }
        id
    }

    /// `STRUCT name` of `size` bytes; `members`: (name, type, bit offset, bitfield
    /// size), "" for an anonymous member. Its id.
    pub fn structure(&mut self, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
        self.composite(KIND_STRUCT, name, size, members)
    }

    /// `UNION name`, members as for [`Builder::structure`]; its id.
    pub fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
        self.composite(KIND_UNION, name, size, members)
    }

    /// `ENUM name` (signed, 4 bytes) with `values`; its id.
    pub fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let id = self.header(name, KIND_ENUM, true, values.len() as u16, 4);
        for &(n, v) in values {
            let off = self.string(n);
            self.types.extend_from_slice(&off.to_le_bytes());
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        id
    }

    /// `FWD name` (a forward-declared struct); its id.
    pub fn fwd(&mut self, name: &str) -> u32 {
        self.header(name, KIND_FWD, false, 0, 0)
    }

    /// The blob: header, type section, string section.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(1); // version
        out.push(0); // flags
        let hdr_len = 24u32;
        let type_len = self.types.len() as u32;
        for w in [hdr_len, 0, type_len, type_len, self.strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }

    /// The blob written big endian: the magic, the header's and every type record's 32-bit
    /// words swapped (a type section is made of 32-bit words only), the strings as they are.
    pub fn build_big_endian(&self) -> Vec<u8> {
        let mut out = self.build();
        out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        let str_start = 24 + self.types.len();
        for w in out[4..str_start].chunks_exact_mut(4) {
            w.reverse();
        }
        out
    }
}

/// A base (vmlinux-like) and a split (module-like) blob shaped like the kernel's types
/// the probes use, with offsets that differ from any real kernel.
pub fn kernel_like() -> (Vec<u8>, Vec<u8>) {
    let mut b = Builder::base();
    let u8_t = b.int("unsigned char", 1);
    let u16_t = b.int("short unsigned int", 2);
    let u32_t = b.int("unsigned int", 4);
    let int_t = b.int("int", 4);
    let ulong = b.int("long unsigned int", 8);
    let net_fwd = b.fwd("net");
    let net_ptr = b.ptr(net_fwd);
    // typedef struct { struct net *net; } possible_net_t;
    let pnet = b.structure("", 8, &[("net", net_ptr, 0, 0)]);
    let pnet_t = b.typedef("possible_net_t", pnet);
    // struct sock_common { ...; union { u32 a; u32 b; }; possible_net_t skc_net; }
    let anon_union = b.union(
        "",
        4,
        &[("skc_hash", u32_t, 0, 0), ("skc_u16hashes", u32_t, 0, 0)],
    );
    let skc = b.structure(
        "sock_common",
        48,
        &[
            ("skc_daddr", u32_t, 0, 0),
            ("", anon_union, 32, 0),
            ("skc_family", u16_t, 64, 0),
            ("skc_state", u8_t, 80, 4), // a bitfield
            ("skc_net", pnet_t, 320, 0),
        ],
    );
    let _sock = b.structure(
        "sock",
        256,
        &[("__sk_common", skc, 0, 0), ("sk_rcvbuf", int_t, 1536, 0)],
    );
    let ns_common = b.structure(
        "ns_common",
        24,
        &[("stashed", ulong, 0, 0), ("inum", u32_t, 128, 0)],
    );
    let _net = b.structure(
        "net",
        512,
        &[("passive", int_t, 0, 0), ("ns", ns_common, 1024, 0)],
    );
    let idx = b.int("__ARRAY_SIZE_TYPE__", 4);
    let bytes16 = b.array(u8_t, idx, 16);
    let in6 = b.structure("in6_addr", 16, &[("s6_addr", bytes16, 0, 0)]);
    let in4 = b.structure("in_addr", 4, &[("s_addr", u32_t, 0, 0)]);
    let sin = b.structure(
        "sockaddr_in",
        16,
        &[
            ("sin_family", u16_t, 0, 0),
            ("sin_port", u16_t, 16, 0),
            ("sin_addr", in4, 32, 0),
        ],
    );
    let sin6 = b.structure(
        "sockaddr_in6",
        28,
        &[("sin6_family", u16_t, 0, 0), ("sin6_addr", in6, 64, 0)],
    );
    let sa = b.structure("sockaddr", 16, &[("sa_family", u16_t, 0, 0)]);
    let _ = (sin, sin6, sa, int_t);
    let base = b.build();

    let mut s = Builder::split_on(&b);
    let addr = s.union(
        "sctp_addr",
        28,
        &[("v4", sin, 0, 0), ("v6", sin6, 0, 0), ("sa", sa, 0, 0)],
    );
    let asoc_fwd = s.fwd("sctp_association");
    let asoc_ptr = s.ptr(asoc_fwd);
    let tp = s.structure(
        "sctp_transport",
        800,
        &[
            ("ipaddr", addr, 1088, 0),
            ("asoc", asoc_ptr, 1344, 0),
            ("rto", ulong, 1408, 0),
            ("rtt", u32_t, 1472, 0),
        ],
    );
    let tp_ptr = s.ptr(tp);
    let sock_fwd = s.fwd("sock");
    let sock_ptr = s.ptr(sock_fwd);
    let bind_addr = s.structure("sctp_bind_addr", 24, &[("port", u16_t, 0, 0)]);
    let ep_common = s.structure(
        "sctp_ep_common",
        96,
        &[("sk", sock_ptr, 128, 0), ("bind_addr", bind_addr, 448, 0)],
    );
    let assoc_t = s.typedef("sctp_assoc_t", int_t);
    let c_assoc_t = s.constant(assoc_t);
    let peer = s.structure(
        "",
        400,
        &[
            ("transport_count", u16_t, 0, 0),
            ("port", u16_t, 16, 0),
            ("primary_path", tp_ptr, 64, 0),
        ],
    );
    let _asoc = s.structure(
        "sctp_association",
        4000,
        &[
            ("base", ep_common, 0, 0),
            ("assoc_id", c_assoc_t, 1024, 0),
            ("peer", peer, 2048, 0),
            ("temp", u8_t, 14049, 1),
        ],
    );
    s.enumeration(
        "sctp_retransmit_reason",
        &[
            ("SCTP_RTXR_T3_RTX", 0),
            ("SCTP_RTXR_FAST_RTX", 1),
            ("SCTP_RTXR_PMTUD", 2),
            ("SCTP_RTXR_T1_RTX", 3),
        ],
    );
    let proto = s.func_proto(0, &[tp_ptr, u32_t]);
    s.func("sctp_transport_update_rto", proto);
    (base, s.build())
}

/// One fuzz input of the `btf` target from a base blob and an optional split blob: the base's
/// length (u32, little endian), the base, then the split (see [`split_fuzz_input`]).
pub fn fuzz_input(base: &[u8], split: Option<&[u8]>) -> Vec<u8> {
    let len = u32::try_from(base.len()).unwrap_or(u32::MAX);
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(base);
    out.extend_from_slice(split.unwrap_or(&[]));
    out
}

/// The base and split blobs of a `btf` fuzz input (see [`fuzz_input`]). A length past the end
/// makes the rest the base; an empty rest after the base means no split.
pub fn split_fuzz_input(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return (data, None);
    };
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    match rest.split_at_checked(len) {
        Some((base, [])) => (base, None),
        Some((base, split)) => (base, Some(split)),
        None => (rest, None),
    }
}

/// One record of each event kind, shaped like what the probes write (IPv4, IPv6 and
/// pathless events among them), each with a file name for the fuzz seeds.
pub fn sample_records() -> Vec<(&'static str, KernelEvent)> {
    let v4 = |kind, values| KernelEvent {
        kind,
        family: family::INET,
        tgid: 4242,
        ts_ns: 73_000_123_456,
        netns: 4_026_531_840,
        assoc_id: 3,
        local_port: 5060,
        peer_port: 40_000,
        peer_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        assoc: 0xffff_8880_1000_0000,
        transport: 0xffff_8880_2000_0000,
        values,
        ..KernelEvent::default()
    };
    let v6 = |kind, values| KernelEvent {
        family: family::INET6,
        peer_addr: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
        ..v4(kind, values)
    };
    let pathless = |kind, values| KernelEvent {
        family: family::NONE,
        peer_addr: [0; 16],
        transport: 0,
        tgid: 0,
        assoc_id: 0,
        ..v4(kind, values)
    };
    vec![
        ("rto_update", v4(kind::RTO_UPDATE, [2, 50, 12, 9, 0, 0])),
        (
            "retransmit_t3",
            v4(
                kind::RETRANSMIT,
                [rtx_reason::T3_RTX, 250, 4380, 9000, 1200, 1],
            ),
        ),
        (
            "retransmit_fast_v6",
            v6(
                kind::RETRANSMIT,
                [rtx_reason::FAST_RTX, 250, 4380, 9000, 1200, 0],
            ),
        ),
        (
            "t3_rtx_expired",
            v4(kind::T3_RTX_EXPIRED, [500, 2, 2, 1500, 3000, 0]),
        ),
        (
            "t1_init_expired",
            pathless(kind::T1_EXPIRED, [t1_timer::INIT, 1, 8, 750, 0, 0]),
        ),
        (
            "t1_cookie_expired",
            v4(kind::T1_EXPIRED, [t1_timer::COOKIE, 2, 8, 1500, 0, 0]),
        ),
        ("assoc_new", pathless(kind::ASSOC_NEW, [1, 0, 0, 0, 0, 0])),
        ("assoc_free", v4(kind::ASSOC_FREE, [3, 4, 0, 0, 0, 0])),
        (
            "assoc_change_up",
            v4(kind::ASSOC_CHANGE, [sac_state::COMM_UP, 0, 10, 10, 0, 0]),
        ),
        (
            "assoc_change_cant_str",
            pathless(
                kind::ASSOC_CHANGE,
                [sac_state::CANT_STR_ASSOC, 1, 10, 10, 0, 0],
            ),
        ),
        (
            "path_change_pf_v6",
            v6(
                kind::PATH_CHANGE,
                [path_command::PF, 0, path_state::ACTIVE, 1, 0, 0],
            ),
        ),
        (
            "primary_change",
            v4(kind::PRIMARY_CHANGE, [0xffff_8880_2000_1000, 0, 0, 0, 0, 0]),
        ),
        (
            "heartbeat_sent",
            v4(
                kind::HEARTBEAT_SENT,
                [250, 0, 1, path_state::UNCONFIRMED, 0, 0],
            ),
        ),
        (
            "heartbeat_ack_v6",
            v6(kind::HEARTBEAT_ACK, [250, 0, path_state::ACTIVE, 0, 0, 0]),
        ),
    ]
}

/// The types a trimmed real vmlinux BTF seed starts from: those the programs' identity
/// members go through (see [`crate::layout::IDENTITY`]) that vmlinux itself has.
pub const VMLINUX_SEED_ROOTS: &[&str] = &[
    "sock",
    "net",
    "sockaddr",
    "sockaddr_in",
    "sockaddr_in6",
    "sctp_retransmit_reason",
];

/// Most types kept in a trimmed real vmlinux BTF seed.
pub const VMLINUX_SEED_TYPES: usize = 300;

#[cfg(test)]
mod tests {
    //! The fuzz seeds (`ebpf/events/fuzz/seeds`) are made here, and checked to be what the
    //! code makes today: a change of the record layout or of the samples fails this test until
    //! `SIPSCTP_WRITE_SEEDS=1 cargo test -p sipsctp-ebpf-events fuzz_seeds` rewrites them
    //! (that run also trims this host's `/sys/kernel/btf/vmlinux` into `btf/vmlinux_trimmed`).

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::{SctpEvent, btf::Btf, hz::Hz, layout};

    fn seeds(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target)
    }

    fn writing() -> bool {
        std::env::var_os("SIPSCTP_WRITE_SEEDS").is_some_and(|v| v == "1")
    }

    /// Compares (or, when writing, writes) one seed file.
    fn check(path: &Path, bytes: &[u8]) {
        if writing() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let on_disk = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == bytes,
            "{} is stale: rewrite the seeds with SIPSCTP_WRITE_SEEDS=1",
            path.display()
        );
    }

    #[test]
    fn fuzz_seeds_record() {
        let hz = Hz::new(250).unwrap();
        for (name, record) in sample_records() {
            let bytes = record.to_bytes();
            let decoded = SctpEvent::decode(&bytes, hz);
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
            check(&seeds("record").join(format!("{name}.bin")), &bytes);
        }
    }

    #[test]
    fn fuzz_seeds_btf() {
        let (base, split) = kernel_like();
        let input = fuzz_input(&base, Some(&split));
        assert_eq!(split_fuzz_input(&input), (&base[..], Some(&split[..])));
        check(&seeds("btf").join("kernel_like.bin"), &input);

        let mut b = Builder::base();
        let int = b.int("int", 4);
        b.structure("s", 8, &[("a", int, 0, 0), ("b", int, 32, 0)]);
        let be = b.build_big_endian();
        let btf = Btf::parse(&be).unwrap();
        assert_eq!(btf.field("s.b").unwrap().offset, 4);
        check(&seeds("btf").join("big_endian.bin"), &fuzz_input(&be, None));

        let trimmed = seeds("btf").join("vmlinux_trimmed.bin");
        if writing()
            && let Ok(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux")
        {
            let blob = Btf::parse(&vmlinux)
                .unwrap()
                .subset(VMLINUX_SEED_ROOTS, VMLINUX_SEED_TYPES)
                .unwrap();
            std::fs::write(&trimmed, fuzz_input(&blob, None)).unwrap();
        }
        // Whatever kernel it came from, the trimmed blob keeps the identity members that
        // vmlinux has, and the kinds of a real kernel's BTF.
        let input = std::fs::read(&trimmed).unwrap();
        let (blob, split) = split_fuzz_input(&input);
        assert_eq!(split, None);
        let btf = Btf::parse(blob).unwrap();
        let r = layout::resolve(&btf);
        for f in [layout::Field::SockNet, layout::Field::NetInum] {
            assert!(
                !r.missing.contains_key(&f),
                "{f:?}: {:?}",
                r.missing.get(&f)
            );
        }
        assert!(btf.type_count() <= VMLINUX_SEED_TYPES + 20);
    }

    #[test]
    fn fuzz_inputs_split_without_panicking() {
        assert_eq!(split_fuzz_input(&[]), (&[][..], None));
        assert_eq!(split_fuzz_input(&[1, 2]), (&[1, 2][..], None));
        assert_eq!(split_fuzz_input(&[9, 0, 0, 0, 1]), (&[1][..], None));
        assert_eq!(
            split_fuzz_input(&[1, 0, 0, 0, 1, 2]),
            (&[1][..], Some(&[2][..]))
        );
        assert_eq!(split_fuzz_input(&[0, 0, 0, 0]), (&[][..], None));
    }
}
