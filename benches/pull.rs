//! Pull + compile + first run of a ~100 KB component (the `args` guest for wasip2, 109 KB) from
//! a real registry on loopback (Debian's docker-registry, started here):
//!
//! - `pull/empty_store`: a new content store and no compiled artifact: manifest, blob download
//!   with digest check, compile, instantiate, run.
//! - `pull/warm_store`: blobs and compiled artifact on disk, program not in memory (as for a
//!   new task after an agent restart): the tag's manifest is fetched again (tags resolve at
//!   every start), the artifact is loaded, then instantiate and run.
//!
//! Needs `cargo guests` and `scripts/setup.sh` first. Run with `cargo bench --bench pull`.

#[path = "../tests/common/registry.rs"]
#[allow(dead_code)]
mod registry;

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmgate::capacity::wasm::{WasmCapacity, WasmCapacityConfig};
use wasmgate::capacity::{ContainerLog, ContainerSpec, Tee};
use wasmgate::image::{ImageContent, ImageSettings, Images, RegistrySettings};

fn spec() -> ContainerSpec {
    ContainerSpec {
        task_id: "bench".into(),
        name: "args".into(),
        argv: vec!["args".into()],
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

fn images_in(dir: &Path) -> Images {
    Images::open(&ImageSettings {
        store_dir: dir.to_path_buf(),
        default_registry: "docker.io".into(),
        registry: RegistrySettings::default(),
    })
    .unwrap()
}

async fn pull_and_run(images: &Images, wasm: &WasmCapacity, reference: &str) {
    let image = images.resolve(reference, Path::new(".")).await.unwrap();
    let ImageContent::Wasm(bytes) = image.content else {
        panic!("not Wasm")
    };
    wasm.forget_programs();
    let program = wasm.prepare(bytes).await.unwrap();
    let exit = wasm.start(&program, spec()).unwrap().wait().await;
    assert_eq!(exit.exit_code, 0);
}

fn pull(c: &mut Criterion) {
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/target/wasm32-wasip2/release/args.wasm");
    let bytes = std::fs::read(&module).expect("run `cargo guests` first");
    let registry = registry::Registry::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let reference = format!("{}/bench/args:v1", registry.addr);
    let scratch = tempfile::tempdir().unwrap();
    runtime
        .block_on(images_in(scratch.path()).push_wasm(&bytes, &reference))
        .unwrap();

    let compiling = WasmCapacity::new(&WasmCapacityConfig::default()).unwrap();
    let warm_dir = tempfile::tempdir().unwrap();
    let warm_images = images_in(&warm_dir.path().join("images"));
    let warm_wasm = WasmCapacity::new(&WasmCapacityConfig {
        artifact_dir: Some(warm_dir.path().join("compiled")),
        ..WasmCapacityConfig::default()
    })
    .unwrap();
    runtime.block_on(pull_and_run(&warm_images, &warm_wasm, &reference));

    let mut group = c.benchmark_group("pull");
    group.sample_size(20);
    group.bench_function("empty_store", |b| {
        b.to_async(&runtime).iter(|| async {
            let dir = tempfile::tempdir().unwrap();
            pull_and_run(&images_in(dir.path()), &compiling, &reference).await;
        })
    });
    group.sample_size(100);
    group.bench_function("warm_store", |b| {
        b.to_async(&runtime)
            .iter(|| pull_and_run(&warm_images, &warm_wasm, &reference))
    });
    group.finish();
}

criterion_group!(benches, pull);
criterion_main!(benches);
