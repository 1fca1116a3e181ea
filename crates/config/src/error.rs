//! `ConfigError`: why config.toml could not be loaded, where, and how to fix it.

use crate::source::Location;
use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong, where, why, and the fix. Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `file:line:column`; absent only when the file could not be read.
    pub at: Option<Location>,
    /// The key path concerned, e.g. `runners[0].executor`.
    pub key: Option<String>,
    /// What happened.
    pub what: String,
    /// The likely cause.
    pub cause: String,
    /// The exact fix (a command, a key, a line to write).
    pub fix: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(
            f,
            "{}\n  cause: {}\n  fix: {}",
            self.what, self.cause, self.fix
        )
    }
}

/// A config.toml that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}")]
    Read(Box<Diagnostic>),
    /// The file is not valid TOML.
    #[error("{0}")]
    Syntax(Box<Diagnostic>),
    /// A value has the wrong type, e.g. `concurrent = "ten"`.
    #[error("{0}")]
    Type(Box<Diagnostic>),
    /// A value is well-formed but not acceptable, or a required key is missing.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    pub fn diagnostic(&self) -> &Diagnostic {
        match self {
            Self::Read(d) | Self::Syntax(d) | Self::Type(d) | Self::Invalid(d) => d,
        }
    }

    /// Where in the file the problem is.
    pub fn location(&self) -> Option<&Location> {
        self.diagnostic().at.as_ref()
    }

    /// The key path the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        self.diagnostic().key.as_deref()
    }

    pub(crate) fn read(path: &Path, error: &io::Error) -> Self {
        let shown = path.display();
        let (cause, fix) = match error.kind() {
            io::ErrorKind::NotFound => (
                "the file does not exist".to_owned(),
                "create it with `glrunner register`, or name an existing file with `--config <path>` or the CONFIG_FILE environment variable".to_owned(),
            ),
            io::ErrorKind::PermissionDenied => (
                "this user may not read the file".to_owned(),
                format!("run glrunner as a user that can read it, or grant access: `chown <user> {shown} && chmod 0600 {shown}`"),
            ),
            io::ErrorKind::InvalidData => (
                "the file is not UTF-8 text".to_owned(),
                "save config.toml as UTF-8".to_owned(),
            ),
            _ => (
                "the operating system refused the read".to_owned(),
                "check that the path names a regular, readable file".to_owned(),
            ),
        };
        Self::Read(Box::new(Diagnostic {
            at: None,
            key: None,
            what: format!("cannot read config file {shown}: {error}"),
            cause,
            fix,
        }))
    }
}
