//! HTTP endpoints: the containers on this host that serve HTTP, whatever runs them. A Wasm
//! `wasi:http` component serves each request in a fresh instance; a container image's task
//! serves on its port, which the request is proxied to. Both sit in one registry
//! ([`HttpEndpoints`]) behind one object-safe trait ([`HttpEndpoint`]), so the gateway and the
//! agent's forwarded-request listener never ask which kind serves.
//!
//! Answers of an endpoint itself: 413 request body too large, 500 the handler trapped or gave
//! no response, 502 the handler answered with an error (or a port did not answer, or the
//! response was too large), 503 the container is stopping, 504 the deadline passed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::Notify;

/// The body of every response an endpoint (or the gateway) gives.
pub type HttpBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The limits of one request.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// From the request's arrival to its response's headers (and, for a Wasm instance, to the
    /// end of its body).
    pub timeout: Duration,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
}

/// What serving one request in a Wasm instance cost; known when the instance is gone.
#[derive(Debug, Clone, Default)]
pub struct RequestReport {
    pub instantiate: Duration,
    pub cpu: Duration,
    pub peak_memory_bytes: u64,
    /// Why the instance ended badly, if it did (a trap, the deadline).
    pub failure: Option<String>,
}

/// Told once when an endpoint is done with a request: with the instance's figures for a Wasm
/// endpoint, `None` for a proxied port (told when the response's headers arrive).
pub type OnServed = Box<dyn FnOnce(Option<RequestReport>) + Send>;

/// A response on its way.
pub type Serving = Pin<Box<dyn Future<Output = Response<HttpBody>> + Send>>;

/// A container that serves HTTP on this host.
pub trait HttpEndpoint: Send + Sync + 'static {
    fn task_id(&self) -> &str;
    fn container(&self) -> &str;
    /// Requests it is serving now.
    fn in_flight(&self) -> usize;
    /// Serves one request under `limits`.
    fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        limits: HttpLimits,
        done: OnServed,
    ) -> Serving;
}

/// Serves `request` on `endpoint` and names the task that answered (`x-wasmgate-task`).
pub async fn serve(
    endpoint: Arc<dyn HttpEndpoint>,
    request: Request<Incoming>,
    limits: HttpLimits,
    done: OnServed,
) -> Response<HttpBody> {
    let task = hyper::header::HeaderValue::from_str(endpoint.task_id()).ok();
    let mut response = endpoint.serve(request, limits, done).await;
    if let Some(task) = task {
        response.headers_mut().insert("x-wasmgate-task", task);
    }
    response
}

/// A plain-text answer.
pub fn text(status: u16, message: impl Into<String>) -> Response<HttpBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to a request body over the limit.
pub fn too_large(limits: &HttpLimits) -> Response<HttpBody> {
    text(
        413,
        format!(
            "request body over the limit of {} bytes\n",
            limits.max_request_bytes
        ),
    )
}

/// Every endpoint of this host, by task and container.
#[derive(Default)]
pub struct HttpEndpoints {
    endpoints: RwLock<HashMap<String, Vec<Arc<dyn HttpEndpoint>>>>,
    /// Signalled when an endpoint arrives or a request ends (queued requests look again).
    pub changed: Notify,
}

impl HttpEndpoints {
    /// The endpoint of `container` in task `task_id`, if it serves.
    pub fn get(&self, task_id: &str, container: &str) -> Option<Arc<dyn HttpEndpoint>> {
        let endpoints = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        endpoints
            .get(task_id)?
            .iter()
            .find(|e| e.container() == container)
            .cloned()
    }

    pub fn insert(&self, endpoint: Arc<dyn HttpEndpoint>) {
        self.endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(endpoint.task_id().to_string())
            .or_default()
            .push(endpoint);
        self.changed.notify_waiters();
    }

    pub fn remove(&self, task_id: &str, container: &str) {
        let mut endpoints = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = endpoints.get_mut(task_id) {
            list.retain(|e| e.container() != container);
            if list.is_empty() {
                endpoints.remove(task_id);
            }
        }
    }
}

/// A container image's task serving HTTP on a port: of this host (host mode) or of the
/// task's own address (awsvpc, bridge).
pub struct PortEndpoint {
    task_id: String,
    container: String,
    address: std::net::SocketAddr,
    in_flight: AtomicUsize,
}

impl PortEndpoint {
    pub fn new(task_id: &str, container: &str, address: std::net::SocketAddr) -> Self {
        Self {
            task_id: task_id.to_string(),
            container: container.to_string(),
            address,
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// Counts a request in flight until dropped.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpEndpoint for PortEndpoint {
    fn task_id(&self) -> &str {
        &self.task_id
    }

    fn container(&self) -> &str {
        &self.container
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        limits: HttpLimits,
        done: OnServed,
    ) -> Serving {
        Box::pin(async move {
            let response = {
                let _counted = Counted::enter(&self.in_flight);
                forward(&self.address.to_string(), &limits, request, &[]).await
            };
            done(None);
            response
        })
    }
}

/// Forwards a request to `address` (a container's port, another host's agent) with
/// `headers` added, under `limits` (body sizes; the deadline → 504); an address that does
/// not answer is 502.
pub async fn forward(
    address: &str,
    limits: &HttpLimits,
    mut request: Request<Incoming>,
    headers: &[(&'static str, String)],
) -> Response<HttpBody> {
    for (name, value) in headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
            request.headers_mut().insert(*name, value);
        }
    }
    let limit = usize::try_from(limits.max_request_bytes).unwrap_or(usize::MAX);
    let request = request.map(|body| Limited::new(body, limit));
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(address).await?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)
    };
    match tokio::time::timeout(limits.timeout, exchange).await {
        Err(_) => text(
            504,
            format!(
                "the container did not answer within {}s\n",
                limits.timeout.as_secs_f64()
            ),
        ),
        Ok(Err(error)) => text(
            502,
            format!("the container does not answer on {address}: {error}\n"),
        ),
        Ok(Ok(response)) => {
            let max = usize::try_from(limits.max_response_bytes).unwrap_or(usize::MAX);
            response.map(|body| {
                Limited::new(body, max)
                    .map_err(|error| {
                        tracing::info!(%error, "proxied response body cut");
                        error
                    })
                    .boxed_unsync()
            })
        }
    }
}
