//! `retention`: batched delete of rows older than a cutoff, optionally moving
//! them to an archive table or a JSON Lines file first.

use super::{BOTH, OpCheck, OpParams};
use crate::values::{Backend, Duration, Ident};

crate::params! {
    /// Where deleted rows are kept: exactly one of `table` or `file`.
    pub struct Archive ("archive parameters") {
        required {}
        optional {
            /// Archive table (created with the source's columns and primary key when missing).
            table: Ident,
            /// JSON Lines file, written and fsynced before the rows are deleted.
            file: String,
        }
    }
}

crate::params! {
    /// Parameters of `retention`.
    pub struct Retention ("retention parameters") {
        required {
            /// Table to delete from.
            table: Ident,
            /// Timestamp column compared with the cutoff.
            column: Ident,
            /// Rows with `column < now() - older_than` are removed; `0s` means "already past".
            older_than: Duration,
        }
        optional {
            /// Extra SQL condition, ANDed with the cutoff (author SQL, shown verbatim).
            r#where: String,
            /// Rows per batch, each batch one short transaction (default 10000).
            batch_size: u64,
            /// Stop after this many rows in one run.
            max_rows: u64,
            /// Sleep between batches, to leave room for live traffic.
            pause: Duration,
            /// Keep deleted rows: `{table: …}` or `{file: …}`.
            archive: Archive,
            /// Column that orders batches (default: the primary key).
            key: Ident,
        }
    }
}

/// Case-insensitive, schema-blind comparison: `public.t` and `T` may be one table.
fn same_table(a: &Ident, b: &Ident) -> bool {
    let (sa, na) = a.parts();
    let (sb, nb) = b.parts();
    na.eq_ignore_ascii_case(nb)
        && (sa.is_none() || sb.is_none() || sa.map(str::to_ascii_lowercase) == sb.map(str::to_ascii_lowercase))
}

impl OpParams for Retention {
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        c.in_range(&self.batch_size, "batch_size", 1..=1_000_000);
        c.in_range(&self.max_rows, "max_rows", 1..=u64::MAX);
        if let Some(w) = &self.r#where {
            if w.value.trim().is_empty() {
                c.error(
                    "invalid-value",
                    w.pos,
                    "`where` is empty".to_string(),
                    "remove it, or write a condition",
                );
            } else if w.value.contains(';') {
                c.error(
                    "invalid-value",
                    w.pos,
                    "`where` holds `;`: it is one condition, not statements".to_string(),
                    "write a boolean expression such as `status = 'done'`",
                );
            }
        }
        let Some(archive) = &self.archive else { return };
        let a = &archive.value;
        match (&a.table, &a.file) {
            (Some(_), Some(file)) => c.error(
                "invalid-combination",
                file.pos,
                "`archive` takes `table` or `file`, not both".to_string(),
                "keep one of them",
            ),
            (None, None) => c.error(
                "missing-key",
                archive.pos,
                "`archive` names neither `table` nor `file`".to_string(),
                "write `archive: {table: <table>_archive}` or `archive: {file: archive/<table>.jsonl}`",
            ),
            (Some(t), None) if same_table(&t.value, &self.table.value) => {
                let step = c.step;
                let d = crate::diag::Diag::error(
                    "archive-is-source",
                    format!(
                        "step `{step}` archives `{}` into itself: each batch would delete rows and insert them back",
                        t.value.0
                    ),
                )
                .at(t.pos, "archive table".to_string())
                .also(self.table.pos, "source table")
                .hint(format!("name another table, e.g. `{}_archive`", self.table.value.0));
                c.cx.error(d);
            }
            (None, Some(f)) if f.value.trim().is_empty() => c.error(
                "invalid-value",
                f.pos,
                "`archive.file` is empty".to_string(),
                "name a file, e.g. `archive/rows.jsonl`",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn archive_into_the_source_table_is_an_error() {
        let y = "{table: failed_task, column: deleted_at, older_than: 1d, archive: {table: public.FAILED_TASK}}";
        assert_eq!(findings::<Retention>(y, Backend::Postgres), ["archive-is-source"]);
    }

    #[test]
    fn batch_size_must_be_sane() {
        let y = "{table: t, column: c, older_than: 1d, batch_size: 0}";
        assert_eq!(findings::<Retention>(y, Backend::Postgres), ["out-of-range"]);
        let y = "{table: t, column: c, older_than: 1d, batch_size: 5000, archive: {file: a.jsonl}, where: \"status = 'x'\"}";
        assert!(findings::<Retention>(y, Backend::Postgres).is_empty());
    }

    #[test]
    fn missing_required_keys_are_each_reported() {
        assert_eq!(
            findings::<Retention>("{table: t}", Backend::Postgres),
            ["missing-key", "missing-key"]
        );
    }
}
