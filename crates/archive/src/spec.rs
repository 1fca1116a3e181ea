//! What to archive: the `paths`, `exclude` and `untracked` of an `artifacts:` or `cache:` entry.

use glrunner_protocol::{Artifact, Cache};

/// The file selection of one artifacts or cache entry. Paths are used as given: `$VARIABLE`s must
/// already be expanded by the caller, as gitlab-runner's helper does before it selects files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// Globs relative to the project directory (absolute paths inside it are accepted too).
    pub paths: Vec<String>,
    /// Globs whose matches are left out. Not recursive: `dir` excludes only the entry `dir`,
    /// `dir/**` excludes `dir` and everything below it.
    pub exclude: Vec<String>,
    /// Add the files `git ls-files -o` reports (untracked, including ignored ones).
    pub untracked: bool,
}

impl Spec {
    pub fn paths<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Whether the entry selects anything at all; gitlab-runner skips the stage otherwise.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.untracked
    }
}

impl From<&Artifact> for Spec {
    fn from(a: &Artifact) -> Self {
        Self {
            paths: a.paths.clone(),
            exclude: a.exclude.clone(),
            untracked: a.untracked.unwrap_or(false),
        }
    }
}

impl From<&Cache> for Spec {
    fn from(c: &Cache) -> Self {
        Self {
            paths: c.paths.clone(),
            exclude: Vec::new(),
            untracked: c.untracked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_payload_entries() {
        let a = Artifact {
            paths: vec!["out/".into()],
            exclude: vec!["out/*.tmp".into()],
            untracked: Some(true),
            ..Artifact::default()
        };
        let s = Spec::from(&a);
        assert_eq!(s.paths, ["out/"]);
        assert_eq!(s.exclude, ["out/*.tmp"]);
        assert!(s.untracked);

        let c = Cache {
            paths: vec![],
            untracked: false,
            ..Cache::default()
        };
        assert!(Spec::from(&c).is_empty());
    }
}
