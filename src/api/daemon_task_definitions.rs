//! RegisterDaemonTaskDefinition, DescribeDaemonTaskDefinition, ListDaemonTaskDefinitions,
//! DeleteDaemonTaskDefinition. A daemon task definition is a task definition with fewer
//! members (no ports, links or labels: a daemon serves no route) and two of its own
//! (`pidMode`, `ipcMode`: `none` or `shared`). It is validated by `crate::taskdef` as a task
//! definition and stored with its runnable document (`control::daemon_definitions`), so its
//! tasks run like any other.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Api, ApiError, page, paged, parse, timestamp};
use crate::control::daemon_definitions::{arn, find, key};
use crate::store::Expect;
use crate::taskdef::TaskDefinition;

/// RegisterDaemonTaskDefinition's members.
const MEMBERS: &[&str] = &[
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "containerDefinitions",
    "cpu",
    "memory",
    "volumes",
    "tags",
    "pidMode",
    "ipcMode",
];

/// DaemonContainerDefinition's members (a container definition's, less what a daemon has no
/// use for).
const CONTAINER_MEMBERS: &[&str] = &[
    "name",
    "image",
    "memory",
    "memoryReservation",
    "repositoryCredentials",
    "healthCheck",
    "cpu",
    "essential",
    "entryPoint",
    "command",
    "workingDirectory",
    "environmentFiles",
    "environment",
    "secrets",
    "readonlyRootFilesystem",
    "mountPoints",
    "logConfiguration",
    "firelensConfiguration",
    "privileged",
    "user",
    "ulimits",
    "linuxParameters",
    "dependsOn",
    "startTimeout",
    "stopTimeout",
    "systemControls",
    "interactive",
    "pseudoTerminal",
    "restartPolicy",
];

/// DaemonVolume's members.
const VOLUME_MEMBERS: &[&str] = &["name", "host", "logDriverVolumeConfiguration"];

fn family_key(family: &str) -> String {
    format!("daemon-taskdef-families/{family}")
}

/// Refuses a member `allowed` does not name, at `path`.
fn only(object: &Value, allowed: &[&str], path: &str) -> Result<(), ApiError> {
    if let Some(object) = object.as_object()
        && let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "{path}{unknown}: not a member of a daemon task definition"
        )));
    }
    Ok(())
}

/// `pidMode` / `ipcMode`: `none` runs; `shared` (the host's namespace, shared with other
/// daemons) is not something a wasmgate task can join.
fn namespace_mode(body: &Value, member: &str) -> Result<String, ApiError> {
    match body.get(member).and_then(Value::as_str) {
        None | Some("none") => Ok("none".into()),
        Some("shared") => Err(ApiError::unsupported(format!(
            "{member} shared: wasmgate tasks never share a {} namespace (a Wasm task has none, \
             a container task gets its own); register the daemon task definition with \
             {member} none",
            if member == "pidMode" { "PID" } else { "IPC" }
        ))),
        Some(other) => Err(ApiError::invalid(format!(
            "{member}: must be none or shared (got {other})"
        ))),
    }
}

pub fn register(api: &Api, body: Value) -> Result<Value, ApiError> {
    only(&body, MEMBERS, "")?;
    for (i, container) in body["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        only(
            container,
            CONTAINER_MEMBERS,
            &format!("containerDefinitions[{i}]."),
        )?;
    }
    for (i, volume) in body["volumes"].as_array().into_iter().flatten().enumerate() {
        only(volume, VOLUME_MEMBERS, &format!("volumes[{i}]."))?;
        if volume.get("logDriverVolumeConfiguration").is_some() {
            return Err(ApiError::unsupported(format!(
                "volumes[{i}].logDriverVolumeConfiguration: wasmgate keeps task output itself \
                 (GetTaskLogs) and has no log driver volume to give; use a host volume"
            )));
        }
    }
    let pid_mode = namespace_mode(&body, "pidMode")?;
    let ipc_mode = namespace_mode(&body, "ipcMode")?;
    let tags = super::tags::given("tags", body.get("tags").cloned())?;
    let mut document: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    for own in ["tags", "pidMode", "ipcMode"] {
        document.remove(own);
    }
    let definition = TaskDefinition::from_value(Value::Object(document)).map_err(|error| {
        let errors: Vec<String> = error
            .field_errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        ApiError::client(format!(
            "Invalid daemon task definition: {}",
            errors.join("; ")
        ))
    })?;
    let family = definition.spec.family.clone();
    let revision = super::task_definitions::next_revision(api, &family_key(&family))?;
    let daemon_arn = arn(&api.control.arns, &family, revision);
    let record = json!({
        "family": family,
        "revision": revision,
        "status": "ACTIVE",
        "registeredAt": timestamp(),
        "document": definition.raw,
        "daemon": {"pidMode": pid_mode, "ipcMode": ipc_mode},
        "tags": tags,
        "taskDefinitionArn": daemon_arn,
    });
    api.control
        .store
        .put(&key(&family, revision), &record, Expect::Absent)?;
    Ok(json!({"daemonTaskDefinitionArn": daemon_arn}))
}

/// A record's status as read: DELETE_IN_PROGRESS ends (DELETED) once no daemon's current
/// revision runs it, judged at every read so nothing has to remember to finish it.
fn status(record: &Value, in_use: &[Value]) -> Value {
    if record["status"] == "DELETE_IN_PROGRESS" && !in_use.contains(&record["taskDefinitionArn"]) {
        json!("DELETED")
    } else {
        record["status"].clone()
    }
}

/// ECS's `DaemonTaskDefinition` shape of a stored record.
fn shape(record: &Value, in_use: &[Value]) -> Value {
    let mut shape = json!({
        "daemonTaskDefinitionArn": record["taskDefinitionArn"],
        "family": record["family"],
        "revision": record["revision"],
        "status": status(record, in_use),
        "registeredAt": record["registeredAt"],
        "pidMode": record["daemon"]["pidMode"],
        "ipcMode": record["daemon"]["ipcMode"],
    });
    for member in [
        "taskRoleArn",
        "executionRoleArn",
        "containerDefinitions",
        "volumes",
        "cpu",
        "memory",
    ] {
        if let Some(value) = record["document"].get(member) {
            shape[member] = value.clone();
        }
    }
    if let Some(at) = record.get("deleteRequestedAt") {
        shape["deleteRequestedAt"] = at.clone();
    }
    shape
}

/// The stored record a `daemonTaskDefinition` member names.
pub fn find_record(api: &Api, given: &str) -> Result<(Value, u64), ApiError> {
    Ok(find(api.control.store.as_ref(), given)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeDaemonTaskDefinition {
    daemon_task_definition: String,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeDaemonTaskDefinition = parse(body)?;
    let (record, _) = find_record(api, &request.daemon_task_definition)?;
    let in_use = super::daemons::definitions_in_use(api)?;
    Ok(json!({"daemonTaskDefinition": shape(&record, &in_use)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDaemonTaskDefinitions {
    family_prefix: Option<String>,
    family: Option<String>,
    revision: Option<String>,
    status: Option<String>,
    sort: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListDaemonTaskDefinitions = parse(body.clone())?;
    let status = request.status.as_deref().unwrap_or("ACTIVE");
    if !matches!(status, "ACTIVE" | "DELETE_IN_PROGRESS" | "ALL") {
        return Err(ApiError::invalid(format!(
            "status: must be ACTIVE, DELETE_IN_PROGRESS or ALL (got {status})"
        )));
    }
    let last_only = match request.revision.as_deref() {
        None => false,
        Some("LAST_REGISTERED") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "revision: must be LAST_REGISTERED (got {other})"
            )));
        }
    };
    let in_use = super::daemons::definitions_in_use(api)?;
    let mut records: Vec<Value> = api
        .control
        .store
        .list("daemon-taskdefs/")?
        .into_iter()
        .map(|(_, v)| v.value)
        .map(|mut r| {
            r["status"] = self::status(&r, &in_use);
            r
        })
        .filter(|r| r["status"] != "DELETED" || status == "ALL")
        .filter(|r| status == "ALL" || r["status"] == status)
        .filter(|r| {
            let family = r["family"].as_str().unwrap_or_default();
            request.family.as_deref().is_none_or(|f| f == family)
                && request
                    .family_prefix
                    .as_deref()
                    .is_none_or(|p| family.starts_with(p))
        })
        .collect();
    if last_only {
        // Keys sort by family, then revision: the last of each family is its latest.
        let mut latest: Vec<Value> = Vec::new();
        for record in records {
            if latest
                .last()
                .is_some_and(|l| l["family"] == record["family"])
            {
                latest.pop();
            }
            latest.push(record);
        }
        records = latest;
    }
    if request.sort.as_deref() == Some("DESC") {
        records.reverse();
    }
    let summaries: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut summary = json!({
                "arn": r["taskDefinitionArn"],
                "registeredAt": r["registeredAt"],
                "status": r["status"],
            });
            if let Some(at) = r.get("deleteRequestedAt") {
                summary["deleteRequestedAt"] = at.clone();
            }
            summary
        })
        .collect();
    let (items, next) = page(&body, summaries)?;
    Ok(paged("daemonTaskDefinitions", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteDaemonTaskDefinition {
    daemon_task_definition: String,
}

/// Deletion: the revision takes no new daemons at once; it reads DELETE_IN_PROGRESS while a
/// daemon's current revision runs it, DELETED after (see [`status`]).
pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteDaemonTaskDefinition = parse(body)?;
    let given = &request.daemon_task_definition;
    if !crate::arn::resource_name(given, crate::control::daemon_definitions::ARN_KIND).contains(':')
    {
        return Err(ApiError::invalid(
            "daemonTaskDefinition: name a revision (family:revision or an ARN)",
        ));
    }
    let (mut record, revision) = find_record(api, given)?;
    if record["status"] != "ACTIVE" {
        return Err(ApiError::client(format!(
            "The daemon task definition is not ACTIVE ({}): {given}",
            record["status"].as_str().unwrap_or_default()
        )));
    }
    let arn = record["taskDefinitionArn"].clone();
    record["status"] = json!("DELETE_IN_PROGRESS");
    record["deleteRequestedAt"] = json!(timestamp());
    let family = record["family"].as_str().unwrap_or_default().to_string();
    let number = record["revision"].as_u64().unwrap_or_default();
    api.control
        .store
        .put(&key(&family, number), &record, Expect::Revision(revision))?;
    Ok(json!({"daemonTaskDefinitionArn": arn}))
}
