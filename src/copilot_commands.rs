//! The CLI verbs for Copilot manifests: `apply -f MANIFEST`, `diff -f MANIFEST` and
//! `delete -f MANIFEST`. Each reads the manifest (`wasmgate::copilot`), makes its template and
//! deploys it, dry-runs it or deletes it as the stack `copilot-NAME` through
//! `WasmgateV1.DeployStack` / `DeleteStack`; `apply` first creates the cluster if it is
//! missing, as Copilot's environment would have.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmgate::client::Client;
use wasmgate::copilot::{self, Manifest, Placement};

use crate::client_commands::{Target, text_of};
use crate::stack_commands::event_line;

/// What `apply`, `diff` and `delete` are given.
#[derive(clap::Args)]
pub struct ManifestArgs {
    /// The Copilot manifest (manifest.yml).
    #[arg(short = 'f', long = "file", value_name = "MANIFEST")]
    file: PathBuf,
    /// The environment whose `environments:` overrides apply.
    #[arg(long = "env", value_name = "NAME")]
    environment: Option<String>,
}

/// A manifest read and turned into its stack's template.
struct Prepared {
    manifest: Manifest,
    stack: String,
    template: Value,
}

fn prepare(args: &ManifestArgs, cluster: &str) -> anyhow::Result<Prepared> {
    let file = args.file.display();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {file}"))?;
    let manifest =
        copilot::parse(&text, args.environment.as_deref()).with_context(|| file.to_string())?;
    for note in &manifest.notes {
        eprintln!("{file}: note: {note}");
    }
    // A relative file image is relative to the manifest, as in a task definition file.
    let dir = std::path::absolute(args.file.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot resolve {file}"))?;
    let mut document = json!({"containerDefinitions": [{"image": manifest.image}]});
    wasmgate::image::reference::absolutize_file_images(&mut document, &dir);
    // `..` resolved there, so the same manifest reached by another path is the same template
    // (and applying it again changes nothing).
    let image = text_of(&document["containerDefinitions"][0]["image"]);
    let placement = Placement {
        cluster: cluster.to_string(),
    };
    Ok(Prepared {
        stack: copilot::stack_name(&manifest, &placement),
        template: copilot::template(&manifest, &placement, &image),
        manifest,
    })
}

/// Whether `cluster` exists and is ACTIVE.
async fn cluster_active(client: &Client, cluster: &str) -> anyhow::Result<bool> {
    let answer = client
        .call("DescribeClusters", json!({"clusters": [cluster]}))
        .await?;
    Ok(answer["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["status"] == "ACTIVE"))
}

/// `wasmgate apply -f MANIFEST [--env NAME] [--cluster NAME]`.
pub async fn apply(target: &Target, args: ManifestArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let prepared = prepare(&args, &target.cluster)?;
    if !cluster_active(&client, &target.cluster).await? {
        client
            .call("CreateCluster", json!({"clusterName": target.cluster}))
            .await
            .with_context(|| format!("cluster {}: not created", target.cluster))?;
        println!("cluster {}: created", target.cluster);
    }
    let answer = client
        .call(
            "WasmgateV1.DeployStack",
            json!({"stackName": prepared.stack, "template": prepared.template}),
        )
        .await
        .with_context(|| format!("{}: not applied", args.file.display()))?;
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() && answer["failure"].is_null() {
        println!("stack {}: no changes", prepared.stack);
    }
    for event in &events {
        println!("{}", event_line(event));
    }
    let stack = &answer["stack"];
    for (name, value) in stack["outputs"].as_object().into_iter().flatten() {
        println!("output {name} = {}", text_of(value));
    }
    println!(
        "{} {}: stack {}: {}",
        prepared.manifest.workload_type.as_str(),
        prepared.manifest.name,
        prepared.stack,
        text_of(&stack["status"])
    );
    if let Some(failure) = answer["failure"].as_str() {
        eprintln!(
            "stack {}: failed and rolled back: {failure}",
            prepared.stack
        );
        return Ok(1);
    }
    Ok(0)
}

/// A property's value as a diff line shows it.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// `wasmgate diff -f MANIFEST [--env NAME] [--cluster NAME]`: the change set of applying it
/// now, per resource and per property (old → new). Changes nothing.
pub async fn diff(target: &Target, args: ManifestArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let prepared = prepare(&args, &target.cluster)?;
    if !cluster_active(&client, &target.cluster).await? {
        println!("+ cluster {} (created by apply)", target.cluster);
    }
    let answer = client
        .call(
            "WasmgateV1.DeployStack",
            json!({"stackName": prepared.stack, "template": prepared.template, "dryRun": true}),
        )
        .await
        .with_context(|| format!("{}: cannot be diffed", args.file.display()))?;
    let changes = answer["changes"].as_array().cloned().unwrap_or_default();
    let mut any = false;
    for change in &changes {
        let (sign, verb) = match change["action"].as_str().unwrap_or_default() {
            "CREATE" => ("+", "create"),
            "UPDATE" => ("~", "update in place"),
            "REPLACE" => ("~", "replace (a new one, the old one deleted)"),
            "DELETE" => ("-", "delete"),
            _ => continue,
        };
        any = true;
        println!(
            "{sign} {} ({}): {verb}",
            text_of(&change["logicalId"]),
            text_of(&change["resourceType"])
        );
        if let Some(note) = change["note"].as_str() {
            println!("    ({note})");
        }
        for property in change["properties"].as_array().into_iter().flatten() {
            let path = text_of(&property["path"]);
            let (old, new) = (&property["old"], &property["new"]);
            if sign == "+" {
                println!("    {path}: {}", shown(new));
            } else {
                println!("    {path}: {} → {}", shown(old), shown(new));
            }
        }
    }
    if !any {
        println!("stack {}: no changes", prepared.stack);
    }
    Ok(0)
}

/// `wasmgate delete -f MANIFEST [--cluster NAME]`: deletes the manifest's stack (its service
/// or schedule, then its task definition). The cluster stays, as Copilot's environment does.
pub async fn delete(target: &Target, args: ManifestArgs) -> anyhow::Result<u8> {
    let client = target.client()?;
    let prepared = prepare(&args, &target.cluster)?;
    let stacks = client.call("WasmgateV1.ListStacks", json!({})).await?;
    let applied = stacks["stacks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["stackName"] == prepared.stack.as_str());
    if !applied {
        bail!(
            "{}: not applied (there is no stack {} in cluster {})",
            args.file.display(),
            prepared.stack,
            target.cluster
        );
    }
    let answer = client
        .call(
            "WasmgateV1.DeleteStack",
            json!({"stackName": prepared.stack}),
        )
        .await
        .with_context(|| format!("stack {}: not deleted", prepared.stack))?;
    for event in answer["events"].as_array().into_iter().flatten() {
        println!("{}", event_line(event));
    }
    let status = text_of(&answer["status"]);
    println!("stack {}: {status}", prepared.stack);
    Ok(if status == "DELETE_COMPLETE" { 0 } else { 1 })
}
