//! ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
//! StopServiceDeployment, ContinueServiceDeployment: the service's history
//! (`records::service::history`) in ECS's shapes and ARNs
//! (`service-deployment/CLUSTER/SERVICE/ID`, `service-revision/CLUSTER/SERVICE/ID`).
//!
//! A stop is a request written on the service deployment (ROLLBACK_REQUESTED,
//! STOP_REQUESTED); the scheduler carries it out on its next pass, as it does everything else.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{find, save};
use crate::api::{Api, ApiError, ErrorKind, clusters, page, paged, parse};
use crate::records::service::Service;
use crate::records::service::history::{ServiceDeployment, ServiceDeploymentStatus};

/// `(cluster, service, id)` of an ARN `arn:aws:ecs:R:A:KIND/CLUSTER/SERVICE/ID` of this
/// control plane (the id may hold a `/`, as a task set's `ecs-svc/...` does).
pub fn child_of_arn<'a>(
    api: &Api,
    arn: &'a str,
    kind: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let scope = &api.control.arns;
    let prefix = format!("arn:aws:ecs:{}:{}:{kind}/", scope.region, scope.account);
    let mut parts = arn.strip_prefix(&prefix)?.splitn(3, '/');
    let (cluster, service, id) = (parts.next()?, parts.next()?, parts.next()?);
    (!cluster.is_empty() && !service.is_empty() && !id.is_empty()).then_some((cluster, service, id))
}

/// The service and revision of the service deployment `arn`.
fn deployment_of(api: &Api, arn: &str) -> Result<Option<(Service, u64, String)>, ApiError> {
    let Some((cluster, service, id)) = child_of_arn(api, arn, "service-deployment") else {
        return Ok(None);
    };
    match find(api, cluster, service) {
        Ok((service, revision)) if service.history.find(id).is_some() => {
            Ok(Some((service, revision, id.to_string())))
        }
        Ok(_) => Ok(None),
        Err(error) if error.kind == ErrorKind::ServiceNotFoundException => Ok(None),
        Err(other) => Err(other),
    }
}

fn not_found(arn: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ServiceDeploymentNotFoundException,
        format!("The service deployment does not exist: {arn}"),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatedAt {
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListServiceDeployments {
    service: String,
    cluster: Option<String>,
    #[serde(default)]
    status: Vec<ServiceDeploymentStatus>,
    created_at: Option<CreatedAt>,
    #[serde(rename = "nextToken")]
    _next_token: Option<String>,
    #[serde(rename = "maxResults")]
    _max_results: Option<Value>,
}

/// Newest first, as ECS lists them.
pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListServiceDeployments = parse(body.clone())?;
    let cluster = clusters::require_active(api, request.cluster.as_deref())?;
    let (service, _) = find(api, &cluster, &request.service)?;
    let window = request.created_at.unwrap_or(CreatedAt {
        before: None,
        after: None,
    });
    let items: Vec<Value> = service
        .history
        .deployments
        .iter()
        .filter(|d| request.status.is_empty() || request.status.contains(&d.status))
        .filter(|d| window.before.is_none_or(|b| d.created_at < b))
        .filter(|d| window.after.is_none_or(|a| d.created_at > a))
        .map(|d| brief(&service, d))
        .collect();
    let (items, next) = page(&body, items)?;
    Ok(paged("serviceDeployments", items, next))
}

fn brief(service: &Service, d: &ServiceDeployment) -> Value {
    let mut shape = json!({
        "serviceDeploymentArn": service.child_arn("service-deployment", &d.id),
        "serviceArn": service.service_arn,
        "clusterArn": service.cluster_arn,
        "createdAt": d.created_at,
        "targetServiceRevisionArn": service.child_arn("service-revision", &d.target_revision),
        "status": d.status,
    });
    optional(&mut shape, "startedAt", d.started_at);
    optional(&mut shape, "finishedAt", d.finished_at);
    if let Some(reason) = &d.status_reason {
        shape["statusReason"] = json!(reason);
    }
    shape
}

fn optional(shape: &mut Value, member: &str, value: Option<f64>) {
    if let Some(value) = value {
        shape[member] = json!(value);
    }
}

/// A revision's summary: what the scheduler's deployments that run it ask for and have.
fn revision_summary(service: &Service, revision: &str) -> Value {
    let (mut requested, mut running, mut pending) = (0, 0, 0);
    for d in &service.deployments {
        if service
            .history
            .runs
            .get(&d.id)
            .is_some_and(|r| r == revision)
        {
            requested += d.desired_count;
            running += d.running_count;
            pending += d.pending_count;
        }
    }
    json!({
        "arn": service.child_arn("service-revision", revision),
        "requestedTaskCount": requested,
        "runningTaskCount": running,
        "pendingTaskCount": pending,
    })
}

fn full(service: &Service, d: &ServiceDeployment) -> Value {
    let mut shape = brief(service, d);
    shape
        .as_object_mut()
        .map(|o| o.remove("targetServiceRevisionArn"));
    shape["updatedAt"] = json!(d.updated_at);
    optional(&mut shape, "stoppedAt", d.stopped_at);
    shape["sourceServiceRevisions"] = json!(
        d.source_revisions
            .iter()
            .map(|r| revision_summary(service, r))
            .collect::<Vec<_>>()
    );
    shape["targetServiceRevision"] = revision_summary(service, &d.target_revision);
    shape["deploymentConfiguration"] = d.deployment_configuration.clone();
    let breaker_on = d.deployment_configuration["deploymentCircuitBreaker"]["enable"] == true;
    let breaker_status = if !breaker_on {
        "DISABLED"
    } else if d.tripped {
        "TRIGGERED"
    } else if d.status.is_ongoing() {
        "MONITORING"
    } else {
        "MONITORING_COMPLETE"
    };
    shape["deploymentCircuitBreaker"] = json!({
        "status": breaker_status,
        "failureCount": d.failure_count,
        "threshold": d.threshold,
    });
    // There is no CloudWatch here: alarms are kept, never watched.
    let alarms = &d.deployment_configuration["alarms"];
    shape["alarms"] = json!({
        "status": "DISABLED",
        "alarmNames": alarms.get("alarmNames").cloned().unwrap_or(json!([])),
        "triggeredAlarmNames": [],
    });
    if let Some(rollback) = &d.rollback {
        shape["rollback"] = json!({
            "reason": rollback.reason,
            "startedAt": rollback.started_at,
            "serviceRevisionArn": service.child_arn("service-revision", &rollback.service_revision),
        });
    }
    shape
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeServiceDeployments {
    service_deployment_arns: Vec<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeServiceDeployments = parse(body)?;
    if request.service_deployment_arns.len() > 20 {
        return Err(ApiError::invalid(format!(
            "serviceDeploymentArns: at most 20 per call (got {})",
            request.service_deployment_arns.len()
        )));
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in &request.service_deployment_arns {
        match deployment_of(api, arn)? {
            Some((service, _, id)) => {
                if let Some(d) = service.history.find(&id) {
                    found.push(full(&service, d));
                }
            }
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({"serviceDeployments": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeServiceRevisions {
    service_revision_arns: Vec<String>,
}

pub fn describe_revisions(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeServiceRevisions = parse(body)?;
    if request.service_revision_arns.len() > 20 {
        return Err(ApiError::invalid(format!(
            "serviceRevisionArns: at most 20 per call (got {})",
            request.service_revision_arns.len()
        )));
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in &request.service_revision_arns {
        let revision =
            child_of_arn(api, arn, "service-revision").and_then(|(cluster, name, id)| {
                let (service, _) = find(api, cluster, name).ok()?;
                let revision = service.history.revision(id)?.clone();
                Some((service, revision))
            });
        let Some((service, revision)) = revision else {
            failures.push(json!({"arn": arn, "reason": "MISSING"}));
            continue;
        };
        let mut shape = json!({
            "serviceRevisionArn": arn,
            "serviceArn": service.service_arn,
            "clusterArn": service.cluster_arn,
            "taskDefinition": revision.task_definition,
            "createdAt": revision.created_at,
            "guardDutyEnabled": false,
            "containerImages": container_images(api, &revision.task_definition),
        });
        if !revision.members.contains_key("capacityProviderStrategy") {
            shape["launchType"] = json!(revision.launch_type.as_str());
        }
        for (member, value) in &revision.members {
            shape[member.as_str()] = value.clone();
        }
        found.push(shape);
    }
    Ok(json!({"serviceRevisions": found, "failures": failures}))
}

/// The images of a task definition's containers, as a revision shows them.
fn container_images(api: &Api, task_definition: &str) -> Value {
    let Ok((record, _)) =
        crate::control::definitions::find(api.control.store.as_ref(), task_definition)
    else {
        return json!([]);
    };
    let containers = record["document"]["containerDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    json!(
        containers
            .iter()
            .map(|c| json!({"containerName": c["name"], "image": c["image"]}))
            .collect::<Vec<_>>()
    )
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum StopType {
    Abort,
    Rollback,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StopServiceDeployment {
    service_deployment_arn: String,
    stop_type: Option<StopType>,
}

/// As ECS: an ongoing (PENDING, IN_PROGRESS) deployment is asked to roll back (the default)
/// or to stop; one already stopping or rolling back carries on; a finished one is a
/// ConflictException.
pub fn stop(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: StopServiceDeployment = parse(body)?;
    let arn = request.service_deployment_arn;
    let stop_type = request.stop_type.unwrap_or(StopType::Rollback);
    let _guard = api.control.lock_services();
    let (mut service, revision, id) = deployment_of(api, &arn)?.ok_or_else(|| not_found(&arn))?;
    let cluster = crate::arn::resource_name(&service.cluster_arn, "cluster").to_string();
    let has_source = service.history.find(&id).is_some_and(|d| {
        d.source_revisions
            .iter()
            .any(|r| service.history.revision(r).is_some())
    });
    let Some(record) = service.history.find_mut(&id) else {
        return Err(not_found(&arn));
    };
    use ServiceDeploymentStatus as S;
    match record.status {
        S::Pending | S::InProgress => {
            if stop_type == StopType::Rollback && !has_source {
                return Err(ApiError::new(
                    ErrorKind::ConflictException,
                    "The service deployment has no previous service revision to roll back to.",
                ));
            }
            record.status = match stop_type {
                StopType::Rollback => S::RollbackRequested,
                StopType::Abort => S::StopRequested,
            };
            record.updated_at = crate::records::timestamp();
        }
        S::StopRequested | S::RollbackRequested | S::RollbackInProgress => {
            return Ok(json!({"serviceDeploymentArn": arn}));
        }
        finished => {
            return Err(ApiError::new(
                ErrorKind::ConflictException,
                format!(
                    "The service deployment is {} and cannot be stopped.",
                    json!(finished).as_str().unwrap_or_default()
                ),
            ));
        }
    }
    service.scheduler.steady = false;
    save(api, &cluster, &service, revision)?;
    Ok(json!({"serviceDeploymentArn": arn}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContinueServiceDeployment {
    service_deployment_arn: String,
    hook_id: String,
    #[serde(rename = "action")]
    _action: Option<Value>,
}

/// Deployments here are ROLLING and take no lifecycle hooks (CreateService refuses them), so
/// no deployment is ever paused at one: the answer is ECS's for a hook that is not paused.
pub fn continue_deployment(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ContinueServiceDeployment = parse(body)?;
    let arn = request.service_deployment_arn;
    deployment_of(api, &arn)?.ok_or_else(|| not_found(&arn))?;
    Err(ApiError::invalid(format!(
        "hookId: the service deployment is not paused at lifecycle hook {}",
        request.hook_id
    )))
}
