//! The service scheduler's decisions as a pure function: from a service record and the tasks
//! it has (desired and actual), what to start, what to stop, and the record's new counts,
//! deployments and events. No I/O, no clock: `now` is an argument, so every rule is tested
//! here, and a pass that is repeated (a duplicated event) or skipped (a lost one) converges to
//! the same place.
//!
//! The rules, as ECS states them:
//! - `maximumPercent`: tasks not yet stopped never exceed desired × max / 100, rounded down;
//! - `minimumHealthyPercent`: running, healthy tasks never drop below desired × min / 100,
//!   rounded up, through the scheduler's own stops (scale-in and failures excepted);
//! - a task that stops before it ran [`SHORT_RUN`] (or never ran) is a failed start: starts are
//!   then throttled with a growing delay, and the circuit breaker counts it;
//! - the circuit breaker fails a deployment after clamp(⌈desired / 2⌉, 3, 200) failed tasks and,
//!   with `rollback`, makes the last completed deployment's task definition PRIMARY again;
//! - a task under scale-in protection (UpdateTaskProtection) is not stopped by a scale-in or
//!   by a deployment replacing it until the protection expires (failing health checks, a
//!   draining host and StopTask still stop it);
//! - StopServiceDeployment's requests (ROLLBACK, ABORT) are carried out here, and every
//!   service deployment's status follows the scheduler deployment that carries it.

mod task_sets;

use std::collections::HashSet;
use std::time::Duration;

use crate::records::StopCode;
use crate::records::service::history::{Rollback, ServiceDeploymentStatus, ServiceRevision};
use crate::records::service::{
    Deployment, DeploymentStatus, RolloutState, Service, ServiceStatus, new_deployment_id,
};

/// A task that stops by itself sooner than this after reaching RUNNING did not really start.
pub const SHORT_RUN: f64 = 10.0;

/// Where a task is, as the scheduler counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Placed, not yet running (PROVISIONING, PENDING, ACTIVATING).
    Pending,
    Running,
    /// Asked to stop, not yet stopped: it still holds its resources.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// What the scheduler needs to know of one of the service's tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: String,
    /// The deployment that started it (its `startedBy`).
    pub deployment: String,
    pub phase: Phase,
    pub health: Health,
    /// Whether its containers have health checks (then only HEALTHY counts as healthy).
    pub has_health_check: bool,
    pub started_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    /// It runs on a host that is DRAINING: it is replaced as an old deployment's task is.
    pub on_draining_host: bool,
    /// Scale-in protection holds until then.
    pub protected_until: Option<f64>,
}

impl TaskView {
    fn alive(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Running)
    }

    fn healthy(&self) -> bool {
        self.phase == Phase::Running
            && match self.health {
                Health::Healthy => true,
                Health::Unknown => !self.has_health_check,
                Health::Unhealthy => false,
            }
    }

    /// Stopped by itself (or by failing its health checks) soon after it started, or before.
    fn failed_start(&self) -> bool {
        let by_scheduler = self.stop_code == Some(StopCode::ServiceSchedulerInitiated)
            && !self.failed_health_check();
        let by_someone_else = matches!(
            self.stop_code,
            Some(StopCode::UserInitiated | StopCode::TerminationNotice)
        );
        if by_scheduler || by_someone_else {
            return false;
        }
        match (self.started_at, self.stopped_at) {
            (Some(started), Some(stopped)) => stopped - started < SHORT_RUN,
            _ => true,
        }
    }

    fn protected(&self, now: f64) -> bool {
        self.protected_until.is_some_and(|until| until > now)
    }

    fn failed_health_check(&self) -> bool {
        self.stopped_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(UNHEALTHY_REASON))
    }
}

/// The reason given to a task stopped for failing its health checks.
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";

/// Knobs of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The delay after the first failed start; it doubles with each further one.
    pub restart_delay_base: Duration,
    /// The longest delay (ECS: 27 minutes).
    pub restart_delay_cap: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            restart_delay_base: Duration::from_secs(5),
            restart_delay_cap: Duration::from_secs(27 * 60),
        }
    }
}

/// What one pass decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The service record as it should be stored.
    pub service: Service,
    /// Start this many tasks of (deployment id, task definition ARN).
    pub start: Option<(String, String, u32)>,
    /// Stop these tasks, each with its reason.
    pub stop: Vec<(String, String)>,
    /// A pass is due then even if nothing changes (the end of a throttle delay).
    pub wake_at: Option<f64>,
}

/// The circuit breaker's threshold for a desired count.
pub fn failure_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// Decides one pass for `service`, whose tasks (any deployment, any phase) are `tasks`.
/// Why a task on a DRAINING host was stopped (ECS's words).
pub const DRAINING_HOST_REASON: &str =
    "Task stopped because its container instance is being drained";

pub fn plan(service: &Service, tasks: &[TaskView], now: f64, settings: &SchedulerSettings) -> Plan {
    if service.is_external() {
        return task_sets::plan(service, tasks, now, settings);
    }
    let mut s = service.clone();
    let name = s.service_name.clone();
    account_stopped(&mut s, tasks, now, settings);
    honour_stop_requests(&mut s, now);
    trip_circuit_breaker(&mut s, now);
    let primary_id = s.primary().map(|d| d.id.clone()).unwrap_or_default();

    // A primary task that has run for a while shows the service can start tasks again.
    if tasks.iter().any(|t| {
        t.deployment == primary_id
            && t.phase == Phase::Running
            && t.started_at.is_some_and(|at| now - at >= SHORT_RUN)
    }) {
        s.scheduler.start_failures = 0;
        s.scheduler.not_before = None;
    }

    let desired = if s.status == ServiceStatus::Active {
        s.desired_count
    } else {
        0
    };
    let config = &s.deployment_configuration;
    let max_total = desired * config.maximum_percent / 100;
    let min_healthy = (desired * config.minimum_healthy_percent).div_ceil(100);
    let primary_failed = s
        .primary()
        .is_some_and(|d| d.rollout_state == RolloutState::Failed);

    let not_stopped = tasks.iter().filter(|t| t.phase != Phase::Stopped).count() as u32;
    let mut healthy = tasks.iter().filter(|t| t.healthy()).count() as u32;
    let mut stop: Vec<(String, String)> = Vec::new();

    // Tasks that failed their health checks are replaced (they are not healthy anyway), once
    // the service's grace period after their start is over.
    let grace = f64::from(s.health_check_grace_period_seconds.unwrap_or(0));
    let mut grace_ends: Option<f64> = None;
    for task in tasks
        .iter()
        .filter(|t| t.phase == Phase::Running && t.health == Health::Unhealthy)
    {
        let ends = task.started_at.unwrap_or(now) + grace;
        if now < ends {
            grace_ends = Some(grace_ends.map_or(ends, |g: f64| g.min(ends)));
            continue;
        }
        stop.push((task.id.clone(), UNHEALTHY_REASON.to_string()));
    }

    // A protected task waits for its protection to end; a pass is due then.
    let mut protection_ends: Option<f64> = None;
    let mut held = |task: &TaskView| {
        if task.protected(now) {
            let until = task.protected_until.unwrap_or(now);
            protection_ends = Some(protection_ends.map_or(until, |p: f64| p.min(until)));
            return true;
        }
        false
    };

    // Older deployments drain: tasks that are not yet healthy go at once; healthy ones only as
    // far as the minimum healthy count allows. A failed primary keeps the old ones.
    if !primary_failed {
        let draining: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| {
                (t.deployment != primary_id || t.on_draining_host)
                    && t.alive()
                    && !is_listed(&stop, &t.id)
                    && (t.on_draining_host || !held(t))
            })
            .collect();
        for task in draining {
            let reason = if task.on_draining_host {
                DRAINING_HOST_REASON.to_string()
            } else {
                format!("Scaling activity initiated by (deployment {primary_id})")
            };
            if !task.healthy() {
                stop.push((task.id.clone(), reason));
            } else if healthy > min_healthy {
                healthy -= 1;
                stop.push((task.id.clone(), reason));
            }
        }
    }

    // Scale-in of the primary: pending tasks first, then the youngest running ones.
    let mut primary_alive: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| {
            t.deployment == primary_id
                && t.alive()
                && !t.on_draining_host
                && !is_listed(&stop, &t.id)
        })
        .collect();
    if primary_alive.len() as u32 > desired {
        primary_alive.sort_by(|a, b| {
            (a.phase == Phase::Running)
                .cmp(&(b.phase == Phase::Running))
                .then(
                    b.started_at
                        .partial_cmp(&a.started_at)
                        .unwrap_or(std::cmp::Ordering::Equal),
                )
        });
        let excess = primary_alive.len() - desired as usize;
        let chosen: Vec<&TaskView> = primary_alive
            .iter()
            .copied()
            .filter(|t| !held(t))
            .take(excess)
            .collect();
        primary_alive.retain(|t| !chosen.iter().any(|c| c.id == t.id));
        for task in chosen {
            stop.push((
                task.id.clone(),
                format!("Scaling activity initiated by (deployment {primary_id})"),
            ));
        }
    }

    // Starts: what the primary lacks, within the maximum, unless throttled or failed.
    let throttled = s.scheduler.not_before.is_some_and(|at| now < at);
    let lacking = desired.saturating_sub(primary_alive.len() as u32);
    let room = max_total.saturating_sub(not_stopped);
    let mut start = None;
    let mut wake_at = match (grace_ends, protection_ends) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if lacking > 0 && !primary_failed && s.status == ServiceStatus::Active {
        if throttled {
            wake_at = match (wake_at, s.scheduler.not_before) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else if room > 0
            && let Some(primary) = s.primary()
        {
            start = Some((
                primary.id.clone(),
                primary.task_definition.clone(),
                lacking.min(room),
            ));
        }
    }

    if !stop.is_empty() {
        let ids: Vec<String> = stop.iter().map(|(id, _)| format!("(task {id})")).collect();
        s.add_event(
            now,
            format!(
                "(service {name}) has stopped {} running tasks: {}.",
                stop.len(),
                ids.join(" ")
            ),
        );
    }

    update_counts(&mut s, tasks, desired, now);
    finish_rollout(&mut s, tasks, now);
    follow_service_deployments(&mut s, now);

    // DRAINING ends when nothing is left.
    if s.status == ServiceStatus::Draining && not_stopped == 0 {
        s.status = ServiceStatus::Inactive;
    }

    let settled = s.status == ServiceStatus::Active
        && s.deployments.len() == 1
        && s.running_count == desired
        && s.pending_count == 0
        && start.is_none()
        && stop.is_empty();
    finish(s, settled, start, stop, wake_at, now)
}

/// The plan of a pass, with the "reached a steady state" event when the service has just
/// `settled` (and nothing more to start or stop).
pub(crate) fn finish(
    mut s: Service,
    settled: bool,
    start: Option<(String, String, u32)>,
    stop: Vec<(String, String)>,
    wake_at: Option<f64>,
    now: f64,
) -> Plan {
    if settled && !s.scheduler.steady {
        let name = s.service_name.clone();
        s.add_event(now, format!("(service {name}) has reached a steady state."));
    }
    s.scheduler.steady = settled;
    Plan {
        service: s,
        start,
        stop,
        wake_at,
    }
}

fn is_listed(stop: &[(String, String)], id: &str) -> bool {
    stop.iter().any(|(listed, _)| listed == id)
}

/// Counts each newly stopped task once: failed starts raise the deployment's `failedTasks`
/// and the throttle.
fn account_stopped(s: &mut Service, tasks: &[TaskView], now: f64, settings: &SchedulerSettings) {
    let stored: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    s.scheduler
        .accounted
        .retain(|id| stored.contains(id.as_str()));
    let mut new_failures = 0;
    for task in tasks.iter().filter(|t| t.phase == Phase::Stopped) {
        if s.scheduler.accounted.contains(&task.id) {
            continue;
        }
        s.scheduler.accounted.push(task.id.clone());
        let failed_start = task.failed_start();
        if !failed_start && !task.failed_health_check() {
            continue;
        }
        if let Some(deployment) = s.deployments.iter_mut().find(|d| d.id == task.deployment) {
            deployment.failed_tasks += 1;
            deployment.updated_at = now;
        }
        // Only the current deployment's failed starts throttle it; a task that ran and then
        // failed its health checks is replaced at once.
        let current = s.primary().is_some_and(|p| p.id == task.deployment)
            || s.task_sets.iter().any(|t| t.id == task.deployment);
        if failed_start && current {
            new_failures += 1;
        }
    }
    if new_failures == 0 {
        return;
    }
    s.scheduler.start_failures += new_failures;
    let doublings = (s.scheduler.start_failures - 1).min(16);
    let delay = settings
        .restart_delay_base
        .saturating_mul(1 << doublings)
        .min(settings.restart_delay_cap);
    s.scheduler.not_before = Some(now + delay.as_secs_f64());
    if s.scheduler.start_failures >= 2 {
        let message = format!(
            "(service {}) is unable to consistently start tasks successfully.",
            s.service_name
        );
        // Said again at most once a minute.
        let recently = s
            .events
            .iter()
            .any(|e| e.message == message && now - e.created_at < 60.0);
        if !recently {
            s.add_event(now, message);
        }
    }
}

/// Fails the primary deployment when its failed tasks reach the threshold; rolls back when
/// asked to.
fn trip_circuit_breaker(s: &mut Service, now: f64) {
    let breaker = s
        .deployment_configuration
        .deployment_circuit_breaker
        .clone();
    let threshold = failure_threshold(s.desired_count);
    let Some(index) = s
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return;
    };
    let primary = &s.deployments[index];
    if !breaker.enable
        || primary.rollout_state != RolloutState::InProgress
        || primary.failed_tasks < threshold
    {
        return;
    }
    let failed_id = primary.id.clone();
    let name = s.service_name.clone();
    {
        let primary = &mut s.deployments[index];
        primary.rollout_state = RolloutState::Failed;
        primary.rollout_state_reason = format!(
            "ECS deployment circuit breaker: tasks failed to start ({} failed, threshold {threshold}).",
            primary.failed_tasks
        );
        primary.updated_at = now;
    }
    s.add_event(
        now,
        format!(
            "(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start."
        ),
    );
    let rolling_back_already = s
        .history
        .carried_by_mut(&failed_id)
        .is_some_and(|d| d.rollback.is_some());
    if let Some(record) = s.history.carried_by_mut(&failed_id) {
        record.tripped = true;
    }
    // A rollback that fails too ends there (ROLLBACK_FAILED), rather than rolling back again.
    if !breaker.rollback || rolling_back_already {
        return;
    }
    let Some(target) = s
        .deployments
        .iter()
        .find(|d| {
            d.status == DeploymentStatus::Active && d.rollout_state == RolloutState::Completed
        })
        .cloned()
    else {
        s.add_event(
            now,
            format!("(service {name}) circuit breaker: no completed deployment to roll back to."),
        );
        return;
    };
    let revision = s
        .history
        .revision_of(&target.id)
        .cloned()
        .unwrap_or_else(|| s.revision_for(&target, now));
    s.add_event(
        now,
        format!(
            "(service {name}) (deployment {failed_id}) circuit breaker: rolling back to deployment {}.",
            target.id
        ),
    );
    roll_back(
        s,
        index,
        &revision,
        format!(
            "ECS deployment circuit breaker: rolling back to deploymentId {}.",
            target.id
        ),
        "Service deployment rolled back because the circuit breaker threshold was exceeded.",
        now,
    );
}

/// Makes a new PRIMARY deployment of `revision` in place of the one at `index`, carried by
/// the same service deployment, which is then ROLLBACK_IN_PROGRESS.
fn roll_back(
    s: &mut Service,
    index: usize,
    revision: &ServiceRevision,
    rollout_reason: String,
    why: &str,
    now: f64,
) {
    let failed_id = s.deployments[index].id.clone();
    s.deployments[index].status = DeploymentStatus::Active;
    let rollback = Deployment {
        id: new_deployment_id(),
        status: DeploymentStatus::Primary,
        task_definition: revision.task_definition.clone(),
        desired_count: s.desired_count,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
        launch_type: revision.launch_type,
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: rollout_reason,
    };
    s.apply_revision(revision);
    s.history
        .runs
        .insert(rollback.id.clone(), revision.id.clone());
    if let Some(record) = s.history.carried_by_mut(&failed_id) {
        record.carriers.push(rollback.id.clone());
        record.status = ServiceDeploymentStatus::RollbackInProgress;
        record.status_reason = Some(why.to_string());
        record.rollback = Some(Rollback {
            reason: why.to_string(),
            started_at: now,
            service_revision: revision.id.clone(),
        });
        record.updated_at = now;
    }
    s.deployments.insert(0, rollback);
    s.scheduler.start_failures = 0;
    s.scheduler.not_before = None;
    s.scheduler.steady = false;
}

/// Carries out StopServiceDeployment's requests on the primary's service deployment:
/// ROLLBACK_REQUESTED rolls back to the revision that ran before it; STOP_REQUESTED (ABORT)
/// stops it where it is (no more starts or drains, as a failed deployment).
fn honour_stop_requests(s: &mut Service, now: f64) {
    let Some(index) = s
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return;
    };
    let primary_id = s.deployments[index].id.clone();
    let Some(record) = s.history.carried_by_mut(&primary_id) else {
        return;
    };
    let name = s.service_name.clone();
    match record.status {
        ServiceDeploymentStatus::RollbackRequested => {
            let target = record.source_revisions.first().cloned();
            let revision = target.and_then(|id| s.history.revision(&id).cloned());
            let Some(revision) = revision else {
                // Nothing ran before it (the API refuses this; an old record may still ask).
                if let Some(record) = s.history.carried_by_mut(&primary_id) {
                    record.status = ServiceDeploymentStatus::RollbackFailed;
                    record.status_reason = Some("No previous service revision.".into());
                    record.finished_at = Some(now);
                    record.updated_at = now;
                }
                return;
            };
            let primary = &mut s.deployments[index];
            primary.rollout_state = RolloutState::Failed;
            primary.rollout_state_reason = "Service deployment stopped with rollback.".into();
            primary.updated_at = now;
            s.add_event(
                now,
                format!(
                    "(service {name}) (deployment {primary_id}) rolling back to service revision {}.",
                    revision.id
                ),
            );
            roll_back(
                s,
                index,
                &revision,
                format!(
                    "ECS deployment rollback requested: rolling back to service revision {}.",
                    revision.id
                ),
                "Service deployment rolled back by StopServiceDeployment.",
                now,
            );
        }
        ServiceDeploymentStatus::StopRequested => {
            record.status = ServiceDeploymentStatus::Stopped;
            record.status_reason =
                Some("Service deployment stopped by StopServiceDeployment.".into());
            record.stopped_at = Some(now);
            record.finished_at = Some(now);
            record.updated_at = now;
            let primary = &mut s.deployments[index];
            if primary.rollout_state == RolloutState::InProgress {
                primary.rollout_state = RolloutState::Failed;
                primary.rollout_state_reason = "Service deployment stopped.".into();
                primary.updated_at = now;
            }
            s.add_event(
                now,
                format!("(service {name}) (deployment {primary_id}) deployment stopped."),
            );
        }
        _ => {}
    }
}

/// Every ongoing service deployment follows the scheduler deployment carrying it: counts,
/// the circuit breaker's tally, and SUCCESSFUL / STOPPED / ROLLBACK_* once it is decided.
fn follow_service_deployments(s: &mut Service, now: f64) {
    // A service stored before service deployments were kept gets one for its primary.
    if s.history.deployments.is_empty()
        && let Some(primary) = s.primary().cloned()
    {
        let others: Vec<String> = s
            .deployments
            .iter()
            .filter(|d| d.id != primary.id)
            .map(|d| d.id.clone())
            .collect();
        let revision = s.revision_for(&primary, primary.created_at);
        let configuration = serde_json::to_value(&s.deployment_configuration).unwrap_or_default();
        s.history.begin(
            revision,
            &primary.id,
            &others,
            configuration,
            primary.created_at,
        );
    }
    let threshold = failure_threshold(s.desired_count);
    let breaker_on = s.deployment_configuration.deployment_circuit_breaker.enable;
    let carriers: Vec<Deployment> = s.deployments.clone();
    for record in s.history.deployments.iter_mut() {
        if !record.status.is_ongoing() {
            continue;
        }
        let carrier = record
            .carrier()
            .and_then(|c| carriers.iter().find(|d| d.id == c));
        let Some(carrier) = carrier else {
            record.status = ServiceDeploymentStatus::Stopped;
            record.status_reason = Some("The deployment is no longer running.".into());
            record.stopped_at = Some(now);
            record.finished_at = Some(now);
            record.updated_at = now;
            continue;
        };
        let failures: u32 = record
            .carriers
            .iter()
            .filter_map(|c| carriers.iter().find(|d| &d.id == c))
            .map(|d| d.failed_tasks)
            .max()
            .unwrap_or(0)
            .max(record.failure_count);
        if breaker_on && (failures, threshold) != (record.failure_count, record.threshold) {
            record.failure_count = failures;
            record.threshold = threshold;
            record.updated_at = now;
        }
        let rolling_back = record.rollback.is_some();
        let (status, reason) = match (carrier.rollout_state, rolling_back) {
            (RolloutState::InProgress, _) => continue,
            (RolloutState::Completed, false) => (
                ServiceDeploymentStatus::Successful,
                "Service deployment completed.".to_string(),
            ),
            (RolloutState::Completed, true) => (
                ServiceDeploymentStatus::RollbackSuccessful,
                "Service deployment rolled back.".to_string(),
            ),
            (RolloutState::Failed, false) => (
                ServiceDeploymentStatus::Stopped,
                carrier.rollout_state_reason.clone(),
            ),
            (RolloutState::Failed, true) => (
                ServiceDeploymentStatus::RollbackFailed,
                carrier.rollout_state_reason.clone(),
            ),
        };
        record.status = status;
        record.status_reason = Some(reason);
        record.finished_at = Some(now);
        if status == ServiceDeploymentStatus::Stopped {
            record.stopped_at = Some(now);
        }
        record.updated_at = now;
    }
    let live: Vec<String> = s.deployments.iter().map(|d| d.id.clone()).collect();
    s.history.prune(&live);
}

/// Per-deployment and service counts.
fn update_counts(s: &mut Service, tasks: &[TaskView], desired: u32, now: f64) {
    count_deployments(
        s,
        tasks.iter().map(|t| (t.deployment.as_str(), t.phase)),
        desired,
        now,
    );
}

/// Sets every deployment's running, pending and desired counts (the PRIMARY wants `desired`,
/// the others none) and the service's totals, from each task's deployment and phase; a
/// deployment's `updatedAt` moves only when its counts change.
pub(crate) fn count_deployments<'a>(
    s: &mut Service,
    tasks: impl Iterator<Item = (&'a str, Phase)> + Clone,
    desired: u32,
    now: f64,
) {
    let (mut running_total, mut pending_total) = (0, 0);
    for deployment in &mut s.deployments {
        let (mut running, mut pending) = (0, 0);
        for (_, phase) in tasks.clone().filter(|(d, _)| *d == deployment.id) {
            match phase {
                Phase::Running => running += 1,
                Phase::Pending => pending += 1,
                Phase::Stopping | Phase::Stopped => {}
            }
        }
        let wanted = if deployment.status == DeploymentStatus::Primary {
            desired
        } else {
            0
        };
        if (
            deployment.running_count,
            deployment.pending_count,
            deployment.desired_count,
        ) != (running, pending, wanted)
        {
            deployment.running_count = running;
            deployment.pending_count = pending;
            deployment.desired_count = wanted;
            deployment.updated_at = now;
        }
        running_total += running;
        pending_total += pending;
    }
    s.running_count = running_total;
    s.pending_count = pending_total;
}

/// Marks the primary COMPLETED once it runs the desired count alone, and forgets drained older
/// deployments once the primary's rollout is decided.
fn finish_rollout(s: &mut Service, tasks: &[TaskView], now: f64) {
    let name = s.service_name.clone();
    let others_alive = |s: &Service| {
        tasks
            .iter()
            .any(|t| t.phase != Phase::Stopped && s.primary().is_none_or(|p| p.id != t.deployment))
    };
    let desired = if s.status == ServiceStatus::Active {
        s.desired_count
    } else {
        0
    };
    let healthy_primary = s.primary().map_or(0, |p| {
        tasks
            .iter()
            .filter(|t| t.deployment == p.id && t.healthy())
            .count() as u32
    });
    let completes = s.primary().is_some_and(|p| {
        p.rollout_state == RolloutState::InProgress
            && healthy_primary == desired
            && p.pending_count == 0
    }) && !others_alive(s);
    if completes
        && let Some(primary) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
    {
        primary.rollout_state = RolloutState::Completed;
        primary.rollout_state_reason = format!("ECS deployment {} completed.", primary.id);
        primary.updated_at = now;
        let id = primary.id.clone();
        s.add_event(
            now,
            format!("(service {name}) (deployment {id}) deployment completed."),
        );
    }
    let decided = s
        .primary()
        .is_some_and(|p| p.rollout_state != RolloutState::InProgress);
    if decided {
        s.deployments.retain(|d| {
            d.status == DeploymentStatus::Primary
                || tasks
                    .iter()
                    .any(|t| t.deployment == d.id && t.phase != Phase::Stopped)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::LaunchType;
    use crate::records::service::{DeploymentConfiguration, SchedulerState};

    fn service(desired: u32, min: u32, max: u32) -> Service {
        let mut s = Service {
            service_arn: "arn:svc".into(),
            service_name: "web".into(),
            cluster_arn: "arn:cluster".into(),
            status: ServiceStatus::Active,
            desired_count: desired,
            running_count: 0,
            pending_count: 0,
            launch_type: LaunchType::Fargate,
            task_definition: "td:1".into(),
            deployment_configuration: DeploymentConfiguration {
                maximum_percent: max,
                minimum_healthy_percent: min,
                ..Default::default()
            },
            deployments: Vec::new(),
            events: Vec::new(),
            created_at: 0.0,
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            health_check_grace_period_seconds: None,
            scheduling_strategy: "REPLICA".into(),
            tags: serde_json::json!([]),
            kept: Default::default(),
            task_sets: Vec::new(),
            scheduler: SchedulerState::default(),
            history: Default::default(),
        };
        s.begin_deployment(deployment("d1", "td:1"), 0.0);
        s
    }

    fn deployment(id: &str, task_definition: &str) -> Deployment {
        Deployment {
            id: id.into(),
            status: DeploymentStatus::Primary,
            task_definition: task_definition.into(),
            desired_count: 0,
            pending_count: 0,
            running_count: 0,
            failed_tasks: 0,
            created_at: 0.0,
            updated_at: 0.0,
            launch_type: LaunchType::Fargate,
            rollout_state: RolloutState::InProgress,
            rollout_state_reason: String::new(),
        }
    }

    /// A tiny world: tasks start pending, run on the next step, stop on the step after they
    /// are told to; the scheduler plans at every step.
    struct World {
        service: Service,
        tasks: Vec<TaskView>,
        now: f64,
        next_id: u32,
        /// Whether new tasks of a deployment fail to start.
        failing: Vec<String>,
        deployments_made: u32,
    }

    impl World {
        fn new(service: Service) -> Self {
            Self {
                service,
                tasks: Vec::new(),
                now: 1000.0,
                next_id: 0,
                failing: Vec::new(),
                deployments_made: 1,
            }
        }

        fn step(&mut self) -> Plan {
            self.now += 1.0;
            for task in &mut self.tasks {
                match task.phase {
                    Phase::Pending if self.failing.contains(&task.deployment) => {
                        task.phase = Phase::Stopped;
                        task.stopped_at = Some(self.now);
                        task.stop_code = Some(StopCode::TaskFailedToStart);
                    }
                    Phase::Pending => {
                        task.phase = Phase::Running;
                        task.started_at = Some(self.now);
                    }
                    Phase::Stopping => {
                        task.phase = Phase::Stopped;
                        task.stopped_at = Some(self.now);
                    }
                    _ => {}
                }
            }
            let plan = plan(
                &self.service,
                &self.tasks,
                self.now,
                &SchedulerSettings {
                    restart_delay_base: Duration::from_secs(4),
                    restart_delay_cap: Duration::from_secs(60),
                },
            );
            for (id, _) in &plan.stop {
                let task = self.tasks.iter_mut().find(|t| &t.id == id).unwrap();
                task.phase = Phase::Stopping;
                task.stop_code = Some(StopCode::ServiceSchedulerInitiated);
            }
            if let Some((deployment, _, count)) = &plan.start {
                for _ in 0..*count {
                    self.next_id += 1;
                    self.tasks.push(TaskView {
                        id: format!("t{}", self.next_id),
                        deployment: deployment.clone(),
                        phase: Phase::Pending,
                        health: Health::Unknown,
                        has_health_check: false,
                        started_at: None,
                        stopped_at: None,
                        stop_code: None,
                        stopped_reason: None,
                        on_draining_host: false,
                        protected_until: None,
                    });
                }
            }
            self.service = plan.service.clone();
            plan
        }

        fn not_stopped(&self) -> u32 {
            self.tasks
                .iter()
                .filter(|t| t.phase != Phase::Stopped)
                .count() as u32
        }

        fn running(&self) -> u32 {
            self.tasks
                .iter()
                .filter(|t| t.phase == Phase::Running)
                .count() as u32
        }

        fn update(&mut self, task_definition: &str) {
            self.deployments_made += 1;
            let mut new = deployment(&format!("d{}", self.deployments_made), task_definition);
            new.created_at = self.now;
            self.service.begin_deployment(new, self.now);
            self.service.task_definition = task_definition.into();
            self.service.scheduler.start_failures = 0;
            self.service.scheduler.not_before = None;
        }
    }

    fn settle(world: &mut World, steps: usize) {
        for _ in 0..steps {
            world.step();
        }
    }

    #[test]
    fn tasks_on_a_draining_host_are_replaced_within_the_deployment_bounds() {
        let mut world = World::new(service(4, 50, 150));
        settle(&mut world, 4);
        assert_eq!(world.running(), 4);
        let drained: Vec<String> = world.tasks.iter().take(3).map(|t| t.id.clone()).collect();
        for task in world.tasks.iter_mut().filter(|t| drained.contains(&t.id)) {
            task.on_draining_host = true;
        }
        for _ in 0..8 {
            world.step();
            // Never above 150% of 4, never below 50% running.
            assert!(world.not_stopped() <= 6, "{:?}", world.tasks);
            assert!(world.running() >= 2, "{:?}", world.tasks);
        }
        let alive: Vec<&TaskView> = world
            .tasks
            .iter()
            .filter(|t| t.phase != Phase::Stopped)
            .collect();
        assert_eq!(alive.len(), 4, "{alive:?}");
        assert!(alive.iter().all(|t| !drained.contains(&t.id)), "{alive:?}");
        assert!(
            world
                .service
                .events
                .iter()
                .any(|e| e.message.contains("has stopped")),
        );
    }

    #[test]
    fn scales_up_to_the_desired_count_and_reports_a_steady_state() {
        let mut world = World::new(service(3, 100, 200));
        let first = world.step();
        assert_eq!(first.start, Some(("d1".into(), "td:1".into(), 3)));
        settle(&mut world, 3);
        assert_eq!(world.service.running_count, 3);
        let primary = world.service.primary().unwrap();
        assert_eq!(primary.rollout_state, RolloutState::Completed);
        let messages: Vec<&str> = world
            .service
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert!(
            messages.contains(&"(service web) has reached a steady state."),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.ends_with("deployment completed.")),
            "{messages:?}"
        );
        // Nothing more to do, and no event repeats.
        let events = world.service.events.len();
        let quiet = world.step();
        assert_eq!((quiet.start, quiet.stop.len()), (None, 0));
        assert_eq!(world.service.events.len(), events);
    }

    fn rolling_update_keeps_bounds(desired: u32, min: u32, max: u32) {
        let mut world = World::new(service(desired, min, max));
        settle(&mut world, 4);
        assert_eq!(world.running(), desired);
        world.update("td:2");
        let max_total = desired * max / 100;
        let min_healthy = (desired * min).div_ceil(100);
        for _ in 0..40 {
            world.step();
            assert!(
                world.not_stopped() <= max_total,
                "over max: {}",
                world.not_stopped()
            );
            assert!(
                world.running() >= min_healthy,
                "under min: {}",
                world.running()
            );
        }
        assert_eq!(world.service.deployments.len(), 1);
        assert_eq!(world.service.deployments[0].task_definition, "td:2");
        assert_eq!(
            world.service.deployments[0].rollout_state,
            RolloutState::Completed
        );
        assert_eq!(world.service.running_count, desired);
    }

    #[test]
    fn rolling_updates_honour_minimum_healthy_and_maximum_percent() {
        rolling_update_keeps_bounds(4, 50, 200);
        rolling_update_keeps_bounds(2, 100, 150);
        rolling_update_keeps_bounds(4, 100, 150);
        rolling_update_keeps_bounds(3, 0, 100);
        rolling_update_keeps_bounds(5, 50, 100);
    }

    #[test]
    fn failing_starts_are_throttled_and_a_new_deployment_resets_the_delay() {
        let mut world = World::new(service(1, 100, 200));
        world.failing.push("d1".into());
        let mut starts = Vec::new();
        for _ in 0..60 {
            if world.step().start.is_some() {
                starts.push(world.now);
            }
        }
        // Gaps between attempts grow: 4 s, 8 s, 16 s, 32 s ...
        let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 3, "{gaps:?}");
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert!(gaps.last().unwrap() > &gaps[0], "{gaps:?}");
        assert!(
            world.service.events.iter().any(|e| e.message
                == "(service web) is unable to consistently start tasks successfully.")
        );
        assert!(world.service.scheduler.not_before.is_some());
        // A new revision starts at once.
        world.failing.clear();
        world.update("td:2");
        let plan = world.step();
        assert!(plan.start.is_some(), "{plan:?}");
        settle(&mut world, 3);
        assert_eq!(world.service.running_count, 1);
    }

    #[test]
    fn the_circuit_breaker_rolls_back_to_the_last_completed_deployment() {
        let mut s = service(2, 50, 200);
        s.deployment_configuration.deployment_circuit_breaker.enable = true;
        s.deployment_configuration
            .deployment_circuit_breaker
            .rollback = true;
        let mut world = World::new(s);
        settle(&mut world, 4);
        world.update("td:bad");
        world.failing.push("d2".into());
        for _ in 0..200 {
            world.step();
            if world.service.primary().unwrap().task_definition == "td:1"
                && world.service.deployments.len() == 1
                && world.service.running_count == 2
            {
                break;
            }
        }
        assert_eq!(world.service.task_definition, "td:1");
        assert_eq!(world.service.running_count, 2);
        let messages: Vec<&str> = world
            .service
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("(deployment d2) deployment failed")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("rolling back to deployment d1"))
        );
        // As service deployments: the first SUCCESSFUL, the bad one rolled back to it.
        let history = &world.service.history;
        let bad = &history.deployments[0];
        assert_eq!(bad.status, ServiceDeploymentStatus::RollbackSuccessful);
        assert!(bad.tripped && bad.failure_count >= failure_threshold(2));
        let first = &history.deployments[1];
        assert_eq!(first.status, ServiceDeploymentStatus::Successful);
        assert_eq!(
            bad.rollback.as_ref().unwrap().service_revision,
            first.target_revision
        );
        assert_eq!(
            bad.source_revisions,
            std::slice::from_ref(&first.target_revision)
        );
    }

    fn protect(world: &mut World, ids: &[String], until: f64) {
        for task in world.tasks.iter_mut().filter(|t| ids.contains(&t.id)) {
            task.protected_until = Some(until);
        }
    }

    fn alive_ids(world: &World) -> Vec<String> {
        world
            .tasks
            .iter()
            .filter(|t| t.phase != Phase::Stopped && t.phase != Phase::Stopping)
            .map(|t| t.id.clone())
            .collect()
    }

    #[test]
    fn protected_tasks_survive_a_scale_in_until_their_protection_expires() {
        let mut world = World::new(service(3, 100, 200));
        settle(&mut world, 3);
        let ids = alive_ids(&world);
        let kept: Vec<String> = ids[..2].to_vec();
        let until = world.now + 20.0;
        protect(&mut world, &kept, until);
        world.service.desired_count = 1;
        let plan = world.step();
        assert_eq!(plan.stop.len(), 1, "{plan:?}");
        assert!(!kept.contains(&plan.stop[0].0));
        assert_eq!(plan.wake_at, Some(until));
        settle(&mut world, 5);
        assert_eq!(alive_ids(&world), kept);
        while world.now < until + 1.0 {
            world.step();
        }
        settle(&mut world, 2);
        assert_eq!(alive_ids(&world).len(), 1);
    }

    #[test]
    fn a_deployment_waits_for_a_protected_task_before_it_completes() {
        let mut world = World::new(service(2, 50, 200));
        settle(&mut world, 3);
        let old = alive_ids(&world);
        let until = world.now + 15.0;
        protect(&mut world, &old[..1], until);
        world.update("td:2");
        settle(&mut world, 6);
        assert!(alive_ids(&world).contains(&old[0]));
        assert_eq!(
            world.service.primary().unwrap().rollout_state,
            RolloutState::InProgress
        );
        assert_eq!(
            world.service.history.deployments[0].status,
            ServiceDeploymentStatus::InProgress
        );
        while world.now < until + 3.0 {
            world.step();
        }
        assert!(!alive_ids(&world).contains(&old[0]));
        assert_eq!(
            world.service.primary().unwrap().rollout_state,
            RolloutState::Completed
        );
        assert_eq!(
            world.service.history.deployments[0].status,
            ServiceDeploymentStatus::Successful
        );
    }

    #[test]
    fn a_requested_rollback_returns_to_the_previous_revision() {
        let mut world = World::new(service(2, 50, 200));
        settle(&mut world, 3);
        world.update("td:2");
        // Its tasks never start, and no circuit breaker is on: only a request ends it.
        world.failing.push("d2".into());
        settle(&mut world, 5);
        let record = &mut world.service.history.deployments[0];
        assert_eq!(record.status, ServiceDeploymentStatus::InProgress);
        record.status = ServiceDeploymentStatus::RollbackRequested;
        world.step();
        assert_eq!(
            world.service.history.deployments[0].status,
            ServiceDeploymentStatus::RollbackInProgress
        );
        settle(&mut world, 10);
        assert_eq!(world.service.task_definition, "td:1");
        assert_eq!(world.service.running_count, 2);
        let record = &world.service.history.deployments[0];
        assert_eq!(record.status, ServiceDeploymentStatus::RollbackSuccessful);
        let first = &world.service.history.deployments[1].target_revision;
        assert_eq!(&record.rollback.as_ref().unwrap().service_revision, first);
    }

    #[test]
    fn an_aborted_deployment_stops_where_it_is() {
        let mut world = World::new(service(2, 100, 200));
        settle(&mut world, 3);
        world.update("td:2");
        world.failing.push("d2".into());
        settle(&mut world, 3);
        world.service.history.deployments[0].status = ServiceDeploymentStatus::StopRequested;
        world.step();
        let record = &world.service.history.deployments[0];
        assert_eq!(record.status, ServiceDeploymentStatus::Stopped);
        assert!(record.stopped_at.is_some());
        for _ in 0..10 {
            assert!(world.step().start.is_none());
        }
        // The old revision's tasks stay.
        assert_eq!(world.running(), 2);
    }

    #[test]
    fn without_rollback_a_failed_deployment_stops_launching() {
        let mut s = service(2, 50, 200);
        s.deployment_configuration.deployment_circuit_breaker.enable = true;
        let mut world = World::new(s);
        settle(&mut world, 4);
        world.update("td:bad");
        world.failing.push("d2".into());
        for _ in 0..200 {
            world.step();
        }
        let primary = world.service.primary().unwrap();
        assert_eq!(primary.rollout_state, RolloutState::Failed);
        assert!(primary.failed_tasks >= failure_threshold(2));
        // The old deployment keeps at least the healthy minimum.
        assert!(world.running() >= 1);
        assert!(world.step().start.is_none());
    }

    #[test]
    fn draining_stops_everything_then_goes_inactive() {
        let mut world = World::new(service(3, 100, 200));
        settle(&mut world, 3);
        world.service.status = ServiceStatus::Draining;
        world.service.desired_count = 0;
        settle(&mut world, 3);
        assert_eq!(world.service.status, ServiceStatus::Inactive);
        assert_eq!(world.not_stopped(), 0);
    }

    fn external(desired: u32, sets: &[(&str, f64)]) -> Service {
        use crate::records::service::task_set::{Scale, ScaleUnit, StabilityStatus, TaskSet};
        let mut s = service(desired, 100, 200);
        s.deployments.clear();
        s.history = Default::default();
        s.kept.insert(
            "deploymentController".into(),
            serde_json::json!({"type": "EXTERNAL"}),
        );
        for (id, percent) in sets {
            s.task_sets.push(TaskSet {
                id: id.to_string(),
                task_set_arn: format!("arn:task-set/{id}"),
                service_arn: s.service_arn.clone(),
                cluster_arn: s.cluster_arn.clone(),
                external_id: None,
                status: crate::records::service::task_set::TaskSetStatus::Active,
                task_definition: format!("td:{id}"),
                computed_desired_count: 0,
                pending_count: 0,
                running_count: 0,
                created_at: 0.0,
                updated_at: 0.0,
                launch_type: LaunchType::Fargate,
                scale: Scale {
                    value: *percent,
                    unit: ScaleUnit::Percent,
                },
                stability_status: StabilityStatus::Stabilizing,
                stability_status_at: 0.0,
                tags: serde_json::json!([]),
                kept: Default::default(),
            });
        }
        s
    }

    fn of_set(world: &World, id: &str) -> usize {
        world
            .tasks
            .iter()
            .filter(|t| t.deployment == id && t.phase == Phase::Running)
            .count()
    }

    #[test]
    fn task_sets_keep_their_share_of_the_desired_count() {
        use crate::records::service::task_set::{StabilityStatus, TaskSetStatus};
        let mut world = World::new(external(4, &[("blue", 100.0), ("green", 25.0)]));
        settle(&mut world, 6);
        assert_eq!((of_set(&world, "blue"), of_set(&world, "green")), (4, 1));
        assert!(world.service.deployments.is_empty());
        assert_eq!(world.service.running_count, 5);
        let green = &world.service.task_sets[1];
        assert_eq!(green.computed_desired_count, 1);
        assert_eq!(green.stability_status, StabilityStatus::SteadyState);
        // Blue scales in to 50 %, one of its tasks protected; green goes to 100 %.
        world.service.task_sets[0].scale.value = 50.0;
        world.service.task_sets[1].scale.value = 100.0;
        let protected: Vec<String> = world
            .tasks
            .iter()
            .filter(|t| t.deployment == "blue")
            .take(3)
            .map(|t| t.id.clone())
            .collect();
        let until = world.now + 100.0;
        protect(&mut world, &protected, until);
        settle(&mut world, 6);
        assert_eq!((of_set(&world, "blue"), of_set(&world, "green")), (3, 4));
        assert_eq!(
            world.service.task_sets[0].stability_status,
            StabilityStatus::Stabilizing
        );
        // Deleting blue drains it; it goes with its last task, protected or not.
        world.service.task_sets[0].status = TaskSetStatus::Draining;
        for task in &mut world.tasks {
            task.protected_until = None;
        }
        settle(&mut world, 4);
        assert_eq!(of_set(&world, "blue"), 0);
        assert_eq!(world.service.task_sets.len(), 1);
        assert_eq!(world.service.running_count, 4);
    }

    #[test]
    fn a_service_stored_without_history_gets_its_current_deployment() {
        let mut world = World::new(service(1, 100, 200));
        world.service.history = Default::default();
        settle(&mut world, 3);
        let history = &world.service.history;
        assert_eq!(history.deployments.len(), 1);
        assert_eq!(
            history.deployments[0].status,
            ServiceDeploymentStatus::Successful
        );
        assert_eq!(history.revision_of("d1").unwrap().task_definition, "td:1");
    }

    #[test]
    fn threshold_is_half_the_desired_count_within_3_and_200() {
        assert_eq!(failure_threshold(1), 3);
        assert_eq!(failure_threshold(10), 5);
        assert_eq!(failure_threshold(11), 6);
        assert_eq!(failure_threshold(1000), 200);
    }
}
