//! CloudFormation's PascalCase resource properties as ECS's camelCase request members, as
//! data: a member is renamed by lowering its first letter unless `RENAMED` says otherwise;
//! the maps in `USER_MAPS` hold user data (label and option names) and keep their keys as
//! written; numbers and booleans a template writes as strings (a `Ref` to a `Number`
//! parameter is a string) become JSON numbers and booleans where ECS's model wants them.
//!
//! Architecture invariant: pure; knows member names, never calls anything.

use serde_json::{Map, Value};

/// CloudFormation names whose ECS member is not the name with its first letter lowered.
const RENAMED: &[(&str, &str)] = &[
    ("ClusterSettings", "settings"),
    ("ProxyConfigurationProperties", "properties"),
    ("PlacementStrategies", "placementStrategy"),
    ("EFSVolumeConfiguration", "efsVolumeConfiguration"),
    (
        "FSxWindowsFileServerVolumeConfiguration",
        "fsxWindowsFileServerVolumeConfiguration",
    ),
    ("IAM", "iam"),
];

/// Members whose value is a map of the user's own keys: the keys stay as written.
const USER_MAPS: &[&str] = &["DockerLabels", "Options", "DriverOpts", "Labels"];

/// ECS members that are integers in its model (a string that parses becomes a number).
const INTEGER_MEMBERS: &[&str] = &[
    "desiredCount",
    "healthCheckGracePeriodSeconds",
    "maximumPercent",
    "minimumHealthyPercent",
    "bakeTimeInMinutes",
    "containerPort",
    "hostPort",
    "memoryReservation",
    "startTimeout",
    "stopTimeout",
    "interval",
    "timeout",
    "retries",
    "startPeriod",
    "softLimit",
    "hardLimit",
    "sizeInGiB",
    "weight",
    "base",
    "targetCapacity",
    "minimumScalingStepSize",
    "maximumScalingStepSize",
    "instanceWarmupPeriod",
    "sharedMemorySize",
    "swappiness",
    "maxSwap",
    "port",
    "idleTimeoutSeconds",
    "perRequestTimeoutSeconds",
];

/// ECS members that are integers inside a container definition but strings at the task
/// definition's top level (`cpu`, `memory`).
const CONTAINER_INTEGERS: &[&str] = &["cpu", "memory"];

/// ECS members that are booleans in its model.
const BOOLEAN_MEMBERS: &[&str] = &[
    "essential",
    "readonlyRootFilesystem",
    "privileged",
    "interactive",
    "pseudoTerminal",
    "disableNetworking",
    "initProcessEnabled",
    "enableExecuteCommand",
    "enableECSManagedTags",
    "enable",
    "rollback",
    "readOnly",
    "autoprovision",
    "enableFaultInjection",
    "configuredAtLaunch",
];

/// The ECS request members for CloudFormation `properties` (an object), recursively.
pub fn to_ecs(properties: &Value) -> Value {
    convert(properties, Depth::Root)
}

/// Where a value sits: the top-level `cpu`/`memory` of a task definition are strings, a
/// container's are integers.
#[derive(Clone, Copy, PartialEq)]
enum Depth {
    Root,
    Nested,
}

fn convert(value: &Value, depth: Depth) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (name, member) in map {
                let ecs = ecs_name(name);
                let converted = if USER_MAPS.contains(&name.as_str()) {
                    member.clone()
                } else {
                    coerce(&ecs, convert(member, Depth::Nested), depth)
                };
                out.insert(ecs, converted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| convert(v, depth)).collect()),
        other => other.clone(),
    }
}

/// CloudFormation's member name as ECS spells it.
pub fn ecs_name(name: &str) -> String {
    if let Some((_, renamed)) = RENAMED.iter().find(|(from, _)| *from == name) {
        return (*renamed).to_string();
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn coerce(member: &str, value: Value, depth: Depth) -> Value {
    let integer = INTEGER_MEMBERS.contains(&member)
        || (depth == Depth::Nested && CONTAINER_INTEGERS.contains(&member));
    match value {
        Value::String(text) if integer => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(text)),
        Value::String(text) if BOOLEAN_MEMBERS.contains(&member) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        // ECS wants a task definition's cpu and memory as strings.
        Value::Number(n) if depth == Depth::Root && CONTAINER_INTEGERS.contains(&member) => {
            Value::String(n.to_string())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A task definition's properties as `cdk synth` writes them (functions resolved).
    #[test]
    fn a_cdk_task_definition_becomes_register_task_definition_members() {
        let cdk = json!({
            "ContainerDefinitions": [{
                "Essential": true,
                "Image": "oci:/images/web",
                "Memory": "64",
                "Name": "web",
                "PortMappings": [{"ContainerPort": "8080", "Protocol": "tcp"}],
                "Environment": [{"Name": "MODE", "Value": "prod"}],
                "DockerLabels": {"wasmgate.http.route": "/", "Team.Name": "a"},
                "LogConfiguration": {
                    "LogDriver": "awslogs",
                    "Options": {"awslogs-group": "g", "awslogs-stream-prefix": "web"}
                },
                "FirelensConfiguration": {"Type": "fluentbit", "Options": {"enable-ecs-log-metadata": "true"}},
                "HealthCheck": {"Command": ["CMD", "true"], "Interval": "5", "Retries": 3},
                "ReadonlyRootFilesystem": "false"
            }],
            "Cpu": 256,
            "Memory": "512",
            "Family": "StackWebTaskDef1234",
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/exec",
            "ProxyConfiguration": {"ContainerName": "envoy", "ProxyConfigurationProperties": [{"Name": "AppPorts", "Value": "8080"}]},
            "Tags": [{"Key": "Owner", "Value": "me"}]
        });
        assert_eq!(
            to_ecs(&cdk),
            json!({
                "containerDefinitions": [{
                    "essential": true,
                    "image": "oci:/images/web",
                    "memory": 64,
                    "name": "web",
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                    "environment": [{"name": "MODE", "value": "prod"}],
                    "dockerLabels": {"wasmgate.http.route": "/", "Team.Name": "a"},
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {"awslogs-group": "g", "awslogs-stream-prefix": "web"}
                    },
                    "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
                    "healthCheck": {"command": ["CMD", "true"], "interval": 5, "retries": 3},
                    "readonlyRootFilesystem": false
                }],
                "cpu": "256",
                "memory": "512",
                "family": "StackWebTaskDef1234",
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                "proxyConfiguration": {"containerName": "envoy", "properties": [{"name": "AppPorts", "value": "8080"}]},
                "tags": [{"key": "Owner", "value": "me"}]
            })
        );
    }

    #[test]
    fn cluster_settings_and_a_desired_count_parameter_map_onto_ecs() {
        assert_eq!(
            to_ecs(&json!({
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
                "DesiredCount": "3",
                "EnableECSManagedTags": "true"
            })),
            json!({
                "settings": [{"name": "containerInsights", "value": "enabled"}],
                "desiredCount": 3,
                "enableECSManagedTags": true
            })
        );
    }
}
