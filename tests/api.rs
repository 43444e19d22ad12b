//! The ECS JSON API through real AWS clients (boto3), against the real `wasmgate server`:
//! clusters, task definitions, paging, error shapes, and state that survives kill -9.

mod common;

use common::aws::{aws_ecs, boto3};
use common::server::Server;

#[test]
fn clusters_through_boto3() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        r#"
c = ecs.create_cluster(clusterName='prod', tags=[{'key': 'team', 'value': 'a'}])['cluster']
print(c['clusterArn'], c['status'])
again = ecs.create_cluster(clusterName='prod')['cluster']
print('idempotent', again['clusterArn'] == c['clusterArn'])
d = ecs.describe_clusters(clusters=['prod', 'arn:aws:ecs:us-east-1:000000000000:cluster/default', 'ghost'])
print('described', sorted(x['clusterName'] for x in d['clusters']), [f['reason'] for f in d['failures']])
pages = list(ecs.get_paginator('list_clusters').paginate(PaginationConfig={'PageSize': 1}))
print('pages', len(pages), sum(len(p['clusterArns']) for p in pages))
print('deleted', ecs.delete_cluster(cluster='prod')['cluster']['status'])
try:
    ecs.delete_cluster(cluster='prod')
except ecs.exceptions.ClusterNotFoundException as e:
    print('not found:', e.response['Error']['Message'])
try:
    ecs.create_cluster(clusterName='bad name!')
except ecs.exceptions.InvalidParameterException as e:
    print('invalid:', e.response['Error']['Message'])
"#,
    );
    assert!(
        out.contains("arn:aws:ecs:us-east-1:000000000000:cluster/prod ACTIVE"),
        "{out}"
    );
    assert!(out.contains("idempotent True"), "{out}");
    assert!(
        out.contains("described ['default', 'prod'] ['MISSING']"),
        "{out}"
    );
    assert!(out.contains("pages 2 2"), "{out}");
    assert!(out.contains("deleted INACTIVE"), "{out}");
    assert!(out.contains("not found: Cluster not found."), "{out}");
    assert!(
        out.contains("invalid: clusterName: must be 1-255 letters"),
        "{out}"
    );
}

#[test]
fn task_definitions_through_boto3_and_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        r#"
td = dict(family='web', memory='512', containerDefinitions=[{'name': 'app', 'image': 'app.wasm',
          'logConfiguration': {'logDriver': 'awslogs', 'options': {'awslogs-group': 'g'}}}])
r1 = ecs.register_task_definition(**td)['taskDefinition']
r2 = ecs.register_task_definition(**td)['taskDefinition']
print('revisions', r1['revision'], r2['revision'], r2['taskDefinitionArn'], r2['status'])
print('kept', r2['containerDefinitions'][0]['logConfiguration']['options']['awslogs-group'])
print('latest', ecs.describe_task_definition(taskDefinition='web')['taskDefinition']['revision'])
print('by rev', ecs.describe_task_definition(taskDefinition='web:1')['taskDefinition']['revision'])
print('by arn', ecs.describe_task_definition(taskDefinition=r1['taskDefinitionArn'])['taskDefinition']['revision'])
bad = dict(family='web', memory='512', containerDefinitions=[{'name': 'app', 'image': 'a.wasm', 'memory': 256, 'memoryReservation': 512}])
try:
    ecs.register_task_definition(**bad)
except ecs.exceptions.ClientException as e:
    print('rejected:', e.response['Error']['Message'])
print('dereg', ecs.deregister_task_definition(taskDefinition='web:2')['taskDefinition']['status'])
print('latest now', ecs.describe_task_definition(taskDefinition='web')['taskDefinition']['revision'])
print('active', ecs.list_task_definitions(familyPrefix='we')['taskDefinitionArns'])
print('inactive', len(ecs.list_task_definitions(status='INACTIVE')['taskDefinitionArns']))
print('families', ecs.list_task_definition_families()['families'])
d = ecs.delete_task_definitions(taskDefinitions=['web:2', 'web:1'])
print('delete', [t['status'] for t in d['taskDefinitions']], len(d['failures']))
"#,
    );
    assert!(
        out.contains(
            "revisions 1 2 arn:aws:ecs:us-east-1:000000000000:task-definition/web:2 ACTIVE"
        ),
        "{out}"
    );
    assert!(out.contains("kept g"), "{out}");
    assert!(out.contains("latest 2\nby rev 1\nby arn 1\n"), "{out}");
    assert!(out.contains("rejected: Invalid task definition: containerDefinitions[0].memoryReservation: must be below memory (512 >= 256)"), "{out}");
    assert!(out.contains("dereg INACTIVE\nlatest now 1\n"), "{out}");
    assert!(
        out.contains("active ['arn:aws:ecs:us-east-1:000000000000:task-definition/web:1']"),
        "{out}"
    );
    assert!(out.contains("inactive 1"), "{out}");
    assert!(out.contains("families ['web']"), "{out}");
    assert!(out.contains("delete ['DELETE_IN_PROGRESS'] 1"), "{out}");

    // kill -9, restart on the same data directory: everything is still there.
    drop(server);
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        r#"
print(ecs.describe_task_definition(taskDefinition='web:1')['taskDefinition']['status'])
print(ecs.register_task_definition(family='web', memory='64', containerDefinitions=[{'name': 'a', 'image': 'a.wasm'}])['taskDefinition']['revision'])
"#,
    );
    assert_eq!(out, "ACTIVE\n3\n", "revisions continue after a restart");
}

#[test]
fn malformed_requests_get_ecs_error_shapes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let address = server.endpoint.trim_start_matches("http://");
    let call = |target: &str, body: &str| -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST / HTTP/1.0\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let unknown = call("AmazonEC2ContainerServiceV20141113.Frobnicate", "{}");
    assert!(
        unknown.starts_with("HTTP/1.0 400") || unknown.starts_with("HTTP/1.1 400"),
        "{unknown}"
    );
    assert!(unknown.contains(r#"{"__type":"UnknownOperationException","message":"Unknown or unsupported operation: Frobnicate"}"#), "{unknown}");
    let broken = call(
        "AmazonEC2ContainerServiceV20141113.ListClusters",
        "{not json",
    );
    assert!(broken.contains("SerializationException"), "{broken}");
    let missing = call(
        "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition",
        "{}",
    );
    assert!(
        missing.contains(
            r#""__type":"InvalidParameterException","message":"missing field `taskDefinition`""#
        ),
        "{missing}"
    );
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(2 << 20));
    let too_big = call("AmazonEC2ContainerServiceV20141113.ListClusters", &big);
    assert!(
        too_big.starts_with("HTTP/1.0 413")
            && too_big.contains("RequestEntityTooLargeException")
            && too_big.contains("over the limit of 1048576 bytes"),
        "{too_big}"
    );
    // The server is still up.
    assert!(
        call("AmazonEC2ContainerServiceV20141113.ListClusters", "{}").contains("cluster/default")
    );
}

#[test]
fn tasks_run_report_and_stop_through_boto3() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let hello = common::guest(common::Wasi::P2, "hello")
        .display()
        .to_string();
    let graceful = common::guest(common::Wasi::P1, "graceful")
        .display()
        .to_string();
    let sleep = common::guest(common::Wasi::P1, "sleep")
        .display()
        .to_string();
    let script = format!(
        r#"
ecs.register_task_definition(family='hello', memory='64', containerDefinitions=[{{'name': 'hello', 'image': '{hello}'}}])
ecs.register_task_definition(family='graceful', memory='64', containerDefinitions=[{{'name': 'g', 'image': '{graceful}'}}])
ecs.register_task_definition(family='sleepy', memory='64', containerDefinitions=[{{'name': 's', 'image': '{sleep}'}}])
run = ecs.run_task(taskDefinition='hello', count=2, startedBy='test')
arns = [t['taskArn'] for t in run['tasks']]
print('run', len(arns), run['tasks'][0]['lastStatus'], run['tasks'][0]['desiredStatus'])
ecs.get_waiter('tasks_stopped').wait(tasks=arns, WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
t = ecs.describe_tasks(tasks=arns)['tasks'][0]
c = t['containers'][0]
print('stopped', t['lastStatus'], t['stopCode'], c['exitCode'], c['imageDigest'][:7])
print('timestamps', all(k in t for k in ['createdAt', 'pullStartedAt', 'pullStoppedAt', 'startedAt', 'stoppingAt', 'executionStoppedAt', 'stoppedAt']))
g = ecs.run_task(taskDefinition='graceful')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[g], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print('listed', g in ecs.list_tasks(family='graceful')['taskArns'])
s = ecs.stop_task(task=g, reason='enough for today')['task']
print('stopping', s['desiredStatus'])
ecs.get_waiter('tasks_stopped').wait(tasks=[g], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
t = ecs.describe_tasks(tasks=[g])['tasks'][0]
print('user stop', t['stopCode'], t['stoppedReason'], t['containers'][0]['exitCode'])
print('stopped list', g in ecs.list_tasks(desiredStatus='STOPPED')['taskArns'])
o = ecs.run_task(taskDefinition='hello', overrides={{'containerOverrides': [{{'name': 'hello', 'command': ['x'], 'environment': [{{'name': 'A', 'value': 'b'}}]}}]}})
print('override ok', o['tasks'][0]['overrides']['containerOverrides'][0]['name'])
d = ecs.describe_tasks(tasks=['0123456789abcdef0123456789abcdef'])
print('missing', d['failures'][0]['reason'])
z = ecs.run_task(taskDefinition='sleepy')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[z], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print('sleepy', z)
"#
    );
    let out = boto3(&server.endpoint, &script);
    assert!(out.contains("run 2 PROVISIONING RUNNING"), "{out}");
    assert!(
        out.contains("stopped STOPPED EssentialContainerExited 0 sha256:"),
        "{out}"
    );
    assert!(out.contains("timestamps True"), "{out}");
    assert!(out.contains("listed True"), "{out}");
    assert!(out.contains("stopping STOPPED"), "{out}");
    assert!(
        out.contains("user stop UserInitiated enough for today 0"),
        "{out}"
    );
    assert!(out.contains("stopped list True"), "{out}");
    assert!(out.contains("override ok hello"), "{out}");
    assert!(out.contains("missing MISSING"), "{out}");
    let sleepy = out
        .lines()
        .find_map(|l| l.strip_prefix("sleepy "))
        .unwrap()
        .to_string();

    // kill -9 while a task runs: after the restart it is recorded as stopped, with the reason.
    drop(server);
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &format!(
            "t = ecs.describe_tasks(tasks=['{sleepy}'])['tasks'][0]\nprint(t['lastStatus'], '|', t['stoppedReason'])\n"
        ),
    );
    assert!(
        out.starts_with("STOPPED | Task stopped because the agent on host")
            && out.contains("restarted"),
        "{out}"
    );
}

#[test]
fn overrides_stay_within_the_task_and_stats_show_the_limit_it_gets() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let graceful = common::guest(common::Wasi::P1, "graceful")
        .display()
        .to_string();
    let script = format!(
        r#"
import json, urllib.request
ecs.register_task_definition(family='small', memory='16', cpu='256', containerDefinitions=[{{'name': 'g', 'image': '{graceful}', 'cpu': 128}}])
def refused(overrides):
    try:
        ecs.run_task(taskDefinition='small', overrides=overrides)
        return 'accepted'
    except ecs.exceptions.InvalidParameterException as e:
        return e.response['Error']['Message']
print('memory', refused({{'containerOverrides': [{{'name': 'g', 'memory': 4096}}]}}))
print('reservation', refused({{'containerOverrides': [{{'name': 'g', 'memory': 8, 'memoryReservation': 12}}]}}))
print('cpu', refused({{'containerOverrides': [{{'name': 'g', 'cpu': 512}}]}}))
print('task', refused({{'memory': '4096'}}))
print('name', refused({{'containerOverrides': [{{'name': 'nope'}}]}}))
t = ecs.run_task(taskDefinition='small', overrides={{'containerOverrides': [{{'name': 'g', 'memory': 8}}]}})['tasks'][0]
print('container memory', t['containers'][0]['memory'], 'task memory', t['memory'])
ecs.get_waiter('tasks_running').wait(tasks=[t['taskArn']], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
task_id = t['taskArn'].rsplit('/', 1)[1]
import time
for _ in range(100):
    stats = json.load(urllib.request.urlopen(f'{{ecs.meta.endpoint_url}}/v1/tasks/{{task_id}}/stats'))
    if 'g' in stats:
        break
    time.sleep(0.1)
print('limit', stats['g']['memory_stats']['limit'])
"#
    );
    let out = boto3(&server.endpoint, &script);
    assert!(
        out.contains("memory overrides.containerOverrides[0].memory: must not exceed the task's memory (4096 > 16)"),
        "{out}"
    );
    assert!(
        out.contains("reservation overrides.containerOverrides[0].memoryReservation: must be below the container's memory (12 >= 8)"),
        "{out}"
    );
    assert!(
        out.contains("cpu overrides.containerOverrides[0].cpu: the containers' cpu (512 units"),
        "{out}"
    );
    assert!(out.contains("task overrides.memory: task-level"), "{out}");
    assert!(
        out.contains("name overrides.containerOverrides[0].name: no container named \"nope\""),
        "{out}"
    );
    assert!(out.contains("container memory 8 task memory 16"), "{out}");
    assert!(out.contains(&format!("limit {}", 8u64 << 20)), "{out}");
}

#[test]
fn tags_on_clusters_definitions_tasks_services_and_instances() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let graceful = common::guest(common::Wasi::P1, "graceful")
        .display()
        .to_string();
    let script = format!(
        r#"
import json, urllib.request
c = ecs.create_cluster(clusterName='tagged', tags=[{{'key': 'team', 'value': 'web'}}])['cluster']['clusterArn']
d = ecs.register_task_definition(family='g', memory='16', containerDefinitions=[{{'name': 'g', 'image': '{graceful}'}}],
                                 tags=[{{'key': 'kind', 'value': 'def'}}])['taskDefinition']['taskDefinitionArn']
t = ecs.run_task(cluster='tagged', taskDefinition='g', tags=[{{'key': 'run', 'value': '1'}}])['tasks'][0]['taskArn']
s = ecs.create_service(cluster='tagged', serviceName='svc', taskDefinition='g', desiredCount=0,
                       tags=[{{'key': 'tier', 'value': 'front'}}])['service']['serviceArn']
host = json.load(urllib.request.urlopen(ecs.meta.endpoint_url + '/v1/hosts'))['Hosts'][0]['Arn']
for arn in [c, d, t, s, host]:
    ecs.tag_resource(resourceArn=arn, tags=[{{'key': 'owner', 'value': 'me'}}, {{'key': 'x', 'value': 'y'}}])
    ecs.untag_resource(resourceArn=arn, tagKeys=['x'])
    tags = sorted((t['key'], t['value']) for t in ecs.list_tags_for_resource(resourceArn=arn)['tags'])
    print(arn.split(':')[5].split('/')[0], tags)
ecs.tag_resource(resourceArn=c, tags=[{{'key': 'team', 'value': 'api'}}])
print('replaced', ecs.list_tags_for_resource(resourceArn=c)['tags'])
def code(call):
    try:
        call()
        return 'ok'
    except ecs.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ' ' + e.response['Error']['Message']
print('reserved', code(lambda: ecs.tag_resource(resourceArn=c, tags=[{{'key': 'aws:x', 'value': ''}}])))
print('too many', code(lambda: ecs.tag_resource(resourceArn=c, tags=[{{'key': f'k{{i}}', 'value': ''}} for i in range(50)])))
print('no cluster', code(lambda: ecs.list_tags_for_resource(resourceArn=c.replace('tagged', 'nope'))))
print('foreign', code(lambda: ecs.list_tags_for_resource(resourceArn='arn:aws:s3:::bucket')))
print('on create', code(lambda: ecs.create_cluster(clusterName='bad', tags=[{{'key': 'AWS:x', 'value': 'v'}}])))
"#
    );
    let out = boto3(&server.endpoint, &script);
    assert!(
        out.contains("cluster [('owner', 'me'), ('team', 'web')]"),
        "{out}"
    );
    assert!(
        out.contains("task-definition [('kind', 'def'), ('owner', 'me')]"),
        "{out}"
    );
    assert!(
        out.contains("task [('owner', 'me'), ('run', '1')]"),
        "{out}"
    );
    assert!(
        out.contains("service [('owner', 'me'), ('tier', 'front')]"),
        "{out}"
    );
    assert!(
        out.contains("container-instance [('owner', 'me')]"),
        "{out}"
    );
    assert!(
        out.contains("replaced [{'key': 'team', 'value': 'api'}, {'key': 'owner', 'value': 'me'}]"),
        "{out}"
    );
    assert!(
        out.contains("reserved InvalidParameterException tags[0].key: the aws: prefix"),
        "{out}"
    );
    assert!(
        out.contains("too many InvalidParameterException tags: a resource holds at most 50"),
        "{out}"
    );
    assert!(
        out.contains("no cluster ClusterNotFoundException Cluster not found."),
        "{out}"
    );
    assert!(
        out.contains("foreign InvalidParameterException resourceArn"),
        "{out}"
    );
    assert!(
        out.contains("on create InvalidParameterException tags[0].key"),
        "{out}"
    );
}

#[test]
fn account_settings_with_ecs_names_values_and_effect() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        r#"
def code(call):
    try:
        call()
        return 'ok'
    except ecs.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ' ' + e.response['Error']['Message']
print('own before', ecs.list_account_settings()['settings'])
eff = {s['name']: s['value'] for s in ecs.list_account_settings(effectiveSettings=True)['settings']}
print('effective', len(eff), eff['containerInsights'], eff['taskLongArnFormat'])
print('plain cluster', ecs.create_cluster(clusterName='a')['cluster']['settings'])
s = ecs.put_account_setting_default(name='containerInsights', value='enhanced')['setting']
print('default', s['name'], s['value'], s['principalArn'], s['type'])
print('new cluster', ecs.create_cluster(clusterName='b')['cluster']['settings'])
print('given wins', ecs.create_cluster(clusterName='c', settings=[{'name': 'containerInsights', 'value': 'disabled'}])['cluster']['settings'])
print('listed', [(s['name'], s['value']) for s in ecs.list_account_settings(name='containerInsights')['settings']])
print('bad value', code(lambda: ecs.put_account_setting(name='containerInsights', value='maybe')))
print('managed', code(lambda: ecs.put_account_setting(name='guardDutyActivate', value='on')))
print('deleted', ecs.delete_account_setting(name='containerInsights')['setting']['value'])
print('after delete', ecs.list_account_settings(name='containerInsights', effectiveSettings=True)['settings'][0]['value'])
print('nothing to delete', code(lambda: ecs.delete_account_setting(name='containerInsights')))
"#,
    );
    assert!(out.contains("own before []"), "{out}");
    assert!(out.contains("effective 11 disabled enabled"), "{out}");
    assert!(
        out.contains("plain cluster [{'name': 'containerInsights', 'value': 'disabled'}]"),
        "{out}"
    );
    assert!(
        out.contains("default containerInsights enhanced arn:aws:iam::000000000000:root user"),
        "{out}"
    );
    assert!(
        out.contains("new cluster [{'name': 'containerInsights', 'value': 'enhanced'}]"),
        "{out}"
    );
    assert!(
        out.contains("given wins [{'name': 'containerInsights', 'value': 'disabled'}]"),
        "{out}"
    );
    assert!(
        out.contains("listed [('containerInsights', 'enhanced')]"),
        "{out}"
    );
    assert!(
        out.contains("bad value InvalidParameterException value: containerInsights takes enabled, disabled, enhanced"),
        "{out}"
    );
    assert!(
        out.contains("managed InvalidParameterException name: guardDutyActivate is managed by AWS"),
        "{out}"
    );
    assert!(out.contains("deleted enhanced"), "{out}");
    assert!(out.contains("after delete disabled"), "{out}");
    assert!(
        out.contains("nothing to delete InvalidParameterException"),
        "{out}"
    );
}

/// Runs a boto3 script with a task definition `sleep` (a guest that sleeps until stopped)
/// registered and `code(call)` defined: the error code and message a call answers, or `ok`.
fn boto3_with_sleep(endpoint: &str, script: &str) -> String {
    let sleep = common::guest(common::Wasi::P1, "sleep")
        .display()
        .to_string();
    boto3(
        endpoint,
        &format!(
            "ecs.register_task_definition(family='sleep', memory='16', \
             containerDefinitions=[{{'name': 's', 'image': {sleep:?}}}])
def code(call):
    try:
        call()
        return 'ok'
    except ecs.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ' ' + e.response['Error']['Message']
{script}"
        ),
    )
}

#[test]
fn clusters_update_and_describe_with_include() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3_with_sleep(
        &server.endpoint,
        r#"
ecs.create_cluster(clusterName='web', tags=[{'key': 'team', 'value': 'a'}],
                   serviceConnectDefaults={'namespace': 'shop'})
plain = ecs.describe_clusters(clusters=['web'])['clusters'][0]
print('plain', sorted(k for k in plain if k in ('tags', 'settings', 'configuration', 'attachments')), plain['capacityProviders'], plain['serviceConnectDefaults'])
u = ecs.update_cluster(cluster='web', settings=[{'name': 'containerInsights', 'value': 'enhanced'}],
    configuration={'executeCommandConfiguration': {'logging': 'OVERRIDE', 'logConfiguration': {'cloudWatchLogGroupName': 'g'}}},
    serviceConnectDefaults={'namespace': 'arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-1'})['cluster']
print('updated', u['settings'], u['configuration']['executeCommandConfiguration']['logging'], u['serviceConnectDefaults']['namespace'])
s = ecs.update_cluster_settings(cluster='web', settings=[{'name': 'containerInsights', 'value': 'disabled'}])['cluster']
print('settings', s['settings'])
full = ecs.describe_clusters(clusters=['web'], include=['TAGS', 'SETTINGS', 'CONFIGURATIONS', 'ATTACHMENTS', 'STATISTICS'])['clusters'][0]
print('full', full['tags'], full['settings'][0]['value'], 'executeCommandConfiguration' in full['configuration'], full['attachments'], full['attachmentsStatus'], len(full['statistics']))
t = ecs.run_task(cluster='web', taskDefinition='sleep', capacityProviderStrategy=[{'capacityProvider': 'FARGATE_SPOT', 'weight': 1}])['tasks'][0]
print('spot task', t['capacityProviderName'], t['launchType'])
stats = {x['name']: x['value'] for x in ecs.describe_clusters(clusters=['web'], include=['STATISTICS'])['clusters'][0]['statistics']}
print('fargate tasks', int(stats['runningFargateTasksCount']) + int(stats['pendingFargateTasksCount']), stats['runningEC2TasksCount'])
print('bad setting', code(lambda: ecs.update_cluster_settings(cluster='web', settings=[{'name': 'containerInsights', 'value': 'maybe'}])))
print('bad logging', code(lambda: ecs.update_cluster(cluster='web', configuration={'executeCommandConfiguration': {'logging': 'LOUD'}})))
print('bad include', code(lambda: ecs.describe_clusters(clusters=['web'], include=['EVERYTHING'])))
print('no cluster', code(lambda: ecs.update_cluster(cluster='ghost', settings=[])))
cleared = ecs.update_cluster(cluster='web', serviceConnectDefaults={'namespace': ''})['cluster']
print('cleared', 'serviceConnectDefaults' in cleared)
# Capacity providers on the one embedded host of the shared pool.
ecs.put_cluster_capacity_providers(cluster='web', capacityProviders=['FARGATE', 'FARGATE_SPOT'],
    defaultCapacityProviderStrategy=[{'capacityProvider': 'FARGATE', 'base': 1, 'weight': 1}, {'capacityProvider': 'FARGATE_SPOT', 'weight': 3}])
r = ecs.run_task(cluster='web', taskDefinition='sleep', count=5)['tasks']
print('default strategy', sorted(x['capacityProviderName'] for x in r))
asg = 'arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:1:autoScalingGroupName/asg1'
cp = ecs.create_capacity_provider(name='mine', autoScalingGroupProvider={'autoScalingGroupArn': asg, 'managedScaling': {'status': 'ENABLED', 'targetCapacity': 80}})['capacityProvider']
print('created', cp['name'], cp['type'], cp['status'], cp['updateStatus'], cp['capacityProviderArn'])
print('again', code(lambda: ecs.create_capacity_provider(name='mine', autoScalingGroupProvider={'autoScalingGroupArn': asg})))
print('same group', code(lambda: ecs.create_capacity_provider(name='other', autoScalingGroupProvider={'autoScalingGroupArn': asg})))
print('reserved name', code(lambda: ecs.create_capacity_provider(name='fargate-x', autoScalingGroupProvider={'autoScalingGroupArn': asg})))
print('bad arn', code(lambda: ecs.create_capacity_provider(name='x', autoScalingGroupProvider={'autoScalingGroupArn': 'asg1'})))
u = ecs.update_capacity_provider(name='mine', autoScalingGroupProvider={'managedScaling': {'targetCapacity': 50}, 'managedDraining': 'DISABLED'})['capacityProvider']
print('updated provider', u['autoScalingGroupProvider']['managedScaling']['targetCapacity'], u['autoScalingGroupProvider']['managedDraining'], u['updateStatus'])
print('bad target', code(lambda: ecs.update_capacity_provider(name='mine', autoScalingGroupProvider={'managedScaling': {'targetCapacity': 101}})))
ecs.tag_resource(resourceArn=cp['capacityProviderArn'], tags=[{'key': 'k', 'value': 'v'}])
print('tags', ecs.list_tags_for_resource(resourceArn=cp['capacityProviderArn'])['tags'])
print('builtin', code(lambda: ecs.delete_capacity_provider(capacityProvider='FARGATE')))
d = ecs.describe_capacity_providers(capacityProviders=['mine', 'FARGATE', 'ghost'])
print('described', [p['name'] for p in d['capacityProviders']], [f['reason'] for f in d['failures']])
print('missing from cluster', code(lambda: ecs.put_cluster_capacity_providers(cluster='web', capacityProviders=['FARGATE'], defaultCapacityProviderStrategy=[{'capacityProvider': 'mine', 'weight': 1}])))
print('service strategy', code(lambda: ecs.create_service(cluster='web', serviceName='s1', taskDefinition='sleep', desiredCount=0, capacityProviderStrategy=[{'capacityProvider': 'FARGATE_SPOT', 'weight': 1}])))
print('update strategy', code(lambda: ecs.update_service(cluster='web', service='s1', capacityProviderStrategy=[{'capacityProvider': 'mine', 'weight': 1}])))
print('kept strategy', ecs.describe_services(cluster='web', services=['s1'])['services'][0]['capacityProviderStrategy'])
ecs.delete_service(cluster='web', service='s1', force=True)
print('deleted', ecs.delete_capacity_provider(capacityProvider='mine')['capacityProvider']['status'])
print('gone', [p['name'] for p in ecs.describe_capacity_providers()['capacityProviders']])
"#,
    );
    assert!(
        out.contains("plain [] ['FARGATE', 'FARGATE_SPOT'] {'namespace': 'shop'}"),
        "{out}"
    );
    assert!(
        out.contains("updated [{'name': 'containerInsights', 'value': 'enhanced'}] OVERRIDE arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-1"),
        "{out}"
    );
    assert!(
        out.contains("settings [{'name': 'containerInsights', 'value': 'disabled'}]"),
        "{out}"
    );
    assert!(
        out.contains("full [{'key': 'team', 'value': 'a'}] disabled True [] UPDATE_COMPLETE 8"),
        "{out}"
    );
    assert!(out.contains("spot task FARGATE_SPOT FARGATE"), "{out}");
    assert!(out.contains("fargate tasks 1 0"), "{out}");
    assert!(
        out.contains("bad setting InvalidParameterException settings[0].value"),
        "{out}"
    );
    assert!(
        out.contains("bad logging InvalidParameterException configuration.executeCommandConfiguration.logging"),
        "{out}"
    );
    assert!(
        out.contains("bad include InvalidParameterException include[0]"),
        "{out}"
    );
    assert!(
        out.contains("no cluster ClusterNotFoundException Cluster not found."),
        "{out}"
    );
    assert!(out.contains("cleared False"), "{out}");
    // FARGATE's base of 1, then FARGATE:FARGATE_SPOT = 1:3 over the rest.
    assert!(
        out.contains("default strategy ['FARGATE', 'FARGATE', 'FARGATE_SPOT', 'FARGATE_SPOT', 'FARGATE_SPOT']"),
        "{out}"
    );
    assert!(
        out.contains("created mine EC2_AUTOSCALING ACTIVE CREATE_COMPLETE arn:aws:ecs:us-east-1:000000000000:capacity-provider/mine"),
        "{out}"
    );
    assert!(
        out.contains("again ClientException The specified capacity provider already exists"),
        "{out}"
    );
    assert!(
        out.contains("same group InvalidParameterException"),
        "{out}"
    );
    assert!(
        out.contains(
            "reserved name InvalidParameterException name: a capacity provider name cannot begin"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "bad arn InvalidParameterException autoScalingGroupProvider.autoScalingGroupArn"
        ),
        "{out}"
    );
    assert!(
        out.contains("updated provider 50 DISABLED UPDATE_COMPLETE"),
        "{out}"
    );
    assert!(out.contains("bad target InvalidParameterException autoScalingGroupProvider.managedScaling.targetCapacity"), "{out}");
    assert!(out.contains("tags [{'key': 'k', 'value': 'v'}]"), "{out}");
    assert!(
        out.contains("builtin InvalidParameterException The FARGATE capacity provider is reserved"),
        "{out}"
    );
    assert!(
        out.contains("described ['mine', 'FARGATE'] ['MISSING']"),
        "{out}"
    );
    assert!(out.contains("missing from cluster InvalidParameterException defaultCapacityProviderStrategy[0].capacityProvider"), "{out}");
    assert!(out.contains("service strategy ok"), "{out}");
    assert!(
        out.contains("update strategy InvalidParameterException capacityProviderStrategy[0].capacityProvider: The specified capacity provider strategy cannot contain a capacity provider that is not associated"),
        "{out}"
    );
    assert!(
        out.contains(
            "kept strategy [{'capacityProvider': 'FARGATE_SPOT', 'weight': 1, 'base': 0}]"
        ),
        "{out}"
    );
    assert!(out.contains("deleted INACTIVE"), "{out}");
    assert!(out.contains("gone ['FARGATE', 'FARGATE_SPOT']"), "{out}");
}

#[test]
fn start_task_and_the_agent_facing_operations() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3_with_sleep(
        &server.endpoint,
        r#"
import json, time, urllib.request
pool = [h for h in json.load(urllib.request.urlopen(ecs.meta.endpoint_url + '/v1/hosts'))['Hosts']][0]
pool_arn = 'arn:aws:ecs:us-east-1:000000000000:container-instance/' + pool['Id']
s = ecs.start_task(taskDefinition='sleep', containerInstances=[pool_arn, 'ghost'], startedBy='me')
print('started', len(s['tasks']), s['tasks'][0]['launchType'], [f['reason'] for f in s['failures']])
ecs.get_waiter('tasks_running').wait(tasks=[s['tasks'][0]['taskArn']], WaiterConfig={'Delay': 0.5, 'MaxAttempts': 60})
print('execute', code(lambda: ecs.execute_command(cluster='default', task=s['tasks'][0]['taskArn'], command='ls', interactive=True)).split(':')[0])
ecs.create_cluster(clusterName='ext')
ci = ecs.register_container_instance(cluster='ext', instanceIdentityDocument=json.dumps({'instanceId': 'i-123'}),
    totalResources=[{'name': 'CPU', 'type': 'INTEGER', 'integerValue': 2048}, {'name': 'MEMORY', 'type': 'INTEGER', 'integerValue': 4096}],
    attributes=[{'name': 'zone', 'value': 'z1'}], tags=[{'key': 'k', 'value': 'v'}])['containerInstance']
print('registered', ci['status'], ci['agentConnected'], [r['integerValue'] for r in ci['registeredResources']], [a.get('value') for a in ci['attributes'] if a['name'] == 'zone'])
print('listed', ecs.list_container_instances(cluster='ext')['containerInstanceArns'] == [ci['containerInstanceArn']])
full = ecs.describe_container_instances(cluster='ext', containerInstances=[ci['containerInstanceArn']], include=['TAGS', 'CONTAINER_INSTANCE_HEALTH'])['containerInstances'][0]
plain = ecs.describe_container_instances(cluster='ext', containerInstances=[ci['containerInstanceArn']])['containerInstances'][0]
print('included', full['tags'], full['healthStatus']['overallStatus'], 'tags' in plain)
pool_health = ecs.describe_container_instances(containerInstances=[pool_arn], include=['CONTAINER_INSTANCE_HEALTH'])['containerInstances'][0]['healthStatus']['overallStatus']
print('pool health', pool_health)
f = ecs.run_task(cluster='ext', taskDefinition='sleep', launchType='EC2')
print('nothing placed there', len(f['tasks']), len(f['failures']))
print('started there', [x['reason'] for x in ecs.start_task(cluster='ext', taskDefinition='sleep', containerInstances=[ci['containerInstanceArn']])['failures']])
print('poll', ecs.discover_poll_endpoint(cluster='ext', containerInstance=ci['containerInstanceArn'])['endpoint'] == ecs.meta.endpoint_url)
print('agent update', code(lambda: ecs.update_container_agent(cluster='ext', containerInstance=ci['containerInstanceArn'])).split(':')[0])
t = ecs.run_task(taskDefinition='sleep')['tasks'][0]
ecs.get_waiter('tasks_running').wait(tasks=[t['taskArn']], WaiterConfig={'Delay': 0.5, 'MaxAttempts': 60})
att = t['attachments'][0]['id']
print('attachment', ecs.submit_attachment_state_changes(cluster='default', attachments=[{'attachmentArn': 'arn:aws:ecs:us-east-1:000000000000:attachment/' + att, 'status': 'DETACHED'}])['acknowledgment'])
print('attachment now', ecs.describe_tasks(tasks=[t['taskArn']])['tasks'][0]['attachments'][0]['status'])
print('container', ecs.submit_container_state_change(cluster='default', task=t['taskArn'], containerName='s', status='STOPPED', exitCode=3, reason='done')['acknowledgment'])
print('task', ecs.submit_task_state_change(cluster='default', task=t['taskArn'], status='STOPPED', reason='finished elsewhere')['acknowledgment'])
d = ecs.describe_tasks(tasks=[t['taskArn']])['tasks'][0]
print('recorded', d['lastStatus'], d['stoppedReason'], d['containers'][0].get('exitCode'))
print('bad status', code(lambda: ecs.submit_task_state_change(cluster='default', task=t['taskArn'], status='SLEEPING')).split(':')[0])
print('deregistered', ecs.deregister_container_instance(cluster='ext', containerInstance=ci['containerInstanceArn'])['containerInstance']['status'])
"#,
    );
    assert!(out.contains("started 1 FARGATE ['MISSING']"), "{out}");
    assert!(
        out.contains("execute UnsupportedFeatureException ExecuteCommand is not supported"),
        "{out}"
    );
    assert!(
        out.contains("registered ACTIVE False [2048, 4096] ['z1']"),
        "{out}"
    );
    assert!(out.contains("listed True"), "{out}");
    assert!(
        out.contains("included [{'key': 'k', 'value': 'v'}] INSUFFICIENT_DATA False"),
        "{out}"
    );
    assert!(out.contains("pool health OK"), "{out}");
    assert!(out.contains("nothing placed there 0 1"), "{out}");
    assert!(out.contains("started there ['AGENT']"), "{out}");
    assert!(out.contains("poll True"), "{out}");
    assert!(
        out.contains("agent update NoUpdateAvailableException There is no update available"),
        "{out}"
    );
    assert!(out.contains("attachment ACK"), "{out}");
    assert!(out.contains("attachment now DETACHED"), "{out}");
    assert!(out.contains("container ACK"), "{out}");
    assert!(out.contains("task ACK"), "{out}");
    assert!(
        out.contains("recorded STOPPED finished elsewhere 3"),
        "{out}"
    );
    assert!(
        out.contains("bad status InvalidParameterException status"),
        "{out}"
    );
    assert!(out.contains("deregistered INACTIVE"), "{out}");
}

#[test]
fn regions_follow_the_signature_enums_are_checked_and_big_bodies_get_413() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--account-id", "123456789012"]);
    let out = boto3(
        &server.endpoint,
        r#"
import botocore
def code(call):
    try:
        call()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return str(e.response['ResponseMetadata']['HTTPStatusCode']) + ' ' + e.response['Error']['Code'] + ' ' + e.response['Error']['Message']
ohio = boto3.client('ecs', endpoint_url=ecs.meta.endpoint_url, region_name='us-east-2',
                    aws_access_key_id='x', aws_secret_access_key='y')
c = ohio.create_cluster(clusterName='east2')['cluster']['clusterArn']
print('ohio arn', c)
print('by its arn', ohio.describe_clusters(clusters=[c])['clusters'][0]['clusterName'])
ohio.tag_resource(resourceArn=c, tags=[{'key': 'k', 'value': 'v'}])
print('tagged', ohio.list_tags_for_resource(resourceArn=c)['tags'])
print('virginia sees', ecs.describe_clusters(clusters=['east2'])['clusters'][0]['clusterArn'])
print('missing in ohio', ohio.describe_clusters(clusters=['ghost'])['failures'][0]['arn'])
print('status ALL', code(lambda: ecs.list_task_definitions(status='ALL')))
print('sort', code(lambda: ecs.list_task_definitions(sort='UP')))
print('bad constraint', code(lambda: ecs.run_task(taskDefinition='x', placementConstraints=[{'type': 'nearby'}])))
print('big', code(lambda: ecs.register_task_definition(family='big', containerDefinitions=[{'name': 'a', 'image': 'a.wasm', 'environment': [{'name': 'X', 'value': 'x' * (2 << 20)}]}])))
print('still serving', len(ecs.list_clusters()['clusterArns']))
"#,
    );
    assert!(
        out.contains("ohio arn arn:aws:ecs:us-east-2:123456789012:cluster/east2"),
        "{out}"
    );
    assert!(out.contains("by its arn east2"), "{out}");
    assert!(out.contains("tagged [{'key': 'k', 'value': 'v'}]"), "{out}");
    assert!(
        out.contains("virginia sees arn:aws:ecs:us-east-1:123456789012:cluster/east2"),
        "{out}"
    );
    assert!(
        out.contains("missing in ohio arn:aws:ecs:us-east-2:123456789012:cluster/ghost"),
        "{out}"
    );
    assert!(
        out.contains("status ALL 400 InvalidParameterException status: must be one of ACTIVE, INACTIVE, DELETE_IN_PROGRESS (got \"ALL\")"),
        "{out}"
    );
    assert!(
        out.contains("sort 400 InvalidParameterException sort"),
        "{out}"
    );
    assert!(
        out.contains("bad constraint 400 InvalidParameterException placementConstraints[0].type"),
        "{out}"
    );
    assert!(
        out.contains("big 413 RequestEntityTooLargeException the request body is over the limit of 1048576 bytes"),
        "{out}"
    );
    assert!(out.contains("still serving 2"), "{out}");
}

/// Walks every operation of botocore's ECS model (the contract) with an empty request: none
/// may answer UnknownOperationException, and one that cannot run here must say why.
#[test]
fn every_operation_of_the_model_is_answered() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        r#"
plain = boto3.client('ecs', endpoint_url=ecs.meta.endpoint_url, region_name='us-east-1',
                     aws_access_key_id='x', aws_secret_access_key='y',
                     config=botocore.config.Config(parameter_validation=False, retries={'max_attempts': 1}))
names = sorted(plain.meta.service_model.operation_names)
missing, unexplained, answered = [], [], 0
for name in names:
    try:
        getattr(plain, botocore.xform_name(name))()
        answered += 1
    except botocore.exceptions.ClientError as e:
        code, message = e.response['Error'].get('Code'), e.response['Error'].get('Message', '')
        if code == 'UnknownOperationException':
            missing.append(name)
        elif code == 'UnsupportedFeatureException' and len(message) < 40:
            unexplained.append(name)
        else:
            answered += 1
print('operations', len(names), 'answered', answered)
print('missing', missing)
print('unexplained', unexplained)
"#,
    );
    assert!(out.contains("missing []"), "{out}");
    assert!(out.contains("unexplained []"), "{out}");
    // The AWS CLI reaches the newer families too.
    let providers = aws_ecs(&server.endpoint, &["describe-capacity-providers"]);
    assert!(providers.contains("\"FARGATE_SPOT\""), "{providers}");
    let attributes = aws_ecs(
        &server.endpoint,
        &["list-attributes", "--target-type", "container-instance"],
    );
    assert!(attributes.contains("\"attributes\""), "{attributes}");
}

#[test]
fn tasks_get_propagated_and_managed_tags() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let sleep = common::guest(common::Wasi::P1, "sleep")
        .display()
        .to_string();
    let register = format!(
        "ecs.register_task_definition(family='sleep', memory='16', tags=[{{'key': 'def', 'value': 'd'}}], \
         containerDefinitions=[{{'name': 's', 'image': {sleep:?}}}])\n"
    );
    let out = boto3(
        &server.endpoint,
        &(register
            + r#"
import time
def tags(arn):
    return sorted((t['key'], t['value']) for t in ecs.list_tags_for_resource(resourceArn=arn)['tags'])
t = ecs.run_task(taskDefinition='sleep', tags=[{'key': 'own', 'value': 'o'}], propagateTags='TASK_DEFINITION', enableECSManagedTags=True)['tasks'][0]
print('run', tags(t['taskArn']))
print('plain', tags(ecs.run_task(taskDefinition='sleep')['tasks'][0]['taskArn']))
ecs.create_service(serviceName='svc', taskDefinition='sleep', desiredCount=1, tags=[{'key': 'svc', 'value': 's'}],
                   propagateTags='SERVICE', enableECSManagedTags=True)
deadline = time.time() + 30
while not ecs.list_tasks(serviceName='svc')['taskArns'] and time.time() < deadline:
    time.sleep(0.2)
print('service', tags(ecs.list_tasks(serviceName='svc')['taskArns'][0]))
try:
    ecs.run_task(taskDefinition='sleep', propagateTags='SERVICE')
except ecs.exceptions.InvalidParameterException as e:
    print('run with SERVICE', e.response['Error']['Message'][:30])
"#),
    );
    assert!(
        out.contains("run [('aws:ecs:clusterName', 'default'), ('def', 'd'), ('own', 'o')]"),
        "{out}"
    );
    assert!(out.contains("plain []"), "{out}");
    assert!(
        out.contains("service [('aws:ecs:clusterName', 'default'), ('aws:ecs:serviceName', 'svc'), ('svc', 's')]"),
        "{out}"
    );
    assert!(
        out.contains("run with SERVICE propagateTags: a task started"),
        "{out}"
    );
}

#[test]
fn ctrl_c_stops_the_tasks_records_them_and_ends_the_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let graceful = common::guest(common::Wasi::P1, "graceful")
        .display()
        .to_string();
    let script = format!(
        r#"
ecs.register_task_definition(family='graceful', memory='64', containerDefinitions=[{{'name': 'g', 'image': '{graceful}'}}])
g = ecs.run_task(taskDefinition='graceful')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[g], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print('running', g)
"#
    );
    let out = boto3(&server.endpoint, &script);
    let task = out
        .lines()
        .find_map(|l| l.strip_prefix("running "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    // A generous deadline: the server stops its tasks (graceful exits at once on its stdin
    // closing) and records their last reports before it ends.
    let status = server
        .interrupt(std::time::Duration::from_secs(60))
        .expect("the server ends after Ctrl-C");
    assert!(status.success(), "{status:?}");
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &format!(
            "t = ecs.describe_tasks(tasks=['{task}'])['tasks'][0]\nprint(t['lastStatus'], t['containers'][0].get('exitCode'))\n"
        ),
    );
    assert_eq!(
        out.trim(),
        "STOPPED 0",
        "the task's own stop was recorded, not a restart"
    );
}

#[test]
fn the_aws_cli_registers_runs_and_waits() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let example = std::fs::read_to_string(common::repo_root().join("examples/hello.json")).unwrap();
    let guests = common::repo_root().join("guests").display().to_string();
    common::guest(common::Wasi::P2, "hello");
    let definition = example.replace("../guests", &guests);
    let registered = aws_ecs(
        &server.endpoint,
        &["register-task-definition", "--cli-input-json", &definition],
    );
    assert!(
        registered.contains("task-definition/hello:1"),
        "{registered}"
    );
    let run: serde_json::Value = serde_json::from_str(&aws_ecs(
        &server.endpoint,
        &["run-task", "--task-definition", "hello"],
    ))
    .unwrap();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    aws_ecs(
        &server.endpoint,
        &["wait", "tasks-stopped", "--tasks", &arn],
    );
    let described: serde_json::Value = serde_json::from_str(&aws_ecs(
        &server.endpoint,
        &["describe-tasks", "--tasks", &arn],
    ))
    .unwrap();
    assert_eq!(described["tasks"][0]["containers"][0]["exitCode"], 0);
    assert_eq!(
        described["tasks"][0]["stopCode"],
        "EssentialContainerExited"
    );
}

#[test]
fn the_pool_host_accounts_for_placed_tasks() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let sleep = common::guest(common::Wasi::P1, "sleep")
        .display()
        .to_string();
    let endpoint = &server.endpoint;
    let script = format!(
        r#"
import json, urllib.request
# The server's own agent is a host of the shared (FARGATE) pool: no cluster lists it, as
# Fargate's capacity is listed by none; its ARN (from the metadata) describes in any cluster.
print('instances', len(ecs.list_container_instances()['containerInstanceArns']))
arns = [json.load(urllib.request.urlopen('{endpoint}/v1/metadata'))['ContainerInstanceArn']]
ecs.create_cluster(clusterName='other')
print('described in other', len(ecs.describe_container_instances(cluster='other', containerInstances=arns)['containerInstances']))
def free():
    ci = ecs.describe_container_instances(containerInstances=arns)['containerInstances'][0]
    reg = {{r['name']: r['integerValue'] for r in ci['registeredResources']}}
    rem = {{r['name']: r['integerValue'] for r in ci['remainingResources']}}
    return reg, rem, ci['runningTasksCount']
reg, rem, running = free()
import os
print('registered cpu', reg['CPU'] == os.cpu_count() * 1024, 'equal', reg == rem, running)
ecs.register_task_definition(family='sleepy', cpu='512', memory='1024', containerDefinitions=[{{'name': 's', 'image': '{sleep}', 'stopTimeout': 1}}])
t = ecs.run_task(taskDefinition='sleepy')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[t], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
reg, rem2, running = free()
print('while running', rem['CPU'] - rem2['CPU'], rem['MEMORY'] - rem2['MEMORY'], running)
ecs.stop_task(task=t)
ecs.get_waiter('tasks_stopped').wait(tasks=[t], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print('after stop', free()[1] == rem)
ecs.register_task_definition(family='huge', memory=str(reg['MEMORY'] + 1), containerDefinitions=[{{'name': 's', 'image': '{sleep}'}}])
r = ecs.run_task(taskDefinition='huge')
print('huge', len(r['tasks']), [f['reason'] for f in r['failures']])
ecs.register_task_definition(family='hungry', cpu=str(reg['CPU'] + 1024), memory='64', containerDefinitions=[{{'name': 's', 'image': '{sleep}'}}])
r = ecs.run_task(taskDefinition='hungry')
print('hungry', len(r['tasks']), [f['reason'] for f in r['failures']])
"#
    );
    let out = boto3(&server.endpoint, &script);
    assert!(out.contains("instances 0"), "{out}");
    assert!(out.contains("described in other 1"), "{out}");
    assert!(out.contains("registered cpu True equal True 0"), "{out}");
    assert!(out.contains("while running 512 1024 1"), "{out}");
    assert!(out.contains("after stop True"), "{out}");
    assert!(out.contains("huge 0 ['RESOURCE:MEMORY']"), "{out}");
    assert!(out.contains("hungry 0 ['RESOURCE:CPU']"), "{out}");
}

/// A plain HTTP GET against the server; returns the body.
fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn running_tasks_report_cpu_and_memory_to_introspection_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let spin = common::guest(common::Wasi::P1, "spin")
        .display()
        .to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
ecs.register_task_definition(family='spin', memory='64', containerDefinitions=[{{'name': 'spin', 'image': '{spin}', 'cpu': 256, 'stopTimeout': 1}}])
t = ecs.run_task(taskDefinition='spin')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[t], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print(t.rsplit('/', 1)[1])
"#
        ),
    );
    let task_id = out.trim().to_string();
    let metadata: serde_json::Value =
        serde_json::from_str(&http_get(&server.endpoint, "/v1/metadata")).unwrap();
    assert!(
        metadata["ContainerInstanceArn"]
            .as_str()
            .unwrap()
            .contains(":container-instance/"),
        "{metadata}"
    );
    let tasks = http_get(&server.endpoint, "/v1/tasks");
    assert!(tasks.contains(&task_id), "{tasks}");

    // Poll until the agent has reported (every 2 s) a CPU figure that moved.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (first_cpu, stats) = loop {
        let stats: serde_json::Value = serde_json::from_str(&http_get(
            &server.endpoint,
            &format!("/v1/tasks/{task_id}/stats"),
        ))
        .unwrap();
        let cpu = stats["spin"]["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0);
        if cpu > 0 {
            break (cpu, stats);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no CPU reported: {stats}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        stats["spin"]["memory_stats"]["usage"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(
        stats["spin"]["memory_stats"]["limit"].as_u64().unwrap(),
        64 << 20
    );
    let moved = loop {
        let stats: serde_json::Value = serde_json::from_str(&http_get(
            &server.endpoint,
            &format!("/v1/tasks/{task_id}/stats"),
        ))
        .unwrap();
        let cpu = stats["spin"]["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0);
        if cpu > first_cpu {
            break cpu;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CPU did not move past {first_cpu}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };

    // /metrics tells the same story: it reads the same reports, at least as new as the one
    // that showed `moved` (printed to the microsecond).
    let metrics = http_get(&server.endpoint, "/metrics");
    let series = format!(
        "wasmgate_task_cpu_seconds_total{{task_id=\"{task_id}\",task_definition=\"spin:1\",container=\"spin\"}} "
    );
    let exported: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in {metrics}"));
    assert!(
        exported + 1e-6 >= moved as f64 / 1e9,
        "/metrics says {exported} s, the stats said {moved} ns"
    );
    assert!(
        metrics.contains("wasmgate_tasks{status=\"RUNNING\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmgate_api_requests_total{action=\"RunTask\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kind=\"remaining\""), "{metrics}");
    assert!(http_get(&server.endpoint, "/v1/tasks/nope/stats").contains("no task nope"));
}

#[test]
fn stopped_tasks_are_forgotten_after_the_retention() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--stopped-task-retention", "2"]);
    let hello = common::guest(common::Wasi::P1, "hello")
        .display()
        .to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
import time
ecs.register_task_definition(family='hello', memory='64', containerDefinitions=[{{'name': 'hello', 'image': '{hello}'}}])
t = ecs.run_task(taskDefinition='hello')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_stopped').wait(tasks=[t], WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print('stopped', len(ecs.describe_tasks(tasks=[t])['tasks']))
for _ in range(30):
    if ecs.describe_tasks(tasks=[t])['failures']:
        break
    time.sleep(0.5)
print('forgotten', ecs.describe_tasks(tasks=[t])['failures'][0]['reason'])
"#
        ),
    );
    assert!(out.contains("stopped 1\nforgotten MISSING"), "{out}");
}

#[test]
fn the_examples_register_at_start_and_run() {
    let data = tempfile::tempdir().unwrap();
    common::guest(common::Wasi::P1, "hello"); // the examples name built guests
    let examples = common::repo_root().join("examples").display().to_string();
    let server = Server::start_with(data.path(), &["--register-examples", &examples]);
    let out = boto3(
        &server.endpoint,
        r#"
print(sorted(ecs.list_task_definition_families()['families']))
for family in ['hello', 'pipeline']:
    t = ecs.run_task(taskDefinition=family)['tasks'][0]['taskArn']
    ecs.get_waiter('tasks_stopped').wait(tasks=[t], WaiterConfig={'Delay': 1, 'MaxAttempts': 30})
    d = ecs.describe_tasks(tasks=[t])['tasks'][0]
    print(family, d['stopCode'], sorted((c['name'], c.get('exitCode')) for c in d['containers']))
"#,
    );
    assert!(out.contains("['hello', 'pipeline']"), "{out}");
    assert!(
        out.contains("hello EssentialContainerExited [('hello', 0)]"),
        "{out}"
    );
    assert!(
        out.contains("pipeline EssentialContainerExited [('consume', 0), ('produce', 0)]"),
        "{out}"
    );
}

#[test]
fn sigv4_is_checked_when_the_server_has_credentials() {
    let data = tempfile::tempdir().unwrap();
    let keys = data.path().join("credentials.json");
    std::fs::write(&keys, r#"{"AKIDEXAMPLE": "secret"}"#).unwrap();
    let server = Server::start_with(data.path(), &["--credentials", keys.to_str().unwrap()]);
    let out = boto3(
        &server.endpoint,
        r#"
print('signed', len(ecs.list_clusters()['clusterArns']))
for key, secret in [('AKIDEXAMPLE', 'wrong'), ('AKIDUNKNOWN', 'secret')]:
    other = boto3.client('ecs', endpoint_url=ecs.meta.endpoint_url, region_name='us-east-1',
                         aws_access_key_id=key, aws_secret_access_key=secret)
    try:
        other.list_clusters()
    except botocore.exceptions.ClientError as e:
        print('refused', e.response['Error']['Code'])
unsigned = boto3.client('ecs', endpoint_url=ecs.meta.endpoint_url, region_name='us-east-1',
                        config=botocore.config.Config(signature_version=botocore.UNSIGNED))
try:
    unsigned.list_clusters()
except botocore.exceptions.ClientError as e:
    print('unsigned', e.response['Error']['Code'])
"#,
    );
    assert!(out.contains("signed 1"), "{out}");
    assert!(
        out.contains("refused InvalidSignatureException\nrefused UnrecognizedClientException"),
        "{out}"
    );
    assert!(
        out.contains("unsigned UnrecognizedClientException"),
        "{out}"
    );
}

#[test]
fn introspection_is_signed_with_credentials_or_served_apart_by_metrics_listen() {
    let data = tempfile::tempdir().unwrap();
    let keys = data.path().join("credentials.json");
    std::fs::write(&keys, r#"{"AKIDEXAMPLE": "secret"}"#).unwrap();
    let mut server = Server::start_with(
        data.path(),
        &[
            "--credentials",
            keys.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.next_line();
    let metrics = metrics
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("the server names its metrics listener: {metrics}"))
        .to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
import urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
def get(url, sign=False):
    headers = {{}}
    if sign:
        request = AWSRequest(method='GET', url=url)
        SigV4Auth(ecs._request_signer._credentials, 'ecs', 'us-east-1').add_auth(request)
        headers = dict(request.headers)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
for path in ['/metrics', '/v1/tasks', '/v1/hosts', '/v1/metadata']:
    status, body = get(ecs.meta.endpoint_url + path)
    print('unsigned', path, status, 'UnrecognizedClientException' in body)
    print('signed', path, get(ecs.meta.endpoint_url + path, sign=True)[0])
status, body = get('{metrics}')
print('apart', status, 'wasmgate_' in body)
"#
        ),
    );
    for path in ["/metrics", "/v1/tasks", "/v1/hosts", "/v1/metadata"] {
        assert!(out.contains(&format!("unsigned {path} 400 True")), "{out}");
        assert!(out.contains(&format!("signed {path} 200")), "{out}");
    }
    assert!(out.contains("apart 200 True"), "{out}");
}

/// Reads one container's (memory bytes, cpu ns) from `/v1/tasks/{id}/stats`.
fn usage_of(endpoint: &str, task_id: &str, container: &str) -> (u64, u64) {
    let stats: serde_json::Value =
        serde_json::from_str(&http_get(endpoint, &format!("/v1/tasks/{task_id}/stats"))).unwrap();
    let c = &stats[container];
    (
        c["memory_stats"]["usage"].as_u64().unwrap_or(0),
        c["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0),
    )
}

#[test]
fn reported_memory_grows_and_cpu_stays_within_the_share() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let grow = common::guest(common::Wasi::P1, "grow")
        .display()
        .to_string();
    let spin = common::guest(common::Wasi::P1, "spin")
        .display()
        .to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
ecs.register_task_definition(family='grow', memory='256', containerDefinitions=[{{'name': 'grow', 'image': '{grow}', 'command': ['150'], 'stopTimeout': 1}}])
ecs.register_task_definition(family='spin', memory='64', containerDefinitions=[{{'name': 'spin', 'image': '{spin}', 'cpu': 256, 'stopTimeout': 1}}])
tasks = [ecs.run_task(taskDefinition=f)['tasks'][0]['taskArn'] for f in ['grow', 'spin']]
ecs.get_waiter('tasks_running').wait(tasks=tasks, WaiterConfig={{'Delay': 1, 'MaxAttempts': 30}})
print(' '.join(t.rsplit('/', 1)[1] for t in tasks))
"#
        ),
    );
    let ids: Vec<&str> = out.split_whitespace().collect();
    let (grow_id, spin_id) = (ids[0], ids[1]);

    // Memory: the growing guest's reported usage rises between reports.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let (memory, _) = usage_of(&server.endpoint, grow_id, "grow");
        if seen.last() != Some(&memory) && memory > 0 {
            seen.push(memory);
        }
        if seen.len() >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "memory reports did not move: {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        seen.windows(2).all(|w| w[1] > w[0]),
        "memory should only grow: {seen:?}"
    );

    // CPU: between the agent's reports (every 2 s), the 256-unit spinner's CPU grows, and by
    // no more than its share allows. Both figures are the server's: the CPU the reports carry
    // and `read`, when each report was recorded.
    let read = |id: &str| -> (f64, u64) {
        let stats: serde_json::Value = serde_json::from_str(&http_get(
            &server.endpoint,
            &format!("/v1/tasks/{id}/stats"),
        ))
        .unwrap();
        let spin = &stats["spin"];
        (
            spin["read"].as_f64().unwrap_or(0.0),
            spin["cpu_stats"]["cpu_usage"]["total_usage"]
                .as_u64()
                .unwrap_or(0),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let wait_for_new = |previous: u64| loop {
        let (at, cpu) = read(spin_id);
        if cpu != previous {
            return (at, cpu);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new CPU report after {previous} ns"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (t0, c0) = wait_for_new(0);
    let mut last = (t0, c0);
    for _ in 0..3 {
        last = wait_for_new(last.1);
    }
    assert!(last.1 > c0, "CPU went back from {c0} to {}", last.1);
    // Only the cap is asserted: a loaded machine gives the guest less, never more. A quarter
    // core, plus the 50 ms of credit a bucket may hold over the ~6 s between the reports
    // (0.008), plus the time between a report's making and its recording, which a busy server
    // can stretch either way: 0.40 leaves room for all of that, and fails when the budget is not
    // applied (a spinning guest then reports close to a whole core).
    let share = (last.1 - c0) as f64 / 1e9 / (last.0 - t0);
    assert!(
        share < 0.40,
        "a 256-unit guest reported {share:.2} of a core"
    );
}

#[test]
fn run_task_with_a_client_token_starts_its_tasks_once() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3_with_sleep(
        &server.endpoint,
        r#"
image = ecs.describe_task_definition(taskDefinition='sleep')['taskDefinition']['containerDefinitions'][0]['image']
ecs.register_task_definition(family='other', memory='16', containerDefinitions=[{'name': 's', 'image': image}])
first = ecs.run_task(taskDefinition='sleep', count=2, clientToken='deploy-42')['tasks']
again = ecs.run_task(taskDefinition='sleep', count=2, clientToken='deploy-42')['tasks']
print('same', sorted(t['taskArn'] for t in first) == sorted(t['taskArn'] for t in again), len(first))
# One more asked with the same token: the two it made, and one more.
more = ecs.run_task(taskDefinition='sleep', count=3, clientToken='deploy-42')['tasks']
print('more', len(more), len({t['taskArn'] for t in more} & {t['taskArn'] for t in first}))
other = ecs.run_task(taskDefinition='sleep', clientToken='deploy-43')['tasks']
print('other token', other[0]['taskArn'] not in {t['taskArn'] for t in more})
print('listed', len(ecs.list_tasks(family='sleep')['taskArns']))
print(code(lambda: ecs.run_task(taskDefinition='other', clientToken='deploy-42')))
print(code(lambda: ecs.run_task(taskDefinition='sleep', clientToken='has space')))
print(code(lambda: ecs.run_task(taskDefinition='sleep', clientToken='x' * 65)))
"#,
    );
    assert!(out.contains("same True 2"), "{out}");
    assert!(out.contains("more 3 2"), "{out}");
    assert!(out.contains("other token True"), "{out}");
    assert!(out.contains("listed 4"), "{out}");
    assert!(
        out.contains("InvalidParameterException clientToken: already used by a RunTask of"),
        "{out}"
    );
    assert_eq!(
        out.matches("InvalidParameterException clientToken: must be 1 to 64")
            .count(),
        2,
        "{out}"
    );
}
