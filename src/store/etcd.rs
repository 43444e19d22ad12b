//! The distributed store: every key lives in etcd (v3 API) under one prefix, so that several
//! controller replicas share one state and survive the loss of any one machine.
//!
//! Revisions are etcd's: a value's revision is its key's `mod_revision`, a listing's the
//! revision its range was read at. Conditions map onto etcd's compares (`Absent`: version 0,
//! `Present`: version above 0, `Revision(r)`: mod_revision r); a failed transaction reads its
//! condition keys in its else branch, so the conflict names the key that changed.
//!
//! The client is async and the [`Store`] trait is not: the store owns a small tokio runtime
//! (two workers) where every call runs; the calling thread waits on a channel for the answer,
//! never entering a runtime, so a call works from any thread (a blocking-pool thread, a plain
//! thread, a test's runtime). One task on that runtime watches the prefix and feeds every
//! change to the broadcast that [`Store::watch`] subscribes to; when its stream drops it
//! resumes after the last revision it saw, and when that history was compacted it says
//! [`Feed::Missed`] and resumes from the present.
//!
//! Architecture invariant: like every engine, this knows keys and JSON, nothing of ECS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, LeaseClient, PutOptions,
    TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::broadcast;
use tonic::Code;

use super::{
    Change, Expect, Feed, Json, LeaseId, Listing, Op, Store, StoreError, Txn, Versioned, Watch,
};

/// The prefix every key is stored under when the URL names none.
pub const DEFAULT_PREFIX: &str = "/wasmgate/";

/// How long one call may take, retries included, before it fails naming the endpoints. Long
/// enough for etcd to elect a new leader (about a second by default) when one member dies,
/// and to try again after a proposal to the dead leader timed out (etcd gives up after 7 s).
const CALL_DEADLINE: Duration = Duration::from_secs(15);

/// Keys per page of a listing: pages are read at the first page's revision, so a listing is
/// still one snapshot, and no answer grows past what gRPC takes in one message.
const PAGE: i64 = 500;

/// The largest answer the client decodes (gRPC's default is 4 MiB; one page of large values,
/// or one revision's events on the feed, can be more).
const MAX_MESSAGE: usize = 256 << 20;

/// etcd's shortest lease (1.5 election timeouts of 1 s, rounded up).
const MIN_LEASE_SECONDS: i64 = 2;

/// etcd's default `--max-request-bytes` (1.5 MiB), quoted when etcd refuses a write as too
/// large (a member may be configured otherwise; its answer is what counts).
const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

pub struct EtcdStore {
    /// `Some` until dropped: calls and the feed run here.
    runtime: Option<tokio::runtime::Runtime>,
    kv: KvClient,
    lease: LeaseClient,
    /// Every key is stored as `prefix + key`.
    prefix: String,
    /// As given, for errors.
    endpoints: Arc<str>,
    changes: broadcast::Sender<Feed>,
    /// The highest revision any answer has shown: a watch made now sees changes above it.
    seen: Arc<AtomicU64>,
    /// The newest revision a commit of this store changed something at.
    committed: Arc<AtomicU64>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What went wrong in one attempt of a call, and whether trying again is safe.
enum Failure {
    /// The answer is final (a conflict, an expired lease, a refusal).
    Final(StoreError),
    /// The request never reached a member that could answer (connection refused or reset,
    /// no leader yet): another attempt, perhaps to another member, may succeed.
    Retry(String),
    /// The request reached etcd but no answer came (the leader died or changed, the
    /// proposal timed out): it may have been applied. Reads and lease calls just try again;
    /// a commit tries again and, should that conflict, checks whether its first try landed.
    Unknown(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Final(error)
    }
}

/// Sorts a client error: a connection failure, an answer that never came, or a final answer.
fn classify(error: etcd_client::Error) -> Failure {
    match &error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            let unsent = status.code() == Code::Unavailable
                && (message.contains("transport")
                    || message.contains("connect")
                    || message.contains("no leader")
                    || message.contains("not capable"));
            if unsent {
                Failure::Retry(error.to_string())
            } else if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
                || message.contains("leader changed")
            {
                Failure::Unknown(error.to_string())
            } else {
                Failure::Final(StoreError::Backend(error.to_string()))
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Failure::Retry(error.to_string())
        }
        _ => Failure::Final(StoreError::Backend(error.to_string())),
    }
}

/// Whether an etcd answer says a lease is gone.
fn lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == Code::NotFound && status.message().contains("lease not found")
        }
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("not found"),
        _ => false,
    }
}

/// Whether etcd refused a request for its size.
fn refused_as_too_large(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            status.message().contains("request is too large")
                || (status.code() == Code::ResourceExhausted
                    && status.message().contains("larger than max"))
        }
        _ => false,
    }
}

/// The end of the key range that holds every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

/// Runs `attempt` on `runtime` until it answers, retrying what is safe to retry, for at most
/// [`CALL_DEADLINE`]; the calling thread waits on a channel, so it needs no runtime of its own.
fn run<T, F, Fut>(
    runtime: &tokio::runtime::Handle,
    endpoints: &Arc<str>,
    what: &str,
    mut attempt: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let (answer, answered) = std::sync::mpsc::sync_channel(1);
    let (named, endpoints) = (endpoints.clone(), endpoints.clone());
    let (what, named_what) = (what.to_string(), what.to_string());
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
        let mut pause = Duration::from_millis(50);
        let result = loop {
            let last = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(value)) => break Ok(value),
                Ok(Err(Failure::Final(StoreError::Backend(why))))
                    if !why.starts_with("etcd at ") =>
                {
                    break Err(StoreError::Backend(format!(
                        "etcd at {endpoints}: {what}: {why}"
                    )));
                }
                Ok(Err(Failure::Final(error))) => break Err(error),
                Ok(Err(Failure::Retry(why) | Failure::Unknown(why))) => why,
                Err(_) => "no answer".to_string(),
            };
            if tokio::time::Instant::now() + pause >= deadline {
                break Err(StoreError::Backend(format!(
                    "etcd at {endpoints}: {what}: no member answered in {} s (last: {last})",
                    CALL_DEADLINE.as_secs()
                )));
            }
            tracing::debug!(%endpoints, %what, %last, "etcd call failed; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        };
        let _ = answer.send(result);
    });
    answered.recv().map_err(|_| {
        StoreError::Backend(format!(
            "etcd at {named}: {named_what}: the store is shutting down"
        ))
    })?
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`HOST:PORT` each; the client spreads calls over them
    /// and leaves out members that do not answer) and keeps every key under `prefix`. Fails,
    /// naming the endpoints, when no member answers.
    pub fn open(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the etcd client: {e}")))?;
        let named: Arc<str> = endpoints.join(",").into();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let addresses = endpoints.to_vec();
        // Not `block_on`: that panics on a thread already inside a runtime.
        let (connected, connecting) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = connected.send(Client::connect(addresses, Some(options)).await);
        });
        let client = connecting
            .recv()
            .map_err(|_| StoreError::Backend(format!("etcd at {named}: the client stopped")))?
            .map_err(|e| StoreError::Backend(format!("etcd at {named}: {e}")))?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let store = Self {
            kv,
            lease: client.lease_client(),
            prefix: prefix.to_string(),
            endpoints: named,
            changes: broadcast::channel(4096).0,
            seen: Arc::new(AtomicU64::new(0)),
            committed: Arc::new(AtomicU64::new(0)),
            runtime: Some(runtime),
        };
        // One read proves a member answers, and says where the feed starts.
        let revision = store.current_revision()?;
        let feed = FeedTask {
            watch,
            prefix: store.prefix.clone(),
            endpoints: store.endpoints.clone(),
            changes: store.changes.clone(),
        };
        store.handle().spawn(feed.run(revision as i64 + 1));
        tracing::info!(endpoints = %store.endpoints, prefix = %store.prefix, revision, "state store: etcd");
        Ok(store)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the store is dropped")
            .handle()
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut stored = Vec::with_capacity(self.prefix.len() + key.len());
        stored.extend_from_slice(self.prefix.as_bytes());
        stored.extend_from_slice(key.as_bytes());
        stored
    }

    /// Notes the revision of an answer, for watches made after it.
    fn saw(seen: &AtomicU64, header: Option<&etcd_client::ResponseHeader>) -> u64 {
        let revision = header.map_or(0, |h| h.revision().max(0) as u64);
        seen.fetch_max(revision, Ordering::SeqCst);
        revision
    }

    /// The store's revision now (a read of one key under the prefix, keys only).
    fn current_revision(&self) -> Result<u64, StoreError> {
        let kv = self.kv.clone();
        let key = self.key("");
        let seen = self.seen.clone();
        run(self.handle(), &self.endpoints, "read", move || {
            let (mut kv, key, seen) = (kv.clone(), key.clone(), seen.clone());
            async move {
                let answer = kv
                    .get(key, Some(GetOptions::new().with_keys_only().with_limit(1)))
                    .await
                    .map_err(classify)?;
                Ok(Self::saw(&seen, answer.header()))
            }
        })
    }

    fn backend(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(format!("etcd at {}: {what}", self.endpoints))
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // A runtime dropped inside another runtime's context panics; this does not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn parse_value(key: &str, bytes: &[u8]) -> Result<serde_json::Value, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("{key}: not JSON in etcd: {e}")))
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let kv = self.kv.clone();
        let stored = self.key(key);
        let seen = self.seen.clone();
        let name = key.to_string();
        run(self.handle(), &self.endpoints, key, move || {
            let (mut kv, stored, seen, name) =
                (kv.clone(), stored.clone(), seen.clone(), name.clone());
            async move {
                let answer = kv.get(stored, None).await.map_err(classify)?;
                Self::saw(&seen, answer.header());
                match answer.kvs().first() {
                    None => Ok(None),
                    Some(found) => Ok(Some(Versioned {
                        value: parse_value(&name, found.value())?,
                        revision: found.mod_revision() as u64,
                    })),
                }
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let kv = self.kv.clone();
        let start = self.key(prefix);
        let strip = self.prefix.len();
        let seen = self.seen.clone();
        run(self.handle(), &self.endpoints, prefix, move || {
            let (mut kv, start, seen) = (kv.clone(), start.clone(), seen.clone());
            async move {
                let end = prefix_end(&start);
                let mut entries = Vec::new();
                let mut from = start;
                let mut at: Option<i64> = None;
                loop {
                    let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                    if let Some(revision) = at {
                        options = options.with_revision(revision);
                    }
                    // A page read at a revision compacted meanwhile fails: the attempt
                    // starts again, at the present.
                    let answer = kv
                        .get(from.clone(), Some(options))
                        .await
                        .map_err(classify)?;
                    let revision = *at.get_or_insert(Self::saw(&seen, answer.header()) as i64);
                    for found in answer.kvs() {
                        let key = String::from_utf8_lossy(&found.key()[strip..]).into_owned();
                        let value = parse_value(&key, found.value())?;
                        entries.push((
                            key,
                            Versioned {
                                value,
                                revision: found.mod_revision() as u64,
                            },
                        ));
                    }
                    match answer.kvs().last() {
                        Some(last) if answer.more() => {
                            from = last.key().to_vec();
                            from.push(0);
                        }
                        _ => {
                            return Ok(Listing {
                                entries,
                                revision: revision as u64,
                            });
                        }
                    }
                }
            }
        })
    }

    fn commit(&self, txn: &Txn) -> Result<u64, StoreError> {
        // etcd refuses a transaction that writes one key twice: the last write of a key wins,
        // as it would applied in order.
        let mut ops: Vec<&Op> = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            ops.retain(|earlier| !matches!(earlier, Op::Put { key: k, .. } | Op::Delete { key: k } if k == key));
            ops.push(op);
        }
        // The largest value written, to name should etcd refuse the request for its size.
        let mut largest: Option<(String, usize)> = None;
        let then: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let text = value.text();
                    if largest.as_ref().is_none_or(|(_, size)| text.len() > *size) {
                        largest = Some((key.clone(), text.len()));
                    }
                    TxnOp::put(
                        self.key(key),
                        text,
                        lease.map(|lease| PutOptions::new().with_lease(lease.0)),
                    )
                }
                Op::Delete { key } => TxnOp::delete(self.key(key), None),
            })
            .collect();
        let too_large = self
            .backend(match largest {
                Some((key, size)) => format!(
                    "{key}: {size} bytes is more than etcd takes in one request \
                 (--max-request-bytes, {DEFAULT_MAX_REQUEST_BYTES} by default)"
                ),
                None => "the transaction is more than etcd takes in one request".to_string(),
            })
            .to_string();
        let conditions: Vec<(String, Expect)> = txn
            .conditions
            .iter()
            .filter(|(_, expected)| *expected != Expect::Any)
            .cloned()
            .collect();
        let compares: Vec<Compare> = conditions
            .iter()
            .map(|(key, expected)| match expected {
                Expect::Absent => Compare::version(self.key(key), CompareOp::Equal, 0),
                Expect::Present => Compare::version(self.key(key), CompareOp::Greater, 0),
                Expect::Revision(revision) => {
                    Compare::mod_revision(self.key(key), CompareOp::Equal, *revision as i64)
                }
                Expect::Any => unreachable!("filtered out above"),
            })
            .collect();
        // When a condition fails, the else branch reads every condition's key, to say which.
        let otherwise: Vec<TxnOp> = conditions
            .iter()
            .map(|(key, _)| TxnOp::get(self.key(key), Some(GetOptions::new().with_keys_only())))
            .collect();
        let request = etcd_client::Txn::new()
            .when(compares)
            .and_then(then)
            .or_else(otherwise);
        let leases: Vec<LeaseId> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { lease, .. } => *lease,
                Op::Delete { .. } => None,
            })
            .collect();
        // What the transaction leaves, to tell after an unanswered try whether it landed.
        let outcome: Vec<(Vec<u8>, Option<Vec<u8>>)> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => {
                    (self.key(key), Some(value.text().as_bytes().to_vec()))
                }
                Op::Delete { key } => (self.key(key), None),
            })
            .collect();
        let kv = self.kv.clone();
        let seen = self.seen.clone();
        let committed = self.committed.clone();
        let unanswered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        run(self.handle(), &self.endpoints, "commit", move || {
            let (mut kv, request, seen, committed) =
                (kv.clone(), request.clone(), seen.clone(), committed.clone());
            let (conditions, leases, too_large, outcome, unanswered) = (
                conditions.clone(),
                leases.clone(),
                too_large.clone(),
                outcome.clone(),
                unanswered.clone(),
            );
            async move {
                let answer = match kv.txn(request).await {
                    Ok(answer) => answer,
                    Err(e) if lease_not_found(&e) => {
                        // etcd does not say which; with one lease (the usual case) it is that.
                        let lease = leases.first().copied().unwrap_or(LeaseId(0));
                        return Err(Failure::Final(StoreError::LeaseExpired(lease)));
                    }
                    Err(e) if refused_as_too_large(&e) => {
                        return Err(Failure::Final(StoreError::Backend(too_large)));
                    }
                    Err(e) => {
                        return Err(match classify(e) {
                            Failure::Unknown(why) => {
                                unanswered.store(true, Ordering::SeqCst);
                                Failure::Retry(why)
                            }
                            other => other,
                        });
                    }
                };
                let revision = Self::saw(&seen, answer.header());
                if answer.succeeded() {
                    // Only a revision that changed a key under the prefix comes on the feed
                    // (one that changed nothing is the present, perhaps another prefix's).
                    let changed = answer.op_responses().iter().any(|response| match response {
                        TxnOpResponse::Delete(deleted) => deleted.deleted() > 0,
                        _ => true,
                    });
                    if changed {
                        committed.fetch_max(revision, Ordering::SeqCst);
                    }
                    return Ok(revision);
                }
                if unanswered.load(Ordering::SeqCst)
                    && let Some(landed) = landed(&mut kv, &outcome, revision).await?
                {
                    // An earlier try that got no answer was applied: that is this commit.
                    committed.fetch_max(landed, Ordering::SeqCst);
                    return Ok(landed);
                }
                let responses = answer.op_responses();
                for ((key, expected), response) in conditions.iter().zip(&responses) {
                    let current = match response {
                        TxnOpResponse::Get(found) => {
                            found.kvs().first().map(|kv| kv.mod_revision() as u64)
                        }
                        _ => None,
                    };
                    if !expected.holds(current) {
                        return Err(Failure::Final(StoreError::Conflict {
                            key: key.clone(),
                            expected: *expected,
                        }));
                    }
                }
                // Every condition holds now: one changed and changed back between the
                // compare and the read. Still a conflict; name the first.
                let (key, expected) = conditions
                    .first()
                    .cloned()
                    .unwrap_or_else(|| (String::new(), Expect::Any));
                Err(Failure::Final(StoreError::Conflict { key, expected }))
            }
        })
    }

    fn last_committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    fn watch(&self) -> Watch {
        Watch::after(self.changes.subscribe(), self.seen.load(Ordering::SeqCst))
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = (ttl.as_secs_f64().ceil() as i64).max(MIN_LEASE_SECONDS);
        let lease = self.lease.clone();
        run(self.handle(), &self.endpoints, "grant a lease", move || {
            let mut lease = lease.clone();
            async move {
                let granted = lease.grant(seconds, None).await.map_err(classify)?;
                Ok(LeaseId(granted.id()))
            }
        })
    }

    fn keep_alive(&self, id: LeaseId) -> Result<(), StoreError> {
        let lease = self.lease.clone();
        run(
            self.handle(),
            &self.endpoints,
            "keep a lease alive",
            move || {
                let mut lease = lease.clone();
                async move {
                    // One renewal on a stream of its own: the answer's TTL is 0 when the lease
                    // has already expired (the client reports that as not found).
                    match lease.keep_alive(id.0).await {
                        Ok(_) => Ok(()),
                        Err(e) if lease_not_found(&e) => {
                            Err(Failure::Final(StoreError::LeaseExpired(id)))
                        }
                        Err(e) => Err(classify(e)),
                    }
                }
            },
        )
    }

    fn revoke_lease(&self, id: LeaseId) -> Result<(), StoreError> {
        let lease = self.lease.clone();
        run(
            self.handle(),
            &self.endpoints,
            "revoke a lease",
            move || {
                let mut lease = lease.clone();
                async move {
                    match lease.revoke(id.0).await {
                        Ok(_) => Ok(()),
                        // Already gone: its keys went with it.
                        Err(e) if lease_not_found(&e) => Ok(()),
                        Err(e) => Err(classify(e)),
                    }
                }
            },
        )
    }
}

/// Whether the keys are as a transaction with these outcomes (a value, or deleted) leaves
/// them, with every value written at one revision: if so, that revision. A commit whose first
/// try got no answer and whose retry conflicts asks this, so that its own write, applied
/// after all, does not read as someone else's.
async fn landed(
    kv: &mut KvClient,
    outcome: &[(Vec<u8>, Option<Vec<u8>>)],
    now: u64,
) -> Result<Option<u64>, Failure> {
    let mut at: Option<i64> = None;
    for (key, expected) in outcome {
        let answer = kv.get(key.clone(), None).await.map_err(classify)?;
        let found = answer.kvs().first();
        match (expected, found) {
            (None, None) => {}
            (Some(value), Some(found)) if found.value() == value.as_slice() => {
                if at.is_some_and(|at| at != found.mod_revision()) {
                    return Ok(None);
                }
                at = Some(found.mod_revision());
            }
            _ => return Ok(None),
        }
    }
    // Only deletes, all done: nothing says when; the present will do.
    Ok(Some(at.map_or(now, |revision| revision as u64)))
}

/// The one watch over the prefix, feeding the broadcast.
struct FeedTask {
    watch: WatchClient,
    prefix: String,
    endpoints: Arc<str>,
    changes: broadcast::Sender<Feed>,
}

impl FeedTask {
    /// Feeds changes from revision `next` on, for as long as the store's runtime runs.
    async fn run(mut self, mut next: i64) {
        let strip = self.prefix.len();
        let mut pause = Duration::from_millis(50);
        loop {
            let options = WatchOptions::new()
                .with_range(prefix_end(self.prefix.as_bytes()))
                .with_start_revision(next)
                .with_progress_notify();
            let mut stream = match self
                .watch
                .watch(self.prefix.as_bytes(), Some(options))
                .await
            {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(endpoints = %self.endpoints, error = %e, "etcd feed: cannot watch; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            loop {
                let answer = match stream.message().await {
                    Ok(Some(answer)) => answer,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(endpoints = %self.endpoints, error = %e, next, "etcd feed: stream dropped; resuming");
                        break;
                    }
                };
                pause = Duration::from_millis(50);
                if answer.compact_revision() > 0 {
                    // The changes from `next` on are compacted away: readers list again, and
                    // the feed goes on from the present.
                    let now = answer.header().map_or(0, |h| h.revision());
                    tracing::warn!(endpoints = %self.endpoints, next, compacted = answer.compact_revision(), now, "etcd feed: history compacted; changes missed");
                    let _ = self.changes.send(Feed::Missed);
                    next = now.max(answer.compact_revision()) + 1;
                    break;
                }
                if answer.canceled() {
                    tracing::debug!(endpoints = %self.endpoints, reason = answer.cancel_reason(), "etcd feed: watch canceled; resuming");
                    break;
                }
                for event in answer.events() {
                    let Some(kv) = event.kv() else { continue };
                    next = next.max(kv.mod_revision() + 1);
                    let Some(key) = kv.key().get(strip..) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(key).into_owned();
                    let value = match event.event_type() {
                        etcd_client::EventType::Delete => None,
                        etcd_client::EventType::Put => match String::from_utf8(kv.value().to_vec())
                            .map_err(|e| e.to_string())
                            .and_then(|text| Json::parsed_from(text).map_err(|e| e.to_string()))
                        {
                            Ok(value) => Some(value),
                            Err(e) => {
                                tracing::warn!(%key, error = %e, "etcd feed: not JSON; skipped");
                                continue;
                            }
                        },
                    };
                    let _ = self.changes.send(Feed::Change(Change {
                        key,
                        value,
                        revision: kv.mod_revision() as u64,
                    }));
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_every_key_that_starts_with_it() {
        assert_eq!(prefix_end(b"/wasmgate/"), b"/wasmgate0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
