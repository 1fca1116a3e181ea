//! The top level of config.toml: global keys, `[session_server]` and the `[[runners]]` list.

use crate::duration::GoDuration;
use crate::runner::RunnerConfig;
use glrunner_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// config.toml, gitlab-runner's format plus glrunner's `state_dir`. Load it with [`Config::load`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Jobs at once across all runners (default 1; 0 or less is refused at load).
    pub concurrent: Option<i64>,
    /// Seconds between job requests (0 or less means 3).
    pub check_interval: Option<i64>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
    /// Metrics and debug server, `host:port` (a bare host gets port 9252).
    pub listen_address: Option<String>,
    /// Seconds to wait for jobs on forced shutdown (default 30).
    pub shutdown_timeout: Option<i64>,
    /// Idle GitLab connections older than this are not reused (default 15m).
    pub connection_max_age: Option<GoDuration>,
    /// Falls back to the `SENTRY_DSN` environment variable.
    pub sentry_dsn: Option<Secret>,
    /// The user the shell executor runs jobs as.
    pub user: Option<String>,
    /// Labels for every runner (≤ 32 after merging with a runner's own).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where glrunner keeps what it learns (system_id, tokens from registration). Relative paths are
    /// relative to config.toml's directory.
    pub state_dir: Option<PathBuf>,
    pub session_server: Option<SessionServer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerConfig>,
}

impl Config {
    /// `concurrent` (validated ≥ 1 at load; 1 when unset).
    pub fn concurrent(&self) -> usize {
        self.concurrent
            .filter(|n| *n > 0)
            .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `check_interval`, 3 s when unset or not positive.
    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(
            self.check_interval
                .filter(|n| *n > 0)
                .map_or(3, i64::unsigned_abs),
        )
    }

    /// `shutdown_timeout`, 30 s when unset or not positive.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(
            self.shutdown_timeout
                .filter(|n| *n > 0)
                .map_or(30, i64::unsigned_abs),
        )
    }

    /// `connection_max_age` (15 min).
    pub fn connection_max_age(&self) -> Duration {
        self.connection_max_age
            .map_or(Duration::from_secs(900), |d| d.0)
    }

    /// `listen_address` with gitlab-runner's default port 9252 added when it names only a host.
    pub fn metrics_listen_address(&self) -> Option<String> {
        let addr = self.listen_address.as_deref()?.trim();
        if addr.is_empty() {
            return None;
        }
        let has_port = match addr.rsplit_once(':') {
            // `[::1]:9252`, `host:9252`, `:9252`; a bare IPv6 address has colons but no brackets.
            Some((host, port)) => {
                !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && (host.starts_with('[') || !host.contains(':'))
            }
            None => false,
        };
        Some(if has_port {
            addr.to_owned()
        } else if addr.contains(':') && !addr.starts_with('[') {
            format!("[{addr}]:9252")
        } else {
            format!("{addr}:9252")
        })
    }

    /// `log_format` (`runner` when unset).
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(LogFormat::Runner)
    }
}

/// `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Panic,
    Fatal,
    Error,
    #[serde(alias = "warning")]
    Warn,
    Info,
    Debug,
    Trace,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Runner,
    Text,
    Json,
}

/// `[session_server]` (interactive web terminal).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionServer {
    pub listen_address: Option<String>,
    pub advertise_address: Option<String>,
    /// Seconds (default 1800).
    pub session_timeout: Option<i64>,
}

impl SessionServer {
    /// `session_timeout` (30 min when unset or not positive).
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(
            self.session_timeout
                .filter(|n| *n > 0)
                .map_or(1800, i64::unsigned_abs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_address_gets_the_default_port() {
        let addr = |a: &str| {
            Config {
                listen_address: Some(a.to_owned()),
                ..Config::default()
            }
            .metrics_listen_address()
        };
        assert_eq!(addr("0.0.0.0").as_deref(), Some("0.0.0.0:9252"));
        assert_eq!(addr("localhost:9300").as_deref(), Some("localhost:9300"));
        assert_eq!(addr(":9252").as_deref(), Some(":9252"));
        assert_eq!(addr("[::]:9300").as_deref(), Some("[::]:9300"));
        assert_eq!(addr("[::1]").as_deref(), Some("[::1]:9252"));
        assert_eq!(addr("::1").as_deref(), Some("[::1]:9252"));
        assert_eq!(addr(" ").as_deref(), None);
        assert_eq!(Config::default().metrics_listen_address(), None);
    }
}
