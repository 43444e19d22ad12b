//! The task record: ECS's `Task` shape as stored under `tasks/ID`, with the members the
//! control plane decides on typed (statuses as enums, timestamps, where it runs) and every
//! other member of the shape (overrides, tags, attachments, ...) kept as it was written.
//!
//! The stored JSON is ECS's shape itself, so DescribeTasks answers the record as it is.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// ECS's `lastStatus` of a task, in the order a task walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }

    /// On its way down: a late "container started" must not bring it back.
    pub fn is_winding_down(self) -> bool {
        self >= Self::Deactivating
    }

    /// Placed and not yet RUNNING (ECS counts these as pending).
    pub fn is_pending(self) -> bool {
        self < Self::Running
    }
}

/// ECS's `desiredStatus` of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }

    /// ListTasks' `desiredStatus` (ECS's words; PENDING lists nothing here: a task is placed
    /// as it is accepted).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "RUNNING" => Some(Self::Running),
            "STOPPED" => Some(Self::Stopped),
            _ => None,
        }
    }
}

/// ECS's `healthStatus` of a task or a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    #[default]
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// ECS's `lastStatus` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    Pending,
    Running,
    Stopped,
}

/// Why a task stopped, as ECS's `stopCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::UserInitiated => "UserInitiated",
            Self::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
            Self::SpotInterruption => "SpotInterruption",
            Self::TerminationNotice => "TerminationNotice",
        }
    }
}

/// ECS's launch types: where a task may be placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LaunchType {
    /// The shared pool of hosts, from any cluster.
    #[default]
    Fargate,
    /// Hosts registered in the task's cluster.
    Ec2,
    /// Hosts registered in the task's cluster (ECS Anywhere's word for them).
    External,
}

impl LaunchType {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "FARGATE" => Some(Self::Fargate),
            "EC2" => Some(Self::Ec2),
            "EXTERNAL" => Some(Self::External),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fargate => "FARGATE",
            Self::Ec2 => "EC2",
            Self::External => "EXTERNAL",
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub task_arn: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub last_status: TaskStatus,
    pub desired_status: DesiredStatus,
    #[serde(default)]
    pub health_status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// `service:NAME`, `family:FAMILY`, or RunTask's own.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub launch_type: LaunchType,
    /// CPU units and MiB, as strings (ECS's shape).
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub memory: String,
    #[serde(default)]
    pub containers: Vec<ContainerRecord>,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// ECS's `version`: one more at every change.
    #[serde(default)]
    pub version: u64,
    /// The host it was placed on (wasmgate's own member).
    #[serde(
        rename = "wasmgateHost",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host: Option<String>,
    /// Not ECS's: only HEALTHY counts as healthy for this task (an essential container has a
    /// health check).
    #[serde(
        rename = "wasmgateHealthChecked",
        default,
        skip_serializing_if = "is_false"
    )]
    pub health_checked: bool,
    /// Not ECS's: scale-in protection (UpdateTaskProtection) holds until then (epoch
    /// seconds); the scheduler's scale-in and deployments leave the task alone until then.
    #[serde(
        rename = "wasmgateProtectedUntil",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub protected_until: Option<f64>,
    /// Not ECS's: the moments above in epoch microseconds (ECS's members keep the millisecond
    /// resolution of its shapes; a cold start is well under one).
    #[serde(
        rename = "wasmgateMicros",
        default,
        skip_serializing_if = "TaskMicros::is_empty"
    )]
    pub micros: TaskMicros,
    /// Every other member of ECS's shape, as written (overrides, tags, attachments,
    /// availabilityZone, containerInstanceArn, attributes).
    #[serde(flatten)]
    pub shape: Map<String, Value>,
}

/// A task's moments in epoch microseconds, as the control plane and the agent saw them
/// (`wasmgateMicros`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMicros {
    /// RunTask (or the scheduler) accepted it: its record was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<u64>,
    /// Its first container was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<u64>,
}

impl TaskMicros {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One container of a stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    pub last_status: ContainerStatus,
    #[serde(default)]
    pub health_status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// containerArn, taskArn, image, ...
    #[serde(flatten)]
    pub shape: Map<String, Value>,
}

impl TaskRecord {
    /// The task id at the end of its ARN.
    pub fn id(&self) -> &str {
        super::task_id_of_arn(&self.task_arn)
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status == TaskStatus::Stopped
    }

    /// The service it belongs to (its group is `service:NAME`).
    pub fn service_name(&self) -> Option<&str> {
        self.group.strip_prefix("service:")
    }

    /// The CPU units and MiB it holds on its host.
    pub fn needs(&self) -> (u64, u64) {
        (
            self.cpu.parse().unwrap_or(0),
            self.memory.parse().unwrap_or(0),
        )
    }

    /// ECS's `overrides` as given to RunTask.
    pub fn overrides(&self) -> &Value {
        self.shape.get("overrides").unwrap_or(&Value::Null)
    }

    /// The family of its task definition (`task-definition/FAMILY:REV`).
    pub fn family(&self) -> &str {
        let name = self
            .task_definition_arn
            .rsplit_once("task-definition/")
            .map_or(self.task_definition_arn.as_str(), |(_, n)| n);
        name.split(':').next().unwrap_or(name)
    }

    /// The hard memory limit of container `name` in MiB: its own (overrides applied), else
    /// the task's.
    pub fn memory_limit_mib(&self, name: &str) -> u64 {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.shape.get("memory"))
            .and_then(Value::as_str)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| self.needs().1)
    }

    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    /// Asks it to stop, recording why unless it was already asked. Returns whether that
    /// changed it.
    pub fn request_stop(&mut self, stop_code: StopCode, reason: &str, now: f64) -> bool {
        if self.desired_status == DesiredStatus::Stopped {
            return false;
        }
        self.desired_status = DesiredStatus::Stopped;
        self.stopped_reason = Some(reason.to_string());
        self.stop_code = Some(stop_code);
        if !self.is_stopped() {
            self.stopping_at = Some(now);
        }
        // A running task first leaves service (the gateway stops routing to it), then its
        // containers are stopped (the agent reports STOPPING).
        if self.last_status == TaskStatus::Running {
            self.last_status = TaskStatus::Deactivating;
        }
        true
    }

    /// Marks a task whose host lost it as STOPPED with `reason` (not a failure of the task:
    /// its host went away, so a service replaces it at full speed). Returns false if it had
    /// stopped.
    pub fn stop_as_lost(&mut self, reason: &str, now: f64) -> bool {
        if self.is_stopped() {
            return false;
        }
        self.last_status = TaskStatus::Stopped;
        self.desired_status = DesiredStatus::Stopped;
        self.stopped_at = Some(now);
        self.execution_stopped_at.get_or_insert(now);
        self.stopping_at.get_or_insert(now);
        self.stop_code = Some(StopCode::TerminationNotice);
        self.stopped_reason = Some(reason.to_string());
        for container in &mut self.containers {
            container.last_status = ContainerStatus::Stopped;
        }
        true
    }

    /// ECS's `Task` shape.
    pub fn to_shape(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_task_reads_and_writes_as_the_same_json() {
        let stored = json!({
            "taskArn": "arn:aws:ecs:us-east-1:0:task/default/abc",
            "clusterArn": "arn:aws:ecs:us-east-1:0:cluster/default",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:0:task-definition/web:3",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "healthStatus": "UNKNOWN",
            "group": "service:web", "launchType": "FARGATE", "cpu": "256", "memory": "64",
            "containers": [{"name": "app", "lastStatus": "RUNNING", "healthStatus": "UNKNOWN",
                            "containerArn": "x", "image": "reg/app:1"}],
            "createdAt": 1.5, "startedAt": 2.5, "version": 3, "wasmgateHost": "h1",
            "overrides": {"containerOverrides": []}, "tags": [],
            "attachments": [{"type": "wasmgate.host"}],
        });
        let task: TaskRecord = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(task.last_status, TaskStatus::Running);
        assert_eq!(task.service_name(), Some("web"));
        assert_eq!(task.family(), "web");
        assert_eq!(task.needs(), (256, 64));
        assert_eq!(task.host.as_deref(), Some("h1"));
        assert_eq!(task.to_shape(), stored);
    }

    #[test]
    fn a_stop_request_deactivates_a_running_task_once() {
        let mut task: TaskRecord = serde_json::from_value(json!({
            "taskArn": "t", "clusterArn": "c", "taskDefinitionArn": "d",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "createdAt": 0.0,
        }))
        .unwrap();
        assert!(task.request_stop(StopCode::UserInitiated, "bye", 5.0));
        assert_eq!(task.last_status, TaskStatus::Deactivating);
        assert!(!task.request_stop(StopCode::ServiceSchedulerInitiated, "again", 6.0));
        assert_eq!(task.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(task.stopping_at, Some(5.0));
        assert!(task.stop_as_lost("gone", 7.0));
        assert!(task.is_stopped());
        assert!(!task.stop_as_lost("gone", 8.0));
    }
}
