//! Launching tasks: choose a host for each (placement over what every host holds, from the
//! hosts' in-memory view), record the task on it, and let the host hear of it through its
//! desired set. RunTask and the scheduler both launch through here.

use serde_json::{Value, json};

use super::placement::{Candidate, choose};
use super::providers::{Provider, StrategyItem};
use super::{Control, ControlError};
use crate::agent::{ContainerOverride, new_task_id};
use crate::records;
use crate::records::service::{PlacementConstraint, PlacementStrategy};
use crate::records::{
    ContainerRecord, ContainerStatus, DesiredStatus, HealthStatus, LaunchType, TaskMicros,
    TaskRecord, TaskStatus, micros, seconds, task_key,
};
use crate::store::{Expect, Json, StoreError, Txn};
use crate::taskdef::TaskDefinition;
use std::collections::HashMap;

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
    /// A capacity provider strategy (checked); when not empty it decides where each task goes
    /// and `launch_type` is ignored.
    pub strategy: &'a [StrategyItem],
    /// ECS's `overrides` as given (the agent reads its `containerOverrides`).
    pub overrides: Value,
    pub tags: Value,
    pub strategies: &'a [PlacementStrategy],
    pub constraints: &'a [PlacementConstraint],
    /// Keys that must stay as expected for the tasks to be recorded (the service record a
    /// scheduler pass decided on): a launch on a stale decision records nothing.
    pub guard: Vec<(String, Expect)>,
    /// RunTask's `clientToken`: the tasks' ids derive from it, so a retry of the same request
    /// (after a lost answer, against another replica) finds the tasks the first made instead
    /// of starting more.
    pub client_token: Option<&'a str>,
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

/// The tags a task gets (ECS's `[{key, value}]`): its own, then those of `propagated` (its
/// task definition's or service's, as `propagateTags` asks) whose keys it does not have, then
/// ECS's managed tags (`enableECSManagedTags`: `aws:ecs:clusterName`, `aws:ecs:serviceName`).
pub fn task_tags(own: &Value, propagated: Option<&Value>, managed: &[(&str, &str)]) -> Value {
    let mut tags: Vec<Value> = own.as_array().cloned().unwrap_or_default();
    let has = |tags: &[Value], key: &Value| tags.iter().any(|t| &t["key"] == key);
    for tag in propagated.and_then(Value::as_array).into_iter().flatten() {
        if !has(&tags, &tag["key"]) {
            tags.push(tag.clone());
        }
    }
    for (key, value) in managed {
        let key = json!(key);
        if !has(&tags, &key) {
            tags.push(json!({"key": key, "value": value}));
        }
    }
    Value::Array(tags)
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
    let hosts = control.hosts.records()?;
    Ok(candidates_among(
        control,
        &hosts,
        group,
        |host| match launch_type {
            LaunchType::Fargate => host.cluster.is_none(),
            LaunchType::Ec2 | LaunchType::External => host.cluster.as_deref() == Some(cluster),
        },
    ))
}

/// The active, connected hosts of `hosts` that `admit` keeps, with what each has left.
fn candidates_among(
    control: &Control,
    hosts: &[super::hosts::HostRecord],
    group: &str,
    admit: impl Fn(&super::hosts::HostRecord) -> bool,
) -> Vec<Candidate> {
    use super::hosts::HostStatus;
    let mut candidates: Vec<Candidate> = hosts
        .iter()
        .filter(|host| host.status == HostStatus::Active && control.hosts.connected(&host.id))
        .filter(|host| admit(host))
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
    candidates
}

/// Where a launch may place: one set of candidates (a launch type), or one per provider of a
/// strategy, all indexes into one list so hosts two providers share are counted once.
struct Places {
    candidates: Vec<Candidate>,
    /// Per provider of the strategy (none for a launch type): its candidates' indexes.
    providers: Vec<(Provider, Vec<usize>)>,
    /// The group's tasks each provider already holds.
    counts: Vec<u32>,
}

impl Places {
    fn new(control: &Control, request: &Launch<'_>) -> Result<Self, ControlError> {
        if request.strategy.is_empty() {
            return Ok(Self {
                candidates: candidates(
                    control,
                    request.cluster,
                    request.launch_type,
                    &request.group,
                )?,
                providers: Vec::new(),
                counts: Vec::new(),
            });
        }
        let associated = super::providers::of_cluster(control, request.cluster)?;
        let providers = super::providers::resolve(
            control,
            "capacityProviderStrategy",
            &associated,
            request.strategy,
        )?;
        let hosts = control.hosts.records()?;
        let spot = super::providers::spot_marked(&hosts);
        let candidates = candidates_among(control, &hosts, &request.group, |host| {
            providers
                .iter()
                .any(|p| p.admits(host, request.cluster, spot))
        });
        let by_id: std::collections::HashMap<&str, &super::hosts::HostRecord> =
            hosts.iter().map(|h| (h.id.as_str(), h)).collect();
        let held = control.hosts.group_tasks_by_provider(&request.group);
        let mut counts = Vec::new();
        let providers = providers
            .into_iter()
            .map(|provider| {
                counts.push(held.get(provider.name()).copied().unwrap_or(0));
                let members = candidates
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        by_id
                            .get(c.id.as_str())
                            .is_some_and(|h| provider.admits(h, request.cluster, spot))
                    })
                    .map(|(i, _)| i)
                    .collect();
                (provider, members)
            })
            .collect();
        Ok(Self {
            candidates,
            providers,
            counts,
        })
    }

    /// The next task's provider (an index into `providers`), or the reason there is none.
    fn next_provider(&self, strategy: &[StrategyItem]) -> Option<usize> {
        super::providers::pick(strategy, &self.counts)
    }
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
    // A daemon task definition's record names its own ARN.
    let definition_arn = request.record["taskDefinitionArn"].as_str().map_or_else(
        || control.arns.task_definition(family, revision),
        str::to_string,
    );
    let mut launched = Launched::default();
    let mut token_ids = std::collections::VecDeque::new();
    if let Some(token) = request.client_token {
        for index in 0..request.count {
            let id = token_task_id(cluster, token, index);
            match records::task(control.store.as_ref(), &id)? {
                Some(earlier) => launched.tasks.push(same_request(earlier, &definition_arn)?),
                None => token_ids.push_back(id),
            }
        }
    }
    // Within one replica, launches take turns; across replicas sharing a store, the
    // placement counters below keep two from spending the same capacity.
    let _placing = control.lock_placement();
    let mut contended = 0;
    'placing: loop {
        let mut counters = placement_counters(control)?;
        control.hosts.wait_placements_seen(&counters, SEEN_WITHIN)?;
        let mut places = Places::new(control, &request)?;
        // Read once per call: every task placed names its host's zone and address.
        let hosts: std::collections::HashMap<String, super::hosts::HostRecord> = control
            .hosts
            .records()?
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .collect();
        let remaining =
            (request.count as usize).saturating_sub(launched.tasks.len() + launched.failures.len());
        if places.candidates.is_empty() {
            let reason = match (request.strategy.is_empty(), request.launch_type) {
                (false, _) => format!(
                    "RESOURCE:NO_HOSTS (no host of capacity provider {} is connected)",
                    places
                        .providers
                        .iter()
                        .map(|(p, _)| p.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (true, LaunchType::Fargate) => {
                    "RESOURCE:NO_HOSTS (no capacity host of the shared pool is connected)"
                        .to_string()
                }
                (true, other) => format!(
                    "No Container Instances were found in your cluster (launch type {})",
                    other.as_str()
                ),
            };
            for _ in 0..remaining {
                launched.failures.push(PlacementFailure {
                    arn: control.arns.cluster(cluster),
                    reason: reason.clone(),
                });
            }
            return Ok(launched);
        }
        for _ in 0..remaining {
            let seed = u64::from_str_radix(&new_task_id()[..12], 16).unwrap_or_default();
            // With a strategy, the provider first (base, then weight), then a host among its own.
            let provider = if request.strategy.is_empty() {
                None
            } else {
                match places.next_provider(request.strategy) {
                    Some(i) => Some(i),
                    None => {
                        launched.failures.push(PlacementFailure {
                            arn: control.arns.cluster(cluster),
                            reason: "RESOURCE:CAPACITY_PROVIDER (every provider of the strategy \
                                 has its base met and a weight of zero)"
                                .into(),
                        });
                        continue;
                    }
                }
            };
            let (pool, members): (Vec<Candidate>, Option<&Vec<usize>>) = match provider {
                None => (places.candidates.clone(), None),
                Some(i) => {
                    let members = &places.providers[i].1;
                    (
                        members
                            .iter()
                            .map(|&m| places.candidates[m].clone())
                            .collect(),
                        Some(members),
                    )
                }
            };
            let chosen = match choose(
                &pool,
                cpu,
                memory,
                request.strategies,
                request.constraints,
                seed,
            ) {
                Ok(index) => members.map_or(index, |members| members[index]),
                Err(no_fit) => {
                    let reason = match provider {
                        None => no_fit.reason.to_string(),
                        Some(i) if pool.is_empty() => format!(
                            "RESOURCE:NO_HOSTS (no host of capacity provider {} is connected)",
                            places.providers[i].0.name()
                        ),
                        Some(i) => format!(
                            "{} (capacity provider {})",
                            no_fit.reason,
                            places.providers[i].0.name()
                        ),
                    };
                    launched.failures.push(PlacementFailure {
                        arn: no_fit
                            .closest
                            .unwrap_or_else(|| control.arns.cluster(cluster)),
                        reason,
                    });
                    continue;
                }
            };
            let provider = provider.map(|i| {
                places.counts[i] += 1;
                places.providers[i].0.clone()
            });
            let launch_type = provider
                .as_ref()
                .map_or(request.launch_type, Provider::launch_type);
            let candidate = &mut places.candidates[chosen];
            candidate.free_cpu -= cpu;
            candidate.free_memory -= memory;
            candidate.free_tasks = candidate.free_tasks.saturating_sub(1);
            candidate.group_tasks += 1;
            let host = hosts.get(&candidate.id);
            let task_id = token_ids.pop_front().unwrap_or_else(new_task_id);
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
            if let Some(provider) = &provider {
                shape.insert("capacityProviderName".into(), json!(provider.name()));
            }
            match launch_type {
                // Like a Fargate task: no container instance; where it runs is an attachment.
                LaunchType::Fargate => {
                    let mut details =
                        vec![json!({"name": "wasmgateHostId", "value": candidate.id})];
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
            let accepted = std::time::SystemTime::now();
            let task = TaskRecord {
                task_arn,
                cluster_arn: control.arns.cluster(cluster),
                task_definition_arn: definition_arn.clone(),
                last_status: TaskStatus::Provisioning,
                desired_status: DesiredStatus::Running,
                health_status: HealthStatus::Unknown,
                started_by: request.started_by.clone(),
                group: request.group.clone(),
                launch_type,
                cpu: cpu.to_string(),
                memory: memory.to_string(),
                containers,
                created_at: seconds(accepted),
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
                protected_until: None,
                micros: TaskMicros {
                    created_at: Some(micros(accepted)),
                    ..TaskMicros::default()
                },
                shape,
            };
            match record_placed(control, &task, &mut counters, &request.guard) {
                Ok(()) => {}
                // Another replica placed on this host since the counters were read: place the
                // rest again on a view that includes its tasks.
                Err(StoreError::Conflict { key, .. })
                    if key.starts_with(PLACEMENT) && contended < MAX_CONTENDED =>
                {
                    if request.client_token.is_some() {
                        token_ids.push_front(task.id().to_string());
                    }
                    contended += 1;
                    tracing::debug!(%key, contended, "placement contended; placing again");
                    continue 'placing;
                }
                // The same clientToken's retry, on another replica, recorded this one first.
                Err(StoreError::Conflict { key, .. }) if key == task_key(task.id()) => {
                    match records::task(control.store.as_ref(), task.id())? {
                        Some(earlier) => {
                            launched.tasks.push(same_request(earlier, &definition_arn)?);
                        }
                        None => {
                            return Err(StoreError::Conflict {
                                key,
                                expected: Expect::Absent,
                            }
                            .into());
                        }
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            control.hosts.note_task(&task);
            launched.tasks.push(task);
        }
        // Tell the hosts now rather than when the store's change feed brings the tasks back
        // to the dispatcher: that hop (a wake-up and a parse of each record) was a third of
        // RunTask → the guest's first instruction. The dispatcher then finds nothing to change.
        control.hosts.publish_dirty();
        return Ok(launched);
    }
}

/// The id of the `index`th task of the RunTask of `token` in `cluster`.
fn token_task_id(cluster: &str, token: &str, index: u32) -> String {
    let seed = format!("run-task\0{cluster}\0{token}\0{index}");
    crate::capacity::wasm::sha256_hex(seed.as_bytes())[..32].to_string()
}

/// `earlier`, a task an earlier RunTask with the same clientToken made, if that request asked
/// for the same task definition.
fn same_request(earlier: TaskRecord, asked: &str) -> Result<TaskRecord, ControlError> {
    if earlier.task_definition_arn == asked {
        Ok(earlier)
    } else {
        Err(ControlError::Invalid(format!(
            "clientToken: already used by a RunTask of {} (this one asks for {asked})",
            earlier.task_definition_arn
        )))
    }
}

/// The prefix of the hosts' placement counters: `placement/HOST` is rewritten in the same
/// transaction that records a task placed on HOST, after the task, so a replica whose change
/// feed has brought a host's counter at revision R has also seen every task placed there up
/// to R.
pub const PLACEMENT: &str = "placement/";

/// How long a launch waits for this replica's view of the hosts to catch up with the store.
const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How many times one launch places again after losing a race with another replica.
const MAX_CONTENDED: u32 = 32;

/// Each host's placement counter, at the revision it was last written.
fn placement_counters(control: &Control) -> Result<HashMap<String, u64>, StoreError> {
    Ok(control
        .store
        .list(PLACEMENT)?
        .into_iter()
        .filter_map(|(key, found)| Some((key.strip_prefix(PLACEMENT)?.to_string(), found.revision)))
        .collect())
}

/// Records `task`, placed on its host, in one transaction with its host's placement counter
/// (expected where this launch last saw it) and the launch's guard.
fn record_placed(
    control: &Control,
    task: &TaskRecord,
    counters: &mut HashMap<String, u64>,
    guard: &[(String, Expect)],
) -> Result<(), StoreError> {
    let host = task.host.clone().unwrap_or_default();
    let counter = format!("{PLACEMENT}{host}");
    let key = task_key(task.id());
    let value = Json::of(task).map_err(|e| StoreError::Backend(format!("{key}: {e}")))?;
    let mut txn = Txn {
        conditions: guard.to_vec(),
        ops: Vec::new(),
    }
    .when(key.clone(), Expect::Absent)
    .when(
        counter.clone(),
        counters
            .get(&host)
            .map_or(Expect::Absent, |revision| Expect::Revision(*revision)),
    );
    txn = txn
        .put(key, value)
        .put(counter, json!({"lastTask": task.id()}));
    let revision = control.store.commit(&txn)?;
    counters.insert(host, revision);
    Ok(())
}
