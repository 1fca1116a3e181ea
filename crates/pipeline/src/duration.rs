//! GitLab duration strings (`timeout: 1h 30m`, `90 minutes`, `3600`), as GitLab's ChronicDuration reads
//! them: a bare number is seconds, words like `and` and commas are filler, units are case-insensitive.
//! The unit grammar itself is humantime's.

use std::time::Duration;

/// GitLab's upper limit for a job timeout.
const LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration")]
    Unreadable(String),
    #[error("`{0}` is zero; a timeout must be positive")]
    Zero(String),
    #[error("`{0}` is longer than GitLab's limit of one month")]
    TooLong(String),
}

/// Parse a GitLab duration.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let duration = parse_unbounded(text)?;
    if duration > LIMIT {
        Err(DurationError::TooLong(text.to_owned()))
    } else {
        Ok(duration)
    }
}

/// Parse a GitLab duration of any length (`artifacts:expire_in` may be years).
pub fn parse_unbounded(text: &str) -> Result<Duration, DurationError> {
    let unreadable = || DurationError::Unreadable(text.to_owned());
    let normalised = text
        .to_ascii_lowercase()
        .replace(',', " ")
        .split_whitespace()
        .filter(|word| *word != "and")
        .collect::<Vec<_>>()
        .join(" ");
    let duration = if normalised.is_empty() {
        return Err(unreadable());
    } else if let Ok(seconds) = normalised.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Some(d) = clock(&normalised) {
        d
    } else {
        humantime::parse_duration(&normalised).map_err(|_| unreadable())?
    };
    if duration.is_zero() {
        Err(DurationError::Zero(text.to_owned()))
    } else {
        Ok(duration)
    }
}

/// `hh:mm:ss` or `mm:ss`.
fn clock(text: &str) -> Option<Duration> {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let seconds = match parts.as_slice() {
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse(text).unwrap().as_secs()
    }

    #[test]
    fn reads_what_gitlab_users_write() {
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("90 minutes"), 5400);
        assert_eq!(secs("1 hour and 30 minutes"), 5400);
        assert_eq!(secs("2 Hours, 15 Minutes"), 8100);
        assert_eq!(secs("3h"), 10800);
        assert_eq!(secs("45 sec"), 45);
        assert_eq!(secs("3600"), 3600);
        assert_eq!(secs("1:30:00"), 5400);
        assert_eq!(secs("1 week"), 7 * 24 * 3600);
    }

    #[test]
    fn refuses_nonsense_zero_and_too_long() {
        assert_eq!(parse("soon"), Err(DurationError::Unreadable("soon".into())));
        assert_eq!(parse(""), Err(DurationError::Unreadable("".into())));
        assert_eq!(parse("0"), Err(DurationError::Zero("0".into())));
        assert_eq!(
            parse("2 months"),
            Err(DurationError::TooLong("2 months".into()))
        );
    }
}
