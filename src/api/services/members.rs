//! The members of CreateService and UpdateService that wasmgate keeps and returns as given
//! (load balancers, service registries, Service Connect, volumes, networking, tag and exec
//! switches, ...), checked against the model's types so a wrong type is named by its field
//! path, and `deploymentConfiguration` with the members the scheduler does not act on.
//!
//! Kept members live in the service record's `kept` map in ECS's shape; those that make up a
//! service revision (`records::service::history::REVISION_MEMBERS`) start a new deployment
//! when UpdateService changes them. `propagateTags` and `enableECSManagedTags` are acted on:
//! the scheduler tags the tasks it starts.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::{ApiError, ErrorKind, parse};
use crate::records::service::{CircuitBreaker, DeploymentConfiguration};

/// Members kept and returned (UpdateService takes them too, but `role`).
pub const KEPT_MEMBERS: &[&str] = &[
    "loadBalancers",
    "serviceRegistries",
    "platformVersion",
    "role",
    "networkConfiguration",
    "enableECSManagedTags",
    "propagateTags",
    "enableExecuteCommand",
    "capacityProviderStrategy",
    "deploymentController",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
    "availabilityZoneRebalancing",
    "gatewayConnectors",
    "monitoring",
];

/// The model's types of the kept members; parsing a request's kept members into this names
/// a wrong type by its path (`loadBalancers[0].containerPort`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Read for its checks; the members are kept as JSON.
struct Members {
    load_balancers: Option<Vec<LoadBalancer>>,
    service_registries: Option<Vec<ServiceRegistry>>,
    platform_version: Option<String>,
    role: Option<String>,
    network_configuration: Option<NetworkConfiguration>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    propagate_tags: Option<PropagateTags>,
    enable_execute_command: Option<bool>,
    capacity_provider_strategy: Option<Vec<Map<String, Value>>>,
    deployment_controller: Option<DeploymentController>,
    service_connect_configuration: Option<ServiceConnectConfiguration>,
    volume_configurations: Option<Vec<VolumeConfiguration>>,
    vpc_lattice_configurations: Option<Vec<VpcLatticeConfiguration>>,
    availability_zone_rebalancing: Option<OnOff>,
    gateway_connectors: Option<Vec<Map<String, Value>>>,
    monitoring: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct LoadBalancer {
    target_group_arn: Option<String>,
    load_balancer_name: Option<String>,
    container_name: Option<String>,
    container_port: Option<u16>,
    advanced_configuration: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ServiceRegistry {
    registry_arn: Option<String>,
    port: Option<u16>,
    container_name: Option<String>,
    container_port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct NetworkConfiguration {
    awsvpc_configuration: Option<AwsVpcConfiguration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct AwsVpcConfiguration {
    subnets: Vec<String>,
    security_groups: Option<Vec<String>>,
    assign_public_ip: Option<OnOff>,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum OnOff {
    Enabled,
    Disabled,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PropagateTags {
    TaskDefinition,
    Service,
    None,
}

/// `deploymentController.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControllerType {
    Ecs,
    CodeDeploy,
    External,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentController {
    #[serde(rename = "type")]
    kind: ControllerType,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ServiceConnectConfiguration {
    enabled: bool,
    namespace: Option<String>,
    services: Option<Vec<ServiceConnectService>>,
    log_configuration: Option<Map<String, Value>>,
    access_log_configuration: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ServiceConnectService {
    port_name: String,
    discovery_name: Option<String>,
    client_aliases: Option<Vec<Map<String, Value>>>,
    ingress_port_override: Option<u16>,
    timeout: Option<Map<String, Value>>,
    tls: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct VolumeConfiguration {
    name: String,
    #[serde(rename = "managedEBSVolume")]
    managed_ebs_volume: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct VpcLatticeConfiguration {
    role_arn: String,
    target_group_arn: String,
    port_name: String,
    advanced_configuration: Option<Map<String, Value>>,
}

/// The kept members of a request body, checked; `role` is kept as the `roleArn` a service
/// shows.
pub fn kept_of(body: &Value) -> Result<Map<String, Value>, ApiError> {
    let kept: Map<String, Value> = body
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| KEPT_MEMBERS.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let _checked: Members = parse(Value::Object(kept.clone()))?;
    Ok(kept
        .into_iter()
        .map(|(k, v)| {
            if k == "role" {
                ("roleArn".into(), v)
            } else {
                (k, v)
            }
        })
        .collect())
}

/// The deployment controller the kept members name (ECS when none).
pub fn controller_of(kept: &Map<String, Value>) -> ControllerType {
    kept.get("deploymentController")
        .and_then(|c| serde_json::from_value::<DeploymentController>(c.clone()).ok())
        .map_or(ControllerType::Ecs, |c| c.kind)
}

/// What CreateService fills in when a member is not given, as ECS shows them.
pub fn with_defaults(mut kept: Map<String, Value>) -> Map<String, Value> {
    let defaults = [
        ("loadBalancers", json!([])),
        ("serviceRegistries", json!([])),
        ("enableECSManagedTags", json!(false)),
        ("enableExecuteCommand", json!(false)),
        ("propagateTags", json!("NONE")),
        ("deploymentController", json!({"type": "ECS"})),
    ];
    for (member, value) in defaults {
        kept.entry(member.to_string()).or_insert(value);
    }
    kept
}

/// Every member `deploymentConfiguration` takes (the model's).
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentConfigurationShape {
    maximum_percent: Option<u32>,
    minimum_healthy_percent: Option<u32>,
    deployment_circuit_breaker: Option<CircuitBreakerShape>,
    alarms: Option<Alarms>,
    strategy: Option<Strategy>,
    bake_time_in_minutes: Option<u32>,
    lifecycle_hooks: Option<Vec<Map<String, Value>>>,
    linear_configuration: Option<Map<String, Value>>,
    canary_configuration: Option<Map<String, Value>>,
    early_success_criteria: Option<Map<String, Value>>,
}

#[derive(Deserialize, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CircuitBreakerShape {
    enable: bool,
    rollback: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_on_healthy_task: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold_configuration: Option<Map<String, Value>>,
}

#[derive(Deserialize, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Alarms {
    alarm_names: Vec<String>,
    rollback: bool,
    enable: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Strategy {
    Rolling,
    BlueGreen,
    Linear,
    Canary,
}

/// `given` applied over `current`, checked as ECS checks it. Only the ROLLING strategy runs
/// here, so BLUE_GREEN, LINEAR, CANARY and lifecycle hooks (which need one of them) are
/// refused rather than accepted and not done.
pub fn deployment_configuration(
    given: Option<DeploymentConfigurationShape>,
    current: &DeploymentConfiguration,
) -> Result<DeploymentConfiguration, ApiError> {
    configure(given, current, false)
}

/// [`deployment_configuration`] for a DAEMON service: `maximumPercent` is kept but not used
/// (a host runs one task at a time), so only `minimumHealthyPercent` is bounded.
pub fn daemon_deployment_configuration(
    given: Option<DeploymentConfigurationShape>,
    current: &DeploymentConfiguration,
) -> Result<DeploymentConfiguration, ApiError> {
    configure(given, current, true)
}

fn configure(
    given: Option<DeploymentConfigurationShape>,
    current: &DeploymentConfiguration,
    daemon: bool,
) -> Result<DeploymentConfiguration, ApiError> {
    let given = given.unwrap_or_default();
    let mut kept = current.kept.clone();
    if let Some(strategy) = given.strategy {
        if strategy != Strategy::Rolling {
            return Err(ApiError::unsupported(
                "deploymentConfiguration.strategy: only ROLLING deployments run here",
            ));
        }
        kept.insert("strategy".into(), json!(strategy));
    }
    if given
        .lifecycle_hooks
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(ApiError::unsupported(
            "deploymentConfiguration.lifecycleHooks: lifecycle hooks need the BLUE_GREEN, LINEAR \
             or CANARY strategy, which wasmgate does not run",
        ));
    }
    for (member, value) in [
        ("alarms", given.alarms.map(|a| json!(a))),
        (
            "bakeTimeInMinutes",
            given.bake_time_in_minutes.map(|b| json!(b)),
        ),
        (
            "linearConfiguration",
            given.linear_configuration.map(Value::Object),
        ),
        (
            "canaryConfiguration",
            given.canary_configuration.map(Value::Object),
        ),
        (
            "earlySuccessCriteria",
            given.early_success_criteria.map(Value::Object),
        ),
    ] {
        if let Some(value) = value {
            kept.insert(member.into(), value);
        }
    }
    let deployment_circuit_breaker = match given.deployment_circuit_breaker {
        Some(breaker) => {
            let mut extra = Map::new();
            if let Some(reset) = breaker.reset_on_healthy_task {
                extra.insert("resetOnHealthyTask".into(), json!(reset));
            }
            if let Some(threshold) = breaker.threshold_configuration {
                extra.insert("thresholdConfiguration".into(), Value::Object(threshold));
            }
            CircuitBreaker {
                enable: breaker.enable,
                rollback: breaker.rollback,
                kept: extra,
            }
        }
        None => current.deployment_circuit_breaker.clone(),
    };
    let config = DeploymentConfiguration {
        maximum_percent: given.maximum_percent.unwrap_or(current.maximum_percent),
        minimum_healthy_percent: given
            .minimum_healthy_percent
            .unwrap_or(current.minimum_healthy_percent),
        deployment_circuit_breaker,
        kept,
    };
    if config.minimum_healthy_percent > 100 {
        return Err(ApiError::invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent: must be 0-100 (got {})",
            config.minimum_healthy_percent
        )));
    }
    if daemon {
        return Ok(config);
    }
    if config.maximum_percent < 100 || config.maximum_percent > 400 {
        return Err(ApiError::invalid(format!(
            "deploymentConfiguration.maximumPercent: must be 100-400 (got {})",
            config.maximum_percent
        )));
    }
    if config.maximum_percent <= config.minimum_healthy_percent {
        return Err(ApiError::invalid(format!(
            "deploymentConfiguration: maximumPercent ({}) must be above minimumHealthyPercent \
             ({}), or no deployment could make progress",
            config.maximum_percent, config.minimum_healthy_percent
        )));
    }
    Ok(config)
}

/// Refuses CODE_DEPLOY: there is no CodeDeploy here.
pub fn check_controller(kind: ControllerType) -> Result<(), ApiError> {
    if kind == ControllerType::CodeDeploy {
        return Err(ApiError::new(
            ErrorKind::UnsupportedFeatureException,
            "deploymentController.type: CODE_DEPLOY needs AWS CodeDeploy; use ECS or EXTERNAL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_named_by_their_path() {
        let error = kept_of(&json!({"loadBalancers": [{"containerPort": "eighty"}]})).unwrap_err();
        assert!(
            error.message.starts_with("loadBalancers[0].containerPort"),
            "{}",
            error.message
        );
        let error = kept_of(&json!({"serviceConnectConfiguration": {"enabled": true, "bogus": 1}}))
            .unwrap_err();
        assert!(error.message.contains("bogus"), "{}", error.message);
        let kept = kept_of(&json!({"role": "arn:role", "enableExecuteCommand": true})).unwrap();
        assert_eq!(kept["roleArn"], "arn:role");
    }
}
