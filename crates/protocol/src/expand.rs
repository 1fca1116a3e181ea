//! How `$NAME` and `${NAME}` references in job variables are expanded — by the runner (Go's `os.Expand`
//! rules, which gitlab-runner applies to job variables and to `url`/`token` in config.toml) and by GitLab
//! before it sends a payload (undefined references are kept as written).

/// The result of a runner-side expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// Names referenced but not defined (they expanded to the empty string), once each, in order.
    pub undefined: Vec<String>,
}

/// Expands `$NAME` and `${NAME}` with Go's `os.Expand` rules: undefined names become empty; a name is a
/// run of ASCII letters, digits and `_`; `$` followed by one of `*#$@!?-` or a digit is a one-character
/// special name; `${}` and an unclosed `${` are dropped; a `$` followed by anything else (or at the
/// end) stays as it is.
pub fn runner_expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> Expanded {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut undefined: Vec<String> = Vec::new();
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

/// The name after a `$` and how many bytes it spans (Go's `getShellName`).
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

/// GitLab's server-side expansion (`keep_undefined: true`): `$NAME` and `${NAME}` whose `lookup` gives
/// a value are replaced; every other reference, an empty name and an unclosed `${` stay as written.
/// `lookup` may fail (e.g. on a reference cycle), which stops the expansion.
pub fn gitlab_expand<E>(
    input: &str,
    mut lookup: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = if name.is_empty() { None } else { lookup(name)? };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[dollar..dollar + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("gitlab.example.com".into()),
            "A" => Some("1".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    #[test]
    fn runner_expansion_follows_go() {
        let ex = |s: &str| runner_expand(s, env).value;
        assert_eq!(ex("https://$HOST/x"), "https://gitlab.example.com/x");
        assert_eq!(ex("${HOST}:443"), "gitlab.example.com:443");
        assert_eq!(ex("a$MISSING-b"), "a-b");
        assert_eq!(ex("$1$"), "one$");
        assert_eq!(ex("x${}y"), "xy");
        assert_eq!(ex("x${HOST"), "xHOST");
        assert_eq!(ex("100%$ "), "100%$ ");
        assert_eq!(runner_expand("$M $M $N", env).undefined, ["M", "N"]);
    }

    #[test]
    fn gitlab_expansion_keeps_undefined_references() {
        let ex = |s: &str| gitlab_expand(s, |n| Ok::<_, Infallible>(env(n))).unwrap();
        assert_eq!(ex("$A-${A}-$B-${B}"), "1-1-$B-${B}");
        assert_eq!(ex("$ ${ ${}"), "$ ${ ${}");
        assert_eq!(ex("end$"), "end$");
        let stopped = gitlab_expand("$A", |_| Err::<Option<String>, _>("cycle"));
        assert_eq!(stopped, Err("cycle"));
    }
}
