//! CreateService, UpdateService, DeleteService, DescribeServices, ListServices, and below
//! them the service's other families: members (`members`), service deployments and revisions
//! (`deployments`), task sets (`task_sets`), task protection (`protection`), namespaces
//! (`namespaces`). These only record what is desired (the service record, a new deployment,
//! a task set, a request to stop a deployment); the scheduler (`crate::controller`) makes it so.

pub mod deployments;
pub mod members;
pub mod namespaces;
pub mod protection;
pub mod task_sets;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, ApiError, ErrorKind, arn, clusters, page, paged, parse, task_definitions, timestamp,
};
use crate::control::routes::{http_routes, route_of};
use crate::records::LaunchType;
use crate::records::service::history::REVISION_MEMBERS;
use crate::records::service::{
    Deployment, DeploymentStatus, PlacementConstraint, PlacementStrategy, RolloutState,
    SchedulerState, Service, ServiceStatus, new_deployment_id,
};
use crate::store::Expect;
use members::{
    self as service_members, ControllerType, DeploymentConfigurationShape, KEPT_MEMBERS,
    deployment_configuration,
};
use serde_json::Map;

use crate::control::routes::service_key as key;

/// Every member CreateService takes besides the kept ones
/// ([`service_members::KEPT_MEMBERS`]).
const CREATE_MEMBERS: &[&str] = &[
    "cluster",
    "serviceName",
    "taskDefinition",
    "desiredCount",
    "clientToken",
    "launchType",
    "deploymentConfiguration",
    "placementConstraints",
    "placementStrategy",
    "healthCheckGracePeriodSeconds",
    "schedulingStrategy",
    "tags",
];

/// Every member UpdateService takes besides the kept ones (but `role`, which only
/// CreateService takes).
const UPDATE_MEMBERS: &[&str] = &[
    "cluster",
    "service",
    "desiredCount",
    "taskDefinition",
    "deploymentConfiguration",
    "placementConstraints",
    "placementStrategy",
    "forceNewDeployment",
    "healthCheckGracePeriodSeconds",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateService {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    desired_count: Option<u32>,
    launch_type: Option<String>,
    deployment_configuration: Option<DeploymentConfigurationShape>,
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    placement_strategy: Vec<PlacementStrategy>,
    health_check_grace_period_seconds: Option<u32>,
    scheduling_strategy: Option<String>,
    tags: Option<Value>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    clusters::check_resource_name("serviceName", name)
}

/// Refuses a member `operation` does not take, by name.
fn check_members(body: &Value, operation: &str, own: &[&str]) -> Result<(), ApiError> {
    let takes = |k: &str| {
        own.contains(&k)
            || (KEPT_MEMBERS.contains(&k) && (operation == "CreateService" || k != "role"))
    };
    if let Some(object) = body.as_object()
        && let Some(unknown) = object.keys().find(|k| !takes(k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "{unknown}: not a member of {operation}"
        )));
    }
    Ok(())
}

/// ECS's refusals for a DAEMON service: its desired count is the number of container
/// instances, and it places one task on each, so neither can be given.
fn check_daemon(desired: Option<u32>, strategy: &[PlacementStrategy]) -> Result<(), ApiError> {
    if desired.is_some() {
        return Err(ApiError::invalid(
            "The daemon scheduling strategy does not support a desired count for services.",
        ));
    }
    if !strategy.is_empty() {
        return Err(ApiError::invalid(
            "The daemon scheduling strategy does not support placement strategies.",
        ));
    }
    Ok(())
}

/// A DAEMON service's deployment bounds: ECS's defaults for DAEMON (minimum 0%, maximum
/// 100%); `maximumPercent` is kept but not used, since a host runs one task at a time.
fn daemon_deployment_configuration(
    given: Option<DeploymentConfigurationShape>,
    current: Option<&crate::records::service::DeploymentConfiguration>,
) -> Result<crate::records::service::DeploymentConfiguration, ApiError> {
    let defaults = crate::records::service::DeploymentConfiguration {
        maximum_percent: 100,
        minimum_healthy_percent: 0,
        ..Default::default()
    };
    service_members::daemon_deployment_configuration(given, current.unwrap_or(&defaults))
}

/// The ACTIVE task definition `given` names, as (ARN, stored record).
pub(super) fn resolve_task_definition(api: &Api, given: &str) -> Result<(String, Value), ApiError> {
    let (record, _) = task_definitions::find(api, given)?;
    if record["status"] != "ACTIVE" {
        return Err(ApiError::client(format!(
            "TaskDefinition is inactive: {given}"
        )));
    }
    let arn = api.control.arns.task_definition(
        record["family"].as_str().unwrap_or_default(),
        record["revision"].as_u64().unwrap_or_default(),
    );
    Ok((arn, record))
}

fn new_deployment(
    task_definition: &str,
    desired: u32,
    now: f64,
    launch_type: LaunchType,
) -> Deployment {
    Deployment {
        id: new_deployment_id(),
        status: DeploymentStatus::Primary,
        task_definition: task_definition.to_string(),
        desired_count: desired,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
        launch_type,
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: "ECS deployment in progress.".into(),
    }
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    check_members(&body, "CreateService", CREATE_MEMBERS)?;
    let mut kept = service_members::with_defaults(service_members::kept_of(&body)?);
    let controller = service_members::controller_of(&kept);
    service_members::check_controller(controller)?;
    let external = controller == ControllerType::External;
    let request: CreateService = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    check_name(&request.service_name)?;
    let daemon = match request.scheduling_strategy.as_deref() {
        None | Some("REPLICA") => false,
        Some("DAEMON") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "schedulingStrategy: must be REPLICA or DAEMON (got {other})"
            )));
        }
    };
    if daemon {
        check_daemon(request.desired_count, &request.placement_strategy)?;
    }
    let strategy: Vec<crate::control::providers::StrategyItem> =
        match kept.get("capacityProviderStrategy") {
            Some(value) => super::parse_member("capacityProviderStrategy", value.clone())?,
            None => Vec::new(),
        };
    if daemon && !strategy.is_empty() {
        return Err(ApiError::invalid(
            "The daemon scheduling strategy does not support capacity provider strategies: a \
             DAEMON service runs one task on each container instance of its cluster (launch \
             type EC2 or EXTERNAL)",
        ));
    }
    // A DAEMON service takes ECS's default launch type, EC2, not the cluster's strategy.
    let launch = match request.launch_type.as_deref() {
        None if daemon => Some("EC2"),
        given => given,
    };
    let capacity = super::tasks::capacity_of(api, &cluster, launch, strategy)?;
    let launch_type = capacity.launch_type;
    if daemon && launch_type == LaunchType::Fargate {
        return Err(ApiError::invalid(
            "The daemon scheduling strategy does not support the FARGATE launch type: a \
             DAEMON service runs one task on each container instance of its cluster (launch \
             type EC2 or EXTERNAL)",
        ));
    }
    // As ECS does, a service created without either takes the cluster's default strategy
    // at creation, and keeps it.
    if !capacity.strategy.is_empty() {
        kept.insert(
            "capacityProviderStrategy".into(),
            serde_json::to_value(&capacity.strategy).unwrap_or_default(),
        );
    }
    // An EXTERNAL service runs what its task sets say; it has no task definition of its own.
    let task_definition = match (request.task_definition.as_deref(), external) {
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "taskDefinition: a service with an EXTERNAL deployment controller takes its \
                 task definitions from its task sets (CreateTaskSet)",
            ));
        }
        (None, true) => String::new(),
        (None, false) => return Err(ApiError::invalid("taskDefinition: required")),
        (Some(given), false) => {
            let (task_definition, record) = resolve_task_definition(api, given)?;
            if let Ok(definition) =
                crate::taskdef::TaskDefinition::from_value(record["document"].clone())
            {
                super::tasks::check_compatibility(&definition, launch_type)?;
            }
            check_route(api, &cluster, &request.service_name, &task_definition)?;
            task_definition
        }
    };
    let desired = request.desired_count.unwrap_or(0);
    let config = if daemon {
        daemon_deployment_configuration(request.deployment_configuration, None)?
    } else {
        deployment_configuration(request.deployment_configuration, &Default::default())?
    };
    crate::control::placement::validate(
        &request.placement_strategy,
        &request.placement_constraints,
    )
    .map_err(ApiError::invalid)?;
    let now = timestamp();
    let mut service = Service {
        service_arn: api.control.arns.service(&cluster, &request.service_name),
        service_name: request.service_name.clone(),
        cluster_arn: api.control.arns.cluster(&cluster),
        status: ServiceStatus::Active,
        desired_count: desired,
        running_count: 0,
        pending_count: 0,
        launch_type,
        task_definition: task_definition.clone(),
        deployment_configuration: config,
        deployments: Vec::new(),
        events: Vec::new(),
        created_at: now,
        placement_constraints: request.placement_constraints,
        placement_strategy: request.placement_strategy,
        health_check_grace_period_seconds: request.health_check_grace_period_seconds,
        scheduling_strategy: if daemon { "DAEMON" } else { "REPLICA" }.into(),
        tags: super::tags::given("tags", request.tags)?,
        kept,
        task_sets: Vec::new(),
        scheduler: SchedulerState::default(),
        history: Default::default(),
    };
    if !external {
        service.begin_deployment(
            new_deployment(&task_definition, desired, now, launch_type),
            now,
        );
    }
    let _guard = api.control.lock_services();
    let key = key(&cluster, &request.service_name);
    let expected = match api.control.store.get(&key)? {
        Some(found) if found.value["status"] == "INACTIVE" => Expect::Revision(found.revision),
        Some(_) => {
            return Err(ApiError::invalid("Creation of service was not idempotent."));
        }
        None => Expect::Absent,
    };
    api.control
        .store
        .put(&key, &to_value(&service)?, expected)?;
    api.control.wake_scheduler();
    Ok(json!({"service": service.to_shape()}))
}

pub(super) fn to_value(service: &Service) -> Result<Value, ApiError> {
    serde_json::to_value(service)
        .map_err(|e| ApiError::new(ErrorKind::ServerException, format!("service record: {e}")))
}

/// Writes a service the caller read at `revision` (under `services_lock`) and wakes the
/// scheduler.
pub(super) fn save(
    api: &Api,
    cluster: &str,
    service: &Service,
    revision: u64,
) -> Result<(), ApiError> {
    api.control.store.put(
        &key(cluster, &service.service_name),
        &to_value(service)?,
        Expect::Revision(revision),
    )?;
    api.control.wake_scheduler();
    Ok(())
}

/// The ACTIVE service `given` names, with its revision (ServiceNotActiveException otherwise).
pub(super) fn find_active(
    api: &Api,
    cluster: &str,
    given: &str,
) -> Result<(Service, u64), ApiError> {
    let (service, revision) = find(api, cluster, given)?;
    if service.status != ServiceStatus::Active {
        return Err(ApiError::new(
            ErrorKind::ServiceNotActiveException,
            format!("Service was not ACTIVE: {}", service.service_name),
        ));
    }
    Ok((service, revision))
}

/// The stored service `given` (name or ARN) in `cluster`, with its revision.
pub(super) fn find(api: &Api, cluster: &str, given: &str) -> Result<(Service, u64), ApiError> {
    let name = arn::resource_name(given, "service");
    let name = name.rsplit('/').next().unwrap_or(name);
    let found =
        api.control.store.get(&key(cluster, name))?.ok_or_else(|| {
            ApiError::new(ErrorKind::ServiceNotFoundException, "Service not found.")
        })?;
    let service: Service = serde_json::from_value(found.value).map_err(|e| {
        ApiError::new(
            ErrorKind::ServerException,
            format!("service record {name}: {e}"),
        )
    })?;
    Ok((service, found.revision))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateService {
    cluster: Option<String>,
    service: String,
    desired_count: Option<u32>,
    task_definition: Option<String>,
    deployment_configuration: Option<DeploymentConfigurationShape>,
    health_check_grace_period_seconds: Option<u32>,
    #[serde(default)]
    force_new_deployment: bool,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
}

pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    check_members(&body, "UpdateService", UPDATE_MEMBERS)?;
    let given_kept = service_members::kept_of(&body)?;
    let request: UpdateService = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let _guard = api.control.lock_services();
    let (mut service, revision) = find_active(api, &cluster, &request.service)?;
    let now = timestamp();
    // A new strategy is checked as CreateService checks one (providers associated with the
    // cluster, ECS's base and weight rules) and decides the launch type of new tasks.
    if let Some(value) = given_kept.get("capacityProviderStrategy") {
        let strategy: Vec<crate::control::providers::StrategyItem> =
            super::parse_member("capacityProviderStrategy", value.clone())?;
        if !strategy.is_empty() {
            service.launch_type =
                super::tasks::capacity_of(api, &cluster, None, strategy)?.launch_type;
        }
    }
    let controller = service_members::controller_of(&service.kept);
    if let Some(value) = given_kept.get("deploymentController")
        && service_members::controller_of(&Map::from_iter([(
            "deploymentController".to_string(),
            value.clone(),
        )])) != controller
    {
        return Err(ApiError::invalid(
            "deploymentController: the deployment controller of a service cannot be changed here",
        ));
    }
    let external = controller == ControllerType::External;
    let daemon = service.scheduling_strategy == "DAEMON";
    if daemon {
        check_daemon(
            request.desired_count,
            request.placement_strategy.as_deref().unwrap_or_default(),
        )?;
    }
    if let Some(desired) = request.desired_count {
        service.desired_count = desired;
    }
    service.deployment_configuration = if daemon {
        daemon_deployment_configuration(
            request.deployment_configuration,
            Some(&service.deployment_configuration),
        )?
    } else {
        deployment_configuration(
            request.deployment_configuration,
            &service.deployment_configuration,
        )?
    };
    if let Some(grace) = request.health_check_grace_period_seconds {
        service.health_check_grace_period_seconds = Some(grace);
    }
    if let Some(constraints) = request.placement_constraints {
        service.placement_constraints = constraints;
    }
    if let Some(strategy) = request.placement_strategy {
        service.placement_strategy = strategy;
    }
    crate::control::placement::validate(
        &service.placement_strategy,
        &service.placement_constraints,
    )
    .map_err(ApiError::invalid)?;
    if external
        && (request.task_definition.is_some()
            || request.force_new_deployment
            || given_kept
                .keys()
                .any(|k| REVISION_MEMBERS.contains(&k.as_str())))
    {
        return Err(ApiError::invalid(
            "A service with an EXTERNAL deployment controller deploys through its task sets: \
             only desiredCount, deploymentConfiguration, healthCheckGracePeriodSeconds and the \
             tag and exec settings can be updated",
        ));
    }
    let revision_changed = given_kept
        .iter()
        .any(|(k, v)| REVISION_MEMBERS.contains(&k.as_str()) && service.kept.get(k) != Some(v));
    for (member, value) in given_kept {
        service.kept.insert(member, value);
    }
    let task_definition = match &request.task_definition {
        Some(given) => resolve_task_definition(api, given)?.0,
        None => service.task_definition.clone(),
    };
    if task_definition != service.task_definition {
        check_route(api, &cluster, &service.service_name, &task_definition)?;
    }
    if !external
        && (task_definition != service.task_definition
            || request.force_new_deployment
            || revision_changed)
    {
        service.task_definition = task_definition.clone();
        service.begin_deployment(
            new_deployment(
                &task_definition,
                service.desired_count,
                now,
                service.launch_type,
            ),
            now,
        );
        // A new deployment starts without the old one's throttle.
        service.scheduler.start_failures = 0;
        service.scheduler.not_before = None;
        service.scheduler.steady = false;
    }
    save(api, &cluster, &service, revision)?;
    Ok(json!({"service": service.to_shape()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteService {
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: bool,
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteService = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let _guard = api.control.lock_services();
    let (mut service, revision) = find_active(api, &cluster, &request.service)?;
    // A DAEMON service's count is its hosts': it is deleted without scaling in first.
    if service.desired_count > 0 && !request.force && service.scheduling_strategy != "DAEMON" {
        return Err(ApiError::invalid(
            "The service cannot be stopped while it is scaled above 0.",
        ));
    }
    service.status = ServiceStatus::Draining;
    service.desired_count = 0;
    service.scheduler.steady = false;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"service": service.to_shape()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServices {
    cluster: Option<String>,
    services: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeServices = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if request.services.len() > 10 {
        return Err(ApiError::invalid(format!(
            "services: at most 10 per call (got {})",
            request.services.len()
        )));
    }
    let (mut services, mut failures) = (Vec::new(), Vec::new());
    for given in request.services {
        match find(api, &cluster, &given) {
            Ok((service, _)) => services.push(service.to_shape()),
            Err(error) if error.kind == ErrorKind::ServiceNotFoundException => {
                let arn = if given.starts_with("arn:") {
                    given
                } else {
                    api.control.arns.service(&cluster, &given)
                };
                failures.push(json!({"arn": arn, "reason": "MISSING"}));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(json!({"services": services, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServices {
    cluster: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListServices = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let arns: Vec<Value> = api
        .control
        .store
        .list(&format!("services/{cluster}/"))?
        .into_iter()
        .filter(|(_, found)| found.value["status"] != "INACTIVE")
        .map(|(_, found)| found.value["serviceArn"].clone())
        .collect();
    let (items, next) = page(&body, arns)?;
    Ok(paged("serviceArns", items, next))
}

/// Refuses a route (of `task_definition`) that another ACTIVE service already serves.
fn check_route(
    api: &Api,
    cluster: &str,
    name: &str,
    task_definition: &str,
) -> Result<(), ApiError> {
    let Some((_, mine)) = route_of(&api.control, task_definition)? else {
        return Ok(());
    };
    for other in http_routes(&api.control)? {
        if other.service_name == name && other.cluster == cluster {
            continue;
        }
        let theirs = &other.settings;
        if theirs.host == mine.host && theirs.path == mine.path {
            return Err(ApiError::invalid(format!(
                "taskDefinition: its route (host {}, path {}) is already served by service {}",
                mine.host.as_deref().unwrap_or("any"),
                mine.path.as_deref().unwrap_or("any"),
                other.service_name
            )));
        }
    }
    Ok(())
}
