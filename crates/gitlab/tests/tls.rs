//! TLS against real TLS servers on 127.0.0.1: private CAs via `tls-ca-file` and the certificate directory,
//! `tls_server_name`, client certificates, and certificate errors that explain themselves.

mod support;

use glrunner_gitlab::tls::{CertificateProblemKind, TlsSetupError};
use glrunner_gitlab::{ApiError, ClientSettings, GitLabClient, VerifyReply};
use glrunner_protocol::Secret;
use glrunner_protocol::request::VerifyRunnerRequest;
use std::time::Duration;
use support::{Ca, Reply, Server, random_token, server_tls, write};

fn verify_request(token: &str) -> VerifyRunnerRequest {
    VerifyRunnerRequest {
        token: Secret::new(token),
        ..Default::default()
    }
}

async fn tls_server(ca: &Ca, names: &[&str]) -> Server {
    Server::https(server_tls(&ca.server_cert(names), None), |_, _| {
        Reply::status(200).body("200")
    })
    .await
}

#[tokio::test]
async fn private_ca_from_tls_ca_file() {
    let ca = Ca::new("glrunner test CA one");
    let server = tls_server(&ca, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &ca.cert_pem());
    let client = GitLabClient::new(ClientSettings {
        tls_ca_file: Some(ca_file.clone()),
        ..server.settings()
    })
    .expect("client");
    assert_eq!(
        client
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("verify"),
        VerifyReply::Valid(None)
    );
    assert_eq!(client.tls_ca_file(), Some(ca_file));
    assert_eq!(server.requests()[0].path, "/api/v4/runners/verify");
}

#[tokio::test]
async fn private_ca_from_the_certificate_directory() {
    let ca = Ca::new("glrunner test CA dir");
    let server = tls_server(&ca, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let host_file = write(dir.path(), "127.0.0.1.crt", &ca.cert_pem());
    let client = GitLabClient::new(ClientSettings {
        certs_dir: Some(dir.path().to_owned()),
        ..server.settings()
    })
    .expect("client");
    assert_eq!(
        client
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("verify"),
        VerifyReply::Valid(None)
    );
    assert_eq!(client.tls_ca_file(), Some(host_file));
}

#[tokio::test]
async fn unknown_ca_names_host_issuer_and_the_key_to_set() {
    let ca = Ca::new("Acme Private Root CA");
    let server = tls_server(&ca, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = random_token("glrt-");
    let client = GitLabClient::new(ClientSettings {
        certs_dir: Some(dir.path().to_owned()),
        ..server.settings()
    })
    .expect("client");
    let error = client
        .verify_runner(&verify_request(&token))
        .await
        .expect_err("unknown CA");
    let ApiError::Certificate { problem, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(problem.kind, CertificateProblemKind::UnknownIssuer);
    let text = error.to_string();
    let certs_dir_ca = dir.path().join("127.0.0.1.crt");
    for part in [
        "POST /api/v4/runners/verify",
        "127.0.0.1",
        "CN=Acme Private Root CA",
        "tls-ca-file",
        &certs_dir_ca.display().to_string(),
    ] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    assert!(
        !text.contains(&token) && !format!("{error:?}").contains(&token),
        "{error:?}"
    );
    assert!(
        server.requests().is_empty(),
        "nothing was sent over an untrusted connection"
    );
}

#[tokio::test]
async fn a_ca_file_without_the_issuer_says_so() {
    let ca = Ca::new("GitLab CA");
    let other = Ca::new("Some Other CA");
    let server = tls_server(&ca, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = write(dir.path(), "wrong.pem", &other.cert_pem());
    let client = GitLabClient::new(ClientSettings {
        tls_ca_file: Some(wrong.clone()),
        ..server.settings()
    })
    .expect("client");
    let text = client
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("wrong CA")
        .to_string();
    assert!(
        text.contains(&wrong.display().to_string()) && text.contains("does not contain it"),
        "{text}"
    );
}

#[tokio::test]
async fn name_mismatch_names_both_names_and_tls_server_name() {
    let ca = Ca::new("glrunner test CA names");
    let server = tls_server(&ca, &["gitlab.internal"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &ca.cert_pem());
    let settings = ClientSettings {
        tls_ca_file: Some(ca_file),
        ..server.settings()
    };

    let client = GitLabClient::new(settings.clone()).expect("client");
    let error = client
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("mismatch");
    let ApiError::Certificate { problem, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(problem.kind, CertificateProblemKind::NameMismatch);
    assert_eq!(problem.names, ["gitlab.internal"]);
    let text = error.to_string();
    assert!(
        text.contains("certificate is for gitlab.internal, you connected to 127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("tls_server_name = \"gitlab.internal\""),
        "{text}"
    );

    // The same server, verified against the name on its certificate.
    let client = GitLabClient::new(ClientSettings {
        tls_server_name: Some("gitlab.internal".into()),
        ..settings.clone()
    })
    .expect("client");
    assert_eq!(
        client
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("verify"),
        VerifyReply::Valid(None)
    );

    // A wrong override is explained against the override.
    let client = GitLabClient::new(ClientSettings {
        tls_server_name: Some("gitlab.other".into()),
        ..settings
    })
    .expect("client");
    let text = client
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("wrong override")
        .to_string();
    assert!(
        text.contains("does not match `tls_server_name = \"gitlab.other\"`"),
        "{text}"
    );
    assert!(
        text.contains("tls_server_name = \"gitlab.internal\""),
        "{text}"
    );
}

#[tokio::test]
async fn expired_certificate_gives_dates_and_the_fix() {
    let ca = Ca::new("glrunner test CA expiry");
    let leaf = ca.expired_server_cert(&["127.0.0.1"]);
    let server = Server::https(server_tls(&leaf, None), |_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &ca.cert_pem());
    let client = GitLabClient::new(ClientSettings {
        tls_ca_file: Some(ca_file),
        ..server.settings()
    })
    .expect("client");
    let error = client
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("expired");
    let text = error.to_string();
    assert!(
        text.contains("expired on Fri, 01 Jan 2021 00:00:00 GMT"),
        "{text}"
    );
    assert!(
        text.contains("renew the certificate or fix the clock"),
        "{text}"
    );
}

#[tokio::test]
async fn client_certificate_from_tls_cert_file_and_key_file() {
    let ca = Ca::new("glrunner test CA mtls");
    let server = Server::https(
        server_tls(&ca.server_cert(&["127.0.0.1"]), Some(&ca)),
        |_, _| Reply::status(200).body("200"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &ca.cert_pem());
    let client_leaf = ca.client_cert("runner-1");
    let cert = write(dir.path(), "client.pem", &client_leaf.cert_pem);
    let key = write(dir.path(), "client.key", &client_leaf.key_pem);
    let base = ClientSettings {
        tls_ca_file: Some(ca_file),
        ..server.settings()
    };

    let with_cert = GitLabClient::new(ClientSettings {
        tls_cert_file: Some(cert.clone()),
        tls_key_file: Some(key.clone()),
        ..base.clone()
    })
    .expect("client");
    assert_eq!(
        with_cert
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("verify"),
        VerifyReply::Valid(None)
    );
    assert_eq!(server.requests().len(), 1);

    // Without one the server refuses, and the error says which keys to set.
    let without = GitLabClient::new(base.clone()).expect("client");
    let error = without
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("no client certificate");
    let text = error.to_string();
    assert!(
        text.contains("tls-cert-file") && text.contains("tls-key-file"),
        "{error:?}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "no request got through without a client certificate"
    );

    // A client certificate from a CA the server does not trust is explained as such.
    let stranger = Ca::new("glrunner stranger CA").client_cert("runner-2");
    let foreign = GitLabClient::new(ClientSettings {
        tls_cert_file: Some(write(dir.path(), "foreign.pem", &stranger.cert_pem)),
        tls_key_file: Some(write(dir.path(), "foreign.key", &stranger.key_pem)),
        ..base.clone()
    })
    .expect("client");
    let text = foreign
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("untrusted client certificate")
        .to_string();
    assert!(
        text.contains("rejected glrunner's client certificate"),
        "{text}"
    );
    assert_eq!(server.requests().len(), 1);

    // The certificate directory's `<host>.auth.crt`/`.auth.key` work too.
    let certs = tempfile::tempdir().expect("tempdir");
    write(certs.path(), "127.0.0.1.crt", &ca.cert_pem());
    write(certs.path(), "127.0.0.1.auth.crt", &client_leaf.cert_pem);
    write(certs.path(), "127.0.0.1.auth.key", &client_leaf.key_pem);
    let from_dir = GitLabClient::new(ClientSettings {
        certs_dir: Some(certs.path().to_owned()),
        ..server.settings()
    })
    .expect("client");
    assert_eq!(
        from_dir
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("verify"),
        VerifyReply::Valid(None)
    );
}

#[tokio::test]
async fn unusable_tls_files_are_errors_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "https://gitlab.example.com/".to_owned();
    let settings = |f: &dyn Fn(&mut ClientSettings)| {
        let mut s = ClientSettings {
            url: url.clone(),
            ..Default::default()
        };
        f(&mut s);
        GitLabClient::new(s).expect_err("unusable TLS file")
    };

    let missing = dir.path().join("missing.pem");
    let error = settings(&|s| s.tls_ca_file = Some(missing.clone()));
    assert!(
        matches!(error, ApiError::Tls(TlsSetupError::Unreadable { .. })),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("`tls-ca-file`") && text.contains(&missing.display().to_string()),
        "{text}"
    );

    let garbage = write(dir.path(), "garbage.pem", "this is not a certificate\n");
    let text = settings(&|s| s.tls_ca_file = Some(garbage.clone())).to_string();
    assert!(
        text.contains("`tls-ca-file`")
            && text.contains("garbage.pem")
            && text.contains("no PEM certificate"),
        "{text}"
    );

    let broken = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n",
    );
    let text = settings(&|s| s.tls_ca_file = Some(broken.clone())).to_string();
    assert!(
        text.contains("broken.pem") && text.contains("not valid PEM"),
        "{text}"
    );

    let ca = Ca::new("glrunner test CA files");
    let leaf = ca.client_cert("runner");
    let cert = write(dir.path(), "client.pem", &leaf.cert_pem);
    let text = settings(&|s| s.tls_cert_file = Some(cert.clone())).to_string();
    assert!(
        text.contains("`tls-cert-file` is set but `tls-key-file` is not"),
        "{text}"
    );

    let not_a_key = write(dir.path(), "client.key", &leaf.cert_pem);
    let text = settings(&|s| {
        s.tls_cert_file = Some(cert.clone());
        s.tls_key_file = Some(not_a_key.clone());
    })
    .to_string();
    assert!(
        text.contains("`tls-key-file`")
            && text.contains("client.key")
            && text.contains("private key"),
        "{text}"
    );

    let other_key = write(dir.path(), "other.key", &ca.client_cert("other").key_pem);
    let text = settings(&|s| {
        s.tls_cert_file = Some(cert.clone());
        s.tls_key_file = Some(other_key.clone());
    })
    .to_string();
    assert!(
        text.contains("cannot be used") && text.contains("other.key"),
        "{text}"
    );

    let text = settings(&|s| s.tls_server_name = Some("not a name!".into())).to_string();
    assert!(text.contains("tls_server_name"), "{text}");
}

#[tokio::test]
async fn old_connections_are_not_reused_and_rotated_ca_files_are_read_again() {
    // Keep-alive: with the default age both requests share one connection; with age zero they do not.
    let server = Server::http(|_, _| Reply::status(204)).await;
    let req = glrunner_protocol::request::JobRequest {
        token: Secret::new("glrt-a"),
        ..Default::default()
    };
    let client = server.client();
    client.request_job(&req).await.expect("first");
    client.request_job(&req).await.expect("second");
    let young = GitLabClient::new(ClientSettings {
        connection_max_age: Some(Duration::ZERO),
        ..server.settings()
    })
    .expect("client");
    young.request_job(&req).await.expect("third");
    young.request_job(&req).await.expect("fourth");
    let peers: Vec<_> = server.requests().iter().map(|r| r.peer).collect();
    assert_eq!(peers[0], peers[1], "a fresh connection is reused");
    assert_ne!(
        peers[2], peers[3],
        "a connection older than connection_max_age is not reused"
    );

    // A CA file fixed on disk is picked up when the client is rebuilt.
    let ca = Ca::new("glrunner test CA rotation");
    let tls = tls_server(&ca, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &Ca::new("stale CA").cert_pem());
    let client = GitLabClient::new(ClientSettings {
        tls_ca_file: Some(ca_file.clone()),
        connection_max_age: Some(Duration::ZERO),
        ..tls.settings()
    })
    .expect("client");
    client
        .verify_runner(&verify_request("glrt-a"))
        .await
        .expect_err("stale CA");
    write(dir.path(), "ca.pem", &ca.cert_pem());
    assert_eq!(
        client
            .verify_runner(&verify_request("glrt-a"))
            .await
            .expect("rotated"),
        VerifyReply::Valid(None)
    );
}
