//! `stats`: a size and activity report; changes nothing.

use super::{BOTH, OpCheck, OpParams};
use crate::values::Backend;

crate::params! {
    /// Parameters of `stats`.
    pub struct Stats ("stats parameters") {
        required {}
        optional {
            /// How many of the largest tables and indexes to list (default 20).
            top: u64,
        }
    }
}

impl OpParams for Stats {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.in_range(&self.top, "top", 1..=10_000);
    }
}
