//! dbmaint as a monitoring probe: `inspect checks --fail-on` and
//! `history --stale-after`, as one line for people or in the Nagios plugin
//! format (check_postgres, Icinga, Sensu): `SERVICE STATE - summary |
//! perfdata`, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use chrono::{DateTime, Utc};

use crate::run::events::{Finding, Severity};

/// A Nagios plugin state; its exit code is the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// `CHECKS`, `STALENESS`.
    pub service: &'static str,
    pub state: State,
    pub summary: String,
    /// `label=value[UOM];warn;crit`, as the plugin guidelines write them.
    pub perfdata: Vec<String>,
    /// The condition the probe watches is met: the command exits `ALERT`
    /// in text mode.
    pub alert: bool,
}

impl Probe {
    /// The Nagios plugin line.
    pub fn nagios(&self) -> String {
        let mut line = format!("DBMAINT {} {} - {}", self.service, self.state.name(), self.summary);
        if !self.perfdata.is_empty() {
            line.push_str(" | ");
            line.push_str(&self.perfdata.join(" "));
        }
        line
    }

    /// A connection or journal that could not be read: UNKNOWN.
    pub fn unknown(service: &'static str, why: &str) -> Self {
        Self {
            service,
            state: State::Unknown,
            summary: crate::db::one_line(why),
            perfdata: vec![],
            alert: false,
        }
    }
}

/// Health findings against a threshold: errors are CRITICAL, warnings
/// WARNING; with `fail_on: error`, warnings alone are OK.
pub fn checks(findings: &[Finding], fail_on: Severity) -> Probe {
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    let state = if errors > 0 {
        State::Critical
    } else if warnings > 0 && fail_on == Severity::Warning {
        State::Warning
    } else {
        State::Ok
    };
    let first: Vec<String> = findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .take(3)
        .map(|f| format!("{} {}: {}", f.check, f.object, f.message))
        .collect();
    let summary = match (errors, warnings) {
        (0, 0) => "no findings".to_string(),
        _ => format!(
            "{errors} error{}, {warnings} warning{}{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" },
            if first.is_empty() {
                String::new()
            } else {
                format!("; {}", first.join("; "))
            }
        ),
    };
    Probe {
        service: "CHECKS",
        state,
        summary,
        perfdata: vec![
            format!("errors={errors};;1"),
            format!(
                "warnings={warnings};{};",
                if fail_on == Severity::Warning { "1" } else { "" }
            ),
        ],
        alert: state != State::Ok,
    }
}

/// The last successful run against a maximum age: older, or none at all,
/// is CRITICAL.
pub fn staleness(plan: Option<&str>, last: Option<(i64, &str, &str)>, now: DateTime<Utc>, max_age_s: u64) -> Probe {
    let which = plan.map_or("any plan".to_string(), |p| format!("plan `{p}`"));
    let limit = crate::run::execplan::human_age(max_age_s);
    let Some((run, name, finished)) = last else {
        return Probe {
            service: "STALENESS",
            state: State::Critical,
            summary: format!("{which} never succeeded on this database (no successful run in its journal)"),
            perfdata: vec![],
            alert: true,
        };
    };
    let Ok(at) = DateTime::parse_from_rfc3339(finished) else {
        return Probe::unknown("STALENESS", &format!("run {run}'s end time `{finished}` is not a time"));
    };
    let age = (now - at.with_timezone(&Utc)).num_seconds().max(0) as u64;
    let stale = age > max_age_s;
    Probe {
        service: "STALENESS",
        state: if stale { State::Critical } else { State::Ok },
        summary: format!(
            "plan `{name}` last succeeded {} ago (run {run}, {finished}){}",
            crate::run::execplan::human_age(age),
            if stale {
                format!(", more than {limit}")
            } else {
                format!(", within {limit}")
            }
        ),
        perfdata: vec![format!("age={age}s;;{max_age_s}")],
        alert: stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding::new("sequences", severity, "public.s", "at 95%")
    }

    #[test]
    fn checks_map_to_nagios_states_by_threshold() {
        let w = [finding(Severity::Warning)];
        assert_eq!(checks(&w, Severity::Warning).state, State::Warning);
        assert_eq!(checks(&w, Severity::Error).state, State::Ok);
        let e = [finding(Severity::Warning), finding(Severity::Error)];
        let p = checks(&e, Severity::Error);
        assert_eq!((p.state, p.state.code()), (State::Critical, 2));
        assert_eq!(
            p.nagios(),
            "DBMAINT CHECKS CRITICAL - 1 error, 1 warning; sequences public.s: at 95% | errors=1;;1 warnings=1;;"
        );
        assert_eq!(
            checks(&[], Severity::Warning).nagios(),
            "DBMAINT CHECKS OK - no findings | errors=0;;1 warnings=0;1;"
        );
    }

    #[test]
    fn staleness_is_critical_past_the_age_or_without_a_success() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T04:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let fresh = staleness(
            Some("nightly"),
            Some((7, "nightly", "2026-11-30T02:00:00Z")),
            now,
            26 * 3600,
        );
        assert_eq!(fresh.state, State::Ok);
        assert_eq!(
            fresh.nagios(),
            "DBMAINT STALENESS OK - plan `nightly` last succeeded 1d 2h ago (run 7, 2026-11-30T02:00:00Z), within 1d 2h | age=93600s;;93600"
        );
        let stale = staleness(
            Some("nightly"),
            Some((7, "nightly", "2026-11-30T01:59:59Z")),
            now,
            26 * 3600,
        );
        assert_eq!((stale.state, stale.alert), (State::Critical, true));
        let never = staleness(Some("nightly"), None, now, 3600);
        assert_eq!((never.state, never.alert), (State::Critical, true));
    }
}
