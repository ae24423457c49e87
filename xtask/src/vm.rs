//! The test VM: boots a Debian kernel under qemu (TCG) with the host's root read-only plus a
//! tmpfs overlay, the workspace read-write at its own path, sctp loaded, and runs one command.
//!
//! Guest serial ports carry the console (ttyS0, saved to `target/vm/`), the command's stdout
//! (ttyS1) and stderr (ttyS2), which stream to ours. The exit code comes back through the 9p
//! control share. Exit codes: the command's own; 124 on timeout; 125 when the VM itself failed.

use std::{
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    initramfs,
    kernel::{Kernel, Series},
    util::{have_program, step, workspace_root},
};

/// Exit code when the command outlived `--timeout`.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the VM (or this task) failed, not the command.
pub const EXIT_INFRA: u8 = 125;

/// Environment passed through into the guest command when set on the host.
const PASS_ENV: &[&str] = &[
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_TEST_THREADS",
];

/// `cargo xtask vm` options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Guest kernel series.
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: Series,
    /// Preload sch_netem (it also loads on demand).
    #[arg(long)]
    pub netem: bool,
    /// Wall-clock limit in seconds; the VM is killed and we exit 124 after it.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub mem: u32,
    /// Extra environment for the command, as NAME=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Copy the whole guest console to stderr afterwards (it is always saved in target/vm/).
    #[arg(long)]
    pub console: bool,
    /// The command. One argument runs as a shell script (`sh -c`), several as an argv.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// One VM run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Which kernel to boot.
    pub series: Series,
    /// Modules loaded before the command.
    pub modules: Vec<String>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Guest memory, MiB.
    pub mem_mb: u32,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Command (see [`Options::cmd`]).
    pub cmd: Vec<String>,
    /// Working directory in the guest (must be inside the shared workspace or exist in /).
    pub cwd: PathBuf,
    /// Print the whole console afterwards.
    pub show_console: bool,
}

impl Run {
    /// A run with the defaults: sctp loaded, 600 s, 1 GiB, cwd = the workspace root.
    pub fn new(series: Series, cmd: Vec<String>) -> Run {
        Run {
            series,
            modules: vec!["sctp".into()],
            timeout: Duration::from_secs(600),
            mem_mb: 1024,
            env: Vec::new(),
            cmd,
            cwd: workspace_root(),
            show_console: false,
        }
    }
}

/// `cargo xtask vm`.
pub fn run_cli(o: &Options) -> Result<u8> {
    let mut r = Run::new(o.kernel, o.cmd.clone());
    if o.netem {
        r.modules.push("sch_netem".into());
    }
    r.timeout = Duration::from_secs(o.timeout);
    r.mem_mb = o.mem;
    r.show_console = o.console;
    for kv in &o.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {kv}: expected NAME=VALUE"))?;
        r.env.push((k.into(), v.into()));
    }
    if let Ok(cwd) = std::env::current_dir()
        && cwd.starts_with(workspace_root())
    {
        r.cwd = cwd;
    }
    run(&r)
}

/// POSIX single-quoting for the generated guest scripts.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Boots the VM, runs the command, streams its output; returns its exit code (or 124/125).
/// A guest kernel that panics while booting, before the command started (an emulation fault
/// seen once in many boots: an int3 Oops while the kernel patches its own text under TCG),
/// is booted once more: nothing of the command ran, so nothing is hidden.
pub fn run(r: &Run) -> Result<u8> {
    match run_once(r)? {
        Boot::Ran(code) => Ok(code),
        Boot::PanickedBeforeStart => {
            eprintln!(
                "xtask vm: the guest kernel {} panicked while booting, before the command \
                 started; booting once more",
                r.series
            );
            match run_once(r)? {
                Boot::Ran(code) => Ok(code),
                Boot::PanickedBeforeStart => Ok(EXIT_INFRA),
            }
        }
    }
}

/// How one boot ended.
enum Boot {
    /// The command ran (its exit code), or the VM failed some other way (124/125).
    Ran(u8),
    /// The kernel panicked before the command started.
    PanickedBeforeStart,
}

fn run_once(r: &Run) -> Result<Boot> {
    if !have_program("qemu-system-x86_64") {
        bail!("qemu-system-x86_64 is missing: run `cargo xtask setup` (as root)");
    }
    let kernel = Kernel::prepared(r.series)?;
    let initrd = initramfs::ensure(&kernel)?;
    let share = workspace_root();
    let tmp = TempDir::new()?;
    let ctl = tmp.path.join("ctl");
    fs::create_dir_all(&ctl)?;
    fs::write(ctl.join("stage2"), initramfs::STAGE2)?;
    let script = match r.cmd.as_slice() {
        [one] => format!("{one}\n"),
        argv => {
            let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
            format!("exec {}\n", words.join(" "))
        }
    };
    fs::write(ctl.join("cmd"), script)?;
    let mut env = String::new();
    let mut put = |k: &str, v: &str| env.push_str(&format!("export {k}={}\n", sh_quote(v)));
    put("SIPSCTP_VM", "1");
    put("SIPSCTP_VM_KERNEL", &r.series.to_string());
    put("SIPSCTP_VM_MODULES", &r.modules.join(" "));
    put("SIPSCTP_VM_SHARE", &share.to_string_lossy());
    put("SIPSCTP_VM_CWD", &r.cwd.to_string_lossy());
    put("SIPSCTP_VM_MSIZE", "512000");
    for k in PASS_ENV {
        if let Ok(v) = std::env::var(k) {
            put(k, &v);
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("SIPSCTP_") && !k.starts_with("SIPSCTP_VM") {
            put(&k, &v);
        }
    }
    for (k, v) in &r.env {
        put(k, v);
    }
    fs::write(ctl.join("env"), env)?;

    let console = tmp.path.join("console.log");
    let out = tmp.path.join("out");
    let err = tmp.path.join("err");
    for f in [&console, &out, &err] {
        fs::write(f, b"")?;
    }
    let virtfs = |tag: &str, path: &Path, ro: bool| {
        let mut s = format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap",
            path.display()
        );
        if ro {
            s.push_str(",readonly=on");
        }
        s
    };
    let append = "console=ttyS0 loglevel=4 panic=-1 quiet mitigations=off random.trust_cpu=on \
                  sipsctp.msize=512000";
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
    .args(["-m", &r.mem_mb.to_string()])
    .arg("-kernel")
    .arg(kernel.image())
    .arg("-initrd")
    .arg(&initrd)
    .args(["-append", append])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .args([
        "-chardev",
        &format!("file,id=out,path={},append=on", out.display()),
    ])
    .args(["-serial", "chardev:out"])
    .args([
        "-chardev",
        &format!("file,id=err,path={},append=on", err.display()),
    ])
    .args(["-serial", "chardev:err"])
    .args(["-virtfs", &virtfs("ctl", &ctl, false)])
    .args(["-virtfs", &virtfs("rootfs", Path::new("/"), true)])
    .args(["-virtfs", &virtfs("kmods", &kernel.modules(), true)])
    .args(["-virtfs", &virtfs("share", &share, false)])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;

    let done = Arc::new(AtomicBool::new(false));
    let tails = [
        spawn_tail(out.clone(), false, done.clone()),
        spawn_tail(err.clone(), true, done.clone()),
    ];
    let status = wait_deadline(&mut child, r.timeout)?;
    done.store(true, Ordering::SeqCst);
    for t in tails {
        let _ = t.join();
    }
    let qemu_log = drain(&mut child);

    let saved = save_console(&console, r.series);
    let console_text = fs::read_to_string(&console).unwrap_or_default();
    if r.show_console {
        eprintln!("----- guest console ({}) -----\n{console_text}", r.series);
    }
    let Some(status) = status else {
        eprintln!(
            "xtask vm: timeout after {}s on kernel {}; console saved in {}; its end:",
            r.timeout.as_secs(),
            r.series,
            saved.display()
        );
        eprint_tail(&console_text, 40);
        return Ok(Boot::Ran(EXIT_TIMEOUT));
    };
    let rc = fs::read_to_string(ctl.join("rc"))
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    match rc {
        Some(0) => Ok(Boot::Ran(0)),
        Some(code) => {
            eprintln!(
                "xtask vm: command exited {code} on kernel {} after {:.1}s; console saved in {}; its end:",
                r.series,
                started.elapsed().as_secs_f64(),
                saved.display()
            );
            eprint_tail(&console_text, 30);
            Ok(Boot::Ran(code))
        }
        None if !console_text.contains("SIPSCTP_VM_START")
            && console_text.contains("Kernel panic") =>
        {
            eprint_tail(&console_text, 20);
            Ok(Boot::PanickedBeforeStart)
        }
        None => {
            eprintln!(
                "xtask vm: the VM failed (qemu {status}) on kernel {}; console saved in {}",
                r.series,
                saved.display()
            );
            if !qemu_log.trim().is_empty() {
                eprintln!("qemu said:\n{qemu_log}");
            }
            eprint_tail(&console_text, 40);
            Ok(Boot::Ran(EXIT_INFRA))
        }
    }
}

fn eprint_tail(text: &str, n: usize) {
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        eprintln!("  | {l}");
    }
}

fn save_console(console: &Path, series: Series) -> PathBuf {
    let dir = workspace_root().join("target/vm");
    let dst = dir.join(format!("console-{series}.log"));
    if fs::create_dir_all(&dir).is_ok() && fs::copy(console, &dst).is_ok() {
        dst
    } else {
        console.to_owned()
    }
}

/// Waits for `child` until `timeout`; kills it and returns None when time runs out.
fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// qemu's own stdout+stderr (small: it only prints on errors).
fn drain(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut s);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Follows a file qemu appends a serial port to, copying new bytes to our stdout or stderr,
/// until `done` is set and the file has been read to its end.
fn spawn_tail(path: PathBuf, to_stderr: bool, done: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut f) = fs::File::open(&path) else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let finished = done.load(Ordering::SeqCst);
            match f.read(&mut buf) {
                Ok(0) | Err(_) => {
                    if finished {
                        return;
                    }
                    thread::sleep(Duration::from_millis(25));
                }
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    let _ = if to_stderr {
                        std::io::stderr().write_all(chunk)
                    } else {
                        let mut o = std::io::stdout().lock();
                        o.write_all(chunk).and_then(|()| o.flush())
                    };
                }
            }
        }
    })
}

/// A private temporary folder, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for i in 0..1000u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!("sipsctp-vm.{}.{nanos:x}.{i}", std::process::id()));
            if fs::create_dir(&path).is_ok() {
                return Ok(TempDir { path });
            }
        }
        Err(anyhow!(
            "cannot create a temporary folder in {}",
            base.display()
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Announces a VM run in one line.
pub fn announce(r: &Run) {
    step(format!("VM (kernel {}): {}", r.series, r.cmd.join(" ")));
}
