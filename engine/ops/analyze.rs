//! `analyze`: `ANALYZE` of tables modified enough since their last analyze
//! (PostgreSQL), `ANALYZE` or `PRAGMA optimize` (SQLite).

use super::{BOTH, OpCheck, OpParams};
use crate::values::{Backend, NameGlob, Ratio};

crate::params! {
    /// Parameters of `analyze`.
    pub struct Analyze ("analyze parameters") {
        required {}
        optional {
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Tables to leave out (globs).
            exclude: Vec<NameGlob>,
            /// Analyze tables whose rows modified since the last analyze / live rows reach this ratio (PostgreSQL).
            min_mod_ratio: Ratio,
            /// SQLite: run `PRAGMA optimize` instead of a full `ANALYZE`.
            optimize: bool,
        }
    }
}

impl OpParams for Analyze {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.not_on(&self.optimize, "optimize", Backend::Postgres);
        c.not_on(&self.min_mod_ratio, "min_mod_ratio", Backend::Sqlite);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn sqlite_only_option_warns_on_postgres() {
        assert_eq!(
            findings::<Analyze>("{optimize: true}", Backend::Postgres),
            ["ignored-param"]
        );
        assert!(findings::<Analyze>("{min_mod_ratio: 0.1}", Backend::Postgres).is_empty());
    }
}
