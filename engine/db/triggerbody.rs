//! What a trigger's body does, read from its text: the tables it writes
//! (`INSERT INTO`, `UPDATE`, `DELETE FROM`) and whether it can keep the row
//! being deleted (a PL/pgSQL `RETURN NULL` in a BEFORE trigger, SQLite's
//! `RAISE(IGNORE)`) or fail the delete (`RAISE EXCEPTION`, `RAISE(ABORT…)`).
//! It reads words, not a parse tree: dynamic SQL (`EXECUTE format(…)`) and
//! called functions are not followed, and the diff says "as far as its text
//! tells". Good enough to warn a reviewer; never used to decide a delete.

use serde::Serialize;

/// What the text of a trigger body shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Body {
    /// Tables it inserts into, updates or deletes from, as written.
    pub writes: Vec<String>,
    /// It may keep the row (the delete of that row does not happen).
    pub may_keep_rows: bool,
    /// It may raise an error (the batch then rolls back and the step fails).
    pub may_fail: bool,
    /// It runs dynamic SQL, which is not read.
    pub dynamic_sql: bool,
}

impl Body {
    /// Reads `text`; `before` is true for a BEFORE trigger (only those can
    /// keep a row by returning NULL).
    pub fn read(text: &str, before: bool) -> Self {
        let words = tokens(text);
        let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        let mut writes: Vec<String> = vec![];
        for (i, w) in lower.iter().enumerate() {
            let target = match w.as_str() {
                "insert" | "delete" if matches!(lower.get(i + 1).map(String::as_str), Some("into" | "from")) => {
                    words.get(i + 2)
                }
                "update" if lower.get(i + 1).is_some_and(|n| n != "of" && n != "on") && i > 0 => {
                    // `BEFORE UPDATE ON t` in a trigger's own head is not a write.
                    words.get(i + 1)
                }
                _ => None,
            };
            if let Some(t) = target.filter(|t| {
                t.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '"' || c == '_')
            }) && !writes.contains(t)
            {
                writes.push(t.clone());
            }
        }
        let joined = lower.join(" ");
        Self {
            writes,
            may_keep_rows: (before && joined.contains("return null")) || joined.contains("raise ( ignore"),
            may_fail: joined.contains("raise exception")
                || ["raise ( abort", "raise ( fail", "raise ( rollback"]
                    .iter()
                    .any(|r| joined.contains(r)),
            dynamic_sql: lower.iter().any(|w| w == "execute"),
        }
    }

    /// One line for the diff.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if !self.writes.is_empty() {
            parts.push(format!("writes {}", self.writes.join(", ")));
        }
        if self.may_keep_rows {
            parts.push("may keep rows from the delete".into());
        }
        if self.may_fail {
            parts.push("may raise an error".into());
        }
        if self.dynamic_sql {
            parts.push("runs dynamic SQL (not read)".into());
        }
        if parts.is_empty() {
            "writes no table as far as its text tells".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Words, quoted identifiers (kept with their quotes) and single
/// punctuation characters; string literals and comments are skipped.
fn tokens(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A string literal; '' inside is one quote.
                while let Some(d) = chars.next() {
                    if d == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                let mut w = String::from('"');
                for d in chars.by_ref() {
                    w.push(d);
                    if d == '"' {
                        break;
                    }
                }
                // A qualified name: "s"."t" or s.t stays one word.
                out.push(w);
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut w = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == '$' || d == '.' {
                        w.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(w);
            }
            c if c.is_whitespace() => {}
            c => out.push(c.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plpgsql_audit_trigger_writes_its_table_and_a_veto_is_seen() {
        let b = Body::read(
            "BEGIN IF OLD.pinned THEN RETURN NULL; END IF; \
             INSERT INTO audit.deleted_events (id, at) VALUES (OLD.id, now()); -- UPDATE nothing\n \
             RAISE NOTICE 'delete from x'; RETURN OLD; END",
            true,
        );
        assert_eq!(b.writes, ["audit.deleted_events"]);
        assert!(b.may_keep_rows);
        assert!(!b.may_fail);
    }

    #[test]
    fn sqlite_trigger_head_is_not_a_write_and_raise_ignore_keeps_rows() {
        let b = Body::read(
            "CREATE TRIGGER keep BEFORE DELETE ON events WHEN old.pinned BEGIN SELECT RAISE(IGNORE); END",
            true,
        );
        assert!(b.writes.is_empty(), "{:?}", b.writes);
        assert!(b.may_keep_rows);
        let b = Body::read(
            "CREATE TRIGGER log AFTER DELETE ON events BEGIN UPDATE counters SET n = n - 1; \
             SELECT RAISE(ABORT, 'no'); END",
            false,
        );
        assert_eq!(b.writes, ["counters"]);
        assert!(b.may_fail && !b.may_keep_rows);
    }

    #[test]
    fn after_trigger_returning_null_keeps_nothing() {
        assert!(!Body::read("BEGIN DELETE FROM t2 WHERE id = OLD.id; RETURN NULL; END", false).may_keep_rows);
    }
}
