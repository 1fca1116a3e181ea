//! The top level of a resolved `.gitlab-ci.yml`: `stages`, `variables`, `default:` and the deprecated
//! global keys, and every job in file order. Keywords that would change every job and that glrunner
//! cannot run yet (`workflow`, top-level `services`/`cache`, `default:cache`, …) make the file refused.

use crate::document::{Mapping, Node, Source, Value};
use crate::error::{PipelineError, UnsupportedKey};
use crate::job::{self, DEFAULT_STAGE, Defaults, JobOutcome, JobScope, Owner};
use crate::keywords::{self, Keyword};
use crate::resolution::{REFERENCE_FIX, REFERENCE_TAG, ResolvedDocument, first_reference};
use crate::variables;

/// GitLab's stages when the file names none (without the `.pre`/`.post` edges).
const DEFAULT_STAGES: [&str; 3] = ["build", "test", "deploy"];

/// Top-level keys that are the deprecated spelling of `default:` keys.
const GLOBAL_DEFAULTS: [&str; 3] = ["image", "before_script", "after_script"];

/// One job of the file, in file order.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub name: String,
    /// Index into [`Config::stages`].
    pub stage_index: usize,
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// With GitLab's `.pre` first and `.post` last.
    pub stages: Vec<String>,
    pub jobs: Vec<JobEntry>,
}

pub fn read(doc: ResolvedDocument) -> Result<Config, PipelineError> {
    let ResolvedDocument { source, root } = doc;
    refuse_global_unsupported(&source, &root)?;
    let stages = match root.get("stages") {
        Some(node) => stages(&source, node)?,
        None => edge_stages(DEFAULT_STAGES.iter().map(|s| (*s).to_owned()).collect()),
    };
    let variables = match root.get("variables") {
        Some(node) => {
            refuse_reference(&source, node, "variables")?;
            variables::parse(&source, node, "the top-level `variables:`")?
        }
        None => Vec::new(),
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
        let outcome = job::read(&scope, &entry.key, source.at(entry.key_mark), &entry.value)?;
        jobs.push(JobEntry {
            name: entry.key.clone(),
            stage_index: stage_index(&stages, &outcome, &entry.value),
            outcome,
        });
    }
    Ok(Config {
        source,
        stages,
        jobs,
    })
}

fn is_keyword(key: &str) -> bool {
    matches!(
        key,
        "stages" | "variables" | "default" | "include" | "workflow" | "services" | "cache" | "spec"
    ) || GLOBAL_DEFAULTS.contains(&key)
}

fn refuse_global_unsupported(source: &Source, root: &Mapping) -> Result<(), PipelineError> {
    for entry in root.iter() {
        let fix = match entry.key.as_str() {
            "workflow" => {
                "delete `workflow:`; its rules decide whether GitLab creates a pipeline at all, and \
                 glrunner runs the job you name"
            }
            "spec" => {
                "delete the `spec:` block and write each input's value where `$[[ inputs.… ]]` is used"
            }
            key @ ("services" | "cache") => match keywords::job_keyword(key) {
                Keyword::Unsupported(fix) => fix,
                _ => continue,
            },
            _ => continue,
        };
        return Err(PipelineError::Unsupported(UnsupportedKey {
            at: source.at(entry.key_mark),
            key: entry.key.clone(),
            job: None,
            fix: format!("{fix} (at the top level it applies to every job)"),
        }));
    }
    Ok(())
}

fn refuse_reference(source: &Source, node: &Node, section: &str) -> Result<(), PipelineError> {
    match first_reference(node) {
        Some(mark) => Err(PipelineError::Unsupported(UnsupportedKey {
            at: source.at(mark),
            key: format!("{REFERENCE_TAG} (in {section})"),
            job: None,
            fix: REFERENCE_FIX.to_owned(),
        })),
        None => Ok(()),
    }
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

fn stage_index(stages: &[String], outcome: &JobOutcome, node: &Node) -> usize {
    let name = match outcome {
        Ok(job) => job.stage.as_str(),
        // A job glrunner refuses is still listed, under the stage it names if that can be read.
        Err(_) => match &node.value {
            Value::Map(m) => m
                .get("stage")
                .and_then(|s| s.value.as_str())
                .unwrap_or(DEFAULT_STAGE),
            _ => DEFAULT_STAGE,
        },
    };
    stages
        .iter()
        .position(|s| s == name)
        .unwrap_or(stages.len())
}

/// `default:` merged with the deprecated top-level `image`, `before_script` and `after_script`.
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
                        "use only after_script, artifacts, before_script, cache, hooks, id_tokens, image, \
                         interruptible, retry, services, tags and timeout under `default:`",
                    ));
                }
            }
            refuse_reference(source, &entry.value, &format!("default:{}", entry.key))?;
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
        refuse_reference(source, &entry.value, key)?;
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
    let what = format!("`{key}` of {owner}");
    match key {
        "before_script" => defaults.before_script = Some(job::commands(source, node, &what)?),
        "after_script" => defaults.after_script = Some(job::commands(source, node, &what)?),
        "image" => defaults.image = Some(job::image(source, node, owner)?),
        "timeout" => defaults.timeout = Some(job::timeout(source, node, owner)?),
        _ => {}
    }
    Ok(())
}
