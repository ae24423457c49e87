//! The guest kernels: Debian's stock amd64 kernels, downloaded with `apt-get download`, unpacked
//! with `dpkg-deb -x` into the cache (never installed on the host), with `depmod` run on the
//! unpacked module tree and the uncompressed `vmlinux` extracted for a fast PVH boot.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    cache,
    util::{exec, output, step, write_atomic},
};

/// A kernel series the project tests on. Their struct layouts differ, which is the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Series {
    /// Debian 12's default kernel (linux-image-amd64).
    #[value(name = "6.1")]
    V6_1,
    /// Debian 12's backported 6.12 kernel (linux-image-6.12-amd64).
    #[value(name = "6.12")]
    V6_12,
}

impl Series {
    /// Every series, in test order.
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    /// The Debian metapackage that names the current ABI package of the series.
    fn metapackage(self) -> &'static str {
        match self {
            Series::V6_1 => "linux-image-amd64",
            Series::V6_12 => "linux-image-6.12-amd64",
        }
    }

    /// The prefix the resolved package must have (guards against a metapackage moving on).
    fn package_prefix(self) -> &'static str {
        match self {
            Series::V6_1 => "linux-image-6.1.",
            Series::V6_12 => "linux-image-6.12.",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An unpacked, ready-to-boot kernel in the cache.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Its cache folder (`<package>_<version>`).
    pub dir: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
}

impl Kernel {
    /// The image qemu boots: the uncompressed ELF `vmlinux` (PVH entry) when it could be
    /// extracted, else the compressed `vmlinuz`.
    pub fn image(&self) -> PathBuf {
        let vmlinux = self.dir.join("vmlinux");
        if vmlinux.is_file() {
            vmlinux
        } else {
            self.dir
                .join("root/boot")
                .join(format!("vmlinuz-{}", self.release))
        }
    }

    /// The module tree, `lib/modules/<release>` of the unpacked package.
    pub fn modules(&self) -> PathBuf {
        self.dir.join("root/lib/modules").join(&self.release)
    }

    /// Loads the kernel last prepared by `setup` for `series`.
    ///
    /// # Errors
    /// When setup has not prepared this series yet.
    pub fn prepared(series: Series) -> Result<Kernel> {
        let current = current_file(series);
        let name = fs::read_to_string(&current).map_err(|_| {
            anyhow!("kernel {series} is not prepared: run `cargo xtask setup` (as root)")
        })?;
        let dir = cache::kernels().join(name.trim());
        load(&dir)
    }
}

fn current_file(series: Series) -> PathBuf {
    cache::kernels().join(format!("{}.current", series.label()))
}

fn load(dir: &Path) -> Result<Kernel> {
    if !dir.join("ready").is_file() {
        bail!(
            "kernel cache {} is incomplete: run `cargo xtask setup` (as root)",
            dir.display()
        );
    }
    let release = fs::read_to_string(dir.join("release"))
        .with_context(|| format!("reading {}/release", dir.display()))?
        .trim()
        .to_owned();
    Ok(Kernel {
        dir: dir.to_owned(),
        release,
    })
}

/// Resolves the series' current package with apt, and downloads and unpacks it unless the
/// cache already holds that exact package version.
pub fn ensure(series: Series, may_update_apt: bool) -> Result<Kernel> {
    let (pkg, version) = match resolve(series) {
        Ok(r) => r,
        Err(e) if may_update_apt => {
            step(format!("{e:#}; running apt-get update"));
            exec(Command::new("apt-get").arg("update").arg("-q"))?;
            resolve(series)?
        }
        Err(e) => {
            // Offline or apt lists missing: a previously prepared kernel still serves.
            if let Ok(k) = Kernel::prepared(series) {
                step(format!(
                    "{e:#}; using the cached kernel {}",
                    k.dir.display()
                ));
                return Ok(k);
            }
            return Err(e);
        }
    };
    let dir = cache::kernels().join(format!("{pkg}_{}", version.replace(':', "%3a")));
    if let Ok(k) = load(&dir) {
        step(format!(
            "kernel {series}: {pkg} {version} (cached, {})",
            k.release
        ));
        write_atomic(&current_file(series), dir_name(&dir).as_bytes())?;
        return Ok(k);
    }
    step(format!("kernel {series}: fetching {pkg} {version}"));
    let deb = download(&pkg, &version)?;
    unpack(&deb, &dir)?;
    write_atomic(&current_file(series), dir_name(&dir).as_bytes())?;
    load(&dir)
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `(package, version)` of the ABI package behind the series' metapackage.
fn resolve(series: Series) -> Result<(String, String)> {
    let meta = series.metapackage();
    let deps = Command::new("apt-cache")
        .args(["depends", meta])
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&deps.stdout);
    let pkg = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with(series.package_prefix()))
        .ok_or_else(|| {
            anyhow!(
                "apt knows no {meta} naming a {}* package",
                series.package_prefix()
            )
        })?
        .to_owned();
    let show = output(Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .ok_or_else(|| anyhow!("apt-cache show {pkg} printed no Version"))?
        .trim()
        .to_owned();
    Ok((pkg, version))
}

/// Downloads `pkg=version` into the .deb cache unless it is there already.
fn download(pkg: &str, version: &str) -> Result<PathBuf> {
    let debs = cache::debs();
    fs::create_dir_all(&debs)?;
    let file_version = version.replace(':', "%3a");
    let expected = debs.join(format!("{pkg}_{file_version}_amd64.deb"));
    if expected.is_file() {
        return Ok(expected);
    }
    exec(
        Command::new("apt-get")
            .args(["download", "-q", &format!("{pkg}={version}")])
            .current_dir(&debs),
    )?;
    if !expected.is_file() {
        bail!("apt-get download left no {}", expected.display());
    }
    Ok(expected)
}

/// Unpacks the kernel package into `dir`, runs depmod, extracts vmlinux, marks it ready.
fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let root = tmp.join("root");
    exec(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    let release = only_child(&root.join("lib/modules"))?;
    step(format!("depmod for {release}"));
    exec(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    match extract_vmlinux(&vmlinuz, &tmp.join("vmlinux")) {
        Ok(()) => {}
        Err(e) => step(format!(
            "could not extract vmlinux ({e:#}); the VM boots the compressed image (slower)"
        )),
    }
    fs::write(tmp.join("release"), format!("{release}\n"))?;
    fs::write(tmp.join("ready"), "")?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).with_context(|| format!("moving {} into place", tmp.display()))?;
    Ok(())
}

fn only_child(dir: &Path) -> Result<String> {
    let mut names = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    match names.len() {
        1 => Ok(names.remove(0)),
        n => bail!(
            "{} holds {n} entries, expected one kernel release",
            dir.display()
        ),
    }
}

/// qemu boots an uncompressed ELF vmlinux through its PVH note, which skips the in-kernel
/// decompressor (~2.7 s under TCG). The bzImage setup header (boot protocol >= 2.08) locates
/// the compressed payload; its last 4 bytes are the kernel build's appended size, not data.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<()> {
    let image = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let payload = bzimage_payload(&image)?;
    let tool = match payload.get(..4) {
        Some([0xfd, b'7', b'z', b'X']) => "xz",
        Some([0x28, 0xb5, 0x2f, 0xfd]) => "zstd",
        Some([0x1f, 0x8b, _, _]) => "gzip",
        other => bail!("unknown kernel compression (payload starts {other:02x?})"),
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()
        .with_context(|| format!("starting {tool}"))?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("{tool} stdin"))?;
    let writer = std::thread::scope(|s| {
        let w = s.spawn(move || {
            use std::io::Write as _;
            stdin.write_all(payload)
        });
        w.join()
    });
    let status = child.wait()?;
    if !status.success() || !matches!(writer, Ok(Ok(()))) {
        let _ = fs::remove_file(out);
        bail!("{tool} -dc failed ({status})");
    }
    let mut head = [0u8; 4];
    {
        use std::io::Read as _;
        fs::File::open(out)?.read_exact(&mut head)?;
    }
    if &head != b"\x7fELF" {
        let _ = fs::remove_file(out);
        bail!("the decompressed payload is not an ELF image");
    }
    Ok(())
}

/// The compressed kernel inside a bzImage, without the trailing 4-byte size.
fn bzimage_payload(image: &[u8]) -> Result<&[u8]> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = image.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS signature)");
    }
    let setup_sects = match image.get(0x1f1).copied() {
        Some(0) | None => 4,
        Some(n) => usize::from(n),
    };
    let offset = u32_at(0x248).ok_or_else(|| anyhow!("truncated setup header"))?;
    let length = u32_at(0x24c).ok_or_else(|| anyhow!("truncated setup header"))?;
    let start = (setup_sects + 1) * 512 + offset;
    image
        .get(start..start + length.saturating_sub(4))
        .ok_or_else(|| anyhow!("payload {start}+{length} lies outside the image"))
}
