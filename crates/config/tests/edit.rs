//! Format-preserving edits of config.toml: appending and removing `[[runners]]` entries keeps every
//! other byte, and writes are atomic with mode 0600.

use glrunner_config::edit::NEW_CONFIG;
use glrunner_config::kubernetes::{KubernetesConfig, PullPolicies, PullPolicy};
use glrunner_config::{Config, ConfigEditor, EditError, GoDuration, RunnerConfig, Timestamp};
use glrunner_protocol::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const HEAD: &str = "# Managed by hand; keep the comments!
concurrent = 4   # four jobs at once
check_interval = 3

[session_server]
  session_timeout = 1800
";

const FIRST: &str = "
# The cluster runner
[[runners]]
  name = \"first\"   # trailing comment
  url = \"https://gitlab.example.com\"
  token = \"glrt-first\"
  executor = \"kubernetes\"
  [runners.kubernetes]
    # namespace for jobs
    namespace = \"ci\"
";

const SECOND: &str = "
# Deploy runner, to be removed
[[runners]]
  name = \"second\"
  url = \"https://gitlab.example.com/\"
  token = \"glrt-second\"
  executor = \"shell\"
";

const THIRD: &str = "
[[runners]]
  name = \"third\"
  url = \"https://other.example.com\"
  token = \"glrt-second\"
  executor = \"shell\"
  [runners.feature_flags]
    FF_SCRIPT_SECTIONS = true   # keep me
";

fn original() -> String {
    format!("{HEAD}{FIRST}{SECOND}{THIRD}")
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn new_runner() -> RunnerConfig {
    RunnerConfig {
        name: "added".into(),
        url: "https://gitlab.example.com".into(),
        id: Some(77),
        token: Some(Secret::new("glrt-t1_Added")),
        token_obtained_at: Some("2026-04-01T08:00:00Z".parse::<Timestamp>().unwrap()),
        executor: "kubernetes".into(),
        request_concurrency: Some(4),
        unhealthy_interval: Some(GoDuration(Duration::from_secs(600))),
        kubernetes: Some(KubernetesConfig {
            namespace: Some("ci".into()),
            pull_policy: Some(PullPolicies(vec![PullPolicy::IfNotPresent])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn appending_a_runner_keeps_the_file_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), &original());
    let mut ed = ConfigEditor::open(&path).unwrap();
    assert!(!ed.is_new());
    ed.add_runner(&new_runner()).unwrap();
    let out = ed.render();
    assert!(
        out.starts_with(&original()),
        "changed existing text:\n{out}"
    );
    let added = &out[original().len()..];
    assert_eq!(
        added,
        "
[[runners]]
  name = \"added\"
  url = \"https://gitlab.example.com\"
  id = 77
  token = \"glrt-t1_Added\"
  token_obtained_at = 2026-04-01T08:00:00Z
  executor = \"kubernetes\"
  request_concurrency = 4
  unhealthy_interval = \"10m0s\"

  [runners.kubernetes]
    namespace = \"ci\"
    pull_policy = [\"if-not-present\"]
"
    );
    ed.save().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The written file loads, and the new entry reads back as written.
    let loaded = Config::load_with_env(&path, &|_| None).unwrap();
    assert_eq!(loaded.config.runners.len(), 4);
    let r = &loaded.config.runners[3];
    assert_eq!(r.name, "added");
    assert_eq!(r.token().unwrap().expose(), "glrt-t1_Added");
    assert_eq!(r.token_obtained_at, new_runner().token_obtained_at);
    assert_eq!(r.unhealthy_interval(), Duration::from_secs(600));
    assert_eq!(r.kubernetes.as_ref().unwrap().namespace(), "ci");
}

#[test]
fn removing_runners_keeps_everything_else_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), &original());

    let mut ed = ConfigEditor::open(&path).unwrap();
    let removed = ed.remove_runner_by_name("second");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].index, 1);
    assert_eq!(ed.render(), format!("{HEAD}{FIRST}{THIRD}"));

    // By token, limited to one URL (the same token string exists on another GitLab).
    let mut ed = ConfigEditor::open(&path).unwrap();
    let removed = ed.remove_runner_by_token("glrt-second", Some("https://gitlab.example.com"));
    assert_eq!(
        removed
            .iter()
            .map(|e| e.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["second"]
    );
    assert_eq!(ed.render(), format!("{HEAD}{FIRST}{THIRD}"));

    // By token on any URL.
    let mut ed = ConfigEditor::open(&path).unwrap();
    assert_eq!(ed.remove_runner_by_token("glrt-second", None).len(), 2);
    assert_eq!(ed.render(), format!("{HEAD}{FIRST}"));

    // Removing the last entries leaves the rest of the file intact.
    let mut ed = ConfigEditor::open(&path).unwrap();
    assert_eq!(ed.remove_runners(|_| true).len(), 3);
    assert_eq!(ed.render(), HEAD);
    ed.save().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), HEAD);
}

#[test]
fn runner_entries_are_listed_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    let ed = ConfigEditor::open(write(tmp.path(), &original())).unwrap();
    let entries = ed.runners();
    let names: Vec<_> = entries.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(entries[2].url.as_deref(), Some("https://other.example.com"));
    assert_eq!(entries[0].token.as_ref().unwrap().expose(), "glrt-first");
}

#[test]
fn a_missing_file_is_created_with_sane_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new-dir");
    let path = dir.join("config.toml");
    let mut ed = ConfigEditor::open(&path).unwrap();
    assert!(ed.is_new());
    ed.add_runner(&new_runner()).unwrap();
    ed.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(NEW_CONFIG), "{text}");
    assert!(!text.contains("check_interval = 0"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let c = Config::load_with_env(&path, &|_| None).unwrap().config;
    assert_eq!(c.concurrent(), 1);
    assert_eq!(c.check_interval, Some(3));
    assert_eq!(c.shutdown_timeout(), Duration::from_secs(30));
    assert_eq!(c.runners[0].name, "added");
}

#[test]
fn a_token_from_token_file_is_never_inlined() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("token"), "glrt-from-a-secret\n").unwrap();
    let src = tmp.path().join("source.toml");
    std::fs::write(&src, "[[runners]]\n  name = \"f\"\n  url = \"https://g.example\"\n  token_file = \"token\"\n  executor = \"shell\"\n").unwrap();
    let runner = Config::load(&src).unwrap().config.runners.remove(0);
    assert_eq!(runner.token().unwrap().expose(), "glrt-from-a-secret");

    let mut ed = ConfigEditor::open(tmp.path().join("target.toml")).unwrap();
    ed.add_runner(&runner).unwrap();
    let out = ed.render();
    assert!(!out.contains("glrt-from-a-secret"), "{out}");
    assert!(out.contains("token_file = "), "{out}");
}

#[test]
fn an_unwritable_location_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // procfs refuses new files from everyone, root included.
    let path = Path::new("/proc/self/config.toml");
    let mut ed = ConfigEditor::open(path).unwrap();
    ed.add_runner(&new_runner()).unwrap();
    let e = ed.save().unwrap_err();
    assert!(matches!(e, EditError::NotWritable { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("cannot write config file {}", path.display())),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");
    assert!(!text.contains("glrt-t1_Added"), "{text}");

    // A read-only directory (when this process honours permissions).
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("config.toml"), HEAD).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = std::fs::write(ro.join("probe"), "").is_ok();
    let mut ed = ConfigEditor::open(ro.join("config.toml")).unwrap();
    ed.add_runner(&new_runner()).unwrap();
    let result = ed.save();
    if privileged {
        eprintln!(
            "running with privileges that ignore directory permissions: skipping the read-only assertion"
        );
    } else {
        assert!(
            matches!(result, Err(EditError::NotWritable { .. })),
            "{result:?}"
        );
        assert_eq!(
            std::fs::read_to_string(ro.join("config.toml")).unwrap(),
            HEAD
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_symlinked_config_is_replaced_at_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("config.toml"), HEAD).unwrap();
    let link = tmp.path().join("config.toml");
    std::os::unix::fs::symlink(data.join("config.toml"), &link).unwrap();
    let mut ed = ConfigEditor::open(&link).unwrap();
    ed.add_runner(&new_runner()).unwrap();
    ed.save().unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(data.join("config.toml"))
            .unwrap()
            .contains("name = \"added\"")
    );
}

#[test]
fn invalid_files_are_not_edited() {
    let tmp = tempfile::tempdir().unwrap();
    let e = ConfigEditor::open(write(tmp.path(), "concurrent = 1\n[[runners]\n")).unwrap_err();
    match &e {
        EditError::Syntax { at, .. } => assert_eq!((at.line, at.column), (2, 11)),
        other => panic!("{other}"),
    }

    let mut ed = ConfigEditor::open(write(tmp.path(), "runners = \"oops\"\n")).unwrap();
    assert!(matches!(
        ed.add_runner(&new_runner()),
        Err(EditError::RunnersShape { .. })
    ));

    // An empty inline list becomes the list of tables.
    let mut ed = ConfigEditor::open(write(tmp.path(), "concurrent = 1\nrunners = []\n")).unwrap();
    ed.add_runner(&new_runner()).unwrap();
    let text = ed.render();
    let loaded = Config::parse(Path::new("c.toml"), &text, &|_| None).unwrap();
    assert_eq!(loaded.config.runners.len(), 1, "{text}");
}
