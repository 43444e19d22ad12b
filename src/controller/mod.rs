//! The controller's scheduler: keeps every service's tasks as its record asks. A reconcile
//! loop, woken by changes to services and tasks in the store (and by the API), with a periodic
//! resync as a safety net, runs one pass over every service: it reads the service and its
//! tasks, asks [`plan::plan`] what to do, stops and starts tasks through the same paths as
//! StopTask and RunTask, and writes the service record back only when it changed.
//!
//! Architecture invariant: the store is the only truth. A pass reads everything it decides on,
//! so a lost or duplicated wake-up costs at most one pass and never a wrong decision; the
//! decisions themselves are a pure function ([`plan`]), tested without I/O.

pub mod hosts;
pub mod model;
pub mod placement;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiError};
use model::Service;
use plan::{Health, Phase, STOP_BY_SCHEDULER, SchedulerSettings, TaskView};

/// The longest the scheduler sleeps without a wake-up.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// How long the scheduler lets a burst of store changes gather before a pass.
const COALESCE: Duration = Duration::from_millis(5);
/// How often a service whose tasks fit nowhere tries again.
const PLACEMENT_RETRY: f64 = 5.0;

/// Runs the scheduler until `shutdown`.
pub async fn run_scheduler(
    api: Arc<Api>,
    settings: SchedulerSettings,
    shutdown: CancellationToken,
) {
    let mut changes = api.state.watch();
    loop {
        let pass = {
            let api = api.clone();
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || reconcile_all(&api, &settings)).await
        };
        let wake_at = match pass {
            Ok(Ok(wake_at)) => wake_at,
            Ok(Err(error)) => {
                tracing::warn!(%error, "scheduler pass failed; retrying at the next wake-up");
                Some(crate::api::timestamp() + 1.0)
            }
            Err(error) => {
                tracing::error!(%error, "scheduler pass panicked");
                Some(crate::api::timestamp() + 1.0)
            }
        };
        let sleep = wake_at
            .map(|at| Duration::from_secs_f64((at - crate::api::timestamp()).clamp(0.0, 3600.0)))
            .unwrap_or(RESYNC_EVERY)
            .min(RESYNC_EVERY);
        let deadline = tokio::time::sleep(sleep);
        tokio::pin!(deadline);
        let asked = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = api.scheduler_wake.notified() => break true,
                () = &mut deadline => break false,
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
pub fn reconcile_all(api: &Api, settings: &SchedulerSettings) -> Result<Option<f64>, ApiError> {
    let services = api.state.list("services/")?;
    if services
        .iter()
        .all(|(_, found)| found.value["status"] == "INACTIVE")
    {
        return Ok(None);
    }
    let mut by_service: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for (_, found) in api.state.list("tasks/")? {
        let task = found.value;
        let Some(name) = task["group"]
            .as_str()
            .and_then(|g| g.strip_prefix("service:"))
        else {
            continue;
        };
        let cluster = task["clusterArn"].as_str().unwrap_or_default().to_string();
        by_service
            .entry((cluster, name.to_string()))
            .or_default()
            .push(task);
    }
    let draining: HashSet<String> = api
        .hosts
        .records()?
        .into_iter()
        .filter(|h| h.status == crate::controller::hosts::HostStatus::Draining)
        .map(|h| h.id)
        .collect();
    let mut wake_at: Option<f64> = None;
    for (key, found) in services {
        if found.value["status"] == "INACTIVE" {
            continue;
        }
        let cluster_arn = found.value["clusterArn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = found.value["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let tasks = by_service.remove(&(cluster_arn, name)).unwrap_or_default();
        match reconcile_service(api, &key, &tasks, &draining, settings) {
            Ok(Some(at)) => wake_at = Some(wake_at.map_or(at, |w: f64| w.min(at))),
            Ok(None) => {}
            Err(error) => tracing::warn!(service = %key, %error, "cannot reconcile the service"),
        }
    }
    Ok(wake_at)
}

/// One service's pass.
fn reconcile_service(
    api: &Api,
    key: &str,
    tasks: &[Value],
    draining: &HashSet<String>,
    settings: &SchedulerSettings,
) -> Result<Option<f64>, ApiError> {
    let _guard = api.services_lock.lock().unwrap_or_else(|p| p.into_inner());
    // Read again under the lock: the API may have changed it since the list.
    let Some(found) = api.state.get(key)? else {
        return Ok(None);
    };
    let service: Service = serde_json::from_value(found.value).map_err(|e| {
        ApiError::new(
            crate::api::ErrorKind::ServerException,
            format!("{key}: not a service record: {e}"),
        )
    })?;
    let span = tracing::debug_span!("reconcile", service = %service.service_name);
    let _entered = span.enter();
    let now = crate::api::timestamp();
    let views: Vec<TaskView> = tasks.iter().map(|t| task_view(t, draining)).collect();
    let plan = plan::plan(&service, &views, now, settings);
    let mut updated = plan.service;
    let mut wake_at = plan.wake_at;
    for (task_id, reason) in &plan.stop {
        crate::api::request_stop(api, task_id, reason, STOP_BY_SCHEDULER)?;
    }
    if let Some((deployment, task_definition, count)) = &plan.start {
        let cluster = crate::api::arn::resource_name(&updated.cluster_arn, "cluster").to_string();
        match crate::api::launch_for_service(
            api,
            &cluster,
            &updated,
            deployment,
            task_definition,
            *count,
        ) {
            Ok((started, failures)) => {
                if !started.is_empty() {
                    let ids: Vec<String> = started
                        .iter()
                        .map(|t| {
                            let arn = t["taskArn"].as_str().unwrap_or_default();
                            format!("(task {})", arn.rsplit('/').next().unwrap_or(arn))
                        })
                        .collect();
                    updated.add_event(
                        now,
                        format!(
                            "(service {}) has started {} tasks: {}.",
                            updated.service_name,
                            started.len(),
                            ids.join(" ")
                        ),
                    );
                    updated.scheduler.steady = false;
                    tracing::info!(started = started.len(), %deployment, "service tasks started");
                }
                if let Some(failure) = failures.first() {
                    note_placement_failure(&mut updated, failure, now);
                    wake_at = Some(
                        wake_at.map_or(now + PLACEMENT_RETRY, |w| w.min(now + PLACEMENT_RETRY)),
                    );
                }
            }
            Err(error) => {
                let message = format!(
                    "(service {}) failed to launch a task: {}",
                    updated.service_name, error.message
                );
                if updated.events.first().is_none_or(|e| e.message != message) {
                    updated.add_event(now, message);
                }
                wake_at = Some(now + PLACEMENT_RETRY);
            }
        }
    }
    if updated != service {
        let value = serde_json::to_value(&updated)
            .map_err(|e| ApiError::new(crate::api::ErrorKind::ServerException, e.to_string()))?;
        api.state
            .put(key, &value, crate::store::Expect::Revision(found.revision))?;
    }
    Ok(wake_at)
}

/// Adds ECS's "unable to place a task" event, at most once a minute for the same reason.
fn note_placement_failure(service: &mut Service, failure: &Value, now: f64) {
    let closest = failure["arn"].as_str().unwrap_or_default();
    let closest = closest.rsplit('/').next().unwrap_or(closest);
    let why = match failure["reason"].as_str().unwrap_or_default() {
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
fn task_view(task: &Value, draining: &HashSet<String>) -> TaskView {
    let arn = task["taskArn"].as_str().unwrap_or_default();
    let phase = if task["lastStatus"] == "STOPPED" {
        Phase::Stopped
    } else if task["desiredStatus"] == "STOPPED" {
        Phase::Stopping
    } else if task["lastStatus"] == "RUNNING" {
        Phase::Running
    } else {
        Phase::Pending
    };
    let health = match task["healthStatus"].as_str() {
        Some("HEALTHY") => Health::Healthy,
        Some("UNHEALTHY") => Health::Unhealthy,
        _ => Health::Unknown,
    };
    TaskView {
        id: arn.rsplit('/').next().unwrap_or(arn).to_string(),
        deployment: task["startedBy"].as_str().unwrap_or_default().to_string(),
        phase,
        health,
        has_health_check: task["wasmgateHealthChecked"] == json!(true),
        started_at: task["startedAt"].as_f64(),
        stopped_at: task["executionStoppedAt"]
            .as_f64()
            .or(task["stoppedAt"].as_f64()),
        stop_code: task["stopCode"].as_str().map(str::to_string),
        stopped_reason: task["stoppedReason"].as_str().map(str::to_string),
        on_draining_host: crate::records::host_of(task).is_some_and(|h| draining.contains(h)),
    }
}
