//! RunTask (placement on a host), DescribeTasks, ListTasks, StopTask. A task is stored under
//! `tasks/ID` in ECS's `Task` shape; its life as hosts report it is recorded in `lifecycle`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, ApiError, arn, clusters, container_instances, page, paged, parse, task_definitions,
    timestamp,
};
use crate::agent::{ContainerOverride, new_task_id};
use crate::controller::model::{PlacementConstraint, PlacementStrategy};
use crate::controller::placement::{LaunchType, choose};
use crate::records::update_task;
use crate::store::Expect;
use crate::taskdef::{Compatibility, TaskDefinition};

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
    launch_type: Option<String>,
    #[serde(default)]
    capacity_provider_strategy: Vec<CapacityProviderItem>,
    #[serde(default)]
    overrides: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    placement_strategy: Vec<PlacementStrategy>,
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
}

/// One entry of a `capacityProviderStrategy`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CapacityProviderItem {
    capacity_provider: String,
}

/// The launch type a call asks for: `launchType`, else the capacity providers' (FARGATE and
/// FARGATE_SPOT are the shared pool), else FARGATE.
pub(super) fn launch_type_of(
    launch_type: Option<&str>,
    providers: &[CapacityProviderItem],
) -> Result<LaunchType, ApiError> {
    if launch_type.is_some() && !providers.is_empty() {
        return Err(ApiError::invalid(
            "launchType and capacityProviderStrategy cannot both be given",
        ));
    }
    if let Some(given) = launch_type {
        return LaunchType::parse(given).ok_or_else(|| {
            ApiError::invalid(format!(
                "launchType: must be one of EC2, FARGATE, EXTERNAL (got {given})"
            ))
        });
    }
    for (i, item) in providers.iter().enumerate() {
        if !matches!(item.capacity_provider.as_str(), "FARGATE" | "FARGATE_SPOT") {
            return Err(ApiError::invalid(format!(
                "capacityProviderStrategy[{i}].capacityProvider: the capacity provider {} was \
                 not found (wasmgate has FARGATE and FARGATE_SPOT, the shared pool)",
                item.capacity_provider
            )));
        }
    }
    Ok(LaunchType::Fargate)
}

/// ECS's check of a definition's `requiresCompatibilities` against the launch type. A
/// definition that names none runs on any (ECS would take it as EC2 only; wasmgate's pool
/// runs every definition it validated).
pub(super) fn check_compatibility(
    definition: &TaskDefinition,
    launch_type: LaunchType,
) -> Result<(), ApiError> {
    let required = &definition.spec.requires_compatibilities;
    let wanted = match launch_type {
        LaunchType::Fargate => Compatibility::Fargate,
        LaunchType::Ec2 => Compatibility::Ec2,
        LaunchType::External => Compatibility::External,
    };
    if required.is_empty() || required.contains(&wanted) {
        return Ok(());
    }
    Err(ApiError::client(format!(
        "Task definition does not support launch_type {}.",
        launch_type.as_str()
    )))
}

pub fn run(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: RunTask = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let launch_type = launch_type_of(
        request.launch_type.as_deref(),
        &request.capacity_provider_strategy,
    )?;
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
    check_compatibility(&definition, launch_type)?;
    let count = request.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count: must be between 1 and 10 (got {count})"
        )));
    }
    let overrides_shape = request.overrides.unwrap_or(json!({}));
    if !overrides_shape.is_object() {
        return Err(ApiError::invalid("overrides: must be an object"));
    }
    let overrides = ContainerOverride::list_from_ecs(&overrides_shape);
    for (i, o) in overrides.iter().enumerate() {
        if definition.container(&o.name).is_none() {
            return Err(ApiError::invalid(format!(
                "overrides.containerOverrides[{i}].name: no container named \"{}\"",
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
            launch_type,
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
    pub launch_type: LaunchType,
    /// ECS's `overrides` as given (the agent reads its `containerOverrides`).
    pub overrides_shape: Value,
    pub tags: Value,
    pub strategies: &'a [PlacementStrategy],
    pub constraints: &'a [PlacementConstraint],
}

/// Places and records tasks; the hosts hear of them from the store. Returns the tasks started
/// (ECS shape) and a failure for each that fit nowhere.
pub(crate) fn launch(api: &Api, request: Launch<'_>) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
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
    let mut candidates =
        container_instances::candidates(api, cluster, request.launch_type, &request.group)?;
    // Read once per call: every task placed names its host's zone and address.
    let hosts: std::collections::HashMap<String, crate::controller::hosts::HostRecord> = api
        .hosts
        .records()?
        .into_iter()
        .map(|h| (h.id.clone(), h))
        .collect();
    if candidates.is_empty() {
        let reason = match request.launch_type {
            LaunchType::Fargate => {
                "RESOURCE:NO_HOSTS (no capacity host of the shared pool is connected)".to_string()
            }
            other => format!(
                "No Container Instances were found in your cluster (launch type {})",
                other.as_str()
            ),
        };
        for _ in 0..request.count {
            failures.push(json!({"arn": api.arns.cluster(cluster), "reason": reason}));
        }
        return Ok((tasks, failures));
    }
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
        candidate.free_tasks = candidate.free_tasks.saturating_sub(1);
        candidate.group_tasks += 1;
        let host = hosts.get(&candidate.id);
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
        let mut task = json!({
            "taskArn": task_arn,
            "clusterArn": api.arns.cluster(cluster),
            "taskDefinitionArn": api.arns.task_definition(family, revision),
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "createdAt": timestamp(),
            "startedBy": request.started_by,
            "group": request.group,
            "launchType": request.launch_type.as_str(),
            "cpu": cpu.to_string(),
            "memory": memory.to_string(),
            "containers": containers,
            "overrides": request.overrides_shape,
            "tags": request.tags,
            "healthStatus": "UNKNOWN",
            "version": 1,
            "wasmgateHost": candidate.id,
        });
        if let Some(host) = host {
            task["availabilityZone"] = json!(host.availability_zone());
            task["attributes"] =
                json!([{"name": "ecs.cpu-architecture", "value": std::env::consts::ARCH}]);
        }
        match request.launch_type {
            // Like a Fargate task: no container instance; where it runs is an attachment.
            LaunchType::Fargate => {
                let mut details = vec![json!({"name": "wasmgateHostId", "value": candidate.id})];
                if let Some(host) = host {
                    details.push(json!({"name": "wasmgateHostName", "value": host.name}));
                    if let Some(address) = &host.address {
                        details.push(json!({"name": "privateIPv4Address", "value": address}));
                    }
                }
                task["attachments"] = json!([{
                    "id": format!("{}-{}-{}-{}-{}", &task_id[..8], &task_id[8..12], &task_id[12..16], &task_id[16..20], &task_id[20..32]),
                    "type": "wasmgate.host",
                    "status": "ATTACHED",
                    "details": details,
                }]);
            }
            LaunchType::Ec2 | LaunchType::External => {
                task["containerInstanceArn"] = json!(candidate.arn);
            }
        }
        if health_checked {
            // Not ECS's: tells the scheduler that only HEALTHY counts as healthy for this task.
            task["wasmgateHealthChecked"] = json!(true);
        }
        api.state.put(&key(&task_id), &task, Expect::Absent)?;
        api.hosts.note_task(&task);
        tasks.push(shape(task));
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

/// The ECS `Task` shape of a stored task: null members dropped, as ECS omits absent ones
/// (wasmgate's own members stay: clients ignore members they do not know).
pub(super) fn shape(mut value: Value) -> Value {
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
                tasks.push(shape(found.value))
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
        Some(task) => Ok(json!({"task": shape(task)})),
        None => Err(ApiError::invalid(format!(
            "task: the referenced task was not found: {}",
            request.task
        ))),
    }
}

/// Asks a task to stop, recording why (`stop_code`, `reason`) unless it was already asked;
/// `None` if there is no such task. Its host hears of it from the store.
pub fn request_stop(
    api: &Api,
    task_id: &str,
    reason: &str,
    stop_code: &str,
) -> Result<Option<Value>, ApiError> {
    let now = timestamp();
    Ok(update_task(api.state.as_ref(), task_id, |task| {
        if task["desiredStatus"] == "STOPPED" {
            return false;
        }
        task["desiredStatus"] = json!("STOPPED");
        task["stoppedReason"] = json!(reason);
        task["stopCode"] = json!(stop_code);
        if task["lastStatus"] != "STOPPED" {
            task["stoppingAt"] = json!(now);
        }
        // A running task first leaves service (the gateway stops routing to it), then its
        // containers are stopped (the agent reports STOPPING).
        if task["lastStatus"] == "RUNNING" {
            task["lastStatus"] = json!("DEACTIVATING");
        }
        true
    })?)
}
