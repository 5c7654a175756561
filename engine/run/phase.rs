//! What a long statement is doing, from the server's progress views
//! (issue 14 §4): while a step's VACUUM or REINDEX runs on its session, a
//! second session reads `pg_stat_progress_vacuum` or
//! `pg_stat_progress_create_index` for that session's pid every second
//! and emits the phase (`scanning heap 45%`) as an event the progress
//! bars and the periodic lines show. Best effort: a watcher that cannot
//! connect or read says nothing, and never touches the step.

use std::time::Duration;

use crate::db::query::query;
use crate::db::{Conn, SessionLimits, connect};
use crate::plan::values::Backend;
use crate::run::events::Event;
use crate::run::steprun::StepRun;

/// Which progress view to read.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Vacuum,
    CreateIndex,
}

impl Kind {
    /// (phase, percent of its blocks or tuples) of the backend `$1`.
    fn sql(self) -> &'static str {
        match self {
            Kind::Vacuum => {
                "SELECT phase, CASE WHEN heap_blks_total > 0 \
                   THEN (100.0 * CASE WHEN phase = 'scanning heap' THEN heap_blks_scanned ELSE heap_blks_vacuumed END \
                         / heap_blks_total)::float8 END \
                 FROM pg_stat_progress_vacuum WHERE pid = $1"
            }
            Kind::CreateIndex => {
                "SELECT phase, CASE WHEN blocks_total > 0 THEN (100.0 * blocks_done / blocks_total)::float8 \
                   WHEN tuples_total > 0 THEN (100.0 * tuples_done / tuples_total)::float8 END \
                 FROM pg_stat_progress_create_index WHERE pid = $1"
            }
        }
    }
}

/// A running watcher; it stops when dropped.
#[derive(Debug)]
pub struct Watch(Option<tokio::task::JoinHandle<()>>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `phase 45%`.
pub fn describe(phase: &str, percent: Option<f64>) -> String {
    match percent {
        Some(p) => format!("{phase} {p:.0}%"),
        None => phase.to_string(),
    }
}

/// Watches the step's own session (PostgreSQL) while `object`'s statement
/// runs on it; nothing on SQLite.
pub async fn watch(run: &mut StepRun<'_>, object: &str, kind: Kind) -> Watch {
    let Ok(c) = run.session().await else { return Watch(None) };
    if c.backend() != Backend::Postgres {
        return Watch(None);
    }
    let Ok(pid) = query("SELECT pg_backend_pid()").scalar::<i32>(c).await else {
        return Watch(None);
    };
    let (target, emit, step) = (run.target().clone(), run.emitter(), run.step.id.clone());
    let object = object.to_string();
    Watch(Some(tokio::spawn(async move {
        let limits = SessionLimits {
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(5),
            read_only: true,
        };
        let Ok(mut c) = connect(&target, limits).await else {
            return;
        };
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some((phase, pct)) = read(&mut c, kind, pid).await {
                let now = describe(&phase, pct);
                if now != last {
                    emit(Event::Phase {
                        step: step.clone(),
                        object: object.clone(),
                        phase: now.clone(),
                    });
                    last = now;
                }
            }
        }
    })))
}

async fn read(c: &mut Conn, kind: Kind, pid: i32) -> Option<(String, Option<f64>)> {
    let row = query(kind.sql()).bind(pid).fetch_optional(c).await.ok()??;
    Some((row.get::<String>(0).ok()?, row.try_get::<f64>(1)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_phase_with_a_share_says_it() {
        assert_eq!(super::describe("scanning heap", Some(45.4)), "scanning heap 45%");
        assert_eq!(super::describe("truncating heap", None), "truncating heap");
    }
}
