//! A fleet on one machine for multi-host tests: `wasmgate server`s (controllers) in the root
//! namespace of a [`TestNet`] and `wasmgate agent`s in its hosts' namespaces, with the helpers
//! the scenarios share (fetching over HTTP from a namespace, waiting for a condition, boto3
//! against a controller).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::hosts::TestNet;

/// A child process killed (-9) and reaped when dropped, even if the test panics.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fetches `url` with Python's urllib, giving up after `timeout_s`; prints the body.
pub const FETCH: &str = "import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode(), end='')";

/// The body at `url` fetched by `command` (python3, here or in a host), or why not.
pub fn fetch(mut command: Command, url: &str, timeout: Duration) -> Result<String, String> {
    let output = command
        .args(["-c", FETCH, url, &timeout.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr.lines().last().unwrap_or_default().to_string())
    }
}

/// Polls `condition` until it holds, or panics once `what` has taken 30 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match condition() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `python3 -m http.server` on `ip:port` serving `dir`, started by `command` (here or in a
/// host).
pub fn http_server(mut command: Command, ip: &str, port: u16, dir: &Path) -> Killed {
    let child = command
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            ip,
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server starts");
    Killed(child)
}

/// The join token every test controller takes.
pub const TOKEN: &str = "test-join-token-0123456789";

/// A `wasmgate server` in the root namespace on the bridge address, with no agent of its own
/// and short host timeouts (2 s to disconnected, 5 s to lost).
pub struct Controller {
    pub process: Killed,
    pub endpoint: String,
    pub gateway: String,
    pub token_file: std::path::PathBuf,
    pub data: tempfile::TempDir,
}

pub fn controller(net: &TestNet) -> Controller {
    controller_with(net, &[])
}

pub fn controller_with(net: &TestNet, extra: &[&str]) -> Controller {
    let data = tempfile::tempdir().expect("temp dir");
    let token_file = data.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write the token");
    let ip = net.controller_ip();
    let mut child = super::wasmgate(data.path())
        .args([
            "server",
            "--listen",
            &format!("{ip}:0"),
            "--gateway",
            &format!("{ip}:0"),
        ])
        .args([
            "--no-local-agent",
            "--agent-timeout",
            "2",
            "--agent-lost-after",
            "5",
        ])
        .arg("--agent-token-file")
        .arg(&token_file)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.path().join("server.log")).expect("log file"))
        .spawn()
        .expect("wasmgate server starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut read = |prefix: &str| {
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("the server prints");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}, got {line:?}"))
            .to_string()
    };
    let endpoint = read("listening on ");
    let gateway = read("gateway on http://");
    // The rest of what it prints is not read; a thread drains it so it never blocks.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Controller {
        process: Killed(child),
        endpoint,
        gateway,
        token_file,
        data,
    }
}

/// A `wasmgate agent` in host `i`'s namespace, named `host-i`.
pub struct Agent {
    pub child: Option<Killed>,
    pub id: String,
    pub data: std::path::PathBuf,
    /// Its introspection endpoint (`http://IP:8082`).
    pub endpoint: String,
}

/// The data directories of agents; kept for the whole test binary so that a restarted agent
/// finds its own.
pub fn agent_dir(net: &TestNet, i: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmgate-agent-{}-{i}", net.netns(i)));
    std::fs::create_dir_all(&dir).expect("agent dir");
    dir
}

pub fn start_agent(net: &TestNet, i: usize, controller: &Controller, extra: &[&str]) -> Agent {
    let command = net.command(i, env!("CARGO_BIN_EXE_wasmgate"));
    start_agent_by(command, net, i, controller, extra)
}

/// As [`start_agent`], run by `command` (the agent binary in host `i`'s namespace).
pub fn start_agent_by(
    mut command: Command,
    net: &TestNet,
    i: usize,
    controller: &Controller,
    extra: &[&str],
) -> Agent {
    let data = agent_dir(net, i);
    let mut child = command
        .env("WASMGATE_DATA_DIR", &data)
        .env_remove("RUST_LOG")
        .args([
            "agent",
            "--controller",
            &controller.endpoint,
            "--name",
            &format!("host-{i}"),
        ])
        .arg("--token-file")
        .arg(&controller.token_file)
        .args(["--listen", &format!("{}:8082", net.host_ip(i))])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.join("agent.log")).expect("log file"))
        .spawn()
        .expect("wasmgate agent starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let (first_line, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
        let _ = first_line.send(line);
        std::io::copy(&mut stdout, &mut std::io::sink())
    });
    let line = read
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_default();
    let Some(id) = line.trim().strip_prefix("joined as ") else {
        let _ = child.kill();
        let log = std::fs::read_to_string(data.join("agent.log")).unwrap_or_default();
        panic!("agent {i} did not join within 60 s: {line:?}\n{log}");
    };
    let id = id.to_string();
    Agent {
        child: Some(Killed(child)),
        id,
        data,
        endpoint: format!("http://{}:8082", net.host_ip(i)),
    }
}

impl Agent {
    pub fn kill(&mut self) {
        self.child.take();
    }

    /// The ids of the tasks the agent itself says it runs (asked from inside its host).
    pub fn running(&self, net: &TestNet, i: usize) -> Result<Vec<String>, String> {
        let body = fetch(
            net.command(i, "python3"),
            &format!("{}/v1/agent/tasks", self.endpoint),
            Duration::from_secs(2),
        )?;
        let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(value["Running"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

/// An agent that ends with its test takes its data directory with it; one killed before
/// ([`Agent::kill`]) leaves it for the agent started again in its place.
impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.take().is_some() {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// A JSON document from the controller's GET endpoints.
pub fn get_json(controller: &Controller, path: &str) -> serde_json::Value {
    let body = fetch(
        Command::new("python3"),
        &format!("{}{path}", controller.endpoint),
        Duration::from_secs(5),
    )
    .expect("the controller answers");
    serde_json::from_str(&body).expect("JSON")
}

/// Runs a boto3 script with `SLEEP` (a guest that sleeps forever) and `HTTP` (a wasi:http
/// component) defined; returns its output.
pub fn boto3(controller: &Controller, script: &str) -> String {
    let sleep = super::guest(super::Wasi::P1, "sleep").display().to_string();
    let http = super::guest(super::Wasi::P2, "http_hello")
        .display()
        .to_string();
    super::aws::boto3(
        &controller.endpoint,
        &format!("SLEEP = {sleep:?}\nHTTP = {http:?}\nimport json, time\n{script}"),
    )
}

/// The python helper every scenario uses: the host id of each task.
pub const HOST_OF: &str = r#"
def host_of(t):
    for a in t.get('attachments', []):
        for d in a['details']:
            if d['name'] == 'wasmgateHostId':
                return d['value']
    return None
def wait_until(what, f, timeout=60):
    deadline = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() > deadline:
            raise Exception('timed out waiting for ' + what)
        time.sleep(0.3)
ecs.register_task_definition(family='sleepy', memory='64', containerDefinitions=[{'name': 's', 'image': SLEEP, 'stopTimeout': 1}])
"#;
