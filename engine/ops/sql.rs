//! `sql`: trusted SQL written by the plan's author, shown verbatim in the
//! diff and report. The escape hatch: the engine cannot predict its effect.

use super::{BOTH, OpCheck, OpParams};
use crate::values::Backend;

crate::params! {
    /// Parameters of `sql`.
    pub struct Sql ("sql parameters") {
        required {
            /// The SQL to run, verbatim.
            sql: String,
        }
        optional {
            /// Run inside one transaction (default true), rolled back on failure.
            transaction: bool,
            /// A read-only query whose result describes the effect in the diff, e.g. `SELECT count(*) …`.
            dry_run: String,
        }
    }
}

impl OpParams for Sql {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        if self.sql.value.trim().is_empty() {
            c.error(
                "invalid-value",
                self.sql.pos,
                "`sql` is empty".to_string(),
                "write the statement to run",
            );
        }
        let in_tx = self.transaction.as_ref().is_none_or(|t| t.value);
        let upper = self.sql.value.to_ascii_uppercase();
        if in_tx && (upper.contains("CONCURRENTLY") || upper.trim_start().starts_with("VACUUM")) {
            c.error(
                "invalid-combination",
                self.sql.pos,
                "this SQL cannot run inside a transaction (VACUUM and … CONCURRENTLY refuse to)".to_string(),
                "set `transaction: false`",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn concurrently_cannot_run_in_a_transaction() {
        assert_eq!(
            findings::<Sql>("{sql: 'CREATE INDEX CONCURRENTLY i ON t (a)'}", Backend::Postgres),
            ["invalid-combination"]
        );
        assert!(
            findings::<Sql>(
                "{sql: 'CREATE INDEX CONCURRENTLY i ON t (a)', transaction: false}",
                Backend::Postgres
            )
            .is_empty()
        );
        assert_eq!(
            findings::<Sql>("{transaction: true}", Backend::Postgres),
            ["missing-key"]
        );
    }
}
