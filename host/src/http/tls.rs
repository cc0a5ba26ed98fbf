//! TLS served directly: `Host:Certificate` and `Host:PrivateKey` (PEM files), rustls with the
//! ring provider, TLS 1.2 and 1.3. The current configuration sits behind a lock that
//! [`Tls::reload`] swaps (the binary does on SIGHUP): new connections get the new certificate,
//! open ones keep the configuration they were accepted with.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a certificate or key can't be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} holds no usable PEM {expected} ({detail})", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
    #[error("the certificate {} and the private key {} don't go together or can't be used: {detail}", cert.display(), key.display())]
    Config {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// The TLS configuration of the public listener, reloadable.
pub struct Tls {
    certificate: PathBuf,
    private_key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("certificate", &self.certificate)
            .field("private_key", &self.private_key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate chain and key named by the settings; `None` when TLS is off.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Option<Arc<Self>>, TlsError> {
        match &settings.host.tls {
            Some(t) => Self::load(&t.certificate, &t.private_key).map(|t| Some(Arc::new(t))),
            None => Ok(None),
        }
    }

    /// Loads `certificate` (the chain, leaf first) and `private_key` (PKCS#8, PKCS#1 or SEC1).
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Self, TlsError> {
        let config = build(certificate, private_key)?;
        Ok(Self {
            certificate: certificate.to_path_buf(),
            private_key: private_key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on success new connections use them. On failure the old
    /// configuration stays in force and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.certificate, &self.private_key)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// The configuration for a connection accepted now.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn build(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let pem_err = |what, path: &Path, expected, detail: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        expected,
        detail,
    };
    let cert_pem = read("certificate", cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", cert_path, "CERTIFICATE", e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(
            "certificate",
            cert_path,
            "CERTIFICATE",
            "no CERTIFICATE section".into(),
        ));
    }
    let key_pem = read("private key", key_path)?;
    // The error of a key file never quotes the file.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let detail = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY section".to_owned(),
            _ => "malformed PEM".to_owned(),
        };
        pem_err("private key", key_path, "PRIVATE KEY", detail)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError::Config {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
    // hyper serves HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let e = Tls::load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("cannot read certificate") && e.contains("cert.pem"),
            "{e}"
        );
        std::fs::write(&cert, "not pem").expect("write");
        let e = Tls::load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE section"), "{e}");
    }
}
