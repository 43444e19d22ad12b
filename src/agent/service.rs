//! The agent as a service: it takes assignments (start this task, stop that one) from the
//! controller and reports each task's life back as events. Both directions are messages, so
//! the agent can move to another host later; today both ends live in one process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::task::{ContainerOverride, RunningTask, TaskEvent, TaskEvents, TaskRequest, TaskRunner};
use crate::capacity::Tee;
use crate::taskdef::TaskDefinition;

/// What the controller asks of an agent.
#[derive(Debug)]
pub enum Assignment {
    Start {
        task_id: String,
        definition: Box<TaskDefinition>,
        overrides: Vec<ContainerOverride>,
    },
    Stop {
        task_id: String,
        reason: String,
    },
}

/// How often the agent reports each running task's memory and CPU.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

/// Runs assignments until `shutdown`, reporting every running task's stats every
/// `stats_every`; on shutdown, stops every task it runs (each with its stopTimeout) and waits.
pub async fn run_agent(
    runner: Arc<TaskRunner>,
    mut assignments: mpsc::UnboundedReceiver<Assignment>,
    events: TaskEvents,
    image_base_dir: PathBuf,
    stats_every: Duration,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<String, RunningTask> = HashMap::new();
    let mut report = tokio::time::interval(stats_every);
    loop {
        let assignment = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = report.tick() => {
                running.retain(|_, task| task.try_outcome().is_none());
                for (task_id, task) in &running {
                    let _ = events.send(super::task::TimedEvent {
                        at: std::time::SystemTime::now(),
                        event: TaskEvent::Stats { task_id: task_id.clone(), containers: task.stats() },
                    });
                }
                // Sent after every Stopped report of a task no longer in `running`, so the
                // controller never takes a task that just ended for a lost one.
                let _ = events.send(super::task::TimedEvent {
                    at: std::time::SystemTime::now(),
                    event: TaskEvent::Heartbeat { running: running.keys().cloned().collect() },
                });
                continue;
            }
            assignment = assignments.recv() => match assignment {
                Some(assignment) => assignment,
                None => break,
            },
        };
        running.retain(|_, task| task.try_outcome().is_none());
        match assignment {
            Assignment::Start {
                task_id,
                definition,
                overrides,
            } => {
                let task = runner.start(TaskRequest {
                    task_id: task_id.clone(),
                    definition: *definition,
                    overrides,
                    image_base_dir: image_base_dir.clone(),
                    tee: Tee::None,
                    events: Some(events.clone()),
                });
                running.insert(task_id, task);
            }
            Assignment::Stop { task_id, reason } => match running.get(&task_id) {
                Some(task) => task.stop(reason),
                None => tracing::debug!(%task_id, "stop for a task this agent does not run"),
            },
        }
    }
    for task in running.values() {
        task.stop("the agent is shutting down");
    }
    for task in running.values() {
        task.wait().await;
    }
}
