//! CreateDaemon, UpdateDaemon, DeleteDaemon, DescribeDaemon, ListDaemons,
//! DescribeDaemonDeployments, ListDaemonDeployments, DescribeDaemonRevisions. These record what
//! is desired (the daemon, an immutable revision, a PENDING deployment); the scheduler's daemon
//! pass (`controller::daemons`) runs one task of the current revision on every host of the
//! daemon's capacity providers and moves the deployment on.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, page, paged, parse, timestamp};
use crate::records::daemon::{
    DaemonDeploymentRecord, DaemonDeploymentStatus, DaemonRecord, DaemonRevisionRecord,
    DaemonStatus, ProviderCount, daemon_arn, daemon_key, daemon_of_arn, deployment_arn,
    deployment_key, key_of_arn, new_id, revision_arn, revision_key,
};
use crate::store::Expect;

/// Most ARNs DescribeDaemonDeployments and DescribeDaemonRevisions take at once.
const MAX_DESCRIBE: usize = 20;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    drain_percent: Option<f64>,
    alarms: Option<Alarms>,
    bake_time_in_minutes: Option<u32>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Alarms {
    #[serde(default)]
    alarm_names: Vec<String>,
    #[serde(default)]
    enable: bool,
}

/// What CreateDaemon and UpdateDaemon share.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaemonSpec {
    daemon_task_definition_arn: String,
    capacity_provider_arns: Vec<String>,
    deployment_configuration: Option<Value>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    enable_execute_command: Option<bool>,
    critical: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateDaemon {
    daemon_name: String,
    cluster_arn: Option<String>,
    tags: Option<Value>,
    #[serde(rename = "clientToken")]
    _client_token: Option<String>,
    #[serde(flatten)]
    spec: DaemonSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateDaemon {
    daemon_arn: String,
    #[serde(flatten)]
    spec: DaemonSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaemonArn {
    daemon_arn: String,
}

fn server(what: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::ServerException, format!("{what}: {error}"))
}

/// A capacity provider's ARN: FARGATE, FARGATE_SPOT, or one created and associated with the
/// daemon's cluster (its hosts are the cluster's in its pool).
fn provider_arn(api: &Api, cluster: &str, given: &str, i: usize) -> Result<String, ApiError> {
    let name = crate::arn::resource_name(given, "capacity-provider");
    let Some(provider) = crate::control::providers::find(&api.control, name)? else {
        return Err(ApiError::invalid(format!(
            "capacityProviderArns[{i}]: the capacity provider {name} was not found"
        )));
    };
    let built_in = matches!(
        provider,
        crate::control::providers::Provider::Fargate
            | crate::control::providers::Provider::FargateSpot
    );
    if !built_in
        && !crate::control::providers::of_cluster(&api.control, cluster)?
            .iter()
            .any(|a| a == name)
    {
        return Err(ApiError::invalid(format!(
            "capacityProviderArns[{i}]: the capacity provider {name} is not associated with \
             cluster {cluster}; associate it with PutClusterCapacityProviders"
        )));
    }
    Ok(api.control.arns.capacity_provider(provider.name()))
}

/// The deployment configuration as kept: drainPercent 0-100; alarms cannot be watched here.
fn configuration(given: Option<Value>) -> Result<Value, ApiError> {
    let Some(given) = given else {
        return Ok(json!({"drainPercent": crate::controller::daemons::DEFAULT_DRAIN_PERCENT}));
    };
    let parsed: Configuration = parse(given.clone())
        .map_err(|e| ApiError::invalid(format!("deploymentConfiguration.{}", e.message)))?;
    if let Some(drain) = parsed.drain_percent
        && !(0.0..=100.0).contains(&drain)
    {
        return Err(ApiError::invalid(format!(
            "deploymentConfiguration.drainPercent: must be 0-100 (got {drain})"
        )));
    }
    if parsed.alarms.as_ref().is_some_and(|a| a.enable) {
        return Err(ApiError::unsupported(
            "deploymentConfiguration.alarms: wasmgate has no CloudWatch alarms to watch during a \
             daemon deployment; leave alarms disabled (failed daemon task starts are still \
             throttled)",
        ));
    }
    let _ = (
        parsed.bake_time_in_minutes,
        parsed.alarms.map(|a| a.alarm_names),
    );
    let mut kept = given;
    if kept.get("drainPercent").is_none() {
        kept["drainPercent"] = json!(crate::controller::daemons::DEFAULT_DRAIN_PERCENT);
    }
    Ok(kept)
}

/// Checks a spec and writes its revision; returns the revision and the provider ARNs.
fn write_revision(
    api: &Api,
    cluster: &str,
    name: &str,
    spec: &DaemonSpec,
    now: f64,
) -> Result<(DaemonRevisionRecord, Vec<String>), ApiError> {
    if spec.capacity_provider_arns.is_empty() {
        return Err(ApiError::invalid(
            "capacityProviderArns: at least one capacity provider is required",
        ));
    }
    let providers = spec
        .capacity_provider_arns
        .iter()
        .enumerate()
        .map(|(i, p)| provider_arn(api, cluster, p, i))
        .collect::<Result<Vec<_>, _>>()?;
    let (record, _) =
        super::daemon_task_definitions::find_record(api, &spec.daemon_task_definition_arn)?;
    if record["status"] != "ACTIVE" {
        return Err(ApiError::client(format!(
            "The daemon task definition is not ACTIVE: {}",
            spec.daemon_task_definition_arn
        )));
    }
    let propagate = spec.propagate_tags.clone().unwrap_or_else(|| "NONE".into());
    if !matches!(propagate.as_str(), "DAEMON" | "NONE") {
        return Err(ApiError::invalid(format!(
            "propagateTags: must be DAEMON or NONE (got {propagate})"
        )));
    }
    let id = new_id();
    let images = record["document"]["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"containerName": c["name"], "image": c["image"]}))
        .collect();
    let revision = DaemonRevisionRecord {
        daemon_revision_arn: revision_arn(&api.control.arns, cluster, name, &id),
        daemon_arn: daemon_arn(&api.control.arns, cluster, name),
        cluster_arn: api.control.arns.cluster(cluster),
        daemon_task_definition_arn: record["taskDefinitionArn"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        created_at: now,
        container_images: images,
        propagate_tags: propagate,
        enable_ecs_managed_tags: spec.enable_ecs_managed_tags.unwrap_or(false),
        enable_execute_command: spec.enable_execute_command.unwrap_or(false),
        critical: spec.critical.unwrap_or(true),
        id,
    };
    let value = serde_json::to_value(&revision).map_err(|e| server("daemon revision", e))?;
    api.control.store.put(
        &revision_key(cluster, name, &revision.id),
        &value,
        Expect::Absent,
    )?;
    Ok((revision, providers))
}

/// Writes a PENDING deployment of `target` over the revisions that run now.
fn write_deployment(
    api: &Api,
    daemon: &DaemonRecord,
    target: &DaemonRevisionRecord,
    configuration: Value,
    now: f64,
) -> Result<DaemonDeploymentRecord, ApiError> {
    let id = new_id();
    let deployment = DaemonDeploymentRecord {
        daemon_deployment_arn: deployment_arn(
            &api.control.arns,
            &daemon.cluster,
            &daemon.daemon_name,
            &id,
        ),
        daemon_arn: daemon.daemon_arn.clone(),
        cluster_arn: daemon.cluster_arn.clone(),
        status: DaemonDeploymentStatus::Pending,
        status_reason: "The daemon deployment is pending.".into(),
        target_revision: target.daemon_revision_arn.clone(),
        source_revisions: daemon
            .counts
            .iter()
            .map(|(arn, _)| arn.clone())
            .filter(|arn| *arn != target.daemon_revision_arn)
            .collect(),
        capacity_provider_arns: daemon.capacity_provider_arns.clone(),
        deployment_configuration: configuration,
        target_counts: Vec::new(),
        created_at: now,
        started_at: None,
        stopped_at: None,
        finished_at: None,
        id,
    };
    let value = serde_json::to_value(&deployment).map_err(|e| server("daemon deployment", e))?;
    api.control.store.put(
        &deployment_key(&daemon.cluster, &daemon.daemon_name, &deployment.id),
        &value,
        Expect::Absent,
    )?;
    Ok(deployment)
}

/// Stops the daemon's latest deployment if it has not finished (a newer one, or deletion,
/// takes over).
fn stop_latest(api: &Api, daemon: &DaemonRecord, why: &str, now: f64) -> Result<(), ApiError> {
    crate::records::update::<DaemonDeploymentRecord>(
        api.control.store.as_ref(),
        &deployment_key(&daemon.cluster, &daemon.daemon_name, &daemon.deployment),
        |d| {
            if !matches!(
                d.status,
                DaemonDeploymentStatus::Pending | DaemonDeploymentStatus::InProgress
            ) {
                return false;
            }
            d.status = DaemonDeploymentStatus::Stopped;
            d.status_reason = why.to_string();
            d.stopped_at = Some(now);
            true
        },
    )?;
    Ok(())
}

fn save(api: &Api, daemon: &DaemonRecord, expected: Expect) -> Result<(), ApiError> {
    let value = serde_json::to_value(daemon).map_err(|e| server("daemon record", e))?;
    api.control.store.put(
        &daemon_key(&daemon.cluster, &daemon.daemon_name),
        &value,
        expected,
    )?;
    api.control.wake_scheduler();
    Ok(())
}

/// The daemon a `daemonArn` names (an ARN, or a name in the default cluster), with its
/// revision: DaemonNotFoundException when there is none.
fn find(api: &Api, given: &str) -> Result<(DaemonRecord, u64), ApiError> {
    let (cluster, name) = daemon_of_arn(given)
        .unwrap_or_else(|| (clusters::DEFAULT_CLUSTER.to_string(), given.to_string()));
    crate::records::get::<DaemonRecord>(api.control.store.as_ref(), &daemon_key(&cluster, &name))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::DaemonNotFoundException,
                format!("The daemon was not found: {given}"),
            )
        })
}

/// [`find`], refusing a daemon being deleted (DaemonNotActiveException).
fn find_active(api: &Api, given: &str) -> Result<(DaemonRecord, u64), ApiError> {
    let (daemon, revision) = find(api, given)?;
    if daemon.status != DaemonStatus::Active {
        return Err(ApiError::new(
            ErrorKind::DaemonNotActiveException,
            format!("The daemon is not ACTIVE: {}", daemon.daemon_arn),
        ));
    }
    Ok((daemon, revision))
}

fn deployment_arn_of(api: &Api, daemon: &DaemonRecord) -> String {
    deployment_arn(
        &api.control.arns,
        &daemon.cluster,
        &daemon.daemon_name,
        &daemon.deployment,
    )
}

/// CreateDaemon, UpdateDaemon and DeleteDaemon's answer.
fn summary(api: &Api, daemon: &DaemonRecord, updated: bool) -> Value {
    let mut shape = json!({
        "daemonArn": daemon.daemon_arn,
        "status": daemon.status,
        "createdAt": daemon.created_at,
        "deploymentArn": deployment_arn_of(api, daemon),
    });
    if updated {
        shape["updatedAt"] = json!(daemon.updated_at);
    }
    shape
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateDaemon = parse(body)?;
    let cluster = clusters::require_active(api, request.cluster_arn.as_deref())?;
    clusters::check_resource_name("daemonName", &request.daemon_name)?;
    let name = request.daemon_name;
    let tags = super::tags::given("tags", request.tags)?;
    let configuration = configuration(request.spec.deployment_configuration.clone())?;
    let _guard = api.control.lock_services();
    if find(api, &daemon_arn(&api.control.arns, &cluster, &name)).is_ok() {
        return Err(ApiError::invalid("Creation of daemon was not idempotent."));
    }
    let now = timestamp();
    let (revision, providers) = write_revision(api, &cluster, &name, &request.spec, now)?;
    let mut daemon = DaemonRecord {
        daemon_arn: daemon_arn(&api.control.arns, &cluster, &name),
        daemon_name: name,
        cluster_arn: api.control.arns.cluster(&cluster),
        cluster,
        status: DaemonStatus::Active,
        capacity_provider_arns: providers,
        current_revision: revision.id.clone(),
        deployment: String::new(),
        created_at: now,
        updated_at: now,
        tags,
        counts: Vec::new(),
        drained: Vec::new(),
        scheduler: Default::default(),
    };
    daemon.deployment = write_deployment(api, &daemon, &revision, configuration, now)?.id;
    save(api, &daemon, Expect::Absent)?;
    Ok(summary(api, &daemon, false))
}

pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateDaemon = parse(body)?;
    let configuration = configuration(request.spec.deployment_configuration.clone())?;
    let _guard = api.control.lock_services();
    let (mut daemon, stored) = find_active(api, &request.daemon_arn)?;
    let now = timestamp();
    let (cluster, name) = (daemon.cluster.clone(), daemon.daemon_name.clone());
    let (revision, providers) = write_revision(api, &cluster, &name, &request.spec, now)?;
    let deployment = write_deployment(api, &daemon, &revision, configuration, now)?;
    stop_latest(
        api,
        &daemon,
        &format!("Superseded by daemon deployment {}.", deployment.id),
        now,
    )?;
    daemon.capacity_provider_arns = providers;
    daemon.current_revision = revision.id;
    daemon.deployment = deployment.id;
    daemon.updated_at = now;
    // A new revision starts without the old one's throttle.
    daemon.scheduler.start_failures = 0;
    daemon.scheduler.not_before = None;
    save(api, &daemon, Expect::Revision(stored))?;
    Ok(summary(api, &daemon, true))
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DaemonArn = parse(body)?;
    let _guard = api.control.lock_services();
    let (mut daemon, stored) = find_active(api, &request.daemon_arn)?;
    let now = timestamp();
    daemon.status = DaemonStatus::DeleteInProgress;
    daemon.updated_at = now;
    save(api, &daemon, Expect::Revision(stored))?;
    Ok(summary(api, &daemon, true))
}

fn provider_shape(count: &ProviderCount) -> Value {
    json!({
        "arn": count.arn,
        "runningCount": count.running + count.draining,
        "withoutDaemonCount": count.without,
    })
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DaemonArn = parse(body)?;
    let (daemon, _) = find(api, &request.daemon_arn)?;
    let revisions: Vec<Value> = daemon
        .counts
        .iter()
        .map(|(arn, counts)| {
            json!({
                "arn": arn,
                "capacityProviders": counts.iter().map(provider_shape).collect::<Vec<_>>(),
                "totalRunningCount": counts.iter().map(|c| c.running + c.draining).sum::<u32>(),
                "totalWithoutDaemonCount": counts.iter().map(|c| c.without).sum::<u32>(),
            })
        })
        .collect();
    Ok(json!({"daemon": {
        "daemonArn": daemon.daemon_arn,
        "clusterArn": daemon.cluster_arn,
        "status": daemon.status,
        "currentRevisions": revisions,
        "deploymentArn": deployment_arn_of(api, &daemon),
        "createdAt": daemon.created_at,
        "updatedAt": daemon.updated_at,
    }}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDaemons {
    cluster_arn: Option<String>,
    #[serde(default)]
    capacity_provider_arns: Vec<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListDaemons = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster_arn.as_deref())?;
    let wanted: Vec<&str> = request
        .capacity_provider_arns
        .iter()
        .map(|p| crate::arn::resource_name(p, "capacity-provider"))
        .collect();
    let daemons: Vec<DaemonRecord> =
        crate::records::list(api.control.store.as_ref(), &format!("daemons/{cluster}/"))?;
    let summaries: Vec<Value> = daemons
        .iter()
        .filter(|d| {
            wanted.is_empty()
                || d.capacity_provider_arns
                    .iter()
                    .any(|p| wanted.contains(&crate::arn::resource_name(p, "capacity-provider")))
        })
        .map(|d| {
            json!({
                "daemonArn": d.daemon_arn,
                "status": d.status,
                "createdAt": d.created_at,
                "updatedAt": d.updated_at,
            })
        })
        .collect();
    let (items, next) = page(&body, summaries)?;
    Ok(paged("daemonSummariesList", items, next))
}

fn revision_detail(arn: &str, counts: &[ProviderCount]) -> Value {
    json!({
        "arn": arn,
        "capacityProviders": counts.iter().map(|c| json!({
            "arn": c.arn,
            "runningInstanceCount": c.running,
            "withoutDaemonInstanceCount": c.without,
            "drainingInstanceCount": c.draining,
        })).collect::<Vec<_>>(),
        "totalRunningInstanceCount": counts.iter().map(|c| c.running).sum::<u32>(),
        "totalWithoutDaemonInstanceCount": counts.iter().map(|c| c.without).sum::<u32>(),
        "totalDrainingInstanceCount": counts.iter().map(|c| c.draining).sum::<u32>(),
    })
}

/// ECS's `DaemonDeployment` shape. The counts of the source revisions come from their
/// daemon's latest pass (none once it is gone).
fn deployment_shape(api: &Api, d: &DaemonDeploymentRecord) -> Value {
    let daemon = daemon_of_arn(&d.daemon_arn).and_then(|(cluster, name)| {
        crate::records::get::<DaemonRecord>(
            api.control.store.as_ref(),
            &daemon_key(&cluster, &name),
        )
        .ok()
        .flatten()
        .map(|(daemon, _)| daemon)
    });
    let counts_of = |arn: &str| -> Vec<ProviderCount> {
        daemon
            .as_ref()
            .and_then(|daemon| daemon.counts.iter().find(|(a, _)| a == arn))
            .map(|(_, counts)| counts.clone())
            .unwrap_or_default()
    };
    let mut shape = json!({
        "daemonDeploymentArn": d.daemon_deployment_arn,
        "clusterArn": d.cluster_arn,
        "status": d.status,
        "statusReason": d.status_reason,
        "targetDaemonRevision": revision_detail(&d.target_revision, &d.target_counts),
        "sourceDaemonRevisions": d.source_revisions.iter().map(|arn| revision_detail(arn, &counts_of(arn))).collect::<Vec<_>>(),
        // wasmgate throttles failed daemon task starts but does not roll a daemon back.
        "circuitBreaker": {"status": "DISABLED", "failureCount": 0, "threshold": 0},
        "alarms": {"status": "DISABLED", "alarmNames": [], "triggeredAlarmNames": []},
        "deploymentConfiguration": d.deployment_configuration,
        "createdAt": d.created_at,
    });
    for (member, at) in [
        ("startedAt", d.started_at),
        ("stoppedAt", d.stopped_at),
        ("finishedAt", d.finished_at),
    ] {
        if let Some(at) = at {
            shape[member] = json!(at);
        }
    }
    shape
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeDeployments {
    daemon_deployment_arns: Vec<String>,
}

pub fn describe_deployments(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeDeployments = parse(body)?;
    if request.daemon_deployment_arns.len() > MAX_DESCRIBE {
        return Err(ApiError::invalid(format!(
            "daemonDeploymentArns: at most {MAX_DESCRIBE} per call (got {})",
            request.daemon_deployment_arns.len()
        )));
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in &request.daemon_deployment_arns {
        let record = key_of_arn(arn, "daemon-deployment", "daemon-deployments")
            .map(|key| {
                crate::records::get::<DaemonDeploymentRecord>(api.control.store.as_ref(), &key)
            })
            .transpose()?
            .flatten();
        match record {
            Some((deployment, _)) => found.push(deployment_shape(api, &deployment)),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({"daemonDeployments": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDeployments {
    daemon_arn: String,
    #[serde(default)]
    status: Vec<DaemonDeploymentStatus>,
    created_at: Option<CreatedAt>,
}

#[derive(Deserialize)]
struct CreatedAt {
    before: Option<f64>,
    after: Option<f64>,
}

pub fn list_deployments(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListDeployments = parse(body.clone())?;
    let (cluster, name) = daemon_of_arn(&request.daemon_arn).unwrap_or_else(|| {
        (
            clusters::DEFAULT_CLUSTER.to_string(),
            request.daemon_arn.clone(),
        )
    });
    let mut deployments: Vec<DaemonDeploymentRecord> = crate::records::list(
        api.control.store.as_ref(),
        &format!("daemon-deployments/{cluster}/{name}/"),
    )?;
    deployments.retain(|d| {
        (request.status.is_empty() || request.status.contains(&d.status))
            && request.created_at.as_ref().is_none_or(|range| {
                range.before.is_none_or(|b| d.created_at < b)
                    && range.after.is_none_or(|a| d.created_at > a)
            })
    });
    // Newest first.
    deployments.sort_by(|a, b| {
        b.created_at
            .partial_cmp(&a.created_at)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let summaries: Vec<Value> = deployments
        .iter()
        .map(|d| {
            let mut s = json!({
                "daemonDeploymentArn": d.daemon_deployment_arn,
                "daemonArn": d.daemon_arn,
                "clusterArn": d.cluster_arn,
                "status": d.status,
                "statusReason": d.status_reason,
                "targetDaemonRevisionArn": d.target_revision,
                "createdAt": d.created_at,
            });
            for (member, at) in [
                ("startedAt", d.started_at),
                ("stoppedAt", d.stopped_at),
                ("finishedAt", d.finished_at),
            ] {
                if let Some(at) = at {
                    s[member] = json!(at);
                }
            }
            s
        })
        .collect();
    // ECS's default page here is 20.
    let mut paging = body;
    if paging.get("maxResults").is_none_or(Value::is_null) {
        paging["maxResults"] = json!(20);
    }
    let (items, next) = page(&paging, summaries)?;
    Ok(paged("daemonDeployments", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRevisions {
    daemon_revision_arns: Vec<String>,
}

pub fn describe_revisions(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeRevisions = parse(body)?;
    if request.daemon_revision_arns.len() > MAX_DESCRIBE {
        return Err(ApiError::invalid(format!(
            "daemonRevisionArns: at most {MAX_DESCRIBE} per call (got {})",
            request.daemon_revision_arns.len()
        )));
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in &request.daemon_revision_arns {
        let record = key_of_arn(arn, "daemon-revision", "daemon-revisions")
            .map(|key| {
                crate::records::get::<DaemonRevisionRecord>(api.control.store.as_ref(), &key)
            })
            .transpose()?
            .flatten();
        match record {
            Some((r, _)) => found.push(json!({
                "daemonRevisionArn": r.daemon_revision_arn,
                "clusterArn": r.cluster_arn,
                "daemonArn": r.daemon_arn,
                "daemonTaskDefinitionArn": r.daemon_task_definition_arn,
                "createdAt": r.created_at,
                "containerImages": r.container_images,
                "propagateTags": r.propagate_tags,
                "enableECSManagedTags": r.enable_ecs_managed_tags,
                "enableExecuteCommand": r.enable_execute_command,
                "critical": r.critical,
            })),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({"daemonRevisions": found, "failures": failures}))
}

/// The daemon task definition ARNs that a daemon's current revision runs.
pub fn definitions_in_use(api: &Api) -> Result<Vec<Value>, ApiError> {
    let store = api.control.store.as_ref();
    let mut arns = Vec::new();
    for daemon in crate::records::list::<DaemonRecord>(store, "daemons/")? {
        if let Some((revision, _)) = crate::records::get::<DaemonRevisionRecord>(
            store,
            &revision_key(
                &daemon.cluster,
                &daemon.daemon_name,
                &daemon.current_revision,
            ),
        )? {
            arns.push(json!(revision.daemon_task_definition_arn));
        }
    }
    Ok(arns)
}
