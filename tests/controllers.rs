//! Several controllers over one etcd: three `wasmgate server --store etcd://...` replicas over a
//! three-member etcd cluster on loopback, and `wasmgate agent`s in network namespaces that know
//! every replica. The leader (the replica that runs the scheduler) is killed with SIGKILL in
//! the middle of a rolling deployment and of RunTask bursts from four clients; an etcd member
//! is killed; everything is restarted. Through all of it: the service stays within its
//! deployment bounds, no acknowledged task is lost, and no task runs twice.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::etcd::Etcd;
use common::fleet::*;
use common::hosts::TestNet;

/// Three controllers on `etcd` (prefix `prefix`), each with a leader TTL of 2 s (the failover
/// bench measures the default's).
fn controllers(net: &TestNet, etcd: &Etcd, prefix: &str) -> Vec<Controller> {
    let url = etcd.url(prefix);
    (0..3)
        .map(|_| controller_with(net, &["--store", &url, "--leader-ttl", "2"]))
        .collect()
}

/// Agents 0 and 1, each knowing every controller in `controllers` (the first one first).
fn agents(net: &TestNet, controllers: &[Controller]) -> Vec<Agent> {
    (0..2)
        .map(|i| {
            let mut extra = Vec::new();
            for controller in &controllers[1..] {
                extra.extend(["--controller", controller.endpoint.as_str()]);
            }
            start_agent(net, i, &controllers[0], &extra)
        })
        .collect()
}

/// The words of the line of `out` that starts with `prefix`, after it.
fn words_after(out: &str, prefix: &str) -> BTreeSet<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The index in `controllers` of the one that leads, as the store says (asked of `ask`),
/// waiting for there to be one.
fn leader(controllers: &[&Controller], ask: &Controller) -> usize {
    let mut found = None;
    eventually("a leader", || {
        let answer = fetch(
            Command::new("python3"),
            &format!("{}/v1/leader", ask.endpoint),
            Duration::from_secs(2),
        )?;
        let answer: serde_json::Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
        let endpoint = answer["leader"]["endpoint"].as_str().unwrap_or_default();
        found = controllers.iter().position(|c| c.endpoint == endpoint);
        found.map(|_| ()).ok_or(format!("leader {answer}"))
    });
    found.expect("a leader")
}

/// The ids of the tasks each agent runs, checked to be disjoint and without repeats: no
/// task runs twice.
fn running_once(net: &TestNet, agents: &[Agent]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (i, agent) in agents.iter().enumerate() {
        let running = agent.running(net, i).expect("the agent answers");
        for id in running {
            assert!(all.insert(id.clone()), "task {id} runs twice");
        }
    }
    all
}

#[test]
fn killing_the_leader_mid_rolling_deployment_keeps_the_service_within_its_bounds() {
    let etcd = Etcd::cluster(3);
    let net = TestNet::new(2);
    let controllers = controllers(&net, &etcd, "rolling");
    let all: Vec<&Controller> = controllers.iter().collect();
    let agents = agents(&net, &controllers);
    let first = leader(&all, all[0]);
    let other = all[(first + 1) % 3];
    let pid = controllers[first].process.0.id();

    // Driven through a replica that does not lead; it samples, every 50 ms, the service's
    // tasks that are not stopped (as that replica's /v1/tasks lists them) from just before
    // the update until the deployment has completed.
    let out = boto3(
        other,
        &format!(
            r#"{HOST_OF}
import os, threading, urllib.request
def definition(rev):
    ecs.register_task_definition(family='roll', memory='32', containerDefinitions=[{{'name': 's', 'image': SLEEP, 'stopTimeout': 1, 'environment': [{{'name': 'REV', 'value': rev}}]}}])
definition('1')
ecs.create_service(serviceName='roll', taskDefinition='roll:1', desiredCount=4, deploymentConfiguration={{'minimumHealthyPercent': 50, 'maximumPercent': 150}})
ecs.get_waiter('services_stable').wait(services=['roll'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
definition('2')
samples = []
sampling = True
def sample():
    while sampling:
        try:
            ts = json.loads(urllib.request.urlopen('{other}/v1/tasks', timeout=2).read())['Tasks']
        except Exception:
            continue
        mine = [t for t in ts if t['Family'] == 'roll']
        running = [t for t in mine if t['KnownStatus'] == 'RUNNING' and t['DesiredStatus'] == 'RUNNING']
        samples.append((len(mine), len(running)))
        time.sleep(0.05)
sampler = threading.Thread(target=sample)
sampler.start()
ecs.update_service(service='roll', taskDefinition='roll:2')
os.kill({pid}, 9)
print('leader killed')
def done():
    s = ecs.describe_services(services=['roll'])['services'][0]
    d = s['deployments']
    return len(d) == 1 and d[0]['rolloutState'] == 'COMPLETED' and d[0]['taskDefinition'].endswith('roll:2') and d[0]['runningCount'] == 4
wait_until('the deployment to complete under the new leader', done, timeout=90)
time.sleep(1)
sampling = False
sampler.join()
print('samples', len(samples), 'most', max(n for n, _ in samples), 'fewest running', min(r for _, r in samples))
ts = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName='roll')['taskArns'])['tasks']
print('tasks', len(ts), sorted({{t['taskDefinitionArn'].rsplit('/', 1)[1] for t in ts}}), sorted({{t['lastStatus'] for t in ts}}))
print('ids', ' '.join(sorted(t['taskArn'].rsplit('/', 1)[1] for t in ts)))
"#,
            other = other.endpoint,
        ),
    );
    assert!(out.contains("leader killed"), "{out}");
    let samples = out
        .lines()
        .find_map(|l| l.strip_prefix("samples "))
        .unwrap_or_else(|| panic!("{out}"));
    eprintln!("rolling deployment through a leader kill: samples {samples}");
    let figures: Vec<usize> = samples
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (taken, most, fewest) = (figures[0], figures[1], figures[2]);
    assert!(taken > 10, "the sampler saw the deployment: {out}");
    assert!(
        most <= 6,
        "maximumPercent 150 of 4 allows 6 tasks, {most} were not stopped at once: {out}"
    );
    assert!(
        fewest >= 2,
        "minimumHealthyPercent 50 of 4 needs 2 running, only {fewest} were: {out}"
    );
    assert!(out.contains("tasks 4 ['roll:2'] ['RUNNING']"), "{out}");

    // Another replica leads now, and the agents run exactly the service's four tasks.
    let survivors: Vec<&Controller> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, c)| *c)
        .collect();
    let next = leader(&survivors, survivors[0]);
    assert_ne!(survivors[next].endpoint, controllers[first].endpoint);
    let ids = words_after(&out, "ids ");
    eventually("the agents to run just the service's new tasks", || {
        let running = running_once(&net, &agents);
        if running == ids {
            Ok(())
        } else {
            Err(format!("agents run {running:?}, the service {ids:?}"))
        }
    });
}

#[test]
fn runtask_bursts_from_four_clients_through_a_leader_kill_lose_no_acknowledged_task() {
    let etcd = Etcd::cluster(3);
    let net = TestNet::new(2);
    let controllers = controllers(&net, &etcd, "bursts");
    let all: Vec<&Controller> = controllers.iter().collect();
    let agents = agents(&net, &controllers);
    let first = leader(&all, all[0]);
    let pid = controllers[first].process.0.id();
    let endpoints: Vec<&str> = all.iter().map(|c| c.endpoint.as_str()).collect();

    // Four clients, each starting on its own replica (client 0 on the leader's), run 15
    // tasks each with a clientToken per request; a request that fails (the replica died, or
    // answered 5xx) is retried with the same token on the next replica. Client 0 kills the
    // leader after its fifth task.
    let out = boto3(
        all[(first + 1) % 3],
        &format!(
            r#"{HOST_OF}
import os, threading
ENDPOINTS = {endpoints:?}
FIRST = {first}
def client_for(i):
    return boto3.client('ecs', endpoint_url=ENDPOINTS[i % 3], region_name='us-east-1',
                        aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='secret',
                        config=botocore.config.Config(retries={{'max_attempts': 1}}, connect_timeout=2, read_timeout=20))
ecs.register_task_definition(family='burst', memory='16', containerDefinitions=[{{'name': 's', 'image': SLEEP, 'stopTimeout': 1}}])
acked = {{}}
retried = [0]
lock = threading.Lock()
def client(n):
    at = FIRST + n
    for k in range(15):
        token = f'client{{n}}-run{{k}}'
        for attempt in range(20):
            try:
                r = client_for(at).run_task(taskDefinition='burst', clientToken=token)
                break
            except Exception as e:
                with lock:
                    retried[0] += 1
                at += 1
                time.sleep(0.2)
        else:
            raise Exception(f'{{token}} never acknowledged')
        assert not r['failures'], r['failures']
        with lock:
            acked[token] = r['tasks'][0]['taskArn']
        if n == 0 and k == 4:
            os.kill({pid}, 9)
            print('leader killed')
threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print('acknowledged', len(acked), 'distinct', len(set(acked.values())), 'retried', retried[0])
def all_running():
    arns = sorted(set(acked.values()))
    ts = []
    for i in range(0, len(arns), 100):
        ts += ecs.describe_tasks(tasks=arns[i:i + 100])['tasks']
    return len(ts) == len(arns) and all(t['lastStatus'] == 'RUNNING' for t in ts)
try:
    wait_until('every acknowledged task to run', all_running, timeout=60)
except Exception:
    arns = sorted(set(acked.values()))
    ts = []
    for i in range(0, len(arns), 100):
        ts += ecs.describe_tasks(tasks=arns[i:i + 100])['tasks']
    for t in ts:
        if t['lastStatus'] != 'RUNNING':
            print('not running', t['taskArn'], t['lastStatus'], t['desiredStatus'], host_of(t), t.get('stoppedReason'), flush=True)
    raise
listed = ecs.list_tasks(family='burst', maxResults=100)['taskArns']
print('running in the store', len(set(listed)))
print('acked ids', ' '.join(sorted(a.rsplit('/', 1)[1] for a in acked.values())))
"#
        ),
    );
    assert!(out.contains("leader killed"), "{out}");
    eprintln!(
        "{}",
        out.lines()
            .find(|l| l.starts_with("acknowledged"))
            .unwrap_or_default()
    );
    assert!(out.contains("acknowledged 60 distinct 60"), "{out}");
    assert!(out.contains("running in the store 60"), "{out}");
    let acked = words_after(&out, "acked ids ");
    assert_eq!(acked.len(), 60);
    eventually("the agents to run each acknowledged task once", || {
        let running = running_once(&net, &agents);
        if running == acked {
            Ok(())
        } else {
            Err(format!(
                "{} running, {} acknowledged; not running: {:?}; not acknowledged: {:?}",
                running.len(),
                acked.len(),
                acked.difference(&running).collect::<Vec<_>>(),
                running.difference(&acked).collect::<Vec<_>>()
            ))
        }
    });
}

#[test]
fn an_etcd_member_lost_and_everything_restarted_keep_the_state_and_run_no_task_twice() {
    let mut etcd = Etcd::cluster(3);
    let net = TestNet::new(2);
    let controllers = controllers(&net, &etcd, "restart");
    let all: Vec<&Controller> = controllers.iter().collect();
    let mut agents = self::agents(&net, &controllers);
    let out = boto3(
        all[0],
        &format!(
            r#"{HOST_OF}
ecs.create_service(serviceName='keep', taskDefinition='sleepy', desiredCount=3)
ecs.get_waiter('services_stable').wait(services=['keep'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
alone = ecs.run_task(taskDefinition='sleepy')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[alone], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
print('alone', alone)
"#
        ),
    );
    let alone = out
        .lines()
        .find_map(|l| l.strip_prefix("alone "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();

    // One etcd member of three dies: the other two are a quorum, and every replica still
    // reads and writes (a second service, through another replica, comes up).
    etcd.kill_9(0);
    let out = boto3(
        all[1],
        &format!(
            r#"{HOST_OF}
ecs.create_service(serviceName='more', taskDefinition='sleepy', desiredCount=2)
ecs.get_waiter('services_stable').wait(services=['more', 'keep'], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
print('stable', [s['runningCount'] for s in ecs.describe_services(services=['keep', 'more'])['services']])
print('before', ' '.join(a for name in ['keep', 'more'] for a in ecs.list_tasks(serviceName=name)['taskArns']))
"#
        ),
    );
    assert!(out.contains("stable [3, 2]"), "{out}");
    let before = out
        .lines()
        .find_map(|l| l.strip_prefix("before "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let agent_ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();

    // Everything stops at once (kill -9: the agents' Wasm tasks die with them) and starts
    // again: etcd on its data, new controllers on fresh data directories, the agents on
    // theirs (the same host ids).
    for agent in &mut agents {
        agent.kill();
    }
    drop(controllers);
    for member in 1..3 {
        etcd.kill_9(member);
    }
    for member in 0..3 {
        etcd.restart(member);
    }
    etcd.wait_all_healthy();
    let controllers = self::controllers(&net, &etcd, "restart");
    let all: Vec<&Controller> = controllers.iter().collect();
    drop(agents);
    let agents = self::agents(&net, &controllers);
    assert_eq!(
        agents.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        agent_ids,
        "the hosts came back as themselves"
    );
    let out = boto3(
        all[2],
        &format!(
            r#"{HOST_OF}
BEFORE = set('{before}'.split())
# (The stored counts are those from before the restart until the new leader has seen the old
# tasks gone: the tasks themselves say when the services are back.)
def back():
    for name, desired in [('keep', 3), ('more', 2)]:
        arns = ecs.list_tasks(serviceName=name)['taskArns']
        if len(arns) != desired or BEFORE & set(arns):
            return False
        if any(t['lastStatus'] != 'RUNNING' for t in ecs.describe_tasks(tasks=arns)['tasks']):
            return False
    ss = ecs.describe_services(services=['keep', 'more'])['services']
    return all(s['runningCount'] == s['desiredCount'] and len(s['deployments']) == 1 for s in ss)
wait_until('the services back at their desired counts', back, timeout=90)
ss = ecs.describe_services(services=['keep', 'more'])['services']
print('services', [(s['serviceName'], s['status'], s['desiredCount'], s['runningCount']) for s in ss])
t = ecs.describe_tasks(tasks=['{alone}'])['tasks'][0]
print('alone', t['lastStatus'], t.get('stopCode'))
ids = []
for name in ['keep', 'more']:
    ids += [a.rsplit('/', 1)[1] for a in ecs.list_tasks(serviceName=name)['taskArns']]
print('ids', ' '.join(sorted(ids)))
"#
        ),
    );
    assert!(
        out.contains("services [('keep', 'ACTIVE', 3, 3), ('more', 'ACTIVE', 2, 2)]"),
        "{out}"
    );
    // It died with its agent; a task is never started again on its own.
    assert!(out.contains("alone STOPPED TerminationNotice"), "{out}");
    let ids = words_after(&out, "ids ");
    assert_eq!(ids.len(), 5, "{out}");
    eventually("the agents to run each service task once", || {
        let running = running_once(&net, &agents);
        if running == ids {
            Ok(())
        } else {
            Err(format!("agents run {running:?}, the services {ids:?}"))
        }
    });
}
