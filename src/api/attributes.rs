//! PutAttributes, DeleteAttributes, ListAttributes: custom attributes on container instances
//! (hosts), as ECS keeps them. They are real placement input: `memberOf` constraints,
//! `spread` by attribute and capacity provider pools (`wasmgate.pool`) see them at once, and
//! they survive the host's agent rejoining.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, container_instances, page, paged, parse};
use crate::control::hosts::HostRecord;

/// ECS's limit of custom attributes on one resource.
const MAX_CUSTOM: usize = 10;
/// ECS's limit of attributes in one call.
const MAX_PER_CALL: usize = 10;
/// The one kind of target ECS has.
const TARGET_TYPE: &str = "container-instance";

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Attribute {
    name: String,
    value: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
}

/// ECS's rules for attribute names and values; `path` names the entry.
fn check(path: &str, attribute: &Attribute, putting: bool) -> Result<(), ApiError> {
    let name = &attribute.name;
    let name_ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/\\.".contains(c));
    if !name_ok {
        return Err(ApiError::invalid(format!(
            "{path}.name: 1-128 letters, digits, hyphens, underscores, slashes, backslashes \
             and periods (got {name:?})"
        )));
    }
    if putting && name.starts_with("ecs.") {
        return Err(ApiError::invalid(format!(
            "{path}.name: attributes that begin with ecs. are Amazon ECS's own and cannot be \
             changed ({name})"
        )));
    }
    if let Some(value) = &attribute.value {
        let value_ok = (1..=128).contains(&value.len())
            && value.trim() == value
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@/\\: ".contains(c));
        if !value_ok {
            return Err(ApiError::invalid(format!(
                "{path}.value: 1-128 letters, digits, hyphens, underscores, periods, at signs, \
                 slashes, backslashes, colons or spaces, not starting or ending with a space \
                 (got {value:?})"
            )));
        }
    }
    if let Some(kind) = &attribute.target_type
        && kind != TARGET_TYPE
    {
        return Err(ApiError::invalid(format!(
            "{path}.targetType: must be {TARGET_TYPE} (got {kind})"
        )));
    }
    Ok(())
}

/// The host an attribute's `targetId` names in `cluster`, or ECS's TargetNotFoundException.
fn target(
    api: &Api,
    cluster: &str,
    path: &str,
    attribute: &Attribute,
) -> Result<HostRecord, ApiError> {
    let Some(id) = attribute.target_id.as_deref() else {
        return Err(ApiError::invalid(format!(
            "{path}.targetId: required (the container instance's ARN or id)"
        )));
    };
    container_instances::find(api, cluster, id)?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::TargetNotFoundException,
            format!("Could not find {id}. The target is not in the cluster {cluster}."),
        )
    })
}

fn attribute_shape(api: &Api, host: &HostRecord, name: &str, value: Option<&str>) -> Value {
    let mut shape = json!({
        "name": name,
        "targetType": TARGET_TYPE,
        "targetId": container_instances::host_arn(api, host),
    });
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        shape["value"] = json!(value);
    }
    shape
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeAttributes {
    cluster: Option<String>,
    attributes: Vec<Attribute>,
}

fn read_change(
    api: &Api,
    body: Value,
    putting: bool,
) -> Result<(String, Vec<(HostRecord, Attribute)>), ApiError> {
    let request: ChangeAttributes = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if request.attributes.is_empty() || request.attributes.len() > MAX_PER_CALL {
        return Err(ApiError::invalid(format!(
            "attributes: 1 to {MAX_PER_CALL} attributes in one call (got {})",
            request.attributes.len()
        )));
    }
    let mut targets = Vec::new();
    for (i, attribute) in request.attributes.into_iter().enumerate() {
        let path = format!("attributes[{i}]");
        check(&path, &attribute, putting)?;
        let host = target(api, &cluster, &path, &attribute)?;
        targets.push((host, attribute));
    }
    Ok((cluster, targets))
}

pub fn put(api: &Api, body: Value) -> Result<Value, ApiError> {
    let (_, targets) = read_change(api, body, true)?;
    // The limit holds per host for the whole call: check before writing any.
    let mut after: std::collections::HashMap<
        String,
        std::collections::BTreeMap<String, Option<String>>,
    > = Default::default();
    for (host, attribute) in &targets {
        let custom = after
            .entry(host.id.clone())
            .or_insert_with(|| host.custom_attributes.clone());
        custom.insert(attribute.name.clone(), attribute.value.clone());
        if custom.len() > MAX_CUSTOM {
            return Err(ApiError::new(
                ErrorKind::AttributeLimitExceededException,
                format!(
                    "You can apply up to {MAX_CUSTOM} custom attributes for each resource \
                     ({} would have {}).",
                    container_instances::host_arn(api, host),
                    custom.len()
                ),
            ));
        }
    }
    apply(api, &targets, |custom, attribute| {
        custom.insert(attribute.name.clone(), attribute.value.clone());
    })
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let (_, targets) = read_change(api, body, true)?;
    apply(api, &targets, |custom, attribute| {
        custom.remove(&attribute.name);
    })
}

/// Applies `change` to each target host's custom attributes and answers the attributes.
fn apply(
    api: &Api,
    targets: &[(HostRecord, Attribute)],
    change: impl Fn(&mut std::collections::BTreeMap<String, Option<String>>, &Attribute),
) -> Result<Value, ApiError> {
    let mut answered = Vec::new();
    for (host, attribute) in targets {
        api.control.hosts.update_record(&host.id, |record| {
            change(&mut record.custom_attributes, attribute);
        })?;
        answered.push(attribute_shape(
            api,
            host,
            &attribute.name,
            attribute.value.as_deref(),
        ));
    }
    // Placement waiting for a host with (or without) this attribute may now find one.
    api.control.wake_scheduler();
    Ok(json!({"attributes": answered}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListAttributes {
    cluster: Option<String>,
    target_type: String,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    #[allow(dead_code)]
    max_results: Option<u64>,
    #[allow(dead_code)]
    next_token: Option<String>,
}

/// Every attribute of the cluster's container instances (ECS's own, the agents', and those
/// put), filtered by name and value.
pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListAttributes = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if request.target_type != TARGET_TYPE {
        return Err(ApiError::invalid(format!(
            "targetType: must be {TARGET_TYPE} (got {})",
            request.target_type
        )));
    }
    if request.attribute_value.is_some() && request.attribute_name.is_none() {
        return Err(ApiError::invalid(
            "attributeValue: can only be given with attributeName",
        ));
    }
    let mut found = Vec::new();
    for host in api.control.hosts.records()? {
        if host.cluster.as_deref() != Some(cluster.as_str())
            || host.status == crate::control::hosts::HostStatus::Inactive
        {
            continue;
        }
        for (name, value) in host.all_attributes() {
            if request.attribute_name.as_ref().is_some_and(|n| n != &name)
                || request
                    .attribute_value
                    .as_ref()
                    .is_some_and(|v| v != &value)
            {
                continue;
            }
            found.push(attribute_shape(api, &host, &name, Some(&value)));
        }
    }
    let (items, next) = page(&body, found)?;
    Ok(paged("attributes", items, next))
}
