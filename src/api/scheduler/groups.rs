//! Schedule groups (Create/Get/Delete/ListScheduleGroups; `default` always exists, and
//! deleting a group deletes its schedules) and their tags (Tag/Untag/ListTagsForResource:
//! the model tags schedule groups only).

use serde_json::{Map, Value, json};

use super::record::{DEFAULT_GROUP, GROUPS, GroupRecord, group_arn, group_key};
use super::{Call, SchedulerError, check_name, page};
use crate::api::Api;
use crate::store::{Expect, StoreError};

/// The most tags a group holds.
const MAX_TAGS: usize = 200;

fn new_group(api: &Api, name: &str, tags: Vec<Value>) -> GroupRecord {
    let now = crate::records::timestamp();
    let mut shape = Map::new();
    shape.insert("Arn".into(), json!(group_arn(&api.control.arns, name)));
    shape.insert("CreationDate".into(), json!(now));
    shape.insert("LastModificationDate".into(), json!(now));
    shape.insert("Name".into(), json!(name));
    shape.insert("State".into(), json!("ACTIVE"));
    GroupRecord { shape, tags }
}

/// The group `name`; the `default` group is made the first time anything asks for it.
pub(super) fn find(api: &Api, name: &str) -> Result<Option<(GroupRecord, u64)>, SchedulerError> {
    let store = api.control.store.as_ref();
    if let Some(found) = crate::records::get::<GroupRecord>(store, &group_key(name))? {
        return Ok(Some(found));
    }
    if name != DEFAULT_GROUP {
        return Ok(None);
    }
    match crate::records::create(store, &group_key(name), &new_group(api, name, Vec::new())) {
        Ok(_) | Err(StoreError::Conflict { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(crate::records::get::<GroupRecord>(store, &group_key(name))?)
}

fn require(api: &Api, name: &str) -> Result<(GroupRecord, u64), SchedulerError> {
    find(api, name)?
        .ok_or_else(|| SchedulerError::not_found(format!("Schedule group {name} does not exist.")))
}

/// A `[{Key, Value}]` list, checked.
fn tags_of(member: &str, value: Option<&Value>) -> Result<Vec<Value>, SchedulerError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return Err(SchedulerError::member(
            member,
            value,
            "Member must be a list of {Key, Value}",
        ));
    };
    if items.len() > MAX_TAGS {
        return Err(SchedulerError::member(
            member,
            format!("{} tags", items.len()),
            format!("Member must have length less than or equal to {MAX_TAGS}"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let key = item.get("Key").and_then(Value::as_str).unwrap_or_default();
        let value = item.get("Value").and_then(Value::as_str);
        if key.is_empty() || key.chars().count() > 128 {
            return Err(SchedulerError::member(
                &format!("{member}.{}.member.key", i + 1),
                key,
                "Member must have length between 1 and 128",
            ));
        }
        if value.is_none_or(|v| v.is_empty() || v.chars().count() > 256) {
            return Err(SchedulerError::member(
                &format!("{member}.{}.member.value", i + 1),
                value.unwrap_or_default(),
                "Member must have length between 1 and 256",
            ));
        }
    }
    Ok(items.clone())
}

pub fn create(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = call.resource();
    check_name("name", name)?;
    let tags = tags_of("tags", call.body.get("Tags"))?;
    if name == DEFAULT_GROUP {
        return Err(SchedulerError::conflict(format!(
            "Schedule group {name} already exists."
        )));
    }
    match crate::records::create(
        api.control.store.as_ref(),
        &group_key(name),
        &new_group(api, name, tags),
    ) {
        Ok(_) => Ok(json!({"ScheduleGroupArn": group_arn(&api.control.arns, name)})),
        Err(StoreError::Conflict { .. }) => Err(SchedulerError::conflict(format!(
            "Schedule group {name} already exists."
        ))),
        Err(other) => Err(other.into()),
    }
}

pub fn get(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = call.resource();
    check_name("name", name)?;
    Ok(Value::Object(require(api, name)?.0.shape))
}

pub fn delete(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = call.resource();
    check_name("name", name)?;
    if name == DEFAULT_GROUP {
        return Err(SchedulerError::validation(
            "The default schedule group cannot be deleted.",
        ));
    }
    require(api, name)?;
    // Its schedules go first, so no schedule is ever left in a group that is gone.
    let deleted = super::schedules::delete_all_of(api, name)?;
    api.control.store.delete(&group_key(name), Expect::Any)?;
    tracing::info!(group = %name, schedules = deleted, "schedule group deleted");
    Ok(json!({}))
}

pub fn list(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    if let Some(prefix) = call.query("NamePrefix") {
        check_name("namePrefix", prefix)?;
    }
    find(api, DEFAULT_GROUP)?;
    let groups: Vec<Value> =
        crate::records::list::<GroupRecord>(api.control.store.as_ref(), GROUPS)?
            .into_iter()
            .filter(|g| {
                call.query("NamePrefix").is_none_or(|p| {
                    g.shape
                        .get("Name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with(p))
                })
            })
            .map(|g| Value::Object(g.shape))
            .collect();
    let (items, next) = page(call, groups)?;
    let mut answer = json!({"ScheduleGroups": items});
    if let Some(next) = next {
        answer["NextToken"] = json!(next);
    }
    Ok(answer)
}

/// The group a tag call's ResourceArn names (the model tags schedule groups only).
fn tagged_group(api: &Api, call: &Call) -> Result<String, SchedulerError> {
    let arn = call.resource();
    let prefix = format!(
        "arn:aws:scheduler:{}:{}:schedule-group/",
        api.control.arns.region, api.control.arns.account
    );
    let name = arn.strip_prefix(&prefix).ok_or_else(|| {
        SchedulerError::member(
            "resourceArn",
            arn,
            "Member must be a schedule group's ARN (arn:aws:scheduler:REGION:ACCOUNT:schedule-group/NAME)",
        )
    })?;
    check_name("resourceArn", name)?;
    require(api, name)?;
    Ok(name.to_string())
}

fn change_tags(
    api: &Api,
    name: &str,
    change: impl Fn(&mut Vec<Value>),
) -> Result<(), SchedulerError> {
    let mut too_many = false;
    crate::records::update::<GroupRecord>(api.control.store.as_ref(), &group_key(name), |group| {
        let mut tags = group.tags.clone();
        change(&mut tags);
        too_many = tags.len() > MAX_TAGS;
        if too_many || tags == group.tags {
            return false;
        }
        group.tags = tags;
        true
    })?;
    if too_many {
        return Err(SchedulerError::validation(format!(
            "a schedule group holds at most {MAX_TAGS} tags"
        )));
    }
    Ok(())
}

pub fn tag(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = tagged_group(api, call)?;
    if call.body.get("Tags").is_none() {
        return Err(SchedulerError::validation(
            "1 validation error detected: Tags is required",
        ));
    }
    let given = tags_of("tags", call.body.get("Tags"))?;
    change_tags(api, &name, |tags| {
        for tag in &given {
            tags.retain(|t| t["Key"] != tag["Key"]);
            tags.push(tag.clone());
        }
    })?;
    Ok(json!({}))
}

pub fn untag(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = tagged_group(api, call)?;
    let keys: Vec<String> = call
        .query_all("TagKeys")
        .into_iter()
        .map(String::from)
        .collect();
    change_tags(api, &name, |tags| {
        tags.retain(|t| !keys.iter().any(|k| t["Key"] == k.as_str()))
    })?;
    Ok(json!({}))
}

pub fn list_tags(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = tagged_group(api, call)?;
    let (group, _) = require(api, &name)?;
    Ok(json!({"Tags": group.tags}))
}
