//! SQLite's health checks.

use crate::db::DbError;
use crate::db::query::{Exec, query};

/// SQLite's checks: `PRAGMA integrity_check` and `PRAGMA foreign_key_check`.
pub async fn run_checks(
    c: &mut impl Exec,
    spec: &crate::ops::check::spec::CheckSpec,
) -> Result<Vec<crate::ops::check::spec::Finding>, DbError> {
    use crate::ops::check::CheckName as C;
    use crate::ops::check::spec::{Finding, Severity};
    let mut out = vec![];
    if spec.runs(C::Integrity) {
        // At most 100 problems, as SQLite reports them.
        let lines: Vec<String> = query("PRAGMA integrity_check(100)").scalars(&mut *c).await?;
        if !(lines.len() == 1 && lines[0] == "ok") {
            for line in lines {
                out.push(Finding::new(C::Integrity, Severity::Error, "database", line));
            }
        }
    }
    if spec.runs(C::ForeignKeys) {
        let rows: Vec<(String, String, i64)> =
            query("SELECT \"table\", parent, count(*) FROM pragma_foreign_key_check GROUP BY 1, 2 ORDER BY 1, 2")
                .fetch_all_as(&mut *c)
                .await?;
        for (table, parent, n) in rows {
            out.push(
                Finding::new(
                    C::ForeignKeys,
                    Severity::Error,
                    table.clone(),
                    format!("{n} rows reference missing rows of `{parent}`"),
                )
                .with(serde_json::json!({"rows": n, "parent": parent})),
            );
        }
    }
    Ok(out)
}
