//! The scheduler's passes that keep one task per host, around the pure [`super::daemon`]
//! decisions: DAEMON services (here) and daemons ([`super::daemons`]). Each reads the hosts
//! and tasks it decides on, applies the decision through the control plane (`launch` pinned to
//! one host, `request_stop`) and writes its record only when it changed.

use std::collections::HashMap;

use serde_json::json;

use super::daemon::{HostState, HostTask, HostView, plan_service};
use super::plan::{DRAINING_HOST_REASON, Health, Phase, SchedulerSettings};
use crate::control::hosts::{HostRecord, HostStatus};
use crate::control::placement::Expression;
use crate::control::{Control, ControlError, Launch};
use crate::records::service::PlacementConstraint;
use crate::records::{DesiredStatus, HealthStatus, LaunchType, Service, StopCode, TaskRecord};

/// How often a pass retries hosts without room.
const NO_ROOM_RETRY: f64 = 5.0;

/// Why a task on a deregistered host stops.
pub const DEREGISTERED_REASON: &str =
    "Task stopped because its container instance was deregistered";
/// Why a DAEMON service's task stops on a host that no longer meets its constraints.
pub const CONSTRAINTS_REASON: &str =
    "Task stopped because its container instance no longer meets the placement constraints";

/// A stored task as per-host placement sees it.
pub fn host_task(task: &TaskRecord) -> HostTask {
    let phase = if task.is_stopped() {
        Phase::Stopped
    } else if task.desired_status == DesiredStatus::Stopped {
        Phase::Stopping
    } else if task.last_status == crate::records::TaskStatus::Running {
        Phase::Running
    } else {
        Phase::Pending
    };
    let health = match task.health_status {
        HealthStatus::Healthy => Health::Healthy,
        HealthStatus::Unhealthy => Health::Unhealthy,
        HealthStatus::Unknown => Health::Unknown,
    };
    let healthy = phase == Phase::Running
        && match health {
            Health::Healthy => true,
            Health::Unknown => !task.health_checked,
            Health::Unhealthy => false,
        };
    HostTask {
        id: task.id().to_string(),
        host: task.host.clone(),
        revision: task.started_by.clone().unwrap_or_default(),
        phase,
        healthy,
        started_at: task.started_at,
        stopped_at: task.execution_stopped_at.or(task.stopped_at),
        stop_code: task.stop_code,
    }
}

/// How `host` takes a daemon task: `leaving` names why its tasks stop, if they do.
pub fn host_state(control: &Control, host: &HostRecord, unfit: Option<&str>) -> HostState {
    match host.status {
        HostStatus::Inactive => HostState::Leaving(DEREGISTERED_REASON.to_string()),
        HostStatus::Draining => HostState::Leaving(DRAINING_HOST_REASON.to_string()),
        HostStatus::Active => match unfit {
            Some(reason) => HostState::Leaving(reason.to_string()),
            None if control.hosts.connected(&host.id) => HostState::Eligible,
            None => HostState::Unreachable,
        },
    }
}

/// Per host placement sees (ACTIVE and connected): `None` when it has room for a task
/// needing (`cpu`, `memory`), else ECS's reason why not.
pub fn room_on(
    control: &Control,
    cluster: &str,
    launch_type: LaunchType,
    group: &str,
    needs: (u64, u64),
) -> Result<HashMap<String, Option<&'static str>>, ControlError> {
    Ok(
        crate::control::launch::candidates(control, cluster, launch_type, group)?
            .into_iter()
            .map(|c| {
                let why = if c.free_memory < needs.1 {
                    Some("RESOURCE:MEMORY")
                } else if c.free_cpu < needs.0 {
                    Some("RESOURCE:CPU")
                } else if c.free_tasks == 0 {
                    Some("RESOURCE:TASKS")
                } else {
                    None
                };
                (c.id, why)
            })
            .collect(),
    )
}

/// The constraint that pins a launch to one host.
pub fn on_host(host: &str) -> PlacementConstraint {
    PlacementConstraint {
        kind: "memberOf".into(),
        expression: Some(format!("ec2InstanceId == {host}")),
    }
}

/// One pass of a DAEMON service (read under the service lock by the caller, at `revision`).
pub fn reconcile_daemon_service(
    control: &Control,
    key: &str,
    cluster: &str,
    service: &Service,
    revision: u64,
    tasks: &[std::sync::Arc<TaskRecord>],
    settings: &SchedulerSettings,
) -> Result<Option<f64>, ControlError> {
    let now = crate::records::timestamp();
    let group = format!("service:{}", service.service_name);
    let (record, _) =
        crate::control::definitions::find(control.store.as_ref(), &service.task_definition)?;
    let definition = crate::control::definitions::definition_of(&record, &service.task_definition)?;
    let needs = crate::control::launch::task_needs(&definition, &[]);
    let room = room_on(control, cluster, service.launch_type, &group, needs)?;
    let member_of: Vec<Expression> = service
        .placement_constraints
        .iter()
        .filter(|c| c.kind == "memberOf")
        .filter_map(|c| c.expression.as_deref())
        .filter_map(|text| Expression::parse(text).ok())
        .collect();
    let hosts: Vec<HostView> = control
        .hosts
        .records()?
        .into_iter()
        .filter(|h| match service.launch_type {
            LaunchType::Fargate => h.cluster.is_none(),
            LaunchType::Ec2 | LaunchType::External => h.cluster.as_deref() == Some(cluster),
        })
        .map(|h| {
            let attributes = h.all_attributes();
            let unfit = (!member_of.iter().all(|e| e.matches(&h.id, &attributes)))
                .then_some(CONSTRAINTS_REASON);
            HostView {
                state: host_state(control, &h, unfit),
                fits: room.get(&h.id).is_some_and(Option::is_none),
                id: h.id,
            }
        })
        .collect();
    let views: Vec<HostTask> = tasks.iter().map(|t| host_task(t)).collect();
    let plan = plan_service(service, &hosts, &views, now, settings);
    let mut updated = plan.service;
    let mut wake_at = plan.wake_at;
    // Decided on the record at `revision`: nothing is written once it has changed.
    let guard = vec![(key.to_string(), crate::store::Expect::Revision(revision))];
    for (task_id, reason) in &plan.stop {
        control.request_stop_guarded(
            task_id,
            StopCode::ServiceSchedulerInitiated,
            reason,
            &guard,
        )?;
    }
    if let Some((deployment, _, on)) = &plan.start {
        let mut started = Vec::new();
        for host in on {
            let mut constraints = updated.placement_constraints.clone();
            constraints.push(on_host(host));
            let launched = crate::control::launch(
                control,
                Launch {
                    cluster,
                    record: &record,
                    definition: &definition,
                    count: 1,
                    started_by: Some(deployment.clone()),
                    group: group.clone(),
                    launch_type: updated.launch_type,
                    overrides: json!({}),
                    tags: json!([]),
                    strategy: &[],
                    strategies: &[],
                    constraints: &constraints,
                    guard: guard.clone(),
                    client_token: None,
                },
            );
            match launched {
                Ok(launched) => {
                    started.extend(launched.tasks.iter().map(|t| t.id().to_string()));
                    if let Some(failure) = launched.failures.first() {
                        super::note_placement_failure(&mut updated, failure, now);
                        wake_at = Some(
                            wake_at.map_or(now + NO_ROOM_RETRY, |w| w.min(now + NO_ROOM_RETRY)),
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(%host, %error, "cannot launch the DAEMON service's task");
                    wake_at = Some(now + NO_ROOM_RETRY);
                }
            }
        }
        if !started.is_empty() {
            let ids: Vec<String> = started.iter().map(|id| format!("(task {id})")).collect();
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
        }
    }
    if let Some(host) = plan.no_room.first() {
        let arn = control
            .hosts
            .record(host)?
            .map(|h| h.arn(&control.arns))
            .unwrap_or_else(|| host.clone());
        super::note_placement_failure(
            &mut updated,
            &crate::control::PlacementFailure {
                arn,
                reason: room
                    .get(host)
                    .copied()
                    .flatten()
                    .unwrap_or("RESOURCE:MEMORY")
                    .into(),
            },
            now,
        );
        wake_at = Some(wake_at.map_or(now + NO_ROOM_RETRY, |w| w.min(now + NO_ROOM_RETRY)));
    }
    if &updated != service {
        crate::records::put(control.store.as_ref(), key, &updated, revision)?;
    }
    Ok(wake_at)
}
