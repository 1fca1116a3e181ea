//! Every refusal names the key, the job and the position, and says how to fix it.

mod common;

use common::context;
use glrunner_pipeline::{Pipeline, PipelineError, UnsupportedKey};

fn parse(yaml: &str) -> Result<Pipeline, PipelineError> {
    Pipeline::parse(yaml, "ci.yml")
}

fn unsupported(err: PipelineError) -> UnsupportedKey {
    match err {
        PipelineError::Unsupported(u) => u,
        other => panic!("expected an unsupported-key error, got:\n{other}"),
    }
}

fn invalid_at(err: &PipelineError) -> (usize, usize) {
    match err {
        PipelineError::Invalid { at, .. } => (at.line, at.column),
        other => panic!("expected an invalid-config error, got:\n{other}"),
    }
}

/// Job keys GitLab knows that glrunner cannot run yet, with a valid value for each.
const UNSUPPORTED_JOB_KEYS: &[(&str, &str)] = &[
    ("trigger", "other/project"),
    ("release", "{tag_name: v1}"),
    ("secrets", "{TOKEN: {vault: a/b@c}}"),
    ("id_tokens", "{ID: {aud: x}}"),
    ("pages", "{publish: public}"),
    ("identity", "google_cloud"),
    ("run", "[{name: hello, script: echo hi}]"),
    ("inputs", "{env: prod}"),
];

#[test]
fn each_unsupported_job_key_names_itself_the_job_and_the_position() {
    for (key, value) in UNSUPPORTED_JOB_KEYS {
        let yaml = format!(
            "stages: [build, test]\nok:\n  script: echo ok\nbroken:\n  stage: test\n  {key}: {value}\n  \
             script: echo hi\n"
        );
        let pipeline =
            parse(&yaml).unwrap_or_else(|e| panic!("`{key}` should not fail the file:\n{e}"));
        assert_eq!(pipeline.job_names(), ["ok", "broken"], "{key}");
        assert!(pipeline.job_payload("ok", &context()).is_ok(), "{key}");

        let err = pipeline.job_payload("broken", &context()).unwrap_err();
        let text = err.to_string();
        let u = unsupported(err);
        assert_eq!(u.key, *key);
        assert_eq!(u.job.as_deref(), Some("broken"));
        assert_eq!((u.at.line, u.at.column), (6, 3), "{key}");
        assert!(
            text.starts_with(&format!("ci.yml:6:3: job `broken` uses `{key}`")),
            "{text}"
        );
        assert!(text.contains("\n  fix: "), "{text}");
    }
}

#[test]
fn job_level_when_accepts_gitlab_values_only() {
    for when in ["on_success", "on_failure", "always", "manual"] {
        let pipeline = parse(&format!("job:\n  script: make\n  when: {when}\n")).unwrap();
        assert!(pipeline.job("job").is_ok(), "{when}");
    }
    // `never` exists only in rules.
    for (yaml, at) in [
        ("job:\n  script: make\n  when: never\n", (3, 9)),
        ("job:\n  script: make\n  when: sometimes\n", (3, 9)),
        ("job:\n  script: make\n  when: delayed\n", (1, 1)),
        ("job:\n  script: make\n  start_in: 5 minutes\n", (3, 3)),
    ] {
        let err = parse(yaml).unwrap_err();
        assert_eq!(invalid_at(&err), at, "{err}");
    }
}

#[test]
fn unsupported_parts_of_supported_keys_are_refused_for_their_job() {
    let cases = [
        (
            "needs: [{pipeline: $PARENT_PIPELINE_ID, job: gen}]",
            "needs:pipeline",
        ),
        (
            "needs: [{project: a/b, job: gen, ref: main}]",
            "needs:project",
        ),
        ("only: {kubernetes: active}", "only:kubernetes"),
        (
            "rules: [{exists: {paths: [x], project: a/b}}]",
            "rules:exists:project",
        ),
        ("services: [{name: redis, ports: [6379]}]", "ports"),
    ];
    for (line, key) in cases {
        let yaml = format!("ok:\n  script: x\nbroken:\n  script: y\n  {line}\n");
        let pipeline = parse(&yaml).unwrap_or_else(|e| panic!("{line}: {e}"));
        let u = unsupported(pipeline.job("broken").unwrap_err());
        assert_eq!(u.key, key, "{line}");
        assert_eq!(u.job.as_deref(), Some("broken"));
        assert_eq!(u.at.line, 5, "{line}");
        assert!(pipeline.job("ok").is_ok());
    }
}

#[test]
fn top_level_features_refuse_the_whole_file() {
    let cases = [
        (
            "include:\n  - remote: https://example.com/ci.yml\njob:\n  script: x\n",
            "include:remote",
            2,
        ),
        (
            "include: https://example.com/ci.yml\njob:\n  script: x\n",
            "include:remote",
            1,
        ),
        (
            "include:\n  - template: Auto-DevOps.gitlab-ci.yml\njob:\n  script: x\n",
            "include:template",
            2,
        ),
        (
            "include:\n  - project: acme/ci\n    file: base.yml\njob:\n  script: x\n",
            "include:project",
            2,
        ),
        (
            "include:\n  - component: gitlab.com/acme/c/build@1.0\njob:\n  script: x\n",
            "include:component",
            2,
        ),
        (
            "include:\n  - local: ci/a.yml\n    inputs: {env: prod}\njob:\n  script: x\n",
            "include:inputs",
            3,
        ),
        (
            "default:\n  id_tokens: {A: {aud: x}}\njob:\n  script: x\n",
            "default:id_tokens",
            2,
        ),
        (
            "spec:\n  inputs:\n    env: {}\n---\njob:\n  script: x\n",
            "spec:inputs",
            1,
        ),
    ];
    for (yaml, key, line) in cases {
        let err = parse(yaml).unwrap_err();
        let text = err.to_string();
        let u = unsupported(err);
        assert_eq!(u.key, key, "{text}");
        assert!(u.job.is_none(), "{text}");
        assert_eq!(u.at.line, line, "{text}");
        assert!(
            text.contains(&format!("this file uses `{key}`")) && text.contains("fix:"),
            "{text}"
        );
    }
}

#[test]
fn harmless_keys_are_accepted_and_change_nothing() {
    let plain = parse("job:\n  script: make\n").unwrap();
    let decorated = parse(
        "default:\n  interruptible: true\n  retry: 1\n  tags: [docker]\n\
         job:\n  script: make\n  tags: [linux]\n  interruptible: false\n  retry: {max: 2, when: [script_failure]}\n  \
         environment: {name: review/$CI_COMMIT_REF_SLUG}\n  coverage: '/(\\d+)%/'\n  resource_group: deploy\n  \
         when: on_success\n",
    )
    .unwrap();
    let ctx = context();
    let a = plain.job_payload("job", &ctx).unwrap();
    let b = decorated.job_payload("job", &ctx).unwrap();
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.image, b.image);
    assert_eq!(a.runner_info, b.runner_info);
    assert_eq!(a.variables.len(), b.variables.len());
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let err = parse("stages: [build]\nbuild:\n  script: [make\n  stage: build\n").unwrap_err();
    let PipelineError::Syntax { at, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(at.line, 4, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("ci.yml:4:{}: YAML syntax error", at.column))
    );

    let err = parse("build:\n  script: echo: hi: there\n").unwrap_err();
    let PipelineError::Syntax { at, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((at.line, at.column), (2, 15), "{err}");
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    let err = parse("build:\n  scirpt: make\n  script: make\n").unwrap_err();
    assert_eq!(invalid_at(&err), (2, 3));
    let text = err.to_string();
    assert!(
        text.contains("unknown key `scirpt`") && text.contains("did you mean `script`"),
        "{text}"
    );

    let err = parse("default:\n  stage: build\njob:\n  script: x\n").unwrap_err();
    assert_eq!(invalid_at(&err), (2, 3));
}

#[test]
fn unknown_job_lists_the_available_ones() {
    let pipeline = parse(
        "stages: [build, test]\nunit:\n  script: x\n.template:\n  script: y\ncompile:\n  stage: build\n  script: z\n",
    )
    .unwrap();
    for wanted in ["deploy", ".template"] {
        let err = pipeline.job_payload(wanted, &context()).unwrap_err();
        let PipelineError::UnknownJob { available, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(available, &["compile", "unit"]);
        assert!(
            err.to_string().contains("available jobs: compile, unit"),
            "{err}"
        );
    }
}

#[test]
fn invalid_jobs_fail_the_file_at_their_position() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "stages: [build]\njob:\n  stage: test\n  script: x\n",
            (3, 10),
            "add `test` to the top-level `stages:`",
        ),
        ("job:\n  image: alpine\n", (1, 1), "has no `script:`"),
        (
            "job:\n  script: x\n  timeout: soon\n",
            (3, 12),
            "`soon` is not a duration",
        ),
        (
            "job:\n  script:\n    - echo\n    - 42\n",
            (4, 7),
            "quote the command",
        ),
        (
            "job:\n  script: x\n  variables:\n    EMPTY:\n",
            (4, 5),
            "EMPTY: \"",
        ),
        (
            "job:\n  script: !shell make\n",
            (2, 11),
            "unknown YAML tag `!shell`",
        ),
        ("job: [make]\n", (1, 1), "a job is a mapping"),
        (
            "job:\n  script: x\n  allow_failure: maybe\n",
            (3, 18),
            "exit_codes",
        ),
        ("job:\n  script: []\n", (2, 11), "is empty"),
    ];
    for (yaml, position, needle) in cases {
        let err = parse(yaml).unwrap_err();
        assert_eq!(invalid_at(&err), *position, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn empty_and_missing_files() {
    let err = parse("# nothing yet\n").unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join(".gitlab-ci.yml");
    let err = Pipeline::load(&missing).unwrap_err();
    assert!(matches!(err, PipelineError::Read { .. }));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}
