//! `wasmgate deploy` of a template in the shape `cdk synth` writes, against a real server:
//! create, an unchanged deploy (no change at all), a parameter change (one update), a failing
//! deploy rolled back to the previous state, and `stack rm` in reverse order; the ECS side
//! checked through boto3.

mod common;

use common::aws::boto3;
use common::cli::{cli, ok, output_of, text};
use common::server::Server;
use common::{Wasi, guest};
use serde_json::{Value, json};

/// The progress lines (logical id, type, status, ...) of a deploy's output.
fn progress(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.len() >= 3).then(|| (fields[0].to_string(), fields[2].to_string()))
        })
        .collect()
}

/// The progress lines that say how a step ended (not the `*_IN_PROGRESS` ones).
fn endings(stdout: &str) -> Vec<(String, String)> {
    progress(stdout)
        .into_iter()
        .filter(|(_, status)| !status.ends_with("_IN_PROGRESS"))
        .collect()
}

/// A stack as `cdk synth` writes it: CDK metadata, bootstrap parameter and rule, an IAM role
/// and a log group (not applicable here), a cluster, a Wasm task definition and a service.
fn template(image: &str, service_extra: Value) -> Value {
    let mut service = json!({
        "Cluster": {"Ref": "Cluster"},
        "TaskDefinition": {"Ref": "TaskDef"},
        "DesiredCount": {"Ref": "DesiredCount"},
        "DeploymentConfiguration": {
            "MaximumPercent": 200,
            "MinimumHealthyPercent": 50,
            "DeploymentCircuitBreaker": {"Enable": true, "Rollback": true}
        },
        "EnableECSManagedTags": false,
        "LaunchType": "FARGATE",
        "NetworkConfiguration": {"AwsvpcConfiguration": {
            "AssignPublicIp": "DISABLED",
            "SecurityGroups": [{"Fn::GetAtt": ["ServiceSecurityGroup", "GroupId"]}],
            "Subnets": [{"Ref": "VpcPrivateSubnet1"}]
        }}
    });
    for (k, v) in service_extra.as_object().unwrap() {
        service[k] = v.clone();
    }
    json!({
        "Parameters": {
            "DesiredCount": {"Type": "Number", "Default": "1"},
            "Env": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]},
            "BootstrapVersion": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/cdk-bootstrap/hnb659fds/version"
            }
        },
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "CDKMetadataAvailable": {"Fn::Or": [
                {"Fn::Or": [
                    {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]},
                    {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
                ]},
                {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-west-2"]}
            ]}
        },
        "Resources": {
            "ClusterEB0386A7": {
                "Type": "AWS::CDK::Metadata",
                "Properties": {"Analytics": "v2:deflate64:H4sI"},
                "Condition": "CDKMetadataAvailable"
            },
            "Vpc8378EB38": {
                "Type": "AWS::EC2::VPC",
                "Properties": {"CidrBlock": "10.0.0.0/16", "EnableDnsHostnames": true}
            },
            "VpcPrivateSubnet1": {
                "Type": "AWS::EC2::Subnet",
                "Properties": {"VpcId": {"Ref": "Vpc8378EB38"}, "CidrBlock": "10.0.0.0/18",
                               "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]}}
            },
            "ServiceSecurityGroup": {
                "Type": "AWS::EC2::SecurityGroup",
                "Properties": {"GroupDescription": "Web/Service/SecurityGroup",
                               "VpcId": {"Ref": "Vpc8378EB38"},
                               "SecurityGroupEgress": [{"CidrIp": "0.0.0.0/0", "IpProtocol": "-1"}]}
            },
            "Cluster": {
                "Type": "AWS::ECS::Cluster",
                "Properties": {"ClusterSettings": [{"Name": "containerInsights", "Value": "disabled"}]},
                "Metadata": {"aws:cdk:path": "Web/Cluster/Resource"}
            },
            "TaskRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}}], "Version": "2012-10-17"}}
            },
            "LogGroup": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"RetentionInDays": 30},
                "UpdateReplacePolicy": "Retain",
                "DeletionPolicy": "Retain"
            },
            "TaskDef": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "ContainerDefinitions": [{
                        "Essential": true,
                        "Image": image,
                        "Memory": 32,
                        "Name": "app",
                        "Environment": [{"Name": "STAGE", "Value": {"Fn::If": ["IsProd", "production", "development"]}}],
                        "DockerLabels": {"team": "web"}
                    }],
                    "Family": {"Fn::Sub": "${AWS::StackName}-app"},
                    "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
                    "RequiresCompatibilities": ["FARGATE"],
                    "NetworkMode": "awsvpc",
                    "Cpu": "256",
                    "Memory": "512"
                }
            },
            "Service": {
                "Type": "AWS::ECS::Service",
                "Properties": service,
                "DependsOn": ["TaskRole"]
            },
            "ProdAlarmLog": {
                "Type": "AWS::Logs::LogGroup",
                "Condition": "IsProd",
                "Properties": {}
            }
        },
        "Outputs": {
            "ClusterName": {"Value": {"Ref": "Cluster"}},
            "ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}},
            "Stage": {"Value": {"Fn::If": ["IsProd", "prod", "dev"]}}
        },
        "Rules": {
            "CheckBootstrapVersion": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [["1", "2"], {"Ref": "BootstrapVersion"}]}]}}]}
        }
    })
}

fn write(dir: &std::path::Path, name: &str, document: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(document).unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn a_cdk_stack_deploys_updates_rolls_back_and_is_removed_in_reverse_order() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // Tasks that cannot start are retried quickly, so the circuit breaker trips soon.
    let server = Server::start_with(data.path(), &["--service-restart-delay", "0.2"]);
    let image = guest(Wasi::P1, "graceful").display().to_string();
    let good = write(
        files.path(),
        "Web.template.json",
        &template(&image, json!({})),
    );

    // Create.
    let first = ok(&server, &["deploy", &good, "--stack", "web"]);
    let steps = progress(&first);
    for (id, status) in [
        ("Cluster", "CREATE_COMPLETE"),
        ("TaskDef", "CREATE_COMPLETE"),
        ("Service", "CREATE_COMPLETE"),
        ("TaskRole", "NOT_APPLICABLE"),
        ("LogGroup", "NOT_APPLICABLE"),
        ("ClusterEB0386A7", "NOT_APPLICABLE"),
        ("Vpc8378EB38", "NOT_APPLICABLE"),
        ("VpcPrivateSubnet1", "NOT_APPLICABLE"),
        ("ServiceSecurityGroup", "NOT_APPLICABLE"),
    ] {
        assert!(
            steps.contains(&(id.into(), status.into())),
            "{id} {status}:\n{first}"
        );
    }
    // The steps were printed as they happened: the service's creation began before it ended
    // (it waits for the service to be stable, long enough for the quarter-second follow).
    let began = steps
        .iter()
        .position(|s| *s == ("Service".to_string(), "CREATE_IN_PROGRESS".to_string()));
    let ended = steps
        .iter()
        .position(|s| *s == ("Service".to_string(), "CREATE_COMPLETE".to_string()));
    assert!(began.is_some() && began < ended, "{first}");
    assert!(
        !first.contains("ProdAlarmLog"),
        "the IsProd resource is out:\n{first}"
    );
    assert!(first.contains("not applicable here"), "{first}");
    assert!(first.contains("stack web: CREATE_COMPLETE"), "{first}");
    let cluster = output_of(&first, "ClusterName");
    let service = output_of(&first, "ServiceName");
    assert!(cluster.starts_with("web-Cluster-"), "{cluster}");
    assert_eq!(output_of(&first, "Stage"), "dev");
    let ecs = boto3(
        &server.endpoint,
        &format!(
            r#"
c = ecs.describe_clusters(clusters=['{cluster}'])['clusters'][0]
print('cluster', c['status'])
try:
    ecs.get_waiter('services_stable').wait(cluster='{cluster}', services=['{service}'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
except Exception as e:
    print([x['message'] for x in ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]['events']])
    raise
s = ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]
print('service', s['desiredCount'], s['runningCount'], s['taskDefinition'].split('/')[-1])
net = s['networkConfiguration']['awsvpcConfiguration']
print('network', s['launchType'], net['subnets'][0].startswith('web-VpcPrivateSubnet1-'), net['securityGroups'][0].startswith('web-ServiceSecurityGroup-'))
td = ecs.describe_task_definition(taskDefinition=s['taskDefinition'])['taskDefinition']
print('labels', td['containerDefinitions'][0]['dockerLabels'])
"#
        ),
    );
    assert!(ecs.contains("cluster ACTIVE"), "{ecs}");
    assert!(ecs.contains("service 1 1 web-app:1"), "{ecs}");
    assert!(ecs.contains("labels {'team': 'web'}"), "{ecs}");
    assert!(ecs.contains("network FARGATE True True"), "{ecs}");

    // The same template again: no change at all.
    let again = ok(&server, &["deploy", &good, "--stack", "web"]);
    assert!(again.contains("stack web: no changes"), "{again}");
    assert!(progress(&again).is_empty(), "{again}");
    assert_eq!(again.matches("NO_CHANGE").count(), 9, "{again}");

    // A new desired count: exactly one update.
    let dry = ok(
        &server,
        &[
            "deploy",
            &good,
            "--stack",
            "web",
            "--parameter",
            "DesiredCount=2",
            "--dry-run",
        ],
    );
    let updates: Vec<&str> = dry.lines().filter(|l| l.contains("UPDATE")).collect();
    assert_eq!(updates.len(), 1, "{dry}");
    assert!(updates[0].starts_with("Service"), "{dry}");
    let scaled = ok(
        &server,
        &[
            "deploy",
            &good,
            "--stack",
            "web",
            "--parameter",
            "DesiredCount=2",
        ],
    );
    assert_eq!(
        endings(&scaled),
        [("Service".to_string(), "UPDATE_COMPLETE".to_string())],
        "{scaled}"
    );
    let count = boto3(
        &server.endpoint,
        &format!(
            "print(ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]['desiredCount'])"
        ),
    );
    assert_eq!(count.trim(), "2");

    // A missing image: the new revision's tasks cannot start, the service's circuit breaker
    // fails its deployment, and the deploy rolls back (the service back on revision 1, the
    // new revision deregistered).
    let missing = write(
        files.path(),
        "Missing.template.json",
        &template("/nonexistent/app.wasm", json!({})),
    );
    let failed = cli(
        &server,
        &[
            "deploy",
            &missing,
            "--stack",
            "web",
            "--parameter",
            "DesiredCount=2",
        ],
    );
    let (stdout, stderr) = text(&failed);
    assert!(!failed.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "Resources.Service (AWS::ECS::Service): waiting for the service to become stable"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("stack web: UPDATE_ROLLBACK_COMPLETE"),
        "{stdout}"
    );

    // An invalid member of the service: UpdateService refuses it, nothing else changed.
    let bad = write(
        files.path(),
        "Bad.template.json",
        &template(&image, json!({"PropagateTags": "NOWHERE"})),
    );
    let failed = cli(
        &server,
        &[
            "deploy",
            &bad,
            "--stack",
            "web",
            "--parameter",
            "DesiredCount=2",
        ],
    );
    let (stdout, stderr) = text(&failed);
    assert!(!failed.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Resources.Service (AWS::ECS::Service): UpdateService"),
        "{stderr}"
    );
    assert!(
        stdout.contains("stack web: UPDATE_ROLLBACK_COMPLETE"),
        "{stdout}"
    );
    let after = boto3(
        &server.endpoint,
        &format!(
            r#"
s = ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]
print('service', s['desiredCount'], s['taskDefinition'].split('/')[-1])
ecs.get_waiter('services_stable').wait(cluster='{cluster}', services=['{service}'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
s = ecs.describe_services(cluster='{cluster}', services=['{service}'])['services'][0]
print('stable', s['runningCount'], s['taskDefinition'].split('/')[-1])
print('rev2', ecs.describe_task_definition(taskDefinition='web-app:2')['taskDefinition']['status'])
print('revisions', len(ecs.list_task_definitions(familyPrefix='web-app')['taskDefinitionArns']))
"#
        ),
    );
    assert!(after.contains("service 2 web-app:1"), "{after}");
    assert!(after.contains("stable 2 web-app:1"), "{after}");
    assert!(after.contains("rev2 INACTIVE"), "{after}");
    assert!(after.contains("revisions 1"), "{after}");
    let described: Value =
        serde_json::from_str(&ok(&server, &["stack", "describe", "web"])).unwrap();
    assert_eq!(described["status"], "UPDATE_ROLLBACK_COMPLETE");
    assert_eq!(described["parameters"]["DesiredCount"], "2");
    assert!(ok(&server, &["stack", "ls"]).contains("UPDATE_ROLLBACK_COMPLETE"));

    // Removal in reverse creation order.
    let removed = ok(&server, &["stack", "rm", "web"]);
    let order: Vec<String> = endings(&removed).into_iter().map(|(id, _)| id).collect();
    let at = |id: &str| {
        order
            .iter()
            .position(|o| o == id)
            .unwrap_or_else(|| panic!("{id}: {removed}"))
    };
    assert!(
        at("Service") < at("TaskDef")
            && at("TaskDef") < at("TaskRole")
            && at("Service") < at("Cluster"),
        "{removed}"
    );
    assert!(removed.contains("stack web: DELETE_COMPLETE"), "{removed}");
    let gone = boto3(
        &server.endpoint,
        &format!(
            r#"
print('cluster', ecs.describe_clusters(clusters=['{cluster}'])['clusters'][0]['status'])
print('rev1', ecs.describe_task_definition(taskDefinition='web-app:1')['taskDefinition']['status'])
"#
        ),
    );
    assert!(gone.contains("cluster INACTIVE"), "{gone}");
    assert!(gone.contains("rev1 INACTIVE"), "{gone}");
    assert!(!ok(&server, &["stack", "ls"]).contains("web"));
}

#[test]
fn the_example_stack_serves_http_through_the_gateway_until_it_is_removed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    guest(Wasi::P2, "http_hello");
    // The template's image path is relative to the template, as a person writes it.
    let example = common::repo_root().join("examples/stacks/web.template.json");
    let example = example.to_str().unwrap();
    let deployed = ok(&server, &["deploy", example, "--stack", "web"]);
    assert!(
        deployed.contains("stack web: CREATE_COMPLETE"),
        "{deployed}"
    );
    // The deploy waited for the service to be stable; the gateway takes the route from the
    // store a moment later.
    let reply = common::http::get_when_served(&server.gateway, "localhost", "/hello");
    assert_eq!(reply.text(), "Hello from wasmgate! You asked for /hello\n");
    let removed = ok(&server, &["stack", "rm", "web"]);
    assert!(removed.contains("stack web: DELETE_COMPLETE"), "{removed}");
    let listed = ok(&server, &["stack", "ls"]);
    assert_eq!(listed.lines().count(), 1, "only the header: {listed}");
}

#[test]
fn exports_are_imported_across_stacks_and_retained_resources_stay() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let network = write(
        files.path(),
        "Net.template.json",
        &json!({
            "Resources": {"Cluster": {
                "Type": "AWS::ECS::Cluster",
                "DeletionPolicy": "Retain",
                "Properties": {"ClusterName": "shared"}
            }},
            "Outputs": {"ClusterName": {
                "Value": {"Ref": "Cluster"},
                "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-cluster"}}
            }}
        }),
    );
    let app = write(
        files.path(),
        "App.template.json",
        &json!({"Resources": {"Cluster": {
            "Type": "AWS::ECS::Cluster",
            "Properties": {"ClusterName": {"Fn::Join": ["-", [{"Fn::ImportValue": "net-cluster"}, "app"]]}}
        }}}),
    );
    ok(&server, &["deploy", &network, "--stack", "net"]);
    let deployed = ok(&server, &["deploy", &app, "--stack", "app"]);
    assert!(deployed.contains("shared-app"), "{deployed}");

    // While app imports it, net cannot go.
    let refused = cli(&server, &["stack", "rm", "net"]);
    let (stdout, stderr) = text(&refused);
    assert!(!refused.status.success(), "{stdout}");
    assert!(
        stderr.contains("Export net-cluster cannot be deleted: stack app imports it"),
        "{stderr}"
    );
    ok(&server, &["stack", "rm", "app"]);
    let removed = ok(&server, &["stack", "rm", "net"]);
    assert!(removed.contains("DELETE_SKIPPED"), "{removed}");
    let clusters = boto3(
        &server.endpoint,
        "print(sorted((c['clusterName'], c['status']) for c in ecs.describe_clusters(clusters=['shared', 'shared-app'])['clusters']))",
    );
    assert!(
        clusters.contains("('shared', 'ACTIVE'), ('shared-app', 'INACTIVE')"),
        "the retained cluster stays: {clusters}"
    );
}
