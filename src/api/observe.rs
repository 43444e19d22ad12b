//! What tools read about running tasks: the agent's latest memory and CPU reports per task
//! (kept in memory, not in the store: they change every few seconds), API request counts and
//! latencies, and the GET endpoints that serve them: ECS-agent-style introspection
//! (`/v1/metadata`, `/v1/tasks`, `/v1/tasks/{id}/stats`) and Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, ApiError, DEFAULT_CLUSTER, container_instances, timestamp};

/// Something else in the process with figures for `/metrics` (the gateway).
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text.
    fn render(&self, out: &mut String);

    /// The HTTP figures of service `cluster/name`, for `WasmgateV1.GetHttpRoutes`; `None`
    /// from a source that keeps none for it.
    fn http_figures(&self, _service: &str) -> Option<HttpFigures> {
        None
    }
}

/// One service's HTTP figures since the server started (counters: a reader takes rates from
/// two readings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpFigures {
    /// Responses by status class, 1xx..5xx.
    pub responses: [u64; 5],
    /// (upper bound in seconds, requests at or below it), cumulative as Prometheus keeps them.
    pub duration_buckets: Vec<(f64, u64)>,
    pub duration_sum_seconds: f64,
    pub requests: u64,
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

/// `GET /v1/metadata`: this controller and its own (in-process) agent's host.
pub fn metadata(api: &Api) -> Result<Value, ApiError> {
    let local = api.control.hosts.records()?.into_iter().find(|h| h.local);
    Ok(json!({
        "Cluster": DEFAULT_CLUSTER,
        "ContainerInstanceArn": local.as_ref().map(|h| container_instances::host_arn(api, h)),
        "Version": format!("wasmgate {}", env!("CARGO_PKG_VERSION")),
    }))
}

/// `GET /v1/leader`: which controller replica leads (runs the scheduler) and since when, with
/// its term's fence; `leader` is null while none does (between terms).
pub fn leader(api: &Api) -> Result<Value, ApiError> {
    use crate::control::leadership::{LEADER_KEY, LeaderRecord};
    let found = api.control.store.get(LEADER_KEY)?;
    Ok(match found {
        Some(found) => {
            let record: Option<LeaderRecord> = serde_json::from_value(found.value).ok();
            json!({"leader": record, "fence": found.revision})
        }
        None => json!({"leader": null, "fence": null}),
    })
}

/// `GET /v1/tasks`: the tasks that have not stopped, on every host, with the host each runs on.
pub fn tasks(api: &Api) -> Result<Value, ApiError> {
    let names: std::collections::HashMap<String, String> = api
        .control
        .hosts
        .records()?
        .into_iter()
        .map(|h| (h.id, h.name))
        .collect();
    let tasks: Vec<Value> = crate::records::tasks(api.control.store.as_ref())?
        .into_iter()
        .filter(|t| !t.is_stopped())
        .map(|t| {
            let containers: Vec<Value> = t
                .containers
                .iter()
                .map(|c| json!({"Name": c.name, "DockerId": format!("{}-{}", t.id(), c.name)}))
                .collect();
            let host = t.host.clone().unwrap_or_default();
            json!({
                "Arn": t.task_arn,
                "DesiredStatus": t.desired_status.as_str(),
                "KnownStatus": t.last_status.as_str(),
                "Family": t.family(),
                "LaunchType": t.launch_type.as_str(),
                "HostName": names.get(&host),
                "HostId": host,
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
        .control
        .hosts
        .records()?
        .into_iter()
        .filter(|h| h.status != crate::control::hosts::HostStatus::Inactive)
        .map(|h| {
            let used = usage.get(&h.id).copied().unwrap_or_default();
            json!({
                "Id": h.id,
                "Name": h.name,
                "Arn": container_instances::host_arn(api, &h),
                "Cluster": h.cluster,
                "Status": h.status.as_str(),
                "AgentConnected": api.control.hosts.connected(&h.id),
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
    let Some(task) = crate::records::task(api.control.store.as_ref(), id)? else {
        return Ok(None);
    };

    let usage = api.control.usage.get(id);
    let read = usage.as_ref().map_or_else(timestamp, |u| u.read);
    let mut stats = serde_json::Map::new();
    for container in usage.map(|u| u.containers()).unwrap_or_default() {
        let mut shape = json!({
            "read": read,
            "memory_stats": {"usage": container.memory_bytes, "max_usage": container.memory_peak_bytes, "limit": task.memory_limit_mib(&container.name) << 20},
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
    let tasks = crate::records::tasks(api.control.store.as_ref())?;
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
            .entry(task.last_status.as_str().to_string())
            .or_default() += 1;
        if task.is_stopped() {
            continue;
        }
        let id = task.id();
        let family = task
            .task_definition_arn
            .rsplit('/')
            .next()
            .unwrap_or_default();
        for usage in api
            .control
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
