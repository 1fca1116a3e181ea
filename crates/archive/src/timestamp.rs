//! Conversions between Unix seconds and the MS-DOS date/time of zip headers. DOS fields carry UTC
//! (the extended-timestamp extra field carries the exact second), so archives do not depend on the
//! time zone of the machine that wrote them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zip::DateTime;

/// Seconds since the Unix epoch, negative before it.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn from_unix_seconds(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The value for the extended timestamp field (an unsigned 32-bit count of seconds).
pub(crate) fn extended_seconds(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

/// A DOS date/time in UTC, clamped to the range DOS can hold (1980–2107).
pub(crate) fn dos_time(secs: i64) -> DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let secs = secs.clamp(MIN, MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let to_u8 = |v: i64| u8::try_from(v).unwrap_or(0);
    DateTime::from_date_and_time(
        u16::try_from(year).unwrap_or(1980),
        to_u8(month),
        to_u8(day),
        to_u8(hour),
        to_u8(minute),
        to_u8(second),
    )
    .unwrap_or_default()
}

/// Unix seconds of a DOS date/time read as UTC.
pub(crate) fn dos_to_unix(t: &DateTime) -> i64 {
    let days = days_from_civil(
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
    );
    days * 86_400 + i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 11_016, 19_000, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn dos_time_is_utc_with_two_second_steps() {
        // 2024-05-01T12:34:56Z
        let t = dos_time(1_714_566_896);
        assert_eq!((t.year(), t.month(), t.day()), (2024, 5, 1));
        assert_eq!((t.hour(), t.minute(), t.second()), (12, 34, 56));
        assert_eq!(dos_to_unix(&t), 1_714_566_896);
        assert_eq!(dos_to_unix(&dos_time(1_714_566_897)), 1_714_566_896);
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(dos_time(0).year(), 1980);
        assert_eq!(dos_time(i64::MAX).year(), 2107);
        assert_eq!(extended_seconds(-5), 0);
        assert_eq!(extended_seconds(i64::MAX), u32::MAX);
    }

    #[test]
    fn system_time_conversions() {
        let t = from_unix_seconds(-42);
        assert_eq!(unix_seconds(t), -42);
        assert_eq!(
            unix_seconds(from_unix_seconds(1_700_000_000)),
            1_700_000_000
        );
    }
}
