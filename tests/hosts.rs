//! Several hosts on one machine, each in a network namespace of its own on a bridge (see
//! `tests/common/hosts.rs`; needs root and iproute2). For now this checks the harness itself:
//! HTTP between the root namespace and the hosts and between hosts, a host cut off and
//! restored. The multi-host scenarios (a controller in the root namespace, agents on the hosts)
//! will be added to this file.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::TestNet;

/// A child process killed (-9) and reaped when dropped, even if the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fetches `url` with Python's urllib, giving up after `timeout_s`; prints the body.
const FETCH: &str = "import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode(), end='')";

/// The body at `url` fetched by `command` (python3, here or in a host), or why not.
fn fetch(mut command: Command, url: &str, timeout: Duration) -> Result<String, String> {
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
fn eventually(what: &str, mut condition: impl FnMut() -> Result<(), String>) {
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
fn http_server(mut command: Command, ip: &str, port: u16, dir: &Path) -> Killed {
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
