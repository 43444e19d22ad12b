//! Services through boto3 against the real server: desired count, replacement, rolling
//! deployments within their bounds, throttling of tasks that cannot start, the circuit breaker
//! with rollback, deletion, and a kill -9 in the middle of a deployment.

mod common;

use common::aws::boto3;
use common::server::Server;
use common::{Wasi, guest};

/// Python that registers `web` revisions 1 and 2 (a long-running guest, told apart by an
/// environment variable) and 3 (`broken`: an image that does not exist), and `crash` (a guest
/// that exits 3 as soon as it runs), then runs `extra`.
fn register(extra: &str) -> String {
    let graceful = guest(Wasi::P1, "graceful").display().to_string();
    let exit = guest(Wasi::P1, "exit").display().to_string();
    helpers(&format!(
        r#"
def td(family, image, version):
    return ecs.register_task_definition(family=family, memory='32', containerDefinitions=[{{'name': 'app', 'image': image, 'environment': [{{'name': 'VERSION', 'value': version}}]}}])['taskDefinition']['taskDefinitionArn']
v1 = td('web', '{graceful}', '1')
v2 = td('web', '{graceful}', '2')
broken = td('web', '/nonexistent/app.wasm', 'broken')
crashing = ecs.register_task_definition(family='crash', memory='32', containerDefinitions=[{{'name': 'app', 'image': '{exit}', 'command': ['3']}}])['taskDefinition']['taskDefinitionArn']
{extra}
"#
    ))
}

/// Python helpers for the service `web`, then `extra`.
fn helpers(extra: &str) -> String {
    format!(
        r#"
import time
def describe(name='web'):
    return ecs.describe_services(services=[name])['services'][0]
def stable(name='web', attempts=60):
    ecs.get_waiter('services_stable').wait(services=[name], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': attempts}})
    return describe(name)
def messages(name='web'):
    return [e['message'] for e in describe(name)['events']]
{extra}
"#
    )
}

#[test]
fn a_service_keeps_its_desired_count_and_replaces_stopped_tasks() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
s = ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=2)['service']
print('created', s['status'], s['desiredCount'], len(s['deployments']), s['deployments'][0]['rolloutState'])
s = stable()
print('stable', s['runningCount'], s['pendingCount'], s['deployments'][0]['rolloutState'])
arns = ecs.list_tasks(serviceName='web')['taskArns']
print('tasks', len(arns))
t = ecs.describe_tasks(tasks=arns)['tasks'][0]
print('task', t['group'], t['startedBy'] == s['deployments'][0]['id'], t['lastStatus'])
ecs.stop_task(task=arns[0], reason='chaos')
for _ in range(100):
    now = ecs.list_tasks(serviceName='web')['taskArns']
    running = [t for t in ecs.describe_tasks(tasks=now)['tasks'] if t['lastStatus'] == 'RUNNING'] if now else []
    if arns[0] not in now and len(running) == 2:
        break
    time.sleep(0.1)
print('replaced', arns[0] not in now, len(now), 'running', len(running))
s = stable()
print('running', s['runningCount'])
m = messages()
print('started event', any('has started 2 tasks: (task ' in x for x in m))
print('replacement event', any('has started 1 tasks: (task ' in x for x in m))
print('steady event', m.count('(service web) has reached a steady state.') >= 2)
print('completed event', any('deployment completed.' in x for x in m))
print('listed', ecs.list_services()['serviceArns'])
s = ecs.update_service(service='web', desiredCount=3)['service']
print('scaled', stable()['runningCount'])
s = ecs.update_service(service='web', desiredCount=1)['service']
print('scaled in', stable()['runningCount'], len(ecs.list_tasks(serviceName='web')['taskArns']))
try:
    ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=1)
except ecs.exceptions.InvalidParameterException as e:
    print('twice:', e.response['Error']['Message'])
try:
    ecs.update_service(service='ghost', desiredCount=1)
except ecs.exceptions.ServiceNotFoundException as e:
    print('ghost:', e.response['Error']['Code'])
print('missing', ecs.describe_services(services=['ghost'])['failures'][0]['reason'])
try:
    ecs.create_service(serviceName='bad', taskDefinition='web:1', desiredCount=1, deploymentConfiguration={'maximumPercent': 100, 'minimumHealthyPercent': 100})
except ecs.exceptions.InvalidParameterException as e:
    print('bounds:', e.response['Error']['Message'])
"#,
        ),
    );
    assert!(out.contains("created ACTIVE 2 1 IN_PROGRESS"), "{out}");
    assert!(out.contains("stable 2 0 COMPLETED"), "{out}");
    assert!(out.contains("tasks 2"), "{out}");
    assert!(out.contains("task service:web True RUNNING"), "{out}");
    assert!(out.contains("replaced True 2 running 2"), "{out}");
    assert!(out.contains("running 2"), "{out}");
    assert!(out.contains("started event True"), "{out}");
    assert!(out.contains("replacement event True"), "{out}");
    assert!(out.contains("steady event True"), "{out}");
    assert!(out.contains("completed event True"), "{out}");
    assert!(out.contains("service/default/web"), "{out}");
    assert!(out.contains("scaled 3"), "{out}");
    assert!(out.contains("scaled in 1 1"), "{out}");
    assert!(
        out.contains("twice: Creation of service was not idempotent."),
        "{out}"
    );
    assert!(out.contains("ghost: ServiceNotFoundException"), "{out}");
    assert!(out.contains("missing MISSING"), "{out}");
    assert!(
        out.contains("bounds: deploymentConfiguration: maximumPercent (100) must be above"),
        "{out}"
    );
}

/// Samples DescribeServices through a rolling update from web:1 to web:2; prints each broken
/// bound, and how it ended.
fn rolling_update(desired: u32, min: u32, max: u32) -> String {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    boto3(
        &server.endpoint,
        &register(&format!(
            r#"
import math
desired, low, high = {desired}, {min}, {max}
ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=desired,
                   deploymentConfiguration={{'maximumPercent': high, 'minimumHealthyPercent': low}})
stable()
import datetime
updated_at = datetime.datetime.now(datetime.timezone.utc)
ecs.update_service(service='web', taskDefinition='web:2')
most, least, samples = 0, desired, 0
for _ in range(600):
    s = describe()
    samples += 1
    total = s['runningCount'] + s['pendingCount']
    most, least = max(most, total), min(least, s['runningCount'])
    if total > desired * high // 100:
        print('OVER', total)
    if s['runningCount'] < math.ceil(desired * low / 100):
        print('UNDER', s['runningCount'])
    if len(s['deployments']) == 1 and s['runningCount'] == desired and s['taskDefinition'] == v2:
        break
    time.sleep(0.02)
done_at = datetime.datetime.now(datetime.timezone.utc)
s = stable()
print('samples', samples, 'most', most, 'least', least)
# The whole rollout from the server's own timestamps: tasks not yet stopped never above the
# maximum, tasks running (and not told to stop) never below the minimum, at any moment.
everything = ecs.list_tasks(serviceName='web')['taskArns'] + ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns']
tasks = []
for i in range(0, len(everything), 100):
    tasks += ecs.describe_tasks(tasks=everything[i:i+100])['tasks']
far = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
def peak(intervals, ends_first):
    edges = sorted([(a, 1) for a, b in intervals] + [(b, -1) for a, b in intervals],
                   key=lambda e: (e[0], e[1] if ends_first else -e[1]))
    level, levels = 0, []
    for at, step in edges:
        level += step
        levels.append((at, level))
    return levels
alive = [(t['createdAt'], t.get('stoppedAt', far)) for t in tasks]
print('max alive', max(level for _, level in peak(alive, True)), 'bound', desired * high // 100)
serving = [(t['startedAt'], t.get('stoppingAt', far)) for t in tasks if 'startedAt' in t]
rollout = [level for at, level in peak(serving, False) if updated_at <= at < done_at]
print('min serving', min(rollout) if rollout else desired, 'bound', math.ceil(desired * low / 100))
print('ended', s['taskDefinition'] == v2, s['runningCount'], s['deployments'][0]['rolloutState'])
tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web')['taskArns'])['tasks']
print('revisions', sorted(set(t['taskDefinitionArn'].split(':')[-1] for t in tasks)))
stopped = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns'])['tasks']
print('old stopped by', sorted(set(t['stopCode'] for t in stopped)))
"#
        )),
    )
}

/// Reads "max alive N bound M" and "min serving N bound M" and checks both.
fn assert_bounds_held(out: &str) {
    let figures = |prefix: &str| -> (u32, u32) {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {out}"));
        let numbers: Vec<u32> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    };
    let (most, max_bound) = figures("max alive");
    assert!(most <= max_bound, "{out}");
    let (least, min_bound) = figures("min serving");
    assert!(least >= min_bound, "{out}");
}

#[test]
fn a_rolling_update_with_min_50_max_200_stays_within_bounds() {
    let out = rolling_update(4, 50, 200);
    assert!(!out.contains("OVER") && !out.contains("UNDER"), "{out}");
    assert_bounds_held(&out);
    assert!(out.contains("ended True 4 COMPLETED"), "{out}");
    assert!(out.contains("revisions ['2']"), "{out}");
    assert!(
        out.contains("old stopped by ['ServiceSchedulerInitiated']"),
        "{out}"
    );
}

#[test]
fn a_rolling_update_with_min_100_max_150_stays_within_bounds() {
    let out = rolling_update(2, 100, 150);
    assert!(!out.contains("OVER") && !out.contains("UNDER"), "{out}");
    assert_bounds_held(&out);
    assert!(out.contains("ended True 2 COMPLETED"), "{out}");
    assert!(out.contains("revisions ['2']"), "{out}");
}

#[test]
fn a_crash_looping_service_is_throttled_until_a_new_revision() {
    let data = tempfile::tempdir().unwrap();
    // A long first delay: were the throttle not reset by the new revision, the waiter below
    // would give up long before the next attempt.
    let server = Server::start_with(data.path(), &["--service-restart-delay", "120"]);
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
ecs.create_service(serviceName='web', taskDefinition=crashing, desiredCount=2)
for _ in range(200):
    if '(service web) is unable to consistently start tasks successfully.' in messages():
        break
    time.sleep(0.1)
print('throttled', '(service web) is unable to consistently start tasks successfully.' in messages())
stopped = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns'])['tasks']
print('failed', len(stopped), stopped[0]['stopCode'], stopped[0]['containers'][0]['exitCode'], stopped[0]['lastStatus'])
time.sleep(1)
print('no retry yet', len(ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns']))
print('failedTasks', describe()['deployments'][0]['failedTasks'])
ecs.update_service(service='web', taskDefinition=v1)
s = stable(attempts=40)
print('recovered', s['runningCount'], s['taskDefinition'] == v1)
"#,
        ),
    );
    assert!(out.contains("throttled True"), "{out}");
    // They ran (RUNNING, then exited 3 at once): not ECS's "never RUNNING", but a crash loop.
    assert!(
        out.contains("failed 2 EssentialContainerExited 3 STOPPED"),
        "{out}"
    );
    assert!(out.contains("no retry yet 2"), "{out}");
    assert!(out.contains("failedTasks 2"), "{out}");
    assert!(out.contains("recovered 2 True"), "{out}");
}

#[test]
fn the_circuit_breaker_rolls_a_bad_revision_back() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--service-restart-delay", "0.2"]);
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
ecs.create_service(serviceName='web', taskDefinition=v1, desiredCount=2,
    deploymentConfiguration={'maximumPercent': 200, 'minimumHealthyPercent': 50,
                             'deploymentCircuitBreaker': {'enable': True, 'rollback': True}})
stable()
bad = ecs.update_service(service='web', taskDefinition=broken)['service']['deployments'][0]['id']
for _ in range(600):
    s = describe()
    if s['taskDefinition'] == v1 and len(s['deployments']) == 1 and s['runningCount'] == 2:
        break
    time.sleep(0.02)
s = stable()
m = messages()
print('failed deployment', f'(service web) (deployment {bad}) deployment failed: tasks failed to start.' in m)
print('rolled back', s['taskDefinition'] == v1, s['runningCount'], s['deployments'][0]['rolloutState'], s['deployments'][0]['id'] != bad)
print('events', any(f'(deployment {bad}) circuit breaker: rolling back to deployment' in x for x in m))
failed = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns'])['tasks']
print('failed tasks', sum(1 for t in failed if t['startedBy'] == bad) >= 3)
newest = ecs.list_service_deployments(service='web')['serviceDeployments'][0]
d = ecs.describe_service_deployments(serviceDeploymentArns=[newest['serviceDeploymentArn']])['serviceDeployments'][0]
first = ecs.list_service_deployments(service='web')['serviceDeployments'][1]
print('service deployment', d['status'], d['deploymentCircuitBreaker']['status'], d['deploymentCircuitBreaker']['failureCount'] >= 3, d['deploymentCircuitBreaker']['threshold'])
print('rolled back to', d['rollback']['serviceRevisionArn'] == first['targetServiceRevisionArn'])
"#,
        ),
    );
    assert!(
        out.contains("service deployment ROLLBACK_SUCCESSFUL TRIGGERED True 3"),
        "{out}"
    );
    assert!(out.contains("rolled back to True"), "{out}");
    assert!(out.contains("failed deployment True"), "{out}");
    assert!(out.contains("rolled back True 2 COMPLETED True"), "{out}");
    assert!(out.contains("events True"), "{out}");
    assert!(out.contains("failed tasks True"), "{out}");
}

#[test]
fn deleting_a_service_drains_it_to_inactive() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
ecs.create_service(serviceName='web', taskDefinition=v1, desiredCount=2)
stable()
try:
    ecs.delete_service(service='web')
except ecs.exceptions.InvalidParameterException as e:
    print('refused:', e.response['Error']['Message'])
s = ecs.delete_service(service='web', force=True)['service']
print('deleted', s['status'], s['desiredCount'])
ecs.get_waiter('services_inactive').wait(services=['web'], WaiterConfig={'Delay': 0.5, 'MaxAttempts': 60})
print('inactive', describe()['status'], len(ecs.list_tasks(serviceName='web')['taskArns']))
print('unlisted', ecs.list_services()['serviceArns'])
try:
    ecs.update_service(service='web', desiredCount=1)
except ecs.exceptions.ServiceNotActiveException as e:
    print('not active:', e.response['Error']['Code'])
s = ecs.create_service(serviceName='web', taskDefinition=v1, desiredCount=1)['service']
print('again', s['status'], stable()['runningCount'])
"#,
        ),
    );
    assert!(
        out.contains("refused: The service cannot be stopped while it is scaled above 0."),
        "{out}"
    );
    assert!(out.contains("deleted DRAINING 0"), "{out}");
    assert!(out.contains("inactive INACTIVE 0"), "{out}");
    assert!(out.contains("unlisted []"), "{out}");
    assert!(
        out.contains("not active: ServiceNotActiveException"),
        "{out}"
    );
    assert!(out.contains("again ACTIVE 1"), "{out}");
}

#[test]
fn a_deployment_resumes_after_kill_9_without_going_over_maximum() {
    let data = tempfile::tempdir().unwrap();
    // v2 passes its health check only once the test creates `go` in this host directory, so
    // the deployment is surely in progress when the server is killed.
    let gate = tempfile::tempdir().unwrap();
    let health = guest(Wasi::P1, "health").display().to_string();
    let server = Server::start(data.path());
    let setup = format!(
        r#"
v1 = ecs.register_task_definition(family='web', memory='32', containerDefinitions=[
    {{'name': 'app', 'image': '{health}', 'command': ['serve']}}])['taskDefinition']['taskDefinitionArn']
v2 = ecs.register_task_definition(family='web', memory='32',
    volumes=[{{'name': 'gate', 'host': {{'sourcePath': '{gate}'}}}}],
    containerDefinitions=[{{'name': 'app', 'image': '{health}', 'command': ['serve'],
        'mountPoints': [{{'sourceVolume': 'gate', 'containerPath': '/gate'}}],
        'healthCheck': {{'command': ['CMD', 'check', '/gate/go'], 'interval': 5, 'timeout': 2,
                        'retries': 1, 'startPeriod': 300}}}}])['taskDefinition']['taskDefinitionArn']
ecs.create_service(serviceName='web', taskDefinition=v1, desiredCount=3,
                   deploymentConfiguration={{'maximumPercent': 150, 'minimumHealthyPercent': 100}})
stable()
ecs.update_service(service='web', taskDefinition=v2)
# Mid deployment: the new revision's first task runs beside the three old ones (it never turns
# healthy, so the rollout goes no further).
for _ in range(600):
    s = describe()
    if len(s['deployments']) == 2 and s['deployments'][0]['runningCount'] == 1 and s['runningCount'] == 4:
        break
    time.sleep(0.05)
print('mid deployment', len(s['deployments']), s['runningCount'] + s['pendingCount'])
"#,
        gate = gate.path().display()
    );
    let out = boto3(&server.endpoint, &helpers(&setup));
    assert!(out.contains("mid deployment 2 4"), "{out}");
    drop(server); // kill -9
    let server = Server::start(data.path());
    let resume = format!(
        r#"
v2 = 'arn:aws:ecs:us-east-1:000000000000:task-definition/web:2'
most = 0
for _ in range(20):
    s = describe()
    most = max(most, s['runningCount'] + s['pendingCount'])
    time.sleep(0.05)
print('resumed', s['taskDefinition'] == v2, len(s['deployments']))
open('{gate}/go', 'w').write('go')
for _ in range(600):
    s = describe()
    most = max(most, s['runningCount'] + s['pendingCount'])
    if len(s['deployments']) == 1 and s['runningCount'] == 3 and s['taskDefinition'] == v2:
        break
    time.sleep(0.02)
s = stable()
print('completed', s['taskDefinition'] == v2, s['runningCount'], s['deployments'][0]['rolloutState'], 'most', most)
alive = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web')['taskArns'])['tasks']
print('alive', len(alive), sorted(set(t['taskDefinitionArn'].split(':')[-1] for t in alive)))
lost = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web', desiredStatus='STOPPED')['taskArns'])['tasks']
print('lost', len(lost), sorted(set(t['stopCode'] for t in lost)))
"#,
        gate = gate.path().display()
    );
    let out = boto3(&server.endpoint, &helpers(&resume));
    assert!(out.contains("resumed True 2"), "{out}");
    assert!(out.contains("completed True 3 COMPLETED"), "{out}");
    let most: u32 = out
        .split("most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|most| most.parse().ok())
        .unwrap_or(99);
    assert!(most <= 4, "{out}");
    assert!(out.contains("alive 3 ['2']"), "{out}");
    // The four that ran when the server died: recorded lost, not failed.
    assert!(out.contains("lost 4 ['TerminationNotice']"), "{out}");
}

/// Python that registers health-checked task definitions of the `health` guest: `well` (its
/// check passes), `sick` (fails), `hung` (never answers), and `pair` (app waits for db HEALTHY).
fn register_health(extra: &str) -> String {
    let health = guest(Wasi::P1, "health").display().to_string();
    helpers(&format!(
        r#"
# The first check runs as the container starts, racing `serve` writing its ready file: the
# start period keeps a failure then from counting, as ECS's does for an app still starting.
def checked(family, check, command=['serve', '/data/ready'], timeout=2):
    return ecs.register_task_definition(family=family, memory='32',
        volumes=[{{'name': 'data'}}],
        containerDefinitions=[{{'name': 'app', 'image': '{health}', 'command': command,
            'mountPoints': [{{'sourceVolume': 'data', 'containerPath': '/data'}}],
            'healthCheck': {{'command': ['CMD'] + check, 'interval': 5, 'timeout': timeout, 'retries': 1, 'startPeriod': 1}}}}])['taskDefinition']['taskDefinitionArn']
well = checked('well', ['check', '/data/ready'])
sick = checked('sick', ['check', '/data/never'])
hung = checked('hung', ['hang'])
def pair(family, check):
    return ecs.register_task_definition(family=family, memory='64', volumes=[{{'name': 'data'}}],
        containerDefinitions=[
            {{'name': 'db', 'image': '{health}', 'command': ['serve', '/data/ready'], 'essential': False,
              'mountPoints': [{{'sourceVolume': 'data', 'containerPath': '/data'}}],
              'healthCheck': {{'command': ['CMD', 'check', check], 'interval': 5, 'timeout': 2, 'retries': 1, 'startPeriod': 1}}}},
            {{'name': 'app', 'image': '{health}', 'command': ['serve'],
              'dependsOn': [{{'containerName': 'db', 'condition': 'HEALTHY'}}]}}])
pair('pair-ok', '/data/ready')
pair('pair-sick', '/data/never')
def wait_task(arn, until, attempts=300):
    for _ in range(attempts):
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if until(t):
            return t
        time.sleep(0.05)
    return t
{extra}
"#
    ))
}

#[test]
fn health_checks_report_healthy_and_unhealthy_tasks_are_replaced_after_the_grace_period() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register_health(
            r#"
ecs.create_service(serviceName='well', taskDefinition='well', desiredCount=1)
s = stable('well')
arn = ecs.list_tasks(serviceName='well')['taskArns'][0]
t = wait_task(arn, lambda t: t['healthStatus'] != 'UNKNOWN', attempts=400)
print('well', s['runningCount'], t['healthStatus'], t['containers'][0]['healthStatus'])

ecs.create_service(serviceName='sick', taskDefinition='sick', desiredCount=1, healthCheckGracePeriodSeconds=2)
first = None
for _ in range(400):
    stopped = ecs.list_tasks(serviceName='sick', desiredStatus='STOPPED')['taskArns']
    if stopped:
        first = ecs.describe_tasks(tasks=stopped)['tasks'][0]
        break
    time.sleep(0.05)
print('sick stopped', first['stoppedReason'], first['stopCode'], first['healthStatus'])
print('grace honoured', (first['stoppingAt'] - first['startedAt']).total_seconds() >= 2)
status = None
for _ in range(200):
    alive = ecs.list_tasks(serviceName='sick')['taskArns']
    status = ecs.describe_tasks(tasks=alive)['tasks'][0]['lastStatus'] if alive else None
    if alive and alive[0] != first['taskArn'] and status == 'RUNNING':
        break
    time.sleep(0.05)
print('replaced', bool(alive) and alive[0] != first['taskArn'], status)
for _ in range(200):
    if describe('sick')['deployments'][0]['failedTasks'] >= 1:
        break
    time.sleep(0.05)
print('failed counted', describe('sick')['deployments'][0]['failedTasks'] >= 1)

hung_task = ecs.run_task(taskDefinition='hung')['tasks'][0]['taskArn']
t = wait_task(hung_task, lambda t: t['healthStatus'] == 'UNHEALTHY', attempts=400)
print('hung', t['healthStatus'], t['lastStatus'])
ecs.stop_task(task=hung_task)
"#,
        ),
    );
    assert!(out.contains("well 1 HEALTHY HEALTHY"), "{out}");
    assert!(
        out.contains(
            "sick stopped Task failed container health checks ServiceSchedulerInitiated UNHEALTHY"
        ),
        "{out}"
    );
    assert!(out.contains("grace honoured True"), "{out}");
    assert!(out.contains("replaced True RUNNING"), "{out}");
    assert!(out.contains("failed counted True"), "{out}");
    assert!(out.contains("hung UNHEALTHY RUNNING"), "{out}");
}

#[test]
fn depends_on_healthy_waits_for_the_health_check() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register_health(
            r#"
ok = ecs.run_task(taskDefinition='pair-ok')['tasks'][0]['taskArn']
t = wait_task(ok, lambda t: all(c['lastStatus'] == 'RUNNING' for c in t['containers']))
print('ok', sorted((c['name'], c['lastStatus'], c['healthStatus']) for c in t['containers']))
sick = ecs.run_task(taskDefinition='pair-sick')['tasks'][0]['taskArn']
t = wait_task(sick, lambda t: any(c['healthStatus'] == 'UNHEALTHY' for c in t['containers']))
time.sleep(0.5)
t = ecs.describe_tasks(tasks=[sick])['tasks'][0]
print('sick', sorted((c['name'], c['lastStatus'], c['healthStatus']) for c in t['containers']))
for arn in [ok, sick]:
    ecs.stop_task(task=arn)
"#,
        ),
    );
    assert!(
        out.contains("ok [('app', 'RUNNING', 'UNKNOWN'), ('db', 'RUNNING', 'HEALTHY')]"),
        "{out}"
    );
    assert!(
        out.contains("sick [('app', 'PENDING', 'UNKNOWN'), ('db', 'RUNNING', 'UNHEALTHY')]"),
        "{out}"
    );
}

#[test]
fn service_deployments_and_revisions_follow_the_scheduler_and_roll_back_on_request() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
def deployments(**kw):
    return ecs.list_service_deployments(service='web', **kw)['serviceDeployments']
def one(arn):
    return ecs.describe_service_deployments(serviceDeploymentArns=[arn])['serviceDeployments'][0]
def until(arn, statuses, attempts=200):
    for _ in range(attempts):
        d = one(arn)
        if d['status'] in statuses:
            return d
        time.sleep(0.1)
    return d
ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=2)
stable()
first = deployments()[0]
print('first arn', first['serviceDeploymentArn'].startswith('arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/'))
print('first', until(first['serviceDeploymentArn'], ['SUCCESSFUL'])['status'])
rev1 = first['targetServiceRevisionArn']
print('rev arn', rev1.startswith('arn:aws:ecs:us-east-1:000000000000:service-revision/default/web/'))
r = ecs.describe_service_revisions(serviceRevisionArns=[rev1])['serviceRevisions'][0]
print('revision', r['taskDefinition'].endswith('web:1'), r['launchType'], r['containerImages'][0]['containerName'])
print('current', describe()['currentServiceDeployment'] == first['serviceDeploymentArn'])
# A deployment whose tasks cannot start, with no circuit breaker: only a stop ends it.
ecs.update_service(service='web', taskDefinition=broken)
listed = deployments()
second = listed[0]
print('listed', len(listed), listed[1]['serviceDeploymentArn'] == first['serviceDeploymentArn'])
d = one(second['serviceDeploymentArn'])
print('second', d['status'], d['sourceServiceRevisions'][0]['arn'] == rev1, d['targetServiceRevision']['arn'] != rev1)
print('breaker', d['deploymentCircuitBreaker']['status'])
print('filtered', len(deployments(status=['SUCCESSFUL'])), len(deployments(status=['IN_PROGRESS'])))
import datetime
print('window', len(deployments(createdAt={'after': datetime.datetime(2100, 1, 1)})), len(deployments(createdAt={'before': datetime.datetime(2100, 1, 1)})))
page = ecs.list_service_deployments(service='web', maxResults=1)
rest = ecs.list_service_deployments(service='web', maxResults=1, nextToken=page['nextToken'])
print('paged', len(page['serviceDeployments']), rest['serviceDeployments'][0]['serviceDeploymentArn'] == first['serviceDeploymentArn'], 'nextToken' in rest)
try:
    ecs.continue_service_deployment(serviceDeploymentArn=second['serviceDeploymentArn'], hookId='h1')
except ecs.exceptions.InvalidParameterException as e:
    print('continue: InvalidParameterException')
ecs.stop_service_deployment(serviceDeploymentArn=second['serviceDeploymentArn'], stopType='ROLLBACK')
d = until(second['serviceDeploymentArn'], ['ROLLBACK_SUCCESSFUL', 'ROLLBACK_FAILED'], attempts=300)
print('rolled back', d['status'], d['rollback']['serviceRevisionArn'] == rev1, 'finishedAt' in d)
s = stable()
print('service', s['taskDefinition'].endswith('web:1'), s['runningCount'])
try:
    ecs.stop_service_deployment(serviceDeploymentArn=second['serviceDeploymentArn'])
except ecs.exceptions.ConflictException as e:
    print('again: ConflictException')
ghost = second['serviceDeploymentArn'][:-3] + 'zzz'
try:
    ecs.stop_service_deployment(serviceDeploymentArn=ghost)
except ecs.exceptions.ServiceDeploymentNotFoundException:
    print('ghost: ServiceDeploymentNotFoundException')
print('missing', ecs.describe_service_deployments(serviceDeploymentArns=[ghost])['failures'][0]['reason'])
# ABORT stops a deployment where it is.
ecs.update_service(service='web', taskDefinition=v2, deploymentConfiguration={'maximumPercent': 200, 'minimumHealthyPercent': 100})
third = deployments()[0]
ecs.stop_service_deployment(serviceDeploymentArn=third['serviceDeploymentArn'], stopType='ABORT')
d = until(third['serviceDeploymentArn'], ['STOPPED', 'SUCCESSFUL'])
print('aborted', d['status'], d['status'] == 'SUCCESSFUL' or 'stoppedAt' in d)
try:
    ecs.list_service_deployments(service='ghost')
except ecs.exceptions.ServiceNotFoundException:
    print('no service: ServiceNotFoundException')
"#,
        ),
    );
    for line in [
        "first arn True",
        "first SUCCESSFUL",
        "rev arn True",
        "revision True FARGATE app",
        "current True",
        "listed 2 True",
        "second IN_PROGRESS True True",
        "breaker DISABLED",
        "filtered 1 1",
        "window 0 2",
        "paged 1 True False",
        "continue: InvalidParameterException",
        "rolled back ROLLBACK_SUCCESSFUL True True",
        "service True 2",
        "again: ConflictException",
        "ghost: ServiceDeploymentNotFoundException",
        "missing MISSING",
        "no service: ServiceNotFoundException",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    // The race between a quick rollout and the request is ECS's too: either it stopped where
    // it was, or it had already finished.
    assert!(
        out.contains("aborted STOPPED True") || out.contains("aborted SUCCESSFUL True"),
        "{out}"
    );
}

#[test]
fn a_protected_task_survives_a_scale_in_until_its_protection_ends() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
def alive():
    arns = ecs.list_tasks(serviceName='web', desiredStatus='RUNNING')['taskArns']
    return sorted(arns)
ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=3)
stable()
tasks = alive()
keep = tasks[:2]
p = ecs.update_task_protection(cluster='default', tasks=keep, protectionEnabled=True)
print('protected', [t['protectionEnabled'] for t in p['protectedTasks']], all('expirationDate' in t for t in p['protectedTasks']))
g = ecs.get_task_protection(cluster='default', tasks=[tasks[2]])['protectedTasks'][0]
print('unprotected', g['protectionEnabled'])
ecs.update_service(service='web', desiredCount=1)
for _ in range(200):
    if alive() == sorted(keep):
        break
    time.sleep(0.1)
print('after scale-in', alive() == sorted(keep))
# It stays so: the scheduler passes (10 s resync at the latest) and keeps both.
for _ in range(5):
    ecs.update_service(service='web', desiredCount=1)
    time.sleep(0.2)
print('still', alive() == sorted(keep))
ecs.update_task_protection(cluster='default', tasks=[keep[0]], protectionEnabled=False)
for _ in range(200):
    if alive() == [keep[1]]:
        break
    time.sleep(0.1)
print('released', alive() == [keep[1]])
# StopTask still stops a protected task; the service replaces it.
ecs.stop_task(task=keep[1], reason='by hand')
for _ in range(200):
    now = alive()
    if len(now) == 1 and now[0] != keep[1]:
        break
    time.sleep(0.1)
print('stopped by hand', keep[1] not in alive(), len(alive()))
solo = ecs.run_task(taskDefinition='web:1')['tasks'][0]['taskArn']
f = ecs.update_task_protection(cluster='default', tasks=[solo, 'ghost'], protectionEnabled=True, expiresInMinutes=5)['failures']
print('failures', sorted(x['reason'] for x in f))
try:
    ecs.update_task_protection(cluster='default', tasks=alive(), protectionEnabled=True, expiresInMinutes=2881)
except ecs.exceptions.InvalidParameterException as e:
    print('bounds:', e.response['Error']['Message'])
ecs.stop_task(task=solo)
"#,
        ),
    );
    for line in [
        "protected [True, True] True",
        "unprotected False",
        "after scale-in True",
        "still True",
        "released True",
        "stopped by hand True 1",
        "failures ['MISSING', 'TASK_NOT_VALID']",
        "bounds: expiresInMinutes: must be 1 to 2880 (got 2881)",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}

#[test]
fn services_are_listed_by_their_service_connect_namespace() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
ns = 'arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-abc123'
ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=0,
                   serviceConnectConfiguration={'enabled': True, 'namespace': 'shop'})
ecs.create_service(serviceName='api', taskDefinition='web:1', desiredCount=0,
                   serviceConnectConfiguration={'enabled': True, 'namespace': ns})
ecs.create_service(serviceName='other', taskDefinition='web:1', desiredCount=0)
print('shop', [a.split('/')[-1] for a in ecs.list_services_by_namespace(namespace='shop')['serviceArns']])
print('by arn', [a.split('/')[-1] for a in ecs.list_services_by_namespace(namespace=ns)['serviceArns']])
try:
    ecs.list_services_by_namespace(namespace='nowhere')
except ecs.exceptions.NamespaceNotFoundException as e:
    print('nowhere: NamespaceNotFoundException')
ecs.update_service(service='api', serviceConnectConfiguration={'enabled': True, 'namespace': 'shop'})
page = ecs.list_services_by_namespace(namespace='shop', maxResults=1)
print('paged', len(page['serviceArns']), 'nextToken' in page)
# A cluster's default namespace: named by the cluster, it exists before any service uses it.
ecs.create_cluster(clusterName='mall', serviceConnectDefaults={'namespace': 'mall-ns'})
print('empty', ecs.list_services_by_namespace(namespace='mall-ns')['serviceArns'])
ecs.create_service(cluster='mall', serviceName='cart', taskDefinition='web:1', desiredCount=0,
                   serviceConnectConfiguration={'enabled': True})
ecs.create_service(cluster='mall', serviceName='plain', taskDefinition='web:1', desiredCount=0)
print('by default', [a.split('/')[-1] for a in ecs.list_services_by_namespace(namespace='mall-ns')['serviceArns']])
"#,
        ),
    );
    for line in [
        "shop ['web']",
        "by arn ['api']",
        "nowhere: NamespaceNotFoundException",
        "paged 1 True",
        "empty []",
        "by default ['cart']",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}

#[test]
fn every_create_service_member_is_kept_returned_and_updatable() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
members = dict(
    loadBalancers=[{'targetGroupArn': 'arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/1', 'containerName': 'app', 'containerPort': 8080}],
    serviceRegistries=[{'registryArn': 'arn:aws:servicediscovery:us-east-1:000000000000:service/srv-1', 'port': 80}],
    platformVersion='LATEST',
    networkConfiguration={'awsvpcConfiguration': {'subnets': ['subnet-1'], 'assignPublicIp': 'DISABLED'}},
    enableECSManagedTags=True, propagateTags='SERVICE', enableExecuteCommand=True,
    healthCheckGracePeriodSeconds=30,
    serviceConnectConfiguration={'enabled': True, 'namespace': 'shop', 'services': [{'portName': 'http', 'clientAliases': [{'port': 80}]}]},
    volumeConfigurations=[{'name': 'data', 'managedEBSVolume': {'roleArn': 'arn:aws:iam::000000000000:role/ebs', 'sizeInGiB': 10}}],
    availabilityZoneRebalancing='DISABLED',
    deploymentConfiguration={'maximumPercent': 200, 'minimumHealthyPercent': 50, 'bakeTimeInMinutes': 5, 'strategy': 'ROLLING',
                             'alarms': {'alarmNames': ['high-errors'], 'rollback': True, 'enable': True},
                             'deploymentCircuitBreaker': {'enable': True, 'rollback': True}},
)
s = ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=1, **members)['service']
d = describe()
for name, value in members.items():
    if name == 'deploymentConfiguration':
        got = {k: d[name][k] for k in value}
    elif name in d:
        got = d[name]
    else:
        # ECS's Service shape shows these on its deployments only.
        got = d['deployments'][0][name]
    print(name, got == value)
print('defaults', d['deploymentController'], d['schedulingStrategy'])
ecs.tag_resource(resourceArn=s['serviceArn'], tags=[{'key': 'team', 'value': 'web'}])
ecs.update_service(service='web', forceNewDeployment=True)
for _ in range(300):
    arns = ecs.list_tasks(serviceName='web', desiredStatus='RUNNING')['taskArns']
    tasks = ecs.describe_tasks(tasks=arns, include=['TAGS'])['tasks'] if arns else []
    if len(tasks) == 1 and tasks[0]['startedBy'] == describe()['deployments'][0]['id']:
        break
    time.sleep(0.1)
print('task tags', sorted((t['key'], t['value']) for t in tasks[0].get('tags', [])))
before = describe()['deployments'][0]['id']
ecs.update_service(service='web', enableExecuteCommand=False, propagateTags='NONE', availabilityZoneRebalancing='ENABLED')
d = describe()
print('updated', d['enableExecuteCommand'], d['propagateTags'], d['availabilityZoneRebalancing'], d['deployments'][0]['id'] == before)
ecs.update_service(service='web', loadBalancers=[])
d = describe()
print('lb change deploys', d['loadBalancers'], d['deployments'][0]['id'] != before)
rev = ecs.describe_service_revisions(serviceRevisionArns=[d['currentServiceRevisions'][0]['arn']])['serviceRevisions'][0]
print('revision members', rev['loadBalancers'], rev['serviceRegistries'] == members['serviceRegistries'], rev['volumeConfigurations'] == members['volumeConfigurations'])
def error(**kw):
    try:
        ecs.create_service(serviceName='bad', taskDefinition='web:1', **kw)
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ': ' + e.response['Error']['Message']
import urllib.request, urllib.error
def loose_error(**kw):
    # Straight to the endpoint: boto3 would refuse to send these.
    body = dict(serviceName='bad', taskDefinition='web:1', **kw)
    request = urllib.request.Request(ecs.meta.endpoint_url + '/', data=json.dumps(body).encode(), headers={
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': 'AmazonEC2ContainerServiceV20141113.CreateService'})
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as e:
        error = json.loads(e.read())
        return error['__type'] + ': ' + error['message']
print('type:', loose_error(loadBalancers=[{'containerPort': 'eighty'}]))
print('unknown:', loose_error(bogusMember=1))
print('nested unknown:', loose_error(deploymentConfiguration={'maximumPercent': 200, 'colour': 'blue'}))
print('strategy:', error(deploymentConfiguration={'strategy': 'BLUE_GREEN'}))
print('hooks:', error(deploymentConfiguration={'lifecycleHooks': [{'targetType': 'PAUSE', 'lifecycleStages': ['POST_SCALE_UP']}]}))
print('codedeploy:', error(deploymentController={'type': 'CODE_DEPLOY'}))
"#,
        ),
    );
    for member in [
        "loadBalancers",
        "serviceRegistries",
        "platformVersion",
        "networkConfiguration",
        "enableECSManagedTags",
        "propagateTags",
        "enableExecuteCommand",
        "healthCheckGracePeriodSeconds",
        "serviceConnectConfiguration",
        "volumeConfigurations",
        "availabilityZoneRebalancing",
        "deploymentConfiguration",
    ] {
        assert!(out.contains(&format!("{member} True")), "{member}:\n{out}");
    }
    for line in [
        "defaults {'type': 'ECS'} REPLICA",
        "task tags [('aws:ecs:clusterName', 'default'), ('aws:ecs:serviceName', 'web'), ('team', 'web')]",
        "updated False NONE ENABLED True",
        "lb change deploys [] True",
        "revision members [] True True",
        "type: InvalidParameterException: loadBalancers[0].containerPort",
        "unknown: InvalidParameterException: bogusMember: not a member of CreateService",
        "nested unknown: InvalidParameterException: deploymentConfiguration",
        "strategy: UnsupportedFeatureException",
        "hooks: UnsupportedFeatureException",
        "codedeploy: UnsupportedFeatureException",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}

#[test]
fn task_sets_of_an_external_service_run_their_share_of_tasks() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &register(
            r#"
def sets(*ids, **kw):
    r = ecs.describe_task_sets(cluster='default', service='ext', **({'taskSets': list(ids)} if ids else {}), **kw)
    return r['taskSets'], r['failures']
def settle(arn, running):
    for _ in range(300):
        found, _ = sets(arn)
        if found and found[0]['stabilityStatus'] == 'STEADY_STATE' and found[0]['runningCount'] == running:
            return found[0]
        time.sleep(0.1)
    return found[0] if found else None
ecs.create_service(serviceName='web', taskDefinition='web:1', desiredCount=0)
try:
    ecs.create_task_set(service='web', cluster='default', taskDefinition='web:1')
except ecs.exceptions.InvalidParameterException as e:
    print('not external: InvalidParameterException')
s = ecs.create_service(serviceName='ext', desiredCount=4, deploymentController={'type': 'EXTERNAL'})['service']
print('service', s['deploymentController'], s['deployments'])
blue = ecs.create_task_set(service='ext', cluster='default', taskDefinition='web:1', externalId='blue',
                           scale={'value': 50, 'unit': 'PERCENT'}, tags=[{'key': 'colour', 'value': 'blue'}])['taskSet']
print('blue', blue['taskSetArn'].startswith('arn:aws:ecs:us-east-1:000000000000:task-set/default/ext/ecs-svc/'), blue['status'], blue['computedDesiredCount'], blue['externalId'])
b = settle(blue['taskSetArn'], 2)
print('blue steady', b['runningCount'], b['pendingCount'], b['stabilityStatus'])
tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='ext')['taskArns'])['tasks']
print('started by', sorted(set(t['startedBy'] for t in tasks)) == [blue['id']], len(tasks))
green = ecs.create_task_set(service='ext', cluster='default', taskDefinition=v2, scale={'value': 100, 'unit': 'PERCENT'})['taskSet']
g = settle(green['id'], 4)
print('green steady', g['runningCount'], g['computedDesiredCount'])
print('service counts', describe('ext')['runningCount'], len(describe('ext')['taskSets']), 'tags' in describe('ext')['taskSets'][0])
p = ecs.update_service_primary_task_set(cluster='default', service='ext', primaryTaskSet=green['taskSetArn'])['taskSet']
found, _ = sets()
print('primary', p['status'], sorted(t['status'] for t in found), describe('ext')['taskDefinition'] == v2)
ecs.update_task_set(cluster='default', service='ext', taskSet=blue['id'], scale={'value': 0, 'unit': 'PERCENT'})
b = settle(blue['id'], 0)
print('blue scaled in', b['runningCount'], b['computedDesiredCount'])
try:
    ecs.delete_task_set(cluster='default', service='ext', taskSet=green['id'])
except ecs.exceptions.InvalidParameterException as e:
    print('not forced: InvalidParameterException')
d = ecs.delete_task_set(cluster='default', service='ext', taskSet=blue['id'])['taskSet']
print('deleted', d['status'])
for _ in range(200):
    _, failures = sets(blue['id'])
    if failures:
        break
    time.sleep(0.1)
print('gone', [f['reason'] for f in failures])
found, _ = sets(green['id'])
print('no tags unless asked', 'tags' in found[0])
ecs.tag_resource(resourceArn=green['taskSetArn'], tags=[{'key': 'colour', 'value': 'green'}])
found, _ = sets(green['id'], include=['TAGS'])
print('tags', found[0]['tags'], ecs.list_tags_for_resource(resourceArn=green['taskSetArn'])['tags'])
ecs.untag_resource(resourceArn=green['taskSetArn'], tagKeys=['colour'])
print('untagged', ecs.list_tags_for_resource(resourceArn=green['taskSetArn'])['tags'])
print('service tags untouched', ecs.list_tags_for_resource(resourceArn=s['serviceArn'])['tags'])
try:
    ecs.update_task_set(cluster='default', service='ext', taskSet='ecs-svc/0000', scale={'value': 10, 'unit': 'PERCENT'})
except ecs.exceptions.TaskSetNotFoundException:
    print('ghost: TaskSetNotFoundException')
ecs.update_service(service='ext', desiredCount=2)
g = settle(green['id'], 2)
print('follows desired', g['computedDesiredCount'], g['runningCount'])
ecs.delete_service(service='ext', force=True)
try:
    ecs.create_task_set(service='ext', cluster='default', taskDefinition='web:1')
except ecs.exceptions.ServiceNotActiveException:
    print('deleted: ServiceNotActiveException')
"#,
        ),
    );
    for line in [
        "not external: InvalidParameterException",
        "service {'type': 'EXTERNAL'} []",
        "blue True ACTIVE 2 blue",
        "blue steady 2 0 STEADY_STATE",
        "started by True 2",
        "green steady 4 4",
        "service counts 6 2 False",
        "primary PRIMARY ['ACTIVE', 'PRIMARY'] True",
        "blue scaled in 0 0",
        "not forced: InvalidParameterException",
        "deleted DRAINING",
        "gone ['MISSING']",
        "no tags unless asked False",
        "tags [{'key': 'colour', 'value': 'green'}] [{'key': 'colour', 'value': 'green'}]",
        "untagged []",
        "service tags untouched []",
        "ghost: TaskSetNotFoundException",
        "follows desired 2 2",
        "deleted: ServiceNotActiveException",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}
