//! Which archive column types keep every value of a source column as it
//! was (issue 11: an existing archive with `integer` for `numeric` turned
//! 30.6789 into 31, `date` for `timestamptz` dropped the time, and the
//! source rows were then deleted). Same type, or a widening that cannot
//! change a value; everything else is refused at planning.

use crate::plan::values::Backend;

/// True when every value of type `from` is stored unchanged in `to`.
pub fn keeps_values(backend: Backend, from: &str, to: &str) -> bool {
    let (f, t) = (normalize(from), normalize(to));
    if f == t {
        return true;
    }
    match backend {
        Backend::Postgres => pg_widens(&f, &t),
        Backend::Sqlite => {
            // SQLite stores what it is given, except that a column's
            // affinity converts: TEXT '007' into an INTEGER column is 7.
            let (fa, ta) = (sqlite_affinity(&f), sqlite_affinity(&t));
            fa == ta || ta == "BLOB"
        }
    }
}

fn normalize(t: &str) -> String {
    t.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

/// `(name, Some(args))` of `numeric(10,4)`, `character varying(20)`.
fn split(t: &str) -> (&str, Option<Vec<u32>>) {
    match t.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .trim_end_matches(')')
                .split(',')
                .map(|a| a.trim().parse().ok())
                .collect::<Option<Vec<u32>>>();
            (name.trim(), args)
        }
        None => (t, None),
    }
}

fn pg_widens(from: &str, to: &str) -> bool {
    const INTS: [&str; 3] = ["smallint", "integer", "bigint"];
    let (fname, fargs) = split(from);
    let (tname, targs) = split(to);
    let rank = |n: &str| INTS.iter().position(|i| *i == n);
    match (fname, tname) {
        (f, t) if rank(f).is_some() && rank(t).is_some() => rank(f) <= rank(t),
        // Integers and any numeric fit an unconstrained numeric.
        (f, "numeric") if targs.is_none() => rank(f).is_some() || f == "numeric",
        // numeric(p,s) → numeric(p2,s2): as many digits on both sides.
        ("numeric", "numeric") => match (fargs.as_deref(), targs.as_deref()) {
            // Digits before the point, p - s, may be negative: PostgreSQL
            // 15 takes numeric(2,5) (values under 0.001).
            (Some([p, s]), Some([p2, s2])) => {
                let before = |p: &u32, s: &u32| i64::from(*p) - i64::from(*s);
                s2 >= s && before(p2, s2) >= before(p, s)
            }
            (Some([p]), Some([p2])) => p2 >= p,
            _ => false,
        },
        ("real", "double precision") => true,
        ("character varying" | "character", "text") => true,
        ("character varying", "character varying") => match (fargs.as_deref(), targs.as_deref()) {
            (Some([n]), Some([m])) => m >= n,
            (Some(_), None) => true,
            _ => false,
        },
        _ => false,
    }
}

/// SQLite's type affinity rules (datatype3.html, 3.1).
fn sqlite_affinity(declared: &str) -> &'static str {
    let d = declared.to_ascii_uppercase();
    if d.contains("INT") {
        "INTEGER"
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "TEXT"
    } else if d.contains("BLOB") || d.is_empty() {
        "BLOB"
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_allows_only_widenings_that_keep_values() {
        let pg = |a, b| keeps_values(Backend::Postgres, a, b);
        assert!(pg("integer", "integer"));
        assert!(pg("integer", "bigint"));
        assert!(pg("bigint", "numeric"));
        assert!(pg("numeric(10,4)", "numeric"));
        assert!(pg("numeric(10,4)", "numeric(12,4)"));
        assert!(pg("character varying(20)", "text"));
        assert!(pg("character varying(20)", "character varying(40)"));
        assert!(!pg("numeric", "integer"));
        assert!(!pg("numeric(10,4)", "numeric(10,2)"));
        assert!(!pg("bigint", "integer"));
        assert!(!pg("timestamp with time zone", "date"));
        assert!(!pg("timestamp without time zone", "timestamp with time zone"));
        assert!(!pg("character varying(40)", "character varying(20)"));
        assert!(!pg("jsonb", "json"));
        // Each widening the match names, and its narrowing refused.
        assert!(pg("real", "double precision"));
        assert!(!pg("double precision", "real"));
        assert!(pg("numeric(10)", "numeric(12)"));
        assert!(!pg("numeric(12)", "numeric(10)"));
        assert!(pg("character varying(20)", "character varying"));
        assert!(!pg("character varying", "character varying(20)"));
        assert!(pg("character(3)", "text"));
        assert!(pg("smallint", "integer") && pg("smallint", "numeric"));
        // More decimals but fewer digits before the point: 123456.7890
        // does not fit numeric(10,5).
        assert!(!pg("numeric(10,4)", "numeric(10,5)"));
        assert!(pg("numeric(10,4)", "numeric(11,5)"));
        // Scale above precision (PostgreSQL 15): no digit before the
        // point, which numeric(3,5) widens and numeric(10,4) never fits.
        assert!(pg("numeric(2,5)", "numeric(3,5)"));
        assert!(!pg("numeric(10,4)", "numeric(3,5)"));
        assert!(!pg("numeric(3,5)", "numeric(2,5)"));
        // Spelling and case do not matter; the type does.
        assert!(pg("NUMERIC( 10 , 4 )", "numeric(12,4)"));
        assert!(pg("Character  Varying(20)", "TEXT"));
        assert!(!pg("numeric(10,4)", "integer"));
        assert!(!pg("text", "character varying(20)"));
    }

    #[test]
    fn sqlite_compares_affinities() {
        let sq = |a, b| keeps_values(Backend::Sqlite, a, b);
        assert!(sq("TEXT", "VARCHAR(10)"));
        assert!(sq("INTEGER", "BIGINT"));
        assert!(sq("TEXT", ""));
        assert!(!sq("TEXT", "INTEGER"));
        assert!(!sq("REAL", "INTEGER"));
        // Each affinity by each of its spellings (datatype3.html 3.1).
        assert!(sq("REAL", "DOUBLE PRECISION") && sq("FLOAT", "REAL") && sq("DOUBLE", "FLOAT"));
        assert!(!sq("DOUBLE", "NUMERIC") && !sq("FLOAT", "DECIMAL(10,2)") && !sq("REAL", "NUMERIC"));
        assert!(sq("CLOB", "TEXT") && sq("NCHAR(3)", "TEXT") && !sq("CLOB", "NUMERIC"));
        assert!(sq("NUMERIC", "DECIMAL(10,2)") && sq("DATETIME", "BOOLEAN"));
        assert!(!sq("NUMERIC", "TEXT") && !sq("INTEGER", "REAL"));
        // A BLOB (or untyped) column stores every value as it is given.
        assert!(sq("INTEGER", "BLOB") && sq("REAL", "") && !sq("BLOB", "TEXT"));
    }
}
