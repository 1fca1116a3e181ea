//! What can go wrong turning a `.gitlab-ci.yml` into job payloads: each error says where (file, line and
//! column), what happened and the exact fix.

use std::fmt;
use std::path::PathBuf;

/// A position in a pipeline file, 1-based line and column, rendered `file:line:column` like a compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A GitLab keyword (or tag) that is valid in GitLab but that glrunner cannot run locally yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedKey {
    /// Where the key (or tag) is written.
    pub at: Location,
    /// The key as the user wrote it, e.g. `rules`, `when: manual`, `!reference`, `default:cache`.
    pub key: String,
    /// The job that uses it; `None` for top-level keys, which affect every job.
    pub job: Option<String>,
    /// The exact change that makes the file runnable locally.
    pub fix: String,
}

impl fmt::Display for UnsupportedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job {
            Some(job) => write!(f, "{}: job `{job}` uses `{}`", self.at, self.key)?,
            None => write!(f, "{}: this file uses `{}`", self.at, self.key)?,
        }
        write!(
            f,
            ", which glrunner cannot run locally yet (GitLab accepts it; glrunner refuses rather than \
             silently ignore it)\n  fix: {}",
            self.fix
        )
    }
}

/// Everything [`crate::Pipeline`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(
        "cannot read the pipeline file {}: {source}\n  likely cause: the path is wrong or glrunner runs \
         in another directory\n  fix: run glrunner from the project root, or pass the file's path",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{at}: YAML syntax error: {message}\n  fix: correct the YAML at this line and column (GitLab \
         rejects this file too)"
    )]
    Syntax { at: Location, message: String },

    /// The file is valid YAML but not a valid GitLab CI configuration.
    #[error("{at}: {problem}\n  fix: {fix}")]
    Invalid {
        at: Location,
        problem: String,
        fix: String,
    },

    #[error("{0}")]
    Unsupported(UnsupportedKey),

    #[error(
        "{}no pipeline would be created for this commit ({context}): {reason}\n  likely cause: \
         `workflow:rules` only allow other refs or sources\n  fix: run on a branch the rules allow, set the \
         variables they test (e.g. `--env NAME=value`), or change `workflow:rules`",
        at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default()
    )]
    NotCreated {
        /// The rule that decided, if one matched.
        at: Option<Location>,
        reason: String,
        /// The ref and pipeline source the rules were evaluated for.
        context: String,
    },

    #[error(
        "job `{job}` is not part of the pipeline for this commit: {reason}\n  fix: run it on a ref its \
         rules allow, set the variables they test (e.g. `--env NAME=value`), or run another job"
    )]
    NotInPipeline { job: String, reason: String },

    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),

    #[error(
        "there is no job named `{name}` in {}\n  available jobs: {}\n  fix: pass one of these names \
         (names starting with `.` are hidden templates and never run)",
        file.display(),
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    UnknownJob {
        name: String,
        file: PathBuf,
        available: Vec<String>,
    },
}

impl PipelineError {
    pub(crate) fn invalid(
        at: Location,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            at,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Where in the file the problem is, when it is at one place.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Syntax { at, .. } | Self::Invalid { at, .. } => Some(at),
            Self::Unsupported(u) => Some(&u.at),
            Self::NotCreated { at, .. } => at.as_ref(),
            Self::Read { .. }
            | Self::UnknownJob { .. }
            | Self::NotInPipeline { .. }
            | Self::Plan(_) => None,
        }
    }
}
