//! Container instances (capacity hosts): registration, ListContainerInstances,
//! DescribeContainerInstances, and placement by remaining CPU and memory.
//!
//! What remains on an instance is computed from the tasks placed on it that have not stopped,
//! never kept as a running counter, so a crash or a lost report cannot leak capacity.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, arn, clusters, page, paged, parse, timestamp};
use crate::agent::HostResources;
use crate::controller::placement::Candidate;
use crate::store::Expect;

fn key(cluster: &str, id: &str) -> String {
    format!("container-instances/{cluster}/{id}")
}

/// The key remembering this server's own instance id across restarts.
const SELF_KEY: &str = "agent/self";

/// Registers this host's agent in `cluster` (once per data directory; a restart re-registers
/// the same instance with fresh resources). Returns the instance id.
pub fn register(api: &Api, cluster: &str, resources: HostResources) -> Result<String, ApiError> {
    let id = match api.state.get(SELF_KEY)? {
        Some(found) => found.value["id"].as_str().unwrap_or_default().to_string(),
        None => {
            let id = crate::agent::new_task_id();
            api.state
                .put(SELF_KEY, &json!({"id": id}), Expect::Absent)?;
            id
        }
    };
    let record = json!({
        "id": id,
        "cluster": cluster,
        "status": "ACTIVE",
        "agentConnected": true,
        "registeredAt": timestamp(),
        "cpu": resources.cpu_units,
        "memory": resources.memory_mib,
    });
    api.state.put(&key(cluster, &id), &record, Expect::Any)?;
    Ok(id)
}

/// The ARN of this server's own instance, once its agent registered.
pub fn self_arn(api: &Api) -> Result<Option<String>, ApiError> {
    Ok(api.state.get(SELF_KEY)?.and_then(|found| {
        let id = found.value["id"].as_str()?.to_string();
        let cluster = found.value["cluster"]
            .as_str()
            .unwrap_or(super::DEFAULT_CLUSTER)
            .to_string();
        Some(api.arns.container_instance(&cluster, &id))
    }))
}

/// Whether the agent was heard from recently (three report intervals).
fn agent_connected(api: &Api) -> bool {
    let last = *api.heartbeat.lock().unwrap_or_else(|p| p.into_inner());
    last.is_some_and(|at| timestamp() - at < 3.0 * crate::agent::STATS_EVERY.as_secs_f64())
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

/// (registered cpu, registered memory, remaining cpu, remaining memory, running, pending).
fn usage(api: &Api, record: &Value) -> Result<(u64, u64, u64, u64, u64, u64), ApiError> {
    let arn = api.arns.container_instance(
        record["cluster"].as_str().unwrap_or_default(),
        record["id"].as_str().unwrap_or_default(),
    );
    let (cpu, memory) = (
        record["cpu"].as_u64().unwrap_or(0),
        record["memory"].as_u64().unwrap_or(0),
    );
    let (mut used_cpu, mut used_memory, mut running, mut pending) = (0, 0, 0, 0);
    for (_, task) in api.state.list("tasks/")? {
        let task = task.value;
        if task["containerInstanceArn"] != arn.as_str() || task["lastStatus"] == "STOPPED" {
            continue;
        }
        let (c, m) = needs_of(&task);
        used_cpu += c;
        used_memory += m;
        if task["lastStatus"] == "RUNNING" {
            running += 1
        } else {
            pending += 1
        }
    }
    Ok((
        cpu,
        memory,
        cpu.saturating_sub(used_cpu),
        memory.saturating_sub(used_memory),
        running,
        pending,
    ))
}

fn resources(cpu: u64, memory: u64) -> Value {
    json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory, "doubleValue": 0.0, "longValue": 0},
    ])
}

fn shape(api: &Api, record: &Value) -> Result<Value, ApiError> {
    let (cpu, memory, free_cpu, free_memory, running, pending) = usage(api, record)?;
    Ok(json!({
        "containerInstanceArn": api.arns.container_instance(record["cluster"].as_str().unwrap_or_default(), record["id"].as_str().unwrap_or_default()),
        "ec2InstanceId": record["id"],
        "version": 1,
        "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION"), "agentHash": "wasmgate"},
        "status": record["status"],
        "agentConnected": agent_connected(api),
        "registeredAt": record["registeredAt"],
        "registeredResources": resources(cpu, memory),
        "remainingResources": resources(free_cpu, free_memory),
        "runningTasksCount": running,
        "pendingTasksCount": pending,
        "attributes": [{"name": "ecs.capability.wasm"}, {"name": "ecs.os-type", "value": "linux"}],
    }))
}

/// Every ACTIVE instance of `cluster` with what it has left and how many tasks of `group` it
/// holds, from one scan of the stored tasks. The caller holds the placement lock and records
/// what it places before releasing it.
pub fn candidates(api: &Api, cluster: &str, group: &str) -> Result<Vec<Candidate>, ApiError> {
    let mut candidates: Vec<Candidate> = api
        .state
        .list(&format!("container-instances/{cluster}/"))?
        .into_iter()
        .filter(|(_, found)| found.value["status"] == "ACTIVE")
        .map(|(_, found)| Candidate {
            arn: api
                .arns
                .container_instance(cluster, found.value["id"].as_str().unwrap_or_default()),
            free_cpu: found.value["cpu"].as_u64().unwrap_or(0),
            free_memory: found.value["memory"].as_u64().unwrap_or(0),
            group_tasks: 0,
        })
        .collect();
    for (_, found) in api.state.list("tasks/")? {
        let task = found.value;
        if task["lastStatus"] == "STOPPED" {
            continue;
        }
        let Some(candidate) = candidates
            .iter_mut()
            .find(|c| task["containerInstanceArn"] == c.arn.as_str())
        else {
            continue;
        };
        let (cpu, memory) = needs_of(&task);
        candidate.free_cpu = candidate.free_cpu.saturating_sub(cpu);
        candidate.free_memory = candidate.free_memory.saturating_sub(memory);
        if task["group"] == group {
            candidate.group_tasks += 1;
        }
    }
    Ok(candidates)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListContainerInstances {
    cluster: Option<String>,
    status: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListContainerInstances = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let status = request.status.unwrap_or_else(|| "ACTIVE".into());
    let arns: Vec<Value> = api
        .state
        .list(&format!("container-instances/{cluster}/"))?
        .into_iter()
        .filter(|(_, v)| v.value["status"] == status.as_str())
        .map(|(_, v)| {
            json!(
                api.arns
                    .container_instance(&cluster, v.value["id"].as_str().unwrap_or_default())
            )
        })
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
    let (mut instances, mut failures) = (Vec::new(), Vec::new());
    for given in request.container_instances {
        let name = arn::resource_name(&given, "container-instance");
        let id = name.rsplit('/').next().unwrap_or(name);
        match api.state.get(&key(&cluster, id))? {
            Some(found) => instances.push(shape(api, &found.value)?),
            None => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"containerInstances": instances, "failures": failures}))
}

/// An instance's ARN with its registered and remaining (CPU units, MiB).
pub type InstanceResources = (String, (u64, u64), (u64, u64));

/// Every instance's ARN with its registered and remaining (cpu, memory).
pub fn resources_by_instance(api: &Api) -> Result<Vec<InstanceResources>, ApiError> {
    let mut out = Vec::new();
    for (_, found) in api.state.list("container-instances/")? {
        let record = found.value;
        let (cpu, memory, free_cpu, free_memory, _, _) = usage(api, &record)?;
        let arn = api.arns.container_instance(
            record["cluster"].as_str().unwrap_or_default(),
            record["id"].as_str().unwrap_or_default(),
        );
        out.push((arn, (cpu, memory), (free_cpu, free_memory)));
    }
    Ok(out)
}
