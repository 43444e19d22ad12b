//! The shared test harness: builds the guests once per test binary (cargo skips the work when
//! nothing changed), runs the real `wasmgate` binary, and hosts tasks in-process on a fresh data
//! directory.
#![allow(dead_code)]

pub mod aws;
pub mod busybox;
pub mod cli;
pub mod etcd;
pub mod fleet;
pub mod hosts;
pub mod http;
pub mod registry;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use wasmgate::agent::{RunningTask, TaskOutcome, TaskRequest, TaskRunner, new_task_id};
use wasmgate::capacity::Tee;
use wasmgate::capacity::wasm::WasmCapacity;
use wasmgate::config::Config;
use wasmgate::image::Images;
use wasmgate::taskdef::TaskDefinition;

/// Which WASI a guest was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// A core module (wasm32-wasip1).
    P1,
    /// A component (wasm32-wasip2).
    P2,
}

pub const BOTH: [Wasi; 2] = [Wasi::P1, Wasi::P2];

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a guest program, building all guests first if this test binary has not yet.
pub fn guest(wasi: Wasi, name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(build_guests);
    let target = match wasi {
        Wasi::P1 => "wasm32-wasip1",
        Wasi::P2 => "wasm32-wasip2",
    };
    let path = repo_root()
        .join("guests/target")
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "guest {} was not built", path.display());
    path
}

fn build_guests() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            "guests/Cargo.toml",
        ])
        .args(["--target", "wasm32-wasip1", "--target", "wasm32-wasip2"])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the guests failed (is `rustup target add wasm32-wasip1 wasm32-wasip2` done?)"
    );
}

/// A `wasmgate` command with its own data directory.
pub fn wasmgate(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
    command
        .env("WASMGATE_DATA_DIR", data_dir)
        .env_remove("RUST_LOG");
    command
}

/// A task runner in this process, on its own data directory.
pub struct Host {
    pub runner: Arc<TaskRunner>,
    pub data_dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.pool_slots = 64;
        adjust(&mut config);
        let wasm = WasmCapacity::new(&config.wasm_capacity()).expect("Wasm capacity");
        let images = Images::open(&config.images()).expect("image store");
        let runner = Arc::new(TaskRunner::new(
            Arc::new(wasm),
            Arc::new(images),
            config.task_runner(),
        ));
        Self { runner, data_dir }
    }

    /// Starts a task from a task definition document.
    pub fn start(&self, document: Value) -> RunningTask {
        let definition = TaskDefinition::from_value(document).expect("valid task definition");
        self.runner.start(TaskRequest {
            task_id: new_task_id(),
            definition: Arc::new(definition),
            overrides: Vec::new(),
            image_base_dir: repo_root().to_path_buf(),
            tee: Tee::None,
            events: None,
        })
    }

    /// Runs a task to completion.
    pub async fn run(&self, document: Value) -> TaskOutcome {
        self.start(document).wait().await
    }
}

/// A one-container task definition for a guest.
pub fn single(wasi: Wasi, guest_name: &str, command: &[&str]) -> Value {
    serde_json::json!({
        "family": guest_name,
        "memory": "128",
        "containerDefinitions": [{
            "name": guest_name,
            "image": guest(wasi, guest_name).display().to_string(),
            "command": command,
        }]
    })
}

/// Polls `condition` until it holds or `what` has taken too long.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
