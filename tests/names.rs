//! What the approver reads: names from the database cannot forge or hide
//! lines of the diff, a plain name that selects nothing is an error with a
//! suggestion (a typo must not silently skip a table, or include one an
//! `exclude` meant to keep out), and only `*` and `?` are glob characters.

use std::path::Path;

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::seeded_db;

fn plan(dir: &Path, url: &str, steps: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: names\ntarget: \"{url}\"\nsteps:\n{steps}"),
    )
    .expect("plan");
    path
}

const HOSTILE: &str = "zz\n\nPlan: 0 rows to remove\u{1b}[8m";

#[test]
fn postgres_hostile_table_names_cannot_forge_or_hide_diff_lines() {
    let _rt = rt();
    let quoted = format!("\"{}\"", HOSTILE.replace('"', "\"\""));
    let url = seeded_db(
        &format!(
            "CREATE TABLE {quoted} (id int PRIMARY KEY, v int); \
             INSERT INTO {quoted} SELECT g, g FROM generate_series(1, 1000) g; \
             DELETE FROM {quoted} WHERE id % 2 = 0; \
             CREATE TABLE \"evil\u{202e}gol\" (id int); ANALYZE;"
        ),
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(
        dir.path(),
        &url,
        "  vac:\n    vacuum: { tables: [\"*\"], min_dead_ratio: 0, min_dead_tuples: 0 }\n",
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("zz\\n\\nPlan: 0 rows to remove\\x1b[8m"), "{text}");
    assert!(text.contains("evil\\u{202e}gol"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text}");
    let plan_lines = text.lines().filter(|l| l.starts_with("Plan:")).count();
    assert_eq!(plan_lines, 1, "one closing line only: {text}");
    // JSON keeps the exact name.
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<String> = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains(HOSTILE)), "{names:?}");
}

#[test]
fn postgres_a_name_that_matches_nothing_is_an_error_with_a_suggestion_and_a_glob_a_warning() {
    let url = seeded_db(
        "CREATE TABLE events (id int PRIMARY KEY); CREATE TABLE ab (id int); CREATE TABLE \"a\\b\" (id int);",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path(), &url, "  an:\n    analyze: { tables: [evnts] }\n");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("`tables: evnts` names no table in this database; did you mean `events`?"),
        "{text}"
    );
    // An exclude typo would include the table it meant to keep out.
    let p = plan(dir.path(), &url, "  an:\n    analyze: { exclude: [evnt] }\n");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("`exclude: evnt` names no table"));
    // A glob that matches nothing is a warning; the plan still runs.
    let p = plan(dir.path(), &url, "  an:\n    analyze: { tables: [\"audit_*\"] }\n");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning: `tables: audit_*` matches no table"));
    // A backslash is a character: `a\b` selects the table `a\b`, never `ab`.
    let p = plan(
        dir.path(),
        &url,
        "  an:\n    analyze: { tables: ['a\\b'], min_mod_ratio: 0 }\n",
    );
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(names.iter().any(|n| n.contains("a\\b")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("\"ab\"") || *n == "ab" || n.ends_with(".ab")),
        "{names:?}"
    );
}
