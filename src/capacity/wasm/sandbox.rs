//! What a guest can see: its argv and environment, its mounts (preopened directories through
//! cap-std, read-only where asked), a stdin that closes when it is asked to stop, and a stdout
//! and stderr that go to its log. Nothing else: no network, no other part of the host's disk.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};
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
