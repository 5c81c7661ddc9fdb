//! TLS between nodes (and so on the node's whole listener): the server side that the accept
//! loop wraps connections in, and the client nodes use to dial each other.
//!
//! One listener serves clients and raft alike, so TLS is all or nothing per node: with
//! `--peer-tls-cert/-key/-ca` every connection is TLS (rustls, ring provider, TLS 1.2 and 1.3,
//! ALPN `http/1.1`), and peers are dialled with `https://`, trusting only the cluster's CA (not
//! the system roots). No client certificates: the signed envelope
//! (`parley_raft::envelope`) authenticates nodes; TLS adds confidentiality and the server's
//! identity. Certificates are read once at start; a bad file stops the node with its path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Where a node's TLS material is (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// This node's certificate chain (leaf first), naming the host of its advertised address.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA that signed every node's certificate: the only root peers are checked against.
    pub ca: PathBuf,
}

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} holds no usable PEM {1}: {2}")]
    Pem(PathBuf, &'static str, String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client: {0}")]
    Client(#[from] reqwest::Error),
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |e: rustls_pki_types::pem::Error| TlsError::Pem(path.to_owned(), "certificate", e.to_string());
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::Pem(path.to_owned(), "certificate", "none found".into()));
    }
    Ok(certs)
}

impl PeerTls {
    /// The acceptor the listener wraps every connection in.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let certs = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::Pem(self.key.clone(), "private key", e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// `builder` set to dial peers over TLS, trusting only the cluster's CA.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, TlsError> {
        let mut builder = builder.use_rustls_tls().tls_built_in_root_certs(false).https_only(true);
        for ca in certificates(&self.ca)? {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(ca.as_ref())?);
        }
        Ok(builder)
    }
}
