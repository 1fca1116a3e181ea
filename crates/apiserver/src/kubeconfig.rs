//! Client configuration for an identity: kubeconfig files (certificate or token users) that kubectl
//! and kube-rs both read, and the in-cluster service-account directory (`token`, `ca.crt`,
//! `namespace`) kube-rs's in-cluster config reads.

use crate::auth::{Credential, Identity};
use crate::error::IdentityError;
use base64::Engine as _;
use std::path::{Path, PathBuf};

/// The cluster entry's name in every kubeconfig written.
pub const CLUSTER_NAME: &str = "glrunner-apiserver";

/// A YAML double-quoted scalar (JSON string escaping is a subset YAML accepts).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig with one cluster, one user and one context (the current one).
pub fn render(
    server_url: &str,
    ca_pem: &str,
    identity: &Identity,
    context: &str,
    namespace: &str,
) -> String {
    let user_name = format!("{context}-user");
    let user = match &identity.credential {
        Credential::ClientCertificate(c) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            q(&b64(&c.cert_pem)),
            q(&b64(c.key_pem.expose()))
        ),
        Credential::Token(t) => format!("    token: {}\n", q(t.expose())),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user_name_q}\n  user:\n{user}contexts:\n- name: {ctx}\n  context:\n    cluster: {cluster}\n    user: {user_name_q}\n    namespace: {ns}\ncurrent-context: {ctx}\npreferences: {{}}\n",
        cluster = q(CLUSTER_NAME),
        server = q(server_url),
        ca = q(&b64(ca_pem)),
        user_name_q = q(&user_name),
        ctx = q(context),
        ns = q(namespace),
    )
}

/// Write `contents` readable by the owner only (it holds a key or a token).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), IdentityError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)
}

/// Lay out `dir` as a pod's `/var/run/secrets/kubernetes.io/serviceaccount`.
pub fn write_service_account_dir(
    dir: &Path,
    ca_pem: &str,
    identity: &Identity,
    namespace: &str,
) -> Result<PathBuf, IdentityError> {
    let Credential::Token(token) = &identity.credential else {
        return Err(IdentityError::NotAToken {
            user: identity.user.username.clone(),
        });
    };
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_private(&dir.join("token"), token.expose())?;
    write_private(&dir.join("ca.crt"), ca_pem)?;
    write_private(&dir.join("namespace"), namespace)?;
    Ok(dir.to_owned())
}
