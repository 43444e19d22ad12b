//! A task set of a service whose deployment controller is EXTERNAL: ECS's `TaskSet` shape, as
//! stored in its service's record (`taskSets`). Its tasks are started with `startedBy` its id,
//! and the scheduler keeps `computedDesiredCount` = ⌈service desiredCount × scale%⌉ of them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::records::LaunchType;

/// A task set's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskSetStatus {
    /// The one that serves production traffic (UpdateServicePrimaryTaskSet).
    Primary,
    Active,
    /// Deleted; its tasks are stopping. It goes once none is left.
    Draining,
}

/// A task set's `stabilityStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StabilityStatus {
    SteadyState,
    Stabilizing,
}

/// ECS's `Scale`: a percentage of the service's desired count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub value: f64,
    pub unit: ScaleUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScaleUnit {
    Percent,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            value: 100.0,
            unit: ScaleUnit::Percent,
        }
    }
}

impl Scale {
    /// How many tasks of `desired` this scale asks for: rounded up, as ECS does.
    pub fn of(&self, desired: u32) -> u32 {
        let wanted = (f64::from(desired) * self.value / 100.0).ceil();
        wanted.clamp(0.0, f64::from(desired)) as u32
    }
}

/// A task set as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSet {
    /// `ecs-svc/` and 19 digits; also its tasks' `startedBy`.
    pub id: String,
    pub task_set_arn: String,
    pub service_arn: String,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: TaskSetStatus,
    pub task_definition: String,
    pub computed_desired_count: u32,
    pub pending_count: u32,
    pub running_count: u32,
    pub created_at: f64,
    pub updated_at: f64,
    pub launch_type: LaunchType,
    pub scale: Scale,
    pub stability_status: StabilityStatus,
    pub stability_status_at: f64,
    #[serde(default)]
    pub tags: Value,
    /// networkConfiguration, loadBalancers, serviceRegistries, platformVersion,
    /// capacityProviderStrategy: kept and returned.
    #[serde(flatten)]
    pub kept: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_computed_count_rounds_up_within_the_desired_count() {
        let scale = |value| Scale {
            value,
            unit: ScaleUnit::Percent,
        };
        assert_eq!(scale(50.0).of(3), 2);
        assert_eq!(scale(100.0).of(3), 3);
        assert_eq!(scale(0.0).of(3), 0);
        assert_eq!(scale(1.0).of(4), 1);
        assert_eq!(scale(33.4).of(3), 2);
    }
}
