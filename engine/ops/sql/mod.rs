//! `sql`: trusted SQL written by the plan's author, shown verbatim in the
//! diff and report. The escape hatch: the engine cannot predict its effect.

pub mod authorsql;
pub mod preview;

use super::{BOTH, OpCheck, OpParams, get};
use crate::plan::values::Backend;
use crate::run::execplan::{Action, Marker};
use crate::run::planner::{Draft, PlanCx};

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
    const KEY: &'static str = "sql";
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
        if let Some(q) = &self.dry_run
            && let Err(p) = crate::ops::sql::authorsql::read_only_query(&q.value, c.backend)
        {
            c.error("side-effect-in-dry-run", q.pos, p.message, p.hint);
        }
        let in_tx = self.transaction.as_ref().is_none_or(|t| t.value);
        if in_tx && let Some(stmt) = crate::ops::sql::authorsql::transaction_control(&self.sql.value, c.backend) {
            c.error(
                "invalid-combination",
                self.sql.pos,
                format!("`{stmt}` ends or starts a transaction inside the step's own (`transaction: true`)"),
                "remove it (the step commits or rolls back as a whole), or set `transaction: false` to run statement by statement",
            );
        }
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

/// Marks author SQL wherever it is shown: the engine runs it as written.
pub const AUTHOR_SQL: &str = "author SQL, run as written (dbmaint cannot check or predict it)";

impl Sql {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let transaction = get(&self.transaction).unwrap_or(true);
        let first_line = self.sql.value.trim().lines().next().unwrap_or("").trim();
        let short: String = first_line.chars().take(72).collect();
        let mut d = Draft {
            marker: Some(Marker::Change),
            summary: format!(
                "{AUTHOR_SQL}: `{short}{}`",
                if short.len() < self.sql.value.trim().len() {
                    " …"
                } else {
                    ""
                }
            ),
            lock: "whatever the author SQL takes".into(),
            transactional: transaction,
            compensation: if transaction {
                "one transaction: a failure rolls all of it back".into()
            } else {
                "not transactional (`transaction: false`): statements that ran before a failure stay done".into()
            },
            ..Draft::default()
        };
        if let Some(q) = &self.dry_run {
            match cx.insp.fact::<preview::QueryPreview>(&cx.step.id) {
                Some(p) if p.error.is_some() => d.errors.push(format!(
                    "the `dry_run` query failed on a read-only session: {}; it must be a read-only query describing the effect",
                    p.error.as_deref().unwrap_or("")
                )),
                Some(p) => {
                    d.object(
                        Marker::Read,
                        "dry_run",
                        p.columns.join(" | "),
                        match (p.rows.len(), p.truncated) {
                            (0, _) => "no rows".to_string(),
                            (n, false) => format!("{n} rows"),
                            (n, true) => format!("first {n} rows shown"),
                        },
                        serde_json::json!({"columns": p.columns, "rows": p.rows, "truncated": p.truncated}),
                    );
                    for row in &p.rows {
                        d.object(Marker::Read, "row", row.join(" | "), String::new(), serde_json::json!({}));
                    }
                    d.statements.push(format!("-- dry_run: {}", q.value.trim()));
                }
                None => d.warnings.push("the `dry_run` query was not run".into()),
            }
        }
        d.statements.push(self.sql.value.trim().to_string());
        // `transaction: false` runs statement by statement (split with the
        // SQL tokenizer), so earlier statements stay when a later one fails
        // and `VACUUM a; VACUUM b` works.
        let statements = if transaction {
            vec![]
        } else {
            crate::ops::sql::authorsql::split_statements(&self.sql.value, Some(cx.backend))
                .unwrap_or_else(|_| vec![self.sql.value.clone()])
        };
        d.actions.push(Action::Sql {
            sql: self.sql.value.clone(),
            transaction,
            statements,
        });
        d
    }
}

impl crate::run::operation::Operation for Sql {
    /// The `dry_run` query's first rows, on the read-only session.
    fn read<'a>(
        &'a self,
        step: &'a crate::plan::Step,
        insp: &'a mut crate::run::inspect::Inspection,
        conn: &'a mut crate::db::Conn,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(q) = &self.dry_run {
                insp.keep(step.id.clone(), preview::preview(conn, &q.value).await);
            }
        })
    }

    fn plan(&self, cx: &PlanCx) -> Draft {
        Sql::plan(self, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn transaction_control_is_refused_inside_the_steps_transaction() {
        assert_eq!(
            findings::<Sql>(
                "{sql: 'UPDATE t SET a = 1; COMMIT; UPDATE t SET a = 2'}",
                Backend::Postgres
            ),
            ["invalid-combination"]
        );
        assert!(
            findings::<Sql>(
                "{sql: 'BEGIN; UPDATE t SET a = 1; COMMIT', transaction: false}",
                Backend::Postgres
            )
            .is_empty()
        );
    }

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
