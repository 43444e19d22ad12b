//! CreateGateway, UpdateGateway, DeleteGateway, DescribeGateway, ListGateways,
//! AssociateGatewayWithCluster, DisassociateGatewayFromCluster, ListGatewayClusterAssociations,
//! DescribeGatewayResources, ListGatewayRoutes, DescribeGatewayRoute.
//!
//! wasmgate has one gateway listener (`--gateway`), which serves the HTTP route of every
//! ACTIVE service whose task definition declares one (`wasmgate.http.*` labels). An ECS
//! gateway is a named view of that listener: the record (`gateways/NAME`) keeps ECS's members
//! and answers with the listener's real port and protocol; its cluster associations
//! (`gateway-associations/GATEWAY/CLUSTER`) decide which clusters' routes it lists, and each
//! such route is a gateway route (`gateway-route/GATEWAY/CLUSTER/SERVICE`), computed from the
//! services, never stored. What an Application Load Balancer needs in AWS and the listener
//! cannot do (HTTPS, a web ACL, S3 access logs, test traffic rules) is refused by member with
//! UnsupportedFeatureException; subnets, security groups, `maxAlbCount` and `httpDesync` are
//! kept and shown but have nothing to act on.
//!
//! Architecture invariant: a gateway never changes what the listener serves: an association
//! or its removal changes listings only, so traffic never depends on these records.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, page, paged, parse, timestamp};
use crate::records::Service;
use crate::records::service::ServiceStatus;
use crate::store::Expect;

/// How many gateways one cluster may be associated with (ECS's limit).
const MAX_GATEWAYS_PER_CLUSTER: usize = 5;

fn key(name: &str) -> String {
    format!("gateways/{name}")
}

fn association_key(gateway: &str, cluster: &str) -> String {
    format!("gateway-associations/{gateway}/{cluster}")
}

fn arn(api: &Api, resource: &str) -> String {
    let scope = &api.control.arns;
    format!("arn:aws:ecs:{}:{}:{resource}", scope.region, scope.account)
}

fn gateway_arn(api: &Api, name: &str) -> String {
    arn(api, &format!("gateway/{name}"))
}

fn route_arn(api: &Api, gateway: &str, cluster: &str, service: &str) -> String {
    arn(api, &format!("gateway-route/{gateway}/{cluster}/{service}"))
}

fn not_found(given: &str) -> ApiError {
    ApiError::new(
        ErrorKind::GatewayNotFoundException,
        format!("The gateway was not found: {given}"),
    )
}

/// The stored gateway `given` (a name or ARN) names, with its revision.
fn find(api: &Api, given: &str) -> Result<(Value, u64), ApiError> {
    let name = crate::arn::resource_name(given, "gateway");
    let found = api
        .control
        .store
        .get(&key(name))?
        .ok_or_else(|| not_found(given))?;
    Ok((found.value, found.revision))
}

/// The listener's address, or why there is no gateway to describe.
fn listener(api: &Api) -> Result<std::net::SocketAddr, ApiError> {
    api.gateway_address().ok_or_else(|| {
        ApiError::unsupported(
            "A gateway is a view of wasmgate's gateway listener, and this server runs none; \
             start it with --gateway ADDRESS",
        )
    })
}

/// Refuses the members of a hostSharedAlb configuration that need AWS infrastructure.
fn check_alb(alb: &Value, path: &str) -> Result<(), ApiError> {
    if alb.get("protocol").and_then(Value::as_str) == Some("HTTPS") {
        return Err(ApiError::unsupported(format!(
            "{path}.protocol HTTPS: wasmgate's gateway listener serves plain HTTP and holds no \
             certificates; use HTTP and terminate TLS in front of it"
        )));
    }
    for (member, why) in [
        (
            "webACLArn",
            "wasmgate's gateway has no AWS WAF to attach a web ACL to",
        ),
        (
            "accessLogs",
            "wasmgate's gateway writes its access log to the server's log (one line per \
             request, with -v), not to S3",
        ),
        (
            "testTrafficRules",
            "wasmgate's gateway routes every request of a route to the service's tasks; it has \
             no test listener rules for blue/green deployments",
        ),
    ] {
        if alb.get(member).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::unsupported(format!("{path}.{member}: {why}")));
        }
    }
    if let Some(port) = alb.get("port").and_then(Value::as_u64)
        && !(1..=65535).contains(&port)
    {
        return Err(ApiError::invalid(format!(
            "{path}.port: must be 1-65535 (got {port})"
        )));
    }
    Ok(())
}

/// ECS's `Gateway` shape: the configuration as kept, with the listener's own port, protocol
/// and load balancer count (one listener).
fn shape(api: &Api, record: &Value) -> Value {
    let mut shape = record.clone();
    if let Some(object) = shape.as_object_mut() {
        object.remove("clientToken");
    }
    let alb = &mut shape["configuration"]["hostSharedAlb"];
    if !alb.is_object() {
        *alb = json!({});
    }
    if let Some(at) = api.gateway_address() {
        alb["port"] = json!(at.port());
    }
    alb["protocol"] = json!("HTTP");
    alb["currentAlbCount"] = json!(1);
    if alb.get("maxAlbCount").is_none() {
        alb["maxAlbCount"] = json!(1);
    }
    shape
}

fn answer(record: &Value) -> Value {
    json!({
        "gatewayArn": record["gatewayArn"],
        "name": record["name"],
        "status": record["status"],
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGateway {
    name: String,
    infrastructure_role_arn: String,
    client_token: Option<String>,
    deletion_protection: Option<bool>,
    configuration: Value,
    tags: Option<Value>,
    propagate_tags: Option<String>,
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateGateway = parse(body)?;
    listener(api)?;
    crate::arn::check_resource_name("name", &request.name).map_err(ApiError::invalid)?;
    let alb = request.configuration.get("hostSharedAlb").cloned();
    let Some(alb) = alb.filter(Value::is_object) else {
        return Err(ApiError::invalid(
            "configuration: exactly one configuration variant must be set (hostSharedAlb)",
        ));
    };
    check_alb(&alb, "configuration.hostSharedAlb")?;
    let propagate = request.propagate_tags.unwrap_or_else(|| "GATEWAY".into());
    if !matches!(propagate.as_str(), "NONE" | "GATEWAY") {
        return Err(ApiError::invalid(format!(
            "propagateTags: must be NONE or GATEWAY (got {propagate})"
        )));
    }
    let access = match alb.get("scheme").and_then(Value::as_str) {
        None | Some("internet-facing") => "PUBLIC",
        Some("internal") => "PRIVATE",
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "configuration.hostSharedAlb.scheme: must be internet-facing or internal (got \
                 {other})"
            )));
        }
    };
    let tags = super::tags::given("tags", request.tags)?;
    if let Some(found) = api.control.store.get(&key(&request.name))? {
        // The same request again (same client token) answers what it made.
        if request.client_token.is_some()
            && found.value["clientToken"] == json!(request.client_token)
        {
            return Ok(answer(&found.value));
        }
        return Err(ApiError::invalid(format!(
            "A gateway named {} already exists.",
            request.name
        )));
    }
    let now = timestamp();
    let record = json!({
        "gatewayArn": gateway_arn(api, &request.name),
        "name": request.name,
        "status": "ACTIVE",
        "infrastructureRoleArn": request.infrastructure_role_arn,
        "deletionProtection": request.deletion_protection.unwrap_or(true),
        "configuration": {"hostSharedAlb": alb},
        "accessType": access,
        "propagateTags": propagate,
        "tags": tags,
        "createdAt": now,
        "updatedAt": now,
        "clientToken": request.client_token,
    });
    api.control
        .store
        .put(&key(&request.name), &record, Expect::Absent)?;
    Ok(answer(&record))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateGateway {
    gateway: String,
    infrastructure_role_arn: Option<String>,
    deletion_protection: Option<bool>,
    configuration: Option<Value>,
    propagate_tags: Option<String>,
}

/// Applied at once (the listener has nothing to roll out), so the gateway answers
/// UPDATE_COMPLETE where ECS goes through UPDATE_IN_PROGRESS.
pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateGateway = parse(body)?;
    let (mut record, revision) = find(api, &request.gateway)?;
    if let Some(configuration) = request.configuration {
        let Some(alb) = configuration.get("hostSharedAlb").filter(|v| v.is_object()) else {
            return Err(ApiError::invalid(
                "configuration: the variant must match the gateway's type (hostSharedAlb)",
            ));
        };
        check_alb(alb, "configuration.hostSharedAlb")?;
        let kept = &mut record["configuration"]["hostSharedAlb"];
        for (member, value) in alb.as_object().into_iter().flatten() {
            if member == "networkConfiguration" {
                for (inner, value) in value.as_object().into_iter().flatten() {
                    kept["networkConfiguration"][inner] = value.clone();
                }
            } else {
                kept[member] = value.clone();
            }
        }
    }
    if let Some(role) = request.infrastructure_role_arn {
        record["infrastructureRoleArn"] = json!(role);
    }
    if let Some(protection) = request.deletion_protection {
        record["deletionProtection"] = json!(protection);
    }
    if let Some(propagate) = request.propagate_tags {
        if !matches!(propagate.as_str(), "NONE" | "GATEWAY") {
            return Err(ApiError::invalid(format!(
                "propagateTags: must be NONE or GATEWAY (got {propagate})"
            )));
        }
        record["propagateTags"] = json!(propagate);
    }
    record["status"] = json!("UPDATE_COMPLETE");
    record["updatedAt"] = json!(timestamp());
    let name = record["name"].as_str().unwrap_or_default().to_string();
    api.control
        .store
        .put(&key(&name), &record, Expect::Revision(revision))?;
    Ok(answer(&record))
}

#[derive(Deserialize)]
struct GatewayOnly {
    gateway: String,
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GatewayOnly = parse(body)?;
    let (mut record, revision) = find(api, &request.gateway)?;
    let name = record["name"].as_str().unwrap_or_default().to_string();
    if record["deletionProtection"] == json!(true) {
        return Err(ApiError::client(format!(
            "The gateway {name} has deletion protection enabled; disable it with UpdateGateway \
             (deletionProtection false) first."
        )));
    }
    let associated: Vec<String> = associations(api)?
        .into_iter()
        .filter(|a| a.gateway == name && a.status != "INACTIVE")
        .map(|a| a.cluster)
        .collect();
    if !associated.is_empty() {
        return Err(ApiError::client(format!(
            "The gateway {name} is still associated with clusters ({}); disassociate them first.",
            associated.join(", ")
        )));
    }
    for (key, _) in api
        .control
        .store
        .list(&format!("gateway-associations/{name}/"))?
    {
        api.control.store.delete(&key, Expect::Any)?;
    }
    api.control
        .store
        .delete(&key(&name), Expect::Revision(revision))?;
    record["status"] = json!("DELETED");
    Ok(answer(&record))
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GatewayOnly = parse(body)?;
    let (record, _) = find(api, &request.gateway)?;
    Ok(json!({"gateway": shape(api, &record)}))
}

#[derive(Deserialize)]
struct ListGateways {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    status: Vec<String>,
}

pub fn list(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListGateways = parse(body.clone())?;
    if request.names.len() > 10 {
        return Err(ApiError::invalid(format!(
            "names: at most 10 (got {})",
            request.names.len()
        )));
    }
    let summaries: Vec<Value> = api
        .control
        .store
        .list("gateways/")?
        .into_iter()
        .map(|(_, found)| found.value)
        .filter(|g| {
            (request.names.is_empty() || request.names.iter().any(|n| g["name"] == n.as_str()))
                && (request.status.is_empty()
                    || request.status.iter().any(|s| g["status"] == s.as_str()))
        })
        .map(|g| {
            json!({
                "gatewayArn": g["gatewayArn"],
                "name": g["name"],
                "status": g["status"],
                "createdAt": g["createdAt"],
            })
        })
        .collect();
    let (items, next) = page(&body, summaries)?;
    Ok(paged("gateways", items, next))
}

/// An association as read: DISASSOCIATING becomes INACTIVE once its cluster has no route
/// left (ECS: the association lingers until the services stop using the gateway).
struct Association {
    gateway: String,
    cluster: String,
    status: &'static str,
}

fn associations(api: &Api) -> Result<Vec<Association>, ApiError> {
    let routes = service_routes(api)?;
    let mut found = Vec::new();
    for (_, stored) in api.control.store.list("gateway-associations/")? {
        let gateway = stored.value["gateway"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cluster = stored.value["cluster"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = match stored.value["status"].as_str() {
            Some("ACTIVE") => "ACTIVE",
            _ if routes.iter().any(|r| r.cluster == cluster) => "DISASSOCIATING",
            _ => "INACTIVE",
        };
        found.push(Association {
            gateway,
            cluster,
            status,
        });
    }
    Ok(found)
}

#[derive(Deserialize)]
struct GatewayAndCluster {
    gateway: String,
    cluster: String,
}

fn association_answer(api: &Api, gateway: &str, cluster: &str, status: &str) -> Value {
    json!({
        "gatewayArn": gateway_arn(api, gateway),
        "clusterArn": api.control.arns.cluster(cluster),
        "status": status,
    })
}

pub fn associate(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GatewayAndCluster = parse(body)?;
    let (record, _) = find(api, &request.gateway)?;
    let gateway = record["name"].as_str().unwrap_or_default().to_string();
    let cluster = clusters::require_active(api, Some(&request.cluster))?;
    let current = associations(api)?;
    if current
        .iter()
        .any(|a| a.gateway == gateway && a.cluster == cluster && a.status == "ACTIVE")
    {
        return Ok(association_answer(api, &gateway, &cluster, "ACTIVE"));
    }
    let of_cluster = current
        .iter()
        .filter(|a| a.cluster == cluster && a.status != "INACTIVE")
        .count();
    if of_cluster >= MAX_GATEWAYS_PER_CLUSTER {
        return Err(ApiError::new(
            ErrorKind::LimitExceededException,
            format!(
                "A cluster can be associated with up to {MAX_GATEWAYS_PER_CLUSTER} gateways; \
                 {cluster} already is."
            ),
        ));
    }
    api.control.store.put(
        &association_key(&gateway, &cluster),
        &json!({"gateway": gateway, "cluster": cluster, "status": "ACTIVE"}),
        Expect::Any,
    )?;
    Ok(association_answer(api, &gateway, &cluster, "ACTIVE"))
}

pub fn disassociate(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: GatewayAndCluster = parse(body)?;
    let (record, _) = find(api, &request.gateway)?;
    let gateway = record["name"].as_str().unwrap_or_default().to_string();
    let cluster = clusters::require_active(api, Some(&request.cluster))?;
    let key = association_key(&gateway, &cluster);
    let Some(found) = api.control.store.get(&key)? else {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFoundException,
            format!("The gateway {gateway} is not associated with cluster {cluster}."),
        ));
    };
    api.control.store.put(
        &key,
        &json!({"gateway": gateway, "cluster": cluster, "status": "DISASSOCIATING"}),
        Expect::Revision(found.revision),
    )?;
    let status = associations(api)?
        .into_iter()
        .find(|a| a.gateway == gateway && a.cluster == cluster)
        .map_or("INACTIVE", |a| a.status);
    Ok(association_answer(api, &gateway, &cluster, status))
}

#[derive(Deserialize)]
struct ListAssociations {
    gateway: Option<String>,
    cluster: Option<String>,
    #[serde(default)]
    status: Vec<String>,
}

pub fn list_associations(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListAssociations = parse(body.clone())?;
    let gateway = request
        .gateway
        .as_deref()
        .map(|g| crate::arn::resource_name(g, "gateway"));
    let cluster = request
        .cluster
        .as_deref()
        .map(|c| crate::arn::resource_name(c, "cluster"));
    let summaries: Vec<Value> = associations(api)?
        .into_iter()
        .filter(|a| {
            gateway.is_none_or(|g| g == a.gateway)
                && cluster.is_none_or(|c| c == a.cluster)
                && (request.status.is_empty() || request.status.iter().any(|s| s == a.status))
        })
        .map(|a| association_answer(api, &a.gateway, &a.cluster, a.status))
        .collect();
    let (items, next) = page(&body, summaries)?;
    Ok(paged("gatewayClusterAssociations", items, next))
}

/// An ACTIVE service that serves a route on the listener.
struct ServiceRoute {
    cluster: String,
    service: String,
    service_arn: String,
    /// The container's first port mapping's name, else the container's name.
    port_name: String,
    url: String,
}

fn service_routes(api: &Api) -> Result<Vec<ServiceRoute>, ApiError> {
    let at = api.gateway_address();
    let mut routes = Vec::new();
    for service in crate::records::list::<Service>(api.control.store.as_ref(), "services/")? {
        if service.status != ServiceStatus::Active {
            continue;
        }
        let Some((container, settings)) =
            crate::control::routes::route_of(&api.control, &service.task_definition)?
        else {
            continue;
        };
        let (record, _) = crate::control::definitions::find(
            api.control.store.as_ref(),
            &service.task_definition,
        )?;
        let port_name = record["document"]["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container.as_str())
            .and_then(|c| c["portMappings"][0]["name"].as_str())
            .unwrap_or(&container)
            .to_string();
        let host = settings
            .host
            .clone()
            .unwrap_or_else(|| at.map_or_else(|| "localhost".to_string(), |a| a.ip().to_string()));
        let url = format!(
            "http://{host}:{}{}",
            at.map_or(0, |a| a.port()),
            settings.path.as_deref().unwrap_or("/")
        );
        routes.push(ServiceRoute {
            cluster: crate::arn::resource_name(&service.cluster_arn, "cluster").to_string(),
            service: service.service_name,
            service_arn: service.service_arn,
            port_name,
            url,
        });
    }
    Ok(routes)
}

/// A gateway route: the association's gateway and a route of its cluster.
struct GatewayRoute {
    gateway: String,
    status: &'static str,
    route: ServiceRoute,
}

fn gateway_routes(api: &Api) -> Result<Vec<GatewayRoute>, ApiError> {
    let associations = associations(api)?;
    let mut found = Vec::new();
    for route in service_routes(api)? {
        for association in associations.iter().filter(|a| a.cluster == route.cluster) {
            let status = match association.status {
                "ACTIVE" => "ACTIVE",
                "DISASSOCIATING" => "DELETE_IN_PROGRESS",
                _ => continue,
            };
            found.push(GatewayRoute {
                gateway: association.gateway.clone(),
                status,
                route: ServiceRoute {
                    cluster: route.cluster.clone(),
                    service: route.service.clone(),
                    service_arn: route.service_arn.clone(),
                    port_name: route.port_name.clone(),
                    url: route.url.clone(),
                },
            });
        }
    }
    Ok(found)
}

fn route_summary(api: &Api, r: &GatewayRoute) -> Value {
    json!({
        "gatewayRouteArn": route_arn(api, &r.gateway, &r.route.cluster, &r.route.service),
        "gatewayArn": gateway_arn(api, &r.gateway),
        "clusterArn": api.control.arns.cluster(&r.route.cluster),
        "serviceArn": r.route.service_arn,
        "serviceContainerPortName": r.route.port_name,
        "status": r.status,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRoutes {
    gateway: Option<String>,
    cluster: Option<String>,
    service: Option<String>,
    service_container_port_name: Option<String>,
    #[serde(default)]
    status: Vec<String>,
}

pub fn list_routes(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: ListRoutes = parse(body.clone())?;
    if let Some(gateway) = &request.gateway {
        find(api, gateway)?;
    }
    let gateway = request
        .gateway
        .as_deref()
        .map(|g| crate::arn::resource_name(g, "gateway"));
    let cluster = request
        .cluster
        .as_deref()
        .map(|c| crate::arn::resource_name(c, "cluster"));
    // A service name can match services of several clusters.
    let service = request.service.as_deref().map(|s| {
        let rest = crate::arn::resource_name(s, "service");
        rest.rsplit('/').next().unwrap_or(rest)
    });
    let summaries: Vec<Value> = gateway_routes(api)?
        .iter()
        .filter(|r| {
            gateway.is_none_or(|g| g == r.gateway)
                && cluster.is_none_or(|c| c == r.route.cluster)
                && service.is_none_or(|s| s == r.route.service)
                && request
                    .service_container_port_name
                    .as_deref()
                    .is_none_or(|p| p == r.route.port_name)
                && (request.status.is_empty() || request.status.iter().any(|s| s == r.status))
        })
        .map(|r| route_summary(api, r))
        .collect();
    let (items, next) = page(&body, summaries)?;
    Ok(paged("gatewayRoutes", items, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRoute {
    gateway_route_arn: String,
}

/// A route's `resources` are empty: there is no load balancer, listener rule or target group
/// behind it, only the listener's route table (`serviceUrl` is where it serves).
pub fn describe_route(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeRoute = parse(body)?;
    let given = &request.gateway_route_arn;
    let found = gateway_routes(api)?
        .into_iter()
        .find(|r| route_arn(api, &r.gateway, &r.route.cluster, &r.route.service) == *given)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFoundException,
                format!("The gateway route was not found: {given}"),
            )
        })?;
    Ok(json!({"gatewayRoute": {
        "gatewayRouteArn": given,
        "serviceArn": found.route.service_arn,
        "serviceContainerPortName": found.route.port_name,
        "status": found.status,
        "serviceUrl": found.route.url,
        "resources": {"hostSharedAlb": []},
    }}))
}

#[derive(Deserialize)]
struct DescribeResources {
    gateway: String,
}

/// The one "load balancer" a gateway has is wasmgate's listener; it has no ARNs of its own,
/// so the entry names only the routes it serves for this gateway.
pub fn describe_resources(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DescribeResources = parse(body)?;
    let (record, _) = find(api, &request.gateway)?;
    let name = record["name"].as_str().unwrap_or_default().to_string();
    let routes: Vec<String> = gateway_routes(api)?
        .iter()
        .filter(|r| r.gateway == name)
        .map(|r| route_arn(api, &r.gateway, &r.route.cluster, &r.route.service))
        .collect();
    Ok(json!({"gatewayResources": {
        "gatewayArn": record["gatewayArn"],
        "resources": {"hostSharedAlb": [{"gatewayRouteArns": routes}]},
    }}))
}
