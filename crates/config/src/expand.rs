//! `$VAR` / `${VAR}` expansion with the rules of Go's `os.ExpandEnv`, which gitlab-runner applies to
//! `url` and `token` at load.

pub use glrunner_protocol::expand::Expanded;

/// Expands `$NAME` and `${NAME}` using `lookup`; undefined names become empty, like Go
/// (see [`glrunner_protocol::expand::runner_expand`]).
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Expanded {
    glrunner_protocol::expand::runner_expand(input, lookup)
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
