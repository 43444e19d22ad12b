//! The resource types a stack can hold, as data and plain functions: which ECS calls create,
//! update and delete each, which property changes need a replacement, and what its `Ref` and
//! attributes are. Types with no counterpart here (IAM, logs, networking, CDK metadata) are
//! *not applicable*: recorded with a placeholder id, never called.
//!
//! Architecture invariant: builds request bodies and reads answers; the calls themselves go
//! through the engine's `Ecs` seam.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::properties::to_ecs;

/// A resource type the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    TaskDefinition,
    Service,
    CapacityProvider,
    ClusterCapacityProviderAssociations,
    /// `AWS::Scheduler::Schedule`: EventBridge Scheduler's CreateSchedule (an ECS target).
    Schedule,
    /// `AWS::Scheduler::ScheduleGroup`.
    ScheduleGroup,
    /// A type with no counterpart in wasmgate: recorded, never called.
    NotApplicable,
}

/// Type prefixes (or whole types) that have nothing to act on here. A load balancer's
/// listener rule could become a gateway route; that is not done yet.
const NOT_APPLICABLE: &[&str] = &[
    "AWS::IAM::",
    "AWS::Logs::",
    "AWS::EC2::",
    "AWS::ElasticLoadBalancingV2::",
    "AWS::ApplicationAutoScaling::",
    "AWS::ServiceDiscovery::",
    "AWS::KMS::",
    "AWS::SSM::Parameter",
    "AWS::CDK::Metadata",
];

/// Properties whose change replaces the resource (a new one is made, the old deleted once
/// the stack settles); `*` means every change does.
fn replacing(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Cluster => &["ClusterName"],
        Kind::TaskDefinition => &["*"],
        Kind::Service => &[
            "ServiceName",
            "Cluster",
            "LaunchType",
            "SchedulingStrategy",
            "Role",
            "DeploymentController",
        ],
        Kind::CapacityProvider => &["Name", "AutoScalingGroupProvider.AutoScalingGroupArn"],
        Kind::ClusterCapacityProviderAssociations => &["Cluster"],
        Kind::Schedule => &["Name", "GroupName"],
        Kind::ScheduleGroup => &["Name"],
        Kind::NotApplicable => &[],
    }
}

impl Kind {
    /// The kind of a template's `Type`, or `None` for a type wasmgate does not know.
    pub fn of(type_name: &str) -> Option<Self> {
        Some(match type_name {
            "AWS::ECS::Cluster" => Self::Cluster,
            "AWS::ECS::TaskDefinition" => Self::TaskDefinition,
            "AWS::ECS::Service" => Self::Service,
            "AWS::ECS::CapacityProvider" => Self::CapacityProvider,
            "AWS::ECS::ClusterCapacityProviderAssociations" => {
                Self::ClusterCapacityProviderAssociations
            }
            "AWS::Scheduler::Schedule" => Self::Schedule,
            "AWS::Scheduler::ScheduleGroup" => Self::ScheduleGroup,
            other if NOT_APPLICABLE.iter().any(|p| other.starts_with(p)) => Self::NotApplicable,
            _ => return None,
        })
    }

    /// Whether going from `old` to `new` (resolved properties) needs a replacement.
    pub fn needs_replacement(self, old: &Value, new: &Value) -> bool {
        replacing(self).iter().any(|path| {
            if *path == "*" {
                return old != new;
            }
            let pick = |v: &Value| {
                path.split('.').fold(v.clone(), |at, member| {
                    at.get(member).cloned().unwrap_or_default()
                })
            };
            pick(old) != pick(new)
        })
    }
}

/// One ECS call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub action: &'static str,
    pub body: Value,
}

fn call(action: &'static str, body: Value) -> Call {
    Call { action, body }
}

/// What a created resource is: its `Ref` and its attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Created {
    pub physical_id: String,
    pub attributes: BTreeMap<String, Value>,
}

/// The member of `props` named `name` as text.
fn text(props: &Value, name: &str) -> Option<String> {
    props.get(name).and_then(Value::as_str).map(str::to_string)
}

/// The calls that create a resource; `default_name` is the name CloudFormation would make
/// up (`STACK-LOGICALID-SUFFIX`) when the template gives none.
pub fn create_calls(kind: Kind, props: &Value, default_name: &str) -> Vec<Call> {
    let mut body = to_ecs(props);
    match kind {
        Kind::Cluster => {
            if text(props, "ClusterName").is_none() {
                body["clusterName"] = json!(default_name);
            }
            vec![call("CreateCluster", body)]
        }
        Kind::TaskDefinition => {
            if text(props, "Family").is_none() {
                body["family"] = json!(default_name);
            }
            vec![call("RegisterTaskDefinition", body)]
        }
        Kind::Service => {
            if text(props, "ServiceName").is_none() {
                body["serviceName"] = json!(default_name);
            }
            vec![call("CreateService", body)]
        }
        Kind::CapacityProvider => {
            if text(props, "Name").is_none() {
                body["name"] = json!(default_name);
            }
            vec![call("CreateCapacityProvider", body)]
        }
        Kind::ClusterCapacityProviderAssociations => vec![put_providers(&body)],
        Kind::Schedule => vec![call(
            "Scheduler.CreateSchedule",
            schedule_body(props, default_name),
        )],
        Kind::ScheduleGroup => vec![call(
            "Scheduler.CreateScheduleGroup",
            json!({
                "Name": text(props, "Name").unwrap_or_else(|| default_name.to_string()),
                "Tags": props.get("Tags").cloned().unwrap_or(json!([])),
            }),
        )],
        Kind::NotApplicable => Vec::new(),
    }
}

/// An `AWS::Scheduler::Schedule`'s properties as CreateSchedule's body. They are the API's
/// members already, but for: StartDate and EndDate (ISO 8601 strings in a template, epoch
/// seconds in the API), and the ECS shapes inside EcsParameters, which CloudFormation
/// spells in PascalCase (`AwsvpcConfiguration`, `CapacityProvider`, `Type`) where the API
/// keeps ECS's camelCase.
fn schedule_body(props: &Value, default_name: &str) -> Value {
    let mut body = props.clone();
    if text(props, "Name").is_none() {
        body["Name"] = json!(default_name);
    }
    for member in ["StartDate", "EndDate"] {
        if let Some(date) = props.get(member).and_then(Value::as_str)
            && let Ok(at) = date.parse::<jiff::Timestamp>()
        {
            body[member] = json!(at.as_second());
        }
    }
    let camel_items = |items: &Value| -> Value {
        let lower = |key: &str| {
            let mut chars = key.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        };
        Value::Array(
            items
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| match item.as_object() {
                    Some(members) => {
                        Value::Object(members.iter().map(|(k, v)| (lower(k), v.clone())).collect())
                    }
                    None => item.clone(),
                })
                .collect(),
        )
    };
    // Numbers and booleans written as strings (a `Ref` to a parameter) become JSON ones.
    for pointer in [
        "/FlexibleTimeWindow/MaximumWindowInMinutes",
        "/Target/RetryPolicy/MaximumRetryAttempts",
        "/Target/RetryPolicy/MaximumEventAgeInSeconds",
        "/Target/EcsParameters/TaskCount",
    ] {
        if let Some(slot) = body.pointer_mut(pointer)
            && let Some(n) = slot.as_str().and_then(|t| t.parse::<i64>().ok())
        {
            *slot = json!(n);
        }
    }
    for pointer in [
        "/Target/EcsParameters/EnableECSManagedTags",
        "/Target/EcsParameters/EnableExecuteCommand",
    ] {
        if let Some(slot) = body.pointer_mut(pointer)
            && let Some(b) = slot.as_str().and_then(|t| t.parse::<bool>().ok())
        {
            *slot = json!(b);
        }
    }
    if let Some(ecs) = body
        .get_mut("Target")
        .and_then(|t| t.get_mut("EcsParameters"))
        .and_then(Value::as_object_mut)
    {
        for member in [
            "CapacityProviderStrategy",
            "PlacementConstraints",
            "PlacementStrategy",
        ] {
            if let Some(items) = ecs.get(member) {
                let items = camel_items(items);
                ecs.insert(member.into(), items);
            }
        }
        if let Some(network) = ecs
            .get_mut("NetworkConfiguration")
            .and_then(Value::as_object_mut)
            && let Some(vpc) = network.remove("AwsvpcConfiguration")
        {
            network.insert("awsvpcConfiguration".into(), vpc);
        }
    }
    body
}

/// The last `/` segment of an ARN (a schedule's or group's name).
fn last_segment(arn: &Value) -> Option<String> {
    arn.as_str()
        .and_then(|a| a.rsplit('/').next())
        .map(str::to_string)
}

fn put_providers(body: &Value) -> Call {
    call(
        "PutClusterCapacityProviders",
        json!({
            "cluster": body["cluster"],
            "capacityProviders": body.get("capacityProviders").cloned().unwrap_or(json!([])),
            "defaultCapacityProviderStrategy":
                body.get("defaultCapacityProviderStrategy").cloned().unwrap_or(json!([])),
        }),
    )
}

/// The attributes CDK templates read of types that are not applicable here, beside `Arn`
/// (a security group's `GroupId`, a VPC's `DefaultSecurityGroup`, a load balancer's
/// `DNSName`, ...): each is given the placeholder id, so templates resolve.
const NOT_APPLICABLE_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("AWS::IAM::Role", &["RoleId"]),
    ("AWS::EC2::SecurityGroup", &["GroupId", "VpcId"]),
    (
        "AWS::EC2::VPC",
        &[
            "VpcId",
            "CidrBlock",
            "DefaultSecurityGroup",
            "DefaultNetworkAcl",
        ],
    ),
    (
        "AWS::EC2::Subnet",
        &["SubnetId", "AvailabilityZone", "VpcId"],
    ),
    (
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        &[
            "DNSName",
            "LoadBalancerArn",
            "LoadBalancerFullName",
            "LoadBalancerName",
            "CanonicalHostedZoneID",
        ],
    ),
    (
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        &["TargetGroupArn", "TargetGroupFullName", "TargetGroupName"],
    ),
    ("AWS::ElasticLoadBalancingV2::Listener", &["ListenerArn"]),
    ("AWS::ServiceDiscovery::Service", &["Id", "Name"]),
    ("AWS::ServiceDiscovery::PrivateDnsNamespace", &["Id"]),
    ("AWS::KMS::Key", &["KeyId"]),
];

/// What the first create call's answer says the resource is (`type_name` is the template's
/// `Type`).
pub fn created(
    kind: Kind,
    type_name: &str,
    answer: &Value,
    default_name: &str,
    region: &str,
    account: &str,
) -> Created {
    let mut attributes = BTreeMap::new();
    let physical_id = match kind {
        Kind::Cluster => {
            let cluster = &answer["cluster"];
            attributes.insert("Arn".into(), cluster["clusterArn"].clone());
            cluster["clusterName"]
                .as_str()
                .unwrap_or(default_name)
                .to_string()
        }
        Kind::TaskDefinition => {
            let arn = answer["taskDefinition"]["taskDefinitionArn"].clone();
            attributes.insert("TaskDefinitionArn".into(), arn.clone());
            arn.as_str().unwrap_or_default().to_string()
        }
        Kind::Service => {
            let service = &answer["service"];
            attributes.insert("Name".into(), service["serviceName"].clone());
            attributes.insert("ServiceArn".into(), service["serviceArn"].clone());
            service["serviceArn"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
        Kind::CapacityProvider => answer["capacityProvider"]["name"]
            .as_str()
            .unwrap_or(default_name)
            .to_string(),
        Kind::ClusterCapacityProviderAssociations => answer["cluster"]["clusterName"]
            .as_str()
            .unwrap_or(default_name)
            .to_string(),
        Kind::Schedule => {
            attributes.insert("Arn".into(), answer["ScheduleArn"].clone());
            last_segment(&answer["ScheduleArn"]).unwrap_or_else(|| default_name.to_string())
        }
        Kind::ScheduleGroup => {
            attributes.insert("Arn".into(), answer["ScheduleGroupArn"].clone());
            last_segment(&answer["ScheduleGroupArn"]).unwrap_or_else(|| default_name.to_string())
        }
        Kind::NotApplicable => {
            attributes.insert(
                "Arn".into(),
                json!(format!(
                    "arn:aws:wasmgate:{region}:{account}:not-applicable/{default_name}"
                )),
            );
            let names = NOT_APPLICABLE_ATTRIBUTES
                .iter()
                .filter(|(t, _)| *t == type_name)
                .flat_map(|(_, names)| names.iter());
            for name in names {
                attributes.insert((*name).to_string(), json!(default_name));
            }
            default_name.to_string()
        }
    };
    Created {
        physical_id,
        attributes,
    }
}

/// The attributes `Fn::GetAtt` can name on a resource of `kind`.
pub fn attribute_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Cluster | Kind::NotApplicable | Kind::Schedule | Kind::ScheduleGroup => &["Arn"],
        Kind::TaskDefinition => &["TaskDefinitionArn"],
        Kind::Service => &["Name", "ServiceArn"],
        Kind::CapacityProvider | Kind::ClusterCapacityProviderAssociations => &[],
    }
}

/// ECS members CreateService takes that UpdateService does not (they replace instead, or
/// cannot change).
const SERVICE_CREATE_ONLY: &[&str] = &[
    "serviceName",
    "cluster",
    "launchType",
    "schedulingStrategy",
    "role",
    "deploymentController",
    "tags",
    "clientToken",
];

/// A template's `Tags` (`[{Key, Value}]`) as a map.
fn tags_of(props: &Value) -> BTreeMap<String, Value> {
    props["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["Key"].as_str()?.to_string(), t["Value"].clone())))
        .collect()
}

/// TagResource and UntagResource for what changed in `Tags`: UpdateCluster and
/// UpdateService take no tags.
fn tag_calls(arn: &str, old: &Value, new: &Value) -> Vec<Call> {
    let (before, after) = (tags_of(old), tags_of(new));
    let mut calls = Vec::new();
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    if !removed.is_empty() {
        calls.push(call(
            "UntagResource",
            json!({"resourceArn": arn, "tagKeys": removed}),
        ));
    }
    let changed: Vec<Value> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    if !changed.is_empty() {
        calls.push(call(
            "TagResource",
            json!({"resourceArn": arn, "tags": changed}),
        ));
    }
    calls
}

/// The calls that bring a resource from `old` to `new` properties in place; `arn` is the
/// resource's ARN (tags are changed on it).
pub fn update_calls(
    kind: Kind,
    physical_id: &str,
    arn: &str,
    old: &Value,
    new: &Value,
) -> Vec<Call> {
    let body = to_ecs(new);
    match kind {
        Kind::Cluster => {
            let mut calls = Vec::new();
            let changed = |member: &str| old.get(member) != new.get(member);
            if changed("ClusterSettings")
                || changed("Configuration")
                || changed("ServiceConnectDefaults")
            {
                let mut update = json!({
                    "cluster": physical_id,
                    "settings": body.get("settings").cloned().unwrap_or(json!([])),
                });
                for member in ["configuration", "serviceConnectDefaults"] {
                    if let Some(value) = body.get(member) {
                        update[member] = value.clone();
                    }
                }
                calls.push(call("UpdateCluster", update));
            }
            if old.get("CapacityProviders") != new.get("CapacityProviders")
                || old.get("DefaultCapacityProviderStrategy")
                    != new.get("DefaultCapacityProviderStrategy")
            {
                let mut put = body.clone();
                put["cluster"] = json!(physical_id);
                calls.push(put_providers(&put));
            }
            calls.extend(tag_calls(arn, old, new));
            calls
        }
        // Every change of a task definition is a replacement (a new revision).
        Kind::TaskDefinition | Kind::NotApplicable => Vec::new(),
        Kind::Service => {
            let mut update = serde_json::Map::new();
            update.insert(
                "cluster".into(),
                body.get("cluster").cloned().unwrap_or(json!("default")),
            );
            update.insert("service".into(), json!(physical_id));
            for (member, value) in body.as_object().into_iter().flatten() {
                if !SERVICE_CREATE_ONLY.contains(&member.as_str()) {
                    update.insert(member.clone(), value.clone());
                }
            }
            let mut calls = vec![call("UpdateService", Value::Object(update))];
            calls.extend(tag_calls(arn, old, new));
            calls
        }
        Kind::CapacityProvider => {
            let mut update = body.clone();
            if let Some(map) = update.as_object_mut() {
                map.remove("tags");
                map.insert("name".into(), json!(physical_id));
                if let Some(asg) = map
                    .get_mut("autoScalingGroupProvider")
                    .and_then(Value::as_object_mut)
                {
                    asg.remove("autoScalingGroupArn");
                }
            }
            vec![call("UpdateCapacityProvider", update)]
        }
        Kind::ClusterCapacityProviderAssociations => vec![put_providers(&body)],
        // UpdateSchedule replaces every member, as a template's new properties do.
        Kind::Schedule => {
            let mut update = schedule_body(new, physical_id);
            update["Name"] = json!(physical_id);
            vec![call("Scheduler.UpdateSchedule", update)]
        }
        Kind::ScheduleGroup => {
            let (before, after) = (tags_of(old), tags_of(new));
            let mut calls = Vec::new();
            let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            if !removed.is_empty() {
                calls.push(call(
                    "Scheduler.UntagResource",
                    json!({"ResourceArn": arn, "TagKeys": removed}),
                ));
            }
            let changed: Vec<Value> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            if !changed.is_empty() {
                calls.push(call(
                    "Scheduler.TagResource",
                    json!({"ResourceArn": arn, "Tags": changed}),
                ));
            }
            calls
        }
    }
}

/// The calls that delete a resource.
pub fn delete_calls(kind: Kind, physical_id: &str, props: &Value) -> Vec<Call> {
    match kind {
        Kind::Cluster => vec![call("DeleteCluster", json!({"cluster": physical_id}))],
        Kind::TaskDefinition => vec![call(
            "DeregisterTaskDefinition",
            json!({"taskDefinition": physical_id}),
        )],
        Kind::Service => vec![call(
            "DeleteService",
            json!({
                "cluster": text(props, "Cluster").unwrap_or_else(|| "default".into()),
                "service": physical_id,
                "force": true,
            }),
        )],
        Kind::CapacityProvider => vec![call(
            "DeleteCapacityProvider",
            json!({"capacityProvider": physical_id}),
        )],
        Kind::ClusterCapacityProviderAssociations => vec![call(
            "PutClusterCapacityProviders",
            json!({"cluster": physical_id, "capacityProviders": [], "defaultCapacityProviderStrategy": []}),
        )],
        Kind::Schedule => vec![call(
            "Scheduler.DeleteSchedule",
            json!({"Name": physical_id, "GroupName": text(props, "GroupName")}),
        )],
        Kind::ScheduleGroup => vec![call(
            "Scheduler.DeleteScheduleGroup",
            json!({"Name": physical_id}),
        )],
        Kind::NotApplicable => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_applicable_security_group_has_the_attributes_cdk_reads() {
        let created = created(
            Kind::NotApplicable,
            "AWS::EC2::SecurityGroup",
            &Value::Null,
            "web-Sg-1",
            "us-east-1",
            "1",
        );
        assert_eq!(created.physical_id, "web-Sg-1");
        assert_eq!(created.attributes["GroupId"], json!("web-Sg-1"));
        assert!(
            created.attributes["Arn"]
                .as_str()
                .unwrap()
                .ends_with("not-applicable/web-Sg-1")
        );
    }

    #[test]
    fn which_changes_replace() {
        let old = json!({"ServiceName": "a", "DesiredCount": 1});
        assert!(
            !Kind::Service.needs_replacement(&old, &json!({"ServiceName": "a", "DesiredCount": 2}))
        );
        assert!(
            Kind::Service.needs_replacement(&old, &json!({"ServiceName": "b", "DesiredCount": 1}))
        );
        assert!(
            Kind::TaskDefinition.needs_replacement(&json!({"Cpu": "256"}), &json!({"Cpu": "512"}))
        );
        assert!(Kind::Cluster.needs_replacement(&json!({}), &json!({"ClusterName": "x"})));
        assert!(!Kind::Cluster.needs_replacement(
            &json!({"ClusterSettings": []}),
            &json!({"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]})
        ));
    }

    #[test]
    fn types_are_known_not_applicable_or_unknown() {
        assert_eq!(Kind::of("AWS::ECS::Service"), Some(Kind::Service));
        assert_eq!(Kind::of("AWS::IAM::Role"), Some(Kind::NotApplicable));
        assert_eq!(Kind::of("AWS::CDK::Metadata"), Some(Kind::NotApplicable));
        assert_eq!(Kind::of("AWS::S3::Bucket"), None);
    }

    #[test]
    fn changed_tags_are_tagged_and_removed_ones_untagged() {
        let old = json!({"Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]});
        let new = json!({"Tags": [{"Key": "a", "Value": "1"}, {"Key": "c", "Value": "3"}]});
        let calls = update_calls(Kind::Cluster, "web", "arn:cluster/web", &old, &new);
        // Only the tags changed: no UpdateCluster.
        assert_eq!(
            calls,
            [
                call(
                    "UntagResource",
                    json!({"resourceArn": "arn:cluster/web", "tagKeys": ["b"]})
                ),
                call(
                    "TagResource",
                    json!({"resourceArn": "arn:cluster/web", "tags": [{"key": "c", "value": "3"}]})
                ),
            ]
        );
    }

    #[test]
    fn a_schedule_is_create_schedule_with_dates_and_ecs_shapes_as_the_api_takes_them() {
        let props = json!({
            "ScheduleExpression": "cron(0 3 * * ? *)",
            "StartDate": "2030-01-01T00:00:00Z",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "RoleArn": "arn:aws:iam::000000000000:role/r",
                "EcsParameters": {
                    "TaskDefinitionArn": "report",
                    "CapacityProviderStrategy": [{"CapacityProvider": "FARGATE", "Weight": 1}],
                    "PlacementConstraints": [{"Type": "distinctInstance"}],
                    "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["s-1"]}}
                }
            }
        });
        let calls = create_calls(Kind::Schedule, &props, "stack-Nightly-ABC");
        let body = &calls[0].body;
        assert_eq!(calls[0].action, "Scheduler.CreateSchedule");
        assert_eq!(body["Name"], "stack-Nightly-ABC");
        assert_eq!(body["StartDate"], 1_893_456_000);
        let ecs = &body["Target"]["EcsParameters"];
        assert_eq!(
            ecs["CapacityProviderStrategy"],
            json!([{"capacityProvider": "FARGATE", "weight": 1}])
        );
        assert_eq!(
            ecs["PlacementConstraints"],
            json!([{"type": "distinctInstance"}])
        );
        assert_eq!(
            ecs["NetworkConfiguration"],
            json!({"awsvpcConfiguration": {"Subnets": ["s-1"]}})
        );
        let made = created(
            Kind::Schedule,
            "AWS::Scheduler::Schedule",
            &json!({"ScheduleArn": "arn:aws:scheduler:us-east-1:0:schedule/default/stack-Nightly-ABC"}),
            "x",
            "us-east-1",
            "0",
        );
        assert_eq!(made.physical_id, "stack-Nightly-ABC");
        assert!(
            Kind::Schedule
                .needs_replacement(&json!({"GroupName": "a"}), &json!({"GroupName": "b"}))
        );
        assert!(
            !Kind::Schedule
                .needs_replacement(&props, &json!({"ScheduleExpression": "rate(1 hour)"}))
        );
    }

    #[test]
    fn a_service_update_leaves_out_what_only_create_takes() {
        let calls = update_calls(
            Kind::Service,
            "arn:svc",
            "arn:svc",
            &json!({}),
            &json!({"Cluster": "c", "ServiceName": "s", "DesiredCount": "2", "Tags": []}),
        );
        assert_eq!(
            calls,
            vec![call(
                "UpdateService",
                json!({"cluster": "c", "service": "arn:svc", "desiredCount": 2})
            )]
        );
    }
}
