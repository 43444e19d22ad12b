//! Talking to OCI registries through `oci-client`: credentials (explicit, or `auths` of
//! `~/.docker/config.json`), plain HTTP only for loopback and registries marked insecure,
//! manifests, blobs, pushes.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use super::reference::RegistryRef;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// `host[:port]` of registries reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials for every registry (from the CLI or the environment).
    pub username: Option<String>,
    pub password: Option<String>,
    /// A Docker config file to read `auths` from (default `~/.docker/config.json`).
    pub docker_config: Option<std::path::PathBuf>,
}

/// Clients for HTTPS and plain-HTTP registries, and the credentials for each registry. The
/// clients are made at their first use: building one loads the system's root certificates,
/// which a run of a local image never needs.
pub struct RegistryClient {
    https: std::sync::OnceLock<Client>,
    http: std::sync::OnceLock<Client>,
    insecure: Vec<String>,
    explicit: Option<(String, String)>,
    docker_auths: HashMap<String, (String, String)>,
}

impl RegistryClient {
    pub fn new(settings: &RegistrySettings) -> Self {
        let docker_config = settings.docker_config.clone().or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker/config.json"))
        });
        Self {
            https: std::sync::OnceLock::new(),
            http: std::sync::OnceLock::new(),
            insecure: settings.insecure.clone(),
            explicit: settings.username.clone().zip(settings.password.clone()),
            docker_auths: docker_config
                .map(|path| read_docker_auths(&path))
                .unwrap_or_default(),
        }
    }

    /// The client for this registry: plain HTTP for loopback and insecure ones.
    pub fn client_for(&self, image: &RegistryRef) -> &Client {
        let client = |protocol| {
            Client::new(ClientConfig {
                protocol,
                ..ClientConfig::default()
            })
        };
        if image.is_loopback() || self.insecure.contains(&image.registry) {
            self.http.get_or_init(|| client(ClientProtocol::Http))
        } else {
            self.https.get_or_init(|| client(ClientProtocol::Https))
        }
    }

    /// The credentials to present to this registry.
    pub fn auth_for(&self, image: &RegistryRef) -> RegistryAuth {
        if let Some((user, password)) = &self.explicit {
            return RegistryAuth::Basic(user.clone(), password.clone());
        }
        let keys = [
            image.registry.clone(),
            format!("https://{}", image.registry),
            format!("http://{}", image.registry),
        ];
        let docker_hub = image.registry == "docker.io";
        keys.iter()
            .find_map(|key| self.docker_auths.get(key))
            .or_else(|| {
                docker_hub
                    .then(|| self.docker_auths.get("https://index.docker.io/v1/"))
                    .flatten()
            })
            .map(|(user, password)| RegistryAuth::Basic(user.clone(), password.clone()))
            .unwrap_or(RegistryAuth::Anonymous)
    }
}

/// `auths` of a Docker config file: registry → (user, password). A missing or unreadable file
/// yields none.
fn read_docker_auths(path: &Path) -> HashMap<String, (String, String)> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    let Ok(config) = serde_json::from_slice::<Config>(&bytes) else {
        tracing::warn!(path = %path.display(), "ignoring an unreadable Docker config");
        return HashMap::new();
    };
    config
        .auths
        .into_iter()
        .filter_map(|(registry, entry)| {
            let pair = match (entry.username, entry.password, entry.auth) {
                (Some(user), Some(password), _) => (user, password),
                (_, _, Some(auth)) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()?;
                    let text = String::from_utf8(decoded).ok()?;
                    let (user, password) = text.split_once(':')?;
                    (user.to_string(), password.to_string())
                }
                _ => return None,
            };
            Some((registry, pair))
        })
        .collect()
}

/// A registry error in a user's words: the registry's own answer when it gave one.
pub fn describe(error: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match error {
        E::RegistryError { envelope, .. } => {
            let answers: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{} ({:?})", e.message, e.code))
                .collect();
            format!("the registry answered: {}", answers.join("; "))
        }
        E::AuthenticationFailure(why) => format!("authentication failed: {why}"),
        E::UnauthorizedError { url } => {
            format!("unauthorized: the registry refused the credentials for {url}")
        }
        E::ImageManifestNotFoundError(why) => format!("manifest not found: {why}"),
        other => with_causes(other),
    }
}

/// An error and its causes, `outer: inner: innermost`.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{encoded}"}}, "ghcr.io": {{"username": "bob", "password": "pw"}}}}}}"#),
        )
        .unwrap();
        let auths = read_docker_auths(&path);
        assert_eq!(
            auths["127.0.0.1:5000"],
            ("alice".to_string(), "s3cret".to_string())
        );
        assert_eq!(auths["ghcr.io"], ("bob".to_string(), "pw".to_string()));
        assert!(read_docker_auths(&dir.path().join("missing.json")).is_empty());
    }
}
