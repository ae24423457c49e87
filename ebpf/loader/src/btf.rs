//! The kernel's BTF: [`from_sys_fs`] reads `/sys/kernel/btf`. The reader itself ([`Btf`],
//! base + split blobs, member offsets by name) is the pure [`sipsctp_ebpf_events::btf`],
//! re-exported here.

use std::{fs, path::Path};

pub use sipsctp_ebpf_events::btf::*;

/// Reads `/sys/kernel/btf/vmlinux` and, when `module` is given and its file exists,
/// `/sys/kernel/btf/<module>` on top of it. A module built into the kernel has no file of its
/// own (its types are in vmlinux): then vmlinux's BTF alone is returned.
///
/// # Errors
/// [`BtfError::Io`] when vmlinux's BTF (or the module's, when it exists) cannot be read; a
/// parse error when either blob is malformed.
pub fn from_sys_fs(module: Option<&str>) -> Result<Btf, BtfError> {
    let dir = Path::new("/sys/kernel/btf");
    let base = Btf::parse(&read(&dir.join("vmlinux"))?)?;
    match module {
        Some(m) => {
            let path = dir.join(m);
            if path.exists() {
                base.parse_split(&read(&path)?)
            } else {
                Ok(base)
            }
        }
        None => Ok(base),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
    fs::read(path).map_err(|source| BtfError::Io {
        path: path.display().to_string(),
        source,
    })
}
