//! `WasmgateV1.GetHttpRoutes`: every HTTP route the gateway serves (the ACTIVE services whose
//! task definition declares one) with the gateway's figures for it as JSON counters, so the
//! console shows requests/s, latency and errors without parsing `/metrics` text. Signed and
//! checked like every call. Rates are the reader's: two readings, divided by the time between.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, HttpFigures, clusters, parse};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetHttpRoutes {
    /// Only this cluster's routes (every cluster's when absent).
    cluster: Option<String>,
}

pub fn get(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GetHttpRoutes = parse(body)?;
    let only = match request.cluster.as_deref() {
        Some(cluster) => Some(clusters::require_active(api, Some(cluster))?),
        None => None,
    };
    let routes: Vec<Value> = crate::control::routes::http_routes(&api.control)?
        .into_iter()
        .filter(|route| only.as_deref().is_none_or(|c| route.cluster == c))
        .map(|route| {
            let key = format!("{}/{}", route.cluster, route.service_name);
            let figures = figures_of(api, &key).unwrap_or_default();
            json!({
                "cluster": route.cluster,
                "serviceName": route.service_name,
                "container": route.container,
                "host": route.settings.host,
                "path": route.settings.path,
                "desiredCount": route.desired_count,
                "servingTasks": route.running_tasks.len(),
                "concurrency": route.settings.concurrency,
                "timeoutSeconds": route.settings.timeout.as_secs_f64(),
                "figures": figures_json(&figures),
            })
        })
        .collect();
    Ok(json!({
        "gateway": api.gateway_address().map(|a| format!("http://{a}")),
        "routes": routes,
    }))
}

/// The first figures a metrics source keeps for `service` (the gateway is the only one).
fn figures_of(api: &Api, service: &str) -> Option<HttpFigures> {
    api.metrics_sources
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find_map(|source| source.http_figures(service))
}

fn figures_json(figures: &HttpFigures) -> Value {
    let [r1, r2, r3, r4, r5] = figures.responses;
    json!({
        "requests": figures.requests,
        "responses": {"1xx": r1, "2xx": r2, "3xx": r3, "4xx": r4, "5xx": r5},
        "durationSumSeconds": figures.duration_sum_seconds,
        "durationBuckets": figures
            .duration_buckets
            .iter()
            .map(|(le, count)| json!({"le": le, "count": count}))
            .collect::<Vec<_>>(),
    })
}
