//! The OCI runtime spec (`config.json`) of one container: the process (args, env, cwd, user,
//! capabilities, rlimits), the root, the mounts, the namespaces, the cgroup limits and Docker's
//! hardening (its default capabilities and seccomp profile, no new privileges, masked and
//! read-only kernel paths), from the capacity's [`ContainerSpec`] and the image's config.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{LinuxSettings, RuntimeOptions, seccomp};
use crate::capacity::ContainerSpec;

/// CPU quota period (µs): a task's `cpu` units become a hard cap of units/1024 cores per period.
const CPU_PERIOD_US: u64 = 100_000;

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability a container can be given (`ALL`): ECS's list.
const ALL_CAPABILITIES: &[&str] = crate::taskdef::CAPABILITIES;

/// Docker's masked paths (moby `oci/defaults.go`), and powercap, which later Docker versions
/// mask too (its energy counters leak what other processes compute: CVE-2020-8694).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where the init binary appears in a container that asked for one (as Docker's `--init`).
const INIT_PATH: &str = "/sbin/docker-init";

/// What this host offers the spec beyond the basics.
#[derive(Debug, Clone, Default)]
pub struct HostSupport {
    /// How the memory cgroup limits swap, if it does.
    pub swap: SwapControl,
    /// A static init binary (tini) for `init` containers.
    pub init: Option<PathBuf>,
    /// The host id of the containers' root when they run in a user namespace (`--userns`):
    /// their ids 0-65535 are the host's from there.
    pub userns: Option<u32>,
}

/// The memory cgroup's swap control on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SwapControl {
    /// No swap accounting (cgroup v1 without `memory.memsw.*`): maxSwap is ignored.
    #[default]
    None,
    /// cgroup v1 `memory.memsw.limit_in_bytes` and `memory.swappiness`.
    V1,
    /// cgroup v2 `memory.swap.max` (no swappiness per cgroup).
    V2,
}

impl HostSupport {
    /// What this host has.
    pub fn detect() -> Self {
        let cgroup = Path::new("/sys/fs/cgroup");
        let swap = if cgroup.join("cgroup.controllers").exists() {
            let controllers =
                std::fs::read_to_string(cgroup.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "memory") {
                SwapControl::V2
            } else {
                SwapControl::None
            }
        } else if cgroup.join("memory/memory.memsw.limit_in_bytes").exists() {
            SwapControl::V1
        } else {
            SwapControl::None
        };
        let init = ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file());
        Self {
            swap,
            init,
            userns: None,
        }
    }
}

/// The container's capabilities: Docker's defaults, less `drop`, plus `add` (names with or
/// without `CAP_`; `ALL`), as Docker's `--cap-drop`/`--cap-add` combine them.
pub fn capabilities(linux: &LinuxSettings) -> Vec<String> {
    let full = |name: &str| {
        let bare = name.trim_start_matches("CAP_").to_ascii_uppercase();
        format!("CAP_{bare}")
    };
    let is_all = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case("ALL"));
    let mut set: Vec<String> = if is_all(&linux.capabilities_drop) {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !linux.capabilities_drop.iter().any(|d| full(d) == *c))
            .collect()
    };
    let added: Vec<String> = if is_all(&linux.capabilities_add) {
        ALL_CAPABILITIES.iter().map(|c| full(c)).collect()
    } else {
        linux.capabilities_add.iter().map(|c| full(c)).collect()
    };
    for cap in added {
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    set
}

/// The image config's parts that shape the process (OCI image config `config` object).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// `uid[:gid]`, `name[:group]` (looked up in the image's /etc/passwd and /etc/group), or
/// empty (root).
pub fn resolve_user(user: Option<&str>, rootfs: &Path) -> Result<(u32, u32), String> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    let lookup = |file: &str, key: &str| -> Option<(u32, Option<u32>)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&key)).then(|| {
                (
                    fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
                    fields.get(3).and_then(|f| f.parse().ok()),
                )
            })
        })
    };
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => (uid, lookup_gid_of_uid(rootfs, uid)),
        Err(_) => match lookup("etc/passwd", name) {
            Some((uid, gid)) => (uid, gid),
            None => return Err(format!("user \"{name}\" is not in the image's /etc/passwd")),
        },
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match lookup("etc/group", group) {
                Some((gid, _)) => gid,
                None => {
                    return Err(format!(
                        "group \"{group}\" is not in the image's /etc/group"
                    ));
                }
            },
        },
    };
    Ok((uid, gid))
}

fn lookup_gid_of_uid(rootfs: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields.get(3)?.parse().ok())?
    })
}

/// The runtime spec for `spec` in a bundle whose root is `rootfs` (a path relative to the
/// bundle), running as (`uid`, `gid`), in cgroup `cgroup`; or why it cannot run.
pub fn runtime_spec(
    spec: &ContainerSpec,
    options: &RuntimeOptions,
    user: (u32, u32),
    cgroup: &str,
    host: &HostSupport,
) -> Result<Value, String> {
    let cwd = spec.working_dir.clone().unwrap_or_else(|| "/".into());
    if let Some(why) = crate::taskdef::kernel_filesystem_dir(&cwd) {
        return Err(format!("the working directory {why}"));
    }
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let linux = &options.linux;
    let capability_set = capabilities(linux);
    let seccomp = seccomp::linux_seccomp(&seccomp::Target::here(&capability_set))?;
    let shm_size = linux.shm_size_bytes.unwrap_or(64 << 20);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        sys_mount(options, host),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    if let super::ContainerNetwork::Task {
        resolv_conf, hosts, ..
    } = &options.network
    {
        for (source, destination) in [(resolv_conf, "/etc/resolv.conf"), (hosts, "/etc/hosts")] {
            mounts.push(json!({
                "destination": destination,
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate", "ro"],
            }));
        }
    }
    for mount in &spec.mounts {
        let access = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.container_path,
            "type": "bind",
            "source": mount.host_path,
            "options": ["rbind", "rprivate", access],
        }));
    }
    for tmpfs in &linux.tmpfs {
        let mut mount_options: Vec<String> = tmpfs.options.clone();
        if !mount_options.iter().any(|o| o.starts_with("size=")) {
            mount_options.push(format!("size={}", tmpfs.size_bytes));
        }
        mounts.push(json!({
            "destination": tmpfs.container_path,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": mount_options,
        }));
    }
    let mut args = spec.argv.clone();
    if linux.init {
        let Some(init) = &host.init else {
            return Err(
                "initProcessEnabled needs a static init on this host (/usr/bin/tini-static: \
                 apt-get install tini)"
                    .into(),
            );
        };
        mounts.push(json!({
            "destination": INIT_PATH,
            "type": "bind",
            "source": init,
            "options": ["bind", "ro", "nosuid", "nodev"],
        }));
        args = [INIT_PATH.to_string(), "--".into()]
            .into_iter()
            .chain(args)
            .collect();
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    let mut id_mappings = None;
    if let Some(base) = host.userns {
        namespaces.push(json!({"type": "user"}));
        id_mappings = Some(json!([{
            "containerID": 0,
            "hostID": base,
            "size": super::USERNS_SIZE,
        }]));
    }
    match &options.network {
        super::ContainerNetwork::Host => {}
        super::ContainerNetwork::Own => namespaces.push(json!({"type": "network"})),
        super::ContainerNetwork::Task { netns, .. } => {
            namespaces.push(json!({"type": "network", "path": netns}));
        }
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "pids": {"limit": options.pids_limit},
    });
    if let Some(limit) = spec.memory_limit_bytes {
        resources["memory"] = json!({"limit": limit});
        if let Some(soft) = options.memory_reservation_bytes {
            resources["memory"]["reservation"] = json!(soft);
        }
    }
    if let Some(swap) = linux.max_swap_bytes {
        match (host.swap, spec.memory_limit_bytes) {
            (SwapControl::None, _) => {
                tracing::info!("maxSwap ignored: this host's memory cgroup does not account swap")
            }
            (_, None) => tracing::info!("maxSwap ignored: the container has no memory limit"),
            // runc's `swap` is memory and swap together, as Docker's --memory-swap.
            (control, Some(limit)) => {
                resources["memory"]["swap"] = json!(limit.saturating_add(swap));
                match (control, linux.swappiness) {
                    (SwapControl::V1, Some(swappiness)) => {
                        resources["memory"]["swappiness"] = json!(swappiness);
                    }
                    (_, Some(_)) => tracing::info!(
                        "swappiness ignored: cgroup v2 has no swappiness per container"
                    ),
                    _ => {}
                }
            }
        }
    }
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024})];
    for (name, soft, hard) in &linux.rlimits {
        let kind = format!("RLIMIT_{}", name.to_ascii_uppercase());
        rlimits.retain(|r| r["type"] != kind.as_str());
        rlimits.push(json!({"type": kind, "hard": hard, "soft": soft}));
    }
    if let Some(units) = options.cpu_units.filter(|u| *u > 0) {
        resources["cpu"] = json!({
            "shares": u64::from(units).max(2),
            "quota": (u64::from(units) * CPU_PERIOD_US / 1024).max(1000),
            "period": CPU_PERIOD_US,
        });
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.0, "gid": user.1},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capability_set,
                "effective": capability_set,
                "permitted": capability_set,
            },
            "rlimits": rlimits,
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": options.readonly_root},
        "hostname": spec.name,
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "cgroupsPath": cgroup,
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp,
            "uidMappings": id_mappings.clone().unwrap_or_else(|| json!([])),
            "gidMappings": id_mappings.unwrap_or_else(|| json!([])),
        },
    }))
}

/// `/sys`, read-only. A user namespace may mount sysfs only for a network namespace it owns
/// (one runc makes inside it); a container that joins its task's namespace or the host's
/// gets an empty read-only tmpfs there instead (sysfs bound from the host would show the
/// host's interfaces).
fn sys_mount(options: &RuntimeOptions, host: &HostSupport) -> Value {
    let joined = !matches!(options.network, super::ContainerNetwork::Own);
    if host.userns.is_some() && joined {
        json!({"destination": "/sys", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "nodev", "ro", "size=0"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(add: &[&str], drop: &[&str]) -> LinuxSettings {
        LinuxSettings {
            capabilities_add: add.iter().map(|s| s.to_string()).collect(),
            capabilities_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_are_dockers_defaults_less_drops_plus_adds() {
        assert_eq!(capabilities(&settings(&[], &[])), DEFAULT_CAPABILITIES);
        let some = capabilities(&settings(
            &["SYS_PTRACE", "CHOWN"],
            &["NET_RAW", "CAP_KILL"],
        ));
        assert!(some.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(!some.contains(&"CAP_NET_RAW".to_string()));
        assert!(!some.contains(&"CAP_KILL".to_string()));
        assert_eq!(some.iter().filter(|c| *c == "CAP_CHOWN").count(), 1);
        assert_eq!(
            capabilities(&settings(&["NET_BIND_SERVICE"], &["ALL"])),
            ["CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(
            capabilities(&settings(&["ALL"], &[])).len(),
            ALL_CAPABILITIES.len()
        );
    }

    #[test]
    fn a_working_directory_in_proc_is_refused_and_hardening_is_on() {
        let spec = ContainerSpec {
            task_id: "t".into(),
            name: "c".into(),
            argv: vec!["true".into()],
            env: vec![],
            working_dir: Some("/proc/self/fd/7".into()),
            mounts: vec![],
            memory_limit_bytes: Some(64 << 20),
            cpu_budgets: vec![],
            log: std::sync::Arc::new(crate::capacity::ContainerLog::new(
                1024,
                crate::capacity::Tee::None,
            )),
            http_outbound_hosts: vec![],
            socket_hosts: None,
            runtime: Default::default(),
        };
        let host = HostSupport::default();
        let refused = runtime_spec(&spec, &spec.runtime, (0, 0), "/x", &host).unwrap_err();
        assert!(refused.contains("inside /proc"), "{refused}");
        let spec = ContainerSpec {
            working_dir: None,
            ..spec
        };
        let document = runtime_spec(&spec, &spec.runtime, (0, 0), "/x", &host).unwrap();
        assert_eq!(document["process"]["noNewPrivileges"], true);
        assert_eq!(
            document["linux"]["seccomp"]["defaultAction"],
            "SCMP_ACT_ERRNO"
        );
        assert!(
            document["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        let mut init = spec.clone();
        init.runtime.linux.init = true;
        assert!(
            runtime_spec(&init, &init.runtime, (0, 0), "/x", &host)
                .unwrap_err()
                .contains("tini")
        );
    }
}
