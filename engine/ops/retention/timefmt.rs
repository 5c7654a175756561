//! How a retention column stores time, decided from its declared type and
//! sampled values, never guessed (safety.md rule 14): a Julian-day column
//! compared with Unix seconds lost its whole table, a milliseconds column
//! compared with seconds deleted nothing every night, and a column mixing
//! text and integers was half deleted. The decision builds the cutoff in
//! the column's own form and is printed in the diff; mixed storage or
//! values no format explains are planning errors, never a delete.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

/// The ways a column can hold a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// A date/time type of the database (PostgreSQL timestamp[tz], date).
    Native,
    /// ISO-8601 text, `2024-01-31 12:00:00` or `2024-01-31T12:00:00…`.
    IsoText,
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    /// Days since noon of 24 November 4714 BC (SQLite's `julianday()`).
    JulianDay,
}

impl TimeFormat {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "native" => Self::Native,
            "iso" | "iso_text" => Self::IsoText,
            "unix_s" | "unix_seconds" => Self::UnixSeconds,
            "unix_ms" | "unix_millis" => Self::UnixMillis,
            "unix_us" | "unix_micros" => Self::UnixMicros,
            "julian_day" | "julian" => Self::JulianDay,
            _ => return None,
        })
    }

    pub const NAMES: &'static str = "native, iso, unix_s, unix_ms, unix_us, julian_day";

    pub fn describe(self) -> &'static str {
        match self {
            Self::Native => "a date/time type",
            Self::IsoText => "ISO-8601 text",
            Self::UnixSeconds => "Unix seconds",
            Self::UnixMillis => "Unix milliseconds",
            Self::UnixMicros => "Unix microseconds",
            Self::JulianDay => "Julian days",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::UnixSeconds | Self::UnixMillis | Self::UnixMicros | Self::JulianDay
        )
    }
}

/// What the read-only inspection saw of a column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The declared type, lower case (`timestamp with time zone`, `integer`, `real`, ``).
    pub declared: String,
    /// SQLite: the distinct storage classes of the non-NULL values
    /// (`integer`, `real`, `text`, `blob`). PostgreSQL: empty.
    pub storage: Vec<String>,
    /// Smallest and largest value, as numbers when they are numbers.
    pub min_num: Option<f64>,
    pub max_num: Option<f64>,
    /// Smallest and largest value, as text.
    pub min_text: Option<String>,
    pub max_text: Option<String>,
}

/// Plausible instants: 1970-01-01 to 2200-01-01, in seconds and Julian days.
const SECONDS: (f64, f64) = (0.0, 7_258_118_400.0);
const JULIAN: (f64, f64) = (2_440_587.5, 2_524_593.5);

/// The values each numeric format is taken for. Milliseconds and
/// microseconds of the 1970s overlap the next coarser format's range, so
/// they are taken only past March 1973 in their unit (1e11 ms, 1e14 µs).
fn range_of(f: TimeFormat) -> (f64, f64) {
    match f {
        TimeFormat::UnixSeconds => SECONDS,
        TimeFormat::UnixMillis => (1e11, SECONDS.1 * 1e3),
        TimeFormat::UnixMicros => (1e14, SECONDS.1 * 1e6),
        TimeFormat::JulianDay => JULIAN,
        _ => (f64::NAN, f64::NAN),
    }
}

/// The numeric format both `min` and `max` fall in. Julian days are tried
/// first: 2.4 million seconds is a date in January 1970 that no
/// application writes, while Julian days are exactly there. Above that,
/// the ranges do not overlap: seconds end at 7.3e9, milliseconds start at
/// 1e11 and end at 7.3e12, microseconds start at 1e14.
fn numeric_format(min: f64, max: f64) -> Option<TimeFormat> {
    use TimeFormat::*;
    [JulianDay, UnixMillis, UnixMicros, UnixSeconds].into_iter().find(|&f| {
        let (lo, hi) = range_of(f);
        min >= lo && max <= hi
    })
}

fn is_numeric_type(declared: &str) -> bool {
    let d = declared.to_ascii_lowercase();
    ["int", "real", "floa", "doub", "numeric", "decimal"]
        .iter()
        .any(|k| d.contains(k))
}

fn is_native_type(declared: &str) -> bool {
    let d = declared.to_ascii_lowercase();
    d.starts_with("timestamp") || d == "date"
}

/// Parses ISO-8601 text the way SQLite's date functions accept it.
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.to_utc());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d.to_utc());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// Whether ISO text carries its own offset (`Z`, `+02:00`, `-0500`) after
/// the time; without one it is wall-clock time in some zone.
pub fn has_offset(text: &str) -> bool {
    text.get(19..).is_some_and(|rest| rest.contains(['Z', 'z', '+', '-']))
}

/// Where a column's times must be read in a zone: native types without
/// time zone and ISO text without offsets.
pub fn is_zone_less(format: TimeFormat, declared: &str, sample_text: Option<&str>) -> bool {
    match format {
        TimeFormat::Native => !declared.to_ascii_lowercase().contains("with time zone"),
        TimeFormat::IsoText => !sample_text.is_some_and(has_offset),
        _ => false,
    }
}

/// Decides the format of a column, or says why it cannot be decided.
/// `stated` is the plan's `time_format`, checked against the sample.
pub fn decide(sample: &Sample, stated: Option<TimeFormat>) -> Result<TimeFormat, String> {
    let mut storage: Vec<&str> = sample.storage.iter().map(String::as_str).collect();
    storage.sort_unstable();
    storage.dedup();
    // SQLite integers and reals are one number line; text and blobs are not.
    let numeric_storage = storage.iter().all(|s| *s == "integer" || *s == "real");
    if storage.len() > 1 && !numeric_storage {
        return Err(format!(
            "the column holds {} values side by side; a cutoff of one kind compares wrongly with the others \
             (SQLite orders every number before every text): make the column one kind first",
            storage.join(" and ")
        ));
    }
    if storage.contains(&"blob") {
        return Err("the column holds BLOBs, not times".into());
    }
    let empty = sample.min_text.is_none() && sample.min_num.is_none();
    let seen = if empty {
        None
    } else if is_native_type(&sample.declared) && storage.is_empty() {
        Some(TimeFormat::Native)
    } else if storage.first() == Some(&"text") || (storage.is_empty() && !is_numeric_type(&sample.declared)) {
        let bad = [&sample.min_text, &sample.max_text]
            .into_iter()
            .flatten()
            .find(|t| parse_iso(t).is_none());
        if let Some(b) = bad {
            return Err(format!("the value `{b}` is not an ISO-8601 time"));
        }
        let seps: Vec<Option<u8>> = [&sample.min_text, &sample.max_text]
            .into_iter()
            .flatten()
            .map(|t| t.as_bytes().get(10).copied())
            .collect();
        if seps.windows(2).any(|w| w[0] != w[1]) {
            return Err(
                "the column mixes `YYYY-MM-DD hh:mm` and `YYYY-MM-DDThh:mm` text, which do not sort together".into(),
            );
        }
        Some(TimeFormat::IsoText)
    } else {
        let (Some(min), Some(max)) = (sample.min_num, sample.max_num) else {
            return Err("the column's values are not numbers".into());
        };
        match numeric_format(min, max) {
            Some(f) => Some(f),
            None if stated.is_some_and(TimeFormat::is_numeric) => stated,
            None => {
                return Err(format!(
                    "values from {min} to {max} are no time format dbmaint knows (Unix seconds, milliseconds, \
                     microseconds, Julian days between 1970 and 2200)"
                ));
            }
        }
    };
    match (seen, stated) {
        (None, Some(s)) => Ok(s),
        (None, None) if is_native_type(&sample.declared) => Ok(TimeFormat::Native),
        (None, None) if is_numeric_type(&sample.declared) => {
            Err("the table has no values to tell seconds from milliseconds or Julian days: set `time_format`".into())
        }
        (None, None) => Ok(TimeFormat::IsoText),
        (Some(seen), Some(s)) if seen != s => Err(format!(
            "`time_format: {}` was stated, but the values ({} … {}) are {}",
            name(s),
            sample.min_text.as_deref().unwrap_or("?"),
            sample.max_text.as_deref().unwrap_or("?"),
            seen.describe()
        )),
        (Some(seen), _) => Ok(seen),
    }
}

fn name(f: TimeFormat) -> &'static str {
    match f {
        TimeFormat::Native => "native",
        TimeFormat::IsoText => "iso",
        TimeFormat::UnixSeconds => "unix_s",
        TimeFormat::UnixMillis => "unix_ms",
        TimeFormat::UnixMicros => "unix_us",
        TimeFormat::JulianDay => "julian_day",
    }
}

/// The cutoff in the column's own form. `zone` is the wall-clock zone of a
/// zone-less column (native `timestamp` or ISO text without an offset);
/// `t_sep` is `T` when the column's text uses it.
pub fn cutoff_value(format: TimeFormat, cutoff: DateTime<Utc>, zone: chrono_tz::Tz, t_sep: bool) -> String {
    let wall = zone.from_utc_datetime(&cutoff.naive_utc()).naive_local();
    match format {
        TimeFormat::UnixSeconds => cutoff.timestamp().to_string(),
        TimeFormat::UnixMillis => cutoff.timestamp_millis().to_string(),
        TimeFormat::UnixMicros => cutoff.timestamp_micros().to_string(),
        TimeFormat::JulianDay => {
            let days = cutoff.timestamp_micros() as f64 / 86_400_000_000.0 + 2_440_587.5;
            format!("{days:.8}")
        }
        TimeFormat::IsoText if t_sep => wall.format("%Y-%m-%dT%H:%M:%S").to_string(),
        TimeFormat::IsoText => wall.format("%Y-%m-%d %H:%M:%S").to_string(),
        TimeFormat::Native => wall.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(declared: &str, storage: &[&str], min: f64, max: f64) -> Sample {
        Sample {
            declared: declared.into(),
            storage: storage.iter().map(|s| s.to_string()).collect(),
            min_num: Some(min),
            max_num: Some(max),
            min_text: Some(min.to_string()),
            max_text: Some(max.to_string()),
        }
    }

    #[test]
    fn magnitudes_tell_the_numeric_formats_apart() {
        let d = |min, max| decide(&numbers("integer", &["integer"], min, max), None);
        assert_eq!(d(2_459_000.5, 2_461_000.2), Ok(TimeFormat::JulianDay));
        assert_eq!(d(1.5e9, 1.79e9), Ok(TimeFormat::UnixSeconds));
        assert_eq!(d(1.5e12, 1.79e12), Ok(TimeFormat::UnixMillis));
        assert_eq!(d(1.5e15, 1.79e15), Ok(TimeFormat::UnixMicros));
        // Seconds and milliseconds side by side are no single format.
        assert!(d(1.5e9, 1.79e12).is_err());
        // Between the ranges: milliseconds of 1971, microseconds of 1970
        // or 2200's milliseconds are no format dbmaint takes on its own.
        assert!(d(5e10, 1.79e12).is_err());
        assert!(d(1e13, 1.79e15).is_err());
        assert!(d(1.5e12, 8e12).is_err());
        assert!(d(-5.0, 10.0).is_err());
    }

    #[test]
    fn mixed_storage_and_bad_text_are_refused() {
        let mixed = Sample {
            declared: "".into(),
            storage: vec!["text".into(), "integer".into()],
            ..Sample::default()
        };
        assert!(decide(&mixed, None).expect_err("mixed").contains("integer and text"));
        // Integers and reals side by side are one number line: a typeless
        // SQLite column of Julian days holds 2460000 as an integer and
        // 2460000.5 as a real.
        let julian = Sample {
            declared: "".into(),
            storage: vec!["real".into(), "integer".into(), "real".into()],
            min_num: Some(2_460_000.0),
            max_num: Some(2_460_000.5),
            ..Sample::default()
        };
        assert_eq!(decide(&julian, None), Ok(TimeFormat::JulianDay));
        let text = |a: &str, b: &str| Sample {
            declared: "text".into(),
            storage: vec!["text".into()],
            min_text: Some(a.into()),
            max_text: Some(b.into()),
            ..Sample::default()
        };
        assert_eq!(
            decide(&text("2024-01-01 10:00:00", "2026-11-30 10:00:00.123"), None),
            Ok(TimeFormat::IsoText)
        );
        assert!(decide(&text("2024-01-01 10:00:00", "2026-11-30T10:00:00"), None).is_err());
        assert!(decide(&text("yesterday", "today"), None).is_err());
    }

    #[test]
    fn a_stated_format_must_match_what_the_values_are() {
        let s = numbers("bigint", &[], 1.5e12, 1.79e12);
        assert_eq!(decide(&s, Some(TimeFormat::UnixMillis)), Ok(TimeFormat::UnixMillis));
        assert!(
            decide(&s, Some(TimeFormat::UnixSeconds))
                .expect_err("wrong")
                .contains("Unix milliseconds")
        );
        // An empty numeric column needs the format stated.
        let empty = Sample {
            declared: "bigint".into(),
            ..Sample::default()
        };
        assert!(decide(&empty, None).is_err());
        assert_eq!(decide(&empty, Some(TimeFormat::UnixMillis)), Ok(TimeFormat::UnixMillis));
    }

    #[test]
    fn every_documented_name_parses_to_its_format_and_back() {
        use TimeFormat::*;
        let all = [Native, IsoText, UnixSeconds, UnixMillis, UnixMicros, JulianDay];
        // `NAMES` (the error's list) holds each format's name, in order.
        let names: Vec<&str> = TimeFormat::NAMES.split(", ").collect();
        assert_eq!(names, all.map(name).to_vec());
        for f in all {
            assert_eq!(TimeFormat::parse(name(f)), Some(f), "{}", name(f));
        }
        // The long spellings the docs accept too.
        for (text, f) in [
            ("iso_text", IsoText),
            ("unix_seconds", UnixSeconds),
            ("unix_millis", UnixMillis),
            ("unix_micros", UnixMicros),
            ("julian", JulianDay),
        ] {
            assert_eq!(TimeFormat::parse(text), Some(f), "{text}");
        }
        assert_eq!(TimeFormat::parse("unix"), None);
        assert_eq!(TimeFormat::parse("Native"), None, "names are lower case");
        let numeric: Vec<TimeFormat> = all.into_iter().filter(|f| f.is_numeric()).collect();
        assert_eq!(numeric, [UnixSeconds, UnixMillis, UnixMicros, JulianDay]);
    }

    #[test]
    fn postgres_types_decide_before_the_values_do() {
        // PostgreSQL reports no storage classes: the declared type says
        // native or numeric, and text is read as ISO.
        let pg = |declared: &str, min: &str, max: &str| Sample {
            declared: declared.into(),
            storage: vec![],
            min_num: min.parse().ok(),
            max_num: max.parse().ok(),
            min_text: Some(min.into()),
            max_text: Some(max.into()),
        };
        for declared in ["timestamp with time zone", "timestamp without time zone", "date"] {
            assert_eq!(
                decide(&pg(declared, "2024-01-01 10:00:00+00", "2026-11-30 10:00:00+00"), None),
                Ok(TimeFormat::Native),
                "{declared}"
            );
        }
        assert_eq!(
            decide(&pg("text", "2024-01-01 10:00:00", "2026-11-30 10:00:00"), None),
            Ok(TimeFormat::IsoText)
        );
        assert_eq!(
            decide(&pg("bigint", "1500000000", "1790000000"), None),
            Ok(TimeFormat::UnixSeconds)
        );
        // An empty text column is ISO; an empty date column native.
        let empty = |declared: &str| Sample {
            declared: declared.into(),
            ..Sample::default()
        };
        assert_eq!(decide(&empty("text"), None), Ok(TimeFormat::IsoText));
        assert_eq!(decide(&empty("date"), None), Ok(TimeFormat::Native));
    }

    #[test]
    fn only_times_without_an_offset_are_read_in_a_zone() {
        for with in [
            "2026-11-30 10:00:00Z",
            "2026-11-30T10:00:00+02:00",
            "2026-11-30 10:00:00.5-0500",
        ] {
            assert!(has_offset(with), "{with}");
            assert!(!is_zone_less(TimeFormat::IsoText, "text", Some(with)), "{with}");
        }
        // The date's own dashes are not an offset.
        for without in ["2026-11-30 10:00:00", "2026-11-30T10:00", "2026-11-30"] {
            assert!(!has_offset(without), "{without}");
            assert!(is_zone_less(TimeFormat::IsoText, "text", Some(without)), "{without}");
        }
        assert!(is_zone_less(TimeFormat::Native, "timestamp without time zone", None));
        assert!(!is_zone_less(TimeFormat::Native, "timestamp with time zone", None));
        assert!(!is_zone_less(TimeFormat::UnixSeconds, "bigint", None), "an instant");
    }

    #[test]
    fn a_stated_numeric_format_covers_values_outside_the_plausible_years() {
        // Seconds before 1970 are no time dbmaint takes on its own, but a
        // plan that says `unix_s` means it; ISO stated for numbers is not.
        let s = numbers("integer", &["integer"], -100.0, -5.0);
        assert!(decide(&s, None).is_err());
        assert_eq!(decide(&s, Some(TimeFormat::UnixSeconds)), Ok(TimeFormat::UnixSeconds));
        assert!(decide(&s, Some(TimeFormat::IsoText)).is_err());
    }

    #[test]
    fn cutoffs_are_written_in_the_columns_form() {
        let c = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time");
        let utc = chrono_tz::UTC;
        assert_eq!(cutoff_value(TimeFormat::UnixSeconds, c, utc, false), "1767225600");
        assert_eq!(cutoff_value(TimeFormat::UnixMillis, c, utc, false), "1767225600000");
        assert_eq!(cutoff_value(TimeFormat::JulianDay, c, utc, false), "2461041.50000000");
        assert_eq!(cutoff_value(TimeFormat::IsoText, c, utc, true), "2026-01-01T00:00:00");
        // A space-separated column gets a space: `T` sorts after ` `, so a
        // `T` cutoff would take the whole cutoff day's rows with it.
        assert_eq!(cutoff_value(TimeFormat::IsoText, c, utc, false), "2026-01-01 00:00:00");
        // A zone-less column written in New York wall time.
        assert_eq!(
            cutoff_value(TimeFormat::Native, c, chrono_tz::America::New_York, false),
            "2025-12-31 19:00:00.000000"
        );
    }
}
