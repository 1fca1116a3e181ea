//! Lexical path arithmetic on `/`-separated strings, with the exact rules of Go's `path.Clean`,
//! `path.Join` and `filepath.Rel`, which gitlab-runner applies to artifact paths before touching the
//! filesystem. Nothing here reads the disk.

/// Go's `path.Clean`: drops empty and `.` segments, folds `..` into the segment before it, and keeps
/// leading `..` of relative paths. `""` becomes `"."`.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                // `/..` is `/`; a relative path keeps its leading `..`.
                _ if rooted => {}
                _ => out.push(".."),
            },
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `path.Join` for two elements: empty elements are ignored and the result is cleaned.
pub(crate) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean(b),
        (false, true) => clean(a),
        (false, false) => clean(&format!("{a}/{b}")),
    }
}

/// Go's `filepath.Rel` for two absolute, cleaned paths: the path that leads from `base` to `target`.
pub(crate) fn relative(base: &str, target: &str) -> String {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let base = split(base);
    let target = split(target);
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = Vec::new();
    parts.extend(std::iter::repeat_n("..", base.len() - common));
    parts.extend(target[common..].iter().map(String::as_str));
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// Whether a cleaned relative path climbs out of its base (`..` or `../…`).
pub(crate) fn escapes(rel: &str) -> bool {
    rel == ".." || rel.starts_with("../")
}

/// Go's `filepath.Base`: the last element, trailing slashes ignored; `""` gives `"."`, `"/"` gives `"/"`.
pub(crate) fn base(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//", "/"),
            ("a/b/../c", "a/c"),
            ("foo//*.txt", "foo/*.txt"),
            ("./foo/**//*/*.*", "foo/**/*/*.*"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn join_ignores_empty_elements() {
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("", "b/"), "b");
        assert_eq!(join(".", "*.txt"), "*.txt");
        assert_eq!(join("x/..", "y"), "y");
        assert_eq!(join("", ""), "");
    }

    #[test]
    fn relative_walks_up_and_down() {
        assert_eq!(relative("/a/b", "/a/b"), ".");
        assert_eq!(relative("/a/b", "/a/b/c/d"), "c/d");
        assert_eq!(relative("/a/b", "/a"), "..");
        assert_eq!(relative("/a/b", "/a/c"), "../c");
        assert_eq!(relative("/a/b", "/"), "../..");
        assert!(escapes(&relative("/a/b", "/a/bc")));
        assert!(!escapes("..foo"));
    }

    #[test]
    fn base_matches_go() {
        assert_eq!(base(""), ".");
        assert_eq!(base("/"), "/");
        assert_eq!(base("a/b/"), "b");
        assert_eq!(base("name"), "name");
    }
}
