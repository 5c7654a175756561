//! What a step's execution sees: its session (opened on first use), its
//! figures, the events it may emit, and the run's rules every operation
//! keeps — a lock timeout is retried with backoff up to the step's
//! `retries` (never a last unbounded wait), and each statement's timeout is
//! capped at the time left plus [`GRACE`]. The executor owns the schedule;
//! an operation's execution (`run::operation::Executes`) gets a
//! [`StepRun`] and nothing else of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::db::{Conn, DbError, ErrorKind, SessionLimits, connect};
use crate::plan::values::Target;
use crate::run::events::{Event, StepResult};
use crate::run::execplan::PlannedStep;

/// How far past `max_runtime` a running statement may go before its own
/// statement_timeout stops it.
pub const GRACE: Duration = Duration::from_secs(2);

/// First wait after a lock timeout; doubles per attempt, capped at 5 s.
const BACKOFF: Duration = Duration::from_millis(250);

/// Shared by every step task.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) target: Target,
    pub(crate) events: UnboundedSender<Event>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) deadline_why: &'static str,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) run_id: i64,
    pub(crate) lock: Option<Arc<crate::db::applylock::ApplyLock>>,
    /// The run's `--parallelism`: also the most sessions one step's
    /// `jobs` may use.
    pub(crate) parallelism: usize,
}

impl Ctx {
    pub(crate) fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// No new step or batch may start: a signal, `max_runtime`, or the
    /// apply lock is gone (asked of the lock's session every time).
    pub(crate) async fn expired(&self) -> bool {
        if self.stop.load(Ordering::SeqCst) || self.time_left().is_some_and(|t| t.is_zero()) {
            return true;
        }
        match &self.lock {
            Some(l) => !l.still_held().await,
            None => false,
        }
    }

    pub(crate) fn lock_lost(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.was_lost())
    }

    /// Why no new work starts, once [`Ctx::expired`].
    pub(crate) fn why_stopped(&self) -> &'static str {
        if self.lock_lost() {
            "the apply lock was lost (its session ended; another apply may be running)"
        } else if self.stop.load(Ordering::SeqCst) {
            "interrupted by a signal"
        } else {
            self.deadline_why
        }
    }

    /// The step's statement timeout, capped by the time left plus grace.
    pub(crate) fn statement_timeout(&self, step: &PlannedStep) -> Duration {
        let own = Duration::from_millis(step.statement_timeout_ms);
        match self.time_left() {
            Some(left) => own.min(left + GRACE),
            None => own,
        }
    }
}

/// What a step's actions accumulate.
#[derive(Debug)]
pub(crate) struct Acc {
    pub(crate) r: StepResult,
    /// The session's statement_timeout as last set, to skip a round trip
    /// per batch when it has not moved.
    pub(crate) timeout_set: Option<Duration>,
    /// The last batch number the step used (journal key; one step may walk
    /// several tables).
    pub(crate) batch_no: u64,
    /// The objects a re-selection at step start kept (`None`: all).
    pub(crate) keep: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepErrKind {
    Failed,
    /// Stopped by `limits`, a signal or a lost lock, with work left.
    Deferred,
    /// The step did its work and found problems at or above its threshold
    /// (`check`'s `fail_on`): failed, and the run exits `ALERT`, not
    /// `ERROR`, unless something else failed.
    Findings,
}

/// Why a step ended before its work was done.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepErr {
    pub kind: StepErrKind,
    pub message: String,
}

impl StepErr {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrKind::Failed,
            message: message.into(),
        }
    }

    pub fn findings(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrKind::Findings,
            message: message.into(),
        }
    }

    pub fn deferred(message: impl Into<String>) -> Self {
        Self {
            kind: StepErrKind::Deferred,
            message: message.into(),
        }
    }
}

/// One action of a running step, as its operation sees it.
#[derive(Debug)]
pub struct StepRun<'a> {
    pub step: &'a PlannedStep,
    ctx: &'a Ctx,
    acc: &'a mut Acc,
    conn: &'a mut Option<Conn>,
    /// This action's number in the step (1-based), for progress.
    index: u64,
    started: Instant,
}

impl<'a> StepRun<'a> {
    pub(crate) fn new(
        step: &'a PlannedStep,
        ctx: &'a Ctx,
        acc: &'a mut Acc,
        conn: &'a mut Option<Conn>,
        index: u64,
    ) -> Self {
        Self {
            step,
            ctx,
            acc,
            conn,
            index,
            started: Instant::now(),
        }
    }

    /// The step's figures so far (rows, bytes, statements, findings, …).
    pub fn result(&mut self) -> &mut StepResult {
        &mut self.acc.r
    }

    pub fn emit(&self, e: Event) {
        self.ctx.emit(e);
    }

    /// Emits events from a task of the step's own (a progress watcher).
    pub fn emitter(&self) -> impl Fn(Event) + Send + 'static {
        let events = self.ctx.events.clone();
        move |e| {
            let _ = events.send(e);
        }
    }

    /// One object of this action done (progress and the JSON log).
    pub fn object_done(&self, object: impl Into<String>) {
        self.emit(Event::ObjectDone {
            step: self.step.id.clone(),
            object: object.into(),
            done: self.index,
            duration_ms: self.started.elapsed().as_millis() as u64,
        });
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning {
            step: self.step.id.clone(),
            message: message.into(),
        });
    }

    /// Something undone now (a torn file line cut, a stale file removed).
    pub fn undone(&self, what: impl Into<String>) {
        self.emit(Event::RolledBack {
            step: self.step.id.clone(),
            what: what.into(),
        });
    }

    /// No new batch may start (see the executor's rules).
    pub async fn expired(&self) -> bool {
        self.ctx.expired().await
    }

    pub fn why_stopped(&self) -> &'static str {
        self.ctx.why_stopped()
    }

    /// The step's statement timeout, capped by the run's time left.
    pub fn statement_timeout(&self) -> Duration {
        self.ctx.statement_timeout(self.step)
    }

    /// Limits for a second session of the step (same timeouts).
    pub fn session_limits(&self) -> SessionLimits {
        session_limits(self.step, self.ctx)
    }

    pub fn target(&self) -> &Target {
        &self.ctx.target
    }

    pub fn run_id(&self) -> i64 {
        self.ctx.run_id
    }

    /// Re-planning at step start: only `objects` of the step's actions run
    /// (actions without an object always do); `note` says what changed.
    pub fn keep_only(&mut self, objects: Vec<String>, note: String) {
        self.acc.keep = Some(objects);
        self.acc.r.reselected = Some(note);
    }

    /// The next batch number of the step (the journal's key).
    pub fn next_batch(&mut self) -> u64 {
        self.acc.batch_no += 1;
        self.acc.batch_no
    }

    /// The step's session, opened on first use.
    pub async fn session(&mut self) -> Result<&mut Conn, StepErr> {
        if self.conn.is_none() {
            let c = connect(&self.ctx.target, session_limits(self.step, self.ctx))
                .await
                .map_err(|e| StepErr::failed(e.message))?;
            *self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StepErr::failed("the step's session is gone"))
    }

    /// The step's session with its statement timeout set, for reading
    /// queries (`check`, `stats`, `bloat`).
    pub async fn read_session(&mut self) -> Result<&mut Conn, StepErr> {
        let timeout = self.statement_timeout();
        self.session().await?;
        let (Some(c), acc) = (self.conn.as_mut(), &mut *self.acc) else {
            return Err(StepErr::failed("the step's session is gone"));
        };
        set_timeout(c, acc, timeout)
            .await
            .map_err(|e| StepErr::failed(e.message))?;
        Ok(c)
    }

    /// The step's session and figures, with the session's statement
    /// timeout set (capped) first when `timeout` is given: one attempt of a
    /// call [`Self::retrying`] decides about.
    pub async fn attempt(&mut self, timeout: Option<Duration>) -> Result<(&mut Conn, &mut StepResult), DbError> {
        self.session().await.map_err(|e| DbError::other(e.message))?;
        let Some(c) = self.conn.as_mut() else {
            return Err(DbError::other("the step's session is gone"));
        };
        if let Some(t) = timeout {
            set_timeout(c, self.acc, t).await?;
        }
        Ok((c, &mut self.acc.r))
    }

    /// After one attempt: `None` when it met a lock timeout and the step
    /// has retries left (the backoff has been waited; attempt again), else
    /// the result to keep — every other error, and the last lock timeout
    /// with the attempts it took. [`with_retries!`](crate::with_retries)
    /// writes the loop; write it by hand only to change what the next
    /// attempt runs (`partitions` does: a pending detach is finalized).
    pub async fn retrying<T>(&mut self, tries: &mut u64, result: Result<T, DbError>) -> Option<Result<T, DbError>> {
        let (step, ctx) = (self.step, self.ctx);
        match result {
            Err(e) if e.kind == ErrorKind::LockTimeout && *tries < step.retries => {
                *tries += 1;
                self.acc.r.retries += 1;
                let wait = backoff(*tries);
                ctx.emit(Event::Retrying {
                    step: step.id.clone(),
                    attempt: *tries,
                    wait_ms: wait.as_millis() as u64,
                    error: e.message.clone(),
                });
                if ctx.time_left().is_some_and(|t| t < wait) {
                    return Some(Err(e));
                }
                tokio::time::sleep(wait).await;
                None
            }
            Err(e) if e.kind == ErrorKind::LockTimeout => Some(Err(DbError {
                kind: e.kind,
                message: format!(
                    "{} (lock not granted within {} ms, {} attempts)",
                    e.message,
                    step.lock_timeout_ms,
                    *tries + 1
                ),
            })),
            other => Some(other),
        }
    }

    /// One statement on its own, with the capped statement timeout and
    /// retries.
    pub async fn exec(&mut self, sql: &str) -> Result<(), DbError> {
        let timeout = self.statement_timeout();
        crate::with_retries!(self, Some(timeout), |c, _| c.execute(sql).await.map(|_| ()))
    }

    /// Statements in one writing transaction, with retries.
    pub async fn transaction(&mut self, statements: &[String]) -> Result<(), DbError> {
        crate::with_retries!(self, None, |c, _| c.execute_in_transaction(statements).await)
    }
}

/// Runs `$body` on the step's session (`$c`, with the step's figures as
/// `$r`) until it succeeds, fails otherwise than on a lock timeout, or the
/// step's retries are spent: [`StepRun::attempt`] then
/// [`StepRun::retrying`], the one loop every operation's execution uses.
/// A macro, not a closure-taking method: an async closure borrowing the
/// session makes the step's future not `Send`.
#[macro_export]
macro_rules! with_retries {
    ($run:expr, $timeout:expr, |$c:pat_param, $r:pat_param| $body:expr) => {{
        let mut tries = 0;
        loop {
            let result = match $run.attempt($timeout).await {
                Ok(($c, $r)) => $body,
                Err(e) => Err(e),
            };
            if let Some(result) = $run.retrying(&mut tries, result).await {
                break result;
            }
        }
    }};
}

/// A step's session limits.
pub(crate) fn session_limits(step: &PlannedStep, ctx: &Ctx) -> SessionLimits {
    SessionLimits {
        lock_timeout: Duration::from_millis(step.lock_timeout_ms),
        statement_timeout: ctx.statement_timeout(step),
        read_only: false,
    }
}

/// The wait before retry `attempt` (1-based): 250 ms, doubling, at most 5 s.
fn backoff(attempt: u64) -> Duration {
    (BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1) as u32)).min(Duration::from_secs(5))
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
