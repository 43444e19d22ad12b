//! The CLI verbs for stacks (declarative provisioning): `deploy TEMPLATE.json --stack NAME`
//! and `stack ls|describe|rm`, over wasmgate's own `WasmgateV1.*Stack` actions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::client_commands::{Target, print_table, text_of};

/// What `wasmgate deploy` was asked.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The template (JSON, as `cdk synth` writes it to cdk.out/STACK.template.json).
    template: PathBuf,
    /// The stack's name.
    #[arg(long, value_name = "NAME")]
    stack: String,
    /// A parameter's value (repeatable); others take their Default.
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    parameters: Vec<String>,
    /// Print the change set only.
    #[arg(long)]
    dry_run: bool,
}

/// What `wasmgate stack` does.
#[derive(clap::Subcommand)]
pub enum StackAction {
    /// One line per stack: name, status, resources.
    Ls,
    /// The stack's record as JSON: resources, outputs, events.
    Describe { name: String },
    /// Delete the stack's resources in reverse creation order, then the stack.
    Rm { name: String },
}

fn parameters(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("--parameter {pair}: expected KEY=VALUE"),
        })
        .collect()
}

fn print_changes(changes: &[Value]) {
    let mut rows = vec![[
        "LOGICAL ID".to_string(),
        "TYPE".to_string(),
        "ACTION".to_string(),
        "NOTE".to_string(),
    ]];
    for change in changes {
        let mut action = text_of(&change["action"]);
        if change["notApplicable"] == json!(true) {
            action.push_str(" (not applicable here)");
        }
        rows.push([
            text_of(&change["logicalId"]),
            text_of(&change["resourceType"]),
            action,
            change["note"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    print_table(&rows);
}

/// A stack event as a progress line: logical id, type, status, physical id, reason.
pub(crate) fn event_line(event: &Value) -> String {
    let mut line = format!(
        "{}\t{}\t{}",
        text_of(&event["logicalId"]),
        text_of(&event["resourceType"]),
        text_of(&event["status"])
    );
    for member in ["physicalId", "reason"] {
        if let Some(text) = event[member].as_str() {
            line.push('\t');
            line.push_str(text);
        }
    }
    line
}

/// Makes the relative file images of a template's task definitions absolute against its
/// directory, as `register` does, so the stack runs the same wherever the server resolves it.
fn absolutize_images(template: &mut Value, dir: &Path) {
    let Some(resources) = template.get_mut("Resources").and_then(Value::as_object_mut) else {
        return;
    };
    for resource in resources.values_mut() {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::ECS::TaskDefinition") {
            continue;
        }
        let Some(containers) = resource
            .get_mut("Properties")
            .and_then(|p| p.get_mut("ContainerDefinitions"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for container in containers {
            let Some(image) = container.get("Image").and_then(Value::as_str) else {
                continue;
            };
            let mut document = json!({"containerDefinitions": [{"image": image}]});
            wasmgate::image::reference::absolutize_file_images(&mut document, dir);
            container["Image"] = document["containerDefinitions"][0]["image"].clone();
        }
    }
}

/// Waits for `call` (a deploy or delete of `stack`) while printing the steps the server
/// reports for it as they happen (DescribeStack's `progress`, every quarter second).
/// Returns the call's answer and how many of its `events` (the steps' endings, in order)
/// were printed already.
async fn follow<F>(client: &wasmgate::client::Client, stack: &str, call: F) -> (F::Output, usize)
where
    F: std::future::Future,
{
    let mut call = std::pin::pin!(call);
    let (mut seen, mut endings) = (0, 0);
    loop {
        tokio::select! {
            answer = &mut call => return (answer, endings),
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {
                let Ok(now) = client
                    .call("WasmgateV1.DescribeStack", json!({"stackName": stack}))
                    .await
                else {
                    continue;
                };
                let progress = now["progress"].as_array().map_or(&[][..], Vec::as_slice);
                for event in progress.iter().skip(seen) {
                    println!("{}", event_line(event));
                    if !text_of(&event["status"]).ends_with("_IN_PROGRESS") {
                        endings += 1;
                    }
                }
                seen = seen.max(progress.len());
            }
        }
    }
}

/// `wasmgate deploy TEMPLATE --stack NAME [--parameter K=V]... [--dry-run]`.
pub async fn deploy(target: &Target, args: DeployArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let mut template: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", args.template.display()))?;
    let dir = std::path::absolute(args.template.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot resolve {}", args.template.display()))?;
    absolutize_images(&mut template, &dir);
    let mut body = json!({
        "stackName": args.stack,
        "template": template,
        "parameters": parameters(&args.parameters)?,
        "dryRun": true,
    });
    // The change set first, as CloudFormation shows one before it executes it.
    let planned = client
        .call("WasmgateV1.DeployStack", body.clone())
        .await
        .with_context(|| format!("stack {}: not deployed", args.stack))?;
    let changes = planned["changes"].as_array().cloned().unwrap_or_default();
    print_changes(&changes);
    if args.dry_run {
        return Ok(0);
    }
    body["dryRun"] = json!(false);
    let (answer, shown) = follow(
        &client,
        &args.stack,
        client.call("WasmgateV1.DeployStack", body),
    )
    .await;
    let answer = answer.with_context(|| format!("stack {}: not deployed", args.stack))?;
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() && answer["failure"].is_null() {
        println!("stack {}: no changes", args.stack);
    }
    for event in events.iter().skip(shown) {
        println!("{}", event_line(event));
    }
    let stack = &answer["stack"];
    for (name, value) in stack["outputs"].as_object().into_iter().flatten() {
        println!("output {name} = {}", text_of(value));
    }
    println!("stack {}: {}", args.stack, text_of(&stack["status"]));
    if let Some(failure) = answer["failure"].as_str() {
        eprintln!("stack {}: failed and rolled back: {failure}", args.stack);
        return Ok(1);
    }
    Ok(0)
}

/// `wasmgate stack ls|describe NAME|rm NAME`.
pub async fn stack(target: &Target, action: StackAction) -> anyhow::Result<u8> {
    let client = target.client()?;
    match action {
        StackAction::Ls => {
            let answer = client.call("WasmgateV1.ListStacks", json!({})).await?;
            let mut rows = vec![[
                "STACK".to_string(),
                "STATUS".to_string(),
                "RESOURCES".to_string(),
            ]];
            for stack in answer["stacks"].as_array().into_iter().flatten() {
                rows.push([
                    text_of(&stack["stackName"]),
                    text_of(&stack["status"]),
                    text_of(&stack["resources"]),
                ]);
            }
            print_table(&rows);
            Ok(0)
        }
        StackAction::Describe { name } => {
            let answer = client
                .call("WasmgateV1.DescribeStack", json!({"stackName": name}))
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer["stack"])?);
            Ok(0)
        }
        StackAction::Rm { name } => {
            let (answer, shown) = follow(
                &client,
                &name,
                client.call("WasmgateV1.DeleteStack", json!({"stackName": name})),
            )
            .await;
            let answer = answer.with_context(|| format!("stack {name}: not deleted"))?;
            for event in answer["events"]
                .as_array()
                .into_iter()
                .flatten()
                .skip(shown)
            {
                println!("{}", event_line(event));
            }
            let status = text_of(&answer["status"]);
            println!("stack {name}: {status}");
            Ok(if status == "DELETE_COMPLETE" { 0 } else { 1 })
        }
    }
}
