//! CreateCapacityProvider, UpdateCapacityProvider, DeleteCapacityProvider,
//! DescribeCapacityProviders, PutClusterCapacityProviders: ECS's shapes over
//! `control::providers`, which says which hosts a provider draws from and how a strategy
//! spreads tasks.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ErrorKind, clusters, page, parse};
use crate::control::providers::{
    self, FARGATE, FARGATE_SPOT, Provider, ProviderKind, ProviderRecord, ProviderStatus,
    StrategyItem, provider_key,
};
use crate::records::timestamp;

/// ECS's words for a provider that is not there.
fn not_found(name: &str) -> ApiError {
    ApiError::client(format!(
        "The specified capacity provider does not exist: {name}. Specify a valid name or ARN \
         and try again."
    ))
}

/// ECS's rule for provider names: 1-255 letters, digits, hyphens and underscores, not
/// starting with `aws`, `ecs` or `fargate` (reserved).
fn check_name(name: &str) -> Result<(), ApiError> {
    crate::arn::check_resource_name("name", name).map_err(ApiError::invalid)?;
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(ApiError::invalid(format!(
            "name: a capacity provider name cannot begin with aws, ecs or fargate (got {name})"
        )));
    }
    Ok(())
}

/// The Auto Scaling group name of an `autoScalingGroupArn`
/// (`arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:UUID:autoScalingGroupName/NAME`): the
/// pool of hosts the provider draws from.
fn group_name(arn: &str) -> Result<String, ApiError> {
    let name = arn
        .strip_prefix("arn:")
        .filter(|rest| rest.split(':').nth(1) == Some("autoscaling"))
        .and_then(|_| arn.rsplit_once(":autoScalingGroupName/"))
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty());
    name.map(str::to_string).ok_or_else(|| {
        ApiError::invalid(format!(
            "autoScalingGroupProvider.autoScalingGroupArn: expected \
             arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:ID:autoScalingGroupName/NAME \
             (NAME is the wasmgate.pool attribute of the hosts it draws from); got {arn}"
        ))
    })
}

/// Checks `managedScaling` as ECS does.
fn check_managed_scaling(scaling: &Value) -> Result<(), ApiError> {
    let path = "autoScalingGroupProvider.managedScaling";
    for (member, low, high) in [
        ("targetCapacity", 1, 100),
        ("minimumScalingStepSize", 1, 10_000),
        ("maximumScalingStepSize", 1, 10_000),
        ("instanceWarmupPeriod", 0, 10_000),
    ] {
        if let Some(value) = scaling.get(member) {
            match value.as_u64() {
                Some(n) if (low..=high).contains(&n) => {}
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{path}.{member}: must be between {low} and {high} (got {value})"
                    )));
                }
            }
        }
    }
    for member in ["status"] {
        if let Some(value) = scaling.get(member)
            && !matches!(value.as_str(), Some("ENABLED" | "DISABLED"))
        {
            return Err(ApiError::invalid(format!(
                "{path}.{member}: must be ENABLED or DISABLED (got {value})"
            )));
        }
    }
    Ok(())
}

/// Checks the ENABLED / DISABLED members of an `autoScalingGroupProvider`.
fn check_switches(asg: &Value) -> Result<(), ApiError> {
    for member in ["managedTerminationProtection", "managedDraining"] {
        if let Some(value) = asg.get(member)
            && !matches!(value.as_str(), Some("ENABLED" | "DISABLED"))
        {
            return Err(ApiError::invalid(format!(
                "autoScalingGroupProvider.{member}: must be ENABLED or DISABLED (got {value})"
            )));
        }
    }
    if let Some(scaling) = asg.get("managedScaling") {
        check_managed_scaling(scaling)?;
    }
    Ok(())
}

/// ECS's `CapacityProvider` shape; tags only when asked for (`include: [TAGS]`).
fn shape(api: &Api, provider: &Provider, tags: bool) -> Value {
    let name = provider.name();
    let mut shape = json!({
        "capacityProviderArn": api.control.arns.capacity_provider(name),
        "name": name,
        "status": "ACTIVE",
        "type": provider.kind().as_str(),
    });
    if let Provider::Custom(record) = provider {
        for (member, value) in &record.shape {
            if member != "tags" {
                shape[member] = value.clone();
            }
        }
        shape["status"] = json!(match record.status {
            ProviderStatus::Active => "ACTIVE",
            ProviderStatus::Inactive => "INACTIVE",
        });
        shape["updateStatus"] = json!(record.update_status);
        if record.kind == ProviderKind::ManagedInstances
            && let Some(cluster) = &record.cluster
        {
            shape["cluster"] = json!(cluster);
        }
        if tags {
            shape["tags"] = record.shape.get("tags").cloned().unwrap_or(json!([]));
        }
    } else if tags {
        shape["tags"] = json!([]);
    }
    shape
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateCapacityProvider {
    name: String,
    cluster: Option<String>,
    auto_scaling_group_provider: Option<Value>,
    managed_instances_provider: Option<Value>,
    tags: Option<Value>,
}

pub fn create(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: CreateCapacityProvider = parse(body)?;
    check_name(&request.name)?;
    let key = provider_key(&request.name);
    let existing = crate::records::get::<ProviderRecord>(api.control.store.as_ref(), &key)?;
    if let Some((found, _)) = &existing
        && found.status == ProviderStatus::Active
    {
        return Err(ApiError::client(format!(
            "The specified capacity provider already exists: {}. To change the configuration \
             of an existing capacity provider, update the capacity provider.",
            request.name
        )));
    }
    let mut shape = serde_json::Map::new();
    let (kind, pool, cluster) = match (
        request.auto_scaling_group_provider,
        request.managed_instances_provider,
    ) {
        (Some(asg), None) => {
            let arn = asg
                .get("autoScalingGroupArn")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid("autoScalingGroupProvider.autoScalingGroupArn: required")
                })?;
            let pool = group_name(arn)?;
            check_switches(&asg)?;
            if let Some(other) = providers::created(&api.control)?
                .into_iter()
                .find(|p| p.kind == ProviderKind::Ec2Autoscaling && p.pool == pool)
            {
                return Err(ApiError::invalid(format!(
                    "autoScalingGroupProvider.autoScalingGroupArn: the Auto Scaling group is \
                     already in use by the capacity provider {}",
                    other.name
                )));
            }
            shape.insert("autoScalingGroupProvider".into(), asg);
            (ProviderKind::Ec2Autoscaling, pool, None)
        }
        (None, Some(managed)) => {
            for member in ["infrastructureRoleArn", "instanceLaunchTemplate"] {
                if managed.get(member).is_none() {
                    return Err(ApiError::invalid(format!(
                        "managedInstancesProvider.{member}: required"
                    )));
                }
            }
            // A managed instances provider belongs to the cluster it is created in.
            let cluster = clusters::require_active(api, request.cluster.as_deref())?;
            shape.insert("managedInstancesProvider".into(), managed);
            (
                ProviderKind::ManagedInstances,
                request.name.clone(),
                Some(cluster),
            )
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "autoScalingGroupProvider and managedInstancesProvider cannot both be given",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "autoScalingGroupProvider or managedInstancesProvider: one is required",
            ));
        }
    };
    shape.insert("tags".into(), super::tags::given("tags", request.tags)?);
    let record = ProviderRecord {
        name: request.name.clone(),
        kind,
        status: ProviderStatus::Active,
        pool,
        cluster: cluster.clone(),
        created_at: timestamp(),
        update_status: "CREATE_COMPLETE".into(),
        shape,
    };
    match existing {
        // A deleted provider's name may be taken again.
        Some((_, revision)) => {
            crate::records::put(api.control.store.as_ref(), &key, &record, revision)?;
        }
        None => {
            crate::records::create(api.control.store.as_ref(), &key, &record)?;
        }
    }
    if let Some(cluster) = &cluster {
        clusters::change(api, cluster, |c| {
            let mut names = providers::associated(Some(c));
            if !names.contains(&record.name) {
                names.push(record.name.clone());
            }
            c["capacityProviders"] = json!(names);
            Ok(())
        })?;
    }
    Ok(json!({"capacityProvider": shape_of(api, record, true)}))
}

fn shape_of(api: &Api, record: ProviderRecord, tags: bool) -> Value {
    shape(api, &Provider::Custom(record), tags)
}

/// The created provider `given` names (name or ARN), or the error ECS gives; the built-in
/// ones are refused with `what` ("updated", "deleted").
fn custom(api: &Api, given: &str, what: &str) -> Result<(ProviderRecord, u64), ApiError> {
    let name = crate::arn::resource_name(given, "capacity-provider");
    if name == FARGATE || name == FARGATE_SPOT {
        return Err(ApiError::invalid(format!(
            "The {name} capacity provider is reserved and cannot be {what}."
        )));
    }
    crate::records::get::<ProviderRecord>(api.control.store.as_ref(), &provider_key(name))?
        .filter(|(record, _)| record.status == ProviderStatus::Active)
        .ok_or_else(|| not_found(name))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateCapacityProvider {
    name: String,
    #[allow(dead_code)]
    cluster: Option<String>,
    auto_scaling_group_provider: Option<Value>,
    managed_instances_provider: Option<Value>,
}

pub fn update(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: UpdateCapacityProvider = parse(body)?;
    let (mut record, revision) = custom(api, &request.name, "updated")?;
    match (
        record.kind,
        request.auto_scaling_group_provider,
        request.managed_instances_provider,
    ) {
        (ProviderKind::Ec2Autoscaling, Some(given), None) => {
            if given.get("autoScalingGroupArn").is_some() {
                return Err(ApiError::invalid(
                    "autoScalingGroupProvider.autoScalingGroupArn: cannot be changed; create \
                     another capacity provider",
                ));
            }
            check_switches(&given)?;
            let mut asg = record
                .shape
                .get("autoScalingGroupProvider")
                .cloned()
                .unwrap_or(json!({}));
            for (member, value) in given.as_object().into_iter().flatten() {
                asg[member] = value.clone();
            }
            record.shape.insert("autoScalingGroupProvider".into(), asg);
        }
        (ProviderKind::ManagedInstances, None, Some(given)) => {
            record
                .shape
                .insert("managedInstancesProvider".into(), given);
        }
        (ProviderKind::Ec2Autoscaling, _, _) => {
            return Err(ApiError::invalid(
                "autoScalingGroupProvider: required (and only it) to update an Auto Scaling \
                 group capacity provider",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "managedInstancesProvider: required (and only it) to update a managed \
                 instances capacity provider",
            ));
        }
    }
    record.update_status = "UPDATE_COMPLETE".into();
    crate::records::put(
        api.control.store.as_ref(),
        &provider_key(&record.name),
        &record,
        revision,
    )?;
    Ok(json!({"capacityProvider": shape_of(api, record, true)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteCapacityProvider {
    capacity_provider: String,
    #[allow(dead_code)]
    cluster: Option<String>,
}

pub fn delete(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: DeleteCapacityProvider = parse(body)?;
    let (mut record, revision) = custom(api, &request.capacity_provider, "deleted")?;
    if let Some(cluster) = &record.cluster
        && record.kind == ProviderKind::Ec2Autoscaling
    {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "The specified capacity provider is in use and cannot be deleted: it is \
                 associated with the cluster {cluster}; remove it with \
                 PutClusterCapacityProviders first."
            ),
        ));
    }
    if let Some(cluster) = record.cluster.clone() {
        // A managed instances provider leaves its cluster with it, unless tasks use it.
        in_use(api, &cluster, &record.name)?;
        clusters::change(api, &cluster, |c| {
            let names: Vec<String> = providers::associated(Some(c))
                .into_iter()
                .filter(|n| n != &record.name)
                .collect();
            c["capacityProviders"] = json!(names);
            Ok(())
        })?;
    }
    record.status = ProviderStatus::Inactive;
    record.update_status = "DELETE_COMPLETE".into();
    record.cluster = None;
    crate::records::put(
        api.control.store.as_ref(),
        &provider_key(&record.name),
        &record,
        revision,
    )?;
    Ok(json!({"capacityProvider": shape_of(api, record, true)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeCapacityProviders {
    capacity_providers: Option<Vec<String>>,
    #[allow(dead_code)]
    cluster: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    max_results: Option<u64>,
    next_token: Option<String>,
}

pub fn describe(api: &Api, body: Value) -> Result<Value, ApiError> {
    let paging = json!({"maxResults": body.get("maxResults"), "nextToken": body.get("nextToken")});
    let request: DescribeCapacityProviders = parse(body)?;
    let _ = (request.max_results, &request.next_token);
    let mut tags = false;
    for (i, field) in request.include.iter().enumerate() {
        match field.as_str() {
            "TAGS" => tags = true,
            other => {
                return Err(ApiError::invalid(format!(
                    "include[{i}]: must be TAGS (got {other})"
                )));
            }
        }
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    match request.capacity_providers {
        Some(names) => {
            for given in names {
                let name = crate::arn::resource_name(&given, "capacity-provider");
                match providers::find(&api.control, name)? {
                    Some(provider) => found.push(shape(api, &provider, tags)),
                    None => failures.push(json!({
                        "arn": api.control.arns.capacity_provider(name),
                        "reason": "MISSING",
                    })),
                }
            }
            Ok(json!({"capacityProviders": found, "failures": failures}))
        }
        None => {
            found.push(shape(api, &Provider::Fargate, tags));
            found.push(shape(api, &Provider::FargateSpot, tags));
            for record in providers::created(&api.control)? {
                found.push(shape_of(api, record, tags));
            }
            let (items, next) = page(&paging, found)?;
            let mut answer = json!({"capacityProviders": items, "failures": []});
            if let Some(next) = next {
                answer["nextToken"] = json!(next);
            }
            Ok(answer)
        }
    }
}

/// Fails with ECS's ResourceInUseException when tasks not stopped or active services of
/// `cluster` use provider `name`.
fn in_use(api: &Api, cluster: &str, name: &str) -> Result<(), ApiError> {
    let cluster_arn = api.control.arns.cluster(cluster);
    let busy_task = crate::records::tasks(api.control.store.as_ref())?
        .into_iter()
        .any(|t| {
            t.cluster_arn == cluster_arn
                && !t.is_stopped()
                && t.shape.get("capacityProviderName").and_then(Value::as_str) == Some(name)
        });
    let busy_service = api
        .control
        .store
        .list(&format!("services/{cluster}/"))?
        .into_iter()
        .any(|(_, found)| {
            found.value["status"] != "INACTIVE"
                && found.value["capacityProviderStrategy"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|item| {
                        item["capacityProvider"]
                            .as_str()
                            .map(|p| crate::arn::resource_name(p, "capacity-provider"))
                            == Some(name)
                    })
        });
    if busy_task || busy_service {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "The specified capacity provider is in use and cannot be removed: {name} \
                 (tasks or services of the cluster {cluster} use it)"
            ),
        ));
    }
    Ok(())
}

/// Checks a cluster's providers and default strategy (CreateCluster,
/// PutClusterCapacityProviders): every provider exists and serves no other cluster, the
/// strategy is ECS-valid, names only those providers and does not mix kinds.
pub(super) fn check_association(
    api: &Api,
    cluster: &str,
    names: &[String],
    strategy: &[StrategyItem],
) -> Result<(), ApiError> {
    for (i, given) in names.iter().enumerate() {
        let name = crate::arn::resource_name(given, "capacity-provider");
        match providers::find(&api.control, name)? {
            None => {
                return Err(ApiError::invalid(format!(
                    "capacityProviders[{i}]: the capacity provider {name} was not found"
                )));
            }
            Some(Provider::Custom(record)) => {
                if let Some(other) = &record.cluster
                    && other != cluster
                {
                    return Err(ApiError::new(
                        ErrorKind::ResourceInUseException,
                        format!(
                            "capacityProviders[{i}]: the capacity provider {name} is already \
                             associated with the cluster {other}"
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }
    providers::check_strategy("defaultCapacityProviderStrategy", strategy)
        .map_err(ApiError::invalid)?;
    let plain: Vec<String> = names
        .iter()
        .map(|n| crate::arn::resource_name(n, "capacity-provider").to_string())
        .collect();
    providers::resolve(
        &api.control,
        "defaultCapacityProviderStrategy",
        &plain,
        strategy,
    )?;
    Ok(())
}

/// Records on each created provider of `names` that it serves `cluster`, and frees the ones
/// `cluster` no longer names.
pub(super) fn claim(api: &Api, cluster: &str, names: &[String]) -> Result<(), ApiError> {
    for record in providers::created(&api.control)? {
        let named = names.iter().any(|n| n == &record.name);
        let mine = record.cluster.as_deref() == Some(cluster);
        if named == mine || record.kind == ProviderKind::ManagedInstances {
            continue;
        }
        crate::records::update::<ProviderRecord>(
            api.control.store.as_ref(),
            &provider_key(&record.name),
            |r| {
                r.cluster = named.then(|| cluster.to_string());
                true
            },
        )?;
    }
    Ok(())
}

/// Fails with ECS's ClusterContainsCapacityProviderException when `cluster` still has a
/// provider someone created (DeleteCluster); FARGATE and FARGATE_SPOT do not count.
pub(super) fn check_none_left(api: &Api, cluster: &str) -> Result<(), ApiError> {
    if let Some(record) = providers::created(&api.control)?
        .into_iter()
        .find(|r| r.cluster.as_deref() == Some(cluster))
    {
        return Err(ApiError::new(
            ErrorKind::ClusterContainsCapacityProviderException,
            format!(
                "The cluster contains one or more capacity providers that prevent it from being \
                 deleted ({}); remove them with PutClusterCapacityProviders or delete them.",
                record.name
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutClusterCapacityProviders {
    cluster: String,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItem>,
}

pub fn put_cluster(api: &Api, body: Value) -> Result<Value, ApiError> {
    let request: PutClusterCapacityProviders = parse(body)?;
    let cluster = clusters::require_active(api, Some(&request.cluster))?;
    let names: Vec<String> = request
        .capacity_providers
        .iter()
        .map(|n| crate::arn::resource_name(n, "capacity-provider").to_string())
        .collect();
    check_association(
        api,
        &cluster,
        &names,
        &request.default_capacity_provider_strategy,
    )?;
    for removed in providers::of_cluster(&api.control, &cluster)? {
        if !names.contains(&removed) {
            in_use(api, &cluster, &removed)?;
        }
    }
    let strategy: Vec<StrategyItem> = request
        .default_capacity_provider_strategy
        .into_iter()
        .map(|mut item| {
            item.capacity_provider =
                crate::arn::resource_name(&item.capacity_provider, "capacity-provider").into();
            item
        })
        .collect();
    let answer = clusters::change(api, &cluster, |record| {
        record["capacityProviders"] = json!(names);
        record["defaultCapacityProviderStrategy"] = json!(strategy);
        Ok(())
    })?;
    claim(api, &cluster, &names)?;
    Ok(answer)
}
