//! Packaging a Wasm module or component as a CNCF Wasm OCI artifact (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and pushing it.

use oci_client::Client;
use oci_client::secrets::RegistryAuth;
use serde_json::json;

use super::content::digest_of;
use super::media;
use super::reference::RegistryRef;
use super::registry::describe;
use crate::capacity::wasm::WasmKind;

/// What a push produced.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// The pushed reference, pinned: `registry/repo:tag@sha256:...`.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// `wasip1` or `wasip2`.
    pub os: String,
}

pub(super) async fn push_wasm(
    client: &Client,
    auth: &RegistryAuth,
    image: &RegistryRef,
    bytes: &[u8],
) -> Result<PushedImage, String> {
    let kind = WasmKind::detect(bytes).map_err(|e| e.to_string())?;
    let layer_digest = digest_of(bytes);
    let mut config = json!({
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "author": "wasmgate",
        "architecture": "wasm",
        "os": kind.os(),
        "layerDigests": [layer_digest],
    });
    if kind == WasmKind::Component {
        config["component"] = component_world(bytes)?;
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_digest = digest_of(&config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::WASM_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": media::WASM_LAYER, "digest": layer_digest, "size": bytes.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = digest_of(&manifest_bytes);

    let target = image.to_oci();
    client
        .auth(&target, auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(|e| describe(&e))?;
    client
        .push_blob(&target, bytes.to_vec(), &layer_digest)
        .await
        .map_err(|e| describe(&e))?;
    client
        .push_blob(&target, config_bytes, &config_digest)
        .await
        .map_err(|e| describe(&e))?;
    let content_type = http_header(media::OCI_MANIFEST)?;
    client
        .push_manifest_raw(&target, manifest_bytes, content_type)
        .await
        .map_err(|e| describe(&e))?;
    let tagged = RegistryRef {
        digest: None,
        tag: Some(
            image
                .tag
                .clone()
                .unwrap_or_else(|| RegistryRef::DEFAULT_TAG.into()),
        ),
        ..image.clone()
    };
    Ok(PushedImage {
        reference: format!("{tagged}@{manifest_digest}"),
        digest: manifest_digest,
        os: kind.os().to_string(),
    })
}

fn http_header(value: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(value).map_err(|e| e.to_string())
}

/// The imports and exports of a component's world, as the CNCF config's `component` field.
fn component_world(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = wasmtime::Engine::new(&config).map_err(|e| e.to_string())?;
    let component = wasmtime::component::Component::from_binary(&engine, bytes)
        .map_err(|e| format!("not a valid component: {e}"))?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    Ok(json!({"imports": imports, "exports": exports, "target": null}))
}
