//! The container capacity: a regular OCI container image, run as a real container by an OCI
//! runtime (`runc`; `--runtime PATH` lets crun or youki stand in).
//!
//! Preparing an image unpacks its layers once per image into `DIR/rootfs/<digest>/`
//! ([`crate::image::rootfs`]). Starting a container makes a bundle `DIR/bundles/<id>/`: an
//! overlay of that shared read-only root with the container's own upper layer (a copy where
//! overlayfs is not available), and `config.json` ([`spec`]). `runc run` keeps the container
//! as its child: its stdout and stderr are the log's, its exit is the container's. A stop sends
//! SIGTERM, then SIGKILL after the grace period; the cgroup gives the stats and tells an OOM
//! kill from another SIGKILL.
//!
//! Architecture invariant: nothing is left behind: every container is run under this
//! capacity's own runc state directory, and whatever is found there at start (a server killed
//! with -9) is killed and deleted, its mounts and bundles removed.

pub mod cni;
pub mod netns;
pub mod network;
pub mod seccomp;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::capacity::handle::HandleParts;
use crate::capacity::{
    CapacityError, ContainerExit, ContainerHandle, ContainerLog, ContainerSpec, LogStream,
    StatsCell,
};
use crate::image::rootfs::{self, Layer};
pub use spec::ImageConfig;

/// Exit code of a container killed after its grace period, or for memory (SIGKILL).
const EXIT_KILLED: i32 = 137;
/// Exit code of a container that could not be started.
const EXIT_CANNOT_START: i32 = 125;
/// The default most processes a container may have.
pub const DEFAULT_PIDS_LIMIT: u32 = 1024;

/// Container-only settings of a container (the agent fills them from the definition).
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// `uid[:gid]` or names from the image; `None`: the image's user, else root.
    pub user: Option<String>,
    pub readonly_root: bool,
    /// Which network namespace the container runs in.
    pub network: ContainerNetwork,
    /// CPU units: shares, and a quota of units/1024 cores.
    pub cpu_units: Option<u32>,
    /// The soft limit (`memoryReservation`).
    pub memory_reservation_bytes: Option<u64>,
    /// The most processes (a fork bomb stops here).
    pub pids_limit: u32,
    /// The port it serves HTTP on, for the gateway (on the host's network, or the task's own
    /// address).
    pub http_port: Option<u16>,
    /// Capabilities, init, /dev/shm, tmpfs, swap, resource limits.
    pub linux: LinuxSettings,
}

/// The Linux settings of a container beyond Docker's defaults (the definition's
/// `linuxParameters` and `ulimits`).
#[derive(Debug, Clone, Default)]
pub struct LinuxSettings {
    /// Added to Docker's default capabilities (`CAP_` optional, `ALL`).
    pub capabilities_add: Vec<String>,
    /// Dropped from them, before the additions (`ALL` drops every one).
    pub capabilities_drop: Vec<String>,
    /// A tiny init (tini) as pid 1 that forwards signals and reaps orphans.
    pub init: bool,
    /// The size of `/dev/shm` (default 64 MiB, as Docker's).
    pub shm_size_bytes: Option<u64>,
    pub tmpfs: Vec<TmpfsMount>,
    /// Swap the container may use beyond its memory limit (0: none), where the host allows.
    pub max_swap_bytes: Option<u64>,
    /// The kernel's swappiness for the container (0-100), with `max_swap_bytes`.
    pub swappiness: Option<u64>,
    /// Resource limits by name (`nofile`, `nproc`, ...): (soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
}

/// An empty tmpfs at `container_path`.
#[derive(Debug, Clone)]
pub struct TmpfsMount {
    pub container_path: String,
    pub size_bytes: u64,
    /// mount(8) options (`noexec`, `mode=1777`).
    pub options: Vec<String>,
}

/// The network namespace a container runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ContainerNetwork {
    /// A namespace of its own with nothing in it (`networkMode` none).
    #[default]
    Own,
    /// The host's (`networkMode` host).
    Host,
    /// Its task's namespace (awsvpc, bridge), where the task has `address`; the task's
    /// `/etc/resolv.conf` and `/etc/hosts`.
    Task {
        netns: PathBuf,
        address: std::net::Ipv4Addr,
        resolv_conf: PathBuf,
        hosts: PathBuf,
    },
}

/// Where the capacity keeps its state and which runtime it drives.
#[derive(Clone)]
pub struct ContainerCapacityConfig {
    pub dir: PathBuf,
    pub runtime: PathBuf,
    /// Where containers that serve HTTP are announced to the gateway.
    pub http: Option<Arc<crate::capacity::endpoint::HttpEndpoints>>,
    /// How task networks are wired.
    pub network: network::NetworkSettings,
    /// Whether containers run in a user namespace, their ids 0-65535 mapped to the host's
    /// [`USERNS_BASE`] and up (`--userns`).
    pub userns: bool,
}

/// The host id of a container's root under `--userns`: 2^30, far above the ranges `adduser`
/// hands out in /etc/subuid (100000 and up, 65536 each), so no host user owns these ids.
pub const USERNS_BASE: u32 = 1 << 30;
/// How many ids a container has under `--userns` (0-65535).
pub const USERNS_SIZE: u32 = 65536;

/// A container image made ready: its unpacked root and its config.
#[derive(Debug)]
pub struct ContainerProgram {
    pub digest: String,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// Runs container images through runc.
pub struct ContainerCapacity {
    config: ContainerCapacityConfig,
    /// One unpack per image at a time.
    unpacking: tokio::sync::Mutex<()>,
    networks: Arc<network::TaskNetworks>,
    /// What the host offers containers (swap control, an init binary).
    host: spec::HostSupport,
}

impl ContainerCapacity {
    /// The capacity over `config.dir`; cleans up whatever a previous process left.
    pub fn new(config: ContainerCapacityConfig) -> Result<Self, CapacityError> {
        for sub in ["rootfs", "rootfs-userns", "bundles", "runc"] {
            let dir = config.dir.join(sub);
            // Only root may enter: images keep their setuid files (as Docker's do), which
            // must not become a way to root for a user of the host. Under --userns the
            // container's root (an unprivileged host id) must pass through to its bundle and
            // its shifted image, whose files no host user but those ids owns.
            let mode = match sub {
                "rootfs-userns" => 0o711,
                "bundles" if config.userns => 0o711,
                _ => 0o700,
            };
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|source| CapacityError::Io {
                    context: format!("create {}", dir.display()),
                    source,
                })?;
        }
        if config.userns {
            userns_can_reach(&config.dir)?;
        }
        let networks = network::TaskNetworks::new(&config.dir, config.network.clone())
            .map_err(|e| CapacityError::Start(e.to_string()))?;
        let capacity = Self {
            unpacking: tokio::sync::Mutex::new(()),
            networks: Arc::new(networks),
            host: spec::HostSupport {
                userns: config.userns.then_some(USERNS_BASE),
                ..spec::HostSupport::detect()
            },
            config,
        };
        capacity.clean_up_leftovers();
        Ok(capacity)
    }

    /// The task networks of this capacity's containers.
    pub fn networks(&self) -> &Arc<network::TaskNetworks> {
        &self.networks
    }

    fn runc(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.config.runtime);
        command.arg("--root").arg(self.config.dir.join("runc"));
        command
    }

    /// Kills and deletes every container a previous process left, its bundle, and its task's
    /// network (once nothing runs in it).
    fn clean_up_leftovers(&self) {
        // runc keeps a directory per container under its root: with none there, nothing was
        // left, and no process need be spawned to ask.
        let state = self.config.dir.join("runc");
        let any_state = std::fs::read_dir(&state).is_ok_and(|mut entries| entries.next().is_some());
        if any_state && let Ok(output) = self.runc().args(["list", "-q"]).output() {
            for id in String::from_utf8_lossy(&output.stdout).lines() {
                tracing::warn!(
                    container = id,
                    "removing a container left by a previous run"
                );
                let _ = self.runc().args(["kill", id, "KILL"]).output();
                let _ = self.runc().args(["delete", "--force", id]).output();
            }
        }
        if let Ok(bundles) = std::fs::read_dir(self.config.dir.join("bundles")) {
            for bundle in bundles.flatten() {
                remove_bundle(&bundle.path());
            }
        }
        self.networks.clean_up_leftovers();
    }

    /// Unpacks an image (once; later calls find it on disk). `layers` are blobs on disk.
    pub async fn prepare(
        &self,
        digest: &str,
        config_blob: &Path,
        layers: Vec<Layer>,
    ) -> Result<Arc<ContainerProgram>, CapacityError> {
        let text = std::fs::read(config_blob).map_err(|source| CapacityError::Io {
            context: format!("read the image config {}", config_blob.display()),
            source,
        })?;
        let document: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            CapacityError::InvalidImage(format!("the image config is not JSON: {e}"))
        })?;
        let config: ImageConfig =
            serde_json::from_value(document["config"].clone()).unwrap_or_default();
        let hex = digest.trim_start_matches("sha256:");
        // Under --userns an image is unpacked with its ids shifted to the namespace's, once.
        let (roots, shift) = match self.host.userns {
            Some(base) => ("rootfs-userns", base),
            None => ("rootfs", 0),
        };
        let rootfs = self.config.dir.join(roots).join(hex);
        let _one_at_a_time = self.unpacking.lock().await;
        if !rootfs.join(".wasmgate-complete").exists() {
            let partial = self.config.dir.join(roots).join(format!("{hex}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            let tree = partial.join("tree");
            std::fs::create_dir_all(&tree).map_err(|source| CapacityError::Io {
                context: format!("create {}", tree.display()),
                source,
            })?;
            let unpacked = tokio::task::spawn_blocking(move || {
                rootfs::unpack_shifted(&layers, &tree, shift)?;
                if shift != 0 {
                    let _ = std::os::unix::fs::lchown(&tree, Some(shift), Some(shift));
                }
                Ok::<(), rootfs::RootfsError>(())
            })
            .await
            .map_err(|e| CapacityError::Start(format!("the unpack failed: {e}")))?;
            if let Err(error) = unpacked {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(CapacityError::InvalidImage(error.to_string()));
            }
            std::fs::write(partial.join(".wasmgate-complete"), b"").map_err(|source| {
                CapacityError::Io {
                    context: "mark the root filesystem complete".into(),
                    source,
                }
            })?;
            let _ = std::fs::remove_dir_all(&rootfs);
            std::fs::rename(&partial, &rootfs).map_err(|source| CapacityError::Io {
                context: format!("move the root filesystem to {}", rootfs.display()),
                source,
            })?;
        }
        Ok(Arc::new(ContainerProgram {
            digest: digest.to_string(),
            rootfs: rootfs.join("tree"),
            config,
        }))
    }

    /// Starts one container of `program`.
    pub fn start(
        &self,
        program: &Arc<ContainerProgram>,
        spec: ContainerSpec,
    ) -> Result<ContainerHandle, CapacityError> {
        let id = format!("{}-{}", spec.task_id, spec.name);
        let bundle = self.config.dir.join("bundles").join(&id);
        let _ = remove_bundle(&bundle);
        let start_error = |why: String| CapacityError::Start(why);
        std::fs::create_dir_all(bundle.join("rootfs"))
            .map_err(|e| start_error(format!("create the bundle: {e}")))?;
        mount_root(&program.rootfs, &bundle, self.host.userns).map_err(start_error)?;
        if let Some(base) = self.host.userns {
            // Scratch volumes are made by the agent as root; the container's root writes them.
            for mount in spec.mounts.iter().filter(|m| !m.read_only) {
                if mount
                    .host_path
                    .starts_with(self.config.dir.parent().unwrap_or(&self.config.dir))
                {
                    let _ = std::os::unix::fs::lchown(&mount.host_path, Some(base), Some(base));
                }
            }
        }
        let user = spec::resolve_user(
            spec.runtime
                .user
                .as_deref()
                .or(program.config.user.as_deref()),
            &bundle.join("rootfs"),
        )
        .map_err(|why| {
            remove_bundle(&bundle);
            start_error(why)
        })?;
        let cgroup = format!("/wasmgate/{id}");
        let document = spec::runtime_spec(&spec, &spec.runtime, user, &cgroup, &self.host)
            .map_err(|why| {
                remove_bundle(&bundle);
                start_error(why)
            })?;
        std::fs::write(bundle.join("config.json"), document.to_string())
            .map_err(|e| start_error(format!("write config.json: {e}")))?;
        let mut command = Command::new(&self.config.runtime);
        command
            .arg("--root")
            .arg(self.config.dir.join("runc"))
            .args(["run", "--keep", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|e| {
            remove_bundle(&bundle);
            start_error(format!("cannot run {}: {e}", self.config.runtime.display()))
        })?;
        let (handle, parts) = ContainerHandle::new();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let log = spec.log.clone();
        let runtime = self.config.runtime.clone();
        let state = self.config.dir.join("runc");
        let span = tracing::info_span!("container", task_id = %spec.task_id, container = %spec.name, digest = %program.digest);
        // Where the gateway reaches its port: the host's loopback, or the task's own address.
        let reachable = match &spec.runtime.network {
            ContainerNetwork::Host => Some(std::net::Ipv4Addr::LOCALHOST),
            ContainerNetwork::Task { address, .. } => Some(*address),
            ContainerNetwork::Own => None,
        };
        let proxy = match (&self.config.http, spec.runtime.http_port, reachable) {
            (Some(registry), Some(port), Some(address)) => {
                registry.insert(Arc::new(crate::capacity::endpoint::PortEndpoint::new(
                    &spec.task_id,
                    &spec.name,
                    std::net::SocketAddr::from((address, port)),
                )));
                Some((registry.clone(), spec.task_id.clone(), spec.name.clone()))
            }
            _ => None,
        };
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let copy_out = tokio::spawn(copy_into(stdout, log.clone(), LogStream::Stdout));
                let mut copy_err = tokio::spawn(copy_into(stderr, log.clone(), LogStream::Stderr));
                let cgroups = Cgroups::of(&cgroup);
                let exit = supervise(
                    &mut child,
                    parts,
                    &runtime,
                    &state,
                    &id,
                    &cgroups,
                    Output {
                        log: &log,
                        stderr: &mut copy_err,
                    },
                )
                .await;
                if let Some((registry, task_id, container)) = &proxy {
                    registry.remove(task_id, container);
                }
                let _ = copy_out.await;
                if !copy_err.is_finished() {
                    let _ = copy_err.await;
                }
                let _ = std::process::Command::new(&runtime)
                    .arg("--root")
                    .arg(&state)
                    .args(["delete", "--force", &id])
                    .output();
                remove_bundle(&bundle);
                exit
            },
            span,
        ));
        Ok(handle)
    }
}

impl ContainerCapacity {
    /// Runs `args` inside the running container of `container` in task `task_id` (a health
    /// check): `Ok` on exit 0, else why, within `timeout`.
    pub async fn exec(
        &self,
        task_id: &str,
        container: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        if args.is_empty() {
            return Err("the check has no command".into());
        }
        let id = format!("{task_id}-{container}");
        let mut command = Command::new(&self.config.runtime);
        command
            .arg("--root")
            .arg(self.config.dir.join("runc"))
            .args(["exec", &id])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.config.runtime.display()))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => Err(format!(
                "exit {}{}",
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            )),
            Ok(Err(error)) => Err(format!("runc exec: {error}")),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        }
    }
}

/// The container's log and the task copying its stderr into it.
struct Output<'a> {
    log: &'a ContainerLog,
    stderr: &'a mut tokio::task::JoinHandle<()>,
}

/// Waits for the container, handling stop requests and sampling stats; reports the exit.
async fn supervise(
    child: &mut tokio::process::Child,
    parts: HandleParts,
    runtime: &Path,
    state: &Path,
    id: &str,
    cgroups: &Cgroups,
    output: Output<'_>,
) {
    let Output {
        log,
        stderr: stderr_copied,
    } = output;
    let HandleParts {
        mut stop,
        exit,
        stats,
    } = parts;
    // SIGTERM goes to the container's first process (as Docker's stop); SIGKILL to every
    // process of its cgroup, so that a fork bomb's children cannot outlive the stop.
    let kill = |signal: &str| {
        let mut command = std::process::Command::new(runtime);
        command.arg("--root").arg(state).arg("kill");
        if signal == "KILL" {
            command.arg("--all");
        }
        let _ = command.args([id, signal]).output();
    };
    let mut sample = tokio::time::interval(Duration::from_millis(500));
    let mut killed_after_grace = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = sample.tick() => cgroups.sample(&stats),
            changed = stop.changed(), if deadline.is_none() => {
                if changed.is_err() {
                    continue;
                }
                let request = *stop.borrow_and_update();
                if let Some(request) = request {
                    kill("TERM");
                    deadline = Some(tokio::time::Instant::now() + request.grace);
                }
            }
            () = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() && killed_after_grace.is_none() => {
                kill("KILL");
                killed_after_grace = stop.borrow().map(|r| r.grace);
            }
        }
    };
    cgroups.sample(&stats);
    // The reason may be runc's last words on stderr: read them all first (the pipe closes
    // once the container's processes are gone; a straggler holding it costs at most a second).
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut *stderr_copied).await;
    let oom = cgroups.oom_killed();
    let outcome = match status {
        Ok(status) => {
            let code = status.code().unwrap_or(EXIT_KILLED);
            if oom && code != 0 {
                ContainerExit::with_reason(
                    EXIT_KILLED,
                    "OutOfMemoryError: the container's memory limit was reached (OOM killed)",
                )
            } else if let Some(grace) = killed_after_grace {
                ContainerExit::with_reason(
                    EXIT_KILLED,
                    format!(
                        "StopTimeout: the container did not stop within {}s of SIGTERM",
                        grace.as_secs()
                    ),
                )
            } else if code == 255 && stats.snapshot().cpu_time.is_zero() {
                let why = log
                    .last_stderr_line()
                    .unwrap_or_else(|| "the runtime failed".into());
                ContainerExit::with_reason(
                    EXIT_CANNOT_START,
                    format!("CannotStartContainerError: {why}"),
                )
            } else if let Some(why) = log
                .last_stderr_line()
                .filter(|_| code != 0)
                .and_then(|line| runc_start_failure(&line))
            {
                ContainerExit::with_reason(
                    EXIT_CANNOT_START,
                    format!("CannotStartContainerError: {why}"),
                )
            } else {
                ContainerExit::code(code)
            }
        }
        Err(error) => ContainerExit::with_reason(
            EXIT_CANNOT_START,
            format!("CannotStartContainerError: waiting for runc: {error}"),
        ),
    };
    tracing::info!(exit_code = outcome.exit_code, reason = ?outcome.reason, "container exited");
    exit.send_replace(Some(outcome));
}

/// What runc said when it could not start the container's process (`runc run failed:
/// unable to start container process: ...`, exit 1), from its last line on stderr.
fn runc_start_failure(line: &str) -> Option<String> {
    let message = line
        .split_once("msg=\"")
        .map_or(line, |(_, rest)| rest.trim_end_matches('"'));
    let why = message.strip_prefix("runc run failed: ")?;
    why.starts_with("unable to start container process")
        .then(|| why.replace("\\\"", "\""))
}

async fn copy_into(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    log: Arc<ContainerLog>,
    stream: LogStream,
) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        log.write(stream, &buffer[..n]);
    }
}

/// Under `--userns`, runc sets up the container's root from inside the user namespace, as the
/// container's root (an unprivileged host id): every directory above the bundles must let
/// others pass (`o+x`), as Docker's `/var/lib/docker` is 0711 with user namespaces.
fn userns_can_reach(dir: &Path) -> Result<(), CapacityError> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(CapacityError::Start(format!(
                "--userns: {} must let others pass (chmod o+x): the containers' root, host id \
                 {USERNS_BASE}, goes through it to their bundles",
                ancestor.display()
            )));
        }
    }
    Ok(())
}

/// The overlay of the image's root and the container's own layer at `bundle/rootfs`; a copy
/// where overlayfs cannot be mounted. Under a user namespace whose root is host id
/// `userns`, the container's layer is that id's.
fn mount_root(image_root: &Path, bundle: &Path, userns: Option<u32>) -> Result<(), String> {
    let (upper, work, merged) = (
        bundle.join("upper"),
        bundle.join("work"),
        bundle.join("rootfs"),
    );
    for dir in [&upper, &work] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if let Some(base) = userns {
            std::os::unix::fs::lchown(dir, Some(base), Some(base))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        image_root.display(),
        upper.display(),
        work.display()
    );
    if mount_overlay(&options, &merged) {
        return Ok(());
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", image_root.display()))
        .arg(&merged)
        .output()
        .map_err(|e| format!("copy the root filesystem: {e}"))?;
    if copied.status.success() {
        Ok(())
    } else {
        Err(format!(
            "copy the root filesystem: {}",
            String::from_utf8_lossy(&copied.stderr).trim()
        ))
    }
}

/// mount(2) of an overlay at `target` (no `mount` process: it costs milliseconds per start).
fn mount_overlay(options: &str, target: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(source), Ok(fstype), Ok(data), Ok(target)) = (
        std::ffi::CString::new("overlay"),
        std::ffi::CString::new("overlay"),
        std::ffi::CString::new(options),
        std::ffi::CString::new(target.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    rc == 0
}

/// Unmounts (lazily, so a straggling process cannot keep it) and deletes a bundle.
fn remove_bundle(bundle: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let root = bundle.join("rootfs");
    if let Ok(path) = std::ffi::CString::new(root.as_os_str().as_bytes()) {
        // SAFETY: `path` is a valid NUL-terminated string; a path that is not a mount point
        // only makes the call fail.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
    std::fs::remove_dir_all(bundle).is_ok()
}

/// A container's cgroup files (v1 or v2).
struct Cgroups {
    memory_usage: PathBuf,
    memory_peak: Option<PathBuf>,
    cpu_usage: PathBuf,
    cpu_in_micros: bool,
    oom: PathBuf,
}

impl Cgroups {
    fn of(path: &str) -> Self {
        let base = Path::new("/sys/fs/cgroup");
        let relative = path.trim_start_matches('/');
        if base.join("cgroup.controllers").exists() {
            let dir = base.join(relative);
            Self {
                memory_usage: dir.join("memory.current"),
                memory_peak: Some(dir.join("memory.peak")),
                cpu_usage: dir.join("cpu.stat"),
                cpu_in_micros: true,
                oom: dir.join("memory.events"),
            }
        } else {
            let memory = base.join("memory").join(relative);
            Self {
                memory_usage: memory.join("memory.usage_in_bytes"),
                memory_peak: Some(memory.join("memory.max_usage_in_bytes")),
                cpu_usage: base.join("cpuacct").join(relative).join("cpuacct.usage"),
                cpu_in_micros: false,
                oom: memory.join("memory.oom_control"),
            }
        }
    }

    fn sample(&self, stats: &StatsCell) {
        let number = |path: &Path| -> Option<u64> {
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        };
        if let Some(usage) = number(&self.memory_usage) {
            stats.set_memory(usage);
            if let Some(peak) = self.memory_peak.as_deref().and_then(number) {
                stats.set_memory(peak);
                stats.set_memory(usage);
            }
        }
        let cpu = if self.cpu_in_micros {
            std::fs::read_to_string(&self.cpu_usage)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_micros)
                })
        } else {
            number(&self.cpu_usage).map(Duration::from_nanos)
        };
        if let Some(cpu) = cpu {
            stats.set_cpu(cpu);
        }
    }

    /// Whether the kernel killed a process of the cgroup for memory.
    fn oom_killed(&self) -> bool {
        std::fs::read_to_string(&self.oom).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    }
}

/// A container image's unpacked root as a [`PreparedImage`](crate::capacity::PreparedImage):
/// containers run through the OCI runtime, health checks with `exec` inside them.
pub struct PreparedContainer {
    pub capacity: Arc<ContainerCapacity>,
    pub program: Arc<ContainerProgram>,
}

impl crate::capacity::Capacity for ContainerCapacity {
    fn kind(&self) -> crate::capacity::CapacityKind {
        crate::capacity::CapacityKind::Container
    }

    fn prepare(
        self: Arc<Self>,
        digest: String,
        image: crate::capacity::ImageSource,
    ) -> crate::capacity::BoxFuture<
        'static,
        Result<Arc<dyn crate::capacity::PreparedImage>, CapacityError>,
    > {
        Box::pin(async move {
            let crate::capacity::ImageSource::Container {
                config_blob,
                layers,
            } = image
            else {
                return Err(CapacityError::UnsupportedImage(
                    "not a container image: the OCI runtime runs container images".into(),
                ));
            };
            let program = ContainerCapacity::prepare(&self, &digest, &config_blob, layers)
                .await
                .map_err(|e| CapacityError::Unpack(e.to_string()))?;
            let prepared: Arc<dyn crate::capacity::PreparedImage> = Arc::new(PreparedContainer {
                capacity: self,
                program,
            });
            Ok(prepared)
        })
    }
}

impl crate::capacity::PreparedImage for PreparedContainer {
    fn digest(&self) -> &str {
        &self.program.digest
    }

    fn image_config(&self) -> Option<&ImageConfig> {
        Some(&self.program.config)
    }

    fn kind(&self) -> crate::capacity::CapacityKind {
        crate::capacity::CapacityKind::Container
    }

    fn uses_task_network(&self) -> bool {
        true
    }

    fn start(&self, spec: ContainerSpec) -> Result<ContainerHandle, CapacityError> {
        self.capacity.start(&self.program, spec)
    }

    fn check<'a>(
        &'a self,
        container: &'a ContainerSpec,
        command: crate::capacity::CheckCommand<'a>,
    ) -> crate::capacity::BoxFuture<'a, Result<(), String>> {
        Box::pin(self.capacity.exec(
            &container.task_id,
            &container.name,
            command.exec,
            command.timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runcs_refusal_to_start_is_told_from_a_process_exit() {
        let line = r#"time="2026-12-02T19:28:52Z" level=error msg="runc run failed: unable to start container process: error during container init: mkdir /work: not a directory""#;
        assert_eq!(
            super::runc_start_failure(line).as_deref(),
            Some(
                "unable to start container process: error during container init: mkdir /work: not a directory"
            )
        );
        assert_eq!(super::runc_start_failure("sh: exit 1"), None);
    }
}
