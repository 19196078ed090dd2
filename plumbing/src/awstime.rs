//! Timestamps the way AWS writes and reads them.
//!
//! - [`format_aws`]: how the AWS CLI prints a timestamp (`2026-11-23T09:20:42.123000+00:00`).
//! - [`format_rfc3339`], [`now_rfc3339`]: RFC 3339 UTC in whole seconds
//!   (`2026-11-23T09:20:42Z`), as CloudTrail's `eventTime` and S3's metadata carry them.
//! - [`parse_cli_time`]: what the AWS CLI accepts for a timestamp parameter.
//! - [`rfc3339_to_cli`], [`http_date_to_cli`]: S3's XML and HTTP-date forms as the AWS CLI
//!   prints them (`2026-11-23T09:40:00+00:00`).
//!
//! Pure functions over the `time` crate: no clock but [`now_rfc3339`]'s.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Formats Unix milliseconds the way the AWS CLI prints timestamps
/// (`2026-11-23T09:20:42.123000+00:00`); out of range: the number itself.
pub fn format_aws(ms: i64) -> String {
    match from_ms(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        None => ms.to_string(),
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC in whole seconds (`2026-11-23T09:20:42Z`), for
/// logs and the trail; out of range: the number itself.
pub fn format_rfc3339(ms: i64) -> String {
    match from_ms(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => ms.to_string(),
    }
}

/// Now, as RFC 3339 UTC in whole seconds (`2026-11-23T09:49:17Z`).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses a timestamp parameter as the AWS CLI accepts it: RFC 3339, `YYYY-MM-DDTHH:MM:SS`
/// (UTC), a date (midnight UTC), or epoch seconds.
pub fn parse_cli_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|n| OffsetDateTime::from_unix_timestamp(n).ok());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        return Some(t.assume_utc());
    }
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

fn cli_seconds(t: OffsetDateTime) -> String {
    let f = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    t.to_offset(UtcOffset::UTC).format(&f).unwrap_or_default()
}

/// `2026-11-23T09:40:00.000Z` (S3 XML) as the AWS CLI prints it: `2026-11-23T09:40:00+00:00`;
/// anything else unchanged.
pub fn rfc3339_to_cli(s: &str) -> String {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => cli_seconds(t),
        Err(_) => s.to_string(),
    }
}

/// `Mon, 23 Nov 2026 09:40:00 GMT` (an HTTP date header) as the AWS CLI prints it:
/// `2026-11-23T09:40:00+00:00`; anything else unchanged.
pub fn http_date_to_cli(s: &str) -> String {
    let f = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    match PrimitiveDateTime::parse(s, &f) {
        Ok(t) => cli_seconds(t.assume_utc()),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_format() {
        assert_eq!(format_aws(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_aws(1_500), "1970-01-01T00:00:01.500000+00:00");
        assert_eq!(format_rfc3339(86_400_000), "1970-01-02T00:00:00Z");
        assert_eq!(format_aws(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn now_is_whole_seconds_utc() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
        assert!(OffsetDateTime::parse(&now, &Rfc3339).is_ok());
    }

    #[test]
    fn times() {
        let t = parse_cli_time("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1795428000);
        assert_eq!(parse_cli_time("1795428000").unwrap(), t);
        assert_eq!(parse_cli_time("2026-11-23T10:00:00").unwrap(), t);
        assert_eq!(parse_cli_time("2026-11-23T11:00:00+01:00").unwrap(), t);
        assert_eq!(
            parse_cli_time("2026-11-23").unwrap().unix_timestamp(),
            1795392000
        );
        assert!(parse_cli_time("yesterday").is_none());
        assert!(parse_cli_time("").is_none());
    }

    #[test]
    fn dates_print_as_the_aws_cli_does() {
        assert_eq!(
            rfc3339_to_cli("2026-11-23T09:40:00.000Z"),
            "2026-11-23T09:40:00+00:00"
        );
        assert_eq!(
            http_date_to_cli("Mon, 23 Nov 2026 09:40:00 GMT"),
            "2026-11-23T09:40:00+00:00"
        );
        assert_eq!(rfc3339_to_cli("soon"), "soon");
    }
}
