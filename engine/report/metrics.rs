//! A run as Prometheus text-format metrics, for node_exporter's textfile
//! collector: what the run did (per run and per step) and when the plan
//! last succeeded, so an alert can fire on a job that stopped running as
//! well as on one that fails. Every sample carries `plan`, `env` and
//! `target` (the database's name); step samples add `step` and `op`.

use std::fmt::Write as _;

use crate::run::collect::Report;
use crate::run::events::{Severity, Status};

/// What the metrics describe besides the report.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    pub env: Option<&'a str>,
    /// The target's name (the database, or a fleet inventory's name).
    pub target: &'a str,
}

/// The report as metrics; `last_success` is the Unix time of the plan's
/// last successful run on this target (from the journal), if any;
/// `finished` the Unix time this run ended.
pub fn render(report: &Report, labels: &Labels, last_success: Option<i64>, finished: i64) -> String {
    let base = format!(
        "plan=\"{}\",env=\"{}\",target=\"{}\"",
        escape(&report.plan),
        escape(labels.env.unwrap_or("")),
        escape(labels.target)
    );
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    family(
        "dbmaint_run_last_success_timestamp_seconds",
        "gauge",
        "Unix time the plan last ran successfully on this target, from its journal.",
        last_success
            .map(|t| vec![(base.clone(), t.to_string())])
            .unwrap_or_default(),
    );
    family(
        "dbmaint_run_timestamp_seconds",
        "gauge",
        "Unix time the last run ended.",
        vec![(base.clone(), finished.to_string())],
    );
    family(
        "dbmaint_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        vec![(base.clone(), seconds(report.duration_ms))],
    );
    family(
        "dbmaint_run_exit_code",
        "gauge",
        "The last run's exit code (0 success, 1 error, 3 limits, 4 locked, 5 cleanup failed, 6 checks).",
        vec![(base.clone(), report.exit_code.to_string())],
    );
    let step_labels =
        |s: &crate::run::collect::ReportStep| format!("{base},step=\"{}\",op=\"{}\"", escape(&s.step), escape(&s.op));
    family(
        "dbmaint_step_duration_seconds",
        "gauge",
        "How long each step of the last run took.",
        report
            .steps
            .iter()
            .map(|s| (step_labels(s), seconds(s.duration_ms)))
            .collect(),
    );
    family(
        "dbmaint_step_rows_total",
        "gauge",
        "Rows each step of the last run deleted, archived or changed.",
        report
            .steps
            .iter()
            .map(|s| (step_labels(s), s.rows.to_string()))
            .collect(),
    );
    family(
        "dbmaint_step_bytes_total",
        "gauge",
        "Bytes each step of the last run wrote (backups) or gave back.",
        report
            .steps
            .iter()
            .map(|s| (step_labels(s), s.bytes.to_string()))
            .collect(),
    );
    const STATUSES: [Status; 5] = [
        Status::Succeeded,
        Status::Failed,
        Status::Skipped,
        Status::Deferred,
        Status::Partial,
    ];
    family(
        "dbmaint_step_status",
        "gauge",
        "1 for each step's status in the last run, 0 for the others.",
        report
            .steps
            .iter()
            .flat_map(|s| {
                STATUSES.iter().map(move |st| {
                    (
                        format!("{},status=\"{}\"", step_labels(s), st.as_str()),
                        u8::from(s.status == *st).to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "dbmaint_check_findings",
        "gauge",
        "Findings of each step of the last run that ran (check and bloat find; others find none), by severity.",
        report
            .steps
            .iter()
            .filter(|s| s.status != Status::Skipped)
            .flat_map(|s| {
                [Severity::Warning, Severity::Error].into_iter().map(move |sev| {
                    (
                        format!("{},severity=\"{}\"", step_labels(s), sev.as_str()),
                        s.findings.iter().filter(|f| f.severity == sev).count().to_string(),
                    )
                })
            })
            .collect(),
    );
    out
}

/// The value of `dbmaint_run_last_success_timestamp_seconds` in an earlier
/// metrics file: kept when the journal cannot be read (the database is
/// down), so the alert on staleness keeps its clock.
pub fn previous_last_success(text: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with("dbmaint_run_last_success_timestamp_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::previous_last_success;

    #[test]
    fn the_last_success_is_read_back_from_an_earlier_file() {
        let text = "# HELP dbmaint_run_last_success_timestamp_seconds x\n\
                    # TYPE dbmaint_run_last_success_timestamp_seconds gauge\n\
                    dbmaint_run_last_success_timestamp_seconds{plan=\"p\",env=\"\",target=\"t\"} 1764554961\n\
                    dbmaint_run_exit_code{plan=\"p\",env=\"\",target=\"t\"} 1\n";
        assert_eq!(previous_last_success(text), Some(1_764_554_961));
        assert_eq!(previous_last_success("dbmaint_run_exit_code{} 0\n"), None);
    }
}
