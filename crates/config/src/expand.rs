//! `$VAR` / `${VAR}` expansion with the rules of Go's `os.ExpandEnv`, which gitlab-runner applies to
//! `url` and `token` at load.

/// The result of expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// Variables referenced but not defined (they expanded to the empty string).
    pub undefined: Vec<String>,
}

/// Expands `$NAME` and `${NAME}` using `lookup`; undefined names become empty, like Go.
///
/// Go's details are kept: a name is a run of ASCII letters, digits and `_`; `$` followed by one of
/// `*#$@!?-` or a digit is a one-character special name; `${}` and an unclosed `${` are dropped; a `$`
/// followed by anything else (or at the end) stays as it is.
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Expanded {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut undefined = Vec::new();
    let mut copied_to = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&input[copied_to..j]);
            let (name, width) = shell_name(&input[j + 1..]);
            match name {
                Some(name) => match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        if !undefined.iter().any(|u| u == name) {
                            undefined.push(name.to_owned());
                        }
                    }
                },
                // Valid syntax but no name: keep the dollar.
                None if width == 0 => out.push('$'),
                // Bad syntax: the characters are eaten.
                None => {}
            }
            j += width;
            copied_to = j + 1;
        }
        j += 1;
    }
    out.push_str(&input[copied_to..]);
    Expanded {
        value: out,
        undefined,
    }
}

/// The name after a `$` and how many bytes it spans.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2),
            Some(i) => (Some(&s[1..=i]), i + 2),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[0..1]), 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

fn is_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("gitlab.example.com".into()),
            "TOKEN" => Some("glrt-abc".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> String {
        expand_env(s, &env).value
    }

    #[test]
    fn expands_like_go_os_expand_env() {
        assert_eq!(ex("https://$HOST/"), "https://gitlab.example.com/");
        assert_eq!(
            ex("https://${HOST}:8443"),
            "https://gitlab.example.com:8443"
        );
        assert_eq!(ex("${TOKEN}"), "glrt-abc");
        assert_eq!(ex("$TOKEN$TOKEN"), "glrt-abcglrt-abc");
        assert_eq!(ex("a$1b"), "aoneb");
        assert_eq!(ex("${1}"), "one");
        assert_eq!(ex("cost: 5$"), "cost: 5$");
        assert_eq!(ex("a$ b"), "a$ b");
        assert_eq!(ex("a${}b"), "ab");
        assert_eq!(ex("a${HOST"), "aHOST");
        assert_eq!(ex("no vars"), "no vars");
        assert_eq!(ex("ünïcödé $HOST ✓"), "ünïcödé gitlab.example.com ✓");
    }

    #[test]
    fn reports_undefined_names_once() {
        let e = expand_env("$MISSING-${MISSING}-$HOST", &env);
        assert_eq!(e.value, "--gitlab.example.com");
        assert_eq!(e.undefined, vec!["MISSING".to_owned()]);
    }
}
