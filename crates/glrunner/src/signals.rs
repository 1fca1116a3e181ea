//! Signals as gitlab-runner treats them: SIGQUIT stops taking jobs and waits for running ones;
//! SIGINT/SIGTERM also abort running jobs (reported as `runner_interrupted`); a second one exits at once.

use glrunner_manager::Shutdown;
use tokio::signal::unix::{SignalKind, signal};

/// Turn signals into the manager's shutdown switches.
pub fn install(shutdown: Shutdown) -> std::io::Result<()> {
    let mut quit = signal(SignalKind::quit())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = quit.recv() => {
                    tracing::info!("SIGQUIT: finishing running jobs, taking no new ones");
                    shutdown.stop_polling.cancel();
                    continue;
                }
                Some(()) = term.recv() => {}
                Some(()) = int.recv() => {}
                else => return,
            }
            if shutdown.abort_jobs.is_cancelled() {
                tracing::error!("second signal: exiting now");
                std::process::exit(1);
            }
            tracing::warn!(
                "shutting down: aborting running jobs (send the signal again to exit at once)"
            );
            shutdown.stop_polling.cancel();
            shutdown.abort_jobs.cancel();
        }
    });
    Ok(())
}
