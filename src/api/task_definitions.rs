//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! A revision is stored under `taskdefs/FAMILY/REVISION` (zero-padded, so keys sort by
//! revision) with the document as registered; `taskdef-families/FAMILY` holds the last revision
//! handed out, so revisions never repeat, even after deletion.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, arn, page, paged, parse, timestamp};
use crate::store::Expect;
use crate::taskdef::TaskDefinition;

use crate::control::definitions::key;

fn family_key(family: &str) -> String {
    format!("taskdef-families/{family}")
}

/// The ECS `TaskDefinition` shape: the document as registered plus what registration added.
fn shape(api: &Api, record: &Value) -> Value {
    let mut shape = record["document"].clone();
    let family = record["family"].as_str().unwrap_or_default();
    let revision = record["revision"].as_u64().unwrap_or_default();
    shape["taskDefinitionArn"] = json!(api.control.arns.task_definition(family, revision));
    shape["revision"] = json!(revision);
    shape["status"] = record["status"].clone();
    shape["registeredAt"] = record["registeredAt"].clone();
    shape["compatibilities"] = json!(["EC2", "FARGATE"]);
    shape["requiresAttributes"] = json!([]);
    for field in ["deregisteredAt", "deleteRequestedAt"] {
        if let Some(value) = record.get(field) {
            shape[field] = value.clone();
        }
    }
    if let Some(object) = shape.as_object_mut() {
        object.remove("tags");
    }
    shape
}

/// Hands out the next revision of the family whose counter is at `counter_key`; a
/// concurrent registration makes this retry, so no revision is handed out twice.
pub(super) fn next_revision(api: &Api, counter_key: &str) -> Result<u64, ApiError> {
    loop {
        let counter = api.control.store.get(counter_key)?;
        let next = counter
            .as_ref()
            .and_then(|c| c.value["lastRevision"].as_u64())
            .unwrap_or(0)
            + 1;
        let expected = counter.map_or(Expect::Absent, |c| Expect::Revision(c.revision));
        match api
            .control
            .store
            .put(counter_key, &json!({"lastRevision": next}), expected)
        {
            Ok(_) => return Ok(next),
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
}

pub fn register(api: &Api, body: Value) -> Result<Value, ApiError> {
    let tags = super::tags::given("tags", body.get("tags").cloned())?;
    let definition = TaskDefinition::from_value(body).map_err(|error| {
        let errors: Vec<String> = error
            .field_errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        ApiError::client(format!("Invalid task definition: {}", errors.join("; ")))
    })?;
    let family = definition.spec.family.clone();
    let revision = next_revision(api, &family_key(&family))?;
    let mut document = definition.raw;
    if let Some(object) = document.as_object_mut() {
        for output_only in [
            "taskDefinitionArn",
            "revision",
            "status",
            "registeredAt",
            "deregisteredAt",
            "deleteRequestedAt",
            "compatibilities",
            "requiresAttributes",
            "registeredBy",
            "tags",
        ] {
            object.remove(output_only);
        }
    }
    let record = json!({
        "family": family,
        "revision": revision,
        "status": "ACTIVE",
        "registeredAt": timestamp(),
        "document": document,
        "tags": tags,
    });
    api.control
        .store
        .put(&key(&family, revision), &record, Expect::Absent)?;
    Ok(json!({"taskDefinition": shape(api, &record), "tags": tags}))
}

/// The stored record a `taskDefinition` member names: `family` (latest ACTIVE revision),
/// `family:revision`, or an ARN.
pub fn find(api: &Api, given: &str) -> Result<(Value, u64), ApiError> {
    Ok(crate::control::definitions::find(
        api.control.store.as_ref(),
        given,
    )?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTaskDefinition {
    task_definition: String,
    #[serde(default)]
    include: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeTaskDefinition = parse(body)?;
    let (record, _) = find(api, &request.task_definition)?;
    let mut response = json!({"taskDefinition": shape(api, &record)});
    if request.include.iter().any(|i| i == "TAGS") {
        response["tags"] = record["tags"].clone();
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListTaskDefinitions {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListTaskDefinitions = parse(body.clone())?;
    let status = request.status.unwrap_or_else(|| "ACTIVE".into());
    let mut arns: Vec<Value> = api
        .control
        .store
        .list("taskdefs/")?
        .into_iter()
        .map(|(_, v)| v.value)
        .filter(|r| r["status"] == status.as_str())
        .filter(|r| {
            request
                .family_prefix
                .as_deref()
                .is_none_or(|p| r["family"].as_str().unwrap_or_default().starts_with(p))
        })
        .map(|r| {
            json!(api.control.arns.task_definition(
                r["family"].as_str().unwrap_or_default(),
                r["revision"].as_u64().unwrap_or_default()
            ))
        })
        .collect();
    if request.sort.as_deref() == Some("DESC") {
        arns.reverse();
    }
    let (items, next) = page(&body, arns)?;
    Ok(paged("taskDefinitionArns", items, next))
}

pub fn list_families(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListTaskDefinitions = parse(body.clone())?;
    let status = request.status.unwrap_or_else(|| "ACTIVE".into());
    let mut families: Vec<String> = Vec::new();
    for (_, v) in api.control.store.list("taskdefs/")? {
        let family = v.value["family"].as_str().unwrap_or_default().to_string();
        let matches = status == "ALL" || v.value["status"] == status.as_str();
        let prefixed = request
            .family_prefix
            .as_deref()
            .is_none_or(|p| family.starts_with(p));
        if matches && prefixed && families.last() != Some(&family) {
            families.push(family);
        }
    }
    families.dedup();
    let (items, next) = page(&body, families.into_iter().map(Value::from).collect())?;
    Ok(paged("families", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterTaskDefinition {
    task_definition: String,
}

pub fn deregister(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeregisterTaskDefinition = parse(body)?;
    if !arn::resource_name(&request.task_definition, "task-definition").contains(':') {
        return Err(ApiError::invalid(
            "taskDefinition: name a revision (family:revision or an ARN)",
        ));
    }
    let (mut record, revision) = find(api, &request.task_definition)?;
    if record["status"] == "ACTIVE" {
        record["status"] = json!("INACTIVE");
        record["deregisteredAt"] = json!(timestamp());
        let family = record["family"].as_str().unwrap_or_default().to_string();
        let number = record["revision"].as_u64().unwrap_or_default();
        api.control
            .store
            .put(&key(&family, number), &record, Expect::Revision(revision))?;
    }
    Ok(json!({"taskDefinition": shape(api, &record)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteTaskDefinitions {
    task_definitions: Vec<String>,
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteTaskDefinitions = parse(body)?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for given in request.task_definitions {
        match find(api, &given) {
            Ok((mut record, revision)) if record["status"] != "ACTIVE" => {
                record["status"] = json!("DELETE_IN_PROGRESS");
                record["deleteRequestedAt"] = json!(timestamp());
                let family = record["family"].as_str().unwrap_or_default().to_string();
                let number = record["revision"].as_u64().unwrap_or_default();
                api.control.store.put(&key(&family, number), &record, Expect::Revision(revision))?;
                deleted.push(shape(api, &record));
            }
            Ok(_) => failures.push(json!({"arn": given, "reason": "The specified task definition is still in ACTIVE status. Deregister it first."})),
            Err(_) => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"taskDefinitions": deleted, "failures": failures}))
}
