//! `glrunner exec` on real pipelines: the real binary runs fixture projects (git repositories made
//! here) with the shell executor, and the tests read its output, exit code and the files it left.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{path_str, run_command};

/// A git repository on branch `main` with `files` committed.
struct Project {
    tmp: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("glrunner-exec-")
            .tempdir()
            .expect("temp dir");
        let p = Self { tmp };
        std::fs::create_dir_all(p.dir()).unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "dev@example.com"]);
        p.git(&["config", "user.name", "Dev"]);
        for (path, text) in files {
            p.write(path, text);
        }
        p.git(&["add", "-A"]);
        p.git(&["commit", "-q", "-m", "Initial commit"]);
        p
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("project")
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn write(&self, path: &str, text: &str) {
        let full = self.dir().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn git(&self, args: &[&str]) -> String {
        support::git(&self.dir(), args)
    }

    /// `glrunner exec -C <project> --state-dir <state> <args>`.
    async fn exec(&self, args: &[&str]) -> Run {
        self.exec_in(&self.dir(), args).await
    }

    /// `glrunner exec -C <dir> --state-dir <state> <args>`, `dir` being the project or a directory in it.
    async fn exec_in(&self, dir: &Path, args: &[&str]) -> Run {
        let state = self.state();
        let mut all = vec!["exec", "-C", path_str(dir), "--state-dir", path_str(&state)];
        all.extend_from_slice(args);
        let out = run_command(self.tmp.path(), &all).await;
        Run {
            code: out.code(),
            output: out.output,
        }
    }
}

struct Run {
    code: Option<i32>,
    output: String,
}

impl Run {
    fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code; output:\n{}", self.output);
        self
    }

    fn has(&self, part: &str) -> &Self {
        assert!(
            self.output.contains(part),
            "{part:?} missing from:\n{}",
            self.output
        );
        self
    }

    fn lacks(&self, part: &str) -> &Self {
        assert!(
            !self.output.contains(part),
            "{part:?} should not be in:\n{}",
            self.output
        );
        self
    }

    /// Where `part` first appears (for ordering).
    fn at(&self, part: &str) -> usize {
        self.output
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing from:\n{}", self.output))
    }

    /// The summary line of `job` (`PASS  build …`).
    fn summary(&self, job: &str) -> String {
        self.output
            .lines()
            .rev()
            .find(|l| {
                let mut words = l.split_whitespace();
                matches!(
                    words.next(),
                    Some("PASS" | "WARN" | "FAIL" | "STOP" | "SKIP")
                ) && l.contains(&format!("  {job}  "))
            })
            .unwrap_or_else(|| panic!("no summary line for {job}:\n{}", self.output))
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_run_in_order_in_fresh_checkouts_and_the_project_stays_untouched() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
stages: [build, test, deploy]
build:
  stage: build
  script:
    - echo "building in $CI_PROJECT_DIR"
    - echo leftover > leftover.txt
test:
  stage: test
  script:
    - test ! -e leftover.txt && echo "no leftover from build"
    - echo "commit $CI_COMMIT_SHORT_SHA on $CI_COMMIT_BRANCH"
deploy:
  stage: deploy
  script: [echo deploying]
"#,
    )]);
    let sha = p.git(&["rev-parse", "--short=8", "HEAD"]);
    let run = p.exec(&[]).await;
    run.code(0)
        .has("no leftover from build")
        .has(&format!("commit {} on main", sha.trim()))
        .has("pipeline passed: 3 of 3 jobs ran");
    assert!(
        run.at("building in") < run.at("no leftover")
            && run.at("no leftover") < run.at("deploying")
    );
    // Every line of a job's log carries its name.
    assert!(
        run.output
            .lines()
            .any(|l| l.starts_with("test ") && l.contains("│ no leftover from build")),
        "{}",
        run.output
    );
    assert!(run.summary("build").starts_with(" PASS"));
    let project_dir = p.dir().display().to_string();
    assert!(
        !run.output.contains(&format!("building in {project_dir}\n")),
        "jobs never run in the project"
    );
    assert!(!p.dir().join("leftover.txt").exists());
    assert_eq!(
        p.git(&["status", "--porcelain"]),
        "",
        "the working tree is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_extends_anchors_reference_include_and_default() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            r#"
include:
  - local: ci/templates.yml
stages: [build, test]
default:
  before_script: [echo "default before_script"]
variables:
  GREETING: hello
.shared: &shared
  variables:
    FROM_ANCHOR: anchored
compile:
  stage: build
  extends: .template
  <<: *shared
  script:
    - !reference [.scripts, say]
    - echo "$FROM_ANCHOR $FROM_TEMPLATE"
lint:
  stage: build
  script: [echo "lint ran"]
unit:
  stage: test
  needs: [compile]
  script: [echo "unit after compile"]
"#,
        ),
        (
            "ci/templates.yml",
            r#"
.template:
  variables:
    FROM_TEMPLATE: templated
.scripts:
  say:
    - echo "$GREETING from a reference"
"#,
        ),
    ]);
    p.exec(&[])
        .await
        .code(0)
        .has("default before_script")
        .has("hello from a reference")
        .has("anchored templated")
        .has("unit after compile");

    // One job with what it needs: compile runs, lint (same stage, not needed) does not.
    let run = p.exec(&["unit", "--needs"]).await;
    run.code(0)
        .has("anchored templated")
        .has("unit after compile")
        .lacks("lint ran");
    assert!(run.at("anchored templated") < run.at("unit after compile"));
    // One job alone.
    p.exec(&["unit"])
        .await
        .code(0)
        .has("unit after compile")
        .lacks("anchored templated")
        .has("pipeline passed: 1 of 1 jobs ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_see_the_branch_and_list_shows_why_a_job_is_left_out() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
on-main:
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
  script: [echo "main only"]
on-feature:
  rules:
    - if: $CI_COMMIT_BRANCH =~ /^feature\//
  script: [echo "feature only"]
with-variable:
  rules:
    - if: $DEPLOY == "yes"
  script: [echo "deploy requested"]
"#,
    )]);
    p.exec(&[])
        .await
        .code(0)
        .has("main only")
        .lacks("feature only")
        .lacks("deploy requested");
    p.exec(&["--list"])
        .await
        .code(0)
        .has("on-main")
        .has("Not in this pipeline:")
        .has("on-feature")
        .lacks("main only");
    p.exec(&["--env", "DEPLOY=yes"])
        .await
        .code(0)
        .has("deploy requested");
    p.git(&["checkout", "-q", "-b", "feature/x"]);
    p.exec(&[])
        .await
        .code(0)
        .has("feature only")
        .lacks("main only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_dotenv_variables_pass_between_jobs() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
stages: [build, test]
build:
  stage: build
  script:
    - mkdir -p out && echo "binary v1" > out/app.txt
    - echo "VERSION=1.2.3" > build.env
    - echo "CHANNEL='beta'" >> build.env
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
test:
  stage: test
  script:
    - cat out/app.txt
    - echo "version $VERSION channel $CHANNEL"
isolated:
  stage: test
  dependencies: []
  script:
    - test ! -e out/app.txt && echo "no artifacts here"
    - echo "version=${VERSION:-none}"
"#,
    )]);
    let run = p.exec(&[]).await;
    run.code(0)
        .has("binary v1")
        .has("Downloading artifacts for build (1)...")
        .has("version 1.2.3 channel beta")
        .has("no artifacts here")
        .has("version=none");
    assert!(
        p.state().join("artifacts/1/archive").is_dir(),
        "{}",
        run.output
    );
    assert!(p.state().join("artifacts/1/dotenv").is_dir());

    // A report GitLab would refuse fails the job that wrote it, with the rule it broke.
    p.write(
        ".gitlab-ci.yml",
        r#"
build:
  script: [printf 'A=1\n\nB=2\n' > build.env]
  artifacts:
    reports:
      dotenv: build.env
"#,
    );
    p.exec(&[])
        .await
        .code(1)
        .has("line 2 of the dotenv report is not `KEY=value`")
        .has("dotenv report refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_carry_files_across_jobs_and_runs() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
stages: [fill, use]
variables:
  RUN: first
fill:
  stage: fill
  cache:
    key: deps
    paths: [vendor/]
  script:
    - if [ -f vendor/lib.txt ]; then echo "restored $(cat vendor/lib.txt)"; fi
    - mkdir -p vendor && echo "from $RUN run" > vendor/lib.txt
use:
  stage: use
  cache:
    key: deps
    paths: [vendor/]
    policy: pull
  script:
    - echo "cached $(cat vendor/lib.txt)"
"#,
    )]);
    p.exec(&[])
        .await
        .code(0)
        .has("cached from first run")
        .lacks("restored from");
    p.exec(&["--env", "RUN=second"])
        .await
        .code(0)
        .has("restored from first run")
        .has("cached from second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_and_matrix_instances_get_names_and_variables() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
shard:
  parallel: 2
  script: [echo "shard $CI_NODE_INDEX of $CI_NODE_TOTAL"]
deploy:
  parallel:
    matrix:
      - PROVIDER: [aws, gcp]
  script: [echo "deploying to $PROVIDER"]
"#,
    )]);
    let run = p.exec(&[]).await;
    run.code(0)
        .has("shard 1 of 2")
        .has("shard 2 of 2")
        .has("deploying to aws")
        .has("deploying to gcp");
    assert!(run.summary("shard 1/2").starts_with(" PASS"));
    assert!(run.summary("deploy: [aws]").starts_with(" PASS"));
    // The base name runs every instance.
    p.exec(&["shard"])
        .await
        .code(0)
        .has("shard 2 of 2")
        .lacks("deploying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_stop_later_stages_but_not_allowed_failures_or_when_always() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
stages: [test, deploy, cleanup]
lint:
  stage: test
  allow_failure: true
  script: [echo "lint fails", exit 1]
unit:
  stage: test
  script: [echo "unit fails", exit 3]
deploy:
  stage: deploy
  script: [echo "deploy ran"]
report:
  stage: cleanup
  when: always
  script: [echo "report always runs"]
notify:
  stage: cleanup
  when: on_failure
  script: [echo "notify on failure"]
"#,
    )]);
    let run = p.exec(&[]).await;
    run.code(3)
        .has("lint fails")
        .has("unit fails")
        .lacks("deploy ran")
        .has("report always runs")
        .has("notify on failure")
        .has("pipeline failed");
    assert!(
        run.summary("lint").starts_with(" WARN"),
        "{}",
        run.summary("lint")
    );
    assert!(run.summary("unit").contains("exit code 3"));
    assert!(run.summary("deploy").starts_with(" SKIP"));
    assert!(run.summary("deploy").contains("a job it waits for failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_jobs_run_only_when_asked() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
build:
  script: [echo "build ran"]
release:
  when: manual
  script: [echo "release ran"]
"#,
    )]);
    let run = p.exec(&[]).await;
    run.code(0).has("build ran").lacks("release ran");
    assert!(run.summary("release").contains("manual job"));
    p.exec(&["--manual"]).await.code(0).has("release ran");
    p.exec(&["release"])
        .await
        .code(0)
        .has("release ran")
        .lacks("build ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_keywords_are_refused_and_image_and_services_are_named_as_ignored() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
build:
  image: ruby:3.3
  services: [postgres:16]
  script: [echo "built without containers"]
downstream:
  trigger: group/other-project
"#,
    )]);
    let run = p.exec(&[]).await;
    run.code(78)
        .has("trigger")
        .lacks("built without containers");
    p.exec(&["build"])
        .await
        .code(0)
        .has("WARNING: `image: ruby:3.3` is ignored")
        .has("`services: [postgres:16]` are ignored")
        .has("built without containers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_and_untracked_files_reach_jobs_but_ignored_ones_do_not() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "show:\n  script:\n    - cat version.txt\n    - cat new.txt\n    - test ! -e build/cache.bin && echo 'no ignored file'\n    - git log -1 --format=%s\n",
        ),
        ("version.txt", "committed\n"),
        (".gitignore", "build/\n"),
    ]);
    p.write("version.txt", "edited, not committed\n");
    p.write("new.txt", "untracked\n");
    p.write("build/cache.bin", "ignored\n");
    let before = p.git(&["status", "--porcelain"]);
    let objects_before = loose_objects(&p.dir().join(".git/objects"));
    let run = p.exec(&[]).await;
    run.code(0)
        .has("edited, not committed")
        .has("untracked")
        .has("no ignored file")
        .has("glrunner exec: the working tree of")
        .has("jobs check out commit");
    assert_eq!(
        p.git(&["status", "--porcelain"]),
        before,
        "the user's tree and index are untouched"
    );
    assert_eq!(
        p.git(&["rev-parse", "HEAD"]).trim().len(),
        40,
        "HEAD still resolves"
    );
    // The snapshot's objects went to the state directory, not into the user's repository.
    assert_eq!(loose_objects(&p.dir().join(".git/objects")), objects_before);
}

fn loose_objects(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().len() == 2)
        .map(|e| std::fs::read_dir(e.path()).map_or(0, |d| d.count()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_no_repository_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "hello:\n  script:\n    - cat data.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join("data.txt"), "plain files\n").unwrap();
    let state = tmp.path().join("state");
    let out = run_command(
        tmp.path(),
        &[
            "exec",
            "-C",
            path_str(&dir),
            "--state-dir",
            path_str(&state),
        ],
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.output);
    assert!(out.output.contains("plain files"), "{}", out.output);
    assert!(
        out.output.contains("not a git repository"),
        "{}",
        out.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_can_start_together_run_at_once_in_their_own_checkouts() {
    let p = Project::new(&[(
        ".gitlab-ci.yml",
        r#"
stages: [test, deploy]
# a and b meet through two FIFOs: each blocks until the other job opens its end, so both pass only
# when they run at the same time.
a:
  stage: test
  script:
    - echo "a in slot $CI_CONCURRENT_ID at $CI_PROJECT_DIR"
    - timeout 30 bash -c 'echo from-a > "$MEET/a-to-b"; read -r line < "$MEET/b-to-a"; echo "a got $line"'
    - echo a-only > a.txt
b:
  stage: test
  script:
    - echo "b in slot $CI_CONCURRENT_ID at $CI_PROJECT_DIR"
    - timeout 30 bash -c 'read -r line < "$MEET/a-to-b"; echo "b got $line"; echo from-b > "$MEET/b-to-a"'
    - test ! -e a.txt && echo "b does not see a's files"
deploy:
  stage: deploy
  script: [echo "deploy after both"]
"#,
    )]);
    let meet = p.tmp.path().join("meet");
    std::fs::create_dir_all(&meet).unwrap();
    for fifo in ["a-to-b", "b-to-a"] {
        let status = Command::new("mkfifo")
            .arg(meet.join(fifo))
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }
    let env = format!("MEET={}", meet.display());
    let run = p.exec(&["--concurrency", "2", "--env", &env]).await;
    run.code(0)
        .has("a got from-b")
        .has("b got from-a")
        .has("b does not see a's files")
        .has("up to 2 at a time");
    let builds = p.state().join("builds/local");
    let a_dir = builds.join("0");
    let b_dir = builds.join("1");
    let slot = |job: &str| {
        run.output
            .lines()
            .filter(|l| !l.contains("$CI_CONCURRENT_ID"))
            .find_map(|l| {
                l.split_once(&format!("{job} in slot "))
                    .map(|(_, r)| r.to_owned())
            })
            .unwrap_or_else(|| panic!("no slot line for {job}:\n{}", run.output))
    };
    let (a, b) = (slot("a"), slot("b"));
    assert_ne!(a, b, "two jobs at once never share a checkout");
    let dirs = [a_dir.display().to_string(), b_dir.display().to_string()];
    assert!(dirs.iter().any(|d| a.contains(d.as_str())), "{a}");
    assert!(dirs.iter().any(|d| b.contains(d.as_str())), "{b}");
    assert!(run.at("deploy after both") > run.at("a got from-b"));
    assert!(run.at("deploy after both") > run.at("b got from-a"));
    // The summary keeps run order whatever order the jobs ended in.
    let summary_a = run.output.rfind(&run.summary("a")).unwrap();
    let summary_b = run.output.rfind(&run.summary("b")).unwrap();
    assert!(summary_a < summary_b, "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_checkout_is_the_repository_a_fetch_gives() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            r#"
stages: [one, two]
fetched:
  stage: one
  variables:
    # Not the default clean flags: this job fetches into its checkout instead of copying one.
    GIT_CLEAN_FLAGS: -ffdx -e nothing-to-keep
  script:
    - ./facts.sh fetched
copied:
  stage: one
  script:
    - ./facts.sh copied
    # A copy is fresh: not even what a job leaves in .git reaches the next job in its directory.
    - echo changed >> README.md && echo junk > junk.txt && git tag local-tag
again:
  stage: two
  script:
    - ./facts.sh again
    - test ! -e junk.txt && echo "no junk from the job before"
"#,
        ),
        (
            "facts.sh",
            "#!/bin/sh\n\
             printf 'facts %s: commits=%s head=%s branch=%s dirty=%s refs=%s shallow=%s include=%s origin=%s\\n' \"$1\" \
             \"$(git rev-list --count HEAD)\" \"$(git rev-parse HEAD)\" \"$(git rev-parse --abbrev-ref HEAD)\" \
             \"$(git status --porcelain | wc -l | tr -d ' ')\" \"$(git for-each-ref --format='%(refname)' | tr '\\n' ' ')\" \
             \"$(wc -l < .git/shallow | tr -d ' ')\" \"$(git config --get-all include.path | sed 's#.*/##')\" \
             \"$(git remote get-url origin | sed 's#.*/##')\"\n",
        ),
        ("README.md", "readme\n"),
    ]);
    // More commits than the default depth of 20, so the checkouts are shallow.
    for i in 0..22 {
        p.git(&[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &format!("commit {i}"),
        ]);
    }
    let head = p.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let run = p.exec(&["--concurrency", "1"]).await;
    run.code(0).has("no junk from the job before");
    let facts = |job: &str| {
        let prefix = format!("facts {job}: ");
        run.output
            .lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, f)| f.to_owned()))
            .unwrap_or_else(|| panic!("no facts of {job}:\n{}", run.output))
    };
    let copied = facts("copied");
    assert_eq!(copied, facts("fetched"), "{}", run.output);
    assert_eq!(copied, facts("again"), "{}", run.output);
    assert!(copied.contains(&format!("head={head} ")), "{copied}");
    assert!(
        copied.contains("commits=20 ") && copied.contains("shallow=1 "),
        "{copied}"
    );
    assert!(copied.contains("branch=HEAD dirty=0 "), "{copied}");
    assert!(
        copied.contains("refs=refs/pipelines/1 refs/remotes/origin/main "),
        "{copied}"
    );
    assert!(copied.contains("include=.glrunner-git.conf "), "{copied}");
    assert!(copied.ends_with("origin=source.git"), "{copied}");
    // Both ways print the runner's lines of a fetch; only the fetching job has git's own init line.
    for job in ["copied", "fetched", "again"] {
        let lines: Vec<&str> = run
            .output
            .lines()
            .filter(|l| l.starts_with(&format!("{job} ")))
            .collect();
        let log = lines.join("\n");
        for line in [
            "Fetching changes with git depth set to 20...",
            &format!(
                "Checking out {} as detached HEAD (ref is main)...",
                &head[..8]
            ),
            "Skipping Git submodules setup",
        ] {
            assert!(log.contains(line), "{line:?} missing from {job}:\n{log}");
        }
        assert_eq!(
            log.contains("Initialized empty Git repository") || log.contains("Reinitialized"),
            job == "fetched",
            "{job}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_in_a_subdirectory_checks_out_just_that_directory() {
    let p = Project::new(&[
        (
            "app/.gitlab-ci.yml",
            "show:\n  script:\n    - \"echo files $(ls -A | grep -v '^.git$' | tr '\\\\n' ' ')\"\n",
        ),
        ("app/data.txt", "data\n"),
        ("top.txt", "outside the project\n"),
    ]);
    p.exec_in(&p.dir().join("app"), &[])
        .await
        .code(0)
        .has("files .gitlab-ci.yml data.txt\n")
        .has("jobs check out commit");
}
