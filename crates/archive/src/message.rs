//! Lines for the job log that archive work produces: the warnings and counts gitlab-runner prints
//! while it selects, writes and extracts files, kept in order so the caller can print them as they
//! would have appeared.

use std::fmt;

/// How a line is shown. The job log colours notices green, warnings yellow with `WARNING: ` and
/// errors red with `ERROR: `; info lines are plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
}

/// One line for the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub text: String,
}

impl Message {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            level: Level::Info,
            text: text.into(),
        }
    }

    pub fn notice(text: impl Into<String>) -> Self {
        Self {
            level: Level::Notice,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            text: text.into(),
        }
    }

    pub fn warning(text: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            text: text.into(),
        }
    }

    pub fn is_warning(&self) -> bool {
        self.level == Level::Warning
    }
}

/// Renders like gitlab-runner's log without colours: `WARNING: <text>`, `ERROR: <text>` or `<text>`.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Level::Info | Level::Notice => f.write_str(&self.text),
            Level::Warning => write!(f, "WARNING: {}", self.text),
            Level::Error => write!(f, "ERROR: {}", self.text),
        }
    }
}

/// The two lines gitlab-runner prints once when a `.git` path is archived or extracted.
pub(crate) fn git_directory_warning(operation: &str) -> [Message; 2] {
    [
        Message::warning(format!(
            "Part of .git directory is on the list of files to {operation}"
        )),
        Message::warning("This may introduce unexpected problems"),
    ]
}

/// Whether a relative archive path lies in the project's `.git` directory.
pub(crate) fn is_git_path(rel: &str) -> bool {
    crate::lexical_path::clean(rel).split('/').next() == Some(".git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_carry_the_prefix() {
        assert_eq!(Message::warning("x: y").to_string(), "WARNING: x: y");
        assert_eq!(Message::info("found").to_string(), "found");
        assert_eq!(Message::error("No files").to_string(), "ERROR: No files");
        assert_eq!(
            Message::notice("Created cache").to_string(),
            "Created cache"
        );
    }

    #[test]
    fn git_paths() {
        assert!(is_git_path(".git"));
        assert!(is_git_path("./.git/config"));
        assert!(!is_git_path("sub/.git/config"));
        assert!(!is_git_path(".gitignore"));
    }
}
