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
use crate::controller::hosts::{HostRecord, HostStatus};
use crate::controller::placement::{Candidate, LaunchType};
use crate::records::{host_of, is_stopped, stop_tasks_of_host};

/// The ARN of a host.
pub fn host_arn(api: &Api, host: &HostRecord) -> String {
    match &host.cluster {
        Some(cluster) => api.arns.container_instance(cluster, &host.id),
        None => api.arns.pool_container_instance(&host.id),
    }
}

/// CPU units and MiB a task record holds while it is not stopped.
pub fn needs_of(task: &Value) -> (u64, u64) {
    let number = |field: &str| {
        task[field]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    (number("cpu"), number("memory"))
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
    for (_, found) in api.state.list("tasks/")? {
        let task = &found.value;
        let Some(host) = host_of(task) else { continue };
        if is_stopped(task) {
            continue;
        }
        let (cpu, memory) = needs_of(task);
        let entry = usage.entry(host.to_string()).or_default();
        entry.cpu += cpu;
        entry.memory += memory;
        if task["lastStatus"] == "RUNNING" {
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

/// The attributes placement sees on a host: ECS's own, then the host's.
pub fn attributes_of(host: &HostRecord) -> Vec<(String, String)> {
    let mut attributes = vec![
        ("ecs.capability.wasm".to_string(), String::new()),
        ("ecs.os-type".to_string(), "linux".to_string()),
        (
            "ecs.cpu-architecture".to_string(),
            std::env::consts::ARCH.to_string(),
        ),
        (
            "ecs.availability-zone".to_string(),
            host.availability_zone().to_string(),
        ),
        ("wasmgate.host-name".to_string(), host.name.clone()),
    ];
    for (name, value) in &host.attributes {
        attributes.retain(|(n, _)| n != name);
        attributes.push((name.clone(), value.clone()));
    }
    attributes
}

fn shape(api: &Api, host: &HostRecord, usage: Usage) -> Value {
    let (cpu, memory) = (
        u64::from(host.resources.cpu_units),
        u64::from(host.resources.memory_mib),
    );
    let attributes: Vec<Value> = attributes_of(host)
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
        "agentConnected": api.hosts.connected(&host.id),
        "registeredAt": host.registered_at,
        "registeredResources": resources(cpu, memory),
        "remainingResources": resources(cpu.saturating_sub(usage.cpu), memory.saturating_sub(usage.memory)),
        "runningTasksCount": usage.running,
        "pendingTasksCount": usage.pending,
        "attributes": attributes,
        "capacityProviderName": if host.cluster.is_none() { Some("FARGATE") } else { None },
        "wasmgateHostName": host.name,
        "wasmgateEndpoint": host.endpoint,
    })
}

/// The hosts a task of `launch_type` in `cluster` may go to (ACTIVE, agent connected), with
/// what each has left and how many tasks of `group` it holds. The caller holds the placement
/// lock and records (and notes to the hosts) what it places before releasing it.
pub fn candidates(
    api: &Api,
    cluster: &str,
    launch_type: LaunchType,
    group: &str,
) -> Result<Vec<Candidate>, ApiError> {
    let mut candidates: Vec<Candidate> = api
        .hosts
        .records()?
        .into_iter()
        .filter(|host| host.status == HostStatus::Active && api.hosts.connected(&host.id))
        .filter(|host| match launch_type {
            LaunchType::Fargate => host.cluster.is_none(),
            LaunchType::Ec2 | LaunchType::External => host.cluster.as_deref() == Some(cluster),
        })
        .map(|host| Candidate {
            id: host.id.clone(),
            arn: host_arn(api, &host),
            free_cpu: u64::from(host.resources.cpu_units),
            free_memory: u64::from(host.resources.memory_mib),
            free_tasks: host.resources.max_tasks.map_or(u64::MAX, u64::from),
            group_tasks: 0,
            attributes: attributes_of(&host),
        })
        .collect();
    // What each holds comes from the hosts' in-memory view of the placed tasks (kept from the
    // store's change feed, and told at once of every task placed), not from a scan of every
    // stored task.
    let holdings = api.hosts.holdings(group);
    for candidate in &mut candidates {
        if let Some(held) = holdings.get(&candidate.id) {
            candidate.free_cpu = candidate.free_cpu.saturating_sub(held.cpu);
            candidate.free_memory = candidate.free_memory.saturating_sub(held.memory);
            candidate.free_tasks = candidate.free_tasks.saturating_sub(held.tasks);
            candidate.group_tasks = held.group_tasks;
        }
    }
    Ok(candidates)
}

/// The host an ARN or id names, if `cluster` may speak of it (its own, or a pool host).
fn find(api: &Api, cluster: &str, given: &str) -> Result<Option<HostRecord>, ApiError> {
    let name = arn::resource_name(given, "container-instance");
    let id = name.rsplit('/').next().unwrap_or(name);
    Ok(api
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
        .map(crate::controller::placement::Expression::parse)
        .transpose()
        .map_err(|why| ApiError::invalid(format!("filter: {why}")))?;
    let arns: Vec<Value> = api
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
                .is_none_or(|f| f.matches(&host.id, &attributes_of(host)))
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
                instances.push(shape(api, &host, used));
            }
            None => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"containerInstances": instances, "failures": failures}))
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
                api.hosts.update_record(&host.id, |r| r.status = status)?;
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
    api.wake_scheduler();
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
        .hosts
        .update_record(&host.id, |r| r.status = HostStatus::Inactive)?;
    let reason = format!(
        "Task stopped because its container instance {} ({}) was deregistered",
        host.name, host.id
    );
    stop_tasks_of_host(api.state.as_ref(), &host.id, &reason, super::timestamp())?;
    api.hosts.forget(&host.id);
    api.wake_scheduler();
    Ok(json!({"containerInstance": shape(api, &host, Usage::default())}))
}

/// Every host's ARN with its registered and remaining (CPU units, MiB).
pub type InstanceResources = (String, (u64, u64), (u64, u64));

/// Every host's ARN with its registered and remaining (cpu, memory).
pub fn resources_by_instance(api: &Api) -> Result<Vec<InstanceResources>, ApiError> {
    let usage = usage_by_host(api)?;
    let mut out = Vec::new();
    for host in api.hosts.records()? {
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
