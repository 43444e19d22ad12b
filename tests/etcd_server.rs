//! The whole server on etcd: `wasmgate server --store etcd://...` keeps a cluster, a task
//! definition, a Wasm task and a service, through boto3, and a server started afresh on another
//! data directory (so nothing can come from a local file) finds them all and brings the
//! service back to its desired count.

mod common;

use common::aws::boto3;
use common::etcd::Etcd;
use common::server::Server;
use common::{Wasi, guest};
use wasmgate::store::Store;

/// Prints the largest stored value of each kind of key (the figures ARCHITECTURE.md quotes
/// against etcd's request limit).
fn print_record_sizes(etcd: &Etcd) {
    let store = wasmgate::store::EtcdStore::open(&etcd.endpoint_list(), "/server-test/").unwrap();
    let mut largest = std::collections::BTreeMap::<String, (usize, String)>::new();
    for (key, value) in store.list("").unwrap() {
        let kind = key.split('/').next().unwrap_or_default().to_string();
        let size = value.value.to_string().len();
        let entry = largest.entry(kind).or_default();
        if size > entry.0 {
            *entry = (size, key);
        }
    }
    for (kind, (size, key)) in largest {
        eprintln!("largest {kind}: {size} bytes ({key})");
    }
}

/// Reads the server's startup lines until the one that says where its state is.
fn state_line(server: &mut Server) -> String {
    for _ in 0..10 {
        let line = server.next_line();
        if line.starts_with("state in ") {
            return line;
        }
    }
    panic!("the server did not say where its state is");
}

const HELPERS: &str = r#"
import time
def describe(name='web'):
    return ecs.describe_services(cluster='prod', services=[name])['services'][0]
def stable(name='web', attempts=120):
    ecs.get_waiter('services_stable').wait(cluster='prod', services=[name], WaiterConfig={'Delay': 0.5, 'MaxAttempts': attempts})
    return describe(name)
"#;

#[test]
fn a_server_on_etcd_keeps_its_state_across_a_restart_on_a_fresh_data_directory() {
    let etcd = Etcd::start();
    let url = etcd.url("server-test");
    let graceful = guest(Wasi::P1, "graceful").display().to_string();
    let first_data = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(first_data.path(), &["--store", &url]);
    assert_eq!(state_line(&mut server), format!("state in {url}"));
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"{HELPERS}
ecs.create_cluster(clusterName='prod')
td = ecs.register_task_definition(family='web', memory='32', containerDefinitions=[{{'name': 'app', 'image': '{graceful}'}}])['taskDefinition']
print('registered', td['family'], td['revision'])
task = ecs.run_task(cluster='prod', taskDefinition='web')['tasks'][0]
ecs.get_waiter('tasks_running').wait(cluster='prod', tasks=[task['taskArn']], WaiterConfig={{'Delay': 0.5, 'MaxAttempts': 120}})
print('task running', task['taskArn'])
ecs.create_service(cluster='prod', serviceName='web', taskDefinition='web:1', desiredCount=2)
s = stable()
print('stable', s['runningCount'], s['deployments'][0]['rolloutState'])
"#
        ),
    );
    assert!(out.contains("registered web 1"), "{out}");
    assert!(out.contains("stable 2 COMPLETED"), "{out}");
    let task_arn = out
        .lines()
        .find_map(|line| line.strip_prefix("task running "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert!(
        !first_data.path().join("state.db").exists(),
        "the state is in etcd, not in a file"
    );
    print_record_sizes(&etcd);
    drop(server); // kill -9: its tasks die with it

    let second_data = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(second_data.path(), &["--store", &url]);
    assert_eq!(state_line(&mut server), format!("state in {url}"));
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"{HELPERS}
c = ecs.describe_clusters(clusters=['prod'])['clusters'][0]
print('cluster', c['clusterName'], c['status'])
td = ecs.describe_task_definition(taskDefinition='web:1')['taskDefinition']
print('definition', td['family'], td['revision'], td['containerDefinitions'][0]['image'] == '{graceful}')
old = ecs.describe_tasks(cluster='prod', tasks=['{task_arn}'])['tasks']
print('old task found', len(old))
# The dead server's leader key lives out its lease (--leader-ttl, 5 s) before this one leads
# and finds its tasks lost.
for _ in range(600):
    old = ecs.describe_tasks(cluster='prod', tasks=['{task_arn}'])['tasks'][0]
    if old['lastStatus'] == 'STOPPED':
        break
    time.sleep(0.1)
print('old task', old['lastStatus'], old.get('stopCode'))
s = stable()
print('service', s['status'], s['desiredCount'], s['runningCount'])
"#
        ),
    );
    assert!(out.contains("cluster prod ACTIVE"), "{out}");
    assert!(out.contains("definition web 1 True"), "{out}");
    assert!(out.contains("old task found 1"), "{out}");
    assert!(out.contains("service ACTIVE 2 2"), "{out}");
    // It died with the first server; the second, leading once the first's term lapsed,
    // records it lost.
    assert!(out.contains("old task STOPPED TerminationNotice"), "{out}");
}
