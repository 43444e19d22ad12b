//! Image references: what a container definition's `image` can name.
//!
//! - a Wasm file on this host: `app.wasm`, `./app`, `/abs/app.wasm`, `file:PATH`;
//! - an OCI image layout directory: `oci:DIR` or `oci:DIR:TAG`;
//! - an image in a registry, Docker-style: `[registry[:port]/]repo[:tag][@sha256:HEX]`, short
//!   names completed with the default registry (and `library/` on Docker Hub).

use std::fmt;
use std::path::{Path, PathBuf};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    File(PathBuf),
    Layout { dir: PathBuf, tag: Option<String> },
    Registry(RegistryRef),
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`: pins the manifest.
    pub digest: Option<String>,
}

impl RegistryRef {
    /// The tag to resolve when neither tag nor digest is given.
    pub const DEFAULT_TAG: &str = "latest";

    /// Whether the registry is on this machine (plain HTTP is allowed there).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
    }

    /// The same image, pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The reference as oci-client takes it.
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), Some(tag)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (Some(digest), None) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (None, tag) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| Self::DEFAULT_TAG.to_string()),
            ),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `reference` names a file on this host rather than a layout or registry image.
pub fn is_file_reference(reference: &str) -> bool {
    reference.starts_with("file:")
        || reference.ends_with(".wasm")
        || reference.starts_with('/')
        || reference.starts_with("./")
        || reference.starts_with("../")
}

/// Makes the file images of a task definition document absolute paths: relative ones
/// (`app.wasm`, `./x`, `file:x`) against `dir`, so the definition runs the same wherever the
/// server resolves it, and every one spelled one way (`/abs/x`, never `file:/abs/x`), so two
/// spellings of one file are not a change.
pub fn absolutize_file_images(document: &mut serde_json::Value, dir: &Path) {
    let Some(containers) = document["containerDefinitions"].as_array_mut() else {
        return;
    };
    for container in containers {
        let Some(image) = container["image"].as_str() else {
            continue;
        };
        if !is_file_reference(image) {
            continue;
        }
        let path = image.strip_prefix("file:").unwrap_or(image);
        let absolute = lexical(&dir.join(path)).display().to_string();
        container["image"] = serde_json::json!(absolute);
    }
}

/// `path` with its `.` and `..` components resolved as written (no symbolic links followed).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses `reference`, resolving relative paths against `base_dir` and short registry names
/// against `default_registry`. The error says what is wrong with it.
pub fn parse(reference: &str, base_dir: &Path, default_registry: &str) -> Result<ImageRef, String> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err("empty image reference".into());
    }
    if let Some(rest) = reference.strip_prefix("oci:") {
        return parse_layout(rest, base_dir);
    }
    if is_file_reference(reference) {
        let path = reference.strip_prefix("file:").unwrap_or(reference);
        return Ok(ImageRef::File(base_dir.join(path)));
    }
    parse_registry(reference, default_registry).map(ImageRef::Registry)
}

fn parse_layout(rest: &str, base_dir: &Path) -> Result<ImageRef, String> {
    // `oci:DIR:TAG`: the tag is what follows the last colon, if that part has no slash.
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag.to_string())),
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err("oci: needs a directory (oci:DIR or oci:DIR:TAG)".into());
    }
    Ok(ImageRef::Layout {
        dir: base_dir.join(dir),
        tag,
    })
}

fn parse_registry(reference: &str, default_registry: &str) -> Result<RegistryRef, String> {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(check_digest(digest)?)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&name[..at], Some(check_tag(&name[at + 1..])?))
        }
        None => (name, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (default_registry.to_string(), name.to_string()),
    };
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    check_repository(&repository)?;
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

fn check_digest(digest: &str) -> Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) =>
        {
            Ok(digest.to_string())
        }
        _ => Err(format!(
            "digest \"{digest}\" is not sha256: followed by 64 lowercase hex digits"
        )),
    }
}

fn check_tag(tag: &str) -> Result<String, String> {
    let valid = (1..=128).contains(&tag.len())
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(tag.to_string())
    } else {
        Err(format!("tag \"{tag}\" is not a valid tag"))
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && c.chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_alphanumeric())
            && c.chars()
                .last()
                .is_some_and(|ch| ch.is_ascii_alphanumeric())
    };
    if repository.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "repository \"{repository}\" must be lowercase letters, digits and separators (. _ -) \
             between slashes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_resolved_as_written() {
        assert_eq!(
            lexical(Path::new(
                "/repo/examples/stacks/../copilot/./../../guests/app.wasm"
            )),
            Path::new("/repo/guests/app.wasm")
        );
    }

    #[test]
    fn file_images_are_made_absolute_and_spelled_one_way() {
        let mut document = serde_json::json!({"containerDefinitions": [
            {"image": "app.wasm"}, {"image": "file:x"}, {"image": "./y.wasm"},
            {"image": "file:/abs/z.wasm"}, {"image": "/abs/z.wasm"}, {"image": "nginx:1"},
        ]});
        absolutize_file_images(&mut document, Path::new("/dir"));
        let images: Vec<&str> = document["containerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["image"].as_str().unwrap())
            .collect();
        assert_eq!(
            images,
            [
                "/dir/app.wasm",
                "/dir/x",
                "/dir/y.wasm",
                "/abs/z.wasm",
                "/abs/z.wasm",
                "nginx:1"
            ]
        );
    }

    fn registry(reference: &str) -> RegistryRef {
        match parse(reference, Path::new("/base"), "docker.io").unwrap() {
            ImageRef::Registry(r) => r,
            other => panic!("{reference}: {other:?}"),
        }
    }

    #[test]
    fn docker_style_references() {
        let r = registry("nginx");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", None)
        );
        let r = registry("127.0.0.1:5000/team/app:v1.2");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1.2"))
        );
        assert!(r.is_loopback());
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = registry(&format!("localhost:5000/app@{digest}"));
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (None, Some(digest.as_str()))
        );
        assert!(r.is_loopback());
        let r = registry("ghcr.io/org/app:1");
        assert!(!r.is_loopback());
        assert_eq!(r.to_string(), "ghcr.io/org/app:1");
    }

    #[test]
    fn layouts_and_files() {
        assert_eq!(
            parse("oci:layout:v1", Path::new("/base"), "docker.io").unwrap(),
            ImageRef::Layout {
                dir: PathBuf::from("/base/layout"),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse("oci:/abs/layout", Path::new("/base"), "docker.io").unwrap(),
            ImageRef::Layout {
                dir: PathBuf::from("/abs/layout"),
                tag: None
            }
        );
        assert_eq!(
            parse("app.wasm", Path::new("/base"), "docker.io").unwrap(),
            ImageRef::File(PathBuf::from("/base/app.wasm"))
        );
    }

    #[test]
    fn bad_references_say_why() {
        for (reference, why) in [
            ("Bad/Name", "must be lowercase"),
            ("app@sha256:xyz", "is not sha256: followed by 64"),
            ("app:-bad", "is not a valid tag"),
            ("", "empty image reference"),
        ] {
            let error = parse(reference, Path::new("/"), "docker.io").unwrap_err();
            assert!(error.contains(why), "{reference}: {error}");
        }
    }
}
