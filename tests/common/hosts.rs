//! Several "hosts" on one machine, for multi-host tests: a Linux bridge in the root network
//! namespace (where a controller listens on [`TestNet::controller_ip`]) and one network namespace
//! per host, each joined to the bridge by a veth pair. Needs root and `ip` (iproute2).
//!
//! Every [`TestNet`] has its own names and its own /24 in 10.200.0.0–10.254.255.255, so tests in
//! one binary and test binaries run at once do not meet. What a net made is recorded under
//! `/run/wasmgate-testnet/` while it lives (with a lock held): dropping it removes everything,
//! and a net left behind by a killed test binary is removed by the next [`TestNet::new`].

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where live nets record themselves; `/run` is a tmpfs, cleared with the namespaces on reboot.
const STATE_DIR: &str = "/run/wasmgate-testnet";
/// The subnets a net may take: 10.200.0.0/24 up to 10.254.255.0/24.
const FIRST_A: u32 = 200;
const SUBNETS: u32 = (254 - FIRST_A + 1) * 256;
/// Hosts are 10.A.B.10 and up.
const MAX_HOSTS: usize = 245;
/// Where `ip netns exec` finds files to mount over /etc's in a namespace.
const ETC_NETNS: &str = "/etc/netns";
/// The hosts' resolver: a DNS server on their loopback, where nothing listens.
const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

/// A bridge and `hosts` network namespaces; dropping it removes them (and kills what runs in
/// them).
pub struct TestNet {
    tag: String,
    /// The `A.B` of 10.A.B.0/24.
    subnet: (u8, u8),
    bridge: String,
    /// Per host: (namespace, root-side veth). The namespace side is `eth0`.
    hosts: Vec<(String, String)>,
    /// The firewall rules added so that the net works, as (tool, rule) to delete with `-D`.
    rules: Vec<(String, Vec<String>)>,
    /// The state file, locked while the net lives.
    state: Option<File>,
}

impl TestNet {
    /// Makes the bridge and `hosts` namespaces, and checks over TCP that the root namespace and
    /// every host reach one another.
    pub fn new(hosts: usize) -> TestNet {
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "TestNet needs root (it makes network namespaces, veths and a bridge)"
        );
        assert!(
            Command::new("ip")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
            "TestNet needs `ip` (iproute2: apt-get install iproute2, or run scripts/setup.sh)"
        );
        assert!(
            (1..=MAX_HOSTS).contains(&hosts),
            "a TestNet has 1 to {MAX_HOSTS} hosts, not {hosts}"
        );
        fs::create_dir_all(STATE_DIR).expect("the TestNet state directory");
        let global = lock_global();
        sweep_stale();

        let (tag, state) = claim_tag();
        let subnet = free_subnet(&tag);
        let bridge = format!("wg{tag}-br");
        let mut net = TestNet {
            hosts: (0..hosts)
                .map(|i| (format!("wasmgate-{tag}-{i}"), format!("wg{tag}-{i}")))
                .collect(),
            tag,
            subnet,
            bridge,
            rules: Vec::new(),
            state: Some(state),
        };
        // Recorded before anything is made, so a crash midway leaves enough to clean up.
        net.write_state();

        let (bridge, controller) = (&net.bridge, net.controller_ip());
        ip(&format!("link add {bridge} type bridge forward_delay 0"));
        ip(&format!("addr add {controller}/24 dev {bridge}"));
        ip(&format!("link set {bridge} up"));
        // No DNS server is reachable from the hosts, and lookups that wait for one (such as
        // `python3 -m http.server`'s getfqdn) would take 10 s: refused at once instead.
        // `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
        for (ns, _) in &net.hosts {
            let dir = Path::new(ETC_NETNS).join(ns);
            fs::create_dir_all(&dir).expect("/etc/netns/NAME");
            fs::write(dir.join("resolv.conf"), RESOLV_CONF).expect("the hosts' resolv.conf");
        }
        // The subnet is ours once the bridge has its address; others may choose now.
        drop(global);
        for (i, (ns, veth)) in net.hosts.iter().enumerate() {
            ip(&format!("netns add {ns}"));
            ip(&format!(
                "link add {veth} type veth peer name eth0 netns {ns}"
            ));
            ip(&format!("link set {veth} master {bridge} up"));
            let address = net.host_ip(i);
            ip(&format!("-n {ns} addr add {address}/24 dev eth0"));
            ip(&format!("-n {ns} link set lo up"));
            ip(&format!("-n {ns} link set eth0 up"));
            ip(&format!("-n {ns} route add default via {controller}"));
        }
        net.make_reachable();
        net
    }

    /// The bridge's address in the root namespace, where a controller listens.
    pub fn controller_ip(&self) -> String {
        let (a, b) = self.subnet;
        format!("10.{a}.{b}.1")
    }

    /// Host `i`'s address (10.A.B.(10+i)), on `eth0` in its namespace.
    pub fn host_ip(&self, i: usize) -> String {
        let (a, b) = self.subnet;
        assert!(i < self.hosts.len(), "there is no host {i}");
        format!("10.{a}.{b}.{}", 10 + i)
    }

    /// Host `i`'s network namespace, for `ip netns exec` and `ip -n`.
    pub fn netns(&self, i: usize) -> &str {
        &self.hosts[i].0
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// A command that runs `program` in host `i`'s namespace; add its arguments to it.
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.netns(i)]).arg(program);
        command
    }

    /// As [`TestNet::command`], but entering only the network namespace (`setns` before exec):
    /// the mounts stay the machine's (`ip netns exec` mounts its own /sys, which hides the
    /// cgroup filesystem runc needs).
    pub fn command_keeping_mounts(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        use std::os::unix::process::CommandExt as _;
        let namespace =
            File::open(Path::new("/run/netns").join(self.netns(i))).expect("the host's namespace");
        let mut command = Command::new(program);
        // SAFETY: between fork and exec the closure only calls setns (async-signal-safe) on a
        // descriptor the Command keeps open.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// Runs `f` on a thread of its own inside host `i`'s namespace: sockets it makes (and may
    /// return) belong to host `i`.
    pub fn run_in<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(self.netns(i));
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let ns = File::open(&path).expect("the namespace's file");
                    // SAFETY: a valid network namespace descriptor; only this thread moves.
                    let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Cuts host `i` off: both ends of its veth go down, so it and the controller (and the
    /// other hosts) no longer reach each other.
    pub fn cut(&self, i: usize) {
        let (ns, veth) = &self.hosts[i];
        ip(&format!("link set {veth} down"));
        ip(&format!("-n {ns} link set eth0 down"));
    }

    /// Undoes [`TestNet::cut`]: the link comes back up with its default route.
    pub fn restore(&self, i: usize) {
        let (ns, veth) = &self.hosts[i];
        ip(&format!("-n {ns} link set eth0 up"));
        ip(&format!("link set {veth} master {} up", self.bridge));
        // Setting a link down drops its routes; the /24 returns with the link, the default not.
        ip(&format!(
            "-n {ns} route replace default via {}",
            self.controller_ip()
        ));
    }

    /// Checks over TCP that the root namespace reaches every host, every host the controller,
    /// and every host every other. If a firewall is in the way (an INPUT, OUTPUT or FORWARD
    /// policy of DROP; with br_netfilter, bridged traffic passes FORWARD too), accepts the
    /// bridge's traffic in it, and checks again.
    fn make_reachable(&mut self) {
        let Err(first) = self.probe() else { return };
        for tool in ["iptables", "iptables-legacy"] {
            if !has(tool) {
                continue;
            }
            let bridge = self.bridge.clone();
            for rule in [
                vec!["INPUT", "-i", &bridge, "-j", "ACCEPT"],
                vec!["OUTPUT", "-o", &bridge, "-j", "ACCEPT"],
                vec!["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"],
            ] {
                let rule: Vec<String> = rule.into_iter().map(String::from).collect();
                let inserted = Command::new(tool)
                    .args(["-w", "-I"])
                    .args(&rule)
                    .output()
                    .is_ok_and(|output| output.status.success());
                if inserted {
                    self.rules.push((tool.to_string(), rule));
                    self.write_state();
                }
            }
            if self.probe().is_ok() {
                eprintln!(
                    "TestNet: {first}; accepted {}'s traffic in {tool} to get through",
                    self.bridge
                );
                return;
            }
        }
        let last = self.probe().err().unwrap_or_default();
        panic!(
            "the test net does not carry TCP: {first} (after accepting its traffic in \
             iptables: {last}). Firewall:\n{}\n{}",
            run("iptables", &["-S"]),
            run("nft", &["list", "ruleset"]),
        );
    }

    /// One TCP connection along every path; the first that fails, if any.
    fn probe(&self) -> Result<(), String> {
        let n = self.hosts.len();
        let ip = |s: String| s.parse::<Ipv4Addr>().expect("an IPv4 address");
        let listener = TcpListener::bind((ip(self.controller_ip()), 0)).expect("bind");
        let controller = listener.local_addr().expect("address");
        let listeners: Vec<TcpListener> = (0..n)
            .map(|i| {
                self.run_in(i, || {
                    TcpListener::bind((ip(self.host_ip(i)), 0)).expect("bind")
                })
            })
            .collect();
        let addresses: Vec<SocketAddr> = listeners
            .iter()
            .map(|listener| listener.local_addr().expect("address"))
            .collect();
        let connect =
            |to: SocketAddr| TcpStream::connect_timeout(&to, Duration::from_secs(2)).map(drop);
        std::thread::scope(|scope| {
            let mut checks = Vec::new();
            for (i, &address) in addresses.iter().enumerate() {
                let what = format!("the root namespace cannot connect to host {i} ({address})");
                checks.push((what, scope.spawn(move || connect(address))));
                let what = format!("host {i} cannot connect to the controller ({controller})");
                checks.push((
                    what,
                    scope.spawn(move || self.run_in(i, || connect(controller))),
                ));
                for (j, &other) in addresses.iter().enumerate().filter(|&(j, _)| j != i) {
                    let what = format!("host {i} cannot connect to host {j} ({other})");
                    checks.push((what, scope.spawn(move || self.run_in(i, || connect(other)))));
                }
            }
            for (what, check) in checks {
                if let Err(error) = check.join().expect("a probe") {
                    return Err(format!("{what}: {error}"));
                }
            }
            Ok(())
        })
    }

    fn state_path(&self) -> PathBuf {
        Path::new(STATE_DIR).join(&self.tag)
    }

    /// Records what this net is made of, for [`sweep_stale`] to find if the process dies.
    fn write_state(&self) {
        let mut text = format!("bridge {}\n", self.bridge);
        for (ns, veth) in &self.hosts {
            text += &format!("host {ns} {veth}\n");
        }
        for (tool, rule) in &self.rules {
            text += &format!("rule {tool} {}\n", rule.join(" "));
        }
        let file = self.state.as_ref().expect("the state file");
        file.set_len(0).expect("truncate the state file");
        file.write_all_at(text.as_bytes(), 0)
            .expect("write the state file");
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let state = fs::read_to_string(self.state_path()).unwrap_or_default();
        tear_down(&state);
        // Removed before it is unlocked; a sweep that opened it already and locks it after
        // (holding the global lock, so no net can take these names meanwhile) finds nothing.
        let _ = fs::remove_file(self.state_path());
        self.state = None;
        // /etc/netns too if this was the last net, unless a net is being made (holding the lock
        // while it adds its directory).
        if let Ok(file) = File::open(Path::new(STATE_DIR).join(".lock"))
            && file.try_lock().is_ok()
        {
            let _ = fs::remove_dir(ETC_NETNS);
        }
    }
}

/// Removes what a state file lists: firewall rules, processes in the namespaces, the veths,
/// the bridge and the namespaces.
fn tear_down(state: &str) {
    for line in state.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["rule", tool, rule @ ..] = words.as_slice() {
            while quiet(tool, &[&["-w", "-C"], rule].concat())
                && quiet(tool, &[&["-w", "-D"], rule].concat())
            {}
        }
    }
    let hosts: Vec<(&str, &str)> = state
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["host", ns, veth] => Some((ns, veth)),
                _ => None,
            },
        )
        .collect();
    for &(ns, _) in &hosts {
        kill_all_in(ns);
    }
    for &(_, veth) in &hosts {
        quiet("ip", &["link", "del", veth]);
    }
    for line in state.lines() {
        if let Some(bridge) = line.strip_prefix("bridge ") {
            quiet("ip", &["link", "del", bridge.trim()]);
        }
    }
    for &(ns, _) in &hosts {
        quiet("ip", &["netns", "del", ns]);
        let _ = fs::remove_dir_all(Path::new(ETC_NETNS).join(ns));
    }
}

/// Kills (-9) every process in namespace `ns`, and waits for them to go.
fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("ip").args(["netns", "pids", ns]).output();
        let pids: Vec<i32> = match &output {
            Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect(),
            _ => return,
        };
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("TestNet: processes {pids:?} in {ns} survive SIGKILL");
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lock all nets take while they choose names and subnets or record themselves.
fn lock_global() -> File {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(STATE_DIR).join(".lock"))
        .expect("the TestNet lock file");
    file.lock().expect("the TestNet lock");
    file
}

/// Removes the nets whose state files nobody holds locked: their processes died (killed, or
/// aborted) before dropping them. Called under the global lock.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(STATE_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|name| name == ".lock") {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let state = fs::read_to_string(&path).unwrap_or_default();
        eprintln!(
            "TestNet: removing {} left behind by a dead test",
            path.display()
        );
        tear_down(&state);
        let _ = fs::remove_file(&path);
    }
}

/// A tag no live net has (from the process id and a counter), with its state file, locked.
/// Called under the global lock.
fn claim_tag() -> (String, File) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let links = run("ip", &["-o", "link", "show"]);
    let namespaces = run("ip", &["netns", "list"]);
    loop {
        // Base 36 keeps names short: "wg" + ≤5 + "-" + ≤2 + "-" + ≤3 ≤ 15, the interface limit.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % (36 * 36);
        let tag = format!(
            "{}-{}",
            base36(std::process::id() % 36u32.pow(5)),
            base36(n)
        );
        let taken = Path::new(STATE_DIR).join(&tag).exists()
            || links.contains(&format!("wg{tag}-"))
            || namespaces.contains(&format!("wasmgate-{tag}-"));
        if taken {
            continue;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(Path::new(STATE_DIR).join(&tag))
            .expect("the TestNet state file");
        file.lock().expect("lock the state file");
        return (tag, file);
    }
}

/// A 10.A.B.0/24 (A in 200..=254) that overlaps no address or route here, starting from one
/// derived from the tag. Called under the global lock.
fn free_subnet(tag: &str) -> (u8, u8) {
    let mut prefixes = Vec::new();
    for line in run("ip", &["-4", "-o", "addr", "show"]).lines() {
        let mut words = line.split_whitespace().skip_while(|&word| word != "inet");
        if let Some(prefix) = words.nth(1).and_then(parse_prefix) {
            prefixes.push(prefix);
        }
    }
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "unreachable",
        "blackhole",
        "prohibit",
        "throw",
        "nat",
    ];
    for line in run("ip", &["-4", "route", "show", "table", "all"]).lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|word| TYPES.contains(word)) {
            words.next();
        }
        if let Some(prefix) = words.next().and_then(parse_prefix) {
            prefixes.push(prefix);
        }
    }
    let mut hasher = DefaultHasher::new();
    tag.hash(&mut hasher);
    let start = (hasher.finish() % u64::from(SUBNETS)) as u32;
    for k in 0..SUBNETS {
        let index = (start + k) % SUBNETS;
        let (a, b) = (FIRST_A + index / 256, index % 256);
        let ours = u32::from(Ipv4Addr::new(10, a as u8, b as u8, 0));
        let overlaps = prefixes.iter().any(|&(address, length)| {
            let length = length.min(24);
            let mask = if length == 0 {
                0
            } else {
                u32::MAX << (32 - length)
            };
            address & mask == ours & mask
        });
        if !overlaps {
            return (a as u8, b as u8);
        }
    }
    panic!("no free /24 in 10.200.0.0-10.254.255.255");
}

/// `10.1.2.0/24` or `10.1.2.3` as (address, prefix length); `None` for "default" and such.
fn parse_prefix(text: &str) -> Option<(u32, u32)> {
    let (address, length) = text.split_once('/').unwrap_or((text, "32"));
    let address: Ipv4Addr = address.parse().ok()?;
    Some((
        u32::from(address),
        length.parse().ok().filter(|&l| l <= 32)?,
    ))
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("a digit"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// Runs `ip` with these (space-separated) arguments, panicking with its error if it fails.
fn ip(args: &str) {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("ip runs");
    assert!(
        output.status.success(),
        "ip {args} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Whether `program` succeeds; its output is dropped.
fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `program`'s standard output (empty if it cannot run).
fn run(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|Output { stdout, .. }| String::from_utf8_lossy(&stdout).into_owned())
        .unwrap_or_default()
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
