//! CreateSchedule, GetSchedule, UpdateSchedule, DeleteSchedule, ListSchedules: EventBridge
//! Scheduler's members checked as the service checks them (ValidationException naming the
//! member), stored in GetSchedule's shape beside the firing loop's bookkeeping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::record::{self, DEFAULT_GROUP, ScheduleRecord, schedule_arn, schedule_key};
use super::{Call, SchedulerError, check_name, page};
use crate::api::Api;
use crate::schedule::{Timing, TimingError};
use crate::store::{Expect, StoreError};

/// The members of CreateSchedule and UpdateSchedule (the name is the path's).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ScheduleInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    action_after_completion: Option<String>,
    #[serde(skip_serializing)]
    client_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date: Option<f64>,
    flexible_time_window: FlexibleTimeWindow,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_arn: Option<String>,
    schedule_expression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_expression_timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    target: Target,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FlexibleTimeWindow {
    mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_window_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Target {
    arn: String,
    role_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_config: Option<DeadLetterConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ecs_parameters: Option<EcsParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_policy: Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_bridge_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kinesis_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sage_maker_pipeline_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqs_parameters: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeadLetterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_event_age_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_retry_attempts: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EcsParameters {
    task_definition_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity_provider_strategy: Option<Vec<Value>>,
    #[serde(
        rename = "EnableECSManagedTags",
        skip_serializing_if = "Option::is_none"
    )]
    enable_ecs_managed_tags: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_execute_command: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_configuration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement_constraints: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement_strategy: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    propagate_tags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_count: Option<i64>,
}

/// `Target.EcsParameters.TaskCount` → `target.ecsParameters.taskCount`, as the service
/// names members in its messages.
fn member_path(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            let mut chars = segment.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(".")
}

fn parse_input(body: &Value) -> Result<ScheduleInput, SchedulerError> {
    let mut body = body.clone();
    // The path names the schedule; SDKs do not repeat it in the body, but a hand-written
    // request might.
    if let Some(members) = body.as_object_mut() {
        members.remove("Name");
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            SchedulerError::validation(format!("1 validation error detected: {inner}"))
        } else {
            SchedulerError::member(&member_path(&path), "", inner)
        }
    })
}

fn one_of(member: &str, value: &str, allowed: &[&str]) -> Result<(), SchedulerError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(SchedulerError::member(
        member,
        value,
        format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ),
    ))
}

fn length(member: &str, value: &str, min: usize, max: usize) -> Result<(), SchedulerError> {
    if (min..=max).contains(&value.chars().count()) {
        return Ok(());
    }
    Err(SchedulerError::member(
        member,
        value,
        format!("Member must have length between {min} and {max}"),
    ))
}

fn range(member: &str, value: i64, min: i64, max: i64) -> Result<(), SchedulerError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(SchedulerError::member(
        member,
        value,
        format!("Member must have value between {min} and {max}"),
    ))
}

fn at_most<T>(member: &str, items: &[T], max: usize) -> Result<(), SchedulerError> {
    if items.len() <= max {
        return Ok(());
    }
    Err(SchedulerError::member(
        member,
        format!("{} items", items.len()),
        format!("Member must have length less than or equal to {max}"),
    ))
}

/// `arn:aws:iam::123456789012:role/NAME`-shaped.
fn check_arn(
    member: &str,
    value: &str,
    service: &str,
    resource: &str,
) -> Result<(), SchedulerError> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with(resource);
    if ok {
        return Ok(());
    }
    Err(SchedulerError::member(
        member,
        value,
        format!("Member must be an ARN of the form arn:aws:{service}:REGION:ACCOUNT:{resource}..."),
    ))
}

/// The cluster name of an ECS cluster ARN.
pub(super) fn cluster_of(target_arn: &str) -> Option<&str> {
    let parts: Vec<&str> = target_arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "ecs" {
        return None;
    }
    parts[5].strip_prefix("cluster/").filter(|n| !n.is_empty())
}

/// Every check of the service on a schedule's members, and its timing.
fn check(input: &ScheduleInput, now: i64) -> Result<Timing, SchedulerError> {
    length("scheduleExpression", &input.schedule_expression, 1, 256)?;
    if let Some(zone) = &input.schedule_expression_timezone {
        length("scheduleExpressionTimezone", zone, 1, 50)?;
    }
    if let Some(description) = &input.description {
        length("description", description, 0, 512)?;
    }
    if let Some(group) = &input.group_name {
        check_name("groupName", group)?;
    }
    if let Some(state) = &input.state {
        one_of("state", state, &["ENABLED", "DISABLED"])?;
    }
    if let Some(action) = &input.action_after_completion {
        one_of("actionAfterCompletion", action, &["NONE", "DELETE"])?;
    }
    if let Some(token) = &input.client_token {
        length("clientToken", token, 1, 64)?;
    }
    if let Some(key) = &input.kms_key_arn {
        check_arn("kmsKeyArn", key, "kms", "")?;
    }
    let window = &input.flexible_time_window;
    one_of(
        "flexibleTimeWindow.mode",
        &window.mode,
        &["OFF", "FLEXIBLE"],
    )?;
    match (window.mode.as_str(), window.maximum_window_in_minutes) {
        ("FLEXIBLE", None) => {
            return Err(SchedulerError::validation(
                "MaximumWindowInMinutes is required when the flexible time window's Mode is FLEXIBLE",
            ));
        }
        ("FLEXIBLE", Some(minutes)) => range(
            "flexibleTimeWindow.maximumWindowInMinutes",
            minutes,
            1,
            1440,
        )?,
        (_, Some(_)) => {
            return Err(SchedulerError::validation(
                "MaximumWindowInMinutes must not be given when the flexible time window's Mode is OFF",
            ));
        }
        _ => {}
    }
    check_target(&input.target)?;
    let timing = Timing::new(
        &input.schedule_expression,
        input.schedule_expression_timezone.as_deref(),
        input.start_date.map(|d| d.floor() as i64),
        input.end_date.map(|d| d.floor() as i64),
        now,
    )
    .map_err(|error| match error {
        TimingError::Expression(e) => {
            SchedulerError::validation(format!("Invalid Schedule Expression {e}"))
        }
        TimingError::Zone(zone) => SchedulerError::member(
            "scheduleExpressionTimezone",
            zone,
            "Member must be a time zone of the IANA database (such as America/New_York or UTC)",
        ),
        TimingError::EndBeforeStart => SchedulerError::validation(
            "The EndDate you specify cannot be earlier than the StartDate.",
        ),
    })?;
    if let Some(end) = input.end_date
        && !timing.expression.is_one_time()
        && (end as i64) < now
    {
        return Err(SchedulerError::validation(
            "The EndDate you specify cannot be earlier than the current date.",
        ));
    }
    Ok(timing)
}

fn check_target(target: &Target) -> Result<(), SchedulerError> {
    length("target.arn", &target.arn, 1, 1600)?;
    check_arn("target.roleArn", &target.role_arn, "iam", "role/")?;
    if cluster_of(&target.arn).is_none() {
        return Err(SchedulerError::member(
            "target.arn",
            &target.arn,
            "wasmgate runs ECS targets only: the ARN of a cluster (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME)",
        ));
    }
    for (member, given) in [
        (
            "target.eventBridgeParameters",
            target.event_bridge_parameters.is_some(),
        ),
        (
            "target.kinesisParameters",
            target.kinesis_parameters.is_some(),
        ),
        (
            "target.sageMakerPipelineParameters",
            target.sage_maker_pipeline_parameters.is_some(),
        ),
        ("target.sqsParameters", target.sqs_parameters.is_some()),
    ] {
        if given {
            return Err(SchedulerError::validation(format!(
                "{member} is for another target type; an ECS cluster target takes EcsParameters"
            )));
        }
    }
    let Some(ecs) = &target.ecs_parameters else {
        return Err(SchedulerError::validation(
            "target.ecsParameters is required for an ECS cluster target",
        ));
    };
    length(
        "target.ecsParameters.taskDefinitionArn",
        &ecs.task_definition_arn,
        1,
        1600,
    )?;
    if let Some(count) = ecs.task_count {
        range("target.ecsParameters.taskCount", count, 1, 10)?;
    }
    if let Some(launch_type) = &ecs.launch_type {
        one_of(
            "target.ecsParameters.launchType",
            launch_type,
            &["EC2", "FARGATE", "EXTERNAL"],
        )?;
    }
    if ecs.launch_type.is_some()
        && ecs
            .capacity_provider_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(SchedulerError::validation(
            "target.ecsParameters: LaunchType and CapacityProviderStrategy cannot both be given",
        ));
    }
    if let Some(strategy) = &ecs.capacity_provider_strategy {
        at_most("target.ecsParameters.capacityProviderStrategy", strategy, 6)?;
    }
    if let Some(constraints) = &ecs.placement_constraints {
        at_most("target.ecsParameters.placementConstraints", constraints, 10)?;
    }
    if let Some(strategy) = &ecs.placement_strategy {
        at_most("target.ecsParameters.placementStrategy", strategy, 5)?;
    }
    if let Some(tags) = &ecs.tags {
        at_most("target.ecsParameters.tags", tags, 50)?;
    }
    if let Some(propagate) = &ecs.propagate_tags {
        one_of(
            "target.ecsParameters.propagateTags",
            propagate,
            &["TASK_DEFINITION"],
        )?;
    }
    if let Some(group) = &ecs.group {
        length("target.ecsParameters.group", group, 1, 255)?;
    }
    if let Some(reference) = &ecs.reference_id {
        length("target.ecsParameters.referenceId", reference, 0, 1024)?;
    }
    if let Some(input) = &target.input {
        length("target.input", input, 1, usize::MAX)?;
        let parsed: Result<Value, _> = serde_json::from_str(input);
        if !parsed.is_ok_and(|v| v.is_object()) {
            return Err(SchedulerError::member(
                "target.input",
                input,
                "an ECS target's Input is RunTask's overrides as a JSON object (such as \
                 {\"containerOverrides\": [...]})",
            ));
        }
    }
    if let Some(retry) = &target.retry_policy {
        if let Some(age) = retry.maximum_event_age_in_seconds {
            range(
                "target.retryPolicy.maximumEventAgeInSeconds",
                age,
                60,
                86_400,
            )?;
        }
        if let Some(attempts) = retry.maximum_retry_attempts {
            range("target.retryPolicy.maximumRetryAttempts", attempts, 0, 185)?;
        }
    }
    if let Some(arn) = target
        .dead_letter_config
        .as_ref()
        .and_then(|d| d.arn.as_ref())
    {
        check_arn("target.deadLetterConfig.arn", arn, "sqs", "")?;
    }
    Ok(())
}

/// GetSchedule's shape of `input` named `name` in `group`, with the service's defaults.
fn shape_of(
    api: &Api,
    input: &ScheduleInput,
    name: &str,
    group: &str,
    created: f64,
) -> Map<String, Value> {
    let mut shape = match serde_json::to_value(input) {
        Ok(Value::Object(members)) => members,
        _ => Map::new(),
    };
    let now = crate::records::timestamp();
    shape.insert(
        "Arn".into(),
        json!(schedule_arn(&api.control.arns, group, name)),
    );
    shape.insert("Name".into(), json!(name));
    shape.insert("GroupName".into(), json!(group));
    shape.entry("State").or_insert(json!("ENABLED"));
    shape
        .entry("ActionAfterCompletion")
        .or_insert(json!("NONE"));
    shape.insert("CreationDate".into(), json!(created));
    shape.insert("LastModificationDate".into(), json!(now));
    if let Some(target) = shape.get_mut("Target").and_then(Value::as_object_mut) {
        let retry = target.entry("RetryPolicy").or_insert(json!({}));
        if let Some(retry) = retry.as_object_mut() {
            retry
                .entry("MaximumEventAgeInSeconds")
                .or_insert(json!(86_400));
            retry.entry("MaximumRetryAttempts").or_insert(json!(185));
        }
    }
    shape
}

/// The group a call names (`default` when none), which must exist.
pub(super) fn existing_group(api: &Api, group: Option<&str>) -> Result<String, SchedulerError> {
    let group = group.unwrap_or(DEFAULT_GROUP);
    check_name("groupName", group)?;
    if super::groups::find(api, group)?.is_none() {
        return Err(SchedulerError::not_found(format!(
            "Schedule group {group} does not exist."
        )));
    }
    Ok(group.to_string())
}

fn name_of(call: &Call) -> Result<&str, SchedulerError> {
    let name = call.resource();
    check_name("name", name)?;
    Ok(name)
}

pub fn create(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = name_of(call)?;
    let input = parse_input(&call.body)?;
    let now = record::schedule_now(api.control.store.as_ref());
    check(&input, now)?;
    let group = existing_group(api, input.group_name.as_deref())?;
    let key = schedule_key(&group, name);
    let arn = schedule_arn(&api.control.arns, &group, name);
    if let Some((existing, _)) =
        crate::records::get::<ScheduleRecord>(api.control.store.as_ref(), &key)?
    {
        if input.client_token.is_some() && existing.client_token == input.client_token {
            return Ok(json!({"ScheduleArn": arn}));
        }
        return Err(SchedulerError::conflict(format!(
            "Schedule {name} already exists."
        )));
    }
    let record = ScheduleRecord {
        shape: shape_of(api, &input, name, &group, crate::records::timestamp()),
        anchor: now,
        // Firings at or after the anchor (a rate without StartDate fires at once).
        cursor: now - 1,
        firings: Vec::new(),
        events: Vec::new(),
        client_token: input.client_token.clone(),
    };
    match crate::records::create(api.control.store.as_ref(), &key, &record) {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(SchedulerError::conflict(format!(
                "Schedule {name} already exists."
            )));
        }
        Err(other) => return Err(other.into()),
    }
    tracing::info!(schedule = %arn, expression = %input.schedule_expression, "schedule created");
    Ok(json!({"ScheduleArn": arn}))
}

/// The stored schedule `name` of `group`, or ResourceNotFoundException.
pub(super) fn find(
    api: &Api,
    group: &str,
    name: &str,
) -> Result<(ScheduleRecord, u64), SchedulerError> {
    crate::records::get::<ScheduleRecord>(api.control.store.as_ref(), &schedule_key(group, name))?
        .ok_or_else(|| SchedulerError::not_found(format!("Schedule {name} does not exist.")))
}

pub fn get(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = name_of(call)?;
    let group = existing_group(api, call.query("groupName"))?;
    let (record, _) = find(api, &group, name)?;
    Ok(Value::Object(record.shape))
}

pub fn update(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = name_of(call)?;
    let input = parse_input(&call.body)?;
    let now = record::schedule_now(api.control.store.as_ref());
    check(&input, now)?;
    let group = existing_group(api, input.group_name.as_deref())?;
    let key = schedule_key(&group, name);
    let store = api.control.store.as_ref();
    loop {
        let (mut record, revision) = find(api, &group, name)?;
        let created = record
            .shape
            .get("CreationDate")
            .and_then(Value::as_f64)
            .unwrap_or_default();
        // An update replaces every member (as the service does); what was fired stays fired,
        // and a rate counts again from now.
        record.shape = shape_of(api, &input, name, &group, created);
        record.anchor = now;
        record.cursor = record.cursor.max(now - 1);
        match crate::records::put(store, &key, &record, revision) {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Ok(json!({"ScheduleArn": schedule_arn(&api.control.arns, &group, name)}))
}

pub fn delete(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let name = name_of(call)?;
    let group = existing_group(api, call.query("groupName"))?;
    find(api, &group, name)?;
    api.control
        .store
        .delete(&schedule_key(&group, name), Expect::Any)?;
    tracing::info!(schedule = %name, %group, "schedule deleted");
    Ok(json!({}))
}

pub fn list(api: &Api, call: &Call) -> Result<Value, SchedulerError> {
    let group = call.query("ScheduleGroup");
    if let Some(group) = group {
        existing_group(api, Some(group))?;
    }
    if let Some(prefix) = call.query("NamePrefix") {
        check_name("namePrefix", prefix)?;
    }
    if let Some(state) = call.query("State") {
        one_of("state", state, &["ENABLED", "DISABLED"])?;
    }
    let prefix = match group {
        Some(group) => format!("{}{group}/", record::SCHEDULES),
        None => record::SCHEDULES.to_string(),
    };
    let summaries: Vec<Value> =
        crate::records::list::<ScheduleRecord>(api.control.store.as_ref(), &prefix)?
            .into_iter()
            .filter(|r| {
                call.query("NamePrefix")
                    .is_none_or(|p| r.name().starts_with(p))
            })
            .filter(|r| {
                call.query("State")
                    .is_none_or(|s| r.shape.get("State").and_then(Value::as_str) == Some(s))
            })
            .map(|r| summary(&r))
            .collect();
    let (items, next) = page(call, summaries)?;
    let mut answer = json!({"Schedules": items});
    if let Some(next) = next {
        answer["NextToken"] = json!(next);
    }
    Ok(answer)
}

fn summary(record: &ScheduleRecord) -> Value {
    let mut summary = Map::new();
    for member in [
        "Arn",
        "CreationDate",
        "GroupName",
        "LastModificationDate",
        "Name",
        "State",
    ] {
        if let Some(value) = record.shape.get(member) {
            summary.insert(member.into(), value.clone());
        }
    }
    summary.insert("Target".into(), json!({"Arn": record.target()["Arn"]}));
    Value::Object(summary)
}

/// Deletes every schedule of `group` (DeleteScheduleGroup).
pub(super) fn delete_all_of(api: &Api, group: &str) -> Result<usize, SchedulerError> {
    let store = api.control.store.as_ref();
    let keys: Vec<String> = store
        .list(&format!("{}{group}/", record::SCHEDULES))?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    for key in &keys {
        store.delete(key, Expect::Any)?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: Value) -> Result<Timing, SchedulerError> {
        check(&parse_input(&body)?, 1_000_000)
    }

    fn valid() -> Value {
        json!({
            "ScheduleExpression": "rate(5 minutes)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "RoleArn": "arn:aws:iam::000000000000:role/scheduler",
                "EcsParameters": {"TaskDefinitionArn": "sleep:1"}
            }
        })
    }

    #[test]
    fn members_out_of_bounds_are_named() {
        assert!(input(valid()).is_ok());
        let cases = [
            (
                "/Target/EcsParameters/TaskCount",
                json!(11),
                "'target.ecsParameters.taskCount'",
            ),
            (
                "/Target/RetryPolicy",
                json!({"MaximumRetryAttempts": 186}),
                "'target.retryPolicy.maximumRetryAttempts'",
            ),
            (
                "/Target/RetryPolicy",
                json!({"MaximumEventAgeInSeconds": 59}),
                "'target.retryPolicy.maximumEventAgeInSeconds'",
            ),
            (
                "/FlexibleTimeWindow",
                json!({"Mode": "SOMETIMES"}),
                "'flexibleTimeWindow.mode'",
            ),
            (
                "/FlexibleTimeWindow",
                json!({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1441}),
                "'flexibleTimeWindow.maximumWindowInMinutes'",
            ),
            ("/State", json!("PAUSED"), "'state'"),
            (
                "/ScheduleExpressionTimezone",
                json!("Mars/Olympus"),
                "'scheduleExpressionTimezone'",
            ),
            (
                "/ScheduleExpression",
                json!("cron(0 10 * * ? )"),
                "Invalid Schedule Expression cron(0 10 * * ? )",
            ),
            (
                "/Target/Arn",
                json!("arn:aws:sqs:us-east-1:000000000000:queue"),
                "'target.arn'",
            ),
            ("/Target/RoleArn", json!("role"), "'target.roleArn'"),
            ("/Target/Input", json!("[1]"), "'target.input'"),
            (
                "/Target/EcsParameters/TaskCount",
                json!("two"),
                "'target.ecsParameters.taskCount'",
            ),
        ];
        for (pointer, value, wanted) in cases {
            let mut body = valid();
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            body.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{pointer}"))
                .insert(last.to_string(), value.clone());
            let error = input(body).unwrap_err();
            assert_eq!(error.kind, super::super::SchedulerErrorKind::Validation);
            assert!(
                error.message.contains(wanted),
                "{pointer}={value}: {}",
                error.message
            );
        }
    }
}
