//! Every endpoint against a real HTTP server on 127.0.0.1: request shape (method, path, headers, body,
//! tokens) and how each status is mapped.

mod support;

use bytes::Bytes;
use glrunner_gitlab::{ApiError, ClientSettings, GitLabClient, JobRequestOutcome, VerifyReply};
use glrunner_protocol::request::{
    JobRequest, JobState, RegisterRunnerRequest, RemoteJobStatus, UpdateJobRequest,
    VerifyRunnerRequest,
};
use glrunner_protocol::{Secret, TokenKind};
use serde_json::json;
use std::time::Duration;
use support::{Reply, Server, random_token};

fn job_request(token: &str) -> JobRequest {
    JobRequest {
        token: Secret::new(token),
        system_id: Some("s_0123456789ab".into()),
        last_update: Some("a".repeat(32)),
        ..Default::default()
    }
}

fn assert_hex_request_id(value: Option<&str>) {
    let id = value.expect("X-Request-Id sent");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}

#[tokio::test]
async fn request_job_sends_gitlab_runners_shape_and_reads_204_cursor() {
    let server =
        Server::http(|_, _| Reply::status(204).header("X-GitLab-Last-Update", "f00dcafe")).await;
    // A configured `/ci/` suffix is stripped like gitlab-runner does.
    let client = GitLabClient::new(ClientSettings {
        url: format!("{}ci/", server.url()),
        ..server.settings()
    })
    .expect("client");
    let token = random_token("glrt-");
    let reply = client
        .request_job(&job_request(&token))
        .await
        .expect("request_job");

    assert!(
        matches!(reply.outcome, JobRequestOutcome::NoJob),
        "{reply:?}"
    );
    assert_eq!(reply.last_update.as_deref(), Some("f00dcafe"));
    assert!(!reply.saw_retriable);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/jobs/request")
    );
    assert_eq!(r.header("Runner-Token"), Some(token.as_str()));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Accept"), Some("application/json"));
    assert_eq!(
        r.header("User-Agent"),
        Some("glrunner-test 0.0.1 (linux/amd64)")
    );
    assert_hex_request_id(r.header("X-Request-Id"));
    assert!(r.query.is_none(), "no token or anything else in the URL");
    let body = r.json();
    assert_eq!(
        body["token"],
        token.as_str(),
        "token in the body as well as the header"
    );
    assert_eq!(body["system_id"], "s_0123456789ab");
    assert_eq!(body["last_update"], "a".repeat(32));
    assert!(body["info"]["features"].is_object());
}

#[tokio::test]
async fn request_job_decodes_a_201_job() {
    let payload = json!({
        "id": 8412, "token": "glcbt-64_jobtoken",
        "job_info": {"name": "rspec", "stage": "test", "project_id": 7},
        "steps": [{"name": "script", "script": ["echo hi"], "timeout": 3600, "when": "on_success"}],
        "variables": [{"key": "A", "value": "1", "public": true}],
        "artifacts": null, "image": null, "features": {"trace_sections": true},
        "a_field_from_the_future": {"x": 1}
    });
    let server = Server::http(move |_, _| Reply::json(201, payload.clone())).await;
    let reply = server
        .client()
        .request_job(&job_request("glrt-x"))
        .await
        .expect("request_job");
    let JobRequestOutcome::Job(job) = reply.outcome else {
        panic!("expected a job: {reply:?}")
    };
    assert_eq!(job.id, 8412);
    assert_eq!(job.token.expose(), "glcbt-64_jobtoken");
    assert_eq!(job.job_info.name, "rspec");
    assert_eq!(job.steps[0].script, ["echo hi"]);
    assert_eq!(job.variable("A"), Some("1"));
    assert!(reply.last_update.is_none(), "a 201 carries no cursor");
}

#[tokio::test]
async fn undecodable_201_keeps_the_job_id_and_token() {
    let server = Server::http(|_, index| {
        let body = match index {
            // `steps` must be a list: the payload does not decode, but id and token are readable.
            0 => r#"{"id": 77, "token": "glcbt-undecodable", "steps": "rm -rf /", "secret_var": "hunter2"}"#,
            // Even the id has an unexpected type here.
            1 => r#"{"id": "78", "token": "glcbt-second", "steps": {"a": 1}}"#,
            _ => "<html>proxy error</html>",
        };
        Reply::status(201).header("Content-Type", "application/json").body(body)
    })
    .await;
    let client = server.client();

    let reply = client
        .request_job(&job_request("glrt-x"))
        .await
        .expect("first");
    let JobRequestOutcome::UndecodableJob { identity, error } = reply.outcome else {
        panic!("expected UndecodableJob: {reply:?}")
    };
    assert_eq!(
        (identity.id, identity.token.expose()),
        (77, "glcbt-undecodable")
    );
    assert!(!error.is_empty());
    assert!(
        !error.contains("rm -rf"),
        "payload values are not quoted in the error: {error}"
    );

    let reply = client
        .request_job(&job_request("glrt-x"))
        .await
        .expect("second");
    let JobRequestOutcome::UndecodableJob { identity, .. } = reply.outcome else {
        panic!("expected UndecodableJob: {reply:?}")
    };
    assert_eq!((identity.id, identity.token.expose()), (78, "glcbt-second"));

    let error = client
        .request_job(&job_request("glrt-x"))
        .await
        .expect_err("no identity");
    assert!(
        matches!(error, ApiError::UndecodableJobIdentity { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("POST /api/v4/jobs/request"),
        "{error}"
    );
}

#[tokio::test]
async fn request_job_maps_403_409_and_other_statuses() {
    let server = Server::http(|_, index| match index {
        0 => Reply::json(403, json!({"message": "403 Forbidden"})),
        1 => Reply::json(409, json!({"message": "409 Conflict"})),
        _ => Reply::json(400, json!({"error": "token is missing"})),
    })
    .await;
    let client = server.client();
    let req = job_request("glrt-x");
    let outcome = |r: glrunner_gitlab::JobRequestReply| r.outcome;
    assert!(matches!(
        outcome(client.request_job(&req).await.expect("403")),
        JobRequestOutcome::Forbidden
    ));
    assert!(matches!(
        outcome(client.request_job(&req).await.expect("409")),
        JobRequestOutcome::Conflict
    ));
    match outcome(client.request_job(&req).await.expect("400")) {
        JobRequestOutcome::Unexpected { status: 400, body } => {
            assert!(body.contains("token is missing"), "{body}")
        }
        other => panic!("expected 400: {other:?}"),
    }
    assert_eq!(
        server.requests().len(),
        3,
        "none of these statuses is retried"
    );
}

#[tokio::test]
async fn update_job_sends_job_token_and_reads_status_headers() {
    let server = Server::http(|_, index| match index {
        0 => Reply::status(200)
            .header("Job-Status", "running")
            .body("200"),
        1 => Reply::status(202)
            .header("X-GitLab-Trace-Update-Interval", "5")
            .body("202"),
        2 => Reply::status(200).header("X-GitLab-Trace-Update-Interval", "86400"),
        _ => Reply::status(403).header("Job-Status", "canceled"),
    })
    .await;
    let client = server.client();
    let job_token = random_token("glcbt-");
    let req = UpdateJobRequest {
        token: Secret::new(job_token.clone()),
        state: JobState::Failed,
        failure_reason: Some("script_failure".into()),
        exit_code: Some(1),
        ..Default::default()
    };

    let reply = client.update_job(8412, &req).await.expect("200");
    assert_eq!(
        (reply.status, reply.job_status, reply.update_interval),
        (200, Some(RemoteJobStatus::Running), None)
    );
    let reply = client.update_job(8412, &req).await.expect("202");
    assert_eq!(
        (reply.status, reply.update_interval),
        (202, Some(Duration::from_secs(5)))
    );
    let reply = client.update_job(8412, &req).await.expect("capped");
    assert_eq!(
        reply.update_interval,
        Some(Duration::from_secs(15 * 60)),
        "interval capped at 15 min"
    );
    let reply = client.update_job(8412, &req).await.expect("403");
    assert_eq!(
        (reply.status, reply.job_status),
        (403, Some(RemoteJobStatus::Canceled))
    );

    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PUT", "/api/v4/jobs/8412")
    );
    assert_eq!(r.header("Job-Token"), Some(job_token.as_str()));
    assert!(r.header("Runner-Token").is_none());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_ne!(
        r.header("Accept"),
        Some("application/json"),
        "no JSON answer is expected from PUT"
    );
    let body = r.json();
    assert_eq!(body["token"], job_token.as_str());
    assert_eq!(
        (body["state"].as_str(), body["failure_reason"].as_str()),
        (Some("failed"), Some("script_failure"))
    );
    assert_eq!(body["exit_code"], 1);
}

#[tokio::test]
async fn patch_trace_sends_inclusive_content_range_and_debug_flag() {
    let server = Server::http(|r, _| {
        if r.query.as_deref() == Some("debug_trace=true") {
            Reply::status(202)
                .header("Range", "0-2048")
                .header("Job-Status", "canceling")
                .header("X-GitLab-Trace-Update-Interval", "60")
        } else {
            Reply::status(416).header("Range", "0-11")
        }
    })
    .await;
    let client = server.client();
    let token = Secret::new(random_token("glcbt-"));
    let chunk = Bytes::from(vec![b'x'; 1024]);

    let reply = client
        .patch_trace(8412, &token, 1024, chunk.clone(), true)
        .await
        .expect("patch");
    assert_eq!(reply.status, 202);
    assert_eq!(reply.range_end, Some(2048));
    assert_eq!(reply.job_status, Some(RemoteJobStatus::Canceling));
    assert_eq!(reply.update_interval, Some(Duration::from_secs(60)));

    let reply = client
        .patch_trace(8412, &token, 15, Bytes::from_static(b"hello"), false)
        .await
        .expect("416");
    assert_eq!((reply.status, reply.range_end), (416, Some(11)));

    let requests = server.requests();
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PATCH", "/api/v4/jobs/8412/trace")
    );
    assert_eq!(r.query.as_deref(), Some("debug_trace=true"));
    assert_eq!(
        r.header("Content-Range"),
        Some("1024-2047"),
        "inclusive end, no `bytes ` prefix"
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Job-Token"), Some(token.expose()));
    assert_eq!(r.body, chunk);
    assert_eq!(requests[1].query.as_deref(), Some("debug_trace=false"));
    assert_eq!(requests[1].header("Content-Range"), Some("15-19"));
}

#[tokio::test]
async fn register_maps_201_403_and_410() {
    let server = Server::http(|_, index| match index {
        0 => Reply::json(
            201,
            json!({"id": 12345, "token": "glrtr-newtoken", "token_expires_at": null}),
        ),
        1 => Reply::json(403, json!({"message": "403 Forbidden"})),
        _ => Reply::json(410, json!({"message": "runner registration disallowed"})),
    })
    .await;
    let client = server.client();
    let registration = random_token("GR1348941");
    let req = RegisterRunnerRequest {
        token: Secret::new(registration.clone()),
        description: "k8s runner".into(),
        tag_list: "k8s,linux".into(),
        run_untagged: true,
        ..Default::default()
    };

    let details = client.register_runner(&req).await.expect("201");
    assert_eq!(
        (details.id, details.token.expose()),
        (12345, "glrtr-newtoken")
    );
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/runners")
    );
    assert_eq!(r.header("Runner-Token"), Some(registration.as_str()));
    assert_eq!(r.header("Accept"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["token"], registration.as_str());
    assert_eq!(
        (body["description"].as_str(), body["tag_list"].as_str()),
        (Some("k8s runner"), Some("k8s,linux"))
    );

    let error = client.register_runner(&req).await.expect_err("403");
    assert!(
        matches!(
            error,
            ApiError::Forbidden {
                token_kind: TokenKind::Registration,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("POST /api/v4/runners") && text.contains("registration token"),
        "{text}"
    );

    let error = client.register_runner(&req).await.expect_err("410");
    assert!(
        matches!(error, ApiError::RegistrationDisabled { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("410") && text.contains("new workflow") && text.contains("glrt-"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_accepts_json_and_plain_text_200_and_maps_403() {
    let server = Server::http(|_, index| match index {
        0 => Reply::json(
            200,
            json!({"id": 9, "token": "glrt-same", "token_expires_at": "2030-01-01T00:00:00Z"}),
        ),
        1 => Reply::status(200)
            .header("Content-Type", "text/plain")
            .body("200"),
        2 => Reply::json(403, json!({"message": "403 Forbidden"})),
        _ => Reply::status(422).body("Runner is orphaned"),
    })
    .await;
    let client = server.client();
    let token = random_token("glrt-");
    let req = VerifyRunnerRequest {
        token: Secret::new(token.clone()),
        system_id: Some("s_0123456789ab".into()),
        ..Default::default()
    };

    match client.verify_runner(&req).await.expect("json") {
        VerifyReply::Valid(Some(details)) => {
            assert_eq!(details.id, 9);
            assert_eq!(
                details.token_expires_at.as_deref(),
                Some("2030-01-01T00:00:00Z")
            );
        }
        other => panic!("expected details: {other:?}"),
    }
    assert_eq!(
        client.verify_runner(&req).await.expect("text"),
        VerifyReply::Valid(None)
    );
    assert_eq!(
        client.verify_runner(&req).await.expect("403"),
        VerifyReply::Invalid
    );
    let error = client.verify_runner(&req).await.expect_err("422");
    assert_eq!(error.status(), Some(422));
    assert!(error.to_string().contains("Runner is orphaned"), "{error}");

    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/runners/verify")
    );
    assert_eq!(r.header("Runner-Token"), Some(token.as_str()));
    assert_eq!(r.json()["token"], token.as_str());
    assert_eq!(r.json()["system_id"], "s_0123456789ab");
}

#[tokio::test]
async fn unregister_and_reset_token() {
    let server = Server::http(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("DELETE", "/api/v4/runners") => Reply::status(204),
        ("DELETE", "/api/v4/runners/managers") if r.json()["system_id"] == "s_gone00000000" => {
            Reply::json(404, json!({"message": "404 Runner manager not found"}))
        }
        ("DELETE", "/api/v4/runners/managers") => Reply::status(204),
        ("POST", "/api/v4/runners/reset_authentication_token") => Reply::json(
            201,
            json!({"token": "glrt-rotated", "token_expires_at": null}),
        ),
        _ => Reply::status(404),
    })
    .await;
    let client = server.client();
    let token = Secret::new(random_token("glrt-"));

    client.unregister_runner(&token).await.expect("unregister");
    client
        .unregister_manager(&token, "s_0123456789ab")
        .await
        .expect("unregister manager");
    let error = client
        .unregister_manager(&token, "s_gone00000000")
        .await
        .expect_err("404");
    assert!(
        matches!(error, ApiError::ManagerNotFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("s_gone00000000"), "{error}");
    let rotated = client.reset_token(&token).await.expect("reset");
    assert_eq!(rotated.token.expose(), "glrt-rotated");

    let requests = server.requests();
    assert_eq!(requests[0].json(), json!({"token": token.expose()}));
    assert_eq!(requests[0].header("Runner-Token"), Some(token.expose()));
    assert_eq!(
        requests[1].json(),
        json!({"token": token.expose(), "system_id": "s_0123456789ab"})
    );
    assert_eq!(
        requests[3].path,
        "/api/v4/runners/reset_authentication_token"
    );
    assert_eq!(requests[3].json(), json!({"token": token.expose()}));
}

#[tokio::test]
async fn redirects_are_explained_not_followed() {
    let server = Server::http(|_, _| {
        Reply::status(301).header(
            "Location",
            "https://gitlab.example.com/api/v4/runners/verify",
        )
    })
    .await;
    let req = VerifyRunnerRequest {
        token: Secret::new("glrt-abc"),
        ..Default::default()
    };
    let error = server
        .client()
        .verify_runner(&req)
        .await
        .expect_err("redirect");
    let text = error.to_string();
    assert!(
        text.contains("redirected to https://gitlab.example.com/api/v4/runners/verify"),
        "{text}"
    );
    assert!(text.contains("set `url`"), "{text}");
    assert_eq!(
        server.requests().len(),
        1,
        "the redirect is not followed with the token"
    );
}

/// The token must not leak through any error or reply, even when GitLab echoes it back.
#[tokio::test]
async fn tokens_never_appear_in_errors() {
    // This server echoes the token it was sent, and the rest of the body, in every error answer.
    let server = Server::http(|r, _| {
        let token = r.json()["token"].as_str().unwrap_or_default().to_owned();
        let echo = format!(
            "token {token} rejected; request was {}",
            String::from_utf8_lossy(&r.body)
        );
        match r.path.as_str() {
            "/api/v4/runners/verify" => Reply::status(500).header("Retry-After", "0").body(echo),
            "/api/v4/jobs/request" => Reply::status(400).body(echo),
            "/api/v4/runners" => Reply::status(403).body(echo),
            _ => Reply::status(418).body(echo),
        }
    })
    .await;
    let client = server.client();
    let token = random_token("glrt-");
    let secret = Secret::new(token.clone());
    let refused = GitLabClient::new(ClientSettings {
        url: format!("http://{}/", support::closed_port().await),
        ..Default::default()
    })
    .expect("client");

    let mut rendered = Vec::new();
    let mut errors = vec![
        client
            .verify_runner(&VerifyRunnerRequest {
                token: secret.clone(),
                ..Default::default()
            })
            .await
            .expect_err("500"),
        client
            .register_runner(&RegisterRunnerRequest {
                token: secret.clone(),
                ..Default::default()
            })
            .await
            .expect_err("403"),
        client.reset_token(&secret).await.expect_err("418"),
        refused
            .unregister_runner(&secret)
            .await
            .expect_err("refused"),
    ];
    // A token that cannot be a header value still must not be echoed.
    errors.push(
        client
            .unregister_runner(&Secret::new(format!("{token}\n")))
            .await
            .expect_err("bad header"),
    );
    let reply = client
        .request_job(&job_request(&token))
        .await
        .expect("400 is an outcome");
    rendered.push(format!("{reply:?}"));
    for error in &errors {
        rendered.push(error.to_string());
        rendered.push(format!("{error:?}"));
    }
    for text in &rendered {
        assert!(!text.contains(&token), "token leaked: {text}");
        assert!(
            !text.contains(&token[5..20]),
            "part of the token leaked: {text}"
        );
    }
    // The echoed body is still shown, with the token masked.
    assert!(rendered[0].contains("[MASKED]"), "{}", rendered[0]);
    assert!(errors[0].to_string().contains("[MASKED]"), "{}", errors[0]);
}
