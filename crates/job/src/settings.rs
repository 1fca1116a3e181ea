//! Job settings read from variables (`GIT_STRATEGY`, `CI_DEBUG_TRACE`, timeouts, attempts, feature
//! flags), with a warning for every value that could not be used, instead of failing the job.

use crate::context::RunnerContext;
use crate::variables::{Variables, is_valid_name, parse_bool};
use std::time::Duration;

/// gitlab-runner's default for `RUNNER_AFTER_SCRIPT_TIMEOUT`.
pub const DEFAULT_AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// gitlab-runner's default for `CACHE_REQUEST_TIMEOUT`, in minutes.
pub const DEFAULT_CACHE_REQUEST_TIMEOUT_MINUTES: u32 = 10;

/// `GIT_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitStrategy {
    /// Remove the project dir, then init and fetch.
    Clone,
    /// Reuse the project dir's repository and fetch into it.
    Fetch,
    /// Do not touch the sources; only make sure the project dir exists.
    None,
    /// Start from an empty project dir.
    Empty,
}

/// `GIT_SUBMODULE_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmoduleStrategy {
    None,
    Normal,
    Recursive,
}

/// Everything the stage scripts and `run_job` take from variables.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// `CI_DEBUG_TRACE` (and not refused by `debug_trace_disabled`): bash `set -o xtrace`.
    pub debug_trace: bool,
    pub git_strategy: GitStrategy,
    /// `GIT_CHECKOUT` (default true).
    pub git_checkout: bool,
    /// `GIT_CLEAN_FLAGS` (default `-ffdx`; `none` = no clean).
    pub git_clean_flags: Vec<String>,
    /// `GIT_FETCH_EXTRA_FLAGS` (default `--prune --quiet`; `none` = no flags).
    pub git_fetch_extra_flags: Vec<String>,
    pub submodule_strategy: SubmoduleStrategy,
    /// `GIT_SUBMODULE_DEPTH`; `None` = the job's `git_info.depth`.
    pub submodule_depth: Option<u32>,
    /// `GIT_SUBMODULE_PATHS`: pathspecs after `--` of the submodule commands.
    pub submodule_paths: Vec<String>,
    /// `GIT_SUBMODULE_UPDATE_FLAGS` (`none` = no flags).
    pub submodule_update_flags: Vec<String>,
    /// `GIT_SUBMODULE_FORCE_HTTPS`: fetch `git@host:` and `ssh://git@host` submodules over HTTPS.
    pub submodule_force_https: bool,
    /// `GIT_LFS_SKIP_SMUDGE`: the user turned LFS downloads off; `git lfs pull` is skipped too.
    pub lfs_skip_smudge: bool,
    /// `*_ATTEMPTS`, each clamped to 1–10.
    pub get_sources_attempts: u32,
    pub restore_cache_attempts: u32,
    pub artifact_download_attempts: u32,
    /// `RUNNER_SCRIPT_TIMEOUT`: a limit for all user steps together; `None` = the job timeout.
    pub script_timeout: Option<Duration>,
    /// `RUNNER_AFTER_SCRIPT_TIMEOUT` (default 5 min).
    pub after_script_timeout: Duration,
    /// `AFTER_SCRIPT_IGNORE_ERRORS` (default true).
    pub after_script_ignore_errors: bool,
    /// `CACHE_REQUEST_TIMEOUT` in minutes (default 10): the limit for one cache transfer.
    pub cache_request_timeout_minutes: u32,
    /// `FF_HASH_CACHE_KEYS`: name cache archives by the SHA-256 of their key.
    pub hash_cache_keys: bool,
    /// `FF_CLEAN_UP_FAILED_CACHE_EXTRACT`: remove the cache paths when an extraction fails half-way.
    pub clean_up_failed_cache_extract: bool,
    /// `FF_ENABLE_BASH_EXIT_CODE_CHECK`: check `$?` after every command, not only `set -e`.
    pub bash_exit_code_check: bool,
    /// `FF_USE_NEW_BASH_EVAL_STRATEGY`: with the legacy eval, run it in a subshell.
    pub bash_eval_subshell: bool,
    /// `FF_USE_LEGACY_BASH_EVAL`: the old `: | eval …` pipeline instead of a trapped subshell.
    pub bash_legacy_eval: bool,
    /// `FF_SCRIPT_SECTIONS`: each user command in its own collapsible section.
    pub script_sections: bool,
    /// `FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY`: wait between attempts of a retried stage.
    pub stage_retry_backoff: bool,
    /// Problems with the values above, for the trace.
    pub warnings: Vec<String>,
}

impl JobSettings {
    /// Read the settings from the job's final (expanded) variables.
    pub fn from_variables(vars: &Variables, allow_git_fetch: bool, ctx: &RunnerContext) -> Self {
        let mut warnings = Vec::new();
        let flag = |name: &str| vars.bool(name).unwrap_or(false);

        let debug_requested = vars.bool("CI_DEBUG_TRACE").unwrap_or(false);
        if debug_requested && ctx.debug_trace_disabled {
            warnings.push(
                "CI_DEBUG_TRACE: usage is disabled on this runner (debug_trace_disabled = true in \
                 config.toml); the job runs without bash xtrace"
                    .to_owned(),
            );
        }

        let default_strategy = if allow_git_fetch {
            GitStrategy::Fetch
        } else {
            GitStrategy::Clone
        };
        let git_strategy = match vars.value("GIT_STRATEGY").unwrap_or("") {
            "clone" => GitStrategy::Clone,
            "fetch" => GitStrategy::Fetch,
            "none" => GitStrategy::None,
            "empty" => GitStrategy::Empty,
            "" => default_strategy,
            other => {
                warnings.push(format!(
                    "GIT_STRATEGY {other:?} is not one of clone, fetch, none, empty; using the default \
                     ({}). Fix the variable in .gitlab-ci.yml",
                    if allow_git_fetch { "fetch" } else { "clone" }
                ));
                default_strategy
            }
        };

        let submodule_strategy = match vars.value("GIT_SUBMODULE_STRATEGY").unwrap_or("") {
            "" | "none" => SubmoduleStrategy::None,
            "normal" => SubmoduleStrategy::Normal,
            "recursive" => SubmoduleStrategy::Recursive,
            other => {
                warnings.push(format!(
                    "GIT_SUBMODULE_STRATEGY {other:?} is not one of none, normal, recursive; \
                     submodules are not set up"
                ));
                SubmoduleStrategy::None
            }
        };

        // As gitlab-runner: no sources, no submodules.
        let submodule_strategy = match git_strategy {
            GitStrategy::None | GitStrategy::Empty => SubmoduleStrategy::None,
            _ => submodule_strategy,
        };
        let submodule_paths: Vec<String> = vars
            .value("GIT_SUBMODULE_PATHS")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let submodule_depth = match vars.value("GIT_SUBMODULE_DEPTH").map(str::trim) {
            None | Some("") => None,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) => Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
                Err(_) => {
                    warnings.push(format!(
                        "GIT_SUBMODULE_DEPTH={raw:?} is not a number; using the job's git depth"
                    ));
                    None
                }
            },
        };
        let mut boolean = |name: &str, default: bool| -> bool {
            match vars.value(name).map(str::trim) {
                None | Some("") => default,
                Some(raw) => parse_bool(raw).unwrap_or_else(|| {
                    warnings.push(format!(
                        "{name}={raw:?} is not true or false; using {default}"
                    ));
                    default
                }),
            }
        };
        let submodule_force_https = boolean("GIT_SUBMODULE_FORCE_HTTPS", false);
        let lfs_skip_smudge = boolean("GIT_LFS_SKIP_SMUDGE", false);

        let cache_request_timeout_minutes = match vars.value("CACHE_REQUEST_TIMEOUT").map(str::trim)
        {
            None | Some("") => DEFAULT_CACHE_REQUEST_TIMEOUT_MINUTES,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!(
                        "CACHE_REQUEST_TIMEOUT={raw:?} is not a positive number of minutes; using \
                         {DEFAULT_CACHE_REQUEST_TIMEOUT_MINUTES}"
                    ));
                    DEFAULT_CACHE_REQUEST_TIMEOUT_MINUTES
                }
            },
        };

        let mut attempts = |name: &str| -> u32 {
            let Some(raw) = vars.value(name).filter(|s| !s.is_empty()) else {
                return 1;
            };
            match raw.trim().parse::<i64>() {
                Ok(n) if (1..=10).contains(&n) => n as u32,
                Ok(n) => {
                    let clamped = n.clamp(1, 10) as u32;
                    warnings.push(format!("{name}={n} is outside 1–10; using {clamped}"));
                    clamped
                }
                Err(_) => {
                    warnings.push(format!("{name}={raw:?} is not a number; using 1"));
                    1
                }
            }
        };
        let get_sources_attempts = attempts("GET_SOURCES_ATTEMPTS");
        let restore_cache_attempts = attempts("RESTORE_CACHE_ATTEMPTS");
        let artifact_download_attempts = attempts("ARTIFACT_DOWNLOAD_ATTEMPTS");

        let mut duration = |name: &str| -> Option<Duration> {
            let raw = vars.value(name).filter(|s| !s.is_empty())?;
            match parse_go_duration(raw) {
                Some(d) => Some(d),
                None => {
                    warnings.push(format!(
                        "{name}={raw:?} is not a duration; write it like 30s, 10m or 1h30m. Ignored"
                    ));
                    None
                }
            }
        };
        let script_timeout = duration("RUNNER_SCRIPT_TIMEOUT").filter(|d| !d.is_zero());
        let after_script_timeout = duration("RUNNER_AFTER_SCRIPT_TIMEOUT")
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_AFTER_SCRIPT_TIMEOUT);

        for bad in vars
            .iter()
            .map(|v| v.key.as_str())
            .filter(|k| !is_valid_name(k))
        {
            let warning = format!(
                "variable {bad:?} is not a valid shell variable name (letters, digits and _, not \
                 starting with a digit), so the job's scripts cannot see it; rename it"
            );
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }

        Self {
            debug_trace: debug_requested && !ctx.debug_trace_disabled,
            git_strategy,
            git_checkout: vars.bool("GIT_CHECKOUT").unwrap_or(true),
            git_clean_flags: flags(vars.value("GIT_CLEAN_FLAGS"), "-ffdx"),
            git_fetch_extra_flags: flags(
                vars.value("GIT_FETCH_EXTRA_FLAGS"),
                &crate::sources::DEFAULT_FETCH_FLAGS.join(" "),
            ),
            submodule_strategy,
            submodule_depth,
            submodule_paths,
            submodule_update_flags: flags(vars.value("GIT_SUBMODULE_UPDATE_FLAGS"), ""),
            submodule_force_https,
            lfs_skip_smudge,
            get_sources_attempts,
            restore_cache_attempts,
            artifact_download_attempts,
            script_timeout,
            after_script_timeout,
            after_script_ignore_errors: vars.bool("AFTER_SCRIPT_IGNORE_ERRORS").unwrap_or(true),
            cache_request_timeout_minutes,
            hash_cache_keys: flag("FF_HASH_CACHE_KEYS"),
            clean_up_failed_cache_extract: flag("FF_CLEAN_UP_FAILED_CACHE_EXTRACT"),
            bash_exit_code_check: flag("FF_ENABLE_BASH_EXIT_CODE_CHECK"),
            bash_eval_subshell: flag("FF_USE_NEW_BASH_EVAL_STRATEGY"),
            bash_legacy_eval: flag("FF_USE_LEGACY_BASH_EVAL"),
            script_sections: flag("FF_SCRIPT_SECTIONS"),
            stage_retry_backoff: vars
                .bool("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY")
                .unwrap_or(true),
            warnings,
        }
    }
}

/// Whitespace-separated flags; unset or empty = `default`, `none` = no flags.
fn flags(value: Option<&str>, default: &str) -> Vec<String> {
    let value = match value.map(str::trim) {
        None | Some("") => default,
        Some("none") => "",
        Some(v) => v,
    };
    value.split_whitespace().map(str::to_owned).collect()
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h` (`1h30m`, `1.5h`, `300ms`); `0` alone is allowed. Negative durations are refused.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A duration the way Go's `time.Duration.String` prints it (`1h0m0s`, `2m30s`, `5s`, `1.5s`,
/// `300ms`), for gitlab-runner's familiar timeout message.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_nanos();
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let digits = format!("{frac:09}");
        format!("{s}.{}s", digits.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)], allow_fetch: bool, ctx: &RunnerContext) -> JobSettings {
        let mut v = Variables::new();
        for (k, val) in pairs {
            v.add(k, *val);
        }
        JobSettings::from_variables(&v, allow_fetch, ctx)
    }

    #[test]
    fn defaults() {
        let s = settings(&[], true, &RunnerContext::default());
        assert_eq!(s.git_strategy, GitStrategy::Fetch);
        assert!(s.git_checkout);
        assert_eq!(s.git_clean_flags, ["-ffdx"]);
        assert_eq!(s.git_fetch_extra_flags, ["--prune", "--quiet"]);
        assert_eq!(s.get_sources_attempts, 1);
        assert_eq!(s.script_timeout, None);
        assert_eq!(s.after_script_timeout, Duration::from_secs(300));
        assert!(s.after_script_ignore_errors);
        assert!(!s.debug_trace);
        assert!(s.stage_retry_backoff);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let s = settings(&[], false, &RunnerContext::default());
        assert_eq!(s.git_strategy, GitStrategy::Clone);
    }

    #[test]
    fn values_are_read_and_bad_ones_warned_about() {
        let s = settings(
            &[
                ("GIT_STRATEGY", "none"),
                ("GIT_CHECKOUT", "false"),
                ("GIT_CLEAN_FLAGS", "none"),
                ("GIT_FETCH_EXTRA_FLAGS", "--no-tags"),
                ("GET_SOURCES_ATTEMPTS", "25"),
                ("RESTORE_CACHE_ATTEMPTS", "0"),
                ("ARTIFACT_DOWNLOAD_ATTEMPTS", "many"),
                ("RUNNER_SCRIPT_TIMEOUT", "1h30m"),
                ("RUNNER_AFTER_SCRIPT_TIMEOUT", "soon"),
                ("AFTER_SCRIPT_IGNORE_ERRORS", "false"),
                ("CI_DEBUG_TRACE", "true"),
                ("MY-VAR", "x"),
            ],
            true,
            &RunnerContext::default(),
        );
        assert_eq!(s.git_strategy, GitStrategy::None);
        assert!(!s.git_checkout);
        assert!(s.git_clean_flags.is_empty());
        assert_eq!(s.git_fetch_extra_flags, ["--no-tags"]);
        assert_eq!(s.get_sources_attempts, 10);
        assert_eq!(s.restore_cache_attempts, 1);
        assert_eq!(s.artifact_download_attempts, 1);
        assert_eq!(s.script_timeout, Some(Duration::from_secs(5400)));
        assert_eq!(s.after_script_timeout, DEFAULT_AFTER_SCRIPT_TIMEOUT);
        assert!(!s.after_script_ignore_errors);
        assert!(s.debug_trace);
        assert_eq!(s.warnings.len(), 5, "{:#?}", s.warnings);
        assert!(s.warnings.iter().any(|w| w.contains("MY-VAR")));
    }

    #[test]
    fn debug_trace_refused_when_disabled() {
        let ctx = RunnerContext {
            debug_trace_disabled: true,
            ..RunnerContext::default()
        };
        let s = settings(&[("CI_DEBUG_TRACE", "true")], true, &ctx);
        assert!(!s.debug_trace);
        assert!(s.warnings[0].contains("disabled"), "{:?}", s.warnings);
    }

    #[test]
    fn unknown_strategy_falls_back_with_a_warning() {
        let s = settings(
            &[("GIT_STRATEGY", "copy")],
            false,
            &RunnerContext::default(),
        );
        assert_eq!(s.git_strategy, GitStrategy::Clone);
        assert!(s.warnings[0].contains("copy"));
    }

    #[test]
    fn go_durations() {
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        assert_eq!(parse_go_duration("30s"), secs(30.0));
        assert_eq!(parse_go_duration("1h30m"), secs(5400.0));
        assert_eq!(parse_go_duration("1.5h"), secs(5400.0));
        assert_eq!(parse_go_duration("300ms"), secs(0.3));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-5s"), None);
        assert_eq!(parse_go_duration("5d"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(format_go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }
}
