//! The state store: every cluster, task definition, task and service lives here, as JSON values
//! under string keys, each with a revision. The API, the scheduler and the console all read and
//! write through it, so they never disagree.
//!
//! Two engines back the one [`Store`] trait: [`SqliteStore`], the embedded default (one file),
//! and [`EtcdStore`] for a control plane of several replicas. What a distributed store needs is in
//! the trait itself, used by both: a listing that says the revision it read, a change feed that
//! says when it missed changes (so its reader lists again), multi-key compare-and-swap
//! transactions, and leases (keys that go when their owner stops renewing them).
//!
//! The calls are blocking: the control plane's decision code (the ECS handlers, the scheduler's
//! pass, the recorder) is synchronous and runs on tokio's blocking pool, never on a runtime
//! worker (see ARCHITECTURE.md, "Why the store is synchronous").
//!
//! Architecture invariant: the store knows keys and JSON, nothing of ECS.

mod etcd;
mod sqlite;

pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

/// A value as it is written and as the change feed carries it: its JSON text, shared.
///
/// Why text and not a parsed [`Value`]: a write serializes its record once (not record →
/// `Value` → text), the feed hands every reader the same allocation instead of a deep copy,
/// and the feed's backlog holds compact text rather than trees of maps. A reader parses
/// straight into the type it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(Arc<str>);

impl Json {
    /// `value` serialized.
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(|text| Self(text.into()))
    }

    /// Text read back from a store, checked to be JSON.
    pub fn parsed_from(text: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(Self(text.into()))
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The value read as a `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Self {
        Self(value.to_string().into())
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        Self(value.to_string().into())
    }
}

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
    /// The key must exist (at any revision).
    Present,
    /// The key must be at this revision.
    Revision(u64),
}

impl Expect {
    /// Whether a key last written at `current` (`None`: absent) is as expected.
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Present => current.is_some(),
            Expect::Revision(revision) => current == Some(revision),
        }
    }
}

/// A lease: keys written with it are deleted when it expires or is revoked. Its owner keeps it
/// alive; a process that dies (or is cut off) stops doing so, and its keys go after the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        key: String,
        value: Json,
        /// The key is deleted with this lease.
        lease: Option<LeaseId>,
    },
    /// Deleting a key that is not there changes nothing.
    Delete { key: String },
}

/// Writes that happen together, or not at all: every condition must hold, then every op is
/// applied at one new revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    pub conditions: Vec<(String, Expect)>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition: `key` must be as `expected`.
    pub fn when(mut self, key: impl Into<String>, expected: Expect) -> Self {
        self.conditions.push((key.into(), expected));
        self
    }

    pub fn put(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }

    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Json>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// Every key under a prefix, and the store's revision when they were read: a change feed
/// subscribed before the listing repeats changes at or below it, which its reader skips.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub entries: Vec<(String, Versioned)>,
    pub revision: u64,
}

impl IntoIterator for Listing {
    type Item = (String, Versioned);
    type IntoIter = std::vec::IntoIter<(String, Versioned)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    /// `None` when the key was deleted.
    pub value: Option<Json>,
    pub revision: u64,
}

/// What a store's change feed carries: a change, or word that changes were missed (an etcd
/// watch that resumed after its history was compacted), after which readers list again.
#[derive(Debug, Clone)]
pub enum Feed {
    Change(Change),
    Missed,
}

/// A change feed from the moment it was made. A reader that falls behind, or whose store
/// missed changes, is told so as [`broadcast`]'s `Lagged`: it must list again. Watches wake
/// readers; they are not their source of truth.
pub struct Watch {
    feed: broadcast::Receiver<Feed>,
    /// Changes at or below this revision are from before the watch was made (a feed that
    /// trails the writes, like etcd's, still carries them) and are skipped.
    after: u64,
}

impl Watch {
    pub fn new(feed: broadcast::Receiver<Feed>) -> Self {
        Self::after(feed, 0)
    }

    /// A watch of the changes above `revision`, the store's revision when it was made.
    pub fn after(feed: broadcast::Receiver<Feed>, revision: u64) -> Self {
        Self {
            feed,
            after: revision,
        }
    }

    pub async fn recv(&mut self) -> Result<Change, broadcast::error::RecvError> {
        loop {
            match self.feed.recv().await? {
                Feed::Change(change) if change.revision <= self.after => {}
                Feed::Change(change) => return Ok(change),
                Feed::Missed => return Err(broadcast::error::RecvError::Lagged(0)),
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<Change, broadcast::error::TryRecvError> {
        loop {
            match self.feed.try_recv()? {
                Feed::Change(change) if change.revision <= self.after => {}
                Feed::Change(change) => return Ok(change),
                Feed::Missed => return Err(broadcast::error::TryRecvError::Lagged(0)),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key was not as the write expected (someone else wrote first).
    #[error("{key}: changed concurrently (expected {expected:?})")]
    Conflict { key: String, expected: Expect },
    /// The lease has expired or was revoked: whatever its owner held under it is gone.
    #[error("lease {0:?} has expired")]
    LeaseExpired(LeaseId),
    /// The write was fenced: it was made for a leader's term that has ended (`key`, the
    /// leader's key, has changed since), so it was not applied.
    #[error("not written: this replica no longer leads ({key} changed)")]
    Deposed { key: String },
    #[error("state store: {0}")]
    Backend(String),
}

/// Durable key-value state with revisions, transactions, leases and a change feed.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Every key starting with `prefix`, in key order, read at one revision.
    fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Applies `txn` if every condition holds; returns the revision it wrote at (the current
    /// revision when it has no op that changes anything). A failed condition is a
    /// [`StoreError::Conflict`] naming its key.
    fn commit(&self, txn: &Txn) -> Result<u64, StoreError>;

    /// Changes from now on.
    fn watch(&self) -> Watch;

    /// The newest revision this process wrote through this store (0 before its first write).
    /// A reader of the feed that has seen it has seen every write of its own (read-your-
    /// writes), however far the feed trails.
    fn last_committed(&self) -> u64;

    /// A new lease that lives `ttl` unless kept alive.
    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews `lease` for another TTL; [`StoreError::LeaseExpired`] if it is already gone.
    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends `lease` now, deleting its keys.
    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Writes `value` under `key` if the key is as `expected`; returns the new revision.
    fn put(&self, key: &str, value: &Value, expected: Expect) -> Result<u64, StoreError> {
        self.commit(&Txn::new().when(key, expected).put(key, value))
    }

    /// Deletes `key` if it is as `expected`; deleting a missing key with `Expect::Any` is fine.
    fn delete(&self, key: &str, expected: Expect) -> Result<(), StoreError> {
        self.commit(&Txn::new().when(key, expected).delete(key))
            .map(|_| ())
    }
}

/// Parses a `--store` value: `sqlite` (the default, a file in the data directory), or
/// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (keys under `/PREFIX/`, by default `/wasmgate/`,
/// so that several control planes, or tests, can share one etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite,
    Etcd {
        endpoints: Vec<String>,
        /// Starts and ends with `/`.
        prefix: String,
    },
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "sqlite" {
            return Ok(StoreUrl::Sqlite);
        }
        let Some(rest) = text.strip_prefix("etcd://") else {
            return Err(format!(
                "--store {text}: expected `sqlite` or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`"
            ));
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(|endpoint| endpoint.trim().to_string())
            .collect();
        if let Some(bad) = endpoints.iter().find(|endpoint| {
            endpoint
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(format!(
                "--store {text}: `{bad}` is not HOST:PORT (etcd's client port, e.g. 127.0.0.1:2379)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            etcd::DEFAULT_PREFIX.to_string()
        } else {
            format!("/{prefix}/")
        };
        Ok(StoreUrl::Etcd { endpoints, prefix })
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite => f.write_str("sqlite"),
            StoreUrl::Etcd { endpoints, prefix } => {
                write!(
                    f,
                    "etcd://{}{}",
                    endpoints.join(","),
                    prefix.trim_end_matches('/')
                )
            }
        }
    }
}

/// The file the embedded store keeps in the data directory.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("state.db")
}

/// Opens the store `url` names: SQLite in `data_dir`, or etcd (failing, naming the
/// endpoints, when no member answers).
pub fn open(url: &StoreUrl, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite => {
            let path = sqlite_path(data_dir);
            let store = SqliteStore::open(&path).map_err(|e| {
                StoreError::Backend(format!(
                    "cannot open the state store {}: {e}",
                    path.display()
                ))
            })?;
            Arc::new(store)
        }
        StoreUrl::Etcd { endpoints, prefix } => Arc::new(open_etcd(endpoints, prefix)?),
    })
}

/// How long a server starting waits for etcd to answer (started together, etcd may not yet
/// have a leader).
const ETCD_START_WAIT: Duration = Duration::from_secs(60);

/// Opens the etcd store, waiting up to [`ETCD_START_WAIT`] while etcd does not answer and
/// saying so every few seconds; then gives up with etcd's last error.
fn open_etcd(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
    let started = std::time::Instant::now();
    let mut said = started;
    loop {
        match EtcdStore::open(endpoints, prefix) {
            Ok(store) => return Ok(store),
            Err(error) if started.elapsed() < ETCD_START_WAIT => {
                if said.elapsed() >= Duration::from_secs(3) {
                    said = std::time::Instant::now();
                    tracing::warn!(%error, "waiting for etcd at {}", endpoints.join(","));
                    eprintln!(
                        "wasmgate: waiting for etcd at {} ({} s): {error}",
                        endpoints.join(","),
                        started.elapsed().as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => return Err(error),
        }
    }
}

/// How long to wait between retries of a lease's keep-alive: a third of its TTL, so two
/// renewals can fail before it lapses.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// Runs `work`, which calls the store, without holding up a runtime worker: on tokio's
/// multi-thread runtime the worker hands its other tasks on for the while
/// (`block_in_place`); elsewhere (a blocking-pool thread, a plain thread, a current-thread
/// test runtime) it just runs. The async edges (the API's handlers, the agents' endpoint) call
/// the synchronous control plane through this.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_sqlite_or_etcd_endpoints_and_a_prefix() {
        let parsed = |text: &str| text.parse::<StoreUrl>();
        assert_eq!(parsed("sqlite"), Ok(StoreUrl::Sqlite));
        let etcd = |endpoints: &[&str], prefix: &str| {
            Ok(StoreUrl::Etcd {
                endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
                prefix: prefix.to_string(),
            })
        };
        assert_eq!(
            parsed("etcd://127.0.0.1:2379"),
            etcd(&["127.0.0.1:2379"], "/wasmgate/")
        );
        assert_eq!(
            parsed("etcd://a:1,b:2/"),
            etcd(&["a:1", "b:2"], "/wasmgate/")
        );
        assert_eq!(
            parsed("etcd://a:1,b:2/t/7/"),
            etcd(&["a:1", "b:2"], "/t/7/")
        );
        assert_eq!(parsed("etcd://a:1/x").unwrap().to_string(), "etcd://a:1/x");
        for bad in [
            "etcd://",
            "etcd://a",
            "etcd://a:1,:2",
            "etcd://a:99999",
            "mysql://a:1",
        ] {
            let error = parsed(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}
