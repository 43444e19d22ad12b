//! The agent: runs tasks on this host. It resolves each container's image, picks the capacity,
//! starts the containers in `dependsOn` order, stops the task when an essential container exits,
//! and reports how every container ended.
//!
//! It also checks containers' health ([`health`]) and reports every step as a [`TaskEvent`].
//!
//! Architecture invariant: the agent turns task definitions into capacity-level
//! [`ContainerSpec`](crate::capacity::ContainerSpec)s; nothing below it sees ECS JSON.

pub mod health;
mod host;
mod launch;
mod network;
mod prepare;
mod service;
mod task;

pub use host::HostResources;
pub use service::{AgentLink, STATS_EVERY, run_agent};
pub use task::{
    ContainerExitReport, ContainerOutcome, ContainerOverride, RunningTask, StopCode, TaskEvent,
    TaskEvents, TaskOutcome, TaskRequest, TaskRunner, TaskRunnerConfig, TimedEvent, new_task_id,
};
