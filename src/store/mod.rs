//! The state store: every cluster, task definition, task and service lives here, as JSON values
//! under string keys, each with a revision. The API, the scheduler and the console all read and
//! write through it, so they never disagree.
//!
//! The trait is deliberately small (get, put-if-revision, delete, list by prefix, watch) so that
//! a distributed engine (etcd) can back a multi-host control plane later; the embedded default
//! is one SQLite file.
//!
//! Architecture invariant: the store knows keys and JSON, nothing of ECS.

mod sqlite;

pub use sqlite::SqliteStore;

use serde_json::Value;
use tokio::sync::broadcast;

/// A stored value and the revision at which it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub value: Value,
    pub revision: u64,
}

/// What a write expects to find, so that concurrent writers cannot overwrite each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must be at this revision.
    Revision(u64),
}

/// One change, as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    /// `None` when the key was deleted.
    pub value: Option<Value>,
    pub revision: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key was not as the write expected (someone else wrote first).
    #[error("{key}: changed concurrently (expected {expected:?})")]
    Conflict { key: String, expected: Expect },
    #[error("state store: {0}")]
    Backend(String),
}

/// Durable key-value state with revisions and a change feed.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` under `key` if the key is as `expected`; returns the new revision.
    fn put(&self, key: &str, value: &Value, expected: Expect) -> Result<u64, StoreError>;
    /// Deletes `key` if it is as `expected`; deleting a missing key with `Expect::Any` is fine.
    fn delete(&self, key: &str, expected: Expect) -> Result<(), StoreError>;
    /// Every key starting with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError>;
    /// Changes from now on. A slow watcher may miss changes (it is told it lagged) and must
    /// then re-list: watches wake the scheduler; they are not its source of truth.
    fn watch(&self) -> broadcast::Receiver<Change>;
}
