//! HTTP settings of a container, declared the way Traefik users declare routes: `dockerLabels`
//! with the prefix `wasmgate.http.`. A container with a `path` or `host` label serves HTTP
//! through the gateway; the other labels tune how.
//!
//! | label | meaning | default |
//! |---|---|---|
//! | `wasmgate.http.path` | path prefix routed to the service (`/hello` matches `/hello`, `/hello/x`) | none |
//! | `wasmgate.http.host` | host routed to the service (exact, port ignored) | any host |
//! | `wasmgate.http.timeout` | seconds a request may take, to the end of its body (then 504) | 30 |
//! | `wasmgate.http.max-request-bytes` | largest request body (then 413) | 10485760 |
//! | `wasmgate.http.max-response-bytes` | largest response body (then the response is cut) | 104857600 |
//! | `wasmgate.http.concurrency` | requests one task serves at once | 100 |
//! | `wasmgate.http.queue-timeout` | seconds a request waits for a free task (then 503) | 1 |
//! | `wasmgate.http.idle-timeout` | seconds without requests before the service scales to zero; it scales back on the next request | none (never) |
//! | `wasmgate.http.outbound-hosts` | comma-separated `host` / `host:port` the handler may call (`*`: any) | none |
//! | `wasmgate.http.port` | a container image's port to proxy to | the first `portMappings` entry |

use std::collections::BTreeMap;
use std::time::Duration;

use super::FieldError;

pub const PREFIX: &str = "wasmgate.http.";

/// How a container serves HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub path: Option<String>,
    pub host: Option<String>,
    pub timeout: Duration,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub concurrency: usize,
    pub queue_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub outbound_hosts: Vec<String>,
    pub port: Option<u16>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            path: None,
            host: None,
            timeout: Duration::from_secs(30),
            max_request_bytes: 10 << 20,
            max_response_bytes: 100 << 20,
            concurrency: 100,
            queue_timeout: Duration::from_secs(1),
            idle_timeout: None,
            outbound_hosts: Vec::new(),
            port: None,
        }
    }
}

impl HttpSettings {
    /// The settings in `labels` (at `path`, for errors): `None` when the container declares no
    /// route; every bad label is reported.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<Self> {
        let mut settings = Self::default();
        let mut any = false;
        for (key, value) in labels {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            any = true;
            let at = format!("{path}.dockerLabels[\"{key}\"]");
            let mut bad = |rule: String| errors.push(FieldError::new(at.clone(), rule));
            let seconds = |value: &str| {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .map(Duration::from_secs_f64)
            };
            match name {
                "path" => {
                    if !value.starts_with('/') || value.contains(char::is_whitespace) {
                        bad(format!("must be a path starting with / (got \"{value}\")"));
                    }
                    settings.path = Some(value.trim_end_matches('/').to_string());
                }
                "host" => {
                    let host = value.to_ascii_lowercase();
                    if host.is_empty()
                        || !host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    {
                        bad(format!("must be a host name (got \"{value}\")"));
                    }
                    settings.host = Some(host);
                }
                "timeout" => match seconds(value) {
                    Some(timeout) => settings.timeout = timeout,
                    None => bad(format!(
                        "must be seconds, above 0 and at most 86400 (got \"{value}\")"
                    )),
                },
                "queue-timeout" => match seconds(value) {
                    Some(timeout) => settings.queue_timeout = timeout,
                    None => bad(format!(
                        "must be seconds, above 0 and at most 86400 (got \"{value}\")"
                    )),
                },
                "idle-timeout" => match seconds(value) {
                    Some(timeout) => settings.idle_timeout = Some(timeout),
                    None => bad(format!(
                        "must be seconds, above 0 and at most 86400 (got \"{value}\")"
                    )),
                },
                "max-request-bytes" | "max-response-bytes" => match value.parse::<u64>() {
                    Ok(bytes) if bytes > 0 => {
                        if name == "max-request-bytes" {
                            settings.max_request_bytes = bytes;
                        } else {
                            settings.max_response_bytes = bytes;
                        }
                    }
                    _ => bad(format!(
                        "must be a number of bytes above 0 (got \"{value}\")"
                    )),
                },
                "concurrency" => match value.parse::<usize>() {
                    Ok(n) if (1..=10_000).contains(&n) => settings.concurrency = n,
                    _ => bad(format!("must be 1-10000 (got \"{value}\")")),
                },
                "outbound-hosts" => {
                    settings.outbound_hosts = value
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_ascii_lowercase)
                        .collect();
                }
                "port" => match value.parse::<u16>() {
                    Ok(port) if port > 0 => settings.port = Some(port),
                    _ => bad(format!("must be a port number (got \"{value}\")")),
                },
                other => bad(format!(
                    "unknown wasmgate.http label \"{other}\" (known: path, host, timeout, \
                     max-request-bytes, max-response-bytes, concurrency, queue-timeout, \
                     idle-timeout, outbound-hosts, port)"
                )),
            }
        }
        if !any {
            return None;
        }
        if settings.path.is_none() && settings.host.is_none() {
            errors.push(FieldError::new(
                format!("{path}.dockerLabels"),
                "wasmgate.http labels need a route: wasmgate.http.path and/or wasmgate.http.host",
            ));
        }
        Some(settings)
    }

    /// Whether a request for `host` and `path` is this route's (path prefixes match whole
    /// segments: `/hello` matches `/hello` and `/hello/x`, not `/helloworld`).
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        let path_ok = match &self.path {
            None => true,
            Some(prefix) if prefix.is_empty() => true,
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        };
        host_ok && path_ok
    }

    /// How specific the route is: host routes first, then longer paths.
    pub fn specificity(&self) -> (bool, usize) {
        (
            self.host.is_some(),
            self.path.as_deref().map_or(0, str::len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_routes_and_limits() {
        let mut errors = Vec::new();
        let settings = HttpSettings::from_labels(
            &labels(&[
                ("wasmgate.http.path", "/hello/"),
                ("wasmgate.http.host", "Hello.Localhost"),
                ("wasmgate.http.timeout", "2.5"),
                (
                    "wasmgate.http.outbound-hosts",
                    "api.example.com, 127.0.0.1:8080",
                ),
                ("traefik.enable", "true"),
            ]),
            "containerDefinitions[0]",
            &mut errors,
        )
        .unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.path.as_deref(), Some("/hello"));
        assert_eq!(settings.host.as_deref(), Some("hello.localhost"));
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(
            settings.outbound_hosts,
            ["api.example.com", "127.0.0.1:8080"]
        );
        assert!(settings.matches(Some("hello.localhost"), "/hello"));
        assert!(settings.matches(Some("HELLO.localhost"), "/hello/there"));
        assert!(!settings.matches(Some("hello.localhost"), "/helloworld"));
        assert!(!settings.matches(Some("other"), "/hello"));
        assert!(HttpSettings::from_labels(&labels(&[]), "c", &mut errors).is_none());
    }

    #[test]
    fn names_every_bad_label() {
        let mut errors = Vec::new();
        HttpSettings::from_labels(
            &labels(&[
                ("wasmgate.http.timeout", "soon"),
                ("wasmgate.http.concurrency", "0"),
                ("wasmgate.http.colour", "blue"),
            ]),
            "containerDefinitions[0]",
            &mut errors,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(
            text[0].contains("[\"wasmgate.http.colour\"]: unknown"),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("need a route")), "{text:?}");
    }
}
