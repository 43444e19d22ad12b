//! The service record: ECS's `Service` shape (with its `deployments` and `events`), as stored
//! under `services/CLUSTER/NAME` and answered by DescribeServices, plus the scheduler's own
//! bookkeeping (`scheduler`, never shown to clients).

pub mod history;
pub mod task_set;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::LaunchType;
use history::{History, REVISION_MEMBERS, ServiceRevision};
use task_set::TaskSet;

/// A service's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    Active,
    /// Deleted; its tasks are stopping.
    Draining,
    /// Deleted and every task stopped.
    Inactive,
}

/// A deployment's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// The newest: the one the service converges on.
    Primary,
    /// An older one, draining.
    Active,
    Inactive,
}

/// A deployment's `rolloutState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

/// The revision members ECS's `Deployment` shape shows.
const DEPLOYMENT_MEMBERS: &[&str] = &[
    "capacityProviderStrategy",
    "platformVersion",
    "networkConfiguration",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
];

/// How many events a service keeps (ECS shows the latest 100).
pub const MAX_EVENTS: usize = 100;

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    pub service_name: String,
    pub cluster_arn: String,
    pub status: ServiceStatus,
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    pub launch_type: LaunchType,
    /// The PRIMARY deployment's task definition ARN.
    pub task_definition: String,
    pub deployment_configuration: DeploymentConfiguration,
    pub deployments: Vec<Deployment>,
    /// Newest first.
    pub events: Vec<ServiceEvent>,
    pub created_at: f64,
    #[serde(default)]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    pub placement_strategy: Vec<PlacementStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
    pub scheduling_strategy: String,
    #[serde(default)]
    pub tags: Value,
    /// Members of CreateService wasmgate keeps and returns but does not act on
    /// (networkConfiguration, loadBalancers, ...).
    #[serde(flatten)]
    pub kept: serde_json::Map<String, Value>,
    /// The task sets of a service with an EXTERNAL deployment controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<TaskSet>,
    /// The scheduler's bookkeeping; stripped from every answer.
    #[serde(default)]
    pub scheduler: SchedulerState,
    /// Service deployments and revisions (ListServiceDeployments and friends); stripped from
    /// DescribeServices, which shows the current ones only.
    #[serde(default, rename = "wasmgateHistory")]
    pub history: History,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    #[serde(default)]
    pub deployment_circuit_breaker: CircuitBreaker,
    /// The members kept and returned but not acted on (alarms: there is no CloudWatch here;
    /// bakeTimeInMinutes and strategy ROLLING, the only one run).
    #[serde(flatten)]
    pub kept: Map<String, Value>,
}

impl Default for DeploymentConfiguration {
    fn default() -> Self {
        Self {
            maximum_percent: 200,
            minimum_healthy_percent: 100,
            deployment_circuit_breaker: CircuitBreaker::default(),
            kept: Map::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
    /// resetOnHealthyTask, thresholdConfiguration: kept and returned.
    #[serde(flatten)]
    pub kept: Map<String, Value>,
}

/// One deployment of a service: a task definition and how far its rollout is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits; also every task's `startedBy`.
    pub id: String,
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub desired_count: u32,
    pub pending_count: u32,
    pub running_count: u32,
    pub failed_tasks: u32,
    pub created_at: f64,
    pub updated_at: f64,
    pub launch_type: LaunchType,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: f64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementConstraint {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementStrategy {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What the scheduler remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerState {
    /// Stopped tasks already counted (failures, events); pruned to tasks still stored.
    #[serde(default)]
    pub accounted: Vec<String>,
    /// Task starts that failed in a row (stopped before RUNNING); a task that reaches RUNNING
    /// or a new deployment resets it.
    #[serde(default)]
    pub start_failures: u32,
    /// While throttled: no new task starts before this time (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<f64>,
    /// Whether the steady-state event was given for the current state.
    #[serde(default)]
    pub steady: bool,
    /// The last "unable to place" message and when, so it is not repeated every pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_placement_failure: Option<(String, f64)>,
}

impl Service {
    /// Whether its deployment controller is EXTERNAL: it runs task sets, not deployments.
    pub fn is_external(&self) -> bool {
        self.kept
            .get("deploymentController")
            .and_then(|c| c.get("type"))
            .is_some_and(|t| t == "EXTERNAL")
    }

    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    /// Adds an event (newest first), keeping the latest [`MAX_EVENTS`].
    pub fn add_event(&mut self, now: f64, message: String) {
        self.events.insert(
            0,
            ServiceEvent {
                id: new_id(),
                created_at: now,
                message,
            },
        );
        self.events.truncate(MAX_EVENTS);
    }

    /// The shape clients see: the record without the scheduler's bookkeeping and history,
    /// with the current service deployment and revisions.
    pub fn to_shape(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.remove("scheduler");
            object.remove("wasmgateHistory");
            // A task set's tags are DescribeTaskSets' to show (include TAGS), not the service's.
            if let Some(Value::Array(sets)) = object.get_mut("taskSets") {
                for set in sets.iter_mut().filter_map(Value::as_object_mut) {
                    set.remove("tags");
                }
            }
            if let Some(current) = self.history.deployments.first() {
                object.insert(
                    "currentServiceDeployment".into(),
                    json!(self.child_arn("service-deployment", &current.id)),
                );
            }
            // A deployment shows what its revision runs (Service Connect and volumes appear
            // only there in ECS's shapes).
            if let Some(Value::Array(deployments)) = object.get_mut("deployments") {
                for shape in deployments.iter_mut() {
                    let revision = shape["id"]
                        .as_str()
                        .and_then(|id| self.history.revision_of(id));
                    if let (Some(revision), Some(shape)) = (revision, shape.as_object_mut()) {
                        for (member, value) in &revision.members {
                            if DEPLOYMENT_MEMBERS.contains(&member.as_str()) {
                                shape.insert(member.clone(), value.clone());
                            }
                        }
                    }
                }
            }
            let revisions: Vec<Value> = self
                .deployments
                .iter()
                .filter_map(|d| {
                    let revision = self.history.runs.get(&d.id)?;
                    Some(json!({
                        "arn": self.child_arn("service-revision", revision),
                        "requestedTaskCount": d.desired_count,
                        "runningTaskCount": d.running_count,
                        "pendingTaskCount": d.pending_count,
                    }))
                })
                .collect();
            if !revisions.is_empty() {
                object.insert("currentServiceRevisions".into(), json!(revisions));
            }
        }
        value
    }

    /// The ARN of one of the service's own resources: `KIND/CLUSTER/SERVICE/ID`
    /// (`service-deployment`, `service-revision`, `task-set`).
    pub fn child_arn(&self, kind: &str, id: &str) -> String {
        match self.service_arn.split_once(":service/") {
            Some((scope, path)) => format!("{scope}:{kind}/{path}/{id}"),
            None => format!("{}/{kind}/{id}", self.service_arn),
        }
    }

    /// What `deployment` runs as a service revision: its task definition and launch type,
    /// and the service's revision members as they are now.
    pub fn revision_for(&self, deployment: &Deployment, now: f64) -> ServiceRevision {
        ServiceRevision {
            id: deployment
                .id
                .strip_prefix("ecs-svc/")
                .unwrap_or(&deployment.id)
                .to_string(),
            task_definition: deployment.task_definition.clone(),
            launch_type: deployment.launch_type,
            created_at: now,
            members: REVISION_MEMBERS
                .iter()
                .filter_map(|m| Some((m.to_string(), self.kept.get(*m)?.clone())))
                .collect(),
        }
    }

    /// Makes `deployment` the PRIMARY one (the others go ACTIVE and drain) and starts a
    /// service deployment for it, to a new service revision.
    pub fn begin_deployment(&mut self, deployment: Deployment, now: f64) {
        let live: Vec<String> = self.deployments.iter().map(|d| d.id.clone()).collect();
        for old in &mut self.deployments {
            old.status = DeploymentStatus::Active;
            old.updated_at = now;
        }
        let revision = self.revision_for(&deployment, now);
        let configuration =
            serde_json::to_value(&self.deployment_configuration).unwrap_or_default();
        self.history
            .begin(revision, &deployment.id, &live, configuration, now);
        self.deployments.insert(0, deployment);
        let live: Vec<String> = self.deployments.iter().map(|d| d.id.clone()).collect();
        self.history.prune(&live);
    }

    /// Sets the service's revision members to `revision`'s (a rollback restores them).
    pub fn apply_revision(&mut self, revision: &ServiceRevision) {
        for member in REVISION_MEMBERS {
            match revision.members.get(*member) {
                Some(value) => {
                    self.kept.insert(member.to_string(), value.clone());
                }
                None => {
                    self.kept.remove(*member);
                }
            }
        }
        self.task_definition = revision.task_definition.clone();
        self.launch_type = revision.launch_type;
    }
}

/// A deployment id: `ecs-svc/` and 19 digits.
pub fn new_deployment_id() -> String {
    let digits: String = crate::agent::new_task_id()
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .take(19)
        .collect();
    format!("ecs-svc/{digits}")
}

/// An event id (a UUID-shaped string, as ECS's).
fn new_id() -> String {
    let hex = crate::agent::new_task_id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
