//! One task's containers from first start to last exit: `dependsOn` order and conditions,
//! essential exits, stop requests (graceful, then at once), health checks gating HEALTHY
//! dependencies, and the outcome of every container.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::capacity::{ContainerExit, ContainerHandle, ContainerLog, ContainerStats};
use crate::taskdef::{ContainerCondition, ContainerDefinition};

use super::health::{self, HealthProbe, HealthStatus};
use super::prepare::*;
use super::task::*;

/// Where each container is in its life.
pub(super) enum Slot {
    Waiting,
    Running(ContainerHandle),
    Exited(ContainerExit, ContainerStats),
    NeverStarted(String),
}

/// Whether a waiting container may start.
pub(super) enum Readiness {
    Ready,
    NotYet,
    Never(String),
}

/// The containers of one task, launched in dependency order and supervised until all stop.
pub(super) struct Launch<'a> {
    request: &'a TaskRequest,
    /// Each container's image, prepared on its capacity (the launch loop knows no kinds).
    prepared: Vec<Prepared>,
    logs: Vec<Arc<ContainerLog>>,
    slots: Vec<Slot>,
    /// Each container's health, and the checker of those that have a health check.
    health: Vec<HealthStatus>,
    checkers: Vec<Option<tokio::task::JoinHandle<()>>>,
    /// Where checkers report; only a task with a health check has one (a channel is a
    /// kilobyte, and most tasks of a large service have no check).
    health_reports: Option<HealthReports>,
    /// Set once the task is stopping: why, and which essential container decided it.
    stopping: Option<(StopCode, String, Option<String>)>,
    live: LiveContainers,
}

impl<'a> Launch<'a> {
    pub(super) fn new(
        request: &'a TaskRequest,
        prepared: Vec<Prepared>,
        logs: Vec<Arc<ContainerLog>>,
        live: LiveContainers,
    ) -> Self {
        let slots = prepared.iter().map(|_| Slot::Waiting).collect();
        let health = prepared.iter().map(|_| HealthStatus::Unknown).collect();
        let checkers = prepared.iter().map(|_| None).collect();
        let checked = request
            .definition
            .spec
            .container_definitions
            .iter()
            .any(|d| d.health_check.is_some());
        let health_reports = checked.then(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            HealthReports { sender, receiver }
        });
        Self {
            live,
            request,
            prepared,
            logs,
            slots,
            health,
            checkers,
            health_reports,
            stopping: None,
        }
    }

    fn definitions(&self) -> &'a [ContainerDefinition] {
        &self.request.definition.spec.container_definitions
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<Option<TaskStop>>) -> TaskOutcome {
        let mut exits: JoinSet<(usize, ContainerExit, ContainerStats)> = JoinSet::new();
        let mut listening_for_stop = true;
        // The task's `wasmgate.task.timeout` (the smallest of its containers'), from now.
        let timeout = self
            .definitions()
            .iter()
            .filter_map(|d| d.task_timeout())
            .min();
        let deadline =
            tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(1 << 30));
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
                Some((index, status)) = next_health(&mut self.health_reports) => self.on_health(index, status),
                () = tokio::time::sleep_until(deadline), if timeout.is_some() && self.stopping.is_none() => {
                    let seconds = timeout.map_or(0, |t| t.as_secs());
                    self.begin_stopping(
                        StopCode::UserInitiated,
                        format!("TaskTimeout: the task ran for its timeout of {seconds}s (wasmgate.task.timeout)"),
                        None,
                        None,
                    );
                }
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
        // When the start began: a Wasm guest's start runs its first poll (instantiation and
        // its first steps) before it returns.
        let started_at = std::time::SystemTime::now();
        match program.start(spec.clone()) {
            Ok(handle) => {
                if let Some(check) = &self.definitions()[index].health_check
                    && let Some(reports) = &self.health_reports
                {
                    let checker = health::watch(
                        index,
                        program.clone(),
                        spec.clone(),
                        HealthProbe::from_definition(check),
                        reports.sender.clone(),
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
                emit_at(
                    self.request,
                    started_at,
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

/// The checkers' channel of a task with health checks.
struct HealthReports {
    sender: tokio::sync::mpsc::UnboundedSender<(usize, HealthStatus)>,
    receiver: tokio::sync::mpsc::UnboundedReceiver<(usize, HealthStatus)>,
}

/// The next health report; never, for a task without health checks.
async fn next_health(reports: &mut Option<HealthReports>) -> Option<(usize, HealthStatus)> {
    match reports {
        Some(reports) => reports.receiver.recv().await,
        None => std::future::pending().await,
    }
}
