//! An AWS Copilot manifest (`manifest.yml`) read into a checked model: a Load Balanced Web
//! Service, a Backend Service or a Scheduled Job, with the `environments:` override of the
//! environment asked for merged in (maps merge key by key; anything else replaces), Copilot's
//! and ECS's defaults filled in. Every unknown key and every wrong type is an error naming its
//! full path (`http.healthcheck.intervall: unknown key (known: ...)`), in the base manifest
//! and in every environment's override.
//!
//! Pure: text in, a [`Manifest`] or a [`ManifestError`] out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{duration, schedule};

/// Why a manifest cannot be applied, naming the key path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("{path}: {rule}")]
    Field { path: String, rule: String },
}

fn field(path: impl Into<String>, rule: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        path: path.into(),
        rule: rule.into(),
    }
}

/// The manifest types wasmgate applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadType {
    LoadBalancedWebService,
    BackendService,
    ScheduledJob,
}

impl WorkloadType {
    const ALL: [Self; 3] = [
        Self::LoadBalancedWebService,
        Self::BackendService,
        Self::ScheduledJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancedWebService => "Load Balanced Web Service",
            Self::BackendService => "Backend Service",
            Self::ScheduledJob => "Scheduled Job",
        }
    }

    /// The top-level keys a manifest of this type may have.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Self::LoadBalancedWebService => &[
                "name",
                "type",
                "image",
                "command",
                "entrypoint",
                "platform",
                "cpu",
                "memory",
                "variables",
                "secrets",
                "http",
                "count",
                "exec",
                "deployment",
                "environments",
            ],
            Self::BackendService => &[
                "name",
                "type",
                "image",
                "command",
                "entrypoint",
                "platform",
                "cpu",
                "memory",
                "variables",
                "secrets",
                "count",
                "exec",
                "deployment",
                "environments",
            ],
            Self::ScheduledJob => &[
                "name",
                "type",
                "image",
                "command",
                "entrypoint",
                "platform",
                "cpu",
                "memory",
                "variables",
                "secrets",
                "on",
                "retries",
                "timeout",
                "environments",
            ],
        }
    }

    /// The keys of `image` a manifest of this type may have.
    fn image_keys(self) -> &'static [&'static str] {
        match self {
            Self::ScheduledJob => &["location"],
            _ => &["location", "port", "healthcheck"],
        }
    }
}

/// A manifest, checked, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub workload_type: WorkloadType,
    /// The environment whose overrides were merged in.
    pub environment: Option<String>,
    /// `image.location`, as written (a relative file is relative to the manifest).
    pub image: String,
    pub port: Option<u16>,
    /// The container's `command` and `entryPoint` (a string is split at whitespace).
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `platform` as ECS's runtime platform (operating system family, CPU architecture).
    pub platform: Option<(String, String)>,
    /// CPU units (Copilot's default 256).
    pub cpu: u32,
    /// MiB (Copilot's default 512).
    pub memory: u32,
    /// The container's environment: `variables`, then `secrets` (wasmgate has no parameter
    /// store: a secret's value is given as written).
    pub variables: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    /// The container's health check (`image.healthcheck`, or a web service's
    /// `http.healthcheck` as an HTTP GET of its path).
    pub health_check: Option<HealthCheck>,
    pub kind: Kind,
    /// What the manifest asks that is not done here, said to the user.
    pub notes: Vec<String>,
}

/// What a manifest deploys beside its task definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Service {
        count: u32,
        rolling: Rolling,
        /// `exec`: ECS Exec enabled on the service.
        exec: bool,
        /// A web service's route and its health check's grace period.
        http: Option<HttpRoute>,
    },
    Job {
        /// The EventBridge expression; `None` for `on.schedule: none`.
        schedule: Option<String>,
        retries: u32,
        timeout: Option<Duration>,
    },
}

/// `deployment.rolling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rolling {
    /// `default`: new tasks start before old ones stop (100 % healthy, 200 % at most).
    Default,
    /// `recreate`: old tasks stop first (0 % healthy, 100 % at most).
    Recreate,
}

impl Rolling {
    /// ECS's `minimumHealthyPercent` and `maximumPercent`.
    pub fn percents(self) -> (u32, u32) {
        match self {
            Self::Default => (100, 200),
            Self::Recreate => (0, 100),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// The gateway's path prefix, with its leading `/`.
    pub path: String,
    pub grace_period: Duration,
}

/// A container health check, in ECS's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub retries: u32,
    pub start_period: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Document {
    name: Option<String>,
    /// Read before (to choose the keys); here to be taken.
    #[serde(rename = "type")]
    _type: Option<String>,
    image: Option<ImageDoc>,
    command: Option<Value>,
    entrypoint: Option<Value>,
    platform: Option<String>,
    exec: Option<bool>,
    http: Option<HttpDoc>,
    cpu: Option<u32>,
    memory: Option<u32>,
    count: Option<Value>,
    variables: Option<BTreeMap<String, Value>>,
    secrets: Option<BTreeMap<String, String>>,
    deployment: Option<DeploymentDoc>,
    on: Option<OnDoc>,
    retries: Option<u32>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ImageDoc {
    location: Option<String>,
    port: Option<u16>,
    healthcheck: Option<ImageHealthDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageHealthDoc {
    command: Option<Vec<String>>,
    interval: Option<String>,
    retries: Option<u32>,
    timeout: Option<String>,
    start_period: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpDoc {
    path: Option<String>,
    /// A path, or the whole check.
    healthcheck: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpHealthDoc {
    path: Option<String>,
    port: Option<u16>,
    success_codes: Option<String>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    interval: Option<String>,
    timeout: Option<String>,
    grace_period: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentDoc {
    rolling: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDoc {
    schedule: Option<String>,
}

/// Autoscaling's keys are taken (and not acted on) so a Copilot manifest applies as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only range is used; the other keys are accepted")]
struct CountDoc {
    range: Option<Value>,
    cpu_percentage: Option<Value>,
    memory_percentage: Option<Value>,
    requests: Option<Value>,
    response_time: Option<Value>,
    cooldown: Option<Value>,
}

/// `value` as `T`, every error named by its path below `at` (`""` for the top).
fn typed<T: serde::de::DeserializeOwned>(value: &Value, at: &str) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let path = match (at.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => at.to_string(),
            (false, _) if inner.starts_with('[') => format!("{at}{inner}"),
            (false, _) => format!("{at}.{inner}"),
        };
        field(path, plain(&error.inner().to_string()))
    })
}

/// serde's wording in a manifest writer's words: keys, not fields; maps, not structs.
fn plain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let known: Vec<&str> = rest
            .split('`')
            .skip(1)
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, name)| name)
            .collect();
        return format!("unknown key (known: {})", known.join(", "));
    }
    let mut text = message.to_string();
    if let Some(at) = text.find("expected struct ") {
        text.replace_range(at.., "expected a map");
    }
    for (from, to) in [
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a port number (0-65535)"),
        ("expected a sequence", "expected a list"),
        ("invalid type: sequence", "invalid type: list"),
    ] {
        text = text.replace(from, to);
    }
    text
}

fn unknown_key(path: &str, known: &[&str]) -> ManifestError {
    field(path, format!("unknown key (known: {})", known.join(", ")))
}

/// Merges `over` into `base` as Copilot merges an environment's override: maps key by key,
/// anything else (scalars, lists) replaced; a null leaves the base as it is.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// Reads a manifest, with the overrides of `environment` (which its `environments:` must
/// name) merged in.
pub fn parse(text: &str, environment: Option<&str>) -> Result<Manifest, ManifestError> {
    let document: Value =
        serde_yaml_ng::from_str(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let Value::Object(mut top) = document else {
        return Err(ManifestError::Yaml(
            "the manifest is not a map of keys (name, type, image, ...)".into(),
        ));
    };
    let kind_text = match top.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err(field("type", "expected a string")),
        None => return Err(field("type", "required")),
    };
    let workload_type = WorkloadType::ALL
        .into_iter()
        .find(|t| t.as_str() == kind_text)
        .ok_or_else(|| {
            field(
                "type",
                format!(
                    "{kind_text:?} is not a type wasmgate applies (known: {})",
                    WorkloadType::ALL.map(WorkloadType::as_str).join(", ")
                ),
            )
        })?;
    let environments = match top.remove("environments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(field("environments", "expected a map of environments")),
    };
    check_keys(&top, workload_type, "")?;
    let base = Value::Object(top);
    let mut manifest = build(typed(&base, "")?, workload_type, None)?;
    // Every environment's override is checked, not only the one asked for, so a typo in
    // one is found before it is deployed.
    for (name, over) in &environments {
        let at = format!("environments.{name}");
        let over_map = match over {
            Value::Null => continue,
            Value::Object(over) => over,
            _ => return Err(field(at, "expected a map of overrides")),
        };
        for key in ["name", "type", "environments"] {
            if over_map.contains_key(key) {
                return Err(field(format!("{at}.{key}"), "cannot be overridden"));
            }
        }
        check_keys(over_map, workload_type, &format!("{at}."))?;
        let mut merged = base.clone();
        merge(&mut merged, over);
        let with_override = typed(&merged, "")
            .and_then(|document| build(document, workload_type, Some(name)))
            .map_err(|error| in_override(error, &at, over))?;
        if environment == Some(name.as_str()) {
            manifest = with_override;
        }
    }
    if let Some(name) = environment
        && !environments.contains_key(name)
    {
        let known: Vec<&str> = environments.keys().map(String::as_str).collect();
        return Err(field(
            format!("environments.{name}"),
            format!(
                "no such environment (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    Ok(manifest)
}

/// An error of a manifest with an override merged in, named by its path in the override
/// (`environments.prod.count`) when the value at fault came from it.
fn in_override(error: ManifestError, at: &str, over: &Value) -> ManifestError {
    let ManifestError::Field { path, rule } = error else {
        return error;
    };
    let mut value = over;
    for segment in path.split('.') {
        let key = segment.split('[').next().unwrap_or(segment);
        match value.get(key) {
            Some(inner) => value = inner,
            None => return ManifestError::Field { path, rule },
        }
    }
    ManifestError::Field {
        path: format!("{at}.{path}"),
        rule,
    }
}

/// Refuses the keys a manifest of `workload_type` has not, at the top and in `image`.
fn check_keys(
    top: &Map<String, Value>,
    workload_type: WorkloadType,
    at: &str,
) -> Result<(), ManifestError> {
    let known = workload_type.keys();
    if let Some(key) = top.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(unknown_key(&format!("{at}{key}"), known));
    }
    if let Some(Value::Object(image)) = top.get("image") {
        let known = workload_type.image_keys();
        if let Some(key) = image.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(unknown_key(&format!("{at}image.{key}"), known));
        }
    }
    Ok(())
}

fn seconds(text: Option<&str>, path: &str, default: u64) -> Result<u64, ManifestError> {
    match text {
        None => Ok(default),
        Some(text) => duration::whole_seconds(text).map_err(|why| field(path, why)),
    }
}

/// Checks a health check against ECS's bounds (interval 5-300 s, timeout 2-60 s, retries
/// 1-10, start period 0-300 s); `names` are the manifest's keys for the four, under `at`.
fn within_ecs_bounds(check: &HealthCheck, at: &str, names: [&str; 4]) -> Result<(), ManifestError> {
    let values = [
        check.interval,
        check.timeout,
        u64::from(check.retries),
        check.start_period,
    ];
    let bounds = [(5, 300, "s"), (2, 60, "s"), (1, 10, ""), (0, 300, "s")];
    for ((value, (min, max, unit)), name) in values.into_iter().zip(bounds).zip(names) {
        if !(min..=max).contains(&value) {
            return Err(field(
                format!("{at}.{name}"),
                format!("{value}{unit} is outside ECS's {min}{unit} to {max}{unit}"),
            ));
        }
    }
    Ok(())
}

fn build(
    document: Document,
    workload_type: WorkloadType,
    environment: Option<&str>,
) -> Result<Manifest, ManifestError> {
    let mut notes = Vec::new();
    let name = document.name.ok_or_else(|| field("name", "required"))?;
    let valid_name = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        return Err(field(
            "name",
            format!(
                "{name:?}: a lowercase letter, then lowercase letters, digits and hyphens, at most 64"
            ),
        ));
    }
    let image_doc = document
        .image
        .ok_or_else(|| field("image", "required (image.location)"))?;
    let image = image_doc
        .location
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| {
            field(
                "image.location",
                "required (wasmgate builds no Dockerfile: give an image reference or a .wasm file)",
            )
        })?;
    let mut variables = BTreeMap::new();
    for (key, value) in document.variables.unwrap_or_default() {
        let text = match value {
            Value::String(text) => text,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(field(
                    format!("variables.{key}"),
                    "expected a string, number or boolean",
                ));
            }
        };
        variables.insert(key, text);
    }
    let secrets = document.secrets.unwrap_or_default();
    if let Some(both) = secrets.keys().find(|k| variables.contains_key(*k)) {
        return Err(field(
            format!("secrets.{both}"),
            "is also in variables: one environment variable each",
        ));
    }
    let mut health_check = match image_doc.healthcheck {
        None => None,
        Some(check) => {
            let command = check
                .command
                .filter(|c| !c.is_empty())
                .ok_or_else(|| field("image.healthcheck.command", "required"))?;
            if !matches!(command[0].as_str(), "CMD" | "CMD-SHELL") {
                return Err(field(
                    "image.healthcheck.command",
                    format!("starts with CMD or CMD-SHELL (got {:?})", command[0]),
                ));
            }
            // Copilot's defaults for a container health check.
            let check = HealthCheck {
                command,
                interval: seconds(check.interval.as_deref(), "image.healthcheck.interval", 10)?,
                timeout: seconds(check.timeout.as_deref(), "image.healthcheck.timeout", 5)?,
                retries: check.retries.unwrap_or(2),
                start_period: seconds(
                    check.start_period.as_deref(),
                    "image.healthcheck.start_period",
                    0,
                )?,
            };
            within_ecs_bounds(
                &check,
                "image.healthcheck",
                ["interval", "timeout", "retries", "start_period"],
            )?;
            Some(check)
        }
    };
    let kind = match workload_type {
        WorkloadType::LoadBalancedWebService | WorkloadType::BackendService => {
            let count = count(document.count.as_ref(), &mut notes)?;
            let rolling = match document.deployment.and_then(|d| d.rolling).as_deref() {
                None | Some("default") => Rolling::Default,
                Some("recreate") => Rolling::Recreate,
                Some(other) => {
                    return Err(field(
                        "deployment.rolling",
                        format!("{other:?} is not default or recreate"),
                    ));
                }
            };
            let http = if workload_type == WorkloadType::LoadBalancedWebService {
                let http = document
                    .http
                    .ok_or_else(|| field("http", "required (http.path)"))?;
                let (route, check) =
                    web_route(http, image_doc.port, health_check.is_some(), &mut notes)?;
                if health_check.is_none() {
                    health_check = Some(check);
                }
                Some(route)
            } else {
                None
            };
            Kind::Service {
                count,
                rolling,
                exec: document.exec.unwrap_or(false),
                http,
            }
        }
        WorkloadType::ScheduledJob => {
            let schedule_text = document
                .on
                .and_then(|on| on.schedule)
                .ok_or_else(|| field("on.schedule", "required"))?;
            let schedule =
                schedule::expression(&schedule_text).map_err(|why| field("on.schedule", why))?;
            let retries = document.retries.unwrap_or(0);
            if retries > 185 {
                return Err(field(
                    "retries",
                    format!("{retries}: EventBridge retries at most 185 times"),
                ));
            }
            // Stopped after it by the task's `wasmgate.task.timeout` label.
            let timeout = match document.timeout.as_deref() {
                None => None,
                Some(text) => {
                    let seconds =
                        duration::whole_seconds(text).map_err(|why| field("timeout", why))?;
                    if !(1..=31_536_000).contains(&seconds) {
                        return Err(field("timeout", format!("{text}: 1s to a year")));
                    }
                    Some(Duration::from_secs(seconds))
                }
            };
            Kind::Job {
                schedule,
                retries,
                timeout,
            }
        }
    };
    let words = |value: Option<Value>, path: &str| -> Result<Option<Vec<String>>, ManifestError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                Ok(Some(text.split_whitespace().map(str::to_string).collect()))
            }
            Some(list @ Value::Array(_)) => typed(&list, path).map(Some),
            Some(_) => Err(field(path, "expected a string or a list of strings")),
        }
    };
    let command = words(document.command, "command")?;
    let entrypoint = words(document.entrypoint, "entrypoint")?;
    let platform = match document.platform.as_deref() {
        None => None,
        Some(text) => Some(platform(text).map_err(|why| field("platform", why))?),
    };
    Ok(Manifest {
        name,
        workload_type,
        environment: environment.map(str::to_string),
        image,
        port: image_doc.port,
        command,
        entrypoint,
        platform,
        cpu: document.cpu.unwrap_or(256),
        memory: document.memory.unwrap_or(512),
        variables,
        secrets,
        health_check,
        kind,
        notes,
    })
}

/// `count`: a number of tasks, or a map whose `range` gives the minimum the service runs
/// (autoscaling is not done here; the note says so).
fn count(value: Option<&Value>, notes: &mut Vec<String>) -> Result<u32, ManifestError> {
    let value = match value {
        None | Some(Value::Null) => return Ok(1),
        Some(value) => value,
    };
    if let Value::Object(_) = value {
        let doc: CountDoc = typed(value, "count")?;
        let Some(range) = doc.range else {
            return Err(field("count.range", "required when count is a map"));
        };
        let minimum = match &range {
            Value::String(text) => text
                .split_once('-')
                .and_then(|(min, max)| {
                    let (min, max) = (
                        min.trim().parse::<u32>().ok()?,
                        max.trim().parse::<u32>().ok()?,
                    );
                    (min <= max).then_some(min)
                })
                .ok_or_else(|| field("count.range", format!("{text:?} is not MIN-MAX")))?,
            Value::Object(_) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Range {
                    min: u32,
                    max: u32,
                }
                let Range { min, max } = typed(&range, "count.range")?;
                if min > max {
                    return Err(field(
                        "count.range",
                        format!("min {min} is above max {max}"),
                    ));
                }
                min
            }
            _ => return Err(field("count.range", "expected MIN-MAX or {min, max}")),
        };
        notes.push(format!(
            "count.range: autoscaling is not done here; the service runs its minimum, {minimum} task{}",
            if minimum == 1 { "" } else { "s" }
        ));
        return Ok(minimum);
    }
    typed::<u32>(value, "count")
}

/// A web service's route and the health check its `http.healthcheck` asks for: an HTTP GET
/// of the path inside the container (`curl -f`, which an HTTP component's health check
/// answers by serving the request on a fresh instance).
fn web_route(
    http: HttpDoc,
    port: Option<u16>,
    has_image_check: bool,
    notes: &mut Vec<String>,
) -> Result<(HttpRoute, HealthCheck), ManifestError> {
    let path = http.path.ok_or_else(|| field("http.path", "required"))?;
    let path = route_path(&path).map_err(|why| field("http.path", why))?;
    let given = http.healthcheck.is_some();
    let check: HttpHealthDoc = match http.healthcheck {
        None | Some(Value::Null) => HttpHealthDoc::default(),
        Some(Value::String(path)) => HttpHealthDoc {
            path: Some(path),
            ..Default::default()
        },
        Some(value @ Value::Object(_)) => typed(&value, "http.healthcheck")?,
        Some(_) => {
            return Err(field(
                "http.healthcheck",
                "expected a path or a map (path, interval, ...)",
            ));
        }
    };
    if let Some(codes) = &check.success_codes
        && codes.trim() != "200"
    {
        return Err(field(
            "http.healthcheck.success_codes",
            format!(
                "{codes:?}: a check here passes on any status below 400 (as curl -f); only \"200\" is taken"
            ),
        ));
    }
    if check.healthy_threshold.is_some() {
        notes.push(
            "http.healthcheck.healthy_threshold: one passing check makes a task healthy here"
                .into(),
        );
    }
    if given && has_image_check {
        notes.push(
            "http.healthcheck: the container's image.healthcheck is its one health check; this one is not run"
                .into(),
        );
    }
    let check_path = route_path(check.path.as_deref().unwrap_or("/"))
        .map_err(|why| field("http.healthcheck.path", why))?;
    let authority = match check.port.or(port) {
        Some(port) => format!("localhost:{port}"),
        None => "localhost".to_string(),
    };
    let grace_period = seconds(
        check.grace_period.as_deref(),
        "http.healthcheck.grace_period",
        60,
    )?;
    // Copilot's defaults for a target group's health check.
    let health = HealthCheck {
        command: vec![
            "CMD-SHELL".into(),
            format!("curl -f http://{authority}{check_path} || exit 1"),
        ],
        interval: seconds(check.interval.as_deref(), "http.healthcheck.interval", 10)?,
        timeout: seconds(check.timeout.as_deref(), "http.healthcheck.timeout", 5)?,
        retries: check.unhealthy_threshold.unwrap_or(2),
        start_period: 0,
    };
    within_ecs_bounds(
        &health,
        "http.healthcheck",
        ["interval", "timeout", "unhealthy_threshold", "grace_period"],
    )?;
    Ok((
        HttpRoute {
            path,
            grace_period: Duration::from_secs(grace_period),
        },
        health,
    ))
}

/// `platform` (`linux/x86_64`, `linux/arm64`, ...) as ECS's operating system family and
/// CPU architecture.
fn platform(text: &str) -> Result<(String, String), String> {
    let (os, arch) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not OS/ARCH, e.g. linux/x86_64"))?;
    if os != "linux" {
        return Err(format!("{text:?}: only linux platforms are taken"));
    }
    let arch = match arch {
        "x86_64" | "amd64" => "X86_64",
        "arm64" | "arm" => "ARM64",
        other => {
            return Err(format!(
                "{text:?}: architecture {other} is not x86_64, amd64, arm64 or arm"
            ));
        }
    };
    Ok(("LINUX".to_string(), arch.to_string()))
}

/// A path as Copilot takes it (`api` is `/api`).
fn route_path(path: &str) -> Result<String, String> {
    let path = path.trim();
    if path.is_empty() || path.contains(char::is_whitespace) {
        return Err(format!("{path:?} is not a path"));
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
name: web
type: Load Balanced Web Service
image:
  location: app.wasm
  port: 8080
http:
  path: 'hello'
  healthcheck:
    path: /healthz
    interval: 15s
cpu: 512
memory: 1024
count: 2
variables:
  LOG_LEVEL: info
  PORT: 8080
secrets:
  TOKEN: s3cret
deployment:
  rolling: recreate
environments:
  prod:
    count: 4
    variables:
      LOG_LEVEL: warn
"#;

    #[test]
    fn a_web_service_reads_with_its_defaults_and_an_environment_override() {
        let web = parse(WEB, None).unwrap();
        assert_eq!(web.name, "web");
        assert_eq!((web.cpu, web.memory, web.port), (512, 1024, Some(8080)));
        assert_eq!(web.variables["PORT"], "8080");
        assert_eq!(web.secrets["TOKEN"], "s3cret");
        let Kind::Service {
            count,
            rolling,
            http,
            ..
        } = &web.kind
        else {
            panic!("{:?}", web.kind)
        };
        assert_eq!((*count, *rolling), (2, Rolling::Recreate));
        assert_eq!(http.as_ref().unwrap().path, "/hello");
        assert_eq!(http.as_ref().unwrap().grace_period, Duration::from_secs(60));
        let check = web.health_check.unwrap();
        assert_eq!(
            check.command,
            [
                "CMD-SHELL",
                "curl -f http://localhost:8080/healthz || exit 1"
            ]
        );
        assert_eq!((check.interval, check.timeout, check.retries), (15, 5, 2));

        let prod = parse(WEB, Some("prod")).unwrap();
        assert!(matches!(prod.kind, Kind::Service { count: 4, .. }));
        assert_eq!(prod.variables["LOG_LEVEL"], "warn");
        assert_eq!(prod.variables["PORT"], "8080", "maps merge key by key");
        assert_eq!(
            parse(WEB, Some("staging")).unwrap_err().to_string(),
            "environments.staging: no such environment (known: prod)"
        );
    }

    #[test]
    fn defaults_are_copilots_and_ecss() {
        let backend = parse(
            "name: api\ntype: Backend Service\nimage:\n  location: api.wasm\n  healthcheck:\n    command: [CMD, check]\n",
            None,
        )
        .unwrap();
        assert_eq!((backend.cpu, backend.memory), (256, 512));
        assert_eq!(
            backend.kind,
            Kind::Service {
                count: 1,
                rolling: Rolling::Default,
                exec: false,
                http: None
            }
        );
        assert_eq!(
            backend.health_check,
            Some(HealthCheck {
                command: vec!["CMD".into(), "check".into()],
                interval: 10,
                timeout: 5,
                retries: 2,
                start_period: 0
            })
        );
        let web = parse(
            "name: web\ntype: Load Balanced Web Service\nimage: {location: a.wasm}\nhttp: {path: /}\n",
            None,
        )
        .unwrap();
        assert_eq!(
            web.health_check.unwrap().command,
            ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
        );
    }

    #[test]
    fn a_scheduled_job_reads_its_schedule_retries_and_timeout() {
        let job = parse(
            "name: report\ntype: Scheduled Job\non:\n  schedule: '@every 1h30m'\nimage:\n  location: job.wasm\nretries: 3\ntimeout: 1h\n",
            None,
        )
        .unwrap();
        assert_eq!(
            job.kind,
            Kind::Job {
                schedule: Some("rate(90 minutes)".into()),
                retries: 3,
                timeout: Some(Duration::from_secs(3600))
            }
        );
        assert!(job.notes.is_empty(), "{:?}", job.notes);
        let none = parse(
            "name: once\ntype: Scheduled Job\non: {schedule: none}\nimage: {location: j.wasm}\n",
            None,
        )
        .unwrap();
        assert!(matches!(
            none.kind,
            Kind::Job {
                schedule: None,
                retries: 0,
                timeout: None
            }
        ));
    }

    #[test]
    fn command_entrypoint_platform_and_exec_are_taken() {
        let backend = parse(
            "name: api\ntype: Backend Service\nimage: {location: a.wasm}\ncommand: serve --port 80\nentrypoint: [/app, -v]\nplatform: linux/amd64\nexec: true\n",
            None,
        )
        .unwrap();
        assert_eq!(backend.command.unwrap(), ["serve", "--port", "80"]);
        assert_eq!(backend.entrypoint.unwrap(), ["/app", "-v"]);
        assert_eq!(backend.platform.unwrap(), ("LINUX".into(), "X86_64".into()));
        assert!(matches!(backend.kind, Kind::Service { exec: true, .. }));
        let error = parse(
            "name: api\ntype: Backend Service\nimage: {location: a.wasm}\ncommand: [serve, 80]\n",
            None,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "command[1]: invalid type: integer `80`, expected a string"
        );
        let error = parse(
            "name: api\ntype: Backend Service\nimage: {location: a.wasm}\nplatform: windows/x86_64\n",
            None,
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("platform: "), "{error}");
    }

    #[test]
    fn a_count_range_runs_its_minimum_and_says_so() {
        for count in [
            "{range: 2-10, cpu_percentage: 70}",
            "{range: {min: 2, max: 10}}",
        ] {
            let web = parse(
                &format!(
                    "name: w\ntype: Backend Service\nimage: {{location: a.wasm}}\ncount: {count}\n"
                ),
                None,
            )
            .unwrap();
            assert!(
                matches!(web.kind, Kind::Service { count: 2, .. }),
                "{count}"
            );
            assert!(
                web.notes[0].contains("runs its minimum, 2 tasks"),
                "{:?}",
                web.notes
            );
        }
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases = [
            (
                "name: w\ntype: Load Balanced Web Service\nimage: {location: a.wasm}\nhttp:\n  path: /\n  healthcheck:\n    intervall: 10s\n",
                "http.healthcheck.intervall: unknown key (known: path, port, success_codes, healthy_threshold, unhealthy_threshold, interval, timeout, grace_period)",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\ncount: many\n",
                "count: invalid type: string \"many\", expected a whole number",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nhttp: {path: /}\n",
                "http: unknown key (known: name, type, image, command, entrypoint, platform, cpu, memory, variables, secrets, count, exec, deployment, environments)",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nenvironments:\n  test:\n    cpu: lots\n",
                "environments.test.cpu: invalid type: string \"lots\", expected a whole number",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nenvironments:\n  test:\n    image: {port: x}\n",
                "environments.test.image.port: invalid type: string \"x\", expected a port number (0-65535)",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nenvironments:\n  test:\n    count: many\n",
                "environments.test.count: invalid type: string \"many\", expected a whole number",
            ),
            (
                "name: w\ntype: Load Balanced Web Service\nimage: {location: a.wasm}\nhttp: {path: /}\nenvironments:\n  test:\n    http: {healthcheck: {intervall: 5s}}\n",
                "environments.test.http.healthcheck.intervall: unknown key",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nenvironments:\n  test:\n    imag: {}\n",
                "environments.test.imag: unknown key (known: name, type, image, command, entrypoint, platform, cpu, memory, variables, secrets, count, exec, deployment, environments)",
            ),
            (
                "name: j\ntype: Scheduled Job\nimage: {location: a.wasm, port: 80}\non: {schedule: '@daily'}\n",
                "image.port: unknown key (known: location)",
            ),
            (
                "name: j\ntype: Scheduled Job\nimage: {location: a.wasm}\non: {schedule: '@fortnightly'}\n",
                "on.schedule: \"@fortnightly\" is not a schedule",
            ),
            (
                "name: w\ntype: Worker Service\n",
                "type: \"Worker Service\" is not a type wasmgate applies",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\nvariables: {A: [1]}\n",
                "variables.A: expected a string, number or boolean",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm}\ndeployment: {rolling: fast}\n",
                "deployment.rolling: \"fast\" is not default or recreate",
            ),
            (
                "name: W\ntype: Backend Service\nimage: {location: a.wasm}\n",
                "name: \"W\": a lowercase letter",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {location: a.wasm, healthcheck: {command: [CMD, x], interval: 1s}}\n",
                "image.healthcheck.interval: 1s is outside ECS's 5s to 300s",
            ),
            (
                "name: w\ntype: Backend Service\nimage: {build: Dockerfile}\n",
                "image.build: unknown key (known: location, port, healthcheck)",
            ),
            (
                "name: w\ntype: Load Balanced Web Service\nimage: {location: a.wasm}\nhttp: {path: /, healthcheck: {success_codes: '200-299'}}\n",
                "http.healthcheck.success_codes: \"200-299\"",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text, None).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
        assert!(matches!(parse("a: [", None), Err(ManifestError::Yaml(_))));
    }
}
