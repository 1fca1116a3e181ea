//! Keys glrunner ignores are reported once each, with their location, as values.

use glrunner_config::{Config, ConfigWarning, WarningKind};
use std::path::Path;

fn warnings(text: &str) -> Vec<ConfigWarning> {
    Config::parse(Path::new("/cfg/config.toml"), text, &|_| None)
        .unwrap()
        .warnings
}

#[test]
fn unsupported_and_unknown_keys_each_once_with_location() {
    let text = r#"concurrent = 4
concurent = 5

[[runners]]
  name = "k8s"
  url = "https://gitlab.example.com"
  token = "glrt-x"
  executor = "kubernetes"
  [runners.docker]
    image = "alpine"
    privileged = true
  [runners.machine]
    IdleCount = 0
  [runners.kubernetes]
    namespace = "ci"
    imagee = "alpine:3"
  [runners.cache]
    BucketName = "old-style"

[[runners]]
  name = "second"
  url = "https://gitlab.example.com"
  token = "glrt-y"
  executor = "shell"
  [runners.custom]
    run_exec = "/bin/run"
"#;
    let w = warnings(text);
    let summary: Vec<(&str, usize, usize, WarningKind)> = w
        .iter()
        .map(|w| (w.key.as_str(), w.line, w.column, w.kind))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("concurent", 2, 1, WarningKind::Unknown),
            ("runners[0].docker", 9, 12, WarningKind::Unsupported),
            ("runners[0].machine", 12, 12, WarningKind::Unsupported),
            ("runners[0].kubernetes.imagee", 16, 5, WarningKind::Unknown),
            ("runners[0].cache.BucketName", 18, 5, WarningKind::Moved),
            ("runners[1].custom", 25, 12, WarningKind::Unsupported),
        ]
    );
    // One warning per table, not per key inside it.
    assert_eq!(w.iter().filter(|w| w.key.contains("docker")).count(), 1);
    assert_eq!(
        w[1].to_string(),
        "/cfg/config.toml:9:12: `runners[0].docker`: not supported by glrunner yet (glrunner runs the shell and kubernetes executors), ignored"
    );
    assert_eq!(w[0].message, "unknown key, ignored (typo?)");
    assert_eq!(w[0].file, Path::new("/cfg/config.toml"));
}

#[test]
fn global_tables_gitlab_runner_knows() {
    let text = "concurrent = 1\n[machine]\n  [machine.shutdown_drain]\n    enabled = true\n[[runners]]\n  url = \"https://g.example\"\n  executor = \"shell\"\n  proxy_exec = true\n";
    let w = warnings(text);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (w[0].key.as_str(), w[0].line, w[0].kind),
        ("machine", 2, WarningKind::Unsupported)
    );
    assert_eq!(
        (w[1].key.as_str(), w[1].line, w[1].kind),
        ("runners[0].proxy_exec", 8, WarningKind::Unsupported)
    );
}

#[test]
fn a_config_without_runners_is_loaded_with_a_note() {
    let w = warnings("concurrent = 1\n");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, WarningKind::Other);
    assert!(
        w[0].message.contains("glrunner register"),
        "{}",
        w[0].message
    );
}
