//! `partitions`: retention for declaratively range-partitioned tables —
//! the partitions whose whole range is older than `older_than` are
//! detached and dropped (or detached and kept, optionally in an archive
//! schema), as pg_partman's retention does: instant, no bloat, no batches.
//!
//! Bounds are read from the catalog (`pg_get_expr(relpartbound)`), never
//! from partition names. The default partition is never touched; a
//! partition straddling the cutoff is reported and kept. `DETACH …
//! CONCURRENTLY` is used when the server has it (14+) and the parent has
//! no default partition; otherwise a plain `DETACH` under `lock_timeout`
//! and retries. A concurrent detach that was interrupted (a killed run)
//! leaves its partition "detach pending": the next run finishes it with
//! `FINALIZE` and its diff says so. Every action is a statement the diff
//! shows; PostgreSQL only.

pub mod pg;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::{OpCheck, OpParams, get};
use crate::plan::values::{Backend, Duration, Ident};
use crate::run::execplan::{Estimate, Fidelity, Marker, human_bytes, human_count};
use crate::run::planner::{Draft, PlanCx};
use pg::{Partition, Partitioned};

crate::keywords! {
    /// What happens to an old partition.
    pub enum PartitionAction ("`drop` or `detach`") {
        Drop = "drop",
        Detach = "detach",
    }
}

crate::params! {
    /// Where detached partitions are kept.
    pub struct PartitionArchive ("archive parameters") {
        required {
            /// Schema the detached partitions move to (created when missing).
            schema: String,
        }
        optional {}
    }
}

crate::params! {
    /// Parameters of `partitions`.
    pub struct Partitions ("partitions parameters") {
        required {
            /// The partitioned (parent) table.
            table: Ident,
            /// Partitions whose whole range is older than `now() - older_than` go.
            older_than: Duration,
        }
        optional {
            /// `drop` (default) or `detach` (keep the table, out of the parent).
            action: PartitionAction,
            /// Move detached partitions into another schema (needs `action: detach`).
            archive: PartitionArchive,
        }
    }
}

impl OpParams for Partitions {
    const KEY: &'static str = "partitions";
    const BACKENDS: &'static [Backend] = &[Backend::Postgres];

    fn check(&self, c: &mut OpCheck<'_>) {
        if let (Some(a), Some(PartitionAction::Drop)) = (&self.archive, get(&self.action)) {
            let step = c.step;
            c.error(
                "archive-with-drop",
                a.pos,
                format!("step `{step}` archives partitions it also drops"),
                "use `action: detach` to keep them in the archive schema, or remove `archive`",
            );
        }
    }
}

/// Where the inspection keeps what a step read.
fn fact_key(step: &str) -> String {
    format!("{step}#partitions")
}

/// The range bound of a partition, as far as retention cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Min,
    Max,
    At(DateTime<Utc>),
}

/// A partition's place against the cutoff.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Its whole range is older: it goes.
    Old,
    /// Its range holds the cutoff: it stays, reported.
    Straddles,
    /// Newer than the cutoff.
    Young,
    Default,
    /// A bound this operation cannot read (list/hash values, an odd type).
    Unreadable(String),
}

/// Reads `FOR VALUES FROM (a) TO (b)` of a one-column time key.
fn range_of(bound: &str) -> Result<(Edge, Edge), String> {
    let b = bound.trim();
    let rest = b
        .strip_prefix("FOR VALUES FROM (")
        .ok_or_else(|| format!("not a range bound: {b}"))?;
    let (from, to) = rest
        .split_once(") TO (")
        .ok_or_else(|| format!("not a range bound: {b}"))?;
    let to = to.strip_suffix(')').ok_or_else(|| format!("not a range bound: {b}"))?;
    Ok((edge(from)?, edge(to)?))
}

fn edge(v: &str) -> Result<Edge, String> {
    let v = v.trim();
    match v {
        "MINVALUE" => return Ok(Edge::Min),
        "MAXVALUE" => return Ok(Edge::Max),
        _ => {}
    }
    let text = v
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .ok_or_else(|| format!("a bound that is not a time: {v}"))?;
    // The session's TimeZone is UTC: timestamptz bounds print with +00.
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Ok(Edge::At(t.with_timezone(&Utc)));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Ok(Edge::At(t.and_utc()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Edge::At(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()));
    }
    Err(format!("a bound that is not a time: {v}"))
}

fn fate(p: &Partition, cutoff: DateTime<Utc>) -> Fate {
    if p.bound.trim() == "DEFAULT" {
        return Fate::Default;
    }
    match range_of(&p.bound) {
        Err(e) => Fate::Unreadable(e),
        Ok((_, Edge::At(to))) if to <= cutoff => Fate::Old,
        Ok((Edge::At(from), _)) if from >= cutoff => Fate::Young,
        Ok((Edge::Max, _)) => Fate::Young,
        Ok((_, Edge::Min)) => Fate::Old,
        Ok(_) => Fate::Straddles,
    }
}

impl Partitions {
    /// `drop` unless said otherwise; an `archive` keeps the partitions, so
    /// without an `action` it means `detach`.
    fn action(&self) -> PartitionAction {
        match (get(&self.action), &self.archive) {
            (Some(a), _) => a,
            (None, Some(_)) => PartitionAction::Detach,
            (None, None) => PartitionAction::Drop,
        }
    }

    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let step = &cx.step.id;
        if cx.backend != Backend::Postgres {
            return Draft::error(format!(
                "step `{step}`: SQLite has no partitions; `partitions` needs declarative partitioning (PostgreSQL)"
            ));
        }
        let name = &self.table.value.0;
        let Some(t) = cx.table(&self.table.value) else {
            return Draft::error(format!(
                "table `{name}` of step `{step}` does not exist in the target: fix `table`, or disable the step for this environment"
            ));
        };
        let parent = cx.quoted(t);
        let owner_need = cx.need_owner(t);
        let facts = match cx.insp.fact::<Result<Option<Partitioned>, String>>(&fact_key(step)) {
            Some(Ok(Some(p))) => p,
            Some(Ok(None)) => {
                return Draft::error(format!(
                    "`{name}` (step `{step}`) is not a partitioned table: `partitions` drops whole partitions; for rows use `retention`"
                ));
            }
            Some(Err(e)) => return Draft::error(format!("reading the partitions of `{name}` failed: {e}")),
            None => return Draft::error(format!("no partitions of `{name}` in the inspection (step `{step}`)")),
        };
        if facts.strategy != "r" || facts.key.len() != 1 || facts.key[0].0.is_empty() || !is_time_type(&facts.key[0].1)
        {
            let key: Vec<String> = facts.key.iter().map(|(c, ty)| format!("{c} {ty}")).collect();
            return Draft::error(format!(
                "`{name}` (step `{step}`) is partitioned by {} on ({}): `partitions` needs RANGE partitioning on one date or timestamp column",
                match facts.strategy.as_str() {
                    "l" => "LIST",
                    "h" => "HASH",
                    _ => "RANGE",
                },
                key.join(", ")
            ));
        }
        let cutoff = cx.now - chrono::Duration::from_std(self.older_than.value.0).unwrap_or_default();
        let action = self.action();
        let archive = self.archive.as_ref().map(|a| a.value.schema.value.clone());
        let has_default = facts.partitions.iter().any(|p| fate(p, cutoff) == Fate::Default);
        let concurrently = facts.concurrent_detach && !has_default;
        let mut d = Draft {
            marker: Some(if action == PartitionAction::Drop {
                Marker::Remove
            } else {
                Marker::Change
            }),
            transactional: false,
            lock: if concurrently {
                "SHARE UPDATE EXCLUSIVE on the parent (DETACH … CONCURRENTLY), ACCESS EXCLUSIVE on each detached partition".into()
            } else {
                format!(
                    "ACCESS EXCLUSIVE on the parent for each DETACH, held only for the catalog change, under lock_timeout ({})",
                    if has_default {
                        "a default partition rules out CONCURRENTLY"
                    } else {
                        "this server has no DETACH … CONCURRENTLY"
                    }
                )
            },
            compensation: "each partition is its own statements: a failure leaves those already done done and the rest attached; \
                           an interrupted DETACH … CONCURRENTLY leaves its partition `detach pending`, which the next run finishes (FINALIZE)"
                .into(),
            ..Draft::default()
        };
        if let Some(s) = &archive
            && !facts.archive_schema_exists
        {
            d.statement(
                format!("schema {s}"),
                format!("CREATE SCHEMA IF NOT EXISTS {}", crate::db::quote_ident(s)),
            );
        }
        let (mut rows, mut bytes, mut gone) = (0u64, 0u64, 0usize);
        for p in &facts.partitions {
            let full = format!("{}.{}", p.schema, p.name);
            let quoted = crate::db::quote_name(Some(&p.schema), &p.name);
            let figures = format!("{}, ~{} rows", human_bytes(p.bytes), human_count(p.rows));
            let json = serde_json::json!({"bound": p.bound, "rows": p.rows, "bytes": p.bytes, "detach_pending": p.detach_pending});
            match fate(p, cutoff) {
                Fate::Old => {
                    if let Some(s) = &archive
                        && p.taken_in_archive
                    {
                        d.errors.push(format!(
                            "partition `{full}` cannot move to schema `{s}`: a table `{}` is already there",
                            p.name
                        ));
                        continue;
                    }
                    let marker = if action == PartitionAction::Drop {
                        Marker::Remove
                    } else {
                        Marker::Change
                    };
                    let what = match (action, &archive) {
                        (PartitionAction::Drop, _) => "detach and drop".to_string(),
                        (PartitionAction::Detach, Some(s)) => format!("detach, move to schema {s}"),
                        (PartitionAction::Detach, None) => "detach (kept as a table)".to_string(),
                    };
                    let pending = if p.detach_pending {
                        "; a DETACH … CONCURRENTLY of it was interrupted: FINALIZE finishes it first"
                    } else {
                        ""
                    };
                    d.object(
                        marker,
                        "partition",
                        full.clone(),
                        format!("{}: {figures}; {what}{pending}", p.bound),
                        json,
                    );
                    if p.detach_pending {
                        d.statement(
                            full.clone(),
                            format!("ALTER TABLE {parent} DETACH PARTITION {quoted} FINALIZE"),
                        );
                    } else if concurrently {
                        // Run as the operation's own work: a retry after it
                        // gave up in its second phase must FINALIZE.
                        let sql = format!("ALTER TABLE {parent} DETACH PARTITION {quoted} CONCURRENTLY");
                        d.statements.push(sql.clone());
                        d.actions.push(crate::run::execplan::Action::op(
                            <Partitions as OpParams>::KEY,
                            &Detach {
                                partition: quoted.clone(),
                                sql,
                                finalize: format!("ALTER TABLE {parent} DETACH PARTITION {quoted} FINALIZE"),
                            },
                        ));
                    } else {
                        d.statement(full.clone(), format!("ALTER TABLE {parent} DETACH PARTITION {quoted}"));
                    }
                    match (action, &archive) {
                        (PartitionAction::Drop, _) => d.statement(full.clone(), format!("DROP TABLE {quoted}")),
                        (PartitionAction::Detach, Some(s)) => d.statement(
                            full.clone(),
                            format!("ALTER TABLE {quoted} SET SCHEMA {}", crate::db::quote_ident(s)),
                        ),
                        (PartitionAction::Detach, None) => {}
                    }
                    rows += p.rows;
                    bytes += p.bytes;
                    gone += 1;
                }
                Fate::Straddles => d.object(
                    Marker::Read,
                    "partition",
                    full,
                    format!(
                        "{}: {figures}; holds the cutoff {}: kept",
                        p.bound,
                        cutoff.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    json,
                ),
                Fate::Default => d.object(
                    Marker::Read,
                    "partition",
                    full,
                    format!("DEFAULT: {figures}; the default partition is never touched"),
                    json,
                ),
                Fate::Unreadable(e) => d.warnings.push(format!("partition `{full}` is left alone: {e}")),
                Fate::Young => {}
            }
        }
        let kept = facts.partitions.len() - gone;
        d.summary = format!(
            "{} {gone} of {} partitions of `{name}` whose range ends before {} (~{} rows, {}); {kept} kept",
            match (action, &archive) {
                (PartitionAction::Drop, _) => "drop".to_string(),
                (PartitionAction::Detach, Some(s)) => format!("detach into schema {s}"),
                (PartitionAction::Detach, None) => "detach".to_string(),
            },
            facts.partitions.len(),
            cutoff.format("%Y-%m-%d %H:%M:%S UTC"),
            human_count(rows),
            human_bytes(bytes),
        );
        if !d.actions.is_empty() {
            d.privileges.extend(owner_need);
        }
        d.no_op = d.actions.is_empty();
        d.estimate = Some(Estimate {
            rows,
            bytes,
            fidelity: Fidelity::Estimate,
            ..Estimate::NONE
        });
        if action == PartitionAction::Drop && gone > 0 && !backed_up_before(cx) {
            d.warnings.push(
                "no backup step runs before this one: dropped partitions are gone for good; \
                 add a `backup` step and `needs: [it]` (or `action: detach` to keep them)"
                    .into(),
            );
        }
        d
    }
}

/// Some step this one needs (directly or not) is a backup.
fn backed_up_before(cx: &PlanCx<'_>) -> bool {
    crate::run::planner::ancestors(cx.plan, &cx.step.id)
        .iter()
        .filter_map(|id| cx.plan.steps.get(id))
        .any(|s| s.op.key() == "backup")
}

fn is_time_type(ty: &str) -> bool {
    ty == "date" || ty.starts_with("timestamp")
}

impl crate::run::operation::Operation for Partitions {
    /// The parent's partitions with their bounds, on the read-only session.
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
            let (schema, name) = self.table.value.parts();
            let Some(t) = insp.table(schema, name) else {
                return;
            };
            let parent = crate::db::quote_name(Some(&t.schema), &t.name);
            let archive = self.archive.as_ref().map(|a| a.value.schema.value.clone());
            let read = pg::read(conn, &parent, archive.as_deref()).await.map_err(|e| e.message);
            insp.keep(fact_key(&step.id), read);
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Partitions::plan(self, cx)
    }
}

/// One `DETACH … CONCURRENTLY`, with the `FINALIZE` that finishes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Detach {
    /// The partition, quoted.
    pub partition: String,
    pub sql: String,
    pub finalize: String,
}

/// Runs a concurrent detach under the step's lock timeout and retries.
/// Its first phase marks the partition *detach pending* and commits; its
/// second waits for older snapshots. When that wait gives up, the retry
/// cannot run the same statement again (the partition is pending): it
/// runs `FINALIZE`, which finishes the same detach.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Partitions as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            let w: Detach = crate::run::operation::decode_work(self.key(), work)?;
            let timeout = run.statement_timeout();
            let mut sql = w.sql.clone();
            let mut tries = 0;
            let done = loop {
                let r = match run.attempt(Some(timeout)).await {
                    Ok((c, _)) => c.execute(&sql).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if r.is_err()
                    && sql != w.finalize
                    && let Ok((c, _)) = run.attempt(None).await
                    && pg::detach_pending(c, &w.partition).await.unwrap_or(false)
                {
                    sql = w.finalize.clone();
                }
                if let Some(r) = run.retrying(&mut tries, r).await {
                    break r;
                }
            };
            done.map_err(|e| crate::run::steprun::StepErr::failed(format!("`{}`: {}", w.partition, e.message)))?;
            run.result().statements += 1;
            run.object_done(w.partition.clone());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(bound: &str) -> Partition {
        Partition {
            schema: "public".into(),
            name: "p".into(),
            bound: bound.into(),
            detach_pending: false,
            rows: 0,
            bytes: 0,
            taken_in_archive: false,
        }
    }

    #[test]
    fn bounds_decide_from_the_catalog_text() {
        let cutoff = DateTime::parse_from_rfc3339("2025-06-15T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let f = |b: &str| fate(&part(b), cutoff);
        assert_eq!(
            f("FOR VALUES FROM ('2025-05-01 00:00:00+00') TO ('2025-06-01 00:00:00+00')"),
            Fate::Old
        );
        assert_eq!(
            f("FOR VALUES FROM ('2025-06-01 00:00:00+00') TO ('2025-07-01 00:00:00+00')"),
            Fate::Straddles
        );
        assert_eq!(
            f("FOR VALUES FROM ('2025-07-01 00:00:00') TO ('2025-08-01 00:00:00')"),
            Fate::Young
        );
        assert_eq!(f("FOR VALUES FROM ('2025-01-01') TO ('2025-06-15')"), Fate::Old);
        assert_eq!(f("FOR VALUES FROM (MINVALUE) TO ('2024-01-01 00:00:00+00')"), Fate::Old);
        assert_eq!(
            f("FOR VALUES FROM ('2025-07-01 00:00:00+00') TO (MAXVALUE)"),
            Fate::Young
        );
        assert_eq!(f("FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"), Fate::Straddles);
        assert_eq!(f("DEFAULT"), Fate::Default);
        assert!(matches!(f("FOR VALUES IN ('a')"), Fate::Unreadable(_)));
        assert!(matches!(f("FOR VALUES FROM (1) TO (10)"), Fate::Unreadable(_)));
    }

    #[test]
    fn archive_needs_detach() {
        assert!(
            crate::ops::findings::<Partitions>(
                "{table: t, older_than: 30d, action: drop, archive: {schema: old}}",
                Backend::Postgres
            )
            .contains(&"archive-with-drop")
        );
        assert!(
            crate::ops::findings::<Partitions>(
                "{table: t, older_than: 30d, action: detach, archive: {schema: old}}",
                Backend::Postgres
            )
            .is_empty()
        );
    }
}
