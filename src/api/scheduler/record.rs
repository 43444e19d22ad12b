//! The stored schedules (`schedules/GROUP/NAME`) and schedule groups
//! (`schedule-groups/NAME`): GetSchedule's and GetScheduleGroup's shapes as EventBridge
//! shows them, plus what the firing loop keeps beside a schedule (its cursor, its recent
//! firings with their task ARNs, its events), which GetSchedule never shows.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::arn::ArnScope;
use crate::schedule::{Firing, Policy, ScheduleClock, Timing, TimingError};
use crate::store::Store;

/// The prefix of every schedule key.
pub const SCHEDULES: &str = "schedules/";
/// The prefix of every schedule group key.
pub const GROUPS: &str = "schedule-groups/";
/// The group that always exists.
pub const DEFAULT_GROUP: &str = "default";
/// The tag every firing's tasks carry: the scheduled time (RFC 3339), so a restart can find
/// the tasks of a firing whose launch it did not see finish.
pub const FIRING_TAG: &str = "wasmgate:schedule-firing";
/// How many closed firings and events a schedule keeps (the newest).
const KEEP_FIRINGS: usize = 20;
const KEEP_EVENTS: usize = 50;

/// Where the schedule clock is kept (a fast test clock stays continuous across restarts).
pub const CLOCK_KEY: &str = "schedule-clock";

/// The schedule clock: the stored one (`--clock-rate`), else the wall clock.
pub fn clock(store: &dyn Store) -> ScheduleClock {
    store
        .get(CLOCK_KEY)
        .ok()
        .flatten()
        .and_then(|found| serde_json::from_value(found.value).ok())
        .unwrap_or_else(ScheduleClock::wall)
}

/// Schedule time now.
pub fn schedule_now(store: &dyn Store) -> i64 {
    clock(store).now()
}

pub fn schedule_key(group: &str, name: &str) -> String {
    format!("{SCHEDULES}{group}/{name}")
}

pub fn group_key(name: &str) -> String {
    format!("{GROUPS}{name}")
}

fn scheduler_arn(arns: &ArnScope, resource: &str) -> String {
    format!(
        "arn:aws:scheduler:{}:{}:{resource}",
        arns.region, arns.account
    )
}

pub fn schedule_arn(arns: &ArnScope, group: &str, name: &str) -> String {
    scheduler_arn(arns, &format!("schedule/{group}/{name}"))
}

pub fn group_arn(arns: &ArnScope, name: &str) -> String {
    scheduler_arn(arns, &format!("schedule-group/{name}"))
}

/// What a schedule's tasks are started by: the schedule, findable with ListTasks.
pub fn started_by(group: &str, name: &str) -> String {
    format!("schedule/{group}/{name}")
}

/// What happened to a schedule that GetSchedule cannot show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// Scheduled times that passed without firing (the server was down).
    Missed,
    /// A launch attempt failed; it will be retried.
    LaunchFailed,
    /// A firing ran out of retries or age: it launched nothing (more).
    Failed,
    /// A firing's tasks were found after a restart and adopted, or launched then.
    Recovered,
}

/// One event of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEvent {
    /// Wall-clock time it was recorded (epoch seconds).
    pub at: f64,
    pub kind: EventKind,
    /// The scheduled time it is about (schedule time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<i64>,
    pub message: String,
}

/// A stored schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    /// GetSchedule's answer.
    pub shape: Map<String, Value>,
    /// Schedule time of the create or last update: a rate without StartDate counts from it.
    pub anchor: i64,
    /// The latest scheduled time decided (fired or missed); firings come after it.
    pub cursor: i64,
    #[serde(default)]
    pub firings: Vec<Firing>,
    #[serde(default)]
    pub events: Vec<ScheduleEvent>,
    /// The ClientToken of the create, so a retried create answers as the first did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl ScheduleRecord {
    fn text(&self, member: &str) -> Option<&str> {
        self.shape.get(member).and_then(Value::as_str)
    }

    pub fn name(&self) -> &str {
        self.text("Name").unwrap_or_default()
    }

    pub fn group(&self) -> &str {
        self.text("GroupName").unwrap_or(DEFAULT_GROUP)
    }

    pub fn arn(&self) -> &str {
        self.text("Arn").unwrap_or_default()
    }

    pub fn enabled(&self) -> bool {
        self.text("State") != Some("DISABLED")
    }

    pub fn deletes_after_completion(&self) -> bool {
        self.text("ActionAfterCompletion") == Some("DELETE")
    }

    pub fn target(&self) -> &Value {
        self.shape.get("Target").unwrap_or(&Value::Null)
    }

    /// When it fires.
    pub fn timing(&self) -> Result<Timing, TimingError> {
        let date = |member: &str| {
            self.shape
                .get(member)
                .and_then(Value::as_f64)
                .map(|d| d.floor() as i64)
        };
        Timing::new(
            self.text("ScheduleExpression").unwrap_or_default(),
            self.text("ScheduleExpressionTimezone"),
            date("StartDate"),
            date("EndDate"),
            self.anchor,
        )
    }

    /// Its retry policy and flexible window.
    pub fn policy(&self) -> Policy {
        let retry = &self.target()["RetryPolicy"];
        let window = &self
            .shape
            .get("FlexibleTimeWindow")
            .cloned()
            .unwrap_or_default();
        let defaults = Policy::default();
        Policy {
            max_retries: retry["MaximumRetryAttempts"]
                .as_u64()
                .map_or(defaults.max_retries, |n| n as u32),
            max_age: retry["MaximumEventAgeInSeconds"]
                .as_i64()
                .unwrap_or(defaults.max_age),
            window_minutes: if window["Mode"] == "FLEXIBLE" {
                window["MaximumWindowInMinutes"].as_u64().unwrap_or(0) as u32
            } else {
                0
            },
        }
    }

    /// Records an event (the newest kept).
    pub fn push_event(&mut self, kind: EventKind, scheduled: Option<i64>, message: String) {
        self.events.push(ScheduleEvent {
            at: crate::records::timestamp(),
            kind,
            scheduled,
            message,
        });
        let extra = self.events.len().saturating_sub(KEEP_EVENTS);
        self.events.drain(..extra);
    }

    /// Records a firing; drops the oldest closed ones past the bound.
    pub fn push_firing(&mut self, firing: Firing) {
        self.firings.push(firing);
        while self.firings.iter().filter(|f| !f.is_open()).count() > KEEP_FIRINGS {
            let Some(oldest) = self.firings.iter().position(|f| !f.is_open()) else {
                break;
            };
            self.firings.remove(oldest);
        }
    }
}

/// A stored schedule group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    /// GetScheduleGroup's answer.
    pub shape: Map<String, Value>,
    /// `[{Key, Value}]`.
    #[serde(default)]
    pub tags: Vec<Value>,
}
