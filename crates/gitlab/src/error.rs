//! Client errors. Each renders what happened, the likely cause and the fix, names the endpoint, and never
//! contains a token: response bodies are scrubbed of the token that was sent and cut short.

use crate::retry::MAX_ATTEMPTS;
use crate::tls::{CertificateProblem, TlsSetupError};
use glrunner_protocol::TokenKind;

/// An error talking to GitLab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error(
        "`url = \"{value}\"` cannot be used: {problem}. Fix: set `url` in this [[runners]] entry to the \
         address you open GitLab with, e.g. `url = \"https://gitlab.example.com/\"`"
    )]
    InvalidUrl { value: String, problem: String },

    #[error(transparent)]
    Tls(#[from] TlsSetupError),

    #[error("cannot create the HTTP client: {detail}")]
    ClientBuild { detail: String },

    #[error("{endpoint}: {problem}")]
    Certificate {
        endpoint: String,
        problem: Box<CertificateProblem>,
    },

    #[error("{endpoint}: the TLS handshake with {host} failed ({detail}). {hint}")]
    Handshake {
        endpoint: String,
        host: String,
        detail: String,
        hint: String,
    },

    #[error(
        "{endpoint}: connection to {address} refused. Likely cause: nothing listens there (wrong host, port \
         or scheme in `url`) or GitLab is down. Fix: is `url` right and GitLab reachable from here? \
         `curl -sSI {base}` on this host shows what answers"
    )]
    ConnectionRefused {
        endpoint: String,
        address: String,
        base: String,
    },

    #[error(
        "{endpoint}: cannot resolve the host {host} ({detail}). Fix: check the host name in `url` and this \
         host's DNS (`getent hosts {host}`)"
    )]
    Dns {
        endpoint: String,
        host: String,
        detail: String,
    },

    #[error(
        "{endpoint}: timed out while {stage}. Likely cause: GitLab or a proxy is overloaded, or a firewall \
         drops the traffic. Fix: is `url` right and GitLab reachable from here? glrunner tries again later"
    )]
    Timeout {
        endpoint: String,
        stage: &'static str,
    },

    #[error(
        "{endpoint}: the connection to GitLab failed ({detail}). Likely cause: a network problem, a proxy, or \
         GitLab closing the connection. Fix: check that `url` is reachable from here; glrunner tries again \
         later"
    )]
    Connection { endpoint: String, detail: String },

    #[error("{endpoint}: GitLab answered 403 Forbidden to the {token_kind}. {advice}")]
    Forbidden {
        endpoint: String,
        token_kind: TokenKind,
        advice: String,
    },

    #[error(
        "{endpoint}: GitLab answered 410 Gone: registering runners with a registration token is disabled on \
         this GitLab (deprecated since 15.6, off by default since 17.0). Fix: use the new workflow: create the \
         runner in GitLab (Settings > CI/CD > Runners > New runner, or `POST /api/v4/user/runners`) and put \
         its `glrt-` token in `token` instead of registering"
    )]
    RegistrationDisabled { endpoint: String },

    #[error(
        "{endpoint}: GitLab knows no runner manager with system_id {system_id} for this runner (404). Likely \
         cause: it was removed already. Nothing to fix"
    )]
    ManagerNotFound { endpoint: String, system_id: String },

    #[error("{endpoint}: GitLab answered {status}{}. {hint}", quoted(.body))]
    UnexpectedStatus {
        endpoint: String,
        status: u16,
        body: String,
        hint: String,
    },

    #[error(
        "{endpoint}: GitLab's answer ({status}) could not be read: {detail}. Likely cause: a proxy answered \
         instead of GitLab, or this GitLab version sends another format. Fix: check that `url` points at \
         GitLab itself"
    )]
    Decode {
        endpoint: String,
        status: u16,
        detail: String,
    },

    #[error(
        "{endpoint}: GitLab assigned a job (201) but its payload is unreadable and carries no job id and \
         token ({detail}), so it cannot be failed through the API; GitLab will drop it when it times out. \
         Likely cause: a proxy altered the response. Fix: check what sits between glrunner and GitLab"
    )]
    UndecodableJobIdentity { endpoint: String, detail: String },

    #[error("{endpoint}: cannot build the request: {detail}")]
    Encode { endpoint: String, detail: String },
}

impl ApiError {
    /// The HTTP status GitLab answered, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Forbidden { .. } => Some(403),
            Self::RegistrationDisabled { .. } => Some(410),
            Self::ManagerNotFound { .. } => Some(404),
            Self::UnexpectedStatus { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// No HTTP answer arrived (refused, DNS, timeout, TLS, broken connection): worth trying again later.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Certificate { .. }
                | Self::Handshake { .. }
                | Self::ConnectionRefused { .. }
                | Self::Dns { .. }
                | Self::Timeout { .. }
                | Self::Connection { .. }
        )
    }
}

fn quoted(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", body.trim())
    }
}

/// What a 403 from a runner-token endpoint means, by the kind of token that was sent: the likely cause and
/// the fix. `registering` is true for `POST /runners`, where a registration token is the right kind.
pub fn forbidden_advice(kind: TokenKind, registering: bool) -> String {
    const CREATE: &str = "create the runner in GitLab (Settings > CI/CD > Runners > New runner) and put its \
                          `glrt-` token in `token`";
    match kind {
        TokenKind::Registration if registering => format!(
            "Likely cause: the registration token is wrong, was reset in GitLab, or belongs to another GitLab. \
             Fix: copy the current registration token from GitLab, or better, {CREATE}"
        ),
        TokenKind::Registration => format!(
            "Likely cause: a registration token (GR1348941…) cannot authenticate a runner; it can only create \
             one. Fix: register with it (`glrunner register`), or {CREATE}"
        ),
        TokenKind::RunnerAuthentication if registering => "Likely cause: a `glrt-` token belongs to a runner \
             that already exists in GitLab and is not registered again. Fix: put it in `token` directly; no \
             registration is needed"
            .to_owned(),
        TokenKind::PersonalAccess | TokenKind::Job | TokenKind::OtherGitLab(_) => {
            format!("Likely cause: this is not a runner token. Fix: {CREATE}")
        }
        _ if registering => format!(
            "Likely cause: registration needs a registration token (GR1348941…), and this is not one. Fix: {CREATE}"
        ),
        _ => format!(
            "Likely cause: the runner was deleted in GitLab, or its token was reset, rotated or has expired. \
             Fix: {CREATE} (or copy the current token of this runner)"
        ),
    }
}

/// A hint for a status no endpoint expects.
pub(crate) fn status_hint(status: u16, location: Option<&str>, request_id: &str) -> String {
    let logs = format!("GitLab's logs know this request as {request_id}");
    match status {
        301 | 302 | 303 | 307 | 308 => format!(
            "GitLab redirected to {}. Likely cause: `url` uses http where GitLab serves https, or an old \
             address. Fix: set `url` to the address GitLab redirects to (its root, without /api/v4/…)",
            location.unwrap_or("(no Location header)")
        ),
        401 | 407 => format!(
            "Likely cause: a proxy in front of GitLab asks for authentication. Fix: let the runner through the \
             proxy ({logs})"
        ),
        404 => "Likely cause: `url` is not GitLab's root (it includes a project or group path?) or this GitLab \
             is too old for this endpoint. Fix: set `url` to the address you open GitLab with, e.g. \
             `url = \"https://gitlab.example.com/\"`"
            .to_owned(),
        413 => format!(
            "Likely cause: the request was larger than GitLab or a proxy accepts (e.g. nginx \
             client_max_body_size). Fix: raise that limit ({logs})"
        ),
        429 => format!(
            "Likely cause: GitLab rate-limits this runner or is running database migrations; the request was \
             tried {MAX_ATTEMPTS} times. Fix: none needed, glrunner tries again later; if it persists, raise \
             the instance's runner API rate limits"
        ),
        500..=599 => format!(
            "Likely cause: GitLab, or a proxy before it, failed or is unavailable (retriable answers were \
             tried {MAX_ATTEMPTS} times). Fix: check GitLab's health and logs ({logs}); glrunner tries again \
             later"
        ),
        _ => format!("Likely cause: GitLab rejected the request as shown. Fix: see GitLab's message ({logs})"),
    }
}

/// An error and its sources, outermost first. An `io::Error` is followed into the error it wraps (its own
/// `source()` skips that error).
pub(crate) fn error_sources<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut current = Some(error);
    // Bounded: a cyclic or absurdly deep chain is cut short.
    while let Some(e) = current.take() {
        out.push(e);
        if out.len() >= 32 {
            break;
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    out
}

/// Longest piece of a response body shown in an error.
const SHOWN_BODY: usize = 500;

/// A response body fit for an error message: every `secret` replaced by `[MASKED]`, control characters
/// dropped, cut at [`SHOWN_BODY`] characters.
pub(crate) fn scrub(body: &[u8], secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[MASKED]");
    }
    let mut shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SHOWN_BODY)
        .collect();
    if text.chars().count() > SHOWN_BODY {
        shown.push('…');
    }
    shown
}

/// A serde error message with every double-quoted value removed: payload values can be secrets.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_secrets_and_cuts_long_bodies() {
        let body = format!(
            "{{\"token\":\"glrt-secret123\",\"pad\":\"{}\"}}\n",
            "x".repeat(2000)
        );
        let shown = scrub(body.as_bytes(), &["glrt-secret123", ""]);
        assert!(!shown.contains("glrt-secret123"), "{shown}");
        assert!(shown.contains("[MASKED]"));
        assert_eq!(shown.chars().count(), SHOWN_BODY + 1);
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn redact_quoted_keeps_the_shape_of_serde_messages() {
        let m = "invalid type: string \"hunter2\", expected i64 at line 1 column 20";
        assert_eq!(
            redact_quoted(m),
            "invalid type: string \"…\", expected i64 at line 1 column 20"
        );
    }

    #[test]
    fn advice_depends_on_the_token_kind() {
        assert!(forbidden_advice(TokenKind::Registration, false).contains("glrunner register"));
        assert!(forbidden_advice(TokenKind::PersonalAccess, false).contains("not a runner token"));
        assert!(forbidden_advice(TokenKind::RunnerAuthentication, false).contains("deleted"));
        assert!(
            forbidden_advice(TokenKind::Registration, true).contains("registration token is wrong")
        );
        assert!(status_hint(302, Some("https://x/"), "abc").contains("redirected to https://x/"));
        assert!(status_hint(503, None, "abc").contains("abc"));
    }
}
