//! One task per host, as a pure function: the DAEMON scheduling strategy of services and
//! ECS's daemons (`CreateDaemon`) both keep exactly one task on each eligible host. From the
//! hosts (eligible, unreachable or leaving; room for one more task) and the tasks (which host,
//! which revision, how far along), [`place_per_host`] decides which hosts get a task of the
//! target revision and which tasks stop; [`plan_service`] wraps it with a DAEMON service's
//! bookkeeping (desired count, counts, events, rollout, throttling). No I/O, no clock.
//!
//! The rules, as ECS states them for DAEMON:
//! - a task on each ACTIVE container instance that meets the placement constraints (and has
//!   room for it); `desiredCount` is that number of instances;
//! - tasks on instances that no longer meet the constraints, drain, or left are stopped;
//! - a deployment replaces per host: the old task stops first (as far as
//!   `minimumHealthyPercent` allows), then the new one starts there; `maximumPercent` is not
//!   used;
//! - a host whose task is still stopping gets no new one until it has stopped, so a host never
//!   runs two.

use std::collections::{HashMap, HashSet};

use crate::records::StopCode;
use crate::records::service::{
    DeploymentStatus, RolloutState, SchedulerState, Service, ServiceStatus,
};

use super::plan::{Phase, SHORT_RUN, SchedulerSettings};

/// A host as per-host placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub id: String,
    pub state: HostState,
    /// Room for one more task of the target revision (what it already holds counted).
    pub fits: bool,
}

/// Whether a host takes a daemon task.
#[derive(Debug, Clone, PartialEq)]
pub enum HostState {
    /// ACTIVE, connected, in the pool, meets the constraints: it runs one task.
    Eligible,
    /// Not heard from lately: it keeps its task (the lost-host detector stops them if it is
    /// lost) but gets no new one and is not counted.
    Unreachable,
    /// Draining, deregistered, or no longer meeting the constraints: its task stops, for this
    /// reason.
    Leaving(String),
}

/// One of the daemon's (or DAEMON service's) tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTask {
    pub id: String,
    pub host: Option<String>,
    /// The revision (deployment id) that started it.
    pub revision: String,
    pub phase: Phase,
    /// Running and healthy (or running without health checks).
    pub healthy: bool,
    pub started_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub stop_code: Option<StopCode>,
}

impl HostTask {
    fn alive(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Running)
    }

    /// Stopped by itself before it ran [`SHORT_RUN`] seconds (or never ran).
    pub fn failed_start(&self) -> bool {
        if self.phase != Phase::Stopped
            || matches!(
                self.stop_code,
                Some(
                    StopCode::ServiceSchedulerInitiated
                        | StopCode::UserInitiated
                        | StopCode::TerminationNotice
                )
            )
        {
            return false;
        }
        match (self.started_at, self.stopped_at) {
            (Some(started), Some(stopped)) => stopped - started < SHORT_RUN,
            _ => true,
        }
    }
}

/// What per-host placement decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerHost {
    /// Hosts that get a task of the target revision now.
    pub start: Vec<String>,
    /// Tasks to stop, each with its reason.
    pub stop: Vec<(String, String)>,
    /// The hosts that should run a task: eligible and running one already or with room.
    pub desired: u32,
    /// Eligible hosts that run none and have no room for one.
    pub no_room: Vec<String>,
}

/// Why the scheduler stops a task of an old revision.
pub fn replaced_reason(target: &str) -> String {
    format!("Scaling activity initiated by (deployment {target})")
}

/// Decides which hosts get a task of `target` and which tasks stop. `min_healthy_percent`
/// bounds how many healthy tasks of older revisions stop at once; `starts_allowed` is false
/// while failed starts are throttled.
pub fn place_per_host(
    hosts: &[HostView],
    tasks: &[HostTask],
    target: &str,
    min_healthy_percent: u32,
    starts_allowed: bool,
) -> PerHost {
    let mut out = PerHost::default();
    let by_id: HashMap<&str, &HostView> = hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut per_host: HashMap<&str, Vec<&HostTask>> = HashMap::new();
    let mut stopping_on: HashSet<&str> = HashSet::new();
    for task in tasks {
        let Some(host) = task.host.as_deref() else {
            continue;
        };
        match task.phase {
            Phase::Pending | Phase::Running => per_host.entry(host).or_default().push(task),
            Phase::Stopping => {
                stopping_on.insert(host);
            }
            Phase::Stopped => {}
        }
    }
    // Tasks on hosts that leave (or are gone) stop whatever their revision.
    for task in tasks.iter().filter(|t| t.alive()) {
        let reason = match task.host.as_deref().and_then(|h| by_id.get(h)) {
            None => Some("Task stopped because its container instance is gone".to_string()),
            Some(host) => match &host.state {
                HostState::Leaving(reason) => Some(reason.clone()),
                HostState::Eligible | HostState::Unreachable => None,
            },
        };
        if let Some(reason) = reason {
            out.stop.push((task.id.clone(), reason));
        }
    }
    let eligible: Vec<&HostView> = hosts
        .iter()
        .filter(|h| h.state == HostState::Eligible)
        .collect();
    out.desired = eligible
        .iter()
        .filter(|h| h.fits || per_host.contains_key(h.id.as_str()))
        .count() as u32;
    let min_healthy = (out.desired * min_healthy_percent).div_ceil(100);
    let mut healthy = eligible
        .iter()
        .flat_map(|h| per_host.get(h.id.as_str()).into_iter().flatten())
        .filter(|t| t.healthy)
        .count() as u32;
    // Hosts in id order, so that a repeated pass makes the same choices.
    let mut order: Vec<&HostView> = eligible.clone();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    for host in order {
        let mine = per_host.get(host.id.as_str()).cloned().unwrap_or_default();
        let (current, old): (Vec<&HostTask>, Vec<&HostTask>) =
            mine.into_iter().partition(|t| t.revision == target);
        if !current.is_empty() {
            // One per host: keep the one that runs (the oldest), stop the rest.
            let mut current = current;
            current.sort_by(|a, b| {
                (b.phase == Phase::Running)
                    .cmp(&(a.phase == Phase::Running))
                    .then(
                        a.started_at
                            .partial_cmp(&b.started_at)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                    .then(a.id.cmp(&b.id))
            });
            for extra in current.iter().skip(1) {
                out.stop.push((
                    extra.id.clone(),
                    "Task stopped because its container instance runs another task of the \
                     daemon"
                        .to_string(),
                ));
            }
            for task in old {
                out.stop.push((task.id.clone(), replaced_reason(target)));
            }
            continue;
        }
        if !old.is_empty() {
            // Replace in place: the old task goes first, within the healthy minimum.
            for task in old {
                if !task.healthy {
                    out.stop.push((task.id.clone(), replaced_reason(target)));
                } else if healthy > min_healthy {
                    healthy -= 1;
                    out.stop.push((task.id.clone(), replaced_reason(target)));
                }
            }
            continue;
        }
        if stopping_on.contains(host.id.as_str()) {
            continue;
        }
        if !host.fits {
            out.no_room.push(host.id.clone());
        } else if starts_allowed {
            out.start.push(host.id.clone());
        }
    }
    out
}

/// Counts each newly stopped task once in `state`; a failed start raises the throttle (the
/// same doubling delay as replica services). Returns how many failed starts were new.
pub fn account_stopped(
    state: &mut SchedulerState,
    tasks: &[HostTask],
    now: f64,
    settings: &SchedulerSettings,
) -> u32 {
    let stored: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    state.accounted.retain(|id| stored.contains(id.as_str()));
    let mut failures = 0;
    for task in tasks.iter().filter(|t| t.phase == Phase::Stopped) {
        if state.accounted.contains(&task.id) {
            continue;
        }
        state.accounted.push(task.id.clone());
        if task.failed_start() {
            failures += 1;
        }
    }
    // A task that has run for a while shows that starts work again.
    if tasks
        .iter()
        .any(|t| t.phase == Phase::Running && t.started_at.is_some_and(|at| now - at >= SHORT_RUN))
        && failures == 0
    {
        state.start_failures = 0;
        state.not_before = None;
    }
    if failures > 0 {
        state.start_failures += failures;
        let doublings = (state.start_failures - 1).min(16);
        let delay = settings
            .restart_delay_base
            .saturating_mul(1 << doublings)
            .min(settings.restart_delay_cap);
        state.not_before = Some(now + delay.as_secs_f64());
    }
    failures
}

/// One pass of a DAEMON service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// The service record as it should be stored.
    pub service: Service,
    /// (deployment id, task definition ARN) and the hosts that get one of its tasks.
    pub start: Option<(String, String, Vec<String>)>,
    pub stop: Vec<(String, String)>,
    /// Hosts without room for the service's task (for ECS's "unable to place" event).
    pub no_room: Vec<String>,
    pub wake_at: Option<f64>,
}

/// Decides one pass for a DAEMON service over `hosts` (the cluster's hosts its launch type
/// uses, judged against its constraints).
pub fn plan_service(
    service: &Service,
    hosts: &[HostView],
    tasks: &[HostTask],
    now: f64,
    settings: &SchedulerSettings,
) -> ServicePlan {
    let mut s = service.clone();
    let name = s.service_name.clone();
    let failures = account_stopped(&mut s.scheduler, tasks, now, settings);
    if failures > 0 {
        if let Some(primary) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        {
            primary.failed_tasks += failures;
            primary.updated_at = now;
        }
        if s.scheduler.start_failures >= 2 {
            let message =
                format!("(service {name}) is unable to consistently start tasks successfully.");
            if !s
                .events
                .iter()
                .any(|e| e.message == message && now - e.created_at < 60.0)
            {
                s.add_event(now, message);
            }
        }
    }
    let throttled = s.scheduler.not_before.is_some_and(|at| now < at);
    let primary = s.primary().cloned();
    let target = primary.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    let active = s.status == ServiceStatus::Active;
    let mut per_host = if active {
        place_per_host(
            hosts,
            tasks,
            &target,
            s.deployment_configuration.minimum_healthy_percent,
            !throttled,
        )
    } else {
        // Deleted: every task stops.
        PerHost {
            stop: tasks
                .iter()
                .filter(|t| t.alive())
                .map(|t| (t.id.clone(), format!("Service {name} was deleted")))
                .collect(),
            ..PerHost::default()
        }
    };
    let desired = if active { per_host.desired } else { 0 };
    if s.desired_count != desired {
        s.desired_count = desired;
        s.scheduler.steady = false;
    }
    if !per_host.stop.is_empty() {
        let ids: Vec<String> = per_host
            .stop
            .iter()
            .map(|(id, _)| format!("(task {id})"))
            .collect();
        s.add_event(
            now,
            format!(
                "(service {name}) has stopped {} running tasks: {}.",
                ids.len(),
                ids.join(" ")
            ),
        );
    }

    // Counts per deployment and for the service.
    super::plan::count_deployments(
        &mut s,
        tasks.iter().map(|t| (t.revision.as_str(), t.phase)),
        desired,
        now,
    );

    // The rollout completes once every host runs a healthy task of the primary alone.
    let healthy_primary = tasks
        .iter()
        .filter(|t| t.revision == target && t.healthy && !is_listed(&per_host.stop, &t.id))
        .count() as u32;
    let others_alive = tasks
        .iter()
        .any(|t| t.revision != target && t.phase != Phase::Stopped);
    if active
        && !others_alive
        && healthy_primary == desired
        && per_host.start.is_empty()
        && let Some(primary) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        && primary.rollout_state == RolloutState::InProgress
    {
        primary.rollout_state = RolloutState::Completed;
        primary.rollout_state_reason = format!("ECS deployment {} completed.", primary.id);
        primary.updated_at = now;
        let id = primary.id.clone();
        s.add_event(
            now,
            format!("(service {name}) (deployment {id}) deployment completed."),
        );
    }
    if s.primary()
        .is_some_and(|p| p.rollout_state != RolloutState::InProgress)
    {
        s.deployments.retain(|d| {
            d.status == DeploymentStatus::Primary
                || tasks
                    .iter()
                    .any(|t| t.revision == d.id && t.phase != Phase::Stopped)
        });
    }

    let not_stopped = tasks.iter().filter(|t| t.phase != Phase::Stopped).count();
    if s.status == ServiceStatus::Draining && not_stopped == 0 {
        s.status = ServiceStatus::Inactive;
    }
    let wake_at = if throttled {
        s.scheduler.not_before
    } else {
        None
    };
    let start = (!per_host.start.is_empty()).then(|| {
        let definition = primary
            .as_ref()
            .map(|p| p.task_definition.clone())
            .unwrap_or_default();
        (
            target.clone(),
            definition,
            std::mem::take(&mut per_host.start),
        )
    });
    let settled = active
        && s.deployments.len() == 1
        && s.running_count == desired
        && s.pending_count == 0
        && start.is_none()
        && per_host.stop.is_empty();
    if settled && !s.scheduler.steady {
        s.add_event(now, format!("(service {name}) has reached a steady state."));
    }
    s.scheduler.steady = settled;
    ServicePlan {
        service: s,
        start,
        stop: per_host.stop,
        no_room: per_host.no_room,
        wake_at,
    }
}

fn is_listed(stop: &[(String, String)], id: &str) -> bool {
    stop.iter().any(|(listed, _)| listed == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, state: HostState) -> HostView {
        HostView {
            id: id.into(),
            state,
            fits: true,
        }
    }

    fn task(id: &str, host: &str, revision: &str, phase: Phase) -> HostTask {
        HostTask {
            id: id.into(),
            host: Some(host.into()),
            revision: revision.into(),
            phase,
            healthy: phase == Phase::Running,
            started_at: Some(0.0),
            stopped_at: None,
            stop_code: None,
        }
    }

    #[test]
    fn every_eligible_host_gets_one_task() {
        let hosts = [
            host("a", HostState::Eligible),
            host("b", HostState::Eligible),
            host("c", HostState::Unreachable),
        ];
        let tasks = [task("t1", "a", "d1", Phase::Running)];
        let plan = place_per_host(&hosts, &tasks, "d1", 0, true);
        assert_eq!(plan.start, ["b"]);
        assert!(plan.stop.is_empty());
        assert_eq!(plan.desired, 2);
    }

    #[test]
    fn a_host_without_room_is_not_counted_and_gets_nothing() {
        let mut full = host("b", HostState::Eligible);
        full.fits = false;
        let hosts = [host("a", HostState::Eligible), full];
        let plan = place_per_host(&hosts, &[], "d1", 0, true);
        assert_eq!(plan.start, ["a"]);
        assert_eq!(plan.no_room, ["b"]);
        assert_eq!(plan.desired, 1);
    }

    #[test]
    fn tasks_on_leaving_or_vanished_hosts_stop() {
        let hosts = [
            host("a", HostState::Leaving("drained".into())),
            host("b", HostState::Unreachable),
        ];
        let tasks = [
            task("t1", "a", "d1", Phase::Running),
            task("t2", "b", "d1", Phase::Running),
            task("t3", "gone", "d1", Phase::Running),
        ];
        let plan = place_per_host(&hosts, &tasks, "d1", 0, true);
        let stopped: Vec<&str> = plan.stop.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(stopped, ["t1", "t3"]);
        assert_eq!(plan.stop[0].1, "drained");
        assert_eq!(plan.desired, 0);
        assert!(plan.start.is_empty());
    }

    #[test]
    fn a_second_task_on_a_host_stops() {
        let hosts = [host("a", HostState::Eligible)];
        let mut young = task("t2", "a", "d1", Phase::Pending);
        young.started_at = None;
        let tasks = [task("t1", "a", "d1", Phase::Running), young];
        let plan = place_per_host(&hosts, &tasks, "d1", 0, true);
        assert_eq!(plan.stop.len(), 1);
        assert_eq!(plan.stop[0].0, "t2");
    }

    #[test]
    fn a_deployment_replaces_host_by_host_within_the_healthy_minimum() {
        let hosts: Vec<HostView> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| host(id, HostState::Eligible))
            .collect();
        let mut tasks: Vec<HostTask> = ["a", "b", "c", "d"]
            .iter()
            .map(|h| task(&format!("old-{h}"), h, "d1", Phase::Running))
            .collect();
        // 50% of 4 hosts must stay healthy: two old tasks stop, nothing starts yet.
        let plan = place_per_host(&hosts, &tasks, "d2", 50, true);
        assert_eq!(plan.stop.len(), 2);
        assert!(plan.start.is_empty());
        // Once they stopped, their hosts get the new revision; the other two wait.
        for (id, _) in &plan.stop {
            let t = tasks.iter_mut().find(|t| &t.id == id).unwrap();
            t.phase = Phase::Stopping;
        }
        let plan = place_per_host(&hosts, &tasks, "d2", 50, true);
        assert!(
            plan.start.is_empty(),
            "a stopping task still holds its host"
        );
        for t in tasks.iter_mut().filter(|t| t.phase == Phase::Stopping) {
            t.phase = Phase::Stopped;
        }
        let plan = place_per_host(&hosts, &tasks, "d2", 50, true);
        assert_eq!(plan.start, ["a", "b"]);
        assert!(plan.stop.is_empty());
        // New tasks running and healthy: the remaining two are replaced.
        tasks.push(task("new-a", "a", "d2", Phase::Running));
        tasks.push(task("new-b", "b", "d2", Phase::Running));
        let plan = place_per_host(&hosts, &tasks, "d2", 50, true);
        let stopped: Vec<&str> = plan.stop.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(stopped, ["old-c", "old-d"]);
    }

    #[test]
    fn throttled_starts_wait() {
        let hosts = [host("a", HostState::Eligible)];
        let plan = place_per_host(&hosts, &[], "d1", 0, false);
        assert!(plan.start.is_empty());
        assert_eq!(plan.desired, 1);
    }

    fn daemon_service() -> Service {
        use crate::records::LaunchType;
        use crate::records::service::{Deployment, DeploymentConfiguration};
        Service {
            service_arn: "arn:svc".into(),
            service_name: "agent".into(),
            cluster_arn: "arn:cluster".into(),
            status: ServiceStatus::Active,
            desired_count: 0,
            running_count: 0,
            pending_count: 0,
            launch_type: LaunchType::Ec2,
            task_definition: "td:1".into(),
            deployment_configuration: DeploymentConfiguration {
                maximum_percent: 100,
                minimum_healthy_percent: 0,
                ..Default::default()
            },
            deployments: vec![Deployment {
                id: "d1".into(),
                status: DeploymentStatus::Primary,
                task_definition: "td:1".into(),
                desired_count: 0,
                pending_count: 0,
                running_count: 0,
                failed_tasks: 0,
                created_at: 0.0,
                updated_at: 0.0,
                launch_type: LaunchType::Ec2,
                rollout_state: RolloutState::InProgress,
                rollout_state_reason: String::new(),
            }],
            events: Vec::new(),
            created_at: 0.0,
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            health_check_grace_period_seconds: None,
            scheduling_strategy: "DAEMON".into(),
            tags: serde_json::json!([]),
            kept: Default::default(),
            task_sets: Vec::new(),
            history: Default::default(),
            scheduler: SchedulerState::default(),
        }
    }

    #[test]
    fn a_daemon_service_counts_its_hosts_and_completes_when_each_runs_its_task() {
        let settings = SchedulerSettings::default();
        let hosts = [
            host("a", HostState::Eligible),
            host("b", HostState::Eligible),
        ];
        let plan = plan_service(&daemon_service(), &hosts, &[], 100.0, &settings);
        assert_eq!(plan.service.desired_count, 2);
        let (deployment, definition, on) = plan.start.clone().unwrap();
        assert_eq!((deployment.as_str(), definition.as_str()), ("d1", "td:1"));
        assert_eq!(on, ["a", "b"]);
        assert_eq!(plan.service.deployments[0].desired_count, 2);

        let tasks = [
            task("t1", "a", "d1", Phase::Running),
            task("t2", "b", "d1", Phase::Running),
        ];
        let plan = plan_service(&plan.service, &hosts, &tasks, 101.0, &settings);
        assert!(plan.start.is_none() && plan.stop.is_empty());
        assert_eq!(plan.service.running_count, 2);
        assert_eq!(
            plan.service.deployments[0].rollout_state,
            RolloutState::Completed
        );
        assert!(plan.service.scheduler.steady);

        // Deleted: every task stops, then the service is INACTIVE.
        let mut deleted = plan.service.clone();
        deleted.status = ServiceStatus::Draining;
        let plan = plan_service(&deleted, &hosts, &tasks, 102.0, &settings);
        assert_eq!(plan.stop.len(), 2);
        assert_eq!(plan.service.desired_count, 0);
        let stopped: Vec<HostTask> = tasks
            .iter()
            .map(|t| HostTask {
                phase: Phase::Stopped,
                stop_code: Some(StopCode::ServiceSchedulerInitiated),
                ..t.clone()
            })
            .collect();
        let plan = plan_service(&plan.service, &hosts, &stopped, 103.0, &settings);
        assert_eq!(plan.service.status, ServiceStatus::Inactive);
    }

    #[test]
    fn failed_starts_raise_the_throttle_once_each() {
        let settings = SchedulerSettings::default();
        let mut state = SchedulerState::default();
        let mut failed = task("t1", "a", "d1", Phase::Stopped);
        failed.stopped_at = Some(1.0);
        let tasks = [failed];
        assert_eq!(account_stopped(&mut state, &tasks, 2.0, &settings), 1);
        assert_eq!(state.start_failures, 1);
        assert!(state.not_before.is_some_and(|at| at > 2.0));
        assert_eq!(account_stopped(&mut state, &tasks, 3.0, &settings), 0);
        assert_eq!(state.start_failures, 1);
    }
}
