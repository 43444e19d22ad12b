//! The agent as a service: it converges on the set of tasks the controller wants on this host
//! (starting what it does not run, stopping what it should not) and reports each task's life,
//! its stats and a heartbeat. The messages ([`crate::protocol`]) are the same whether the
//! controller is in this process or on another host.
//!
//! Architecture invariant: the agent acts on the latest desired set only, never on a message
//! by itself: a set that arrives twice, late, or not at all (a newer one does) leaves the host
//! as the newest set says. A task it already ran is never started again under the same id.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::task::{
    RunningTask, StopCode, TaskEvent, TaskOutcome, TaskRequest, TaskRunner, TimedEvent,
};
use crate::capacity::Tee;
use crate::protocol::{AgentReport, Desired, DesiredTasks, Heartbeat, TaskLogs};
use crate::taskdef::TaskDefinition;

/// How often the agent reports each running task's memory and CPU, with a heartbeat.
pub const STATS_EVERY: Duration = Duration::from_secs(2);
/// How often a remote agent ships new task output.
const SHIP_LOGS_EVERY: Duration = Duration::from_millis(250);

/// The agent's ends of its link to the controller.
pub struct AgentLink {
    /// The latest desired set.
    pub desired: watch::Receiver<Arc<DesiredTasks>>,
    /// Where reports go, in order.
    pub reports: mpsc::UnboundedSender<AgentReport>,
    /// Task output to ship with the reports (an agent that does not share the controller's
    /// log directory).
    pub ship_logs: Option<crate::logs::LogStore>,
    /// Where the agent shows the ids of the tasks it runs (its introspection endpoint).
    pub running: Option<watch::Sender<Vec<String>>>,
}

/// Runs the agent until `shutdown`: converges on every desired set, reports every task's
/// steps as they happen and every `stats_every` its stats and a heartbeat. On shutdown, stops
/// every task it runs (each with its stopTimeout) and waits for them.
pub async fn run_agent(
    runner: Arc<TaskRunner>,
    mut link: AgentLink,
    image_base_dir: PathBuf,
    stats_every: Duration,
    shutdown: CancellationToken,
) {
    let (events, mut events_rx) = mpsc::unbounded_channel::<TimedEvent>();
    let mut agent = Agent {
        runner,
        image_base_dir,
        events,
        running: HashMap::new(),
        finished: HashSet::new(),
        definitions: HashMap::new(),
        converged: (String::new(), 0),
        log_cursors: HashMap::new(),
    };
    let mut report = tokio::time::interval(stats_every);
    let mut ship = tokio::time::interval(SHIP_LOGS_EVERY);
    let desired = link.desired.borrow_and_update().clone();
    agent.converge(&desired);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = link.desired.changed() => {
                if changed.is_err() {
                    break;
                }
                let desired = link.desired.borrow_and_update().clone();
                agent.converge(&desired);
                agent.show_running(link.running.as_ref());
            }
            Some(event) = events_rx.recv() => {
                let mut batch = vec![event];
                while let Ok(event) = events_rx.try_recv() {
                    batch.push(event);
                }
                let logs = agent.logs_before(&batch, link.ship_logs.as_ref());
                let _ = link.reports.send(AgentReport { events: batch, heartbeat: None, logs });
            }
            _ = ship.tick(), if link.ship_logs.is_some() => {
                let logs = agent.new_logs(link.ship_logs.as_ref(), false);
                if !logs.is_empty() {
                    let _ = link.reports.send(AgentReport { logs, ..AgentReport::default() });
                }
            }
            _ = report.tick() => {
                // Every step already reported goes first, so a task that just ended is never
                // taken for one the agent lost.
                let mut batch = Vec::new();
                while let Ok(event) = events_rx.try_recv() {
                    batch.push(event);
                }
                agent.reap();
                let logs = agent.logs_before(&batch, link.ship_logs.as_ref());
                let now = std::time::SystemTime::now();
                for (task_id, task) in &agent.running {
                    batch.push(TimedEvent {
                        at: now,
                        event: TaskEvent::Stats { task_id: task_id.clone(), containers: task.stats() },
                    });
                }
                agent.show_running(link.running.as_ref());
                let heartbeat = Heartbeat {
                    session: agent.converged.0.clone(),
                    generation: agent.converged.1,
                    running: agent.running.keys().cloned().collect(),
                };
                let _ = link.reports.send(AgentReport { events: batch, heartbeat: Some(heartbeat), logs });
            }
        }
    }
    for task in agent.running.values() {
        task.stop("the agent is shutting down");
    }
    for task in agent.running.values() {
        task.wait().await;
    }
    // The last steps of the tasks it stopped.
    let mut batch = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        batch.push(event);
    }
    if !batch.is_empty() {
        let logs = agent.logs_before(&batch, link.ship_logs.as_ref());
        let _ = link.reports.send(AgentReport {
            events: batch,
            heartbeat: None,
            logs,
        });
    }
}

/// The agent's own state.
struct Agent {
    runner: Arc<TaskRunner>,
    image_base_dir: PathBuf,
    events: mpsc::UnboundedSender<TimedEvent>,
    running: HashMap<String, RunningTask>,
    /// Tasks that ran here and ended, while the desired set still names them.
    finished: HashSet<String>,
    /// Parsed task definitions by ARN (revisions never change).
    definitions: HashMap<String, Arc<TaskDefinition>>,
    /// The desired set last converged on: (session, generation).
    converged: (String, u64),
    /// The last log record shipped, per task.
    log_cursors: HashMap<String, u64>,
}

impl Agent {
    fn show_running(&self, to: Option<&watch::Sender<Vec<String>>>) {
        if let Some(to) = to {
            let mut ids: Vec<String> = self.running.keys().cloned().collect();
            ids.sort();
            to.send_if_modified(|shown| {
                let changed = *shown != ids;
                *shown = ids;
                changed
            });
        }
    }

    /// Moves tasks that ended from `running` to `finished`.
    fn reap(&mut self) {
        let ended: Vec<String> = self
            .running
            .iter()
            .filter(|(_, task)| task.try_outcome().is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.running.remove(&id);
            self.finished.insert(id);
        }
    }

    /// Starts, stops and forgets tasks so that this host runs what `desired` says.
    fn converge(&mut self, desired: &DesiredTasks) {
        self.reap();
        let named: HashSet<&str> = desired.tasks.iter().map(|t| t.task_id.as_str()).collect();
        for (task_id, task) in &self.running {
            if !named.contains(task_id.as_str()) {
                task.stop("Task stopped because the controller no longer places it on this host");
            }
        }
        self.finished.retain(|id| named.contains(id.as_str()));
        self.definitions
            .retain(|arn, _| desired.definitions.contains_key(arn));
        for task in &desired.tasks {
            match &task.desired {
                Desired::Stopped { reason } => {
                    if let Some(running) = self.running.get(&task.task_id) {
                        running.stop(reason.clone());
                    }
                }
                Desired::Running => {
                    if self.running.contains_key(&task.task_id)
                        || self.finished.contains(&task.task_id)
                    {
                        continue;
                    }
                    match self.definition(desired, &task.task_definition_arn) {
                        Ok(definition) => {
                            let running = self.runner.start(TaskRequest {
                                task_id: task.task_id.clone(),
                                definition,
                                overrides: task.overrides.clone(),
                                image_base_dir: self.image_base_dir.clone(),
                                tee: Tee::None,
                                events: Some(self.events.clone()),
                            });
                            self.running.insert(task.task_id.clone(), running);
                        }
                        Err(why) => {
                            tracing::warn!(task_id = %task.task_id, %why, "cannot start a task");
                            self.finished.insert(task.task_id.clone());
                            let _ = self.events.send(TimedEvent {
                                at: std::time::SystemTime::now(),
                                event: TaskEvent::Stopped {
                                    outcome: TaskOutcome {
                                        task_id: task.task_id.clone(),
                                        stop_code: StopCode::TaskFailedToStart,
                                        stopped_reason: format!("CannotStartContainerError: {why}"),
                                        containers: Vec::new(),
                                        deciding_container: None,
                                    },
                                },
                            });
                        }
                    }
                }
            }
        }
        self.converged = (desired.session.clone(), desired.generation);
    }

    fn definition(
        &mut self,
        desired: &DesiredTasks,
        arn: &str,
    ) -> Result<Arc<TaskDefinition>, String> {
        if let Some(found) = self.definitions.get(arn) {
            return Ok(found.clone());
        }
        let document = desired
            .definitions
            .get(arn)
            .ok_or_else(|| format!("the controller sent no task definition {arn}"))?;
        let definition = TaskDefinition::from_value((**document).clone())
            .map_err(|e| format!("task definition {arn} does not validate here: {e}"))?;
        let definition = Arc::new(definition);
        self.definitions.insert(arn.to_string(), definition.clone());
        Ok(definition)
    }

    /// Output to ship before `events`: a task's every record goes before its Stopped report.
    fn logs_before(
        &mut self,
        events: &[TimedEvent],
        store: Option<&crate::logs::LogStore>,
    ) -> Vec<TaskLogs> {
        if store.is_none()
            || !events
                .iter()
                .any(|e| matches!(e.event, TaskEvent::Stopped { .. }))
        {
            return Vec::new();
        }
        let mut logs = self.new_logs(store, true);
        for event in events {
            if let TaskEvent::Stopped { outcome } = &event.event {
                self.log_cursors.remove(&outcome.task_id);
                if let Some(store) = store {
                    store.remove(&outcome.task_id);
                }
            }
        }
        logs.retain(|l| !l.records.is_empty());
        logs
    }

    /// Records written since the last shipment, of every task this agent runs (and of
    /// finished ones when `all`).
    fn new_logs(&mut self, store: Option<&crate::logs::LogStore>, all: bool) -> Vec<TaskLogs> {
        let Some(store) = store else {
            return Vec::new();
        };
        let ids: Vec<String> = if all {
            self.running
                .keys()
                .chain(self.finished.iter())
                .cloned()
                .collect()
        } else {
            self.running.keys().cloned().collect()
        };
        let mut shipped = Vec::new();
        for task_id in ids {
            let after = self.log_cursors.get(&task_id).copied().unwrap_or(0);
            let Ok(page) = store.read(&task_id, after) else {
                continue;
            };
            if page.records.is_empty() {
                continue;
            }
            self.log_cursors.insert(task_id.clone(), page.next);
            shipped.push(TaskLogs {
                task_id,
                records: page.records,
            });
        }
        shipped
    }
}
