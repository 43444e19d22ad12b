//! The scheduler's view of the stored tasks, kept from the store's change feed instead of a
//! full list (and a JSON parse of every task) on every pass: during a ramp of a thousand
//! tasks the passes were spending most of their time re-reading what had not changed.
//!
//! Architecture invariant: the view is a consistent prefix of the store's changes. It
//! subscribes before its first full list and applies a change only when it is newer than
//! what it holds (revisions are global and increasing), so an old change delivered after the
//! list never wins; a lagged subscription lists everything again. Before a pass it drains the
//! feed until it has seen the newest revision this process wrote (`Store::last_committed`:
//! SQLite's feed has it before the write returns; etcd's trails by a moment), so a pass sees
//! every write the scheduler itself made (read-your-writes); other replicas' writes come at
//! the feed's pace, as they would to any reader. A feed that does not get there in time is
//! replaced by a full list.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::TryRecvError;

use crate::records::TaskRecord;
use crate::store::{Change, Store, StoreError, Watch};

/// Every stored task, with the revision it was read at.
pub struct TaskIndex {
    tasks: HashMap<String, (u64, Arc<TaskRecord>)>,
    changes: Watch,
    /// Whether a full list is due (first use, or the feed lagged).
    stale: bool,
    /// The newest revision the index has seen, on the feed or in a listing.
    seen: u64,
}

/// How long a pass waits for the feed to bring the store's latest writes before listing.
const FEED_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl TaskIndex {
    /// An index of `store`'s tasks; it reads them at the first [`catch_up`](Self::catch_up).
    pub fn new(store: &dyn Store) -> Self {
        Self {
            tasks: HashMap::new(),
            changes: store.watch(),
            stale: true,
            seen: 0,
        }
    }

    /// Applies every change waiting on the feed until it has seen every write this process
    /// made (or lists everything again when it lagged or trails too long).
    pub fn catch_up(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let current = store.last_committed();
        let until = std::time::Instant::now() + FEED_WITHIN;
        loop {
            loop {
                match self.changes.try_recv() {
                    Ok(change) => {
                        self.seen = self.seen.max(change.revision);
                        if !self.stale {
                            self.apply(change);
                        }
                    }
                    Err(TryRecvError::Lagged(_)) => self.stale = true,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                }
            }
            if self.stale || self.seen >= current {
                break;
            }
            if std::time::Instant::now() >= until {
                tracing::debug!(
                    seen = self.seen,
                    current,
                    "the feed trails; listing the tasks"
                );
                self.stale = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if self.stale {
            self.relist(store)?;
        }
        Ok(())
    }

    /// The tasks as of the last catch-up, in no order, each without the members the
    /// scheduler never reads (see [`slim`]).
    pub fn tasks(&self) -> impl Iterator<Item = &Arc<TaskRecord>> {
        self.tasks.values().map(|(_, task)| task)
    }

    fn relist(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let mut tasks = HashMap::new();
        let listing = store.list(crate::records::TASKS)?;
        self.seen = self.seen.max(listing.revision);
        for (key, found) in listing {
            match serde_json::from_value::<TaskRecord>(found.value) {
                Ok(task) => {
                    tasks.insert(key, (found.revision, Arc::new(slim(task))));
                }
                Err(error) => tracing::warn!(%key, %error, "a stored task is not a task record"),
            }
        }
        self.tasks = tasks;
        self.stale = false;
        Ok(())
    }

    fn apply(&mut self, change: Change) {
        if !change.key.starts_with(crate::records::TASKS) {
            return;
        }
        if let Some((held, _)) = self.tasks.get(&change.key)
            && *held >= change.revision
        {
            return;
        }
        match change.value {
            None => {
                self.tasks.remove(&change.key);
            }
            Some(value) => match value.parse::<TaskRecord>() {
                Ok(task) => {
                    self.tasks
                        .insert(change.key, (change.revision, Arc::new(slim(task))));
                }
                Err(error) => {
                    tracing::warn!(key = %change.key, %error, "a stored task is not a task record");
                }
            },
        }
    }
}

/// A task as the scheduler decides on it: without its containers and ECS's other members
/// (`shape`: overrides, attachments, tags, ...), which no pass reads. They were nine tenths of
/// the index's memory, the largest part of the server's for an idle task.
fn slim(mut task: TaskRecord) -> TaskRecord {
    task.containers = Vec::new();
    task.shape = serde_json::Map::new();
    task
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, SqliteStore};
    use serde_json::{Value, json};

    fn task(id: &str, status: &str) -> Value {
        json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:0:task/default/{id}"),
            "clusterArn": "arn:aws:ecs:us-east-1:0:cluster/default", "createdAt": 1.0,
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:0:task-definition/app:1",
            "lastStatus": status, "desiredStatus": "RUNNING", "group": "service:web",
        })
    }

    fn statuses(index: &TaskIndex) -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = index
            .tasks()
            .map(|t| (t.id().to_string(), t.last_status.as_str().to_string()))
            .collect();
        seen.sort();
        seen
    }

    #[test]
    fn the_index_follows_writes_before_and_after_it_first_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store
            .put("tasks/a", &task("a", "PENDING"), Expect::Any)
            .unwrap();
        let mut index = TaskIndex::new(&store);
        // Written after it subscribed but before it listed: seen once, not applied twice.
        store
            .put("tasks/b", &task("b", "PENDING"), Expect::Any)
            .unwrap();
        index.catch_up(&store).unwrap();
        assert_eq!(
            statuses(&index),
            [
                ("a".into(), "PENDING".into()),
                ("b".into(), "PENDING".into())
            ]
        );
        // What the scheduler (or anyone) writes is there at the next catch-up.
        store
            .put("tasks/a", &task("a", "RUNNING"), Expect::Any)
            .unwrap();
        store.delete("tasks/b", Expect::Any).unwrap();
        store.put("services/x", &json!({}), Expect::Any).unwrap();
        index.catch_up(&store).unwrap();
        assert_eq!(statuses(&index), [("a".into(), "RUNNING".into())]);
    }

    #[test]
    fn a_lagged_feed_lists_everything_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let mut index = TaskIndex::new(&store);
        index.catch_up(&store).unwrap();
        // More changes than the feed holds.
        for i in 0..1100 {
            store
                .put(
                    &format!("tasks/t{i:04}"),
                    &task(&format!("t{i:04}"), "PENDING"),
                    Expect::Any,
                )
                .unwrap();
        }
        index.catch_up(&store).unwrap();
        assert_eq!(index.tasks().count(), 1100);
    }
}
