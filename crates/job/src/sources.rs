//! The get_sources script: `GIT_STRATEGY` clone/fetch/none/empty, refspec fetch with depth, checkout,
//! clean, LFS, submodules (`GIT_SUBMODULE_*`), the get-sources hooks, and the clear_worktree script run
//! before a retry.
//!
//! The job token never reaches `.git/config`, `.gitmodules`, the trace or a command line. The stored
//! remote URL has no credentials; git gets them from a credential helper that reads `$CI_JOB_TOKEN`
//! from its environment. The helper lives in an external git config file in the project's temp dir
//! (removed by the cleanup stage), scoped to the GitLab host and included from `.git/config` and from
//! each submodule's config, so `git fetch` in the job's own scripts works as with gitlab-runner. Its
//! empty `helper =` entry first clears other helpers for that host, so nothing stores the token.

use crate::script::{BashWriter, ScriptContext, ScriptError, escape};
use crate::settings::{GitStrategy, SubmoduleStrategy};
use crate::stage_ops::{Op, StageOps};
use glrunner_archive::Message;
use glrunner_protocol::{JobResponse, Secret};

/// Refspecs when GitLab sends none (very old GitLab): every branch and tag.
const DEFAULT_REFSPECS: &[&str] = &[
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// The refspecs to fetch: the job's, or [`DEFAULT_REFSPECS`] when it has none.
pub(crate) fn fetch_refspecs(refspecs: &[String]) -> impl Iterator<Item = &str> {
    let defaults = if refspecs.is_empty() {
        DEFAULT_REFSPECS
    } else {
        &[]
    };
    refspecs
        .iter()
        .map(String::as_str)
        .chain(defaults.iter().copied())
}

/// The `--object-format` for `git init`, or none for git's default (SHA-1).
pub(crate) fn object_format(job: &JobResponse) -> Option<&str> {
    job.git_info
        .repo_object_format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "sha1")
}

/// `GIT_FETCH_EXTRA_FLAGS` when the job sets none.
pub const DEFAULT_FETCH_FLAGS: &[&str] = &["--prune", "--quiet"];

/// A credential helper that answers `get` with the job token from the environment it runs in.
const CREDENTIAL_HELPER: &str =
    "!f(){ if [ \"$1\" = \"get\" ]; then echo \"password=${CI_JOB_TOKEN}\"; fi; }; f";

/// The environment variable the credential helper reads.
const TOKEN_VARIABLE: &str = "CI_JOB_TOKEN";

/// File name of the external git config in the project's temp dir.
pub const GIT_CONFIG_FILE: &str = ".glrunner-git.conf";

/// Lock files a killed git may leave behind; each one makes the next fetch fail.
const STALE_GIT_FILES: &[&str] = &[
    "index.lock",
    "shallow.lock",
    "HEAD.lock",
    "hooks/post-checkout",
    "config.lock",
];

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

/// Everything the git commands of get_sources share.
struct Git<'a> {
    remote: Remote,
    /// The external git config file.
    config: String,
    /// `CI_JOB_TOKEN=<password> ` for commands that talk to the remote, or empty.
    token_env: String,
    sc: &'a ScriptContext<'a>,
}

impl Git<'_> {
    /// A git command that may talk to a remote: the token in its environment, the external config
    /// included (submodule commands do not read the superproject's config).
    fn remote_line(&self, args: &[&str]) -> String {
        let mut line = self.token_env.clone();
        line.push_str("git -c ");
        line.push_str(&escape(&format!("include.path={}", self.config)));
        for a in args {
            line.push(' ');
            line.push_str(&escape(a));
        }
        line
    }

    /// `line || { hint; exit with git's code; }`: git's own message stays, a hint follows it.
    fn with_hint(line: &str, hint: &str) -> String {
        let hint = escape(&format!(
            "{}ERROR: {hint}{}",
            glrunner_trace::format::BOLD_RED,
            glrunner_trace::format::RESET
        ));
        format!("{line} || {{ _glrunner_rc=$?; echo {hint}; exit $_glrunner_rc; }}")
    }
}

const FETCH_HINT: &str = "fetching the repository failed. If git says \"Authentication failed\" or \
     \"HTTP Basic: Access denied\", GitLab refused the job token: the job may have been canceled or \
     already finished (retry it), or the project does not allow this job's token \
     (Settings > CI/CD > Job token permissions)";

const SUBMODULE_HINT: &str = "updating the submodules failed. If git says \"Authentication failed\" \
     for a submodule on this GitLab server, add this project to the submodule project's job token \
     allowlist (its Settings > CI/CD > Job token permissions); prefer relative URLs (`../other.git`) in \
     .gitmodules, and set GIT_SUBMODULE_FORCE_HTTPS: \"true\" for `git@` URLs. Submodules on other \
     servers get no credentials from glrunner";

/// Remove each stale git file of `project_dir`, also inside `.git/modules` when submodules are used,
/// and stale ref locks.
pub(crate) fn git_lock_cleanup(project_dir: &str, submodules: bool) -> Vec<Op> {
    let git_dir = format!("{project_dir}/.git");
    let mut ops = vec![Op::RemoveFiles(
        STALE_GIT_FILES
            .iter()
            .map(|f| format!("{git_dir}/{f}"))
            .collect(),
    )];
    if submodules {
        ops.push(Op::RemoveMatching {
            dir: format!("{git_dir}/modules"),
            names: STALE_GIT_FILES
                .iter()
                .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
                .collect(),
        });
    }
    ops.push(Op::RemoveMatching {
        dir: format!("{git_dir}/refs"),
        names: vec!["*.lock".to_owned()],
    });
    ops
}

fn write_git_lock_cleanup(w: &mut BashWriter, project_dir: &str, submodules: bool) {
    StageOps {
        ops: git_lock_cleanup(project_dir, submodules),
    }
    .write(w);
}

/// The body of the get_sources stage.
pub(crate) fn write_get_sources(
    w: &mut BashWriter,
    sc: &ScriptContext<'_>,
) -> Result<(), ScriptError> {
    let (job, settings, paths) = (sc.job, sc.settings, sc.paths);
    let project_dir = paths.project_dir.as_str();
    let strategy = settings.git_strategy;
    let submodules = settings.submodule_strategy != SubmoduleStrategy::None;
    if submodules && settings.submodule_paths.iter().any(|p| p == ":(exclude)") {
        return Err(ScriptError::SubmodulePaths {
            value: settings.submodule_paths.join(" "),
        });
    }

    sc.write_exports(w);
    w.line("export GIT_TERMINAL_PROMPT=0");
    w.line("export GCM_INTERACTIVE=Never");
    if !settings.lfs_skip_smudge {
        // LFS objects come with `git lfs pull` after checkout, not while git checks out.
        w.line("export GIT_LFS_SKIP_SMUDGE=1");
    }
    w.mkdir(&paths.builds_dir);
    w.cd(&paths.builds_dir);

    let hook = |name: &str| -> Vec<String> {
        job.hooks
            .iter()
            .filter(|h| h.name == name)
            .flat_map(|h| h.script.iter().cloned())
            .collect()
    };
    let has_sources = matches!(strategy, GitStrategy::Clone | GitStrategy::Fetch);
    if has_sources {
        let mut pre: Vec<String> = sc.ctx.pre_get_sources_script.iter().cloned().collect();
        pre.extend(hook("pre_get_sources_script"));
        pre.retain(|c| !c.trim().is_empty());
        w.user_commands(&pre);
    }

    match strategy {
        GitStrategy::None => {
            w.notice("Skipping Git repository setup");
            w.mkdir(project_dir);
            return Ok(());
        }
        GitStrategy::Empty => {
            w.notice("Skipping Git repository setup and creating an empty build directory");
            w.rm_rf(project_dir);
            w.mkdir(project_dir);
            return Ok(());
        }
        GitStrategy::Clone | GitStrategy::Fetch => {}
    }

    let remote = Remote::for_job(job, sc.ctx.clone_url.as_deref());
    let config = format!("{}/{GIT_CONFIG_FILE}", paths.tmp_dir);
    let token_env = match &remote.password {
        Some(p) => format!("{TOKEN_VARIABLE}={} ", escape(p.expose())),
        None => String::new(),
    };
    let git = Git {
        remote,
        config,
        token_env,
        sc,
    };
    if let Some(ops) = prepared_copy(sc, &git) {
        StageOps { ops }.write(w);
        w.cd(project_dir);
        write_post_hooks(w, sc, hook("post_get_sources_script"));
        return Ok(());
    }

    write_git_lock_cleanup(w, project_dir, submodules);
    if strategy == GitStrategy::Clone {
        w.rm_rf(project_dir);
    }
    let template = format!("{}/git-template", paths.tmp_dir);
    write_git_config(w, &git, &template);

    write_fetch_notice(w, job);
    let depth = job.git_info.depth;
    let object_format = object_format(job);
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
    w.if_cmd(&["git", "remote", "add", "origin", &git.remote.url]);
    w.notice("Created fresh repository.");
    w.else_();
    w.command(&["git", "remote", "set-url", "origin", &git.remote.url]);
    // The template only applies to new repositories.
    include_git_config(w, ".git/config", &git.config);
    w.end_if();

    let user_agent = user_agent_config(sc.ctx);
    let mut fetch: Vec<&str> = vec![
        "-c",
        &user_agent,
        "fetch",
        "origin",
        "--no-recurse-submodules",
    ];
    fetch.extend(fetch_refspecs(&job.git_info.refspecs));
    let depth_text = depth.to_string();
    if depth > 0 {
        fetch.extend(["--depth", &depth_text]);
    }
    fetch.extend(settings.git_fetch_extra_flags.iter().map(String::as_str));
    if depth == 0 {
        let mut unshallow = fetch.clone();
        unshallow.push("--unshallow");
        w.if_file(".git/shallow");
        w.line(&Git::with_hint(&git.remote_line(&unshallow), FETCH_HINT));
        w.else_();
        w.line(&Git::with_hint(&git.remote_line(&fetch), FETCH_HINT));
        w.end_if();
    } else {
        w.line(&Git::with_hint(&git.remote_line(&fetch), FETCH_HINT));
    }

    if settings.git_checkout {
        let sha = job.git_info.sha.as_str();
        let target = if sha.is_empty() { "FETCH_HEAD" } else { sha };
        write_checkout_notice(w, job);
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
        if !settings.lfs_skip_smudge {
            w.if_cmd(&["git", "lfs", "version"]);
            w.line(&git.remote_line(&["lfs", "pull"]));
            w.end_if();
        }
    } else {
        w.notice("Skipping Git checkout");
    }

    match settings.submodule_strategy {
        SubmoduleStrategy::None => w.notice("Skipping Git submodules setup"),
        SubmoduleStrategy::Normal => write_submodules(w, &git, false),
        SubmoduleStrategy::Recursive => write_submodules(w, &git, true),
    }

    write_post_hooks(w, sc, hook("post_get_sources_script"));
    Ok(())
}

/// `Fetching changes…`, with the depth when there is one.
fn write_fetch_notice(w: &mut BashWriter, job: &JobResponse) {
    w.notice(&fetch_notice(job));
}

fn fetch_notice(job: &JobResponse) -> String {
    match job.git_info.depth {
        0 => "Fetching changes...".to_owned(),
        depth => format!("Fetching changes with git depth set to {depth}..."),
    }
}

fn write_checkout_notice(w: &mut BashWriter, job: &JobResponse) {
    w.notice(&checkout_notice(job));
}

fn checkout_notice(job: &JobResponse) -> String {
    let sha = job.git_info.sha.as_str();
    let target = if sha.is_empty() { "FETCH_HEAD" } else { sha };
    let short: String = target.chars().take(8).collect();
    format!(
        "Checking out {short} as detached HEAD (ref is {})...",
        job.git_info.r#ref
    )
}

/// When the runner's prepared checkout is what this job would fetch: the steps that give the job a
/// copy of it, with the notices of a fetch into a new directory.
fn prepared_copy(sc: &ScriptContext<'_>, git: &Git<'_>) -> Option<Vec<Op>> {
    let prepared = sc
        .ctx
        .prepared_checkout
        .as_ref()
        .filter(|p| p.serves(sc.job, sc.ctx, sc.settings))?;
    let mut ops = vec![
        Op::MakeDir(sc.paths.tmp_dir.clone()),
        Op::WriteFile {
            path: git.config.clone(),
            content: external_config(git).text(),
        },
        Op::Message(Message::notice(fetch_notice(sc.job))),
    ];
    ops.extend(prepared.copy_ops(&sc.paths.project_dir, &git.config));
    ops.extend([
        Op::Message(Message::notice("Created fresh repository.")),
        Op::Message(Message::notice(checkout_notice(sc.job))),
        Op::Message(Message::notice("Skipping Git submodules setup")),
    ]);
    Some(ops)
}

/// get_sources as simple steps, when it is only a copy of the prepared checkout: no hooks run, so
/// nothing needs the job's variables or a shell.
pub(crate) fn get_sources_ops(sc: &ScriptContext<'_>) -> Option<StageOps> {
    let hooks = sc.job.hooks.iter().any(|h| {
        matches!(
            h.name.as_str(),
            "pre_get_sources_script" | "post_get_sources_script"
        ) && h.script.iter().any(|c| !c.trim().is_empty())
    });
    let runner_hooks = [
        &sc.ctx.pre_get_sources_script,
        &sc.ctx.post_get_sources_script,
    ]
    .iter()
    .any(|s| s.as_deref().is_some_and(|c| !c.trim().is_empty()));
    if hooks || runner_hooks {
        return None;
    }
    let remote = Remote::for_job(sc.job, sc.ctx.clone_url.as_deref());
    let git = Git {
        remote,
        config: format!("{}/{GIT_CONFIG_FILE}", sc.paths.tmp_dir),
        token_env: String::new(),
        sc,
    };
    prepared_copy(sc, &git).map(|ops| StageOps { ops })
}

/// The job's post_get_sources hook, then config.toml's `post_get_sources_script`.
fn write_post_hooks(w: &mut BashWriter, sc: &ScriptContext<'_>, mut post: Vec<String>) {
    post.extend(sc.ctx.post_get_sources_script.iter().cloned());
    post.retain(|c| !c.trim().is_empty());
    w.user_commands(&post);
}

/// `-c` value for git's user agent in fetches.
pub(crate) fn user_agent_config(ctx: &crate::context::RunnerContext) -> String {
    format!(
        "http.userAgent=glrunner {} {}",
        ctx.version,
        crate::variables::executable_arch()
    )
}

/// `include.path = <file>` in `target`, replacing an earlier include of the same file.
fn include_git_config(w: &mut BashWriter, target: &str, file: &str) {
    w.command(&[
        "git",
        "config",
        "--file",
        target,
        "--replace-all",
        "include.path",
        file,
        &include_pattern(),
    ]);
}

/// A value pattern matching includes of the external config, wherever the temp dir is.
fn include_pattern() -> String {
    format!("{}$", GIT_CONFIG_FILE.replace('.', "\\."))
}

/// The template (new repositories include the external config) and the external config itself:
/// credential helper, GitLab's CA and the HTTPS rewrites of `GIT_SUBMODULE_FORCE_HTTPS`. Both files
/// are written whole (what `git config -f` would leave in them), so setting them up starts no process.
fn write_git_config(w: &mut BashWriter, git: &Git<'_>, template: &str) {
    let template_config = format!("{template}/config");
    w.mkdir(template);
    w.write_file(&template_config, &template_config_text(&git.config));
    w.write_file(&git.config, &external_config(git).text());
}

/// The config of new repositories: gitlab-runner's template settings and the external config.
fn template_config_text(external: &str) -> String {
    new_repository_config(Some(external), None)
}

/// gitlab-runner's template settings, the include of the external config, and the `origin` remote
/// `git remote add` writes.
pub(crate) fn new_repository_config(external: Option<&str>, origin: Option<&str>) -> String {
    let mut c = GitConfig::default();
    for (section, key, value) in [
        ("init", "defaultBranch", "none"),
        ("fetch", "recurseSubmodules", "false"),
        ("credential", "interactive", "never"),
        ("gc", "autoDetach", "false"),
    ] {
        c.add(section, None, key, value);
    }
    if let Some(external) = external {
        c.add("include", None, "path", external);
    }
    if let Some(url) = origin {
        c.add("remote", Some("origin"), "url", url);
        c.add(
            "remote",
            Some("origin"),
            "fetch",
            "+refs/heads/*:refs/remotes/origin/*",
        );
    }
    c.text()
}

/// An `[include]` of the external config, to append to a repository's config.
pub(crate) fn include_config(external: &str) -> String {
    let mut c = GitConfig::default();
    c.add("include", None, "path", external);
    c.text()
}

/// The external config: credential helper, GitLab's CA and the HTTPS rewrites.
fn external_config(git: &Git<'_>) -> GitConfig {
    let sc = git.sc;
    let mut c = GitConfig::default();
    // The remote's host, and GitLab's own when clone_url points elsewhere (submodules may live there).
    let mut bases: Vec<String> = git.remote.base.iter().cloned().collect();
    if let Some(b) = http_base(&sc.helper.gitlab_url)
        && !bases.contains(&b)
    {
        bases.push(b);
    }
    if git.remote.has_credentials() {
        let user = git.remote.username.as_deref().unwrap_or("gitlab-ci-token");
        for base in &bases {
            // The empty entry first clears helpers configured elsewhere for this host.
            c.add("credential", Some(base), "helper", "");
            c.add("credential", Some(base), "helper", CREDENTIAL_HELPER);
            c.add("credential", Some(base), "username", user);
        }
    }
    if sc
        .variables
        .get(crate::variables::CA_FILE_VARIABLE)
        .is_some()
    {
        let ca = sc.variables.file_path(crate::variables::CA_FILE_VARIABLE);
        for base in &bases {
            c.add("http", Some(base), "sslCAInfo", &ca);
        }
    }
    if sc.settings.submodule_force_https
        && let Some(https_base) = force_https_base(git)
    {
        for (replacement, original) in ssh_rewrites(&https_base, sc) {
            c.add("url", Some(&replacement), "insteadOf", &original);
        }
    }
    c
}

/// A git config file written as a whole: sections in the order their first entry was added, each
/// entry with git's quoting.
#[derive(Debug, Default)]
struct GitConfig {
    sections: Vec<ConfigSection>,
}

/// `[name "subsection"]` and its `key = value` entries.
#[derive(Debug)]
struct ConfigSection {
    name: String,
    subsection: Option<String>,
    entries: Vec<(String, String)>,
}

impl GitConfig {
    fn add(&mut self, section: &str, subsection: Option<&str>, key: &str, value: &str) {
        let entry = (key.to_owned(), value.to_owned());
        match self
            .sections
            .iter_mut()
            .find(|s| s.name == section && s.subsection.as_deref() == subsection)
        {
            Some(s) => s.entries.push(entry),
            None => self.sections.push(ConfigSection {
                name: section.to_owned(),
                subsection: subsection.map(str::to_owned),
                entries: vec![entry],
            }),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            match &s.subsection {
                Some(sub) => out.push_str(&format!("[{} \"{}\"]\n", s.name, quote_subsection(sub))),
                None => out.push_str(&format!("[{}]\n", s.name)),
            }
            for (key, value) in &s.entries {
                out.push_str(&format!("\t{key} = {}\n", config_value(value)));
            }
        }
        out
    }
}

/// A subsection name inside `"…"`: only `"` and `\` need a backslash.
fn quote_subsection(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A value as git reads it back byte for byte: `\`, `"`, newline and tab escaped, and the whole value
/// in double quotes when it holds a comment character or starts or ends with whitespace.
fn config_value(v: &str) -> String {
    let mut escaped = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            c => escaped.push(c),
        }
    }
    let quote = v.is_empty()
        || v.contains([';', '#'])
        || v.starts_with(char::is_whitespace)
        || v.ends_with(char::is_whitespace);
    if quote {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// The HTTPS base `git@` submodule URLs are rewritten to: `clone_url`, else GitLab's URL.
fn force_https_base(git: &Git<'_>) -> Option<String> {
    let candidates = [
        git.sc.ctx.clone_url.as_deref(),
        Some(git.sc.helper.gitlab_url.as_str()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|u| u.trim_end_matches('/'))
        .find(|u| http_base(u).is_some())
        .map(str::to_owned)
}

/// gitlab-runner's SSH-to-HTTPS rewrites: `git@<ssh host>:` and `ssh://git@<ssh host>[:port]`.
fn ssh_rewrites(base: &str, sc: &ScriptContext<'_>) -> Vec<(String, String)> {
    let value = |k: &str| sc.variables.value(k).filter(|v| !v.is_empty());
    let host = value("CI_SERVER_SHELL_SSH_HOST")
        .or_else(|| value("CI_SERVER_HOST"))
        .map(str::to_owned)
        .or_else(|| url::Url::parse(base).ok()?.host_str().map(str::to_owned));
    let Some(host) = host else {
        return Vec::new();
    };
    match value("CI_SERVER_SHELL_SSH_PORT") {
        None | Some("22") => vec![
            (format!("{base}/"), format!("git@{host}:")),
            (base.to_owned(), format!("ssh://git@{host}")),
        ],
        Some(port) => vec![(base.to_owned(), format!("ssh://git@{host}:{port}"))],
    }
}

fn write_submodules<'a>(w: &mut BashWriter, git: &'a Git<'a>, recursive: bool) {
    let settings = git.sc.settings;
    let depth = settings
        .submodule_depth
        .unwrap_or(git.sc.job.git_info.depth);
    w.notice(&match (recursive, depth) {
        (true, 0) => "Updating/initializing submodules recursively...".to_owned(),
        (true, d) => {
            format!("Updating/initializing submodules recursively with git depth set to {d}...")
        }
        (false, 0) => "Updating/initializing submodules...".to_owned(),
        (false, d) => format!("Updating/initializing submodules with git depth set to {d}..."),
    });
    let mut pathspec: Vec<&str> = Vec::new();
    if !settings.submodule_paths.is_empty() {
        pathspec.push("--");
        pathspec.extend(settings.submodule_paths.iter().map(String::as_str));
    }
    let mut sync = vec!["git", "submodule", "sync"];
    let mut update = vec!["submodule", "update", "--init"];
    let mut foreach = vec!["git", "submodule", "foreach"];
    if recursive {
        sync.push("--recursive");
        update.push("--recursive");
        foreach.push("--recursive");
    }
    sync.extend(&pathspec);
    let depth_text = depth.to_string();
    if depth > 0 {
        update.extend(["--depth", &depth_text]);
    }
    update.extend(settings.submodule_update_flags.iter().map(String::as_str));
    update.extend(&pathspec);
    let clean_flags: Vec<&str> = if settings.git_clean_flags.is_empty() {
        vec!["-ffdx"]
    } else {
        settings
            .git_clean_flags
            .iter()
            .map(String::as_str)
            .collect()
    };
    let with = |tail: &[&'a str]| -> Vec<&'a str> {
        let mut v = foreach.clone();
        v.extend(tail);
        v
    };
    let mut clean = vec!["git", "clean"];
    clean.extend(&clean_flags);

    // init before sync, so .git/config knows every submodule; sync picks up URL changes.
    w.command(&["git", "submodule", "init"]);
    w.command(&sync);
    w.command(&with(&clean));
    w.command(&with(&["git", "reset", "--hard"]));
    let update_line = git.remote_line(&update);
    w.if_line(&update_line);
    w.notice("Updated submodules");
    w.command(&sync);
    w.else_();
    w.warning("Updating submodules failed. Retrying...");
    w.command(&sync);
    w.line(&Git::with_hint(&update_line, SUBMODULE_HINT));
    w.command(&with(&["git", "reset", "--hard"]));
    w.end_if();
    w.command(&with(&clean));

    // Scripts that run git inside a submodule authenticate like the superproject.
    w.notice("Configuring submodules to use parent git credentials...");
    let pattern = include_pattern();
    w.command(&[
        "git",
        "submodule",
        "foreach",
        "--recursive",
        "git",
        "config",
        "--replace-all",
        "include.path",
        &git.config,
        &pattern,
    ]);

    if !settings.lfs_skip_smudge {
        w.if_cmd(&["git", "lfs", "version"]);
        w.notice("Pulling LFS files...");
        let mut lfs: Vec<&str> = foreach[1..].to_vec();
        lfs.extend(["git", "lfs", "pull"]);
        w.line(&git.remote_line(&lfs));
        w.end_if();
    }
}

/// The clear_worktree script: before get_sources is retried, remove tracked and untracked files, which
/// also clears submodules in a state `git clean` cannot fix.
pub(crate) fn write_clear_worktree(w: &mut BashWriter, sc: &ScriptContext<'_>) {
    let project_dir = sc.paths.project_dir.as_str();
    w.notice("Deleting tracked and untracked files...");
    // Only a checkout of its own: git would otherwise find a repository in a parent directory.
    w.if_dir(&format!("{project_dir}/.git"));
    w.cd(project_dir);
    w.command(&["git", "rm", "-rf", "--ignore-unmatch", "--quiet", "."]);
    w.command(&["git", "clean", "-ffdx", "-q"]);
    w.end_if();
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

    /// The get_sources body for `job` with the settings `variables` give (less `adjust`).
    fn script_for(
        job: &JobResponse,
        variables: &[(&str, &str)],
        adjust: impl FnOnce(&mut crate::settings::JobSettings),
    ) -> Result<String, ScriptError> {
        let ctx = crate::context::RunnerContext::default();
        let mut vars = crate::variables::Variables::new();
        vars.add(crate::paths::TEMP_PROJECT_DIR_VARIABLE, "/b/p.tmp");
        for (k, v) in variables {
            vars.add(k, *v);
        }
        let mut settings = crate::settings::JobSettings::from_variables(&vars, false, &ctx);
        adjust(&mut settings);
        let paths = crate::paths::JobPaths {
            builds_dir: "/b".into(),
            project_dir: "/b/p".into(),
            tmp_dir: "/b/p.tmp".into(),
        };
        let helper = crate::helper::HelperSetup::default();
        let sc = ScriptContext {
            job,
            ctx: &ctx,
            variables: &vars,
            paths: &paths,
            settings: &settings,
            options: Default::default(),
            helper: &helper,
        };
        let mut w = BashWriter::default();
        write_get_sources(&mut w, &sc)?;
        Ok(w.body().to_owned())
    }

    #[test]
    fn lfs_follows_git_lfs_skip_smudge() {
        let j = job("https://gitlab-ci-token:glcbt-64_tok@h/acme/demo.git");
        let recursive = [("GIT_SUBMODULE_STRATEGY", "recursive")];
        let body = script_for(&j, &recursive, |_| {}).unwrap();
        assert!(body.contains("export GIT_LFS_SKIP_SMUDGE=1"));
        assert_eq!(
            body.matches(" lfs pull").count(),
            2,
            "repository and submodules"
        );
        let body = script_for(&j, &recursive, |s| s.lfs_skip_smudge = true).unwrap();
        assert!(!body.contains("GIT_LFS_SKIP_SMUDGE=1"), "{body}");
        assert!(!body.contains("lfs pull"), "{body}");
    }

    #[test]
    fn an_exclude_pathspec_without_a_path_is_refused() {
        let j = job("https://h/acme/demo.git");
        let vars = [
            ("GIT_SUBMODULE_STRATEGY", "normal"),
            ("GIT_SUBMODULE_PATHS", ":(exclude) libs/big"),
        ];
        let err = script_for(&j, &vars, |_| {}).unwrap_err();
        assert!(err.to_string().contains(":(exclude)libs/big"), "{err}");
        let vars = [
            ("GIT_SUBMODULE_STRATEGY", "normal"),
            ("GIT_SUBMODULE_PATHS", ":(exclude)libs/big"),
        ];
        let body = script_for(&j, &vars, |_| {}).unwrap();
        assert!(body.contains("-- $':(exclude)libs/big'"), "{body}");
    }

    #[test]
    fn config_files_read_back_through_git_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("conf");
        let tricky = [
            "",
            "plain",
            CREDENTIAL_HELPER,
            " leading and trailing ",
            "semi;colon #hash",
            "back\\slash \"quotes\"",
            "tab\tand\nnewline",
            "/path with spaces/ca.pem",
        ];
        let mut c = GitConfig::default();
        c.add("include", None, "path", "/tmp/p.tmp/.glrunner-git.conf");
        for v in tricky {
            c.add("credential", Some("https://h.example:8443"), "helper", v);
        }
        c.add("url", Some("https://h/\"odd\\"), "insteadOf", "git@h:");
        c.add("url", Some("https://h/\"odd\\"), "insteadOf", "ssh://git@h");
        std::fs::write(&file, c.text()).unwrap();
        let get = |key: &str| {
            let out = std::process::Command::new("git")
                .args([
                    "config",
                    "-f",
                    file.to_str().unwrap(),
                    "--null",
                    "--get-all",
                    key,
                ])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "{key}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            text.split_terminator('\0')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(get("credential.https://h.example:8443.helper"), tricky);
        assert_eq!(get("include.path"), ["/tmp/p.tmp/.glrunner-git.conf"]);
        assert_eq!(
            get("url.https://h/\"odd\\.insteadOf"),
            ["git@h:", "ssh://git@h"]
        );
        let template = template_config_text("/b/p.tmp/.glrunner-git.conf");
        std::fs::write(&file, template).unwrap();
        assert_eq!(get("init.defaultBranch"), ["none"]);
        assert_eq!(get("fetch.recurseSubmodules"), ["false"]);
        assert_eq!(get("credential.interactive"), ["never"]);
        assert_eq!(get("gc.autoDetach"), ["false"]);
        assert_eq!(get("include.path"), ["/b/p.tmp/.glrunner-git.conf"]);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
