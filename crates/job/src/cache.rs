//! The restore_cache and archive_cache stages: which caches a job restores or saves, their keys
//! (variables expanded, then sanitised or hashed by `glrunner_archive::cache`), `policy`, `when`,
//! `fallback_keys` and `CACHE_FALLBACK_KEY`, where each archive lives, and the
//! `glrunner helper cache-extract`/`cache-archive` calls around which the scripts print
//! gitlab-runner's lines. A cache that cannot be restored or saved is a warning, never a job failure,
//! as with gitlab-runner; only a `policy` that is not pull, push or pull-push fails the job.

use crate::helper::{HelperCommand, guard};
use crate::script::{ScriptContext, ScriptError};
use crate::settings::GitStrategy;
use crate::stage_ops::{Branches, HelperStep, Op, StageOps};
use glrunner_archive::cache::{CacheKeyError, fallback_key_allowed, resolve_cache_key};
use glrunner_archive::{Message, notice};
use glrunner_cache::{CacheObject, CacheTarget as BackendTarget};
use glrunner_protocol::{Cache, JobResponse};

/// Whether a cache entry selects anything to archive.
fn selects_files(c: &Cache) -> bool {
    !c.paths.is_empty() || c.untracked
}

/// Whether the job has a cache to restore (the stage runs even if every policy says push: it prints
/// why nothing is downloaded, as gitlab-runner).
pub fn restores(job: &JobResponse) -> bool {
    job.cache.iter().any(selects_files)
}

/// Whether the job has a cache to save after it succeeded or failed.
pub fn archives(job: &JobResponse, job_failed: bool) -> bool {
    job.cache
        .iter()
        .any(|c| selects_files(c) && c.when.applies(job_failed))
}

/// Where one cache archive is read from and written to, as the helper is told. No `Debug`: presigned
/// URLs carry a signature.
#[derive(Clone, PartialEq, Eq)]
enum CacheLocation {
    /// A local `cache.zip` (`--file`).
    File(String),
    /// Presigned URLs of a distributed cache (`--url`).
    Url { get: String, put: String },
}

/// A resolved key and where its archive is.
#[derive(Clone, PartialEq, Eq)]
struct CacheTarget {
    /// The key as the log shows it.
    human: String,
    location: CacheLocation,
}

/// What a `policy` allows, after variable expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    pull: bool,
    push: bool,
}

fn policy(sc: &ScriptContext<'_>, c: &Cache, human: &str) -> Result<Policy, ScriptError> {
    let expanded = sc.variables.expand_value(&c.policy);
    match expanded.as_str() {
        "" | "pull-push" => Ok(Policy {
            pull: true,
            push: true,
        }),
        "pull" => Ok(Policy {
            pull: true,
            push: false,
        }),
        "push" => Ok(Policy {
            pull: false,
            push: true,
        }),
        _ => Err(ScriptError::CachePolicy {
            key: human.to_owned(),
            policy: expanded,
        }),
    }
}

/// Resolve `user_key` (already expanded) to a target, adding gitlab-runner's warning to `ops` when the
/// key was sanitised. `Err` holds the reason for `Skipping cache … due to <reason>`.
fn target(
    ops: &mut Vec<Op>,
    sc: &ScriptContext<'_>,
    user_key: &str,
) -> Result<CacheTarget, String> {
    let job = sc.job;
    let key = resolve_cache_key(
        user_key,
        &job.job_info.name,
        &job.git_info.r#ref,
        sc.settings.hash_cache_keys,
    );
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            if let CacheKeyError::Unsanitizable { .. } = e {
                ops.push(Op::Message(Message::warning(e.to_string())));
            }
            return Err(e.skip_reason());
        }
    };
    if let Some(warning) = &key.warning {
        ops.push(Op::Message(warning.clone()));
    }
    let location = locate(sc, &key.hashed)?;
    Ok(CacheTarget {
        human: key.human,
        location,
    })
}

/// Where the archive of `hashed_key` lives: a file in the local cache directory, or presigned URLs
/// (valid for the job's timeout) when `[runners.cache]` names S3.
fn locate(sc: &ScriptContext<'_>, hashed_key: &str) -> Result<CacheLocation, String> {
    let project_path = crate::paths::project_path(sc.job);
    let object = CacheObject {
        key: hashed_key,
        hashed_keys: sc.settings.hash_cache_keys,
        project_id: sc.job.job_info.project_id,
        project_path: &project_path,
        empty_git_strategy: sc.settings.git_strategy == GitStrategy::Empty,
        short_token: &sc.ctx.short_token,
    };
    match sc.helper.cache.target(&object, sc.helper.url_lifetime) {
        Ok(Some(BackendTarget::File(path))) => {
            Ok(CacheLocation::File(path.to_string_lossy().into_owned()))
        }
        Ok(Some(BackendTarget::Url { get, put })) => Ok(CacheLocation::Url {
            get: get.to_string(),
            put: put.to_string(),
        }),
        Ok(None) => Err("unset cache directory".to_owned()),
        Err(e) => Err(e.skip_reason()),
    }
}

impl CacheLocation {
    fn extract_flag(&self) -> (&'static str, &str) {
        match self {
            Self::File(f) => ("file", f),
            Self::Url { get, .. } => ("url", get),
        }
    }

    fn archive_flag(&self) -> (&'static str, &str) {
        match self {
            Self::File(f) => ("file", f),
            Self::Url { put, .. } => ("url", put),
        }
    }
}

fn timeout(sc: &ScriptContext<'_>) -> String {
    format!("{}m", sc.settings.cache_request_timeout_minutes)
}

/// The steps of restore_cache.
pub(crate) fn restore_cache_ops(sc: &ScriptContext<'_>) -> Result<StageOps, ScriptError> {
    let mut ops = vec![sc.environment()];
    for c in sc.job.cache.iter().filter(|c| selects_files(c)) {
        let first = match target(&mut ops, sc, &sc.variables.expand_value(&c.key)) {
            Ok(t) => t,
            Err(reason) => {
                ops.push(Op::Message(notice::skipping_cache_extraction(&reason)));
                continue;
            }
        };
        if !policy(sc, c, &first.human)?.pull {
            ops.push(Op::Message(notice::not_downloading_cache(&first.human)));
            continue;
        }
        let mut targets = vec![first];
        let mut add = |ops: &mut Vec<Op>, key: &str| {
            if key.is_empty() {
                return;
            }
            match target(ops, sc, key) {
                Ok(t) => targets.push(t),
                Err(reason) => ops.push(Op::Message(notice::skipping_cache_extraction(&reason))),
            }
        };
        for k in &c.fallback_keys {
            add(&mut ops, &sc.variables.expand_value(k));
        }
        if let Some(k) = sc.variables.value("CACHE_FALLBACK_KEY") {
            match fallback_key_allowed(k) {
                Ok(()) => add(&mut ops, k),
                Err(warning) => ops.push(Op::Message(warning)),
            }
        }
        ops.push(guard(
            sc.helper.program.as_deref(),
            "Extracting cache",
            |p| extract(sc, p, &targets, c),
        ));
    }
    Ok(StageOps { ops })
}

/// Try `targets` in order: the first that extracts wins; each miss prints `Failed to extract cache`
/// and the next is tried in the failure branch.
fn extract(sc: &ScriptContext<'_>, program: &str, targets: &[CacheTarget], c: &Cache) -> Vec<Op> {
    let Some((t, rest)) = targets.split_first() else {
        return Vec::new();
    };
    let (flag, value) = t.location.extract_flag();
    let command = HelperCommand::new("cache-extract")
        .flag(flag, value)
        .flag("timeout", timeout(sc));
    let mut failure = vec![Op::Message(notice::failed_to_extract_cache())];
    if sc.settings.clean_up_failed_cache_extract {
        // A half-extracted cache is worse than none.
        for p in &c.paths {
            failure.push(Op::Message(Message::info(format!("Removing {p}"))));
            failure.push(Op::RemoveTree(p.clone()));
        }
    }
    failure.extend(extract(sc, program, rest, c));
    vec![
        Op::Message(notice::checking_cache(&t.human, false)),
        Op::Helper(Box::new(HelperStep {
            program: program.to_owned(),
            command,
            branches: Some(Branches {
                success: vec![Op::Message(notice::successfully_extracted_cache())],
                failure,
            }),
        })),
    ]
}

/// The steps of archive_cache (`job_failed` false) or archive_cache_on_failure.
pub(crate) fn archive_cache_ops(
    sc: &ScriptContext<'_>,
    job_failed: bool,
) -> Result<StageOps, ScriptError> {
    let mut ops = vec![sc.environment()];
    for c in sc
        .job
        .cache
        .iter()
        .filter(|c| selects_files(c) && c.when.applies(job_failed))
    {
        let t = match target(&mut ops, sc, &sc.variables.expand_value(&c.key)) {
            Ok(t) => t,
            Err(reason) => {
                ops.push(Op::Message(notice::skipping_cache_archiving(&reason)));
                continue;
            }
        };
        if !policy(sc, c, &t.human)?.push {
            ops.push(Op::Message(notice::not_uploading_cache(&t.human)));
            continue;
        }
        ops.push(guard(sc.helper.program.as_deref(), "Creating cache", |p| {
            let (flag, value) = t.location.archive_flag();
            let max_size = sc.helper.cache.max_upload_size().map(|n| n.to_string());
            let command = HelperCommand::new("cache-archive")
                .flag(flag, value)
                .flags("path", &c.paths)
                .switch("untracked", c.untracked)
                .flag_opt("max-size", max_size.as_deref())
                .flag("timeout", timeout(sc));
            vec![
                Op::Message(notice::creating_cache(&t.human)),
                Op::Helper(Box::new(HelperStep {
                    program: p.to_owned(),
                    command,
                    branches: Some(Branches {
                        success: vec![Op::Message(notice::created_cache())],
                        failure: vec![Op::Message(notice::failed_to_create_cache())],
                    }),
                })),
            ]
        }));
    }
    Ok(StageOps { ops })
}
