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

pub mod applylock;
pub mod archive;
pub mod archivetypes;
pub mod authorsql;
pub mod backup;
pub mod bloat;
pub mod checks;
pub mod db;
pub mod decode;
pub mod demo;
pub mod diag;
pub mod diff;
pub mod doc;
pub mod events;
pub mod execplan;
pub mod executor;
pub mod exit;
pub mod graph;
pub mod inspect;
pub mod keydigest;
pub mod load;
pub mod node;
pub mod ops;
pub mod overlay;
pub mod plan;
pub mod planner;
pub mod reporter;
pub mod run;
pub mod schema;
pub mod source;
pub mod stats;
pub mod template;
pub mod textsafe;
pub mod timefmt;
pub mod triggerbody;
pub mod validate;
pub mod values;
pub mod verify;
pub mod yaml;

pub use load::{LoadOptions, Loaded, load, load_str};
