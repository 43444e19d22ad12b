//! A client of wasmgate's API, for the CLI's provisioning verbs (`register`, `run-task`,
//! `tasks`, `logs`, ...): ECS JSON 1.1 calls over HTTP/1.1, signed with SigV4 when AWS
//! credentials are in the environment, answers and errors in ECS's shapes.
//!
//! Architecture invariant: the CLI's verbs reach the server only through [`Client::call`], the
//! same wire protocol the AWS CLI speaks; nothing here reads the server's files.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

use crate::api::{SigningKey, WASMGATE_TARGET_PREFIX};

const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint}: {why}")]
    Endpoint { endpoint: String, why: String },
    /// The I/O error is said in the message (not a `source`, which `{:#}` would say again).
    #[error("cannot reach wasmgate at {endpoint} ({why}); is `wasmgate server` running there?")]
    Connect {
        endpoint: String,
        why: std::io::Error,
    },
    #[error("{endpoint}: {why}")]
    Http { endpoint: String, why: String },
    /// The server answered with an ECS error shape.
    #[error("{kind}: {message}")]
    Api { kind: String, message: String },
}

/// Where the server is and how to sign for it.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    /// `host:port`, as the TCP connection and the `Host` header want it.
    authority: String,
    /// How to connect (TLS for `https://`, trusting `WASMGATE_CA` or the web roots).
    connect: crate::tls::Endpoint,
    signing: Option<SigningKey>,
}

impl Client {
    /// A client of the server at `endpoint` (`http://HOST:PORT`); requests are signed with
    /// `signing` when given.
    pub fn new(endpoint: &str, signing: Option<SigningKey>) -> Result<Self, ClientError> {
        let ca = std::env::var_os("WASMGATE_CA").filter(|v| !v.is_empty());
        let connect =
            crate::tls::Endpoint::parse(endpoint, ca.as_deref().map(std::path::Path::new))
                .map_err(|why| ClientError::Endpoint {
                    endpoint: endpoint.to_string(),
                    why,
                })?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            authority: connect.authority.clone(),
            connect,
            signing,
        })
    }

    /// Signing key from the environment, as the AWS CLI reads it: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, and `AWS_REGION` (default `us-east-1`).
    pub fn signing_key_from_env() -> Option<SigningKey> {
        let access_key_id = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty())?;
        let secret_access_key = std::env::var("AWS_SECRET_ACCESS_KEY").ok()?;
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        Some(SigningKey {
            access_key_id,
            secret_access_key,
            region,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls an action: an ECS one (`RunTask`) or one of wasmgate's own
    /// (`WasmgateV1.GetTaskLogs`).
    pub async fn call(&self, action: &str, body: Value) -> Result<Value, ClientError> {
        let target = if action.starts_with(WASMGATE_TARGET_PREFIX) {
            action.to_string()
        } else {
            format!("{ECS_TARGET_PREFIX}{action}")
        };
        let body = body.to_string().into_bytes();
        let content_type = "application/x-amz-json-1.1";
        let mut request = hyper::Request::post("/")
            .header("host", &self.authority)
            .header("content-type", content_type)
            .header("x-amz-target", &target);
        if let Some(key) = &self.signing {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let signed = [
                ("content-type".to_string(), content_type.to_string()),
                ("x-amz-target".to_string(), target.clone()),
            ];
            let (date, authorization) =
                crate::api::sign(key, &self.authority, "/", &signed, &body, now);
            request = request
                .header("x-amz-date", date)
                .header("authorization", authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.http(format!("cannot build the request: {e}")))?;
        let (status, bytes) = self.send(request).await?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            self.http(format!(
                "{action}: the answer (HTTP {status}) is not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        if status.is_success() {
            return Ok(answer);
        }
        let kind = answer["__type"]
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = answer["message"]
            .as_str()
            .or(answer["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        Err(ClientError::Api { kind, message })
    }

    async fn send(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, Bytes), ClientError> {
        let stream = self
            .connect
            .connect()
            .await
            .map_err(|why| ClientError::Connect {
                endpoint: self.endpoint.clone(),
                why,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| self.http(e.to_string()))?;
        // The connection is driven while this call waits for its answer, and ends with it.
        let driver = async {
            let _ = connection.await;
        };
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.http(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.http(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::pin!(driver);
        tokio::select! {
            result = exchange => result,
            () = &mut driver => Err(self.http("the connection closed before an answer".into())),
        }
    }

    fn http(&self, why: String) -> ClientError {
        ClientError::Http {
            endpoint: self.endpoint.clone(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let client = Client::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(client.authority, "127.0.0.1:8080");
        assert_eq!(client.endpoint(), "http://127.0.0.1:8080");
        assert_eq!(
            Client::new("http://localhost", None).unwrap().authority,
            "localhost:80"
        );
        assert!(Client::new("ftp://x:1", None).is_err());
        assert!(Client::new("http://x:1/path", None).is_err());
    }
}
