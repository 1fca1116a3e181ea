//! One module per command; `dispatch` runs the chosen one and turns its result into an exit code.

mod exec;
mod helper;
mod list;
mod register;
mod run;
mod unregister;
mod verify;

use crate::cli::{Cli, Command, ConfigArgs};
use crate::logging;
use glrunner_config::{Config, Loaded, default_config_path};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for configuration errors (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// A failure at the binary's edge: the message already says what happened and how to fix it.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn config(message: impl ToString) -> Self {
        Self {
            code: EXIT_CONFIG,
            message: message.to_string(),
        }
    }

    pub fn other(message: impl ToString) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }
}

pub async fn dispatch(cli: Cli) -> ExitCode {
    let level = cli.log_level.clone();
    let json = cli.log_format.as_deref() == Some("json");
    let result = match cli.command {
        Command::Run(args) => run::run(args, level, cli.log_format).await,
        Command::Helper(args) => return helper::helper(args).await,
        other => {
            logging::init(level.as_deref().unwrap_or("warn"), json);
            match other {
                Command::Register(args) => register::register(*args).await,
                Command::Verify(args) => verify::verify(args).await,
                Command::Unregister(args) => unregister::unregister(args).await,
                Command::List(args) => list::list(args),
                Command::Exec(args) => exec::exec(args).await,
                Command::Run(_) | Command::Helper(_) => unreachable!("handled above"),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("ERROR: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

pub fn config_path(args: &ConfigArgs) -> PathBuf {
    args.config.clone().unwrap_or_else(default_config_path)
}

/// Load config.toml, printing its warnings once.
pub fn load_config(args: &ConfigArgs) -> Result<Loaded, Failure> {
    let path = config_path(args);
    let loaded = Config::load(&path).map_err(Failure::config)?;
    print_warnings(&loaded);
    Ok(loaded)
}

pub fn print_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
}
