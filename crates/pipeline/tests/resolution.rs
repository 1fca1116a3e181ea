//! `include: local`, `extends` and `!reference`: the merged document compared with the YAML GitLab
//! would build, and errors pointing at the file, line and column that caused them.

use glrunner_pipeline::document::{Document, Mapping, Node, Value};
use glrunner_pipeline::resolution::{self, IncludeContext};
use glrunner_pipeline::rules::{Facts, RefFacts};
use glrunner_pipeline::{Pipeline, PipelineError};
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::path::Path;

fn plain(node: &Node) -> J {
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(plain).collect()),
        Value::Map(m) => plain_map(m),
        Value::Tagged(tag, inner) => json!({ tag.clone(): plain(inner) }),
    }
}

fn plain_map(m: &Mapping) -> J {
    J::Object(m.iter().map(|e| (e.key.clone(), plain(&e.value))).collect())
}

/// Root keys in order, as the merge must keep them.
fn keys(m: &Mapping) -> Vec<&str> {
    m.keys().collect()
}

fn facts_for(dir: &Path, vars: &[(&str, &str)]) -> Facts {
    let variables: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Facts::new(variables, RefFacts::default(), dir.to_path_buf())
}

/// Resolve `main` in a project holding `files`; `vars` are what include rules see.
fn resolve_in(
    files: &[(&str, &str)],
    main: &str,
    vars: &[(&str, &str)],
) -> Result<J, PipelineError> {
    resolve_root(files, main, vars).map(|m| plain_map(&m))
}

fn resolve_root(
    files: &[(&str, &str)],
    main: &str,
    vars: &[(&str, &str)],
) -> Result<Mapping, PipelineError> {
    let tmp = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = tmp.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let main_path = tmp.path().join(".gitlab-ci.yml");
    std::fs::write(&main_path, main).unwrap();
    let dir = tmp.path().to_path_buf();
    let facts = || facts_for(&dir, vars);
    let includes = IncludeContext::new(dir.clone(), &facts);
    let doc = Document::parse(main, &main_path)?;
    let resolved = resolution::resolve(doc, &includes)?;
    Ok(resolved.root)
}

fn resolve(main: &str) -> Result<J, PipelineError> {
    resolve_in(&[], main, &[])
}

fn expected(yaml: &str) -> J {
    plain_map(&Document::parse(yaml, "expected.yml").unwrap().root)
}

fn invalid(err: PipelineError) -> (String, usize, usize, String) {
    match &err {
        PipelineError::Invalid { at, .. } => (
            at.file.file_name().unwrap().to_string_lossy().into_owned(),
            at.line,
            at.column,
            err.to_string(),
        ),
        other => panic!("expected an invalid-config error, got:\n{other}"),
    }
}

#[test]
fn extends_deep_merges_multiple_parents_over_several_levels() {
    let got = resolve(
        ".base:
  image: ruby:3.3
  variables: {A: base, B: base}
  script: [base]
  rules:
    - if: $CI_COMMIT_TAG
.tests:
  extends: .base
  variables: {B: tests, C: tests}
  services: [postgres:16]
.lint:
  variables: {D: lint}
  tags: [small]
rspec:
  extends: [.tests, .lint]
  variables: {C: rspec}
  script: [bundle exec rspec]
",
    )
    .unwrap();
    assert_eq!(
        got["rspec"],
        expected(
            "x:
  image: ruby:3.3
  variables: {A: base, B: tests, C: rspec, D: lint}
  script: [bundle exec rspec]
  rules:
    - if: $CI_COMMIT_TAG
  extends: [.tests, .lint]
  services: [postgres:16]
  tags: [small]
"
        )["x"]
    );
}

#[test]
fn extends_replaces_lists_instead_of_merging_them() {
    let got = resolve(
        ".t:\n  script: [a, b]\n  artifacts: {paths: [x, y], when: always}\njob:\n  extends: .t\n  \
         script: [c]\n  artifacts: {paths: [z]}\n",
    )
    .unwrap();
    assert_eq!(got["job"]["script"], json!(["c"]));
    assert_eq!(
        got["job"]["artifacts"],
        json!({"paths": ["z"], "when": "always"})
    );
}

#[test]
fn extends_errors_point_at_the_extends_that_caused_them() {
    let (file, line, column, text) = invalid(
        resolve(".a:\n  extends: .b\n.b:\n  extends: .a\njob:\n  extends: .a\n  script: x\n")
            .unwrap_err(),
    );
    assert_eq!(
        (file.as_str(), line, column),
        (".gitlab-ci.yml", 2, 12),
        "{text}"
    );
    assert!(
        text.contains("circular dependency detected in `extends`"),
        "{text}"
    );
    assert!(text.contains(".a → .b → .a"), "{text}");

    let (_, line, column, text) =
        invalid(resolve("job:\n  extends: [.missing, .other]\n  script: x\n").unwrap_err());
    assert_eq!((line, column), (2, 12), "{text}");
    assert!(
        text.contains("unknown keys in `extends` (.missing, .other)"),
        "{text}"
    );

    let (_, line, _, text) =
        invalid(resolve(".t: [a]\njob:\n  extends: .t\n  script: x\n").unwrap_err());
    assert_eq!(line, 3, "{text}");
    assert!(text.contains("invalid base hashes"), "{text}");

    // Eleven ancestors is too deep; ten are fine.
    let chain = |n: usize| {
        let mut yaml = String::from(".t0:\n  script: x\n");
        for i in 1..=n {
            yaml.push_str(&format!(".t{i}:\n  extends: .t{}\n", i - 1));
        }
        yaml.push_str(&format!("job:\n  extends: .t{n}\n"));
        yaml
    };
    assert!(resolve(&chain(10)).is_ok());
    let (_, _, _, text) = invalid(resolve(&chain(11)).unwrap_err());
    assert!(text.contains("nesting too deep in `extends`"), "{text}");
}

#[test]
fn references_resolve_after_extends_and_nest() {
    let got = resolve(
        ".setup:
  script:
    - echo setup
    - !reference [.more, script]
.more:
  script: [echo more]
.vars:
  variables:
    URL: https://example.com
    TOKEN_FILE: /run/token
.base:
  after_script: [echo base after]
job:
  extends: .base
  variables:
    URL: !reference [.vars, variables, URL]
  script:
    - !reference [.setup, script]
    - make
other:
  after_script: !reference [job, after_script]
  variables: !reference [.vars, variables]
  script: !reference [job, script]
",
    )
    .unwrap();
    assert_eq!(
        got["job"]["variables"],
        json!({"URL": "https://example.com"})
    );
    assert_eq!(
        got["job"]["script"],
        json!([["echo setup", ["echo more"]], "make"])
    );
    // `job`'s after_script came from `.base` through extends.
    assert_eq!(got["other"]["after_script"], json!(["echo base after"]));
    assert_eq!(
        got["other"]["variables"],
        json!({"URL": "https://example.com", "TOKEN_FILE": "/run/token"})
    );

    // Nested lists are flattened where commands are read.
    let pipeline = Pipeline::parse(
        ".a:\n  script: [one, !reference [.b, script]]\n.b:\n  script: [two]\njob:\n  script:\n    - !reference [.a, script]\n    - three\n",
        "ci.yml",
    )
    .unwrap();
    assert_eq!(pipeline.job("job").unwrap().script, ["one", "two", "three"]);
}

#[test]
fn reference_errors_point_at_the_tag() {
    let (_, line, column, text) = invalid(
        resolve(".a:\n  script: [x]\njob:\n  script:\n    - !reference [.a, before_script]\n")
            .unwrap_err(),
    );
    assert_eq!((line, column), (5, 7), "{text}");
    assert!(
        text.contains("`!reference [.a, before_script]` could not be found"),
        "{text}"
    );

    let (_, line, _, text) = invalid(
        resolve(".a:\n  script: !reference [.b, script]\n.b:\n  script: !reference [.a, script]\njob:\n  script: x\n")
            .unwrap_err(),
    );
    assert!(line == 2 || line == 4, "{text}");
    assert!(text.contains("circular chain"), "{text}");

    let (_, line, _, text) = invalid(resolve("job:\n  script: !reference .a\n").unwrap_err());
    assert_eq!(line, 2, "{text}");
    assert!(text.contains("needs a list of names"), "{text}");

    // Eleven levels of references are too many.
    let mut yaml = String::from(".r0:\n  script: [x]\n");
    for i in 1..=11 {
        yaml.push_str(&format!(
            ".r{i}:\n  script: !reference [.r{}, script]\n",
            i - 1
        ));
    }
    yaml.push_str("job:\n  script: !reference [.r11, script]\n");
    let (_, _, _, text) = invalid(resolve(&yaml).unwrap_err());
    assert!(text.contains("more than 10 levels"), "{text}");
}

#[test]
fn includes_merge_in_order_and_the_including_file_wins() {
    let files = [
        (
            "ci/base.yml",
            "include: ci/nested.yml\nvariables: {A: base, B: base}\nstages: [build, test]\n\
             build:\n  script: [make]\n  variables: {X: base}\n  cache: {key: base, paths: [a, b]}\n",
        ),
        (
            "ci/nested.yml",
            "variables: {N: nested, A: nested}\n.tpl:\n  script: [tpl]\n",
        ),
        (
            "ci/override.yml",
            "variables: {B: override}\nbuild:\n  cache: {paths: [c]}\n",
        ),
    ];
    let root = resolve_root(
        &files,
        "include:\n  - local: ci/base.yml\n  - /ci/override.yml\nvariables: {C: main}\nbuild:\n  variables: {Y: main}\n",
        &[],
    )
    .unwrap();
    let got = plain_map(&root);
    assert_eq!(
        got,
        expected(
            "variables: {N: nested, A: base, B: override, C: main}
.tpl:
  script: [tpl]
stages: [build, test]
build:
  script: [make]
  variables: {X: base, Y: main}
  cache: {key: base, paths: [c]}
"
        )
    );
    // Merged keys keep their first position: the nested file's come first.
    assert_eq!(keys(&root), ["variables", ".tpl", "stages", "build"]);
    let vars: Vec<&str> = match &root.get("variables").unwrap().value {
        Value::Map(m) => m.keys().collect(),
        _ => panic!(),
    };
    assert_eq!(vars, ["N", "A", "B", "C"]);
}

#[test]
fn include_forms_wildcards_rules_and_variables() {
    let files = [
        ("ci/jobs/a.yml", "a:\n  script: [a]\n"),
        ("ci/jobs/b.yml", "b:\n  script: [b]\n"),
        ("ci/jobs/deep/c.yml", "c:\n  script: [c]\n"),
        ("ci/env/prod.yml", "prod:\n  script: [deploy]\n"),
        ("ci/tag.yml", "tag:\n  script: [release]\n"),
        ("ci/docker.yml", "docker:\n  script: [build]\n"),
        ("Dockerfile", "FROM alpine\n"),
    ];
    let main = "include:
  - ci/jobs/*.yml
  - local: ci/env/$DEPLOY.yml
  - local: ci/tag.yml
    rules:
      - if: $CI_COMMIT_TAG
  - local: ci/docker.yml
    rules:
      - exists: [Dockerfile]
";
    let got = resolve_root(&files, main, &[("DEPLOY", "prod")]).unwrap();
    assert_eq!(keys(&got), ["a", "b", "prod", "docker"]);
    let got = resolve_root(
        &files,
        &main.replace("*.yml", "**.yml"),
        &[("DEPLOY", "prod"), ("CI_COMMIT_TAG", "v1")],
    )
    .unwrap();
    assert_eq!(keys(&got), ["a", "b", "c", "prod", "tag", "docker"]);
    let got = resolve_root(&files, "include: ci/jobs/a.yml\n", &[]).unwrap();
    assert_eq!(keys(&got), ["a"]);
}

#[test]
fn include_errors_point_into_the_file_that_caused_them() {
    let err = resolve_in(
        &[],
        "include:\n  - local: ci/missing.yml\njob:\n  script: x\n",
        &[],
    )
    .unwrap_err();
    let (file, line, column, text) = invalid(err);
    assert_eq!(
        (file.as_str(), line, column),
        (".gitlab-ci.yml", 2, 12),
        "{text}"
    );
    assert!(
        text.contains("local file `ci/missing.yml` does not exist"),
        "{text}"
    );

    // A cycle through two files is reported in the file that closes it.
    let files = [
        ("ci/a.yml", "include: ci/b.yml\n"),
        ("ci/b.yml", "include: ci/a.yml\n"),
    ];
    let (file, line, _, text) =
        invalid(resolve_in(&files, "include: ci/a.yml\n", &[]).unwrap_err());
    assert_eq!((file.as_str(), line), ("b.yml", 1), "{text}");
    assert!(text.contains("ci/a.yml → ci/b.yml → ci/a.yml"), "{text}");

    // Errors inside an included file name that file.
    let files = [("ci/bad.yml", "job:\n  script: [x\n")];
    let err = resolve_in(&files, "include: ci/bad.yml\n", &[]).unwrap_err();
    let PipelineError::Syntax { at, .. } = &err else {
        panic!("{err}")
    };
    assert!(at.file.ends_with("ci/bad.yml"), "{err}");
    let files = [("ci/tags.yml", "job:\n  script: !shell x\n")];
    let (file, line, _, _) =
        invalid(resolve_in(&files, "include: ci/tags.yml\n", &[]).unwrap_err());
    assert_eq!((file.as_str(), line), ("tags.yml", 2));

    let (_, _, _, text) =
        invalid(resolve_in(&[("ci/x.txt", "a: 1\n")], "include: ci/x.txt\n", &[]).unwrap_err());
    assert!(text.contains("YAML extension"), "{text}");
    let (_, _, _, text) = invalid(resolve_in(&[], "include: ../outside.yml\n", &[]).unwrap_err());
    assert!(text.contains("leaves the project directory"), "{text}");
}

#[test]
fn job_errors_in_included_files_carry_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ci")).unwrap();
    std::fs::write(
        tmp.path().join("ci/jobs.yml"),
        "build:\n  stage: nope\n  script: make\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join(".gitlab-ci.yml"), "include: ci/jobs.yml\n").unwrap();
    let err = Pipeline::load(tmp.path().join(".gitlab-ci.yml")).unwrap_err();
    let at = err.location().unwrap();
    assert!(at.file.ends_with("ci/jobs.yml"), "{err}");
    assert_eq!((at.line, at.column), (2, 10), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:2:10:",
            tmp.path().join("ci/jobs.yml").display()
        )),
        "{err}"
    );
}
