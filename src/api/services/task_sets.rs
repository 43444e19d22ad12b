//! CreateTaskSet, UpdateTaskSet, DeleteTaskSet, DescribeTaskSets, UpdateServicePrimaryTaskSet:
//! the task sets of a service whose deployment controller is EXTERNAL, kept in the service's
//! record (`taskSets`, ECS's own member). These only record what is desired; the scheduler
//! (`controller::plan`, its task-set pass) starts and stops the tasks.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{find_active, save};
use crate::api::{Api, ApiError, ErrorKind, clusters, parse, tags, timestamp};
use crate::records::service::Service;
use crate::records::service::new_deployment_id;
use crate::records::service::task_set::{
    Scale, ScaleUnit, StabilityStatus, TaskSet, TaskSetStatus,
};

/// Members of CreateTaskSet kept and returned as given.
const KEPT: &[&str] = &[
    "networkConfiguration",
    "loadBalancers",
    "serviceRegistries",
    "platformVersion",
    "capacityProviderStrategy",
];

/// The ACTIVE EXTERNAL service a task set call names, with its revision and cluster.
fn external_service(
    api: &Api,
    cluster: &str,
    service: &str,
) -> Result<(Service, u64, String), ApiError> {
    let cluster = clusters::require_active(api, Some(cluster))?;
    let (service, revision) = find_active(api, &cluster, service)?;
    if !service.is_external() {
        return Err(ApiError::invalid(format!(
            "The service {} does not use the EXTERNAL deployment controller: task sets are only \
             for services with deploymentController type EXTERNAL",
            service.service_name
        )));
    }
    Ok((service, revision, cluster))
}

/// The index of the task set `given` (id or ARN) of `service`.
fn index_of(service: &Service, given: &str) -> Result<usize, ApiError> {
    service
        .task_sets
        .iter()
        .position(|t| t.id == given || t.task_set_arn == given)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::TaskSetNotFoundException,
                format!("The specified task set does not exist: {given}"),
            )
        })
}

fn check_scale(scale: &Scale) -> Result<(), ApiError> {
    if !(0.0..=100.0).contains(&scale.value) {
        return Err(ApiError::invalid(format!(
            "scale.value: must be 0 to 100 (got {})",
            scale.value
        )));
    }
    Ok(())
}

/// A task set as answered: without its tags unless asked for.
fn shape(set: &TaskSet, with_tags: bool) -> Value {
    let mut value = serde_json::to_value(set).unwrap_or(Value::Null);
    if !with_tags && let Some(object) = value.as_object_mut() {
        object.remove("tags");
    }
    value
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateTaskSet {
    service: String,
    cluster: String,
    external_id: Option<String>,
    task_definition: String,
    // Typed for their checks only: they are kept as given (`KEPT`).
    #[allow(dead_code)]
    network_configuration: Option<Map<String, Value>>,
    #[allow(dead_code)]
    load_balancers: Option<Vec<Map<String, Value>>>,
    #[allow(dead_code)]
    service_registries: Option<Vec<Map<String, Value>>>,
    launch_type: Option<String>,
    #[allow(dead_code)]
    capacity_provider_strategy: Option<Vec<Map<String, Value>>>,
    #[allow(dead_code)]
    platform_version: Option<String>,
    scale: Option<Scale>,
    #[serde(rename = "clientToken")]
    _client_token: Option<String>,
    tags: Option<Value>,
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let kept: Map<String, Value> = body
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| KEPT.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let request: CreateTaskSet = parse(body)?;
    let scale = request.scale.unwrap_or_default();
    check_scale(&scale)?;
    let tags = tags::given("tags", request.tags)?;
    let _guard = api.control.lock_services();
    let (mut service, revision, cluster) =
        external_service(api, &request.cluster, &request.service)?;
    let strategy: Vec<crate::control::providers::StrategyItem> =
        match kept.get("capacityProviderStrategy") {
            Some(value) => crate::api::parse_member("capacityProviderStrategy", value.clone())?,
            None => Vec::new(),
        };
    // Neither given: the service's own launch type.
    let launch_type = if request.launch_type.is_none() && strategy.is_empty() {
        service.launch_type
    } else {
        crate::api::tasks::capacity_of(api, &cluster, request.launch_type.as_deref(), strategy)?
            .launch_type
    };
    let (task_definition, record) = super::resolve_task_definition(api, &request.task_definition)?;
    if let Ok(definition) = crate::taskdef::TaskDefinition::from_value(record["document"].clone()) {
        crate::api::tasks::check_compatibility(&definition, launch_type)?;
    }
    let now = timestamp();
    let id = new_deployment_id();
    let set = TaskSet {
        task_set_arn: service.child_arn("task-set", &id),
        id,
        service_arn: service.service_arn.clone(),
        cluster_arn: service.cluster_arn.clone(),
        external_id: request.external_id,
        status: TaskSetStatus::Active,
        task_definition,
        computed_desired_count: scale.of(service.desired_count),
        pending_count: 0,
        running_count: 0,
        created_at: now,
        updated_at: now,
        launch_type,
        scale,
        stability_status: StabilityStatus::Stabilizing,
        stability_status_at: now,
        tags,
        kept,
    };
    service.task_sets.push(set.clone());
    service.scheduler.steady = false;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"taskSet": shape(&set, false)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateTaskSet {
    cluster: String,
    service: String,
    task_set: String,
    scale: Scale,
}

pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateTaskSet = parse(body)?;
    check_scale(&request.scale)?;
    let _guard = api.control.lock_services();
    let (mut service, revision, cluster) =
        external_service(api, &request.cluster, &request.service)?;
    let index = index_of(&service, &request.task_set)?;
    let desired = service.desired_count;
    let set = &mut service.task_sets[index];
    if set.status == TaskSetStatus::Draining {
        return Err(ApiError::invalid(
            "taskSet: the task set is being deleted (DRAINING)",
        ));
    }
    set.scale = Scale {
        value: request.scale.value,
        unit: ScaleUnit::Percent,
    };
    set.computed_desired_count = set.scale.of(desired);
    set.updated_at = timestamp();
    let answer = shape(set, false);
    service.scheduler.steady = false;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"taskSet": answer}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteTaskSet {
    cluster: String,
    service: String,
    task_set: String,
    #[serde(default)]
    force: bool,
}

/// The task set goes DRAINING: its tasks stop, and it goes with the last. Without `force`, a
/// task set still scaled above zero tasks is refused, as in ECS.
pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteTaskSet = parse(body)?;
    let _guard = api.control.lock_services();
    let (mut service, revision, cluster) =
        external_service(api, &request.cluster, &request.service)?;
    let index = index_of(&service, &request.task_set)?;
    let set = &mut service.task_sets[index];
    if !request.force && set.scale.of(service.desired_count) > 0 {
        return Err(ApiError::invalid(format!(
            "The task set {} is scaled above zero tasks; scale it to 0 first or delete it with \
             force",
            set.id
        )));
    }
    set.status = TaskSetStatus::Draining;
    set.stability_status = StabilityStatus::Stabilizing;
    set.updated_at = timestamp();
    let answer = shape(set, false);
    service.scheduler.steady = false;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"taskSet": answer}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeTaskSets {
    cluster: String,
    service: String,
    task_sets: Option<Vec<String>>,
    #[serde(default)]
    include: Vec<Include>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Include {
    Tags,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeTaskSets = parse(body)?;
    let (service, _, _) = external_service(api, &request.cluster, &request.service)?;
    let with_tags = request.include.contains(&Include::Tags);
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    match request.task_sets {
        None => found.extend(service.task_sets.iter().map(|t| shape(t, with_tags))),
        Some(given) => {
            for one in given {
                match index_of(&service, &one) {
                    Ok(index) => found.push(shape(&service.task_sets[index], with_tags)),
                    Err(_) => failures.push(json!({"arn": one, "reason": "MISSING"})),
                }
            }
        }
    }
    Ok(json!({"taskSets": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateServicePrimaryTaskSet {
    cluster: String,
    service: String,
    primary_task_set: String,
}

/// The task set becomes PRIMARY (the previous one ACTIVE), and the service's taskDefinition
/// is its.
pub fn update_primary(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateServicePrimaryTaskSet = parse(body)?;
    let _guard = api.control.lock_services();
    let (mut service, revision, cluster) =
        external_service(api, &request.cluster, &request.service)?;
    let index = index_of(&service, &request.primary_task_set)?;
    if service.task_sets[index].status == TaskSetStatus::Draining {
        return Err(ApiError::invalid(
            "primaryTaskSet: the task set is being deleted (DRAINING)",
        ));
    }
    let now = timestamp();
    for (i, set) in service.task_sets.iter_mut().enumerate() {
        let status = if i == index {
            TaskSetStatus::Primary
        } else if set.status == TaskSetStatus::Primary {
            TaskSetStatus::Active
        } else {
            continue;
        };
        set.status = status;
        set.updated_at = now;
    }
    let primary = service.task_sets[index].clone();
    service.task_definition = primary.task_definition.clone();
    service.launch_type = primary.launch_type;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"taskSet": shape(&primary, false)}))
}
