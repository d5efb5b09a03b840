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
//! A boot takes about five seconds of TCG time on the CI machine. Needs the
//! apt packages `qemu-system-x86`, `linux-image-cloud-amd64`, `busybox-static`
//! and `cpio`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Marker line the init script prints with the test script's exit status.
const EXIT_MARKER: &str = "BRINDLE-VM-EXIT=";

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
    /// Memory in MiB (default 768).
    pub memory_mib: u32,
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
    let output = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(timeout.as_secs().to_string())
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", &memory.to_string(), "-smp", "1"])
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
        std::fs::copy(binary, root.join("bin").join(name))
            .map_err(|e| err(&binary.display().to_string(), e))?;
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
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /sbin\n\
         export PATH=/bin:/sbin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp; mkdir -p /run/netns\n\
         ip link set lo up\n\
         {loads}\
         /bin/bash /test.sh\n\
         echo \"{EXIT_MARKER}$?\"\n\
         poweroff -f\n"
    );
    std::fs::write(root.join("init"), init).map_err(|e| err("init", e))?;
    for exe in ["init", "test.sh", "bin/busybox"] {
        chmod_x(&root.join(exe))?;
    }
    Ok(())
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
