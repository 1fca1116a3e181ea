//! Config errors point at `file:line:column`, say what is wrong, and carry the fix.

use glrunner_config::{Config, ConfigError, Loaded};
use std::path::Path;

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    Config::parse(Path::new("/etc/gitlab-runner/config.toml"), text, &|_| None)
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(l) => panic!("expected an error, got {:?}", l.config),
        Err(e) => e,
    }
}

/// (line, column) of an error.
fn at(e: &ConfigError) -> (usize, usize) {
    let l = e.location().expect("a location");
    assert_eq!(l.file, Path::new("/etc/gitlab-runner/config.toml"));
    (l.line, l.column)
}

const RUNNER: &str =
    "[[runners]]\n  name = \"r\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-x\"\n";

#[test]
fn syntax_error_has_line_and_column() {
    let e = err("concurrent = 1\n[[runners]\n  name = \"a\"\n");
    assert!(matches!(e, ConfigError::Syntax(_)), "{e}");
    assert_eq!(at(&e), (2, 11));
    let text = e.to_string();
    assert!(
        text.starts_with("/etc/gitlab-runner/config.toml:2:11: TOML syntax error"),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");

    let e = err("concurrent = \n");
    assert_eq!(at(&e), (1, 14));
}

#[test]
fn type_error_points_at_the_value() {
    let e = err("concurrent = \"ten\"\n");
    assert!(matches!(e, ConfigError::Type(_)), "{e}");
    assert_eq!(at(&e), (1, 14));
    assert_eq!(e.key(), Some("concurrent"));
    let text = e.to_string();
    assert!(
        text.contains("`concurrent` is a string, expected an integer"),
        "{text}"
    );
    assert!(
        text.contains("fix: write `concurrent` as an integer, e.g. `concurrent = 10`"),
        "{text}"
    );
}

#[test]
fn type_errors_inside_runners_and_kubernetes() {
    let e = err("concurrent = 1\n[[runners]]\n  name = \"a\"\n  url = 5\n");
    assert_eq!(at(&e), (4, 9));
    assert_eq!(e.key(), Some("runners[0].url"));

    let text = format!(
        "{RUNNER}  executor = \"kubernetes\"\n  [runners.kubernetes]\n    privileged = \"yes\"\n"
    );
    let e = err(&text);
    assert_eq!(at(&e), (7, 18));
    assert_eq!(e.key(), Some("runners[0].kubernetes.privileged"));
    assert!(
        e.to_string().contains("is a string, expected a boolean"),
        "{e}"
    );

    let text = format!(
        "{RUNNER}  executor = \"kubernetes\"\n  [runners.kubernetes]\n    pull_policy = [\"always\", \"sometimes\"]\n"
    );
    let e = err(&text);
    assert_eq!(at(&e), (7, 30));
    assert!(e.to_string().contains("unknown variant `sometimes`"), "{e}");

    let text = format!("{RUNNER}  executor = \"shell\"\n  unhealthy_interval = \"5 minutes\"\n");
    let e = err(&text);
    assert_eq!(at(&e), (6, 24));
    assert!(
        e.to_string().contains("invalid duration \"5 minutes\""),
        "{e}"
    );
}

#[test]
fn type_errors_never_echo_secret_values() {
    let e = err("[[runners]]\n  url = \"https://gitlab.example.com\"\n  token = 123456789\n");
    assert_eq!(at(&e), (3, 11));
    assert!(!e.to_string().contains("123456789"), "{e}");
    assert!(
        e.to_string()
            .contains("`runners[0].token` is an integer, expected a string"),
        "{e}"
    );

    let e = err(
        "[[runners]]\n  url = \"https://x.example\"\n  executor = \"shell\"\n  [runners.cache.s3]\n    SecretKey = [\"hunter2-secret\"]\n",
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert_eq!(at(&e), (5, 17));
}

#[test]
fn concurrent_below_one_is_refused_at_the_value() {
    let e = err("# comment\nconcurrent = 0\n");
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
    assert_eq!(at(&e), (2, 14));
    let text = e.to_string();
    assert!(
        text.contains("`concurrent` is 0; it must be at least 1"),
        "{text}"
    );
    assert!(text.contains("fix: set `concurrent = 1` or more"), "{text}");
    assert_eq!(at(&err("concurrent = -3\n")), (1, 14));
}

#[test]
fn runner_without_url_points_at_its_header() {
    let e = err("concurrent = 1\n\n[[runners]]\n  name = \"a\"\n  executor = \"shell\"\n");
    assert_eq!(at(&e), (3, 1));
    assert_eq!(e.key(), Some("runners[0]"));
    assert!(e.to_string().contains("runner `a` has no `url`"), "{e}");
    assert!(
        e.to_string()
            .contains("url = \\\"https://gitlab.example.com\\\"")
            || e.to_string()
                .contains("url = \"https://gitlab.example.com\""),
        "{e}"
    );

    let e = err("[[runners]]\n  url = \"gitlab.example.com\"\n  executor = \"shell\"\n");
    assert_eq!(at(&e), (2, 9));
    assert!(e.to_string().contains("not an http(s) URL"), "{e}");
}

#[test]
fn executor_missing_unsupported_or_unknown() {
    let e = err(&format!("concurrent = 1\n{RUNNER}"));
    assert_eq!(at(&e), (2, 1));
    assert!(
        e.to_string().contains("runner `r` has no `executor`"),
        "{e}"
    );

    let e = err(&format!(
        "{RUNNER}  executor = \"docker\"\n  [runners.docker]\n    image = \"alpine\"\n"
    ));
    assert_eq!(at(&e), (5, 14));
    let text = e.to_string();
    assert!(
        text.contains("`docker` executor, which glrunner does not run yet"),
        "{text}"
    );
    assert!(text.contains("executor = \"kubernetes\""), "{text}");

    for name in ["docker+machine", "custom", "docker-autoscaler"] {
        let e = err(&format!("{RUNNER}  executor = \"{name}\"\n"));
        assert!(e.to_string().contains("does not run yet"), "{name}: {e}");
    }

    let e = err(&format!("{RUNNER}  executor = \"kubernets\"\n"));
    assert!(
        e.to_string().contains("unknown executor `kubernets`"),
        "{e}"
    );
}

#[test]
fn unsupported_shell() {
    let e = err(&format!(
        "{RUNNER}  executor = \"shell\"\n  shell = \"pwsh\"\n"
    ));
    assert_eq!(at(&e), (6, 11));
    assert!(
        e.to_string()
            .contains("`pwsh` shell, which glrunner does not support yet"),
        "{e}"
    );
}

#[test]
fn client_certificate_needs_both_files() {
    let e = err(&format!(
        "{RUNNER}  executor = \"shell\"\n  tls-cert-file = \"/c.pem\"\n"
    ));
    assert_eq!(at(&e), (6, 19));
    assert!(
        e.to_string()
            .contains("`tls-cert-file` without `tls-key-file`"),
        "{e}"
    );
}

#[test]
fn invalid_labels() {
    let e = err("[labels]\n  ok_key = \"fine\"\n  x = \"too-short-key\"\n");
    assert_eq!(at(&e), (3, 7));
    assert!(e.to_string().contains("label key `x` is invalid"), "{e}");
}

#[test]
fn volume_without_mount_path_points_at_the_volume() {
    let text = format!(
        "{RUNNER}  executor = \"kubernetes\"\n  [runners.kubernetes]\n    [[runners.kubernetes.volumes.empty_dir]]\n      name = \"scratch\"\n"
    );
    let e = err(&text);
    assert_eq!(at(&e), (7, 5));
    assert_eq!(e.key(), Some("runners[0].kubernetes.volumes.empty_dir[0]"));
    assert!(e.to_string().contains("has no `mount_path`"), "{e}");
}

#[test]
fn missing_file_says_how_to_create_one() {
    let e = Config::load("/nonexistent/glrunner/config.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read(_)));
    assert!(e.location().is_none());
    let text = e.to_string();
    assert!(
        text.contains("cannot read config file /nonexistent/glrunner/config.toml"),
        "{text}"
    );
    assert!(text.contains("glrunner register"), "{text}");
}

#[test]
fn tokens_that_cannot_take_jobs_are_refused_without_being_shown() {
    let cases = [
        (
            "GR1348941aBcDeFgHiJkLmNoP",
            "runner registration token",
            "glrunner register",
        ),
        (
            "glpat-AbCdEfGhIjKlMnOpQrSt",
            "personal access token",
            "glrt-",
        ),
        ("glcbt-64_AbCdEfGhIjKlMnOp", "CI/CD job token", "glrt-"),
    ];
    for (token, kind, fix) in cases {
        let e = err(&format!(
            "[[runners]]\n  name = \"r\"\n  url = \"https://gitlab.example.com\"\n  token = \"{token}\"\n  executor = \"shell\"\n"
        ));
        assert_eq!(at(&e), (4, 11), "{token}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("runner `r`: the token is a {kind}")),
            "{text}"
        );
        assert!(text.contains("403"), "{text}");
        assert!(text.contains(fix), "{text}");
        assert!(!text.contains(token), "{text}");
    }
    // Runner authentication tokens of every generation load.
    for token in [
        "glrt-t1_abc",
        "glrtr-abcdef",
        "t2_abcdef",
        "0123456789abcdef",
    ] {
        let text = format!(
            "[[runners]]\n  url = \"https://g.example\"\n  token = \"{token}\"\n  executor = \"shell\"\n"
        );
        assert!(parse(&text).is_ok(), "{token}");
    }
}
