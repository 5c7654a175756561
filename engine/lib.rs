//! dbmaint: declarative maintenance plans for PostgreSQL and SQLite.
//!
//! One room (folder) per stage, each importing only rooms below it
//! (docs/architecture.md has the owns/must-not table):
//!
//! ```text
//! plan/   plan.yaml ─yaml─▶ Node ─overlay+vars─▶ Node ─template─▶ Node
//!                   ─decode─▶ PlanDoc ─validate─▶ Plan ─graph─▶ StepGraph
//! db/     sessions, db::query, catalog, journal, lock (knows no operation)
//! run/    Plan ─compute─▶ Inspection ─planner─▶ ExecutionPlan ─executor─▶ events
//! ops/    one folder per operation: parameters, probe/read/plan, its SQL
//! report/ diff, progress and log lines, history and inspect text, metrics, probes
//! schedule/ cron, systemd, Kubernetes artifacts of a plan's `schedule:`
//! fleet/  inventories of databases and their selection
//! notify/ webhook, email, command after a run
//! ```
//!
//! This file is the composition root for library users: [`load`],
//! [`load_str`] and [`plan_schema_json`] hand the plan language the
//! operations of [`ops::REGISTRY`]; the command line (`cli/`) hands the
//! same registry to `run::compute`.

pub mod db;
pub mod demo;
pub mod fleet;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod report;
pub mod run;
pub mod schedule;

pub use plan::load::{LoadOptions, Loaded};

/// Loads a plan file through every stage (see [`plan::load::load`]), with
/// the operations of [`ops::REGISTRY`].
pub fn load(path: &std::path::Path, opts: &LoadOptions) -> Loaded {
    plan::load::load(path, opts, &ops::REGISTRY)
}

/// Loads a plan from text (see [`plan::load::load_str`]).
pub fn load_str(name: &str, text: &str, opts: &LoadOptions) -> Loaded {
    plan::load::load_str(name, text, opts, &ops::REGISTRY)
}

/// The JSON Schema of plan files, with every operation's parameters.
pub fn plan_schema_json() -> String {
    plan::schema::plan_schema_json(&ops::REGISTRY)
}
