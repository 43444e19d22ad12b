//! `wasmgate apply|diff|delete -f` of AWS Copilot manifests against a real server: the
//! example web service applied and served through the gateway at its `http.path` (its HTTP
//! health check passing inside the task), applied again unchanged (no new task definition
//! revision, no new deployment), changed (count, a variable: `diff` shows it, then one
//! revision and one deployment), deleted; a Backend Service with a container health check;
//! a task stopped at its `wasmgate.task.timeout` (a job's `timeout`);
//! a Scheduled Job whose schedule runs its task; manifests with an unknown key or a wrong type refused by key path. The ECS
//! side checked through boto3.

mod common;

use std::time::{Duration, Instant};

use common::aws::boto3;
use common::cli::{cli, ok, text};
use common::server::Server;
use common::{Wasi, guest};

fn example(name: &str) -> String {
    common::repo_root()
        .join("examples/copilot")
        .join(name)
        .display()
        .to_string()
}

/// The example manifest `name` with its relative image made absolute and `edit` applied to
/// its text, written into `dir`.
fn edited(dir: &std::path::Path, name: &str, edit: impl Fn(String) -> String) -> String {
    let original = std::fs::read_to_string(example(name)).unwrap();
    let absolute = original.replace(
        "../../guests/",
        &format!("{}/guests/", common::repo_root().display()),
    );
    let path = dir.join(name);
    std::fs::write(&path, edit(absolute)).unwrap();
    path.display().to_string()
}

/// Waits until `probe` (a boto3 script printing one line) prints `want`.
fn wait_for(server: &Server, probe: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = boto3(&server.endpoint, probe);
        if got.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {want:?}; last {got:?} from:\n{probe}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The ACTIVE revisions of `family`, the INACTIVE ones, and the service's deployments (how
/// many, and the task definition of the primary), as one line.
fn revisions_and_deployments(server: &Server, family: &str, service: &str) -> String {
    boto3(
        &server.endpoint,
        &format!(
            r#"
active = [a.split('/')[-1] for a in ecs.list_task_definitions(familyPrefix='{family}')['taskDefinitionArns']]
inactive = [a.split('/')[-1] for a in ecs.list_task_definitions(familyPrefix='{family}', status='INACTIVE')['taskDefinitionArns']]
deployments = ecs.list_service_deployments(cluster='default', service='{service}')['serviceDeployments']
s = ecs.describe_services(cluster='default', services=['{service}'])['services'][0]
print('active', active, 'inactive', inactive, 'deployments', len(deployments), 'primary', s['taskDefinition'].split('/')[-1], 'desired', s['desiredCount'])
"#
        ),
    )
    .trim()
    .to_string()
}

#[test]
fn a_web_service_is_applied_served_changed_by_its_manifest_only_and_deleted() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    guest(Wasi::P2, "http_hello");
    let web = example("web.yml");

    let first = ok(&server, &["apply", "-f", &web]);
    assert!(
        first.contains("Load Balanced Web Service web: stack copilot-web: CREATE_COMPLETE"),
        "{first}"
    );
    assert!(first.contains("output Path = /hello"), "{first}");
    // The route reaches the service at http.path.
    let reply = common::http::get_when_served(&server.gateway, "localhost", "/hello");
    assert_eq!(reply.text(), "Hello from wasmgate! You asked for /hello\n");
    // http.healthcheck is a GET of /healthz inside the task, which the component answers.
    wait_for(
        &server,
        "t = ecs.list_tasks(cluster='default', serviceName='web')['taskArns']\n\
         print(ecs.describe_tasks(cluster='default', tasks=t)['tasks'][0].get('healthStatus'))",
        "HEALTHY",
    );
    let described = boto3(
        &server.endpoint,
        r#"
s = ecs.describe_services(cluster='default', services=['web'])['services'][0]
c = ecs.describe_task_definition(taskDefinition=s['taskDefinition'])['taskDefinition']['containerDefinitions'][0]
print('container', c['name'], c['dockerLabels'], c['healthCheck']['command'], c['portMappings'][0]['containerPort'])
print('env', sorted((e['name'], e['value']) for e in c['environment']))
print('deployment', s['deploymentConfiguration']['minimumHealthyPercent'], s['deploymentConfiguration']['maximumPercent'], s['healthCheckGracePeriodSeconds'])
"#,
    );
    assert!(
        described.contains(
            "container web {'wasmgate.http.path': '/hello'} ['CMD-SHELL', 'curl -f http://localhost:8080/healthz || exit 1'] 8080"
        ),
        "{described}"
    );
    assert!(
        described.contains("env [('COPILOT_SERVICE_NAME', 'web'), ('LOG_LEVEL', 'info')]"),
        "{described}"
    );
    assert!(described.contains("deployment 100 200 60"), "{described}");
    let before = revisions_and_deployments(&server, "web", "web");
    assert_eq!(
        before,
        "active ['web:1'] inactive [] deployments 1 primary web:1 desired 1"
    );

    // The same manifest again, even reached by another path: no revision, no deployment.
    let again = ok(&server, &["apply", "-f", &web]);
    assert!(again.contains("stack copilot-web: no changes"), "{again}");
    let roundabout = example("../stacks/../copilot/web.yml");
    let again = ok(&server, &["apply", "-f", &roundabout]);
    assert!(again.contains("stack copilot-web: no changes"), "{again}");
    let unchanged_diff = ok(&server, &["diff", "-f", &web]);
    assert_eq!(unchanged_diff.trim(), "stack copilot-web: no changes");
    assert_eq!(revisions_and_deployments(&server, "web", "web"), before);

    // A changed count and variable: diff says so first, then one revision, one deployment.
    let changed = edited(files.path(), "web.yml", |text| {
        text.replace("count: 1", "count: 2")
            .replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    });
    let diff = ok(&server, &["diff", "-f", &changed]);
    for line in [
        "~ TaskDefinition (AWS::ECS::TaskDefinition): replace",
        "    ContainerDefinitions[web].Environment[LOG_LEVEL].Value: \"info\" → \"debug\"",
        "~ Service (AWS::ECS::Service): update in place",
        "    DesiredCount: 1 → 2",
        "    TaskDefinition: \"arn:aws:ecs:us-east-1:",
    ] {
        assert!(diff.contains(line), "{line:?} in:\n{diff}");
    }
    assert!(
        diff.contains(":task-definition/web:1\" → \"(new TaskDefinition)\""),
        "{diff}"
    );
    assert_eq!(
        revisions_and_deployments(&server, "web", "web"),
        before,
        "diff changes nothing"
    );
    let applied = ok(&server, &["apply", "-f", &changed]);
    assert!(
        applied.contains("stack copilot-web: UPDATE_COMPLETE"),
        "{applied}"
    );
    assert_eq!(
        revisions_and_deployments(&server, "web", "web"),
        "active ['web:2'] inactive ['web:1'] deployments 2 primary web:2 desired 2"
    );
    let again = ok(&server, &["apply", "-f", &changed]);
    assert!(again.contains("stack copilot-web: no changes"), "{again}");
    assert_eq!(
        revisions_and_deployments(&server, "web", "web"),
        "active ['web:2'] inactive ['web:1'] deployments 2 primary web:2 desired 2"
    );

    // Delete: the service, then its revision; the route is gone.
    let deleted = ok(&server, &["delete", "-f", &changed]);
    assert!(
        deleted.contains("stack copilot-web: DELETE_COMPLETE"),
        "{deleted}"
    );
    let gone = boto3(
        &server.endpoint,
        r#"
s = ecs.describe_services(cluster='default', services=['web'])
print('service', [x['status'] for x in s['services']])
print('active', ecs.list_task_definitions(familyPrefix='web')['taskDefinitionArns'])
"#,
    );
    assert!(gone.contains("active []"), "{gone}");
    assert!(!gone.contains("'ACTIVE'"), "{gone}");
    assert!(!ok(&server, &["stack", "ls"]).contains("copilot-web"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::http::get(&server.gateway, "localhost", "/hello").status == 200 {
        assert!(Instant::now() < deadline, "/hello still answers");
        std::thread::sleep(Duration::from_millis(50));
    }
    let twice = cli(&server, &["delete", "-f", &changed]);
    let (_, stderr) = text(&twice);
    assert!(!twice.status.success());
    assert!(
        stderr.contains("not applied (there is no stack copilot-web"),
        "{stderr}"
    );
}

#[test]
fn a_backend_service_has_its_health_check_and_bad_manifests_name_the_key() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    guest(Wasi::P2, "http_hello");

    // Unknown keys and wrong types fail before anything is made, naming the key path.
    for (name, edit, error) in [
        (
            "web.yml",
            ("    interval: 10s", "    intervall: 10s"),
            "http.healthcheck.intervall: unknown key (known: path, port, success_codes, healthy_threshold, unhealthy_threshold, interval, timeout, grace_period)",
        ),
        (
            "backend.yml",
            ("count: 1", "count: many"),
            "count: invalid type: string \"many\", expected a whole number",
        ),
        (
            "backend.yml",
            ("    retries: 2", "    retries: [2]"),
            "image.healthcheck.retries: invalid type: list, expected a whole number",
        ),
        (
            "web.yml",
            ("    count: 2", "    cuont: 2"),
            "environments.prod.cuont: unknown key",
        ),
    ] {
        let bad = edited(files.path(), name, |text| {
            assert!(text.contains(edit.0), "{name} has {:?}", edit.0);
            text.replace(edit.0, edit.1)
        });
        for verb in ["apply", "diff"] {
            let output = cli(&server, &[verb, "-f", &bad]);
            let (stdout, stderr) = text(&output);
            assert!(!output.status.success(), "{verb} {name}: {stdout}");
            assert!(
                stderr.contains(error),
                "{verb} {name}: {error:?} in:\n{stderr}"
            );
        }
    }
    assert!(
        !ok(&server, &["stack", "ls"]).contains("copilot-"),
        "nothing was applied"
    );

    let backend = example("backend.yml");
    let first = ok(&server, &["apply", "-f", &backend]);
    assert!(
        first.contains("Backend Service api: stack copilot-api: CREATE_COMPLETE"),
        "{first}"
    );
    wait_for(
        &server,
        "t = ecs.list_tasks(cluster='default', serviceName='api')['taskArns']\n\
         print(ecs.describe_tasks(cluster='default', tasks=t)['tasks'][0].get('healthStatus'))",
        "HEALTHY",
    );
    let described = boto3(
        &server.endpoint,
        r#"
s = ecs.describe_services(cluster='default', services=['api'])['services'][0]
c = ecs.describe_task_definition(taskDefinition=s['taskDefinition'])['taskDefinition']['containerDefinitions'][0]
h = c['healthCheck']
print('check', h['command'], h['interval'], h['retries'], h['timeout'], h.get('startPeriod'))
print('labels', c.get('dockerLabels'))
print('env', sorted((e['name'], e['value']) for e in c['environment']))
print('deployment', s['deploymentConfiguration']['minimumHealthyPercent'], s['deploymentConfiguration']['maximumPercent'])
print('exec', s['enableExecuteCommand'])
"#,
    );
    for line in [
        "exec True",
        "check ['CMD-SHELL', 'curl -f http://localhost:8080/healthz || exit 1'] 5 2 2 0",
        "labels None",
        "env [('API_TOKEN', 'dev-token'), ('COPILOT_SERVICE_NAME', 'api'), ('MODE', 'internal')]",
        "deployment 0 100",
    ] {
        assert!(described.contains(line), "{line} in:\n{described}");
    }
    let again = ok(&server, &["apply", "-f", &backend]);
    assert!(again.contains("stack copilot-api: no changes"), "{again}");
    let deleted = ok(&server, &["delete", "-f", &backend]);
    assert!(
        deleted.contains("stack copilot-api: DELETE_COMPLETE"),
        "{deleted}"
    );

    // The check is a real request: a path the component answers with 500 (it traps) makes
    // the task unhealthy, and the service replaces it.
    let sick = edited(files.path(), "backend.yml", |text| {
        text.replace("name: api", "name: sick")
            .replace("localhost:8080/healthz", "localhost:8080/trap")
    });
    let applied = ok(&server, &["apply", "-f", &sick]);
    assert!(
        applied.contains("stack copilot-sick: CREATE_COMPLETE"),
        "{applied}"
    );
    wait_for(
        &server,
        r#"
arns = ecs.list_tasks(cluster='default', serviceName='sick', desiredStatus='STOPPED')['taskArns']
tasks = ecs.describe_tasks(cluster='default', tasks=arns)['tasks'] if arns else []
print(any('health checks' in (t.get('stoppedReason') or '') for t in tasks))
"#,
        "True",
    );
    ok(&server, &["delete", "-f", &sick]);

    // A Scheduled Job's `timeout` is its task's `wasmgate.task.timeout` label: a task that
    // runs that long is stopped as StopTask would stop it.
    let graceful = guest(Wasi::P1, "graceful").display().to_string();
    let stopped = boto3(
        &server.endpoint,
        &format!(
            r#"
ecs.register_task_definition(family='timed', memory='64', containerDefinitions=[{{
    'name': 'timed', 'image': '{graceful}', 'dockerLabels': {{'wasmgate.task.timeout': '1'}}}}])
arn = ecs.run_task(cluster='default', taskDefinition='timed')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_stopped').wait(cluster='default', tasks=[arn], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
t = ecs.describe_tasks(cluster='default', tasks=[arn])['tasks'][0]
print(t['stopCode'], t['stoppedReason'], t['containers'][0]['exitCode'])
"#
        ),
    );
    assert_eq!(
        stopped.trim(),
        "UserInitiated TaskTimeout: the task ran for its timeout of 1s (wasmgate.task.timeout) 0"
    );
}

#[test]
fn a_scheduled_job_is_a_schedule_of_its_task_definition() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // Schedule time at 600 times the wall clock: `@every 10m` fires every second.
    let server = Server::start_with(data.path(), &["--clock-rate", "600"]);
    guest(Wasi::P1, "hello");
    // The copy its changed version is made from, so only what the test changes differs.
    let job = edited(files.path(), "job.yml", |text| text);

    let first = ok(&server, &["apply", "-f", &job]);
    assert!(
        first.contains("Scheduled Job report: stack copilot-report: CREATE_COMPLETE"),
        "{first}"
    );
    let stack: serde_json::Value =
        serde_json::from_str(&ok(&server, &["stack", "describe", "copilot-report"])).unwrap();
    let schedule = &stack["resources"]["Schedule"]["properties"];
    assert_eq!(schedule["ScheduleExpression"], "rate(10 minutes)");
    assert_eq!(schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"], 2);
    assert!(
        schedule["Target"]["EcsParameters"]["TaskDefinitionArn"]
            .as_str()
            .unwrap()
            .ends_with(":task-definition/report:1"),
        "{schedule}"
    );
    assert!(
        schedule["Target"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with(":cluster/default"),
        "{schedule}"
    );
    let again = ok(&server, &["apply", "-f", &job]);
    assert!(
        again.contains("stack copilot-report: no changes"),
        "{again}"
    );
    let labels = boto3(
        &server.endpoint,
        "print(ecs.describe_task_definition(taskDefinition='report')['taskDefinition']['containerDefinitions'][0]['dockerLabels'])",
    );
    assert_eq!(labels.trim(), "{'wasmgate.task.timeout': '300'}");
    // The schedule runs the job's task in the cluster, and it ends as the program does.
    wait_for(
        &server,
        r#"
arns = ecs.list_tasks(cluster='default', family='report', desiredStatus='STOPPED')['taskArns']
tasks = ecs.describe_tasks(cluster='default', tasks=arns)['tasks'] if arns else []
print(any(t['containers'][0].get('exitCode') == 0 for t in tasks))
"#,
        "True",
    );

    // New retries change the schedule only.
    let changed = edited(files.path(), "job.yml", |text| {
        text.replace("retries: 2", "retries: 3")
    });
    let diff = ok(&server, &["diff", "-f", &changed]);
    assert!(
        diff.contains("    Target.RetryPolicy.MaximumRetryAttempts: 2 → 3"),
        "{diff}"
    );
    assert!(
        !diff.contains("TaskDefinition (AWS::ECS::TaskDefinition)"),
        "{diff}"
    );
    ok(&server, &["apply", "-f", &changed]);
    let revisions = boto3(
        &server.endpoint,
        "print(len(ecs.list_task_definitions(familyPrefix='report')['taskDefinitionArns']))",
    );
    assert_eq!(revisions.trim(), "1");
    let deleted = ok(&server, &["delete", "-f", &changed]);
    assert!(
        deleted.contains("stack copilot-report: DELETE_COMPLETE"),
        "{deleted}"
    );
}
