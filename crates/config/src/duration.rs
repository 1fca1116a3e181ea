//! `GoDuration`: a duration written the way gitlab-runner's config.toml writes them.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration key of config.toml (`connection_max_age`, `unhealthy_interval`, `prepare_timeout`, …).
///
/// gitlab-runner decodes these into Go's `time.Duration`, so two forms are accepted:
/// - a Go duration string: a sequence of decimal numbers, each with an optional fraction and a unit
///   (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"15m"`, `"1h30m"`, `"1.5h"`, `"500ms"`, or `"0"`;
/// - an integer, which Go reads as **nanoseconds** (`connection_max_age = 900000000000` is 15 minutes).
///
/// Negative durations, which Go would accept, are rejected: no duration key has a meaning for them.
/// The value is written back in Go's canonical form (`"1h30m0s"`), which gitlab-runner reads too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

/// Why a duration string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("missing unit (one of ns, us, ms, s, m, h), e.g. \"{0}s\"")]
    MissingUnit(String),
    #[error("unknown unit \"{0}\" (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    #[error("expected a number before the unit")]
    MissingNumber,
    #[error("duration is too large")]
    Overflow,
}

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

/// Nanoseconds per unit, longest unit names first where prefixes overlap.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ (micro sign)
    ("\u{3bc}s", 1_000), // μ (Greek mu)
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut s = input;
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('-') {
            // "-0" is zero in Go; anything else is negative.
            if rest.chars().all(|c| c == '0') && !rest.is_empty() {
                return Ok(Self(Duration::ZERO));
            }
            return Err(DurationError::Negative);
        }
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, rest) = s.split_at(int_len);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    r.split_at(n)
                }
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(DurationError::MissingNumber);
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(rest.len(), |(i, _)| i);
            let (unit, rest) = rest.split_at(unit_len);
            if unit.is_empty() {
                return Err(DurationError::MissingUnit(input.to_owned()));
            }
            let per_unit = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, ns)| *ns)
                .ok_or_else(|| DurationError::UnknownUnit(unit.to_owned()))?;
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| DurationError::Overflow)?
            };
            let mut part = whole.checked_mul(per_unit).ok_or(DurationError::Overflow)?;
            // Fractions are exact to the nanosecond; extra digits are truncated like Go does.
            let mut scale = per_unit;
            for digit in frac_part.bytes().map(|b| u128::from(b - b'0')) {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                part += digit * scale;
            }
            total = total.checked_add(part).ok_or(DurationError::Overflow)?;
            s = rest;
        }
        // Go durations are int64 nanoseconds.
        if total > i64::MAX as u128 {
            return Err(DurationError::Overflow);
        }
        let secs = (total / 1_000_000_000) as u64;
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Self(Duration::new(secs, nanos)))
    }
}

/// Go's `time.Duration.String()`: `"1h30m0s"`, `"500ms"`, `"1.5µs"`, `"0s"`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        if total < 1_000_000_000 {
            let (unit, per) = if total < 1_000 {
                ("ns", 1)
            } else if total < 1_000_000 {
                ("\u{b5}s", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return write!(f, "{}{unit}", fixed(total, per));
        }
        let hours = total / 3_600_000_000_000;
        let minutes = (total / 60_000_000_000) % 60;
        let secs_ns = total % 60_000_000_000;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", fixed(secs_ns, 1_000_000_000))
    }
}

/// `value / per` with the fraction written without trailing zeros.
fn fixed(value: u128, per: u128) -> String {
    let whole = value / per;
    let frac = value % per;
    if frac == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoDuration({self})")
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration like \"15m\" or \"1h30m\", or an integer number of nanoseconds",
                )
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                let ns = u64::try_from(v).map_err(|_| E::custom(DurationError::Negative))?;
                Ok(GoDuration(Duration::from_nanos(ns)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_nanos(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                v.parse()
                    .map_err(|e| E::custom(format_args!("invalid duration \"{v}\": {e}")))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Duration, DurationError> {
        s.parse::<GoDuration>().map(|d| d.0)
    }

    #[test]
    fn parses_go_duration_strings() {
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("2\u{b5}s").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(
            parse("1h2m3.25s").unwrap(),
            Duration::new(3723, 250_000_000)
        );
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("+5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("-0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("15"), Err(DurationError::MissingUnit("15".into())));
        assert_eq!(parse("5 m"), Err(DurationError::UnknownUnit(" m".into())));
        assert_eq!(parse("3d"), Err(DurationError::UnknownUnit("d".into())));
        assert_eq!(parse("h"), Err(DurationError::MissingNumber));
        assert_eq!(parse("-5s"), Err(DurationError::Negative));
        assert_eq!(parse("9999999999h"), Err(DurationError::Overflow));
    }

    #[test]
    fn displays_like_go() {
        let show = |d: Duration| GoDuration(d).to_string();
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_secs(900)), "15m0s");
        assert_eq!(show(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_nanos(1500)), "1.5\u{b5}s");
        assert_eq!(show(Duration::from_nanos(7)), "7ns");
        // What Display writes, FromStr reads back.
        for d in [Duration::new(3723, 250_000_000), Duration::from_nanos(1500)] {
            assert_eq!(parse(&show(d)).unwrap(), d);
        }
    }

    #[test]
    fn toml_integers_are_nanoseconds() {
        #[derive(Deserialize)]
        struct T {
            d: GoDuration,
        }
        let t: T = toml::from_str("d = 900000000000").unwrap();
        assert_eq!(t.d.0, Duration::from_secs(900));
        let t: T = toml::from_str("d = \"1h\"").unwrap();
        assert_eq!(t.d.0, Duration::from_secs(3600));
        let err = toml::from_str::<T>("d = -1").err().unwrap();
        assert!(err.message().contains("negative"), "{err}");
    }
}
