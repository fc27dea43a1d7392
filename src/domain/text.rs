//! How values are written: timestamps as the run table stores them, strings
//! cut to the limits of ECS and of the model.

use time::OffsetDateTime;

/// A time as the run table stores it: RFC 3339, UTC, with milliseconds.
pub fn timestamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).expect("UTC timestamp formats")
}

/// Cut `s` to at most `max` bytes on a character boundary (ECS `reason` and the
/// model's `GenericString` have hard limits).
pub fn truncate_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_255_200_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2026-11-21T10:00:00.123Z");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_to("abc", 5), "abc");
        assert_eq!(truncate_to("abcdef", 3), "abc");
        assert_eq!(truncate_to("aé", 2), "a");
    }
}
