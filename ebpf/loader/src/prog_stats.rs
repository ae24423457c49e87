//! Statistics the kernel keeps about skipped probe runs that aya 0.14 does not expose, read
//! with `BPF_OBJ_GET_INFO_BY_FD`. A kprobe hit is skipped, and its event lost, when it nests in
//! another probe on the same CPU (a softirq, e.g. an SCTP timer, interrupting a program that
//! runs in process context): the kprobe layer counts it in the link's `missed`
//! (`bpf_link_info.perf_event.kprobe.missed`), the BPF layer in the program's
//! `recursion_misses` (`bpf_prog_info`). Linux reports both for kprobes since 6.7 ("bpf: Add
//! missed stats for kprobes"); before, such a run is skipped without a trace.
//!
//! The one `unsafe` concern of the loader outside aya: `bpf(2)` calls on program and link fds.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use aya_obj::generated::{
    bpf_attr, bpf_cmd, bpf_link_info, bpf_link_type, bpf_perf_event_type, bpf_prog_info,
};

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

/// A new fd for the BPF link whose id is `id` (`BPF_LINK_GET_FD_BY_ID`: needs CAP_SYS_ADMIN,
/// so call it while attaching; reading the link's statistics through it later needs nothing).
///
/// # Errors
/// The `bpf(2)` call failed (no privilege, no such link).
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: all zeroes is a valid bpf_attr (a union of plain integer structs).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    // SAFETY: BPF_LINK_GET_FD_BY_ID reads `link_id` and `open_flags` (0) from `attr`, which is
    // as large as the size passed, and returns a new fd or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_LINK_GET_FD_BY_ID as libc::c_long,
            std::ptr::from_mut(&mut attr),
            size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(r).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `missed` of a kprobe or kretprobe perf-event link: hits the kprobe layer skipped. `None`
/// for another kind of link.
///
/// # Errors
/// The `bpf(2)` call failed (e.g. `fd` is not a link).
pub fn kprobe_link_missed(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // SAFETY: bpf_link_info is plain C data (integers, unions of integer structs); all zeroes
    // is valid, and a zero `func_name`/`name_len` tells the kernel not to copy the name.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the bpf_attr union.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = u32::try_from(fd.as_raw_fd())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative fd"))?;
    attr.info.info_len = size_of::<bpf_link_info>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes into `info`, alive and
    // writable for the whole call; `attr` is as large as the size passed.
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
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_PERF_EVENT as u32 {
        return Ok(None);
    }
    // SAFETY: the kernel filled the perf_event member: the link's type says so.
    let perf = unsafe { info.__bindgen_anon_1.perf_event };
    let kprobe = [
        bpf_perf_event_type::BPF_PERF_EVENT_KPROBE as u32,
        bpf_perf_event_type::BPF_PERF_EVENT_KRETPROBE as u32,
    ];
    if !kprobe.contains(&perf.type_) {
        return Ok(None);
    }
    // SAFETY: for both kprobe types the kernel fills the kprobe member.
    Ok(Some(unsafe { perf.__bindgen_anon_1.kprobe.missed }))
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
