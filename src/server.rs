//! The wiring of wasmgate's two long-running processes: `wasmgate server` (the controller:
//! API, scheduler, hosts, gateway, and by default an agent of its own) and `wasmgate agent`
//! (a capacity host that joins a controller over the network). `main.rs` only parses flags
//! into the options here.
//!
//! Architecture invariant: both agents (in-process and remote) run the same
//! [`crate::agent::run_agent`] on the same protocol messages; only the transport differs (an
//! in-memory watch and channel here, HTTP in [`crate::protocol::http`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentLink, HostResources, TaskRunner};
use crate::api::{Api, ArnScope, Credentials};
use crate::capacity::wasm::WasmCapacity;
use crate::config::Config;
use crate::control::Control;
use crate::control::hosts::{HostSettings, Hosts};
use crate::controller::plan::SchedulerSettings;
use crate::image::Images;
use crate::protocol::http::{ControllerUrl, LinkError};
use crate::protocol::{AgentReport, DesiredTasks, HostOffer, JoinRequest};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what}: {why}")]
    Start { what: String, why: String },
    #[error("the controller refused this agent: {0}")]
    Refused(String),
}

fn start_error(what: impl Into<String>) -> impl FnOnce(String) -> ServerError {
    let what = what.into();
    move |why| ServerError::Start { what, why }
}

/// What `wasmgate server` was asked.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Where the state lives (`--store`).
    pub store: crate::store::StoreUrl,
    /// `None`: no gateway.
    pub gateway: Option<SocketAddr>,
    /// Where the introspection and metrics endpoints are also served, unsigned.
    pub metrics_listen: Option<SocketAddr>,
    /// How long stopped tasks stay describable.
    pub retention: Duration,
    /// How long the scheduler leader's term lasts without renewal.
    pub leader_ttl: Duration,
    /// Task definitions to register at start.
    pub examples: Option<PathBuf>,
    /// When set, every API request must be signed by one of these keys.
    pub credentials: Option<Credentials>,
    pub scheduler: SchedulerSettings,
    pub hosts: HostSettings,
    /// Whether this process runs an agent of its own (a host of the shared pool).
    pub local_agent: bool,
    /// Serve the API (and the agent protocol) over TLS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The region and account ARNs name (a client's signed region wins per request).
    pub arns: ArnScope,
    /// How many times faster than the wall clock schedule time runs (1 but in tests).
    pub clock_rate: f64,
}

/// Where a started server listens, for whoever started it to announce.
#[derive(Debug, Clone)]
pub struct Started {
    pub api: SocketAddr,
    /// Whether the API speaks TLS.
    pub tls: bool,
    pub gateway: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// The families registered from the examples directory.
    pub registered: Vec<String>,
}

/// Builds the task runner of a host: Wasm always, containers where the OCI runtime is.
pub fn task_runner(config: &Config, images: Images) -> Result<Arc<TaskRunner>, ServerError> {
    let wasm = Arc::new(
        WasmCapacity::new(&config.wasm_capacity())
            .map_err(|e| start_error("cannot start the Wasm capacity")(e.to_string()))?,
    );
    let runner = TaskRunner::new(wasm, Arc::new(images), config.server_task_runner());
    Ok(Arc::new(with_containers(runner, config)))
}

/// Whether `program` (a path, or a name looked up on PATH) is an executable file.
fn is_executable_on_path(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program);
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

/// Gives `runner` the container capacity when the OCI runtime is there; without it, container
/// images fail to start with a reason that says so.
pub fn with_containers(runner: TaskRunner, config: &Config) -> TaskRunner {
    let runtime = &config.runtime;
    // Looked up on PATH rather than run (`runc --version`): a one-shot `wasmgate run` of a Wasm
    // image should not pay a process spawn for a runtime it will not use.
    let found = is_executable_on_path(runtime);
    if !found {
        tracing::info!(runtime = %runtime.display(), "no OCI runtime: container images cannot run here");
        return runner;
    }
    match crate::capacity::container::ContainerCapacity::new(
        crate::capacity::container::ContainerCapacityConfig {
            dir: config.data_dir.join("containers"),
            runtime: runtime.clone(),
            http: Some(runner.wasm().http_endpoints().clone()),
            network: config.network.clone(),
            userns: config.userns,
        },
    ) {
        Ok(containers) => runner.with_containers(Arc::new(containers)),
        Err(error) => {
            tracing::warn!(%error, "the container capacity cannot start");
            runner
        }
    }
}

/// What this host offers: its cores and memory, and, with the instance pool on, at most as
/// many tasks as the pool has slots, so that placement never sends a task that could not get
/// an instance. (HTTP requests' and health checks' instances share the pool.)
pub fn host_resources(config: &Config, runner: &TaskRunner) -> HostResources {
    let mut resources = HostResources::of_this_host(config.memory_reserve_mib);
    if runner.wasm().engine().pooling {
        resources.max_tasks = Some(config.pool_slots);
    }
    resources
}

/// The host's name as people see it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs `wasmgate server` until `stop` resolves: the API, the hosts and their dispatcher,
/// the scheduler, the lost-host detector, the sweeper of stopped tasks, the gateway, and
/// (unless `options.local_agent` is off) an agent of its own. On stop, everything ends in
/// order: listeners first, then the agent's tasks, then the recorder of their last steps.
pub async fn run_server(
    config: &Config,
    images: Images,
    options: ServerOptions,
    announce: impl FnOnce(&Started),
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let tls = match &options.tls {
        Some((cert, key)) => Some(
            crate::tls::acceptor(cert, key)
                .map_err(|e| start_error("--tls-cert/--tls-key")(e.to_string()))?,
        ),
        None => None,
    };
    let state = crate::store::blocking(|| crate::store::open(&options.store, &config.data_dir))
        .map_err(|e| start_error("cannot open the state store")(e.to_string()))?;
    let (reports, mut reports_rx) =
        mpsc::unbounded_channel::<crate::control::hosts::QueuedReport>();
    let hosts = Hosts::new(state.clone(), options.hosts.clone(), reports)
        .map_err(|e| start_error("cannot load the hosts")(e.to_string()))?;
    let control = Control::new(state, options.arns.clone(), hosts.clone())
        .with_logs(config.task_logs())
        .map_err(|e| start_error("cannot open the task logs")(e.to_string()))?;
    let control = Arc::new(control);
    let mut api = Api::new(control.clone())
        .map_err(|e| start_error("cannot initialise the API")(e.to_string()))?;
    if let Some(keys) = options.credentials.clone() {
        api = api.with_credentials(keys);
    }
    let api = Arc::new(api);
    let shutdown = CancellationToken::new();

    let local = if options.local_agent {
        let runner = task_runner(config, images)?;
        let resources = host_resources(config, &runner);
        let instance_id = local_instance_id(&control, &config.data_dir);
        let offer = HostOffer {
            name: hostname(),
            cluster: None,
            resources,
            attributes: BTreeMap::new(),
            endpoint: None,
            address: Some(options.listen.ip().to_string()),
        };
        let (id, desired) = hosts
            .join_local(instance_id, offer)
            .map_err(|e| start_error("cannot register the agent")(e.to_string()))?;
        remember_local_instance(&config.data_dir, &id);
        tracing::info!(instance = %id, cpu = resources.cpu_units, memory_mib = resources.memory_mib, "agent registered");
        Some((id, desired, runner))
    } else {
        None
    };
    let http_endpoints = local
        .as_ref()
        .map(|(_, _, runner)| runner.wasm().http_endpoints().clone())
        .unwrap_or_default();

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| start_error(format!("cannot listen on {}", options.listen))(e.to_string()))?;
    let address = listener
        .local_addr()
        .map_err(|e| start_error("cannot read the bound address")(e.to_string()))?;
    let gateway_listener = match options.gateway {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await.map_err(|e| {
            start_error(format!("cannot listen on {at} (--gateway)"))(e.to_string())
        })?),
        None => None,
    };
    let gateway_address = gateway_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(at) = gateway_address {
        api.set_gateway_address(at);
    }
    let metrics_listener = match options.metrics_listen {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await.map_err(|e| {
            start_error(format!("cannot listen on {at} (--metrics-listen)"))(e.to_string())
        })?),
        None => None,
    };
    let metrics_address = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    api.set_endpoint(format!("{scheme}://{address}"));
    let registered = match &options.examples {
        Some(dir) => register_examples(&api, dir)?,
        None => Vec::new(),
    };
    announce(&Started {
        api: address,
        tls: options.tls.is_some(),
        gateway: gateway_address,
        metrics: metrics_address,
        registered,
    });

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::api::serve(
        listener,
        api.clone(),
        tls,
        shutdown.clone(),
    ));
    tasks.spawn(hosts.clone().run_dispatcher(shutdown.clone()));
    if let Some(listener) = metrics_listener {
        tasks.spawn(crate::api::serve_introspection(
            listener,
            api.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(listener) = gateway_listener {
        let gateway = crate::gateway::Gateway::new(control.clone(), http_endpoints.clone());
        api.add_metrics_source(gateway.metrics.clone());
        tasks.spawn(crate::gateway::serve(listener, gateway, shutdown.clone()));
    }
    let candidate = crate::control::leadership::Candidate::new(
        control.store.clone(),
        replica_id(address),
        Some(format!("{scheme}://{address}")),
        options.leader_ttl,
    );
    tasks.spawn(lead(
        candidate,
        control.clone(),
        api.clone(),
        options.clone(),
        shutdown.clone(),
    ));
    // The agent's tasks outlive the listeners' shutdown until they have stopped; it is
    // awaited on its own.
    let agent = local.map(|(id, desired, runner)| {
        let (agent_reports, mut agent_reports_rx) = mpsc::unbounded_channel();
        let hosts = hosts.clone();
        let forward = tokio::spawn(async move {
            while let Some(report) = agent_reports_rx.recv().await {
                hosts.report(&id, report);
            }
        });
        let link = AgentLink {
            desired,
            reports: agent_reports,
            ship_logs: None,
            running: None,
        };
        let agent = tokio::spawn(crate::agent::run_agent(
            runner,
            link,
            PathBuf::from("."),
            crate::agent::STATS_EVERY,
            shutdown.clone(),
        ));
        (agent, forward)
    });
    // Every agent's reports become state, in the order each agent sent them. The recorder
    // holds the control plane, whose hosts hold the reports' sender, so the channel never
    // closes by itself: once every agent has stopped, `recorded_all` tells it to record what
    // is left and end.
    let recorded_all = CancellationToken::new();
    let recorder = tokio::spawn({
        let control = control.clone();
        let recorded_all = recorded_all.clone();
        async move {
            let record = |queued: crate::control::hosts::QueuedReport| {
                let control = control.clone();
                async move {
                    let crate::control::hosts::QueuedReport {
                        host,
                        report,
                        recorded,
                    } = queued;
                    let outcome = tokio::task::spawn_blocking(move || {
                        crate::control::record_report(&control, &host, &report)
                    })
                    .await;
                    let outcome = match outcome {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(error)) => {
                            tracing::error!(%error, "cannot record an agent's report");
                            Err(error.to_string())
                        }
                        Err(error) => {
                            tracing::error!(%error, "recording an agent's report panicked");
                            Err("recording it panicked".to_string())
                        }
                    };
                    if let Some(recorded) = recorded {
                        let _ = recorded.send(outcome);
                    }
                }
            };
            loop {
                tokio::select! {
                    biased;
                    next = reports_rx.recv() => match next {
                        Some(queued) => record(queued).await,
                        None => return,
                    },
                    () = recorded_all.cancelled() => {
                        while let Ok(queued) = reports_rx.try_recv() {
                            record(queued).await;
                        }
                        return;
                    }
                }
            }
        }
    });

    stop.await;
    eprintln!("wasmgate: shutting down (stopping tasks)");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some((agent, forward)) = agent {
        let _ = agent.await;
        let _ = forward.await;
    }
    recorded_all.cancel();
    let _ = recorder.await;
    drop(api);
    drop(control);
    drop(hosts);
    Ok(())
}

/// Where this server keeps its own host's id across restarts: its data directory, since
/// replicas sharing one store each have their own host.
const LOCAL_HOST_FILE: &str = "local-host.json";

/// Where it was kept before (the store), read once for servers upgraded in place.
const LEGACY_LOCAL_HOST_KEY: &str = "agent/self";

fn local_instance_id(control: &Control, data_dir: &Path) -> Option<String> {
    let from_file = std::fs::read(data_dir.join(LOCAL_HOST_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|value| value["id"].as_str().map(str::to_string));
    from_file.or_else(|| {
        let found = control.store.get(LEGACY_LOCAL_HOST_KEY).ok()??;
        found.value["id"].as_str().map(str::to_string)
    })
}

fn remember_local_instance(data_dir: &Path, id: &str) {
    let value = serde_json::json!({"id": id});
    let path = data_dir.join(LOCAL_HOST_FILE);
    let partial = path.with_extension("json.partial");
    let written =
        std::fs::write(&partial, value.to_string()).and_then(|()| std::fs::rename(&partial, &path));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot remember the agent's host id");
    }
}

/// This replica's name among the controllers sharing a store: its host, listener and process.
fn replica_id(listen: SocketAddr) -> String {
    format!("{}/{listen}/{}", hostname(), std::process::id())
}

/// Campaigns for leadership until `shutdown`; in each term won, runs the duties that decide
/// (the scheduler, the schedules' firer, the lost-host detector, the expiry of stopped tasks),
/// every write of theirs fenced by the term, and stops them when the term ends.
async fn lead(
    candidate: crate::control::leadership::Candidate,
    control: Arc<Control>,
    api: Arc<Api>,
    options: ServerOptions,
    shutdown: CancellationToken,
) {
    use crate::control::leadership::Fenced;
    loop {
        let Some(term) = candidate.campaign(&shutdown).await else {
            return;
        };
        tracing::info!(
            fence = term.fence.revision,
            "this replica leads: it runs the scheduler"
        );
        let fenced: Arc<dyn crate::store::Store> =
            Arc::new(Fenced::new(control.store.clone(), term.fence.clone()));
        let leader = Arc::new(control.writing_through(fenced));
        let duty = CancellationToken::new();
        let mut duties = tokio::task::JoinSet::new();
        duties.spawn(crate::controller::run_scheduler(
            leader.clone(),
            options.scheduler.clone(),
            duty.clone(),
        ));
        // The firer's writes need no fence: a firing is claimed by a compare-and-swap of its
        // schedule's record before it launches, so two leaders cannot fire it twice.
        match crate::store::blocking(|| {
            crate::api::scheduler::ScheduleFirer::new(api.clone(), options.clock_rate)
        }) {
            Ok(firer) => {
                duties.spawn(firer.run(duty.clone()));
            }
            Err(error) => tracing::error!(%error, "cannot start the schedules"),
        }
        duties.spawn(watch_for_lost_hosts(leader.clone(), duty.clone()));
        duties.spawn(sweep_stopped_tasks(
            leader.clone(),
            options.retention,
            duty.clone(),
        ));
        let resigning = tokio::select! {
            () = shutdown.cancelled() => true,
            () = term.ended.cancelled() => false,
        };
        duty.cancel();
        while duties.join_next().await.is_some() {}
        if resigning {
            term.resign().await;
            return;
        }
        tracing::warn!("this replica's term as leader ended; it campaigns again");
    }
}

/// Records the tasks of hosts silent past `--agent-lost-after` as stopped, once a second.
async fn watch_for_lost_hosts(control: Arc<Control>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for host in control.hosts.newly_lost() {
            let control = control.clone();
            let stopped = tokio::task::spawn_blocking(move || {
                crate::control::record_host_lost(&control, &host).map(|n| (host, n))
            })
            .await;
            match stopped {
                Ok(Ok((host, n))) => {
                    tracing::warn!(%host, stopped = n, "a host went silent; its tasks are recorded stopped");
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot record a lost host's tasks"),
                Err(error) => tracing::error!(%error, "recording a lost host panicked"),
            }
        }
    }
}

/// Forgets stopped tasks after the retention; swept often enough to keep it roughly.
async fn sweep_stopped_tasks(
    control: Arc<Control>,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let every = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let control = control.clone();
                let swept = tokio::task::spawn_blocking(move || crate::control::expire_stopped(&control, retention)).await;
                if let Ok(Err(error)) = swept {
                    tracing::warn!(%error, "cannot expire stopped tasks");
                }
            }
        }
    }
}

/// Registers every `*.json` task definition in `dir`; returns the families registered.
fn register_examples(api: &Api, dir: &Path) -> Result<Vec<String>, ServerError> {
    let what = |path: &Path| format!("{}", path.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| start_error(format!("cannot read {}", what(dir)))(e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let dir = std::path::absolute(dir)
        .map_err(|e| start_error(format!("cannot resolve {}", what(dir)))(e.to_string()))?;
    let mut families = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| start_error(format!("cannot read {}", what(&file)))(e.to_string()))?;
        let mut document: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| start_error(format!("{}: not JSON", what(&file)))(e.to_string()))?;
        crate::image::reference::absolutize_file_images(&mut document, &dir);
        let response = api
            .call("RegisterTaskDefinition", document)
            .map_err(|e| start_error(format!("{}: cannot register", what(&file)))(e.to_string()))?;
        let family = response["taskDefinition"]["family"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        eprintln!(
            "wasmgate: registered {} as {family}:{}",
            file.display(),
            response["taskDefinition"]["revision"]
        );
        families.push(family);
    }
    Ok(families)
}

/// What `wasmgate agent` was asked.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The controllers to join, tried in turn.
    pub controllers: Vec<ControllerUrl>,
    pub token: String,
    /// Register in this cluster (EC2 / EXTERNAL capacity) instead of the shared pool.
    pub cluster: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Where to serve requests the gateway forwards to this host's HTTP tasks.
    pub listen: Option<SocketAddr>,
    /// The address the controller and gateway reach this host at (default: the listen
    /// address, else what the controller saw).
    pub advertise: Option<String>,
    pub name: String,
}

/// The file in the data directory that keeps the host's id across restarts.
const AGENT_STATE_FILE: &str = "agent.json";

/// Runs `wasmgate agent` until `stop`: joins a controller, converges on the desired sets it
/// sends, reports back, and serves the gateway's forwarded requests. Keeps running its tasks
/// while the controller is unreachable; exits when the controller refuses it.
pub async fn run_agent_host(
    config: &Config,
    images: Images,
    options: AgentOptions,
    announce: impl FnOnce(&str, Option<SocketAddr>),
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    if options.controllers.is_empty() {
        return Err(start_error("--controller")("give at least one URL".into()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        start_error(format!("cannot create {}", config.data_dir.display()))(e.to_string())
    })?;
    let runner = task_runner(config, images)?;
    let forward_listener = match options.listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| start_error(format!("cannot listen on {at}"))(e.to_string()))?,
        ),
        None => None,
    };
    let forward_address = forward_listener.as_ref().and_then(|l| l.local_addr().ok());
    let state_file = config.data_dir.join(AGENT_STATE_FILE);
    let previous_id = std::fs::read_to_string(&state_file)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["instanceId"].as_str().map(str::to_string));
    let address = options
        .advertise
        .clone()
        .or_else(|| forward_address.map(|a| a.ip().to_string()));
    let request = JoinRequest {
        token: options.token.clone(),
        instance_id: previous_id,
        offer: HostOffer {
            name: options.name.clone(),
            cluster: options.cluster.clone(),
            resources: host_resources(config, &runner),
            attributes: options.attributes.clone(),
            endpoint: forward_address.map(|a| {
                let host = options
                    .advertise
                    .clone()
                    .unwrap_or_else(|| a.ip().to_string());
                format!("http://{host}:{}", a.port())
            }),
            address,
        },
    };
    tokio::pin!(stop);
    let (controller, joined) = tokio::select! {
        joined = join_any(&options.controllers, &request) => joined?,
        () = &mut stop => return Ok(()),
    };
    let _ = std::fs::write(
        &state_file,
        serde_json::json!({"instanceId": joined.instance_id}).to_string(),
    );
    tracing::info!(instance = %joined.instance_id, controller = %controller.as_str(), "joined");
    announce(&joined.instance_id, forward_address);

    let shutdown = CancellationToken::new();
    let refused = CancellationToken::new();
    let (desired_tx, desired_rx) = watch::channel(Arc::new(DesiredTasks::default()));
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let credential = joined.credential.clone();
    let mut tasks = tokio::task::JoinSet::new();
    // The poller and the reporter talk to the same controller, so the heartbeats it records
    // refer to the desired sets it sent; both move on together when it stops answering.
    let current = Arc::new(CurrentController::at(&options.controllers, &controller));
    tasks.spawn(poll_desired(
        options.controllers.clone(),
        current.clone(),
        credential.clone(),
        desired_tx,
        refused.clone(),
        shutdown.clone(),
    ));
    let pump = tokio::spawn(send_reports(
        options.controllers.clone(),
        current,
        credential,
        reports_rx,
        refused.clone(),
    ));
    let (running_tx, running_rx) = watch::channel(Vec::new());
    if let Some(listener) = forward_listener {
        tasks.spawn(crate::gateway::serve_forwarded(
            listener,
            runner.wasm().http_endpoints().clone(),
            running_rx,
            joined.forward_key.clone(),
            shutdown.clone(),
        ));
    }
    let link = AgentLink {
        desired: desired_rx,
        reports,
        ship_logs: Some(config.task_logs()),
        running: Some(running_tx),
    };
    let agent = tokio::spawn(crate::agent::run_agent(
        runner,
        link,
        PathBuf::from("."),
        crate::agent::STATS_EVERY,
        shutdown.clone(),
    ));
    let outcome = tokio::select! {
        () = &mut stop => Ok(()),
        () = refused.cancelled() => Err(ServerError::Refused(
            "its credential no longer works (was this host deregistered?); its tasks are stopped".into(),
        )),
    };
    eprintln!("wasmgate agent: shutting down (stopping tasks)");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = agent.await;
    // The last reports (the tasks' ends) go out before the process ends, if they can.
    let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    outcome
}

/// Joins the first controller that answers; retries until one does, or one refuses.
async fn join_any(
    controllers: &[ControllerUrl],
    request: &JoinRequest,
) -> Result<(ControllerUrl, crate::protocol::Joined), ServerError> {
    let mut delay = Duration::from_millis(200);
    loop {
        for controller in controllers {
            match controller.join(request).await {
                Ok(joined) => return Ok((controller.clone(), joined)),
                Err(LinkError::Refused { message, .. }) => {
                    return Err(ServerError::Refused(message));
                }
                Err(error) => tracing::warn!(%error, "cannot join; trying again"),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Which of the agent's controllers it talks to now (an index that only grows, taken modulo
/// their number).
struct CurrentController(std::sync::atomic::AtomicUsize);

impl CurrentController {
    fn at(controllers: &[ControllerUrl], first: &ControllerUrl) -> Self {
        let index = controllers
            .iter()
            .position(|c| c.as_str() == first.as_str())
            .unwrap_or(0);
        Self(std::sync::atomic::AtomicUsize::new(index))
    }

    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves past controller `failed`, unless the other user already did.
    fn failed(&self, failed: usize) {
        let _ = self.0.compare_exchange(
            failed,
            failed + 1,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Keeps `desired` at the controller's latest set for this host (long polls, moving to the
/// next controller when one does not answer).
async fn poll_desired(
    controllers: Vec<ControllerUrl>,
    current: Arc<CurrentController>,
    credential: String,
    desired: watch::Sender<Arc<DesiredTasks>>,
    refused: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let (session, generation) = {
            let current = desired.borrow();
            (current.session.clone(), current.generation)
        };
        let index = current.get();
        let controller = &controllers[index % controllers.len()];
        let polled = tokio::select! {
            () = shutdown.cancelled() => return,
            polled = controller.desired(&credential, &session, generation) => polled,
        };
        match polled {
            Ok(set) => {
                delay = Duration::from_millis(100);
                if (set.session.as_str(), set.generation) != (session.as_str(), generation) {
                    desired.send_replace(Arc::new(set));
                }
            }
            Err(LinkError::Refused { message, .. }) => {
                tracing::error!(%message, "the controller refused this host; stopping its tasks");
                desired.send_replace(Arc::new(DesiredTasks::default()));
                refused.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach the controller; tasks keep running");
                current.failed(index);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Sends reports in order; what cannot be sent waits and goes with the next, merged.
async fn send_reports(
    controllers: Vec<ControllerUrl>,
    current: Arc<CurrentController>,
    credential: String,
    mut reports: mpsc::UnboundedReceiver<AgentReport>,
    refused: CancellationToken,
) {
    /// Steps kept while the controller is unreachable; older stats go first beyond it.
    const MAX_PENDING_EVENTS: usize = 100_000;
    let mut pending: Option<AgentReport> = None;
    let mut delay = Duration::from_millis(100);
    loop {
        if pending.is_none() {
            match reports.recv().await {
                Some(report) => pending = Some(report),
                None => return,
            }
        }
        let mut batch = pending.take().unwrap_or_default();
        let mut closed = false;
        loop {
            match reports.try_recv() {
                Ok(more) => merge(&mut batch, more),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if batch.events.len() > MAX_PENDING_EVENTS {
            let excess = batch.events.len() - MAX_PENDING_EVENTS;
            let mut dropped = 0;
            batch.events.retain(|e| {
                let drop =
                    dropped < excess && matches!(e.event, crate::agent::TaskEvent::Stats { .. });
                dropped += usize::from(drop);
                !drop
            });
        }
        let index = current.get();
        let controller = &controllers[index % controllers.len()];
        match controller.report(&credential, &batch).await {
            Ok(()) => {
                delay = Duration::from_millis(100);
                if closed {
                    return;
                }
            }
            Err(LinkError::Refused { .. }) => {
                refused.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot report; keeping the report for the next try");
                pending = Some(batch);
                current.failed(index);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Appends `more` to `batch`: steps and output in order, the newer heartbeat.
fn merge(batch: &mut AgentReport, more: AgentReport) {
    batch.events.extend(more.events);
    batch.logs.extend(more.logs);
    if more.heartbeat.is_some() {
        batch.heartbeat = more.heartbeat;
    }
}
