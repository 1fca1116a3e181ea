//! glrunner's version and the `info` it sends to GitLab.

use glrunner_protocol::request::{FeaturesInfo, VersionInfo};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Set `GLRUNNER_REVISION` at build time to record the commit.
pub const REVISION: &str = match option_env!("GLRUNNER_REVISION") {
    Some(r) => r,
    None => "unknown",
};

pub fn platform() -> &'static str {
    std::env::consts::OS
}

/// GitLab's architecture names (Go's GOARCH).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

pub fn user_agent() -> String {
    format!(
        "glrunner {VERSION} ({REVISION}; {}/{})",
        platform(),
        architecture()
    )
}

/// `info` for requests: executor and features filled in by the caller where they matter.
pub fn info(executor: &str, shell: &str, features: FeaturesInfo) -> VersionInfo {
    VersionInfo {
        name: "glrunner".to_owned(),
        version: VERSION.to_owned(),
        revision: REVISION.to_owned(),
        platform: platform().to_owned(),
        architecture: architecture().to_owned(),
        executor: executor.to_owned(),
        shell: shell.to_owned(),
        features,
        ..VersionInfo::default()
    }
}
