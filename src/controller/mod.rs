//! The controller's scheduler: keeps every service's tasks as its record asks. A reconcile
//! loop, woken by changes to services and tasks in the store (and by the API), with a periodic
//! resync as a safety net, runs one pass over every service: it reads the service and its
//! tasks, asks [`plan::plan`] what to do, stops and launches tasks through the control plane
//! (`control`, the same operations StopTask and RunTask use), and writes the service record
//! back only when it changed. It knows nothing of the ECS API.
//!
//! Architecture invariant: the store is the only truth. A pass reads everything it decides on,
//! so a lost or duplicated wake-up costs at most one pass and never a wrong decision; the
//! decisions themselves are a pure function ([`plan`]), tested without I/O.

pub mod daemon;
pub mod daemons;
mod host_tasks;
mod index;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::control::{Control, ControlError, Launch, PlacementFailure};
use crate::records::service::ServiceStatus;
use crate::records::{
    DesiredStatus, HealthStatus, Service, StopCode, TaskRecord, TaskStatus, timestamp,
};
use plan::{Health, Phase, SchedulerSettings, TaskView};

/// The longest the scheduler sleeps without a wake-up.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// How long the scheduler lets a burst of store changes gather before a pass.
const COALESCE: Duration = Duration::from_millis(5);
/// How often a service whose tasks fit nowhere tries again.
const PLACEMENT_RETRY: f64 = 5.0;

/// The tags a service's task gets: the service's or its task definition's as `propagateTags`
/// says, and ECS's managed tags with `enableECSManagedTags`.
fn service_task_tags(
    cluster: &str,
    service: &Service,
    definition: &serde_json::Value,
) -> serde_json::Value {
    let propagated = match service.kept.get("propagateTags").and_then(|v| v.as_str()) {
        Some("SERVICE") => Some(&service.tags),
        Some("TASK_DEFINITION") => definition.get("tags"),
        _ => None,
    };
    let managed = service
        .kept
        .get("enableECSManagedTags")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let names = [
        ("aws:ecs:clusterName", cluster),
        ("aws:ecs:serviceName", service.service_name.as_str()),
    ];
    crate::control::launch::task_tags(&json!([]), propagated, if managed { &names } else { &[] })
}

/// How long the scheduler waits without a pass before the allocator's free memory is
/// returned ([`crate::memory`]).
const QUIET_BEFORE_TRIM: Duration = Duration::from_millis(300);

/// Runs the scheduler until `shutdown`.
pub async fn run_scheduler(
    control: Arc<Control>,
    settings: SchedulerSettings,
    shutdown: CancellationToken,
) {
    let mut changes = control.store.watch();
    let mut index = Some(index::TaskIndex::new(control.store.as_ref()));
    loop {
        let pass = {
            let control = control.clone();
            let settings = settings.clone();
            let mut taken = index
                .take()
                .unwrap_or_else(|| index::TaskIndex::new(control.store.as_ref()));
            tokio::task::spawn_blocking(move || {
                let result = taken
                    .catch_up(control.store.as_ref())
                    .map_err(ControlError::from)
                    .and_then(|()| reconcile_all(&control, &settings, &taken));
                (taken, result)
            })
            .await
        };
        let wake_at = match pass {
            Ok((kept, result)) => {
                index = Some(kept);
                match result {
                    Ok(wake_at) => wake_at,
                    Err(error) => {
                        tracing::warn!(%error, "scheduler pass failed; retrying at the next wake-up");
                        Some(timestamp() + 1.0)
                    }
                }
            }
            Err(error) => {
                // The index went with the panicking pass; the next one lists everything.
                tracing::error!(%error, "scheduler pass panicked");
                Some(timestamp() + 1.0)
            }
        };
        let sleep = wake_at
            .map(|at| Duration::from_secs_f64((at - timestamp()).clamp(0.0, 3600.0)))
            .unwrap_or(RESYNC_EVERY)
            .min(RESYNC_EVERY);
        let deadline = tokio::time::sleep(sleep);
        tokio::pin!(deadline);
        // Once the passes go quiet (a ramp is over), what they freed goes back to the system.
        let quiet = tokio::time::sleep(QUIET_BEFORE_TRIM);
        tokio::pin!(quiet);
        let mut trim_due = true;
        let asked = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = control.scheduler_asked() => break true,
                () = &mut deadline => break false,
                () = &mut quiet, if trim_due => {
                    trim_due = false;
                    let _ = tokio::task::spawn_blocking(crate::memory::return_free_memory).await;
                    continue;
                }
                change = changes.recv() => match change {
                    Ok(change) if change.key.starts_with("tasks/") || change.key.starts_with("services/") || change.key.starts_with("hosts/") => break false,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break false,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        };
        // A burst of changes (a hundred tasks starting) makes one pass, not a hundred; a
        // request from the API (a service changed, a scale from zero waiting) goes at once.
        if !asked {
            tokio::time::sleep(COALESCE).await;
        }
        while changes.try_recv().is_ok() {}
    }
}

/// One pass over every service. Returns when the next pass is due at the latest.
pub fn reconcile_all(
    control: &Control,
    settings: &SchedulerSettings,
    index: &index::TaskIndex,
) -> Result<Option<f64>, ControlError> {
    // Daemons first: a host that joined gets its daemons' tasks before any service's.
    let daemons_wake =
        daemons::reconcile_daemons(control, settings, index).unwrap_or_else(|error| {
            tracing::warn!(%error, "the daemon pass failed; retrying at the next wake-up");
            Some(timestamp() + 1.0)
        });
    let services: Vec<Service> = crate::records::list(control.store.as_ref(), "services/")?;
    if services.iter().all(|s| s.status == ServiceStatus::Inactive) {
        return Ok(daemons_wake);
    }
    // The index's records shared, not copied: a copy of every task per pass was, while a
    // thousand tasks ramped up, the server's largest passing use of memory (which malloc then
    // kept).
    let mut by_service: HashMap<(String, String), Vec<Arc<TaskRecord>>> = HashMap::new();
    for task in index.tasks() {
        let Some(name) = task.service_name() else {
            continue;
        };
        by_service
            .entry((task.cluster_arn.clone(), name.to_string()))
            .or_default()
            .push(task.clone());
    }
    let draining: HashSet<String> = control
        .hosts
        .records()?
        .into_iter()
        .filter(|h| h.status == crate::control::hosts::HostStatus::Draining)
        .map(|h| h.id)
        .collect();
    let mut wake_at: Option<f64> = daemons_wake;
    for service in services {
        if service.status == ServiceStatus::Inactive {
            continue;
        }
        let cluster = crate::arn::resource_name(&service.cluster_arn, "cluster").to_string();
        let key = crate::control::routes::service_key(&cluster, &service.service_name);
        let tasks = by_service
            .remove(&(service.cluster_arn, service.service_name))
            .unwrap_or_default();
        match reconcile_service(control, &key, &cluster, &tasks, &draining, settings) {
            Ok(Some(at)) => wake_at = Some(wake_at.map_or(at, |w: f64| w.min(at))),
            Ok(None) => {}
            Err(error) => tracing::warn!(service = %key, %error, "cannot reconcile the service"),
        }
    }
    Ok(wake_at)
}

/// One service's pass.
fn reconcile_service(
    control: &Control,
    key: &str,
    cluster: &str,
    tasks: &[Arc<TaskRecord>],
    draining: &HashSet<String>,
    settings: &SchedulerSettings,
) -> Result<Option<f64>, ControlError> {
    let _guard = control.lock_services();
    // Read again under the lock: the API may have changed it since the list.
    let Some((service, revision)) = crate::records::get::<Service>(control.store.as_ref(), key)?
    else {
        return Ok(None);
    };
    let span = tracing::debug_span!("reconcile", service = %service.service_name);
    let _entered = span.enter();
    if service.scheduling_strategy == "DAEMON" {
        return host_tasks::reconcile_daemon_service(
            control, key, cluster, &service, revision, tasks, settings,
        );
    }
    let now = timestamp();
    let views: Vec<TaskView> = tasks.iter().map(|t| task_view(t, draining)).collect();
    let plan = plan::plan(&service, &views, now, settings);
    let mut updated = plan.service;
    let mut wake_at = plan.wake_at;
    // Decided on the record at `revision`: when another replica's API changed it meanwhile,
    // nothing of this pass is written (a guard conflict ends it) and the next pass decides
    // again, so no switch takes a service past its deployment's bounds.
    let guard = vec![(key.to_string(), crate::store::Expect::Revision(revision))];
    for (task_id, reason) in &plan.stop {
        control.request_stop_guarded(
            task_id,
            StopCode::ServiceSchedulerInitiated,
            reason,
            &guard,
        )?;
    }
    if let Some((deployment, task_definition, count)) = &plan.start {
        match launch_for_service(
            control,
            cluster,
            &updated,
            deployment,
            task_definition,
            *count,
            &guard,
        ) {
            Ok(launched) => {
                if !launched.tasks.is_empty() {
                    let ids: Vec<String> = launched
                        .tasks
                        .iter()
                        .map(|t| format!("(task {})", t.id()))
                        .collect();
                    updated.add_event(
                        now,
                        format!(
                            "(service {}) has started {} tasks: {}.",
                            updated.service_name,
                            launched.tasks.len(),
                            ids.join(" ")
                        ),
                    );
                    updated.scheduler.steady = false;
                    tracing::info!(started = launched.tasks.len(), %deployment, "service tasks started");
                }
                if let Some(failure) = launched.failures.first() {
                    note_placement_failure(&mut updated, failure, now);
                    wake_at = Some(
                        wake_at.map_or(now + PLACEMENT_RETRY, |w| w.min(now + PLACEMENT_RETRY)),
                    );
                }
            }
            Err(error) => {
                let message = format!(
                    "(service {}) failed to launch a task: {error}",
                    updated.service_name
                );
                if updated.events.first().is_none_or(|e| e.message != message) {
                    updated.add_event(now, message);
                }
                wake_at = Some(now + PLACEMENT_RETRY);
            }
        }
    }
    if updated != service {
        crate::records::put(control.store.as_ref(), key, &updated, revision)?;
    }
    Ok(wake_at)
}

/// Launches `count` tasks of a service's deployment: placed by the service's launch type,
/// strategies and constraints, grouped as `service:NAME`, `startedBy` the deployment.
fn launch_for_service(
    control: &Control,
    cluster: &str,
    service: &Service,
    deployment: &str,
    task_definition: &str,
    count: u32,
    guard: &[(String, crate::store::Expect)],
) -> Result<crate::control::Launched, ControlError> {
    let (record, _) = crate::control::definitions::find(control.store.as_ref(), task_definition)?;
    let definition = crate::control::definitions::definition_of(&record, task_definition)?;
    // Checked when the service was created or updated; a value that no longer parses places
    // by launch type rather than not at all.
    let strategy: Vec<crate::control::providers::StrategyItem> = service
        .kept
        .get("capacityProviderStrategy")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    crate::control::launch(
        control,
        Launch {
            cluster,
            record: &record,
            definition: &definition,
            count,
            started_by: Some(deployment.to_string()),
            group: format!("service:{}", service.service_name),
            launch_type: service.launch_type,
            strategy: &strategy,
            overrides: json!({}),
            tags: service_task_tags(cluster, service, &record),
            strategies: &service.placement_strategy,
            constraints: &service.placement_constraints,
            guard: guard.to_vec(),
            client_token: None,
        },
    )
}

/// Adds ECS's "unable to place a task" event, at most once a minute for the same reason.
fn note_placement_failure(service: &mut Service, failure: &PlacementFailure, now: f64) {
    let closest = failure.arn.rsplit('/').next().unwrap_or(&failure.arn);
    let why = match failure.reason.as_str() {
        "RESOURCE:CPU" => "has insufficient CPU units available".to_string(),
        "RESOURCE:MEMORY" => "has insufficient memory available".to_string(),
        "RESOURCE:TASKS" => "holds as many tasks as it can".to_string(),
        other => format!("does not satisfy the placement ({other})"),
    };
    let message = format!(
        "(service {}) was unable to place a task because no container instance met all of its \
         requirements. The closest matching (container-instance {closest}) {why}.",
        service.service_name
    );
    let repeated = service
        .scheduler
        .last_placement_failure
        .as_ref()
        .is_some_and(|(last, at)| *last == message && now - at < 60.0);
    if !repeated {
        service.add_event(now, message.clone());
        service.scheduler.last_placement_failure = Some((message, now));
    }
}

/// What the scheduler needs of a stored task.
fn task_view(task: &TaskRecord, draining: &HashSet<String>) -> TaskView {
    let phase = if task.is_stopped() {
        Phase::Stopped
    } else if task.desired_status == DesiredStatus::Stopped {
        Phase::Stopping
    } else if task.last_status == TaskStatus::Running {
        Phase::Running
    } else {
        Phase::Pending
    };
    let health = match task.health_status {
        HealthStatus::Healthy => Health::Healthy,
        HealthStatus::Unhealthy => Health::Unhealthy,
        HealthStatus::Unknown => Health::Unknown,
    };
    TaskView {
        id: task.id().to_string(),
        deployment: task.started_by.clone().unwrap_or_default(),
        phase,
        health,
        has_health_check: task.health_checked,
        started_at: task.started_at,
        stopped_at: task.execution_stopped_at.or(task.stopped_at),
        stop_code: task.stop_code,
        stopped_reason: task.stopped_reason.clone(),
        on_draining_host: task.host.as_ref().is_some_and(|h| draining.contains(h)),
        protected_until: task.protected_until,
    }
}
