//! Images: from the `image` of a container definition to the bytes a capacity prepares.
//!
//! Today an image is a Wasm file on this host: `path/to/app.wasm`, `./app.wasm`, `/abs/app.wasm`
//! or `file:PATH`, relative paths resolved against the task definition's directory. OCI
//! registries and `oci:` layouts come with the images issue and will slot in here.
//!
//! Architecture invariant: this module decides what an image *is*; it never runs anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most bytes a Wasm image may have; larger files are refused before they are read whole.
pub const MAX_WASM_IMAGE_BYTES: u64 = 256 << 20;

/// Why an image reference could not be turned into bytes. Displayed after
/// `CannotPullContainerError: `.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{reference}: cannot read {}: {source}", path.display())]
    Read {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{reference}: {} is {size} bytes, more than the {MAX_WASM_IMAGE_BYTES}-byte limit for a Wasm image", path.display())]
    TooLarge {
        reference: String,
        path: PathBuf,
        size: u64,
    },
    #[error(
        "{reference}: pulling from an OCI registry is not available yet; name a .wasm file \
         (a path ending in .wasm, or file:PATH)"
    )]
    RegistryNotSupported { reference: String },
}

/// An image's bytes and where they came from.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub reference: String,
    pub path: PathBuf,
    pub bytes: Arc<[u8]>,
}

/// Whether `reference` names a file on this host rather than a registry image.
pub fn is_local_reference(reference: &str) -> bool {
    reference.starts_with("file:")
        || reference.ends_with(".wasm")
        || reference.starts_with('/')
        || reference.starts_with("./")
        || reference.starts_with("../")
}

/// Reads the image named by `reference`, resolving relative paths against `base_dir`.
pub fn resolve(reference: &str, base_dir: &Path) -> Result<ResolvedImage, ImageError> {
    if !is_local_reference(reference) {
        return Err(ImageError::RegistryNotSupported {
            reference: reference.to_string(),
        });
    }
    let relative = reference.strip_prefix("file:").unwrap_or(reference);
    let path = base_dir.join(relative);
    let read_error = |source| ImageError::Read {
        reference: reference.to_string(),
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read_error)?.len();
    if size > MAX_WASM_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            reference: reference.to_string(),
            path,
            size,
        });
    }
    let bytes = std::fs::read(&path).map_err(read_error)?;
    Ok(ResolvedImage {
        reference: reference.to_string(),
        path,
        bytes: bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_local_files_from_registry_references() {
        for local in ["app.wasm", "./app", "/srv/app", "../x.wasm", "file:app"] {
            assert!(is_local_reference(local), "{local}");
        }
        for remote in [
            "nginx",
            "ghcr.io/org/app:1",
            "localhost:5000/app@sha256:abc",
        ] {
            assert!(!is_local_reference(remote), "{remote}");
        }
    }

    #[test]
    fn a_missing_file_names_the_reference_and_the_path() {
        let error = resolve("missing.wasm", Path::new("/nonexistent-dir")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("missing.wasm: cannot read /nonexistent-dir/missing.wasm"),
            "{text}"
        );
    }
}
