//! Container instances (capacity hosts) as ECS shows them: ListContainerInstances,
//! DescribeContainerInstances, UpdateContainerInstancesState, DeregisterContainerInstance, and
//! the placement candidates of a launch.
//!
//! Hosts registered in a cluster (`wasmgate agent --cluster`) are that cluster's container
//! instances (ARN `container-instance/CLUSTER/ID`). Hosts of the shared pool run FARGATE tasks
//! of every cluster and, as Fargate's, are listed by no cluster; their ARN has no cluster
//! (`container-instance/ID`) and Describe/UpdateContainerInstancesState take it in any cluster.
//!
//! What remains on a host is computed from the tasks placed on it that have not stopped,
//! never kept as a running counter, so a crash or a lost report cannot leak capacity.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, arn, clusters, page, paged, parse};
use crate::control::hosts::{HostRecord, HostStatus};
use crate::records::{TaskStatus, stop_tasks_of_host};

/// The ARN of a host.
pub fn host_arn(api: &Api, host: &HostRecord) -> String {
    host.arn(&api.control.arns)
}

/// What a host holds now.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub cpu: u64,
    pub memory: u64,
    pub running: u64,
    pub pending: u64,
}

/// What every host holds, by host id, from one scan of the stored tasks.
pub fn usage_by_host(api: &Api) -> Result<std::collections::HashMap<String, Usage>, ApiError> {
    let mut usage: std::collections::HashMap<String, Usage> = Default::default();
    for task in crate::records::tasks(api.control.store.as_ref())? {
        let Some(host) = &task.host else { continue };
        if task.is_stopped() {
            continue;
        }
        let (cpu, memory) = task.needs();
        let entry = usage.entry(host.clone()).or_default();
        entry.cpu += cpu;
        entry.memory += memory;
        if task.last_status == TaskStatus::Running {
            entry.running += 1;
        } else {
            entry.pending += 1;
        }
    }
    Ok(usage)
}

fn resources(cpu: u64, memory: u64) -> Value {
    json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory, "doubleValue": 0.0, "longValue": 0},
    ])
}

pub(super) fn shape(api: &Api, host: &HostRecord, usage: Usage) -> Value {
    let (cpu, memory) = (
        u64::from(host.resources.cpu_units),
        u64::from(host.resources.memory_mib),
    );
    let attributes: Vec<Value> = host
        .all_attributes()
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                json!({"name": name})
            } else {
                json!({"name": name, "value": value})
            }
        })
        .collect();
    json!({
        "containerInstanceArn": host_arn(api, host),
        "ec2InstanceId": host.id,
        "version": 1,
        "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION"), "agentHash": "wasmgate"},
        "status": host.status.as_str(),
        "agentConnected": api.control.hosts.connected(&host.id),
        "registeredAt": host.registered_at,
        "registeredResources": resources(cpu, memory),
        "remainingResources": resources(cpu.saturating_sub(usage.cpu), memory.saturating_sub(usage.memory)),
        "runningTasksCount": usage.running,
        "pendingTasksCount": usage.pending,
        "attributes": attributes,
        "capacityProviderName": capacity_provider_name(api, host),
        "wasmgateHostName": host.name,
        "wasmgateEndpoint": host.endpoint,
    })
}

/// The capacity provider a host serves: FARGATE or FARGATE_SPOT for a host of the shared
/// pool, the provider whose pool it is in for a host of a cluster (none if it is in none).
fn capacity_provider_name(api: &Api, host: &HostRecord) -> Option<String> {
    use crate::control::providers::{self, FARGATE, FARGATE_SPOT, POOL_ATTRIBUTE};
    if host.cluster.is_none() {
        let spot = host.attribute(POOL_ATTRIBUTE) == Some(FARGATE_SPOT);
        return Some(if spot { FARGATE_SPOT } else { FARGATE }.to_string());
    }
    let created = providers::created(&api.control).ok()?;
    providers::provider_of_host(&created, host)
}

/// The host an ARN or id names, if `cluster` may speak of it (its own, or a pool host).
pub(super) fn find(api: &Api, cluster: &str, given: &str) -> Result<Option<HostRecord>, ApiError> {
    let name = arn::resource_name(given, "container-instance");
    let id = name.rsplit('/').next().unwrap_or(name);
    Ok(api
        .control
        .hosts
        .record(id)?
        .filter(|host| host.cluster.is_none() || host.cluster.as_deref() == Some(cluster)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListContainerInstances {
    cluster: Option<String>,
    status: Option<String>,
    filter: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListContainerInstances = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let status = match request.status.as_deref() {
        None => None,
        Some(s @ ("ACTIVE" | "DRAINING" | "INACTIVE")) => Some(s.to_string()),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status: must be ACTIVE, DRAINING or INACTIVE (got {other})"
            )));
        }
    };
    let filter = request
        .filter
        .as_deref()
        .map(crate::control::placement::Expression::parse)
        .transpose()
        .map_err(|why| ApiError::invalid(format!("filter: {why}")))?;
    let arns: Vec<Value> = api
        .control
        .hosts
        .records()?
        .into_iter()
        .filter(|host| host.cluster.as_deref() == Some(cluster.as_str()))
        .filter(|host| match &status {
            Some(status) => host.status.as_str() == status,
            None => host.status != HostStatus::Inactive,
        })
        .filter(|host| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(&host.id, &host.all_attributes()))
        })
        .map(|host| json!(host_arn(api, &host)))
        .collect();
    let (items, next) = page(&body, arns)?;
    Ok(paged("containerInstanceArns", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeContainerInstances {
    cluster: Option<String>,
    container_instances: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeContainerInstances = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let usage = usage_by_host(api)?;
    let (mut instances, mut failures) = (Vec::new(), Vec::new());
    for given in request.container_instances {
        match find(api, &cluster, &given)? {
            Some(host) => {
                let used = usage.get(&host.id).copied().unwrap_or_default();
                let mut shape = shape(api, &host, used);
                // As ECS: tags and the health report only when asked for.
                if request.include.iter().any(|i| i == "TAGS") {
                    shape["tags"] = host.tags.clone().unwrap_or(json!([]));
                }
                if request
                    .include
                    .iter()
                    .any(|i| i == "CONTAINER_INSTANCE_HEALTH")
                {
                    shape["healthStatus"] = health(api, &host);
                }
                instances.push(shape);
            }
            None => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"containerInstances": instances, "failures": failures}))
}

/// ECS's ContainerInstanceHealthStatus: the agent's runtime is OK while it reports within
/// `--agent-timeout`, IMPAIRED once it is silent, INSUFFICIENT_DATA for an instance no agent
/// ever ran (registered through the API).
fn health(api: &Api, host: &HostRecord) -> Value {
    let status = if api.control.hosts.connected(&host.id) {
        "OK"
    } else if host.credential_sha256.is_some() || host.local {
        "IMPAIRED"
    } else {
        "INSUFFICIENT_DATA"
    };
    json!({
        "overallStatus": status,
        "details": [{"type": "CONTAINER_RUNTIME", "status": status}],
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateContainerInstancesState {
    cluster: Option<String>,
    container_instances: Vec<String>,
    status: String,
}

/// DRAINING: the host takes no new task and services move theirs off it (within their
/// deployment bounds); ACTIVE undoes it.
pub fn update_state(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateContainerInstancesState = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let status = match request.status.as_str() {
        "ACTIVE" => HostStatus::Active,
        "DRAINING" => HostStatus::Draining,
        other => {
            return Err(ApiError::invalid(format!(
                "status: must be ACTIVE or DRAINING (got {other})"
            )));
        }
    };
    let (mut instances, mut failures) = (Vec::new(), Vec::new());
    for given in &request.container_instances {
        match find(api, &cluster, given)? {
            Some(host) if host.status != HostStatus::Inactive => {
                api.control
                    .hosts
                    .update_record(&host.id, |r| r.status = status)?;
            }
            Some(_) => failures.push(json!({"arn": given, "reason": "INACTIVE"})),
            None => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    let usage = usage_by_host(api)?;
    for given in &request.container_instances {
        if let Some(host) = find(api, &cluster, given)?
            && host.status == status
        {
            let used = usage.get(&host.id).copied().unwrap_or_default();
            instances.push(shape(api, &host, used));
        }
    }
    api.control.wake_scheduler();
    Ok(json!({"containerInstances": instances, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterContainerInstance {
    cluster: Option<String>,
    container_instance: String,
    #[serde(default)]
    force: bool,
}

/// Deregisters a host: its agent's credential stops working. A host that still runs tasks
/// needs `force`; its tasks are then recorded stopped, and services replace them.
pub fn deregister(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeregisterContainerInstance = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let Some(host) = find(api, &cluster, &request.container_instance)? else {
        return Err(ApiError::invalid(format!(
            "containerInstance: the referenced container instance was not found: {}",
            request.container_instance
        )));
    };
    let used = usage_by_host(api)?
        .get(&host.id)
        .copied()
        .unwrap_or_default();
    if used.running + used.pending > 0 && !request.force {
        return Err(ApiError::invalid(format!(
            "containerInstance: {} still has {} tasks; stop them first, or deregister with force",
            request.container_instance,
            used.running + used.pending
        )));
    }
    let host = api
        .control
        .hosts
        .update_record(&host.id, |r| r.status = HostStatus::Inactive)?;
    let reason = format!(
        "Task stopped because its container instance {} ({}) was deregistered",
        host.name, host.id
    );
    stop_tasks_of_host(
        api.control.store.as_ref(),
        &host.id,
        &reason,
        super::timestamp(),
    )?;
    api.control.hosts.forget(&host.id);
    api.control.wake_scheduler();
    Ok(json!({"containerInstance": shape(api, &host, Usage::default())}))
}

/// Every host's ARN with its registered and remaining (CPU units, MiB).
pub type InstanceResources = (String, (u64, u64), (u64, u64));

/// Every host's ARN with its registered and remaining (cpu, memory).
pub fn resources_by_instance(api: &Api) -> Result<Vec<InstanceResources>, ApiError> {
    let usage = usage_by_host(api)?;
    let mut out = Vec::new();
    for host in api.control.hosts.records()? {
        if host.status == HostStatus::Inactive {
            continue;
        }
        let used = usage.get(&host.id).copied().unwrap_or_default();
        let (cpu, memory) = (
            u64::from(host.resources.cpu_units),
            u64::from(host.resources.memory_mib),
        );
        out.push((
            host_arn(api, &host),
            (cpu, memory),
            (
                cpu.saturating_sub(used.cpu),
                memory.saturating_sub(used.memory),
            ),
        ));
    }
    Ok(out)
}
