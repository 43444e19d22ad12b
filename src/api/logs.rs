//! wasmgate's own actions for reading what tasks do, beside ECS's: `WasmgateV1.GetTaskLogs`
//! (a task's output after a cursor, for `wasmgate logs [-f]`) and `WasmgateV1.GetTaskStats`
//! (every running task's memory and CPU, for `wasmgate stats`). Signed and checked like every
//! ECS call, since output can hold secrets.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, parse};
use crate::logs::LogError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetTaskLogs {
    cluster: Option<String>,
    task: String,
    /// Only records after this sequence number (the `next` of the previous page).
    #[serde(default)]
    after: u64,
    /// Only this container's records.
    container: Option<String>,
}

pub fn get_task_logs(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GetTaskLogs = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let task = super::tasks::find(api, &cluster, &request.task)?;
    let store = api
        .control
        .logs
        .as_ref()
        .ok_or_else(|| ApiError::client("this server keeps no task logs"))?;
    // Read the status first: once it says STOPPED, every record is already in the file, so a
    // follower that sees `stopped` after reading has everything.
    let stopped = task.is_stopped();
    let task_id = super::tasks::task_id_of(&request.task);
    let page = match store.read(task_id, request.after) {
        Ok(page) => page,
        // A task that stopped before it ever started a container may have no file.
        Err(LogError::UnknownTask(_)) => crate::logs::LogPage {
            next: request.after,
            ..Default::default()
        },
        Err(LogError::BadTaskId(id)) => {
            return Err(ApiError::invalid(format!("task: not a task id: {id}")));
        }
        Err(error @ LogError::Io { .. }) => {
            return Err(ApiError::new(ErrorKind::ServerException, error.to_string()));
        }
    };
    let events: Vec<Value> = page
        .records
        .iter()
        .filter(|r| {
            request
                .container
                .as_deref()
                .is_none_or(|c| r.container == c)
        })
        .map(|r| {
            json!({
                "seq": r.seq,
                "timestamp": r.at,
                "container": r.container,
                "stream": r.stream,
                "message": r.message,
            })
        })
        .collect();
    Ok(json!({
        "taskArn": task.task_arn,
        "lastStatus": task.last_status.as_str(),
        "events": events,
        "next": page.next,
        "truncated": page.truncated,
        "stopped": stopped,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetTaskStats {
    cluster: Option<String>,
}

pub fn get_task_stats(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GetTaskStats = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let cluster_arn = api.control.arns.cluster(&cluster);
    let mut tasks = Vec::new();
    for task in crate::records::tasks(api.control.store.as_ref())? {
        if task.cluster_arn != cluster_arn || task.is_stopped() {
            continue;
        }
        let usage = api.control.usage.get(task.id());
        let memory_limit = task.memory.parse::<u64>().ok().map(|mib| mib << 20);
        let containers: Vec<Value> = usage
            .as_ref()
            .map(|u| u.containers())
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "memoryBytes": c.memory_bytes,
                    "memoryPeakBytes": c.memory_peak_bytes,
                    "cpuSeconds": c.cpu_seconds,
                    "cpuPercent": c.cpu_percent,
                })
            })
            .collect();
        tasks.push(json!({
            "taskArn": task.task_arn,
            "taskDefinitionArn": task.task_definition_arn,
            "lastStatus": task.last_status.as_str(),
            "memoryLimitBytes": memory_limit,
            "read": usage.as_ref().map(|u| u.read),
            "containers": containers,
        }));
    }
    Ok(json!({ "tasks": tasks }))
}
