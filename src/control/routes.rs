//! The HTTP routes the gateway serves: every ACTIVE service whose task definition declares a
//! route, with the tasks that serve it and where; and the one change the gateway makes to a
//! service, its desired count (scale to zero when idle, and back on a request).

use std::collections::HashMap;

use super::{Control, ControlError};
use crate::records::service::ServiceStatus;
use crate::records::{DesiredStatus, HealthStatus, Service};
use crate::taskdef::http::HttpSettings;

/// The store key of a service.
pub fn service_key(cluster: &str, name: &str) -> String {
    format!("services/{cluster}/{name}")
}

/// A service that serves HTTP, as the gateway routes to it.
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    pub cluster: String,
    pub service_name: String,
    /// The container of the task definition that declares the route.
    pub container: String,
    pub settings: HttpSettings,
    pub desired_count: u32,
    /// Its tasks that are meant to run and have not failed their health checks (any
    /// deployment). Some may not serve yet: the gateway asks the workers.
    pub running_tasks: Vec<RouteTask>,
}

/// A task of a route and where it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTask {
    pub id: String,
    /// The agent that serves it, when that is another process; `None` for a task of this
    /// process's own agent (served from its worker registry).
    pub remote: Option<RemoteAgent>,
}

/// Where another host's agent takes forwarded requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAgent {
    /// `host:port`.
    pub authority: String,
    /// The key the agent expects with each request.
    pub key: String,
}

/// The route of a task definition (a reference), if one of its containers declares one.
pub fn route_of(
    control: &Control,
    task_definition: &str,
) -> Result<Option<(String, HttpSettings)>, ControlError> {
    let (record, _) = super::definitions::find(control.store.as_ref(), task_definition)?;
    let Ok(definition) = super::definitions::definition_of(&record, task_definition) else {
        return Ok(None);
    };
    Ok(definition
        .spec
        .container_definitions
        .iter()
        .find_map(|c| c.http_settings().map(|s| (c.name.clone(), s))))
}

/// Every ACTIVE service that declares an HTTP route, with its running tasks.
pub fn http_routes(control: &Control) -> Result<Vec<ServiceRoute>, ControlError> {
    let mut routes = Vec::new();
    for service in crate::records::list::<Service>(control.store.as_ref(), "services/")? {
        if service.status != ServiceStatus::Active {
            continue;
        }
        let Some((container, settings)) = route_of(control, &service.task_definition)? else {
            continue;
        };
        routes.push(ServiceRoute {
            cluster: crate::arn::resource_name(&service.cluster_arn, "cluster").to_string(),
            service_name: service.service_name,
            container,
            settings,
            desired_count: service.desired_count,
            running_tasks: Vec::new(),
        });
    }
    if routes.is_empty() {
        return Ok(routes);
    }
    let remote: HashMap<String, RemoteAgent> = control
        .hosts
        .records()?
        .into_iter()
        .filter(|h| !h.local)
        .filter_map(|h| {
            let agent = RemoteAgent {
                authority: h.endpoint?.trim_start_matches("http://").to_string(),
                key: h.forward_key?,
            };
            Some((h.id, agent))
        })
        .collect();
    for task in crate::records::tasks(control.store.as_ref())? {
        // Tasks not yet RUNNING are listed too: their worker serves as soon as it starts,
        // before the store hears of it.
        if task.is_stopped()
            || task.desired_status != DesiredStatus::Running
            || task.health_status == HealthStatus::Unhealthy
        {
            continue;
        }
        let Some(name) = task.service_name() else {
            continue;
        };
        let cluster = crate::arn::resource_name(&task.cluster_arn, "cluster");
        if let Some(route) = routes
            .iter_mut()
            .find(|r| r.service_name == name && r.cluster == cluster)
        {
            route.running_tasks.push(RouteTask {
                id: task.id().to_string(),
                remote: task.host.as_ref().and_then(|h| remote.get(h).cloned()),
            });
        }
    }
    Ok(routes)
}

/// Sets a service's desiredCount without a new deployment (the gateway scaling an idle
/// service to zero and back); notes why in its events. Returns whether it changed.
pub fn set_desired_count(
    control: &Control,
    cluster: &str,
    name: &str,
    desired: u32,
    why: &str,
) -> Result<bool, ControlError> {
    let _guard = control.lock_services();
    let key = service_key(cluster, name);
    let Some((mut service, revision)) =
        crate::records::get::<Service>(control.store.as_ref(), &key)?
    else {
        return Err(ControlError::NotFound(format!("Service not found: {name}")));
    };
    if service.status != ServiceStatus::Active || service.desired_count == desired {
        return Ok(false);
    }
    service.desired_count = desired;
    service.scheduler.steady = false;
    service.add_event(
        crate::records::timestamp(),
        format!("(service {name}) desiredCount set to {desired}: {why}."),
    );
    crate::records::put(control.store.as_ref(), &key, &service, revision)?;
    control.wake_scheduler();
    Ok(true)
}
