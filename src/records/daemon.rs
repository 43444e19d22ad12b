//! The daemon records (ECS's managed daemons): a daemon under `daemons/CLUSTER/NAME`, its
//! immutable revisions under `daemon-revisions/CLUSTER/NAME/ID` and its deployments under
//! `daemon-deployments/CLUSTER/NAME/ID`, each in ECS's shape plus what the scheduler keeps.
//! The API writes what is desired (a new revision and deployment); the scheduler's daemon pass
//! runs it and writes the counts and statuses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::service::SchedulerState;
use crate::arn::ArnScope;

/// A daemon's `status`. A deleted daemon whose tasks have stopped is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DaemonStatus {
    Active,
    DeleteInProgress,
}

/// A daemon deployment's `status` (the ones wasmgate reaches; ECS's rollback statuses are
/// never set, since wasmgate has no alarms to roll back on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DaemonDeploymentStatus {
    Pending,
    InProgress,
    Successful,
    StopRequested,
    Stopped,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

/// Hosts of one capacity provider as a revision or deployment counts them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCount {
    pub arn: String,
    /// Hosts running a task of the revision.
    pub running: u32,
    /// Eligible hosts without one.
    pub without: u32,
    /// Draining hosts that still run one.
    pub draining: u32,
}

/// A daemon as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRecord {
    pub daemon_arn: String,
    pub daemon_name: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub status: DaemonStatus,
    pub capacity_provider_arns: Vec<String>,
    /// The revision its tasks converge on (an id; its ARN is in the revision record).
    pub current_revision: String,
    /// The latest deployment's id.
    pub deployment: String,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default)]
    pub tags: Value,
    /// Per revision with tasks (its ARN), per provider: what the last pass counted.
    #[serde(default)]
    pub counts: Vec<(String, Vec<ProviderCount>)>,
    /// Hosts this daemon drained because its critical task stopped (each once).
    #[serde(default)]
    pub drained: Vec<String>,
    #[serde(default)]
    pub scheduler: SchedulerState,
}

/// A snapshot of a daemon's configuration (DescribeDaemonRevisions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRevisionRecord {
    pub id: String,
    pub daemon_revision_arn: String,
    pub daemon_arn: String,
    pub cluster_arn: String,
    pub daemon_task_definition_arn: String,
    pub created_at: f64,
    pub container_images: Vec<Value>,
    pub propagate_tags: String,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub critical: bool,
}

/// One deployment of a daemon (DescribeDaemonDeployments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonDeploymentRecord {
    pub id: String,
    pub daemon_deployment_arn: String,
    pub daemon_arn: String,
    pub cluster_arn: String,
    pub status: DaemonDeploymentStatus,
    pub status_reason: String,
    /// The revision it rolls out (ARN).
    pub target_revision: String,
    /// The revisions that ran when it began (ARNs).
    pub source_revisions: Vec<String>,
    pub capacity_provider_arns: Vec<String>,
    pub deployment_configuration: Value,
    /// The target's hosts per provider, as the last pass counted them.
    #[serde(default)]
    pub target_counts: Vec<ProviderCount>,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
}

/// The store key of a daemon.
pub fn daemon_key(cluster: &str, name: &str) -> String {
    format!("daemons/{cluster}/{name}")
}

/// The store key of a revision.
pub fn revision_key(cluster: &str, name: &str, id: &str) -> String {
    format!("daemon-revisions/{cluster}/{name}/{id}")
}

/// The store key of a deployment.
pub fn deployment_key(cluster: &str, name: &str, id: &str) -> String {
    format!("daemon-deployments/{cluster}/{name}/{id}")
}

fn arn(scope: &ArnScope, resource: &str) -> String {
    format!("arn:aws:ecs:{}:{}:{resource}", scope.region, scope.account)
}

/// `daemon/CLUSTER/NAME`.
pub fn daemon_arn(scope: &ArnScope, cluster: &str, name: &str) -> String {
    arn(scope, &format!("daemon/{cluster}/{name}"))
}

/// `daemon-revision/CLUSTER/NAME/ID`.
pub fn revision_arn(scope: &ArnScope, cluster: &str, name: &str, id: &str) -> String {
    arn(scope, &format!("daemon-revision/{cluster}/{name}/{id}"))
}

/// `daemon-deployment/CLUSTER/NAME/ID`.
pub fn deployment_arn(scope: &ArnScope, cluster: &str, name: &str, id: &str) -> String {
    arn(scope, &format!("daemon-deployment/{cluster}/{name}/{id}"))
}

/// The store key an ARN of `kind` (`daemon-revision`, `daemon-deployment`) names, if it is
/// one: `PREFIX/CLUSTER/NAME/ID`.
pub fn key_of_arn(given: &str, kind: &str, prefix: &str) -> Option<String> {
    let rest = crate::arn::resource_name(given, kind);
    if !given.starts_with("arn:") || rest == given {
        return None;
    }
    let mut parts = rest.split('/');
    let (cluster, name, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [cluster, name, id].iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(format!("{prefix}/{cluster}/{name}/{id}"))
}

/// The (cluster, name) a daemon ARN names.
pub fn daemon_of_arn(given: &str) -> Option<(String, String)> {
    let rest = crate::arn::resource_name(given, "daemon");
    if !given.starts_with("arn:") || rest == given {
        return None;
    }
    let (cluster, name) = rest.split_once('/')?;
    (!cluster.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (cluster.to_string(), name.to_string()))
}

/// A new revision or deployment id (32 hex digits).
pub fn new_id() -> String {
    crate::agent::new_task_id()
}
