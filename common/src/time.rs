//! Time stamps: a Unix time as ISO 8601 text in UTC, with no time-zone database (the proleptic
//! Gregorian calendar by Howard Hinnant's `civil_from_days`), for the files the tools write
//! (`emissions.csv`, run folder names) and the CLI's live table.

use std::fmt::Write as _;

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time in seconds (UTC, proleptic Gregorian calendar; the
/// fraction is dropped, times before 1970 are clamped to it).
pub fn iso8601_utc(unix_s: f64) -> String {
    let secs = if unix_s.is_finite() && unix_s > 0.0 {
        unix_s as u64
    } else {
        0
    };
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(19);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601_utc(0.0), "1970-01-01T00:00:00");
        assert_eq!(iso8601_utc(951_782_400.0), "2000-02-29T00:00:00");
        assert_eq!(iso8601_utc(1_795_412_503.0), "2026-11-23T05:41:43");
        assert_eq!(iso8601_utc(f64::NAN), "1970-01-01T00:00:00");
    }
}
