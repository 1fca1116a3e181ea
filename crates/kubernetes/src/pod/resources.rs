//! Requests and limits of the build, helper and service containers and of the pod, with the job's
//! `KUBERNETES_*` overwrites. An overwrite is honoured only when its `*_overwrite_max_allowed` is set
//! and the value is at most that maximum (compared as quantities); above the maximum the job fails
//! with the fix, without a maximum it is ignored with a warning (gitlab-runner ignores it silently).

use super::error::SpecError;
use crate::quantity::Quantity;
use glrunner_config::KubernetesConfig;
use glrunner_job::Variables;
use k8s_openapi::api::core::v1::ResourceRequirements;
use std::collections::BTreeMap;

/// Whose resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Build,
    Helper,
    Service,
    Pod,
}

impl Target {
    fn prefix(self) -> &'static str {
        match self {
            Target::Build => "",
            Target::Helper => "helper_",
            Target::Service => "service_",
            Target::Pod => "pod_",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Target::Build => "build container's",
            Target::Helper => "helper container's",
            Target::Service => "service containers'",
            Target::Pod => "pod's",
        }
    }
}

/// One configurable amount: `<prefix><resource>_<request|limit>`.
struct Setting<'a> {
    resource: &'static str,
    limit: bool,
    value: Option<&'a str>,
    max: Option<&'a str>,
}

fn settings(c: &KubernetesConfig, t: Target) -> Vec<Setting<'_>> {
    fn s<'c>(
        resource: &'static str,
        limit: bool,
        value: &'c Option<String>,
        max: &'c Option<String>,
    ) -> Setting<'c> {
        Setting {
            resource,
            limit,
            value: value.as_deref(),
            max: max.as_deref(),
        }
    }
    match t {
        Target::Build => vec![
            s(
                "cpu",
                true,
                &c.cpu_limit,
                &c.cpu_limit_overwrite_max_allowed,
            ),
            s(
                "cpu",
                false,
                &c.cpu_request,
                &c.cpu_request_overwrite_max_allowed,
            ),
            s(
                "memory",
                true,
                &c.memory_limit,
                &c.memory_limit_overwrite_max_allowed,
            ),
            s(
                "memory",
                false,
                &c.memory_request,
                &c.memory_request_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                true,
                &c.ephemeral_storage_limit,
                &c.ephemeral_storage_limit_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                false,
                &c.ephemeral_storage_request,
                &c.ephemeral_storage_request_overwrite_max_allowed,
            ),
        ],
        Target::Helper => vec![
            s(
                "cpu",
                true,
                &c.helper_cpu_limit,
                &c.helper_cpu_limit_overwrite_max_allowed,
            ),
            s(
                "cpu",
                false,
                &c.helper_cpu_request,
                &c.helper_cpu_request_overwrite_max_allowed,
            ),
            s(
                "memory",
                true,
                &c.helper_memory_limit,
                &c.helper_memory_limit_overwrite_max_allowed,
            ),
            s(
                "memory",
                false,
                &c.helper_memory_request,
                &c.helper_memory_request_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                true,
                &c.helper_ephemeral_storage_limit,
                &c.helper_ephemeral_storage_limit_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                false,
                &c.helper_ephemeral_storage_request,
                &c.helper_ephemeral_storage_request_overwrite_max_allowed,
            ),
        ],
        Target::Service => vec![
            s(
                "cpu",
                true,
                &c.service_cpu_limit,
                &c.service_cpu_limit_overwrite_max_allowed,
            ),
            s(
                "cpu",
                false,
                &c.service_cpu_request,
                &c.service_cpu_request_overwrite_max_allowed,
            ),
            s(
                "memory",
                true,
                &c.service_memory_limit,
                &c.service_memory_limit_overwrite_max_allowed,
            ),
            s(
                "memory",
                false,
                &c.service_memory_request,
                &c.service_memory_request_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                true,
                &c.service_ephemeral_storage_limit,
                &c.service_ephemeral_storage_limit_overwrite_max_allowed,
            ),
            s(
                "ephemeral-storage",
                false,
                &c.service_ephemeral_storage_request,
                &c.service_ephemeral_storage_request_overwrite_max_allowed,
            ),
        ],
        Target::Pod => vec![
            s(
                "cpu",
                true,
                &c.pod_cpu_limit,
                &c.pod_cpu_limit_overwrite_max_allowed,
            ),
            s(
                "cpu",
                false,
                &c.pod_cpu_request,
                &c.pod_cpu_request_overwrite_max_allowed,
            ),
            s(
                "memory",
                true,
                &c.pod_memory_limit,
                &c.pod_memory_limit_overwrite_max_allowed,
            ),
            s(
                "memory",
                false,
                &c.pod_memory_request,
                &c.pod_memory_request_overwrite_max_allowed,
            ),
        ],
    }
}

fn key(t: Target, resource: &str, limit: bool) -> String {
    format!(
        "{}{}_{}",
        t.prefix(),
        resource.replace('-', "_"),
        if limit { "limit" } else { "request" }
    )
}

/// Parse a quantity; errors show it through `redact` (a job variable could hold anything).
fn parse(key: &str, value: &str, redact: &dyn Fn(&str) -> String) -> Result<Quantity, SpecError> {
    Quantity::parse(value).map_err(|e| SpecError::Quantity {
        key: key.to_owned(),
        source_name: if key.starts_with("KUBERNETES_") {
            format!("the job variable {key}")
        } else {
            format!("`{key}` in [runners.kubernetes]")
        },
        value: redact(value),
        problem: redact(&e.to_string()),
    })
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The requirements of `target`, or `None` when nothing is set. `redact` hides secrets in values
/// shown in errors (a job variable could hold anything).
pub fn requirements(
    config: &KubernetesConfig,
    vars: &Variables,
    target: Target,
    redact: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Option<ResourceRequirements>, SpecError> {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for s in settings(config, target) {
        let key = key(target, s.resource, s.limit);
        let max_key = format!("{key}_overwrite_max_allowed");
        let variable = format!("KUBERNETES_{}", key.to_uppercase());
        let mut chosen = match non_empty(s.value) {
            Some(v) => Some(parse(&key, v, redact)?),
            None => None,
        };
        let max = match non_empty(s.max) {
            Some(m) => Some(parse(&max_key, m, redact)?),
            None => None,
        };
        if let Some(wanted) = non_empty(vars.value(&variable)) {
            let shown = redact(wanted);
            let wanted = parse(&variable, wanted, redact)?;
            match max {
                None => warnings.push(format!(
                    "the job sets {variable}={shown} but `{max_key}` is not set in [runners.kubernetes], \
                     so it was ignored; set `{max_key}` to allow overwrites up to that amount"
                )),
                Some(max) if wanted > max => {
                    return Err(SpecError::OverwriteAboveMax {
                        variable,
                        value: shown,
                        max_key,
                        max: max.to_string(),
                    });
                }
                Some(_) => chosen = Some(wanted),
            }
        }
        if let Some(q) = chosen {
            let map = if s.limit { &mut limits } else { &mut requests };
            map.insert(s.resource, q);
        }
    }
    for (resource, request) in &requests {
        if let Some(limit) = limits.get(resource)
            && request > limit
        {
            return Err(SpecError::RequestAboveLimit {
                what: format!("the {} {resource}", target.describe()),
                request: request.to_string(),
                limit: limit.to_string(),
                request_key: key(target, resource, false),
                limit_key: key(target, resource, true),
            });
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return Ok(None);
    }
    let convert = |m: BTreeMap<&str, Quantity>| {
        (!m.is_empty()).then(|| {
            m.into_iter()
                .map(|(k, q)| (k.to_owned(), q.to_kubernetes()))
                .collect()
        })
    };
    Ok(Some(ResourceRequirements {
        limits: convert(limits),
        requests: convert(requests),
        ..ResourceRequirements::default()
    }))
}
