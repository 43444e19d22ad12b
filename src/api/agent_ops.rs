//! The operations ECS's container agent calls: RegisterContainerInstance,
//! DiscoverPollEndpoint, SubmitTaskStateChange, SubmitContainerStateChange,
//! SubmitAttachmentStateChanges, UpdateContainerAgent.
//!
//! wasmgate's own agents join and report over `/agent/v1` (level-triggered desired sets and
//! reports; `control::hosts`). These calls give a tool or an agent that speaks ECS's API the
//! same records: a container instance registered here is a real host record (listed,
//! described, a target of attributes, deregistered like any), never connected, so nothing is
//! placed on it; state changes submitted here go through the same recorder as an agent's
//! reports, so a task's life is recorded one way whoever reports it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, container_instances, parse};
use crate::agent::{ContainerOutcome, HostResources, TaskEvent, TaskOutcome, TimedEvent};
use crate::capacity::ContainerStats;
use crate::protocol::{AgentReport, HostOffer};
use crate::records::{StopCode, TaskRecord};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    name: String,
    #[serde(default)]
    integer_value: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamedValue {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterContainerInstance {
    cluster: Option<String>,
    instance_identity_document: Option<String>,
    #[serde(default)]
    total_resources: Vec<Resource>,
    #[serde(default)]
    attributes: Vec<NamedValue>,
    container_instance_arn: Option<String>,
    tags: Option<Value>,
}

pub fn register(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: RegisterContainerInstance = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let mut resources = HostResources {
        cpu_units: 0,
        memory_mib: 0,
        max_tasks: None,
    };
    for (i, resource) in request.total_resources.iter().enumerate() {
        let value = resource.integer_value.unwrap_or(0);
        let value = u32::try_from(value).map_err(|_| {
            ApiError::invalid(format!(
                "totalResources[{i}].integerValue: must be between 0 and {} (got {value})",
                u32::MAX
            ))
        })?;
        match resource.name.as_str() {
            "CPU" => resources.cpu_units = value,
            "MEMORY" => resources.memory_mib = value,
            // PORTS, PORTS_UDP and GPU are not placement resources here.
            _ => {}
        }
    }
    let mut attributes = BTreeMap::new();
    for attribute in request.attributes {
        attributes.insert(attribute.name, attribute.value.unwrap_or_default());
    }
    // The EC2 identity document names the instance; without one the record is named by id.
    let name = request
        .instance_identity_document
        .as_deref()
        .and_then(|doc| serde_json::from_str::<Value>(doc).ok())
        .and_then(|doc| doc["instanceId"].as_str().map(str::to_string));
    let id = request.container_instance_arn.as_deref().map(|given| {
        let name = crate::arn::resource_name(given, "container-instance");
        name.rsplit('/').next().unwrap_or(name).to_string()
    });
    let tags = super::tags::given("tags", request.tags)?;
    let offer = HostOffer {
        name: name.clone().unwrap_or_default(),
        cluster: Some(cluster.clone()),
        resources,
        attributes,
        endpoint: None,
        address: None,
    };
    let id = api
        .control
        .hosts
        .register_through_api(id, offer)
        .map_err(|e| match e {
            crate::control::hosts::HostError::UnknownHost(id) => ApiError::invalid(format!(
                "containerInstanceArn: no container instance {id} to register again"
            )),
            other => other.into(),
        })?;
    let host = api.control.hosts.update_record(&id, |record| {
        if record.name.is_empty() {
            record.name = id.clone();
        }
        record.tags = Some(tags.clone());
    })?;
    Ok(json!({"containerInstance": container_instances::shape(api, &host, Default::default())}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoverPollEndpoint {
    container_instance: Option<String>,
    cluster: Option<String>,
}

/// Where an agent talks to this control plane: wasmgate agents long-poll their desired set at
/// the API's own address (`/agent/v1`), so every endpoint is the API's.
pub fn discover_poll_endpoint(api: &Api, body: Value, endpoint: &str) -> Result<Value, ApiError> {
    let request: DiscoverPollEndpoint = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if let Some(given) = &request.container_instance
        && container_instances::find(api, &cluster, given)?.is_none()
    {
        return Err(ApiError::invalid(format!(
            "containerInstance: no container instance {given} in the cluster {cluster}"
        )));
    }
    Ok(json!({
        "endpoint": endpoint,
        "telemetryEndpoint": endpoint,
        "serviceConnectEndpoint": endpoint,
        "systemLogsEndpoint": endpoint,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerChange {
    container_name: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    status: Option<String>,
    image_digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubmitTaskStateChange {
    cluster: Option<String>,
    task: String,
    status: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerChange>,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
}

/// An epoch-seconds timestamp as the recorder takes it.
fn at(seconds: Option<f64>) -> SystemTime {
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 => UNIX_EPOCH + Duration::from_secs_f64(s),
        _ => SystemTime::now(),
    }
}

/// The task a state change names, in the cluster it names.
fn task_of(api: &Api, cluster: Option<&str>, given: &str) -> Result<TaskRecord, ApiError> {
    let cluster = clusters::require_active(api, cluster)?;
    let id = crate::records::task_id_of_arn(given);
    crate::records::task(api.control.store.as_ref(), id)?
        .filter(|t| t.cluster_arn == api.control.arns.cluster(&cluster))
        .ok_or_else(|| ApiError::invalid(format!("task: no task {given} in the cluster {cluster}")))
}

/// Records `events` on `task` through the recorder, as if its host had reported them.
fn record(api: &Api, task: &TaskRecord, events: Vec<TimedEvent>) -> Result<(), ApiError> {
    let host = task.host.clone().unwrap_or_default();
    let report = AgentReport {
        events,
        ..Default::default()
    };
    crate::control::record_report(&api.control, &host, &report)?;
    Ok(())
}

/// The events of one container's change.
fn container_events(task_id: &str, change: &ContainerChange) -> Vec<TaskEvent> {
    let Some(name) = &change.container_name else {
        return Vec::new();
    };
    match change.status.as_deref() {
        Some("RUNNING") => vec![TaskEvent::ContainerStarted {
            task_id: task_id.into(),
            container: name.clone(),
        }],
        _ => Vec::new(),
    }
}

const STATUSES: &[&str] = &[
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
];

pub fn submit_task_state_change(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: SubmitTaskStateChange = parse(body)?;
    let task = task_of(api, request.cluster.as_deref(), &request.task)?;
    let task_id = task.id().to_string();
    if let Some(status) = &request.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid(format!(
            "status: must be one of {} (got {status})",
            STATUSES.join(", ")
        )));
    }
    let mut events = Vec::new();
    if request.pull_started_at.is_some() {
        events.push(TimedEvent {
            at: at(request.pull_started_at),
            event: TaskEvent::PullStarted {
                task_id: task_id.clone(),
            },
        });
    }
    if request.pull_stopped_at.is_some() {
        let digests = request
            .containers
            .iter()
            .filter_map(|c| Some((c.container_name.clone()?, c.image_digest.clone()?)))
            .collect();
        events.push(TimedEvent {
            at: at(request.pull_stopped_at),
            event: TaskEvent::PullStopped {
                task_id: task_id.clone(),
                image_digests: digests,
            },
        });
    }
    for change in &request.containers {
        for event in container_events(&task_id, change) {
            events.push(TimedEvent {
                at: SystemTime::now(),
                event,
            });
        }
    }
    if request.status.as_deref() == Some("STOPPED") {
        let reason = request
            .reason
            .clone()
            .unwrap_or_else(|| "Stopped as its agent reported (SubmitTaskStateChange)".into());
        events.push(TimedEvent {
            at: SystemTime::now(),
            event: TaskEvent::Stopped {
                outcome: TaskOutcome {
                    task_id: task_id.clone(),
                    stop_code: task.stop_code.unwrap_or(StopCode::EssentialContainerExited),
                    stopped_reason: reason,
                    containers: task
                        .containers
                        .iter()
                        .map(|c| {
                            let change = request
                                .containers
                                .iter()
                                .find(|x| x.container_name.as_deref() == Some(c.name.as_str()));
                            ContainerOutcome {
                                name: c.name.clone(),
                                essential: true,
                                exit_code: change
                                    .and_then(|x| x.exit_code)
                                    .or(c.exit_code.and_then(|e| i32::try_from(e).ok())),
                                reason: change.and_then(|x| x.reason.clone()),
                                image_digest: c.image_digest.clone(),
                                stats: ContainerStats::default(),
                                log: std::sync::Arc::new(crate::capacity::ContainerLog::new(
                                    0,
                                    crate::capacity::Tee::None,
                                )),
                            }
                        })
                        .collect(),
                    deciding_container: None,
                },
            },
        });
    }
    record(api, &task, events)?;
    Ok(json!({"acknowledgment": "ACK"}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubmitContainerStateChange {
    cluster: Option<String>,
    task: Option<String>,
    container_name: Option<String>,
    status: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
}

pub fn submit_container_state_change(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: SubmitContainerStateChange = parse(body)?;
    let given = request
        .task
        .as_deref()
        .ok_or_else(|| ApiError::invalid("task: required"))?;
    let task = task_of(api, request.cluster.as_deref(), given)?;
    let name = request
        .container_name
        .clone()
        .ok_or_else(|| ApiError::invalid("containerName: required"))?;
    if task.containers.iter().all(|c| c.name != name) {
        return Err(ApiError::invalid(format!(
            "containerName: the task has no container {name}"
        )));
    }
    let change = ContainerChange {
        container_name: Some(name.clone()),
        exit_code: request.exit_code,
        reason: request.reason.clone(),
        status: request.status.clone(),
        image_digest: None,
    };
    let events = container_events(task.id(), &change)
        .into_iter()
        .map(|event| TimedEvent {
            at: SystemTime::now(),
            event,
        })
        .collect();
    record(api, &task, events)?;
    // A container that stopped keeps its exit code and reason on the record at once; the
    // task stops when its agent says so (SubmitTaskStateChange STOPPED).
    if request.status.as_deref() == Some("STOPPED") {
        crate::records::update_task(api.control.store.as_ref(), task.id(), |t| {
            let Some(c) = t.containers.iter_mut().find(|c| c.name == name) else {
                return false;
            };
            c.last_status = crate::records::ContainerStatus::Stopped;
            c.exit_code = request.exit_code.map(i64::from).or(c.exit_code);
            c.reason = request.reason.clone().or(c.reason.take());
            true
        })?;
    }
    Ok(json!({"acknowledgment": "ACK"}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentChange {
    attachment_arn: String,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubmitAttachmentStateChanges {
    cluster: Option<String>,
    attachments: Vec<AttachmentChange>,
}

/// Sets the status of task attachments (by id or `.../attachment/ID` ARN) of the cluster.
pub fn submit_attachment_state_changes(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: SubmitAttachmentStateChanges = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let cluster_arn = api.control.arns.cluster(&cluster);
    let tasks: Vec<TaskRecord> = crate::records::tasks(api.control.store.as_ref())?
        .into_iter()
        .filter(|t| t.cluster_arn == cluster_arn)
        .collect();
    for (i, change) in request.attachments.iter().enumerate() {
        let id = change.attachment_arn.rsplit('/').next().unwrap_or_default();
        let owner = tasks.iter().find(|t| {
            t.shape["attachments"]
                .as_array()
                .is_some_and(|list| list.iter().any(|a| a["id"] == id))
        });
        let Some(owner) = owner else {
            return Err(ApiError::invalid(format!(
                "attachments[{i}].attachmentArn: no attachment {} in the cluster {cluster}",
                change.attachment_arn
            )));
        };
        crate::records::update_task(api.control.store.as_ref(), owner.id(), |t| {
            let Some(list) = t.shape.get_mut("attachments").and_then(Value::as_array_mut) else {
                return false;
            };
            let mut changed = false;
            for attachment in list.iter_mut().filter(|a| a["id"] == id) {
                attachment["status"] = json!(change.status);
                changed = true;
            }
            changed
        })?;
    }
    Ok(json!({"acknowledgment": "ACK"}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateContainerAgent {
    cluster: Option<String>,
    container_instance: String,
}

/// A wasmgate agent runs the same release as its controller (it is the same binary), so
/// there is never an update to apply through the API: ECS's NoUpdateAvailableException.
pub fn update_container_agent(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateContainerAgent = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    if container_instances::find(api, &cluster, &request.container_instance)?.is_none() {
        return Err(ApiError::invalid(format!(
            "containerInstance: no container instance {} in the cluster {cluster}",
            request.container_instance
        )));
    }
    Err(ApiError::new(
        ErrorKind::NoUpdateAvailableException,
        format!(
            "There is no update available for this Amazon ECS container agent: wasmgate agents \
             run the controller's own release ({}); update them by installing the new wasmgate \
             binary and restarting `wasmgate agent`.",
            env!("CARGO_PKG_VERSION")
        ),
    ))
}
