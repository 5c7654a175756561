//! `stats`: a size and activity report; changes nothing.

pub mod pg;
pub mod report;
pub mod sqlite;

/// The report on this session's database (read-only statements).
pub async fn read(c: &mut crate::db::Conn, top: u64) -> Result<report::StatsReport, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::stats(c, top).await,
        Backend::Sqlite => sqlite::stats(c, top).await,
    }
}

use super::{BOTH, OpCheck, OpParams, get};
use crate::plan::values::Backend;
use crate::run::execplan::{Action, Marker};
use crate::run::planner::{Draft, PlanCx};

crate::params! {
    /// Parameters of `stats`.
    pub struct Stats ("stats parameters") {
        required {}
        optional {
            /// How many of the largest tables and indexes to list (default 20).
            top: u64,
        }
    }
}

impl OpParams for Stats {
    const KEY: &'static str = "stats";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.in_range(&self.top, "top", 1..=10_000);
    }
}

/// Default `top`.
pub const DEFAULT_TOP: u64 = 20;

impl Stats {
    pub fn top_n(&self) -> u64 {
        get(&self.top).unwrap_or(DEFAULT_TOP)
    }

    /// The diff shows the report as it reads now; apply measures again and
    /// puts it in the final report.
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let mut d = Draft {
            marker: Some(Marker::Read),
            lock: "none: sizes and statistics views only".into(),
            compensation: "nothing to undo: a report".into(),
            ..Draft::default()
        };
        match cx.insp.fact::<Result<report::StatsReport, String>>(&cx.step.id) {
            Some(Ok(report)) => {
                d.summary = format!(
                    "report the database size and the {} largest tables and indexes",
                    self.top_n()
                );
                d.object(
                    Marker::Read,
                    "database",
                    crate::run::execplan::human_bytes(report.database_bytes),
                    String::new(),
                    serde_json::json!({"bytes": report.database_bytes}),
                );
                for t in &report.tables {
                    d.object(
                        Marker::Read,
                        "table",
                        t.name.clone(),
                        t.detail(),
                        serde_json::to_value(t).unwrap_or_default(),
                    );
                }
                for i in &report.indexes {
                    d.object(
                        Marker::Read,
                        "index",
                        i.name.clone(),
                        i.detail(),
                        serde_json::to_value(i).unwrap_or_default(),
                    );
                }
                if let Some(n) = &report.note {
                    d.warnings.push(n.clone());
                }
            }
            Some(Err(e)) => d.errors.push(format!("a stats query failed: {e}")),
            None => d.summary = "report sizes and statistics".into(),
        }
        d.actions
            .push(Action::op(<Stats as OpParams>::KEY, &StatsWork { top: self.top_n() }));
        d
    }
}

impl crate::run::operation::Operation for Stats {
    /// The report itself, on the read-only session (the diff shows it).
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            // A diff takes PostgreSQL's sizes from the catalog it has read.
            let report = match conn.backend() {
                Backend::Postgres => pg::stats_from(conn, &insp.catalog, self.top_n()).await,
                Backend::Sqlite => sqlite::stats(conn, self.top_n()).await,
            }
            .map_err(|e| e.message);
            insp.keep(step.id.clone(), report);
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Stats::plan(self, cx)
    }
}

/// What a `stats` step runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatsWork {
    pub top: u64,
}

/// Runs a `stats` step's report on the step's session.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Stats as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let w: StatsWork = crate::run::operation::decode_work(self.key(), work)?;
            let c = run.read_session().await?;
            let report = read(c, w.top)
                .await
                .map_err(|e| StepErr::failed(format!("a stats query failed: {}", e.message)))?;
            run.result().statements += 3;
            run.object_done(format!(
                "{} tables, {} indexes",
                report.tables.len(),
                report.indexes.len()
            ));
            let r = run.result();
            r.keep_report("stats", &report, report.lines());
            Ok(())
        })
    }
}
