//! The control plane's task records as the API and the controller both change them: one
//! compare-and-swap update helper, and the few facts about a stored task that more than one
//! module reads (where it runs, whether it is done).
//!
//! Architecture invariant: every change of a stored task goes through [`update_task`], which
//! re-reads and retries on a concurrent write, so no writer ever overwrites another's change.

use serde_json::{Value, json};

use crate::store::{Expect, Store, StoreError};

/// The store key of a task.
pub fn task_key(task_id: &str) -> String {
    format!("tasks/{task_id}")
}

/// The id of the host a stored task was placed on (wasmgate's own member).
pub fn host_of(task: &Value) -> Option<&str> {
    task["wasmgateHost"].as_str()
}

/// Whether a stored task has stopped for good.
pub fn is_stopped(task: &Value) -> bool {
    task["lastStatus"] == "STOPPED"
}

/// The task id at the end of a task ARN.
pub fn task_id_of_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Applies `change` to the stored task `task_id` and writes it if `change` says it changed
/// something, retrying on a concurrent write. Returns the task as written (or as found when
/// unchanged); `None` when there is no such task.
pub fn update_task(
    store: &dyn Store,
    task_id: &str,
    mut change: impl FnMut(&mut Value) -> bool,
) -> Result<Option<Value>, StoreError> {
    let key = task_key(task_id);
    loop {
        let Some(found) = store.get(&key)? else {
            return Ok(None);
        };
        let mut task = found.value;
        if !change(&mut task) {
            return Ok(Some(task));
        }
        task["version"] = json!(task["version"].as_u64().unwrap_or(0) + 1);
        match store.put(&key, &task, Expect::Revision(found.revision)) {
            Ok(_) => return Ok(Some(task)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
}

/// Marks a task whose host lost it as STOPPED with `reason` (not a failure of the task: its
/// host went away, so a service replaces it at full speed). Returns false if it had stopped.
pub fn stop_as_lost(task: &mut Value, reason: &str, now: f64) -> bool {
    if is_stopped(task) {
        return false;
    }
    task["lastStatus"] = json!("STOPPED");
    task["desiredStatus"] = json!("STOPPED");
    task["stoppedAt"] = json!(now);
    if task["executionStoppedAt"].is_null() {
        task["executionStoppedAt"] = json!(now);
    }
    if task["stoppingAt"].is_null() {
        task["stoppingAt"] = json!(now);
    }
    task["stopCode"] = json!("TerminationNotice");
    task["stoppedReason"] = json!(reason);
    if let Some(containers) = task["containers"].as_array_mut() {
        for container in containers {
            container["lastStatus"] = json!("STOPPED");
        }
    }
    true
}

/// Records every task on `host_id` that has not stopped as lost, with `reason`. Returns how
/// many it stopped.
pub fn stop_tasks_of_host(
    store: &dyn Store,
    host_id: &str,
    reason: &str,
    now: f64,
) -> Result<usize, StoreError> {
    let mut stopped = 0;
    for (key, found) in store.list("tasks/")? {
        if host_of(&found.value) != Some(host_id) || is_stopped(&found.value) {
            continue;
        }
        let task_id = key.trim_start_matches("tasks/");
        let mut changed = false;
        update_task(store, task_id, |task| {
            changed = host_of(task) == Some(host_id) && stop_as_lost(task, reason, now);
            changed
        })?;
        if changed {
            stopped += 1;
        }
    }
    Ok(stopped)
}
