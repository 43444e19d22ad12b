//! Images: from the `image` of a container definition to what a capacity prepares.
//!
//! An image is a Wasm file on this host, an OCI image layout directory (`oci:DIR[:TAG]`), or an
//! image in a registry. Registry and layout images go through the local content store, every
//! blob verified against its digest; what they are (Wasm or container) is decided from their
//! media types alone. Tags resolve to a digest at every resolve; digests pin.
//!
//! Architecture invariant: this module decides what an image *is*; it never runs anything.

pub mod content;
pub mod media;
mod push;
pub mod reference;
mod registry;
pub mod rootfs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use content::{ContentStore, ImageRecord, StoreError, digest_of, now_secs};
use media::{Descriptor, ManifestKind};
pub use push::PushedImage;
use reference::{ImageRef, RegistryRef};
use registry::RegistryClient;
pub use registry::RegistrySettings;

/// The most bytes a Wasm image may have; larger ones are refused before they are read whole.
pub const MAX_WASM_IMAGE_BYTES: u64 = 256 << 20;

/// Why an image reference could not be turned into something to run. Displayed after
/// `CannotPullContainerError: ` and always starting with the reference at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{reference}: invalid image reference: {why}")]
    InvalidReference { reference: String, why: String },
    #[error("{reference}: cannot read {}: {source}", path.display())]
    Read {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{reference}: the Wasm image is {size} bytes, more than the {MAX_WASM_IMAGE_BYTES}-byte limit"
    )]
    TooLarge { reference: String, size: u64 },
    #[error("{reference}: {why}")]
    Registry { reference: String, why: String },
    #[error("{reference}: {why}")]
    Unsupported { reference: String, why: String },
    #[error("{reference}: {why}")]
    Layout { reference: String, why: String },
    #[error("{reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
}

/// A resolved image: its digest and what to run.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference as given.
    pub reference: String,
    /// The manifest's digest (for a file: the digest of its bytes). ECS's `imageDigest`.
    pub digest: String,
    pub content: ImageContent,
}

/// What an image holds.
#[derive(Debug, Clone)]
pub enum ImageContent {
    /// A Wasm module or component.
    Wasm(Arc<[u8]>),
    /// A container image: its config and layers, in the content store.
    Container {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl ImageContent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Wasm(_) => "wasm",
            Self::Container { .. } => "container",
        }
    }
}

/// Progress of a blob download, for the CLI.
#[derive(Debug, Clone)]
pub struct PullProgress {
    pub reference: String,
    pub digest: String,
    pub received: u64,
    pub total: u64,
}

/// Receives download progress.
pub type ProgressSink = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// Where images come from and where they are kept.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub store_dir: PathBuf,
    /// The registry of short names (`app:1` → `DEFAULT/app:1`).
    pub default_registry: String,
    pub registry: RegistrySettings,
}

/// Resolves image references; one per process.
pub struct Images {
    store: ContentStore,
    registry: RegistryClient,
    default_registry: String,
    downloads: AtomicU64,
    progress: Option<ProgressSink>,
    /// File images read before, by path, with the file's identity then: a task of an
    /// unchanged file reuses the bytes and their digest instead of reading and hashing it
    /// again at every start (a sixth of a cold start for a 64 KB module).
    files: Mutex<HashMap<PathBuf, (FileStamp, Image)>>,
}

/// What says a file is unchanged: its inode, size and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed: (i64, i64),
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The most file images remembered; past it the memory starts again.
const MAX_REMEMBERED_FILES: usize = 256;

impl Images {
    pub fn open(settings: &ImageSettings) -> Result<Self, ImageError> {
        let store =
            ContentStore::open(&settings.store_dir).map_err(|source| ImageError::Store {
                reference: String::new(),
                source,
            })?;
        Ok(Self {
            store,
            registry: RegistryClient::new(&settings.registry),
            default_registry: settings.default_registry.clone(),
            downloads: AtomicU64::new(0),
            progress: None,
            files: Mutex::default(),
        })
    }

    /// Reports blob downloads to `sink` (the CLI shows bytes and rate).
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// Blobs downloaded from registries by this process.
    pub fn downloads(&self) -> u64 {
        self.downloads.load(Ordering::Relaxed)
    }

    /// Parses `reference` (relative paths against `base_dir`).
    pub fn parse(&self, reference: &str, base_dir: &Path) -> Result<ImageRef, ImageError> {
        reference::parse(reference, base_dir, &self.default_registry).map_err(|why| {
            ImageError::InvalidReference {
                reference: reference.to_string(),
                why,
            }
        })
    }

    /// Turns a reference into something to run, pulling what the store lacks.
    pub async fn resolve(&self, reference: &str, base_dir: &Path) -> Result<Image, ImageError> {
        let span = tracing::info_span!("image", reference);
        let _entered = span.enter();
        match self.parse(reference, base_dir)? {
            ImageRef::File(path) => self.read_file(reference, &path),
            ImageRef::Layout { dir, tag } => self.load_layout(reference, &dir, tag.as_deref()),
            ImageRef::Registry(image) => self.pull(reference, &image).await,
        }
    }

    async fn pull(&self, given: &str, image: &RegistryRef) -> Result<Image, ImageError> {
        let registry_error =
            |error: oci_client::errors::OciDistributionError| ImageError::Registry {
                reference: given.to_string(),
                why: registry::describe(&error),
            };
        let client = self.registry.client_for(image);
        let auth = self.registry.auth_for(image);

        // A digest pins the image: if its manifest is here, nothing needs the network.
        let cached = image
            .digest
            .as_ref()
            .and_then(|d| self.store.read_blob(d).ok().map(|b| (b, d.clone())));
        let (manifest_bytes, digest) = match cached {
            Some(found) => found,
            None => {
                let (bytes, _) = client
                    .pull_manifest_raw(&image.to_oci(), &auth, &media::ACCEPTED_MANIFESTS)
                    .await
                    .map_err(registry_error)?;
                let digest = digest_of(&bytes);
                if let Some(pinned) = image.digest.as_ref().filter(|d| **d != digest) {
                    return Err(ImageError::Registry {
                        reference: given.to_string(),
                        why: format!(
                            "the registry sent a manifest with digest {digest}, not {pinned}"
                        ),
                    });
                }
                (bytes.to_vec(), digest)
            }
        };
        let (manifest_bytes, digest) = match parse_index(&manifest_bytes) {
            None => (manifest_bytes, digest),
            Some(index) => {
                let chosen = media::choose_from_index(&index).ok_or_else(|| ImageError::Unsupported {
                    reference: given.to_string(),
                    why: "the image index has no Wasm (wasip1, wasip2, wasi/wasm) or linux/amd64 entry".into(),
                })?;
                let pinned = image.with_digest(&chosen.digest);
                let (bytes, _) = client
                    .pull_manifest_raw(&pinned.to_oci(), &auth, &media::ACCEPTED_MANIFESTS)
                    .await
                    .map_err(registry_error)?;
                if digest_of(&bytes) != chosen.digest {
                    return Err(ImageError::Registry {
                        reference: given.to_string(),
                        why: format!(
                            "the manifest for {} does not match its digest",
                            chosen.digest
                        ),
                    });
                }
                (bytes.to_vec(), chosen.digest.clone())
            }
        };
        let kind = classify(given, &manifest_bytes)?;
        let store_error = |source| ImageError::Store {
            reference: given.to_string(),
            source,
        };
        self.store
            .ingest_bytes(&digest, &manifest_bytes)
            .map_err(store_error)?;

        for blob in blobs_of(&kind) {
            self.fetch_blob(given, image, &auth, blob).await?;
        }
        self.finish(given, &image.to_string(), digest, &manifest_bytes, kind)
    }

    /// Downloads one blob unless the store has it; concurrent callers for the same blob wait
    /// for the first and download nothing.
    async fn fetch_blob(
        &self,
        given: &str,
        image: &RegistryRef,
        auth: &oci_client::secrets::RegistryAuth,
        blob: &Descriptor,
    ) -> Result<(), ImageError> {
        let lock = self.store.fetch_lock(&blob.digest);
        let _fetching = lock.lock().await;
        if self.store.has_blob(&blob.digest) {
            return Ok(());
        }
        let client = self.registry.client_for(image);
        // Make sure the client holds credentials for this registry before the blob request.
        client
            .auth(&image.to_oci(), auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| ImageError::Registry {
                reference: given.to_string(),
                why: registry::describe(&e),
            })?;
        let stream = client
            .pull_blob_stream(&image.to_oci(), blob.digest.as_str())
            .await
            .map_err(|e| ImageError::Registry {
                reference: given.to_string(),
                why: registry::describe(&e),
            })?;
        tracing::debug!(digest = %blob.digest, size = blob.size, "downloading blob");
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let progress = self.progress.clone();
        let report = |received| {
            if let Some(sink) = &progress {
                sink(&PullProgress {
                    reference: given.to_string(),
                    digest: blob.digest.clone(),
                    received,
                    total: blob.size,
                });
            }
        };
        self.store
            .ingest_stream(&blob.digest, Some(blob.size), stream.stream, report)
            .await
            .map_err(|source| ImageError::Store {
                reference: given.to_string(),
                source,
            })
    }

    fn load_layout(&self, given: &str, dir: &Path, tag: Option<&str>) -> Result<Image, ImageError> {
        let layout_error = |why: String| ImageError::Layout {
            reference: given.to_string(),
            why,
        };
        let index_path = dir.join("index.json");
        let index_bytes = std::fs::read(&index_path)
            .map_err(|e| layout_error(format!("cannot read {}: {e}", index_path.display())))?;
        let index: LayoutIndex = serde_json::from_slice(&index_bytes).map_err(|e| {
            layout_error(format!("{} is not an OCI index: {e}", index_path.display()))
        })?;
        let entry = match tag {
            Some(tag) => index.manifests.iter().find(|m| m.ref_name() == Some(tag)),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        }
        .ok_or_else(|| {
            let tags: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(LayoutEntry::ref_name)
                .collect();
            layout_error(match tag {
                Some(tag) => format!("no manifest tagged \"{tag}\" (tags: {})", tags.join(", ")),
                None => format!(
                    "the layout holds {} manifests; name one with oci:DIR:TAG (tags: {})",
                    index.manifests.len(),
                    tags.join(", ")
                ),
            })
        })?;
        let copy_blob = |digest: &str| -> Result<Vec<u8>, ImageError> {
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or_else(|| layout_error(format!("unsupported digest {digest}")))?;
            let path = dir.join("blobs/sha256").join(hex);
            let bytes = std::fs::read(&path)
                .map_err(|e| layout_error(format!("cannot read {}: {e}", path.display())))?;
            self.store
                .ingest_bytes(digest, &bytes)
                .map_err(|source| ImageError::Store {
                    reference: given.to_string(),
                    source,
                })?;
            Ok(bytes)
        };
        let manifest_bytes = copy_blob(&entry.digest)?;
        let kind = classify(given, &manifest_bytes)?;
        for blob in blobs_of(&kind) {
            copy_blob(&blob.digest)?;
        }
        self.finish(given, given, entry.digest.clone(), &manifest_bytes, kind)
    }

    /// Records the image in the index and loads what a capacity needs.
    fn finish(
        &self,
        given: &str,
        canonical: &str,
        digest: String,
        manifest_bytes: &[u8],
        kind: ManifestKind,
    ) -> Result<Image, ImageError> {
        let store_error = |source| ImageError::Store {
            reference: given.to_string(),
            source,
        };
        let blobs: Vec<&Descriptor> = blobs_of(&kind);
        let size = manifest_bytes.len() as u64 + blobs.iter().map(|b| b.size).sum::<u64>();
        let content = match &kind {
            ManifestKind::Wasm { layer } => {
                if layer.size > MAX_WASM_IMAGE_BYTES {
                    return Err(ImageError::TooLarge {
                        reference: given.to_string(),
                        size: layer.size,
                    });
                }
                ImageContent::Wasm(
                    self.store
                        .read_blob(&layer.digest)
                        .map_err(store_error)?
                        .into(),
                )
            }
            ManifestKind::Container { config, layers } => ImageContent::Container {
                config: config.clone(),
                layers: layers.clone(),
            },
        };
        let mut all_blobs = vec![digest.clone()];
        all_blobs.extend(blobs.iter().map(|b| b.digest.clone()));
        self.store
            .record_image(ImageRecord {
                reference: canonical.to_string(),
                digest: digest.clone(),
                kind: content.kind().to_string(),
                size,
                blobs: all_blobs,
                last_used: now_secs(),
            })
            .map_err(store_error)?;
        tracing::info!(%digest, kind = content.kind(), "image resolved");
        Ok(Image {
            reference: given.to_string(),
            digest,
            content,
        })
    }

    /// Packages a Wasm module or component as a CNCF Wasm OCI artifact and pushes it.
    pub async fn push_wasm(
        &self,
        bytes: &[u8],
        reference: &str,
    ) -> Result<PushedImage, ImageError> {
        let image = match self.parse(reference, Path::new("."))? {
            ImageRef::Registry(image) => image,
            _ => {
                return Err(ImageError::InvalidReference {
                    reference: reference.to_string(),
                    why: "push needs a registry reference (registry/repository:tag)".into(),
                });
            }
        };
        let client = self.registry.client_for(&image);
        let auth = self.registry.auth_for(&image);
        push::push_wasm(client, &auth, &image, bytes)
            .await
            .map_err(|why| ImageError::Registry {
                reference: reference.to_string(),
                why,
            })
    }
}

impl Images {
    /// A file image: the bytes and digest read before if the file is unchanged since.
    fn read_file(&self, given: &str, path: &Path) -> Result<Image, ImageError> {
        let read_error = |source| ImageError::Read {
            reference: given.to_string(),
            path: path.to_path_buf(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        let stamp = FileStamp::of(&metadata);
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, image)) = files.get(path)
            && *seen == stamp
        {
            return Ok(Image {
                reference: given.to_string(),
                ..image.clone()
            });
        }
        drop(files);
        let size = metadata.len();
        if size > MAX_WASM_IMAGE_BYTES {
            return Err(ImageError::TooLarge {
                reference: given.to_string(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        let image = Image {
            reference: given.to_string(),
            digest: digest_of(&bytes),
            content: ImageContent::Wasm(bytes.into()),
        };
        // Changed while it was read: not remembered, so the next start reads it again.
        let unchanged = std::fs::metadata(path).is_ok_and(|m| FileStamp::of(&m) == stamp);
        if unchanged && image_bytes_len(&image) == size {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            if files.len() >= MAX_REMEMBERED_FILES {
                files.clear();
            }
            files.insert(path.to_path_buf(), (stamp, image.clone()));
        }
        Ok(image)
    }
}

fn image_bytes_len(image: &Image) -> u64 {
    match &image.content {
        ImageContent::Wasm(bytes) => bytes.len() as u64,
        ImageContent::Container { .. } => 0,
    }
}

/// The blobs (besides the manifest) an image needs.
fn blobs_of(kind: &ManifestKind) -> Vec<&Descriptor> {
    match kind {
        ManifestKind::Wasm { layer } => vec![layer],
        ManifestKind::Container { config, layers } => {
            std::iter::once(config).chain(layers).collect()
        }
    }
}

/// The index, if these manifest bytes are one.
fn parse_index(bytes: &[u8]) -> Option<media::Index> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    let is_index = media_type == media::OCI_INDEX
        || media_type == media::DOCKER_MANIFEST_LIST
        || (value.get("manifests").is_some() && value.get("layers").is_none());
    if !is_index {
        return None;
    }
    serde_json::from_value(value).ok()
}

fn classify(given: &str, manifest_bytes: &[u8]) -> Result<ManifestKind, ImageError> {
    let unsupported = |why: String| ImageError::Unsupported {
        reference: given.to_string(),
        why,
    };
    let manifest: media::Manifest = serde_json::from_slice(manifest_bytes).map_err(|e| {
        unsupported(format!(
            "the manifest is not an OCI or Docker image manifest: {e}"
        ))
    })?;
    media::classify(&manifest).map_err(unsupported)
}

/// `index.json` of an OCI image layout.
#[derive(serde::Deserialize)]
struct LayoutIndex {
    manifests: Vec<LayoutEntry>,
}

#[derive(serde::Deserialize)]
struct LayoutEntry {
    digest: String,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

impl LayoutEntry {
    fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get("org.opencontainers.image.ref.name")
            .map(String::as_str)
    }
}
