//! Where and as whom the pod runs: namespace, service account, node selector, tolerations, affinity,
//! DNS and host aliases, with the job overwrites `[runners.kubernetes]` allows.
//!
//! Overwrite patterns (`*_overwrite_allowed`) must match the whole value; gitlab-runner matches them
//! anywhere in it, so `ci-` there also allowed `prod-ci-x`. A job overwrite that the configuration
//! does not allow at all is ignored with a warning.

use super::error::SpecError;
use crate::names::{is_dns_label, is_dns_subdomain, is_label_value, label_key_problem};
use glrunner_config::KubernetesConfig;
use glrunner_config::kubernetes as cfg;
use glrunner_job::Variables;
use k8s_openapi::api::core::v1::{
    Affinity, HostAlias, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PodAffinity, PodAffinityTerm, PodAntiAffinity, PodDNSConfig, PodDNSConfigOption,
    PreferredSchedulingTerm, Toleration, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The job variable that picks another namespace.
pub const NAMESPACE_OVERWRITE: &str = "KUBERNETES_NAMESPACE_OVERWRITE";
/// The job variable that picks another service account.
pub const SERVICE_ACCOUNT_OVERWRITE: &str = "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE";
pub const NODE_SELECTOR_PREFIX: &str = "KUBERNETES_NODE_SELECTOR_";
pub const NODE_TOLERATIONS_PREFIX: &str = "KUBERNETES_NODE_TOLERATIONS_";

/// Checks job overwrites against a `*_overwrite_allowed` pattern.
pub struct Overwrite<'a> {
    key: &'static str,
    pattern: Option<&'a str>,
    regex: Option<regex::Regex>,
}

impl<'a> Overwrite<'a> {
    pub fn new(key: &'static str, pattern: Option<&'a str>) -> Result<Self, SpecError> {
        let pattern = pattern.filter(|p| !p.is_empty());
        let regex =
            match pattern {
                Some(p) => Some(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    SpecError::Regex {
                        key: key.to_owned(),
                        pattern: p.to_owned(),
                        problem: e.to_string(),
                    }
                })?),
                None => None,
            };
        Ok(Self {
            key,
            pattern,
            regex,
        })
    }

    /// `Ok(true)` when `value` may be used, `Ok(false)` when overwrites are off (a warning is added).
    pub fn check(
        &self,
        variable: &str,
        value: &str,
        shown: &str,
        warnings: &mut Vec<String>,
    ) -> Result<bool, SpecError> {
        match (&self.regex, self.pattern) {
            (Some(re), _) if re.is_match(value) => Ok(true),
            (Some(_), Some(pattern)) => Err(SpecError::OverwriteNotAllowed {
                variable: variable.to_owned(),
                value: shown.to_owned(),
                key: self.key.to_owned(),
                pattern: pattern.to_owned(),
            }),
            _ => {
                warnings.push(format!(
                    "the job sets {variable} but `{}` is not set in [runners.kubernetes], so it was \
                     ignored; set `{}` to a pattern of the values jobs may choose",
                    self.key, self.key
                ));
                Ok(false)
            }
        }
    }
}

/// Job variables whose name starts with `prefix`, in order (last one per name wins).
fn prefixed<'v>(vars: &'v Variables, prefix: &str) -> Vec<(&'v str, &'v str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for v in vars.iter().filter(|v| v.key.starts_with(prefix)) {
        out.retain(|(k, _)| *k != v.key);
        out.push((&v.key, &v.value));
    }
    out
}

/// `prefix` job variables of the form `key=value` that `key`'s overwrite pattern allows, as
/// (variable, key, value) in order; one that is not `key=value` is an error, one not allowed by the
/// pattern too (or a warning when overwrites are off).
pub fn overwrite_pairs<'v>(
    vars: &'v Variables,
    prefix: &str,
    key: &'static str,
    pattern: Option<&str>,
    redact: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Vec<(&'v str, &'v str, &'v str)>, SpecError> {
    let overwrites = prefixed(vars, prefix);
    if overwrites.is_empty() {
        return Ok(Vec::new());
    }
    let o = Overwrite::new(key, pattern)?;
    let mut out = Vec::new();
    for (variable, value) in overwrites {
        let shown = redact(value);
        let Some((k, v)) = value.split_once('=') else {
            return Err(SpecError::OverwriteFormat {
                variable: variable.to_owned(),
                value: shown,
                expected: "key=value".into(),
            });
        };
        if o.check(variable, value, &shown, warnings)? {
            out.push((variable, k, v));
        }
    }
    Ok(out)
}

/// The namespace: `ci-job-<id>` with `namespace_per_job`, else the allowed overwrite, else the
/// configured one (`default` when unset).
pub fn namespace(
    config: &KubernetesConfig,
    vars: &Variables,
    job_id: i64,
    warnings: &mut Vec<String>,
) -> Result<String, SpecError> {
    if config.namespace_per_job == Some(true) {
        return Ok(format!("ci-job-{job_id}"));
    }
    let mut ns = config.namespace().to_owned();
    let mut source = "`namespace` in [runners.kubernetes]".to_owned();
    if let Some(wanted) = vars.value(NAMESPACE_OVERWRITE).filter(|v| !v.is_empty()) {
        let o = Overwrite::new(
            "namespace_overwrite_allowed",
            config.namespace_overwrite_allowed.as_deref(),
        )?;
        if o.check(NAMESPACE_OVERWRITE, wanted, wanted, warnings)? {
            ns = wanted.to_owned();
            source = format!("the job variable {NAMESPACE_OVERWRITE}");
        }
    }
    if !is_dns_label(&ns) {
        return Err(SpecError::Name {
            what: "namespace".into(),
            value: ns,
            source_name: source,
            problem: "namespaces are lower-case DNS labels (letters, digits and `-`, at most 63)"
                .into(),
        });
    }
    Ok(ns)
}

/// The service account, if any.
pub fn service_account(
    config: &KubernetesConfig,
    vars: &Variables,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, SpecError> {
    let mut sa = config.service_account.clone().filter(|s| !s.is_empty());
    let mut source = "`service_account` in [runners.kubernetes]".to_owned();
    if let Some(wanted) = vars
        .value(SERVICE_ACCOUNT_OVERWRITE)
        .filter(|v| !v.is_empty())
    {
        let o = Overwrite::new(
            "service_account_overwrite_allowed",
            config.service_account_overwrite_allowed.as_deref(),
        )?;
        if o.check(SERVICE_ACCOUNT_OVERWRITE, wanted, wanted, warnings)? {
            sa = Some(wanted.to_owned());
            source = format!("the job variable {SERVICE_ACCOUNT_OVERWRITE}");
        }
    }
    if let Some(name) = &sa
        && !is_dns_subdomain(name)
    {
        return Err(SpecError::Name {
            what: "service account".into(),
            value: name.clone(),
            source_name: source,
            problem: "service account names are lower-case DNS names".into(),
        });
    }
    Ok(sa)
}

fn check_label(source: &str, key: &str, value: &str) -> Result<(), SpecError> {
    let problem = label_key_problem(key).map(str::to_owned).or_else(|| {
        (!is_label_value(value)).then(|| {
            "the value must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a \
             letter or digit"
                .to_owned()
        })
    });
    match problem {
        Some(problem) => Err(SpecError::Label {
            source_name: source.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// `node_selector` plus allowed `KUBERNETES_NODE_SELECTOR_*` (`key=value`) overwrites.
pub fn node_selector(
    config: &KubernetesConfig,
    vars: &Variables,
    redact: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Option<BTreeMap<String, String>>, SpecError> {
    let mut out = BTreeMap::new();
    for (k, v) in &config.node_selector {
        check_label("`node_selector` in [runners.kubernetes]", k, v)?;
        out.insert(k.clone(), v.clone());
    }
    for (variable, k, v) in overwrite_pairs(
        vars,
        NODE_SELECTOR_PREFIX,
        "node_selector_overwrite_allowed",
        config.node_selector_overwrite_allowed.as_deref(),
        redact,
        warnings,
    )? {
        check_label(&format!("the job variable {variable}"), k, v)?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok((!out.is_empty()).then_some(out))
}

fn toleration(key: &str, effect: &str) -> Result<Toleration, SpecError> {
    let err = |problem: &str| SpecError::Toleration {
        key: key.to_owned(),
        effect: effect.to_owned(),
        problem: problem.to_owned(),
    };
    let effect = match effect.trim() {
        "" => None,
        e @ ("NoSchedule" | "PreferNoSchedule" | "NoExecute") => Some(e.to_owned()),
        _ => {
            return Err(err(
                "the effect must be NoSchedule, PreferNoSchedule, NoExecute or empty",
            ));
        }
    };
    let (k, value, operator) = match key.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned()), "Equal"),
        None => (key, None, "Exists"),
    };
    if !k.is_empty() && label_key_problem(k).is_some() {
        return Err(err("the key is not a valid taint key"));
    }
    Ok(Toleration {
        key: (!k.is_empty()).then(|| k.to_owned()),
        operator: Some(operator.to_owned()),
        value,
        effect,
        toleration_seconds: None,
    })
}

/// `node_tolerations` plus allowed `KUBERNETES_NODE_TOLERATIONS_*` (`key=value:Effect`) overwrites,
/// which replace a configured toleration with the same key.
pub fn tolerations(
    config: &KubernetesConfig,
    vars: &Variables,
    redact: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<Toleration>>, SpecError> {
    let mut entries: Vec<(String, String)> = config
        .node_tolerations
        .iter()
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    let overwrites = prefixed(vars, NODE_TOLERATIONS_PREFIX);
    if !overwrites.is_empty() {
        let o = Overwrite::new(
            "node_tolerations_overwrite_allowed",
            config.node_tolerations_overwrite_allowed.as_deref(),
        )?;
        for (variable, value) in overwrites {
            if o.check(variable, value, &redact(value), warnings)? {
                let (k, e) = value.split_once(':').unwrap_or((value, ""));
                let taint_key = |s: &str| s.split('=').next().unwrap_or_default().to_owned();
                entries.retain(|(existing, _)| taint_key(existing) != taint_key(k));
                entries.push((k.to_owned(), e.to_owned()));
            }
        }
    }
    let out = entries
        .iter()
        .map(|(k, e)| toleration(k, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!out.is_empty()).then_some(out))
}

fn requirement(r: &cfg::SelectorRequirement) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: r.key.clone(),
        operator: r.operator.clone(),
        values: (!r.values.is_empty()).then(|| r.values.clone()),
    }
}

fn node_term(t: &cfg::NodeSelectorTerm) -> NodeSelectorTerm {
    let list = |v: &Vec<cfg::SelectorRequirement>| {
        (!v.is_empty()).then(|| v.iter().map(requirement).collect())
    };
    NodeSelectorTerm {
        match_expressions: list(&t.match_expressions),
        match_fields: list(&t.match_fields),
    }
}

fn label_selector(s: &Option<cfg::LabelSelector>) -> Option<LabelSelector> {
    let s = s.as_ref()?;
    Some(LabelSelector {
        match_labels: (!s.match_labels.is_empty()).then(|| s.match_labels.clone()),
        match_expressions: (!s.match_expressions.is_empty()).then(|| {
            s.match_expressions
                .iter()
                .map(|r| LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: r.operator.clone(),
                    values: (!r.values.is_empty()).then(|| r.values.clone()),
                })
                .collect()
        }),
    })
}

fn pod_term(t: &cfg::PodAffinityTerm) -> PodAffinityTerm {
    let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    PodAffinityTerm {
        label_selector: label_selector(&t.label_selector),
        namespaces: opt(&t.namespaces),
        topology_key: t.topology_key.clone().unwrap_or_default(),
        namespace_selector: label_selector(&t.namespace_selector),
        match_label_keys: opt(&t.match_label_keys),
        mismatch_label_keys: opt(&t.mismatch_label_keys),
    }
}

fn pod_affinity_parts(
    p: &cfg::PodAffinity,
) -> (
    Option<Vec<WeightedPodAffinityTerm>>,
    Option<Vec<PodAffinityTerm>>,
) {
    let preferred = (!p
        .preferred_during_scheduling_ignored_during_execution
        .is_empty())
    .then(|| {
        p.preferred_during_scheduling_ignored_during_execution
            .iter()
            .map(|w| WeightedPodAffinityTerm {
                weight: w.weight,
                pod_affinity_term: pod_term(&w.pod_affinity_term),
            })
            .collect()
    });
    let required = (!p
        .required_during_scheduling_ignored_during_execution
        .is_empty())
    .then(|| {
        p.required_during_scheduling_ignored_during_execution
            .iter()
            .map(pod_term)
            .collect()
    });
    (preferred, required)
}

/// `[runners.kubernetes.affinity]`.
pub fn affinity(config: &KubernetesConfig) -> Option<Affinity> {
    let a = config.affinity.as_ref()?;
    let node_affinity = a.node_affinity.as_ref().map(|n| NodeAffinity {
        required_during_scheduling_ignored_during_execution: n
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .map(|s| NodeSelector {
                node_selector_terms: s.node_selector_terms.iter().map(node_term).collect(),
            }),
        preferred_during_scheduling_ignored_during_execution: (!n
            .preferred_during_scheduling_ignored_during_execution
            .is_empty())
        .then(|| {
            n.preferred_during_scheduling_ignored_during_execution
                .iter()
                .map(|p| PreferredSchedulingTerm {
                    weight: p.weight,
                    preference: node_term(&p.preference),
                })
                .collect()
        }),
    });
    let pod_affinity = a.pod_affinity.as_ref().map(|p| {
        let (preferred, required) = pod_affinity_parts(p);
        PodAffinity {
            preferred_during_scheduling_ignored_during_execution: preferred,
            required_during_scheduling_ignored_during_execution: required,
        }
    });
    let pod_anti_affinity = a.pod_anti_affinity.as_ref().map(|p| {
        let (preferred, required) = pod_affinity_parts(p);
        PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: preferred,
            required_during_scheduling_ignored_during_execution: required,
        }
    });
    Some(Affinity {
        node_affinity,
        pod_affinity,
        pod_anti_affinity,
    })
}

/// `dns_policy` and `dns_config`.
pub fn dns(config: &KubernetesConfig) -> Result<(Option<String>, Option<PodDNSConfig>), SpecError> {
    let policy = config.dns_policy;
    let dns_config = config.dns_config.as_ref().map(|d| PodDNSConfig {
        nameservers: (!d.nameservers.is_empty()).then(|| d.nameservers.clone()),
        searches: (!d.searches.is_empty()).then(|| d.searches.clone()),
        options: (!d.options.is_empty()).then(|| {
            d.options
                .iter()
                .map(|o| PodDNSConfigOption {
                    name: Some(o.name.clone()),
                    value: o.value.clone(),
                })
                .collect()
        }),
    });
    if policy == Some(cfg::DnsPolicy::None)
        && dns_config
            .as_ref()
            .and_then(|d| d.nameservers.as_ref())
            .is_none()
    {
        return Err(SpecError::DnsNoneWithoutNameservers);
    }
    Ok((policy.map(|p| p.as_kubernetes().to_owned()), dns_config))
}

/// `127.0.0.1` → the service names, merged with `[[runners.kubernetes.host_aliases]]`: one entry per
/// IP, each host name once.
pub fn host_aliases(
    config: &KubernetesConfig,
    service_names: &[String],
) -> Result<Option<Vec<HostAlias>>, SpecError> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |ip: &str, name: &str| {
        let i = match entries.iter().position(|(existing, _)| existing == ip) {
            Some(i) => i,
            None => {
                entries.push((ip.to_owned(), Vec::new()));
                entries.len() - 1
            }
        };
        if !entries[i].1.iter().any(|n| n == name) {
            entries[i].1.push(name.to_owned());
        }
    };
    for name in service_names {
        add("127.0.0.1", name);
    }
    for alias in &config.host_aliases {
        let ip: IpAddr = alias.ip.trim().parse().map_err(|_| SpecError::HostAlias {
            value: alias.ip.clone(),
            problem: "`ip` is not an IPv4 or IPv6 address".into(),
        })?;
        if alias.hostnames.is_empty() {
            return Err(SpecError::HostAlias {
                value: alias.ip.clone(),
                problem: "`hostnames` is empty; list the names that should resolve to this address"
                    .into(),
            });
        }
        for h in &alias.hostnames {
            if !is_dns_subdomain(h) {
                return Err(SpecError::HostAlias {
                    value: h.clone(),
                    problem: "host names must be lower-case DNS names such as gitlab.internal"
                        .into(),
                });
            }
            add(&ip.to_string(), h);
        }
    }
    Ok((!entries.is_empty()).then(|| {
        entries
            .into_iter()
            .map(|(ip, hostnames)| HostAlias {
                ip,
                hostnames: Some(hostnames),
            })
            .collect()
    }))
}
