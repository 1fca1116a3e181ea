//! A job as glrunner runs it: its keys read from the resolved document, with `default:` (and the
//! deprecated top-level `image`/`services`/`cache`/`before_script`/`after_script`) inherited as
//! `inherit:default` allows, top-level variables as `inherit:variables` allows, and `parallel:` turned
//! into one job per instance.

use crate::artifacts::{self, Artifacts};
use crate::cache::{self, CacheSpec};
use crate::document::{Mapping, Node, Source, Value};
use crate::duration;
use crate::error::{Location, PipelineError, UnsupportedKey};
use crate::keywords::{self, Keyword};
use crate::needs::{self, Need};
use crate::parallel::{self, Instance};
use crate::reader::Reader;
use crate::rules::{self, JobWhen, Policy, Rule, RuleScope};
use crate::variables::{self, YamlVariable};
use std::time::Duration;

/// The stage a job runs in when it names none.
pub const DEFAULT_STAGE: &str = "test";

/// GitLab flattens nested script lists up to this depth.
const MAX_SCRIPT_NESTING: usize = 10;

/// GitLab's limit on `start_in`.
const MAX_START_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// One runnable job (one instance of a `parallel:` job).
#[derive(Debug, Clone)]
pub struct Job {
    /// The name GitLab shows: `test`, `test 2/4`, `deploy: [aws, eu]`.
    pub name: String,
    /// The name as written in the file (differs from `name` for parallel jobs).
    pub base_name: String,
    pub stage: String,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    /// Top-level variables (as `inherit:variables` allows) with the job's and the matrix's over them.
    pub variables: Vec<YamlVariable>,
    /// The job's own variables (and its matrix combination's), without the top-level ones.
    pub own_variables: Vec<YamlVariable>,
    /// Which top-level variables the job takes (`inherit:variables`).
    pub inherit_variables: Inherit,
    pub image: Option<ImageSpec>,
    pub services: Vec<ServiceSpec>,
    /// `None`: the project's default applies.
    pub timeout: Option<Duration>,
    /// Decides the pipeline's status only; the job runs the same either way.
    pub allow_failure: AllowFailure,
    /// Whether `allow_failure` was written (a manual job defaults to allowed).
    pub allow_failure_set: bool,
    pub when: JobWhen,
    pub start_in: Option<Duration>,
    /// `None`: no `rules:` (then `only`/`except` decide).
    pub rules: Option<Vec<Rule>>,
    pub only: Option<Policy>,
    pub except: Option<Policy>,
    /// `None`: the job waits for earlier stages. Names are instance names once the file is read.
    pub needs: Option<Vec<Need>>,
    /// `None`: artifacts of every job it waits for. Instance names once the file is read.
    pub dependencies: Option<Vec<String>>,
    pub artifacts: Option<Artifacts>,
    pub cache: Vec<CacheSpec>,
    /// `hooks:` as (hook name, commands).
    pub hooks: Vec<(String, Vec<String>)>,
    /// `(CI_NODE_INDEX, CI_NODE_TOTAL)` for an instance of a `parallel:` job.
    pub node: Option<(usize, usize)>,
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

/// One of `services:`: an image plus how the job reaches it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSpec {
    pub image: ImageSpec,
    pub alias: Option<String>,
    pub command: Vec<String>,
    pub variables: Vec<YamlVariable>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowFailure {
    #[default]
    No,
    Yes,
    /// Allowed to fail with one of these exit codes only.
    ExitCodes(Vec<i64>),
}

impl AllowFailure {
    /// Whether a failure with `exit_code` (if known) is allowed.
    pub fn allows(&self, exit_code: Option<i32>) -> bool {
        match self {
            AllowFailure::No => false,
            AllowFailure::Yes => true,
            AllowFailure::ExitCodes(codes) => {
                exit_code.is_some_and(|c| codes.contains(&i64::from(c)))
            }
        }
    }
}

/// What a job inherits when it does not set a key itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    pub before_script: Option<Vec<String>>,
    pub after_script: Option<Vec<String>>,
    pub image: Option<ImageSpec>,
    pub services: Option<Vec<ServiceSpec>>,
    pub timeout: Option<Duration>,
    pub cache: Option<Vec<CacheSpec>>,
    pub artifacts: Option<Artifacts>,
    pub hooks: Option<Vec<(String, Vec<String>)>>,
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

/// Read job `name`: one outcome per instance (one unless `parallel:`). The outer error makes the whole
/// file invalid (as in GitLab); an inner one is a GitLab feature glrunner refuses for this job only.
pub fn read(
    scope: &JobScope<'_>,
    name: &str,
    name_at: Location,
    node: &Node,
) -> Result<Vec<(String, JobOutcome)>, PipelineError> {
    let source = scope.source;
    let reader = Reader::new(source);
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
    let instances = match map.get("parallel") {
        Some(node) => Some(parallel::read(&reader, node, name)?),
        None => None,
    };
    let names: Vec<Instance> = match &instances {
        Some(p) => parallel::instances(name, p),
        None => vec![Instance {
            name: name.to_owned(),
            index: 0,
            total: 0,
            variables: Vec::new(),
        }],
    };
    for instance in &names {
        if instance.name.chars().count() > parallel::MAX_NAME_LENGTH {
            return Err(PipelineError::invalid(
                name_at,
                format!(
                    "the job name `{}` is longer than {} characters",
                    instance.name,
                    parallel::MAX_NAME_LENGTH
                ),
                "use a shorter name or shorter matrix values",
            ));
        }
    }
    if let Some(unsupported) = first_unsupported(source, name, map) {
        return Ok(names
            .into_iter()
            .map(|i| (i.name, Err(unsupported.clone())))
            .collect());
    }
    let base = match parse(scope, name, name_at, map) {
        Ok(job) => job,
        Err(PipelineError::Unsupported(u)) => {
            return Ok(names
                .into_iter()
                .map(|i| (i.name, Err(u.clone())))
                .collect());
        }
        Err(e) => return Err(e),
    };
    Ok(match instances {
        None => vec![(base.name.clone(), Ok(base))],
        Some(_) => names
            .into_iter()
            .map(|instance| {
                let mut job = base.clone();
                job.name = instance.name.clone();
                job.node = Some((instance.index, instance.total));
                let matrix: Vec<YamlVariable> = instance
                    .variables
                    .iter()
                    .map(|(key, value)| YamlVariable {
                        key: key.clone(),
                        value: value.clone(),
                        raw: false,
                    })
                    .collect();
                job.variables = variables::merge(&job.variables, &matrix);
                job.own_variables = variables::merge(&job.own_variables, &matrix);
                (instance.name, Ok(job))
            })
            .collect(),
    })
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
    map.iter()
        .find_map(|entry| match keywords::job_keyword(&entry.key) {
            Keyword::Unsupported(fix) => Some(UnsupportedKey {
                at: source.at(entry.key_mark),
                key: entry.key.clone(),
                job: Some(name.to_owned()),
                fix: fix.to_owned(),
            }),
            _ => None,
        })
}

/// `inherit:` of a job: which `default:` keys and top-level variables it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    All,
    None,
    Only(Vec<String>),
}

impl Inherit {
    pub fn allows(&self, key: &str) -> bool {
        match self {
            Inherit::All => true,
            Inherit::None => false,
            Inherit::Only(keys) => keys.iter().any(|k| k == key),
        }
    }
}

fn read_inherit(
    reader: &Reader<'_>,
    map: &Mapping,
    name: &str,
) -> Result<(Inherit, Inherit), PipelineError> {
    let Some(node) = map.get("inherit") else {
        return Ok((Inherit::All, Inherit::All));
    };
    let what = format!("`inherit` of job `{name}`");
    let inherit = reader.mapping(
        node,
        &what,
        "`inherit: {default: false, variables: [GLOBAL_VAR]}`",
    )?;
    reader.known_keys(inherit, &["default", "variables"], &what)?;
    let one = |key: &str, allowed: Option<&[&str]>| -> Result<Inherit, PipelineError> {
        let Some(n) = inherit.get(key) else {
            return Ok(Inherit::All);
        };
        match &n.value {
            Value::Bool(true) => Ok(Inherit::All),
            Value::Bool(false) => Ok(Inherit::None),
            Value::Seq(_) => {
                let keys = reader.string_list(
                    n,
                    &format!("`inherit:{key}` of job `{name}`"),
                    "a list of names",
                )?;
                if let Some(allowed) = allowed
                    && let Some(bad) = keys.iter().find(|k| !allowed.contains(&k.as_str()))
                {
                    return Err(reader.invalid(
                        n,
                        format!("`inherit:{key}` of job `{name}` lists `{bad}`, which is not a `default:` key"),
                        format!("list only: {}", allowed.join(", ")),
                    ));
                }
                Ok(Inherit::Only(keys))
            }
            other => Err(reader.invalid(
                n,
                format!(
                    "`inherit:{key}` of job `{name}` is {}, but it must be true, false or a list",
                    other.kind()
                ),
                format!("write `inherit: {{{key}: false}}` or `inherit: {{{key}: [...]}}`"),
            )),
        }
    };
    let default_keys: Vec<&str> = keywords::default_keys().collect();
    Ok((
        one("default", Some(&default_keys))?,
        one("variables", None)?,
    ))
}

fn parse(
    scope: &JobScope<'_>,
    name: &str,
    name_at: Location,
    map: &Mapping,
) -> Result<Job, PipelineError> {
    let source = scope.source;
    let reader = Reader::new(source);
    let owner = Owner::Job(name);
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
    let (inherit_default, inherit_variables) = read_inherit(&reader, map, name)?;
    let defaults = scope.defaults;
    let inherited = |key: &str| inherit_default.allows(key);
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
    let root_variables: Vec<YamlVariable> = scope
        .variables
        .iter()
        .filter(|v| inherit_variables.allows(&v.key))
        .cloned()
        .collect();
    let rules = map
        .get("rules")
        .map(|n| rules::read_rules(&reader, n, RuleScope::Job, &owner.to_string(), Some(name)))
        .transpose()?;
    let only = map
        .get("only")
        .map(|n| rules::read_policy(&reader, "only", n, name))
        .transpose()?;
    let except = map
        .get("except")
        .map(|n| rules::read_policy(&reader, "except", n, name))
        .transpose()?;
    if rules.is_some() {
        for key in ["only", "except", "start_in"] {
            if let Some(entry) = map.entry(key) {
                return Err(PipelineError::invalid(
                    source.at(entry.key_mark),
                    format!("job `{name}`: `{key}` may not be used with `rules`"),
                    format!("move the condition into `rules:` and delete `{key}:`"),
                ));
            }
        }
    }
    let when = match map.get("when") {
        Some(node) => job_when(&reader, name, node)?,
        None => JobWhen::OnSuccess,
    };
    let start_in = match (when, map.get("start_in")) {
        (JobWhen::Delayed, Some(node)) => Some(start_in(&reader, name, node)?),
        (JobWhen::Delayed, None) => {
            return Err(PipelineError::invalid(
                name_at,
                format!("job `{name}` has `when: delayed` but no `start_in`"),
                "add `start_in: 30 minutes` (at most one week)",
            ));
        }
        (_, Some(_)) if rules.is_none() => {
            let entry = map
                .entry("start_in")
                .map_or(name_at.clone(), |e| source.at(e.key_mark));
            return Err(PipelineError::invalid(
                entry,
                format!("job `{name}` has `start_in` without `when: delayed`"),
                "add `when: delayed` or delete `start_in:`",
            ));
        }
        _ => None,
    };
    let (allow_failure, allow_failure_set) = match map.get("allow_failure") {
        Some(node) => (allow_failure(source, node, owner)?, true),
        // A manual job may be skipped without failing the pipeline.
        None if when == JobWhen::Manual => (AllowFailure::Yes, false),
        None => (AllowFailure::No, false),
    };
    let needs = map
        .get("needs")
        .map(|n| needs::read(&reader, n, name))
        .transpose()?;
    let dependencies = map
        .get("dependencies")
        .map(|n| {
            reader.string_list(
                n,
                &format!("`dependencies` of {owner}"),
                "`dependencies: [build]`",
            )
        })
        .transpose()?;
    Ok(Job {
        name: name.to_owned(),
        base_name: name.to_owned(),
        stage,
        before_script: optional_commands("before_script")?
            .or_else(|| {
                defaults
                    .before_script
                    .clone()
                    .filter(|_| inherited("before_script"))
            })
            .unwrap_or_default(),
        script,
        after_script: optional_commands("after_script")?
            .or_else(|| {
                defaults
                    .after_script
                    .clone()
                    .filter(|_| inherited("after_script"))
            })
            .unwrap_or_default(),
        variables: variables::merge(&root_variables, &job_variables),
        own_variables: job_variables,
        inherit_variables: inherit_variables.clone(),
        image: match map.get("image") {
            Some(node) => Some(image(source, node, owner)?),
            None => defaults.image.clone().filter(|_| inherited("image")),
        },
        services: match map.get("services") {
            Some(node) => services(source, node, owner)?,
            None => defaults
                .services
                .clone()
                .filter(|_| inherited("services"))
                .unwrap_or_default(),
        },
        timeout: match map.get("timeout") {
            Some(node) => Some(timeout(source, node, owner)?),
            None => defaults.timeout.filter(|_| inherited("timeout")),
        },
        allow_failure,
        allow_failure_set,
        when,
        start_in,
        rules,
        only,
        except,
        needs,
        dependencies,
        artifacts: match map.get("artifacts") {
            Some(node) => Some(artifacts::read(&reader, node, &owner.to_string())?),
            None => defaults
                .artifacts
                .clone()
                .filter(|_| inherited("artifacts")),
        },
        cache: match map.get("cache") {
            Some(node) => cache::read(&reader, node, &owner.to_string())?,
            None => defaults
                .cache
                .clone()
                .filter(|_| inherited("cache"))
                .unwrap_or_default(),
        },
        hooks: match map.get("hooks") {
            Some(node) => hooks(source, node, owner)?,
            None => defaults
                .hooks
                .clone()
                .filter(|_| inherited("hooks"))
                .unwrap_or_default(),
        },
        node: None,
        location: name_at,
    })
}

fn job_when(reader: &Reader<'_>, name: &str, node: &Node) -> Result<JobWhen, PipelineError> {
    node.value
        .as_str()
        .and_then(JobWhen::parse)
        .filter(|w| *w != JobWhen::Never)
        .ok_or_else(|| {
            reader.invalid(
                node,
                format!("`when` of job `{name}` must be one of on_success, on_failure, always, manual, delayed"),
                "write `when: on_success` or delete the key (use `rules:` with `when: never` to leave a job out)",
            )
        })
}

fn start_in(reader: &Reader<'_>, name: &str, node: &Node) -> Result<Duration, PipelineError> {
    let text = reader.string(
        node,
        &format!("`start_in` of job `{name}`"),
        "`start_in: 30 minutes`",
    )?;
    match duration::parse_unbounded(&text) {
        Ok(d) if d <= MAX_START_IN => Ok(d),
        Ok(_) => Err(reader.invalid(
            node,
            format!("`start_in` of job `{name}` is longer than one week"),
            "write at most `start_in: 1 week`",
        )),
        Err(e) => Err(reader.invalid(
            node,
            format!("`start_in` of job `{name}`: {e}"),
            "write `start_in: 30 minutes`",
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

/// `services:`: names or `{name, alias, entrypoint, command, variables, pull_policy, docker, kubernetes}`.
pub fn services(
    source: &Source,
    node: &Node,
    owner: Owner<'_>,
) -> Result<Vec<ServiceSpec>, PipelineError> {
    let reader = Reader::new(source);
    let what = format!("`services` of {owner}");
    if !matches!(node.value, Value::Seq(_)) {
        return Err(reader.invalid(
            node,
            format!("{what} is {}, not a list", node.value.kind()),
            "write `services: [postgres:16]`",
        ));
    }
    reader
        .flat_list(node, &what)?
        .into_iter()
        .map(|item| {
            let Value::Map(fields) = &item.value else {
                return Ok(ServiceSpec {
                    image: image(source, item, owner)?,
                    ..ServiceSpec::default()
                });
            };
            let mut image_fields = Mapping::default();
            let mut service = ServiceSpec::default();
            for field in fields.iter() {
                let label = format!("`{}` of a service of {owner}", field.key);
                match field.key.as_str() {
                    "alias" => {
                        service.alias = Some(reader.string(&field.value, &label, "`alias: db`")?)
                    }
                    "command" => {
                        service.command = reader.strings(
                            &field.value,
                            &label,
                            "`command: [postgres, -c, fsync=off]`",
                        )?
                    }
                    "variables" => {
                        service.variables = variables::parse(
                            source,
                            &field.value,
                            &format!("a service of {owner}"),
                        )?
                    }
                    _ => image_fields.assign(field.clone()),
                }
            }
            service.image = image(
                source,
                &Node {
                    value: Value::Map(image_fields),
                    mark: item.mark,
                },
                owner,
            )?;
            Ok(service)
        })
        .collect()
}

/// `hooks:` (only `pre_get_sources_script` exists).
pub fn hooks(
    source: &Source,
    node: &Node,
    owner: Owner<'_>,
) -> Result<Vec<(String, Vec<String>)>, PipelineError> {
    let reader = Reader::new(source);
    let what = format!("`hooks` of {owner}");
    let map = reader.mapping(
        node,
        &what,
        "`hooks: {pre_get_sources_script: [git config --global http.postBuffer 524288000]}`",
    )?;
    reader.known_keys(map, &["pre_get_sources_script"], &what)?;
    map.iter()
        .map(|e| {
            Ok((
                e.key.clone(),
                commands(source, &e.value, &format!("`hooks:{}` of {owner}", e.key))?,
            ))
        })
        .collect()
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
                    key: "ports".into(),
                    job: owner.job(),
                    fix: "delete `ports:`; glrunner does not expose ports of images or services"
                        .into(),
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
