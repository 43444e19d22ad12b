//! One suite for every state store engine: what the control plane relies on (compare-and-swap
//! writes, listings at a revision, multi-key transactions, a change feed, leases), run against
//! the embedded SQLite store here. Each case gets an empty store from its backend's `fresh`.

use std::time::{Duration, Instant};

use serde_json::json;
use wasmgate::store::{Expect, Store, StoreError, Txn};

/// Waits (a while, not a deadline that a slow machine could miss) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "{what}: still not so after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .entries
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

pub fn compare_and_swap_guards_every_write(store: &dyn Store) {
    let first = store
        .put("clusters/a", &json!({"n": 1}), Expect::Absent)
        .unwrap();
    assert!(matches!(
        store.put("clusters/a", &json!({"n": 2}), Expect::Absent),
        Err(StoreError::Conflict { ref key, .. }) if key == "clusters/a"
    ));
    let second = store
        .put("clusters/a", &json!({"n": 2}), Expect::Revision(first))
        .unwrap();
    assert!(second > first, "revisions grow: {first} then {second}");
    assert_eq!(
        store.last_committed(),
        second,
        "the store remembers its own newest write"
    );
    assert!(matches!(
        store.put("clusters/a", &json!({"n": 3}), Expect::Revision(first)),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.put("clusters/none", &json!({}), Expect::Present),
        Err(StoreError::Conflict { .. })
    ));
    store
        .put("clusters/a", &json!({"n": 4}), Expect::Present)
        .unwrap();
    let found = store.get("clusters/a").unwrap().unwrap();
    assert_eq!(found.value, json!({"n": 4}));
    assert!(found.revision > second);
    assert!(store.get("clusters/missing").unwrap().is_none());

    // Deletes: as expected, or not at all; a missing key with Any is fine.
    assert!(matches!(
        store.delete("clusters/a", Expect::Revision(first)),
        Err(StoreError::Conflict { .. })
    ));
    store
        .delete("clusters/a", Expect::Revision(found.revision))
        .unwrap();
    assert!(store.get("clusters/a").unwrap().is_none());
    store.delete("clusters/a", Expect::Any).unwrap();
    let after = store.put("x", &json!(1), Expect::Any).unwrap();
    assert!(after > found.revision, "a delete took a revision");
}

pub fn listings_are_by_prefix_in_key_order_at_one_revision(store: &dyn Store) {
    for key in ["clusters/b", "clusters/a", "clusterz", "clusters/a/x", "c"] {
        store.put(key, &json!({"key": key}), Expect::Any).unwrap();
    }
    assert_eq!(
        keys(store, "clusters/"),
        ["clusters/a", "clusters/a/x", "clusters/b"]
    );
    assert!(keys(store, "nothing/").is_empty());
    let listing = store.list("clusters/").unwrap();
    let newest = listing.entries.iter().map(|(_, v)| v.revision).max();
    assert!(
        Some(listing.revision) >= newest,
        "a listing's revision ({}) is at least its newest entry's ({newest:?})",
        listing.revision
    );
    let next = store.put("later", &json!(1), Expect::Any).unwrap();
    assert!(next > listing.revision);
    assert_eq!(store.list("nothing/").unwrap().revision, next);
}

pub fn transactions_apply_all_or_nothing(store: &dyn Store) {
    let a = store.put("t/a", &json!(1), Expect::Absent).unwrap();
    store.put("t/gone", &json!(0), Expect::Absent).unwrap();

    // One condition fails: nothing is written, and the error names the key.
    let failing = Txn::new()
        .when("t/a", Expect::Revision(a))
        .when("t/b", Expect::Present)
        .put("t/a", json!(2))
        .put("t/c", json!(3));
    match store.commit(&failing) {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(key, "t/b"),
        other => panic!("expected a conflict on t/b, got {other:?}"),
    }
    assert_eq!(store.get("t/a").unwrap().unwrap().value, json!(1));
    assert!(store.get("t/c").unwrap().is_none());

    // Every condition holds: every op lands at one revision.
    let mut watch = store.watch();
    let revision = store
        .commit(
            &Txn::new()
                .when("t/a", Expect::Revision(a))
                .when("t/c", Expect::Absent)
                .put("t/a", json!(2))
                .put("t/c", json!(3))
                .delete("t/gone"),
        )
        .unwrap();
    assert_eq!(store.get("t/a").unwrap().unwrap().revision, revision);
    assert_eq!(store.get("t/c").unwrap().unwrap().revision, revision);
    assert!(store.get("t/gone").unwrap().is_none());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let change = next_change(&mut watch);
        assert_eq!(change.revision, revision);
        seen.push((change.key, change.value));
    }
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        seen,
        [
            ("t/a".to_string(), Some(json!(2))),
            ("t/c".to_string(), Some(json!(3))),
            ("t/gone".to_string(), None),
        ]
    );

    // Deleting what is not there changes nothing and takes no revision.
    let now = store.commit(&Txn::new().delete("t/never")).unwrap();
    assert_eq!(now, revision);
}

/// The next change on `watch`, waiting for it a while.
fn next_change(watch: &mut wasmgate::store::Watch) -> wasmgate::store::Change {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match watch.try_recv() {
            Ok(change) => return change,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                assert!(Instant::now() < until, "no change on the feed after 30 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(other) => panic!("the feed failed: {other:?}"),
        }
    }
}

pub fn the_feed_carries_every_change_in_order(store: &dyn Store) {
    let mut watch = store.watch();
    let first = store.put("w/a", &json!(1), Expect::Absent).unwrap();
    let second = store.put("w/b", &json!(2), Expect::Absent).unwrap();
    store.delete("w/a", Expect::Any).unwrap();
    let put_a = next_change(&mut watch);
    assert_eq!(
        (put_a.key.as_str(), put_a.value, put_a.revision),
        ("w/a", Some(json!(1)), first)
    );
    let put_b = next_change(&mut watch);
    assert_eq!((put_b.key.as_str(), put_b.revision), ("w/b", second));
    let deleted = next_change(&mut watch);
    assert_eq!((deleted.key.as_str(), deleted.value), ("w/a", None));
    assert!(deleted.revision > second);

    // Subscribe, then list: what the feed repeats is at or below the listing's revision.
    let mut watch = store.watch();
    store.put("w/c", &json!(3), Expect::Absent).unwrap();
    let listing = store.list("w/").unwrap();
    let change = next_change(&mut watch);
    assert_eq!(change.key, "w/c");
    assert!(change.revision <= listing.revision);
}

pub fn leased_keys_go_with_their_lease(store: &dyn Store) {
    // etcd's shortest lease is about 2 s; a keep-alive every 500 ms holds one.
    let ttl = Duration::from_secs(2);
    let kept = store.grant_lease(ttl).unwrap();
    let lapsing = store.grant_lease(ttl).unwrap();
    let revoked = store.grant_lease(ttl).unwrap();
    store
        .commit(
            &Txn::new()
                .when("l/kept", Expect::Absent)
                .put_with_lease("l/kept", json!("kept"), kept)
                .put_with_lease("l/lapsing", json!("lapsing"), lapsing)
                .put_with_lease("l/revoked", json!("revoked"), revoked)
                .put("l/plain", json!("plain")),
        )
        .unwrap();
    let mut watch = store.watch();
    store.revoke_lease(revoked).unwrap();
    assert!(store.get("l/revoked").unwrap().is_none());
    let change = next_change(&mut watch);
    assert_eq!((change.key.as_str(), change.value), ("l/revoked", None));
    assert!(matches!(
        store.keep_alive(revoked),
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(matches!(
        store.commit(&Txn::new().put_with_lease("l/late", json!(1), revoked)),
        Err(StoreError::LeaseExpired(_))
    ));

    // The kept lease is renewed past several TTLs; the other lapses.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        store.keep_alive(kept).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    eventually("the lapsed lease's key is deleted", || {
        store.keep_alive(kept).unwrap();
        store.get("l/lapsing").unwrap().is_none()
    });
    assert!(store.get("l/kept").unwrap().is_some());
    assert!(store.get("l/plain").unwrap().is_some());
    assert!(matches!(
        store.keep_alive(lapsing),
        Err(StoreError::LeaseExpired(_))
    ));
    store.revoke_lease(kept).unwrap();
    assert!(store.get("l/kept").unwrap().is_none());
}

/// The suite's cases, as one test per case for a backend: `suite!(module, || fresh store)`.
macro_rules! suite {
    ($backend:ident, $fresh:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn compare_and_swap_guards_every_write() {
                let (store, _keep) = $fresh();
                super::compare_and_swap_guards_every_write(&*store);
            }

            #[test]
            fn listings_are_by_prefix_in_key_order_at_one_revision() {
                let (store, _keep) = $fresh();
                super::listings_are_by_prefix_in_key_order_at_one_revision(&*store);
            }

            #[test]
            fn transactions_apply_all_or_nothing() {
                let (store, _keep) = $fresh();
                super::transactions_apply_all_or_nothing(&*store);
            }

            #[test]
            fn the_feed_carries_every_change_in_order() {
                let (store, _keep) = $fresh();
                super::the_feed_carries_every_change_in_order(&*store);
            }

            #[test]
            fn leased_keys_go_with_their_lease() {
                let (store, _keep) = $fresh();
                super::leased_keys_go_with_their_lease(&*store);
            }
        }
    };
}

fn fresh_sqlite() -> (Box<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = wasmgate::store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (Box::new(store), dir)
}

suite!(sqlite, fresh_sqlite);
