//! Fixed clock for tests: the domain never reads the real one, so neither do its tests.

use chrono::{DateTime, Duration, TimeZone, Utc};

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap()
}

pub(crate) fn hours(n: i64) -> DateTime<Utc> {
    t0() + Duration::hours(n)
}

pub(crate) fn days(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}
