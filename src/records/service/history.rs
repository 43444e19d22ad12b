//! A service's deployment history as ECS shows it: *service revisions* (what a deployment
//! ran: task definition, launch type, load balancers, service registries, ...) and *service
//! deployments* (a move from source revisions to a target revision, with its status,
//! circuit breaker and rollback). The scheduler's own `Deployment`s (`ecs-svc/...`, the
//! service's `deployments` member) are the moving parts; each belongs to one service
//! deployment, and a rollback adds a second one to the same service deployment, running the
//! revision rolled back to.
//!
//! Kept inside the service record (stripped from DescribeServices), so the scheduler moves a
//! deployment's status in the same compare-and-swap write that moves its tasks' counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::records::LaunchType;

/// How many service deployments a service keeps. The history lives in the service record,
/// which every scheduler pass that changes anything rewrites, so it must not grow with the
/// service's age; ECS itself lists only recent deployments. Revisions are kept while a kept
/// deployment or a running `Deployment` names them.
pub const MAX_SERVICE_DEPLOYMENTS: usize = 25;

/// The members of a service that make up a service revision (besides the task definition and
/// launch type): a change of any of them is a new deployment.
pub const REVISION_MEMBERS: &[&str] = &[
    "capacityProviderStrategy",
    "platformVersion",
    "loadBalancers",
    "serviceRegistries",
    "networkConfiguration",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
];

/// ECS's `ServiceDeploymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceDeploymentStatus {
    Pending,
    Successful,
    Stopped,
    StopRequested,
    InProgress,
    RollbackRequested,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

impl ServiceDeploymentStatus {
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(Value::String(text.to_string())).ok()
    }

    /// Still moving: the scheduler has work to do for it.
    pub fn is_ongoing(self) -> bool {
        matches!(
            self,
            Self::Pending
                | Self::InProgress
                | Self::StopRequested
                | Self::RollbackRequested
                | Self::RollbackInProgress
        )
    }
}

/// One service revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevision {
    /// The digits of the `ecs-svc/` deployment that first ran it.
    pub id: String,
    pub task_definition: String,
    pub launch_type: LaunchType,
    pub created_at: f64,
    /// The service's [`REVISION_MEMBERS`] as they were, ECS's shapes.
    #[serde(default)]
    pub members: Map<String, Value>,
}

/// A rollback of a service deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub reason: String,
    pub started_at: f64,
    /// The revision rolled back to.
    pub service_revision: String,
}

/// One service deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeployment {
    /// ECS's 21-character id (the last part of the ARN).
    pub id: String,
    pub status: ServiceDeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    pub updated_at: f64,
    pub target_revision: String,
    /// The revisions that ran when it started (newest first).
    #[serde(default)]
    pub source_revisions: Vec<String>,
    /// The scheduler's deployments that carry it: its own, then a rollback's.
    pub carriers: Vec<String>,
    /// The service's `deploymentConfiguration` when it started, ECS's shape.
    #[serde(default)]
    pub deployment_configuration: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// Tasks the circuit breaker counted against it, and its threshold.
    #[serde(default)]
    pub failure_count: u32,
    #[serde(default)]
    pub threshold: u32,
    /// Whether the circuit breaker tripped.
    #[serde(default)]
    pub tripped: bool,
}

impl ServiceDeployment {
    /// The scheduler deployment carrying it now.
    pub fn carrier(&self) -> Option<&str> {
        self.carriers.last().map(String::as_str)
    }
}

/// A service's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Newest first.
    #[serde(default)]
    pub deployments: Vec<ServiceDeployment>,
    #[serde(default)]
    pub revisions: Vec<ServiceRevision>,
    /// Which revision each scheduler deployment runs.
    #[serde(default)]
    pub runs: BTreeMap<String, String>,
}

impl History {
    pub fn revision(&self, id: &str) -> Option<&ServiceRevision> {
        self.revisions.iter().find(|r| r.id == id)
    }

    /// The revision the scheduler deployment `carrier` runs.
    pub fn revision_of(&self, carrier: &str) -> Option<&ServiceRevision> {
        self.runs.get(carrier).and_then(|id| self.revision(id))
    }

    /// The service deployment a scheduler deployment carries.
    pub fn carried_by_mut(&mut self, carrier: &str) -> Option<&mut ServiceDeployment> {
        self.deployments
            .iter_mut()
            .find(|d| d.carriers.iter().any(|c| c == carrier))
    }

    pub fn find(&self, id: &str) -> Option<&ServiceDeployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    pub fn find_mut(&mut self, id: &str) -> Option<&mut ServiceDeployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// Starts a service deployment to `revision`, carried by the scheduler deployment
    /// `carrier`, from the revisions `live` scheduler deployments run. An ongoing one is
    /// stopped: a new deployment replaces it, as in ECS.
    pub fn begin(
        &mut self,
        revision: ServiceRevision,
        carrier: &str,
        live: &[String],
        configuration: Value,
        now: f64,
    ) {
        for ongoing in self
            .deployments
            .iter_mut()
            .filter(|d| d.status.is_ongoing())
        {
            ongoing.status = ServiceDeploymentStatus::Stopped;
            ongoing.status_reason =
                Some("The service deployment was stopped: a newer one started.".into());
            ongoing.stopped_at = Some(now);
            ongoing.finished_at = Some(now);
            ongoing.updated_at = now;
        }
        let mut sources: Vec<String> = Vec::new();
        for id in live.iter().filter_map(|c| self.runs.get(c)) {
            if !sources.contains(id) && *id != revision.id {
                sources.push(id.clone());
            }
        }
        self.runs.insert(carrier.to_string(), revision.id.clone());
        let target = revision.id.clone();
        if self.revision(&revision.id).is_none() {
            self.revisions.push(revision);
        }
        self.deployments.insert(
            0,
            ServiceDeployment {
                id: new_service_deployment_id(),
                status: ServiceDeploymentStatus::InProgress,
                status_reason: None,
                created_at: now,
                started_at: Some(now),
                finished_at: None,
                stopped_at: None,
                updated_at: now,
                target_revision: target,
                source_revisions: sources,
                carriers: vec![carrier.to_string()],
                deployment_configuration: configuration,
                rollback: None,
                failure_count: 0,
                threshold: 0,
                tripped: false,
            },
        );
    }

    /// Drops what is beyond [`MAX_SERVICE_DEPLOYMENTS`], the runs of scheduler deployments
    /// that are gone (`live`), and the revisions nothing names any more.
    pub fn prune(&mut self, live: &[String]) {
        self.deployments.truncate(MAX_SERVICE_DEPLOYMENTS);
        self.runs.retain(|carrier, _| live.contains(carrier));
        let named = |id: &str, h: &History| {
            h.runs.values().any(|r| r == id)
                || h.deployments.iter().any(|d| {
                    d.target_revision == id
                        || d.source_revisions.iter().any(|s| s == id)
                        || d.rollback
                            .as_ref()
                            .is_some_and(|r| r.service_revision == id)
                })
        };
        let keep: Vec<bool> = self.revisions.iter().map(|r| named(&r.id, self)).collect();
        let mut flags = keep.into_iter();
        self.revisions.retain(|_| flags.next().unwrap_or(true));
    }
}

/// A service deployment id: 21 letters, digits, `_` and `-`, like ECS's.
pub fn new_service_deployment_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let hex = format!(
        "{}{}",
        crate::agent::new_task_id(),
        crate::agent::new_task_id()
    );
    hex.as_bytes()
        .chunks(2)
        .take(21)
        .map(|pair| {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16)
                .unwrap_or_default();
            char::from(ALPHABET[usize::from(byte) % ALPHABET.len()])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(id: &str) -> ServiceRevision {
        ServiceRevision {
            id: id.into(),
            task_definition: format!("td:{id}"),
            launch_type: LaunchType::Fargate,
            created_at: 0.0,
            members: Map::new(),
        }
    }

    #[test]
    fn a_new_deployment_stops_the_ongoing_one_and_names_its_sources() {
        let mut history = History::default();
        history.begin(revision("1"), "ecs-svc/1", &[], Value::Null, 1.0);
        history.begin(
            revision("2"),
            "ecs-svc/2",
            &["ecs-svc/1".into()],
            Value::Null,
            2.0,
        );
        assert_eq!(history.deployments[0].source_revisions, ["1"]);
        assert_eq!(
            history.deployments[1].status,
            ServiceDeploymentStatus::Stopped
        );
        assert_eq!(history.revision_of("ecs-svc/2").unwrap().id, "2");
        history.prune(&["ecs-svc/2".into()]);
        // Revision 1 is still a source of a kept deployment.
        assert!(history.revision("1").is_some());
        assert_eq!(new_service_deployment_id().len(), 21);
    }

    #[test]
    fn history_stays_bounded() {
        let mut history = History::default();
        for i in 0..(MAX_SERVICE_DEPLOYMENTS + 10) {
            let carrier = format!("ecs-svc/{i}");
            history.begin(revision(&i.to_string()), &carrier, &[], Value::Null, 1.0);
            history.prune(&[carrier]);
        }
        assert_eq!(history.deployments.len(), MAX_SERVICE_DEPLOYMENTS);
        assert!(history.revisions.len() <= MAX_SERVICE_DEPLOYMENTS);
    }
}
