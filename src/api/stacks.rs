//! wasmgate's own actions for stacks (declarative provisioning): `WasmgateV1.DeployStack`
//! (the change set and, unless `dryRun`, the deploy), `WasmgateV1.DescribeStack`,
//! `WasmgateV1.ListStacks`, `WasmgateV1.DeleteStack`. A stack is a record under
//! `stacks/NAME`; the deploy engine (`crate::deploy::stack`) calls ECS operations through
//! `Api::call`, so a stack's resources are made exactly as an ECS client would make them.
//! One deploy or delete per stack at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, parse};
use crate::deploy::stack::{
    self, DeployError, Ecs, Neighbours, StackEvent, StackRecord, StackStatus, Target,
};
use crate::store::{Expect, Store, StoreError, Txn};

fn key(name: &str) -> String {
    format!("stacks/{name}")
}

impl Ecs for Api {
    fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        Api::call(self, action, body)
    }

    /// Sleeps off the async runtime's worker when it can, so the agent and the scheduler
    /// (which stop the tasks a delete waits for) keep running.
    fn pause(&self) {
        let wait = || std::thread::sleep(std::time::Duration::from_millis(250));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

/// The stacks a deploy or delete is changing now (one at a time per stack), with the steps
/// it has reported so far, which DescribeStack shows while it runs.
#[derive(Default)]
pub(crate) struct StackLocks(std::sync::Mutex<BTreeMap<String, Vec<StackEvent>>>);

/// Where a deploy or delete claims its stack in the store, for every replica to see.
const CLAIMS: &str = "stack-claims/";

/// How long a claim outlives a replica that died holding it.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(10);

fn in_progress(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::UpdateInProgressException,
        format!("stack {name}: another deploy or delete of it is in progress"),
    )
}

impl StackLocks {
    /// Takes `name`, or refuses while another deploy or delete holds it: here, or through
    /// another controller sharing `store` (a claim under a lease, renewed while it runs).
    fn take(&self, store: &Arc<dyn Store>, name: &str) -> Result<StackLock<'_>, ApiError> {
        {
            let mut busy = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if busy.insert(name.to_string(), Vec::new()).is_some() {
                return Err(in_progress(name));
            }
        }
        let mut lock = StackLock {
            locks: self,
            name: name.to_string(),
            claim: None,
        };
        lock.claim = Some(Claim::take(store.clone(), name)?);
        Ok(lock)
    }
}

/// A stack claimed in the store: the lease is renewed by a thread of its own until dropped.
struct Claim {
    store: Arc<dyn Store>,
    lease: crate::store::LeaseId,
    stop: Option<std::sync::mpsc::Sender<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

impl Claim {
    fn take(store: Arc<dyn Store>, name: &str) -> Result<Self, ApiError> {
        let key = format!("{CLAIMS}{name}");
        let lease = store.grant_lease(CLAIM_TTL)?;
        let txn = Txn::new()
            .when(key.as_str(), Expect::Absent)
            .put_with_lease(
                key.as_str(),
                json!({"since": crate::records::timestamp()}),
                lease,
            );
        match store.commit(&txn) {
            Ok(_) => {}
            Err(error) => {
                let _ = store.revoke_lease(lease);
                return Err(match error {
                    StoreError::Conflict { .. } => in_progress(name),
                    other => other.into(),
                });
            }
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewing = store.clone();
        let keeper = std::thread::Builder::new()
            .name("stack-claim".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(crate::store::renew_every(CLAIM_TTL))
                {
                    if let Err(error) = renewing.keep_alive(lease) {
                        tracing::warn!(%error, "cannot renew a stack's claim");
                    }
                }
            })
            .map_err(|e| ApiError::new(ErrorKind::ServerException, e.to_string()))?;
        Ok(Self {
            store,
            lease,
            stop: Some(stop),
            keeper: Some(keeper),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        if let Err(error) = self.store.revoke_lease(self.lease) {
            tracing::warn!(%error, "cannot release a stack's claim; it lapses with its lease");
        }
    }
}

impl StackLocks {
    /// The steps reported so far by the deploy or delete of `name` running now.
    fn progress(&self, name: &str) -> Option<Vec<StackEvent>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// A stack's name held in the [`StackLocks`]; dropped, frees it.
struct StackLock<'a> {
    locks: &'a StackLocks,
    name: String,
    /// Released before the in-process lock.
    claim: Option<Claim>,
}

impl StackLock<'_> {
    fn report(&self, event: &StackEvent) {
        if let Some(events) = self
            .locks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&self.name)
        {
            events.push(event.clone());
        }
    }
}

/// The ECS the engine calls while it changes one stack: the API, with each step reported
/// into the stack's progress.
struct Changing<'a> {
    api: &'a Api,
    lock: &'a StackLock<'a>,
}

impl Ecs for Changing<'_> {
    fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        Ecs::call(self.api, action, body)
    }

    fn pause(&self) {
        Ecs::pause(self.api)
    }

    fn progress(&self, event: &StackEvent) {
        self.lock.report(event);
    }
}

impl Drop for StackLock<'_> {
    fn drop(&mut self) {
        drop(self.claim.take());
        self.locks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "stackName: {name:?}: a letter, then letters, digits and hyphens, at most 128"
        )))
    }
}

fn load(api: &Api, name: &str) -> Result<Option<StackRecord>, ApiError> {
    let Some(found) = api.control.store.get(&key(name))? else {
        return Ok(None);
    };
    serde_json::from_value(found.value)
        .map(Some)
        .map_err(|e| ApiError::new(ErrorKind::ServerException, format!("stack {name}: {e}")))
}

fn save(api: &Api, record: &StackRecord) -> Result<(), ApiError> {
    let value = serde_json::to_value(record)
        .map_err(|e| ApiError::new(ErrorKind::ServerException, e.to_string()))?;
    api.control
        .store
        .put(&key(&record.stack_name), &value, Expect::Any)?;
    Ok(())
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFoundException,
        format!("stack {name} does not exist"),
    )
}

fn target(api: &Api, name: &str) -> Result<Target, ApiError> {
    Ok(Target {
        stack_name: name.to_string(),
        region: api.control.arns.region.clone(),
        account: api.control.arns.account.clone(),
        neighbours: Neighbours::of(&load_all(api)?, name),
    })
}

/// Every stack's record.
fn load_all(api: &Api) -> Result<Vec<StackRecord>, ApiError> {
    api.control
        .store
        .list("stacks/")?
        .into_iter()
        .map(|(name, found)| {
            serde_json::from_value(found.value)
                .map_err(|e| ApiError::new(ErrorKind::ServerException, format!("{name}: {e}")))
        })
        .collect()
}

fn invalid(error: DeployError) -> ApiError {
    ApiError::invalid(error.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployStack {
    stack_name: String,
    /// The template as JSON, or as the text of a JSON document.
    template: Value,
    /// Parameter values: strings, or numbers and booleans (taken as their text).
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    #[serde(default)]
    dry_run: bool,
}

pub fn deploy(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeployStack = parse(body)?;
    check_name(&request.stack_name)?;
    let template = match request.template {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::invalid(format!("template: not JSON: {e}")))?,
        other => other,
    };
    let parameters = request
        .parameters
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            Value::Number(_) | Value::Bool(_) => Ok((name, value.to_string())),
            _ => Err(ApiError::invalid(format!(
                "parameters.{name}: a string, number or boolean"
            ))),
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let lock = api
        .stacks_busy
        .take(&api.control.store, &request.stack_name)?;
    let previous = load(api, &request.stack_name)?;
    let target = target(api, &request.stack_name)?;
    let changes =
        stack::plan(&target, &template, &parameters, previous.as_ref()).map_err(invalid)?;
    if request.dry_run {
        return Ok(json!({"changes": changes, "dryRun": true}));
    }
    let changing = Changing { api, lock: &lock };
    let outcome = stack::deploy(
        &changing,
        &target,
        &template,
        &parameters,
        previous.as_ref(),
    )
    .map_err(invalid)?;
    save(api, &outcome.record)?;
    Ok(json!({
        "changes": changes,
        "events": outcome.events,
        "stack": summary(&outcome.record),
        "failure": outcome.failure.map(|f| f.to_string()),
    }))
}

/// A stack's name, status, outputs and resources, without its template and events.
fn summary(record: &StackRecord) -> Value {
    json!({
        "stackName": record.stack_name,
        "status": record.status,
        "statusReason": record.status_reason,
        "outputs": record.outputs,
        "resources": record.order.iter().filter_map(|id| record.resources.get(id).map(|r| json!({
            "logicalId": id,
            "type": r.resource_type,
            "physicalId": r.physical_id,
        }))).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StackName {
    stack_name: String,
}

/// The stack's record; while a deploy or delete of it runs, also `progress`: the steps it
/// has reported so far (`*_IN_PROGRESS` and how each ended), in order. A stack whose first
/// deploy runs has only `progress`.
pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: StackName = parse(body)?;
    let progress = api.stacks_busy.progress(&request.stack_name);
    let record = load(api, &request.stack_name)?;
    match (record, progress) {
        (None, None) => Err(not_found(&request.stack_name)),
        (record, None) => Ok(json!({"stack": record})),
        (record, Some(progress)) => Ok(json!({"stack": record, "progress": progress})),
    }
}

pub fn list(api: &Api, _body: Value) -> Result<Value, ApiError> {
    let mut stacks = Vec::new();
    for record in load_all(api)? {
        stacks.push(json!({
            "stackName": record.stack_name,
            "status": record.status,
            "resources": record.resources.len(),
        }));
    }
    Ok(json!({"stacks": stacks}))
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: StackName = parse(body)?;
    let lock = api
        .stacks_busy
        .take(&api.control.store, &request.stack_name)?;
    let mut record =
        load(api, &request.stack_name)?.ok_or_else(|| not_found(&request.stack_name))?;
    let neighbours = Neighbours::of(&load_all(api)?, &request.stack_name);
    if let Some((export, users)) = neighbours.in_use(record.exports.keys()) {
        return Err(ApiError::invalid(format!(
            "stack {}: Export {export} cannot be deleted: stack {users} imports it",
            request.stack_name
        )));
    }
    let (events, left) = stack::delete_stack(&Changing { api, lock: &lock }, &record);
    if left.is_empty() {
        api.control
            .store
            .delete(&key(&request.stack_name), Expect::Any)?;
        return Ok(json!({"events": events, "status": "DELETE_COMPLETE"}));
    }
    record.order.retain(|id| left.contains_key(id));
    record.resources = left;
    record.status = StackStatus::DeleteFailed;
    record.events.extend(events.iter().cloned());
    save(api, &record)?;
    Ok(json!({"events": events, "status": record.status}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_deploy_per_stack_at_a_time_here_and_through_another_replica() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let locks = StackLocks::default();
        let held = locks.take(&store, "web").unwrap();
        let refused = locks.take(&store, "web").err().unwrap();
        assert_eq!(refused.kind, ErrorKind::UpdateInProgressException);
        // Another replica's locks, over the same store.
        let elsewhere = StackLocks::default();
        let refused = elsewhere.take(&store, "web").err().unwrap();
        assert_eq!(refused.kind, ErrorKind::UpdateInProgressException);
        assert!(locks.take(&store, "other").is_ok());
        drop(held);
        assert!(elsewhere.take(&store, "web").is_ok());
    }
}
