//! The executor: walks an `ExecutionPlan` on tokio, independent steps
//! concurrently up to `parallelism`, each on its own connection, and speaks
//! only through [`Event`]s. It knows steps and their actions, not
//! operations: what to run was decided by the planner.
//!
//! Rules it keeps: a lock timeout is retried with backoff up to the step's
//! `retries`, then the step fails (never a last unbounded wait); once
//! `max_runtime` is spent no new step or batch starts, and each statement's
//! timeout is capped at the time left plus [`GRACE`]; a failed step marks
//! its dependents skipped, and with `on_failure: abort` no new step starts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::db::{BatchJournal, Conn, DbError, ErrorKind, SessionLimits, connect};
use crate::plan::values::{Backend, Target};
use crate::run::events::{Event, Status, StepResult};
use crate::run::execplan::{Action, ExecutionPlan, PlannedStep, RetentionWork};

/// How far past `max_runtime` a running statement may go before its own
/// statement_timeout stops it.
pub const GRACE: Duration = Duration::from_secs(2);

/// First wait after a lock timeout; doubles per attempt, capped at 5 s.
const BACKOFF: Duration = Duration::from_millis(250);

/// What a run needs besides the plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub parallelism: usize,
    /// When set, only these steps run (cli `--step`).
    pub only: Option<Vec<String>>,
    /// No new step or batch starts after this.
    pub deadline: Option<Instant>,
    /// Set on SIGINT/SIGTERM: no new step or batch starts either.
    pub stop: Arc<AtomicBool>,
    pub run_id: i64,
    /// The apply lock: asked before every step and batch whether it is
    /// still held; a run that lost it starts nothing more.
    pub lock: Option<Arc<crate::db::applylock::ApplyLock>>,
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub failed: Vec<String>,
    pub deferred: Vec<String>,
    pub cleanup_failed: Vec<String>,
    /// Steps that ended `partial` (rows kept from their deletes).
    pub partial: Vec<String>,
    /// The deferrals came from a signal, not from `limits`.
    pub interrupted: bool,
    /// The apply lock was lost during the run: another apply may be running.
    pub lock_lost: bool,
}

impl RunOutcome {
    /// cli.md's exit codes: 5 cleanup failed, 1 a step failed, 3 limits.
    pub fn exit_code(&self) -> i32 {
        if !self.cleanup_failed.is_empty() {
            crate::run::exit::CLEANUP_FAILED
        } else if self.lock_lost {
            crate::run::exit::LOCKED
        } else if !self.failed.is_empty() || !self.partial.is_empty() {
            crate::run::exit::ERROR
        } else if !self.deferred.is_empty() && self.interrupted {
            crate::run::exit::INTERRUPTED
        } else if !self.deferred.is_empty() {
            crate::run::exit::LIMITS
        } else {
            crate::run::exit::OK
        }
    }

    pub fn status(&self) -> &'static str {
        match self.exit_code() {
            crate::run::exit::OK => "succeeded",
            crate::run::exit::LIMITS => "deferred",
            crate::run::exit::INTERRUPTED => "interrupted",
            crate::run::exit::LOCKED => "lock lost",
            crate::run::exit::ERROR if self.failed.is_empty() => "partial",
            _ => "failed",
        }
    }
}

/// Shared by every step task.
#[derive(Debug)]
struct Ctx {
    target: Target,
    events: UnboundedSender<Event>,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    run_id: i64,
    lock: Option<Arc<crate::db::applylock::ApplyLock>>,
}

impl Ctx {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// No new step or batch may start: a signal, `max_runtime`, or the
    /// apply lock is gone (asked of the lock's session every time).
    async fn expired(&self) -> bool {
        if self.stop.load(Ordering::SeqCst) || self.time_left().is_some_and(|t| t.is_zero()) {
            return true;
        }
        match &self.lock {
            Some(l) => !l.still_held().await,
            None => false,
        }
    }

    fn lock_lost(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.was_lost())
    }

    /// Why no new work starts, once [`Ctx::expired`].
    fn why_stopped(&self) -> &'static str {
        if self.lock_lost() {
            "the apply lock was lost (its session ended; another apply may be running)"
        } else if self.stop.load(Ordering::SeqCst) {
            "interrupted by a signal"
        } else {
            "max_runtime spent"
        }
    }

    /// The step's statement timeout, capped by the time left plus grace.
    fn statement_timeout(&self, step: &PlannedStep) -> Duration {
        let own = Duration::from_millis(step.statement_timeout_ms);
        match self.time_left() {
            Some(left) => own.min(left + GRACE),
            None => own,
        }
    }
}

/// Runs the plan; returns when every step finished, failed, was skipped or
/// deferred.
pub async fn execute(
    plan: &ExecutionPlan,
    target: &Target,
    opts: &RunOptions,
    events: UnboundedSender<Event>,
) -> RunOutcome {
    let ctx = Arc::new(Ctx {
        target: target.clone(),
        events,
        deadline: opts.deadline,
        stop: opts.stop.clone(),
        run_id: opts.run_id,
        lock: opts.lock.clone(),
    });
    let selected: Vec<&PlannedStep> = plan
        .steps
        .iter()
        .filter(|s| opts.only.as_ref().is_none_or(|only| only.contains(&s.id)))
        .collect();
    let in_run: HashSet<&str> = selected.iter().map(|s| s.id.as_str()).collect();
    let mut status: HashMap<String, Status> = HashMap::new();
    let mut pending: Vec<&PlannedStep> = selected.clone();
    let mut running: JoinSet<StepResult> = JoinSet::new();
    let mut tasks: HashMap<tokio::task::Id, &PlannedStep> = HashMap::new();
    let mut outcome = RunOutcome::default();
    let mut aborted: Option<String> = None;
    let parallelism = opts.parallelism.max(1);

    loop {
        // Settle what can be settled without running: skips and deferrals.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let mut i = 0;
            while i < pending.len() {
                let s = pending[i];
                let blocked =
                    s.needs
                        .iter()
                        .filter(|n| in_run.contains(n.as_str()))
                        .find_map(|n| match status.get(n) {
                            Some(Status::Succeeded | Status::Partial) | None => None,
                            Some(other) => Some((n.clone(), *other)),
                        });
                let reason = if let Some((n, st)) = &blocked {
                    Some(format!("`{n}` {}", st.as_str()))
                } else {
                    aborted
                        .as_ref()
                        .map(|a| format!("run aborted after `{a}` failed (on_failure: abort)"))
                };
                if let Some(reason) = reason {
                    let deferred_upstream = blocked.as_ref().is_some_and(|(_, st)| *st == Status::Deferred);
                    let st = if deferred_upstream {
                        Status::Deferred
                    } else {
                        Status::Skipped
                    };
                    status.insert(s.id.clone(), st);
                    if st == Status::Deferred {
                        outcome.deferred.push(s.id.clone());
                        ctx.emit(Event::StepDeferred {
                            result: empty_result(s, Status::Deferred, Some(format!("not started: {reason}"))),
                        });
                    } else {
                        ctx.emit(Event::StepSkipped {
                            step: s.id.clone(),
                            op: s.op.clone(),
                            reason,
                        });
                    }
                    pending.remove(i);
                    progressed = true;
                } else {
                    i += 1;
                }
            }
        }
        // Start ready steps while there is room.
        let mut i = 0;
        while running.len() < parallelism && i < pending.len() {
            let s = pending[i];
            let ready = s
                .needs
                .iter()
                .filter(|n| in_run.contains(n.as_str()))
                .all(|n| matches!(status.get(n), Some(Status::Succeeded | Status::Partial)));
            if !ready {
                i += 1;
                continue;
            }
            pending.remove(i);
            if ctx.expired().await {
                status.insert(s.id.clone(), Status::Deferred);
                outcome.deferred.push(s.id.clone());
                ctx.emit(Event::StepDeferred {
                    result: empty_result(s, Status::Deferred, Some(format!("not started: {}", ctx.why_stopped()))),
                });
                continue;
            }
            let step = s.clone();
            let ctx = ctx.clone();
            let handle = running.spawn(async move { run_step(&step, &ctx).await });
            tasks.insert(handle.id(), s);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let result = match joined {
            Ok((_, r)) => r,
            Err(e) => {
                // A panic inside a step task is that step's failure, not the run's end.
                let Some(s) = tasks.get(&e.id()) else { continue };
                let mut r = empty_result(s, Status::Failed, None);
                r.error = Some(format!(
                    "internal error: the step's task ended abnormally ({e}); please report it"
                ));
                r
            }
        };
        status.insert(result.step.clone(), result.status);
        if result.cleanup_failed.is_some() {
            outcome.cleanup_failed.push(result.step.clone());
        }
        match result.status {
            Status::Failed => {
                outcome.failed.push(result.step.clone());
                let continue_on = selected
                    .iter()
                    .find(|s| s.id == result.step)
                    .is_some_and(|s| s.on_failure_continue);
                if !continue_on && aborted.is_none() {
                    aborted = Some(result.step.clone());
                }
                ctx.emit(Event::StepFailed { result });
            }
            Status::Deferred => {
                outcome.deferred.push(result.step.clone());
                ctx.emit(Event::StepDeferred { result });
            }
            Status::Partial => {
                outcome.partial.push(result.step.clone());
                ctx.emit(Event::StepFinished { result });
            }
            _ => ctx.emit(Event::StepFinished { result }),
        }
    }
    outcome.interrupted = ctx.stop.load(Ordering::SeqCst);
    outcome.lock_lost = ctx.lock_lost();
    outcome
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn empty_result(s: &PlannedStep, status: Status, deferred: Option<String>) -> StepResult {
    StepResult {
        step: s.id.clone(),
        op: s.op.clone(),
        status,
        started_at: String::new(),
        finished_at: String::new(),
        duration_ms: 0,
        rows: 0,
        bytes: 0,
        statements: 0,
        batches: 0,
        retries: 0,
        error: None,
        rolled_back: None,
        cleanup_failed: None,
        deferred,
        partial: None,
        cascaded: vec![],
        findings: vec![],
        stats: None,
        bloat: None,
    }
}

/// What a step's actions accumulate.
struct Acc {
    r: StepResult,
    started: Instant,
    /// The session's statement_timeout as last set, to skip a round trip
    /// per batch when it has not moved.
    timeout_set: Option<Duration>,
    /// The last retention batch number the step used (journal key).
    batch_no: u64,
}

async fn run_step(step: &PlannedStep, ctx: &Ctx) -> StepResult {
    let units = step
        .actions
        .iter()
        .map(|a| match a {
            Action::Retention(w) => step.estimate.rows.div_ceil(w.batch_size.max(1)),
            _ => 1,
        })
        .sum();
    ctx.emit(Event::StepStarted {
        step: step.id.clone(),
        op: step.op.clone(),
        units,
        rows: step.estimate.rows,
    });
    let mut acc = Acc {
        r: empty_result(step, Status::Succeeded, None),
        started: Instant::now(),
        timeout_set: None,
        batch_no: 0,
    };
    acc.r.started_at = now_text();
    if !step.errors.is_empty() {
        acc.r.status = Status::Failed;
        acc.r.error = Some(step.errors.join("; "));
    } else if !step.no_op
        && let Err(e) = run_actions(step, ctx, &mut acc).await
    {
        {
            acc.r.status = if e.kind == StepErrKind::Deferred {
                Status::Deferred
            } else {
                Status::Failed
            };
            match e.kind {
                StepErrKind::Deferred => acc.r.deferred = Some(e.message),
                _ => acc.r.error = Some(e.message),
            }
        }
    }
    if acc.r.status == Status::Succeeded && acc.r.partial.is_some() {
        acc.r.status = Status::Partial;
    }
    if let Some(what) = &acc.r.rolled_back {
        ctx.emit(Event::RolledBack {
            step: step.id.clone(),
            what: what.clone(),
        });
    }
    acc.r.finished_at = now_text();
    acc.r.duration_ms = acc.started.elapsed().as_millis() as u64;
    acc.r
}

#[derive(Debug, PartialEq, Eq)]
enum StepErrKind {
    Failed,
    Deferred,
}

#[derive(Debug)]
struct StepErr {
    kind: StepErrKind,
    message: String,
}

impl StepErr {
    fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrKind::Failed,
            message: message.into(),
        }
    }
    fn deferred(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrKind::Deferred,
            message: message.into(),
        }
    }
}

/// A step's session limits.
fn session_limits(step: &PlannedStep, ctx: &Ctx) -> SessionLimits {
    SessionLimits {
        lock_timeout: Duration::from_millis(step.lock_timeout_ms),
        statement_timeout: ctx.statement_timeout(step),
        read_only: false,
    }
}

async fn open(step: &PlannedStep, ctx: &Ctx) -> Result<Conn, StepErr> {
    let limits = session_limits(step, ctx);
    connect(&ctx.target, limits)
        .await
        .map_err(|e| StepErr::failed(e.message))
}

async fn run_actions(step: &PlannedStep, ctx: &Ctx, acc: &mut Acc) -> Result<(), StepErr> {
    let mut conn: Option<Conn> = None;
    let total = step.actions.len() as u64;
    for (i, action) in step.actions.iter().enumerate() {
        if ctx.expired().await {
            return Err(StepErr::deferred(format!(
                "{}: {} of {total} actions not started",
                ctx.why_stopped(),
                total - i as u64
            )));
        }
        let t0 = Instant::now();
        match action {
            Action::Statement { object, sql } => {
                let c = session(&mut conn, step, ctx).await?;
                with_retries(step, ctx, acc, c, DbOp::Exec(sql, ctx.statement_timeout(step)))
                    .await
                    .map_err(|e| StepErr::failed(format!("`{object}`: {}", e.message)))?;
                acc.r.statements += 1;
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: object.clone(),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
            }
            Action::Check(spec) => {
                let c = read_session(&mut conn, step, ctx, acc).await?;
                let mut found = crate::ops::check::read(c, spec)
                    .await
                    .map_err(|e| StepErr::failed(format!("a check query failed: {}", e.message)))?;
                acc.r.statements += spec.checks.len() as u64;
                if let Some(act) = spec.act.filter(|_| !spec.targets.is_empty()) {
                    let done = crate::ops::check::signal_sessions(c, &spec.targets, act)
                        .await
                        .map_err(|e| StepErr::failed(format!("signalling long queries failed: {}", e.message)))?;
                    acc.r.statements += done.len() as u64;
                    for (pid, what) in done {
                        ctx.emit(Event::ObjectDone {
                            step: step.id.clone(),
                            object: format!("pid {pid}: {what}"),
                            done: i as u64 + 1,
                            duration_ms: t0.elapsed().as_millis() as u64,
                        });
                        match found.iter_mut().find(|f| f.object == format!("pid {pid}")) {
                            Some(f) => f.message = format!("{}; {what}", f.message),
                            None => found.push(crate::ops::check::spec::Finding {
                                check: "long_queries".into(),
                                severity: crate::ops::check::spec::Severity::Warning,
                                object: format!("pid {pid}"),
                                message: format!("listed by the diff; {what}"),
                                figures: serde_json::json!({"pid": pid}),
                            }),
                        }
                    }
                }
                let failing = spec
                    .fail_on
                    .map_or(0, |at| found.iter().filter(|f| f.severity >= at).count());
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: format!("{} checks, {} findings", spec.checks.len(), found.len()),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                acc.r.findings = found;
                if failing > 0 {
                    return Err(StepErr::failed(format!(
                        "{failing} findings at or above `fail_on: {}`",
                        spec.fail_on.map_or("", |s| s.as_str())
                    )));
                }
            }
            Action::Stats { top } => {
                let c = read_session(&mut conn, step, ctx, acc).await?;
                let report = crate::ops::stats::read(c, *top)
                    .await
                    .map_err(|e| StepErr::failed(format!("a stats query failed: {}", e.message)))?;
                acc.r.statements += 3;
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: format!("{} tables, {} indexes", report.tables.len(), report.indexes.len()),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                acc.r.stats = Some(report);
            }
            Action::Bloat { spec, min_waste_ratio } => {
                let c = read_session(&mut conn, step, ctx, acc).await?;
                let report = crate::ops::bloat::read(c, spec)
                    .await
                    .map_err(|e| StepErr::failed(format!("a bloat query failed: {}", e.message)))?;
                acc.r.statements += if spec.exact { 4 } else { 2 };
                let found = report.findings(*min_waste_ratio);
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: format!("{} relations, {} over the threshold", report.entries.len(), found.len()),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                acc.r.findings = found;
                acc.r.bloat = Some(report);
            }
            Action::Reindex(work) => {
                let c = session(&mut conn, step, ctx).await?;
                reindex(step, work, c, ctx, acc).await?;
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: format!("{}.{}", work.schema, work.index),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
            }
            Action::DropLeftovers { indexes, records } => {
                let c = session(&mut conn, step, ctx).await?;
                drop_leftovers(step, indexes, records, c, ctx, acc).await?;
            }
            Action::Sql {
                sql,
                transaction,
                statements,
            } => {
                let c = session(&mut conn, step, ctx).await?;
                let timeout = ctx.statement_timeout(step);
                if *transaction {
                    let result = match set_timeout(c, acc, timeout).await {
                        Ok(()) => with_retries(step, ctx, acc, c, DbOp::Transaction(std::slice::from_ref(sql))).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        acc.r.rolled_back = Some("the author SQL's transaction rolled back: none of it stayed".into());
                        return Err(StepErr::failed(format!("author SQL failed: {}", e.message)));
                    }
                    acc.r.statements += 1;
                } else {
                    // One call per statement: each commits on its own, as
                    // `transaction: false` promises.
                    let single = [sql.clone()];
                    let list: &[String] = if statements.is_empty() { &single } else { statements };
                    for (n, s) in list.iter().enumerate() {
                        if let Err(e) = with_retries(step, ctx, acc, c, DbOp::Exec(s, timeout)).await {
                            return Err(StepErr::failed(format!(
                                "author SQL failed at statement {} of {}: {}; {}",
                                n + 1,
                                list.len(),
                                e.message,
                                if n == 0 {
                                    "nothing ran before it".to_string()
                                } else {
                                    format!("statements 1–{n} ran and stay done (transaction: false)")
                                }
                            )));
                        }
                        acc.r.statements += 1;
                    }
                }
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: "author SQL".into(),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
            }
            Action::SqliteVacuum {
                need_free_bytes,
                dirs,
                analyze,
                min_free_ratio,
            } => {
                let c = session(&mut conn, step, ctx).await?;
                if let Some(min) = min_free_ratio {
                    let now = c.free_ratio().await.map_err(|e| StepErr::failed(e.message))?;
                    if now < *min {
                        ctx.emit(Event::ObjectDone {
                            step: step.id.clone(),
                            object: format!(
                                "database: free pages {:.1}% below {:.1}%, nothing to do",
                                now * 100.0,
                                min * 100.0
                            ),
                            done: i as u64 + 1,
                            duration_ms: t0.elapsed().as_millis() as u64,
                        });
                        continue;
                    }
                }
                for d in dirs {
                    let free = free_bytes(d).map_err(StepErr::failed)?;
                    if free < *need_free_bytes {
                        return Err(StepErr::failed(format!(
                            "VACUUM needs up to {} free in `{d}`, which has {}: free space, or point TMPDIR elsewhere",
                            crate::run::execplan::human_bytes(*need_free_bytes),
                            crate::run::execplan::human_bytes(free)
                        )));
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let before = c.file_bytes().await.unwrap_or(0);
                let mut statements = vec!["VACUUM"];
                if *analyze {
                    statements.push("ANALYZE");
                }
                for s in statements {
                    with_retries(step, ctx, acc, c, DbOp::Exec(s, ctx.statement_timeout(step)))
                        .await
                        .map_err(|e| StepErr::failed(format!("`{s}`: {}", e.message)))?;
                    acc.r.statements += 1;
                }
                let after = c.file_bytes().await.unwrap_or(before);
                ctx.emit(Event::ObjectDone {
                    step: step.id.clone(),
                    object: "database".into(),
                    done: i as u64 + 1,
                    duration_ms: t0.elapsed().as_millis() as u64,
                });
                acc.r.bytes += before.saturating_sub(after);
            }
            Action::Backup(work) => {
                for stale in crate::ops::backup::exec::remove_stale_partials(work) {
                    ctx.emit(Event::RolledBack {
                        step: step.id.clone(),
                        what: format!("removed `{stale}`, left by an interrupted run"),
                    });
                }
                match crate::ops::backup::exec::run(
                    work,
                    &ctx.target,
                    (step.lock_timeout_ms, step.statement_timeout_ms),
                )
                .await
                {
                    Ok(done) => {
                        acc.r.bytes += done.bytes;
                        acc.r.statements += 1;
                        acc.r.cleanup_failed = done.cleanup_failed;
                        ctx.emit(Event::ObjectDone {
                            step: step.id.clone(),
                            object: format!("{} ({})", work.path, done.verified),
                            done: 1,
                            duration_ms: t0.elapsed().as_millis() as u64,
                        });
                    }
                    Err(e) => {
                        acc.r.rolled_back = e.rolled_back;
                        acc.r.cleanup_failed = e.cleanup_failed;
                        return Err(StepErr::failed(e.message));
                    }
                }
            }
            Action::Retention(work) => {
                let c = session(&mut conn, step, ctx).await?;
                retention(step, work, c, ctx, acc).await?;
            }
        }
    }
    Ok(())
}

/// The step's session, opened on first use.
async fn session<'c>(conn: &'c mut Option<Conn>, step: &PlannedStep, ctx: &Ctx) -> Result<&'c mut Conn, StepErr> {
    match conn {
        Some(c) => Ok(c),
        None => Ok(conn.insert(open(step, ctx).await?)),
    }
}

/// The step's session, opened on first use, with its statement timeout set
/// for the reading queries of `check` and `stats`.
async fn read_session<'c>(
    conn: &'c mut Option<Conn>,
    step: &PlannedStep,
    ctx: &Ctx,
    acc: &mut Acc,
) -> Result<&'c mut Conn, StepErr> {
    let c = session(conn, step, ctx).await?;
    set_timeout(c, acc, ctx.statement_timeout(step))
        .await
        .map_err(|e| StepErr::failed(e.message))?;
    Ok(c)
}

/// Rebuilds one index. A concurrent rebuild is journaled before it starts;
/// a failed attempt's INVALID copy is dropped before the next attempt or
/// the failure (safety.md rule 7); success is checked in the catalog, not
/// taken from the server's silence: the index must be valid and ready, on
/// new storage (a rebuild the server skipped with a WARNING or NOTICE
/// leaves the old storage, and fails the step).
async fn reindex(
    step: &PlannedStep,
    work: &crate::run::execplan::ReindexWork,
    c: &mut Conn,
    ctx: &Ctx,
    acc: &mut Acc,
) -> Result<(), StepErr> {
    let name = format!("{}.{}", work.schema, work.index);
    let timeout = ctx.statement_timeout(step);
    if c.backend() != Backend::Postgres {
        with_retries(step, ctx, acc, c, DbOp::Exec(&work.sql, timeout))
            .await
            .map_err(|e| StepErr::failed(format!("`{name}`: {}", e.message)))?;
        acc.r.statements += 1;
        return Ok(());
    }
    let failed = |e: DbError| StepErr::failed(format!("`{name}`: {}", e.message));
    let before = crate::ops::reindex::pg::index_state(c, &work.schema, &work.index)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepErr::failed(format!("`{name}` no longer exists")))?;
    let record = if work.concurrently {
        let invalid = crate::ops::reindex::pg::invalid_indexes(c, &work.schema, &work.table)
            .await
            .map_err(failed)?;
        let id = crate::ops::reindex::pg::rebuild_started(
            c,
            ctx.run_id,
            &step.id,
            &work.schema,
            &work.table,
            &work.index,
            &invalid,
        )
        .await
        .map_err(failed)?;
        Some((id, invalid))
    } else {
        None
    };
    let op = DbOp::Rebuild {
        work,
        invalid_before: record.as_ref().map(|(_, b)| b.as_slice()),
        timeout,
    };
    let result = with_retries(step, ctx, acc, c, op).await;
    acc.r.statements += 1;
    if c.backend() != Backend::Postgres {
        return Ok(());
    }
    let verified = match result {
        Ok(_) => match crate::ops::reindex::pg::index_state(c, &work.schema, &work.index).await {
            Ok(Some((true, node, bytes))) if node != before.1 => Ok(bytes),
            Ok(Some((true, _, _))) => Err(format!(
                "`{name}`: the server did not rebuild it (its storage is unchanged): nothing was done"
            )),
            Ok(Some((false, _, _))) => Err(format!("`{name}` is not valid after its rebuild")),
            Ok(None) => Err(format!("`{name}` is gone after its rebuild")),
            Err(e) => Err(format!("`{name}`: checking the rebuilt index: {}", e.message)),
        },
        Err(e) => Err(format!("`{name}`: {}", e.message)),
    };
    // A record stays open only when a leftover could not be dropped: the
    // next run's inspection finds it and drops it.
    if let Some((id, _)) = &record
        && acc.r.cleanup_failed.is_none()
    {
        let outcome = if verified.is_ok() {
            "rebuilt"
        } else {
            "failed; leftovers dropped"
        };
        let _ = crate::ops::reindex::pg::rebuilds_finished(c, &[*id], outcome).await;
    }
    let after = verified.map_err(StepErr::failed)?;
    acc.r.bytes += (before.2.max(0) as u64).saturating_sub(after.max(0) as u64);
    Ok(())
}

/// After a failed concurrent rebuild: drops the INVALID copies it left
/// (those not in `before`), and says so in the step's result; returns the
/// error to report, no longer retryable when the drop itself failed.
async fn drop_failed_copies(
    c: &mut Conn,
    work: &crate::run::execplan::ReindexWork,
    before: &[String],
    acc: &mut Acc,
    e: DbError,
) -> DbError {
    if c.backend() != Backend::Postgres {
        return e;
    }
    let left = match crate::ops::reindex::pg::leftovers_since(c, &work.schema, &work.table, before).await {
        Ok(left) => left,
        Err(e2) => {
            acc.r.cleanup_failed = Some(format!(
                "could not list the INVALID indexes the failed rebuild of {}.{} left on {}.{} ({}): \
                 the next run drops them, from the journal",
                work.schema, work.index, work.schema, work.table, e2.message
            ));
            return DbError::other(e.message);
        }
    };
    if left.is_empty() {
        return e;
    }
    match crate::ops::reindex::pg::drop_concurrently(c, &work.schema, &left).await {
        Ok(()) => {
            let dropped = format!("dropped the INVALID index {} the failed rebuild left", left.join(", "));
            acc.r.rolled_back = Some(match acc.r.rolled_back.take() {
                Some(earlier) => format!("{earlier}; {dropped}"),
                None => dropped,
            });
            e
        }
        Err((index, e2)) => {
            acc.r.cleanup_failed = Some(format!(
                "INVALID index {}.{index} is left on {}.{} (dropping it failed: {}): the next run drops it, \
                 or run DROP INDEX CONCURRENTLY {}",
                work.schema,
                work.schema,
                work.table,
                e2.message,
                crate::db::quote_name(Some(&work.schema), &index)
            ));
            DbError::other(e.message)
        }
    }
}

/// Drops the INVALID leftovers of earlier runs' rebuilds and closes their
/// journal records.
async fn drop_leftovers(
    step: &PlannedStep,
    indexes: &[(String, String)],
    records: &[i64],
    c: &mut Conn,
    ctx: &Ctx,
    acc: &mut Acc,
) -> Result<(), StepErr> {
    let timeout = ctx.statement_timeout(step);
    let mut dropped = vec![];
    for (schema, name) in indexes {
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            crate::db::quote_name(Some(schema), name)
        );
        if let Err(e) = with_retries(step, ctx, acc, c, DbOp::Exec(&sql, timeout)).await {
            acc.r.cleanup_failed = Some(format!(
                "INVALID index {schema}.{name}, left by an interrupted rebuild, is still there ({}): \
                 run `{sql}` when nothing holds the table",
                e.message
            ));
            return Err(StepErr::failed(format!("dropping {schema}.{name}: {}", e.message)));
        }
        acc.r.statements += 1;
        dropped.push(format!("{schema}.{name}"));
    }
    if c.backend() == Backend::Postgres {
        crate::ops::reindex::pg::rebuilds_finished(c, records, "leftovers dropped by a later run")
            .await
            .map_err(|e| StepErr::failed(format!("closing the rebuild journal: {}", e.message)))?;
    }
    if !dropped.is_empty() {
        ctx.emit(Event::RolledBack {
            step: step.id.clone(),
            what: format!(
                "dropped {}, left INVALID by an interrupted rebuild of an earlier run",
                dropped.join(", ")
            ),
        });
    }
    Ok(())
}

/// A database call the executor may retry.
#[derive(Debug)]
enum DbOp<'a> {
    /// One statement, after capping the session's statement timeout.
    Exec(&'a str, Duration),
    /// Statements in one writing transaction.
    Transaction(&'a [String]),
    /// One index rebuild; after a failed concurrent one its INVALID copy
    /// is dropped before a retry (`invalid_before`: the table's INVALID
    /// indexes before the step touched it).
    Rebuild {
        work: &'a crate::run::execplan::ReindexWork,
        invalid_before: Option<&'a [String]>,
        timeout: Duration,
    },
    /// A retention step's eligible rows and their key span, counted.
    Count(&'a RetentionWork),
    /// A windowed walk's next existing key after the given one.
    NextKey(&'a str, i64),
    /// One retention batch, after capping the statement timeout.
    Batch {
        work: &'a RetentionWork,
        at: crate::ops::retention::batch::BatchAt<'a>,
        journal: &'a BatchJournal,
        file: Option<&'a mut crate::ops::retention::archive::ArchiveFile>,
        timeout: Duration,
    },
}

/// What a retried call returned.
#[derive(Debug)]
enum Done {
    /// A statement or transaction went through.
    Ran,
    Batch(crate::ops::retention::batch::BatchDone),
    Count(crate::ops::retention::batch::Eligible),
    NextKey(Option<i64>),
}

/// Runs `op`, retrying a lock timeout with backoff up to the step's
/// `retries`; every other error, and the last lock timeout, fails.
async fn with_retries(
    step: &PlannedStep,
    ctx: &Ctx,
    acc: &mut Acc,
    c: &mut Conn,
    mut op: DbOp<'_>,
) -> Result<Done, DbError> {
    let mut attempt = 0;
    loop {
        let result = match &mut op {
            DbOp::Exec(sql, timeout) => match set_timeout(c, acc, *timeout).await {
                Ok(()) => c.execute(sql).await.map(|_| Done::Ran),
                Err(e) => Err(e),
            },
            DbOp::Transaction(stmts) => c.execute_in_transaction(stmts).await.map(|()| Done::Ran),
            DbOp::Rebuild {
                work,
                invalid_before,
                timeout,
            } => match set_timeout(c, acc, *timeout).await {
                Ok(()) => match (c.execute(&work.sql).await, invalid_before) {
                    (Ok(_), _) => Ok(Done::Ran),
                    (Err(e), Some(before)) => Err(drop_failed_copies(c, work, before, acc, e).await),
                    (Err(e), None) => Err(e),
                },
                Err(e) => Err(e),
            },
            DbOp::Count(work) => crate::ops::retention::batch::count(c, work).await.map(Done::Count),
            DbOp::NextKey(sql, after) => crate::ops::retention::batch::next_key(c, sql, *after)
                .await
                .map(Done::NextKey),
            DbOp::Batch {
                work,
                at,
                journal,
                file,
                timeout,
            } => match set_timeout(c, acc, *timeout).await {
                Ok(()) => crate::ops::retention::batch::take(c, work, *at, journal, file.as_deref_mut())
                    .await
                    .map(Done::Batch),
                Err(e) => Err(e),
            },
        };
        match result {
            Err(e) if e.kind == ErrorKind::LockTimeout && attempt < step.retries => {
                attempt += 1;
                acc.r.retries += 1;
                let wait = backoff(attempt);
                ctx.emit(Event::Retrying {
                    step: step.id.clone(),
                    attempt,
                    wait_ms: wait.as_millis() as u64,
                    error: e.message.clone(),
                });
                if ctx.time_left().is_some_and(|t| t < wait) {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) if e.kind == ErrorKind::LockTimeout => {
                return Err(DbError {
                    kind: e.kind,
                    message: format!(
                        "{} (lock not granted within {} ms, {} attempts)",
                        e.message,
                        step.lock_timeout_ms,
                        attempt + 1
                    ),
                });
            }
            other => return other,
        }
    }
}

/// The wait before retry `attempt` (1-based): 250 ms, doubling, at most 5 s.
fn backoff(attempt: u64) -> Duration {
    (BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1) as u32)).min(Duration::from_secs(5))
}

async fn retention(
    step: &PlannedStep,
    work: &RetentionWork,
    c: &mut Conn,
    ctx: &Ctx,
    acc: &mut Acc,
) -> Result<(), StepErr> {
    if !work.foreign_keys_off {
        return retention_walk(step, work, c, ctx, acc).await;
    }
    // SQLite reads the pragma per connection and only outside a
    // transaction: off for this step's batches, on again after them.
    c.execute("PRAGMA foreign_keys = OFF")
        .await
        .map_err(|e| StepErr::failed(format!("turning SQLite foreign keys off: {}", e.message)))?;
    let result = retention_walk(step, work, c, ctx, acc).await;
    let _ = c.execute("PRAGMA foreign_keys = ON").await;
    result
}

async fn retention_walk(
    step: &PlannedStep,
    work: &RetentionWork,
    c: &mut Conn,
    ctx: &Ctx,
    acc: &mut Acc,
) -> Result<(), StepErr> {
    if !work.create_archive.is_empty() {
        with_retries(step, ctx, acc, c, DbOp::Transaction(&work.create_archive))
            .await
            .map_err(|e| StepErr::failed(format!("creating the archive table: {}", e.message)))?;
        acc.r.statements += work.create_archive.len() as u64;
    }
    let mut file = match &work.archive {
        Some(crate::run::execplan::ArchiveTo::File { path }) => {
            let f =
                crate::ops::retention::archive::ArchiveFile::open(std::path::Path::new(path), work.batch_size as usize)
                    .map_err(StepErr::failed)?;
            if f.repaired_bytes > 0 {
                ctx.emit(Event::RolledBack {
                    step: step.id.clone(),
                    what: format!(
                        "cut a torn last line ({} bytes) an interrupted run left in `{path}`",
                        f.repaired_bytes
                    ),
                });
            }
            Some(f)
        }
        _ => None,
    };
    // The walk covers the eligible rows' key span whole, whatever rows it
    // deletes on the way. A ranged walk counts them and reads the span
    // first; a key-window walk starts at the first eligible key at once
    // and learns the span's end from a second session reading it beside
    // the first windows (the pass a DBA's loop waits for up front).
    let mut span_read: Option<
        tokio::task::JoinHandle<Result<crate::ops::retention::batch::Eligible, crate::db::DbError>>,
    > = None;
    let (mut walk, first, last, eligible_rows) = match &work.batch {
        crate::run::execplan::BatchSql::Window { statement, .. } => {
            let first = match crate::ops::retention::batch::first_key(c, work).await {
                Ok(Some(k)) => k,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(StepErr::failed(format!(
                        "finding the first eligible key: {}",
                        e.message
                    )));
                }
            };
            acc.r.statements += 1;
            let (target, limits, span_work) = (ctx.target.clone(), session_limits(step, ctx), work.clone());
            span_read = Some(tokio::spawn(async move {
                let mut s = connect(&target, limits).await?;
                // One core: the windows' deletes keep the others (a
                // parallel read here took them from the deletes).
                s.execute("SET max_parallel_workers_per_gather = 0").await?;
                crate::ops::retention::batch::count(&mut s, &span_work).await
            }));
            crate::ops::retention::batch::prepare_window(c, statement)
                .await
                .map_err(|e| StepErr::failed(format!("preparing the batch statement: {}", e.message)))?;
            acc.r.statements += 1;
            // An unfinished earlier run: go on after its last committed key
            // first, then walk the keys before it (rows there may have
            // become eligible, or been kept); every key is still walked.
            let resume = match c.journal_resume_key(&step.id, ctx.run_id).await {
                Ok(k) => k.and_then(|k| k.parse::<i64>().ok()).filter(|r| *r >= first),
                Err(_) => None,
            };
            let walk = match resume {
                Some(r) => {
                    ctx.emit(Event::Warning {
                        step: step.id.clone(),
                        message: format!(
                            "resuming after key {r}, the last batch an unfinished earlier run committed; \
                             keys {first}..={r} are walked after the rest"
                        ),
                    });
                    Walk::Window {
                        next: r.checked_add(1),
                        last: None,
                        then: Some((first, r)),
                    }
                }
                None => Walk::Window {
                    next: Some(first),
                    last: None,
                    then: None,
                },
            };
            (walk, String::new(), String::new(), work.planned_rows)
        }
        crate::run::execplan::BatchSql::Ranged { .. } => {
            let eligible = match with_retries(step, ctx, acc, c, DbOp::Count(work)).await {
                Ok(Done::Count(e)) => e,
                Ok(_) => crate::ops::retention::batch::Eligible { rows: 0, span: None },
                Err(e) => return Err(StepErr::failed(format!("counting the eligible rows: {}", e.message))),
            };
            acc.r.statements += 1;
            let Some((first, last)) = eligible.span.filter(|_| eligible.rows > 0) else {
                return Ok(());
            };
            (Walk::Ranged { after: None }, first, last, eligible.rows)
        }
    };
    let result = walk_batches(
        step,
        work,
        c,
        ctx,
        acc,
        &mut walk,
        &first,
        &last,
        &mut span_read,
        file.as_mut(),
    )
    .await;
    if let Some(h) = span_read {
        h.abort();
    }
    let (rows_before, kept) = result?;
    let here = acc.r.rows - rows_before;
    if kept > 0 {
        let note = format!(
            "{}: {here} rows deleted, {kept} eligible rows kept (see the batch warnings); {eligible_rows} eligible when counted",
            work.table
        );
        acc.r.partial = Some(match acc.r.partial.take() {
            Some(p) => format!("{p}; {note}"),
            None => note,
        });
    } else if here > eligible_rows {
        ctx.emit(Event::Warning {
            step: step.id.clone(),
            message: format!(
                "{here} rows deleted from {}, {} more than were eligible when counted: rows became eligible during the run",
                work.table,
                here - eligible_rows
            ),
        });
    }
    Ok(())
}

/// The batches of one walk; returns the step's row count before it and the
/// eligible rows the batches kept.
#[allow(clippy::too_many_arguments)]
async fn walk_batches(
    step: &PlannedStep,
    work: &RetentionWork,
    c: &mut Conn,
    ctx: &Ctx,
    acc: &mut Acc,
    walk: &mut Walk,
    first: &str,
    last: &str,
    span_read: &mut Option<tokio::task::JoinHandle<Result<crate::ops::retention::batch::Eligible, crate::db::DbError>>>,
    mut file: Option<&mut crate::ops::retention::archive::ArchiveFile>,
) -> Result<(u64, u64), StepErr> {
    // Pass 1 of a key-window walk ends at the span's end, once known.
    let mut in_pass1 = true;
    let max_rows = work.max_rows.unwrap_or(u64::MAX);
    let rows_before = acc.r.rows;
    // Numbered across the step: one step may walk several tables.
    let mut batch_no = acc.batch_no;
    let mut kept = 0u64;
    loop {
        // The span's end, once the other session has read it.
        if span_read.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = span_read.take()
        {
            let read = match h.await {
                Ok(r) => r,
                Err(e) => Err(crate::db::DbError::other(e.to_string())),
            };
            let read = match read {
                Ok(e) => Ok(e),
                // No second session (max_connections reached, a pooler's
                // limit): read the span on the step's own session instead.
                Err(e) => {
                    ctx.emit(Event::Warning {
                        step: step.id.clone(),
                        message: format!(
                            "reading the key span beside the batches failed ({}); reading it between them instead",
                            e.message
                        ),
                    });
                    crate::ops::retention::batch::count(c, work).await
                }
            };
            let end = match read {
                Ok(e) => e.span.and_then(|(_, l)| l.parse::<i64>().ok()),
                Err(e) => return Err(StepErr::failed(format!("reading the eligible key span: {}", e.message))),
            };
            acc.r.statements += 1;
            if let Walk::Window { next, last, .. } = walk
                && in_pass1
            {
                // No eligible row left (all deleted already) ends pass 1
                // where it is.
                *last = Some(end.unwrap_or(i64::MIN));
                if next.is_some_and(|n| n > last.unwrap_or(i64::MAX)) {
                    *next = None;
                }
            }
        }
        // `max_rows` caps each table's deletes (a step with inheritance
        // children runs one walk per table).
        let room = work.batch_size.min(max_rows.saturating_sub(acc.r.rows - rows_before));
        if room == 0 {
            break; // max_rows reached
        }
        // The end of a resumed walk's first pass: on to the keys before it.
        if let Walk::Window { next, last, then } = walk
            && next.is_none()
            && let Some((from, to)) = then.take()
        {
            *next = Some(from);
            *last = Some(to);
            in_pass1 = false;
        }
        let after = match &*walk {
            Walk::Ranged { after } => after.clone(),
            Walk::Window { .. } => None,
        };
        let at = match &*walk {
            Walk::Window { next: None, .. } => break, // the span is walked
            Walk::Window {
                next: Some(lo), last, ..
            } => {
                let hi = lo.saturating_add(room as i64 - 1);
                crate::ops::retention::batch::BatchAt::Window(crate::ops::retention::batch::Window {
                    lo: *lo,
                    hi: last.map_or(hi, |l| hi.min(l)),
                })
            }
            Walk::Ranged { .. } => crate::ops::retention::batch::BatchAt::Ranged(crate::ops::retention::batch::Keys {
                from: after.as_deref().unwrap_or(first),
                inclusive: after.is_none(),
                to: last,
                limit: room,
            }),
        };
        if ctx.expired().await {
            return Err(StepErr::deferred(format!(
                "{} after {} batches ({} rows); a rerun continues",
                ctx.why_stopped(),
                acc.r.batches,
                acc.r.rows
            )));
        }
        batch_no += 1;
        acc.batch_no = batch_no;
        let journal = BatchJournal {
            run_id: ctx.run_id,
            step: step.id.clone(),
            batch_no,
        };
        let t0 = Instant::now();
        let op = DbOp::Batch {
            work,
            at,
            journal: &journal,
            file: file.as_deref_mut(),
            timeout: ctx.statement_timeout(step),
        };
        let done = match with_retries(step, ctx, acc, c, op).await {
            Ok(Done::Batch(b)) => b,
            Ok(_) => crate::ops::retention::batch::BatchDone {
                rows: 0,
                selected: 0,
                last_key: None,
                cascaded: vec![],
            },
            Err(e) => {
                acc.r.rolled_back = Some(format!(
                    "batch {batch_no} rolled back: its rows stay in {}{}; {} earlier batches ({} rows) committed and are in the journal",
                    work.table,
                    if work.archive.is_some() {
                        " and none reached the archive"
                    } else {
                        ""
                    },
                    acc.r.batches,
                    acc.r.rows
                ));
                return Err(StepErr::failed(format!("batch {batch_no}: {}", e.message)));
            }
        };
        acc.r.statements += 1;
        // Where the next batch starts; `None` ends the walk.
        match (&mut *walk, at) {
            (Walk::Window { next, last, .. }, crate::ops::retention::batch::BatchAt::Window(w)) => {
                *next = match *last {
                    Some(l) if w.hi >= l => None,
                    _ => w.hi.checked_add(1),
                };
                // An empty window: jump to the next key that exists, so a
                // run of empty windows (sparse keys) costs one lookup.
                if done.selected == 0
                    && let Some(from) = *next
                {
                    *next = match with_retries(step, ctx, acc, c, DbOp::NextKey(next_key_sql(work), from - 1)).await {
                        Ok(Done::NextKey(k)) => k.filter(|k| last.is_none_or(|l| *k <= l)),
                        Ok(_) => None,
                        Err(e) => return Err(StepErr::failed(format!("finding the next key: {}", e.message))),
                    };
                    acc.r.statements += 1;
                }
            }
            (Walk::Ranged { after }, _) => {
                if done.selected == 0 || done.last_key.is_none() {
                    break; // no eligible key left in the span
                }
                *after = done.last_key.clone();
            }
            _ => {}
        }
        if done.selected == 0 {
            continue; // an empty window: on to the next, no pause
        }
        if done.selected > done.rows {
            let n = done.selected - done.rows;
            kept += n;
            ctx.emit(Event::Warning {
                step: step.id.clone(),
                message: format!(
                    "batch {batch_no}: {} eligible rows selected, {} deleted: {n} kept by something on {} \
                     (a DELETE trigger, a row-level security policy, a concurrent change)",
                    done.selected, done.rows, work.table
                ),
            });
        }
        for (i, n) in done.cascaded.iter().enumerate() {
            if let Some(cc) = work.cascades.get(i) {
                match acc.r.cascaded.iter_mut().find(|d| d.foreign_key == cc.foreign_key) {
                    Some(d) => d.rows += n,
                    None => acc.r.cascaded.push(crate::run::events::Cascaded {
                        foreign_key: cc.foreign_key.clone(),
                        on_delete: cc.on_delete.clone(),
                        rows: *n,
                    }),
                }
            }
        }
        if done.rows > 0 {
            acc.r.rows += done.rows;
            acc.r.batches += 1;
            ctx.emit(Event::BatchDone {
                step: step.id.clone(),
                batch: batch_no,
                rows: done.rows,
                rows_total: acc.r.rows,
                duration_ms: t0.elapsed().as_millis() as u64,
            });
        }
        if work.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work.pause_ms)).await;
        }
    }
    Ok((rows_before, kept))
}

/// A windowed step's next-key statement.
fn next_key_sql(work: &RetentionWork) -> &str {
    match &work.batch {
        crate::run::execplan::BatchSql::Window { next_key, .. } => next_key,
        crate::run::execplan::BatchSql::Ranged { .. } => "",
    }
}

/// Sets the session's statement_timeout unless the value already set is
/// `timeout` or less than a second above it: under a deadline the cap
/// shrinks a little every batch, and a second's slack saves a round trip
/// per batch (the overrun stays within `GRACE` + 1 s).
async fn set_timeout(c: &mut Conn, acc: &mut Acc, timeout: Duration) -> Result<(), DbError> {
    if acc
        .timeout_set
        .is_some_and(|t| t >= timeout && t < timeout + Duration::from_secs(1))
    {
        return Ok(());
    }
    c.set_statement_timeout(timeout).await?;
    acc.timeout_set = Some(timeout);
    Ok(())
}

/// How a retention step walks the key span of its eligible rows.
#[derive(Debug, Clone)]
enum Walk {
    /// LIMIT batches; `after` is the last key of the batch before (none
    /// before the first).
    Ranged { after: Option<String> },
    /// Key windows; `next` is the next window's first key, `None` once the
    /// window holding `last` is done (overflow-safe at the type's maximum);
    /// `last` is unknown (`None`) until the span read returns; `then`, a
    /// resumed walk's second pass over the keys before it.
    Window {
        next: Option<i64>,
        last: Option<i64>,
        then: Option<(i64, i64)>,
    },
}

/// Free bytes for unprivileged users in the filesystem holding `dir`.
fn free_bytes(dir: &str) -> Result<u64, String> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("cannot read free space of `{dir}`: {e}"))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}
