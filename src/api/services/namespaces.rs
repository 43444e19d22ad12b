//! ListServicesByNamespace: the services whose Service Connect namespace is the one named (by
//! name or ARN, as the service or its cluster's `serviceConnectDefaults` names it). There is
//! no Cloud Map here, so a namespace exists when a service or a cluster names it.

use serde::Deserialize;
use serde_json::Value;

use crate::api::{Api, ApiError, ErrorKind, page, paged, parse};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListServicesByNamespace {
    namespace: String,
    #[serde(rename = "nextToken")]
    _next_token: Option<String>,
    #[serde(rename = "maxResults")]
    _max_results: Option<Value>,
}

/// The name of a namespace given by name or ARN (`...:namespace/NAME-OR-ID`).
fn same_namespace(named: &str, given: &str) -> bool {
    let last = |text: &str| -> String {
        if text.starts_with("arn:") {
            text.rsplit('/').next().unwrap_or(text).to_string()
        } else {
            text.to_string()
        }
    };
    named == given || last(named) == last(given)
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListServicesByNamespace = parse(body.clone())?;
    let given = request.namespace.as_str();
    if given.is_empty() {
        return Err(ApiError::invalid("namespace: required"));
    }
    let store = api.control.store.as_ref();
    // Each cluster's default namespace, by cluster ARN.
    let mut defaults = std::collections::HashMap::new();
    let mut known = false;
    for (_, found) in store.list("clusters/")? {
        let Some(namespace) = found.value["serviceConnectDefaults"]["namespace"].as_str() else {
            continue;
        };
        if found.value["status"] != "ACTIVE" {
            continue;
        }
        known |= same_namespace(namespace, given);
        let name = found.value["clusterName"].as_str().unwrap_or_default();
        defaults.insert(api.control.arns.cluster(name), namespace.to_string());
    }
    let mut arns = Vec::new();
    for (_, found) in store.list("services/")? {
        let service = &found.value;
        let connect = &service["serviceConnectConfiguration"];
        let namespace = match connect["namespace"].as_str() {
            Some(namespace) => Some(namespace.to_string()),
            None if connect["enabled"] == true => service["clusterArn"]
                .as_str()
                .and_then(|c| defaults.get(c).cloned()),
            None => None,
        };
        let Some(namespace) = namespace else {
            continue;
        };
        if !same_namespace(&namespace, given) {
            continue;
        }
        known = true;
        if service["status"] != "INACTIVE" {
            arns.push(service["serviceArn"].clone());
        }
    }
    if !known {
        return Err(ApiError::new(
            ErrorKind::NamespaceNotFoundException,
            format!("Namespace not found: {given}"),
        ));
    }
    let (items, next) = page(&body, arns)?;
    Ok(paged("serviceArns", items, next))
}
