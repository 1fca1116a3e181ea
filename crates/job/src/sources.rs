//! The get_sources script: `GIT_STRATEGY` clone/fetch/none/empty, refspec fetch with depth, checkout,
//! clean, LFS, and the get-sources hooks.
//!
//! The job token never reaches `.git/config`, the trace or a command line: the stored remote URL has no
//! credentials, and git gets them from a credential helper set with `-c` on the fetch command only,
//! which reads them from environment variables set for that one command. A `credential.helper=` before
//! it clears helpers from the user's git config, so nothing stores the token either.

use crate::script::{BashWriter, ScriptContext, escape};
use crate::settings::{GitStrategy, SubmoduleStrategy};
use glrunner_protocol::{JobResponse, Secret};

/// Refspecs when GitLab sends none (very old GitLab): every branch and tag.
const DEFAULT_REFSPECS: &[&str] = &[
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// A credential helper that answers `get` from the environment of the git command it runs under.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || return 0; \
     echo \"username=${GLRUNNER_GIT_USERNAME}\"; echo \"password=${GLRUNNER_GIT_PASSWORD}\"; }; f";

/// Where to fetch from, split from its credentials.
pub struct Remote {
    /// The URL stored as `origin`: no user or password in it.
    pub url: String,
    /// `scheme://host[:port]` for `http.<url>.*` settings, when the URL is HTTP(S).
    pub base: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl Remote {
    /// The remote for `job`: `clone_url` + project path when configured (credentials: `gitlab-ci-token`
    /// and the job token), else `git_info.repo_url` with its embedded credentials taken out.
    pub fn for_job(job: &JobResponse, clone_url: Option<&str>) -> Self {
        if let Some(base) = clone_url
            .map(|c| c.trim_end_matches('/'))
            .filter(|c| !c.is_empty())
        {
            let url = format!("{base}/{}.git", crate::paths::project_path(job));
            return Self {
                base: http_base(&url),
                url,
                username: Some("gitlab-ci-token".into()),
                password: Some(job.token.clone()).filter(|t| !t.is_empty()),
            };
        }
        let raw = job.git_info.repo_url.expose();
        match url::Url::parse(raw) {
            Ok(mut u) if u.has_host() && (!u.username().is_empty() || u.password().is_some()) => {
                let username = Some(percent_decode(u.username())).filter(|s| !s.is_empty());
                let password = u.password().map(|p| Secret::new(percent_decode(p)));
                // Both setters only fail for URLs without a host, excluded above.
                let _ = u.set_username("");
                let _ = u.set_password(None);
                let url = u.to_string();
                Self {
                    base: http_base(&url),
                    url,
                    username,
                    password,
                }
            }
            _ => Self {
                base: http_base(raw),
                url: raw.to_owned(),
                username: None,
                password: None,
            },
        }
    }

    fn has_credentials(&self) -> bool {
        self.password.is_some()
    }
}

fn http_base(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A git command that may talk to the remote: credentials (from the environment of this command only)
/// and the CA for the GitLab host.
fn remote_git(remote: &Remote, has_ca: bool, args: &[&str]) -> String {
    let mut line = String::new();
    if remote.has_credentials() {
        let user = remote.username.as_deref().unwrap_or("gitlab-ci-token");
        let pass = remote.password.as_ref().map(Secret::expose).unwrap_or("");
        line.push_str(&format!(
            "GLRUNNER_GIT_USERNAME={} GLRUNNER_GIT_PASSWORD={} ",
            escape(user),
            escape(pass)
        ));
    }
    line.push_str("git");
    if remote.has_credentials() {
        line.push_str(" -c credential.helper= -c ");
        line.push_str(&escape(&format!("credential.helper={CREDENTIAL_HELPER}")));
    }
    if let (true, Some(base)) = (has_ca, remote.base.as_deref()) {
        line.push_str(&format!(
            " -c {}\"${{CI_SERVER_TLS_CA_FILE}}\"",
            escape(&format!("http.{base}.sslCAInfo="))
        ));
    }
    for a in args {
        line.push(' ');
        line.push_str(&escape(a));
    }
    line
}

/// The body of the get_sources stage.
pub(crate) fn write_get_sources(w: &mut BashWriter, sc: &ScriptContext<'_>) {
    let (job, settings, paths) = (sc.job, sc.settings, sc.paths);
    let project_dir = paths.project_dir.as_str();
    w.exports(sc.variables);
    w.line("export GIT_TERMINAL_PROMPT=0");
    w.line("export GCM_INTERACTIVE=Never");
    w.line("export GIT_LFS_SKIP_SMUDGE=1");
    w.mkdir(&paths.builds_dir);
    w.cd(&paths.builds_dir);

    let hook = |name: &str| -> Vec<String> {
        job.hooks
            .iter()
            .filter(|h| h.name == name)
            .flat_map(|h| h.script.iter().cloned())
            .collect()
    };
    let mut pre: Vec<String> = sc.ctx.pre_get_sources_script.iter().cloned().collect();
    pre.extend(hook("pre_get_sources_script"));
    pre.retain(|c| !c.trim().is_empty());
    w.user_commands(&pre);

    match settings.git_strategy {
        GitStrategy::None => {
            w.notice("Skipping Git repository setup");
            w.mkdir(project_dir);
            return;
        }
        GitStrategy::Empty => {
            w.notice("Skipping Git repository setup and creating an empty build directory");
            w.rm_rf(project_dir);
            w.mkdir(project_dir);
            return;
        }
        GitStrategy::Clone => w.rm_rf(project_dir),
        GitStrategy::Fetch => {}
    }

    let remote = Remote::for_job(job, sc.ctx.clone_url.as_deref());
    let has_ca = sc.variables.get("CI_SERVER_TLS_CA_FILE").is_some();
    let depth = job.git_info.depth;
    if depth > 0 {
        w.notice(&format!(
            "Fetching changes with git depth set to {depth}..."
        ));
    } else {
        w.notice("Fetching changes...");
    }

    let template = format!("{}/git-template", paths.tmp_dir);
    let template_config = format!("{template}/config");
    w.mkdir(&template);
    for (key, value) in [
        ("fetch.recurseSubmodules", "false"),
        ("credential.interactive", "never"),
        ("gc.autoDetach", "false"),
    ] {
        w.command(&["git", "config", "-f", &template_config, key, value]);
    }
    let object_format = job
        .git_info
        .repo_object_format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "sha1");
    let mut init = vec![
        "git",
        "-c",
        "init.defaultBranch=none",
        "init",
        project_dir,
        "--template",
        &template,
    ];
    if let Some(f) = object_format {
        init.extend(["--object-format", f]);
    }
    w.command(&init);
    w.cd(project_dir);
    for stale in [
        "index.lock",
        "shallow.lock",
        "HEAD.lock",
        "hooks/post-checkout",
        "config.lock",
    ] {
        w.rm_f(&format!(".git/{stale}"));
    }
    w.if_cmd(&["git", "remote", "add", "origin", &remote.url]);
    w.notice("Created fresh repository.");
    w.else_();
    w.command(&["git", "remote", "set-url", "origin", &remote.url]);
    w.end_if();

    let mut fetch: Vec<&str> = vec!["fetch", "origin", "--no-recurse-submodules"];
    if job.git_info.refspecs.is_empty() {
        fetch.extend(DEFAULT_REFSPECS);
    } else {
        fetch.extend(job.git_info.refspecs.iter().map(String::as_str));
    }
    let depth_text = depth.to_string();
    if depth > 0 {
        fetch.extend(["--depth", &depth_text]);
    }
    fetch.extend(settings.git_fetch_extra_flags.iter().map(String::as_str));
    if depth == 0 {
        let mut unshallow = fetch.clone();
        unshallow.push("--unshallow");
        w.if_file(".git/shallow");
        let line = remote_git(&remote, has_ca, &unshallow);
        w.line(&line);
        w.else_();
        let line = remote_git(&remote, has_ca, &fetch);
        w.line(&line);
        w.end_if();
    } else {
        let line = remote_git(&remote, has_ca, &fetch);
        w.line(&line);
    }

    if settings.git_checkout {
        let sha = job.git_info.sha.as_str();
        let target = if sha.is_empty() { "FETCH_HEAD" } else { sha };
        let short: String = target.chars().take(8).collect();
        w.notice(&format!(
            "Checking out {short} as detached HEAD (ref is {})...",
            job.git_info.r#ref
        ));
        w.command(&[
            "git",
            "-c",
            "submodule.recurse=false",
            "checkout",
            "-f",
            "-q",
            target,
        ]);
        if !settings.git_clean_flags.is_empty() {
            let mut clean = vec!["git", "clean"];
            clean.extend(settings.git_clean_flags.iter().map(String::as_str));
            w.command(&clean);
        }
        w.line("if git lfs version >/dev/null 2>&1; then");
        let line = remote_git(&remote, has_ca, &["lfs", "pull"]);
        w.line(&format!("  {line}"));
        w.line("fi");
    } else {
        w.notice("Skipping Git checkout");
    }

    match settings.submodule_strategy {
        SubmoduleStrategy::None => w.notice("Skipping Git submodules setup"),
        SubmoduleStrategy::Normal | SubmoduleStrategy::Recursive => w.warning(
            "GIT_SUBMODULE_STRATEGY is not supported by glrunner yet; submodules are not checked out. \
             Add `git submodule update --init` to your script, or unset the variable",
        ),
    }

    let mut post = hook("post_get_sources_script");
    post.extend(sc.ctx.post_get_sources_script.iter().cloned());
    post.retain(|c| !c.trim().is_empty());
    w.user_commands(&post);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(url: &str) -> JobResponse {
        let mut job = JobResponse {
            token: "glcbt-64_tok".into(),
            ..JobResponse::default()
        };
        job.job_info.project_full_path = "acme/demo".into();
        job.git_info.repo_url = url.into();
        job
    }

    #[test]
    fn credentials_are_split_from_the_remote_url() {
        let r = Remote::for_job(
            &job("https://gitlab-ci-token:glcbt-64_tok@gitlab.example.com/acme/demo.git"),
            None,
        );
        assert_eq!(r.url, "https://gitlab.example.com/acme/demo.git");
        assert_eq!(r.base.as_deref(), Some("https://gitlab.example.com"));
        assert_eq!(r.username.as_deref(), Some("gitlab-ci-token"));
        assert_eq!(
            r.password.as_ref().map(Secret::expose),
            Some("glcbt-64_tok")
        );
        assert!(
            !format!("{r:?}").contains("glcbt"),
            "Debug never shows the password"
        );

        let r = Remote::for_job(&job("http://u%40x:p%2Fw@127.0.0.1:8080/a.git"), None);
        assert_eq!(r.url, "http://127.0.0.1:8080/a.git");
        assert_eq!(r.base.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(r.username.as_deref(), Some("u@x"));
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("p/w"));

        let r = Remote::for_job(&job("file:///srv/repo.git"), None);
        assert_eq!(r.url, "file:///srv/repo.git");
        assert!(r.password.is_none() && r.base.is_none());
    }

    #[test]
    fn clone_url_builds_the_remote_from_the_project_path() {
        let r = Remote::for_job(
            &job("https://gitlab-ci-token:x@internal/acme/demo.git"),
            Some("https://git.example.com/"),
        );
        assert_eq!(r.url, "https://git.example.com/acme/demo.git");
        assert_eq!(
            r.password.as_ref().map(Secret::expose),
            Some("glcbt-64_tok")
        );
    }

    #[test]
    fn token_only_in_the_environment_of_remote_commands() {
        let remote = Remote::for_job(
            &job("https://gitlab-ci-token:glcbt-64_tok@h/acme/demo.git"),
            None,
        );
        let line = remote_git(&remote, true, &["fetch", "origin"]);
        assert!(line.starts_with(
            "GLRUNNER_GIT_USERNAME=gitlab-ci-token GLRUNNER_GIT_PASSWORD=glcbt-64_tok git "
        ));
        assert!(line.contains("-c credential.helper= -c "));
        assert!(line.contains("http.https://h.sslCAInfo="), "{line}");
        assert_eq!(line.matches("glcbt-64_tok").count(), 1, "{line}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
