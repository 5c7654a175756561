//! Throttling a step on the server's load, as gh-ost does for MySQL:
//! between batches (retention) or objects (vacuum, analyze, reindex: the
//! next table or index) the step reads the replicas' lag
//! (`pg_stat_replication`), the sessions running and the sessions waiting
//! on a lock (`pg_stat_activity`), and waits while any is over the plan's
//! limit. One query reads all three; it runs at most once per
//! `check_every` while the load is fine, and every `check_every` while the
//! step waits. The wait ends when the load falls back, or when the run may
//! start no new batch (a signal, `max_runtime`, the window): the step is then
//! deferred like any batch walk, and a rerun continues.
//!
//! A role that cannot read other sessions' rows (no `pg_monitor` /
//! `pg_read_all_stats`) sees them as `<insufficient privilege>` with no
//! state or lag: a throttle that cannot see the load would never wait, so
//! the step fails before its first batch and says which grant it needs.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::db::query::query;
use crate::db::{Conn, DbError};
use crate::run::events::Event;
use crate::run::steprun::{StepErr, StepRun};

/// The plan's `throttle:` limits, as the execution plan carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleLimits {
    /// Wait while any replica's (or subscriber's) lag is over this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_lag_ms: Option<u64>,
    /// Wait while more client sessions than this are running a statement
    /// (dbmaint's own sessions not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_sessions: Option<u64>,
    /// Wait while more sessions than this wait on a lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lock_waiters: Option<u64>,
    pub check_every_ms: u64,
}

/// The server's load, as one read of it saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Load {
    /// Connected replicas and subscribers (walsenders) whose figures the
    /// role can read.
    pub replicas: u64,
    /// The largest of their write, flush and replay lag (`None`: none
    /// connected, or all caught up and idle).
    pub replica_lag_ms: Option<u64>,
    /// Client sessions running a statement, dbmaint's own left out.
    pub active_sessions: u64,
    /// Sessions waiting on a lock.
    pub lock_waiters: u64,
    /// Walsenders and sessions the role may not read (their state and lag
    /// show as NULL to it).
    pub hidden: u64,
}

/// One statement for all three figures. The lag is the worst of the three
/// lags: a replica that stopped replaying (`pg_wal_replay_pause()`, a
/// conflict, a slow disk) shows a replay lag that keeps growing, since the
/// server interpolates a stuck position's lag from the WAL it sent after.
const LOAD_SQL: &str = "SELECT \
    (SELECT count(*) FROM pg_stat_replication WHERE state IS NOT NULL)::int8, \
    (SELECT (extract(epoch FROM max(greatest(write_lag, flush_lag, replay_lag))) * 1000)::int8 \
       FROM pg_stat_replication), \
    (SELECT count(*) FROM pg_stat_activity \
      WHERE backend_type = 'client backend' AND state = 'active' \
        AND pid <> pg_backend_pid() AND application_name NOT LIKE 'dbmaint%')::int8, \
    (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock')::int8, \
    ((SELECT count(*) FROM pg_stat_replication WHERE state IS NULL) \
     + (SELECT count(*) FROM pg_stat_activity WHERE query = '<insufficient privilege>'))::int8";

/// Reads the server's load (PostgreSQL).
pub async fn read_load(c: &mut Conn) -> Result<Load, DbError> {
    let row = query(LOAD_SQL).fetch_one(c).await?;
    let n = |i: usize| row.try_get::<i64>(i).unwrap_or(0).max(0) as u64;
    Ok(Load {
        replicas: n(0),
        replica_lag_ms: row.try_get::<i64>(1).map(|v| v.max(0) as u64),
        active_sessions: n(2),
        lock_waiters: n(3),
        hidden: n(4),
    })
}

impl ThrottleLimits {
    /// Why the step must wait under `load`, or `None` when it may go on.
    pub fn over(&self, load: &Load) -> Option<String> {
        let mut why = vec![];
        if let (Some(max), Some(lag)) = (self.max_replica_lag_ms, load.replica_lag_ms)
            && lag > max
        {
            why.push(format!("replica lag {} over {}", secs(lag), secs(max)));
        }
        if let Some(max) = self.max_active_sessions
            && load.active_sessions > max
        {
            why.push(format!("{} active sessions over {max}", load.active_sessions));
        }
        if let Some(max) = self.max_lock_waiters
            && load.lock_waiters > max
        {
            why.push(format!(
                "{} {} waiting on a lock over {max}",
                load.lock_waiters,
                if load.lock_waiters == 1 { "session" } else { "sessions" }
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// The limits as the diff and the docs say them; `units` is what the
    /// step waits between (`batches`, `objects`).
    pub fn describe(&self, units: &str) -> String {
        let mut parts = vec![];
        if let Some(m) = self.max_replica_lag_ms {
            parts.push(format!("replica lag over {}", secs(m)));
        }
        if let Some(m) = self.max_active_sessions {
            parts.push(format!("more than {m} active sessions"));
        }
        if let Some(m) = self.max_lock_waiters {
            parts.push(format!("more than {m} sessions waiting on a lock"));
        }
        format!(
            "waits between {units} while {} (checked every {})",
            parts.join(" or "),
            secs(self.check_every_ms)
        )
    }

    /// What the limits cannot see under `load`: a role without the right
    /// to read other sessions' state and the replicas' lag.
    pub fn blind(&self, load: &Load) -> Option<String> {
        (load.hidden > 0).then(|| {
            format!(
                "the throttle cannot see {} of the server's sessions and replicas: the role may not read their state \
                 or lag; grant it `pg_read_all_stats` (or `pg_monitor`, which holds it), or remove `throttle`",
                load.hidden
            )
        })
    }
}

/// Two reasons that differ only in their figures.
fn same_kind(a: &str, b: &str) -> bool {
    let words = |s: &str| -> String { s.chars().filter(|c| c.is_ascii_alphabetic() || *c == ' ').collect() };
    words(a) == words(b)
}

/// `850 ms`, `1.5 s`.
fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", (ms as f64 / 100.0).round() / 10.0)
    }
}

/// A step's throttle: when it last found the load fine, and how long it
/// has waited.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    /// What the step waits between: `batches` or `objects`.
    units: &'static str,
    checked_ok: Option<Instant>,
    waits: u64,
    /// Every reason a wait began with, once each.
    reasons: Vec<String>,
}

impl Throttle {
    /// Between a retention's batches.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self::between(limits, "batches")
    }

    /// Between the units of work `units` (`objects`: a vacuum's tables, a
    /// reindex's indexes).
    pub fn between(limits: ThrottleLimits, units: &'static str) -> Self {
        Self {
            limits,
            units,
            checked_ok: None,
            waits: 0,
            reasons: vec![],
        }
    }

    fn every(&self) -> Duration {
        Duration::from_millis(self.limits.check_every_ms.max(1))
    }

    /// Before a batch: returns once the load is within the limits (at once
    /// when it was found so less than `check_every` ago). Fails when the
    /// load cannot be read or seen; defers when the run may start no new
    /// batch while it waits.
    pub async fn wait(&mut self, run: &mut StepRun<'_>) -> Result<(), StepErr> {
        if self.checked_ok.is_some_and(|t| t.elapsed() < self.every()) {
            return Ok(());
        }
        let mut began: Option<Instant> = None;
        loop {
            let load = read_load(run.session().await?)
                .await
                .map_err(|e| StepErr::failed(format!("reading the server's load for `throttle`: {}", e.message)))?;
            run.result().statements += 1;
            if let Some(blind) = self.limits.blind(&load) {
                return Err(StepErr::failed(blind));
            }
            let Some(why) = self.limits.over(&load) else {
                if let Some(t) = began {
                    let waited = t.elapsed();
                    self.note(run, waited);
                    run.emit(Event::ThrottleLifted {
                        step: run.step.id.clone(),
                        waited_ms: waited.as_millis() as u64,
                    });
                }
                self.checked_ok = Some(Instant::now());
                return Ok(());
            };
            if began.is_none() {
                began = Some(Instant::now());
                self.waits += 1;
                // One reason of each kind (figures aside), so a long run's
                // many pauses keep the report to a line.
                if !self.reasons.iter().any(|r| same_kind(r, &why)) {
                    self.reasons.push(why.clone());
                }
                run.emit(Event::Throttled {
                    step: run.step.id.clone(),
                    reason: why.clone(),
                });
            }
            if run.expired().await {
                self.note(run, began.map(|t| t.elapsed()).unwrap_or_default());
                let (batches, rows) = (run.result().batches, run.result().rows);
                let done = if self.units == "batches" {
                    format!("after {batches} batches ({rows} rows)")
                } else {
                    "before its next object".to_string()
                };
                return Err(StepErr::deferred(format!(
                    "{} while throttled ({why}), {done}; a rerun continues",
                    run.why_stopped()
                )));
            }
            tokio::time::sleep(self.every()).await;
        }
    }

    /// Adds a wait to the step's figures (a step may walk several tables,
    /// each with its throttle: the step's total is their sum).
    fn note(&self, run: &mut StepRun<'_>, waited: Duration) {
        let r = run.result();
        r.throttled_ms += waited.as_millis() as u64;
        r.throttled = Some(format!(
            "waited {} before {} ({}: {})",
            secs(r.throttled_ms),
            self.units,
            crate::run::execplan::counted(self.waits, "pause", "pauses"),
            self.reasons.join("; ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            max_replica_lag_ms: Some(10_000),
            max_active_sessions: Some(20),
            max_lock_waiters: Some(0),
            check_every_ms: 1000,
        }
    }

    #[test]
    fn each_limit_is_over_only_past_its_value() {
        let l = limits();
        let calm = Load {
            replicas: 1,
            replica_lag_ms: Some(10_000),
            active_sessions: 20,
            lock_waiters: 0,
            hidden: 0,
        };
        assert_eq!(l.over(&calm), None, "at the limits is within them");
        let lagging = Load {
            replica_lag_ms: Some(10_001),
            ..calm.clone()
        };
        assert_eq!(l.over(&lagging).as_deref(), Some("replica lag 10 s over 10 s"));
        let busy = Load {
            active_sessions: 21,
            lock_waiters: 1,
            ..calm.clone()
        };
        assert_eq!(
            l.over(&busy).as_deref(),
            Some("21 active sessions over 20, 1 session waiting on a lock over 0")
        );
        // No replica, or an idle caught-up one: no lag to wait for.
        let none = Load {
            replica_lag_ms: None,
            ..calm.clone()
        };
        assert_eq!(l.over(&none), None);
    }

    #[test]
    fn an_unset_limit_never_waits() {
        let l = ThrottleLimits {
            max_replica_lag_ms: None,
            max_active_sessions: None,
            max_lock_waiters: Some(3),
            check_every_ms: 500,
        };
        let load = Load {
            replicas: 2,
            replica_lag_ms: Some(3_600_000),
            active_sessions: 500,
            lock_waiters: 3,
            hidden: 0,
        };
        assert_eq!(l.over(&load), None);
        assert_eq!(
            l.describe("batches"),
            "waits between batches while more than 3 sessions waiting on a lock (checked every 500 ms)"
        );
    }

    #[test]
    fn reasons_of_one_kind_differ_only_in_figures() {
        assert!(same_kind("replica lag 14.2 s over 10 s", "replica lag 31 s over 10 s"));
        assert!(!same_kind("replica lag 14 s over 10 s", "41 active sessions over 40"));
        assert!(!same_kind(
            "replica lag 14 s over 10 s",
            "replica lag 14 s over 10 s, 41 active sessions over 40"
        ));
    }

    #[test]
    fn hidden_sessions_make_the_throttle_blind() {
        let l = limits();
        assert!(l.blind(&Load::default()).is_none());
        let b = l
            .blind(&Load {
                hidden: 4,
                ..Load::default()
            })
            .expect("blind");
        assert!(b.contains("cannot see 4") && b.contains("pg_monitor"), "{b}");
    }
}
