//! CreateExpressGatewayService, UpdateExpressGatewayService, DeleteExpressGatewayService,
//! DescribeExpressGatewayService. An Express service is an HTTP service behind wasmgate's own
//! gateway: its primary container becomes a task definition (family `express-NAME`, container
//! `Main`) whose `wasmgate.http.host` label routes `NAME.CLUSTER.localhost` to it, and a
//! regular service runs it. The ingress path is the gateway's URL for that host.
//!
//! What ECS provisions in AWS maps like this: the Application Load Balancer, its listener and
//! target group are the gateway's route; `scalingTarget.minTaskCount` is the desired count (0:
//! the service scales to zero after 5 idle minutes and back on the next request);
//! `maxTaskCount`, the auto scaling metric and target value, `healthCheckPath`, the network
//! configuration and the roles are kept and answered but not acted on (wasmgate's gateway does
//! not scale above what the service asks, nor probe over HTTP). The configurations kept under
//! `express/CLUSTER/NAME` are ECS's `ExpressGatewayServiceConfiguration`s, one per deployment.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Api, ApiError, ErrorKind, clusters, parse, timestamp};
use crate::records::Service;
use crate::records::service::ServiceStatus;
use crate::store::Expect;

/// ECS's defaults for an Express service's task.
const DEFAULT_CPU: &str = "256";
const DEFAULT_MEMORY: &str = "512";
const DEFAULT_PORT: u64 = 80;
const DEFAULT_HEALTH_CHECK_PATH: &str = "/ping";
/// The name ECS gives the primary container (and asks of a task definition brought along).
const MAIN: &str = "Main";
/// How long an Express service with `minTaskCount` 0 stays up without requests.
const IDLE_SECONDS: &str = "300";

fn key(cluster: &str, name: &str) -> String {
    format!("express/{cluster}/{name}")
}

fn server(what: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::ServerException, format!("{what}: {error}"))
}

/// The members a configuration takes (create and update alike).
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ConfigurationRequest {
    execution_role_arn: Option<String>,
    task_role_arn: Option<String>,
    health_check_path: Option<String>,
    primary_container: Option<Value>,
    network_configuration: Option<Value>,
    cpu: Option<String>,
    memory: Option<String>,
    cpu_architecture: Option<String>,
    scaling_target: Option<ScalingTarget>,
    task_definition_arn: Option<String>,
}

#[derive(Deserialize, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ScalingTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    min_task_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_task_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_scaling_metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_scaling_target_value: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrimaryContainer {
    image: String,
    container_port: Option<u64>,
    aws_logs_configuration: Option<AwsLogs>,
    repository_credentials: Option<Value>,
    command: Option<Vec<String>>,
    environment: Option<Value>,
    secrets: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AwsLogs {
    log_group: String,
    log_stream_prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateExpress {
    infrastructure_role_arn: String,
    service_name: Option<String>,
    cluster: Option<String>,
    tags: Option<Value>,
    #[serde(flatten)]
    configuration: ConfigurationRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateExpress {
    service_arn: String,
    #[serde(flatten)]
    configuration: ConfigurationRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceArn {
    service_arn: String,
    #[serde(default)]
    include: Vec<String>,
}

/// The host an Express service is routed by: `NAME.CLUSTER.localhost` (underscores, which a
/// host name cannot hold, become hyphens); `*.localhost` reaches loopback without DNS.
pub fn route_host(cluster: &str, name: &str) -> String {
    format!("{name}.{cluster}.localhost")
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The gateway URL a route host is served on.
fn endpoint(api: &Api, host: &str) -> Result<String, ApiError> {
    let at = api.gateway_address().ok_or_else(|| {
        ApiError::unsupported(
            "Express services are served by wasmgate's gateway, and this server runs none; \
             start it with --gateway ADDRESS",
        )
    })?;
    Ok(format!("http://{host}:{}/", at.port()))
}

/// A deployment id's digits, for the service revision and deployment ARNs.
fn digits(deployment: &str) -> &str {
    deployment.strip_prefix("ecs-svc/").unwrap_or(deployment)
}

/// Registers the task definition of a configuration (unless it brings its own) and returns
/// the configuration as ECS shows it, and the desired count its scaling target asks.
fn configure(
    api: &Api,
    cluster: &str,
    name: &str,
    given: ConfigurationRequest,
    current: Option<&Value>,
) -> Result<(Map<String, Value>, u32), ApiError> {
    let from_current = |member: &str| current.and_then(|c| c.get(member)).cloned();
    let own_definition = given.task_definition_arn.clone();
    if own_definition.is_some()
        && (given.primary_container.is_some()
            || given.execution_role_arn.is_some()
            || given.task_role_arn.is_some()
            || given.cpu.is_some()
            || given.memory.is_some()
            || given.cpu_architecture.is_some())
    {
        return Err(ApiError::invalid(
            "If you provide a task definition ARN, you cannot also specify primaryContainer, \
             executionRoleArn, taskRoleArn, cpu, memory, or cpuArchitecture.",
        ));
    }
    let mut config = Map::new();
    let scaling = match given.scaling_target {
        Some(target) => target,
        None => from_current("scalingTarget")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    };
    let min = scaling.min_task_count.unwrap_or(1);
    if let Some(max) = scaling.max_task_count
        && max < min
    {
        return Err(ApiError::invalid(format!(
            "scalingTarget: maxTaskCount ({max}) must be at least minTaskCount ({min})"
        )));
    }
    if let Some(metric) = scaling.auto_scaling_metric.as_deref()
        && !matches!(
            metric,
            "AVERAGE_CPU" | "AVERAGE_MEMORY" | "REQUEST_COUNT_PER_TARGET"
        )
    {
        return Err(ApiError::invalid(format!(
            "scalingTarget.autoScalingMetric: must be AVERAGE_CPU, AVERAGE_MEMORY or \
             REQUEST_COUNT_PER_TARGET (got {metric})"
        )));
    }
    let health_check_path = given
        .health_check_path
        .or_else(|| from_current("healthCheckPath").and_then(|v| v.as_str().map(String::from)))
        .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.into());
    if !health_check_path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "healthCheckPath: must start with / (got {health_check_path})"
        )));
    }
    let task_definition = match own_definition {
        Some(given) => {
            let (record, _) = super::task_definitions::find(api, &given)?;
            let definition = crate::control::definitions::definition_of(&record, &given)?;
            let main = definition
                .spec
                .container_definitions
                .iter()
                .find(|c| c.name == MAIN)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "taskDefinitionArn: the task definition must have a container named \
                         {MAIN}"
                    ))
                })?;
            if main.http_settings().is_none() {
                return Err(ApiError::invalid(format!(
                    "taskDefinitionArn: container {MAIN} declares no route; wasmgate's gateway \
                     routes by the wasmgate.http.host or wasmgate.http.path docker label \
                     (for this service: wasmgate.http.host = {})",
                    route_host(cluster, name)
                )));
            }
            api.control.arns.task_definition(
                record["family"].as_str().unwrap_or_default(),
                record["revision"].as_u64().unwrap_or_default(),
            )
        }
        None => {
            let container = given
                .primary_container
                .or_else(|| from_current("primaryContainer"))
                .ok_or_else(|| {
                    ApiError::invalid("primaryContainer: required (or taskDefinitionArn)")
                })?;
            let primary: PrimaryContainer = parse(container.clone())
                .map_err(|e| ApiError::invalid(format!("primaryContainer.{}", e.message)))?;
            let cpu = given
                .cpu
                .or_else(|| from_current("cpu").and_then(|v| v.as_str().map(String::from)))
                .unwrap_or_else(|| DEFAULT_CPU.into());
            let memory = given
                .memory
                .or_else(|| from_current("memory").and_then(|v| v.as_str().map(String::from)))
                .unwrap_or_else(|| DEFAULT_MEMORY.into());
            let architecture = given
                .cpu_architecture
                .or_else(|| {
                    from_current("cpuArchitecture").and_then(|v| v.as_str().map(String::from))
                })
                .unwrap_or_else(|| "X86_64".into());
            if !matches!(architecture.as_str(), "X86_64" | "ARM64") {
                return Err(ApiError::invalid(format!(
                    "cpuArchitecture: must be X86_64 or ARM64 (got {architecture})"
                )));
            }
            let execution_role = given.execution_role_arn.or_else(|| {
                from_current("executionRoleArn").and_then(|v| v.as_str().map(String::from))
            });
            let task_role = given
                .task_role_arn
                .or_else(|| from_current("taskRoleArn").and_then(|v| v.as_str().map(String::from)));
            let mut labels = json!({"wasmgate.http.host": route_host(cluster, name)});
            if min == 0 {
                labels["wasmgate.http.idle-timeout"] = json!(IDLE_SECONDS);
            }
            let port = primary.container_port.unwrap_or(DEFAULT_PORT);
            let mut main = json!({
                "name": MAIN,
                "image": primary.image,
                "essential": true,
                "portMappings": [{"containerPort": port, "protocol": "tcp", "name": "main"}],
                "dockerLabels": labels,
            });
            for (member, value) in [
                ("command", primary.command.map(|c| json!(c))),
                ("environment", primary.environment),
                ("secrets", primary.secrets),
                ("repositoryCredentials", primary.repository_credentials),
            ] {
                if let Some(value) = value {
                    main[member] = value;
                }
            }
            if let Some(logs) = primary.aws_logs_configuration {
                main["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
                    "awslogs-group": logs.log_group,
                    "awslogs-stream-prefix": logs.log_stream_prefix,
                }});
            }
            let mut document = json!({
                "family": format!("express-{name}"),
                "cpu": cpu,
                "memory": memory,
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "runtimePlatform": {"cpuArchitecture": architecture, "operatingSystemFamily": "LINUX"},
                "containerDefinitions": [main],
            });
            if let Some(role) = &execution_role {
                document["executionRoleArn"] = json!(role);
            }
            if let Some(role) = &task_role {
                document["taskRoleArn"] = json!(role);
            }
            let registered = super::task_definitions::register(api, document)?;
            config.insert("cpu".into(), json!(cpu));
            config.insert("memory".into(), json!(memory));
            config.insert("cpuArchitecture".into(), json!(architecture));
            config.insert("primaryContainer".into(), container);
            if let Some(role) = execution_role {
                config.insert("executionRoleArn".into(), json!(role));
            }
            if let Some(role) = task_role {
                config.insert("taskRoleArn".into(), json!(role));
            }
            registered["taskDefinition"]["taskDefinitionArn"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    config.insert("taskDefinitionArn".into(), json!(task_definition));
    config.insert("healthCheckPath".into(), json!(health_check_path));
    config.insert(
        "scalingTarget".into(),
        serde_json::to_value(ScalingTarget {
            min_task_count: Some(min),
            ..scaling
        })
        .map_err(|e| server("scaling target", e))?,
    );
    if let Some(network) = given
        .network_configuration
        .or_else(|| from_current("networkConfiguration"))
    {
        config.insert("networkConfiguration".into(), network);
    }
    let host = route_host(cluster, name);
    config.insert(
        "ingressPaths".into(),
        json!([{"accessType": "PUBLIC", "endpoint": endpoint(api, &host)?}]),
    );
    Ok((config, min))
}

/// Records a configuration as the one of the service's newest deployment.
fn with_deployment(
    api: &Api,
    mut config: Map<String, Value>,
    cluster: &str,
    name: &str,
    service: &Value,
    now: f64,
) -> Value {
    let deployment = service["deployments"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let scope = &api.control.arns;
    config.insert(
        "serviceRevisionArn".into(),
        json!(format!(
            "arn:aws:ecs:{}:{}:service-revision/{cluster}/{name}/{}",
            scope.region,
            scope.account,
            digits(&deployment)
        )),
    );
    config.insert("createdAt".into(), json!(now));
    config.insert("deploymentId".into(), json!(deployment));
    Value::Object(config)
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateExpress = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let name = match request.service_name {
        Some(name) => name,
        None => format!("express-{}", &crate::agent::new_task_id()[..12]),
    };
    clusters::check_resource_name("serviceName", &name)?;
    let tags = super::tags::given("tags", request.tags)?;
    let now = timestamp();
    let (config, desired) = configure(api, &cluster, &name, request.configuration, None)?;
    let mut create = json!({
        "cluster": cluster,
        "serviceName": name,
        "taskDefinition": config["taskDefinitionArn"],
        "desiredCount": desired,
        "launchType": "FARGATE",
    });
    if tags.as_array().is_some_and(|t| !t.is_empty()) {
        create["tags"] = tags.clone();
    }
    let created = super::services::create(api, create)?;
    let config = with_deployment(api, config, &cluster, &name, &created["service"], now);
    let record = json!({
        "serviceArn": created["service"]["serviceArn"],
        "cluster": cluster,
        "serviceName": name,
        "infrastructureRoleArn": request.infrastructure_role_arn,
        "createdAt": now,
        "updatedAt": now,
        "tags": tags,
        "configurations": [config],
    });
    api.control
        .store
        .put(&key(&cluster, &name), &record, Expect::Any)?;
    Ok(json!({"service": shape(api, &record, true)?}))
}

/// The Express record and its store revision that a `serviceArn` names (an ARN, or a name in
/// the default cluster); `missing` is the error when there is none.
fn find(api: &Api, given: &str, missing: ErrorKind) -> Result<(Value, u64), ApiError> {
    let rest = crate::arn::resource_name(given, "service");
    let (cluster, name) = match rest.split_once('/') {
        Some((cluster, name)) => (cluster.to_string(), name.to_string()),
        None => (clusters::DEFAULT_CLUSTER.to_string(), rest.to_string()),
    };
    let found = api
        .control
        .store
        .get(&key(&cluster, &name))?
        .ok_or_else(|| {
            ApiError::new(
                missing,
                format!("The Express service was not found: {given}"),
            )
        })?;
    Ok((found.value, found.revision))
}

/// The service an Express record runs.
/// The Express record `given` names, with its revision, when its service is ACTIVE; else
/// ECS's ServiceNotFoundException / ServiceNotActiveException.
fn find_active(api: &Api, given: &str) -> Result<(Value, u64), ApiError> {
    let (record, revision) = find(api, given, ErrorKind::ServiceNotFoundException)?;
    if service_of(api, &record)?
        .as_ref()
        .is_none_or(|s| s.status != ServiceStatus::Active)
    {
        return Err(ApiError::new(
            ErrorKind::ServiceNotActiveException,
            format!("Service was not ACTIVE: {given}"),
        ));
    }
    Ok((record, revision))
}

fn service_of(api: &Api, record: &Value) -> Result<Option<Service>, ApiError> {
    let key = crate::control::routes::service_key(
        record["cluster"].as_str().unwrap_or_default(),
        record["serviceName"].as_str().unwrap_or_default(),
    );
    Ok(crate::records::get::<Service>(api.control.store.as_ref(), &key)?.map(|(s, _)| s))
}

fn status_code(service: Option<&Service>) -> &'static str {
    match service.map(|s| s.status) {
        Some(ServiceStatus::Active) => "ACTIVE",
        Some(ServiceStatus::Draining) => "DRAINING",
        Some(ServiceStatus::Inactive) | None => "INACTIVE",
    }
}

/// A configuration as ECS shows it (without wasmgate's own `deploymentId`).
fn configuration_shape(config: &Value) -> Value {
    let mut shape = config.clone();
    if let Some(object) = shape.as_object_mut() {
        object.remove("deploymentId");
    }
    shape
}

/// ECS's `ECSExpressGatewayService`: the active configurations are those whose deployment the
/// service still runs.
fn shape(api: &Api, record: &Value, with_tags: bool) -> Result<Value, ApiError> {
    let service = service_of(api, record)?;
    let cluster = record["cluster"].as_str().unwrap_or_default();
    let name = record["serviceName"].as_str().unwrap_or_default();
    let deployments: Vec<String> = service
        .as_ref()
        .map(|s| s.deployments.iter().map(|d| d.id.clone()).collect())
        .unwrap_or_default();
    let active: Vec<Value> = record["configurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["deploymentId"]
                .as_str()
                .is_some_and(|id| deployments.iter().any(|d| d == id))
        })
        .map(configuration_shape)
        .collect();
    let mut shape = json!({
        "cluster": cluster,
        "serviceName": name,
        "serviceArn": record["serviceArn"],
        "infrastructureRoleArn": record["infrastructureRoleArn"],
        "status": {"statusCode": status_code(service.as_ref())},
        "activeConfigurations": active,
        "createdAt": record["createdAt"],
        "updatedAt": record["updatedAt"],
    });
    // The service deployment (as ListServiceDeployments names it) that carries the primary
    // deployment; the scheduler's first pass starts it.
    if let Some(service) = service.as_ref()
        && let Some(primary) = service.primary()
        && let Some(carrying) = service
            .history
            .deployments
            .iter()
            .find(|d| d.carriers.iter().any(|c| c == &primary.id))
    {
        shape["currentDeployment"] = json!(service.child_arn("service-deployment", &carrying.id));
    }
    if with_tags {
        shape["tags"] = record["tags"].clone();
    }
    Ok(shape)
}

pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateExpress = parse(body)?;
    let (mut record, revision) = find_active(api, &request.service_arn)?;
    let cluster = record["cluster"].as_str().unwrap_or_default().to_string();
    let name = record["serviceName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let current = record["configurations"]
        .as_array()
        .and_then(|c| c.last())
        .cloned();
    let now = timestamp();
    let (config, desired) = configure(
        api,
        &cluster,
        &name,
        request.configuration,
        current.as_ref(),
    )?;
    let updated = super::services::update(
        api,
        json!({
            "cluster": cluster,
            "service": name,
            "taskDefinition": config["taskDefinitionArn"],
            "desiredCount": desired,
            "forceNewDeployment": true,
        }),
    )?;
    let config = with_deployment(api, config, &cluster, &name, &updated["service"], now);
    if let Some(list) = record["configurations"].as_array_mut() {
        list.push(config.clone());
    }
    record["updatedAt"] = json!(now);
    api.control
        .store
        .put(&key(&cluster, &name), &record, Expect::Revision(revision))?;
    let service = service_of(api, &record)?;
    Ok(json!({"service": {
        "serviceArn": record["serviceArn"],
        "cluster": cluster,
        "serviceName": name,
        "status": {"statusCode": status_code(service.as_ref())},
        "targetConfiguration": configuration_shape(&config),
        "createdAt": record["createdAt"],
        "updatedAt": now,
    }}))
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ServiceArn = parse(body)?;
    let (mut record, revision) = find_active(api, &request.service_arn)?;
    super::services::delete(
        api,
        json!({
            "cluster": record["cluster"],
            "service": record["serviceName"],
            "force": true,
        }),
    )?;
    record["updatedAt"] = json!(timestamp());
    let cluster = record["cluster"].as_str().unwrap_or_default().to_string();
    let name = record["serviceName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.control
        .store
        .put(&key(&cluster, &name), &record, Expect::Revision(revision))?;
    Ok(json!({"service": shape(api, &record, true)?}))
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ServiceArn = parse(body)?;
    let (record, _) = find(
        api,
        &request.service_arn,
        ErrorKind::ResourceNotFoundException,
    )?;
    let with_tags = request.include.iter().any(|i| i == "TAGS");
    Ok(json!({"service": shape(api, &record, with_tags)?}))
}
