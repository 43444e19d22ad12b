//! The hosts' latest memory and CPU reports per task, kept in memory (not in the store: they
//! change every few seconds) for `wasmgate stats`, `/v1/tasks/{id}/stats` and `/metrics`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::capacity::ContainerStats;
use crate::records::timestamp;

/// One report: when (epoch seconds), and each container's stats.
type Report = (f64, Vec<(String, ContainerStats)>);

/// The latest stats of each task's containers, and the report before (for CPU rates).
#[derive(Default)]
pub struct UsageBoard {
    tasks: Mutex<HashMap<String, TaskUsage>>,
}

/// A task's latest report and the one before it.
#[derive(Debug, Clone)]
pub struct TaskUsage {
    /// When the latest report was made.
    pub read: f64,
    latest: Vec<(String, ContainerStats)>,
    previous: Option<Report>,
}

/// One container's figures, as tools show them.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub name: String,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub cpu_seconds: f64,
    /// CPU time over wall time between the last two reports, in percent of one core; `None`
    /// until there are two.
    pub cpu_percent: Option<f64>,
    pub stats: ContainerStats,
    /// The container's stats in the report before the latest.
    pub previous: Option<ContainerStats>,
}

impl TaskUsage {
    pub fn containers(&self) -> Vec<ContainerUsage> {
        self.latest
            .iter()
            .map(|(name, stats)| {
                let previous = self.previous.as_ref().and_then(|(at, containers)| {
                    let (_, before) = containers.iter().find(|(n, _)| n == name)?;
                    Some((*at, *before))
                });
                let cpu_percent = previous.and_then(|(at, before)| {
                    let wall = self.read - at;
                    (wall > 0.0).then(|| {
                        let cpu = stats.cpu_time.saturating_sub(before.cpu_time).as_secs_f64();
                        100.0 * cpu / wall
                    })
                });
                ContainerUsage {
                    name: name.clone(),
                    memory_bytes: stats.memory_bytes,
                    memory_peak_bytes: stats.memory_peak_bytes,
                    cpu_seconds: stats.cpu_time.as_secs_f64(),
                    cpu_percent,
                    stats: *stats,
                    previous: previous.map(|(_, before)| before),
                }
            })
            .collect()
    }
}

impl UsageBoard {
    pub fn update(&self, task_id: &str, containers: Vec<(String, ContainerStats)>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let now = timestamp();
        let previous = tasks
            .remove(task_id)
            .map(|usage| (usage.read, usage.latest));
        tasks.insert(
            task_id.to_string(),
            TaskUsage {
                read: now,
                latest: containers,
                previous,
            },
        );
    }

    pub fn get(&self, task_id: &str) -> Option<TaskUsage> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task_id)
            .cloned()
    }

    /// Forgets a task (it was forgotten by the store).
    pub fn remove(&self, task_id: &str) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }
}
