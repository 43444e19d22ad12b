//! A checked [`Manifest`] as the CloudFormation template the stack engine deploys, the way
//! Copilot deploys each manifest as a stack: an `AWS::ECS::TaskDefinition` (family = the
//! manifest's name, one container named after it), and for a service an `AWS::ECS::Service`
//! in the cluster given, for a Scheduled Job an `AWS::Scheduler::Schedule` that runs the task
//! definition in that cluster. Pure, and deterministic: the same manifest gives the same
//! template, so applying it again changes nothing.

use serde_json::{Value, json};

use super::manifest::{Kind, Manifest};
use crate::taskdef::TASK_TIMEOUT_LABEL;
use crate::taskdef::http::PREFIX as HTTP_LABELS;

/// Where a manifest is applied.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The cluster its service runs in, or its job's tasks are started in.
    pub cluster: String,
}

/// The stack a manifest is deployed as: `copilot-NAME`, and `copilot-CLUSTER-NAME` outside
/// the default cluster, so one manifest can be applied to several clusters.
pub fn stack_name(manifest: &Manifest, placement: &Placement) -> String {
    if placement.cluster == "default" {
        return format!("copilot-{}", manifest.name);
    }
    let cluster: String = placement
        .cluster
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("copilot-{cluster}-{}", manifest.name)
}

/// The template of `manifest`. `image` is its `image.location` as the server should resolve
/// it (a relative file made absolute by the caller).
pub fn template(manifest: &Manifest, placement: &Placement, image: &str) -> Value {
    let mut environment = vec![json!({"Name": "COPILOT_SERVICE_NAME", "Value": manifest.name})];
    if let Some(name) = &manifest.environment {
        environment.push(json!({"Name": "COPILOT_ENVIRONMENT_NAME", "Value": name}));
    }
    for (name, value) in manifest.variables.iter().chain(&manifest.secrets) {
        environment.push(json!({"Name": name, "Value": value}));
    }
    let mut container = json!({
        "Name": manifest.name,
        "Image": image,
        "Essential": true,
        "Environment": environment,
    });
    if let Some(command) = &manifest.command {
        container["Command"] = json!(command);
    }
    if let Some(entrypoint) = &manifest.entrypoint {
        container["EntryPoint"] = json!(entrypoint);
    }
    if let Some(port) = manifest.port {
        container["PortMappings"] = json!([{"ContainerPort": port, "Protocol": "tcp"}]);
    }
    if let Some(check) = &manifest.health_check {
        container["HealthCheck"] = json!({
            "Command": check.command,
            "Interval": check.interval,
            "Timeout": check.timeout,
            "Retries": check.retries,
            "StartPeriod": check.start_period,
        });
    }
    match &manifest.kind {
        Kind::Service {
            http: Some(route), ..
        } => {
            container["DockerLabels"] = json!({format!("{HTTP_LABELS}path"): route.path});
        }
        Kind::Job {
            timeout: Some(timeout),
            ..
        } => {
            container["DockerLabels"] = json!({TASK_TIMEOUT_LABEL: timeout.as_secs().to_string()});
        }
        _ => {}
    }
    let mut task_definition = json!({
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": manifest.name,
            "Cpu": manifest.cpu.to_string(),
            "Memory": manifest.memory.to_string(),
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "ContainerDefinitions": [container],
        },
    });
    if let Some((os, arch)) = &manifest.platform {
        task_definition["Properties"]["RuntimePlatform"] =
            json!({"OperatingSystemFamily": os, "CpuArchitecture": arch});
    }
    let description = format!(
        "Copilot manifest {} ({}), applied by wasmgate apply",
        manifest.name,
        manifest.workload_type.as_str()
    );
    match &manifest.kind {
        Kind::Service {
            count,
            rolling,
            exec,
            http,
        } => {
            let (minimum, maximum) = rolling.percents();
            let mut service = json!({
                "ServiceName": manifest.name,
                "Cluster": placement.cluster,
                "TaskDefinition": {"Ref": "TaskDefinition"},
                "DesiredCount": count,
                "LaunchType": "FARGATE",
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": minimum,
                    "MaximumPercent": maximum,
                    "DeploymentCircuitBreaker": {"Enable": true, "Rollback": true},
                },
            });
            if *exec {
                service["EnableExecuteCommand"] = json!(true);
            }
            let mut outputs = json!({
                "ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}},
                "ClusterName": {"Value": placement.cluster},
            });
            if let Some(route) = http {
                service["HealthCheckGracePeriodSeconds"] = json!(route.grace_period.as_secs());
                outputs["Path"] = json!({"Value": route.path});
            }
            json!({
                "Description": description,
                "Resources": {
                    "TaskDefinition": task_definition,
                    "Service": {"Type": "AWS::ECS::Service", "Properties": service},
                },
                "Outputs": outputs,
            })
        }
        Kind::Job {
            schedule, retries, ..
        } => {
            let mut resources = json!({"TaskDefinition": task_definition});
            if let Some(expression) = schedule {
                resources["Schedule"] = json!({
                    "Type": "AWS::Scheduler::Schedule",
                    "Properties": {
                        "Name": manifest.name,
                        "ScheduleExpression": expression,
                        "FlexibleTimeWindow": {"Mode": "OFF"},
                        "State": "ENABLED",
                        "Target": {
                            "Arn": {"Fn::Sub": format!(
                                "arn:aws:ecs:${{AWS::Region}}:${{AWS::AccountId}}:cluster/{}",
                                placement.cluster
                            )},
                            "RoleArn": {"Fn::Sub": format!(
                                "arn:aws:iam::${{AWS::AccountId}}:role/copilot-{}-scheduler",
                                manifest.name
                            )},
                            "EcsParameters": {
                                "TaskDefinitionArn": {"Ref": "TaskDefinition"},
                                "TaskCount": 1,
                                "LaunchType": "FARGATE",
                            },
                            "RetryPolicy": {"MaximumRetryAttempts": retries},
                        },
                    },
                });
            }
            json!({
                "Description": description,
                "Resources": resources,
                "Outputs": {
                    "TaskDefinition": {"Value": {"Ref": "TaskDefinition"}},
                    "ClusterName": {"Value": placement.cluster},
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::manifest::parse;

    fn default_cluster() -> Placement {
        Placement {
            cluster: "default".into(),
        }
    }

    #[test]
    fn a_web_service_is_a_task_definition_with_its_route_and_a_service() {
        let web = parse(
            "name: web\ntype: Load Balanced Web Service\nimage: {location: app.wasm, port: 8080}\nhttp: {path: /hello}\ncount: 2\nvariables: {B: '2', A: '1'}\nsecrets: {TOKEN: t}\n",
            None,
        )
        .unwrap();
        let template = template(&web, &default_cluster(), "/abs/app.wasm");
        let task = &template["Resources"]["TaskDefinition"]["Properties"];
        assert_eq!(task["Family"], "web");
        assert_eq!(
            (&task["Cpu"], &task["Memory"]),
            (&json!("256"), &json!("512"))
        );
        let container = &task["ContainerDefinitions"][0];
        assert_eq!(container["Name"], "web");
        assert_eq!(container["Image"], "/abs/app.wasm");
        assert_eq!(
            container["DockerLabels"],
            json!({"wasmgate.http.path": "/hello"})
        );
        assert_eq!(container["PortMappings"][0]["ContainerPort"], 8080);
        let names: Vec<&str> = container["Environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["COPILOT_SERVICE_NAME", "A", "B", "TOKEN"]);
        assert_eq!(
            container["HealthCheck"]["Command"],
            json!(["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"])
        );
        let service = &template["Resources"]["Service"]["Properties"];
        assert_eq!(service["Cluster"], "default");
        assert_eq!(service["DesiredCount"], 2);
        assert_eq!(service["TaskDefinition"], json!({"Ref": "TaskDefinition"}));
        assert_eq!(
            service["DeploymentConfiguration"]["MinimumHealthyPercent"],
            100
        );
        assert_eq!(service["DeploymentConfiguration"]["MaximumPercent"], 200);
        assert_eq!(service["HealthCheckGracePeriodSeconds"], 60);
        assert_eq!(stack_name(&web, &default_cluster()), "copilot-web");
        assert_eq!(
            stack_name(
                &web,
                &Placement {
                    cluster: "prod_1".into()
                }
            ),
            "copilot-prod-1-web"
        );
    }

    #[test]
    fn a_recreate_backend_service_has_no_route_and_stops_old_tasks_first() {
        let backend = parse(
            "name: api\ntype: Backend Service\nimage: {location: api.wasm}\ndeployment: {rolling: recreate}\ncommand: serve now\nplatform: linux/arm64\nexec: true\n",
            None,
        )
        .unwrap();
        let template = template(&backend, &default_cluster(), "api.wasm");
        let container =
            &template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
        assert!(container.get("DockerLabels").is_none());
        assert!(container.get("HealthCheck").is_none());
        assert_eq!(container["Command"], json!(["serve", "now"]));
        assert_eq!(
            template["Resources"]["TaskDefinition"]["Properties"]["RuntimePlatform"],
            json!({"OperatingSystemFamily": "LINUX", "CpuArchitecture": "ARM64"})
        );
        assert_eq!(
            template["Resources"]["Service"]["Properties"]["EnableExecuteCommand"],
            true
        );
        let deployment = &template["Resources"]["Service"]["Properties"]["DeploymentConfiguration"];
        assert_eq!(
            (
                &deployment["MinimumHealthyPercent"],
                &deployment["MaximumPercent"]
            ),
            (&json!(0), &json!(100))
        );
    }

    #[test]
    fn a_scheduled_job_is_a_task_definition_and_a_schedule_in_the_cluster() {
        let job = parse(
            "name: report\ntype: Scheduled Job\non: {schedule: '30 9 * * 1-5'}\nimage: {location: job.wasm}\nretries: 2\ntimeout: 1h30m\n",
            None,
        )
        .unwrap();
        let template = template(&job, &default_cluster(), "job.wasm");
        assert_eq!(
            template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["DockerLabels"],
            json!({"wasmgate.task.timeout": "5400"})
        );
        let schedule = &template["Resources"]["Schedule"];
        assert_eq!(schedule["Type"], "AWS::Scheduler::Schedule");
        let props = &schedule["Properties"];
        assert_eq!(props["ScheduleExpression"], "cron(30 9 ? * 2-6 *)");
        assert_eq!(
            props["Target"]["Arn"],
            json!({"Fn::Sub": "arn:aws:ecs:${AWS::Region}:${AWS::AccountId}:cluster/default"})
        );
        assert_eq!(
            props["Target"]["EcsParameters"]["TaskDefinitionArn"],
            json!({"Ref": "TaskDefinition"})
        );
        assert_eq!(props["Target"]["RetryPolicy"]["MaximumRetryAttempts"], 2);
        assert!(template["Resources"].get("Service").is_none());
        let manual = parse(
            "name: once\ntype: Scheduled Job\non: {schedule: none}\nimage: {location: j.wasm}\n",
            None,
        )
        .unwrap();
        let template = super::template(&manual, &default_cluster(), "j.wasm");
        assert_eq!(template["Resources"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_same_manifest_gives_the_same_template() {
        let text = "name: api\ntype: Backend Service\nimage: {location: api.wasm}\nvariables: {Z: z, A: a, M: m}\n";
        let one = template(&parse(text, None).unwrap(), &default_cluster(), "api.wasm");
        let two = template(&parse(text, None).unwrap(), &default_cluster(), "api.wasm");
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            serde_json::to_string(&two).unwrap()
        );
    }
}
