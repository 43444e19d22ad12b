//! Container tasks in their own network (awsvpc and bridge through the CNI plugins), driven
//! through the ECS API with boto3: two tasks that both listen on port 80 served side by side
//! through the gateway and at their own addresses, the containers of one task on one
//! localhost, a task that sees only `lo` and `eth0`, an egress allowlist, bridge mode's
//! dynamic host port, and nothing of a network left after a kill -9 and a restart. Root, runc
//! and containernetworking-plugins needed (scripts/setup.sh).

mod common;

use std::path::Path;
use std::process::Command;

use common::aws::boto3;
use common::busybox::push_busybox;
use common::registry::Registry;
use common::server::{Server, task_network_of};

/// Python helpers: `wait(arn, status)`, `detail(task, name)` of its ENI attachment, `serve`
/// (httpd on PORT with /tmp/www/NAME/index.html saying TEXT).
const HELPERS: &str = r#"
import json, time, urllib.request
def wait(arn, status='STOPPED', attempts=600):
    for _ in range(attempts):
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if t['lastStatus'] == status or t['lastStatus'] == 'STOPPED':
            return t
        time.sleep(0.05)
    return t
def eni(task):
    return [a for a in task.get('attachments', []) if a['type'] == 'ElasticNetworkInterface']
def detail(task, name):
    for a in eni(task):
        for d in a['details']:
            if d['name'] == name:
                return d['value']
def serve(name, text, port=80):
    return ['sh', '-c', f'mkdir -p /tmp/www/{name} && echo {text} > /tmp/www/{name}/index.html && httpd -f -p {port} -h /tmp/www']
def get(url, attempts=100):
    for _ in range(attempts):
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode().strip()
        except Exception as e:
            error = e
            time.sleep(0.05)
    return f'unreachable: {error}'
def logs(arn):
    body = json.dumps({'task': arn}).encode()
    req = urllib.request.Request(ENDPOINT, data=body, headers={'X-Amz-Target': 'WasmgateV1.GetTaskLogs', 'Content-Type': 'application/x-amz-json-1.1'})
    return ''.join(e['message'] for e in json.load(urllib.request.urlopen(req))['events'])
"#;

fn script(server: &Server, image: &str, body: &str) -> String {
    format!(
        "ENDPOINT = '{}'\nIMAGE = '{image}'\n{HELPERS}\n{body}",
        server.endpoint
    )
}

async fn busybox() -> (Registry, String) {
    let registry = Registry::start();
    push_busybox(&registry, "busybox:v1").await;
    let image = format!("{}/busybox:v1", registry.addr);
    (registry, image)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_awsvpc_tasks_both_on_port_80_are_served_side_by_side_and_see_only_lo_and_eth0() {
    let (_registry, image) = busybox().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
for name, extra in [('a', {'requiresCompatibilities': ['FARGATE'], 'cpu': '256', 'memory': '512'}), ('b', {'memory': '64'})]:
    ecs.register_task_definition(family=name, networkMode='awsvpc', containerDefinitions=[
        {'name': 'web', 'image': IMAGE, 'command': serve(name, 'hello from ' + name), 'stopTimeout': 2,
         'portMappings': [{'containerPort': 80}], 'dockerLabels': {'wasmgate.http.path': '/' + name}}], **extra)
    ecs.create_service(serviceName=name, taskDefinition=name, desiredCount=1,
        networkConfiguration={'awsvpcConfiguration': {'subnets': ['subnet-1']}})
ecs.get_waiter('services_stable').wait(services=['a', 'b'], WaiterConfig={'Delay': 0.2, 'MaxAttempts': 150})
IPS = {}
for name in ['a', 'b']:
    arn = ecs.list_tasks(serviceName=name)['taskArns'][0]
    t = wait(arn, 'RUNNING')
    ip = detail(t, 'privateIPv4Address')
    c = t['containers'][0]
    print(name, 'eni', eni(t)[0]['status'], detail(t, 'macAddress').count(':'), detail(t, 'subnetId')[:7],
          detail(t, 'networkInterfaceId')[:4], detail(t, 'privateDnsName') == 'ip-' + ip.replace('.', '-') + '.us-east-1.compute.internal',
          c['networkInterfaces'][0]['privateIpv4Address'] == ip, c['networkInterfaces'][0]['attachmentId'] == eni(t)[0]['id'])
    print(name, 'direct', get(f'http://{ip}:80/{name}/index.html'))
    print('IP', name, ip)
    IPS[name] = ip

# Egress: only to a's port 80.
ecs.register_task_definition(family='fenced', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'dockerLabels': {'wasmgate.network.outbound-hosts': IPS['a'] + ':80'},
     'command': ['sh', '-c', f"wget -qO- http://{IPS['a']}/a/index.html; echo a=$?; wget -qO- http://{IPS['b']}/b/index.html 2>/dev/null; echo b=$?"]}])
t = wait(ecs.run_task(taskDefinition='fenced')['tasks'][0]['taskArn'])
print('fenced', repr(logs(t['taskArn'])))

ecs.register_task_definition(family='look', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'command': ['sh', '-c', 'ls /sys/class/net | tr "\\n" " "; echo; cat /etc/resolv.conf']}])
t = wait(ecs.run_task(taskDefinition='look')['tasks'][0]['taskArn'])
print('look', t['containers'][0]['exitCode'], json.dumps(logs(t['taskArn'])), eni(t)[0]['status'])
"#;
    let out = boto3(&server.endpoint, &script(&server, &image, body));
    for name in ["a", "b"] {
        assert!(
            out.contains(&format!(
                "{name} eni ATTACHED 5 subnet- eni- True True True"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name} direct hello from {name}")),
            "{out}"
        );
    }
    let ips: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("IP "))
        .map(|l| l.split(' ').nth(1).unwrap_or_default())
        .collect();
    assert_eq!(ips.len(), 2, "{out}");
    assert_ne!(ips[0], ips[1], "each task has its own address");
    assert!(out.contains("fenced 'hello from a\\na=0\\nb="), "{out}");
    assert!(!out.contains("b=0"), "b is not on the allowlist: {out}");
    // Only lo and eth0: the host's interfaces are not the task's.
    // ... and its resolvers are the host's (but loopback ones).
    let resolv = wasmgate::capacity::container::network::task_resolv_conf(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
            .ok()
            .as_deref(),
    );
    let shown = serde_json::to_string(&format!("eth0 lo \n{resolv}")).unwrap();
    assert!(out.contains(&format!("look 0 {shown} DELETED")), "{out}");
    for name in ["a", "b"] {
        let mut reply = common::http::get(&server.gateway, "localhost", &format!("/{name}/"));
        for _ in 0..100 {
            if reply.status == 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            reply = common::http::get(&server.gateway, "localhost", &format!("/{name}/"));
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.text(), format!("hello from {name}\n"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_containers_of_a_task_share_its_localhost_and_bridge_mode_maps_a_host_port() {
    let (_registry, image) = busybox().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
ecs.register_task_definition(family='pair', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'web', 'image': IMAGE, 'command': serve('pair', 'next door', 8080), 'essential': False},
    {'name': 'client', 'image': IMAGE, 'command': ['sh', '-c',
        'for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/pair/index.html 2>/dev/null && exit 0; sleep 0.1; done; exit 1']}])
t = wait(ecs.run_task(taskDefinition='pair')['tasks'][0]['taskArn'])
client = [c for c in t['containers'] if c['name'] == 'client'][0]
print('pair', client['exitCode'], repr(logs(t['taskArn'])))

# No networkMode: bridge, as ECS's default off Fargate; hostPort left out: a dynamic one.
ecs.register_task_definition(family='bridged', memory='64', containerDefinitions=[
    {'name': 'web', 'image': IMAGE, 'command': serve('b', 'through a host port'), 'stopTimeout': 2,
     'portMappings': [{'containerPort': 80}]}])
arn = ecs.run_task(taskDefinition='bridged')['tasks'][0]['taskArn']
t = wait(arn, 'RUNNING')
binding = t['containers'][0]['networkBindings'][0]
print('binding', binding['containerPort'], binding['protocol'], binding['hostPort'] > 1024, eni(t))
print('bridged', get(f"http://127.0.0.1:{binding['hostPort']}/b/index.html"))
ecs.stop_task(task=arn)
print('stopped', wait(arn)['lastStatus'])
"#;
    let out = boto3(&server.endpoint, &script(&server, &image, body));
    assert!(out.contains("pair 0 'next door\\n'"), "{out}");
    assert!(out.contains("binding 80 tcp True []"), "{out}");
    assert!(out.contains("bridged through a host port"), "{out}");
    assert!(out.contains("stopped STOPPED"), "{out}");
    // Released on stop: no record, no namespace, no lease.
    let networks = data.path().join("containers/networks");
    assert_eq!(records(&networks), Vec::<String>::new());
    assert_eq!(leases(&networks), Vec::<(String, String)>::new());
}

/// The task ids whose network records are on disk.
fn records(networks: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(networks)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".json")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The addresses host-local has leased, and to which task (the lease file's first line).
fn leases(networks: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(networks.join("ipam/wasmgate"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
                .map(|ip| {
                    let owner = std::fs::read_to_string(networks.join("ipam/wasmgate").join(&ip))
                        .unwrap_or_default();
                    let owner = owner.lines().next().unwrap_or_default().to_string();
                    (ip, owner)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What is left of task `task_id` on this host: veths on the bridge, netns mounts, iptables
/// rules naming it or its address.
fn traces(data: &Path, task_id: &str, address: &str) -> Vec<String> {
    let (_, bridge) = task_network_of(data);
    let mut found = Vec::new();
    for line in run("ip", &["-o", "link", "show", "master", &bridge]).lines() {
        found.push(format!("veth: {line}"));
    }
    let netns = data.join("containers/netns");
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
    {
        if line.contains(&*netns.to_string_lossy()) {
            found.push(format!("mount: {line}"));
        }
    }
    let mut rules = run("iptables", &["-w", "-S"]);
    rules += &run("iptables", &["-w", "-t", "nat", "-S"]);
    for line in rules.lines() {
        if line.contains(task_id) || line.contains(&format!("{address}/32")) {
            found.push(format!("rule: {line}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_of_a_task_network_outlives_a_kill_9_and_a_restart() {
    let (_registry, image) = busybox().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
ecs.register_task_definition(family='idle', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'command': ['sleep', '1000']}])
ecs.register_task_definition(family='mapped', networkMode='bridge', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'command': ['sleep', '1000'], 'portMappings': [{'containerPort': 80, 'hostPort': 0}]}])
for family in ['idle', 'idle', 'mapped']:
    t = wait(ecs.run_task(taskDefinition=family)['tasks'][0]['taskArn'], 'RUNNING')
    print('TASK', t['taskArn'].rsplit('/', 1)[1], detail(t, 'privateIPv4Address') or '-')
"#;
    let out = boto3(&server.endpoint, &script(&server, &image, body));
    let networks = data.path().join("containers/networks");
    let leased = leases(&networks);
    let tasks: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("TASK "))
        .map(|l| {
            let (id, shown) = l.split_once(' ').unwrap();
            let (ip, _) = leased.iter().find(|(_, owner)| owner == id).unwrap();
            if shown != "-" {
                assert_eq!(shown, ip, "DescribeTasks shows the leased address");
            }
            (id.to_string(), ip.clone())
        })
        .collect();
    assert_eq!(tasks.len(), 3, "{out}");
    assert_eq!(records(&networks).len(), 3);
    assert_eq!(leased.len(), 3);
    for (id, ip) in &tasks {
        let left = traces(data.path(), id, ip);
        assert!(left.iter().any(|t| t.starts_with("rule:")), "{left:?}");
        assert!(left.iter().any(|t| t.starts_with("mount:")), "{left:?}");
    }
    let veths = run(
        "ip",
        &[
            "-o",
            "link",
            "show",
            "master",
            &task_network_of(data.path()).1,
        ],
    );
    assert_eq!(veths.lines().count(), 3, "{veths}");

    server.kill_9(); // the tasks still running
    let _server = Server::start(data.path());
    assert_eq!(records(&networks), Vec::<String>::new());
    assert_eq!(leases(&networks), Vec::<(String, String)>::new());
    for (id, ip) in &tasks {
        assert_eq!(
            traces(data.path(), id, ip),
            Vec::<String>::new(),
            "task {id}"
        );
    }
    assert_eq!(
        std::fs::read_dir(data.path().join("containers/netns"))
            .unwrap()
            .count(),
        0
    );
}
