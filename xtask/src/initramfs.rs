//! The VM's initramfs: a static busybox, the modules needed to reach the 9p shares (resolved
//! from the kernel's own `modules.dep`, so it works across kernel versions), and stage 1 of the
//! guest init. Everything else comes from the host's root, shared read-only over 9p.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    kernel::Kernel,
    util::{fnv1a, step},
};

/// Stage 1 of the guest init (PID 1 in the initramfs).
pub const INIT: &str = include_str!("../guest/init");
/// Stage 2, run from the control share on the final root.
pub const STAGE2: &str = include_str!("../guest/stage2");

/// The modules stage 1 loads before it can mount anything over 9p; their dependencies are
/// added from modules.dep. Built-in ones are skipped.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// The static busybox from Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";

/// Returns the initramfs for `kernel`, building it when the cached one is missing or stale
/// (the key covers the init script and busybox).
pub fn ensure(kernel: &Kernel) -> Result<PathBuf> {
    let busybox =
        fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX} (package busybox-static)"))?;
    let key = fnv1a(&[INIT.as_bytes(), &busybox, kernel.release.as_bytes()]);
    let out = kernel.dir.join(format!("initramfs-{key:016x}.cpio"));
    if out.is_file() {
        return Ok(out);
    }
    step(format!("building the initramfs for {}", kernel.release));
    let staging = kernel.dir.join("initramfs.staging");
    let _ = fs::remove_dir_all(&staging);
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "newroot",
        "boot-mods",
    ] {
        fs::create_dir_all(staging.join(d))?;
    }
    fs::write(staging.join("bin/busybox"), &busybox)?;
    set_mode(&staging.join("bin/busybox"), 0o755)?;
    fs::write(staging.join("init"), INIT)?;
    set_mode(&staging.join("init"), 0o755)?;

    let order = boot_module_order(&kernel.modules())?;
    let mut names = String::new();
    for (name, rel) in &order {
        let src = kernel.modules().join(rel);
        let dst = staging.join("boot-mods").join(format!("{name}.ko"));
        decompress_module(&src, &dst)?;
        names.push_str(name);
        names.push('\n');
    }
    fs::write(staging.join("boot-mods/order"), names)?;

    write_cpio(&staging, &out)?;
    fs::remove_dir_all(&staging)?;
    // Older images of this kernel are stale now.
    for e in fs::read_dir(&kernel.dir)?.flatten() {
        let p = e.path();
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("initramfs-") && n.ends_with(".cpio") && p != out {
            let _ = fs::remove_file(p);
        }
    }
    Ok(out)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Module name as the kernel spells it: file stem without `.ko[.xz|.zst|.gz]`, `-` as `_`.
fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The boot modules and their dependencies, dependencies first, as `(name, path in tree)`.
fn boot_module_order(modules: &Path) -> Result<Vec<(String, String)>> {
    let dep = fs::read_to_string(modules.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", modules.display()))?;
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let needs = rest.split_whitespace().map(str::to_owned).collect();
        deps.insert(module_name(path), (path.to_owned(), needs));
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for m in BOOT_MODULES {
        if builtin.contains(*m) {
            continue;
        }
        visit(m, &deps, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    deps: &BTreeMap<String, (String, Vec<String>)>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, String)>,
) -> Result<()> {
    if !seen.insert(name.to_owned()) {
        return Ok(());
    }
    let (path, needs) = deps
        .get(name)
        .ok_or_else(|| anyhow!("module {name} is neither in modules.dep nor built in"))?;
    for n in needs {
        visit(&module_name(n), deps, seen, order)?;
    }
    order.push((name.to_owned(), path.clone()));
    Ok(())
}

/// Copies a module, decompressing `.ko.xz` / `.ko.zst` (busybox insmod takes plain ELF).
fn decompress_module(src: &Path, dst: &Path) -> Result<()> {
    let s = src.to_string_lossy();
    let tool = if s.ends_with(".xz") {
        Some("xz")
    } else if s.ends_with(".zst") {
        Some("zstd")
    } else if s.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => {
            fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
        }
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(src)
                .output()
                .with_context(|| format!("running {tool}"))?;
            if !out.status.success() {
                bail!("{tool} -dc {} failed", src.display());
            }
            fs::write(dst, out.stdout)?;
        }
    }
    Ok(())
}

/// Packs `dir` as a newc cpio archive (uncompressed: the kernel unpacks it fastest).
fn write_cpio(dir: &Path, out: &Path) -> Result<()> {
    let mut entries = Vec::new();
    collect(dir, dir, &mut entries)?;
    entries.sort();
    let tmp = out.with_extension("tmp");
    let mut child = Command::new("cpio")
        .args(["--null", "-o", "-H", "newc", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&tmp)?)
        .spawn()
        .context("starting cpio (package cpio)")?;
    {
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("cpio stdin"))?;
        for e in &entries {
            stdin.write_all(e.as_bytes())?;
            stdin.write_all(b"\0")?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed ({status})");
    }
    fs::rename(&tmp, out)?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .map_err(|_| anyhow!("{} outside {}", p.display(), root.display()))?;
        out.push(format!("./{}", rel.display()));
        if e.file_type()?.is_dir() {
            collect(root, &p, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_drop_suffixes_and_dashes() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio-pci.ko.zst"),
            "virtio_pci"
        );
    }
}
