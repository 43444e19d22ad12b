//! Images against a real registry (Debian's docker-registry on loopback): push, pull by tag and
//! digest, the CNCF artifact format, corrupted blobs, unknown media types, missing tags, auth,
//! concurrent pulls, container images, OCI layouts, and the local store's rm/prune.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::registry::Registry;
use common::{BOTH, Host, Wasi, guest, wasmgate};
use serde_json::{Value, json};
use wasmgate::capacity::LogStream;
use wasmgate::config::Config;
use wasmgate::image::{ImageContent, Images, RegistrySettings};

fn images(data: &Path, registry: RegistrySettings) -> Images {
    let config = Config {
        data_dir: data.to_path_buf(),
        registry,
        ..Config::default()
    };
    Images::open(&config.images()).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    wasmgate::image::content::digest_of(bytes)
}

#[test]
fn push_then_run_by_tag_and_by_digest() {
    let registry = Registry::start();
    for wasi in BOTH {
        let data = tempfile::tempdir().unwrap();
        let reference = format!("{}/hello-{wasi:?}:v1", registry.addr).to_lowercase();
        let pushed = wasmgate(data.path())
            .arg("push")
            .arg(guest(wasi, "hello"))
            .arg(&reference)
            .output()
            .unwrap();
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        let pinned = String::from_utf8(pushed.stdout).unwrap().trim().to_string();
        assert!(
            pinned.starts_with(&format!("{reference}@sha256:")),
            "{pinned}"
        );

        for by in [&reference, &pinned] {
            let run = wasmgate(data.path()).args(["run", by]).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&run.stdout),
                "Hello from wasmgate!\n",
                "{by}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            assert_eq!(run.status.code(), Some(0));
        }
        let listed = wasmgate(data.path()).arg("images").output().unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.contains(&reference) && listed.contains("wasm"),
            "{listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pushed_artifact_is_a_cncf_wasm_artifact_and_pulls_back_bit_for_bit() {
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let store = images(data.path(), RegistrySettings::default());
    let bytes = std::fs::read(guest(Wasi::P2, "hello")).unwrap();
    let reference = format!("{}/hello:cncf", registry.addr);
    let pushed = store.push_wasm(&bytes, &reference).await.unwrap();

    let (status, manifest) = registry.get("/v2/hello/manifests/cncf").unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256(&manifest), pushed.digest);
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], sha256(&bytes));

    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (_, config) = registry
        .get(&format!("/v2/hello/blobs/{config_digest}"))
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("wasm"), Some("wasip2"))
    );
    assert_eq!(config["layerDigests"], json!([sha256(&bytes)]));
    assert!(config["created"].as_str().is_some_and(|c| c.ends_with('Z')));
    let exports: Vec<&str> = config["component"]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")),
        "{exports:?}"
    );

    // Pull into a fresh store: the same bytes come back.
    let other = tempfile::tempdir().unwrap();
    let image = images(other.path(), RegistrySettings::default())
        .resolve(&reference, Path::new("."))
        .await
        .unwrap();
    assert_eq!(image.digest, pushed.digest);
    match image.content {
        ImageContent::Wasm(pulled) => assert!(
            pulled.as_ref() == bytes.as_slice(),
            "the pulled module differs"
        ),
        other => panic!("expected Wasm, got {}", other.kind()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_blob_fails_and_caches_nothing() {
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let store = images(data.path(), RegistrySettings::default());
    let bytes = std::fs::read(guest(Wasi::P1, "hello")).unwrap();
    let reference = format!("{}/corrupt:v1", registry.addr);
    store.push_wasm(&bytes, &reference).await.unwrap();
    let layer = sha256(&bytes);
    let mut tampered = bytes.clone();
    tampered[100] ^= 0xff;
    std::fs::write(registry.blob_file(&layer), &tampered).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let pulling = images(fresh.path(), RegistrySettings::default());
    let error = pulling
        .resolve(&reference, Path::new("."))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with(&reference), "{error}");
    assert!(error.to_lowercase().contains("digest"), "{error}");
    assert!(!pulling.store().has_blob(&layer));
    assert!(pulling.store().images().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_media_type_is_refused_with_what_was_found() {
    let registry = Registry::start();
    registry
        .push_raw_image(
            "odd:v1",
            ("application/x-foo", b"{}".to_vec()),
            ("application/x-bar", b"not wasm".to_vec()),
        )
        .await;

    let host = Host::new();
    let outcome = host
        .run(json!({"family": "odd", "memory": "64",
                    "containerDefinitions": [{"name": "odd", "image": format!("{}/odd:v1", registry.addr)}]}))
        .await;
    let reason = outcome.containers[0].reason.clone().unwrap_or_default();
    assert_eq!(
        reason,
        format!(
            "CannotPullContainerError: {}/odd:v1: config application/x-foo with layers [application/x-bar]: \
             neither a Wasm artifact nor a container image",
            registry.addr
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_tag_or_repository_fails_with_the_registrys_answer() {
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let store = images(data.path(), RegistrySettings::default());
    store
        .push_wasm(
            &std::fs::read(guest(Wasi::P1, "hello")).unwrap(),
            &format!("{}/present:v1", registry.addr),
        )
        .await
        .unwrap();
    for missing in [
        format!("{}/present:nope", registry.addr),
        format!("{}/absent:v1", registry.addr),
    ] {
        let error = store
            .resolve(&missing, Path::new("."))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("{missing}: the registry answered")),
            "{error}"
        );
        assert!(error.to_lowercase().contains("unknown"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_is_used_and_a_wrong_password_says_so() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let bytes = std::fs::read(guest(Wasi::P1, "hello")).unwrap();
    let reference = format!("{}/private:v1", registry.addr);
    let good = RegistrySettings {
        username: Some("alice".into()),
        password: Some("s3cret".into()),
        ..Default::default()
    };
    let data = tempfile::tempdir().unwrap();
    images(data.path(), good.clone())
        .push_wasm(&bytes, &reference)
        .await
        .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    images(fresh.path(), good)
        .resolve(&reference, Path::new("."))
        .await
        .unwrap();

    // Credentials from a Docker config's `auths` work too.
    let docker = tempfile::tempdir().unwrap();
    let encoded = base64_encode("alice:s3cret");
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let from_file = RegistrySettings {
        docker_config: Some(docker.path().join("config.json")),
        ..Default::default()
    };
    let fresh = tempfile::tempdir().unwrap();
    images(fresh.path(), from_file)
        .resolve(&reference, Path::new("."))
        .await
        .unwrap();

    for wrong in [
        RegistrySettings {
            username: Some("alice".into()),
            password: Some("wrong".into()),
            ..Default::default()
        },
        RegistrySettings {
            docker_config: Some(docker.path().join("missing.json")),
            ..Default::default()
        },
    ] {
        let fresh = tempfile::tempdir().unwrap();
        let error = images(fresh.path(), wrong)
            .resolve(&reference, Path::new("."))
            .await
            .unwrap_err()
            .to_string();
        let lower = error.to_lowercase();
        assert!(
            lower.contains("unauthorized") || lower.contains("authentication"),
            "{error}"
        );
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_one_image_download_it_once() {
    let registry = Registry::start();
    let reference = format!("{}/shared:v1", registry.addr);
    let data = tempfile::tempdir().unwrap();
    images(data.path(), RegistrySettings::default())
        .push_wasm(&std::fs::read(guest(Wasi::P2, "spin")).unwrap(), &reference)
        .await
        .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let store = Arc::new(images(fresh.path(), RegistrySettings::default()));
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let reference = reference.clone();
            tokio::spawn(async move {
                store
                    .resolve(&reference, Path::new("."))
                    .await
                    .map(|i| i.digest)
            })
        })
        .collect();
    let mut digests = Vec::new();
    for pull in pulls {
        digests.push(pull.await.unwrap().unwrap());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        store.downloads(),
        1,
        "the one Wasm layer should be downloaded once"
    );
}

/// A one-file container image: an uncompressed tar layer and an OCI config, pushed by hand.
async fn push_container_image(registry: &Registry, name: &str) {
    let mut layer = tar::Builder::new(Vec::new());
    let content = b"#!/bin/sh\necho hello from a container\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    layer
        .append_data(&mut header, "hello.sh", &content[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello.sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}
    }))
    .unwrap();
    registry
        .push_raw_image(
            name,
            ("application/vnd.oci.image.config.v1+json", config),
            ("application/vnd.oci.image.layer.v1.tar", layer),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_image_is_recognised_as_one() {
    let registry = Registry::start();
    push_container_image(&registry, "box:v1").await;
    let host = Host::new();
    let image = format!("{}/box:v1", registry.addr);
    let outcome = host
        .run(json!({"family": "box", "memory": "64", "containerDefinitions": [{"name": "box", "image": image}]}))
        .await;
    let reason = outcome.containers[0].reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "CannotStartContainerError: {image}: is a container image (1 layers"
        )),
        "{reason}"
    );
    let cached = host.runner.images().store().images().unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].kind, "container");
}

/// Writes an OCI image layout holding `wasm` as a CNCF Wasm artifact tagged `tag`.
fn write_layout(dir: &Path, wasm: &[u8], tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    };
    let config = serde_json::to_vec(
        &json!({"architecture": "wasm", "os": "wasip1", "layerDigests": [sha256(wasm)]}),
    )
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": put(&config), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": put(wasm), "size": wasm.len()}]
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest),
                       "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
}

#[test]
fn run_from_an_oci_layout_without_a_registry() {
    let layout = tempfile::tempdir().unwrap();
    write_layout(
        layout.path(),
        &std::fs::read(guest(Wasi::P1, "hello")).unwrap(),
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let reference = format!("oci:{}:v1", layout.path().display());
    let run = wasmgate(data.path())
        .args(["run", &reference])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "Hello from wasmgate!\n",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let missing = wasmgate(data.path())
        .args(["run", &format!("oci:{}:v2", layout.path().display())])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no manifest tagged \"v2\" (tags: v1)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn images_rm_and_prune_free_only_what_no_image_needs() {
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let store = images(data.path(), RegistrySettings::default());
    let hello = std::fs::read(guest(Wasi::P1, "hello")).unwrap();
    let args = std::fs::read(guest(Wasi::P1, "args")).unwrap();
    for (bytes, name) in [(&hello, "a:v1"), (&args, "b:v1")] {
        let reference = format!("{}/{name}", registry.addr);
        store.push_wasm(bytes, &reference).await.unwrap();
        store.resolve(&reference, Path::new(".")).await.unwrap();
    }
    drop(store);
    let rm = wasmgate(data.path())
        .args(["images", "rm", &format!("{}/a:v1", registry.addr)])
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let prune = wasmgate(data.path())
        .args(["images", "prune"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&prune.stdout).starts_with("removed 2 blobs"),
        "{}",
        String::from_utf8_lossy(&prune.stdout)
    );
    let store = images(data.path(), RegistrySettings::default());
    assert!(!store.store().has_blob(&sha256(&hello)));
    assert!(store.store().has_blob(&sha256(&args)));
    // The image left still runs from the store, pinned by digest, with the registry gone.
    let left = store.store().images().unwrap();
    assert_eq!(left.len(), 1);
    let pinned = format!("{}/b@{}", registry.addr, left[0].digest);
    drop(registry);
    let host_image = store.resolve(&pinned, Path::new(".")).await.unwrap();
    assert!(matches!(host_image.content, ImageContent::Wasm(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_record_the_digest_they_ran() {
    let registry = Registry::start();
    let host = Host::new();
    let reference = format!("{}/digest:v1", registry.addr);
    let pushed = host
        .runner
        .images()
        .push_wasm(
            &std::fs::read(guest(Wasi::P2, "hello")).unwrap(),
            &reference,
        )
        .await
        .unwrap();
    let outcome = host
        .run(json!({"family": "d", "memory": "64", "containerDefinitions": [{"name": "d", "image": reference}]}))
        .await;
    let container = &outcome.containers[0];
    assert_eq!(container.exit_code, Some(0), "{:?}", container.reason);
    assert_eq!(
        container.image_digest.as_deref(),
        Some(pushed.digest.as_str())
    );
    assert_eq!(
        container.log.text(LogStream::Stdout),
        "Hello from wasmgate!\n"
    );
}

#[test]
fn another_tool_pulls_what_wasmgate_pushes() {
    // skopeo reads the pushed artifact from the registry into an OCI layout; wasmgate runs it.
    let registry = Registry::start();
    let data = tempfile::tempdir().unwrap();
    let reference = format!("{}/interop:v1", registry.addr);
    let pushed = wasmgate(data.path())
        .arg("push")
        .arg(guest(Wasi::P2, "hello"))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let layout = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .arg(format!("oci:{}:v1", layout.path().display()))
        .output()
        .expect("skopeo is installed (scripts/setup.sh)");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let run = wasmgate(data.path())
        .args(["run", &format!("oci:{}:v1", layout.path().display())])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "Hello from wasmgate!\n",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_image_is_read_again_once_the_file_changes() {
    let data = tempfile::tempdir().unwrap();
    let images = images(data.path(), RegistrySettings::default());
    let file = data.path().join("app.wasm");
    let hello = std::fs::read(guest(Wasi::P1, "hello")).unwrap();
    let exit = std::fs::read(guest(Wasi::P1, "exit")).unwrap();
    std::fs::write(&file, &hello).unwrap();
    let reference = file.display().to_string();
    let first = images.resolve(&reference, data.path()).await.unwrap();
    let again = images.resolve(&reference, data.path()).await.unwrap();
    assert_eq!(first.digest, sha256(&hello));
    assert_eq!(again.digest, first.digest);
    // Another program written over it (a new inode, as a build's rename makes, or the same
    // file rewritten): its own bytes and digest, never the remembered ones.
    let replacement = data.path().join("app.wasm.new");
    std::fs::write(&replacement, &exit).unwrap();
    std::fs::rename(&replacement, &file).unwrap();
    let renamed = images.resolve(&reference, data.path()).await.unwrap();
    assert_eq!(renamed.digest, sha256(&exit));
    std::fs::write(&file, &hello).unwrap();
    let rewritten = images.resolve(&reference, data.path()).await.unwrap();
    assert_eq!(rewritten.digest, sha256(&hello));
    let ImageContent::Wasm(bytes) = rewritten.content else {
        panic!("not a Wasm image");
    };
    assert_eq!(&bytes[..], &hello[..]);
}
