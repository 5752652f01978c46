//! Timestamps: milliseconds since the Unix epoch in UTC, which both store backends keep as a
//! 64-bit integer, and their RFC 3339 form for the API (`2030-01-01T12:00:00Z`, docs/api.md).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// The current time.
pub fn now_ms() -> Millis {
    let now = std::time::SystemTime::now();
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        // A clock before 1970 is a broken clock; saying "the epoch" keeps ordering sane.
        Err(_) => 0,
    }
}

/// RFC 3339 in UTC, with milliseconds only when there are any.
pub fn format_rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return "1970-01-01T00:00:00Z".to_string();
    };
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    let milli = t.millisecond();
    if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// Parses an RFC 3339 time with any offset (`2030-01-01T12:00:00Z`, `...+02:00`).
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        format!("\"{s}\" is not an RFC 3339 time ({e}): write it like 2030-01-01T12:00:00Z")
    })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        let ms = parse_rfc3339("2030-01-01T12:00:00Z").unwrap();
        assert_eq!(ms, 1_893_499_200_000);
        assert_eq!(format_rfc3339(ms), "2030-01-01T12:00:00Z");
        assert_eq!(format_rfc3339(ms + 5), "2030-01-01T12:00:00.005Z");
        assert_eq!(parse_rfc3339("2030-01-01T14:00:00+02:00").unwrap(), ms);
        assert!(parse_rfc3339("tomorrow").unwrap_err().contains("RFC 3339"));
    }
}
