//! The manager's log: text or JSON on stderr, level from the command line or config.toml.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `level` is error/warn/info/debug (or a full filter directive).
pub fn init(level: &str, json: bool) {
    let level = match level {
        "warning" => "warn",
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: piped into files or `kubectl logs` they are noise.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
