//! `throttle:` on a step that works in units — a retention's batches, the
//! tables of a vacuum or analyze, the indexes of a reindex: the plan's
//! words for the limits `run::throttle` waits on between them.

use super::{OpCheck, get};
use crate::plan::values::{Backend, Duration};
use crate::run::throttle::ThrottleLimits;

crate::params! {
    /// Waits between batches (retention) or objects (vacuum, analyze, reindex) while the server is busy (PostgreSQL), as gh-ost does.
    pub struct Throttle ("throttle parameters") {
        required {}
        optional {
            /// Wait while any replica's or subscriber's lag (`pg_stat_replication`: the worst of write, flush and replay lag) is over this.
            max_replica_lag: Duration,
            /// Wait while more client sessions than this run a statement (`pg_stat_activity`, dbmaint's own not counted).
            max_active_sessions: u64,
            /// Wait while more sessions than this wait on a lock.
            max_lock_waiters: u64,
            /// How often the load is read: at most once per interval while it is fine, every interval while the step waits (default 1s).
            check_every: Duration,
        }
    }
}

/// `check_every` when the plan does not say.
const CHECK_EVERY_MS: u64 = 1000;

impl Throttle {
    /// Checks a step's `throttle` (named `key` in its parameters).
    pub fn check(field: &Option<crate::plan::decode::Sp<Throttle>>, c: &mut OpCheck<'_>) {
        let Some(t) = field else { return };
        c.not_on(field, "throttle", Backend::Sqlite);
        let v = &t.value;
        if v.max_replica_lag.is_none() && v.max_active_sessions.is_none() && v.max_lock_waiters.is_none() {
            c.error(
                "missing-key",
                t.pos,
                "`throttle` sets no limit: it would never wait".to_string(),
                "set `max_replica_lag`, `max_active_sessions` or `max_lock_waiters`",
            );
        }
        if let Some(e) = &v.check_every
            && (e.value.0.is_zero() || e.value.0 > std::time::Duration::from_secs(60))
        {
            c.error(
                "out-of-range",
                e.pos,
                format!("`check_every` is {}, outside 1ms..=60s", e.value),
                "the load is read between batches: every second (the default) suits most servers",
            );
        }
    }

    /// Plans a step's throttle (PostgreSQL): its line in the diff, the
    /// predefined role it needs, the limits the execution plan carries.
    pub fn plan(
        field: &Option<crate::plan::decode::Sp<Throttle>>,
        cx: &crate::run::planner::PlanCx<'_>,
        d: &mut crate::run::planner::Draft,
        units: &str,
    ) -> Option<ThrottleLimits> {
        let t = get(field).filter(|_| cx.backend == Backend::Postgres)?.limits();
        d.notes.push(format!("throttle: {}", t.describe(units)));
        d.privileges.extend(cx.need_role(
            "pg_read_all_stats",
            |r| r.read_all_stats,
            "`throttle` reads every session's state and the replicas' lag",
        ));
        Some(t)
    }

    /// The limits as the execution plan carries them.
    pub fn limits(&self) -> ThrottleLimits {
        ThrottleLimits {
            max_replica_lag_ms: get(&self.max_replica_lag).map(|d| d.0.as_millis() as u64),
            max_active_sessions: get(&self.max_active_sessions),
            max_lock_waiters: get(&self.max_lock_waiters),
            check_every_ms: get(&self.check_every).map_or(CHECK_EVERY_MS, |d| d.0.as_millis() as u64),
        }
    }
}
