//! One task from start to stop: images, volumes, containers in `dependsOn` order, essential
//! exits, stop requests, and the outcome of every container.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::capacity::container::ContainerCapacity;
use crate::capacity::wasm::WasmCapacity;
use crate::capacity::{
    Capacity, CapacityKind, ContainerHandle, ContainerLog, ContainerStats, CpuBudget, ImageSource,
    Tee,
};
use crate::image::{Image, ImageContent, Images};
use crate::taskdef::TaskDefinition;

use super::health::HealthStatus;
use super::launch::Launch;
use super::prepare::*;

/// Exit code reported for an essential container that never started.
pub(super) const EXIT_NEVER_STARTED: i32 = 125;

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

/// Starts tasks on this host's capacities.
pub struct TaskRunner {
    wasm: Arc<WasmCapacity>,
    /// Every capacity of this host: Wasm, and container images where an OCI runtime is
    /// available. An image goes to the one of its kind.
    capacities: Vec<Arc<dyn Capacity>>,
    images: Arc<Images>,
    config: TaskRunnerConfig,
    /// Where container-image tasks get their own network (the container capacity's).
    networks: Option<Arc<crate::capacity::container::network::TaskNetworks>>,
}

/// What to run: a validated task definition and the run's own adjustments.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub task_id: String,
    /// Shared by every task of the revision (a thousand tasks of a service hold one).
    pub definition: Arc<TaskDefinition>,
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
    /// Travels at nanosecond resolution (serde's `SystemTime`: seconds and nanoseconds since
    /// the epoch); the record keeps µs (`wasmgateMicros`) beside ECS's milliseconds.
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
    /// The task's network is wired (before its containers start): its own address, or the
    /// host's ports it holds.
    NetworkAttached {
        task_id: String,
        network: crate::capacity::container::network::NetworkAttachment,
    },
    /// A container has started.
    ContainerStarted { task_id: String, container: String },
    /// The task is stopping, and why.
    Stopping {
        task_id: String,
        stop_code: StopCode,
        reason: String,
    },
    /// Every container has exited (how each ended); the agent is releasing the task's network
    /// and resources (scratch volumes, log handles) before it reports `Stopped`.
    ExecutionStopped {
        task_id: String,
        /// How each container that ran ended (ECS shows them STOPPED, with their exit codes,
        /// while the task is DEPROVISIONING).
        #[serde(default)]
        exits: Vec<ContainerExitReport>,
    },
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

pub(super) fn emit(request: &TaskRequest, event: TaskEvent) {
    emit_at(request, SystemTime::now(), event);
}

/// [`emit`] for an event that happened at `at`, earlier than now.
pub(super) fn emit_at(request: &TaskRequest, at: SystemTime, event: TaskEvent) {
    if let Some(events) = &request.events {
        // A closed channel means nobody listens any more; the task runs on regardless.
        let _ = events.send(TimedEvent { at, event });
    }
}

/// How one container ended, as the task's `ExecutionStopped` step reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerExitReport {
    pub name: String,
    pub exit_code: i32,
    #[serde(default)]
    pub reason: Option<String>,
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
    #[serde(default)]
    pub memory_reservation: Option<u32>,
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
                    memory_reservation: o["memoryReservation"]
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok()),
                })
            })
            .collect()
    }
}

/// Why a task stopped, as ECS's `stopCode` (one enum for the agent and the records).
pub use crate::records::StopCode;

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
pub(super) enum TaskStop {
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
pub(super) type LiveContainers = Arc<std::sync::Mutex<Vec<(String, ContainerHandle)>>>;

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
        let capacities: Vec<Arc<dyn Capacity>> = vec![wasm.clone()];
        Self {
            wasm,
            capacities,
            images,
            config,
            networks: None,
        }
    }

    /// Also runs container images, on `containers`.
    pub fn with_containers(mut self, containers: Arc<ContainerCapacity>) -> Self {
        self.networks = Some(containers.networks().clone());
        self.capacities.push(containers);
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
        // Images and specs first, then the network (wired only for container images). Both
        // futures are boxed: a registry pull's is kilobytes, and inline it would be part of
        // every task's state for as long as the task runs (most of an idle task's supervisor).
        let prepared = match Box::pin(self.prepare(&request, &scratch, &logs)).await {
            Ok(mut prepared) => Box::pin(super::network::attach(
                &request,
                self.networks.as_ref(),
                &mut prepared,
            ))
            .await
            .map(|network| (prepared, network)),
            Err(failure) => Err(failure),
        };
        let (prepared, network) = match prepared {
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
        let exits = outcome
            .containers
            .iter()
            .filter_map(|c| {
                Some(ContainerExitReport {
                    name: c.name.clone(),
                    exit_code: c.exit_code?,
                    reason: c.reason.clone(),
                })
            })
            .collect();
        emit(
            &request,
            TaskEvent::ExecutionStopped {
                task_id: request.task_id.clone(),
                exits,
            },
        );
        if let Some(network) = network {
            Box::pin(network.release()).await;
        }
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
        // Sized exactly: it lives as long as the task, and a `Vec` grown by one push holds
        // room for four (2.3 KiB per idle task of one container).
        let mut prepared = Vec::with_capacity(definition.spec.container_definitions.len());
        for (index, container) in definition.spec.container_definitions.iter().enumerate() {
            let image = self
                .images
                .resolve(&container.image, &request.image_base_dir)
                .await
                .map_err(|e| {
                    StartFailure::new(&container.name, format!("CannotPullContainerError: {e}"))
                })?;
            let overrides = request.overrides.iter().find(|o| o.name == container.name);
            let source = self
                .image_source(&container.image, &image)
                .map_err(|why| StartFailure::new(&container.name, why))?;
            let capacity = self.capacity_for(&container.name, &container.image, &image, &source)?;
            let program = capacity
                .prepare(image.digest.clone(), source)
                .await
                .map_err(|e| {
                    StartFailure::new(
                        &container.name,
                        format!("{}: {}: {e}", e.ecs_class(), container.image),
                    )
                })?;
            if program.per_request() && !self.config.serves_http {
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
            let mut spec = container_spec(
                &request.task_id,
                definition,
                container,
                overrides,
                &volumes,
                task_cpu.clone(),
                logs[index].clone(),
            );
            if let Some(config) = program.image_config() {
                apply_image_config(&mut spec, config, definition, container, overrides);
            }
            prepared.push((program, spec, image.digest));
        }
        Ok(prepared)
    }

    /// The capacity of this host that runs `source`'s kind.
    fn capacity_for(
        &self,
        container: &str,
        reference: &str,
        image: &Image,
        source: &ImageSource,
    ) -> Result<Arc<dyn Capacity>, StartFailure> {
        let kind = source.kind();
        if let Some(capacity) = self.capacities.iter().find(|c| c.kind() == kind) {
            return Ok(capacity.clone());
        }
        let why = match (kind, &image.content) {
            (CapacityKind::Container, ImageContent::Container { layers, .. }) => format!(
                "CannotStartContainerError: {reference}: is a container image ({} layers, \
                 {}); this host has no OCI runtime (install runc, or pass --runtime)",
                layers.len(),
                image.digest
            ),
            _ => format!(
                "CannotStartContainerError: {reference}: this host cannot run {} images",
                kind.as_str()
            ),
        };
        Err(StartFailure::new(container, why))
    }

    /// What a capacity is given of a resolved image: a Wasm image's bytes, or a container
    /// image's config and layers as files of the content store.
    fn image_source(&self, reference: &str, image: &Image) -> Result<ImageSource, String> {
        match &image.content {
            ImageContent::Wasm(bytes) => Ok(ImageSource::Wasm(bytes.clone())),
            ImageContent::Container { config, layers } => {
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
                Ok(ImageSource::Container {
                    config_blob: blob(&config.digest)?,
                    layers,
                })
            }
        }
    }
}
