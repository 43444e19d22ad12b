//! The container tests' image: Debian's busybox-static in one gzip layer with its applets,
//! /tmp and /etc/passwd, pushed to a test registry.

use std::io::Write as _;

use serde_json::json;

use super::registry::{Registry, sha256};

const BUSYBOX: &str = "/bin/busybox";

/// A gzip tar layer: /bin/busybox with its applets, /tmp, /etc/passwd.
pub fn busybox_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        header.set_cksum();
        tar.append_data(&mut header, path, &[][..]).unwrap();
    };
    dir(&mut tar, "bin", 0o755);
    dir(&mut tar, "etc", 0o755);
    dir(&mut tar, "tmp", 0o1777);
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is installed (scripts/setup.sh)");
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(busybox.len() as u64);
    header.set_cksum();
    tar.append_data(&mut header, "bin/busybox", &busybox[..])
        .unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "true", "dd", "ls", "id", "yes", "head", "httpd", "wget",
        "mkdir", "seq", "stat", "test", "wc", "grep", "tr",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n";
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(passwd.len() as u64);
    header.set_cksum();
    tar.append_data(&mut header, "etc/passwd", &passwd[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    gzip.finish().unwrap()
}

/// Pushes the busybox image as `name` (Cmd: echo; Env: FROM_IMAGE=yes; WorkingDir /tmp).
pub async fn push_busybox(registry: &Registry, name: &str) {
    let layer = busybox_layer();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Cmd": ["echo", "hello from a container"],
            "Env": ["PATH=/bin", "FROM_IMAGE=yes"],
            "WorkingDir": "/tmp",
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    registry
        .push_raw_image(
            name,
            ("application/vnd.oci.image.config.v1+json", config),
            ("application/vnd.oci.image.layer.v1.tar+gzip", layer),
        )
        .await;
}

/// Writes the busybox image as an OCI image layout in `dir` (tag `latest`), for hosts that
/// reach no registry: `oci:DIR:latest`.
pub fn write_layout(dir: &std::path::Path) {
    write_image(
        dir,
        &[busybox_layer()],
        json!({"Cmd": ["true"], "Env": ["PATH=/bin"]}),
    );
}

/// Writes an OCI image layout in `dir` (tag `latest`) of `layers` (gzip tar, or plain tar
/// when it does not start with gzip's magic) and the image config's `config` object.
pub fn write_image(dir: &std::path::Path, layers: &[Vec<u8>], config: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let gzip = layer.starts_with(&[0x1f, 0x8b]);
        let (digest, size) = blob(layer);
        let media = if gzip {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        descriptors.push(json!({"mediaType": media, "digest": digest, "size": size}));
        diff_ids.push(sha256(layer));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = blob(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
}
