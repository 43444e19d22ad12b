//! The `wasmgate` command line. Parses flags into [`wasmgate::config::Config`], runs the verb,
//! and turns errors into a message and an exit code. This is the only place that uses anyhow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use wasmgate::agent::{ContainerOverride, TaskOutcome, TaskRequest, TaskRunner, new_task_id};
use wasmgate::capacity::Tee;
use wasmgate::capacity::wasm::{PoolingChoice, WasmCapacity};
use wasmgate::config::{Config, default_data_dir};
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
    /// TARGET is a task definition (ECS JSON) or a Wasm module or component. Ctrl-C stops the
    /// task as StopTask does (each container gets its stopTimeout); a second Ctrl-C interrupts
    /// it at once.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A task definition JSON file, or a .wasm module or component.
    #[arg(value_name = "TASKDEF.json | MODULE.wasm")]
    target: PathBuf,

    /// Set an environment variable in the container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// The container's memory limit in MiB (a module run defaults to 1024).
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

/// The memory limit of a module run without --memory, in MiB.
const DEFAULT_MODULE_MEMORY_MIB: u32 = 1024;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
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
        Command::Run(_) => Pooling::Off,
    };
    let config = Config {
        data_dir: cli.data_dir.unwrap_or_else(default_data_dir),
        pooling: match cli.pooling.unwrap_or(default_pooling) {
            Pooling::Auto => PoolingChoice::Auto,
            Pooling::On => PoolingChoice::On,
            Pooling::Off => PoolingChoice::Off,
        },
        ..Config::default()
    };
    match cli.command {
        Command::Run(args) => run(&config, args).await,
    }
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
    }];

    let wasm =
        WasmCapacity::new(&config.wasm_capacity()).context("cannot start the Wasm capacity")?;
    let runner = Arc::new(TaskRunner::new(Arc::new(wasm), config.task_runner()));
    let task = runner.start(TaskRequest {
        task_id: new_task_id(),
        definition,
        overrides,
        image_base_dir: base_dir,
        tee: Tee::Terminal,
    });

    // Ctrl-C: the first asks the task to stop, the second interrupts it.
    let outcome = {
        let wait = task.wait();
        tokio::pin!(wait);
        let mut interrupts = 0;
        loop {
            tokio::select! {
                outcome = &mut wait => break outcome,
                signal = tokio::signal::ctrl_c() => {
                    signal.context("cannot listen for Ctrl-C")?;
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
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if bytes.starts_with(b"\0asm") {
        let name = container_name_for(path);
        let image = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let document = serde_json::json!({
            "family": name,
            "memory": args.memory.unwrap_or(DEFAULT_MODULE_MEMORY_MIB).to_string(),
            "containerDefinitions": [{
                "name": name,
                "image": format!("file:{}", image.display()),
                "essential": true,
            }],
        });
        let definition = TaskDefinition::from_value(document)
            .with_context(|| format!("{}: cannot wrap in a task definition", path.display()))?;
        return Ok((definition, base_dir));
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
