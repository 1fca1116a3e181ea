//! register, verify and unregister in both workflows (catalogue T1, T5): what GitLab sees and what
//! happens to config.toml.

use crate::support::*;
use glrunner_coordinator::{Endpoint, RequestRecord, RunnerKind, RunnerSpec};
use glrunner_protocol::TokenKind;
use std::path::PathBuf;

fn base_config(url: &str, token: &str) -> String {
    format!(
        "# Shared runner host, edited by hand\n\
         concurrent = 2 # two jobs at a time\n\
         check_interval = 1\n\
         \n\
         [[runners]]\n\
         \x20 # the runner everyone uses\n\
         \x20 name = \"first\"\n\
         \x20 url = \"{url}\"\n\
         \x20 token = \"{token}\"\n\
         \x20 executor = \"shell\"\n"
    )
}

struct Setup {
    env: TestEnv,
    base: String,
}

impl Setup {
    async fn new() -> Self {
        let env = TestEnv::new().await;
        let base = base_config(env.gitlab.url(), env.token());
        std::fs::write(env.config_path(), &base).unwrap();
        Self { env, base }
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(self.env.config_path()).unwrap()
    }

    fn loaded(&self) -> glrunner_config::Config {
        glrunner_config::Config::load(self.env.config_path())
            .unwrap_or_else(|e| panic!("config.toml no longer loads: {e}\n{}", self.config_text()))
            .config
    }

    /// `glrunner <command> -c <config> --state-dir <state> <args…>`.
    async fn glrunner(&self, command: &str, args: &[&str]) -> CommandResult {
        let config: PathBuf = self.env.config_path();
        let state: PathBuf = self.env.state_dir();
        let mut all = vec![
            command,
            "-c",
            path_str(&config),
            "--state-dir",
            path_str(&state),
        ];
        all.extend_from_slice(args);
        run_command(self.env.dir.path(), &all).await
    }

    /// `glrunner register --non-interactive --url <GitLab> <token_flag> <token> --executor shell <args…>`.
    async fn register(&self, token_flag: &str, token: &str, args: &[&str]) -> CommandResult {
        let url = self.env.gitlab.url();
        let mut all = vec![
            "--non-interactive",
            "--url",
            url,
            token_flag,
            token,
            "--executor",
            "shell",
        ];
        all.extend_from_slice(args);
        self.glrunner("register", &all).await
    }

    /// Append a `[[runners]]` entry named `name` with `token` to the base config.toml; its new text.
    fn append_runner(&self, name: &str, token: &str) -> String {
        let mut text = self.base.clone();
        text.push_str(&format!(
            "\n[[runners]]\n  name = \"{name}\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"shell\"\n",
            self.env.gitlab.url(),
        ));
        std::fs::write(self.env.config_path(), &text).unwrap();
        text
    }

    fn requests(&self) -> Vec<RequestRecord> {
        self.env.gitlab.requests()
    }

    fn last_request(&self) -> RequestRecord {
        self.requests().pop().expect("a request")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_token_is_verified_appended_and_unregistered_as_a_manager() {
    let s = Setup::new().await;
    let url = s.env.gitlab.url().to_owned();
    let second = s
        .env
        .gitlab
        .add_runner(RunnerSpec::created().description("second"));
    let token = second.token.expose().to_owned();
    let out = s.register("--token", &token, &["--name", "x"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("new runner workflow"), "{}", out.output);
    assert!(
        !out.output.contains(&token),
        "token printed: {}",
        out.output
    );

    let requests = s.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].endpoint, Endpoint::VerifyRunner);
    assert_eq!(requests[0].status, Some(200));
    assert_eq!(requests[0].token_kind, Some("runner_authentication"));
    let system_id = read_system_id(&s.env.state_dir());
    let managers = s.env.gitlab.runner(second.id).unwrap().managers;
    assert!(
        managers.iter().any(|m| m.system_id == system_id),
        "{system_id} not among {managers:#?}"
    );

    // Appended: everything that was there stays byte for byte, comments included.
    let text = s.config_text();
    assert!(text.starts_with(&s.base), "{text}");
    let cfg = s.loaded();
    assert_eq!(cfg.runners.len(), 2);
    let x = &cfg.runners[1];
    assert_eq!(x.name, "x");
    assert_eq!(x.url, url);
    assert_eq!(x.executor, "shell");
    assert_eq!(x.token().map(|t| t.expose()), Some(token.as_str()));

    let out = s.glrunner("unregister", &["--name", "x"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    let last = s.last_request();
    assert_eq!(last.endpoint, Endpoint::DeleteManager, "{last:#?}");
    assert_eq!(last.status, Some(204));
    let runner = s
        .env
        .gitlab
        .runner(second.id)
        .expect("the runner stays in GitLab");
    assert!(runner.active_token);
    assert!(!runner.managers.iter().any(|m| m.system_id == system_id));
    assert_eq!(s.config_text().trim_end(), s.base.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_token_registers_saves_the_token_and_unregisters_the_runner() {
    let s = Setup::new().await;
    let registration = s.env.gitlab.add_registration_token();
    let reg = registration.expose().to_owned();
    let out = s
        .register(
            "--registration-token",
            &reg,
            &["--name", "legacy", "--tag-list", "linux,e2e"],
        )
        .await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("legacy workflow"), "{}", out.output);
    assert!(out.output.contains("deprecated"), "{}", out.output);
    assert!(!out.output.contains(&reg), "token printed: {}", out.output);
    let last = s.last_request();
    assert_eq!(last.endpoint, Endpoint::RegisterRunner);
    assert_eq!(last.status, Some(201));
    assert_eq!(last.token_kind, Some("registration"));
    let created = s
        .env
        .gitlab
        .runners()
        .into_iter()
        .find(|r| r.description == "legacy")
        .expect("GitLab created the runner");
    assert_eq!(created.kind, RunnerKind::Registered);
    assert_eq!(created.tags, ["linux", "e2e"]);

    let text = s.config_text();
    assert!(text.starts_with(&s.base), "{text}");
    let cfg = s.loaded();
    let saved = cfg.runners[1]
        .token()
        .expect("token saved")
        .expose()
        .to_owned();
    assert_eq!(
        TokenKind::classify(&saved),
        TokenKind::RegisteredRunnerAuthentication
    );
    assert_eq!(cfg.runners[1].id, Some(created.id));
    let out = s.glrunner("verify", &["--name", "legacy"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("legacy is valid"), "{}", out.output);

    let out = s.glrunner("unregister", &["--name", "legacy"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    let last = s.last_request();
    assert_eq!(last.endpoint, Endpoint::DeleteRunner, "{last:#?}");
    assert_eq!(last.status, Some(204));
    assert!(
        s.env.gitlab.runner(created.id).is_none(),
        "runner still in GitLab"
    );
    assert_eq!(s.config_text().trim_end(), s.base.trim_end());

    // GitLab 17+ refuses registration tokens: the refusal is explained, nothing is written.
    s.env.gitlab.set_registration_enabled(false);
    let out = s
        .register("--registration-token", &reg, &["--name", "refused"])
        .await;
    assert_ne!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("410 Gone"), "{}", out.output);
    assert!(out.output.contains("disabled"), "{}", out.output);
    assert!(out.output.contains("glrt-"), "the fix: {}", out.output);
    assert_eq!(s.config_text().trim_end(), s.base.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_flags_with_a_runner_token_are_refused_without_a_request() {
    let s = Setup::new().await;
    let token = s.env.token().to_owned();
    let out = s
        .register(
            "--token",
            &token,
            &["--tag-list", "linux", "--locked", "false"],
        )
        .await;
    assert_eq!(out.code(), Some(78), "{}", out.output);
    assert!(
        out.output.contains("--tag-list, --locked"),
        "{}",
        out.output
    );
    assert!(
        out.output
            .contains("cannot be used with a runner authentication token"),
        "{}",
        out.output
    );
    assert!(s.requests().is_empty(), "{:#?}", s.requests());
    assert_eq!(s.config_text(), s.base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_runner_and_delete_removes_only_the_revoked_one() {
    let s = Setup::new().await;
    let gone = s
        .env
        .gitlab
        .add_runner(RunnerSpec::created().description("gone"));
    let text = s.append_runner("gone", gone.token.expose());
    assert!(s.env.gitlab.revoke_runner(gone.token.expose()));

    let out = s.glrunner("verify", &[]).await;
    assert_eq!(out.code(), Some(1), "{}", out.output);
    assert!(out.output.contains("first is valid"), "{}", out.output);
    assert!(out.output.contains("gone is removed"), "{}", out.output);
    assert!(!out.output.contains(gone.token.expose()));
    assert_eq!(s.config_text(), text, "plain verify changed config.toml");
    let verifies: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::VerifyRunner)
        .map(|r| r.status)
        .collect();
    assert_eq!(verifies, [Some(200), Some(403)]);

    let out = s.glrunner("verify", &["--delete"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("Removed 1 runner"), "{}", out.output);
    assert_eq!(s.config_text().trim_end(), s.base.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_all_runners_uses_the_right_endpoint_for_each_token() {
    let s = Setup::new().await;
    let legacy = s
        .env
        .gitlab
        .add_runner(RunnerSpec::registered().description("registered"));
    s.append_runner("registered", legacy.token.expose());
    // verify makes this host a manager of both runners.
    let out = s.glrunner("verify", &[]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);

    let out = s.glrunner("unregister", &["--all-runners"]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    let deletes: Vec<(Endpoint, Option<u16>)> = s
        .requests()
        .into_iter()
        .filter(|r| matches!(r.endpoint, Endpoint::DeleteManager | Endpoint::DeleteRunner))
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        deletes,
        [
            (Endpoint::DeleteManager, Some(204)),
            (Endpoint::DeleteRunner, Some(204))
        ]
    );
    assert!(s.env.gitlab.runner(legacy.id).is_none());
    let first = s
        .env
        .gitlab
        .runner(s.env.runner.id)
        .expect("glrt- runner stays");
    assert!(first.managers.is_empty(), "{first:#?}");
    let left = s.config_text();
    assert!(
        left.starts_with("# Shared runner host, edited by hand\n"),
        "{left}"
    );
    assert!(s.loaded().runners.is_empty(), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_config_toml_on_a_fresh_host() {
    let env = TestEnv::new().await;
    let config = env.path("fresh/etc/config.toml");
    let state = env.state_dir();
    let url = env.gitlab.url().to_owned();
    let token = env.token().to_owned();
    let out = run_command(
        env.dir.path(),
        &[
            "register",
            "--non-interactive",
            "--url",
            &url,
            "--token",
            &token,
            "--executor",
            "shell",
            "--name",
            "fresh",
            "-c",
            path_str(&config),
            "--state-dir",
            path_str(&state),
        ],
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    let loaded = glrunner_config::Config::load(&config)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(loaded.runners.len(), 1);
    assert_eq!(loaded.runners[0].name, "fresh");

    // And the new entry runs jobs as it is.
    let mut gl = Glrunner::spawn(
        env.dir.path(),
        &[
            "run",
            "-c",
            path_str(&config),
            "--state-dir",
            path_str(&state),
        ],
        None,
    );
    let id = env
        .gitlab
        .enqueue(job(&["echo registered and running"]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(
        done.status,
        glrunner_coordinator::JobStatus::Success,
        "{}",
        done.trace_text()
    );
    gl.stop().await;
}
