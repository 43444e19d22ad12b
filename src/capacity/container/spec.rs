//! The OCI runtime spec (`config.json`) of one container: the process (args, env, cwd, user),
//! the root, the mounts, the namespaces and the cgroup limits, from the capacity's
//! [`ContainerSpec`] and the image's config.

use std::path::Path;

use serde_json::{Value, json};

use super::RuntimeOptions;
use crate::capacity::ContainerSpec;

/// CPU quota period (µs): a task's `cpu` units become a hard cap of units/1024 cores per period.
const CPU_PERIOD_US: u64 = 100_000;

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
/// bundle), running as (`uid`, `gid`), in cgroup `cgroup`.
pub fn runtime_spec(
    spec: &ContainerSpec,
    options: &RuntimeOptions,
    user: (u32, u32),
    cgroup: &str,
) -> Value {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let capabilities = json!([
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
        "CAP_AUDIT_WRITE"
    ]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
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
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
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
    if let Some(units) = options.cpu_units.filter(|u| *u > 0) {
        resources["cpu"] = json!({
            "shares": u64::from(units).max(2),
            "quota": (u64::from(units) * CPU_PERIOD_US / 1024).max(1000),
            "period": CPU_PERIOD_US,
        });
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.0, "gid": user.1},
            "args": spec.argv,
            "env": env,
            "cwd": spec.working_dir.clone().unwrap_or_else(|| "/".into()),
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": options.readonly_root},
        "hostname": spec.name,
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "cgroupsPath": cgroup,
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"],
        },
    })
}
