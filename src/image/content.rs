//! The local content store: blobs under `blobs/sha256/<hex>`, each verified against its digest
//! while it streams in and renamed into place only when whole and correct; and an index of the
//! images pulled (`images.json`), which `images`, `images rm` and `images prune` read.
//!
//! Architecture invariant: a file under `blobs/` always holds exactly the bytes its name says.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {expected} arrived with digest sha256:{actual}; nothing was kept")]
    DigestMismatch { expected: String, actual: String },
    #[error(
        "blob {digest} was {actual} bytes where the manifest says {expected}; nothing was kept"
    )]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("\"{0}\" is not a sha256 digest")]
    BadDigest(String),
    #[error("download of {digest} failed: {message}")]
    Download { digest: String, message: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// One image the store holds, as `wasmgate images` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The reference it was pulled by (canonical form).
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// `wasm` or `container`.
    pub kind: String,
    /// Bytes of its manifest, config and layers.
    pub size: u64,
    /// Every blob it needs: manifest, config, layers.
    pub blobs: Vec<String>,
    /// Seconds since the epoch.
    pub last_used: u64,
}

/// What `prune` freed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// The content-addressed store under one directory.
pub struct ContentStore {
    root: PathBuf,
    index: Mutex<()>,
    /// One lock per blob being fetched, so that concurrent pulls download it once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The hex part of a `sha256:` digest, checked.
fn hex_of(digest: &str) -> Result<&str, StoreError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(StoreError::BadDigest(digest.to_string())),
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in ["blobs/sha256", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(io(format!("cannot create {}", path.display())))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            index: Mutex::new(()),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(io(format!("cannot read blob {digest}")))
    }

    /// The lock to hold while fetching `digest`: whoever holds it fetches; whoever waited finds
    /// the blob present.
    pub fn fetch_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        fetching.entry(digest.to_string()).or_default().clone()
    }

    /// Stores `bytes` as `digest` after checking that they are.
    pub fn ingest_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = digest_of(bytes);
        if actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.trim_start_matches("sha256:").to_string(),
            });
        }
        let target = self.blob_path(digest)?;
        if target.is_file() {
            return Ok(());
        }
        let (tmp_path, mut file) = self.temp_file()?;
        let result = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(io(format!("cannot write blob {digest}")))
            .and_then(|()| {
                std::fs::rename(&tmp_path, &target)
                    .map_err(io(format!("cannot store blob {digest}")))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        result
    }

    /// Streams a blob in, hashing as it goes; keeps it only if its digest and size match.
    /// `progress` is told the bytes received so far.
    pub async fn ingest_stream<S, E>(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        mut stream: S,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let target = self.blob_path(digest)?;
        let (tmp_path, mut file) = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let outcome: Result<(), StoreError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| StoreError::Download {
                    digest: digest.to_string(),
                    message: e.to_string(),
                })?;
                received += chunk.len() as u64;
                if let Some(expected) = expected_size.filter(|e| received > *e) {
                    return Err(StoreError::SizeMismatch {
                        digest: digest.to_string(),
                        expected,
                        actual: received,
                    });
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .map_err(io(format!("cannot write blob {digest}")))?;
                progress(received);
            }
            if let Some(expected) = expected_size.filter(|e| received != *e) {
                return Err(StoreError::SizeMismatch {
                    digest: digest.to_string(),
                    expected,
                    actual: received,
                });
            }
            let actual = hex::encode(hasher.finalize());
            if Some(actual.as_str()) != digest.strip_prefix("sha256:") {
                return Err(StoreError::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                });
            }
            file.sync_all()
                .map_err(io(format!("cannot write blob {digest}")))?;
            std::fs::rename(&tmp_path, &target).map_err(io(format!("cannot store blob {digest}")))
        }
        .await;
        if outcome.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        outcome
    }

    fn temp_file(&self) -> Result<(PathBuf, std::fs::File), StoreError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{}", std::process::id(), now_secs()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(format!("cannot create {}", path.display())))?;
        Ok((path, file))
    }

    // ---- the image index ----

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Every image the store holds, newest use first.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut images = self.read_index()?;
        images.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then(a.reference.cmp(&b.reference))
        });
        Ok(images)
    }

    fn read_index(&self) -> Result<Vec<ImageRecord>, StoreError> {
        match std::fs::read(self.index_path()) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, "images.json is unreadable; starting an empty index");
                Vec::new()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io("cannot read images.json")(e)),
        }
    }

    fn write_index(&self, images: &[ImageRecord]) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(images).unwrap_or_default();
        let (tmp_path, mut file) = self.temp_file()?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io("cannot write images.json"))?;
        std::fs::rename(&tmp_path, self.index_path()).map_err(io("cannot write images.json"))
    }

    /// Records (or refreshes) an image under its reference.
    pub fn record_image(&self, record: ImageRecord) -> Result<(), StoreError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut images = self.read_index()?;
        images.retain(|i| i.reference != record.reference);
        images.push(record);
        self.write_index(&images)
    }

    /// Forgets the images whose reference or digest is `reference`; returns how many. Blobs are
    /// freed by `prune`.
    pub fn remove_image(&self, reference: &str) -> Result<usize, StoreError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut images = self.read_index()?;
        let before = images.len();
        images.retain(|i| i.reference != reference && i.digest != reference);
        let removed = before - images.len();
        if removed > 0 {
            self.write_index(&images)?;
        }
        Ok(removed)
    }

    /// Deletes every blob that no recorded image needs, and leftover temporary files.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let _guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let needed: BTreeSet<String> = self
            .read_index()?
            .into_iter()
            .flat_map(|i| i.blobs)
            .filter_map(|d| d.strip_prefix("sha256:").map(str::to_string))
            .collect();
        let mut report = PruneReport::default();
        let dir = self.root.join("blobs/sha256");
        for entry in std::fs::read_dir(&dir)
            .map_err(io(format!("cannot list {}", dir.display())))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if needed.contains(&name) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or_default();
            if std::fs::remove_file(entry.path()).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_with_the_wrong_digest_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let claimed = digest_of(b"the real bytes");
        let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
            b"other bytes",
        ))]);
        let error = store
            .ingest_stream(&claimed, None, chunks, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error}"
        );
        assert!(!store.has_blob(&claimed));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        let good = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
            b"the real bytes",
        ))]);
        store
            .ingest_stream(&claimed, Some(14), good, |_| {})
            .await
            .unwrap();
        assert_eq!(store.read_blob(&claimed).unwrap(), b"the real bytes");
    }

    #[test]
    fn prune_keeps_what_recorded_images_need() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let kept = digest_of(b"kept");
        let orphan = digest_of(b"orphan");
        store.ingest_bytes(&kept, b"kept").unwrap();
        store.ingest_bytes(&orphan, b"orphan").unwrap();
        store
            .record_image(ImageRecord {
                reference: "r".into(),
                digest: kept.clone(),
                kind: "wasm".into(),
                size: 4,
                blobs: vec![kept.clone()],
                last_used: 1,
            })
            .unwrap();
        assert_eq!(
            store.prune().unwrap(),
            PruneReport {
                blobs_removed: 1,
                bytes_freed: 6
            }
        );
        assert!(store.has_blob(&kept) && !store.has_blob(&orphan));
        assert_eq!(store.remove_image("r").unwrap(), 1);
        store.prune().unwrap();
        assert!(!store.has_blob(&kept));
    }
}
