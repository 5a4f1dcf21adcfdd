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
//!
//! [`Schedule::warnings`] says where an accepted expression probably does
//! not do what its author meant: fire times that a daylight-saving change
//! within the next year moves, drops or repeats, and a 6-field expression
//! written seconds-first (Quartz style). Parse errors name the field, as
//! written, and what it accepts ([`Schedule::parse`]).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{
    DateTime, Datelike, NaiveDateTime, Offset, SubsecRound, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
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
    /// The expression as written, for [`Schedule::warnings`].
    expr: Box<str>,
}

impl Schedule {
    /// Parses `expr` with the original's field layout, evaluated in `tz`.
    ///
    /// A field that does not parse is named as written, with what it
    /// accepts: "field 2 (hour) `25` is out of range 0–23".
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCron {
            expr: expr.to_string(),
            reason,
        };
        let normalised = normalise(expr).map_err(invalid)?;
        let cron = parser()
            .parse(&normalised)
            .map_err(|e| invalid(explain(expr, &e)))?;
        Ok(Self {
            cron,
            tz,
            expr: expr.into(),
        })
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

/// How far ahead [`Schedule::warnings`] looks for daylight-saving changes.
const WARNING_HORIZON: TimeDelta = TimeDelta::days(366);

/// Most wall-clock fire times counted in one skipped or repeated span (a
/// job firing every second has 3600 in an hour; historic gaps reach a day).
const MAX_COUNTED: usize = 100_000;

impl Schedule {
    /// Where this schedule probably does not do what its author meant, one
    /// sentence each; empty when nothing stands out. Never a reason to
    /// refuse the expression:
    ///
    /// - each change of the zone's UTC offset in the year after `from` at
    ///   which the expression has a fire time: a time skipped by a
    ///   spring-forward gap runs right after it or not at all, a time
    ///   repeated by a fall-back overlap runs once or twice;
    /// - a 6-field expression ending in a `*` year that also reads as
    ///   seconds-first: rcron reads it as `min hour day month weekday year`.
    ///
    /// Offset changes are found by stepping hourly through the year and
    /// bisecting; only the wall-clock span of each change is examined.
    pub fn warnings(&self, from: DateTime<Utc>) -> Vec<String> {
        let mut out: Vec<String> = quartz_warning(&self.expr).into_iter().collect();
        // Beyond croner's years nothing fires (and far-off instants would
        // overflow the arithmetic below).
        if !(croner::YEAR_LOWER_LIMIT..croner::YEAR_UPPER_LIMIT).contains(&from.year()) {
            return out;
        }
        let from = from.trunc_subsecs(0);
        for change in offset_changes(self.tz, from, from + WARNING_HORIZON) {
            out.extend(self.offset_change_warning(&change));
        }
        out
    }

    /// The warning for one change of the zone's offset, if the expression
    /// fires in the wall-clock span it skips or repeats.
    fn offset_change_warning(&self, change: &OffsetChange) -> Option<String> {
        let second = TimeDelta::seconds(1);
        // The wall clock just before the change and right after it: 02:00
        // and 03:00 at a spring-forward, 03:00 and 02:00 at a fall-back.
        let clock_before = (change.at + TimeDelta::seconds(change.before.into())).naive_utc();
        let clock_after = (change.at + TimeDelta::seconds(change.after.into())).naive_utc();
        let zone = self.tz.name();
        if change.after > change.before {
            // Spring forward: [clock_before, clock_after) does not exist.
            let (count, first) = self.wall_clock_matches(clock_before, clock_after);
            let first = first?;
            let day = clock_before.date();
            let span = format!("{}–{}", clock(clock_before), clock(clock_after));
            // Croner fires a fixed time that does not exist at the first
            // instant after the gap; other jobs simply lose the runs.
            let moved = self.next_after(change.at - second) == Some(change.at)
                && !self.cron.is_time_matching(&clock_after).unwrap_or(false);
            Some(match (moved, count) {
                (true, 1) => format!(
                    "runs at {} instead of {} on {day} ({zone} skips {span})",
                    clock(clock_after),
                    clock(first)
                ),
                (true, n) => format!(
                    "runs once at {} instead of {n} times on {day} ({zone} skips {span})",
                    clock(clock_after)
                ),
                (false, 1) => format!(
                    "does not run at {} on {day}: {zone} skips {span}",
                    clock(first)
                ),
                (false, n) => {
                    format!("loses {n} runs on {day}: {span} does not exist in {zone}")
                }
            })
        } else {
            // Fall back: [clock_after, clock_before) happens twice, first
            // before `change.at`, then for `repeat` after it.
            let (count, first) = self.wall_clock_matches(clock_after, clock_before);
            let first = first?;
            let day = clock_after.date();
            let span = format!("{}–{}", clock(clock_after), clock(clock_before));
            let repeat = TimeDelta::seconds((change.before - change.after).into());
            // Jobs that follow the clock fire in both halves; a fixed time
            // fires once, in the first.
            let twice = self
                .next_after(change.at - second)
                .is_some_and(|t| t < change.at + repeat);
            Some(match (twice, count) {
                (true, 1) => format!(
                    "runs twice at {} on {day}: {span} happens twice in {zone}",
                    clock(first)
                ),
                (true, n) => {
                    format!("runs {n} extra times on {day}: {span} happens twice in {zone}")
                }
                (false, 1) => format!(
                    "{} on {day} happens twice in {zone}; the job runs once, at the first",
                    clock(first)
                ),
                (false, n) => format!(
                    "{span} on {day} happens twice in {zone}; the job's {n} runs in it happen once, in the first"
                ),
            })
        }
    }

    /// How many wall-clock times in `[start, end)` the expression matches
    /// (at most [`MAX_COUNTED`]), and the first.
    fn wall_clock_matches(
        &self,
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> (usize, Option<NaiveDateTime>) {
        let mut count = 0;
        let mut first = None;
        let mut cursor = start;
        let mut inclusive = true;
        while count < MAX_COUNTED {
            match self.cron.find_next_occurrence(&cursor, inclusive) {
                Ok(t) if t < end => {
                    first.get_or_insert(t);
                    count += 1;
                    cursor = t;
                    inclusive = false;
                }
                _ => break,
            }
        }
        (count, first)
    }
}

/// A change of a zone's UTC offset.
#[derive(Debug, PartialEq, Eq)]
struct OffsetChange {
    /// The first instant with the new offset.
    at: DateTime<Utc>,
    /// Offset before, in seconds east of UTC.
    before: i32,
    /// Offset after.
    after: i32,
}

fn utc_offset(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Every change of `tz`'s UTC offset in `(from, until]`, found by stepping
/// hourly (no zone changes twice within an hour) and bisecting to the second.
fn offset_changes(tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<OffsetChange> {
    let mut out = Vec::new();
    let mut t = from;
    let mut offset = utc_offset(tz, t);
    while t < until {
        let next = (t + TimeDelta::hours(1)).min(until);
        let next_offset = utc_offset(tz, next);
        if next_offset != offset {
            // `lo` has the old offset, `hi` the new one.
            let (mut lo, mut hi) = (t, next);
            while (hi - lo).num_seconds() > 1 {
                let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
                if utc_offset(tz, mid) == offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(OffsetChange {
                at: hi,
                before: offset,
                after: next_offset,
            });
        }
        t = next;
        offset = next_offset;
    }
    out
}

/// A wall-clock time as `02:30`, or `02:30:15` when the seconds matter.
fn clock(t: NaiveDateTime) -> String {
    if t.second() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

/// The warning for a 6-field expression that looks seconds-first: its
/// year is `*` (what 5 fields already mean, so nobody writes it for the
/// year) and it also parses with the first field read as seconds.
fn quartz_warning(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 6 || fields[5] != "*" {
        return None;
    }
    let written = fields.join(" ");
    let seconds_first = format!("{written} *");
    parser().parse(&seconds_first).ok()?;
    Some(format!(
        "6 fields are `min hour day month weekday year` here: `{written}` {}; \
         for seconds first, write 7 fields: `{seconds_first}`",
        minutes_reading(&fields)
    ))
}

/// What the first five fields of a 6-field expression mean, briefly:
/// "runs every 30 minutes", or "reads minute `0`, hour `0`, day `12`".
fn minutes_reading(fields: &[&str]) -> String {
    let any = |f: &&str| *f == "*" || *f == "?";
    if fields[1..5].iter().all(any) {
        let minute = fields[0];
        if minute == "*" {
            return "runs every minute".into();
        }
        if let Some((start, step)) = minute.split_once('/')
            && let Ok(step) = step.parse::<u32>()
            && matches!(start, "*" | "" | "0")
        {
            return if step == 1 {
                "runs every minute".into()
            } else {
                format!("runs every {step} minutes")
            };
        }
        if let Ok(m) = minute.parse::<u32>() {
            return format!("runs at minute {m} of every hour");
        }
    }
    let named: Vec<String> = ["minute", "hour", "day", "month", "weekday"]
        .iter()
        .zip(fields)
        .enumerate()
        .filter(|(i, (_, f))| *i == 0 || !any(f))
        .map(|(_, (name, f))| format!("{name} `{f}`"))
        .collect();
    format!("reads {}", named.join(", "))
}

/// A job's IANA time zone (`Europe/Berlin`), written as its name. A type
/// of its own rather than [`Tz`] so that the REST schema can describe it
/// (`openapi` feature): traits of poem-openapi cannot be implemented for a
/// type of chrono-tz here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timezone(pub Tz);

impl Timezone {
    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

/// Parses an IANA time-zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| Error::InvalidTimezone {
        name: name.to_string(),
    })
}

/// croner configured for the normalised 7-field layout.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .sloppy_ranges(true)
        .build()
}

/// One field of the original's layout, for error messages.
struct Field {
    /// Its name in messages.
    name: &'static str,
    /// Its position in croner's 7-field layout.
    slot: usize,
    min: u64,
    max: u64,
    /// Names it accepts, the first worth `min` (weekdays: `SUN` = 0).
    names: &'static [&'static str],
    /// The modifiers (`?`, `L`, `W`, `#`) it accepts.
    modifiers: &'static str,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = Field {
    name: "second",
    slot: 0,
    min: 0,
    max: 59,
    names: &[],
    modifiers: "",
};
const MINUTE: Field = Field {
    name: "minute",
    slot: 1,
    ..SECOND
};
const HOUR: Field = Field {
    name: "hour",
    slot: 2,
    max: 23,
    ..SECOND
};
const DAY: Field = Field {
    name: "day-of-month",
    slot: 3,
    min: 1,
    max: 31,
    names: &[],
    modifiers: "?LW",
};
const MONTH: Field = Field {
    name: "month",
    slot: 4,
    min: 1,
    max: 12,
    names: MONTHS,
    modifiers: "",
};
const WEEKDAY: Field = Field {
    name: "weekday",
    slot: 5,
    min: 0,
    max: 7,
    names: WEEKDAYS,
    modifiers: "?L#",
};
const YEAR: Field = Field {
    name: "year",
    slot: 6,
    min: croner::YEAR_LOWER_LIMIT as u64,
    max: croner::YEAR_UPPER_LIMIT as u64,
    names: &[],
    modifiers: "",
};

/// The fields of an expression of `count` fields, as written.
fn layout(count: usize) -> &'static [Field] {
    match count {
        5 => &[MINUTE, HOUR, DAY, MONTH, WEEKDAY],
        6 => &[MINUTE, HOUR, DAY, MONTH, WEEKDAY, YEAR],
        7 => &[SECOND, MINUTE, HOUR, DAY, MONTH, WEEKDAY, YEAR],
        _ => &[],
    }
}

/// Why croner refused `expr` (already of a valid shape), in the user's
/// terms: the first field that fails on its own, as written, and what is
/// wrong with it. croner only says "Component error: Number out of bounds".
fn explain(expr: &str, err: &CronError) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut reason = fields
        .iter()
        .zip(layout(fields.len()))
        .enumerate()
        .find_map(|(i, (text, field))| {
            // Every other field `*`: does this one parse on its own?
            let mut probe = ["*"; 7];
            probe[field.slot] = text;
            let refused = parser().parse(&probe.join(" ")).err()?;
            Some(format!(
                "field {} ({}) {}",
                i + 1,
                field.name,
                field.explain(text, &refused)
            ))
        })
        .unwrap_or_else(|| croner_detail(err));
    // Quartz's `0 0 12 * * ?` fails here on its year; say what would work.
    if fields.len() == 6 {
        let seconds_first = format!("{} *", fields.join(" "));
        if parser().parse(&seconds_first).is_ok() {
            reason.push_str(&format!(
                "; 6 fields are `min hour day month weekday year` here, for seconds first \
                 write 7 fields: `{seconds_first}`"
            ));
        }
    }
    reason
}

/// croner's own message, without its "Component error:" prefix.
fn croner_detail(err: &CronError) -> String {
    match err {
        CronError::ComponentError(m)
        | CronError::InvalidPattern(m)
        | CronError::IllegalCharacters(m) => m.trim_end_matches('.').to_lowercase(),
        other => other.to_string(),
    }
}

impl Field {
    /// What the field accepts: `0–23`, `1–12 or JAN–DEC`.
    fn allowed(&self) -> String {
        match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => {
                format!("{}–{} or {first}–{last}", self.min, self.max)
            }
            _ => format!("{}–{}", self.min, self.max),
        }
    }

    /// What is wrong with `text`, a value croner refused for this field:
    /// "`25` is out of range 0–23", or "`1,25`: `25` is out of range 0–23".
    fn explain(&self, text: &str, refused: &CronError) -> String {
        match text.split(',').find_map(|part| self.fault(part)) {
            Some((culprit, problem)) if culprit == text => format!("`{text}` {problem}"),
            Some((culprit, problem)) => format!("`{text}`: `{culprit}` {problem}"),
            None => format!(
                "`{text}` is not valid ({}); allowed: {} with `*`, lists `a,b`, ranges `a-b` \
                 and steps `*/n`",
                croner_detail(refused),
                self.allowed()
            ),
        }
    }

    /// The first problem of one list item, as (what, why).
    fn fault(&self, part: &str) -> Option<(String, String)> {
        if part.is_empty() {
            return Some((part.into(), "is an empty list item".into()));
        }
        let (base, step) = match part.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u64>() {
                Ok(0) => {
                    return Some((part.into(), "has a step of 0 (steps are 1 or more)".into()));
                }
                Ok(_) => {}
                Err(_) => {
                    return Some((
                        part.into(),
                        format!("has a step `{step}` that is not a whole number"),
                    ));
                }
            }
        }
        if base == "*" || (base.is_empty() && step.is_some()) {
            return None;
        }
        match base.split_once('-') {
            Some((lo, hi)) => {
                let lo = match self.value(lo, false) {
                    Ok(v) => v,
                    Err(fault) => return Some(fault),
                };
                let hi = match self.value(hi, true) {
                    Ok(v) => v,
                    Err(fault) => return Some(fault),
                };
                (lo > hi).then(|| {
                    (
                        base.to_string(),
                        "is a backwards range (write the smaller value first)".into(),
                    )
                })
            }
            None => self.value(base, false).err(),
        }
    }

    /// One value: a number in range or a name (`end`: the end of a range,
    /// where `SUN` is 7).
    fn value(&self, token: &str, end: bool) -> Result<u64, (String, String)> {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            // Digits too many for u64 are out of range all the same.
            let n = token.parse::<u64>().unwrap_or(u64::MAX);
            return if (self.min..=self.max).contains(&n) {
                Ok(n)
            } else {
                Err((
                    token.into(),
                    format!("is out of range {}–{}", self.min, self.max),
                ))
            };
        }
        let upper = token.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            let n = self.min + i as u64;
            return Ok(if end && self.names == WEEKDAYS && n == 0 {
                7
            } else {
                n
            });
        }
        // croner reads these names in any field, as their numbers.
        if let Some(i) = MONTHS.iter().position(|n| *n == upper) {
            return Ok(i as u64 + 1);
        }
        if let Some(i) = WEEKDAYS.iter().position(|n| *n == upper) {
            return Ok(i as u64);
        }
        if upper.contains(['?', 'L', 'W', '#']) {
            if let Some(c) = "?LW#"
                .chars()
                .find(|c| upper.contains(*c) && !self.modifiers.contains(*c))
            {
                let allowed_in = match c {
                    '?' | 'L' => "the day-of-month and weekday fields allow",
                    'W' => "the day-of-month field allows",
                    _ => "the weekday field allows",
                };
                return Err((token.into(), format!("uses `{c}`, which only {allowed_in}")));
            }
            if let Some((_, nth)) = upper.split_once('#')
                && !matches!(nth, "1" | "2" | "3" | "4" | "5")
            {
                return Err((
                    token.into(),
                    "asks for an nth weekday other than 1–5".into(),
                ));
            }
            // A modifier this field has: croner's detail says the rest.
            return Ok(self.min);
        }
        Err((
            token.into(),
            format!("is not a valid {} (allowed: {})", self.name, self.allowed()),
        ))
    }
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
    fn parse_errors_name_the_field_as_written_and_what_it_accepts() {
        for (expr, says) in [
            ("60 * * * *", "field 1 (minute) `60` is out of range 0–59"),
            ("0 25 * * *", "field 2 (hour) `25` is out of range 0–23"),
            (
                "0 0 32 * *",
                "field 3 (day-of-month) `32` is out of range 1–31",
            ),
            (
                "0 0 0 * *",
                "field 3 (day-of-month) `0` is out of range 1–31",
            ),
            ("0 0 * 13 *", "field 4 (month) `13` is out of range 1–12"),
            ("0 0 * * 8", "field 5 (weekday) `8` is out of range 0–7"),
            (
                "*/0 * * * *",
                "field 1 (minute) `*/0` has a step of 0 (steps are 1 or more)",
            ),
            (
                "*/x * * * *",
                "field 1 (minute) `*/x` has a step `x` that is not a whole number",
            ),
            (
                "0 0 * * FOO",
                "field 5 (weekday) `FOO` is not a valid weekday (allowed: 0–7 or SUN–SAT)",
            ),
            (
                "0 0 * JANUARY *",
                "field 4 (month) `JANUARY` is not a valid month (allowed: 1–12 or JAN–DEC)",
            ),
            (
                "0 0 * * MON-FOO",
                "field 5 (weekday) `MON-FOO`: `FOO` is not a valid weekday",
            ),
            (
                "1,61 * * * *",
                "field 1 (minute) `1,61`: `61` is out of range 0–59",
            ),
            (
                "0-70/5 * * * *",
                "field 1 (minute) `0-70/5`: `70` is out of range 0–59",
            ),
            (
                "0 20-4 * * *",
                "field 2 (hour) `20-4` is a backwards range (write the smaller value first)",
            ),
            (
                "L * * * *",
                "field 1 (minute) `L` uses `L`, which only the day-of-month and weekday fields allow",
            ),
            (
                "0 0 ? * 1W",
                "field 5 (weekday) `1W` uses `W`, which only the day-of-month field allows",
            ),
            (
                "0 0 * * 1#6",
                "field 5 (weekday) `1#6` asks for an nth weekday other than 1–5",
            ),
            (
                "0 0 12 * * 99999",
                "field 6 (year) `99999` is out of range 1–5000",
            ),
            // 7 fields: the first is seconds.
            (
                "61 * * * * * *",
                "field 1 (second) `61` is out of range 0–59",
            ),
            ("0 0 24 * * * *", "field 3 (hour) `24` is out of range 0–23"),
            (
                "0 0 0 * * * 2024-20x",
                "field 7 (year) `2024-20x`: `20x` is not a valid year",
            ),
        ] {
            let err = Schedule::parse(expr, Tz::UTC).expect_err(expr).to_string();
            assert!(err.contains(says), "{expr:?}: {err}");
            assert!(!err.contains("Component error"), "{expr:?}: {err}");
        }
    }

    #[test]
    fn six_field_quartz_expressions_that_fail_say_how_to_write_seconds() {
        // Quartz's `sec min hour dom month dow`: here the 6th field is a year.
        let err = Schedule::parse("0 0 12 * * ?", Tz::UTC)
            .expect_err("? is no year")
            .to_string();
        assert!(
            err.contains(
                "field 6 (year) `?` uses `?`, which only the day-of-month and weekday fields allow"
            ),
            "{err}"
        );
        assert!(
            err.contains("6 fields are `min hour day month weekday year` here, for seconds first write 7 fields: `0 0 12 * * ? *`"),
            "{err}"
        );
        // An ordinary mistake in 6 fields gets no such hint.
        let err = Schedule::parse("0 25 * * * 2030", Tz::UTC)
            .expect_err("hour 25")
            .to_string();
        assert!(
            err.contains("field 2 (hour) `25`") && !err.contains("7 fields"),
            "{err}"
        );
    }

    fn warnings(expr: &str, zone: &str, from: DateTime<Utc>) -> Vec<String> {
        let tz = parse_timezone(zone).expect("zone");
        Schedule::parse(expr, tz).expect(expr).warnings(from)
    }

    #[test]
    fn a_fixed_time_in_a_dst_gap_or_overlap_is_warned_of_once_per_change() {
        // Berlin: back on 2026-10-25 (03:00 → 02:00), forward on 2027-03-28 (02:00 → 03:00).
        let from = utc(2026, 6, 1, 0, 0, 0);
        assert_eq!(
            warnings("30 2 * * *", "Europe/Berlin", from),
            vec![
                "02:30 on 2026-10-25 happens twice in Europe/Berlin; the job runs once, at the first",
                "runs at 03:00 instead of 02:30 on 2027-03-28 (Europe/Berlin skips 02:00–03:00)",
            ]
        );
        // The same in 7 fields, with seconds.
        assert_eq!(
            warnings("15 30 2 * * * *", "Europe/Berlin", from),
            vec![
                "02:30:15 on 2026-10-25 happens twice in Europe/Berlin; the job runs once, at the first",
                "runs at 03:00 instead of 02:30:15 on 2027-03-28 (Europe/Berlin skips 02:00–03:00)",
            ]
        );
        // New York repeats 01:00–02:00, so 02:30 is only skipped, in March.
        assert_eq!(
            warnings("30 2 * * *", "America/New_York", from),
            vec![
                "runs at 03:00 instead of 02:30 on 2027-03-14 (America/New_York skips 02:00–03:00)"
            ]
        );
        // Lord Howe moves by half an hour.
        assert_eq!(
            warnings("15 2 * * *", "Australia/Lord_Howe", from),
            vec![
                "runs at 02:30 instead of 02:15 on 2026-10-04 (Australia/Lord_Howe skips 02:00–02:30)"
            ]
        );
    }

    #[test]
    fn jobs_that_follow_the_clock_are_told_how_many_runs_change() {
        let from = utc(2026, 6, 1, 0, 0, 0);
        assert_eq!(
            warnings("*/15 * * * *", "Europe/Berlin", from),
            vec![
                "runs 4 extra times on 2026-10-25: 02:00–03:00 happens twice in Europe/Berlin",
                "loses 4 runs on 2027-03-28: 02:00–03:00 does not exist in Europe/Berlin",
            ]
        );
        assert_eq!(
            warnings("0 * * * *", "Europe/Berlin", from),
            vec![
                "runs twice at 02:00 on 2026-10-25: 02:00–03:00 happens twice in Europe/Berlin",
                "does not run at 02:00 on 2027-03-28: Europe/Berlin skips 02:00–03:00",
            ]
        );
        // Every second: a whole hour of runs, counted without walking the year.
        assert_eq!(
            warnings("* * * * * * *", "Europe/Berlin", from),
            vec![
                "runs 3600 extra times on 2026-10-25: 02:00–03:00 happens twice in Europe/Berlin",
                "loses 3600 runs on 2027-03-28: 02:00–03:00 does not exist in Europe/Berlin",
            ]
        );
    }

    #[test]
    fn no_dst_warning_where_nothing_moves() {
        let from = utc(2026, 6, 1, 0, 0, 0);
        for (expr, zone) in [
            ("0 3 * * *", "Europe/Berlin"),
            ("0 1 * * *", "Europe/Berlin"),
            ("30 2 * * *", "UTC"),
            ("30 2 * * *", "Asia/Tokyo"),
            ("*/5 * * * * * *", "UTC"),
            // Only on Mondays: neither change (both on Sundays) is touched.
            ("30 2 * * MON", "Europe/Berlin"),
            // Fires only in 2025: nothing within the year after `from`.
            ("0 30 2 * * * 2025", "Europe/Berlin"),
        ] {
            assert_eq!(
                warnings(expr, zone, from),
                Vec::<String>::new(),
                "{expr} in {zone}"
            );
        }
        // A year limit keeps only the changes it fires at.
        assert_eq!(
            warnings("30 2 * * * 2027", "Europe/Berlin", from),
            vec!["runs at 03:00 instead of 02:30 on 2027-03-28 (Europe/Berlin skips 02:00–03:00)"]
        );
        // Only the next year is looked at: from 2026-10-26, up to 2027-10-27
        // (Berlin falls back again on 2027-10-31).
        assert_eq!(
            warnings("30 2 * * *", "Europe/Berlin", utc(2026, 10, 26, 0, 0, 0)),
            vec!["runs at 03:00 instead of 02:30 on 2027-03-28 (Europe/Berlin skips 02:00–03:00)"]
        );
    }

    #[test]
    fn six_fields_with_a_star_year_that_read_as_seconds_first_are_warned_of() {
        let from = utc(2026, 6, 1, 0, 0, 0);
        for (expr, reading) in [
            ("*/30 * * * * *", "runs every 30 minutes"),
            ("0/15 * * * * *", "runs every 15 minutes"),
            ("* * * * * *", "runs every minute"),
            ("0 * * * * *", "runs at minute 0 of every hour"),
            ("0 0 12 * * *", "reads minute `0`, hour `0`, day `12`"),
        ] {
            assert_eq!(
                warnings(expr, "UTC", from),
                vec![format!(
                    "6 fields are `min hour day month weekday year` here: `{expr}` {reading}; \
                     for seconds first, write 7 fields: `{expr} *`"
                )],
                "{expr}"
            );
        }
        // A real year, 5 or 7 fields, or fields that are no seconds-first
        // expression (hour 31): nothing to say.
        for expr in [
            "0 12 1 1 * 2027",
            "0 12 1 1 * 2026-2030",
            "*/30 * * * *",
            "*/5 * * * * * *",
            "0 0 31 * * *",
            "@hourly",
        ] {
            assert_eq!(warnings(expr, "UTC", from), Vec::<String>::new(), "{expr}");
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
