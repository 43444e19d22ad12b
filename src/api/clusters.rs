//! CreateCluster, DescribeClusters (with `include`), ListClusters, DeleteCluster,
//! UpdateCluster, UpdateClusterSettings. A cluster record keeps ECS's members as given
//! (`settings`, `configuration`, `serviceConnectDefaults`, `capacityProviders`,
//! `defaultCapacityProviderStrategy`, `tags`); its figures are counted at each call.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, arn, page, paged, parse, timestamp};
use crate::store::Expect;

/// The cluster every call without a `cluster` member means.
pub const DEFAULT_CLUSTER: &str = "default";

fn key(name: &str) -> String {
    format!("clusters/{name}")
}

fn check_name(name: &str) -> Result<(), ApiError> {
    check_resource_name("clusterName", name)
}

/// ECS's rule for cluster and service names (`crate::arn::check_resource_name`), as an
/// InvalidParameterException.
pub(super) fn check_resource_name(member: &str, name: &str) -> Result<(), ApiError> {
    crate::arn::check_resource_name(member, name).map_err(ApiError::invalid)
}

/// A cluster's figures, counted from the records at the moment of the call.
#[derive(Default, Clone, Copy)]
struct Counts {
    instances: u64,
    running: u64,
    pending: u64,
    services: u64,
    /// STATISTICS: by launch type (EC2 counts EXTERNAL too: both are the cluster's own hosts).
    running_fargate: u64,
    pending_fargate: u64,
    active_fargate_services: u64,
    draining_services: u64,
    draining_fargate_services: u64,
}

/// The figures of every cluster, by ARN, from one scan of hosts, tasks and services.
fn counts(api: &Api) -> Result<std::collections::HashMap<String, Counts>, ApiError> {
    let mut counts: std::collections::HashMap<String, Counts> = Default::default();
    for host in api.control.hosts.records()? {
        if let Some(cluster) = &host.cluster
            && host.status != crate::control::hosts::HostStatus::Inactive
        {
            counts
                .entry(api.control.arns.cluster(cluster))
                .or_default()
                .instances += 1;
        }
    }
    for task in crate::records::tasks(api.control.store.as_ref())? {
        let entry = counts.entry(task.cluster_arn.clone()).or_default();
        let fargate = u64::from(task.launch_type == crate::records::LaunchType::Fargate);
        match task.last_status {
            crate::records::TaskStatus::Running => {
                entry.running += 1;
                entry.running_fargate += fargate;
            }
            crate::records::TaskStatus::Stopped => {}
            _ => {
                entry.pending += 1;
                entry.pending_fargate += fargate;
            }
        }
    }
    for (_, found) in api.control.store.list("services/")? {
        let Some(cluster) = found.value["clusterArn"].as_str() else {
            continue;
        };
        let entry = counts.entry(cluster.to_string()).or_default();
        let fargate = u64::from(found.value["launchType"] == "FARGATE");
        match found.value["status"].as_str() {
            Some("ACTIVE") => {
                entry.services += 1;
                entry.active_fargate_services += fargate;
            }
            Some("DRAINING") => {
                entry.draining_services += 1;
                entry.draining_fargate_services += fargate;
            }
            _ => {}
        }
    }
    Ok(counts)
}

/// What DescribeClusters' `include` asks for besides the default members.
#[derive(Debug, Clone, Copy, Default)]
struct Include {
    attachments: bool,
    configurations: bool,
    settings: bool,
    statistics: bool,
    tags: bool,
}

impl Include {
    /// Everything: the answer of a call that creates or changes a cluster.
    const ALL: Self = Self {
        attachments: true,
        configurations: true,
        settings: true,
        statistics: false,
        tags: true,
    };

    fn parse(given: &[String]) -> Result<Self, ApiError> {
        let mut include = Self::default();
        for (i, field) in given.iter().enumerate() {
            match field.as_str() {
                "ATTACHMENTS" => include.attachments = true,
                "CONFIGURATIONS" => include.configurations = true,
                "SETTINGS" => include.settings = true,
                "STATISTICS" => include.statistics = true,
                "TAGS" => include.tags = true,
                other => {
                    return Err(ApiError::invalid(format!(
                        "include[{i}]: must be one of ATTACHMENTS, CONFIGURATIONS, SETTINGS, \
                         STATISTICS, TAGS (got {other})"
                    )));
                }
            }
        }
        Ok(include)
    }
}

/// The ECS `Cluster` shape of a stored record, with the members `include` asks for.
fn shape(api: &Api, record: &Value, counts: Counts, include: Include) -> Value {
    let name = record["clusterName"].as_str().unwrap_or_default();
    let mut shape = json!({
        "clusterArn": api.control.arns.cluster(name),
        "clusterName": name,
        "status": record["status"],
        "registeredContainerInstancesCount": counts.instances,
        "runningTasksCount": counts.running,
        "pendingTasksCount": counts.pending,
        "activeServicesCount": counts.services,
        "statistics": [],
        "capacityProviders": crate::control::providers::associated(Some(record)),
        "defaultCapacityProviderStrategy": record
            .get("defaultCapacityProviderStrategy")
            .cloned()
            .unwrap_or(json!([])),
    });
    if let Some(defaults) = record.get("serviceConnectDefaults") {
        shape["serviceConnectDefaults"] = defaults.clone();
    }
    if include.tags {
        shape["tags"] = record.get("tags").cloned().unwrap_or(json!([]));
    }
    if include.settings {
        shape["settings"] = record.get("settings").cloned().unwrap_or(json!([]));
    }
    if include.configurations
        && let Some(configuration) = record.get("configuration")
    {
        shape["configuration"] = configuration.clone();
    }
    if include.attachments {
        // ECS's attachments are the Auto Scaling policies of managed scaling; wasmgate's
        // providers scale nothing, so there are none, and nothing is in progress.
        shape["attachments"] = json!([]);
        shape["attachmentsStatus"] = json!("UPDATE_COMPLETE");
    }
    if include.statistics {
        let ec2 = |all: u64, fargate: u64| (all - fargate.min(all)).to_string();
        shape["statistics"] = json!([
            {"name": "runningEC2TasksCount", "value": ec2(counts.running, counts.running_fargate)},
            {"name": "runningFargateTasksCount", "value": counts.running_fargate.to_string()},
            {"name": "pendingEC2TasksCount", "value": ec2(counts.pending, counts.pending_fargate)},
            {"name": "pendingFargateTasksCount", "value": counts.pending_fargate.to_string()},
            {"name": "activeEC2ServiceCount", "value": ec2(counts.services, counts.active_fargate_services)},
            {"name": "activeFargateServiceCount", "value": counts.active_fargate_services.to_string()},
            {"name": "drainingEC2ServiceCount", "value": ec2(counts.draining_services, counts.draining_fargate_services)},
            {"name": "drainingFargateServiceCount", "value": counts.draining_fargate_services.to_string()},
        ]);
    }
    shape
}

/// A cluster's `defaultCapacityProviderStrategy` (empty when it has none).
pub fn default_strategy(
    api: &Api,
    cluster: &str,
) -> Result<Vec<crate::control::providers::StrategyItem>, ApiError> {
    let Some(found) = api.control.store.get(&key(cluster))? else {
        return Ok(Vec::new());
    };
    Ok(found
        .value
        .get("defaultCapacityProviderStrategy")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default())
}

/// Checks cluster `settings` as ECS does: only `containerInsights`, with `enabled`,
/// `disabled` or `enhanced`.
fn check_settings(settings: &Value) -> Result<(), ApiError> {
    let Some(list) = settings.as_array() else {
        return Err(ApiError::invalid(
            "settings: must be a list of {name, value}",
        ));
    };
    for (i, setting) in list.iter().enumerate() {
        if setting["name"] != "containerInsights" {
            return Err(ApiError::invalid(format!(
                "settings[{i}].name: must be containerInsights (got {})",
                setting["name"]
            )));
        }
        if !matches!(
            setting["value"].as_str(),
            Some("enabled" | "disabled" | "enhanced")
        ) {
            return Err(ApiError::invalid(format!(
                "settings[{i}].value: containerInsights takes enabled, disabled or enhanced (got {})",
                setting["value"]
            )));
        }
    }
    Ok(())
}

/// Checks a cluster's `configuration` (ExecuteCommand logging and managed storage keys):
/// an object whose `executeCommandConfiguration.logging` is one of ECS's values.
fn check_configuration(configuration: &Value) -> Result<(), ApiError> {
    if !configuration.is_object() {
        return Err(ApiError::invalid("configuration: must be an object"));
    }
    for member in configuration.as_object().into_iter().flat_map(|m| m.keys()) {
        if !matches!(
            member.as_str(),
            "executeCommandConfiguration" | "managedStorageConfiguration"
        ) {
            return Err(ApiError::invalid(format!(
                "configuration.{member}: not a member of ClusterConfiguration"
            )));
        }
    }
    if let Some(logging) = configuration.pointer("/executeCommandConfiguration/logging")
        && !matches!(logging.as_str(), Some("NONE" | "DEFAULT" | "OVERRIDE"))
    {
        return Err(ApiError::invalid(format!(
            "configuration.executeCommandConfiguration.logging: must be NONE, DEFAULT or \
             OVERRIDE (got {logging})"
        )));
    }
    Ok(())
}

/// Checks `serviceConnectDefaults`: `{namespace}`, a name or an ARN.
fn check_service_connect(defaults: &Value) -> Result<(), ApiError> {
    match defaults.get("namespace").and_then(Value::as_str) {
        Some(namespace) if !namespace.is_empty() && namespace.len() <= 1024 => Ok(()),
        _ => Err(ApiError::invalid(
            "serviceConnectDefaults.namespace: required, a namespace name or ARN",
        )),
    }
}

/// Creates `name` unless it exists and is active, with ECS's members in `members` (`tags`,
/// `settings`, ...); returns its record.
pub fn ensure(
    api: &Api,
    name: &str,
    members: serde_json::Map<String, Value>,
) -> Result<Value, ApiError> {
    check_name(name)?;
    // Replicas starting together all ensure `default`: one writes it, the others find it on
    // their next look.
    loop {
        let existing = api.control.store.get(&key(name))?;
        if let Some(found) = &existing
            && found.value["status"] == "ACTIVE"
        {
            return Ok(found.value.clone());
        }
        let mut record = json!({
            "clusterName": name,
            "status": "ACTIVE",
            "createdAt": timestamp(),
            "tags": [],
            "settings": [],
        });
        for (member, value) in members.clone() {
            record[member] = value;
        }
        let expected = existing.map_or(Expect::Absent, |e| Expect::Revision(e.revision));
        match api.control.store.put(&key(name), &record, expected) {
            Ok(_) => return Ok(record),
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
}

/// The active cluster a call names (by name or ARN; `default` when absent).
pub fn require_active(api: &Api, cluster: Option<&str>) -> Result<String, ApiError> {
    let name = arn::resource_name(cluster.unwrap_or(DEFAULT_CLUSTER), "cluster").to_string();
    match api.control.store.get(&key(&name))? {
        Some(found) if found.value["status"] == "ACTIVE" => Ok(name),
        _ => Err(ApiError::new(
            ErrorKind::ClusterNotFoundException,
            "Cluster not found.",
        )),
    }
}

/// Changes the active cluster `name`'s record with `change` (compare-and-swap, retried on a
/// concurrent write) and answers with its whole shape.
pub(super) fn change(
    api: &Api,
    name: &str,
    mut change: impl FnMut(&mut Value) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    loop {
        let Some(found) = api.control.store.get(&key(name))? else {
            return Err(ApiError::new(
                ErrorKind::ClusterNotFoundException,
                "Cluster not found.",
            ));
        };
        let mut record = found.value;
        change(&mut record)?;
        match api
            .control
            .store
            .put(&key(name), &record, Expect::Revision(found.revision))
        {
            Ok(_) => {
                let counts = counts(api)?
                    .get(&api.control.arns.cluster(name))
                    .copied()
                    .unwrap_or_default();
                return Ok(json!({"cluster": shape(api, &record, counts, Include::ALL)}));
            }
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCluster {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    settings: Option<Value>,
    #[serde(default)]
    configuration: Option<Value>,
    #[serde(default)]
    capacity_providers: Option<Vec<String>>,
    #[serde(default)]
    default_capacity_provider_strategy: Option<Vec<crate::control::providers::StrategyItem>>,
    #[serde(default)]
    service_connect_defaults: Option<Value>,
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateCluster = parse(body)?;
    let name = request
        .cluster_name
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    check_name(&name)?;
    let mut members = serde_json::Map::new();
    members.insert("tags".into(), super::tags::given("tags", request.tags)?);
    if let Some(settings) = &request.settings {
        check_settings(settings)?;
    }
    members.insert(
        "settings".into(),
        super::account::cluster_settings(api, request.settings.unwrap_or(Value::Null))?,
    );
    if let Some(configuration) = request.configuration {
        check_configuration(&configuration)?;
        members.insert("configuration".into(), configuration);
    }
    if let Some(defaults) = request.service_connect_defaults {
        check_service_connect(&defaults)?;
        members.insert("serviceConnectDefaults".into(), defaults);
    }
    if request.capacity_providers.is_some() || request.default_capacity_provider_strategy.is_some()
    {
        let providers = request.capacity_providers.unwrap_or_default();
        let strategy = request
            .default_capacity_provider_strategy
            .unwrap_or_default();
        super::capacity_providers::check_association(api, &name, &providers, &strategy)?;
        members.insert("capacityProviders".into(), json!(providers));
        members.insert("defaultCapacityProviderStrategy".into(), json!(strategy));
    }
    let record = ensure(api, &name, members)?;
    super::capacity_providers::claim(
        api,
        &name,
        &crate::control::providers::associated(Some(&record)),
    )?;
    let counts = counts(api)?
        .get(&api.control.arns.cluster(&name))
        .copied()
        .unwrap_or_default();
    Ok(json!({"cluster": shape(api, &record, counts, Include::ALL)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeClusters {
    #[serde(default)]
    clusters: Option<Vec<String>>,
    #[serde(default)]
    include: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeClusters = parse(body)?;
    let include = Include::parse(&request.include)?;
    let wanted = request
        .clusters
        .unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_string()]);
    if wanted.len() > 100 {
        return Err(ApiError::invalid(
            "clusters: at most 100 clusters in one call",
        ));
    }
    let (mut clusters, mut failures) = (Vec::new(), Vec::new());
    let counts = counts(api)?;
    for given in wanted {
        let name = arn::resource_name(&given, "cluster");
        match api.control.store.get(&key(name))? {
            Some(found) => clusters.push(shape(
                api,
                &found.value,
                counts
                    .get(&api.control.arns.cluster(name))
                    .copied()
                    .unwrap_or_default(),
                include,
            )),
            None => {
                failures.push(json!({"arn": api.control.arns.cluster(name), "reason": "MISSING"}))
            }
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let arns: Vec<Value> = api
        .control
        .store
        .list("clusters/")?
        .into_iter()
        .filter(|(_, v)| v.value["status"] == "ACTIVE")
        .map(|(_, v)| {
            json!(
                api.control
                    .arns
                    .cluster(v.value["clusterName"].as_str().unwrap_or_default())
            )
        })
        .collect();
    let (items, next) = page(&body, arns)?;
    Ok(paged("clusterArns", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateCluster {
    cluster: String,
    #[serde(default)]
    settings: Option<Value>,
    #[serde(default)]
    configuration: Option<Value>,
    #[serde(default)]
    service_connect_defaults: Option<Value>,
}

/// UpdateCluster: `settings` (merged by name, as ECS does), `configuration` (replaced) and
/// `serviceConnectDefaults` (replaced; an empty namespace removes it).
pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateCluster = parse(body)?;
    let name = require_active(api, Some(&request.cluster))?;
    if let Some(settings) = &request.settings {
        check_settings(settings)?;
    }
    if let Some(configuration) = &request.configuration {
        check_configuration(configuration)?;
    }
    if let Some(defaults) = &request.service_connect_defaults
        && defaults.get("namespace").and_then(Value::as_str) != Some("")
    {
        check_service_connect(defaults)?;
    }
    change(api, &name, |record| {
        if let Some(settings) = &request.settings {
            merge_settings(record, settings);
        }
        if let Some(configuration) = &request.configuration {
            record["configuration"] = configuration.clone();
        }
        if let Some(defaults) = &request.service_connect_defaults {
            match defaults.get("namespace").and_then(Value::as_str) {
                Some("") => {
                    if let Some(map) = record.as_object_mut() {
                        map.remove("serviceConnectDefaults");
                    }
                }
                _ => record["serviceConnectDefaults"] = defaults.clone(),
            }
        }
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateClusterSettings {
    cluster: String,
    settings: Value,
}

pub fn update_settings(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateClusterSettings = parse(body)?;
    let name = require_active(api, Some(&request.cluster))?;
    check_settings(&request.settings)?;
    change(api, &name, |record| {
        merge_settings(record, &request.settings);
        Ok(())
    })
}

/// Sets each of `given` in the record's settings, replacing a setting of the same name.
fn merge_settings(record: &mut Value, given: &Value) {
    let mut settings: Vec<Value> = record["settings"].as_array().cloned().unwrap_or_default();
    for setting in given.as_array().into_iter().flatten() {
        settings.retain(|s| s["name"] != setting["name"]);
        settings.push(json!({"name": setting["name"], "value": setting["value"]}));
    }
    record["settings"] = Value::Array(settings);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteCluster {
    cluster: String,
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteCluster = parse(body)?;
    let name = require_active(api, Some(&request.cluster))?;
    let found = api
        .control
        .store
        .get(&key(&name))?
        .ok_or_else(|| ApiError::client("cluster vanished"))?;
    let figures = counts(api)?
        .get(&api.control.arns.cluster(&name))
        .copied()
        .unwrap_or_default();
    if figures.instances > 0 {
        return Err(ApiError::new(
            ErrorKind::ClusterContainsContainerInstancesException,
            "The Cluster cannot be deleted while Container Instances are active or draining.",
        ));
    }
    if figures.services > 0 {
        return Err(ApiError::new(
            ErrorKind::ClusterContainsServicesException,
            "The Cluster cannot be deleted while Services are active.",
        ));
    }
    if figures.running + figures.pending > 0 {
        return Err(ApiError::new(
            ErrorKind::ClusterContainsTasksException,
            "The Cluster cannot be deleted while Tasks are active.",
        ));
    }
    super::capacity_providers::check_none_left(api, &name)?;
    let mut record = found.value;
    record["status"] = json!("INACTIVE");
    api.control
        .store
        .put(&key(&name), &record, Expect::Revision(found.revision))?;
    Ok(json!({"cluster": shape(api, &record, Counts::default(), Include::ALL)}))
}
