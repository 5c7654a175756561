//! `bloat`: table and index bloat estimates; findings over the threshold are
//! warnings. Changes nothing.

use super::{BOTH, OpCheck, OpParams};
use crate::values::{Backend, NameGlob, Ratio};

crate::params! {
    /// Parameters of `bloat`.
    pub struct Bloat ("bloat parameters") {
        required {}
        optional {
            /// Report relations whose estimated waste reaches this ratio (default 0.2).
            min_waste_ratio: Ratio,
            /// Exact figures from `pgstattuple` when the extension is installed (never installed by the engine).
            exact: bool,
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Skip relations smaller than this many bytes (default 1 MiB), as check_postgres does.
            min_bytes: u64,
        }
    }
}

impl OpParams for Bloat {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.not_on(&self.exact, "exact", Backend::Sqlite);
        c.not_on(&self.tables, "tables", Backend::Sqlite);
    }
}
