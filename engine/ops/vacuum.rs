//! `vacuum`: `VACUUM (ANALYZE, FREEZE)` per selected table on PostgreSQL,
//! `VACUUM` of the file on SQLite when its free-page ratio is high enough.

use super::{BOTH, OpCheck, OpParams, get, globs};
use crate::plan::values::{Backend, NameGlob, Ratio};
use crate::run::execplan::{Action, Estimate, Fidelity, Marker, human_bytes, human_count};
use crate::run::planner::{Draft, PlanCx, percent};

crate::keywords! {
    /// What `vacuum` does with a table whose statistics are unknown.
    pub enum OnUnknownStats ("`vacuum` or `skip`") {
        /// Vacuum it: cheap when it is clean (all-visible pages are skipped), right when it is not.
        Vacuum = "vacuum",
        /// Leave it, with a warning in the diff.
        Skip = "skip",
    }
}

crate::params! {
    /// Parameters of `vacuum`.
    pub struct Vacuum ("vacuum parameters") {
        required {}
        optional {
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Tables to leave out (globs).
            exclude: Vec<NameGlob>,
            /// Also ANALYZE the vacuumed tables (default true).
            analyze: bool,
            /// `VACUUM (FREEZE)` (PostgreSQL).
            freeze: bool,
            /// `VACUUM FULL`: rewrites the table under ACCESS EXCLUSIVE; needs `allow_exclusive_lock: true`.
            full: bool,
            /// Acknowledges that this step blocks readers and writers while it runs.
            allow_exclusive_lock: bool,
            /// Vacuum tables whose dead / (live + dead) tuples reach this ratio (SQLite: freelist / page count).
            min_dead_ratio: Ratio,
            /// Vacuum tables with at least this many dead tuples (PostgreSQL).
            min_dead_tuples: u64,
            /// Vacuum tables whose relfrozenxid age reaches this (PostgreSQL).
            min_xid_age: u64,
            /// A table whose statistics were lost or reset (its dead tuples are unknown): `vacuum` (default) or `skip` (PostgreSQL).
            on_unknown_stats: OnUnknownStats,
            /// PostgreSQL: vacuum this many tables at once, each on its own session (as `vacuumdb -j`), at most the run's `--parallelism` (default 1).
            jobs: u64,
            /// PostgreSQL: before each table, wait while replicas lag or the server is busy: `{max_replica_lag: 10s, max_active_sessions: N, max_lock_waiters: N, check_every: 1s}`.
            throttle: crate::ops::throttle::Throttle,
        }
    }
}

impl OpParams for Vacuum {
    const KEY: &'static str = "vacuum";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        super::check_jobs(&self.jobs, c);
        super::throttle::Throttle::check(&self.throttle, c);
        let allowed = self.allow_exclusive_lock.as_ref().is_some_and(|a| a.value);
        if let Some(full) = self.full.as_ref().filter(|f| f.value)
            && !allowed
        {
            let step = c.step;
            c.error(
                    "exclusive-lock",
                    full.pos,
                    format!("`full: true` in step `{step}` takes an ACCESS EXCLUSIVE lock: every reader and writer of each table waits until it is rewritten"),
                    "add `allow_exclusive_lock: true` to accept that, or drop `full` (plain VACUUM takes no such lock)",
                );
        }
        c.in_range(&self.min_xid_age, "min_xid_age", 0..=2_000_000_000);
        c.not_on(&self.freeze, "freeze", Backend::Sqlite);
        c.not_on(&self.min_dead_tuples, "min_dead_tuples", Backend::Sqlite);
        c.not_on(&self.min_xid_age, "min_xid_age", Backend::Sqlite);
        c.not_on(&self.on_unknown_stats, "on_unknown_stats", Backend::Sqlite);
        c.not_on(&self.tables, "tables", Backend::Sqlite);
        c.not_on(&self.exclude, "exclude", Backend::Sqlite);
    }
}

/// Default `min_dead_ratio` when the plan sets no threshold, as autovacuum's
/// `autovacuum_vacuum_scale_factor`.
pub const DEFAULT_MIN_DEAD_RATIO: f64 = 0.2;
/// Fewer dead tuples than this are not worth a VACUUM (autovacuum's base threshold).
pub const DEFAULT_MIN_DEAD_TUPLES: u64 = 50;

impl Vacuum {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        match cx.backend {
            Backend::Postgres => self.plan_pg(cx),
            Backend::Sqlite => self.plan_sqlite(cx),
        }
    }

    fn plan_pg(&self, cx: &PlanCx<'_>) -> Draft {
        let min_ratio = get(&self.min_dead_ratio).map_or(DEFAULT_MIN_DEAD_RATIO, |r| r.0);
        // `min_dead_ratio: 0` means every table (as vacuumdb): the dead-tuple
        // floor applies then only when the plan sets one.
        let min_dead = get(&self.min_dead_tuples).unwrap_or(if min_ratio == 0.0 { 0 } else { DEFAULT_MIN_DEAD_TUPLES });
        let min_xid = get(&self.min_xid_age);
        let skip_unknown = get(&self.on_unknown_stats) == Some(OnUnknownStats::Skip);
        let mut unknown_skipped = vec![];
        let full = get(&self.full).unwrap_or(false);
        let mut options = vec![];
        if full {
            options.push("FULL");
        }
        if get(&self.freeze).unwrap_or(false) {
            options.push("FREEZE");
        }
        if get(&self.analyze).unwrap_or(true) {
            options.push("ANALYZE");
        }
        let mut d = Draft {
            marker: Some(Marker::Change),
            lock: if full {
                "ACCESS EXCLUSIVE"
            } else {
                "SHARE UPDATE EXCLUSIVE"
            }
            .into(),
            compensation: "nothing to undo: an interrupted VACUUM only loses its own progress".into(),
            ..Draft::default()
        };
        let (mut dead, mut bytes, mut considered) = (0u64, 0u64, 0usize);
        let mut tables = cx.select_tables(&globs(&self.tables), &globs(&self.exclude), &mut d);
        // Freezing: the oldest first (flexible freeze), so a run the window
        // cuts short has done the tables nearest to wraparound.
        if get(&self.freeze).unwrap_or(false) || min_xid.is_some() {
            tables.sort_by_key(|t| std::cmp::Reverse(t.xid_age));
        }
        for t in tables {
            considered += 1;
            // Rows that steps before this one delete are dead tuples by the time it runs.
            let (removed, deleted_first) = cx.removed_upstream(&cx.quoted(t));
            // Lost or reset statistics: pgstattuple_approx's figures when
            // the inspection could measure them.
            let measured = t.stats_unknown.then_some(t.measured_tuples).flatten();
            let (live, dead_now) = measured.unwrap_or((t.live_tuples, t.dead_tuples));
            let projected_dead = dead_now + removed;
            let all = live + dead_now;
            let ratio = if all == 0 {
                0.0
            } else {
                projected_dead as f64 / all as f64
            };
            let by_dead = ratio >= min_ratio && projected_dead >= min_dead;
            let by_xid = min_xid.is_some_and(|x| t.xid_age >= x);
            // Lost or reset statistics say 0 dead tuples of a table that may
            // be full of them: unknown, so vacuumed unless the plan says skip.
            let unknown = t.stats_unknown && measured.is_none() && !by_dead;
            if unknown && skip_unknown {
                unknown_skipped.push(cx.display(t));
                continue;
            }
            if !(by_dead || by_xid || unknown) {
                continue;
            }
            let reclaim = (t.total_bytes as f64 * ratio.min(1.0)) as u64;
            dead += projected_dead;
            bytes += reclaim;
            let sql = if options.is_empty() {
                format!("VACUUM {}", cx.quoted(t))
            } else {
                format!("VACUUM ({}) {}", options.join(", "), cx.quoted(t))
            };
            d.object(
                Marker::Change,
                "table",
                cx.display(t),
                if unknown {
                    format!(
                        "dead tuples unknown: its statistics were lost or reset since it was last vacuumed or analyzed \
                         (crash, failover, clone, pg_upgrade, pg_stat_reset), {}, xid age {}; vacuumed to be safe \
                         (`on_unknown_stats: skip` leaves it)",
                        human_bytes(t.total_bytes),
                        human_count(t.xid_age)
                    )
                } else {
                    format!(
                        "dead {} ({} of {} tuples{}{}), {}, xid age {}{}",
                        percent(ratio),
                        human_count(projected_dead),
                        human_count(all),
                        deleted_first,
                        if measured.is_some() {
                            ", measured by pgstattuple_approx: the statistics were lost or reset"
                        } else {
                            ""
                        },
                        human_bytes(t.total_bytes),
                        human_count(t.xid_age),
                        if by_xid && !by_dead { " (wraparound)" } else { "" }
                    )
                },
                serde_json::json!({
                    "dead_ratio": (!unknown).then(|| if all == 0 { 0.0 } else { dead_now as f64 / all as f64 }), "dead_tuples": dead_now, "live_tuples": live,
                    "measured_by": measured.map(|_| "pgstattuple_approx"),
                    "bytes": t.total_bytes, "xid_age": t.xid_age, "reclaimable_bytes": reclaim,
                    "stats_unknown": unknown,
                }),
            );
            d.privileges.extend(cx.need_owner(t));
            d.statements.push(sql.clone());
            d.actions.push(
                Action::op(
                    <Vacuum as OpParams>::KEY,
                    &Work::Table(VacuumTable {
                        schema: t.schema.clone(),
                        name: t.name.clone(),
                        sql,
                    }),
                )
                .on_object(cx.display(t)),
            );
        }
        d.per_object = true;
        if !unknown_skipped.is_empty() {
            d.warnings.push(format!(
                "statistics unknown (lost or reset) for {}: their dead tuples cannot be told, and `on_unknown_stats: skip` leaves them",
                unknown_skipped.join(", ")
            ));
        }
        d.no_op = d.actions.is_empty();
        d.summary = if d.no_op {
            format!("no table over the thresholds ({considered} considered)")
        } else {
            format!(
                "vacuum {} of {considered} tables: {} dead tuples, ~{} reclaimable",
                d.actions.len(),
                human_count(dead),
                human_bytes(bytes)
            )
        };
        d.estimate = Some(Estimate {
            rows: dead,
            bytes,
            fidelity: Fidelity::Estimate,
            ..Estimate::NONE
        });
        d
    }

    fn plan_sqlite(&self, cx: &PlanCx<'_>) -> Draft {
        let Some(f) = &cx.insp.sqlite else {
            return Draft::error("no SQLite file figures in the inspection".into());
        };
        let min_ratio = get(&self.min_dead_ratio).map_or(DEFAULT_MIN_DEAD_RATIO, |r| r.0);
        let reclaim = f.freelist_count * f.page_size;
        let mut d = Draft {
            marker: Some(Marker::Change),
            lock: "EXCLUSIVE (the whole file, while VACUUM rewrites it)".into(),
            compensation: "nothing to undo: SQLite's VACUUM is atomic".into(),
            ..Draft::default()
        };
        let detail = format!(
            "free pages {} ({} of {} pages), {}",
            percent(f.free_ratio()),
            human_count(f.freelist_count),
            human_count(f.page_count),
            human_bytes(f.file_bytes)
        );
        let figures = serde_json::json!({
            "free_ratio": f.free_ratio(), "freelist_count": f.freelist_count, "page_count": f.page_count,
            "bytes": f.file_bytes, "reclaimable_bytes": reclaim,
        });
        let analyze = get(&self.analyze).unwrap_or(true);
        let removed: u64 = cx.upstream.iter().map(|u| u.rows).sum();
        if f.free_ratio() < min_ratio && removed == 0 {
            d.no_op = true;
            d.summary = format!(
                "free pages {} below {}: nothing to do",
                percent(f.free_ratio()),
                percent(min_ratio)
            );
            d.object(Marker::Read, "database", f.path.clone(), detail, figures);
            return d;
        }
        d.object(Marker::Change, "database", f.path.clone(), detail, figures);
        let db_dir = std::path::Path::new(&f.path)
            .parent()
            .map(|p| p.display().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".into());
        d.statements.push("VACUUM".into());
        if analyze {
            d.statements.push("ANALYZE".into());
        }
        let decided_later = f.free_ratio() < min_ratio;
        d.actions.push(Action::op(
            <Vacuum as OpParams>::KEY,
            &Work::Sqlite(SqliteVacuum {
                need_free_bytes: f.file_bytes,
                dirs: vec![db_dir],
                analyze,
                min_free_ratio: decided_later.then_some(min_ratio),
            }),
        ));
        d.summary = if decided_later {
            // SQLite keeps no per-table sizes, so the pages the deletes free
            // are known only after them: the step checks when it starts.
            format!(
                "vacuum the file if free pages reach {} when the step starts (now {}; steps before it remove {} rows)",
                percent(min_ratio),
                percent(f.free_ratio()),
                human_count(removed)
            )
        } else {
            format!("vacuum the file: {} reclaimable", human_bytes(reclaim))
        };
        d.estimate = Some(Estimate {
            rows: 0,
            bytes: reclaim,
            fidelity: Fidelity::Exact,
            ..Estimate::NONE
        });
        d
    }
}

impl crate::run::operation::Operation for Vacuum {
    /// The sizes of the tables it may select.
    fn measures(&self) -> crate::db::catalog::Measure {
        crate::db::catalog::Measure::of(&globs(&self.tables).into_iter().map(|g| g.0).collect::<Vec<_>>())
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        let mut d = Vacuum::plan(self, cx);
        d.jobs = super::jobs(&self.jobs, cx.backend);
        if !d.no_op {
            d.throttle = crate::ops::throttle::Throttle::plan(&self.throttle, cx, &mut d, "objects");
        }
        d
    }
}

/// What a `vacuum` action does.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Work {
    Table(VacuumTable),
    Sqlite(SqliteVacuum),
}

/// One PostgreSQL table vacuumed, measured before and after from the
/// server: its size (what `VACUUM FULL` or a truncated tail gives back)
/// and its dead tuples as the statistics count them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VacuumTable {
    pub schema: String,
    pub name: String,
    pub sql: String,
}

/// SQLite `VACUUM` of the whole file, after checking free disk space.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SqliteVacuum {
    /// Bytes that must be free in the database's directory (its rollback
    /// journal or WAL) and in SQLite's temporary directory (the copy
    /// VACUUM builds): about the file's size in each.
    pub need_free_bytes: u64,
    /// The database's directory (the temporary one is resolved when the
    /// step runs, from the environment SQLite will see).
    pub dirs: Vec<String>,
    pub analyze: bool,
    /// When set, the step first checks the free-page ratio and does
    /// nothing below it (the pages upstream deletes free are known only then).
    #[serde(default)]
    pub min_free_ratio: Option<f64>,
}

/// Runs a SQLite whole-file vacuum (PostgreSQL's are plain statements).
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Vacuum as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let w = match crate::run::operation::decode_work(self.key(), work)? {
                Work::Table(t) => return vacuum_table(run, &t).await,
                Work::Sqlite(w) => w,
            };
            let c = run.session().await?;
            if let Some(min) = w.min_free_ratio {
                let now = crate::db::sqlite::free_ratio(c)
                    .await
                    .map_err(|e| StepErr::failed(e.message))?;
                if now < min {
                    run.object_done(format!(
                        "database: free pages {:.1}% below {:.1}%, nothing to do",
                        now * 100.0,
                        min * 100.0
                    ));
                    return Ok(());
                }
            }
            let (temp, from) = sqlite_temp_dir();
            let mut places: Vec<(String, String)> = w
                .dirs
                .iter()
                .map(|d| (d.clone(), "the database's directory (its journal)".to_string()))
                .collect();
            places.push((temp, format!("SQLite's temporary directory ({from})")));
            for (d, what) in &places {
                let free = super::free_bytes(d)
                    .map_err(|e| StepErr::failed(format!("cannot read free space of `{d}`: {e}")))?;
                if free < w.need_free_bytes {
                    let fix = if what.starts_with("SQLite's") {
                        "free space there, or set SQLITE_TMPDIR to a larger directory"
                    } else {
                        "free space there"
                    };
                    return Err(StepErr::failed(format!(
                        "VACUUM needs about {} free in `{d}`, {what}, which has {}: {fix}; the database is unchanged",
                        human_bytes(w.need_free_bytes),
                        human_bytes(free)
                    )));
                }
            }
            let before = crate::db::sqlite::file_bytes(run.session().await?).await.unwrap_or(0);
            let mut statements = vec!["VACUUM"];
            if w.analyze {
                statements.push("ANALYZE");
            }
            for s in statements {
                run.exec(s)
                    .await
                    .map_err(|e| StepErr::failed(format!("`{s}`: {}", e.message)))?;
                run.result().statements += 1;
            }
            let after = crate::db::sqlite::file_bytes(run.session().await?)
                .await
                .unwrap_or(before);
            run.object_done("database");
            run.result().bytes += before.saturating_sub(after);
            Ok(())
        })
    }
}

/// A table's total size and dead tuples, as the server has them now.
async fn measure(c: &mut crate::db::Conn, regclass: &str) -> Result<(i64, i64), crate::db::DbError> {
    crate::db::query::query(
        "SELECT pg_total_relation_size($1::regclass)::int8, pg_stat_get_dead_tuples($1::regclass)::int8",
    )
    .bind(regclass)
    .fetch_one_as(c)
    .await
}

/// Vacuums one table and reports what the server says it did: bytes
/// given back (the size before minus after — all of `VACUUM FULL`'s
/// shrink) and dead tuples removed (the statistics before minus the ones
/// VACUUM reported it had to keep). When it kept dead tuples, the oldest
/// snapshot holding them back is named.
async fn vacuum_table(
    run: &mut crate::run::steprun::StepRun<'_>,
    t: &VacuumTable,
) -> Result<(), crate::run::steprun::StepErr> {
    use crate::run::steprun::StepErr;
    let quoted = crate::db::quote_name(Some(&t.schema), &t.name);
    let display = format!("{}.{}", t.schema, t.name);
    let before = measure(run.session().await?, &quoted).await.ok();
    let watch = crate::run::phase::watch(run, &display, crate::run::phase::Kind::Vacuum).await;
    let done = run.exec(&t.sql).await;
    drop(watch);
    done.map_err(|e| StepErr::failed(format!("`{display}`: {}", e.message)))?;
    run.result().statements += 1;
    let after = measure(run.session().await?, &quoted).await.ok();
    if let (Some((size0, dead0)), Some((size1, dead1))) = (before, after) {
        let reclaimed = (size0 - size1).max(0) as u64;
        let removed = (dead0 - dead1).max(0) as u64;
        let r = run.result();
        r.bytes += reclaimed;
        let total = r
            .measured
            .get("dead_tuples_removed")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        r.measured
            .insert("dead_tuples_removed".into(), serde_json::json!(total + removed));
        if dead1 > 0
            && let Some(holder) = oldest_snapshot(run.session().await?).await
        {
            run.warn(format!(
                "{display}: {} dead tuples could not be removed: {holder}",
                human_count(dead1 as u64)
            ));
        }
        run.object_done(format!(
            "{display}: {} dead tuples removed, {} given back",
            human_count(removed),
            human_bytes(reclaimed)
        ));
    } else {
        run.object_done(display);
    }
    Ok(())
}

/// Who holds back the xmin horizon: the session with the oldest snapshot,
/// a replication slot, or a prepared transaction.
async fn oldest_snapshot(c: &mut crate::db::Conn) -> Option<String> {
    let row: Option<(String, i32)> = crate::db::query::query(
        "SELECT * FROM ( \
           SELECT format('the oldest snapshot is held by pid %s (user %s, %s, transaction open %s s, xmin age %s): %s', \
                  pid, coalesce(usename::text, '?'), state, \
                  coalesce(extract(epoch FROM clock_timestamp() - xact_start)::int8, 0), age(backend_xmin), left(query, 80)), \
                  age(backend_xmin) \
           FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() \
             AND (datname = current_database() OR backend_type = 'walsender') \
           UNION ALL \
           SELECT format('replication slot %s holds xmin back (age %s)', slot_name, age(coalesce(xmin, catalog_xmin))), \
                  age(coalesce(xmin, catalog_xmin)) \
           FROM pg_replication_slots WHERE coalesce(xmin, catalog_xmin) IS NOT NULL \
             AND (database IS NULL OR database = current_database()) \
           UNION ALL \
           SELECT format('prepared transaction %s holds xmin back (age %s)', gid, age(transaction)), age(transaction) \
           FROM pg_prepared_xacts WHERE database = current_database() \
         ) h ORDER BY 2 DESC LIMIT 1",
    )
    .fetch_optional_as(c)
    .await
    .ok()
    .flatten();
    row.map(|(said, _)| crate::db::one_line(&said))
}

/// The directory SQLite writes its temporary files to, and why: on Unix
/// the first writable of `SQLITE_TMPDIR`, `TMPDIR`, `/var/tmp`,
/// `/usr/tmp`, `/tmp`, else the working directory (os_unix.c's order).
pub fn sqlite_temp_dir() -> (String, String) {
    let writable = |d: &str| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir())
            && nix::unistd::access(d, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).is_ok()
    };
    for var in ["SQLITE_TMPDIR", "TMPDIR"] {
        if let Ok(d) = std::env::var(var)
            && !d.is_empty()
            && writable(&d)
        {
            return (d, format!("from {var}"));
        }
    }
    for d in ["/var/tmp", "/usr/tmp", "/tmp"] {
        if writable(d) {
            return (d.into(), "SQLite's default".into());
        }
    }
    (
        ".".into(),
        "the working directory: no temporary directory is writable".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn full_needs_an_explicit_exclusive_lock() {
        assert_eq!(
            findings::<Vacuum>("{full: true}", Backend::Postgres),
            ["exclusive-lock"]
        );
        assert!(findings::<Vacuum>("{full: true, allow_exclusive_lock: true}", Backend::Postgres).is_empty());
    }

    #[test]
    fn ratio_outside_zero_one_is_rejected() {
        assert_eq!(
            findings::<Vacuum>("{min_dead_ratio: 20}", Backend::Postgres),
            ["invalid-value"]
        );
        assert!(findings::<Vacuum>("{min_dead_ratio: 0.2, tables: [audit_*]}", Backend::Postgres).is_empty());
    }
}
