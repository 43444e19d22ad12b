//! Scheduled tasks through the real binary and real tools: EventBridge Scheduler's API with
//! boto3's `scheduler` client and the AWS CLI unchanged, schedules firing on a fast clock
//! (`--clock-rate`: schedule time runs N times the wall clock, so no test sleeps minutes),
//! their tasks found by startedBy, failures recorded as events, `wasmgate schedules`, and
//! exactly one task per firing across crashes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::server::Server;

/// Runs a Python `script` with `sch` (boto3's `scheduler` client), `ecs`, `err` (prints a
/// ClientError's class, status and message) and `wg` (a wasmgate `WasmgateV1.*` call)
/// bound for `endpoint`; returns stdout, panics with stderr on failure.
fn python(endpoint: &str, script: &str) -> String {
    let prelude = format!(
        r#"
import boto3, json, time, datetime, urllib.request
from botocore.exceptions import ClientError
E = '{endpoint}'
kw = dict(endpoint_url=E, region_name='us-east-1', aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='secret')
sch = boto3.client('scheduler', **kw)
ecs = boto3.client('ecs', **kw)
CLUSTER = 'arn:aws:ecs:us-east-1:000000000000:cluster/default'
ROLE = 'arn:aws:iam::000000000000:role/scheduler'
def target(definition='hello', **params):
    return {{'Arn': CLUSTER, 'RoleArn': ROLE, 'EcsParameters': dict(TaskDefinitionArn=definition, **params)}}
def err(f, **args):
    try:
        f(**args)
        print('no error')
    except ClientError as e:
        print(e.response['Error']['Code'], e.response['ResponseMetadata']['HTTPStatusCode'], e.response['Error']['Message'])
def wg(action, body):
    request = urllib.request.Request(E, data=json.dumps(body).encode(), headers={{'x-amz-target': action, 'content-type': 'application/x-amz-json-1.1'}})
    return json.load(urllib.request.urlopen(request))
def tasks_of(started_by):
    arns = []
    for status in ['RUNNING', 'STOPPED']:
        arns += ecs.list_tasks(startedBy=started_by, desiredStatus=status)['taskArns']
    return arns
def wait_for(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit('timed out waiting for ' + what)
"#
    );
    common::aws::run_python(&format!("{prelude}{script}"))
}

/// Registers the `hello` task definition (a guest that prints and exits).
fn register_hello(endpoint: &str) {
    let hello = common::guest(common::Wasi::P2, "hello")
        .display()
        .to_string();
    python(
        endpoint,
        &format!(
            "ecs.register_task_definition(family='hello', memory='64', containerDefinitions=[{{'name': 'hello', 'image': '{hello}'}}])"
        ),
    );
}

/// `wasmgate schedules ARGS` against `endpoint`: stdout, or a panic with stderr.
fn schedules_cli(endpoint: &str, args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = common::wasmgate(data.path())
        .arg("schedules")
        .args(args)
        .env("WASMGATE_ENDPOINT", endpoint)
        .output()
        .expect("wasmgate runs");
    assert!(
        output.status.success(),
        "wasmgate schedules {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `wasmgate schedules describe NAME` until `check` holds on its JSON.
fn wait_for_describe(
    endpoint: &str,
    name: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let described: serde_json::Value =
            serde_json::from_str(&schedules_cli(endpoint, &["describe", name]))
                .expect("describe prints JSON");
        if check(&described) {
            return described;
        }
        assert!(Instant::now() < deadline, "timed out: {described:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn schedules_and_groups_through_boto3_signed_and_the_aws_cli() {
    let data = tempfile::tempdir().unwrap();
    let keys = data.path().join("credentials.json");
    std::fs::write(&keys, r#"{"AKIDEXAMPLE": "secret"}"#).unwrap();
    let server = Server::start_with(data.path(), &["--credentials", keys.to_str().unwrap()]);
    let out = python(
        &server.endpoint,
        r#"
g = sch.create_schedule_group(Name='jobs', Tags=[{'Key': 'team', 'Value': 'data'}])['ScheduleGroupArn']
print('group', g)
for i in range(5):
    sch.create_schedule(Name=f'job-{i}', GroupName='jobs', ScheduleExpression='cron(0 10 * * ? *)',
        ScheduleExpressionTimezone='Europe/Paris', FlexibleTimeWindow={'Mode': 'OFF'},
        Target=target(TaskCount=2, Tags=[{'team': 'data'}]), State='DISABLED')
arn = sch.create_schedule(Name='nightly', ScheduleExpression='rate(1 day)', Description='d',
    FlexibleTimeWindow={'Mode': 'FLEXIBLE', 'MaximumWindowInMinutes': 15}, Target=target(), State='DISABLED')['ScheduleArn']
print('created', arn)
got = sch.get_schedule(Name='job-3', GroupName='jobs')
print('got', got['Arn'], got['ScheduleExpressionTimezone'], got['Target']['EcsParameters']['TaskCount'], got['State'],
      got['Target']['RetryPolicy'], got['ActionAfterCompletion'], type(got['CreationDate']).__name__)
pages = list(sch.get_paginator('list_schedules').paginate(GroupName='jobs', PaginationConfig={'PageSize': 2}))
print('pages', len(pages), sum(len(p['Schedules']) for p in pages), pages[0]['Schedules'][0]['Target'])
print('all', len(sch.list_schedules()['Schedules']), 'prefix', [s['Name'] for s in sch.list_schedules(NamePrefix='night')['Schedules']],
      'disabled', len(sch.list_schedules(State='DISABLED')['Schedules']), 'enabled', len(sch.list_schedules(State='ENABLED')['Schedules']))
sch.update_schedule(Name='nightly', ScheduleExpression='cron(0 3 * * ? *)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target(), State='DISABLED')
u = sch.get_schedule(Name='nightly')
print('updated', u['ScheduleExpression'], 'Description' in u, u['CreationDate'] <= u['LastModificationDate'])
err(sch.create_schedule, Name='bad', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target(TaskCount=11))
err(sch.create_schedule, Name='bad', ScheduleExpression='cron(0 10 * * * *)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
err(sch.create_schedule, Name='bad', ScheduleExpression='rate(1 minute)', ScheduleExpressionTimezone='Mars/Olympus', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
err(sch.create_schedule, Name='bad', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'},
    Target=dict(target(), RetryPolicy={'MaximumRetryAttempts': 186}))
err(sch.create_schedule, Name='job-0', GroupName='jobs', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
err(sch.create_schedule, Name='x', GroupName='ghost', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
err(sch.get_schedule, Name='ghost')
err(sch.create_schedule_group, Name='jobs')
err(sch.delete_schedule_group, Name='default')
try:
    sch.get_schedule(Name='ghost')
except sch.exceptions.ResourceNotFoundException:
    print('raised ResourceNotFoundException')
eu = boto3.client('scheduler', **dict(kw, region_name='eu-west-1'))
a = eu.create_schedule(Name='eu', ScheduleExpression='rate(1 day)', FlexibleTimeWindow={'Mode': 'OFF'}, State='DISABLED',
    Target={'Arn': 'arn:aws:ecs:eu-west-1:000000000000:cluster/default', 'RoleArn': ROLE, 'EcsParameters': {'TaskDefinitionArn': 'hello'}})['ScheduleArn']
print('eu', a, eu.get_schedule(Name='eu')['Target']['Arn'], sch.get_schedule(Name='eu')['Arn'])
eu.delete_schedule(Name='eu')
sch.tag_resource(ResourceArn=g, Tags=[{'Key': 'env', 'Value': 'prod'}])
sch.untag_resource(ResourceArn=g, TagKeys=['team'])
print('tags', sch.list_tags_for_resource(ResourceArn=g)['Tags'])
print('groups', sorted(x['Name'] for x in sch.list_schedule_groups()['ScheduleGroups']), sch.get_schedule_group(Name='jobs')['State'])
sch.delete_schedule_group(Name='jobs')
err(sch.get_schedule, Name='job-0', GroupName='jobs')
print('left', [s['Name'] for s in sch.list_schedules()['Schedules']])
sch.delete_schedule(Name='nightly')
err(sch.delete_schedule, Name='nightly')
"#,
    );
    let lines = [
        "group arn:aws:scheduler:us-east-1:000000000000:schedule-group/jobs",
        "created arn:aws:scheduler:us-east-1:000000000000:schedule/default/nightly",
        "got arn:aws:scheduler:us-east-1:000000000000:schedule/jobs/job-3 Europe/Paris 2 DISABLED {'MaximumEventAgeInSeconds': 86400, 'MaximumRetryAttempts': 185} NONE datetime",
        "pages 3 5 {'Arn': 'arn:aws:ecs:us-east-1:000000000000:cluster/default'}",
        "all 6 prefix ['nightly'] disabled 6 enabled 0",
        "updated cron(0 3 * * ? *) False True",
        "ValidationException 400 1 validation error detected: Value '11' at 'target.ecsParameters.taskCount' failed to satisfy constraint: Member must have value between 1 and 10",
        "ValidationException 400 Invalid Schedule Expression cron(0 10 * * * *): day-of-month and day-of-week cannot both be given",
        "ValidationException 400 1 validation error detected: Value 'Mars/Olympus' at 'scheduleExpressionTimezone'",
        "ValidationException 400 1 validation error detected: Value '186' at 'target.retryPolicy.maximumRetryAttempts'",
        "ConflictException 409 Schedule job-0 already exists.",
        "ResourceNotFoundException 404 Schedule group ghost does not exist.",
        "ResourceNotFoundException 404 Schedule ghost does not exist.",
        "ConflictException 409 Schedule group jobs already exists.",
        "ValidationException 400 The default schedule group cannot be deleted.",
        "raised ResourceNotFoundException",
        "eu arn:aws:scheduler:eu-west-1:000000000000:schedule/default/eu arn:aws:ecs:eu-west-1:000000000000:cluster/default arn:aws:scheduler:us-east-1:000000000000:schedule/default/eu",
        "tags [{'Key': 'env', 'Value': 'prod'}]",
        "groups ['default', 'jobs'] ACTIVE",
        "ResourceNotFoundException 404 Schedule group jobs does not exist.",
        "left ['nightly']",
        "ResourceNotFoundException 404 Schedule nightly does not exist.",
    ];
    for line in lines {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // The AWS CLI, unchanged.
    let aws = common::aws::python()
        .parent()
        .expect("venv bin")
        .join("aws");
    let run = |args: &[&str]| {
        let output = Command::new(&aws)
            .args([
                "--endpoint-url",
                &server.endpoint,
                "--region",
                "us-east-1",
                "--output",
                "json",
                "scheduler",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .output()
            .expect("aws runs");
        assert!(
            output.status.success(),
            "aws scheduler {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let created = run(&[
        "create-schedule",
        "--name",
        "from-cli",
        "--schedule-expression",
        "at(2030-01-01T09:00:00)",
        "--schedule-expression-timezone",
        "Asia/Tokyo",
        "--flexible-time-window",
        "Mode=OFF",
        "--action-after-completion",
        "DELETE",
        "--target",
        r#"{"Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/default", "RoleArn": "arn:aws:iam::000000000000:role/scheduler", "EcsParameters": {"TaskDefinitionArn": "hello", "TaskCount": 1}}"#,
    ]);
    assert!(created.contains("schedule/default/from-cli"), "{created}");
    let listed = run(&["list-schedules"]);
    assert!(listed.contains("\"Name\": \"from-cli\""), "{listed}");
    let got = run(&["get-schedule", "--name", "from-cli"]);
    assert!(
        got.contains("\"ScheduleExpressionTimezone\": \"Asia/Tokyo\""),
        "{got}"
    );
}

#[test]
fn rate_and_at_schedules_fire_on_a_fast_clock_and_failures_are_events() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--clock-rate", "60"]);
    register_hello(&server.endpoint);
    let out = python(
        &server.endpoint,
        r#"
ecs.register_task_definition(family='huge', memory='120000', containerDefinitions=[{'name': 'h', 'image': 'x.wasm'}])
overrides = json.dumps({'containerOverrides': [{'name': 'hello', 'environment': [{'name': 'FIRED_BY', 'value': 'schedule'}]}]})
sch.create_schedule(Name='every-minute', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'},
    Target=dict(target(Group='minutely'), Input=overrides))
arns = wait_for('three firings', lambda: (lambda a: a if len(a) >= 3 else None)(tasks_of('schedule/default/every-minute')))
tasks = ecs.describe_tasks(tasks=arns, include=['TAGS'])['tasks']
fired = sorted(t['value'] for task in tasks for t in task.get('tags', []) if t['key'] == 'wasmgate:schedule-firing')
print('tasks', len(arns), 'distinct firings', len(set(fired)) == len(fired), 'group', tasks[0]['group'])
print('env', tasks[0]['overrides']['containerOverrides'][0]['environment'])
stamps = [datetime.datetime.fromisoformat(v.replace('Z', '+00:00')).timestamp() for v in fired]
# A pass that came late (a busy machine) fires the latest due time and records the ones
# before it as missed: whole minutes apart, never closer.
print('spaced', all(b > a and (b - a) % 60 == 0 for a, b in zip(stamps, stamps[1:])))

# at() in a time zone, once, deleted after (ActionAfterCompletion DELETE).
now = wg('WasmgateV1.ListSchedules', {})['scheduleTime']
tokyo = datetime.datetime.fromtimestamp(now + 300, datetime.timezone(datetime.timedelta(hours=9)))
sch.create_schedule(Name='once', ScheduleExpression='at(' + tokyo.strftime('%Y-%m-%dT%H:%M:%S') + ')', ScheduleExpressionTimezone='Asia/Tokyo',
    FlexibleTimeWindow={'Mode': 'OFF'}, ActionAfterCompletion='DELETE', Target=target())
def gone():
    try:
        sch.get_schedule(Name='once')
        return False
    except sch.exceptions.ResourceNotFoundException:
        return True
wait_for('the at schedule to be deleted', gone)
print('once tasks', len(tasks_of('schedule/default/once')))

# A task that fits nowhere: retried, then a failure event.
sch.create_schedule(Name='doomed', ScheduleExpression='rate(1 hour)', FlexibleTimeWindow={'Mode': 'OFF'},
    Target=dict(target('huge'), RetryPolicy={'MaximumRetryAttempts': 2, 'MaximumEventAgeInSeconds': 3600}))
"#,
    );
    for line in [
        "distinct firings True group minutely",
        "env [{'name': 'FIRED_BY', 'value': 'schedule'}]",
        "spaced True",
        "once tasks 1",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let doomed = wait_for_describe(&server.endpoint, "doomed", |d| {
        d["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "FAILED"))
    });
    let kinds: Vec<&str> = doomed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["LAUNCH_FAILED", "LAUNCH_FAILED", "LAUNCH_FAILED", "FAILED"],
        "{doomed:#}"
    );
    let failed = doomed["events"][3]["message"].as_str().unwrap();
    assert!(
        failed.contains("3 attempts failed (MaximumRetryAttempts 2)"),
        "{failed}"
    );
    assert!(failed.contains("RESOURCE:MEMORY"), "{failed}");
    assert_eq!(doomed["firings"][0]["status"], "FAILED", "{doomed:#}");

    let listed = schedules_cli(&server.endpoint, &["ls"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with("every-minute"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains("default") && line.contains("rate(1 minute)") && line.contains("ENABLED"),
        "{listed}"
    );
    assert!(line.trim_end().ends_with('Z'), "a next firing: {listed}");
    let described = schedules_cli(&server.endpoint, &["describe", "every-minute"]);
    assert!(
        described.contains("\"startedBy\": \"schedule/default/every-minute\""),
        "{described}"
    );
    assert!(
        described.contains("\"status\": \"LAUNCHED\""),
        "{described}"
    );
    assert!(described.contains("\"taskArns\": ["), "{described}");
    schedules_cli(&server.endpoint, &["rm", "every-minute"]);
    assert!(!schedules_cli(&server.endpoint, &["ls"]).contains("every-minute"));
}

#[test]
fn cron_in_a_time_zone_fires_at_its_local_minute() {
    let data = tempfile::tempdir().unwrap();
    // An hour of schedule time per wall-clock second.
    let server = Server::start_with(data.path(), &["--clock-rate", "3600"]);
    register_hello(&server.endpoint);
    python(
        &server.endpoint,
        r#"
sch.create_schedule(Name='kathmandu', ScheduleExpression='cron(5 * * * ? *)', ScheduleExpressionTimezone='Asia/Kathmandu',
    FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
"#,
    );
    let described = wait_for_describe(&server.endpoint, "kathmandu", |d| {
        d["firings"]
            .as_array()
            .is_some_and(|f| f.iter().filter(|f| f["status"] == "LAUNCHED").count() >= 3)
    });
    // Minute 5 at UTC+05:45 is minute 20 in UTC, every hour.
    let times: Vec<jiff::Timestamp> = described["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["scheduled"].as_str().unwrap().parse().unwrap())
        .collect();
    for time in &times {
        assert_eq!(time.as_second().rem_euclid(3600), 20 * 60, "{described:#}");
    }
    for pair in times.windows(2) {
        let apart = pair[1].as_second() - pair[0].as_second();
        assert!(
            apart > 0 && apart % 3600 == 0,
            "whole hours apart: {described:#}"
        );
    }
    let next = described["nextFirings"][0].as_str().unwrap();
    assert!(next.ends_with(":20:00Z"), "{next}");
}

/// The tasks the firing tags of schedule `name` name, counted per firing.
fn tasks_per_firing(endpoint: &str, name: &str) -> String {
    python(
        endpoint,
        &format!(
            r#"
arns = tasks_of('schedule/default/{name}')
tasks = ecs.describe_tasks(tasks=arns, include=['TAGS'])['tasks'] if arns else []
counts = {{}}
for task in tasks:
    for t in task.get('tags', []):
        if t['key'] == 'wasmgate:schedule-firing':
            counts[t['value']] = counts.get(t['value'], 0) + 1
print('all one', all(n == 1 for n in counts.values()), 'firings', len(counts))
"#
        ),
    )
}

#[test]
fn a_crash_around_a_firing_leaves_exactly_one_task_for_it() {
    // A crash between recording a firing and launching it, then between launching and
    // recording its tasks: each restart finishes the firing with exactly one task.
    for (crash_at, wanted_event) in [("recorded", None), ("launched", Some("RECOVERED"))] {
        let data = tempfile::tempdir().unwrap();
        let mut server = Server::start_with_env(
            data.path(),
            &["--clock-rate", "60"],
            &[("WASMGATE_TEST_CRASH_AT", crash_at)],
        );
        register_hello(&server.endpoint);
        // The server may abort before the answer is out: the schedule is stored either way.
        python(
            &server.endpoint,
            r#"
try:
    sch.create_schedule(Name='hourly', ScheduleExpression='rate(1 hour)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
except Exception as e:
    print('crashed while answering', type(e).__name__)
"#,
        );
        assert!(
            server.wait_exit(Duration::from_secs(30)).is_some(),
            "the crash point {crash_at} is reached"
        );
        drop(server);
        let server = Server::start_with(data.path(), &["--clock-rate", "60"]);
        let described = wait_for_describe(&server.endpoint, "hourly", |d| {
            d["firings"][0]["status"] == "LAUNCHED"
        });
        assert_eq!(
            described["firings"].as_array().unwrap().len(),
            1,
            "{described:#}"
        );
        assert_eq!(
            described["firings"][0]["taskArns"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{described:#}"
        );
        if let Some(kind) = wanted_event {
            assert!(
                described["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == kind),
                "{described:#}"
            );
        }
        let counted = tasks_per_firing(&server.endpoint, "hourly");
        assert!(
            counted.contains("all one True firings 1"),
            "{crash_at}: {counted}"
        );
    }

    // A kill -9 right after a firing: the firings before and after it have one task each.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--clock-rate", "60"]);
    register_hello(&server.endpoint);
    python(
        &server.endpoint,
        r#"
sch.create_schedule(Name='minutely', ScheduleExpression='rate(1 minute)', FlexibleTimeWindow={'Mode': 'OFF'}, Target=target())
wait_for('a first task', lambda: tasks_of('schedule/default/minutely'))
"#,
    );
    server.kill_9();
    let server = Server::start_with(data.path(), &["--clock-rate", "60"]);
    wait_for_describe(&server.endpoint, "minutely", |d| {
        d["firings"]
            .as_array()
            .is_some_and(|f| f.iter().filter(|f| f["status"] == "LAUNCHED").count() >= 3)
    });
    let counted = tasks_per_firing(&server.endpoint, "minutely");
    assert!(
        counted.contains("all one True"),
        "every firing has exactly one task: {counted}"
    );
}

#[test]
fn a_stack_declares_a_schedule_group_and_a_schedule() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let template = data.path().join("schedules.template.json");
    std::fs::write(
        &template,
        r#"{
  "Parameters": {"Count": {"Type": "Number", "Default": "2"}},
  "Resources": {
    "Group": {"Type": "AWS::Scheduler::ScheduleGroup", "Properties": {"Name": "reports", "Tags": [{"Key": "team", "Value": "data"}]}},
    "Nightly": {"Type": "AWS::Scheduler::Schedule", "Properties": {
      "GroupName": {"Ref": "Group"},
      "ScheduleExpression": "cron(0 3 * * ? *)", "ScheduleExpressionTimezone": "Europe/Paris",
      "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "DISABLED", "StartDate": "2030-01-01T00:00:00Z",
      "Target": {
        "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/default", "RoleArn": "arn:aws:iam::000000000000:role/r",
        "EcsParameters": {"TaskDefinitionArn": "hello", "TaskCount": {"Ref": "Count"},
                          "CapacityProviderStrategy": [{"CapacityProvider": "FARGATE", "Weight": 1}]}}}}
  },
  "Outputs": {"ScheduleArn": {"Value": {"Fn::GetAtt": ["Nightly", "Arn"]}}}
}"#,
    )
    .unwrap();
    let deploy = |extra: &[&str]| {
        let output = common::wasmgate(data.path())
            .arg("deploy")
            .arg(&template)
            .args(["--stack", "jobs", "--endpoint", &server.endpoint])
            .args(extra)
            .output()
            .expect("wasmgate runs");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    };
    let out = deploy(&[]);
    assert!(
        out.contains("arn:aws:scheduler:us-east-1:000000000000:schedule/reports/jobs-Nightly-"),
        "{out}"
    );
    let show = r#"
s = [x for x in sch.list_schedules(GroupName='reports')['Schedules']][0]
got = sch.get_schedule(Name=s['Name'], GroupName='reports')
print('schedule', got['ScheduleExpression'], got['Target']['EcsParameters']['TaskCount'],
      got['Target']['EcsParameters']['CapacityProviderStrategy'], got['StartDate'].year)
print('tags', sch.list_tags_for_resource(ResourceArn=sch.get_schedule_group(Name='reports')['Arn'])['Tags'])
"#;
    let shown = python(&server.endpoint, show);
    assert!(
        shown.contains(
            "schedule cron(0 3 * * ? *) 2 [{'capacityProvider': 'FARGATE', 'weight': 1}] 2030"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("tags [{'Key': 'team', 'Value': 'data'}]"),
        "{shown}"
    );
    deploy(&["--parameter", "Count=3"]);
    assert!(python(&server.endpoint, show).contains("schedule cron(0 3 * * ? *) 3 "));
    let output = common::wasmgate(data.path())
        .args(["stack", "rm", "jobs"])
        .env("WASMGATE_ENDPOINT", &server.endpoint)
        .output()
        .expect("wasmgate runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = python(
        &server.endpoint,
        "err(sch.get_schedule_group, Name='reports')",
    );
    assert!(after.contains("ResourceNotFoundException 404"), "{after}");
}
