//! `glrunner list`: the runners in config.toml, with short tokens only.

use super::{Failure, load_config};
use crate::cli::ConfigArgs;
use crate::entry;
use glrunner_protocol::{TokenKind, short_token};
use std::process::ExitCode;

pub fn list(args: ConfigArgs) -> Result<ExitCode, Failure> {
    let loaded = load_config(&args)?;
    println!(
        "Listing configured runners  ConfigFile={}",
        loaded.path.display()
    );
    for (i, r) in loaded.config.runners.iter().enumerate() {
        let (token, kind) = match r.token() {
            Some(t) => (
                short_token(t.expose()),
                TokenKind::classify(t.expose()).describe(),
            ),
            None => ("-".to_owned(), "no token"),
        };
        println!(
            "{:<20} Executor={} Token={} ({}) URL={}",
            entry::display_name(r, i),
            r.executor,
            token,
            kind,
            r.url
        );
    }
    Ok(ExitCode::SUCCESS)
}
