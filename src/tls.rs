//! TLS (rustls with the ring provider) for the API listener (`wasmgate server --tls-cert
//! --tls-key`: the ECS API and the agent protocol) and for its clients (`wasmgate agent --ca`,
//! the CLI with `WASMGATE_CA`), and the one `connect` both clients use for `http://` and
//! `https://` alike.
//!
//! Architecture invariant: certificates and keys are read once, at start; a bad file is an
//! error naming the file, never a panic.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("TLS settings: {0}")]
    Config(String),
    #[error("{0}: not a host name or address TLS can check")]
    ServerName(String),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, format!("not PEM certificates: {e:?}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no certificate"));
    }
    Ok(certs)
}

/// The server side: the certificate chain and key (PEM files).
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain = certificates(cert)?;
    let pem = std::fs::read(key).map_err(|e| file_error(key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| file_error(key, format!("not a PEM private key: {e:?}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| file_error(key, format!("does not fit the certificate: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The client side: trusts the certificates in `ca` (PEM), else the public web roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a client connects: `host:port`, and TLS settings when the URL was `https://`.
#[derive(Clone)]
pub struct Endpoint {
    pub authority: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// Parses `http://HOST[:PORT]` or `https://HOST[:PORT]` (no path); `https` trusts `ca`.
    pub fn parse(url: &str, ca: Option<&Path>) -> Result<Self, String> {
        let (rest, tls, port) = if let Some(rest) = url.strip_prefix("https://") {
            (rest, true, 443)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (rest, false, 80)
        } else {
            return Err(format!("{url}: must start with http:// or https://"));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{url}: expected http(s)://HOST:PORT"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:{port}")
        };
        let tls = if tls {
            Some(client_config(ca).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Self { authority, tls })
    }

    /// The URL again (`http://` or `https://` and the authority).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// Opens a connection (TCP, then the TLS handshake for `https`).
    pub async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await?;
        let _ = stream.set_nodelay(true);
        let Some(config) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            std::io::Error::other(TlsError::ServerName(host.to_string()).to_string())
        })?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let stream = connector.connect(name, stream).await?;
        Ok(Box::new(stream))
    }
}
