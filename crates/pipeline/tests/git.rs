//! Predefined variables and git facts from real temporary repositories (real `git` processes).

mod common;

use common::{fixture, git, var};
use glrunner_pipeline::git::NULL_SHA;
use glrunner_pipeline::{LocalContext, Pipeline};
use glrunner_protocol::{JobResponse, RefType};
use std::path::Path;

/// A repository on `branch` with two commits of the Rust fixture pipeline.
fn repository(dir: &Path, branch: &str) {
    git(dir, &["init", "-q", "-b", branch]);
    git(dir, &["config", "user.name", "Ada Lovelace"]);
    git(dir, &["config", "user.email", "ada@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    std::fs::write(dir.join("README.md"), "widgets\n").unwrap();
    git(dir, &["add", "README.md"]);
    git(dir, &["commit", "-q", "-m", "Initial commit"]);
    std::fs::copy(fixture("rust.gitlab-ci.yml"), dir.join(".gitlab-ci.yml")).unwrap();
    git(dir, &["add", ".gitlab-ci.yml"]);
    git(
        dir,
        &[
            "commit",
            "-q",
            "-m",
            "Add CI pipeline\n\nRuns fmt, clippy, tests and a release build.",
        ],
    );
}

fn payload(dir: &Path, job: &str) -> (JobResponse, LocalContext) {
    let ctx = LocalContext::discover(dir);
    let pipeline = Pipeline::load(dir.join(".gitlab-ci.yml")).unwrap();
    (pipeline.job_payload(job, &ctx).unwrap(), ctx)
}

#[test]
fn branch_checkout_with_a_gitlab_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    repository(dir, "feature/Login-42");
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/acme/widgets.git",
        ],
    );
    git(dir, &["update-ref", "refs/remotes/origin/main", "HEAD~1"]);
    git(
        dir,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );
    let head = git(dir, &["rev-parse", "HEAD"]);
    let parent = git(dir, &["rev-parse", "HEAD~1"]);

    let (p, ctx) = payload(dir, "test");
    assert!(
        ctx.git.repository && ctx.git.note.is_none(),
        "{:?}",
        ctx.git.note
    );
    let v = |key: &str| var(&p, key).value.clone();
    assert_eq!(v("CI_COMMIT_SHA"), head);
    assert_eq!(v("CI_COMMIT_SHORT_SHA"), head[..8]);
    assert_eq!(v("CI_COMMIT_BEFORE_SHA"), parent);
    assert_eq!(v("CI_COMMIT_REF_NAME"), "feature/Login-42");
    assert_eq!(v("CI_COMMIT_REF_SLUG"), "feature-login-42");
    assert_eq!(v("CI_COMMIT_BRANCH"), "feature/Login-42");
    assert!(p.variable("CI_COMMIT_TAG").is_none());
    assert_eq!(v("CI_DEFAULT_BRANCH"), "main");
    assert_eq!(
        v("CI_COMMIT_MESSAGE"),
        "Add CI pipeline\n\nRuns fmt, clippy, tests and a release build."
    );
    assert_eq!(v("CI_COMMIT_TITLE"), "Add CI pipeline");
    assert_eq!(
        v("CI_COMMIT_DESCRIPTION"),
        "Runs fmt, clippy, tests and a release build."
    );
    assert_eq!(v("CI_COMMIT_AUTHOR"), "Ada Lovelace <ada@example.com>");
    assert_eq!(
        v("CI_COMMIT_TIMESTAMP"),
        git(dir, &["log", "-1", "--format=%cI"])
    );
    assert_eq!(v("CI_PROJECT_PATH"), "acme/widgets");
    assert_eq!(v("CI_PROJECT_PATH_SLUG"), "acme-widgets");
    assert_eq!(v("CI_PROJECT_NAME"), "widgets");
    assert_eq!(v("CI_PROJECT_NAMESPACE"), "acme");
    assert_eq!(v("CI_SERVER_URL"), "https://gitlab.example.com");
    assert_eq!(v("CI_SERVER_HOST"), "gitlab.example.com");
    assert_eq!(v("CI_SERVER_PORT"), "443");
    assert_eq!(v("CI_SERVER_PROTOCOL"), "https");
    assert_eq!(v("CI_API_V4_URL"), "https://gitlab.example.com/api/v4");
    assert_eq!(
        v("CI_PROJECT_URL"),
        "https://gitlab.example.com/acme/widgets"
    );
    assert_eq!(
        v("CI_JOB_URL"),
        format!("https://gitlab.example.com/acme/widgets/-/jobs/{}", p.id)
    );
    assert_eq!(v("CI_CONFIG_PATH"), ".gitlab-ci.yml");
    assert_eq!(v("GITLAB_USER_NAME"), "Ada Lovelace");
    assert_eq!(v("GITLAB_USER_EMAIL"), "ada@example.com");
    assert_eq!(v("GITLAB_USER_LOGIN"), "ada");

    let g = &p.git_info;
    assert_eq!(
        (g.sha.as_str(), g.before_sha.as_str()),
        (head.as_str(), parent.as_str())
    );
    assert_eq!(g.r#ref, "feature/Login-42");
    assert_eq!(g.ref_type, RefType::Branch);
    assert_eq!(g.depth, 20);
    assert_eq!(g.repo_object_format.as_deref(), Some("sha1"));
    assert_eq!(p.job_info.project_full_path, "acme/widgets");
    assert_eq!(p.job_info.project_name, "widgets");
}

#[test]
fn the_payload_git_info_fetches_the_commit_from_the_local_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    repository(&repo, "main");
    let (p, _) = payload(&repo, "build");

    // Do what a runner's get_sources does with the payload: init, fetch the refspecs, check out sha.
    let build = tmp.path().join("build");
    std::fs::create_dir(&build).unwrap();
    git(&build, &["init", "-q"]);
    git(
        &build,
        &["remote", "add", "origin", p.git_info.repo_url.expose()],
    );
    let depth = p.git_info.depth.to_string();
    let mut fetch = vec!["fetch", "-q", "origin"];
    fetch.extend(p.git_info.refspecs.iter().map(String::as_str));
    fetch.extend(["--depth", &depth]);
    git(&build, &fetch);
    git(&build, &["checkout", "-q", "-f", &p.git_info.sha]);
    assert_eq!(git(&build, &["rev-parse", "HEAD"]), p.git_info.sha);
    assert!(build.join(".gitlab-ci.yml").is_file());
    assert_eq!(
        git(&build, &["rev-parse", "refs/remotes/origin/main"]),
        p.git_info.sha,
        "the branch refspec fetched the branch too"
    );
}

#[test]
fn detached_head_on_a_tag_is_a_tag_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    repository(dir, "main");
    git(dir, &["tag", "v1.2.0"]);
    git(dir, &["checkout", "-q", "--detach", "v1.2.0"]);

    let (p, ctx) = payload(dir, "fmt");
    assert_eq!(p.variable("CI_COMMIT_TAG"), Some("v1.2.0"));
    assert!(p.variable("CI_COMMIT_BRANCH").is_none());
    assert_eq!(p.variable("CI_COMMIT_REF_NAME"), Some("v1.2.0"));
    assert_eq!(p.git_info.ref_type, RefType::Tag);
    assert!(
        p.git_info
            .refspecs
            .contains(&"+refs/tags/v1.2.0:refs/tags/v1.2.0".to_owned())
    );
    // No remote: the project is named after its directory.
    assert!(
        ctx.project_path.starts_with("local/"),
        "{}",
        ctx.project_path
    );
    assert_eq!(p.variable("CI_SERVER_URL"), Some("http://localhost"));
}

#[test]
fn a_directory_without_git_still_gets_a_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("My Service");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        fixture("global-defaults.gitlab-ci.yml"),
        dir.join(".gitlab-ci.yml"),
    )
    .unwrap();

    let (p, ctx) = payload(&dir, "build");
    assert!(!ctx.git.repository);
    let note = ctx.git.note.as_deref().unwrap_or_default();
    assert!(note.contains("not a git repository"), "{note}");
    assert_eq!(p.variable("CI_COMMIT_SHA"), Some(NULL_SHA));
    assert_eq!(p.variable("CI_PROJECT_PATH"), Some("local/My-Service"));
    assert_eq!(p.variable("CI_PROJECT_NAME"), Some("My-Service"));
    assert_eq!(p.variable("CI_DEFAULT_BRANCH"), Some("main"));
    assert!(p.variable("CI_COMMIT_BRANCH").is_none());
    assert!(p.git_info.refspecs.is_empty(), "nothing to fetch");
    assert_eq!(p.steps[0].script, ["echo \"global before\"", "make"]);
}

#[test]
fn remote_credentials_never_reach_the_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    repository(dir, "main");
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://oauth2:glpat-SuperSecret123@gitlab.example.com:8443/acme/widgets.git",
        ],
    );
    let (p, _) = payload(dir, "test");
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        !json.contains("SuperSecret") && !json.contains("oauth2"),
        "credentials leaked"
    );
    assert_eq!(
        p.variable("CI_SERVER_URL"),
        Some("https://gitlab.example.com:8443")
    );
    assert_eq!(
        p.variable("CI_SERVER_FQDN"),
        Some("gitlab.example.com:8443")
    );
    assert_eq!(p.variable("CI_SERVER_PORT"), Some("8443"));
}

#[test]
fn scp_style_remote_and_a_repository_without_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "trunk"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.org:platform/infra/tools.git",
        ],
    );
    std::fs::copy(fixture("node.gitlab-ci.yml"), dir.join(".gitlab-ci.yml")).unwrap();

    let (p, ctx) = payload(dir, "lint");
    assert!(!ctx.git.repository);
    assert!(
        ctx.git
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("no commit")
    );
    assert_eq!(p.variable("CI_PROJECT_PATH"), Some("platform/infra/tools"));
    assert_eq!(p.variable("CI_PROJECT_NAMESPACE"), Some("platform/infra"));
    assert_eq!(p.variable("CI_PROJECT_ROOT_NAMESPACE"), Some("platform"));
    assert_eq!(
        p.variable("CI_SERVER_URL"),
        Some("https://gitlab.example.org")
    );
    assert_eq!(p.variable("CI_COMMIT_BRANCH"), Some("trunk"));
    assert_eq!(p.variable("CI_COMMIT_SHA"), Some(NULL_SHA));
}

#[test]
fn remotes_url_rewrites_and_repeated_config_values_read_as_git_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    repository(dir, "main");
    // No `origin`: the first remote with a URL names the project, through git's insteadOf rewrite.
    git(dir, &["remote", "add", "upstream", "gl:acme/rewritten.git"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "zfork",
            "https://gitlab.example.com/me/fork.git",
        ],
    );
    git(
        dir,
        &["config", "url.https://gitlab.example.com/.insteadOf", "gl:"],
    );
    git(dir, &["config", "--add", "user.name", "Second Name"]);
    let facts = glrunner_pipeline::GitFacts::discover(dir);
    let remote = facts.remote.expect("a remote");
    assert_eq!(remote.server_url, "https://gitlab.example.com");
    assert_eq!(remote.path, "acme/rewritten");
    assert_eq!(
        facts.user_name.as_deref(),
        Some("Second Name"),
        "the last value wins"
    );
    assert_eq!(facts.user_email.as_deref(), Some("ada@example.com"));
    assert_eq!(facts.branch.as_deref(), Some("main"));
    assert_eq!(facts.default_branch, "main");

    // `origin` wins over earlier remotes; without rewrites its URL is read as written.
    git(
        dir,
        &[
            "config",
            "--unset",
            "url.https://gitlab.example.com/.insteadOf",
        ],
    );
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.org:team/app.git",
        ],
    );
    let facts = glrunner_pipeline::GitFacts::discover(dir);
    let remote = facts.remote.expect("a remote");
    assert_eq!(remote.server_url, "https://gitlab.example.org");
    assert_eq!(remote.path, "team/app");

    // A detached HEAD has no branch.
    git(dir, &["checkout", "-q", "--detach", "HEAD"]);
    let facts = glrunner_pipeline::GitFacts::discover(dir);
    assert_eq!(facts.branch, None);
    assert!(facts.repository);
}
