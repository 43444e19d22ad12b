//! The ECS JSON 1.1 API: `POST /` with `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>`
//! and a camelCase JSON body, answered with ECS's shapes and error shapes, so that the AWS CLI
//! and every AWS SDK work against wasmgate unchanged.
//!
//! Architecture invariant: the API layer owns every ECS shape; below it (store, agent,
//! capacity) nothing knows ECS JSON. Every request runs under a span with its action and id.

mod account;
mod agent_ops;
mod attributes;
mod capacity_providers;
pub use crate::arn;
mod clusters;
mod container_instances;
mod daemon_task_definitions;
mod daemons;
mod enums;
mod error;
mod express;
mod gateways;
mod http_routes;
mod logs;
mod observe;
pub mod scheduler;
pub mod services;
mod sigv4;
mod stacks;
mod tags;
mod task_definitions;
mod tasks;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use crate::arn::ArnScope;
pub use crate::records::timestamp;
pub use clusters::DEFAULT_CLUSTER;
pub use error::{ApiError, ErrorKind};
pub use observe::{HttpFigures, MetricsSource};
pub use sigv4::{Credentials, SigningKey, same_secret, sign};

use crate::control::Control;

/// The prefix of every ECS `X-Amz-Target`.
const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
/// The prefix of wasmgate's own actions (task logs and stats): a namespace of its own, so
/// they are never mistaken for ECS's. The action keeps the prefix (`WasmgateV1.GetTaskLogs`).
pub const WASMGATE_TARGET_PREFIX: &str = "WasmgateV1.";
/// The largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// `maxResults` when a list call gives none (ECS's default).
const DEFAULT_PAGE: usize = 100;

/// The ECS API over the control plane: it translates ECS shapes, nothing more.
pub struct Api {
    pub control: Arc<Control>,
    request_ids: AtomicU64,
    /// When set, every request must carry a valid SigV4 signature by one of these keys.
    credentials: Option<Credentials>,
    requests: observe::RequestMetrics,
    /// Other figures `/metrics` shows (the gateway's).
    metrics_sources: std::sync::Mutex<Vec<Arc<dyn MetricsSource>>>,
    /// The URL this API is served at, once bound (DiscoverPollEndpoint answers it).
    endpoint: std::sync::OnceLock<String>,
    /// Where the gateway listens, once bound (Express services' and gateways' URLs).
    gateway_address: std::sync::OnceLock<std::net::SocketAddr>,
    /// The stacks a deploy or delete is changing now (one at a time per stack).
    stacks_busy: stacks::StackLocks,
}

impl Api {
    /// The API over `control`; makes sure the `default` cluster exists.
    pub fn new(control: Arc<Control>) -> Result<Self, ApiError> {
        let api = Self {
            control,
            request_ids: AtomicU64::new(1),
            credentials: None,
            requests: observe::RequestMetrics::default(),
            metrics_sources: std::sync::Mutex::new(Vec::new()),
            endpoint: std::sync::OnceLock::new(),
            gateway_address: std::sync::OnceLock::new(),
            stacks_busy: stacks::StackLocks::default(),
        };
        clusters::ensure(&api, DEFAULT_CLUSTER, serde_json::Map::new())?;
        Ok(api)
    }

    /// Requires every request to be signed (SigV4) by one of `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Records the URL the API is served at (once; later calls are ignored).
    pub fn set_endpoint(&self, url: String) {
        let _ = self.endpoint.set(url);
    }

    /// Tells the API where the gateway serves (the first address given stays).
    pub fn set_gateway_address(&self, address: std::net::SocketAddr) {
        let _ = self.gateway_address.set(address);
    }

    /// Where the gateway serves, if this server runs one.
    pub(crate) fn gateway_address(&self) -> Option<std::net::SocketAddr> {
        self.gateway_address.get().copied()
    }

    /// Adds figures to `/metrics`.
    pub fn add_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        self.metrics_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Runs one action on a JSON body.
    pub fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        enums::check(action, &body)?;
        match action {
            "CreateCluster" => clusters::create(self, body),
            "DescribeClusters" => clusters::describe(self, body),
            "ListClusters" => clusters::list(self, body),
            "DeleteCluster" => clusters::delete(self, body),
            "UpdateCluster" => clusters::update(self, body),
            "UpdateClusterSettings" => clusters::update_settings(self, body),
            "CreateCapacityProvider" => capacity_providers::create(self, body),
            "UpdateCapacityProvider" => capacity_providers::update(self, body),
            "DeleteCapacityProvider" => capacity_providers::delete(self, body),
            "DescribeCapacityProviders" => capacity_providers::describe(self, body),
            "PutClusterCapacityProviders" => capacity_providers::put_cluster(self, body),
            "RegisterContainerInstance" => agent_ops::register(self, body),
            "DiscoverPollEndpoint" => agent_ops::discover_poll_endpoint(
                self,
                body,
                self.endpoint.get().map_or("", String::as_str),
            ),
            "SubmitTaskStateChange" => agent_ops::submit_task_state_change(self, body),
            "SubmitContainerStateChange" => agent_ops::submit_container_state_change(self, body),
            "SubmitAttachmentStateChanges" => {
                agent_ops::submit_attachment_state_changes(self, body)
            }
            "UpdateContainerAgent" => agent_ops::update_container_agent(self, body),
            "PutAttributes" => attributes::put(self, body),
            "DeleteAttributes" => attributes::delete(self, body),
            "ListAttributes" => attributes::list(self, body),
            "RegisterTaskDefinition" => task_definitions::register(self, body),
            "DescribeTaskDefinition" => task_definitions::describe(self, body),
            "ListTaskDefinitions" => task_definitions::list(self, body),
            "ListTaskDefinitionFamilies" => task_definitions::list_families(self, body),
            "DeregisterTaskDefinition" => task_definitions::deregister(self, body),
            "DeleteTaskDefinitions" => task_definitions::delete(self, body),
            "RunTask" => tasks::run(self, body),
            "DescribeTasks" => tasks::describe(self, body),
            "ListTasks" => tasks::list(self, body),
            "StopTask" => tasks::stop(self, body),
            "StartTask" => tasks::start(self, body),
            "ExecuteCommand" => tasks::execute_command(self, body),
            "CreateService" => services::create(self, body),
            "UpdateService" => services::update(self, body),
            "DeleteService" => services::delete(self, body),
            "DescribeServices" => services::describe(self, body),
            "ListServices" => services::list(self, body),
            "ListServiceDeployments" => services::deployments::list(self, body),
            "DescribeServiceDeployments" => services::deployments::describe(self, body),
            "DescribeServiceRevisions" => services::deployments::describe_revisions(self, body),
            "StopServiceDeployment" => services::deployments::stop(self, body),
            "ContinueServiceDeployment" => services::deployments::continue_deployment(self, body),
            "GetTaskProtection" => services::protection::get(self, body),
            "UpdateTaskProtection" => services::protection::update(self, body),
            "ListServicesByNamespace" => services::namespaces::list(self, body),
            "CreateTaskSet" => services::task_sets::create(self, body),
            "UpdateTaskSet" => services::task_sets::update(self, body),
            "DeleteTaskSet" => services::task_sets::delete(self, body),
            "DescribeTaskSets" => services::task_sets::describe(self, body),
            "UpdateServicePrimaryTaskSet" => services::task_sets::update_primary(self, body),
            "ListContainerInstances" => container_instances::list(self, body),
            "DescribeContainerInstances" => container_instances::describe(self, body),
            "UpdateContainerInstancesState" => container_instances::update_state(self, body),
            "DeregisterContainerInstance" => container_instances::deregister(self, body),
            "PutAccountSetting" => account::put_setting(self, body),
            "PutAccountSettingDefault" => account::put_default(self, body),
            "DeleteAccountSetting" => account::delete_setting(self, body),
            "ListAccountSettings" => account::list(self, body),
            "TagResource" => tags::tag(self, body),
            "UntagResource" => tags::untag(self, body),
            "ListTagsForResource" => tags::list(self, body),
            "CreateDaemon" => daemons::create(self, body),
            "UpdateDaemon" => daemons::update(self, body),
            "DeleteDaemon" => daemons::delete(self, body),
            "DescribeDaemon" => daemons::describe(self, body),
            "ListDaemons" => daemons::list(self, body),
            "DescribeDaemonDeployments" => daemons::describe_deployments(self, body),
            "ListDaemonDeployments" => daemons::list_deployments(self, body),
            "DescribeDaemonRevisions" => daemons::describe_revisions(self, body),
            "RegisterDaemonTaskDefinition" => daemon_task_definitions::register(self, body),
            "DescribeDaemonTaskDefinition" => daemon_task_definitions::describe(self, body),
            "ListDaemonTaskDefinitions" => daemon_task_definitions::list(self, body),
            "DeleteDaemonTaskDefinition" => daemon_task_definitions::delete(self, body),
            "CreateExpressGatewayService" => express::create(self, body),
            "UpdateExpressGatewayService" => express::update(self, body),
            "DeleteExpressGatewayService" => express::delete(self, body),
            "DescribeExpressGatewayService" => express::describe(self, body),
            "CreateGateway" => gateways::create(self, body),
            "UpdateGateway" => gateways::update(self, body),
            "DeleteGateway" => gateways::delete(self, body),
            "DescribeGateway" => gateways::describe(self, body),
            "ListGateways" => gateways::list(self, body),
            "AssociateGatewayWithCluster" => gateways::associate(self, body),
            "DisassociateGatewayFromCluster" => gateways::disassociate(self, body),
            "ListGatewayClusterAssociations" => gateways::list_associations(self, body),
            "DescribeGatewayResources" => gateways::describe_resources(self, body),
            "ListGatewayRoutes" => gateways::list_routes(self, body),
            "DescribeGatewayRoute" => gateways::describe_route(self, body),
            "WasmgateV1.GetTaskLogs" => logs::get_task_logs(self, body),
            "WasmgateV1.GetTaskStats" => logs::get_task_stats(self, body),
            "WasmgateV1.ListHosts" => observe::hosts(self),
            "WasmgateV1.GetHttpRoutes" => http_routes::get(self, body),
            "WasmgateV1.DeployStack" => stacks::deploy(self, body),
            "WasmgateV1.DescribeStack" => stacks::describe(self, body),
            "WasmgateV1.ListStacks" => stacks::list(self, body),
            "WasmgateV1.DeleteStack" => stacks::delete(self, body),
            "WasmgateV1.ListSchedules" => scheduler::cli::list(self, body),
            "WasmgateV1.DescribeSchedule" => scheduler::cli::describe(self, body),
            "WasmgateV1.DeleteSchedule" => scheduler::cli::delete(self, body),
            // The stack engine's AWS::Scheduler::* resources, through the scheduler's checks.
            other if other.starts_with(scheduler::ACTION_PREFIX) => {
                scheduler::call_action(self, &other[scheduler::ACTION_PREFIX.len()..], body)
            }
            other => Err(ApiError::new(
                ErrorKind::UnknownOperationException,
                format!("Unknown or unsupported operation: {other}"),
            )),
        }
    }

    /// Answers the GET endpoints tools read: introspection and metrics.
    fn handle_get(&self, path: &str) -> Response<Full<Bytes>> {
        let json_response = |status: u16, body: Value| {
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
        };
        let result = crate::store::blocking(|| match path.trim_end_matches('/') {
            "/v1/metadata" => observe::metadata(self).map(|v| json_response(200, v)),
            "/v1/leader" => observe::leader(self).map(|v| json_response(200, v)),
            "/v1/tasks" => observe::tasks(self).map(|v| json_response(200, v)),
            "/v1/hosts" => observe::hosts(self).map(|v| json_response(200, v)),
            "/metrics" => observe::metrics(self).map(|text| {
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(text)))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
            }),
            other => match other
                .strip_prefix("/v1/tasks/")
                .and_then(|rest| rest.strip_suffix("/stats"))
            {
                Some(id) => observe::task_stats(self, id).map(|found| match found {
                    Some(stats) => json_response(200, stats),
                    None => json_response(404, json!({"error": format!("no task {id}")})),
                }),
                None => Ok(json_response(
                    404,
                    json!({"error": format!("no such endpoint: {other}")}),
                )),
            },
        });
        result.unwrap_or_else(|error| json_response(500, error.body()))
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request
            .uri()
            .path()
            .starts_with(crate::protocol::http::AGENT_PATH)
        {
            return crate::protocol::http::serve_agent(&self.control.hosts, request).await;
        }
        if scheduler::is_scheduler_path(request.uri().path()) {
            let request_id = format!("{:016x}", self.request_ids.fetch_add(1, Ordering::Relaxed));
            return scheduler::handle(self, request, request_id).await;
        }
        if matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD)
            && crate::console::is_console(request.uri().path())
        {
            // The console's own files hold no data (every figure is a signed call), so the
            // login page can load before there is a key to sign with.
            return crate::console::serve(request.uri().path());
        }
        if request.method() == hyper::Method::GET {
            // With credentials on, introspection is signed like every other call (curl:
            // `--aws-sigv4 aws:amz:REGION:ecs --user KEY:SECRET`); `--metrics-listen` serves
            // the same endpoints unsigned on a listener of their own, for scrapers.
            if let Some(credentials) = &self.credentials
                && let Err(error) = check_signature(credentials, &request, &[])
            {
                return Response::builder()
                    .status(
                        StatusCode::from_u16(error.kind.status())
                            .unwrap_or(StatusCode::BAD_REQUEST),
                    )
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(error.body().to_string())))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
            }
            return self.handle_get(request.uri().path());
        }
        let started = std::time::Instant::now();
        let request_id = format!("{:016x}", self.request_ids.fetch_add(1, Ordering::Relaxed));
        let action = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|target| match target.strip_prefix(TARGET_PREFIX) {
                Some(action) => Some(action),
                None => target.starts_with(WASMGATE_TARGET_PREFIX).then_some(target),
            })
            .unwrap_or_default()
            .to_string();
        // The region the client signed for, when it is not the server's own: ARNs in and out
        // are translated, so the client sees its region while the records stay in one.
        let region =
            signed_region(request.headers()).filter(|region| region != &self.control.arns.region);
        let span = tracing::info_span!("request", %request_id, %action);
        async {
            let result = self
                .read_and_call(&action, request, region.as_deref())
                .await;
            // Unknown actions share one label, so clients cannot grow the metrics without end.
            let unknown =
                matches!(&result, Err(e) if e.kind == ErrorKind::UnknownOperationException);
            let label = if unknown || action.is_empty() {
                "unknown"
            } else {
                action.as_str()
            };
            self.requests
                .record(label, result.is_ok(), started.elapsed());
            let (status, body, error_type) = match result {
                Ok(body) => (200, body, None),
                Err(error) => {
                    tracing::info!(%error, "request failed");
                    (error.kind.status(), error.body(), Some(error.kind.as_str()))
                }
            };
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-requestid", &request_id);
            if let Some(error_type) = error_type {
                response = response.header("x-amzn-errortype", error_type);
            }
            response
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}"))))
        }
        .instrument(span)
        .await
    }

    async fn read_and_call(
        &self,
        action: &str,
        request: Request<Incoming>,
        region: Option<&str>,
    ) -> Result<Value, ApiError> {
        if request.method() != hyper::Method::POST {
            return Err(ApiError::client("the ECS API answers POST / only"));
        }
        if action.is_empty() {
            return Err(ApiError::new(
                ErrorKind::UnknownOperationException,
                format!("missing or foreign X-Amz-Target (expected {TARGET_PREFIX}<Action>)"),
            ));
        }
        let (parts, body) = request.into_parts();
        let body = read_body(body).await?;
        if let Some(credentials) = &self.credentials {
            check_signature(credentials, &Request::from_parts(parts, ()), &body)?;
        }
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::new(
                    ErrorKind::SerializationException,
                    format!("the request body is not valid JSON: {e}"),
                )
            })?
        };
        if !body.is_object() {
            return Err(ApiError::new(
                ErrorKind::SerializationException,
                "the request body must be a JSON object",
            ));
        }
        let Some(region) = region else {
            return crate::store::blocking(|| self.call(action, body));
        };
        let ours = self.control.arns.prefix();
        let theirs = self.control.arns.in_region(region).prefix();
        let mut body = body;
        rewrite_arns(&mut body, &theirs, &ours);
        match crate::store::blocking(|| self.call(action, body)) {
            Ok(mut answer) => {
                rewrite_arns(&mut answer, &ours, &theirs);
                Ok(answer)
            }
            Err(mut error) => {
                error.message = error.message.replace(&ours, &theirs);
                Err(error)
            }
        }
    }
}

/// How much of an oversized body is read (and dropped) so the client, still sending, gets to
/// read the 413 answer instead of a connection reset mid-upload; past this it is cut off.
const DRAIN_BYTES: usize = 64 << 20;
/// How long an oversized body may take to drain.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body of at most [`MAX_REQUEST_BYTES`]; a larger one is drained and
/// answered with a 413 that names the limit.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                return Err(ApiError::client(format!(
                    "the request body could not be read: {error}"
                )));
            }
        };
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen > MAX_REQUEST_BYTES {
                let _ = tokio::time::timeout(DRAIN_FOR, async {
                    while seen <= DRAIN_BYTES {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                seen += frame.data_ref().map_or(0, |d| d.len());
                            }
                            _ => break,
                        }
                    }
                })
                .await;
                return Err(ApiError::new(
                    ErrorKind::RequestEntityTooLargeException,
                    format!(
                        "the request body is over the limit of {MAX_REQUEST_BYTES} bytes \
                         (ECS's own requests stay far below it)"
                    ),
                ));
            }
            kept.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(kept))
}

/// The region of a SigV4 `Authorization` header's credential scope
/// (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`), if the request has one.
fn signed_region(headers: &hyper::HeaderMap) -> Option<String> {
    let header = headers.get("authorization")?.to_str().ok()?;
    let credential = header.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    crate::arn::is_region(region).then(|| region.to_string())
}

/// Replaces the ARN prefix `from` with `to` in every string of `value`.
fn rewrite_arns(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(text) if text.contains(from) => *text = text.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_arns(v, from, to)),
        Value::Object(members) => members.values_mut().for_each(|v| rewrite_arns(v, from, to)),
        _ => {}
    }
}

/// Checks a request's SigV4 signature (over `body`) against `credentials`.
fn check_signature<B>(
    credentials: &Credentials,
    request: &Request<B>,
    body: &[u8],
) -> Result<(), ApiError> {
    check_signature_of(
        credentials,
        request,
        request.uri().path(),
        request.uri().query().unwrap_or_default(),
        body,
    )
}

/// [`check_signature`] with the canonical path and query given (REST calls encode them).
fn check_signature_of<B>(
    credentials: &Credentials,
    request: &Request<B>,
    canonical_path: &str,
    canonical_query: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    sigv4::verify(
        credentials,
        request.method().as_str(),
        canonical_path,
        canonical_query,
        &headers,
        body,
        now,
    )
}

/// Parses a request body into its typed shape; a missing or mistyped member is an
/// InvalidParameterException naming it.
pub(crate) fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ApiError::invalid(inner)
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

/// Parses the value of request member `member` into its typed shape; errors name the path
/// from the member (`capacityProviderStrategy[0].weight: ...`).
pub(crate) fn parse_member<T: DeserializeOwned>(member: &str, value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let path = if path == "." {
            String::new()
        } else if path.starts_with('[') {
            path
        } else {
            format!(".{path}")
        };
        ApiError::invalid(format!("{member}{path}: {inner}"))
    })
}

/// One page of `items` as `maxResults` and `nextToken` in `body` ask; returns the page and the
/// token of the next one.
pub(crate) fn page(
    body: &Value,
    items: Vec<Value>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let size = match body.get("maxResults") {
        None | Some(Value::Null) => DEFAULT_PAGE,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => {
                return Err(ApiError::invalid(format!(
                    "maxResults: must be between 1 and 100 (got {v})"
                )));
            }
        },
    };
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| ApiError::invalid("nextToken: not a token this server handed out"))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len())
        .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{end}")));
    Ok((items.into_iter().skip(start).take(size).collect(), next))
}

/// A list response: the items under `field`, and `nextToken` when there is more.
pub(crate) fn paged(field: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut response = json!({ field: items });
    if let Some(next) = next {
        response["nextToken"] = json!(next);
    }
    response
}

/// Serves the API on `listener` until `shutdown` is cancelled, over TLS when `tls` is given;
/// each connection is a task owned by a `JoinSet`, drained on shutdown.
pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let connections = shutdown.clone();
    crate::net::accept_connections(listener, connections, move |stream| {
        let api = api.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        async move {
            match tls {
                None => serve_connection(stream, api, shutdown).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, api, shutdown).await,
                    Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                },
            }
        }
    })
    .await;
}

/// Serves the introspection and metrics endpoints (`GET /metrics`, `/v1/tasks`,
/// `/v1/tasks/{id}/stats`, `/v1/hosts`, `/v1/metadata`) on `listener`, unsigned, until
/// `shutdown`: `--metrics-listen`, for scrapers where the API checks signatures. Keep it on
/// loopback or a private network: it tells what runs.
pub async fn serve_introspection(
    listener: TcpListener,
    api: Arc<Api>,
    shutdown: CancellationToken,
) {
    let connections = shutdown.clone();
    crate::net::accept_connections(listener, connections, move |stream| {
        let api = api.clone();
        let shutdown = shutdown.clone();
        async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let api = api.clone();
                async move {
                    let response = if request.method() == hyper::Method::GET {
                        api.handle_get(request.uri().path())
                    } else {
                        Response::builder()
                            .status(StatusCode::METHOD_NOT_ALLOWED)
                            .body(Full::new(Bytes::from_static(
                                b"this listener answers GET of the introspection endpoints only\n",
                            )))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        }
    })
    .await;
}

/// Serves one connection's requests until it ends or `shutdown` (then gracefully).
async fn serve_connection<I>(io: I, api: Arc<Api>, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.handle(request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_list() {
        let items: Vec<Value> = (0..5).map(Value::from).collect();
        let (first, token) = page(&json!({"maxResults": 2}), items.clone()).unwrap();
        assert_eq!(first, [json!(0), json!(1)]);
        let (second, token) =
            page(&json!({"maxResults": 2, "nextToken": token}), items.clone()).unwrap();
        assert_eq!(second, [json!(2), json!(3)]);
        let (last, token) =
            page(&json!({"maxResults": 2, "nextToken": token}), items.clone()).unwrap();
        assert_eq!((last, token), (vec![json!(4)], None));
        assert!(page(&json!({"maxResults": 0}), items.clone()).is_err());
        assert!(page(&json!({"nextToken": "bogus"}), items).is_err());
    }
}
