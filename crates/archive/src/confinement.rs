//! Path resolution inside an extraction directory: follows symlinks component by component the
//! way the kernel would, and reports when the path would leave the directory. Archive entries are
//! only ever written at places this module resolved inside it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before a path counts as a loop (Linux's limit).
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The resolved path, relative to the root; its existing part contains no symlinks.
    Inside(PathBuf),
    /// The path leaves the root, or loops.
    Outside,
}

enum Step {
    Parent,
    Name(OsString),
}

fn steps(path: &Path) -> VecDeque<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Step::Parent),
            Component::Normal(n) => Some(Step::Name(n.to_owned())),
            _ => None,
        })
        .collect()
}

/// Resolves `path` as seen from the directory `from` (relative to `root`, free of symlinks).
/// `root` must be canonical. Absolute paths count as inside only when they lie under `root`.
/// Missing components are taken literally, so a dangling link resolves to where it points.
pub(crate) fn resolve(root: &Path, from: &Path, path: &Path) -> Resolved {
    let mut cur: Vec<OsString> = from.iter().map(ToOwned::to_owned).collect();
    let mut pending = match absolute_under(root, path) {
        Some(Ok(rest)) => {
            cur.clear();
            steps(rest)
        }
        Some(Err(())) => return Resolved::Outside,
        None => steps(path),
    };
    let mut links = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Parent => {
                if cur.pop().is_none() {
                    return Resolved::Outside;
                }
            }
            Step::Name(name) => {
                let candidate: PathBuf = root
                    .iter()
                    .chain(cur.iter().map(|c| c.as_os_str()))
                    .collect::<PathBuf>()
                    .join(&name);
                let is_link =
                    fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
                if !is_link {
                    cur.push(name);
                    continue;
                }
                links += 1;
                if links > MAX_LINKS {
                    return Resolved::Outside;
                }
                let Ok(target) = fs::read_link(&candidate) else {
                    return Resolved::Outside;
                };
                let mut next = match absolute_under(root, &target) {
                    Some(Ok(rest)) => {
                        cur.clear();
                        steps(rest)
                    }
                    Some(Err(())) => return Resolved::Outside,
                    None => steps(&target),
                };
                next.extend(pending);
                pending = next;
            }
        }
    }
    Resolved::Inside(cur.into_iter().collect())
}

/// For an absolute path: `Ok(rest)` below `root`, `Err` elsewhere. `None` for relative paths.
fn absolute_under<'a>(root: &Path, path: &'a Path) -> Option<Result<&'a Path, ()>> {
    if !path.has_root() {
        return None;
    }
    Some(path.strip_prefix(root).map_err(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(t.path()).unwrap().join("root");
        fs::create_dir_all(root.join("d/e")).unwrap();
        (t, root)
    }

    #[test]
    fn plain_and_dotdot_paths() {
        let (_t, root) = setup();
        let r = |from: &str, p: &str| resolve(&root, Path::new(from), Path::new(p));
        assert_eq!(r("", "d/e"), Resolved::Inside("d/e".into()));
        assert_eq!(r("d/e", "../x"), Resolved::Inside("d/x".into()));
        assert_eq!(r("d", "../.."), Resolved::Outside);
        assert_eq!(r("", "missing/../d"), Resolved::Inside("d".into()));
    }

    #[test]
    fn symlinks_are_followed_and_escapes_seen() {
        let (_t, root) = setup();
        symlink("..", root.join("d/up")).unwrap();
        symlink("../..", root.join("d/e/upup")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink(root.join("d"), root.join("absin")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let r = |from: &str, p: &str| resolve(&root, Path::new(from), Path::new(p));
        assert_eq!(r("", "d/up"), Resolved::Inside("".into()));
        // Lexically `d/up/..` is `d`; through the link it is the parent of the root.
        assert_eq!(r("", "d/up/.."), Resolved::Outside);
        assert_eq!(r("d/e", "upup"), Resolved::Inside("".into()));
        assert_eq!(r("", "abs/passwd"), Resolved::Outside);
        assert_eq!(r("", "absin/e"), Resolved::Inside("d/e".into()));
        assert_eq!(r("", "loop1"), Resolved::Outside);
        assert_eq!(r("", "/etc"), Resolved::Outside);
    }
}
