//! A dockerd of its own inside a network namespace, for tests that drive
//! Brindle's Docker driver with the real engine (Debian's `docker.io`).
//!
//! * dockerd is entered with `nsenter --net=/run/netns/NAME`: `ip netns
//!   exec` remounts /sys, the cgroup v1 mounts disappear and dockerd exits
//!   ("Devices cgroup isn't mounted").
//! * Each instance has its own API socket, data root, exec root and pid
//!   file; `--bridge=none --iptables=false --ip-masq=false` keep it out of
//!   the way of what the test builds, `--storage-driver vfs` out of overlay
//!   mounts.
//! * No registry: [`Dockerd::import_busybox`] builds an image from the
//!   host's busybox-static.
//! * Dropping the handle removes every container first (their shims are
//!   not in dockerd's process group), then stops dockerd and removes its
//!   directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{cmd, poll_until, Netns, Process};

/// Debian's docker.io puts the daemon and its CLI here (a `docker` earlier
/// in PATH may be another version).
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const DOCKER: &str = "/usr/bin/docker";

/// How long dockerd gets to answer its API.
pub const DOCKERD_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping dockerd gets before its process group is killed.
pub const DOCKERD_STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A running dockerd (see the module docs).
pub struct Dockerd {
    netns: String,
    dir: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
    process: Option<Process>,
}

impl Dockerd {
    /// Whether docker.io is installed.
    pub fn available() -> bool {
        Path::new(DOCKERD).exists() && Path::new(DOCKER).exists()
    }

    /// Starts dockerd in `ns`; `tag` makes its paths unique.
    pub fn start(ns: &Netns, tag: &str) -> Result<Self> {
        // Named as the testbed names what it makes: a dead test's dockerd
        // (it mentions the dir) and dir are swept by the next test process.
        crate::sweep::sweep_once();
        let unique = crate::unique_name(tag);
        let dir = std::env::temp_dir().join(format!("{unique}.dockerd"));
        // Short: containerd's sockets live under it (108-byte limit).
        let exec_root = PathBuf::from(format!("/run/{unique}.dockerd"));
        for d in [&dir, &exec_root] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let socket = dir.join("docker.sock");
        let mut dockerd = Dockerd {
            netns: ns.name().to_owned(),
            dir,
            exec_root,
            socket,
            process: None,
        };
        dockerd.spawn()?;
        dockerd.wait_ready()?;
        Ok(dockerd)
    }

    fn spawn(&mut self) -> Result<()> {
        let (dir, exec_root, socket) = (&self.dir, &self.exec_root, &self.socket);
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(DOCKERD)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(exec_root)
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ]);
        let log = dir.join("dockerd.log");
        self.process = Some(Process::spawn(
            format!("dockerd in {}", self.netns),
            command,
            &log,
        )?);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let ready = poll_until(DOCKERD_READY_TIMEOUT, Duration::from_millis(200), || {
            // Bounded: dockerd accepts connections long before it answers
            // them, and the CLI waits for ever.
            let mut version = Command::new("timeout");
            version.args(["5", DOCKER, "-H", &self.host()]).args([
                "version",
                "--format",
                "{{.Server.Version}}",
            ]);
            Ok(cmd::output(version)?.status.success().then_some(()))
        })?;
        if ready.is_none() {
            let log = self.dir.join("dockerd.log");
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = self.process.take();
            return Err(Error::NotReady {
                what: "dockerd".into(),
                timeout: DOCKERD_READY_TIMEOUT,
                detail: "its API never answered".into(),
                log_path: Some(log),
                log_tail: tail,
            });
        }
        Ok(())
    }

    /// `unix://<socket>`, for `DOCKER_HOST` and `--docker-host`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the docker CLI against this daemon; the output whatever the
    /// exit status.
    pub fn docker(&self, args: &[&str]) -> Result<Output> {
        let mut command = Command::new(DOCKER);
        command.arg("-H").arg(self.host()).args(args);
        cmd::output(command)
    }

    /// [`Dockerd::docker`], requiring success; returns stdout, trimmed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(DOCKER);
        command.arg("-H").arg(self.host()).args(args);
        Ok(cmd::checked(command)?.trim().to_owned())
    }

    /// Imports a busybox-static root file system as image `name`.
    pub fn import_busybox(&self, name: &str) -> Result<()> {
        let rootfs = busybox_rootfs(&self.dir)?;
        let mut import = Command::new("sh");
        import.arg("-c").arg(format!(
            "tar -C {} -c . | {DOCKER} -H {} import - {name}",
            rootfs.display(),
            self.host()
        ));
        cmd::checked(import)?;
        Ok(())
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Removes every container (`docker rm -f`), dockerd keeps running.
    pub fn stop_containers(&self) {
        if self.process.is_none() {
            return;
        }
        if let Ok(ids) = self.run(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
    }

    /// Removes every container, then stops dockerd (as drop does).
    pub fn stop(&mut self) {
        self.stop_containers();
        drop(self.process.take());
    }

    /// Stops dockerd as a service manager does (SIGTERM: it stops its
    /// containers and shuts down) and starts it again with the same
    /// settings; its containers stay.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut dockerd) = self.process.take() {
            // Not the whole group: dockerd stops its containers (10 s for
            // one that ignores SIGTERM) through containerd, which must still
            // be running.
            dockerd.terminate_leader(DOCKERD_STOP_TIMEOUT);
        }
        self.spawn()?;
        self.wait_ready()
    }
}

/// `<dir>/rootfs`: the host's busybox-static with its applets linked in
/// `/bin`, for `docker import` and `podman import`.
pub(crate) fn busybox_rootfs(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| Error::io("creating the rootfs", e))?;
    // Copied by cp, not by this process: a write descriptor of ours could be
    // inherited by a child another test thread forks at that moment, and the
    // chroot below would fail with "Text file busy".
    let mut copy = Command::new("cp");
    copy.arg("/bin/busybox").arg(bin.join("busybox"));
    cmd::checked(copy)?;
    // Run inside the rootfs: links made from outside would be absolute host
    // paths.
    let mut install = Command::new("chroot");
    install
        .arg(&rootfs)
        .args(["/bin/busybox", "--install", "-s", "/bin"]);
    cmd::checked(install)?;
    Ok(rootfs)
}

/// Unmounts whatever is still mounted under `root` (netns bind mounts,
/// container root file systems), deepest first.
pub(crate) fn unmount_under(root: &Path) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            root.display()
        ))
        .status();
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // Mounts dockerd may have left under its roots (netns bind mounts).
        for root in [&self.exec_root, &self.dir] {
            unmount_under(root);
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
