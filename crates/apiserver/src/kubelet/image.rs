//! Images: the table that says how each image name "runs" here (the host's binaries, or the host
//! plus the glrunner binary) and how its pull goes (found, not found, refused without credentials,
//! registry unreachable, slow), reference normalisation as containerd does it, registry
//! credentials from `imagePullSecrets`, and the kubelet's pull messages word for word.

use glrunner_protocol::Secret;
use serde_json::Value;
use sha2::Digest as _;
use std::path::PathBuf;
use std::time::Duration;

/// What a container of this image runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// The host's own filesystem (copy-on-write): `sh`, `git`, coreutils, … as installed here.
    Host,
    /// The host's filesystem plus the glrunner binary at `/usr/local/bin/glrunner` (the helper
    /// image).
    Glrunner(PathBuf),
}

/// How pulling the image fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry has no such repository or tag.
    NotFound,
    /// The registry's host cannot be resolved.
    Unreachable,
}

/// How one image behaves on this node.
#[derive(Clone)]
pub struct Image {
    pub(crate) runtime: Runtime,
    pub(crate) failure: Option<PullFailure>,
    /// A private image: pulls without these credentials get 401 Unauthorized.
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) pull_delay: Duration,
    pub(crate) present: bool,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: String,
    pub(crate) size: u64,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("runtime", &self.runtime)
            .field("failure", &self.failure)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, p)| (u, p)),
            )
            .field("pull_delay", &self.pull_delay)
            .field("present", &self.present)
            .field("cmd", &self.cmd)
            .finish_non_exhaustive()
    }
}

/// The default `PATH` of an image without one of its own.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Image {
    fn with_runtime(runtime: Runtime) -> Self {
        Self {
            runtime,
            failure: None,
            credentials: None,
            pull_delay: Duration::ZERO,
            present: false,
            entrypoint: Vec::new(),
            cmd: vec!["/bin/sh".to_owned()],
            env: vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())],
            working_dir: "/".to_owned(),
            size: 3_623_807,
        }
    }

    /// Runs on the host's binaries (default command `/bin/sh`, like a distribution image).
    pub fn host() -> Self {
        Self::with_runtime(Runtime::Host)
    }

    /// The host's binaries plus `binary` at `/usr/local/bin/glrunner`.
    pub fn glrunner(binary: impl Into<PathBuf>) -> Self {
        Self::with_runtime(Runtime::Glrunner(binary.into()))
    }

    /// The registry answers "not found".
    pub fn not_found() -> Self {
        Self {
            failure: Some(PullFailure::NotFound),
            ..Self::host()
        }
    }

    /// The registry's host does not resolve (`dial tcp: lookup …: no such host`).
    pub fn unreachable() -> Self {
        Self {
            failure: Some(PullFailure::Unreachable),
            ..Self::host()
        }
    }

    /// Pulls need an imagePullSecret with these registry credentials (else 401 Unauthorized).
    pub fn private(mut self, username: &str, password: impl Into<Secret>) -> Self {
        self.credentials = Some((username.to_owned(), password.into()));
        self
    }

    /// Every pull takes this long.
    pub fn slow(mut self, delay: Duration) -> Self {
        self.pull_delay = delay;
        self
    }

    /// Already on the node (no pull with `IfNotPresent`).
    pub fn present(mut self) -> Self {
        self.present = true;
        self
    }

    /// The image's `ENTRYPOINT`.
    pub fn entrypoint(mut self, argv: &[&str]) -> Self {
        self.entrypoint = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The image's `CMD`.
    pub fn cmd(mut self, argv: &[&str]) -> Self {
        self.cmd = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// An `ENV` of the image.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The image's `WORKDIR`.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = dir.to_owned();
        self
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub domain: String,
    /// Repository path (`library/alpine`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parse as containerd's reference docker normalisation does; `None` for an invalid name.
    pub fn parse(image: &str) -> Option<Self> {
        if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
            return None;
        }
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_owned())),
            None => (image, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_owned()),
            ),
            None => (name, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let valid_path = !path.is_empty()
            && path.split('/').all(|c| {
                !c.is_empty()
                    && c.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)
                    })
            });
        if !valid_path || tag.as_deref() == Some("") {
            return None;
        }
        Some(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/alpine:latest`.
    pub fn full(&self) -> String {
        let mut s = format!("{}/{}", self.domain, self.path);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        } else if self.digest.is_none() {
            s.push_str(":latest");
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `docker.io/library/alpine` (no tag).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The imageID a container status shows (`repo@sha256:…`).
    pub fn image_id(&self) -> String {
        let digest = sha2::Sha256::digest(self.full().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}@sha256:{hex}", self.repository())
    }

    fn registry_host(&self) -> &str {
        if self.domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }

    fn tag_or_digest(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "latest".to_owned())
    }
}

/// The pull error's text as containerd reports it through the CRI.
pub(crate) fn pull_error(r: &Reference, why: PullError) -> String {
    let full = r.full();
    match why {
        PullError::NotFound => format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
        ),
        PullError::Unauthorized { with_credentials } => {
            let (auth_host, service) = if r.domain == "docker.io" {
                ("auth.docker.io".to_owned(), "registry.docker.io".to_owned())
            } else {
                (r.domain.clone(), r.domain.clone())
            };
            let scope = format!("repository%3A{}%3Apull", r.path.replace('/', "%2F"));
            let what = if with_credentials {
                format!(
                    "failed to fetch oauth token: unexpected status from POST request to https://{auth_host}/token"
                )
            } else {
                format!(
                    "failed to fetch anonymous token: unexpected status from GET request to https://{auth_host}/token?scope={scope}&service={service}"
                )
            };
            format!(
                "rpc error: code = Unknown desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": failed to authorize: {what}: 401 Unauthorized"
            )
        }
        PullError::Unreachable => format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": failed to do request: Head \"https://{}/v2/{}/manifests/{}\": dial tcp: lookup {} on 127.0.0.53:53: no such host",
            r.registry_host(),
            r.path,
            r.tag_or_digest(),
            r.registry_host()
        ),
    }
}

/// Why a pull failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullError {
    NotFound,
    Unauthorized { with_credentials: bool },
    Unreachable,
}

/// Registry credentials found in a pod's pull secrets.
pub(crate) struct Credential {
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

/// Credentials in a `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg` secret.
pub(crate) fn credentials_in(secret: &Value) -> Vec<Credential> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |key: &str| -> Option<Value> {
        let text = secret.pointer(&format!("/data/{}", key.replace('/', "~1")))?;
        let bytes = b64.decode(text.as_str()?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let auths = match decode(".dockerconfigjson") {
        Some(v) => v.get("auths").cloned().unwrap_or(Value::Null),
        None => decode(".dockercfg").unwrap_or(Value::Null),
    };
    let Some(map) = auths.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(registry, entry)| {
            let mut user = entry
                .get("username")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut pass = entry
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(auth) = entry.get("auth").and_then(Value::as_str)
                && let Ok(raw) = b64.decode(auth)
                && let Ok(text) = String::from_utf8(raw)
                && let Some((u, p)) = text.split_once(':')
            {
                user.get_or_insert_with(|| u.to_owned());
                pass.get_or_insert_with(|| p.to_owned());
            }
            Some(Credential {
                registry: registry.clone(),
                username: user?,
                password: Secret::new(pass?),
            })
        })
        .collect()
}

/// Whether a credential's registry key (`https://reg.io/v2/`, `reg.io/group`, …) covers `r`.
pub(crate) fn covers(key: &str, r: &Reference) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (host, prefix) = k.split_once('/').unwrap_or((k, ""));
    let docker_hosts = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    let host_ok = host == r.domain || (r.domain == "docker.io" && docker_hosts.contains(&host));
    host_ok && (prefix.is_empty() || r.path == prefix || r.path.starts_with(&format!("{prefix}/")))
}

/// Go's `time.Duration` text for a duration truncated to milliseconds (`1.5s`, `250ms`, `2m3s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total_secs = ms / 1000;
    let frac = ms % 1000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_normalise_like_containerd() {
        let r = Reference::parse("alpine").expect("valid");
        assert_eq!(r.full(), "docker.io/library/alpine:latest");
        let r = Reference::parse("alpine:3.20").expect("valid");
        assert_eq!(r.full(), "docker.io/library/alpine:3.20");
        let r = Reference::parse("registry.example.com:5000/ci/helper:v1").expect("valid");
        assert_eq!(r.domain, "registry.example.com:5000");
        assert_eq!(r.full(), "registry.example.com:5000/ci/helper:v1");
        let r = Reference::parse("user/app").expect("valid");
        assert_eq!(r.full(), "docker.io/user/app:latest");
        assert!(Reference::parse("Bad/Name").is_none());
        assert!(Reference::parse("has space").is_none());
    }

    #[test]
    fn pull_errors_read_like_containerd() {
        let r = Reference::parse("nosuch:1").expect("valid");
        assert_eq!(
            pull_error(&r, PullError::NotFound),
            "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nosuch:1\": failed to resolve reference \"docker.io/library/nosuch:1\": docker.io/library/nosuch:1: not found"
        );
        let r = Reference::parse("reg.invalid/app").expect("valid");
        assert!(pull_error(&r, PullError::Unreachable).ends_with(
            "Head \"https://reg.invalid/v2/app/manifests/latest\": dial tcp: lookup reg.invalid on 127.0.0.53:53: no such host"
        ));
        assert!(
            pull_error(
                &r,
                PullError::Unauthorized {
                    with_credentials: false
                }
            )
            .ends_with("service=reg.invalid: 401 Unauthorized")
        );
    }

    #[test]
    fn credentials_from_both_secret_types() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cfgjson = json!({"type":"kubernetes.io/dockerconfigjson","data":{
            ".dockerconfigjson": b64(r#"{"auths":{"https://reg.example.com/v2/":{"auth":"dXNlcjpwYXNz"}}}"#)}});
        let creds = credentials_in(&cfgjson);
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].username, "user");
        assert_eq!(creds[0].password.expose(), "pass");
        let cfg = json!({"type":"kubernetes.io/dockercfg","data":{
            ".dockercfg": b64(r#"{"reg.example.com":{"username":"u","password":"p"}}"#)}});
        assert_eq!(credentials_in(&cfg)[0].username, "u");
        let r = Reference::parse("reg.example.com/ci/app:1").expect("valid");
        assert!(covers("https://reg.example.com/v2/", &r));
        assert!(covers("reg.example.com/ci", &r));
        assert!(!covers("reg.example.com/other", &r));
        assert!(!covers("other.example.com", &r));
        let hub = Reference::parse("me/app").expect("valid");
        assert!(covers("https://index.docker.io/v1/", &hub));
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(2000)), "2s");
        assert_eq!(go_duration(Duration::from_millis(123_456)), "2m3.456s");
    }
}
