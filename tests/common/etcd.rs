//! A real etcd (Debian's `etcd-server`, /usr/bin/etcd) on loopback: one member, or a cluster of
//! several for the failover tests. Each member gets free client and peer ports and a data
//! directory of its own (in /dev/shm where there is one: etcd fsyncs every write); every
//! member is killed when this is dropped, and its log is printed if the test failed.
//!
//! Each member runs under a small shell that kills it (-9) as soon as its standard input
//! closes: when this is dropped, or when the test process ends without dropping it (an etcd
//! shared by a test binary lives in a static, which is never dropped).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client: u16,
    /// `None` once killed.
    child: Option<Child>,
    log: PathBuf,
    /// What it was started with: a restart starts it so again, on the same data directory
    /// (where etcd ignores the initial-cluster flags and rejoins).
    args: Vec<std::ffi::OsString>,
}

impl Member {
    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd's log file");
        let child = Command::new("sh")
            .args([
                "-c",
                r#"etcd "$@" & pid=$!; read _ignored; kill -9 $pid; wait $pid"#,
                "etcd",
            ])
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().expect("etcd's log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd's shell: {e}"));
        self.child = Some(child);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Etcd {
    /// One member.
    pub fn start() -> Self {
        Self::cluster(1)
    }

    /// A cluster of `size` members, each answering clients on its own port.
    pub fn cluster(size: usize) -> Self {
        assert!(
            Command::new("etcd")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
            "no etcd binary (Debian's etcd-server; scripts/setup.sh installs it)"
        );
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("wasmgate-etcd")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("a directory for etcd");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "wasmgate-test-{}-{}",
            std::process::id(),
            dir.path().display()
        );
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let log = dir.path().join(format!("{name}.log"));
                let args: Vec<std::ffi::OsString> = [
                    "--name",
                    &name,
                    "--data-dir",
                    &dir.path().join(&name).display().to_string(),
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial_cluster,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                    "--logger",
                    "zap",
                    "--log-outputs",
                    "stderr",
                ]
                .iter()
                .map(Into::into)
                .collect();
                let mut member = Member {
                    name,
                    client: *client,
                    child: None,
                    log,
                    args,
                };
                member.spawn();
                member
            })
            .collect();
        let etcd = Self { members, _dir: dir };
        for member in &etcd.members {
            etcd.wait_healthy(member);
        }
        etcd
    }

    /// Waits until `member` says it is healthy (it has a leader and answers reads).
    fn wait_healthy(&self, member: &Member) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if health(member.client) {
                return;
            }
            if Instant::now() > until {
                self.print_logs();
                panic!("etcd {} is not healthy after 60 s", member.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every member's client endpoint, `127.0.0.1:PORT,...`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|member| format!("127.0.0.1:{}", member.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn endpoint_list(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| format!("127.0.0.1:{}", member.client))
            .collect()
    }

    /// The `--store` URL of these endpoints with keys under `/PREFIX/`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints())
    }

    /// Kills member `index` with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill_9(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            // Its shell kills it when its input closes.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts member `index` again after [`Etcd::kill_9`], on its data; it is healthy only
    /// once a quorum of members is up ([`Etcd::wait_all_healthy`]).
    pub fn restart(&mut self, index: usize) {
        assert!(self.members[index].child.is_none(), "member {index} runs");
        self.members[index].spawn();
    }

    /// Waits until every running member says it is healthy.
    pub fn wait_all_healthy(&self) {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            self.wait_healthy(member);
        }
    }

    /// Prints the end of every member's log (for a test that failed).
    pub fn print_logs(&self) {
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- etcd {} (last {} lines) ---", member.name, tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Whether etcd's `/health` on `port` says so.
fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for index in 0..self.members.len() {
            self.kill_9(index);
        }
    }
}

/// A TCP proxy in front of one endpoint, that a test can cut (every connection through it
/// closed, new ones refused) and restore: a network failure between a client and etcd, with
/// etcd itself still up for others.
pub struct Proxy {
    pub endpoint: String,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Forwards a new loopback port to `upstream` (`HOST:PORT`).
    pub fn to(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
        let endpoint = listener.local_addr().expect("its address").to_string();
        let state = std::sync::Arc::new(ProxyState::default());
        let upstream = upstream.to_string();
        let shared = state.clone();
        // Lives as long as the test process: it only ever waits in accept.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if shared.cut.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = shared.open.lock().unwrap();
                for stream in [&client, &server] {
                    if let Ok(copy) = stream.try_clone() {
                        open.push(copy);
                    }
                }
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { endpoint, state }
    }

    /// Closes every connection through the proxy and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state
            .cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
