//! The network transport of the agent protocol: plain HTTP/1.1 with JSON bodies on the API
//! listener, under `/agent/v1/`.
//!
//! - `POST /agent/v1/join` ([`JoinRequest`] → [`Joined`]): the join token buys the host an id
//!   and a credential of its own; a wrong token is 401.
//! - `GET /agent/v1/desired?session=S&generation=G`: a long poll. Answers the host's current
//!   [`DesiredTasks`] as soon as it differs from (S, G), or after [`LONG_POLL`] with the same
//!   set again (a keep-alive). One request is in flight per agent at any time.
//! - `POST /agent/v1/report` ([`AgentReport`]): the agent's steps, heartbeat and task output.
//!
//! Every call but join carries `Authorization: Bearer ID.SECRET`. Without TLS in front, the
//! join token, the credential, task definitions (with their environment) and task output
//! travel in the clear: keep agents and controller on a network you trust.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AgentReport, DesiredTasks, JoinRequest, Joined};
use crate::control::hosts::{HostError, Hosts};

/// The path prefix of the agent protocol.
pub const AGENT_PATH: &str = "/agent/v1/";
/// How long a desired-set poll waits for a change before answering the same set again.
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// The largest report accepted (a burst of steps and task output).
const MAX_REPORT_BYTES: usize = 32 << 20;
/// The largest desired set an agent accepts.
const MAX_DESIRED_BYTES: usize = 256 << 20;

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error_response(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json_response(status, &serde_json::json!({"error": message.to_string()}))
}

fn host_error(error: HostError) -> Response<Full<Bytes>> {
    let status = match &error {
        HostError::BadToken | HostError::BadCredential(_) | HostError::UnknownHost(_) => {
            StatusCode::UNAUTHORIZED
        }
        HostError::NoJoining => StatusCode::FORBIDDEN,
        HostError::Invalid(..) => StatusCode::BAD_REQUEST,
        HostError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, error)
}

async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    limit: usize,
) -> Result<T, Response<Full<Bytes>>> {
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| {
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit} bytes or broken"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error_response(StatusCode::BAD_REQUEST, format!("not a valid message: {e}")))
}

/// Answers one agent-protocol request.
pub async fn serve_agent(hosts: &Hosts, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request
        .uri()
        .path()
        .trim_start_matches(AGENT_PATH)
        .to_string();
    let method = request.method().clone();
    let peer_credential = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if (method.clone(), path.as_str()) == (hyper::Method::POST, "join") {
        let join: JoinRequest = match read_json(request.into_body(), 64 << 10).await {
            Ok(join) => join,
            Err(response) => return response,
        };
        let name = join.offer.name.clone();
        return match crate::store::blocking(|| hosts.join(join)) {
            Ok(joined) => {
                tracing::info!(host = %joined.instance_id, %name, "an agent joined");
                json_response(StatusCode::OK, &joined)
            }
            Err(error) => {
                tracing::warn!(%name, %error, "an agent was refused");
                host_error(error)
            }
        };
    }
    let Some(credential) = peer_credential else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "no Authorization: Bearer credential",
        );
    };
    let host = match crate::store::blocking(|| hosts.authenticate(&credential)) {
        Ok(host) => host,
        Err(error) => {
            tracing::warn!(%error, "an agent's call was refused");
            return host_error(error);
        }
    };
    match (method, path.as_str()) {
        (hyper::Method::GET, "desired") => {
            let query = request.uri().query().unwrap_or_default();
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_string()
            };
            let known = (
                param("session"),
                param("generation").parse::<u64>().unwrap_or(0),
            );
            let mut desired = hosts.desired(&host);
            let current = |d: &DesiredTasks| (d.session.clone(), d.generation) != known;
            let _ = tokio::time::timeout(LONG_POLL, desired.wait_for(|d| current(d))).await;
            let latest = desired.borrow().clone();
            json_response(StatusCode::OK, &*latest)
        }
        (hyper::Method::POST, "report") => {
            let report: AgentReport = match read_json(request.into_body(), MAX_REPORT_BYTES).await {
                Ok(report) => report,
                Err(response) => return response,
            };
            // Answered once recorded: the agent keeps what was not taken and sends it again,
            // here or to another replica.
            match hosts.report_recorded(&host, report).await {
                Ok(Ok(())) => json_response(StatusCode::OK, &serde_json::json!({})),
                Ok(Err(why)) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the report was not recorded: {why}"),
                ),
                Err(_) => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the controller is shutting down; report again".to_string(),
                ),
            }
        }
        (_, other) => error_response(
            StatusCode::NOT_FOUND,
            format!("no agent call {other} (expected join, desired or report)"),
        ),
    }
}

/// What went wrong talking to the controller.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{url}: {why}")]
    Unreachable { url: String, why: String },
    /// The controller refused us (401/403): a wrong token, or this host was deregistered.
    #[error("{url}: refused ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: answered {status}: {message}")]
    Failed {
        url: String,
        status: u16,
        message: String,
    },
}

/// One controller as an agent reaches it: `http://HOST:PORT` or `https://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct ControllerUrl {
    endpoint: crate::tls::Endpoint,
    base: String,
}

impl ControllerUrl {
    /// Parses a controller URL; `https` trusts the certificates in `ca` (else the web roots).
    pub fn parse(url: &str, ca: Option<&std::path::Path>) -> Result<Self, String> {
        let endpoint = crate::tls::Endpoint::parse(url, ca)?;
        Ok(Self {
            base: endpoint.url(),
            endpoint,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// One request (a fresh connection); the answer's status and body.
    async fn exchange(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        credential: Option<&str>,
        body: Option<Vec<u8>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        let url = format!("{}{path_and_query}", self.base);
        let unreachable = |why: String| LinkError::Unreachable {
            url: url.clone(),
            why,
        };
        let exchange = async {
            let stream = self
                .endpoint
                .connect()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut builder = Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(hyper::header::HOST, &self.endpoint.authority)
                .header("content-type", "application/json");
            if let Some(credential) = credential {
                builder =
                    builder.header(hyper::header::AUTHORIZATION, format!("Bearer {credential}"));
            }
            let request = builder
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            if status.is_success() {
                return Ok(bytes);
            }
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            let status = status.as_u16();
            Err(if status == 401 || status == 403 {
                LinkError::Refused {
                    url: url.clone(),
                    status,
                    message,
                }
            } else {
                LinkError::Failed {
                    url: url.clone(),
                    status,
                    message,
                }
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", timeout.as_secs())))?
    }

    /// Joins with the join token.
    pub async fn join(&self, request: &JoinRequest) -> Result<Joined, LinkError> {
        let body = serde_json::to_vec(request).unwrap_or_default();
        let bytes = self
            .exchange(
                hyper::Method::POST,
                "/agent/v1/join",
                None,
                Some(body),
                1 << 20,
                Duration::from_secs(10),
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| LinkError::Failed {
            url: format!("{}/agent/v1/join", self.base),
            status: 200,
            message: format!("not a join answer: {e}"),
        })
    }

    /// Waits for a desired set other than (session, generation).
    pub async fn desired(
        &self,
        credential: &str,
        session: &str,
        generation: u64,
    ) -> Result<DesiredTasks, LinkError> {
        let path = format!("/agent/v1/desired?session={session}&generation={generation}");
        let bytes = self
            .exchange(
                hyper::Method::GET,
                &path,
                Some(credential),
                None,
                MAX_DESIRED_BYTES,
                LONG_POLL + Duration::from_secs(10),
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| LinkError::Failed {
            url: format!("{}{path}", self.base),
            status: 200,
            message: format!("not a desired set: {e}"),
        })
    }

    /// Sends one report; the controller answers once it has recorded it, which takes as long
    /// as the reports queued before it (a big ramp's, from every host), hence the wait.
    pub async fn report(&self, credential: &str, report: &AgentReport) -> Result<(), LinkError> {
        let body = serde_json::to_vec(report).unwrap_or_default();
        self.exchange(
            hyper::Method::POST,
            "/agent/v1/report",
            Some(credential),
            Some(body),
            1 << 20,
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
    }
}
