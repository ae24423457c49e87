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

/// Plain C data the kernel fills: all zeroes is a valid value, and so is any bit pattern.
///
/// # Safety
/// Only for `#[repr(C)]` structs and unions of integers (and arrays and unions of them).
unsafe trait KernelData: Sized {
    /// All zeroes.
    fn zeroed() -> Self {
        // SAFETY: the trait's contract: all zeroes is a valid value.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: bindgen's bpf_attr, bpf_prog_info and bpf_link_info are #[repr(C)] structs and unions
// of integers (the kernel's pointers are u64 fields).
unsafe impl KernelData for bpf_attr {}
// SAFETY: as above.
unsafe impl KernelData for bpf_prog_info {}
// SAFETY: as above.
unsafe impl KernelData for bpf_link_info {}

/// `bpf(2)`: `cmd` with `attr`; the call's non-negative result, or the OS error.
///
/// # Safety
/// Every pointer `attr` carries for `cmd` must point to live memory, writable where the kernel
/// writes, of the length `attr` gives.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is as large as the size passed, and the kernel reads no more of it; the
    // pointers in it are valid (the caller's contract).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `BPF_OBJ_GET_INFO_BY_FD`: the information about the program or link behind `fd`.
fn obj_info<T: KernelData>(fd: BorrowedFd<'_>) -> io::Result<T> {
    // Zero: fields such as a link's `func_name` pointer stay 0, so the kernel copies nothing
    // out through them.
    let mut info = T::zeroed();
    let mut attr = bpf_attr::zeroed();
    attr.info.bpf_fd = u32::try_from(fd.as_raw_fd())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative fd"))?;
    attr.info.info_len = size_of::<T>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: the one pointer, `attr.info.info`, is `info`: alive and writable for the whole
    // call, `info_len` bytes long.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info)
}

/// `recursion_misses` of the program behind `fd`.
///
/// # Errors
/// The `bpf(2)` call failed (e.g. `fd` is not a program).
pub fn recursion_misses(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(obj_info::<bpf_prog_info>(fd)?.recursion_misses)
}

/// A new fd for the BPF link whose id is `id` (`BPF_LINK_GET_FD_BY_ID`: needs CAP_SYS_ADMIN,
/// so call it while attaching; reading the link's statistics through it later needs nothing).
///
/// # Errors
/// The `bpf(2)` call failed (no privilege, no such link).
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = bpf_attr::zeroed();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    // SAFETY: BPF_LINK_GET_FD_BY_ID reads `link_id` and `open_flags` (0): no pointer.
    let r = unsafe { bpf(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr) }?;
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
    let info = obj_info::<bpf_link_info>(fd)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_PERF_EVENT as u32 {
        return Ok(None);
    }
    // SAFETY: reading a union member of plain integers is defined for any bits; the link's
    // type says the kernel filled this one.
    let perf = unsafe { info.__bindgen_anon_1.perf_event };
    let kprobe = [
        bpf_perf_event_type::BPF_PERF_EVENT_KPROBE as u32,
        bpf_perf_event_type::BPF_PERF_EVENT_KRETPROBE as u32,
    ];
    if !kprobe.contains(&perf.type_) {
        return Ok(None);
    }
    // SAFETY: as above; for both kprobe types the kernel fills the kprobe member.
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
