//! One suite for every state store engine: what the control plane relies on (compare-and-swap
//! writes, listings at a revision, multi-key transactions, a change feed, leases), run against
//! the embedded SQLite store and against a real etcd. Each case gets an empty store from its
//! backend's `fresh`. Then what only etcd does: a feed that resumes after a cut connection and
//! says when its history was compacted, and a store that outlives one of three members.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::etcd::{Etcd, Proxy};
use serde_json::{Value, json};
use wasmgate::store::{EtcdStore, Expect, Json, Store, StoreError, Txn};

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
        seen.push((
            change.key,
            change.value.map(|v| v.parse::<Value>().unwrap()),
        ));
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
        ("w/a", Some(Json::from(json!(1))), first)
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

/// One etcd for the whole test binary, each case under a prefix of its own. The cases take
/// turns: some assert on the store-wide revision (a write that changes nothing takes none),
/// which another case writing to the same etcd at the same time would move.
static SHARED_ETCD: OnceLock<Etcd> = OnceLock::new();
static ETCD_TURN: Mutex<()> = Mutex::new(());

/// Holds a case's turn on the shared etcd; prints etcd's log if the case failed.
struct EtcdCase {
    _turn: MutexGuard<'static, ()>,
    etcd: &'static Etcd,
}

impl Drop for EtcdCase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.etcd.print_logs();
        }
    }
}

fn shared_etcd() -> EtcdCase {
    let turn = ETCD_TURN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    EtcdCase {
        _turn: turn,
        etcd: SHARED_ETCD.get_or_init(Etcd::start),
    }
}

fn fresh_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/test-{}-{}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn fresh_etcd() -> (Box<dyn Store>, EtcdCase) {
    let case = shared_etcd();
    let store = EtcdStore::open(&case.etcd.endpoint_list(), &fresh_prefix()).unwrap();
    (Box::new(store), case)
}

suite!(etcd, fresh_etcd);

/// Runs `work` on a runtime of its own (for the etcd client calls a test makes itself).
fn on_runtime<T>(work: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// The next change on `watch`, or `None` if the feed said it missed changes.
fn next_feed(watch: &mut wasmgate::store::Watch) -> Option<wasmgate::store::Change> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match watch.try_recv() {
            Ok(change) => return Some(change),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => return None,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                assert!(Instant::now() < until, "nothing on the feed after 30 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(other) => panic!("the feed failed: {other:?}"),
        }
    }
}

#[test]
fn the_etcd_feed_resumes_after_a_cut_and_says_when_it_missed_compacted_changes() {
    let case = shared_etcd();
    let prefix = fresh_prefix();
    let proxy = Proxy::to(&case.etcd.endpoint_list()[0]);
    let store = EtcdStore::open(std::slice::from_ref(&proxy.endpoint), &prefix).unwrap();
    let direct = EtcdStore::open(&case.etcd.endpoint_list(), &prefix).unwrap();
    let mut watch = store.watch();
    store.put("f/a", &json!(1), Expect::Absent).unwrap();
    assert_eq!(next_feed(&mut watch).map(|c| c.key), Some("f/a".into()));

    // Cut off, then back: what was written meanwhile comes, in order, nothing twice.
    proxy.cut();
    let b = direct.put("f/b", &json!(2), Expect::Absent).unwrap();
    let c = direct.put("f/c", &json!(3), Expect::Absent).unwrap();
    proxy.restore();
    let resumed: Vec<(String, u64)> = (0..2)
        .map(|_| next_feed(&mut watch).map(|c| (c.key, c.revision)).unwrap())
        .collect();
    assert_eq!(resumed, [("f/b".to_string(), b), ("f/c".to_string(), c)]);

    // Cut off while the history it would resume from is compacted away: the feed says so,
    // then goes on from the present.
    proxy.cut();
    direct.put("f/d", &json!(4), Expect::Absent).unwrap();
    let e = direct.put("f/e", &json!(5), Expect::Absent).unwrap();
    let endpoints = case.etcd.endpoint_list();
    on_runtime(async {
        let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
        client.compact(e as i64, None).await.unwrap();
    });
    proxy.restore();
    assert!(
        next_feed(&mut watch).is_none(),
        "the feed says it missed changes"
    );
    let listing = store.list("f/").unwrap();
    assert_eq!(
        listing.entries.len(),
        5,
        "a listing has what the feed missed"
    );
    let f = store.put("f/f", &json!(6), Expect::Absent).unwrap();
    let after = next_feed(&mut watch).expect("the feed goes on after the compaction");
    assert_eq!((after.key.as_str(), after.revision), ("f/f", f));
}

#[test]
fn etcd_calls_work_from_a_blocking_pool_a_plain_thread_and_inside_a_runtime() {
    let case = shared_etcd();
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::open(&case.etcd.endpoint_list(), &fresh_prefix()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pooled = store.clone();
    let written = runtime
        .block_on(async move {
            tokio::task::spawn_blocking(move || pooled.put("b/pool", &json!(1), Expect::Absent))
                .await
        })
        .unwrap()
        .unwrap();
    let threaded = store.clone();
    let found = std::thread::spawn(move || threaded.get("b/pool"))
        .join()
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(found.revision, written);
    // A current-thread runtime's own thread (a #[tokio::test]) can open, call and drop one.
    let inside = store.clone();
    let endpoints = case.etcd.endpoint_list();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            assert!(inside.get("b/pool").unwrap().is_some());
            drop(inside);
            let opened = EtcdStore::open(&endpoints, &fresh_prefix()).unwrap();
            assert!(opened.get("b/pool").unwrap().is_none(), "another prefix");
            drop(opened);
        });
    drop(store);
}

#[test]
fn etcd_errors_name_the_endpoints_and_the_key_too_large_to_write() {
    let refused = EtcdStore::open(&["127.0.0.1:1".to_string()], "/nowhere/").unwrap_err();
    assert!(
        refused.to_string().contains("127.0.0.1:1"),
        "names the endpoint: {refused}"
    );

    let case = shared_etcd();
    let store = EtcdStore::open(&case.etcd.endpoint_list(), &fresh_prefix()).unwrap();
    // Over etcd's request limit (1.5 MiB by default), and over its gRPC message limit too.
    for length in [1800 << 10, 3 << 20] {
        let big = json!("x".repeat(length));
        let size = big.to_string().len();
        let error = store
            .put("big/value", &big, Expect::Any)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("big/value") && error.contains(&format!("{size} bytes")),
            "names the key and its size: {error}"
        );
    }
    // Just under the limit is fine.
    let fits = json!("x".repeat(1 << 20));
    store.put("big/fits", &fits, Expect::Any).unwrap();
    assert_eq!(store.get("big/fits").unwrap().unwrap().value, fits);
}

/// The member that leads the cluster now, by index.
fn leader_of(etcd: &Etcd) -> usize {
    on_runtime(async {
        for (index, endpoint) in etcd.endpoint_list().into_iter().enumerate() {
            let mut client = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            let status = client.status().await.unwrap();
            if status.header().map(|h| h.member_id()) == Some(status.leader()) {
                return index;
            }
        }
        panic!("no member leads");
    })
}

#[test]
fn an_etcd_store_of_three_members_outlives_its_leader_killed() {
    let mut etcd = Etcd::cluster(3);
    let store = EtcdStore::open(&etcd.endpoint_list(), "/wasmgate/").unwrap();
    let lease = store.grant_lease(Duration::from_secs(10)).unwrap();
    store
        .commit(&Txn::new().put_with_lease("held", json!("me"), lease))
        .unwrap();
    let before = store.put("k/0", &json!(0), Expect::Absent).unwrap();
    let mut watch = store.watch();

    let leader = leader_of(&etcd);
    etcd.kill_9(leader);

    // Every kind of call goes on through the other two (a new leader is elected meanwhile).
    for n in 1..=20 {
        let revision = store
            .put(&format!("k/{n}"), &json!(n), Expect::Absent)
            .unwrap_or_else(|e| panic!("write {n} after member {leader} died: {e}"));
        assert_eq!(
            store.get(&format!("k/{n}")).unwrap().unwrap().revision,
            revision
        );
    }
    assert_eq!(store.list("k/").unwrap().entries.len(), 21);
    store.keep_alive(lease).unwrap();
    assert!(
        store.get("held").unwrap().is_some(),
        "the lease still holds"
    );
    let seen: Vec<String> = (1..=20)
        .map(|_| next_feed(&mut watch).expect("no change missed").key)
        .collect();
    let written: Vec<String> = (1..=20).map(|n| format!("k/{n}")).collect();
    assert_eq!(seen, written, "the feed carries every write, in order");
    assert!(matches!(
        store.put("k/1", &json!(1), Expect::Revision(before)),
        Err(StoreError::Conflict { .. })
    ));
}
