//! The control plane's typed records, as the ECS handlers, the scheduler and the hosts' view
//! all read and change them: tasks ([`TaskRecord`]), services ([`Service`]) and hosts
//! (`control::hosts::HostRecord`), each with its statuses as enums, stored as JSON under
//! `tasks/ID`, `services/CLUSTER/NAME` and `hosts/ID`.
//!
//! Architecture invariant: every change of a stored record goes through [`update`] (or
//! [`update_task`]), which re-reads and retries on a concurrent write, so no writer ever
//! overwrites another's change; a stored value that is not a record of its kind is an error
//! naming its key, never a panic.

pub mod daemon;
pub mod service;
pub mod task;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use service::Service;
pub use task::{
    ContainerRecord, ContainerStatus, DesiredStatus, HealthStatus, LaunchType, StopCode,
    TaskMicros, TaskRecord, TaskStatus,
};

use crate::store::{Expect, Json, Store, StoreError, Txn};

/// Now, as ECS timestamps go on the wire: epoch seconds (millisecond resolution).
pub fn timestamp() -> f64 {
    seconds(std::time::SystemTime::now())
}

/// `at` as ECS timestamps go on the wire: epoch seconds (millisecond resolution).
pub fn seconds(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or_default()
}

/// `at` in epoch microseconds, as wasmgate's own timestamps (`wasmgateMicros`) keep it.
pub fn micros(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The store key of a task.
pub fn task_key(task_id: &str) -> String {
    format!("tasks/{task_id}")
}

/// The prefix of every task key.
pub const TASKS: &str = "tasks/";

/// The task id at the end of a task ARN.
pub fn task_id_of_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A stored value that is not the record its key says.
fn corrupt(key: &str, error: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("{key}: not a record of its kind: {error}"))
}

/// Reads the record under `key` with its revision.
pub fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    match store.get(key)? {
        None => Ok(None),
        Some(found) => {
            let record = serde_json::from_value(found.value).map_err(|e| corrupt(key, e))?;
            Ok(Some((record, found.revision)))
        }
    }
}

/// Every record under `prefix`, in key order. One that does not parse is logged and skipped,
/// so one bad value cannot stop every listing.
pub fn list<T: DeserializeOwned>(store: &dyn Store, prefix: &str) -> Result<Vec<T>, StoreError> {
    Ok(store
        .list(prefix)?
        .into_iter()
        .filter_map(
            |(key, found)| match serde_json::from_value::<T>(found.value) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(%key, %error, "a stored value is not a record of its kind");
                    None
                }
            },
        )
        .collect())
}

/// Writes a new record under `key`; fails with a conflict if the key exists.
pub fn create<T: Serialize>(store: &dyn Store, key: &str, record: &T) -> Result<u64, StoreError> {
    let value = Json::of(record).map_err(|e| corrupt(key, e))?;
    store.commit(&Txn::new().when(key, Expect::Absent).put(key, value))
}

/// Writes `record` under `key` if the key is still at `revision`.
pub fn put<T: Serialize>(
    store: &dyn Store,
    key: &str,
    record: &T,
    revision: u64,
) -> Result<u64, StoreError> {
    let value = Json::of(record).map_err(|e| corrupt(key, e))?;
    store.commit(
        &Txn::new()
            .when(key, Expect::Revision(revision))
            .put(key, value),
    )
}

/// Applies `change` to the record under `key` and writes it if `change` says it changed
/// something, retrying on a concurrent write. Returns the record as written (or as found when
/// unchanged); `None` when there is no such record.
pub fn update<T: Serialize + DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    change: impl FnMut(&mut T) -> bool,
) -> Result<Option<T>, StoreError> {
    update_guarded(store, key, &[], change)
}

/// [`update`], written only while every key of `guard` is as expected (the service record a
/// scheduler pass decided on): a guard that no longer holds is a [`StoreError::Conflict`]
/// naming it, not retried, since the decision itself is stale.
pub fn update_guarded<T: Serialize + DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    guard: &[(String, Expect)],
    mut change: impl FnMut(&mut T) -> bool,
) -> Result<Option<T>, StoreError> {
    loop {
        let Some((mut record, revision)) = get::<T>(store, key)? else {
            return Ok(None);
        };
        if !change(&mut record) {
            return Ok(Some(record));
        }
        let value = Json::of(&record).map_err(|e| corrupt(key, e))?;
        let txn = Txn {
            conditions: guard.to_vec(),
            ops: Vec::new(),
        }
        .when(key, Expect::Revision(revision))
        .put(key, value);
        match store.commit(&txn) {
            Ok(_) => return Ok(Some(record)),
            Err(StoreError::Conflict { key: failed, .. }) if failed == key => continue,
            Err(other) => return Err(other),
        }
    }
}

/// [`update`] for a task: its `version` goes up by one with every change written.
pub fn update_task(
    store: &dyn Store,
    task_id: &str,
    change: impl FnMut(&mut TaskRecord) -> bool,
) -> Result<Option<TaskRecord>, StoreError> {
    update_task_guarded(store, task_id, &[], change)
}

/// [`update_task`] under a guard, as [`update_guarded`].
pub fn update_task_guarded(
    store: &dyn Store,
    task_id: &str,
    guard: &[(String, Expect)],
    mut change: impl FnMut(&mut TaskRecord) -> bool,
) -> Result<Option<TaskRecord>, StoreError> {
    update_guarded(store, &task_key(task_id), guard, |task: &mut TaskRecord| {
        let changed = change(task);
        if changed {
            task.version += 1;
        }
        changed
    })
}

/// Every stored task.
pub fn tasks(store: &dyn Store) -> Result<Vec<TaskRecord>, StoreError> {
    list(store, TASKS)
}

/// The stored task `task_id`.
pub fn task(store: &dyn Store, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
    Ok(get(store, &task_key(task_id))?.map(|(task, _)| task))
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
    for task in tasks(store)? {
        if task.host.as_deref() != Some(host_id) || task.is_stopped() {
            continue;
        }
        let mut changed = false;
        update_task(store, task.id(), |task| {
            changed = task.host.as_deref() == Some(host_id) && task.stop_as_lost(reason, now);
            changed
        })?;
        if changed {
            stopped += 1;
        }
    }
    Ok(stopped)
}
