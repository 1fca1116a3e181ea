//! `glrunner unregister`: remove runners from GitLab, then from config.toml. A `glrt-` runner is shared
//! by its managers, so only this host's manager is removed (`DELETE /runners/managers`); other tokens
//! delete the runner (`DELETE /runners`).

use super::{Failure, load_config};
use crate::cli::UnregisterArgs;
use crate::entry;
use glrunner_config::{ConfigEditor, State, StateOptions};
use glrunner_protocol::{Secret, TokenKind};
use std::process::ExitCode;

pub async fn unregister(args: UnregisterArgs) -> Result<ExitCode, Failure> {
    if !args.all_runners && args.name.is_none() && args.token.is_none() {
        return Err(Failure::config(
            "say which runner to unregister\n  fix: pass --name NAME, --token TOKEN (with --url), or --all-runners",
        ));
    }
    let loaded = load_config(&args.config)?;
    let mut state = State::open(&StateOptions::for_config(
        &loaded,
        args.state.state_dir.clone(),
    ));
    let selected: Vec<usize> = loaded
        .config
        .runners
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            args.all_runners
                || args.name.as_deref() == Some(r.name.as_str())
                || (args
                    .token
                    .as_deref()
                    .is_some_and(|t| r.token().is_some_and(|rt| rt.expose() == t.trim()))
                    && args
                        .url
                        .as_deref()
                        .is_none_or(|u| u.trim_end_matches('/') == r.url.trim_end_matches('/')))
        })
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return Err(Failure::config(format!(
            "no matching runner in {}\n  fix: check the name with `glrunner list -c {}`",
            loaded.path.display(),
            loaded.path.display()
        )));
    }
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for i in selected {
        let r = &loaded.config.runners[i];
        let name = entry::display_name(r, i);
        let token: Option<Secret> = r
            .token()
            .cloned()
            .or_else(|| state.runner(&r.name, &r.url).map(|s| s.token.clone()));
        let Some(token) = token else {
            errors.push(format!("{name}: no token to unregister with"));
            continue;
        };
        let client = entry::client(r, &loaded.config).map_err(Failure::config)?;
        let kind = TokenKind::classify(token.expose());
        let result = if kind.is_created_runner() {
            client.unregister_manager(&token, state.system_id()).await
        } else {
            client.unregister_runner(&token).await
        };
        match result {
            Ok(()) => {
                if kind.is_created_runner() {
                    println!(
                        "Unregistered manager {} of runner {name} (the runner stays in GitLab for its other managers; delete it there when no longer needed)",
                        state.system_id()
                    );
                } else {
                    println!("Unregistered runner {name}");
                }
                state.remove_runner(&r.name, &r.url);
                done.push(i);
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if !done.is_empty() {
        let mut editor = ConfigEditor::open(&loaded.path).map_err(Failure::config)?;
        editor.remove_runners(|e| done.contains(&e.index));
        editor.save().map_err(Failure::config)?;
        if let Err(e) = state.save() {
            eprintln!("WARNING: {e}");
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::other(format!(
            "{} runner(s) could not be unregistered and stay in {}:\n  {}",
            errors.len(),
            loaded.path.display(),
            errors.join("\n  ")
        )))
    }
}
