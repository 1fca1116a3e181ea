//! `glrunner register`: verify a `glrt-` token (new workflow) or create a runner with a registration token
//! (legacy workflow), then append the `[[runners]]` entry to config.toml — the only command that writes it.

use super::{Failure, config_path};
use crate::cli::RegisterArgs;
use crate::{entry, version};
use glrunner_config::{
    ConfigEditor, KubernetesConfig, RunnerConfig, State, StateOptions, Timestamp,
};
use glrunner_gitlab::GitLabClient;
use glrunner_gitlab::reply::VerifyReply;
use glrunner_protocol::request::{FeaturesInfo, RegisterRunnerRequest, VerifyRunnerRequest};
use glrunner_protocol::{Secret, TokenKind};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

pub async fn register(mut args: RegisterArgs) -> Result<ExitCode, Failure> {
    let path = config_path(&args.config);
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let url = required(
        args.url.take(),
        "--url",
        "GitLab instance URL (for example, https://gitlab.com/)",
        interactive,
    )?;
    let token_arg = match (args.token.take(), args.registration_token.take()) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => required(
            None,
            "--token",
            "runner authentication token (glrt-…)",
            interactive,
        )?,
    };
    let token = Secret::new(token_arg.trim());
    let kind = TokenKind::classify(token.expose());
    let name = match args.name.take() {
        Some(n) => n,
        None if interactive => prompt("runner name", &hostname())?,
        None => hostname(),
    };
    let executor = required(
        args.executor.take(),
        "--executor",
        "executor (shell, kubernetes)",
        interactive,
    )?;
    if !matches!(executor.as_str(), "shell" | "kubernetes") {
        return Err(Failure::config(format!(
            "executor {executor:?} is not one glrunner runs\n  fix: use --executor shell or --executor kubernetes"
        )));
    }

    let mut state = State::open(&StateOptions::from_env(
        Some(&path),
        args.state.state_dir.clone(),
    ));
    let mut runner = RunnerConfig {
        name: name.clone(),
        url: url.clone(),
        token_file: args.fields.token_file.clone().map(Into::into),
        tls_ca_file: args.fields.tls_ca_file.clone().map(Into::into),
        tls_cert_file: args.fields.tls_cert_file.clone().map(Into::into),
        tls_key_file: args.fields.tls_key_file.clone().map(Into::into),
        tls_server_name: args.fields.tls_server_name.clone(),
        executor: executor.clone(),
        shell: args.shell.clone(),
        limit: args.fields.limit,
        output_limit: args.fields.output_limit,
        request_concurrency: args.fields.request_concurrency,
        builds_dir: args.fields.builds_dir.clone().map(Into::into),
        cache_dir: args.fields.cache_dir.clone().map(Into::into),
        clone_url: args.fields.clone_url.clone(),
        environment: args.fields.env.clone().into(),
        kubernetes: (executor == "kubernetes").then(|| KubernetesConfig {
            host: args.fields.kubernetes_host.clone(),
            namespace: args.fields.kubernetes_namespace.clone(),
            image: args.fields.kubernetes_image.clone(),
            service_account: args.fields.kubernetes_service_account.clone(),
            privileged: args.fields.kubernetes_privileged,
            ..KubernetesConfig::default()
        }),
        ..RunnerConfig::default()
    };
    let client =
        entry::client(&runner, &glrunner_config::Config::default()).map_err(Failure::config)?;
    let info = version::info("", "", FeaturesInfo::default());

    let (runner_token, id, expires) = match kind {
        TokenKind::RunnerAuthentication
        | TokenKind::RegisteredRunnerAuthentication
        | TokenKind::LegacyRunnerAuthentication => {
            refuse_legacy_flags(&args)?;
            eprintln!(
                "Verifying runner token with {url} (new runner workflow: the runner was created in GitLab)"
            );
            let req = VerifyRunnerRequest {
                token: token.clone(),
                system_id: Some(state.system_id().to_owned()),
                info: version::info(
                    &executor,
                    args.shell.as_deref().unwrap_or(""),
                    FeaturesInfo::default(),
                ),
            };
            match client.verify_runner(&req).await.map_err(Failure::other)? {
                VerifyReply::Valid(details) => {
                    let id = details.as_ref().map(|d| d.id).filter(|id| *id > 0);
                    let expires = details.and_then(|d| d.token_expires_at);
                    (token, id, expires)
                }
                VerifyReply::Invalid => {
                    return Err(Failure::config(format!(
                        "GitLab at {url} rejected the {kind} (403 Forbidden)\n  cause: the runner was deleted, or its token was reset or has expired, or it belongs to another GitLab\n  fix: open the runner in GitLab (Settings > CI/CD > Runners), copy its current glrt- token and run register again"
                    )));
                }
            }
        }
        TokenKind::Registration | TokenKind::Unknown => {
            eprintln!(
                "WARNING: registering with a registration token: this is the legacy workflow, deprecated since GitLab 15.6 and disabled by default since 17.0. \
                 Create the runner in GitLab (Settings > CI/CD > Runners > New runner) and register with --token glrt-… instead."
            );
            let req = RegisterRunnerRequest {
                token: token.clone(),
                description: name.clone(),
                maintenance_note: args.maintenance_note.clone().unwrap_or_default(),
                tag_list: args.tag_list.clone().unwrap_or_default(),
                run_untagged: args.run_untagged,
                locked: args.locked.unwrap_or(true),
                access_level: args.access_level.clone().unwrap_or_default(),
                maximum_timeout: args.maximum_timeout.unwrap_or(0),
                paused: args.paused,
                info,
            };
            let details = client.register_runner(&req).await.map_err(Failure::other)?;
            (details.token, Some(details.id), details.token_expires_at)
        }
        other => {
            return Err(Failure::config(format!(
                "the token given is a {other}, not a runner token\n  fix: create a runner in GitLab (Settings > CI/CD > Runners > New runner) and pass its glrt- token with --token"
            )));
        }
    };

    runner.id = id;
    runner.token = runner.token_file.is_none().then(|| runner_token.clone());
    runner.token_obtained_at = Some(Timestamp::now());
    runner.token_expires_at = expires.as_deref().and_then(|e| e.parse().ok());
    let saved = ConfigEditor::open(&path).and_then(|mut editor| {
        editor.add_runner(&runner)?;
        editor.save()
    });
    if let Err(e) = saved {
        if !args.leave_runner {
            rollback(&client, kind, &runner_token, state.system_id()).await;
        }
        return Err(Failure::config(e));
    }
    if args.fields.token_file.is_some() && kind == TokenKind::Registration {
        // The token GitLab created exists nowhere else: keep it in state so `run` finds it.
        state.set_runner(glrunner_config::RunnerState::new(
            &name,
            &url,
            runner_token.clone(),
        ));
        if let Err(e) = state.save() {
            eprintln!("WARNING: {e}");
        }
    }
    println!(
        "Runner {name:?} registered ({}) and saved to {}. Start it with: glrunner run -c {}",
        entry_summary(kind),
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn entry_summary(kind: TokenKind) -> &'static str {
    if kind == TokenKind::Registration || kind == TokenKind::Unknown {
        "legacy workflow"
    } else {
        "new runner workflow"
    }
}

/// The new workflow sets these in GitLab's UI; gitlab-runner refuses them too.
fn refuse_legacy_flags(args: &RegisterArgs) -> Result<(), Failure> {
    let mut set = Vec::new();
    if args.tag_list.is_some() {
        set.push("--tag-list");
    }
    if args.run_untagged {
        set.push("--run-untagged");
    }
    if args.locked.is_some() {
        set.push("--locked");
    }
    if args.access_level.is_some() {
        set.push("--access-level");
    }
    if args.maximum_timeout.is_some() {
        set.push("--maximum-timeout");
    }
    if args.paused {
        set.push("--paused");
    }
    if args.maintenance_note.is_some() {
        set.push("--maintenance-note");
    }
    if set.is_empty() {
        return Ok(());
    }
    Err(Failure::config(format!(
        "{} cannot be used with a runner authentication token\n  cause: with the new runner workflow these settings belong to the runner in GitLab\n  fix: set them when creating or editing the runner in GitLab (Settings > CI/CD > Runners), and drop them here",
        set.join(", ")
    )))
}

/// Undo a registration whose config could not be written, so no orphan runner stays in GitLab.
async fn rollback(client: &GitLabClient, kind: TokenKind, token: &Secret, system_id: &str) {
    let result = if kind.is_created_runner() {
        client.unregister_manager(token, system_id).await
    } else if kind == TokenKind::Registration || kind == TokenKind::Unknown {
        client.unregister_runner(token).await
    } else {
        return;
    };
    if let Err(e) = result {
        eprintln!("WARNING: could not remove the runner from GitLab again: {e}");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "glrunner".to_owned())
}

fn required(
    value: Option<String>,
    flag: &str,
    what: &str,
    interactive: bool,
) -> Result<String, Failure> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ if interactive => {
            let v = prompt(what, "")?;
            if v.is_empty() {
                Err(Failure::config(format!("{what} is required")))
            } else {
                Ok(v)
            }
        }
        _ => Err(Failure::config(format!(
            "{flag} is required with --non-interactive\n  fix: pass {flag} (the {what})"
        ))),
    }
}

fn prompt(what: &str, default: &str) -> Result<String, Failure> {
    if default.is_empty() {
        eprint!("Enter the {what}: ");
    } else {
        eprint!("Enter the {what} [{default}]: ");
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::other(format!("cannot read the answer: {e}")))?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_owned()
    } else {
        line.to_owned()
    })
}
