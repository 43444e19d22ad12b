//! Wasm bytes → compiled code, with the compiled artifact cached on disk.
//!
//! The cache key is the sha256 of the Wasm bytes plus a hash of the engine's settings, so a
//! changed engine (other wasmtime, other flags) never loads an artifact it cannot run. Files are
//! written to a temporary name and renamed, so a crash never leaves a half artifact that looks
//! whole.
//!
//! Architecture invariant: only artifacts this process wrote under its own data directory are
//! deserialized; precompiled bytes arriving as an image are refused.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::capacity::CapacityError;

/// What the bytes are, told apart by the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module: WASI preview 1, entered through `_start`.
    CoreModule,
    /// A component: WASI preview 2, entered through `wasi:cli/run`.
    Component,
}

impl WasmKind {
    /// Tells a core module from a component by the preamble's version and layer fields.
    pub fn detect(bytes: &[u8]) -> Result<Self, CapacityError> {
        if Engine::detect_precompiled(bytes).is_some() {
            return Err(CapacityError::UnsupportedImage(
                "the image is precompiled wasmtime code (.cwasm); only Wasm binaries are \
                 accepted, since precompiled code cannot be verified"
                    .into(),
            ));
        }
        match bytes {
            [0x00, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00, ..] => Ok(Self::CoreModule),
            [0x00, b'a', b's', b'm', _, _, 0x01, 0x00, ..] => Ok(Self::Component),
            [0x00, b'a', b's', b'm', ..] => Err(CapacityError::UnsupportedImage(
                "the Wasm binary has an unknown version or layer".into(),
            )),
            _ => Err(CapacityError::UnsupportedImage(format!(
                "not a Wasm binary (starts with {:02x?})",
                &bytes[..bytes.len().min(8)]
            ))),
        }
    }

    pub fn os(self) -> &'static str {
        match self {
            Self::CoreModule => "wasip1",
            Self::Component => "wasip2",
        }
    }
}

/// Compiled code of either kind.
pub enum Compiled {
    Module(Module),
    Component(Component),
}

/// Whether `load_or_compile` compiled or found the artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Compiled,
    LoadedFromDisk,
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The on-disk cache of compiled artifacts.
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache under `dir`; `None` compiles every time (no data directory).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, digest: &str, kind: WasmKind) -> Option<PathBuf> {
        let suffix = match kind {
            WasmKind::CoreModule => "module",
            WasmKind::Component => "component",
        };
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.{suffix}.cwasm", self.engine_key)))
    }

    /// Loads the artifact for `digest` from disk, or compiles `bytes` and stores it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        kind: WasmKind,
        bytes: &[u8],
    ) -> Result<(Compiled, CacheOutcome), CapacityError> {
        let path = self.path_for(digest, kind);
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            match deserialize(engine, path, kind) {
                Ok(compiled) => return Ok((compiled, CacheOutcome::LoadedFromDisk)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unreadable artifact");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let compiled = compile(engine, kind, bytes)?;
        if let Some(path) = &path
            && let Err(error) = store_artifact(path, &compiled)
        {
            // The cache is an optimisation: a full disk must not fail the task.
            tracing::warn!(path = %path.display(), %error, "cannot cache compiled artifact");
        }
        Ok((compiled, CacheOutcome::Compiled))
    }
}

fn compile(engine: &Engine, kind: WasmKind, bytes: &[u8]) -> Result<Compiled, CapacityError> {
    let invalid = |e: wasmtime::Error| CapacityError::InvalidImage(format!("{e:#}"));
    Ok(match kind {
        WasmKind::CoreModule => {
            Compiled::Module(Module::from_binary(engine, bytes).map_err(invalid)?)
        }
        WasmKind::Component => {
            Compiled::Component(Component::from_binary(engine, bytes).map_err(invalid)?)
        }
    })
}

fn deserialize(engine: &Engine, path: &Path, kind: WasmKind) -> Result<Compiled, wasmtime::Error> {
    // SAFETY: the file was written by `store_artifact` from code this engine compiled, under
    // the data directory, and renamed into place whole; nothing else writes these names.
    unsafe {
        Ok(match kind {
            WasmKind::CoreModule => Compiled::Module(Module::deserialize_file(engine, path)?),
            WasmKind::Component => Compiled::Component(Component::deserialize_file(engine, path)?),
        })
    }
}

fn store_artifact(path: &Path, compiled: &Compiled) -> std::io::Result<()> {
    let bytes = match compiled {
        Compiled::Module(module) => module.serialize(),
        Compiled::Component(component) => component.serialize(),
    }
    .map_err(|e| std::io::Error::other(format!("{e}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(&bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

/// A uniquely named file to write before renaming into place.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let unique = format!(
        ".tmp-{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let path = dir.join(unique.replace(['(', ')'], ""));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_modules_from_components_and_refuses_the_rest() {
        let module = wat_bytes("(module)");
        assert_eq!(WasmKind::detect(&module).unwrap(), WasmKind::CoreModule);
        assert_eq!(
            WasmKind::detect(&wat_bytes("(component)")).unwrap(),
            WasmKind::Component
        );
        assert!(WasmKind::detect(b"#!/bin/sh\necho hi").is_err());
        assert!(WasmKind::detect(b"").is_err());
    }

    fn wat_bytes(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }
}
