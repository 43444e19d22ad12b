//! A real OCI registry (Debian's `docker-registry`) on a free loopback port, with an optional
//! htpasswd file; stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub addr: String,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants HTTP basic auth with these credentials.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.display()
        );
        if let Some((user, password)) = credentials {
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(output.status.success());
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, output.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wasmgate-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/setup.sh)");
        let registry = Self {
            addr,
            root,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.get("/v2/").is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not come up on {}",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// A plain HTTP GET; returns (status, body) or None if nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(&self.addr).ok()?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, response[split + 4..].to_vec()))
    }

    /// The file the registry keeps a blob's bytes in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Pushes a one-layer image manifest with the given (media type, bytes) config and layer.
    pub async fn push_raw_image(
        &self,
        name: &str,
        config: (&str, Vec<u8>),
        layer: (&str, Vec<u8>),
    ) {
        let client = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            ..Default::default()
        });
        let target: oci_client::Reference = format!("{}/{name}", self.addr).parse().unwrap();
        for (_, bytes) in [&config, &layer] {
            client
                .push_blob(&target, bytes.clone(), &sha256(bytes))
                .await
                .unwrap();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config.0, "digest": sha256(&config.1), "size": config.1.len()},
            "layers": [{"mediaType": layer.0, "digest": sha256(&layer.1), "size": layer.1.len()}]
        });
        let content_type =
            http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json");
        client
            .push_manifest_raw(
                &target,
                serde_json::to_vec(&manifest).unwrap(),
                content_type,
            )
            .await
            .unwrap();
    }
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    wasmgate::image::content::digest_of(bytes)
}
