//! Glob patterns with the semantics gitlab-runner gets from `doublestar`: `*`, `?` and `[…]` never
//! cross `/`, `**` as a whole segment matches zero or more directories, `{a,b}` alternatives nest, a
//! backslash escapes, dot files are not special, and a trailing `/**` also matches the directory
//! itself. Matching is done by `globset`; this module adds the doublestar rules it lacks and the
//! pattern splitting doublestar uses to find the literal directory a glob starts from.

use globset::{GlobBuilder, GlobMatcher};

/// doublestar's meta characters.
const META: [u8; 4] = [b'*', b'?', b'[', b'{'];

/// Whether `s` contains a meta character, escaped or not (gitlab-runner's `strings.ContainsAny`).
pub(crate) fn has_meta(s: &str) -> bool {
    s.bytes().any(|b| META.contains(&b))
}

/// Whether `s` contains an unescaped meta character (doublestar's `indexMeta != -1`).
pub(crate) fn has_unescaped_meta(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 1;
        } else if META.contains(&b[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// doublestar's `SplitPattern`: the literal directory before the first meta character (unescaped)
/// and the rest. Without a slash before the first meta character the base is `"."`.
pub(crate) fn split_pattern(p: &str) -> (String, String) {
    let b = p.as_bytes();
    let mut split = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'/' => split = Some(i),
            c if META.contains(&c) => break,
            _ => {}
        }
        i += 1;
    }
    match split {
        Some(0) => ("/".to_owned(), p[1..].to_owned()),
        Some(i) => (unescape_meta(&p[..i]), p[i + 1..].to_owned()),
        None => (".".to_owned(), p.to_owned()),
    }
}

/// Removes the backslash before escaped meta characters (`\*` → `*`, also `]` and `}`).
pub(crate) fn unescape_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, '*' | '?' | '[' | ']' | '{' | '}')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// A compiled pattern. `source` is the cleaned, `/`-separated pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    source: String,
    matcher: GlobMatcher,
    /// For `x/**`: matches `x` itself, which doublestar accepts as "zero directories".
    itself: Option<GlobMatcher>,
}

/// A pattern doublestar would reject (`syntax error in pattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern(pub String);

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Result<Self, BadPattern> {
        let matcher = build(pattern)?;
        let itself = match pattern.strip_suffix("/**") {
            Some(stem) if !stem.is_empty() => Some(build(stem)?),
            _ => None,
        };
        Ok(Self {
            source: pattern.to_owned(),
            matcher,
            itself,
        })
    }

    /// doublestar's `Match`: used for `exclude`, where a trailing `/**` also matches the name itself
    /// whatever it is.
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name) || self.itself.as_ref().is_some_and(|m| m.is_match(name))
    }

    /// doublestar's globbing: a trailing `/**` matches the directory itself only when it is a real
    /// directory (a file or symlink named `x` is not a match for `x/**`).
    pub(crate) fn matches_entry(&self, name: &str, is_real_dir: bool) -> bool {
        self.matcher.is_match(name)
            || (is_real_dir && self.itself.as_ref().is_some_and(|m| m.is_match(name)))
    }

    /// Whether the pattern can only match names with at most this many segments, so a directory
    /// walk may stop there; `None` when a `**` makes any depth possible.
    pub(crate) fn max_depth(&self) -> Option<usize> {
        if self.source.contains("**") {
            None
        } else {
            Some(self.source.bytes().filter(|&b| b == b'/').count() + 1)
        }
    }

    /// Whether the pattern matches the directory it is applied to (`**`, `**/**`, …): doublestar
    /// returns the base directory itself for those.
    pub(crate) fn matches_base(&self) -> bool {
        self.source.split('/').all(|s| s == "**")
    }
}

fn build(pattern: &str) -> Result<GlobMatcher, BadPattern> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| BadPattern(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Pattern::new(p).unwrap().matches(name)
    }

    #[test]
    fn split_pattern_matches_doublestar() {
        let s = |p: &str| split_pattern(p);
        assert_eq!(
            s("../../path/to/meta*/**"),
            ("../../path/to".into(), "meta*/**".into())
        );
        assert_eq!(s("meta*/**"), (".".into(), "meta*/**".into()));
        assert_eq!(s("/*.txt"), ("/".into(), "*.txt".into()));
        assert_eq!(s("foo/bar"), ("foo".into(), "bar".into()));
        assert_eq!(s("a\\*b/c*"), ("a*b".into(), "c*".into()));
        assert_eq!(s("plain"), (".".into(), "plain".into()));
    }

    #[test]
    fn meta_detection_respects_escapes() {
        assert!(has_meta("a\\*"));
        assert!(!has_unescaped_meta("a\\*"));
        assert!(has_unescaped_meta("a\\**"));
        assert_eq!(unescape_meta("a\\*\\[x\\]\\n"), "a*[x]\\n");
    }

    #[test]
    fn star_does_not_cross_slash() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "dir/a.txt"));
        assert!(!m("?", "/"));
        assert!(m("*", ".hidden"));
    }

    #[test]
    fn doublestar_matches_zero_or_more_directories() {
        assert!(m("**/*.log", "a.log"));
        assert!(m("**/*.log", "x/y/a.log"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(m("**", "a/b/c"));
        assert!(m("**", "."));
    }

    #[test]
    fn trailing_doublestar_matches_the_directory_itself() {
        assert!(m("foo/**", "foo"));
        assert!(m("foo/**", "foo/a/b"));
        assert!(!m("foo/**", "foobar"));
        let p = Pattern::new("foo/**").unwrap();
        assert!(p.matches_entry("foo", true));
        assert!(!p.matches_entry("foo", false));
    }

    #[test]
    fn doublestar_inside_a_segment_is_a_single_star() {
        assert!(m("a**b", "axxb"));
        assert!(!m("a**b", "ax/xb"));
        assert!(!m("a/**b", "a/x/b"));
        assert!(m("a/**b", "a/xb"));
    }

    #[test]
    fn classes_alternatives_and_escapes() {
        assert!(m("[!a]", "b"));
        assert!(m("[^a]", "b"));
        assert!(!m("[!a]x", "ax"));
        assert!(m("{a,b{c,d}}", "bd"));
        assert!(m("some{thing,}", "some"));
        assert!(m("{a/b,c}", "a/b"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
    }

    #[test]
    fn bad_patterns_are_reported() {
        assert!(Pattern::new("[").is_err());
        assert!(Pattern::new("{a,b").is_err());
    }

    #[test]
    fn depth_bounds() {
        assert_eq!(Pattern::new("*/x/*.txt").unwrap().max_depth(), Some(3));
        assert_eq!(Pattern::new("a/**/b").unwrap().max_depth(), None);
        assert!(Pattern::new("**").unwrap().matches_base());
        assert!(Pattern::new("**/**").unwrap().matches_base());
        assert!(!Pattern::new("*").unwrap().matches_base());
    }
}
