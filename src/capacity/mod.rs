//! Capacity: the places a container can run. `wasm` runs a Wasm image in a wasmtime sandbox
//! inside this process; `container` delegates an OCI image to an OCI runtime (runc).
//!
//! Both kinds implement the object-safe [`Capacity`] (chosen by what the image is) and hand
//! back a [`PreparedImage`] and the same plain [`ContainerHandle`], so the agent treats them
//! alike: prepare an image once, take its config's defaults, start containers from it, check
//! their health, stop them with a grace period, wait for their exit, read their stats; a
//! container that serves HTTP is an [`endpoint::HttpEndpoint`].
//!
//! Architecture invariant: capacity never touches the store and knows nothing of ECS JSON. It
//! takes a [`ContainerSpec`] (argv, env, mounts, limits) and reports exits and numbers.

pub mod container;
mod cpu;
pub mod endpoint;
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
    /// Where a Wasm guest may open `wasi:sockets` (`host`, `host:port`, `A.B.C.D/N[:port]`,
    /// `*`); `None`: it has no sockets at all.
    pub socket_hosts: Option<Vec<String>>,
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
    /// The image's content cannot be unpacked (a layer that is broken or escapes its root).
    #[error("{0}")]
    Unpack(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CapacityError {
    /// ECS's class of a failure to prepare an image: content that cannot be unpacked is a
    /// pull failure, anything else a start failure.
    pub fn ecs_class(&self) -> &'static str {
        match self {
            Self::Unpack(_) => "CannotPullContainerError",
            _ => "CannotStartContainerError",
        }
    }
}

/// An image as a capacity is given it to prepare: what the content store holds of it.
pub enum ImageSource {
    /// A Wasm module or component.
    Wasm(Arc<[u8]>),
    /// A container image: its config blob and its layers, as files of the content store.
    Container {
        config_blob: PathBuf,
        layers: Vec<crate::image::rootfs::Layer>,
    },
}

impl ImageSource {
    /// The kind of capacity that runs it.
    pub fn kind(&self) -> CapacityKind {
        match self {
            Self::Wasm(_) => CapacityKind::Wasm,
            Self::Container { .. } => CapacityKind::Container,
        }
    }
}

/// A kind of place to run containers. Object-safe: a host holds its capacities as
/// `Arc<dyn Capacity>` and gives each image to the one of its kind.
pub trait Capacity: Send + Sync + 'static {
    fn kind(&self) -> CapacityKind;
    /// Makes an image ready to start: compiled and linked, or unpacked. Expensive work happens
    /// here, once per image (`digest`); later calls find it ready.
    fn prepare(
        self: Arc<Self>,
        digest: String,
        image: ImageSource,
    ) -> BoxFuture<'static, Result<Arc<dyn PreparedImage>, CapacityError>>;
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
    /// The defaults its image's config gives a container (entrypoint, command, env, working
    /// directory), if it has a config (a container image; a Wasm image has none).
    fn image_config(&self) -> Option<&container::ImageConfig> {
        None
    }
    /// Whether it only serves requests, one instance each (a `wasi:http` handler), and so
    /// cannot run as a plain task.
    fn per_request(&self) -> bool {
        false
    }
    /// Whether its containers run in their task's network namespace (a container image's
    /// do; a Wasm instance has only the sandbox's sockets, on the host's network).
    fn uses_task_network(&self) -> bool {
        false
    }
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
