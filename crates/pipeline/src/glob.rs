//! The two path-pattern dialects GitLab uses, compiled to [`regex::Regex`]:
//! - [`Glob::fnmatch`]: Ruby's `File.fnmatch?` with `FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB`, used by
//!   `rules:exists`, `rules:changes` and `only/except:changes`: `*` and `?` stay inside one directory,
//!   `**/` spans any number of directories, `[...]` classes, `{a,b}` alternatives, dot files match.
//! - [`Glob::wildcard_path`]: the repository's wildcard search behind `include: local` and
//!   `cache:key:files`: `**` matches anything (slashes included), `*` anything but a slash, the rest is
//!   literal.

use regex::Regex;

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a valid file pattern: {reason}")]
pub struct GlobError {
    pub pattern: String,
    pub reason: String,
}

impl Glob {
    /// Ruby `File.fnmatch?` semantics (see the module docs).
    pub fn fnmatch(pattern: &str) -> Result<Self, GlobError> {
        let error = |reason: &str| GlobError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        let chars: Vec<char> = pattern.chars().collect();
        let mut out = String::from("^");
        let mut i = 0;
        let mut braces = 0usize;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*')
                    && chars.get(i + 2) == Some(&'/')
                    && (i == 0 || chars[i - 1] == '/') =>
                {
                    // `**/` is zero or more whole directories.
                    out.push_str("(?:[^/]*/)*");
                    i += 3;
                    continue;
                }
                '*' => out.push_str("[^/]*"),
                '?' => out.push_str("[^/]"),
                '[' => {
                    let close =
                        class_end(&chars, i).ok_or_else(|| error("a `[` is never closed"))?;
                    out.push_str(&class(&chars[i + 1..close]));
                    i = close + 1;
                    continue;
                }
                '{' => {
                    braces += 1;
                    out.push_str("(?:");
                }
                ',' if braces > 0 => out.push('|'),
                '}' if braces > 0 => {
                    braces -= 1;
                    out.push(')');
                }
                '\\' => {
                    i += 1;
                    match chars.get(i) {
                        Some(next) => out.push_str(&regex::escape(&next.to_string())),
                        None => out.push_str(&regex::escape("\\")),
                    }
                }
                other => out.push_str(&regex::escape(&other.to_string())),
            }
            i += 1;
        }
        if braces > 0 {
            return Err(error("a `{` is never closed"));
        }
        out.push('$');
        Self::compile(pattern, &out)
    }

    /// Repository wildcard search semantics (see the module docs).
    pub fn wildcard_path(pattern: &str) -> Result<Self, GlobError> {
        let mut out = String::from("^");
        let mut rest = pattern;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("**") {
                out.push_str(".*?");
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                out.push_str("[^/]*?");
                rest = after;
            } else {
                let next = rest.find('*').unwrap_or(rest.len());
                out.push_str(&regex::escape(&rest[..next]));
                rest = &rest[next..];
            }
        }
        out.push('$');
        Self::compile(pattern, &out)
    }

    fn compile(pattern: &str, regex: &str) -> Result<Self, GlobError> {
        Regex::new(regex)
            .map(|regex| Self {
                pattern: pattern.to_owned(),
                regex,
            })
            .map_err(|e| GlobError {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has no wildcard at all (GitLab then compares paths exactly).
    pub fn is_literal(pattern: &str) -> bool {
        !pattern.contains(['*', '?', '[', '{'])
    }
}

/// The index of the `]` closing the class opened at `open`; a `]` right after `[` or `[!` is literal.
fn class_end(chars: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(chars.get(i), Some('!' | '^')) {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            ']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A bracket class as a regex class that never matches `/` (`FNM_PATHNAME`).
fn class(body: &[char]) -> String {
    let (negated, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut out = String::from(if negated { "[^/" } else { "[" });
    let mut i = 0;
    while i < body.len() {
        let c = if body[i] == '\\' && i + 1 < body.len() {
            i += 1;
            body[i]
        } else {
            body[i]
        };
        if c == '-' && i > 0 && i + 1 < body.len() {
            out.push('-');
        } else if c == '/' && !negated {
            // A class never matches a slash under FNM_PATHNAME; keep the class well formed.
        } else {
            out.push_str(&regex::escape(&c.to_string()));
        }
        i += 1;
    }
    if out == "[" {
        // Nothing can match: an empty class.
        return "[^\\s\\S]".to_owned();
    }
    out.push(']');
    if negated { out } else { format!("(?:{out})") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnmatch(pattern: &str, path: &str) -> bool {
        Glob::fnmatch(pattern).unwrap().is_match(path)
    }

    fn wildcard(pattern: &str, path: &str) -> bool {
        Glob::wildcard_path(pattern).unwrap().is_match(path)
    }

    #[test]
    fn fnmatch_like_ruby_with_pathname_dotmatch_and_extglob() {
        assert!(fnmatch("*.md", "README.md"));
        assert!(
            !fnmatch("*.md", "docs/README.md"),
            "`*` stays in one directory"
        );
        assert!(fnmatch("**/*.md", "README.md"), "`**/` may be no directory");
        assert!(fnmatch("**/*.md", "docs/a/b/README.md"));
        assert!(fnmatch("docs/**/*.md", "docs/x.md"));
        assert!(fnmatch("*", ".hidden"), "dot files match");
        assert!(fnmatch("src/{lib,main}.rs", "src/main.rs"));
        assert!(!fnmatch("src/{lib,main}.rs", "src/mod.rs"));
        assert!(fnmatch("file?.txt", "file1.txt"));
        assert!(!fnmatch("file?.txt", "file/.txt"));
        assert!(fnmatch("v[0-9].txt", "v7.txt"));
        assert!(fnmatch("v[!0-9].txt", "vx.txt"));
        assert!(!fnmatch("v[!0-9].txt", "v7.txt"));
        assert!(
            fnmatch("a+b(c).txt", "a+b(c).txt"),
            "regex characters are literal"
        );
        assert!(Glob::fnmatch("[abc").is_err());
        assert!(Glob::fnmatch("{a,b").is_err());
    }

    #[test]
    fn wildcard_paths_like_the_repository_search() {
        assert!(wildcard("ci/*.yml", "ci/build.yml"));
        assert!(!wildcard("ci/*.yml", "ci/sub/build.yml"));
        assert!(wildcard("ci/**.yml", "ci/sub/build.yml"));
        assert!(wildcard("ci/**/*.yml", "ci/a/b/build.yml"));
        assert!(!wildcard("ci/*.yml", "ci/build.yaml"));
        assert!(wildcard("a.b", "a.b") && !wildcard("a.b", "axb"));
    }
}
