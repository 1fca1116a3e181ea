//! Images and pull policies: the build image (the job's, else `image`), `allowed_images` and
//! `allowed_services`, pull policies (the job's when `allowed_pull_policies` permits them, else
//! `pull_policy`), the helper image and the user a job's image may ask to run as.
//!
//! The helper image is the glrunner image itself (design decision 8: manager and helper share one
//! image and version). [`DEFAULT_HELPER_IMAGE`] names it; `helper_image` in `[runners.kubernetes]`
//! overrides it per runner, and packagers can change the default at build time with the
//! `GLRUNNER_HELPER_IMAGE` environment variable. A pinned helper image (a version tag or a digest) is
//! pulled `IfNotPresent`, so busy nodes do not hit the registry (and the kubelet's pull rate limit) for
//! every job.

use super::error::SpecError;
use crate::names::is_pinned_image;
use glrunner_config::KubernetesConfig;
use glrunner_config::kubernetes::PullPolicy;
use glrunner_job::Variables;
use glrunner_protocol::Image;

/// The default helper image: the glrunner image of this very version.
pub const DEFAULT_HELPER_IMAGE: &str = match option_env!("GLRUNNER_HELPER_IMAGE") {
    Some(image) => image,
    None => concat!("registry.example/glrunner:", env!("CARGO_PKG_VERSION")),
};

/// A pull policy as the payload spells it.
pub fn parse_pull_policy(source: &str, value: &str) -> Result<PullPolicy, SpecError> {
    match value.trim() {
        "always" => Ok(PullPolicy::Always),
        "if-not-present" => Ok(PullPolicy::IfNotPresent),
        "never" => Ok(PullPolicy::Never),
        other => Err(SpecError::UnknownPullPolicy {
            source_name: source.to_owned(),
            value: other.to_owned(),
        }),
    }
}

fn names(policies: &[PullPolicy]) -> String {
    if policies.is_empty() {
        return "(none)".to_owned();
    }
    policies
        .iter()
        .map(|p| match p {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pull policies for a job image or service, in fallback order; empty means Kubernetes' default.
pub fn pull_policies(
    config: &KubernetesConfig,
    image: Option<&Image>,
    source: &str,
) -> Result<Vec<PullPolicy>, SpecError> {
    let requested = image
        .map(|i| {
            i.pull_policy
                .iter()
                .map(|p| parse_pull_policy(source, p))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    if requested.is_empty() {
        return Ok(config.pull_policies().to_vec());
    }
    let allowed = if config.allowed_pull_policies.is_empty() {
        config.pull_policies()
    } else {
        &config.allowed_pull_policies
    };
    if !allowed.is_empty() && requested.iter().any(|p| !allowed.contains(p)) {
        return Err(SpecError::PullPolicyNotAllowed {
            requested: names(&requested),
            allowed: names(allowed),
        });
    }
    Ok(requested)
}

/// The helper image and its pull policies.
pub fn helper(config: &KubernetesConfig, vars: &Variables) -> (String, Vec<PullPolicy>) {
    let image = config
        .helper_image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .map_or_else(
            || DEFAULT_HELPER_IMAGE.to_owned(),
            |i| vars.expand_value(i.trim()),
        );
    let policies = if is_pinned_image(&image) {
        vec![PullPolicy::IfNotPresent]
    } else {
        config.pull_policies().to_vec()
    };
    (image, policies)
}

/// Checks images against `allowed_images` or `allowed_services` glob patterns (`*` stays within one
/// path segment, `**` crosses them).
pub struct Allowed {
    key: &'static str,
    patterns: Vec<String>,
    set: Option<globset::GlobSet>,
}

impl Allowed {
    pub fn new(key: &'static str, patterns: &[String]) -> Result<Self, SpecError> {
        if patterns.is_empty() {
            return Ok(Self {
                key,
                patterns: Vec::new(),
                set: None,
            });
        }
        let mut builder = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| SpecError::Glob {
                    key: key.to_owned(),
                    pattern: p.clone(),
                    problem: e.kind().to_string(),
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| SpecError::Glob {
            key: key.to_owned(),
            pattern: patterns.join(", "),
            problem: e.to_string(),
        })?;
        Ok(Self {
            key,
            patterns: patterns.to_vec(),
            set: Some(set),
        })
    }

    pub fn check(&self, what: &str, image: &str) -> Result<(), SpecError> {
        match &self.set {
            Some(set) if !set.is_match(image) => Err(SpecError::ImageNotAllowed {
                what: what.to_owned(),
                image: image.to_owned(),
                key: self.key.to_owned(),
                patterns: self.patterns.join(", "),
            }),
            _ => Ok(()),
        }
    }
}

/// The build image: the job's (checked against `allowed_images`) or the configured default, both
/// variable-expanded.
pub fn build_image(
    config: &KubernetesConfig,
    job_image: Option<&Image>,
    vars: &Variables,
) -> Result<String, SpecError> {
    if let Some(image) = job_image.filter(|i| !i.name.trim().is_empty()) {
        let name = vars.expand_value(image.name.trim());
        Allowed::new("allowed_images", &config.allowed_images)?.check("image", &name)?;
        return Ok(name);
    }
    config
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .map(|i| vars.expand_value(i.trim()))
        .ok_or(SpecError::NoImage)
}

/// The user and group the job's image asks for (`image: docker: user:` in .gitlab-ci.yml arrives as
/// `executor_opts.kubernetes.user`): `uid` or `uid:gid`, numeric. When `allowed_users`
/// (`allowed_groups`) is set the id must be in it; when it is not set but
/// `build_container_security_context` pins `run_as_user` (`run_as_group`), the job may not change it.
pub fn job_user(
    config: &KubernetesConfig,
    image: Option<&Image>,
) -> Result<(Option<i64>, Option<i64>), SpecError> {
    let Some(user) = image
        .and_then(|i| i.executor_opts.get("kubernetes"))
        .and_then(|k| k.get("user"))
        .and_then(|u| u.as_str())
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok((None, None));
    };
    let err = |problem: String| SpecError::JobUser {
        value: user.to_owned(),
        problem,
    };
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let parse = |s: &str, what: &str| {
        s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            err(format!(
                "the {what} {s:?} is not a number; Kubernetes cannot look names up in the image. Write \
                 `user: \"1000:1000\"` under the job's `image: kubernetes:` options"
            ))
        })
    };
    let pinned = config.build_container_security_context.as_ref();
    let check = |id: i64, allowed: &[String], pinned: Option<i64>, key: &str, what: &str| {
        if allowed.is_empty() {
            if pinned.is_some_and(|p| p != id) {
                return Err(err(format!(
                    "[runners.kubernetes] pins the build container's {what} and `{key}` is empty, so jobs \
                     may not change it. Add {id} to `{key}` in config.toml, or remove the user from the job"
                )));
            }
            return Ok(());
        }
        if allowed.iter().any(|a| a.trim() == id.to_string()) {
            Ok(())
        } else {
            Err(err(format!(
                "{what} {id} is not in `{key}` = {allowed:?} in [runners.kubernetes]. Use an allowed id in \
                 the job, or add it to `{key}` in config.toml"
            )))
        }
    };
    let uid = parse(uid, "user id")?;
    check(
        uid,
        &config.allowed_users,
        pinned.and_then(|p| p.run_as_user),
        "allowed_users",
        "user",
    )?;
    let gid = match gid {
        Some(g) => {
            let gid = parse(g, "group id")?;
            check(
                gid,
                &config.allowed_groups,
                pinned.and_then(|p| p.run_as_group),
                "allowed_groups",
                "group",
            )?;
            Some(gid)
        }
        None => None,
    };
    Ok((Some(uid), gid))
}
