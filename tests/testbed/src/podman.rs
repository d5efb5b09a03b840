//! Podman (Debian's 4.3) with its CNI backend, run inside a network
//! namespace, for tests where a real container engine calls `brindle-cni`.
//!
//! * Each instance has its own `containers.conf` (`CONTAINERS_CONF`), root,
//!   run root, tmp dir and CNI network config dir; `network_backend =
//!   "cni"` with the test's plugin dir first and Debian's
//!   `/usr/lib/cni` (portmap) after it.
//! * `cgroup_manager = "cgroupfs"` and `events_logger = "file"`: no systemd
//!   here. `default_ulimits` lowered: podman's defaults need
//!   CAP_SYS_RESOURCE, which this VM lacks. `runtime = "runc"`: crun
//!   refuses the host's hybrid cgroup layout.
//! * Commands are entered with `nsenter --net=/run/netns/NAME` (as dockerd),
//!   so the veths brindle-cni makes have their host side in that
//!   namespace.
//! * Podman keeps CNI results in libcni's default cache,
//!   `/var/lib/cni/results/<network>-<container>-<ifname>`: network names
//!   must be unique to the test.
//! * Dropping the handle removes every container (`podman rm -af`, which
//!   runs CNI DEL), then unmounts and removes its directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::docker::{busybox_rootfs, unmount_under};
use crate::error::{Error, Result};
use crate::{cmd, Netns};

pub const PODMAN: &str = "/usr/bin/podman";
/// The OCI runtime podman is told to use (docker.io's runc).
pub const RUNC: &str = "/usr/sbin/runc";
/// Debian's containernetworking-plugins (portmap, bridge…).
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

/// A podman configuration of its own in a network namespace.
pub struct Podman {
    netns: String,
    dir: PathBuf,
}

impl Podman {
    /// Whether podman, runc and the reference CNI plugins are installed.
    pub fn available() -> bool {
        [PODMAN, RUNC, SYSTEM_CNI_DIR]
            .iter()
            .all(|p| Path::new(p).exists())
    }

    /// Podman in `ns` looking for CNI plugins in `cni_plugin_dir` (then in
    /// [`SYSTEM_CNI_DIR`]); `tag` makes its paths unique.
    pub fn new(ns: &Netns, tag: &str, cni_plugin_dir: &Path) -> Result<Self> {
        // Swept with its conmon processes once a dead test leaves it.
        crate::sweep::sweep_once();
        let dir = std::env::temp_dir().join(format!("{}.podman", crate::unique_name(tag)));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["root", "runroot", "tmp", "networks"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
tmp_dir = "{dir}/tmp"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}", "{SYSTEM_CNI_DIR}"]
network_config_dir = "{dir}/networks"
"#,
            dir = dir.display(),
            plugins = cni_plugin_dir.display(),
        );
        std::fs::write(dir.join("containers.conf"), conf)
            .map_err(|e| Error::io("writing containers.conf", e))?;
        Ok(Podman {
            netns: ns.name().to_owned(),
            dir,
        })
    }

    /// Installs a CNI network: `<name>.conflist` holding `conflist`.
    pub fn add_network(&self, name: &str, conflist: &str) -> Result<()> {
        let path = self.dir.join("networks").join(format!("{name}.conflist"));
        std::fs::write(&path, conflist)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(PODMAN)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        command
    }

    /// Runs podman; the output whatever the exit status.
    pub fn podman(&self, args: &[&str]) -> Result<Output> {
        cmd::output(self.command(args))
    }

    /// [`Podman::podman`], requiring success; returns stdout, trimmed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        Ok(cmd::checked(self.command(args))?.trim().to_owned())
    }

    /// Imports a busybox-static root file system as image `name`.
    pub fn import_busybox(&self, name: &str) -> Result<()> {
        let rootfs = busybox_rootfs(&self.dir)?;
        let mut import = Command::new("sh");
        import
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | {PODMAN} --root {} --runroot {} --storage-driver vfs import - {name}",
                rootfs.display(),
                self.dir.join("root").display(),
                self.dir.join("runroot").display(),
            ))
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        cmd::checked(import)?;
        Ok(())
    }

    /// Removes every container (CNI DEL for each).
    pub fn remove_all(&self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.remove_all();
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
