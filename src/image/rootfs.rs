//! A container image's root filesystem: its layers (tar, optionally gzip) applied in order into
//! a directory, with OCI whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq` empties a directory
//! of what lower layers put there).
//!
//! Architecture invariant: no entry lands outside the root. Paths are taken apart component by
//! component; `..` is refused; the directories an entry goes through are resolved inside the
//! root (an absolute symlink means the root's path, as it will inside the container), and a
//! symlink that climbs above the root is refused; nothing is ever written through a symlink
//! (an existing file, link or directory at the target is replaced, never opened); hard links
//! must name a regular file inside the root (an absolute one names the image's, as in Docker).
//! Devices and FIFOs are skipped: making one needs a privilege a task should not get from its
//! image, and a container's `/dev` is its own. Setuid and setgid bits are kept, as Docker
//! keeps them: the containers run with no new privileges.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// How deep symlinks may chain while resolving one path (as Linux's limit).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("layer {layer}: entry \"{entry}\": {why}")]
    Hostile {
        layer: String,
        entry: String,
        why: String,
    },
    #[error("layer {layer}: media type {media_type} is not supported (tar and tar+gzip are)")]
    Unsupported { layer: String, media_type: String },
    #[error("layer {layer}: {context}: {source}")]
    Io {
        layer: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// One layer to apply: its blob on disk, its digest and media type.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    pub digest: String,
    pub media_type: String,
}

/// Applies `layers` in order into `root` (which must exist and be empty).
pub fn unpack(layers: &[Layer], root: &Path) -> Result<(), RootfsError> {
    unpack_shifted(layers, root, 0)
}

/// [`unpack`], every owner and group id moved up by `id_shift` (as root): the tree a user
/// namespace that maps container id 0 to host id `id_shift` sees as the image's own.
pub fn unpack_shifted(layers: &[Layer], root: &Path, id_shift: u32) -> Result<(), RootfsError> {
    for layer in layers {
        apply_layer(layer, root, id_shift)?;
    }
    Ok(())
}

fn apply_layer(layer: &Layer, root: &Path, id_shift: u32) -> Result<(), RootfsError> {
    let io = |context: String| {
        let layer = layer.digest.clone();
        move |source| RootfsError::Io {
            layer,
            context,
            source,
        }
    };
    let file = File::open(&layer.path).map_err(io(format!("open {}", layer.path.display())))?;
    let media = layer.media_type.as_str();
    let reader: Box<dyn Read> = if media.ends_with("gzip") || media.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if media.ends_with(".tar") || media.ends_with("tar") {
        Box::new(file)
    } else {
        return Err(RootfsError::Unsupported {
            layer: layer.digest.clone(),
            media_type: layer.media_type.clone(),
        });
    };
    let mut archive = tar::Archive::new(reader);
    let mut created: HashSet<PathBuf> = HashSet::new();
    let entries = archive.entries().map_err(io("read the archive".into()))?;
    for entry in entries {
        let mut entry = entry.map_err(io("read an entry".into()))?;
        let raw = entry
            .path()
            .map_err(io("read an entry's path".into()))?
            .into_owned();
        let hostile = |why: String| RootfsError::Hostile {
            layer: layer.digest.clone(),
            entry: raw.display().to_string(),
            why,
        };
        let relative = clean(&raw).map_err(hostile)?;
        let Some(name) = relative.file_name().map(|n| n.to_owned()) else {
            continue; // the root itself
        };
        let parent_rel = relative.parent().unwrap_or(Path::new(""));
        let parent = resolve_dir(root, parent_rel).map_err(hostile)?;
        let name_text = name.to_string_lossy();
        // Whiteouts.
        if name_text == ".wh..wh..opq" {
            if let Ok(children) = std::fs::read_dir(&parent) {
                for child in children.flatten() {
                    let path = child.path();
                    if !created.contains(&path) {
                        remove_any(&path).map_err(io(format!("empty {}", parent.display())))?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name_text.strip_prefix(".wh.") {
            let target = parent.join(hidden);
            remove_any(&target).map_err(io(format!("whiteout {}", target.display())))?;
            continue;
        }
        let dest = parent.join(&name);
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644);
        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&dest) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove_any(&dest).map_err(io(format!("replace {}", dest.display())))?;
                        std::fs::create_dir(&dest)
                            .map_err(io(format!("mkdir {}", dest.display())))?;
                    }
                    Err(_) => std::fs::create_dir(&dest)
                        .map_err(io(format!("mkdir {}", dest.display())))?,
                }
                set_mode(&dest, mode);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&dest).map_err(io(format!("replace {}", dest.display())))?;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(io(format!("create {}", dest.display())))?;
                std::io::copy(&mut entry, &mut out)
                    .map_err(io(format!("write {}", dest.display())))?;
                set_mode(&dest, mode);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io("read a link target".into()))?
                    .ok_or_else(|| hostile("a symlink without a target".into()))?
                    .into_owned();
                remove_any(&dest).map_err(io(format!("replace {}", dest.display())))?;
                symlink(&target, &dest).map_err(io(format!("symlink {}", dest.display())))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io("read a link target".into()))?
                    .ok_or_else(|| hostile("a hard link without a target".into()))?
                    .into_owned();
                let target_rel = clean(&target).map_err(hostile)?;
                let target_parent = resolve_dir(root, target_rel.parent().unwrap_or(Path::new("")))
                    .map_err(hostile)?;
                let source = target_parent.join(target_rel.file_name().unwrap_or_default());
                let is_file = std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file());
                if !is_file {
                    return Err(hostile(format!(
                        "hard link to \"{}\", which is not a regular file inside the image",
                        target.display()
                    )));
                }
                remove_any(&dest).map_err(io(format!("replace {}", dest.display())))?;
                std::fs::hard_link(&source, &dest)
                    .map_err(io(format!("link {}", dest.display())))?;
            }
            // Devices and FIFOs need privileges a task should not get from its image.
            _ => continue,
        }
        if is_root() {
            let (uid, gid) = (
                (entry.header().uid().unwrap_or(0) as u32).saturating_add(id_shift),
                (entry.header().gid().unwrap_or(0) as u32).saturating_add(id_shift),
            );
            let _ = std::os::unix::fs::lchown(&dest, Some(uid), Some(gid));
            // chown clears setuid and setgid bits; they are the image's, kept as Docker
            // keeps them (no new privileges makes them inert in the container, and the
            // unpacked roots are root's alone on the host).
            if matches!(
                kind,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory
            ) {
                set_mode(&dest, mode);
            }
        }
        created.insert(dest);
    }
    Ok(())
}

/// An entry's path as plain components: leading `/` and `.` dropped, `..` refused.
fn clean(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err("its path climbs out of the image with \"..\"".into());
            }
        }
    }
    Ok(out)
}

/// The host directory that `relative` (a directory inside the image) names, following symlinks
/// as the container will see them: an absolute target starts again at the root, a relative one
/// from the link's directory; climbing above the root is refused. Missing directories are an
/// error (layers list parents first).
fn resolve_dir(root: &Path, relative: &Path) -> Result<PathBuf, String> {
    let mut current: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = relative
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_owned()),
            _ => None,
        })
        .collect();
    let mut followed = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if current.pop().is_none() {
                return Err("its path goes through a symlink that points outside the image".into());
            }
            continue;
        }
        let mut path = root.to_path_buf();
        path.extend(&current);
        path.push(&part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err("too many symlinks in its path".into());
                }
                let target = std::fs::read_link(&path).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    current.clear();
                }
                // Push the target's components, so they are resolved in turn.
                let mut parts: Vec<std::ffi::OsString> = Vec::new();
                for component in target.components() {
                    match component {
                        Component::Normal(p) => parts.push(p.to_owned()),
                        Component::ParentDir => parts.push("..".into()),
                        _ => {}
                    }
                }
                for p in parts.into_iter().rev() {
                    pending.push(p);
                }
            }
            Ok(meta) if meta.is_dir() => current.push(part),
            Ok(_) => return Err(format!("\"{}\" is not a directory", path.display())),
            Err(_) => {
                return Err(format!(
                    "its directory \"{}\" does not exist in the image",
                    relative.display()
                ));
            }
        }
    }
    let mut path = root.to_path_buf();
    path.extend(&current);
    Ok(path)
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn set_mode(path: &Path, mode: u32) {
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar layer from (path, kind) entries: kind "dir", "file:TEXT", "sym:TARGET", "link:TARGET".
    fn layer(dir: &Path, name: &str, entries: &[(&str, &str)]) -> Layer {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o755);
            // set_path refuses "..", so the raw name is written for hostile entries.
            let name_bytes = path.as_bytes();
            header.as_ustar_mut().unwrap().name[..name_bytes.len()].copy_from_slice(name_bytes);
            let data: &[u8] = if let Some(text) = kind.strip_prefix("file:") {
                header.set_entry_type(tar::EntryType::Regular);
                text.as_bytes()
            } else if let Some(target) = kind.strip_prefix("sym:") {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name(target).unwrap();
                b""
            } else if let Some(target) = kind.strip_prefix("link:") {
                header.set_entry_type(tar::EntryType::Link);
                header.set_link_name(target).unwrap();
                b""
            } else {
                header.set_entry_type(tar::EntryType::Directory);
                b""
            };
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        let path = dir.join(name);
        std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
        Layer {
            path,
            digest: format!("sha256:{name}"),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }

    #[test]
    fn applies_layers_with_whiteouts_and_in_root_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let base = layer(
            dir.path(),
            "base",
            &[
                ("usr", "dir"),
                ("usr/lib", "dir"),
                ("lib", "sym:usr/lib"),
                ("etc", "dir"),
                ("etc/a", "file:one"),
                ("etc/b", "file:two"),
                ("etc/c", "link:etc/a"),
                ("var", "dir"),
                ("var/old", "file:old"),
            ],
        );
        let top = layer(
            dir.path(),
            "top",
            &[
                ("etc/.wh.b", "file:"),
                ("lib/libx.so", "file:x"),
                ("var/new", "file:new"),
                ("var/.wh..wh..opq", "file:"),
                ("/abs/x", "dir"),
            ],
        );
        // `/abs/x` needs `abs`: absent, so the layer is refused... after the others applied.
        let error = unpack(&[base.clone(), top], &root).unwrap_err();
        assert!(
            error.to_string().contains("does not exist in the image"),
            "{error}"
        );
        let root = dir.path().join("root2");
        std::fs::create_dir(&root).unwrap();
        let top = layer(
            dir.path(),
            "top2",
            &[
                ("etc/.wh.b", "file:"),
                ("lib/libx.so", "file:x"),
                ("var/new", "file:new"),
                ("var/.wh..wh..opq", "file:"),
            ],
        );
        unpack(&[base, top], &root).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/a")).unwrap(), "one");
        assert!(!root.join("etc/b").exists());
        assert_eq!(std::fs::read_to_string(root.join("etc/c")).unwrap(), "one");
        // Written through the in-image symlink lib -> usr/lib.
        assert_eq!(
            std::fs::read_to_string(root.join("usr/lib/libx.so")).unwrap(),
            "x"
        );
        // The opaque marker emptied what the lower layer put in var, not this layer's file.
        assert!(!root.join("var/old").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("var/new")).unwrap(),
            "new"
        );
    }

    #[test]
    fn hostile_layers_are_refused_and_write_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // (name, entries, what the refusal says)
        type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                "dotdot",
                vec![("../outside/x", "file:pwned".into())],
                "climbs out",
            ),
            (
                "symlink-out",
                vec![
                    ("evil", "sym:../../outside".into()),
                    ("evil/x", "file:pwned".into()),
                ],
                "points outside the image",
            ),
            (
                "hardlink-out",
                vec![("h", format!("link:{}", "../outside/secret"))],
                "climbs out",
            ),
        ];
        for (name, entries, why) in cases {
            let root = dir.path().join(format!("root-{name}"));
            std::fs::create_dir(&root).unwrap();
            let entries: Vec<(&str, &str)> =
                entries.iter().map(|(p, k)| (*p, k.as_str())).collect();
            let bad = layer(dir.path(), name, &entries);
            let error = unpack(&[bad], &root).unwrap_err();
            assert!(error.to_string().contains(why), "{name}: {error}");
            assert!(
                std::fs::read_dir(&outside).unwrap().next().is_none(),
                "{name} wrote outside"
            );
        }
        // An absolute symlink is the image's own path, as inside the container.
        let root = dir.path().join("root-abs");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(root.join("tmp")).unwrap();
        let abs = layer(
            dir.path(),
            "abs",
            &[("evil", "sym:/tmp"), ("evil/x", "file:inside")],
        );
        unpack(&[abs], &root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("tmp/x")).unwrap(),
            "inside"
        );
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}
