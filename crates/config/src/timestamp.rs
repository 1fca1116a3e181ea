//! `Timestamp`: the instants config.toml and the state file record (`token_obtained_at`, `token_expires_at`).

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toml::value::{Date, Datetime, Offset, Time};

/// An instant, read from a TOML datetime (`token_expires_at = 2026-01-01T00:00:00Z`, as gitlab-runner
/// writes it) or from an RFC 3339 string. A local datetime without offset is taken as UTC. Go's zero
/// time (`0001-01-01T00:00:00Z`, "never expires") is not a `Timestamp`: those keys read as `None`.
///
/// Serialized as an RFC 3339 string (state file); config.toml writes use [`as_toml_datetime`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_secs: i64,
    nanos: u32,
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 date-time (expected e.g. 2026-01-31T12:00:00Z)")]
    Syntax,
    #[error("a date-time needs a date, not only a time of day")]
    MissingDate,
}

impl Timestamp {
    pub fn from_unix(unix_secs: i64, nanos: u32) -> Self {
        Self {
            unix_secs: unix_secs + i64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }

    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    pub fn unix_secs(self) -> i64 {
        self.unix_secs
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.unix_secs >= 0 {
            UNIX_EPOCH + Duration::new(self.unix_secs.unsigned_abs(), self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.unix_secs.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nanos))
        }
    }

    /// Reads a TOML datetime; `None` for Go's zero time.
    pub fn from_toml(dt: &Datetime) -> Result<Option<Self>, TimestampError> {
        let date = dt.date.ok_or(TimestampError::MissingDate)?;
        if date.year <= 1 {
            return Ok(None);
        }
        let time = dt.time.unwrap_or(Time {
            hour: 0,
            minute: 0,
            second: Some(0),
            nanosecond: Some(0),
        });
        let days = days_from_civil(
            i64::from(date.year),
            u32::from(date.month),
            u32::from(date.day),
        );
        let offset_secs = match dt.offset {
            Some(Offset::Custom { minutes }) => i64::from(minutes) * 60,
            Some(Offset::Z) | None => 0,
        };
        let secs = days * 86_400
            + i64::from(time.hour) * 3600
            + i64::from(time.minute) * 60
            + i64::from(time.second.unwrap_or(0))
            - offset_secs;
        Ok(Some(Self::from_unix(secs, time.nanosecond.unwrap_or(0))))
    }

    /// The TOML datetime in UTC, with a fraction only when there is one.
    pub fn to_toml(self) -> Datetime {
        let days = self.unix_secs.div_euclid(86_400);
        let secs_of_day = self.unix_secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Datetime {
            date: Some(Date {
                year: year.clamp(0, 9999) as u16,
                month: month as u8,
                day: day as u8,
            }),
            time: Some(Time {
                hour: (secs_of_day / 3600) as u8,
                minute: (secs_of_day / 60 % 60) as u8,
                second: Some((secs_of_day % 60) as u8),
                nanosecond: (self.nanos != 0).then_some(self.nanos),
            }),
            offset: Some(Offset::Z),
        }
    }

    /// RFC 3339 in UTC, e.g. `2026-01-31T12:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_toml().to_string()
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Parses RFC 3339; Go's zero time is refused here (it has no `Timestamp`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let dt = Datetime::from_str(s.trim()).map_err(|_| TimestampError::Syntax)?;
        Self::from_toml(&dt)?.ok_or(TimestampError::Syntax)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_unix(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Self::from_unix(secs, nanos)
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Serializes an optional timestamp as a TOML datetime, the form gitlab-runner writes to config.toml.
pub fn as_toml_datetime<S: Serializer>(
    value: &Option<Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(t) => t.to_toml().serialize(serializer),
        None => serializer.serialize_none(),
    }
}

/// Reads `Option<Timestamp>`, mapping Go's zero time to `None`.
pub(crate) fn deserialize_optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    deserializer.deserialize_any(TimestampVisitor)
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date-time like 2026-01-31T12:00:00Z")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let dt = Datetime::from_str(v.trim()).map_err(|_| E::custom(TimestampError::Syntax))?;
        Timestamp::from_toml(&dt).map_err(E::custom)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TimestampVisitor)
    }

    // The toml deserializer hands a datetime over as a one-entry map holding its text.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((_, text)) = map.next_entry::<String, String>()? else {
            return Err(de::Error::custom(TimestampError::Syntax));
        };
        self.visit_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_optional(deserializer)?
            .ok_or_else(|| de::Error::custom("the zero date-time is not a valid instant here"))
    }
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (the well-known era-based formula).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utc_offsets_and_zero_time() {
        let t: Timestamp = "2026-01-31T12:00:00Z".parse().unwrap();
        assert_eq!(t.unix_secs(), 1_769_860_800);
        let same: Timestamp = "2026-01-31T14:00:00+02:00".parse().unwrap();
        assert_eq!(same, t);
        assert_eq!(t.to_rfc3339(), "2026-01-31T12:00:00Z");
        assert_eq!(
            "1970-01-01T00:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .unix_secs(),
            0
        );
        let zero = Datetime::from_str("0001-01-01T00:00:00Z").unwrap();
        assert_eq!(Timestamp::from_toml(&zero).unwrap(), None);
        assert_eq!(
            "12:00:00".parse::<Timestamp>(),
            Err(TimestampError::MissingDate)
        );
        assert_eq!(
            "yesterday".parse::<Timestamp>(),
            Err(TimestampError::Syntax)
        );
    }

    #[test]
    fn civil_conversion_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn system_time_round_trip_keeps_nanoseconds() {
        let t = Timestamp::from_unix(1_700_000_000, 123_456_789);
        assert_eq!(Timestamp::from(t.to_system_time()), t);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123456789Z");
        let before_epoch = Timestamp::from_unix(-1, 500_000_000);
        assert_eq!(Timestamp::from(before_epoch.to_system_time()), before_epoch);
    }
}
