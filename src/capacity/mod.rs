//! Capacity: the places a container can run. `wasm` runs a Wasm image in a wasmtime sandbox
//! inside this process; `container` (a later issue) will delegate an OCI image to runc.
//!
//! Both kinds implement [`Capacity`] and hand back the same plain [`ContainerHandle`], so the
//! agent treats them alike: prepare an image once, start containers from it, stop them with a
//! grace period, wait for their exit, read their stats.
//!
//! Architecture invariant: capacity never touches the store and knows nothing of ECS JSON. It
//! takes a [`ContainerSpec`] (argv, env, mounts, limits) and reports exits and numbers.

pub mod container;
mod cpu;
mod handle;
mod log;
pub mod wasm;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use cpu::CpuBudget;
pub use handle::{ContainerExit, ContainerHandle, ContainerStats, StatsCell, StopRequest};
pub use log::{ContainerLog, LogChunk, LogStream, Tee};

/// Which kind of capacity runs a container; chosen from the image's bytes or media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityKind {
    Wasm,
    Container,
}

impl CapacityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Container => "container",
        }
    }
}

/// Everything a capacity needs to start one container. Built by the agent from a task
/// definition; nothing here is ECS-shaped.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The task this container belongs to (for logs and spans).
    pub task_id: String,
    /// The container's name within its task.
    pub name: String,
    /// The program's argv, `argv[0]` included.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The initial working directory inside the sandbox.
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    /// Hard cap on the bytes of memory (linear memories and tables) the container may hold.
    pub memory_limit_bytes: Option<u64>,
    /// CPU budgets the container draws from: its own, and the task's shared one.
    pub cpu_budgets: Vec<Arc<CpuBudget>>,
    /// Where stdout and stderr go.
    pub log: Arc<ContainerLog>,
    /// Hosts (`host` or `host:port`, `*` for any) an HTTP handler may send requests to; none
    /// by default.
    pub http_outbound_hosts: Vec<String>,
    /// What only a container image's runtime uses (user, network, cgroup limits).
    pub runtime: container::RuntimeOptions,
}

/// A host directory made visible inside the container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Why a capacity could not prepare an image or start a container. The message says what was
/// wrong in terms a user can act on; the agent prefixes the ECS error class.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// The image's bytes are not something this capacity can run.
    #[error("{0}")]
    UnsupportedImage(String),
    /// The image is the right kind but does not compile or link.
    #[error("{0}")]
    InvalidImage(String),
    /// Setting up the sandbox failed (a mount, a thread, the pool).
    #[error("{0}")]
    Start(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A kind of place to run containers.
pub trait Capacity: Send + Sync + 'static {
    /// An image made ready to start: compiled, linked, unpacked. Shared by every container
    /// started from it.
    type Program: Send + Sync + 'static;

    /// Makes an image ready to start. Expensive work happens here, once per image.
    fn prepare(
        &self,
        image: Arc<[u8]>,
    ) -> impl Future<Output = Result<Arc<Self::Program>, CapacityError>> + Send;

    /// Starts one container. Cheap: the container runs in the background and reports through
    /// the returned handle.
    fn start(
        &self,
        program: &Arc<Self::Program>,
        spec: ContainerSpec,
    ) -> Result<ContainerHandle, CapacityError>;
}

/// A boxed future, as object-safe traits return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A health check's command in the forms capacities run it: the arguments of a fresh instance
/// of the program (a Wasm image has no shell), and an argv to run inside the running
/// container (`CMD` arguments, or `/bin/sh -c` for `CMD-SHELL`).
#[derive(Debug, Clone, Copy)]
pub struct CheckCommand<'a> {
    pub args: &'a [String],
    pub exec: &'a [String],
    pub timeout: std::time::Duration,
}

/// An image made ready on the capacity that runs it. The one seam through which the agent
/// starts containers and the health checks probe them: neither branches on the kind.
pub trait PreparedImage: Send + Sync + 'static {
    /// The digest of the image it was prepared from.
    fn digest(&self) -> &str;
    fn kind(&self) -> CapacityKind;
    /// Starts one container of it.
    fn start(&self, spec: ContainerSpec) -> Result<ContainerHandle, CapacityError>;
    /// Runs a health check against the container `spec` describes; `Ok` when it exits 0,
    /// else why not.
    fn check<'a>(
        &'a self,
        spec: &'a ContainerSpec,
        command: CheckCommand<'a>,
    ) -> BoxFuture<'a, Result<(), String>>;
}
