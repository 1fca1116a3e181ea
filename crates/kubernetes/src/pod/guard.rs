//! The values that must never reach a pod spec (masked variables, the job token, dependency tokens,
//! the repository URL's password, registry passwords), found in any text with one automaton, so the
//! builder can route variables that hold them to the job's Secret, redact error messages, and check
//! the finished pod before anything is sent.

use aho_corasick::AhoCorasick;
use serde_json::Value;

/// Shorter values are not searched for: they would match everywhere (GitLab refuses to mask values
/// shorter than 8 characters, so real secrets are longer).
const MIN_SECRET_LEN: usize = 4;

/// A sensitive value and what it is (for messages that must not show the value).
#[derive(Clone)]
struct Entry {
    value: String,
    what: String,
}

/// Searches text for sensitive values.
#[derive(Clone, Default)]
pub struct Guard {
    entries: Vec<Entry>,
    automaton: Option<AhoCorasick>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("values", &self.entries.len())
            .finish()
    }
}

impl Guard {
    /// A guard for `values`, each with a description such as "the masked variable PASSWORD".
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut entries: Vec<Entry> = values
            .into_iter()
            .filter(|(v, _)| v.len() >= MIN_SECRET_LEN)
            .map(|(value, what)| Entry { value, what })
            .collect();
        // Longest first, so a value containing another is reported as itself.
        entries.sort_by(|a, b| {
            b.value
                .len()
                .cmp(&a.value.len())
                .then(a.value.cmp(&b.value))
        });
        entries.dedup_by(|a, b| a.value == b.value);
        let automaton = (!entries.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(entries.iter().map(|e| e.value.as_str()))
                    .ok()
            })
            .flatten();
        Self { entries, automaton }
    }

    /// What the first sensitive value in `text` is, if there is one.
    pub fn find(&self, text: &str) -> Option<&str> {
        let m = self.automaton.as_ref()?.find(text)?;
        Some(self.entries[m.pattern().as_usize()].what.as_str())
    }

    pub fn contains_secret(&self, text: &str) -> bool {
        self.find(text).is_some()
    }

    /// `text` with every sensitive value replaced by `[MASKED]`, for error messages.
    pub fn redact(&self, text: &str) -> String {
        match &self.automaton {
            Some(ac) => ac.replace_all(text, &vec!["[MASKED]"; self.entries.len()]),
            None => text.to_owned(),
        }
    }

    /// The first string in `value` (keys included) holding a sensitive value: its JSON path and what
    /// the value is.
    pub fn scan(&self, value: &Value) -> Option<(String, String)> {
        self.automaton.as_ref()?;
        let mut path = Vec::new();
        self.walk(value, &mut path)
    }

    fn walk(&self, value: &Value, path: &mut Vec<String>) -> Option<(String, String)> {
        let hit = |path: &Vec<String>, what: &str| Some((path.join("."), what.to_owned()));
        match value {
            Value::String(s) => self.find(s).and_then(|what| hit(path, what)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
                path.push(format!("[{i}]"));
                let found = self.walk(v, path);
                path.pop();
                found
            }),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                path.push(k.clone());
                let found = match self.find(k) {
                    Some(what) => hit(path, what),
                    None => self.walk(v, path),
                };
                path.pop();
                found
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_redacts_and_scans() {
        let g = Guard::new([
            (
                "s3cr3t-value".to_owned(),
                "the masked variable A".to_owned(),
            ),
            (
                "s3cr3t-value-longer".to_owned(),
                "the masked variable B".to_owned(),
            ),
            ("abc".to_owned(), "too short to search".to_owned()),
        ]);
        assert_eq!(
            g.find("x s3cr3t-value-longer y"),
            Some("the masked variable B")
        );
        assert_eq!(g.find("x s3cr3t-value y"), Some("the masked variable A"));
        assert_eq!(g.find("abc"), None);
        assert_eq!(g.redact("u:s3cr3t-value@h"), "u:[MASKED]@h");
        let v = serde_json::json!({"spec": {"containers": [{"env": [{"value": "ok"}, {"value": "p=s3cr3t-value"}]}]}});
        assert_eq!(
            g.scan(&v),
            Some((
                "spec.containers.[0].env.[1].value".to_owned(),
                "the masked variable A".to_owned()
            ))
        );
        assert_eq!(g.scan(&serde_json::json!({"a": ["b"]})), None);
        assert!(format!("{g:?}").contains("values: 2"));
        assert_eq!(Guard::default().redact("x"), "x");
    }
}
