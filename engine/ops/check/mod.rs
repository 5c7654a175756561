//! `check`: health findings (long queries, unused and duplicate indexes,
//! foreign keys without an index, connections, locks, xid age, sequences;
//! SQLite integrity and foreign keys). Acts only on long queries, and only
//! when `cancel`/`terminate` say so.

pub mod pg;
pub mod spec;
pub mod sqlite;

/// Runs the checks `spec` selects on this session (read-only statements).
pub async fn read(c: &mut crate::db::Conn, spec: &spec::CheckSpec) -> Result<Vec<spec::Finding>, crate::db::DbError> {
    let mut found = match c.backend() {
        Backend::Postgres => pg::run_checks(c, spec).await?,
        Backend::Sqlite => sqlite::run_checks(c, spec).await?,
    };
    if spec.runs(CheckName::BackupAge) {
        found.extend(backup_age(c, spec.max_backup_age_ms.unwrap_or(spec::DEFAULT_MAX_BACKUP_AGE_MS)).await?);
    }
    Ok(found)
}

/// `backup_age`: the newest verified backup of this database that is
/// still on disk unchanged, from the backup journal, must be younger than
/// `max_ms` (pgBackRest users' first alert: "the last backup is too old").
async fn backup_age(c: &mut crate::db::Conn, max_ms: u64) -> Result<Vec<spec::Finding>, crate::db::DbError> {
    use crate::ops::backup::journal;
    let now = chrono::Utc::now();
    let records = journal::records(c, false).await?;
    let newest = records
        .iter()
        .rev()
        .filter(|r| r.verified == journal::VERIFIED || r.verified == journal::RESTORED)
        .find(|r| journal::on_disk(r, false) == journal::OnDisk::Intact);
    let max_s = (max_ms / 1000) as i64;
    let limit = crate::run::execplan::human_age(max_ms / 1000);
    let finding = match newest {
        None => Some(
            spec::Finding::new(
                CheckName::BackupAge,
                Severity::Error,
                "backups",
                format!(
                    "no verified backup of this database is on disk ({} journaled): run a `backup` step",
                    records.len()
                ),
            )
            .with(serde_json::json!({"max_age_s": max_s})),
        ),
        Some(r) if r.age_secs(now) > max_s => Some(
            spec::Finding::new(
                CheckName::BackupAge,
                Severity::Error,
                r.path.clone(),
                format!(
                    "the newest verified backup is {} old (max {limit}), from {}",
                    crate::run::execplan::human_age(r.age_secs(now).max(0) as u64),
                    r.created_at
                ),
            )
            .with(serde_json::json!({"age_s": r.age_secs(now), "max_age_s": max_s, "backup_id": r.id})),
        ),
        Some(_) => None,
    };
    Ok(finding.into_iter().collect())
}

/// Cancels (and terminates) the long queries a diff listed (PostgreSQL;
/// SQLite has no other sessions to signal).
pub async fn signal_sessions(
    c: &mut crate::db::Conn,
    targets: &[spec::SessionTarget],
    act: spec::SessionAct,
) -> Result<Vec<(i32, String)>, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::signal_sessions(c, targets, act).await,
        Backend::Sqlite => Ok(vec![]),
    }
}

use super::{OpCheck, OpParams, get};
use crate::ops::check::spec::{CheckSpec, Severity};
use crate::plan::decode::Sp;
use crate::plan::values::{Backend, Duration, Ratio};
use crate::run::execplan::counted;
use crate::run::execplan::{Action, Marker};
use crate::run::planner::{Draft, PlanCx};

crate::keywords! {
    /// One health check.
    pub enum CheckName ("a check name") {
        LongQueries = "long_queries",
        UnusedIndexes = "unused_indexes",
        DuplicateIndexes = "duplicate_indexes",
        FkWithoutIndex = "fk_without_index",
        Connections = "connections",
        Locks = "locks",
        XidAge = "xid_age",
        Sequences = "sequences",
        Integrity = "integrity",
        ForeignKeys = "foreign_keys",
        BackupAge = "backup_age",
    }
}

impl AsRef<str> for CheckName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl CheckName {
    /// The backend the check exists for; `None`: both.
    pub fn backend(self) -> Option<Backend> {
        match self {
            Self::Integrity | Self::ForeignKeys => Some(Backend::Sqlite),
            Self::BackupAge => None,
            _ => Some(Backend::Postgres),
        }
    }

    pub fn exists_for(self, backend: Backend) -> bool {
        self.backend().is_none_or(|b| b == backend)
    }

    /// The checks a backend runs by default (`checks` left out): all but
    /// `backup_age`, which needs a backup schedule to judge against and
    /// runs when named or when `max_backup_age` is set.
    pub fn for_backend(backend: Backend) -> Vec<Self> {
        use CheckName::*;
        [
            LongQueries,
            UnusedIndexes,
            DuplicateIndexes,
            FkWithoutIndex,
            Connections,
            Locks,
            XidAge,
            Sequences,
            Integrity,
            ForeignKeys,
        ]
        .into_iter()
        .filter(|c| c.backend() == Some(backend))
        .collect()
    }
}

crate::keywords! {
    /// Which findings fail the step (so its dependents are skipped).
    pub enum FailOn ("`warning` or `error`") {
        Warning = "warning",
        Error = "error",
    }
}

crate::params! {
    /// Parameters of `check`.
    pub struct Check ("check parameters") {
        required {}
        optional {
            /// Which checks to run; default all the backend offers.
            checks: Vec<Sp<CheckName>>,
            /// Fail the step on findings of this severity or worse.
            fail_on: FailOn,
            /// `long_queries`: report queries running longer than this (default 10m).
            max_query_age: Duration,
            /// `long_queries`: cancel them (`pg_cancel_backend`).
            cancel: bool,
            /// `long_queries`: terminate those still running `grace` after the cancel.
            terminate: bool,
            /// Time between cancel and terminate (default 30s).
            grace: Duration,
            /// `connections`: warn above this share of `max_connections` (default 0.8).
            max_connections_ratio: Ratio,
            /// `sequences`: warn above this share of the column type's maximum (default 0.75).
            max_sequence_ratio: Ratio,
            /// `xid_age`: warn when this share of the wraparound horizon is used (default 0.5).
            max_xid_age_ratio: Ratio,
            /// `backup_age`: fail when the newest verified backup is older (default 26h); setting it runs `backup_age`.
            max_backup_age: Duration,
        }
    }
}

impl OpParams for Check {
    const KEY: &'static str = "check";
    const BACKENDS: &'static [Backend] = super::BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        let step = c.step;
        if let (Some(checks), Some(backend)) = (&self.checks, c.backend) {
            for name in checks.value.iter().filter(|n| !n.exists_for(backend)) {
                let offered: Vec<&str> = CheckName::for_backend(backend).iter().map(|c| c.as_str()).collect();
                c.error(
                    "unsupported-check",
                    name.pos,
                    format!("check `{}` in step `{step}` does not exist for {backend}", name.value),
                    &format!("{backend} offers: {}", offered.join(", ")),
                );
            }
        }
        let runs_long_queries = self
            .checks
            .as_ref()
            .is_none_or(|cs| cs.value.iter().any(|c| c.value == CheckName::LongQueries));
        for (field, key) in [(&self.cancel, "cancel"), (&self.terminate, "terminate")] {
            if let Some(f) = field.as_ref().filter(|f| f.value) {
                if !runs_long_queries {
                    c.error(
                        "invalid-combination",
                        f.pos,
                        format!("`{key}: true` acts on long queries, but `checks` leaves out `long_queries`"),
                        "add `long_queries` to `checks`",
                    );
                }
                if c.backend == Some(Backend::Sqlite) {
                    c.error(
                        "unsupported-backend",
                        f.pos,
                        format!("`{key}` needs PostgreSQL sessions; SQLite has none"),
                        "",
                    );
                }
            }
        }
        let cancels = self.cancel.as_ref().is_some_and(|f| f.value);
        if let Some(t) = self.terminate.as_ref().filter(|t| t.value && !cancels) {
            c.error(
                "invalid-combination",
                t.pos,
                "`terminate: true` needs `cancel: true`: a query is terminated only if a cancel did not stop it"
                    .to_string(),
                "add `cancel: true`",
            );
        }
    }
}

impl Check {
    /// The checks to run, with thresholds resolved.
    pub fn spec(&self, backend: Backend) -> CheckSpec {
        let mut checks: Vec<CheckName> = get(&self.checks)
            .map(|cs| {
                cs.into_iter()
                    .map(|c| c.value)
                    .filter(|c| c.exists_for(backend))
                    .collect()
            })
            .unwrap_or_else(|| CheckName::for_backend(backend));
        if self.max_backup_age.is_some() && !checks.contains(&CheckName::BackupAge) {
            checks.push(CheckName::BackupAge);
        }
        CheckSpec {
            checks: checks.iter().map(|c| c.as_str().to_string()).collect(),
            max_query_age_ms: get(&self.max_query_age).map_or(crate::ops::check::spec::DEFAULT_MAX_QUERY_AGE_MS, |d| {
                d.0.as_millis() as u64
            }),
            max_connections_ratio: get(&self.max_connections_ratio)
                .map_or(crate::ops::check::spec::DEFAULT_MAX_CONNECTIONS_RATIO, |r| r.0),
            max_sequence_ratio: get(&self.max_sequence_ratio)
                .map_or(crate::ops::check::spec::DEFAULT_MAX_SEQUENCE_RATIO, |r| r.0),
            max_xid_age_ratio: get(&self.max_xid_age_ratio)
                .map_or(crate::ops::check::spec::DEFAULT_MAX_XID_AGE_RATIO, |r| r.0),
            max_backup_age_ms: get(&self.max_backup_age).map(|d| d.0.as_millis() as u64),
            fail_on: get(&self.fail_on).map(|f| match f {
                FailOn::Warning => Severity::Warning,
                FailOn::Error => Severity::Error,
            }),
            act: self.act(),
            targets: vec![],
        }
    }

    /// What `cancel`/`terminate` ask for; `None` when neither.
    fn act(&self) -> Option<crate::ops::check::spec::SessionAct> {
        let cancel = get(&self.cancel).unwrap_or(false);
        let terminate = get(&self.terminate).unwrap_or(false);
        (cancel || terminate).then(|| crate::ops::check::spec::SessionAct {
            cancel,
            terminate,
            grace_ms: get(&self.grace).map_or(crate::ops::check::spec::DEFAULT_GRACE_MS, |d| d.0.as_millis() as u64),
        })
    }

    /// The diff shows what the checks find now, on the read-only session;
    /// apply runs them again and reports what it found then.
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let mut spec = self.spec(cx.backend);
        let mut d = Draft {
            marker: Some(Marker::Read),
            lock: "none: catalog and statistics views only".into(),
            compensation: "nothing to undo: checks only read".into(),
            ..Draft::default()
        };
        match cx.insp.fact::<Result<Vec<spec::Finding>, String>>(&cx.step.id) {
            Some(Ok(found)) => {
                for f in found {
                    let long = f.check == CheckName::LongQueries.as_str() && cx.backend == Backend::Postgres;
                    let allowed = f.figures.get("allowed").and_then(|a| a.as_bool()) != Some(false);
                    let mut target = spec
                        .act
                        .and(crate::ops::check::spec::SessionTarget::of(f))
                        .filter(|_| long);
                    let (marker, then) = match (&target, spec.act) {
                        (Some(t), Some(a)) => match t.effect(a) {
                            Some(does) => (Marker::Sessions, format!(": would {does}")),
                            None => {
                                target = None;
                                (
                                    Marker::Read,
                                    ": not signalled — a cancel does nothing to an idle transaction; `terminate: true` ends it"
                                        .to_string(),
                                )
                            }
                        },
                        (None, Some(_)) if long && !allowed => (
                            Marker::Read,
                            ": not allowed — a superuser's session, or another role's without `pg_signal_backend`: not signalled"
                                .to_string(),
                        ),
                        _ => (Marker::Read, String::new()),
                    };
                    d.object(
                        marker,
                        &f.check,
                        f.object.clone(),
                        format!("{}: {}{then}", f.severity.as_str(), f.message),
                        f.figures.clone(),
                    );
                    spec.targets.extend(target);
                }
                if !spec.targets.is_empty() {
                    d.marker = Some(Marker::Sessions);
                    d.lock = "none; signals the listed sessions (pg_cancel_backend / pg_terminate_backend)".into();
                    d.compensation = "none: a cancelled query is rolled back by its own session".into();
                }
                let failing = spec
                    .fail_on
                    .map_or(0, |at| found.iter().filter(|f| f.severity >= at).count());
                d.summary = format!(
                    "{} ({}): {} now{}",
                    counted(spec.checks.len() as u64, "check", "checks"),
                    spec.checks.join(", "),
                    counted(found.len() as u64, "finding", "findings"),
                    if failing > 0 {
                        format!(", {failing} at or above `fail_on` would fail the step")
                    } else {
                        String::new()
                    }
                );
            }
            Some(Err(e)) => d.errors.push(format!("a check query failed: {e}")),
            None => d.summary = format!("{} checks ({})", spec.checks.len(), spec.checks.join(", ")),
        }
        if cx.backend == Backend::Postgres && spec.runs(CheckName::LongQueries) {
            d.privileges.extend(cx.need_role(
                "pg_read_all_stats",
                |r| r.read_all_stats,
                "to see other roles' queries (without it `long_queries` finds none of theirs)",
            ));
            if spec.act.is_some() {
                d.privileges.extend(cx.need_role(
                    "pg_signal_backend",
                    |r| r.signal_backend,
                    "to cancel or terminate other roles' (non-superuser) queries",
                ));
            }
        }
        d.statements
            .push(format!("-- read-only checks: {}", spec.checks.join(", ")));
        d.actions.push(Action::op(<Check as OpParams>::KEY, &spec));
        d
    }
}

impl crate::run::operation::Operation for Check {
    /// The checks themselves, on the read-only session: the diff shows
    /// their findings.
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let found = read(conn, &self.spec(conn.backend())).await.map_err(|e| e.message);
            insp.keep(step.id.clone(), found);
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Check::plan(self, cx)
    }
}

/// Runs a `check` step's work: the checks, then the session signals the
/// diff listed.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Check as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let spec: CheckSpec = crate::run::operation::decode_work(self.key(), work)?;
            let c = run.read_session().await?;
            let mut found = read(c, &spec)
                .await
                .map_err(|e| StepErr::failed(format!("a check query failed: {}", e.message)))?;
            let mut statements = spec.checks.len() as u64;
            let mut done_lines = vec![];
            if let Some(act) = spec.act.filter(|_| !spec.targets.is_empty()) {
                let done = signal_sessions(c, &spec.targets, act)
                    .await
                    .map_err(|e| StepErr::failed(format!("signalling long queries failed: {}", e.message)))?;
                statements += done.len() as u64;
                for (pid, what) in done {
                    done_lines.push(format!("pid {pid}: {what}"));
                    match found.iter_mut().find(|f| f.object == format!("pid {pid}")) {
                        Some(f) => f.message = format!("{}; {what}", f.message),
                        None => found.push(spec::Finding {
                            check: "long_queries".into(),
                            severity: Severity::Warning,
                            object: format!("pid {pid}"),
                            message: format!("listed by the diff; {what}"),
                            figures: serde_json::json!({"pid": pid}),
                        }),
                    }
                }
            }
            for line in done_lines {
                run.object_done(line);
            }
            run.result().statements += statements;
            let failing = spec
                .fail_on
                .map_or(0, |at| found.iter().filter(|f| f.severity >= at).count());
            run.object_done(format!(
                "{}, {}",
                counted(spec.checks.len() as u64, "check", "checks"),
                counted(found.len() as u64, "finding", "findings")
            ));
            run.result().findings = found;
            if failing > 0 {
                return Err(StepErr::findings(format!(
                    "{failing} findings at or above `fail_on: {}`",
                    spec.fail_on.map_or("", |s| s.as_str())
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn checks_must_exist_for_the_backend() {
        assert_eq!(
            findings::<Check>("{checks: [integrity]}", Backend::Postgres),
            ["unsupported-check"]
        );
        assert!(findings::<Check>("{checks: [integrity, foreign_keys]}", Backend::Sqlite).is_empty());
        assert_eq!(
            findings::<Check>("{checks: [long_query]}", Backend::Postgres),
            ["invalid-value"]
        );
    }

    #[test]
    fn terminate_follows_a_cancel() {
        assert_eq!(
            findings::<Check>("{terminate: true}", Backend::Postgres),
            ["invalid-combination"]
        );
        assert!(
            findings::<Check>(
                "{checks: [long_queries], cancel: true, terminate: true, max_query_age: 10m}",
                Backend::Postgres
            )
            .is_empty()
        );
    }
}
