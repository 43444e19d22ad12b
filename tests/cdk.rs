//! The CDK example (`examples/cdk/`, TypeScript, `aws-cdk-lib` and the `aws-cdk` CLI from npm)
//! synthesized offline by the real CDK CLI and deployed by `wasmgate deploy`: it serves HTTP
//! through the gateway on the route its load balancer's listener rule names; a change of the
//! desired count in the code is one update of the service and nothing else; `stack rm`
//! removes it. The first run installs the npm packages from the lockfile (`npm ci`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::aws::boto3;
use common::cli::{ok, output_of};
use common::server::Server;
use common::{Wasi, guest, repo_root};

/// The example's directory, with its npm packages installed from the lockfile.
fn example() -> PathBuf {
    let dir = repo_root().join("examples/cdk");
    if !dir.join("node_modules/.bin/cdk").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (node and npm are needed for the CDK example)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

/// A copy of the example's sources in `into` (its `node_modules` linked, not copied), so the
/// test can change the code as a person would.
fn copy_app(from: &Path, into: &Path) {
    for file in ["cdk.json", "package.json", "tsconfig.json"] {
        std::fs::copy(from.join(file), into.join(file)).unwrap();
    }
    for dir in ["bin", "lib"] {
        std::fs::create_dir(into.join(dir)).unwrap();
        for entry in std::fs::read_dir(from.join(dir)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), into.join(dir).join(entry.file_name())).unwrap();
        }
    }
    std::os::unix::fs::symlink(from.join("node_modules"), into.join("node_modules")).unwrap();
}

/// `cdk synth` of the app in `dir` with the Wasm image `image`; the template's path.
fn synth(dir: &Path, image: &str) -> String {
    let output = Command::new("npx")
        .args(["cdk", "synth", "--no-notices", "-q", "-c"])
        .arg(format!("image={image}"))
        .current_dir(dir)
        // Offline: no telemetry, no version check, no notices.
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .output()
        .expect("npx runs");
    assert!(
        output.status.success(),
        "cdk synth failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let template = dir.join("cdk.out/WasmgateWeb.template.json");
    assert!(template.exists(), "cdk synth wrote no template");
    template.display().to_string()
}

/// The rows of a change set (logical id, action) that change something.
fn changes(dry_run: &str) -> Vec<(String, String)> {
    dry_run
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 3 && fields[2] != "NO_CHANGE")
                .then(|| (fields[0].to_string(), fields[2].to_string()))
        })
        .collect()
}

#[test]
fn the_cdk_example_synthesizes_deploys_scales_in_code_and_is_destroyed() {
    let example = example();
    let app = tempfile::tempdir().unwrap();
    copy_app(&example, app.path());
    let image = guest(Wasi::P2, "http_hello").display().to_string();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());

    // Deploy: the VPC, load balancer and roles are records; the listener rule is the route.
    let template = synth(app.path(), &image);
    let deployed = ok(&server, &["deploy", &template, "--stack", "web"]);
    assert!(
        deployed.contains("stack web: CREATE_COMPLETE"),
        "{deployed}"
    );
    assert!(
        deployed.contains("routes path /hello to service"),
        "the listener rule's route is reported:\n{deployed}"
    );
    let cluster = output_of(&deployed, "ClusterName");
    let service = output_of(&deployed, "ServiceName");
    let reply = common::http::get_when_served(&server.gateway, "localhost", "/hello");
    assert_eq!(reply.text(), "Hello from wasmgate! You asked for /hello\n");
    // The rule routes /hello*, so nothing else reaches the service.
    assert_eq!(
        common::http::get(&server.gateway, "localhost", "/other").status,
        404
    );

    // The same code again: nothing to do.
    let template = synth(app.path(), &image);
    let again = ok(&server, &["deploy", &template, "--stack", "web"]);
    assert!(again.contains("stack web: no changes"), "{again}");

    // The desired count changed in the code: one update of the service, nothing else.
    let code = app.path().join("lib/web-stack.ts");
    let source = std::fs::read_to_string(&code).unwrap();
    assert!(source.contains("desiredCount: 1,"), "the example sets it");
    std::fs::write(
        &code,
        source.replace("desiredCount: 1,", "desiredCount: 2,"),
    )
    .unwrap();
    let template = synth(app.path(), &image);
    let planned = ok(
        &server,
        &["deploy", &template, "--stack", "web", "--dry-run"],
    );
    let service_id = changes(&planned);
    assert_eq!(service_id.len(), 1, "one change:\n{planned}");
    assert!(service_id[0].0.starts_with("Service"), "{planned}");
    assert_eq!(service_id[0].1, "UPDATE", "{planned}");
    let updated = ok(&server, &["deploy", &template, "--stack", "web"]);
    assert!(updated.contains("stack web: UPDATE_COMPLETE"), "{updated}");
    let ecs = boto3(
        &server.endpoint,
        &format!(
            r#"
s = ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]
print('service', s['desiredCount'], s['runningCount'], len(s['deployments']))
families = ecs.list_task_definitions()['taskDefinitionArns']
print('revisions', len(families))
"#
        ),
    );
    assert!(ecs.contains("service 2 2 1"), "{ecs}");
    assert!(ecs.contains("revisions 1"), "no new revision: {ecs}");

    // Destroy.
    let removed = ok(&server, &["stack", "rm", "web"]);
    assert!(removed.contains("stack web: DELETE_COMPLETE"), "{removed}");
    let gone = boto3(
        &server.endpoint,
        &format!(
            "print('cluster', ecs.describe_clusters(clusters=['{cluster}'])['clusters'][0]['status'])"
        ),
    );
    assert!(gone.contains("cluster INACTIVE"), "{gone}");
}
