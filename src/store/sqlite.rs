//! The embedded store: one SQLite file (WAL mode), one table of keys, values and revisions, and
//! a global revision counter so that every transaction has a distinct, increasing revision.
//!
//! Leases live in memory: the store belongs to one process, so a lease cannot outlive it. A
//! key written with a lease records it, and opening the file deletes every such key (the
//! process that held the lease is gone). An expired lease's keys go at the next call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

use super::{Change, Feed, LeaseId, Listing, Op, Store, StoreError, Txn, Versioned, Watch};

pub struct SqliteStore {
    state: Mutex<State>,
    changes: broadcast::Sender<Feed>,
    /// The newest revision written through this handle.
    committed: std::sync::atomic::AtomicU64,
}

struct State {
    connection: Connection,
    /// Each live lease's TTL and when it lapses.
    leases: HashMap<i64, (Duration, Instant)>,
    next_lease: i64,
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        // The page cache is capped at 256 KiB (SQLite's default is 2 MiB): the file's pages
        // are in the kernel's page cache anyway, so a miss costs a `pread`, not a disk read;
        // SQLite's own copy of them was ~2 KiB of server memory per task held
        // (`benches/service-scale.sh`, heaptrack: `pcache1Alloc` with 1,000 tasks).
        let connection = Connection::open(path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA cache_size = -256;
                 CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);",
            )
            .map_err(backend)?;
        let has_lease: bool = connection
            .prepare("SELECT 1 FROM pragma_table_info('kv') WHERE name = 'lease'")
            .map_err(backend)?
            .exists([])
            .map_err(backend)?;
        if !has_lease {
            connection
                .execute_batch("ALTER TABLE kv ADD COLUMN lease INTEGER")
                .map_err(backend)?;
        }
        // The leases of the process that wrote these keys died with it.
        connection
            .execute("DELETE FROM kv WHERE lease IS NOT NULL", [])
            .map_err(backend)?;
        Ok(Self {
            state: Mutex::new(State {
                connection,
                leases: HashMap::new(),
                next_lease: 1,
            }),
            changes: broadcast::channel(1024).0,
            committed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The state, with every lapsed lease's keys deleted first.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let lapsed: Vec<i64> = state
            .leases
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(id, _)| *id)
            .collect();
        for lease in lapsed {
            state.leases.remove(&lease);
            self.delete_leased(&mut state, lease)?;
        }
        Ok(state)
    }

    fn delete_leased(&self, state: &mut State, lease: i64) -> Result<(), StoreError> {
        let tx = state.connection.transaction().map_err(backend)?;
        let keys: Vec<String> = tx
            .prepare_cached("SELECT key FROM kv WHERE lease = ?1")
            .map_err(backend)?
            .query_map(params![lease], |row| row.get(0))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        if keys.is_empty() {
            return Ok(());
        }
        let revision = next_revision(&tx)?;
        tx.prepare_cached("DELETE FROM kv WHERE lease = ?1")
            .map_err(backend)?
            .execute(params![lease])
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        for key in keys {
            let _ = self.changes.send(Feed::Change(Change {
                key,
                value: None,
                revision,
            }));
        }
        Ok(())
    }
}

fn current_revision(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<Option<u64>, StoreError> {
    tx.prepare_cached("SELECT revision FROM kv WHERE key = ?1")
        .map_err(backend)?
        .query_row(params![key], |row| row.get(0))
        .optional()
        .map_err(backend)
}

fn store_revision(connection: &Connection) -> Result<u64, StoreError> {
    connection
        .prepare_cached("SELECT value FROM meta WHERE name = 'revision'")
        .map_err(backend)?
        .query_row([], |row| row.get(0))
        .map_err(backend)
}

fn next_revision(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
        .map_err(backend)?
        .execute([])
        .map_err(backend)?;
    store_revision(tx)
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let state = self.lock()?;
        let row: Option<(String, u64)> = state
            .connection
            .prepare_cached("SELECT value, revision FROM kv WHERE key = ?1")
            .map_err(backend)?
            .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(backend)?;
        row.map(|(text, revision)| {
            Ok(Versioned {
                value: serde_json::from_str(&text).map_err(backend)?,
                revision,
            })
        })
        .transpose()
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.lock()?;
        // Keys are compared as strings: every key with the prefix sorts between the prefix and
        // the prefix followed by the highest character.
        let upper = format!("{prefix}\u{10FFFF}");
        let revision = store_revision(&state.connection)?;
        let mut statement = state
            .connection
            .prepare_cached(
                "SELECT key, value, revision FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )
            .map_err(backend)?;
        let rows = statement
            .query_map(params![prefix, upper], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u64>(2)?,
                ))
            })
            .map_err(backend)?;
        let mut entries = Vec::new();
        for row in rows {
            let (key, text, revision) = row.map_err(backend)?;
            entries.push((
                key,
                Versioned {
                    value: serde_json::from_str(&text).map_err(backend)?,
                    revision,
                },
            ));
        }
        Ok(Listing { entries, revision })
    }

    fn commit(&self, txn: &Txn) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
                && !state.leases.contains_key(&lease.0)
            {
                return Err(StoreError::LeaseExpired(*lease));
            }
        }
        let tx = state.connection.transaction().map_err(backend)?;
        for (key, expected) in &txn.conditions {
            if !expected.holds(current_revision(&tx, key)?) {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                });
            }
        }
        // Deletes of keys that are not there change nothing, and a transaction that changes
        // nothing takes no revision.
        let mut effective = Vec::new();
        for op in &txn.ops {
            match op {
                Op::Delete { key } if current_revision(&tx, key)?.is_none() => {}
                op => effective.push(op),
            }
        }
        if effective.is_empty() {
            return store_revision(&tx);
        }
        let revision = next_revision(&tx)?;
        let mut changes = Vec::with_capacity(effective.len());
        for op in effective {
            match op {
                Op::Put { key, value, lease } => {
                    tx.prepare_cached(
                        "INSERT INTO kv (key, value, revision, lease) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                           revision = excluded.revision, lease = excluded.lease",
                    )
                    .map_err(backend)?
                    .execute(params![key, value.text(), revision, lease.map(|l| l.0)])
                    .map_err(backend)?;
                    changes.push(Change {
                        key: key.clone(),
                        value: Some(value.clone()),
                        revision,
                    });
                }
                Op::Delete { key } => {
                    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")
                        .map_err(backend)?
                        .execute(params![key])
                        .map_err(backend)?;
                    changes.push(Change {
                        key: key.clone(),
                        value: None,
                        revision,
                    });
                }
            }
        }
        tx.commit().map_err(backend)?;
        for change in changes {
            let _ = self.changes.send(Feed::Change(change));
        }
        self.committed
            .fetch_max(revision, std::sync::atomic::Ordering::SeqCst);
        Ok(revision)
    }

    fn watch(&self) -> Watch {
        Watch::new(self.changes.subscribe())
    }

    fn last_committed(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let mut state = self.lock()?;
        let id = state.next_lease;
        state.next_lease += 1;
        state.leases.insert(id, (ttl, Instant::now() + ttl));
        Ok(LeaseId(id))
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        match state.leases.get_mut(&lease.0) {
            Some((ttl, until)) => {
                *until = Instant::now() + *ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseExpired(lease)),
        }
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        if state.leases.remove(&lease.0).is_some() {
            self.delete_leased(&mut state, lease.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expect;
    use serde_json::json;

    /// What every engine does is in tests/store.rs; this is what only a file does.
    #[test]
    fn state_and_revisions_survive_reopening_and_leased_keys_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        let written = store
            .put("clusters/a", &json!({"n": 2}), Expect::Absent)
            .unwrap();
        let lease = store.grant_lease(Duration::from_secs(60)).unwrap();
        store
            .commit(&Txn::new().put_with_lease("leader", json!("me"), lease))
            .unwrap();
        drop(store);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get("clusters/a").unwrap().unwrap(),
            Versioned {
                value: json!({"n": 2}),
                revision: written
            }
        );
        assert!(
            store.get("leader").unwrap().is_none(),
            "the lease died with the process that held it"
        );
        let next = store.put("x", &json!(1), Expect::Any).unwrap();
        assert!(next > written, "revisions keep increasing across reopen");
    }
}
