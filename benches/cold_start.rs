//! Wasm cold start, the figure a user of wasmgate waits on: from "start this container" to the
//! guest having run and exited, for the hello guest (WASI p1 module and p2 component).
//!
//! - `cold_start/prepared/*`: the program is prepared in memory (what a warm agent does):
//!   a task on the guest threads, a `Store` with limits, instantiate from `InstancePre`, run,
//!   exit.
//! - `cold_start/cached_artifact/*`: the process has never seen the image, but its compiled
//!   artifact is on disk: hash, mmap the artifact, link, then as above.
//! - `cold_start/compile/*`: nothing cached: compile the bytes, then as above.
//!
//! Needs the guests: `cargo guests` first. Run with `cargo bench --bench cold_start`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmgate::capacity::wasm::{WasmCapacity, WasmCapacityConfig};
use wasmgate::capacity::{ContainerLog, ContainerSpec, Tee};

fn guest(target: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests/target")
        .join(target)
        .join("release/hello.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo guests` first",
        path.display()
    );
    path
}

fn spec() -> ContainerSpec {
    ContainerSpec {
        task_id: "bench".into(),
        name: "hello".into(),
        argv: vec!["hello".into()],
        env: Vec::new(),
        working_dir: None,
        mounts: Vec::new(),
        memory_limit_bytes: Some(64 << 20),
        cpu_budgets: Vec::new(),
        log: Arc::new(ContainerLog::new(64 * 1024, Tee::None)),
        http_outbound_hosts: Vec::new(),
        socket_hosts: None,
        runtime: Default::default(),
    }
}

fn cold_start(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let cached = WasmCapacity::new(&WasmCapacityConfig {
        artifact_dir: Some(artifacts.path().to_path_buf()),
        ..WasmCapacityConfig::default()
    })
    .unwrap();
    let uncached = WasmCapacity::new(&WasmCapacityConfig::default()).unwrap();

    let mut group = c.benchmark_group("cold_start");
    for (label, target) in [
        ("p1_module", "wasm32-wasip1"),
        ("p2_component", "wasm32-wasip2"),
    ] {
        let bytes: Arc<[u8]> = std::fs::read(guest(target)).unwrap().into();
        let program = runtime.block_on(cached.prepare(bytes.clone())).unwrap();

        group.bench_function(BenchmarkId::new("prepared", label), |b| {
            b.to_async(&runtime).iter(|| async {
                let exit = cached.start(&program, spec()).unwrap().wait().await;
                assert_eq!(exit.exit_code, 0);
            })
        });

        group.bench_function(BenchmarkId::new("cached_artifact", label), |b| {
            b.to_async(&runtime).iter(|| async {
                cached.forget_programs();
                let program = cached.prepare(bytes.clone()).await.unwrap();
                let exit = cached.start(&program, spec()).unwrap().wait().await;
                assert_eq!(exit.exit_code, 0);
            })
        });

        group.sample_size(20);
        group.bench_function(BenchmarkId::new("compile", label), |b| {
            b.to_async(&runtime).iter(|| async {
                uncached.forget_programs();
                let program = uncached.prepare(bytes.clone()).await.unwrap();
                let exit = uncached.start(&program, spec()).unwrap().wait().await;
                assert_eq!(exit.exit_code, 0);
            })
        });
        group.sample_size(100);
    }
    group.finish();
}

criterion_group!(benches, cold_start);
criterion_main!(benches);
