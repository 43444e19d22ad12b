//! The firing loop: at each schedule's due time, launch its tasks through RunTask's own path
//! (`Api::call("RunTask")`, which is `control::launch` behind ECS's checks; the same call
//! EventBridge makes), with `startedBy` naming the schedule and a tag naming the firing.
//!
//! Never twice for one firing, also across a kill -9: a firing is recorded (`LAUNCHING`,
//! with the cursor moved past its scheduled time) in one compare-and-swap write *before*
//! any task is launched, and its task ARNs in a second write after. A firing found
//! `LAUNCHING` at the start of a pass was interrupted between the two: its tasks are looked
//! for in the store (startedBy and the firing tag) and adopted, and only what is missing is
//! launched. A retry goes back to `LAUNCHING` before it launches, so it is covered the same
//! way. One `ScheduleFirer` runs per control plane (with several controllers, the leader's).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::record::{
    self, CLOCK_KEY, EventKind, FIRING_TAG, SCHEDULES, ScheduleRecord, started_by,
};
use super::schedules::cluster_of;
use crate::api::Api;
use crate::schedule::firing::backoff;
use crate::schedule::{Action, Firing, FiringStatus, ScheduleClock, decide};
use crate::store::{Expect, StoreError};

/// The longest the loop sleeps without looking.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// How long a burst of store changes gathers before a pass.
const COALESCE: Duration = Duration::from_millis(20);

/// Fires every schedule of one control plane.
pub struct ScheduleFirer {
    api: Arc<Api>,
    clock: ScheduleClock,
}

/// The firing tag's value of a scheduled time: RFC 3339 in UTC.
fn firing_value(scheduled: i64) -> String {
    jiff::Timestamp::from_second(scheduled)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| scheduled.to_string())
}

impl ScheduleFirer {
    /// A firer over `api` whose schedule time runs `rate` times the wall clock (1: the wall
    /// clock). A fast clock is stored, so a restart with the same rate goes on where it was
    /// (and the API reads schedule time from it).
    pub fn new(api: Arc<Api>, rate: f64) -> Result<Self, StoreError> {
        let store = api.control.store.as_ref();
        let stored = store.get(CLOCK_KEY)?;
        let current = record::clock(store);
        let clock = if rate == 1.0 {
            // The wall clock again: schedule time may go back after a fast run; the cursors
            // keep every firing from repeating, schedules only wait for the wall clock.
            if stored.is_some() {
                store.delete(CLOCK_KEY, Expect::Any)?;
            }
            ScheduleClock::wall()
        } else if stored.is_some() && current.rate == rate {
            current
        } else {
            // A new rate starts where the old clock is now, so schedule time never jumps back.
            let wall = crate::records::timestamp();
            let clock = ScheduleClock {
                rate,
                origin_wall: wall,
                origin_schedule: current.at(wall),
            };
            let value = serde_json::to_value(clock).unwrap_or_default();
            store.put(CLOCK_KEY, &value, Expect::Any)?;
            clock
        };
        if clock.rate != 1.0 {
            tracing::info!(rate = clock.rate, "schedules run on a fast clock");
        }
        Ok(Self { api, clock })
    }

    /// Runs until `shutdown`: a pass over every schedule whenever one is due, a schedule
    /// changed, or every 10 s.
    pub async fn run(self, shutdown: CancellationToken) {
        let firer = Arc::new(self);
        let mut changes = firer.api.control.store.watch();
        loop {
            let pass = {
                let firer = firer.clone();
                tokio::task::spawn_blocking(move || firer.pass()).await
            };
            let wake_at = match pass {
                Ok(wake_at) => wake_at,
                Err(error) => {
                    tracing::error!(%error, "schedule pass panicked");
                    Some(firer.clock.now() + 1)
                }
            };
            let sleep = wake_at
                .map(|at| firer.clock.wait_until(at))
                .unwrap_or(RESYNC_EVERY)
                .min(RESYNC_EVERY);
            let deadline = tokio::time::sleep(sleep);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = &mut deadline => break,
                    change = changes.recv() => match change {
                        Ok(change) if change.key.starts_with(SCHEDULES) => {
                            tokio::time::sleep(COALESCE).await;
                            break;
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
            while changes.try_recv().is_ok() {}
        }
    }

    /// One pass over every schedule; returns when the next one is due (schedule time).
    fn pass(&self) -> Option<i64> {
        let keys = match self.api.control.store.list(SCHEDULES) {
            Ok(found) => found.into_iter().map(|(key, _)| key).collect::<Vec<_>>(),
            Err(error) => {
                tracing::warn!(%error, "cannot list the schedules; retrying");
                return Some(self.clock.now() + 1);
            }
        };
        let mut wake: Option<i64> = None;
        for key in keys {
            let span =
                tracing::info_span!("schedule", schedule = %key.trim_start_matches(SCHEDULES));
            let _entered = span.enter();
            let at = match self.fire(&key) {
                Ok(at) => at,
                Err(error) => {
                    tracing::warn!(%error, "schedule pass failed; retrying");
                    Some(self.clock.now() + 1)
                }
            };
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    /// Decides and acts for the schedule under `key`.
    fn fire(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let store = self.api.control.store.as_ref();
        let Some((record, revision)) = crate::records::get::<ScheduleRecord>(store, key)? else {
            return Ok(None);
        };
        let timing = match record.timing() {
            Ok(timing) => timing,
            Err(error) => {
                tracing::warn!(%error, "a stored schedule's expression no longer parses");
                return Ok(None);
            }
        };
        let now = self.clock.now();
        let policy = record.policy();
        let decision = decide(
            &timing,
            policy,
            record.arn(),
            record.cursor,
            &record.firings,
            now,
            record.enabled(),
        );
        if decision.actions.is_empty() && decision.cursor == record.cursor {
            if self.delete_if_complete(key, &record, revision, &timing)? {
                return Ok(None);
            }
            return Ok(decision.wake_at);
        }
        // First write: what is decided, before anything is launched.
        let mut next = record.clone();
        next.cursor = decision.cursor;
        let mut to_launch: Vec<(i64, bool)> = Vec::new();
        for action in &decision.actions {
            match action {
                Action::Missed { first, last, count } => {
                    let message = format!(
                        "{count} firing(s) from {} to {} were missed (the server was not \
                         running, or they were older than MaximumEventAgeInSeconds {} s)",
                        firing_value(*first),
                        firing_value(*last),
                        policy.max_age
                    );
                    tracing::warn!(%message, "missed firings");
                    next.push_event(EventKind::Missed, Some(*last), message);
                }
                Action::Fire { scheduled, due } => {
                    tracing::info!(scheduled = %firing_value(*scheduled), "firing");
                    next.push_firing(Firing {
                        scheduled: *scheduled,
                        due: *due,
                        status: FiringStatus::Launching,
                        attempts: 0,
                        task_arns: Vec::new(),
                        retry_at: None,
                        reason: None,
                    });
                    to_launch.push((*scheduled, false));
                }
                Action::Recover(index) => {
                    to_launch.push((record.firings[*index].scheduled, true));
                }
                Action::Retry(index) => {
                    let scheduled = record.firings[*index].scheduled;
                    if let Some(firing) = next.firings.iter_mut().find(|f| f.scheduled == scheduled)
                    {
                        firing.status = FiringStatus::Launching;
                        firing.retry_at = None;
                    }
                    // Tasks may have been launched by an attempt whose answer was lost: look.
                    to_launch.push((scheduled, true));
                }
                Action::GiveUp { index, reason } => {
                    let scheduled = record.firings[*index].scheduled;
                    let last_reason = record.firings[*index].reason.clone().unwrap_or_default();
                    if let Some(firing) = next.firings.iter_mut().find(|f| f.scheduled == scheduled)
                    {
                        firing.status = FiringStatus::Failed;
                        firing.retry_at = None;
                    }
                    let dead_letter = record.target()["DeadLetterConfig"]["Arn"]
                        .as_str()
                        .map(|arn| {
                            format!("; the dead-letter queue {arn} is recorded, not sent to")
                        })
                        .unwrap_or_default();
                    let message = format!(
                        "the firing at {} failed: {reason}; last error: {last_reason}{dead_letter}",
                        firing_value(scheduled)
                    );
                    tracing::warn!(%message, "firing failed");
                    next.push_event(EventKind::Failed, Some(scheduled), message);
                }
            }
        }
        match crate::records::put(store, key, &next, revision) {
            Ok(_) => {}
            // The API changed it meanwhile: decide again on what is there now.
            Err(StoreError::Conflict { .. }) => return Ok(Some(now)),
            Err(other) => return Err(other),
        }
        if !to_launch.is_empty() {
            crash_point("recorded");
        }
        for (scheduled, look) in to_launch {
            self.launch_firing(key, &next, scheduled, look, now)?;
        }
        Ok(Some(now))
    }

    /// Launches what the firing at `scheduled` still lacks (after adopting the tasks the
    /// store shows for it when `look`), then records the outcome.
    fn launch_firing(
        &self,
        key: &str,
        record: &ScheduleRecord,
        scheduled: i64,
        look: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(firing) = record.firings.iter().find(|f| f.scheduled == scheduled) else {
            return Ok(());
        };
        let wanted = record.target()["EcsParameters"]["TaskCount"]
            .as_u64()
            .unwrap_or(1) as usize;
        let by = started_by(record.group(), record.name());
        let mut arns = firing.task_arns.clone();
        let mut adopted = 0;
        if look {
            for task in crate::records::tasks(self.api.control.store.as_ref())? {
                let arn = task.task_arn.clone();
                if task.started_by.as_deref() == Some(by.as_str())
                    && has_firing_tag(&task.to_shape(), scheduled)
                    && !arns.contains(&arn)
                {
                    arns.push(arn);
                    adopted += 1;
                }
            }
        }
        let missing = wanted.saturating_sub(arns.len());
        let (launched, failure) = if missing > 0 {
            self.launch(record, scheduled, missing as u32)
        } else {
            (Vec::new(), None)
        };
        if !launched.is_empty() {
            crash_point("launched");
            tracing::info!(tasks = ?launched, scheduled = %firing_value(scheduled), "firing launched tasks");
        }
        arns.extend(launched);
        let complete = arns.len() >= wanted;
        crate::records::update::<ScheduleRecord>(self.api.control.store.as_ref(), key, |stored| {
            let Some(firing) = stored.firings.iter_mut().find(|f| f.scheduled == scheduled) else {
                return false;
            };
            firing.task_arns = arns.clone();
            if complete {
                firing.status = FiringStatus::Launched;
                firing.retry_at = None;
                firing.reason = None;
            } else {
                firing.status = FiringStatus::Retrying;
                firing.attempts += 1;
                firing.retry_at = Some(now + backoff(firing.attempts - 1));
                firing.reason = failure.clone();
            }
            let attempts = firing.attempts;
            if adopted > 0 {
                stored.push_event(
                    EventKind::Recovered,
                    Some(scheduled),
                    format!(
                        "after a restart, {adopted} task(s) of the firing at {} were found and \
                         adopted",
                        firing_value(scheduled)
                    ),
                );
            }
            if !complete {
                let message = format!(
                    "launch attempt {attempts} of the firing at {} failed: {}",
                    firing_value(scheduled),
                    failure.clone().unwrap_or_default()
                );
                tracing::warn!(%message, "launch failed");
                stored.push_event(EventKind::LaunchFailed, Some(scheduled), message);
            }
            true
        })?;
        Ok(())
    }

    /// RunTask for `count` tasks of the schedule's target; the task ARNs launched and, when
    /// fewer than `count`, why.
    fn launch(
        &self,
        record: &ScheduleRecord,
        scheduled: i64,
        count: u32,
    ) -> (Vec<String>, Option<String>) {
        let body = match run_task_body(record, scheduled, count) {
            Ok(body) => body,
            Err(reason) => return (Vec::new(), Some(reason)),
        };
        match self.api.call("RunTask", body) {
            Ok(answer) => {
                let arns: Vec<String> = answer["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["taskArn"].as_str().map(String::from))
                    .collect();
                let failure = (arns.len() < count as usize).then(|| {
                    answer["failures"]
                        .as_array()
                        .and_then(|f| f.first())
                        .map(|f| {
                            format!(
                                "{} ({})",
                                f["reason"].as_str().unwrap_or("no capacity"),
                                f["arn"].as_str().unwrap_or_default()
                            )
                        })
                        .unwrap_or_else(|| "fewer tasks were placed than asked for".into())
                });
                (arns, failure)
            }
            Err(error) => (Vec::new(), Some(error.to_string())),
        }
    }

    /// Deletes a schedule with ActionAfterCompletion DELETE that will fire no more.
    fn delete_if_complete(
        &self,
        key: &str,
        record: &ScheduleRecord,
        revision: u64,
        timing: &crate::schedule::Timing,
    ) -> Result<bool, StoreError> {
        let complete = record.deletes_after_completion()
            && !record.firings.is_empty()
            && record.firings.iter().all(|f| !f.is_open())
            && timing.next_after(record.cursor).is_none();
        if !complete {
            return Ok(false);
        }
        match self
            .api
            .control
            .store
            .delete(key, Expect::Revision(revision))
        {
            Ok(()) => {
                tracing::info!("schedule completed and deleted (ActionAfterCompletion DELETE)");
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

/// A test hook: with `WASMGATE_TEST_CRASH_AT=recorded` (after a firing is recorded, before
/// its launch) or `=launched` (after its tasks are launched, before they are recorded) the
/// process aborts there, as a kill -9 at that instant would, so a test can check that the
/// restart launches each firing's tasks exactly once.
fn crash_point(at: &str) {
    if std::env::var("WASMGATE_TEST_CRASH_AT").is_ok_and(|v| v == at) {
        tracing::error!(at, "test crash point reached: aborting");
        std::process::abort();
    }
}

/// Whether a task's shape carries the firing tag of `scheduled`.
fn has_firing_tag(task: &Value, scheduled: i64) -> bool {
    let wanted = firing_value(scheduled);
    task["tags"].as_array().is_some_and(|tags| {
        tags.iter()
            .any(|t| t["key"] == FIRING_TAG && t["value"] == wanted.as_str())
    })
}

/// RunTask's request for a firing: EcsParameters in ECS's member names, Input as the
/// overrides, startedBy the schedule and the firing tag.
fn run_task_body(record: &ScheduleRecord, scheduled: i64, count: u32) -> Result<Value, String> {
    let target = record.target();
    let ecs = &target["EcsParameters"];
    let cluster = target["Arn"]
        .as_str()
        .and_then(cluster_of)
        .ok_or("the target is not an ECS cluster ARN")?;
    let mut body = json!({
        "cluster": cluster,
        "taskDefinition": ecs["TaskDefinitionArn"],
        "count": count,
        "startedBy": started_by(record.group(), record.name()),
    });
    for (from, to) in [
        ("Group", "group"),
        ("LaunchType", "launchType"),
        ("CapacityProviderStrategy", "capacityProviderStrategy"),
        ("PlacementConstraints", "placementConstraints"),
        ("PlacementStrategy", "placementStrategy"),
        ("PropagateTags", "propagateTags"),
        ("EnableECSManagedTags", "enableECSManagedTags"),
        ("EnableExecuteCommand", "enableExecuteCommand"),
        ("ReferenceId", "referenceId"),
        ("PlatformVersion", "platformVersion"),
    ] {
        if let Some(value) = ecs.get(from).filter(|v| !v.is_null()) {
            body[to] = value.clone();
        }
    }
    if let Some(vpc) = ecs["NetworkConfiguration"].get("awsvpcConfiguration") {
        let mut converted = json!({});
        for (from, to) in [
            ("Subnets", "subnets"),
            ("SecurityGroups", "securityGroups"),
            ("AssignPublicIp", "assignPublicIp"),
        ] {
            if let Some(value) = vpc.get(from) {
                converted[to] = value.clone();
            }
        }
        body["networkConfiguration"] = json!({"awsvpcConfiguration": converted});
    }
    let mut tags: Vec<Value> = ecs["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|map| map.iter().map(|(k, v)| json!({"key": k, "value": v})))
        .collect();
    tags.push(json!({"key": FIRING_TAG, "value": firing_value(scheduled)}));
    body["tags"] = Value::Array(tags);
    if let Some(input) = target["Input"].as_str() {
        let overrides: Value =
            serde_json::from_str(input).map_err(|e| format!("Target.Input is not JSON: {e}"))?;
        body["overrides"] = overrides;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_becomes_run_tasks_request() {
        let record: ScheduleRecord = serde_json::from_value(json!({
            "shape": {
                "Name": "nightly", "GroupName": "jobs",
                "Target": {
                    "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/batch",
                    "Input": "{\"containerOverrides\": [{\"name\": \"main\", \"command\": [\"go\"]}]}",
                    "EcsParameters": {
                        "TaskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/report:3",
                        "LaunchType": "FARGATE",
                        "Group": "reports",
                        "Tags": [{"team": "data"}],
                        "NetworkConfiguration": {"awsvpcConfiguration": {"Subnets": ["subnet-1"], "AssignPublicIp": "DISABLED"}}
                    }
                }
            },
            "anchor": 0, "cursor": 0
        }))
        .unwrap();
        let body = run_task_body(&record, 60, 2).unwrap();
        assert_eq!(body["cluster"], "batch");
        assert_eq!(body["count"], 2);
        assert_eq!(body["startedBy"], "schedule/jobs/nightly");
        assert_eq!(body["group"], "reports");
        assert_eq!(body["launchType"], "FARGATE");
        assert_eq!(
            body["overrides"]["containerOverrides"][0]["command"][0],
            "go"
        );
        assert_eq!(
            body["networkConfiguration"],
            json!({"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}})
        );
        assert_eq!(
            body["tags"],
            json!([{"key": "team", "value": "data"}, {"key": FIRING_TAG, "value": "1970-01-01T00:01:00Z"}])
        );
        assert!(has_firing_tag(&json!({"tags": body["tags"]}), 60));
        assert!(!has_firing_tag(&json!({"tags": body["tags"]}), 120));
    }
}
