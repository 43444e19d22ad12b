//! Task definitions: ECS's `RegisterTaskDefinition` JSON, parsed and validated.
//!
//! A [`TaskDefinition`] keeps two views of one document: the typed fields wasmgate acts on, and
//! the document exactly as it was given (`raw`), so that fields of ECS's model that wasmgate does
//! not act on yet are kept and returned unchanged.
//!
//! Architecture invariant: this module is pure data and rules. It does no I/O and knows nothing of
//! capacities, images or the API; every error names the field path at fault.

pub mod http;
mod linux;
mod schema;
mod units;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use linux::{CAPABILITIES, ULIMITS};
pub use units::{parse_cpu_units, parse_memory_mib};

/// Why `dir` cannot be a container's working directory, if it lies in a kernel file system
/// (`/proc`, `/sys`, `/dev`): `/proc/self/fd/N` is how a process reaches a descriptor the
/// runtime leaked into the container (CVE-2024-21626), so none of those is taken.
pub fn kernel_filesystem_dir(dir: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let top = *parts.first()?;
    ["proc", "sys", "dev"].contains(&top).then(|| {
        format!(
            "\"{dir}\" is inside /{top}, a kernel file system a container may not work in \
             (the shape of CVE-2024-21626)"
        )
    })
}

/// One problem with a task definition: the field path (`containerDefinitions[1].memory`) and
/// the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub rule: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            rule: rule.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "{}: {}", self.path, self.rule)
        }
    }
}

/// Why a document is not a usable task definition.
#[derive(Debug, thiserror::Error)]
pub enum TaskDefinitionError {
    #[error("task definition is not valid JSON: {0}")]
    Json(String),
    /// Every broken rule, in document order.
    #[error("{}", join_errors(.0))]
    Invalid(Vec<FieldError>),
}

impl TaskDefinitionError {
    /// The individual field errors (one for a JSON syntax error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Json(_) => vec![FieldError::new("", self.to_string())],
            Self::Invalid(errors) => errors.clone(),
        }
    }
}

fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A validated task definition.
#[derive(Debug, Clone)]
pub struct TaskDefinition {
    /// The typed view of the fields wasmgate acts on.
    pub spec: TaskDefinitionSpec,
    /// The document as given, with every field of ECS's model kept as it was.
    pub raw: serde_json::Value,
    /// Task-level CPU in units (1024 = one core), parsed from `cpu`.
    pub cpu_units: Option<u32>,
    /// Task-level memory in MiB, parsed from `memory`.
    pub memory_mib: Option<u32>,
}

impl TaskDefinition {
    /// Parses and validates a task definition from JSON text.
    pub fn from_json(text: &str) -> Result<Self, TaskDefinitionError> {
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| TaskDefinitionError::Json(e.to_string()))?;
        Self::from_value(raw)
    }

    /// Validates a task definition that is already a JSON value.
    pub fn from_value(raw: serde_json::Value) -> Result<Self, TaskDefinitionError> {
        let mut errors = schema::unknown_fields(&raw);
        if !errors.is_empty() {
            return Err(TaskDefinitionError::Invalid(errors));
        }
        let spec: TaskDefinitionSpec = serde_path_to_error::deserialize(&raw).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            TaskDefinitionError::Invalid(vec![FieldError::new(path, e.into_inner().to_string())])
        })?;
        let (cpu_units, memory_mib) = validate::validate(&spec, &mut errors);
        if !errors.is_empty() {
            return Err(TaskDefinitionError::Invalid(errors));
        }
        Ok(Self {
            spec,
            raw,
            cpu_units,
            memory_mib,
        })
    }

    /// The containers whose exit stops the task.
    pub fn essential_containers(&self) -> impl Iterator<Item = &ContainerDefinition> {
        self.spec
            .container_definitions
            .iter()
            .filter(|c| c.is_essential())
    }

    /// The container definition with this name.
    pub fn container(&self, name: &str) -> Option<&ContainerDefinition> {
        self.spec
            .container_definitions
            .iter()
            .find(|c| c.name == name)
    }

    /// The volume with this name.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.spec
            .volumes
            .iter()
            .find(|v| v.name.as_deref() == Some(name))
    }
}

/// The typed fields of a task definition that wasmgate acts on. Fields it does not act on stay in
/// [`TaskDefinition::raw`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionSpec {
    pub family: String,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub network_mode: Option<NetworkMode>,
    #[serde(default)]
    pub requires_compatibilities: Vec<Compatibility>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    Host,
    Awsvpc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    Ec2,
    Fargate,
    External,
    ManagedInstances,
}

/// One container of a task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub cpu: Option<u32>,
    #[serde(default)]
    pub memory: Option<u32>,
    #[serde(default)]
    pub memory_reservation: Option<u32>,
    #[serde(default)]
    pub essential: Option<bool>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub entry_point: Vec<String>,
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    #[serde(default)]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    #[serde(default)]
    pub depends_on: Vec<ContainerDependency>,
    #[serde(default)]
    pub docker_labels: BTreeMap<String, String>,
    /// The user a container image runs as (`uid[:gid]` or names); Wasm images ignore it.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub readonly_root_filesystem: Option<bool>,
    /// Linux settings of a container image's container (capabilities, init, /dev/shm, tmpfs,
    /// swap); Wasm images ignore them.
    #[serde(default)]
    pub linux_parameters: Option<LinuxParameters>,
    /// Resource limits (`setrlimit`) of a container image's processes.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
}

/// ECS's `LinuxParameters`. Sizes are MiB, as in ECS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    #[serde(default)]
    pub capabilities: Option<KernelCapabilities>,
    /// Host devices: refused by validation (wasmgate passes none through).
    #[serde(default)]
    pub devices: Vec<serde_json::Value>,
    #[serde(default)]
    pub init_process_enabled: Option<bool>,
    #[serde(default)]
    pub shared_memory_size: Option<i64>,
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    #[serde(default)]
    pub max_swap: Option<i64>,
    #[serde(default)]
    pub swappiness: Option<i64>,
}

/// Capabilities added to and dropped from Docker's default set, by ECS's names (no `CAP_`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

/// A tmpfs mount of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tmpfs {
    #[serde(default)]
    pub container_path: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub mount_options: Vec<String>,
}

/// One resource limit: ECS's name (`nofile`, `nproc`, ...) and its soft and hard values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub soft_limit: Option<i64>,
    #[serde(default)]
    pub hard_limit: Option<i64>,
}

/// The label that limits a task's outbound traffic (`host[:port]`, `A.B.C.D/N[:port]`, `*`,
/// comma-separated): a container image task's, in its network namespace; a Wasm container's
/// `wasi:sockets`, which are off without it.
pub const OUTBOUND_HOSTS_LABEL: &str = "wasmgate.network.outbound-hosts";

/// ECS's default `stopTimeout`, in seconds.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 30;

/// The label that limits how long a task runs (whole seconds): once it has run that long,
/// it is stopped as StopTask would stop it (each container with its `stopTimeout`). A Copilot
/// Scheduled Job's `timeout`; ECS has no such member.
pub const TASK_TIMEOUT_LABEL: &str = "wasmgate.task.timeout";

/// The seconds of a `wasmgate.task.timeout` label: 1 to a year.
fn timeout_seconds(value: &str) -> Option<u64> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=31_536_000).contains(s))
}

impl ContainerDefinition {
    /// How the container serves HTTP (its `wasmgate.http.*` labels), if it declares a route.
    /// The labels were validated with the task definition.
    pub fn http_settings(&self) -> Option<http::HttpSettings> {
        http::HttpSettings::from_labels(&self.docker_labels, "", &mut Vec::new())
    }

    /// Its `wasmgate.task.timeout` label, if it has one (validated with the definition).
    pub fn task_timeout(&self) -> Option<std::time::Duration> {
        self.docker_labels
            .get(TASK_TIMEOUT_LABEL)
            .and_then(|v| timeout_seconds(v))
            .map(std::time::Duration::from_secs)
    }

    /// Whether it limits the task's outbound traffic (its `outbound-hosts` labels).
    pub fn limits_outbound(&self) -> bool {
        self.docker_labels.contains_key(OUTBOUND_HOSTS_LABEL)
            || self
                .http_settings()
                .is_some_and(|settings| !settings.outbound_hosts.is_empty())
    }

    /// `essential` defaults to true, as in ECS.
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }

    /// The program's argv: `entryPoint` followed by `command`.
    pub fn argv(&self) -> Vec<String> {
        self.entry_point
            .iter()
            .chain(&self.command)
            .cloned()
            .collect()
    }

    /// Seconds between a stop request and the interrupt.
    pub fn stop_timeout_secs(&self) -> u32 {
        self.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyValuePair {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    #[serde(default)]
    pub source_volume: Option<String>,
    #[serde(default)]
    pub container_path: Option<String>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default)]
    pub container_port: Option<i64>,
    #[serde(default)]
    pub host_port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<TransportProtocol>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<ApplicationProtocol>,
    #[serde(default)]
    pub container_port_range: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportProtocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationProtocol {
    Http,
    Http2,
    Grpc,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default)]
    pub interval: Option<i64>,
    #[serde(default)]
    pub timeout: Option<i64>,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub start_period: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: ContainerCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerCondition {
    Start,
    Complete,
    Success,
    Healthy,
}

impl ContainerCondition {
    /// The name ECS uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Success => "SUCCESS",
            Self::Healthy => "HEALTHY",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub host: Option<HostVolumeProperties>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    #[serde(default)]
    pub source_path: Option<String>,
}
