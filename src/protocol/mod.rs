//! What the controller and the agents say to each other, as data. The same messages travel
//! over the in-memory transport (the agent inside `wasmgate server`) and over HTTP
//! ([`http`]: `wasmgate agent` on another host).
//!
//! The protocol is level-triggered. The controller sends each host the whole set of tasks it
//! should run ([`DesiredTasks`], numbered by `generation`); the agent converges on the latest
//! set it has, so a lost, late or repeated message costs nothing but a later convergence. The
//! agent sends [`AgentReport`]s: each task's steps as they happen, and with every heartbeat the
//! whole set of tasks it runs and the generation it converged on, from which the controller
//! heals what a lost report left behind.
//!
//! Architecture invariant: every message is plain serde data (no handles, no `Arc` of shared
//! state), addressed to one host, and safe to deliver twice.

pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::{ContainerOverride, HostResources, TimedEvent};
use crate::logs::LogRecord;

/// What a host offers, as it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostOffer {
    /// The host's name as people see it (its hostname unless given).
    pub name: String,
    /// The cluster it registers in (EC2 / EXTERNAL capacity); `None` joins the shared pool
    /// that runs FARGATE tasks of every cluster.
    pub cluster: Option<String>,
    pub resources: HostResources,
    /// Placement attributes (`--attribute K=V`), besides the ones every host has.
    pub attributes: BTreeMap<String, String>,
    /// Where the agent serves forwarded HTTP requests (`http://ADDR`), if it does.
    pub endpoint: Option<String>,
    /// The host's address as tasks and users reach it.
    pub address: Option<String>,
}

/// A join request of an agent on another host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The cluster's join token (`--agent-token-file` of the server).
    pub token: String,
    /// The instance id this agent had before (kept in its data directory), to join as the
    /// same host again.
    pub instance_id: Option<String>,
    pub offer: HostOffer,
}

/// The controller's answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub instance_id: String,
    /// The agent's own credential for every later call (`Authorization: Bearer ID.SECRET`);
    /// the join token is not needed again.
    pub credential: String,
    /// How often the controller expects a heartbeat, in milliseconds.
    pub heartbeat_millis: u64,
    /// The key the gateway presents with every request it forwards to this host
    /// (`x-wasmgate-forward-key`); the agent serves no forwarded request without it.
    pub forward_key: String,
}

/// The whole set of tasks a host should run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredTasks {
    /// Which controller numbered the generations (a new one after a controller restart).
    pub session: String,
    /// Grows with every change of this host's set.
    pub generation: u64,
    pub tasks: Vec<DesiredTask>,
    /// The task definition documents the tasks name, by ARN, each once.
    pub definitions: BTreeMap<String, Arc<serde_json::Value>>,
}

/// One task a host should run, or stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredTask {
    pub task_id: String,
    /// A key of [`DesiredTasks::definitions`].
    pub task_definition_arn: String,
    #[serde(default)]
    pub overrides: Vec<ContainerOverride>,
    pub desired: Desired,
}

/// What should become of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Desired {
    Running,
    /// Stop it (each container within its stopTimeout), for this reason.
    Stopped {
        reason: String,
    },
}

/// What an agent says: steps of tasks, and (every few seconds) its heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    /// In the order they happened.
    #[serde(default)]
    pub events: Vec<TimedEvent>,
    #[serde(default)]
    pub heartbeat: Option<Heartbeat>,
    /// Task output since the last report (a remote agent's; the local one shares the
    /// controller's log directory).
    #[serde(default)]
    pub logs: Vec<TaskLogs>,
}

/// The agent is alive, runs exactly `running`, and has applied the desired set
/// (`session`, `generation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub session: String,
    pub generation: u64,
    pub running: Vec<String>,
}

/// Log records of one task, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLogs {
    pub task_id: String,
    pub records: Vec<LogRecord>,
}
