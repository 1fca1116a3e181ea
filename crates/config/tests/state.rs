//! The state directory, the system_id and the state file: resolution, generation, persistence and
//! fallbacks that never stop the runner.

use glrunner_config::state::{
    RunnerState, STATE_FILE, SYSTEM_ID_FILE, StateDirSource, StateLocation, StateOptions,
    is_valid_system_id,
};
use glrunner_config::{State, Timestamp};
use glrunner_protocol::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

fn options(explicit: Option<PathBuf>, machine_ids: Vec<PathBuf>) -> StateOptions {
    StateOptions {
        explicit_dir: explicit,
        config_path: None,
        xdg_state_home: None,
        home: None,
        machine_id_paths: machine_ids,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether this process can create files in a directory it made read-only (root, CAP_DAC_OVERRIDE).
fn ignores_permissions(read_only_dir: &Path) -> bool {
    let probe = read_only_dir.join(".write-probe");
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// A path nobody can create, root included: its parent is a regular file.
fn uncreatable(tmp: &Path, name: &str) -> PathBuf {
    let file = tmp.join(format!("{name}-is-a-file"));
    std::fs::write(&file, b"").unwrap();
    file.join("state")
}

#[test]
fn system_id_from_a_machine_id_is_gitlab_runners_hmac() {
    let tmp = tempfile::tempdir().unwrap();
    let mid = tmp.path().join("machine-id");
    std::fs::write(&mid, format!("  {MACHINE_ID}\n")).unwrap();
    let state_dir = tmp.path().join("state");
    let state = State::open(&options(
        Some(state_dir.clone()),
        vec![tmp.path().join("absent"), mid],
    ));

    // Computed here independently: HMAC-SHA256(key = machine id, message = "gitlab-runner").
    let mut mac = Hmac::<Sha256>::new_from_slice(MACHINE_ID.as_bytes()).unwrap();
    mac.update(b"gitlab-runner");
    let expected = format!("s_{}", &hex::encode(mac.finalize().into_bytes())[..12]);
    assert_eq!(state.system_id(), expected);
    assert_eq!(state.system_id(), "s_ee3af03959fe");
    assert!(state.warnings().is_empty(), "{:?}", state.warnings());

    // Persisted in gitlab-runner's file, 0600 in a 0700 directory, and in the state file.
    let id_file = state_dir.join(SYSTEM_ID_FILE);
    assert_eq!(std::fs::read_to_string(&id_file).unwrap(), expected);
    assert_eq!(mode(&id_file), 0o600);
    assert_eq!(mode(&state_dir), 0o700);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join(STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(json["system_id"], expected.as_str());
    assert_eq!(mode(&state_dir.join(STATE_FILE)), 0o600);
    assert_eq!(
        state.location(),
        &StateLocation::Dir {
            path: state_dir,
            source: StateDirSource::Explicit
        }
    );
}

#[test]
fn random_system_id_without_machine_id_and_it_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let no_ids = vec![tmp.path().join("none-1"), tmp.path().join("none-2")];
    std::fs::write(tmp.path().join("none-2"), "  \n").unwrap(); // empty files do not count
    let a = State::open(&options(Some(tmp.path().join("a")), no_ids.clone()));
    let b = State::open(&options(Some(tmp.path().join("b")), no_ids.clone()));
    for s in [&a, &b] {
        let id = s.system_id();
        assert!(id.starts_with("r_") && is_valid_system_id(id), "{id}");
        assert!(id[2..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
    assert_ne!(a.system_id(), b.system_id());

    // A restart with the same state directory keeps the id.
    let again = State::open(&options(Some(tmp.path().join("a")), no_ids));
    assert_eq!(again.system_id(), a.system_id());
}

#[test]
fn an_invalid_stored_id_is_regenerated() {
    let tmp = tempfile::tempdir().unwrap();
    let mid = tmp.path().join("machine-id");
    std::fs::write(&mid, MACHINE_ID).unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(SYSTEM_ID_FILE), "s_tooshort\n").unwrap();

    let state = State::open(&options(Some(dir.clone()), vec![mid]));
    assert_eq!(state.system_id(), "s_ee3af03959fe");
    assert_eq!(
        std::fs::read_to_string(dir.join(SYSTEM_ID_FILE)).unwrap(),
        "s_ee3af03959fe"
    );
    let w = &state.warnings()[0];
    assert!(
        w.message
            .contains("generated a new system_id s_ee3af03959fe"),
        "{w}"
    );
    assert!(w.cause.contains("does not hold a valid system_id"), "{w}");
}

#[test]
fn a_stored_id_is_used_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let mid = tmp.path().join("machine-id");
    std::fs::write(&mid, MACHINE_ID).unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(SYSTEM_ID_FILE), "r_AbCdEf012345\n").unwrap();
    let state = State::open(&options(Some(dir), vec![mid]));
    assert_eq!(state.system_id(), "r_AbCdEf012345");
}

#[test]
fn read_only_config_dir_falls_back_and_keeps_a_migrated_id() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg_dir = tmp.path().join("etc-gitlab-runner");
    std::fs::create_dir(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("config.toml"), "concurrent = 1\n").unwrap();
    // Left there by gitlab-runner on the same host.
    std::fs::write(cfg_dir.join(SYSTEM_ID_FILE), "s_0a1b2c3d4e5f").unwrap();
    std::fs::set_permissions(&cfg_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = ignores_permissions(&cfg_dir);

    let xdg = tmp.path().join("xdg");
    let opts = StateOptions {
        explicit_dir: None,
        config_path: Some(cfg_dir.join("config.toml")),
        xdg_state_home: Some(xdg.clone()),
        home: None,
        machine_id_paths: vec![],
    };
    let mut state = State::open(&opts);
    assert_eq!(state.system_id(), "s_0a1b2c3d4e5f");
    state.set_runner(RunnerState::new(
        "r",
        "https://gitlab.example.com",
        Secret::new("glrt-abc"),
    ));
    state.save().unwrap();

    if privileged {
        eprintln!(
            "running with privileges that ignore directory permissions: skipping the read-only assertions"
        );
        assert_eq!(state.dir(), Some(cfg_dir.as_path()));
    } else {
        let fallback = xdg.join("glrunner");
        assert_eq!(
            state.location(),
            &StateLocation::Dir {
                path: fallback.clone(),
                source: StateDirSource::XdgStateHome
            }
        );
        let w = &state.warnings()[0];
        assert!(w.message.contains(&fallback.display().to_string()), "{w}");
        assert!(w.cause.contains("is not writable"), "{w}");
        assert!(w.fix.contains("state_dir"), "{w}");
        assert_eq!(
            std::fs::read_to_string(fallback.join(SYSTEM_ID_FILE)).unwrap(),
            "s_0a1b2c3d4e5f"
        );
        assert!(fallback.join(STATE_FILE).exists());
        // Nothing was written beside config.toml.
        assert!(!cfg_dir.join(STATE_FILE).exists());
    }
    std::fs::set_permissions(&cfg_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn nothing_writable_means_memory_state_and_a_warning_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StateOptions {
        explicit_dir: Some(uncreatable(tmp.path(), "explicit")),
        // The config directory is never created for state.
        config_path: Some(tmp.path().join("missing-dir/config.toml")),
        xdg_state_home: Some(uncreatable(tmp.path(), "xdg")),
        home: Some(uncreatable(tmp.path(), "home")),
        machine_id_paths: vec![],
    };
    let mut state = State::open(&opts);
    assert_eq!(state.location(), &StateLocation::Memory);
    assert!(state.dir().is_none());
    assert!(
        is_valid_system_id(state.system_id()),
        "{}",
        state.system_id()
    );
    let w = state.warnings().last().unwrap();
    assert!(w.message.contains("kept in memory"), "{w}");
    assert!(
        w.fix.contains(
            "mount a writable volume, e.g. an emptyDir, and set state_dir = \"/var/lib/glrunner\""
        ),
        "{w}"
    );
    assert!(w.cause.contains("changes on every restart"), "{w}");
    assert!(
        w.cause
            .contains("explicit-is-a-file/state cannot be created"),
        "{w}"
    );
    // Saving is a no-op, not an error.
    state.set_runner(RunnerState::new(
        "r",
        "https://g.example",
        Secret::new("glrt-x"),
    ));
    state.save().unwrap();
    assert!(state.runner("r", "https://g.example").is_some());
}

#[test]
fn read_only_dirs_everywhere_means_memory_state() {
    let tmp = tempfile::tempdir().unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("config.toml"), "").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = ignores_permissions(&ro);
    let opts = StateOptions {
        explicit_dir: Some(ro.join("state")),
        config_path: Some(ro.join("config.toml")),
        xdg_state_home: None,
        home: None,
        machine_id_paths: vec![],
    };
    let state = State::open(&opts);
    assert!(is_valid_system_id(state.system_id()));
    if privileged {
        eprintln!(
            "running with privileges that ignore directory permissions: skipping the read-only assertions"
        );
    } else {
        assert_eq!(state.location(), &StateLocation::Memory);
        assert!(state.warnings().iter().any(|w| w.fix.contains("emptyDir")));
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn state_file_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let opts = options(Some(dir.clone()), vec![]);
    let mut state = State::open(&opts);
    let mut entry = RunnerState::new(
        "k8s",
        "https://gitlab.example.com/",
        Secret::new("glrt-t1_Registered"),
    );
    entry.id = Some(42);
    entry.token_obtained_at = Some("2026-02-01T10:00:00Z".parse::<Timestamp>().unwrap());
    entry.token_expires_at = Some("2026-05-01T10:00:00Z".parse::<Timestamp>().unwrap());
    state.set_runner(entry.clone());
    state.set_runner(RunnerState::new(
        "other",
        "https://gitlab.example.com",
        Secret::new("glrt-other"),
    ));
    state.save().unwrap();
    assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    assert!(!format!("{state:?}").contains("glrt-t1_Registered"));

    let mut reopened = State::open(&opts);
    assert_eq!(reopened.system_id(), state.system_id());
    // Keyed by name and URL; a trailing slash does not make another GitLab.
    assert_eq!(
        reopened.runner("k8s", "https://gitlab.example.com"),
        Some(&entry)
    );
    assert_eq!(
        reopened.runner("k8s", "https://elsewhere.example.com"),
        None
    );
    assert_eq!(reopened.data().runners.len(), 2);

    // Replacing and removing.
    let mut rotated = entry.clone();
    rotated.token = Secret::new("glrt-t1_Rotated");
    reopened.set_runner(rotated);
    assert_eq!(reopened.data().runners.len(), 2);
    assert!(
        reopened
            .remove_runner("other", "https://gitlab.example.com/")
            .is_some()
    );
    reopened.save().unwrap();
    let third = State::open(&opts);
    assert_eq!(third.data().runners.len(), 1);
    assert_eq!(
        third
            .runner("k8s", "https://gitlab.example.com")
            .unwrap()
            .token
            .expose(),
        "glrt-t1_Rotated"
    );
    let json = std::fs::read_to_string(dir.join(STATE_FILE)).unwrap();
    assert!(
        json.contains("\"token_expires_at\": \"2026-05-01T10:00:00Z\""),
        "{json}"
    );
}

#[test]
fn a_damaged_state_file_is_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(STATE_FILE), "{ not json").unwrap();
    let state = State::open(&options(Some(dir.clone()), vec![]));
    assert!(is_valid_system_id(state.system_id()));
    assert!(
        state
            .warnings()
            .iter()
            .any(|w| w.message.contains("is damaged"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("{STATE_FILE}.corrupt"))).unwrap(),
        "{ not json"
    );
    // A fresh, valid state file took its place.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(json["system_id"], state.system_id());
}

#[test]
fn explicit_state_dir_from_the_cli_wins_over_the_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "state_dir = \"from-key\"\n[[runners]]\n  url = \"https://g.example\"\n  executor = \"shell\"\n").unwrap();
    let loaded = glrunner_config::Config::load(&cfg).unwrap();
    // Relative to the config file's directory.
    assert_eq!(
        loaded.config.state_dir.as_deref(),
        Some(tmp.path().join("from-key").as_path())
    );
    let from_key = StateOptions::for_config(&loaded, None);
    assert_eq!(
        from_key.explicit_dir.as_deref(),
        Some(tmp.path().join("from-key").as_path())
    );
    let from_cli = StateOptions::for_config(&loaded, Some(tmp.path().join("cli")));
    assert_eq!(
        from_cli.explicit_dir.as_deref(),
        Some(tmp.path().join("cli").as_path())
    );
    let mut opts = from_key;
    opts.machine_id_paths = vec![];
    let state = State::open(&opts);
    assert_eq!(state.dir(), Some(tmp.path().join("from-key").as_path()));
}
