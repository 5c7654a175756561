//! `analyze`: `ANALYZE` of tables modified enough since their last analyze
//! (PostgreSQL), `ANALYZE` or `PRAGMA optimize` (SQLite).

use super::{BOTH, OpCheck, OpParams, get, globs};
use crate::plan::values::{Backend, NameGlob, Ratio};
use crate::run::execplan::{Estimate, Marker, human_count};
use crate::run::planner::{Draft, PlanCx, percent};

crate::params! {
    /// Parameters of `analyze`.
    pub struct Analyze ("analyze parameters") {
        required {}
        optional {
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Tables to leave out (globs).
            exclude: Vec<NameGlob>,
            /// Analyze tables whose rows modified since the last analyze / live rows reach this ratio (PostgreSQL).
            min_mod_ratio: Ratio,
            /// SQLite: run `PRAGMA optimize` instead of a full `ANALYZE`.
            optimize: bool,
            /// PostgreSQL: analyze this many tables at once, each on its own session (as `vacuumdb --analyze-only -j`), at most the run's `--parallelism` (default 1).
            jobs: u64,
            /// PostgreSQL: before each table, wait while replicas lag or the server is busy: `{max_replica_lag: 10s, max_active_sessions: N, max_lock_waiters: N, check_every: 1s}`.
            throttle: crate::ops::throttle::Throttle,
        }
    }
}

impl OpParams for Analyze {
    const KEY: &'static str = "analyze";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.not_on(&self.optimize, "optimize", Backend::Postgres);
        c.not_on(&self.min_mod_ratio, "min_mod_ratio", Backend::Sqlite);
        super::check_jobs(&self.jobs, c);
        super::throttle::Throttle::check(&self.throttle, c);
    }
}

/// Default `min_mod_ratio`, as autovacuum's `autovacuum_analyze_scale_factor` (0.1).
pub const DEFAULT_MIN_MOD_RATIO: f64 = 0.1;

impl Analyze {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let mut d = Draft {
            marker: Some(Marker::Change),
            lock: "SHARE UPDATE EXCLUSIVE".into(),
            compensation: "nothing to undo: statistics are replaced whole".into(),
            ..Draft::default()
        };
        if cx.backend == Backend::Sqlite {
            let sql = if get(&self.optimize).unwrap_or(false) {
                "PRAGMA optimize"
            } else {
                "ANALYZE"
            };
            d.lock = "write lock on sqlite_stat1 while it runs".into();
            d.summary = format!("`{sql}` over {} tables", cx.insp.tables.len());
            d.statement("database".into(), sql.into());
            d.estimate = Some(Estimate::NONE);
            return d;
        }
        let min_ratio = get(&self.min_mod_ratio).map_or(DEFAULT_MIN_MOD_RATIO, |r| r.0);
        let mut considered = 0;
        for t in cx.select_tables(&globs(&self.tables), &globs(&self.exclude), &mut d) {
            considered += 1;
            // Rows that steps before this one delete count as modifications.
            let (removed, deleted_first) = cx.removed_upstream(&cx.quoted(t));
            let modified = t.mod_since_analyze + removed;
            let ratio = modified as f64 / t.live_tuples.max(1) as f64;
            let never = t.last_analyze.is_none() && t.last_autoanalyze.is_none() && t.live_tuples > 0;
            // Lost or reset statistics: analyze it (what ANALYZE is for).
            // `min_mod_ratio: 0` means every table.
            if ratio < min_ratio && !never && !t.stats_unknown && min_ratio > 0.0 {
                continue;
            }
            let sql = format!("ANALYZE {}", cx.quoted(t));
            d.object(
                Marker::Change,
                "table",
                cx.display(t),
                format!(
                    "{} rows modified since the last analyze ({} of {} live{}){}",
                    human_count(modified),
                    percent(ratio),
                    human_count(t.live_tuples),
                    deleted_first,
                    if never { ", never analyzed" } else { "" }
                ),
                serde_json::json!({"mod_since_analyze": modified, "live_tuples": t.live_tuples, "mod_ratio": ratio}),
            );
            d.privileges.extend(cx.need_owner(t));
            d.statement(cx.display(t), sql);
        }
        d.per_object = true;
        d.no_op = d.actions.is_empty();
        d.summary = if d.no_op {
            format!(
                "no table modified over {} since its last analyze ({considered} considered)",
                percent(min_ratio)
            )
        } else {
            format!("analyze {} of {considered} tables", d.actions.len())
        };
        d.estimate = Some(Estimate::NONE);
        d
    }
}

impl crate::run::operation::Operation for Analyze {
    /// The sizes of the tables it may select.
    fn measures(&self) -> crate::db::catalog::Measure {
        crate::db::catalog::Measure::of(&globs(&self.tables).into_iter().map(|g| g.0).collect::<Vec<_>>())
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        let mut d = Analyze::plan(self, cx);
        d.jobs = super::jobs(&self.jobs, cx.backend);
        if !d.no_op {
            d.throttle = crate::ops::throttle::Throttle::plan(&self.throttle, cx, &mut d, "objects");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn sqlite_only_option_warns_on_postgres() {
        assert_eq!(
            findings::<Analyze>("{optimize: true}", Backend::Postgres),
            ["ignored-param"]
        );
        assert!(findings::<Analyze>("{min_mod_ratio: 0.1}", Backend::Postgres).is_empty());
    }
}
