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
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::db::Conn;
use crate::plan::values::Target;
use crate::run::events::{Event, ObjectOutcome, Status, StepResult};
use crate::run::execplan::{Action, ExecutionPlan, PlannedStep};
use crate::run::operation::Registry;
use crate::run::steprun::{Acc, Ctx, StepErr, StepErrKind, StepRun};
use crate::run::throttle::Throttle;

pub use crate::run::steprun::GRACE;

/// What a run needs besides the plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub parallelism: usize,
    /// When set, only these steps run (cli `--step`).
    pub only: Option<Vec<String>>,
    /// No new step or batch starts after this.
    pub deadline: Option<Instant>,
    /// What the deadline is: `max_runtime spent`, `the maintenance window closed`.
    pub deadline_why: &'static str,
    /// Set on SIGINT/SIGTERM: no new step or batch starts either.
    pub stop: Arc<AtomicBool>,
    pub run_id: i64,
    /// The apply lock: asked before every step and batch whether it is
    /// still held; a run that lost it starts nothing more.
    pub lock: Option<Arc<crate::db::applylock::ApplyLock>>,
    /// The operations that run their own `Action::Op` work.
    pub ops: &'static dyn Registry,
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub failed: Vec<String>,
    pub deferred: Vec<String>,
    pub cleanup_failed: Vec<String>,
    /// Steps that ended `partial` (rows kept from their deletes).
    pub partial: Vec<String>,
    /// Failed steps that failed on their findings only (`check`).
    pub alerts: Vec<String>,
    /// The deferrals came from a signal, not from `limits`.
    pub interrupted: bool,
    /// The apply lock was lost during the run: another apply may be running.
    pub lock_lost: bool,
}

impl RunOutcome {
    /// cli.md's exit codes: 5 cleanup failed, 4 lock lost, 1 a step
    /// failed, 6 only checks failed on their findings, 130 a signal, 3
    /// limits.
    pub fn exit_code(&self) -> i32 {
        if !self.cleanup_failed.is_empty() {
            crate::run::exit::CLEANUP_FAILED
        } else if self.lock_lost {
            crate::run::exit::LOCKED
        } else if self.failed.len() > self.alerts.len() || !self.partial.is_empty() {
            crate::run::exit::ERROR
        } else if !self.alerts.is_empty() {
            crate::run::exit::ALERT
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
            crate::run::exit::ALERT => "checks failed",
            crate::run::exit::ERROR if self.failed.is_empty() => "partial",
            _ => "failed",
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
        deadline_why: opts.deadline_why,
        stop: opts.stop.clone(),
        run_id: opts.run_id,
        lock: opts.lock.clone(),
        parallelism: opts.parallelism.max(1),
    });
    let ops = opts.ops;
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
            let why = if ctx.expired().await {
                Some(ctx.why_stopped().to_string())
            } else if plan.fit_defer {
                wont_fit(s, &ctx)
            } else {
                None
            };
            if let Some(why) = why {
                status.insert(s.id.clone(), Status::Deferred);
                outcome.deferred.push(s.id.clone());
                ctx.emit(Event::StepDeferred {
                    result: empty_result(s, Status::Deferred, Some(format!("not started: {why}"))),
                });
                continue;
            }
            let step = s.clone();
            let ctx = ctx.clone();
            let handle = running.spawn(async move { run_step(&step, &ctx, ops).await });
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
                if result.failed_on_findings {
                    outcome.alerts.push(result.step.clone());
                }
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
        deferred,
        ..StepResult::new(&s.id, &s.op, status)
    }
}

async fn run_step(step: &PlannedStep, ctx: &Ctx, ops: &'static dyn Registry) -> StepResult {
    let units = step.units;
    ctx.emit(Event::StepStarted {
        step: step.id.clone(),
        op: step.op.clone(),
        units,
        rows: step.estimate.rows,
    });
    let started = Instant::now();
    let mut acc = Acc {
        r: empty_result(step, Status::Succeeded, None),
        timeout_set: None,
        batch_no: 0,
        keep: None,
    };
    acc.r.started_at = now_text();
    if !step.errors.is_empty() {
        acc.r.status = Status::Failed;
        acc.r.error = Some(step.errors.join("; "));
    } else if !step.no_op
        && let Err(e) = run_actions(step, ctx, &mut acc, ops).await
    {
        {
            acc.r.status = if e.kind == StepErrKind::Deferred {
                Status::Deferred
            } else {
                Status::Failed
            };
            acc.r.failed_on_findings = e.kind == StepErrKind::Findings;
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
    acc.r.duration_ms = started.elapsed().as_millis() as u64;
    acc.r
}

/// Runs a step's actions in order on one session: statements and author
/// SQL here, an operation's own work through its `Executes`. An action that
/// fails is undone by the actions it carries (`Action::undo`) before the
/// step ends.
async fn run_actions(step: &PlannedStep, ctx: &Ctx, acc: &mut Acc, ops: &dyn Registry) -> Result<(), StepErr> {
    let mut conn: Option<Conn> = None;
    if let Some(reselect) = &step.reselect {
        let mut run = StepRun::new(step, ctx, acc, &mut conn, 0);
        run_one(&mut run, reselect, ops).await?;
    }
    // The actions to run: all, or those a re-selection kept.
    let chosen: Vec<usize> = (0..step.actions.len())
        .filter(|&i| match (&acc.keep, step.actions[i].object()) {
            (Some(keep), Some(o)) => keep.iter().any(|k| k == o),
            _ => true,
        })
        .collect();
    let lanes = (step.jobs as usize).min(ctx.parallelism).min(chosen.len());
    if lanes > 1 && step.actions.iter().all(|a| a.after().is_empty()) {
        return crate::run::lanes::run(step, ctx, acc, ops, lanes, chosen).await;
    }
    let total = chosen.len() as u64;
    // Objects that failed or were skipped (`objects_continue`).
    let mut broken: Vec<String> = vec![];
    let mut throttle = step.throttle.clone().map(|l| Throttle::between(l, "objects"));
    for (n, &i) in chosen.iter().enumerate() {
        let action = &step.actions[i];
        if ctx.expired().await {
            return Err(StepErr::deferred(format!(
                "{}: {} of {total} actions not started",
                ctx.why_stopped(),
                total - n as u64
            )));
        }
        let object = action.object().unwrap_or_default().to_string();
        if let Some(needed) = action.after().iter().find(|n| broken.contains(n)) {
            acc.r.objects_skipped.push(ObjectOutcome {
                object: object.clone(),
                error: format!("not attempted: it needs `{needed}`, which did not succeed"),
                sqlstate: None,
            });
            broken.push(object);
            continue;
        }
        let mut run = StepRun::new(step, ctx, acc, &mut conn, i as u64 + 1);
        if let Some(t) = throttle.as_mut() {
            t.wait(&mut run).await?;
        }
        if let Err(e) = run_one(&mut run, action, ops).await {
            undo(step, ctx, acc, i as u64 + 1, action, ops).await;
            let goes_on = step.objects_continue && total > 1 && e.kind == StepErrKind::Failed && !object.is_empty();
            if !goes_on {
                return Err(e);
            }
            ctx.emit(Event::Warning {
                step: step.id.clone(),
                message: format!("{}; the step's other objects go on", e.message),
            });
            acc.r.objects_failed.push(ObjectOutcome::failed(&object, &e.message));
            broken.push(object);
            // A failed statement may leave the session unusable (an
            // aborted transaction, a killed backend): the next object
            // starts on a fresh one.
            if let Some(c) = conn.take() {
                c.close().await;
            }
        }
    }
    settle_objects(total, &mut acc.r)
}

/// After every object had its turn: the step is `partial` when some
/// failed or were skipped and some succeeded, failed when none succeeded.
pub(crate) fn settle_objects(total: u64, r: &mut StepResult) -> Result<(), StepErr> {
    let failed = r.objects_failed.len() as u64;
    let skipped = r.objects_skipped.len() as u64;
    if failed + skipped == 0 {
        return Ok(());
    }
    let names = |list: &[ObjectOutcome]| {
        list.iter()
            .map(|o| match &o.sqlstate {
                Some(c) => format!("{} ({c})", o.object),
                None => o.object.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut said = format!(
        "{} of {total} objects done; {failed} failed: {}",
        total - failed - skipped,
        names(&r.objects_failed)
    );
    if skipped > 0 {
        said.push_str(&format!("; {skipped} skipped: {}", names(&r.objects_skipped)));
    }
    if failed + skipped == total {
        return Err(StepErr::failed(format!("every object failed: {said}")));
    }
    r.partial = Some(said);
    Ok(())
}

/// One action: a statement, author SQL, or an operation's work.
pub(crate) async fn run_one(run: &mut StepRun<'_>, action: &Action, ops: &dyn Registry) -> Result<(), StepErr> {
    match action {
        Action::Statement { object, sql, .. } => {
            run.exec(sql)
                .await
                .map_err(|e| StepErr::failed(format!("`{object}`: {}", e.message)))?;
            run.result().statements += 1;
            run.object_done(object.clone());
        }
        Action::Sql {
            sql,
            transaction,
            statements,
        } => author_sql(run, sql, *transaction, statements).await?,
        Action::Op { op, work, .. } => {
            let Some(x) = ops.execution(op) else {
                return Err(StepErr::failed(format!(
                    "this dbmaint cannot run `{op}` work (a saved plan from another version?): compute the plan again"
                )));
            };
            x.execute(work, run).await?;
        }
    }
    Ok(())
}

/// `limits.fit: defer`: why `s` is not started when its expected duration
/// (from the journal's history) exceeds the time left.
fn wont_fit(s: &PlannedStep, ctx: &Ctx) -> Option<String> {
    let (e, left) = (s.expected.as_ref()?, ctx.time_left()?);
    (u128::from(e.ms) > left.as_millis()).then(|| {
        format!(
            "expected to take {} ({}), {} left {} (limits.fit: defer)",
            crate::run::fit::clock_ms(e.ms),
            e.basis,
            crate::run::fit::clock_ms(left.as_millis() as u64),
            if ctx.deadline_why.contains("window") {
                "before the window closes"
            } else {
                "of max_runtime"
            }
        )
    })
}

/// Runs the undo of a failed action, in order, on a fresh session (the
/// failed one may be dead or mid-statement). An undo reports what it
/// removed in the step's `rolled_back`; one that fails leaves
/// `cleanup_failed` naming what is left, and the undo after it still runs.
pub(crate) async fn undo(
    step: &PlannedStep,
    ctx: &Ctx,
    acc: &mut Acc,
    index: u64,
    action: &Action,
    ops: &dyn Registry,
) {
    let mut conn: Option<Conn> = None;
    for u in action.undo() {
        let mut run = StepRun::new(step, ctx, acc, &mut conn, index);
        if let Err(e) = run_one(&mut run, &u.action, ops).await {
            let left = format!("undoing the failed action ({}) failed: {}", u.shows, e.message);
            let r = run.result();
            r.cleanup_failed = Some(match r.cleanup_failed.take() {
                Some(earlier) => format!("{earlier}; {left}"),
                None => left,
            });
        }
    }
}

/// Author SQL: in one transaction (rolled back whole on failure), or
/// statement by statement, each committed as it succeeds.
async fn author_sql(run: &mut StepRun<'_>, sql: &str, transaction: bool, statements: &[String]) -> Result<(), StepErr> {
    if transaction {
        let timeout = run.statement_timeout();
        let one = [sql.to_string()];
        let result = crate::with_retries!(run, Some(timeout), |c, _| c.execute_in_transaction(&one).await);
        if let Err(e) = result {
            run.result().rolled_back = Some("the author SQL's transaction rolled back: none of it stayed".into());
            return Err(StepErr::failed(format!("author SQL failed: {}", e.message)));
        }
        run.result().statements += 1;
    } else {
        // One call per statement: each commits on its own, as
        // `transaction: false` promises.
        let single = [sql.to_string()];
        let list: &[String] = if statements.is_empty() { &single } else { statements };
        for (n, s) in list.iter().enumerate() {
            if let Err(e) = run.exec(s).await {
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
            run.result().statements += 1;
        }
    }
    run.object_done("author SQL");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RunOutcome;
    use crate::run::exit;

    #[test]
    fn checks_that_failed_on_findings_exit_alert_unless_something_else_failed() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let alerts = RunOutcome {
            failed: ids(&["health"]),
            alerts: ids(&["health"]),
            ..RunOutcome::default()
        };
        assert_eq!((alerts.exit_code(), alerts.status()), (exit::ALERT, "checks failed"));
        let both = RunOutcome {
            failed: ids(&["health", "dump"]),
            alerts: ids(&["health"]),
            ..RunOutcome::default()
        };
        assert_eq!(both.exit_code(), exit::ERROR, "a step that broke outranks a finding");
        let cleanup = RunOutcome {
            cleanup_failed: ids(&["dump"]),
            ..alerts.clone()
        };
        assert_eq!(cleanup.exit_code(), exit::CLEANUP_FAILED);
        let deferred = RunOutcome {
            deferred: ids(&["vacuum"]),
            ..alerts
        };
        assert_eq!(deferred.exit_code(), exit::ALERT, "findings outrank limits");
    }
}
