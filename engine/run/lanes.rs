//! `jobs: N` (issue 14 §8): a step's actions on up to N sessions at once,
//! as `vacuumdb -j` and `reindexdb -j` do. Each lane has its own session
//! (the step's lock_timeout and statement_timeout, like any of its
//! sessions) and its own figures, added to the step's when every lane is
//! done. Two actions of one group never run at once: two
//! `REINDEX CONCURRENTLY` of one table's indexes would wait on each other's
//! SHARE UPDATE EXCLUSIVE lock, so a table's indexes go one after another
//! while other tables' run beside them.
//!
//! A lane other than the first that cannot open its session (the role's
//! `CONNECTION LIMIT`, `max_connections`, a pooler's limit) says so and
//! ends: the step goes on with fewer lanes instead of failing an object.
//!
//! A failure stops the lanes from starting more actions (unless
//! `on_object_failure: continue`); an action already running finishes. A
//! run that may start no new work (a signal, `max_runtime`) leaves the
//! actions not started, and the step is deferred.

use std::sync::Mutex;
use std::time::Duration;

use crate::db::{Conn, connect};
use crate::run::events::{Event, ObjectOutcome, Status, StepResult};
use crate::run::execplan::PlannedStep;
use crate::run::executor::{run_one, settle_objects, undo};
use crate::run::operation::Registry;
use crate::run::steprun::{Acc, Ctx, StepErr, StepErrKind, StepRun, session_limits};
use crate::run::throttle::Throttle;

/// What the lanes share: the actions not started, the groups running.
struct Queue {
    pending: Vec<usize>,
    busy: Vec<String>,
    /// The failure that ends the step (no `on_object_failure: continue`).
    stop: Option<StepErr>,
}

/// The first of `pending` (action indexes, in plan order) whose group is
/// not `busy`: its position in `pending`.
fn pick<'a>(pending: &[usize], busy: &[String], group: impl Fn(usize) -> Option<&'a str>) -> Option<usize> {
    pending
        .iter()
        .position(|&i| group(i).is_none_or(|g| !busy.iter().any(|b| b == g)))
}

/// Runs `step`'s actions on `lanes` sessions; its figures land in `acc`.
pub(crate) async fn run(
    step: &PlannedStep,
    ctx: &Ctx,
    acc: &mut Acc,
    ops: &dyn Registry,
    lanes: usize,
    chosen: Vec<usize>,
) -> Result<(), StepErr> {
    let total = chosen.len() as u64;
    let shared = Mutex::new(Queue {
        pending: chosen,
        busy: vec![],
        stop: None,
    });
    let queue = &shared;
    // The first lane's session before the others try theirs: under a
    // connection limit, the first lane is the one that must have it.
    let first = std::sync::Mutex::new(connect(&ctx.target, session_limits(step, ctx)).await.ok());
    let first = &first;
    let group = |i: usize| step.actions[i].lane_group();
    let lane = |n: usize| async move {
        let mut conn: Option<Conn> = if n == 0 {
            first.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            match connect(&ctx.target, session_limits(step, ctx)).await {
                Ok(c) => Some(c),
                Err(e) => {
                    ctx.emit(Event::Warning {
                        step: step.id.clone(),
                        message: format!(
                            "jobs: session {} of {lanes} could not be opened ({}); the step goes on with fewer",
                            n + 1,
                            e.message
                        ),
                    });
                    return StepResult::new(&step.id, &step.op, Status::Succeeded);
                }
            }
        };
        let mut mine = Acc {
            r: StepResult::new(&step.id, &step.op, Status::Succeeded),
            timeout_set: None,
            batch_no: 0,
            keep: None,
        };
        // Each lane reads the load before its next object (`throttle`).
        let mut throttle = step.throttle.clone().map(|l| Throttle::between(l, "objects"));
        loop {
            if ctx.expired().await {
                break;
            }
            if let Some(t) = throttle.as_mut() {
                let mut run = StepRun::new(step, ctx, &mut mine, &mut conn, 0);
                if let Err(e) = t.wait(&mut run).await {
                    queue.lock().unwrap_or_else(|p| p.into_inner()).stop.get_or_insert(e);
                    break;
                }
            }
            let next = {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.stop.is_some() || q.pending.is_empty() {
                    break;
                }
                pick(&q.pending, &q.busy, group).map(|pos| {
                    let i = q.pending.remove(pos);
                    if let Some(g) = group(i) {
                        q.busy.push(g.to_string());
                    }
                    i
                })
            };
            // Every pending action's group is running in another lane:
            // wait for one to finish.
            let Some(i) = next else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let action = &step.actions[i];
            let mut run = StepRun::new(step, ctx, &mut mine, &mut conn, i as u64 + 1);
            let result = run_one(&mut run, action, ops).await;
            if let Err(e) = result {
                undo(step, ctx, &mut mine, i as u64 + 1, action, ops).await;
                let object = action.object().unwrap_or_default().to_string();
                if step.objects_continue && total > 1 && e.kind == StepErrKind::Failed && !object.is_empty() {
                    ctx.emit(Event::Warning {
                        step: step.id.clone(),
                        message: format!("{}; the step's other objects go on", e.message),
                    });
                    mine.r.objects_failed.push(ObjectOutcome::failed(&object, &e.message));
                    if let Some(c) = conn.take() {
                        c.close().await;
                    }
                } else {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.stop.get_or_insert(e);
                }
            }
            if let Some(g) = group(i) {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(pos) = q.busy.iter().position(|b| b == g) {
                    q.busy.remove(pos);
                }
            }
        }
        mine.r
    };
    let done = futures_util::future::join_all((0..lanes).map(lane)).await;
    for r in done {
        acc.r.absorb(r);
    }
    let q = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = q.stop {
        return Err(e);
    }
    if !q.pending.is_empty() {
        return Err(StepErr::deferred(format!(
            "{}: {} of {total} actions not started",
            ctx.why_stopped(),
            q.pending.len()
        )));
    }
    settle_objects(total, &mut acc.r)
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn a_busy_groups_actions_wait_and_the_next_free_one_goes() {
        let groups = ["a", "a", "b", "c"];
        let g = |i: usize| Some(groups[i]);
        assert_eq!(pick(&[0, 1, 2, 3], &[], g), Some(0), "plan order first");
        assert_eq!(
            pick(&[1, 2, 3], &["a".into()], g),
            Some(1),
            "table a's second index waits; b goes"
        );
        assert_eq!(pick(&[1], &["a".into()], g), None, "only a's left while a runs: wait");
        assert_eq!(pick(&[1, 3], &["a".into(), "c".into()], g), None);
        let none = |_: usize| None;
        assert_eq!(pick(&[5, 6], &["x".into()], none), Some(0), "no group: never waits");
    }
}
