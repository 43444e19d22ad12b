//! Media types, and the one decision they drive: is this manifest a Wasm program, a container
//! image, or neither? The capacity is chosen from here, never from a name.

use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type a pull accepts.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The CNCF Wasm OCI artifact's config.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF Wasm OCI artifact's one layer.
pub const WASM_LAYER: &str = "application/wasm";
/// Wasm layers as Spin and runwasi push them.
pub const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
pub const WASM_COMPONENT_LAYER: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
pub const SPIN_APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Layer types of a container image's root filesystem.
pub const CONTAINER_LAYERS: [&str; 5] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

fn is_wasm_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        WASM_LAYER | WASM_CONTENT_LAYER | WASM_COMPONENT_LAYER
    )
}

/// A content descriptor (the parts wasmgate reads).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An image manifest (OCI or Docker v2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// What a manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single Wasm program in `layer`.
    Wasm { layer: Descriptor },
    /// A container image: its config and root filesystem layers.
    Container {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Decides what a manifest is from its media types alone. The error says what was found.
pub fn classify(manifest: &Manifest) -> Result<ManifestKind, String> {
    let found = || {
        let layers: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        format!(
            "config {} with layers [{}]",
            manifest.config.media_type,
            layers.join(", ")
        )
    };
    let wasm_layers: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| is_wasm_layer(&l.media_type))
        .collect();
    if manifest
        .layers
        .iter()
        .any(|l| l.media_type == SPIN_APP_LAYER)
    {
        return Err(format!(
            "{}: a Spin application (several components and a Spin manifest) cannot run as one \
             task; push a single component",
            found()
        ));
    }
    match wasm_layers.as_slice() {
        [layer] if manifest.layers.len() == 1 => {
            return Ok(ManifestKind::Wasm {
                layer: (*layer).clone(),
            });
        }
        [_, ..] => {
            return Err(format!(
                "{}: a Wasm image must have exactly one Wasm layer",
                found()
            ));
        }
        [] => {}
    }
    if manifest.config.media_type == WASM_CONFIG {
        return Err(format!(
            "{}: a Wasm artifact without an application/wasm layer",
            found()
        ));
    }
    let is_container_config = matches!(
        manifest.config.media_type.as_str(),
        OCI_CONFIG | DOCKER_CONFIG
    );
    if is_container_config
        && manifest
            .layers
            .iter()
            .all(|l| CONTAINER_LAYERS.contains(&l.media_type.as_str()))
    {
        return Ok(ManifestKind::Container {
            config: manifest.config.clone(),
            layers: manifest.layers.clone(),
        });
    }
    Err(format!(
        "{}: neither a Wasm artifact nor a container image",
        found()
    ))
}

/// Picks the manifest to run from an index: a Wasm entry (`wasip1`, `wasip2`, `wasi`, or
/// architecture `wasm`) first, else `linux/amd64`.
pub fn choose_from_index(index: &Index) -> Option<&Descriptor> {
    let is_wasm = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.architecture == "wasm" || matches!(p.os.as_str(), "wasip1" | "wasip2" | "wasi")
        })
    };
    let is_linux_amd64 = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    };
    index
        .manifests
        .iter()
        .find(is_wasm)
        .or_else(|| index.manifests.iter().find(is_linux_amd64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: None,
        }
    }

    fn manifest(config: &str, layers: &[&str]) -> Manifest {
        Manifest {
            media_type: None,
            config: descriptor(config),
            layers: layers.iter().map(|l| descriptor(l)).collect(),
        }
    }

    #[test]
    fn chooses_the_capacity_from_media_types() {
        assert!(matches!(
            classify(&manifest(WASM_CONFIG, &[WASM_LAYER])),
            Ok(ManifestKind::Wasm { .. })
        ));
        assert!(matches!(
            classify(&manifest(OCI_CONFIG, &[WASM_COMPONENT_LAYER])),
            Ok(ManifestKind::Wasm { .. })
        ));
        assert!(matches!(
            classify(&manifest(OCI_CONFIG, &[WASM_CONTENT_LAYER])),
            Ok(ManifestKind::Wasm { .. })
        ));
        assert!(matches!(
            classify(&manifest(
                OCI_CONFIG,
                &["application/vnd.oci.image.layer.v1.tar+gzip"]
            )),
            Ok(ManifestKind::Container { .. })
        ));
        assert!(matches!(
            classify(&manifest(
                DOCKER_CONFIG,
                &["application/vnd.docker.image.rootfs.diff.tar.gzip"]
            )),
            Ok(ManifestKind::Container { .. })
        ));
        let error = classify(&manifest("application/x-foo", &["application/x-bar"])).unwrap_err();
        assert_eq!(
            error,
            "config application/x-foo with layers [application/x-bar]: neither a Wasm artifact nor a container image"
        );
        assert!(classify(&manifest(WASM_CONFIG, &[WASM_LAYER, WASM_LAYER])).is_err());
        assert!(
            classify(&manifest(OCI_CONFIG, &[WASM_LAYER, SPIN_APP_LAYER]))
                .unwrap_err()
                .contains("Spin application")
        );
    }

    #[test]
    fn an_index_resolves_to_wasm_first_then_linux_amd64() {
        let entry = |os: &str, architecture: &str, digit: char| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", digit.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: architecture.into(),
                os: os.into(),
            }),
        };
        let index = Index {
            manifests: vec![
                entry("linux", "arm64", '1'),
                entry("linux", "amd64", '2'),
                entry("wasip2", "wasm", '3'),
            ],
        };
        assert_eq!(
            choose_from_index(&index).unwrap().digest,
            format!("sha256:{}", "3".repeat(64))
        );
        let index = Index {
            manifests: vec![entry("linux", "arm64", '1'), entry("linux", "amd64", '2')],
        };
        assert_eq!(
            choose_from_index(&index).unwrap().digest,
            format!("sha256:{}", "2".repeat(64))
        );
        let index = Index {
            manifests: vec![entry("windows", "amd64", '1')],
        };
        assert!(choose_from_index(&index).is_none());
    }
}
