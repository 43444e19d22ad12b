//! A real `wasmgate server` on a free loopback port, for tests that drive it from outside.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// A running `wasmgate server`; killed (-9) when dropped.
pub struct Server {
    child: Child,
    data_dir: std::path::PathBuf,
    /// Whether dropping it also removes the containers it ran (not after [`Server::kill_9`]).
    clean_up: bool,
    pub endpoint: String,
    /// The gateway's `host:port`.
    pub gateway: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    pub fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start_with`] with environment variables set for the server.
    pub fn start_with_env(
        data_dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = super::wasmgate(data_dir);
        command.envs(env.iter().copied());
        command.args(["server", "--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--gateway") {
            command.args(["--gateway", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--task-subnet") {
            let (subnet, bridge) = task_network_of(data_dir);
            command.args(["--task-subnet", &subnet, "--task-bridge", &bridge]);
        }
        let mut child = command
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("wasmgate server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the server prints a line");
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .expect("the server says where it listens")
            .to_string();
        line.clear();
        stdout
            .read_line(&mut line)
            .expect("the server prints its gateway");
        let gateway = line
            .trim()
            .strip_prefix("gateway on http://")
            .unwrap_or_default()
            .to_string();
        Self {
            child,
            data_dir: data_dir.to_path_buf(),
            clean_up: true,
            endpoint,
            gateway,
            _stdout: stdout,
        }
    }
}

/// The task subnet and bridge of a server on `data_dir`: its own /26 in 10.184.0.0/13 (away
/// from the default 10.176.0.0/16 and the multi-host tests' 10.200+) and its own bridge,
/// both derived from the directory, so that test servers running at once do not share a
/// bridge and a server restarted on the same directory finds its own.
pub fn task_network_of(data_dir: &std::path::Path) -> (String, String) {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let hash = hasher.finish();
    let index = hash % 8192;
    let subnet = format!(
        "10.{}.{}.{}/26",
        184 + index / 1024,
        (index / 4) % 256,
        (index % 4) * 64
    );
    (subnet, format!("wgt{:08x}", hash as u32))
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the server printed after the ones `start` read.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        let _ = self._stdout.read_line(&mut line);
        line.trim().to_string()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the server to exit, at most `deadline`; returns
    /// its exit status, or `None` if it was still running then (it is killed).
    pub fn interrupt(mut self, deadline: std::time::Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id() as i32;
        // SAFETY: signalling a child process this test started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Waits at most `deadline` for the server to exit by itself (a test crash point);
    /// returns its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, deadline: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Kills the server with SIGKILL and leaves whatever it ran as it is, for the next start
    /// on the same data directory to find.
    pub fn kill_9(mut self) {
        self.clean_up = false;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.clean_up {
            return;
        }
        // Containers outlive a server killed with -9 until the next start on the same data
        // directory cleans them up (tested); a test that never restarts cleans up here.
        let state = self.data_dir.join("containers/runc");
        let runc = |args: &[&str]| {
            std::process::Command::new("runc")
                .arg("--root")
                .arg(&state)
                .args(args)
                .output()
        };
        if let Ok(listed) = runc(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&listed.stdout).lines() {
                let _ = runc(&["kill", id, "KILL"]);
                let _ = runc(&["delete", "--force", id]);
            }
        }
        if let Ok(bundles) = std::fs::read_dir(self.data_dir.join("containers/bundles")) {
            for bundle in bundles.flatten() {
                let _ = std::process::Command::new("umount")
                    .arg(bundle.path().join("rootfs"))
                    .output();
            }
        }
        // Task networks (CNI state, namespaces) are released by the next start on the data
        // directory, as after a kill -9 (tested): a start, then a kill, does it here.
        let networks =
            std::fs::read_dir(self.data_dir.join("containers/networks")).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
            });
        if networks {
            let mut again = super::wasmgate(&self.data_dir);
            let (subnet, bridge) = task_network_of(&self.data_dir);
            again
                .args(["server", "--listen", "127.0.0.1:0", "--gateway", "off"])
                .args(["--task-subnet", &subnet, "--task-bridge", &bridge])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Ok(mut child) = again.spawn() {
                if let Some(stdout) = child.stdout.take() {
                    let _ = BufReader::new(stdout).read_line(&mut String::new());
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let (subnet, bridge) = task_network_of(&self.data_dir);
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .output();
        // The subnet's masquerade rule names no task and stays; a test's subnet is its own.
        let comment = format!("wasmgate tasks {subnet}");
        let _ = std::process::Command::new("iptables")
            .args([
                "-w",
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-s",
                &subnet,
                "!",
                "-d",
                &subnet,
            ])
            .args(["-m", "comment", "--comment", &comment, "-j", "MASQUERADE"])
            .stderr(Stdio::null())
            .output();
    }
}
