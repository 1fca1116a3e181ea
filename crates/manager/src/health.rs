//! Health of one runner entry: what a 403 on `POST /jobs/request` means and how long to wait before asking
//! again (catalogue T3). gitlab-runner goes silent for an hour after three 403s; glrunner explains the first
//! one, backs off exponentially, says when it will try again, and reports itself unready meanwhile.

use glrunner_protocol::TokenKind;
use std::time::Duration;

/// Who is asking, for the explanation.
#[derive(Debug, Clone)]
pub struct RunnerIdentity {
    pub name: String,
    pub short_token: String,
    pub kind: TokenKind,
    pub system_id: String,
    pub url: String,
}

#[derive(Debug)]
pub struct RunnerHealth {
    consecutive_forbidden: u32,
    ever_accepted: bool,
    check_interval: Duration,
    max_backoff: Duration,
}

/// What to do after a rejected request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The full explanation (first 403 of a streak) or a one-line reminder.
    pub message: String,
    pub retry_in: Duration,
}

impl RunnerHealth {
    pub fn new(check_interval: Duration, max_backoff: Duration) -> Self {
        Self {
            consecutive_forbidden: 0,
            ever_accepted: false,
            check_interval,
            max_backoff: max_backoff.max(check_interval),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.consecutive_forbidden == 0
    }

    /// GitLab accepted the token. Returns a recovery message if the runner was unhealthy.
    pub fn accepted(&mut self, id: &RunnerIdentity) -> Option<String> {
        self.ever_accepted = true;
        let was = std::mem::take(&mut self.consecutive_forbidden);
        (was > 0).then(|| {
            format!(
                "runner {} ({}): GitLab accepts the token again after {was} rejected request(s); requesting jobs",
                id.name, id.short_token
            )
        })
    }

    /// GitLab answered 403 to a job request.
    pub fn forbidden(&mut self, id: &RunnerIdentity) -> Rejection {
        self.consecutive_forbidden += 1;
        let n = self.consecutive_forbidden;
        let factor = 2u32.saturating_pow(n.min(20));
        let retry_in = self
            .check_interval
            .saturating_mul(factor)
            .min(self.max_backoff);
        let message = if n == 1 {
            explain_forbidden(id, self.ever_accepted, retry_in)
        } else {
            format!(
                "runner {} ({}): GitLab still rejects the token (403 Forbidden, {n} times in a row); next attempt in {}",
                id.name,
                id.short_token,
                humanize(retry_in)
            )
        };
        Rejection { message, retry_in }
    }
}

fn explain_forbidden(id: &RunnerIdentity, ever_accepted: bool, retry_in: Duration) -> String {
    let who = format!(
        "runner {} ({}, {}) with system ID {}",
        id.name, id.short_token, id.kind, id.system_id
    );
    let cause = if ever_accepted {
        "The token worked before, so the runner was deleted in GitLab, or its token was reset, rotated or has expired."
    } else {
        "GitLab does not know this token: the runner was deleted, its token was reset or expired, or the token belongs to another GitLab instance than `url`."
    };
    let fix = if id.kind.is_created_runner() {
        "Fix: in GitLab open the runner (or create a new one under Settings > CI/CD > Runners), copy its glrt- token into `token` (or `token_file`) of this [[runners]] entry, and restart glrunner."
    } else {
        "Fix: create a runner in GitLab (Settings > CI/CD > Runners > New runner), put its glrt- token into `token` (or `token_file`) of this [[runners]] entry, and restart glrunner."
    };
    format!(
        "{who}: GitLab rejected the token (403 Forbidden) on POST {}/api/v4/jobs/request. {cause} {fix} Next attempt in {}.",
        id.url.trim_end_matches('/'),
        humanize(retry_in)
    )
}

/// `90s` → `1m30s`.
pub fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RunnerIdentity {
        RunnerIdentity {
            name: "k8s".into(),
            short_token: "abcdefghi".into(),
            kind: TokenKind::RunnerAuthentication,
            system_id: "s_0123456789ab".into(),
            url: "https://gitlab.example.com/".into(),
        }
    }

    #[test]
    fn first_rejection_explains_then_backs_off_to_the_cap() {
        let mut h = RunnerHealth::new(Duration::from_secs(3), Duration::from_secs(60));
        h.accepted(&id());
        let first = h.forbidden(&id());
        assert!(first.message.contains("worked before"), "{}", first.message);
        assert!(first.message.contains("s_0123456789ab"));
        assert!(first.message.contains("glrt-"));
        assert_eq!(first.retry_in, Duration::from_secs(6));
        let second = h.forbidden(&id());
        assert_eq!(second.retry_in, Duration::from_secs(12));
        assert!(second.message.contains("2 times in a row"));
        for _ in 0..10 {
            h.forbidden(&id());
        }
        assert_eq!(h.forbidden(&id()).retry_in, Duration::from_secs(60));
        assert!(!h.is_healthy());
        assert!(h.accepted(&id()).is_some());
        assert!(h.is_healthy());
    }

    #[test]
    fn never_accepted_token_gets_a_different_cause() {
        let mut h = RunnerHealth::new(Duration::from_secs(3), Duration::from_secs(3600));
        let r = h.forbidden(&id());
        assert!(
            r.message.contains("does not know this token"),
            "{}",
            r.message
        );
    }

    #[test]
    fn humanize_durations() {
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(3600)), "1h");
        assert_eq!(humanize(Duration::from_millis(500)), "500ms");
    }
}
