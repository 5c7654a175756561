//! `reindex`: `REINDEX INDEX CONCURRENTLY` of selected, bloated indexes on
//! PostgreSQL; `REINDEX` on SQLite.

pub mod exec;
pub mod pg;

/// Unfinished rebuilds of earlier runs and what they left (PostgreSQL;
/// SQLite's REINDEX is transactional and leaves nothing).
pub async fn leftovers(c: &mut crate::db::Conn) -> Result<Vec<Leftover>, crate::db::DbError> {
    match c.backend() {
        Backend::Postgres => pg::open_leftovers(c).await,
        Backend::Sqlite => Ok(vec![]),
    }
}

use super::{BOTH, OpCheck, OpParams, get, globs};
use crate::db::quote_name;
use crate::ops::bloat::figures::BloatSpec;
use crate::plan::values::{Backend, NameGlob, Ratio};
use crate::run::execplan::{Action, Estimate, Fidelity, Marker, human_bytes, human_count};
use crate::run::planner::{Draft, PlanCx, matches_any, percent, unmatched};
use exec::{ReindexWork, Work};

crate::params! {
    /// Parameters of `reindex`.
    pub struct Reindex ("reindex parameters") {
        required {}
        optional {
            /// Indexes to consider (globs); default all.
            indexes: Vec<NameGlob>,
            /// Consider the indexes of these tables (globs).
            tables: Vec<NameGlob>,
            /// Indexes to leave out (globs).
            exclude: Vec<NameGlob>,
            /// `REINDEX … CONCURRENTLY` (default true). `false` takes ACCESS EXCLUSIVE on the table.
            concurrently: bool,
            /// Acknowledges a non-concurrent rebuild blocks the table.
            allow_exclusive_lock: bool,
            /// Rebuild indexes whose estimated bloat reaches this ratio.
            min_bloat_ratio: Ratio,
            /// PostgreSQL: rebuild the indexes of this many tables at once, each on its own session (as `reindexdb -j`), at most the run's `--parallelism` (default 1).
            jobs: u64,
            /// PostgreSQL: before each index, wait while replicas lag or the server is busy: `{max_replica_lag: 10s, max_active_sessions: N, max_lock_waiters: N, check_every: 1s}`.
            throttle: crate::ops::throttle::Throttle,
        }
    }
}

impl OpParams for Reindex {
    const KEY: &'static str = "reindex";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        exclusive_unless_concurrent(c, &self.concurrently, &self.allow_exclusive_lock, "REINDEX");
        c.not_on(&self.concurrently, "concurrently", Backend::Sqlite);
        c.not_on(&self.min_bloat_ratio, "min_bloat_ratio", Backend::Sqlite);
        crate::ops::check_jobs(&self.jobs, c);
        crate::ops::throttle::Throttle::check(&self.throttle, c);
    }
}

/// Default `min_bloat_ratio` when the plan names no `indexes`: rebuilding
/// every index every night is work with nothing to show for it.
pub const DEFAULT_MIN_BLOAT_RATIO: f64 = 0.3;

impl Reindex {
    /// The bloat figures the selection needs: estimates of every index of
    /// the selected tables (indexes under 1 MiB are not estimated).
    pub fn bloat_spec(&self) -> BloatSpec {
        BloatSpec {
            exact: false,
            min_bytes: crate::ops::bloat::figures::DEFAULT_MIN_BYTES,
            tables: globs(&self.tables).into_iter().map(|g| g.0).collect(),
        }
    }

    fn concurrent(&self, backend: Backend) -> bool {
        backend == Backend::Postgres && get(&self.concurrently).unwrap_or(true)
    }

    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let concurrently = self.concurrent(cx.backend);
        let mut d = Draft {
            marker: Some(Marker::Change),
            lock: match (cx.backend, concurrently) {
                (Backend::Sqlite, _) => "EXCLUSIVE (the database file, while each index is rebuilt)".into(),
                (_, true) => "SHARE UPDATE EXCLUSIVE on each table (CONCURRENTLY: reads and writes go on)".into(),
                (_, false) => {
                    "ACCESS EXCLUSIVE on each index and SHARE on its table: writes, and reads through the index, wait"
                        .into()
                }
            },
            transactional: !concurrently,
            compensation: if concurrently {
                "a failed rebuild's INVALID _ccnew/_ccold index is dropped at once (or by the next run, from the journal)".into()
            } else {
                "a failed REINDEX rolls back: the old index stays".into()
            },
            ..Draft::default()
        };
        let leftovers = self.plan_leftovers(cx, &mut d);
        let index_globs: Vec<String> = globs(&self.indexes).into_iter().map(|g| g.0).collect();
        let exclude: Vec<String> = globs(&self.exclude).into_iter().map(|g| g.0).collect();
        // Named indexes are rebuilt as named; otherwise bloat decides.
        let min_ratio =
            get(&self.min_bloat_ratio)
                .map(|r| r.0)
                .or(if index_globs.is_empty() && cx.backend == Backend::Postgres {
                    Some(DEFAULT_MIN_BLOAT_RATIO)
                } else {
                    None
                });
        let bloat = match cx
            .insp
            .fact::<Result<crate::ops::bloat::figures::BloatReport, String>>(&cx.step.id)
        {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                d.errors.push(format!("the bloat estimate failed: {e}"));
                None
            }
            None => None,
        };
        let (mut considered, mut below, mut unknown, mut waste) = (0usize, 0usize, 0usize, 0u64);
        // Every index planned for a rebuild, and whether it is over the
        // threshold now (else only after upstream deletes): re-evaluated
        // at step start when some are projected (issue 14 §1).
        let mut candidates: Vec<(String, bool)> = vec![];
        let mut candidate_tables: Vec<String> = vec![];
        let mut excluded: Vec<String> = vec![];
        let tables = cx.select_tables(&globs(&self.tables), &[], &mut d);
        // A partitioned index has no storage of its own: naming it names
        // its partitions' indexes (at any depth), each rebuilt on its own.
        let parents: std::collections::HashMap<String, String> = cx
            .insp
            .tables
            .iter()
            .flat_map(|t| {
                t.indexes
                    .iter()
                    .filter_map(move |i| i.parent_index.clone().map(|p| (format!("{}.{}", t.schema, i.name), p)))
            })
            .collect();
        let lineage = |full: &str| {
            let mut out = vec![full.to_string()];
            while let Some(p) = out.last().and_then(|l| parents.get(l)).filter(|p| !out.contains(p)) {
                out.push(p.clone());
            }
            out
        };
        // TOAST indexes are candidates when a glob names `pg_toast.…`.
        let toast_wanted = index_globs.iter().any(|g| g.starts_with("pg_toast."));
        let mut index_names: Vec<String> = cx
            .insp
            .tables
            .iter()
            .flat_map(|t| t.indexes.iter().map(move |i| format!("{}.{}", t.schema, i.name)))
            .collect();
        index_names.extend(
            cx.insp
                .tables
                .iter()
                .filter_map(|t| t.toast.as_ref().map(|x| format!("pg_toast.{}", x.index))),
        );
        unmatched("index", "indexes", &index_globs, &index_names, &mut d);
        unmatched("index", "exclude", &exclude, &index_names, &mut d);
        for t in tables {
            let toast = t.toast.as_ref().filter(|_| toast_wanted).map(|x| {
                let facts = crate::db::catalog::IndexFacts {
                    name: x.index.clone(),
                    columns: vec![],
                    bytes: x.index_bytes,
                    unique: true,
                    primary: false,
                    valid: true,
                    partial: false,
                    exclusion: false,
                    parent_index: None,
                };
                ("pg_toast".to_string(), x.table.clone(), facts)
            });
            let entries: Vec<(String, String, &crate::db::catalog::IndexFacts)> = t
                .indexes
                .iter()
                .map(|i| (t.schema.clone(), t.name.clone(), i))
                .chain(toast.iter().map(|(s, tb, i)| (s.clone(), tb.clone(), i)))
                .collect();
            for (ischema, itable, i) in entries {
                let full = format!("{ischema}.{}", i.name);
                let line = lineage(&full);
                let via = line.iter().skip(1).find(|p| matches_any(&index_globs, p)).cloned();
                if !(matches_any(&index_globs, &full) || via.is_some())
                    || (!exclude.is_empty() && matches_any(&exclude, &full))
                    || !i.valid
                    || leftovers.contains(&full)
                {
                    continue;
                }
                considered += 1;
                if i.exclusion && concurrently && cx.backend == Backend::Postgres {
                    // PostgreSQL refuses: "concurrent index creation for
                    // exclusion constraints is not supported". Planned, it
                    // would fail every run and stop the indexes after it.
                    d.object(
                        Marker::Read,
                        "index",
                        full.clone(),
                        format!(
                            "on {}: not rebuilt — it backs an exclusion constraint, which PostgreSQL cannot rebuild CONCURRENTLY; \
                             `concurrently: false` with `allow_exclusive_lock: true` rebuilds it under ACCESS EXCLUSIVE",
                            cx.display(t)
                        ),
                        serde_json::json!({"bytes": i.bytes, "exclusion": true}),
                    );
                    excluded.push(full.clone());
                    continue;
                }
                let figures = bloat.and_then(|b| b.entry("index", &full));
                // Rows upstream steps of this run delete from the index's
                // table (none for a TOAST index: its table is not theirs).
                let removed = if ischema == "pg_toast" || cx.backend != Backend::Postgres {
                    0
                } else {
                    cx.removed_upstream(&cx.quoted(t)).0
                };
                let mut projected: Option<(f64, String)> = None;
                if let Some(min) = min_ratio {
                    match figures {
                        Some(e) if e.ratio >= min => {}
                        Some(e) => {
                            // The deleted rows leave the index's pages emptier
                            // once vacuumed: the estimate after them decides.
                            let after = projected_ratio(e.ratio, removed, t.live_tuples);
                            if removed == 0 || after < min {
                                below += 1;
                                continue;
                            }
                            let by: Vec<&str> = cx
                                .upstream
                                .iter()
                                .filter(|u| u.table == cx.quoted(t))
                                .map(|u| u.step.as_str())
                                .collect();
                            projected = Some((
                                after,
                                format!(
                                    "{} now; ~{} once {} {} {} of its table's ~{} rows and a vacuum removes their entries: \
                                     rebuilt only if over {} when the step starts",
                                    percent(e.ratio),
                                    percent(after),
                                    by.join(", "),
                                    if by.len() == 1 { "deletes" } else { "delete" },
                                    human_count(removed),
                                    human_count(t.live_tuples.max(removed)),
                                    percent(min)
                                ),
                            ));
                        }
                        None => {
                            unknown += 1;
                            continue;
                        }
                    }
                }
                let (quoted, mut detail) = match cx.backend {
                    Backend::Postgres => (
                        quote_name(Some(&ischema), &i.name),
                        figures.map_or_else(
                            || format!("{}, bloat not estimated", human_bytes(i.bytes)),
                            |e| e.detail(),
                        ),
                    ),
                    Backend::Sqlite => (quote_name(None, &i.name), "rebuilt from its table".to_string()),
                };
                if let Some(p) = &via {
                    detail.push_str(&format!("; a partition's index of the partitioned index {p}"));
                }
                if ischema == "pg_toast" {
                    detail.push_str(&format!("; the TOAST index of {}", cx.display(t)));
                }
                // After this run's deletes an index wastes what the
                // projection says, whether it is over the threshold already
                // or only then.
                waste += figures.map_or(0, |e| {
                    let after = projected_ratio(e.ratio, removed, t.live_tuples);
                    e.waste_bytes.max((e.bytes as f64 * after) as u64)
                });
                if let Some((_, said)) = &projected {
                    detail = format!("{}, {said}", human_bytes(i.bytes));
                }
                candidates.push((full.clone(), projected.is_none()));
                let table_name = format!("{ischema}.{itable}");
                if !candidate_tables.contains(&table_name) {
                    candidate_tables.push(table_name);
                }
                d.object(
                    Marker::Change,
                    "index",
                    full.clone(),
                    format!("on {}: {detail}", cx.display(t)),
                    serde_json::json!({
                        "bytes": i.bytes, "waste_bytes": figures.map(|e| e.waste_bytes),
                        "bloat_ratio": figures.map(|e| e.ratio),
                    }),
                );
                let sql = if concurrently {
                    format!("REINDEX INDEX CONCURRENTLY {quoted}")
                } else {
                    format!(
                        "REINDEX {}{quoted}",
                        if cx.backend == Backend::Postgres { "INDEX " } else { "" }
                    )
                };
                d.statements.push(sql.clone());
                d.privileges.extend(cx.need_owner(t));
                let rebuild = Action::op(
                    <Reindex as OpParams>::KEY,
                    &Work::Rebuild(ReindexWork {
                        schema: ischema.clone(),
                        table: itable.clone(),
                        index: i.name.clone(),
                        sql,
                        concurrently,
                    }),
                )
                .on_object(full.clone())
                .in_group(format!("{ischema}.{itable}"));
                // A concurrent rebuild is not transactional: its failure is
                // undone by dropping the INVALID copy it left (rule 7).
                d.actions.push(if concurrently && cx.backend == Backend::Postgres {
                    rebuild.undone_by(
                        format!("DROP INDEX CONCURRENTLY the INVALID copy of {full} the failed rebuild left"),
                        Action::op(
                            <Reindex as OpParams>::KEY,
                            &Work::DropCopies {
                                schema: ischema.clone(),
                                table: itable.clone(),
                                index: i.name.clone(),
                            },
                        ),
                    )
                } else {
                    rebuild
                });
            }
        }
        let rebuilds = d.actions.len();
        let later = candidates.iter().filter(|(_, now)| !now).count();
        if let (Some(min), true) = (min_ratio, later > 0) {
            d.reselect = Some(Action::op(
                <Reindex as OpParams>::KEY,
                &Work::Reselect {
                    min_ratio: min,
                    indexes: candidates.clone(),
                    tables: candidate_tables.clone(),
                },
            ));
            d.notes.push(format!(
                "re-evaluated at start: the bloat of its {} indexes is estimated again when the step starts, after the steps before it; \
                 only those over {} are rebuilt ({later} under it now)",
                candidates.len(),
                percent(min)
            ));
        }
        d.per_object = true;
        if !excluded.is_empty() {
            d.warnings.push(format!(
                "{} left out: exclusion-constraint indexes cannot be rebuilt CONCURRENTLY",
                excluded.join(", ")
            ));
        }
        d.no_op = d.actions.is_empty();
        let mut why = vec![];
        if let Some(min) = min_ratio {
            why.push(format!("{below} below {} bloat", percent(min)));
            if unknown > 0 {
                why.push(format!(
                    "{unknown} without an estimate (under 1 MiB, not btree, or never analyzed)"
                ));
            }
        }
        d.summary = format!(
            "rebuild {rebuilds} of {considered} indexes{}{}{}",
            if concurrently { " concurrently" } else { "" },
            if waste > 0 {
                format!(", ~{} of bloat to give back", human_bytes(waste))
            } else {
                String::new()
            },
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join(", "))
            }
        );
        d.estimate = Some(Estimate {
            rows: 0,
            bytes: waste,
            fidelity: Fidelity::Estimate,
            ..Estimate::NONE
        });
        d
    }

    /// Journaled leftovers of the engine's interrupted rebuilds: dropped
    /// first (`-` lines). Other INVALID indexes are reported, never
    /// touched. Returns the leftovers' `schema.name`s.
    fn plan_leftovers(&self, cx: &PlanCx<'_>, d: &mut Draft) -> Vec<String> {
        let mut ours: Vec<String> = vec![];
        if cx.backend != Backend::Postgres {
            return ours;
        }
        let (mut drops, mut records) = (vec![], vec![]);
        match cx.insp.fact::<Result<Vec<Leftover>, String>>(LEFTOVERS) {
            Some(Ok(open)) => {
                for l in open {
                    records.push(l.record);
                    for n in &l.invalid {
                        let full = format!("{}.{n}", l.schema);
                        d.object(
                            Marker::Remove,
                            "index",
                            full.clone(),
                            format!(
                                "INVALID leftover of dbmaint's interrupted rebuild of {}.{} (journal record {})",
                                l.schema, l.index, l.record
                            ),
                            serde_json::json!({"record": l.record}),
                        );
                        d.statements.push(format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {}",
                            quote_name(Some(&l.schema), n)
                        ));
                        drops.push((l.schema.clone(), n.clone()));
                        ours.push(full);
                    }
                }
            }
            Some(Err(e)) => d.errors.push(format!("reading the rebuild journal failed: {e}")),
            None => {}
        }
        if !records.is_empty() {
            d.actions.push(Action::op(
                <Reindex as OpParams>::KEY,
                &Work::DropLeftovers {
                    indexes: drops,
                    records,
                },
            ));
        }
        for t in &cx.insp.tables {
            for i in t.indexes.iter().filter(|i| !i.valid) {
                let full = format!("{}.{}", t.schema, i.name);
                if !ours.contains(&full) {
                    d.warnings.push(format!(
                        "index {full} on {} is INVALID and not a leftover of dbmaint's: left alone \
                         (drop it, or REINDEX INDEX CONCURRENTLY it, yourself)",
                        cx.display(t)
                    ));
                }
            }
        }
        ours
    }
}

/// `concurrently: false` on PostgreSQL blocks readers for the whole rebuild;
/// a plan must say it accepts that, or it gets a warning.
pub(crate) fn exclusive_unless_concurrent(
    c: &mut OpCheck<'_>,
    concurrently: &Option<crate::plan::decode::Sp<bool>>,
    allow: &Option<crate::plan::decode::Sp<bool>>,
    what: &str,
) {
    let Some(conc) = concurrently.as_ref().filter(|c| !c.value) else {
        return;
    };
    if c.backend == Some(Backend::Sqlite) || allow.as_ref().is_some_and(|a| a.value) {
        return;
    }
    let step = c.step;
    c.warn(
        "exclusive-lock",
        conc.pos,
        format!("`concurrently: false` in step `{step}` runs {what} under an ACCESS EXCLUSIVE lock: readers wait until it finishes"),
        "keep `concurrently: true`, or add `allow_exclusive_lock: true` to acknowledge the lock",
    );
}

/// An unfinished rebuild in the journal (`dbmaint.rebuilds`) and the
/// INVALID transient indexes it left on its table (none when it was
/// cleaned some other way: the record is then just closed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Leftover {
    pub record: i64,
    pub schema: String,
    pub table: String,
    pub index: String,
    pub invalid: Vec<String>,
}

/// Where the inspection keeps the unfinished rebuilds, read once for every
/// `reindex` step of a plan.
const LEFTOVERS: &str = "reindex#leftovers";

impl crate::run::operation::Operation for Reindex {
    /// The sizes of the indexes of the tables it may select (all, unless
    /// `tables` names them: index names alone do not say whose they are).
    fn measures(&self) -> crate::db::catalog::Measure {
        crate::db::catalog::Measure::of(&globs(&self.tables).into_iter().map(|g| g.0).collect::<Vec<_>>())
    }

    /// Index bloat decides what is rebuilt; the journal says which INVALID
    /// indexes are the engine's own leftovers (PostgreSQL).
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if conn.backend() != Backend::Postgres {
                return;
            }
            let bloat = crate::ops::bloat::read_shared(insp, conn, &self.bloat_spec())
                .await
                .map_err(|e| e.message);
            insp.keep(step.id.clone(), bloat);
            if !insp.facts.contains_key(LEFTOVERS) {
                let left = leftovers(conn).await.map_err(|e| e.message);
                insp.keep(LEFTOVERS, left);
            }
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        let mut d = Reindex::plan(self, cx);
        d.jobs = crate::ops::jobs(&self.jobs, cx.backend);
        if !d.no_op {
            d.throttle = crate::ops::throttle::Throttle::plan(&self.throttle, cx, &mut d, "objects");
        }
        d
    }
}

/// An index's bloat once `removed` of its table's `live` rows are deleted
/// and vacuumed: its size stays, the share of it holding entries shrinks
/// with the rows (`1 - (1 - now) × left / live`).
fn projected_ratio(now: f64, removed: u64, live: u64) -> f64 {
    let live = live.max(removed);
    if live == 0 {
        return now;
    }
    let left = (live - removed) as f64 / live as f64;
    (1.0 - (1.0 - now) * left).clamp(0.0, 1.0)
}

/// Runs `reindex` work: rebuilds, and drops of earlier leftovers.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Reindex as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            let w: Work = crate::run::operation::decode_work(self.key(), work)?;
            match &w {
                Work::Rebuild(r) => exec::rebuild(run, r).await,
                Work::DropLeftovers { indexes, records } => exec::drop_leftovers(run, indexes, records).await,
                Work::DropCopies { schema, table, index } => exec::drop_copies(run, schema, table, index).await,
                Work::Reselect {
                    min_ratio,
                    indexes,
                    tables,
                } => exec::reselect(run, *min_ratio, indexes, tables).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn non_concurrent_reindex_warns_unless_acknowledged() {
        assert_eq!(
            findings::<Reindex>("{concurrently: false}", Backend::Postgres),
            ["exclusive-lock"]
        );
        assert!(findings::<Reindex>("{concurrently: false, allow_exclusive_lock: true}", Backend::Postgres).is_empty());
        assert!(findings::<Reindex>("{min_bloat_ratio: 0.3}", Backend::Postgres).is_empty());
    }
}
