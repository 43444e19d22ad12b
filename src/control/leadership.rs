//! One leader among the controller replicas that share a store. Every replica serves the API,
//! the agents and the gateway; the leader alone runs the duties that decide (the service
//! scheduler, the lost-host detector, the expiry of stopped tasks, the schedules' firer).
//!
//! Leading is holding the key [`LEADER_KEY`], written with a lease the leader keeps alive: a
//! leader that dies or is cut off stops renewing, the key goes after the lease's TTL, and a
//! waiting replica takes it. The revision at which a term's key was written is its *fence*:
//! every write of the leader's duties goes through [`Fenced`], which adds the condition "the
//! leader key is still at my fence" to the transaction, so a leader that lost its term without
//! knowing (paused, partitioned) cannot write a decision after its successor took over.
//!
//! Architecture invariant: a decision is written only under the fence of a live term; the
//! store, not this process's belief, says who leads.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::store::{
    Expect, LeaseId, Listing, Store, StoreError, Txn, Versioned, Watch, blocking, renew_every,
};

/// The key the leader holds.
pub const LEADER_KEY: &str = "control/leader";

/// How long a leader that stops renewing keeps its term.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// What the leader key says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Which replica leads.
    pub replica: String,
    /// Its API endpoint, when it has one.
    pub endpoint: Option<String>,
    /// When its term began (epoch seconds).
    pub since: f64,
}

/// The leader key at the revision a term wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub revision: u64,
}

/// A store whose every write holds only while the term of `fence` lasts.
pub struct Fenced {
    inner: Arc<dyn Store>,
    fence: Fence,
}

impl Fenced {
    pub fn new(inner: Arc<dyn Store>, fence: Fence) -> Self {
        Self { inner, fence }
    }
}

impl Store for Fenced {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.inner.list(prefix)
    }

    fn commit(&self, txn: &Txn) -> Result<u64, StoreError> {
        let mut fenced = txn.clone();
        fenced.conditions.insert(
            0,
            (
                self.fence.key.clone(),
                Expect::Revision(self.fence.revision),
            ),
        );
        match self.inner.commit(&fenced) {
            Err(StoreError::Conflict { key, .. }) if key == self.fence.key => {
                Err(StoreError::Deposed { key })
            }
            other => other,
        }
    }

    fn watch(&self) -> Watch {
        self.inner.watch()
    }

    fn last_committed(&self) -> u64 {
        self.inner.last_committed()
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl)
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease)
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease)
    }
}

/// A replica that wants to lead.
pub struct Candidate {
    store: Arc<dyn Store>,
    record: LeaderRecord,
    ttl: Duration,
}

/// A term of leadership: its fence, and a token cancelled when it ends (the lease could not be
/// renewed, or the key is no longer this term's).
pub struct Term {
    pub fence: Fence,
    pub ended: CancellationToken,
    lease: LeaseId,
    store: Arc<dyn Store>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Candidate {
    pub fn new(
        store: Arc<dyn Store>,
        replica: String,
        endpoint: Option<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            record: LeaderRecord {
                replica,
                endpoint,
                since: 0.0,
            },
            ttl,
        }
    }

    /// Waits until this replica leads (`None` on shutdown). While another leads, it tries again
    /// when the leader key goes, and every third of the TTL in case the feed missed that.
    pub async fn campaign(&self, shutdown: &CancellationToken) -> Option<Term> {
        let mut changes = self.store.watch();
        let mut said_who = None;
        loop {
            match blocking(|| self.try_lead()) {
                Ok(Ok((fence, lease))) => {
                    let ended = CancellationToken::new();
                    let keeper = tokio::spawn(keep(
                        self.store.clone(),
                        lease,
                        self.ttl,
                        fence.clone(),
                        ended.clone(),
                    ));
                    return Some(Term {
                        fence,
                        ended,
                        lease,
                        store: self.store.clone(),
                        keeper,
                    });
                }
                Ok(Err(leader)) => {
                    if said_who.as_ref() != Some(&leader.replica) {
                        tracing::info!(leader = %leader.replica, endpoint = ?leader.endpoint, "another replica leads; this one serves and waits");
                        said_who = Some(leader.replica);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot campaign for leadership"),
            }
            let retry = tokio::time::sleep(renew_every(self.ttl));
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = &mut retry => break,
                    change = changes.recv() => match change {
                        Ok(change) if change.key == LEADER_KEY && change.value.is_none() => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        }
    }

    /// One attempt: the term's fence and lease, or who leads instead.
    fn try_lead(&self) -> Result<Result<(Fence, LeaseId), LeaderRecord>, StoreError> {
        if let Some(found) = self.store.get(LEADER_KEY)? {
            let leader = serde_json::from_value(found.value).map_err(|e| {
                StoreError::Backend(format!("{LEADER_KEY}: not a leader record: {e}"))
            })?;
            return Ok(Err(leader));
        }
        let lease = self.store.grant_lease(self.ttl)?;
        let record = LeaderRecord {
            since: crate::records::timestamp(),
            ..self.record.clone()
        };
        let value = serde_json::to_value(&record)
            .map_err(|e| StoreError::Backend(format!("{LEADER_KEY}: {e}")))?;
        let txn = Txn::new()
            .when(LEADER_KEY, Expect::Absent)
            .put_with_lease(LEADER_KEY, value, lease);
        match self.store.commit(&txn) {
            Ok(revision) => Ok(Ok((
                Fence {
                    key: LEADER_KEY.to_string(),
                    revision,
                },
                lease,
            ))),
            Err(error) => {
                let _ = self.store.revoke_lease(lease);
                match error {
                    // Another replica won the race: say who at the next attempt.
                    StoreError::Conflict { .. } => self.try_lead_after_race(),
                    other => Err(other),
                }
            }
        }
    }

    fn try_lead_after_race(&self) -> Result<Result<(Fence, LeaseId), LeaderRecord>, StoreError> {
        match self.store.get(LEADER_KEY)? {
            Some(found) => Ok(Err(serde_json::from_value(found.value).map_err(|e| {
                StoreError::Backend(format!("{LEADER_KEY}: not a leader record: {e}"))
            })?)),
            None => Ok(Err(LeaderRecord {
                replica: "(changing)".into(),
                endpoint: None,
                since: 0.0,
            })),
        }
    }
}

/// Renews the term's lease every third of its TTL until it cannot, or until the key is no
/// longer the term's; then ends the term.
async fn keep(
    store: Arc<dyn Store>,
    lease: LeaseId,
    ttl: Duration,
    fence: Fence,
    ended: CancellationToken,
) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = ended.cancelled() => return,
            () = tokio::time::sleep(renew_every(ttl)) => {}
        }
        let store = store.clone();
        let renewed = tokio::task::spawn_blocking(move || {
            store.keep_alive(lease)?;
            Ok::<_, StoreError>(store.get(LEADER_KEY)?.map(|found| found.revision))
        })
        .await;
        match renewed {
            Ok(Ok(Some(revision))) if revision == fence.revision => {
                last_renewed = tokio::time::Instant::now();
            }
            Ok(Ok(_)) => {
                tracing::warn!("the leader key is no longer this term's; stepping down");
                ended.cancel();
                return;
            }
            Ok(Err(StoreError::LeaseExpired(_))) => {
                tracing::warn!("the leader's lease expired; stepping down");
                ended.cancel();
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot renew the leader's lease");
                // Past the TTL the store has given the term away: stop deciding.
                if last_renewed.elapsed() >= ttl {
                    ended.cancel();
                    return;
                }
            }
            Err(error) => tracing::error!(%error, "renewing the leader's lease panicked"),
        }
    }
}

impl Term {
    /// Ends the term now, so another replica can lead at once (a clean shutdown).
    pub async fn resign(self) {
        self.ended.cancel();
        let _ = self.keeper.await;
        let store = self.store.clone();
        let lease = self.lease;
        let _ = tokio::task::spawn_blocking(move || store.revoke_lease(lease)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;

    fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        (Arc::new(store), dir)
    }

    #[tokio::test]
    async fn one_leads_the_other_waits_and_a_deposed_leader_cannot_write() {
        let (store, _dir) = store();
        let shutdown = CancellationToken::new();
        let ttl = Duration::from_secs(2);
        let a = Candidate::new(store.clone(), "a".into(), None, ttl);
        let b = Candidate::new(store.clone(), "b".into(), None, ttl);
        let term_a = a.campaign(&shutdown).await.unwrap();
        let fenced_a = Fenced::new(store.clone(), term_a.fence.clone());
        fenced_a
            .put("services/x", &json!({"by": "a"}), Expect::Any)
            .unwrap();

        // b waits while a leads; a resigns and b takes over.
        let waiting = tokio::spawn(async move {
            let term = b.campaign(&CancellationToken::new()).await.unwrap();
            (b, term)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "b must not lead while a does");
        term_a.resign().await;
        let (_b, term_b) = waiting.await.unwrap();
        assert!(term_b.fence.revision > 0);

        // a's view of the store is fenced off: its decision is not written.
        assert!(matches!(
            fenced_a.put("services/x", &json!({"by": "stale a"}), Expect::Any),
            Err(StoreError::Deposed { .. })
        ));
        let fenced_b = Fenced::new(store.clone(), term_b.fence.clone());
        fenced_b
            .put("services/x", &json!({"by": "b"}), Expect::Any)
            .unwrap();
        assert_eq!(
            store.get("services/x").unwrap().unwrap().value,
            json!({"by": "b"})
        );
        // A conflict on the record itself is still a conflict, not a deposition.
        assert!(matches!(
            fenced_b.put("services/x", &json!({}), Expect::Absent),
            Err(StoreError::Conflict { .. })
        ));
        term_b.resign().await;
    }

    #[tokio::test]
    async fn a_term_whose_key_goes_ends() {
        let (store, _dir) = store();
        let ttl = Duration::from_secs(2);
        let a = Candidate::new(store.clone(), "a".into(), None, ttl);
        let term = a.campaign(&CancellationToken::new()).await.unwrap();
        // Someone (an operator, a partition healing) takes the key away from under the term.
        store.delete(LEADER_KEY, Expect::Any).unwrap();
        tokio::time::timeout(Duration::from_secs(30), term.ended.cancelled())
            .await
            .expect("the term ends once its key is gone");
    }
}
