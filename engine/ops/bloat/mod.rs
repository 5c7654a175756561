//! `bloat`: table and index bloat estimates; findings over the threshold are
//! warnings. Changes nothing.

pub mod figures;
pub mod pg;
pub mod shapes;
pub mod sqlite;

/// The bloat figures of this session's database (read-only statements;
/// `pgstattuple` reads every page when `exact` asks for it).
pub async fn read(c: &mut crate::db::Conn, spec: &BloatSpec) -> Result<figures::BloatReport, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::bloat(c, spec).await,
        Backend::Sqlite => sqlite::bloat(c).await,
    }
}

/// Where a diff's inspection keeps the catalog shapes of every relation,
/// read once for all its `bloat` and `reindex` steps.
const SHAPES: &str = "bloat#shapes";

/// The bloat figures for a step of a diff: like [`read`], but the catalog
/// shapes come from the inspection when an earlier step read them all, and
/// are kept there when this step reads them all. A step naming its tables
/// without globs reads only theirs.
pub async fn read_shared(
    insp: &mut crate::run::inspect::Inspection,
    c: &mut crate::db::Conn,
    spec: &BloatSpec,
) -> Result<figures::BloatReport, crate::db::DbError> {
    if c.backend() == Backend::Sqlite {
        return sqlite::bloat(c).await;
    }
    if insp.fact::<shapes::Shapes>(SHAPES).is_none() {
        let scope = shapes::scope_of(&spec.tables);
        let read = shapes::read(&mut *c, scope.clone()).await?;
        if scope.is_some() {
            return pg::bloat_from(c, &read, spec).await;
        }
        insp.keep(SHAPES, read);
    }
    let all = insp.fact::<shapes::Shapes>(SHAPES).expect("kept above");
    pg::bloat_from(c, all, spec).await
}

use super::{BOTH, OpCheck, OpParams, get, globs};
use crate::ops::bloat::figures::{BloatSpec, DEFAULT_MIN_BYTES, DEFAULT_MIN_WASTE_RATIO};
use crate::plan::values::{Backend, NameGlob, Ratio};
use crate::run::execplan::{Action, Marker, human_bytes};
use crate::run::planner::{Draft, PlanCx, percent};

crate::params! {
    /// Parameters of `bloat`.
    pub struct Bloat ("bloat parameters") {
        required {}
        optional {
            /// Report relations whose estimated waste reaches this ratio (default 0.2).
            min_waste_ratio: Ratio,
            /// Exact figures from `pgstattuple` when the extension is installed (never installed by the engine).
            exact: bool,
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Skip relations smaller than this many bytes (default 1 MiB), as check_postgres does.
            min_bytes: u64,
        }
    }
}

impl OpParams for Bloat {
    const KEY: &'static str = "bloat";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.not_on(&self.exact, "exact", Backend::Sqlite);
        c.not_on(&self.tables, "tables", Backend::Sqlite);
    }
}

impl Bloat {
    /// What the measurement reads.
    pub fn spec(&self) -> BloatSpec {
        BloatSpec {
            exact: get(&self.exact).unwrap_or(false),
            min_bytes: get(&self.min_bytes).unwrap_or(DEFAULT_MIN_BYTES),
            tables: globs(&self.tables).into_iter().map(|g| g.0).collect(),
        }
    }

    pub fn min_waste_ratio(&self) -> f64 {
        get(&self.min_waste_ratio).map_or(DEFAULT_MIN_WASTE_RATIO, |r| r.0)
    }

    /// The diff shows what the measurement finds now; apply measures again
    /// for the report.
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let spec = self.spec();
        let min = self.min_waste_ratio();
        let mut d = Draft {
            marker: Some(Marker::Read),
            lock: if spec.exact && cx.backend == Backend::Postgres {
                "ACCESS SHARE per relation while pgstattuple reads it".into()
            } else {
                "none: catalog statistics only".into()
            },
            compensation: "nothing to undo: a report".into(),
            ..Draft::default()
        };
        match cx.insp.fact::<Result<figures::BloatReport, String>>(&cx.step.id) {
            Some(Ok(report)) => {
                let over = report.findings(min);
                for f in &over {
                    let (kind, name) = f.object.split_once(' ').unwrap_or(("bloat", &f.object));
                    d.object(
                        Marker::Read,
                        kind,
                        name.to_string(),
                        format!("warning: {}", f.message),
                        f.figures.clone(),
                    );
                }
                let waste: u64 = report
                    .entries
                    .iter()
                    .filter(|e| e.ratio >= min)
                    .map(|e| e.waste_bytes)
                    .sum();
                d.summary = format!(
                    "{} relations measured, {} at or over {} waste ({} in all)",
                    report.entries.len(),
                    over.len(),
                    percent(min),
                    human_bytes(waste)
                );
                d.warnings.extend(report.notes());
            }
            Some(Err(e)) => d.errors.push(format!("a bloat query failed: {e}")),
            None => d.summary = format!("report relations with {} or more waste", percent(min)),
        }
        d.statements.push(format!(
            "-- read-only: {}",
            match (cx.backend, spec.exact) {
                (Backend::Sqlite, _) => "PRAGMA freelist_count, page_count",
                (_, true) => "pgstattuple/pgstatindex of each relation",
                (_, false) => "bloat estimate from pg_class and pg_stats",
            }
        ));
        d.actions.push(Action::op(
            <Bloat as OpParams>::KEY,
            &BloatWork {
                spec,
                min_waste_ratio: min,
            },
        ));
        d
    }
}

impl crate::run::operation::Operation for Bloat {
    /// None from the catalog: the estimate sizes relations from `relpages`
    /// itself (and `pgstattuple` reads them).
    fn measures(&self) -> crate::db::catalog::Measure {
        crate::db::catalog::Measure::Named(vec![])
    }

    /// The figures themselves, on the read-only session.
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let report = read_shared(insp, conn, &self.spec()).await.map_err(|e| e.message);
            insp.keep(step.id.clone(), report);
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Bloat::plan(self, cx)
    }
}

/// What a `bloat` step runs: the figures, and the ratio at which a
/// relation is a finding.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BloatWork {
    pub spec: BloatSpec,
    pub min_waste_ratio: f64,
}

/// Runs a `bloat` step's report on the step's session.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Bloat as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let w: BloatWork = crate::run::operation::decode_work(self.key(), work)?;
            let c = run.read_session().await?;
            let report = read(c, &w.spec)
                .await
                .map_err(|e| StepErr::failed(format!("a bloat query failed: {}", e.message)))?;
            run.result().statements += if w.spec.exact { 4 } else { 2 };
            let found = report.findings(w.min_waste_ratio);
            run.object_done(format!(
                "{} relations, {} over the threshold",
                report.entries.len(),
                found.len()
            ));
            let r = run.result();
            r.findings = found;
            r.keep_report("bloat", &report, report.lines());
            Ok(())
        })
    }
}
