//! `reindex`: `REINDEX INDEX CONCURRENTLY` of selected, bloated indexes on
//! PostgreSQL; `REINDEX` on SQLite.

use super::{BOTH, OpCheck, OpParams};
use crate::values::{Backend, NameGlob, Ratio};

crate::params! {
    /// Parameters of `reindex`.
    pub struct Reindex ("reindex parameters") {
        required {}
        optional {
            /// Indexes to consider (globs); default all.
            indexes: Vec<NameGlob>,
            /// Consider the indexes of these tables (globs).
            tables: Vec<NameGlob>,
            /// Indexes to leave out (globs).
            exclude: Vec<NameGlob>,
            /// `REINDEX … CONCURRENTLY` (default true). `false` takes ACCESS EXCLUSIVE on the table.
            concurrently: bool,
            /// Acknowledges a non-concurrent rebuild blocks the table.
            allow_exclusive_lock: bool,
            /// Rebuild indexes whose estimated bloat reaches this ratio.
            min_bloat_ratio: Ratio,
        }
    }
}

impl OpParams for Reindex {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        exclusive_unless_concurrent(c, &self.concurrently, &self.allow_exclusive_lock, "REINDEX");
        c.not_on(&self.concurrently, "concurrently", Backend::Sqlite);
    }
}

/// `concurrently: false` on PostgreSQL blocks readers for the whole rebuild;
/// a plan must say it accepts that, or it gets a warning.
pub(crate) fn exclusive_unless_concurrent(
    c: &mut OpCheck<'_>,
    concurrently: &Option<crate::decode::Sp<bool>>,
    allow: &Option<crate::decode::Sp<bool>>,
    what: &str,
) {
    let Some(conc) = concurrently.as_ref().filter(|c| !c.value) else {
        return;
    };
    if c.backend == Some(Backend::Sqlite) || allow.as_ref().is_some_and(|a| a.value) {
        return;
    }
    let step = c.step;
    c.warn(
        "exclusive-lock",
        conc.pos,
        format!("`concurrently: false` in step `{step}` runs {what} under an ACCESS EXCLUSIVE lock: readers wait until it finishes"),
        "keep `concurrently: true`, or add `allow_exclusive_lock: true` to acknowledge the lock",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn non_concurrent_reindex_warns_unless_acknowledged() {
        assert_eq!(
            findings::<Reindex>("{concurrently: false}", Backend::Postgres),
            ["exclusive-lock"]
        );
        assert!(findings::<Reindex>("{concurrently: false, allow_exclusive_lock: true}", Backend::Postgres).is_empty());
        assert!(findings::<Reindex>("{min_bloat_ratio: 0.3}", Backend::Postgres).is_empty());
    }
}
