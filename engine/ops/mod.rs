//! The operations a step can run, one file each. Each file owns its
//! parameters struct (declared with `params!`, so unknown keys are errors and
//! the JSON Schema comes from the same declaration), its validation rules and
//! its unit tests. Adding an operation touches its file and the `operations!`
//! list below.
//!
//! Executing operations is not here: this stage only knows what a plan says.

pub mod analyze;
pub mod backup;
pub mod bloat;
pub mod check;
pub mod inspect;
pub mod refresh_views;
pub mod reindex;
pub mod retention;
pub mod sql;
pub mod stats;
pub mod vacuum;

use crate::plan::decode::{Cx, Decode, Sp};
use crate::plan::diag::Diag;
use crate::plan::node::{Node, Pos};
use crate::plan::values::Backend;

/// What an operation's rules may look at: the backend (when the target is
/// known), the step, and where to report.
#[derive(Debug)]
pub struct OpCheck<'a> {
    pub backend: Option<Backend>,
    pub step: &'a str,
    pub cx: &'a mut Cx,
}

impl OpCheck<'_> {
    pub fn error(&mut self, code: &'static str, pos: Pos, message: String, hint: &str) {
        let d = Diag::error(code, message).at(pos, None);
        self.cx.error(if hint.is_empty() { d } else { d.hint(hint) });
    }

    pub fn warn(&mut self, code: &'static str, pos: Pos, message: String, hint: &str) {
        let d = Diag::warning(code, message).at(pos, None);
        self.cx.error(if hint.is_empty() { d } else { d.hint(hint) });
    }

    /// Warns that a parameter means nothing on this backend (it is ignored).
    pub fn not_on<T>(&mut self, field: &Option<Sp<T>>, key: &str, backend: Backend) {
        if let (Some(f), Some(b)) = (field, self.backend)
            && b == backend
        {
            let step = self.step;
            self.warn(
                "ignored-param",
                f.pos,
                format!("`{key}` has no effect on {b} (step `{step}`)"),
                "remove it, or keep it for a plan that also targets the other backend",
            );
        }
    }

    /// Reports a `batch_size`-like integer outside `range`.
    pub fn in_range(&mut self, field: &Option<Sp<u64>>, key: &str, range: std::ops::RangeInclusive<u64>) {
        if let Some(f) = field
            && !range.contains(&f.value)
        {
            self.error(
                "out-of-range",
                f.pos,
                format!("`{key}` is {}, outside {}..={}", f.value, range.start(), range.end()),
                "",
            );
        }
    }
}

/// Behaviour every operation's parameters provide.
pub trait OpParams: Decode {
    /// Backends that can run the operation.
    const BACKENDS: &'static [Backend];
    /// Rules beyond types; report through `check`.
    fn check(&self, _check: &mut OpCheck<'_>) {}
}

macro_rules! operations {
    ($( $(#[$m:meta])* $variant:ident($ty:ty) = $key:literal ),+ $(,)?) => {
        /// One step's operation and its parameters.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        // One value per step of a plan, built once: boxing the larger
        // parameter sets would save nothing worth an indirection.
        #[allow(clippy::large_enum_variant)]
        pub enum Operation { $( $(#[$m])* $variant($ty) ),+ }

        /// Every operation key, in the spec's order.
        pub const OP_KEYS: &[&str] = &[$($key),+];

        impl Operation {
            pub fn key(&self) -> &'static str {
                match self { $( Self::$variant(_) => $key ),+ }
            }

            pub fn backends(&self) -> &'static [Backend] {
                match self { $( Self::$variant(_) => <$ty as OpParams>::BACKENDS ),+ }
            }

            /// Decodes the parameters under operation key `key`.
            pub fn decode(key: &str, node: &Node, cx: &mut Cx) -> Option<Self> {
                match key {
                    $( $key => <$ty as Decode>::decode(node, cx).map(Self::$variant), )+
                    _ => None,
                }
            }

            pub fn check(&self, check: &mut OpCheck<'_>) {
                match self { $( Self::$variant(p) => p.check(check) ),+ }
            }

            /// JSON Schema of each operation key's value, for the step schema.
            pub fn schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$( ($key, generator.subschema_for::<$ty>()) ),+]
            }
        }
    };
}

operations! {
    Backup(backup::Backup) = "backup",
    Vacuum(vacuum::Vacuum) = "vacuum",
    Analyze(analyze::Analyze) = "analyze",
    Reindex(reindex::Reindex) = "reindex",
    Retention(retention::Retention) = "retention",
    RefreshViews(refresh_views::RefreshViews) = "refresh_views",
    Stats(stats::Stats) = "stats",
    Bloat(bloat::Bloat) = "bloat",
    Check(check::Check) = "check",
    Sql(sql::Sql) = "sql",
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
pub fn get<T: Clone>(field: &Option<Sp<T>>) -> Option<T> {
    field.as_ref().map(|f| f.value.clone())
}

/// The globs of an optional list parameter (empty when absent).
pub fn globs(field: &Option<Sp<Vec<crate::plan::values::NameGlob>>>) -> Vec<crate::plan::values::NameGlob> {
    get(field).unwrap_or_default()
}
