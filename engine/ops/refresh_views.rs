//! `refresh_views`: `REFRESH MATERIALIZED VIEW [CONCURRENTLY]` (PostgreSQL only).

use super::{OpCheck, OpParams};
use crate::values::{Backend, NameGlob};

crate::params! {
    /// Parameters of `refresh_views`.
    pub struct RefreshViews ("refresh_views parameters") {
        required {}
        optional {
            /// Materialized views to refresh (globs); default all.
            views: Vec<NameGlob>,
            /// Views to leave out (globs).
            exclude: Vec<NameGlob>,
            /// `CONCURRENTLY` (default true): needs a unique index on the view; readers are not blocked.
            concurrently: bool,
            /// Acknowledges a non-concurrent refresh blocks readers of the view.
            allow_exclusive_lock: bool,
        }
    }
}

impl OpParams for RefreshViews {
    const BACKENDS: &'static [Backend] = &[Backend::Postgres];

    fn check(&self, c: &mut OpCheck<'_>) {
        super::reindex::exclusive_unless_concurrent(
            c,
            &self.concurrently,
            &self.allow_exclusive_lock,
            "REFRESH MATERIALIZED VIEW",
        );
    }
}
