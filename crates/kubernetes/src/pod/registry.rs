//! Registry credentials for the job's images: `DOCKER_AUTH_CONFIG` (a job or `environment` variable)
//! and the payload's `credentials`, merged into one `kubernetes.io/dockerconfigjson` Secret per job.
//! As in gitlab-runner, the first source that names a registry wins: `DOCKER_AUTH_CONFIG`, then the
//! credentials GitLab sends (its own registry, the dependency proxy).

use base64::Engine;
use glrunner_job::Variables;
use glrunner_protocol::JobResponse;
use serde_json::{Map, Value, json};

/// The Secret key Kubernetes reads pull credentials from.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
/// The Secret type of pull credentials.
pub const DOCKER_CONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// Registry → auth entry, plus what could not be used.
#[derive(Default)]
pub struct RegistryAuths {
    pub auths: Map<String, Value>,
    pub warnings: Vec<String>,
}

impl RegistryAuths {
    /// Every password, token and `auth` string in the entries, for the guard.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (registry, entry) in &self.auths {
            for field in ["password", "auth", "identitytoken", "registrytoken"] {
                if let Some(s) = entry.get(field).and_then(Value::as_str) {
                    out.push((
                        s.to_owned(),
                        format!("the registry credentials for {registry}"),
                    ));
                }
            }
        }
        out
    }

    /// The `.dockerconfigjson` document.
    pub fn to_json(&self) -> String {
        json!({ "auths": self.auths }).to_string()
    }
}

/// Collect the job's registry credentials.
pub fn collect(job: &JobResponse, vars: &Variables) -> RegistryAuths {
    let mut out = RegistryAuths::default();
    if let Some(raw) = vars
        .value("DOCKER_AUTH_CONFIG")
        .filter(|v| !v.trim().is_empty())
    {
        from_docker_config(raw, &mut out);
    }
    for c in job.credentials.iter().filter(|c| c.r#type == "registry") {
        if c.url.is_empty() || out.auths.contains_key(&c.url) {
            continue;
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.username,
            c.password.expose()
        ));
        out.auths.insert(
            c.url.clone(),
            json!({ "username": c.username, "password": c.password.expose(), "auth": auth }),
        );
    }
    out
}

fn from_docker_config(raw: &str, out: &mut RegistryAuths) {
    // The message never quotes the value: it holds passwords.
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(raw) else {
        out.warnings.push(
            "DOCKER_AUTH_CONFIG is not a JSON object like {\"auths\": {\"registry.example.com\": \
             {\"auth\": \"<base64 of user:password>\"}}}, so it was not used; fix the variable's value"
                .to_owned(),
        );
        return;
    };
    for helper in ["credsStore", "credHelpers"] {
        if doc.contains_key(helper) {
            out.warnings.push(format!(
                "DOCKER_AUTH_CONFIG uses `{helper}`, which needs a credential helper on the node; \
                 Kubernetes pulls images itself, so only `auths` entries are used"
            ));
        }
    }
    if let Some(Value::Object(auths)) = doc.get("auths") {
        for (registry, entry) in auths {
            if entry.is_object() && !out.auths.contains_key(registry) {
                out.auths.insert(registry.clone(), entry.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::Credential;

    #[test]
    fn docker_auth_config_wins_over_payload_credentials() {
        let job = JobResponse {
            credentials: vec![
                Credential {
                    r#type: "registry".into(),
                    url: "registry.gitlab.example".into(),
                    username: "gitlab-ci-token".into(),
                    password: "glcbt-job-token".into(),
                },
                Credential {
                    r#type: "registry".into(),
                    url: "private.example".into(),
                    username: "ignored".into(),
                    password: "ignored-password".into(),
                },
            ],
            ..JobResponse::default()
        };
        let mut vars = Variables::new();
        vars.add(
            "DOCKER_AUTH_CONFIG",
            r#"{"auths":{"private.example":{"auth":"dXNlcjpwYXNz"}},"credsStore":"desktop"}"#,
        );
        let a = collect(&job, &vars);
        assert_eq!(a.auths["private.example"]["auth"], "dXNlcjpwYXNz");
        assert_eq!(
            a.auths["registry.gitlab.example"]["auth"],
            base64::engine::general_purpose::STANDARD.encode("gitlab-ci-token:glcbt-job-token")
        );
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        let secrets: Vec<String> = a.secrets().into_iter().map(|(s, _)| s).collect();
        assert!(secrets.contains(&"glcbt-job-token".to_owned()));
        assert!(secrets.contains(&"dXNlcjpwYXNz".to_owned()));
        assert!(!secrets.contains(&"ignored-password".to_owned()));
        let doc: Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(doc["auths"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn broken_docker_auth_config_is_a_warning_without_its_value() {
        let mut vars = Variables::new();
        vars.add("DOCKER_AUTH_CONFIG", "{not json pa55word");
        let a = collect(&JobResponse::default(), &vars);
        assert!(a.auths.is_empty());
        assert_eq!(a.warnings.len(), 1);
        assert!(!a.warnings[0].contains("pa55word"));
    }
}
