//! GetTaskProtection, UpdateTaskProtection: scale-in protection of a service's tasks. The
//! protection is an expiry time on the task record (`wasmgateProtectedUntil`); the scheduler's
//! plan leaves a protected task alone in scale-ins and deployments until then. StopTask still
//! stops it, as in ECS.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Api, ApiError, clusters, parse, timestamp};
use crate::records::{TaskRecord, task_id_of_arn};

/// ECS's default protection, and its bounds (minutes).
const DEFAULT_MINUTES: u32 = 120;
const MAX_MINUTES: u32 = 2880;
/// Tasks per call.
const MAX_TASKS: usize = 10;

fn shape(task: &TaskRecord, now: f64) -> Value {
    match task.protected_until.filter(|until| *until > now) {
        Some(until) => {
            json!({"taskArn": task.task_arn, "protectionEnabled": true, "expirationDate": until})
        }
        None => json!({"taskArn": task.task_arn, "protectionEnabled": false}),
    }
}

/// The task `given` (id or ARN) of `cluster`, or the failure ECS gives for it.
fn task_of(api: &Api, cluster: &str, given: &str) -> Result<Result<TaskRecord, Value>, ApiError> {
    let arn = if given.starts_with("arn:") {
        given.to_string()
    } else {
        api.control.arns.task(cluster, given)
    };
    let cluster_arn = api.control.arns.cluster(cluster);
    let task = crate::records::task(api.control.store.as_ref(), task_id_of_arn(given))?;
    Ok(match task {
        Some(task) if task.cluster_arn == cluster_arn => {
            if task.service_name().is_none() {
                Err(json!({"arn": arn, "reason": "TASK_NOT_VALID",
                           "detail": "The task is not part of a service."}))
            } else if task.is_stopped() {
                Err(json!({"arn": arn, "reason": "TASK_NOT_VALID",
                           "detail": "The task has stopped."}))
            } else {
                Ok(task)
            }
        }
        _ => Err(json!({"arn": arn, "reason": "MISSING"})),
    })
}

fn check_count(tasks: &[String]) -> Result<(), ApiError> {
    if tasks.len() > MAX_TASKS {
        return Err(ApiError::invalid(format!(
            "tasks: at most {MAX_TASKS} per call (got {})",
            tasks.len()
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetTaskProtection {
    cluster: String,
    tasks: Option<Vec<String>>,
}

/// Without `tasks`, every service task of the cluster that has not stopped.
pub fn get(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GetTaskProtection = parse(body)?;
    let cluster = clusters::require_active(api, Some(&request.cluster))?;
    let now = timestamp();
    let (mut protected, mut failures) = (Vec::new(), Vec::new());
    match request.tasks {
        Some(tasks) => {
            check_count(&tasks)?;
            for given in &tasks {
                match task_of(api, &cluster, given)? {
                    Ok(task) => protected.push(shape(&task, now)),
                    Err(failure) => failures.push(failure),
                }
            }
        }
        None => {
            let cluster_arn = api.control.arns.cluster(&cluster);
            for task in crate::records::tasks(api.control.store.as_ref())? {
                if task.cluster_arn == cluster_arn
                    && task.service_name().is_some()
                    && !task.is_stopped()
                {
                    protected.push(shape(&task, now));
                }
            }
        }
    }
    Ok(json!({"protectedTasks": protected, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateTaskProtection {
    cluster: String,
    tasks: Vec<String>,
    protection_enabled: bool,
    expires_in_minutes: Option<u32>,
}

/// Sets (or clears) each task's protection; `expiresInMinutes` is counted from now every
/// time, so calling again extends it, as in ECS.
pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateTaskProtection = parse(body)?;
    let cluster = clusters::require_active(api, Some(&request.cluster))?;
    check_count(&request.tasks)?;
    let minutes = request.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::invalid(format!(
            "expiresInMinutes: must be 1 to {MAX_MINUTES} (got {minutes})"
        )));
    }
    let now = timestamp();
    let until = request
        .protection_enabled
        .then(|| now + f64::from(minutes) * 60.0);
    let (mut protected, mut failures) = (Vec::new(), Vec::new());
    for given in &request.tasks {
        let task = match task_of(api, &cluster, given)? {
            Ok(task) => task,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        let updated = crate::records::update_task(api.control.store.as_ref(), task.id(), |task| {
            if task.protected_until == until {
                return false;
            }
            task.protected_until = until;
            true
        })?;
        match updated {
            Some(task) => protected.push(shape(&task, now)),
            None => failures.push(json!({"arn": task.task_arn, "reason": "MISSING"})),
        }
    }
    // A protection that ended early frees tasks the scheduler was holding back.
    api.control.wake_scheduler();
    Ok(json!({"protectedTasks": protected, "failures": failures}))
}
