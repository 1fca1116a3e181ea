//! `Environment`: a `["KEY=VALUE", …]` list whose values are never printed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// `environment = ["KEY=VALUE", …]` (runner entries and Kubernetes services). Values often hold
/// credentials (`DOCKER_AUTH_CONFIG=…`), so `Debug` shows only the names.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Environment(pub Vec<String>);

impl Environment {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries split into name and value; an entry without `=` has an empty value.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|e| e.split_once('=').unwrap_or((e.as_str(), "")))
    }
}

impl Deref for Environment {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl DerefMut for Environment {
    fn deref_mut(&mut self) -> &mut Vec<String> {
        &mut self.0
    }
}

impl From<Vec<String>> for Environment {
    fn from(v: Vec<String>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs().map(|(k, _)| format!("{k}=[REDACTED]")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_only() {
        let e = Environment(vec!["A=secret-1".into(), "B".into()]);
        let shown = format!("{e:?}");
        assert_eq!(shown, r#"["A=[REDACTED]", "B=[REDACTED]"]"#);
        assert_eq!(
            e.pairs().collect::<Vec<_>>(),
            vec![("A", "secret-1"), ("B", "")]
        );
    }
}
