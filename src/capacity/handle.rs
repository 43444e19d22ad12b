//! The handle to a running container: stop it, wait for it, read its numbers. Plain channels
//! and atomics, the same for every capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    /// The process's exit code (`proc_exit`, `wasi:cli/exit`), or the code standing for how it
    /// was stopped: 134 for a trap, 137 for out of memory or an interrupt after the grace period.
    pub exit_code: i32,
    /// Why it ended, when it did not end by itself. Starts with an error class where one fits
    /// (`OutOfMemoryError: ...`).
    pub reason: Option<String>,
}

impl ContainerExit {
    pub fn code(exit_code: i32) -> Self {
        Self {
            exit_code,
            reason: None,
        }
    }

    pub fn with_reason(exit_code: i32, reason: impl Into<String>) -> Self {
        Self {
            exit_code,
            reason: Some(reason.into()),
        }
    }
}

/// A request to stop: the container is told (for Wasm: its stdin closes) and interrupted once
/// `grace` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    pub grace: Duration,
}

/// Numbers a running container reports; updated by the capacity, read by anyone.
#[derive(Debug, Default)]
pub struct StatsCell {
    memory_bytes: AtomicU64,
    memory_peak_bytes: AtomicU64,
    cpu_nanos: AtomicU64,
}

impl StatsCell {
    pub fn set_memory(&self, bytes: u64) {
        self.memory_bytes.store(bytes, Ordering::Relaxed);
        self.memory_peak_bytes.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Adds memory a new holder took (an HTTP request's instance growing).
    pub fn add_memory(&self, bytes: u64) {
        let now = self.memory_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.memory_peak_bytes.fetch_max(now, Ordering::Relaxed);
    }

    /// Gives back memory a holder let go of (an HTTP request's instance was dropped).
    pub fn release_memory(&self, bytes: u64) {
        let _ = self
            .memory_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    /// Adds CPU time spent (by an HTTP request).
    pub fn add_cpu(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn set_cpu(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ContainerStats {
        ContainerStats {
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            memory_peak_bytes: self.memory_peak_bytes.load(Ordering::Relaxed),
            cpu_time: Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// A point-in-time reading of a container's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerStats {
    /// Bytes of memory held now (Wasm: linear memories and tables).
    pub memory_bytes: u64,
    /// The most it has held.
    pub memory_peak_bytes: u64,
    /// CPU time spent running it, measured on the threads that ran it.
    pub cpu_time: Duration,
}

/// The handle to one running container. Cloning shares the same container.
#[derive(Debug, Clone)]
pub struct ContainerHandle {
    stop: watch::Sender<Option<StopRequest>>,
    exit: watch::Receiver<Option<ContainerExit>>,
    stats: Arc<StatsCell>,
}

/// The capacity's side of a handle: where it learns of stop requests and reports the exit.
pub struct HandleParts {
    pub stop: watch::Receiver<Option<StopRequest>>,
    pub exit: watch::Sender<Option<ContainerExit>>,
    pub stats: Arc<StatsCell>,
}

impl ContainerHandle {
    /// A handle and the parts the capacity keeps to drive it.
    pub fn new() -> (Self, HandleParts) {
        let (stop_tx, stop_rx) = watch::channel(None);
        let (exit_tx, exit_rx) = watch::channel(None);
        let stats = Arc::new(StatsCell::default());
        let handle = Self {
            stop: stop_tx,
            exit: exit_rx,
            stats: stats.clone(),
        };
        (
            handle,
            HandleParts {
                stop: stop_rx,
                exit: exit_tx,
                stats,
            },
        )
    }

    /// Asks the container to stop, interrupting it after `grace`. A later request with a
    /// shorter grace shortens the wait; it never lengthens it.
    pub fn stop(&self, grace: Duration) {
        self.stop.send_if_modified(|current| match current {
            Some(existing) if existing.grace <= grace => false,
            _ => {
                *current = Some(StopRequest { grace });
                true
            }
        });
    }

    /// Waits until the container has exited.
    pub async fn wait(&self) -> ContainerExit {
        let mut exit = self.exit.clone();
        let reported = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|exit| exit.clone());
        // The capacity dropped its side without reporting: say so rather than hang.
        reported
            .or_else(|| exit.borrow().clone())
            .unwrap_or_else(lost_exit)
    }

    /// The exit, if the container has ended.
    pub fn try_exit(&self) -> Option<ContainerExit> {
        self.exit.borrow().clone()
    }

    pub fn stats(&self) -> ContainerStats {
        self.stats.snapshot()
    }
}

fn lost_exit() -> ContainerExit {
    ContainerExit::with_reason(
        255,
        "InternalError: the capacity ended without reporting an exit",
    )
}
