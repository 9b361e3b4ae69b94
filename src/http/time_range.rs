//! `from` / `until` query values: ISO-8601 of any precision (api.md, Conventions).
//!
//! A value names a period as long as its precision: `2026-01-05` is that whole day,
//! `2026-01-05T15` that hour. `from` starts at the period's start; `until` includes
//! the whole period, so `from=2026-01-05&until=2026-01-05` is the 5th.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use super::{Error, FieldError};

/// A half-open interval `[from, until)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn parse(from: Option<&str>, until: Option<&str>) -> Result<Self, Error> {
        let mut errors = Vec::new();
        let mut field = |name: &str, raw: Option<&str>| -> Option<(DateTime<Utc>, DateTime<Utc>)> {
            let raw = raw?.trim();
            match period(raw) {
                Some(p) => Some(p),
                None => {
                    errors.push(FieldError {
                        field: name.to_owned(),
                        message: format!(
                            "{raw:?} is not an ISO-8601 date or time (e.g. 2026-01-05, \
                             2026-01-05T15, 2026-01-05T15:53, 2026-01-05T15:53:00Z, 2026-01, 2026)"
                        ),
                    });
                    None
                }
            }
        };
        let from_period = field("from", from);
        let until_period = field("until", until);
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let range = Self {
            from: from_period.map(|(start, _)| start),
            until: until_period.map(|(_, end)| end),
        };
        if let (Some(f), Some(u)) = (range.from, range.until) {
            if f >= u {
                return Err(Error::field("until", "must not be before from"));
            }
        }
        Ok(range)
    }
}

/// A parse error as one line, for the command line.
pub fn describe(error: &Error) -> String {
    match error {
        Error::Validation(errors) => errors
            .iter()
            .map(|e| format!("--{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The period `raw` names: its start and its exclusive end.
pub fn period(raw: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        let at = at.with_timezone(&Utc);
        return Some((at, at + Duration::microseconds(1)));
    }
    let (date, time) = match raw.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches(['Z', 'z']))),
        None => (raw, None),
    };
    if time.is_none() {
        if let Some(period) = month_or_year(date) {
            return Some(period);
        }
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let (time, length) = match time {
        None => (NaiveTime::MIN, Duration::days(1)),
        Some(t) => match t.len() {
            2 => (
                NaiveTime::parse_from_str(&format!("{t}:00"), "%H:%M").ok()?,
                Duration::hours(1),
            ),
            5 => (
                NaiveTime::parse_from_str(t, "%H:%M").ok()?,
                Duration::minutes(1),
            ),
            8 => (
                NaiveTime::parse_from_str(t, "%H:%M:%S").ok()?,
                Duration::seconds(1),
            ),
            _ => return None,
        },
    };
    let start = NaiveDateTime::new(date, time).and_utc();
    Some((start, start + length))
}

/// `2026-01` (that month) or `2026` (that year): ISO-8601's reduced precisions.
fn month_or_year(raw: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (year, month) = match raw.split_once('-') {
        Some((y, m)) if digits(y, 4) && digits(m, 2) => (y.parse().ok()?, Some(m.parse().ok()?)),
        None if digits(raw, 4) => (raw.parse().ok()?, None),
        _ => return None,
    };
    let (start, end) = match month {
        Some(m) => (
            NaiveDate::from_ymd_opt(year, m, 1)?,
            if m == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, m + 1, 1)?
            },
        ),
        None => (
            NaiveDate::from_ymd_opt(year, 1, 1)?,
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        ),
    };
    Some((
        start.and_time(NaiveTime::MIN).and_utc(),
        end.and_time(NaiveTime::MIN).and_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn every_precision_names_its_whole_period() {
        assert_eq!(
            period("2026-01-05"),
            Some((at("2026-01-05T00:00:00Z"), at("2026-01-06T00:00:00Z")))
        );
        assert_eq!(
            period("2026-01-05T15"),
            Some((at("2026-01-05T15:00:00Z"), at("2026-01-05T16:00:00Z")))
        );
        assert_eq!(
            period("2026-01-05T15:53"),
            Some((at("2026-01-05T15:53:00Z"), at("2026-01-05T15:54:00Z")))
        );
        assert_eq!(
            period("2026-01-05T15:53:00Z").map(|p| p.0),
            Some(at("2026-01-05T15:53:00Z"))
        );
        assert_eq!(
            period("2026-01-05T16:53:00+01:00").map(|p| p.0),
            Some(at("2026-01-05T15:53:00Z"))
        );
        assert_eq!(
            period("2026-02"),
            Some((at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")))
        );
        assert_eq!(
            period("2026-12"),
            Some((at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            period("2026"),
            Some((at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn nonsense_and_impossible_dates_are_refused() {
        for raw in [
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-01-05T25",
            "",
            "2026-13",
            "2026-1",
            "20261",
            "-2026",
        ] {
            assert_eq!(period(raw), None, "{raw}");
        }
    }

    #[test]
    fn until_includes_its_whole_day_and_an_inverted_range_is_refused() {
        let r = TimeRange::parse(Some("2026-01-05"), Some("2026-01-05")).unwrap();
        assert_eq!(r.until, Some(at("2026-01-06T00:00:00Z")));
        assert!(TimeRange::parse(Some("2026-01-06"), Some("2026-01-05")).is_err());
        assert!(TimeRange::parse(Some("soon"), None).is_err());
    }
}
