//! `glrunner verify [--delete]`: ask GitLab whether each runner's token is still valid.

use super::{Failure, load_config};
use crate::cli::VerifyArgs;
use crate::{entry, version};
use glrunner_config::{ConfigEditor, State, StateOptions};
use glrunner_gitlab::reply::VerifyReply;
use glrunner_protocol::request::{FeaturesInfo, VerifyRunnerRequest};
use std::process::ExitCode;

pub async fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let loaded = load_config(&args.config)?;
    let state = State::open(&StateOptions::for_config(
        &loaded,
        args.state.state_dir.clone(),
    ));
    let mut removed = Vec::new();
    let mut failed = 0;
    let mut checked = 0;
    for (i, r) in loaded.config.runners.iter().enumerate() {
        let name = entry::display_name(r, i);
        if args.name.as_deref().is_some_and(|n| n != r.name) {
            continue;
        }
        checked += 1;
        let Some(token) = r
            .token()
            .cloned()
            .or_else(|| state.runner(&r.name, &r.url).map(|s| s.token.clone()))
        else {
            println!("Verifying runner... {name}: no token configured");
            failed += 1;
            continue;
        };
        let client = entry::client(r, &loaded.config).map_err(Failure::config)?;
        let req = VerifyRunnerRequest {
            token: token.clone(),
            system_id: Some(state.system_id().to_owned()),
            info: version::info(&r.executor, r.shell(), FeaturesInfo::default()),
        };
        match client.verify_runner(&req).await {
            Ok(VerifyReply::Valid(_)) => println!(
                "Verifying runner... {name} is valid (system ID {})",
                state.system_id()
            ),
            Ok(VerifyReply::Invalid) => {
                println!(
                    "Verifying runner... {name} is removed: GitLab rejects its token (403). The runner was deleted in GitLab or its token was reset or expired."
                );
                failed += 1;
                if args.delete {
                    removed.push((i, token));
                }
            }
            Err(e) => {
                // Network errors never delete anything.
                println!("Verifying runner... {name} could not be checked: {e}");
                failed += 1;
            }
        }
    }
    if checked == 0 {
        return Err(Failure::config(match &args.name {
            Some(n) => format!("no runner named {n:?} in {}", loaded.path.display()),
            None => format!("no [[runners]] in {}", loaded.path.display()),
        }));
    }
    if !removed.is_empty() {
        let mut editor = ConfigEditor::open(&loaded.path).map_err(Failure::config)?;
        let indexes: Vec<usize> = removed.iter().map(|(i, _)| *i).collect();
        editor.remove_runners(|e| indexes.contains(&e.index));
        editor.save().map_err(Failure::config)?;
        println!(
            "Removed {} runner(s) GitLab no longer knows from {}",
            removed.len(),
            loaded.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
