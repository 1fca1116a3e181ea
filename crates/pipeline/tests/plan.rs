//! Whole-pipeline runs of the `shop` fixture (includes, workflow, rules, needs, parallel and matrix,
//! artifacts, dotenv, cache): which jobs run, in which order, and what each payload carries.

mod common;

use common::{fixture, git, names, sha1_hex};
use glrunner_pipeline::{
    AllowFailure, GitFacts, JobResult, JobState, JobStatus, LocalArtifacts, LocalContext, Next,
    Pipeline, PipelineError, Plan, Selection,
};
use glrunner_protocol::JobResponse;
use std::path::PathBuf;

fn shop_dir() -> PathBuf {
    fixture("shop")
}

fn on(branch: Option<&str>, tag: Option<&str>) -> LocalContext {
    let mut git = GitFacts::fallback("tests use no repository");
    git.branch = branch.map(str::to_owned);
    git.tag = tag.map(str::to_owned);
    git.default_branch = "main".into();
    LocalContext::new(shop_dir(), git)
}

fn shop(ctx: &LocalContext) -> Pipeline {
    Pipeline::load_with(shop_dir().join(".gitlab-ci.yml"), ctx)
        .unwrap_or_else(|e| panic!("the shop fixture should load:\n{e}"))
}

fn value<'a>(payload: &'a JobResponse, key: &str) -> Option<&'a str> {
    payload
        .variables
        .iter()
        .rev()
        .find(|v| v.key == key)
        .map(|v| v.value.as_str())
}

#[test]
fn feature_branch_runs_in_waves_of_needs_and_stages() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    assert_eq!(
        names(&plan),
        [
            // Wave 1: nothing to wait for (`needs: []`, or the first stage).
            "versions",
            "frontend:build",
            "lint",
            // Wave 2: needs `versions`.
            "backend:build",
            // Wave 3: needs `backend:build`, or waits for the earlier stages.
            "backend:test 1/3",
            "backend:test 2/3",
            "backend:test 3/3",
            "frontend:test: [chromium, desktop]",
            "frontend:test: [firefox, desktop]",
            "frontend:test: [webkit, mobile]",
            "docs",
            "package",
            "deploy:review",
            "notify:failure",
            "cleanup",
        ]
    );
    let excluded: Vec<&str> = plan.excluded().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(excluded, ["deploy:production"]);
    assert_eq!(plan.pipeline_name(), Some("Shop pipeline for feature/cart"));
    // `include: ci/jobs/*.yml` found both job files; the tag-only file was not included.
    let files: Vec<String> = pipeline
        .files()
        .iter()
        .map(|f| {
            f.strip_prefix(shop_dir())
                .unwrap_or(f)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        files,
        [
            ".gitlab-ci.yml",
            "ci/templates.yml",
            "ci/jobs/backend.yml",
            "ci/jobs/frontend.yml"
        ]
    );
}

#[test]
fn default_branch_makes_production_manual_and_leaves_review_out() {
    let ctx = on(Some("main"), None);
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let review = plan
        .excluded()
        .iter()
        .find(|e| e.name == "deploy:review")
        .unwrap();
    assert!(review.reason.contains("no rule"), "{}", review.reason);
    let production = plan
        .jobs()
        .iter()
        .find(|j| j.name == "deploy:production")
        .unwrap();
    assert_eq!(production.when, glrunner_pipeline::rules::JobWhen::Manual);
    // `when: manual` from a rule without `allow_failure` is not allowed to fail.
    assert_eq!(production.allow_failure, AllowFailure::No);

    let mut skipped = Vec::new();
    while let Some(step) = plan.next_step() {
        match step {
            Next::Run(name) => {
                plan.payload(&name, &ctx).unwrap();
                plan.record(&name, JobResult::new(JobStatus::Success))
                    .unwrap();
            }
            Next::Skip { name, reason } => skipped.push((name, reason)),
        }
    }
    let skipped_names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        skipped_names,
        ["deploy:production", "notify:failure", "cleanup"]
    );
    assert!(skipped[0].1.contains("manual job"), "{}", skipped[0].1);
    // A manual job that may not fail blocks the later stages, as it blocks a GitLab pipeline, even
    // for `when: always`.
    assert!(
        skipped[2].1.contains("waits for a manual job")
            && skipped[2].1.contains("deploy:production")
    );
    assert!(plan.succeeded());
    assert!(matches!(
        plan.state("package"),
        Some(JobState::Finished { .. })
    ));
}

#[test]
fn a_played_manual_job_runs_and_unblocks_what_waits_for_it() {
    let ctx = on(Some("main"), None);
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    plan.play("deploy:production").unwrap();
    plan.play("package").unwrap();
    assert!(plan.play("no such job").is_err());
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    while let Some(step) = plan.next_step() {
        match step {
            Next::Run(name) => {
                plan.payload(&name, &ctx).unwrap();
                plan.record(&name, JobResult::new(JobStatus::Success))
                    .unwrap();
                ran.push(name);
            }
            Next::Skip { name, .. } => skipped.push(name),
        }
    }
    assert!(ran.iter().any(|n| n == "deploy:production"), "{ran:?}");
    assert!(
        ran.iter().any(|n| n == "cleanup"),
        "no longer blocked: {ran:?}"
    );
    assert_eq!(
        skipped,
        ["notify:failure"],
        "only the on_failure job is left out"
    );
}

#[test]
fn tags_include_the_release_file_and_use_production_variables() {
    let ctx = on(None, Some("v1.2.3"));
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    assert!(
        pipeline
            .files()
            .iter()
            .any(|f| f.ends_with("ci/release.yml"))
    );
    assert!(names(&plan).contains(&"release:notes"));
    // `docs` runs on branches only.
    assert!(
        plan.excluded()
            .iter()
            .any(|e| e.name == "docs" && e.reason.contains("only"))
    );
    let payload = plan_payload(&mut plan, &ctx, "versions");
    assert_eq!(value(&payload, "DEPLOY_ENV"), Some("production"));
    assert_eq!(value(&payload, "CI_COMMIT_TAG"), Some("v1.2.3"));
    assert_eq!(
        value(&payload, "CI_PIPELINE_NAME"),
        Some("Shop pipeline for v1.2.3")
    );
}

#[test]
fn merge_request_pipelines_and_workflow_rules_that_filter_everything() {
    // An open merge request makes branch pipelines `when: never`.
    let ctx = on(Some("feature/cart"), None).with_variable("CI_OPEN_MERGE_REQUESTS", "acme/shop!7");
    let pipeline = shop(&ctx);
    let err = pipeline.plan(&ctx, &Selection::All).unwrap_err();
    let PipelineError::NotCreated { at, .. } = &err else {
        panic!("{err}")
    };
    let at = at.as_ref().unwrap();
    assert_eq!((at.line, at.column), (13, 7), "{err}");
    assert!(at.file.ends_with("shop/.gitlab-ci.yml"));
    let text = err.to_string();
    assert!(
        text.contains("when: never") && text.contains("branch `feature/cart`"),
        "{text}"
    );

    // A detached HEAD without a tag matches no rule.
    let detached = on(None, None);
    let err = shop(&detached)
        .plan(&detached, &Selection::All)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no `workflow:rules` entry matches"),
        "{err}"
    );

    // The merge request event source is let through by the first rule.
    let mr = on(Some("feature/cart"), None).with_source("merge_request_event");
    let pipeline = shop(&mr);
    let plan = pipeline.plan(&mr, &Selection::All).unwrap();
    assert!(names(&plan).contains(&"lint"));
}

fn plan_payload(plan: &mut Plan<'_>, ctx: &LocalContext, name: &str) -> JobResponse {
    loop {
        match plan.next_step() {
            Some(Next::Run(next)) if next == name => return plan.payload(name, ctx).unwrap(),
            Some(Next::Run(next)) => {
                plan.payload(&next, ctx).unwrap();
                plan.record(&next, JobResult::new(JobStatus::Success))
                    .unwrap();
            }
            Some(Next::Skip { .. }) => {}
            None => panic!("{name} never ran"),
        }
    }
}

#[test]
fn parallel_and_matrix_instances_carry_their_node_and_matrix_variables() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let test2 = pipeline.job_payload("backend:test 2/3", &ctx).unwrap();
    assert_eq!(value(&test2, "CI_NODE_INDEX"), Some("2"));
    assert_eq!(value(&test2, "CI_NODE_TOTAL"), Some("3"));
    assert_eq!(value(&test2, "CI_JOB_NAME"), Some("backend:test 2/3"));
    assert_eq!(value(&test2, "CI_JOB_NAME_SLUG"), Some("backend-test-2-3"));

    let webkit = pipeline
        .job_payload("frontend:test: [webkit, mobile]", &ctx)
        .unwrap();
    assert_eq!(value(&webkit, "BROWSER"), Some("webkit"));
    assert_eq!(value(&webkit, "VIEWPORT"), Some("mobile"));
    assert_eq!(value(&webkit, "CI_NODE_INDEX"), Some("3"));
    assert_eq!(value(&webkit, "CI_NODE_TOTAL"), Some("3"));
    let firefox = pipeline
        .job_payload("frontend:test: [firefox, desktop]", &ctx)
        .unwrap();
    assert_eq!(value(&firefox, "BROWSER"), Some("firefox"));
    assert_eq!(value(&firefox, "CI_NODE_INDEX"), Some("2"));

    // The base name selects every instance.
    let plan = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "frontend:test".into(),
                with_needs: false,
            },
        )
        .unwrap();
    assert_eq!(names(&plan).len(), 3);
}

#[test]
fn extends_merges_templates_services_variables_and_reports() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let test = pipeline.job_payload("backend:test 1/3", &ctx).unwrap();
    // `.go` then `.with-postgres`: variables merge, the later template adds its own.
    let yaml: Vec<(&str, &str)> = test
        .variables
        .iter()
        .skip_while(|v| v.key != "GO_VERSION")
        .take_while(|v| !v.key.starts_with("GITLAB_USER_"))
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        yaml,
        [
            ("GO_VERSION", "1.23"),
            ("DEPLOY_ENV", "none"),
            ("GOPATH", "$CI_PROJECT_DIR/.go"),
            ("CGO_ENABLED", "0"),
            ("DATABASE_URL", "postgres://postgres:test@db/shop"),
        ]
    );
    assert_eq!(test.image.as_ref().unwrap().name, "golang:$GO_VERSION");
    assert_eq!(
        test.steps[0].script,
        [
            "cd backend",
            "go test ./... -shard $CI_NODE_INDEX/$CI_NODE_TOTAL"
        ]
    );
    let db = &test.services[0];
    assert_eq!(
        (db.name.as_str(), db.alias.as_deref()),
        ("postgres:16", Some("db"))
    );
    assert_eq!(db.variables[0].key, "POSTGRES_PASSWORD");

    // Reports only: no archive entry; each report with GitLab's type, format and file name.
    let artifacts = test.artifacts.as_ref().unwrap();
    let shape: Vec<(&str, &str, &str, &str)> = artifacts
        .iter()
        .map(|a| {
            (
                a.artifact_type.as_str(),
                a.artifact_format.as_str(),
                a.name.as_str(),
                a.paths[0].as_str(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("junit", "gzip", "junit.xml", "backend/report.xml"),
            (
                "cobertura",
                "gzip",
                "cobertura-coverage.xml",
                "backend/coverage.xml"
            ),
        ]
    );
    assert!(
        artifacts
            .iter()
            .all(|a| a.when == glrunner_protocol::When::Always)
    );

    let build = pipeline.job_payload("frontend:build", &ctx).unwrap();
    let archive = &build.artifacts.as_ref().unwrap()[0];
    assert_eq!(
        (
            archive.artifact_type.as_str(),
            archive.artifact_format.as_str()
        ),
        ("archive", "zip")
    );
    assert_eq!(archive.paths, ["frontend/dist/"]);
    assert_eq!(archive.exclude, ["frontend/dist/**/*.map"]);
    let json = serde_json::to_value(&build).unwrap();
    assert_eq!(json["artifacts"][0]["exclude"][0], "frontend/dist/**/*.map");
    assert!(
        json["artifacts"][0].get("untracked").is_none(),
        "untracked is omitted when unset"
    );

    let backend = pipeline.job_payload("backend:build", &ctx).unwrap();
    let archive = &backend.artifacts.as_ref().unwrap()[0];
    assert_eq!(
        (archive.name.as_str(), archive.expire_in.as_str()),
        ("backend-$CI_COMMIT_SHORT_SHA", "1 week")
    );
}

#[test]
fn inherit_and_nested_references_shape_the_lint_job() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let lint = pipeline.job_payload("lint", &ctx).unwrap();
    // `inherit: default: [image]`: the image only, no before_script or cache.
    assert_eq!(lint.image.as_ref().unwrap().name, "alpine:3.20");
    assert_eq!(
        lint.steps[0].script,
        ["shellcheck scripts/*.sh", "yamllint ."]
    );
    assert!(lint.cache.is_empty());
    // `inherit: variables: false`.
    assert_eq!(value(&lint, "GO_VERSION"), None);
    assert_eq!(
        pipeline.job("lint").unwrap().allow_failure,
        AllowFailure::ExitCodes(vec![3])
    );
    // Every other job inherits the default before_script and cache.
    let docs = pipeline.job_payload("docs", &ctx).unwrap();
    assert_eq!(
        docs.steps[0].script,
        ["echo \"job $CI_JOB_NAME\"", "make docs"]
    );
    assert_eq!(
        docs.cache[0].key,
        "shared-$CI_COMMIT_REF_SLUG-non_protected"
    );
    assert_eq!(docs.cache[0].policy, "pull");
}

/// The git blob id of the shop fixture's file `path`, as git computes it.
fn git_blob(path: &str) -> String {
    git(&shop_dir(), &["hash-object", "--", path])
}

#[test]
fn cache_keys_from_files_digest_the_blob_ids_like_gitlab() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let build = pipeline.job_payload("backend:build", &ctx).unwrap();
    let blob = git_blob("backend/go.sum");
    // No prefix: the cache's index in the list; then GitLab's unprotected-ref suffix.
    assert_eq!(
        build.cache[0].key,
        format!("0-{}-non_protected", sha1_hex(&blob))
    );
    assert_eq!(build.cache[0].paths, [".go/pkg/mod/"]);
    assert_eq!(build.cache[0].policy, "pull-push");

    let web = pipeline.job_payload("frontend:build", &ctx).unwrap();
    let blob = git_blob("frontend/package-lock.json");
    assert_eq!(
        web.cache[0].key,
        format!("npm-{}-non_protected", sha1_hex(&blob))
    );
    assert_eq!(web.cache[0].fallback_keys, ["npm-main-non_protected"]);
}

fn archive(dir: &std::path::Path, name: &str) -> LocalArtifacts {
    let path = dir.join(format!("{}.zip", name.replace([':', ' ', '/'], "_")));
    std::fs::write(&path, name).unwrap();
    LocalArtifacts {
        path,
        size: name.len() as u64,
    }
}

#[test]
fn artifacts_and_dotenv_flow_to_dependents_and_failures_skip_what_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    let mut payloads = std::collections::HashMap::new();
    while let Some(step) = plan.next_step() {
        let name = match step {
            Next::Run(name) => name,
            Next::Skip { name, reason } => {
                skipped.push((name, reason));
                continue;
            }
        };
        let payload = plan.payload(&name, &ctx).unwrap();
        let mut result = JobResult::new(JobStatus::Success);
        match name.as_str() {
            "versions" => result.dotenv = vec![("VERSION".into(), "1.2.3".into())],
            "backend:build" | "frontend:build" => {
                result.artifacts = Some(archive(tmp.path(), &name))
            }
            "backend:test 2/3" => {
                result.status = JobStatus::Failed;
                result.exit_code = Some(1);
            }
            "lint" => {
                // Exit code 3 is an allowed failure.
                result.status = JobStatus::Failed;
                result.exit_code = Some(3);
            }
            _ => {}
        }
        plan.record(&name, result).unwrap();
        ran.push(name.clone());
        payloads.insert(name, payload);
    }

    // backend:build got versions' dotenv variable and lists it as a dependency (without an archive).
    let build = &payloads["backend:build"];
    assert_eq!(value(build, "VERSION"), Some("1.2.3"));
    let deps: Vec<&str> = build.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["versions"]);
    assert!(build.dependencies[0].artifacts_file.is_none());
    assert_eq!(build.dependencies[0].id, payloads["versions"].id);
    // The running job's token downloads dependencies, as in GitLab.
    assert_eq!(build.dependencies[0].token.expose(), build.token.expose());

    // Stage-scheduled matrix job with `dependencies: [frontend:build]` gets only that archive.
    let web = &payloads["frontend:test: [chromium, desktop]"];
    let deps: Vec<&str> = web.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["frontend:build"]);
    let file = web.dependencies[0].artifacts_file.as_ref().unwrap();
    assert_eq!(
        PathBuf::from(&file.filename),
        tmp.path().join("frontend_build.zip")
    );
    assert_eq!(file.size, "frontend:build".len() as u64);

    // docs waits for every earlier stage and downloads from all of them.
    let docs: Vec<&str> = payloads["docs"]
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(docs, ["versions", "frontend:build", "backend:build"]);

    // backend:test 2/3 failed: package (needs it) and deploy:review (needs package) are skipped;
    // notify:failure runs because a job of an earlier stage failed; cleanup always runs.
    let skipped_names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped_names, ["package", "deploy:review"]);
    assert!(
        skipped[0].1.contains("failed") && skipped[0].1.contains("backend:test 2/3"),
        "{:?}",
        skipped[0]
    );
    assert!(skipped[1].1.contains("did not run"), "{:?}", skipped[1]);
    assert!(
        ran.ends_with(&["notify:failure".to_owned(), "cleanup".to_owned()]),
        "{ran:?}"
    );
    assert!(!plan.succeeded());
    // lint's exit code 3 was an allowed failure.
    assert!(matches!(
        plan.state("lint"),
        Some(JobState::Finished { allowed: true, .. })
    ));
}

#[test]
fn one_job_with_or_without_what_it_waits_for() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let alone = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "package".into(),
                with_needs: false,
            },
        )
        .unwrap();
    assert_eq!(names(&alone), ["package"]);
    assert_eq!(
        alone.jobs()[0].needs.as_deref(),
        Some(&[][..]),
        "needs outside the plan are dropped"
    );

    let with_needs = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "package".into(),
                with_needs: true,
            },
        )
        .unwrap();
    assert_eq!(
        names(&with_needs),
        [
            "versions",
            "frontend:build",
            "backend:build",
            "backend:test 1/3",
            "backend:test 2/3",
            "backend:test 3/3",
            "package"
        ]
    );

    // A stage-scheduled job waits for every job of the earlier stages.
    let docs = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "docs".into(),
                with_needs: true,
            },
        )
        .unwrap();
    assert_eq!(
        names(&docs),
        ["versions", "frontend:build", "backend:build", "docs"]
    );

    // A job the rules leave out says why.
    let err = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "deploy:production".into(),
                with_needs: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, PipelineError::NotInPipeline { .. }), "{err}");
    assert!(
        err.to_string().contains("no rule in `rules:` matches"),
        "{err}"
    );
    let err = pipeline
        .plan(
            &ctx,
            &Selection::Job {
                name: "nope".into(),
                with_needs: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, PipelineError::UnknownJob { .. }), "{err}");
}

#[test]
fn user_variables_reach_rules_and_payloads() {
    let ctx = on(Some("feature/cart"), None)
        .with_variable("SKIP_LINT", "true")
        .with_variable("SKIP_DOCS", "1");
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let excluded: Vec<&str> = plan.excluded().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(excluded, ["lint", "docs", "deploy:production"]);
    let reason = &plan.excluded()[0].reason;
    assert!(reason.contains("when: never"), "{reason}");
    let review = plan_payload(&mut plan, &ctx, "deploy:review");
    // The matching rule's variables apply; the user's come last.
    assert_eq!(value(&review, "REVIEW_APP"), Some("yes"));
    assert_eq!(value(&review, "DEPLOY_ENV"), Some("review"));
    assert_eq!(review.variables.last().unwrap().key, "SKIP_DOCS");
}

#[test]
fn recording_out_of_turn_is_refused() {
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);
    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let err = plan
        .record("cleanup", JobResult::new(JobStatus::Success))
        .unwrap_err();
    assert!(err.to_string().contains("was not handed out"), "{err}");
    let err = plan
        .record("nope", JobResult::new(JobStatus::Success))
        .unwrap_err();
    assert!(err.to_string().contains("not part of this plan"), "{err}");
    // A job handed out and not recorded is handed out again.
    let first = plan.next_step();
    assert_eq!(first, plan.next_step());
}

/// The result a test run gives job `name` (lint fails as allowed, backend:test 2/3 fails).
fn scripted_result(tmp: &std::path::Path, name: &str) -> JobResult {
    let mut result = JobResult::new(JobStatus::Success);
    match name {
        "versions" => result.dotenv = vec![("VERSION".into(), "1.2.3".into())],
        "backend:build" | "frontend:build" => result.artifacts = Some(archive(tmp, name)),
        "backend:test 2/3" => {
            result.status = JobStatus::Failed;
            result.exit_code = Some(1);
        }
        "lint" => {
            result.status = JobStatus::Failed;
            result.exit_code = Some(3);
        }
        _ => {}
    }
    result
}

#[test]
fn ready_hands_out_every_startable_job_and_decides_as_the_sequential_run() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = on(Some("feature/cart"), None);
    let pipeline = shop(&ctx);

    // One job at a time, as a reference.
    let mut sequential = pipeline.plan(&ctx, &Selection::All).unwrap();
    let mut sequential_skips = Vec::new();
    while let Some(step) = sequential.next_step() {
        match step {
            Next::Run(name) => {
                sequential.payload(&name, &ctx).unwrap();
                sequential
                    .record(&name, scripted_result(tmp.path(), &name))
                    .unwrap();
            }
            Next::Skip { name, reason } => sequential_skips.push((name, reason)),
        }
    }

    let mut plan = pipeline.plan(&ctx, &Selection::All).unwrap();
    let first: Vec<Next> = plan.ready();
    assert_eq!(
        first,
        [
            Next::Run("versions".into()),
            Next::Run("frontend:build".into()),
            Next::Run("lint".into()),
        ],
        "the first wave starts at once"
    );
    assert!(plan.ready().is_empty(), "handed out once, not again");
    let mut running: std::collections::VecDeque<String> = first
        .into_iter()
        .map(|n| match n {
            Next::Run(name) => name,
            Next::Skip { .. } => unreachable!(),
        })
        .collect();
    let mut payloads = std::collections::HashMap::new();
    for name in &running {
        payloads.insert(name.clone(), plan.payload(name, &ctx).unwrap());
    }
    let mut skips = Vec::new();
    let mut finished = Vec::new();
    let mut rounds = 0;
    // Jobs end in the order they started; after each, whatever became startable starts.
    while let Some(name) = running.pop_front() {
        rounds += 1;
        assert!(rounds < 100, "the plan must come to an end");
        plan.record(&name, scripted_result(tmp.path(), &name))
            .unwrap();
        finished.push(name.clone());
        if name == "versions" {
            assert!(
                running.contains(&"frontend:build".to_owned()),
                "still running"
            );
        }
        for step in plan.ready() {
            match step {
                Next::Run(next) => {
                    if next == "backend:build" {
                        assert!(
                            !finished.contains(&"frontend:build".to_owned()),
                            "backend:build needs only versions, so it starts before frontend:build ends"
                        );
                    }
                    payloads.insert(next.clone(), plan.payload(&next, &ctx).unwrap());
                    running.push_back(next);
                }
                Next::Skip { name, reason } => skips.push((name, reason)),
            }
        }
    }
    assert!(plan.is_done());
    assert!(plan.ready().is_empty());
    // Same decisions as one job at a time: what is skipped, why, and how the pipeline ends.
    skips.sort();
    sequential_skips.sort();
    assert_eq!(skips, sequential_skips);
    assert_eq!(plan.succeeded(), sequential.succeeded());
    for job in plan.jobs() {
        let state = |p: &Plan<'_>| match p.state(&job.name) {
            Some(JobState::Finished {
                status, allowed, ..
            }) => format!("{status:?} {allowed}"),
            other => format!("{other:?}"),
        };
        assert_eq!(state(&plan), state(&sequential), "{}", job.name);
    }
    let build = &payloads["backend:build"];
    assert_eq!(value(build, "VERSION"), Some("1.2.3"));
    let docs: Vec<&str> = payloads["docs"]
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(docs, ["versions", "frontend:build", "backend:build"]);
}
