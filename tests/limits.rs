//! Limits and lifecycles: memory caps, CPU shares, stop with grace, essential containers,
//! dependencies, the artifact cache, and a process that survives hostile guests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BOTH, Host, Wasi, guest, single};
use serde_json::json;
use wasmgate::agent::StopCode;
use wasmgate::capacity::LogStream;
use wasmgate::capacity::wasm::{CacheOutcome, WasmCapacity};
use wasmgate::config::Config;

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_stopped_at_its_limit_and_reports_its_peak() {
    let host = Host::new();
    for wasi in BOTH {
        let mut task = single(wasi, "membomb", &[]);
        task["containerDefinitions"][0]["memory"] = json!(48);
        let outcome = host.run(task).await;
        let container = &outcome.containers[0];
        let reason = container.reason.clone().unwrap_or_default();
        assert_eq!(container.exit_code, Some(137), "{wasi:?}: {reason}");
        assert!(
            reason.starts_with("OutOfMemoryError: the container's memory limit of 48 MiB"),
            "{reason}"
        );
        let peak = container.stats.memory_peak_bytes;
        assert!(peak > 32 << 20 && peak <= 48 << 20, "{wasi:?}: peak {peak}");
        assert_eq!(outcome.stop_code, StopCode::EssentialContainerExited);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_is_interrupted_after_its_stop_timeout() {
    let host = Host::new();
    for wasi in BOTH {
        let mut task = single(wasi, "spin", &[]);
        task["containerDefinitions"][0]["stopTimeout"] = json!(1);
        let running = host.start(task);
        // Let it spin for a moment: it never calls the host, only the epoch can stop it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            running.try_outcome().is_none(),
            "the spinning guest stopped by itself"
        );
        running.stop("test stop");
        let outcome = running.wait().await;
        let container = &outcome.containers[0];
        assert_eq!(container.exit_code, Some(137), "{wasi:?}");
        assert_eq!(
            container.reason.as_deref(),
            Some(
                "StopTimeout: the guest did not exit within 1s of the stop request and was interrupted"
            )
        );
        assert_eq!(outcome.stop_code, StopCode::UserInitiated);
        assert_eq!(outcome.stopped_reason, "test stop");
        assert!(container.stats.cpu_time > Duration::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_listens_exits_cleanly_when_stopped() {
    let host = Host::new();
    for wasi in BOTH {
        let running = host.start(single(wasi, "graceful", &[]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        running.stop("done");
        let outcome = running.wait().await;
        let container = &outcome.containers[0];
        assert_eq!(
            container.exit_code,
            Some(0),
            "{wasi:?}: {:?}",
            container.reason
        );
        assert!(
            container
                .log
                .text(LogStream::Stdout)
                .contains("stop signal received")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_interrupts_a_sleeping_guest_at_once() {
    let host = Host::new();
    let running = host.start(single(Wasi::P2, "sleep", &[]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.kill("now");
    let outcome = running.wait().await;
    assert_eq!(outcome.containers[0].exit_code, Some(137));
}

/// The CPU time a guest spinning for `seconds` used with the given CPU units, and the time its
/// task took from start to exit.
async fn spin(host: &Host, units: u32, seconds: f64) -> (Duration, Duration) {
    let mut task = single(Wasi::P1, "spin", &[&seconds.to_string()]);
    task["containerDefinitions"][0]["cpu"] = json!(units);
    let started = Instant::now();
    let outcome = host.run(task).await;
    let took = started.elapsed();
    let container = &outcome.containers[0];
    assert_eq!(container.exit_code, Some(0), "{:?}", container.reason);
    (container.stats.cpu_time, took)
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_units_cap_a_spinning_guests_share_of_a_core() {
    let host = Host::new();
    let (cpu, took) = spin(&host, 256, 1.5).await;
    assert!(cpu > Duration::ZERO, "the guest never ran");
    // Only the cap is asserted, which a busy machine cannot break: it can only give the guest
    // less. 256 units allow a quarter of the time the task ran, plus the 50 ms a bucket saves
    // up (0.03 of 1.5 s), plus at most a 1 ms epoch tick charged late: about 0.28. The bound
    // leaves room for that and fails only when the budget is not applied (a spinning guest
    // then uses close to a whole core). How well the share is used is for benches.
    let share = cpu.as_secs_f64() / took.as_secs_f64();
    assert!(
        share <= 0.35,
        "a 256-unit guest used {share:.2} of a core ({cpu:?} in {took:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_artifacts_are_reused_across_processes() {
    let data = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: data.path().to_path_buf(),
        pool_slots: 8,
        ..Config::default()
    };
    let bytes: Arc<[u8]> = std::fs::read(guest(Wasi::P2, "hello")).unwrap().into();

    let first = WasmCapacity::new(&config.wasm_capacity()).unwrap();
    let program = first.prepare(bytes.clone()).await.unwrap();
    assert_eq!(program.cache, CacheOutcome::Compiled);
    // Within the process: the same program, not even a disk read.
    assert!(Arc::ptr_eq(
        &program,
        &first.prepare(bytes.clone()).await.unwrap()
    ));

    // A new engine (as after a restart) loads the artifact instead of compiling.
    let second = WasmCapacity::new(&config.wasm_capacity()).unwrap();
    let program = second.prepare(bytes.clone()).await.unwrap();
    assert_eq!(program.cache, CacheOutcome::LoadedFromDisk);
    assert!(program.digest.starts_with("sha256:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_prepares_of_one_image_compile_once() {
    let host = Host::new();
    let bytes: Arc<[u8]> = std::fs::read(guest(Wasi::P1, "args")).unwrap().into();
    let wasm = host.runner.wasm().clone();
    let (a, b) = tokio::join!(wasm.prepare(bytes.clone()), wasm.prepare(bytes.clone()));
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_essential_exit_stops_the_other_containers() {
    let host = Host::new();
    let outcome = host
        .run(json!({
            "family": "essential",
            "memory": "64",
            "containerDefinitions": [
                {"name": "sidecar", "essential": false, "stopTimeout": 1,
                 "image": guest(Wasi::P1, "sleep").display().to_string()},
                {"name": "main", "image": guest(Wasi::P2, "exit").display().to_string(), "command": ["3"],
                 "dependsOn": [{"containerName": "sidecar", "condition": "START"}]}
            ]
        }))
        .await;
    assert_eq!(outcome.stop_code, StopCode::EssentialContainerExited);
    assert_eq!(outcome.stopped_reason, "Essential container in task exited");
    assert_eq!(outcome.exit_code(), 3);
    let sidecar = outcome.container("sidecar").unwrap();
    assert_eq!(sidecar.exit_code, Some(137));
    assert!(
        sidecar
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("StopTimeout")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_success_dependency_keeps_its_dependent_from_starting() {
    let host = Host::new();
    let outcome = host
        .run(json!({
            "family": "deps",
            "memory": "64",
            "containerDefinitions": [
                {"name": "setup", "essential": false, "image": guest(Wasi::P1, "exit").display().to_string(), "command": ["2"]},
                {"name": "app", "image": guest(Wasi::P1, "hello").display().to_string(),
                 "dependsOn": [{"containerName": "setup", "condition": "SUCCESS"}]}
            ]
        }))
        .await;
    assert_eq!(outcome.stop_code, StopCode::TaskFailedToStart);
    let app = outcome.container("app").unwrap();
    assert_eq!(app.exit_code, None);
    assert_eq!(
        app.reason.as_deref(),
        Some("DependencyNeverMet: container \"setup\" exited with 2 (SUCCESS needs 0)")
    );
    assert_eq!(outcome.exit_code(), 125);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_survives_hostile_guests_and_runs_the_next_task() {
    let host = Host::new();
    let mut bomb = single(Wasi::P2, "membomb", &[]);
    bomb["containerDefinitions"][0]["memory"] = json!(16);
    let mut spin = single(Wasi::P1, "spin", &[]);
    spin["containerDefinitions"][0]["stopTimeout"] = json!(0);

    let bomb = host.start(bomb);
    let spinning = host.start(spin);
    let trap = host.start(single(Wasi::P1, "trap", &[]));
    assert_eq!(bomb.wait().await.exit_code(), 137);
    assert_eq!(trap.wait().await.exit_code(), 134);
    spinning.stop("enough");
    assert_eq!(spinning.wait().await.exit_code(), 137);

    let outcome = host.run(single(Wasi::P2, "hello", &[])).await;
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(
        outcome.containers[0].log.text(LogStream::Stdout),
        "Hello from wasmgate!\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_are_bounded() {
    let host = Host::with_config(|config| config.log_capacity_bytes = 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let big = "0123456789abcdef\n".repeat(16 * 1024); // 272 KiB
    std::fs::write(dir.path().join("big.txt"), &big).unwrap();
    let outcome = host
        .run(json!({
            "family": "chatty",
            "memory": "64",
            "volumes": [{"name": "d", "host": {"sourcePath": dir.path().display().to_string()}}],
            "containerDefinitions": [{"name": "cat", "image": guest(Wasi::P1, "files").display().to_string(),
                "command": ["read", "/d/big.txt"],
                "mountPoints": [{"sourceVolume": "d", "containerPath": "/d"}]}]
        }))
        .await;
    let log = &outcome.containers[0].log;
    let held = log.text(LogStream::Stdout);
    assert!(held.len() <= 64 * 1024, "held {} bytes", held.len());
    assert!(
        big.ends_with(&held),
        "the log should keep the newest output"
    );
    assert_eq!(log.dropped_bytes() as usize + held.len(), big.len());
}
