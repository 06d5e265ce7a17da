//! TLS for the HTTP listener: rustls with the ring provider (no OpenSSL), the
//! certificate chain and key read from PEM files (`[http] tls_cert`, `tls_key`),
//! TLS 1.2 and 1.3, HTTP/1.1 by ALPN. The files are read at start (an error stops
//! the start) and again after each SIGHUP reload, so a renewed certificate is
//! served without a restart; a reload whose files cannot be read keeps the
//! previous certificate and logs why.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The acceptor for a certificate chain and key in PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor for an `[http]` table, if it configures TLS.
pub fn for_config(http: &super::config::HttpConfig) -> Result<Option<TlsAcceptor>, String> {
    match (&http.tls_cert, &http.tls_key) {
        (Some(c), Some(k)) => acceptor(c, k).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        assert!(acceptor(&c, &k).is_ok());
        let e = acceptor(&dir.path().join("none.pem"), &k).err().unwrap();
        assert!(e.contains("none.pem"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let e = acceptor(&dir.path().join("empty.pem"), &k).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
        // The key file holding a certificate: no key in it.
        let e = acceptor(&c, &c).err().unwrap();
        assert!(e.contains("cert.pem"), "{e}");
    }
}
