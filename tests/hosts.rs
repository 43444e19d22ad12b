//! Several hosts on one machine, each in a network namespace of its own on a bridge (see
//! `tests/common/hosts.rs`; needs root and iproute2): the harness itself (HTTP between the
//! namespaces, a host cut off and restored), then the real thing: a `wasmgate server
//! --no-local-agent` in the root namespace and `wasmgate agent`s on the hosts, driven through
//! boto3, the CLI and the gateway.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fleet::*;
use common::hosts::TestNet;

#[test]
fn test_hosts_reach_the_controller_and_each_other() {
    hosts_reach_the_controller_and_each_other();
}

fn hosts_reach_the_controller_and_each_other() {
    let net = TestNet::new(3);
    let quick = Duration::from_secs(2);

    // A server at the controller's address in the root namespace, on a free port there.
    let controller_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(controller_dir.path().join("who"), "controller").expect("write");
    let port = TcpListener::bind((net.controller_ip().as_str(), 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let controller_url = format!("http://{}:{port}/who", net.controller_ip());
    let _controller = http_server(
        Command::new("python3"),
        &net.controller_ip(),
        port,
        controller_dir.path(),
    );
    let address = format!("{}:{port}", net.controller_ip());
    eventually("the controller's server to listen", || {
        TcpStream::connect(&address)
            .map(drop)
            .map_err(|e| e.to_string())
    });

    // A server on host 0, in its namespace (where every port is free).
    let host0_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(host0_dir.path().join("who"), "host 0").expect("write");
    let host0_url = format!("http://{}:8000/who", net.host_ip(0));
    let _host0 = http_server(
        net.command(0, "python3"),
        &net.host_ip(0),
        8000,
        host0_dir.path(),
    );
    let address = format!("{}:8000", net.host_ip(0));
    eventually("host 0's server to listen", || {
        net.run_in(0, || TcpStream::connect(&address))
            .map(drop)
            .map_err(|e| e.to_string())
    });

    // Host 1 and 2 reach the controller and host 0; the root namespace reaches host 0.
    for i in [1, 2] {
        let from_controller = fetch(net.command(i, "python3"), &controller_url, quick);
        assert_eq!(from_controller.as_deref(), Ok("controller"), "host {i}");
        let from_host0 = fetch(net.command(i, "python3"), &host0_url, quick);
        assert_eq!(from_host0.as_deref(), Ok("host 0"), "host {i}");
    }
    let from_root = fetch(Command::new("python3"), &host0_url, quick);
    assert_eq!(from_root.as_deref(), Ok("host 0"));

    // Cut off, host 1 no longer reaches the controller; host 2 still does.
    net.cut(1);
    eventually("host 1 to be cut off", || {
        match fetch(net.command(1, "python3"), &controller_url, quick) {
            Ok(body) => Err(format!("host 1 still fetched {body:?}")),
            Err(_) => Ok(()),
        }
    });
    let from_host2 = fetch(net.command(2, "python3"), &controller_url, quick);
    assert_eq!(from_host2.as_deref(), Ok("controller"));

    // Restored, it does again.
    net.restore(1);
    eventually("host 1 to reach the controller again", || {
        match fetch(net.command(1, "python3"), &controller_url, quick)?.as_str() {
            "controller" => Ok(()),
            other => Err(format!("fetched {other:?}")),
        }
    });
}

// ---------------------------------------------------------------------------------------
// A controller and agents.

#[test]
fn fargate_tasks_and_a_service_run_in_a_new_cluster_across_hosts() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let agents: Vec<Agent> = (0..3)
        .map(|i| start_agent(&net, i, &controller, &[]))
        .collect();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ecs.create_cluster(clusterName='demo')
r = ecs.run_task(cluster='demo', taskDefinition='sleepy', count=3)
print('failures', r['failures'])
arns = [t['taskArn'] for t in r['tasks']]
ecs.get_waiter('tasks_running').wait(cluster='demo', tasks=arns, WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
ts = ecs.describe_tasks(cluster='demo', tasks=arns)['tasks']
print('no instance', all('containerInstanceArn' not in t for t in ts), sorted({{t['launchType'] for t in ts}}))
print('hosts', len({{host_of(t) for t in ts}}), 'zone', sorted({{t['availabilityZone'] for t in ts}}))
ecs.create_service(cluster='demo', serviceName='web', taskDefinition='sleepy', desiredCount=3)
ecs.get_waiter('services_stable').wait(cluster='demo', services=['web'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
c = ecs.describe_clusters(clusters=['demo'])['clusters'][0]
print('counts', c['runningTasksCount'], c['pendingTasksCount'], c['activeServicesCount'], c['registeredContainerInstancesCount'])
print('listed', len(ecs.list_container_instances(cluster='demo')['containerInstanceArns']))
"
        ),
    );
    assert!(out.contains("failures []"), "{out}");
    assert!(out.contains("no instance True ['FARGATE']"), "{out}");
    assert!(out.contains("hosts 3 zone ['local']"), "{out}");
    assert!(out.contains("counts 6 0 1 0"), "{out}");
    assert!(out.contains("listed 0"), "{out}");
    // wasmgate's own view names the host of every task; each agent runs what it was given.
    let tasks = get_json(&controller, "/v1/tasks");
    let names: std::collections::BTreeSet<String> = tasks["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["HostName"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names,
        ["host-0", "host-1", "host-2"].map(String::from).into(),
        "{tasks}"
    );
    let on_agents: usize = (0..3)
        .map(|i| agents[i].running(&net, i).unwrap().len())
        .sum();
    assert_eq!(on_agents, 6);

    // `wasmgate hosts` lists the pool's hosts through the API.
    let listed = common::wasmgate(tempfile::tempdir().unwrap().path())
        .env("WASMGATE_ENDPOINT", &controller.endpoint)
        .arg("hosts")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    for i in 0..3 {
        let line = table
            .lines()
            .find(|l| l.contains(&format!("host-{i}")))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(
            line.contains("(pool)") && line.contains("ACTIVE") && line.contains("yes"),
            "{table}"
        );
    }

    // A wrong join token is refused, with a reason, and the agent exits.
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-token-at-all-0000").unwrap();
    let refused = net
        .command(0, env!("CARGO_BIN_EXE_wasmgate"))
        .env("WASMGATE_DATA_DIR", tempfile::tempdir().unwrap().path())
        .args([
            "agent",
            "--controller",
            &controller.endpoint,
            "--listen",
            &format!("{}:8083", net.host_ip(0)),
        ])
        .arg("--token-file")
        .arg(wrong.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("the join token is wrong"), "{stderr}");
}

#[test]
fn external_tasks_follow_the_cluster_s_hosts_and_their_placement() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let zones = ["a", "b", "b"];
    let _agents: Vec<Agent> = (0..3)
        .map(|i| {
            let zone = format!("zone={}", zones[i]);
            start_agent(
                &net,
                i,
                &controller,
                &["--cluster", "ext", "--attribute", &zone],
            )
        })
        .collect();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ecs.create_cluster(clusterName='ext')
arns = ecs.list_container_instances(cluster='ext')['containerInstanceArns']
print('instances', len(arns))
cis = ecs.describe_container_instances(cluster='ext', containerInstances=arns)['containerInstances']
zone = {{ci['containerInstanceArn']: [a.get('value') for a in ci['attributes'] if a['name'] == 'zone'][0] for ci in cis}}
print('connected', all(ci['agentConnected'] for ci in cis))
r = ecs.run_task(cluster='ext', taskDefinition='sleepy', launchType='EXTERNAL', count=4, placementStrategy=[{{'type': 'spread', 'field': 'attribute:zone'}}])
per_zone = {{}}
for t in r['tasks']:
    per_zone[zone[t['containerInstanceArn']]] = per_zone.get(zone[t['containerInstanceArn']], 0) + 1
print('spread', sorted(per_zone.items()))
m = ecs.run_task(cluster='ext', taskDefinition='sleepy', launchType='EXTERNAL', count=3, placementConstraints=[{{'type': 'memberOf', 'expression': 'attribute:zone == b'}}])
print('member of', sorted({{zone[t['containerInstanceArn']] for t in m['tasks']}}), len(m['tasks']))
f = ecs.run_task(cluster='ext', taskDefinition='sleepy')
print('fargate', len(f['tasks']), [x['reason'].split(' ')[0] for x in f['failures']])
ecs.register_task_definition(family='fg', requiresCompatibilities=['FARGATE'], networkMode='awsvpc', cpu='256', memory='512', containerDefinitions=[{{'name': 's', 'image': SLEEP}}])
try:
    ecs.run_task(cluster='ext', taskDefinition='fg', launchType='EXTERNAL')
except Exception as e:
    print('incompatible', type(e).__name__, e)
ecs.get_waiter('tasks_running').wait(cluster='ext', tasks=[t['taskArn'] for t in r['tasks'] + m['tasks']], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
ci = ecs.describe_container_instances(cluster='ext', containerInstances=arns)['containerInstances']
print('running on instances', sum(c['runningTasksCount'] for c in ci))
c = ecs.describe_clusters(clusters=['ext'])['clusters'][0]
print('cluster', c['registeredContainerInstancesCount'], c['runningTasksCount'])
try:
    ecs.delete_cluster(cluster='ext')
except Exception as e:
    print('delete', type(e).__name__)
"
        ),
    );
    assert!(out.contains("instances 3"), "{out}");
    assert!(out.contains("connected True"), "{out}");
    assert!(out.contains("spread [('a', 2), ('b', 2)]"), "{out}");
    assert!(out.contains("member of ['b'] 3"), "{out}");
    assert!(out.contains("fargate 0 ['RESOURCE:NO_HOSTS']"), "{out}");
    assert!(
        out.contains("incompatible ClientException")
            && out.contains("does not support launch_type EXTERNAL"),
        "{out}"
    );
    assert!(out.contains("running on instances 7"), "{out}");
    assert!(out.contains("cluster 3 7"), "{out}");
    assert!(
        out.contains("delete ClusterContainsContainerInstancesException"),
        "{out}"
    );
}

#[test]
fn capacity_provider_strategies_place_by_base_and_weight_on_attribute_pools() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let _agents: Vec<Agent> = (0..3)
        .map(|i| {
            let mut extra = vec!["--cluster", "pools"];
            if i < 2 {
                extra.extend(["--attribute", "wasmgate.pool=blue"]);
            }
            start_agent(&net, i, &controller, &extra)
        })
        .collect();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
def code(f):
    try:
        f()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ' ' + e.response['Error']['Message']
import botocore
ecs.create_cluster(clusterName='pools')
asg = 'arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:1234:autoScalingGroupName/'
for name in ['blue', 'green']:
    ecs.create_capacity_provider(name=name, autoScalingGroupProvider={{'autoScalingGroupArn': asg + name}}, tags=[{{'key': 'pool', 'value': name}}])
print('unassociated', code(lambda: ecs.run_task(cluster='pools', taskDefinition='sleepy', capacityProviderStrategy=[{{'capacityProvider': 'blue', 'weight': 1}}])))
ecs.put_cluster_capacity_providers(cluster='pools', capacityProviders=['blue', 'green', 'FARGATE'],
    defaultCapacityProviderStrategy=[{{'capacityProvider': 'blue', 'base': 1, 'weight': 1}}, {{'capacityProvider': 'green', 'weight': 1}}])
g = ecs.run_task(cluster='pools', taskDefinition='sleepy', capacityProviderStrategy=[{{'capacityProvider': 'green', 'weight': 1}}])
print('green empty', len(g['tasks']), [f['reason'] for f in g['failures']])
arns = ecs.list_container_instances(cluster='pools')['containerInstanceArns']
cis = ecs.describe_container_instances(cluster='pools', containerInstances=arns)['containerInstances']
third = [c['containerInstanceArn'] for c in cis if c.get('capacityProviderName') is None][0]
print('put', len(ecs.put_attributes(cluster='pools', attributes=[{{'name': 'wasmgate.pool', 'value': 'green', 'targetType': 'container-instance', 'targetId': third}}])['attributes']))
print('limit', code(lambda: ecs.put_attributes(cluster='pools', attributes=[{{'name': f'a{{i}}', 'targetId': third}} for i in range(10)])))
print('reserved', code(lambda: ecs.put_attributes(cluster='pools', attributes=[{{'name': 'ecs.os-type', 'value': 'x', 'targetId': third}}])))
print('no target', code(lambda: ecs.put_attributes(cluster='pools', attributes=[{{'name': 'a', 'targetId': 'nope'}}])))
listed = ecs.list_attributes(cluster='pools', targetType='container-instance', attributeName='wasmgate.pool')['attributes']
print('pools', sorted(a['value'] for a in listed))
cis = ecs.describe_container_instances(cluster='pools', containerInstances=arns)['containerInstances']
pool_of = {{c['containerInstanceArn']: c.get('capacityProviderName') for c in cis}}
print('instances', sorted(str(v) for v in pool_of.values()))
r = ecs.run_task(cluster='pools', taskDefinition='sleepy', count=5)
print('default strategy', r['failures'], sorted(t['capacityProviderName'] for t in r['tasks']))
print('on their pools', all(pool_of[t['containerInstanceArn']] == t['capacityProviderName'] for t in r['tasks']), sorted({{t['launchType'] for t in r['tasks']}}))
s = ecs.run_task(cluster='pools', taskDefinition='sleepy', count=4, capacityProviderStrategy=[{{'capacityProvider': 'green', 'base': 2, 'weight': 0}}, {{'capacityProvider': 'blue', 'weight': 1}}])
print('base then weight', sorted(t['capacityProviderName'] for t in s['tasks']))
print('delete in use', code(lambda: ecs.delete_capacity_provider(capacityProvider='green')))
print('remove in use', code(lambda: ecs.put_cluster_capacity_providers(cluster='pools', capacityProviders=['blue'], defaultCapacityProviderStrategy=[])))
print('mixed', code(lambda: ecs.run_task(cluster='pools', taskDefinition='sleepy', capacityProviderStrategy=[{{'capacityProvider': 'blue', 'weight': 1}}, {{'capacityProvider': 'FARGATE', 'weight': 1}}])))
print('two bases', code(lambda: ecs.run_task(cluster='pools', taskDefinition='sleepy', capacityProviderStrategy=[{{'capacityProvider': 'blue', 'base': 1, 'weight': 1}}, {{'capacityProvider': 'green', 'base': 1}}])))
d = ecs.describe_capacity_providers(include=['TAGS'])['capacityProviders']
print('providers', sorted((p['name'], p['type'], p['status']) for p in d), [p['tags'] for p in d if p['name'] == 'blue'])
c = ecs.describe_clusters(clusters=['pools'], include=['STATISTICS'])['clusters'][0]
stats = {{x['name']: x['value'] for x in c['statistics']}}
print('cluster', c['capacityProviders'], len(c['defaultCapacityProviderStrategy']), stats['runningEC2TasksCount'], stats['pendingEC2TasksCount'])
ecs.delete_attributes(cluster='pools', attributes=[{{'name': 'wasmgate.pool', 'targetId': third}}])
print('after delete', len(ecs.list_attributes(cluster='pools', targetType='container-instance', attributeName='wasmgate.pool')['attributes']))
print('delete cluster', code(lambda: ecs.delete_cluster(cluster='pools')).split(' ')[0])
"
        ),
    );
    assert!(
        out.contains("unassociated InvalidParameterException capacityProviderStrategy[0].capacityProvider: The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster"),
        "{out}"
    );
    assert!(
        out.contains(
            "green empty 0 ['RESOURCE:NO_HOSTS (no host of capacity provider green is connected)']"
        ),
        "{out}"
    );
    assert!(out.contains("put 1"), "{out}");
    assert!(
        out.contains("limit AttributeLimitExceededException"),
        "{out}"
    );
    assert!(
        out.contains("reserved InvalidParameterException attributes[0].name"),
        "{out}"
    );
    assert!(out.contains("no target TargetNotFoundException"), "{out}");
    assert!(out.contains("pools ['blue', 'blue', 'green']"), "{out}");
    assert!(out.contains("instances ['blue', 'blue', 'green']"), "{out}");
    assert!(
        out.contains("default strategy [] ['blue', 'blue', 'blue', 'green', 'green']"),
        "{out}"
    );
    assert!(out.contains("on their pools True ['EC2']"), "{out}");
    // The call's own group (family:sleepy) already holds 3 blue and 2 green: green's base of
    // 2 is met, so every task goes by weight, and only blue has one.
    assert!(
        out.contains("base then weight ['blue', 'blue', 'blue', 'blue']"),
        "{out}"
    );
    assert!(
        out.contains("delete in use ResourceInUseException"),
        "{out}"
    );
    assert!(
        out.contains("remove in use ResourceInUseException"),
        "{out}"
    );
    assert!(
        out.contains(
            "mixed InvalidParameterException capacityProviderStrategy: a strategy cannot mix"
        ),
        "{out}"
    );
    assert!(out.contains("two bases InvalidParameterException capacityProviderStrategy: only one capacity provider"), "{out}");
    assert!(
        out.contains("providers [('FARGATE', 'FARGATE', 'ACTIVE'), ('FARGATE_SPOT', 'FARGATE_SPOT', 'ACTIVE'), ('blue', 'EC2_AUTOSCALING', 'ACTIVE'), ('green', 'EC2_AUTOSCALING', 'ACTIVE')] [[{'key': 'pool', 'value': 'blue'}]]"),
        "{out}"
    );
    assert!(
        out.contains("cluster ['blue', 'green', 'FARGATE'] 2 "),
        "{out}"
    );
    assert!(out.contains("after delete 2"), "{out}");
    assert!(out.contains("delete cluster ClusterContains"), "{out}");
}

#[test]
fn a_lost_host_s_tasks_are_replaced_and_nothing_runs_twice() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| start_agent(&net, i, &controller, &[]))
        .collect();
    let setup = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ecs.create_service(serviceName='keep', taskDefinition='sleepy', desiredCount=3)
ecs.get_waiter('services_stable').wait(services=['keep'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
alone = ecs.run_task(taskDefinition='sleepy', placementConstraints=[{{'type': 'memberOf', 'expression': 'attribute:wasmgate.host-name == host-0'}}])['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[alone], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='keep')['taskArns'])['tasks']
print('service hosts', len({{host_of(t) for t in ts}}))
print('alone', alone)
"
        ),
    );
    assert!(setup.contains("service hosts 3"), "{setup}");
    let alone = setup
        .lines()
        .find_map(|l| l.strip_prefix("alone "))
        .unwrap()
        .to_string();
    let (lost0, lost1) = (agents[0].id.clone(), agents[1].id.clone());

    // Kill host 0's agent: within 30 s its service task runs elsewhere, its standalone task
    // is STOPPED with a reason that names the host.
    agents[0].kill();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
def moved():
    ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='keep')['taskArns'])['tasks']
    return len(ts) == 3 and all(t['lastStatus'] == 'RUNNING' and host_of(t) != '{lost0}' for t in ts)
start = time.time()
wait_until('the service to move off host 0', moved, timeout=30)
print('moved within 30 s', time.time() - start < 30)
t = ecs.describe_tasks(tasks=['{alone}'])['tasks'][0]
print('alone', t['lastStatus'], t['stopCode'], '|', t['stoppedReason'])
"
        ),
    );
    assert!(out.contains("moved within 30 s True"), "{out}");
    assert!(out.contains("alone STOPPED TerminationNotice"), "{out}");
    assert!(
        out.contains(&format!("host host-0 ({lost0}) was lost")),
        "{out}"
    );

    // It comes back (same data directory, same id) and runs nothing of before.
    agents[0] = start_agent(&net, 0, &controller, &[]);
    assert_eq!(agents[0].id, lost0);

    // Cut host 1 off the network: its task is replaced; once back, its agent stops the
    // task it still ran, so the service never runs more than it should for long.
    let before_cut = agents[1].running(&net, 1).unwrap();
    assert!(!before_cut.is_empty(), "host 1 runs a service task");
    net.cut(1);
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
def moved():
    ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='keep')['taskArns'])['tasks']
    return len(ts) == 3 and all(t['lastStatus'] == 'RUNNING' and host_of(t) != '{lost1}' for t in ts)
wait_until('the service to move off host 1', moved, timeout=30)
t = ecs.describe_tasks(tasks=['{old}'])['tasks'][0]
print('cut', t['lastStatus'], '|', t['stoppedReason'])
",
            old = before_cut[0]
        ),
    );
    assert!(
        out.contains(&format!(
            "cut STOPPED | Task stopped because its host host-1 ({lost1}) was lost"
        )),
        "{out}"
    );
    net.restore(1);
    eventually("host 1's agent to stop the task it lost", || {
        match agents[1].running(&net, 1) {
            Ok(running) if running.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='keep')['taskArns'])['tasks']
print('service', len(ts), sorted({{t['lastStatus'] for t in ts}}))
"
        ),
    );
    assert!(out.contains("service 3 ['RUNNING']"), "{out}");
    let on_agents: usize = (0..3)
        .map(|i| agents[i].running(&net, i).unwrap().len())
        .sum();
    assert_eq!(on_agents, 3, "three service tasks, each run once");
}

#[test]
fn draining_moves_service_tasks_off_a_host_and_deregistering_stops_its_agent() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| start_agent(&net, i, &controller, &[]))
        .collect();
    let host0 = agents[0].id.clone();
    let hosts = get_json(&controller, "/v1/hosts");
    let arn0 = hosts["Hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["Id"] == host0.as_str())
        .map(|h| h["Arn"].as_str().unwrap().to_string())
        .unwrap();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ecs.create_service(serviceName='keep', taskDefinition='sleepy', desiredCount=3, deploymentConfiguration={{'minimumHealthyPercent': 50, 'maximumPercent': 200}})
ecs.get_waiter('services_stable').wait(services=['keep'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
d = ecs.update_container_instances_state(containerInstances=['{arn0}'], status='DRAINING')
print('state', d['containerInstances'][0]['status'])
def off():
    ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='keep')['taskArns'])['tasks']
    return len(ts) == 3 and all(t['lastStatus'] == 'RUNNING' and host_of(t) != '{host0}' for t in ts)
wait_until('the service to leave the draining host', off)
r = ecs.run_task(taskDefinition='sleepy', count=4)
print('new tasks on the draining host', sum(host_of(t) == '{host0}' for t in r['tasks']))
ecs.update_container_instances_state(containerInstances=['{arn0}'], status='ACTIVE')
r = ecs.run_task(taskDefinition='sleepy', placementConstraints=[{{'type': 'memberOf', 'expression': 'ec2InstanceId == {host0}'}}])
print('active again', len(r['tasks']))
ecs.get_waiter('tasks_running').wait(tasks=[r['tasks'][0]['taskArn']], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
try:
    ecs.deregister_container_instance(containerInstance='{arn0}')
except Exception as e:
    print('deregister refused', type(e).__name__)
d = ecs.deregister_container_instance(containerInstance='{arn0}', force=True)
print('deregistered', d['containerInstance']['status'])
t = ecs.describe_tasks(tasks=[r['tasks'][0]['taskArn']])['tasks'][0]
print('its task', t['lastStatus'], '|', t['stoppedReason'])
"
        ),
    );
    assert!(out.contains("state DRAINING"), "{out}");
    assert!(out.contains("new tasks on the draining host 0"), "{out}");
    assert!(out.contains("active again 1"), "{out}");
    assert!(
        out.contains("deregister refused InvalidParameterException"),
        "{out}"
    );
    assert!(out.contains("deregistered INACTIVE"), "{out}");
    assert!(
        out.contains("its task STOPPED | Task stopped because its container instance host-0"),
        "{out}"
    );
    // Its agent's credential stops working: it stops its tasks and exits.
    let mut child = agents[0].child.take().unwrap();
    eventually("the deregistered agent to exit", || {
        match child.0.try_wait() {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn an_http_service_is_served_across_hosts_with_logs_and_stats_from_every_host() {
    let net = TestNet::new(2);
    let controller = controller(&net);
    let _agents: Vec<Agent> = (0..2)
        .map(|i| start_agent(&net, i, &controller, &[]))
        .collect();
    let hello = common::guest(common::Wasi::P1, "hello")
        .display()
        .to_string();
    let spin = common::guest(common::Wasi::P1, "spin")
        .display()
        .to_string();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ecs.register_task_definition(family='web', memory='64', containerDefinitions=[{{'name': 'web', 'image': HTTP, 'dockerLabels': {{'wasmgate.http.path': '/hello'}}}}])
ecs.create_service(serviceName='web', taskDefinition='web', desiredCount=2)
ecs.register_task_definition(family='lazy', memory='64', containerDefinitions=[{{'name': 'web', 'image': HTTP, 'dockerLabels': {{'wasmgate.http.path': '/lazy', 'wasmgate.http.idle-timeout': '2'}}}}])
ecs.create_service(serviceName='lazy', taskDefinition='lazy', desiredCount=1)
ecs.get_waiter('services_stable').wait(services=['web'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='web')['taskArns'])['tasks']
print('web hosts', len({{host_of(t) for t in ts}}))
ecs.register_task_definition(family='hello', memory='64', containerDefinitions=[{{'name': 'hello', 'image': {hello:?}}}])
h = ecs.run_task(taskDefinition='hello')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_stopped').wait(tasks=[h], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
print('hello', h.rsplit('/', 1)[1])
ecs.register_task_definition(family='spin', memory='64', containerDefinitions=[{{'name': 'spin', 'image': {spin:?}, 'cpu': 256, 'stopTimeout': 1}}])
s = ecs.run_task(taskDefinition='spin')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[s], WaiterConfig={{'Delay': 1, 'MaxAttempts': 60}})
print('spin', s.rsplit('/', 1)[1])
"
        ),
    );
    assert!(out.contains("web hosts 2"), "{out}");
    // Requests through the one gateway reach the workers on both hosts.
    let mut served_by = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let reply = common::http::get(&controller.gateway, "localhost", "/hello/echo");
        assert_eq!(reply.status, 200, "{} {:?}", reply.text(), reply.headers);
        if let Some((_, task)) = reply.headers.iter().find(|(n, _)| n == "x-wasmgate-task") {
            served_by.insert(task.clone());
        }
    }
    assert_eq!(
        served_by.len(),
        2,
        "{served_by:?} {}",
        get_json(&controller, "/v1/tasks")
    );
    // An agent serves forwarded requests of its controller's gateway only.
    let task = served_by.iter().next().unwrap();
    let forged = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request, urllib.error\n\
             r = urllib.request.Request(sys.argv[1], headers={'x-wasmgate-forward-task': sys.argv[2], 'x-wasmgate-forward-container': 'web'})\n\
             try:\n    print(urllib.request.urlopen(r, timeout=5).status)\n\
             except urllib.error.HTTPError as e:\n    print(e.code)",
        ])
        .arg(format!("http://{}:8082/hello", net.host_ip(0)))
        .arg(task)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forged.stdout).trim(), "403");

    // Logs of a task that ran on another host, through the CLI.
    let hello_id = out.lines().find_map(|l| l.strip_prefix("hello ")).unwrap();
    let logs = common::wasmgate(tempfile::tempdir().unwrap().path())
        .env("WASMGATE_ENDPOINT", &controller.endpoint)
        .args(["logs", hello_id])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.status.success() && !printed.trim().is_empty(),
        "{printed} {}",
        String::from_utf8_lossy(&logs.stderr)
    );

    // Stats of a task on another host reach /v1/tasks/{id}/stats.
    let spin_id = out.lines().find_map(|l| l.strip_prefix("spin ")).unwrap();
    eventually("CPU of the spinning task on a remote host", || {
        let stats = get_json(&controller, &format!("/v1/tasks/{spin_id}/stats"));
        match stats["spin"]["cpu_stats"]["cpu_usage"]["total_usage"].as_u64() {
            Some(cpu) if cpu > 0 => Ok(()),
            _ => Err(stats.to_string()),
        }
    });

    // Idle, a service scales to zero; the next request starts a worker on some host.
    let out = boto3(
        &controller,
        "def zero():\n    s = ecs.describe_services(services=['lazy'])['services'][0]\n    return s['desiredCount'] == 0 and s['runningCount'] == 0\n\
         deadline = time.time() + 60\nwhile not zero() and time.time() < deadline: time.sleep(0.5)\nprint('zero', zero())\n",
    );
    assert!(out.contains("zero True"), "{out}");
    let reply = common::http::get(&controller.gateway, "localhost", "/lazy/echo");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn agents_join_over_tls_and_refuse_a_controller_they_cannot_verify() {
    let net = TestNet::new(2);
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    // A CA, and the controller's certificate signed by it for the controller's address.
    let ca = certs.path().join("ca.pem");
    let ca_key = certs.path().join("ca-key.pem");
    let csr = certs.path().join("server.csr");
    let ext = certs.path().join("server.ext");
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{}\nbasicConstraints=CA:FALSE\n",
            net.controller_ip()
        ),
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let made = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("req"),
        &os("-x509"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-days"),
        &os("1"),
        &os("-subj"),
        &os("/CN=wasmgate test CA"),
        &os("-keyout"),
        ca_key.as_os_str(),
        &os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        &os("req"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-subj"),
        &os("/CN=wasmgate controller"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        &os("x509"),
        &os("-req"),
        &os("-in"),
        csr.as_os_str(),
        &os("-CA"),
        ca.as_os_str(),
        &os("-CAkey"),
        ca_key.as_os_str(),
        &os("-CAcreateserial"),
        &os("-days"),
        &os("1"),
        &os("-extfile"),
        ext.as_os_str(),
        &os("-out"),
        cert.as_os_str(),
    ]);
    let controller = controller_with(
        &net,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        controller.endpoint.starts_with("https://"),
        "{}",
        controller.endpoint
    );
    let _agent = start_agent(&net, 0, &controller, &["--ca", ca.to_str().unwrap()]);

    // The CLI trusts the same CA and runs a task on the agent, over TLS end to end.
    let hello = common::repo_root().join("examples/hello.json");
    let cli = |args: &[&str]| {
        common::wasmgate(certs.path())
            .env("WASMGATE_ENDPOINT", &controller.endpoint)
            .env("WASMGATE_CA", &ca)
            .args(args)
            .output()
            .unwrap()
    };
    let registered = cli(&["register", hello.to_str().unwrap()]);
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let ran = cli(&["run-task", "hello", "--wait"]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    // Without the CA, an agent does not join (it cannot verify the controller), and says why.
    let data = agent_dir(&net, 1);
    let mut untrusting = Killed(
        net.command(1, env!("CARGO_BIN_EXE_wasmgate"))
            .env("WASMGATE_DATA_DIR", &data)
            .args([
                "agent",
                "--controller",
                &controller.endpoint,
                "--listen",
                &format!("{}:8082", net.host_ip(1)),
            ])
            .arg("--token-file")
            .arg(&controller.token_file)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually("the untrusting agent to say why it cannot join", || {
        let log = std::fs::read_to_string(data.join("agent.log")).unwrap_or_default();
        if log.contains("certificate") {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert!(
        untrusting.0.try_wait().unwrap().is_none(),
        "it keeps trying"
    );
    let hosts = get_json_tls(&controller, &ca);
    assert_eq!(hosts["Hosts"].as_array().unwrap().len(), 1, "{hosts}");
    let _ = std::fs::remove_dir_all(&data);
}

/// `/v1/hosts` of a TLS controller, trusting `ca`.
fn get_json_tls(controller: &Controller, ca: &Path) -> serde_json::Value {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, ssl, urllib.request\nctx = ssl.create_default_context(cafile=sys.argv[2])\nprint(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5).read().decode())",
        ])
        .arg(format!("{}/v1/hosts", controller.endpoint))
        .arg(ca)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)))
}

/// The ids of the container instances of a DAEMON service's running tasks, as a sorted list.
const DAEMON_HELPERS: &str = r#"
def instances_of(cluster, service):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus='RUNNING')['taskArns']
    ts = ecs.describe_tasks(cluster=cluster, tasks=arns)['tasks'] if arns else []
    return sorted(t['containerInstanceArn'].rsplit('/', 1)[1] for t in ts if t['lastStatus'] == 'RUNNING')
def daemon_on(cluster, service, hosts):
    def check():
        s = ecs.describe_services(cluster=cluster, services=[service])['services'][0]
        return instances_of(cluster, service) == sorted(hosts) and s['desiredCount'] == len(hosts) and s['runningCount'] == len(hosts)
    return check
"#;

#[test]
fn a_daemon_service_runs_one_task_per_host_as_hosts_join_drain_and_stop_qualifying() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let agents: Vec<Agent> = (0..2)
        .map(|i| start_agent(&net, i, &controller, &["--cluster", "d"]))
        .collect();
    let (h0, h1) = (agents[0].id.clone(), agents[1].id.clone());
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}{DAEMON_HELPERS}
ecs.create_cluster(clusterName='d')
for bad in [dict(desiredCount=2), dict(placementStrategy=[{{'type': 'spread', 'field': 'instanceId'}}]), dict(launchType='FARGATE')]:
    try:
        ecs.create_service(cluster='d', serviceName='bad', taskDefinition='sleepy', schedulingStrategy='DAEMON', **bad)
    except ecs.exceptions.InvalidParameterException as e:
        print('refused:', e.response['Error']['Message'])
s = ecs.create_service(cluster='d', serviceName='agentd', taskDefinition='sleepy', schedulingStrategy='DAEMON')['service']
print('created', s['schedulingStrategy'], s['launchType'], s['deploymentConfiguration']['minimumHealthyPercent'], s['deploymentConfiguration']['maximumPercent'])
wait_until('a task on each host', daemon_on('d', 'agentd', ['{h0}', '{h1}']))
print('two hosts')
try:
    ecs.update_service(cluster='d', service='agentd', desiredCount=5)
except ecs.exceptions.InvalidParameterException as e:
    print('update refused:', e.response['Error']['Message'])
"
        ),
    );
    assert!(
        out.contains(
            "refused: The daemon scheduling strategy does not support a desired count for services."
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "refused: The daemon scheduling strategy does not support placement strategies."
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "refused: The daemon scheduling strategy does not support the FARGATE launch type"
        ),
        "{out}"
    );
    assert!(out.contains("created DAEMON EC2 0 100"), "{out}");
    assert!(out.contains("two hosts"), "{out}");
    assert!(
        out.contains(
            "update refused: The daemon scheduling strategy does not support a desired count"
        ),
        "{out}"
    );

    // A host that joins gets its task.
    let joined = start_agent(
        &net,
        2,
        &controller,
        &["--cluster", "d", "--attribute", "kind=edge"],
    );
    let h2 = joined.id.clone();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}{DAEMON_HELPERS}
wait_until('the new host to get its task', daemon_on('d', 'agentd', ['{h0}', '{h1}', '{h2}']))
print('three hosts')
# A deployment replaces per host.
old = set(ecs.list_tasks(cluster='d', serviceName='agentd')['taskArns'])
ecs.register_task_definition(family='sleepy', memory='64', containerDefinitions=[{{'name': 's', 'image': SLEEP, 'stopTimeout': 1, 'environment': [{{'name': 'V', 'value': '2'}}]}}])
ecs.update_service(cluster='d', service='agentd', taskDefinition='sleepy')
def rolled():
    s = ecs.describe_services(cluster='d', services=['agentd'])['services'][0]
    now = set(ecs.list_tasks(cluster='d', serviceName='agentd', desiredStatus='RUNNING')['taskArns'])
    return len(s['deployments']) == 1 and s['deployments'][0]['rolloutState'] == 'COMPLETED' and s['runningCount'] == 3 and not (now & old)
wait_until('the deployment to replace every host', rolled)
print('rolled', instances_of('d', 'agentd') == sorted(['{h0}', '{h1}', '{h2}']))
# Hosts that no longer meet the constraints lose their task.
ecs.update_service(cluster='d', service='agentd', placementConstraints=[{{'type': 'memberOf', 'expression': 'attribute:kind == edge'}}])
wait_until('only the edge host to keep its task', daemon_on('d', 'agentd', ['{h2}']))
print('constrained')
ecs.update_service(cluster='d', service='agentd', placementConstraints=[])
wait_until('every host again', daemon_on('d', 'agentd', ['{h0}', '{h1}', '{h2}']))
# A draining host's task stops; the count follows.
arn = [a for a in ecs.list_container_instances(cluster='d')['containerInstanceArns'] if a.endswith('{h1}')][0]
ecs.update_container_instances_state(cluster='d', containerInstances=[arn], status='DRAINING')
wait_until('the drained host to lose its task', daemon_on('d', 'agentd', ['{h0}', '{h2}']))
print('drained')
m = [e['message'] for e in ecs.describe_services(cluster='d', services=['agentd'])['services'][0]['events']]
print('events', any('deployment completed' in x for x in m), any('steady state' in x for x in m))
ecs.delete_service(cluster='d', service='agentd')
def gone():
    s = ecs.describe_services(cluster='d', services=['agentd'])['services'][0]
    return s['status'] == 'INACTIVE'
wait_until('the deleted service to go inactive', gone)
print('deleted')
"
        ),
    );
    assert!(out.contains("three hosts"), "{out}");
    assert!(out.contains("rolled True"), "{out}");
    assert!(out.contains("constrained"), "{out}");
    assert!(out.contains("drained"), "{out}");
    assert!(out.contains("events True True"), "{out}");
    assert!(out.contains("deleted"), "{out}");
}

#[test]
fn a_daemon_runs_on_every_host_of_its_capacity_provider_and_a_critical_one_drains_its_host() {
    let net = TestNet::new(3);
    let controller = controller(&net);
    let first: Vec<Agent> = (0..2)
        .map(|i| start_agent(&net, i, &controller, &[]))
        .collect();
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
def daemon(arn):
    return ecs.describe_daemon(daemonArn=arn)['daemon']
def running(arn, n):
    def check():
        d = daemon(arn)
        return len(d['currentRevisions']) == 1 and d['currentRevisions'][0]['totalRunningCount'] == n and d['currentRevisions'][0]['totalWithoutDaemonCount'] == 0
    return check
def status(dep):
    return ecs.describe_daemon_deployments(daemonDeploymentArns=[dep])['daemonDeployments'][0]['status']
try:
    ecs.register_daemon_task_definition(family='watch', pidMode='shared', containerDefinitions=[{{'name': 'w', 'image': SLEEP}}])
except ecs.exceptions.UnsupportedFeatureException as e:
    print('shared refused:', e.response['Error']['Message'][:40])
td = ecs.register_daemon_task_definition(family='watch', memory='32', containerDefinitions=[{{'name': 'w', 'image': SLEEP, 'stopTimeout': 1}}])['daemonTaskDefinitionArn']
print('td', td.split(':')[-2].split('/')[0], td.rsplit(':', 1)[1])
d = ecs.describe_daemon_task_definition(daemonTaskDefinition='watch')['daemonTaskDefinition']
print('described', d['status'], d['pidMode'], d['containerDefinitions'][0]['name'], d['revision'])
c = ecs.create_daemon(daemonName='watch', daemonTaskDefinitionArn=td, capacityProviderArns=['FARGATE'])
arn = c['daemonArn']
print('created', c['status'], arn.split(':')[-1])
wait_until('a daemon task on both hosts', running(arn, 2))
wait_until('the first deployment to succeed', lambda: status(c['deploymentArn']) == 'SUCCESSFUL')
print('two hosts')
print('listed', ecs.list_daemons()['daemonSummariesList'][0]['daemonArn'] == arn)
"
        ),
    );
    assert!(
        out.contains("shared refused: pidMode shared: wasmgate tasks never"),
        "{out}"
    );
    assert!(out.contains("td daemon-task-definition 1"), "{out}");
    assert!(out.contains("described ACTIVE none w 1"), "{out}");
    assert!(out.contains("created ACTIVE daemon/default/watch"), "{out}");
    assert!(out.contains("two hosts"), "{out}");
    assert!(out.contains("listed True"), "{out}");

    let _third = start_agent(&net, 2, &controller, &[]);
    let out = boto3(
        &controller,
        &format!(
            "{HOST_OF}
ENDPOINT = {endpoint:?}
arn = ecs.list_daemons()['daemonSummariesList'][0]['daemonArn']
def daemon():
    return ecs.describe_daemon(daemonArn=arn)['daemon']
def tasks_of(revision_arn):
    arns = ecs.list_tasks(startedBy=revision_arn.rsplit('/', 1)[1])['taskArns']
    return ecs.describe_tasks(tasks=arns)['tasks'] if arns else []
def alone(n):
    def check():
        revs = daemon()['currentRevisions']
        return len(revs) == 1 and revs[0]['totalRunningCount'] == n and revs[0]['totalWithoutDaemonCount'] == 0
    return check
wait_until('the joining host to get the daemon', alone(3))
rev = daemon()['currentRevisions'][0]['arn']
ts = tasks_of(rev)
print('three hosts', len({{host_of(t) for t in ts if t['lastStatus'] == 'RUNNING'}}), ts[0]['group'], ts[0]['taskDefinitionArn'].split(':')[-2].split('/')[0])
print('by daemon name', len(ecs.list_tasks(daemonName='watch')['taskArns']), len(ecs.list_tasks(daemonName='other')['taskArns']))
r = ecs.describe_daemon_revisions(daemonRevisionArns=[rev, rev + 'x'])
print('revision', r['daemonRevisions'][0]['critical'], r['daemonRevisions'][0]['containerImages'][0]['containerName'], r['failures'][0]['reason'])
td2 = ecs.register_daemon_task_definition(family='watch', memory='32', containerDefinitions=[{{'name': 'w', 'image': SLEEP, 'stopTimeout': 1, 'environment': [{{'name': 'V', 'value': '2'}}]}}])['daemonTaskDefinitionArn']
u = ecs.update_daemon(daemonArn=arn, daemonTaskDefinitionArn=td2, capacityProviderArns=['FARGATE'], deploymentConfiguration={{'drainPercent': 50}})
def rolled():
    revs = daemon()['currentRevisions']
    return len(revs) == 1 and revs[0]['arn'] != rev and revs[0]['totalRunningCount'] == 3
wait_until('the update to replace every host', rolled)
dep = ecs.describe_daemon_deployments(daemonDeploymentArns=[u['deploymentArn']])['daemonDeployments'][0]
wait_until('the deployment to succeed', lambda: ecs.describe_daemon_deployments(daemonDeploymentArns=[u['deploymentArn']])['daemonDeployments'][0]['status'] == 'SUCCESSFUL')
dep = ecs.describe_daemon_deployments(daemonDeploymentArns=[u['deploymentArn']])['daemonDeployments'][0]
print('deployment', dep['targetDaemonRevision']['totalRunningInstanceCount'], dep['sourceDaemonRevisions'][0]['arn'] == rev, dep['deploymentConfiguration']['drainPercent'])
ls = ecs.list_daemon_deployments(daemonArn=arn)['daemonDeployments']
print('deployments', [d['status'] for d in ls])
# The critical daemon's task stops: its host drains.
victim = [t for t in tasks_of(daemon()['currentRevisions'][0]['arn']) if t['lastStatus'] == 'RUNNING'][0]
host = host_of(victim)
ecs.stop_task(task=victim['taskArn'], reason='killed')
import urllib.request
def host_status():
    arn_ = [a for a in json.loads(urllib.request.urlopen(ENDPOINT + '/v1/hosts').read())['Hosts'] if a['Id'] == host][0]['Arn']
    return ecs.describe_container_instances(containerInstances=[arn_])['containerInstances'][0]['status']
wait_until('the host to drain', lambda: host_status() == 'DRAINING')
wait_until('two hosts to run it', alone(2))
print('drained', host_status())
ecs.delete_daemon(daemonArn=arn)
try:
    ecs.update_daemon(daemonArn=arn, daemonTaskDefinitionArn=td2, capacityProviderArns=['FARGATE'])
except Exception as e:
    print('update deleted', type(e).__name__)
def gone():
    try:
        daemon()
        return False
    except ecs.exceptions.DaemonNotFoundException:
        return True
wait_until('the daemon to be gone', gone)
print('gone', len(ecs.list_daemons()['daemonSummariesList']))
print('delete td', ecs.delete_daemon_task_definition(daemonTaskDefinition='watch:1')['daemonTaskDefinitionArn'].endswith('watch:1'))
print('listed tds', [s['status'] for s in ecs.list_daemon_task_definitions(status='ALL')['daemonTaskDefinitions']])
",
            endpoint = controller.endpoint
        ),
    );
    drop(first);
    assert!(
        out.contains("three hosts 3 daemon:watch daemon-task-definition"),
        "{out}"
    );
    assert!(out.contains("by daemon name 3 0"), "{out}");
    assert!(out.contains("revision True w MISSING"), "{out}");
    assert!(out.contains("deployment 3 True 50"), "{out}");
    assert!(
        out.contains("deployments ['SUCCESSFUL', 'SUCCESSFUL']"),
        "{out}"
    );
    assert!(out.contains("drained DRAINING"), "{out}");
    assert!(
        out.contains("update deleted DaemonNotActiveException"),
        "{out}"
    );
    assert!(out.contains("gone 0"), "{out}");
    assert!(out.contains("delete td True"), "{out}");
    assert!(out.contains("listed tds ['DELETED', 'ACTIVE']"), "{out}");
}

#[test]
fn an_awsvpc_container_task_on_a_remote_host_reports_its_address_and_is_served_through_the_gateway()
{
    let net = TestNet::new(1);
    let controller = controller(&net);
    // The agent's host is a namespace of its own: the default task subnet and bridge are its.
    // It keeps the machine's mounts, where runc finds the cgroup filesystem.
    let command = net.command_keeping_mounts(0, env!("CARGO_BIN_EXE_wasmgate"));
    let _agent = start_agent_by(command, &net, 0, &controller, &[]);
    let image = tempfile::tempdir().unwrap();
    common::busybox::write_layout(image.path());
    let out = boto3(
        &controller,
        &format!(
            r#"IMAGE = 'oci:{}:latest'
serve = ['sh', '-c', 'mkdir -p /tmp/www/far && echo far away > /tmp/www/far/index.html && httpd -f -p 80 -h /tmp/www']
ecs.register_task_definition(family='far', networkMode='awsvpc', requiresCompatibilities=['FARGATE'], cpu='256', memory='512',
    containerDefinitions=[{{'name': 'web', 'image': IMAGE, 'command': serve, 'stopTimeout': 1,
        'portMappings': [{{'containerPort': 80}}], 'dockerLabels': {{'wasmgate.http.path': '/far'}}}}])
ecs.create_service(serviceName='far', taskDefinition='far', desiredCount=1,
    networkConfiguration={{'awsvpcConfiguration': {{'subnets': ['subnet-1']}}}})
ecs.get_waiter('services_stable').wait(services=['far'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
t = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='far')['taskArns'])['tasks'][0]
eni = [a for a in t['attachments'] if a['type'] == 'ElasticNetworkInterface'][0]
ip = [d['value'] for d in eni['details'] if d['name'] == 'privateIPv4Address'][0]
print('far', eni['status'], ip.startswith('10.176.'), t['containers'][0]['networkInterfaces'][0]['privateIpv4Address'] == ip)
"#,
            image.path().display()
        ),
    );
    assert!(out.contains("far ATTACHED True True"), "{out}");
    eventually("the remote awsvpc task through the gateway", || {
        let reply = common::http::get(&controller.gateway, "localhost", "/far/");
        match (reply.status, reply.text()) {
            (200, text) if text == "far away\n" => Ok(()),
            (status, text) => Err(format!("{status} {text}")),
        }
    });
    // Stopped before the agent goes, so that it releases the task's network.
    let out = boto3(
        &controller,
        "ecs.update_service(service='far', desiredCount=0)\n\
         ecs.get_waiter('services_stable').wait(services=['far'], WaiterConfig={'Delay': 0.5, 'MaxAttempts': 120})\n\
         print('drained', len(ecs.list_tasks(serviceName='far')['taskArns']))\n",
    );
    assert!(out.contains("drained 0"), "{out}");
    let netns = agent_dir(&net, 0).join("containers/netns");
    eventually(
        "the remote task's namespace released",
        || match std::fs::read_dir(&netns).map(|d| d.count()) {
            Ok(0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
