//! One pass for a service whose deployment controller is EXTERNAL: each task set keeps
//! `computedDesiredCount` = ⌈desiredCount × scale%⌉ tasks (none once DRAINING), independently
//! of the others (the external controller decides how traffic and counts move between them).
//! Unhealthy tasks past the grace period and tasks on a DRAINING host are replaced, a
//! scale-in stops pending tasks first, then the youngest, and never a protected one. Failed
//! starts throttle the service as a deployment's do. One task set starts tasks per pass; when
//! another lacks some too, the next pass is due at once.

use super::{
    DRAINING_HOST_REASON, Health, Phase, Plan, SchedulerSettings, TaskView, UNHEALTHY_REASON,
    account_stopped, is_listed,
};
use crate::records::service::task_set::{StabilityStatus, TaskSetStatus};
use crate::records::service::{Service, ServiceStatus};

pub fn plan(service: &Service, tasks: &[TaskView], now: f64, settings: &SchedulerSettings) -> Plan {
    let mut s = service.clone();
    let name = s.service_name.clone();
    account_stopped(&mut s, tasks, now, settings);
    let desired = if s.status == ServiceStatus::Active {
        s.desired_count
    } else {
        0
    };
    // A task of the set that has run for a while shows the service can start tasks again.
    if tasks.iter().any(|t| {
        t.phase == Phase::Running && t.started_at.is_some_and(|at| now - at >= super::SHORT_RUN)
    }) {
        s.scheduler.start_failures = 0;
        s.scheduler.not_before = None;
    }
    let throttled = s.scheduler.not_before.is_some_and(|at| now < at);
    let grace = f64::from(s.health_check_grace_period_seconds.unwrap_or(0));
    let mut stop: Vec<(String, String)> = Vec::new();
    let mut start = None;
    let mut wake_at: Option<f64> = None;
    let soonest = |at: f64, wake_at: &mut Option<f64>| {
        *wake_at = Some(wake_at.map_or(at, |w: f64| w.min(at)));
    };

    // Tasks of no task set (deleted ones) stop.
    for task in tasks.iter().filter(|t| t.alive()) {
        if !s.task_sets.iter().any(|set| set.id == task.deployment) {
            stop.push((task.id.clone(), "Task set deleted".to_string()));
        }
    }

    for set in &mut s.task_sets {
        let computed = if set.status == TaskSetStatus::Draining {
            0
        } else {
            set.scale.of(desired)
        };
        let reason = format!("Scaling activity initiated by (task set {})", set.id);
        let mine: Vec<&TaskView> = tasks.iter().filter(|t| t.deployment == set.id).collect();
        for task in mine.iter().filter(|t| t.alive()) {
            if task.on_draining_host {
                stop.push((task.id.clone(), DRAINING_HOST_REASON.to_string()));
            } else if task.phase == Phase::Running && task.health == Health::Unhealthy {
                let ends = task.started_at.unwrap_or(now) + grace;
                if now < ends {
                    soonest(ends, &mut wake_at);
                } else {
                    stop.push((task.id.clone(), UNHEALTHY_REASON.to_string()));
                }
            }
        }
        let mut alive: Vec<&TaskView> = mine
            .iter()
            .copied()
            .filter(|t| t.alive() && !is_listed(&stop, &t.id))
            .collect();
        if alive.len() as u32 > computed {
            // Pending first, then the youngest; protected tasks wait.
            alive.sort_by(|a, b| {
                (a.phase == Phase::Running)
                    .cmp(&(b.phase == Phase::Running))
                    .then(
                        b.started_at
                            .partial_cmp(&a.started_at)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
            });
            let mut excess = alive.len() - computed as usize;
            for task in &alive {
                if excess == 0 {
                    break;
                }
                if task.protected(now) {
                    soonest(task.protected_until.unwrap_or(now), &mut wake_at);
                    continue;
                }
                stop.push((task.id.clone(), reason.clone()));
                excess -= 1;
            }
        }
        let alive = alive.iter().filter(|t| !is_listed(&stop, &t.id)).count() as u32;
        let lacking = computed.saturating_sub(alive);
        if lacking > 0 && s.status == ServiceStatus::Active {
            if throttled {
                if let Some(at) = s.scheduler.not_before {
                    soonest(at, &mut wake_at);
                }
            } else if start.is_none() {
                start = Some((set.id.clone(), set.task_definition.clone(), lacking));
            } else {
                soonest(now, &mut wake_at);
            }
        }

        let running = mine.iter().filter(|t| t.phase == Phase::Running).count() as u32;
        let pending = mine.iter().filter(|t| t.phase == Phase::Pending).count() as u32;
        let winding_down = mine.iter().any(|t| t.phase == Phase::Stopping);
        let steady = running == computed && pending == 0 && !winding_down && lacking == 0;
        let stability = if steady {
            StabilityStatus::SteadyState
        } else {
            StabilityStatus::Stabilizing
        };
        if (
            set.computed_desired_count,
            set.running_count,
            set.pending_count,
        ) != (computed, running, pending)
        {
            set.computed_desired_count = computed;
            set.running_count = running;
            set.pending_count = pending;
            set.updated_at = now;
        }
        if set.stability_status != stability {
            set.stability_status = stability;
            set.stability_status_at = now;
            set.updated_at = now;
        }
    }

    // A DRAINING task set goes once its last task has stopped.
    s.task_sets.retain(|set| {
        set.status != TaskSetStatus::Draining
            || tasks
                .iter()
                .any(|t| t.deployment == set.id && t.phase != Phase::Stopped)
    });

    if !stop.is_empty() {
        let ids: Vec<String> = stop.iter().map(|(id, _)| format!("(task {id})")).collect();
        s.add_event(
            now,
            format!(
                "(service {name}) has stopped {} running tasks: {}.",
                stop.len(),
                ids.join(" ")
            ),
        );
    }
    let not_stopped = tasks.iter().filter(|t| t.phase != Phase::Stopped).count();
    s.running_count = s.task_sets.iter().map(|t| t.running_count).sum();
    s.pending_count = s.task_sets.iter().map(|t| t.pending_count).sum();
    if s.status == ServiceStatus::Draining && not_stopped == 0 {
        s.status = ServiceStatus::Inactive;
    }
    let settled = s.status == ServiceStatus::Active
        && s.task_sets
            .iter()
            .all(|t| t.stability_status == StabilityStatus::SteadyState)
        && start.is_none()
        && stop.is_empty();
    super::finish(s, settled, start, stop, wake_at, now)
}
