//! HTTP handlers: a container whose image is a `wasi:http/proxy` component does not run as a
//! process; it becomes an [`HttpWorker`] that serves each request in a fresh instance
//! (`ProxyPre` → new `Store` with the container's limits → instantiate → `handle`), until the
//! container is stopped. It is one kind of [`HttpEndpoint`]: the gateway and the agent find it
//! in the host's [`HttpEndpoints`] beside the ports of container images' tasks.
//!
//! Per request: the container's memory limit (on the store), a deadline (the guest yields at
//! epoch ticks, so a spinning guest is dropped at the deadline), outbound HTTP only to the
//! allowed hosts, and an account of what it cost (instantiate time, CPU time on the threads that
//! polled it, peak memory) added to the container's stats.
//!
//! Architecture invariant: a request's instance never outlives its deadline and never sees
//! another request's state; the worker holds only the pre-linked program.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
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
use super::run::next_stop;
use super::sandbox;
use crate::capacity::endpoint::{
    HttpEndpoint, HttpEndpoints, HttpLimits, OnServed, RequestReport, Serving, text, too_large,
};
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
        limits: &HttpLimits,
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
        let guest = async move {
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
        };
        // The instance runs in this task, not one of its own: a handler that answers and ends
        // within its first poll (most do) costs no spawn and no wake-up across tasks. One that
        // is still streaming its body when the headers are known goes on in a task of its own.
        let mut guest = Box::pin(guest);
        let mut receiver = receiver;
        let first = tokio::select! {
            biased;
            answer = &mut receiver => First::Answer(answer),
            failure = &mut guest => First::Ended(failure),
            () = tokio::time::sleep_until(deadline) => return Err(HttpFailure::Timeout),
        };
        let (answer, ended) = match first {
            First::Answer(answer) => (answer, None),
            // Its response, if it set one, is waiting.
            First::Ended(failure) => ((&mut receiver).await, Some(failure)),
        };
        match answer {
            Ok(answer) => {
                if ended.is_none() {
                    tokio::spawn(guest);
                }
                answer.map_err(|code| HttpFailure::ErrorCode(format!("{code:?}")))
            }
            // The instance ended without a response at its deadline (it races the wait above).
            Err(_) if tokio::time::Instant::now() >= deadline => Err(HttpFailure::Timeout),
            // The instance ended without a response: say why.
            Err(_) => {
                let failure = match ended {
                    Some(failure) => failure,
                    None => guest.await,
                };
                Err(HttpFailure::Guest(failure.unwrap_or_else(|| {
                    "the handler returned without setting a response".into()
                })))
            }
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

/// What a request's wait for its response saw first.
enum First<A> {
    Answer(A),
    Ended(Option<String>),
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

/// A future and the time spent polling it: the CPU time of the threads that polled it, as
/// long as the OS does not take the core away mid-poll. Read from the monotonic clock (the
/// vDSO), since a thread CPU clock is a system call, twice per poll, on every request.
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
        let before = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.cpu += before.elapsed();
        polled.map(|output| (output, self.cpu))
    }
}

/// A health check of a `wasi:http` component, the way `curl -f URL` run inside its container
/// checks a server: a GET of the path of the first URL (`http://localhost:8080/healthz`) or
/// absolute path among the check's arguments (`/` when there is none), served by a fresh
/// instance with the container's environment and limits, never registered as an endpoint.
/// A status below 400 passes.
pub(super) async fn probe(
    engine: Engine,
    pre: ProxyPre<HttpState>,
    spec: &ContainerSpec,
    args: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let path = probe_path(args);
    let (_keep, no_input) = watch::channel(true);
    let worker = Arc::new(HttpWorker {
        task_id: spec.task_id.clone(),
        container: spec.name.clone(),
        engine,
        pre,
        spec: spec.clone(),
        outbound: OutboundPolicy::allowing(&spec.http_outbound_hosts),
        stats: Arc::new(StatsCell::default()),
        in_flight: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        idle: Notify::new(),
        no_input,
    });
    let request = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::USER_AGENT, "wasmgate-health-check")
        .body(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        )
        .map_err(|e| format!("GET {path}: {e}"))?;
    let limits = HttpLimits {
        timeout,
        max_request_bytes: 0,
        max_response_bytes: 1 << 20,
    };
    match HttpWorker::serve(&worker, request, &limits, |_| {}).await {
        Ok(response) if response.status().as_u16() < 400 => Ok(()),
        Ok(response) => Err(format!("GET {path}: {}", response.status())),
        Err(HttpFailure::Timeout) => Err(format!(
            "GET {path}: no answer within {}s",
            timeout.as_secs()
        )),
        Err(failure) => Err(format!("GET {path}: {failure:?}")),
    }
}

/// The path a check's arguments ask for: that of the first `http://` or `https://` URL, else
/// the first argument that is an absolute path, else `/`.
fn probe_path(args: &[String]) -> String {
    for arg in args {
        if let Some(rest) = arg
            .strip_prefix("http://")
            .or_else(|| arg.strip_prefix("https://"))
        {
            return match rest.find('/') {
                Some(at) => rest[at..].to_string(),
                None => "/".to_string(),
            };
        }
    }
    args.iter()
        .find(|a| a.starts_with('/'))
        .cloned()
        .unwrap_or_else(|| "/".to_string())
}

/// Starts `spec` as an HTTP worker of `pre`: registered until a stop request, which lets the
/// requests in flight finish within the grace period.
pub(super) fn start_worker(
    engine: Engine,
    pre: ProxyPre<HttpState>,
    spec: ContainerSpec,
    outbound: OutboundPolicy,
    registry: Arc<HttpEndpoints>,
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
            registry.remove(&worker.task_id, &worker.container);
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

impl HttpEndpoint for HttpWorker {
    fn task_id(&self) -> &str {
        &self.task_id
    }

    fn container(&self) -> &str {
        &self.container
    }

    fn in_flight(&self) -> usize {
        HttpWorker::in_flight(self)
    }

    /// Serves a request in a fresh instance under `limits`: the request body cut at its
    /// limit (413), the response's at its (502), the deadline (504), a trap (500), a wasi:http
    /// error code (502).
    fn serve(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
        limits: HttpLimits,
        done: OnServed,
    ) -> Serving {
        Box::pin(async move {
            // A body that turns out longer than it said (or chunked) is cut at the limit; the
            // handler sees a read error and the client a 413.
            let over_limit = Arc::new(AtomicBool::new(false));
            let limit = usize::try_from(limits.max_request_bytes).unwrap_or(usize::MAX);
            let flag = over_limit.clone();
            let request = request.map(move |body| {
                Limited::new(body, limit).map_err(move |error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        flag.store(true, Ordering::Relaxed);
                        wasmtime_wasi_http::Error::HttpRequestBodySize(None)
                    } else {
                        match error.downcast::<hyper::Error>() {
                            Ok(error) => wasmtime_wasi_http::Error::Hyper(*error),
                            Err(error) => {
                                wasmtime_wasi_http::Error::InternalError(Some(error.to_string()))
                            }
                        }
                    }
                })
            });
            let answer =
                HttpWorker::serve(&self, request, &limits, move |report| done(Some(report))).await;
            if over_limit.load(Ordering::Relaxed) {
                return too_large(&limits);
            }
            match answer {
                Ok(response) => {
                    let max = limits.max_response_bytes;
                    let declared = response
                        .headers()
                        .get(hyper::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if declared.is_some_and(|length| length > max) {
                        return text(
                            502,
                            format!("the response is over the limit of {max} bytes\n"),
                        );
                    }
                    let max = usize::try_from(max).unwrap_or(usize::MAX);
                    response.map(|body| {
                        Limited::new(body, max)
                            .map_err(|error| {
                                tracing::info!(%error, "response body cut");
                                error
                            })
                            .boxed_unsync()
                    })
                }
                Err(HttpFailure::Timeout) => text(
                    504,
                    format!(
                        "the handler did not answer within {}s\n",
                        limits.timeout.as_secs_f64()
                    ),
                ),
                Err(HttpFailure::Guest(why)) => text(500, format!("the handler failed: {why}\n")),
                Err(HttpFailure::ErrorCode(code)) => {
                    text(502, format!("the handler answered with an error: {code}\n"))
                }
                Err(HttpFailure::Stopping) => text(503, "the task is stopping; try again\n"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::probe_path;

    #[test]
    fn a_check_asks_for_the_path_of_its_url() {
        let path =
            |args: &[&str]| probe_path(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert_eq!(
            path(&[
                "curl",
                "-f",
                "http://localhost:8080/healthz",
                "||",
                "exit",
                "1"
            ]),
            "/healthz"
        );
        assert_eq!(path(&["wget", "-q", "https://localhost"]), "/");
        assert_eq!(path(&["/ready?deep=1"]), "/ready?deep=1");
        assert_eq!(path(&[]), "/");
    }
}
