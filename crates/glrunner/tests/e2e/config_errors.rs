//! A config.toml glrunner cannot use: exit code 78, `config.toml:line:column`, the fix; keys it does not
//! know are reported once.

use crate::support::*;

async fn run_with(env: &TestEnv, text: &str) -> CommandResult {
    std::fs::write(env.config_path(), text).unwrap();
    let config = env.config_path();
    let state = env.state_dir();
    run_command(
        env.dir.path(),
        &[
            "run",
            "-c",
            path_str(&config),
            "--state-dir",
            path_str(&state),
        ],
    )
    .await
}

/// config.toml: `globals`, then the test runner's `[[runners]]` entry.
fn with_globals(env: &TestEnv, globals: &str) -> String {
    format!(
        "{globals}\n[[runners]]\n  name = \"e2e\"\n  url = \"{}\"\n  token = \"{}\"\n  executor = \"shell\"\n",
        env.gitlab.url(),
        env.token()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_names_line_and_column_and_exits_78() {
    let env = TestEnv::new().await;
    let text = with_globals(&env, "concurrent = 1\ncheck_interval = = 3\n");
    let out = run_with(&env, &text).await;
    assert_eq!(out.code(), Some(78), "{}", out.output);
    assert!(out.output.contains("config.toml:2:18"), "{}", out.output);
    assert!(out.output.contains("fix:"), "{}", out.output);
    assert!(env.gitlab.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_value_names_line_and_column_and_the_fix() {
    let env = TestEnv::new().await;
    let text = with_globals(&env, "# comment\nconcurrent = 0\n");
    let out = run_with(&env, &text).await;
    assert_eq!(out.code(), Some(78), "{}", out.output);
    assert!(out.output.contains("config.toml:2:14"), "{}", out.output);
    assert!(out.output.contains("concurrent"), "{}", out.output);
    assert!(out.output.contains("fix:"), "{}", out.output);
    assert!(!out.output.contains(env.token()), "{}", out.output);
    assert!(env.gitlab.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_reported_once() {
    let env = TestEnv::new().await;
    let cfg = env
        .config()
        .global("made_up_global_key = true")
        .runner_line("made_up_runner_key = \"x\"");
    let mut gl = env.start(&cfg);
    gl.wait_for_log("runner configured", WAIT).await;
    let id = env.gitlab.enqueue(job(&["echo still runs"])).unwrap();
    env.finished(&gl, id, WAIT).await;
    gl.stop().await;
    let log = gl.output();
    assert_eq!(log.matches("made_up_global_key").count(), 1, "{log}");
    assert_eq!(log.matches("made_up_runner_key").count(), 1, "{log}");
    assert!(log.contains("config.toml:"), "names the place: {log}");

    let config = env.config_path();
    let out = run_command(env.dir.path(), &["list", "-c", path_str(&config)]).await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert_eq!(
        out.output.matches("made_up_global_key").count(),
        1,
        "{}",
        out.output
    );
    assert!(out.output.contains("e2e"), "{}", out.output);
    assert!(
        !out.output.contains(env.token()),
        "list prints the token: {}",
        out.output
    );
}
