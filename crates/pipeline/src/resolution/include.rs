//! `include:` of local files, merged as GitLab merges them: every included file (with its own includes
//! applied first) is deep-merged in the order listed, then the including file on top, so the including
//! file wins and later includes win over earlier ones; mappings merge, lists and scalars are replaced.
//!
//! Forms: `include: path.yml`, a list of paths and/or `{local: path, rules: […]}`. Paths are relative to
//! the project directory (a leading `/` is allowed), may use `$VARIABLES` and wildcards (`*` within a
//! directory, `**` across them), and must end in `.yml` or `.yaml`. Includes may nest; a file including
//! itself (directly or not) and more than [`MAX_INCLUDES`] includes are errors. `include:rules` are
//! evaluated with the pipeline's variables (`if`, `exists`, `changes`; `when: never` skips the file).
//! `remote`, `project`, `template`, `component`, `artifact` and `inputs` are refused: a local run reads
//! only the project's own files.

use crate::document::{self, Mapping, Mark, Node, Source, Value};
use crate::error::{PipelineError, UnsupportedKey};
use crate::glob::Glob;
use crate::reader::Reader;
use crate::rules::{self, Facts, JobWhen, Rule, RuleScope};
use std::cell::OnceCell;
use std::path::{Path, PathBuf};

/// GitLab's limit on the number of included files in one pipeline.
pub const MAX_INCLUDES: usize = 150;

/// Where included files are read from, and the facts their `rules:` are evaluated against.
pub struct IncludeContext<'a> {
    pub project_dir: PathBuf,
    facts: &'a dyn Fn() -> Facts,
    cached: OnceCell<Facts>,
}

impl<'a> IncludeContext<'a> {
    /// `facts` is called at most once, when an include first needs variables or the file list.
    pub fn new(project_dir: PathBuf, facts: &'a dyn Fn() -> Facts) -> Self {
        Self {
            project_dir,
            facts,
            cached: OnceCell::new(),
        }
    }

    fn facts(&self) -> &Facts {
        self.cached.get_or_init(|| (self.facts)())
    }
}

struct State {
    count: usize,
    /// The files being included right now, outermost first.
    chain: Vec<String>,
}

/// Merge the files `root` includes into it.
pub fn expand(
    source: &mut Source,
    root: Mapping,
    ctx: &IncludeContext<'_>,
) -> Result<Mapping, PipelineError> {
    let mut state = State {
        count: 0,
        chain: Vec::new(),
    };
    process(source, root, ctx, &mut state)
}

/// One `include:` location, as written.
struct Location {
    path: String,
    mark: Mark,
    rules: Option<Vec<Rule>>,
}

fn process(
    source: &mut Source,
    mut values: Mapping,
    ctx: &IncludeContext<'_>,
    state: &mut State,
) -> Result<Mapping, PipelineError> {
    let Some(include) = values.remove("include") else {
        return Ok(values);
    };
    let locations = locations(source, &include.value)?;
    let mut content = Mapping::default();
    for location in locations {
        if let Some(rules) = &location.rules {
            let included = rules::first_match(rules, ctx.facts())
                .is_some_and(|rule| rule.when != Some(JobWhen::Never));
            if !included {
                continue;
            }
        }
        for path in expand_location(source, &location, ctx)? {
            state.count += 1;
            if state.count > MAX_INCLUDES {
                return Err(PipelineError::invalid(
                    source.at(location.mark),
                    format!(
                        "more than {MAX_INCLUDES} files are included; GitLab allows at most {MAX_INCLUDES}"
                    ),
                    "merge small included files, or include a directory's files with one wildcard",
                ));
            }
            let included = read_included(source, &path, location.mark, ctx, state)?;
            content.deep_merge(included);
        }
    }
    content.deep_merge(values);
    Ok(content)
}

fn read_included(
    source: &mut Source,
    path: &str,
    at: Mark,
    ctx: &IncludeContext<'_>,
    state: &mut State,
) -> Result<Mapping, PipelineError> {
    if state.chain.iter().any(|p| p == path) {
        let chain = state.chain.join(" → ");
        return Err(PipelineError::invalid(
            source.at(at),
            format!("`{path}` includes itself ({chain} → {path})"),
            format!("remove the `include:` of `{path}` that closes the loop"),
        ));
    }
    if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
        return Err(PipelineError::invalid(
            source.at(at),
            format!("included file `{path}` does not have a YAML extension"),
            "rename the file to end in `.yml` or `.yaml`",
        ));
    }
    let file = ctx.project_dir.join(path);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            return Err(PipelineError::invalid(
                source.at(at),
                format!(
                    "local file `{path}` does not exist ({}: {e})",
                    file.display()
                ),
                "fix the path: it is relative to the project directory, not to the including file",
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(PipelineError::invalid(
            source.at(at),
            format!("local file `{path}` is empty"),
            "add jobs or keys to it, or delete this include",
        ));
    }
    let id = source.add(&file);
    let (root, _) = document::parse_file(&text, source, id)?;
    super::check_tags(source, &root)?;
    state.chain.push(path.to_owned());
    let merged = process(source, root, ctx, state);
    state.chain.pop();
    merged
}

/// The files one location names: variables expanded, wildcards matched against the project's files.
fn expand_location(
    source: &Source,
    location: &Location,
    ctx: &IncludeContext<'_>,
) -> Result<Vec<String>, PipelineError> {
    let mut path = location.path.clone();
    if path.contains('$') {
        path = rules::expand(&path, &ctx.facts().variables);
    }
    let path = path.trim_start_matches('/').to_owned();
    if Path::new(&path)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PipelineError::invalid(
            source.at(location.mark),
            format!("`include: {path}` leaves the project directory"),
            "include files of this project only, with a path from the project's root",
        ));
    }
    if !path.contains('*') {
        return Ok(vec![path]);
    }
    let glob = Glob::wildcard_path(&path).map_err(|e| {
        PipelineError::invalid(
            source.at(location.mark),
            e.to_string(),
            "fix the wildcard pattern",
        )
    })?;
    Ok(ctx
        .facts()
        .worktree()
        .files()
        .iter()
        .filter(|f| glob.is_match(f))
        .cloned()
        .collect())
}

fn locations(source: &Source, node: &Node) -> Result<Vec<Location>, PipelineError> {
    let reader = Reader::new(source);
    let items: Vec<&Node> = match &node.value {
        Value::Seq(_) => reader.flat_list(node, "`include`")?,
        _ => vec![node],
    };
    items
        .into_iter()
        .map(|item| location(&reader, item))
        .collect()
}

fn location(reader: &Reader<'_>, node: &Node) -> Result<Location, PipelineError> {
    let source = reader.source;
    let refuse = |at: Mark, key: &str, fix: &str| {
        PipelineError::Unsupported(UnsupportedKey {
            at: source.at(at),
            key: format!("include:{key}"),
            job: None,
            fix: fix.to_owned(),
        })
    };
    match &node.value {
        Value::Str(path) if path.starts_with("http://") || path.starts_with("https://") => {
            Err(refuse(node.mark, "remote", REMOTE_FIX))
        }
        Value::Str(path) => Ok(Location {
            path: path.clone(),
            mark: node.mark,
            rules: None,
        }),
        Value::Map(map) => {
            for (key, fix) in [
                ("remote", REMOTE_FIX),
                ("project", PROJECT_FIX),
                ("file", PROJECT_FIX),
                ("template", TEMPLATE_FIX),
                ("component", COMPONENT_FIX),
                ("artifact", ARTIFACT_FIX),
                ("inputs", INPUTS_FIX),
            ] {
                if let Some(entry) = map.entry(key) {
                    return Err(refuse(entry.key_mark, key, fix));
                }
            }
            reader.known_keys(
                map,
                &["local", "rules", "integrity", "cache"],
                "an `include` entry",
            )?;
            let local = map.get("local").ok_or_else(|| {
                reader.invalid(
                    node,
                    "an `include` entry has no `local:`",
                    "write `- local: ci/build.yml`",
                )
            })?;
            let rules = map
                .get("rules")
                .map(|r| rules::read_rules(reader, r, RuleScope::Include, "an `include`", None))
                .transpose()?;
            Ok(Location {
                path: reader.string(local, "`include:local`", "`local: ci/build.yml`")?,
                mark: local.mark,
                rules,
            })
        }
        other => Err(reader.invalid(
            node,
            format!("an `include` entry is {}", other.kind()),
            "write a path (`- ci/build.yml`) or `- local: ci/build.yml`",
        )),
    }
}

const REMOTE_FIX: &str = "download the file into the project and include it with `local:`";
const PROJECT_FIX: &str =
    "copy the file from the other project into this one and include it with `local:`";
const TEMPLATE_FIX: &str = "copy GitLab's template into the project (its source is in GitLab's `lib/gitlab/ci/templates/`) and include it with `local:`";
const COMPONENT_FIX: &str = "copy the component's template into the project, replace its `$[[ inputs.… ]]` with values, and include it with `local:`";
const ARTIFACT_FIX: &str = "generate the file locally and include it with `local:`; artifact includes are for child pipelines";
const INPUTS_FIX: &str =
    "delete `inputs:` and write the values where the included file uses `$[[ inputs.… ]]`";
