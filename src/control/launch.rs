//! Launching tasks: choose a host for each (placement over what every host holds, from the
//! hosts' in-memory view), record the task on it, and let the host hear of it through its
//! desired set. RunTask and the scheduler both launch through here.

use serde_json::{Value, json};

use super::placement::{Candidate, choose};
use super::{Control, ControlError};
use crate::agent::{ContainerOverride, new_task_id};
use crate::records::service::{PlacementConstraint, PlacementStrategy};
use crate::records::{
    ContainerRecord, ContainerStatus, DesiredStatus, HealthStatus, LaunchType, TaskRecord,
    TaskStatus, task_key, timestamp,
};
use crate::taskdef::TaskDefinition;

/// What to start: `count` tasks of one task definition, in one group, placed as asked.
pub struct Launch<'a> {
    pub cluster: &'a str,
    /// The stored task definition record.
    pub record: &'a Value,
    pub definition: &'a TaskDefinition,
    pub count: u32,
    pub started_by: Option<String>,
    /// `service:NAME` or `family:FAMILY` (or RunTask's own).
    pub group: String,
    pub launch_type: LaunchType,
    /// ECS's `overrides` as given (the agent reads its `containerOverrides`).
    pub overrides: Value,
    pub tags: Value,
    pub strategies: &'a [PlacementStrategy],
    pub constraints: &'a [PlacementConstraint],
}

/// A task that fit nowhere: the closest host (or the cluster) and ECS's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementFailure {
    pub arn: String,
    pub reason: String,
}

/// The tasks started and one failure for each that fit nowhere.
#[derive(Debug, Default)]
pub struct Launched {
    pub tasks: Vec<TaskRecord>,
    pub failures: Vec<PlacementFailure>,
}

/// CPU units and MiB a task holds on its host: the task-level values, else the sum of its
/// containers' (`memory`, else `memoryReservation`), each as this run's overrides set it.
pub fn task_needs(definition: &TaskDefinition, overrides: &[ContainerOverride]) -> (u64, u64) {
    let containers = &definition.spec.container_definitions;
    let of = |name: &str| overrides.iter().find(|o| o.name == name);
    let cpu = definition.cpu_units.map(u64::from).unwrap_or_else(|| {
        containers
            .iter()
            .filter_map(|c| of(&c.name).and_then(|o| o.cpu).or(c.cpu))
            .map(u64::from)
            .sum()
    });
    let memory = definition.memory_mib.map(u64::from).unwrap_or_else(|| {
        containers
            .iter()
            .filter_map(|c| {
                let o = of(&c.name);
                o.and_then(|o| o.memory)
                    .or(c.memory)
                    .or(o.and_then(|o| o.memory_reservation))
                    .or(c.memory_reservation)
            })
            .map(u64::from)
            .sum()
    });
    (cpu, memory)
}

/// The hosts a task of `cluster` with `launch_type` may go to, with what each has left.
pub fn candidates(
    control: &Control,
    cluster: &str,
    launch_type: LaunchType,
    group: &str,
) -> Result<Vec<Candidate>, ControlError> {
    use super::hosts::HostStatus;
    let mut candidates: Vec<Candidate> = control
        .hosts
        .records()?
        .into_iter()
        .filter(|host| host.status == HostStatus::Active && control.hosts.connected(&host.id))
        .filter(|host| match launch_type {
            LaunchType::Fargate => host.cluster.is_none(),
            LaunchType::Ec2 | LaunchType::External => host.cluster.as_deref() == Some(cluster),
        })
        .map(|host| Candidate {
            id: host.id.clone(),
            arn: host.arn(&control.arns),
            free_cpu: u64::from(host.resources.cpu_units),
            free_memory: u64::from(host.resources.memory_mib),
            free_tasks: host.resources.max_tasks.map_or(u64::MAX, u64::from),
            group_tasks: 0,
            attributes: host.all_attributes(),
        })
        .collect();
    // What each holds comes from the hosts' in-memory view of the placed tasks (kept from the
    // store's change feed, and told at once of every task placed), not from a scan of every
    // stored task.
    let holdings = control.hosts.holdings(group);
    for candidate in &mut candidates {
        if let Some(held) = holdings.get(&candidate.id) {
            candidate.free_cpu = candidate.free_cpu.saturating_sub(held.cpu);
            candidate.free_memory = candidate.free_memory.saturating_sub(held.memory);
            candidate.free_tasks = candidate.free_tasks.saturating_sub(held.tasks);
            candidate.group_tasks = held.group_tasks;
        }
    }
    Ok(candidates)
}

/// Places and records tasks; the hosts hear of them from the store.
pub fn launch(control: &Control, request: Launch<'_>) -> Result<Launched, ControlError> {
    let cluster = request.cluster;
    let definition = request.definition;
    let family = request.record["family"].as_str().unwrap_or_default();
    let revision = request.record["revision"].as_u64().unwrap_or_default();
    let overrides = ContainerOverride::list_from_ecs(&request.overrides);
    let (cpu, memory) = task_needs(definition, &overrides);
    let health_checked = definition
        .essential_containers()
        .any(|c| c.health_check.is_some());
    let mut launched = Launched::default();
    let _placing = control.lock_placement();
    let mut candidates = candidates(control, cluster, request.launch_type, &request.group)?;
    // Read once per call: every task placed names its host's zone and address.
    let hosts: std::collections::HashMap<String, super::hosts::HostRecord> = control
        .hosts
        .records()?
        .into_iter()
        .map(|h| (h.id.clone(), h))
        .collect();
    if candidates.is_empty() {
        let reason = match request.launch_type {
            LaunchType::Fargate => {
                "RESOURCE:NO_HOSTS (no capacity host of the shared pool is connected)".to_string()
            }
            other => format!(
                "No Container Instances were found in your cluster (launch type {})",
                other.as_str()
            ),
        };
        for _ in 0..request.count {
            launched.failures.push(PlacementFailure {
                arn: control.arns.cluster(cluster),
                reason: reason.clone(),
            });
        }
        return Ok(launched);
    }
    for _ in 0..request.count {
        let seed = u64::from_str_radix(&new_task_id()[..12], 16).unwrap_or_default();
        let chosen = match choose(
            &candidates,
            cpu,
            memory,
            request.strategies,
            request.constraints,
            seed,
        ) {
            Ok(index) => index,
            Err(no_fit) => {
                launched.failures.push(PlacementFailure {
                    arn: no_fit
                        .closest
                        .unwrap_or_else(|| control.arns.cluster(cluster)),
                    reason: no_fit.reason.to_string(),
                });
                continue;
            }
        };
        let candidate = &mut candidates[chosen];
        candidate.free_cpu -= cpu;
        candidate.free_memory -= memory;
        candidate.free_tasks = candidate.free_tasks.saturating_sub(1);
        candidate.group_tasks += 1;
        let host = hosts.get(&candidate.id);
        let task_id = new_task_id();
        let task_arn = control.arns.task(cluster, &task_id);
        let containers = definition
            .spec
            .container_definitions
            .iter()
            .map(|c| {
                let given = overrides.iter().find(|o| o.name == c.name);
                let mut shape = json!({
                    "containerArn": format!("{task_arn}/{}", c.name),
                    "taskArn": task_arn,
                    "image": c.image,
                })
                .as_object()
                .cloned()
                .unwrap_or_default();
                // What this container really gets, overrides applied (ECS's Container shape
                // has them as strings); stats report the hard limit from here.
                for (field, value) in [
                    ("cpu", given.and_then(|o| o.cpu).or(c.cpu)),
                    ("memory", given.and_then(|o| o.memory).or(c.memory)),
                    (
                        "memoryReservation",
                        given
                            .and_then(|o| o.memory_reservation)
                            .or(c.memory_reservation),
                    ),
                ] {
                    if let Some(value) = value {
                        shape.insert(field.into(), json!(value.to_string()));
                    }
                }
                ContainerRecord {
                    name: c.name.clone(),
                    last_status: ContainerStatus::Pending,
                    health_status: HealthStatus::Unknown,
                    exit_code: None,
                    reason: None,
                    image_digest: None,
                    shape,
                }
            })
            .collect();
        let mut shape = serde_json::Map::new();
        shape.insert("overrides".into(), request.overrides.clone());
        shape.insert("tags".into(), request.tags.clone());
        if let Some(host) = host {
            shape.insert("availabilityZone".into(), json!(host.availability_zone()));
            shape.insert(
                "attributes".into(),
                json!([{"name": "ecs.cpu-architecture", "value": std::env::consts::ARCH}]),
            );
        }
        match request.launch_type {
            // Like a Fargate task: no container instance; where it runs is an attachment.
            LaunchType::Fargate => {
                let mut details = vec![json!({"name": "wasmgateHostId", "value": candidate.id})];
                if let Some(host) = host {
                    details.push(json!({"name": "wasmgateHostName", "value": host.name}));
                    if let Some(address) = &host.address {
                        details.push(json!({"name": "privateIPv4Address", "value": address}));
                    }
                }
                shape.insert(
                    "attachments".into(),
                    json!([{
                        "id": format!("{}-{}-{}-{}-{}", &task_id[..8], &task_id[8..12], &task_id[12..16], &task_id[16..20], &task_id[20..32]),
                        "type": "wasmgate.host",
                        "status": "ATTACHED",
                        "details": details,
                    }]),
                );
            }
            LaunchType::Ec2 | LaunchType::External => {
                shape.insert("containerInstanceArn".into(), json!(candidate.arn));
            }
        }
        let task = TaskRecord {
            task_arn,
            cluster_arn: control.arns.cluster(cluster),
            task_definition_arn: control.arns.task_definition(family, revision),
            last_status: TaskStatus::Provisioning,
            desired_status: DesiredStatus::Running,
            health_status: HealthStatus::Unknown,
            started_by: request.started_by.clone(),
            group: request.group.clone(),
            launch_type: request.launch_type,
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            containers,
            created_at: timestamp(),
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            version: 1,
            host: Some(candidate.id.clone()),
            health_checked,
            shape,
        };
        crate::records::create(control.store.as_ref(), &task_key(&task_id), &task)?;
        control.hosts.note_task(&task);
        launched.tasks.push(task);
    }
    Ok(launched)
}
