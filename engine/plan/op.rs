//! What the plan language knows of an operation: a step holds one
//! operation key with its parameters. Each operation (in `ops/`) declares
//! its parameters as an [`OpParams`] type; the language reaches them only
//! through [`StepOp`] (decode, check, serialize) and the installed
//! [`OpCatalog`] (which keys exist, their JSON Schemas), so this room never
//! names an operation. `load`, `load_str` and `plan_schema_json` take the
//! catalog as a parameter (the crate root passes `ops::REGISTRY`) and
//! install it for the decoders and the schema, which cannot take one.

use std::any::Any;
use std::fmt::Debug;
use std::sync::OnceLock;

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

/// An operation's parameters: declared with `params!` (unknown keys are
/// errors, the JSON Schema comes from the same declaration).
pub trait OpParams: Decode + Clone + PartialEq + serde::Serialize + Debug + Send + Sync + 'static {
    /// The operation key a plan writes (`retention:`).
    const KEY: &'static str;
    /// Backends that can run the operation.
    const BACKENDS: &'static [Backend];
    /// Rules beyond types; report through `check`.
    fn check(&self, _check: &mut OpCheck<'_>) {}
}

/// One step's operation and parameters, as the language handles it.
pub trait StepOp: Debug + Send + Sync + 'static {
    fn key(&self) -> &'static str;
    fn backends(&self) -> &'static [Backend];
    fn check(&self, check: &mut OpCheck<'_>);
    /// The parameters as a plan file writes them.
    fn params_json(&self) -> serde_json::Value;
    fn clone_op(&self) -> Box<dyn StepOp>;
    fn same_as(&self, other: &dyn StepOp) -> bool;
    /// For the operation's own code to get its parameters back.
    fn as_any(&self) -> &dyn Any;
}

impl<T: OpParams> StepOp for T {
    fn key(&self) -> &'static str {
        T::KEY
    }

    fn backends(&self) -> &'static [Backend] {
        T::BACKENDS
    }

    fn check(&self, check: &mut OpCheck<'_>) {
        OpParams::check(self, check)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn clone_op(&self) -> Box<dyn StepOp> {
        Box::new(self.clone())
    }

    fn same_as(&self, other: &dyn StepOp) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Clone for Box<dyn StepOp> {
    fn clone(&self) -> Self {
        self.clone_op()
    }
}

impl PartialEq for dyn StepOp {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

/// The operations a plan may use: their keys, their decoders and schemas.
pub trait OpCatalog: Debug + Send + Sync {
    /// Every operation key, in the spec's order.
    fn keys(&self) -> &'static [&'static str];
    /// Decodes the parameters under operation key `key`; `None` for an
    /// unknown key or invalid parameters (reported through `cx`).
    fn decode(&self, key: &str, node: &Node, cx: &mut Cx) -> Option<Box<dyn StepOp>>;
    /// JSON Schema of each operation key's value.
    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)>;
}

static CATALOG: OnceLock<&'static dyn OpCatalog> = OnceLock::new();

/// Installs the operations the language decodes (once per process; later
/// calls keep the first).
pub fn install(catalog: &'static dyn OpCatalog) {
    let _ = CATALOG.set(catalog);
}

/// The installed operations.
pub fn catalog() -> &'static dyn OpCatalog {
    *CATALOG
        .get()
        .expect("no operations installed: plans are loaded through plan::load, which installs them")
}
