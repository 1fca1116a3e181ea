//! A job as glrunner runs it: its keys read from the resolved document, with `default:` (and the
//! deprecated top-level `image`/`before_script`/`after_script`) and top-level variables applied.

use crate::document::{Mapping, Node, Source, Value};
use crate::duration;
use crate::error::{Location, PipelineError, UnsupportedKey};
use crate::keywords::{self, Keyword};
use crate::resolution::{REFERENCE_FIX, REFERENCE_TAG, first_reference};
use crate::variables::{self, YamlVariable};
use std::time::Duration;

/// The stage a job runs in when it names none.
pub const DEFAULT_STAGE: &str = "test";

/// GitLab flattens nested script lists up to this depth.
const MAX_SCRIPT_NESTING: usize = 10;

/// One runnable job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: String,
    pub stage: String,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    /// Top-level variables with the job's laid over them.
    pub variables: Vec<YamlVariable>,
    pub image: Option<ImageSpec>,
    /// `None`: the project's default applies.
    pub timeout: Option<Duration>,
    /// Decides the pipeline's status only; the job runs the same either way.
    pub allow_failure: AllowFailure,
    /// Where the job's name is written.
    pub location: Location,
}

/// `image:` as a name or `{name, entrypoint, pull_policy, docker, kubernetes}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSpec {
    pub name: String,
    pub entrypoint: Vec<String>,
    pub pull_policy: Vec<String>,
    /// `docker:` and `kubernetes:` options, passed on as the payload's `executor_opts`.
    pub executor_opts: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowFailure {
    #[default]
    No,
    Yes,
    /// Allowed to fail with one of these exit codes only.
    ExitCodes(Vec<i64>),
}

/// What a job inherits when it does not set a key itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    pub before_script: Option<Vec<String>>,
    pub after_script: Option<Vec<String>>,
    pub image: Option<ImageSpec>,
    pub timeout: Option<Duration>,
}

/// Whose keys are being read, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Job(&'a str),
    Default,
    /// The deprecated top-level `image:`, `before_script:` and `after_script:`.
    TopLevel,
}

impl Owner<'_> {
    fn job(self) -> Option<String> {
        match self {
            Owner::Job(name) => Some(name.to_owned()),
            Owner::Default | Owner::TopLevel => None,
        }
    }
}

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Job(name) => write!(f, "job `{name}`"),
            Owner::Default => f.write_str("`default:`"),
            Owner::TopLevel => f.write_str("the top level"),
        }
    }
}

/// What the file says around one job.
pub struct JobScope<'a> {
    pub source: &'a Source,
    pub stages: &'a [String],
    pub defaults: &'a Defaults,
    pub variables: &'a [YamlVariable],
}

/// A job of the file: runnable, or using a key glrunner cannot run yet.
pub type JobOutcome = Result<Job, UnsupportedKey>;

/// Read job `name`. The outer error makes the whole file invalid (as in GitLab); the inner one is a
/// GitLab feature glrunner refuses for this job only.
pub fn read(
    scope: &JobScope<'_>,
    name: &str,
    name_at: Location,
    node: &Node,
) -> Result<JobOutcome, PipelineError> {
    let source = scope.source;
    let Value::Map(map) = &node.value else {
        return Err(PipelineError::invalid(
            name_at,
            format!(
                "`{name}` is {}, but a top-level key that is not a GitLab keyword is a job, and a job is a \
                 mapping",
                node.value.kind()
            ),
            format!(
                "write the job as `{name}:` followed by indented keys such as `script:`, or rename it to \
                 `.{name}` to make it a hidden template"
            ),
        ));
    };
    check_unknown_keys(source, name, map)?;
    if let Some(unsupported) = first_unsupported(source, name, map) {
        return Ok(Err(unsupported));
    }
    match parse(scope, name, name_at, map) {
        Ok(job) => Ok(Ok(job)),
        Err(PipelineError::Unsupported(u)) => Ok(Err(u)),
        Err(e) => Err(e),
    }
}

fn check_unknown_keys(source: &Source, name: &str, map: &Mapping) -> Result<(), PipelineError> {
    for entry in map.iter() {
        if keywords::job_keyword(&entry.key) != Keyword::Unknown {
            continue;
        }
        let fix = match (
            entry.key.as_str(),
            keywords::closest_job_keyword(&entry.key),
        ) {
            ("type", _) => "`type` was removed from GitLab; write `stage:` instead".to_owned(),
            (_, Some(meant)) => format!("did you mean `{meant}`? GitLab rejects unknown keys too"),
            (key, None) => format!("remove `{key}`; GitLab rejects unknown keys too"),
        };
        return Err(PipelineError::invalid(
            source.at(entry.key_mark),
            format!("job `{name}` has the unknown key `{}`", entry.key),
            fix,
        ));
    }
    Ok(())
}

fn first_unsupported(source: &Source, name: &str, map: &Mapping) -> Option<UnsupportedKey> {
    let unsupported = |at, key: String, fix: &str| UnsupportedKey {
        at: source.at(at),
        key,
        job: Some(name.to_owned()),
        fix: fix.to_owned(),
    };
    for entry in map.iter() {
        if let Keyword::Unsupported(fix) = keywords::job_keyword(&entry.key) {
            return Some(unsupported(entry.key_mark, entry.key.clone(), fix));
        }
    }
    map.iter().find_map(|entry| {
        first_reference(&entry.value)
            .map(|mark| unsupported(mark, REFERENCE_TAG.to_owned(), REFERENCE_FIX))
    })
}

fn parse(
    scope: &JobScope<'_>,
    name: &str,
    name_at: Location,
    map: &Mapping,
) -> Result<Job, PipelineError> {
    let source = scope.source;
    let owner = Owner::Job(name);
    if let Some(when) = map.get("when") {
        check_when(source, name, when)?;
    }
    let Some(script_node) = map.get("script") else {
        return Err(PipelineError::invalid(
            name_at,
            format!("job `{name}` has no `script:`"),
            format!(
                "add the commands to run under `script:`, or rename the job to `.{name}` if it is a \
                 template"
            ),
        ));
    };
    let script = commands(source, script_node, &format!("`script` of {owner}"))?;
    if script.is_empty() {
        return Err(PipelineError::invalid(
            source.at(script_node.mark),
            format!("`script` of {owner} is empty"),
            "list at least one command under `script:`",
        ));
    }
    let optional_commands = |key: &str| {
        map.get(key)
            .map(|n| commands(source, n, &format!("`{key}` of {owner}")))
            .transpose()
    };
    let stage = match map.get("stage") {
        Some(node) => stage(scope, name, node)?,
        None => DEFAULT_STAGE.to_owned(),
    };
    let job_variables = match map.get("variables") {
        Some(node) => variables::parse(source, node, &owner.to_string())?,
        None => Vec::new(),
    };
    let defaults = scope.defaults;
    Ok(Job {
        name: name.to_owned(),
        stage,
        before_script: optional_commands("before_script")?
            .or_else(|| defaults.before_script.clone())
            .unwrap_or_default(),
        script,
        after_script: optional_commands("after_script")?
            .or_else(|| defaults.after_script.clone())
            .unwrap_or_default(),
        variables: variables::merge(scope.variables, &job_variables),
        image: match map.get("image") {
            Some(node) => Some(image(source, node, owner)?),
            None => defaults.image.clone(),
        },
        timeout: match map.get("timeout") {
            Some(node) => Some(timeout(source, node, owner)?),
            None => defaults.timeout,
        },
        allow_failure: match map.get("allow_failure") {
            Some(node) => allow_failure(source, node, owner)?,
            None => AllowFailure::No,
        },
        location: name_at,
    })
}

fn check_when(source: &Source, name: &str, node: &Node) -> Result<(), PipelineError> {
    match node.value.as_str() {
        Some("on_success") => Ok(()),
        Some(when @ ("on_failure" | "always" | "manual" | "delayed" | "never")) => {
            Err(PipelineError::Unsupported(UnsupportedKey {
                at: source.at(node.mark),
                key: format!("when: {when}"),
                job: Some(name.to_owned()),
                fix: format!(
                    "delete `when: {when}` from the job (glrunner runs the job you name right away, \
                     whatever the other jobs did)"
                ),
            }))
        }
        _ => Err(PipelineError::invalid(
            source.at(node.mark),
            format!(
                "`when` of job `{name}` must be one of on_success, on_failure, always, manual, delayed"
            ),
            "write `when: on_success` or delete the key",
        )),
    }
}

fn stage(scope: &JobScope<'_>, name: &str, node: &Node) -> Result<String, PipelineError> {
    let source = scope.source;
    let Some(stage) = node.value.as_str() else {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!(
                "`stage` of job `{name}` is {}, not a stage name",
                node.value.kind()
            ),
            format!("write one of the stages: {}", scope.stages.join(", ")),
        ));
    };
    if !scope.stages.iter().any(|s| s == stage) {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!(
                "job `{name}` uses stage `{stage}`, which is not in `stages:` (stages: {})",
                scope.stages.join(", ")
            ),
            format!(
                "add `{stage}` to the top-level `stages:` list, or use one of the stages above"
            ),
        ));
    }
    Ok(stage.to_owned())
}

/// A script keyword: one string, or a list of strings and nested lists (flattened).
pub fn commands(source: &Source, node: &Node, what: &str) -> Result<Vec<String>, PipelineError> {
    fn flatten(
        source: &Source,
        node: &Node,
        what: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), PipelineError> {
        match &node.value {
            Value::Str(s) => out.push(s.clone()),
            Value::Seq(items) if depth < MAX_SCRIPT_NESTING => {
                for item in items {
                    flatten(source, item, what, depth + 1, out)?;
                }
            }
            Value::Seq(_) => {
                return Err(PipelineError::invalid(
                    source.at(node.mark),
                    format!("{what} nests lists more than {MAX_SCRIPT_NESTING} levels deep"),
                    "flatten the list",
                ));
            }
            other => {
                return Err(PipelineError::invalid(
                    source.at(node.mark),
                    format!("{what} contains {}, but commands are strings", other.kind()),
                    "quote the command, e.g. `- \"echo 42\"`; a command containing `: ` must be quoted too",
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    match &node.value {
        Value::Str(s) => out.push(s.clone()),
        Value::Seq(_) => flatten(source, node, what, 0, &mut out)?,
        other => {
            return Err(PipelineError::invalid(
                source.at(node.mark),
                format!(
                    "{what} is {}, not a command or a list of commands",
                    other.kind()
                ),
                "write `script:` followed by a list such as `- make test`",
            ));
        }
    }
    Ok(out)
}

/// `image:` as a string or a mapping.
pub fn image(source: &Source, node: &Node, owner: Owner<'_>) -> Result<ImageSpec, PipelineError> {
    let invalid = |node: &Node, problem: String, fix: &str| {
        PipelineError::invalid(source.at(node.mark), problem, fix.to_owned())
    };
    let fields = match &node.value {
        Value::Str(name) => {
            return Ok(ImageSpec {
                name: name.clone(),
                ..ImageSpec::default()
            });
        }
        Value::Map(fields) => fields,
        other => {
            return Err(invalid(
                node,
                format!("`image` of {owner} is {}", other.kind()),
                "write `image: ruby:3.3` or `image: {name: ruby:3.3}`",
            ));
        }
    };
    let mut spec = ImageSpec::default();
    let mut named = false;
    for field in fields.iter() {
        let value = &field.value;
        match field.key.as_str() {
            "name" => {
                spec.name = value
                    .value
                    .as_str()
                    .ok_or_else(|| {
                        invalid(
                            value,
                            format!("`image:name` of {owner} is {}", value.value.kind()),
                            "write `name: ruby:3.3`",
                        )
                    })?
                    .to_owned();
                named = true;
            }
            "entrypoint" => {
                spec.entrypoint = string_list(value).ok_or_else(|| {
                    invalid(
                        value,
                        format!("`image:entrypoint` of {owner} is not a list of strings"),
                        "write `entrypoint: [\"\"]` or `entrypoint: [\"/bin/sh\", \"-c\"]`",
                    )
                })?;
            }
            "pull_policy" => {
                spec.pull_policy = match &value.value {
                    Value::Str(s) => vec![s.clone()],
                    _ => string_list(value).ok_or_else(|| {
                        invalid(
                            value,
                            format!("`image:pull_policy` of {owner} is not a policy or a list of policies"),
                            "write `pull_policy: if-not-present` (or always, never, or a list of them)",
                        )
                    })?,
                };
            }
            key @ ("docker" | "kubernetes") => {
                if !matches!(value.value, Value::Map(_)) {
                    return Err(invalid(
                        value,
                        format!(
                            "`image:{key}` of {owner} is {}, not a mapping",
                            value.value.kind()
                        ),
                        "write options as a mapping, e.g. `docker: {platform: linux/amd64}`",
                    ));
                }
                spec.executor_opts.insert(key.to_owned(), to_json(value));
            }
            "ports" => {
                return Err(PipelineError::Unsupported(UnsupportedKey {
                    at: source.at(field.key_mark),
                    key: "image:ports".into(),
                    job: owner.job(),
                    fix: "delete `ports:` from `image:`".into(),
                }));
            }
            other => {
                return Err(PipelineError::invalid(
                    source.at(field.key_mark),
                    format!("`image` of {owner} has the unknown key `{other}`"),
                    "use only name, entrypoint, pull_policy, docker and kubernetes",
                ));
            }
        }
    }
    if !named || spec.name.is_empty() {
        return Err(invalid(
            node,
            format!("`image` of {owner} has no `name`"),
            "add `name: <image>` under `image:`",
        ));
    }
    Ok(spec)
}

fn string_list(node: &Node) -> Option<Vec<String>> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .map(|i| i.value.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
        Value::Tagged(_, inner) => to_json(inner),
    }
}

/// `timeout:` as a GitLab duration (or a number of seconds).
pub fn timeout(source: &Source, node: &Node, owner: Owner<'_>) -> Result<Duration, PipelineError> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => {
            return Err(PipelineError::invalid(
                source.at(node.mark),
                format!("`timeout` of {owner} is {}, not a duration", other.kind()),
                "write a duration such as `timeout: 1h 30m` or `timeout: 90 minutes`",
            ));
        }
    };
    duration::parse(&text).map_err(|e| {
        PipelineError::invalid(
            source.at(node.mark),
            format!("`timeout` of {owner}: {e}"),
            "write a duration up to one month, such as `timeout: 1h 30m` or `timeout: 90 minutes`",
        )
    })
}

fn allow_failure(
    source: &Source,
    node: &Node,
    owner: Owner<'_>,
) -> Result<AllowFailure, PipelineError> {
    let invalid = || {
        PipelineError::invalid(
            source.at(node.mark),
            format!("`allow_failure` of {owner} must be true, false or `{{exit_codes: [...]}}`"),
            "write `allow_failure: true` or `allow_failure: {exit_codes: [137, 255]}`",
        )
    };
    match &node.value {
        Value::Bool(true) => Ok(AllowFailure::Yes),
        Value::Bool(false) => Ok(AllowFailure::No),
        Value::Map(m) if m.len() == 1 => {
            let codes = m.get("exit_codes").ok_or_else(invalid)?;
            let codes = match &codes.value {
                Value::Int(i) => vec![*i],
                Value::Seq(items) => items
                    .iter()
                    .map(|i| match i.value {
                        Value::Int(code) => Some(code),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(invalid)?,
                _ => return Err(invalid()),
            };
            Ok(AllowFailure::ExitCodes(codes))
        }
        _ => Err(invalid()),
    }
}
