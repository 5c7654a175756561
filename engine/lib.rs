//! dbmaint: declarative maintenance plans for PostgreSQL and SQLite.
//!
//! The pipeline (see `docs/architecture.md`):
//!
//! ```text
//! plan.yaml ─yaml─▶ Node tree (spans) ─overlay+vars─▶ Node ─template─▶ Node
//!           ─decode─▶ PlanDoc ─validate─▶ Plan ─graph─▶ StepGraph
//! ```
//!
//! Each stage is a module with one input type and one output type;
//! diagnostics from every stage collect in one [`diag::Diagnostics`].
//!
//! The engine half then runs a validated plan against a database:
//!
//! ```text
//! Plan ─run::compute─▶ db::inspect (read-only) ─planner + ops─▶ ExecutionPlan
//!      ─diff─▶ text | JSON        ─executor─▶ events ─reporter─▶ report, journal
//! ```
//!
//! `db/` is the only module that talks to the database; `ops/` holds each
//! operation's parameters and planning; docs/architecture.md has the map.

pub mod db;
pub mod demo;
pub mod ops;
pub mod plan;
pub mod report;
pub mod run;

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
