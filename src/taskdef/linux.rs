//! ECS's rules for a container's `linuxParameters` and `ulimits`, and the names they use
//! (capabilities without `CAP_`, `ALL`; ECS's ulimit names). Fargate refuses what ECS's
//! documentation says tasks on Fargate do not support: added capabilities other than
//! SYS_PTRACE, devices, sharedMemorySize, tmpfs, maxSwap and swappiness.

use super::{ContainerDefinition, FieldError};

/// ECS's `KernelCapabilities` names (`ALL` besides).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// ECS's `UlimitName` values; each is the `RLIMIT_` of its upper-case name.
pub const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The tmpfs mount options ECS accepts (an option may carry `=VALUE`: `mode=1777`).
const TMPFS_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "bind",
    "rbind",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// Fargate's highest `nofile` hard limit.
const FARGATE_MAX_NOFILE: i64 = 1_048_576;

/// Checks `linuxParameters` and `ulimits` of the container at `path`.
pub(super) fn check(
    path: &str,
    container: &ContainerDefinition,
    fargate: bool,
    fenced: bool,
    errors: &mut Vec<FieldError>,
) {
    check_ulimits(path, container, fargate, errors);
    let Some(linux) = &container.linux_parameters else {
        return;
    };
    let path = format!("{path}.linuxParameters");
    let unsupported_on_fargate = |field: &str, errors: &mut Vec<FieldError>| {
        errors.push(FieldError::new(
            format!("{path}.{field}"),
            format!("is not supported on FARGATE (tasks on Fargate do not support {field})"),
        ));
    };
    if let Some(capabilities) = &linux.capabilities {
        for (field, names) in [("add", &capabilities.add), ("drop", &capabilities.drop)] {
            for (index, name) in names.iter().enumerate() {
                let at = format!("{path}.capabilities.{field}[{index}]");
                if name != "ALL" && !CAPABILITIES.contains(&name.as_str()) {
                    let hint = name
                        .strip_prefix("CAP_")
                        .filter(|bare| CAPABILITIES.contains(bare))
                        .map(|bare| format!(" (ECS names it \"{bare}\", without CAP_)"))
                        .unwrap_or_default();
                    errors.push(FieldError::new(
                        at,
                        format!("\"{name}\" is not a capability ECS knows{hint}"),
                    ));
                } else if fargate && field == "add" && name != "SYS_PTRACE" {
                    errors.push(FieldError::new(
                        at,
                        format!("tasks on FARGATE may only add SYS_PTRACE (got \"{name}\")"),
                    ));
                } else if fenced && field == "add" && (name == "NET_ADMIN" || name == "ALL") {
                    // The allowlist is iptables rules in the task's namespace, which
                    // NET_ADMIN could flush.
                    errors.push(FieldError::new(
                        at,
                        format!(
                            "\"{name}\" would let the container lift the task's outbound \
                             allowlist ({})",
                            super::OUTBOUND_HOSTS_LABEL
                        ),
                    ));
                }
            }
        }
    }
    if !linux.devices.is_empty() {
        if fargate {
            unsupported_on_fargate("devices", errors);
        } else {
            errors.push(FieldError::new(
                format!("{path}.devices"),
                "host devices are not passed to containers by wasmgate",
            ));
        }
    }
    if let Some(size) = linux.shared_memory_size {
        if fargate {
            unsupported_on_fargate("sharedMemorySize", errors);
        } else if size < 1 {
            errors.push(FieldError::new(
                format!("{path}.sharedMemorySize"),
                format!("must be at least 1 MiB (got {size})"),
            ));
        }
    }
    if !linux.tmpfs.is_empty() && fargate {
        unsupported_on_fargate("tmpfs", errors);
    }
    for (index, tmpfs) in linux.tmpfs.iter().enumerate() {
        let at = format!("{path}.tmpfs[{index}]");
        match tmpfs.container_path.as_deref() {
            None => errors.push(FieldError::new(
                format!("{at}.containerPath"),
                "is required",
            )),
            Some(target) if !target.starts_with('/') => errors.push(FieldError::new(
                format!("{at}.containerPath"),
                format!("must be an absolute path (got \"{target}\")"),
            )),
            Some(_) => {}
        }
        match tmpfs.size {
            None => errors.push(FieldError::new(format!("{at}.size"), "is required")),
            Some(size) if size < 1 => errors.push(FieldError::new(
                format!("{at}.size"),
                format!("must be at least 1 MiB (got {size})"),
            )),
            Some(_) => {}
        }
        for (option_index, option) in tmpfs.mount_options.iter().enumerate() {
            let name = option.split_once('=').map_or(option.as_str(), |(n, _)| n);
            if !TMPFS_OPTIONS.contains(&name) {
                errors.push(FieldError::new(
                    format!("{at}.mountOptions[{option_index}]"),
                    format!("\"{option}\" is not a tmpfs mount option ECS accepts"),
                ));
            }
        }
    }
    if let Some(swap) = linux.max_swap {
        if fargate {
            unsupported_on_fargate("maxSwap", errors);
        } else if swap < 0 {
            errors.push(FieldError::new(
                format!("{path}.maxSwap"),
                format!("must be 0 (no swap) or more MiB (got {swap})"),
            ));
        }
    }
    if let Some(swappiness) = linux.swappiness {
        if fargate {
            unsupported_on_fargate("swappiness", errors);
        } else if !(0..=100).contains(&swappiness) {
            errors.push(FieldError::new(
                format!("{path}.swappiness"),
                format!("must be between 0 and 100 (got {swappiness})"),
            ));
        }
    }
}

fn check_ulimits(
    path: &str,
    container: &ContainerDefinition,
    fargate: bool,
    errors: &mut Vec<FieldError>,
) {
    let mut seen = std::collections::HashSet::new();
    for (index, ulimit) in container.ulimits.iter().enumerate() {
        let at = format!("{path}.ulimits[{index}]");
        match ulimit.name.as_deref() {
            None => errors.push(FieldError::new(format!("{at}.name"), "is required")),
            Some(name) if !ULIMITS.contains(&name) => errors.push(FieldError::new(
                format!("{at}.name"),
                format!(
                    "\"{name}\" is not a ulimit ECS knows ({})",
                    ULIMITS.join(", ")
                ),
            )),
            Some(name) if !seen.insert(name) => errors.push(FieldError::new(
                format!("{at}.name"),
                format!("ulimit \"{name}\" is set twice"),
            )),
            Some(_) => {}
        }
        for (field, value) in [
            ("softLimit", ulimit.soft_limit),
            ("hardLimit", ulimit.hard_limit),
        ] {
            match value {
                None => errors.push(FieldError::new(format!("{at}.{field}"), "is required")),
                Some(v) if v < 0 => errors.push(FieldError::new(
                    format!("{at}.{field}"),
                    format!("must not be negative (got {v})"),
                )),
                Some(_) => {}
            }
        }
        if let (Some(soft), Some(hard)) = (ulimit.soft_limit, ulimit.hard_limit) {
            if soft > hard {
                errors.push(FieldError::new(
                    format!("{at}.softLimit"),
                    format!("must not exceed hardLimit ({soft} > {hard})"),
                ));
            }
            if fargate && ulimit.name.as_deref() == Some("nofile") && hard > FARGATE_MAX_NOFILE {
                errors.push(FieldError::new(
                    format!("{at}.hardLimit"),
                    format!("nofile may be at most {FARGATE_MAX_NOFILE} on FARGATE (got {hard})"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::taskdef::TaskDefinition;
    use serde_json::json;

    fn errors_of(container: serde_json::Value, fargate: bool) -> Vec<String> {
        let mut doc = json!({"family": "f", "memory": "512", "containerDefinitions": [container]});
        if fargate {
            doc["requiresCompatibilities"] = json!(["FARGATE"]);
            doc["cpu"] = json!("256");
            doc["networkMode"] = json!("awsvpc");
        }
        match TaskDefinition::from_value(doc) {
            Ok(_) => vec![],
            Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn good_linux_parameters_and_ulimits_pass() {
        let container = json!({"name": "a", "image": "i",
            "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE", "NET_ADMIN"], "drop": ["ALL"]},
                "initProcessEnabled": true, "sharedMemorySize": 128, "maxSwap": 0, "swappiness": 10,
                "tmpfs": [{"containerPath": "/scratch", "size": 64, "mountOptions": ["noexec", "mode=1777"]}]},
            "ulimits": [{"name": "nofile", "softLimit": 4096, "hardLimit": 8192}]});
        assert_eq!(errors_of(container, false), Vec::<String>::new());
    }

    #[test]
    fn each_bad_member_is_named_by_its_path() {
        let container = json!({"name": "a", "image": "i",
            "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE", "CAP_NET_ADMIN"], "drop": ["BOGUS"]},
                "devices": [{"hostPath": "/dev/kvm"}], "sharedMemorySize": 0, "maxSwap": -1, "swappiness": 101,
                "tmpfs": [{"containerPath": "scratch", "mountOptions": ["exec", "huge"]}]},
            "ulimits": [{"name": "files", "softLimit": 1, "hardLimit": 2},
                        {"name": "nofile", "softLimit": 9, "hardLimit": 2}]});
        let errors = errors_of(container, false);
        let path = "containerDefinitions[0].linuxParameters";
        for expected in [
            format!(
                "{path}.capabilities.add[1]: \"CAP_NET_ADMIN\" is not a capability ECS knows (ECS names it \"NET_ADMIN\", without CAP_)"
            ),
            format!("{path}.capabilities.drop[0]: \"BOGUS\" is not a capability ECS knows"),
            format!("{path}.devices: host devices are not passed to containers by wasmgate"),
            format!("{path}.sharedMemorySize: must be at least 1 MiB (got 0)"),
            format!("{path}.maxSwap: must be 0 (no swap) or more MiB (got -1)"),
            format!("{path}.swappiness: must be between 0 and 100 (got 101)"),
            format!("{path}.tmpfs[0].containerPath: must be an absolute path (got \"scratch\")"),
            format!("{path}.tmpfs[0].size: is required"),
            format!(
                "{path}.tmpfs[0].mountOptions[1]: \"huge\" is not a tmpfs mount option ECS accepts"
            ),
            "containerDefinitions[0].ulimits[1].softLimit: must not exceed hardLimit (9 > 2)"
                .into(),
        ] {
            assert!(errors.contains(&expected), "{expected}\n{errors:#?}");
        }
        assert!(errors.iter().any(|e| {
            e.starts_with("containerDefinitions[0].ulimits[0].name: \"files\" is not a ulimit")
        }));
    }

    #[test]
    fn net_admin_is_refused_where_an_allowlist_holds_the_task() {
        let container = json!({"name": "a", "image": "i",
            "dockerLabels": {"wasmgate.network.outbound-hosts": "10.0.0.1"},
            "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}});
        let errors = errors_of(container, false);
        assert_eq!(
            errors,
            [
                "containerDefinitions[0].linuxParameters.capabilities.add[0]: \"NET_ADMIN\" would let the container lift the task's outbound allowlist (wasmgate.network.outbound-hosts)"
            ]
        );
    }

    #[test]
    fn fargate_refuses_what_fargate_does_not_support() {
        let container = json!({"name": "a", "image": "i",
            "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE", "NET_ADMIN"]}, "initProcessEnabled": true,
                "sharedMemorySize": 64, "maxSwap": 0, "swappiness": 1, "tmpfs": [{"containerPath": "/t", "size": 1}]},
            "ulimits": [{"name": "nofile", "softLimit": 65535, "hardLimit": 2000000}]});
        let errors = errors_of(container, true);
        let path = "containerDefinitions[0].linuxParameters";
        assert!(errors.contains(&format!("{path}.capabilities.add[1]: tasks on FARGATE may only add SYS_PTRACE (got \"NET_ADMIN\")")), "{errors:#?}");
        for field in ["sharedMemorySize", "tmpfs", "maxSwap", "swappiness"] {
            assert!(errors.contains(&format!("{path}.{field}: is not supported on FARGATE (tasks on Fargate do not support {field})")), "{field}: {errors:#?}");
        }
        assert!(errors.contains(&"containerDefinitions[0].ulimits[0].hardLimit: nofile may be at most 1048576 on FARGATE (got 2000000)".to_string()), "{errors:#?}");
        assert_eq!(errors.len(), 6, "{errors:#?}");
    }
}
