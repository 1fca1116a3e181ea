//! The files git reports as untracked, found like gitlab-runner does with `git ls-files -o -z` in the
//! project directory: untracked and ignored files alike, each file of an untracked directory listed
//! on its own, paths relative to the project directory.

use std::path::Path;
use std::process::{Command, Stdio};

/// What `git ls-files -o` reported.
#[derive(Debug, Default)]
pub(crate) struct Untracked {
    pub files: Vec<String>,
    /// Names that are not UTF-8; archives here name entries by UTF-8 paths.
    pub unreadable: Vec<String>,
}

/// Runs git in `dir`. The error is the text gitlab-runner prints after `untracked: `.
pub(crate) fn list(dir: &Path) -> Result<Untracked, String> {
    let output = Command::new("git")
        .args(["ls-files", "-o", "-z"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "exec: \"git\": executable file not found in $PATH (install git in the image that \
                 runs the helper, or drop `untracked: true`)"
                    .to_owned()
            } else {
                format!("running git ls-files: {e}")
            }
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = stderr.lines().next().unwrap_or("").trim();
        let code = output.status.code().map_or_else(
            || "killed by a signal".to_owned(),
            |c| format!("exit status {c}"),
        );
        return Err(if detail.is_empty() {
            code
        } else {
            format!("{code}: {detail}")
        });
    }
    let mut found = Untracked::default();
    for name in output.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        match std::str::from_utf8(name) {
            Ok(s) => found.files.push(s.to_owned()),
            Err(_) => found
                .unreadable
                .push(String::from_utf8_lossy(name).into_owned()),
        }
    }
    Ok(found)
}
