//! Task networks: each container-image task in `awsvpc` or `bridge` mode gets its own network
//! namespace ([`super::netns`]), shared by all its containers, wired by the CNI plugins
//! ([`super::cni`]) onto this host's task bridge: `bridge` (a veth into the namespace, the
//! bridge as the gateway, outbound traffic masqueraded), `host-local` (one address per task
//! from the task subnet, leases under the capacity's own directory), `portmap` (a `bridge`
//! task's host ports) and `firewall` (the host's FORWARD chain lets the task's traffic pass);
//! `loopback` brings up its `lo`.
//!
//! Architecture invariant: what DEL needs is on disk before ADD starts
//! (`DIR/networks/TASK.json`: the configuration sent, then ADD's result), so a network is
//! released on stop and, after a kill -9, at the next start ([`TaskNetworks::clean_up_leftovers`]):
//! CNI DEL while the namespace still exists (the bridge plugin finds its masquerade rules
//! through it), then the namespace unmounted and removed.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cni::{self, Attachment, Cni, CniError, CniResult, ConfList};
use super::netns;

/// The interface a task's containers see (besides `lo`).
pub const TASK_IFNAME: &str = "eth0";
/// The CNI network name: host-local's lease directory and the iptables comments carry it.
const NETWORK_NAME: &str = "wasmgate";

/// An IPv4 subnet, `A.B.C.D/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text}: not a subnet (A.B.C.D/N)"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{text}: {address} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{text}: the prefix length must be 8 to 30"))?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(address) & !mask != 0 {
            return Err(format!(
                "{text}: host bits are set (the subnet is {}/{prefix})",
                Ipv4Addr::from(u32::from(address) & mask)
            ));
        }
        Ok(Self {
            network: address,
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// How this host wires task networks (`--task-subnet`, `--task-bridge`, `--cni-path`).
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// Where task addresses come from: one per task.
    pub subnet: Subnet,
    /// The Linux bridge the tasks' veths join (made by the bridge plugin when missing).
    pub bridge: String,
    /// Where the CNI plugins are.
    pub cni_path: Vec<PathBuf>,
}

/// The default task subnet: inside 10/8 but away from what is common there (10.0–10.10 of
/// home and office networks, Kubernetes' 10.96/12 and 10.244/16, podman's 10.88/16).
pub const DEFAULT_TASK_SUBNET: &str = "10.176.0.0/16";
pub const DEFAULT_TASK_BRIDGE: &str = "wasmgate0";
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            subnet: DEFAULT_TASK_SUBNET.parse().unwrap_or(Subnet {
                network: Ipv4Addr::new(10, 176, 0, 0),
                prefix: 16,
            }),
            bridge: DEFAULT_TASK_BRIDGE.into(),
            cni_path: std::env::split_paths(DEFAULT_CNI_PATH).collect(),
        }
    }
}

/// A task's network mode, as the capacity knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskNetworkMode {
    /// Its own namespace and address; ports are the task's own.
    Awsvpc,
    /// Its own namespace and address; ports reach it through host ports.
    Bridge,
    /// The host's network.
    Host,
    /// Its own namespace with only `lo`.
    None,
}

impl TaskNetworkMode {
    /// Whether the task gets a namespace wired onto the task bridge.
    pub fn is_wired(self) -> bool {
        matches!(self, Self::Awsvpc | Self::Bridge)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A port a container asks for (`portMappings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub container: String,
    pub container_port: u16,
    /// `None` or 0: any free host port (bridge mode); awsvpc and host use the container port.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

/// A port as it is reachable: `host_port` on the host for bridge and host mode, the
/// container port on the task's own address for awsvpc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    pub container: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
}

/// The task's interface in its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInterface {
    pub ipv4: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// The task subnet it is on (`A.B.C.D/N`).
    pub subnet: String,
}

/// What a task's network is, as the agent reports it (plain data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAttachment {
    pub mode: TaskNetworkMode,
    /// The task's own interface (awsvpc, bridge).
    #[serde(default)]
    pub interface: Option<TaskInterface>,
    #[serde(default)]
    pub bindings: Vec<PortBinding>,
}

/// Where a task may send traffic: anywhere (no allowlist), or only to these destinations
/// (the `outbound-hosts` labels), enforced by iptables inside its namespace; answers to
/// connections made to the task always pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EgressPolicy {
    #[default]
    Open,
    Only(Vec<Destination>),
}

/// A destination of an egress allowlist: a host name, an IPv4 address or an IPv4 subnet, and
/// a port (TCP or UDP; any when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: Option<u16>,
}

impl EgressPolicy {
    /// The policy of allowlist entries (`host`, `host:port`, `A.B.C.D/N[:port]`; `*` lifts it).
    pub fn of_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut destinations = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            if entry == "*" {
                return Ok(Self::Open);
            }
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("outbound host \"{entry}\": {port} is not a port")
                    })?),
                ),
                None => (entry, None),
            };
            if host.is_empty() {
                return Err(format!("outbound host \"{entry}\": no host"));
            }
            destinations.push(Destination {
                host: host.to_string(),
                port,
            });
        }
        Ok(Self::Only(destinations))
    }

    /// The iptables-restore ruleset of a task's namespace: connections to the task only on
    /// its published ports (`ingress`; loopback, answers and ICMP always), and its outbound
    /// traffic by this policy. Host names are resolved now, to their IPv4 addresses.
    fn ruleset(&self, ingress: &[PortRequest]) -> Result<String, String> {
        let mut rules = vec![
            "*filter".to_string(),
            ":INPUT ACCEPT [0:0]".into(),
            ":FORWARD ACCEPT [0:0]".into(),
            ":OUTPUT ACCEPT [0:0]".into(),
            "-A INPUT -i lo -j ACCEPT".into(),
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into(),
            "-A INPUT -p icmp -j ACCEPT".into(),
        ];
        for port in ingress {
            rules.push(format!(
                "-A INPUT -p {} --dport {} -j ACCEPT",
                port.protocol.as_str(),
                port.container_port
            ));
        }
        // Refused as a closed port is, so a client learns at once.
        rules.push("-A INPUT -p tcp -j REJECT --reject-with tcp-reset".into());
        rules.push("-A INPUT -j REJECT --reject-with icmp-port-unreachable".into());
        if let Self::Only(destinations) = self {
            rules.push("-A OUTPUT -o lo -j ACCEPT".into());
            rules.push("-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into());
            for destination in destinations {
                for target in resolve(&destination.host)? {
                    match destination.port {
                        Some(port) => {
                            for protocol in ["tcp", "udp"] {
                                rules.push(format!(
                                    "-A OUTPUT -d {target} -p {protocol} --dport {port} -j ACCEPT"
                                ));
                            }
                        }
                        None => rules.push(format!("-A OUTPUT -d {target} -j ACCEPT")),
                    }
                }
            }
            rules.push("-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset".into());
            rules.push("-A OUTPUT -j REJECT --reject-with icmp-port-unreachable".into());
        }
        rules.push("COMMIT".into());
        Ok(rules.join("\n") + "\n")
    }
}

/// `host` as iptables destinations: a subnet or address as it is, a name as its IPv4
/// addresses (`/32` each).
fn resolve(host: &str) -> Result<Vec<String>, String> {
    if host.contains('/') {
        let subnet: Subnet = host
            .parse()
            .map_err(|why| format!("outbound host {host}: {why}"))?;
        return Ok(vec![subnet.to_string()]);
    }
    if let Ok(address) = host.parse::<Ipv4Addr>() {
        return Ok(vec![format!("{address}/32")]);
    }
    use std::net::ToSocketAddrs as _;
    let mut found: Vec<String> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("outbound host {host}: cannot resolve it: {e}"))?
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(format!("{v4}/32")),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(format!("outbound host {host}: it has no IPv4 address"));
    }
    Ok(found)
}

/// A wired task network: where its namespace is, what it is, and the task's
/// `/etc/resolv.conf` and `/etc/hosts` (bind-mounted read-only into its containers).
#[derive(Debug, Clone)]
pub struct TaskNetwork {
    pub netns: PathBuf,
    pub attachment: NetworkAttachment,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

/// The resolver configuration of a task from the host's: its `search` and `options`, and its
/// name servers but those on the host's loopback (unreachable from the task's namespace).
/// `fallback` is read when every name server of `host` is on loopback (systemd-resolved's
/// upstream list).
pub fn task_resolv_conf(host: &str, fallback: Option<&str>) -> String {
    let is_loopback = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .is_some_and(|a| a.is_loopback())
    };
    let nameservers = |text: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with("nameserver") && !is_loopback(l))
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    let mut servers = nameservers(host);
    if servers.is_empty()
        && let Some(fallback) = fallback
    {
        servers = nameservers(fallback);
    }
    let mut lines: Vec<String> = host
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("search") || l.starts_with("options"))
        .map(str::to_string)
        .collect();
    lines.extend(servers);
    lines.join("\n") + "\n"
}

/// Why a task network could not be made or released.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Cni(#[from] CniError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host port {port}/{protocol} is taken by task {task}")]
    PortTaken {
        port: u16,
        protocol: &'static str,
        task: String,
    },
    #[error("the CNI result names no IPv4 address on {TASK_IFNAME}: {0}")]
    NoAddress(String),
    #[error("the egress policy: {0}")]
    Egress(String),
    #[error("iptables: {0}")]
    Iptables(String),
}

/// What DEL needs of one task's network, kept on disk while it lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    task_id: String,
    netns: PathBuf,
    list: ConfList,
    runtime_config: Value,
    /// ADD's result, once ADD succeeded.
    #[serde(default)]
    result: Option<Value>,
}

/// The task networks of this host's container capacity, under `DIR/networks` (records and
/// host-local's leases) and `DIR/netns` (the namespaces).
pub struct TaskNetworks {
    records: PathBuf,
    namespaces: PathBuf,
    settings: NetworkSettings,
    cni: Cni,
    /// Host ports held by bridge tasks, and by which task.
    host_ports: Mutex<HashMap<(u16, Protocol), String>>,
    /// Whether the subnet's masquerade rule is in place (made once, at the first network).
    masquerading: Mutex<bool>,
}

impl TaskNetworks {
    /// The networks kept under `dir`; makes the directories.
    pub fn new(dir: &Path, settings: NetworkSettings) -> Result<Self, NetworkError> {
        let records = dir.join("networks");
        let namespaces = dir.join("netns");
        for path in [&records, &namespaces] {
            std::fs::create_dir_all(path).map_err(|source| NetworkError::Io {
                context: format!("create {}", path.display()),
                source,
            })?;
        }
        Ok(Self {
            cni: Cni::new(settings.cni_path.clone()),
            records,
            namespaces,
            settings,
            host_ports: Mutex::new(HashMap::new()),
            masquerading: Mutex::new(false),
        })
    }

    pub fn settings(&self) -> &NetworkSettings {
        &self.settings
    }

    fn record_path(&self, task_id: &str) -> PathBuf {
        self.records.join(format!("{task_id}.json"))
    }

    /// The configuration list of a task: the bridge with host-local addresses, portmap when it
    /// maps host ports, the firewall.
    fn conf_list(&self, with_portmap: bool) -> ConfList {
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": self.settings.bridge,
            "isGateway": true,
            // One masquerade rule for the whole subnet (`masquerade`) instead of the plugin's
            // chain per task: its DEL was most of a release's time.
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.settings.subnet.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.records.join("ipam"),
            },
        })];
        if with_portmap {
            plugins.push(
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            );
        }
        plugins.push(json!({"type": "firewall", "backend": "iptables"}));
        ConfList {
            cni_version: cni::CNI_VERSION.into(),
            name: NETWORK_NAME.into(),
            plugins,
        }
    }

    /// Outbound traffic of the task subnet leaves masqueraded as the host's (as Docker's one
    /// rule per network): `POSTROUTING -s SUBNET ! -d SUBNET -j MASQUERADE`, added unless
    /// there, once per process. It names no task, so it outlives them (and this process).
    fn masquerade(&self) -> Result<(), NetworkError> {
        let mut done = self.masquerading.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Ok(());
        }
        let subnet = self.settings.subnet.to_string();
        let comment = format!("wasmgate tasks {subnet}");
        let rule = [
            "POSTROUTING",
            "-s",
            &subnet,
            "!",
            "-d",
            &subnet,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "MASQUERADE",
        ];
        let iptables = |action: &str| {
            std::process::Command::new("iptables")
                .args(["-w", "-t", "nat", action])
                .args(rule)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
        };
        let io = |source| NetworkError::Io {
            context: "run iptables (the task subnet's masquerade rule)".into(),
            source,
        };
        if !iptables("-C").map_err(io)?.status.success() {
            let added = iptables("-A").map_err(io)?;
            if !added.status.success() {
                return Err(NetworkError::Iptables(format!(
                    "cannot add the task subnet's masquerade rule: {}",
                    String::from_utf8_lossy(&added.stderr).trim()
                )));
            }
        }
        *done = true;
        Ok(())
    }

    /// Makes task `task_id`'s namespace and wires it (`mode` awsvpc or bridge), with `ports`.
    /// Blocking (it runs the CNI plugins): call it off the async runtime.
    pub fn attach(
        &self,
        task_id: &str,
        mode: TaskNetworkMode,
        ports: &[PortRequest],
        egress: &EgressPolicy,
    ) -> Result<TaskNetwork, NetworkError> {
        let ruleset = egress.ruleset(ports).map_err(NetworkError::Egress)?;
        self.masquerade()?;
        let bindings = self.bind_ports(task_id, mode, ports)?;
        let attached = self.wire(task_id, mode, &bindings, &ruleset);
        if attached.is_err() {
            self.free_ports(task_id);
        }
        let (netns, interface) = attached?;
        let (resolv_conf, hosts) = self.write_etc(task_id, interface.ipv4).inspect_err(|_| {
            let _ = self.release(task_id);
        })?;
        Ok(TaskNetwork {
            netns,
            attachment: NetworkAttachment {
                mode,
                interface: Some(interface),
                bindings,
            },
            resolv_conf,
            hosts,
        })
    }

    /// The task's `/etc/resolv.conf` (the host's resolvers) and `/etc/hosts` (localhost and
    /// its own address), under `DIR/networks/etc/TASK/`.
    fn write_etc(
        &self,
        task_id: &str,
        address: Ipv4Addr,
    ) -> Result<(PathBuf, PathBuf), NetworkError> {
        let dir = self.etc_dir(task_id);
        let resolv_conf = dir.join("resolv.conf");
        let hosts = dir.join("hosts");
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let fallback = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
        let name = format!("ip-{}", address.to_string().replace('.', "-"));
        std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::write(&resolv_conf, task_resolv_conf(&host, fallback.as_deref()))
            })
            .and_then(|()| {
                std::fs::write(
                    &hosts,
                    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{name}\n"),
                )
            })
            .map_err(|source| NetworkError::Io {
                context: format!("write {}", dir.display()),
                source,
            })?;
        Ok((resolv_conf, hosts))
    }

    fn etc_dir(&self, task_id: &str) -> PathBuf {
        self.records.join("etc").join(task_id)
    }

    fn wire(
        &self,
        task_id: &str,
        mode: TaskNetworkMode,
        bindings: &[PortBinding],
        firewall: &str,
    ) -> Result<(PathBuf, TaskInterface), NetworkError> {
        let host_mapped = mode == TaskNetworkMode::Bridge && !bindings.is_empty();
        let runtime_config = json!({
            "portMappings": bindings.iter().filter(|_| host_mapped).map(|b| json!({
                "hostPort": b.host_port,
                "containerPort": b.container_port,
                "protocol": b.protocol.as_str(),
            })).collect::<Vec<_>>(),
        });
        let netns = self.namespaces.join(task_id);
        let mut record = Record {
            task_id: task_id.to_string(),
            netns: netns.clone(),
            list: self.conf_list(host_mapped),
            runtime_config,
            result: None,
        };
        // Written before anything is made: a crash from here on leaves what DEL needs.
        self.write_record(&record)?;
        let made = netns::create(&netns).map_err(|source| NetworkError::Io {
            context: format!("create the network namespace {}", netns.display()),
            source,
        });
        let wired = made.and_then(|()| {
            let loopback = ConfList {
                cni_version: cni::CNI_VERSION.into(),
                name: "lo".into(),
                plugins: vec![json!({"type": "loopback"})],
            };
            self.cni
                .add(&loopback, attachment(&record, "lo"), &json!({}))?;
            let result = self.cni.add(
                &record.list,
                attachment(&record, TASK_IFNAME),
                &record.runtime_config,
            )?;
            record.result = Some(result.clone());
            self.write_record(&record)?;
            enforce(&netns, firewall)?;
            let parsed: CniResult = serde_json::from_value(result.clone()).unwrap_or_default();
            let (ipv4, prefix, gateway, mac) = parsed
                .ipv4_of(TASK_IFNAME)
                .ok_or_else(|| NetworkError::NoAddress(result.to_string()))?;
            Ok(TaskInterface {
                ipv4,
                prefix,
                gateway,
                mac,
                subnet: self.settings.subnet.to_string(),
            })
        });
        match wired {
            Ok(interface) => Ok((netns, interface)),
            Err(error) => {
                let _ = self.release_record(&record);
                Err(error)
            }
        }
    }

    /// Host ports of `ports` for `mode`: bridge mode takes the asked one (if no other task
    /// here holds it) or any free one, as ECS picks from the ephemeral range.
    fn bind_ports(
        &self,
        task_id: &str,
        mode: TaskNetworkMode,
        ports: &[PortRequest],
    ) -> Result<Vec<PortBinding>, NetworkError> {
        let mut taken = self.host_ports.lock().unwrap_or_else(|p| p.into_inner());
        let mut bindings = Vec::new();
        for port in ports {
            let host_port = match (mode, port.host_port.filter(|p| *p != 0)) {
                (TaskNetworkMode::Bridge, Some(asked)) => asked,
                (TaskNetworkMode::Bridge, None) => free_port(port.protocol, &taken)?,
                _ => port.container_port,
            };
            if mode == TaskNetworkMode::Bridge {
                if let Some(holder) = taken.get(&(host_port, port.protocol))
                    && holder != task_id
                {
                    let task = holder.clone();
                    taken.retain(|_, t| t != task_id);
                    return Err(NetworkError::PortTaken {
                        port: host_port,
                        protocol: port.protocol.as_str(),
                        task,
                    });
                }
                taken.insert((host_port, port.protocol), task_id.to_string());
            }
            bindings.push(PortBinding {
                container: port.container.clone(),
                container_port: port.container_port,
                host_port,
                protocol: port.protocol,
            });
        }
        Ok(bindings)
    }

    fn free_ports(&self, task_id: &str) {
        self.host_ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, t| t != task_id);
    }

    fn write_record(&self, record: &Record) -> Result<(), NetworkError> {
        let path = self.record_path(&record.task_id);
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_vec_pretty(record).unwrap_or_default();
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|source| NetworkError::Io {
                context: format!("write {}", path.display()),
                source,
            })
    }

    /// Releases task `task_id`'s network: CNI DEL, the namespace, the record. Blocking.
    pub fn release(&self, task_id: &str) -> Result<(), NetworkError> {
        self.free_ports(task_id);
        let path = self.record_path(task_id);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(NetworkError::Io {
                    context: format!("read {}", path.display()),
                    source,
                });
            }
        };
        match serde_json::from_slice::<Record>(&text) {
            Ok(record) => self.release_record(&record),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "an unreadable network record: removed");
                let _ = std::fs::remove_file(&path);
                Ok(())
            }
        }
    }

    fn release_record(&self, record: &Record) -> Result<(), NetworkError> {
        let deleted = if netns::is_namespace(&record.netns) {
            self.cni.del(
                &record.list,
                attachment(record, TASK_IFNAME),
                &record.runtime_config,
                record.result.as_ref(),
            )
        } else {
            // Without the namespace (a reboot took it) the plugins can release only the lease;
            // the veth and the rules went with the reboot.
            self.cni.del(
                &record.list,
                Attachment {
                    container_id: &record.task_id,
                    netns: Path::new(""),
                    ifname: TASK_IFNAME,
                },
                &record.runtime_config,
                record.result.as_ref(),
            )
        };
        let removed = netns::remove(&record.netns).map_err(|source| NetworkError::Io {
            context: format!("remove the network namespace {}", record.netns.display()),
            source,
        });
        let _ = std::fs::remove_dir_all(self.etc_dir(&record.task_id));
        let _ = std::fs::remove_file(self.record_path(&record.task_id));
        deleted?;
        removed
    }

    /// Releases every network a previous process left (it was killed before it could).
    pub fn clean_up_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.records) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.partial") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(task_id) = name.strip_suffix(".json") else {
                continue;
            };
            tracing::warn!(task_id, "releasing a task network left by a previous run");
            if let Err(error) = self.release(task_id) {
                tracing::warn!(task_id, %error, "cannot release a left-over task network");
            }
        }
        // Namespaces without a record (a crash between the two) hold no CNI state.
        if let Ok(entries) = std::fs::read_dir(&self.namespaces) {
            for entry in entries.flatten() {
                let _ = netns::remove(&entry.path());
            }
        }
    }
}

/// Loads `rules` (iptables-restore's format) into the namespace at `netns`. The containers
/// cannot change them: they do not have CAP_NET_ADMIN (validation refuses adding it to a task
/// with an outbound allowlist).
///
/// Through the legacy backend where the host has it: the namespace is the task's alone, so
/// nothing else reads its tables, and a legacy restore costs about a process spawn where
/// nft's costs some 15 ms more, on every task start. nft's is the fallback.
fn enforce(netns: &Path, rules: &str) -> Result<(), NetworkError> {
    static LEGACY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let legacy = *LEGACY.get_or_init(|| {
        std::process::Command::new("iptables-legacy-restore")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if legacy {
        match restore("iptables-legacy-restore", netns, rules) {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::info!(%error, "the legacy iptables backend failed; using nft's");
            }
        }
    }
    restore("iptables-restore", netns, rules)
}

fn restore(program: &str, netns: &Path, rules: &str) -> Result<(), NetworkError> {
    use std::io::Write as _;
    let io = |context: &str, source| NetworkError::Io {
        context: format!("the task's firewall: {context}"),
        source,
    };
    let mut command = std::process::Command::new(program);
    command
        .arg("-w")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    netns::run_inside(&mut command, netns).map_err(|e| io("enter the namespace", e))?;
    let mut child = command
        .spawn()
        .map_err(|e| io(&format!("run {program}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(rules.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| io(&format!("run {program}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Egress(format!(
        "{program}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

fn attachment<'a>(record: &'a Record, ifname: &'a str) -> Attachment<'a> {
    Attachment {
        container_id: &record.task_id,
        netns: &record.netns,
        ifname,
    }
}

/// A host port the kernel would give a socket now (from its ephemeral range), not held by
/// another task here.
fn free_port(
    protocol: Protocol,
    taken: &HashMap<(u16, Protocol), String>,
) -> Result<u16, NetworkError> {
    for _ in 0..64 {
        let port = match protocol {
            Protocol::Tcp => std::net::TcpListener::bind("0.0.0.0:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port()),
            Protocol::Udp => std::net::UdpSocket::bind("0.0.0.0:0")
                .and_then(|s| s.local_addr())
                .map(|a| a.port()),
        }
        .map_err(|source| NetworkError::Io {
            context: "find a free host port".into(),
            source,
        })?;
        if !taken.contains_key(&(port, protocol)) {
            return Ok(port);
        }
    }
    Err(NetworkError::Io {
        context: "find a free host port".into(),
        source: std::io::Error::other("every port tried is held by a task"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_what_is_not_one() {
        let subnet: Subnet = "10.176.0.0/16".parse().unwrap();
        assert_eq!(subnet.to_string(), "10.176.0.0/16");
        for (text, why) in [
            ("10.176.0.0", "not a subnet"),
            (
                "10.176.0.1/16",
                "host bits are set (the subnet is 10.176.0.0/16)",
            ),
            ("10.176.0.0/31", "the prefix length must be 8 to 30"),
            ("10.300.0.0/16", "is not an IPv4 address"),
        ] {
            let error = text.parse::<Subnet>().unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn an_allowlist_becomes_iptables_rules_and_a_star_lifts_it() {
        assert_eq!(
            EgressPolicy::of_entries(["10.1.2.3:80", "*"]),
            Ok(EgressPolicy::Open)
        );
        let policy =
            EgressPolicy::of_entries(["10.1.2.3:80", "192.168.0.0/16", "localhost"]).unwrap();
        let web = PortRequest {
            container: "web".into(),
            container_port: 8080,
            host_port: None,
            protocol: Protocol::Tcp,
        };
        let rules = policy.ruleset(std::slice::from_ref(&web)).unwrap();
        for rule in [
            "-A INPUT -p tcp --dport 8080 -j ACCEPT\n-A INPUT -p tcp -j REJECT",
            "-A OUTPUT -d 10.1.2.3/32 -p tcp --dport 80 -j ACCEPT",
            "-A OUTPUT -d 10.1.2.3/32 -p udp --dport 80 -j ACCEPT",
            "-A OUTPUT -d 192.168.0.0/16 -j ACCEPT",
            "-A OUTPUT -d 127.0.0.1/32 -j ACCEPT",
            "-A OUTPUT -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n",
        ] {
            assert!(rules.contains(rule), "{rule} in {rules}");
        }
        assert_eq!(
            EgressPolicy::of_entries(["10.1.2.3:http"]).unwrap_err(),
            "outbound host \"10.1.2.3:http\": http is not a port"
        );
        let open = EgressPolicy::Open.ruleset(&[web]).unwrap();
        assert!(
            open.contains("--dport 8080") && !open.contains("-A OUTPUT"),
            "{open}"
        );
    }

    #[test]
    fn a_tasks_resolvers_are_the_hosts_but_loopback_ones() {
        let host = "# made by hand\nnameserver 127.0.0.53\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            task_resolv_conf(host, Some("nameserver 10.0.0.2\nnameserver ::1\n")),
            "search corp.example\noptions edns0\nnameserver 10.0.0.2\n"
        );
        assert_eq!(
            task_resolv_conf("nameserver 192.0.2.53\n", None),
            "nameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn bridge_ports_are_the_asked_or_a_free_one_and_never_two_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let networks = TaskNetworks::new(dir.path(), NetworkSettings::default()).unwrap();
        let ask = |host_port| PortRequest {
            container: "web".into(),
            container_port: 80,
            host_port,
            protocol: Protocol::Tcp,
        };
        let bound = networks
            .bind_ports(
                "a",
                TaskNetworkMode::Bridge,
                &[ask(Some(18080)), ask(Some(0))],
            )
            .unwrap();
        assert_eq!(bound[0].host_port, 18080);
        assert_ne!(bound[1].host_port, 0);
        let error = networks
            .bind_ports("b", TaskNetworkMode::Bridge, &[ask(Some(18080))])
            .unwrap_err();
        assert_eq!(error.to_string(), "host port 18080/tcp is taken by task a");
        // awsvpc: the container's port on the task's own address, held by nobody.
        let own = networks
            .bind_ports("b", TaskNetworkMode::Awsvpc, &[ask(Some(18080))])
            .unwrap();
        assert_eq!(own[0].host_port, 80);
        networks.free_ports("a");
        assert!(
            networks
                .bind_ports("b", TaskNetworkMode::Bridge, &[ask(Some(18080))])
                .is_ok()
        );
    }
}
