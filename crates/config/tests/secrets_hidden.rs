//! No secret from config.toml shows in `Debug` of the loaded config, nor in warnings.

use glrunner_config::Config;
use std::path::PathBuf;

#[test]
fn debug_of_a_config_with_secrets_shows_none_of_them() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-keys.toml");
    let loaded = Config::load_with_env(&path, &|_| None).unwrap();
    let shown = format!("{loaded:?}");
    let pretty = format!("{loaded:#?}");
    let secrets = [
        "glrt-t1_AllKeysRunnerToken",
        "K8S-BEARER-TOKEN-ALL",
        "ACCESS-KEY-ALL",
        "SECRET-KEY-ALL",
        "SESSION-TOKEN-ALL",
        "GCS-PRIVATE-KEY-ALL",
        "AZURE-ACCOUNT-KEY-ALL",
        "public-key-abc",
        // environment values (names stay visible)
        "B=two",
        "maxmemory 64mb",
    ];
    for s in secrets {
        assert!(!shown.contains(s), "Debug shows {s}");
        assert!(!pretty.contains(s), "pretty Debug shows {s}");
    }
    // The Debug output is still useful: it names the fields and shows ordinary values.
    assert!(shown.contains("bearer_token: Some([REDACTED])"), "{shown}");
    assert!(shown.contains("\"alpine:3.20\""));
    assert!(shown.contains("B=[REDACTED]"));
}

#[test]
fn debug_of_the_editor_and_its_entries_shows_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    std::fs::write(
        &path,
        "[[runners]]\n  name = \"a\"\n  url = \"https://g.example\"\n  token = \"glrt-EditorSecret\"\n  executor = \"shell\"\n",
    )
    .unwrap();
    let ed = glrunner_config::ConfigEditor::open(&path).unwrap();
    let shown = format!("{ed:?}");
    assert!(!shown.contains("glrt-EditorSecret"), "{shown}");
    assert!(shown.contains("name: Some(\"a\")"), "{shown}");
    // The rendered file is the one place the token must stay.
    assert!(ed.render().contains("glrt-EditorSecret"));
}
