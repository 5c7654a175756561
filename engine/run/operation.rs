//! The engine's side of an operation: what a step reads before planning,
//! how it plans, and how it runs the work it planned. Each operation implements [`Operation`] in its folder
//! under `ops/`; the engine reaches it through the [`Registry`] the command
//! line hands to `run::compute`, so nothing in `run/` names an operation
//! (as Terraform's core drives providers through one interface).

use futures_util::future::BoxFuture;

use crate::db::{Conn, DbError};
use crate::plan::Step;
use crate::plan::op::StepOp;
use crate::run::execplan::PlannedStep;
use crate::run::inspect::Inspection;
use crate::run::planner::{Draft, PlanCx};
use crate::run::steprun::{StepErr, StepRun};

/// What an operation reads and how it plans.
pub trait Operation: Send + Sync {
    /// Reads, in the inspection's read-only snapshot and after the catalog,
    /// what planning needs counted at the same instant (retention's
    /// eligible rows); stores it in `insp` under keys it chooses. Fails
    /// the inspection on error.
    fn probe<'a>(
        &'a self,
        _cx: &'a PlanCx<'a>,
        _digest: bool,
        _conn: &'a mut Conn,
    ) -> BoxFuture<'a, Result<Vec<(String, Fact)>, DbError>> {
        Box::pin(async { Ok(vec![]) })
    }

    /// The tables whose sizes on disk planning this step needs from the
    /// catalog (`Measure::All` unless the operation says otherwise).
    fn measures(&self) -> crate::db::catalog::Measure {
        crate::db::catalog::Measure::All
    }

    /// Reads, after the snapshot on the same read-only session, what the
    /// step reports or previews (a `sql` dry run, a report); errors are the
    /// operation's to keep in what it stores (the diff shows them).
    fn read<'a>(&'a self, _step: &'a Step, _insp: &'a mut Inspection, _conn: &'a mut Conn) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Plans the step: actions, statements, objects, estimate, errors.
    fn plan(&self, cx: &PlanCx) -> Draft;
}

pub use crate::run::inspect::Fact;

/// How an operation runs the `Action::Op` work it planned, and what about
/// its planned step must not have changed before a saved plan is applied.
pub trait Executes: Send + Sync {
    /// The operation key (`Action::Op::op`).
    fn key(&self) -> &'static str;

    /// Runs one `Action::Op` of this operation.
    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut StepRun<'r>,
    ) -> BoxFuture<'a, Result<(), StepErr>>;

    /// What changed between the step as reviewed (`saved`) and as it would
    /// run now (`fresh`): refusals, and row changes `--accept-drift` may
    /// accept. By default, any other statement is a refusal.
    fn drift(&self, saved: &PlannedStep, fresh: &PlannedStep) -> StepDrift {
        default_drift(saved, fresh)
    }
}

/// The work of an `Action::Op` as the operation's own type; a payload that
/// does not decode (a saved plan from another version) fails the step.
pub fn decode_work<W: serde::de::DeserializeOwned>(op: &str, work: &serde_json::Value) -> Result<W, StepErr> {
    serde_json::from_value(work.clone()).map_err(|e| StepErr::failed(format!("`{op}` work: {e}")))
}

/// What a step's drift check found.
#[derive(Debug, Default)]
pub struct StepDrift {
    pub hard: Vec<String>,
    pub rows: Vec<String>,
}

/// The drift check of an operation that does not say otherwise: a step
/// that would run other statements than were reviewed is refused.
pub fn default_drift(saved: &PlannedStep, fresh: &PlannedStep) -> StepDrift {
    let mut d = StepDrift::default();
    if saved.statements != fresh.statements {
        d.hard.push(format!(
            "step `{}` would now run different statements (an object it names changed)",
            saved.id
        ));
    }
    d
}

/// Finds the engine side of a plan step's operation.
pub trait Registry: std::fmt::Debug + Send + Sync {
    fn operation<'a>(&self, op: &'a dyn StepOp) -> &'a dyn Operation;

    /// How operation `op` runs its `Action::Op` work; `None` for an
    /// operation whose actions are all statements.
    fn execution(&self, op: &str) -> Option<&'static dyn Executes>;
}
