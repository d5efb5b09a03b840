//! `brindle-vm`: run a script inside a throwaway virtual machine.
//!
//! The host kernel of the development and CI machines has no ipip module, so
//! tests that need it boot Debian's cloud kernel (`linux-image-cloud-amd64`,
//! which ships `ipip.ko`) under `qemu-system-x86_64 -accel tcg` with an
//! initramfs built on the fly: busybox, the binaries a test names (with the
//! shared libraries `ldd` says they need), the kernel modules it names (with
//! their dependencies from `modules.dep`), and a script run as the last step
//! of `/init`. The console is the VM's serial port; the script's exit status
//! comes back on a marker line. Nothing leaves the VM: it has no network
//! device.
//!
//! Binaries are copied with their debug info stripped (`strip
//! --strip-debug`; a plain copy when `strip` fails): a debug build of a
//! Brindle daemon is ~200 MB, of which ~40 MB is code, and the initramfs
//! lives in the VM's RAM.
//!
//! Every script runs with the helpers of [`SCRIPT_HELPERS`] loaded (through
//! `BASH_ENV`): `vm_dump NAME FILE` prints a file between marker lines, and
//! [`VmOutput::file`] reads it back on the host; that is how logs and other
//! files leave the VM.
//!
//! Panics: none. Errors: [`VmError`] for a missing host prerequisite, a
//! failed initramfs build, or a VM that never printed its exit marker
//! (killed at the timeout, kernel panic); the console comes with it.
//!
//! A boot takes about five seconds of TCG time on the CI machine. Needs the
//! apt packages `qemu-system-x86`, `linux-image-cloud-amd64`, `busybox-static`
//! and `cpio`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Marker line the init script prints with the test script's exit status.
const EXIT_MARKER: &str = "BRINDLE-VM-EXIT=";

/// Marker lines around a file `vm_dump` prints: `<BEGIN>NAME` … `<END>NAME`.
const FILE_BEGIN: &str = "BRINDLE-VM-FILE-BEGIN ";
const FILE_END: &str = "BRINDLE-VM-FILE-END ";

/// Bash functions every script can use (`/etc/brindle-vm.sh`, loaded via
/// `BASH_ENV`):
///
/// * `vm_dump NAME FILE`: prints FILE between marker lines, for
///   [`VmOutput::file`] (a missing file prints nothing between them);
/// * `vm_wait SECONDS COMMAND…`: runs COMMAND every half second until it
///   succeeds; fails after SECONDS (counted in tries, not wall-clock, so a
///   slow TCG guest gets the same number of tries).
pub const SCRIPT_HELPERS: &str = r#"
vm_dump() {
    echo "BRINDLE-VM-FILE-BEGIN $1"
    cat "$2" 2>/dev/null
    echo
    echo "BRINDLE-VM-FILE-END $1"
}
vm_wait() {
    local tries=$(( $1 * 2 )); shift
    while (( tries-- > 0 )); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "vm_wait: gave up on: $*"
    return 1
}
"#;

/// Errors from building or booting the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A host prerequisite is missing.
    #[error("missing prerequisite: {0}")]
    Missing(String),
    /// Building the initramfs failed.
    #[error("building the initramfs: {0}")]
    Build(String),
    /// qemu could not run or the VM never reported an exit status.
    #[error("the VM did not finish: {reason}\n--- console ---\n{console}")]
    Boot {
        /// Why.
        reason: String,
        /// Everything the VM printed.
        console: String,
    },
}

/// What to put in the VM and run there.
#[derive(Debug, Clone, Default)]
pub struct VmSpec {
    /// Host executables to copy to `/bin/<file name>` (with their libraries).
    pub binaries: Vec<PathBuf>,
    /// Kernel modules to load before the script, by name (`ipip`, `veth`).
    pub modules: Vec<String>,
    /// Extra files: (absolute path in the VM, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// The test, a bash script (bash and iproute2's `ip` are always there;
    /// busybox applets fill in the rest of PATH).
    pub script: String,
    /// Memory in MiB (default 768). The initramfs (binaries included)
    /// lives in it.
    pub memory_mib: u32,
    /// Virtual CPUs (default 1; more use more host threads under MTTCG).
    pub cpus: u32,
    /// How long the whole boot may take before it is killed (default 180 s).
    pub timeout: Option<Duration>,
}

/// What came back from the VM.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// Exit status of the script.
    pub status: i32,
    /// Everything printed on the console.
    pub console: String,
}

impl VmOutput {
    /// The contents of a file the script printed with `vm_dump NAME FILE`
    /// (the last one of that name), `None` if it never did.
    pub fn file(&self, name: &str) -> Option<String> {
        let begin = format!("{FILE_BEGIN}{name}");
        let end = format!("{FILE_END}{name}");
        let mut found = None;
        let mut current: Option<Vec<&str>> = None;
        for line in self.console.lines() {
            if line.trim_end() == begin {
                current = Some(Vec::new());
            } else if line.trim_end() == end {
                if let Some(lines) = current.take() {
                    found = Some(lines.join("\n"));
                }
            } else if let Some(lines) = current.as_mut() {
                lines.push(line);
            }
        }
        found
    }
}

/// A binary of this workspace's build, next to the running test's own
/// executable (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
/// The error says to run `cargo build --workspace` when it is missing: a
/// test of one crate does not build the other crates' binaries.
pub fn workspace_binary(name: &str) -> Result<PathBuf, VmError> {
    let exe = std::env::current_exe().map_err(|e| VmError::Missing(format!("current_exe: {e}")))?;
    let mut dir = exe.parent();
    if dir.is_some_and(|d| d.ends_with("deps")) {
        dir = dir.and_then(Path::parent);
    }
    let path = dir
        .map(|d| d.join(name))
        .ok_or_else(|| VmError::Missing(format!("no directory above {}", exe.display())))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(VmError::Missing(format!(
            "{} does not exist: run `cargo build --workspace` first",
            path.display()
        )))
    }
}

/// The newest Debian cloud kernel installed on the host: (vmlinuz, modules dir).
pub fn cloud_kernel() -> Result<(PathBuf, PathBuf), VmError> {
    let mut found: Vec<String> = std::fs::read_dir("/boot")
        .map_err(|e| VmError::Missing(format!("/boot: {e}")))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
        .collect();
    found.sort();
    let name = found.pop().ok_or_else(|| {
        VmError::Missing(
            "no /boot/vmlinuz-*-cloud-amd64 (apt install linux-image-cloud-amd64)".into(),
        )
    })?;
    let version = name.trim_start_matches("vmlinuz-");
    Ok((
        PathBuf::from("/boot").join(&name),
        PathBuf::from("/lib/modules").join(version),
    ))
}

/// Boots the VM, runs the script, returns its status and the console.
pub fn run(spec: &VmSpec) -> Result<VmOutput, VmError> {
    let (kernel, modules_dir) = cloud_kernel()?;
    let work = tempfile::Builder::new()
        .prefix("brindle-vm-")
        .tempdir()
        .map_err(|e| VmError::Build(e.to_string()))?;
    let root = work.path().join("root");
    build_root(&root, &modules_dir, spec)?;
    let initrd = work.path().join("initrd.cpio");
    pack(&root, &initrd)?;

    let timeout = spec.timeout.unwrap_or(Duration::from_secs(180));
    let memory = if spec.memory_mib == 0 {
        768
    } else {
        spec.memory_mib
    };
    let cpus = spec.cpus.max(1);
    let output = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(timeout.as_secs().to_string())
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", &memory.to_string()])
        .args(["-smp", &cpus.to_string()])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::Missing(format!("qemu-system-x86_64: {e}")))?;
    let console = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    let status = console
        .lines()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARKER)?.trim().parse().ok());
    match status {
        Some(status) => Ok(VmOutput { status, console }),
        None => Err(VmError::Boot {
            reason: format!("no exit marker (qemu exited with {})", output.status),
            console,
        }),
    }
}

fn build_root(root: &Path, modules_dir: &Path, spec: &VmSpec) -> Result<(), VmError> {
    let err = |what: &str, e: std::io::Error| VmError::Build(format!("{what}: {e}"));
    for dir in [
        "bin",
        "sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc",
        "lib/modules",
        "var/run",
    ] {
        std::fs::create_dir_all(root.join(dir)).map_err(|e| err(dir, e))?;
    }
    let busybox = which("busybox")?;
    std::fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| err("busybox", e))?;
    let mut binaries = spec.binaries.clone();
    for tool in ["bash", "ip", "ping"] {
        if !spec
            .binaries
            .iter()
            .any(|b| b.file_name().is_some_and(|n| n == tool))
        {
            if let Ok(path) = which(tool) {
                binaries.push(path);
            }
        }
    }
    for binary in &binaries {
        let name = binary
            .file_name()
            .ok_or_else(|| VmError::Build(format!("{} has no file name", binary.display())))?;
        copy_stripped(binary, &root.join("bin").join(name))?;
        copy_libraries(root, binary)?;
    }

    let mut loads = String::new();
    let mut loaded = Vec::new();
    for module in &spec.modules {
        for path in module_with_deps(modules_dir, module)? {
            if loaded.contains(&path) {
                continue;
            }
            let file = Path::new(&path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::copy(
                modules_dir.join(&path),
                root.join("lib/modules").join(&file),
            )
            .map_err(|e| err(&path, e))?;
            let _ = writeln!(
                loads,
                "insmod /lib/modules/{file} || echo \"insmod {file} failed\""
            );
            loaded.push(path);
        }
    }
    for (path, contents) in &spec.files {
        let target = root.join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(path, e))?;
        }
        std::fs::write(&target, contents).map_err(|e| err(path, e))?;
    }
    std::fs::write(root.join("test.sh"), &spec.script).map_err(|e| err("test.sh", e))?;
    std::fs::write(root.join("etc/brindle-vm.sh"), SCRIPT_HELPERS)
        .map_err(|e| err("brindle-vm.sh", e))?;
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /sbin\n\
         export PATH=/bin:/sbin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp; mkdir -p /run/netns\n\
         ip link set lo up\n\
         {loads}\
         BASH_ENV=/etc/brindle-vm.sh /bin/bash /test.sh\n\
         echo \"{EXIT_MARKER}$?\"\n\
         poweroff -f\n"
    );
    std::fs::write(root.join("init"), init).map_err(|e| err("init", e))?;
    for exe in ["init", "test.sh", "bin/busybox"] {
        chmod_x(&root.join(exe))?;
    }
    Ok(())
}

/// Copies an executable without its debug info; a plain copy when `strip`
/// is missing or fails (it is only a matter of size).
fn copy_stripped(from: &Path, to: &Path) -> Result<(), VmError> {
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(from, to).map_err(|e| VmError::Build(format!("{}: {e}", from.display())))?;
    }
    chmod_x(to)
}

fn chmod_x(path: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| VmError::Build(format!("chmod {}: {e}", path.display())))
}

fn which(tool: &str) -> Result<PathBuf, VmError> {
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(VmError::Missing(format!("{tool} not found")))
}

/// Copies the shared libraries (and the loader) `ldd` lists for `binary`.
fn copy_libraries(root: &Path, binary: &Path) -> Result<(), VmError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| VmError::Missing(format!("ldd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let target = root.join(lib.trim_start_matches('/'));
        if target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| VmError::Build(e.to_string()))?;
        }
        std::fs::copy(lib, &target).map_err(|e| VmError::Build(format!("{lib}: {e}")))?;
    }
    Ok(())
}

/// A module and everything it depends on, dependencies first, as paths
/// relative to the modules directory. Built-in modules yield nothing.
fn module_with_deps(modules_dir: &Path, module: &str) -> Result<Vec<String>, VmError> {
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep"))
        .map_err(|e| VmError::Missing(format!("modules.dep: {e}")))?;
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let file_of = |name: &str| {
        let want = format!("/{}.ko", name.replace('-', "_"));
        let matches = |path: &str| path.replace('-', "_").ends_with(&want);
        dep.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(path, _)| matches(path))
            .map(|(path, deps)| (path.to_string(), deps.to_string()))
            .or_else(|| {
                builtin
                    .lines()
                    .any(matches)
                    .then(|| (String::new(), String::new()))
            })
    };
    let (path, deps) =
        file_of(module).ok_or_else(|| VmError::Missing(format!("kernel module {module}")))?;
    if path.is_empty() {
        return Ok(Vec::new());
    }
    // modules.dep lists the full closure, the deepest dependency last.
    let mut order: Vec<String> = deps.split_whitespace().rev().map(str::to_string).collect();
    order.push(path);
    Ok(order)
}

fn pack(root: &Path, initrd: &Path) -> Result<(), VmError> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            root.display(),
            initrd.display()
        ))
        .status()
        .map_err(|e| VmError::Build(format!("cpio: {e}")))?;
    if !status.success() {
        return Err(VmError::Build(format!("cpio exited with {status}")));
    }
    Ok(())
}
