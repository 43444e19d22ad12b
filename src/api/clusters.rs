//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster.

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
        match task.last_status {
            crate::records::TaskStatus::Running => entry.running += 1,
            crate::records::TaskStatus::Stopped => {}
            _ => entry.pending += 1,
        }
    }
    for (_, found) in api.control.store.list("services/")? {
        if found.value["status"] == "ACTIVE"
            && let Some(cluster) = found.value["clusterArn"].as_str()
        {
            counts.entry(cluster.to_string()).or_default().services += 1;
        }
    }
    Ok(counts)
}

/// The ECS `Cluster` shape of a stored record.
fn shape(api: &Api, record: &Value, counts: Counts) -> Value {
    let name = record["clusterName"].as_str().unwrap_or_default();
    json!({
        "clusterArn": api.control.arns.cluster(name),
        "clusterName": name,
        "status": record["status"],
        "registeredContainerInstancesCount": counts.instances,
        "runningTasksCount": counts.running,
        "pendingTasksCount": counts.pending,
        "activeServicesCount": counts.services,
        "statistics": [],
        "tags": record.get("tags").cloned().unwrap_or(json!([])),
        "settings": record.get("settings").cloned().unwrap_or(json!([])),
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    })
}

/// Creates `name` unless it exists and is active; returns its record.
pub fn ensure(api: &Api, name: &str, tags: Value, settings: Value) -> Result<Value, ApiError> {
    check_name(name)?;
    let existing = api.control.store.get(&key(name))?;
    if let Some(found) = &existing
        && found.value["status"] == "ACTIVE"
    {
        return Ok(found.value.clone());
    }
    let record = json!({
        "clusterName": name,
        "status": "ACTIVE",
        "createdAt": timestamp(),
        "tags": tags,
        "settings": settings,
    });
    let expected = existing.map_or(Expect::Absent, |e| Expect::Revision(e.revision));
    api.control.store.put(&key(name), &record, expected)?;
    Ok(record)
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCluster {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    settings: Option<Value>,
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateCluster = parse(body)?;
    let name = request
        .cluster_name
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    let record = ensure(
        api,
        &name,
        super::tags::given("tags", request.tags)?,
        super::account::cluster_settings(api, request.settings.unwrap_or(Value::Null))?,
    )?;
    let counts = counts(api)?
        .get(&api.control.arns.cluster(&name))
        .copied()
        .unwrap_or_default();
    Ok(json!({"cluster": shape(api, &record, counts)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeClusters {
    #[serde(default)]
    clusters: Option<Vec<String>>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeClusters = parse(body)?;
    let wanted = request
        .clusters
        .unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_string()]);
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
    let mut record = found.value;
    record["status"] = json!("INACTIVE");
    api.control
        .store
        .put(&key(&name), &record, Expect::Revision(found.revision))?;
    Ok(json!({"cluster": shape(api, &record, Counts::default())}))
}
