//! RunTask, DescribeTasks, ListTasks, StopTask: ECS's shapes over the control plane, which
//! places and records tasks (`control::launch`) and records their life as hosts report it
//! (`control::recorder`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, arn, clusters, page, paged, parse, task_definitions};
use crate::agent::ContainerOverride;
use crate::control::providers::{self, StrategyItem};
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
    capacity_provider_strategy: Vec<StrategyItem>,
    #[serde(default)]
    overrides: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    placement_strategy: Vec<PlacementStrategy>,
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
    propagate_tags: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    client_token: Option<String>,
}

/// A task's tags as RunTask and StartTask make them: `tags`, the task definition's when
/// `propagateTags` is TASK_DEFINITION, and `aws:ecs:clusterName` with `enableECSManagedTags`.
fn tags_of_task(
    given: Option<Value>,
    propagate: Option<&str>,
    managed: bool,
    definition_record: &Value,
    cluster: &str,
) -> Result<Value, ApiError> {
    let own = super::tags::given("tags", given)?;
    let propagated = match propagate {
        None | Some("NONE") => None,
        Some("TASK_DEFINITION") => definition_record.get("tags"),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "propagateTags: a task started by RunTask or StartTask takes TASK_DEFINITION or \
                 NONE (got {other}; SERVICE is for services)"
            )));
        }
    };
    let managed: &[(&str, &str)] = if managed {
        &[("aws:ecs:clusterName", cluster)]
    } else {
        &[]
    };
    let tags = crate::control::launch::task_tags(&own, propagated, managed);
    if tags.as_array().map_or(0, Vec::len) > 50 {
        return Err(ApiError::invalid(
            "tags: a task holds at most 50 tags, with those propagated and managed",
        ));
    }
    Ok(tags)
}

/// Where a call's tasks go: a launch type, or a capacity provider strategy (checked and
/// resolved against the cluster) whose providers' launch type the tasks get.
pub(super) struct Capacity {
    pub launch_type: LaunchType,
    pub strategy: Vec<StrategyItem>,
}

/// The capacity a call asks for: `launchType`, else `capacityProviderStrategy`, else the
/// cluster's `defaultCapacityProviderStrategy`, else FARGATE (wasmgate's shared pool).
pub(super) fn capacity_of(
    api: &Api,
    cluster: &str,
    launch_type: Option<&str>,
    strategy: Vec<StrategyItem>,
) -> Result<Capacity, ApiError> {
    if launch_type.is_some() && !strategy.is_empty() {
        return Err(ApiError::invalid(
            "launchType and capacityProviderStrategy cannot both be given",
        ));
    }
    if let Some(given) = launch_type {
        let launch_type = LaunchType::parse(given).ok_or_else(|| {
            ApiError::invalid(format!(
                "launchType: must be one of EC2, FARGATE, EXTERNAL (got {given})"
            ))
        })?;
        return Ok(Capacity {
            launch_type,
            strategy,
        });
    }
    let (strategy, member) = if strategy.is_empty() {
        (
            clusters::default_strategy(api, cluster)?,
            "defaultCapacityProviderStrategy",
        )
    } else {
        (strategy, "capacityProviderStrategy")
    };
    if strategy.is_empty() {
        return Ok(Capacity {
            launch_type: LaunchType::Fargate,
            strategy,
        });
    }
    providers::check_strategy(member, &strategy).map_err(ApiError::invalid)?;
    let associated = providers::of_cluster(&api.control, cluster)?;
    let resolved = providers::resolve(&api.control, member, &associated, &strategy)?;
    let launch_type = resolved
        .first()
        .map_or(LaunchType::Fargate, providers::Provider::launch_type);
    Ok(Capacity {
        launch_type,
        strategy,
    })
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

/// The stored record and model of the ACTIVE task definition `given` names.
fn active_definition(api: &Api, given: &str) -> Result<(Value, TaskDefinition), ApiError> {
    let (record, _) = task_definitions::find(api, given)?;
    if record["status"] != "ACTIVE" {
        return Err(ApiError::client(format!(
            "TaskDefinition is inactive: {given}"
        )));
    }
    let definition = TaskDefinition::from_value(record["document"].clone()).map_err(|e| {
        ApiError::client(format!(
            "the stored task definition no longer validates: {e}"
        ))
    })?;
    Ok((record, definition))
}

pub fn run(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: RunTask = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let capacity = capacity_of(
        api,
        &cluster,
        request.launch_type.as_deref(),
        request.capacity_provider_strategy,
    )?;
    let launch_type = capacity.launch_type;
    let (record, definition) = active_definition(api, &request.task_definition)?;
    check_compatibility(&definition, launch_type)?;
    let count = request.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count: must be between 1 and 10 (got {count})"
        )));
    }
    if let Some(token) = &request.client_token
        && (token.is_empty() || token.len() > 64 || !token.bytes().all(|b| (33..=126).contains(&b)))
    {
        return Err(ApiError::invalid(
            "clientToken: must be 1 to 64 characters, each a visible ASCII character (33-126)",
        ));
    }
    let overrides_shape = overrides_of(&definition, request.overrides)?;
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
            strategy: &capacity.strategy,
            overrides: overrides_shape,
            tags: tags_of_task(
                request.tags.clone(),
                request.propagate_tags.as_deref(),
                request.enable_ecs_managed_tags,
                &record,
                &cluster,
            )?,
            strategies: &request.placement_strategy,
            constraints: &request.placement_constraints,
            guard: Vec::new(),
            client_token: request.client_token.as_deref(),
        },
    )?;
    Ok(launched_shape(&launched))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartTask {
    cluster: Option<String>,
    container_instances: Vec<String>,
    task_definition: String,
    started_by: Option<String>,
    group: Option<String>,
    #[serde(default)]
    overrides: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    propagate_tags: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
}

/// StartTask: one task on each named container instance, placed there and nowhere else (as
/// long as it has room), instead of where the scheduler would choose.
pub fn start(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: StartTask = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if !(1..=10).contains(&request.container_instances.len()) {
        return Err(ApiError::invalid(format!(
            "containerInstances: 1 to 10 container instances (got {})",
            request.container_instances.len()
        )));
    }
    let (record, definition) = active_definition(api, &request.task_definition)?;
    let overrides_shape = overrides_of(&definition, request.overrides)?;
    let tags = tags_of_task(
        request.tags,
        request.propagate_tags.as_deref(),
        request.enable_ecs_managed_tags,
        &record,
        &cluster,
    )?;
    let family = record["family"].as_str().unwrap_or_default();
    let group = request.group.unwrap_or_else(|| format!("family:{family}"));
    let mut all = Launched::default();
    for given in &request.container_instances {
        let Some(host) = super::container_instances::find(api, &cluster, given)? else {
            all.failures.push(PlacementFailure {
                arn: given.clone(),
                reason: "MISSING".into(),
            });
            continue;
        };
        // ECS's failure reasons: AGENT when its agent is disconnected, INACTIVE when the
        // instance was deregistered.
        let unusable = if host.status == crate::control::hosts::HostStatus::Inactive {
            Some("INACTIVE")
        } else if !api.control.hosts.connected(&host.id) {
            Some("AGENT")
        } else {
            None
        };
        if let Some(reason) = unusable {
            all.failures.push(PlacementFailure {
                arn: super::container_instances::host_arn(api, &host),
                reason: reason.into(),
            });
            continue;
        }
        // A host of the cluster runs it as EC2 does; a host of the shared pool as FARGATE.
        let launch_type = if host.cluster.is_some() {
            LaunchType::Ec2
        } else {
            LaunchType::Fargate
        };
        if let Err(error) = check_compatibility(&definition, launch_type) {
            all.failures.push(PlacementFailure {
                arn: super::container_instances::host_arn(api, &host),
                reason: error.message,
            });
            continue;
        }
        let only_there = [PlacementConstraint {
            kind: "memberOf".into(),
            expression: Some(format!("ec2InstanceId == {}", host.id)),
        }];
        let launched = crate::control::launch(
            &api.control,
            Launch {
                cluster: &cluster,
                record: &record,
                definition: &definition,
                count: 1,
                started_by: request.started_by.clone(),
                group: group.clone(),
                launch_type,
                strategy: &[],
                overrides: overrides_shape.clone(),
                tags: tags.clone(),
                strategies: &[],
                constraints: &only_there,
                guard: Vec::new(),
                client_token: None,
            },
        )?;
        all.tasks.extend(launched.tasks);
        all.failures
            .extend(launched.failures.into_iter().map(|mut failure| {
                failure.arn = super::container_instances::host_arn(api, &host);
                failure
            }));
    }
    Ok(launched_shape(&all))
}

/// ExecuteCommand needs a session channel into a running container (ECS uses the SSM agent);
/// wasmgate's capacity has none, so the call says what to use instead.
pub fn execute_command(_api: &Api, _body: Value) -> Result<Value, ApiError> {
    Err(ApiError::unsupported(
        "ExecuteCommand is not supported: wasmgate tasks (Wasm instances and runc containers) \
         have no interactive session channel (ECS uses the SSM agent). Read a task's output \
         with `wasmgate logs TASK_ID -f` (WasmgateV1.GetTaskLogs) and its usage with \
         WasmgateV1.GetTaskStats; to run a command, run it as a task (RunTask with \
         overrides.containerOverrides[].command).",
    ))
}

/// A call's `overrides` (`{}` when absent), checked against the definition.
fn overrides_of(definition: &TaskDefinition, given: Option<Value>) -> Result<Value, ApiError> {
    let shape = given.unwrap_or(json!({}));
    if !shape.is_object() {
        return Err(ApiError::invalid("overrides: must be an object"));
    }
    check_overrides(definition, &shape)?;
    Ok(shape)
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
    #[serde(default)]
    include: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeTasks = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let cluster_arn = api.control.arns.cluster(&cluster);
    if request.tasks.len() > 100 {
        return Err(ApiError::invalid("tasks: at most 100 tasks in one call"));
    }
    // As ECS: a task's tags only when asked for (`include: [TAGS]`).
    let with_tags = request.include.iter().any(|i| i == "TAGS");
    let (mut tasks, mut failures) = (Vec::new(), Vec::new());
    for given in request.tasks {
        match crate::records::task(api.control.store.as_ref(), task_id_of(&given))? {
            Some(task) if task.cluster_arn == cluster_arn => {
                let mut shape = task.to_shape();
                if !with_tags && let Some(members) = shape.as_object_mut() {
                    members.remove("tags");
                }
                tasks.push(shape);
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
    /// A daemon's tasks (their group is `daemon:NAME`).
    daemon_name: Option<String>,
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
        .filter(|t| {
            request
                .daemon_name
                .as_deref()
                .is_none_or(|d| t.group.strip_prefix("daemon:") == Some(d))
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
