//! Capacity providers: which hosts a task may draw on, and how a capacity provider strategy
//! (`base`, `weight`) spreads a group's tasks over providers, as ECS does.
//!
//! - FARGATE and FARGATE_SPOT are built in and draw from the shared pool (hosts in no
//!   cluster). A pool host with the attribute `wasmgate.pool=FARGATE_SPOT` serves FARGATE_SPOT
//!   only; while no pool host carries that mark, FARGATE_SPOT draws from the whole pool, so a
//!   strategy written for AWS still places on a one-machine install.
//! - A provider someone creates draws from the container instances registered in the cluster
//!   it is associated with whose `wasmgate.pool` attribute names its pool: the Auto Scaling
//!   group's name of `autoScalingGroupArn` (`...:autoScalingGroupName/NAME`), or the provider's
//!   own name for a managed instances provider. An agent joins a pool with
//!   `--attribute wasmgate.pool=NAME`, or PutAttributes puts a running host into one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hosts::HostRecord;
use super::{Control, ControlError};
use crate::records::LaunchType;

/// The built-in provider of the shared pool.
pub const FARGATE: &str = "FARGATE";
/// The built-in provider of the shared pool's spot hosts.
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";
/// The host attribute that puts a host into a provider's pool.
pub const POOL_ATTRIBUTE: &str = "wasmgate.pool";
/// ECS's limits on a strategy entry.
const MAX_BASE: u32 = 100_000;
const MAX_WEIGHT: u32 = 1_000;
/// ECS's limit on a strategy's entries.
const MAX_STRATEGY: usize = 20;

/// The store key of a provider someone created.
pub fn provider_key(name: &str) -> String {
    format!("capacity-providers/{name}")
}

/// The kinds of provider ECS has; the built-in ones are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderKind {
    Fargate,
    FargateSpot,
    Ec2Autoscaling,
    ManagedInstances,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fargate => "FARGATE",
            Self::FargateSpot => "FARGATE_SPOT",
            Self::Ec2Autoscaling => "EC2_AUTOSCALING",
            Self::ManagedInstances => "MANAGED_INSTANCES",
        }
    }
}

/// ECS's capacity provider statuses as wasmgate uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderStatus {
    Active,
    Inactive,
}

/// A capacity provider someone created (CreateCapacityProvider).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    pub status: ProviderStatus,
    /// The hosts' `wasmgate.pool` value it draws from.
    pub pool: String,
    /// The cluster it is associated with (PutClusterCapacityProviders, or `cluster` on create
    /// for a managed instances provider): a provider serves one cluster, as in ECS.
    #[serde(default)]
    pub cluster: Option<String>,
    pub created_at: f64,
    pub update_status: String,
    /// ECS's other members as given: `autoScalingGroupProvider`, `managedInstancesProvider`,
    /// `tags`.
    #[serde(flatten)]
    pub shape: serde_json::Map<String, Value>,
}

/// A provider a task may draw on.
#[derive(Debug, Clone)]
pub enum Provider {
    Fargate,
    FargateSpot,
    Custom(ProviderRecord),
}

impl Provider {
    pub fn name(&self) -> &str {
        match self {
            Self::Fargate => FARGATE,
            Self::FargateSpot => FARGATE_SPOT,
            Self::Custom(record) => &record.name,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Fargate => ProviderKind::Fargate,
            Self::FargateSpot => ProviderKind::FargateSpot,
            Self::Custom(record) => record.kind,
        }
    }

    /// The launch type of the tasks it places: the shared pool's, or the cluster's own hosts'.
    pub fn launch_type(&self) -> LaunchType {
        match self {
            Self::Fargate | Self::FargateSpot => LaunchType::Fargate,
            Self::Custom(_) => LaunchType::Ec2,
        }
    }

    /// Whether `host` serves this provider for tasks of `cluster`; `spot_marked` says whether
    /// any shared-pool host carries the FARGATE_SPOT mark.
    pub fn admits(&self, host: &HostRecord, cluster: &str, spot_marked: bool) -> bool {
        let pool = host.attribute(POOL_ATTRIBUTE);
        match self {
            Self::Fargate => host.cluster.is_none() && pool != Some(FARGATE_SPOT),
            Self::FargateSpot => {
                host.cluster.is_none() && (!spot_marked || pool == Some(FARGATE_SPOT))
            }
            Self::Custom(record) => {
                host.cluster.as_deref() == Some(cluster) && pool == Some(record.pool.as_str())
            }
        }
    }
}

/// Whether any host of the shared pool is marked for FARGATE_SPOT.
pub fn spot_marked(hosts: &[HostRecord]) -> bool {
    hosts
        .iter()
        .any(|h| h.cluster.is_none() && h.attribute(POOL_ATTRIBUTE) == Some(FARGATE_SPOT))
}

/// The provider named `name` (a name or an ARN), built in or created; `None` if there is none
/// or it was deleted.
pub fn find(control: &Control, name: &str) -> Result<Option<Provider>, ControlError> {
    let name = crate::arn::resource_name(name, "capacity-provider");
    Ok(match name {
        FARGATE => Some(Provider::Fargate),
        FARGATE_SPOT => Some(Provider::FargateSpot),
        other => {
            crate::records::get::<ProviderRecord>(control.store.as_ref(), &provider_key(other))?
                .map(|(record, _)| record)
                .filter(|record| record.status == ProviderStatus::Active)
                .map(Provider::Custom)
        }
    })
}

/// Every provider someone created and has not deleted.
pub fn created(control: &Control) -> Result<Vec<ProviderRecord>, ControlError> {
    Ok(
        crate::records::list::<ProviderRecord>(control.store.as_ref(), "capacity-providers/")?
            .into_iter()
            .filter(|record| record.status == ProviderStatus::Active)
            .collect(),
    )
}

/// The hosts provider `provider` draws from for tasks of `cluster` (any status; the caller
/// decides whether a draining or disconnected host counts).
pub fn hosts_of(
    control: &Control,
    cluster: &str,
    provider: &str,
) -> Result<Vec<HostRecord>, ControlError> {
    let Some(provider) = find(control, provider)? else {
        return Err(ControlError::NotFound(format!(
            "The capacity provider {provider} was not found."
        )));
    };
    let hosts = control.hosts.records()?;
    let spot = spot_marked(&hosts);
    Ok(hosts
        .into_iter()
        .filter(|host| provider.admits(host, cluster, spot))
        .collect())
}

/// The providers associated with `cluster` (its record's `capacityProviders`). A cluster that
/// never named any has FARGATE and FARGATE_SPOT, wasmgate's default for every new cluster.
pub fn of_cluster(control: &Control, cluster: &str) -> Result<Vec<String>, ControlError> {
    let record = control.store.get(&format!("clusters/{cluster}"))?;
    Ok(associated(record.as_ref().map(|found| &found.value)))
}

/// The providers a stored cluster record names (see [`of_cluster`]).
pub fn associated(cluster_record: Option<&Value>) -> Vec<String> {
    match cluster_record
        .and_then(|r| r.get("capacityProviders"))
        .and_then(Value::as_array)
    {
        Some(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => vec![FARGATE.to_string(), FARGATE_SPOT.to_string()],
    }
}

/// The provider a host of `cluster` belongs to, for ContainerInstance's `capacityProviderName`.
pub fn provider_of_host(providers: &[ProviderRecord], host: &HostRecord) -> Option<String> {
    let cluster = host.cluster.as_deref()?;
    let pool = host.attribute(POOL_ATTRIBUTE)?;
    providers
        .iter()
        .find(|p| p.cluster.as_deref() == Some(cluster) && p.pool == pool)
        .map(|p| p.name.clone())
}

/// One entry of a capacity provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyItem {
    pub capacity_provider: String,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub base: u32,
}

/// Checks a strategy as ECS does; `member` names it in the error
/// (`capacityProviderStrategy`, `defaultCapacityProviderStrategy`).
pub fn check_strategy(member: &str, items: &[StrategyItem]) -> Result<(), String> {
    if items.len() > MAX_STRATEGY {
        return Err(format!(
            "{member}: a strategy holds at most {MAX_STRATEGY} capacity providers"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.base > MAX_BASE {
            return Err(format!(
                "{member}[{i}].base: must be between 0 and {MAX_BASE} (got {})",
                item.base
            ));
        }
        if item.weight > MAX_WEIGHT {
            return Err(format!(
                "{member}[{i}].weight: must be between 0 and {MAX_WEIGHT} (got {})",
                item.weight
            ));
        }
        let name = crate::arn::resource_name(&item.capacity_provider, "capacity-provider");
        if !seen.insert(name.to_string()) {
            return Err(format!(
                "{member}[{i}].capacityProvider: {name} is named twice"
            ));
        }
    }
    if items.iter().filter(|item| item.base > 0).count() > 1 {
        return Err(format!(
            "{member}: only one capacity provider in a strategy can have a base defined"
        ));
    }
    if !items.is_empty() && items.iter().all(|item| item.weight == 0) {
        return Err(format!(
            "{member}: at least one capacity provider must have a weight greater than zero"
        ));
    }
    Ok(())
}

/// Resolves a checked strategy for a task of `cluster` whose cluster has `associated`
/// providers: each entry's provider, in order. Errors say which entry is wrong, in ECS's words.
pub fn resolve(
    control: &Control,
    member: &str,
    associated: &[String],
    items: &[StrategyItem],
) -> Result<Vec<Provider>, ControlError> {
    let mut providers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = crate::arn::resource_name(&item.capacity_provider, "capacity-provider");
        let Some(provider) = find(control, name)? else {
            return Err(ControlError::Invalid(format!(
                "{member}[{i}].capacityProvider: the capacity provider {name} was not found"
            )));
        };
        if !associated.iter().any(|a| a == name) {
            return Err(ControlError::Invalid(format!(
                "{member}[{i}].capacityProvider: The specified capacity provider strategy \
                 cannot contain a capacity provider that is not associated with the cluster \
                 ({name}). Associate it with PutClusterCapacityProviders."
            )));
        }
        providers.push(provider);
    }
    let fargate = providers
        .iter()
        .filter(|p| p.launch_type() == LaunchType::Fargate)
        .count();
    if fargate != 0 && fargate != providers.len() {
        return Err(ControlError::Invalid(format!(
            "{member}: a strategy cannot mix FARGATE / FARGATE_SPOT with Auto Scaling group \
             or managed instances capacity providers"
        )));
    }
    Ok(providers)
}

/// The entry of `items` the next task of a group goes to, given how many of the group's tasks
/// each entry's provider holds (`counts`, same order): first the entry with a `base` not yet
/// met, then the entry furthest below its `weight`'s share of the tasks beyond the bases.
/// Ties go to the earlier entry. `None` when every weight is zero and the base is met.
pub fn pick(items: &[StrategyItem], counts: &[u32]) -> Option<usize> {
    if let Some(i) = items
        .iter()
        .zip(counts)
        .position(|(item, &count)| count < item.base)
    {
        return Some(i);
    }
    let mut best: Option<(usize, f64)> = None;
    for (i, (item, &count)) in items.iter().zip(counts).enumerate() {
        if item.weight == 0 {
            continue;
        }
        // After this task, the share of the weight this entry would have used.
        let beyond = f64::from(count.saturating_sub(item.base)) + 1.0;
        let load = beyond / f64::from(item.weight);
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, base: u32, weight: u32) -> StrategyItem {
        StrategyItem {
            capacity_provider: name.into(),
            base,
            weight,
        }
    }

    /// Places `n` tasks one by one and returns how many each entry got.
    fn place(items: &[StrategyItem], n: u32) -> Vec<u32> {
        let mut counts = vec![0; items.len()];
        for _ in 0..n {
            let i = pick(items, &counts).expect("a provider");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn base_first_then_weights() {
        // ECS's own example: base 2 on A, then A:B = 1:3 for the rest.
        let items = [item("A", 2, 1), item("B", 0, 3)];
        assert_eq!(place(&items, 2), [2, 0]);
        assert_eq!(place(&items, 6), [3, 3]);
        assert_eq!(place(&items, 10), [4, 6]);
    }

    #[test]
    fn weight_zero_gets_only_its_base() {
        let items = [item("A", 1, 0), item("B", 0, 1)];
        assert_eq!(place(&items, 5), [1, 4]);
        assert_eq!(pick(&[item("A", 1, 0)], &[1]), None);
    }

    #[test]
    fn existing_tasks_count_towards_the_shares() {
        let items = [item("A", 0, 1), item("B", 0, 1)];
        assert_eq!(pick(&items, &[3, 0]), Some(1));
        assert_eq!(pick(&items, &[2, 2]), Some(0));
    }

    #[test]
    fn strategies_are_checked_as_ecs_does() {
        assert!(
            check_strategy("s", &[item("A", 1, 1), item("B", 1, 1)])
                .unwrap_err()
                .contains("only one")
        );
        assert!(
            check_strategy("s", &[item("A", 0, 0)])
                .unwrap_err()
                .contains("weight greater than zero")
        );
        assert!(
            check_strategy("s", &[item("A", 0, 1001)])
                .unwrap_err()
                .contains("s[0].weight")
        );
        assert!(
            check_strategy("s", &[item("A", 0, 1), item("A", 0, 1)])
                .unwrap_err()
                .contains("twice")
        );
        assert!(check_strategy("s", &[item("A", 2, 1), item("B", 0, 3)]).is_ok());
    }
}
