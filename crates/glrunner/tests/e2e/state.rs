//! State apart from config (catalogue S1): a read-only config directory is a warning and a fallback,
//! never a crash, and `run` never writes config.toml.

use crate::support::*;
use glrunner_coordinator::JobStatus;
use nix::unistd::{Gid, Uid, chown};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const NOBODY: u32 = 65534;

fn setpriv_available() -> bool {
    std::process::Command::new("setpriv")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn give_to(path: &Path, uid: u32) {
    chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid))).unwrap();
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_config_dir_falls_back_to_the_user_state_dir_and_config_stays_untouched() {
    let env = TestEnv::new().await;
    let root = Uid::effective().is_root();
    // Root ignores directory permissions, so run glrunner as nobody when we are root.
    let user = (root && setpriv_available()).then_some((NOBODY, NOBODY));
    let work = env.dir.path();
    let home = work.join("home");
    for dir in [&home, &work.join("builds"), &work.join("cache")] {
        std::fs::create_dir_all(dir).unwrap();
        if let Some((uid, _)) = user {
            give_to(dir, uid);
        }
    }
    set_mode(work, 0o755);
    env.write_config(&env.config());
    let config_dir = env.path("config");
    set_mode(&env.config_path(), 0o644);
    set_mode(&config_dir, 0o555);
    let bytes_before = std::fs::read(env.config_path()).unwrap();
    let mtime_before = std::fs::metadata(env.config_path())
        .unwrap()
        .modified()
        .unwrap();
    let listing_before = listing(&config_dir);

    let mut gl = Glrunner::spawn(work, &["run", "-c", path_str(&env.config_path())], user);
    let fallback = home.join(".local/state/glrunner");
    let protected = user.is_some() || !root;
    if protected {
        let text = gl
            .wait_for_log(&format!("keeping state in {}", fallback.display()), WAIT)
            .await;
        assert!(text.contains("is not writable"), "says why: {text}");
        assert!(
            text.contains("fix: choose the place explicitly: set state_dir"),
            "{text}"
        );
    } else {
        eprintln!("running as root without setpriv: the read-only directory cannot be enforced");
    }
    let id = env
        .gitlab
        .enqueue(job(&["echo runs with state elsewhere"]))
        .unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    gl.stop().await;

    if protected {
        let system_id = read_system_id(&fallback);
        assert!(
            system_id.starts_with("s_") || system_id.starts_with("r_"),
            "{system_id}"
        );
        assert!(gl.output().contains(&format!("system_id={system_id}")));
        assert_eq!(done.manager.as_deref(), Some(system_id.as_str()));
    }
    set_mode(&config_dir, 0o755);
    assert_eq!(std::fs::read(env.config_path()).unwrap(), bytes_before);
    assert_eq!(
        std::fs::metadata(env.config_path())
            .unwrap()
            .modified()
            .unwrap(),
        mtime_before
    );
    if protected {
        assert_eq!(listing(&config_dir), listing_before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_never_writes_config_toml_and_keeps_its_system_id_across_restarts() {
    let env = TestEnv::new().await;
    let cfg = env.config();
    let mut gl = env.start(&cfg);
    let id = env.gitlab.enqueue(job(&["echo one"])).unwrap();
    env.finished(&gl, id, WAIT).await;
    gl.stop().await;
    let first = env.system_id();
    let bytes = std::fs::read(env.config_path()).unwrap();
    let mtime = std::fs::metadata(env.config_path())
        .unwrap()
        .modified()
        .unwrap();

    // Start again without rewriting the config.
    let mut gl = env.spawn_run(&[]);
    let id = env.gitlab.enqueue(job(&["echo two"])).unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    gl.stop().await;
    assert_eq!(env.system_id(), first, "the system_id changed on restart");
    assert_eq!(done.manager.as_deref(), Some(first.as_str()));
    let runner = env.gitlab.runner(env.runner.id).unwrap();
    assert_eq!(runner.managers.len(), 1, "{runner:#?}");
    assert_eq!(std::fs::read(env.config_path()).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(env.config_path())
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writable_state_dir_anywhere_is_a_warning_and_jobs_still_run() {
    let env = TestEnv::new().await;
    let root = Uid::effective().is_root();
    let user = (root && setpriv_available()).then_some((NOBODY, NOBODY));
    if root && user.is_none() {
        eprintln!("running as root without setpriv: nothing can be made unwritable; skipped");
        return;
    }
    let work = env.dir.path();
    for dir in [&work.join("builds"), &work.join("cache")] {
        std::fs::create_dir_all(dir).unwrap();
        if let Some((uid, _)) = user {
            give_to(dir, uid);
        }
    }
    // HOME exists but is not writable for the runner; the config dir is read-only.
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    set_mode(&home, 0o555);
    set_mode(work, 0o755);
    env.write_config(&env.config());
    set_mode(&env.config_path(), 0o644);
    set_mode(&env.path("config"), 0o555);

    let mut gl = Glrunner::spawn(work, &["run", "-c", path_str(&env.config_path())], user);
    let text = gl.wait_for_log("kept in memory only", WAIT).await;
    assert!(text.contains("no writable state directory"), "{text}");
    assert!(text.contains("fix: mount a writable volume"), "{text}");
    let id = env.gitlab.enqueue(job(&["echo state in memory"])).unwrap();
    let done = env.finished(&gl, id, WAIT).await;
    assert_eq!(done.status, JobStatus::Success, "{}", done.trace_text());
    gl.stop().await;
    set_mode(&env.path("config"), 0o755);
    set_mode(&home, 0o755);
}
