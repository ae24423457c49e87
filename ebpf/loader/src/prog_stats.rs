//! A program statistic the kernel keeps but aya 0.14 does not expose: `recursion_misses` of
//! `bpf_prog_info`, read with `BPF_OBJ_GET_INFO_BY_FD`. For kprobe programs the kernel counts
//! there the runs it skipped because a BPF program was already running on the same CPU (a
//! softirq, e.g. an SCTP timer, interrupting a program that runs in process context). Linux
//! counts these for kprobes since 6.7 ("bpf: Count missed stats in trace_call_bpf"); before,
//! such a run is skipped without a trace, and the field stays 0.
//!
//! The one `unsafe` concern of the loader outside aya: a `bpf(2)` call on a program fd.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// Whether a kernel of this release (`uname -r`, e.g. `6.12.117+deb12-amd64`) counts kprobe
/// runs skipped for recursion in `recursion_misses`: 6.7 and later.
pub fn counts_kprobe_misses(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 7),
        _ => false,
    }
}

/// The running kernel's release, from `/proc/sys/kernel/osrelease`.
pub fn kernel_release() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_owned())
}

/// `recursion_misses` of the program behind `fd`.
///
/// # Errors
/// The `bpf(2)` call failed (e.g. `fd` is not a program).
pub fn recursion_misses(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: bpf_prog_info is a plain C struct of integers (pointers are u64 fields); all
    // zeroes is a valid value, and the one the kernel expects for fields it should not read.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: the same holds for the bpf_attr union.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    let fd = u32::try_from(fd.as_raw_fd())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative fd"))?;
    attr.info.bpf_fd = fd;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD reads `attr.info` (an fd, and a pointer and length that
    // describe `info`, alive and writable for the whole call) and writes at most `info_len`
    // bytes into `info`; `attr` is as large as the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::from_mut(&mut attr),
            size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kprobe_misses_are_counted_from_6_7() {
        for (release, counts) in [
            ("6.12.117+deb12-amd64", true),
            ("6.7.0", true),
            ("7.0.1-arch1", true),
            ("6.6.58-1", false),
            ("6.1.0-56-amd64", false),
            ("5.15.0", false),
            ("garbage", false),
            ("", false),
        ] {
            assert_eq!(counts_kprobe_misses(release), counts, "{release}");
        }
    }

    #[test]
    fn a_non_program_fd_is_an_error_not_a_panic() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        use std::os::fd::AsFd as _;
        assert!(recursion_misses(f.as_fd()).is_err());
    }
}
