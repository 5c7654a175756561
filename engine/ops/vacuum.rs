//! `vacuum`: `VACUUM (ANALYZE, FREEZE)` per selected table on PostgreSQL,
//! `VACUUM` of the file on SQLite when its free-page ratio is high enough.

use super::{BOTH, OpCheck, OpParams};
use crate::values::{Backend, NameGlob, Ratio};

crate::params! {
    /// Parameters of `vacuum`.
    pub struct Vacuum ("vacuum parameters") {
        required {}
        optional {
            /// Tables to consider (globs); default all.
            tables: Vec<NameGlob>,
            /// Tables to leave out (globs).
            exclude: Vec<NameGlob>,
            /// Also ANALYZE the vacuumed tables (default true).
            analyze: bool,
            /// `VACUUM (FREEZE)` (PostgreSQL).
            freeze: bool,
            /// `VACUUM FULL`: rewrites the table under ACCESS EXCLUSIVE; needs `allow_exclusive_lock: true`.
            full: bool,
            /// Acknowledges that this step blocks readers and writers while it runs.
            allow_exclusive_lock: bool,
            /// Vacuum tables whose dead / (live + dead) tuples reach this ratio (SQLite: freelist / page count).
            min_dead_ratio: Ratio,
            /// Vacuum tables with at least this many dead tuples (PostgreSQL).
            min_dead_tuples: u64,
            /// Vacuum tables whose relfrozenxid age reaches this (PostgreSQL).
            min_xid_age: u64,
        }
    }
}

impl OpParams for Vacuum {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        let allowed = self.allow_exclusive_lock.as_ref().is_some_and(|a| a.value);
        if let Some(full) = self.full.as_ref().filter(|f| f.value)
            && !allowed
        {
            let step = c.step;
            c.error(
                    "exclusive-lock",
                    full.pos,
                    format!("`full: true` in step `{step}` takes an ACCESS EXCLUSIVE lock: every reader and writer of each table waits until it is rewritten"),
                    "add `allow_exclusive_lock: true` to accept that, or drop `full` (plain VACUUM takes no such lock)",
                );
        }
        c.in_range(&self.min_xid_age, "min_xid_age", 0..=2_000_000_000);
        c.not_on(&self.freeze, "freeze", Backend::Sqlite);
        c.not_on(&self.min_dead_tuples, "min_dead_tuples", Backend::Sqlite);
        c.not_on(&self.min_xid_age, "min_xid_age", Backend::Sqlite);
        c.not_on(&self.tables, "tables", Backend::Sqlite);
        c.not_on(&self.exclude, "exclude", Backend::Sqlite);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn full_needs_an_explicit_exclusive_lock() {
        assert_eq!(
            findings::<Vacuum>("{full: true}", Backend::Postgres),
            ["exclusive-lock"]
        );
        assert!(findings::<Vacuum>("{full: true, allow_exclusive_lock: true}", Backend::Postgres).is_empty());
    }

    #[test]
    fn ratio_outside_zero_one_is_rejected() {
        assert_eq!(
            findings::<Vacuum>("{min_dead_ratio: 20}", Backend::Postgres),
            ["invalid-value"]
        );
        assert!(findings::<Vacuum>("{min_dead_ratio: 0.2, tables: [audit_*]}", Backend::Postgres).is_empty());
    }
}
