//! `glrunner helper …`: the artifact and cache subcommands job scripts run (glrunner-helper does the
//! work). Its lines go to stdout, into the job log; retries are logged as warnings on stderr.

use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

pub async fn helper(args: glrunner_helper::HelperArgs) -> ExitCode {
    // A fixed filter: a job's own RUST_LOG or LOG_LEVEL must not turn on HTTP debug logs in its log.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
    let mut stdout = std::io::stdout();
    let mut out = glrunner_helper::Output::new(&mut stdout);
    let exit = glrunner_helper::run(args, &mut out).await;
    ExitCode::from(exit.code())
}
