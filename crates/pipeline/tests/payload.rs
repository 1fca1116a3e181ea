//! Payloads built from realistic pipelines: steps, variables (order and flags), image, timeout.

mod common;

use common::{context, load, position, var, yaml_variables};
use glrunner_pipeline::{AllowFailure, Selection};
use glrunner_protocol::{STEP_AFTER_SCRIPT, STEP_SCRIPT, When};

#[test]
fn rust_project_jobs_in_stage_order() {
    let pipeline = load("rust.gitlab-ci.yml");
    assert_eq!(pipeline.job_names(), ["fmt", "clippy", "test", "build"]);
    assert_eq!(
        pipeline.stages(),
        [".pre", "check", "test", "build", ".post"]
    );
}

#[test]
fn script_step_is_before_script_then_script() {
    let pipeline = load("rust.gitlab-ci.yml");
    let payload = pipeline.job_payload("test", &context()).unwrap();
    assert_eq!(
        payload.steps.len(),
        1,
        "no after_script, so no after_script step"
    );
    let step = &payload.steps[0];
    assert_eq!(step.name, STEP_SCRIPT);
    assert_eq!(
        step.script,
        [
            "rustc --version",
            "cargo --version",
            "cargo test --workspace --locked"
        ]
    );
    assert_eq!(step.when, When::OnSuccess);
    assert!(!step.allow_failure);
    // `timeout: 1h 30m` on the job wins over `default: timeout: 30m`.
    assert_eq!(step.timeout, Some(5400));
    assert_eq!(payload.runner_info.timeout, Some(5400));
    assert_eq!(payload.image.as_ref().unwrap().name, "rust:1.95");
}

#[test]
fn after_script_step_always_runs_and_may_fail() {
    let pipeline = load("rust.gitlab-ci.yml");
    let payload = pipeline.job_payload("build", &context()).unwrap();
    let names: Vec<_> = payload.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [STEP_SCRIPT, STEP_AFTER_SCRIPT]);
    let after = &payload.steps[1];
    assert_eq!(
        after.script,
        ["echo \"build finished with status $CI_JOB_STATUS\""]
    );
    assert_eq!(after.when, When::Always);
    assert!(after.allow_failure);
    // The default timeout (30m) applies to the job and both steps.
    assert_eq!(payload.runner_info.timeout, Some(1800));
    assert!(payload.steps.iter().all(|s| s.timeout == Some(1800)));

    let image = payload.image.as_ref().unwrap();
    assert_eq!(image.name, "rust:1.95-slim");
    assert_eq!(image.entrypoint, [""]);
    assert_eq!(image.pull_policy, ["if-not-present"]);
    assert_eq!(
        pipeline.job("build").unwrap().allow_failure,
        AllowFailure::ExitCodes(vec![137])
    );

    // On the wire the step looks like GitLab's.
    let json = serde_json::to_value(&payload).unwrap();
    assert_eq!(json["steps"][1]["name"], "after_script");
    assert_eq!(json["steps"][1]["when"], "always");
    assert_eq!(json["steps"][1]["allow_failure"], true);
    assert_eq!(json["runner_info"]["timeout"], 1800);
}

#[test]
fn variables_order_and_flags() {
    let pipeline = load("rust.gitlab-ci.yml");
    let ctx = context();
    let payload = pipeline.job_payload("test", &ctx).unwrap();

    // The job's value replaces the top-level one in place; its own additions follow.
    assert_eq!(
        yaml_variables(&payload),
        [
            ("CARGO_HOME", "$CI_PROJECT_DIR/.cargo"),
            ("CARGO_TERM_COLOR", "always"),
            ("RUST_BACKTRACE", "full"),
            ("RUSTFLAGS", "-D warnings"),
            ("RUST_TEST_THREADS", "2"),
        ]
    );
    for (key, _) in yaml_variables(&payload) {
        let v = var(&payload, key);
        assert!(v.public && !v.masked && !v.raw && !v.file, "{key}: {v:?}");
    }

    // GitLab's order: persisted job variables, job, project and pipeline ones, then the YAML's.
    let order = [
        "CI_PIPELINE_ID",
        "CI_JOB_ID",
        "CI_JOB_TOKEN",
        "CI_REPOSITORY_URL",
        "CI_JOB_NAME",
        "CI_JOB_STAGE",
        "CI_SERVER_URL",
        "CI_PROJECT_PATH",
        "CI_PIPELINE_SOURCE",
        "CI_COMMIT_SHA",
        "CI_COMMIT_REF_NAME",
        "CARGO_HOME",
    ];
    let positions: Vec<usize> = order.iter().map(|k| position(&payload, k)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{order:?} at {positions:?}"
    );
    assert_eq!(positions[0], 0);

    let token = var(&payload, "CI_JOB_TOKEN");
    assert_eq!(token.value, payload.token.expose());
    assert!(!token.public && token.masked);
    assert!(payload.token.expose().starts_with("glcbt-"));
    let repo = var(&payload, "CI_REPOSITORY_URL");
    assert!(!repo.public && !repo.masked);
    assert_eq!(repo.value, payload.git_info.repo_url.expose());

    assert_eq!(var(&payload, "CI_JOB_NAME").value, "test");
    assert_eq!(var(&payload, "CI_JOB_STAGE").value, "test");
    assert_eq!(var(&payload, "CI_PIPELINE_SOURCE").value, "push");
    assert_eq!(var(&payload, "CI").value, "true");
    assert_eq!(var(&payload, "GITLAB_CI").value, "true");
    assert_eq!(var(&payload, "CI_JOB_ID").value, payload.id.to_string());
    assert_eq!(payload.job_info.name, "test");
    assert_eq!(payload.job_info.stage, "test");

    // `file` and `raw` only appear on the wire when true.
    let json = serde_json::to_value(&payload).unwrap();
    let first = json["variables"][0].as_object().unwrap();
    assert!(
        !first.contains_key("file") && !first.contains_key("raw"),
        "{first:?}"
    );
}

#[test]
fn each_payload_gets_its_own_id_and_token() {
    let pipeline = load("rust.gitlab-ci.yml");
    let ctx = context();
    let a = pipeline.job_payload("fmt", &ctx).unwrap();
    let b = pipeline.job_payload("fmt", &ctx).unwrap();
    assert_eq!(b.id, a.id + 1);
    assert_ne!(a.token, b.token);
    assert_eq!(a.job_info.pipeline_id, b.job_info.pipeline_id);
    assert_eq!(var(&a, "CI_JOB_STAGE").value, "check");
    // The job token never shows in Debug output.
    assert!(!format!("{a:?}").contains(a.token.expose()));
}

#[test]
fn node_project_top_level_image_and_harmless_keys() {
    let pipeline = load("node.gitlab-ci.yml");
    assert_eq!(
        pipeline.job_names(),
        ["lint", "test:unit", "test:e2e", "deploy"]
    );
    let ctx = context();
    let unit = pipeline.job_payload("test:unit", &ctx).unwrap();
    assert_eq!(unit.image.as_ref().unwrap().name, "node:22-alpine");
    assert_eq!(
        unit.steps[0].script,
        [
            "npm ci --prefer-offline --no-audit",
            "npm test -- --ci --reporters=default"
        ]
    );
    assert_eq!(unit.runner_info.timeout, Some(5400));
    assert_eq!(var(&unit, "CI_JOB_NAME_SLUG").value, "test-unit");
    assert_eq!(
        yaml_variables(&unit),
        [
            ("NODE_ENV", "test"),
            ("npm_config_cache", "$CI_PROJECT_DIR/.npm")
        ]
    );
    // No timeout anywhere: GitLab's project default of one hour.
    let lint = pipeline.job_payload("lint", &ctx).unwrap();
    assert_eq!(lint.runner_info.timeout, Some(3600));
}

#[test]
fn node_project_services_reach_the_payload_and_rules_decide_in_the_plan() {
    let pipeline = load("node.gitlab-ci.yml");
    let ctx = context();
    let e2e = pipeline.job_payload("test:e2e", &ctx).unwrap();
    assert_eq!(e2e.services.len(), 1);
    assert_eq!(e2e.services[0].name, "postgres:16");
    assert_eq!(e2e.services[0].alias.as_deref(), Some("db"));
    let json = serde_json::to_value(&e2e).unwrap();
    assert_eq!(json["services"][0]["alias"], "db");

    // `deploy` runs only on the default branch.
    let on = |branch: &str| {
        let mut git = glrunner_pipeline::GitFacts::fallback("test");
        git.branch = Some(branch.to_owned());
        git.default_branch = "main".to_owned();
        glrunner_pipeline::LocalContext::new(ctx.project_dir.clone(), git)
    };
    let main = on("main");
    let plan = pipeline.plan(&main, &Selection::All).unwrap();
    let names = common::names(&plan);
    assert_eq!(names, ["lint", "test:unit", "test:e2e", "deploy"]);
    let feature = on("feature/x");
    let plan = pipeline.plan(&feature, &Selection::All).unwrap();
    assert!(plan.jobs().iter().all(|j| j.name != "deploy"));
    assert_eq!(plan.excluded().len(), 1);
    assert_eq!(plan.excluded()[0].name, "deploy");
    assert!(
        plan.excluded()[0].reason.contains("no rule"),
        "{:?}",
        plan.excluded()
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let pipeline = load("anchors.gitlab-ci.yml");
    assert_eq!(pipeline.job_names(), ["build", "test", "lint"]);
    let ctx = context();

    let build = pipeline.job_payload("build", &ctx).unwrap();
    // before_script from the template, then the nested script lists flattened in order.
    assert_eq!(
        build.steps[0].script,
        [
            "echo \"setting up\"",
            "export PATH=\"$PWD/bin:$PATH\"",
            "echo \"setting up\"",
            "export PATH=\"$PWD/bin:$PATH\"",
            "python -m build",
            "ls dist",
            "echo built",
        ]
    );
    assert_eq!(build.job_info.stage, "build");
    assert_eq!(build.runner_info.timeout, Some(7200));
    let image = build.image.as_ref().unwrap();
    assert_eq!(
        (image.name.as_str(), image.entrypoint.as_slice()),
        ("python:3.13", &["/bin/sh".to_owned(), "-c".to_owned()][..])
    );
    assert_eq!(
        yaml_variables(&build),
        [
            ("LANG", "C.UTF-8"),
            ("APP_ENV", "ci"),
            ("PIP_CACHE_DIR", ".pip")
        ]
    );

    // Keys written in the job override the merged template's.
    let test = pipeline.job_payload("test", &ctx).unwrap();
    assert_eq!(
        yaml_variables(&test),
        [
            ("LANG", "C.UTF-8"),
            ("APP_ENV", "test"),
            ("PYTEST_ADDOPTS", "-x")
        ]
    );
    assert_eq!(test.runner_info.timeout, Some(2700));
    assert_eq!(
        test.steps[0].script.last().map(String::as_str),
        Some("pytest")
    );

    // In `<<: [*a, *b]` the earlier mapping wins: the template's 2h beats the inline 10m.
    let lint = pipeline.job("lint").unwrap();
    assert_eq!(lint.timeout.map(|t| t.as_secs()), Some(7200));
    assert_eq!(lint.allow_failure, AllowFailure::Yes);
}

#[test]
fn deprecated_global_defaults_apply_unless_the_job_sets_its_own() {
    let pipeline = load("global-defaults.gitlab-ci.yml");
    assert_eq!(pipeline.job_names(), ["build", "custom"]);
    let ctx = context();

    let build = pipeline.job_payload("build", &ctx).unwrap();
    assert_eq!(build.image.as_ref().unwrap().name, "debian:bookworm");
    assert_eq!(build.steps[0].script, ["echo \"global before\"", "make"]);
    assert_eq!(build.steps[1].script, ["echo \"global after\""]);
    // Numbers and booleans reach the job as the strings GitLab sends.
    assert_eq!(
        yaml_variables(&build),
        [
            ("GREETING", "hello"),
            ("RETRIES", "3"),
            ("PRICE", "1.5"),
            ("DEBUG", "false")
        ]
    );

    let custom = pipeline.job_payload("custom", &ctx).unwrap();
    assert_eq!(custom.image.as_ref().unwrap().name, "alpine:3.20");
    assert_eq!(
        custom.steps[0].script,
        ["make deploy"],
        "`before_script: []` drops the global one"
    );
    assert_eq!(custom.steps[1].script, ["echo \"own after\""]);
    assert_eq!(var(&custom, "GREETING").value, "goodbye");
    let literal = var(&custom, "LITERAL");
    assert_eq!(literal.value, "$GREETING world");
    assert!(literal.raw);
    let json = serde_json::to_value(&custom).unwrap();
    let literal_json = json["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "LITERAL")
        .unwrap();
    assert_eq!(literal_json["raw"], true);
}

#[test]
fn git_depth_variable_sets_the_clone_depth() {
    let pipeline = glrunner_pipeline::Pipeline::parse(
        "variables:\n  GIT_DEPTH: 3\nshallow:\n  script: make\nfull:\n  variables:\n    GIT_DEPTH: 0\n  script: make\n",
        "ci.yml",
    )
    .unwrap();
    let ctx = context();
    assert_eq!(
        pipeline
            .job_payload("shallow", &ctx)
            .unwrap()
            .git_info
            .depth,
        3
    );
    assert_eq!(
        pipeline.job_payload("full", &ctx).unwrap().git_info.depth,
        0
    );
}
