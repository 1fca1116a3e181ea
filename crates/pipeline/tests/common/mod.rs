//! Helpers shared by the integration tests: fixture paths and payload lookups.
#![allow(dead_code)]

use glrunner_pipeline::{GitFacts, LocalContext, Pipeline, Plan};
use glrunner_protocol::{JobResponse, JobVariable};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn load(name: &str) -> Pipeline {
    let path = fixture(name);
    Pipeline::load(&path).unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()))
}

/// A context without git, so payload shape tests do not depend on the checkout they run in.
pub fn context() -> LocalContext {
    LocalContext::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        GitFacts::fallback("tests use no repository"),
    )
}

pub fn var<'a>(payload: &'a JobResponse, key: &str) -> &'a JobVariable {
    payload
        .variables
        .iter()
        .find(|v| v.key == key)
        .unwrap_or_else(|| panic!("variable {key} missing"))
}

pub fn position(payload: &JobResponse, key: &str) -> usize {
    payload
        .variables
        .iter()
        .position(|v| v.key == key)
        .unwrap_or_else(|| panic!("variable {key} missing"))
}

/// The YAML variables of a payload: those after the predefined `CI_COMMIT_AUTHOR`, before `GITLAB_USER_*`.
pub fn yaml_variables(payload: &JobResponse) -> Vec<(&str, &str)> {
    let start = position(payload, "CI_COMMIT_AUTHOR") + 1;
    payload.variables[start..]
        .iter()
        .take_while(|v| !v.key.starts_with("GITLAB_USER_"))
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .collect()
}

/// Run `git -C dir args…`, panicking with git's stderr on failure; stdout without the trailing newline.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// SHA-1 of `text` in lower-case hex, as GitLab digests cache key files.
pub fn sha1_hex(text: &str) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(text.as_bytes()))
}

/// The names of the jobs a plan runs, in its order.
pub fn names<'a>(plan: &'a Plan<'_>) -> Vec<&'a str> {
    plan.jobs().iter().map(|j| j.name.as_str()).collect()
}
