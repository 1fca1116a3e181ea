//! Service containers: `[[runners.kubernetes.services]]` first, then the job's `services:`. Each is
//! named after its first alias that is a valid, unused container name (explicit aliases, then the
//! names derived from the image: `tutum/wordpress:latest` → `tutum-wordpress`), else `svc-<index>`;
//! every alias and derived name that is a valid host name resolves to 127.0.0.1 in the pod.

use super::error::SpecError;
use super::images::{Allowed, pull_policies};
use crate::names::{is_dns_label, is_dns_subdomain, service_aliases};
use glrunner_config::KubernetesConfig;
use glrunner_config::kubernetes::PullPolicy;
use glrunner_job::Variables;
use glrunner_protocol::{Image, Port};

/// One service, resolved.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub container: String,
    pub image: String,
    /// Host names (aliases and derived names) that reach it.
    pub hostnames: Vec<String>,
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    /// The service's own variables (name, expanded value), after the job's.
    pub variables: Vec<(String, String)>,
    pub ports: Vec<Port>,
    pub pull_policies: Vec<PullPolicy>,
}

/// Resolve every service; `taken` are container names already in use (build, helper, init).
pub fn resolve(
    config: &KubernetesConfig,
    job_services: &[Image],
    vars: &Variables,
    taken: &[&str],
) -> Result<Vec<ServiceSpec>, SpecError> {
    let allowed = Allowed::new("allowed_services", &config.allowed_services)?;
    let mut used: Vec<String> = taken.iter().map(|s| (*s).to_owned()).collect();
    let mut out = Vec::new();
    let config_services = config.services.iter().map(|s| {
        let variables = s
            .environment
            .pairs()
            .map(|(k, v)| (k.to_owned(), vars.expand_value(v)))
            .collect();
        (
            Image {
                name: s.name.clone(),
                alias: s.alias.clone(),
                command: s.command.clone(),
                entrypoint: s.entrypoint.clone(),
                ..Image::default()
            },
            variables,
            false,
        )
    });
    let job = job_services.iter().map(|s| {
        let variables = s
            .variables
            .iter()
            .map(|v| {
                let value = if v.raw {
                    v.value.clone()
                } else {
                    vars.expand_value(&v.value)
                };
                (v.key.clone(), value)
            })
            .collect();
        (s.clone(), variables, true)
    });
    for (index, (image, variables, from_job)) in config_services.chain(job).enumerate() {
        let name = vars.expand_value(image.name.trim());
        if name.is_empty() {
            continue;
        }
        if from_job {
            allowed.check("service", &name)?;
        }
        let candidates = service_aliases(&name, image.alias.as_deref());
        let container = match candidates
            .iter()
            .find(|c| is_dns_label(c) && !used.contains(c))
        {
            Some(c) => c.clone(),
            None => {
                let mut n = index;
                while used.contains(&format!("svc-{n}")) {
                    n += 1;
                }
                format!("svc-{n}")
            }
        };
        used.push(container.clone());
        let mut hostnames: Vec<String> = Vec::new();
        for c in candidates.into_iter().filter(|c| is_dns_subdomain(c)) {
            if !hostnames.contains(&c) {
                hostnames.push(c);
            }
        }
        let source = format!("the pull_policy of service {name:?}");
        let policies = pull_policies(config, from_job.then_some(&image), &source)?;
        out.push(ServiceSpec {
            container,
            image: name,
            hostnames,
            entrypoint: image.entrypoint.clone(),
            command: image.command.clone(),
            variables,
            ports: image.ports.clone(),
            pull_policies: policies,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_config::kubernetes::KubernetesService;

    fn image(name: &str, alias: Option<&str>) -> Image {
        Image {
            name: name.into(),
            alias: alias.map(str::to_owned),
            ..Image::default()
        }
    }

    #[test]
    fn names_follow_gitlab_runner_alias_rules() {
        let config = KubernetesConfig {
            services: vec![KubernetesService {
                name: "docker:dind".into(),
                ..KubernetesService::default()
            }],
            ..KubernetesConfig::default()
        };
        let job = [
            image("tutum/wordpress:latest", None),
            image("postgres:14", Some("db,Primary_DB pg")),
            image("postgres:15", Some("db")),
            image("reg.io/grp/svc:1", None),
            image("helper", None),
            image("registry.example:5000/team/build:2", None),
        ];
        let s = resolve(&config, &job, &Variables::new(), &["build", "helper"]).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker",
                "tutum-wordpress",
                "db",
                "postgres",
                "svc-4",
                "svc-5",
                "svc-6"
            ]
        );
        assert_eq!(
            s[1].hostnames,
            ["tutum-wordpress"],
            "the __ variant is dropped"
        );
        assert_eq!(s[2].hostnames, ["db", "pg", "postgres"]);
        assert_eq!(s[3].hostnames, ["db", "postgres"]);
        assert_eq!(
            s[4].hostnames,
            ["reg.io-grp-svc"],
            "a host name, not a container name"
        );
        assert!(
            s[6].hostnames.is_empty(),
            "a port is no host name: {:?}",
            s[6].hostnames
        );
    }

    #[test]
    fn job_services_are_checked_against_allowed_services() {
        let config = KubernetesConfig {
            allowed_services: vec!["postgres:*".into(), "docker.io/library/**".into()],
            services: vec![KubernetesService {
                name: "anything/goes:1".into(),
                ..KubernetesService::default()
            }],
            ..KubernetesConfig::default()
        };
        let vars = Variables::new();
        resolve(&config, &[image("postgres:14", None)], &vars, &[]).unwrap();
        resolve(
            &config,
            &[image("docker.io/library/redis:7", None)],
            &vars,
            &[],
        )
        .unwrap();
        let err = resolve(&config, &[image("evil/miner:1", None)], &vars, &[]).unwrap_err();
        assert!(
            matches!(&err, SpecError::ImageNotAllowed { image, .. } if image == "evil/miner:1"),
            "{err}"
        );
        assert!(err.to_string().contains("allowed_services"), "{err}");
    }
}
