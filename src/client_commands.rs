//! The CLI verbs that talk to a running `wasmgate server` over its API, as the AWS CLI would:
//! `register`, `run-task`, `tasks`, `ps`, `describe`, `stop`, `logs`, `stats`, `hosts`, and for
//! services `services`, `create-service`, `scale`, `update-service`. Each prints what a person
//! wants to read; `describe` prints the API's JSON as is.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use wasmgate::client::Client;

/// Where the server is; shared by every client verb.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The server's API (`wasmgate server --listen`). Global, so it may also follow the
    /// action of a verb that has actions (`wasmgate stack ls --endpoint URL`).
    #[arg(
        long,
        global = true,
        env = "WASMGATE_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: String,

    /// The cluster.
    #[arg(long, global = true, default_value = "default")]
    pub(crate) cluster: String,
}

impl Target {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.endpoint, Client::signing_key_from_env())?)
    }
}

/// `wasmgate register FILE...`.
pub async fn register(target: &Target, files: &[PathBuf]) -> anyhow::Result<u8> {
    let client = target.client()?;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut document: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
        let dir = std::path::absolute(file.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("cannot resolve {}", file.display()))?;
        wasmgate::image::reference::absolutize_file_images(&mut document, &dir);
        let answer = client
            .call("RegisterTaskDefinition", document)
            .await
            .with_context(|| format!("{}: not registered", file.display()))?;
        let definition = &answer["taskDefinition"];
        println!(
            "{}:{}\t{}",
            text_of(&definition["family"]),
            definition["revision"],
            text_of(&definition["taskDefinitionArn"])
        );
    }
    Ok(0)
}

/// What `wasmgate run-task` was asked.
#[derive(clap::Args)]
pub struct RunTaskArgs {
    /// FAMILY, FAMILY:REVISION or a task definition ARN.
    task_definition: String,
    /// How many tasks (1-10).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Set an environment variable in the container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The container the overrides apply to (default: the task definition's first).
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// Recorded as the tasks' startedBy.
    #[arg(long)]
    started_by: Option<String>,
    /// Wait until every task stopped; print how each ended and exit with the first task's
    /// exit code (its first non-zero container exit code, else 0).
    #[arg(long)]
    wait: bool,
    /// Arguments that replace the container's command.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// `wasmgate run-task`.
pub async fn run_task(target: &Target, args: RunTaskArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let mut body = json!({
        "cluster": target.cluster,
        "taskDefinition": args.task_definition,
        "count": args.count,
    });
    if let Some(started_by) = &args.started_by {
        body["startedBy"] = json!(started_by);
    }
    if !args.env.is_empty() || !args.args.is_empty() {
        let container = match &args.container {
            Some(name) => name.clone(),
            None => {
                let described = client
                    .call(
                        "DescribeTaskDefinition",
                        json!({"taskDefinition": args.task_definition}),
                    )
                    .await?;
                text_of(&described["taskDefinition"]["containerDefinitions"][0]["name"])
            }
        };
        let mut environment = Vec::new();
        for pair in &args.env {
            let Some((name, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                bail!("-e {pair}: expected KEY=VALUE");
            };
            environment.push(json!({"name": name, "value": value}));
        }
        let mut container_override = json!({"name": container, "environment": environment});
        if !args.args.is_empty() {
            container_override["command"] = json!(args.args);
        }
        body["overrides"] = json!({"containerOverrides": [container_override]});
    }
    let answer = client.call("RunTask", body).await?;
    let mut failed = false;
    for failure in answer["failures"].as_array().into_iter().flatten() {
        eprintln!(
            "wasmgate: not placed: {} {}",
            text_of(&failure["reason"]),
            text_of(&failure["detail"])
        );
        failed = true;
    }
    let arns: Vec<String> = answer["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| text_of(&t["taskArn"]))
        .collect();
    for arn in &arns {
        println!("{}", task_id(arn));
    }
    if !args.wait {
        return Ok(if failed { 1 } else { 0 });
    }
    let mut exit = None;
    let stopped = wait_stopped(&client, &target.cluster, &arns).await?;
    for task in &stopped {
        let essential = essential_exit(task);
        println!(
            "{} {} {}: {}",
            task_id(&text_of(&task["taskArn"])),
            text_of(&task["lastStatus"]),
            essential.map_or("no exit code".to_string(), |c| format!("exit {c}")),
            text_of(&task["stoppedReason"])
        );
        exit.get_or_insert(essential.unwrap_or(125));
    }
    Ok(u8::try_from(exit.unwrap_or(1).clamp(0, 255)).unwrap_or(1))
}

/// The task's exit code as a shell wants it: the first non-zero container exit code, else 0
/// when a container exited, else none (nothing started).
fn essential_exit(task: &Value) -> Option<i64> {
    let codes: Vec<i64> = task["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| c["exitCode"].as_i64())
        .collect();
    codes
        .iter()
        .copied()
        .find(|code| *code != 0)
        .or(codes.first().copied())
}

/// Polls DescribeTasks until every task in `arns` has stopped.
async fn wait_stopped(
    client: &Client,
    cluster: &str,
    arns: &[String],
) -> anyhow::Result<Vec<Value>> {
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    loop {
        let answer = client
            .call("DescribeTasks", json!({"cluster": cluster, "tasks": arns}))
            .await?;
        let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
        if tasks.len() < arns.len() {
            bail!("a task was forgotten before it could be waited for");
        }
        if tasks.iter().all(|t| t["lastStatus"] == "STOPPED") {
            return Ok(tasks);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every task ARN of the cluster with `desired` status, all pages.
async fn list_tasks(
    client: &Client,
    cluster: &str,
    desired: &str,
    family: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut body = json!({"cluster": cluster, "desiredStatus": desired});
    if let Some(family) = family {
        body["family"] = json!(family);
    }
    list_all(client, "ListTasks", body, "taskArns").await
}

/// Every ARN a list action answers under `field`, following `nextToken` through all pages.
async fn list_all(
    client: &Client,
    action: &str,
    mut body: serde_json::Value,
    field: &str,
) -> anyhow::Result<Vec<String>> {
    body["maxResults"] = json!(100);
    let mut arns = Vec::new();
    loop {
        let page = client.call(action, body.clone()).await?;
        arns.extend(page[field].as_array().into_iter().flatten().map(text_of));
        match page["nextToken"].as_str() {
            Some(next) => body["nextToken"] = json!(next),
            None => return Ok(arns),
        }
    }
}

/// DescribeTasks for any number of tasks (the API takes 100 at a time).
async fn describe_tasks(
    client: &Client,
    cluster: &str,
    arns: &[String],
) -> anyhow::Result<Vec<Value>> {
    let mut tasks = Vec::new();
    for chunk in arns.chunks(100) {
        let answer = client
            .call("DescribeTasks", json!({"cluster": cluster, "tasks": chunk}))
            .await?;
        tasks.extend(answer["tasks"].as_array().cloned().unwrap_or_default());
    }
    Ok(tasks)
}

/// Every task of the cluster (running first, then stopped), described.
async fn all_tasks(
    client: &Client,
    cluster: &str,
    include_stopped: bool,
    family: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut arns = list_tasks(client, cluster, "RUNNING", family).await?;
    if include_stopped {
        arns.extend(list_tasks(client, cluster, "STOPPED", family).await?);
    }
    let mut tasks = describe_tasks(client, cluster, &arns).await?;
    // Newest first, as `docker ps` lists.
    tasks.sort_by(|a, b| {
        b["createdAt"]
            .as_f64()
            .partial_cmp(&a["createdAt"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(tasks)
}

/// A task id from what a person typed: an ARN, an id, or the start of an id that only one task
/// of the cluster has.
async fn resolve_task(client: &Client, cluster: &str, given: &str) -> anyhow::Result<String> {
    if given.starts_with("arn:")
        || (given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(task_id(given).to_string());
    }
    let mut matches: Vec<String> = Vec::new();
    for desired in ["RUNNING", "STOPPED"] {
        for arn in list_tasks(client, cluster, desired, None).await? {
            let id = task_id(&arn).to_string();
            if id.starts_with(given) && !matches.contains(&id) {
                matches.push(id);
            }
        }
    }
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{given}: no task of cluster {cluster} has an id that starts so"),
        many => bail!(
            "{given}: {} tasks have ids that start so; give more of the id",
            many.len()
        ),
    }
}

/// The host a task runs on: a FARGATE task's host name (its attachment), else the container
/// instance's id.
fn host_name(task: &Value) -> String {
    let attached = task["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["details"].as_array().into_iter().flatten())
        .find(|d| d["name"] == "wasmgateHostName")
        .and_then(|d| d["value"].as_str());
    match attached {
        Some(name) => name.to_string(),
        None => task["containerInstanceArn"]
            .as_str()
            .map(short_id)
            .unwrap_or_else(|| "-".to_string()),
    }
}

/// `wasmgate hosts`: one line per host (`WasmgateV1.ListHosts`).
pub async fn hosts(target: &Target) -> anyhow::Result<u8> {
    let client = target.client()?;
    let answer = client
        .call("WasmgateV1.ListHosts", serde_json::json!({}))
        .await?;
    let mut rows = vec![[
        "HOST ID".to_string(),
        "NAME".to_string(),
        "CLUSTER".to_string(),
        "STATUS".to_string(),
        "CONNECTED".to_string(),
        "CPU LEFT".to_string(),
        "MEMORY LEFT".to_string(),
        "TASKS".to_string(),
    ]];
    for host in answer["Hosts"].as_array().into_iter().flatten() {
        let number = |field: &str| host[field].as_u64().unwrap_or(0);
        rows.push([
            short_id(&text_of(&host["Id"])),
            text_of(&host["Name"]),
            host["Cluster"]
                .as_str()
                .map_or_else(|| "(pool)".to_string(), str::to_string),
            text_of(&host["Status"]),
            if host["AgentConnected"] == true {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            format!("{}/{}", number("CpuUnitsRemaining"), number("CpuUnits")),
            format!(
                "{}/{} MiB",
                number("MemoryMiBRemaining"),
                number("MemoryMiB")
            ),
            (number("RunningTasks") + number("PendingTasks")).to_string(),
        ]);
    }
    print_table(&rows);
    Ok(0)
}

/// `wasmgate tasks`: one line per task.
pub async fn tasks(
    target: &Target,
    include_stopped: bool,
    family: Option<&str>,
) -> anyhow::Result<u8> {
    let client = target.client()?;
    let tasks = all_tasks(&client, &target.cluster, include_stopped, family).await?;
    let now = now_secs();
    let mut rows = vec![[
        "TASK ID".to_string(),
        "TASK DEFINITION".to_string(),
        "STATUS".to_string(),
        "DESIRED".to_string(),
        "CREATED".to_string(),
        "HOST".to_string(),
        "STOPPED BECAUSE".to_string(),
    ]];
    for task in &tasks {
        rows.push([
            task_id(&text_of(&task["taskArn"])).to_string(),
            definition_name(task),
            text_of(&task["lastStatus"]),
            text_of(&task["desiredStatus"]),
            ago(now, task["createdAt"].as_f64()),
            host_name(task),
            stop_summary(task),
        ]);
    }
    print_table(&rows);
    Ok(0)
}

/// `wasmgate ps`: one line per container of the running tasks (all tasks with `-a`).
pub async fn ps(target: &Target, all: bool) -> anyhow::Result<u8> {
    let client = target.client()?;
    let tasks = all_tasks(&client, &target.cluster, all, None).await?;
    let now = now_secs();
    let mut rows = vec![[
        "TASK ID".to_string(),
        "CONTAINER".to_string(),
        "IMAGE".to_string(),
        "TASK DEFINITION".to_string(),
        "CREATED".to_string(),
        "STATUS".to_string(),
        "HOST".to_string(),
    ]];
    for task in &tasks {
        for container in task["containers"].as_array().into_iter().flatten() {
            let status = match (
                container["lastStatus"].as_str(),
                container["exitCode"].as_i64(),
            ) {
                (Some("RUNNING"), _) => format!("Up {}", since(now, task["startedAt"].as_f64())),
                (Some("STOPPED"), Some(code)) => {
                    format!(
                        "Exited ({code}) {} ago",
                        since(now, task["stoppedAt"].as_f64())
                    )
                }
                (Some(other), _) => other.to_string(),
                (None, _) => "-".to_string(),
            };
            rows.push([
                short_id(&text_of(&task["taskArn"])),
                text_of(&container["name"]),
                shorten(&text_of(&container["image"]), 40),
                definition_name(task),
                ago(now, task["createdAt"].as_f64()),
                status,
                host_name(task),
            ]);
        }
    }
    print_table(&rows);
    Ok(0)
}

/// `wasmgate describe TASK...`: DescribeTasks' answer as JSON.
pub async fn describe(target: &Target, given: &[String]) -> anyhow::Result<u8> {
    let client = target.client()?;
    let mut ids = Vec::new();
    for task in given {
        ids.push(resolve_task(&client, &target.cluster, task).await?);
    }
    let answer = client
        .call(
            "DescribeTasks",
            json!({"cluster": target.cluster, "tasks": ids}),
        )
        .await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    let missing = answer["failures"].as_array().is_some_and(|f| !f.is_empty());
    Ok(u8::from(missing))
}

/// `wasmgate stop TASK...`.
pub async fn stop(target: &Target, given: &[String], reason: Option<&str>) -> anyhow::Result<u8> {
    let client = target.client()?;
    for task in given {
        let id = resolve_task(&client, &target.cluster, task).await?;
        let mut body = json!({"cluster": target.cluster, "task": id});
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let answer = client.call("StopTask", body).await?;
        println!(
            "{id} {} (desired {})",
            text_of(&answer["task"]["lastStatus"]),
            text_of(&answer["task"]["desiredStatus"])
        );
    }
    Ok(0)
}

/// `wasmgate services`: one line per service of the cluster.
pub async fn services(target: &Target) -> anyhow::Result<u8> {
    let client = target.client()?;
    let arns = list_all(
        &client,
        "ListServices",
        json!({"cluster": target.cluster}),
        "serviceArns",
    )
    .await?;
    let mut rows = vec![[
        "SERVICE".to_string(),
        "STATUS".to_string(),
        "TASK DEFINITION".to_string(),
        "DESIRED".to_string(),
        "RUNNING".to_string(),
        "PENDING".to_string(),
        "DEPLOYMENTS".to_string(),
        "ROLLOUT".to_string(),
    ]];
    // DescribeServices takes 10 services a call, as ECS's does.
    for chunk in arns.chunks(10) {
        let answer = client
            .call(
                "DescribeServices",
                json!({"cluster": target.cluster, "services": chunk}),
            )
            .await?;
        for service in answer["services"].as_array().into_iter().flatten() {
            let deployments = service["deployments"].as_array().map_or(0, Vec::len);
            rows.push([
                text_of(&service["serviceName"]),
                text_of(&service["status"]),
                short_definition(&text_of(&service["taskDefinition"])),
                text_of(&service["desiredCount"]),
                text_of(&service["runningCount"]),
                text_of(&service["pendingCount"]),
                deployments.to_string(),
                text_of(&service["deployments"][0]["rolloutState"]),
            ]);
        }
    }
    print_table(&rows);
    Ok(0)
}

/// How long `--wait` waits for a service to become stable, and how often it looks.
#[derive(clap::Args, Clone, Copy)]
pub struct WaitArgs {
    /// Wait until the service is stable: one deployment, and as many tasks running as desired
    /// (what the AWS CLI's `ecs wait services-stable` waits for).
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit 1).
    #[arg(long, default_value_t = 300, value_name = "SECONDS", requires = "wait")]
    wait_timeout: u64,
}

/// What `wasmgate create-service` was asked.
#[derive(clap::Args)]
pub struct CreateServiceArgs {
    /// The service's name.
    name: String,
    /// FAMILY, FAMILY:REVISION or a task definition ARN (default: the family named as the
    /// service, latest revision).
    #[arg(long, value_name = "TASK_DEFINITION")]
    task_definition: Option<String>,
    /// How many tasks to keep running.
    #[arg(long, default_value_t = 1, value_name = "N")]
    desired_count: u32,
    /// Seconds after a task starts during which failed health checks do not replace it.
    #[arg(long, value_name = "SECONDS")]
    health_check_grace_period: Option<u32>,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `wasmgate create-service NAME`.
pub async fn create_service(target: &Target, args: CreateServiceArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let mut body = json!({
        "cluster": target.cluster,
        "serviceName": args.name,
        "taskDefinition": args.task_definition.as_deref().unwrap_or(&args.name),
        "desiredCount": args.desired_count,
    });
    if let Some(grace) = args.health_check_grace_period {
        body["healthCheckGracePeriodSeconds"] = json!(grace);
    }
    let answer = client
        .call("CreateService", body)
        .await
        .with_context(|| format!("service {}: not created", args.name))?;
    print_service_line(&answer["service"]);
    finish_service_change(&client, target, &args.name, args.wait).await
}

/// What `wasmgate scale` was asked.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// The service.
    name: String,
    /// Its new desired count.
    #[arg(value_name = "N")]
    count: u32,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `wasmgate scale NAME N`: UpdateService with a new desiredCount.
pub async fn scale(target: &Target, args: ScaleArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let answer = client
        .call(
            "UpdateService",
            json!({"cluster": target.cluster, "service": args.name, "desiredCount": args.count}),
        )
        .await
        .with_context(|| format!("service {}: not scaled", args.name))?;
    print_service_line(&answer["service"]);
    finish_service_change(&client, target, &args.name, args.wait).await
}

/// What `wasmgate update-service` was asked.
#[derive(clap::Args)]
pub struct UpdateServiceArgs {
    /// The service.
    name: String,
    /// Deploy this task definition (FAMILY, FAMILY:REVISION or ARN): a rolling deployment.
    #[arg(long, value_name = "TASK_DEFINITION")]
    task_definition: Option<String>,
    /// A new desired count.
    #[arg(long, value_name = "N")]
    desired_count: Option<u32>,
    /// Replace every task with a new one, even if nothing else changed.
    #[arg(long)]
    force_new_deployment: bool,
    /// Seconds after a task starts during which failed health checks do not replace it.
    #[arg(long, value_name = "SECONDS")]
    health_check_grace_period: Option<u32>,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `wasmgate update-service NAME ...`.
pub async fn update_service(target: &Target, args: UpdateServiceArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let mut body = json!({"cluster": target.cluster, "service": args.name});
    if let Some(definition) = &args.task_definition {
        body["taskDefinition"] = json!(definition);
    }
    if let Some(count) = args.desired_count {
        body["desiredCount"] = json!(count);
    }
    if args.force_new_deployment {
        body["forceNewDeployment"] = json!(true);
    }
    if let Some(grace) = args.health_check_grace_period {
        body["healthCheckGracePeriodSeconds"] = json!(grace);
    }
    let answer = client
        .call("UpdateService", body)
        .await
        .with_context(|| format!("service {}: not updated", args.name))?;
    print_service_line(&answer["service"]);
    finish_service_change(&client, target, &args.name, args.wait).await
}

/// `NAME STATUS: desired N, running N (FAMILY:REVISION)`.
fn print_service_line(service: &Value) {
    println!(
        "{} {}: desired {}, running {} ({})",
        text_of(&service["serviceName"]),
        text_of(&service["status"]),
        text_of(&service["desiredCount"]),
        text_of(&service["runningCount"]),
        short_definition(&text_of(&service["taskDefinition"]))
    );
}

/// After a change: with `--wait`, waits for the service to become stable and says so.
async fn finish_service_change(
    client: &Client,
    target: &Target,
    name: &str,
    wait: WaitArgs,
) -> anyhow::Result<u8> {
    if !wait.wait {
        return Ok(0);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.wait_timeout);
    loop {
        let answer = client
            .call(
                "DescribeServices",
                json!({"cluster": target.cluster, "services": [name]}),
            )
            .await?;
        let Some(service) = answer["services"].get(0) else {
            bail!("service {name}: not found in cluster {}", target.cluster);
        };
        match stability(service) {
            Stability::Stable => {
                println!(
                    "{name} stable: {} running ({})",
                    text_of(&service["runningCount"]),
                    short_definition(&text_of(&service["taskDefinition"]))
                );
                return Ok(0);
            }
            Stability::Failed(why) => bail!("service {name}: {why}"),
            Stability::InProgress => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "service {name}: not stable after {} s: running {} of {}, {} deployments{}",
                wait.wait_timeout,
                text_of(&service["runningCount"]),
                text_of(&service["desiredCount"]),
                service["deployments"].as_array().map_or(0, Vec::len),
                latest_event(service).map_or(String::new(), |e| format!("; latest event: {e}"))
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where a service stands, as `--wait` judges it.
#[derive(Debug, PartialEq)]
enum Stability {
    /// One deployment, and its running count is the desired count.
    Stable,
    /// Its newest deployment failed (the circuit breaker tripped): waiting longer cannot help.
    Failed(String),
    InProgress,
}

/// ECS's `services-stable` test (one deployment, runningCount == desiredCount), and a failed
/// newest deployment as an end of its own.
fn stability(service: &Value) -> Stability {
    let deployments = service["deployments"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if let Some(newest) = deployments.first()
        && newest["rolloutState"] == "FAILED"
    {
        return Stability::Failed(format!(
            "deployment {} failed: {}",
            text_of(&newest["id"]),
            text_of(&newest["rolloutStateReason"])
        ));
    }
    if service["status"] == "INACTIVE" {
        return Stability::Failed("the service is INACTIVE".to_string());
    }
    if deployments.len() == 1 && service["runningCount"] == service["desiredCount"] {
        return Stability::Stable;
    }
    Stability::InProgress
}

fn latest_event(service: &Value) -> Option<String> {
    service["events"][0]["message"].as_str().map(str::to_string)
}

/// `family:revision` from a task definition ARN.
fn short_definition(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// What `wasmgate logs` was asked.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The task: its id, the start of its id, or its ARN.
    task: String,
    /// Keep printing output as the task writes it, until it stops.
    #[arg(short, long)]
    follow: bool,
    /// Only this container's output.
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// Start each line with when it was written.
    #[arg(short, long)]
    timestamps: bool,
}

/// `wasmgate logs TASK [-f]`: the task's output, stdout to stdout and stderr to stderr. Lines
/// carry the container's name when the task has more than one.
pub async fn logs(target: &Target, args: LogsArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let id = resolve_task(&client, &target.cluster, &args.task).await?;
    let mut after = 0u64;
    let mut containers_seen: Vec<String> = Vec::new();
    let described = client
        .call(
            "DescribeTasks",
            json!({"cluster": target.cluster, "tasks": [id]}),
        )
        .await?;
    let several = described["tasks"][0]["containers"]
        .as_array()
        .is_some_and(|c| c.len() > 1);
    loop {
        let mut body = json!({"cluster": target.cluster, "task": id, "after": after});
        if let Some(container) = &args.container {
            body["container"] = json!(container);
        }
        let page = client.call("WasmgateV1.GetTaskLogs", body).await?;
        if page["truncated"] == true {
            eprintln!(
                "wasmgate: (earlier output was dropped: the task's log keeps its newest part)"
            );
        }
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            print_event(event, several, args.timestamps, &mut containers_seen);
        }
        after = page["next"].as_u64().unwrap_or(after);
        let _ = std::io::stdout().flush();
        if !args.follow || (page["stopped"] == true && events.is_empty()) {
            return Ok(0);
        }
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn print_event(event: &Value, several: bool, timestamps: bool, seen: &mut Vec<String>) {
    let container = text_of(&event["container"]);
    if !seen.contains(&container) {
        seen.push(container.clone());
    }
    let message = text_of(&event["message"]);
    let mut text = String::new();
    for line in message.split_inclusive('\n') {
        if timestamps {
            text.push_str(&format_time(
                event["timestamp"].as_f64().unwrap_or_default(),
            ));
            text.push(' ');
        }
        if several {
            text.push_str(&container);
            text.push_str(" | ");
        }
        text.push_str(line);
    }
    // Ignore a closed pipe (`wasmgate logs ... | head`).
    let _ = if event["stream"] == "stderr" {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())
    };
}

/// `wasmgate stats`: memory and CPU of every running task, redrawn every two seconds like
/// `docker stats` (once with `--no-stream`).
pub async fn stats(target: &Target, no_stream: bool) -> anyhow::Result<u8> {
    let client = target.client()?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let answer = client
            .call(
                "WasmgateV1.GetTaskStats",
                json!({"cluster": target.cluster}),
            )
            .await?;
        let mut rows = vec![[
            "TASK ID".to_string(),
            "TASK DEFINITION".to_string(),
            "STATUS".to_string(),
            "CPU %".to_string(),
            "MEMORY / LIMIT".to_string(),
            "PEAK".to_string(),
        ]];
        for task in answer["tasks"].as_array().into_iter().flatten() {
            let containers = task["containers"].as_array().cloned().unwrap_or_default();
            let sum =
                |field: &str| -> u64 { containers.iter().filter_map(|c| c[field].as_u64()).sum() };
            let cpu: Option<f64> = containers
                .iter()
                .map(|c| c["cpuPercent"].as_f64())
                .sum::<Option<f64>>();
            let limit = task["memoryLimitBytes"]
                .as_u64()
                .map_or("-".to_string(), wasmgate::capacity::wasm::describe_bytes);
            rows.push([
                short_id(&text_of(&task["taskArn"])),
                definition_name(task),
                text_of(&task["lastStatus"]),
                match cpu {
                    Some(cpu) if !containers.is_empty() => format!("{cpu:.1}%"),
                    _ => "-".to_string(),
                },
                format!(
                    "{} / {limit}",
                    wasmgate::capacity::wasm::describe_bytes(sum("memoryBytes"))
                ),
                wasmgate::capacity::wasm::describe_bytes(sum("memoryPeakBytes")),
            ]);
        }
        if terminal && !no_stream {
            // Clear the screen and redraw from the top.
            print!("\x1b[2J\x1b[H");
        }
        print_table(&rows);
        if no_stream {
            return Ok(0);
        }
        println!();
        let _ = std::io::stdout().flush();
        tokio::time::sleep(wasmgate::agent::STATS_EVERY).await;
    }
}

pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The first 12 hex digits of a task id, as `docker ps` shortens container ids.
fn short_id(arn: &str) -> String {
    task_id(arn).chars().take(12).collect()
}

/// `family:revision` from a task's definition ARN.
fn definition_name(task: &Value) -> String {
    short_definition(&text_of(&task["taskDefinitionArn"]))
}

fn stop_summary(task: &Value) -> String {
    if task["lastStatus"] != "STOPPED" {
        return String::new();
    }
    match essential_exit(task) {
        Some(code) => format!("exit {code}: {}", text_of(&task["stoppedReason"])),
        None => text_of(&task["stoppedReason"]),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let tail: String = text
        .chars()
        .rev()
        .take(max - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn now_secs() -> f64 {
    wasmgate::logs::epoch_seconds(std::time::SystemTime::now())
}

/// How long ago `at` was: `3 minutes ago`.
fn ago(now: f64, at: Option<f64>) -> String {
    match at {
        Some(_) => format!("{} ago", since(now, at)),
        None => "-".to_string(),
    }
}

/// A rounded duration since `at`: `42 seconds`, `3 minutes`, `2 hours`.
fn since(now: f64, at: Option<f64>) -> String {
    let Some(at) = at else {
        return "-".to_string();
    };
    let seconds = (now - at).max(0.0) as u64;
    match seconds {
        0..=1 => "1 second".to_string(),
        2..=119 => format!("{seconds} seconds"),
        120..=7199 => format!("{} minutes", seconds / 60),
        _ => format!("{} hours", seconds / 3600),
    }
}

/// Epoch seconds as RFC 3339 UTC with milliseconds.
fn format_time(epoch: f64) -> String {
    let duration = Duration::from_millis((epoch.max(0.0) * 1000.0) as u64);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + duration).to_string()
}

/// Prints rows as columns padded to their widest cell.
pub(crate) fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_follows_the_services_stable_waiter() {
        let service = |status: &str, desired: u32, running: u32, deployments: Value| {
            json!({"status": status, "desiredCount": desired, "runningCount": running,
                   "deployments": deployments})
        };
        let one = json!([{"id": "ecs-svc/1", "rolloutState": "COMPLETED"}]);
        let two = json!([{"id": "ecs-svc/2", "rolloutState": "IN_PROGRESS"},
                         {"id": "ecs-svc/1", "rolloutState": "COMPLETED"}]);
        let failed = json!([{"id": "ecs-svc/2", "rolloutState": "FAILED",
                             "rolloutStateReason": "tasks failed to start."},
                            {"id": "ecs-svc/1", "rolloutState": "COMPLETED"}]);
        let cases = [
            (service("ACTIVE", 2, 2, one.clone()), Stability::Stable),
            (service("ACTIVE", 0, 0, one.clone()), Stability::Stable),
            (service("ACTIVE", 3, 2, one.clone()), Stability::InProgress),
            (service("ACTIVE", 1, 3, one.clone()), Stability::InProgress),
            (service("ACTIVE", 2, 2, two), Stability::InProgress),
            (
                service("ACTIVE", 2, 2, failed),
                Stability::Failed("deployment ecs-svc/2 failed: tasks failed to start.".into()),
            ),
            (
                service("INACTIVE", 0, 0, one),
                Stability::Failed("the service is INACTIVE".into()),
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(stability(&given), expected, "{given}");
        }
    }

    #[test]
    fn definitions_are_shown_as_family_and_revision() {
        assert_eq!(
            short_definition("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"),
            "web:2"
        );
        assert_eq!(short_definition("web:2"), "web:2");
    }
}
