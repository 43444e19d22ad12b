//! The life of every task as its host reports it: each step recorded in the stored task
//! (PROVISIONING … STOPPED, with ECS's timestamps, exit codes and reasons), heartbeats that
//! prove tasks lost, hosts that went silent, and stopped tasks forgotten after the retention.
//!
//! Architecture invariant: a report changes only tasks placed on the reporting host, never a
//! task that has stopped, and never moves a stopping task back.

use serde_json::{Value, json};

use super::{Api, ApiError, timestamp};
use crate::agent::{TaskEvent, TaskOutcome, TimedEvent};
use crate::protocol::{AgentReport, Heartbeat};
use crate::records::{host_of, is_stopped, stop_as_lost, stop_tasks_of_host, update_task};
use crate::store::Expect;

/// Records what host `host_id` reported: its tasks' output, their steps, its heartbeat.
pub fn record_report(api: &Api, host_id: &str, report: &AgentReport) -> Result<(), ApiError> {
    if let Some(logs) = &api.logs {
        for shipped in &report.logs {
            if let Err(error) = logs.import(&shipped.task_id, &shipped.records) {
                tracing::warn!(task_id = %shipped.task_id, %error, "cannot keep a remote task's output");
            }
        }
    }
    for event in &report.events {
        record_event(api, host_id, event)?;
    }
    if let Some(heartbeat) = &report.heartbeat {
        record_heartbeat(api, host_id, heartbeat)?;
    }
    Ok(())
}

/// Records one step of a task's life in its stored record. Steps of a task that has stopped,
/// or that is not placed on `host_id`, change nothing.
fn record_event(api: &Api, host_id: &str, timed: &TimedEvent) -> Result<(), ApiError> {
    let event = &timed.event;
    let at = crate::logs::epoch_seconds(timed.at);
    match event {
        TaskEvent::Stats {
            task_id,
            containers,
        } => {
            api.usage.update(task_id, containers.clone());
            return Ok(());
        }
        TaskEvent::Stopped { outcome } => {
            let last: Vec<_> = outcome
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.stats))
                .collect();
            api.usage.update(&outcome.task_id, last);
        }
        _ => {}
    }
    let task_id = match event {
        TaskEvent::PullStarted { task_id }
        | TaskEvent::ExecutionStopped { task_id }
        | TaskEvent::HealthChanged { task_id, .. }
        | TaskEvent::PullStopped { task_id, .. }
        | TaskEvent::ContainerStarted { task_id, .. }
        | TaskEvent::Stopping { task_id, .. }
        | TaskEvent::Stats { task_id, .. } => task_id.as_str(),
        TaskEvent::Stopped { outcome } => outcome.task_id.as_str(),
    };
    update_task(api.state.as_ref(), task_id, |task| {
        if is_stopped(task) || host_of(task) != Some(host_id) {
            return false;
        }
        apply(task, event, at);
        true
    })?;
    Ok(())
}

fn set_container(task: &mut Value, name: &str, update: impl Fn(&mut Value)) {
    if let Some(containers) = task["containers"].as_array_mut() {
        for container in containers.iter_mut().filter(|c| c["name"] == name) {
            update(container);
        }
    }
}

fn apply(task: &mut Value, event: &TaskEvent, now: f64) {
    match event {
        TaskEvent::PullStarted { .. } => {
            task["lastStatus"] = json!("PENDING");
            task["pullStartedAt"] = json!(now);
        }
        TaskEvent::PullStopped { image_digests, .. } => {
            task["lastStatus"] = json!("ACTIVATING");
            task["pullStoppedAt"] = json!(now);
            for (name, digest) in image_digests {
                set_container(task, name, |c| c["imageDigest"] = json!(digest));
            }
        }
        TaskEvent::ContainerStarted { container, .. } => {
            set_container(task, container, |c| c["lastStatus"] = json!("RUNNING"));
            if task["startedAt"].is_null() {
                task["startedAt"] = json!(now);
            }
            if !is_stopping(task) {
                task["lastStatus"] = json!("RUNNING");
            }
        }
        TaskEvent::Stopping {
            stop_code, reason, ..
        } => {
            task["lastStatus"] = json!("STOPPING");
            task["desiredStatus"] = json!("STOPPED");
            if task["stoppingAt"].is_null() {
                task["stoppingAt"] = json!(now);
            }
            if task["stopCode"].is_null() {
                task["stopCode"] = json!(stop_code.as_str());
                task["stoppedReason"] = json!(reason);
            }
        }
        TaskEvent::ExecutionStopped { .. } => {
            task["lastStatus"] = json!("DEPROVISIONING");
            task["desiredStatus"] = json!("STOPPED");
            task["executionStoppedAt"] = json!(now);
        }
        TaskEvent::Stopped { outcome } => record_outcome(task, outcome, now),
        TaskEvent::HealthChanged {
            container,
            status,
            task: task_health,
            ..
        } => {
            set_container(task, container, |c| {
                c["healthStatus"] = json!(status.as_str())
            });
            task["healthStatus"] = json!(task_health.as_str());
        }
        TaskEvent::Stats { .. } => {}
    }
}

/// Records a host's heartbeat: tasks placed on it that it does not run, though it has
/// converged on a desired set that named them, are recorded STOPPED (lost), so that nothing
/// waits for them and their services replace them.
fn record_heartbeat(api: &Api, host_id: &str, heartbeat: &Heartbeat) -> Result<(), ApiError> {
    if heartbeat.session != api.hosts.session() {
        // Converged on another controller's numbering: nothing to conclude yet.
        return Ok(());
    }
    let running: std::collections::HashSet<&str> =
        heartbeat.running.iter().map(String::as_str).collect();
    let now = timestamp();
    for (stored_key, found) in api.state.list("tasks/")? {
        let task = &found.value;
        let task_id = stored_key.trim_start_matches("tasks/");
        let lost = !is_stopped(task)
            && host_of(task) == Some(host_id)
            && !running.contains(task_id)
            && api
                .hosts
                .first_sent(host_id, task_id)
                .is_some_and(|sent| sent <= heartbeat.generation);
        if !lost {
            continue;
        }
        tracing::warn!(%task_id, host = %host_id, "the agent does not run this task; recording it as stopped");
        update_task(api.state.as_ref(), task_id, |task| {
            host_of(task) == Some(host_id)
                && stop_as_lost(
                    task,
                    "Task stopped because the agent no longer runs it (lost)",
                    now,
                )
        })?;
    }
    Ok(())
}

/// Records the tasks of a host that went silent as stopped, naming the host.
pub fn record_host_lost(api: &Api, host_id: &str) -> Result<usize, ApiError> {
    let name = api
        .hosts
        .record(host_id)?
        .map_or_else(|| host_id.to_string(), |h| h.name);
    let silent = api.hosts.settings().lost_after.as_secs();
    let reason = format!(
        "Task stopped because its host {name} ({host_id}) was lost: no heartbeat for {silent} s"
    );
    Ok(stop_tasks_of_host(
        api.state.as_ref(),
        host_id,
        &reason,
        timestamp(),
    )?)
}

/// Whether the task is on its way down (a late "container started" must not bring it back).
fn is_stopping(task: &Value) -> bool {
    ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]
        .iter()
        .any(|s| task["lastStatus"] == *s)
}

fn record_outcome(task: &mut Value, outcome: &TaskOutcome, now: f64) {
    task["lastStatus"] = json!("STOPPED");
    task["desiredStatus"] = json!("STOPPED");
    if task["executionStoppedAt"].is_null() {
        task["executionStoppedAt"] = json!(now);
    }
    task["stoppedAt"] = json!(now);
    if task["stoppingAt"].is_null() {
        task["stoppingAt"] = json!(now);
    }
    if task["stopCode"].is_null() || outcome.stop_code == crate::agent::StopCode::TaskFailedToStart
    {
        task["stopCode"] = json!(outcome.stop_code.as_str());
        task["stoppedReason"] = json!(outcome.stopped_reason);
    }
    for container in &outcome.containers {
        set_container(task, &container.name, |c| {
            c["lastStatus"] = json!("STOPPED");
            if let Some(code) = container.exit_code {
                c["exitCode"] = json!(code);
            }
            if let Some(reason) = &container.reason {
                c["reason"] = json!(reason);
            }
            if let Some(digest) = &container.image_digest {
                c["imageDigest"] = json!(digest);
            }
        });
    }
}

/// Forgets tasks that stopped more than `retention` ago (ECS keeps them describable for about
/// an hour). Returns how many were forgotten.
pub fn expire_stopped(api: &Api, retention: std::time::Duration) -> Result<usize, ApiError> {
    let cutoff = timestamp() - retention.as_secs_f64();
    let mut forgotten = 0;
    for (stored_key, found) in api.state.list("tasks/")? {
        let stopped_at = found.value["stoppedAt"].as_f64();
        if found.value["lastStatus"] == "STOPPED" && stopped_at.is_some_and(|at| at < cutoff) {
            api.state
                .delete(&stored_key, Expect::Revision(found.revision))?;
            let task_id = stored_key.trim_start_matches("tasks/");
            api.usage.remove(task_id);
            if let Some(logs) = &api.logs {
                logs.remove(task_id);
            }
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{ContainerOutcome, StopCode};
    use crate::capacity::{ContainerLog, ContainerStats, Tee};

    #[test]
    fn a_task_walks_every_ecs_status_in_order() {
        let id = "t".to_string();
        let mut task = json!({"lastStatus": "PROVISIONING", "desiredStatus": "RUNNING",
            "containers": [{"name": "app", "lastStatus": "PENDING"}]});
        let outcome = TaskOutcome {
            task_id: id.clone(),
            stop_code: StopCode::EssentialContainerExited,
            stopped_reason: "Essential container in task exited".into(),
            containers: vec![ContainerOutcome {
                name: "app".into(),
                essential: true,
                exit_code: Some(0),
                reason: None,
                image_digest: Some("sha256:ab".into()),
                stats: ContainerStats::default(),
                log: std::sync::Arc::new(ContainerLog::new(16, Tee::None)),
            }],
            deciding_container: Some("app".into()),
        };
        let steps = [
            (
                TaskEvent::PullStarted {
                    task_id: id.clone(),
                },
                "PENDING",
            ),
            (
                TaskEvent::PullStopped {
                    task_id: id.clone(),
                    image_digests: vec![("app".into(), "sha256:ab".into())],
                },
                "ACTIVATING",
            ),
            (
                TaskEvent::ContainerStarted {
                    task_id: id.clone(),
                    container: "app".into(),
                },
                "RUNNING",
            ),
            (
                TaskEvent::Stopping {
                    task_id: id.clone(),
                    stop_code: StopCode::EssentialContainerExited,
                    reason: "Essential container in task exited".into(),
                },
                "STOPPING",
            ),
            // A late report of a container start does not bring a stopping task back.
            (
                TaskEvent::ContainerStarted {
                    task_id: id.clone(),
                    container: "app".into(),
                },
                "STOPPING",
            ),
            (
                TaskEvent::ExecutionStopped {
                    task_id: id.clone(),
                },
                "DEPROVISIONING",
            ),
            (TaskEvent::Stopped { outcome }, "STOPPED"),
        ];
        for (at, (event, status)) in steps.iter().enumerate() {
            apply(&mut task, event, 100.0 + at as f64);
            assert_eq!(task["lastStatus"], *status, "after {event:?}");
        }
        assert_eq!(task["pullStartedAt"], 100.0);
        assert_eq!(task["startedAt"], 102.0);
        assert_eq!(task["stoppingAt"], 103.0);
        assert_eq!(task["executionStoppedAt"], 105.0);
        assert_eq!(task["stoppedAt"], 106.0);
        assert_eq!(task["stopCode"], "EssentialContainerExited");
        assert_eq!(task["containers"][0]["exitCode"], 0);
        assert_eq!(task["containers"][0]["lastStatus"], "STOPPED");
    }
}
