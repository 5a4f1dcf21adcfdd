//! Cron expressions with the original system's meaning (gorhill/cronexpr),
//! evaluated by `croner` in a job's time zone.
//!
//! The original accepted 5 fields (`min hour dom month dow`), 6 fields (the
//! same plus a year) and 7 fields (seconds first, then a year). `croner`
//! reads 6 fields as *seconds* plus 5, so [`normalise`] rewrites every form
//! to croner's 7-field layout before parsing. Everything else — weekday 0 and
//! 7 both Sunday, day-of-month OR day-of-week when both are restricted, `L`,
//! `W`, `#`, names, `?` — is croner's default behaviour, pinned by the tests
//! below.
//!
//! Daylight-saving changes (pinned by tests): a wall-clock time that a
//! spring-forward gap skips does not exist, so a job fixed at that time
//! (`30 2 * * *` in Europe/Berlin on the last Sunday of March) fires once at
//! the first instant after the gap (03:00 local) — a daily job still runs
//! that day, as Vixie cron does. A time repeated by a fall-back overlap fires
//! once, at its first occurrence. Jobs that fire every second/minute/hour
//! simply follow the clock: they have no run in the missing hour and fire
//! through both halves of a repeated one.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::Error;

/// Expressions parsed once per text and zone, for decoding many jobs at
/// once (a job list, a watch snapshot): jobs mostly share a handful of
/// expressions, and a parse costs far more than the lookup.
#[derive(Default)]
pub struct ScheduleCache {
    parsed: HashMap<(String, Tz), Result<Arc<Schedule>, String>>,
}

impl ScheduleCache {
    /// [`Schedule::parse`], remembered.
    pub fn parse(&mut self, expr: &str, tz: Tz) -> Result<Arc<Schedule>, Error> {
        let parsed = self
            .parsed
            .entry((expr.to_string(), tz))
            .or_insert_with(|| match Schedule::parse(expr, tz) {
                Ok(s) => Ok(Arc::new(s)),
                Err(Error::InvalidCron { reason, .. }) => Err(reason),
                Err(e) => Err(e.to_string()),
            });
        parsed.clone().map_err(|reason| Error::InvalidCron {
            expr: expr.to_string(),
            reason,
        })
    }
}

/// A parsed cron expression bound to the time zone it is evaluated in.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses `expr` with the original's field layout, evaluated in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCron {
            expr: expr.to_string(),
            reason,
        };
        let normalised = normalise(expr).map_err(invalid)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Required)
            .sloppy_ranges(true)
            .build()
            .parse(&normalised)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { cron, tz })
    }

    /// The time zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`, or `None` when the
    /// expression never fires again (for example a year in the past).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Up to `count` fire times strictly after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while out.len() < count {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Parses an IANA time-zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| Error::InvalidTimezone {
        name: name.to_string(),
    })
}

/// Rewrites the original's 5/6/7-field forms and macros to croner's
/// `sec min hour dom month dow year` layout.
fn normalise(expr: &str) -> Result<String, String> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        let fields = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 * *",
            "@monthly" => "0 0 0 1 * * *",
            "@weekly" => "0 0 0 * * 0 *",
            "@daily" | "@midnight" => "0 0 0 * * * *",
            "@hourly" => "0 0 * * * * *",
            _ => {
                return Err(format!(
                    "unknown macro `{trimmed}` (known: @yearly @annually @monthly @weekly @daily @hourly)"
                ));
            }
        };
        return Ok(fields.to_string());
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    match fields.len() {
        5 => Ok(format!("0 {} *", fields.join(" "))),
        6 => Ok(format!("0 {}", fields.join(" "))),
        7 => Ok(fields.join(" ")),
        n => Err(format!(
            "expected 5 fields (min hour dom month dow), 6 (… year) or 7 (sec … year), got {n}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test time")
    }

    fn next_n(expr: &str, tz: Tz, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        Schedule::parse(expr, tz).expect(expr).upcoming(from, n)
    }

    #[test]
    fn original_examples_every_five_and_two_seconds() {
        let from = utc(2024, 1, 1, 0, 0, 1);
        assert_eq!(
            next_n("*/5 * * * * * *", Tz::UTC, from, 3),
            vec![
                utc(2024, 1, 1, 0, 0, 5),
                utc(2024, 1, 1, 0, 0, 10),
                utc(2024, 1, 1, 0, 0, 15)
            ]
        );
        assert_eq!(
            next_n("*/2 * * * * * *", Tz::UTC, from, 3),
            vec![
                utc(2024, 1, 1, 0, 0, 2),
                utc(2024, 1, 1, 0, 0, 4),
                utc(2024, 1, 1, 0, 0, 6)
            ]
        );
    }

    #[test]
    fn five_fields_are_minute_hour_dom_month_dow_at_second_zero() {
        let from = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(
            next_n("30 2 * * *", Tz::UTC, from, 2),
            vec![utc(2024, 1, 1, 2, 30, 0), utc(2024, 1, 2, 2, 30, 0)]
        );
    }

    #[test]
    fn six_fields_end_with_a_year_not_start_with_seconds() {
        // cronexpr: `min hour dom month dow year`; croner alone would read seconds first.
        let from = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(
            next_n("0 12 1 1 * 2026", Tz::UTC, from, 2),
            vec![utc(2026, 1, 1, 12, 0, 0)]
        );
    }

    #[test]
    fn seven_fields_are_seconds_first_then_year() {
        let from = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(
            next_n("15 0 12 1 1 * 2025-2026", Tz::UTC, from, 3),
            vec![utc(2025, 1, 1, 12, 0, 15), utc(2026, 1, 1, 12, 0, 15)]
        );
    }

    #[test]
    fn weekday_zero_and_seven_are_sunday() {
        // 2024-01-07 is a Sunday.
        let from = utc(2024, 1, 1, 0, 0, 0);
        let sunday = vec![utc(2024, 1, 7, 0, 0, 0)];
        assert_eq!(next_n("0 0 * * 0", Tz::UTC, from, 1), sunday);
        assert_eq!(next_n("0 0 * * 7", Tz::UTC, from, 1), sunday);
        assert_eq!(next_n("0 0 * * SUN", Tz::UTC, from, 1), sunday);
        // 1 is Monday (the `cron` crate would say Sunday).
        assert_eq!(
            next_n("0 0 * * 1", Tz::UTC, from, 1),
            vec![utc(2024, 1, 8, 0, 0, 0)]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 13th OR any Friday: Jan 2024 Fridays are 5, 12, 19; the 13th is a Saturday.
        let from = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(
            next_n("0 0 13 * 5", Tz::UTC, from, 4),
            vec![
                utc(2024, 1, 5, 0, 0, 0),
                utc(2024, 1, 12, 0, 0, 0),
                utc(2024, 1, 13, 0, 0, 0),
                utc(2024, 1, 19, 0, 0, 0)
            ]
        );
    }

    #[test]
    fn last_weekday_nearest_and_nth() {
        let from = utc(2024, 2, 1, 0, 0, 0);
        // L: last day of month (2024 is a leap year).
        assert_eq!(
            next_n("0 0 L * *", Tz::UTC, from, 1),
            vec![utc(2024, 2, 29, 0, 0, 0)]
        );
        // 5L: last Friday of February 2024.
        assert_eq!(
            next_n("0 0 * * 5L", Tz::UTC, from, 1),
            vec![utc(2024, 2, 23, 0, 0, 0)]
        );
        // 1#2: second Monday.
        assert_eq!(
            next_n("0 0 * * 1#2", Tz::UTC, from, 1),
            vec![utc(2024, 2, 12, 0, 0, 0)]
        );
        // 17W: 2024-02-17 is a Saturday, nearest weekday is Friday the 16th.
        assert_eq!(
            next_n("0 0 17W * *", Tz::UTC, from, 1),
            vec![utc(2024, 2, 16, 0, 0, 0)]
        );
    }

    #[test]
    fn macros() {
        let from = utc(2024, 1, 3, 10, 20, 0);
        assert_eq!(
            next_n("@yearly", Tz::UTC, from, 1),
            vec![utc(2025, 1, 1, 0, 0, 0)]
        );
        assert_eq!(
            next_n("@annually", Tz::UTC, from, 1),
            vec![utc(2025, 1, 1, 0, 0, 0)]
        );
        assert_eq!(
            next_n("@monthly", Tz::UTC, from, 1),
            vec![utc(2024, 2, 1, 0, 0, 0)]
        );
        assert_eq!(
            next_n("@weekly", Tz::UTC, from, 1),
            vec![utc(2024, 1, 7, 0, 0, 0)]
        );
        assert_eq!(
            next_n("@daily", Tz::UTC, from, 1),
            vec![utc(2024, 1, 4, 0, 0, 0)]
        );
        assert_eq!(
            next_n("@hourly", Tz::UTC, from, 1),
            vec![utc(2024, 1, 3, 11, 0, 0)]
        );
    }

    #[test]
    fn sloppy_start_step_and_names_and_question_mark() {
        let from = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(
            next_n("3/20 * * * * * *", Tz::UTC, from, 3),
            vec![
                utc(2024, 1, 1, 0, 0, 3),
                utc(2024, 1, 1, 0, 0, 23),
                utc(2024, 1, 1, 0, 0, 43)
            ]
        );
        // Strictly after 2024-01-01 00:00 (a Monday): the next Monday in January.
        assert_eq!(
            next_n("0 0 ? JAN MON", Tz::UTC, from, 1),
            vec![utc(2024, 1, 8, 0, 0, 0)]
        );
    }

    #[test]
    fn evaluated_in_the_jobs_time_zone() {
        let tz = parse_timezone("Asia/Tokyo").expect("zone");
        // 09:00 in Tokyo is 00:00 UTC.
        let from = utc(2024, 1, 1, 12, 0, 0);
        assert_eq!(
            next_n("0 9 * * *", tz, from, 1),
            vec![utc(2024, 1, 2, 0, 0, 0)]
        );
    }

    #[test]
    fn dst_gap_runs_a_skipped_time_right_after_the_gap() {
        // Europe/Berlin springs forward on 2024-03-31 from 02:00 to 03:00 (01:00 UTC).
        let tz = parse_timezone("Europe/Berlin").expect("zone");
        let from = utc(2024, 3, 30, 12, 0, 0);
        // 2024-03-31 02:30 does not exist in Berlin: that day's run happens at
        // the first instant after the gap (03:00 local, 01:00 UTC), then 02:30 again.
        assert_eq!(
            next_n("30 2 * * *", tz, from, 2),
            vec![utc(2024, 3, 31, 1, 0, 0), utc(2024, 4, 1, 0, 30, 0)]
        );
        // An hourly job simply has one run fewer that day.
        let hourly = next_n("0 * * * *", tz, utc(2024, 3, 30, 23, 30, 0), 3);
        assert_eq!(
            hourly,
            vec![
                utc(2024, 3, 31, 0, 0, 0),
                utc(2024, 3, 31, 1, 0, 0),
                utc(2024, 3, 31, 2, 0, 0)
            ]
        );
    }

    #[test]
    fn dst_overlap_fires_a_fixed_time_once() {
        // Europe/Berlin falls back on 2024-10-27 from 03:00 to 02:00 (01:00 UTC),
        // so 02:30 happens twice: at 00:30 UTC and at 01:30 UTC.
        let tz = parse_timezone("Europe/Berlin").expect("zone");
        let from = utc(2024, 10, 26, 12, 0, 0);
        assert_eq!(
            next_n("30 2 * * *", tz, from, 2),
            vec![utc(2024, 10, 27, 0, 30, 0), utc(2024, 10, 28, 1, 30, 0)]
        );
        // A job that fires every 30 minutes keeps firing through both halves.
        let every_half_hour = next_n("*/30 * * * *", tz, utc(2024, 10, 27, 0, 0, 0), 4);
        assert_eq!(
            every_half_hour,
            vec![
                utc(2024, 10, 27, 0, 30, 0),
                utc(2024, 10, 27, 1, 0, 0),
                utc(2024, 10, 27, 1, 30, 0),
                utc(2024, 10, 27, 2, 0, 0)
            ]
        );
    }

    #[test]
    fn invalid_expressions_say_why() {
        for (expr, needle) in [
            ("* * * *", "expected 5 fields"),
            ("* * * * * * * *", "got 8"),
            ("61 * * * *", ""),
            ("* * * * FOO", ""),
            ("@every", "unknown macro"),
            ("", "got 0"),
        ] {
            let err = Schedule::parse(expr, Tz::UTC).expect_err(expr).to_string();
            assert!(err.contains("cron expression"), "{err}");
            assert!(err.contains(needle), "{expr:?}: {err}");
        }
    }

    #[test]
    fn expression_in_the_past_never_fires() {
        let s = Schedule::parse("0 0 1 1 * 2001", Tz::UTC).expect("parses");
        assert_eq!(s.next_after(utc(2024, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn unknown_zone_is_an_error() {
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert!(parse_timezone("UTC").is_ok());
    }
}
