//! What author SQL may be, checked with a real SQL parser before anything
//! runs (`plan validate`):
//!
//! - a retention `where:` is exactly one boolean expression: no statement
//!   separator, no comment, balanced parentheses, nothing after it. It is
//!   embedded as the parser's re-rendering, so `true) OR (true` can never
//!   widen the delete it is ANDed into.
//! - a `sql` step's `dry_run` runs on `plan diff`'s read-only session, where
//!   a function with side effects is not a write and would still act
//!   (terminate sessions, change settings, take locks, send notifies, move
//!   sequences, reach other servers): calls to them are refused.

use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::plan::values::Backend;

fn dialect(backend: Option<Backend>) -> Box<dyn Dialect> {
    match backend {
        Some(Backend::Sqlite) => Box::new(SQLiteDialect {}),
        _ => Box::new(PostgreSqlDialect {}),
    }
}

/// A problem with author SQL: what, and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlProblem {
    pub message: String,
    pub hint: &'static str,
}

fn problem(message: impl Into<String>, hint: &'static str) -> SqlProblem {
    SqlProblem {
        message: message.into(),
        hint,
    }
}

fn tokens(text: &str, backend: Option<Backend>) -> Result<Vec<Token>, SqlProblem> {
    let d = dialect(backend);
    Tokenizer::new(d.as_ref(), text)
        .tokenize()
        .map_err(|e| problem(format!("not valid SQL: {e}"), "check quotes and parentheses"))
}

/// Parses a `where:` condition; returns the text to embed (the parser's
/// rendering of the one expression).
pub fn condition(text: &str, backend: Option<Backend>) -> Result<String, SqlProblem> {
    for t in tokens(text, backend)? {
        match t {
            Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => {
                return Err(problem(
                    "`where` holds an SQL comment",
                    "remove the comment (`-- …` or `/* … */`); a YAML comment after the value (` # note`) is the place for notes",
                ));
            }
            Token::SemiColon => {
                return Err(problem(
                    "`where` holds `;`: it is one condition, not statements",
                    "write one boolean expression such as `status = 'done'`",
                ));
            }
            _ => {}
        }
    }
    let d = dialect(backend);
    let mut parser = Parser::new(d.as_ref())
        .try_with_sql(text)
        .map_err(|e| problem(format!("`where` is not valid SQL: {e}"), "write one boolean expression"))?;
    let expr = parser.parse_expr().map_err(|e| {
        problem(
            format!("`where` is not one SQL expression: {e}"),
            "write one boolean expression such as `status = 'done'`",
        )
    })?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(problem(
            format!(
                "`where` must be exactly one expression, but `{}` follows `{expr}` at column {} of the condition",
                rest.token, rest.span.start.column
            ),
            "write one boolean expression; combine conditions with AND/OR inside it",
        ));
    }
    Ok(expr.to_string())
}

/// Splits author SQL into its statements at the `;` tokens, so `;` inside
/// strings, quoted names, comments and dollar-quoted bodies never splits.
/// Each statement keeps its original text.
pub fn split_statements(text: &str, backend: Option<Backend>) -> Result<Vec<String>, SqlProblem> {
    let d = dialect(backend);
    let toks = Tokenizer::new(d.as_ref(), text)
        .tokenize_with_location()
        .map_err(|e| problem(format!("not valid SQL: {e}"), "check quotes and parentheses"))?;
    // Byte offset of each line's start, to turn (line, column) into bytes.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get(line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(text.len());
        text[start..]
            .char_indices()
            .nth(column.saturating_sub(1) as usize)
            .map_or(text.len(), |(i, _)| start + i)
    };
    let mut out = vec![];
    let mut from = 0;
    for t in toks.iter().filter(|t| t.token == Token::SemiColon) {
        let at = offset(t.span.start.line, t.span.start.column);
        out.push(text[from..at].to_string());
        from = at + 1;
    }
    out.push(text[from..].to_string());
    Ok(out
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The first statement of `text` that ends or starts a transaction
/// (`BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK` without `TO`,
/// `ABORT`): inside `transaction: true` one would commit part of the step.
pub fn transaction_control(text: &str, backend: Option<Backend>) -> Option<String> {
    let statements = split_statements(text, backend).ok()?;
    statements.into_iter().find(|s| {
        let words: Vec<String> = s
            .split_whitespace()
            .take(2)
            .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
            .collect();
        match words.first().map(String::as_str) {
            Some("BEGIN" | "COMMIT" | "END" | "ABORT") => true,
            Some("START") => words.get(1).is_some_and(|w| w == "TRANSACTION"),
            Some("ROLLBACK") => words.get(1).is_none_or(|w| w != "TO"),
            _ => false,
        }
    })
}

/// Functions that act although a read-only transaction allows them.
const SIDE_EFFECTS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "set_config",
    "nextval",
    "setval",
    "pg_notify",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_log_backend_memory_contexts",
    "pg_logical_emit_message",
    "pg_drop_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_file_write",
    "pg_file_unlink",
    "pg_file_rename",
    "pg_import_system_collations",
    "txid_current",
    "pg_current_xact_id",
    "load_extension",
];

/// Name prefixes of function families with side effects.
const SIDE_EFFECT_PREFIXES: &[&str] = &[
    "pg_advisory_",
    "pg_try_advisory_",
    "dblink",
    "lo_",
    "pg_stat_reset",
    "pg_replication_origin_",
];

fn has_side_effects(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SIDE_EFFECTS.contains(&n.as_str()) || SIDE_EFFECT_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Refuses a `dry_run` that calls a function with side effects. Token
/// level: a name followed by `(` is a call wherever it stands (select list,
/// FROM, a subquery), quoted or schema-qualified.
pub fn read_only_query(text: &str, backend: Option<Backend>) -> Result<(), SqlProblem> {
    let toks: Vec<Token> = tokens(text, backend)?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    for pair in toks.windows(2) {
        if let (Token::Word(w), Token::LParen) = (&pair[0], &pair[1])
            && has_side_effects(&w.value)
        {
            return Err(problem(
                format!(
                    "`dry_run` calls `{}`, which acts even in `plan diff`'s read-only transaction",
                    w.value
                ),
                "a dry_run only reads: count or select the rows the step would change; put actions in `sql`",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_one_expression_and_is_re_rendered() {
        let pg = Some(Backend::Postgres);
        assert_eq!(condition("status = 'done'", pg).as_deref(), Ok("status = 'done'"));
        assert_eq!(
            condition("a = 1 or (b > 2 and c is null)", pg).as_deref(),
            Ok("a = 1 OR (b > 2 AND c IS NULL)")
        );
        for bad in [
            "true) OR (true",
            "true; DELETE FROM t",
            "v = 1 -- note",
            "v = 1 /* x */",
            "(a = 1",
            "a = 1)",
            "a = 1 b = 2",
            "",
        ] {
            assert!(condition(bad, pg).is_err(), "accepted: {bad}");
        }
        assert!(
            condition("v = 1 -- note", pg)
                .expect_err("comment")
                .hint
                .contains("YAML comment")
        );
        assert!(condition("kind = 'x' AND json_extract(data, '$.a') = 1", Some(Backend::Sqlite)).is_ok());
    }

    #[test]
    fn statements_split_at_semicolons_outside_strings_comments_and_bodies() {
        let pg = Some(Backend::Postgres);
        let text = "VACUUM a;\n  VACUUM b ; INSERT INTO t VALUES ('x;y'); -- a; comment\n\
                    CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;";
        let parts = split_statements(text, pg).expect("split");
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert_eq!(parts[0], "VACUUM a");
        assert_eq!(parts[1], "VACUUM b");
        assert_eq!(parts[2], "INSERT INTO t VALUES ('x;y')");
        assert!(parts[3].contains("$$ SELECT 1; $$"), "{parts:?}");
        assert_eq!(
            transaction_control("UPDATE t SET a = 1; COMMIT", pg).as_deref(),
            Some("COMMIT")
        );
        assert_eq!(transaction_control("SAVEPOINT s; ROLLBACK TO s", pg), None);
        assert_eq!(
            transaction_control("begin; delete from t", pg).as_deref(),
            Some("begin")
        );
    }

    #[test]
    fn dry_runs_may_not_call_side_effecting_functions() {
        let pg = Some(Backend::Postgres);
        assert!(read_only_query("SELECT count(*) FROM t WHERE created_at < now()", pg).is_ok());
        for bad in [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "SELECT * FROM pg_catalog.pg_cancel_backend(1)",
            "SELECT set_config('x.y', '1', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT nextval('s')",
            "SELECT \"pg_notify\"('c', 'x')",
            "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
            "SELECT lo_unlink(1)",
            "SELECT (SELECT pg_reload_conf())",
        ] {
            let e = read_only_query(bad, pg).expect_err(bad);
            assert!(e.message.contains("acts even"), "{e:?}");
        }
        // A column that merely shares a name is no call.
        assert!(read_only_query("SELECT nextval FROM t", pg).is_ok());
    }
}
