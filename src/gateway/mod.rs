//! The gateway: HTTP ingress for services whose task definition declares a route
//! (`wasmgate.http.path` / `wasmgate.http.host` labels, see [`crate::taskdef::http`]).
//!
//! A request is matched to a route (host routes first, then the longest path prefix), given to
//! the service's least busy running task (its [`HttpEndpoint`] on this host: a Wasm worker that
//! serves it in a fresh instance, or a container's port; or the agent of the host that runs
//! it), queued briefly when every task is at its concurrency, and answered 503 after the
//! queue timeout. A service with `wasmgate.http.idle-timeout` scales to zero when idle and back
//! to one task on the next request (which waits for it: the cold start is on its path).
//!
//! Answers of the gateway itself: 404 no route, 413 request body too large, 500 the handler
//! trapped or gave no response, 502 the handler answered with a wasi:http error, 503 no task
//! free in time, 504 the handler's deadline passed.
//!
//! Architecture invariant: the request path reads only memory (the route table, the worker
//! registry, atomics); the route table is rebuilt from the store when services or tasks change.

pub mod metrics;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::capacity::endpoint::{self, HttpEndpoint, HttpEndpoints, HttpLimits, text, too_large};
use crate::control::Control;
use crate::control::routes::{RouteTask, ServiceRoute};
use metrics::{HttpMetrics, ServiceMetrics};

/// The body of every gateway response.
pub type GatewayBody = endpoint::HttpBody;

/// How long a request to a service scaled to zero waits for its first task.
const COLD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A route and what the request path needs of its service.
struct Route {
    key: String,
    cluster: String,
    service: String,
    container: String,
    settings: crate::taskdef::http::HttpSettings,
    desired_count: u32,
    tasks: Vec<RouteTask>,
    state: Arc<RouteState>,
}

/// What outlives route table rebuilds: activity and figures.
struct RouteState {
    /// Epoch milliseconds of the last request (here, or through another replica's gateway).
    last_request: AtomicU64,
    /// The newest `last_request` this replica told the others of (or heard from them).
    published: AtomicU64,
    /// Whether a scale from zero was asked for and not yet seen through.
    waking: AtomicBool,
    metrics: Arc<ServiceMetrics>,
}

/// The gateway's shared state.
pub struct Gateway {
    control: Arc<Control>,
    workers: Arc<HttpEndpoints>,
    routes: RwLock<Arc<Vec<Route>>>,
    states: Mutex<HashMap<String, Arc<RouteState>>>,
    /// Signalled after every rebuild of the route table.
    rebuilt: Notify,
    pub metrics: Arc<HttpMetrics>,
    request_ids: AtomicU64,
    /// Requests in flight to each task served by another host's agent.
    remote_in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The limits a route's settings put on each request.
fn limits(settings: &crate::taskdef::http::HttpSettings) -> HttpLimits {
    HttpLimits {
        timeout: settings.timeout,
        max_request_bytes: settings.max_request_bytes,
        max_response_bytes: settings.max_response_bytes,
    }
}

/// Who serves a request: an endpoint on this host, or the agent of another host that runs
/// the task.
enum Target {
    Local(Arc<dyn HttpEndpoint>),
    Remote {
        task_id: String,
        agent: crate::control::routes::RemoteAgent,
        in_flight: Arc<AtomicUsize>,
    },
}

/// Counts one request to a remote task while it is alive.
struct RemoteSlot(Arc<AtomicUsize>);

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why no task took a request.
enum Unavailable {
    NoTask,
    Busy,
}

impl Gateway {
    /// A gateway over `control`'s routes.
    pub fn new(control: Arc<Control>, workers: Arc<HttpEndpoints>) -> Arc<Self> {
        let metrics = Arc::new(HttpMetrics::default());
        Arc::new(Self {
            control,
            workers,
            routes: RwLock::new(Arc::new(Vec::new())),
            states: Mutex::new(HashMap::new()),
            rebuilt: Notify::new(),
            metrics,
            request_ids: AtomicU64::new(1),
            remote_in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Rebuilds the route table from the store.
    pub fn refresh(&self) -> Result<(), crate::control::ControlError> {
        let found = crate::control::routes::http_routes(&self.control)?;
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let mut routes: Vec<Route> = found
            .into_iter()
            .map(|r: ServiceRoute| {
                let key = format!("{}/{}", r.cluster, r.service_name);
                let state = states
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(RouteState {
                            last_request: AtomicU64::new(now_millis()),
                            published: AtomicU64::new(0),
                            waking: AtomicBool::new(false),
                            metrics: self.metrics.service(&key),
                        })
                    })
                    .clone();
                if !r.running_tasks.is_empty() {
                    state.waking.store(false, Ordering::Relaxed);
                }
                Route {
                    key,
                    cluster: r.cluster,
                    service: r.service_name,
                    container: r.container,
                    settings: r.settings,
                    desired_count: r.desired_count,
                    tasks: r.running_tasks,
                    state,
                }
            })
            .collect();
        drop(states);
        routes.sort_by_key(|route| std::cmp::Reverse(route.settings.specificity()));
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
        self.rebuilt.notify_waiters();
        Ok(())
    }

    fn remote_counter(&self, task_id: &str) -> Arc<AtomicUsize> {
        self.remote_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(task_id.to_string())
            .or_default()
            .clone()
    }

    fn table(&self) -> Arc<Vec<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The least busy worker of the route `key` with room, scaling the service from zero when
    /// it has no task and may; waits up to the queue timeout (the cold-start timeout when
    /// scaling from zero).
    async fn pick(&self, key: &str) -> Result<Target, Unavailable> {
        let started = tokio::time::Instant::now();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            // Registered before looking, so no change between the look and the wait is missed.
            let workers_changed = self.workers.changed.notified();
            let rebuilt = self.rebuilt.notified();
            let table = self.table();
            let Some(route) = table.iter().find(|r| r.key == key) else {
                return Err(Unavailable::NoTask);
            };
            // Equally busy tasks take turns: the scan starts one further each request.
            let turn = self.request_ids.load(Ordering::Relaxed) as usize % route.tasks.len().max(1);
            let in_turn = || route.tasks[turn..].iter().chain(&route.tasks[..turn]);
            let best = in_turn()
                .filter_map(|task| self.workers.get(&task.id, &route.container))
                .filter(|w| w.in_flight() < route.settings.concurrency)
                .min_by_key(|w| w.in_flight());
            let remote = in_turn()
                .filter_map(|task| {
                    let agent = task.remote.as_ref()?;
                    let counter = self.remote_counter(&task.id);
                    let load = counter.load(Ordering::Acquire);
                    (load < route.settings.concurrency).then_some((task, agent, counter, load))
                })
                .min_by_key(|(_, _, _, load)| *load);
            match (best, remote) {
                (Some(local), Some((_, _, _, load))) if local.in_flight() <= load => {
                    return Ok(Target::Local(local));
                }
                (Some(local), None) => return Ok(Target::Local(local)),
                (_, Some((task, agent, in_flight, _))) => {
                    return Ok(Target::Remote {
                        task_id: task.id.clone(),
                        agent: agent.clone(),
                        in_flight,
                    });
                }
                (None, None) => {}
            }
            let deadline = *deadline.get_or_insert_with(|| {
                let wait = if route.tasks.is_empty() && route.settings.idle_timeout.is_some() {
                    COLD_START_TIMEOUT
                } else {
                    route.settings.queue_timeout
                };
                started + wait
            });
            if route.tasks.is_empty()
                && route.settings.idle_timeout.is_some()
                && route.desired_count == 0
                && !route.state.waking.swap(true, Ordering::AcqRel)
            {
                let control = self.control.clone();
                let (cluster, service) = (route.cluster.clone(), route.service.clone());
                let scaled = tokio::task::spawn_blocking(move || {
                    crate::control::routes::set_desired_count(
                        &control,
                        &cluster,
                        &service,
                        1,
                        "a request arrived while it was scaled to zero",
                    )
                })
                .await;
                if !matches!(scaled, Ok(Ok(_))) {
                    route.state.waking.store(false, Ordering::Relaxed);
                    tracing::warn!(service = %route.service, "cannot scale the service from zero");
                }
                continue;
            }
            let no_task = route.tasks.is_empty();
            tokio::select! {
                () = workers_changed => {}
                () = rebuilt => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(if no_task { Unavailable::NoTask } else { Unavailable::Busy });
                }
            }
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<GatewayBody> {
        let started = Instant::now();
        let request_id = format!("{:016x}", self.request_ids.fetch_add(1, Ordering::Relaxed));
        let host = request.uri().host().map(str::to_string).or_else(|| {
            request
                .headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
        });
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        let table = self.table();
        let Some(route) = table
            .iter()
            .find(|r| r.settings.matches(host.as_deref(), &path))
        else {
            self.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%request_id, %method, %path, host = ?host, status = 404, "no route");
            return text(
                404,
                format!("no route for {} {path}\n", host.as_deref().unwrap_or("")),
            );
        };
        let span = tracing::info_span!("request", %request_id, service = %route.key);
        let key = route.key.clone();
        let settings = route.settings.clone();
        let container = route.container.clone();
        let state = route.state.clone();
        drop(table);
        state.last_request.store(now_millis(), Ordering::Relaxed);
        async move {
            let (response, task) = self
                .dispatch(&key, &container, &settings, &state, request)
                .await;
            let status = response.status().as_u16();
            state.metrics.count_status(status);
            state
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            state.last_request.store(now_millis(), Ordering::Relaxed);
            tracing::info!(
                %method,
                %path,
                status,
                task = task.as_deref().unwrap_or("-"),
                micros = started.elapsed().as_micros() as u64,
                "request"
            );
            response
        }
        .instrument(span)
        .await
    }

    /// Serves a routed request; returns the response and the task that served it.
    async fn dispatch(
        &self,
        key: &str,
        container: &str,
        settings: &crate::taskdef::http::HttpSettings,
        state: &RouteState,
        request: Request<Incoming>,
    ) -> (Response<GatewayBody>, Option<String>) {
        let declared = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limits = limits(settings);
        if declared.is_some_and(|length| length > settings.max_request_bytes) {
            return (too_large(&limits), None);
        }
        let local = match self.pick(key).await {
            Ok(Target::Local(local)) => local,
            Ok(Target::Remote {
                task_id,
                agent,
                in_flight,
            }) => {
                in_flight.fetch_add(1, Ordering::AcqRel);
                let slot = RemoteSlot(in_flight);
                let mut headers = forward_headers(&task_id, container, settings);
                headers.push((FORWARD_KEY, agent.key.clone()));
                let response =
                    endpoint::forward(&agent.authority, &limits, request, &headers).await;
                drop(slot);
                self.workers.changed.notify_waiters();
                return (response, Some(task_id));
            }
            Err(Unavailable::NoTask) => {
                return (text(503, "the service has no running task\n"), None);
            }
            Err(Unavailable::Busy) => {
                return (
                    text(503, "every task of the service is busy; try again\n"),
                    None,
                );
            }
        };
        let task = Some(local.task_id().to_string());
        let metrics = state.metrics.clone();
        let workers = self.workers.clone();
        let done = move |report: Option<endpoint::RequestReport>| {
            if let Some(report) = report {
                metrics
                    .instantiate
                    .observe(report.instantiate.as_secs_f64());
                metrics.cpu.observe(report.cpu.as_secs_f64());
                metrics.memory.observe(report.peak_memory_bytes as f64);
                if let Some(failure) = &report.failure {
                    tracing::info!(%failure, "request's instance failed");
                }
            }
            // A slot is free: queued requests look again.
            workers.changed.notify_waiters();
        };
        (
            endpoint::serve(local, request, limits, Box::new(done)).await,
            task,
        )
    }

    /// Scales idle services with an idle timeout to zero.
    fn scale_idle_to_zero(&self) {
        let now = now_millis();
        for route in self.table().iter() {
            let Some(idle) = route.settings.idle_timeout else {
                continue;
            };
            self.publish_activity(route, idle);
            let quiet_for = now.saturating_sub(route.state.last_request.load(Ordering::Relaxed));
            let busy = route.tasks.iter().any(|task| {
                self.workers
                    .get(&task.id, &route.container)
                    .is_some_and(|w| w.in_flight() > 0)
                    || self.remote_counter(&task.id).load(Ordering::Acquire) > 0
            });
            if route.desired_count > 0 && !busy && Duration::from_millis(quiet_for) >= idle {
                let why = format!("no request for {}s", idle.as_secs_f64());
                if let Err(error) = crate::control::routes::set_desired_count(
                    &self.control,
                    &route.cluster,
                    &route.service,
                    0,
                    &why,
                ) {
                    tracing::warn!(service = %route.key, %error, "cannot scale the service to zero");
                }
            }
        }
    }
}

impl Gateway {
    /// Tells the replicas sharing the store that `route` has traffic here (its
    /// `route-activity/` key), at most every quarter of its idle timeout: each replica's
    /// gateway sees only its own requests, and none may scale a service to zero that another
    /// is serving.
    fn publish_activity(&self, route: &Route, idle: Duration) {
        let last = route.state.last_request.load(Ordering::Relaxed);
        let published = route.state.published.load(Ordering::Relaxed);
        let quarter = (idle.as_millis() / 4) as u64;
        if last.saturating_sub(published) < quarter.max(1) {
            return;
        }
        route.state.published.fetch_max(last, Ordering::Relaxed);
        let key = format!("{ACTIVITY}{}", route.key);
        if let Err(error) = self.control.store.put(
            &key,
            &serde_json::json!({"lastRequestMs": last}),
            crate::store::Expect::Any,
        ) {
            tracing::warn!(service = %route.key, %error, "cannot share the route's activity");
        }
    }

    /// Another replica (or this one) had traffic for route `key`: it is active as of now, by
    /// this replica's clock.
    fn heard_activity(&self, key: &str) {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = states.get(key) {
            let now = now_millis();
            state.last_request.fetch_max(now, Ordering::Relaxed);
            state.published.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// The prefix of the keys that say a route had traffic lately (`route-activity/CLUSTER/NAME`).
const ACTIVITY: &str = "route-activity/";

/// The headers that tell another host's agent which task serves a forwarded request, and
/// under which limits.
fn forward_headers(
    task_id: &str,
    container: &str,
    settings: &crate::taskdef::http::HttpSettings,
) -> Vec<(&'static str, String)> {
    vec![
        (FORWARD_TASK, task_id.to_string()),
        (FORWARD_CONTAINER, container.to_string()),
        (FORWARD_TIMEOUT_MS, settings.timeout.as_millis().to_string()),
        (
            FORWARD_QUEUE_MS,
            settings.queue_timeout.as_millis().to_string(),
        ),
        (FORWARD_MAX_REQUEST, settings.max_request_bytes.to_string()),
        (
            FORWARD_MAX_RESPONSE,
            settings.max_response_bytes.to_string(),
        ),
    ]
}

/// The agent's introspection: the ids of the tasks it runs (`{"Running": [...]}`).
pub const AGENT_TASKS_PATH: &str = "/v1/agent/tasks";
const FORWARD_KEY: &str = "x-wasmgate-forward-key";
const FORWARD_TASK: &str = "x-wasmgate-forward-task";
const FORWARD_CONTAINER: &str = "x-wasmgate-forward-container";
const FORWARD_TIMEOUT_MS: &str = "x-wasmgate-forward-timeout-ms";
const FORWARD_QUEUE_MS: &str = "x-wasmgate-forward-queue-ms";
const FORWARD_MAX_REQUEST: &str = "x-wasmgate-forward-max-request-bytes";
const FORWARD_MAX_RESPONSE: &str = "x-wasmgate-forward-max-response-bytes";

/// Serves, on a remote agent, one request the gateway forwarded: on the named task's endpoint
/// (waiting up to the queue timeout for a task that is still starting).
async fn serve_one_forwarded(
    workers: Arc<HttpEndpoints>,
    running: tokio::sync::watch::Receiver<Vec<String>>,
    key: Arc<str>,
    mut request: Request<Incoming>,
) -> Response<GatewayBody> {
    if request.uri().path() == AGENT_TASKS_PATH && request.headers().get(FORWARD_TASK).is_none() {
        let body = serde_json::json!({"Running": *running.borrow()}).to_string();
        let mut response = text(200, body);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if !crate::net::same_secret(&header(FORWARD_KEY).unwrap_or_default(), &key) {
        return text(403, "not a request of this host's controller\n");
    }
    let (Some(task_id), Some(container)) = (header(FORWARD_TASK), header(FORWARD_CONTAINER)) else {
        return text(400, "not a forwarded request (no task named)\n");
    };
    let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
    let mut settings = crate::taskdef::http::HttpSettings::default();
    if let Some(ms) = number(FORWARD_TIMEOUT_MS) {
        settings.timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = number(FORWARD_QUEUE_MS) {
        settings.queue_timeout = Duration::from_millis(ms);
    }
    if let Some(bytes) = number(FORWARD_MAX_REQUEST) {
        settings.max_request_bytes = bytes;
    }
    if let Some(bytes) = number(FORWARD_MAX_RESPONSE) {
        settings.max_response_bytes = bytes;
    }
    for name in [
        FORWARD_KEY,
        FORWARD_TASK,
        FORWARD_CONTAINER,
        FORWARD_TIMEOUT_MS,
        FORWARD_QUEUE_MS,
        FORWARD_MAX_REQUEST,
        FORWARD_MAX_RESPONSE,
    ] {
        request.headers_mut().remove(name);
    }
    let span = tracing::info_span!("forwarded", %task_id);
    async move {
        let deadline = tokio::time::Instant::now() + settings.queue_timeout;
        loop {
            let changed = workers.changed.notified();
            if let Some(local) = workers.get(&task_id, &container) {
                let notify = workers.clone();
                let done = move |_| notify.changed.notify_waiters();
                return endpoint::serve(local, request, limits(&settings), Box::new(done)).await;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => {
                    return text(503, format!("task {task_id} does not serve on this host\n"));
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Serves the requests the gateway forwards to this host's tasks (`wasmgate agent --listen`)
/// until `shutdown`.
pub async fn serve_forwarded(
    listener: TcpListener,
    workers: Arc<HttpEndpoints>,
    running: tokio::sync::watch::Receiver<Vec<String>>,
    key: String,
    shutdown: CancellationToken,
) {
    let key: Arc<str> = key.into();
    let connections = shutdown.clone();
    crate::net::accept_connections(listener, connections, move |stream| {
        let _ = stream.set_nodelay(true);
        let workers = workers.clone();
        let running = running.clone();
        let key = key.clone();
        let shutdown = shutdown.clone();
        async move {
            let service = hyper::service::service_fn(move |request| {
                let workers = workers.clone();
                let running = running.clone();
                let key = key.clone();
                async move {
                    Ok::<_, Infallible>(serve_one_forwarded(workers, running, key, request).await)
                }
            });
            serve_connection(stream, service, shutdown, "forwarded").await;
        }
    })
    .await;
}

/// Serves one connection's requests (HTTP/1.1 or HTTP/2) with `service` until it ends or
/// `shutdown` (then gracefully, letting requests in flight finish).
async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    shutdown: CancellationToken,
    what: &'static str,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<GatewayBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(error) = result {
                tracing::debug!(%error, what, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Serves the gateway on `listener` until `shutdown`; keeps the route table current.
///
/// Connections are served by one thread per core, each with a single-threaded runtime: the
/// accept loop hands each new connection to the core serving the fewest, and from then on
/// its requests are parsed, routed and run in their instances on that one thread (no
/// work-stealing hop, no wake-up across cores per request). Handing out connections by count
/// rather than by `SO_REUSEPORT`'s hash keeps the cores evenly loaded with few connections.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let refresher = tokio::spawn(keep_routes_current(gateway.clone(), shutdown.clone()));
    let count = std::thread::available_parallelism().map_or(1, usize::from);
    let mut cores = Vec::new();
    let mut ended = Vec::new();
    for index in 0..count {
        match Core::start(index, gateway.clone(), shutdown.clone()) {
            Ok((core, done)) => {
                cores.push(core);
                ended.push(done);
            }
            Err(error) => tracing::error!(%error, "cannot start a gateway thread"),
        }
    }
    let cores = Arc::new(cores);
    crate::net::accept_connections(listener, shutdown.clone(), move |stream| {
        let _ = stream.set_nodelay(true);
        if let Some(core) = cores
            .iter()
            .min_by_key(|c| c.connections.load(Ordering::Relaxed))
        {
            core.hand(stream);
        }
        async {}
    })
    .await;
    // The accept loop's copy of the cores is gone: each core's queue closes, and it drains.
    for done in ended {
        let _ = done.await;
    }
    let _ = refresher.await;
}

/// One core of the gateway: a thread with a single-threaded runtime, serving the connections
/// handed to it.
struct Core {
    queue: tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>,
    /// Connections it serves now.
    connections: Arc<AtomicUsize>,
}

impl Core {
    fn start(
        index: usize,
        gateway: Arc<Gateway>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Self, tokio::sync::oneshot::Receiver<()>)> {
        let (queue, mut handed) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("gateway-{index}"))
            .spawn(move || {
                let _done = done;
                runtime.block_on(async move {
                    let mut served = tokio::task::JoinSet::new();
                    while let Some(stream) = handed.recv().await {
                        let stream = match stream
                            .set_nonblocking(true)
                            .and_then(|()| tokio::net::TcpStream::from_std(stream))
                        {
                            Ok(stream) => stream,
                            Err(error) => {
                                tracing::warn!(%error, "cannot serve a gateway connection");
                                count.fetch_sub(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        let gateway = gateway.clone();
                        let shutdown = shutdown.clone();
                        let count = count.clone();
                        served.spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                let gateway = gateway.clone();
                                async move { Ok::<_, Infallible>(gateway.handle(request).await) }
                            });
                            serve_connection(stream, service, shutdown, "gateway").await;
                            count.fetch_sub(1, Ordering::Relaxed);
                        });
                        while served.try_join_next().is_some() {}
                    }
                    while served.join_next().await.is_some() {}
                });
            })?;
        Ok((Self { queue, connections }, ended))
    }

    /// Gives this core a new connection.
    fn hand(&self, stream: tokio::net::TcpStream) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(stream).is_err() {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Rebuilds the route table when services or tasks change (bursts coalesced), and scales idle
/// services to zero.
async fn keep_routes_current(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut changes = gateway.control.store.watch();
    let mut idle_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let refresh = {
            let gateway = gateway.clone();
            tokio::task::spawn_blocking(move || gateway.refresh()).await
        };
        if let Ok(Err(error)) = refresh {
            tracing::warn!(%error, "cannot rebuild the gateway's routes");
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = idle_check.tick() => {
                    let gateway = gateway.clone();
                    let _ = tokio::task::spawn_blocking(move || gateway.scale_idle_to_zero()).await;
                }
                change = changes.recv() => match change {
                    Ok(change) if change.key.starts_with("tasks/") || change.key.starts_with("services/") || change.key.starts_with("hosts/") => break,
                    Ok(change) => {
                        if let Some(route) = change.key.strip_prefix(ACTIVITY) {
                            gateway.heard_activity(route);
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        while changes.try_recv().is_ok() {}
    }
}
