//! Deploying a stack: from a template, its parameters and the stack's previous record, a
//! change set per logical id (create, update, replace, delete, no change), applied in
//! dependency order through the ECS API (deletes last, in reverse order), and rolled back on
//! failure: what this deploy created is deleted, what it updated is updated back, and the
//! previous record is restored.
//!
//! Architecture invariant: no HTTP and no store here. ECS is reached through the `Ecs` seam
//! (the API implements it with `Api::call`; tests with a recording fake); the caller stores
//! the record this returns.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::diff::{PropertyChange, every_property, property_changes};
use super::resources::{self, Call, Created, Kind};
use super::template::{Context, Policy, Template, TemplateError};
use crate::api::{ApiError, ErrorKind};

/// The ECS operations a deploy calls.
pub trait Ecs {
    fn call(&self, action: &str, body: Value) -> Result<Value, ApiError>;
    /// Waits a moment before a delete is tried again (a cluster whose tasks still stop).
    fn pause(&self) {}
    /// Hears of each step as it happens (the `*_IN_PROGRESS` ones too), for a live view.
    fn progress(&self, _event: &StackEvent) {}
}

/// Reports `event` as it happens and keeps it.
fn emit(ecs: &dyn Ecs, events: &mut Vec<StackEvent>, event: StackEvent) {
    ecs.progress(&event);
    events.push(event);
}

/// Reports that a step on `id` begins (not kept: the events kept say how steps ended).
fn begin(ecs: &dyn Ecs, id: &str, type_name: &str, status: ResourceStatus) {
    if Kind::of(type_name) != Some(Kind::NotApplicable) {
        ecs.progress(&event(id, type_name, status, None, None));
    }
}

/// How many times a delete is tried while what it waits for (tasks stopping) goes away.
const DELETE_ATTEMPTS: usize = 120;
/// How many times a deploy looks at a service it changed before it gives up waiting for it
/// to settle (with the server's pauses of a quarter second: ten minutes).
const SETTLE_ATTEMPTS: usize = 2400;
/// How many events a stack record keeps (the newest).
const KEPT_EVENTS: usize = 500;

/// Why a deploy failed, naming the logical id at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("Resources.{logical_id}: type {kind} has no counterpart in wasmgate")]
    UnknownType { logical_id: String, kind: String },
    #[error("Resources.{logical_id} ({kind}): {action}: {error}")]
    Call {
        logical_id: String,
        kind: String,
        action: String,
        error: ApiError,
    },
    #[error("Outputs: Export {name}: {why}")]
    Export { name: String, why: String },
}

/// A stack's status, as CloudFormation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StackStatus {
    CreateComplete,
    UpdateComplete,
    RollbackComplete,
    RollbackFailed,
    UpdateRollbackComplete,
    UpdateRollbackFailed,
    DeleteFailed,
}

/// A resource's status in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceStatus {
    CreateInProgress,
    UpdateInProgress,
    DeleteInProgress,
    CreateComplete,
    CreateFailed,
    UpdateComplete,
    UpdateFailed,
    DeleteComplete,
    DeleteFailed,
    /// Left in place by its `DeletionPolicy` or `UpdateReplacePolicy`; the stack forgets it.
    DeleteSkipped,
    /// A type with nothing to act on here: recorded only.
    NotApplicable,
}

impl ResourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateInProgress => "CREATE_IN_PROGRESS",
            Self::UpdateInProgress => "UPDATE_IN_PROGRESS",
            Self::DeleteInProgress => "DELETE_IN_PROGRESS",
            Self::CreateComplete => "CREATE_COMPLETE",
            Self::CreateFailed => "CREATE_FAILED",
            Self::UpdateComplete => "UPDATE_COMPLETE",
            Self::UpdateFailed => "UPDATE_FAILED",
            Self::DeleteComplete => "DELETE_COMPLETE",
            Self::DeleteFailed => "DELETE_FAILED",
            Self::DeleteSkipped => "DELETE_SKIPPED",
            Self::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

/// One step of a deploy, for one logical id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackEvent {
    pub logical_id: String,
    pub resource_type: String,
    pub status: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a stack holds of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub physical_id: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    /// The properties as resolved when it was last created or updated.
    pub properties: Value,
    #[serde(default, skip_serializing_if = "Policy::is_delete")]
    pub deletion_policy: Policy,
    #[serde(default, skip_serializing_if = "Policy::is_delete")]
    pub update_replace_policy: Policy,
}

impl ResourceRecord {
    /// The resource's ARN: its `Arn` attribute, else its physical id (a service's and a
    /// task definition's `Ref` is their ARN).
    fn arn(&self) -> &str {
        self.attributes
            .get("Arn")
            .and_then(Value::as_str)
            .unwrap_or(&self.physical_id)
    }
}

/// A stack as the store keeps it (`stacks/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRecord {
    pub stack_name: String,
    pub status: StackStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub template: Value,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, ResourceRecord>,
    /// The logical ids in the order they were created; deletes go in reverse.
    pub order: Vec<String>,
    pub outputs: BTreeMap<String, Value>,
    /// The outputs it exports, by export name (`Fn::ImportValue` in other stacks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exports: BTreeMap<String, Value>,
    /// The export names of other stacks it imports.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub imports: BTreeSet<String>,
    pub events: Vec<StackEvent>,
    /// How many deploys the stack has seen (made-up names differ per deploy).
    pub generation: u64,
}

impl StackRecord {
    fn push_events(&mut self, events: &[StackEvent]) {
        self.events.extend_from_slice(events);
        let excess = self.events.len().saturating_sub(KEPT_EVENTS);
        self.events.drain(..excess);
    }
}

/// What a deploy does to one logical id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    NoChange,
}

/// One line of a change set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub logical_id: String,
    pub resource_type: String,
    pub action: Action,
    /// The type has nothing to act on here: the change is recorded only.
    pub not_applicable: bool,
    /// What it means here, when that needs saying (a listener rule's gateway route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What changes in its properties, old → new (every property of a resource created).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<PropertyChange>,
}

/// Where a stack is deployed.
#[derive(Debug, Clone)]
pub struct Target {
    pub stack_name: String,
    pub region: String,
    pub account: String,
    /// What the other stacks export and import.
    pub neighbours: Neighbours,
}

/// The other stacks' exports and imports, for `Fn::ImportValue` and its rules: an export
/// name is one stack's, and an export another stack imports can neither change nor go.
#[derive(Debug, Clone, Default)]
pub struct Neighbours {
    /// Export name → (the stack exporting it, its value).
    pub exported: BTreeMap<String, (String, Value)>,
    /// Export name → the stacks importing it.
    pub importers: BTreeMap<String, BTreeSet<String>>,
}

impl Neighbours {
    /// What `stacks` other than `except` export and import.
    pub fn of<'a>(stacks: impl IntoIterator<Item = &'a StackRecord>, except: &str) -> Self {
        let mut out = Self::default();
        for stack in stacks {
            if stack.stack_name == except {
                continue;
            }
            for (name, value) in &stack.exports {
                out.exported
                    .insert(name.clone(), (stack.stack_name.clone(), value.clone()));
            }
            for name in &stack.imports {
                out.importers
                    .entry(name.clone())
                    .or_default()
                    .insert(stack.stack_name.clone());
            }
        }
        out
    }

    /// The first of `exports` another stack imports, with the stacks importing it.
    pub fn in_use<'a>(
        &self,
        mut exports: impl Iterator<Item = &'a String>,
    ) -> Option<(String, String)> {
        exports.find_map(|name| {
            let users = self.importers.get(name).filter(|u| !u.is_empty())?;
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            Some((name.clone(), users.join(", ")))
        })
    }
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The record to store: the new stack, or the previous one restored after a rollback.
    pub record: StackRecord,
    pub events: Vec<StackEvent>,
    /// Why it failed (and was rolled back), naming the logical id.
    pub failure: Option<DeployError>,
}

/// A template to deploy, parsed, with its context (parameters and conditions evaluated).
struct Prepared {
    template: Template,
    context: Context,
    order: Vec<String>,
    /// What the listener rules route (or why not), by logical id (`routes`).
    notes: BTreeMap<String, String>,
}

fn prepare(
    target: &Target,
    document: &Value,
    parameters: &BTreeMap<String, String>,
) -> Result<Prepared, DeployError> {
    let mut template = Template::parse(document)?;
    let notes = super::routes::route_listeners(&mut template);
    let mut context = Context::new(
        &template,
        &target.stack_name,
        &target.region,
        &target.account,
        parameters,
    )?;
    context.exports = target
        .neighbours
        .exported
        .iter()
        .map(|(name, (_, value))| (name.clone(), value.clone()))
        .collect();
    let mut order = Vec::new();
    for id in template.creation_order()? {
        let resource = &template.resources[&id];
        if !context.included(resource.condition.as_deref()) {
            continue;
        }
        let Some(kind) = Kind::of(&resource.kind) else {
            return Err(DeployError::UnknownType {
                logical_id: id,
                kind: resource.kind.clone(),
            });
        };
        let snapshot =
            [resource.deletion_policy, resource.update_replace_policy].contains(&Policy::Snapshot);
        if snapshot && kind != Kind::NotApplicable {
            return Err(DeployError::Template(TemplateError::Resource(
                id,
                format!(
                    "Snapshot: {} has no snapshots (use Retain or Delete)",
                    resource.kind
                ),
            )));
        }
        order.push(id);
    }
    Ok(Prepared {
        template,
        context,
        order,
        notes,
    })
}

/// The resources of `previous` that count (none after a first deploy rolled back).
fn previous_resources(previous: Option<&StackRecord>) -> BTreeMap<String, ResourceRecord> {
    previous.map(|p| p.resources.clone()).unwrap_or_default()
}

fn decide(
    kind: Kind,
    previous: Option<&ResourceRecord>,
    resolved: &Value,
    type_name: &str,
) -> Action {
    match previous {
        None => Action::Create,
        // A logical id whose type changed is a new resource.
        Some(old) if old.resource_type != type_name => Action::Replace,
        Some(old) if old.properties == *resolved => Action::NoChange,
        Some(old) if kind.needs_replacement(&old.properties, resolved) => Action::Replace,
        Some(_) => Action::Update,
    }
}

/// The name CloudFormation would make up for a resource the template names not:
/// `STACK-LOGICALID-SUFFIX`, the suffix differing per deploy so a replacement never clashes.
fn made_up_name(stack: &str, logical_id: &str, generation: u64) -> String {
    let digest = sha2::Sha256::digest(format!("{stack}/{logical_id}/{generation}"));
    let suffix = hex::encode_upper(&digest[..6]);
    format!("{stack}-{logical_id}-{suffix}")
}

/// The placeholder `Ref` of a resource a dry run would create.
fn pending_id(logical_id: &str) -> String {
    format!("(new {logical_id})")
}

/// The change set: what deploying `document` with `parameters` over `previous` would do, per
/// logical id, in the order it would be done.
pub fn plan(
    target: &Target,
    document: &Value,
    parameters: &BTreeMap<String, String>,
    previous: Option<&StackRecord>,
) -> Result<Vec<Change>, DeployError> {
    let Prepared {
        template,
        mut context,
        order,
        notes,
    } = prepare(target, document, parameters)?;
    let old = previous_resources(previous);
    let generation = previous.map_or(0, |p| p.generation) + 1;
    let mut changes = Vec::new();
    for id in &order {
        let resource = &template.resources[id];
        let kind = Kind::of(&resource.kind).unwrap_or(Kind::NotApplicable);
        let resolved =
            context.resolve(&resource.properties, &format!("Resources.{id}.Properties"))?;
        let action = decide(kind, old.get(id), &resolved, &resource.kind);
        let properties = match (action, old.get(id)) {
            (Action::NoChange, _) => Vec::new(),
            (_, Some(record)) => property_changes(&record.properties, &resolved),
            (_, None) => every_property(&resolved),
        };
        match (action, old.get(id)) {
            (Action::NoChange | Action::Update, Some(record)) => {
                context
                    .physical_ids
                    .insert(id.clone(), record.physical_id.clone());
                context
                    .attributes
                    .insert(id.clone(), record.attributes.clone());
            }
            _ => {
                let name = made_up_name(&target.stack_name, id, generation);
                let created = if kind == Kind::NotApplicable {
                    resources::created(
                        kind,
                        &resource.kind,
                        &Value::Null,
                        &name,
                        &target.region,
                        &target.account,
                    )
                } else {
                    Created {
                        physical_id: pending_id(id),
                        attributes: resources::attribute_names(kind)
                            .iter()
                            .map(|a| (a.to_string(), json!(pending_id(id))))
                            .collect(),
                    }
                };
                context.physical_ids.insert(id.clone(), created.physical_id);
                context.attributes.insert(id.clone(), created.attributes);
            }
        }
        changes.push(Change {
            logical_id: id.clone(),
            resource_type: resource.kind.clone(),
            action,
            not_applicable: kind == Kind::NotApplicable,
            note: notes.get(id).cloned(),
            properties,
        });
    }
    for id in deletion_order(previous, &order) {
        changes.push(Change {
            logical_id: id.clone(),
            resource_type: old[&id].resource_type.clone(),
            action: Action::Delete,
            not_applicable: Kind::of(&old[&id].resource_type) == Some(Kind::NotApplicable),
            note: None,
            properties: Vec::new(),
        });
    }
    Ok(changes)
}

/// The logical ids of `previous` that `order` no longer has, in reverse creation order.
fn deletion_order(previous: Option<&StackRecord>, order: &[String]) -> Vec<String> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    previous
        .order
        .iter()
        .rev()
        .filter(|id| previous.resources.contains_key(*id) && !order.contains(id))
        .cloned()
        .collect()
}

/// What a deploy must undo if a later step fails.
enum Undo {
    Delete {
        logical_id: String,
        record: ResourceRecord,
    },
    Restore {
        logical_id: String,
        old: ResourceRecord,
        new: Value,
    },
}

/// Runs `calls` in order; the first call's answer is returned.
fn run(ecs: &dyn Ecs, calls: &[Call]) -> Result<Value, (String, ApiError)> {
    let mut first = Value::Null;
    for (i, call) in calls.iter().enumerate() {
        let answer = ecs
            .call(call.action, call.body.clone())
            .map_err(|e| (call.action.to_string(), e))?;
        if i == 0 {
            first = answer;
        }
    }
    Ok(first)
}

/// Deletes a resource: what is already gone counts as deleted, and a cluster whose tasks
/// are still stopping is tried again after a pause.
fn delete(ecs: &dyn Ecs, record: &ResourceRecord) -> Result<(), (String, ApiError)> {
    let kind = Kind::of(&record.resource_type).unwrap_or(Kind::NotApplicable);
    for call in resources::delete_calls(kind, &record.physical_id, &record.properties) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ecs.call(call.action, call.body.clone()) {
                Ok(_) => break,
                Err(e) if gone(&e) => break,
                Err(e)
                    if attempt < DELETE_ATTEMPTS
                        && matches!(
                            e.kind,
                            ErrorKind::ClusterContainsTasksException
                                | ErrorKind::ClusterContainsServicesException
                        ) =>
                {
                    ecs.pause();
                }
                Err(e) => return Err((call.action.to_string(), e)),
            }
        }
    }
    Ok(())
}

/// Deletes a resource leaving the stack, unless `policy` keeps it: DELETE_COMPLETE, or
/// DELETE_SKIPPED for one left in place (the stack forgets it either way).
fn remove(
    ecs: &dyn Ecs,
    id: &str,
    record: &ResourceRecord,
    policy: Policy,
) -> Result<ResourceStatus, (String, ApiError)> {
    match policy {
        Policy::Retain | Policy::RetainExceptOnCreate => Ok(ResourceStatus::DeleteSkipped),
        Policy::Delete | Policy::Snapshot => {
            begin(
                ecs,
                id,
                &record.resource_type,
                ResourceStatus::DeleteInProgress,
            );
            delete(ecs, record).map(|()| ResourceStatus::DeleteComplete)
        }
    }
}

/// The template's outputs resolved, and those it exports by export name.
#[allow(clippy::type_complexity)]
fn resolve_outputs(
    template: &Template,
    context: &Context,
) -> Result<(BTreeMap<String, Value>, BTreeMap<String, Value>), DeployError> {
    let mut outputs = BTreeMap::new();
    let mut exports = BTreeMap::new();
    for (name, output) in &template.outputs {
        if !context.included(output["Condition"].as_str()) {
            continue;
        }
        let value = context.resolve(&output["Value"], &format!("Outputs.{name}"))?;
        if !output["Export"].is_null() {
            let export = context.resolve(
                &output["Export"]["Name"],
                &format!("Outputs.{name}.Export.Name"),
            )?;
            let Some(export) = export.as_str().filter(|e| !e.is_empty()) else {
                return Err(DeployError::Template(TemplateError::Function(
                    format!("Outputs.{name}.Export.Name"),
                    "an export needs a name".into(),
                )));
            };
            if exports.insert(export.to_string(), value.clone()).is_some() {
                return Err(DeployError::Export {
                    name: export.to_string(),
                    why: format!("exported twice by this template (again by {name})"),
                });
            }
        }
        outputs.insert(name.clone(), value);
    }
    Ok((outputs, exports))
}

/// CloudFormation's rules for exports: a name is one stack's, and an export another stack
/// imports can neither change its value nor go.
fn check_exports(
    target: &Target,
    previous: Option<&StackRecord>,
    exports: &BTreeMap<String, Value>,
) -> Result<(), DeployError> {
    for (name, value) in exports {
        if let Some((other, _)) = target.neighbours.exported.get(name) {
            return Err(DeployError::Export {
                name: name.clone(),
                why: format!("already exported by stack {other}"),
            });
        }
        let changed = previous
            .and_then(|p| p.exports.get(name))
            .is_some_and(|old| old != value);
        if changed && let Some((_, users)) = target.neighbours.in_use(std::iter::once(name)) {
            return Err(DeployError::Export {
                name: name.clone(),
                why: format!("cannot change its value: stack {users} imports it"),
            });
        }
    }
    let gone = previous
        .into_iter()
        .flat_map(|p| p.exports.keys())
        .filter(|name| !exports.contains_key(*name));
    if let Some((name, users)) = target.neighbours.in_use(gone) {
        return Err(DeployError::Export {
            name,
            why: format!("cannot remove it: stack {users} imports it"),
        });
    }
    Ok(())
}

/// What a deploy waits for after it created or updated a service.
const SETTLE_STEP: &str = "waiting for the service to become stable";

/// Waits until a service created or updated (`answer`) is stable, as CloudFormation does:
/// the deployment it started is the only one and runs as many tasks as desired. A deployment
/// that fails (the circuit breaker) or is rolled back fails the deploy; so does one that
/// does not settle within `SETTLE_ATTEMPTS` looks.
fn settle(ecs: &dyn Ecs, kind: Kind, answer: &Value) -> Result<(), (String, ApiError)> {
    let service = &answer["service"];
    let (Kind::Service, Some(cluster), Some(arn), Some(ours)) = (
        kind,
        service["clusterArn"].as_str(),
        service["serviceArn"].as_str(),
        service["deployments"][0]["id"].as_str(),
    ) else {
        return Ok(());
    };
    let failed = |why: String| (SETTLE_STEP.to_string(), ApiError::client(why));
    for _ in 0..SETTLE_ATTEMPTS {
        let now = ecs
            .call(
                "DescribeServices",
                json!({"cluster": cluster, "services": [arn]}),
            )
            .map_err(|e| ("DescribeServices".to_string(), e))?;
        let now = &now["services"][0];
        let deployments = now["deployments"].as_array().map_or(&[][..], Vec::as_slice);
        match deployments.iter().find(|d| d["id"] == ours) {
            None => return Err(failed(format!("its deployment {ours} was rolled back"))),
            Some(d) if d["rolloutState"] == "FAILED" => {
                return Err(failed(format!(
                    "its deployment {ours} failed: {}",
                    d["rolloutStateReason"]
                        .as_str()
                        .unwrap_or("tasks failed to start")
                )));
            }
            Some(_) if deployments.len() == 1 && now["runningCount"] == now["desiredCount"] => {
                return Ok(());
            }
            Some(_) => ecs.pause(),
        }
    }
    Err(failed(format!(
        "its deployment {ours} did not become stable after {SETTLE_ATTEMPTS} looks"
    )))
}

/// Whether an error says the resource is not there (any more).
fn gone(error: &ApiError) -> bool {
    matches!(
        error.kind,
        ErrorKind::ClusterNotFoundException
            | ErrorKind::ServiceNotFoundException
            | ErrorKind::ServiceNotActiveException
            | ErrorKind::ResourceNotFoundException
    )
}

fn event(
    logical_id: &str,
    resource_type: &str,
    status: ResourceStatus,
    physical_id: Option<&str>,
    reason: Option<String>,
) -> StackEvent {
    StackEvent {
        logical_id: logical_id.to_string(),
        resource_type: resource_type.to_string(),
        status,
        physical_id: physical_id.map(str::to_string),
        reason,
    }
}

/// Deploys `document` over `previous`: creates and updates in dependency order, then
/// deletes what is gone or was replaced, in reverse order; on a failure undoes what it did.
/// A template that changes nothing calls nothing and returns `previous` as it was; one that
/// changes no resource (only outputs, say) calls nothing either, and records the new outputs.
pub fn deploy(
    ecs: &dyn Ecs,
    target: &Target,
    document: &Value,
    parameters: &BTreeMap<String, String>,
    previous: Option<&StackRecord>,
) -> Result<Outcome, DeployError> {
    let changes = plan(target, document, parameters, previous)?;
    if let Some(previous) = previous
        && changes.iter().all(|c| c.action == Action::NoChange)
        && previous.parameters == *parameters
        && previous.template == *document
    {
        return Ok(Outcome {
            record: previous.clone(),
            events: Vec::new(),
            failure: None,
        });
    }
    let Prepared {
        template,
        mut context,
        order,
        notes,
    } = prepare(target, document, parameters)?;
    let old = previous_resources(previous);
    let generation = previous.map_or(0, |p| p.generation) + 1;
    let mut steps = Steps {
        ecs,
        notes: &notes,
        target,
        generation,
        events: Vec::new(),
        undo: Vec::new(),
        retired: Vec::new(),
    };
    let mut kept = BTreeMap::new();
    let mut failure = None;
    for id in &order {
        let resource = &template.resources[id];
        let kind = Kind::of(&resource.kind).unwrap_or(Kind::NotApplicable);
        let resolved =
            match context.resolve(&resource.properties, &format!("Resources.{id}.Properties")) {
                Ok(resolved) => resolved,
                Err(e) => {
                    failure = Some(DeployError::Template(e));
                    break;
                }
            };
        let previous_record = old.get(id);
        let policies = (resource.deletion_policy, resource.update_replace_policy);
        let step = match (
            decide(kind, previous_record, &resolved, &resource.kind),
            previous_record,
        ) {
            (Action::NoChange, Some(record)) => Ok(record.clone()),
            (Action::Update, Some(record)) => steps.update(id, kind, record, resolved),
            (action, _) => steps.create(id, kind, &resource.kind, action, resolved, policies),
        };
        let mut record = match step {
            Ok(record) => record,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        (record.deletion_policy, record.update_replace_policy) = policies;
        context
            .physical_ids
            .insert(id.clone(), record.physical_id.clone());
        context
            .attributes
            .insert(id.clone(), record.attributes.clone());
        kept.insert(id.clone(), record);
    }
    let mut outputs = BTreeMap::new();
    let mut exports = BTreeMap::new();
    if failure.is_none() {
        match resolve_outputs(&template, &context) {
            Ok((resolved, exported)) => (outputs, exports) = (resolved, exported),
            Err(e) => failure = Some(e),
        }
    }
    if failure.is_none()
        && let Err(e) = check_exports(target, previous, &exports)
    {
        failure = Some(e);
    }
    let Steps {
        mut events,
        undo,
        retired,
        ..
    } = steps;
    if let Some(failure) = failure {
        let (undone, failed_rollback) = roll_back(ecs, undo);
        events.extend(undone);
        let mut record = previous.cloned().unwrap_or_else(|| StackRecord {
            stack_name: target.stack_name.clone(),
            status: StackStatus::RollbackComplete,
            status_reason: None,
            template: document.clone(),
            parameters: parameters.clone(),
            resources: BTreeMap::new(),
            order: Vec::new(),
            outputs: BTreeMap::new(),
            exports: BTreeMap::new(),
            imports: BTreeSet::new(),
            events: Vec::new(),
            generation: 0,
        });
        record.status = match (
            previous.is_some_and(|p| !p.resources.is_empty()),
            failed_rollback,
        ) {
            (true, false) => StackStatus::UpdateRollbackComplete,
            (true, true) => StackStatus::UpdateRollbackFailed,
            (false, false) => StackStatus::RollbackComplete,
            (false, true) => StackStatus::RollbackFailed,
        };
        record.status_reason = Some(failure.to_string());
        record.generation = generation;
        record.push_events(&events);
        return Ok(Outcome {
            record,
            events,
            failure: Some(failure),
        });
    }
    // The stack has settled: delete what it no longer has and the old halves of
    // replacements (an old task definition revision), in reverse creation order. A failed
    // cleanup is reported, not rolled back (as CloudFormation does).
    let mut doomed = deletion_order(previous, &order);
    let previous_order = previous.map(|p| p.order.clone()).unwrap_or_default();
    for id in previous_order.iter().rev() {
        if retired.contains(id) {
            doomed.push(id.clone());
        }
    }
    doomed.sort_by_key(|id| std::cmp::Reverse(previous_order.iter().position(|o| o == id)));
    for id in doomed {
        let record = &old[&id];
        // A replaced resource's old half goes by the template's UpdateReplacePolicy, a
        // removed one by the DeletionPolicy it had.
        let policy = match kept.get(&id) {
            Some(new) => new.update_replace_policy,
            None => record.deletion_policy,
        };
        let status = match remove(ecs, &id, record, policy) {
            Ok(status) => (status, None),
            Err((action, error)) => (
                ResourceStatus::DeleteFailed,
                Some(format!("{action}: {error}")),
            ),
        };
        emit(
            ecs,
            &mut events,
            event(
                &id,
                &record.resource_type,
                status.0,
                Some(&record.physical_id),
                status.1,
            ),
        );
    }
    let first = previous.is_none_or(|p| p.resources.is_empty());
    let mut record = StackRecord {
        stack_name: target.stack_name.clone(),
        status: if first {
            StackStatus::CreateComplete
        } else {
            StackStatus::UpdateComplete
        },
        status_reason: None,
        template: document.clone(),
        parameters: parameters.clone(),
        resources: kept,
        order,
        outputs,
        exports,
        imports: context.imported.take(),
        events: previous.map(|p| p.events.clone()).unwrap_or_default(),
        generation,
    };
    record.push_events(&events);
    Ok(Outcome {
        record,
        events,
        failure: None,
    })
}

/// The steps of one deploy so far: what it reported, what it would undo, and which logical
/// ids it replaced (their old resources are deleted once the stack settled).
struct Steps<'a> {
    ecs: &'a dyn Ecs,
    /// What record-only resources mean here, by logical id (`Prepared::notes`).
    notes: &'a BTreeMap<String, String>,
    target: &'a Target,
    generation: u64,
    events: Vec<StackEvent>,
    undo: Vec<Undo>,
    retired: Vec<String>,
}

impl Steps<'_> {
    /// How a step that went through ends: `done`, or NOT_APPLICABLE with what the record-only
    /// resource means here when that needs saying.
    fn ending(
        &self,
        id: &str,
        kind: Kind,
        done: ResourceStatus,
    ) -> (ResourceStatus, Option<String>) {
        if kind == Kind::NotApplicable {
            (ResourceStatus::NotApplicable, self.notes.get(id).cloned())
        } else {
            (done, None)
        }
    }

    /// Reports a failed step of `id` and says why it failed.
    fn failed(
        &mut self,
        id: &str,
        type_name: &str,
        status: ResourceStatus,
        physical_id: Option<&str>,
        (action, error): (String, ApiError),
    ) -> DeployError {
        emit(
            self.ecs,
            &mut self.events,
            event(id, type_name, status, physical_id, Some(error.to_string())),
        );
        DeployError::Call {
            logical_id: id.to_string(),
            kind: type_name.to_string(),
            action,
            error,
        }
    }

    /// Updates `record` in place to `resolved` (and waits for a service to settle).
    fn update(
        &mut self,
        id: &str,
        kind: Kind,
        record: &ResourceRecord,
        resolved: Value,
    ) -> Result<ResourceRecord, DeployError> {
        let type_name = record.resource_type.as_str();
        begin(self.ecs, id, type_name, ResourceStatus::UpdateInProgress);
        let calls = resources::update_calls(
            kind,
            &record.physical_id,
            record.arn(),
            &record.properties,
            &resolved,
        );
        let result = run(self.ecs, &calls);
        // Once the update went through, a failure while the service settles must update it
        // back too.
        if result.is_ok() {
            self.undo.push(Undo::Restore {
                logical_id: id.to_string(),
                old: record.clone(),
                new: resolved.clone(),
            });
        }
        if let Err(why) = result.and_then(|answer| settle(self.ecs, kind, &answer)) {
            let physical_id = Some(record.physical_id.as_str());
            return Err(self.failed(
                id,
                type_name,
                ResourceStatus::UpdateFailed,
                physical_id,
                why,
            ));
        }
        let (status, note) = self.ending(id, kind, ResourceStatus::UpdateComplete);
        emit(
            self.ecs,
            &mut self.events,
            event(id, type_name, status, Some(&record.physical_id), note),
        );
        Ok(ResourceRecord {
            properties: resolved,
            ..record.clone()
        })
    }

    /// Creates `id` (a new resource, or the replacement of one) from `resolved`, and waits
    /// for a service to settle.
    fn create(
        &mut self,
        id: &str,
        kind: Kind,
        type_name: &str,
        action: Action,
        resolved: Value,
        (deletion_policy, update_replace_policy): (Policy, Policy),
    ) -> Result<ResourceRecord, DeployError> {
        let name = made_up_name(&self.target.stack_name, id, self.generation);
        begin(self.ecs, id, type_name, ResourceStatus::CreateInProgress);
        let calls = resources::create_calls(kind, &resolved, &name);
        let answer = match run(self.ecs, &calls) {
            Ok(answer) => answer,
            Err(why) => {
                return Err(self.failed(id, type_name, ResourceStatus::CreateFailed, None, why));
            }
        };
        let created = resources::created(
            kind,
            type_name,
            &answer,
            &name,
            &self.target.region,
            &self.target.account,
        );
        let record = ResourceRecord {
            resource_type: type_name.to_string(),
            physical_id: created.physical_id,
            attributes: created.attributes,
            properties: resolved,
            deletion_policy,
            update_replace_policy,
        };
        self.undo.push(Undo::Delete {
            logical_id: id.to_string(),
            record: record.clone(),
        });
        if action == Action::Replace {
            self.retired.push(id.to_string());
        }
        if let Err(why) = settle(self.ecs, kind, &answer) {
            let physical_id = Some(record.physical_id.as_str());
            return Err(self.failed(
                id,
                type_name,
                ResourceStatus::CreateFailed,
                physical_id,
                why,
            ));
        }
        let (status, note) = self.ending(id, kind, ResourceStatus::CreateComplete);
        emit(
            self.ecs,
            &mut self.events,
            event(id, type_name, status, Some(&record.physical_id), note),
        );
        Ok(record)
    }
}

/// Undoes a failed deploy's steps, newest first; says whether any step could not be undone.
fn roll_back(ecs: &dyn Ecs, undo: Vec<Undo>) -> (Vec<StackEvent>, bool) {
    let mut events = Vec::new();
    let mut failed = false;
    for step in undo.into_iter().rev() {
        match step {
            Undo::Delete { logical_id, record } => {
                // Created by this deploy: only Retain keeps it (RetainExceptOnCreate does not).
                let policy = match record.deletion_policy {
                    Policy::Retain => Policy::Retain,
                    _ => Policy::Delete,
                };
                let (status, reason) = match remove(ecs, &logical_id, &record, policy) {
                    Ok(status) => (status, Some("rollback".to_string())),
                    Err((action, error)) => {
                        failed = true;
                        (
                            ResourceStatus::DeleteFailed,
                            Some(format!("rollback: {action}: {error}")),
                        )
                    }
                };
                emit(
                    ecs,
                    &mut events,
                    event(
                        &logical_id,
                        &record.resource_type,
                        status,
                        Some(&record.physical_id),
                        reason,
                    ),
                );
            }
            Undo::Restore {
                logical_id,
                old,
                new,
            } => {
                let kind = Kind::of(&old.resource_type).unwrap_or(Kind::NotApplicable);
                let calls = resources::update_calls(
                    kind,
                    &old.physical_id,
                    old.arn(),
                    &new,
                    &old.properties,
                );
                let (status, reason) = match run(ecs, &calls) {
                    Ok(_) => (ResourceStatus::UpdateComplete, Some("rollback".to_string())),
                    Err((action, error)) => {
                        failed = true;
                        (
                            ResourceStatus::UpdateFailed,
                            Some(format!("rollback: {action}: {error}")),
                        )
                    }
                };
                emit(
                    ecs,
                    &mut events,
                    event(
                        &logical_id,
                        &old.resource_type,
                        status,
                        Some(&old.physical_id),
                        reason,
                    ),
                );
            }
        }
    }
    (events, failed)
}

/// Deletes every resource of a stack, in reverse creation order. Returns the events and the
/// resources that could not be deleted (the stack then stays, DELETE_FAILED).
pub fn delete_stack(
    ecs: &dyn Ecs,
    record: &StackRecord,
) -> (Vec<StackEvent>, BTreeMap<String, ResourceRecord>) {
    let mut events = Vec::new();
    let mut left = BTreeMap::new();
    for id in record.order.iter().rev() {
        let Some(resource) = record.resources.get(id) else {
            continue;
        };
        match remove(ecs, id, resource, resource.deletion_policy) {
            Ok(status) => emit(
                ecs,
                &mut events,
                event(
                    id,
                    &resource.resource_type,
                    status,
                    Some(&resource.physical_id),
                    None,
                ),
            ),
            Err((action, error)) => {
                emit(
                    ecs,
                    &mut events,
                    event(
                        id,
                        &resource.resource_type,
                        ResourceStatus::DeleteFailed,
                        Some(&resource.physical_id),
                        Some(format!("{action}: {error}")),
                    ),
                );
                left.insert(id.clone(), resource.clone());
            }
        }
    }
    (events, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every call and answers as ECS would, failing the action named in `fail`.
    #[derive(Default)]
    struct FakeEcs {
        calls: RefCell<Vec<(String, Value)>>,
        fail: Option<&'static str>,
        /// When set, services answer with a deployment in this rollout state.
        rollout: Option<&'static str>,
    }

    impl FakeEcs {
        fn actions(&self) -> Vec<String> {
            self.calls.borrow().iter().map(|(a, _)| a.clone()).collect()
        }
    }

    impl Ecs for FakeEcs {
        fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
            self.calls
                .borrow_mut()
                .push((action.to_string(), body.clone()));
            if self.fail == Some(action) {
                return Err(ApiError::invalid("taskDefinition: no such task definition"));
            }
            let n = self.calls.borrow().len();
            Ok(match action {
                "CreateCluster" => json!({"cluster": {
                    "clusterName": body["clusterName"],
                    "clusterArn": format!("arn:cluster/{}", body["clusterName"].as_str().unwrap_or_default()),
                }}),
                "RegisterTaskDefinition" => json!({"taskDefinition": {
                    "taskDefinitionArn": format!("arn:task-definition/{}:{n}", body["family"].as_str().unwrap_or_default()),
                }}),
                "CreateService" => {
                    let mut answer = json!({"service": {
                        "serviceName": body["serviceName"],
                        "serviceArn": format!("arn:service/{}", body["serviceName"].as_str().unwrap_or_default()),
                    }});
                    if self.rollout.is_some() {
                        answer["service"]["clusterArn"] = json!("arn:cluster");
                        answer["service"]["deployments"] = json!([{"id": "ecs-svc/1"}]);
                    }
                    answer
                }
                "DescribeServices" => json!({"services": [{
                    "desiredCount": 1,
                    "runningCount": 0,
                    "deployments": [{"id": "ecs-svc/1", "rolloutState": self.rollout, "rolloutStateReason": "tasks failed to start"}],
                }]}),
                _ => json!({}),
            })
        }
    }

    fn target() -> Target {
        Target {
            stack_name: "web".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            neighbours: Neighbours::default(),
        }
    }

    /// The shape `cdk synth` writes: a cluster, a task definition, a service, a role.
    fn template(image: &str) -> Value {
        json!({
            "Parameters": {"DesiredCount": {"Type": "Number", "Default": "1"}},
            "Conditions": {"Always": {"Fn::Equals": ["a", "a"]}},
            "Resources": {
                "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
                "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
                "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                    "Family": "web",
                    "ExecutionRoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                    "ContainerDefinitions": [{"Name": "app", "Image": image, "Essential": true}]
                }},
                "Service": {"Type": "AWS::ECS::Service", "Condition": "Always", "Properties": {
                    "Cluster": {"Ref": "Cluster"},
                    "TaskDefinition": {"Ref": "TaskDef"},
                    "DesiredCount": {"Ref": "DesiredCount"}
                }}
            },
            "Outputs": {"ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}}}
        })
    }

    fn params(count: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("DesiredCount".to_string(), count.to_string())])
    }

    fn actions_of(changes: &[Change]) -> Vec<(&str, Action)> {
        changes
            .iter()
            .map(|c| (c.logical_id.as_str(), c.action))
            .collect()
    }

    fn first_deploy(ecs: &FakeEcs) -> StackRecord {
        let outcome = deploy(ecs, &target(), &template("a.wasm"), &params("1"), None).unwrap();
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        outcome.record
    }

    #[test]
    fn a_first_deploy_creates_in_dependency_order_and_records_the_stack() {
        let changes = plan(&target(), &template("a.wasm"), &params("1"), None).unwrap();
        assert_eq!(
            actions_of(&changes),
            [
                ("Cluster", Action::Create),
                ("Role", Action::Create),
                ("TaskDef", Action::Create),
                ("Service", Action::Create)
            ]
        );
        assert!(changes[1].not_applicable);
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        assert_eq!(
            ecs.actions(),
            ["CreateCluster", "RegisterTaskDefinition", "CreateService"]
        );
        let calls = ecs.calls.borrow();
        let cluster = calls[0].1["clusterName"].as_str().unwrap().to_string();
        assert!(cluster.starts_with("web-Cluster-"), "{cluster}");
        assert_eq!(calls[2].1["cluster"], json!(cluster));
        assert_eq!(calls[2].1["desiredCount"], json!(1));
        assert_eq!(
            calls[2].1["taskDefinition"],
            json!("arn:task-definition/web:2")
        );
        assert!(
            calls[1].1["executionRoleArn"]
                .as_str()
                .unwrap()
                .contains("not-applicable/web-Role-")
        );
        assert_eq!(record.status, StackStatus::CreateComplete);
        assert_eq!(record.outputs["ServiceName"], calls[2].1["serviceName"]);
        assert_eq!(
            record.resources["Service"].physical_id,
            format!(
                "arn:service/{}",
                calls[2].1["serviceName"].as_str().unwrap()
            )
        );
    }

    #[test]
    fn the_same_template_again_changes_nothing_and_calls_nothing() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let changes = plan(&target(), &template("a.wasm"), &params("1"), Some(&record)).unwrap();
        assert!(
            changes.iter().all(|c| c.action == Action::NoChange),
            "{changes:?}"
        );
        let again = FakeEcs::default();
        let outcome = deploy(
            &again,
            &target(),
            &template("a.wasm"),
            &params("1"),
            Some(&record),
        )
        .unwrap();
        assert!(again.actions().is_empty());
        assert_eq!(outcome.record, record);
    }

    #[test]
    fn a_new_desired_count_is_one_update_of_the_service() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let changes = plan(&target(), &template("a.wasm"), &params("3"), Some(&record)).unwrap();
        assert_eq!(
            actions_of(&changes),
            [
                ("Cluster", Action::NoChange),
                ("Role", Action::NoChange),
                ("TaskDef", Action::NoChange),
                ("Service", Action::Update)
            ]
        );
        let update = FakeEcs::default();
        let outcome = deploy(
            &update,
            &target(),
            &template("a.wasm"),
            &params("3"),
            Some(&record),
        )
        .unwrap();
        assert_eq!(update.actions(), ["UpdateService"]);
        let body = &update.calls.borrow()[0].1;
        assert_eq!(body["desiredCount"], json!(3));
        assert_eq!(
            body["service"],
            json!(record.resources["Service"].physical_id)
        );
        assert_eq!(outcome.record.status, StackStatus::UpdateComplete);
    }

    #[test]
    fn a_changed_task_definition_is_a_new_revision_and_the_old_one_is_deregistered_last() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let changes = plan(&target(), &template("b.wasm"), &params("1"), Some(&record)).unwrap();
        assert_eq!(
            actions_of(&changes)[2..],
            [("TaskDef", Action::Replace), ("Service", Action::Update)]
        );
        let update = FakeEcs::default();
        deploy(
            &update,
            &target(),
            &template("b.wasm"),
            &params("1"),
            Some(&record),
        )
        .unwrap();
        assert_eq!(
            update.actions(),
            [
                "RegisterTaskDefinition",
                "UpdateService",
                "DeregisterTaskDefinition"
            ]
        );
        let calls = update.calls.borrow();
        assert_eq!(
            calls[2].1["taskDefinition"],
            json!(record.resources["TaskDef"].physical_id)
        );
    }

    #[test]
    fn a_failed_update_undoes_what_it_did_and_restores_the_previous_record() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let failing = FakeEcs {
            fail: Some("UpdateService"),
            ..Default::default()
        };
        let outcome = deploy(
            &failing,
            &target(),
            &template("b.wasm"),
            &params("1"),
            Some(&record),
        )
        .unwrap();
        let failure = outcome.failure.unwrap().to_string();
        assert!(
            failure.starts_with("Resources.Service (AWS::ECS::Service): UpdateService:"),
            "{failure}"
        );
        // The new revision is deregistered; the service never changed.
        assert_eq!(
            failing.actions(),
            [
                "RegisterTaskDefinition",
                "UpdateService",
                "DeregisterTaskDefinition"
            ]
        );
        assert_eq!(outcome.record.status, StackStatus::UpdateRollbackComplete);
        assert_eq!(outcome.record.resources, record.resources);
        assert_eq!(outcome.record.template, record.template);
    }

    #[test]
    fn a_failed_first_deploy_deletes_what_it_created() {
        let failing = FakeEcs {
            fail: Some("CreateService"),
            ..Default::default()
        };
        let outcome = deploy(&failing, &target(), &template("a.wasm"), &params("1"), None).unwrap();
        assert!(outcome.failure.is_some());
        assert_eq!(
            failing.actions(),
            [
                "CreateCluster",
                "RegisterTaskDefinition",
                "CreateService",
                "DeregisterTaskDefinition",
                "DeleteCluster"
            ]
        );
        assert_eq!(outcome.record.status, StackStatus::RollbackComplete);
        assert!(outcome.record.resources.is_empty());
    }

    #[test]
    fn a_service_whose_deployment_fails_is_rolled_back() {
        let failing = FakeEcs {
            rollout: Some("FAILED"),
            ..Default::default()
        };
        let outcome = deploy(
            &failing,
            &target(),
            &template("missing.wasm"),
            &params("1"),
            None,
        )
        .unwrap();
        let failure = outcome.failure.unwrap().to_string();
        assert_eq!(
            failure,
            "Resources.Service (AWS::ECS::Service): waiting for the service to become stable: \
             ClientException: its deployment ecs-svc/1 failed: tasks failed to start"
        );
        assert_eq!(
            failing.actions(),
            [
                "CreateCluster",
                "RegisterTaskDefinition",
                "CreateService",
                "DescribeServices",
                "DeleteService",
                "DeregisterTaskDefinition",
                "DeleteCluster"
            ]
        );
        assert_eq!(outcome.record.status, StackStatus::RollbackComplete);
    }

    #[test]
    fn a_renamed_cluster_replaces_it_and_its_service_and_the_old_ones_go_last() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let mut renamed = template("a.wasm");
        renamed["Resources"]["Cluster"]["Properties"] = json!({"ClusterName": "blue"});
        let changes = plan(&target(), &renamed, &params("1"), Some(&record)).unwrap();
        assert_eq!(
            actions_of(&changes),
            [
                ("Cluster", Action::Replace),
                ("Role", Action::NoChange),
                ("TaskDef", Action::NoChange),
                ("Service", Action::Replace)
            ]
        );
        let replacing = FakeEcs::default();
        let outcome = deploy(&replacing, &target(), &renamed, &params("1"), Some(&record)).unwrap();
        assert!(outcome.failure.is_none());
        assert_eq!(
            replacing.actions(),
            [
                "CreateCluster",
                "CreateService",
                "DeleteService",
                "DeleteCluster"
            ]
        );
        let calls = replacing.calls.borrow();
        assert_eq!(calls[1].1["cluster"], json!("blue"));
        assert_eq!(
            calls[2].1["service"],
            json!(record.resources["Service"].physical_id)
        );
        assert_eq!(
            calls[3].1["cluster"],
            json!(record.resources["Cluster"].physical_id)
        );
        assert_eq!(outcome.record.resources["Cluster"].physical_id, "blue");
    }

    #[test]
    fn a_new_output_alone_calls_nothing_and_is_recorded() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let mut more = template("a.wasm");
        more["Outputs"]["ClusterName"] = json!({"Value": {"Ref": "Cluster"}});
        let quiet = FakeEcs::default();
        let outcome = deploy(&quiet, &target(), &more, &params("1"), Some(&record)).unwrap();
        assert!(quiet.actions().is_empty());
        assert_eq!(outcome.record.status, StackStatus::UpdateComplete);
        assert_eq!(
            outcome.record.outputs["ClusterName"],
            json!(record.resources["Cluster"].physical_id)
        );
    }

    #[test]
    fn deleting_a_stack_goes_in_reverse_order_and_a_removed_resource_is_deleted() {
        let ecs = FakeEcs::default();
        let record = first_deploy(&ecs);
        let deleting = FakeEcs::default();
        let (events, left) = delete_stack(&deleting, &record);
        assert!(left.is_empty());
        assert_eq!(
            deleting.actions(),
            ["DeleteService", "DeregisterTaskDefinition", "DeleteCluster"]
        );
        let ids: Vec<&str> = events.iter().map(|e| e.logical_id.as_str()).collect();
        assert_eq!(ids, ["Service", "TaskDef", "Role", "Cluster"]);

        let mut smaller = template("a.wasm");
        smaller["Resources"]
            .as_object_mut()
            .unwrap()
            .remove("Service");
        smaller["Outputs"] = json!({});
        let changes = plan(&target(), &smaller, &params("1"), Some(&record)).unwrap();
        assert_eq!(
            changes.last().map(|c| (c.logical_id.as_str(), c.action)),
            Some(("Service", Action::Delete))
        );
    }

    #[test]
    fn an_unknown_type_is_an_error_naming_the_logical_id() {
        let mut document = template("a.wasm");
        document["Resources"]["Bucket"] = json!({"Type": "AWS::S3::Bucket"});
        let error = plan(&target(), &document, &params("1"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Resources.Bucket: type AWS::S3::Bucket has no counterpart in wasmgate"
        );
    }

    #[test]
    fn retained_resources_are_left_in_place_when_removed_or_the_stack_is_deleted() {
        let mut retained = template("a.wasm");
        retained["Resources"]["Cluster"]["DeletionPolicy"] = json!("Retain");
        retained["Resources"]["Service"]["DeletionPolicy"] = json!("RetainExceptOnCreate");
        let ecs = FakeEcs::default();
        let record = deploy(&ecs, &target(), &retained, &params("1"), None)
            .unwrap()
            .record;
        assert_eq!(record.resources["Cluster"].deletion_policy, Policy::Retain);
        // The service leaves the template: skipped, not deleted.
        let mut without = retained.clone();
        without["Resources"]
            .as_object_mut()
            .unwrap()
            .remove("Service");
        without.as_object_mut().unwrap().remove("Outputs");
        let removed = FakeEcs::default();
        let outcome = deploy(&removed, &target(), &without, &params("1"), Some(&record)).unwrap();
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        assert!(!removed.actions().contains(&"DeleteService".to_string()));
        assert!(
            outcome
                .events
                .iter()
                .any(|e| e.logical_id == "Service" && e.status == ResourceStatus::DeleteSkipped)
        );
        // The stack deleted: the cluster stays, the task definition goes.
        let deleting = FakeEcs::default();
        let (events, left) = delete_stack(&deleting, &outcome.record);
        assert!(left.is_empty());
        assert_eq!(deleting.actions(), ["DeregisterTaskDefinition"]);
        assert!(
            events
                .iter()
                .any(|e| e.logical_id == "Cluster" && e.status == ResourceStatus::DeleteSkipped)
        );
    }

    #[test]
    fn retain_except_on_create_is_deleted_when_its_first_deploy_rolls_back() {
        let mut document = template("a.wasm");
        document["Resources"]["Cluster"]["DeletionPolicy"] = json!("RetainExceptOnCreate");
        document["Resources"]["TaskDef"]["DeletionPolicy"] = json!("Retain");
        let ecs = FakeEcs {
            fail: Some("CreateService"),
            ..Default::default()
        };
        let outcome = deploy(&ecs, &target(), &document, &params("1"), None).unwrap();
        assert!(outcome.failure.is_some());
        let actions = ecs.actions();
        assert!(
            actions.contains(&"DeleteCluster".to_string()),
            "{actions:?}"
        );
        assert!(
            !actions.contains(&"DeregisterTaskDefinition".to_string()),
            "Retain keeps it even then: {actions:?}"
        );
    }

    #[test]
    fn snapshot_is_refused_for_what_has_no_snapshots() {
        let mut document = template("a.wasm");
        document["Resources"]["Service"]["DeletionPolicy"] = json!("Snapshot");
        let error = plan(&target(), &document, &params("1"), None).unwrap_err();
        assert!(
            error.to_string().contains("Resources.Service: Snapshot"),
            "{error}"
        );
        document["Resources"]["Service"]["DeletionPolicy"] = json!("Keep");
        let error = plan(&target(), &document, &params("1"), None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("DeletionPolicy: Keep is not one of"),
            "{error}"
        );
    }

    #[test]
    fn exports_are_imported_by_other_stacks_and_kept_while_imported() {
        let mut network = template("a.wasm");
        network["Outputs"]["Cluster"] = json!({
            "Value": {"Ref": "Cluster"},
            "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-cluster"}}
        });
        let ecs = FakeEcs::default();
        let shared = deploy(&ecs, &target(), &network, &params("1"), None)
            .unwrap()
            .record;
        let cluster = shared.exports["web-cluster"].clone();
        assert!(cluster.as_str().unwrap().starts_with("web-Cluster-"));

        // Another stack imports it.
        let app = json!({"Resources": {"Service": {"Type": "AWS::ECS::Service", "Properties": {
            "Cluster": {"Fn::ImportValue": "web-cluster"},
            "TaskDefinition": "arn:task-definition/web:2"
        }}}});
        let mut other = target();
        other.stack_name = "app".into();
        other.neighbours = Neighbours::of([&shared], "app");
        let importing = FakeEcs::default();
        let app_record = deploy(&importing, &other, &app, &BTreeMap::new(), None)
            .unwrap()
            .record;
        assert_eq!(importing.calls.borrow()[0].1["cluster"], cluster);
        assert_eq!(
            app_record.imports,
            BTreeSet::from(["web-cluster".to_string()])
        );
        // An import nobody exports is an error naming it.
        let missing = json!({"Resources": {"Service": {"Type": "AWS::ECS::Service", "Properties": {
            "Cluster": {"Fn::ImportValue": "nope"}, "TaskDefinition": "x"}}}});
        let error = plan(&other, &missing, &BTreeMap::new(), None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("Fn::ImportValue nope: no stack exports it"),
            "{error}"
        );

        // While it is imported, the first stack can neither drop the export nor change it.
        let mut back = target();
        back.neighbours = Neighbours::of([&app_record], "web");
        let mut dropped = network.clone();
        dropped["Outputs"]
            .as_object_mut()
            .unwrap()
            .remove("Cluster");
        let outcome = deploy(
            &FakeEcs::default(),
            &back,
            &dropped,
            &params("1"),
            Some(&shared),
        )
        .unwrap();
        let failure = outcome.failure.expect("refused").to_string();
        assert!(
            failure.contains("Export web-cluster: cannot remove it: stack app imports it"),
            "{failure}"
        );
        assert_eq!(
            back.neighbours.in_use(shared.exports.keys()),
            Some(("web-cluster".to_string(), "app".to_string()))
        );
        // And a second stack cannot export the same name.
        let mut twin = target();
        twin.stack_name = "twin".into();
        twin.neighbours = Neighbours::of([&shared], "twin");
        let mut same_name = network.clone();
        same_name["Outputs"]["Cluster"]["Export"]["Name"] = json!("web-cluster");
        let outcome = deploy(&FakeEcs::default(), &twin, &same_name, &params("1"), None).unwrap();
        let failure = outcome.failure.expect("refused").to_string();
        assert!(
            failure.contains("already exported by stack web"),
            "{failure}"
        );
    }
}
