//! Container images run through runc, driven through the ECS API: a tiny image made here from
//! Debian's busybox-static (a gzip layer, an OCI config), pushed to a real registry on
//! loopback; output, exit codes, overrides, stops, the memory limit, stats, a hostile layer,
//! and nothing left behind after a kill -9 (more hostile images in tests/hostile.rs). These need root (runc, overlay mounts, cgroups),
//! except the last: a host without an OCI runtime says so.

mod common;

use common::aws::boto3;
use common::busybox::push_busybox;
use common::registry::{Registry, sha256};
use common::server::Server;
use serde_json::json;

/// Python: registers `box` running IMAGE with `extra` container members, and helpers.
fn script(image: &str, body: &str) -> String {
    format!(
        r#"
import json, time, urllib.request
def td(family, extra={{}}, memory='64'):
    c = {{'name': 'box', 'image': '{image}'}}
    c.update(extra)
    return ecs.register_task_definition(family=family, memory=memory, containerDefinitions=[c])['taskDefinition']['taskDefinitionArn']
def run(family, overrides=None):
    kw = {{'overrides': {{'containerOverrides': [overrides]}}}} if overrides else {{}}
    return ecs.run_task(taskDefinition=family, **kw)['tasks'][0]['taskArn']
def wait(arn, status='STOPPED', attempts=600):
    for _ in range(attempts):
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if t['lastStatus'] == status or t['lastStatus'] == 'STOPPED':
            return t
        time.sleep(0.05)
    return t
def logs(arn):
    body = json.dumps({{'task': arn}}).encode()
    req = urllib.request.Request(ENDPOINT, data=body, headers={{'X-Amz-Target': 'WasmgateV1.GetTaskLogs', 'Content-Type': 'application/x-amz-json-1.1'}})
    return ''.join(e['message'] for e in json.load(urllib.request.urlopen(req))['events'])
{body}
"#
    )
}

fn with_endpoint(server: &Server, text: String) -> String {
    format!("ENDPOINT = '{}'\n{text}", server.endpoint)
}

#[tokio::test(flavor = "multi_thread")]
async fn busybox_runs_with_output_exit_codes_overrides_stops_and_limits() {
    let registry = Registry::start();
    push_busybox(&registry, "busybox:v1").await;
    let image = format!("{}/busybox:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
td('echo')
t = wait(run('echo'))
c = t['containers'][0]
print('echo', t['stopCode'], c['exitCode'], c['imageDigest'][:7], repr(logs(t['taskArn'])))

td('env', {'command': ['sh', '-c', 'echo $FROM_IMAGE $GREETING $(pwd) $(id -u); exit 3'], 'user': 'nobody'})
t = wait(run('env', {'name': 'box', 'environment': [{'name': 'GREETING', 'value': 'hi'}]}))
print('env', t['containers'][0]['exitCode'], repr(logs(t['taskArn'])))
t = wait(run('env', {'name': 'box', 'command': ['echo', 'overridden']}))
print('override', t['containers'][0]['exitCode'], repr(logs(t['taskArn'])))

td('graceful', {'command': ['sh', '-c', "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done"]})
g = run('graceful')
wait(g, 'RUNNING')
for _ in range(100):
    if 'up' in logs(g):
        break
    time.sleep(0.05)
ecs.stop_task(task=g, reason='enough')
t = wait(g)
print('graceful', t['containers'][0]['exitCode'], t['stopCode'], repr(logs(g)))

td('stubborn', {'command': ['sh', '-c', "trap '' TERM; echo deaf; while true; do sleep 0.1; done"], 'stopTimeout': 1})
s = run('stubborn')
wait(s, 'RUNNING')
# Once it said so, the shell ignores TERM: only the kill after stopTimeout can end it.
for _ in range(100):
    if 'deaf' in logs(s):
        break
    time.sleep(0.05)
print('deaf', 'deaf' in logs(s))
ecs.stop_task(task=s)
t = wait(s)
print('stubborn', t['containers'][0]['exitCode'], t['containers'][0].get('reason', '')[:12])

td('hog', {'command': ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1']}, memory='16')
t = wait(run('hog'))
print('hog', t['containers'][0]['exitCode'], t['containers'][0].get('reason', '')[:17])
"#;
    let out = boto3(
        &server.endpoint,
        &with_endpoint(&server, script(&image, body)),
    );
    assert!(
        out.contains("echo EssentialContainerExited 0 sha256: 'hello from a container\\n'"),
        "{out}"
    );
    assert!(out.contains("env 3 'yes hi /tmp 65534\\n'"), "{out}");
    assert!(out.contains("override 0 'overridden\\n'"), "{out}");
    assert!(
        out.contains("graceful 0 UserInitiated 'up\\ngot TERM\\n'"),
        "{out}"
    );
    assert!(out.contains("deaf True"), "{out}");
    assert!(out.contains("stubborn 137 StopTimeout:"), "{out}");
    assert!(out.contains("hog 137 OutOfMemoryError:"), "{out}");
    // Every container is gone once its task stopped: no runc state, no bundle.
    let bundles = data.path().join("containers/bundles");
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_container_reports_stats_and_nothing_outlives_a_kill_9() {
    let registry = Registry::start();
    push_busybox(&registry, "busybox:v1").await;
    let image = format!("{}/busybox:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
td('busy', {'command': ['sh', '-c', 'while true; do :; done'], 'cpu': 256, 'stopTimeout': 2})
b = run('busy')
wait(b, 'RUNNING')
task_id = b.rsplit('/', 1)[1]
cpu = mem = 0
for _ in range(100):
    stats = json.load(urllib.request.urlopen(ENDPOINT + '/v1/tasks/' + task_id + '/stats'))
    if 'box' in stats:
        cpu = stats['box']['cpu_stats']['cpu_usage']['total_usage']
        mem = stats['box']['memory_stats']['usage']
        if cpu > 0 and mem > 0:
            break
    time.sleep(0.1)
print('stats', cpu > 0, mem > 0)
"#;
    let out = boto3(
        &server.endpoint,
        &with_endpoint(&server, script(&image, body)),
    );
    assert!(out.contains("stats True True"), "{out}");
    let bundles = data.path().join("containers/bundles");
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 1);
    server.kill_9(); // the container still running
    let _server = Server::start(data.path());
    assert_eq!(
        std::fs::read_dir(&bundles).unwrap().count(),
        0,
        "the restarted server removed the bundle"
    );
    let listed = std::process::Command::new("runc")
        .arg("--root")
        .arg(data.path().join("containers/runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_layer_is_refused_and_writes_nothing_outside() {
    let registry = Registry::start();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    let payload = b"pwned";
    header.set_size(payload.len() as u64);
    let name = b"../../../../../../tmp/wasmgate-escaped";
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    tar.append(&header, &payload[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    registry
        .push_raw_image(
            "evil:v1",
            ("application/vnd.oci.image.config.v1+json", config),
            ("application/vnd.oci.image.layer.v1.tar", layer),
        )
        .await;
    let _ = std::fs::remove_file("/tmp/wasmgate-escaped");
    let image = format!("{}/evil:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = boto3(
        &server.endpoint,
        &with_endpoint(
            &server,
            script(
                &image,
                "t = wait(run(td('evil')))\nprint('evil', t['stopCode'], t['stoppedReason'])\n",
            ),
        ),
    );
    assert!(
        out.contains("evil TaskFailedToStart CannotPullContainerError"),
        "{out}"
    );
    assert!(out.contains("climbs out of the image"), "{out}");
    assert!(!std::path::Path::new("/tmp/wasmgate-escaped").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn container_services_are_kept_up_and_checked() {
    let registry = Registry::start();
    push_busybox(&registry, "busybox:v1").await;
    let image = format!("{}/busybox:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
serve = ['sh', '-c', 'echo ok > /tmp/ok; while true; do sleep 0.1; done']
td('well', {'command': serve, 'stopTimeout': 2, 'healthCheck': {'command': ['CMD', 'cat', '/tmp/ok'], 'interval': 5, 'timeout': 2, 'retries': 1, 'startPeriod': 10}})
td('sick', {'command': serve, 'stopTimeout': 2, 'healthCheck': {'command': ['CMD-SHELL', 'cat /tmp/never'], 'interval': 5, 'timeout': 2, 'retries': 1}})
ecs.create_service(serviceName='well', taskDefinition='well', desiredCount=1)
ecs.get_waiter('services_stable').wait(services=['well'], WaiterConfig={'Delay': 0.2, 'MaxAttempts': 150})
first = ecs.list_tasks(serviceName='well')['taskArns'][0]
t = wait(first, 'RUNNING')
for _ in range(300):
    t = ecs.describe_tasks(tasks=[first])['tasks'][0]
    if t['healthStatus'] == 'HEALTHY':
        break
    time.sleep(0.05)
print('well', t['healthStatus'])
ecs.stop_task(task=first, reason='chaos')
status = None
for _ in range(200):
    now = ecs.list_tasks(serviceName='well')['taskArns']
    status = ecs.describe_tasks(tasks=now)['tasks'][0]['lastStatus'] if now else None
    if now and now[0] != first and status == 'RUNNING':
        break
    time.sleep(0.05)
print('replaced', bool(now) and now[0] != first, status)

ecs.create_service(serviceName='sick', taskDefinition='sick', desiredCount=1)
stopped = []
for _ in range(300):
    stopped = ecs.list_tasks(serviceName='sick', desiredStatus='STOPPED')['taskArns']
    if stopped:
        break
    time.sleep(0.05)
t = ecs.describe_tasks(tasks=stopped)['tasks'][0]
print('sick', t['stoppedReason'], t['healthStatus'])

"#;
    let out = boto3(
        &server.endpoint,
        &with_endpoint(&server, script(&image, body)),
    );
    assert!(out.contains("well HEALTHY"), "{out}");
    assert!(out.contains("replaced True RUNNING"), "{out}");
    assert!(
        out.contains("sick Task failed container health checks UNHEALTHY"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_proxies_to_a_container_on_the_host_network() {
    let registry = Registry::start();
    push_busybox(&registry, "busybox:v1").await;
    let image = format!("{}/busybox:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let body = format!(
        r#"
serve = ['sh', '-c', 'mkdir -p /tmp/www/box && echo hello from httpd > /tmp/www/box/index.html && httpd -f -p 127.0.0.1:{port} -h /tmp/www']
ecs.register_task_definition(family='web', memory='64', networkMode='host', containerDefinitions=[
    {{'name': 'box', 'image': '{image}', 'command': serve, 'stopTimeout': 2,
      'portMappings': [{{'containerPort': {port}, 'hostPort': {port}}}],
      'dockerLabels': {{'wasmgate.http.path': '/box'}}}}])
ecs.create_service(serviceName='web', taskDefinition='web', desiredCount=1)
ecs.get_waiter('services_stable').wait(services=['web'], WaiterConfig={{'Delay': 0.2, 'MaxAttempts': 150}})
print('stable')
"#
    );
    let out = boto3(
        &server.endpoint,
        &with_endpoint(&server, script(&image, &body)),
    );
    assert!(out.contains("stable"), "{out}");
    let mut reply = common::http::get(&server.gateway, "localhost", "/box/index.html");
    for _ in 0..100 {
        if reply.status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        reply = common::http::get(&server.gateway, "localhost", "/box/index.html");
    }
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text(), "hello from httpd\n");
    // The same limits as for Wasm handlers: a declared body over the limit is 413.
    let big = vec![b'a'; 11 << 20];
    let refused =
        common::http::request(&server.gateway, "POST", "localhost", "/box/x", &big, false).unwrap();
    assert_eq!(refused.status, 413);
}

#[test]
fn a_container_image_stops_with_the_reason_when_the_host_has_no_oci_runtime() {
    // An OCI image layout on disk (no registry): one layer holding one file.
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(3);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", &b"hi\n"[..])
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let (layer_digest, layer_size) = blob(&layer);
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    });
    let (config_digest, config_size) = blob(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.path().join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--runtime", "/nonexistent/runc"]);
    let definition = json!({
        "family": "box", "memory": "64",
        "containerDefinitions": [{"name": "box",
            "image": format!("oci:{}:v1", layout.path().display())}],
    });
    let file = data.path().join("box.json");
    std::fs::write(&file, definition.to_string()).unwrap();
    let cli = |args: &[&str]| {
        let output = common::wasmgate(data.path())
            .args(args)
            .env("WASMGATE_ENDPOINT", &server.endpoint)
            .env_remove("AWS_ACCESS_KEY_ID")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = cli(&["register", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stdout, stderr) = cli(&["run-task", "box", "--wait"]);
    let id = stdout.lines().next().unwrap_or_default().to_string();
    assert_eq!(id.len(), 32, "{stdout}{stderr}");
    let (_, described, _) = cli(&["describe", &id]);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    let task = &described["tasks"][0];
    assert_eq!(task["lastStatus"], "STOPPED", "{task}");
    assert_eq!(task["stopCode"], "TaskFailedToStart", "{task}");
    let reason = task["containers"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("CannotStartContainerError:")
            && reason.contains("is a container image")
            && reason.contains("this host has no OCI runtime (install runc, or pass --runtime)"),
        "{task}"
    );
}
