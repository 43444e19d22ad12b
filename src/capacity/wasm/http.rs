//! HTTP handlers: a container whose image is a `wasi:http/proxy` component does not run as a
//! process; it becomes an [`HttpWorker`] that serves each request in a fresh instance
//! (`ProxyPre` → new `Store` with the container's limits → instantiate → `handle`), until the
//! container is stopped. The gateway finds workers in [`HttpWorkers`].
//!
//! Per request: the container's memory limit (on the store), a deadline (the guest yields at
//! epoch ticks, so a spinning guest is dropped at the deadline), outbound HTTP only to the
//! allowed hosts, and an account of what it cost (instantiate time, CPU time on the threads that
//! polled it, peak memory) added to the container's stats.
//!
//! Architecture invariant: a request's instance never outlives its deadline and never sees
//! another request's state; the worker holds only the pre-linked program.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{Notify, watch};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::limits::MemoryLimiter;
use super::run::{next_stop, thread_cpu_time};
use super::sandbox;
use crate::capacity::handle::HandleParts;
use crate::capacity::{
    CapacityError, ContainerExit, ContainerHandle, ContainerSpec, LogStream, StatsCell,
};

/// The data of one request's `Store`.
pub struct HttpState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    limiter: MemoryLimiter,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Which hosts a guest may send HTTP requests to: `host` or `host:port` entries, `*` for any.
/// Empty: none (the default).
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Arc<[String]>,
}

impl OutboundPolicy {
    pub fn allowing(hosts: &[String]) -> Self {
        Self {
            allowed: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed.iter().any(|entry| {
            entry == "*"
                || *entry == host
                || port.is_some_and(|port| *entry == format!("{host}:{port}"))
        })
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _body_done: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        let host = request.uri().host().unwrap_or_default().to_string();
        let port = request.uri().port_u16();
        if !self.allows(&host, port) {
            tracing::info!(%host, "outbound HTTP denied (not in wasmgate.http.outbound-hosts)");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

/// The limits of one request.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// From the request's arrival to the end of its response body.
    pub timeout: Duration,
}

/// What serving one request cost; known when its instance is gone.
#[derive(Debug, Clone, Default)]
pub struct RequestReport {
    pub instantiate: Duration,
    pub cpu: Duration,
    pub peak_memory_bytes: u64,
    /// Why the instance ended badly, if it did (a trap, the deadline).
    pub failure: Option<String>,
}

/// Why a request got no response from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// The deadline passed before the response's headers.
    Timeout,
    /// The guest trapped, ran out of memory, or ended without a response.
    Guest(String),
    /// The guest answered with an error code of wasi:http.
    ErrorCode(String),
    /// The worker is stopping.
    Stopping,
}

/// A `wasi:http` container serving requests.
pub struct HttpWorker {
    pub task_id: String,
    pub container: String,
    engine: Engine,
    pre: ProxyPre<HttpState>,
    spec: ContainerSpec,
    outbound: OutboundPolicy,
    stats: Arc<StatsCell>,
    in_flight: AtomicUsize,
    accepting: AtomicBool,
    idle: Notify,
    /// An ended stdin for every request's instance.
    no_input: watch::Receiver<bool>,
}

impl HttpWorker {
    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Serves one request in a fresh instance. Returns the response once its headers are known;
    /// the body streams on from the instance, which `report` hears of when it is gone.
    pub async fn serve<B>(
        self: &Arc<Self>,
        request: hyper::Request<B>,
        limits: &RequestLimits,
        report: impl FnOnce(RequestReport) + Send + 'static,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HttpFailure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(HttpFailure::Stopping);
        }
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let guard = InFlight::enter(self.clone());
        let mut store = self.new_store().map_err(HttpFailure::Guest)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| HttpFailure::Guest(format!("{e:#}")))?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| HttpFailure::Guest(format!("{e:#}")))?;
        let pre = self.pre.clone();
        let worker = self.clone();
        let guest = tokio::spawn(async move {
            let _guard = guard;
            let mut instantiate = Duration::ZERO;
            let run = CpuTimed::new(async {
                let started = Instant::now();
                let proxy = pre.instantiate_async(&mut store).await?;
                instantiate = started.elapsed();
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            });
            let (result, cpu) = match tokio::time::timeout_at(deadline, run).await {
                Ok((result, cpu)) => (result.map_err(|e| describe_error(&e)), cpu),
                Err(_) => (
                    Err("the request's deadline passed".to_string()),
                    Duration::ZERO,
                ),
            };
            let limiter = &mut store.data_mut().limiter;
            let failure = match (&result, limiter.denial()) {
                (Err(_), Some(denial)) => Some(format!(
                    "OutOfMemoryError: the memory limit of {} was reached",
                    super::describe_bytes(denial.limit_bytes)
                )),
                (Err(why), None) => Some(why.clone()),
                (Ok(()), _) => None,
            };
            // An instance's memory only grows: what it holds at the end is its peak.
            let peak = store.data().limiter.held_bytes();
            store.data_mut().limiter.release();
            worker.stats.add_cpu(cpu);
            report(RequestReport {
                instantiate,
                cpu,
                peak_memory_bytes: peak,
                failure: failure.clone(),
            });
            failure
        });
        let answer = tokio::select! {
            answer = receiver => answer,
            () = tokio::time::sleep_until(deadline) => return Err(HttpFailure::Timeout),
        };
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HttpFailure::ErrorCode(format!("{code:?}"))),
            // The instance ended without a response at its deadline (it races the wait above).
            Err(_) if tokio::time::Instant::now() >= deadline => Err(HttpFailure::Timeout),
            // The instance ended without a response: say why.
            Err(_) => match guest.await {
                Ok(Some(failure)) => Err(HttpFailure::Guest(failure)),
                Ok(None) => Err(HttpFailure::Guest(
                    "the handler returned without setting a response".into(),
                )),
                Err(join) => Err(HttpFailure::Guest(format!("the instance failed: {join}"))),
            },
        }
    }

    fn new_store(&self) -> Result<Store<HttpState>, String> {
        let mut wasi = sandbox::wasi_builder(&self.spec, self.no_input.clone())
            .map_err(|e| format!("cannot build the sandbox: {e}"))?;
        let request_stats = Arc::new(StatsCell::default());
        let limiter = MemoryLimiter::new(self.spec.memory_limit_bytes, request_stats)
            .with_aggregate(self.stats.clone());
        let mut store = Store::new(
            &self.engine,
            HttpState {
                wasi: wasi.build(),
                table: ResourceTable::new(),
                http: WasiHttpCtx::new(),
                hooks: self.outbound.clone(),
                limiter,
            },
        );
        store.limiter(|state| &mut state.limiter);
        // Yield to the runtime every few ticks, so a spinning guest neither holds a worker
        // thread nor outlives its deadline.
        store.set_epoch_deadline(YIELD_EVERY_TICKS);
        store.epoch_deadline_async_yield_and_update(YIELD_EVERY_TICKS);
        Ok(store)
    }
}

/// Epoch ticks (1 ms each) between a running request's yields.
const YIELD_EVERY_TICKS: u64 = 10;

fn describe_error(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("WasmTrap: {trap}"),
        None => format!("{error:#}"),
    }
}

/// Counts a request in flight for as long as it lives; wakes a draining worker at zero.
struct InFlight(Arc<HttpWorker>);

impl InFlight {
    fn enter(worker: Arc<HttpWorker>) -> Self {
        worker.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(worker)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A future and the CPU time of the threads that polled it.
struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    cpu: Duration,
}

impl<F: Future> CpuTimed<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            cpu: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(before);
        self.cpu += spent;
        polled.map(|output| (output, self.cpu))
    }
}

/// The HTTP workers of this host, by task and container, and the ports of container images'
/// tasks that serve HTTP (the gateway proxies to them).
#[derive(Default)]
pub struct HttpWorkers {
    workers: RwLock<HashMap<String, Vec<Arc<HttpWorker>>>>,
    proxies: RwLock<HashMap<String, (String, std::net::SocketAddr)>>,
    /// Signalled when a worker arrives or a request ends (queued requests look again).
    pub changed: Notify,
}

impl HttpWorkers {
    /// The worker of `container` in task `task_id`, if it serves.
    pub fn get(&self, task_id: &str, container: &str) -> Option<Arc<HttpWorker>> {
        let workers = self.workers.read().unwrap_or_else(|p| p.into_inner());
        workers
            .get(task_id)?
            .iter()
            .find(|w| w.container == container)
            .cloned()
    }

    /// Where container `container` of task `task_id` serves HTTP, if it does.
    pub fn proxy(&self, task_id: &str, container: &str) -> Option<std::net::SocketAddr> {
        let proxies = self.proxies.read().unwrap_or_else(|p| p.into_inner());
        proxies
            .get(task_id)
            .filter(|(name, _)| name == container)
            .map(|(_, address)| *address)
    }

    /// A container image's task serves HTTP at `address`.
    pub fn add_proxy(&self, task_id: &str, container: &str, address: std::net::SocketAddr) {
        self.proxies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.to_string(), (container.to_string(), address));
        self.changed.notify_waiters();
    }

    pub fn remove_proxy(&self, task_id: &str) {
        self.proxies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }

    fn insert(&self, worker: Arc<HttpWorker>) {
        self.workers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(worker.task_id.clone())
            .or_default()
            .push(worker);
        self.changed.notify_waiters();
    }

    fn remove(&self, worker: &HttpWorker) {
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = workers.get_mut(&worker.task_id) {
            list.retain(|w| w.container != worker.container);
            if list.is_empty() {
                workers.remove(&worker.task_id);
            }
        }
    }
}

/// Starts `spec` as an HTTP worker of `pre`: registered until a stop request, which lets the
/// requests in flight finish within the grace period.
pub(super) fn start_worker(
    engine: Engine,
    pre: ProxyPre<HttpState>,
    spec: ContainerSpec,
    outbound: OutboundPolicy,
    registry: Arc<HttpWorkers>,
) -> Result<ContainerHandle, CapacityError> {
    let (handle, parts) = ContainerHandle::new();
    let HandleParts {
        mut stop,
        exit,
        stats,
    } = parts;
    let (no_input_tx, no_input) = watch::channel(true);
    let worker = Arc::new(HttpWorker {
        task_id: spec.task_id.clone(),
        container: spec.name.clone(),
        engine,
        pre,
        spec: spec.clone(),
        outbound,
        stats,
        in_flight: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        idle: Notify::new(),
        no_input,
    });
    spec.log.write(
        LogStream::Stderr,
        b"wasmgate: serving HTTP (wasi:http/proxy): a fresh instance per request\n",
    );
    registry.insert(worker.clone());
    let span = tracing::info_span!("http_worker", task_id = %spec.task_id, container = %spec.name);
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| CapacityError::Start("an HTTP worker needs a tokio runtime".into()))?;
    runtime.spawn(tracing::Instrument::instrument(
        async move {
            let _keep = no_input_tx;
            let request = next_stop(&mut stop).await;
            worker.accepting.store(false, Ordering::Release);
            registry.remove(&worker);
            let drained = async {
                loop {
                    let idle = worker.idle.notified();
                    if worker.in_flight() == 0 {
                        return;
                    }
                    idle.await;
                }
            };
            let outcome = match tokio::time::timeout(request.grace, drained).await {
                Ok(()) => ContainerExit::code(0),
                Err(_) => ContainerExit::with_reason(
                    super::run::EXIT_KILLED,
                    format!(
                        "StopTimeout: {} requests were still being served after {}s",
                        worker.in_flight(),
                        request.grace.as_secs()
                    ),
                ),
            };
            tracing::info!(exit_code = outcome.exit_code, "HTTP worker stopped");
            exit.send_replace(Some(outcome));
        },
        span,
    ));
    Ok(handle)
}
