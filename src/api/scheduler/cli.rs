//! wasmgate's own views of schedules for `wasmgate schedules` (ECS JSON, `WasmgateV1.*`):
//! what GetSchedule cannot show, the next firings, the recent firings with their task ARNs,
//! and the events (missed firings, failed launches).

use serde::Deserialize;
use serde_json::{Value, json};

use super::record::{self, SCHEDULES, ScheduleRecord, started_by};
use super::schedules::{existing_group, find};
use super::{SchedulerError, check_name};
use crate::api::{Api, ApiError, parse};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Named {
    name: String,
    group_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    group_name: Option<String>,
}

fn next_firing(record: &ScheduleRecord, now: i64) -> Option<i64> {
    if !record.enabled() {
        return None;
    }
    record.timing().ok()?.next_after(record.cursor.max(now - 1))
}

/// `WasmgateV1.ListSchedules`: every schedule (of `groupName`), with its next firing.
pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: Listing = parse(body)?;
    let prefix = match &request.group_name {
        Some(group) => {
            existing_group(api, Some(group))?;
            format!("{SCHEDULES}{group}/")
        }
        None => SCHEDULES.to_string(),
    };
    let store = api.control.store.as_ref();
    let now = record::schedule_now(store);
    let schedules: Vec<Value> = crate::records::list::<ScheduleRecord>(store, &prefix)?
        .iter()
        .map(|r| {
            json!({
                "name": r.name(),
                "groupName": r.group(),
                "arn": r.arn(),
                "expression": r.shape.get("ScheduleExpression"),
                "timezone": r.shape.get("ScheduleExpressionTimezone").cloned().unwrap_or(json!("UTC")),
                "state": r.shape.get("State"),
                "nextFiring": next_firing(r, now),
            })
        })
        .collect();
    Ok(json!({"scheduleTime": now, "schedules": schedules}))
}

/// `WasmgateV1.DescribeSchedule`: the record, the next five firings, the recent firings and
/// the events.
pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: Named = parse(body)?;
    check_name("name", &request.name)?;
    let group = existing_group(api, request.group_name.as_deref())?;
    let (record, _) = find(api, &group, &request.name)?;
    let now = record::schedule_now(api.control.store.as_ref());
    let upcoming = match record.timing() {
        Ok(timing) if record.enabled() => timing.upcoming(record.cursor.max(now - 1), 5),
        _ => Vec::new(),
    };
    Ok(json!({
        "schedule": record.shape,
        "scheduleTime": now,
        "startedBy": started_by(&group, &request.name),
        "nextFirings": upcoming,
        "firings": record.firings,
        "events": record.events,
    }))
}

/// `WasmgateV1.DeleteSchedule`.
pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: Named = parse(body)?;
    let call = super::Call {
        resource: Some(request.name),
        query: request
            .group_name
            .map(|g| vec![("groupName".to_string(), g)])
            .unwrap_or_default(),
        body: json!({}),
    };
    super::schedules::delete(api, &call).map_err(|e: SchedulerError| e.into())
}
