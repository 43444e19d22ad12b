//! What tools read about running tasks: the agent's latest memory and CPU reports per task
//! (kept in memory, not in the store: they change every few seconds), API request counts and
//! latencies, and the GET endpoints that serve them: ECS-agent-style introspection
//! (`/v1/metadata`, `/v1/tasks`, `/v1/tasks/{id}/stats`) and Prometheus text at `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, ApiError, DEFAULT_CLUSTER, container_instances, timestamp};
use crate::capacity::ContainerStats;

/// Something else in the process with figures for `/metrics` (the gateway).
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text.
    fn render(&self, out: &mut String);
}

/// One report: when (epoch seconds), and each container's stats.
type Report = (f64, Vec<(String, ContainerStats)>);

/// The latest stats of each task's containers, and the report before (for CPU rates).
#[derive(Default)]
pub struct UsageBoard {
    tasks: Mutex<HashMap<String, TaskUsage>>,
}

/// A task's latest report and the one before it.
#[derive(Debug, Clone)]
pub struct TaskUsage {
    /// When the latest report was made.
    pub read: f64,
    latest: Vec<(String, ContainerStats)>,
    previous: Option<Report>,
}

/// One container's figures, as tools show them.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub name: String,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub cpu_seconds: f64,
    /// CPU time over wall time between the last two reports, in percent of one core; `None`
    /// until there are two.
    pub cpu_percent: Option<f64>,
    pub stats: ContainerStats,
    /// The container's stats in the report before the latest.
    pub previous: Option<ContainerStats>,
}

impl TaskUsage {
    pub fn containers(&self) -> Vec<ContainerUsage> {
        self.latest
            .iter()
            .map(|(name, stats)| {
                let previous = self.previous.as_ref().and_then(|(at, containers)| {
                    let (_, before) = containers.iter().find(|(n, _)| n == name)?;
                    Some((*at, *before))
                });
                let cpu_percent = previous.and_then(|(at, before)| {
                    let wall = self.read - at;
                    (wall > 0.0).then(|| {
                        let cpu = stats.cpu_time.saturating_sub(before.cpu_time).as_secs_f64();
                        100.0 * cpu / wall
                    })
                });
                ContainerUsage {
                    name: name.clone(),
                    memory_bytes: stats.memory_bytes,
                    memory_peak_bytes: stats.memory_peak_bytes,
                    cpu_seconds: stats.cpu_time.as_secs_f64(),
                    cpu_percent,
                    stats: *stats,
                    previous: previous.map(|(_, before)| before),
                }
            })
            .collect()
    }
}

impl UsageBoard {
    pub fn update(&self, task_id: &str, containers: Vec<(String, ContainerStats)>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let now = timestamp();
        let previous = tasks
            .remove(task_id)
            .map(|usage| (usage.read, usage.latest));
        tasks.insert(
            task_id.to_string(),
            TaskUsage {
                read: now,
                latest: containers,
                previous,
            },
        );
    }

    pub fn get(&self, task_id: &str) -> Option<TaskUsage> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task_id)
            .cloned()
    }

    /// Forgets a task (it was forgotten by the store).
    pub fn remove(&self, task_id: &str) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }
}

/// (action, outcome).
type ActionKey = (String, &'static str);

/// Requests per action and outcome: (count, total seconds).
#[derive(Default)]
pub struct RequestMetrics {
    by_action: Mutex<BTreeMap<ActionKey, (u64, f64)>>,
}

impl RequestMetrics {
    pub fn record(&self, action: &str, ok: bool, took: Duration) {
        let mut by_action = self.by_action.lock().unwrap_or_else(|p| p.into_inner());
        let entry = by_action
            .entry((action.to_string(), if ok { "ok" } else { "error" }))
            .or_default();
        entry.0 += 1;
        entry.1 += took.as_secs_f64();
    }
}

fn stored_tasks(api: &Api) -> Result<Vec<Value>, ApiError> {
    Ok(api
        .state
        .list("tasks/")?
        .into_iter()
        .map(|(_, v)| v.value)
        .collect())
}

fn task_id(task: &Value) -> &str {
    task["taskArn"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
}

/// `GET /v1/metadata`: this controller and its own (in-process) agent's host.
pub fn metadata(api: &Api) -> Result<Value, ApiError> {
    let local = api.hosts.records()?.into_iter().find(|h| h.local);
    Ok(json!({
        "Cluster": DEFAULT_CLUSTER,
        "ContainerInstanceArn": local.as_ref().map(|h| container_instances::host_arn(api, h)),
        "Version": format!("wasmgate {}", env!("CARGO_PKG_VERSION")),
    }))
}

/// `GET /v1/tasks`: the tasks that have not stopped, on every host, with the host each runs on.
pub fn tasks(api: &Api) -> Result<Value, ApiError> {
    let names: std::collections::HashMap<String, String> = api
        .hosts
        .records()?
        .into_iter()
        .map(|h| (h.id, h.name))
        .collect();
    let tasks: Vec<Value> = stored_tasks(api)?
        .into_iter()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .map(|t| {
            let containers: Vec<Value> = t["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"Name": c["name"], "DockerId": format!("{}-{}", task_id(&t), c["name"].as_str().unwrap_or_default())}))
                .collect();
            let host = crate::records::host_of(&t).unwrap_or_default();
            json!({
                "Arn": t["taskArn"],
                "DesiredStatus": t["desiredStatus"],
                "KnownStatus": t["lastStatus"],
                "Family": t["taskDefinitionArn"].as_str().and_then(|a| a.rsplit('/').next()).and_then(|f| f.split(':').next()),
                "LaunchType": t["launchType"],
                "HostId": host,
                "HostName": names.get(host),
                "Containers": containers,
            })
        })
        .collect();
    Ok(json!({"Tasks": tasks}))
}

/// `GET /v1/hosts`: every host that has not been deregistered, pool and cluster alike.
pub fn hosts(api: &Api) -> Result<Value, ApiError> {
    let usage = container_instances::usage_by_host(api)?;
    let hosts: Vec<Value> = api
        .hosts
        .records()?
        .into_iter()
        .filter(|h| h.status != crate::controller::hosts::HostStatus::Inactive)
        .map(|h| {
            let used = usage.get(&h.id).copied().unwrap_or_default();
            json!({
                "Id": h.id,
                "Name": h.name,
                "Arn": container_instances::host_arn(api, &h),
                "Cluster": h.cluster,
                "Status": h.status.as_str(),
                "AgentConnected": api.hosts.connected(&h.id),
                "Local": h.local,
                "Endpoint": h.endpoint,
                "Address": h.address,
                "CpuUnits": h.resources.cpu_units,
                "MemoryMiB": h.resources.memory_mib,
                "CpuUnitsRemaining": u64::from(h.resources.cpu_units).saturating_sub(used.cpu),
                "MemoryMiBRemaining": u64::from(h.resources.memory_mib).saturating_sub(used.memory),
                "RunningTasks": used.running,
                "PendingTasks": used.pending,
                "Attributes": h.attributes,
            })
        })
        .collect();
    Ok(json!({"Hosts": hosts}))
}

/// `GET /v1/tasks/{id}/stats`: per container, in Docker's stats shape (as the ECS task metadata
/// endpoint serves it).
pub fn task_stats(api: &Api, id: &str) -> Result<Option<Value>, ApiError> {
    let Some(found) = api.state.get(&format!("tasks/{id}"))? else {
        return Ok(None);
    };
    let limit = found.value["memory"]
        .as_str()
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(0)
        << 20;
    let usage = api.usage.get(id);
    let read = usage.as_ref().map_or_else(timestamp, |u| u.read);
    let mut stats = serde_json::Map::new();
    for container in usage.map(|u| u.containers()).unwrap_or_default() {
        let mut shape = json!({
            "read": read,
            "memory_stats": {"usage": container.memory_bytes, "max_usage": container.memory_peak_bytes, "limit": limit},
            "cpu_stats": {"cpu_usage": {"total_usage": container.stats.cpu_time.as_nanos() as u64}},
        });
        if let Some(before) = container.previous {
            shape["precpu_stats"] =
                json!({"cpu_usage": {"total_usage": before.cpu_time.as_nanos() as u64}});
        }
        stats.insert(container.name, shape);
    }
    Ok(Some(Value::Object(stats)))
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(api: &Api) -> Result<String, ApiError> {
    let mut out = String::new();
    let tasks = stored_tasks(api)?;
    out.push_str("# HELP wasmgate_task_memory_bytes Memory a container holds now (Wasm: linear memories and tables).\n# TYPE wasmgate_task_memory_bytes gauge\n");
    let mut peak = String::from(
        "# HELP wasmgate_task_memory_peak_bytes The most memory a container has held.\n# TYPE wasmgate_task_memory_peak_bytes gauge\n",
    );
    let mut cpu = String::from(
        "# HELP wasmgate_task_cpu_seconds_total CPU time spent running a container.\n# TYPE wasmgate_task_cpu_seconds_total counter\n",
    );
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for task in &tasks {
        *by_status
            .entry(task["lastStatus"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        if task["lastStatus"] == "STOPPED" {
            continue;
        }
        let id = task_id(task);
        let family = task["taskDefinitionArn"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or_default();
        for usage in api
            .usage
            .get(id)
            .map(|u| u.containers())
            .unwrap_or_default()
        {
            let name = usage.name;
            let labels = format!(
                "task_id=\"{id}\",task_definition=\"{}\",container=\"{}\"",
                label(family),
                label(&name)
            );
            let _ = writeln!(
                out,
                "wasmgate_task_memory_bytes{{{labels}}} {}",
                usage.memory_bytes
            );
            let _ = writeln!(
                peak,
                "wasmgate_task_memory_peak_bytes{{{labels}}} {}",
                usage.memory_peak_bytes
            );
            let _ = writeln!(
                cpu,
                "wasmgate_task_cpu_seconds_total{{{labels}}} {:.6}",
                usage.cpu_seconds
            );
        }
    }
    out.push_str(&peak);
    out.push_str(&cpu);
    out.push_str("# HELP wasmgate_tasks Tasks by lastStatus.\n# TYPE wasmgate_tasks gauge\n");
    for (status, count) in by_status {
        let _ = writeln!(out, "wasmgate_tasks{{status=\"{status}\"}} {count}");
    }
    let resources = container_instances::resources_by_instance(api)?;
    out.push_str("# HELP wasmgate_instance_cpu_units CPU units of a container instance.\n# TYPE wasmgate_instance_cpu_units gauge\n");
    for (arn, registered, remaining) in &resources {
        let _ = writeln!(
            out,
            "wasmgate_instance_cpu_units{{instance=\"{arn}\",kind=\"registered\"}} {}",
            registered.0
        );
        let _ = writeln!(
            out,
            "wasmgate_instance_cpu_units{{instance=\"{arn}\",kind=\"remaining\"}} {}",
            remaining.0
        );
    }
    out.push_str("# HELP wasmgate_instance_memory_mib Memory (MiB) of a container instance.\n# TYPE wasmgate_instance_memory_mib gauge\n");
    for (arn, registered, remaining) in &resources {
        let _ = writeln!(
            out,
            "wasmgate_instance_memory_mib{{instance=\"{arn}\",kind=\"registered\"}} {}",
            registered.1
        );
        let _ = writeln!(
            out,
            "wasmgate_instance_memory_mib{{instance=\"{arn}\",kind=\"remaining\"}} {}",
            remaining.1
        );
    }
    out.push_str("# HELP wasmgate_api_requests_total ECS API requests by action and outcome.\n# TYPE wasmgate_api_requests_total counter\n");
    let mut seconds = String::from(
        "# HELP wasmgate_api_request_seconds_total Time spent answering ECS API requests.\n# TYPE wasmgate_api_request_seconds_total counter\n",
    );
    for ((action, outcome), (count, total)) in api
        .requests
        .by_action
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "wasmgate_api_requests_total{{action=\"{}\",outcome=\"{outcome}\"}} {count}",
            label(action)
        );
        let _ = writeln!(
            seconds,
            "wasmgate_api_request_seconds_total{{action=\"{}\",outcome=\"{outcome}\"}} {total:.6}",
            label(action)
        );
    }
    out.push_str(&seconds);
    for source in api
        .metrics_sources
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        source.render(&mut out);
    }
    Ok(out)
}
