//! `ConfigWarning`: keys glrunner ignores and other things worth telling at start-up, each reported
//! once per load with its location. The catalogue of gitlab-runner keys glrunner does not support
//! yet lives here, so "not supported yet" and "unknown (typo?)" are told apart.

use crate::source::Segment;
use std::fmt;
use std::path::PathBuf;

/// Something in config.toml that does not stop glrunner but that the user should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: PathBuf,
    /// The key path, e.g. `runners[0].docker`.
    pub key: String,
    pub line: usize,
    pub column: usize,
    pub kind: WarningKind,
    pub message: String,
}

/// What kind of warning it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A key gitlab-runner knows that glrunner does not support yet; ignored.
    Unsupported,
    /// A key gitlab-runner used to read at another place; ignored.
    Moved,
    /// A key nobody knows, probably a typo; ignored.
    Unknown,
    /// Anything else (an environment variable that is not set, no runners, …).
    Other,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: `{}`: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

const EXECUTORS_NOTE: &str = "glrunner runs the shell and kubernetes executors";

/// gitlab-runner keys glrunner does not act on, by path (`*` = any runner index).
const CATALOGUE: &[(&[&str], WarningKind, &str)] = &[
    (
        &["machine"],
        WarningKind::Unsupported,
        "docker+machine settings",
    ),
    (
        &["experimental"],
        WarningKind::Unsupported,
        "experimental usage logging",
    ),
    (
        &["runners", "*", "docker"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "machine"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "autoscaler"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "instance"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "custom"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "ssh"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "parallels"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "virtualbox"],
        WarningKind::Unsupported,
        EXECUTORS_NOTE,
    ),
    (
        &["runners", "*", "referees"],
        WarningKind::Unsupported,
        "job metrics referees",
    ),
    (
        &["runners", "*", "monitoring"],
        WarningKind::Unsupported,
        "job queuing monitoring",
    ),
    (
        &["runners", "*", "experimental"],
        WarningKind::Unsupported,
        "boot verification",
    ),
    (
        &["runners", "*", "proxy_exec"],
        WarningKind::Unsupported,
        "the step-runner proxy",
    ),
    (
        &["runners", "*", "use_slot_cgroups"],
        WarningKind::Unsupported,
        "slot cgroups",
    ),
    (
        &["runners", "*", "slot_cgroup_template"],
        WarningKind::Unsupported,
        "slot cgroups",
    ),
    (
        &["runners", "*", "step_runner_image"],
        WarningKind::Unsupported,
        "the step runner",
    ),
];

/// Pre-12.0 cache keys that now live in `[runners.cache.s3]`.
const MOVED_CACHE_KEYS: &[&str] = &[
    "ServerAddress",
    "AccessKey",
    "SecretKey",
    "BucketName",
    "BucketLocation",
    "Insecure",
];

/// Classifies an ignored key and words its message.
pub(crate) fn classify_ignored(path: &[Segment]) -> (WarningKind, String) {
    let pattern: Vec<String> = path
        .iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Index(_) => "*".to_owned(),
        })
        .collect();
    let matches =
        |p: &[&str]| p.len() == pattern.len() && p.iter().zip(&pattern).all(|(a, b)| a == b);
    if let Some((_, kind, what)) = CATALOGUE.iter().find(|(p, _, _)| matches(p)) {
        return (
            *kind,
            format!("not supported by glrunner yet ({what}), ignored"),
        );
    }
    if let [runners, _, cache, key] = pattern.as_slice()
        && runners == "runners"
        && cache == "cache"
        && MOVED_CACHE_KEYS.contains(&key.as_str())
    {
        return (
            WarningKind::Moved,
            format!("ignored: this key belongs in [runners.cache.s3] (move `{key}` there)"),
        );
    }
    (
        WarningKind::Unknown,
        "unknown key, ignored (typo?)".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<Segment> {
        p.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key((*s).to_owned()),
            })
            .collect()
    }

    #[test]
    fn tells_unsupported_from_unknown() {
        assert_eq!(
            classify_ignored(&path(&["runners", "3", "docker"])).0,
            WarningKind::Unsupported
        );
        assert_eq!(
            classify_ignored(&path(&["machine"])).0,
            WarningKind::Unsupported
        );
        assert_eq!(
            classify_ignored(&path(&["runners", "0", "cache", "BucketName"])).0,
            WarningKind::Moved
        );
        assert_eq!(
            classify_ignored(&path(&["runners", "0", "kubernetes", "imagee"])).0,
            WarningKind::Unknown
        );
        assert_eq!(
            classify_ignored(&path(&["runners", "0", "docker", "image"])).0,
            WarningKind::Unknown
        );
        assert_eq!(
            classify_ignored(&path(&["concurent"])).0,
            WarningKind::Unknown
        );
    }
}
