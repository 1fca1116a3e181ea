//! The variables a job sees: what the runner adds around the job's own variables, in gitlab-runner's
//! order, feature-flag resolution, `$VAR` expansion, file variables and the masked values list.
//!
//! Order (gitlab-runner's `GetAllVariables`): resolved `FF_*` flags, `CI_JOB_IMAGE`,
//! `CI_RUNNER_SHORT_TOKEN`, config `environment`, `CI_BUILDS_DIR`, `CI_PROJECT_DIR`, `CI_CONCURRENT_ID`,
//! `CI_CONCURRENT_PROJECT_ID`, `CI_SERVER`, `CI_JOB_STATUS`, `CI_JOB_TIMEOUT`, `CI_SERVER_TLS_CA_FILE`, the
//! job's variables (`FF_*` removed), `CI_SHARED_ENVIRONMENT`/`CI_DISPOSABLE_ENVIRONMENT`,
//! `CI_RUNNER_VERSION`, `CI_RUNNER_REVISION`, `CI_RUNNER_EXECUTABLE_ARCH`, `RUNNER_TEMP_PROJECT_DIR`.
//! Duplicate keys are all kept; lookups take the last one, and so does bash when the exports run in order.
//!
//! Expansion follows Go's `os.Expand` with gitlab-runner's lookup, in a single pass against the
//! unexpanded list: `$NAME` and `${NAME}` become the variable's value (the file path for a file
//! variable, empty when unknown), `$$` becomes `$`, `$` followed by anything else stays, the shell
//! specials `$*`, `$#`, `$@`, `$!`, `$?`, `$-` and `$0`–`$9` become empty, and a malformed `${…`
//! is dropped. Variables with `raw: true` are never expanded.

use crate::context::RunnerContext;
use crate::paths::JobPaths;
use glrunner_protocol::{JobResponse, JobVariable};
use std::collections::BTreeMap;
use std::fmt;

/// gitlab-runner feature flags glrunner knows, with their defaults. Flags set in config.toml or in
/// job variables that are not listed here are passed through as they were resolved.
pub const FEATURE_FLAGS: &[(&str, bool)] = &[
    ("FF_ENABLE_BASH_EXIT_CODE_CHECK", false),
    ("FF_USE_NEW_BASH_EVAL_STRATEGY", false),
    ("FF_USE_LEGACY_BASH_EVAL", false),
    ("FF_SCRIPT_SECTIONS", false),
    ("FF_SKIP_NOOP_BUILD_STAGES", true),
    ("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", true),
    ("FF_TIMESTAMPS", true),
    ("FF_MASK_ALL_DEFAULT_TOKENS", true),
    ("FF_GIT_URLS_WITHOUT_TOKENS", true),
    ("FF_USE_ADAPTIVE_REQUEST_CONCURRENCY", true),
    ("FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY", false),
    ("FF_KUBERNETES_HONOR_ENTRYPOINT", false),
    ("FF_USE_POD_ACTIVE_DEADLINE_SECONDS", true),
    ("FF_PRINT_POD_EVENTS", false),
    ("FF_USE_DUMB_INIT_WITH_KUBERNETES_EXECUTOR", false),
    ("FF_SET_PERMISSIONS_BEFORE_CLEANUP", true),
    ("FF_ENABLE_JOB_CLEANUP", false),
    ("FF_HASH_CACHE_KEYS", false),
    ("FF_CLEAN_UP_FAILED_CACHE_EXTRACT", false),
];

/// The default of a known feature flag.
pub fn feature_flag_default(name: &str) -> Option<bool> {
    FEATURE_FLAGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// An ordered list of job variables. `Debug` shows keys only: values may be secrets.
#[derive(Clone, Default, PartialEq)]
pub struct Variables {
    list: Vec<JobVariable>,
}

impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|v| v.key.as_str()))
            .finish()
    }
}

impl From<Vec<JobVariable>> for Variables {
    fn from(list: Vec<JobVariable>) -> Self {
        Self { list }
    }
}

impl Variables {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, variable: JobVariable) {
        self.list.push(variable);
    }

    /// Append a public variable.
    pub fn add(&mut self, key: &str, value: impl Into<String>) {
        self.list.push(JobVariable::new(key, value));
    }

    pub fn iter(&self) -> std::slice::Iter<'_, JobVariable> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The last variable named `key`.
    pub fn get(&self, key: &str) -> Option<&JobVariable> {
        self.list.iter().rev().find(|v| v.key == key)
    }

    /// The value of the last variable named `key` (the content, for a file variable).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| v.value.as_str())
    }

    /// Replace the value of every variable named `key`, or append it if there is none
    /// (`CI_JOB_STATUS` for after_script).
    pub fn set(&mut self, key: &str, value: &str) {
        let mut found = false;
        for v in self.list.iter_mut().filter(|v| v.key == key) {
            v.value = value.to_owned();
            v.file = false;
            found = true;
        }
        if !found {
            self.add(key, value);
        }
    }

    /// Where a file variable's content is written: `$RUNNER_TEMP_PROJECT_DIR/<KEY>`.
    pub fn file_path(&self, key: &str) -> String {
        let dir = self
            .value(crate::paths::TEMP_PROJECT_DIR_VARIABLE)
            .unwrap_or("");
        format!("{}/{key}", dir.trim_end_matches('/'))
    }

    /// What `$key` expands to.
    fn lookup(&self, key: &str) -> String {
        match key {
            "$" => "$".to_owned(),
            "*" | "#" | "@" | "!" | "?" | "-" | "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7"
            | "8" | "9" => String::new(),
            _ => match self.get(key) {
                Some(v) if v.file => self.file_path(key),
                Some(v) => v.value.clone(),
                None => String::new(),
            },
        }
    }

    /// `value` with `$NAME`/`${NAME}` references replaced (see the module docs for the exact rules).
    pub fn expand_value(&self, value: &str) -> String {
        glrunner_protocol::expand::runner_expand(value, |name| Some(self.lookup(name))).value
    }

    /// Every value expanded against this list, except `raw` ones.
    pub fn expanded(&self) -> Variables {
        let list = self
            .list
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if !v.raw {
                    v.value = self.expand_value(&v.value);
                }
                v
            })
            .collect();
        Variables { list }
    }

    /// gitlab-runner's boolean reading of a variable: `1`, `t`, `true` (any case) are true, `0`, `f`,
    /// `false` are false, any other integer is false; `None` when unset or unreadable.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.value(key).and_then(parse_bool)
    }

    /// Values of `masked: true` variables, for the trace's masker.
    pub fn masked_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self
            .list
            .iter()
            .filter(|v| v.masked && !v.value.is_empty())
            .map(|v| v.value.clone())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Keys that are a file variable anywhere in the list, once each, in order: their files are
    /// written by the stage scripts and removed in cleanup.
    pub fn file_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for v in self.list.iter().filter(|v| v.file) {
            if !keys.contains(&v.key.as_str()) {
                keys.push(&v.key);
            }
        }
        keys
    }
}

/// Go's `strconv.ParseBool` on the lower-cased value, then "an integer equal to 1".
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        other => other.parse::<i64>().ok().map(|n| n == 1),
    }
}

/// Whether bash can `export` a variable of this name.
pub fn is_valid_name(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c == b'_' || c.is_ascii_alphanumeric())
}

/// Feature flags after resolution: config.toml wins, then the job's variable, then the default. Known
/// flags come first in table order, then other `FF_*` names (sorted).
pub fn resolve_feature_flags(
    job: &JobResponse,
    config: &BTreeMap<String, bool>,
) -> Vec<(String, bool)> {
    let job_value = |name: &str| job.variable(name).and_then(parse_bool);
    let mut resolved: Vec<(String, bool)> = FEATURE_FLAGS
        .iter()
        .map(|(name, default)| {
            let value = config
                .get(*name)
                .copied()
                .or_else(|| job_value(name))
                .unwrap_or(*default);
            ((*name).to_owned(), value)
        })
        .collect();
    let mut others: Vec<&str> = config
        .keys()
        .map(String::as_str)
        .chain(job.variables.iter().map(|v| v.key.as_str()))
        .filter(|k| k.starts_with("FF_") && feature_flag_default(k).is_none())
        .collect();
    others.sort();
    others.dedup();
    for name in others {
        if let Some(value) = config.get(name).copied().or_else(|| job_value(name)) {
            resolved.push((name.to_owned(), value));
        }
    }
    resolved
}

/// `GOOS/GOARCH`-style platform of this binary (`CI_RUNNER_EXECUTABLE_ARCH`).
pub fn executable_arch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// The file variable holding the PEM of the CA GitLab's certificate chains to.
pub const CA_FILE_VARIABLE: &str = "CI_SERVER_TLS_CA_FILE";

/// Everything `build` needs besides the payload.
pub struct VariableSources<'a> {
    pub job: &'a JobResponse,
    pub ctx: &'a RunnerContext,
    pub paths: &'a JobPaths,
    /// Whether the executor creates a fresh environment per job.
    pub disposable: bool,
    /// The PEM content of the CA GitLab's certificate chains to, if one is configured.
    pub ca_chain: Option<&'a str>,
}

/// The job's variables, in order, before expansion.
pub fn collect(src: &VariableSources<'_>) -> (Variables, Vec<String>) {
    let (job, ctx, paths) = (src.job, src.ctx, src.paths);
    let mut vars = Variables::new();
    let mut warnings = Vec::new();
    for (name, value) in resolve_feature_flags(job, &ctx.feature_flags) {
        vars.add(&name, value.to_string());
    }
    if let Some(image) = job.image.as_ref().filter(|i| !i.name.is_empty()) {
        vars.add("CI_JOB_IMAGE", image.name.clone());
    }
    vars.add("CI_RUNNER_SHORT_TOKEN", ctx.short_token.clone());
    for entry in &ctx.environment {
        match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => vars.add(key, value),
            _ => warnings.push(format!(
                "config.toml `environment` entry {entry:?} is not KEY=VALUE and was ignored; \
                 write it as \"KEY=value\" in the [[runners]] section"
            )),
        }
    }
    vars.add("CI_BUILDS_DIR", paths.builds_dir.clone());
    vars.add("CI_PROJECT_DIR", paths.project_dir.clone());
    vars.add("CI_CONCURRENT_ID", ctx.concurrent_id.to_string());
    vars.add(
        "CI_CONCURRENT_PROJECT_ID",
        ctx.concurrent_project_id
            .unwrap_or(ctx.concurrent_id)
            .to_string(),
    );
    vars.add("CI_SERVER", "yes");
    vars.add("CI_JOB_STATUS", "running");
    vars.add("CI_JOB_TIMEOUT", job.timeout_seconds().to_string());
    if let Some(ca) = src.ca_chain {
        vars.push(JobVariable {
            file: true,
            ..JobVariable::new(CA_FILE_VARIABLE, ca)
        });
    }
    for v in job.variables.iter().filter(|v| !v.key.starts_with("FF_")) {
        vars.push(v.clone());
    }
    if src.disposable {
        vars.add("CI_DISPOSABLE_ENVIRONMENT", "true");
    } else {
        vars.add("CI_SHARED_ENVIRONMENT", "true");
    }
    vars.add("CI_RUNNER_VERSION", ctx.version.clone());
    vars.add("CI_RUNNER_REVISION", ctx.revision.clone());
    vars.add("CI_RUNNER_EXECUTABLE_ARCH", executable_arch());
    vars.add(
        crate::paths::TEMP_PROJECT_DIR_VARIABLE,
        paths.tmp_dir.clone(),
    );
    (vars, warnings)
}

/// The job's variables, in order and expanded, plus warnings about config entries that were ignored.
pub fn build(src: &VariableSources<'_>) -> (Variables, Vec<String>) {
    let (vars, warnings) = collect(src);
    (vars.expanded(), warnings)
}

/// Every value the trace must mask for `job`: masked variables (as sent and as expanded), the job
/// token, the tokens of its dependencies (the helper downloads their artifacts with them) and the
/// password in the repository URL. Needs no paths, so the manager can build the trace before the job
/// runs.
pub fn masked_values(job: &JobResponse) -> Vec<String> {
    let raw = Variables::from(job.variables.clone());
    let mut values = raw.masked_values();
    values.extend(raw.expanded().masked_values());
    values.push(job.token.expose().to_owned());
    values.extend(job.dependencies.iter().map(|d| d.token.expose().to_owned()));
    if let Some(password) = crate::sources::Remote::for_job(job, None).password {
        values.push(password.expose().to_owned());
    }
    values.retain(|v| !v.is_empty());
    values.sort();
    values.dedup();
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::Image;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        let mut v = Variables::new();
        for (k, val) in pairs {
            v.add(k, *val);
        }
        v
    }

    #[test]
    fn expansion_follows_go_os_expand() {
        let v = vars(&[("A", "apple"), ("B", "$A-pie"), ("EMPTY", "")]);
        let cases = [
            ("$A", "apple"),
            ("${A}s", "apples"),
            ("x$A.y", "xapple.y"),
            ("$B", "$A-pie"), // one pass: the referenced value is not expanded again
            ("$$A", "$A"),
            ("cost: 5$", "cost: 5$"),
            ("$ A", "$ A"),
            ("$%", "$%"),
            ("$UNKNOWN|", "|"),
            ("${}x", "x"),
            ("${A", "A"), // Go eats only "${"
            ("$1$*$#$?$-", ""),
            ("${1}", ""),
            ("$A_B", ""),
            ("héllo $A ✓", "héllo apple ✓"),
            ("$", "$"),
            ("$EMPTY.", "."),
        ];
        for (input, want) in cases {
            assert_eq!(v.expand_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn expanded_keeps_raw_values_and_resolves_file_variables_to_paths() {
        let mut v = vars(&[(crate::paths::TEMP_PROJECT_DIR_VARIABLE, "/b/p.tmp")]);
        v.push(JobVariable {
            file: true,
            ..JobVariable::new("KUBECONFIG", "apiVersion: v1")
        });
        v.push(JobVariable {
            raw: true,
            ..JobVariable::new("LITERAL", "$KUBECONFIG")
        });
        v.add("REF", "cfg=$KUBECONFIG");
        let e = v.expanded();
        assert_eq!(e.value("LITERAL"), Some("$KUBECONFIG"));
        assert_eq!(e.value("REF"), Some("cfg=/b/p.tmp/KUBECONFIG"));
        assert_eq!(e.value("KUBECONFIG"), Some("apiVersion: v1"));
    }

    #[test]
    fn last_duplicate_wins() {
        let v = vars(&[("X", "1"), ("Y", "$X"), ("X", "2")]);
        assert_eq!(v.value("X"), Some("2"));
        assert_eq!(v.expanded().value("Y"), Some("2"));
        assert_eq!(v.len(), 3, "duplicates are kept, in order");
    }

    #[test]
    fn bools_read_like_gitlab_runner() {
        for (s, want) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("1", Some(true)),
            ("t", Some(true)),
            ("false", Some(false)),
            ("0", Some(false)),
            ("2", Some(false)),
            ("yes", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(s), want, "{s:?}");
        }
    }

    #[test]
    fn feature_flags_config_wins_over_job() {
        let job = JobResponse {
            variables: vec![
                JobVariable::new("FF_SCRIPT_SECTIONS", "true"),
                JobVariable::new("FF_ENABLE_BASH_EXIT_CODE_CHECK", "true"),
                JobVariable::new("FF_SOMETHING_NEW", "1"),
            ],
            ..JobResponse::default()
        };
        let mut config = BTreeMap::new();
        config.insert("FF_SCRIPT_SECTIONS".to_owned(), false);
        config.insert("FF_CONFIG_ONLY".to_owned(), true);
        let resolved = resolve_feature_flags(&job, &config);
        let get = |n: &str| resolved.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(get("FF_SCRIPT_SECTIONS"), Some(false));
        assert_eq!(get("FF_ENABLE_BASH_EXIT_CODE_CHECK"), Some(true));
        assert_eq!(get("FF_TIMESTAMPS"), Some(true));
        assert_eq!(get("FF_SOMETHING_NEW"), Some(true));
        assert_eq!(get("FF_CONFIG_ONLY"), Some(true));
        assert_eq!(resolved[0].0, FEATURE_FLAGS[0].0, "known flags first");
    }

    fn sources_fixture() -> (JobResponse, RunnerContext, JobPaths) {
        let mut job = JobResponse {
            id: 7,
            token: "glcbt-secret-token".into(),
            image: Some(Image {
                name: "ruby:3.3".into(),
                ..Image::default()
            }),
            ..JobResponse::default()
        };
        job.runner_info.timeout = Some(600);
        job.variables = vec![
            JobVariable::new("CI_JOB_ID", "7"),
            JobVariable::new("FF_SCRIPT_SECTIONS", "true"),
            JobVariable::new("GREETING", "hello $CI_PROJECT_DIR"),
            JobVariable {
                masked: true,
                ..JobVariable::new("PASSWORD", "s3cr3t-$CI_JOB_ID")
            },
            JobVariable::new("CI_SERVER", "overridden"),
        ];
        let ctx = RunnerContext {
            short_token: "abcdefgh1".into(),
            version: "1.2.3".into(),
            revision: "deadbeef".into(),
            environment: vec!["FROM_CONFIG=$CI_JOB_ID".into(), "BROKEN".into()],
            concurrent_id: 3,
            ..RunnerContext::default()
        };
        let paths = JobPaths {
            builds_dir: "/b".into(),
            project_dir: "/b/abcdefgh1/3/g/p".into(),
            tmp_dir: "/b/abcdefgh1/3/g/p.tmp".into(),
        };
        (job, ctx, paths)
    }

    #[test]
    fn order_precedence_and_expansion_match_gitlab_runner() {
        let (job, ctx, paths) = sources_fixture();
        let src = VariableSources {
            job: &job,
            ctx: &ctx,
            paths: &paths,
            disposable: false,
            ca_chain: Some("-----BEGIN CERTIFICATE-----"),
        };
        let (v, warnings) = build(&src);
        let keys: Vec<&str> = v
            .iter()
            .map(|v| v.key.as_str())
            .filter(|k| !k.starts_with("FF_"))
            .collect();
        assert_eq!(
            keys,
            [
                "CI_JOB_IMAGE",
                "CI_RUNNER_SHORT_TOKEN",
                "FROM_CONFIG",
                "CI_BUILDS_DIR",
                "CI_PROJECT_DIR",
                "CI_CONCURRENT_ID",
                "CI_CONCURRENT_PROJECT_ID",
                "CI_SERVER",
                "CI_JOB_STATUS",
                "CI_JOB_TIMEOUT",
                "CI_SERVER_TLS_CA_FILE",
                "CI_JOB_ID",
                "GREETING",
                "PASSWORD",
                "CI_SERVER",
                "CI_SHARED_ENVIRONMENT",
                "CI_RUNNER_VERSION",
                "CI_RUNNER_REVISION",
                "CI_RUNNER_EXECUTABLE_ARCH",
                "RUNNER_TEMP_PROJECT_DIR",
            ]
        );
        let first = v.iter().next().map(|v| v.key.as_str());
        assert_eq!(first, Some(FEATURE_FLAGS[0].0), "feature flags come first");
        assert_eq!(v.value("FF_SCRIPT_SECTIONS"), Some("true"));
        assert!(
            v.iter()
                .all(|x| x.key != "FF_SCRIPT_SECTIONS" || x.value == "true")
        );
        assert_eq!(
            v.iter().filter(|x| x.key == "FF_SCRIPT_SECTIONS").count(),
            1,
            "job FF_* removed"
        );
        assert_eq!(
            v.value("CI_SERVER"),
            Some("overridden"),
            "job variables override runner defaults"
        );
        assert_eq!(v.value("GREETING"), Some("hello /b/abcdefgh1/3/g/p"));
        assert_eq!(
            v.value("FROM_CONFIG"),
            Some("7"),
            "config environment is expanded too"
        );
        assert_eq!(v.value("CI_JOB_TIMEOUT"), Some("600"));
        assert_eq!(v.value("CI_CONCURRENT_PROJECT_ID"), Some("3"));
        assert_eq!(
            v.value("RUNNER_TEMP_PROJECT_DIR"),
            Some("/b/abcdefgh1/3/g/p.tmp")
        );
        assert!(v.get("CI_SERVER_TLS_CA_FILE").is_some_and(|c| c.file));
        assert_eq!(v.masked_values(), ["s3cr3t-7"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("BROKEN"), "{warnings:?}");
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("s3cr3t"), "Debug shows keys only: {dbg}");

        let disposable = VariableSources {
            disposable: true,
            ..src
        };
        let (v, _) = build(&disposable);
        assert_eq!(v.value("CI_DISPOSABLE_ENVIRONMENT"), Some("true"));
        assert!(v.get("CI_SHARED_ENVIRONMENT").is_none());
    }

    #[test]
    fn masked_values_include_token_and_expanded_forms() {
        let (job, _, _) = sources_fixture();
        let m = masked_values(&job);
        assert!(m.contains(&"s3cr3t-$CI_JOB_ID".to_owned()));
        assert!(m.contains(&"s3cr3t-7".to_owned()));
        assert!(m.contains(&"glcbt-secret-token".to_owned()));
    }

    #[test]
    fn file_keys_once_each() {
        let mut v = Variables::new();
        for (k, val) in [("F", "one"), ("G", "two"), ("F", "three")] {
            v.push(JobVariable {
                file: true,
                ..JobVariable::new(k, val)
            });
        }
        v.add("H", "plain");
        assert_eq!(v.file_keys(), ["F", "G"]);
    }

    #[test]
    fn valid_names() {
        assert!(is_valid_name("CI_JOB_ID"));
        assert!(is_valid_name("_x1"));
        assert!(!is_valid_name("1X"));
        assert!(!is_valid_name("MY-VAR"));
        assert!(!is_valid_name(""));
    }
}
