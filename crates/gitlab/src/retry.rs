//! gitlab-runner's retry policy for API requests: which statuses are retried, how many attempts a request
//! gets, and how long to wait before the next one.
//!
//! Only HTTP statuses are retried here. Transport errors (refused, reset, timeouts) go back to the caller,
//! whose own loop (poll interval, final-update retries) decides what to do.

use glrunner_protocol::headers::RATE_LIMIT_RESET_TIME;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Attempts per request, the first included (gitlab-runner's `defaultRateLimitMaxAttempts`).
pub const MAX_ATTEMPTS: u32 = 5;

/// The first backoff wait when the server gives none.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest backoff wait when the server gives none.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The longest wait glrunner accepts from `RateLimit-ResetTime` or `Retry-After`. GitLab's own limits are
/// per minute and its migration backoff asks for 60 s; a longer value is more likely a skewed clock or a
/// misbehaving proxy, and a request must not hang for hours on one header.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(300);

/// Whether a response with this status is tried again: 408, 429, 500, 502, 503, 504 and every status from
/// 512 up. 501 (not implemented) and 505–511 describe permanent conditions and are not retried.
pub fn is_retriable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504) || status >= 512
}

/// The wait the server asked for: `RateLimit-ResetTime` (an HTTP date) if present and valid, else
/// `Retry-After` (integer seconds, or an HTTP date), capped at [`MAX_SERVER_WAIT`]. A date in the past
/// means no wait.
pub fn server_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let until = |date: SystemTime| date.duration_since(now).unwrap_or(Duration::ZERO);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };

    let wait = if let Some(reset) =
        header(RATE_LIMIT_RESET_TIME).and_then(|v| httpdate::parse_http_date(v).ok())
    {
        until(reset)
    } else {
        let value = header(RETRY_AFTER.as_str())?;
        match value.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => until(httpdate::parse_http_date(value).ok()?),
        }
    };
    Some(wait.min(MAX_SERVER_WAIT))
}

/// Exponential backoff with jitter for the wait after attempt number `attempt` (1-based): 100 ms after the
/// first attempt, then a random value between 100 ms and 100 ms × 2^(attempt-1), never above 60 s.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let ceiling = BACKOFF_MIN.saturating_mul(1 << exponent).min(BACKOFF_MAX);
    if ceiling <= BACKOFF_MIN {
        return BACKOFF_MIN;
    }
    let extra = ceiling - BACKOFF_MIN;
    BACKOFF_MIN + extra.mul_f64(rand::rng().random::<f64>())
}

/// How long to wait after attempt number `attempt` answered with `headers`.
pub fn delay(headers: &HeaderMap, attempt: u32, now: SystemTime) -> Duration {
    server_wait(headers, now).unwrap_or_else(|| backoff(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                *name,
                HeaderValue::from_str(value).expect("valid header value"),
            );
        }
        map
    }

    #[test]
    fn retries_exactly_gitlab_runners_status_set() {
        let retried: Vec<u16> = (100..=599).filter(|s| is_retriable(*s)).collect();
        let mut expected = vec![408, 429, 500, 502, 503, 504];
        expected.extend(512..=599);
        assert_eq!(retried, expected);
        for s in [200, 201, 204, 400, 403, 404, 409, 416, 501, 505, 507, 511] {
            assert!(!is_retriable(s), "{s} must not be retried");
        }
    }

    #[test]
    fn rate_limit_reset_time_wins_over_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let reset = httpdate::fmt_http_date(now + Duration::from_secs(7));
        let h = headers(&[("RateLimit-ResetTime", &reset), ("Retry-After", "30")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(7)));

        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(
            server_wait(&headers(&[("RateLimit-ResetTime", &past)]), now),
            Some(Duration::ZERO)
        );

        // An unparsable reset time falls back to Retry-After.
        let h = headers(&[("RateLimit-ResetTime", "soon"), ("Retry-After", "3")]);
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            server_wait(&headers(&[("Retry-After", "60")]), now),
            Some(Duration::from_secs(60))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            server_wait(&headers(&[("Retry-After", &date)]), now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            server_wait(&headers(&[("Retry-After", "86400")]), now),
            Some(MAX_SERVER_WAIT)
        );
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400));
        assert_eq!(
            server_wait(&headers(&[("RateLimit-ResetTime", &far)]), now),
            Some(MAX_SERVER_WAIT)
        );
        assert_eq!(
            server_wait(&headers(&[("Retry-After", "later")]), now),
            None
        );
        assert_eq!(server_wait(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_grows_from_100ms_with_jitter_and_stops_at_60s() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        for attempt in 2..=4u32 {
            let ceiling = BACKOFF_MIN * (1 << (attempt - 1));
            for _ in 0..200 {
                let d = backoff(attempt);
                assert!(d >= BACKOFF_MIN && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        // Jitter: 200 draws in [100 ms, 800 ms] are not all the same.
        let draws: std::collections::BTreeSet<Duration> = (0..200).map(|_| backoff(4)).collect();
        assert!(draws.len() > 10, "{draws:?}");
        for attempt in [11, 20, 64, u32::MAX] {
            assert!(backoff(attempt) <= BACKOFF_MAX);
        }
        assert_eq!(
            delay(&headers(&[("Retry-After", "2")]), 3, SystemTime::now()),
            Duration::from_secs(2)
        );
    }
}
