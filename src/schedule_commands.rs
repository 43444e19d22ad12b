//! The CLI verbs for scheduled tasks: `schedules ls|describe|rm`, over wasmgate's own
//! `WasmgateV1.*Schedule*` actions (what GetSchedule cannot show: next firings, recent
//! firings with their tasks, failures). Creating schedules is EventBridge Scheduler's API
//! (`aws scheduler create-schedule`, boto3's `scheduler` client, a stack).

use anyhow::Context;
use serde_json::{Value, json};

use crate::client_commands::{Target, print_table, text_of};

/// What `wasmgate schedules` does.
#[derive(clap::Subcommand)]
pub enum SchedulesAction {
    /// One line per schedule: name, group, expression, state, next firing.
    Ls {
        /// Only this schedule group's.
        #[arg(long)]
        group: Option<String>,
    },
    /// The schedule, its next firings, its recent firings with their tasks, and its events
    /// (missed firings, failed launches), as JSON.
    Describe {
        name: String,
        #[arg(long)]
        group: Option<String>,
    },
    /// Delete the schedule (its tasks keep running).
    Rm {
        name: String,
        #[arg(long)]
        group: Option<String>,
    },
}

/// Epoch seconds as RFC 3339 (UTC), or `-`.
fn time_of(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map_or_else(|| "-".to_string(), |t| t.to_string())
}

/// Every epoch-second member that people read, as RFC 3339 beside it.
fn readable(mut answer: Value) -> Value {
    if let Some(next) = answer["nextFirings"].as_array_mut() {
        for at in next.iter_mut() {
            *at = json!(time_of(at));
        }
    }
    for firing in answer["firings"].as_array_mut().into_iter().flatten() {
        for member in ["scheduled", "due", "retryAt"] {
            if firing.get(member).is_some() {
                firing[member] = json!(time_of(&firing[member]));
            }
        }
    }
    for event in answer["events"].as_array_mut().into_iter().flatten() {
        if event.get("scheduled").is_some() {
            event["scheduled"] = json!(time_of(&event["scheduled"]));
        }
    }
    answer["scheduleTime"] = json!(time_of(&answer["scheduleTime"]));
    answer
}

/// `wasmgate schedules ls|describe NAME|rm NAME`.
pub async fn schedules(target: &Target, action: SchedulesAction) -> anyhow::Result<u8> {
    let client = target.client()?;
    match action {
        SchedulesAction::Ls { group } => {
            let answer = client
                .call("WasmgateV1.ListSchedules", json!({"groupName": group}))
                .await?;
            let mut rows = vec![[
                "NAME".to_string(),
                "GROUP".to_string(),
                "EXPRESSION".to_string(),
                "TIMEZONE".to_string(),
                "STATE".to_string(),
                "NEXT FIRING".to_string(),
            ]];
            for schedule in answer["schedules"].as_array().into_iter().flatten() {
                rows.push([
                    text_of(&schedule["name"]),
                    text_of(&schedule["groupName"]),
                    text_of(&schedule["expression"]),
                    text_of(&schedule["timezone"]),
                    text_of(&schedule["state"]),
                    time_of(&schedule["nextFiring"]),
                ]);
            }
            print_table(&rows);
            Ok(0)
        }
        SchedulesAction::Describe { name, group } => {
            let answer = client
                .call(
                    "WasmgateV1.DescribeSchedule",
                    json!({"name": name, "groupName": group}),
                )
                .await
                .with_context(|| format!("schedule {name}"))?;
            println!("{}", serde_json::to_string_pretty(&readable(answer))?);
            Ok(0)
        }
        SchedulesAction::Rm { name, group } => {
            client
                .call(
                    "WasmgateV1.DeleteSchedule",
                    json!({"name": name, "groupName": group}),
                )
                .await
                .with_context(|| format!("schedule {name}: not deleted"))?;
            println!("schedule {name}: deleted");
            Ok(0)
        }
    }
}
