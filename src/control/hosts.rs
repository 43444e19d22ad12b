//! The capacity hosts: who joined (records under `hosts/ID`), what each should run (its
//! desired set, derived from the stored tasks placed on it), and who went silent.
//!
//! A host either belongs to the shared pool (no cluster: it runs FARGATE tasks of every
//! cluster) or is registered in one cluster (EC2 / EXTERNAL capacity, `wasmgate agent
//! --cluster`). Both kinds join the same way and are told what to run the same way.
//!
//! Architecture invariant: a host's desired set is a function of the stored tasks alone
//! (kept current from the store's change feed, rebuilt from a full list when the feed lags),
//! so nothing is ever "sent once": every publication is the whole set, and an agent that
//! missed one converges on the next.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::agent::{ContainerOverride, HostResources};
use crate::net::same_secret;
use crate::protocol::{
    AgentReport, Desired, DesiredTask, DesiredTasks, HostOffer, JoinRequest, Joined,
};
use crate::records::TaskRecord;
use crate::records::stop_tasks_of_host;
use crate::store::{Expect, Store, StoreError};

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub id: String,
    pub name: String,
    /// `None`: a host of the shared (FARGATE) pool.
    pub cluster: Option<String>,
    pub status: HostStatus,
    pub resources: HostResources,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Where the agent serves forwarded HTTP requests.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    pub registered_at: f64,
    /// The agent inside this controller's process (its tasks die with the process).
    #[serde(default)]
    pub local: bool,
    /// sha256 of the agent's credential (remote agents).
    #[serde(default)]
    pub credential_sha256: Option<String>,
    /// What the gateway presents to the agent with each forwarded request (remote agents).
    #[serde(default)]
    pub forward_key: Option<String>,
    /// ECS's tags of the container instance (`[{key, value}]`), kept across rejoins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Value>,
    /// Attributes put through the API (PutAttributes), kept across rejoins; they win over
    /// the agent's own of the same name (`None` values are attributes without a value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_attributes: BTreeMap<String, Option<String>>,
}

impl HostRecord {
    /// The availability zone tasks on this host report (`ecs.availability-zone` attribute).
    pub fn availability_zone(&self) -> &str {
        self.attributes
            .get("ecs.availability-zone")
            .map_or("local", String::as_str)
    }

    /// Its container instance ARN: in its cluster, or (a pool host) in none.
    pub fn arn(&self, arns: &crate::arn::ArnScope) -> String {
        match &self.cluster {
            Some(cluster) => arns.container_instance(cluster, &self.id),
            None => arns.pool_container_instance(&self.id),
        }
    }

    /// The value of attribute `name` as placement sees it: put through the API, else the
    /// agent's.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match self.custom_attributes.get(name) {
            Some(value) => Some(value.as_deref().unwrap_or_default()),
            None => self.attributes.get(name).map(String::as_str),
        }
    }

    /// The attributes placement sees on it: ECS's own, then the agent's, then those put
    /// through the API.
    pub fn all_attributes(&self) -> Vec<(String, String)> {
        let mut attributes = vec![
            ("ecs.capability.wasm".to_string(), String::new()),
            ("ecs.os-type".to_string(), "linux".to_string()),
            (
                "ecs.cpu-architecture".to_string(),
                std::env::consts::ARCH.to_string(),
            ),
            (
                "ecs.availability-zone".to_string(),
                self.availability_zone().to_string(),
            ),
            ("wasmgate.host-name".to_string(), self.name.clone()),
        ];
        for (name, value) in &self.attributes {
            attributes.retain(|(n, _)| n != name);
            attributes.push((name.clone(), value.clone()));
        }
        for (name, value) in &self.custom_attributes {
            attributes.retain(|(n, _)| n != name);
            attributes.push((name.clone(), value.clone().unwrap_or_default()));
        }
        attributes
    }
}

/// ECS's container instance statuses, as wasmgate uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostStatus {
    /// Takes new tasks.
    Active,
    /// Takes no new tasks; services move theirs off it.
    Draining,
    /// Deregistered.
    Inactive,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// The store key of a host.
pub fn host_key(id: &str) -> String {
    format!("hosts/{id}")
}

/// The prefix of the keys that say a replica heard a host lately.
pub const ALIVE: &str = "alive/";

/// The store key that says a replica heard host `id` lately.
pub fn alive_key(id: &str) -> String {
    format!("{ALIVE}{id}")
}

/// How the controller treats agents.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Silent this long: `agentConnected: false`, no new tasks.
    pub agent_timeout: Duration,
    /// Silent this long: its tasks are recorded STOPPED and replaced elsewhere.
    pub lost_after: Duration,
    /// The token a remote agent joins with; `None` accepts no remote agent.
    pub join_token: Option<String>,
    /// How often agents send a heartbeat.
    pub heartbeat_every: Duration,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            agent_timeout: Duration::from_secs(10),
            lost_after: Duration::from_secs(20),
            join_token: None,
            heartbeat_every: crate::agent::STATS_EVERY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("this controller takes no agents over the network (start it with --agent-token-file)")]
    NoJoining,
    #[error("the join token is wrong")]
    BadToken,
    #[error("no host {0} (it was never registered, or was deregistered)")]
    UnknownHost(String),
    #[error("the credential of host {0} is wrong")]
    BadCredential(String),
    #[error("host {0}: {1}")]
    Invalid(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the controller knows of a host beyond its record.
struct Live {
    desired: watch::Sender<Arc<DesiredTasks>>,
    /// Epoch seconds of the last report.
    last_heard: f64,
    /// Its tasks were recorded lost; cleared when it reports again.
    lost: bool,
    /// The generation each task of its current set was first sent in.
    first_sent: HashMap<String, u64>,
}

/// The desired sets, as derived from the stored tasks.
#[derive(Default)]
struct Assignments {
    by_host: HashMap<String, BTreeMap<String, DesiredTask>>,
    host_of_task: HashMap<String, String>,
    /// What each task placed on a host and not stopped holds there: CPU units, MiB, group.
    holds: HashMap<String, Held>,
    definitions: HashMap<String, Arc<Value>>,
    dirty: HashSet<String>,
}

/// What a placed task holds on its host.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    host: String,
    cpu: u64,
    memory: u64,
    group: String,
    /// The capacity provider it was placed through, if any.
    provider: Option<String>,
}

/// What a host holds, as placement counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    pub cpu: u64,
    pub memory: u64,
    pub tasks: u64,
    /// Tasks of the group asked about.
    pub group_tasks: u32,
}

/// Every host, their desired sets and liveness.
pub struct Hosts {
    store: Arc<dyn Store>,
    settings: HostSettings,
    session: String,
    live: Mutex<HashMap<String, Live>>,
    /// When this replica last told the store it heard each host (`alive/ID`).
    published: Mutex<HashMap<String, f64>>,
    /// The revision of each host's placement counter (`control::launch::PLACEMENT`) that
    /// the assignments include, and a condition variable launches wait on for it.
    placements_seen: Mutex<HashMap<String, u64>>,
    placements_moved: std::sync::Condvar,
    assignments: Mutex<Assignments>,
    reports: mpsc::UnboundedSender<QueuedReport>,
}

/// An agent's report on its way to the recorder.
pub struct QueuedReport {
    pub host: String,
    pub report: AgentReport,
    /// Told once the report is in the store (or why it is not): an agent across the network
    /// is answered only then, so a report it was told is taken is never lost with this
    /// replica.
    pub recorded: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

fn now() -> f64 {
    crate::logs::epoch_seconds(std::time::SystemTime::now())
}

/// 128 random bits as hex.
fn random_hex() -> Result<String, HostError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StoreError::Backend(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex::encode(bytes))
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

impl Hosts {
    /// The hosts of `store`. Reports of every agent go to `reports`, in order per agent.
    pub fn new(
        store: Arc<dyn Store>,
        settings: HostSettings,
        reports: mpsc::UnboundedSender<QueuedReport>,
    ) -> Result<Arc<Self>, HostError> {
        let hosts = Arc::new(Self {
            store,
            settings,
            session: random_hex()?,
            live: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
            placements_seen: Mutex::new(HashMap::new()),
            placements_moved: std::sync::Condvar::new(),
            assignments: Mutex::new(Assignments::default()),
            reports,
        });
        // Hosts known from before get the full silence allowance to call back.
        let mut known = HashSet::new();
        for record in hosts.records()? {
            if record.status != HostStatus::Inactive {
                hosts.live_entry(&record.id);
                known.insert(record.id);
            }
        }
        // A task on no known host (its host was deregistered, or the task predates hosts)
        // has nobody to run it.
        for task in crate::records::tasks(hosts.store.as_ref())? {
            if task.is_stopped() || task.host.as_ref().is_some_and(|h| known.contains(h)) {
                continue;
            }
            crate::records::update_task(hosts.store.as_ref(), task.id(), |task| {
                task.stop_as_lost(
                    "Task stopped because no capacity host runs it any more",
                    now(),
                )
            })?;
        }
        hosts.rebuild()?;
        Ok(hosts)
    }

    pub fn settings(&self) -> &HostSettings {
        &self.settings
    }

    /// The session that numbers this controller's generations.
    pub fn session(&self) -> &str {
        &self.session
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_entry(&self, id: &str) -> watch::Receiver<Arc<DesiredTasks>> {
        let mut live = self.live();
        let entry = live.entry(id.to_string()).or_insert_with(|| Live {
            desired: watch::channel(Arc::new(DesiredTasks {
                session: self.session.clone(),
                ..DesiredTasks::default()
            }))
            .0,
            last_heard: now(),
            lost: false,
            first_sent: HashMap::new(),
        });
        entry.desired.subscribe()
    }

    /// Every host record, in id order.
    pub fn records(&self) -> Result<Vec<HostRecord>, HostError> {
        let mut records = Vec::new();
        for (key, found) in self.store.list("hosts/")? {
            match serde_json::from_value::<HostRecord>(found.value) {
                Ok(record) => records.push(record),
                Err(error) => tracing::warn!(%key, %error, "not a host record; ignored"),
            }
        }
        Ok(records)
    }

    /// One host's record.
    pub fn record(&self, id: &str) -> Result<Option<HostRecord>, HostError> {
        Ok(match self.store.get(&host_key(id))? {
            Some(found) => serde_json::from_value(found.value).ok(),
            None => None,
        })
    }

    /// Changes a host's record with `change` (compare-and-swap, retried).
    pub fn update_record(
        &self,
        id: &str,
        change: impl Fn(&mut HostRecord),
    ) -> Result<HostRecord, HostError> {
        self.update_record_through(self.store.as_ref(), id, change)
    }

    /// As [`Hosts::update_record`], written through `store`: the leader's duties pass their
    /// fenced store, so a decision about a host holds only while their term does.
    pub fn update_record_through(
        &self,
        store: &dyn Store,
        id: &str,
        change: impl Fn(&mut HostRecord),
    ) -> Result<HostRecord, HostError> {
        loop {
            let found = store
                .get(&host_key(id))?
                .ok_or_else(|| HostError::UnknownHost(id.to_string()))?;
            let mut record: HostRecord = serde_json::from_value(found.value)
                .map_err(|e| HostError::Invalid(id.to_string(), e.to_string()))?;
            change(&mut record);
            let value = serde_json::to_value(&record)
                .map_err(|e| HostError::Invalid(id.to_string(), e.to_string()))?;
            match store.put(&host_key(id), &value, Expect::Revision(found.revision)) {
                Ok(_) => return Ok(record),
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Registers a container instance through the ECS API (RegisterContainerInstance): a
    /// record with no agent behind it (never connected, so placement passes it by) until it
    /// is deregistered. `id` re-registers one registered the same way; a host a wasmgate
    /// agent registered is refused, so its credential stays its own.
    pub fn register_through_api(
        &self,
        id: Option<String>,
        offer: HostOffer,
    ) -> Result<String, HostError> {
        let id = match id {
            Some(id) => {
                let existing = self
                    .record(&id)?
                    .ok_or_else(|| HostError::UnknownHost(id.clone()))?;
                if existing.credential_sha256.is_some() || existing.local {
                    return Err(HostError::Invalid(
                        id,
                        "registered by a wasmgate agent, which re-registers it itself".into(),
                    ));
                }
                id
            }
            None => crate::agent::new_task_id(),
        };
        self.register(id, offer, false, None, None)
    }

    /// Registers (or re-registers) a host and returns its id. A host that joins runs nothing
    /// yet: whatever the store still shows on it from before died with its old agent, and is
    /// recorded as stopped.
    fn register(
        &self,
        id: String,
        offer: HostOffer,
        local: bool,
        credential_sha256: Option<String>,
        forward_key: Option<String>,
    ) -> Result<String, HostError> {
        let before = self.record(&id).ok().flatten();
        let tags = before.as_ref().and_then(|r| r.tags.clone());
        let custom_attributes = before.map(|r| r.custom_attributes).unwrap_or_default();
        let record = HostRecord {
            id: id.clone(),
            name: offer.name,
            cluster: offer.cluster,
            status: HostStatus::Active,
            resources: offer.resources,
            attributes: offer.attributes,
            endpoint: offer.endpoint,
            address: offer.address,
            registered_at: now(),
            local,
            credential_sha256,
            forward_key,
            tags,
            custom_attributes,
        };
        let value = serde_json::to_value(&record)
            .map_err(|e| HostError::Invalid(id.clone(), e.to_string()))?;
        self.store.put(&host_key(&id), &value, Expect::Any)?;
        let reason = format!(
            "Task stopped because the agent on host {} ({id}) restarted",
            record.name
        );
        let stopped = stop_tasks_of_host(self.store.as_ref(), &id, &reason, now())?;
        if stopped > 0 {
            tracing::warn!(host = %id, stopped, "recorded the tasks of a restarted agent as stopped");
        }
        if let Some(live) = self.live().get_mut(&id) {
            live.last_heard = now();
            live.lost = false;
        }
        Ok(id)
    }

    /// The agent inside this process joins; returns its id and its desired sets.
    pub fn join_local(
        &self,
        instance_id: Option<String>,
        offer: HostOffer,
    ) -> Result<(String, watch::Receiver<Arc<DesiredTasks>>), HostError> {
        let id = match instance_id {
            Some(id) => id,
            None => crate::agent::new_task_id(),
        };
        let id = self.register(id, offer, true, None, None)?;
        let desired = self.live_entry(&id);
        Ok((id, desired))
    }

    /// A remote agent joins with the join token; it gets an id and a credential of its own.
    pub fn join(&self, request: JoinRequest) -> Result<Joined, HostError> {
        let Some(token) = &self.settings.join_token else {
            return Err(HostError::NoJoining);
        };
        if !same_secret(token.trim(), request.token.trim()) {
            return Err(HostError::BadToken);
        }
        if let Some(cluster) = &request.offer.cluster {
            crate::arn::check_resource_name("cluster", cluster)
                .map_err(|why| HostError::Invalid(request.offer.name.clone(), why))?;
        }
        let id = match request.instance_id {
            Some(id)
                if id.len() == 32
                    && id.bytes().all(|b| b.is_ascii_hexdigit())
                    && self
                        .record(&id)?
                        .is_some_and(|r| r.status != HostStatus::Inactive && !r.local) =>
            {
                id
            }
            _ => crate::agent::new_task_id(),
        };
        let secret = random_hex()?;
        let forward_key = random_hex()?;
        let id = self.register(
            id,
            request.offer,
            false,
            Some(sha256_hex(&secret)),
            Some(forward_key.clone()),
        )?;
        self.live_entry(&id);
        Ok(Joined {
            credential: format!("{id}.{secret}"),
            instance_id: id,
            heartbeat_millis: self.settings.heartbeat_every.as_millis() as u64,
            forward_key,
        })
    }

    /// The host a credential (`ID.SECRET`) belongs to.
    pub fn authenticate(&self, credential: &str) -> Result<String, HostError> {
        let (id, secret) = credential
            .trim()
            .split_once('.')
            .ok_or_else(|| HostError::BadCredential("?".into()))?;
        let record = self
            .record(id)?
            .filter(|r| r.status != HostStatus::Inactive)
            .ok_or_else(|| HostError::UnknownHost(id.to_string()))?;
        match &record.credential_sha256 {
            Some(expected) if same_secret(expected, &sha256_hex(secret)) => Ok(id.to_string()),
            _ => Err(HostError::BadCredential(id.to_string())),
        }
    }

    /// The desired sets of host `id`, as they change.
    pub fn desired(&self, id: &str) -> watch::Receiver<Arc<DesiredTasks>> {
        self.live_entry(id)
    }

    /// Takes a report of host `id`.
    pub fn report(&self, id: &str, report: AgentReport) {
        self.queue_report(id, report, None);
    }

    /// As [`Hosts::report`], answering once the report is recorded (or why it is not).
    pub fn report_recorded(
        &self,
        id: &str,
        report: AgentReport,
    ) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (recorded, answer) = tokio::sync::oneshot::channel();
        self.queue_report(id, report, Some(recorded));
        answer
    }

    fn queue_report(
        &self,
        id: &str,
        report: AgentReport,
        recorded: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ) {
        if let Some(live) = self.live().get_mut(id) {
            live.last_heard = now();
            if live.lost {
                tracing::info!(host = %id, "a lost host reports again");
                live.lost = false;
            }
        }
        let _ = self.reports.send(QueuedReport {
            host: id.to_string(),
            report,
            recorded,
        });
    }

    /// Whether host `id` was heard from within the agent timeout.
    pub fn connected(&self, id: &str) -> bool {
        let timeout = self.settings.agent_timeout.as_secs_f64();
        self.live()
            .get(id)
            .is_some_and(|l| !l.lost && now() - l.last_heard < timeout)
    }

    /// The generation a task was first sent to host `id` in (of this controller's session).
    pub fn first_sent(&self, id: &str, task_id: &str) -> Option<u64> {
        self.live().get(id)?.first_sent.get(task_id).copied()
    }

    /// The tasks of host `id`'s desired set, first sent in `generation` or before, that are
    /// not `running`: a host that converged on that generation has lost them.
    pub fn not_running(&self, id: &str, generation: u64, running: &HashSet<&str>) -> Vec<String> {
        self.live().get(id).map_or_else(Vec::new, |live| {
            live.first_sent
                .iter()
                .filter(|(task_id, sent)| {
                    **sent <= generation && !running.contains(task_id.as_str())
                })
                .map(|(task_id, _)| task_id.clone())
                .collect()
        })
    }

    /// Hosts silent for longer than `lost_after`, each returned once until it reports again.
    pub fn newly_lost(&self) -> Vec<String> {
        let lost_after = self.settings.lost_after.as_secs_f64();
        let now = now();
        let mut lost = Vec::new();
        for (id, live) in self.live().iter_mut() {
            if !live.lost && now - live.last_heard > lost_after {
                live.lost = true;
                lost.push(id.clone());
            }
        }
        lost
    }

    /// Forgets a deregistered host's liveness.
    pub fn forget(&self, id: &str) {
        self.live().remove(id);
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(error) = self.store.delete(&alive_key(id), Expect::Any) {
            tracing::warn!(host = %id, %error, "cannot forget a host's liveness");
        }
    }

    /// Tells every replica sharing the store that this one heard host `id` (its `alive/ID`
    /// key), at most every quarter of the agent timeout: the replica that leads judges
    /// liveness for hosts that report to another. Called by the recorder, off the runtime.
    pub fn publish_heard(&self, id: &str) -> Result<(), StoreError> {
        let every = (self.settings.agent_timeout.as_secs_f64() / 4.0).max(0.5);
        let now = now();
        {
            let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
            if published.get(id).is_some_and(|at| now - at < every) {
                return Ok(());
            }
            published.insert(id.to_string(), now);
        }
        let value = serde_json::json!({"heardAt": now, "bySession": self.session});
        self.store.put(&alive_key(id), &value, Expect::Any)?;
        Ok(())
    }

    /// Another replica (or this one) heard host `id`: it is alive as of now, by this
    /// replica's clock (replicas' clocks need not agree).
    fn heard_elsewhere(&self, id: &str) {
        self.live_entry(id);
        if let Some(live) = self.live().get_mut(id) {
            live.last_heard = now();
            if live.lost {
                tracing::info!(host = %id, "a lost host is heard again");
                live.lost = false;
            }
        }
    }

    fn assignments(&self) -> std::sync::MutexGuard<'_, Assignments> {
        self.assignments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a task the caller just wrote into account at once (placement counts it before
    /// the change feed brings it).
    pub fn note_task(&self, task: &TaskRecord) {
        let mut assignments = self.assignments();
        self.apply_task(&mut assignments, None, Some(task));
    }

    /// What every host holds, from the tasks placed and not stopped; `group_tasks` counts the
    /// tasks of `group`. Kept in memory, so placement never reads the store's tasks.
    pub fn holdings(&self, group: &str) -> HashMap<String, Holding> {
        let assignments = self.assignments();
        let mut holdings: HashMap<String, Holding> = HashMap::new();
        for held in assignments.holds.values() {
            // Looked up before inserting: this runs at every placement over every task held,
            // and `entry` would copy the host's name each time (a million copies in a ramp
            // of 1,000 tasks).
            let holding = match holdings.get_mut(held.host.as_str()) {
                Some(holding) => holding,
                None => holdings.entry(held.host.clone()).or_default(),
            };
            holding.cpu += held.cpu;
            holding.memory += held.memory;
            holding.tasks += 1;
            if held.group == group {
                holding.group_tasks += 1;
            }
        }
        holdings
    }

    /// How many tasks of `group` not stopped each capacity provider holds (tasks placed
    /// through a strategy), for the strategy's base and weight.
    pub fn group_tasks_by_provider(&self, group: &str) -> HashMap<String, u32> {
        let assignments = self.assignments();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for held in assignments.holds.values() {
            if held.group == group
                && let Some(provider) = &held.provider
            {
                match counts.get_mut(provider.as_str()) {
                    Some(count) => *count += 1,
                    None => {
                        counts.insert(provider.clone(), 1);
                    }
                }
            }
        }
        counts
    }

    /// Waits until the assignments include every task placed on each host up to its
    /// placement counter's revision in `counters` (written by any replica), so placement
    /// decides on what the store holds, not on what this replica has heard so far.
    pub fn wait_placements_seen(
        &self,
        counters: &HashMap<String, u64>,
        within: Duration,
    ) -> Result<(), HostError> {
        let until = std::time::Instant::now() + within;
        let mut seen = self
            .placements_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            let behind = counters
                .iter()
                .find(|(host, revision)| seen.get(*host).is_none_or(|s| s < revision));
            let Some((host, revision)) = behind else {
                return Ok(());
            };
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(HostError::Store(StoreError::Backend(format!(
                    "this replica's view of host {host} is behind the store (placement \
                     revision {revision} not seen within {} s)",
                    within.as_secs()
                ))));
            }
            seen = self
                .placements_moved
                .wait_timeout(seen, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The assignments now include host `host`'s placements up to `revision`.
    fn placement_seen(&self, host: &str, revision: u64) {
        let mut seen = self
            .placements_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(host.to_string()).or_default();
        *entry = (*entry).max(revision);
        drop(seen);
        self.placements_moved.notify_all();
    }

    /// Derives every desired set again from a full list of the stored tasks.
    fn rebuild(&self) -> Result<(), HostError> {
        // Counters first: the tasks listed after them include every task they count.
        let counters = self.store.list(crate::control::launch::PLACEMENT)?;
        let tasks = crate::records::tasks(self.store.as_ref())?;
        let mut assignments = self.assignments();
        let previous: Vec<String> = assignments.by_host.keys().cloned().collect();
        assignments.by_host.clear();
        assignments.host_of_task.clear();
        assignments.holds.clear();
        assignments.dirty.extend(previous);
        for task in &tasks {
            self.apply_task(&mut assignments, None, Some(task));
        }
        drop(assignments);
        for (key, found) in counters {
            if let Some(host) = key.strip_prefix(crate::control::launch::PLACEMENT) {
                self.placement_seen(host, found.revision);
            }
        }
        Ok(())
    }

    /// Applies one stored task's change (`None`: deleted) to the desired sets.
    fn apply_task(
        &self,
        assignments: &mut Assignments,
        task_id: Option<&str>,
        task: Option<&TaskRecord>,
    ) {
        let entry = task.and_then(|task| self.desired_entry(assignments, task));
        let task_id = match (task_id, task) {
            (Some(id), _) => id.to_string(),
            (None, Some(task)) => task.id().to_string(),
            (None, None) => return,
        };
        match (&entry, task) {
            (Some((host, _)), Some(task)) => {
                let (cpu, memory) = task.needs();
                let held = Held {
                    host: host.clone(),
                    cpu,
                    memory,
                    group: task.group.clone(),
                    provider: task
                        .shape
                        .get("capacityProviderName")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string),
                };
                assignments.holds.insert(task_id.clone(), held);
            }
            _ => {
                assignments.holds.remove(&task_id);
            }
        }
        // Most changes of a task (its status moving on) leave its desired entry as it was:
        // those publish nothing.
        if let (Some((host, desired)), Some(old_host)) =
            (&entry, assignments.host_of_task.get(&task_id))
            && old_host == host
            && assignments
                .by_host
                .get(host)
                .and_then(|set| set.get(&task_id))
                == Some(desired)
        {
            return;
        }
        if let Some(old_host) = assignments.host_of_task.remove(&task_id) {
            if let Some(set) = assignments.by_host.get_mut(&old_host) {
                set.remove(&task_id);
            }
            assignments.dirty.insert(old_host);
        }
        if let Some((host, desired)) = entry {
            assignments
                .host_of_task
                .insert(task_id.clone(), host.clone());
            assignments
                .by_host
                .entry(host.clone())
                .or_default()
                .insert(task_id, desired);
            assignments.dirty.insert(host);
        }
    }

    /// The host and desired entry of a stored task, if some host should hear of it.
    fn desired_entry(
        &self,
        assignments: &mut Assignments,
        task: &TaskRecord,
    ) -> Option<(String, DesiredTask)> {
        if task.is_stopped() {
            return None;
        }
        let host = task.host.clone()?;
        let arn = task.task_definition_arn.clone();
        if !assignments.definitions.contains_key(&arn) {
            match self.definition_document(&arn) {
                Some(document) => {
                    assignments
                        .definitions
                        .insert(arn.clone(), Arc::new(document));
                }
                None => {
                    tracing::warn!(task_definition = %arn, "a placed task's definition is gone")
                }
            }
        }
        let desired = match task.desired_status {
            crate::records::DesiredStatus::Stopped => Desired::Stopped {
                reason: task
                    .stopped_reason
                    .clone()
                    .unwrap_or_else(|| "Task stopped".to_string()),
            },
            crate::records::DesiredStatus::Running => Desired::Running,
        };
        Some((
            host,
            DesiredTask {
                task_id: task.id().to_string(),
                task_definition_arn: arn,
                overrides: ContainerOverride::list_from_ecs(task.overrides()),
                desired,
            },
        ))
    }

    fn definition_document(&self, arn: &str) -> Option<Value> {
        if let Some(daemon) = super::daemon_definitions::document_of_arn(self.store.as_ref(), arn) {
            return daemon;
        }
        let (family, revision) = arn.rsplit_once("task-definition/")?.1.rsplit_once(':')?;
        let revision: u64 = revision.parse().ok()?;
        let found = self
            .store
            .get(&format!("taskdefs/{family}/{revision:010}"))
            .ok()??;
        Some(found.value["document"].clone())
    }

    /// Publishes the desired set of every host whose set changed.
    pub fn publish_dirty(&self) {
        let mut assignments = self.assignments();
        let dirty: Vec<String> = assignments.dirty.drain().collect();
        if dirty.is_empty() {
            return;
        }
        let mut live = self.live();
        for host in dirty {
            let set = assignments.by_host.get(&host);
            let tasks: Vec<DesiredTask> = set
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default();
            let definitions = tasks
                .iter()
                .filter_map(|t| {
                    assignments
                        .definitions
                        .get(&t.task_definition_arn)
                        .map(|d| (t.task_definition_arn.clone(), d.clone()))
                })
                .collect();
            // A host that never joined (or was deregistered) has no one to tell.
            let Some(entry) = live.get_mut(&host) else {
                continue;
            };
            let generation = entry.desired.borrow().generation + 1;
            entry
                .first_sent
                .retain(|id, _| set.is_some_and(|s| s.contains_key(id)));
            for task in &tasks {
                entry
                    .first_sent
                    .entry(task.task_id.clone())
                    .or_insert(generation);
            }
            entry.desired.send_replace(Arc::new(DesiredTasks {
                session: self.session.clone(),
                generation,
                tasks,
                definitions,
            }));
        }
    }

    /// Keeps every host's desired set current from the store's change feed until `shutdown`.
    pub async fn run_dispatcher(self: Arc<Self>, shutdown: CancellationToken) {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let mut changes = self.store.watch();
        if let Err(error) = crate::store::blocking(|| self.rebuild()) {
            tracing::error!(%error, "cannot derive the hosts' desired tasks");
        }
        self.publish_dirty();
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            let mut lagged = false;
            let mut next = match first {
                Ok(change) => Some(change),
                Err(RecvError::Lagged(_)) => {
                    lagged = true;
                    None
                }
                Err(RecvError::Closed) => return,
            };
            // Everything already waiting makes one publication.
            loop {
                if let Some(change) = next.as_ref()
                    && change.value.is_some()
                {
                    if let Some(host) = change.key.strip_prefix(ALIVE) {
                        self.heard_elsewhere(host);
                    } else if !lagged
                        && let Some(host) =
                            change.key.strip_prefix(crate::control::launch::PLACEMENT)
                    {
                        // The tasks placed with it came before it on the feed.
                        self.placement_seen(host, change.revision);
                    }
                }
                if let Some(change) = next.take()
                    && !lagged
                    && let Some(task_id) = change.key.strip_prefix("tasks/")
                {
                    let task = match change
                        .value
                        .as_ref()
                        .map(|value| value.parse::<TaskRecord>())
                    {
                        None => None,
                        Some(Ok(task)) => Some(task),
                        Some(Err(error)) => {
                            tracing::warn!(%task_id, %error, "a stored task is not a task record");
                            continue;
                        }
                    };
                    let mut assignments = self.assignments();
                    self.apply_task(&mut assignments, Some(task_id), task.as_ref());
                }
                match changes.try_recv() {
                    Ok(change) => next = Some(change),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
            if lagged && let Err(error) = crate::store::blocking(|| self.rebuild()) {
                tracing::error!(%error, "cannot derive the hosts' desired tasks");
            }
            self.publish_dirty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(name: &str) -> HostOffer {
        HostOffer {
            name: name.into(),
            cluster: None,
            resources: HostResources {
                cpu_units: 2048,
                memory_mib: 1024,
                max_tasks: None,
            },
            attributes: BTreeMap::new(),
            endpoint: None,
            address: None,
        }
    }

    fn task(id: &str, host: &str, last: &str, desired: &str) -> Value {
        json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:0:task/default/{id}"),
            "clusterArn": "arn:aws:ecs:us-east-1:0:cluster/default", "createdAt": 1.0,
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:0:task-definition/app:1",
            "lastStatus": last, "desiredStatus": desired, "stoppedReason": "enough",
            "wasmgateHost": host, "overrides": {"containerOverrides": [{"name": "app", "command": ["x"]}]},
        })
    }

    #[test]
    fn desired_sets_follow_the_stored_tasks_and_restarts_stop_what_ran_before() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        store
            .put(
                "taskdefs/app/0000000001",
                &json!({"document": {"family": "app"}}),
                Expect::Absent,
            )
            .unwrap();
        let (reports, _rx) = mpsc::unbounded_channel();
        let hosts = Hosts::new(store.clone(), HostSettings::default(), reports).unwrap();
        let (id, desired) = hosts.join_local(None, offer("here")).unwrap();
        let put = |task_id: &str, value: Value| {
            store
                .put(&format!("tasks/{task_id}"), &value, Expect::Any)
                .unwrap();
            let record: TaskRecord = serde_json::from_value(value).unwrap();
            let mut assignments = hosts.assignments();
            hosts.apply_task(&mut assignments, Some(task_id), Some(&record));
            drop(assignments);
            hosts.publish_dirty();
            desired.borrow().clone()
        };
        let set = put("a", task("a", &id, "PENDING", "RUNNING"));
        assert_eq!(set.generation, 1);
        assert_eq!(set.tasks.len(), 1);
        assert_eq!(set.tasks[0].desired, Desired::Running);
        assert_eq!(
            set.tasks[0].overrides[0].command,
            Some(vec!["x".to_string()])
        );
        assert!(
            set.definitions
                .contains_key(&set.tasks[0].task_definition_arn)
        );
        assert_eq!(hosts.first_sent(&id, "a"), Some(1));
        assert_eq!(hosts.not_running(&id, 1, &HashSet::new()), ["a"]);
        assert!(
            hosts.not_running(&id, 0, &HashSet::new()).is_empty(),
            "not sent yet at 0"
        );
        assert!(hosts.not_running(&id, 1, &HashSet::from(["a"])).is_empty());

        let set = put("b", task("b", "elsewhere", "PENDING", "RUNNING"));
        assert_eq!(
            set.generation, 1,
            "another host's task changes nothing here"
        );
        let set = put("a", task("a", &id, "RUNNING", "STOPPED"));
        assert_eq!(set.generation, 2);
        assert_eq!(
            set.tasks[0].desired,
            Desired::Stopped {
                reason: "enough".into()
            }
        );
        assert_eq!(hosts.first_sent(&id, "a"), Some(1), "first sent stays");
        let set = put("a", task("a", &id, "STOPPED", "STOPPED"));
        assert!(set.tasks.is_empty());
        assert_eq!(hosts.first_sent(&id, "a"), None);

        // The same host joining again (a restarted agent) runs nothing of before.
        put("c", task("c", &id, "RUNNING", "RUNNING"));
        hosts.join_local(Some(id.clone()), offer("here")).unwrap();
        let c = store.get("tasks/c").unwrap().unwrap().value;
        assert_eq!(c["lastStatus"], "STOPPED");
        assert!(
            c["stoppedReason"]
                .as_str()
                .unwrap()
                .contains("the agent on host here"),
            "{c}"
        );
    }

    #[test]
    fn a_silent_host_is_disconnected_then_lost_once_and_found_again_when_it_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let (reports, mut rx) = mpsc::unbounded_channel();
        let settings = HostSettings {
            agent_timeout: Duration::ZERO,
            lost_after: Duration::ZERO,
            ..HostSettings::default()
        };
        let hosts = Hosts::new(store, settings, reports).unwrap();
        let (id, _desired) = hosts.join_local(None, offer("here")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!hosts.connected(&id));
        assert_eq!(hosts.newly_lost(), vec![id.clone()]);
        assert!(hosts.newly_lost().is_empty(), "lost once");
        hosts.report(&id, AgentReport::default());
        assert!(rx.try_recv().is_ok(), "the report goes on to the recorder");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(hosts.newly_lost(), vec![id], "lost again after it reported");
    }

    #[test]
    fn remote_agents_join_only_with_the_token_and_then_use_their_credential() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let (reports, _rx) = mpsc::unbounded_channel();
        let settings = HostSettings {
            join_token: Some("a-token-of-sixteen+".into()),
            ..HostSettings::default()
        };
        let hosts = Hosts::new(store, settings, reports).unwrap();
        let request = |token: &str| JoinRequest {
            token: token.into(),
            instance_id: None,
            offer: offer("there"),
        };
        assert!(matches!(
            hosts.join(request("wrong")),
            Err(HostError::BadToken)
        ));
        let joined = hosts.join(request("a-token-of-sixteen+")).unwrap();
        assert_eq!(
            hosts.authenticate(&joined.credential).unwrap(),
            joined.instance_id
        );
        let forged = format!("{}.{}", joined.instance_id, "0".repeat(32));
        assert!(matches!(
            hosts.authenticate(&forged),
            Err(HostError::BadCredential(_))
        ));
        let record = hosts.record(&joined.instance_id).unwrap().unwrap();
        assert!(
            !record
                .credential_sha256
                .as_deref()
                .unwrap()
                .contains(joined.credential.split('.').nth(1).unwrap()),
            "only a hash is kept"
        );
    }
}
