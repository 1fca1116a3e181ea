//! Kubernetes naming rules (RFC 1123 labels and subdomains, label keys and values) and the names
//! glrunner gives things: job pods and service containers, with gitlab-runner's service alias rules.

use rand::Rng;

/// The longest DNS label (and label value, and pod name glrunner uses).
pub const MAX_LABEL: usize = 63;
/// The longest DNS subdomain.
pub const MAX_SUBDOMAIN: usize = 253;
/// Length of the random part of a job's object names.
pub const SUFFIX_LEN: usize = 8;

/// An RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (container, volume,
/// namespace names).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters (object names, host names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN && !s.is_empty() && s.split('.').all(is_dns_label)
}

/// An RFC 1035 label (Service names): a DNS label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A label value: empty, or up to 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= MAX_LABEL
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Why a label or annotation key is invalid, or `None` when it is valid: an optional DNS subdomain
/// prefix and `/`, then a name of up to 63 `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some("the part before `/` must be a lower-case DNS name such as example.com");
    }
    if name.is_empty() || !is_label_value(name) {
        return Some(
            "the name must be 1-63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit",
        );
    }
    None
}

/// `s` made into a label value: characters outside `[A-Za-z0-9_.-]` become `_`, the result is cut to
/// 63 and stripped of leading and trailing non-alphanumerics (gitlab-runner's label sanitising).
pub fn sanitize_label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `s` lower-cased with every run of characters outside `[a-z0-9]` turned into one `-`, trimmed of `-`.
pub fn sanitize_dns(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Eight random characters from `[a-z0-9]`, the unique part of a job's object names.
pub fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..SUFFIX_LEN)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// gitlab-runner's `ProjectUniqueName`: `runner-<short token>-project-<id>-concurrent-<n>`.
pub fn project_unique_name(short_token: &str, project_id: i64, concurrent: usize) -> String {
    format!("runner-{short_token}-project-{project_id}-concurrent-{concurrent}")
}

/// A job's pod name: the project unique name, RFC 1123-cleaned and cut so that with `-<suffix>` it
/// stays within 63 characters.
pub fn pod_name(unique_name: &str, suffix: &str) -> String {
    let mut prefix = sanitize_dns(unique_name);
    let room = MAX_LABEL - suffix.len() - 1;
    if prefix.len() > room {
        prefix.truncate(room);
    }
    let prefix = prefix.trim_end_matches('-');
    if prefix.is_empty() {
        format!("runner-{suffix}")
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// The names a service is known by, in order: its explicit aliases (space or comma separated), then
/// the two names derived from its image as gitlab-runner derives them (`tutum/wordpress:latest` →
/// `tutum-wordpress` and `tutum__wordpress`). Callers keep the ones that are valid for their use.
pub fn service_aliases(image: &str, alias: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = alias
        .unwrap_or_default()
        .split([' ', ',', '\t', '\n'])
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let name = image_without_tag(image);
    if !name.is_empty() {
        for derived in [name.replace('/', "-"), name.replace('/', "__")] {
            if !out.contains(&derived) {
                out.push(derived);
            }
        }
    }
    out
}

/// `registry:5000/group/name:tag@sha256:…` → `registry:5000/group/name`.
pub fn image_without_tag(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(n, _)| n);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => &image[..last_slash + i],
        None => image,
    }
}

/// Whether an image reference names one fixed version: a digest, or a tag other than `latest`.
pub fn is_pinned_image(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let name = image_without_tag(image);
    match image.get(name.len() + 1..) {
        Some(tag) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rules() {
        assert!(is_dns_label("svc-0"));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "tutum__wordpress"] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        assert!(is_dns_subdomain("reg.io-grp-svc"));
        assert!(is_dns_subdomain("gitlab.internal.example"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain("reg.io:5000-grp"));
        assert!(is_dns1035_label("runner-x"));
        assert!(!is_dns1035_label("1runner"));
    }

    #[test]
    fn label_rules() {
        assert!(is_label_value(""));
        assert!(is_label_value("s_0123456789ab"));
        assert!(is_label_value("A.b-c_D"));
        assert!(!is_label_value("_a"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert_eq!(label_key_problem("team"), None);
        assert_eq!(label_key_problem("example.com/team"), None);
        assert!(label_key_problem("Example.com/team").is_some());
        assert!(label_key_problem("example.com/").is_some());
        assert!(label_key_problem("a/b/c").is_some());
        assert_eq!(sanitize_label_value("acme/sub group"), "acme_sub_group");
        assert_eq!(sanitize_label_value("__x__"), "x");
        assert_eq!(sanitize_label_value(&"é".repeat(70)), "");
        assert_eq!(sanitize_label_value(&"b".repeat(70)).len(), 63);
    }

    #[test]
    fn pod_names_fit_in_a_label() {
        let unique = project_unique_name("AbC_12345", 42, 3);
        assert_eq!(unique, "runner-AbC_12345-project-42-concurrent-3");
        let name = pod_name(&unique, "x1y2z3w4");
        assert_eq!(name, "runner-abc-12345-project-42-concurrent-3-x1y2z3w4");
        let long = project_unique_name("abcdefghi", 1234567890123, 1234567890);
        let name = pod_name(&long, "aaaaaaaa");
        assert!(name.len() <= 63 && is_dns_label(&name), "{name}");
        assert!(name.ends_with("-aaaaaaaa"));
        let s = random_suffix();
        assert_eq!(s.len(), 8);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(
            random_suffix(),
            random_suffix(),
            "36^8 values: a clash is a bug"
        );
    }

    #[test]
    fn alias_rules_like_gitlab_runner() {
        assert_eq!(
            service_aliases("tutum/wordpress:latest", None),
            ["tutum-wordpress", "tutum__wordpress"]
        );
        assert_eq!(service_aliases("postgres:14", None), ["postgres"]);
        assert_eq!(
            service_aliases("reg.io/grp/svc:1", Some("db, cache  other")),
            ["db", "cache", "other", "reg.io-grp-svc", "reg.io__grp__svc"]
        );
        assert_eq!(
            service_aliases("localhost:5000/x/y@sha256:abc", None),
            ["localhost:5000-x-y", "localhost:5000__x__y"]
        );
    }

    #[test]
    fn pinned_images() {
        assert!(is_pinned_image("registry.example/glrunner:0.1.0"));
        assert!(is_pinned_image("alpine@sha256:0123"));
        assert!(!is_pinned_image("alpine"));
        assert!(!is_pinned_image("alpine:latest"));
        assert!(!is_pinned_image("localhost:5000/alpine"));
        assert!(is_pinned_image("localhost:5000/alpine:3"));
    }
}
