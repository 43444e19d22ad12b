//! The hostile suite: images and definitions that try what runc's history of breakouts and a
//! careless runtime would let them, each run through the real server's ECS API with boto3,
//! each asserting what the user is shown (the API's error, the task's stop reason, the
//! container's own output) and that the host is unharmed. Images are OCI layouts on disk
//! (`oci:DIR:latest`): Debian's busybox-static and a hostile layer over it.
//!
//! These need root, runc and (for the network cases) containernetworking-plugins, as
//! tests/containers.rs and tests/awsvpc.rs do (scripts/setup.sh installs them).

mod common;

use std::path::{Path, PathBuf};

use common::aws::boto3;
use common::busybox::{busybox_layer, write_image};
use common::registry::sha256;
use common::server::Server;
use serde_json::json;

/// Python helpers: `td(family, extra, image)`, `run`, `wait`, `logs`, `health`.
const HELPERS: &str = r#"
import json, time, urllib.request
def td(family, extra={}, image=None, memory='64'):
    c = {'name': 'box', 'image': image or IMAGE}
    c.update(extra)
    return ecs.register_task_definition(family=family, memory=memory, containerDefinitions=[c])['taskDefinition']['taskDefinitionArn']
def run(family):
    return ecs.run_task(taskDefinition=family)['tasks'][0]['taskArn']
def wait(arn, status='STOPPED', attempts=600):
    for _ in range(attempts):
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if t['lastStatus'] == status or t['lastStatus'] == 'STOPPED':
            return t
        time.sleep(0.05)
    return t
def health(arn, attempts=600):
    for _ in range(attempts):
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if t.get('healthStatus') == 'HEALTHY' or t['lastStatus'] == 'STOPPED':
            return t
        time.sleep(0.05)
    return t
def logs(arn):
    body = json.dumps({'task': arn}).encode()
    req = urllib.request.Request(ENDPOINT, data=body, headers={'X-Amz-Target': 'WasmgateV1.GetTaskLogs', 'Content-Type': 'application/x-amz-json-1.1'})
    return ''.join(e['message'] for e in json.load(urllib.request.urlopen(req))['events'])
def refused(call):
    try:
        call()
        return 'accepted'
    except Exception as e:
        return str(e)
"#;

fn script(server: &Server, image: &str, body: &str) -> String {
    format!(
        "ENDPOINT = '{}'\nIMAGE = '{image}'\nSERVER_PID = {}\n{HELPERS}\n{body}",
        server.endpoint,
        server.pid()
    )
}

/// The busybox image with `extra` layers over it and `config`, as an OCI layout in a fresh
/// directory under `root`; its reference.
fn image(root: &Path, name: &str, extra: Vec<Vec<u8>>, config: serde_json::Value) -> String {
    let dir = root.join(name);
    let mut layers = vec![busybox_layer()];
    layers.extend(extra);
    write_image(&dir, &layers, config);
    format!("oci:{}:latest", dir.display())
}

fn busybox_config() -> serde_json::Value {
    json!({"Cmd": ["true"], "Env": ["PATH=/bin"]})
}

/// A plain tar layer, its entries written byte for byte (tar's builder refuses the
/// hostile names these tests need).
struct RawLayer(tar::Builder<Vec<u8>>);

impl RawLayer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn entry(
        mut self,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        mode: u32,
        data: &[u8],
    ) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(1).unwrap();
        }
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn dir(self, name: &str) -> Self {
        self.entry(tar::EntryType::Directory, name, "", 0o755, &[])
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn file_sha256(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

fn runc_binary() -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "runc is installed (scripts/setup.sh)");
    std::fs::canonicalize(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_directory_in_proc_self_fd_is_refused_by_validation_by_wasmgate_and_by_runc() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let in_proc = image(
        images.path(),
        "in-proc",
        vec![],
        json!({"Cmd": ["echo", "ran"], "Env": ["PATH=/bin"], "WorkingDir": "/proc/self/fd/7"}),
    );
    // A symlink in the image leads to the same place (runc itself must catch this one).
    let through_link = image(
        images.path(),
        "through-link",
        vec![
            RawLayer::new()
                .entry(
                    tar::EntryType::Symlink,
                    "work",
                    "/proc/self/fd/7",
                    0o777,
                    &[],
                )
                .bytes(),
        ],
        json!({"Cmd": ["echo", "ran"], "Env": ["PATH=/bin"], "WorkingDir": "/work"}),
    );
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = format!(
        r#"
print('definition', refused(lambda: td('cwd', {{'workingDirectory': '/proc/self/fd/7', 'command': ['echo', 'ran']}})))
print('dev fd', refused(lambda: td('devfd', {{'workingDirectory': '/dev/fd/../../proc/1/cwd'}})))
for name, image in [('in-proc', '{in_proc}'), ('through-link', '{through_link}')]:
    t = wait(run(td(name, image=image)))
    c = t['containers'][0]
    print(name, t['stopCode'], c.get('exitCode'), json.dumps(c.get('reason', '')), 'ran' in logs(t['taskArn']))
"#
    );
    let out = boto3(&server.endpoint, &script(&server, &plain, &body));
    assert!(
        out.contains(
            "definition An error occurred (ClientException) when calling the RegisterTaskDefinition \
             operation: Invalid task definition: containerDefinitions[0].workingDirectory: \"/proc/self/fd/7\" is inside \
             /proc, a kernel file system a container may not work in (the shape of CVE-2024-21626)"
        ),
        "{out}"
    );
    assert!(
        out.contains("dev fd An error occurred (ClientException)"),
        "{out}"
    );
    assert!(out.contains("is inside /proc"), "{out}");
    assert!(
        out.contains(
            "in-proc TaskFailedToStart None \"CannotStartContainerError: the working directory \
             \\\"/proc/self/fd/7\\\" is inside /proc"
        ),
        "{out}"
    );
    let link = out
        .lines()
        .find(|l| l.starts_with("through-link "))
        .unwrap_or_default();
    assert!(
        link.contains(
            " 125 \"CannotStartContainerError: unable to start container process: error during \
             container init: "
        ) && link.ends_with(" False"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_writing_to_proc_exe_leaves_the_hosts_runc_unchanged() {
    let runc = runc_binary();
    let before = file_sha256(&runc);
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // The CVE-2019-5736 shape: overwrite its own binary, then every process's binary it can
    // see, while health checks make runc enter the container (`runc exec`) again and again.
    let body = r#"
attack = '''(echo pwned > /proc/self/exe) 2>/dev/null; echo self=$?
echo started
while true; do for f in /proc/[0-9]*/exe; do (echo pwned > $f) 2>/dev/null && echo WROTE $f; done; done'''
td('exe', {'command': ['sh', '-c', attack], 'stopTimeout': 1, 'cpu': 256,
           'healthCheck': {'command': ['CMD', 'true'], 'interval': 5, 'timeout': 5, 'retries': 3}})
arn = run('exe')
t = health(arn)
print('health', t.get('healthStatus'))
ecs.stop_task(task=arn)
t = wait(arn)
out = logs(arn)
print('self', 'self=0' not in out and 'self=' in out, 'wrote', 'WROTE' in out, t['lastStatus'])
"#;
    let out = boto3(&server.endpoint, &script(&server, &plain, body));
    assert!(out.contains("health HEALTHY"), "{out}");
    assert!(out.contains("self True wrote False STOPPED"), "{out}");
    assert_eq!(file_sha256(&runc), before, "the host's runc is unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_nodes_are_skipped_setuid_bits_kept_without_effect_and_escaping_hard_links_refused()
{
    let images = tempfile::tempdir().unwrap();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let odd = RawLayer::new()
        .entry(tar::EntryType::Char, "evil-mem", "", 0o666, &[])
        .entry(tar::EntryType::Block, "tmp/evil-disk", "", 0o666, &[])
        .entry(tar::EntryType::Fifo, "evil-fifo", "", 0o666, &[])
        .dir("suid")
        .entry(tar::EntryType::Regular, "suid/id", "", 0o4755, &busybox)
        .dir("hl")
        // An absolute hard link names a file of the image, as in Docker.
        .entry(tar::EntryType::Link, "hl/echo", "/bin/busybox", 0o755, &[])
        .bytes();
    let odd = image(
        images.path(),
        "odd",
        vec![odd],
        json!({"Cmd": ["sh", "-c", "test -e /evil-mem; echo mem=$?; test -e /tmp/evil-disk; echo disk=$?; test -e /evil-fifo; echo fifo=$?; stat -c suid=%a /suid/id; /suid/id -u; /hl/echo linked"],
               "Env": ["PATH=/bin"], "User": "nobody"}),
    );
    let climbing = image(
        images.path(),
        "climbing",
        vec![
            RawLayer::new()
                .entry(
                    tar::EntryType::Link,
                    "bin/passwd",
                    "../../../../etc/passwd",
                    0o644,
                    &[],
                )
                .bytes(),
        ],
        busybox_config(),
    );
    let through_symlink = image(
        images.path(),
        "through-symlink",
        vec![
            RawLayer::new()
                .entry(tar::EntryType::Symlink, "escape", "/etc/shadow", 0o777, &[])
                .entry(tar::EntryType::Link, "bin/shadow", "escape", 0o644, &[])
                .bytes(),
        ],
        busybox_config(),
    );
    let passwd_links = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/etc/passwd").unwrap().nlink()
    };
    let links_before = passwd_links();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = format!(
        r#"
t = wait(run(td('odd', image='{odd}')))
print('odd', t['stopCode'], t['containers'][0].get('exitCode'), json.dumps(logs(t['taskArn'])))
for name, image in [('climbing', '{climbing}'), ('through-symlink', '{through_symlink}')]:
    t = wait(run(td(name, image=image)))
    print(name, t['stopCode'], json.dumps(t['stoppedReason']))
"#
    );
    let out = boto3(&server.endpoint, &script(&server, &odd, &body));
    // Devices and FIFOs are not made; the setuid bit is kept (as Docker keeps it) but gives
    // nothing: no new privileges, so `id -u` stays nobody's.
    assert!(
        out.contains(
            r#"odd EssentialContainerExited 0 "mem=1\ndisk=1\nfifo=1\nsuid=4755\n65534\nlinked\n""#
        ),
        "{out}"
    );
    assert!(
        out.contains("climbing TaskFailedToStart \"CannotPullContainerError:")
            && out.contains("\\\"bin/passwd\\\": its path climbs out of the image with"),
        "{out}"
    );
    assert!(
        out.contains("through-symlink TaskFailedToStart \"CannotPullContainerError:")
            && out.contains(
                "hard link to \\\"escape\\\", which is not a regular file inside the image"
            ),
        "{out}"
    );
    assert_eq!(
        passwd_links(),
        links_before,
        "no link to the host's /etc/passwd"
    );
    // The unpacked images (setuid files among them) are root's alone on the host.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("containers/rootfs"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_of_an_undeclared_volume_is_refused_and_a_read_only_one_stays_unwritten() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("kept.txt"), "the host's\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = format!(
        r#"
print('undeclared', refused(lambda: td('undeclared', {{'mountPoints': [{{'sourceVolume': 'hostroot', 'containerPath': '/host'}}]}})))
ecs.register_task_definition(family='ro', memory='64',
    volumes=[{{'name': 'shared', 'host': {{'sourcePath': '{shared}'}}}}],
    containerDefinitions=[{{'name': 'box', 'image': IMAGE,
        'mountPoints': [{{'sourceVolume': 'shared', 'containerPath': '/shared', 'readOnly': True}}],
        'command': ['sh', '-c', 'cat /shared/kept.txt; (echo changed > /shared/kept.txt) 2>/dev/null; echo write=$?; ls /']}}])
t = wait(run('ro'))
print('ro', t['containers'][0].get('exitCode'), json.dumps(logs(t['taskArn'])))
"#,
        shared = shared.path().display()
    );
    let out = boto3(&server.endpoint, &script(&server, &plain, &body));
    assert!(
        out.contains(
            "undeclared An error occurred (ClientException) when calling the \
             RegisterTaskDefinition operation: Invalid task definition: \
             containerDefinitions[0].mountPoints[0].sourceVolume: \
             names volume \"hostroot\", which the task does not declare in volumes"
        ),
        "{out}"
    );
    assert!(out.contains(r#"ro 0 "the host's\nwrite=1\n"#), "{out}");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("kept.txt")).unwrap(),
        "the host's\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_flooding_its_log_is_capped_and_the_server_keeps_answering_in_bounded_memory() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
def rss_kib():
    for line in open(f'/proc/{SERVER_PID}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
before = rss_kib()
td('flood', {'command': ['yes', 'a line of a container that floods its log'], 'stopTimeout': 1})
arn = run('flood')
wait(arn, 'RUNNING')
most = before
answered = 0
for _ in range(40):
    started = time.monotonic()
    answered += len(ecs.list_clusters()['clusterArns'])
    most = max(most, rss_kib())
    time.sleep(0.1)
page = json.load(urllib.request.urlopen(urllib.request.Request(ENDPOINT, data=json.dumps({'task': arn}).encode(),
    headers={'X-Amz-Target': 'WasmgateV1.GetTaskLogs', 'Content-Type': 'application/x-amz-json-1.1'})))
ecs.stop_task(task=arn)
t = wait(arn)
print('answered', answered, 'truncated', page.get('truncated'), t['lastStatus'])
print('rss growth MiB', (most - before) // 1024)
"#;
    let out = boto3(&server.endpoint, &script(&server, &plain, body));
    println!("{out}");
    assert!(out.contains("answered 40 truncated True STOPPED"), "{out}");
    let growth: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("rss growth MiB "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    // The log ring holds 1 MiB per container and the file 2 MiB per task; the rest of the
    // flood is dropped, not buffered.
    assert!(growth < 64, "the server grew by {growth} MiB: {out}");
    let on_disk: u64 = std::fs::read_dir(data.path().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(on_disk <= 3 << 20, "{on_disk} bytes of logs on disk");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_stops_at_the_pids_limit_and_the_server_stays_fine() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
td('bomb', {'command': ['sh', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 1000'], 'stopTimeout': 1, 'cpu': 256})
b = run('bomb')
print('bomb ran', wait(b, 'RUNNING')['lastStatus'])
cgroup = 'wasmgate/' + b.rsplit('/', 1)[1] + '-box/pids.current'
most = 0
for _ in range(40):
    for base in ['/sys/fs/cgroup/pids/', '/sys/fs/cgroup/']:
        try:
            most = max(most, int(open(base + cgroup).read()))
        except OSError:
            pass
    time.sleep(0.05)
print('bomb pids', most > 100, most <= 1024)
ecs.stop_task(task=b)
t = wait(b)
print('bomb', t['lastStatus'])
print('server fine', len(ecs.list_clusters()['clusterArns']))
"#;
    let out = boto3(&server.endpoint, &script(&server, &plain, body));
    assert!(out.contains("bomb ran RUNNING"), "{out}");
    // The bomb really forked, and the pids limit (1024) held.
    assert!(out.contains("bomb pids True True"), "{out}");
    assert!(out.contains("bomb STOPPED"), "{out}");
    assert!(out.contains("server fine 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_awsvpc_task_reaches_another_only_on_its_published_ports_and_sees_only_lo_and_eth0() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
def detail(task, name):
    for a in [a for a in task.get('attachments', []) if a['type'] == 'ElasticNetworkInterface']:
        for d in a['details']:
            if d['name'] == name:
                return d['value']
serve = 'mkdir -p /tmp/www && echo served > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && httpd -f -p 80 -h /tmp/www'
ecs.register_task_definition(family='target', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'web', 'image': IMAGE, 'command': ['sh', '-c', serve], 'stopTimeout': 1,
     'portMappings': [{'containerPort': 80}],
     # Inside its own task, the unpublished port answers.
     'healthCheck': {'command': ['CMD-SHELL', 'wget -qO- http://127.0.0.1:8080/index.html'], 'interval': 5, 'retries': 3}}])
target = run('target')
t = health(target)
ip = detail(t, 'privateIPv4Address')
print('target', t.get('healthStatus'))
print('IP', ip)
probe = f'wget -qO- http://{ip}/index.html; echo published=$?; wget -qO- http://{ip}:8080/index.html 2>/dev/null; echo unpublished=$?; ls /sys/class/net | tr "\\n" " "; grep -c : /proc/net/dev'
ecs.register_task_definition(family='probe', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'command': ['sh', '-c', probe]}])
p = wait(run('probe'))
print('probe', json.dumps(logs(p['taskArn'])))
"#;
    let out = boto3(&server.endpoint, &script(&server, &plain, body));
    assert!(out.contains("target HEALTHY"), "{out}");
    assert!(
        out.contains(r#"probe "served\npublished=0\nunpublished=1\neth0 lo 2\n""#),
        "{out}"
    );
    // From the host too: the published port answers, the other is refused.
    let ip = out
        .lines()
        .find_map(|l| l.strip_prefix("IP "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let connect = |port: u16| {
        std::net::TcpStream::connect_timeout(
            &format!("{ip}:{port}").parse().unwrap(),
            std::time::Duration::from_secs(5),
        )
    };
    assert!(connect(80).is_ok(), "{out}");
    assert!(connect(8080).is_err(), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dockers_hardening_and_the_linux_parameters_are_in_force_inside_the_container() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let body = r#"
look = ('grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status | tr -d "\\t"; '
        'tr "\\0" " " < /proc/1/cmdline; echo; '
        'grep -E " /(dev/shm|scratch) " /proc/mounts | tr " " "\\n" | grep -E "^(/dev/shm|/scratch|.*size=.*)$"; '
        'echo nofile=$(ulimit -n)/$(ulimit -Hn); '
        'echo up; while true; do sleep 0.1; done')
ecs.register_task_definition(family='linux', memory='64', containerDefinitions=[{'name': 'box', 'image': IMAGE,
    'command': ['sh', '-c', look], 'stopTimeout': 2,
    'linuxParameters': {'capabilities': {'drop': ['ALL'], 'add': ['NET_BIND_SERVICE']}, 'initProcessEnabled': True,
        'sharedMemorySize': 128, 'tmpfs': [{'containerPath': '/scratch', 'size': 16, 'mountOptions': ['noexec']}],
        'maxSwap': 0, 'swappiness': 10},
    'ulimits': [{'name': 'nofile', 'softLimit': 4096, 'hardLimit': 8192}]}])
arn = run('linux')
wait(arn, 'RUNNING')
for _ in range(200):
    if '\nup\n' in logs(arn):
        break
    time.sleep(0.05)
cgroup = '/sys/fs/cgroup/memory/wasmgate/' + arn.rsplit('/', 1)[1] + '-box/'
try:
    limit, both, swappiness = [open(cgroup + f).read().strip() for f in ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'memory.swappiness']]
    print('swap', limit == both, swappiness)
except OSError as e:
    print('swap', 'no v1 memsw', e)
ecs.stop_task(task=arn)
t = wait(arn)
print('linux', t['containers'][0].get('exitCode'), json.dumps(logs(arn)))
"#;
    let out = boto3(&server.endpoint, &script(&server, &plain, body));
    // Seccomp in filter mode, no new privileges, only the one capability (bit 10).
    assert!(
        out.contains(r#"CapEff:0000000000000400\nNoNewPrivs:1\nSeccomp:2\n"#),
        "{out}"
    );
    // tini as pid 1 (so a TERM reaches the shell and the exit is 143, not a kill after the grace).
    assert!(
        out.contains(r#"/sbin/docker-init -- sh -c "#) && out.contains("linux 143 "),
        "{out}"
    );
    assert!(
        out.contains(r#"/dev/shm\n"#) && out.contains("size=131072k"),
        "{out}"
    );
    assert!(
        out.contains(r#"/scratch\n"#) && out.contains("size=16384k"),
        "{out}"
    );
    assert!(out.contains(r#"nofile=4096/8192\n"#), "{out}");
    if std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        // maxSwap 0: memory and swap together are the memory limit.
        assert!(out.contains("swap True 10"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_userns_a_containers_root_is_an_unprivileged_host_id() {
    let images = tempfile::tempdir().unwrap();
    let plain = image(images.path(), "plain", vec![], busybox_config());
    let data = tempfile::tempdir().unwrap();
    {
        // The container's root passes through the data directory to its bundle.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let server = Server::start_with(data.path(), &["--userns"]);
    let body = r#"
look = 'id -u; cat /proc/self/uid_map | tr -s " "; echo made > /made-by-root; cat /made-by-root; echo x > /tmp/x && echo tmp ok; echo up; while true; do sleep 0.1; done'
td('userns', {'command': ['sh', '-c', look], 'stopTimeout': 1})
arn = run('userns')
wait(arn, 'RUNNING')
for _ in range(200):
    if '\nup\n' in logs(arn):
        break
    time.sleep(0.05)
import os
upper = DATA + '/containers/bundles/' + arn.rsplit('/', 1)[1] + '-box/upper/made-by-root'
try:
    print('owner', os.stat(upper).st_uid)
except OSError as e:
    print('owner', e)
ecs.stop_task(task=arn)
t = wait(arn)
print('userns', json.dumps(logs(arn)))
ecs.register_task_definition(family='vpc', networkMode='awsvpc', memory='64', containerDefinitions=[
    {'name': 'box', 'image': IMAGE, 'command': ['sh', '-c', 'ls /sys | wc -l; grep -c : /proc/net/dev; id -u']}])
t = wait(run('vpc'))
print('vpc', t['containers'][0].get('exitCode'), json.dumps(logs(t['taskArn'])))
"#;
    let body = format!("DATA = '{}'\n{body}", data.path().display());
    let out = boto3(&server.endpoint, &script(&server, &plain, &body));
    // Root inside, 2^30 on the host: its files in the overlay are that id's.
    assert!(
        out.contains(r#"userns "0\n 0 1073741824 65536\nmade\ntmp ok\nup\n"#),
        "{out}"
    );
    assert!(out.contains("owner 1073741824"), "{out}");
    // In its task's network namespace: only lo and eth0, and an empty /sys.
    assert!(out.contains(r#"vpc 0 "0\n2\n0\n""#), "{out}");
}
