//! Mutual TLS (RFC 8705): a client certificate and its key, presented on every HTTPS
//! connection a client opens — to the token endpoint (`tls_client_auth`,
//! `self_signed_tls_client_auth`) and to the APIs, so that certificate-bound tokens
//! (`cnf.x5t#S256`) are accepted there.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// A client certificate (with the chain that vouches for it) and its private key, read
/// from PEM and checked: the key must be the certificate's. Its `Debug` shows the
/// certificate's subject and SHA-256 thumbprint, never the key.
///
/// ```no_run
/// let cert = authcore::ClientCertificate::from_pem_files("client.pem", "client.key")?;
/// let options = authcore::Options::default().client_certificate(cert);
/// # let _ = options;
/// # Ok::<(), authcore::Error>(())
/// ```
///
/// The copies of the key authcore makes while reading it are wiped; the one the TLS
/// stack keeps for its handshakes lives as long as the last client using it.
#[derive(Clone)]
pub struct ClientCertificate {
    inner: Arc<Inner>,
}

struct Inner {
    /// What the HTTP agent presents.
    tls: ureq::tls::ClientCert,
    /// The subject of the leaf certificate, as RFC 4514 writes it.
    subject: String,
    /// `x5t#S256`: the base64url SHA-256 of the leaf certificate (RFC 8705 §3.1).
    thumbprint: String,
}

impl ClientCertificate {
    /// From PEM text: `certificate` holds the client certificate first and any
    /// intermediate certificates after it; `key` holds its private key (PKCS#8, PKCS#1
    /// or SEC1, unencrypted). One buffer holding both may be passed as each. A PEM that
    /// cannot be read, holds no certificate or no key, or a key that is not the
    /// certificate's, is a [`Config`](crate::ErrorKind::Config) error that never shows
    /// the key.
    pub fn from_pem(certificate: &[u8], key: &[u8]) -> Result<ClientCertificate> {
        let mut chain = Vec::new();
        for item in ureq::tls::parse_pem(certificate) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => chain.push(c),
                Ok(_) => {}
                Err(_) => return Err(Error::config("the client certificate is not valid PEM")),
            }
        }
        let Some(leaf) = chain.first() else {
            return Err(Error::config(
                "the client certificate PEM holds no certificate",
            ));
        };
        let subject = match x509_parser::parse_x509_certificate(leaf.der()) {
            Ok((_, parsed)) => parsed.subject().to_string(),
            Err(_) => {
                return Err(Error::config(
                    "the client certificate is not a valid X.509 certificate",
                ))
            }
        };
        let thumbprint = thumbprint_of(leaf.der());
        // Read twice: once as the TLS stack's own type, to check it; once as the agent's.
        // The parsers' messages could quote the key's bytes: never passed on.
        let mut der =
            match rustls::pki_types::PrivateKeyDer::from_pem_slice(key) {
                Ok(der) => der,
                Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(Error::config(
                    "the client key PEM holds no private key (PKCS#8, PKCS#1 or SEC1, unencrypted)",
                )),
                Err(_) => return Err(Error::config("the client key is not valid PEM")),
            };
        let checked = check_pair(&chain, &der, &subject);
        der.zeroize();
        checked?;
        let private_key = ureq::tls::PrivateKey::from_pem(key)
            .map_err(|_| Error::config("the client key is not valid PEM"))?;
        Ok(ClientCertificate {
            inner: Arc::new(Inner {
                tls: ureq::tls::ClientCert::new_with_certs(&chain, private_key),
                subject,
                thumbprint,
            }),
        })
    }

    /// From PEM files (see [`from_pem`](Self::from_pem)); the same file may be given
    /// twice when it holds both. A file that cannot be read is a
    /// [`Config`](crate::ErrorKind::Config) error naming it.
    pub fn from_pem_files(
        certificate: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ClientCertificate> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map(Zeroizing::new).map_err(|e| {
                Error::config(format!(
                    "the client {what} {} cannot be read: {}",
                    crate::assertion::shown_path(path),
                    e.kind()
                ))
            })
        };
        let cert = read(certificate.as_ref(), "certificate")?;
        let key = read(key.as_ref(), "key")?;
        Self::from_pem(&cert, &key)
    }

    /// The leaf certificate's subject distinguished name (RFC 4514 form, such as
    /// `CN=billing, O=Example`): what `tls_client_auth` servers match.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The leaf certificate's SHA-256 thumbprint, base64url without padding: the
    /// `x5t#S256` a certificate-bound token carries in its `cnf` claim (RFC 8705 §3.1).
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// What the HTTP agent presents.
    pub(crate) fn tls(&self) -> &ureq::tls::ClientCert {
        &self.inner.tls
    }
}

impl PartialEq for ClientCertificate {
    /// The same certificate (chain and key were checked to belong together).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.thumbprint == other.inner.thumbprint
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.inner.subject)
            .field("x5t#S256", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// `x5t#S256` of a certificate in DER.
pub(crate) fn thumbprint_of(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Checks that the TLS stack accepts the key and that it is the certificate's, as the
/// TLS stack would at the first handshake (where a failure could not be reported well).
fn check_pair(
    chain: &[ureq::tls::Certificate<'static>],
    key: &rustls::pki_types::PrivateKeyDer<'static>,
    subject: &str,
) -> Result<()> {
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> = chain
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| {
            Error::config("the client key cannot be used (a malformed or unsupported key)")
        })?;
    match rustls::sign::CertifiedKey::new(certs, signing).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(_) => Err(Error::config(format!(
            "the client key is not the key of the client certificate ({subject})"
        ))),
    }
}
