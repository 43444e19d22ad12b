//! The daemon pass (ECS's managed daemons): for every daemon, one task of its current revision
//! on each host of its capacity providers, decided by [`super::daemon::place_per_host`], and
//! its deployment's status and counts. It runs before the services' passes, so a host that
//! joins gets its daemons' tasks before any service's.
//!
//! A critical daemon whose task on a host stops by itself (its essential container exited, it
//! failed to start, someone stopped it) or turns unhealthy drains that host, as ECS does: the
//! services' tasks move off it and it takes no new ones. (ECS then replaces the instance; a
//! wasmgate host stays DRAINING until someone makes it ACTIVE again.)

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::daemon::{HostTask, HostView, account_stopped, place_per_host};
use super::host_tasks::{host_state, host_task, on_host, room_on};
use super::plan::{Phase, SchedulerSettings};
use crate::control::hosts::{HostRecord, HostStatus};
use crate::control::{Control, ControlError, Launch};
use crate::records::daemon::{
    DaemonDeploymentRecord, DaemonDeploymentStatus, DaemonRecord, DaemonRevisionRecord,
    DaemonStatus, ProviderCount, daemon_key, deployment_key, revision_key,
};
use crate::records::{HealthStatus, LaunchType, StopCode, TaskRecord, timestamp};

/// How often a pass retries hosts without room.
const RETRY: f64 = 5.0;
/// The share of a provider's hosts a deployment replaces at once when `drainPercent` is not
/// given.
pub const DEFAULT_DRAIN_PERCENT: f64 = 25.0;

/// The group of a daemon's tasks.
pub fn daemon_group(name: &str) -> String {
    format!("daemon:{name}")
}

/// The hosts capacity provider `provider` (a name or ARN) gives the daemons of `cluster`: the
/// shared pool for FARGATE and FARGATE_SPOT, a created provider's pool of the cluster's hosts
/// (`control::providers`).
pub fn provider_hosts(
    control: &Control,
    cluster: &str,
    provider: &str,
) -> Result<Vec<HostRecord>, ControlError> {
    crate::control::providers::hosts_of(control, cluster, provider)
}

/// Every daemon's pass. Returns when the next pass is due at the latest.
pub fn reconcile_daemons(
    control: &Control,
    settings: &SchedulerSettings,
    index: &super::index::TaskIndex,
) -> Result<Option<f64>, ControlError> {
    let daemons: Vec<DaemonRecord> = crate::records::list(control.store.as_ref(), "daemons/")?;
    if daemons.is_empty() {
        return Ok(None);
    }
    let mut by_daemon: HashMap<(String, String), Vec<TaskRecord>> = HashMap::new();
    for task in index.tasks() {
        let Some(name) = task.group.strip_prefix("daemon:").map(str::to_string) else {
            continue;
        };
        by_daemon
            .entry((task.cluster_arn.clone(), name))
            .or_default()
            .push(TaskRecord::clone(task));
    }
    let mut wake_at: Option<f64> = None;
    for daemon in daemons {
        let tasks = by_daemon
            .remove(&(daemon.cluster_arn.clone(), daemon.daemon_name.clone()))
            .unwrap_or_default();
        let span = tracing::debug_span!("reconcile", daemon = %daemon.daemon_name);
        let _entered = span.enter();
        match reconcile_daemon(
            control,
            &daemon.cluster,
            &daemon.daemon_name,
            &tasks,
            settings,
        ) {
            Ok(Some(at)) => wake_at = Some(wake_at.map_or(at, |w: f64| w.min(at))),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(daemon = %daemon.daemon_arn, %error, "cannot reconcile the daemon")
            }
        }
    }
    Ok(wake_at)
}

/// One daemon's pass.
fn reconcile_daemon(
    control: &Control,
    cluster: &str,
    name: &str,
    tasks: &[TaskRecord],
    settings: &SchedulerSettings,
) -> Result<Option<f64>, ControlError> {
    let store = control.store.as_ref();
    let _guard = control.lock_services();
    let key = daemon_key(cluster, name);
    let Some((daemon, revision)) = crate::records::get::<DaemonRecord>(store, &key)? else {
        return Ok(None);
    };
    let now = timestamp();
    let mut d = daemon.clone();
    let views: Vec<HostTask> = tasks.iter().map(host_task).collect();
    let not_found = |what: String| ControlError::NotFound(what);
    let (current, _) = crate::records::get::<DaemonRevisionRecord>(
        store,
        &revision_key(cluster, name, &d.current_revision),
    )?
    .ok_or_else(|| not_found(format!("daemon {name}: its revision is gone")))?;
    let deployment_key = deployment_key(cluster, name, &d.deployment);
    let deployment = crate::records::get::<DaemonDeploymentRecord>(store, &deployment_key)?;

    // Hosts of the providers, each once, with the provider that gives it.
    let mut hosts: BTreeMap<String, (HostRecord, String)> = BTreeMap::new();
    for provider in &d.capacity_provider_arns {
        for host in provider_hosts(control, cluster, provider)? {
            hosts
                .entry(host.id.clone())
                .or_insert_with(|| (host, provider.clone()));
        }
    }

    // A critical daemon's task that stopped by itself, or turned unhealthy, drains its host.
    if current.critical && d.status == DaemonStatus::Active {
        for task in tasks {
            let failed = (task.is_stopped()
                && !d.scheduler.accounted.iter().any(|id| id == task.id())
                && matches!(
                    task.stop_code,
                    Some(
                        StopCode::EssentialContainerExited
                            | StopCode::TaskFailedToStart
                            | StopCode::UserInitiated
                    )
                ))
                || (!task.is_stopped() && task.health_status == HealthStatus::Unhealthy);
            let Some(host) = task.host.as_deref() else {
                continue;
            };
            if !failed || d.drained.iter().any(|h| h == host) {
                continue;
            }
            let active = hosts
                .get(host)
                .is_some_and(|(h, _)| h.status == HostStatus::Active);
            if !active {
                continue;
            }
            control
                .hosts
                .update_record_through(control.store.as_ref(), host, |record| {
                    if record.status == HostStatus::Active {
                        record.status = HostStatus::Draining;
                    }
                })?;
            tracing::warn!(%host, task = %task.id(), "a critical daemon task stopped; draining its host");
            d.drained.push(host.to_string());
            if let Some((record, _)) = hosts.get_mut(host) {
                record.status = HostStatus::Draining;
            }
        }
    }
    // A host that is ACTIVE again may be drained again.
    d.drained.retain(|h| {
        hosts
            .get(h)
            .is_some_and(|(record, _)| record.status == HostStatus::Draining)
    });
    account_stopped(&mut d.scheduler, &views, now, settings);
    let throttled = d.scheduler.not_before.is_some_and(|at| now < at);

    let (record, _) =
        crate::control::daemon_definitions::find(store, &current.daemon_task_definition_arn)?;
    let definition =
        crate::control::definitions::definition_of(&record, &current.daemon_task_definition_arn)?;
    let needs = crate::control::launch::task_needs(&definition, &[]);
    let group = daemon_group(name);
    let mut room = room_on(control, cluster, LaunchType::Fargate, &group, needs)?;
    room.extend(room_on(control, cluster, LaunchType::Ec2, &group, needs)?);
    let host_views: Vec<HostView> = hosts
        .values()
        .map(|(h, _)| HostView {
            id: h.id.clone(),
            state: host_state(control, h, None),
            fits: room.get(&h.id).is_some_and(Option::is_none),
        })
        .collect();
    let drain_percent = deployment
        .as_ref()
        .and_then(|(dep, _)| dep.deployment_configuration["drainPercent"].as_f64())
        .unwrap_or(DEFAULT_DRAIN_PERCENT)
        .clamp(0.0, 100.0);
    let min_healthy = (100.0 - drain_percent).floor() as u32;
    let active = d.status == DaemonStatus::Active;
    let target = d.current_revision.clone();
    let mut plan = if active {
        place_per_host(&host_views, &views, &target, min_healthy, !throttled)
    } else {
        super::daemon::PerHost {
            stop: views
                .iter()
                .filter(|t| matches!(t.phase, Phase::Pending | Phase::Running))
                .map(|t| (t.id.clone(), format!("Daemon {name} was deleted")))
                .collect(),
            ..Default::default()
        }
    };
    let mut wake_at = throttled.then_some(d.scheduler.not_before).flatten();
    for (task_id, reason) in &plan.stop {
        control.request_stop(task_id, StopCode::ServiceSchedulerInitiated, reason)?;
    }
    let mut started = 0;
    for host_id in std::mem::take(&mut plan.start) {
        let Some((host, _)) = hosts.get(&host_id) else {
            continue;
        };
        let launch_type = if host.cluster.is_none() {
            LaunchType::Fargate
        } else {
            LaunchType::Ec2
        };
        let constraints = [on_host(&host_id)];
        let launched = crate::control::launch(
            control,
            Launch {
                cluster,
                record: &record,
                definition: &definition,
                count: 1,
                started_by: Some(target.clone()),
                group: group.clone(),
                launch_type,
                overrides: json!({}),
                tags: if current.propagate_tags == "DAEMON" {
                    d.tags.clone()
                } else {
                    json!([])
                },
                strategy: &[],
                strategies: &[],
                constraints: &constraints,
                guard: Vec::new(),
                client_token: None,
            },
        )?;
        started += launched.tasks.len();
        if !launched.failures.is_empty() {
            wake_at = Some(now + RETRY);
        }
    }
    if started > 0 {
        tracing::info!(started, "daemon tasks started");
    }
    if !plan.no_room.is_empty() {
        wake_at = Some(wake_at.map_or(now + RETRY, |w| w.min(now + RETRY)));
    }

    // Counts per revision and provider.
    let revision_arns: HashMap<String, String> = views
        .iter()
        .map(|t| t.revision.clone())
        .chain(std::iter::once(target.clone()))
        .filter_map(|id| {
            crate::records::get::<DaemonRevisionRecord>(store, &revision_key(cluster, name, &id))
                .ok()
                .flatten()
                .map(|(r, _)| (id, r.daemon_revision_arn))
        })
        .collect();
    let count = |revision: &str| -> Vec<ProviderCount> {
        d.capacity_provider_arns
            .iter()
            .map(|provider| {
                let mut counted = ProviderCount {
                    arn: provider.clone(),
                    ..Default::default()
                };
                for (host, _) in hosts.values().filter(|(_, p)| p == provider) {
                    let runs = views.iter().any(|t| {
                        t.revision == revision
                            && t.phase == Phase::Running
                            && t.host.as_deref() == Some(host.id.as_str())
                    });
                    let view = host_views.iter().find(|v| v.id == host.id);
                    let eligible =
                        view.is_some_and(|v| v.state == super::daemon::HostState::Eligible);
                    if runs && host.status == HostStatus::Draining {
                        counted.draining += 1;
                    } else if runs {
                        counted.running += 1;
                    } else if eligible && revision == target {
                        counted.without += 1;
                    }
                }
                counted
            })
            .collect()
    };
    let mut in_use: Vec<String> = vec![target.clone()];
    for task in views.iter().filter(|t| t.phase != Phase::Stopped) {
        if !in_use.contains(&task.revision) {
            in_use.push(task.revision.clone());
        }
    }
    d.counts = in_use
        .iter()
        .filter_map(|id| revision_arns.get(id).map(|arn| (arn.clone(), count(id))))
        .collect();

    // The latest deployment: PENDING until its first pass, SUCCESSFUL once every host runs the
    // target alone, STOPPED when the daemon is deleted under it.
    if let Some((mut dep, dep_revision)) = deployment {
        let before = dep.clone();
        dep.target_counts = count(&target);
        match (dep.status, active) {
            (DaemonDeploymentStatus::Pending, true) => {
                dep.status = DaemonDeploymentStatus::InProgress;
                dep.status_reason = "The daemon deployment is in progress.".into();
                dep.started_at = Some(now);
            }
            (DaemonDeploymentStatus::Pending | DaemonDeploymentStatus::InProgress, false) => {
                dep.status = DaemonDeploymentStatus::Stopped;
                dep.status_reason = "The daemon was deleted.".into();
                dep.stopped_at = Some(now);
            }
            _ => {}
        }
        let others_alive = views
            .iter()
            .any(|t| t.revision != target && t.phase != Phase::Stopped);
        let healthy = views
            .iter()
            .filter(|t| t.revision == target && t.healthy)
            .count() as u32;
        if active
            && dep.status == DaemonDeploymentStatus::InProgress
            && !others_alive
            && started == 0
            && plan.stop.is_empty()
            && healthy == plan.desired
        {
            dep.status = DaemonDeploymentStatus::Successful;
            dep.status_reason = "The daemon deployment completed successfully.".into();
            dep.finished_at = Some(now);
        }
        if dep != before {
            crate::records::put(store, &deployment_key, &dep, dep_revision)?;
        }
    }

    let not_stopped = views.iter().any(|t| t.phase != Phase::Stopped);
    if !active && !not_stopped {
        // Deleted and every task stopped: the daemon is gone (its revisions and deployments
        // stay, so their ARNs still describe).
        store.delete(&key, crate::store::Expect::Revision(revision))?;
        return Ok(wake_at);
    }
    if d != daemon {
        crate::records::put(store, &key, &d, revision)?;
    }
    Ok(wake_at)
}
