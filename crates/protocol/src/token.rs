//! Token kinds, told apart by shape before a token is ever sent (design decision 2).

use std::fmt;

/// What a token string is, judged by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `glrt-…`: a runner authentication token of a runner created in GitLab's UI or API (new workflow).
    /// Verified with a `system_id`; unregistering removes only this manager.
    RunnerAuthentication,
    /// `glrtr-…`: the authentication token GitLab returns when a runner registers with a registration token.
    RegisteredRunnerAuthentication,
    /// `t1_…`/`t2_…`/`t3_…` or an unprefixed legacy runner authentication token.
    LegacyRunnerAuthentication,
    /// `GR1348941…`: a registration token. It can only create runners, never request jobs.
    Registration,
    /// `glpat-…`: a personal (or project/group) access token.
    PersonalAccess,
    /// `glcbt-…`: a CI/CD job token.
    Job,
    /// Another GitLab token kind (deploy, trigger, feed, OAuth, …).
    OtherGitLab(&'static str),
    /// No known prefix; old runner tokens look like this, so it is accepted with a note.
    Unknown,
}

/// GitLab token prefixes that are never runner tokens, with what they are.
const OTHER_PREFIXES: &[(&str, &str)] = &[
    ("gldt-", "deploy token"),
    ("gloas-", "OAuth application secret"),
    ("glptt-", "pipeline trigger token"),
    ("glft-", "feed token"),
    ("glimt-", "incoming mail token"),
    ("glagent-", "Kubernetes agent token"),
    ("glwt-", "workspace token"),
    ("glsoat-", "SCIM token"),
    ("glffct-", "feature flags client token"),
    ("gltok-", "GitLab token"),
];

/// Token prefixes masked in job traces (the prefix itself is kept: `glpat-[MASKED]`).
pub const MASKED_TOKEN_PREFIXES: &[&str] = &[
    "glpat-",
    "gloas-",
    "gldt-",
    "glrt-",
    "glcbt-",
    "glrtr-",
    "glptt-",
    "glft-",
    "glimt-",
    "glagent-",
    "glsoat-",
    "glffct-",
    "_gitlab_session=",
    "gltok-",
];

impl TokenKind {
    pub fn classify(token: &str) -> Self {
        let t = token.trim();
        // A custom instance prefix ("acme-glrt-…") keeps the kind of the token after it.
        let body = match t.find("-glrt-").or_else(|| t.find("-glrtr-")) {
            Some(i) if i > 0 && i < 32 => &t[i + 1..],
            _ => t,
        };
        if body.starts_with("glrtr-") {
            Self::RegisteredRunnerAuthentication
        } else if body.starts_with("glrt-") {
            Self::RunnerAuthentication
        } else if body.starts_with("GR1348941") {
            Self::Registration
        } else if body.starts_with("glpat-") {
            Self::PersonalAccess
        } else if body.starts_with("glcbt-") {
            Self::Job
        } else if let Some((_, name)) = OTHER_PREFIXES.iter().find(|(p, _)| body.starts_with(p)) {
            Self::OtherGitLab(name)
        } else if ["t1_", "t2_", "t3_"].iter().any(|p| body.starts_with(p)) {
            Self::LegacyRunnerAuthentication
        } else {
            Self::Unknown
        }
    }

    /// Whether `POST /jobs/request` can accept this kind of token.
    pub fn can_request_jobs(self) -> bool {
        matches!(
            self,
            Self::RunnerAuthentication
                | Self::RegisteredRunnerAuthentication
                | Self::LegacyRunnerAuthentication
                | Self::Unknown
        )
    }

    /// Runners created in the UI (`glrt-`) are shared by managers; unregistering one host must use
    /// `DELETE /runners/managers`, never delete the runner itself.
    pub fn is_created_runner(self) -> bool {
        self == Self::RunnerAuthentication
    }

    /// A short human name for log lines and errors.
    pub fn describe(self) -> &'static str {
        match self {
            Self::RunnerAuthentication => "runner authentication token (glrt-, created in GitLab)",
            Self::RegisteredRunnerAuthentication => {
                "runner authentication token (glrtr-, obtained by registration)"
            }
            Self::LegacyRunnerAuthentication => "legacy runner authentication token",
            Self::Registration => "runner registration token (GR1348941…)",
            Self::PersonalAccess => "personal access token (glpat-)",
            Self::Job => "CI/CD job token (glcbt-)",
            Self::OtherGitLab(name) => name,
            Self::Unknown => "token without a known prefix",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The short form of a token used in logs, metrics and `CI_RUNNER_SHORT_TOKEN`: the first 9 characters
/// after the kind prefix, as gitlab-runner does. Never enough to authenticate.
pub fn short_token(token: &str) -> String {
    let t = token.trim();
    let mut rest = t;
    for p in ["glrtr-", "glrt-", "glcbt-"] {
        if let Some(r) = rest.strip_prefix(p) {
            rest = r;
            break;
        }
    }
    for p in ["t1_", "t2_", "t3_"] {
        if let Some(r) = rest.strip_prefix(p) {
            rest = r;
            break;
        }
    }
    if rest.len() > 9 && rest.starts_with("GR") && rest[2..9].bytes().all(|b| b.is_ascii_hexdigit())
    {
        rest = &rest[9..];
    }
    rest.chars().take(9).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind() {
        use TokenKind::*;
        let cases = [
            ("glrt-t3_kyahzxLaj4Dc1jQf4xjX", RunnerAuthentication),
            ("glrt-kyahzxLaj4Dc1jQf4xjX", RunnerAuthentication),
            ("acme-glrt-t1_abcdefghij", RunnerAuthentication),
            ("glrtr-abcdefghijkl", RegisteredRunnerAuthentication),
            ("t2_abcdefghijklmnop", LegacyRunnerAuthentication),
            ("GR1348941aBcDeFgHiJkLmN", Registration),
            ("glpat-xxxxxxxxxxxxxxxxxxxx", PersonalAccess),
            ("glcbt-64_sJqkX8vQb3mPz7RtYwNc", Job),
            ("glptt-abc", OtherGitLab("pipeline trigger token")),
            ("a1b2c3d4e5f6a7b8c9d0", Unknown),
            ("  glrt-abc\n", RunnerAuthentication),
        ];
        for (token, kind) in cases {
            assert_eq!(TokenKind::classify(token), kind, "{token}");
        }
        assert!(!Registration.can_request_jobs());
        assert!(!PersonalAccess.can_request_jobs());
        assert!(RunnerAuthentication.is_created_runner());
        assert!(!RegisteredRunnerAuthentication.is_created_runner());
    }

    #[test]
    fn short_token_matches_gitlab_runner() {
        assert_eq!(short_token("glrt-t1_t9Wkyj-HGabcdef"), "t9Wkyj-HG");
        assert_eq!(short_token("glrt-abcdefghijkl"), "abcdefghi");
        assert_eq!(short_token("t3_zyxwvutsrq"), "zyxwvutsr");
        assert_eq!(short_token("GR1348941aBcDeFgHiJkL"), "aBcDeFgHi");
        assert_eq!(short_token("glcbt-64_sJqkX8vQb3"), "64_sJqkX8");
        assert_eq!(short_token("abc"), "abc");
    }
}
