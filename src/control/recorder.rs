//! The life of every task as its host reports it: each step recorded in the stored task
//! (PROVISIONING … STOPPED, with ECS's timestamps, exit codes and reasons), heartbeats that
//! prove tasks lost, hosts that went silent, and stopped tasks forgotten after the retention.
//!
//! Architecture invariant: a report changes only tasks placed on the reporting host, never a
//! task that has stopped, and never moves a stopping task back.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::{Control, ControlError};
use crate::agent::{TaskEvent, TaskOutcome, TimedEvent};
use crate::protocol::{AgentReport, Heartbeat};
use crate::records::{
    ContainerStatus, DesiredStatus, StopCode, TaskRecord, TaskStatus, micros, seconds,
    stop_tasks_of_host, timestamp, update_task,
};
use crate::store::Expect;

/// Records what host `host_id` reported: its tasks' output, their steps, its heartbeat.
///
/// The steps of one task in one report are applied together: one read and one write of its
/// record, however many steps the report carries.
pub fn record_report(
    control: &Control,
    host_id: &str,
    report: &AgentReport,
) -> Result<(), ControlError> {
    if let Some(logs) = &control.logs {
        for shipped in &report.logs {
            if let Err(error) = logs.import(&shipped.task_id, &shipped.records) {
                tracing::warn!(task_id = %shipped.task_id, %error, "cannot keep a remote task's output");
            }
        }
    }
    let mut by_task: Vec<(&str, Vec<&TimedEvent>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for timed in &report.events {
        if let Some(task_id) = note_usage(control, &timed.event) {
            let at = *index.entry(task_id).or_insert_with(|| {
                by_task.push((task_id, Vec::new()));
                by_task.len() - 1
            });
            by_task[at].1.push(timed);
        }
    }
    for (task_id, events) in by_task {
        record_events(control, host_id, task_id, &events)?;
    }
    if let Some(heartbeat) = &report.heartbeat {
        record_heartbeat(control, host_id, heartbeat)?;
    }
    control.hosts.publish_heard(host_id)?;
    Ok(())
}

/// Keeps the usage figures an event carries; returns the task whose record the event
/// changes (`None` for figures alone).
fn note_usage<'a>(control: &Control, event: &'a TaskEvent) -> Option<&'a str> {
    match event {
        TaskEvent::Stats {
            task_id,
            containers,
        } => {
            control.usage.update(task_id, containers.clone());
            None
        }
        TaskEvent::Stopped { outcome } => {
            let last: Vec<_> = outcome
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.stats))
                .collect();
            control.usage.update(&outcome.task_id, last);
            Some(&outcome.task_id)
        }
        TaskEvent::PullStarted { task_id }
        | TaskEvent::ExecutionStopped { task_id, .. }
        | TaskEvent::HealthChanged { task_id, .. }
        | TaskEvent::PullStopped { task_id, .. }
        | TaskEvent::ContainerStarted { task_id, .. }
        | TaskEvent::NetworkAttached { task_id, .. }
        | TaskEvent::Stopping { task_id, .. } => Some(task_id),
    }
}

/// Records steps of one task's life in its stored record, in order. Steps of a task that has
/// stopped, or that is not placed on `host_id`, change nothing.
fn record_events(
    control: &Control,
    host_id: &str,
    task_id: &str,
    events: &[&TimedEvent],
) -> Result<(), ControlError> {
    update_task(control.store.as_ref(), task_id, |task| {
        let mut changed = false;
        for timed in events {
            if task.is_stopped() || task.host.as_deref() != Some(host_id) {
                break;
            }
            apply(task, &timed.event, timed.at);
            changed = true;
        }
        changed
    })?;
    Ok(())
}

fn apply(task: &mut TaskRecord, event: &TaskEvent, at: SystemTime) {
    let now = seconds(at);
    match event {
        TaskEvent::PullStarted { .. } => {
            task.last_status = TaskStatus::Pending;
            task.pull_started_at = Some(now);
            task.micros.pull_started_at = Some(micros(at));
        }
        TaskEvent::PullStopped { image_digests, .. } => {
            task.last_status = TaskStatus::Activating;
            task.pull_stopped_at = Some(now);
            task.micros.pull_stopped_at = Some(micros(at));
            for (name, digest) in image_digests {
                if let Some(container) = task.container_mut(name) {
                    container.image_digest = Some(digest.clone());
                }
            }
        }
        TaskEvent::NetworkAttached { network, .. } => {
            super::attachments::record_network(task, network);
        }
        TaskEvent::ContainerStarted { container, .. } => {
            if let Some(container) = task.container_mut(container) {
                container.last_status = ContainerStatus::Running;
            }
            task.started_at.get_or_insert(now);
            task.micros.started_at.get_or_insert(micros(at));
            if !task.last_status.is_winding_down() {
                task.last_status = TaskStatus::Running;
            }
        }
        TaskEvent::Stopping {
            stop_code, reason, ..
        } => {
            task.last_status = TaskStatus::Stopping;
            task.desired_status = DesiredStatus::Stopped;
            task.stopping_at.get_or_insert(now);
            if task.stop_code.is_none() {
                task.stop_code = Some(*stop_code);
                task.stopped_reason = Some(reason.clone());
            }
        }
        TaskEvent::ExecutionStopped { exits, .. } => {
            task.last_status = TaskStatus::Deprovisioning;
            task.desired_status = DesiredStatus::Stopped;
            task.execution_stopped_at = Some(now);
            for exit in exits {
                if let Some(container) = task.container_mut(&exit.name) {
                    container.last_status = ContainerStatus::Stopped;
                    container.exit_code = Some(i64::from(exit.exit_code));
                    if let Some(reason) = &exit.reason {
                        container.reason = Some(reason.clone());
                    }
                }
            }
        }
        TaskEvent::Stopped { outcome } => {
            task.micros.stopped_at = Some(micros(at));
            record_outcome(task, outcome, now);
        }
        TaskEvent::HealthChanged {
            container,
            status,
            task: task_health,
            ..
        } => {
            if let Some(container) = task.container_mut(container) {
                container.health_status = *status;
            }
            task.health_status = *task_health;
        }
        TaskEvent::Stats { .. } => {}
    }
}

/// Records a host's heartbeat: tasks placed on it that it does not run, though it has
/// converged on a desired set that named them, are recorded STOPPED (lost), so that nothing
/// waits for them and their services replace them. The tasks placed on it come from the
/// hosts' in-memory view, not from a scan of the store.
fn record_heartbeat(
    control: &Control,
    host_id: &str,
    heartbeat: &Heartbeat,
) -> Result<(), ControlError> {
    if heartbeat.session != control.hosts.session() {
        // Converged on another controller's numbering: nothing to conclude yet.
        return Ok(());
    }
    let running: HashSet<&str> = heartbeat.running.iter().map(String::as_str).collect();
    let now = timestamp();
    for task_id in control
        .hosts
        .not_running(host_id, heartbeat.generation, &running)
    {
        let stopped = update_task(control.store.as_ref(), &task_id, |task| {
            task.host.as_deref() == Some(host_id)
                && task.stop_as_lost(
                    "Task stopped because the agent no longer runs it (lost)",
                    now,
                )
        })?;
        if stopped.is_some_and(|t| t.is_stopped()) {
            tracing::warn!(%task_id, host = %host_id, "the agent does not run this task; recorded it as stopped");
        }
    }
    Ok(())
}

/// Records the tasks of a host that went silent as stopped, naming the host.
pub fn record_host_lost(control: &Control, host_id: &str) -> Result<usize, ControlError> {
    let name = control
        .hosts
        .record(host_id)?
        .map_or_else(|| host_id.to_string(), |h| h.name);
    let silent = control.hosts.settings().lost_after.as_secs();
    let reason = format!(
        "Task stopped because its host {name} ({host_id}) was lost: no heartbeat for {silent} s"
    );
    Ok(stop_tasks_of_host(
        control.store.as_ref(),
        host_id,
        &reason,
        timestamp(),
    )?)
}

fn record_outcome(task: &mut TaskRecord, outcome: &TaskOutcome, now: f64) {
    task.last_status = TaskStatus::Stopped;
    super::attachments::record_network_released(task);
    task.desired_status = DesiredStatus::Stopped;
    task.execution_stopped_at.get_or_insert(now);
    task.stopped_at = Some(now);
    task.stopping_at.get_or_insert(now);
    if task.stop_code.is_none() || outcome.stop_code == StopCode::TaskFailedToStart {
        task.stop_code = Some(outcome.stop_code);
        task.stopped_reason = Some(outcome.stopped_reason.clone());
    }
    for ended in &outcome.containers {
        if let Some(container) = task.container_mut(&ended.name) {
            container.last_status = ContainerStatus::Stopped;
            if let Some(code) = ended.exit_code {
                container.exit_code = Some(i64::from(code));
            }
            if let Some(reason) = &ended.reason {
                container.reason = Some(reason.clone());
            }
            if let Some(digest) = &ended.image_digest {
                container.image_digest = Some(digest.clone());
            }
        }
    }
}

/// Forgets tasks that stopped more than `retention` ago (ECS keeps them describable for about
/// an hour). Returns how many were forgotten.
pub fn expire_stopped(
    control: &Control,
    retention: std::time::Duration,
) -> Result<usize, ControlError> {
    let cutoff = timestamp() - retention.as_secs_f64();
    let mut forgotten = 0;
    for (stored_key, found) in control.store.list(crate::records::TASKS)? {
        let stopped_at = found.value["stoppedAt"].as_f64();
        if found.value["lastStatus"] == "STOPPED" && stopped_at.is_some_and(|at| at < cutoff) {
            control
                .store
                .delete(&stored_key, Expect::Revision(found.revision))?;
            let task_id = stored_key.trim_start_matches(crate::records::TASKS);
            control.usage.remove(task_id);
            if let Some(logs) = &control.logs {
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
    use crate::agent::ContainerOutcome;
    use crate::capacity::{ContainerLog, ContainerStats, Tee};

    #[test]
    fn a_task_walks_every_ecs_status_in_order() {
        let id = "t".to_string();
        let mut task: TaskRecord = serde_json::from_value(serde_json::json!({
            "taskArn": "t", "clusterArn": "c", "taskDefinitionArn": "d", "createdAt": 0.0,
            "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING",
            "containers": [{"name": "app", "lastStatus": "PENDING"}]}))
        .unwrap();
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
                    exits: vec![crate::agent::ContainerExitReport {
                        name: "app".into(),
                        exit_code: 0,
                        reason: None,
                    }],
                },
                "DEPROVISIONING",
            ),
            (TaskEvent::Stopped { outcome }, "STOPPED"),
        ];
        for (at, (event, status)) in steps.iter().enumerate() {
            // 250 µs past each second: ECS's members show the millisecond, wasmgate's the µs.
            let at = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_micros(100_000_250 + at as u64 * 1_000_000);
            apply(&mut task, event, at);
            assert_eq!(task.last_status.as_str(), *status, "after {event:?}");
            if *status == "DEPROVISIONING" {
                // The containers' exits show while the task deprovisions, before STOPPED.
                assert_eq!(task.containers[0].exit_code, Some(0));
                assert_eq!(task.containers[0].last_status, ContainerStatus::Stopped);
            }
        }
        assert_eq!(task.pull_started_at, Some(100.0));
        assert_eq!(task.started_at, Some(102.0));
        assert_eq!(task.stopping_at, Some(103.0));
        assert_eq!(task.execution_stopped_at, Some(105.0));
        assert_eq!(task.stopped_at, Some(106.0));
        assert_eq!(task.micros.pull_started_at, Some(100_000_250));
        assert_eq!(task.micros.started_at, Some(102_000_250));
        assert_eq!(task.micros.stopped_at, Some(106_000_250));
        assert_eq!(task.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(task.containers[0].exit_code, Some(0));
        assert_eq!(task.containers[0].last_status, ContainerStatus::Stopped);
    }
}
