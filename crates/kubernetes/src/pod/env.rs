//! Where each job variable goes (design decision 7). A variable's value is written into the pod spec
//! only when it is public, not masked, not a file variable and holds no secret; everything else is a
//! key of the job's Secret, which containers read through `secretKeyRef` (so `kubectl get pod -o yaml`
//! shows the reference, never the value). File variables' contents are Secret keys too, and their
//! `env` entry is the path where the stage scripts write the file, as in gitlab-runner.

use super::guard::Guard;
use glrunner_job::Variables;
use glrunner_job::variables::is_valid_name;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use std::collections::BTreeMap;

/// The Secret key holding the job token; not a valid variable name, so it never clashes with one.
pub const JOB_TOKEN_KEY: &str = "job-token";

/// An ordered `env` list in which a later entry for a name replaces the earlier one (last wins, as
/// for duplicate job variables).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvList(Vec<EnvVar>);

impl EnvList {
    pub fn set(&mut self, var: EnvVar) {
        self.0.retain(|v| v.name != var.name);
        self.0.push(var);
    }

    pub fn into_vec(self) -> Vec<EnvVar> {
        self.0
    }
}

/// A literal `env` entry; `$` is doubled so Kubernetes' `$(VAR)` expansion leaves the value alone.
pub fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.replace('$', "$$")),
        value_from: None,
    }
}

/// An `env` entry read from `key` of the Secret `secret`.
pub fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The job's variables, split between `env` and the Secret.
#[derive(Debug, Default)]
pub struct JobEnv {
    /// For the build container: every variable bash can export.
    pub build: EnvList,
    /// For service containers: the public variables only (gitlab-runner gives services no project
    /// CI/CD variables); file variables are left out, their files exist only in the build container.
    pub services: EnvList,
    /// Secret key → value.
    pub secret: BTreeMap<String, String>,
    /// Names of the variables that went to the Secret, in order (for tests and messages).
    pub secret_names: Vec<String>,
}

/// Route `vars` (final and expanded) between `env` and the Secret named `secret_name`.
pub fn route(vars: &Variables, guard: &Guard, secret_name: &str) -> JobEnv {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in vars.iter().enumerate() {
        last.insert(&v.key, i);
    }
    let mut out = JobEnv::default();
    for (i, v) in vars.iter().enumerate() {
        if last.get(v.key.as_str()) != Some(&i) || !is_valid_name(&v.key) {
            continue;
        }
        if v.file {
            out.secret.insert(v.key.clone(), v.value.clone());
            out.secret_names.push(v.key.clone());
            out.build.set(literal(&v.key, &vars.file_path(&v.key)));
            continue;
        }
        let sensitive = v.masked || guard.contains_secret(&v.value);
        let entry = if v.public && !sensitive {
            literal(&v.key, &v.value)
        } else {
            out.secret.insert(v.key.clone(), v.value.clone());
            out.secret_names.push(v.key.clone());
            from_secret(&v.key, secret_name, &v.key)
        };
        if v.public {
            out.services.set(entry.clone());
        }
        out.build.set(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::JobVariable;

    #[test]
    fn secrets_go_by_reference_and_public_values_are_escaped() {
        let mut vars = Variables::new();
        vars.add("RUNNER_TEMP_PROJECT_DIR", "/builds/g/p.tmp");
        vars.add("PLAIN", "cost $5 $(HOME)");
        vars.push(JobVariable {
            masked: true,
            public: false,
            ..JobVariable::new("TOKEN", "tok-very-secret")
        });
        vars.push(JobVariable {
            public: false,
            ..JobVariable::new("PROJECT_VAR", "not masked")
        });
        vars.add("URL", "https://u:tok-very-secret@h");
        vars.push(JobVariable {
            file: true,
            public: false,
            ..JobVariable::new("KUBECONFIG", "apiVersion: v1")
        });
        vars.add("DUP", "first");
        vars.add("DUP", "second");
        vars.add("bad-name", "x");
        let guard = Guard::new([("tok-very-secret".to_owned(), "TOKEN".to_owned())]);
        let env = route(&vars, &guard, "sec");
        let build = env.build.into_vec();
        let get = |n: &str| build.iter().find(|e| e.name == n).cloned();
        assert_eq!(
            get("PLAIN").unwrap().value.as_deref(),
            Some("cost $$5 $$(HOME)")
        );
        for name in ["TOKEN", "PROJECT_VAR", "URL"] {
            let e = get(name).unwrap();
            assert_eq!(e.value, None, "{name}");
            let r = e.value_from.unwrap().secret_key_ref.unwrap();
            assert_eq!((r.name.as_str(), r.key.as_str()), ("sec", name));
        }
        assert_eq!(
            get("KUBECONFIG").unwrap().value.as_deref(),
            Some("/builds/g/p.tmp/KUBECONFIG")
        );
        assert_eq!(get("DUP").unwrap().value.as_deref(), Some("second"));
        assert_eq!(build.iter().filter(|e| e.name == "DUP").count(), 1);
        assert!(get("bad-name").is_none());
        assert_eq!(env.secret["KUBECONFIG"], "apiVersion: v1");
        assert_eq!(env.secret["TOKEN"], "tok-very-secret");
        assert_eq!(
            env.secret_names,
            ["TOKEN", "PROJECT_VAR", "URL", "KUBECONFIG"]
        );
        let services: Vec<String> = env
            .services
            .into_vec()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(services, ["RUNNER_TEMP_PROJECT_DIR", "PLAIN", "URL", "DUP"]);
    }
}
