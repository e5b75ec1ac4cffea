//! RFC 3339 timestamps with nanoseconds (Go's RFC3339Nano, with all nine digits kept so
//! that they sort as text), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// `now` as `2006-01-02T15:04:05.999999999Z`.
pub fn now_rfc3339_nano() -> String {
    rfc3339_nano(SystemTime::now())
}

/// `t` as `2006-01-02T15:04:05.999999999Z` (UTC). Times before 1970 clamp to the epoch.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_nanos()
    )
}

/// Unix nanoseconds of a `2006-01-02T15:04:05.999999999Z` timestamp (UTC, as
/// [`rfc3339_nano`] writes them; fewer fraction digits are fine). None if malformed.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    // RFC 3339 years have four digits; bounding them (and refusing negative fields) keeps
    // the day arithmetic below from overflowing on a corrupt file (found by fuzzing).
    if !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let days = days_from_civil(year, month, day);
    // Past 2262 the nanoseconds no longer fit an i64: not a time this can represent.
    (days * 86_400 + h * 3600 + m * 60 + sec)
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// The inverse of [`civil_from_days`] (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
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
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 1, "2000-02-29T00:00:00.000000001Z"),
            (1_709_210_096, 500_000_000, "2024-02-29T12:34:56.500000000Z"),
            (4_102_444_799, 999_999_999, "2099-12-31T23:59:59.999999999Z"),
            (1_735_689_600, 0, "2025-01-01T00:00:00.000000000Z"),
        ];
        for (secs, nanos, want) in cases {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            assert_eq!(rfc3339_nano(t), want);
        }
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn parses_what_it_writes() {
        for nanos in [0i64, 1, 951_782_400_123_456_789, 1_798_761_599_999_999_999] {
            let t = UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64);
            assert_eq!(parse_rfc3339_nanos(&rfc3339_nano(t)), Some(nanos));
        }
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            // Found by the cri_log fuzz target: these overflowed the arithmetic (a panic
            // in debug builds, a wrapped time in release).
            "2263-01-01T00:00:00.000000000Z",
            "9999-12-31T23:59:59.999999999Z",
            "9223372036854775807-01-01T00:00:00Z",
            "-9223372036854775807-01-01T00:00:00Z",
            "2024-01-01T-1:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
    }
}
