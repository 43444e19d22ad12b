//! A task's network, from its definition: the mode (`networkMode`; unset is ECS's default,
//! awsvpc for FARGATE and bridge otherwise), the ports its containers map, and the task
//! network wired on the container capacity before the first container starts and released
//! after the last one exited. The attachment (address, MAC, port bindings) is reported as the
//! task's `NetworkAttached` step.

use std::sync::Arc;

use crate::capacity::container::ContainerNetwork;
use crate::capacity::container::network::{
    EgressPolicy, NetworkAttachment, PortBinding, PortRequest, Protocol, TaskNetworkMode,
    TaskNetworks,
};
use crate::taskdef::{Compatibility, NetworkMode, TaskDefinition, TransportProtocol};

use super::prepare::{Prepared, StartFailure};
use super::task::{TaskEvent, TaskRequest, emit};

/// The task's network mode as the capacity knows it.
pub(super) fn mode_of(definition: &TaskDefinition) -> TaskNetworkMode {
    let spec = &definition.spec;
    match spec.network_mode {
        Some(NetworkMode::Awsvpc) => TaskNetworkMode::Awsvpc,
        Some(NetworkMode::Bridge) => TaskNetworkMode::Bridge,
        Some(NetworkMode::Host) => TaskNetworkMode::Host,
        Some(NetworkMode::None) => TaskNetworkMode::None,
        None if spec
            .requires_compatibilities
            .contains(&Compatibility::Fargate) =>
        {
            TaskNetworkMode::Awsvpc
        }
        None => TaskNetworkMode::Bridge,
    }
}

/// Every single-port mapping of the task's containers (ranges are not mapped).
pub(super) fn port_requests(definition: &TaskDefinition) -> Vec<PortRequest> {
    definition
        .spec
        .container_definitions
        .iter()
        .flat_map(|container| {
            container.port_mappings.iter().filter_map(|mapping| {
                Some(PortRequest {
                    container: container.name.clone(),
                    container_port: u16::try_from(mapping.container_port?).ok()?,
                    host_port: mapping.host_port.and_then(|p| u16::try_from(p).ok()),
                    protocol: match mapping.protocol {
                        Some(TransportProtocol::Udp) => Protocol::Udp,
                        _ => Protocol::Tcp,
                    },
                })
            })
        })
        .collect()
}

/// The label that limits a container task's outbound traffic (a Wasm HTTP handler's
/// `wasmgate.http.outbound-hosts` counts too).
pub(super) const OUTBOUND_HOSTS_LABEL: &str = crate::taskdef::OUTBOUND_HOSTS_LABEL;

/// The task's egress policy: open, unless a container declares outbound hosts; then only
/// to what its containers declare together (they share one namespace).
pub(super) fn egress_of(definition: &TaskDefinition) -> Result<EgressPolicy, String> {
    let mut entries: Vec<String> = Vec::new();
    let mut declared = false;
    for container in &definition.spec.container_definitions {
        if let Some(value) = container.docker_labels.get(OUTBOUND_HOSTS_LABEL) {
            declared = true;
            entries.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string),
            );
        } else if let Some(settings) = container.http_settings()
            && !settings.outbound_hosts.is_empty()
        {
            declared = true;
            entries.extend(settings.outbound_hosts);
        }
    }
    if !declared {
        return Ok(EgressPolicy::Open);
    }
    EgressPolicy::of_entries(entries.iter().map(String::as_str))
}

/// A wired task network, to release when the task's containers are gone.
pub(super) struct WiredNetwork {
    networks: Arc<TaskNetworks>,
    task_id: String,
}

impl WiredNetwork {
    /// CNI DEL and the namespace removed; a failure is logged (the next start retries it).
    pub(super) async fn release(self) {
        let started = std::time::Instant::now();
        let task_id = self.task_id.clone();
        let released = tokio::task::spawn_blocking(move || self.networks.release(&self.task_id))
            .await
            .unwrap_or_else(|e| {
                Err(crate::capacity::container::network::NetworkError::Io {
                    context: "release the task network".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        match released {
            Ok(()) => tracing::info!(
                micros = started.elapsed().as_micros() as u64,
                "task network released"
            ),
            Err(error) => tracing::warn!(%task_id, %error, "cannot release the task network"),
        }
    }
}

/// Gives the task's container-image containers their network: the task's own namespace
/// (awsvpc, bridge: wired on `networks`), the host's, or an empty one; reports the
/// attachment. Returns what to release after the task.
pub(super) async fn attach(
    request: &TaskRequest,
    networks: Option<&Arc<TaskNetworks>>,
    prepared: &mut [Prepared],
) -> Result<Option<WiredNetwork>, StartFailure> {
    let Some(first) = prepared
        .iter()
        .position(|(program, _, _)| program.uses_task_network())
    else {
        return Ok(None);
    };
    let definition = &request.definition;
    let mode = mode_of(definition);
    let ports = port_requests(definition);
    let (network, attachment, wired) = match mode {
        TaskNetworkMode::None => (ContainerNetwork::Own, None, None),
        TaskNetworkMode::Host => {
            let bindings = ports
                .iter()
                .map(|p| PortBinding {
                    container: p.container.clone(),
                    container_port: p.container_port,
                    host_port: p.container_port,
                    protocol: p.protocol,
                })
                .collect();
            let attachment = NetworkAttachment {
                mode,
                interface: None,
                bindings,
            };
            (ContainerNetwork::Host, Some(attachment), None)
        }
        TaskNetworkMode::Awsvpc | TaskNetworkMode::Bridge => {
            let container = &prepared[first].1.name;
            let Some(networks) = networks else {
                return Err(StartFailure::new(
                    container,
                    "ResourceInitializationError: this host has no container capacity to \
                     wire a task network"
                        .into(),
                ));
            };
            let egress = egress_of(definition).map_err(|why| {
                StartFailure::new(
                    container,
                    format!("ResourceInitializationError: {OUTBOUND_HOSTS_LABEL}: {why}"),
                )
            })?;
            let started = std::time::Instant::now();
            let task_id = request.task_id.clone();
            let on = networks.clone();
            let attached =
                tokio::task::spawn_blocking(move || on.attach(&task_id, mode, &ports, &egress))
                    .await;
            let network = match attached {
                Ok(Ok(network)) => network,
                Ok(Err(error)) => {
                    return Err(StartFailure::new(
                        container,
                        format!(
                            "ResourceInitializationError: cannot wire the task's {} network: {error}",
                            mode_name(mode)
                        ),
                    ));
                }
                Err(error) => {
                    return Err(StartFailure::new(
                        container,
                        format!("ResourceInitializationError: the network setup failed: {error}"),
                    ));
                }
            };
            let address = network
                .attachment
                .interface
                .as_ref()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |i| i.ipv4);
            tracing::info!(
                %address,
                mode = mode_name(mode),
                micros = started.elapsed().as_micros() as u64,
                "task network attached"
            );
            let wired = WiredNetwork {
                networks: networks.clone(),
                task_id: request.task_id.clone(),
            };
            (
                ContainerNetwork::Task {
                    netns: network.netns,
                    address,
                    resolv_conf: network.resolv_conf,
                    hosts: network.hosts,
                },
                Some(network.attachment),
                Some(wired),
            )
        }
    };
    for (program, spec, _) in prepared.iter_mut() {
        if program.uses_task_network() {
            spec.runtime.network = network.clone();
        }
    }
    if let Some(network) = attachment {
        emit(
            request,
            TaskEvent::NetworkAttached {
                task_id: request.task_id.clone(),
                network,
            },
        );
    }
    Ok(wired)
}

fn mode_name(mode: TaskNetworkMode) -> &'static str {
    match mode {
        TaskNetworkMode::Awsvpc => "awsvpc",
        TaskNetworkMode::Bridge => "bridge",
        TaskNetworkMode::Host => "host",
        TaskNetworkMode::None => "none",
    }
}
