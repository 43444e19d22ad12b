//! RunTask, DescribeTasks, ListTasks, StopTask: ECS's shapes over the control plane, which
//! places and records tasks (`control::launch`) and records their life as hosts report it
//! (`control::recorder`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, arn, clusters, page, paged, parse, task_definitions};
use crate::agent::ContainerOverride;
use crate::control::{Launch, Launched, PlacementFailure};
use crate::records::service::{PlacementConstraint, PlacementStrategy};
use crate::records::{DesiredStatus, LaunchType, StopCode, TaskRecord};
use crate::taskdef::{Compatibility, TaskDefinition};

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
    check_overrides(&definition, &overrides_shape)?;
    crate::control::placement::validate(
        &request.placement_strategy,
        &request.placement_constraints,
    )
    .map_err(ApiError::invalid)?;
    let family = record["family"].as_str().unwrap_or_default();
    let group = request
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    let launched = crate::control::launch(
        &api.control,
        Launch {
            cluster: &cluster,
            record: &record,
            definition: &definition,
            count,
            started_by: request.started_by,
            group,
            launch_type,
            overrides: overrides_shape,
            tags: super::tags::given("tags", request.tags.clone())?,
            strategies: &request.placement_strategy,
            constraints: &request.placement_constraints,
        },
    )?;
    Ok(launched_shape(&launched))
}

/// ECS's checks of RunTask's `overrides`: each names a container of the definition; a
/// container's `memory` and `memoryReservation` stay within the task's memory (and the
/// reservation below the hard limit), and the containers' `cpu` within the task's cpu, so an
/// override can never give a task more than placement counted for it.
fn check_overrides(definition: &TaskDefinition, shape: &Value) -> Result<(), ApiError> {
    for field in ["cpu", "memory"] {
        if shape.get(field).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(format!(
                "overrides.{field}: task-level cpu and memory overrides are not supported; \
                 register a revision of the task definition with the size it needs"
            )));
        }
    }
    let overrides = ContainerOverride::list_from_ecs(shape);
    let task_memory = definition.memory_mib;
    let mut cpu_total: u64 = 0;
    for container in &definition.spec.container_definitions {
        let given = overrides.iter().find(|o| o.name == container.name);
        cpu_total += u64::from(given.and_then(|o| o.cpu).or(container.cpu).unwrap_or(0));
    }
    for (i, o) in overrides.iter().enumerate() {
        let path = format!("overrides.containerOverrides[{i}]");
        let Some(container) = definition.container(&o.name) else {
            return Err(ApiError::invalid(format!(
                "{path}.name: no container named \"{}\"",
                o.name
            )));
        };
        for (field, value) in [
            ("memory", o.memory),
            ("memoryReservation", o.memory_reservation),
        ] {
            if value == Some(0) {
                return Err(ApiError::invalid(format!(
                    "{path}.{field}: must be at least 1 MiB"
                )));
            }
            if let (Some(task), Some(mib)) = (task_memory, value)
                && mib > task
            {
                return Err(ApiError::invalid(format!(
                    "{path}.{field}: must not exceed the task's memory ({mib} > {task})"
                )));
            }
        }
        let hard = o.memory.or(container.memory);
        let soft = o.memory_reservation.or(container.memory_reservation);
        if let (Some(hard), Some(soft)) = (hard, soft)
            && soft >= hard
        {
            return Err(ApiError::invalid(format!(
                "{path}.memoryReservation: must be below the container's memory ({soft} >= {hard})"
            )));
        }
        if let (Some(task), Some(_)) = (definition.cpu_units, o.cpu)
            && cpu_total > u64::from(task)
        {
            return Err(ApiError::invalid(format!(
                "{path}.cpu: the containers' cpu ({cpu_total} units with this override) must \
                 not exceed the task's cpu ({task})"
            )));
        }
    }
    Ok(())
}

/// RunTask's answer: the tasks started and the failures, in ECS's shapes.
fn launched_shape(launched: &Launched) -> Value {
    let tasks: Vec<Value> = launched.tasks.iter().map(TaskRecord::to_shape).collect();
    let failures: Vec<Value> = launched.failures.iter().map(failure_shape).collect();
    json!({"tasks": tasks, "failures": failures})
}

fn failure_shape(failure: &PlacementFailure) -> Value {
    json!({"arn": failure.arn, "reason": failure.reason})
}

/// The task id in a task ARN or id.
pub(super) fn task_id_of(given: &str) -> &str {
    let name = arn::resource_name(given, "task");
    name.rsplit('/').next().unwrap_or(name)
}

/// The stored task `given` (an ARN or id) names in `cluster`.
pub(super) fn find(api: &Api, cluster: &str, given: &str) -> Result<TaskRecord, ApiError> {
    let cluster_arn = api.control.arns.cluster(cluster);
    match crate::records::task(api.control.store.as_ref(), task_id_of(given))? {
        Some(task) if task.cluster_arn == cluster_arn => Ok(task),
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
    let cluster_arn = api.control.arns.cluster(&cluster);
    let (mut tasks, mut failures) = (Vec::new(), Vec::new());
    for given in request.tasks {
        match crate::records::task(api.control.store.as_ref(), task_id_of(&given))? {
            Some(task) if task.cluster_arn == cluster_arn => tasks.push(task.to_shape()),
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
    let cluster_arn = api.control.arns.cluster(&cluster);
    let desired = match request.desired_status.as_deref() {
        None => Some(DesiredStatus::Running),
        Some("PENDING") => None,
        Some(other) => Some(DesiredStatus::parse(other).ok_or_else(|| {
            ApiError::invalid(format!(
                "desiredStatus: must be one of RUNNING, PENDING, STOPPED (got {other})"
            ))
        })?),
    };
    let arns: Vec<Value> = crate::records::tasks(api.control.store.as_ref())?
        .into_iter()
        .filter(|t| t.cluster_arn == cluster_arn && Some(t.desired_status) == desired)
        .filter(|t| request.family.as_deref().is_none_or(|f| t.family() == f))
        .filter(|t| {
            request
                .started_by
                .as_deref()
                .is_none_or(|s| t.started_by.as_deref() == Some(s))
        })
        .filter(|t| {
            request
                .service_name
                .as_deref()
                .is_none_or(|s| t.service_name() == Some(s))
        })
        .map(|t| json!(t.task_arn))
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
    match api
        .control
        .request_stop(&task_id, StopCode::UserInitiated, &reason)?
    {
        Some(task) => Ok(json!({"task": task.to_shape()})),
        None => Err(ApiError::invalid(format!(
            "task: the referenced task was not found: {}",
            request.task
        ))),
    }
}
