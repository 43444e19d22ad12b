//! The one configuration struct. Every CLI flag and environment variable maps onto a field here;
//! every field has a default that suits a single host.

use std::path::PathBuf;

use crate::agent::TaskRunnerConfig;
use crate::capacity::wasm::{EngineSettings, PoolingChoice, WasmCapacityConfig};
use crate::image::{ImageSettings, RegistrySettings};

/// Settings of a wasmgate process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where compiled artifacts, task scratch space and (later) state live.
    pub data_dir: PathBuf,
    /// Whether the wasmtime engine pools instances.
    pub pooling: PoolingChoice,
    /// Instance slots in the pool (the most Wasm containers that run at once).
    pub pool_slots: u32,
    /// Bytes of output kept in memory per container (for exit reasons and `run`).
    pub log_capacity_bytes: usize,
    /// Bytes of output kept on disk per task by the server (`wasmgate logs`).
    pub task_log_bytes: u64,
    /// MiB of this host's memory kept back from tasks (for the agent and the system).
    pub memory_reserve_mib: u32,
    /// The registry of short image names.
    pub default_registry: String,
    /// Registry credentials and plain-HTTP registries.
    pub registry: RegistrySettings,
    /// The OCI runtime binary for container images.
    pub runtime: PathBuf,
    /// How container-image tasks get their own network (subnet, bridge, CNI plugins).
    pub network: crate::capacity::container::network::NetworkSettings,
    /// Containers in a user namespace, their root an unprivileged host id (`--userns`).
    pub userns: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            pooling: PoolingChoice::Auto,
            pool_slots: EngineSettings::default().pool_slots,
            log_capacity_bytes: 1 << 20,
            task_log_bytes: 2 << 20,
            memory_reserve_mib: 256,
            default_registry: "docker.io".to_string(),
            registry: RegistrySettings::default(),
            runtime: PathBuf::from("runc"),
            network: Default::default(),
            userns: false,
        }
    }
}

impl Config {
    pub fn wasm_capacity(&self) -> WasmCapacityConfig {
        WasmCapacityConfig {
            engine: EngineSettings {
                pooling: self.pooling,
                pool_slots: self.pool_slots,
                ..EngineSettings::default()
            },
            artifact_dir: Some(self.data_dir.join("compiled")),
        }
    }

    pub fn images(&self) -> ImageSettings {
        ImageSettings {
            store_dir: self.data_dir.join("images"),
            default_registry: self.default_registry.clone(),
            registry: self.registry.clone(),
        }
    }

    pub fn task_runner(&self) -> TaskRunnerConfig {
        TaskRunnerConfig {
            log_capacity_bytes: self.log_capacity_bytes,
            scratch_dir: self.data_dir.join("tasks"),
            task_logs: None,
            serves_http: false,
        }
    }

    /// The server's task runner: as [`Self::task_runner`], keeping every task's output on disk.
    pub fn server_task_runner(&self) -> TaskRunnerConfig {
        TaskRunnerConfig {
            task_logs: Some(self.task_logs()),
            serves_http: true,
            ..self.task_runner()
        }
    }

    /// Where the server keeps task output.
    pub fn task_logs(&self) -> crate::logs::LogStore {
        crate::logs::LogStore::new(self.data_dir.join("logs"), self.task_log_bytes)
    }
}

/// `$XDG_DATA_HOME/wasmgate`, else `~/.local/share/wasmgate`, else `./.wasmgate`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("wasmgate");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/wasmgate");
    }
    PathBuf::from(".wasmgate")
}
