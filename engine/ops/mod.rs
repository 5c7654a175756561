//! The operations a step can run, one folder (or file) each. Each owns its
//! parameters (declared with `params!`, so unknown keys are errors and the
//! JSON Schema comes from the same declaration) and rules (`OpParams`),
//! what it reads and how it plans (`impl run::operation::Operation`), the
//! work it runs and its drift rule (`Executes`), its SQL per backend
//! (`pg.rs`, `sqlite.rs`, over `db::query`) and its unit tests. Adding an
//! operation is its folder and one line in `operations!` below (and one in
//! `EXECUTIONS` when it runs work of its own): they build [`REGISTRY`],
//! through which the plan language decodes (`OpCatalog`) and the engine
//! inspects, plans, executes and checks drift (`run::operation::Registry`).

pub mod analyze;
pub mod backup;
pub mod bloat;
pub mod check;
pub mod partitions;
pub mod refresh_views;
pub mod reindex;
pub mod retention;
pub mod sql;
pub mod stats;
pub mod throttle;
pub mod vacuum;

pub mod inspect;

use crate::plan::decode::{Cx, Decode, Sp};
use crate::plan::node::Node;
use crate::plan::op::{OpCatalog, StepOp};
pub use crate::plan::op::{OpCheck, OpParams};
use crate::plan::values::Backend;

macro_rules! operations {
    ($( $(#[$m:meta])* $variant:ident($ty:ty) ),+ $(,)?) => {
        /// A plan step's operation, borrowed with its concrete parameters:
        /// what the engine matches on (`Operation::of(&*step.op)`).
        #[derive(Debug, Clone, Copy)]
        pub enum Operation<'a> { $( $(#[$m])* $variant(&'a $ty) ),+ }

        /// Every operation key, in the spec's order.
        pub const OP_KEYS: &[&str] = &[$( <$ty as OpParams>::KEY ),+];

        impl<'a> Operation<'a> {
            /// The concrete parameters of a step's operation. Every
            /// `StepOp` of a loaded plan was decoded by [`REGISTRY`], so
            /// one of its types matches.
            pub fn of(op: &'a dyn StepOp) -> Self {
                let any = op.as_any();
                $( if let Some(p) = any.downcast_ref::<$ty>() { return Self::$variant(p); } )+
                unreachable!("operation `{}` was not decoded by ops::REGISTRY", op.key())
            }
        }

        /// The operations plans may use, for the plan language.
        #[derive(Debug)]
        pub struct Registry;

        /// The one registry: a new operation is one line in the list below.
        pub static REGISTRY: Registry = Registry;

        impl OpCatalog for Registry {
            fn keys(&self) -> &'static [&'static str] {
                OP_KEYS
            }

            fn decode(&self, key: &str, node: &Node, cx: &mut Cx) -> Option<Box<dyn StepOp>> {
                $( if key == <$ty as OpParams>::KEY {
                    return <$ty as Decode>::decode(node, cx).map(|p| Box::new(p) as Box<dyn StepOp>);
                } )+
                None
            }

            fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$( (<$ty as OpParams>::KEY, generator.subschema_for::<$ty>()) ),+]
            }
        }

        impl crate::run::operation::Registry for Registry {
            fn operation<'a>(&self, op: &'a dyn StepOp) -> &'a dyn crate::run::operation::Operation {
                match Operation::of(op) { $( Operation::$variant(p) => p ),+ }
            }

            fn execution(&self, op: &str) -> Option<&'static dyn crate::run::operation::Executes> {
                EXECUTIONS.iter().copied().find(|x| x.key() == op)
            }
        }
    };
}

/// The operations that run work of their own (`Action::Op`); the others'
/// actions are statements the executor runs itself.
static EXECUTIONS: &[&dyn crate::run::operation::Executes] = &[
    &backup::Run,
    &vacuum::Run,
    &reindex::Run,
    &retention::walk::Run,
    &stats::Run,
    &bloat::Run,
    &check::Run,
    &partitions::Run,
];

operations! {
    Backup(backup::Backup),
    Vacuum(vacuum::Vacuum),
    Analyze(analyze::Analyze),
    Reindex(reindex::Reindex),
    Retention(retention::Retention),
    Partitions(partitions::Partitions),
    RefreshViews(refresh_views::RefreshViews),
    Stats(stats::Stats),
    Bloat(bloat::Bloat),
    Check(check::Check),
    Sql(sql::Sql),
}

pub const BOTH: &[Backend] = &[Backend::Postgres, Backend::Sqlite];

/// Decodes `yaml` as `T` and runs its rules against `backend`; returns the
/// codes of every finding. For the operations' unit tests.
#[cfg(test)]
pub fn findings<T: OpParams>(yaml: &str, backend: Backend) -> Vec<&'static str> {
    let mut sources = crate::plan::source::Sources::new();
    let file = sources.add("t.yaml", yaml);
    let node = crate::plan::yaml::parse(&sources, file).expect("test YAML parses");
    let mut cx = Cx::default();
    if let Some(p) = T::decode(&node, &mut cx) {
        p.check(&mut OpCheck {
            backend: Some(backend),
            step: "s",
            cx: &mut cx,
        });
    }
    cx.diags.items.iter().map(|d| d.code).collect()
}

/// The value of an optional parameter, without its position.
/// Free bytes for unprivileged users in the filesystem holding `dir`
/// (backup's space check, SQLite VACUUM's).
pub fn free_bytes(dir: &str) -> nix::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// `jobs: N` on a per-table step (vacuum, analyze, reindex): 1..=64, and
/// PostgreSQL only (SQLite takes one writer at a time).
pub fn check_jobs(field: &Option<Sp<u64>>, c: &mut OpCheck<'_>) {
    c.in_range(field, "jobs", 1..=64);
    c.not_on(field, "jobs", Backend::Sqlite);
}

/// A step's `jobs` as the plan gives it (1 when absent, and on SQLite).
pub fn jobs(field: &Option<Sp<u64>>, backend: Backend) -> u64 {
    match backend {
        Backend::Postgres => get(field).unwrap_or(1).max(1),
        Backend::Sqlite => 1,
    }
}

pub fn get<T: Clone>(field: &Option<Sp<T>>) -> Option<T> {
    field.as_ref().map(|f| f.value.clone())
}

/// The globs of an optional list parameter (empty when absent).
pub fn globs(field: &Option<Sp<Vec<crate::plan::values::NameGlob>>>) -> Vec<crate::plan::values::NameGlob> {
    get(field).unwrap_or_default()
}
