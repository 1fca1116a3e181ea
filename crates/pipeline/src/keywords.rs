//! Which GitLab keywords glrunner runs, which it accepts and ignores because they change nothing locally,
//! and which it refuses (with the fix) because running without them would run something else.

/// How glrunner treats one key of a job or of `default:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Read and honoured.
    Supported,
    /// Valid in GitLab and harmless locally: accepted and ignored (documented in the crate docs).
    Ignored,
    /// Valid in GitLab but not runnable locally yet; the text is the fix.
    Unsupported(&'static str),
    /// Not a GitLab keyword here: GitLab rejects the file too.
    Unknown,
}

/// Job keys glrunner honours.
const JOB_SUPPORTED: &[&str] = &[
    "script",
    "before_script",
    "after_script",
    "variables",
    "stage",
    "timeout",
    "image",
    "services",
    "allow_failure",
    "when",
    "start_in",
    "rules",
    "only",
    "except",
    "needs",
    "dependencies",
    // Applied while resolving the document; still present in the merged job.
    "extends",
    "parallel",
    "artifacts",
    "cache",
    "inherit",
    "hooks",
];

/// Job keys that change nothing about what runs in a local job.
const JOB_IGNORED: &[&str] = &[
    "tags",
    "interruptible",
    "retry",
    "environment",
    "coverage",
    "resource_group",
    "manual_confirmation",
];

/// Job keys GitLab knows and glrunner cannot run yet, each with its fix.
const JOB_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "trigger",
        "trigger jobs start downstream pipelines on GitLab; run the downstream project's jobs with \
         `glrunner exec` in that project instead",
    ),
    (
        "release",
        "delete `release:`; releases are created by GitLab",
    ),
    (
        "secrets",
        "delete `secrets:` and set the values the job needs under `variables:`",
    ),
    (
        "id_tokens",
        "delete `id_tokens:` and set the tokens the job needs under `variables:`",
    ),
    (
        "pages",
        "delete `pages:`; GitLab Pages are published by GitLab",
    ),
    (
        "publish",
        "delete `publish:`; GitLab Pages are published by GitLab",
    ),
    (
        "identity",
        "delete `identity:`; it needs GitLab's cloud integrations",
    ),
    (
        "dast_configuration",
        "delete `dast_configuration:`; it needs GitLab's DAST profiles",
    ),
    (
        "run",
        "write the steps as shell commands under `script:` and delete `run:`",
    ),
    (
        "inputs",
        "delete `inputs:` and set the values under `variables:`",
    ),
];

/// Keys allowed under `default:` in GitLab.
pub const DEFAULT_SUPPORTED: &[&str] = &[
    "before_script",
    "after_script",
    "image",
    "timeout",
    "services",
    "cache",
    "artifacts",
    "hooks",
];
const DEFAULT_IGNORED: &[&str] = &["interruptible", "retry", "tags"];
const DEFAULT_UNSUPPORTED: &[&str] = &["id_tokens"];

/// Every key `default:` may hold: the values `inherit:default` may list.
pub fn default_keys() -> impl Iterator<Item = &'static str> {
    DEFAULT_SUPPORTED
        .iter()
        .chain(DEFAULT_IGNORED)
        .chain(DEFAULT_UNSUPPORTED)
        .copied()
}

pub fn job_keyword(key: &str) -> Keyword {
    if JOB_SUPPORTED.contains(&key) {
        Keyword::Supported
    } else if JOB_IGNORED.contains(&key) {
        Keyword::Ignored
    } else if let Some((_, fix)) = JOB_UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        Keyword::Unsupported(fix)
    } else {
        Keyword::Unknown
    }
}

pub fn default_keyword(key: &str) -> Keyword {
    if DEFAULT_SUPPORTED.contains(&key) {
        Keyword::Supported
    } else if DEFAULT_IGNORED.contains(&key) {
        Keyword::Ignored
    } else if DEFAULT_UNSUPPORTED.contains(&key) {
        // The job-level fix applies to `default:` as well (delete it there).
        match job_keyword(key) {
            Keyword::Unsupported(fix) => Keyword::Unsupported(fix),
            _ => Keyword::Unknown,
        }
    } else {
        Keyword::Unknown
    }
}

/// The known job keyword closest to a misspelt `key`, for "did you mean" hints.
pub fn closest_job_keyword(key: &str) -> Option<&'static str> {
    let all = JOB_SUPPORTED
        .iter()
        .chain(JOB_IGNORED)
        .copied()
        .chain(JOB_UNSUPPORTED.iter().map(|(k, _)| *k));
    all.map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_job_keys() {
        assert_eq!(job_keyword("script"), Keyword::Supported);
        assert_eq!(job_keyword("tags"), Keyword::Ignored);
        assert_eq!(job_keyword("rules"), Keyword::Supported);
        assert!(
            matches!(job_keyword("trigger"), Keyword::Unsupported(fix) if fix.contains("downstream"))
        );
        assert_eq!(job_keyword("scirpt"), Keyword::Unknown);
        assert_eq!(default_keyword("image"), Keyword::Supported);
        assert_eq!(default_keyword("cache"), Keyword::Supported);
        assert!(matches!(
            default_keyword("id_tokens"),
            Keyword::Unsupported(_)
        ));
        assert_eq!(default_keyword("stage"), Keyword::Unknown);
    }

    #[test]
    fn suggests_the_keyword_meant() {
        assert_eq!(closest_job_keyword("scirpt"), Some("script"));
        assert_eq!(closest_job_keyword("before-script"), Some("before_script"));
        assert_eq!(closest_job_keyword("completely_different"), None);
    }
}
