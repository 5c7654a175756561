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

pub use plan::load::{LoadOptions, Loaded, load, load_str};
