//! The cluster's PKI: a self-signed CA, the serving certificate (127.0.0.1, localhost and the
//! in-cluster service names), client certificates (CN = user, O = groups) as kube-apiserver's x509
//! authenticator reads them, and the rustls server configuration that asks for them.

use crate::error::StartError;
use glrunner_protocol::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Groups a client certificate can carry (use a token identity for more).
pub const MAX_CERT_GROUPS: usize = 2;

/// A client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// The CA and serving certificate of one server.
pub struct Pki {
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    server_cert_pem: String,
    server_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> StartError {
    move |source| StartError::Certificate { what, source }
}

impl Pki {
    pub fn new() -> Result<Self, StartError> {
        let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "glrunner-apiserver-ca");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_err("CA"))?;

        let server_key = KeyPair::generate().map_err(pki_err("server key"))?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])
        .map_err(pki_err("server"))?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .map_err(pki_err("server"))?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_params,
            ca_key,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate for `user` in `groups` (at most [`MAX_CERT_GROUPS`]), signed by the
    /// cluster CA.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<ClientCertificate, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        // rcgen keeps one value per attribute type; the organizationName OID spelled as a custom
        // type is a second key, so a subject can carry two O attributes.
        let types = [
            DnType::OrganizationName,
            DnType::CustomDnType(vec![2, 5, 4, 10]),
        ];
        for (g, ty) in groups.iter().zip(types) {
            dn.push(ty, g.as_str());
        }
        dn.push(DnType::CommonName, user);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ClientCertificate {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }

    /// The TLS server configuration: our serving certificate, HTTP/1.1 only (watches and the
    /// websocket upgrades of exec/attach need it), client certificates requested and verified
    /// against the CA but optional (bearer tokens are the other way in).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, StartError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| StartError::Tls(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| StartError::Tls(e.to_string()))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| StartError::Tls(e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| StartError::Tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// User and groups of a verified client certificate: CN and every O.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((user, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let pki = Pki::new().expect("pki");
        let c = pki
            .issue_client("jane", &["dev".to_owned(), "ops".to_owned()])
            .expect("issue");
        let der = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).expect("pem");
        let (user, groups) = subject_of(&der).expect("subject");
        assert_eq!(user, "jane");
        assert_eq!(groups, vec!["dev", "ops"]);
    }
}
