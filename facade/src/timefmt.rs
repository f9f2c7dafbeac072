//! Times as podman prints them: RFC 3339 in UTC with nanoseconds (inspect, ps JSON) and
//! docker's "N minutes ago".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil::DateTime;
use jiff::SignedDuration;

/// The Unix epoch as a UTC civil time.
const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// `2026-11-29T01:22:28.812260819Z`: always nine fraction digits. Times before the epoch show as
/// the epoch; times after the year 9999 (beyond jiff's range) as its last nanosecond.
pub fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let utc = SignedDuration::try_from(since_epoch)
        .ok()
        .and_then(|d| EPOCH.checked_add(d).ok())
        .unwrap_or(DateTime::MAX);
    format!("{utc:.9}Z")
}

/// `Less than a second`, `5 seconds`, `About a minute`, `3 hours`… (docker's units).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_owned(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".to_owned(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// `5 seconds ago`.
pub fn ago(t: SystemTime) -> String {
    let d = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO);
    format!("{} ago", human_duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 5);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000000000Z");
        let nanos = UNIX_EPOCH + Duration::new(1_700_000_000, 812_260_819);
        assert_eq!(rfc3339(nanos), "2023-11-14T22:13:20.812260819Z");
    }

    #[test]
    fn rfc3339_edges() {
        let at = |secs: u64, nanos: u32| rfc3339(UNIX_EPOCH + Duration::new(secs, nanos));
        // every fraction has nine digits, trailing zeros kept
        assert_eq!(at(0, 1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(at(0, 500_000_000), "1970-01-01T00:00:00.500000000Z");
        assert_eq!(at(0, 999_999_999), "1970-01-01T00:00:00.999999999Z");
        // leap days: 2024 and 2000 have one, 2100 does not
        assert_eq!(at(1_709_251_199, 0), "2024-02-29T23:59:59.000000000Z");
        assert_eq!(at(1_709_251_200, 0), "2024-03-01T00:00:00.000000000Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000000000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000000Z");
        assert_eq!(at(253_402_300_800, 0), "9999-12-31T23:59:59.999999999Z");
        // before the epoch: clamped to it
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn humanises() {
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3 days");
    }
}
