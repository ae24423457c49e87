//! Empty on purpose: the library target exists so that `ebpf/loader` can name this crate as a
//! build dependency (cargo then rebuilds the loader when the programs change). The programs
//! themselves are the `sipsctp-probes` binary, built for `bpfel-unknown-none`.
#![no_std]
