//! TLS configuration: trusted roots, client certificates, `tls_server_name`, explained certificate errors.
//!
//! Roots are the system's plus `tls-ca-file` (or `<certs_dir>/<host>.crt`, gitlab-runner's convention).
//! The server certificate is checked by [`ExplainingVerifier`], which wraps rustls's WebPKI verifier, checks
//! the chain against `tls_server_name` when one is set, and on failure carries a [`CertificateProblem`] out
//! of the handshake so the client can say what the certificate was issued for and which key fixes it.

use crate::client::ClientSettings;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a TLS file came from, so an error can name the setting to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOrigin {
    /// A `[[runners]]` key such as `tls-ca-file`.
    Key(&'static str),
    /// gitlab-runner's certificate directory convention (`<certs_dir>/<host>.crt`, `.auth.crt`, `.auth.key`).
    CertsDir,
}

impl fmt::Display for FileOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => write!(f, "`{key}`"),
            Self::CertsDir => f.write_str("the certificate directory's"),
        }
    }
}

/// A TLS setting that cannot be used. Raised when the client is built, before any request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    #[error(
        "cannot read {origin} file {path}: {error}. Fix: check that the file exists and that glrunner's user \
         can read it (`ls -l {path}`), or remove the setting from this [[runners]] entry",
        path = .path.display()
    )]
    Unreadable {
        origin: FileOrigin,
        path: PathBuf,
        error: String,
    },

    #[error(
        "{origin} file {path} holds no PEM {what}. Likely cause: the file is empty, in DER form, or a \
         different file. Fix: point the setting at a PEM file that starts with `-----BEGIN {marker}-----` \
         (convert DER with `{convert}`)",
        path = .path.display()
    )]
    NoPem {
        origin: FileOrigin,
        path: PathBuf,
        what: &'static str,
        marker: &'static str,
        convert: &'static str,
    },

    #[error(
        "{origin} file {path} is not valid PEM ({detail}). Fix: replace it with an intact PEM file; \
         `openssl x509 -in {path} -noout -text` shows whether a certificate file is readable",
        path = .path.display()
    )]
    BadPem {
        origin: FileOrigin,
        path: PathBuf,
        detail: String,
    },

    #[error(
        "{origin} file {path} contains a certificate that cannot be used as a trusted CA ({detail}). Fix: \
         put the PEM certificate of the CA that issued GitLab's certificate in this file",
        path = .path.display()
    )]
    BadCaCertificate {
        origin: FileOrigin,
        path: PathBuf,
        detail: String,
    },

    #[error(
        "the client certificate {cert} and key {key} cannot be used ({detail}). Likely cause: the key does \
         not belong to the certificate, or its type is unsupported. Fix: make `tls-cert-file` and \
         `tls-key-file` a matching certificate and private key (PEM)",
        cert = .cert.display(),
        key = .key.display()
    )]
    ClientIdentity {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },

    #[error(
        "`{present}` is set but `{missing}` is not. Fix: set both `tls-cert-file` and `tls-key-file` in this \
         [[runners]] entry, or neither"
    )]
    HalfClientIdentity {
        present: &'static str,
        missing: &'static str,
    },

    #[error(
        "`tls_server_name = \"{name}\"` is not a valid DNS name or IP address. Fix: set it to the name on \
         GitLab's certificate, e.g. `tls_server_name = \"gitlab.example.com\"`"
    )]
    InvalidServerName { name: String },

    #[error("cannot set up TLS: {detail}")]
    Setup { detail: String },
}

/// What went wrong with a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblemKind {
    /// The chain does not end at a trusted CA (private or self-signed CA).
    UnknownIssuer,
    /// The certificate is not issued for the name it was checked against.
    NameMismatch,
    Expired,
    NotYetValid,
    Revoked,
    /// Anything else rustls rejected, in its words.
    Other(String),
}

/// A rejected server certificate, explained: the host, what the certificate says, and the fix.
#[derive(Debug, Clone)]
pub struct CertificateProblem {
    pub kind: CertificateProblemKind,
    /// The host in `url`: the one glrunner connected to.
    pub host: String,
    /// The name the certificate was checked against (`tls_server_name`, or the host).
    pub expected_name: String,
    /// The certificate's subject, e.g. `CN=gitlab.internal`.
    pub subject: String,
    /// The DNS names and IP addresses in its subjectAltName.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// When the check ran (for expiry messages).
    pub checked_at: SystemTime,
    /// The CA file in use, if any.
    pub ca_file: Option<PathBuf>,
    /// Where gitlab-runner's convention would look for this host's CA.
    pub certs_dir_ca: Option<PathBuf>,
    /// The configured `tls_server_name`, if any.
    pub tls_server_name: Option<String>,
    /// Whether the system offered any CA certificates.
    pub system_roots: bool,
}

impl CertificateProblem {
    /// The name to suggest for `tls_server_name`: the first DNS name, else the first name, else the CN.
    fn suggested_name(&self) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.parse::<std::net::IpAddr>().is_err())
            .or_else(|| self.names.first())
            .map(String::as_str)
            .or_else(|| {
                self.subject
                    .split(", ")
                    .find_map(|part| part.strip_prefix("CN="))
            })
    }

    fn seen(&self) -> String {
        let names = if self.names.is_empty() {
            "none".to_owned()
        } else {
            self.names.join(", ")
        };
        format!(
            "subject \"{}\", names: {}, issuer \"{}\"",
            self.subject, names, self.issuer
        )
    }
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        let seen = self.seen();
        match &self.kind {
            CertificateProblemKind::UnknownIssuer => {
                write!(
                    f,
                    "the TLS certificate of {host} is signed by an unknown authority ({seen}). Likely cause: \
                     GitLab uses a private or self-signed CA that glrunner does not trust"
                )?;
                match &self.ca_file {
                    Some(path) => write!(
                        f,
                        " (the CA file in use, {}, does not contain it)",
                        path.display()
                    )?,
                    None if !self.system_roots => {
                        f.write_str(" (this host has no system CA certificates)")?
                    }
                    None => {}
                }
                write!(
                    f,
                    ". Fix: set `tls-ca-file = \"/path/to/ca.pem\"` in this [[runners]] entry (the PEM of the CA \
                     that issued it, intermediates appended)"
                )?;
                if let Some(path) = &self.certs_dir_ca {
                    write!(f, ", or put the CA at `{}`", path.display())?;
                }
                Ok(())
            }
            CertificateProblemKind::NameMismatch => {
                let Some(name) = self.suggested_name() else {
                    return write!(
                        f,
                        "the TLS certificate of {host} names no host at all ({seen}). Fix: reissue it with a \
                         subjectAltName for {}",
                        self.expected_name
                    );
                };
                if self.names.is_empty() {
                    return write!(
                        f,
                        "the TLS certificate of {host} has no subjectAltName, only the legacy Common Name \
                         ({seen}), which TLS clients no longer accept. Fix: reissue the certificate with a \
                         subjectAltName for {}",
                        self.expected_name
                    );
                }
                match &self.tls_server_name {
                    Some(configured) => write!(
                        f,
                        "the TLS certificate of {host} does not match `tls_server_name = \"{configured}\"`: \
                         the certificate is for {} ({seen}). Fix: set `tls_server_name = \"{name}\"` in this \
                         [[runners]] entry",
                        self.names.join(", ")
                    ),
                    None => write!(
                        f,
                        "the TLS certificate does not match the host: certificate is for {}, you connected to \
                         {host} ({seen}). Likely cause: GitLab is reached by IP address or by another name than \
                         the one on its certificate. Fix: set `tls_server_name = \"{name}\"` in this [[runners]] \
                         entry or use a URL with that host",
                        self.names.join(", ")
                    ),
                }
            }
            CertificateProblemKind::Expired => write!(
                f,
                "the TLS certificate of {host} expired on {} (it is now {}; {seen}). Fix: renew the \
                 certificate or fix the clock",
                self.not_after,
                httpdate::fmt_http_date(self.checked_at)
            ),
            CertificateProblemKind::NotYetValid => write!(
                f,
                "the TLS certificate of {host} is not valid before {} (it is now {}; {seen}). Fix: renew the \
                 certificate or fix the clock",
                self.not_before,
                httpdate::fmt_http_date(self.checked_at)
            ),
            CertificateProblemKind::Revoked => write!(
                f,
                "the TLS certificate of {host} has been revoked ({seen}). Fix: install a new certificate on \
                 GitLab"
            ),
            CertificateProblemKind::Other(why) => write!(
                f,
                "the TLS certificate of {host} was rejected: {why} ({seen}). Fix: check the chain GitLab \
                 presents with `openssl s_client -connect {host}:443 -showcerts`"
            ),
        }
    }
}

impl StdError for CertificateProblem {}

/// What to say about a failed check: fixed per client.
#[derive(Debug, Clone, Default)]
struct Advice {
    ca_file: Option<PathBuf>,
    certs_dir_ca: Option<PathBuf>,
    tls_server_name: Option<String>,
    system_roots: bool,
}

/// Checks server certificates with rustls's WebPKI verifier, against `tls_server_name` when set, and turns
/// a rejection into a [`CertificateProblem`].
#[derive(Debug)]
pub struct ExplainingVerifier {
    /// `None` when there is no trusted root at all: every certificate is then an unknown issuer.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    server_name: Option<ServerName<'static>>,
    advice: Advice,
}

impl ExplainingVerifier {
    fn explain(
        &self,
        error: &CertificateError,
        end_entity: &CertificateDer<'_>,
        connected: &ServerName<'_>,
        expected: &ServerName<'_>,
        now: UnixTime,
    ) -> CertificateProblem {
        #[allow(deprecated)]
        let kind = match error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                CertificateProblemKind::UnknownIssuer
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertificateProblemKind::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateProblemKind::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateProblemKind::NotYetValid
            }
            CertificateError::Revoked => CertificateProblemKind::Revoked,
            other => CertificateProblemKind::Other(format!("{other:?}")),
        };
        let details = CertificateDetails::parse(end_entity);
        CertificateProblem {
            kind,
            host: connected.to_str().into_owned(),
            expected_name: expected.to_str().into_owned(),
            subject: details.subject,
            names: details.names,
            issuer: details.issuer,
            not_before: details.not_before,
            not_after: details.not_after,
            checked_at: SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs()),
            ca_file: self.advice.ca_file.clone(),
            certs_dir_ca: self.advice.certs_dir_ca.clone(),
            tls_server_name: self.advice.tls_server_name.clone(),
            system_roots: self.advice.system_roots,
        }
    }

    fn reject(problem: CertificateProblem) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(problem))))
    }
}

impl ServerCertVerifier for ExplainingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // SNI stays the URL's host; only the name the chain is checked against changes.
        let expected = self.server_name.as_ref().unwrap_or(server_name);
        let Some(webpki) = &self.webpki else {
            let problem = self.explain(
                &CertificateError::UnknownIssuer,
                end_entity,
                server_name,
                expected,
                now,
            );
            return Err(Self::reject(problem));
        };
        match webpki.verify_server_cert(end_entity, intermediates, expected, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(error)) => Err(Self::reject(self.explain(
                &error,
                end_entity,
                server_name,
                expected,
                now,
            ))),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The parts of a certificate an explanation shows.
struct CertificateDetails {
    subject: String,
    issuer: String,
    names: Vec<String>,
    not_before: String,
    not_after: String,
}

impl CertificateDetails {
    fn parse(der: &CertificateDer<'_>) -> Self {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            let unreadable = || "(unreadable certificate)".to_owned();
            return Self {
                subject: unreadable(),
                issuer: unreadable(),
                names: Vec::new(),
                not_before: unreadable(),
                not_after: unreadable(),
            };
        };
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let validity = cert.validity();
        Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_before: format_time(&validity.not_before),
            not_after: format_time(&validity.not_after),
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// An HTTP date when it can be one (1970..9999), else x509-parser's own rendering.
fn format_time(time: &x509_parser::time::ASN1Time) -> String {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    match u64::try_from(time.timestamp()) {
        Ok(secs) if time.timestamp() <= LAST_SECOND_OF_9999 => {
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        }
        _ => time.to_string(),
    }
}

/// The rustls client configuration for one GitLab host, and the CA file it trusts beyond the system roots.
pub struct TlsMaterial {
    pub config: rustls::ClientConfig,
    pub ca_file: Option<PathBuf>,
    /// Whether a client certificate is offered.
    pub client_certificate: bool,
}

/// Builds the client TLS configuration for `host` (the URL's host, used for `<certs_dir>/<host>.*`).
/// With `https == false` no file is read: the configuration is only there because the HTTP client needs
/// one.
pub fn client_config(
    settings: &ClientSettings,
    host: &str,
    https: bool,
) -> Result<TlsMaterial, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs_dir_file = |suffix: &str| {
        settings
            .certs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{host}{suffix}")))
    };

    let server_name = match &settings.tls_server_name {
        Some(name) => Some(
            ServerName::try_from(name.trim().to_owned())
                .map_err(|_| TlsSetupError::InvalidServerName { name: name.clone() })?,
        ),
        None => None,
    };

    let mut roots = RootCertStore::empty();
    let mut ca_file = None;
    let mut identity = None;
    let mut system_roots = false;
    if https {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "skipping an unreadable system CA certificate");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        system_roots = added > 0;

        let ca = match &settings.tls_ca_file {
            Some(path) => Some((path.clone(), FileOrigin::Key("tls-ca-file"))),
            None => certs_dir_file(".crt")
                .filter(|p| p.is_file())
                .map(|p| (p, FileOrigin::CertsDir)),
        };
        if let Some((path, origin)) = ca {
            for cert in read_certificates(&path, origin)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::BadCaCertificate {
                        origin,
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
            }
            ca_file = Some(path);
        }
        identity = client_identity(settings, &certs_dir_file)?;
    }

    let advice = Advice {
        ca_file: ca_file.clone(),
        certs_dir_ca: certs_dir_file(".crt"),
        tls_server_name: settings.tls_server_name.clone(),
        system_roots,
    };
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Setup {
                    detail: e.to_string(),
                })?,
        )
    };
    let verifier = Arc::new(ExplainingVerifier {
        webpki,
        algorithms: provider.signature_verification_algorithms,
        server_name,
        advice,
    });

    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Setup {
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let client_certificate = identity.is_some();
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|e| TlsSetupError::ClientIdentity {
                cert: identity.cert_path,
                key: identity.key_path,
                detail: e.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config,
        ca_file,
        client_certificate,
    })
}

struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn client_identity(
    settings: &ClientSettings,
    certs_dir_file: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Option<ClientIdentity>, TlsSetupError> {
    let (cert_path, key_path, cert_origin, key_origin) = match (
        &settings.tls_cert_file,
        &settings.tls_key_file,
    ) {
        (Some(cert), Some(key)) => (
            cert.clone(),
            key.clone(),
            FileOrigin::Key("tls-cert-file"),
            FileOrigin::Key("tls-key-file"),
        ),
        (Some(_), None) => {
            return Err(TlsSetupError::HalfClientIdentity {
                present: "tls-cert-file",
                missing: "tls-key-file",
            });
        }
        (None, Some(_)) => {
            return Err(TlsSetupError::HalfClientIdentity {
                present: "tls-key-file",
                missing: "tls-cert-file",
            });
        }
        (None, None) => {
            let (Some(cert), Some(key)) =
                (certs_dir_file(".auth.crt"), certs_dir_file(".auth.key"))
            else {
                return Ok(None);
            };
            match (cert.is_file(), key.is_file()) {
                (true, true) => (cert, key, FileOrigin::CertsDir, FileOrigin::CertsDir),
                (false, false) => return Ok(None),
                _ => {
                    tracing::warn!(
                        cert = %cert.display(),
                        key = %key.display(),
                        "only one of the client certificate and key exists in the certificate directory; \
                         no client certificate is sent (add the missing file to use one)"
                    );
                    return Ok(None);
                }
            }
        }
    };
    let chain = read_certificates(&cert_path, cert_origin)?;
    let key = read_private_key(&key_path, key_origin)?;
    Ok(Some(ClientIdentity {
        chain,
        key,
        cert_path,
        key_path,
    }))
}

const CERT_CONVERT: &str = "openssl x509 -inform der -in cert.der -out cert.pem";
const KEY_CONVERT: &str = "openssl pkey -inform der -in key.der -out key.pem";

fn unreadable(origin: FileOrigin, path: &Path, error: &std::io::Error) -> TlsSetupError {
    TlsSetupError::Unreadable {
        origin,
        path: path.to_owned(),
        error: error.to_string(),
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(
    path: &Path,
    origin: FileOrigin,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bad = |error: pem::Error| match error {
        pem::Error::Io(e) => unreadable(origin, path, &e),
        other => TlsSetupError::BadPem {
            origin,
            path: path.to_owned(),
            detail: other.to_string(),
        },
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoPem {
            origin,
            path: path.to_owned(),
            what: "certificate",
            marker: "CERTIFICATE",
            convert: CERT_CONVERT,
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file. Parser details are not shown: they could quote key material.
fn read_private_key(
    path: &Path,
    origin: FileOrigin,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| match error {
        pem::Error::Io(e) => unreadable(origin, path, &e),
        pem::Error::NoItemsFound => TlsSetupError::NoPem {
            origin,
            path: path.to_owned(),
            what: "private key",
            marker: "PRIVATE KEY",
            convert: KEY_CONVERT,
        },
        _ => TlsSetupError::BadPem {
            origin,
            path: path.to_owned(),
            detail: "not a readable PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
        },
    })
}

/// The first rustls error in an error's source chain.
pub fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    crate::error::error_sources(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
}

/// The [`CertificateProblem`] an [`ExplainingVerifier`] raised, found in an error's source chain.
pub fn find_certificate_problem<'a>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a CertificateProblem> {
    match find_rustls_error(error)? {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<CertificateProblem>()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: CertificateProblemKind) -> CertificateProblem {
        CertificateProblem {
            kind,
            host: "10.0.0.5".into(),
            expected_name: "10.0.0.5".into(),
            subject: "CN=gitlab.internal".into(),
            names: vec!["gitlab.internal".into(), "10.9.9.9".into()],
            issuer: "CN=Acme Root CA".into(),
            not_before: "Wed, 01 Jan 2020 00:00:00 GMT".into(),
            not_after: "Thu, 01 Jan 2021 00:00:00 GMT".into(),
            checked_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ca_file: None,
            certs_dir_ca: Some(PathBuf::from("/etc/gitlab-runner/certs/10.0.0.5.crt")),
            tls_server_name: None,
            system_roots: true,
        }
    }

    #[test]
    fn explanations_name_the_certificate_and_the_fix() {
        let text = problem(CertificateProblemKind::UnknownIssuer).to_string();
        for part in [
            "10.0.0.5",
            "CN=Acme Root CA",
            "tls-ca-file",
            "/etc/gitlab-runner/certs/10.0.0.5.crt",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }

        let text = problem(CertificateProblemKind::NameMismatch).to_string();
        assert!(
            text.contains(
                "certificate is for gitlab.internal, 10.9.9.9, you connected to 10.0.0.5"
            ),
            "{text}"
        );
        assert!(
            text.contains("tls_server_name = \"gitlab.internal\""),
            "{text}"
        );

        let mut configured = problem(CertificateProblemKind::NameMismatch);
        configured.tls_server_name = Some("gitlab.example".into());
        let text = configured.to_string();
        assert!(
            text.contains("does not match `tls_server_name = \"gitlab.example\"`"),
            "{text}"
        );

        let mut cn_only = problem(CertificateProblemKind::NameMismatch);
        cn_only.names.clear();
        assert!(
            cn_only.to_string().contains("no subjectAltName"),
            "{cn_only}"
        );

        let text = problem(CertificateProblemKind::Expired).to_string();
        assert!(
            text.contains("expired on Thu, 01 Jan 2021 00:00:00 GMT"),
            "{text}"
        );
        assert!(
            text.contains("renew the certificate or fix the clock"),
            "{text}"
        );
        assert!(text.contains("Tue, 14 Nov 2023"), "{text}");
    }

    #[test]
    fn finds_the_problem_inside_io_errors() {
        let rejected = ExplainingVerifier::reject(problem(CertificateProblemKind::Revoked));
        let io = std::io::Error::other(rejected);
        let found = find_certificate_problem(&io).expect("problem found through io::Error");
        assert_eq!(found.kind, CertificateProblemKind::Revoked);
        assert!(find_certificate_problem(&std::io::Error::other("plain")).is_none());
    }
}
