//! EventBridge Scheduler's API for the ECS target, REST-JSON on the API listener:
//! `/schedules/{Name}`, `/schedules`, `/schedule-groups/{Name}`, `/schedule-groups`,
//! `/tags/{ResourceArn}`, so boto3's `scheduler` client and `aws scheduler` work unchanged.
//! Requests are signed like ECS's when credentials are on (service `scheduler`); errors carry
//! their class in `x-amzn-errortype` and `{"Message": ...}`.
//!
//! `schedules.rs` and `groups.rs` are the operations, `record.rs` what is stored,
//! `firer.rs` the loop that fires schedules (through RunTask's own path), `cli.rs`
//! wasmgate's `WasmgateV1.*` views for `wasmgate schedules`.
//!
//! Architecture invariant: the REST shapes live here; the expressions, timing and the firing
//! decision are `crate::schedule`'s, pure.

pub mod cli;
mod error;
pub mod firer;
mod groups;
pub mod record;
mod schedules;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::Instrument;

pub use error::{SchedulerError, SchedulerErrorKind};
pub use firer::ScheduleFirer;

use super::Api;

/// Whether `path` is one of the scheduler's.
pub fn is_scheduler_path(path: &str) -> bool {
    ["/schedules", "/schedule-groups", "/tags/"]
        .iter()
        .any(|prefix| {
            path == prefix.trim_end_matches('/')
                || path.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
        })
}

/// One REST call, parsed: the resource named in the path, the query, the JSON body.
pub struct Call {
    /// The `{Name}` or `{ResourceArn}` of the path, decoded.
    pub resource: Option<String>,
    pub query: Vec<(String, String)>,
    pub body: Value,
}

impl Call {
    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name` (a list, as `TagKeys=a&TagKeys=b`).
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or_default()
    }
}

/// Decodes `%XX` escapes (and `+` in a query) of `text`.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes `text` as SigV4's canonical form does (everything but unreserved characters).
fn sigv4_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// SigV4's canonical query string: every pair encoded, sorted.
fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (sigv4_encode(k, false), sigv4_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The operation a method and path name.
fn operation(method: &Method, path: &str) -> Option<(&'static str, Option<String>)> {
    let rest = path.trim_start_matches('/');
    let (collection, resource) = match rest.split_once('/') {
        Some((collection, resource)) => (collection, Some(percent_decode(resource, false))),
        None => (rest, None),
    };
    let name = match (collection, resource.is_some(), method) {
        ("schedules", true, &Method::POST) => "CreateSchedule",
        ("schedules", true, &Method::GET) => "GetSchedule",
        ("schedules", true, &Method::PUT) => "UpdateSchedule",
        ("schedules", true, &Method::DELETE) => "DeleteSchedule",
        ("schedules", false, &Method::GET) => "ListSchedules",
        ("schedule-groups", true, &Method::POST) => "CreateScheduleGroup",
        ("schedule-groups", true, &Method::GET) => "GetScheduleGroup",
        ("schedule-groups", true, &Method::DELETE) => "DeleteScheduleGroup",
        ("schedule-groups", false, &Method::GET) => "ListScheduleGroups",
        ("tags", true, &Method::POST) => "TagResource",
        ("tags", true, &Method::GET) => "ListTagsForResource",
        ("tags", true, &Method::DELETE) => "UntagResource",
        _ => return None,
    };
    Some((name, resource))
}

/// Runs one scheduler operation.
pub fn call(api: &Api, operation: &str, call: &Call) -> Result<Value, SchedulerError> {
    match operation {
        "CreateSchedule" => schedules::create(api, call),
        "GetSchedule" => schedules::get(api, call),
        "UpdateSchedule" => schedules::update(api, call),
        "DeleteSchedule" => schedules::delete(api, call),
        "ListSchedules" => schedules::list(api, call),
        "CreateScheduleGroup" => groups::create(api, call),
        "GetScheduleGroup" => groups::get(api, call),
        "DeleteScheduleGroup" => groups::delete(api, call),
        "ListScheduleGroups" => groups::list(api, call),
        "TagResource" => groups::tag(api, call),
        "UntagResource" => groups::untag(api, call),
        "ListTagsForResource" => groups::list_tags(api, call),
        other => Err(SchedulerError::validation(format!(
            "unknown scheduler operation {other}"
        ))),
    }
}

/// The prefix of a scheduler operation called through [`Api::call`] with one JSON body
/// (`Scheduler.CreateSchedule`): what the stack engine's `AWS::Scheduler::*` resources use.
pub const ACTION_PREFIX: &str = "Scheduler.";

/// Runs scheduler operation `operation` on one JSON body: the path's `Name` or
/// `ResourceArn` and the query's `GroupName` and `TagKeys` are members of it.
pub fn call_action(api: &Api, operation: &str, body: Value) -> Result<Value, crate::api::ApiError> {
    let mut body = body;
    let take = |member: &str| body.get(member).cloned();
    let resource = take("Name")
        .or_else(|| take("ResourceArn"))
        .and_then(|v| v.as_str().map(String::from));
    let mut query = Vec::new();
    if let Some(group) = take("GroupName").and_then(|v| v.as_str().map(String::from)) {
        query.push(("groupName".to_string(), group));
    }
    for key in take("TagKeys")
        .and_then(|v| v.as_array().cloned())
        .into_iter()
        .flatten()
    {
        if let Some(key) = key.as_str() {
            query.push(("TagKeys".to_string(), key.to_string()));
        }
    }
    if let Some(members) = body.as_object_mut() {
        members.remove("Name");
        members.remove("ResourceArn");
        members.remove("TagKeys");
        if matches!(operation, "GetSchedule" | "DeleteSchedule") {
            members.remove("GroupName");
        }
    }
    let call_ = Call {
        resource,
        query,
        body,
    };
    call(api, operation, &call_).map_err(Into::into)
}

fn respond(request_id: &str, result: Result<Value, SchedulerError>) -> Response<Full<Bytes>> {
    let (status, body, error_type) = match result {
        Ok(body) => (200, body, None),
        Err(error) => {
            tracing::info!(%error, "request failed");
            (error.kind.status(), error.body(), Some(error.kind.as_str()))
        }
    };
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id);
    if let Some(error_type) = error_type {
        response = response.header("x-amzn-errortype", error_type);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// Serves one REST request of the scheduler's paths (counted in `/metrics` as
/// `scheduler.OPERATION`).
pub async fn handle(
    api: &Api,
    request: Request<Incoming>,
    request_id: String,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let Some((operation, resource)) = operation(request.method(), &path) else {
        let error = SchedulerError::validation(format!(
            "no scheduler operation answers {} {path}",
            request.method()
        ));
        return respond(&request_id, Err(error));
    };
    let label = format!("scheduler.{operation}");
    let span = tracing::info_span!("request", %request_id, action = %label);
    async {
        let started = std::time::Instant::now();
        // A client signed for another region sees its region in every ARN, as with ECS.
        let region = super::signed_region(request.headers())
            .filter(|region| region != &api.control.arns.region);
        let result = match region {
            None => read_and_call(api, operation, resource, request, |_| {}).await,
            Some(region) => {
                let account = &api.control.arns.account;
                let ours = prefixes(&api.control.arns.region, account);
                let theirs = prefixes(&region, account);
                let resource = resource.map(|r| translate(&r, &theirs, &ours));
                let rewrite = |value: &mut Value, from: &[String; 2], to: &[String; 2]| {
                    for (from, to) in from.iter().zip(to) {
                        super::rewrite_arns(value, from, to);
                    }
                };
                let mut answer = read_and_call(api, operation, resource, request, |body| {
                    rewrite(body, &theirs, &ours)
                })
                .await;
                match &mut answer {
                    Ok(value) => rewrite(value, &ours, &theirs),
                    Err(error) => error.message = translate(&error.message, &ours, &theirs),
                }
                answer
            }
        };
        api.requests
            .record(&label, result.is_ok(), started.elapsed());
        respond(&request_id, result)
    }
    .instrument(span)
    .await
}

/// The ARN prefixes of a region (ECS's and the scheduler's).
fn prefixes(region: &str, account: &str) -> [String; 2] {
    [
        format!("arn:aws:ecs:{region}:{account}:"),
        format!("arn:aws:scheduler:{region}:{account}:"),
    ]
}

fn translate(text: &str, from: &[String; 2], to: &[String; 2]) -> String {
    from.iter()
        .zip(to)
        .fold(text.to_string(), |text, (from, to)| {
            text.replace(from.as_str(), to)
        })
}

async fn read_and_call(
    api: &Api,
    operation: &str,
    resource: Option<String>,
    request: Request<Incoming>,
    adjust: impl FnOnce(&mut Value),
) -> Result<Value, SchedulerError> {
    let query = parse_query(request.uri().query().unwrap_or_default());
    let (parts, body) = request.into_parts();
    let body = super::read_body(body).await?;
    if let Some(credentials) = &api.credentials {
        // SigV4's canonical URI of a REST call is its path encoded once more (botocore
        // signs `/tags/arn%253Aaws...`), and its query sorted and encoded.
        let canonical_path = sigv4_encode(parts.uri.path(), true);
        super::check_signature_of(
            credentials,
            &Request::from_parts(parts, ()),
            &canonical_path,
            &canonical_query(&query),
            &body,
        )?;
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            SchedulerError::validation(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !body.is_object() {
        return Err(SchedulerError::validation(
            "the request body must be a JSON object",
        ));
    }
    let mut body = body;
    adjust(&mut body);
    let call_ = Call {
        resource,
        query,
        body,
    };
    crate::store::blocking(|| call(api, operation, &call_))
}

/// Checks `value` as a name of the model's `Name` / `ScheduleGroupName` shapes.
pub(crate) fn check_name(member: &str, value: &str) -> Result<(), SchedulerError> {
    if value.is_empty() || value.len() > 64 {
        return Err(SchedulerError::member(
            member,
            value,
            "Member must have length between 1 and 64",
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(SchedulerError::member(
            member,
            value,
            "Member must satisfy regular expression pattern: ^[0-9a-zA-Z-_.]+$",
        ));
    }
    Ok(())
}

/// One page of `items` as `MaxResults` and `NextToken` ask.
pub(crate) fn page(
    call: &Call,
    items: Vec<Value>,
) -> Result<(Vec<Value>, Option<String>), SchedulerError> {
    let size = match call.query("MaxResults") {
        None => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(SchedulerError::member(
                    "maxResults",
                    text,
                    "Member must have value between 1 and 100",
                ));
            }
        },
    };
    let start = match call.query("NextToken") {
        None => 0,
        Some(token) => token
            .strip_prefix("offset-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                SchedulerError::validation("NextToken: not a token this server handed out")
            })?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("offset-{end}"));
    Ok((items.into_iter().skip(start).take(size).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_paths_name_the_model_operations() {
        let cases = [
            (Method::POST, "/schedules/nightly", "CreateSchedule"),
            (Method::PUT, "/schedules/nightly", "UpdateSchedule"),
            (Method::GET, "/schedules", "ListSchedules"),
            (
                Method::DELETE,
                "/schedule-groups/jobs",
                "DeleteScheduleGroup",
            ),
            (Method::GET, "/schedule-groups", "ListScheduleGroups"),
            (
                Method::DELETE,
                "/tags/arn%3Aaws%3Ascheduler%3Aus-east-1%3A000000000000%3Aschedule-group%2Fjobs",
                "UntagResource",
            ),
        ];
        for (method, path, wanted) in cases {
            assert_eq!(
                operation(&method, path).map(|o| o.0),
                Some(wanted),
                "{method} {path}"
            );
        }
        let (_, resource) = operation(
            &Method::GET,
            "/tags/arn%3Aaws%3Ascheduler%3Aus-east-1%3A000000000000%3Aschedule-group%2Fjobs",
        )
        .unwrap();
        assert_eq!(
            resource.as_deref(),
            Some("arn:aws:scheduler:us-east-1:000000000000:schedule-group/jobs")
        );
        assert!(operation(&Method::PATCH, "/schedules/x").is_none());
        assert!(is_scheduler_path("/schedules") && is_scheduler_path("/tags/x"));
        assert!(!is_scheduler_path("/") && !is_scheduler_path("/schedulesx"));
    }

    #[test]
    fn queries_decode_and_canonicalise_as_sigv4_wants() {
        let query = parse_query("TagKeys=b%20c&TagKeys=a&NamePrefix=x");
        assert_eq!(query[0], ("TagKeys".to_string(), "b c".to_string()));
        assert_eq!(
            canonical_query(&query),
            "NamePrefix=x&TagKeys=a&TagKeys=b%20c"
        );
        assert_eq!(sigv4_encode("/tags/arn%3Aaws", true), "/tags/arn%253Aaws");
    }
}
