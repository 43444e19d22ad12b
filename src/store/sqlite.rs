//! The embedded store: one SQLite file (WAL mode), one table of keys, values and revisions, and
//! a global revision counter so that every write has a distinct, increasing revision.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{Change, Expect, Store, StoreError, Versioned};

pub struct SqliteStore {
    connection: Mutex<Connection>,
    changes: broadcast::Sender<Change>,
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
        let connection = Connection::open(path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);",
            )
            .map_err(backend)?;
        Ok(Self {
            connection: Mutex::new(connection),
            changes: broadcast::channel(1024).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Checks `expected` against the current revision of `key` inside a transaction.
fn check(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    expected: Expect,
) -> Result<Option<u64>, StoreError> {
    let current: Option<u64> = tx
        .prepare_cached("SELECT revision FROM kv WHERE key = ?1")
        .map_err(backend)?
        .query_row(params![key], |row| row.get(0))
        .optional()
        .map_err(backend)?;
    let ok = match expected {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Revision(revision) => current == Some(revision),
    };
    if ok {
        Ok(current)
    } else {
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
        })
    }
}

fn next_revision(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
        .map_err(backend)?
        .execute([])
        .map_err(backend)?;
    tx.prepare_cached("SELECT value FROM meta WHERE name = 'revision'")
        .map_err(backend)?
        .query_row([], |row| row.get(0))
        .map_err(backend)
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let connection = self.lock();
        let row: Option<(String, u64)> = connection
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

    fn put(&self, key: &str, value: &Value, expected: Expect) -> Result<u64, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(backend)?;
        check(&tx, key, expected)?;
        let revision = next_revision(&tx)?;
        tx.prepare_cached(
            "INSERT INTO kv (key, value, revision) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
        )
        .map_err(backend)?
        .execute(params![key, value.to_string(), revision])
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let _ = self.changes.send(Change {
            key: key.to_string(),
            value: Some(value.clone()),
            revision,
        });
        Ok(revision)
    }

    fn delete(&self, key: &str, expected: Expect) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(backend)?;
        if check(&tx, key, expected)?.is_none() {
            return Ok(());
        }
        let revision = next_revision(&tx)?;
        tx.prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(backend)?
            .execute(params![key])
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let _ = self.changes.send(Change {
            key: key.to_string(),
            value: None,
            revision,
        });
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let connection = self.lock();
        // Keys are compared as strings: every key with the prefix sorts between the prefix and
        // the prefix followed by the highest character.
        let upper = format!("{prefix}\u{10FFFF}");
        let mut statement = connection
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
        let mut out = Vec::new();
        for row in rows {
            let (key, text, revision) = row.map_err(backend)?;
            out.push((
                key,
                Versioned {
                    value: serde_json::from_str(&text).map_err(backend)?,
                    revision,
                },
            ));
        }
        Ok(out)
    }

    fn watch(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_guard_concurrent_writes_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        let mut watch = store.watch();
        let first = store
            .put("clusters/a", &json!({"n": 1}), Expect::Absent)
            .unwrap();
        assert!(matches!(
            store.put("clusters/a", &json!({"n": 2}), Expect::Absent),
            Err(StoreError::Conflict { .. })
        ));
        let second = store
            .put("clusters/a", &json!({"n": 2}), Expect::Revision(first))
            .unwrap();
        assert!(second > first);
        assert!(
            store
                .put("clusters/a", &json!({"n": 3}), Expect::Revision(first))
                .is_err()
        );
        store
            .put("clusters/b", &json!({"n": 9}), Expect::Any)
            .unwrap();
        store.put("clusterz", &json!({}), Expect::Any).unwrap();
        assert_eq!(watch.try_recv().unwrap().key, "clusters/a");

        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let listed: Vec<String> = store
            .list("clusters/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, ["clusters/a", "clusters/b"]);
        assert_eq!(
            store.get("clusters/a").unwrap().unwrap(),
            Versioned {
                value: json!({"n": 2}),
                revision: second
            }
        );
        store.delete("clusters/a", Expect::Any).unwrap();
        assert!(store.get("clusters/a").unwrap().is_none());
        let next = store.put("x", &json!(1), Expect::Any).unwrap();
        assert!(next > second, "revisions keep increasing across reopen");
    }
}
