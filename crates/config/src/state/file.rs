//! The state file (`glrunner-state.json`): what the runner learned, written atomically with mode 0600.

use crate::timestamp::Timestamp;
use glrunner_protocol::Secret;
use serde::{Deserialize, Serialize};

/// The file name inside the state directory.
pub const STATE_FILE: &str = "glrunner-state.json";

/// Format version written to the file; newer versions are read as far as they are understood.
pub const STATE_VERSION: u32 = 1;

/// The contents of the state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateData {
    pub version: u32,
    pub system_id: Option<String>,
    pub runners: Vec<RunnerState>,
}

/// What registration gave one `[[runners]]` entry, keyed by its name and URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerState {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub id: Option<i64>,
    pub token: Secret,
    #[serde(default)]
    pub token_obtained_at: Option<Timestamp>,
    #[serde(default)]
    pub token_expires_at: Option<Timestamp>,
}

impl RunnerState {
    pub fn new(name: impl Into<String>, url: impl Into<String>, token: Secret) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            id: None,
            token,
            token_obtained_at: None,
            token_expires_at: None,
        }
    }

    pub(crate) fn matches(&self, name: &str, url: &str) -> bool {
        self.name == name && normalize_url(&self.url) == normalize_url(url)
    }
}

/// `https://gitlab.example.com/` and `https://gitlab.example.com` are the same GitLab.
fn normalize_url(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

impl StateData {
    pub fn runner(&self, name: &str, url: &str) -> Option<&RunnerState> {
        self.runners.iter().find(|r| r.matches(name, url))
    }

    /// Adds or replaces the entry with the same name and URL.
    pub fn set_runner(&mut self, entry: RunnerState) {
        match self
            .runners
            .iter_mut()
            .find(|r| r.matches(&entry.name, &entry.url))
        {
            Some(slot) => *slot = entry,
            None => self.runners.push(entry),
        }
    }

    pub fn remove_runner(&mut self, name: &str, url: &str) -> Option<RunnerState> {
        let i = self.runners.iter().position(|r| r.matches(name, url))?;
        Some(self.runners.remove(i))
    }

    pub(crate) fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }
}
