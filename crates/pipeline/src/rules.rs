//! Whether a job (or the pipeline, or an included file) is part of a local pipeline: `rules:`,
//! `only:`/`except:` and `workflow:rules`, read from the YAML and evaluated against the local commit.
//!
//! As in GitLab, the first rule whose clauses all hold decides; a rule without clauses always holds;
//! when no rule holds the job is left out (`when: never`). Clauses:
//! - `if`: a CI/CD expression ([`crate::expression`]) over the job's variables, unexpanded.
//! - `exists`: file patterns (Ruby `fnmatch`, [`crate::glob`]) against the project's files
//!   ([`crate::worktree`]); `$VARIABLES` in patterns are expanded first.
//! - `changes`: always holds. GitLab compares against the push's base, and treats a pipeline without
//!   one (a new branch, a scheduled or web pipeline) as "everything changed"; a local run has no push,
//!   so it behaves the same way. `only/except:changes` likewise.
//!
//! `only`/`except` refs: `branches`, `tags`, a pipeline source (`pushes`, `web`, `schedules`,
//! `merge_requests`, …), `/regex/` against the ref, or the ref's name; `@group/project` suffixes
//! restrict to a project path. A job with neither `rules` nor `only`/`except` gets GitLab's default
//! `only: [branches, tags]` unless `workflow:rules` exist.

use crate::document::{Mapping, Node, Value};
use crate::duration;
use crate::error::{Location, PipelineError, UnsupportedKey};
use crate::expression::{Expression, Pattern};
use crate::glob::Glob;
use crate::needs::{self, Need};
use crate::reader::Reader;
use crate::variables::{self, YamlVariable};
use crate::worktree::Worktree;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// GitLab caps `exists` at this many patterns.
const MAX_EXISTS: usize = 50;

/// `when:` of a job or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobWhen {
    OnSuccess,
    OnFailure,
    Always,
    Manual,
    Delayed,
    Never,
}

impl JobWhen {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "on_success" => Self::OnSuccess,
            "on_failure" => Self::OnFailure,
            "always" => Self::Always,
            "manual" => Self::Manual,
            "delayed" => Self::Delayed,
            "never" => Self::Never,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnSuccess => "on_success",
            Self::OnFailure => "on_failure",
            Self::Always => "always",
            Self::Manual => "manual",
            Self::Delayed => "delayed",
            Self::Never => "never",
        }
    }
}

/// Which `rules:` list is read: each allows other keys and `when` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleScope {
    Job,
    Workflow,
    Include,
}

impl RuleScope {
    fn keys(self) -> &'static [&'static str] {
        match self {
            RuleScope::Job => &[
                "if",
                "changes",
                "exists",
                "when",
                "start_in",
                "allow_failure",
                "variables",
                "needs",
                "interruptible",
            ],
            RuleScope::Workflow => &[
                "if",
                "changes",
                "exists",
                "when",
                "variables",
                "auto_cancel",
            ],
            RuleScope::Include => &["if", "changes", "exists", "when"],
        }
    }

    fn whens(self) -> &'static [JobWhen] {
        match self {
            RuleScope::Job => &[
                JobWhen::OnSuccess,
                JobWhen::OnFailure,
                JobWhen::Always,
                JobWhen::Manual,
                JobWhen::Delayed,
                JobWhen::Never,
            ],
            RuleScope::Workflow | RuleScope::Include => &[JobWhen::Always, JobWhen::Never],
        }
    }
}

/// One entry of a `rules:` list.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the rule starts.
    pub at: Location,
    pub condition: Option<Expression>,
    /// `changes:` was given (it always holds locally, see the module docs).
    pub changes: bool,
    /// `exists:` patterns, as written.
    pub exists: Option<Vec<String>>,
    pub when: Option<JobWhen>,
    pub start_in: Option<Duration>,
    pub allow_failure: Option<bool>,
    pub variables: Vec<YamlVariable>,
    pub needs: Option<Vec<Need>>,
}

/// The ref and source a local pipeline runs for, for `only`/`except` refs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefFacts {
    pub ref_name: String,
    pub branch: bool,
    pub tag: bool,
    /// `CI_PIPELINE_SOURCE`: `push`, `web`, `schedule`, `merge_request_event`, …
    pub source: String,
    pub project_path: String,
}

/// What rules are evaluated against: variables, the project's files (listed on first use) and the ref.
#[derive(Debug)]
pub struct Facts {
    pub variables: HashMap<String, String>,
    pub refs: RefFacts,
    project_dir: PathBuf,
    /// Shared by every copy made with [`Facts::with_variables`], so the files are listed once.
    worktree: Rc<OnceCell<Worktree>>,
}

impl Facts {
    pub fn new(variables: HashMap<String, String>, refs: RefFacts, project_dir: PathBuf) -> Self {
        Self {
            variables,
            refs,
            project_dir,
            worktree: Rc::new(OnceCell::new()),
        }
    }

    /// The same ref and files with other variables (per job).
    pub fn with_variables(&self, variables: HashMap<String, String>) -> Self {
        Self {
            variables,
            refs: self.refs.clone(),
            project_dir: self.project_dir.clone(),
            worktree: Rc::clone(&self.worktree),
        }
    }

    pub fn worktree(&self) -> &Worktree {
        self.worktree
            .get_or_init(|| Worktree::list(&self.project_dir))
    }
}

impl Rule {
    /// Whether every clause of this rule holds.
    pub fn holds(&self, facts: &Facts) -> bool {
        if let Some(condition) = &self.condition
            && !condition.evaluate(&facts.variables)
        {
            return false;
        }
        if let Some(patterns) = &self.exists
            && !exists(patterns, facts)
        {
            return false;
        }
        true
    }
}

/// The first rule that holds, if any.
pub fn first_match<'r>(rules: &'r [Rule], facts: &Facts) -> Option<&'r Rule> {
    rules.iter().find(|r| r.holds(facts))
}

fn exists(patterns: &[String], facts: &Facts) -> bool {
    let tree = facts.worktree();
    patterns.iter().any(|pattern| {
        let pattern = expand(pattern, &facts.variables);
        let pattern = pattern.trim_start_matches('/');
        if Glob::is_literal(pattern) {
            tree.contains(pattern)
        } else {
            Glob::fnmatch(pattern).is_ok_and(|g| tree.files().iter().any(|f| g.is_match(f)))
        }
    })
}

/// `$VAR` and `${VAR}` replaced by defined variables; undefined ones stay as written.
pub fn expand(text: &str, variables: &HashMap<String, String>) -> String {
    let lookup = |name: &str| Ok::<_, std::convert::Infallible>(variables.get(name).cloned());
    match glrunner_protocol::expand::gitlab_expand(text, lookup) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Read a `rules:` list. `owner` names it in errors ("job `deploy`", "`workflow:`", …); `job` is set
/// for job rules so unsupported parts are refused for that job only.
pub fn read_rules(
    reader: &Reader<'_>,
    node: &Node,
    scope: RuleScope,
    owner: &str,
    job: Option<&str>,
) -> Result<Vec<Rule>, PipelineError> {
    let example = "`rules:` followed by entries such as `- if: $CI_COMMIT_BRANCH == \"main\"`";
    if !matches!(node.value, Value::Seq(_)) {
        return Err(reader.invalid(
            node,
            format!("`rules` of {owner} is {}, not a list", node.value.kind()),
            format!("write {example}"),
        ));
    }
    reader
        .flat_list(node, &format!("`rules` of {owner}"))?
        .into_iter()
        .map(|item| read_rule(reader, item, scope, owner, job))
        .collect()
}

fn read_rule(
    reader: &Reader<'_>,
    node: &Node,
    scope: RuleScope,
    owner: &str,
    job: Option<&str>,
) -> Result<Rule, PipelineError> {
    let what = format!("a rule of {owner}");
    let map = reader.mapping(
        node,
        &what,
        "each rule as a mapping, e.g. `- if: $CI_COMMIT_TAG`",
    )?;
    if map.is_empty() {
        return Err(reader.invalid(
            node,
            format!("{what} is empty"),
            "give the rule a clause (`if:`, `exists:`, `changes:`) or a `when:`",
        ));
    }
    reader.known_keys(map, scope.keys(), &what)?;
    let mut rule = Rule {
        at: reader.source.at(node.mark),
        condition: None,
        changes: false,
        exists: None,
        when: None,
        start_in: None,
        allow_failure: None,
        variables: Vec::new(),
        needs: None,
    };
    for entry in map.iter() {
        let value = &entry.value;
        match entry.key.as_str() {
            "if" => rule.condition = Some(condition(reader, value, &what)?),
            "changes" => {
                if let Value::Map(m) = &value.value {
                    reader.known_keys(
                        m,
                        &["paths", "compare_to"],
                        &format!("`changes` of {what}"),
                    )?;
                }
                rule.changes = true;
            }
            "exists" => rule.exists = Some(exists_patterns(reader, value, &what, job)?),
            "when" => {
                let text =
                    reader.string(value, &format!("`when` of {what}"), "`when: on_success`")?;
                let when = JobWhen::parse(&text)
                    .filter(|w| scope.whens().contains(w))
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = scope.whens().iter().map(|w| w.as_str()).collect();
                        reader.invalid(
                            value,
                            format!("`when: {text}` is not allowed in {what}"),
                            format!("use one of: {}", allowed.join(", ")),
                        )
                    })?;
                rule.when = Some(when);
            }
            "start_in" => {
                let text = reader.string(value, "`start_in`", "`start_in: 30 minutes`")?;
                rule.start_in = Some(duration::parse(&text).map_err(|e| {
                    reader.invalid(
                        value,
                        format!("`start_in` of {what}: {e}"),
                        "write `start_in: 30 minutes`",
                    )
                })?);
            }
            "allow_failure" => {
                rule.allow_failure =
                    Some(reader.boolean(value, &format!("`allow_failure` of {what}"))?);
            }
            "variables" => {
                rule.variables = variables::parse(reader.source, value, &what)?;
            }
            "needs" => rule.needs = Some(needs::read(reader, value, job.unwrap_or("the rule"))?),
            // Changes nothing about what runs locally.
            "interruptible" | "auto_cancel" => {}
            _ => {}
        }
    }
    if rule.when == Some(JobWhen::Delayed) && rule.start_in.is_none() {
        return Err(reader.invalid(
            node,
            format!("{what} has `when: delayed` but no `start_in`"),
            "add `start_in: 30 minutes` (at most one week)",
        ));
    }
    Ok(rule)
}

fn condition(reader: &Reader<'_>, node: &Node, what: &str) -> Result<Expression, PipelineError> {
    let text = reader.string(
        node,
        &format!("`if` of {what}"),
        "`if: $CI_COMMIT_BRANCH == \"main\"`",
    )?;
    Expression::parse(&text).map_err(|e| {
        reader.invalid(
            node,
            format!("`if` of {what} is not a valid expression: {e}"),
            "compare variables with strings, patterns or null, e.g. \
             `if: $CI_COMMIT_BRANCH == \"main\" && $CI_COMMIT_TAG == null` (quote the whole \
             expression in YAML when it starts with a quote or contains `: `)",
        )
    })
}

fn exists_patterns(
    reader: &Reader<'_>,
    node: &Node,
    what: &str,
    job: Option<&str>,
) -> Result<Vec<String>, PipelineError> {
    let label = format!("`exists` of {what}");
    let patterns = match &node.value {
        Value::Map(m) => {
            reader.known_keys(m, &["paths", "project", "ref"], &label)?;
            if let Some(entry) = m.entry("project") {
                return Err(PipelineError::Unsupported(UnsupportedKey {
                    at: reader.source.at(entry.key_mark),
                    key: "rules:exists:project".into(),
                    job: job.map(str::to_owned),
                    fix: "check files of this project only: delete `project:` and `ref:` under `exists:`"
                        .into(),
                }));
            }
            let paths = m.get("paths").ok_or_else(|| {
                reader.invalid(
                    node,
                    format!("{label} has no `paths`"),
                    "write `exists: {paths: [Dockerfile]}`",
                )
            })?;
            reader.strings(paths, &label, "`exists: [Dockerfile, \"**/*.gemspec\"]`")?
        }
        _ => reader.strings(node, &label, "`exists: [Dockerfile, \"**/*.gemspec\"]`")?,
    };
    if patterns.len() > MAX_EXISTS {
        return Err(reader.invalid(
            node,
            format!(
                "{label} has {} patterns; GitLab allows at most {MAX_EXISTS}",
                patterns.len()
            ),
            "use fewer, broader patterns such as `**/*.gemspec`",
        ));
    }
    for pattern in &patterns {
        if !Glob::is_literal(pattern) {
            Glob::fnmatch(pattern.trim_start_matches('/')).map_err(|e| {
                reader.invalid(
                    node,
                    format!("{label}: {e}"),
                    "close every `[` and `{` in the pattern",
                )
            })?;
        }
    }
    Ok(patterns)
}

/// `only:` or `except:`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: no refs condition.
    pub refs: Option<Vec<String>>,
    /// Any of these holding satisfies the variables condition.
    pub variables: Vec<Expression>,
    /// `changes:` was given (always holds locally).
    pub changes: bool,
}

/// The default `only:` of a job with neither `rules` nor `only`/`except`.
pub fn default_only() -> Policy {
    Policy {
        refs: Some(vec!["branches".into(), "tags".into()]),
        ..Policy::default()
    }
}

impl Policy {
    /// The conditions given and whether each holds.
    fn conditions(&self, facts: &Facts) -> Vec<bool> {
        let mut out = Vec::new();
        if let Some(refs) = &self.refs {
            out.push(refs.iter().any(|r| ref_matches(r, &facts.refs)));
        }
        if !self.variables.is_empty() {
            out.push(self.variables.iter().any(|e| e.evaluate(&facts.variables)));
        }
        if self.changes {
            out.push(true);
        }
        out
    }

    /// `only:` holds when all its conditions do.
    pub fn only_holds(&self, facts: &Facts) -> bool {
        self.conditions(facts).into_iter().all(|c| c)
    }

    /// `except:` excludes when any of its conditions holds.
    pub fn except_holds(&self, facts: &Facts) -> bool {
        self.conditions(facts).into_iter().any(|c| c)
    }
}

fn ref_matches(pattern: &str, facts: &RefFacts) -> bool {
    let (pattern, path) = match pattern.split_once('@') {
        Some((p, path)) => (p, Some(path)),
        None => (pattern, None),
    };
    if path.is_some_and(|p| p != facts.project_path) {
        return false;
    }
    let source = facts.source.as_str();
    let plural = match source {
        "merge_request_event" => "merge_requests".to_owned(),
        "external_pull_request_event" => "external_pull_requests".to_owned(),
        "push" => "pushes".to_owned(),
        other => format!("{other}s"),
    };
    if (facts.tag && pattern == "tags")
        || (facts.branch && pattern == "branches")
        || pattern == source
        || pattern == plural
    {
        return true;
    }
    if pattern.starts_with('/')
        && let Some(p) = Pattern::parse(pattern)
    {
        return p.is_match(&facts.ref_name);
    }
    pattern == facts.ref_name
}

/// Read `only:` or `except:` of job `job`.
pub fn read_policy(
    reader: &Reader<'_>,
    key: &str,
    node: &Node,
    job: &str,
) -> Result<Policy, PipelineError> {
    let what = format!("`{key}` of job `{job}`");
    let example = format!(
        "`{key}: [main, tags]` or `{key}: {{refs: [main], variables: [$RELEASE == \"yes\"]}}`"
    );
    let refs = |n: &Node| -> Result<Vec<String>, PipelineError> {
        let refs = reader.string_list(n, &format!("the refs of {what}"), &example)?;
        for r in &refs {
            if r.starts_with('/') && r.len() > 1 && r.ends_with('/') && Pattern::parse(r).is_none()
            {
                return Err(reader.invalid(
                    n,
                    format!("{what}: `{r}` is not a valid regular expression"),
                    "fix the pattern (RE2 syntax: no look-around or back-references)",
                ));
            }
        }
        Ok(refs)
    };
    match &node.value {
        Value::Seq(_) => Ok(Policy {
            refs: Some(refs(node)?),
            ..Policy::default()
        }),
        Value::Map(map) => {
            let mut policy = read_complex_policy(reader, key, map, job, &what, refs)?;
            // `only:` as a mapping keeps the default refs unless it names its own.
            if key == "only" && policy.refs.is_none() {
                policy.refs = default_only().refs;
            }
            Ok(policy)
        }
        other => Err(reader.invalid(
            node,
            format!(
                "{what} is {}, but it must be a list of refs or a mapping",
                other.kind()
            ),
            format!("write {example}"),
        )),
    }
}

fn read_complex_policy(
    reader: &Reader<'_>,
    key: &str,
    map: &Mapping,
    job: &str,
    what: &str,
    refs: impl Fn(&Node) -> Result<Vec<String>, PipelineError>,
) -> Result<Policy, PipelineError> {
    reader.known_keys(map, &["refs", "variables", "changes", "kubernetes"], what)?;
    let mut policy = Policy::default();
    for entry in map.iter() {
        match entry.key.as_str() {
            "refs" => policy.refs = Some(refs(&entry.value)?),
            "variables" => {
                let texts = reader.string_list(
                    &entry.value,
                    &format!("`variables` of {what}"),
                    "`variables: [$RELEASE == \"yes\"]`",
                )?;
                policy.variables = texts
                    .iter()
                    .map(|t| {
                        Expression::parse(t).map_err(|e| {
                            reader.invalid(
                                &entry.value,
                                format!("`variables` of {what}: invalid expression syntax: {e}"),
                                "write expressions such as `$RELEASE == \"yes\"`",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "changes" => policy.changes = true,
            "kubernetes" => {
                return Err(PipelineError::Unsupported(UnsupportedKey {
                    at: reader.source.at(entry.key_mark),
                    key: format!("{key}:kubernetes"),
                    job: Some(job.to_owned()),
                    fix: format!(
                        "delete `kubernetes:` from `{key}:`; glrunner cannot tell whether the project has \
                         an active Kubernetes integration"
                    ),
                }));
            }
            _ => {}
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(name: &str, branch: bool, source: &str) -> RefFacts {
        RefFacts {
            ref_name: name.into(),
            branch,
            tag: !branch,
            source: source.into(),
            project_path: "acme/app".into(),
        }
    }

    #[test]
    fn refs_keywords_patterns_and_projects() {
        let main = refs("main", true, "push");
        assert!(ref_matches("branches", &main));
        assert!(!ref_matches("tags", &main));
        assert!(ref_matches("pushes", &main) && ref_matches("push", &main));
        assert!(!ref_matches("merge_requests", &main));
        assert!(ref_matches("/^ma/", &main) && !ref_matches("/^release/", &main));
        assert!(
            ref_matches("/^MAIN$/i", &main),
            "flags as in GitLab's Ruby syntax"
        );
        assert!(ref_matches("main@acme/app", &main) && !ref_matches("main@other/app", &main));
        let tag = refs("v1.0", false, "push");
        assert!(ref_matches("tags", &tag) && !ref_matches("branches", &tag));
        let mr = refs("feature", true, "merge_request_event");
        assert!(ref_matches("merge_requests", &mr));
        assert!(ref_matches("schedules", &refs("main", true, "schedule")));
    }

    #[test]
    fn expand_leaves_undefined_variables() {
        let vars: HashMap<String, String> = [("DIR".to_owned(), "app".to_owned())].into();
        assert_eq!(expand("$DIR/${DIR}/x", &vars), "app/app/x");
        assert_eq!(expand("$NOPE/$", &vars), "$NOPE/$");
        assert_eq!(expand("${DIR", &vars), "${DIR");
    }
}
