//! What a guest can see: its argv and environment, its mounts (preopened directories through
//! cap-std, read-only where asked), a stdin that closes when it is asked to stop, and a stdout
//! and stderr that go to its log. Nothing else of the host's disk. No network either, unless
//! its definition names where it may connect (the `wasmgate.network.outbound-hosts` label):
//! then `wasi:sockets` reach only those destinations (TCP connect, UDP), never listen.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::capacity::{CapacityError, ContainerLog, ContainerSpec, LogStream};

/// Builds the WASI context of one container. Its stdin has no data and reaches end of file
/// once `stop` turns true: the guest's signal to stop.
pub fn wasi_builder(
    spec: &ContainerSpec,
    stop: watch::Receiver<bool>,
) -> Result<WasiCtxBuilder, CapacityError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&spec.argv)
        .envs(&spec.env)
        .stdin(StopSignalStdin { stop })
        .stdout(LogOutput {
            log: spec.log.clone(),
            stream: LogStream::Stdout,
        })
        .stderr(LogOutput {
            log: spec.log.clone(),
            stream: LogStream::Stderr,
        });
    allow_sockets(&mut builder, spec.socket_hosts.as_deref())?;
    for mount in &spec.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.container_path, perms)
            .map_err(|e| {
                CapacityError::Start(format!(
                    "cannot mount {} at {}: {e}",
                    mount.host_path.display(),
                    mount.container_path
                ))
            })?;
    }
    if let Some(dir) = &spec.working_dir {
        builder.initial_cwd(dir);
        if !spec.env.iter().any(|(name, _)| name == "PWD") {
            builder.env("PWD", dir);
        }
        // WASI preview 1 has no working directory; wasi-libc resolves relative paths against a
        // preopen named ".", so the working directory is also mounted there when it lies inside
        // a mount.
        if let Some((host_dir, read_only)) = host_dir_of(spec, dir) {
            let perms = if read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            // A missing directory is not an error: the guest simply has no relative paths.
            let _ = builder.preopened_dir(&host_dir, ".", perms);
        }
    }
    Ok(builder)
}

/// `wasi:sockets` off (`None`), or on for the destinations `allowed` names.
fn allow_sockets(
    builder: &mut WasiCtxBuilder,
    allowed: Option<&[String]>,
) -> Result<(), CapacityError> {
    let Some(entries) = allowed else {
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        return Ok(());
    };
    let targets: Arc<[SocketTarget]> = entries
        .iter()
        .map(|entry| SocketTarget::parse(entry))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| {
            CapacityError::Start(format!("{}: {why}", crate::taskdef::OUTBOUND_HOSTS_LABEL))
        })?
        .into();
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true)
        .socket_addr_check(move |address, usage| {
            let targets = targets.clone();
            Box::pin(async move { permits(&targets, address, usage).await })
        });
    Ok(())
}

/// Whether a guest may use `address` so: connect, send to or hear from a destination of
/// `targets`;
/// bind only to an ephemeral port (what a connect or a UDP send needs); never listen.
async fn permits(targets: &[SocketTarget], address: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => address.port() == 0,
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
            for target in targets {
                if target.matches(address).await {
                    return true;
                }
            }
            tracing::info!(%address, "socket denied (not in {})", crate::taskdef::OUTBOUND_HOSTS_LABEL);
            false
        }
    }
}

/// One destination a guest may reach: anything, an address or subnet, or a host name (its
/// addresses when the guest connects); on one port or any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SocketTarget {
    Any,
    Net {
        address: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
    Name {
        host: String,
        port: Option<u16>,
    },
}

impl SocketTarget {
    /// `*`, `host`, `host:port`, `A.B.C.D[/N][:port]`, `[v6][:port]`.
    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(Self::Any);
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("outbound host \"{entry}\": no closing ]"))?;
            (host, after.strip_prefix(':'))
        } else if entry.matches(':').count() == 1 {
            let (host, port) = entry.split_once(':').unwrap_or((entry, ""));
            (host, Some(port))
        } else {
            (entry, None)
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("outbound host \"{entry}\": {p} is not a port"))
            })
            .transpose()?;
        let (address, prefix) = match host.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (host, None),
        };
        if host.is_empty() {
            return Err(format!("outbound host \"{entry}\": no host"));
        }
        match address.parse::<IpAddr>() {
            Ok(address) => {
                let most = if address.is_ipv4() { 32 } else { 128 };
                let prefix = match prefix {
                    None => most,
                    Some(text) => {
                        text.parse::<u8>()
                            .ok()
                            .filter(|p| *p <= most)
                            .ok_or_else(|| {
                                format!("outbound host \"{entry}\": /{text} is not a prefix length")
                            })?
                    }
                };
                Ok(Self::Net {
                    address,
                    prefix,
                    port,
                })
            }
            Err(_) if prefix.is_none() => Ok(Self::Name {
                host: host.to_string(),
                port,
            }),
            Err(_) => Err(format!("outbound host \"{entry}\": not an address")),
        }
    }

    async fn matches(&self, to: SocketAddr) -> bool {
        let port_ok = |port: &Option<u16>| port.is_none_or(|p| p == to.port());
        match self {
            Self::Any => true,
            Self::Net {
                address,
                prefix,
                port,
            } => port_ok(port) && in_subnet(to.ip(), *address, *prefix),
            Self::Name { host, port } => {
                port_ok(port)
                    && tokio::net::lookup_host((host.as_str(), 0))
                        .await
                        .is_ok_and(|mut found| found.any(|a| a.ip() == to.ip()))
            }
        }
    }
}

fn in_subnet(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let bits = |ip: IpAddr| -> (u128, u32) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let ((a, width), (b, other)) = (bits(ip), bits(network));
    if width != other {
        return false;
    }
    let shift = width - u32::from(prefix);
    shift >= width || a >> shift == b >> shift
}

/// The host directory behind a guest path, if a mount covers it (the deepest mount wins).
fn host_dir_of(spec: &ContainerSpec, guest_path: &str) -> Option<(PathBuf, bool)> {
    let guest = Path::new(guest_path);
    spec.mounts
        .iter()
        .filter_map(|m| {
            let rest = guest.strip_prefix(&m.container_path).ok()?;
            // The relative part must not climb out of the mount.
            if rest
                .components()
                .any(|c| !matches!(c, PathComponent::Normal(_)))
            {
                return None;
            }
            Some((m.container_path.len(), m.host_path.join(rest), m.read_only))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, path, read_only)| (path, read_only))
}

/// stdout or stderr of a guest, written straight into its log.
#[derive(Clone)]
struct LogOutput {
    log: Arc<ContainerLog>,
    stream: LogStream,
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// The most a guest may write in one call; larger writes are split by the guest's libc.
const WRITE_BUDGET: usize = 64 * 1024;

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A guest's stdin: never any data, and end of file once the container is asked to stop.
#[derive(Clone)]
struct StopSignalStdin {
    stop: watch::Receiver<bool>,
}

impl StopSignalStdin {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

impl IsTerminal for StopSignalStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for StopSignalStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        let mut stop = self.stop.clone();
        Box::new(StopSignalReader {
            stopped: Box::pin(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }),
        })
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for StopSignalStdin {
    fn read(&mut self, _size: usize) -> Result<Bytes, StreamError> {
        if self.stopped() {
            Err(StreamError::Closed)
        } else {
            Ok(Bytes::new())
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StopSignalStdin {
    async fn ready(&mut self) {
        // Ready (with end of file) once stopped; until then there is never anything to read.
        // A closed channel means the container is going away: report ready, too.
        let _ = self.stop.wait_for(|stopped| *stopped).await;
    }
}

/// The `AsyncRead` side of [`StopSignalStdin`]: pending until the stop, then end of file.
struct StopSignalReader {
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>,
}

impl tokio::io::AsyncRead for StopSignalReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.stopped.as_mut().poll(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_reach_only_the_allowlist_and_never_listen() {
        let targets: Vec<SocketTarget> = ["10.1.0.0/16:5432", "127.0.0.1", "[::1]:80"]
            .iter()
            .map(|e| SocketTarget::parse(e).unwrap())
            .collect();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (to, usage, allowed) in [
            ("10.1.2.3:5432", SocketAddrUse::TcpConnect, true),
            ("10.1.2.3:5433", SocketAddrUse::TcpConnect, false),
            ("10.2.0.1:5432", SocketAddrUse::TcpConnect, false),
            ("127.0.0.1:9", SocketAddrUse::UdpSend, true),
            ("[::1]:80", SocketAddrUse::TcpConnect, true),
            ("0.0.0.0:0", SocketAddrUse::TcpBind, true),
            ("0.0.0.0:8080", SocketAddrUse::TcpBind, false),
            ("0.0.0.0:0", SocketAddrUse::TcpListen, false),
        ] {
            assert_eq!(
                permits(&targets, addr(to), usage).await,
                allowed,
                "{to} {usage:?}"
            );
        }
        assert_eq!(
            SocketTarget::parse("db.internal:http").unwrap_err(),
            "outbound host \"db.internal:http\": http is not a port"
        );
        assert!(SocketTarget::parse("10.0.0.0/33").is_err());
        assert_eq!(SocketTarget::parse("*"), Ok(SocketTarget::Any));
    }
}
