//! The commands' orchestration, between the command line and the stages:
//! `compute` (connect read-only, inspect, plan) for `plan diff` and
//! `plan apply`, and `apply` (lock, journal, execute, report). The command
//! line renders; this module decides nothing about what a step does.

pub mod collect;
pub mod events;
pub mod execplan;
pub mod executor;
pub mod exit;
pub mod fit;
pub mod inspect;
pub mod lanes;
pub mod operation;
pub mod phase;
pub mod planner;
pub mod steprun;
pub mod throttle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::db::applylock::{ApplyLock, LockError, hostname};
use crate::db::{Conn, DbError, RunRecord, SessionLimits, StepRecord, connect};
use crate::plan::Plan;
use crate::plan::graph::StepGraph;
use crate::plan::values::{Backend, Target};
use crate::run::collect::{Collector, JsonLog, Report, Reporter};
use crate::run::events::{Event, Status};
use crate::run::execplan::ExecutionPlan;
use crate::run::executor::{RunOptions, execute};
use crate::run::inspect::Inspection;
use crate::run::operation::Registry;
use crate::run::planner::PlanCx;

/// An error that ends a command, with its exit code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: crate::run::exit::ERROR,
            message: message.into(),
        }
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        Self::error(e.message)
    }
}

/// The plan's target (after `--target` and `DATABASE_URL`), or an error
/// saying how to name one.
pub fn target_of(plan: &Plan) -> Result<Target, Failure> {
    plan.target.clone().ok_or_else(|| {
        Failure::error(format!(
            "plan `{}` names no target: set `target:` in the plan, pass `--target URL`, or set DATABASE_URL",
            plan.name
        ))
    })
}

/// `limits.window`: apply refuses to start outside it; inside, the time
/// it closes (no new step or batch starts after it).
pub fn check_window(plan: &Plan, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Failure> {
    let Some(window) = &plan.limits.window else {
        return Ok(None);
    };
    let local = now.with_timezone(&plan.limits.tz.0);
    let minute = chrono::Timelike::hour(&local) as u16 * 60 + chrono::Timelike::minute(&local) as u16;
    if window.contains(minute) {
        let into_minute = chrono::Duration::seconds(chrono::Timelike::second(&local).into())
            + chrono::Duration::nanoseconds(chrono::Timelike::nanosecond(&local).into());
        Ok(Some(
            now - into_minute + chrono::Duration::minutes(window.minutes_left(minute).into()),
        ))
    } else {
        Err(Failure {
            code: crate::run::exit::LIMITS,
            message: format!(
                "outside the maintenance window {window} ({}; it is {} there): nothing was done; run again inside the window",
                plan.limits.tz.0,
                local.format("%H:%M")
            ),
        })
    }
}

/// The catalog, then what each step's operation counts in the same
/// snapshot (retention's eligible rows), in the caller's snapshot.
async fn inspect_in(
    conn: &mut Conn,
    plan: &Plan,
    ops: &dyn Registry,
    backend: Backend,
    now: DateTime<Utc>,
    digest: bool,
) -> Result<Inspection, DbError> {
    // Tables are measured on disk only where some step needs their sizes.
    let measure = plan
        .steps
        .values()
        .map(|step| ops.operation(step.op.as_ref()).measures())
        .reduce(crate::db::catalog::Measure::and)
        .unwrap_or_default();
    let mut insp = Inspection::new(conn.catalog(&measure).await?);
    for step in plan.steps.values() {
        let cx = PlanCx::new(plan, step, &insp, backend, now);
        let facts = ops.operation(step.op.as_ref()).probe(&cx, digest, conn).await?;
        for (key, fact) in facts {
            insp.facts.insert(key, fact);
        }
    }
    Ok(insp)
}

/// Inspects the target read-only and computes the execution plan; `ops`
/// are the operations (`dbmaint::ops::REGISTRY`).
pub async fn compute(
    plan: &Plan,
    graph: &StepGraph,
    target: &Target,
    now: DateTime<Utc>,
    digest: bool,
    ops: &dyn Registry,
) -> Result<ExecutionPlan, Failure> {
    let mut conn = connect(target, SessionLimits::READ_ONLY).await?;
    let mut identity = conn.identity(target).await?;
    identity.source = plan.target_origin.clone().unwrap_or_default();
    let backend = target.backend;
    conn.snapshot_begin().await?;
    let read = inspect_in(&mut conn, plan, ops, backend, now, digest).await;
    conn.snapshot_end().await;
    let mut insp = read.map_err(|e| match e.kind {
        crate::db::ErrorKind::LockTimeout => Failure::error(format!(
            "inspecting {} waited for a lock another session holds ({}); nothing was done: run again when that session is done",
            target.redacted(),
            e.message
        )),
        _ => Failure::from(e),
    })?;
    // What the read-only steps would report, on the same read-only session
    // (a `sql` dry_run that tries to write is refused by the server).
    for step in plan.steps.values() {
        ops.operation(step.op.as_ref()).read(step, &mut insp, &mut conn).await;
    }
    // The journal's history of this plan's steps: none is no expectation,
    // and a journal that cannot be read is no reason to refuse a diff.
    let history = conn.step_history(&plan.name).await.unwrap_or_default();
    conn.close().await;
    let plan_step = |step: &crate::plan::Step, cx: &PlanCx| ops.operation(step.op.as_ref()).plan(cx);
    let mut ep = crate::run::planner::execution_plan(plan, graph, &insp, target, now, &plan_step);
    crate::run::fit::apply_history(&mut ep, &history);
    ep.identity = Some(identity);
    Ok(ep)
}

/// How `apply` reports.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub only: Option<Vec<String>>,
    pub log_dir: Option<PathBuf>,
    /// When `limits.window` closes ([`check_window`]).
    pub window_closes: Option<DateTime<Utc>>,
}

impl ApplyOptions {
    /// How many of the plan's steps this run selects (`--step`), for a
    /// progress display's total.
    pub fn selected(&self, ep: &ExecutionPlan) -> usize {
        ep.steps
            .iter()
            .filter(|s| self.only.as_ref().is_none_or(|o| o.contains(&s.id)))
            .count()
    }
}

async fn lock(target: &Target) -> Result<Arc<ApplyLock>, Failure> {
    match ApplyLock::acquire(target).await {
        Ok(l) => Ok(Arc::new(l)),
        Err(LockError::Held(holder)) => Err(Failure {
            code: crate::run::exit::LOCKED,
            message: format!(
                "another apply holds the lock on {}: {holder}; nothing was done",
                target.redacted()
            ),
        }),
        Err(LockError::Failed(e)) => Err(Failure::error(format!("cannot take the apply lock: {e}"))),
    }
}

/// Applies a computed plan: lock, journal, execute, report. The report is
/// also written under `log_dir` with the JSON Lines event log.
/// `display` are the caller's listeners (progress bars or log lines); they
/// see every event after the run's own collector.
pub async fn apply(
    ep: &ExecutionPlan,
    target: &Target,
    opts: &ApplyOptions,
    display: Vec<Box<dyn Reporter>>,
    ops: &'static dyn Registry,
) -> Result<Report, Failure> {
    let started = Instant::now();
    // No new step or batch after max_runtime, nor after the window closes:
    // whichever comes first.
    let runtime_end = ep.max_runtime_ms.map(|ms| started + Duration::from_millis(ms));
    let window_end = opts
        .window_closes
        .map(|at| started + (at - Utc::now()).to_std().unwrap_or_default());
    let (deadline, deadline_why) = match (runtime_end, window_end) {
        (Some(r), Some(w)) if w < r => (Some(w), "the maintenance window closed"),
        (None, Some(w)) => (Some(w), "the maintenance window closed"),
        (r, _) => (r, "max_runtime spent"),
    };
    // A run that only reads (checks, stats, bloat: every selected step's
    // marker is `=`) takes no apply lock: a monitoring plan answers while
    // a maintenance run holds it, and never delays one.
    let reads_only = ep
        .steps
        .iter()
        .filter(|s| opts.only.as_ref().is_none_or(|o| o.contains(&s.id)))
        .all(|s| s.marker == crate::run::execplan::Marker::Read);
    let guard = if reads_only { None } else { Some(lock(target).await?) };
    // SQLite has one writer at a time: the journal waits for it as long as
    // the plan lets its steps wait (lock_timeout × tries), not a constant.
    let journal_wait = match target.backend {
        Backend::Postgres => Duration::from_secs(5),
        Backend::Sqlite => Duration::from_millis(
            ep.steps
                .iter()
                .map(|s| s.lock_timeout_ms.saturating_mul(s.retries + 1))
                .max()
                .unwrap_or(5000),
        ),
    };
    let journal_limits = SessionLimits {
        lock_timeout: journal_wait,
        statement_timeout: Duration::from_secs(60),
        read_only: false,
    };
    let mut journal = connect(target, journal_limits).await?;
    journal.journal_setup().await.map_err(|e| {
        Failure::error(match e.kind {
            crate::db::ErrorKind::LockTimeout => format!(
                "cannot create the journal: another connection held a lock on the database for longer than {} ms \
                 (the plan's lock_timeout × tries); nothing was done: run again when it is done",
                journal_wait.as_millis()
            ),
            _ => format!("cannot create the journal: {}", e.message),
        })
    })?;
    // We hold the lock, so a run still `running` in the journal is one whose
    // process died (kill -9, lost host): close it so history tells the truth.
    // (A reading run without the lock cannot know that: it leaves them.)
    let interrupted = match &guard {
        Some(_) => journal.journal_close_interrupted().await?,
        None => vec![],
    };
    for (id, rows) in interrupted {
        eprintln!(
            "note: run {id} did not finish (its process was killed or lost its connection); \
             marked `interrupted` in the journal; its {rows} committed rows stay done and this run continues the work"
        );
    }
    let run_id = journal
        .journal_run_started(&RunRecord {
            plan: ep.plan.clone(),
            plan_hash: ep.hash.clone(),
            env: ep.env.clone(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            host: hostname(),
        })
        .await?;

    let mut reporters: Vec<Box<dyn Reporter>> = vec![];
    let mut log_path = None;
    if let Some(dir) = &opts.log_dir {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let path = dir.join(format!("{}-run{run_id}-{stamp}.jsonl", ep.plan));
        match JsonLog::create(&path) {
            Ok(log) => {
                reporters.push(Box::new(log));
                log_path = Some(path);
            }
            Err(e) => eprintln!("warning: cannot write the event log `{}`: {e}", path.display()),
        }
    }
    reporters.extend(display);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let collector = Collector::new(ep);
    let consumer = tokio::spawn(async move {
        let mut collector = collector;
        let mut journal_errors = vec![];
        while let Some(e) = rx.recv().await {
            collector.event(&e);
            for r in reporters.iter_mut() {
                r.event(&e);
            }
            if let Some(rec) = step_record(&e)
                && let Err(err) = journal.journal_step(run_id, &rec).await
            {
                journal_errors.push(err.message);
            }
        }
        (collector, journal, journal_errors)
    });

    let _ = tx.send(Event::RunStarted {
        run_id,
        plan: ep.plan.clone(),
        hash: ep.hash.clone(),
        steps: ep.steps.len(),
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let run_opts = RunOptions {
        parallelism: opts.parallelism,
        only: opts.only.clone(),
        deadline,
        deadline_why,
        stop,
        run_id,
        lock: guard.clone(),
        ops,
    };
    let outcome = execute(ep, target, &run_opts, tx.clone()).await;
    // The run's options hold a clone of the lock guard: dropped here, so
    // the guard below is the last one and `release` runs (it closes the
    // lock session and removes SQLite's lock note, which were otherwise
    // left to the process's exit — the note for good).
    drop(run_opts);
    signals.abort();
    if outcome.lock_lost {
        eprintln!(
            "error: the apply lock on {} was lost during the run (its session was ended); no step or batch started after that, \
             the running ones finished; the journal marks this run `lock lost`",
            target.redacted()
        );
    }
    let exit_code = outcome.exit_code();
    let _ = tx.send(Event::RunFinished {
        run_id,
        status: outcome.status().to_string(),
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    drop(tx);
    let (collector, mut journal, journal_errors) = consumer
        .await
        .map_err(|e| Failure::error(format!("internal error in the reporters: {e}")))?;
    if let Err(e) = journal.journal_run_finished(run_id, outcome.status(), exit_code).await {
        eprintln!("warning: could not close run {run_id} in the journal: {}", e.message);
    }
    for e in journal_errors {
        eprintln!("warning: journal write failed: {e}");
    }
    journal.close().await;
    match guard.map(Arc::try_unwrap) {
        Some(Ok(guard)) => guard.release().await,
        // Another clone still alive would keep the lock past the run's
        // report; it is released when the process ends.
        Some(Err(_)) => eprintln!("warning: the apply lock is released only when dbmaint exits"),
        None => {}
    }
    let report = collector.finish();
    if let Some(path) = log_path {
        let report_path = path.with_extension("report.json");
        let _ = std::fs::write(
            &report_path,
            serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        );
    }
    Ok(report)
}

/// First SIGINT/SIGTERM: no new step or batch starts; the running batches
/// and statements finish, the run is reported and journaled, exit 130.
/// Second: exit at once — as safe as a kill (open transactions roll back,
/// `pg_dump` dies with us, the next apply marks the run interrupted).
async fn stop_on_signals(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n > 0 {
            eprintln!("dbmaint: second signal, exiting now; the next apply will mark this run interrupted");
            std::process::exit(crate::run::exit::INTERRUPTED);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "dbmaint: stopping: running batches and statements finish, nothing new starts (signal again to exit at once)"
        );
    }
}

/// The journal row an event implies, if any.
fn step_record(e: &Event) -> Option<StepRecord> {
    match e {
        Event::StepFinished { result } | Event::StepFailed { result } | Event::StepDeferred { result } => {
            Some(StepRecord {
                step: result.step.clone(),
                op: result.op.clone(),
                status: result.status.as_str().into(),
                started_at: result.started_at.clone(),
                finished_at: result.finished_at.clone(),
                rows: result.rows,
                bytes: result.bytes,
                statements: result.statements,
                error: result
                    .error
                    .clone()
                    .or(result.deferred.clone())
                    .map(|m| crate::db::one_line(&m)),
                rolled_back: result.rolled_back.clone().or(result.cleanup_failed.clone()),
            })
        }
        // Written at the start so a killed run leaves a `running` row that
        // the next apply marks `interrupted` (with its committed batches).
        Event::StepStarted { step, op, .. } => Some(StepRecord {
            step: step.clone(),
            op: op.clone(),
            status: "running".into(),
            started_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ..StepRecord::default()
        }),
        Event::StepSkipped { step, op, reason } => Some(StepRecord {
            step: step.clone(),
            op: op.clone(),
            status: Status::Skipped.as_str().into(),
            error: Some(reason.clone()),
            ..StepRecord::default()
        }),
        _ => None,
    }
}

/// How a database drifted from a saved plan.
#[derive(Debug, Default)]
pub struct Drift {
    /// The plan itself no longer holds: never applied.
    pub hard: Vec<String>,
    /// Retention steps would take other rows than were reviewed: applied
    /// only with `--accept-drift`, and said in the report.
    pub rows: Vec<String>,
}

/// Compares a saved plan with the same plan computed now (at the saved
/// reference time): a retention step would now take more rows or other
/// rows than were reviewed, or an object a step names is gone or changed.
pub fn drift(saved: &ExecutionPlan, fresh: &ExecutionPlan, ops: &dyn Registry) -> Drift {
    let mut problems = vec![];
    let mut rows = vec![];
    if saved.hash != fresh.hash {
        problems.push("the plan file changed since the plan was saved".to_string());
    }
    for s in &saved.steps {
        let Some(f) = fresh.step(&s.id) else {
            problems.push(format!("step `{}` is no longer in the plan", s.id));
            continue;
        };
        if !f.errors.is_empty() && s.errors.is_empty() {
            problems.push(format!("step `{}` can no longer run: {}", s.id, f.errors.join("; ")));
        }
        let d = match ops.execution(&s.op) {
            Some(x) => x.drift(s, f),
            None => crate::run::operation::default_drift(s, f),
        };
        problems.extend(d.hard);
        rows.extend(d.rows);
    }
    Drift { hard: problems, rows }
}

/// The journal's last successful run, of `plan` when given: read-only,
/// without the apply lock (a monitoring probe must never wait for, or
/// block, a run).
pub async fn last_success(target: &Target, plan: Option<&str>) -> Result<Option<(i64, String, String)>, Failure> {
    let mut conn = connect(target, SessionLimits::READ_ONLY).await?;
    let last = conn.last_success(plan).await?;
    conn.close().await;
    Ok(last)
}

/// Reads the journal.
pub async fn history(
    target: &Target,
    origin: &str,
    filter: &crate::db::HistoryFilter,
) -> Result<serde_json::Value, Failure> {
    let mut conn = connect(target, SessionLimits::READ_ONLY).await?;
    let mut identity = conn.identity(target).await?;
    identity.source = origin.to_string();
    let mut v = conn.history(filter).await?;
    conn.close().await;
    if let Some(o) = v.as_object_mut() {
        o.insert("identity".into(), serde_json::to_value(&identity).unwrap_or_default());
    }
    Ok(v)
}
