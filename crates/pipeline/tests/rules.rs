//! Job inclusion and scheduling rules on small pipelines: `rules:` clauses against a real git checkout,
//! `only`/`except`, `when:` outcomes, `needs:` checks with positions, and `parallel:` limits.

mod common;

use common::{git, names, sha1_hex};
use glrunner_pipeline::rules::JobWhen;
use glrunner_pipeline::{
    AllowFailure, GitFacts, JobResult, JobStatus, LocalContext, Next, Pipeline, PipelineError,
    Plan, Selection,
};
use std::path::Path;

fn ctx_on(dir: &Path, branch: &str) -> LocalContext {
    let mut facts = GitFacts::fallback("tests use no repository");
    facts.branch = Some(branch.to_owned());
    facts.default_branch = "main".into();
    LocalContext::new(dir.to_path_buf(), facts)
}

fn parse(yaml: &str) -> Result<Pipeline, PipelineError> {
    Pipeline::parse(yaml, "ci.yml")
}

fn planned(plan: &Plan<'_>) -> Vec<(String, JobWhen)> {
    plan.jobs()
        .iter()
        .map(|j| (j.name.clone(), j.when))
        .collect()
}

/// Run every job with the given outcomes (default success); returns (ran, skipped).
fn run(plan: &mut Plan<'_>, ctx: &LocalContext, failing: &[&str]) -> (Vec<String>, Vec<String>) {
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    while let Some(step) = plan.next_step() {
        match step {
            Next::Run(name) => {
                plan.payload(&name, ctx).unwrap();
                let status = if failing.contains(&name.as_str()) {
                    JobStatus::Failed
                } else {
                    JobStatus::Success
                };
                plan.record(&name, JobResult::new(status)).unwrap();
                ran.push(name);
            }
            Next::Skip { name, .. } => skipped.push(name),
        }
    }
    (ran, skipped)
}

#[test]
fn exists_changes_and_variables_against_a_real_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("docs/api")).unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM alpine\n").unwrap();
    std::fs::write(dir.join("docs/api/index.md"), "# API\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(dir.join("target/app.jar"), "jar").unwrap();
    git(dir, &["add", "Dockerfile", ".gitignore"]);
    // docs/api/index.md stays untracked but not ignored: it counts, as it would once committed.
    let yaml = "
docker:
  script: docker build .
  rules:
    - exists: [Dockerfile]
docs:
  script: mkdocs build
  rules:
    - exists: ['docs/**/*.md']
jar:
  script: ship target/app.jar
  rules:
    - exists: ['**/*.jar']
per-dir:
  variables: {DIR: docs}
  script: ls
  rules:
    - exists: ['$DIR/api/*.md']
      variables: {FOUND: 'yes'}
changed:
  script: echo changed
  rules:
    - changes: [src/**/*]
      when: manual
";
    std::fs::write(dir.join(".gitlab-ci.yml"), yaml).unwrap();
    let ctx = ctx_on(dir, "main");
    let pipeline = Pipeline::load_with(dir.join(".gitlab-ci.yml"), &ctx).unwrap();
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    assert_eq!(
        planned(&plan),
        [
            ("docker".to_owned(), JobWhen::OnSuccess),
            ("docs".to_owned(), JobWhen::OnSuccess),
            ("per-dir".to_owned(), JobWhen::OnSuccess),
            // `changes` holds without a push to compare with.
            ("changed".to_owned(), JobWhen::Manual),
        ]
    );
    assert_eq!(
        plan.excluded()[0].name,
        "jar",
        "ignored files do not exist for `exists`"
    );
    let per_dir = plan.jobs().iter().find(|j| j.name == "per-dir").unwrap();
    assert!(
        per_dir
            .variables()
            .iter()
            .any(|v| v.key == "FOUND" && v.value == "yes")
    );
    let (ran, skipped) = run(&mut plan, &ctx, &[]);
    assert_eq!(ran, ["docker", "docs", "per-dir"]);
    assert_eq!(skipped, ["changed"]);
}

#[test]
fn only_and_except_refs_variables_and_defaults() {
    let yaml = "
stages: [test]
plain:
  script: x
main-only:
  script: x
  only: [main]
release-branches:
  script: x
  only: ['/^release\\/.*$/']
tags-only:
  script: x
  only: [tags]
not-main:
  script: x
  except: [main]
by-variable:
  script: x
  only:
    variables: [$DEPLOY == \"yes\"]
other-project:
  script: x
  only: [branches@other/project]
web-only:
  script: x
  only: [web]
";
    let pipeline = parse(yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let included = |ctx: &LocalContext| -> Vec<String> {
        pipeline
            .plan(ctx, &Selection::All)
            .unwrap()
            .jobs()
            .iter()
            .map(|j| j.name.clone())
            .collect()
    };
    assert_eq!(
        included(&ctx_on(dir.path(), "main")),
        ["plain", "main-only"]
    );
    assert_eq!(
        included(&ctx_on(dir.path(), "release/2.0").with_variable("DEPLOY", "yes")),
        ["plain", "release-branches", "not-main", "by-variable"]
    );
    let mut tag = GitFacts::fallback("t");
    tag.tag = Some("v1".into());
    let tag = LocalContext::new(dir.path().to_path_buf(), tag);
    assert_eq!(included(&tag), ["plain", "tags-only", "not-main"]);
    assert_eq!(
        included(&ctx_on(dir.path(), "main").with_source("web")),
        ["plain", "main-only", "web-only"]
    );
    // The default `only: [branches, tags]` leaves a detached HEAD's jobs out.
    let detached = LocalContext::new(dir.path().to_path_buf(), GitFacts::fallback("t"));
    let plan = pipeline.plan(&detached, &Selection::All).unwrap();
    assert!(plan.jobs().is_empty());
    assert!(
        plan.excluded()[0]
            .reason
            .contains("`only:` does not match ref `HEAD`")
    );
}

#[test]
fn when_outcomes_follow_the_stages_before() {
    let yaml = "
stages: [build, test, report]
build:
  stage: build
  script: make
flaky:
  stage: build
  script: make flaky
  allow_failure: true
optional-manual:
  stage: build
  script: make extra
  when: manual
test:
  stage: test
  script: make test
on-failure:
  stage: report
  script: report failure
  when: on_failure
always:
  stage: report
  script: report
  when: always
delayed:
  stage: report
  script: later
  when: delayed
  start_in: 10 minutes
";
    let pipeline = parse(yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_on(dir.path(), "main");
    // A manual job is allowed to fail by default, so it does not block later stages.
    assert_eq!(
        pipeline.job("optional-manual").unwrap().allow_failure,
        AllowFailure::Yes
    );
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let (ran, skipped) = run(&mut plan, &ctx, &["flaky"]);
    assert_eq!(ran, ["build", "flaky", "test", "always", "delayed"]);
    assert_eq!(skipped, ["optional-manual", "on-failure"]);
    assert!(
        plan.succeeded(),
        "an allowed failure keeps the pipeline green"
    );

    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let (ran, skipped) = run(&mut plan, &ctx, &["build"]);
    assert_eq!(ran, ["build", "flaky", "on-failure", "always"]);
    assert_eq!(skipped, ["optional-manual", "test", "delayed"]);
    assert!(!plan.succeeded());
}

#[test]
fn rules_set_when_allow_failure_needs_and_variables() {
    let yaml = "
stages: [build, test]
a:
  stage: build
  script: a
b:
  stage: build
  script: b
job:
  stage: test
  script: run
  variables: {LEVEL: job}
  rules:
    - if: $MODE == \"fast\"
      needs: [a]
      variables: {LEVEL: rule}
      allow_failure: true
    - if: $MODE == \"later\"
      when: delayed
      start_in: 1 hour
    - when: never
";
    let pipeline = parse(yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fast = ctx_on(dir.path(), "main").with_variable("MODE", "fast");
    let mut plan = pipeline.plan(&fast, &Selection::All).unwrap();
    let job = plan
        .jobs()
        .iter()
        .find(|j| j.name == "job")
        .unwrap()
        .clone();
    assert_eq!(job.allow_failure, AllowFailure::Yes);
    assert_eq!(job.needs.as_ref().unwrap()[0].job, "a");
    // `needs: [a]` puts the job in the second wave, right after `a`.
    let order = names(&plan);
    assert_eq!(order, ["a", "b", "job"]);
    let (ran, _) = run(&mut plan, &fast, &["b"]);
    assert!(
        ran.contains(&"job".to_owned()),
        "a failure of `b` does not matter to `job`"
    );
    let mut plan = pipeline.plan(&fast, &Selection::All).unwrap();
    while let Some(step) = plan.next_step() {
        let Next::Run(name) = step else { continue };
        let payload = plan.payload(&name, &fast).unwrap();
        if name == "job" {
            let level = payload
                .variables
                .iter()
                .rev()
                .find(|v| v.key == "LEVEL")
                .unwrap();
            assert_eq!(level.value, "rule");
        }
        plan.record(&name, JobResult::new(JobStatus::Success))
            .unwrap();
    }

    let later = ctx_on(dir.path(), "main").with_variable("MODE", "later");
    let plan = pipeline.plan(&later, &Selection::All).unwrap();
    let job = plan.jobs().iter().find(|j| j.name == "job").unwrap();
    assert_eq!(
        (job.when, job.start_in.map(|d| d.as_secs())),
        (JobWhen::Delayed, Some(3600))
    );

    let none = ctx_on(dir.path(), "main");
    let plan = pipeline.plan(&none, &Selection::All).unwrap();
    assert!(
        plan.excluded()[0].reason.contains("when: never"),
        "{:?}",
        plan.excluded()
    );
}

#[test]
fn needs_on_matrix_instances_and_jobs_left_out() {
    let yaml = "
stages: [build, deploy]
build:
  stage: build
  script: make $TARGET
  parallel:
    matrix:
      - TARGET: [linux, mac]
        ARCH: [amd64, arm64]
deploy:
  stage: deploy
  script: ship
  needs:
    - job: build
      parallel:
        matrix:
          - TARGET: linux
            ARCH: [amd64, arm64]
docs:
  stage: build
  script: docs
  rules:
    - if: $DOCS
publish:
  stage: deploy
  script: publish
  needs: [docs]
maybe:
  stage: deploy
  script: maybe
  needs:
    - job: docs
      optional: true
";
    let pipeline = parse(yaml).unwrap();
    assert_eq!(
        pipeline.job_names(),
        [
            "build: [linux, amd64]",
            "build: [linux, arm64]",
            "build: [mac, amd64]",
            "build: [mac, arm64]",
            "docs",
            "deploy",
            "publish",
            "maybe"
        ]
    );
    let needs: Vec<&str> = pipeline
        .job("deploy")
        .unwrap()
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.job.as_str())
        .collect();
    assert_eq!(needs, ["build: [linux, amd64]", "build: [linux, arm64]"]);

    let dir = tempfile::tempdir().unwrap();
    let with_docs = ctx_on(dir.path(), "main").with_variable("DOCS", "1");
    assert!(pipeline.plan(&with_docs, &Selection::All).is_ok());
    // Without DOCS, `docs` is left out: `publish` needs it, so there is no pipeline.
    let ctx = ctx_on(dir.path(), "main");
    let err = pipeline.plan(&ctx, &Selection::All).unwrap_err();
    let at = err.location().unwrap();
    assert_eq!((at.line, at.column), (27, 11), "{err}");
    assert!(
        err.to_string().contains("'publish' job needs 'docs' job"),
        "{err}"
    );
    // `maybe` marked its need optional, so it alone is fine.
    let plan = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "maybe".into(),
                with_needs: true,
            },
        )
        .unwrap();
    let names = names(&plan);
    assert_eq!(names, ["maybe"]);
    assert_eq!(plan.jobs()[0].needs.as_deref(), Some(&[][..]));
}

#[test]
fn needs_and_dependencies_are_checked_with_positions() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "stages: [a, b]\nx:\n  stage: a\n  script: x\n  needs: [y]\ny:\n  stage: b\n  script: y\n",
            (5, 11),
            "need y is not defined in current or prior stages",
        ),
        (
            "x:\n  script: x\n  needs: [nope]\n",
            (3, 11),
            "undefined need: nope",
        ),
        (
            "x:\n  script: x\n  needs: [y]\ny:\n  script: y\n  needs: [x]\n",
            (6, 11),
            "`needs` form a cycle: x → y → x",
        ),
        (
            "x:\n  script: x\n  needs: [y, y]\ny:\n  script: y\n",
            (3, 14),
            "needs duplicated: y",
        ),
        (
            "stages: [a, b]\ny:\n  stage: a\n  script: y\nz:\n  stage: a\n  script: z\nx:\n  stage: b\n  script: x\n  needs: [y]\n  dependencies: [z]\n",
            (8, 1),
            "the z should be part of needs",
        ),
        (
            "x:\n  script: x\n  dependencies: [ghost]\n",
            (1, 1),
            "undefined dependency: ghost",
        ),
        (
            "x:\n  script: x\n  parallel: 201\n",
            (3, 13),
            "between 1 and 200",
        ),
        (
            "x:\n  script: x\n  parallel:\n    matrix:\n      - A: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]\n        B: [1,2,3,4,5,6,7,8,9,10,11,12,13,14]\n",
            (4, 5),
            "generates too many jobs (210",
        ),
        (
            "x:\n  script: x\n  rules:\n    - if: $A = \"b\"\n",
            (4, 11),
            "`if` of a rule of job `x` is not a valid expression",
        ),
        (
            "x:\n  script: x\n  rules:\n    - if: $A\n  only: [main]\n",
            (5, 3),
            "`only` may not be used with `rules`",
        ),
    ];
    for (yaml, (line, column), needle) in cases {
        let err = parse(yaml).unwrap_err();
        let at = err.location().unwrap_or_else(|| panic!("{err}"));
        assert_eq!((at.line, at.column), (*line, *column), "{yaml}\n{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn files_commits_keys_follow_the_last_commit_of_each_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Ada"]);
    git(dir, &["config", "user.email", "ada@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    std::fs::write(dir.join("Gemfile.lock"), "rake (13.0)\n").unwrap();
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "job:\n  script: bundle\n  cache:\n    key:\n      files_commits: [Gemfile.lock]\n      prefix: gems\n    paths: [vendor/]\n",
    )
    .unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "one"]);
    let first = git(dir, &["rev-parse", "HEAD"]);
    let ctx = LocalContext::discover(dir);
    let pipeline = Pipeline::load_with(dir.join(".gitlab-ci.yml"), &ctx).unwrap();
    let key =
        |p: &Pipeline, c: &LocalContext| p.job_payload("job", c).unwrap().cache[0].key.clone();
    assert_eq!(
        key(&pipeline, &ctx),
        format!("gems-{}-non_protected", sha1_hex(&first))
    );

    // A commit that does not touch the file keeps the key; one that does changes it.
    std::fs::write(dir.join("README.md"), "hi\n").unwrap();
    git(dir, &["add", "README.md"]);
    git(dir, &["commit", "-q", "-m", "two"]);
    assert_eq!(
        key(&pipeline, &LocalContext::discover(dir)),
        format!("gems-{}-non_protected", sha1_hex(&first))
    );
    std::fs::write(dir.join("Gemfile.lock"), "rake (13.1)\n").unwrap();
    git(dir, &["commit", "-q", "-am", "three"]);
    let third = git(dir, &["rev-parse", "HEAD"]);
    assert_eq!(
        key(&pipeline, &LocalContext::discover(dir)),
        format!("gems-{}-non_protected", sha1_hex(&third))
    );
}
