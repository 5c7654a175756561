//! A 5-field cron expression as the sets of times it names, and those sets
//! as systemd `OnCalendar=` lines.
//!
//! Only what every cron daemon, Kubernetes and systemd agree on is taken:
//! numbers, month and weekday names, `*`, lists, ranges and steps
//! (`*/15`, `1-20/5`). croner's extensions (`L`, `W`, `#`, `?`)
//! are refused by name: a scheduler that does not know them would run the
//! plan at other times than the plan says.
//!
//! Cron's one trap is kept: when both day-of-month and day-of-week are
//! restricted (neither is `*`), a day matches when *either* does. (A day
//! field like `*/2` beside a restricted other one is refused: cron daemons
//! and Kubernetes read it differently.)
//! systemd's calendar needs both to match, so such a schedule becomes two
//! `OnCalendar=` lines, one per field.

use std::collections::BTreeSet;

/// Why a schedule cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{schedule}`: {reason}")]
pub struct CalendarError {
    pub schedule: String,
    pub reason: String,
}

/// The times a cron expression names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSets {
    pub minutes: BTreeSet<u32>,
    pub hours: BTreeSet<u32>,
    pub days: BTreeSet<u32>,
    pub months: BTreeSet<u32>,
    /// 0 = Sunday … 6 = Saturday (cron's 7 is folded to 0).
    pub weekdays: BTreeSet<u32>,
    /// The day-of-month field is restricted (is not `*`).
    pub days_restricted: bool,
    /// The day-of-week field is restricted (is not `*`).
    pub weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl CronSets {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(schedule: &str) -> Result<Self, CalendarError> {
        let err = |reason: String| CalendarError {
            schedule: schedule.to_string(),
            reason,
        };
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(err(format!("{} fields, a schedule has 5", fields.len())));
        };
        let field = |text: &str, name: &str, lo: u32, hi: u32, names: &[&str]| {
            expand(text, lo, hi, names).map_err(|why| err(format!("{name} `{text}`: {why}")))
        };
        // `*/2` with a restricted other day field: Vixie cron and cronie
        // need both days to match, croner and Kubernetes either.
        let stepped_star = |f: &str| f.starts_with('*') && f != "*";
        if (stepped_star(day) && weekday != "*") || (stepped_star(weekday) && day != "*") {
            return Err(err(format!(
                "day-of-month `{day}` with day-of-week `{weekday}` means one thing to cron daemons and another \
                 to Kubernetes: write the days as a list or range (e.g. `1-31/2` for `*/2`)"
            )));
        }
        let mut weekdays = field(weekday, "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        Ok(Self {
            minutes: field(minute, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])?,
            days: field(day, "day-of-month", 1, 31, &[])?,
            months: field(month, "month", 1, 12, &MONTHS)?,
            weekdays,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    /// True when the plan runs at this minute (local wall-clock time of the
    /// schedule's zone), with cron's day rule.
    pub fn matches(&self, month: u32, day: u32, weekday: u32, hour: u32, minute: u32) -> bool {
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => self.days.contains(&day) || self.weekdays.contains(&weekday),
            _ => self.days.contains(&day) && self.weekdays.contains(&weekday),
        };
        day_ok && self.months.contains(&month) && self.hours.contains(&hour) && self.minutes.contains(&minute)
    }

    /// systemd `OnCalendar=` values for these times in `tz` (an IANA name):
    /// one, or two when cron's either-day rule applies.
    pub fn on_calendar(&self, tz: &str) -> Vec<String> {
        let time = format!("{}:{}:00", list(&self.hours, 0, 23, 2), list(&self.minutes, 0, 59, 2));
        let months = list(&self.months, 1, 12, 2);
        let days = list(&self.days, 1, 31, 2);
        let weekdays = weekday_list(&self.weekdays);
        let line = |dow: Option<&str>, days: &str| match dow {
            Some(w) => format!("{w} *-{months}-{days} {time} {tz}"),
            None => format!("*-{months}-{days} {time} {tz}"),
        };
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => vec![line(None, &days), line(Some(&weekdays), "*")],
            (false, true) => vec![line(Some(&weekdays), &days)],
            _ => vec![line(None, &days)],
        }
    }
}

/// One field's values.
fn expand(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                Some(s.parse::<u32>().map_err(|_| format!("step `{s}` is not a number"))?),
            ),
            None => (item, None),
        };
        if step == Some(0) {
            return Err("a step of 0".into());
        }
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, lo, hi, names)?, value(b, lo, hi, names)?)
        } else {
            let a = value(range, lo, hi, names)?;
            if step.is_some() {
                // Vixie cron and croner refuse `5/10` too.
                return Err(format!("a step needs a range: `{a}-{hi}/…` or `*/…`"));
            }
            (a, a)
        };
        if from > to {
            return Err(format!("the range {from}-{to} runs backwards"));
        }
        out.extend((from..=to).step_by(step.unwrap_or(1) as usize));
    }
    Ok(out)
}

fn value(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let n = match names.iter().position(|n| *n == lower) {
        // Months count from 1, weekdays from 0 (Sunday).
        Some(i) => i as u32 + if names.len() == 12 { 1 } else { 0 },
        None => text
            .parse::<u32>()
            .map_err(|_| match text.chars().find(|c| "LlWw#?".contains(*c)) {
                Some(c) => format!(
                    "`{c}` is a croner extension that cron, systemd and Kubernetes do not share; \
                 write the days out (e.g. `1-7` with a weekday for \"the first Monday\")"
                ),
                None => format!("`{text}` is not a number or a name"),
            })?,
    };
    if n < lo || n > hi {
        return Err(format!("{n} is outside {lo}-{hi}"));
    }
    Ok(n)
}

/// A set of numbers as systemd writes it: `*` for all of `lo..=hi`, else a
/// list with runs of three or more as `a..b`, zero-padded to `width`.
fn list(set: &BTreeSet<u32>, lo: u32, hi: u32, width: usize) -> String {
    if set.len() as u32 == hi - lo + 1 {
        return "*".into();
    }
    runs(set)
        .into_iter()
        .map(|(a, b)| match b - a {
            0 => format!("{a:0width$}"),
            1 => format!("{a:0width$},{b:0width$}"),
            _ => format!("{a:0width$}..{b:0width$}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Weekdays as systemd names them, Monday first (`Mon..Fri`, `Sat,Sun`).
fn weekday_list(set: &BTreeSet<u32>) -> String {
    // Renumber Monday = 0 … Sunday = 6, so that runs follow systemd's week.
    let monday_first: BTreeSet<u32> = set.iter().map(|d| (d + 6) % 7).collect();
    let name = |d: u32| SYSTEMD_WEEKDAYS[((d + 1) % 7) as usize];
    runs(&monday_first)
        .into_iter()
        .map(|(a, b)| match b - a {
            0 => name(a).to_string(),
            1 => format!("{},{}", name(a), name(b)),
            _ => format!("{}..{}", name(a), name(b)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Consecutive runs `(first, last)` of a sorted set.
fn runs(set: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = vec![];
    for &n in set {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == n => *b = n,
            _ => out.push((n, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    /// Every firing time in the year after `start`, by `CronSets::matches`.
    fn ours(sets: &CronSets, start: chrono::DateTime<chrono::Utc>) -> Vec<chrono::DateTime<chrono::Utc>> {
        let mut out = vec![];
        let mut t = start;
        let end = start + chrono::Duration::days(366);
        loop {
            t += chrono::Duration::minutes(1);
            if t >= end {
                break;
            }
            if sets.matches(
                t.month(),
                t.day(),
                t.weekday().num_days_from_sunday(),
                t.hour(),
                t.minute(),
            ) {
                out.push(t);
            }
        }
        out
    }

    /// croner's firing times over the same year.
    fn croners(schedule: &str, start: chrono::DateTime<chrono::Utc>) -> Vec<chrono::DateTime<chrono::Utc>> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(schedule)
            .expect("croner parses it");
        let end = start + chrono::Duration::days(366);
        cron.iter_after(start).take_while(|t| *t < end).collect()
    }

    #[test]
    fn firing_times_agree_with_croner_for_a_year() {
        // A year with a 29 February in it.
        let start = chrono::Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
        for s in [
            "0 2 * * *",
            "30 4 * * 1-5",
            "*/15 * * * *",
            "5 0-23/6 * * *",
            "0 3 1,15 * *",
            "0 3 1-7 * 1",
            "0 12 * JAN,jul SUN",
            "10-59/20 1 * * 6,0",
            "0 0 29 2 *",
            "15 22 * * 7",
            "0 5 */10 * *",
            "0 6 13 * 5",
        ] {
            let sets = CronSets::parse(s).expect(s);
            let (a, b) = (ours(&sets, start), croners(s, start));
            // The first difference, not two years of minutes.
            let first = a.iter().zip(&b).position(|(x, y)| x != y);
            assert!(
                a.len() == b.len() && first.is_none(),
                "{s}: {} vs {} times, first difference at {first:?}",
                a.len(),
                b.len()
            );
            assert!(!a.is_empty(), "{s} fires in a year");
        }
    }

    #[test]
    fn calendars_are_written_the_systemd_way() {
        let cal = |s: &str| CronSets::parse(s).expect(s).on_calendar("UTC");
        assert_eq!(cal("0 2 * * *"), ["*-*-* 02:00:00 UTC"]);
        assert_eq!(cal("30 4 * * 1-5"), ["Mon..Fri *-*-* 04:30:00 UTC"]);
        assert_eq!(cal("*/15 * * * *"), ["*-*-* *:00,15,30,45:00 UTC"]);
        assert_eq!(cal("0 12 * * 6,0"), ["Sat,Sun *-*-* 12:00:00 UTC"]);
        assert_eq!(cal("0 12 * * 0,1,2"), ["Mon,Tue,Sun *-*-* 12:00:00 UTC"]);
        // Either day: two lines.
        assert_eq!(
            cal("0 3 1-7 * 1"),
            ["*-*-01..07 03:00:00 UTC", "Mon *-*-* 03:00:00 UTC"]
        );
    }

    #[test]
    fn extensions_and_mistakes_are_refused_by_name() {
        for (s, says) in [
            ("0 0 L * *", "`L` is a croner extension"),
            ("0 0 * * 5#2", "`#` is a croner extension"),
            ("0 25 * * *", "25 is outside 0-23"),
            ("0 0 * * 5-1", "backwards"),
            ("0 0 */2 * 1", "write the days as a list"),
            ("0 0 * * *", ""),
        ] {
            let r = CronSets::parse(s);
            if says.is_empty() {
                assert!(r.is_ok(), "{s}");
            } else {
                let e = r.expect_err(s).to_string();
                assert!(e.contains(says), "{s}: {e}");
            }
        }
    }
}
