//! The top level of a resolved `.gitlab-ci.yml`: `stages`, `variables`, `workflow`, `default:` and the
//! deprecated global keys, and every job (parallel jobs as their instances) in file order. After all
//! jobs are read, `needs:` and `dependencies:` are expanded to instance names and checked the way
//! GitLab checks them when it creates a pipeline.

use crate::document::{Mapping, Node, Source, Value};
use crate::error::{PipelineError, UnsupportedKey};
use crate::job::{self, DEFAULT_STAGE, Defaults, JobOutcome, JobScope, Owner};
use crate::keywords::{self, Keyword};
use crate::needs::Need;
use crate::parallel::{self, MatrixEntry};
use crate::reader::Reader;
use crate::resolution::{GLOBAL_KEYWORDS, ResolvedDocument};
use crate::rules::{self, Rule, RuleScope};
use crate::variables::{self, YamlVariable};
use crate::{artifacts, cache};
use std::collections::HashMap;

/// GitLab's stages when the file names none (without the `.pre`/`.post` edges).
const DEFAULT_STAGES: [&str; 3] = ["build", "test", "deploy"];

/// Top-level keys that are the deprecated spelling of `default:` keys.
const GLOBAL_DEFAULTS: [&str; 5] = [
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// One job of the file (one instance of a parallel job), in file order.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub name: String,
    /// The name as written (differs for parallel instances).
    pub base_name: String,
    /// Index into [`Config::stages`].
    pub stage_index: usize,
    pub outcome: JobOutcome,
}

/// `workflow:`.
#[derive(Debug, Clone, Default)]
pub struct Workflow {
    pub rules: Option<Vec<Rule>>,
    /// `workflow:name`, `CI_PIPELINE_NAME`.
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// With GitLab's `.pre` first and `.post` last.
    pub stages: Vec<String>,
    /// Top-level `variables:`.
    pub variables: Vec<YamlVariable>,
    pub workflow: Workflow,
    pub jobs: Vec<JobEntry>,
}

impl Config {
    pub fn entry(&self, name: &str) -> Option<&JobEntry> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

pub fn read(doc: ResolvedDocument) -> Result<Config, PipelineError> {
    let ResolvedDocument { source, root } = doc;
    let reader = Reader::new(&source);
    refuse_global_unsupported(&source, &root)?;
    let stages = match root.get("stages") {
        Some(node) => stages(&source, node)?,
        None => edge_stages(DEFAULT_STAGES.iter().map(|s| (*s).to_owned()).collect()),
    };
    let variables = match root.get("variables") {
        Some(node) => variables::parse(&source, node, "the top-level `variables:`")?,
        None => Vec::new(),
    };
    let workflow = match root.get("workflow") {
        Some(node) => workflow(&reader, node)?,
        None => Workflow::default(),
    };
    let defaults = defaults(&source, &root)?;
    let scope = JobScope {
        source: &source,
        stages: &stages,
        defaults: &defaults,
        variables: &variables,
    };
    let mut jobs = Vec::new();
    for entry in root.iter() {
        if is_keyword(&entry.key) || entry.key.starts_with('.') {
            continue;
        }
        let outcomes = job::read(&scope, &entry.key, source.at(entry.key_mark), &entry.value)?;
        let index = stage_index(&stages, &entry.value);
        for (name, outcome) in outcomes {
            jobs.push(JobEntry {
                name,
                base_name: entry.key.clone(),
                stage_index: index,
                outcome,
            });
        }
    }
    let mut config = Config {
        source,
        stages,
        variables,
        workflow,
        jobs,
    };
    expand_and_check_needs(&mut config)?;
    Ok(config)
}

fn is_keyword(key: &str) -> bool {
    GLOBAL_KEYWORDS.contains(&key)
}

fn refuse_global_unsupported(source: &Source, root: &Mapping) -> Result<(), PipelineError> {
    if let Some(entry) = root.entry("spec") {
        return Err(PipelineError::Unsupported(UnsupportedKey {
            at: source.at(entry.key_mark),
            key: "spec".into(),
            job: None,
            fix: "delete the `spec:` block and write each input's value where `$[[ inputs.… ]]` is used"
                .into(),
        }));
    }
    Ok(())
}

fn workflow(reader: &Reader<'_>, node: &Node) -> Result<Workflow, PipelineError> {
    let map = reader.mapping(
        node,
        "`workflow`",
        "`workflow: {rules: [{if: $CI_COMMIT_BRANCH}]}`",
    )?;
    reader.known_keys(map, &["rules", "name", "auto_cancel"], "`workflow`")?;
    Ok(Workflow {
        rules: map
            .get("rules")
            .map(|r| rules::read_rules(reader, r, RuleScope::Workflow, "`workflow:`", None))
            .transpose()?,
        name: map
            .get("name")
            .map(|n| {
                reader.string(
                    n,
                    "`workflow:name`",
                    "`name: \"Pipeline for $CI_COMMIT_BRANCH\"`",
                )
            })
            .transpose()?,
    })
}

/// `stages:` as GitLab completes it: `.pre` first, `.post` last, duplicates dropped.
fn stages(source: &Source, node: &Node) -> Result<Vec<String>, PipelineError> {
    fn collect(source: &Source, node: &Node, out: &mut Vec<String>) -> Result<(), PipelineError> {
        match &node.value {
            Value::Str(s) => out.push(s.clone()),
            Value::Seq(items) => items.iter().try_for_each(|i| collect(source, i, out))?,
            other => {
                return Err(PipelineError::invalid(
                    source.at(node.mark),
                    format!(
                        "`stages` contains {}, but stage names are strings",
                        other.kind()
                    ),
                    "write `stages:` followed by a list of names, e.g. `- build`",
                ));
            }
        }
        Ok(())
    }
    if !matches!(node.value, Value::Seq(_)) {
        return Err(PipelineError::invalid(
            source.at(node.mark),
            format!("`stages` is {}, not a list", node.value.kind()),
            "write `stages: [build, test, deploy]`",
        ));
    }
    let mut names = Vec::new();
    collect(source, node, &mut names)?;
    Ok(edge_stages(names))
}

fn edge_stages(names: Vec<String>) -> Vec<String> {
    let mut stages = vec![".pre".to_owned()];
    for name in names {
        if name != ".pre" && name != ".post" && !stages.contains(&name) {
            stages.push(name);
        }
    }
    stages.push(".post".to_owned());
    stages
}

/// The stage a job names (refused jobs included, when it can be read).
fn stage_index(stages: &[String], node: &Node) -> usize {
    let name = match &node.value {
        Value::Map(m) => m
            .get("stage")
            .and_then(|s| s.value.as_str())
            .unwrap_or(DEFAULT_STAGE),
        _ => DEFAULT_STAGE,
    };
    stages
        .iter()
        .position(|s| s == name)
        .unwrap_or(stages.len())
}

/// `default:` merged with the deprecated top-level `image`, `services`, `cache`, `before_script` and
/// `after_script`.
fn defaults(source: &Source, root: &Mapping) -> Result<Defaults, PipelineError> {
    let mut defaults = Defaults::default();
    let default_map = match root.entry("default") {
        Some(entry) => match &entry.value.value {
            Value::Map(m) => Some(m),
            Value::Null => None,
            other => {
                return Err(PipelineError::invalid(
                    source.at(entry.value.mark),
                    format!("`default` is {}, not a mapping", other.kind()),
                    "write keys such as `before_script:` or `image:` indented under `default:`",
                ));
            }
        },
        None => None,
    };
    if let Some(map) = default_map {
        for entry in map.iter() {
            match keywords::default_keyword(&entry.key) {
                Keyword::Supported => {}
                Keyword::Ignored => continue,
                Keyword::Unsupported(fix) => {
                    return Err(PipelineError::Unsupported(UnsupportedKey {
                        at: source.at(entry.key_mark),
                        key: format!("default:{}", entry.key),
                        job: None,
                        fix: format!("{fix} (under `default:` it applies to every job)"),
                    }));
                }
                Keyword::Unknown => {
                    return Err(PipelineError::invalid(
                        source.at(entry.key_mark),
                        format!("`default:` has the unknown key `{}`", entry.key),
                        format!(
                            "use only {} under `default:`",
                            keywords::default_keys().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            read_default(
                source,
                &mut defaults,
                &entry.key,
                &entry.value,
                Owner::Default,
            )?;
        }
    }
    for key in GLOBAL_DEFAULTS {
        let Some(entry) = root.entry(key) else {
            continue;
        };
        if default_map.is_some_and(|m| m.get(key).is_some()) {
            return Err(PipelineError::invalid(
                source.at(entry.key_mark),
                format!("`{key}` is set both at the top level and under `default:`"),
                format!(
                    "keep only `default:{key}` (the top-level `{key}` is its deprecated spelling)"
                ),
            ));
        }
        read_default(source, &mut defaults, key, &entry.value, Owner::TopLevel)?;
    }
    Ok(defaults)
}

fn read_default(
    source: &Source,
    defaults: &mut Defaults,
    key: &str,
    node: &Node,
    owner: Owner<'_>,
) -> Result<(), PipelineError> {
    let reader = Reader::new(source);
    let what = format!("`{key}` of {owner}");
    match key {
        "before_script" => defaults.before_script = Some(job::commands(source, node, &what)?),
        "after_script" => defaults.after_script = Some(job::commands(source, node, &what)?),
        "image" => defaults.image = Some(job::image(source, node, owner)?),
        "services" => defaults.services = Some(job::services(source, node, owner)?),
        "timeout" => defaults.timeout = Some(job::timeout(source, node, owner)?),
        "cache" => defaults.cache = Some(cache::read(&reader, node, &owner.to_string())?),
        "artifacts" => {
            defaults.artifacts = Some(artifacts::read(&reader, node, &owner.to_string())?)
        }
        "hooks" => defaults.hooks = Some(job::hooks(source, node, owner)?),
        _ => {}
    }
    Ok(())
}

/// Instance names of each parallel job, by the name written in the file.
type Groups = HashMap<String, Vec<String>>;

fn groups(config: &Config) -> Groups {
    let mut groups: Groups = HashMap::new();
    for entry in &config.jobs {
        if entry.name != entry.base_name {
            groups
                .entry(entry.base_name.clone())
                .or_default()
                .push(entry.name.clone());
        }
    }
    groups
}

/// The job names a `needs:` entry stands for.
fn expand_need(need: &Need, groups: &Groups) -> Vec<Need> {
    let Some(instances) = groups.get(&need.job) else {
        return vec![need.clone()];
    };
    let names: Vec<String> = match &need.matrix {
        None => instances.clone(),
        Some(matrix) => wanted_matrix_names(&need.job, matrix),
    };
    names
        .into_iter()
        .map(|name| Need {
            job: name,
            matrix: None,
            ..need.clone()
        })
        .collect()
}

fn wanted_matrix_names(job: &str, matrix: &[MatrixEntry]) -> Vec<String> {
    parallel::combinations(matrix)
        .iter()
        .map(|combo| parallel::matrix_name(job, combo))
        .collect()
}

fn expand_and_check_needs(config: &mut Config) -> Result<(), PipelineError> {
    let groups = groups(config);
    let stage_of: HashMap<String, usize> = config
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.stage_index))
        .collect();
    for entry in &mut config.jobs {
        let Ok(job) = &mut entry.outcome else {
            continue;
        };
        let name = job.name.clone();
        let own_stage = entry.stage_index;
        if let Some(needs) = &job.needs {
            let expanded: Vec<Need> = needs.iter().flat_map(|n| expand_need(n, &groups)).collect();
            let mut kept = Vec::new();
            for need in expanded {
                match stage_of.get(&need.job) {
                    None if need.optional => continue,
                    None => {
                        return Err(PipelineError::invalid(
                            need.at.clone(),
                            format!("job `{name}`: undefined need: {}", need.job),
                            "name a job of this pipeline (hidden `.templates` never run), or mark the need \
                             `optional: true` if the job may be left out",
                        ));
                    }
                    Some(stage) if *stage > own_stage => {
                        return Err(PipelineError::invalid(
                            need.at.clone(),
                            format!(
                                "job `{name}`: need {} is not defined in current or prior stages",
                                need.job
                            ),
                            format!(
                                "move `{}` to stage `{}` or earlier, or `{name}` to a later stage",
                                need.job, config.stages[own_stage]
                            ),
                        ));
                    }
                    Some(_) => kept.push(need),
                }
            }
            job.needs = Some(kept);
        }
        if let Some(rules) = &mut job.rules {
            for rule in rules.iter_mut() {
                if let Some(needs) = &rule.needs {
                    rule.needs = Some(needs.iter().flat_map(|n| expand_need(n, &groups)).collect());
                }
            }
        }
        if let Some(dependencies) = &job.dependencies {
            let mut expanded = Vec::new();
            for dep in dependencies {
                let names = match groups.get(dep) {
                    Some(instances) => instances.clone(),
                    None => vec![dep.clone()],
                };
                for dep in names {
                    let Some(stage) = stage_of.get(&dep) else {
                        return Err(PipelineError::invalid(
                            job.location.clone(),
                            format!("job `{name}`: undefined dependency: {dep}"),
                            "list jobs of this pipeline under `dependencies:`",
                        ));
                    };
                    if *stage > own_stage {
                        return Err(PipelineError::invalid(
                            job.location.clone(),
                            format!(
                                "job `{name}`: dependency {dep} is not defined in current or prior stages"
                            ),
                            format!(
                                "depend only on jobs of stage `{}` or earlier",
                                config.stages[own_stage]
                            ),
                        ));
                    }
                    if let Some(needs) = &job.needs
                        && !needs.iter().any(|n| n.job == dep)
                    {
                        return Err(PipelineError::invalid(
                            job.location.clone(),
                            format!("job `{name}`: the {dep} should be part of needs"),
                            format!("add `{dep}` to `needs:` or remove it from `dependencies:`"),
                        ));
                    }
                    expanded.push(dep);
                }
            }
            job.dependencies = Some(expanded);
        }
    }
    check_need_cycles(config)
}

/// A job that (through others) needs itself can never start.
fn check_need_cycles(config: &Config) -> Result<(), PipelineError> {
    let needs_of: HashMap<&str, Vec<&Need>> = config
        .jobs
        .iter()
        .filter_map(|e| e.outcome.as_ref().ok())
        .map(|j| (j.name.as_str(), j.needs.iter().flatten().collect()))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        needs_of: &HashMap<&'a str, Vec<&'a Need>>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<(Vec<String>, &'a Need)> {
        marks.insert(name, Mark::Visiting);
        path.push(name);
        for need in needs_of.get(name).into_iter().flatten() {
            match marks.get(need.job.as_str()) {
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|p| *p == need.job).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(need.job.clone());
                    return Some((cycle, need));
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(found) = visit(need.job.as_str(), needs_of, marks, path) {
                        return Some(found);
                    }
                }
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for entry in &config.jobs {
        if marks.contains_key(entry.name.as_str()) {
            continue;
        }
        if let Some((cycle, need)) =
            visit(entry.name.as_str(), &needs_of, &mut marks, &mut Vec::new())
        {
            return Err(PipelineError::invalid(
                need.at.clone(),
                format!("`needs` form a cycle: {}", cycle.join(" → ")),
                "remove one of these needs; a job cannot wait for itself",
            ));
        }
    }
    Ok(())
}
