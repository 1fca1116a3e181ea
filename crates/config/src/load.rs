//! Loading config.toml: parse with spans, decode into the typed [`Config`], expand `$VAR`s, read
//! `token_file`s, validate, and collect warnings for ignored keys.

use crate::error::{ConfigError, Diagnostic};
use crate::expand::expand_env;
use crate::global::Config;
use crate::runner::{ExecutorKind, OTHER_GITLAB_EXECUTORS, RunnerConfig};
use crate::source::{Location, Segment, SourceMap, display_path, type_name};
use crate::warning::{ConfigWarning, WarningKind, classify_ignored};
use glrunner_protocol::{Secret, TokenKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A loaded config.toml with what glrunner wants the user to know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Ignored keys and other notes, in file order, each once. The binary prints them.
    pub warnings: Vec<ConfigWarning>,
    /// The file that was read.
    pub path: PathBuf,
}

impl Loaded {
    /// The directory holding config.toml (relative paths in it are resolved against this).
    pub fn config_dir(&self) -> &Path {
        config_dir_of(&self.path)
    }
}

/// Environment lookups go through this so tests and callers can supply their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads, decodes and validates config.toml, expanding `$VAR` in `url` and `token` from the
    /// process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        Self::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an explicit environment.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: EnvLookup<'_>,
    ) -> Result<Loaded, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(path, &e))?;
        Self::parse(path, &text, env)
    }

    /// Decodes and validates config.toml text; `path` is used for locations and relative paths.
    pub fn parse(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Loaded, ConfigError> {
        let root = toml::de::DeTable::parse(text).map_err(|e| syntax_error(path, text, &e))?;
        let map = SourceMap::new(path, text, root);

        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| syntax_error(path, text, &e))?;
        let mut ignored: Vec<Vec<Segment>> = Vec::new();
        let config: Config =
            serde_ignored::deserialize(deserializer, |p| ignored.push(segments(&p)))
                .map_err(|e| type_error(&map, path, &e))?;

        let mut loader = Loader {
            map: &map,
            file: path,
            env,
            warnings: Vec::new(),
        };
        loader.warn_ignored(ignored);
        let config = loader.finish(config)?;
        let mut warnings = loader.warnings;
        warnings.sort_by_key(|w| (w.line, w.column));
        Ok(Loaded {
            config,
            warnings,
            path: path.to_path_buf(),
        })
    }
}

pub(crate) fn config_dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    ConfigError::Syntax(Box::new(Diagnostic {
        at: Some(crate::source::location_in(path, text, offset)),
        key: None,
        what: format!("TOML syntax error: {}", e.message().trim_end()),
        cause: "config.toml must be valid TOML (the same file gitlab-runner reads)".to_owned(),
        fix: "correct the text at this position; check quotes, brackets and `key = value` pairs"
            .to_owned(),
    }))
}

/// Keys whose values must never be echoed, even in a type error.
const SECRET_KEYS: &[&str] = &[
    "token",
    "bearer_token",
    "sentry_dsn",
    "AccessKey",
    "SecretKey",
    "SessionToken",
    "PrivateKey",
    "AccountKey",
    "environment",
];

fn type_error(map: &SourceMap<'_>, file: &Path, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let (path, node) = map.path_at(&span);
    let key = display_path(&path);
    let raw = e.message().trim_end();
    let expected = raw
        .rsplit_once("expected ")
        .map(|(_, x)| friendly_expected(x));
    let is_secret = path
        .iter()
        .any(|s| matches!(s, Segment::Key(k) if SECRET_KEYS.contains(&k.as_str())));
    // serde's "invalid type: string \"…\"" quotes the value; describe its type instead.
    let message = match (
        raw.starts_with("invalid type") || is_secret,
        node,
        &expected,
    ) {
        (true, Some(node), Some(expected)) => {
            format!("is {}, expected {expected}", type_name(node))
        }
        (true, _, Some(expected)) => format!("has an invalid value, expected {expected}"),
        (true, _, None) => "has an invalid value".to_owned(),
        (false, _, _) => format!("is invalid: {raw}"),
    };
    let leaf = path
        .iter()
        .rev()
        .find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .unwrap_or("the key");
    let example = match expected.as_deref() {
        Some("an integer") => Some("10"),
        Some("a number") => Some("0.5"),
        Some(x) if x.starts_with("a boolean") => Some("true"),
        Some("a string") => Some("\"…\""),
        _ => None,
    };
    let fix = match (&expected, example) {
        (Some(x), Some(ex)) => format!("write `{leaf}` as {x}, e.g. `{leaf} = {ex}`"),
        (Some(x), None) => format!("write `{leaf}` as {x}"),
        (None, _) => format!("correct the value of `{leaf}`"),
    };
    let at = if span.is_empty() && span.start == 0 {
        Location {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
        }
    } else {
        map.location(span.start)
    };
    let key = if key.is_empty() {
        "(document)".to_owned()
    } else {
        key
    };
    ConfigError::Type(Box::new(Diagnostic {
        at: Some(at),
        what: format!("`{key}` {message}"),
        key: Some(key),
        cause: "the value's type does not match what the key takes".to_owned(),
        fix,
    }))
}

/// serde's "expected i64" → "an integer"; one-of lists and descriptions pass through.
fn friendly_expected(expected: &str) -> String {
    let x = expected.trim().trim_end_matches('.');
    match x {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "an integer".to_owned()
        }
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "a boolean (true or false)".to_owned(),
        "a sequence" => "an array, e.g. [\"a\", \"b\"]".to_owned(),
        "a map" => "a table".to_owned(),
        _ if x.starts_with("struct ") => "a table".to_owned(),
        _ => x.to_owned(),
    }
}

fn segments(p: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path as P;
    match p {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Segment::Index(*index));
            v
        }
        P::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Segment::Key(key.clone()));
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            segments(parent)
        }
    }
}

fn key(k: &str) -> Segment {
    Segment::Key(k.to_owned())
}

fn runner_path(i: usize) -> Vec<Segment> {
    vec![key("runners"), Segment::Index(i)]
}

fn with(base: &[Segment], more: &[&str]) -> Vec<Segment> {
    let mut v = base.to_vec();
    v.extend(more.iter().map(|k| key(k)));
    v
}

struct Loader<'m, 'a> {
    map: &'m SourceMap<'a>,
    file: &'m Path,
    env: EnvLookup<'m>,
    warnings: Vec<ConfigWarning>,
}

impl Loader<'_, '_> {
    fn loc(&self, path: &[Segment]) -> Location {
        self.map.location_of(path).unwrap_or_else(|| Location {
            file: self.file.to_path_buf(),
            line: 1,
            column: 1,
        })
    }

    /// Location of a value, falling back to its key, its parent, or the top of the file.
    fn value_loc(&self, path: &[Segment]) -> Location {
        (0..=path.len())
            .rev()
            .find_map(|n| self.map.value_location(&path[..n]))
            .unwrap_or_else(|| self.loc(&[]))
    }

    fn invalid(&self, path: &[Segment], problem: String, cause: &str, fix: String) -> ConfigError {
        ConfigError::Invalid(Box::new(Diagnostic {
            at: Some(self.value_loc(path)),
            key: Some(display_path(path)),
            what: problem,
            cause: cause.to_owned(),
            fix,
        }))
    }

    fn warn(&mut self, path: &[Segment], kind: WarningKind, message: String) {
        let key = display_path(path);
        if self
            .warnings
            .iter()
            .any(|w| w.key == key && w.message == message)
        {
            return;
        }
        let at = self.loc(path);
        self.warnings.push(ConfigWarning {
            file: at.file,
            key,
            line: at.line,
            column: at.column,
            kind,
            message,
        });
    }

    fn warn_ignored(&mut self, ignored: Vec<Vec<Segment>>) {
        for path in ignored {
            let (kind, message) = classify_ignored(&path);
            self.warn(&path, kind, message);
        }
    }

    fn finish(&mut self, mut config: Config) -> Result<Config, ConfigError> {
        self.check_globals(&mut config)?;
        if config.runners.is_empty() {
            self.warn(
                &[],
                WarningKind::Other,
                "no [[runners]] entries: glrunner has nothing to run; add one with `glrunner register`".to_owned(),
            );
        }
        let global_labels = config.labels.clone();
        for (i, runner) in config.runners.iter_mut().enumerate() {
            self.check_runner(i, runner, &global_labels)?;
        }
        Ok(config)
    }

    fn check_globals(&mut self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(n) = config.concurrent
            && n <= 0
        {
            return Err(self.invalid(
                &[key("concurrent")],
                format!("`concurrent` is {n}; it must be at least 1"),
                "`concurrent` is how many jobs run at once, so with less than 1 no job could ever start",
                "set `concurrent = 1` or more at the top of config.toml".to_owned(),
            ));
        }
        if config.sentry_dsn.is_none()
            && let Some(dsn) = (self.env)("SENTRY_DSN").filter(|d| !d.is_empty())
        {
            config.sentry_dsn = Some(Secret::new(dsn));
        }
        if let Some(dir) = &config.state_dir
            && dir.is_relative()
        {
            config.state_dir = Some(config_dir_of(self.file).join(dir));
        }
        self.check_labels(&[key("labels")], &config.labels)
    }

    fn check_labels(
        &self,
        path: &[Segment],
        labels: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        for (k, v) in labels {
            let key_ok = k.len() >= 3
                && k.len() <= 65
                && k.bytes().enumerate().all(|(i, b)| {
                    b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
                });
            let value_ok = !v.is_empty()
                && v.len() <= 256
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !key_ok || !value_ok {
                let mut p = path.to_vec();
                p.push(key(k));
                let problem = if key_ok {
                    format!("label `{k}` has an invalid value")
                } else {
                    format!("label key `{k}` is invalid")
                };
                return Err(self.invalid(
                    &p,
                    problem,
                    "GitLab accepts label keys of 3–65 characters (letters, digits, `_`, then also `.` and `-`) and values of 1–256 such characters",
                    "rename the label or change its value to match those rules".to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn check_runner(
        &mut self,
        i: usize,
        runner: &mut RunnerConfig,
        global_labels: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let base = runner_path(i);
        let who = if runner.name.is_empty() {
            format!("runner #{}", i + 1)
        } else {
            format!("runner `{}`", runner.name)
        };

        // url: expanded, required, http(s).
        let url_path = with(&base, &["url"]);
        let expanded = expand_env(&runner.url, self.env);
        let unset = expanded.undefined.clone();
        runner.url = expanded.value.trim().to_owned();
        if runner.url.is_empty() {
            let (problem, cause, fix) = if unset.is_empty() {
                (
                    format!("{who} has no `url`"),
                    "every [[runners]] entry needs the GitLab instance it takes jobs from",
                    "add `url = \"https://gitlab.example.com\"` to this [[runners]] entry"
                        .to_owned(),
                )
            } else {
                (
                    format!(
                        "{who}: `url` is empty after expanding ${}",
                        unset.join(", $")
                    ),
                    "the environment variable it uses is not set",
                    format!(
                        "set {} in glrunner's environment, or write the URL in config.toml",
                        unset.join(", ")
                    ),
                )
            };
            let path = if self.map.find(&url_path).is_some() {
                url_path
            } else {
                base.clone()
            };
            return Err(self.invalid(&path, problem, cause, fix));
        }
        match url::Url::parse(&runner.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(self.invalid(
                    &url_path,
                    format!("{who}: `url` is not an http(s) URL"),
                    "glrunner reaches GitLab over HTTP(S), so the URL needs a scheme and a host",
                    "write it like `url = \"https://gitlab.example.com\"`".to_owned(),
                ));
            }
        }
        if !unset.is_empty() {
            self.warn(
                &url_path,
                WarningKind::Other,
                format!(
                    "uses ${} which is not set; it expanded to an empty string",
                    unset.join(", $")
                ),
            );
        }

        // token and token_file.
        let token_path = with(&base, &["token"]);
        if let Some(token) = &runner.token {
            let expanded = expand_env(token.expose(), self.env);
            if !expanded.undefined.is_empty() {
                self.warn(
                    &token_path,
                    WarningKind::Other,
                    format!(
                        "uses ${} which is not set; it expanded to an empty string",
                        expanded.undefined.join(", $")
                    ),
                );
            }
            runner.token = Some(Secret::new(expanded.value.trim().to_owned()));
        }
        if let Some(file) = runner.token_file.clone() {
            let file_path = with(&base, &["token_file"]);
            if runner.token().is_some() {
                return Err(self.invalid(
                    &file_path,
                    format!("{who} sets both `token` and `token_file`"),
                    "the token must come from exactly one place",
                    "keep one: delete the `token` line to read the token from `token_file`, or delete `token_file`".to_owned(),
                ));
            }
            let resolved = if file.is_relative() {
                config_dir_of(self.file).join(&file)
            } else {
                file
            };
            let contents = std::fs::read_to_string(&resolved).map_err(|e| {
                let cause = match e.kind() {
                    std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
                    std::io::ErrorKind::PermissionDenied => "glrunner may not read it".to_owned(),
                    _ => format!("reading it failed: {e}"),
                };
                self.invalid(
                    &file_path,
                    format!("{who}: cannot read `token_file` {}", resolved.display()),
                    &cause,
                    format!(
                        "put the runner token in {} (e.g. mount the Kubernetes Secret holding it there), or set `token` instead",
                        resolved.display()
                    ),
                )
            })?;
            let token = contents.trim();
            if token.is_empty() {
                return Err(self.invalid(
                    &file_path,
                    format!("{who}: `token_file` {} is empty", resolved.display()),
                    "the file holds no token",
                    "write the runner's `glrt-…` token into the file (a trailing newline is fine)"
                        .to_owned(),
                ));
            }
            runner.token = Some(Secret::new(token.to_owned()));
            runner.token_file = Some(resolved);
        }

        if let Some(token) = runner.token() {
            let kind = TokenKind::classify(token.expose());
            if !kind.can_request_jobs() {
                let path = if runner.token_file.is_some() {
                    with(&base, &["token_file"])
                } else {
                    token_path
                };
                return Err(self.wrong_token_kind(&path, &who, kind));
            }
        }

        // TLS client certificate comes as a pair.
        if runner.tls_cert_file.is_some() != runner.tls_key_file.is_some() {
            let (set, missing) = if runner.tls_cert_file.is_some() {
                ("tls-cert-file", "tls-key-file")
            } else {
                ("tls-key-file", "tls-cert-file")
            };
            return Err(self.invalid(
                &with(&base, &[set]),
                format!("{who} sets `{set}` without `{missing}`"),
                "a client certificate needs both the certificate and its private key",
                format!("add `{missing} = \"/path/to/file\"` or remove `{set}`"),
            ));
        }

        self.check_executor(&base, &who, runner)?;
        self.check_shell(&base, &who, runner)?;
        self.check_labels(&with(&base, &["labels"]), &runner.labels)?;
        let computed = runner.computed_labels(global_labels);
        if computed.len() > 32 {
            return Err(self.invalid(
                &with(&base, &["labels"]),
                format!(
                    "{who} has {} labels (global and its own); at most 32 are allowed",
                    computed.len()
                ),
                "GitLab refuses runners with more than 32 labels",
                "remove labels from `labels` at the top of config.toml or in this entry".to_owned(),
            ));
        }
        if let Some(k) = &runner.kubernetes {
            self.check_kubernetes(&with(&base, &["kubernetes"]), &who, k)?;
        }
        Ok(())
    }

    /// A token that can never take jobs (catalogue T1, T2): refused before GitLab answers 403 forever.
    fn wrong_token_kind(&self, path: &[Segment], who: &str, kind: TokenKind) -> ConfigError {
        let create = "create a runner in GitLab (Settings > CI/CD > Runners > New runner) and put its `glrt-…` token in `token` (or `token_file`)";
        let fix = match kind {
            TokenKind::Registration => format!(
                "{create}, or exchange the registration token for a runner token with `glrunner register --url <url> --registration-token <token>`"
            ),
            _ => create.to_owned(),
        };
        self.invalid(
            path,
            format!("{who}: the token is a {}, not a runner authentication token", kind.describe()),
            match kind {
                TokenKind::Registration => "a registration token can only create runners; GitLab answers 403 Forbidden to every job request made with it",
                _ => "only runner authentication tokens can request jobs; GitLab would answer 403 Forbidden",
            },
            fix,
        )
    }

    fn check_executor(
        &self,
        base: &[Segment],
        who: &str,
        runner: &RunnerConfig,
    ) -> Result<(), ConfigError> {
        let path = with(base, &["executor"]);
        let name = runner.executor.trim();
        if ExecutorKind::parse(name).is_some() {
            return Ok(());
        }
        let kubernetes_fix = "set `executor = \"kubernetes\"` (with a [runners.kubernetes] table) or `executor = \"shell\"`";
        Err(if name.is_empty() {
            let at = if self.map.find(&path).is_some() {
                path
            } else {
                base.to_vec()
            };
            self.invalid(
                &at,
                format!("{who} has no `executor`"),
                "every [[runners]] entry must say how its jobs run",
                format!("add to this entry: {kubernetes_fix}"),
            )
        } else if OTHER_GITLAB_EXECUTORS.contains(&name) {
            self.invalid(
                &path,
                format!("{who} uses the `{name}` executor, which glrunner does not run yet"),
                "glrunner runs jobs with the `shell` and `kubernetes` executors only",
                format!("{kubernetes_fix}, or keep this runner on gitlab-runner"),
            )
        } else {
            self.invalid(
                &path,
                format!("{who} has an unknown executor `{name}`"),
                "no runner knows this executor (a typo?)",
                kubernetes_fix.to_owned(),
            )
        })
    }

    fn check_shell(
        &self,
        base: &[Segment],
        who: &str,
        runner: &RunnerConfig,
    ) -> Result<(), ConfigError> {
        let Some(shell) = runner.shell.as_deref() else {
            return Ok(());
        };
        if matches!(shell, "" | "bash" | "sh") {
            return Ok(());
        }
        let known = matches!(shell, "pwsh" | "powershell" | "cmd");
        Err(self.invalid(
            &with(base, &["shell"]),
            if known {
                format!("{who} uses the `{shell}` shell, which glrunner does not support yet")
            } else {
                format!("{who} has an unknown shell `{shell}`")
            },
            "glrunner generates bash scripts (run by bash, or sh where bash is missing)",
            "set `shell = \"bash\"` or remove the `shell` line".to_owned(),
        ))
    }

    fn check_kubernetes(
        &self,
        base: &[Segment],
        who: &str,
        k: &crate::kubernetes::KubernetesConfig,
    ) -> Result<(), ConfigError> {
        if k.cert_file.is_some() != k.key_file.is_some() {
            let (set, missing) = if k.cert_file.is_some() {
                ("cert_file", "key_file")
            } else {
                ("key_file", "cert_file")
            };
            return Err(self.invalid(
                &with(base, &[set]),
                format!("{who}: [runners.kubernetes] sets `{set}` without `{missing}`"),
                "certificate authentication to the Kubernetes API needs both the certificate and its key",
                format!("add `{missing}` (and `ca_file`), or remove `{set}` to use in-cluster credentials or kubeconfig"),
            ));
        }
        let v = &k.volumes;
        let mounts = v
            .host_path
            .iter()
            .map(|x| ("host_path", &x.name, &x.mount_path))
            .enumerate()
            .chain(
                v.pvc
                    .iter()
                    .map(|x| ("pvc", &x.name, &x.mount_path))
                    .enumerate(),
            )
            .chain(
                v.config_map
                    .iter()
                    .map(|x| ("config_map", &x.name, &x.mount_path))
                    .enumerate(),
            )
            .chain(
                v.secret
                    .iter()
                    .map(|x| ("secret", &x.name, &x.mount_path))
                    .enumerate(),
            )
            .chain(
                v.empty_dir
                    .iter()
                    .map(|x| ("empty_dir", &x.name, &x.mount_path))
                    .enumerate(),
            )
            .chain(
                v.csi
                    .iter()
                    .map(|x| ("csi", &x.name, &x.mount_path))
                    .enumerate(),
            )
            .chain(
                v.nfs
                    .iter()
                    .map(|x| ("nfs", &x.name, &x.mount_path))
                    .enumerate(),
            );
        for (idx, (kind, name, mount_path)) in mounts {
            let mut path = with(base, &["volumes", kind]);
            path.push(Segment::Index(idx));
            for (field, value) in [("name", name), ("mount_path", mount_path)] {
                if value.trim().is_empty() {
                    return Err(self.invalid(
                        &path,
                        format!(
                            "{who}: a [[runners.kubernetes.volumes.{kind}]] entry has no `{field}`"
                        ),
                        "every volume needs a name and the path to mount it at",
                        format!("add `{field} = \"…\"` to that volume"),
                    ));
                }
            }
        }
        for (idx, nfs) in v.nfs.iter().enumerate() {
            if nfs.server.trim().is_empty() || nfs.path.trim().is_empty() {
                let mut path = with(base, &["volumes", "nfs"]);
                path.push(Segment::Index(idx));
                return Err(self.invalid(
                    &path,
                    format!(
                        "{who}: NFS volume `{}` needs both `server` and `path`",
                        nfs.name
                    ),
                    "Kubernetes mounts NFS exports by server and exported path",
                    "add `server = \"nfs.example.com\"` and `path = \"/export\"` to that volume"
                        .to_owned(),
                ));
            }
        }
        for (idx, csi) in v.csi.iter().enumerate() {
            if csi.driver.trim().is_empty() {
                let mut path = with(base, &["volumes", "csi"]);
                path.push(Segment::Index(idx));
                return Err(self.invalid(
                    &path,
                    format!("{who}: CSI volume `{}` has no `driver`", csi.name),
                    "Kubernetes needs the CSI driver's name to mount the volume",
                    "add `driver = \"<csi driver name>\"` to that volume".to_owned(),
                ));
            }
        }
        for (idx, svc) in k.services.iter().enumerate() {
            if svc.name.trim().is_empty() {
                let mut path = with(base, &["services"]);
                path.push(Segment::Index(idx));
                return Err(self.invalid(
                    &path,
                    format!("{who}: a [[runners.kubernetes.services]] entry has no `name`"),
                    "a service is started from the image its `name` gives",
                    "add `name = \"postgres:16\"` (the service's image) to that entry".to_owned(),
                ));
            }
        }
        Ok(())
    }
}
