//! `$VAR` expansion in `url` and `token` at load, and tokens read from `token_file`.

use glrunner_config::{Config, ConfigError, WarningKind};
use std::path::Path;

fn env(name: &str) -> Option<String> {
    match name {
        "GITLAB_HOST" => Some("gitlab.example.com".to_owned()),
        "RUNNER_TOKEN" => Some("glrt-t1_FromTheEnvironment".to_owned()),
        "SENTRY_DSN" => Some("https://key@sentry.example.com/1".to_owned()),
        _ => None,
    }
}

fn parse_in(dir: &Path, text: &str) -> Result<glrunner_config::Loaded, ConfigError> {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    Config::load_with_env(&path, &env)
}

#[test]
fn url_and_token_are_expanded_like_os_expand_env() {
    let text = "[[runners]]\n  url = \"https://${GITLAB_HOST}/\"\n  token = \"$RUNNER_TOKEN\"\n  executor = \"shell\"\n  clone_url = \"https://$GITLAB_HOST\"\n";
    let l = Config::parse(Path::new("config.toml"), text, &env).unwrap();
    let r = &l.config.runners[0];
    assert_eq!(r.url, "https://gitlab.example.com/");
    assert_eq!(r.token().unwrap().expose(), "glrt-t1_FromTheEnvironment");
    // Only url and token are expanded, like gitlab-runner.
    assert_eq!(r.clone_url.as_deref(), Some("https://$GITLAB_HOST"));
    // SENTRY_DSN is the fallback for sentry_dsn.
    assert_eq!(
        l.config.sentry_dsn.as_ref().unwrap().expose(),
        "https://key@sentry.example.com/1"
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn undefined_variables_expand_to_empty_and_are_reported() {
    let text = "[[runners]]\n  url = \"https://gitlab.example.com\"\n  token = \"${MISSING_TOKEN}\"\n  executor = \"shell\"\n";
    let l = Config::parse(Path::new("config.toml"), text, &env).unwrap();
    let r = &l.config.runners[0];
    assert!(r.token().is_none());
    let w = &l.warnings[0];
    assert_eq!(
        (w.key.as_str(), w.line, w.column, w.kind),
        ("runners[0].token", 3, 3, WarningKind::Other)
    );
    assert!(
        w.message.contains("$MISSING_TOKEN which is not set"),
        "{}",
        w.message
    );

    // A URL that expands to nothing is an error naming the variable.
    let text = "[[runners]]\n  url = \"$MISSING_URL\"\n  executor = \"shell\"\n";
    let e = Config::parse(Path::new("config.toml"), text, &env).unwrap_err();
    let loc = e.location().unwrap();
    assert_eq!((loc.line, loc.column), (2, 9));
    assert!(
        e.to_string()
            .contains("`url` is empty after expanding $MISSING_URL"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("set MISSING_URL in glrunner's environment"),
        "{e}"
    );
}

#[test]
fn token_file_is_read_and_trimmed_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/token"),
        "  glrt-t3_MountedSecretToken\n\n",
    )
    .unwrap();
    let l = parse_in(
        dir.path(),
        "[[runners]]\n  name = \"k\"\n  url = \"https://gitlab.example.com\"\n  token_file = \"secrets/token\"\n  executor = \"kubernetes\"\n",
    )
    .unwrap();
    let r = &l.config.runners[0];
    assert_eq!(r.token().unwrap().expose(), "glrt-t3_MountedSecretToken");
    assert!(r.token_from_file());
    assert_eq!(
        r.token_file.as_deref(),
        Some(dir.path().join("secrets/token").as_path())
    );

    // An empty `token = ""` next to token_file counts as unset.
    let l = parse_in(
        dir.path(),
        "[[runners]]\n  url = \"https://gitlab.example.com\"\n  token = \"\"\n  token_file = \"secrets/token\"\n  executor = \"shell\"\n",
    )
    .unwrap();
    assert_eq!(
        l.config.runners[0].token().unwrap().expose(),
        "glrt-t3_MountedSecretToken"
    );
}

#[test]
fn token_and_token_file_together_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "glrt-file").unwrap();
    let e = parse_in(
        dir.path(),
        "[[runners]]\n  name = \"k\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-inline-secret\"\n  token_file = \"token\"\n  executor = \"shell\"\n",
    )
    .unwrap_err();
    let loc = e.location().unwrap();
    assert_eq!((loc.line, loc.column), (5, 16));
    let text = e.to_string();
    assert!(
        text.contains("runner `k` sets both `token` and `token_file`"),
        "{text}"
    );
    assert!(!text.contains("glrt-inline-secret"), "{text}");
}

#[test]
fn unreadable_or_empty_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = parse_in(
        dir.path(),
        "[[runners]]\n  url = \"https://gitlab.example.com\"\n  token_file = \"/nonexistent/token\"\n  executor = \"shell\"\n",
    )
    .unwrap_err();
    assert_eq!(e.location().unwrap().line, 3);
    assert!(
        e.to_string()
            .contains("cannot read `token_file` /nonexistent/token"),
        "{e}"
    );
    assert!(e.to_string().contains("the file does not exist"), "{e}");

    std::fs::write(dir.path().join("empty"), "\n  \n").unwrap();
    let e = parse_in(
        dir.path(),
        "[[runners]]\n  url = \"https://gitlab.example.com\"\n  token_file = \"empty\"\n  executor = \"shell\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("is empty"), "{e}");
}
