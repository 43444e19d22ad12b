//! TagResource, UntagResource, ListTagsForResource on clusters, task definitions, tasks,
//! services, task sets, container instances and capacity providers, with ECS's limits: at
//! most 50 tags a resource, keys of 1-128 characters, values of at most 256, and the `aws:`
//! prefix reserved.
//!
//! Every taggable record keeps its tags as ECS's `[{key, value}]` in a `tags` member, so one
//! compare-and-swap update of the stored JSON serves every kind.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, parse};

/// ECS's limit of tags on one resource.
const MAX_TAGS: usize = 50;

/// One tag, as ECS's API spells it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// Checks tags given to a create call or to TagResource; `field` names the member.
pub fn check(field: &str, tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "{field}: at most {MAX_TAGS} tags a resource (got {})",
            tags.len()
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        let chars = tag.key.chars().count();
        if !(1..=128).contains(&chars) {
            return Err(ApiError::invalid(format!(
                "{field}[{i}].key: must be 1 to 128 characters (got {chars})"
            )));
        }
        if tag.value.chars().count() > 256 {
            return Err(ApiError::invalid(format!(
                "{field}[{i}].value: must be at most 256 characters"
            )));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid(format!(
                "{field}[{i}].key: the aws: prefix is reserved for AWS use ({})",
                tag.key
            )));
        }
    }
    Ok(())
}

/// The `tags` member of a create call, checked; `[]` when absent.
pub fn given(field: &str, tags: Option<Value>) -> Result<Value, ApiError> {
    let Some(tags) = tags.filter(|t| !t.is_null()) else {
        return Ok(json!([]));
    };
    let parsed: Vec<Tag> = serde_json::from_value(tags)
        .map_err(|e| ApiError::invalid(format!("{field}: not a list of {{key, value}}: {e}")))?;
    check(field, &parsed)?;
    Ok(json!(parsed))
}

/// Where a resource's tags are: the store key of its record, and the id of the task set
/// (kept in its service's record) when it is one.
struct Target {
    key: String,
    task_set: Option<String>,
}

/// The tags member of `record` that `task_set` names (the record's own when `None`).
fn tags_slot<'a>(record: &'a mut Value, task_set: Option<&str>) -> Option<&'a mut Value> {
    match task_set {
        None => Some(&mut record["tags"]),
        Some(id) => record["taskSets"]
            .as_array_mut()?
            .iter_mut()
            .find(|set| set["id"] == id)
            .map(|set| &mut set["tags"]),
    }
}

/// The store key of the resource an ARN names, and the error when it is not there.
fn resource_key(api: &Api, arn: &str) -> Result<(Target, ApiError), ApiError> {
    let not_found = || {
        ApiError::invalid(format!(
            "resourceArn: the specified resource is not found: {arn}"
        ))
    };
    let scope = &api.control.arns;
    let prefix = format!("arn:aws:ecs:{}:{}:", scope.region, scope.account);
    let resource = arn.strip_prefix(&prefix).ok_or_else(|| {
        ApiError::invalid(format!(
            "resourceArn: not an ARN of this ECS ({prefix}...): {arn}"
        ))
    })?;
    let (kind, rest) = resource.split_once('/').ok_or_else(not_found)?;
    let parts: Vec<&str> = rest.split('/').collect();
    // A task set's id is `ecs-svc/DIGITS`: its ARN is `task-set/CLUSTER/SERVICE/ecs-svc/DIGITS`.
    if kind == "task-set" {
        let mut parts = rest.splitn(3, '/');
        let (Some(cluster), Some(service), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(not_found());
        };
        let target = Target {
            key: crate::control::routes::service_key(cluster, service),
            task_set: Some(id.to_string()),
        };
        return Ok((target, not_found()));
    }
    let (key, missing) = match (kind, parts.as_slice()) {
        ("cluster", [name]) => (
            format!("clusters/{name}"),
            ApiError::new(ErrorKind::ClusterNotFoundException, "Cluster not found."),
        ),
        ("task-definition", [name]) => {
            let (family, revision) = name.rsplit_once(':').ok_or_else(not_found)?;
            let revision: u64 = revision.parse().map_err(|_| not_found())?;
            (
                crate::control::definitions::key(family, revision),
                ApiError::client(format!("Unable to describe task definition: {arn}")),
            )
        }
        ("task", [_cluster, id]) => (crate::records::task_key(id), not_found()),
        ("service", [cluster, name]) => (
            crate::control::routes::service_key(cluster, name),
            ApiError::new(ErrorKind::ServiceNotFoundException, "Service not found."),
        ),
        ("daemon", [cluster, name]) => (
            crate::records::daemon::daemon_key(cluster, name),
            ApiError::new(ErrorKind::DaemonNotFoundException, "Daemon not found."),
        ),
        ("gateway", [name]) => (
            format!("gateways/{name}"),
            ApiError::new(ErrorKind::GatewayNotFoundException, "Gateway not found."),
        ),
        ("capacity-provider", [name]) => (
            crate::control::providers::provider_key(name),
            ApiError::client(format!(
                "The specified capacity provider does not exist: {name}"
            )),
        ),
        ("container-instance", [id]) | ("container-instance", [_, id]) => {
            (crate::control::hosts::host_key(id), not_found())
        }
        _ => return Err(not_found()),
    };
    Ok((
        Target {
            key,
            task_set: None,
        },
        missing,
    ))
}

/// The tags a stored value holds.
fn tags_of(tags: &Value) -> Vec<Tag> {
    serde_json::from_value(tags.clone()).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResource {
    resource_arn: String,
    tags: Vec<Tag>,
}

pub fn tag(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: TagResource = parse(body)?;
    check("tags", &request.tags)?;
    let mut too_many = None;
    change(api, &request.resource_arn, |tags| {
        for tag in &request.tags {
            match tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value.clone(),
                None => tags.push(tag.clone()),
            }
        }
        if tags.len() > MAX_TAGS {
            too_many = Some(tags.len());
            return false;
        }
        true
    })?;
    if let Some(count) = too_many {
        return Err(ApiError::invalid(format!(
            "tags: a resource holds at most {MAX_TAGS} tags (this would make {count})"
        )));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResource {
    resource_arn: String,
    tag_keys: Vec<String>,
}

pub fn untag(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UntagResource = parse(body)?;
    change(api, &request.resource_arn, |tags| {
        let before = tags.len();
        tags.retain(|t| !request.tag_keys.contains(&t.key));
        tags.len() != before
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsForResource {
    resource_arn: String,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListTagsForResource = parse(body)?;
    let (target, missing) = resource_key(api, &request.resource_arn)?;
    let mut found = api.control.store.get(&target.key)?.ok_or(missing.clone())?;
    let tags = tags_slot(&mut found.value, target.task_set.as_deref()).ok_or(missing)?;
    Ok(json!({"tags": tags_of(tags)}))
}

/// Applies `edit` to the tags of the resource `arn` names, writing them back if it says it
/// changed them (one compare-and-swap update of the record, retried on a concurrent write).
fn change(
    api: &Api,
    arn: &str,
    mut edit: impl FnMut(&mut Vec<Tag>) -> bool,
) -> Result<(), ApiError> {
    let (target, missing) = resource_key(api, arn)?;
    let mut found = false;
    crate::records::update::<Value>(api.control.store.as_ref(), &target.key, |record| {
        let Some(slot) = tags_slot(record, target.task_set.as_deref()) else {
            return false;
        };
        found = true;
        let mut tags = tags_of(slot);
        if !edit(&mut tags) {
            return false;
        }
        *slot = json!(tags);
        true
    })?;
    if found { Ok(()) } else { Err(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_limits_name_the_tag_at_fault() {
        let tag = |key: &str, value: &str| Tag {
            key: key.into(),
            value: value.into(),
        };
        assert!(check("tags", &[tag("team", "web")]).is_ok());
        let error = check("tags", &[tag("ok", ""), tag("", "x")]).unwrap_err();
        assert!(
            error.message.starts_with("tags[1].key"),
            "{}",
            error.message
        );
        let error = check("tags", &[tag("aws:secret", "x")]).unwrap_err();
        assert!(error.message.contains("reserved"), "{}", error.message);
        let long = "v".repeat(257);
        assert!(check("tags", &[tag("k", &long)]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "")).collect();
        assert!(check("tags", &many).is_err());
    }
}
