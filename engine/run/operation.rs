//! The engine's side of an operation: what a step reads before planning
//! and how it plans. Each operation implements [`Operation`] in its folder
//! under `ops/`; the engine reaches it through the [`Registry`] the command
//! line hands to `run::compute`, so nothing in `run/` names an operation
//! (as Terraform's core drives providers through one interface).

use futures_util::future::BoxFuture;

use crate::db::{Conn, DbError};
use crate::plan::Step;
use crate::plan::op::StepOp;
use crate::run::inspect::Inspection;
use crate::run::planner::{Draft, PlanCx};

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

    /// Reads, after the snapshot on the same read-only session, what the
    /// step reports or previews (a `sql` dry run, a report); errors are the
    /// operation's to keep in what it stores (the diff shows them).
    fn read<'a>(&'a self, _step: &'a Step, _insp: &'a mut Inspection, _conn: &'a mut Conn) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Plans the step: actions, statements, objects, estimate, errors.
    fn plan(&self, cx: &PlanCx) -> Draft;
}

/// Something an operation read, kept in the inspection for its planning.
pub type Fact = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// Finds the engine side of a plan step's operation.
pub trait Registry: Send + Sync {
    fn operation<'a>(&self, op: &'a dyn StepOp) -> &'a dyn Operation;
}
