//! The member names of ECS's task definition model (botocore's `service-2.json`), used to reject
//! fields that are not in the model while keeping the ones wasmgate does not act on.
//!
//! Structures wasmgate acts on are described member by member; the rest are `Opaque`: accepted
//! and kept as given without looking inside.

use serde_json::Value;

use super::FieldError;

/// What a member holds.
enum Shape {
    /// A scalar, a map of strings, or a structure wasmgate keeps without looking inside.
    Opaque,
    Object(&'static [(&'static str, Shape)]),
    List(&'static Shape),
}

use Shape::{List, Object, Opaque};

const KEY_VALUE_PAIR: Shape = Object(&[("name", Opaque), ("value", Opaque)]);

const PORT_MAPPING: Shape = Object(&[
    ("containerPort", Opaque),
    ("hostPort", Opaque),
    ("protocol", Opaque),
    ("name", Opaque),
    ("appProtocol", Opaque),
    ("containerPortRange", Opaque),
]);

const HEALTH_CHECK: Shape = Object(&[
    ("command", Opaque),
    ("interval", Opaque),
    ("timeout", Opaque),
    ("retries", Opaque),
    ("startPeriod", Opaque),
]);

const MOUNT_POINT: Shape = Object(&[
    ("sourceVolume", Opaque),
    ("containerPath", Opaque),
    ("readOnly", Opaque),
]);

const LINUX_PARAMETERS: Shape = Object(&[
    ("capabilities", Object(&[("add", Opaque), ("drop", Opaque)])),
    ("devices", Opaque),
    ("initProcessEnabled", Opaque),
    ("sharedMemorySize", Opaque),
    ("tmpfs", List(&TMPFS)),
    ("maxSwap", Opaque),
    ("swappiness", Opaque),
]);

const TMPFS: Shape = Object(&[
    ("containerPath", Opaque),
    ("size", Opaque),
    ("mountOptions", Opaque),
]);

const ULIMIT: Shape = Object(&[
    ("name", Opaque),
    ("softLimit", Opaque),
    ("hardLimit", Opaque),
]);

const CONTAINER_DEPENDENCY: Shape = Object(&[("containerName", Opaque), ("condition", Opaque)]);

const CONTAINER_DEFINITION: Shape = Object(&[
    ("name", Opaque),
    ("image", Opaque),
    ("repositoryCredentials", Opaque),
    ("cpu", Opaque),
    ("memory", Opaque),
    ("memoryReservation", Opaque),
    ("links", Opaque),
    ("portMappings", List(&PORT_MAPPING)),
    ("essential", Opaque),
    ("restartPolicy", Opaque),
    ("entryPoint", Opaque),
    ("command", Opaque),
    ("environment", List(&KEY_VALUE_PAIR)),
    ("environmentFiles", Opaque),
    ("mountPoints", List(&MOUNT_POINT)),
    ("volumesFrom", Opaque),
    ("linuxParameters", LINUX_PARAMETERS),
    ("secrets", Opaque),
    ("dependsOn", List(&CONTAINER_DEPENDENCY)),
    ("startTimeout", Opaque),
    ("stopTimeout", Opaque),
    ("versionConsistency", Opaque),
    ("hostname", Opaque),
    ("user", Opaque),
    ("workingDirectory", Opaque),
    ("disableNetworking", Opaque),
    ("privileged", Opaque),
    ("readonlyRootFilesystem", Opaque),
    ("dnsServers", Opaque),
    ("dnsSearchDomains", Opaque),
    ("extraHosts", Opaque),
    ("dockerSecurityOptions", Opaque),
    ("interactive", Opaque),
    ("pseudoTerminal", Opaque),
    ("dockerLabels", Opaque),
    ("ulimits", List(&ULIMIT)),
    ("logConfiguration", Opaque),
    ("healthCheck", HEALTH_CHECK),
    ("systemControls", Opaque),
    ("resourceRequirements", Opaque),
    ("firelensConfiguration", Opaque),
    ("credentialSpecs", Opaque),
]);

const HOST_VOLUME_PROPERTIES: Shape = Object(&[("sourcePath", Opaque)]);

const VOLUME: Shape = Object(&[
    ("name", Opaque),
    ("host", HOST_VOLUME_PROPERTIES),
    ("dockerVolumeConfiguration", Opaque),
    ("efsVolumeConfiguration", Opaque),
    ("s3filesVolumeConfiguration", Opaque),
    ("fsxWindowsFileServerVolumeConfiguration", Opaque),
    ("configuredAtLaunch", Opaque),
]);

/// `RegisterTaskDefinitionRequest`, plus the members `DescribeTaskDefinition` adds, so that a
/// described task definition can be registered again as it is.
const TASK_DEFINITION: Shape = Object(&[
    ("family", Opaque),
    ("taskRoleArn", Opaque),
    ("executionRoleArn", Opaque),
    ("networkMode", Opaque),
    ("containerDefinitions", List(&CONTAINER_DEFINITION)),
    ("volumes", List(&VOLUME)),
    ("placementConstraints", Opaque),
    ("requiresCompatibilities", Opaque),
    ("cpu", Opaque),
    ("memory", Opaque),
    ("tags", Opaque),
    ("pidMode", Opaque),
    ("ipcMode", Opaque),
    ("proxyConfiguration", Opaque),
    ("inferenceAccelerators", Opaque),
    ("ephemeralStorage", Opaque),
    ("runtimePlatform", Opaque),
    ("enableFaultInjection", Opaque),
    ("trustedExecutionConfiguration", Opaque),
    // Output-only members of `TaskDefinition`.
    ("taskDefinitionArn", Opaque),
    ("revision", Opaque),
    ("status", Opaque),
    ("requiresAttributes", Opaque),
    ("compatibilities", Opaque),
    ("registeredAt", Opaque),
    ("deregisteredAt", Opaque),
    ("deleteRequestedAt", Opaque),
    ("registeredBy", Opaque),
]);

/// Every member of `document` that ECS's model does not have, each named by its path.
pub(super) fn unknown_fields(document: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !document.is_object() {
        errors.push(FieldError::new(
            "",
            "a task definition must be a JSON object",
        ));
        return errors;
    }
    walk(document, &TASK_DEFINITION, "", &mut errors);
    errors
}

fn walk(value: &Value, shape: &Shape, path: &str, errors: &mut Vec<FieldError>) {
    match (shape, value) {
        (Object(members), Value::Object(map)) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match members.iter().find(|(name, _)| name == key) {
                    Some((_, child_shape)) => walk(child, child_shape, &child_path, errors),
                    None => errors.push(unknown(child_path, key, members)),
                }
            }
        }
        (List(item), Value::Array(items)) => {
            for (index, child) in items.iter().enumerate() {
                walk(child, item, &format!("{path}[{index}]"), errors);
            }
        }
        // Type mismatches are reported by the typed parse, which knows the expected type.
        _ => {}
    }
}

fn unknown(path: String, key: &str, members: &[(&str, Shape)]) -> FieldError {
    let hint = members
        .iter()
        .map(|(name, _)| *name)
        .find(|name| name.eq_ignore_ascii_case(key))
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    FieldError::new(
        path,
        format!("unknown field, not in the ECS task definition model{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_model_fields_wasmgate_does_not_act_on() {
        let doc = json!({
            "family": "f",
            "taskRoleArn": "arn:aws:iam::1:role/x",
            "containerDefinitions": [{"name": "a", "image": "i", "ulimits": [{"name": "nofile"}],
                                      "linuxParameters": {"initProcessEnabled": true}}],
            "volumes": [{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]
        });
        assert!(unknown_fields(&doc).is_empty());
    }

    #[test]
    fn names_the_path_of_each_unknown_field() {
        let doc = json!({
            "family": "f",
            "bogus": 1,
            "containerDefinitions": [{"name": "a", "image": "i"},
                                     {"name": "b", "image": "i", "Memory": 5,
                                      "portMappings": [{"containerPort": 80, "port": 1}]}]
        });
        let errors: Vec<String> = unknown_fields(&doc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "bogus: unknown field, not in the ECS task definition model",
                "containerDefinitions[1].Memory: unknown field, not in the ECS task definition \
                 model (did you mean `memory`?)",
                "containerDefinitions[1].portMappings[0].port: unknown field, not in the ECS task \
                 definition model",
            ]
        );
    }
}
