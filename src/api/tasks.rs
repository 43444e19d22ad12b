//! RunTask, DescribeTasks, ListTasks, StopTask, and the recording of each task's life as the
//! agent reports it. A task is stored under `tasks/ID` in ECS's `Task` shape.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, ApiError, arn, clusters, container_instances, page, paged, parse, task_definitions,
    timestamp,
};
use crate::agent::{
    Assignment, ContainerOverride, TaskEvent, TaskOutcome, TimedEvent, new_task_id,
};
use crate::controller::model::{PlacementConstraint, PlacementStrategy};
use crate::controller::placement::choose;
use crate::store::Expect;
use crate::taskdef::TaskDefinition;

fn key(task_id: &str) -> String {
    format!("tasks/{task_id}")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunTask {
    cluster: Option<String>,
    task_definition: String,
    count: Option<u32>,
    started_by: Option<String>,
    group: Option<String>,
    #[serde(default)]
    overrides: Option<Overrides>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    placement_strategy: Vec<PlacementStrategy>,
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Overrides {
    #[serde(default)]
    container_overrides: Vec<ContainerOverrideShape>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerOverrideShape {
    name: String,
    command: Option<Vec<String>>,
    #[serde(default)]
    environment: Vec<NameValue>,
    cpu: Option<u32>,
    memory: Option<u32>,
}

#[derive(Deserialize)]
struct NameValue {
    name: Option<String>,
    value: Option<String>,
}

pub fn run(api: &Api, body: Value) -> Result<Value, ApiError> {
    let overrides_shape = body.get("overrides").cloned().unwrap_or(json!({}));
    let request: RunTask = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let (record, _) = task_definitions::find(api, &request.task_definition)?;
    if record["status"] != "ACTIVE" {
        return Err(ApiError::client(format!(
            "TaskDefinition is inactive: {}",
            request.task_definition
        )));
    }
    let definition = TaskDefinition::from_value(record["document"].clone()).map_err(|e| {
        ApiError::client(format!(
            "the stored task definition no longer validates: {e}"
        ))
    })?;
    let count = request.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count: must be between 1 and 10 (got {count})"
        )));
    }
    let overrides: Vec<ContainerOverride> = request
        .overrides
        .unwrap_or_default()
        .container_overrides
        .into_iter()
        .map(|o| ContainerOverride {
            environment: o
                .environment
                .into_iter()
                .filter_map(|kv| Some((kv.name?, kv.value.unwrap_or_default())))
                .collect(),
            name: o.name,
            command: o.command,
            cpu: o.cpu,
            memory: o.memory,
        })
        .collect();
    for o in &overrides {
        if definition.container(&o.name).is_none() {
            return Err(ApiError::invalid(format!(
                "overrides.containerOverrides: no container named \"{}\"",
                o.name
            )));
        }
    }
    crate::controller::placement::validate(
        &request.placement_strategy,
        &request.placement_constraints,
    )
    .map_err(ApiError::invalid)?;
    let family = record["family"].as_str().unwrap_or_default();
    let group = request
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    let (tasks, failures) = launch(
        api,
        Launch {
            cluster: &cluster,
            record: &record,
            definition: &definition,
            count,
            started_by: request.started_by,
            group,
            overrides,
            overrides_shape,
            tags: request.tags.clone().unwrap_or(json!([])),
            strategies: &request.placement_strategy,
            constraints: &request.placement_constraints,
        },
    )?;
    Ok(json!({"tasks": tasks, "failures": failures}))
}

/// What to start: `count` tasks of one task definition, in one group, placed as asked.
pub(crate) struct Launch<'a> {
    pub cluster: &'a str,
    /// The stored task definition record.
    pub record: &'a Value,
    pub definition: &'a TaskDefinition,
    pub count: u32,
    pub started_by: Option<String>,
    /// `service:NAME` or `family:FAMILY` (or RunTask's own).
    pub group: String,
    pub overrides: Vec<ContainerOverride>,
    pub overrides_shape: Value,
    pub tags: Value,
    pub strategies: &'a [PlacementStrategy],
    pub constraints: &'a [PlacementConstraint],
}

/// Places and records tasks, then hands them to the agent. Returns the tasks started (ECS
/// shape) and a failure for each that fit nowhere.
pub(crate) fn launch(api: &Api, request: Launch<'_>) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let agent = api
        .agent
        .as_ref()
        .ok_or_else(|| ApiError::client("this server runs no agent"))?;
    let cluster = request.cluster;
    let definition = request.definition;
    let family = request.record["family"].as_str().unwrap_or_default();
    let revision = request.record["revision"].as_u64().unwrap_or_default();
    let (cpu, memory) = task_needs(definition);
    let health_checked = definition
        .essential_containers()
        .any(|c| c.health_check.is_some());
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    let _placing = api.placement.lock().unwrap_or_else(|p| p.into_inner());
    // One scan of the stored tasks for the whole batch; each placement is then subtracted.
    let mut candidates = container_instances::candidates(api, cluster, &request.group)?;
    for _ in 0..request.count {
        let seed = u64::from_str_radix(&new_task_id()[..12], 16).unwrap_or_default();
        let chosen = match choose(
            &candidates,
            cpu,
            memory,
            request.strategies,
            request.constraints,
            seed,
        ) {
            Ok(index) => index,
            Err(no_fit) => {
                failures.push(json!({
                    "arn": no_fit.closest.unwrap_or_else(|| api.arns.cluster(cluster)),
                    "reason": no_fit.reason,
                }));
                continue;
            }
        };
        let candidate = &mut candidates[chosen];
        candidate.free_cpu -= cpu;
        candidate.free_memory -= memory;
        candidate.group_tasks += 1;
        let instance = candidate.arn.clone();
        let task_id = new_task_id();
        let task_arn = api.arns.task(cluster, &task_id);
        let containers: Vec<Value> = definition
            .spec
            .container_definitions
            .iter()
            .map(|c| {
                json!({
                    "containerArn": format!("{task_arn}/{}", c.name),
                    "taskArn": task_arn,
                    "name": c.name,
                    "image": c.image,
                    "lastStatus": "PENDING",
                    "healthStatus": "UNKNOWN",
                })
            })
            .collect();
        let task = json!({
            "taskArn": task_arn,
            "clusterArn": api.arns.cluster(cluster),
            "taskDefinitionArn": api.arns.task_definition(family, revision),
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "createdAt": timestamp(),
            "startedBy": request.started_by,
            "group": request.group,
            "launchType": "FARGATE",
            "containerInstanceArn": instance,
            "cpu": cpu.to_string(),
            "memory": memory.to_string(),
            "containers": containers,
            "overrides": request.overrides_shape,
            "tags": request.tags,
            "healthStatus": "UNKNOWN",
            "version": 1,
        });
        let mut task = task;
        if health_checked {
            // Not ECS's: tells the scheduler that only HEALTHY counts as healthy for this task.
            task["wasmgateHealthChecked"] = json!(true);
        }
        api.state.put(&key(&task_id), &task, Expect::Absent)?;
        agent
            .send(Assignment::Start {
                task_id,
                definition: Box::new(definition.clone()),
                overrides: request.overrides.clone(),
            })
            .map_err(|_| {
                ApiError::new(
                    super::ErrorKind::ServerException,
                    "the agent is not running",
                )
            })?;
        tasks.push(without_nulls(task));
    }
    Ok((tasks, failures))
}

/// CPU units and MiB a task holds on its instance: the task-level values, else the sum of its
/// containers' (`memory`, else `memoryReservation`).
fn task_needs(definition: &TaskDefinition) -> (u64, u64) {
    let containers = &definition.spec.container_definitions;
    let cpu = definition
        .cpu_units
        .map(u64::from)
        .unwrap_or_else(|| containers.iter().filter_map(|c| c.cpu).map(u64::from).sum());
    let memory = definition.memory_mib.map(u64::from).unwrap_or_else(|| {
        containers
            .iter()
            .filter_map(|c| c.memory.or(c.memory_reservation))
            .map(u64::from)
            .sum()
    });
    (cpu, memory)
}

/// Drops null members, as ECS omits absent ones.
fn without_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}

/// The task id in a task ARN or id.
pub(super) fn task_id_of(given: &str) -> &str {
    let name = arn::resource_name(given, "task");
    name.rsplit('/').next().unwrap_or(name)
}

/// The stored task `given` (an ARN or id) names in `cluster`.
pub(super) fn find(api: &Api, cluster: &str, given: &str) -> Result<Value, ApiError> {
    let cluster_arn = api.arns.cluster(cluster);
    match api.state.get(&key(task_id_of(given)))? {
        Some(found) if found.value["clusterArn"] == cluster_arn.as_str() => Ok(found.value),
        _ => Err(ApiError::invalid(format!(
            "task: the referenced task was not found: {given}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasks {
    cluster: Option<String>,
    tasks: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeTasks = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let cluster_arn = api.arns.cluster(&cluster);
    let (mut tasks, mut failures) = (Vec::new(), Vec::new());
    for given in request.tasks {
        match api.state.get(&key(task_id_of(&given)))? {
            Some(found) if found.value["clusterArn"] == cluster_arn.as_str() => {
                tasks.push(without_nulls(found.value))
            }
            _ => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTasks {
    cluster: Option<String>,
    family: Option<String>,
    desired_status: Option<String>,
    started_by: Option<String>,
    service_name: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListTasks = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let cluster_arn = api.arns.cluster(&cluster);
    let desired = request.desired_status.unwrap_or_else(|| "RUNNING".into());
    let family_prefix = request.family.map(|f| format!("task-definition/{f}:"));
    let arns: Vec<Value> = api
        .state
        .list("tasks/")?
        .into_iter()
        .map(|(_, v)| v.value)
        .filter(|t| {
            t["clusterArn"] == cluster_arn.as_str() && t["desiredStatus"] == desired.as_str()
        })
        .filter(|t| {
            family_prefix.as_deref().is_none_or(|f| {
                t["taskDefinitionArn"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(f)
            })
        })
        .filter(|t| {
            request
                .started_by
                .as_deref()
                .is_none_or(|s| t["startedBy"] == s)
        })
        .filter(|t| {
            request
                .service_name
                .as_deref()
                .is_none_or(|s| t["group"] == format!("service:{s}").as_str())
        })
        .map(|t| t["taskArn"].clone())
        .collect();
    let (items, next) = page(&body, arns)?;
    Ok(paged("taskArns", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTask {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

pub fn stop(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: StopTask = parse(body)?;
    clusters::require_active(api, request.cluster.as_deref())?;
    let task_id = task_id_of(&request.task).to_string();
    let reason = request
        .reason
        .unwrap_or_else(|| "Task stopped by user".into());
    match request_stop(api, &task_id, &reason, "UserInitiated")? {
        Some(task) => Ok(json!({"task": without_nulls(task)})),
        None => Err(ApiError::invalid(format!(
            "task: the referenced task was not found: {}",
            request.task
        ))),
    }
}

/// Asks a task to stop, recording why (`stop_code`, `reason`) unless it was already asked;
/// `None` if there is no such task. Retries when the agent's report races it.
pub fn request_stop(
    api: &Api,
    task_id: &str,
    reason: &str,
    stop_code: &str,
) -> Result<Option<Value>, ApiError> {
    loop {
        let Some(found) = api.state.get(&key(task_id))? else {
            return Ok(None);
        };
        let mut task = found.value;
        if task["desiredStatus"] == "STOPPED" {
            return Ok(Some(task));
        }
        task["desiredStatus"] = json!("STOPPED");
        task["stoppedReason"] = json!(reason);
        task["stopCode"] = json!(stop_code);
        if task["lastStatus"] != "STOPPED" {
            task["stoppingAt"] = json!(timestamp());
        }
        // A running task first leaves service (the gateway stops routing to it), then its
        // containers are stopped (the agent reports STOPPING).
        if task["lastStatus"] == "RUNNING" {
            task["lastStatus"] = json!("DEACTIVATING");
        }
        match api
            .state
            .put(&key(task_id), &task, Expect::Revision(found.revision))
        {
            Ok(_) => {}
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
        if let Some(agent) = &api.agent {
            let _ = agent.send(Assignment::Stop {
                task_id: task_id.to_string(),
                reason: reason.to_string(),
            });
        }
        return Ok(Some(task));
    }
}

/// Records one step of a task's life in its stored record.
pub fn record_event(api: &Api, timed: &TimedEvent) -> Result<(), ApiError> {
    let event = &timed.event;
    let at = timed
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or_else(|_| timestamp());
    match event {
        TaskEvent::Stats {
            task_id,
            containers,
        } => {
            api.usage.update(task_id, containers.clone());
            return Ok(());
        }
        TaskEvent::Heartbeat { running } => return record_heartbeat(api, running, at),
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
        | TaskEvent::Stopping { task_id, .. } => task_id.clone(),
        TaskEvent::Stopped { outcome } => outcome.task_id.clone(),
        TaskEvent::Stats { task_id, .. } => task_id.clone(),
        TaskEvent::Heartbeat { .. } => return Ok(()),
    };
    // Retry on a concurrent write (StopTask racing the agent's report).
    loop {
        let Some(found) = api.state.get(&key(&task_id))? else {
            return Ok(());
        };
        let mut task = found.value;
        apply(&mut task, event, at);
        task["version"] = json!(task["version"].as_u64().unwrap_or(0) + 1);
        match api
            .state
            .put(&key(&task_id), &task, Expect::Revision(found.revision))
        {
            Ok(_) => return Ok(()),
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
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
        TaskEvent::Stats { .. } | TaskEvent::Heartbeat { .. } => {}
    }
}

/// How long after its creation a task must appear in the agent's heartbeat (the agent may not
/// have taken its assignment yet when it sends one).
const LOST_AFTER_SECS: f64 = 10.0;

/// Records the agent's heartbeat: when it was last heard of, and tasks placed on it long enough
/// ago that it does not run (and that are not stopped) as STOPPED, so that nothing waits for
/// them and their services replace them.
fn record_heartbeat(api: &Api, running: &[String], at: f64) -> Result<(), ApiError> {
    *api.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    let Some(instance) = container_instances::self_arn(api)? else {
        return Ok(());
    };
    for (stored_key, found) in api.state.list("tasks/")? {
        let task = &found.value;
        let task_id = stored_key.trim_start_matches("tasks/");
        let lost = task["lastStatus"] != "STOPPED"
            && task["containerInstanceArn"] == instance.as_str()
            && task["createdAt"]
                .as_f64()
                .is_some_and(|c| c < at - LOST_AFTER_SECS)
            && !running.iter().any(|r| r == task_id);
        if !lost {
            continue;
        }
        let mut task = found.value;
        tracing::warn!(%task_id, "the agent does not run this task; recording it as stopped");
        stop_as_lost(
            &mut task,
            "Task stopped because the agent no longer runs it (lost)",
        );
        match api
            .state
            .put(&stored_key, &task, Expect::Revision(found.revision))
        {
            Ok(_) | Err(crate::store::StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

/// Marks a task that its agent lost as STOPPED with `reason` (not a failure of the task).
fn stop_as_lost(task: &mut Value, reason: &str) {
    let now = timestamp();
    task["lastStatus"] = json!("STOPPED");
    task["desiredStatus"] = json!("STOPPED");
    task["stoppedAt"] = json!(now);
    if task["executionStoppedAt"].is_null() {
        task["executionStoppedAt"] = json!(now);
    }
    // Its host went away: a service replaces it at full speed.
    task["stopCode"] = json!("TerminationNotice");
    task["stoppedReason"] = json!(reason);
    if let Some(containers) = task["containers"].as_array_mut() {
        for container in containers {
            container["lastStatus"] = json!("STOPPED");
        }
    }
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

/// After a restart: every task the store still shows as not stopped was running in the agent
/// that died with the old process. Records it as stopped, with the reason.
pub fn reconcile_after_restart(api: &Api) -> Result<usize, ApiError> {
    let mut stopped = 0;
    for (stored_key, found) in api.state.list("tasks/")? {
        if found.value["lastStatus"] == "STOPPED" {
            continue;
        }
        let mut task = found.value;
        stop_as_lost(
            &mut task,
            "Task stopped because the agent restarted (wasmgate server was restarted while it ran)",
        );
        api.state
            .put(&stored_key, &task, Expect::Revision(found.revision))?;
        stopped += 1;
    }
    Ok(stopped)
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

#[cfg(test)]
mod heartbeat_tests {
    use super::*;
    use crate::agent::HostResources;

    #[test]
    fn a_task_the_agent_does_not_run_is_recorded_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let api = Api::new(
            std::sync::Arc::new(store),
            super::super::ArnScope::default(),
        )
        .unwrap();
        let resources = HostResources {
            cpu_units: 2048,
            memory_mib: 1024,
        };
        super::super::register_agent(&api, resources).unwrap();
        let instance = container_instances::self_arn(&api).unwrap().unwrap();
        let now = timestamp();
        let task = |created: f64| {
            json!({"taskArn": "arn:aws:ecs:us-east-1:0:task/default/x", "lastStatus": "RUNNING",
                   "desiredStatus": "RUNNING", "containerInstanceArn": instance,
                   "createdAt": created, "containers": [{"name": "app", "lastStatus": "RUNNING"}]})
        };
        api.state
            .put("tasks/old", &task(now - 60.0), Expect::Absent)
            .unwrap();
        api.state
            .put("tasks/new", &task(now), Expect::Absent)
            .unwrap();
        api.state
            .put("tasks/kept", &task(now - 60.0), Expect::Absent)
            .unwrap();
        let heartbeat = TimedEvent {
            at: std::time::SystemTime::now(),
            event: TaskEvent::Heartbeat {
                running: vec!["kept".into()],
            },
        };
        record_event(&api, &heartbeat).unwrap();
        let status = |id: &str| api.state.get(&key(id)).unwrap().unwrap().value;
        let old = status("old");
        assert_eq!(old["lastStatus"], "STOPPED");
        assert_eq!(old["stopCode"], "TerminationNotice");
        assert!(old["stoppedReason"].as_str().unwrap().contains("lost"));
        // Too young to be missing from a heartbeat, and one the agent runs: untouched.
        assert_eq!(status("new")["lastStatus"], "RUNNING");
        assert_eq!(status("kept")["lastStatus"], "RUNNING");
    }
}
