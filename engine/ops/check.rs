//! `check`: health findings (long queries, unused and duplicate indexes,
//! foreign keys without an index, connections, locks, xid age, sequences;
//! SQLite integrity and foreign keys). Acts only on long queries, and only
//! when `cancel`/`terminate` say so.

use super::{OpCheck, OpParams};
use crate::decode::Sp;
use crate::values::{Backend, Duration, Ratio};

crate::keywords! {
    /// One health check.
    pub enum CheckName ("a check name") {
        LongQueries = "long_queries",
        UnusedIndexes = "unused_indexes",
        DuplicateIndexes = "duplicate_indexes",
        FkWithoutIndex = "fk_without_index",
        Connections = "connections",
        Locks = "locks",
        XidAge = "xid_age",
        Sequences = "sequences",
        Integrity = "integrity",
        ForeignKeys = "foreign_keys",
    }
}

impl CheckName {
    pub fn backend(self) -> Backend {
        match self {
            Self::Integrity | Self::ForeignKeys => Backend::Sqlite,
            _ => Backend::Postgres,
        }
    }

    /// The checks a backend offers (the default of `checks`).
    pub fn for_backend(backend: Backend) -> Vec<Self> {
        use CheckName::*;
        [
            LongQueries,
            UnusedIndexes,
            DuplicateIndexes,
            FkWithoutIndex,
            Connections,
            Locks,
            XidAge,
            Sequences,
            Integrity,
            ForeignKeys,
        ]
        .into_iter()
        .filter(|c| c.backend() == backend)
        .collect()
    }
}

crate::keywords! {
    /// Which findings fail the step (so its dependents are skipped).
    pub enum FailOn ("`warning` or `error`") {
        Warning = "warning",
        Error = "error",
    }
}

crate::params! {
    /// Parameters of `check`.
    pub struct Check ("check parameters") {
        required {}
        optional {
            /// Which checks to run; default all the backend offers.
            checks: Vec<Sp<CheckName>>,
            /// Fail the step on findings of this severity or worse.
            fail_on: FailOn,
            /// `long_queries`: report queries running longer than this (default 10m).
            max_query_age: Duration,
            /// `long_queries`: cancel them (`pg_cancel_backend`).
            cancel: bool,
            /// `long_queries`: terminate those still running `grace` after the cancel.
            terminate: bool,
            /// Time between cancel and terminate (default 30s).
            grace: Duration,
            /// `connections`: warn above this share of `max_connections` (default 0.8).
            max_connections_ratio: Ratio,
            /// `sequences`: warn above this share of the column type's maximum (default 0.75).
            max_sequence_ratio: Ratio,
            /// `xid_age`: warn when this share of the wraparound horizon is used (default 0.5).
            max_xid_age_ratio: Ratio,
        }
    }
}

impl OpParams for Check {
    const BACKENDS: &'static [Backend] = super::BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        let step = c.step;
        if let (Some(checks), Some(backend)) = (&self.checks, c.backend) {
            for name in checks.value.iter().filter(|n| n.backend() != backend) {
                let offered: Vec<&str> = CheckName::for_backend(backend).iter().map(|c| c.as_str()).collect();
                c.error(
                    "unsupported-check",
                    name.pos,
                    format!("check `{}` in step `{step}` does not exist for {backend}", name.value),
                    &format!("{backend} offers: {}", offered.join(", ")),
                );
            }
        }
        let runs_long_queries = self
            .checks
            .as_ref()
            .is_none_or(|cs| cs.value.iter().any(|c| c.value == CheckName::LongQueries));
        for (field, key) in [(&self.cancel, "cancel"), (&self.terminate, "terminate")] {
            if let Some(f) = field.as_ref().filter(|f| f.value) {
                if !runs_long_queries {
                    c.error(
                        "invalid-combination",
                        f.pos,
                        format!("`{key}: true` acts on long queries, but `checks` leaves out `long_queries`"),
                        "add `long_queries` to `checks`",
                    );
                }
                if c.backend == Some(Backend::Sqlite) {
                    c.error(
                        "unsupported-backend",
                        f.pos,
                        format!("`{key}` needs PostgreSQL sessions; SQLite has none"),
                        "",
                    );
                }
            }
        }
        let cancels = self.cancel.as_ref().is_some_and(|f| f.value);
        if let Some(t) = self.terminate.as_ref().filter(|t| t.value && !cancels) {
            c.error(
                "invalid-combination",
                t.pos,
                "`terminate: true` needs `cancel: true`: a query is terminated only if a cancel did not stop it"
                    .to_string(),
                "add `cancel: true`",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn checks_must_exist_for_the_backend() {
        assert_eq!(
            findings::<Check>("{checks: [integrity]}", Backend::Postgres),
            ["unsupported-check"]
        );
        assert!(findings::<Check>("{checks: [integrity, foreign_keys]}", Backend::Sqlite).is_empty());
        assert_eq!(
            findings::<Check>("{checks: [long_query]}", Backend::Postgres),
            ["invalid-value"]
        );
    }

    #[test]
    fn terminate_follows_a_cancel() {
        assert_eq!(
            findings::<Check>("{terminate: true}", Backend::Postgres),
            ["invalid-combination"]
        );
        assert!(
            findings::<Check>(
                "{checks: [long_queries], cancel: true, terminate: true, max_query_age: 10m}",
                Backend::Postgres
            )
            .is_empty()
        );
    }
}
