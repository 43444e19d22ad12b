//! One task from start to stop: images, volumes, containers in `dependsOn` order, essential
//! exits, stop requests, and the outcome of every container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::capacity::container::{ContainerCapacity, ContainerProgram, PreparedContainer};
use crate::capacity::wasm::{PreparedWasm, WasmCapacity};
use crate::capacity::{
    Capacity, ContainerExit, ContainerHandle, ContainerLog, ContainerSpec, ContainerStats,
    CpuBudget, Mount, PreparedImage, Tee,
};
use crate::image::{ImageContent, Images};
use crate::taskdef::{ContainerCondition, ContainerDefinition, TaskDefinition};

use super::health::{self, HealthProbe, HealthStatus};

/// Exit code reported for an essential container that never started.
const EXIT_NEVER_STARTED: i32 = 125;

/// How the agent runs tasks.
#[derive(Debug, Clone)]
pub struct TaskRunnerConfig {
    /// Bytes of stdout and stderr kept per container (the oldest output is dropped first).
    pub log_capacity_bytes: usize,
    /// Where volumes without a `host.sourcePath` get a directory for the task's lifetime.
    pub scratch_dir: PathBuf,
    /// Where every task's output is also kept on disk (the server's tasks); `None` keeps it in
    /// memory only (a one-shot `wasmgate run`).
    pub task_logs: Option<crate::logs::LogStore>,
    /// Whether a gateway routes requests to HTTP handlers here (the server); without one, an
    /// HTTP handler image cannot start.
    pub serves_http: bool,
}

/// Starts tasks on this host's capacity.
pub struct TaskRunner {
    wasm: Arc<WasmCapacity>,
    /// Runs container images (runc); `None` where no runtime is available.
    containers: Option<Arc<ContainerCapacity>>,
    images: Arc<Images>,
    config: TaskRunnerConfig,
}

/// What to run: a validated task definition and the run's own adjustments.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub task_id: String,
    pub definition: TaskDefinition,
    pub overrides: Vec<ContainerOverride>,
    /// Relative image paths are resolved against this directory.
    pub image_base_dir: PathBuf,
    /// Whether container output is also copied to this process's terminal.
    pub tee: Tee,
    /// Where the task reports each step of its life (the agent forwards them to the
    /// controller); `None` for a task nobody watches.
    pub events: Option<TaskEvents>,
}

/// The channel a task reports its life on.
pub type TaskEvents = tokio::sync::mpsc::UnboundedSender<TimedEvent>;

/// An event and when it happened (ECS's timestamps are when things happened in the agent, not
/// when the controller got to record them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimedEvent {
    pub at: SystemTime,
    pub event: TaskEvent,
}

/// One step of a task's life, as the controller records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TaskEvent {
    /// Images are being resolved (pulled when not cached).
    PullStarted { task_id: String },
    /// Every image is ready; the digest each container will run.
    PullStopped {
        task_id: String,
        image_digests: Vec<(String, String)>,
    },
    /// A container has started.
    ContainerStarted { task_id: String, container: String },
    /// The task is stopping, and why.
    Stopping {
        task_id: String,
        stop_code: StopCode,
        reason: String,
    },
    /// Every container has exited; the agent is releasing the task's resources (scratch
    /// volumes, log handles) before it reports `Stopped`.
    ExecutionStopped { task_id: String },
    /// The task has stopped.
    Stopped { outcome: TaskOutcome },
    /// A container's health check status changed; `task` is the task's health (from its
    /// essential containers that have checks).
    HealthChanged {
        task_id: String,
        container: String,
        status: HealthStatus,
        task: HealthStatus,
    },
    /// Memory and CPU of a running task's containers, sent every few seconds.
    Stats {
        task_id: String,
        containers: Vec<(String, ContainerStats)>,
    },
}

fn emit(request: &TaskRequest, event: TaskEvent) {
    if let Some(events) = &request.events {
        // A closed channel means nobody listens any more; the task runs on regardless.
        let _ = events.send(TimedEvent {
            at: SystemTime::now(),
            event,
        });
    }
}

/// Changes to one container for one run, as ECS's `containerOverrides`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerOverride {
    pub name: String,
    /// Replaces `command`.
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) `environment`.
    pub environment: Vec<(String, String)>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
}

impl ContainerOverride {
    /// The container overrides of an ECS `overrides` object (`containerOverrides[]`: name,
    /// command, environment, cpu, memory); members it cannot read are left out.
    pub fn list_from_ecs(overrides: &serde_json::Value) -> Vec<Self> {
        let Some(list) = overrides["containerOverrides"].as_array() else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|o| {
                Some(Self {
                    name: o["name"].as_str()?.to_string(),
                    command: o["command"].as_array().map(|args| {
                        args.iter()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect()
                    }),
                    environment: o["environment"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|kv| {
                            Some((
                                kv["name"].as_str()?.to_string(),
                                kv["value"].as_str().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect(),
                    cpu: o["cpu"].as_u64().and_then(|v| u32::try_from(v).ok()),
                    memory: o["memory"].as_u64().and_then(|v| u32::try_from(v).ok()),
                })
            })
            .collect()
    }
}

/// Why a task stopped, as ECS's `stopCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::UserInitiated => "UserInitiated",
        }
    }
}

/// How one container of a stopped task ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerOutcome {
    pub name: String,
    pub essential: bool,
    /// `None` when the container never started.
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The digest of the image it ran (ECS's `imageDigest`); `None` if it was never resolved.
    pub image_digest: Option<String>,
    pub stats: ContainerStats,
    /// The container's last output, kept in memory where it ran (`wasmgate run` prints it);
    /// it does not travel: the task's log ships separately.
    #[serde(skip, default = "empty_log")]
    pub log: Arc<ContainerLog>,
}

fn empty_log() -> Arc<ContainerLog> {
    Arc::new(ContainerLog::new(0, Tee::None))
}

/// How a task ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub task_id: String,
    pub stop_code: StopCode,
    pub stopped_reason: String,
    pub containers: Vec<ContainerOutcome>,
    /// The essential container whose exit (or failure to start) ended the task.
    pub deciding_container: Option<String>,
}

impl TaskOutcome {
    /// The exit code of the essential container that ended the task: what `wasmgate run`
    /// exits with.
    pub fn exit_code(&self) -> i32 {
        let deciding = self
            .deciding_container
            .as_deref()
            .and_then(|name| self.containers.iter().find(|c| c.name == name))
            .or_else(|| self.containers.iter().find(|c| c.essential));
        deciding.map_or(EXIT_NEVER_STARTED, |c| {
            c.exit_code.unwrap_or(EXIT_NEVER_STARTED)
        })
    }

    pub fn container(&self, name: &str) -> Option<&ContainerOutcome> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// A stop asked of a whole task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskStop {
    /// Each container gets its `stopTimeout`.
    Graceful(String),
    /// Every container is interrupted at once.
    Now(String),
}

/// A task that is running in the background.
pub struct RunningTask {
    pub task_id: String,
    stop: watch::Sender<Option<TaskStop>>,
    outcome: watch::Receiver<Option<TaskOutcome>>,
    live: LiveContainers,
    /// The supervisor; kept so the task has an owner. It ends on its own once every container
    /// has stopped.
    _supervisor: tokio::task::JoinHandle<()>,
}

/// The containers a task has started, by name, for reading their stats while they run.
type LiveContainers = Arc<std::sync::Mutex<Vec<(String, ContainerHandle)>>>;

impl RunningTask {
    /// Memory and CPU of every container started so far (final figures once it exited).
    pub fn stats(&self) -> Vec<(String, ContainerStats)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter()
            .map(|(name, handle)| (name.clone(), handle.stats()))
            .collect()
    }

    /// Asks every container to stop within its `stopTimeout` (ECS's StopTask).
    pub fn stop(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.stop.send_if_modified(|current| match current {
            None => {
                *current = Some(TaskStop::Graceful(reason));
                true
            }
            Some(_) => false,
        });
    }

    /// Interrupts every container now.
    pub fn kill(&self, reason: impl Into<String>) {
        self.stop.send_replace(Some(TaskStop::Now(reason.into())));
    }

    /// Waits for the task to stop. May be called any number of times.
    pub async fn wait(&self) -> TaskOutcome {
        let mut outcome = self.outcome.clone();
        let reported = outcome
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|o| o.clone());
        reported.unwrap_or_else(|| TaskOutcome {
            task_id: self.task_id.clone(),
            stop_code: StopCode::TaskFailedToStart,
            stopped_reason: "InternalError: the task's supervisor ended without an outcome".into(),
            containers: Vec::new(),
            deciding_container: None,
        })
    }

    /// The outcome, if the task has stopped.
    pub fn try_outcome(&self) -> Option<TaskOutcome> {
        self.outcome.borrow().clone()
    }
}

/// A fresh task id: 32 hex digits, as ECS's.
pub fn new_task_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}",
        nanos.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    crate::capacity::wasm::sha256_hex(seed.as_bytes())[..32].to_string()
}

impl TaskRunner {
    pub fn new(wasm: Arc<WasmCapacity>, images: Arc<Images>, config: TaskRunnerConfig) -> Self {
        Self {
            wasm,
            containers: None,
            images,
            config,
        }
    }

    /// Also runs container images, on `containers`.
    pub fn with_containers(mut self, containers: Arc<ContainerCapacity>) -> Self {
        self.containers = Some(containers);
        self
    }

    pub fn images(&self) -> &Arc<Images> {
        &self.images
    }

    pub fn wasm(&self) -> &Arc<WasmCapacity> {
        &self.wasm
    }

    /// Starts a task in the background.
    pub fn start(self: &Arc<Self>, request: TaskRequest) -> RunningTask {
        let (stop, stop_rx) = watch::channel(None);
        let task_id = request.task_id.clone();
        let span = tracing::info_span!(
            "task",
            task_id = %request.task_id,
            family = %request.definition.spec.family,
        );
        let runner = self.clone();
        let (outcome_tx, outcome) = watch::channel(None);
        let live = LiveContainers::default();
        let supervisor_live = live.clone();
        let supervisor = tokio::spawn(
            async move {
                let outcome = runner.run(request, stop_rx, supervisor_live).await;
                outcome_tx.send_replace(Some(outcome));
            }
            .instrument(span),
        );
        RunningTask {
            task_id,
            stop,
            outcome,
            live,
            _supervisor: supervisor,
        }
    }

    async fn run(
        &self,
        request: TaskRequest,
        stop: watch::Receiver<Option<TaskStop>>,
        live: LiveContainers,
    ) -> TaskOutcome {
        let containers = &request.definition.spec.container_definitions;
        let log_file = self.config.task_logs.as_ref().and_then(|store| {
            store
                .create(&request.task_id)
                .map_err(|error| tracing::warn!(%error, "the task's output is not kept on disk"))
                .ok()
        });
        let logs: Vec<Arc<ContainerLog>> = containers
            .iter()
            .map(|container| {
                let log = ContainerLog::new(self.config.log_capacity_bytes, request.tee);
                Arc::new(match &log_file {
                    Some(file) => log.with_file(file.clone(), &container.name),
                    None => log,
                })
            })
            .collect();
        let scratch = self.config.scratch_dir.join(&request.task_id);
        emit(
            &request,
            TaskEvent::PullStarted {
                task_id: request.task_id.clone(),
            },
        );
        let prepared = match self.prepare(&request, &scratch, &logs).await {
            Ok(prepared) => prepared,
            Err(failure) => {
                remove_scratch(&scratch);
                let outcome = failed_to_start(&request, &logs, failure);
                emit(
                    &request,
                    TaskEvent::Stopped {
                        outcome: outcome.clone(),
                    },
                );
                return outcome;
            }
        };
        let image_digests = containers
            .iter()
            .zip(&prepared)
            .map(|(c, (_, _, digest))| (c.name.clone(), digest.clone()))
            .collect();
        emit(
            &request,
            TaskEvent::PullStopped {
                task_id: request.task_id.clone(),
                image_digests,
            },
        );
        tracing::info!(containers = containers.len(), "task starting");
        let outcome = Launch::new(&request, prepared, logs, live).run(stop).await;
        emit(
            &request,
            TaskEvent::ExecutionStopped {
                task_id: request.task_id.clone(),
            },
        );
        remove_scratch(&scratch);
        tracing::info!(
            stop_code = outcome.stop_code.as_str(),
            reason = %outcome.stopped_reason,
            exit_code = outcome.exit_code(),
            "task stopped"
        );
        emit(
            &request,
            TaskEvent::Stopped {
                outcome: outcome.clone(),
            },
        );
        outcome
    }

    /// Resolves every image and volume and builds every container's spec; the task does not
    /// start unless all of them succeed.
    async fn prepare(
        &self,
        request: &TaskRequest,
        scratch: &Path,
        logs: &[Arc<ContainerLog>],
    ) -> Result<Vec<Prepared>, StartFailure> {
        let definition = &request.definition;
        let volumes = volume_dirs(definition, scratch)?;
        let task_cpu = definition
            .cpu_units
            .map(|units| Arc::new(CpuBudget::new(units)));
        let mut prepared = Vec::new();
        for (index, container) in definition.spec.container_definitions.iter().enumerate() {
            let image = self
                .images
                .resolve(&container.image, &request.image_base_dir)
                .await
                .map_err(|e| {
                    StartFailure::new(&container.name, format!("CannotPullContainerError: {e}"))
                })?;
            let overrides = request.overrides.iter().find(|o| o.name == container.name);
            let bytes = match &image.content {
                ImageContent::Wasm(bytes) => bytes.clone(),
                ImageContent::Container { config, layers } => {
                    let program = self
                        .prepare_container(&container.image, &image.digest, config, layers)
                        .await
                        .map_err(|why| StartFailure::new(&container.name, why))?;
                    let mut spec = container_spec(
                        &request.task_id,
                        definition,
                        container,
                        overrides,
                        &volumes,
                        None,
                        logs[index].clone(),
                    );
                    apply_image_config(
                        &mut spec,
                        &program.config,
                        definition,
                        container,
                        overrides,
                    );
                    let Some(capacity) = self.containers.clone() else {
                        return Err(StartFailure::new(
                            &container.name,
                            "CannotStartContainerError: no OCI runtime on this host".into(),
                        ));
                    };
                    let program: Arc<dyn PreparedImage> =
                        Arc::new(PreparedContainer { capacity, program });
                    prepared.push((program, spec, image.digest));
                    continue;
                }
            };
            let program = self.wasm.prepare(bytes).await.map_err(|e| {
                StartFailure::new(
                    &container.name,
                    format!("CannotStartContainerError: {}: {e}", container.image),
                )
            })?;
            if program.serves_http() && !self.config.serves_http {
                return Err(StartFailure::new(
                    &container.name,
                    format!(
                        "CannotStartContainerError: {} is an HTTP handler \
                         (wasi:http/incoming-handler), served per request: run it as a service \
                         of `wasmgate server` with a wasmgate.http.path label",
                        container.image
                    ),
                ));
            }
            let spec = container_spec(
                &request.task_id,
                definition,
                container,
                overrides,
                &volumes,
                task_cpu.clone(),
                logs[index].clone(),
            );
            let program: Arc<dyn PreparedImage> = Arc::new(PreparedWasm {
                capacity: self.wasm.clone(),
                program,
            });
            prepared.push((program, spec, image.digest));
        }
        Ok(prepared)
    }

    /// Unpacks a container image's layers from the content store (once per image).
    async fn prepare_container(
        &self,
        reference: &str,
        digest: &str,
        config: &crate::image::media::Descriptor,
        layers: &[crate::image::media::Descriptor],
    ) -> Result<Arc<ContainerProgram>, String> {
        let Some(containers) = &self.containers else {
            return Err(format!(
                "CannotStartContainerError: {reference}: is a container image ({} layers, \
                 {digest}); this host has no OCI runtime (install runc, or pass --runtime)",
                layers.len()
            ));
        };
        let store = self.images.store();
        let blob = |digest: &str| {
            store
                .blob_path(digest)
                .map_err(|e| format!("CannotPullContainerError: {reference}: {e}"))
        };
        let layers = layers
            .iter()
            .map(|layer| {
                Ok(crate::image::rootfs::Layer {
                    path: blob(&layer.digest)?,
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        containers
            .prepare(digest, &blob(&config.digest)?, layers)
            .await
            .map_err(|e| format!("CannotPullContainerError: {reference}: {e}"))
    }
}

type Prepared = (Arc<dyn PreparedImage>, ContainerSpec, String);

/// A container image's process: `entryPoint` replaces the image's Entrypoint and `command` its
/// Cmd (as Docker and ECS do); the image's Env comes first; its WorkingDir and User apply unless
/// the definition says otherwise. Container-only settings come from the definition.
fn apply_image_config(
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
        host_network: definition.spec.network_mode == Some(crate::taskdef::NetworkMode::Host),
        cpu_units: units,
        memory_reservation_bytes: container.memory_reservation.map(|mib| u64::from(mib) << 20),
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
    };
}

/// Why a task could not start, and which container it was about.
struct StartFailure {
    container: String,
    reason: String,
}

impl StartFailure {
    fn new(container: &str, reason: String) -> Self {
        Self {
            container: container.to_string(),
            reason,
        }
    }
}

fn failed_to_start(
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
fn volume_dirs(
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

fn remove_scratch(scratch: &Path) {
    if scratch.exists()
        && let Err(error) = std::fs::remove_dir_all(scratch)
    {
        tracing::warn!(path = %scratch.display(), %error, "cannot remove the task's scratch space");
    }
}

/// Translates one container definition (plus this run's overrides) into a capacity spec.
fn container_spec(
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
        runtime: Default::default(),
    }
}

/// Where each container is in its life.
enum Slot {
    Waiting,
    Running(ContainerHandle),
    Exited(ContainerExit, ContainerStats),
    NeverStarted(String),
}

/// Whether a waiting container may start.
enum Readiness {
    Ready,
    NotYet,
    Never(String),
}

/// The containers of one task, launched in dependency order and supervised until all stop.
struct Launch<'a> {
    request: &'a TaskRequest,
    /// Each container's image, prepared on its capacity (the launch loop knows no kinds).
    prepared: Vec<Prepared>,
    logs: Vec<Arc<ContainerLog>>,
    slots: Vec<Slot>,
    /// Each container's health, and the checker of those that have a health check.
    health: Vec<HealthStatus>,
    checkers: Vec<Option<tokio::task::JoinHandle<()>>>,
    health_tx: tokio::sync::mpsc::UnboundedSender<(usize, HealthStatus)>,
    health_rx: tokio::sync::mpsc::UnboundedReceiver<(usize, HealthStatus)>,
    /// Set once the task is stopping: why, and which essential container decided it.
    stopping: Option<(StopCode, String, Option<String>)>,
    live: LiveContainers,
}

impl<'a> Launch<'a> {
    fn new(
        request: &'a TaskRequest,
        prepared: Vec<Prepared>,
        logs: Vec<Arc<ContainerLog>>,
        live: LiveContainers,
    ) -> Self {
        let slots = prepared.iter().map(|_| Slot::Waiting).collect();
        let health = prepared.iter().map(|_| HealthStatus::Unknown).collect();
        let checkers = prepared.iter().map(|_| None).collect();
        let (health_tx, health_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            live,
            request,
            prepared,
            logs,
            slots,
            health,
            checkers,
            health_tx,
            health_rx,
            stopping: None,
        }
    }

    fn definitions(&self) -> &'a [ContainerDefinition] {
        &self.request.definition.spec.container_definitions
    }

    async fn run(mut self, mut stop: watch::Receiver<Option<TaskStop>>) -> TaskOutcome {
        let mut exits: JoinSet<(usize, ContainerExit, ContainerStats)> = JoinSet::new();
        let mut listening_for_stop = true;
        loop {
            self.start_ready_containers(&mut exits);
            if exits.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = exits.join_next() => {
                    if let Ok((index, exit, stats)) = joined {
                        self.on_exit(index, exit, stats);
                    }
                }
                Some((index, status)) = self.health_rx.recv() => self.on_health(index, status),
                changed = stop.changed(), if listening_for_stop => {
                    if changed.is_err() {
                        // The RunningTask was dropped: nobody can stop us any more.
                        listening_for_stop = false;
                        continue;
                    }
                    let request = stop.borrow_and_update().clone();
                    if let Some(request) = request {
                        self.on_stop_request(request);
                    }
                }
            }
        }
        self.finish()
    }

    /// Starts every waiting container whose dependencies are met; gives up on those whose
    /// dependencies can no longer be met.
    fn start_ready_containers(
        &mut self,
        exits: &mut JoinSet<(usize, ContainerExit, ContainerStats)>,
    ) {
        // Starting one container can make another ready, so repeat until nothing changes.
        loop {
            let mut changed = false;
            for index in 0..self.slots.len() {
                if !matches!(self.slots[index], Slot::Waiting) {
                    continue;
                }
                if let Some((_, reason, _)) = &self.stopping {
                    self.slots[index] = Slot::NeverStarted(format!(
                        "the task stopped before it started ({reason})"
                    ));
                    changed = true;
                    continue;
                }
                match self.readiness(index) {
                    Readiness::NotYet => {}
                    Readiness::Ready => {
                        self.start_container(index, exits);
                        changed = true;
                    }
                    Readiness::Never(reason) => {
                        self.slots[index] = Slot::NeverStarted(reason.clone());
                        self.on_never_started(index, reason);
                        changed = true;
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn readiness(&self, index: usize) -> Readiness {
        let definitions = self.definitions();
        for dependency in &definitions[index].depends_on {
            let Some(target) = definitions
                .iter()
                .position(|c| c.name == dependency.container_name)
            else {
                continue;
            };
            let name = &dependency.container_name;
            let condition = dependency.condition;
            let met = match (&self.slots[target], condition) {
                (Slot::Waiting, _) => return Readiness::NotYet,
                (Slot::NeverStarted(_), _) => {
                    return Readiness::Never(format!(
                        "DependencyNeverMet: container \"{name}\" never started ({})",
                        condition.as_str()
                    ));
                }
                (Slot::Running(_), ContainerCondition::Start) => true,
                // HEALTHY needs a pass of the dependency's health check; one without a check
                // is taken as healthy once it runs.
                (Slot::Running(_), ContainerCondition::Healthy) => {
                    definitions[target].health_check.is_none()
                        || self.health[target] == HealthStatus::Healthy
                }
                (Slot::Running(_), _) => false,
                (Slot::Exited(..), ContainerCondition::Start | ContainerCondition::Complete) => {
                    true
                }
                (Slot::Exited(exit, _), ContainerCondition::Success) if exit.exit_code == 0 => true,
                (Slot::Exited(exit, _), ContainerCondition::Success) => {
                    return Readiness::Never(format!(
                        "DependencyNeverMet: container \"{name}\" exited with {} (SUCCESS \
                         needs 0)",
                        exit.exit_code
                    ));
                }
                (Slot::Exited(..), ContainerCondition::Healthy) => {
                    return Readiness::Never(format!(
                        "DependencyNeverMet: container \"{name}\" exited before it was healthy"
                    ));
                }
            };
            if !met {
                return Readiness::NotYet;
            }
        }
        Readiness::Ready
    }

    fn start_container(
        &mut self,
        index: usize,
        exits: &mut JoinSet<(usize, ContainerExit, ContainerStats)>,
    ) {
        let (program, spec, _) = &self.prepared[index];
        tracing::info!(container = %spec.name, digest = %program.digest(), "starting container");
        match program.start(spec.clone()) {
            Ok(handle) => {
                if let Some(check) = &self.definitions()[index].health_check {
                    let checker = health::watch(
                        index,
                        program.clone(),
                        spec.clone(),
                        HealthProbe::from_definition(check),
                        self.health_tx.clone(),
                    );
                    self.checkers[index] = Some(tokio::spawn(
                        checker.instrument(tracing::debug_span!("health", container = %spec.name)),
                    ));
                }
                let waiter = handle.clone();
                exits.spawn(async move {
                    let exit = waiter.wait().await;
                    (index, exit, waiter.stats())
                });
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((spec.name.clone(), handle.clone()));
                self.slots[index] = Slot::Running(handle);
                emit(
                    self.request,
                    TaskEvent::ContainerStarted {
                        task_id: self.request.task_id.clone(),
                        container: spec.name.clone(),
                    },
                );
            }
            Err(error) => {
                let reason = format!("CannotStartContainerError: {error}");
                self.slots[index] = Slot::NeverStarted(reason.clone());
                self.on_never_started(index, reason);
            }
        }
    }

    fn on_health(&mut self, index: usize, status: HealthStatus) {
        if !matches!(self.slots[index], Slot::Running(_)) {
            return;
        }
        self.health[index] = status;
        let definitions = self.definitions();
        let checked: Vec<HealthStatus> = definitions
            .iter()
            .zip(&self.health)
            .filter(|(d, _)| d.is_essential() && d.health_check.is_some())
            .map(|(_, h)| *h)
            .collect();
        let task = if checked.contains(&HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !checked.is_empty() && checked.iter().all(|h| *h == HealthStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        };
        tracing::info!(container = %definitions[index].name, status = status.as_str(), task = task.as_str(), "health changed");
        emit(
            self.request,
            TaskEvent::HealthChanged {
                task_id: self.request.task_id.clone(),
                container: definitions[index].name.clone(),
                status,
                task,
            },
        );
    }

    fn on_exit(&mut self, index: usize, exit: ContainerExit, stats: ContainerStats) {
        if let Some(checker) = self.checkers[index].take() {
            checker.abort();
        }
        let definition = &self.definitions()[index];
        tracing::info!(container = %definition.name, exit_code = exit.exit_code, "container exited");
        self.slots[index] = Slot::Exited(exit, stats);
        if definition.is_essential() && self.stopping.is_none() {
            self.begin_stopping(
                StopCode::EssentialContainerExited,
                "Essential container in task exited".to_string(),
                Some(definition.name.clone()),
                None,
            );
        }
    }

    fn on_never_started(&mut self, index: usize, reason: String) {
        let definition = &self.definitions()[index];
        if definition.is_essential() && self.stopping.is_none() {
            self.begin_stopping(
                StopCode::TaskFailedToStart,
                reason,
                Some(definition.name.clone()),
                None,
            );
        }
    }

    fn on_stop_request(&mut self, request: TaskStop) {
        let (reason, grace) = match request {
            TaskStop::Graceful(reason) => (reason, None),
            TaskStop::Now(reason) => (reason, Some(Duration::ZERO)),
        };
        if self.stopping.is_none() {
            self.begin_stopping(StopCode::UserInitiated, reason, None, grace);
        } else if let Some(grace) = grace {
            self.stop_running(Some(grace));
        }
    }

    /// Marks the task as stopping and asks every running container to stop, each with its own
    /// `stopTimeout` unless `grace` overrides it.
    fn begin_stopping(
        &mut self,
        code: StopCode,
        reason: String,
        deciding: Option<String>,
        grace: Option<Duration>,
    ) {
        tracing::info!(stop_code = code.as_str(), %reason, "task stopping");
        emit(
            self.request,
            TaskEvent::Stopping {
                task_id: self.request.task_id.clone(),
                stop_code: code,
                reason: reason.clone(),
            },
        );
        self.stopping = Some((code, reason, deciding));
        self.stop_running(grace);
    }

    fn stop_running(&self, grace: Option<Duration>) {
        for (slot, definition) in self.slots.iter().zip(self.definitions()) {
            if let Slot::Running(handle) = slot {
                let grace =
                    grace.unwrap_or(Duration::from_secs(definition.stop_timeout_secs().into()));
                handle.stop(grace);
            }
        }
    }

    fn finish(self) -> TaskOutcome {
        for checker in self.checkers.iter().flatten() {
            checker.abort();
        }
        let (stop_code, stopped_reason, deciding_container) = self.stopping.unwrap_or((
            StopCode::EssentialContainerExited,
            "Essential container in task exited".to_string(),
            None,
        ));
        let containers = self
            .slots
            .into_iter()
            .zip(self.request.definition.spec.container_definitions.iter())
            .zip(self.logs)
            .zip(self.prepared.iter().map(|(_, _, digest)| digest.clone()))
            .map(|(((slot, definition), log), image_digest)| {
                let (exit_code, reason, stats) = match slot {
                    Slot::Exited(exit, stats) => (Some(exit.exit_code), exit.reason, stats),
                    Slot::NeverStarted(reason) => (None, Some(reason), ContainerStats::default()),
                    // Unreachable once the loop ends; reported honestly if it ever happens.
                    Slot::Waiting | Slot::Running(_) => (
                        None,
                        Some("InternalError: left unfinished".into()),
                        ContainerStats::default(),
                    ),
                };
                ContainerOutcome {
                    name: definition.name.clone(),
                    essential: definition.is_essential(),
                    exit_code,
                    reason,
                    image_digest: Some(image_digest),
                    stats,
                    log,
                }
            })
            .collect();
        TaskOutcome {
            task_id: self.request.task_id.clone(),
            stop_code,
            stopped_reason,
            containers,
            deciding_container,
        }
    }
}
