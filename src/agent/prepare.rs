//! What a task needs before its containers start, and what a failed start reports: each
//! container's spec from the definition, its overrides and its image's config, the task's
//! volumes, scratch space.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capacity::{
    ContainerLog, ContainerSpec, ContainerStats, CpuBudget, Mount, PreparedImage,
};
use crate::taskdef::{ContainerDefinition, TaskDefinition};

use super::task::*;

pub(super) type Prepared = (Arc<dyn PreparedImage>, ContainerSpec, String);

/// A container image's process: `entryPoint` replaces the image's Entrypoint and `command` its
/// Cmd (as Docker and ECS do); the image's Env comes first; its WorkingDir and User apply unless
/// the definition says otherwise. Container-only settings come from the definition.
pub(super) fn apply_image_config(
    spec: &mut ContainerSpec,
    image: &crate::capacity::container::ImageConfig,
    definition: &TaskDefinition,
    container: &ContainerDefinition,
    overrides: Option<&ContainerOverride>,
) {
    let entry_point = if container.entry_point.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        container.entry_point.clone()
    };
    let command = match overrides.and_then(|o| o.command.clone()) {
        Some(command) => command,
        None if !container.command.is_empty() => container.command.clone(),
        None => image.cmd.clone().unwrap_or_default(),
    };
    spec.argv = entry_point.into_iter().chain(command).collect();
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .flatten()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (name, value) in std::mem::take(&mut spec.env) {
        env.retain(|(existing, _)| *existing != name);
        env.push((name, value));
    }
    spec.env = env;
    if spec.working_dir.is_none() {
        spec.working_dir = image.working_dir.clone().filter(|d| !d.is_empty());
    }
    let units = overrides
        .and_then(|o| o.cpu)
        .or(container.cpu)
        .filter(|u| *u > 0)
        .or(definition.cpu_units);
    spec.runtime = crate::capacity::container::RuntimeOptions {
        user: container.user.clone(),
        readonly_root: container.readonly_root_filesystem.unwrap_or(false),
        // The task's network is given when it is wired (`super::network::attach`).
        network: Default::default(),
        cpu_units: units,
        memory_reservation_bytes: overrides
            .and_then(|o| o.memory_reservation)
            .or(container.memory_reservation)
            .map(|mib| u64::from(mib) << 20),
        pids_limit: crate::capacity::container::DEFAULT_PIDS_LIMIT,
        http_port: container.http_settings().and_then(|settings| {
            settings.port.or_else(|| {
                container
                    .port_mappings
                    .first()
                    .and_then(|m| m.container_port)
                    .and_then(|p| u16::try_from(p).ok())
            })
        }),
        linux: linux_settings(container),
    };
}

/// A container's `linuxParameters` and `ulimits` as the runtime takes them (MiB to bytes);
/// validated with the definition, so a negative number here is left out.
fn linux_settings(container: &ContainerDefinition) -> crate::capacity::container::LinuxSettings {
    let mib = |value: Option<i64>| {
        value
            .and_then(|v| u64::try_from(v).ok())
            .map(|v| v.saturating_mul(1 << 20))
    };
    let linux = container.linux_parameters.clone().unwrap_or_default();
    let capabilities = linux.capabilities.unwrap_or_default();
    crate::capacity::container::LinuxSettings {
        capabilities_add: capabilities.add,
        capabilities_drop: capabilities.drop,
        init: linux.init_process_enabled.unwrap_or(false),
        shm_size_bytes: mib(linux.shared_memory_size),
        tmpfs: linux
            .tmpfs
            .iter()
            .filter_map(|t| {
                Some(crate::capacity::container::TmpfsMount {
                    container_path: t.container_path.clone()?,
                    size_bytes: mib(t.size)?,
                    options: t.mount_options.clone(),
                })
            })
            .collect(),
        max_swap_bytes: mib(linux.max_swap),
        swappiness: linux.swappiness.and_then(|v| u64::try_from(v).ok()),
        rlimits: container
            .ulimits
            .iter()
            .filter_map(|u| {
                Some((
                    u.name.clone()?,
                    u64::try_from(u.soft_limit?).ok()?,
                    u64::try_from(u.hard_limit?).ok()?,
                ))
            })
            .collect(),
    }
}

/// Why a task could not start, and which container it was about.
pub(super) struct StartFailure {
    container: String,
    reason: String,
}

impl StartFailure {
    pub(super) fn new(container: &str, reason: String) -> Self {
        Self {
            container: container.to_string(),
            reason,
        }
    }
}

pub(super) fn failed_to_start(
    request: &TaskRequest,
    logs: &[Arc<ContainerLog>],
    failure: StartFailure,
) -> TaskOutcome {
    tracing::info!(container = %failure.container, reason = %failure.reason, "task failed to start");
    let containers = request
        .definition
        .spec
        .container_definitions
        .iter()
        .zip(logs)
        .map(|(c, log)| ContainerOutcome {
            name: c.name.clone(),
            essential: c.is_essential(),
            exit_code: None,
            reason: (c.name == failure.container).then(|| failure.reason.clone()),
            image_digest: None,
            stats: ContainerStats::default(),
            log: log.clone(),
        })
        .collect();
    TaskOutcome {
        task_id: request.task_id.clone(),
        stop_code: StopCode::TaskFailedToStart,
        stopped_reason: failure.reason,
        containers,
        deciding_container: Some(failure.container),
    }
}

/// The host directory of every declared volume: its `host.sourcePath`, or a fresh directory
/// under the task's scratch space.
pub(super) fn volume_dirs(
    definition: &TaskDefinition,
    scratch: &Path,
) -> Result<HashMap<String, PathBuf>, StartFailure> {
    let mut dirs = HashMap::new();
    for volume in &definition.spec.volumes {
        let Some(name) = &volume.name else { continue };
        let failure = |why: String| StartFailure {
            container: String::new(),
            reason: format!("ResourceInitializationError: volume \"{name}\": {why}"),
        };
        let dir = match volume.host.as_ref().and_then(|h| h.source_path.as_deref()) {
            Some(source) => {
                let path = PathBuf::from(source);
                if !path.is_dir() {
                    return Err(failure(format!(
                        "sourcePath {source} is not a directory on this host"
                    )));
                }
                path
            }
            None => {
                let path = scratch.join("volumes").join(name);
                std::fs::create_dir_all(&path)
                    .map_err(|e| failure(format!("cannot create {}: {e}", path.display())))?;
                path
            }
        };
        dirs.insert(name.clone(), dir);
    }
    Ok(dirs)
}

pub(super) fn remove_scratch(scratch: &Path) {
    if scratch.exists()
        && let Err(error) = std::fs::remove_dir_all(scratch)
    {
        tracing::warn!(path = %scratch.display(), %error, "cannot remove the task's scratch space");
    }
}

/// Translates one container definition (plus this run's overrides) into a capacity spec.
pub(super) fn container_spec(
    task_id: &str,
    definition: &TaskDefinition,
    container: &ContainerDefinition,
    overrides: Option<&ContainerOverride>,
    volumes: &HashMap<String, PathBuf>,
    task_cpu: Option<Arc<CpuBudget>>,
    log: Arc<ContainerLog>,
) -> ContainerSpec {
    // argv[0] is the container's name: a Wasm image is the program itself, so entryPoint and
    // command are its arguments, as `wasmtime run app.wasm ARGS` gives argv[0] = the module.
    let command = overrides
        .and_then(|o| o.command.clone())
        .unwrap_or_else(|| container.command.clone());
    let argv = std::iter::once(container.name.clone())
        .chain(container.entry_point.iter().cloned())
        .chain(command)
        .collect();

    let mut env: Vec<(String, String)> = container
        .environment
        .iter()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect();
    for (name, value) in overrides
        .map(|o| o.environment.as_slice())
        .unwrap_or_default()
    {
        env.retain(|(existing, _)| existing != name);
        env.push((name.clone(), value.clone()));
    }

    let mounts = container
        .mount_points
        .iter()
        .filter_map(|mount| {
            let host_path = volumes.get(mount.source_volume.as_deref()?)?.clone();
            Some(Mount {
                host_path,
                container_path: mount.container_path.clone()?,
                read_only: mount.read_only.unwrap_or(false),
            })
        })
        .collect();

    // The hard limit: the container's memory, else the task's.
    let memory_mib = overrides
        .and_then(|o| o.memory)
        .or(container.memory)
        .or(definition.memory_mib);
    let container_cpu = overrides
        .and_then(|o| o.cpu)
        .or(container.cpu)
        .filter(|units| *units > 0);
    let cpu_budgets = container_cpu
        .map(|units| Arc::new(CpuBudget::new(units)))
        .into_iter()
        .chain(task_cpu)
        .collect();

    ContainerSpec {
        task_id: task_id.to_string(),
        name: container.name.clone(),
        argv,
        env,
        working_dir: container.working_directory.clone(),
        mounts,
        memory_limit_bytes: memory_mib.map(|mib| u64::from(mib) << 20),
        cpu_budgets,
        log,
        http_outbound_hosts: container
            .http_settings()
            .map(|settings| settings.outbound_hosts)
            .unwrap_or_default(),
        socket_hosts: container
            .docker_labels
            .get(crate::taskdef::OUTBOUND_HOSTS_LABEL)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            }),
        runtime: Default::default(),
    }
}
