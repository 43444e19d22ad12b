//! The `wasmgate` command line. Parses flags into [`wasmgate::config::Config`], runs the verb,
//! and turns errors into a message and an exit code. This is the only place that uses anyhow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::io::Write as _;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use wasmgate::agent::{ContainerOverride, TaskOutcome, TaskRequest, TaskRunner, new_task_id};
use wasmgate::capacity::Tee;
use wasmgate::capacity::wasm::{PoolingChoice, WasmCapacity};
use wasmgate::config::{Config, default_data_dir};
use wasmgate::image::{Images, RegistrySettings};
use wasmgate::taskdef::TaskDefinition;

/// A serverless runtime in the mould of AWS Fargate on ECS, whose capacity is Wasm.
#[derive(Parser)]
#[command(name = "wasmgate", version, about)]
struct Cli {
    /// Show what happens step by step (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Where compiled artifacts and task scratch space live.
    #[arg(long, env = "WASMGATE_DATA_DIR", global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Pool Wasm instances (auto: when the host allows reserving the address space). `run`
    /// defaults to off: a one-shot task starts too few instances to repay the pool's setup.
    #[arg(long, env = "WASMGATE_POOLING", global = true, value_enum)]
    pooling: Option<Pooling>,

    /// The registry of short image names (`app:1` means `REGISTRY/app:1`).
    #[arg(
        long,
        env = "WASMGATE_DEFAULT_REGISTRY",
        global = true,
        default_value = "docker.io"
    )]
    default_registry: String,

    /// A registry (`host:port`) reached over plain HTTP; loopback registries always are.
    #[arg(
        long = "insecure-registry",
        env = "WASMGATE_INSECURE_REGISTRIES",
        value_delimiter = ',',
        global = true
    )]
    insecure_registries: Vec<String>,

    /// Registry user name (else `auths` of ~/.docker/config.json, else anonymous).
    #[arg(long, env = "WASMGATE_REGISTRY_USERNAME", global = true)]
    registry_username: Option<String>,

    /// Registry password or token.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    registry_password: Option<String>,

    /// The OCI runtime that runs container images (runc; crun or youki stand in).
    #[arg(
        long,
        env = "WASMGATE_RUNTIME",
        global = true,
        default_value = "runc",
        value_name = "PATH"
    )]
    runtime: PathBuf,

    /// Run containers in a user namespace: their ids 0-65535 are the host's 1073741824 and up
    /// (2^30), so a container's root is no one on the host.
    #[arg(long, env = "WASMGATE_USERNS", global = true)]
    userns: bool,

    /// The subnet container-image tasks (awsvpc, bridge) take their addresses from, one each.
    #[arg(
        long,
        env = "WASMGATE_TASK_SUBNET",
        global = true,
        default_value = wasmgate::capacity::container::network::DEFAULT_TASK_SUBNET,
        value_name = "CIDR"
    )]
    task_subnet: wasmgate::capacity::container::network::Subnet,

    /// The Linux bridge task networks join (made when missing).
    #[arg(
        long,
        env = "WASMGATE_TASK_BRIDGE",
        global = true,
        default_value = wasmgate::capacity::container::network::DEFAULT_TASK_BRIDGE,
        value_name = "NAME"
    )]
    task_bridge: String,

    /// Where the CNI plugins are (`:`-separated, as CNI_PATH).
    #[arg(
        long,
        env = "WASMGATE_CNI_PATH",
        global = true,
        default_value = wasmgate::capacity::container::network::DEFAULT_CNI_PATH,
        value_name = "DIRS"
    )]
    cni_path: std::ffi::OsString,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Pooling {
    Auto,
    On,
    Off,
}

#[derive(Subcommand)]
enum Command {
    /// Run a task to completion in the foreground and exit with its essential container's code.
    ///
    /// TARGET is a task definition (ECS JSON), a Wasm module or component, or an image reference
    /// (`127.0.0.1:5000/app:v1`, `...@sha256:...`, `oci:DIR:TAG`). Ctrl-C stops the task as
    /// StopTask does (each container gets its stopTimeout); a second Ctrl-C interrupts it at
    /// once.
    Run(RunArgs),

    /// Package a Wasm module or component as a CNCF Wasm OCI artifact and push it.
    Push {
        /// The .wasm file.
        module: PathBuf,
        /// Where to push: `registry[:port]/repository[:tag]`.
        reference: String,
    },

    /// Run the control plane: the ECS JSON API over the state in DATA_DIR/state.db.
    ///
    /// Prints `listening on http://ADDR` once it accepts requests; stops on Ctrl-C.
    /// Point the AWS CLI at it with `aws --endpoint-url http://ADDR ecs ...`.
    Server {
        /// Where the API listens (port 0 picks a free port).
        #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,

        /// Where the HTTP gateway listens (port 0 picks a free port; `off` runs none).
        #[arg(
            long,
            env = "WASMGATE_GATEWAY",
            default_value = "127.0.0.1:8081",
            value_name = "ADDR"
        )]
        gateway: String,

        /// Also serve `/metrics` and the introspection endpoints (`/v1/tasks`,
        /// `/v1/tasks/ID/stats`, `/v1/hosts`, `/v1/metadata`) here, unsigned, for scrapers
        /// (with `--credentials`, the API's own listener answers them only when signed). Keep
        /// it on loopback or a private network.
        #[arg(long, env = "WASMGATE_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,

        /// The region ARNs name when a request is not signed (a signed request gets ARNs in
        /// the region it was signed for; one control plane answers every region).
        #[arg(long, env = "WASMGATE_REGION", default_value = "us-east-1")]
        region: String,

        /// The account id ARNs name.
        #[arg(long, env = "WASMGATE_ACCOUNT_ID", default_value = "000000000000")]
        account_id: String,

        /// MiB of this host's memory kept back from tasks.
        #[arg(
            long,
            env = "WASMGATE_MEMORY_RESERVE",
            default_value_t = 256,
            value_name = "MiB"
        )]
        memory_reserve: u32,

        /// Seconds a stopped task stays describable.
        #[arg(
            long,
            env = "WASMGATE_STOPPED_TASK_RETENTION",
            default_value_t = 3600,
            value_name = "SECONDS"
        )]
        stopped_task_retention: u64,

        /// Where the state lives: `sqlite` (a file in the data directory), or
        /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, etcd's client endpoints (keys under
        /// /PREFIX/, by default /wasmgate/), for several replicas sharing one state.
        #[arg(
            long,
            env = "WASMGATE_STORE",
            default_value = "sqlite",
            value_name = "URL"
        )]
        store: wasmgate::store::StoreUrl,

        /// How long the scheduler leader keeps its term without renewing it: when replicas
        /// share one store and the leader dies, another leads within about two of these.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        leader_ttl: u64,

        /// Register every task definition (*.json) in this directory at start; relative image
        /// paths in them are taken relative to it.
        #[arg(long, value_name = "DIR")]
        register_examples: Option<PathBuf>,

        /// Check every request's SigV4 signature against these keys: a JSON object
        /// `{"ACCESS_KEY_ID": "SECRET"}`. Without it, signatures are not checked.
        #[arg(long, env = "WASMGATE_CREDENTIALS", value_name = "FILE")]
        credentials: Option<PathBuf>,

        /// Bytes of output kept on disk per task for `wasmgate logs` (the newest part is kept).
        #[arg(
            long,
            env = "WASMGATE_TASK_LOG_BYTES",
            default_value_t = 2 << 20,
            value_name = "BYTES"
        )]
        task_log_bytes: u64,

        /// Seconds a service waits before starting a task again after one failed to start; it
        /// doubles with each further failure in a row.
        #[arg(
            long,
            env = "WASMGATE_SERVICE_RESTART_DELAY",
            default_value_t = 5.0,
            value_name = "SECONDS"
        )]
        service_restart_delay: f64,

        /// The longest that delay grows to (ECS: 27 minutes).
        #[arg(
            long,
            env = "WASMGATE_SERVICE_RESTART_DELAY_MAX",
            default_value_t = 1620.0,
            value_name = "SECONDS"
        )]
        service_restart_delay_max: f64,

        /// Run schedule time this many times faster than the wall clock (tests: 60 makes
        /// `rate(1 minute)` fire every second).
        #[arg(long, default_value_t = 1.0, hide = true, value_name = "RATE")]
        clock_rate: f64,

        #[command(flatten)]
        hosts: HostArgs,
    },

    /// Run a capacity host: join a controller over the network and run the tasks it places
    /// here. Prints `joined as INSTANCE_ID` once joined; Ctrl-C stops its tasks and exits.
    Agent(AgentArgs),

    /// List the images in the local store, or remove and prune them.
    Images {
        #[command(subcommand)]
        action: Option<ImagesAction>,
    },

    /// Register task definitions (JSON files) with the server; relative Wasm image paths are
    /// taken relative to each file.
    Register {
        #[arg(required = true, value_name = "TASKDEF.json")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Run tasks of a registered task definition on the server (ECS RunTask); prints their ids.
    RunTask {
        #[command(flatten)]
        args: client_commands::RunTaskArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// List the server's tasks: running ones, and stopped ones with --all.
    Tasks {
        /// Stopped tasks too (they stay listed for --stopped-task-retention).
        #[arg(short, long)]
        all: bool,
        /// Only tasks of this family.
        #[arg(long)]
        family: Option<String>,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// List the containers of running tasks (all tasks with -a), like `docker ps`.
    Ps {
        #[arg(short, long)]
        all: bool,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Show tasks as the API describes them (JSON). TASK is an id, the start of one, or an ARN.
    Describe {
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<String>,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Stop tasks (ECS StopTask): each container gets its stopTimeout.
    Stop {
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<String>,
        /// Recorded as the tasks' stoppedReason.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Print a task's output (stdout and stderr of its containers); -f follows it.
    Logs {
        #[command(flatten)]
        args: client_commands::LogsArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// List the capacity hosts: the shared pool's and every cluster's, with what each has left.
    Hosts {
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// List the cluster's services: desired, running and pending tasks, deployments.
    Services {
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Create a service (ECS CreateService): keeps --desired-count tasks of a task definition
    /// running; a route label makes it an HTTP service of the gateway.
    CreateService {
        #[command(flatten)]
        args: client_commands::CreateServiceArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Set a service's desired count (ECS UpdateService desiredCount).
    Scale {
        #[command(flatten)]
        args: client_commands::ScaleArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Change a service (ECS UpdateService): a new task definition starts a rolling
    /// deployment.
    UpdateService {
        #[command(flatten)]
        args: client_commands::UpdateServiceArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Deploy a CloudFormation template (as `cdk synth` writes it) as a stack: prints the
    /// change set, then each resource's progress, then the outputs; a failure is rolled back.
    Deploy {
        #[command(flatten)]
        args: stack_commands::DeployArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Apply an AWS Copilot manifest (Load Balanced Web Service, Backend Service, Scheduled
    /// Job) as the stack `copilot-NAME`; an unchanged manifest changes nothing.
    Apply {
        #[command(flatten)]
        args: copilot_commands::ManifestArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// What applying a Copilot manifest would change, per resource and property (old → new).
    Diff {
        #[command(flatten)]
        args: copilot_commands::ManifestArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Delete what a Copilot manifest applied (its stack); the cluster stays.
    Delete {
        #[command(flatten)]
        args: copilot_commands::ManifestArgs,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// The stacks `wasmgate deploy` made: `ls`, `describe NAME`, `rm NAME`.
    Stack {
        #[command(subcommand)]
        action: stack_commands::StackAction,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Scheduled tasks (EventBridge Scheduler's schedules for ECS): list, describe, delete.
    Schedules {
        #[command(subcommand)]
        action: schedule_commands::SchedulesAction,
        #[command(flatten)]
        target: client_commands::Target,
    },

    /// Live memory and CPU of the running tasks, like `docker stats`.
    Stats {
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        #[command(flatten)]
        target: client_commands::Target,
    },
}

/// How `wasmgate server` treats capacity hosts.
#[derive(clap::Args)]
struct HostArgs {
    /// Accept agents (`wasmgate agent`) that present the token in this file.
    #[arg(long, env = "WASMGATE_AGENT_TOKEN_FILE", value_name = "FILE")]
    agent_token_file: Option<PathBuf>,

    /// Run no agent in this process (a controller only; capacity comes from `wasmgate agent`).
    #[arg(long)]
    no_local_agent: bool,

    /// Serve the API and the agent protocol over TLS with this certificate chain (PEM).
    #[arg(
        long,
        env = "WASMGATE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The TLS certificate's private key (PEM).
    #[arg(
        long,
        env = "WASMGATE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Seconds without a heartbeat after which a host shows agentConnected false and gets no
    /// new tasks.
    #[arg(
        long,
        env = "WASMGATE_AGENT_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    agent_timeout: f64,

    /// Seconds without a heartbeat after which a host's tasks are recorded STOPPED and its
    /// services' tasks replaced elsewhere.
    #[arg(
        long,
        env = "WASMGATE_AGENT_LOST_AFTER",
        default_value_t = 20.0,
        value_name = "SECONDS"
    )]
    agent_lost_after: f64,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The controller's URL (`http://HOST:PORT`); repeat or separate with commas to give
    /// several, tried in turn.
    #[arg(
        long = "controller",
        env = "WASMGATE_CONTROLLER",
        value_delimiter = ',',
        required = true
    )]
    controllers: Vec<String>,

    /// The file holding the join token (the server's --agent-token-file).
    #[arg(long, env = "WASMGATE_AGENT_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,

    /// For an `https://` controller: trust the certificates in this file (PEM) instead of
    /// the public web roots.
    #[arg(long, env = "WASMGATE_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Register in this cluster (EC2 / EXTERNAL capacity, as ECS Anywhere) instead of the
    /// shared pool that runs FARGATE tasks of every cluster.
    #[arg(long)]
    cluster: Option<String>,

    /// A placement attribute of this host (repeatable), as memberOf and spread see it.
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    attributes: Vec<String>,

    /// Where to serve the HTTP requests the gateway forwards to this host's tasks.
    #[arg(long, env = "WASMGATE_AGENT_LISTEN", default_value = "0.0.0.0:8082")]
    listen: std::net::SocketAddr,

    /// The address the controller reaches this host at (default: the listen address).
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,

    /// The host's name as people see it (default: its hostname).
    #[arg(long)]
    name: Option<String>,

    /// MiB of this host's memory kept back from tasks.
    #[arg(
        long,
        env = "WASMGATE_MEMORY_RESERVE",
        default_value_t = 256,
        value_name = "MiB"
    )]
    memory_reserve: u32,
}

#[derive(Subcommand)]
enum ImagesAction {
    /// List cached images (the default).
    Ls,
    /// Forget an image (by reference or digest); `prune` then frees its blobs.
    Rm { reference: String },
    /// Delete every blob no cached image needs.
    Prune,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A task definition JSON file, a .wasm module or component, or an image reference; a file
    /// or an image is wrapped in a one-container task definition named after it.
    #[arg(value_name = "TASKDEF.json | MODULE.wasm | IMAGE-REF")]
    target: PathBuf,

    /// Set an environment variable in the container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// The container's memory limit in MiB (a module or image run defaults to 1024).
    #[arg(long, value_name = "MiB")]
    memory: Option<u32>,

    /// The container's CPU units (1024 = one core).
    #[arg(long, value_name = "UNITS")]
    cpu: Option<u32>,

    /// Which container of the task definition the overrides apply to (default: the first
    /// essential one).
    #[arg(long, value_name = "NAME")]
    container: Option<String>,

    /// Arguments for the container: they replace its `command`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

mod client_commands;
mod copilot_commands;
mod progress;
mod schedule_commands;
mod stack_commands;

/// The memory limit of a module run without --memory, in MiB.
const DEFAULT_MODULE_MEMORY_MIB: u32 = 1024;

fn main() -> std::process::ExitCode {
    wasmgate::memory::limit_arenas();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    if !matches!(
        cli.command,
        Command::Server { .. } | Command::Agent(_) | Command::Run(_)
    ) {
        // A client verb piped into `head` stops quietly when the reader goes, as Unix tools
        // do. (Not the server, agent or run: they write to sockets and to their tasks' pipes,
        // where a reader gone is an error to handle, not a reason to die.)
        // SAFETY: called once before any thread starts; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wasmgate: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("wasmgate: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "wasmgate=warn",
        1 => "wasmgate=debug",
        _ => "wasmgate=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let default_pooling = match cli.command {
        Command::Server { .. } | Command::Agent(_) => Pooling::Auto,
        _ => Pooling::Off,
    };
    let config = Config {
        data_dir: cli.data_dir.unwrap_or_else(default_data_dir),
        pooling: match cli.pooling.unwrap_or(default_pooling) {
            Pooling::Auto => PoolingChoice::Auto,
            Pooling::On => PoolingChoice::On,
            Pooling::Off => PoolingChoice::Off,
        },
        default_registry: cli.default_registry,
        runtime: cli.runtime,
        userns: cli.userns,
        network: wasmgate::capacity::container::network::NetworkSettings {
            subnet: cli.task_subnet,
            bridge: cli.task_bridge,
            cni_path: std::env::split_paths(&cli.cni_path).collect(),
        },
        registry: RegistrySettings {
            insecure: cli.insecure_registries,
            username: cli.registry_username,
            password: cli.registry_password,
            docker_config: None,
        },
        ..Config::default()
    };
    match cli.command {
        Command::Run(args) => run(&config, args).await,
        Command::Push { module, reference } => push(&config, &module, &reference).await,
        Command::Images { action } => images(&config, action.unwrap_or(ImagesAction::Ls)),
        Command::Register { files, target } => client_commands::register(&target, &files).await,
        Command::RunTask { args, target } => client_commands::run_task(&target, args).await,
        Command::Tasks {
            all,
            family,
            target,
        } => client_commands::tasks(&target, all, family.as_deref()).await,
        Command::Ps { all, target } => client_commands::ps(&target, all).await,
        Command::Describe { tasks, target } => client_commands::describe(&target, &tasks).await,
        Command::Stop {
            tasks,
            reason,
            target,
        } => client_commands::stop(&target, &tasks, reason.as_deref()).await,
        Command::Logs { args, target } => client_commands::logs(&target, args).await,
        Command::Stats { no_stream, target } => client_commands::stats(&target, no_stream).await,
        Command::Hosts { target } => client_commands::hosts(&target).await,
        Command::Services { target } => client_commands::services(&target).await,
        Command::CreateService { args, target } => {
            client_commands::create_service(&target, args).await
        }
        Command::Scale { args, target } => client_commands::scale(&target, args).await,
        Command::Deploy { args, target } => stack_commands::deploy(&target, args).await,
        Command::Stack { action, target } => stack_commands::stack(&target, action).await,
        Command::Schedules { action, target } => {
            schedule_commands::schedules(&target, action).await
        }
        Command::Apply { args, target } => copilot_commands::apply(&target, args).await,
        Command::Diff { args, target } => copilot_commands::diff(&target, args).await,
        Command::Delete { args, target } => copilot_commands::delete(&target, args).await,
        Command::UpdateService { args, target } => {
            client_commands::update_service(&target, args).await
        }
        Command::Server {
            listen,
            memory_reserve,
            stopped_task_retention,
            store,
            leader_ttl,
            register_examples,
            credentials,
            task_log_bytes,
            gateway,
            metrics_listen,
            region,
            account_id,
            service_restart_delay,
            service_restart_delay_max,
            clock_rate,
            hosts,
        } => {
            let scheduler = wasmgate::controller::plan::SchedulerSettings {
                restart_delay_base: seconds(service_restart_delay, "--service-restart-delay")?,
                restart_delay_cap: seconds(
                    service_restart_delay_max,
                    "--service-restart-delay-max",
                )?,
            };
            let config = Config {
                memory_reserve_mib: memory_reserve,
                task_log_bytes,
                ..config
            };
            let gateway = match gateway.as_str() {
                "off" => None,
                address => Some(address.parse::<std::net::SocketAddr>().map_err(|e| {
                    anyhow::anyhow!("--gateway {address}: not an address (or off): {e}")
                })?),
            };
            let credentials = match &credentials {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("--credentials {}: cannot read", path.display())
                    })?;
                    Some(wasmgate::api::Credentials::from_json(&text).map_err(|why| {
                        anyhow::anyhow!("--credentials {}: {why}", path.display())
                    })?)
                }
            };
            let join_token = match &hosts.agent_token_file {
                None => None,
                Some(path) => Some(read_token(path, "--agent-token-file")?),
            };
            let store_line = match &store {
                wasmgate::store::StoreUrl::Sqlite => format!(
                    "state in {}",
                    wasmgate::store::sqlite_path(&config.data_dir).display()
                ),
                etcd => format!("state in {etcd}"),
            };
            let options = wasmgate::server::ServerOptions {
                listen,
                store,
                gateway,
                metrics_listen,
                retention: std::time::Duration::from_secs(stopped_task_retention),
                leader_ttl: match leader_ttl {
                    2..=3600 => std::time::Duration::from_secs(leader_ttl),
                    _ => anyhow::bail!("--leader-ttl {leader_ttl}: must be 2 to 3600 seconds"),
                },
                examples: register_examples,
                credentials,
                scheduler,
                hosts: wasmgate::control::hosts::HostSettings {
                    agent_timeout: seconds(hosts.agent_timeout, "--agent-timeout")?,
                    lost_after: seconds(hosts.agent_lost_after, "--agent-lost-after")?,
                    join_token,
                    ..Default::default()
                },
                local_agent: !hosts.no_local_agent,
                tls: hosts.tls_cert.clone().zip(hosts.tls_key.clone()),
                arns: wasmgate::arn::ArnScope::new(&region, &account_id)
                    .map_err(|why| anyhow::anyhow!("{why}"))?,
                clock_rate: if clock_rate.is_finite() && clock_rate >= 1.0 {
                    clock_rate
                } else {
                    anyhow::bail!("--clock-rate {clock_rate}: must be a number of at least 1")
                },
            };
            let signatures = if options.credentials.is_some() {
                Signatures::Checked
            } else {
                Signatures::NotChecked
            };
            let images = open_images(&config)?;
            let announce = |started: &wasmgate::server::Started| {
                announce_server(started, signatures, &store_line)
            };
            wasmgate::server::run_server(&config, images, options, announce, ctrl_c()).await?;
            Ok(0)
        }
        Command::Agent(args) => {
            let config = Config {
                memory_reserve_mib: args.memory_reserve,
                ..config
            };
            let controllers = args
                .controllers
                .iter()
                .map(|url| {
                    wasmgate::protocol::http::ControllerUrl::parse(url, args.ca.as_deref())
                        .map_err(|why| anyhow::anyhow!("--controller {why}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut attributes = std::collections::BTreeMap::new();
            for given in &args.attributes {
                let (name, value) = given
                    .split_once('=')
                    .with_context(|| format!("--attribute {given}: expected NAME=VALUE"))?;
                if name.is_empty() {
                    bail!("--attribute {given}: the name is empty");
                }
                attributes.insert(name.to_string(), value.to_string());
            }
            let options = wasmgate::server::AgentOptions {
                controllers,
                token: read_token(&args.token_file, "--token-file")?,
                cluster: args.cluster,
                attributes,
                listen: Some(args.listen),
                advertise: args.advertise,
                name: args.name.unwrap_or_else(wasmgate::server::hostname),
            };
            let images = open_images(&config)?;
            let announce = |id: &str, listen: Option<std::net::SocketAddr>| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "joined as {id}");
                if let Some(listen) = listen {
                    let _ = writeln!(out, "serving forwarded requests on http://{listen}");
                }
                let _ = out.flush();
            };
            wasmgate::server::run_agent_host(&config, images, options, announce, ctrl_c()).await?;
            Ok(0)
        }
    }
}

/// A number of seconds given on the command line.
fn seconds(value: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{flag} {value}: not a number of seconds"))
}

/// The secret in a token file (whitespace around it ignored).
fn read_token(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        bail!(
            "{flag} {}: the token must be at least 16 characters",
            path.display()
        );
    }
    Ok(token)
}

/// Resolves on the first Ctrl-C (or when Ctrl-C cannot be listened for).
async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("wasmgate: cannot listen for Ctrl-C: {error}");
        std::future::pending::<()>().await;
    }
}

/// Whether the server checks the SigV4 signatures of API calls (`--credentials`).
#[derive(Clone, Copy, PartialEq)]
enum Signatures {
    Checked,
    NotChecked,
}

/// Prints where the server listens and what to try next, each line runnable as printed.
/// Written without println!: whoever started us may have stopped reading stdout.
fn announce_server(started: &wasmgate::server::Started, signatures: Signatures, store: &str) {
    let address = started.api;
    let scheme = if started.tls { "https" } else { "http" };
    let endpoint = format!("{scheme}://{address}");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {endpoint}");
    if let Some(gateway) = started.gateway {
        let _ = writeln!(out, "gateway on http://{gateway}");
    }
    if let Some(metrics) = started.metrics {
        let _ = writeln!(out, "metrics on http://{metrics}/metrics");
    }
    let _ = writeln!(out, "console on {endpoint}/console/");
    let _ = writeln!(out, "{store}");
    // The AWS CLI signs every call and refuses to without a key; a server that checks no
    // signatures takes any.
    let keys = match signatures {
        Signatures::NotChecked => "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x ",
        Signatures::Checked => "",
    };
    let aws = format!("{keys}aws --endpoint-url {endpoint} --region us-east-1 ecs");
    let _ = writeln!(out, "try:");
    if signatures == Signatures::Checked {
        let _ = writeln!(
            out,
            "  (with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set to a key of --credentials)"
        );
    }
    let _ = writeln!(out, "  {aws} list-task-definitions");
    for family in &started.registered {
        let _ = writeln!(out, "  {aws} run-task --task-definition {family}");
    }
    let _ = writeln!(out, "  {aws} list-tasks --desired-status STOPPED");
    let _ = writeln!(out, "  {aws} describe-tasks --tasks TASK_ARN");
    let program = own_command();
    let wasmgate = if endpoint == "http://127.0.0.1:8080" {
        program
    } else {
        format!("WASMGATE_ENDPOINT={endpoint} {program}")
    };
    if let Some(family) = started.registered.first() {
        let _ = writeln!(out, "  {wasmgate} run-task {family} --wait");
    }
    let _ = writeln!(out, "  {wasmgate} tasks --all");
    let _ = writeln!(out, "  {wasmgate} services");
    let _ = writeln!(out, "  {wasmgate} logs TASK_ID -f");
    let _ = writeln!(out, "  {wasmgate} stats");
    let _ = writeln!(out, "  curl {endpoint}/metrics");
    let _ = out.flush();
}

/// How printed lines should name this program: `wasmgate` when that is what PATH finds, else
/// the path it runs from (a fresh checkout's `target/release/wasmgate` is on no PATH).
fn own_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "wasmgate".to_string();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("wasmgate")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        "wasmgate".to_string()
    } else {
        shell_word(&exe.to_string_lossy())
    }
}

/// `text` as one shell word: as is when it is plain, else single-quoted.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn open_images(config: &Config) -> anyhow::Result<Images> {
    let images = Images::open(&config.images()).context("cannot open the image store")?;
    Ok(images.with_progress(Arc::new(progress::PullMeter::default().into_sink())))
}

async fn push(config: &Config, module: &Path, reference: &str) -> anyhow::Result<u8> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let pushed = open_images(config)?.push_wasm(&bytes, reference).await?;
    println!("{}", pushed.reference);
    eprintln!(
        "wasmgate: pushed {} ({}, {} bytes) as {}",
        module.display(),
        pushed.os,
        bytes.len(),
        pushed.digest
    );
    Ok(0)
}

fn images(config: &Config, action: ImagesAction) -> anyhow::Result<u8> {
    let images = open_images(config)?;
    let store = images.store();
    match action {
        ImagesAction::Ls => {
            println!(
                "{:<50} {:<20} {:<10} {:>10}  LAST USED",
                "REFERENCE", "DIGEST", "KIND", "SIZE"
            );
            let now = wasmgate::image::content::now_secs();
            for image in store.images()? {
                let short = image
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                println!(
                    "{:<50} {:<20} {:<10} {:>10}  {} ago",
                    image.reference,
                    format!("sha256:{short}"),
                    image.kind,
                    wasmgate::capacity::wasm::describe_bytes(image.size),
                    humantime::format_duration(std::time::Duration::from_secs(
                        now.saturating_sub(image.last_used)
                    ))
                );
            }
        }
        ImagesAction::Rm { reference } => {
            if store.remove_image(&reference)? == 0 {
                bail!("images rm {reference}: no cached image has that reference or digest");
            }
            println!("removed {reference} (run `wasmgate images prune` to free its blobs)");
        }
        ImagesAction::Prune => {
            let report = store.prune()?;
            println!(
                "removed {} blobs, freed {}",
                report.blobs_removed,
                wasmgate::capacity::wasm::describe_bytes(report.bytes_freed)
            );
        }
    }
    Ok(0)
}

async fn run(config: &Config, args: RunArgs) -> anyhow::Result<u8> {
    let (definition, base_dir) = load_target(&args)?;
    let container = match &args.container {
        Some(name) => {
            if definition.container(name).is_none() {
                bail!("--container {name}: the task definition has no container of that name");
            }
            name.clone()
        }
        None => definition
            .essential_containers()
            .next()
            .map(|c| c.name.clone())
            .context("the task definition has no essential container")?,
    };
    let overrides = vec![ContainerOverride {
        name: container,
        command: (!args.args.is_empty()).then(|| args.args.clone()),
        environment: parse_env(&args.env)?,
        cpu: args.cpu,
        memory: args.memory,
        memory_reservation: None,
    }];

    let wasm =
        WasmCapacity::new(&config.wasm_capacity()).context("cannot start the Wasm capacity")?;
    let images = open_images(config)?;
    let runner = Arc::new(wasmgate::server::with_containers(
        TaskRunner::new(Arc::new(wasm), Arc::new(images), config.task_runner()),
        config,
    ));
    // One Ctrl-C listener for the whole run, installed before the task starts: a Ctrl-C is
    // never lost, and a second one right after the first is never missed.
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    let task = runner.start(TaskRequest {
        task_id: new_task_id(),
        definition: Arc::new(definition),
        overrides,
        image_base_dir: base_dir,
        tee: Tee::Terminal,
        events: None,
    });

    // Ctrl-C: the first asks the task to stop, the second interrupts it.
    let outcome = {
        let wait = task.wait();
        tokio::pin!(wait);
        let mut interrupts = 0;
        loop {
            tokio::select! {
                outcome = &mut wait => break outcome,
                Some(()) = ctrl_c.recv() => {
                    interrupts += 1;
                    if interrupts == 1 {
                        eprintln!("wasmgate: stopping the task (Ctrl-C again to interrupt it now)");
                        task.stop("Task stopped by Ctrl-C");
                    } else {
                        task.kill("Task interrupted by a second Ctrl-C");
                    }
                }
            }
        }
    };
    report(&outcome);
    Ok(u8::try_from(outcome.exit_code().clamp(0, 255)).unwrap_or(1))
}

/// Loads a task definition, or wraps a Wasm file in a one-container task definition. Returns it
/// with the directory its relative image paths are resolved against.
fn load_target(args: &RunArgs) -> anyhow::Result<(TaskDefinition, PathBuf)> {
    let path = &args.target;
    if !path.exists() {
        // Not a file here: an image reference (registry, or oci: layout).
        let reference = path.to_string_lossy().into_owned();
        return Ok((
            wrap_image(&reference, &name_for_reference(&reference), args.memory)?,
            PathBuf::from("."),
        ));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if bytes.starts_with(b"\0asm") {
        let image = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let image = format!("file:{}", image.display());
        return Ok((
            wrap_image(&image, &container_name_for(path), args.memory)?,
            base_dir,
        ));
    }
    let text = String::from_utf8(bytes).with_context(|| {
        format!(
            "{}: neither a Wasm binary nor a UTF-8 task definition",
            path.display()
        )
    })?;
    let definition = TaskDefinition::from_json(&text).map_err(|error| {
        let lines: Vec<String> = error
            .field_errors()
            .iter()
            .map(|e| format!("  {e}"))
            .collect();
        anyhow::anyhow!(
            "{}: invalid task definition:\n{}",
            path.display(),
            lines.join("\n")
        )
    })?;
    Ok((definition, base_dir))
}

/// A one-container task definition running `image`.
fn wrap_image(image: &str, name: &str, memory: Option<u32>) -> anyhow::Result<TaskDefinition> {
    let document = serde_json::json!({
        "family": name,
        "memory": memory.unwrap_or(DEFAULT_MODULE_MEMORY_MIB).to_string(),
        "containerDefinitions": [{"name": name, "image": image, "essential": true}],
    });
    TaskDefinition::from_value(document)
        .with_context(|| format!("{image}: cannot wrap in a task definition"))
}

/// A container name from an image reference: `127.0.0.1:5000/team/hello:v1` → `hello`.
fn name_for_reference(reference: &str) -> String {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repository = last.split(':').next().unwrap_or(last);
    container_name_for(Path::new(repository))
}

/// A valid container name from a file name: `hello.wasm` → `hello`.
fn container_name_for(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(255)
        .collect();
    if name.is_empty() {
        "main".to_string()
    } else {
        name
    }
}

fn parse_env(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("-e {pair}: expected KEY=VALUE"),
        })
        .collect()
}

/// Tells the user how the task ended when it did not end cleanly.
fn report(outcome: &TaskOutcome) {
    tracing::debug!(
        task_id = %outcome.task_id,
        stop_code = outcome.stop_code.as_str(),
        reason = %outcome.stopped_reason,
        "task outcome"
    );
    for container in &outcome.containers {
        let failed = container.exit_code != Some(0) || container.reason.is_some();
        if !failed
            || (!container.essential && container.exit_code.is_some() && container.reason.is_none())
        {
            continue;
        }
        let what = match container.exit_code {
            Some(code) => format!("exited with {code}"),
            None => "did not start".to_string(),
        };
        match &container.reason {
            Some(reason) => eprintln!("wasmgate: container {} {what}: {reason}", container.name),
            None => eprintln!("wasmgate: container {} {what}", container.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_are_one_shell_word() {
        let cases = [
            (
                "/src/wasmgate/target/release/wasmgate",
                "/src/wasmgate/target/release/wasmgate",
            ),
            ("/home/a b/wasmgate", "'/home/a b/wasmgate'"),
            ("/it's/wasmgate", r"'/it'\''s/wasmgate'"),
            ("", "''"),
        ];
        for (path, word) in cases {
            assert_eq!(shell_word(path), word, "{path}");
        }
    }
}
