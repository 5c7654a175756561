//! Typed plan values, each parsed from a string with a message that says what
//! a correct one looks like: durations, ratios, identifiers and globs, ids,
//! `window`, `tz`, `schedule` and the target URL.
//!
//! Each type has `Decode` (from a node), `Serialize` (its canonical text, so
//! `plan show` prints something that parses back) and `JsonSchema`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::plan::decode::{Cx, Decode, scalar_text};
use crate::plan::node::{Kind, Node};

/// Implements `Decode` from a string with `parse`, `Display` through
/// `Serialize`, and a string schema with a pattern and description.
macro_rules! string_value {
    ($t:ty, $expected:literal, $pattern:expr, $desc:literal) => {
        impl Decode for $t {
            const EXPECTED: &'static str = $expected;
            fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
                let Kind::Str(s) = &node.kind else {
                    let hint = scalar_text(node).map(|t| format!("write it as a string with a unit, e.g. `\"{t}s\"`"));
                    let hint = if <$t>::NEEDS_UNIT { hint } else { None };
                    cx.error({
                        let d = crate::plan::diag::Diag::error(
                            "wrong-type",
                            format!("expected {}, found {}", $expected, node.type_name()),
                        )
                        .at(node.pos, format!("expected {}", $expected));
                        match hint { Some(h) => d.hint(h), None => d }
                    });
                    return None;
                };
                match <$t>::parse(&s.value) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        cx.invalid(node, e.message, e.hint);
                        None
                    }
                }
            }
        }
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(p) => json_schema!({"type": "string", "pattern": p, "description": $desc}),
                    None => json_schema!({"type": "string", "description": $desc}),
                }
            }
        }
    };
}

/// Why a string is not a valid value, and what to write instead.
#[derive(Debug)]
pub struct ValueError {
    pub message: String,
    pub hint: Option<String>,
}

fn err(message: impl Into<String>, hint: impl Into<Option<&'static str>>) -> ValueError {
    ValueError {
        message: message.into(),
        hint: hint.into().map(str::to_string),
    }
}

// ---------------------------------------------------------------- Duration

/// A span of time: `500ms`, `5s`, `30m`, `1h30m`, `90 days`, `2w`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    const NEEDS_UNIT: bool = true;

    pub fn parse(text: &str) -> Result<Self, ValueError> {
        const HINT: &str = "write a number and a unit, e.g. `500ms`, `30s`, `5m`, `1h30m`, `90 days`, `2w`";
        let t = text.trim();
        if t.is_empty() {
            return Err(err("a duration cannot be empty", HINT));
        }
        let mut total: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err(format!("`{text}` is not a duration"), HINT));
            }
            let n: u128 = rest[..digits]
                .parse()
                .map_err(|_| err(format!("`{text}` is too large a duration"), HINT))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let ms: u128 = match unit {
                "ms" | "msec" | "millisecond" | "milliseconds" => 1,
                "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
                "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
                "d" | "day" | "days" => 86_400_000,
                "w" | "week" | "weeks" => 604_800_000,
                "" => return Err(err(format!("`{text}` has a number without a unit"), HINT)),
                other => {
                    return Err(ValueError {
                        message: format!("`{other}` is not a unit of time in `{text}`"),
                        hint: Some(HINT.to_string()),
                    });
                }
            };
            total = total
                .checked_add(
                    n.checked_mul(ms)
                        .ok_or_else(|| err(format!("`{text}` is too large a duration"), HINT))?,
                )
                .ok_or_else(|| err(format!("`{text}` is too large a duration"), HINT))?;
            rest = rest[unit_len..].trim_start();
        }
        let ms = u64::try_from(total).map_err(|_| err(format!("`{text}` is too large a duration"), HINT))?;
        Ok(Self(std::time::Duration::from_millis(ms)))
    }
}

impl fmt::Display for Duration {
    /// Canonical form a reviewer reads at a glance: whole weeks or days as
    /// one unit (`2w`, `90d`), anything else from hours down (`1h30m`,
    /// `36h`, `500ms`), and `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY: u128 = 86_400_000;
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms.is_multiple_of(7 * DAY) {
            return write!(f, "{}w", ms / (7 * DAY));
        }
        if ms.is_multiple_of(DAY) {
            return write!(f, "{}d", ms / DAY);
        }
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

string_value!(
    Duration,
    "a duration",
    Some(r"^\s*(\d+\s*(ms|msec|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)\s*)+$"),
    "A duration: a number and a unit (ms, s, m, h, d, w), e.g. `500ms`, `30m`, `1h30m`, `90 days`"
);

// ---------------------------------------------------------------- Ratio

/// A number in 0..=1, e.g. `0.2` for 20%.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Ratio(pub f64);

impl Decode for Ratio {
    const EXPECTED: &'static str = "a ratio between 0 and 1";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        if let Kind::Str(s) = &node.kind
            && !s.rendered
        {
            let hint = s
                .value
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .map(|p| format!("write `{}` for {}%", p / 100.0, p));
            cx.invalid(node, format!("`{}` is not a ratio between 0 and 1", s.value), hint);
            return None;
        }
        let v = f64::decode(node, cx)?;
        if (0.0..=1.0).contains(&v) {
            Some(Self(v))
        } else {
            // `20` was almost certainly meant as 20%.
            let percent_like = v.fract() == 0.0 && (2.0..=100.0).contains(&v);
            let hint = Some(if percent_like {
                format!("a ratio is a fraction: write `{}` for {v}%", v / 100.0)
            } else {
                "a ratio is a fraction between 0 and 1, e.g. `0.2` for 20%".to_string()
            });
            cx.invalid(node, format!("`{v}` is outside 0..1"), hint);
            None
        }
    }
}

impl JsonSchema for Ratio {
    fn schema_name() -> Cow<'static, str> {
        "Ratio".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "minimum": 0, "maximum": 1, "description": "A ratio between 0 and 1, e.g. 0.2 for 20%"})
    }
}

// ---------------------------------------------------------------- Identifiers

/// PostgreSQL truncates longer names silently (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// Checks one dotted name (`table` or `schema.table`), optionally with globs.
fn check_name(text: &str, globs: bool) -> Result<(), ValueError> {
    if text.is_empty() {
        return Err(err("a name cannot be empty", None));
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 2 {
        return Err(err(
            format!("`{text}` has more than one dot"),
            "write `table` or `schema.table`; names are quoted by the engine",
        ));
    }
    for part in parts {
        if part.is_empty() {
            return Err(err(
                format!("`{text}` has an empty part"),
                "write `table` or `schema.table`",
            ));
        }
        if part.len() > MAX_IDENT_BYTES {
            return Err(ValueError {
                message: format!(
                    "`{part}` is {} bytes long, over PostgreSQL's limit of {MAX_IDENT_BYTES}",
                    part.len()
                ),
                hint: Some("PostgreSQL would silently truncate it to another name; shorten it".to_string()),
            });
        }
        if !globs && part.contains(['*', '?', '[']) {
            return Err(err(
                format!("`{text}` is a glob, but this key takes one exact name"),
                "globs (`*`, `?`) are allowed in `tables`, `exclude`, `indexes` and `views` lists",
            ));
        }
        if let Some(bad) = part
            .chars()
            .find(|c| c.is_control() || matches!(c, '"' | ';' | '\'' | ' '))
        {
            return Err(ValueError {
                message: format!(
                    "`{text}` contains `{}`, which no name in a plan may hold",
                    bad.escape_default()
                ),
                hint: Some("identifiers are names, not SQL; the engine quotes them".to_string()),
            });
        }
    }
    Ok(())
}

/// An exact, possibly schema-qualified name: `core_audit_log`, `audit.events`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Ident(pub String);

impl Ident {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        check_name(text, false).map(|()| Self(text.to_string()))
    }
    /// `(schema, name)`; schema is `None` when unqualified.
    pub fn parts(&self) -> (Option<&str>, &str) {
        match self.0.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, &self.0),
        }
    }
}

string_value!(
    Ident,
    "a name",
    Some(r"^[^.*?\[]{1,63}(\.[^.*?\[]{1,63})?$"),
    "A name, optionally schema-qualified (`schema.table`); quoted by the engine, never SQL"
);

/// A name that may contain globs (`*`, `?`): `audit_*`, `public.*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NameGlob(pub String);

impl NameGlob {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        // Only `*` and `?` are special (planner::glob_match): any other
        // text is a valid glob that stands for itself.
        check_name(text, true)?;
        Ok(Self(text.to_string()))
    }
}

string_value!(
    NameGlob,
    "a name or glob",
    None,
    "A name or glob (`*`, `?`), optionally schema-qualified: `audit_*`, `public.*`"
);

// ---------------------------------------------------------------- Ids

fn check_id(text: &str, what: &str) -> Result<(), ValueError> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && text.len() <= 63 {
        Ok(())
    } else {
        let suggestion = text
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>();
        Err(ValueError {
            message: format!("`{text}` is not a valid {what}"),
            hint: Some(format!(
                "{what}s match `[a-z0-9][a-z0-9_-]*` (at most 63 characters), e.g. `{}`",
                suggestion.trim_start_matches(['-', '_'])
            )),
        })
    }
}

/// A plan name: `[a-z0-9][a-z0-9_-]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PlanName(pub String);

impl PlanName {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        check_id(text, "plan name").map(|()| Self(text.to_string()))
    }
}

string_value!(
    PlanName,
    "a plan name",
    Some("^[a-z0-9][a-z0-9_-]*$"),
    "Plan name: `[a-z0-9][a-z0-9_-]*`"
);

/// Checks a step id (keys of `steps`, entries of `needs`).
pub fn check_step_id(text: &str) -> Result<(), ValueError> {
    check_id(text, "step id")
}

// ---------------------------------------------------------------- Window

/// A daily time window `HH:MM-HH:MM`; it may cross midnight (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after midnight.
    pub start: u16,
    pub end: u16,
}

impl Window {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        const HINT: &str = "write `HH:MM-HH:MM` in 24-hour time, e.g. `02:00-05:00` or `22:00-04:00`";
        let (a, b) = text
            .trim()
            .split_once('-')
            .ok_or_else(|| err(format!("`{text}` is not a window"), HINT))?;
        let hm = |s: &str| -> Option<u16> {
            let (h, m) = s.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let start = hm(a).ok_or_else(|| err(format!("`{}` is not a time of day in `{text}`", a.trim()), HINT))?;
        let end = hm(b).ok_or_else(|| err(format!("`{}` is not a time of day in `{text}`", b.trim()), HINT))?;
        if start == end {
            return Err(err(format!("window `{text}` is empty"), "start and end must differ"));
        }
        Ok(Self { start, end })
    }

    /// Minutes from `minute` (after midnight, inside the window) until it
    /// closes; crossing midnight wraps.
    pub fn minutes_left(&self, minute: u16) -> u16 {
        if minute < self.end {
            self.end - minute
        } else {
            24 * 60 - minute + self.end
        }
    }

    /// Whether `minute` (after midnight) is inside; crossing midnight wraps.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

string_value!(
    Window,
    "a time window",
    Some(r"^\s*([01]\d|2[0-3]):[0-5]\d\s*-\s*([01]\d|2[0-3]):[0-5]\d\s*$"),
    "A daily window `HH:MM-HH:MM`, may cross midnight"
);

// ---------------------------------------------------------------- Tz

/// An IANA time zone name: `UTC`, `Europe/Paris`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tz(pub chrono_tz::Tz);

impl Tz {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        text.parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            let guess = crate::plan::decode::did_you_mean(text, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()));
            ValueError {
                message: format!("`{text}` is not an IANA time zone"),
                hint: Some(match guess {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "use a name like `UTC` or `Europe/Paris`".to_string(),
                }),
            }
        })
    }
}

impl Serialize for Tz {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

string_value!(
    Tz,
    "a time zone",
    None,
    "An IANA time zone name, e.g. `UTC`, `Europe/Paris`"
);

// ---------------------------------------------------------------- Schedule

/// A 5-field cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub String);

impl Schedule {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        const HINT: &str = "five fields: minute hour day-of-month month day-of-week, e.g. `0 3 * * 1-5`";
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(ValueError {
                message: format!("`{text}` has {fields} fields, a schedule has 5"),
                hint: Some(HINT.to_string()),
            });
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(text)
            .map(|_| Self(text.split_whitespace().collect::<Vec<_>>().join(" ")))
            .map_err(|e| ValueError {
                message: format!("`{text}` is not a valid cron schedule: {e}"),
                hint: Some(HINT.to_string()),
            })
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

string_value!(
    Schedule,
    "a cron schedule",
    None,
    "A 5-field cron expression, e.g. `0 3 * * 1-5`"
);

// ---------------------------------------------------------------- Target

/// Which database engine a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        })
    }
}

/// A connection URL. `Debug`, `Display` and `Serialize` never show its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    pub backend: Backend,
    /// Database name (PostgreSQL) or file path (SQLite).
    pub database: String,
}

impl Target {
    const NEEDS_UNIT: bool = false;
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(err(
                    "`sqlite:` target has no file path",
                    "write `sqlite:path/to/app.db`",
                ));
            }
            return Ok(Self {
                url: text.to_string(),
                backend: Backend::Sqlite,
                database: path.to_string(),
            });
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let parsed = url::Url::parse(text).map_err(|e| ValueError {
                message: format!("`{}` is not a valid URL: {e}", crate::plan::source::redact_url(text)),
                hint: Some("write `postgres://user@host:5432/database`".to_string()),
            })?;
            let database = parsed.path().trim_start_matches('/').to_string();
            return Ok(Self {
                url: text.to_string(),
                backend: Backend::Postgres,
                database,
            });
        }
        Err(ValueError {
            message: format!("`{}` is not a supported target", crate::plan::source::redact_url(text)),
            hint: Some("a target starts with `postgres://`, `postgresql://` or `sqlite:`".to_string()),
        })
    }

    /// The full URL, password included: only for opening a connection.
    pub fn expose_url(&self) -> &str {
        &self.url
    }

    /// The same PostgreSQL server and role, another database: a `dbname`
    /// keyword appended to the URL, which overrides the path (libpq).
    pub fn with_database(&self, name: &str) -> Self {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        Self {
            url: format!("{}{sep}dbname={}", self.url, encoded.replace('+', "%20")),
            backend: self.backend,
            database: name.to_string(),
        }
    }

    /// The URL with its password masked.
    pub fn redacted(&self) -> String {
        crate::plan::source::redact_url(&self.url)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.redacted())
            .field("backend", &self.backend)
            .finish()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

string_value!(
    Target,
    "a connection URL",
    Some("^(postgres://|postgresql://|sqlite:|\\{[{%])"),
    "Connection URL: `postgres://…`, `postgresql://…` or `sqlite:path`"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, canon) in [
            ("500ms", "500ms"),
            ("5s", "5s"),
            ("1h30m", "1h30m"),
            ("90 days", "90d"),
            ("2w", "2w"),
            ("0s", "0s"),
            ("90m", "1h30m"),
            ("14 days", "2w"),
            ("36h", "36h"),
        ] {
            assert_eq!(Duration::parse(text).expect(text).to_string(), canon, "{text}");
        }
        for bad in ["", "5", "five s", "3 parsecs", "1h 30", "-5s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_may_cross_midnight() {
        let w = Window::parse("22:00-04:00").expect("window");
        assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(12 * 60));
        assert!(Window::parse("25:00-04:00").is_err());
        assert!(Window::parse("02:00-02:00").is_err());
    }

    #[test]
    fn a_window_says_how_long_it_stays_open() {
        let night = Window::parse("02:00-05:00").expect("window");
        assert_eq!(night.minutes_left(2 * 60), 180);
        assert_eq!(night.minutes_left(4 * 60 + 59), 1);
        let across = Window::parse("22:00-04:00").expect("window");
        assert_eq!(across.minutes_left(23 * 60), 300);
        assert_eq!(across.minutes_left(60), 180);
    }

    #[test]
    fn identifiers_reject_long_names_and_globs_where_exact() {
        assert!(Ident::parse("audit.events").is_ok());
        assert!(Ident::parse(&"x".repeat(64)).is_err());
        assert!(Ident::parse(&"x".repeat(63)).is_ok());
        assert!(Ident::parse("audit_*").is_err());
        assert!(NameGlob::parse("audit_*").is_ok());
        assert!(Ident::parse("t; drop table x").is_err());
    }

    #[test]
    fn schedules_need_five_fields() {
        assert!(Schedule::parse("0 3 * * 1-5").is_ok());
        assert!(Schedule::parse("0 3 * * SUN").is_ok());
        assert!(Schedule::parse("0 0 3 * * *").is_err());
        assert!(Schedule::parse("0 25 * * *").is_err());
    }

    #[test]
    fn target_never_shows_its_password() {
        let t = Target::parse("postgres://app:hunter2@db/app").expect("target");
        assert_eq!(t.backend, Backend::Postgres);
        assert_eq!(t.database, "app");
        for shown in [
            format!("{t}"),
            format!("{t:?}"),
            serde_json::to_string(&t).expect("json"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(
            Target::parse("sqlite:data/app.db").expect("sqlite").database,
            "data/app.db"
        );
        assert!(Target::parse("mysql://x").is_err());
    }
}
