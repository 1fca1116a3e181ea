//! Default locations, as gitlab-runner chooses them: config.toml and the certificates directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The config directory for a user: `/etc/gitlab-runner` for root, `~/.gitlab-runner` otherwise, the
/// working directory when there is no home.
pub fn config_dir_for(uid: u32, home: Option<&Path>, cwd: Option<&Path>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/etc/gitlab-runner");
    }
    match (home.filter(|h| !h.as_os_str().is_empty()), cwd) {
        (Some(home), _) => home.join(".gitlab-runner"),
        (None, Some(cwd)) => cwd.to_path_buf(),
        (None, None) => PathBuf::from("."),
    }
}

/// config.toml's path: `config_file` (the `CONFIG_FILE` variable) when set, else `config.toml` in
/// [`config_dir_for`].
pub fn config_path_for(
    config_file: Option<OsString>,
    uid: u32,
    home: Option<&Path>,
    cwd: Option<&Path>,
) -> PathBuf {
    match config_file.filter(|f| !f.is_empty()) {
        Some(f) => PathBuf::from(f),
        None => config_dir_for(uid, home, cwd).join("config.toml"),
    }
}

/// The default config.toml for this process (`CONFIG_FILE`, the user id, `HOME`).
pub fn default_config_path() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cwd = std::env::current_dir().ok();
    config_path_for(
        std::env::var_os("CONFIG_FILE"),
        nix::unistd::getuid().as_raw(),
        home.as_deref(),
        cwd.as_deref(),
    )
}

/// The default directory of per-host certificates (`<host>.crt`, `<host>.auth.crt`, `<host>.auth.key`):
/// `certs` in the default config directory (not beside a `--config` file, like gitlab-runner).
pub fn default_certs_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cwd = std::env::current_dir().ok();
    config_dir_for(
        nix::unistd::getuid().as_raw(),
        home.as_deref(),
        cwd.as_deref(),
    )
    .join("certs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_like_gitlab_runner() {
        let home = Path::new("/home/ci");
        let cwd = Path::new("/srv");
        assert_eq!(
            config_path_for(None, 0, Some(home), Some(cwd)),
            Path::new("/etc/gitlab-runner/config.toml")
        );
        assert_eq!(
            config_path_for(None, 1000, Some(home), Some(cwd)),
            Path::new("/home/ci/.gitlab-runner/config.toml")
        );
        assert_eq!(
            config_path_for(None, 1000, None, Some(cwd)),
            Path::new("/srv/config.toml")
        );
        assert_eq!(
            config_path_for(Some("/cfg/runner.toml".into()), 0, Some(home), Some(cwd)),
            Path::new("/cfg/runner.toml")
        );
        assert_eq!(
            config_path_for(Some("".into()), 1000, Some(home), None),
            Path::new("/home/ci/.gitlab-runner/config.toml")
        );
    }
}
